"""Segmented (ragged) IoU on the CUDA engine (kernels in ``fastiou/cuda/ragged.cu``).

The inputs stay on the device; the small int64 offsets (checked on the host) are copied to it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import BLOCK, C_TYPES, KERNELS, grid_1d, launch, runtime

SOURCE = "ragged.cu"
WARP = 32
_BOX_DTYPES = ((np.float32, np.float32), (np.float64, np.float64), (np.float64, np.float32))


def _box_kernel(compute: Any, out: Any, dims: int) -> str:
    return f"fastiou::box_ragged<{C_TYPES[np.dtype(compute)]}, {C_TYPES[np.dtype(out)]}, {dims}>"


KERNELS[SOURCE] = tuple(
    _box_kernel(t, o, d) for d in (2, 3) for t, o in _BOX_DTYPES
) + ("fastiou::mask_ragged<float>",)


def _device_offsets(xp: Any, off1: np.ndarray, off2: np.ndarray,
                    start: np.ndarray) -> tuple[Any, ...]:
    return tuple(xp.asarray(np.ascontiguousarray(a, dtype=np.int64)) for a in (off1, off2, start))


def box_iou(c1: Any, c2: Any, off1: np.ndarray, off2: np.ndarray, start: np.ndarray, *,
            dims: int, out_dtype: Any, zero_division: float) -> Any:
    """Blocks of corner boxes ``c1 (K1, 2d)`` x ``c2 (K2, 2d)`` (compute dtype, contiguous);
    ``start (S + 1,)`` ends with the total. Returns the flat ``(total,)`` values."""
    xp = runtime().xp
    total = int(start[-1])
    out = xp.empty((total,), dtype=out_dtype)
    if total == 0:
        return out
    t = np.dtype(c1.dtype)
    d1, d2, ds = _device_offsets(xp, off1, off2, start)
    args = ((c1, t), (c2, t), (d1, np.int64), (d2, np.int64), (ds, np.int64),
            (start.shape[0] - 1, np.int64), (total, np.int64), (zero_division, t), (out, out_dtype))
    launch(SOURCE, _box_kernel(t, out_dtype, dims), grid_1d(total), (BLOCK,), args)
    return out


def mask_iou(w1: Any, a1: Any, w2: Any, a2: Any, off1: np.ndarray, off2: np.ndarray,
             start: np.ndarray, *, zero_division: float) -> Any:
    """Blocks of packed masks ``w1 (K1, L)`` x ``w2 (K2, L)`` (uint64 words, int64 areas, both
    contiguous); returns the flat ``(total,)`` float32 values."""
    xp = runtime().xp
    total = int(start[-1])
    out = xp.empty((total,), dtype=np.float32)
    if total == 0:
        return out
    d1, d2, ds = _device_offsets(xp, off1, off2, start)
    args = ((w1, np.uint64), (a1, np.int64), (w2, np.uint64), (a2, np.int64),
            (w1.shape[1], np.int64), (d1, np.int64), (d2, np.int64), (ds, np.int64),
            (start.shape[0] - 1, np.int64), (total, np.int64), (zero_division, np.float64),
            (out, np.float32))
    launch(SOURCE, "fastiou::mask_ragged<float>", grid_1d(total * WARP), (BLOCK,), args)
    return out
