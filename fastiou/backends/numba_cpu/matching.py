"""Matching on the Numba engine: COCO's greedy rule over many images in one compiled call.

Everything runs through one segmented kernel over concatenated per-image IoU blocks, parallel over
images, with the thresholds inside: a batch ``(B, G, P)`` is B blocks of equal size. The optimal
rule runs SciPy's assignment solver per matrix and uses the same kernel for the leftovers.

Ground-truth flags are packed per object as in ``backends/_matching_arrays.py``.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

from ... import _validate
from ...matching import MatchResult
from .._matching_arrays import (
    CROWD, IGNORED, VALID, batch_inputs, gt_flags, result, uniform_offsets,
)
from . import serial_and_parallel
PARALLEL_FROM = 64  # images per call from which waking the threads pays


def _greedy_template(iou, iou_offsets, gt_offsets, pred_offsets, order, gflags, pvalid, cutoffs,
                     pred_to_gt, gt_to_pred, pred_ignored, matched_iou):
    """Block i of ``iou`` is G_i x P_i at ``iou_offsets[i]``; ``order`` holds local prediction
    indices per image, in the order they choose; outputs are (T, total_P) / (T, total_G), with
    local indices. Every bound comes from the validated offsets."""
    low = cutoffs.min()
    for i in numba.prange(iou_offsets.shape[0]):
        g0, p0, at = gt_offsets[i], pred_offsets[i], iou_offsets[i]
        ng, npred = gt_offsets[i + 1] - g0, pred_offsets[i + 1] - p0
        # The candidates of each prediction, once for every threshold: the valid objects j with
        # IoU >= the lowest cutoff and > 0 (NaN fails both), in ascending j, as a CSR list.
        start = np.zeros(npred + 1, dtype=np.int64)
        for j in range(ng):
            if gflags[g0 + j] & VALID:
                for q in range(npred):
                    v = iou[at + j * npred + q]
                    if v >= low and v > 0:
                        start[q + 1] += 1
        for q in range(npred):
            start[q + 1] += start[q]
        fill = start[:-1].copy()
        cand = np.empty(start[npred], dtype=np.int64)
        value = np.empty(start[npred], dtype=iou.dtype)
        for j in range(ng):
            if gflags[g0 + j] & VALID:
                for q in range(npred):
                    v = iou[at + j * npred + q]
                    if v >= low and v > 0:
                        cand[fill[q]], value[fill[q]] = j, v
                        fill[q] += 1
        for t in range(cutoffs.shape[0]):
            g2p, miou = gt_to_pred[t, g0:g0 + ng], matched_iou[t, g0:g0 + ng]
            p2g, pign = pred_to_gt[t, p0:p0 + npred], pred_ignored[t, p0:p0 + npred]
            g2p[:] = -1
            miou[:] = 0
            p2g[:] = -1
            pign[:] = False
            for k in range(npred):
                q = order[p0 + k]
                if not pvalid[p0 + q]:
                    continue
                best, best_v = -1, cutoffs[t]
                for c in range(start[q], start[q + 1]):  # the regular objects still free
                    j = cand[c]
                    if gflags[g0 + j] == VALID and g2p[j] < 0 and value[c] >= best_v:
                        best, best_v = j, value[c]  # ties: the later index wins
                ignored = False
                if best < 0:  # then the ignored ones: a crowd region any number of times
                    for c in range(start[q], start[q + 1]):
                        j = cand[c]
                        f = gflags[g0 + j]
                        if f & IGNORED and (f & CROWD or g2p[j] < 0) and value[c] >= best_v:
                            best, best_v = j, value[c]
                    ignored = best >= 0
                if best >= 0:
                    p2g[q] = best
                    pign[q] = ignored
                    g2p[best] = q
                    miou[best] = best_v


def _order_template(scores, pred_offsets, order):
    """Per image: local prediction indices by descending score, ties in input order."""
    for i in numba.prange(pred_offsets.shape[0] - 1):
        p0, p1 = pred_offsets[i], pred_offsets[i + 1]
        if p1 > p0:
            order[p0:p1] = np.argsort(-scores[p0:p1], kind="mergesort")


_GREEDY = serial_and_parallel(_greedy_template)
_ORDER = serial_and_parallel(_order_template)


def _pick(pair: tuple[Any, Any], images: int) -> Any:
    return pair[1] if images >= PARALLEL_FROM else pair[0]


def _order(func: str, scores: np.ndarray | None, pred_offsets: np.ndarray) -> np.ndarray:
    total = int(pred_offsets[-1])
    images = pred_offsets.shape[0] - 1
    if scores is None:
        counts = np.diff(pred_offsets)
        return np.arange(total, dtype=np.int64) - np.repeat(pred_offsets[:-1], counts)
    s = np.ascontiguousarray(scores, dtype=np.float64)
    if np.isnan(s).any():
        raise ValueError(f"{func}: scores must not be NaN (at index {int(np.argmax(np.isnan(s)))})")
    order = np.empty(total, dtype=np.int64)
    _pick(_ORDER, images)(s, pred_offsets, order)
    return order


def _run(iou_flat: np.ndarray, iou_off: np.ndarray, gt_off: np.ndarray, pred_off: np.ndarray,
         order: np.ndarray, gflags: np.ndarray, pvalid: np.ndarray,
         cutoffs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    t = cutoffs.shape[0]
    total_g, total_p = int(gt_off[-1]), int(pred_off[-1])
    pred_to_gt = np.empty((t, total_p), dtype=np.int64)
    gt_to_pred = np.empty((t, total_g), dtype=np.int64)
    pred_ignored = np.empty((t, total_p), dtype=np.bool_)
    matched_iou = np.empty((t, total_g), dtype=iou_flat.dtype)
    if iou_off.shape[0]:
        _pick(_GREEDY, iou_off.shape[0])(
            iou_flat, iou_off, gt_off, pred_off, order, gflags, pvalid, cutoffs,
            pred_to_gt, gt_to_pred, pred_ignored, matched_iou,
        )
    return pred_to_gt, gt_to_pred, pred_ignored, matched_iou


def _flat_flag(func: str, name: str, x: Any, size: int) -> np.ndarray:
    if x is None:
        return np.zeros(size, dtype=bool)
    a = np.asarray(x)
    if a.dtype.kind not in "biu" or a.shape != (size,):
        raise ValueError(
            f"{func}: {name} must be a bool array of shape ({size},), got "
            f"{_validate.describe(a)}"
        )
    return a != 0


def greedy_segmented(
    iou_flat: Any, iou_offsets: Any, gt_offsets: Any, pred_offsets: Any, *,
    scores: Any = None, thresholds: Any = (0.5,), crowd: Any = None, gt_ignore: Any = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """COCO greedy matching of many images in one compiled call (no Python loop per image).

    Parameters
    ----------
    iou_flat : Array[K] float
        Concatenated IoU blocks: image i's is ``G_i x P_i``, ground truth in rows, row-major, at
        ``iou_flat[iou_offsets[i]:]``. float64 is compared in float64, other floats in float32.
    iou_offsets : Array[n] int
        Start of each image's block.
    gt_offsets, pred_offsets : Array[n + 1] int
        Objects / predictions of image i are ``gt_offsets[i]:gt_offsets[i + 1]`` (from 0, never
        decreasing); ``G_i`` and ``P_i`` are their differences.
    scores : Array[pred_offsets[-1]] numeric, optional
        Order of the predictions within each image: descending score, ties in input order. None:
        input order. NaN is a ValueError.
    thresholds : float or sequence of T floats in [0, 1]
    crowd, gt_ignore : Array[gt_offsets[-1]] bool, optional
        As in :func:`fastiou.match`.

    Returns
    -------
    pred_to_gt : Array[T, pred_offsets[-1]] int64
        Local index (within the image) of the matched object, or -1.
    gt_to_pred : Array[T, gt_offsets[-1]] int64
        Local index of the matching prediction, or -1.
    pred_ignored : Array[T, pred_offsets[-1]] bool
    matched_iou : Array[T, gt_offsets[-1]] float32 or float64 (the compare dtype)
        For each image and threshold t, the same as ``fastiou.match(block_i, scores=scores_i,
        threshold=thresholds[t], crowd=..., gt_ignore=...)``.
    """
    func = "greedy_segmented"
    flat = np.asarray(iou_flat)
    if not _validate.is_float_dtype(flat.dtype) or flat.ndim != 1:
        raise TypeError(
            f"{func}: iou_flat must be a 1-D floating array, got {_validate.describe(flat)}"
        )
    compute = np.dtype(np.float64 if flat.dtype == np.float64 else np.float32)
    flat = np.ascontiguousarray(flat, dtype=compute)
    iou_off, gt_off, pred_off = _validate.match_segments(
        func, flat.shape[0], iou_offsets, gt_offsets, pred_offsets
    )
    total_g, total_p = int(gt_off[-1]), int(pred_off[-1])
    if scores is not None:
        s = np.asarray(scores)
        if s.dtype.kind not in "iuf" or s.shape != (total_p,):
            raise ValueError(
                f"{func}: scores must be a numeric array of shape ({total_p},), got "
                f"{_validate.describe(s)}"
            )
        scores = s
    thr, _ = _validate.match_thresholds(func, thresholds, "thresholds")
    c = _flat_flag(func, "crowd", crowd, total_g)
    ig = _flat_flag(func, "gt_ignore", gt_ignore, total_g)
    flags = gt_flags(np.ones(total_g, dtype=bool), c, ig)
    order = _order(func, scores, pred_off)
    return _run(flat, iou_off, gt_off, pred_off, order, flags, np.ones(total_p, dtype=bool),
                _validate.match_cutoffs(thr, compute))


# --------------------------------------------------------------------------------------------
# The engine's entry behind fastiou.match; optimal_host also serves the other engines.


def optimal_host(cube: np.ndarray, order: np.ndarray, flags: np.ndarray, pvalid: np.ndarray,
                 cutoffs: np.ndarray) -> tuple[np.ndarray, ...]:
    """The optimal rule on NumPy arrays ``(B, G, P)``: SciPy's assignment over the regular
    objects, then the greedy kernel for the leftovers against the ignored ones."""
    try:
        from scipy.optimize import linear_sum_assignment
    except ImportError as exc:
        raise ImportError(
            f"match: method='optimal' needs SciPy, which could not be imported ({exc}); install "
            'it with: pip install "fastiou[optimal]"'
        ) from exc

    count, g, p = cube.shape
    t = cutoffs.shape[0]
    iou_off, gt_off, pred_off = uniform_offsets(count, g, p)
    p2g = np.full((t, count, p), -1, dtype=np.int64)
    g2p = np.full((t, count, g), -1, dtype=np.int64)
    miou = np.zeros((t, count, g), dtype=cube.dtype)
    regular = flags == VALID
    for k in range(t):
        for b in range(count):
            ok = (cube[b] >= cutoffs[k]) & (cube[b] > 0) & np.isfinite(cube[b])
            ok &= regular[b][:, None] & pvalid[b][None, :]
            if not ok.any():
                continue
            rows, cols = linear_sum_assignment(np.where(ok, cube[b], 0).astype(np.float64),
                                               maximize=True)
            keep = ok[rows, cols]
            rows, cols = rows[keep], cols[keep]
            p2g[k, b, cols], g2p[k, b, rows], miou[k, b, rows] = rows, cols, cube[b, rows, cols]
    # Leftover predictions against the ignored objects, by the greedy rule (one call per threshold).
    leftover_flags = np.where(regular, np.uint8(0), flags)
    pign = np.zeros((t, count, p), dtype=bool)
    for k in range(t):
        free = pvalid & (p2g[k] < 0)
        r = _run(cube.reshape(-1), iou_off, gt_off, pred_off, order.reshape(-1),
                 np.ascontiguousarray(leftover_flags.reshape(-1)), free.reshape(-1),
                 cutoffs[k:k + 1])
        hit = r[0][0].reshape(count, p) >= 0
        p2g[k][hit] = r[0][0].reshape(count, p)[hit]
        pign[k] = hit
        took = r[1][0].reshape(count, g) >= 0
        g2p[k][took] = r[1][0].reshape(count, g)[took]
        miou[k][took] = r[3][0].reshape(count, g)[took]
    return p2g, g2p, pign, miou


def match(iou: Any, scores: Any, crowd: Any, gt_ignore: Any, gt_valid: Any, pred_valid: Any, *,
          spec: _validate.MatchSpec) -> MatchResult:
    cube, s, flags, pvalid, gi, gv, pv = batch_inputs(
        np, iou, scores, crowd, gt_ignore, gt_valid, pred_valid, spec
    )
    count, g, p = cube.shape
    iou_off, gt_off, pred_off = uniform_offsets(count, g, p)
    order = _order("match", None if s is None else s.reshape(-1), pred_off)
    cutoffs = _validate.match_cutoffs(spec.thresholds, spec.compute)
    if spec.method == "optimal":
        outputs = optimal_host(cube, order.reshape(count, p), flags, pvalid, cutoffs)
    else:
        outputs = _run(cube.reshape(-1), iou_off, gt_off, pred_off, order, flags.reshape(-1),
                       pvalid.reshape(-1), cutoffs)
    return result(np, outputs, gi, gv, pv, spec)
