"""Semantic segmentation: confusion matrix, per-class IoU and Dice, mean IoU, streaming, Dask.

Every function takes label maps as NumPy arrays or nested lists (Numba engine), CuPy arrays (CUDA
engine), jax arrays, tracers included (JAX engine), or Dask arrays of NumPy or CuPy chunks, and
returns the caller's kind of array.

Conventions (the same on every engine)
--------------------------------------
- The confusion matrix is ``(C, C)`` int64: rows are the target class, columns the predicted class.
  Label maps of any shape and any integer dtype are counted in their own dtype (no widened copy);
  counts are exact for any number of pixels.
- ``ignore_index`` is read in the target: those pixels are dropped before counting, whatever the
  prediction says there. If it is also a valid class id, that class leaves the means and its
  per-class score is NaN (its row is empty by construction).
- Any other label outside ``[0, C)``, in the target or in the prediction of a pixel that is not
  ignored, raises a ValueError naming the offending values; ``out_of_range="ignore"`` drops those
  pixels instead. Under jax tracing (jit, vmap, pmap) values cannot be inspected: with the default
  ``out_of_range="raise"``, :func:`confusion_matrix` then returns a matrix of -1 and the means are
  NaN when such a label occurs, and the streaming state records the count (see
  :func:`mean_iou_update`).
- Per-class IoU is ``TP / (TP + FP + FN)`` and Dice (F1) is ``2 TP / (2 TP + FP + FN)``; a class
  absent from both target and prediction is NaN and does not enter the mean. If no class is
  present at all, the mean is NaN with a RuntimeWarning (no warning can be given under tracing).
- Scores are float64 (float32 on JAX with x64 disabled).

Dask
----
A Dask array (NumPy or CuPy chunks) is counted chunk by chunk, each chunk by the engine of its
own array type, where it lives; the ``(C, C)`` matrices are summed in a tree
(``dask.array.sum``). The call computes the result with Dask's current scheduler and returns the
chunks' kind of array. To run the same code on a cluster, connect a client first; it becomes the
default scheduler::

    from dask.distributed import Client
    client = Client("tcp://scheduler-host:8786")     # or Client(LocalCluster(...))
    pred = dask.array.from_zarr("preds.zarr")         # (N, H, W) uint8, chunks of a few maps
    target = dask.array.from_zarr("labels.zarr")
    fastiou.mean_iou(pred, target, 19, ignore_index=255)

Every worker needs fastiou installed (with CuPy for CuPy chunks, e.g. workers started by
``dask-cuda``); the chunks are counted where they live and only ``(C, C)`` matrices travel. A
chunk's count is itself multi-threaded on the Numba engine: run one single-threaded worker per
machine (``dask worker --nthreads 1``), or one per core with ``NUMBA_NUM_THREADS=1`` in its
environment, so that the two levels of parallelism do not oversubscribe the cores.
"""

from __future__ import annotations

import threading
import warnings
from typing import Any

import numpy as np

from . import _dispatch, _validate

__all__ = [
    "MeanIoU",
    "confusion_matrix",
    "dice_from_confusion",
    "iou_from_confusion",
    "mean_iou",
    "mean_iou_compute",
    "mean_iou_confusion",
    "mean_iou_init",
    "mean_iou_merge",
    "mean_iou_update",
]

Array = Any


# --------------------------------------------------------------------------------------------
# Counting


def _offending(func: str, xp: Any, p: Array, t: Array, spec: _validate.LabelSpec) -> ValueError:
    p, t = xp.reshape(p, (-1,)), xp.reshape(t, (-1,))
    c = spec.num_classes
    kept = t != spec.ignore_index if spec.ignore_active else xp.ones(t.shape, dtype=bool)
    target_values = xp.unique(t[_validate.outside_labels(t, c) & kept]).tolist()
    pred_values = xp.unique(p[_validate.outside_labels(p, c) & kept]).tolist()
    return _validate.out_of_range_error(func, spec, pred_values, target_values)


