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


def _formula(a: Any, b: Any, op: str, zd: Any) -> Any:
    """The value of ``op`` for corner boxes ``a`` and ``b`` (broadcast against each other)."""
    d = a.shape[-1] // 2
    lo1, hi1, lo2, hi2 = a[..., :d], a[..., d:], b[..., :d], b[..., d:]
    area1 = jnp.prod(_extent(lo1, hi1), axis=-1)
    area2 = jnp.prod(_extent(lo2, hi2), axis=-1)
    inter = jnp.prod(_extent(jnp.maximum(lo1, lo2), jnp.minimum(hi1, hi2)), axis=-1)
    if op == "ioa":
        # (area2 - area2) is 0, or NaN when b has a NaN: keeps NaN even where area1 == 0.
        return _div(inter, area1, zd) + (area2 - area2)
    union = area1 + area2 - inter
    iou = _div(inter, union, zd)
    if op == "iou":
        return iou
    hull = _extent(jnp.minimum(lo1, lo2), jnp.maximum(hi1, hi2))
    if op == "giou":
        hull_area = jnp.prod(hull, axis=-1)
        return iou - _div(hull_area - union, hull_area, 0)
    # Centre distance and hull diagonal, both doubled.
    rho2 = jnp.sum(jnp.square((lo1 + hi1) - (lo2 + hi2)), axis=-1)
    diou = iou - _div(rho2, jnp.sum(jnp.square(hull + hull), axis=-1), 0)
    if op == "diou":
        return diou
    w1, w2 = _extent(lo1, hi1), _extent(lo2, hi2)
    v = (4 / np.pi**2) * jnp.square(_angle(w2[..., 0], w2[..., 1]) - _angle(w1[..., 0], w1[..., 1]))
    alpha = jax.lax.stop_gradient(_div(v, 1 - iou + v, 0))
    return diou - alpha * v


def _extreme(c: Any, big: float, tiny: float) -> Any:
    """Whether each corner box of ``c`` (..., 2d) is extreme (see ``_formats.scale_limits``)."""
    d = c.shape[-1] // 2
    lo, hi = c[..., :d], c[..., d:]
    e = hi - lo
    inside = (jnp.abs(lo) <= big) & (jnp.abs(hi) <= big)
    return jnp.any(~inside | ((e > 0) & (e < tiny)), axis=-1)


def _scaled(a: Any, b: Any, op: str, zd: Any) -> Any:
    """The value of ``op`` from extents divided by the enclosing box: no overflow or
    underflow for any finite input; NaN for a NaN or infinite coordinate. DIoU's distance uses
    one scale for every axis (it is not invariant under per-axis scaling)."""
    d = a.shape[-1] // 2
    lo1, hi1, lo2, hi2 = a[..., :d], a[..., d:], b[..., :d], b[..., d:]
    poison = jnp.sum(a - a, axis=-1) + jnp.sum(b - b, axis=-1)  # NaN for NaN or inf
    # At 1/8 scale: no denominator passes 2**(emax - 2), so no reciprocal is subnormal (XLA
    # divides through reciprocals and flushes subnormals to zero).
    cs = _extent(jnp.minimum(lo1, lo2) * 0.125, jnp.maximum(hi1, hi2) * 0.125)
    e1, e2 = _extent(lo1 * 0.125, hi1 * 0.125), _extent(lo2 * 0.125, hi2 * 0.125)
    ei = _extent(jnp.maximum(lo1, lo2) * 0.125, jnp.minimum(hi1, hi2) * 0.125)
    if op == "ioa":
        return jnp.where(jnp.any(e1 == 0, axis=-1), zd, jnp.prod(_div(ei, e1, 0), axis=-1)) + poison
    u1, u2 = jnp.prod(_div(e1, cs, 0), axis=-1), jnp.prod(_div(e2, cs, 0), axis=-1)
    ui = jnp.prod(_div(ei, cs, 0), axis=-1)
    union = u1 + u2 - ui
    iou = _div(ui, union, zd)
    if op == "iou":
        return iou + poison
    if op == "giou":
        hull = jnp.all(cs > 0, axis=-1).astype(iou.dtype)
        return iou - _div(hull - union, hull, 0) + poison
    s = jnp.max(cs, axis=-1, keepdims=True)
    offset = (lo1 * 0.0625 + hi1 * 0.0625) - (lo2 * 0.0625 + hi2 * 0.0625)
    rho2 = jnp.sum(jnp.square(_div(offset, s, 0)), axis=-1)
    diou = iou - _div(rho2, jnp.sum(jnp.square(_div(cs, s, 0)), axis=-1), 0)
    if op == "diou":
        return diou + poison
    v = (4 / np.pi**2) * jnp.square(_angle(e2[..., 0], e2[..., 1]) - _angle(e1[..., 0], e1[..., 1]))
    alpha = jax.lax.stop_gradient(_div(v, 1 - iou + v, 0))
    return diou - alpha * v + poison


def _value(a: Any, b: Any, op: str, zd: Any, limits: tuple[float, float]) -> Any:
    """``op`` of corner boxes ``a`` and ``b``: the plain formula, except for the pairs with an
    extreme box, computed by :func:`_scaled` (which runs only when some box needs it). The plain
    formula sees a unit box in place of each extreme box, so its gradients stay finite."""
    xa, xb = _extreme(a, *limits), _extreme(b, *limits)
    half = a.shape[-1] // 2
    unit = jnp.asarray([0] * half + [1] * half, a.dtype)
    plain = _formula(jnp.where(xa[..., None], unit, a), jnp.where(xb[..., None], unit, b), op, zd)
    return jax.lax.cond(
        jnp.any(xa) | jnp.any(xb),
        lambda: jnp.where(xa | xb, _scaled(a, b, op, zd), plain),
        lambda: plain,
    )


@functools.partial(
    jax.jit, static_argnames=("op", "fmt", "aligned", "batch", "compute", "out")
)
def _box_pair(b1, b2, zd, *, op, fmt, aligned, batch, compute, out):
    a = _formats.to_corners(jnp, b1.astype(compute), fmt)
    b = _formats.to_corners(jnp, b2.astype(compute), fmt)
    a = jnp.broadcast_to(a, batch + a.shape[-2:])
    b = jnp.broadcast_to(b, batch + b.shape[-2:])
    if not aligned:
        a, b = a[..., :, None, :], b[..., None, :, :]
    limits = _formats.scale_limits(compute, a.shape[-1] // 2)
    return _value(a, b, op, jnp.asarray(zd, compute), limits).astype(out)


def box_pair(b1: Any, b2: Any, *, op: str, spec: BoxPair, zero_division: float, out: Any = None) -> Any:
    return _box_pair(
        b1, b2, zero_division, op=op, fmt=spec.fmt, aligned=spec.m < 0, batch=spec.batch,
        compute=spec.compute.name, out=spec.out.name,
    )
