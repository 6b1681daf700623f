"""Segmented (ragged) IoU on the JAX engine, under ``jax.jit``, in one of two formulations.

- "flat" (GPU/TPU, and boxes on CPU when "rows" would pad too much): every output element finds
  its segment from the block starts (a running count), and the two operands of its pair are
  gathered. The number of pairs is padded up to one of eight sizes per power of two (the extra
  pairs repeat the last one and are sliced off), so datasets of similar size share one compiled
  program instead of retracing for each.
- "rows" (boxes on CPU): one output row per row of set 1, against the ``W`` boxes of set 2 that
  follow its segment's first one (``W`` the widest segment of set 2), as one dense ``(K1, W)``
  broadcast: the row-level bookkeeping (``K1`` numbers) is made on the host, so there is no
  running count, division or per-pair search over the ``T`` pairs, which XLA:CPU runs element by
  element. When every segment of set 2 has ``W`` boxes the ``(K1, W)`` values are the output
  itself; otherwise the columns past each segment's width are dropped by a scatter. Chosen when
  the dense shape holds at most four times the pairs (measured on 2 CPU cores, 5000 images of
  1-50 x 100 boxes, 12.7M pairs: 1.26 s flat, 0.10 s rows, Numba 0.018 s; XLA:CPU writes a
  fresh 12.7M-element output at about 0.04 s).

Masks count each pair's intersection with ``lax.population_count`` on GPU/TPU and with shifts,
masks and adds on CPU, where XLA runs ``population_count`` one word at a time (100 images of
1-10 x 10 masks at 480 x 640: 0.42 s -> 0.055 s; Numba 0.010 s).

Masks of images of many sizes (:func:`image_mask_iou`, behind ``evaluate``) are packed into
rows of ``CHUNK`` words, as many rows a mask as its pixels need, so that the programs serve
every size, instead of a few programs for each distinct (H, W) (COCO val2017 has hundreds).
Measured on 2 cores, 20 images of 20 sizes between 300 and 640 pixels a side (3 x 5 masks
each), fresh processes: first call 10.1-11.5 s -> 1.6-1.8 s, as for 20 images of one size
(1.4-1.9 s). On CPU the masks are packed by NumPy where jax keeps them (host memory), and
each pair is counted only over the rows that both its masks reach (see :func:`image_mask_iou`):
500 images of 480 x 640 with 1-10 x 10 masks (``benchmarks/evaluate.py``), fresh arrays, in one
process on 2 cores: ``evaluate`` 2.0 s -> 0.34 s (Numba 0.37 s).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ... import _formats
from .boxes import _extent, _extreme, _formula, _value, dtype_name
from .masks import BITS, _byte_counts, _count_dtype, _ratio

_INT32_MAX = 2**31 - 1


def _pairs(off1: Any, off2: Any, start: Any, padded: int) -> tuple[Any, Any, Any]:
    """(row of set 1, row of set 2, segment) of output elements 0..padded (traced); elements
    past the total repeat the last one. The segment of element k is the number of block starts
    ``start[1:-1]`` at or below k: a scatter of ones at the starts and a running sum."""
    marks = jnp.zeros(padded, jnp.int32).at[start[1:-1]].add(1, mode="drop")
    k = jnp.minimum(jnp.arange(padded, dtype=jnp.int32), start[-1] - 1)
    seg = jnp.cumsum(marks)[k]
    r = k - start[seg]
    width = off2[seg + 1] - off2[seg]
    return off1[seg] + r // width, off2[seg] + r % width, seg


def _device_offsets(func: str, off1: np.ndarray, off2: np.ndarray,
                    start: np.ndarray) -> tuple[Any, ...]:
    """The offsets as int32 jax arrays, and the padded number of pairs."""
    total = int(start[-1])
    if max(total, int(off1[-1]), int(off2[-1])) > _INT32_MAX:
        raise ValueError(
            f"{func}: the JAX engine indexes with int32, and this call has {total} pairs of "
            f"{int(off1[-1])} x {int(off2[-1])} rows; split the dataset"
        )
    step = 1 << max(10, total.bit_length() - 3)  # at most 8 sizes per octave, < 12.5% padding
    padded = -(-total // step) * step
    return tuple(jnp.asarray(a.astype(np.int32)) for a in (off1, off2, start)) + (padded,)


@functools.partial(jax.jit, static_argnames=("padded", "compute", "out"))
def _box_pairs(c1, c2, off1, off2, start, zd, *, padded, compute, out):
    i, j, _ = _pairs(off1, off2, start, padded)
    c1, c2 = c1.astype(compute), c2.astype(compute)
    a, b = c1[i], c2[j]
    # box_iou's own value: the plain formula, and the scaled one for pairs with an extreme box.
    # Whether any box is extreme is asked of the two sets, not of the gathered pairs.
    limits = _formats.scale_limits(compute, a.shape[-1] // 2)
    zd = jnp.asarray(zd, compute)
    extreme = jnp.any(_extreme(c1, *limits)) | jnp.any(_extreme(c2, *limits))
    value = lax.cond(extreme, lambda: _value(a, b, "iou", zd, limits),
                     lambda: _formula(a, b, "iou", zd))
    return value.astype(out)


# Formulation of the segmented boxes: None chooses by ``jax.default_backend()`` when the call is
# made ("rows" on CPU where it pads little, "flat" elsewhere); tests set either one.
FORMULATION: str | None = None
# "rows" computes at most this many values per output pair. Measured on 2 cores, 3000 images,
# against "flat": 1.3x padding 0.31 s vs 1.27 s, 5.2x 0.24 s vs 0.35 s, 12.7x 0.12 s vs 0.06 s.
_ROWS_PADDING = 4.0


def _row_layout(off1: np.ndarray, off2: np.ndarray, start: np.ndarray) -> tuple[Any, ...] | None:
    """Host bookkeeping of the "rows" formulation, or None for "flat".

    Returns ``(first, segment, width, base, W)``: ``first`` ``(S',)``, the first row of set 2 of
    each of the ``S'`` segments that have rows in set 1; then for each row of set 1 (``(K1,)``
    each) its segment among those, that segment's width ``M_s``, and where its output row starts;
    ``W`` is the widest of those segments of set 2. All int32."""
    mode = FORMULATION or ("rows" if jax.default_backend() == "cpu" else "flat")
    if mode != "rows":
        return None
    n, m = np.diff(off1), np.diff(off2)
    total, k1, k2 = int(start[-1]), int(off1[-1]), int(off2[-1])
    used = np.flatnonzero(n > 0)
    w = int(m[used].max()) if used.size else 0
    # Every index made from these (rows of set 2 below k2 + w, output positions below
    # total + w <= k1 * w + w) fits in int32; checked in float64, no int64 overflow.
    if w == 0 or float(k1) * w + k2 + w > _INT32_MAX:
        return None
    if FORMULATION is None and float(k1) * w > _ROWS_PADDING * total:
        return None
    segment = np.repeat(np.arange(used.shape[0]), n[used])
    seg = used[segment]
    width = m[seg]
    base = start[seg] + (np.arange(k1) - off1[seg]) * width
    return tuple(jnp.asarray(a.astype(np.int32))
                 for a in (off2[used], segment, width, base)) + (w,)


@functools.partial(jax.jit, static_argnames=("w", "compute"))
def _tiles(c1, c2, first, *, w, compute):
    """Each used segment's ``W`` boxes of set 2 as corner columns ``(2d, S', W)`` (past the
    segment's width: other boxes, or the last one, whose values are dropped), and whether any
    box of either set is extreme (see ``_formats.scale_limits``)."""
    c1, c2 = c1.astype(compute), c2.astype(compute)
    rows = jnp.minimum(first[:, None] + jnp.arange(w, dtype=jnp.int32), c2.shape[0] - 1)
    limits = _formats.scale_limits(compute, c2.shape[-1] // 2)
    extreme = jnp.any(_extreme(c1, *limits)) | jnp.any(_extreme(c2, *limits))
    return jnp.moveaxis(c2[rows], -1, 0), extreme


@functools.partial(jax.jit, static_argnames=("total", "compact", "extreme", "compute", "out"))
def _box_rows(c1, tiles, segment, width, base, zd, flag, *, total, compact, extreme, compute,
              out):
    """Rows ``c1 (K1, 2d)`` against ``tiles (2d, S', W)`` picked by ``segment (K1,)``: the
    ``(total,)`` values, rows of ``width (K1,)`` values at ``base (K1,)`` one after another.

    ``extreme`` is False or True when known on the host, None to decide on the device by
    ``flag``. The scaled branch (some box is extreme) gathers the ``(K1, W, 2d)`` boxes of set 2
    at once."""
    c1 = c1.astype(compute)
    d, w = tiles.shape[0] // 2, tiles.shape[-1]
    zd = jnp.asarray(zd, compute)

    def terms(cols: list[Any]) -> tuple[Any, ...]:
        lo, hi = cols[:d], cols[d:]
        ext = [_extent(a, b) for a, b in zip(lo, hi)]
        return lo, hi, ext, functools.reduce(jnp.multiply, ext)

    def plain() -> Any:  # one fused loop over the (K1, W) pairs; set 2 by rows of tiles
        return _formula(terms([c1[:, None, k] for k in range(2 * d)]),
                        terms([t[segment] for t in tiles]), "iou", zd)

    def scaled() -> Any:
        b = jnp.moveaxis(tiles, 0, -1)[segment]
        return _value(c1[:, None, :], b, "iou", zd, _formats.scale_limits(compute, d))

    if extreme is None:  # traced inputs: both branches compiled, one runs
        value = lax.cond(flag, scaled, plain)
    else:  # a lax.cond costs a copy of the (K1, W) values on CPU
        value = scaled() if extreme else plain()
    value = value.astype(out)
    if not compact:  # every row is W wide: the rows, one after another, are the output
        return value.reshape(total)
    j = jnp.arange(w, dtype=jnp.int32)
    index = jnp.where(j < width[:, None], base[:, None] + j, total)
    return jnp.zeros(total, out).at[index].set(value, mode="drop", unique_indices=True)


def box_iou(b1: Any, b2: Any, off1: np.ndarray, off2: np.ndarray, start: np.ndarray, *,
            fmt: str, compute: Any, out_dtype: Any, zero_division: float) -> Any:
    """Blocks of boxes ``b1 (K1, 2d)`` x ``b2 (K2, 2d)`` in ``fmt``; returns ``(total,)``."""
    total = int(start[-1])
    if total == 0:
        return jnp.zeros((0,), out_dtype)
    layout = _row_layout(off1, off2, start) if total <= _INT32_MAX else None
    if layout is not None:
        first, segment, width, base, w = layout
        c1 = _formats.to_corners(jnp, b1.astype(compute), fmt)
        c2 = _formats.to_corners(jnp, b2.astype(compute), fmt)
        name = dtype_name(compute)
        # Two calls: the tiles are made once, not gathered again for each pair.
        tiles, flag = _tiles(c1, c2, first, w=w, compute=name)
        try:
            extreme: bool | None = bool(flag)
        except jax.errors.ConcretizationTypeError:  # under jit or vmap: decided on the device
            extreme = None
        return _box_rows(c1, tiles, segment, width, base, zero_division, flag, total=total,
                         compact=int(off1[-1]) * w != total, extreme=extreme, compute=name,
                         out=dtype_name(out_dtype))
    *offsets, padded = _device_offsets("segmented_box_iou", off1, off2, start)
    c1 = _formats.to_corners(jnp, b1.astype(compute), fmt)
    c2 = _formats.to_corners(jnp, b2.astype(compute), fmt)
    return _box_pairs(c1, c2, *offsets, zero_division, padded=padded,
                      compute=dtype_name(compute), out=dtype_name(out_dtype))[:total]


# Formulation of the segmented masks' count: None chooses by ``jax.default_backend()`` when the
# call is made ("swar" on CPU, "popcount" elsewhere); tests set either one.
MASK_FORMULATION: str | None = None
# Words of one packed row of :func:`image_mask_iou`: a mask of ``H W`` pixels is
# ``_chunks(H W)`` rows of ``CHUNK`` words (8,192 pixels a row, so at most 8,191 pixels of
# zeros a mask: under 1.5 % of the words of a 480 x 640 mask on average).
CHUNK = 256


def _mask_group(words: int) -> int:
    """Words summed per group by the CPU count (see :func:`_swar_rows`), 0 for popcount."""
    mode = MASK_FORMULATION or ("swar" if jax.default_backend() == "cpu" else "popcount")
    if mode != "swar" or words == 0:
        return 0
    return max(g for g in range(1, 32) if words % g == 0)


def _swar_rows(x: Any, group: int) -> Any:
    """Set bits of each row of ``x (T, C)`` uint32 words, summed -> ``(T,)`` uint32, with
    shifts, masks and adds that vectorize on CPU (XLA:CPU runs ``lax.population_count`` one word
    at a time): per-byte counts of ``group`` words (``group <= 31``: no byte passes 248) added as
    uint32, folded to one count per group, and the groups summed."""
    y = jnp.sum(_byte_counts(x).reshape(x.shape[0], -1, group), axis=2, dtype=jnp.uint32)
    y = (y & jnp.uint32(0x00FF00FF)) + ((y >> jnp.uint32(8)) & jnp.uint32(0x00FF00FF))
    y = (y & jnp.uint32(0xFFFF)) + (y >> jnp.uint32(16))
    return jnp.sum(y, axis=1, dtype=jnp.uint32)


@functools.partial(jax.jit, static_argnames=("padded", "tile", "group"))
def _mask_pairs(w1, a1, w2, a2, off1, off2, start, zd, *, padded, tile, group):
    """IoU of the pairs of segments ``off1 x off2`` -> ``(padded,)`` float32.

    ``w1 (K1, C)`` are packed masks (one row a mask) and ``a1 (K1,)`` their areas (the same for
    set 2). Pairs are counted ``tile`` at a time (``tile`` divides ``padded``)."""
    i, j, _ = _pairs(off1, off2, start, padded)

    def one_row(rows):
        p, q = rows
        return _row_counts(w1[p] & w2[q], group), a1[p], a2[q]

    if tile == padded:  # one tile: no loop over the tiles (a shorter compilation)
        inter, area1, area2 = one_row((i, j))
    else:
        inter, area1, area2 = (v.reshape(-1) for v in lax.map(
            one_row, (i.reshape(-1, tile), j.reshape(-1, tile))))
    return _ratio(inter, area1, area2, "iou", jnp.asarray(zd, jnp.float32))


def _pad_segments(a: np.ndarray, length: int) -> np.ndarray:
    """``a`` (non-empty) with its last entry repeated up to ``length`` entries (empty segments
    past the last one), so that datasets with similar image counts share the compiled count."""
    return np.concatenate([a, np.repeat(a[-1:], length - a.shape[0])])


def _tile(budget: int, words: int, padded: int) -> int:
    """Elements of one tile: those whose rows of ``words`` words fit ``budget`` bytes, a power
    of two that divides ``padded`` (or ``padded`` itself)."""
    tile = max(1, budget // (4 * max(1, words)))
    return padded if tile >= padded else min(1 << (tile.bit_length() - 1), padded & -padded)


def mask_iou(w1: Any, a1: Any, w2: Any, a2: Any, off1: np.ndarray, off2: np.ndarray,
             start: np.ndarray, *, zero_division: float, budget: int) -> Any:
    """Blocks of packed masks ``w1 (K1, L)`` x ``w2 (K2, L)`` (uint32 words, one row a mask)
    and their areas ``a1 (K1,)``, ``a2 (K2,)``; returns the flat ``(total,)`` float32 values.
    Pairs are counted a tile at a time within ``budget`` bytes."""
    total = int(start[-1])
    if total == 0:
        return jnp.zeros((0,), jnp.float32)
    segments = _bucket(off1.shape[0] - 1, least=1)
    off1, off2, start = (_pad_segments(a, segments + 1) for a in (off1, off2, start))
    *offsets, padded = _device_offsets("segmented_mask_iou", off1, off2, start)
    words = w1.shape[1]
    return _mask_pairs(w1, a1, w2, a2, *offsets, zero_division, padded=padded,
                       tile=_tile(budget, words, padded), group=_mask_group(words))[:total]


def _chunks(pixels: int) -> int:
    """Rows of ``CHUNK`` words that a mask of ``pixels`` pixels is packed into."""
    return -(-pixels // (BITS * CHUNK))


def _row_counts(x: Any, group: int) -> Any:
    """Set bits of each row of ``x (T, C)`` uint32 words -> ``(T,)`` uint32: by
    :func:`_swar_rows` when ``group`` (see :func:`_mask_group`), by popcount otherwise."""
    if group:
        return _swar_rows(x, group)
    return jnp.sum(lax.population_count(x), axis=1, dtype=jnp.uint32)


@functools.partial(jax.jit, static_argnames=("tile", "group"))
def _span_pairs(w1, w2, r1, r2, pair, area1, area2, *, tile, group):
    """IoU of pairs of masks from the rows that both may cover -> ``(P,)`` float32.

    Entry ``e`` of ``r1, r2, pair (E,)``: row ``r1[e]`` of ``w1 (R1, C)`` and row ``r2[e]`` of
    ``w2 (R2, C)`` (uint32 words) are rows of the two masks of pair ``pair[e]``; a pair's
    entries are consecutive, a pair ``>= P`` is padding (dropped). ``area1, area2 (P,)``: the
    areas of each pair's masks. Entries are counted ``tile`` at a time (``tile`` divides E)."""
    def count(rows):
        p, q = rows
        return _row_counts(w1[p] & w2[q], group)

    if tile == r1.shape[0]:
        counts = count((r1, r2))
    else:
        counts = lax.map(count, (r1.reshape(-1, tile), r2.reshape(-1, tile))).reshape(-1)
    inter = jnp.zeros(area1.shape[0], jnp.uint32).at[pair].add(
        counts, mode="drop", indices_are_sorted=True)
    return _ratio(inter, area1, area2, "iou", jnp.float32(0))


def _mask_rows(area: np.ndarray, first: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per mask (rows ``first[k]`` to ``first[k] + rows[k]``, one after another, of the
    ``area`` of each packed row): its area and the first and last of its rows that hold a set
    bit, counted from ``first[k]`` (an empty mask: first 0, last -1)."""
    count = first.shape[0]
    total, lo, hi = np.zeros(count, np.int64), np.zeros(count, np.int64), np.full(count, -1)
    has = np.flatnonzero(rows > 0)
    if has.size:
        at, index = first[has], np.arange(area.shape[0])
        total[has] = np.add.reduceat(area, at)
        lo[has] = np.minimum.reduceat(np.where(area > 0, index, area.shape[0]), at) - at
        hi[has] = np.maximum.reduceat(np.where(area > 0, index, -1), at) - at
    return total, lo, hi


def image_mask_iou(gt: list[Any], pred: list[Any], *, budget: int) -> Any:
    """IoU blocks of images of any sizes, with a number of compiled programs that does not
    depend on how many sizes there are.

    Parameters
    ----------
    gt, pred : lists of Array[G_i, H_i, W_i] and Array[P_i, H_i, W_i]
        The masks of each image (bool or integer, checked; non-zero is foreground).
    budget : int
        Bytes of the temporaries of one tile of rows.

    Returns
    -------
    Array[sum G_i P_i] float32
        Each image's ``G_i x P_i`` block (row-major), one image after another; union 0 gives 0.

    Every mask is packed into ``_chunks(H_i W_i)`` rows of ``CHUNK`` words (see
    :func:`_pack_rows`; zeros past ``H_i W_i``), so that the compiled programs serve every size;
    only counts of AND-ed rows are taken. The areas of the rows are read on the host, and a pair
    of masks is counted over the rows from the later of their first rows with a set bit to the
    earlier of their last ones, one entry per row (100 images of 480 x 640 with 1-10 x 10
    rectangles, as in ``benchmarks/evaluate.py``: 4.6 % of the rows of every pair).
    """
    n = np.array([int(x.shape[0]) for x in gt], np.int64)
    m = np.array([int(x.shape[0]) for x in pred], np.int64)
    size = n * m
    total = int(size.sum()) if gt else 0
    if total == 0:
        return jnp.zeros((0,), jnp.float32)
    pairs = _bucket(total)  # padded: datasets of similar size share the compiled count
    if pairs > _INT32_MAX:
        raise ValueError(f"evaluate: the JAX engine indexes with int32, and this call has {total} "
                         "pairs of masks; split the dataset")
    chunks = np.array([_chunks(int(x.shape[1]) * int(x.shape[2])) for x in gt], np.int64)
    group = _mask_group(CHUNK)
    sets = []
    for side, count in ((gt, n), (pred, m)):
        words, area, _ = _pack_rows("evaluate", side, chunks, CHUNK)
        rows = np.repeat(chunks, count)  # rows of each mask, masks one after another
        first = np.concatenate([[0], np.cumsum(rows)[:-1]])
        sets.append((words, first, *_mask_rows(np.asarray(area).astype(np.int64), first, rows)))
    (w1, first1, area1, lo1, hi1), (w2, first2, area2, lo2, hi2) = sets
    # Pair t of image i is (gt u, pred v) of that image, t = start[i] + u m[i] + v.
    start = np.concatenate([[0], np.cumsum(size)])
    image = np.repeat(np.arange(n.shape[0]), size)
    local = np.arange(total) - start[image]
    p = np.concatenate([[0], np.cumsum(n)])[image] + local // m[image]
    q = np.concatenate([[0], np.cumsum(m)])[image] + local % m[image]
    lo = np.maximum(lo1[p], lo2[q])
    span = np.maximum(np.minimum(hi1[p], hi2[q]) - lo + 1, 0)
    # The entries (a few int64 and int32 numbers each, on the host and on the device) are made
    # and counted for runs of pairs of at most ``limit`` entries (a pair has at most one mask's
    # rows, fewer than ``limit``): memory within ``budget`` however many pairs overlap.
    limit = max(budget // _ENTRY_BYTES, 2 * int(chunks.max()))
    ends = np.cumsum(span)
    cuts = np.searchsorted(ends, np.arange(limit, int(ends[-1]), limit), side="right").tolist()
    values = []
    for a, b in zip([0, *cuts], [*cuts, total]):
        if a == b:
            continue
        width = _bucket(b - a)  # padded: datasets of similar size share the compiled count
        r1, r2, pair, count = _entries(span[a:b], first1[p[a:b]] + lo[a:b],
                                       first2[q[a:b]] + lo[a:b], width)
        areas = (jnp.asarray(_pad_zeros(x, width).astype(_count_dtype()))
                 for x in (area1[p[a:b]], area2[q[a:b]]))
        values.append(_span_pairs(w1, w2, r1, r2, pair, *areas, tile=_tile(budget, CHUNK, count),
                                  group=group)[:b - a])
    return values[0] if len(values) == 1 else jnp.concatenate(values)


# Bytes of one entry of :func:`image_mask_iou` while it is made: four int64 numbers on the host,
# three int32 on the device, and the count.
_ENTRY_BYTES = 48


def _pad_zeros(x: np.ndarray, length: int) -> np.ndarray:
    return np.concatenate([x, np.zeros(length - x.shape[0], x.dtype)])


def _entries(span: np.ndarray, row1: np.ndarray, row2: np.ndarray,
             drop: int) -> tuple[Any, ...]:
    """The entries of pairs ``0..P`` (``span (P,)`` rows each, from rows ``row1 (P,)`` of set 1
    and ``row2`` of set 2) for :func:`_span_pairs`: ``(r1, r2, pair, padded)``, int32 on the
    device, padded to a bucket (padding entries: rows 0 of pair ``drop``, out of range)."""
    pairs = span.shape[0]
    entries = int(span.sum())
    padded = _bucket(entries)
    if max(padded, drop) > _INT32_MAX:
        raise ValueError(f"evaluate: the JAX engine indexes with int32, and this call counts "
                         f"{entries} rows of pairs of masks; split the dataset")
    pair = np.repeat(np.arange(pairs), span)
    step = np.arange(entries) - np.repeat(np.cumsum(span) - span, span)

    def device(x: np.ndarray, fill: int) -> Any:
        return jnp.asarray(np.concatenate([x, np.full(padded - entries, fill)]).astype(np.int32))

    return (device(row1[pair] + step, 0), device(row2[pair] + step, 0), device(pair, drop),
            padded)


def _flat_words(pixels: int) -> int:
    """Words a mask of ``pixels`` pixels is packed into by :func:`_pack_flat`: a multiple of 8,
    so that the CPU count sums groups of at least 8 words (see :func:`_mask_group`)."""
    return -(-pixels // (8 * BITS)) * 8


def _pack_flat(x: Any) -> Any:
    """Masks ``x (N, H, W)`` (non-zero is foreground) -> ``words (N, L)`` uint32,
    ``L = _flat_words(H W)``.

    The bits are in an order of this module's own, not ``pack_masks``' row layout (only counts
    of AND-ed words are taken from them): pixel ``b L + l`` of the flattened mask (zero past
    ``H W``) is bit ``b`` of word ``l``. So a word is a sum of 32 shifted 0/1 bytes taken
    elementwise along ``L``, down the leading axis, which XLA:CPU vectorizes (480 x 640 bool
    masks on 2 cores: about 6 Gpixel/s, where ``x.astype(uint8)`` alone runs at 6 to 8 and the
    row layout's sum along the last axis at 2.2). In :func:`_pack_image` XLA fuses all of it into
    the write of the rows: no temporary, whether ``H W`` is a multiple of 32 or not."""
    n, pixels = x.shape[0], x.shape[1] * x.shape[2]
    words = _flat_words(pixels)
    fg = x.astype(jnp.uint8) if x.dtype == jnp.bool_ else (x != 0).astype(jnp.uint8)
    fg = jnp.pad(fg.reshape(n, pixels), ((0, 0), (0, words * BITS - pixels)))
    bits = fg.reshape(n, BITS, words).astype(jnp.uint32)
    return jnp.sum(bits << jnp.arange(BITS, dtype=jnp.uint32)[:, None], axis=1, dtype=jnp.uint32)


def _write(words: Any, area: Any, x: Any, row: Any) -> tuple[Any, Any]:
    """Pack ``x (N, H, W)`` (see :func:`_pack_flat`) into rows ``row:row + N`` of
    ``words (R, L)`` and their set bits into ``area (R,)``. The areas are counted from the rows
    written, so that the masks are read once."""
    zero = jnp.int32(0)
    words = lax.dynamic_update_slice(words, _pack_flat(x), (row, zero))
    written = lax.dynamic_slice(words, (row, zero), (x.shape[0], words.shape[1]))
    a = jnp.sum(lax.population_count(written), axis=1, dtype=area.dtype)
    return words, lax.dynamic_update_slice(area, a, (row,))


@functools.partial(jax.jit, static_argnames=("chunks", "words"), donate_argnums=(0, 1))
def _pack_image(buf, area, x, row, *, chunks, words):
    """One image's masks ``x (N, H, W)``, zeros past ``H W``, as ``N chunks`` rows of
    ``words`` words from ``row`` on (see :func:`_write`)."""
    n, pixels = x.shape[0], x.shape[1] * x.shape[2]
    x = jnp.pad(x.reshape(n, pixels), ((0, 0), (0, chunks * BITS * words - pixels)))
    return _write(buf, area, x.reshape(n * chunks, BITS, words), row)


@functools.partial(jax.jit, static_argnames=("group",))
def _row_areas(words, *, group):
    """Set bits of each row of ``words (R, L)`` uint32 -> ``(R,)``."""
    return _row_counts(words, group).astype(_count_dtype())


# How :func:`image_mask_iou` packs the masks: None chooses by ``jax.default_backend()``
# ("host" on CPU, "images" elsewhere); tests set either one.
# "images": one jitted call per image, which compiles one program per distinct shape of an
# image's masks (0.3-0.7 s each on CPU). "host": jax arrays on the CPU are host memory that NumPy
# reads without a copy; every mask is packed by ``np.packbits`` (one read of the masks, near
# memory speed) straight into one aligned host buffer, which jax then uses without a copy, and
# only the areas are counted by a compiled program (one for every size).
PACK: str | None = None
# Alignment of the host buffer of "host": XLA:CPU uses a NumPy array in place (no copy) when its
# data is aligned so.
_ALIGN = 64


def _bucket(count: int, least: int = 8) -> int:
    """``count`` rounded up to one of eight sizes per power of two (to ``least`` at least)."""
    step = 1 << max(0, count.bit_length() - 3)
    return max(least, -(-count // step) * step)


def _pack_host(masks: list[Any], chunks: np.ndarray, row: np.ndarray, rows: int,
               words: int) -> Any:
    """``words (rows, words)`` uint32 on jax's CPU device: the masks of image ``i`` packed
    from row ``row[i]`` on, ``chunks[i]`` rows a mask, zeros elsewhere.

    Pixel ``p`` of a flattened mask is bit ``p % 8`` of its byte ``p // 8``: as uint32 words,
    an order of this module's own (only counts of AND-ed words are taken from them)."""
    size = rows * words * 4
    raw = np.zeros(size + _ALIGN, np.uint8)
    skip = -raw.ctypes.data % _ALIGN
    buf = raw[skip:skip + size]
    for x, k, r in zip(masks, chunks, row):
        n, k, r = int(x.shape[0]), int(k), int(r)
        if n and k:
            bits = np.packbits(np.asarray(x).reshape(n, -1), axis=1, bitorder="little")
            span = buf[r * words * 4:(r + n * k) * words * 4].reshape(n, k * words * 4)
            span[:, :bits.shape[1]] = bits
    return jax.device_put(buf.view(np.uint32).reshape(rows, words))


def _pack_rows(func: str, masks: list[Any], chunks: np.ndarray,
               words: int) -> tuple[Any, Any, np.ndarray]:
    """The masks of several images, ``(N_i, H_i, W_i)`` each (bool or integer, checked), packed
    one image after another into ``chunks[i]`` rows of ``words`` words a mask (a multiple of 8;
    ``chunks[i] * words * 32 >= H_i W_i``).

    Returns ``buf (R, words)`` uint32, ``area (R,)`` the set bits of each row, and ``row (n,)``
    the first row of each image. Rows past the masks are zero; ``R`` is rounded up to one of
    eight sizes per power of two, so that datasets of similar size share the compiled programs.
    """
    counts = np.array([int(x.shape[0]) for x in masks], np.int64) * chunks
    row = np.concatenate([[0], np.cumsum(counts)])
    total = int(row[-1])
    rows = _bucket(total)
    if rows > _INT32_MAX:
        raise ValueError(f"{func}: {total} packed rows of masks do not fit int32 row indices; "
                         "split the dataset")
    if (PACK or ("host" if jax.default_backend() == "cpu" else "images")) == "host":
        buf = _pack_host(masks, chunks, row, rows, words)
        return buf, _row_areas(buf, group=_mask_group(words)), row[:-1]
    buf = jnp.zeros((rows, words), jnp.uint32)
    area = jnp.zeros((buf.shape[0],), _count_dtype())
    for x, k, r in zip(masks, chunks, row):
        if int(x.shape[0]) and k:
            buf, area = _pack_image(buf, area, x, np.int32(r), chunks=int(k), words=words)
    return buf, area, row[:-1]
