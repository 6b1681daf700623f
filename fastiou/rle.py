"""COCO run-length encoding (RLE), compatible with pycocotools.

An RLE is a dict ``{"size": [h, w], "counts": ...}``: the mask read in column-major order as
alternating runs of background and foreground, starting with background (so the first run may be
0). ``counts`` is either the compressed string (``bytes``, as pycocotools returns it; ``str`` is
accepted too) or, "uncompressed", a list of run lengths. Every function here accepts both, and
every function that returns RLEs returns compressed ones, byte for byte what pycocotools returns.

Differences from ``pycocotools.mask``:

- :func:`encode` takes masks in their natural C layout, ``(N, H, W)`` or ``(H, W)``, of any
  dtype (bool as given, integers non-zero, floats with ``threshold=``); no Fortran copy needed.
- :func:`decode` returns bool masks ``(N, H, W)`` (or ``(H, W)`` for one RLE), C-contiguous.
- :func:`iou` returns a ``(len(dt), len(gt))`` float64 array, also when a set is empty; RLEs of
  different sizes are a ValueError (pycocotools gives -1 for pairs whose boxes overlap, 0 for the
  others); a pair whose union is 0 gives ``zero_division`` (0.0 by default, as pycocotools).
- Malformed input (counts that do not add up to h * w, negative runs, a bad character or a
  truncated string) is a ValueError naming the RLE, never a crash or garbage.
- Empty runs inside uncompressed counts (``[3, 0, 2, 15]``) are handled everywhere; pycocotools'
  ``merge`` stops at them and returns runs that do not cover the image.
- Areas are int64.

Conversions: :func:`from_polygons` (COCO polygon segmentations), :func:`from_boxes` (COCO
``[x, y, w, h]`` boxes) and :func:`from_uncompressed` (list counts) cover what
``pycocotools.mask.frPyObjects`` accepts, with its exact rasterization.

This is host-side work (run lists and strings), done by compiled loops on the CPU (Numba)
whatever the engine of the rest of the program; dense masks on a GPU are better served by
:func:`fastiou.mask_iou`.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from . import _dispatch, _validate

__all__ = ["area", "decode", "encode", "from_boxes", "from_polygons", "from_uncompressed", "iou",
           "merge", "to_bbox"]

_ERRORS = {
    1: "has a character outside '0'..'o' in its compressed counts",
    2: "has a compressed counts string that ends in the middle of a number",
    3: "has a compressed counts string with a number too long to be a run length",
    4: "has a negative run length",
    5: "has run lengths that do not add up to h * w",
}


def _engine() -> Any:
    return _dispatch.load("numba").rle


@dataclass(frozen=True)
class _Runs:
    """A set of RLEs as flat runs: those of RLE i are counts[offsets[i]:offsets[i + 1]]."""

    counts: np.ndarray
    offsets: np.ndarray
    sizes: np.ndarray  # (N, 2) int64: h, w

    def __len__(self) -> int:
        return self.sizes.shape[0]

    def runs(self, i: int) -> np.ndarray:
        return self.counts[self.offsets[i] : self.offsets[i + 1]]


def _size(func: str, name: str, rle: Any) -> tuple[int, int]:
    try:
        h, w = rle["size"]
        if type(h) is int and type(w) is int and h >= 0 and w >= 0 and h * w < 2**32:
            return h, w  # the common case, checked cheaply
        if (isinstance(h, (numbers.Integral, np.integer)) and not isinstance(h, (bool, np.bool_))
                and isinstance(w, (numbers.Integral, np.integer)) and not isinstance(w, (bool, np.bool_))
                and h >= 0 and w >= 0 and int(h) * int(w) < 2**32):
            return int(h), int(w)
    except (TypeError, KeyError, ValueError, IndexError):
        pass
    raise ValueError(
        f"{func}: {name} must be a dict with 'size': [h, w] (non-negative integers, "
        f"h * w < 2**32) and 'counts', got {_short(rle)}"
    )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def _compressed_sizes(rles: Sequence[Any]) -> tuple[list[bytes], np.ndarray] | None:
    """(strings, sizes) when every RLE has bytes counts and a plain [h, w] of Python ints (the
    usual case, checked in bulk); None otherwise, for the general path to check and explain."""
    try:
        strings = [r["counts"] for r in rles]
        pairs = [r["size"] for r in rles]
        if not all(type(c) is bytes for c in strings) or not all(
            len(p) == 2 and type(p[0]) is int and type(p[1]) is int for p in pairs
        ):
            return None
    except (TypeError, KeyError, IndexError):
        return None
    sizes = np.array(pairs, dtype=np.int64).reshape(len(pairs), 2)
    if sizes.size and (sizes.min() < 0 or (sizes[:, 0] * sizes[:, 1]).max() >= 2**32):
        return None
    return strings, sizes


def _parse(func: str, name: str, rles: Sequence[Any]) -> _Runs:
    """Validate and read RLE dicts (compressed or not) into flat runs."""
    engine = _engine()
    n = len(rles)
    fast = _compressed_sizes(rles)
    if fast is not None:
        strings, sizes = fast
        counts, offsets, errors = engine.decode_strings(strings, sizes[:, 0] * sizes[:, 1])
        for i in np.flatnonzero(errors):
            raise ValueError(f"{func}: {name}[{i}] {_ERRORS[int(errors[i])]}, got {_short(rles[i])}")
        return _Runs(counts, offsets, sizes)
    sizes = np.empty((n, 2), dtype=np.int64)
    strings: list[bytes] = []
    string_at: list[int] = []
    lists: dict[int, np.ndarray] = {}
    for i, rle in enumerate(rles):
        label = f"{name}[{i}]"
        sizes[i] = _size(func, label, rle)
        counts = rle.get("counts")
        if isinstance(counts, str):
            try:
                counts = counts.encode("ascii")
            except UnicodeEncodeError:
                raise ValueError(f"{func}: {label} {_ERRORS[1]}") from None
        if isinstance(counts, (bytes, bytearray, memoryview)):
            strings.append(bytes(counts))
            string_at.append(i)
        elif isinstance(counts, (list, tuple, np.ndarray)):
            arr = np.asarray(counts)
            if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
                raise ValueError(
                    f"{func}: {label} has 'counts' that is neither a compressed string nor a "
                    f"list of integer run lengths: {_short(counts)}"
                )
            lists[i] = arr.astype(np.int64)
        else:
            raise ValueError(
                f"{func}: {label} must have 'counts' as a compressed string (bytes or str) or a "
                f"list of run lengths, got {type(counts).__name__}"
            )
    totals = sizes[:, 0] * sizes[:, 1]
    decoded, dec_offsets, errors = engine.decode_strings(strings, totals[string_at])
    for j in np.flatnonzero(errors):
        i = string_at[j]
        label = f"{name}[{i}]"
        raise ValueError(f"{func}: {label} {_ERRORS[int(errors[j])]}, got {_short(rles[i])}")
    lengths = np.zeros(n, dtype=np.int64)
    lengths[string_at] = np.diff(dec_offsets)
    for i, arr in lists.items():
        lengths[i] = arr.size
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    if not lists:
        counts = decoded
    else:
        counts = np.empty(int(offsets[-1]), dtype=np.int64)
        for j, i in enumerate(string_at):
            counts[offsets[i] : offsets[i + 1]] = decoded[dec_offsets[j] : dec_offsets[j + 1]]
        for i, arr in lists.items():
            counts[offsets[i] : offsets[i + 1]] = arr
        errors = engine.check_runs(counts, offsets, totals)
        for i in np.flatnonzero(errors):
            label = f"{name}[{i}]"
            raise ValueError(f"{func}: {label} {_ERRORS[int(errors[i])]}, got {_short(rles[i])}")
    return _Runs(counts, offsets, sizes)


def _as_list(func: str, name: str, rles: Any) -> tuple[list[Any], bool]:
    """(list of RLE dicts, whether a single dict was given)."""
    if isinstance(rles, dict):
        return [rles], True
    if isinstance(rles, (list, tuple)):
        return list(rles), False
    raise TypeError(
        f"{func}: {name} must be an RLE dict or a list of them, got {type(rles).__name__}"
    )


def _result(strings: list[bytes], sizes: Any) -> list[dict[str, Any]]:
    return [{"size": [int(h), int(w)], "counts": s} for s, (h, w) in zip(strings, sizes)]


# --------------------------------------------------------------------------------------------


def encode(masks: Any, *, threshold: float | None = None) -> Any:
    """Run-length encode masks given in their natural C layout.

    Parameters
    ----------
    masks : ndarray (N, H, W) or (H, W)
        bool masks as given, integer masks (non-zero is foreground) or floating masks with
        ``threshold`` (foreground is ``value >= threshold``). Any memory layout.

    Returns
    -------
    list of RLE dicts (one per mask) for ``(N, H, W)``, one RLE dict for ``(H, W)``; compressed
    ``counts`` (bytes) identical to ``pycocotools.mask.encode``.
    """
    func = "rle.encode"
    engine_name = _dispatch.engine_name(func, {"masks": masks})
    if engine_name != "numba":
        raise TypeError(
            f"{func}: masks must be a numpy.ndarray (RLE encoding runs on the host), got "
            f"{type(masks).__module__}.{type(masks).__qualname__}; move them to the host first"
        )
    x = np.asarray(masks)
    spec = _validate.mask_array(func, "masks", x, threshold=threshold, min_ndim=2)
    if x.ndim > 3:
        raise ValueError(f"{func}: masks must have shape (N, H, W) or (H, W), got {_validate.describe(x)}")
    from .masks import _foreground_rule

    rule, cut = _foreground_rule(x, spec)
    if not x.dtype.isnative:
        x = x.astype(x.dtype.newbyteorder("="))
    if x.dtype == np.bool_:
        x = x.view(np.uint8)
    flat = x.reshape((-1,) + x.shape[-2:]) if x.ndim == 3 else x[None]
    strings = _engine().encode(flat, rule, cut)
    out = _result(strings, [(spec.height, spec.width)] * len(strings))
    return out[0] if x.ndim == 2 else out


def decode(rles: Any) -> np.ndarray:
    """RLE dicts -> bool masks ``(N, H, W)`` (C-contiguous), or ``(H, W)`` for one dict.

    All RLEs of a list must have the same size.
    """
    func = "rle.decode"
    items, single = _as_list(func, "rles", rles)
    runs = _parse(func, "rles", items)
    if len(runs) == 0:
        return np.zeros((0, 0, 0), dtype=np.bool_)
    _same_size(func, runs, "rles")
    h, w = (int(v) for v in runs.sizes[0])
    out = _engine().decode(runs.counts, runs.offsets, h, w)
    return out[0] if single else out


def area(rles: Any) -> Any:
    """Foreground pixels of each RLE: int64 array ``(N,)``, or an int64 scalar for one dict."""
    func = "rle.area"
    items, single = _as_list(func, "rles", rles)
    runs = _parse(func, "rles", items)
    out = _engine().areas(runs.counts, runs.offsets)
    return out[0] if single else out


def to_bbox(rles: Any) -> np.ndarray:
    """Bounding boxes ``[x, y, w, h]`` (float64, COCO's xywh in pixels) ``(N, 4)``, or ``(4,)``
    for one dict; ``[0, 0, 0, 0]`` for an empty mask. As ``pycocotools.mask.toBbox``."""
    func = "rle.to_bbox"
    items, single = _as_list(func, "rles", rles)
    runs = _parse(func, "rles", items)
    out = _engine().bboxes(runs.counts, runs.offsets, np.ascontiguousarray(runs.sizes[:, 0]))
    return out[0] if single else out


def merge(rles: Any, intersect: bool = False) -> dict[str, Any]:
    """Union (or, with ``intersect=True``, intersection) of RLEs of one size -> one RLE dict.

    As ``pycocotools.mask.merge``: a single RLE comes back with its runs as they are.
    """
    func = "rle.merge"
    items, _ = _as_list(func, "rles", rles)
    if not isinstance(intersect, (bool, np.bool_)):
        raise TypeError(f"{func}: intersect must be a bool, got {intersect!r}")
    if not items:
        raise ValueError(f"{func}: rles must hold at least one RLE, got an empty list")
    runs = _parse(func, "rles", items)
    _same_size(func, runs, "rles")
    engine = _engine()
    h, w = (int(v) for v in runs.sizes[0])
    if len(runs) == 1 or h * w == 0:
        merged = runs.runs(0)
    else:
        merged = engine.merge(runs.counts, runs.offsets, bool(intersect))
    strings = engine.compress(merged, np.array([0, merged.size], dtype=np.int64))
    return _result(strings, [(h, w)])[0]


def from_uncompressed(rles: Any) -> Any:
    """Uncompressed RLE (``counts`` a list of run lengths) -> compressed, as
    ``pycocotools.mask.frPyObjects`` does for them; a list gives a list, a dict a dict. The runs
    are kept as they are (not merged), so the string is byte for byte pycocotools'."""
    func = "rle.from_uncompressed"
    items, single = _as_list(func, "rles", rles)
    runs = _parse(func, "rles", items)
    if runs.counts.size and runs.counts.max() >= 2**32:
        raise ValueError(f"{func}: run lengths must be below 2**32")
    out = _result(_engine().compress(runs.counts, runs.offsets), runs.sizes)
    return out[0] if single else out


def from_polygons(polygons: Any, height: int, width: int) -> dict[str, Any]:
    """Rasterize the polygons of one object (COCO's ``segmentation`` list) into one RLE dict.

    Parameters
    ----------
    polygons : list of [x0, y0, x1, y1, ...] (at least 3 points each), or one such list
        Vertex coordinates in pixels, as COCO stores them.
    height, width : int
        The image size.

    Returns
    -------
    The union of the polygons, rasterized exactly as pycocotools does: identical to
    ``merge(frPyObjects(polygons, height, width))``.
    """
    func = "rle.from_polygons"
    for name, value in (("height", height), ("width", width)):
        if not isinstance(value, (numbers.Integral, np.integer)) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{func}: {name} must be a non-negative integer, got {value!r}")
    if int(height) * int(width) >= 2**32:
        raise ValueError(f"{func}: height * width must be below 2**32, got {height} x {width}")
    if isinstance(polygons, (list, tuple)) and polygons and all(
        isinstance(v, (numbers.Real, np.number)) for v in polygons
    ):
        polygons = [polygons]
    if not isinstance(polygons, (list, tuple)) or not polygons:
        raise ValueError(
            f"{func}: polygons must be a non-empty list of [x0, y0, x1, y1, ...] lists, got "
            f"{_short(polygons)}"
        )
    engine = _engine()
    runs = []
    for i, poly in enumerate(polygons):
        xy = np.asarray(poly, dtype=np.float64) if isinstance(poly, (list, tuple, np.ndarray)) else None
        if xy is None or xy.ndim != 1 or xy.size < 6 or xy.size % 2 or not np.isfinite(xy).all():
            raise ValueError(
                f"{func}: polygons[{i}] must be a flat list of at least 3 finite (x, y) pairs, "
                f"got {_short(poly)}"
            )
        runs.append(engine.polygon_runs(xy.reshape(-1, 2), int(height), int(width)))
    offsets = np.zeros(len(runs) + 1, dtype=np.int64)
    np.cumsum([r.size for r in runs], out=offsets[1:])
    counts = np.concatenate(runs)
    merged = counts if len(runs) == 1 else engine.merge(counts, offsets, False)
    strings = engine.compress(merged, np.array([0, merged.size], dtype=np.int64))
    return _result(strings, [(height, width)])[0]


def from_boxes(boxes: Any, height: int, width: int) -> list[dict[str, Any]]:
    """Rasterize COCO boxes ``[x, y, w, h]`` (``(N, 4)``) into RLE dicts, as
    ``pycocotools.mask.frPyObjects`` does for boxes (each box is drawn as its 4-corner polygon)."""
    func = "rle.from_boxes"
    b = np.asarray(boxes, dtype=np.float64)
    if b.ndim != 2 or b.shape[1] != 4 or not np.isfinite(b).all():
        raise ValueError(f"{func}: boxes must be finite [x, y, w, h] rows of shape (N, 4), got "
                         f"{_validate.describe(np.asarray(boxes))}")
    x0, y0 = b[:, 0], b[:, 1]
    x1, y1 = x0 + b[:, 2], y0 + b[:, 3]
    corners = np.stack([x0, y0, x0, y1, x1, y1, x1, y0], axis=1)
    return [from_polygons([list(c)], height, width) for c in corners]


def _same_size(func: str, runs: _Runs, name: str) -> None:
    if len(runs) and (runs.sizes != runs.sizes[0]).any():
        i = int(np.flatnonzero((runs.sizes != runs.sizes[0]).any(axis=1))[0])
        raise ValueError(
            f"{func}: every RLE must have the same size, got {name}[0] of size "
            f"{runs.sizes[0].tolist()} and {name}[{i}] of size {runs.sizes[i].tolist()}"
        )


def _iou_operand(func: str, name: str, value: Any) -> _Runs:
    if isinstance(value, np.ndarray) or (
        not isinstance(value, (dict, list, tuple)) and hasattr(value, "shape")
    ):
        x = value
        if getattr(x, "ndim", 0) == 2 and x.shape[-1] == 4:
            raise TypeError(
                f"{func}: {name} looks like boxes ({_validate.describe(x)}); rle.iou compares "
                "masks: use fastiou.box_iou for boxes"
            )
        if getattr(x, "ndim", 0) != 3:
            raise ValueError(
                f"{func}: {name} as an array must be dense masks (N, H, W), got {_validate.describe(x)}"
            )
        value = encode(x)  # dense masks are encoded first (numpy only)
    items, _ = _as_list(func, name, value)
    return _parse(func, name, items)


def iou(dt: Any, gt: Any, iscrowd: Sequence[Any] | None = None, *,
        zero_division: float = 0.0) -> np.ndarray:
    """IoU of every detection with every ground truth, computed on the runs (no decoding).

    Parameters
    ----------
    dt, gt : list of RLE dicts (or one dict), or dense bool/integer masks ndarray (N, H, W)
        Every RLE must have the same size.
    iscrowd : sequence of bool, one per ground truth, optional
        For a crowd ground truth the union is the area of the detection (COCO's rule), so the
        value is the fraction of the detection inside the crowd region.
    zero_division : float
        Value where the union is 0 (an empty detection against an empty or crowd ground truth).

    Returns
    -------
    ndarray (len(dt), len(gt)) float64, as ``pycocotools.mask.iou``.
    """
    func = "rle.iou"
    zd = _validate.zero_division(func, zero_division)
    d = _iou_operand(func, "dt", dt)
    g = _iou_operand(func, "gt", gt)
    if iscrowd is None:
        crowd = np.zeros(len(g), dtype=np.bool_)
    else:
        crowd = np.asarray(iscrowd)
        if crowd.ndim != 1 or crowd.shape[0] != len(g) or (crowd.size and crowd.dtype.kind not in "biu"):
            raise ValueError(
                f"{func}: iscrowd must hold one bool per ground truth ({len(g)}), got "
                f"{_short(iscrowd)}"
            )
        crowd = crowd.astype(np.bool_)
    both = np.concatenate([d.sizes, g.sizes])
    if both.shape[0] and (both != both[0]).any():
        i = int(np.flatnonzero((both != both[0]).any(axis=1))[0])
        which = f"dt[{i}]" if i < len(d) else f"gt[{i - len(d)}]"
        first = "dt[0]" if len(d) else "gt[0]"
        raise ValueError(
            f"{func}: every RLE must have the same size, got {first} of size {both[0].tolist()} "
            f"and {which} of size {both[i].tolist()}"
        )
    engine = _engine()
    heights_d = np.ascontiguousarray(d.sizes[:, 0])
    heights_g = np.ascontiguousarray(g.sizes[:, 0])
    dt_ops = (d.counts, d.offsets, engine.areas(d.counts, d.offsets),
              engine.bboxes(d.counts, d.offsets, heights_d))
    gt_ops = (g.counts, g.offsets, engine.areas(g.counts, g.offsets),
              engine.bboxes(g.counts, g.offsets, heights_g))
    height = int(both[0, 0]) if both.shape[0] else 0
    return engine.iou(dt_ops, gt_ops, height, crowd, zd)
