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
- Malformed input (counts that do not add up to h * w, a negative run, a run or a running total
  of runs past h * w, a bad character or a truncated string) is a ValueError naming the RLE,
  never a crash or garbage. Every run is checked against what is left of h * w before it is
  added, so no sum of runs can wrap around, whatever the input path (lists, arrays, strings).
- Sizes: h, w and h * w must be below 2**32 (pycocotools' runs are 32-bit), everywhere, also in
  :func:`encode`; beyond, a ValueError.
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
import struct
from dataclasses import dataclass
from itertools import accumulate, chain
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
    6: "has a run length, or a running total of run lengths, past h * w",
}

# Largest image: h, w and h * w below 2**32 (pycocotools stores runs as 32-bit unsigned integers).
MAX_PIXELS = 2**32
# Largest polygon coordinate magnitude (pixels): COCO's fine grid (5x) then fits int64 exactly.
MAX_COORDINATE = 2.0**53


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


def _fits(h: int, w: int) -> bool:
    """Whether an image of h x w (Python ints) is one COCO RLE can describe: the one size check."""
    return 0 <= h < MAX_PIXELS and 0 <= w < MAX_PIXELS and h * w < MAX_PIXELS


def _is_int(v: Any) -> bool:
    return isinstance(v, (numbers.Integral, np.integer)) and not isinstance(v, (bool, np.bool_))


def _size(func: str, name: str, rle: Any) -> tuple[int, int]:
    try:
        h, w = rle["size"]
        if _is_int(h) and _is_int(w) and _fits(int(h), int(w)):
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
            len(p) == 2 and type(p[0]) is int and type(p[1]) is int and _fits(p[0], p[1])
            for p in pairs
        ):
            return None
    except (TypeError, KeyError, IndexError):
        return None
    return strings, np.array(pairs, dtype=np.int64).reshape(len(pairs), 2)


def _parse(func: str, name: str, rles: Sequence[Any]) -> _Runs:
    """Validate and read RLE dicts (compressed or not) into flat runs."""
    engine = _engine()
    n = len(rles)
    fast = _compressed_sizes(rles)
    if fast is not None:
        strings, sizes = fast
        counts, offsets, errors = engine.decode_strings(strings, sizes[:, 0] * sizes[:, 1])
        if errors.any():
            i = int(np.flatnonzero(errors)[0])
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
            lists[i] = _run_lengths(func, label, counts)
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


def _run_lengths(func: str, label: str, counts: Any) -> np.ndarray:
    """Uncompressed counts -> int64 runs. A run beyond int64 becomes 2**63 - 1 (and a negative one
    -1): the run check refuses both as it would the value itself, with no wrap-around."""
    try:
        arr = np.asarray(counts)
    except (ValueError, TypeError, OverflowError):
        arr = None
    if arr is not None and arr.ndim == 1 and arr.dtype.kind in "fO" and arr.size and all(
        _is_int(v) for v in counts
    ):  # Python ints past int64 (alone: object; with negatives: float64)
        arr = np.array([min(max(int(v), -1), 2**63 - 1) for v in counts], dtype=np.int64)
    if arr is None or arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
        raise ValueError(
            f"{func}: {label} has 'counts' that is neither a compressed string nor a "
            f"list of integer run lengths: {_short(counts)}"
        )
    if arr.dtype.kind == "u" and arr.dtype.itemsize == 8:
        arr = np.minimum(arr, np.uint64(2**63 - 1))
    return arr.astype(np.int64)


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
    if not _fits(spec.height, spec.width):
        raise ValueError(
            f"{func}: masks of H x W = {spec.height} x {spec.width} pixels are too large for COCO "
            f"RLE, which needs H * W < 2**32, got {_validate.describe(x)}"
        )
    from .masks import _foreground_rule

    rule, cut = _foreground_rule(x, spec)
    if not x.dtype.isnative:
        x = x.astype(x.dtype.newbyteorder("="))
    if x.dtype == np.bool_:
        x = x.view(np.uint8)
    flat = x if x.ndim == 3 else x[None]
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
    out = _result(_engine().compress(runs.counts, runs.offsets), runs.sizes)
    return out[0] if single else out


def _image_size(func: str, height: Any, width: Any) -> tuple[int, int]:
    for name, value in (("height", height), ("width", width)):
        if not _is_int(value) or value < 0:
            raise ValueError(f"{func}: {name} must be a non-negative integer, got {value!r}")
    h, w = int(height), int(width)
    if not _fits(h, w):
        raise ValueError(f"{func}: height * width must be below 2**32 (COCO RLE), got {h} x {w}")
    return h, w


