"""Box IoU and its relatives: IoU, GIoU, DIoU, CIoU, IoA, areas, format conversion, losses.

Names and argument order follow ``torchvision.ops`` so that switching is a change of import.
Every function takes NumPy arrays or nested lists (Numba engine), CuPy arrays (CUDA engine) or
jax arrays, tracers included (JAX engine), and returns the caller's kind of array.

Shapes and formats
------------------
Boxes are ``Array[..., N, 4]`` in ``fmt`` 'xyxy' (default), 'xywh' or 'cxcywh', or 3D
axis-aligned ``Array[..., N, 6]`` ('xyxy' read per axis, alias 'xyzxyz'; also 'xyzwhd',
'cxcyczwhd'). Pairwise results are ``Array[..., N, M]``, the leading batch dimensions broadcast;
``aligned=True`` compares ``boxes1[..., i]`` with ``boxes2[..., i]`` and returns ``Array[..., N]``.

Degenerate cases (the same on every engine)
-------------------------------------------
- An inverted box (x2 < x1) has zero width, never a negative area.
- Union 0 (two zero-area boxes) gives ``zero_division`` (default 0.0) for IoU, and GIoU, DIoU and
  CIoU start from that value; they stay finite for every finite input.
- A NaN coordinate gives NaN for every pair it is part of.
- float64 input gives float64; any other input (float16, bfloat16, float32, integers) gives
  float32. Integer coordinates are computed in float64 first: no overflow, and exact widths for
  any coordinate up to 2**53 in magnitude; int64/uint64 values beyond that are a ValueError
  (float64 cannot hold them). JAX with x64 disabled computes in float32 (integers exact up to
  2**24) and does not check the values of tracers.
- Any finite coordinates give the right value, even where areas, unions or squared distances
  would overflow or become subnormal: a pair with a box whose coordinates pass ``big`` or that
  has a non-zero extent below ``1 / big`` (float32: 2**61 in 2D, 2**41 in 3D; float64: 2**509,
  2**339) is computed from extents divided by the enclosing box, with the same formulas on
  every engine. An infinite coordinate gives NaN, like a NaN coordinate.
- ``N == 0`` or ``M == 0`` gives an empty array of the output dtype and shape.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from . import _dispatch, _formats, _validate

__all__ = [
    "box_area",
    "box_convert",
    "box_ioa",
    "box_iou",
    "complete_box_iou",
    "complete_box_iou_loss",
    "distance_box_iou",
    "distance_box_iou_loss",
    "generalized_box_iou",
    "generalized_box_iou_loss",
]

Array = Any


# Integers convert exactly to the compute dtype up to 2**(mantissa bits + 1): 2**53 in float64.
def _integer_range(func: str, engine: Any, arrays: dict[str, Array], compute: Any) -> None:
    """Refuse integer coordinates that the compute dtype cannot hold exactly (int64 and uint64
    past 2**53 in float64), instead of returning rounded, wrong results. Values of jax tracers
    cannot be read and are not checked."""
    if np.dtype(compute) != np.float64:
        return  # JAX without x64 computes in float32, as documented (integers exact to 2**24)
    limit = 2 ** (np.finfo(compute).nmant + 1)
    for name, x in arrays.items():
        dtype = np.dtype(x.dtype)
        if dtype.kind not in "iu" or 2 ** (8 * dtype.itemsize - (dtype.kind == "i")) <= limit:
            continue
        if x.size == 0 or (engine.name == "jax" and not engine.semantic.labels_known(x)):
            continue
        xp = engine.namespace()
        worst = max(int(xp.max(x)), -int(xp.min(x)))
        if worst > limit:
            raise ValueError(
                f"{func}: {name} holds integer coordinates up to magnitude {worst}, beyond "
                f"2**{np.finfo(compute).nmant + 1} where {np.dtype(compute)} (the compute dtype) "
                f"stops representing every integer, got {_validate.describe(x)}; shift the "
                "coordinates (IoU does not change under translation) or pass floats"
            )


@functools.cache
def _fast_pair() -> Any:
    return _dispatch.load("numba").boxes.box_pair_fast


def _pair(
    func: str, op: str, boxes1: Array, boxes2: Array, *, fmt: str, aligned: bool,
    zero_division: float, backend: str | None, out: Array | None, dims: tuple[int, ...] = (2, 3),
) -> Array:
    if (type(boxes1) is np.ndarray and type(boxes2) is np.ndarray and backend is None
            and type(fmt) is str and fmt == "xyxy" and type(zero_division) is float
            and (aligned is False or aligned is True)):
        # The common NumPy call: a few checks and one compiled call (the Numba engine decides
        # whether it can take it; None sends it through the general path below).
        result = _fast_pair()(op, boxes1, boxes2, zero_division, aligned, out, dims)
        if result is not None:
            return result
    engine = _dispatch.backend_for(func, {"boxes1": boxes1, "boxes2": boxes2, "out": out}, backend)
    b1, b2 = engine.asarray(boxes1), engine.asarray(boxes2)
    spec = _validate.box_pair(
        func, b1, b2, fmt=fmt, aligned=aligned, dims=dims, wide=engine.wide_float()
    )
    zd = _validate.zero_division(func, zero_division)
    _integer_range(func, engine, {"boxes1": b1, "boxes2": b2}, spec.compute)
    if out is not None:
        if engine.name == "jax":
            raise TypeError(f"{func}: out= is not supported for jax arrays, which are immutable")
        xp = engine.namespace()
        _validate.out_array(func, out, spec.out_shape, spec.out, xp.ndarray)
        if xp.may_share_memory(out, b1) or xp.may_share_memory(out, b2):
            # out overlaps an input: compute into a temporary, then copy (as NumPy's ufuncs do)
            out[...] = engine.box_pair(b1, b2, op=op, spec=spec, zero_division=zd)
            return out
    return engine.box_pair(b1, b2, op=op, spec=spec, zero_division=zd, out=out)


def box_iou(
    boxes1: Array, boxes2: Array, *, fmt: str = "xyxy", aligned: bool = False,
    zero_division: float = 0.0, backend: str | None = None, out: Array | None = None,
) -> Array:
    """Intersection over union of every box in ``boxes1`` with every box in ``boxes2``.

    Parameters
    ----------
    boxes1 : Array[..., N, 4] or Array[..., N, 6]
        First set of boxes, in ``fmt``.
    boxes2 : Array[..., M, 4] or Array[..., M, 6]
        Second set of boxes, same last dimension; batch dimensions broadcast with ``boxes1``.
    fmt : {'xyxy', 'xywh', 'cxcywh'}
        Box layout (3D aliases 'xyzxyz', 'xyzwhd', 'cxcyczwhd').
    aligned : bool
        If True, compare ``boxes1[..., i]`` with ``boxes2[..., i]`` only (needs ``N == M``).
    zero_division : float
        Value for a pair whose union is 0 (two zero-area boxes).
    backend : {'numba', 'cupy', 'jax'}, optional
        Force an engine; the inputs are moved to it and the result is that engine's array.
    out : Array, optional
        Preallocated C-contiguous, writeable result to fill (NumPy and CuPy only), of the
        result's shape and dtype. It may overlap ``boxes1`` or ``boxes2``: the result is then
        computed into a temporary first.

    Returns
    -------
    Array[..., N, M] (or Array[..., N] with ``aligned=True``)
        float64 for float64 input, float32 otherwise; values in [0, 1], NaN where a coordinate is
        NaN.
    """
    return _pair("box_iou", "iou", boxes1, boxes2, fmt=fmt, aligned=aligned,
                 zero_division=zero_division, backend=backend, out=out)


def box_ioa(
    boxes1: Array, boxes2: Array, *, fmt: str = "xyxy", aligned: bool = False,
    zero_division: float = 0.0, backend: str | None = None, out: Array | None = None,
) -> Array:
    """Intersection over the area of each box of ``boxes1``: ``|A ∩ B| / |A|``.

    Shapes, formats and options as :func:`box_iou`; a zero-area box of ``boxes1`` gives
    ``zero_division``. Useful for "how much of this box is covered" (e.g. crowd regions).
    """
    return _pair("box_ioa", "ioa", boxes1, boxes2, fmt=fmt, aligned=aligned,
                 zero_division=zero_division, backend=backend, out=out)


def generalized_box_iou(
    boxes1: Array, boxes2: Array, *, fmt: str = "xyxy", aligned: bool = False,
    zero_division: float = 0.0, backend: str | None = None, out: Array | None = None,
) -> Array:
    """Generalized IoU (Rezatofighi et al., 2019): ``IoU - |C \\ (A ∪ B)| / |C|``.

    ``C`` is the smallest box enclosing both. Values in [-1, 1]; when ``|C| == 0`` the penalty is
    0. Shapes, formats (2D and 3D) and options as :func:`box_iou`.
    """
    return _pair("generalized_box_iou", "giou", boxes1, boxes2, fmt=fmt, aligned=aligned,
                 zero_division=zero_division, backend=backend, out=out)


def distance_box_iou(
    boxes1: Array, boxes2: Array, *, fmt: str = "xyxy", aligned: bool = False,
    zero_division: float = 0.0, backend: str | None = None, out: Array | None = None,
) -> Array:
    """Distance IoU (Zheng et al., 2020): ``IoU - ρ²(centres) / c²(enclosing diagonal)``.

    2D boxes only (``Array[..., N, 4]``). Values in [-1, 1] for boxes that are not inverted (the
    enclosing box spans the min corners to the max corners, as in torchvision, so an inverted
    box's centre can lie outside it and give less); when the enclosing box has zero diagonal the
    penalty is 0. Unlike torchvision no ``eps`` is added, so tiny boxes are exact.
    """
    return _pair("distance_box_iou", "diou", boxes1, boxes2, fmt=fmt, aligned=aligned,
                 zero_division=zero_division, backend=backend, out=out, dims=(2,))


def complete_box_iou(
    boxes1: Array, boxes2: Array, *, fmt: str = "xyxy", aligned: bool = False,
    zero_division: float = 0.0, backend: str | None = None, out: Array | None = None,
) -> Array:
    """Complete IoU (Zheng et al., 2020): DIoU minus ``α v``, the aspect-ratio term.

    ``v = 4/π² (atan(w₂/h₂) - atan(w₁/h₁))²`` with ``atan(w/h)`` read as ``atan2(w, h)`` so that
    zero-height boxes are defined, and ``α = v / (1 - IoU + v)`` (0 when that is 0). 2D only.
    Values in [-1.5, 1] for boxes that are not inverted: ``α v`` can reach 1/2 when DIoU nears -1.
    """
    return _pair("complete_box_iou", "ciou", boxes1, boxes2, fmt=fmt, aligned=aligned,
                 zero_division=zero_division, backend=backend, out=out, dims=(2,))


def _loss(func: str, op: str, boxes1: Array, boxes2: Array, reduction: str, fmt: str,
          zero_division: float, backend: str | None) -> Array:
    reduction = _validate.reduction(func, reduction)
    engine = _dispatch.backend_for(func, {"boxes1": boxes1, "boxes2": boxes2}, backend)
    b1, b2 = engine.asarray(boxes1), engine.asarray(boxes2)
    single = b1.shape == (4,) and b2.shape == (4,)
    if single:  # one box each, as torchvision accepts: a 0-d result
        b1, b2 = b1[None], b2[None]
    elif b1.shape == (4,) and b2.ndim >= 2:  # one box against (..., N, 4): broadcast it
        b1 = engine.namespace().broadcast_to(b1, b2.shape)
    elif b2.shape == (4,) and b1.ndim >= 2:
        b2 = engine.namespace().broadcast_to(b2, b1.shape)
    value = _pair(func, op, b1, b2, fmt=fmt, aligned=True, zero_division=zero_division,
                  backend=backend, out=None, dims=(2,))
    loss = 1 - (value[..., 0] if single else value)
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        # The mean of no boxes is 0 (as torchvision), not NaN.
        return loss.mean() if loss.size else loss.sum()
    return loss


def generalized_box_iou_loss(
    boxes1: Array, boxes2: Array, *, reduction: str = "none", fmt: str = "xyxy",
    zero_division: float = 0.0, backend: str | None = None,
) -> Array:
    """``1 - GIoU`` of aligned pairs ``Array[..., N, 4]``; ``reduction`` 'none', 'mean' or 'sum'.

    As in torchvision, either argument may also be a single box ``Array[4]``: two single boxes
    give a 0-d result, a single box against ``Array[..., N, 4]`` is compared with each of them.
    Differentiable on the JAX engine (gradients finite at degenerate boxes). 'mean' of zero boxes
    is 0.
    """
    return _loss("generalized_box_iou_loss", "giou", boxes1, boxes2, reduction, fmt,
                 zero_division, backend)


def distance_box_iou_loss(
    boxes1: Array, boxes2: Array, *, reduction: str = "none", fmt: str = "xyxy",
    zero_division: float = 0.0, backend: str | None = None,
) -> Array:
    """``1 - DIoU`` of aligned pairs; see :func:`generalized_box_iou_loss`."""
    return _loss("distance_box_iou_loss", "diou", boxes1, boxes2, reduction, fmt,
                 zero_division, backend)


def complete_box_iou_loss(
    boxes1: Array, boxes2: Array, *, reduction: str = "none", fmt: str = "xyxy",
    zero_division: float = 0.0, backend: str | None = None,
) -> Array:
    """``1 - CIoU`` of aligned pairs; see :func:`generalized_box_iou_loss`. ``α`` is held
    constant under differentiation, as in the CIoU paper and torchvision."""
    return _loss("complete_box_iou_loss", "ciou", boxes1, boxes2, reduction, fmt,
                 zero_division, backend)


def box_area(boxes: Array, *, fmt: str = "xyxy", backend: str | None = None) -> Array:
    """Area (2D, ``Array[..., 4]``) or volume (3D, ``Array[..., 6]``) of each box -> ``Array[...]``.

    Inverted boxes (and negative sizes) have area 0; dtype rules as :func:`box_iou`. In 'xywh'
    and 'cxcywh' the sizes are multiplied as given. An area beyond the output dtype's range is
    ``inf`` (as in NumPy); the IoU family has no such limit.
    """
    func = "box_area"
    engine = _dispatch.backend_for(func, {"boxes": boxes}, backend)
    b = engine.asarray(boxes)
    dims = _validate.boxes(func, "boxes", b, min_ndim=1)
    fmt = _validate.box_format(func, fmt, dims)
    compute, out = _validate.result_dtypes(func, {"boxes": b}, wide=engine.wide_float())
    _integer_range(func, engine, {"boxes": b}, compute)
    xp = engine.namespace()
    b = b.astype(compute)
    # 'xywh' and 'cxcywh' hold the sizes: multiply them as given (a round trip through the
    # corners would round each size to the spacing of the coordinates).
    size = b[..., dims:] - b[..., :dims] if fmt == "xyxy" else b[..., dims:]
    return xp.prod(xp.maximum(size, 0), axis=-1).astype(out)


def box_convert(boxes: Array, in_fmt: str, out_fmt: str, *, backend: str | None = None) -> Array:
    """Convert ``Array[..., 4]`` (or ``[..., 6]``) boxes between 'xyxy', 'xywh' and 'cxcywh'.

    The result follows the dtype rules of :func:`box_iou` (float64 stays float64, everything else
    becomes float32), so centres of integer boxes are never truncated.
    """
    func = "box_convert"
    engine = _dispatch.backend_for(func, {"boxes": boxes}, backend)
    b = engine.asarray(boxes)
    dims = _validate.boxes(func, "boxes", b, min_ndim=1)
    in_fmt = _validate.box_format(func, in_fmt, dims, "in_fmt")
    out_fmt = _validate.box_format(func, out_fmt, dims, "out_fmt")
    compute, out = _validate.result_dtypes(func, {"boxes": b}, wide=engine.wide_float())
    _integer_range(func, engine, {"boxes": b}, compute)
    xp = engine.namespace()
    b = b.astype(compute)
    if in_fmt == out_fmt:
        return b.astype(out)
    if {in_fmt, out_fmt} == {"xywh", "cxcywh"}:
        # Both hold the sizes: keep them as given, move only the first corner or the centre.
        first, size = b[..., :dims], b[..., dims:]
        moved = first + size / 2 if in_fmt == "xywh" else first - size / 2
        return xp.concatenate([moved, size], axis=-1).astype(out)
    corners = _formats.to_corners(xp, b, in_fmt)
    return _formats.from_corners(xp, corners, out_fmt).astype(out)
