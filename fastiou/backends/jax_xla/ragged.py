"""Segmented (ragged) IoU on the JAX engine, under ``jax.jit``: every output element finds its
segment from the block starts (a running count), and the two operands of its pair are gathered.

The number of pairs is padded up to one of eight sizes per power of two (the extra pairs repeat the
last one and are sliced off), so datasets of similar size share one compiled program instead of
retracing for each.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ... import _formats
from .boxes import _extreme, _formula, _value
from .masks import _ratio

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


def box_iou(b1: Any, b2: Any, off1: np.ndarray, off2: np.ndarray, start: np.ndarray, *,
            fmt: str, compute: Any, out_dtype: Any, zero_division: float) -> Any:
    """Blocks of boxes ``b1 (K1, 2d)`` x ``b2 (K2, 2d)`` in ``fmt``; returns ``(total,)``."""
    total = int(start[-1])
    if total == 0:
        return jnp.zeros((0,), out_dtype)
    *offsets, padded = _device_offsets("segmented_box_iou", off1, off2, start)
    c1 = _formats.to_corners(jnp, b1.astype(compute), fmt)
    c2 = _formats.to_corners(jnp, b2.astype(compute), fmt)
    return _box_pairs(c1, c2, *offsets, zero_division, padded=padded,
                      compute=np.dtype(compute).name, out=np.dtype(out_dtype).name)[:total]


@functools.partial(jax.jit, static_argnames=("padded", "tile"))
def _mask_pairs(w1, a1, w2, a2, off1, off2, start, zd, *, padded, tile):
    i, j = _pairs(off1, off2, start, padded)

    def one(ij):
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
    return _mask_pairs(w1, a1, w2, a2, *offsets, zero_division, padded=padded, tile=tile)[:total]
