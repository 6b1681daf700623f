"""Fused IoU reductions on the Numba engine: each IoU is computed in a register and reduced at once.

The per-pair value is the box or mask engine's own formula (``boxes._iou2``/``_iou3`` on the
column layout, ``masks._count``/``_value`` on the packed words), rounded to the output dtype before
any comparison, so the results equal reductions of ``box_iou``/``mask_iou`` exactly. Nothing of
size ``N x M`` exists: ``max`` keeps one running column maximum per thread chunk (merged in chunk
order, so ties keep the lowest row), ``topk`` a sorted buffer per row written in the output, and
``pairs`` counts per row, takes an exclusive prefix sum, and writes each row's pairs at its offset
(row-major and deterministic whatever the thread count).

Boxes beyond ``_formats.scale_limits`` (where ``box_iou`` rescales to avoid overflow and
underflow) take another route: tiles of ``box_iou`` itself within the memory budget, reduced by the
same templates ('dense' items).
"""

from __future__ import annotations

import math
from typing import Any, Iterator, NamedTuple

import numba
import numpy as np
from numba.extending import overload

from ... import _formats
from ..._validate import BoxPair
from . import kernel, variant
from .boxes import _columns2, _columns3, _iou2, _iou3, _load2, _load3, box_pair
from .masks import _count, _value

INDEX = np.dtype(np.int64)


def as_type_of(x, like):  # noqa: ANN001, ANN201 - compiled through the overload below
    """``x`` rounded to the type of the NumPy scalar ``like``."""
    return type(like)(x)


@overload(as_type_of, jit_options={"cache": True})
def _as_type_of(x, like):  # noqa: ANN001, ANN202 - numba compares these names with as_type_of
    target = numba.np.numpy_support.as_dtype(like).type
    return lambda x, like: target(x)


@kernel()
def _beats(v, cur):
    """v ranks before cur: NaN before any number, otherwise greater; equal values do not."""
    return (v > cur) | ((v != v) & (cur == cur))


# Item kinds: ``load(set, i)`` reads item i once per row, ``pair(p, set, j, k, like)`` gives the
# IoU of the loaded row item with item j of the other set, in the output dtype.


@kernel()
def _box2(p, b, j, k, like):
    return as_type_of(_iou2(p, _load2(b, j), k), like)


@kernel()
def _box3(p, b, j, k, like):
    return as_type_of(_iou3(p, _load3(b, j), k), like)


@kernel()
def _mask_load(s, i):
    return s[0][i], s[1][i]


@kernel()
def _mask(p, s, j, k, like):
    return as_type_of(_value(_count(p[0], s[0][j]), p[1], s[1][j], 0, k), like)


@kernel()
def _dense_load(s, i):
    return s[i]


@kernel()
def _dense(p, s, j, k, like):
    return p[j]


# --------------------------------------------------------------------------------------------
# Templates; ``load`` and ``pair`` are bound per item kind (see ``variant``).


def _max_template(a, b, m, k, like, per, row_val, row_idx, part_val, part_idx, scratch):
    """Rows in chunks of ``per``: row maxima, and per chunk the column maxima of its rows.

    Per row, a branch-free pass (it vectorizes) computes the IoUs into the chunk's scratch row and
    updates the column maxima; a second pass finds the row maximum in the scratch row.
    """
    n = row_val.shape[0]
    for t in numba.prange(part_val.shape[0]):
        lo = np.int64(t) * per
        hi = min(n, lo + per)
        cv, ci, buf = part_val[t], part_idx[t], scratch[t]
        for i in range(lo, hi):
            p = load(a, i)  # noqa: F821
            first = i == lo
            for j in range(np.uint64(0), np.uint64(m)):
                v = pair(p, b, j, k, like)  # noqa: F821
                buf[j] = v
                take = first | _beats(v, cv[j])
                cv[j] = v if take else cv[j]
                ci[j] = i if take else ci[j]
            best, at = buf[0], 0
            for j in range(1, m):
                if _beats(buf[j], best):
                    best, at = buf[j], j
            row_val[i], row_idx[i] = best, at


def _topk_template(a, b, m, k, like, vals, idx):
    """Insertion into a sorted buffer of ``kk`` per row; a later column never passes an equal."""
    kk = vals.shape[1]
    for i in numba.prange(vals.shape[0]):
        p = load(a, i)  # noqa: F821
        dv, di = vals[i], idx[i]
        filled = 0
        for j in range(m):
            v = pair(p, b, j, k, like)  # noqa: F821
            if filled < kk:
                pos = filled
                filled += 1
            elif kk > 0 and _beats(v, dv[kk - 1]):
                pos = kk - 1
            else:
                continue
            while pos > 0 and _beats(v, dv[pos - 1]):
                dv[pos], di[pos] = dv[pos - 1], di[pos - 1]
                pos -= 1
            dv[pos], di[pos] = v, j


