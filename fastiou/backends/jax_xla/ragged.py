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


def _pairs(off1: Any, off2: Any, start: Any, padded: int) -> tuple[Any, Any]:
    """(row of set 1, row of set 2) of output elements 0..padded (traced); elements past the
    total repeat the last one. The segment of element k is the number of block starts
    ``start[1:-1]`` at or below k: a scatter of ones at the starts and a running sum."""
    marks = jnp.zeros(padded, jnp.int32).at[start[1:-1]].add(1, mode="drop")
    k = jnp.minimum(jnp.arange(padded, dtype=jnp.int32), start[-1] - 1)
    seg = jnp.cumsum(marks)[k]
    r = k - start[seg]
    width = off2[seg + 1] - off2[seg]
    return off1[seg] + r // width, off2[seg] + r % width


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
    i, j = _pairs(off1, off2, start, padded)
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


def _mask_group(words: int) -> int:
    """Words summed per group by the CPU count (see :func:`_swar_pair`), 0 for popcount."""
    mode = MASK_FORMULATION or ("swar" if jax.default_backend() == "cpu" else "popcount")
    if mode != "swar" or words == 0:
        return 0
    return max(g for g in range(1, 32) if words % g == 0)


def _swar_pair(x: Any, group: int) -> Any:
    """Set bits of ``x (L,)`` uint32 words, summed -> uint32, with shifts, masks and adds that
    vectorize on CPU (XLA:CPU runs ``lax.population_count`` one word at a time): per-byte
    counts of ``group`` words (``group <= 31``: no byte passes 248) added as uint32, folded to one
    count per group, and the groups summed."""
    y = jnp.sum(_byte_counts(x).reshape(-1, group), axis=1, dtype=jnp.uint32)
    y = (y & jnp.uint32(0x00FF00FF)) + ((y >> jnp.uint32(8)) & jnp.uint32(0x00FF00FF))
    y = (y & jnp.uint32(0xFFFF)) + (y >> jnp.uint32(16))
    return jnp.sum(y, dtype=jnp.uint32)


@functools.partial(jax.jit, static_argnames=("padded", "tile", "group"))
def _mask_pairs(w1, a1, w2, a2, off1, off2, start, zd, *, padded, tile, group):
    i, j = _pairs(off1, off2, start, padded)

    def one(ij):
        if group:
            return _swar_pair(w1[ij[0]] & w2[ij[1]], group)
        return jnp.sum(lax.population_count(w1[ij[0]] & w2[ij[1]]), dtype=jnp.uint32)

    inter = lax.map(one, (i, j), batch_size=tile)
    return _ratio(inter, a1[i], a2[j], "iou", jnp.asarray(zd, jnp.float32))


def mask_iou(w1: Any, a1: Any, w2: Any, a2: Any, off1: np.ndarray, off2: np.ndarray,
             start: np.ndarray, *, zero_division: float, budget: int) -> Any:
    """Blocks of packed masks ``w1 (K1, L)`` x ``w2 (K2, L)`` (uint32 words); returns the flat
    ``(total,)`` float32 values. Pairs are counted a tile at a time within ``budget`` bytes."""
    total = int(start[-1])
    if total == 0:
        return jnp.zeros((0,), jnp.float32)
    *offsets, padded = _device_offsets("segmented_mask_iou", off1, off2, start)
    tile = int(max(1, min(padded, budget // (4 * max(1, w1.shape[1])))))
    return _mask_pairs(w1, a1, w2, a2, *offsets, zero_division, padded=padded, tile=tile,
                       group=_mask_group(w1.shape[1]))[:total]


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


@functools.partial(jax.jit, donate_argnums=(0, 1))
def _pack_into(words, area, x, row):
    """Pack ``x (N, H, W)`` (see :func:`_pack_flat`) into rows ``row:row + N`` of
    ``words (R, L)`` and their areas into ``area (R,)``, in place (the buffers are donated). The
    areas are counted from the rows written, so that the masks are read once."""
    zero = jnp.int32(0)
    words = lax.dynamic_update_slice(words, _pack_flat(x), (row, zero))
    written = lax.dynamic_slice(words, (row, zero), (x.shape[0], words.shape[1]))
    a = jnp.sum(lax.population_count(written), axis=1, dtype=area.dtype)
    return words, lax.dynamic_update_slice(area, a, (row,))


# How :func:`pack_images` feeds the packing: None chooses by ``jax.default_backend()`` ("blocks"
# on CPU, "images" elsewhere); tests set either one. "images": one jitted call per image, which
# compiles one program per distinct number of masks in an image (0.3-0.7 s each on CPU: seconds
# for a dataset's first call). "blocks": the masks, on the host already, copied into blocks of
# a fixed number of masks (at most _BLOCK_BYTES each) and one jitted call per block: one
# program for the whole dataset, at the cost of one copy of the masks at memory speed.
PACK: str | None = None
_BLOCK_BYTES = 1 << 22


def _bucket(count: int, least: int = 8) -> int:
    """``count`` rounded up to one of eight sizes per power of two (to ``least`` at least)."""
    step = 1 << max(0, count.bit_length() - 3)
    return max(least, -(-count // step) * step)


def pack_images(masks: list[Any]) -> tuple[Any, Any]:
    """The masks of several images, ``(N_i, H, W)`` each (bool or integer, checked), packed and
    concatenated: ``words (R, L)`` uint32 (bits in :func:`_pack_flat`'s order) and ``area (R,)``,
    image ``i`` in rows ``sum(N_:i):sum(N_:i+1)``; rows past ``sum(N_i)`` are zero. The rows are
    written in place by jitted calls (see ``PACK``), so there is no per-image array to
    concatenate. ``R`` is rounded up to one of eight sizes per power of two, so that datasets of
    similar size share the compiled programs."""
    height, width = (int(s) for s in masks[0].shape[1:])
    total = sum(int(x.shape[0]) for x in masks)
    if total > _INT32_MAX:
        raise ValueError(f"pack_images: {total} masks do not fit int32 row indices")
    blocks = (PACK or ("blocks" if jax.default_backend() == "cpu" else "images")) == "blocks"
    if blocks:
        dtype = np.result_type(*(x.dtype for x in masks))
        fit = max(1, _BLOCK_BYTES // max(1, height * width * dtype.itemsize))
        size = 1 << (min(fit, _bucket(total)).bit_length() - 1)  # masks a block, a power of two
        rows = _bucket(-(-total // size), least=1) * size
    else:
        rows = _bucket(total)
    words = jnp.zeros((rows, _flat_words(height * width)), jnp.uint32)
    area = jnp.zeros((rows,), _count_dtype())
    if not blocks:
        row = 0
        for x in masks:
            n = int(x.shape[0])
            if n:
                words, area = _pack_into(words, area, x, np.int32(row))
            row += n
        return words, area
    # A new host block each time: jax may keep referring to one it was given (no copy on CPU).
    row, block, fill = 0, np.zeros((size, height, width), dtype), 0
    for x in masks:
        src, k = np.asarray(x), 0
        while k < src.shape[0]:
            take = min(src.shape[0] - k, size - fill)
            block[fill:fill + take] = src[k:k + take]
            fill, k = fill + take, k + take
            if fill == size:
                words, area = _pack_into(words, area, jnp.asarray(block), np.int32(row))
                row, block, fill = row + size, np.zeros((size, height, width), dtype), 0
    if fill:
        words, area = _pack_into(words, area, jnp.asarray(block), np.int32(row))
    return words, area
