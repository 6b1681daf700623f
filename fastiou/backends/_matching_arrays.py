"""Matching code shared by every engine, written once against the array API they share (NumPy,
CuPy, jax.numpy): the inputs as a batch of (G, P) blocks with packed object flags, the offsets of
equal blocks, and the :class:`~fastiou.matching.MatchResult` of the (T, B, ...) outputs.

Object flags, one uint8 per ground-truth object: bit 0 valid, bit 1 ignored (crowd or gt_ignore),
bit 2 crowd. A regular object (valid, not ignored) has flags == VALID.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _validate
from ..matching import MatchResult

VALID, IGNORED, CROWD = 1, 2, 4


def gt_flags(valid: np.ndarray, crowd: np.ndarray, ignore: np.ndarray) -> np.ndarray:
    """The packed per-object flags (bit 0 valid, bit 1 ignored, bit 2 crowd) as uint8."""
    flags = valid.astype(np.uint8)
    flags |= (crowd | ignore).astype(np.uint8) << 1
    flags |= crowd.astype(np.uint8) << 2
    return flags


def batch_inputs(xp: Any, iou: Any, scores: Any, crowd: Any, gt_ignore: Any, gt_valid: Any,
                 pred_valid: Any, spec: _validate.MatchSpec,
                 score_dtype: Any = np.float64) -> tuple[Any, ...]:
    """(iou (B, G, P) in the compare dtype, scores (B, P) of ``score_dtype`` or None, flags (B, G)
    uint8, pred valid (B, P) bool, gt ignored (*batch, G), gt valid (*batch, G), pred valid
    (*batch, P)) in namespace ``xp``, C-contiguous."""
    b, g, p = spec.batch, spec.g, spec.p
    count = _validate.size(b)
    contiguous = getattr(xp, "ascontiguousarray", xp.asarray)  # jax arrays have no layout

    def flag(x: Any, n: int, default: bool) -> Any:
        if x is None:
            return xp.full(b + (n,), default, dtype=bool)
        return xp.broadcast_to(x != 0, b + (n,))

    gv, pv = flag(gt_valid, g, True), flag(pred_valid, p, True)
    cr, ig = flag(crowd, g, False), flag(gt_ignore, g, False)
    cube = contiguous(xp.broadcast_to(iou, b + (g, p)).astype(spec.compute))
    flags = (gv.astype(np.uint8) | ((cr | ig).astype(np.uint8) << 1)
             | (cr.astype(np.uint8) << 2)).reshape(count, g)
    s = None
    if scores is not None:
        s = contiguous(xp.broadcast_to(scores, b + (p,)).astype(score_dtype).reshape(count, p))
    gi = gv & (cr | ig)
    return (cube.reshape(count, g, p), s, contiguous(flags), contiguous(pv.reshape(count, p)),
            contiguous(gi), contiguous(gv), contiguous(pv))


def uniform_offsets(count: int, g: int, p: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Offsets of ``count`` blocks of ``g x p`` laid end to end."""
    steps = np.arange(count + 1, dtype=np.int64)
    return steps[:-1] * (g * p), steps * g, steps * p


def result(xp: Any, outputs: tuple[Any, ...], gi: Any, gv: Any, pv: Any,
           spec: _validate.MatchSpec) -> MatchResult:
    """Reshape (T, B * X) or (T, B, X) outputs to (T, *batch, X), drop T for a scalar threshold."""
    t, b, g, p = spec.thresholds.shape[0], spec.batch, spec.g, spec.p
    p2g, g2p, pign, miou = (o.reshape((t,) + b + (n,))
                            for o, n in zip(outputs, (p, g, p, g)))
    extra = (xp.broadcast_to(gi, (t,) + b + (g,)), xp.broadcast_to(gv, (t,) + b + (g,)),
             xp.broadcast_to(pv, (t,) + b + (p,)))
    fields = (p2g, g2p, pign, miou) + extra
    if spec.scalar:
        fields = tuple(f[0] for f in fields)
    contiguous = getattr(xp, "ascontiguousarray", xp.asarray)
    return MatchResult(*(contiguous(f) for f in fields))