def _numbers(func: str, name: str, value: Any, expected: str) -> np.ndarray:
    """``value`` as a float64 array; a TypeError for anything but real numbers, a ValueError
    for a ragged sequence (``expected`` says what was wanted)."""
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError):
        raise ValueError(f"{func}: {name} must be {expected}, got a ragged sequence "
                         f"{_short(value)}") from None
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"{func}: {name} must hold real numbers ({expected}), got "
                        f"{_validate.describe(arr)}: {_short(value)}")
    return arr.astype(np.float64)


def _rasterize(polygons: list[np.ndarray], height: int, width: int) -> np.ndarray:
    """Runs of the union of polygons, each (K, 2) float64 with checked coordinates."""
    engine = _engine()
    runs = [engine.polygon_runs(xy, height, width) for xy in polygons]
    if len(runs) == 1:
        return runs[0]
    offsets = np.zeros(len(runs) + 1, dtype=np.int64)
    np.cumsum([r.size for r in runs], out=offsets[1:])
    return engine.merge(np.concatenate(runs), offsets, False)


def from_polygons(polygons: Any, height: int, width: int) -> dict[str, Any]:
    """Rasterize the polygons of one object (COCO's ``segmentation`` list) into one RLE dict.

    Parameters
    ----------
    polygons : list of [x0, y0, x1, y1, ...] (at least 3 points each), or one such list
        Vertex coordinates in pixels, as COCO stores them: finite, of magnitude at most 2**53
        (about 9.0e15). Vertices may lie anywhere, far outside the image too: time and memory
        depend on the image width and the vertex count, not on the coordinates.
    height, width : int
        The image size (h * w < 2**32).

    Returns
    -------
    The union of the polygons, rasterized exactly as pycocotools does: identical to
    ``merge(frPyObjects(polygons, height, width))`` (where pycocotools' 32-bit arithmetic holds,
    coordinates below about 4e8; beyond, the same rasterization computed without overflow).
    """
    func = "rle.from_polygons"
    h, w = _image_size(func, height, width)
    if isinstance(polygons, (list, tuple)) and polygons and all(
        isinstance(v, (numbers.Real, np.number)) for v in polygons
    ):
        polygons = [polygons]
    if not isinstance(polygons, (list, tuple)) or not polygons:
        raise ValueError(
            f"{func}: polygons must be a non-empty list of [x0, y0, x1, y1, ...] lists, got "
            f"{_short(polygons)}"
        )
    vertices = []
    for i, poly in enumerate(polygons):
        expected = "a flat list of at least 3 finite (x, y) pairs"
        if not isinstance(poly, (list, tuple, np.ndarray)):
            raise ValueError(f"{func}: polygons[{i}] must be {expected}, got {_short(poly)}")
        xy = _numbers(func, f"polygons[{i}]", poly, expected)
        if xy.ndim != 1 or xy.size < 6 or xy.size % 2:
            raise ValueError(f"{func}: polygons[{i}] must be {expected}, got {_short(poly)}")
        if not (np.abs(xy) <= MAX_COORDINATE).all():  # NaN fails this too
            if not np.isfinite(xy).all():
                raise ValueError(f"{func}: polygons[{i}] must be {expected}, got {_short(poly)}")
            j = int(np.flatnonzero(np.abs(xy) > MAX_COORDINATE)[0])
            raise ValueError(
                f"{func}: polygons[{i}] has the coordinate {float(xy[j])!r} (index {j}); "
                f"coordinates must be within +-2**53 (about 9.0e15)"
            )
        vertices.append(xy.reshape(-1, 2))
    merged = _rasterize(vertices, h, w)
    strings = _engine().compress(merged, np.array([0, merged.size], dtype=np.int64))
    return _result(strings, [(h, w)])[0]


def from_boxes(boxes: Any, height: int, width: int) -> list[dict[str, Any]]:
    """Rasterize COCO boxes into RLE dicts, as ``pycocotools.mask.frPyObjects`` does for boxes
    (each box drawn as its 4-corner polygon).

    Parameters
    ----------
    boxes : array-like (N, 4)
        ``[x, y, w, h]`` rows, finite real numbers of any magnitude.
    height, width : int
        The image size (h * w < 2**32).

    Returns
    -------
    list of N RLE dicts. Corners beyond the image are first moved to one pixel past its border,
    which leaves the rasterization unchanged (a box's edges are axis-aligned).
    """
    func = "rle.from_boxes"
    h, w = _image_size(func, height, width)
    expected = "[x, y, w, h] rows of shape (N, 4)"
    b = _numbers(func, "boxes", boxes, expected)
    if b.ndim != 2 or b.shape[1] != 4 or not np.isfinite(b).all():
        raise ValueError(f"{func}: boxes must be finite {expected}, got {_validate.describe(b)}")
    with np.errstate(over="ignore"):  # x + w past float64: infinite, then clipped as any far corner
        x0, y0 = b[:, 0], b[:, 1]
        x1, y1 = x0 + b[:, 2], y0 + b[:, 3]
    x0, x1 = (np.clip(v, -1.0, w + 1.0) for v in (x0, x1))
    y0, y1 = (np.clip(v, -1.0, h + 1.0) for v in (y0, y1))
    corners = np.stack([x0, y0, x0, y1, x1, y1, x1, y0], axis=1).reshape(-1, 4, 2)
    runs = [_rasterize([c], h, w) for c in corners]
    offsets = np.zeros(len(runs) + 1, dtype=np.int64)
    np.cumsum([r.size for r in runs], out=offsets[1:])
    counts = np.concatenate(runs) if runs else np.empty(0, dtype=np.int64)
    return _result(_engine().compress(counts, offsets), [(h, w)] * len(runs))


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


