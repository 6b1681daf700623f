"""Semantic segmentation on the CUDA engine (kernel in ``fastiou/cuda/semantic.cu``).

One launch counts both label maps, in their own dtypes, into privatized shared-memory histograms
that each block adds to a 64-bit global histogram; with too many classes for shared memory the
kernel adds to the global histogram directly, one atomic per distinct bin of a warp.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..._validate import LabelSpec
from .._semantic_arrays import (  # noqa: F401  (the streaming state: the int64 matrix itself)
    flat_pair,
    labels_known,
    state_float,
    state_from_counts,
    state_invalid,
    state_matrix,
    state_merge,
)
from . import BLOCK, C_TYPES, KERNELS, grid_1d, launch, runtime

LABEL_TYPES = {dtype: name for dtype, name in C_TYPES.items() if dtype.kind in "iu"}
SHARED_BYTES = 48 * 1024  # shared memory a block may use without opting in
MAX_COPIES = 32
MAX_BLOCKS = 1024  # each block zeroes and flushes its histograms: a few blocks per SM suffice
BLOCK_PIXELS = 2**31  # pixels per block at most, far below the 2**32 of its 32-bit counters
assert BLOCK % 32 == 0  # the kernel's warp-wide __match_any_sync needs whole warps


def _kernel(pred: Any, target: Any) -> str:
    return f"fastiou::confusion_counts<{LABEL_TYPES[pred]}, {LABEL_TYPES[target]}>"


KERNELS["semantic.cu"] = tuple(_kernel(p, t) for p in LABEL_TYPES for t in LABEL_TYPES)


def _copies(bins: int) -> int:
    """Private histograms per block: as many as fit in shared memory (a power of two), or 0."""
    copies = MAX_COPIES
    while copies and copies * bins * 4 > SHARED_BYTES:
        copies //= 2
    return copies


def confusion_counts(pred: Any, target: Any, spec: LabelSpec) -> tuple[Any, Any]:
    """``(C, C)`` int64 counts and the number of pixels with a label outside ``[0, C)``."""
    xp = runtime().xp
    p, t = flat_pair(xp, pred, target)
    bins = spec.bins
    out = xp.zeros(bins, dtype=np.uint64)
    n = p.shape[0]
    if n:
        copies = _copies(bins)
        blocks = max(min(grid_1d(n)[0], MAX_BLOCKS), -(-n // BLOCK_PIXELS))
        ignore = spec.ignore_index if spec.ignore_active else 0
        ignore -= 2**64 if ignore >= 2**63 else 0  # same bits as a uint64 ignore_index
        args = ((p, p.dtype), (t, t.dtype), (n, np.int64), (spec.num_classes, np.int64),
                (ignore, np.int64), (spec.ignore_active, np.int32), (copies, np.int32),
                (out, np.uint64))
        launch("semantic.cu", _kernel(p.dtype, t.dtype), (blocks,), (BLOCK,), args,
               shared_mem=copies * bins * 4)
    flat, c = out.view(np.int64), spec.num_classes
    return flat[: c * c].reshape(c, c), flat[c * c + 1]
