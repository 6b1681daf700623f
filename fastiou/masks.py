"""Dense instance masks: pairwise mask IoU and IoA, areas, bounding boxes, and bit-packing.

Every function takes NumPy arrays or nested lists (Numba engine), CuPy arrays (CUDA engine) or jax
arrays (JAX engine), or a :class:`PackedMasks` made by :func:`pack_masks`, and returns the
caller's kind of array.

How a mask is read
------------------
- bool masks are used as given;
- integer masks: non-zero is foreground (so 0/1 and 0/255 masks both work);
- floating masks (probabilities, logits) need ``threshold=``: foreground is
  ``value >= threshold``, compared exactly (NaN is background). Without it: ValueError, so that a
  probability mask never gives silent nonsense. ``threshold`` also applies to integer masks (e.g.
  ``threshold=128`` for 0..255 maps); it is refused for bool masks. Packed masks had theirs
  applied when they were packed: in a call with one packed and one dense set, ``threshold``
  applies to the dense one.

How it is computed
------------------
Each row of each mask is packed into machine words (bit ``q`` of word ``k`` is pixel
``x = 64 k + q``; 32-bit words on the JAX engine) and every intersection is a sum of
``popcount(a & b)``. The packed masks are 1/8 of a bool array. No engine ever builds an
``N × M × H × W`` intermediate or a floating copy of the masks: temporaries are bounded by
``memory_budget`` bytes (default 256 MiB) and the results do not depend on it. Not counted in
the budget: the packed masks themselves and, for pairwise values on the Numba engine, a copy of
the packed rows each mask occupies, grouped by word column (at most the packed size again), so
that a pair is counted only over the rows where both masks have pixels in that column.
A small call on NumPy arrays (C-ordered bool, uint8 or int8 ``(N, H, W)`` masks, work small
enough for one thread) packs both sets and counts every pair in one compiled call.
Pack once with :func:`pack_masks` and pass the :class:`PackedMasks` wherever masks are accepted,
e.g. many predictions against the same ground truth.

Degenerate cases (the same on every engine)
-------------------------------------------
- Union 0 (two empty masks) gives ``zero_division`` (default 0.0); for IoA, an empty mask in
  ``masks1`` gives ``zero_division``.
- Masks of different (H, W) are a ValueError.
- ``N == 0`` or ``M == 0`` gives an empty array of the right shape.
- Results are float32; intersections and areas are exact integer counts (int64; int32 on JAX with
  x64 disabled), divided in float64 on the Numba and CUDA engines.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import _dispatch, _validate

__all__ = ["PackedMasks", "mask_area", "mask_ioa", "mask_iou", "masks_to_boxes", "pack_masks"]

Array = Any


class PackedMasks:
    """Masks packed to bits by :func:`pack_masks`, accepted wherever masks are.

    Attributes
    ----------
    words : Array[..., H, K]
        The packed rows, in the engine's array type: uint64 words (uint32 on the JAX engine), bit
        ``q`` of word ``k`` holding pixel ``x = bits * k + q``; bits past ``width`` are 0.
    area : Array[...]
        Foreground pixels of each mask (int64; int32 on JAX with x64 disabled).
    height, width : int
        The mask size (H, W).
    engine : str
        'numba', 'cupy' or 'jax': the engine that packed them, the only one that can use them.
    """

    __slots__ = ("area", "engine", "height", "width", "words")

    def __init__(self, words: Array, area: Array, height: int, width: int, engine: str) -> None:
        self.words = words
        self.area = area
        self.height = int(height)
        self.width = int(width)
        self.engine = engine

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of the dense masks: ``(..., H, W)``."""
        return tuple(self.words.shape[:-2]) + (self.height, self.width)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __repr__(self) -> str:
        return f"PackedMasks(shape={self.shape}, engine={self.engine!r})"


def _foreground_rule(x: Array, spec: _validate.MaskSpec) -> tuple[str, Any]:
    """(rule, cut) for the engines: 'nonzero', 'atleast' (x >= cut, cut in x's dtype) or 'none'.

    ``value >= threshold`` is turned into a comparison in the mask's own dtype that gives exactly
    the same answer, so no engine ever converts the masks: for integers ``x >= ceil(threshold)``,
    for floats ``x >= the smallest value of that dtype that is >= threshold``.
    """
    if spec.rule != "threshold":
        return "nonzero", None
    dtype = np.dtype(x.dtype)
    t = spec.threshold
    assert t is not None
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        if math.isinf(t):
            return ("none", None) if t > 0 else ("atleast", dtype.type(info.min))
        cut = math.ceil(t)
        if cut > info.max:
            return "none", None
        return "atleast", dtype.type(max(cut, info.min))
    cut = np.asarray(t).astype(dtype)[()]
    if float(cut) < t:  # rounded down: step to the next representable value up
        bits = np.asarray(cut).view(f"u{dtype.itemsize}")
        if float(cut) == 0:
            bits = np.asarray(1, dtype=bits.dtype)
        elif float(cut) > 0:
            bits = bits + np.asarray(1, dtype=bits.dtype)
        else:
            bits = bits - np.asarray(1, dtype=bits.dtype)
        cut = bits.view(dtype)[()]
    return "atleast", cut


