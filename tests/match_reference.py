"""Plain Python references for fastiou.match, one (G, P) matrix at a time, in float64.

``greedy`` follows the loop of pycocotools' ``COCOeval.evaluateImg`` line by line (objects sorted
with the ignored ones last, predictions by descending score, ``min(t, 1 - 1e-10)``, the ``<``
test that lets a later object of equal IoU replace the best), plus fastiou's two rules: an IoU must
be > 0 and NaN never matches; invalid rows and columns take no part. ``optimal`` tries every
one-to-one assignment.
"""

from __future__ import annotations

import itertools

import numpy as np


def greedy(iou, scores=None, t=0.5, crowd=None, gt_ignore=None, gt_valid=None, pred_valid=None):
    """-> (pred_to_gt, gt_to_pred, pred_ignored, matched_iou) as lists, in the input order."""
    iou = np.asarray(iou, dtype=np.float64)
    g, p = iou.shape
    crowd = [False] * g if crowd is None else [bool(c) for c in crowd]
    gt_ignore = [False] * g if gt_ignore is None else [bool(c) for c in gt_ignore]
    gt_valid = [True] * g if gt_valid is None else [bool(c) for c in gt_valid]
    pred_valid = [True] * p if pred_valid is None else [bool(c) for c in pred_valid]
    ig = [crowd[j] or gt_ignore[j] for j in range(g)]
    gts = [j for j in range(g) if gt_valid[j] and not ig[j]] + \
          [j for j in range(g) if gt_valid[j] and ig[j]]
    if scores is None:
        dts = list(range(p))
    else:
        dts = sorted(range(p), key=lambda d: -float(scores[d]))  # sorted() is stable
    dts = [d for d in dts if pred_valid[d]]
    p2g, g2p, pign, miou = [-1] * p, [-1] * g, [False] * p, [0.0] * g
    for d in dts:
        best_iou = min(t, 1 - 1e-10)
        m = -1
        for j in gts:
            if g2p[j] >= 0 and not crowd[j]:
                continue
            if m > -1 and not ig[m] and ig[j]:
                break
            v = iou[j, d]
            if np.isnan(v) or v <= 0 or v < best_iou:
                continue
            best_iou, m = v, j
        if m == -1:
            continue
        p2g[d], g2p[m], pign[d], miou[m] = m, d, ig[m], best_iou
    return p2g, g2p, pign, miou


def optimal_total(iou, t=0.5):
    """Largest total IoU of a one-to-one assignment over the pairs with IoU >= t and IoU > 0, by
    trying every assignment."""
    iou = np.asarray(iou, dtype=np.float64)
    g, p = iou.shape
    ok = (iou >= min(t, 1 - 1e-10)) & (iou > 0)
    best = 0.0
    for k in range(1, min(g, p) + 1):
        for rows in itertools.combinations(range(g), k):
            for cols in itertools.permutations(range(p), k):
                if all(ok[r, c] for r, c in zip(rows, cols)):
                    best = max(best, sum(iou[r, c] for r, c in zip(rows, cols)))
    return best
