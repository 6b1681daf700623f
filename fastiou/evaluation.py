"""Dataset evaluation: segmented IoU, per-object IoU after matching, the mean IoU and its grade.

A dataset is a sequence with one entry per image. Its IoU is computed in a fixed number of
compiled calls, whatever the number of images: the objects of every image are concatenated, and a
*segmented* kernel computes only the pairs within an image (the ``G_i x P_i`` blocks, one after
another); the greedy matching then runs over all the blocks in one call as well. Dense masks are
packed to bits one image at a time (each image arrives as its own array; the JAX engine writes
every image's words into one buffer), then the IoU of every image of one mask size is
one call (on the JAX engine, of every image whatever its size, with compiled programs that do
not depend on the sizes); COCO RLE is read in one call and its IoU is one call too.

Where the data lives
--------------------
- NumPy (Numba engine): everything on the host. Boxes with the greedy rule skip the blocks: one
  compiled pass computes each IoU where the matching needs it and matches (``greedy_boxes``).
- CuPy (CUDA engine): boxes, masks, packed masks and the IoU blocks stay on the device, and so does
  the matching; only the per-object results (matched prediction and its IoU, ``O(G)`` numbers)
  are copied to the host, where the report is assembled. Scores (one number a prediction) are
  read on the host, where they are checked, and sent back with the offsets.
- jax (JAX engine): masks are packed on jax's device (on CPU, where jax arrays are host memory,
  by NumPy without a copy), the areas of their rows of words read on the host, and the
  segmented IoU runs under ``jax.jit`` on the device, over the rows that both masks of a pair
  reach; per-image boxes (a few bytes an object) are concatenated on the host and sent back
  in one transfer. The IoU blocks (the ``G_i x P_i`` values of each image, never the masks) are
  copied to the host for the compiled greedy matching. :func:`evaluate_step` is the jit-able
  form for padded batches (e.g. inside a jitted validation step); its result stays on the device.
- COCO RLE (lists of dicts): host-side, on the runs: the RLEs of every image are read at once,
  then one segmented call computes every image's blocks (the engine's COCO ``rle_blocks``).

The report holds NumPy arrays (it is ``O(objects)``); it has ``table()`` and ``to_dict()``.
The library never prints.
"""

from __future__ import annotations

import math
import threading
import warnings
from typing import Any, NamedTuple, Sequence

import numpy as np

from . import _dispatch, _validate
from ._quality import EXCELLENT, GOOD
from .masks import PackedMasks, _pack

__all__ = [
    "EvaluationReport",
    "EvaluationStep",
    "Segments",
    "Evaluator",
    "evaluate",
    "evaluate_step",
    "group_segments",
    "segmented_box_iou",
    "segmented_mask_iou",
]

Array = Any
METHODS = ("greedy", "optimal")
GRADE_NAMES = ("excellent", "good", "poor", "missed")


def _ragged(engine: Any) -> Any:
    """The engine's segmented-IoU module (imported with the engine)."""
    import importlib

    return importlib.import_module(f"{engine.__name__}.ragged")


# --------------------------------------------------------------------------------------------
# Segmented IoU


class Segments(NamedTuple):
    """Rows of two sets grouped into segments by :func:`group_segments`.

    ``order1`` (K1,) and ``order2`` (K2,) put the rows in segment order (stable within a
    segment); ``offsets1``, ``offsets2`` (S + 1,) delimit the segments in that order; ``keys``
    (S, 2) int64 holds each segment's (image, category) (category 0 when none was given).
    """

    order1: np.ndarray
    order2: np.ndarray
    offsets1: np.ndarray
    offsets2: np.ndarray
    keys: np.ndarray


