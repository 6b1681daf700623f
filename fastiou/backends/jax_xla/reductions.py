"""Fused IoU reductions on the JAX engine: IoU tiles of whole rows, reduced as they are made.

The first set is cut into tiles of ``tile`` rows (padded at the end; padded rows are dropped),
``lax.map`` / ``lax.scan`` walk the tiles, and each tile's IoUs come from the box or mask engine's
own jitted formula, so the values are those of ``box_iou`` / ``mask_iou``. A tile holds at most
``memory_budget`` bytes. Row and column maxima come from one pass: each IoU is made once, and
the column maxima are carried from tile to tile.

``jnp.max`` propagates NaN, ``jnp.argmax`` and ``lax.top_k`` rank NaN first and keep the lowest
index among equals, which is the order of the other engines. Pairs are written by a scan that
scatters each tile's selected pairs at the running offset (row-major order, a static size).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ..._validate import BoxPair
from . import boxes as _boxes
from . import masks as _masks


def index_dtype() -> Any:
    return jax.dtypes.canonicalize_dtype(np.int64)


class Items(NamedTuple):
    kind: str  # 'box' or 'mask'
    a: Any  # boxes (n, 2d) in fmt, or (words (n, H, K), area (n,))
    b: Any
    n: int
    m: int
    zd: float
    out: str  # output dtype name
    words: int  # words per mask (0 for boxes)
    fmt: str = "xyxy"
    compute: str = "float32"


def box_items(b1: Any, b2: Any, *, spec: BoxPair, zero_division: float) -> Items:
    return Items("box", b1, b2, spec.n, spec.m, zero_division, _boxes.dtype_name(spec.out), 0,
                 spec.fmt, _boxes.dtype_name(spec.compute))


def mask_items(w1: Any, a1: Any, w2: Any, a2: Any, *, zero_division: float) -> Items:
    words = int(w1.shape[-2] * w1.shape[-1])
    return Items("mask", (w1, a1), (w2, a2), w1.shape[0], w2.shape[0], zero_division, "float32",
                 words)


def _tiles(items: Items, budget: int, per_pair: int) -> tuple[int, int, int]:
    """(rows per tile, mask rows per inner tile, mask columns per inner tile)."""
    tile = max(1, min(items.n, budget // max(1, per_pair * items.m)))
    if items.kind == "box":
        return tile, 1, 1
    pair_bytes = 4 * max(1, items.words)  # one AND-ed row of words per pair in flight
    tile_m = max(1, min(items.m, budget // pair_bytes))
    tile_n = max(1, min(tile, budget // (pair_bytes * tile_m)))
    if jax.default_backend() == "cpu":
        tile_n = 1  # as masks.mask_pair: a row of pairs at a time vectorizes best on CPU
    return tile, tile_n, tile_m


def _values(kind: str, a: Any, b: Any, zd: Any, out: str, tile_n: int, tile_m: int,
            fmt: str, compute: str) -> Any:
    """IoU of every item of the tile ``a`` with every item of ``b`` -> (T, M) in ``out``: the
    box and mask engines' own jitted functions (inlined here)."""
    if kind == "box":
        return _boxes._box_pair(a, b, zd, op="iou", fmt=fmt, aligned=False, batch=(),
                                compute=compute, out=out, columns=_boxes._columns_layout(False))
    (w1, a1), (w2, a2) = a, b
    group = _masks._group(w1.shape[-2] * w1.shape[-1], tile_m, w2.shape[0])
    return _masks._pair(w1, a1, w2, a2, zd, op="iou", batch=(), aligned=False, tile_n=tile_n,
                        tile_m=tile_m, group=group)


