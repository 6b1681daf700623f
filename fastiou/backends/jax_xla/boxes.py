"""Box IoU family on the JAX engine.

Divisions use the double-``where`` pattern so that gradients stay finite at degenerate boxes (zero
area, identical boxes, zero-size enclosing box).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ... import _formats
from ..._validate import BoxPair


def _div(num: Any, den: Any, fallback: Any) -> Any:
    """num / den, or fallback where den == 0; NaN stays NaN; finite gradients at den == 0."""
    ok = den != 0
    return jnp.where(ok, num / jnp.where(ok, den, 1), fallback)


def _extent(lo: Any, hi: Any) -> Any:
    return jnp.maximum(hi - lo, 0)


def _angle(w: Any, h: Any) -> Any:
    """atan(w / h) read as atan2(w, h), with a finite gradient at w = h = 0."""
    ok = (w > 0) | (h > 0)
    return jnp.where(ok, jnp.arctan2(jnp.where(ok, w, 1), jnp.where(ok, h, 1)), 0)


def _prod(xs: list[Any]) -> Any:
    return functools.reduce(jnp.multiply, xs)


def _sum(xs: list[Any]) -> Any:
    return functools.reduce(jnp.add, xs)


def _columns(c: Any) -> tuple[list[Any], list[Any]]:
    """Corner boxes ``(..., 2d)`` -> (d min-corner columns, d max-corner columns), each ``(...)``.

    The formulas below work on these columns, never on a trailing axis of size d: with operands
    ``(N, 1)`` and ``(1, M)`` every step is elementwise, and XLA fuses the whole formula into one
    loop over the ``(N, M)`` output (a reduction over a size-2 axis would cut the fusion and
    materialize ``(N, M, 2)`` temporaries)."""
    d = c.shape[-1] // 2
    return [c[..., i] for i in range(d)], [c[..., d + i] for i in range(d)]


def _terms(c: Any) -> tuple[Any, ...]:
    """The per-box terms of the formula: (min corners, max corners, extents, area), as columns."""
    lo, hi = _columns(c)
    w = [_extent(l, h) for l, h in zip(lo, hi)]
    return lo, hi, w, _prod(w)


def _formula(a: Any, b: Any, op: str, zd: Any) -> Any:
    """The value of ``op`` for boxes ``a`` and ``b`` (corner boxes, or their :func:`_terms`),
    broadcast against each other."""
    lo1, hi1, w1, area1 = a if isinstance(a, tuple) else _terms(a)
    lo2, hi2, w2, area2 = b if isinstance(b, tuple) else _terms(b)
    inter = _prod([_extent(jnp.maximum(l1, l2), jnp.minimum(h1, h2))
                   for l1, h1, l2, h2 in zip(lo1, hi1, lo2, hi2)])
    if op == "ioa":
        # (area2 - area2) is 0, or NaN when b has a NaN: keeps NaN even where area1 == 0.
        return _div(inter, area1, zd) + (area2 - area2)
    union = area1 + area2 - inter
    iou = _div(inter, union, zd)
    if op == "iou":
        return iou
    hull = [_extent(jnp.minimum(l1, l2), jnp.maximum(h1, h2))
            for l1, h1, l2, h2 in zip(lo1, hi1, lo2, hi2)]
    if op == "giou":
        hull_area = _prod(hull)
        return iou - _div(hull_area - union, hull_area, 0)
    # Centre distance and hull diagonal, both doubled.
    rho2 = _sum([jnp.square((l1 + h1) - (l2 + h2)) for l1, h1, l2, h2 in zip(lo1, hi1, lo2, hi2)])
    diou = iou - _div(rho2, _sum([jnp.square(h + h) for h in hull]), 0)
    if op == "diou":
        return diou
    v = (4 / np.pi**2) * jnp.square(_angle(w2[0], w2[1]) - _angle(w1[0], w1[1]))
    alpha = jax.lax.stop_gradient(_div(v, 1 - iou + v, 0))
    return diou - alpha * v


def _extreme(c: Any, big: float, tiny: float) -> Any:
    """Whether each corner box of ``c`` (..., 2d) is extreme (see ``_formats.scale_limits``)."""
    out = None
    for lo, hi in zip(*_columns(c)):
        e = hi - lo
        inside = (jnp.abs(lo) <= big) & (jnp.abs(hi) <= big)
        bad = ~inside | ((e > 0) & (e < tiny))
        out = bad if out is None else out | bad
    return out


def _scaled(a: Any, b: Any, op: str, zd: Any) -> Any:
    """The value of ``op`` from extents divided by the enclosing box: no overflow or
    underflow for any finite input; NaN for a NaN or infinite coordinate. DIoU's distance uses
    one scale for every axis (it is not invariant under per-axis scaling)."""
    (lo1, hi1), (lo2, hi2) = _columns(a), _columns(b)
    axes = list(zip(lo1, hi1, lo2, hi2))
    poison = _sum([l1 - l1 + (h1 - h1) for l1, h1, _, _ in axes]) + _sum(
        [l2 - l2 + (h2 - h2) for _, _, l2, h2 in axes])  # NaN for NaN or inf
    # At 1/8 scale: no denominator passes 2**(emax - 2), so no reciprocal is subnormal (XLA
    # divides through reciprocals and flushes subnormals to zero).
    cs = [_extent(jnp.minimum(l1, l2) * 0.125, jnp.maximum(h1, h2) * 0.125)
          for l1, h1, l2, h2 in axes]
    e1 = [_extent(l1 * 0.125, h1 * 0.125) for l1, h1, _, _ in axes]
    e2 = [_extent(l2 * 0.125, h2 * 0.125) for _, _, l2, h2 in axes]
    ei = [_extent(jnp.maximum(l1, l2) * 0.125, jnp.minimum(h1, h2) * 0.125)
          for l1, h1, l2, h2 in axes]
    if op == "ioa":
        empty = functools.reduce(jnp.logical_or, [e == 0 for e in e1])
        return jnp.where(empty, zd, _prod([_div(i, e, 0) for i, e in zip(ei, e1)])) + poison
    u1 = _prod([_div(e, c, 0) for e, c in zip(e1, cs)])
    u2 = _prod([_div(e, c, 0) for e, c in zip(e2, cs)])
    ui = _prod([_div(e, c, 0) for e, c in zip(ei, cs)])
    union = u1 + u2 - ui
    iou = _div(ui, union, zd)
    if op == "iou":
        return iou + poison
    if op == "giou":
        hull = functools.reduce(jnp.logical_and, [c > 0 for c in cs]).astype(iou.dtype)
        return iou - _div(hull - union, hull, 0) + poison
    s = functools.reduce(jnp.maximum, cs)
    offsets = [(l1 * 0.0625 + h1 * 0.0625) - (l2 * 0.0625 + h2 * 0.0625)
               for l1, h1, l2, h2 in axes]
    rho2 = _sum([jnp.square(_div(o, s, 0)) for o in offsets])
    diou = iou - _div(rho2, _sum([jnp.square(_div(c, s, 0)) for c in cs]), 0)
    if op == "diou":
        return diou + poison
    v = (4 / np.pi**2) * jnp.square(_angle(e2[0], e2[1]) - _angle(e1[0], e1[1]))
    alpha = jax.lax.stop_gradient(_div(v, 1 - iou + v, 0))
    return diou - alpha * v + poison


def _contiguous_terms(c: Any, axis: int) -> tuple[Any, ...]:
    """:func:`_terms` of corner boxes ``c (..., K, 2d)`` from columns stored one after another,
    each expanded at ``axis`` (-1: ``(..., K, 1)``, set 1; -2: ``(..., 1, K)``, set 2).

    The columns ``c[..., i]`` are strided slices of the boxes; XLA fuses them into the loop over
    the ``(N, M)`` output, where reading set 2 with a stride of 2d keeps that loop from
    vectorizing. Stacked behind an optimization barrier they are materialized (2d rows of K
    values, a few KB) and the output loop reads them contiguously: on CPU about 2.5x faster at
    1000 x 1000 (2 cores: 0.46 ms against 1.06 ms by rows, Numba 0.24 ms)."""
    d = c.shape[-1] // 2
    cols = lax.optimization_barrier(jnp.stack([c[..., i] for i in range(2 * d)]))
    lo = [jnp.expand_dims(cols[i], axis) for i in range(d)]
    hi = [jnp.expand_dims(cols[d + i], axis) for i in range(d)]
    w = [_extent(l, h) for l, h in zip(lo, hi)]
    return lo, hi, w, _prod(w)


def _value(a: Any, b: Any, op: str, zd: Any, limits: tuple[float, float],
           columns: bool = False, scaled: bool = False) -> Any:
    """``op`` of corner boxes ``a`` and ``b`` (broadcast against each other): the plain
    formula, except for the pairs with an extreme box, computed by :func:`_scaled`. The usual
    case (no extreme box anywhere, found by one fused ``any`` per set; no per-box flags are
    stored) runs the plain formula alone. Otherwise the plain formula sees a unit box in place
    of each extreme box, so its gradients stay finite.

    ``columns`` (pairwise only: ``a (..., N, 1, 2d)``, ``b (..., 1, M, 2d)``): the plain formula
    reads the boxes' columns from :func:`_contiguous_terms`.

    ``scaled``: every pair by :func:`_scaled`, without the check (see ``ALIGNED``)."""
    if scaled:
        return _scaled(a, b, op, zd)

    def plain() -> Any:
        if not columns:
            return _formula(a, b, op, zd)
        return _formula(_contiguous_terms(a[..., 0, :], -1),
                        _contiguous_terms(b[..., 0, :, :], -2), op, zd)

    def mixed() -> Any:
        xa, xb = _extreme(a, *limits), _extreme(b, *limits)
        half = a.shape[-1] // 2
        unit = jnp.asarray([0] * half + [1] * half, a.dtype)
        a0, b0 = jnp.where(xa[..., None], unit, a), jnp.where(xb[..., None], unit, b)
        return jnp.where(xa | xb, _scaled(a, b, op, zd), _formula(a0, b0, op, zd))

    return lax.cond(jnp.any(_extreme(a, *limits)) | jnp.any(_extreme(b, *limits)), mixed, plain)


# Formulation of the pairwise (N, M) case: None chooses by ``jax.default_backend()`` when the
# call is traced ("columns" on CPU, "flat" elsewhere); tests set either one. "flat": one
# broadcast over the boxes as they are; "columns": see :func:`_contiguous_terms`.
FORMULATION: str | None = None


def _columns_layout(aligned: bool) -> bool:
    mode = FORMULATION or ("columns" if jax.default_backend() == "cpu" else "flat")
    return mode == "columns" and not aligned


# Formulation of the aligned (N,) case: None chooses by ``jax.default_backend()`` when the call
# is traced ("scaled" on CPU, "checked" elsewhere); tests set either one. "checked": the plain
# formula unless some box is extreme (:func:`_value`); "scaled": every pair by :func:`_scaled`
# (the same values to rounding, without the check). Aligned, the check reads as many boxes as
# the formula does, and XLA:CPU runs it as a separate reduction: measured on 2 cores, 1M pairs,
# IoU 7.3 ms checked (2.9 ms formula + 3.5 ms check), 4.4 ms scaled, Numba 3.7 ms.
ALIGNED: str | None = None


def _aligned_scaled(aligned: bool) -> bool:
    return aligned and (ALIGNED or ("scaled" if jax.default_backend() == "cpu" else "checked")) \
        == "scaled"


@functools.partial(
    jax.jit,
    static_argnames=("op", "fmt", "aligned", "batch", "compute", "out", "columns", "scaled"),
)
def _box_pair(b1, b2, zd, *, op, fmt, aligned, batch, compute, out, columns=False, scaled=False):
    a = _formats.to_corners(jnp, b1.astype(compute), fmt)
    b = _formats.to_corners(jnp, b2.astype(compute), fmt)
    a = jnp.broadcast_to(a, batch + a.shape[-2:])
    b = jnp.broadcast_to(b, batch + b.shape[-2:])
    if not aligned:
        a, b = a[..., :, None, :], b[..., None, :, :]
    limits = _formats.scale_limits(compute, a.shape[-1] // 2)
    return _value(a, b, op, jnp.asarray(zd, compute), limits, columns, scaled).astype(out)


@functools.cache
def dtype_name(dtype: Any) -> str:
    """``np.dtype(dtype).name``, once per dtype: the static dtype argument of the jitted
    functions. Computing the name is Python code in NumPy; on every eager call it cost more
    than the rest of the dispatch (``box_iou`` of 10 x 100 boxes: 20 us a name, measured)."""
    return np.dtype(dtype).name


def box_pair(b1: Any, b2: Any, *, op: str, spec: BoxPair, zero_division: float, out: Any = None) -> Any:
    aligned = spec.m < 0
    return _box_pair(
        b1, b2, zero_division, op=op, fmt=spec.fmt, aligned=aligned, batch=spec.batch,
        compute=dtype_name(spec.compute), out=dtype_name(spec.out),
        columns=_columns_layout(aligned), scaled=_aligned_scaled(aligned),
    )