def group_segments(image1: Any, image2: Any, category1: Any = None,
                   category2: Any = None) -> Segments:
    """Group the rows of two sets by image (and category), for the segmented IoU functions.

    Parameters
    ----------
    image1, image2 : array-like of int, (K1,) and (K2,)
        Image id of each row of the first and second set (any integers, in any order).
    category1, category2 : array-like of int, optional
        Category of each row; when given (both), pairs are formed only within an image and a
        category.

    Returns
    -------
    Segments
        One segment per (image, category) present in either set, sorted by key:
        ``segmented_box_iou(b1[s.order1], b2[s.order2], s.offsets1, s.offsets2)``.
    """
    func = "group_segments"
    if (category1 is None) != (category2 is None):
        raise ValueError(f"{func}: give category1 and category2 both, or neither")

    def ints(name: str, x: Any, rows: int = 0) -> np.ndarray:
        a = np.zeros(rows, np.int64) if x is None else np.asarray(x)
        if a.ndim != 1 or (a.size and a.dtype.kind not in "iu"):
            raise ValueError(
                f"{func}: {name} must be a 1-D array of integers, got {_validate.describe(a)}"
            )
        return a.astype(np.int64)

    img1, img2 = ints("image1", image1), ints("image2", image2)
    cat1 = ints("category1", category1, img1.shape[0])
    cat2 = ints("category2", category2, img2.shape[0])
    if cat1.shape != img1.shape or cat2.shape != img2.shape:
        raise ValueError(
            f"{func}: category1 and category2 must have one entry per row, got shapes "
            f"{cat1.shape} and {cat2.shape} for {img1.shape[0]} and {img2.shape[0]} rows"
        )
    both = np.concatenate([np.stack([img1, cat1], 1), np.stack([img2, cat2], 1)])
    keys, inverse = np.unique(both, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    seg1, seg2 = inverse[:img1.shape[0]], inverse[img1.shape[0]:]
    count = keys.shape[0]
    return Segments(
        np.argsort(seg1, kind="stable"), np.argsort(seg2, kind="stable"),
        _offsets(np.bincount(seg1, minlength=count)), _offsets(np.bincount(seg2, minlength=count)),
        keys.reshape(count, 2),
    )


def segmented_box_iou(
    boxes1: Array, boxes2: Array, offsets1: Any, offsets2: Any, *, fmt: str = "xyxy",
    zero_division: float = 0.0, backend: str | None = None,
) -> tuple[Array, np.ndarray]:
    """Box IoU within segments only (images, or images and categories), all segments in one call.

    Segment ``s`` holds rows ``offsets1[s]:offsets1[s + 1]`` of ``boxes1`` and rows
    ``offsets2[s]:offsets2[s + 1]`` of ``boxes2``. To restrict pairs to one category per image,
    sort the rows by (image, category) and give one segment per (image, category):
    :func:`group_segments` does that.

    Parameters
    ----------
    boxes1 : Array[K1, 4] or Array[K1, 6]
        The first sets of every segment, concatenated, in ``fmt``.
    boxes2 : Array[K2, 4] or Array[K2, 6]
        The second sets, concatenated; same last dimension.
    offsets1, offsets2 : sequence of int, (S + 1,)
        Host integers (list or numpy.ndarray): start at 0, non-decreasing, end at K1 (K2).
    fmt : {'xyxy', 'xywh', 'cxcywh'}
        Box layout (3D aliases 'xyzxyz', 'xyzwhd', 'cxcyczwhd').
    zero_division : float
        Value for a pair whose union is 0.
    backend : {'numba', 'cupy', 'jax'}, optional
        Force an engine.

    Returns
    -------
    values : Array[T]
        The ``N_s x M_s`` blocks, row-major, one after another (``T = sum N_s M_s``); dtype as
        :func:`fastiou.box_iou` (float64 for float64 input, float32 otherwise).
    blocks : numpy.ndarray[S + 1] int64
        Block ``s`` is ``values[blocks[s]:blocks[s + 1]].reshape(N_s, M_s)``.
    """
    func = "segmented_box_iou"
    engine = _dispatch.backend_for(func, {"boxes1": boxes1, "boxes2": boxes2}, backend)
    b1, b2 = engine.asarray(boxes1), engine.asarray(boxes2)
    spec = _validate.box_pair(func, b1, b2, fmt=fmt, aligned=False, wide=engine.wide_float())
    if spec.batch:
        raise ValueError(
            f"{func}: boxes1 and boxes2 must be concatenated (K, {2 * spec.dims}) arrays, got "
            f"{_validate.describe(b1)} and {_validate.describe(b2)}"
        )
    zd = _validate.zero_division(func, zero_division)
    off1 = _validate.segment_offsets(func, "offsets1", offsets1, spec.n)
    off2 = _validate.segment_offsets(func, "offsets2", offsets2, spec.m)
    blocks = _validate.segment_blocks(func, off1, off2)
    return _box_values(engine, b1, b2, off1, off2, blocks, spec, zd), blocks


def _box_values(engine: Any, b1: Any, b2: Any, off1: np.ndarray, off2: np.ndarray,
                blocks: np.ndarray, spec: _validate.BoxPair, zd: float) -> Any:
    ragged = _ragged(engine)
    if engine.name == "jax":
        return ragged.box_iou(b1, b2, off1, off2, blocks, fmt=spec.fmt, compute=spec.compute,
                              out_dtype=spec.out, zero_division=zd)
    from . import _formats

    xp = engine.namespace()
    c1 = xp.ascontiguousarray(_formats.to_corners(xp, xp.asarray(b1, dtype=spec.compute), spec.fmt))
    c2 = xp.ascontiguousarray(_formats.to_corners(xp, xp.asarray(b2, dtype=spec.compute), spec.fmt))
    return ragged.box_iou(c1, c2, off1, off2, blocks, dims=spec.dims, out_dtype=spec.out,
                          zero_division=zd)


def segmented_mask_iou(
    masks1: Array | PackedMasks, masks2: Array | PackedMasks, offsets1: Any, offsets2: Any, *,
    zero_division: float = 0.0, threshold: float | None = None,
    memory_budget: int | None = None, backend: str | None = None,
) -> tuple[Array, np.ndarray]:
    """Mask IoU within segments only, all segments in one call; see :func:`segmented_box_iou`.

    Parameters
    ----------
    masks1 : Array[K1, H, W] or PackedMasks
        The first sets of every segment, concatenated (bool, integer, or floating with
        ``threshold``).
    masks2 : Array[K2, H, W] or PackedMasks
        The second sets, concatenated; same (H, W).
    offsets1, offsets2 : sequence of int, (S + 1,)
        Host integers: start at 0, non-decreasing, end at K1 (K2).

    Returns
    -------
    values : Array[T] float32
        The ``N_s x M_s`` blocks, row-major, one after another.
    blocks : numpy.ndarray[S + 1] int64
        Block ``s`` is ``values[blocks[s]:blocks[s + 1]].reshape(N_s, M_s)``.
    """
    func = "segmented_mask_iou"
    budget = _validate.memory_budget(func, memory_budget)
    zd = _validate.zero_division(func, zero_division)
    arg = {name: m.words if isinstance(m, PackedMasks) else m
           for name, m in (("masks1", masks1), ("masks2", masks2))}
    engine = _dispatch.backend_for(func, arg, backend)
    dense1, dense2 = not isinstance(masks1, PackedMasks), not isinstance(masks2, PackedMasks)
    p1 = _pack(func, "masks1", masks1, engine, threshold=threshold, budget=budget, min_ndim=3,
               other_is_dense=dense2)
    p2 = _pack(func, "masks2", masks2, engine, threshold=threshold, budget=budget, min_ndim=3,
               other_is_dense=dense1)
    for name, p in (("masks1", p1), ("masks2", p2)):
        if len(p.shape) != 3:
            raise ValueError(
                f"{func}: {name} must be concatenated (K, H, W) masks, got shape {p.shape}"
            )
    _validate.mask_pair(func, p1.shape, p2.shape, aligned=False)
    off1 = _validate.segment_offsets(func, "offsets1", offsets1, p1.shape[0])
    off2 = _validate.segment_offsets(func, "offsets2", offsets2, p2.shape[0])
    blocks = _validate.segment_blocks(func, off1, off2)
    w1 = p1.words.reshape(p1.words.shape[0], -1)
    w2 = p2.words.reshape(p2.words.shape[0], -1)
    return _mask_values(engine, w1, p1.area, w2, p2.area, off1, off2, blocks, zd, budget), blocks


def _mask_values(engine: Any, w1: Any, a1: Any, w2: Any, a2: Any, off1: np.ndarray,
                 off2: np.ndarray, blocks: np.ndarray, zd: float, budget: int) -> Any:
    """Blocks of packed masks ``w1 (K1, L)`` x ``w2 (K2, L)`` with their areas."""
    ragged = _ragged(engine)
    if engine.name == "jax":
        return ragged.mask_iou(w1, a1, w2, a2, off1, off2, blocks, zero_division=zd, budget=budget)
    xp = engine.namespace()
    return ragged.mask_iou(xp.ascontiguousarray(w1), xp.ascontiguousarray(a1),
                           xp.ascontiguousarray(w2), xp.ascontiguousarray(a2), off1, off2,
                           blocks, zero_division=zd)


# --------------------------------------------------------------------------------------------
# Reading a dataset: one entry per image


def _sequence(func: str, name: str, value: Any) -> list[Any]:
    if isinstance(value, (str, bytes, dict)) or not hasattr(value, "__len__"):
        raise TypeError(
            f"{func}: {name} must be a sequence with one entry per image (boxes (N, 4) or (N, 6), "
            f"masks (N, H, W) or a list of COCO RLE dicts), got {type(value).__name__}"
        )
    return list(value)


def _is_rle(x: Any) -> bool:
    return isinstance(x, dict) or (
        isinstance(x, (list, tuple)) and len(x) > 0 and isinstance(x[0], dict)
    )


def _shape(x: Any) -> tuple[int, ...]:
    return tuple(int(s) for s in x.shape)


class _Images(NamedTuple):
    """A validated batch of images: per-image arrays on their engine, counts and scores."""

    kind: str  # 'boxes', 'masks' or 'rle'
    engine: Any  # backend module (the Numba one for RLE)
    gt: list[Any]  # per image, on the engine (RLE: lists of dicts)
    pred: list[Any]
    num_gt: np.ndarray  # (n,) int64
    num_pred: np.ndarray
    scores: Any  # (sum num_pred,) float64 on the host, or None
    dtype: Any = None  # the common dtype of the arrays


def _read(func: str, gt: Any, pred: Any, scores: Any, backend: str | None) -> _Images:
    gt, pred = _sequence(func, "gt", gt), _sequence(func, "pred", pred)
    if len(gt) != len(pred):
        raise ValueError(
            f"{func}: gt and pred must have one entry per image, got {len(gt)} and {len(pred)} "
            "entries"
        )
    sides = (("gt", gt), ("pred", pred))
    types = set(map(type, gt)) | set(map(type, pred))
    if any(issubclass(t, (dict, list, tuple)) for t in types):
        rle = [(name, i) for name, items in sides for i, x in enumerate(items) if _is_rle(x)]
        if rle:
            return _read_rle(func, gt, pred, scores, rle[0], backend)
    # The engine from the first entry of each type (so that a mixed call names two entries).
    firsts: dict[type, tuple[str, Any]] = {}
    for name, items in sides:
        for i, x in enumerate(items):
            if len(firsts) == len(types):
                break
            if type(x) not in firsts:
                firsts[type(x)] = (f"{name}[{i}]", x)
    arrays = {k: v for k, v in firsts.values() if not isinstance(v, (list, tuple))}
    engine = _dispatch.backend_for(func, arrays, backend)
    as_is = engine.native(types) if engine.name == "jax" else (
        engine.name == "numba" and types == {np.ndarray})
    gt_a, pred_a = ([x if as_is else engine.asarray(x) for x in items] for _, items in sides)
    shapes = [[a.shape if as_is else tuple(a.shape) for a in side] for side in (gt_a, pred_a)]
    dtypes = [{a.dtype for a in side} for side in (gt_a, pred_a)]
    for (name, _), side, kinds in zip(sides, (gt_a, pred_a), dtypes):
        if {np.dtype(d).kind for d in kinds} - set("biuf"):
            i = next(i for i, a in enumerate(side) if np.dtype(a.dtype).kind not in "biuf")
            raise TypeError(
                f"{func}: {name}[{i}] must hold bool, integer or floating numbers, got "
                f"{_validate.describe(side[i])}"
            )
    ndims = {len(s) for s in set(shapes[0]) | set(shapes[1]) if s != (0,)}
    kind = "masks" if ndims == {3} else "boxes"
    if ndims - {2, 3} or len(ndims) > 1:
        wanted = 3 if kind == "masks" and 3 in ndims else 2
        name, i, a = next((n, i, a) for n, items in (("gt", gt_a), ("pred", pred_a))
                          for i, a in enumerate(items)
                          if a.ndim != wanted and tuple(a.shape) != (0,))
        raise ValueError(
            f"{func}: {name}[{i}] has {_validate.describe(a)}; every entry must be boxes (N, 4) "
            "or (N, 6), or every entry masks (N, H, W), or every entry a list of COCO RLE dicts "
            "(an image without objects: an empty array or list)"
        )
    num_gt = np.array([s[0] for s in shapes[0]], dtype=np.int64)
    num_pred = np.array([s[0] for s in shapes[1]], dtype=np.int64)
    if kind == "boxes":
        widths = {s[1] for s in set(shapes[0]) | set(shapes[1]) if len(s) == 2}
        if not widths <= {4, 6} or len(widths) > 1:
            first = next(iter(sorted(widths)))
            name, i, a = next((n, i, a) for n, items in (("gt", gt_a), ("pred", pred_a))
                              for i, a in enumerate(items)
                              if a.ndim == 2 and (a.shape[1] != first or first not in (4, 6)))
            raise ValueError(
                f"{func}: {name}[{i}] has {_validate.describe(a)}; every box array must be "
                f"(N, 4) or every one (N, 6)"
            )
    else:
        for i, (g, p) in enumerate(zip(gt_a, pred_a)):
            if g.ndim == 3 and p.ndim == 3 and g.shape[1:] != p.shape[1:]:
                raise ValueError(
                    f"{func}: image {i}: gt[{i}] and pred[{i}] must have masks of the same (H, W), "
                    f"got shapes {_shape(g)} and {_shape(p)}"
                )
    dtype = np.result_type(*(dtypes[0] | dtypes[1])) if gt_a or pred_a else np.float32
    return _Images(kind, engine, gt_a, pred_a, num_gt, num_pred,
                   _scores(func, scores, num_pred), np.dtype(dtype))


def _read_rle(func: str, gt: list[Any], pred: list[Any], scores: Any, first: tuple[str, int],
              backend: str | None) -> _Images:
    if backend not in (None, "numba"):
        raise ValueError(
            f"{func}: COCO RLE is evaluated on the host (Numba engine); got backend={backend!r}"
        )
    lists = []
    for name, items in (("gt", gt), ("pred", pred)):
        out = []
        for i, x in enumerate(items):
            x = [x] if isinstance(x, dict) else x
            if not isinstance(x, (list, tuple)) or not all(isinstance(r, dict) for r in x):
                raise TypeError(
                    f"{func}: {first[0]}[{first[1]}] is a COCO RLE list, so every entry must be "
                    f"one (an image without objects: []), but {name}[{i}] is "
                    f"{type(x).__name__}"
                )
            out.append(list(x))
        lists.append(out)
    num_gt = np.array([len(x) for x in lists[0]], dtype=np.int64)
    num_pred = np.array([len(x) for x in lists[1]], dtype=np.int64)
    return _Images("rle", _dispatch.load("numba"), lists[0], lists[1], num_gt, num_pred,
                   _scores(func, scores, num_pred))


def _to_host(x: Any) -> np.ndarray:
    """A NumPy view or copy of an array of any engine (CuPy arrays are fetched). The type's
    module tells CuPy apart: ``hasattr(x, "__cuda_array_interface__")`` costs a raised and
    caught error on every CPU jax array (12 us, as much as the copy)."""
    if type(x).__module__.startswith("cupy"):
        return x.get()
    return np.asarray(x)


def _scores(func: str, scores: Any, num_pred: np.ndarray) -> np.ndarray | None:
    """Scores of every prediction, concatenated on the host as float64 (they only order the
    predictions of each image)."""
    if scores is None:
        return None
    items = _sequence(func, "scores", scores)
    if len(items) != num_pred.shape[0]:
        raise ValueError(
            f"{func}: scores must have one entry per image ({num_pred.shape[0]}), got "
            f"{len(items)} entries"
        )
    host = items if all(type(s) is np.ndarray for s in items) else [_to_host(s) for s in items]
    sizes = np.array([a.shape[0] if a.ndim == 1 else -1 for a in host], dtype=np.int64)
    if host and (sizes != num_pred).any() or {a.dtype.kind for a in host if a.size} - set("biuf"):
        for i, a in enumerate(host):
            if a.shape != (num_pred[i],) and not (num_pred[i] == 0 and a.size == 0):
                raise ValueError(
                    f"{func}: scores[{i}] must have shape ({num_pred[i]},), one score per "
                    f"prediction of pred[{i}], got shape {a.shape}"
                )
            if a.size and a.dtype.kind not in "biuf":
                raise TypeError(f"{func}: scores[{i}] must be numbers, got dtype {a.dtype}")
    if host:  # one cast in the copy (every entry is 1-D unless an empty one is not)
        parts = host if (sizes >= 0).all() else [a.reshape(-1) for a in host]
        flat = np.concatenate(parts, dtype=np.float64)
    else:
        flat = np.zeros(0)
    bad = np.isnan(flat)
    if bad.any():
        k = int(np.argmax(bad))
        i = int(np.searchsorted(np.cumsum(num_pred), k, side="right"))
        raise ValueError(f"{func}: image {i}: scores[{i}] holds NaN; scores must be numbers")
    return flat


def _offsets(counts: np.ndarray) -> np.ndarray:
    out = np.zeros(counts.shape[0] + 1, dtype=np.int64)
    np.cumsum(counts, out=out[1:])
    return out


# --------------------------------------------------------------------------------------------
# One batch: IoU blocks of every image, then the matching of every image


class _Matches(NamedTuple):
    """Per-image counts and per-object results of a batch, on the host."""

    num_gt: np.ndarray  # (n,) int64
    num_pred: np.ndarray  # (n,) int64
    pred_index: np.ndarray  # (sum num_gt,) int64: the matched prediction within its image, or -1
    iou: np.ndarray  # (sum num_gt,) float64: IoU with that prediction, 0 when missed


def _concat(engine: Any, arrays: list[Any], tail: tuple[int, ...], dtype: Any) -> Any:
    """Concatenate per-image boxes (an image without objects may be a (0,) array).

    On the JAX engine the boxes (a few bytes per object) are concatenated on the host and put
    back on the device in one transfer: ``jnp.concatenate`` of thousands of arrays compiles one
    XLA operation with thousands of operands, which takes minutes. ``np.asarray`` of each array is
    the cheapest way out found (about 5 us an array on CPU; ``jax.device_get`` of the list, 25).
    """
    xp = engine.namespace()
    parts = [a for a in arrays if a.shape[0]]
    if engine.name == "jax":
        from jax import dtypes

        flat = (np.concatenate([np.asarray(a) for a in parts], axis=0) if parts
                else np.zeros((0,) + tail, dtype=dtype))
        flat = flat.astype(dtypes.canonicalize_dtype(flat.dtype), copy=False)
        return xp.asarray(flat)
    if not parts:
        return xp.zeros((0,) + tail, dtype=dtype)
    return xp.concatenate(parts, axis=0) if len(parts) > 1 else parts[0]


def _box_sets(func: str, data: _Images, fmt: str) -> tuple[Any, Any, _validate.BoxPair]:
    engine = data.engine
    width = next((a.shape[1] for a in data.gt + data.pred if a.ndim == 2), 4)
    g = _concat(engine, data.gt, (width,), data.dtype)
    p = _concat(engine, data.pred, (width,), data.dtype)
    return g, p, _validate.box_pair(func, g, p, fmt=fmt, aligned=False, wide=engine.wide_float())


def _box_matches(data: _Images, g: Any, p: Any, spec: _validate.BoxPair, off1: np.ndarray,
                 off2: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray] | None:
    """Greedy (pred_index, iou) of every object straight from the NumPy boxes ``g``, ``p``, on
    the Numba engine: IoU and matching in one compiled pass, without the ``G_i x P_i`` blocks.
    None where the blocks would be rounded to another dtype than the IoU is computed in (then
    the blocks are made and matched)."""
    if spec.out != spec.compute or spec.compute not in (np.float32, np.float64):
        return None
    from . import _formats
    from .backends.numba_cpu.matching import greedy_boxes

    c1, c2 = (np.ascontiguousarray(_formats.to_corners(np, np.asarray(b, dtype=spec.compute),
                                                       spec.fmt)) for b in (g, p))
    _, to_pred, _, matched = greedy_boxes(c1, c2, off1, off2, dims=spec.dims, scores=data.scores,
                                          thresholds=np.array([threshold]))
    return to_pred[0], matched[0].astype(np.float64)


def _pack_image(func: str, name: str, x: Any, engine: Any, budget: int) -> tuple[Any, Any]:
    """Packed words ``(N, L)`` and areas ``(N,)`` of one image's masks ``(N, H, W)``."""
    p = _pack(func, name, x, engine, threshold=None, budget=budget, min_ndim=3)
    return p.words.reshape(p.words.shape[0], -1), p.area


def _mask_blocks(func: str, data: _Images, blocks: np.ndarray) -> Any:
    """Pack each image's masks (each image is its own array) and compute the blocks of every
    image of one mask size in one call. The JAX engine packs every image, whatever its size, into
    rows of one buffer, and computes every block in one call
    (``ragged.image_mask_iou``): its compiled programs do not depend on the mask sizes."""
    engine = data.engine
    budget = _validate.DEFAULT_MEMORY_BUDGET
    xp = engine.namespace()
    groups: dict[tuple[int, int], list[int]] = {}
    for i, (g, p) in enumerate(zip(data.gt, data.pred)):
        for name, a in (("gt", g), ("pred", p)):
            if a.ndim == 3:
                _validate.mask_array(func, f"{name}[{i}]", a, threshold=None, min_ndim=3)
        if blocks[i + 1] > blocks[i]:
            groups.setdefault(_shape(g)[1:], []).append(i)
    if engine.name == "jax":  # every size at once: compiled programs shared by every size
        used = np.flatnonzero(blocks[1:] > blocks[:-1])
        return _ragged(engine).image_mask_iou([data.gt[i] for i in used],
                                              [data.pred[i] for i in used], budget=budget)
    values = []
    for images in groups.values():
        packed = [[_pack_image(func, f"{name}[{i}]", side[i], engine, budget)
                   for i in images] for name, side in (("gt", data.gt), ("pred", data.pred))]
        words = [xp.concatenate([w for w, _ in side]) for side in packed]
        areas = [xp.concatenate([a for _, a in side]) for side in packed]
        sub1 = _offsets(data.num_gt[images])
        sub2 = _offsets(data.num_pred[images])
        sub = _validate.segment_blocks(func, sub1, sub2)
        values.append((images, _mask_values(engine, words[0], areas[0], words[1], areas[1],
                                            sub1, sub2, sub, 0.0, budget)))
    if not values:
        return xp.zeros((0,), dtype=np.float32)
    if len(values) == 1:
        return values[0][1]
    # Several mask sizes: put each group's blocks at their places in the dataset's order.
    where = np.concatenate([np.arange(blocks[i], blocks[i + 1]) for images, _ in values
                            for i in images])
    flat = xp.concatenate([v for _, v in values])
    if engine.name == "jax":
        return xp.zeros((int(blocks[-1]),), np.float32).at[where].set(flat)
    out = xp.empty((int(blocks[-1]),), dtype=np.float32)
    out[xp.asarray(where)] = flat
    return out


def _rle_blocks(func: str, data: _Images, blocks: np.ndarray) -> np.ndarray:
    """The IoU blocks of COCO RLE images (ground truth in rows, as ``rle.iou(pred, gt).T``): the
    RLEs of every image are read (checked) in one call and the IoU of the images with pairs is one
    segmented call (the COCO engine's ``rle_blocks``, pycocotools' ``rleIou``, no crowd). An
    unreadable RLE, or a size that differs within an image with pairs, is explained by ``rle.iou``
    on the images in order, so the message names the first such image."""
    from . import rle
    from .coco import _Masks, _select

    images = len(data.gt)
    items = [r for i in range(images) for r in data.pred[i]]
    n_pred = len(items)
    items += [r for i in range(images) for r in data.gt[i]]
    used_flag = blocks[1:] > blocks[:-1]
    used = np.flatnonzero(used_flag)
    num_pred, num_gt = data.num_pred[used], data.num_gt[used]
    pred_idx = np.flatnonzero(np.repeat(used_flag, data.num_pred))
    gt_idx = n_pred + np.flatnonzero(np.repeat(used_flag, data.num_gt))
    try:
        runs = rle._parse("rle.iou", "rle", items) if items else None
    except (ValueError, TypeError):
        runs = False
    if runs is not None and runs is not False and used.shape[0]:
        # every size of an image with pairs as its first prediction's (each such image has one)
        first = runs.sizes[pred_idx[_offsets(num_pred)[:-1]]]
        want = np.concatenate([np.repeat(first, num_pred, axis=0),
                               np.repeat(first, num_gt, axis=0)])
        if (runs.sizes[np.concatenate([pred_idx, gt_idx])] != want).any():
            runs = False
    if runs is False:
        for i in range(images):
            try:
                rle.iou(data.pred[i], data.gt[i])
            except ValueError as exc:
                raise ValueError(f"{func}: image {i}: {exc}") from None
        raise AssertionError(f"{func}: an RLE was refused, but no image's rle.iou refuses it")
    if used.shape[0] == 0:
        return np.zeros(int(blocks[-1]), dtype=np.float64)
    engine = data.engine.rle
    heights = np.ascontiguousarray(runs.sizes[:, 0])
    starts, ends, bounds = engine.intervals(runs.counts, runs.offsets)
    masks = _Masks(starts, ends, bounds[:-1], bounds[1:], engine.areas(runs.counts, runs.offsets),
                   engine.bboxes(runs.counts, runs.offsets, heights))
    pred_off = _offsets(num_pred)
    return data.engine.coco.rle_blocks(
        _select(masks, pred_idx), _select(masks, gt_idx),
        np.zeros(gt_idx.shape[0], dtype=np.bool_),
        np.ascontiguousarray(heights[pred_idx[pred_off[:-1]]]), _offsets(num_gt), pred_off,
        np.ascontiguousarray(blocks[used]), int(blocks[-1]))


def _match(func: str, data: _Images, values: Any, off1: np.ndarray, off2: np.ndarray,
           blocks: np.ndarray, threshold: float, method: str) -> tuple[np.ndarray, np.ndarray]:
    """(pred_index, iou) of every ground-truth object, on the host."""
    if method == "optimal":
        from .matching import match

        host = _to_host(values)
        pred_index = np.full(int(off1[-1]), -1, dtype=np.int64)
        iou = np.zeros(int(off1[-1]), dtype=np.float64)
        for i in np.flatnonzero(blocks[1:] > blocks[:-1]):
            g, p = int(data.num_gt[i]), int(data.num_pred[i])
            s = None if data.scores is None else data.scores[off2[i]:off2[i + 1]]
            r = match(host[blocks[i]:blocks[i + 1]].reshape(g, p), scores=s, threshold=threshold,
                      method="optimal")
            pred_index[off1[i]:off1[i + 1]] = r.gt_to_pred
            iou[off1[i]:off1[i + 1]] = r.matched_iou
        return pred_index, iou
    if data.engine.name == "cupy":
        from .backends.cupy_cuda.matching import greedy_segmented

        xp = data.engine.namespace()
        scores = None if data.scores is None else xp.asarray(data.scores)
        _, to_pred, _, matched = greedy_segmented(values, blocks[:-1], off1, off2, scores=scores,
                                                  thresholds=(threshold,))
        return _to_host(to_pred[0]).astype(np.int64), _to_host(matched[0]).astype(np.float64)
    from .backends.numba_cpu.matching import greedy_segmented

    _, to_pred, _, matched = greedy_segmented(_to_host(values), blocks[:-1], off1, off2,
                                              scores=data.scores, thresholds=(threshold,))
    return to_pred[0].astype(np.int64), matched[0].astype(np.float64)


def _evaluate_batch(func: str, gt: Any, pred: Any, scores: Any, *, iou_threshold: float,
                    method: str, fmt: str, backend: str | None) -> _Matches:
    data = _read(func, gt, pred, scores, backend)
    off1, off2 = _offsets(data.num_gt), _offsets(data.num_pred)
    blocks = _validate.segment_blocks(func, off1, off2)
    if data.kind == "boxes":
        g, p, spec = _box_sets(func, data, fmt)
        fused = (_box_matches(data, g, p, spec, off1, off2, iou_threshold)
                 if method == "greedy" and data.engine.name == "numba" else None)
        if fused is not None:
            return _Matches(data.num_gt, data.num_pred, *fused)
        values = _box_values(data.engine, g, p, off1, off2, blocks, spec, 0.0)
    elif data.kind == "masks":
        values = _mask_blocks(func, data, blocks)
    else:
        values = _rle_blocks(func, data, blocks)
    pred_index, iou = _match(func, data, values, off1, off2, blocks, iou_threshold, method)
    return _Matches(data.num_gt, data.num_pred, pred_index, iou)


# --------------------------------------------------------------------------------------------
# The report


def _grade(value: float, grades: tuple[float, float]) -> str:
    if math.isnan(value):
        return "undefined"
    return "excellent" if value > grades[0] else "good" if value > grades[1] else "poor"


def _ratio(num: float, den: float) -> float:
    return num / den if den else math.nan


def _json(value: Any) -> Any:
    """Plain Python values for JSON: lists for arrays, None for NaN."""
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return _json(value.tolist())
    if isinstance(value, (list, tuple)):
        return [_json(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


class EvaluationReport:
    """The result of :func:`evaluate` or :meth:`Evaluator.compute`: NumPy arrays and numbers.

    Attributes
    ----------
    per_object : dict of ndarray[K]
        One entry per ground-truth object (K in all), in dataset order: ``image`` (int64),
        ``gt_index`` (within the image), ``pred_index`` (the matched prediction within the image,
        -1 if missed), ``iou`` (float64; 0 if missed) and ``grade`` ('excellent', 'good', 'poor'
        or 'missed').
    per_image : dict of ndarray[n]
        ``image``, ``num_gt``, ``num_pred``, ``num_matched`` and ``mean_iou`` (over the image's
        objects, missed ones counting 0; NaN for an image without ground truth).
    mean_iou : float
        Mean per-object IoU over every ground-truth object, missed ones counting 0; NaN (with a
        warning) when there are none.
    mean_iou_matched : float
        Mean IoU over the matched objects only (NaN when none matched).
    grade : str
        Of ``mean_iou``: 'excellent' (> grades[0]), 'good' (> grades[1]), 'poor', or 'undefined'
        for NaN.
    counts : dict of int
        Objects per grade: 'excellent', 'good', 'poor' (matched) and 'missed'.
    precision, recall, f1 : float
        At ``iou_threshold``: matched / predictions, matched / ground truth, and
        ``2 matched / (ground truth + predictions)``; NaN where the denominator is 0.
    num_images, num_gt, num_pred, num_matched : int
    iou_threshold, method, grades
        The settings used.
    """

    def __init__(self, matches: _Matches, *, iou_threshold: float, method: str,
                 grades: tuple[float, float], func: str) -> None:
        num_gt, num_pred, pred_index, iou = matches
        n = num_gt.shape[0]
        image = np.repeat(np.arange(n, dtype=np.int64), num_gt)
        starts = _offsets(num_gt)[:-1]
        matched = pred_index >= 0
        codes = np.where(iou > grades[0], 0, np.where(iou > grades[1], 1, 2))
        codes = np.where(matched, codes, 3)  # index into GRADE_NAMES
        grade = np.array(GRADE_NAMES, dtype="<U9")[codes]
        self.per_object = {
            "image": image,
            "gt_index": np.arange(image.shape[0], dtype=np.int64) - np.repeat(starts, num_gt),
            "pred_index": pred_index,
            "iou": iou,
            "grade": grade,
        }
        per_image_matched = np.bincount(image, weights=matched, minlength=n).astype(np.int64)
        with np.errstate(invalid="ignore", divide="ignore"):
            per_image_mean = np.bincount(image, weights=iou, minlength=n) / num_gt
        self.per_image = {
            "image": np.arange(n, dtype=np.int64),
            "num_gt": num_gt,
            "num_pred": num_pred,
            "num_matched": per_image_matched,
            "mean_iou": per_image_mean,
        }
        self.num_images = int(n)
        self.num_gt = int(num_gt.sum())
        self.num_pred = int(num_pred.sum())
        self.num_matched = int(matched.sum())
        if self.num_gt == 0:
            warnings.warn(
                f"{func}: the dataset holds no ground-truth objects; the mean IoU is NaN "
                "('undefined')", RuntimeWarning, stacklevel=3,
            )
        self.mean_iou = _ratio(float(np.sum(iou)), self.num_gt)
        self.mean_iou_matched = _ratio(float(np.sum(iou[matched])), self.num_matched)
        self.grade = _grade(self.mean_iou, grades)
        self.counts = dict(zip(GRADE_NAMES, np.bincount(codes, minlength=4).tolist()))
        self.precision = _ratio(self.num_matched, self.num_pred)
        self.recall = _ratio(self.num_matched, self.num_gt)
        self.f1 = _ratio(2 * self.num_matched, self.num_gt + self.num_pred)
        self.iou_threshold = iou_threshold
        self.method = method
        self.grades = grades

    def __repr__(self) -> str:
        return (f"EvaluationReport(mean_iou={self.mean_iou:.4f}, grade={self.grade!r}, "
                f"images={self.num_images}, objects={self.num_gt}, predictions={self.num_pred})")

    def to_dict(self) -> dict[str, Any]:
        """Every number and array as plain Python values (lists, ints, floats; NaN as None)."""
        return _json({
            "mean_iou": self.mean_iou,
            "mean_iou_matched": self.mean_iou_matched,
            "grade": self.grade,
            "counts": self.counts,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "num_images": self.num_images,
            "num_gt": self.num_gt,
            "num_pred": self.num_pred,
            "num_matched": self.num_matched,
            "iou_threshold": self.iou_threshold,
            "method": self.method,
            "grades": list(self.grades),
            "per_image": self.per_image,
            "per_object": self.per_object,
        })

    def table(self) -> str:
        """A readable summary, for people (the library itself never prints)."""

        def num(v: float) -> str:
            return "n/a" if math.isnan(v) else f"{v:.4f}"

        def share(k: int) -> str:
            return f"{k} ({100 * k / self.num_gt:.1f}%)" if self.num_gt else str(k)

        e, g = self.grades
        rows = [
            ("images", str(self.num_images)),
            ("ground-truth objects", str(self.num_gt)),
            ("predictions", str(self.num_pred)),
            (f"matched at IoU >= {self.iou_threshold:g} ({self.method})", share(self.num_matched)),
            ("mean IoU (missed objects count 0)", f"{num(self.mean_iou)}  {self.grade}"),
            ("mean IoU of matched objects", num(self.mean_iou_matched)),
            ("precision / recall / F1",
             f"{num(self.precision)} / {num(self.recall)} / {num(self.f1)}"),
            (f"excellent (IoU > {e:g})", share(self.counts["excellent"])),
            (f"good (IoU > {g:g})", share(self.counts["good"])),
            ("poor", share(self.counts["poor"])),
            ("missed", share(self.counts["missed"])),
        ]
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


# --------------------------------------------------------------------------------------------
# Settings, evaluate, Evaluator


def _settings(func: str, iou_threshold: Any, method: Any, fmt: Any,
              grades: Any) -> tuple[float, str, str, tuple[float, float]]:
    def real(v: Any) -> bool:
        return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(
            v, (bool, np.bool_)) and not math.isnan(v)

    if not real(iou_threshold) or not 0 <= iou_threshold <= 1:
        raise ValueError(f"{func}: iou_threshold must be a number in [0, 1], got {iou_threshold!r}")
    if method not in METHODS:
        raise ValueError(
            f"{func}: method must be one of {', '.join(map(repr, METHODS))}, got {method!r}"
        )
    if fmt not in _validate.BOX_FORMATS:
        _validate.box_format(func, fmt, 3)  # raises unless a 3D name
    try:
        excellent, good = grades
    except (TypeError, ValueError):
        raise ValueError(
            f"{func}: grades must be a pair (excellent, good), got {grades!r}"
        ) from None
    if not (real(excellent) and real(good) and good <= excellent):
        raise ValueError(
            f"{func}: grades must be two numbers (excellent, good) with good <= excellent, got "
            f"{grades!r}"
        )
    return float(iou_threshold), method, fmt, (float(excellent), float(good))


def evaluate(
    gt: Sequence[Any], pred: Sequence[Any], *, scores: Sequence[Any] | None = None,
    iou_threshold: float = 0.5, method: str = "greedy", fmt: str = "xyxy",
    grades: tuple[float, float] = (EXCELLENT, GOOD), backend: str | None = None,
) -> EvaluationReport:
    """Match predictions to ground truth in every image and report the IoU of every object.

    Parameters
    ----------
    gt, pred : sequence, one entry per image
        Every entry boxes ``Array[N, 4]`` (or ``[N, 6]``, 3D) in ``fmt``, or every entry dense
        masks ``Array[N, H, W]`` (bool or integer; (H, W) may differ between images but not
        within one), or every entry a list of COCO RLE dicts. An image without objects is an
        empty array (``(0, 4)``, ``(0, H, W)`` or ``(0,)``) or ``[]``. NumPy, CuPy or jax arrays
        (not mixed), which choose the engine.
    scores : sequence of ``Array[P_i]``, optional
        Confidence of each prediction: the greedy matching takes predictions by descending score
        (ties in input order). None: input order. NaN is a ValueError.
    iou_threshold : float
        Least IoU of a match (``IoU >= iou_threshold`` and ``IoU > 0``).
    method : {'greedy', 'optimal'}
        COCO's greedy matching, or the one-to-one assignment of maximum total IoU (per image, on
        the host, with SciPy).
    fmt : {'xyxy', 'xywh', 'cxcywh'}
        Box layout (3D aliases 'xyzxyz', 'xyzwhd', 'cxcyczwhd').
    grades : (float, float)
        An IoU above ``grades[0]`` is 'excellent', above ``grades[1]`` 'good', otherwise 'poor'.
    backend : {'numba', 'cupy', 'jax'}, optional
        Force an engine (arrays are moved to it).

    Returns
    -------
    EvaluationReport
        Per-object and per-image arrays, the mean IoU over all ground-truth objects (missed
        objects count 0) and its grade, counts per grade, precision / recall / F1; ``table()``
        and ``to_dict()``.

    Examples
    --------
    >>> r = evaluate([[[0, 0, 10, 10]]], [[[5, 5, 15, 15]]], iou_threshold=0.1)
    >>> round(r.mean_iou, 3), r.grade          # 25 / 175
    (0.143, 'poor')
    """
    evaluator = Evaluator(iou_threshold=iou_threshold, method=method, fmt=fmt, grades=grades,
                          backend=backend, _func="evaluate")
    evaluator._update("evaluate", gt, pred, scores)
    return evaluator._compute("evaluate")


class Evaluator:
    """Streaming :func:`evaluate`: ``update`` with batches of images, ``compute`` the report.

    The report is the same whatever the batching: each image is matched on its own, and the state
    keeps the per-object results (``O(objects)`` host memory) in image order, so the sums are
    taken over the same arrays. Images are numbered in the order of the updates, then of merges.
    ``update`` is thread-safe (the computation runs outside the lock); the evaluator is
    picklable, so partitions of a dataset can be evaluated in other processes (e.g. Dask tasks)
    and merged.

    Parameters
    ----------
    iou_threshold, method, fmt, grades, backend
        As in :func:`evaluate`.
    """

    def __init__(self, *, iou_threshold: float = 0.5, method: str = "greedy",
                 fmt: str = "xyxy", grades: tuple[float, float] = (EXCELLENT, GOOD),
                 backend: str | None = None, _func: str = "Evaluator") -> None:
        self.iou_threshold, self.method, self.fmt, self.grades = _settings(
            _func, iou_threshold, method, fmt, grades)
        if backend is not None:
            _dispatch.engine_name(_func, {}, backend)  # checks the name
        self.backend = backend
        self._batches: list[_Matches] = []
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        with self._lock:
            state = self.__dict__.copy()
            state["_batches"] = list(self._batches)
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        images = sum(b.num_gt.shape[0] for b in self._batches)
        return (f"Evaluator(iou_threshold={self.iou_threshold}, method={self.method!r}, "
                f"images={images})")

    def _update(self, func: str, gt: Any, pred: Any, scores: Any) -> None:
        batch = _evaluate_batch(func, gt, pred, scores, iou_threshold=self.iou_threshold,
                                method=self.method, fmt=self.fmt, backend=self.backend)
        with self._lock:
            self._batches.append(batch)

    def update(self, gt: Sequence[Any], pred: Sequence[Any],
               scores: Sequence[Any] | None = None) -> None:
        """Add a batch of images (sequences as in :func:`evaluate`)."""
        self._update("Evaluator.update", gt, pred, scores)

    def merge(self, other: Evaluator) -> Evaluator:
        """Append the images of ``other`` (same settings) after this evaluator's; returns self."""
        func = "Evaluator.merge"
        if not isinstance(other, Evaluator):
            raise TypeError(f"{func}: other must be an Evaluator, got {type(other).__name__}")
        mine = (self.iou_threshold, self.method, self.grades)
        theirs = (other.iou_threshold, other.method, other.grades)
        if mine != theirs:
            raise ValueError(
                f"{func}: can only merge evaluators with the same (iou_threshold, method, grades), "
                f"got {mine} and {theirs}"
            )
        with other._lock:
            batches = list(other._batches)
        with self._lock:
            self._batches.extend(batches)
        return self

    def reset(self) -> None:
        """Forget every image."""
        with self._lock:
            self._batches = []

    def _compute(self, func: str) -> EvaluationReport:
        with self._lock:
            batches = list(self._batches)
        empty_i, empty_f = np.zeros(0, np.int64), np.zeros(0, np.float64)
        merged = _Matches(*(
            np.concatenate([getattr(b, f) for b in batches] or [empty_f if f == "iou" else empty_i])
            for f in _Matches._fields
        ))
        return EvaluationReport(merged, iou_threshold=self.iou_threshold, method=self.method,
                                grades=self.grades, func=func)

    def compute(self) -> EvaluationReport:
        """The report over every image so far."""
        return self._compute("Evaluator.compute")


# --------------------------------------------------------------------------------------------
# A padded batch, for jitted steps


class EvaluationStep(NamedTuple):
    """Result of :func:`evaluate_step` (a NamedTuple, so a jax pytree), arrays of the caller's
    library: ``iou (B, G)`` of each object with its match (0 if missed or padding),
    ``pred_index (B, G)`` (-1 if missed or padding), and the sums of the batch ``sum_iou``,
    ``num_gt``, ``num_pred``, ``num_matched`` (0-d), which add up across batches and devices
    (``jax.lax.psum``): the mean IoU is ``sum_iou / num_gt``."""

    iou: Array
    pred_index: Array
    sum_iou: Array
    num_gt: Array
    num_pred: Array
    num_matched: Array


def evaluate_step(
    gt: Array, pred: Array, *, scores: Array | None = None, gt_valid: Array | None = None,
    pred_valid: Array | None = None, iou_threshold: float = 0.5, fmt: str = "xyxy",
) -> EvaluationStep:
    """Greedy matching and per-object IoU of a padded batch of images; works under ``jax.jit``.

    Parameters
    ----------
    gt : Array[B, G, 4], Array[B, G, 6] or Array[B, G, H, W]
        Boxes (3 dimensions) or masks (4 dimensions) of B images, padded to G objects.
    pred : Array[B, P, 4], Array[B, P, 6] or Array[B, P, H, W]
        Predictions, padded to P.
    scores : Array[B, P], optional
        Confidences (None: input order).
    gt_valid, pred_valid : Array[B, G] / Array[B, P] bool, optional
        Which rows are real (None: all).
    iou_threshold : float
        Least IoU of a match.
    fmt : str
        Box layout.

    Returns
    -------
    EvaluationStep
        Per-object ``iou (B, G)`` and ``pred_index (B, G)``, and the batch sums.
    """
    from .boxes import box_iou
    from .masks import mask_iou
    from .matching import match

    func = "evaluate_step"
    if getattr(gt, "ndim", None) not in (3, 4) or getattr(pred, "ndim", None) != gt.ndim:
        got = [_validate.describe(x) if hasattr(x, "shape") else type(x).__name__
               for x in (gt, pred)]
        raise ValueError(
            f"{func}: gt and pred must be padded boxes (B, G, 4|6) or masks (B, G, H, W) of the "
            f"same number of dimensions, got {got[0]} and {got[1]}"
        )
    iou = box_iou(gt, pred, fmt=fmt) if gt.ndim == 3 else mask_iou(gt, pred)
    m = match(iou, scores=scores, threshold=iou_threshold, gt_valid=gt_valid, pred_valid=pred_valid)
    found = m.gt_to_pred >= 0
    return EvaluationStep(
        iou=m.matched_iou,
        pred_index=m.gt_to_pred,
        sum_iou=m.matched_iou.sum(),
        num_gt=m.gt_valid.sum(),
        num_pred=m.pred_valid.sum(),
        num_matched=found.sum(),
    )
