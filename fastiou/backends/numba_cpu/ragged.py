"""Segmented (ragged) IoU on the Numba engine: the G_i x P_i blocks of many images in one call.

Segment ``b`` pairs rows ``off1[b]:off1[b + 1]`` of the first set with rows ``off2[b]:off2[b + 1]``
of the second and writes its block, row-major, at ``out[start[b]:]``. The host has checked that
the offsets are monotone and within the arrays and that every block fits in ``out``, so the loops
index only within validated bounds. One thread per segment (``prange``): a dataset has thousands.
Boxes are laid out as columns (corners, then area), as in the pairwise kernel of ``boxes.py``, so
that the inner loop over a segment's second set vectorizes.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

from .boxes import _clamp0, _columns3, _iou2, _iou3, _load2, _load3
from .masks import _count, _value
from . import kernel, serial_and_parallel, variant

# Below this many pairs (boxes) or 64 times as many pair-words (masks), waking the worker threads
# costs more than it saves.
PARALLEL_PAIRS = 1 << 14


def _boxes_template(a, c, off1, off2, start, consts, out):  # a (R, K1), c (R, K2) columns
    k = (consts[0], consts[1], consts[2])
    for b in numba.prange(start.shape[0] - 1):
        g0, g1, p0, p1 = off1[b], off1[b + 1], off2[b], off2[b + 1]
        width = p1 - p0
        for i in range(g0, g1):
            p = load(a, i)  # noqa: F821
            # Unsigned indices (no negative-index checks) let the inner loop vectorize; the
            # subtraction may wrap, the sum with j >= p0 does not.
            at = np.uint64(start[b] + (i - g0) * width) - np.uint64(p0)
            for j in range(np.uint64(p0), np.uint64(p1)):
                out[at + j] = pair(p, load(c, j), k)  # noqa: F821


def _masks_template(w1, a1, w2, a2, off1, off2, start, zd, out):  # w1 (K1, L), w2 (K2, L)
    for b in numba.prange(start.shape[0] - 1):
        g0, g1, p0, p1 = off1[b], off1[b + 1], off2[b], off2[b + 1]
        width = p1 - p0
        for i in range(g0, g1):
            at = start[b] + (i - g0) * width - p0
            for j in range(p0, p1):
                out[at + j] = _value(_count(w1[i], w2[j]), a1[i], a2[j], 0, zd)


_BOXES = {
    d: serial_and_parallel(variant(_boxes_template, f"_ragged_iou{d}", load=load, pair=pair))
    for d, load, pair in ((2, _load2, _iou2), (3, _load3, _iou3))
}


@kernel()
def _columns2(b, cols):  # corners (K, 4) -> x1 y1 x2 y2 area (and an unused row: _load2 reads 6)
    for k in range(b.shape[0]):
        x1, y1, x2, y2 = b[k, 0], b[k, 1], b[k, 2], b[k, 3]
        cols[0, k], cols[1, k], cols[2, k], cols[3, k] = x1, y1, x2, y2
        cols[4, k] = _clamp0(x2 - x1) * _clamp0(y2 - y1)
        cols[5, k] = x1 - x1


_COLUMNS = {2: (_columns2, 6), 3: (_columns3, 7)}


def _columns(c: np.ndarray, dims: int) -> np.ndarray:
    fill, rows = _COLUMNS[dims]
    cols = np.empty((rows, c.shape[0]), dtype=c.dtype)
    fill(c, cols)
    return cols


_MASKS = serial_and_parallel(_masks_template)


def box_iou(c1: np.ndarray, c2: np.ndarray, off1: np.ndarray, off2: np.ndarray,
            start: np.ndarray, *, dims: int, out_dtype: Any, zero_division: float) -> np.ndarray:
    """Blocks of corner boxes ``c1 (K1, 2d)`` x ``c2 (K2, 2d)`` (compute dtype, contiguous);
    ``off1``, ``off2`` and ``start`` (S + 1,) int64, ``start`` ending with the total. Returns the
    flat ``(total,)`` values."""
    out = np.empty(int(start[-1]), dtype=out_dtype)
    if out.size:
        consts = np.array([zero_division, 0, 1], dtype=c1.dtype)
        fn = _BOXES[dims][out.size >= PARALLEL_PAIRS]
        fn(_columns(c1, dims), _columns(c2, dims), off1, off2, start, consts, out)
    return out


def mask_iou(w1: np.ndarray, a1: np.ndarray, w2: np.ndarray, a2: np.ndarray, off1: np.ndarray,
             off2: np.ndarray, start: np.ndarray, *, zero_division: float) -> np.ndarray:
    """Blocks of packed masks ``w1 (K1, L)`` x ``w2 (K2, L)`` (uint64 words, int64 areas, both
    contiguous); returns the flat ``(total,)`` float32 values."""
    out = np.empty(int(start[-1]), dtype=np.float32)
    if out.size:
        work = out.size * max(1, w1.shape[1])
        _MASKS[work >= PARALLEL_PAIRS * 64](w1, a1, w2, a2, off1, off2, start,
                                              float(zero_division), out)
    return out
