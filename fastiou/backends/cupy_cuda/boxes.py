"""Box IoU family on the CUDA engine (kernels in ``fastiou/cuda/boxes.cu``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ... import _formats
from ..._validate import BoxPair
from . import BLOCK, C_TYPES, KERNELS, MAX_GRID_Y, grid_1d, launch, runtime

_BOX_OPS = {"iou": 0, "giou": 1, "diou": 2, "ciou": 3, "ioa": 4}
_BOX_COMBOS = ((2, "iou"), (2, "giou"), (2, "diou"), (2, "ciou"), (2, "ioa"),
               (3, "iou"), (3, "giou"), (3, "ioa"))
_BOX_DTYPES = ((np.float32, np.float32), (np.float64, np.float64), (np.float64, np.float32))


def _box_kernel(kind: str, compute: Any, out: Any, op: str, dims: int) -> str:
    t, o = C_TYPES[np.dtype(compute)], C_TYPES[np.dtype(out)]
    return f"fastiou::box_{kind}<{t}, {o}, {_BOX_OPS[op]}, {dims}>"


KERNELS["boxes.cu"] = tuple(
    _box_kernel(kind, t, o, op, dims)
    for kind in ("pairwise", "aligned")
    for dims, op in _BOX_COMBOS
    for t, o in _BOX_DTYPES
)


def _corners(xp: Any, b: Any, spec: BoxPair, n: int) -> Any:
    corners = _formats.to_corners(xp, xp.asarray(b, dtype=spec.compute), spec.fmt)
    corners = xp.broadcast_to(corners, spec.batch + (n, 2 * spec.dims))
    return xp.ascontiguousarray(corners.reshape(-1, 2 * spec.dims))


def box_pair(b1: Any, b2: Any, *, op: str, spec: BoxPair, zero_division: float, out: Any = None) -> Any:
    xp = runtime().xp
    n = spec.n
    m = n if spec.m < 0 else spec.m
    result = xp.empty(spec.out_shape, dtype=spec.out) if out is None else out
    if result.size == 0:
        return result
    a, c = _corners(xp, b1, spec, n), _corners(xp, b2, spec, m)
    t = spec.compute
    if spec.m < 0:
        kernel = _box_kernel("aligned", t, spec.out, op, spec.dims)
        args = ((a, t), (c, t), (a.shape[0], np.int64), (zero_division, t), (result, spec.out))
        launch("boxes.cu", kernel, grid_1d(a.shape[0]), (BLOCK,), args)
    else:
        rows = a.shape[0]
        kernel = _box_kernel("pairwise", t, spec.out, op, spec.dims)
        grid = (grid_1d(m)[0], min(rows, MAX_GRID_Y))
        args = ((a, t), (c, t), (rows, np.int64), (n, np.int64), (m, np.int64),
                (zero_division, t), (result, spec.out))
        launch("boxes.cu", kernel, grid, (BLOCK,), args)
    return result
