"""Matching on the CUDA engine (kernel in ``fastiou/cuda/matching.cu``).

One launch matches every image (or batch item) at every threshold: a block of 64 threads per
(image, threshold) takes the predictions in score order and chooses each one's object with a
block-wide reduction. The score order is computed on the device (a sort by image, descending
score, then index). The optimal rule runs SciPy's solver on the host: the IoU matrix is copied
there and the result copied back.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ... import _validate
from ...matching import MatchResult
from .._matching_arrays import batch_inputs, result, uniform_offsets
from . import C_TYPES, KERNELS, MAX_GRID_X, MAX_GRID_Y, launch, runtime

MATCH_BLOCK = 64  # = MATCH_BLOCK in matching.cu
FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _kernel(dtype: Any) -> str:
    return f"fastiou::greedy_match<{C_TYPES[np.dtype(dtype)]}>"


KERNELS["matching.cu"] = tuple(_kernel(d) for d in FLOATS)


def _to_host(x: Any) -> np.ndarray:
    """A NumPy array of ``x`` (a CuPy array is fetched from the device)."""
    return x.get() if type(x).__module__.startswith("cupy") else np.asarray(x)


def _order(xp: Any, scores: Any, count: int, p: int) -> Any:
    """(count * p,) int64 local indices: per item, descending score, ties in input order."""
    local = xp.tile(xp.arange(p, dtype=np.int64), count)
    if scores is None:
        return local
    item = xp.repeat(xp.arange(count, dtype=np.float64), p)
    # lexsort: the last key is the primary one; the index makes every key distinct.
    keys = xp.stack([local.astype(np.float64), -scores.reshape(-1), item])
    return xp.ascontiguousarray(xp.lexsort(keys) % max(p, 1))


def greedy(iou_flat: Any, iou_off: Any, gt_off: Any, pred_off: Any, order: Any, gflags: Any,
           pvalid: Any, cutoffs: np.ndarray, total_g: int, total_p: int) -> tuple[Any, ...]:
    """Launch the kernel on validated device arrays; outputs (T, total_p) / (T, total_g)."""
    xp = runtime().xp
    t, images = cutoffs.shape[0], iou_off.shape[0]
    pred_to_gt = xp.empty((t, total_p), dtype=np.int64)
    gt_to_pred = xp.empty((t, total_g), dtype=np.int64)
    pred_ignored = xp.empty((t, total_p), dtype=np.bool_)
    matched_iou = xp.empty((t, total_g), dtype=iou_flat.dtype)
    if images and t:
        dtype = iou_flat.dtype
        args = ((iou_flat, dtype), (iou_off, np.int64), (gt_off, np.int64), (pred_off, np.int64),
                (order, np.int64), (gflags, np.uint8), (pvalid, np.bool_),
                (xp.asarray(cutoffs), dtype), (images, np.int64), (t, np.int64),
                (total_g, np.int64), (total_p, np.int64), (pred_to_gt, np.int64),
                (gt_to_pred, np.int64), (pred_ignored, np.bool_), (matched_iou, dtype))
        grid = (min(images, MAX_GRID_X), min(t, MAX_GRID_Y))
        launch("matching.cu", _kernel(dtype), grid, (MATCH_BLOCK,), args)
    return pred_to_gt, gt_to_pred, pred_ignored, matched_iou


def greedy_segmented(
    iou_flat: Any, iou_offsets: Any, gt_offsets: Any, pred_offsets: Any, *,
    scores: Any = None, thresholds: Any = (0.5,), crowd: Any = None, gt_ignore: Any = None,
) -> tuple[Any, Any, Any, Any]:
    """:func:`fastiou.backends.numba_cpu.matching.greedy_segmented` on CuPy arrays.

    The offsets may be NumPy or CuPy arrays (they are read on the host to be checked); the result
    is four CuPy arrays of the shapes and dtypes documented there.
    """
    func = "greedy_segmented"
    xp = runtime().xp
    flat = xp.asarray(iou_flat)
    if not _validate.is_float_dtype(flat.dtype) or flat.ndim != 1:
        raise TypeError(
            f"{func}: iou_flat must be a 1-D floating array, got {_validate.describe(flat)}"
        )
    compute = np.dtype(np.float64 if flat.dtype == np.float64 else np.float32)
    flat = xp.ascontiguousarray(flat.astype(compute, copy=False))
    iou_off, gt_off, pred_off = _validate.match_segments(
        func, flat.shape[0], _to_host(iou_offsets), _to_host(gt_offsets), _to_host(pred_offsets)
    )
    total_g, total_p = int(gt_off[-1]), int(pred_off[-1])
    thr, _ = _validate.match_thresholds(func, thresholds, "thresholds")

    def flag(name: str, x: Any) -> Any:
        if x is None:
            return xp.zeros(total_g, dtype=bool)
        a = xp.asarray(x)
        if a.dtype.kind not in "biu" or a.shape != (total_g,):
            raise ValueError(
                f"{func}: {name} must be a bool array of shape ({total_g},), got "
                f"{_validate.describe(a)}"
            )
        return a != 0

    c, ig = flag("crowd", crowd), flag("gt_ignore", gt_ignore)
    flags = xp.ascontiguousarray(c.astype(np.uint8) << 2 | (c | ig).astype(np.uint8) << 1 | 1)
    counts = np.diff(pred_off)
    local = np.arange(total_p, dtype=np.int64) - np.repeat(pred_off[:-1], counts)
    order = xp.asarray(local)
    if scores is not None:
        s = xp.asarray(scores)
        if s.dtype.kind not in "iuf" or s.shape != (total_p,):
            raise ValueError(
                f"{func}: scores must be a numeric array of shape ({total_p},), got "
                f"{_validate.describe(s)}"
            )
        s = s.astype(np.float64)
        if bool(xp.isnan(s).any()):
            raise ValueError(f"{func}: scores must not be NaN")
        item = xp.asarray(np.repeat(np.arange(counts.shape[0], dtype=np.float64), counts))
        order = xp.lexsort(xp.stack([order.astype(np.float64), -s, item]))
        order = xp.ascontiguousarray(order - xp.asarray(np.repeat(pred_off[:-1], counts)))
    return greedy(flat, xp.asarray(iou_off), xp.asarray(gt_off), xp.asarray(pred_off), order,
                  flags, xp.ones(total_p, dtype=bool), _validate.match_cutoffs(thr, compute),
                  total_g, total_p)


def match(iou: Any, scores: Any, crowd: Any, gt_ignore: Any, gt_valid: Any, pred_valid: Any, *,
          spec: _validate.MatchSpec) -> MatchResult:
    xp = runtime().xp
    cube, s, flags, pvalid, gi, gv, pv = batch_inputs(
        xp, iou, scores, crowd, gt_ignore, gt_valid, pred_valid, spec
    )
    if s is not None and bool(xp.isnan(s).any()):
        raise ValueError("match: scores must not be NaN")
    count, g, p = cube.shape
    cutoffs = _validate.match_cutoffs(spec.thresholds, spec.compute)
    order = _order(xp, s, count, p)
    if spec.method == "optimal":
        from ..numba_cpu.matching import optimal_host  # SciPy, on the host

        outputs = optimal_host(_to_host(cube), _to_host(order).reshape(count, p),
                                    _to_host(flags), _to_host(pvalid), cutoffs)
        outputs = tuple(xp.asarray(o) for o in outputs)
    else:
        iou_off, gt_off, pred_off = (xp.asarray(o) for o in uniform_offsets(count, g, p))
        outputs = greedy(cube.reshape(-1), iou_off, gt_off, pred_off, order, flags.reshape(-1),
                         pvalid.reshape(-1), cutoffs, count * g, count * p)
    return result(xp, outputs, gi, gv, pv, spec)
