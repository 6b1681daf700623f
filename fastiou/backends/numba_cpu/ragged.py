"""Segmented (ragged) IoU on the Numba engine: the G_i x P_i blocks of many images in one call.

Segment ``b`` pairs rows ``off1[b]:off1[b + 1]`` of the first set with rows ``off2[b]:off2[b + 1]``
of the second and writes its block, row-major, at ``out[start[b]:]``. The host has checked that
the offsets are monotone and within the arrays and that every block fits in ``out``, so the loops
index only within validated bounds. One thread per segment (``prange``): a dataset has thousands.
Boxes are laid out as columns (corners, then area), as in the pairwise kernel of ``boxes.py``, so
that the inner loop over a segment's second set vectorizes. As in ``boxes.py``, the pairs with an
extreme box (``_formats.scale_limits``) are then computed again by its ``_scaled``, so that every
block holds exactly what ``box_iou`` gives.
"""

from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np

from ... import _formats
from .boxes import _EXTREME_ROWS, _IOU, _iou2, _iou3, _load2, _load3, _row2, _row3, _scaled
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


_MASKS = serial_and_parallel(_masks_template)


def consts(dtype: Any, dims: int, zero_division: float) -> np.ndarray:
    """``k`` of the pair formulas and of ``boxes._scaled``, as ``boxes.box_pair`` makes it."""
    big, tiny = _formats.scale_limits(dtype, dims)
    return np.array([zero_division, 4 / math.pi**2, 1, big, tiny, 1 / 8, 1 / 16], dtype=dtype)


def _columns_template(f, consts, cols, flags):  # f flat (K * 2d,) corners
    """Columns ``cols (R, K)`` (corners, area, and for 2D an unused row: ``_load2`` reads 6)
    and ``flags (K,)``: whether each box is extreme, in the same pass over the boxes."""
    # All of ``consts``, as the box drivers pass them: one compiled ``extreme`` serves both.
    k = (consts[0], consts[1], consts[2], consts[3], consts[4], consts[5], consts[6])
    for i in range(np.uint64(flags.shape[0])):  # unsigned: no negative-index checks
        p = row(f, i)  # noqa: F821
        for r in range(rows):  # noqa: F821 (a constant: the copy is unrolled)
            cols[r, i] = p[r]
        flags[i] = extreme(f, i, k)  # noqa: F821


_COLUMNS = {
    d: (kernel()(variant(_columns_template, f"_columns_flags{d}", row=row,
                         extreme=_EXTREME_ROWS[d], rows=rows)), rows)
    for d, row, rows in ((2, _row2, 6), (3, _row3, 7))
}


def columns(c: np.ndarray, dims: int, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Corner boxes ``c (K, 2d)`` (contiguous, compute dtype) -> their columns ``(R, K)`` and
    whether each is extreme (``boxes``' test), ``k`` from :func:`consts`."""
    fill, rows = _COLUMNS[dims]
    cols = np.empty((rows, c.shape[0]), dtype=c.dtype)
    flags = np.empty(c.shape[0], dtype=np.bool_)
    fill(c.reshape(-1), k, cols, flags)
    return cols, flags


@kernel(parallel=True)
def _rescale(f1, f2, dims, k, x1, x2, off1, off2, start, out):
    """Recompute by ``_scaled`` the pairs of the blocks with an extreme box (``x1``, ``x2``
    flags of the flat corners ``f1``, ``f2``)."""
    for b in numba.prange(start.shape[0] - 1):
        g0, g1, p0, p1 = off1[b], off1[b + 1], off2[b], off2[b + 1]
        width = p1 - p0
        for i in range(g0, g1):
            at = start[b] + (i - g0) * width - p0
            for j in range(p0, p1):
                if x1[i] or x2[j]:
                    out[at + j] = _scaled(f1, i, f2, j, dims, _IOU, k)


def box_iou(c1: np.ndarray, c2: np.ndarray, off1: np.ndarray, off2: np.ndarray,
            start: np.ndarray, *, dims: int, out_dtype: Any, zero_division: float) -> np.ndarray:
    """Blocks of corner boxes ``c1 (K1, 2d)`` x ``c2 (K2, 2d)`` (compute dtype, contiguous);
    ``off1``, ``off2`` and ``start`` (S + 1,) int64, ``start`` ending with the total. Returns the
    flat ``(total,)`` values."""
    out = np.empty(int(start[-1]), dtype=out_dtype)
    if out.size:
        k = consts(c1.dtype, dims, zero_division)
        fn = _BOXES[dims][out.size >= PARALLEL_PAIRS]
        (a, x1), (b, x2) = columns(c1, dims, k), columns(c2, dims, k)
        fn(a, b, off1, off2, start, k, out)
        if x1.any() or x2.any():
            _rescale(c1.reshape(-1), c2.reshape(-1), dims, k, x1, x2, off1, off2, start, out)
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