def _encoded(value: Any) -> Any:
    """Dense masks, a NumPy array (N, H, W), as the list of their RLE dicts (compressed strings,
    which the fast path takes); anything else, or masks that :func:`encode` refuses, as it is
    (the general path then explains, after what it checks first)."""
    if isinstance(value, np.ndarray) and value.ndim == 3:
        try:
            return encode(value)
        except (ValueError, TypeError):
            pass
    return value


def _crowd(func: str, iscrowd: Any, m: int) -> np.ndarray:
    """``iscrowd`` checked: one bool (or integer) per ground truth -> (m,) bool."""
    if iscrowd is None:
        return np.zeros(m, dtype=np.bool_)
    crowd = np.asarray(iscrowd)
    if crowd.ndim != 1 or crowd.shape[0] != m or (crowd.size and crowd.dtype.kind not in "biu"):
        raise ValueError(
            f"{func}: iscrowd must hold one bool per ground truth ({m}), got {_short(iscrowd)}"
        )
    return crowd.astype(np.bool_)


_WALK_PIXELS = 1 << 20  # images from this size on: compressed strings may take the runs walk


def _fast_iou(func: str, dt: list[Any], gt: list[Any], iscrowd: Any,
              zero_division: float) -> np.ndarray | None:
    """The common calls, two non-empty lists of RLE dicts whose sizes are all the same list of
    two Python ints, in one compiled call or a few: compressed counts (all bytes or all str) are
    drawn into bits straight from the strings; uncompressed counts (lists or tuples of Python
    ints), alone or mixed with strings, are read in bulk first (:func:`_bulk_runs`). None for
    anything else (sizes that differ or are not plain ints, counts of another type, a malformed
    RLE, a bad ``iscrowd``, ground truths too large for the bits): the general path then checks
    it all and explains."""
    if not dt or not gt:
        return None
    items = dt + gt
    try:
        counts = [r["counts"] for r in items]
        sizes = [r["size"] for r in items]
        first = sizes[0]
        if (type(first) is not list or len(first) != 2 or sizes.count(first) != len(sizes)
                or set(map(type, chain.from_iterable(sizes))) != {int}):
            return None  # == alone would let 64.0 or True pass for 64 or 1
    except (TypeError, KeyError, IndexError, ValueError):
        return None
    h, w = first
    kinds = set(map(type, counts))
    if not _fits(h, w) or not kinds <= {bytes, str, list, tuple}:
        return None
    try:
        crowd = _crowd(func, iscrowd, len(gt))
    except ValueError:  # raised by the general path, after what it checks first
        return None
    engine = _engine()
    if kinds == {bytes} or kinds == {str}:
        if h * w >= _WALK_PIXELS:
            # A run takes at least one character, so the lengths bound the runs of every pair
            # from above: where even that walk is less work than drawing every mask (a few
            # small masks in a large image), the general path decodes the runs and decides by
            # their exact count (see the engine's ``iou_runs``).
            chars = list(map(len, counts))
            n, m = len(dt), len(gt)
            if (n + m) * ((h * w + 63) // 64) > sum(chars[:n]) * m + sum(chars[n:]) * n:
                return None
        # Joined by a space, a character no valid string holds: the kernel splits them again
        # and refuses a string that holds one. A non-ASCII str gives bytes the decoder refuses.
        joined = b" ".join(counts) if kinds == {bytes} else " ".join(counts).encode()
        return engine.iou_strings(joined, len(dt), len(gt), h, w, crowd, zero_division)
    runs = _bulk_runs(counts, h * w)
    if runs is None:
        return None
    return engine.iou_runs(*runs, len(dt), h, w, crowd, zero_division)


def _bulk_runs(counts: list[Any], total: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(runs, offsets) of K counts, each a list or tuple of run lengths or a compressed string
    (bytes or ASCII str): RLE i's runs at runs[offsets[i]:offsets[i + 1]], int64. The lists are
    packed into one int64 array at once (``struct`` takes Python and NumPy integers and refuses
    floats, strings and values outside int64, where ``np.array(..., dtype=np.int64)`` would
    truncate 1.5 to 1), the strings decoded by one compiled call. None where a list holds
    anything else, starts with a bool (a list of bools alone is refused by the general path), or
    a string is malformed: the general path then reads each RLE and names the bad one. The runs
    themselves (negative, past h * w, a wrong total) are checked where they are drawn."""
    lists = [c for c in counts if type(c) is list or type(c) is tuple]
    if any(type(c[0]) is bool for c in lists if c):  # NumPy bools: refused by struct
        return None
    values = list(chain.from_iterable(lists))  # then unpacked: faster than from the iterator
    flat = np.empty(len(values), dtype=np.int64)
    try:
        struct.pack_into(f"{flat.size}q", flat, 0, *values)
    except (struct.error, TypeError, ValueError, OverflowError):
        return None
    k = len(counts)
    offsets = np.zeros(k + 1, dtype=np.int64)
    if len(lists) == k:
        offsets[1:] = np.fromiter(accumulate(map(len, counts)), dtype=np.int64, count=k)
        return flat, offsets
    # A mix: the strings decoded to runs by one compiled call, then every RLE's runs in order.
    try:
        strings = [c if type(c) is bytes else c.encode("ascii") for c in counts
                   if type(c) is bytes or type(c) is str]
    except UnicodeEncodeError:
        return None
    decoded, bounds, errors = _engine().decode_strings(
        strings, np.full(len(strings), total, dtype=np.int64))
    if np.count_nonzero(errors):
        return None
    bounds = bounds.tolist()
    pieces, at, j = [], 0, 0
    for c in counts:
        if type(c) is list or type(c) is tuple:
            pieces.append(flat[at : at + len(c)])
            at += len(c)
        else:
            pieces.append(decoded[bounds[j] : bounds[j + 1]])
            j += 1
    offsets[1:] = np.fromiter(accumulate(map(len, pieces)), dtype=np.int64, count=k)
    return np.concatenate(pieces), offsets


def iou(dt: Any, gt: Any, iscrowd: Sequence[Any] | None = None, *,
        zero_division: float = 0.0) -> np.ndarray:
    """IoU of every detection with every ground truth, computed on the runs (no dense masks).

    The common call, two lists of compressed RLE dicts of one size, is one compiled call: each
    string is decoded, with every check, straight into column-major bits, and each pair is
    counted by popcount over the words from the first pixel both masks may share to the last
    (in images taller than 512 rows, only the rows both bounding boxes span in each column).
    The bits of the ground truths are held at once, up to 32 MiB; those of the detections one
    at a time per thread. Lists of uncompressed counts (lists or tuples of ints), alone or
    mixed with strings, are read in bulk (one array for every list, one compiled call for the
    strings) and counted the same way, with every run check; dense masks are encoded first,
    and larger ground-truth sets are taken in chunks of 32 MiB of bits. Where drawing the
    masks' bits would cost more than walking the runs of every pair (small masks in a large
    image), or one mask alone takes more than 32 MiB of bits, the runs of each pair are walked.

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
    dt, gt = _encoded(dt), _encoded(gt)
    if type(dt) is list and type(gt) is list and type(zero_division) is float:
        result = _fast_iou(func, dt, gt, iscrowd, zero_division)
        if result is not None:
            return result
    zd = _validate.zero_division(func, zero_division)
    d = _iou_operand(func, "dt", dt)
    g = _iou_operand(func, "gt", gt)
    crowd = _crowd(func, iscrowd, len(g))
    both = np.concatenate([d.sizes, g.sizes])
    if both.shape[0] and (both != both[0]).any():
        i = int(np.flatnonzero((both != both[0]).any(axis=1))[0])
        which = f"dt[{i}]" if i < len(d) else f"gt[{i - len(d)}]"
        first = "dt[0]" if len(d) else "gt[0]"
        raise ValueError(
            f"{func}: every RLE must have the same size, got {first} of size {both[0].tolist()} "
            f"and {which} of size {both[i].tolist()}"
        )
    height, width = (int(v) for v in both[0]) if both.shape[0] else (0, 0)
    engine = _engine()
    if len(d) and len(g):  # the bits, as for strings, where a mask's bits fit
        counts = np.concatenate([d.counts[: d.offsets[-1]], g.counts[: g.offsets[-1]]])
        offsets = np.concatenate([d.offsets, g.offsets[1:] + d.offsets[-1]])
        out = engine.iou_runs(counts, offsets, len(d), height, width, crowd, zd)
        if out is not None:
            return out
    return engine.iou((d.counts, d.offsets), (g.counts, g.offsets), height, crowd, zd)
