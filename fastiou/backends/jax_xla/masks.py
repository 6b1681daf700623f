"""Dense masks on the JAX engine: rows packed to uint32 words, intersections by
``lax.population_count``.

uint32 words work whether x64 is enabled or not. Every step runs under ``lax.map`` with a
``batch_size`` computed from the memory budget, so the largest temporary (the packed AND of a tile
of pairs, or the bits of a tile of masks while packing) stays within it whatever XLA fuses.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ..._validate import MaskPair, size

BITS = 32


def _count_dtype() -> Any:
    return jax.dtypes.canonicalize_dtype(np.int64)


@functools.partial(jax.jit, static_argnames=("rule", "tile"))
def _pack(x, cut, *, rule, tile):
    *lead, height, width = x.shape
    k = -(-width // BITS)
    shifts = jnp.arange(BITS, dtype=jnp.uint32)

    def one(mask):  # (H, W) -> (H, K) words, area
        fg = (mask >= cut) if rule == "atleast" else (mask != 0)
        fg = jnp.pad(fg, ((0, 0), (0, k * BITS - width))).reshape(height, k, BITS)
        words = jnp.sum(fg.astype(jnp.uint32) << shifts, axis=-1, dtype=jnp.uint32)
        return words, jnp.sum(lax.population_count(words), dtype=jnp.uint32)

    flat = x.reshape((-1, height, width))
    words, area = lax.map(one, flat, batch_size=tile)
    return words.reshape(tuple(lead) + (height, k)), area.astype(_count_dtype()).reshape(lead)


def pack_masks(x: Any, *, rule: str, cut: Any, budget: int) -> tuple[Any, Any]:
    """Masks (..., H, W) -> (words (..., H, K) uint32, area (...) int64 or int32)."""
    *lead, height, width = x.shape
    k = -(-width // BITS)
    if rule == "none" or size(x.shape) == 0:
        return (jnp.zeros(tuple(lead) + (height, k), jnp.uint32),
                jnp.zeros(tuple(lead), _count_dtype()))
    # Per mask: the bool mask and its bits as uint32 (5 bytes a pixel) at most.
    tile = max(1, budget // max(1, 5 * height * k * BITS))
    cut = jnp.asarray(0 if cut is None else cut, dtype=x.dtype)
    return _pack(x, cut, rule=rule, tile=min(tile, size(lead) or 1))


def _ratio(inter: Any, area1: Any, area2: Any, op: str, zd: Any) -> Any:
    inter = inter.astype(area1.dtype)
    den = area1 if op == "ioa" else area1 + area2 - inter
    ok = den != 0
    wide = jax.dtypes.canonicalize_dtype(np.float64)  # float32 when x64 is disabled
    value = inter.astype(wide) / jnp.where(ok, den, 1).astype(wide)
    return jnp.where(ok, value.astype(jnp.float32), zd)


# Formulation of the pairwise count: None chooses by ``jax.default_backend()`` when the call is
# traced ("swar" on CPU, "popcount" elsewhere); tests set either to run it on any device.
FORMULATION: str | None = None


def _group(words: int, tile_m: int, m: int) -> int:
    """Words summed per group by the CPU count (see :func:`_swar_count`), or 0 for
    ``lax.population_count`` summed word by word (accelerators, and column tiles).

    The largest divisor of ``words`` up to 31: 31 words of per-byte counts (at most 8 each) stay
    below 256 in every byte, so a group is summed with plain uint32 adds. Chosen on CPU for at
    least 128 columns, where the adds along M vectorize (measured: 200 x 200 masks of 256 x 256,
    35 ms -> 22 ms of CPU time; 50 x 50 of 480 x 640, 15 ms -> 23 ms, so not there)."""
    auto = "swar" if jax.default_backend() == "cpu" and m >= 128 else "popcount"
    mode = FORMULATION or auto
    if mode != "swar" or tile_m < m or words == 0:
        return 0
    return max(g for g in range(1, 32) if words % g == 0)


def _byte_counts(x: Any) -> Any:
    """The number of set bits of each byte of uint32 words, in that byte (0 to 8)."""
    x = x - ((x >> jnp.uint32(1)) & jnp.uint32(0x55555555))
    x = (x & jnp.uint32(0x33333333)) + ((x >> jnp.uint32(2)) & jnp.uint32(0x33333333))
    return (x + (x >> jnp.uint32(4))) & jnp.uint32(0x0F0F0F0F)


def _swar_count(a: Any, second_t: Any, group: int) -> Any:
    """popcount(a & b) summed over the words, for one row ``a (L,)`` against every column of
    ``second_t (L, M)`` -> ``(M,)`` uint32.

    XLA:CPU runs ``lax.population_count`` one word at a time; these shifts, masks and adds
    vectorize. Per-byte counts of ``group`` words are added as uint32 (no byte passes 248),
    folded to one count per group (at most 992) and the groups summed, down the leading axis so
    that every add is elementwise over M (measured at 200 x 200 masks of 256 x 256: 30 ms ->
    22 ms of CPU time)."""
    words, m = second_t.shape
    y = _byte_counts(a[:, None] & second_t).reshape(words // group, group, m)
    y = jnp.sum(y, axis=1, dtype=jnp.uint32)
    y = (y & jnp.uint32(0x00FF00FF)) + ((y >> jnp.uint32(8)) & jnp.uint32(0x00FF00FF))
    y = (y & jnp.uint32(0xFFFF)) + (y >> jnp.uint32(16))
    return jnp.sum(y, axis=0, dtype=jnp.uint32)


@functools.partial(jax.jit, static_argnames=("op", "batch", "aligned", "tile_n", "tile_m",
                                             "group"))
def _pair(w1, a1, w2, a2, zd, *, op, batch, aligned, tile_n, tile_m, group=0):
    n, height, k = w1.shape[-3:]
    m = w2.shape[-3]
    words, nb = height * k, size(batch)
    w1 = jnp.broadcast_to(w1, batch + (n, height, k)).reshape(nb, n, words)
    w2 = jnp.broadcast_to(w2, batch + (m, height, k)).reshape(nb, m, words)
    a1 = jnp.broadcast_to(a1, batch + (n,)).reshape(nb, n)
    a2 = jnp.broadcast_to(a2, batch + (m,)).reshape(nb, m)
    zd = jnp.asarray(zd, jnp.float32)

    def count(a, b):  # (..., L) x (..., L) -> (...) intersections
        return jnp.sum(lax.population_count(a & b), axis=-1, dtype=jnp.uint32)

    if aligned:
        inter = lax.map(lambda ab: count(*ab), (w1.reshape(nb * n, words), w2.reshape(nb * n, words)),
                        batch_size=tile_n)
        return _ratio(inter.reshape(a1.shape), a1, a2, op, zd).reshape(batch + (n,))

    def one_batch(args):
        first, second = args  # (N, L), (M, L)
        if group:
            second_t = second.T
            return lax.map(lambda a: _swar_count(a, second_t, group), first)

        def row(a):  # (L,) -> (M,): a tile of tile_n rows times tile_m columns at once
            if tile_m >= second.shape[0]:
                return count(a[None, :], second)
            return lax.map(lambda b: count(a, b), second, batch_size=tile_m)

        if tile_n == 1:  # one row at a time: a 2D reduction, which XLA on CPU vectorizes well
            return lax.map(row, first)
        return lax.map(row, first, batch_size=tile_n)

    inter = lax.map(one_batch, (w1, w2))
    return _ratio(inter, a1[:, :, None], a2[:, None, :], op, zd).reshape(batch + (n, m))


def mask_pair(
    w1: Any, a1: Any, w2: Any, a2: Any, *, op: str, spec: MaskPair, zero_division: float,
    budget: int,
) -> Any:
    out_shape = spec.out_shape
    if size(out_shape) == 0:
        return jnp.zeros(out_shape, jnp.float32)
    words = w1.shape[-2] * w1.shape[-1]
    pair_bytes = 4 * max(1, words)  # one AND-ed row of words per pair in flight
    if spec.m < 0:
        tile_n = max(1, min(spec.n * (size(spec.batch) or 1), budget // pair_bytes))
        tile_m = 1
    else:
        tile_m = max(1, min(spec.m, budget // pair_bytes))
        tile_n = max(1, min(spec.n, budget // (pair_bytes * tile_m)))
        if jax.default_backend() == "cpu":
            # On CPU a row of pairs at a time is several times faster than wider tiles (XLA
            # vectorizes the 2D popcount reduction, not the 3D one); accelerators want big tiles.
            tile_n = 1
    group = 0 if spec.m < 0 else _group(words, tile_m, spec.m)
    return _pair(w1, a1, w2, a2, zero_division, op=op, batch=spec.batch, aligned=spec.m < 0,
                 tile_n=tile_n, tile_m=tile_m, group=group)


def _ctz(v: Any) -> Any:
    """Trailing zeros of non-zero uint32 words."""
    return lax.population_count((v & (~v + jnp.uint32(1))) - jnp.uint32(1)).astype(jnp.int32)


@functools.partial(jax.jit, static_argnames=("height",))
def _boxes(words, *, height):
    k = words.shape[-1]
    nonzero = words != 0  # (..., H, K)
    row_any = jnp.any(nonzero, axis=-1)
    first_k = jnp.argmax(nonzero, axis=-1).astype(jnp.int32)
    last_k = (k - 1 - jnp.argmax(nonzero[..., ::-1], axis=-1)).astype(jnp.int32)
    first_w = jnp.take_along_axis(words, first_k[..., None], axis=-1)[..., 0]
    last_w = jnp.take_along_axis(words, last_k[..., None], axis=-1)[..., 0]
    first = first_k * BITS + _ctz(first_w)
    last = last_k * BITS + (BITS - 1) - lax.clz(last_w).astype(jnp.int32)
    big = jnp.iinfo(jnp.int32).max
    x0 = jnp.min(jnp.where(row_any, first, big), axis=-1)
    x1 = jnp.max(jnp.where(row_any, last, -1), axis=-1)
    y0 = jnp.argmax(row_any, axis=-1).astype(jnp.int32)
    y1 = (height - 1 - jnp.argmax(row_any[..., ::-1], axis=-1)).astype(jnp.int32)
    boxes = jnp.stack([x0, y0, x1 + 1, y1 + 1], axis=-1)
    empty = ~jnp.any(row_any, axis=-1)
    return jnp.where(empty[..., None], 0, boxes).astype(jnp.float32)


def mask_boxes(words: Any, *, height: int, width: int) -> Any:
    """Packed (..., H, K) -> boxes (..., 4) float32 'xyxy' in pixel edges."""
    lead = tuple(words.shape[:-2])
    if size(lead) == 0 or height == 0:
        return jnp.zeros(lead + (4,), jnp.float32)
    return _boxes(words, height=height)

