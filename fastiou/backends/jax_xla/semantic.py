"""Semantic segmentation on the JAX engine: a scatter-add of one bin per pixel under ``jax.jit``
(one ``jnp.bincount``, or on CPU a loop over chunks of pixels into interleaved copies of the
histogram).

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
from jax import lax

from ..._validate import LabelSpec, outside_labels

LIMB = 24
MASK = (1 << LIMB) - 1


# Formulation of the count: None chooses by ``jax.default_backend()`` when the call is traced
# ("chunks" on CPU, "bincount" elsewhere); tests set either to run it on any device.
FORMULATION: str | None = None
_CHUNK = 1 << 18  # pixels per step of the CPU loop
_COPIES = 8  # copies of the histogram in the CPU loop (a power of two; see _copies)
_MAX_COPIED = 1 << 18  # bins in all copies together at most; past that, one copy


def _chunk(pixels: int) -> int:
    """Pixels per step of the counting loop (``_CHUNK``, or all of them when fewer), or 0 for
    one ``jnp.bincount`` over every pixel.

    On XLA:CPU the one-shot count writes a flat int32 key per pixel (64 MB for 16.7 million
    pixels, page-faulted afresh on each call) before scattering it; a loop over chunks of
    ``_CHUNK`` pixels keeps each chunk's keys in cache and adds them to a small histogram
    (measured: 8 maps of 1024 x 2048, 124 ms -> 47 ms of CPU time). Accelerators scatter in
    parallel and want the one-shot form."""
    mode = FORMULATION or ("chunks" if jax.default_backend() == "cpu" else "bincount")
    # Chunk starts are int32 without x64: past 2**31 pixels, the one-shot count (which warns).
    fits = pixels < 2**31 or jax.config.jax_enable_x64
    return min(pixels, _CHUNK) if mode == "chunks" and fits else 0


def _copies(c: int, pixels: int) -> int:
    """Copies of the histogram in the counting loop: pixel i adds to copy ``i % copies``.

    Label maps hold long runs of one (target, prediction) pair; with a single histogram each
    pixel of a run waits for the previous one's add to the same counter (measured on XLA:CPU, 8
    maps of 1024 x 2048 made of regions: 0.65-0.75x the time of one histogram; uniform noise
    unchanged). One copy for large histograms, and where zeroing and summing the copies would
    cost more than it saves (fewer than 4 pixels per bin of all copies: 150 classes on a
    128 x 128 map took 2.2x the time with 8 copies)."""
    bins = _COPIES * (c * c + 2)
    return _COPIES if bins <= _MAX_COPIED and 4 * bins <= pixels else 1


@functools.partial(jax.jit, static_argnames=("c", "ignore", "chunk", "copies"))
def _counts(pred: Any, target: Any, *, c: int, ignore: int | None, chunk: int = 0,
            copies: int = 1) -> Any:
    t, p = target.reshape(-1), pred.reshape(-1)
    cc = c * c

    def keys(t: Any, p: Any) -> Any:
        key = t.astype(jnp.int32) * c + p.astype(jnp.int32)
        key = jnp.where(outside_labels(t, c) | outside_labels(p, c), cc + 1, key)
        if ignore is not None:
            key = jnp.where(t == jnp.asarray(ignore, t.dtype), cc, key)
        return key

    if not chunk:
        return _split(jnp.bincount(keys(t, p), length=cc + 2), c)
    count = jax.dtypes.canonicalize_dtype(np.int64)  # what jnp.bincount returns
    steps, total = t.shape[0] // chunk, t.shape[0]

    def add(hist: Any, t: Any, p: Any) -> Any:
        key = keys(t, p)
        if copies > 1:  # bins below copies * (cc + 2) <= 2**18: no int32 overflow
            key = key + (lax.iota(jnp.int32, key.shape[0]) & (copies - 1)) * (cc + 2)
        return hist.at[key].add(jnp.ones((), count), mode="drop")  # in range by construction

    def step(i: Any, hist: Any) -> Any:
        start = i.astype(count) * chunk  # int64 with x64: no overflow past 2**31 pixels
        return add(hist, lax.dynamic_slice(t, (start,), (chunk,)),
                   lax.dynamic_slice(p, (start,), (chunk,)))

    # The first chunk outside the loop: under shard_map its counts carry the data's varying
    # axes, which the loop's carry must have from the start.
    hist = add(jnp.zeros(copies * (cc + 2), count), t[:chunk], p[:chunk])
    hist = lax.fori_loop(1, steps, step, hist)
    if steps * chunk < total:
        hist = add(hist, t[steps * chunk:], p[steps * chunk:])
    return _split(hist.reshape(copies, cc + 2).sum(axis=0), c)


def _split(flat: Any, c: int) -> tuple[Any, Any]:
    """Flat counts (:attr:`LabelSpec.bins`) -> (``(C, C)`` counts, out-of-range pixels): made in
    the jitted function, so that an eager call dispatches no slicing of its own."""
    return flat[: c * c].reshape(c, c), flat[c * c + 1]


def confusion_counts(pred: Any, target: Any, spec: LabelSpec) -> tuple[Any, Any]:
    """``(C, C)`` counts and the number of pixels with a label outside ``[0, C)`` (int32
    without x64, int64 with it).

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
    chunk = _chunk(pred.size)
    return _counts(pred, target, c=spec.num_classes, ignore=ignore, chunk=chunk,
                   copies=_copies(spec.num_classes, pred.size) if chunk else 1)


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