def _pack(
    func: str, name: str, masks: Any, engine: Any, *, threshold: Any, budget: int, min_ndim: int,
    other_is_dense: bool = False,
) -> PackedMasks:
    if isinstance(masks, PackedMasks):
        # A threshold applies to dense masks; it is an error only when nothing can use it.
        if threshold is not None and not other_is_dense:
            raise ValueError(
                f"{func}: threshold={threshold!r} was given but {name} is already packed "
                "(the threshold was applied by pack_masks); pass threshold=None"
            )
        if masks.engine != engine.name:
            raise ValueError(
                f"{func}: {name} was packed by the {masks.engine} engine but this call runs on "
                f"the {engine.name} engine; pack the masks again with that engine"
            )
        if masks.ndim < min_ndim:
            wanted = "(..., N, H, W)" if min_ndim >= 3 else "(..., H, W)"
            raise ValueError(
                f"{func}: {name} must have shape {wanted}, got packed masks of shape {masks.shape}"
            )
        return masks
    x = engine.asarray(masks)
    spec = _validate.mask_array(func, name, x, threshold=threshold, min_ndim=min_ndim)
    rule, cut = _foreground_rule(x, spec)
    words, area = engine.pack_masks(x, rule=rule, cut=cut, budget=budget)
    return PackedMasks(words, area, spec.height, spec.width, engine.name)


def _dispatch_arg(masks: Any) -> Any:
    return masks.words if isinstance(masks, PackedMasks) else masks


def pack_masks(
    masks: Array, *, threshold: float | None = None, memory_budget: int | None = None,
    backend: str | None = None,
) -> PackedMasks:
    """Pack masks ``Array[..., H, W]`` to bits once, to reuse them in several calls.

    Parameters
    ----------
    masks : Array[..., H, W]
        bool, integer (non-zero is foreground) or floating masks (with ``threshold``).
    threshold : float, optional
        Foreground is ``value >= threshold``; required for floating masks.
    memory_budget : int, optional
        Bytes of temporaries the packing may hold at once (default 256 MiB).
    backend : {'numba', 'cupy', 'jax'}, optional
        Force an engine; the packed words live on that engine.

    Returns
    -------
    PackedMasks
        With ``.words`` (``Array[..., H, K]``), ``.area`` (``Array[...]``) and ``.shape``.
    """
    func = "pack_masks"
    budget = _validate.memory_budget(func, memory_budget)
    engine = _dispatch.backend_for(func, {"masks": _dispatch_arg(masks)}, backend)
    return _pack(func, "masks", masks, engine, threshold=threshold, budget=budget, min_ndim=2)


def _packed_pair(
    func: str, masks1: Any, masks2: Any, *, threshold: Any, budget: int, backend: str | None,
    aligned: bool,
) -> tuple[Any, PackedMasks, PackedMasks, Any]:
    """The engine of two mask sets, both packed (each as given or from its dense masks), and
    their validated pair spec."""
    engine = _dispatch.backend_for(
        func, {"masks1": _dispatch_arg(masks1), "masks2": _dispatch_arg(masks2)}, backend
    )
    dense1, dense2 = not isinstance(masks1, PackedMasks), not isinstance(masks2, PackedMasks)
    p1 = _pack(func, "masks1", masks1, engine, threshold=threshold, budget=budget, min_ndim=3,
               other_is_dense=dense2)
    p2 = _pack(func, "masks2", masks2, engine, threshold=threshold, budget=budget, min_ndim=3,
               other_is_dense=dense1)
    return engine, p1, p2, _validate.mask_pair(func, p1.shape, p2.shape, aligned=aligned)