def _counts(
    func: str, pred: Array, target: Array, num_classes: Any, ignore_index: Any, out_of_range: Any,
    backend: str | None,
) -> tuple[Any, Array, Array | None, _validate.LabelSpec]:
    """(engine, (C, C) int counts, invalid, spec).

    ``invalid`` is None, except under jax tracing with out_of_range='raise', where it is the
    (traced) number of out-of-range pixels, which were left out of the counts.
    """
    engine = _dispatch.backend_for(func, {"pred": pred, "target": target}, backend)
    p, t = engine.asarray(pred), engine.asarray(target)
    spec = _validate.label_spec(func, p, t, num_classes, ignore_index, out_of_range)
    cm, outside = engine.semantic.confusion_counts(p, t, spec)
    invalid = None
    if spec.raise_out_of_range:
        if engine.semantic.labels_known(p) and engine.semantic.labels_known(t):
            if int(outside):
                raise _offending(func, engine.namespace(), p, t, spec)
        else:
            invalid = outside
    return engine, cm, invalid, spec


def _block_matrix(pred: Array, target: Array, *, caller: str, num_classes: int,
                  ignore_index: int | None, out_of_range: str) -> Array:
    """One Dask chunk -> its (1, ..., 1, C, C) counts, on the chunk's own engine."""
    _, cm, _, _ = _counts(caller, pred, target, num_classes, ignore_index, out_of_range, None)
    return cm.reshape((1,) * pred.ndim + cm.shape)


def _dask_matrix(func: str, pred: Array, target: Array, num_classes: Any, ignore_index: Any,
                 out_of_range: Any, backend: str | None) -> Array:
    """Confusion matrix of Dask label maps: per chunk, tree-summed, computed."""
    import dask.array as da  # already imported: one of the inputs is a Dask array

    _validate.dask_backend(func, backend)
    pred, target = da.asarray(pred), da.asarray(target)
    spec = _validate.label_spec(func, pred, target, num_classes, ignore_index, out_of_range)
    if target.chunks != pred.chunks:
        target = target.rechunk(pred.chunks)
    nd, c = pred.ndim, spec.num_classes
    blocks = da.map_blocks(
        _block_matrix, pred, target, caller=func, num_classes=c, ignore_index=spec.ignore_index,
        out_of_range=out_of_range, new_axis=[nd, nd + 1],
        chunks=tuple((1,) * len(chunks) for chunks in pred.chunks) + ((c,), (c,)),
        meta=da.utils.meta_from_array(pred._meta, ndim=nd + 2, dtype=np.int64),
    )
    return blocks.sum(axis=tuple(range(nd)), dtype=np.int64).compute()


def _is_dask(*arrays: Array) -> bool:
    return any(_dispatch.is_dask(x) for x in arrays)


def confusion_matrix(
    pred: Array, target: Array, num_classes: int, *, ignore_index: int | None = None,
    out_of_range: str = "raise", backend: str | None = None,
) -> Array:
    """Confusion matrix of two label maps: ``cm[i, j]`` = pixels of target class i predicted j.

    Parameters
    ----------
    pred, target : Array[...] of integers
        Label maps of the same shape (any shape: one map ``(H, W)``, a batch ``(N, H, W)``, a
        volume), any integer dtype, the two dtypes may differ.
    num_classes : int
        C; valid labels are ``0 .. C - 1``.
    ignore_index : int, optional
        Target label of pixels to leave out (e.g. 255); may be a valid class id.
    out_of_range : {'raise', 'ignore'}
        Any other label outside ``[0, C)``: ValueError naming the values, or drop the pixel.
    backend : {'numba', 'cupy', 'jax'}, optional
        Force an engine (not needed: it follows the input type).

    Returns
    -------
    Array[C, C]
        int64 (int32 on JAX with x64 disabled, exact up to 2**31 - 1 pixels per cell: a call
        with 2**31 pixels or more warns with a RuntimeWarning), on the caller's engine and
        device; all zeros for empty or fully ignored input.
    """
    func = "confusion_matrix"
    if _is_dask(pred, target):
        return _dask_matrix(func, pred, target, num_classes, ignore_index, out_of_range, backend)
    engine, cm, invalid, _ = _counts(func, pred, target, num_classes, ignore_index, out_of_range,
                                     backend)
    if invalid is not None:
        cm = engine.namespace().where(invalid > 0, -1, cm)
    return cm