def _count_template(a, b, m, k, like, thr, counts):
    for i in numba.prange(counts.shape[0]):
        p = load(a, i)  # noqa: F821
        c = 0
        for j in range(m):
            if pair(p, b, j, k, like) >= thr:  # noqa: F821
                c += 1
        counts[i] = c


def _write_template(a, b, m, k, like, thr, offsets, rows, cols, vals):
    """Row i writes its pairs from ``offsets[i]``, up to the length of the outputs."""
    limit = rows.shape[0]
    for i in numba.prange(offsets.shape[0]):
        at = offsets[i]
        if at >= limit:
            continue
        p = load(a, i)  # noqa: F821
        for j in range(m):
            v = pair(p, b, j, k, like)  # noqa: F821
            if v >= thr:
                rows[at], cols[at], vals[at] = i, j, v
                at += 1
                if at >= limit:
                    break


@kernel()
def _merge(part_val, part_idx, col_val, col_idx):
    """Column maxima over the chunks, in chunk (= row) order: ties keep the earlier chunk."""
    for j in range(col_val.shape[0]):
        best, at = part_val[0, j], part_idx[0, j]
        for t in range(1, part_val.shape[0]):
            if _beats(part_val[t, j], best):
                best, at = part_val[t, j], part_idx[t, j]
        col_val[j], col_idx[j] = best, at


_KINDS = {"box2": (_load2, _box2), "box3": (_load3, _box3), "mask": (_mask_load, _mask),
          "dense": (_dense_load, _dense)}
_TEMPLATES = {"max": _max_template, "topk": _topk_template, "count": _count_template,
              "write": _write_template}
_DRIVERS = {
    (what, kind): kernel(parallel=True)(
        variant(fn, f"_reduce_{what}_{kind}", load=load, pair=pair)
    )
    for what, fn in _TEMPLATES.items()
    for kind, (load, pair) in _KINDS.items()
}


