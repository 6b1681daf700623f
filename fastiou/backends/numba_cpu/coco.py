"""COCO evaluation on the Numba engine: the compiled loops behind :mod:`fastiou.coco`.

A dataset is held as groups: one group per (image, category) pair (per image with ``useCats=0``),
its ground truth ``gt_off[b]:gt_off[b + 1]`` and detections ``dt_off[b]:dt_off[b + 1]`` of the
concatenated arrays. The IoU of group ``b`` is a ``G_b x P_b`` block, ground truth in rows,
row-major, at ``out[iou_off[b]:]``. The caller builds the offsets from the counts of the arrays
it passes (monotone, within the arrays, every block inside ``out``), so the loops index only
within those bounds.

The arithmetic is pycocotools' own, operation for operation, so that the values are identical
bit for bit: ``bbIou`` and ``rleIou`` of its ``maskApi.c`` for the IoU blocks, and the cumulative
sums, ``np.spacing(1)``, interpolation and recall-threshold lookup of ``COCOeval.accumulate``.
"""

from __future__ import annotations

import numba
import numpy as np

from . import kernel, serial_and_parallel
from .rle import _intersection, _overlaps, _polygon_runs

EPS = float(np.spacing(1.0))  # accumulate's guard in tp / (tp + fp + eps)
PARALLEL_GROUPS = 256  # below this many groups, waking the worker threads costs more than it saves


def _box_blocks_template(d, g, crowd, gt_off, dt_off, iou_off, out):  # d (P, 4), g (G, 4) xywh
    for b in numba.prange(iou_off.shape[0]):
        g0, g1, p0, p1 = gt_off[b], gt_off[b + 1], dt_off[b], dt_off[b + 1]
        width = p1 - p0
        for j in range(g0, g1):
            gx, gy, gw, gh = g[j, 0], g[j, 1], g[j, 2], g[j, 3]
            ga = gw * gh
            at = iou_off[b] + (j - g0) * width - p0
            for q in range(p0, p1):
                dx, dy, dw, dh = d[q, 0], d[q, 1], d[q, 2], d[q, 3]
                v = 0.0
                w = min(dw + dx, gw + gx) - max(dx, gx)
                if w > 0:
                    h = min(dh + dy, gh + gy) - max(dy, gy)
                    if h > 0:
                        da = dw * dh
                        i = w * h
                        u = da if crowd[j] else da + ga - i
                        v = i / u
                out[at + q] = v


def _rle_blocks_template(ds, de, dlo, dhi, da, db, gs, ge, glo, ghi, ga, gb, crowd, heights,
                         gt_off, dt_off, iou_off, out):
    """RLEs as foreground intervals (``rle.intervals``): mask q's are ``ds[dlo[q]:dhi[q]]``,
    ``de[...]``; areas and xywh boxes; ``heights[b]`` is the image height of group b. A pair whose
    boxes do not overlap shares no pixel."""
    for b in numba.prange(iou_off.shape[0]):
        g0, g1, p0, p1 = gt_off[b], gt_off[b + 1], dt_off[b], dt_off[b + 1]
        width = p1 - p0
        height = heights[b]
        for j in range(g0, g1):
            at = iou_off[b] + (j - g0) * width - p0
            for q in range(p0, p1):
                inter = np.int64(0)
                p, r = db[q], gb[j]
                if _overlaps(p, r):
                    first = np.int64(max(p[0], r[0])) * height
                    last = np.int64(min(p[0] + p[2], r[0] + r[2])) * height
                    inter = _intersection(ds, de, dlo[q], dhi[q], gs, ge, glo[j], ghi[j],
                                          first, last)
                if inter > 0:
                    union = da[q] if crowd[j] else da[q] + ga[j] - inter
                    out[at + q] = inter / union
                else:
                    out[at + q] = 0.0