def _split(a: Any, tile: int) -> tuple[Any, int]:
    """Pad the leading axis of every leaf to a multiple of ``tile`` -> (leaves (nt, tile, ...))."""
    n = jax.tree_util.tree_leaves(a)[0].shape[0]
    nt = -(-n // tile)

    def one(x: Any) -> Any:
        x = jnp.pad(x, [(0, nt * tile - n)] + [(0, 0)] * (x.ndim - 1))
        return x.reshape((nt, tile) + x.shape[1:])

    return jax.tree_util.tree_map(one, a), nt


_STATIC = ("kind", "out", "tile", "tile_n", "tile_m", "fmt", "compute")


@functools.partial(jax.jit, static_argnames=_STATIC + ("k",))
def _row_topk(a, b, zd, *, kind, out, tile, tile_n, tile_m, fmt, compute, k):
    n = jax.tree_util.tree_leaves(a)[0].shape[0]
    tiles, _ = _split(a, tile)

    def one(t: Any) -> Any:
        v = _values(kind, t, b, zd, out, tile_n, tile_m, fmt, compute)
        if k == 1:  # the maximum: NaN propagates, argmax takes the first NaN / lowest index
            return jnp.max(v, axis=1, keepdims=True), jnp.argmax(v, axis=1, keepdims=True)
        return lax.top_k(v, k)

    vals, idx = lax.map(one, tiles)
    return vals.reshape(-1, k)[:n], idx.reshape(-1, k)[:n].astype(index_dtype())


@functools.partial(jax.jit, static_argnames=_STATIC)
def _both_max(a, b, zd, *, kind, out, tile, tile_n, tile_m, fmt, compute):
    """Row and column maxima (and where) of one pass over the tiles: each IoU is made once.

    The column maxima are carried through the scan: a tile's maximum replaces the carried one
    when it is larger, or NaN where the carried one is not, so the lowest row index wins among
    equals and the first NaN ranks first, as ``jnp.max`` / ``jnp.argmax`` over the whole column
    would. Padded rows of the last tile are ``-inf``: they never win over a row that exists.
    """
    n = jax.tree_util.tree_leaves(a)[0].shape[0]
    m = jax.tree_util.tree_leaves(b)[0].shape[0]
    tiles, nt = _split(a, tile)
    index = index_dtype()

    def step(carry: Any, xs: Any) -> Any:
        best, where = carry
        t, base = xs
        v = _values(kind, t, b, zd, out, tile_n, tile_m, fmt, compute)
        real = (base + jnp.arange(tile, dtype=index)) < n
        col = jnp.where(real[:, None], v, -jnp.inf)
        top, at = jnp.max(col, axis=0), jnp.argmax(col, axis=0).astype(index) + base
        take = (top > best) | (jnp.isnan(top) & ~jnp.isnan(best))
        carry = jnp.where(take, top, best), jnp.where(take, at, where)
        return carry, (jnp.max(v, axis=1), jnp.argmax(v, axis=1).astype(index))

    init = jnp.full(m, -jnp.inf, out), jnp.zeros(m, index)
    bases = jnp.arange(nt, dtype=index) * tile
    (cval, cidx), (rval, ridx) = lax.scan(step, init, (tiles, bases))
    return rval.reshape(-1)[:n], ridx.reshape(-1)[:n], cval, cidx


@functools.partial(jax.jit, static_argnames=_STATIC + ("size",))
def _row_pairs(a, b, zd, thr, *, kind, out, tile, tile_n, tile_m, fmt, compute, size):
    n = jax.tree_util.tree_leaves(a)[0].shape[0]
    m = jax.tree_util.tree_leaves(b)[0].shape[0]
    tiles, nt = _split(a, tile)
    index = index_dtype()
    cols = jnp.arange(m, dtype=index)

    def step(carry: Any, xs: Any) -> Any:
        rows_out, cols_out, vals_out, offset = carry
        t, base = xs
        v = _values(kind, t, b, zd, out, tile_n, tile_m, fmt, compute)
        rows = base + jnp.arange(tile, dtype=index)
        hit = (v >= thr) & (rows < n)[:, None]  # NaN >= thr is false
        flat = hit.reshape(-1)
        pos = offset + jnp.cumsum(flat, dtype=index) - 1
        pos = jnp.where(flat, pos, size)  # out of range: dropped
        rows_out = rows_out.at[pos].set(jnp.repeat(rows, m), mode="drop")
        cols_out = cols_out.at[pos].set(jnp.tile(cols, tile), mode="drop")
        vals_out = vals_out.at[pos].set(v.reshape(-1), mode="drop")
        return (rows_out, cols_out, vals_out, offset + jnp.sum(flat, dtype=index)), None

    init = (jnp.full(size, -1, index), jnp.full(size, -1, index), jnp.zeros(size, out),
            jnp.zeros((), index))
    bases = jnp.arange(nt, dtype=index) * tile
    (rows_out, cols_out, vals_out, count), _ = lax.scan(step, init, (tiles, bases))
    return rows_out, cols_out, vals_out, count


@functools.partial(jax.jit, static_argnames=_STATIC)
def _count(a, b, zd, thr, *, kind, out, tile, tile_n, tile_m, fmt, compute):
    tiles, _ = _split(a, tile)
    n = jax.tree_util.tree_leaves(a)[0].shape[0]

    def one(t: Any) -> Any:
        return jnp.sum(_values(kind, t, b, zd, out, tile_n, tile_m, fmt, compute) >= thr, axis=1,
                       dtype=index_dtype())

    return jnp.sum(lax.map(one, tiles).reshape(-1)[:n])


def _options(items: Items, budget: int, per_pair: int) -> dict[str, Any]:
    tile, tile_n, tile_m = _tiles(items, budget, per_pair)
    return dict(kind=items.kind, out=items.out, tile=tile, tile_n=tile_n, tile_m=tile_m,
                fmt=items.fmt, compute=items.compute)


# Bytes per pair of a tile in flight: box formulas hold a few (T, M, d) temporaries; mask tiles
# hold the (T, M) values and the AND-ed words, budgeted apart.
_PER_PAIR = {"box": 64, "mask": 16}
# The maxima hold one (T, M) tile of values and its masked copy (8 bytes a pair; counted twice).
# Tiles of a few MB are also the fastest on CPU: fewer steps than smaller ones, and in the cache.
_PER_PAIR_MAX = {"box": 16, "mask": 16}


def _empty_max(n: int, out: str) -> tuple[Any, Any]:
    return jnp.zeros(n, out), jnp.full(n, -1, index_dtype())


def iou_max(items: Items, *, budget: int) -> tuple[Any, ...]:
    if items.n == 0 or items.m == 0:
        return (*_empty_max(items.n, items.out), *_empty_max(items.m, items.out))
    zd = jnp.asarray(items.zd, items.compute)
    return _both_max(items.a, items.b, zd, **_options(items, budget, _PER_PAIR_MAX[items.kind]))


def iou_topk(items: Items, k: int, *, budget: int) -> tuple[Any, Any]:
    if items.n == 0 or k == 0:
        return jnp.zeros((items.n, k), items.out), jnp.zeros((items.n, k), index_dtype())
    zd = jnp.asarray(items.zd, items.compute)
    # top_k sorts a whole row: count it as a few more bytes per pair.
    options = _options(items, budget, 2 * _PER_PAIR[items.kind])
    return _row_topk(items.a, items.b, zd, k=k, **options)


def iou_pairs(items: Items, threshold: float, *, max_pairs: int | None, budget: int,
              func: str) -> tuple[Any, ...]:
    index = index_dtype()
    zd = jnp.asarray(items.zd, items.compute)
    thr = jnp.asarray(np.asarray(threshold).astype(items.out))  # rounded to the output dtype
    leaves = jax.tree_util.tree_leaves((items.a, items.b))
    if items.n == 0 or items.m == 0:
        size = max_pairs or 0
        return (jnp.full(size, -1, index), jnp.full(size, -1, index), jnp.zeros(size, items.out),
                jnp.zeros((), index))
    opts = _options(items, budget, _PER_PAIR[items.kind] + 8)
    if max_pairs is not None:
        return _row_pairs(items.a, items.b, zd, thr, size=max_pairs, **opts)
    if any(isinstance(x, jax.core.Tracer) for x in leaves):
        raise TypeError(
            f"{func}: under jax tracing (jit, vmap) the number of pairs must be static: pass "
            "max_pairs= (the output size; count tells how many pairs there are in all)"
        )
    total = int(_count(items.a, items.b, zd, thr, **opts))
    size = 1 << max(0, total - 1).bit_length()  # a power of two: few distinct compilations
    rows, cols, vals, count = _row_pairs(items.a, items.b, zd, thr, size=size, **opts)
    return rows[:total], cols[:total], vals[:total], count