# --------------------------------------------------------------------------------------------
# Scores from a confusion matrix


def _ratio(xp: Any, num: Array, den: Array) -> Array:
    ok = den > 0
    return xp.where(ok, num / xp.where(ok, den, 1), xp.nan)


def _kept(xp: Any, c: int, ignore_index: int | None) -> Array:
    """Classes that enter the scores: all but ignore_index when it is a class id."""
    classes = xp.arange(c)
    if ignore_index is not None and 0 <= ignore_index < c:
        return classes != ignore_index
    return classes >= 0


def _per_class(xp: Any, cm: Array, ignore_index: int | None, dice: bool) -> Array:
    """Per-class IoU (or Dice) of a floating (C, C) matrix; NaN for absent and ignored classes."""
    tp = xp.diagonal(cm)
    errors = cm.sum(axis=0) + cm.sum(axis=1) - 2 * tp  # FP + FN
    num = 2 * tp if dice else tp
    score = _ratio(xp, num, num + errors)
    return xp.where(_kept(xp, cm.shape[0], ignore_index), score, xp.nan)


def _scores(func: str, cm: Array, ignore_index: Any, backend: str | None, dice: bool) -> Array:
    engine = _dispatch.backend_for(func, {"cm": cm}, backend)
    m = engine.asarray(cm)
    _validate.confusion(func, m)
    ignore = _validate.ignore_index(func, ignore_index)
    xp = engine.namespace()
    bad = (m < 0) if np.dtype(m.dtype).kind in "iu" else ~((m >= 0) & (m < np.inf))
    if not engine.semantic.labels_known(m):  # a jax tracer: NaN scores instead of an error
        scores = _per_class(xp, m.astype(engine.wide_float()), ignore, dice)
        return xp.where(xp.any(bad), xp.nan, scores)
    if bool(xp.any(bad)):
        i, j = (int(k) for k in np.unravel_index(int(xp.argmax(bad.reshape(-1))), m.shape))
        raise ValueError(
            f"{func}: cm must hold counts (finite and >= 0), got {_validate.describe(m)} with "
            f"cm[{i}, {j}] = {m[i, j].item()!r}"
        )
    return _per_class(xp, m.astype(engine.wide_float()), ignore, dice)


def iou_from_confusion(
    cm: Array, *, ignore_index: int | None = None, backend: str | None = None
) -> Array:
    """Per-class IoU ``TP / (TP + FP + FN)`` of a confusion matrix.

    Parameters
    ----------
    cm : Array[C, C]
        Counts, rows = target, columns = prediction (as :func:`confusion_matrix` returns).
    ignore_index : int, optional
        When it is a class id, that class gets NaN (it was ignored while counting).

    Returns
    -------
    Array[C]
        float64 (float32 on JAX without x64); NaN for a class absent from target and prediction.

    Raises
    ------
    ValueError
        If ``cm`` holds a negative, NaN or infinite count. Under jax tracing (jit, vmap), where
        values cannot be inspected, every score is NaN instead.
    """
    return _scores("iou_from_confusion", cm, ignore_index, backend, dice=False)


def dice_from_confusion(
    cm: Array, *, ignore_index: int | None = None, backend: str | None = None
) -> Array:
    """Per-class Dice coefficient (F1 score) ``2 TP / (2 TP + FP + FN)`` of a confusion matrix.

    Shapes, dtypes, NaN for absent classes and the refusal of negative, NaN or infinite counts
    as :func:`iou_from_confusion`.
    """
    return _scores("dice_from_confusion", cm, ignore_index, backend, dice=True)