def _accumulate_template(seg, rank, score, state, npig, max_dets, rec_thrs, precision, recall,
                         scores):
    """COCOeval.accumulate for every (category k, area a, threshold t), all maxDets at once.

    The detections of category k are ``seg[k]:seg[k + 1]``, in accumulate's order (descending
    score, ties by image then by rank within the image); ``rank[j]`` is detection j's position in
    its (image, category) list, ``score[j]`` its score; ``state (T, A, N)`` uint8 is 0 for a
    false positive, 1 for a true positive, 2 for an ignored detection; ``npig`` (K, A) counts the
    ground truth that is not ignored; ``max_dets`` is sorted. Outputs hold -1 where npig is 0
    (set by the caller) and are written completely elsewhere.

    pycocotools computes recall ``rc`` and precision ``pr`` at every position of the list, makes
    ``pr`` non-increasing from the right and reads it at the first position where ``rc`` reaches
    each recall threshold. ``rc`` only rises at true positives, and ``pr`` never rises elsewhere
    (a false positive lowers it, an ignored detection keeps it), so only the true positives are
    recorded: at each, the same ``tp / npig`` and ``tp / (fp + tp + eps)`` as pycocotools; the
    first position (``rc`` 0, ``pr`` 0 unless it is a true positive) is the one other candidate.
    """
    num_t, num_a = state.shape[0], state.shape[1]
    num_k, num_m, num_r = npig.shape[0], max_dets.shape[0], rec_thrs.shape[0]
    for job in numba.prange(num_k * num_a * num_t):
        t = job % num_t
        a = (job // num_t) % num_a
        k = job // (num_t * num_a)
        positives = npig[k, a]
        if positives == 0:
            continue
        s0, s1 = seg[k], seg[k + 1]
        ev_fp = np.empty((num_m, s1 - s0), dtype=np.float64)  # fp count at each true positive
        ev_sc = np.empty((num_m, s1 - s0), dtype=np.float64)
        events = np.zeros(num_m, dtype=np.int64)
        nd = np.zeros(num_m, dtype=np.int64)
        fp = np.zeros(num_m, dtype=np.float64)
        first_score = np.zeros(num_m, dtype=np.float64)
        first_hit = np.zeros(num_m, dtype=np.bool_)
        for j in range(s0, s1):
            r = rank[j]
            v = state[t, a, j]
            hit = v == 1
            for m in range(num_m):  # the maxDets lists this detection is in
                if r >= max_dets[m]:
                    continue
                if nd[m] == 0:
                    first_score[m] = score[j]
                    first_hit[m] = hit
                nd[m] += 1
                if hit:
                    e = events[m]
                    ev_fp[m, e] = fp[m]
                    ev_sc[m, e] = score[j]
                    events[m] = e + 1
                elif v == 0:
                    fp[m] += 1.0
        for m in range(num_m):
            n, num_e = nd[m], events[m]
            recall[t, k, a, m] = float(num_e) / positives if n > 0 else 0.0
            pr = np.empty(num_e, dtype=np.float64)
            for e in range(num_e):
                tp = float(e + 1)
                pr[e] = tp / (ev_fp[m, e] + tp + EPS)
            for e in range(num_e - 1, 0, -1):
                if pr[e] > pr[e - 1]:
                    pr[e - 1] = pr[e]
            for r in range(num_r):
                x = rec_thrs[r]
                if n > 0 and not first_hit[m] and 0.0 / positives >= x:  # the first position
                    precision[t, r, k, a, m] = pr[0] if num_e > 0 else 0.0
                    scores[t, r, k, a, m] = first_score[m]
                    continue
                lo, hi = 0, num_e  # the first true positive with tp / npig >= x
                while lo < hi:
                    mid = (lo + hi) // 2
                    if float(mid + 1) / positives < x:
                        lo = mid + 1
                    else:
                        hi = mid
                if lo >= num_e:  # past the last position: pycocotools stops (IndexError)
                    for rr in range(r, num_r):
                        precision[t, rr, k, a, m] = 0.0
                        scores[t, rr, k, a, m] = 0.0
                    break
                precision[t, r, k, a, m] = pr[lo]
                scores[t, r, k, a, m] = ev_sc[m, lo]


def _states_template(p2g, pign, area, didx, gbase, counts, slot, d_out, state, p2g0, pign0):
    """The matcher's output (T, S) for S selected detections -> accumulate's input.

    Selected detection s is detection ``didx[s]`` matched in area range ``area[s]`` (those of
    range 0 first); ``gbase[s] + p2g[t, s]`` is its object (``counts`` says whether a match
    with it counts: pycocotools tests the object's id for truth). Writes ``state (T, A, N)``
    at ``slot[detection]`` (0 false positive, 1 true positive, 2 ignored), and for range 0
    ``p2g0``/``pign0 (T, N)``.
    """
    num_t, num_a = state.shape[0], state.shape[1]
    for t in numba.prange(num_t):
        for a in range(num_a):  # unmatched: ignored outside the area range
            for i in range(slot.shape[0]):
                state[t, a, slot[i]] = 2 if d_out[a, i] else 0
        for s in range(area.shape[0]):
            i = didx[s]
            q = p2g[t, s]
            hit = q >= 0 and counts[gbase[s] + q]
            a0 = area[s]
            a1 = num_a if a0 == 0 else a0 + 1
            for a in range(a0, a1):
                if pign[t, s] or (not hit and d_out[a, i]):
                    state[t, a, slot[i]] = 2
                else:
                    state[t, a, slot[i]] = 1 if hit else 0
            if a0 == 0:
                p2g0[t, i] = gbase[s] + q if q >= 0 else -1
                pign0[t, i] = pign[t, s]


_BOXES = serial_and_parallel(_box_blocks_template)
_STATES = serial_and_parallel(_states_template)
_RLES = serial_and_parallel(_rle_blocks_template)
_ACCUMULATE = serial_and_parallel(_accumulate_template)


@kernel()
def _rasterize(xy, vertex_off, heights, widths, sizes):
    """Runs of every polygon: polygon i is ``xy[vertex_off[i]:vertex_off[i + 1]]`` (K_i, 2), in
    an image of ``heights[i]`` x ``widths[i]`` (checked by the caller, as ``rle.polygon_runs``
    requires); ``sizes[i]`` gets its number of runs. Returns the runs, concatenated."""
    runs = []
    total = 0
    for i in range(sizes.shape[0]):
        r = _polygon_runs(xy[vertex_off[i]:vertex_off[i + 1]], heights[i], widths[i])
        sizes[i] = r.shape[0]
        total += r.shape[0]
        runs.append(r)
    out = np.empty(total, dtype=np.int64)
    at = 0
    for r in runs:
        out[at:at + r.shape[0]] = r
        at += r.shape[0]
    return out


def rasterize(xy: np.ndarray, vertex_off: np.ndarray, heights: np.ndarray,
              widths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """COCO's rasterization of many polygons in one call -> (counts, offsets (n + 1,))."""
    n = heights.shape[0]
    sizes = np.empty(n, dtype=np.int64)
    counts = _rasterize(xy, vertex_off, heights, widths, sizes) if n else np.empty(0, np.int64)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    return counts, offsets


def box_blocks(d: np.ndarray, g: np.ndarray, crowd: np.ndarray, gt_off: np.ndarray,
               dt_off: np.ndarray, iou_off: np.ndarray, total: int) -> np.ndarray:
    """IoU blocks of xywh float64 boxes ``d (P, 4)``, ``g (G, 4)`` as pycocotools' ``bbIou``;
    ``crowd (G,)`` bool. Returns the flat ``(total,)`` float64 values."""
    out = np.empty(total, dtype=np.float64)
    groups = iou_off.shape[0]
    if groups:
        _BOXES[groups >= PARALLEL_GROUPS](d, g, crowd, gt_off, dt_off, iou_off, out)
    return out


def rle_blocks(dt: tuple[np.ndarray, ...], gt: tuple[np.ndarray, ...], crowd: np.ndarray,
               heights: np.ndarray, gt_off: np.ndarray, dt_off: np.ndarray, iou_off: np.ndarray,
               total: int) -> np.ndarray:
    """IoU blocks of RLEs as pycocotools' ``rleIou``; ``dt``, ``gt``: (starts, ends, lo, hi,
    areas, boxes) of each set, mask i's intervals at ``lo[i]:hi[i]``; ``heights (groups,)``
    int64. The caller has checked that every interval index lies inside starts and ends."""
    out = np.empty(total, dtype=np.float64)
    groups = iou_off.shape[0]
    if groups:
        _RLES[groups >= PARALLEL_GROUPS](*dt, *gt, crowd, heights, gt_off, dt_off, iou_off, out)
    return out


def states(p2g: np.ndarray, pign: np.ndarray, area: np.ndarray, didx: np.ndarray,
           gbase: np.ndarray, counts: np.ndarray, slot: np.ndarray, d_out: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``state (T, A, N)`` uint8 in accumulate's order, ``p2g0 (T, N)`` int64 and
    ``pign0 (T, N)`` bool (see ``_states_template``). Every index comes from the caller's
    offsets and the matcher's local indices (below each group's object count)."""
    num_t, num_a, n = p2g.shape[0], d_out.shape[0], d_out.shape[1]
    state = np.empty((num_t, num_a, n), dtype=np.uint8)
    p2g0 = np.full((num_t, n), -1, dtype=np.int64)
    pign0 = np.zeros((num_t, n), dtype=np.bool_)
    if num_t:
        _STATES[area.shape[0] * num_t >= 1 << 16](p2g, pign, area, didx, gbase, counts, slot,
                                                  d_out, state, p2g0, pign0)
    return state, p2g0, pign0


def accumulate(seg: np.ndarray, rank: np.ndarray, score: np.ndarray, state: np.ndarray,
               npig: np.ndarray, max_dets: np.ndarray, rec_thrs: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """precision (T, R, K, A, M), recall (T, K, A, M), scores (T, R, K, A, M), float64, -1 where
    a category has no ground truth that is not ignored."""
    num_t, num_a = state.shape[0], state.shape[1]
    num_k, num_m, num_r = npig.shape[0], max_dets.shape[0], rec_thrs.shape[0]
    precision = np.full((num_t, num_r, num_k, num_a, num_m), -1.0)
    recall = np.full((num_t, num_k, num_a, num_m), -1.0)
    scores = np.full((num_t, num_r, num_k, num_a, num_m), -1.0)
    jobs = num_k * num_a * num_t
    if jobs and num_m:
        _ACCUMULATE[jobs >= 64](seg, rank, score, state, npig, max_dets, rec_thrs, precision,
                                recall, scores)
    return precision, recall, scores
