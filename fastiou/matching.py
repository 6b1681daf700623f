"""Matching predictions to ground truth on an IoU matrix: COCO's greedy rule and the optimal one.

Every engine returns the same matches: NumPy arrays (Numba engine), CuPy arrays (CUDA engine) or
jax arrays (JAX engine, under ``jit`` and ``vmap`` too).

The greedy rule (``method="greedy"``) is pycocotools' ``COCOeval.evaluateImg``
--------------------------------------------------------------------------------
- Predictions are taken by descending score; ties keep their input order (a stable sort, as
  ``np.argsort(-scores, kind="mergesort")``); without scores, in input order.
- Each takes, among the valid ground-truth objects that are neither matched yet nor ignored (crowd
  or ``gt_ignore``), the one of highest IoU with ``IoU >= min(t, 1 - 1e-10)`` (pycocotools' cap,
  so that ``t = 1`` still matches an IoU of 1). Among equal IoUs the one of **highest index** wins:
  pycocotools replaces its best match whenever ``IoU >= best``, so the last of equals stays.
- A prediction that finds none searches the ignored objects the same way: a crowd region absorbs
  any number of predictions, a ``gt_ignore`` object (e.g. out of the area range) is matched at
  most once. Such a prediction is ``pred_ignored`` (neither a true nor a false positive).
- A pair matches only if IoU >= threshold and IoU > 0; NaN never matches. (pycocotools differs
  only there: it matches an IoU of 0 at ``t = 0`` and lets a NaN IoU match.)
- Thresholds compare exactly: a float32 IoU is selected as its float64 value compared with the
  float64 threshold would be, on every engine.

For crowd rows, pass the IoU pycocotools uses for crowd regions: intersection over the area of the
prediction (``fastiou.rle.iou(dt, gt, iscrowd).T``, or ``box_ioa(pred, crowd_boxes).T``).

The optimal rule (``method="optimal"``)
---------------------------------------
The one-to-one assignment of the non-ignored ground truth that maximizes the total IoU over the
pairs that may match (``scipy.optimize.linear_sum_assignment`` on the host); the predictions left
over then meet the ignored objects by the greedy rule. Among assignments of equal total, SciPy's
choice is returned. It runs on the host (``pip install "fastiou[optimal]"`` for SciPy): CuPy and
jax inputs are copied there and the result comes back in the caller's library; under ``jax.jit``
it raises TypeError.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from . import _dispatch, _validate

__all__ = ["MatchResult", "match"]

Array = Any


def _host(x: Array) -> np.ndarray:
    """A NumPy copy of ``x`` (CuPy arrays are fetched from the device)."""
    if _dispatch._engine_of_type(type(x)) == "cupy":
        return x.get()
    return np.asarray(x)


class MatchResult(NamedTuple):
    """Matches of one call of :func:`match`, as fixed-size arrays of the caller's library.

    A NamedTuple, so a jax pytree: it can be returned from ``jax.jit`` and ``vmap``. Shapes below
    are for one threshold; with a sequence of T thresholds every field has a leading axis T.

    Attributes
    ----------
    pred_to_gt : Array[..., P] int
        Index of the matched ground-truth object, or -1 (int64; int32 under JAX without x64).
    gt_to_pred : Array[..., G] int
        Index of the matching prediction, or -1. A crowd region holds the last prediction it
        absorbed, in score order (pycocotools' gtMatches).
    pred_ignored : Array[..., P] bool
        The prediction matched a crowd region or a ``gt_ignore`` object.
    matched_iou : Array[..., G] float
        IoU of each object with its match; 0 for a missed or invalid one (float64 for float64
        IoUs, float32 otherwise).
    gt_ignored : Array[..., G] bool
        The object is a crowd region or ``gt_ignore`` (and valid): it is neither a hit nor a miss.
    gt_valid : Array[..., G] bool
    pred_valid : Array[..., P] bool
        The validity masks, broadcast to the result's shape (all True where none was given).
    """

    pred_to_gt: Array
    gt_to_pred: Array
    pred_ignored: Array
    matched_iou: Array
    gt_ignored: Array
    gt_valid: Array
    pred_valid: Array

    def select(self, index: Any) -> MatchResult:
        """The result ``field[index]`` for every field: e.g. ``select(0)`` for the first
        threshold (or batch item), ``select((t, b))``."""
        return MatchResult(*(field[index] for field in self))

    def _views(self) -> tuple[np.ndarray, ...]:
        if np.ndim(self.pred_to_gt) != 1:
            raise ValueError(
                "MatchResult: the views gt_index, pred_index, iou, unmatched_gt, unmatched_pred "
                "and ignored_pred need a result of one (G, P) matrix and one threshold, this one "
                f"has leading axes {tuple(np.shape(self.pred_to_gt))[:-1]}; use select() first"
            )
        return tuple(_host(field) for field in self)

    @property
    def gt_index(self) -> np.ndarray:
        """(K,) int64: ground-truth side of the matched pairs (ignored objects excluded), sorted."""
        _, g2p, _, _, gi, gv, _ = self._views()
        return np.flatnonzero(gv & (g2p >= 0) & ~gi)

    @property
    def pred_index(self) -> np.ndarray:
        """(K,) int64: the prediction matched to each object of :attr:`gt_index`."""
        return _host(self.gt_to_pred)[self.gt_index].astype(np.int64)

    @property
    def iou(self) -> np.ndarray:
        """(K,) float: the IoU of each matched pair of :attr:`gt_index`."""
        return _host(self.matched_iou)[self.gt_index]

    @property
    def unmatched_gt(self) -> np.ndarray:
        """(K,) int64: valid, non-ignored objects without a match (the false negatives)."""
        _, g2p, _, _, gi, gv, _ = self._views()
        return np.flatnonzero(gv & (g2p < 0) & ~gi)

    @property
    def unmatched_pred(self) -> np.ndarray:
        """(K,) int64: valid predictions without a match (the false positives)."""
        p2g, _, _, _, _, _, pv = self._views()
        return np.flatnonzero(pv & (p2g < 0))

    @property
    def ignored_pred(self) -> np.ndarray:
        """(K,) int64: predictions matched to a crowd region or an ignored object."""
        ign = self._views()[2]
        return np.flatnonzero(ign)


def match(
    iou: Array, *, scores: Array | None = None, threshold: float | Any = 0.5,
    method: str = "greedy", crowd: Array | None = None, gt_ignore: Array | None = None,
    gt_valid: Array | None = None, pred_valid: Array | None = None, backend: str | None = None,
) -> MatchResult:
    """Match predictions to ground-truth objects on their IoU matrix.

    Parameters
    ----------
    iou : Array[..., G, P]
        IoU of every ground-truth object (rows) with every prediction (columns), e.g.
        ``box_iou(gt, pred)``, ``mask_iou(gt, pred)``, ``rle.iou(pred, gt, iscrowd).T``. Floating;
        float64 is compared in float64, any other float in float32.
    scores : Array[..., P], optional
        Confidence of each prediction; the greedy rule takes them by descending score, ties in
        input order. None: input order. NaN is a ValueError (under ``jax.jit`` it cannot be
        checked: NaN scores sort last there).
    threshold : float or sequence of float
        Least IoU of a match, in [0, 1]. A 1-D sequence of T thresholds gives every field of the
        result a leading axis T (one matching per threshold, as COCO's ten).
    method : {'greedy', 'optimal'}
        pycocotools' greedy rule, or the assignment of maximum total IoU (see the module notes).
    crowd : Array[..., G] bool, optional
        Crowd regions: they absorb any number of predictions, which are then ignored.
    gt_ignore : Array[..., G] bool, optional
        Objects to ignore (pycocotools' gtIg for non-crowd objects, e.g. out of the area range):
        searched only after the others, matched at most once, their prediction ignored.
    gt_valid, pred_valid : Array[..., G] / Array[..., P] bool, optional
        Which rows / columns are real, for inputs padded to a fixed shape (``jax.jit``). An invalid
        object or prediction takes no part: its entries are -1 / False / 0.
    backend : {'numba', 'cupy', 'jax'}, optional
        Force an engine; the inputs are moved to it and the result is that engine's array.

    Returns
    -------
    MatchResult
        Fixed-size arrays ``pred_to_gt (..., P)``, ``gt_to_pred (..., G)``, ``pred_ignored
        (..., P)``, ``matched_iou (..., G)``, ``gt_ignored (..., G)``, ``gt_valid``,
        ``pred_valid`` (leading axis T for a sequence of thresholds), and host views of the pairs: ``gt_index``, ``pred_index``,
        ``iou``, ``unmatched_gt``, ``unmatched_pred``, ``ignored_pred``. ``G == 0`` or ``P == 0``
        gives empty matches (every object missed, every prediction unmatched).
    """
    func = "match"
    arrays = {"iou": iou, "scores": scores, "crowd": crowd, "gt_ignore": gt_ignore,
              "gt_valid": gt_valid, "pred_valid": pred_valid}
    engine = _dispatch.backend_for(func, arrays, backend)
    a = {name: None if x is None else engine.asarray(x) for name, x in arrays.items()}
    spec = _validate.match_spec(
        func, a["iou"], scores=a["scores"], threshold=threshold, method=method,
        gt_flags={"crowd": a["crowd"], "gt_ignore": a["gt_ignore"], "gt_valid": a["gt_valid"]},
        pred_flags={"pred_valid": a["pred_valid"]}, wide=engine.wide_float(),
    )
    return engine.match(
        a["iou"], a["scores"], a["crowd"], a["gt_ignore"], a["gt_valid"], a["pred_valid"],
        spec=spec,
    )
