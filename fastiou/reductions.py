"""Fused IoU reductions: the summary of an IoU matrix without the ``N x M`` matrix.

For two box sets (2D or 3D, every ``fmt``) or two mask sets (dense or :class:`PackedMasks`):

- :func:`box_iou_max` / :func:`mask_iou_max`: per row and per column, the highest IoU and where it
  is;
- :func:`box_iou_topk` / :func:`mask_iou_topk`: per row, the ``k`` highest IoUs and their columns;
- :func:`box_iou_pairs` / :func:`mask_iou_pairs`: the sparse list of pairs with IoU >= threshold.

Memory is O(N + M + pairs) plus tiles of at most ``memory_budget`` bytes: the typical call, 250,000
anchors against 500 ground-truth boxes, never holds the 500 MB float32 matrix.

Values and order (the same on every engine)
-------------------------------------------
- Every IoU is exactly the value :func:`fastiou.box_iou` / :func:`fastiou.mask_iou` gives for that
  pair on the same engine, in its output dtype (float64 for float64 boxes, float32 otherwise), and
  the reductions compare those values: the results equal ``box_iou(a, b).max(axis)``,
  ``argmax(axis)``, a stable descending sort and ``nonzero(box_iou(a, b) >= threshold)``.
- Order: NaN ranks above every number (as in NumPy's ``max``/``argmax``: NaN propagates to the
  max and the argmax is the first NaN); equal values rank by lowest index.
- An empty side: with ``M == 0`` every row's max is 0.0 and its argmax -1 (no column); with
  ``N == 0`` the same for columns.
- Threshold: a pair is selected iff ``iou >= threshold`` with ``threshold`` rounded to the output
  dtype (so ``0.7`` selects what ``box_iou(a, b) >= 0.7`` selects on a float32 matrix). The IoU is
  computed by the same IEEE operations in the same order on the Numba and CUDA engines (no fused
  multiply-add), so both select the same pairs, bit for bit. NaN is never selected. JAX with x64
  disabled computes integer boxes in float32 (as ``box_iou`` does there), so a pair within one
  float32 ulp of the threshold may be selected differently from the float64 route.
- Indices are int64 (int32 on JAX with x64 disabled).

Batch dimensions are not taken: boxes are ``(N, 4)`` / ``(N, 6)``, masks ``(N, H, W)``; on the
JAX engine use ``jax.vmap`` for batches (``*_max`` and ``*_topk``, and ``*_pairs`` with
``max_pairs``).

JAX: ``*_max`` and ``*_topk`` are jit-able (static shapes). ``*_pairs`` needs a static size under
``jax.jit``: pass ``max_pairs=``; without it the call must be eager and returns the exact number
of pairs (the output size is rounded up to a power of two internally so that a new compilation is
needed only when the count crosses one).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from . import _dispatch, _validate
from .masks import PackedMasks, _packed_pair

__all__ = [
    "IoUMax",
    "IoUPairs",
    "IoUTopK",
    "box_iou_max",
    "box_iou_pairs",
    "box_iou_topk",
    "mask_iou_max",
    "mask_iou_pairs",
    "mask_iou_topk",
]

Array = Any

# Bytes of IoU tiles a reduction may hold at once by default (the Numba engine needs none).
DEFAULT_TILE_BUDGET = 16 * 2**20


class IoUMax(NamedTuple):
    """Per row and per column maxima of an ``N x M`` IoU matrix."""

    row_max: Array  # (N,) the highest IoU of each row (0.0 when M == 0)
    row_argmax: Array  # (N,) its column, lowest on ties, first NaN (-1 when M == 0)
    col_max: Array  # (M,)
    col_argmax: Array  # (M,)


class IoUTopK(NamedTuple):
    """The ``k`` highest IoUs of each row, in descending order (NaN first, ties by lowest index)."""

    values: Array  # (N, k)
    indices: Array  # (N, k) columns


class IoUPairs(NamedTuple):
    """Pairs with IoU >= threshold, in row-major order."""

    row: Array  # (P,) index into the first set
    col: Array  # (P,) index into the second set
    iou: Array  # (P,)
    count: Array  # () the number of such pairs (may exceed P when max_pairs truncates)


# --------------------------------------------------------------------------------------------
# Validation shared by the six functions.


def _budget(func: str, value: Any) -> int:
    return _validate.memory_budget(func, DEFAULT_TILE_BUDGET if value is None else value)


def _k(func: str, k: Any, m: int) -> int:
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"{func}: k must be an integer, got {k!r}")
    if not 0 <= k <= m:
        raise ValueError(
            f"{func}: k must be in [0, M] = [0, {m}] (M: the number of items in the second set), "
            f"got {k}"
        )
    return int(k)


def _threshold(func: str, value: Any, name: str = "threshold") -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(
        value, (int, float, np.integer, np.floating)
    ) or math.isnan(value):
        raise TypeError(f"{func}: {name} must be a real number (not NaN), got {value!r}")
    return float(value)


def _max_pairs(func: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{func}: max_pairs must be a non-negative integer or None, got {value!r}")
    if value < 0:
        raise ValueError(f"{func}: max_pairs must be a non-negative integer or None, got {value}")
    return int(value)


def _boxes(func: str, boxes1: Array, boxes2: Array, fmt: Any, zero_division: Any,
           backend: str | None) -> tuple[Any, Any, Any, _validate.BoxPair, float]:
    engine = _dispatch.backend_for(func, {"boxes1": boxes1, "boxes2": boxes2}, backend)
    b1, b2 = engine.asarray(boxes1), engine.asarray(boxes2)
    spec = _validate.box_pair(func, b1, b2, fmt=fmt, aligned=False, wide=engine.wide_float())
    for name, b in (("boxes1", b1), ("boxes2", b2)):
        if b.ndim != 2:
            raise ValueError(
                f"{func}: {name} must have shape (N, 4) or (N, 6) (no batch dimensions; use "
                f"jax.vmap or a loop for batches), got {_validate.describe(b)}"
            )
    zd = _validate.zero_division(func, zero_division)
    return engine, b1, b2, spec, zd


def _masks(func: str, masks1: Any, masks2: Any, zero_division: Any, threshold: Any,
           budget: int, backend: str | None) -> tuple[Any, PackedMasks, PackedMasks, float]:
    zd = _validate.zero_division(func, zero_division)
    engine, p1, p2, _ = _packed_pair(func, masks1, masks2, threshold=threshold, budget=budget,
                                     backend=backend, aligned=False)
    for name, p in (("masks1", p1), ("masks2", p2)):
        if p.ndim != 3:
            raise ValueError(
                f"{func}: {name} must have shape (N, H, W) (no batch dimensions; use jax.vmap "
                f"or a loop for batches), got masks of shape {p.shape}"
            )
    return engine, p1, p2, zd


def _family(engine: Any) -> Any:
    return engine.reductions


def _box_items(engine: Any, b1: Any, b2: Any, spec: _validate.BoxPair, zd: float) -> Any:
    return _family(engine).box_items(b1, b2, spec=spec, zero_division=zd)


def _mask_items(engine: Any, p1: PackedMasks, p2: PackedMasks, zd: float) -> Any:
    return _family(engine).mask_items(p1.words, p1.area, p2.words, p2.area, zero_division=zd)


# --------------------------------------------------------------------------------------------
# Boxes


def box_iou_max(
    boxes1: Array, boxes2: Array, *, fmt: str = "xyxy", zero_division: float = 0.0,
    memory_budget: int | None = None, backend: str | None = None,
) -> IoUMax:
    """Per row and per column, the highest IoU and its index, without the ``N x M`` matrix.

    Parameters
    ----------
    boxes1 : Array[N, 4] or Array[N, 6]
        First set (e.g. 250,000 anchors), in ``fmt``.
    boxes2 : Array[M, 4] or Array[M, 6]
        Second set (e.g. 500 ground-truth boxes), same last dimension.
    fmt : {'xyxy', 'xywh', 'cxcywh'}
        Box layout (3D aliases 'xyzxyz', 'xyzwhd', 'cxcyczwhd').
    zero_division : float
        IoU of a pair whose union is 0, as in :func:`fastiou.box_iou`.
    memory_budget : int, optional
        Bytes of IoU tiles the CUDA and JAX engines may hold at once (default 16 MiB); the result
        does not depend on it.
    backend : {'numba', 'cupy', 'jax'}, optional
        Force an engine.

    Returns
    -------
    IoUMax
        ``row_max`` Array[N], ``row_argmax`` Array[N], ``col_max`` Array[M], ``col_argmax``
        Array[M]: equal to ``iou.max(1)``, ``iou.argmax(1)``, ``iou.max(0)``, ``iou.argmax(0)`` of
        ``iou = box_iou(boxes1, boxes2)`` (ties: lowest index; NaN propagates and the argmax is the
        first NaN). With ``M == 0`` the rows get 0.0 and -1; with ``N == 0`` the columns do.
    """
    func = "box_iou_max"
    budget = _budget(func, memory_budget)
    engine, b1, b2, spec, zd = _boxes(func, boxes1, boxes2, fmt, zero_division, backend)
    return IoUMax(*_family(engine).iou_max(_box_items(engine, b1, b2, spec, zd), budget=budget))


def box_iou_topk(
    boxes1: Array, boxes2: Array, k: int, *, fmt: str = "xyxy", zero_division: float = 0.0,
    memory_budget: int | None = None, backend: str | None = None,
) -> IoUTopK:
    """The ``k`` highest IoUs of each box of ``boxes1`` with the boxes of ``boxes2``.

    Shapes and options as :func:`box_iou_max`; ``0 <= k <= M``. For the top ``k`` per column,
    swap the arguments (IoU is symmetric).

    Returns
    -------
    IoUTopK
        ``values`` Array[N, k] in descending order (NaN first, ties by lowest index) and
        ``indices`` Array[N, k], the columns: a stable descending sort of each row of
        ``box_iou(boxes1, boxes2)``, cut at ``k``.
    """
    func = "box_iou_topk"
    budget = _budget(func, memory_budget)
    engine, b1, b2, spec, zd = _boxes(func, boxes1, boxes2, fmt, zero_division, backend)
    kk = _k(func, k, spec.m)
    return IoUTopK(*_family(engine).iou_topk(_box_items(engine, b1, b2, spec, zd), kk,
                                             budget=budget))


def box_iou_pairs(
    boxes1: Array, boxes2: Array, threshold: float, *, fmt: str = "xyxy",
    zero_division: float = 0.0, max_pairs: int | None = None, memory_budget: int | None = None,
    backend: str | None = None,
) -> IoUPairs:
    """The pairs ``(i, j)`` with ``IoU(boxes1[i], boxes2[j]) >= threshold``, in row-major order.

    Shapes and options as :func:`box_iou_max`.

    Parameters
    ----------
    threshold : float
        Rounded to the output dtype, then compared with ``>=``; NaN IoUs are never selected.
    max_pairs : int, optional
        A fixed output size (needed under ``jax.jit``): the first ``max_pairs`` pairs in row-major
        order, the rest of the arrays filled with -1 (indices) and 0 (IoU); ``count`` still says
        how many pairs there are in all, so ``count > max_pairs`` tells that some were cut.

    Returns
    -------
    IoUPairs
        ``row`` Array[P], ``col`` Array[P], ``iou`` Array[P] and ``count`` Array[] (0-d), where
        P is the number of pairs (``max_pairs`` when given): equal to
        ``nonzero(box_iou(boxes1, boxes2) >= threshold)`` and the values there.
    """
    func = "box_iou_pairs"
    budget = _budget(func, memory_budget)
    engine, b1, b2, spec, zd = _boxes(func, boxes1, boxes2, fmt, zero_division, backend)
    t = _threshold(func, threshold)
    limit = _max_pairs(func, max_pairs)
    return IoUPairs(*_family(engine).iou_pairs(
        _box_items(engine, b1, b2, spec, zd), t, max_pairs=limit, budget=budget, func=func
    ))


# --------------------------------------------------------------------------------------------
# Masks


def mask_iou_max(
    masks1: Array | PackedMasks, masks2: Array | PackedMasks, *, zero_division: float = 0.0,
    threshold: float | None = None, memory_budget: int | None = None, backend: str | None = None,
) -> IoUMax:
    """Per row and per column, the highest mask IoU and its index, without the ``N x M`` matrix.

    Parameters
    ----------
    masks1 : Array[N, H, W] or PackedMasks
        bool, integer (non-zero is foreground) or floating masks (with ``threshold``).
    masks2 : Array[M, H, W] or PackedMasks
        Same (H, W).
    zero_division : float
        IoU of two empty masks, as in :func:`fastiou.mask_iou`.
    threshold : float, optional
        Foreground is ``value >= threshold`` (dense masks; required for floating ones).
    memory_budget : int, optional
        Bytes of temporaries (packing, IoU tiles) the call may hold at once (default 16 MiB);
        the result does not depend on it.
    backend : {'numba', 'cupy', 'jax'}, optional
        Force an engine.

    Returns
    -------
    IoUMax
        As :func:`box_iou_max`, float32 values: those of ``mask_iou(masks1, masks2)``.
    """
    func = "mask_iou_max"
    budget = _budget(func, memory_budget)
    engine, p1, p2, zd = _masks(func, masks1, masks2, zero_division, threshold, budget, backend)
    return IoUMax(*_family(engine).iou_max(_mask_items(engine, p1, p2, zd), budget=budget))


def mask_iou_topk(
    masks1: Array | PackedMasks, masks2: Array | PackedMasks, k: int, *,
    zero_division: float = 0.0, threshold: float | None = None, memory_budget: int | None = None,
    backend: str | None = None,
) -> IoUTopK:
    """The ``k`` highest mask IoUs of each mask of ``masks1``; see :func:`box_iou_topk` and
    :func:`mask_iou_max`. Returns ``values`` Array[N, k] float32 and ``indices`` Array[N, k]."""
    func = "mask_iou_topk"
    budget = _budget(func, memory_budget)
    engine, p1, p2, zd = _masks(func, masks1, masks2, zero_division, threshold, budget, backend)
    kk = _k(func, k, p2.shape[0])
    return IoUTopK(*_family(engine).iou_topk(_mask_items(engine, p1, p2, zd), kk, budget=budget))


def mask_iou_pairs(
    masks1: Array | PackedMasks, masks2: Array | PackedMasks, iou_threshold: float, *,
    zero_division: float = 0.0, threshold: float | None = None, max_pairs: int | None = None,
    memory_budget: int | None = None, backend: str | None = None,
) -> IoUPairs:
    """The mask pairs with IoU >= ``iou_threshold``, in row-major order; see
    :func:`box_iou_pairs` (``threshold`` here is the foreground threshold of dense masks, as in
    :func:`fastiou.mask_iou`). The comparison is made on the float32 IoU of exact integer counts."""
    func = "mask_iou_pairs"
    budget = _budget(func, memory_budget)
    t = _threshold(func, iou_threshold, "iou_threshold")
    limit = _max_pairs(func, max_pairs)
    engine, p1, p2, zd = _masks(func, masks1, masks2, zero_division, threshold, budget, backend)
    return IoUPairs(*_family(engine).iou_pairs(
        _mask_items(engine, p1, p2, zd), t, max_pairs=limit, budget=budget, func=func
    ))

