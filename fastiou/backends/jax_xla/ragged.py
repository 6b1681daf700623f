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
rows of ``CHUNK`` words, as many rows a mask as its pixels need, so that one packing program
and one counting program serve every size, instead of a few programs for each distinct
(H, W) (COCO val2017 has hundreds). Measured on 2 cores, 20 images of 20 sizes between 300 and
640 pixels a side (3 x 5 masks each), fresh processes: first call 10.1-11.5 s -> 1.6-1.8 s, as
for 20 images of one size (1.4-1.9 s); later calls 0.09-0.11 s -> 0.04 s. Images of one size
run as before (masks of several rows are counted as one row of their words).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ... import _formats
from .boxes import _extent, _extreme, _formula, _value
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
        name = np.dtype(compute).name
        # Two calls: the tiles are made once, not gathered again for each pair.
        tiles, flag = _tiles(c1, c2, first, w=w, compute=name)
        try:
            extreme: bool | None = bool(flag)
        except jax.errors.ConcretizationTypeError:  # under jit or vmap: decided on the device
            extreme = None
        return _box_rows(c1, tiles, segment, width, base, zero_division, flag, total=total,
                         compact=int(off1[-1]) * w != total, extreme=extreme, compute=name,
                         out=np.dtype(out_dtype).name)
    *offsets, padded = _device_offsets("segmented_box_iou", off1, off2, start)
    c1 = _formats.to_corners(jnp, b1.astype(compute), fmt)
    c2 = _formats.to_corners(jnp, b2.astype(compute), fmt)
    return _box_pairs(c1, c2, *offsets, zero_division, padded=padded,
                      compute=np.dtype(compute).name, out=np.dtype(out_dtype).name)[:total]


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


@functools.partial(jax.jit, static_argnames=("padded", "tile", "group", "merge", "single"))
def _mask_pairs(w1, a1, w2, a2, off1, off2, start, row1, row2, chunks, perm, zd, *, padded,
                tile, group, merge, single):
    """IoU of the pairs of segments ``off1 x off2`` -> ``(padded,)`` float32.

    ``w1 (R1, C)`` are packed rows and ``a1 (R1,)`` their set bits (the same for set 2). Mask
    ``i`` of segment ``s`` is the ``chunks[s]`` rows from ``row1[s] + (i - off1[s]) chunks[s]``.
    Pairs are counted ``tile`` at a time (``tile`` divides ``padded``), one row of each pair per
    step, for as many steps as the tile's longest mask has rows. With ``perm`` ``(padded,)``,
    element ``k`` of the result is pair ``perm[k]``. ``merge > 1`` (with ``single``): every
    mask has ``merge`` rows (and ``merge`` divides ``R1`` and ``R2``), counted as one row of
    ``merge C`` words, in one step (measured on 2 cores, 100 images of 480 x 640: 16 ms; 29 ms in
    38 steps).
    ``single``: every mask is (then) one row, mask ``i`` row ``i``: no loop over the rows, which
    halves the compilation (0.6 s instead of 1.1 s on CPU)."""
    if merge > 1:
        w1, w2 = (w.reshape(-1, merge * w.shape[1]) for w in (w1, w2))
        a1, a2 = (a.reshape(-1, merge).sum(1, dtype=a.dtype) for a in (a1, a2))
    i, j, seg = _pairs(off1, off2, start, padded)

    def count(x):
        if group:
            return _swar_rows(x, group)
        return jnp.sum(lax.population_count(x), axis=1, dtype=jnp.uint32)

    def one_row(rows):  # mask i is row i
        p, q = rows
        return count(w1[p] & w2[q]), a1[p], a2[q]

    def rows_of(rows):
        r1, r2, k = rows

        def step(c, acc):
            ok = c < k
            p, q = jnp.where(ok, r1 + c, 0), jnp.where(ok, r2 + c, 0)
            return tuple(s + jnp.where(ok, v, jnp.zeros((), v.dtype))
                         for s, v in zip(acc, one_row((p, q))))

        init = (jnp.zeros(tile, jnp.uint32), jnp.zeros(tile, a1.dtype), jnp.zeros(tile, a2.dtype))
        return lax.fori_loop(0, jnp.max(k), step, init)

    if single:
        tiles = (i, j)
    else:
        k = chunks[seg]
        tiles = (row1[seg] + (i - off1[seg]) * k, row2[seg] + (j - off2[seg]) * k, k)
    fn = one_row if single else rows_of
    if tile == padded:  # one tile: no loop over the tiles (a shorter compilation)
        inter, area1, area2 = fn(tiles)
    else:
        inter, area1, area2 = (v.reshape(-1) for v in lax.map(
            fn, tuple(v.reshape(-1, tile) for v in tiles)))
    value = _ratio(inter, area1, area2, "iou", jnp.asarray(zd, jnp.float32))
    return value if perm is None else value[perm]


