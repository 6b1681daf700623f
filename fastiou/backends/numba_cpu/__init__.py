"""Numba engine: NumPy arrays (and nested lists) in, NumPy arrays out, compiled CPU loops.

Every compiled function of every family module comes from :func:`kernel`.
"""

from __future__ import annotations

from typing import Any, Callable

import numba
import numpy as np

name = "numba"

# One fastmath set for every kernel. Never no-NaN / no-inf: NaN must propagate as NumPy does.
# Nor 'reassoc', 'contract' or 'arcp': they change rounding (IoU(a, a) would miss 1 by an ulp,
# COCO polygon rasterization would differ from pycocotools) and, with 'reassoc', LLVM folds
# ``v - v`` to 0 even for NaN. Nor 'afn' (approximate libm calls). What is left cannot change a
# result beyond the sign of a zero; vectorization does not need more (no float reductions here).
FASTMATH = {"nsz"}


def kernel(*, parallel: bool = False) -> Callable[[Callable[..., Any]], Any]:
    """The one decorator factory for every compiled function of this engine."""

    def decorate(fn: Callable[..., Any]) -> Any:
        return numba.njit(
            cache=True, nogil=True, error_model="numpy", fastmath=FASTMATH, parallel=parallel
        )(fn)

    return decorate


def namespace() -> Any:
    return np


def asarray(x: Any) -> np.ndarray:
    return np.asarray(x)


def wide_float() -> np.dtype:
    return np.dtype(np.float64)


def describe() -> str:
    return f"numba {numba.__version__}, {numba.get_num_threads()} threads"


# Family modules (they import ``kernel`` from here).
from .boxes import box_pair  # noqa: E402
from . import semantic  # noqa: E402
from .masks import mask_boxes, mask_pair, pack_masks  # noqa: E402
from . import rle  # noqa: E402  (host-side COCO RLE loops behind fastiou.rle)