def _average(func: str, engine: Any, cm: Array, ignore_index: int | None, average: str,
             invalid: Array | None) -> Array:
    """The mean IoU of a floating (C, C) matrix, as ``average`` says."""
    xp = engine.namespace()
    kept = _kept(xp, cm.shape[0], ignore_index)
    tp = xp.diagonal(cm)
    support = cm.sum(axis=1)  # TP + FN
    union = support + cm.sum(axis=0) - tp  # TP + FP + FN
    iou = _per_class(xp, cm, ignore_index, dice=False)
    if average == "none":
        result = iou
    elif average == "macro":
        present = kept & (union > 0)
        result = _ratio(xp, xp.where(present, iou, 0).sum(), present.sum())
    elif average == "micro":
        result = _ratio(xp, xp.where(kept, tp, 0).sum(), xp.where(kept, union, 0).sum())
    else:  # weighted by support, the target pixels of each class
        weight = xp.where(kept, support, 0)
        result = _ratio(xp, xp.where(weight > 0, weight * iou, 0).sum(), weight.sum())
    if invalid is not None:
        result = xp.where(invalid > 0, xp.nan, result)
    if average != "none" and engine.semantic.labels_known(result) and bool(xp.isnan(result)):
        warnings.warn(_validate.all_absent_message(func), RuntimeWarning, stacklevel=3)
    return result[()]


def mean_iou(
    pred: Array, target: Array, num_classes: int, *, ignore_index: int | None = None,
    average: str = "macro", out_of_range: str = "raise", backend: str | None = None,
) -> Array:
    """Mean IoU (mIoU) of two label maps, in one call.

    Parameters
    ----------
    pred, target, num_classes, ignore_index, out_of_range, backend
        As :func:`confusion_matrix`.
    average : {'macro', 'micro', 'weighted', 'none'}
        'macro': mean of the per-class IoU over the classes present (in target or prediction);
        'micro': total TP over total (TP + FP + FN) of all classes; 'weighted': per-class IoU
        weighted by the target pixels of each class; 'none': the per-class IoU, ``Array[C]``.

    Returns
    -------
    Array[] (or Array[C] for 'none')
        float64 (float32 on JAX without x64). NaN, with a RuntimeWarning, when no class is present
        (empty input, everything ignored).
    """
    func = "mean_iou"
    average = _validate.average(func, average)
    if _is_dask(pred, target):
        cm = _dask_matrix(func, pred, target, num_classes, ignore_index, out_of_range, backend)
        engine, invalid = _dispatch.backend_for(func, {"cm": cm}), None
    else:
        engine, cm, invalid, _ = _counts(func, pred, target, num_classes, ignore_index,
                                         out_of_range, backend)
    ignore = _validate.ignore_index(func, ignore_index)
    return _average(func, engine, cm.astype(engine.wide_float()), ignore, average, invalid)


# --------------------------------------------------------------------------------------------
# Streaming


