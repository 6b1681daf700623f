"""A plain float64 reference for the box family, the oracle every engine is compared with.

Written for readability, not speed: one pair of boxes at a time with Python floats and ``math``,
following the behaviour contract (README, "Behaviour in the edge cases"):

- a box of ``d`` spatial dimensions is ``2 * d`` numbers; 'xyxy' is (min corner, max corner),
  'xywh' is (min corner, size), 'cxcywh' is (centre, size); the 3D names 'xyzxyz', 'xyzwhd' and
  'cxcyczwhd' are the same layouts with one more axis;
- an inverted box (max < min along an axis) has zero extent along that axis, never a negative area;
- a ratio whose denominator is 0 gives ``zero_division`` for IoU/IoA and 0 for the GIoU/DIoU/CIoU
  penalty terms, so those stay finite for every finite input;
- a NaN coordinate in either box gives NaN for the pair.

The array helpers at the end (:func:`pairwise`, :func:`box_area`, :func:`box_convert`) apply the
per-box functions over ``(..., N, 2d)`` arrays with NumPy's broadcasting of the batch dimensions and
return float64 arrays.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

Box = Sequence[float]

FORMATS_2D = ("xyxy", "xywh", "cxcywh")
FORMATS_3D = ("xyxy", "xywh", "cxcywh", "xyzxyz", "xyzwhd", "cxcyczwhd")
_ALIASES = {"xyzxyz": "xyxy", "xyzwhd": "xywh", "cxcyczwhd": "cxcywh"}


def _canonical(fmt: str) -> str:
    return _ALIASES.get(fmt, fmt)


def has_nan(*boxes: Box) -> bool:
    return any(math.isnan(float(v)) for box in boxes for v in box)


def clamp0(v: float) -> float:
    """max(v, 0), keeping NaN."""
    return v if (v > 0 or math.isnan(v)) else 0.0


def ratio(num: float, den: float, fallback: float) -> float:
    """num / den, or ``fallback`` when den is exactly 0."""
    return fallback if den == 0 else num / den


# ------------------------------------------------------------------------------------------------
# Formats


def to_corners(box: Box, fmt: str = "xyxy") -> tuple[float, ...]:
    """(lo_1, ..., lo_d, hi_1, ..., hi_d) of a box given in ``fmt``."""
    values = [float(v) for v in box]
    d = len(values) // 2
    first, second = values[:d], values[d:]
    fmt = _canonical(fmt)
    if fmt == "xyxy":
        lo, hi = first, second
    elif fmt == "xywh":
        lo = first
        hi = [f + s for f, s in zip(first, second)]
    elif fmt == "cxcywh":
        lo = [c - s / 2 for c, s in zip(first, second)]
        hi = [c + s / 2 for c, s in zip(first, second)]
    else:
        raise ValueError(f"unknown box format {fmt!r}")
    return tuple(lo) + tuple(hi)


def from_corners(corners: Box, fmt: str = "xyxy") -> tuple[float, ...]:
    values = [float(v) for v in corners]
    d = len(values) // 2
    lo, hi = values[:d], values[d:]
    fmt = _canonical(fmt)
    if fmt == "xyxy":
        return tuple(lo) + tuple(hi)
    sizes = [h - l for l, h in zip(lo, hi)]
    if fmt == "xywh":
        return tuple(lo) + tuple(sizes)
    if fmt == "cxcywh":
        return tuple((l + h) / 2 for l, h in zip(lo, hi)) + tuple(sizes)
    raise ValueError(f"unknown box format {fmt!r}")


def convert(box: Box, in_fmt: str, out_fmt: str) -> tuple[float, ...]:
    return from_corners(to_corners(box, in_fmt), out_fmt)


# ------------------------------------------------------------------------------------------------
# One box, one pair (boxes as corners, 'xyxy')


def extents(box: Box) -> list[float]:
    d = len(box) // 2
    return [clamp0(box[d + k] - box[k]) for k in range(d)]


def area(box: Box) -> float:
    """Area (2D) or volume (3D) of a corner box; 0 for an inverted box."""
    return math.prod(extents(box))


def intersection(a: Box, b: Box) -> float:
    d = len(a) // 2
    sides = [clamp0(min(a[d + k], b[d + k]) - max(a[k], b[k])) for k in range(d)]
    return math.prod(sides)


def hull_extents(a: Box, b: Box) -> list[float]:
    """Sides of the smallest box enclosing both."""
    d = len(a) // 2
    return [clamp0(max(a[d + k], b[d + k]) - min(a[k], b[k])) for k in range(d)]


def iou(a: Box, b: Box, zero_division: float = 0.0) -> float:
    if has_nan(a, b):
        return math.nan
    inter = intersection(a, b)
    union = area(a) + area(b) - inter
    return ratio(inter, union, zero_division)


def ioa(a: Box, b: Box, zero_division: float = 0.0) -> float:
    """Intersection over the area of the first box."""
    if has_nan(a, b):
        return math.nan
    return ratio(intersection(a, b), area(a), zero_division)


def giou(a: Box, b: Box, zero_division: float = 0.0) -> float:
    if has_nan(a, b):
        return math.nan
    inter = intersection(a, b)
    union = area(a) + area(b) - inter
    hull = math.prod(hull_extents(a, b))
    return ratio(inter, union, zero_division) - ratio(hull - union, hull, 0.0)


def centre_distance2(a: Box, b: Box) -> float:
    d = len(a) // 2
    return sum(((a[k] + a[d + k]) / 2 - (b[k] + b[d + k]) / 2) ** 2 for k in range(d))


def diou(a: Box, b: Box, zero_division: float = 0.0) -> float:
    if has_nan(a, b):
        return math.nan
    diagonal2 = sum(s * s for s in hull_extents(a, b))
    return iou(a, b, zero_division) - ratio(centre_distance2(a, b), diagonal2, 0.0)


def aspect_term(a: Box, b: Box) -> float:
    """v = 4/pi^2 (atan(w2/h2) - atan(w1/h1))^2, with atan(w/h) read as atan2(w, h)."""
    w1, h1 = extents(a)
    w2, h2 = extents(b)
    return 4 / math.pi**2 * (math.atan2(w2, h2) - math.atan2(w1, h1)) ** 2


def ciou_alpha(a: Box, b: Box, zero_division: float = 0.0) -> float:
    v = aspect_term(a, b)
    return ratio(v, 1 - iou(a, b, zero_division) + v, 0.0)


def ciou(a: Box, b: Box, zero_division: float = 0.0, alpha: float | None = None) -> float:
    """CIoU; ``alpha`` fixes the trade-off weight (to differentiate with it held constant)."""
    if has_nan(a, b):
        return math.nan
    if alpha is None:
        alpha = ciou_alpha(a, b, zero_division)
    return diou(a, b, zero_division) - alpha * aspect_term(a, b)


OPS: dict[str, Callable[..., float]] = {
    "iou": iou,
    "giou": giou,
    "diou": diou,
    "ciou": ciou,
    "ioa": ioa,
}
OPS_3D = ("iou", "giou", "ioa")


# ------------------------------------------------------------------------------------------------
# Arrays


def _rows(boxes: np.ndarray, fmt: str) -> np.ndarray:
    """(..., K, 2d) boxes in ``fmt`` -> object array (..., K) of corner tuples."""
    boxes = np.asarray(boxes, dtype=np.float64)
    out = np.empty(boxes.shape[:-1], dtype=object)
    for index in np.ndindex(out.shape):
        out[index] = to_corners(boxes[index], fmt)
    return out


def pairwise(
    op: str | Callable[..., float], boxes1: np.ndarray, boxes2: np.ndarray, *, fmt: str = "xyxy",
    aligned: bool = False, **kwargs: float,
) -> np.ndarray:
    """``op`` over (..., N, 2d) x (..., M, 2d) -> (..., N, M), or (..., N) with ``aligned``."""
    fn = OPS[op] if isinstance(op, str) else op
    r1, r2 = _rows(boxes1, fmt), _rows(boxes2, fmt)
    batch = np.broadcast_shapes(r1.shape[:-1], r2.shape[:-1])
    r1 = np.broadcast_to(r1, batch + r1.shape[-1:])
    r2 = np.broadcast_to(r2, batch + r2.shape[-1:])
    n, m = r1.shape[-1], r2.shape[-1]
    if aligned:
        if n != m:
            raise ValueError("aligned needs N == M")
        out = np.empty(batch + (n,))
        for index in np.ndindex(out.shape):
            out[index] = fn(r1[index], r2[index], **kwargs)
        return out
    out = np.empty(batch + (n, m))
    for index in np.ndindex(out.shape):
        *lead, i, j = index
        out[index] = fn(r1[tuple(lead) + (i,)], r2[tuple(lead) + (j,)], **kwargs)
    return out


def box_area(boxes: np.ndarray, fmt: str = "xyxy") -> np.ndarray:
    """(..., 2d) -> (...) areas or volumes."""
    rows = _rows(boxes, fmt)
    out = np.empty(rows.shape)
    for index in np.ndindex(out.shape):
        out[index] = area(rows[index])
    return out


def box_convert(boxes: np.ndarray, in_fmt: str, out_fmt: str) -> np.ndarray:
    boxes = np.asarray(boxes, dtype=np.float64)
    out = np.empty(boxes.shape)
    for index in np.ndindex(boxes.shape[:-1]):
        out[index] = convert(boxes[index], in_fmt, out_fmt)
    return out


def loss(op: str, boxes1: np.ndarray, boxes2: np.ndarray, *, reduction: str = "none",
         fmt: str = "xyxy", zero_division: float = 0.0) -> np.ndarray:
    """1 - op over aligned pairs, reduced; the mean of no pairs is 0."""
    values = 1 - pairwise(op, boxes1, boxes2, fmt=fmt, aligned=True, zero_division=zero_division)
    if reduction == "sum":
        return np.asarray(values.sum())
    if reduction == "mean":
        return np.asarray(values.mean() if values.size else 0.0)
    return values


def crowd_mask_iou(dt: np.ndarray, gt: np.ndarray, crowd, zd: float = 0.0) -> np.ndarray:
    """Plain float64 IoU of dense masks, pair by pair, with COCO's crowd rule (for a crowd
    ground truth the union is the area of the detection)."""
    out = np.empty((len(dt), len(gt)))
    for i, d in enumerate(dt):
        for j, g in enumerate(gt):
            inter = float(np.logical_and(d, g).sum())
            union = float(d.sum()) if crowd[j] else float(np.logical_or(d, g).sum())
            out[i, j] = inter / union if union else zd
    return out


def draw_blobs(rng: np.random.Generator, masks: np.ndarray, first: int = 0) -> np.ndarray:
    """Masks ``first:`` of ``masks (N, H, W)`` overwritten with ellipses (odd i) and rectangles
    (even i) of every size, anywhere (runs across columns, as real instance masks have)."""
    h, w = masks.shape[1:]
    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(first, masks.shape[0]):
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        a, b = rng.uniform(0.5, w / 2 + 1), rng.uniform(0.5, h / 2 + 1)
        if i % 2:
            masks[i] = ((xx - cx) / a) ** 2 + ((yy - cy) / b) ** 2 <= 1
        else:
            masks[i] = (abs(xx - cx) <= a) & (abs(yy - cy) <= b)
    return masks
