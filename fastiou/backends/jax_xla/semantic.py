"""Semantic segmentation on the JAX engine: one ``jnp.bincount`` (a scatter-add) under ``jax.jit``.

Labels are range-checked in their own dtype, then turned into one flat bin per pixel; the jitted
function is compiled once per shape, dtype and (num_classes, ignore_index, out_of_range).

The streaming state is a pytree, :class:`SemanticState`, whose counts are split into two uint32
limbs (the low 24 bits and the rest). It is exact without x64 (up to 2**56 pixels per cell) and
stays exact when summed across devices with ``jax.lax.psum``: after a sum over up to 256 devices
the low limbs still fit in 32 bits, and every later update or compute carries them over.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..._validate import LabelSpec, outside_labels

LIMB = 24
MASK = (1 << LIMB) - 1


@functools.partial(jax.jit, static_argnames=("c", "ignore"))
def _counts(pred: Any, target: Any, *, c: int, ignore: int | None) -> Any:
    t, p = target.reshape(-1), pred.reshape(-1)
    cc = c * c
    key = t.astype(jnp.int32) * c + p.astype(jnp.int32)
    key = jnp.where(outside_labels(t, c) | outside_labels(p, c), cc + 1, key)
    if ignore is not None:
        key = jnp.where(t == jnp.asarray(ignore, t.dtype), cc, key)
    return jnp.bincount(key, length=cc + 2)


def confusion_counts(pred: Any, target: Any, spec: LabelSpec) -> Any:
    """Flat counts of length ``spec.bins`` (int32 without x64, int64 with it).

    Without x64 a count past 2**31 - 1 wraps around; a call with that many pixels warns (the
    pixel count is static, so this happens at trace time too). The streaming state adds such
    counts exactly (two limbs), but each call's own counts must stay below 2**31.
    """
    if not jax.config.jax_enable_x64 and pred.size >= 2**31:
        warnings.warn(
            f"fastiou: {pred.size} pixels counted with jax x64 disabled, where confusion counts "
            "are int32: a class pair seen 2**31 times or more wraps around; enable x64 "
            "(jax.config.update('jax_enable_x64', True)) or count the pixels in batches",
            RuntimeWarning, stacklevel=4,
        )
    ignore = spec.ignore_index if spec.ignore_active else None
    return _counts(pred, target, c=spec.num_classes, ignore=ignore)


def labels_known(x: Any) -> bool:
    """False for tracers (jit, vmap, pmap): their values cannot be inspected."""
    return not isinstance(x, jax.core.Tracer)


# --------------------------------------------------------------------------------------------
# Streaming state


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=("lo", "hi"),
    meta_fields=("num_classes", "ignore_index", "out_of_range"),
)
@dataclasses.dataclass(frozen=True)
class SemanticState:
    """Confusion counts of a stream of label maps, as a pytree (see ``fastiou.mean_iou_init``).

    ``lo`` and ``hi`` are ``(num_classes**2 + 1,)`` uint32: the cells of the confusion matrix in
    row-major order, then the number of out-of-range pixels seen under tracing; each count is
    ``hi * 2**24 + lo``. Sum states (``jax.lax.psum``, ``fastiou.mean_iou_merge``) to combine
    them. The options are static (part of the tree structure).
    """

    lo: Any
    hi: Any
    num_classes: int
    ignore_index: int | None
    out_of_range: str


def _normal(state: SemanticState) -> tuple[Any, Any]:
    return state.lo & MASK, state.hi + (state.lo >> LIMB)


def state_from_counts(cm: Any, invalid: Any, spec: LabelSpec) -> SemanticState:
    invalid = jnp.zeros((), cm.dtype) if invalid is None else invalid.astype(cm.dtype)
    flat = jnp.concatenate([cm.reshape(-1), invalid[None]])
    return SemanticState(
        (flat & MASK).astype(jnp.uint32), (flat >> LIMB).astype(jnp.uint32), spec.num_classes,
        spec.ignore_index, "raise" if spec.raise_out_of_range else "ignore",
    )


def state_merge(a: SemanticState, b: SemanticState) -> SemanticState:
    alo, ahi = _normal(a)
    blo, bhi = _normal(b)
    lo = alo + blo
    return dataclasses.replace(a, lo=lo & MASK, hi=ahi + bhi + (lo >> LIMB))


def state_matrix(state: SemanticState) -> Any:
    """(C, C) counts: int64 with x64; without it int32, counts past 2**31 - 1 saturating."""
    lo, hi = _normal(state)
    c = state.num_classes
    if jax.config.jax_enable_x64:
        cells = (hi.astype(jnp.int64) << LIMB) | lo.astype(jnp.int64)
    else:
        fits = hi < (1 << (31 - LIMB))
        cells = jnp.where(fits, ((hi << LIMB) | lo).astype(jnp.int32), np.iinfo(np.int32).max)
    return cells[: c * c].reshape(c, c)


def _float(state: SemanticState) -> Any:
    dtype = jax.dtypes.canonicalize_dtype(np.float64)
    return state.hi.astype(dtype) * (1 << LIMB) + state.lo.astype(dtype)


def state_float(state: SemanticState) -> Any:
    c = state.num_classes
    return _float(state)[: c * c].reshape(c, c)


def state_invalid(state: SemanticState) -> Any:
    """Out-of-range pixels seen under tracing (a float scalar array)."""
    return _float(state)[-1]
