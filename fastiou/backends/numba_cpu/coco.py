"""COCO evaluation on the Numba engine: the compiled loops behind :mod:`fastiou.coco`.

A dataset is held as groups: one group per (image, category) pair (per image with ``useCats=0``),
its ground truth ``gt_off[b]:gt_off[b + 1]`` and detections ``dt_off[b]:dt_off[b + 1]`` of the
concatenated arrays. The IoU of group ``b`` is a ``G_b x P_b`` block, ground truth in rows,
row-major, at ``out[iou_off[b]:]``. The caller builds the offsets from the counts of the arrays
it passes (monotone, within the arrays, every block inside ``out``), so the loops index only
within those bounds.

The orders pycocotools takes by stable sorts (the entries of each group, its detections by
descending score; all detections of a category by score for accumulate) are built here by stable
counting passes over image and category positions and a radix sort of the scores' bits, O(n).

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


def _match_template(values, iou_off, g_off, d_off, crowd, g_ig, counts, d_out, cutoffs, slot,
                    same, taken, cand_j, cand_v, state, p2g0, pign0):
    """COCOeval.evaluateImg's greedy matching of every group, in every area range at every
    threshold, and the outcome of each detection, in one pass.

    Group b's objects are ``g_off[b]:g_off[b + 1]`` and its detections ``d_off[b]:d_off[b + 1]``
    (in descending score order, ties in pycocotools' order), its IoU block at ``iou_off[b]``.
    ``g_ig (A, G)``: the object is ignored in area range a (crowd, or outside the range);
    ``counts (G,)``: a match with it counts (pycocotools tests the object's id for truth);
    ``d_out (A, N)``: the detection is outside area range a; ``cutoffs (T,)``: the thresholds as
    pycocotools compares them. Each detection lists its candidates (IoU >= the lowest cutoff and
    > 0) once; each area range then applies the rule at every threshold, or takes range 0's
    matches when its objects are ignored exactly as in range 0. Writes ``state (N, A, T)``, row
    ``slot[detection]`` (0 false positive, 1 true positive, 2 ignored) and, for range 0,
    ``p2g0 (N, T)`` (the matched object's index, or -1) and ``pign0 (N, T)`` (matched an ignored
    object), in detection order. ``same (groups, A)``, ``taken (G, A, T)``, ``cand_j`` and
    ``cand_v (G,)`` are scratch; group b uses its own objects' slots. Every index comes from the
    caller's offsets. One candidate, the usual case, takes a short path."""
    num_t, num_a = cutoffs.shape[0], g_ig.shape[0]
    low = cutoffs[0]  # T >= 1 (checked by match); a loop: no ``cutoffs.min()`` to compile
    for t in range(1, num_t):
        low = cutoffs[t] if cutoffs[t] < low else low
    for b in numba.prange(iou_off.shape[0]):
        g0, g1, p0, p1 = g_off[b], g_off[b + 1], d_off[b], d_off[b + 1]
        ng, nd = g1 - g0, p1 - p0
        at = iou_off[b]
        for j in range(g0, g1):
            for a in range(num_a):
                for t in range(num_t):
                    taken[j, a, t] = False
        for a in range(num_a):
            s = True
            for j in range(g0, g1):
                s = s and g_ig[a, j] == g_ig[0, j]
            same[b, a] = s
        for i in range(p0, p1):
            n = 0
            for j in range(ng):
                v = values[at + j * nd + (i - p0)]
                if v >= low and v > 0.0:
                    cand_j[g0 + n] = g0 + j
                    cand_v[g0 + n] = v
                    n += 1
            row = slot[i]
            if n == 0:  # no candidate: unmatched everywhere
                for t in range(num_t):
                    p2g0[i, t] = -1
                    pign0[i, t] = False
                for a in range(num_a):
                    out = np.uint8(2) if d_out[a, i] else np.uint8(0)
                    for t in range(num_t):
                        state[row, a, t] = out
                continue
            for a in range(num_a):
                miss = np.uint8(2) if d_out[a, i] else np.uint8(0)
                if a > 0 and same[b, a]:
                    for t in range(num_t):
                        best = p2g0[i, t]
                        if pign0[i, t]:
                            state[row, a, t] = 2
                        elif best >= 0 and counts[best]:
                            state[row, a, t] = 1
                        else:
                            state[row, a, t] = miss
                    continue
                if n == 1:  # one candidate: it is free, or a crowd region, or nothing
                    j, v = cand_j[g0], cand_v[g0]
                    ig, cr = g_ig[a, j], crowd[j]
                    hit = np.uint8(2) if ig else (np.uint8(1) if counts[j] else miss)
                    for t in range(num_t):
                        ok = v >= cutoffs[t] and (cr or not taken[j, a, t])
                        if ok:
                            taken[j, a, t] = True
                        if a == 0:
                            p2g0[i, t] = j if ok else -1
                            pign0[i, t] = ok and ig
                        state[row, a, t] = hit if ok else miss
                    continue
                for t in range(num_t):
                    # the regular objects still free, ties to the later one; failing that,
                    # the ignored ones (a crowd region any number of times, others once)
                    best, bv = -1, cutoffs[t]
                    for c in range(g0, g0 + n):
                        j = cand_j[c]
                        if not g_ig[a, j] and not taken[j, a, t] and cand_v[c] >= bv:
                            best, bv = j, cand_v[c]
                    ign = False
                    if best < 0:
                        for c in range(g0, g0 + n):
                            j = cand_j[c]
                            if (g_ig[a, j] and (crowd[j] or not taken[j, a, t])
                                    and cand_v[c] >= bv):
                                best, bv = j, cand_v[c]
                        ign = best >= 0
                    if best >= 0:
                        taken[best, a, t] = True
                    if a == 0:
                        p2g0[i, t] = best
                        pign0[i, t] = ign
                    if ign:
                        state[row, a, t] = 2
                    elif best >= 0 and counts[best]:
                        state[row, a, t] = 1
                    else:
                        state[row, a, t] = miss


def _accumulate_template(seg, level, score, state, npig, num_m, rec_thrs, precision, recall,
                         scores):
    """COCOeval.accumulate for every (category k, area a), all thresholds and maxDets.

    The detections of category k are ``seg[k]:seg[k + 1]``, in accumulate's order (descending
    score, ties by image then by rank within the image); ``level[j]`` is the first maxDets list
    that holds detection j (``num_m``: none; the lists are nested), ``score[j]`` its score;
    ``state (N, A, T)`` uint8 is 0 for a false positive, 1 for a true positive, 2 for an ignored
    detection; ``npig`` (K, A) counts the ground truth that is not ignored (at most that many
    true positives: each object matches once). Outputs hold -1 where npig is 0 (set by the
    caller) and are written completely elsewhere.

    pycocotools computes recall ``rc`` and precision ``pr`` at every position of the list, makes
    ``pr`` non-increasing from the right and reads it at the first position where ``rc`` reaches
    each recall threshold. ``rc`` only rises at true positives, and ``pr`` never rises elsewhere
    (a false positive lowers it, an ignored detection keeps it), so only the true positives are
    recorded: at each, the same ``tp / npig`` and ``tp / (fp + tp + eps)`` as pycocotools; the
    first position (``rc`` 0, ``pr`` 0 unless it is a true positive) is the one other candidate.
    Which true positive each recall threshold reads depends on npig alone: found once per job.
    """
    num_t, num_a = state.shape[2], state.shape[1]
    num_k, num_r = npig.shape[0], rec_thrs.shape[0]
    for job in numba.prange(num_k * num_a):
        a = job % num_a
        k = job // num_a
        positives = npig[k, a]
        if positives == 0:
            continue
        s0, s1 = seg[k], seg[k + 1]
        nd = np.zeros(num_m, dtype=np.int64)  # detections in each list, and the first of each
        first = np.zeros(num_m, dtype=np.int64)
        for j in range(s0, s1):
            for m in range(level[j], num_m):
                if nd[m] == 0:
                    first[m] = j
                nd[m] += 1
        lo = np.empty(num_r, dtype=np.int64)  # the first true positive with tp / npig >= x
        for r in range(num_r):
            x = rec_thrs[r]
            low, high = 0, positives
            while low < high:
                mid = (low + high) // 2
                if float(mid + 1) / positives < x:
                    low = mid + 1
                else:
                    high = mid
            lo[r] = low
        ev_fp = np.empty((num_t, num_m, positives), dtype=np.float64)  # fp at each true positive
        ev_sc = np.empty((num_t, num_m, positives), dtype=np.float64)
        pr = np.empty(positives, dtype=np.float64)
        events = np.zeros((num_t, num_m), dtype=np.int64)
        fp = np.zeros((num_m + 1, num_t), dtype=np.int64)  # false positives by level
        for j in range(s0, s1):
            lj = level[j]
            if lj >= num_m:
                continue
            hits = 0
            for t in range(num_t):
                v = state[j, a, t]
                fp[lj, t] += v == 0
                hits += v == 1
            if hits == 0:  # no event: nothing else to record
                continue
            for t in range(num_t):
                if state[j, a, t] == 1:
                    f = 0.0
                    for m in range(num_m):
                        f += fp[m, t]
                        e = events[t, m]
                        if m >= lj and e < positives:
                            ev_fp[t, m, e] = f
                            ev_sc[t, m, e] = score[j]
                            events[t, m] = e + 1
        for t in range(num_t):
            for m in range(num_m):
                n, num_e = nd[m], events[t, m]
                recall[t, k, a, m] = float(num_e) / positives if n > 0 else 0.0
                for e in range(num_e):
                    tp = float(e + 1)
                    pr[e] = tp / (ev_fp[t, m, e] + tp + EPS)
                for e in range(num_e - 1, 0, -1):
                    if pr[e] > pr[e - 1]:
                        pr[e - 1] = pr[e]
                first_hit = n > 0 and state[first[m], a, t] == 1
                for r in range(num_r):
                    x = rec_thrs[r]
                    if n > 0 and not first_hit and 0.0 / positives >= x:  # the first position
                        precision[t, r, k, a, m] = pr[0] if num_e > 0 else 0.0
                        scores[t, r, k, a, m] = score[first[m]]
                        continue
                    e = lo[r]
                    if e >= num_e:  # past the last position: pycocotools stops (IndexError)
                        for rr in range(r, num_r):
                            precision[t, rr, k, a, m] = 0.0
                            scores[t, rr, k, a, m] = 0.0
                        break
                    precision[t, r, k, a, m] = pr[e]
                    scores[t, r, k, a, m] = ev_sc[t, m, e]


_BOXES = serial_and_parallel(_box_blocks_template)
_MATCH = serial_and_parallel(_match_template)
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


# The sorts copy ``tmp`` back element by element: an array-to-array slice assignment would make
# Numba compile its shape-mismatch error message (string formatting, seconds of compilation).


@kernel()
def _bucket_sort(order, m, key, buckets, counts, tmp):
    """``order[:m]`` stably reordered by ``key[order[x]]``, each in ``[0, buckets)``; ``tmp``
    (>= m) and ``counts`` (>= buckets + 1) are scratch."""
    counts[:buckets + 1] = 0
    for x in range(m):
        counts[key[order[x]] + 1] += 1
    for b in range(buckets):
        counts[b + 1] += counts[b]
    for x in range(m):
        k = key[order[x]]
        tmp[counts[k]] = order[x]
        counts[k] += 1
    for x in range(m):
        order[x] = tmp[x]


RADIX_BITS = 16  # digits of the radix sort: 4 passes over 64-bit keys


@kernel()
def _descending_keys(score, bits, keys):
    """``keys[i]``: an unsigned key that orders as ``-score[i]`` does (``bits`` is ``score``
    viewed as uint64; no NaN; -0.0 and 0.0 get one key, as they compare equal)."""
    top = np.uint64(1) << np.uint64(63)
    for i in range(score.shape[0]):
        u = np.uint64(0) if score[i] == 0.0 else bits[i]
        up = ~u if u & top else u | top  # ascending order of the value
        keys[i] = ~up


@kernel()
def _radix_sort(order, m, keys, counts, tmp):
    """``order[:m]`` stably reordered by ascending ``keys[order[x]]`` (uint64): least
    significant digit first, ``RADIX_BITS`` per pass; ``counts`` has 2**RADIX_BITS + 1 slots."""
    size = 1 << RADIX_BITS
    mask = np.uint64(size - 1)
    for shift in range(0, 64, RADIX_BITS):
        s = np.uint64(shift)
        counts[:size + 1] = 0
        for x in range(m):
            counts[np.int64((keys[order[x]] >> s) & mask) + 1] += 1
        if counts[np.int64((keys[order[0]] >> s) & mask) + 1] == m:
            continue  # one digit for all: the pass would keep the order
        for b in range(size):
            counts[b + 1] += counts[b]
        for x in range(m):
            d = np.int64((keys[order[x]] >> s) & mask)
            tmp[counts[d]] = order[x]
            counts[d] += 1
        for x in range(m):
            order[x] = tmp[x]


@kernel()
def _group_order(img, cat, n_img, n_cat, use_cats, keys, order, tmp, counts):
    """The entries whose image and category are evaluated (``img``, ``cat`` >= 0: positions in
    ``imgIds`` and ``catIds``), in group order: by category then image (``use_cats``; else by
    image, pooling its categories), then by ascending ``keys`` if given (detections: descending
    score), then by category (pooled), then in input order. Least significant key first, each
    pass stable. Writes ``order[:m]`` and returns m; ``tmp`` (n,) and ``counts`` are
    scratch."""
    m = np.int64(0)  # not the literal 0: the sorts below are compiled for one signature
    for x in range(img.shape[0]):
        if img[x] >= 0 and cat[x] >= 0:
            order[m] = x
            m += 1
    if m == 0:
        return m
    if not use_cats:
        _bucket_sort(order, m, cat, n_cat, counts, tmp)
    if keys.shape[0]:
        _radix_sort(order, m, keys, counts, tmp)
    _bucket_sort(order, m, img, n_img, counts, tmp)
    if use_cats:
        _bucket_sort(order, m, cat, n_cat, counts, tmp)
    return m


@kernel()
def _number_groups(g_key, d_key, g_group, d_group, d_rank, keys):
    """Both key arrays ascending: number their distinct keys in order (``keys[:count]``, count
    returned), each entry's group, and each detection's rank in its group."""
    ng, nd = g_key.shape[0], d_key.shape[0]
    i, j, count = 0, 0, 0
    while i < ng or j < nd:
        if j >= nd or (i < ng and g_key[i] <= d_key[j]):
            k = g_key[i]
        else:
            k = d_key[j]
        keys[count] = k
        while i < ng and g_key[i] == k:
            g_group[i] = count
            i += 1
        r = 0
        while j < nd and d_key[j] == k:
            d_group[j] = count
            d_rank[j] = r
            r += 1
            j += 1
        count += 1
    return count


def _counts(buckets: int) -> np.ndarray:
    """Scratch of the counting passes: room for ``buckets`` and for the radix digits."""
    return np.empty(max(buckets, 1 << RADIX_BITS) + 1, dtype=np.int64)


def _keys(score: np.ndarray) -> np.ndarray:
    """(n,) uint64 keys ordering as descending ``score`` (see ``_descending_keys``)."""
    score = np.ascontiguousarray(score, dtype=np.float64)
    keys = np.empty(score.shape[0], dtype=np.uint64)
    _descending_keys(score, score.view(np.uint64), keys)
    return keys


def group_order(img: np.ndarray, cat: np.ndarray, n_img: int, n_cat: int, use_cats: bool,
                score: np.ndarray | None) -> np.ndarray:
    """The evaluated entries in group order (see ``_group_order``): ``img``, ``cat`` (n,) int64
    positions in ``[-1, n_img)`` and ``[-1, n_cat)`` (-1: not evaluated); ``score`` (n,)
    without NaN, or None (no score order). Returns their indices."""
    n = img.shape[0]
    order, tmp = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64)
    keys = _keys(score) if score is not None else np.empty(0, dtype=np.uint64)
    m = _group_order(img, cat, np.int64(n_img), np.int64(n_cat), use_cats, keys, order, tmp,
                     _counts(max(n_img, n_cat)))
    return order[:m]


def number_groups(g_key: np.ndarray, d_key: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(keys, g_group, d_group, d_rank) of two ascending int64 key arrays: their distinct keys
    in order, each entry's position in ``keys``, each detection's rank among its group's."""
    g_group = np.empty(g_key.shape[0], dtype=np.int64)
    d_group, d_rank = (np.empty(d_key.shape[0], dtype=np.int64) for _ in range(2))
    keys = np.empty(g_key.shape[0] + d_key.shape[0], dtype=np.int64)
    count = _number_groups(g_key, d_key, g_group, d_group, d_rank, keys)
    return keys[:count], g_group, d_group, d_rank


def score_order(category: np.ndarray, num_k: int, score: np.ndarray) -> np.ndarray:
    """Indices of the detections by ``category`` (n,) int64 in ``[0, num_k)``, then descending
    ``score`` (n,) without NaN, ties in index order (stable, as ``np.lexsort((-score,
    category))``)."""
    n = score.shape[0]
    order = np.arange(n, dtype=np.int64)
    if n:
        tmp, counts = np.empty(n, dtype=np.int64), _counts(num_k)
        _radix_sort(order, n, _keys(score), counts, tmp)
        _bucket_sort(order, n, category, np.int64(num_k), counts, tmp)
    return order


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


def match(values: np.ndarray, iou_off: np.ndarray, g_off: np.ndarray, d_off: np.ndarray,
          crowd: np.ndarray, g_ig: np.ndarray, counts: np.ndarray, d_out: np.ndarray,
          cutoffs: np.ndarray, slot: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Greedy matching of every group in every area range at every threshold (see
    ``_match_template``): ``values`` the IoU blocks, ``iou_off (groups,)``, ``g_off``,
    ``d_off (groups + 1,)`` int64 offsets; ``crowd``, ``counts (G,)`` and ``g_ig (A, G)`` bool;
    ``d_out (A, N)`` bool; ``cutoffs (T,)`` float64, T >= 1; ``slot (N,)`` a permutation of
    ``range(N)``. Returns ``state (N, A, T)`` uint8, rows at ``slot``; ``p2g0 (N, T)``, the
    matched object's position in group order or -1 (int32, int64 from 2**31 objects); and
    ``pign0 (N, T)`` bool; in detection (group) order."""
    num_t, num_a, n = cutoffs.shape[0], g_ig.shape[0], slot.shape[0]
    total_g, groups = crowd.shape[0], iou_off.shape[0]
    state = np.empty((n, num_a, num_t), dtype=np.uint8)
    p2g0 = np.empty((n, num_t), dtype=np.int32 if total_g < 2**31 else np.int64)
    pign0 = np.empty((n, num_t), dtype=np.bool_)
    if groups and n and num_t:  # the kernel reads cutoffs[0]
        scratch = (np.empty((groups, num_a), dtype=np.bool_),
                   np.empty((total_g, num_a, num_t), dtype=np.bool_),
                   np.empty(total_g, dtype=np.int64), np.empty(total_g, dtype=np.float64))
        _MATCH[groups >= PARALLEL_GROUPS](values, iou_off, g_off, d_off, crowd, g_ig, counts,
                                          d_out, cutoffs, slot, *scratch, state, p2g0, pign0)
    return state, p2g0, pign0


def accumulate(seg: np.ndarray, rank: np.ndarray, score: np.ndarray, state: np.ndarray,
               npig: np.ndarray, max_dets: np.ndarray, rec_thrs: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """precision (T, R, K, A, M), recall (T, K, A, M), scores (T, R, K, A, M), float64, -1 where
    a category has no ground truth that is not ignored. ``max_dets (M,)`` sorted; ``rank (N,)``
    each detection's position in its (image, category) list."""
    num_a, num_t = state.shape[1], state.shape[2]
    num_k, num_m, num_r = npig.shape[0], max_dets.shape[0], rec_thrs.shape[0]
    precision = np.full((num_t, num_r, num_k, num_a, num_m), -1.0)
    recall = np.full((num_t, num_k, num_a, num_m), -1.0)
    scores = np.full((num_t, num_r, num_k, num_a, num_m), -1.0)
    jobs = num_k * num_a
    if jobs and num_m and num_t:
        level = np.searchsorted(max_dets, rank, side="right").astype(np.int64)
        _ACCUMULATE[jobs >= 16](seg, level, score, state, npig, num_m, rec_thrs, precision,
                                recall, scores)
    return precision, recall, scores
