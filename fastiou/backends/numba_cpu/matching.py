"""Matching on the Numba engine: COCO's greedy rule over many images in one compiled call.

Everything runs through one segmented kernel (``_greedy_template``, the one place the rule is
written), parallel over images, with the thresholds inside. It reads the IoU from concatenated
per-image blocks (a batch ``(B, G, P)`` is B blocks of equal size) or, for ``evaluate`` on
boxes, computes it from the boxes where needed without storing the blocks (``greedy_boxes``).
The score order is taken inside the kernel, only among the predictions that can match. The
optimal rule runs SciPy's assignment solver per matrix and uses the same kernel for the leftovers.

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
from . import kernel, serial_and_parallel, variant
from .boxes import _IOU, _iou2, _iou3, _load2, _load3, _scaled
from .ragged import columns, consts as box_consts

PARALLEL_FROM = 64  # images per call from which waking the threads pays


@kernel()
def _block_row(iou, consts, at, g0, npred, j):
    """Where local object ``j``'s row of the image's block starts (indices uint64: no
    negative-index checks, so that the loop over the predictions vectorizes)."""
    return at + j * npred


@kernel()
def _block_value(iou, consts, row, p0, q):
    """IoU of the object at ``row`` with local prediction ``q``."""
    return iou[row + q]


def _box_row_template(cols, consts, at, g0, npred, j):
    """Object ``g0 + j``'s box (corners and area), from the columns ``cols`` (objects,
    predictions) of ``ragged.columns``."""
    return load(cols[0], g0 + j)  # noqa: F821


def _box_value_template(cols, consts, box, p0, q):
    """IoU of the object ``box`` with prediction ``p0 + q``, by the pairwise kernels' own
    ``pair``: the value a segmented ``box_iou`` block holds."""
    return pair(box, load(cols[1], p0 + q), (consts[0], consts[1], consts[2]))  # noqa: F821


_BOX_ENTRY = {
    d: (kernel()(variant(_box_row_template, f"_box_row{d}", load=load)),
        kernel()(variant(_box_value_template, f"_box_value{d}", load=load, pair=pair)))
    for d, load, pair in ((2, _load2, _iou2), (3, _load3, _iou3))
}


def _box_row_extreme_template(src, consts, at, g0, npred, j):
    """As :func:`_box_row_template`, with the object's flat index: ``src`` is (columns of the
    objects, of the predictions, their flat corners, their extreme flags)."""
    return load(src[0], g0 + j), np.int64(g0 + j)  # noqa: F821


def _box_value_extreme_template(src, consts, row, p0, q):
    """As :func:`_box_value_template`, and by ``boxes._scaled`` for a pair with an extreme box
    (the value of ``box_iou`` there)."""
    box, i = row
    j = np.int64(p0 + q)  # signed: _scaled's index arithmetic stays integral
    if src[4][i] or src[5][j]:
        return _scaled(src[2], i, src[3], j, dims, _IOU, consts)  # noqa: F821
    return pair(box, load(src[1], j), (consts[0], consts[1], consts[2]))  # noqa: F821


# Used for the calls with an extreme box only, so that the common path keeps its vectorized loop.
_BOX_ENTRY_EXTREME = {
    d: (kernel()(variant(_box_row_extreme_template, f"_box_row_extreme{d}", load=load)),
        kernel()(variant(_box_value_extreme_template, f"_box_value_extreme{d}", load=load,
                         pair=pair, dims=d)))
    for d, load, pair in ((2, _load2, _iou2), (3, _load3, _iou3))
}


@kernel()
def _sort_descending(s, p0, m, order, tmp):
    """``order[p0:p0 + m]`` = local indices 0..m-1 by descending ``s[p0 + index]``, ties in
    input order (stable, as ``np.argsort(-s, kind="stable")``; no NaN). ``tmp`` is scratch over
    the same slots. Insertion-sorted runs of 16, then bottom-up merges."""
    run = 16
    for a in range(0, m, run):
        b = min(a + run, m)
        for k in range(a, b):
            v = s[p0 + k]
            x = k
            while x > a and s[p0 + order[p0 + x - 1]] < v:
                order[p0 + x] = order[p0 + x - 1]
                x -= 1
            order[p0 + x] = k
    width = run
    in_tmp = False
    while width < m:
        src, dst = (tmp, order) if in_tmp else (order, tmp)
        for a in range(0, m, 2 * width):
            mid, b = min(a + width, m), min(a + 2 * width, m)
            x, y, o = a, mid, a
            while x < mid and y < b:
                if s[p0 + src[p0 + y]] > s[p0 + src[p0 + x]]:  # strictly: ties keep x first
                    dst[p0 + o] = src[p0 + y]
                    y += 1
                else:
                    dst[p0 + o] = src[p0 + x]
                    x += 1
                o += 1
            while x < mid:
                dst[p0 + o] = src[p0 + x]
                x += 1
                o += 1
            while y < b:
                dst[p0 + o] = src[p0 + y]
                y += 1
                o += 1
        in_tmp = not in_tmp
        width *= 2
    if in_tmp:
        for k in range(m):
            order[p0 + k] = tmp[p0 + k]


SMALL_SORT = 256  # predictions per image up to which ranks by counting beat merging


@kernel()
def _rank_descending(s, p0, m, order, tmp):
    """As :func:`_sort_descending` for a small image (``tmp`` unused): the rank of each
    prediction is the count of those before it in the order (higher scores, and equal scores
    earlier in the input). The comparisons are branch-free and vectorize; sorting's branches
    mispredict on random scores."""
    u0 = np.uint64(p0)  # unsigned indices: no negative-index checks, so the loops vectorize
    for k in range(m):
        v = s[p0 + k]
        r = np.uint64(0)
        for x in range(u0, u0 + np.uint64(k)):
            r += np.uint64(s[x] >= v)
        for x in range(u0 + np.uint64(k + 1), u0 + np.uint64(m)):
            r += np.uint64(s[x] > v)
        order[p0 + r] = k


def _greedy_template(src, consts, iou_offsets, gt_offsets, pred_offsets, keys, gflags, pvalid,
                     cutoffs, hits, lasts, picked, picked_keys, ranked, tmp, cand, value,
                     pred_to_gt, gt_to_pred, pred_ignored, matched_iou):
    """``iou_at(src, consts, iou_row(src, consts, ...), ...)`` is the IoU of an object and a
    prediction of image i: read from the G_i x P_i block at ``iou_offsets[i]`` of ``src``
    (:func:`_block_row`, :func:`_block_value`), or computed from the boxes (``src`` their
    columns, see :func:`greedy_boxes`). Within an image, predictions choose by descending
    ``keys`` (float64, no NaN), ties in input order (``keys`` empty: input order). Outputs are
    (T, total_P) / (T, total_G), with local indices. The other arrays are scratch, (total_P,)
    or (total_G,): image i uses the slots of its predictions or objects (``hits`` and ``lasts``
    are int32: an image has fewer than 2**31 objects). Every bound comes from the validated
    offsets.

    A prediction's candidates are the valid objects with IoU >= the lowest cutoff and > 0 (NaN
    fails both). One pass (objects in turn, predictions inner, so that it vectorizes) counts
    them per prediction and keeps the last. Only the valid predictions with candidates can
    match, so only they are put in order; each in turn lists its candidates (the one kept, or
    its column) and chooses at every threshold.

    ``sort`` is :func:`_sort_descending` or, in the build for calls whose images all have at most
    ``SMALL_SORT`` predictions, :func:`_rank_descending` (so that it alone is compiled)."""
    low = cutoffs[0]  # at least one threshold (checked by the callers); no ``min`` to compile
    for t in range(1, cutoffs.shape[0]):
        low = cutoffs[t] if cutoffs[t] < low else low
    zero = low - low
    scored = keys.shape[0] > 0
    for i in numba.prange(gt_offsets.shape[0] - 1):
        g0, p0 = gt_offsets[i], pred_offsets[i]
        ng, npred = gt_offsets[i + 1] - g0, pred_offsets[i + 1] - p0
        at, ug0, up0, unp = (np.uint64(iou_offsets[i]), np.uint64(g0), np.uint64(p0),
                             np.uint64(npred))
        for t in range(pred_to_gt.shape[0]):  # the image's outputs before matching: none matched
            for j in range(g0, g0 + ng):
                gt_to_pred[t, j] = -1
                matched_iou[t, j] = 0
            for q in range(p0, p0 + npred):
                pred_to_gt[t, q] = -1
                pred_ignored[t, q] = False
        h, last = hits[p0:p0 + npred], lasts[p0:p0 + npred]
        h[:] = 0
        for j in range(ng):
            if gflags[g0 + j] & VALID:
                r = iou_row(src, consts, at, ug0, unp, np.uint64(j))  # noqa: F821
                jj = np.int32(j)
                for q in range(np.uint64(0), unp):
                    v = iou_at(src, consts, r, up0, q)  # noqa: F821
                    hit = (v >= low) & (v > zero)
                    h[q] += np.int32(hit)
                    last[q] = jj if hit else last[q]
        m = np.int64(0)  # not the literal 0: one compiled signature of the sort below
        for q in range(npred):  # those that can match, in input order (no branches: m <= q)
            picked[p0 + m] = q
            if scored:
                picked_keys[p0 + m] = keys[p0 + q]
            m += np.int64((h[q] > 0) & pvalid[p0 + q])
        if not scored:
            for k in range(m):
                ranked[p0 + k] = k
        elif m <= SMALL_SORT:
            _rank_descending(picked_keys, p0, m, ranked, tmp)
        else:
            sort(picked_keys, p0, m, ranked, tmp)  # noqa: F821
        c_i, v_i = cand[g0:g0 + ng], value[g0:g0 + ng]
        for k in range(m):
            q = picked[p0 + ranked[p0 + k]]
            uq = np.uint64(q)
            if h[q] == 1:  # the usual case: the one candidate is known
                j = last[q]
                r = iou_row(src, consts, at, ug0, unp, np.uint64(j))  # noqa: F821
                c_i[0], v_i[0], n = j, iou_at(src, consts, r, up0, uq), 1  # noqa: F821
            else:
                for j in range(np.uint64(0), np.uint64(ng)):  # the column, then kept in place:
                    r = iou_row(src, consts, at, ug0, unp, j)  # noqa: F821
                    v_i[j] = iou_at(src, consts, r, up0, uq)  # noqa: F821
                n = 0
                for j in range(ng):  # without branches (n <= j: nothing is overwritten unread)
                    v = v_i[j]
                    c_i[n], v_i[n] = j, v
                    n += np.int64((v >= low) & (v > zero) & ((gflags[g0 + j] & VALID) != 0))
            # COCO's greedy rule, at each threshold row in turn (the rows do not interact), among
            # the candidates c_i[:n] in ascending index: first the regular objects still free,
            # ties to the later index; failing that, the ignored ones (a crowd region any number
            # of times, a gt_ignore object once).
            for t in range(cutoffs.shape[0]):
                best, best_v = -1, cutoffs[t]
                for c in range(n):
                    j = c_i[c]
                    if gflags[g0 + j] == VALID and gt_to_pred[t, g0 + j] < 0 and v_i[c] >= best_v:
                        best, best_v = j, v_i[c]
                ignored = False
                if best < 0:
                    for c in range(n):
                        j = c_i[c]
                        f = gflags[g0 + j]
                        if (f & IGNORED and (f & CROWD or gt_to_pred[t, g0 + j] < 0)
                                and v_i[c] >= best_v):
                            best, best_v = j, v_i[c]
                    ignored = best >= 0
                if best >= 0:
                    pred_to_gt[t, p0 + q] = best
                    pred_ignored[t, p0 + q] = ignored
                    gt_to_pred[t, g0 + best] = q
                    matched_iou[t, g0 + best] = best_v


def _greedy(name: str, row: Any, value: Any) -> dict[bool, tuple[Any, Any]]:
    """(serial, parallel) builds of the greedy kernel reading the IoU by ``row`` and ``value``:
    by whether a call may have an image of more than ``SMALL_SORT`` predictions."""
    return {big: serial_and_parallel(variant(
        _greedy_template, name + ("" if big else "_small"), iou_row=row, iou_at=value,
        sort=_sort_descending if big else _rank_descending)) for big in (False, True)}


_GREEDY = _greedy("_greedy_blocks", _block_row, _block_value)
_GREEDY_BOXES = {d: _greedy(f"_greedy_boxes{d}", *entry) for d, entry in _BOX_ENTRY.items()}
_GREEDY_BOXES_EXTREME = {
    d: _greedy(f"_greedy_boxes_extreme{d}", *entry) for d, entry in _BOX_ENTRY_EXTREME.items()
}


def _pick(builds: dict[bool, tuple[Any, Any]], pred_offsets: np.ndarray) -> Any:
    """The build for images at ``pred_offsets`` (n + 1,): serial below ``PARALLEL_FROM`` images,
    with the merge sort only where an image has more than ``SMALL_SORT`` predictions."""
    images = pred_offsets.shape[0] - 1
    big = images > 0 and int(np.diff(pred_offsets).max()) > SMALL_SORT
    return builds[big][images >= PARALLEL_FROM]


def _keys(func: str, scores: Any, total: int) -> np.ndarray:
    """Scores as float64 keys of the order within each image (descending, ties in input
    order); None: empty, i.e. input order. NaN is a ValueError."""
    if scores is None:
        return np.zeros(0)
    s = np.ascontiguousarray(scores, dtype=np.float64)
    if np.isnan(s).any():
        at = int(np.argmax(np.isnan(s)))
        raise ValueError(f"{func}: scores must not be NaN (at index {at})")
    return s


def _outputs(t: int, total_g: int, total_p: int,
             dtype: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return (np.empty((t, total_p), dtype=np.int64), np.empty((t, total_g), dtype=np.int64),
            np.empty((t, total_p), dtype=np.bool_), np.empty((t, total_g), dtype=dtype))


def _scratch(gt_off: np.ndarray, total_p: int, dtype: Any) -> tuple[np.ndarray, ...]:
    """``hits`` ... ``value`` of :func:`_greedy_template` (its int32 counters need images of
    fewer than 2**31 objects: checked here)."""
    if gt_off.shape[0] > 1 and int(np.diff(gt_off).max()) >= 2**31:
        raise ValueError("match: an image has 2**31 or more ground-truth objects; at most "
                         "2**31 - 1 per image are supported")
    total_g = int(gt_off[-1])
    return (np.empty(total_p, dtype=np.int32), np.empty(total_p, dtype=np.int32),
            np.empty(total_p, dtype=np.int64), np.empty(total_p, dtype=np.float64),
            np.empty(total_p, dtype=np.int64), np.empty(total_p, dtype=np.int64),
            np.empty(total_g, dtype=np.int64), np.empty(total_g, dtype=dtype))


def _run(iou_flat: np.ndarray, iou_off: np.ndarray, gt_off: np.ndarray, pred_off: np.ndarray,
         keys: np.ndarray, gflags: np.ndarray, pvalid: np.ndarray,
         cutoffs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    total_g, total_p = int(gt_off[-1]), int(pred_off[-1])
    outputs = _outputs(cutoffs.shape[0], total_g, total_p, iou_flat.dtype)
    if iou_off.shape[0] and cutoffs.shape[0]:  # the kernel reads cutoffs[0]
        _pick(_GREEDY, pred_off)(
            iou_flat, iou_flat[:0], iou_off, gt_off, pred_off, keys, gflags, pvalid, cutoffs,
            *_scratch(gt_off, total_p, iou_flat.dtype), *outputs,
        )
    return outputs


def greedy_boxes(
    c1: np.ndarray, c2: np.ndarray, off1: np.ndarray, off2: np.ndarray, *, dims: int,
    scores: np.ndarray | None, thresholds: np.ndarray, zero_division: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Segmented box IoU and greedy matching in one compiled pass, without the IoU blocks.

    ``c1 (K1, 2d)`` objects and ``c2 (K2, 2d)`` predictions are corner boxes of the compute
    dtype (float32 or float64), C-contiguous; ``off1``, ``off2`` (n + 1,) int64 validated
    segment offsets; ``scores (K2,)`` float64 or None; ``thresholds (T,)`` float64 in [0, 1].
    Returns what :func:`greedy_segmented` returns for the blocks of
    ``ragged.box_iou(c1, c2, off1, off2, ...)``, with every object valid and regular: each IoU
    is computed by the same pair function, when needed (a prediction's values twice: to count
    its candidates, then to list them), and never stored; a pair with an extreme box (see
    ``ragged.box_iou``) by ``boxes._scaled``, in a build of the kernel used only when the call
    has such a box."""
    total_g, total_p = int(off1[-1]), int(off2[-1])
    images = off1.shape[0] - 1
    keys = _keys("evaluate", scores, total_p)
    cutoffs = _validate.match_cutoffs(np.asarray(thresholds, dtype=np.float64), c1.dtype)
    outputs = _outputs(cutoffs.shape[0], total_g, total_p, c1.dtype)
    if images and cutoffs.shape[0]:  # the kernel reads cutoffs[0]
        consts = box_consts(c1.dtype, dims, zero_division)
        (a, x1), (b, x2) = columns(c1, dims, consts), columns(c2, dims, consts)
        src = (a, b)
        kernels = _GREEDY_BOXES[dims]
        if x1.any() or x2.any():
            src += (c1.reshape(-1), c2.reshape(-1), x1, x2)
            kernels = _GREEDY_BOXES_EXTREME[dims]
        _pick(kernels, off2)(
            src, consts, np.zeros(images, dtype=np.int64),
            off1, off2, keys,
            np.full(total_g, VALID, dtype=np.uint8), np.ones(total_p, dtype=bool), cutoffs,
            *_scratch(off1, total_p, c1.dtype), *outputs,
        )
    return outputs


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
    return _run(flat, iou_off, gt_off, pred_off, _keys(func, scores, total_p), flags,
                np.ones(total_p, dtype=bool), _validate.match_cutoffs(thr, compute))


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
    keys = np.empty((count, p))  # the kernel's form of ``order``: its k-th prediction gets -k
    np.put_along_axis(keys, order, np.broadcast_to(-np.arange(p, dtype=np.float64), (count, p)),
                      axis=1)
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
        r = _run(cube.reshape(-1), iou_off, gt_off, pred_off, keys.reshape(-1),
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
    keys = _keys("match", None if s is None else s.reshape(-1), count * p)
    cutoffs = _validate.match_cutoffs(spec.thresholds, spec.compute)
    if spec.method == "optimal":
        order = (np.argsort(-keys.reshape(count, p), axis=1, kind="stable") if keys.size
                 else np.tile(np.arange(p, dtype=np.int64), (count, 1)))
        outputs = optimal_host(cube, order, flags, pvalid, cutoffs)
    else:
        outputs = _run(cube.reshape(-1), iou_off, gt_off, pred_off, keys, flags.reshape(-1),
                       pvalid.reshape(-1), cutoffs)
    return result(np, outputs, gi, gv, pv, spec)