class MeanIoU:
    """Mean IoU accumulated over a stream of label maps (a whole dataset, shards of it).

    ``update(pred, target)`` adds the confusion counts of a batch; ``compute()`` gives the mean
    IoU of everything seen; ``merge(other)`` adds another metric's counts (from another process
    or device); ``reset()`` starts over. The counts are integers, so ``update(A); update(B)``,
    one ``update`` over A and B together, and merging a metric that saw A with one that saw B
    give the same result bit for bit. The state lives on the engine and device of the first
    update (NumPy, CuPy, jax; Dask arrays: the engine of their chunks) and later updates must
    come from the same one. Instances pickle (with their state). Every method may be called from
    several threads at once: each update is added under a lock, so none is lost.

    Inside ``jax.jit`` use the functional form instead: :func:`mean_iou_init`,
    :func:`mean_iou_update`, :func:`mean_iou_compute`.

    Parameters
    ----------
    num_classes, ignore_index, out_of_range, backend
        As :func:`confusion_matrix`.
    """

    def __init__(self, num_classes: int, *, ignore_index: int | None = None,
                 out_of_range: str = "raise", backend: str | None = None) -> None:
        func = "MeanIoU"
        self.num_classes = _validate.num_classes(func, num_classes)
        self.ignore_index = _validate.ignore_index(func, ignore_index)
        _validate.out_of_range(func, out_of_range)
        self.out_of_range = out_of_range
        self.backend = None if backend is None else _dispatch.engine_name(func, {}, backend)
        self._engine: str | None = None
        self._state: Any = None
        self._lock = threading.Lock()  # guards _state and _engine; not pickled

    def __getstate__(self) -> dict[str, Any]:
        with self._lock:
            state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (f"MeanIoU(num_classes={self.num_classes}, ignore_index={self.ignore_index}, "
                f"engine={self._engine!r})")

    def _probe(self) -> Array | None:
        """An array of the state, for the engine check of dispatch."""
        if self._state is None:
            return None
        return getattr(self._state, "lo", self._state)

    def _spec(self) -> _validate.LabelSpec:
        return _validate.LabelSpec(self.num_classes, self.ignore_index, False,
                                   self.out_of_range == "raise")

    def _add(self, engine: Any, state: Any) -> None:
        with self._lock:  # read, add and store as one step: concurrent updates all count
            if self._state is not None:
                state = engine.semantic.state_merge(self._state, state)
            self._state = state
            self._engine = engine.name

    def update(self, pred: Array, target: Array) -> None:
        """Add the counts of one batch of label maps (any shape; see :func:`confusion_matrix`)."""
        func = "MeanIoU.update"
        args = (self.num_classes, self.ignore_index, self.out_of_range, self.backend)
        if _is_dask(pred, target):
            cm = _dask_matrix(func, pred, target, *args)
            engine = _dispatch.backend_for(func, {"counts": cm, "state": self._probe()})
            self._add(engine, engine.semantic.state_from_counts(cm, None, self._spec()))
            return
        _dispatch.engine_name(func, {"pred": pred, "target": target, "state": self._probe()},
                              self.backend)
        engine, cm, invalid, spec = _counts(func, pred, target, *args)
        self._add(engine, engine.semantic.state_from_counts(cm, invalid, spec))

    def merge(self, other: MeanIoU) -> MeanIoU:
        """Add the counts of ``other`` (same num_classes and ignore_index) to this metric."""
        func = "MeanIoU.merge"
        if not isinstance(other, MeanIoU):
            raise TypeError(f"{func}: other must be a MeanIoU, got {type(other).__name__}")
        _validate.same_metric(func, (self.num_classes, self.ignore_index),
                              (other.num_classes, other.ignore_index))
        if other._state is not None:
            engine = _dispatch.backend_for(func, {"state": self._probe(),
                                                  "other": other._probe()})
            self._add(engine, other._state)
        return self

    def reset(self) -> None:
        """Set every count to 0; the state stays on its engine and device."""
        with self._lock:
            if self._state is not None:
                engine = _dispatch.load(self._engine)
                zeros = engine.semantic.state_matrix(self._state) * 0
                self._state = engine.semantic.state_from_counts(zeros, None, self._spec())

    def _engine_module(self) -> Any:
        return _dispatch.load(self._engine or self.backend or "numba")

    def confusion_matrix(self) -> Array:
        """The ``(C, C)`` counts so far, on the state's engine (int64; see
        :func:`mean_iou_confusion` for JAX without x64)."""
        engine = self._engine_module()
        if self._state is None:
            return engine.namespace().zeros((self.num_classes,) * 2, dtype=np.int64)
        return engine.semantic.state_matrix(self._state)

    def compute(self, *, average: str = "macro") -> Array:
        """The mean IoU of everything seen so far; ``average`` as in :func:`mean_iou`."""
        func = "MeanIoU.compute"
        average = _validate.average(func, average)
        engine = self._engine_module()
        if self._state is None:
            cm = engine.namespace().zeros((self.num_classes,) * 2, dtype=engine.wide_float())
        else:
            cm = engine.semantic.state_float(self._state)
        return _average(func, engine, cm, self.ignore_index, average, None)


