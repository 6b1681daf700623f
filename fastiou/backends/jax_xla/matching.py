"""Matching on the JAX engine: COCO's greedy rule as a ``lax.fori_loop`` over the predictions.

Shapes are static: every (G, P) matrix of the batch and every threshold is matched by the same
loop (``vmap``), the predictions taken in score order, each choosing among the objects with one
vectorized reduction. Works under ``jit`` and ``vmap``. The optimal rule runs on the host (SciPy)
and refuses traced inputs.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ... import _validate
from ...matching import MatchResult
from .._matching_arrays import CROWD, IGNORED, VALID, batch_inputs, result


def _is_traced(*arrays: Any) -> bool:
    return any(isinstance(x, jax.core.Tracer) for x in arrays if x is not None)


def _greedy_one(iou: Any, order: Any, flags: Any, pvalid: Any, cut: Any) -> tuple[Any, ...]:
    """One (G, P) matrix at one cutoff -> (pred_to_gt, gt_to_pred, pred_ignored, matched_iou)."""
    g, p = iou.shape
    index = jnp.arange(g)
    regular = flags == VALID
    ignored = (flags & (VALID | IGNORED)) == (VALID | IGNORED)
    crowd = (flags & CROWD) != 0
    itype = jnp.asarray(0).dtype  # int64 with x64, int32 without

    def take(k: Any, state: tuple[Any, ...]) -> tuple[Any, ...]:
        p2g, g2p, pign, miou = state
        q = order[k]
        col = iou[:, q]
        ok = (col >= cut) & (col > 0) & pvalid[q]  # NaN fails both comparisons
        free = g2p < 0
        reg = ok & regular & free
        ign = ok & ignored & (free | crowd)
        use_reg = jnp.any(reg)
        cand = jnp.where(use_reg, reg, ign)
        best_v = jnp.max(jnp.where(cand, col, -jnp.inf))
        # pycocotools keeps the last of equal IoUs: the highest index among the best.
        best = jnp.max(jnp.where(cand & (col == best_v), index, -1))
        hit = best >= 0
        at = hit & (index == best)
        g2p = jnp.where(at, q.astype(itype), g2p)
        miou = jnp.where(at, col, miou)
        p2g = p2g.at[q].set(best.astype(itype))
        pign = pign.at[q].set(hit & ~use_reg)
        return p2g, g2p, pign, miou

    state = (jnp.full(p, -1, itype), jnp.full(g, -1, itype), jnp.zeros(p, bool),
             jnp.zeros(g, iou.dtype))
    if g == 0 or p == 0:
        return state
    return lax.fori_loop(0, p, take, state)


# vmap over the batch (inner), then the cutoffs (outer): outputs (T, B, ...).
_greedy = jax.jit(jax.vmap(jax.vmap(_greedy_one, in_axes=(0, 0, 0, 0, None)),
                           in_axes=(None, None, None, None, 0)))


def _order(scores: Any, count: int, p: int) -> Any:
    if scores is None:
        return jnp.broadcast_to(jnp.arange(p), (count, p))
    return jnp.argsort(-scores, axis=-1, stable=True)  # NaN sorts last


def match(iou: Any, scores: Any, crowd: Any, gt_ignore: Any, gt_valid: Any, pred_valid: Any, *,
          spec: _validate.MatchSpec) -> MatchResult:
    if scores is not None and not _is_traced(scores) and bool(jnp.isnan(scores).any()):
        raise ValueError("match: scores must not be NaN")
    cube, s, flags, pvalid, gi, gv, pv = batch_inputs(
        jnp, iou, scores, crowd, gt_ignore, gt_valid, pred_valid, spec,
        score_dtype=jax.dtypes.canonicalize_dtype(np.float64),
    )
    count, g, p = cube.shape
    cutoffs = _validate.match_cutoffs(spec.thresholds, np.dtype(cube.dtype))
    order = _order(s, count, p)
    if spec.method == "optimal":
        if _is_traced(iou, scores, crowd, gt_ignore, gt_valid, pred_valid):
            raise TypeError(
                "match: method='optimal' runs SciPy's solver on the host and cannot be traced "
                "(jax.jit, vmap); call it outside the transformation, or use method='greedy'"
            )
        from ..numba_cpu.matching import optimal_host  # SciPy, on the host

        outputs = optimal_host(np.asarray(cube), np.asarray(order).astype(np.int64),
                                    np.asarray(flags), np.asarray(pvalid), cutoffs)
        itype = jnp.asarray(0).dtype
        outputs = tuple(jnp.asarray(o.astype(itype) if o.dtype == np.int64 else o)
                        for o in outputs)
    else:
        outputs = _greedy(cube, order, flags, pvalid, jnp.asarray(cutoffs))
    return result(jnp, outputs, gi, gv, pv, spec)