def _pair(
    func: str, op: str, masks1: Any, masks2: Any, *, aligned: bool, zero_division: float,
    threshold: Any, memory_budget: Any, backend: str | None,
) -> Array:
    if (type(masks1) is np.ndarray and type(masks2) is np.ndarray and backend is None
            and threshold is None and memory_budget is None and type(zero_division) is float
            and (aligned is False or aligned is True)):
        # The common NumPy call on a small image: one compiled call (the Numba engine decides
        # whether it can take it; None sends it through the general path below).
        result = _dispatch.load("numba").masks.mask_pair_fast(op, masks1, masks2, zero_division,
                                                                aligned)
        if result is not None:
            return result
    budget = _validate.memory_budget(func, memory_budget)
    zd = _validate.zero_division(func, zero_division)
    engine, p1, p2, spec = _packed_pair(func, masks1, masks2, threshold=threshold, budget=budget,
                                        backend=backend, aligned=aligned)
    return engine.mask_pair(
        p1.words, p1.area, p2.words, p2.area, op=op, spec=spec, zero_division=zd, budget=budget
    )


def mask_iou(
    masks1: Array | PackedMasks, masks2: Array | PackedMasks, *, aligned: bool = False,
    zero_division: float = 0.0, threshold: float | None = None, memory_budget: int | None = None,
    backend: str | None = None,
) -> Array:
    """Intersection over union of every mask in ``masks1`` with every mask in ``masks2``.

    Parameters
    ----------
    masks1 : Array[..., N, H, W] or PackedMasks
        bool, integer (non-zero is foreground) or floating masks (with ``threshold``).
    masks2 : Array[..., M, H, W] or PackedMasks
        Same (H, W); batch dimensions broadcast with ``masks1``.
    aligned : bool
        If True, compare ``masks1[..., i]`` with ``masks2[..., i]`` only (needs ``N == M``).
    zero_division : float
        Value for a pair whose union is 0 (two empty masks).
    threshold : float, optional
        Foreground is ``value >= threshold``; required for floating masks, refused for bool ones.
    memory_budget : int, optional
        Bytes of temporaries the call may hold at once (default 256 MiB); the result does not
        depend on it.
    backend : {'numba', 'cupy', 'jax'}, optional
        Force an engine; the inputs are moved to it and the result is that engine's array.

    Returns
    -------
    Array[..., N, M] (or Array[..., N] with ``aligned=True``)
        float32 values in [0, 1].
    """
    return _pair("mask_iou", "iou", masks1, masks2, aligned=aligned, zero_division=zero_division,
                 threshold=threshold, memory_budget=memory_budget, backend=backend)


def mask_ioa(
    masks1: Array | PackedMasks, masks2: Array | PackedMasks, *, aligned: bool = False,
    zero_division: float = 0.0, threshold: float | None = None, memory_budget: int | None = None,
    backend: str | None = None,
) -> Array:
    """Intersection over the area of each mask of ``masks1``: ``|A ∩ B| / |A|``.

    Shapes and options as :func:`mask_iou`; an empty mask in ``masks1`` gives ``zero_division``.
    """
    return _pair("mask_ioa", "ioa", masks1, masks2, aligned=aligned, zero_division=zero_division,
                 threshold=threshold, memory_budget=memory_budget, backend=backend)


def mask_area(
    masks: Array | PackedMasks, *, threshold: float | None = None,
    memory_budget: int | None = None, backend: str | None = None,
) -> Array:
    """Foreground pixels of each mask: ``Array[..., H, W]`` -> ``Array[...]``, int64 (int32 on JAX
    with x64 disabled)."""
    func = "mask_area"
    budget = _validate.memory_budget(func, memory_budget)
    engine = _dispatch.backend_for(func, {"masks": _dispatch_arg(masks)}, backend)
    return _pack(func, "masks", masks, engine, threshold=threshold, budget=budget, min_ndim=2).area


def masks_to_boxes(
    masks: Array | PackedMasks, *, threshold: float | None = None,
    memory_budget: int | None = None, backend: str | None = None,
) -> Array:
    """The tightest box around each mask: ``Array[..., H, W]`` -> ``Array[..., 4]``, float32 'xyxy'.

    Boxes are in pixel-edge coordinates: a mask whose foreground spans columns ``x0..x1`` and rows
    ``y0..y1`` (inclusive) gets ``(x0, y0, x1 + 1, y1 + 1)``, so that the box of a rectangle mask
    is the rectangle, :func:`fastiou.box_area` of it is its pixel count, and box IoU of two such
    boxes equals their mask IoU (torchvision's ``masks_to_boxes`` gives ``(x0, y0, x1, y1)``).
    An empty mask gives ``(0, 0, 0, 0)``.
    """
    func = "masks_to_boxes"
    budget = _validate.memory_budget(func, memory_budget)
    engine = _dispatch.backend_for(func, {"masks": _dispatch_arg(masks)}, backend)
    packed = _pack(func, "masks", masks, engine, threshold=threshold, budget=budget, min_ndim=2)
    return engine.mask_boxes(packed.words, height=packed.height, width=packed.width)