def _pad_segments(a: np.ndarray, length: int) -> np.ndarray:
    """``a`` (non-empty) with its last entry repeated up to ``length`` entries (empty segments
    past the last one), so that datasets with similar image counts share the compiled count."""
    return np.concatenate([a, np.repeat(a[-1:], length - a.shape[0])])


def _count_pairs(func: str, w1: Any, a1: Any, w2: Any, a2: Any, off1: np.ndarray,
                 off2: np.ndarray, start: np.ndarray, row1: np.ndarray, row2: np.ndarray,
                 chunks: np.ndarray, perm: np.ndarray | None, zd: float, budget: int) -> Any:
    """Host side of :func:`_mask_pairs`: checked int32 offsets, segments and pairs padded to
    buckets, the tile within ``budget`` bytes. Returns the ``(total,)`` values."""
    total, n = int(start[-1]), off1.shape[0] - 1
    segments = _bucket(n, least=1)
    off1, off2, start = (_pad_segments(a, segments + 1) for a in (off1, off2, start))
    *offsets, padded = _device_offsets(func, off1, off2, start)
    row1, row2, chunks = (_pad_segments(a, segments).astype(np.int32) for a in (row1, row2, chunks))
    uniform = bool(np.all(chunks[:n] == chunks[0]))
    merge = int(chunks[0]) if uniform and chunks[0] > 1 and not (
        w1.shape[0] % chunks[0] or w2.shape[0] % chunks[0]) else 1
    words = merge * w1.shape[1]
    tile = max(1, budget // (4 * max(1, words)))  # pairs whose rows of set 1 fit budget
    if not uniform:  # masks of several sizes: tiles of similar sizes
        tile = min(tile, max(64, padded // 16))
    if tile < padded:  # a power of two that divides padded
        tile = min(1 << (tile.bit_length() - 1), padded & -padded)
    tile = min(tile, padded)
    if perm is not None:
        perm = jnp.asarray(np.concatenate([perm, np.zeros(padded - total, np.int64)])
                           .astype(np.int32))
    return _mask_pairs(w1, a1, w2, a2, *offsets, row1, row2, chunks, perm, zd, padded=padded,
                       tile=tile, group=_mask_group(words), merge=merge,
                       single=uniform and (merge > 1 or int(chunks[0]) == 1))[:total]


def mask_iou(w1: Any, a1: Any, w2: Any, a2: Any, off1: np.ndarray, off2: np.ndarray,
             start: np.ndarray, *, zero_division: float, budget: int) -> Any:
    """Blocks of packed masks ``w1 (K1, L)`` x ``w2 (K2, L)`` (uint32 words, one row a mask)
    and their areas ``a1 (K1,)``, ``a2 (K2,)``; returns the flat ``(total,)`` float32 values.
    Pairs are counted a tile at a time within ``budget`` bytes."""
    if int(start[-1]) == 0:
        return jnp.zeros((0,), jnp.float32)
    ones = np.ones(off1.shape[0] - 1, np.int64)
    return _count_pairs("segmented_mask_iou", w1, a1, w2, a2, off1, off2, start, off1[:-1],
                        off2[:-1], ones, None, zero_division, budget)


def _chunks(pixels: int) -> int:
    """Rows of ``CHUNK`` words that a mask of ``pixels`` pixels is packed into."""
    return -(-pixels // (BITS * CHUNK))


def image_mask_iou(gt: list[Any], pred: list[Any], *, budget: int) -> Any:
    """IoU blocks of images of any sizes, with a number of compiled programs that does not
    depend on how many sizes there are.

    Parameters
    ----------
    gt, pred : lists of Array[G_i, H_i, W_i] and Array[P_i, H_i, W_i]
        The masks of each image (bool or integer, checked; non-zero is foreground).
    budget : int
        Bytes of the temporaries of one tile of pairs.

    Returns
    -------
    Array[sum G_i P_i] float32
        Each image's ``G_i x P_i`` block (row-major), one image after another; union 0 gives 0.

    Every mask is packed into ``_chunks(H_i W_i)`` rows of ``CHUNK`` words (pixel
    ``8192 c + 256 b + l`` of the flattened mask is bit ``b`` of word ``l`` of row ``c``; zeros
    past ``H_i W_i``), so that one packing program and one counting program serve every size;
    only counts of AND-ed rows are taken, and pairs only pair rows of masks of one image. The
    images are counted in the order of their row counts, so that a tile of pairs has masks of
    similar sizes, and the values put back in the images' order.
    """
    n = np.array([int(x.shape[0]) for x in gt], np.int64)
    m = np.array([int(x.shape[0]) for x in pred], np.int64)
    if not gt or int((n * m).sum()) == 0:
        return jnp.zeros((0,), jnp.float32)
    chunks = np.array([_chunks(int(x.shape[1]) * int(x.shape[2])) for x in gt], np.int64)
    order = np.argsort(chunks, kind="stable")
    size = n * m
    start = np.concatenate([[0], np.cumsum(size[order])])
    perm = None
    if np.any(order != np.arange(order.shape[0])):
        rank = np.empty_like(order)
        rank[order] = np.arange(order.shape[0])
        here = np.concatenate([[0], np.cumsum(size)])
        perm = np.repeat(start[rank] - here[:-1], size) + np.arange(int(here[-1]))
    sets = [_pack_rows("evaluate", [side[i] for i in order], chunks[order], CHUNK)
            for side in (gt, pred)]
    (w1, a1, row1), (w2, a2, row2) = sets
    off1 = np.concatenate([[0], np.cumsum(n[order])])
    off2 = np.concatenate([[0], np.cumsum(m[order])])
    return _count_pairs("evaluate", w1, a1, w2, a2, off1, off2, start, row1, row2, chunks[order],
                        perm, 0.0, budget)


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
    row layout's sum along the last axis at 2.2). In :func:`_pack_into` XLA fuses all of it into
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


# In place: the buffers are donated. A block ``x (N, 32, L)`` is N rows of 32 L pixels.
_pack_into = jax.jit(_write, donate_argnums=(0, 1))


@functools.partial(jax.jit, static_argnames=("chunks", "words"), donate_argnums=(0, 1))
def _pack_image(buf, area, x, row, *, chunks, words):
    """One image's masks ``x (N, H, W)``, zeros past ``H W``, as ``N chunks`` rows of
    ``words`` words from ``row`` on (see :func:`_write`)."""
    n, pixels = x.shape[0], x.shape[1] * x.shape[2]
    x = jnp.pad(x.reshape(n, pixels), ((0, 0), (0, chunks * BITS * words - pixels)))
    return _write(buf, area, x.reshape(n * chunks, BITS, words), row)


# How :func:`image_mask_iou` feeds the packing: None chooses by
# ``jax.default_backend()`` ("blocks" on CPU, "images" elsewhere); tests set either one.
# "images": one jitted call per image, which compiles one program per distinct shape of an
# image's masks (0.3-0.7 s each on CPU). "blocks": the masks, on the host already, copied into
# blocks of a fixed number of rows (at most _BLOCK_BYTES each, whole masks) and one jitted call
# per block: one program for the whole dataset, at the cost of one copy of the masks at memory
# speed.
PACK: str | None = None
_BLOCK_BYTES = 1 << 22


def _bucket(count: int, least: int = 8) -> int:
    """``count`` rounded up to one of eight sizes per power of two (to ``least`` at least)."""
    step = 1 << max(0, count.bit_length() - 3)
    return max(least, -(-count // step) * step)


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
    total, pixels = int(row[-1]), BITS * words
    blocks = (PACK or ("blocks" if jax.default_backend() == "cpu" else "images")) == "blocks"
    size = 0
    if blocks:  # rows a block: a power of two, at least one mask's rows
        dtype = np.result_type(*(x.dtype for x in masks))
        fit = max(1, _BLOCK_BYTES // max(1, pixels * dtype.itemsize))
        size = max(1 << (min(fit, _bucket(total)).bit_length() - 1),
                   1 << (max(1, int(chunks.max())) - 1).bit_length())
    rows = _bucket(total + size)
    rows += -rows % max(1, int(chunks.max()))  # whole masks: see ``merge`` in _mask_pairs
    if rows > _INT32_MAX:
        raise ValueError(f"{func}: {total} packed rows of masks do not fit int32 row indices; "
                         "split the dataset")
    buf = jnp.zeros((rows, words), jnp.uint32)
    area = jnp.zeros((buf.shape[0],), _count_dtype())
    if not blocks:
        for x, k, r in zip(masks, chunks, row):
            if int(x.shape[0]) and k:
                buf, area = _pack_image(buf, area, x, np.int32(r), chunks=int(k), words=words)
        return buf, area, row[:-1]
    # A block holds whole masks; a new host block each time: jax may keep referring to one it
    # was given (no copy on CPU). A block is sent when the next mask does not fit: the next one
    # starts where its rows end, and overwrites the zero rows written past them.
    at, fill, block = 0, 0, np.zeros((size, pixels), dtype)
    for x, k in zip(masks, (int(c) for c in chunks)):
        src, first = np.asarray(x), 0
        flat = src.reshape(src.shape[0], src.shape[1] * src.shape[2])
        while k and first < src.shape[0]:
            if fill + k > size:
                buf, area = _pack_into(buf, area, jnp.asarray(block.reshape(size, BITS, words)),
                                       np.int32(at))
                at, fill, block = at + fill, 0, np.zeros((size, pixels), dtype)
            take = min(src.shape[0] - first, (size - fill) // k)
            span = block[fill:fill + take * k].reshape(take, k * pixels)
            span[:, :flat.shape[1]] = flat[first:first + take]
            fill, first = fill + take * k, first + take
    if fill:
        buf, area = _pack_into(buf, area, jnp.asarray(block.reshape(size, BITS, words)),
                               np.int32(at))
    return buf, area, row[:-1]