class Items(NamedTuple):
    """Two item sets ready for the drivers: ``a`` holds n items, ``b`` m items.

    ``source`` is set for boxes that the fused formula would not compute as ``box_iou`` does
    (coordinates beyond ``_formats.scale_limits``, which ``box_iou`` rescales): those calls run on
    tiles of ``box_iou`` itself ('dense' items), within the memory budget.
    """

    kind: str
    a: Any
    b: Any
    n: int
    m: int
    consts: Any  # the formula's constants (a tuple of the compute dtype, or zero_division)
    out: np.dtype
    source: Any = None  # (boxes1, boxes2, spec, zero_division) for the tiled route

    def swapped(self) -> Items:
        source = self.source
        if source is not None:
            b1, b2, spec, zd = source
            source = (b2, b1, spec._replace(n=spec.m, m=spec.n), zd)
        return self._replace(a=self.b, b=self.a, n=self.m, m=self.n, source=source)

    def run(self, what: str, *args: Any) -> None:
        like = self.out.type(0)
        _DRIVERS[what, self.kind](self.a, self.b, self.m, self.consts, like, *args)

    def parts(self, budget: int) -> Iterator[tuple[int, Items]]:
        """(first row, items of consecutive rows): the whole set, or tiles of box_iou."""
        if self.source is None:
            yield 0, self
            return
        b1, b2, spec, zd = self.source
        tile = max(1, min(self.n, budget // (self.m * self.out.itemsize)))
        buffer = np.empty((tile, self.m), self.out)
        for r0 in range(0, self.n, tile):
            r1 = min(self.n, r0 + tile)
            values = box_pair(b1[r0:r1], b2, op="iou", spec=spec._replace(n=r1 - r0),
                              zero_division=zd, out=buffer[: r1 - r0])
            yield r0, Items("dense", values, values, r1 - r0, self.m, 0.0, self.out)


def _box_corners(b: np.ndarray, spec: BoxPair) -> np.ndarray:
    corners = _formats.to_corners(np, np.asarray(b, dtype=spec.compute), spec.fmt)
    return np.ascontiguousarray(corners)


def _box_columns(corners: np.ndarray, spec: BoxPair) -> np.ndarray:
    """(n, 2d) corners -> the box engine's (R, n) columns in the compute dtype."""
    fill, rows = (_columns2, 6) if spec.dims == 2 else (_columns3, 7)
    cols = np.empty((rows, corners.shape[0]), dtype=spec.compute)
    fill(corners, cols)
    return cols


def _beyond_plain_range(corners: np.ndarray, spec: BoxPair) -> bool:
    """Whether a box falls outside ``_formats.scale_limits`` (NaN aside: NaN gives NaN either
    way), where ``box_iou`` computes by another route than the plain formula."""
    big, tiny = _formats.scale_limits(spec.compute, spec.dims)
    d = spec.dims
    with np.errstate(invalid="ignore", over="ignore"):
        lo, hi = corners[:, :d], corners[:, d:]
        extent = hi - lo
        outside = ((np.abs(lo) > big) & ~np.isnan(lo)) | ((np.abs(hi) > big) & ~np.isnan(hi))
        return bool(np.any(outside | ((extent > 0) & (extent < tiny))))


def box_items(b1: np.ndarray, b2: np.ndarray, *, spec: BoxPair, zero_division: float) -> Items:
    consts = np.array([zero_division, 4 / math.pi**2, 1], dtype=spec.compute)
    c1, c2 = _box_corners(b1, spec), _box_corners(b2, spec)
    source = None
    if _beyond_plain_range(c1, spec) or _beyond_plain_range(c2, spec):
        source = (b1, b2, spec, zero_division)
    return Items(f"box{spec.dims}", _box_columns(c1, spec), _box_columns(c2, spec), spec.n,
                 spec.m, (consts[0], consts[1], consts[2]), spec.out, source)


def mask_items(w1: np.ndarray, a1: np.ndarray, w2: np.ndarray, a2: np.ndarray, *,
               zero_division: float) -> Items:
    def flat(w: np.ndarray, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows = np.ascontiguousarray(w).reshape(w.shape[0], w.shape[1] * w.shape[2])
        return rows, np.ascontiguousarray(a)

    return Items("mask", flat(w1, a1), flat(w2, a2), w1.shape[0], w2.shape[0],
                 float(zero_division), np.dtype(np.float32))


def _empty_max(n: int, out: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros(n, out), np.full(n, -1, INDEX)


def _part_max(it: Items, budget: int, row_val: np.ndarray, row_idx: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
    """Row maxima of ``it`` into row_val/row_idx; returns its column maxima."""
    threads = numba.get_num_threads()
    chunks = max(1, min(it.n, 4 * threads, budget // (it.m * (it.out.itemsize + INDEX.itemsize))))
    per = -(-it.n // chunks)
    chunks = -(-it.n // per)  # every chunk holds at least one row
    part_val, part_idx = np.empty((chunks, it.m), it.out), np.empty((chunks, it.m), INDEX)
    scratch = np.empty((chunks, it.m), it.out)
    it.run("max", np.int64(per), row_val, row_idx, part_val, part_idx, scratch)
    col_val, col_idx = np.empty(it.m, it.out), np.empty(it.m, INDEX)
    _merge(part_val, part_idx, col_val, col_idx)
    return col_val, col_idx


def iou_max(items: Items, *, budget: int) -> tuple[np.ndarray, ...]:
    """(row_max (n,), row_argmax (n,), col_max (m,), col_argmax (m,))."""
    if items.n == 0 or items.m == 0:
        return (*_empty_max(items.n, items.out), *_empty_max(items.m, items.out))
    # The long side runs along the rows (the threads), the short one is kept per chunk.
    swap = items.n < items.m
    it = items.swapped() if swap else items
    row_val, row_idx = np.empty(it.n, it.out), np.empty(it.n, INDEX)
    best = None
    for r0, part in it.parts(budget):
        col_val, col_idx = _part_max(part, budget, row_val[r0 : r0 + part.n],
                                     row_idx[r0 : r0 + part.n])
        col_idx += r0
        if best is not None:  # earlier rows first: they keep the ties
            stacked = (np.stack([best[0], col_val]), np.stack([best[1], col_idx]))
            _merge(*stacked, col_val, col_idx)
        best = (col_val, col_idx)
    assert best is not None
    if swap:
        return best[0], best[1], row_val, row_idx
    return row_val, row_idx, best[0], best[1]


def iou_topk(items: Items, k: int, *, budget: int) -> tuple[np.ndarray, np.ndarray]:
    vals, idx = np.empty((items.n, k), items.out), np.empty((items.n, k), INDEX)
    if vals.size:
        for r0, part in items.parts(budget):
            part.run("topk", vals[r0 : r0 + part.n], idx[r0 : r0 + part.n])
    return vals, idx


def iou_pairs(items: Items, threshold: float, *, max_pairs: int | None, budget: int,
              func: str) -> tuple[np.ndarray, ...]:
    thr = items.out.type(threshold)
    counts = np.zeros(items.n, INDEX)
    if items.n and items.m:
        for r0, part in items.parts(budget):
            part.run("count", thr, counts[r0 : r0 + part.n])
    offsets = np.zeros(items.n, INDEX)
    np.cumsum(counts[:-1], out=offsets[1:])
    total = int(counts.sum())
    size = total if max_pairs is None else max_pairs
    rows, cols = np.full(size, -1, INDEX), np.full(size, -1, INDEX)
    vals = np.zeros(size, items.out)
    if size and total:
        for r0, part in items.parts(budget):
            r1 = r0 + part.n
            part.run("write", thr, offsets[r0:r1], rows, cols, vals)
            if r0:  # a tile wrote its own row numbers
                rows[min(size, offsets[r0]) : min(size, offsets[r1 - 1] + counts[r1 - 1])] += r0
    return rows, cols, vals, np.asarray(total, INDEX)