# --------------------------------------------------------------------------------------------
# JAX functional form


def _jax_state(func: str, state: Any) -> Any:
    engine = _dispatch.load("jax")
    if not isinstance(state, engine.semantic.SemanticState):
        raise TypeError(
            f"{func}: state must be the pytree made by mean_iou_init (a SemanticState), got "
            f"{type(state).__name__}"
        )
    return engine


def mean_iou_init(num_classes: int, *, ignore_index: int | None = None,
                  out_of_range: str = "raise") -> Any:
    """The empty state of the functional, jax-traceable mean IoU.

    The state is a pytree (``SemanticState``) of two uint32 ``(C*C + 1,)`` arrays holding exact
    counts without x64; the options are static. Use it in a jitted step::

        state = fastiou.mean_iou_init(19, ignore_index=255)

        @jax.jit
        def step(state, images, labels):
            pred = model(images).argmax(-1)
            return fastiou.mean_iou_update(state, pred, labels)

        for images, labels in data:
            state = step(state, images, labels)
        miou = fastiou.mean_iou_compute(state)

    Across devices (``pmap``, ``shard_map``) sum the per-device states with
    ``jax.lax.psum(state, axis_name)``: the result is exact and equals one state that saw every
    device's data.
    """
    func = "mean_iou_init"
    c = _validate.num_classes(func, num_classes)
    ignore = _validate.ignore_index(func, ignore_index)
    raise_ = _validate.out_of_range(func, out_of_range)
    engine = _dispatch.load("jax")
    spec = _validate.LabelSpec(c, ignore, False, raise_)
    zeros = engine.namespace().zeros((c, c), dtype=np.int32)
    return engine.semantic.state_from_counts(zeros, None, spec)


def mean_iou_update(state: Any, pred: Array, target: Array) -> Any:
    """A new state: ``state`` plus the counts of ``pred`` against ``target``. Pure; traceable.

    Labels are read as :func:`confusion_matrix` reads them. Under tracing, with
    ``out_of_range='raise'``, out-of-range pixels are left out and counted in the state, and
    :func:`mean_iou_compute` then gives NaN (eagerly, it raises).
    """
    func = "mean_iou_update"
    engine = _jax_state(func, state)
    _, cm, invalid, spec = _counts(func, pred, target, state.num_classes, state.ignore_index,
                                   state.out_of_range, "jax")
    return engine.semantic.state_merge(state, engine.semantic.state_from_counts(cm, invalid, spec))


def mean_iou_merge(a: Any, b: Any) -> Any:
    """The sum of two states (same options), as ``jax.lax.psum`` sums them across devices."""
    func = "mean_iou_merge"
    engine = _jax_state(func, a)
    _jax_state(func, b)
    _validate.same_metric(func, (a.num_classes, a.ignore_index), (b.num_classes, b.ignore_index))
    return engine.semantic.state_merge(a, b)


def mean_iou_compute(state: Any, *, average: str = "macro") -> Array:
    """The mean IoU of a state; ``average`` as in :func:`mean_iou`. Pure; traceable."""
    func = "mean_iou_compute"
    engine = _jax_state(func, state)
    average = _validate.average(func, average)
    invalid = engine.semantic.state_invalid(state) if state.out_of_range == "raise" else None
    if invalid is not None and engine.semantic.labels_known(invalid) and float(invalid) > 0:
        raise _validate.traced_out_of_range_error(func, int(invalid))
    cm = engine.semantic.state_float(state)
    return _average(func, engine, cm, state.ignore_index, average, invalid)


def mean_iou_confusion(state: Any) -> Array:
    """The ``(C, C)`` counts of a state: int64 with x64; without it int32, where counts above
    2**31 - 1 saturate (the IoU from :func:`mean_iou_compute` stays exact)."""
    return _jax_state("mean_iou_confusion", state).semantic.state_matrix(state)
