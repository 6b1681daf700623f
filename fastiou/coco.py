"""COCO detection and instance segmentation evaluation: AP and AR identical to pycocotools.

:func:`evaluate` reads a COCO ground-truth dict (or JSON file) and a list of COCO results (or JSON
file) and returns what ``COCOeval.evaluate(); accumulate(); summarize()`` computes: the 12
summary numbers, the ``precision``, ``recall`` and ``scores`` arrays, bit for bit. The work is a
fixed number of compiled calls over concatenated arrays (no Python loop per image or per
category): the IoU blocks of every (image, category) group in one call, the greedy matching of
every group in every area range at every IoU threshold in one call, and the accumulation in one
call (``fastiou.backends.numba_cpu.coco``).

pycocotools' rules, reproduced
------------------------------
- Results are read as ``COCO.loadRes`` reads them. Whether they are boxes or masks is decided by
  the first entry: if it has a non-empty ``bbox``, every entry's area is ``w * h`` of its box (also
  for ``iou_type="segm"``), and a result without ``segmentation`` is the polygon of its box;
  otherwise every entry needs ``segmentation``, its area is the mask's area and, for
  ``iou_type="bbox"``, its box is the mask's bounding box unless it has a ``bbox``.
- Ground-truth areas are the annotations' ``area`` fields; ``iscrowd`` regions are ignored and
  absorb any number of detections; an object outside an area range is ignored in that range, and
  so is an unmatched detection outside it. Area ranges are closed on both ends.
- Detections are sorted by descending score with a stable sort within each (image, category), and
  only the first ``maxDets[-1]`` are kept; accumulation sorts all detections of a category by
  score, ties by image then rank; precision is ``tp / (tp + fp + np.spacing(1))``, made
  non-increasing from the right, and read at ``recThrs``.
- ``useCats=0`` pools the categories of ``catIds`` per image, category by category.
- A ground-truth annotation with ``id`` 0 never counts as a match (pycocotools stores matches by
  id and tests them for truth).

Differences, where pycocotools fails or is ill-defined
------------------------------------------------------
- An empty results list (pycocotools raises): the result for no detections (AP and AR 0 where a
  category has ground truth, -1 where it has none), with a warning.
- Polygon and uncompressed-RLE results are accepted (rasterized as the ground truth is), and
  dense per-image masks (see :func:`evaluate`).
- Polygons follow ``frPyObjects``: a list whose first polygon has exactly 4 numbers is a list of
  boxes ``[x, y, w, h]``, each rasterized as the polygon of its box and then merged (the route
  pycocotools takes for an array; pycocotools 2.0.11 raises TypeError for such a list, and we
  take the box meaning); a flat list of 4 numbers is one box. After the first polygon, a list
  of fewer than 3 points is empty, and an odd last number is dropped, as in pycocotools.
- ``iscrowd`` may be missing from a ground-truth annotation (then 0).
- Fewer than 3 ``maxDets``, or ``areaRngLbl`` without 'all', 'small', 'medium' or 'large':
  the summary numbers that name a missing one are -1 (pycocotools raises IndexError where the
  labels or maxDets it finds cannot be paired). ``iouThrs`` of 0 match only IoU > 0.
- Malformed input is a ValueError naming the file (or ``gt`` / ``results``), the entry and the
  field: unknown image ids, boxes that are not 4 finite numbers, missing or non-finite scores,
  malformed RLE, masks whose size is not their image's, duplicate annotation ids.
- Inputs are never modified (pycocotools adds keys to the caller's dicts).

Parts of a dataset
------------------
:func:`evaluate_images` gives the :class:`COCOState` of a set of images (the outcome of each of
their detections, O(detections)); states of disjoint image sets ``merge`` (e.g. computed on Dask
workers), and ``compute()`` then gives :func:`evaluate`'s result for all of them, bit for bit.

Everything is host-side (the Numba engine), except the mask IoU of dense CuPy masks (see
:func:`evaluate`). The library never prints: ``progress`` is a callback
``progress(stage, done, total)``, or True for a tqdm bar on stderr.
"""

from __future__ import annotations

import itertools
import json
import math
import numbers
import os
import sys
import warnings
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np

from . import _dispatch

__all__ = ["COCOEvalResult", "COCOState", "default_params", "evaluate", "evaluate_images"]

FUNC = "coco.evaluate"
IOU_TYPES = ("bbox", "segm")
BACKENDS = (None, "numba", "jax", "cupy")  # accepted; COCO dicts and files are read on the host
STAGES = ("read", "iou", "match", "accumulate")


def default_params() -> dict[str, Any]:
    """pycocotools' ``Params(iouType="bbox")`` defaults. :func:`evaluate` replaces the empty
    ``imgIds`` and ``catIds`` by all images and categories of the ground truth, as COCOeval does,
    unless they are given."""
    return {
        "iouThrs": np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True),
        "recThrs": np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True),
        "maxDets": [1, 10, 100],
        "areaRng": [[0**2, 1e5**2], [0**2, 32**2], [32**2, 96**2], [96**2, 1e5**2]],
        "areaRngLbl": ["all", "small", "medium", "large"],
        "useCats": 1,
        "imgIds": [],
        "catIds": [],
    }


# --------------------------------------------------------------------------------------------
# Reading and checking the inputs


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 100 else text[:97] + "..."


def _load(value: Any, name: str) -> tuple[Any, str]:
    """(data, label): a path is read as JSON and the label names the file."""
    if isinstance(value, (str, os.PathLike)):
        path = os.fspath(value)
        try:
            with open(path, encoding="utf-8") as f:
                return json.load(f), f"{name} file {path!r}"
        except OSError as exc:
            raise ValueError(f"{FUNC}: cannot read the {name} file {path!r}: {exc}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{FUNC}: the {name} file {path!r} is not valid JSON: {exc}") from None
    return value, name


def _is_int(v: Any) -> bool:
    return isinstance(v, (numbers.Integral, np.integer)) and not isinstance(v, (bool, np.bool_))


def _is_real(v: Any) -> bool:
    return (isinstance(v, (numbers.Real, np.number)) and not isinstance(v, (bool, np.bool_))
            and math.isfinite(v))


def _entries(data: Any, label: str) -> list[Any]:
    """A list of entries; that each is a dict is checked where a field is read in bulk fails."""
    if not isinstance(data, (list, tuple)):
        raise ValueError(f"{FUNC}: {label} must be a list of dicts, got {type(data).__name__}")
    return data if isinstance(data, list) else list(data)


def _dicts(entries: list[Any], label: str) -> None:
    for i, e in enumerate(entries):
        if not isinstance(e, dict):
            raise ValueError(f"{FUNC}: {label}[{i}] must be a dict, got {_short(e)}")


def _column(entries: list[dict], key: str, label: str, expected: str, ok: Callable[[Any], bool],
            kinds: str, default: Any = None) -> np.ndarray:
    """``entry[key]`` of every entry as an array, checked in bulk; on failure the first bad entry
    is named (a Python pass over the entries only then)."""
    if not entries:
        return np.zeros(0, dtype=np.float64 if "f" in kinds else np.int64)
    try:
        values = [e[key] for e in entries] if default is None else [e.get(key, default)
                                                                    for e in entries]
        arr = np.asarray(values)
        if arr.ndim == 1 and arr.dtype.kind in kinds and (
            arr.dtype.kind != "f" or np.isfinite(arr).all()
        ):
            return arr
    except (KeyError, ValueError, TypeError, OverflowError, AttributeError):
        pass
    _dicts(entries, label)
    for i, e in enumerate(entries):
        if key not in e and default is None:
            raise ValueError(f"{FUNC}: {label}[{i}] has no '{key}' (expected {expected})")
        v = e.get(key, default)
        if not ok(v):
            raise ValueError(f"{FUNC}: {label}[{i}] '{key}' must be {expected}, got {_short(v)}")
    raise ValueError(f"{FUNC}: {label} '{key}' must be {expected}")  # pragma: no cover


def _ints(entries: list[dict], key: str, label: str, default: Any = None) -> np.ndarray:
    arr = _column(entries, key, label, "an integer", _is_int, "iu", default)
    if arr.size and arr.dtype.kind == "u" and arr.max() > np.iinfo(np.int64).max:
        i = int(np.argmax(arr > np.iinfo(np.int64).max))
        raise ValueError(f"{FUNC}: {label}[{i}] '{key}' is past 2**63 - 1: {arr[i]}")
    return arr.astype(np.int64).reshape(len(entries))


def _reals(entries: list[dict], key: str, label: str) -> np.ndarray:
    arr = _column(entries, key, label, "a finite number", _is_real, "iuf")
    return arr.astype(np.float64).reshape(len(entries))


def _boxes(entries: list[dict], label: str, index: list[int] | None = None) -> np.ndarray:
    """(n, 4) float64 boxes; ``index`` names the entries in messages (default: 0, 1, ...)."""
    expected = "4 finite numbers [x, y, w, h]"
    try:
        arr = np.asarray([e["bbox"] for e in entries])
        if arr.shape == (len(entries), 4) and arr.dtype.kind in "iuf" and np.isfinite(arr).all():
            return arr.astype(np.float64)
        if not entries:
            return np.zeros((0, 4))
    except (KeyError, ValueError, TypeError, OverflowError):
        pass
    _dicts(entries, label)
    for i, e in enumerate(entries):
        at = i if index is None else index[i]
        if "bbox" not in e:
            raise ValueError(f"{FUNC}: {label}[{at}] has no 'bbox' (expected {expected})")
        b = e["bbox"]
        if not (isinstance(b, (list, tuple)) and len(b) == 4 and all(_is_real(v) for v in b)):
            raise ValueError(f"{FUNC}: {label}[{at}] 'bbox' must be {expected}, got {_short(b)}")
    raise ValueError(f"{FUNC}: {label} 'bbox' must be {expected}")  # pragma: no cover


def _unique_ids(ids: np.ndarray, label: str, what: str) -> None:
    order = np.argsort(ids, kind="stable")
    dup = np.flatnonzero(np.diff(ids[order]) == 0)
    if dup.size:
        i = int(order[dup[0] + 1])
        raise ValueError(f"{FUNC}: {label}[{i}] repeats the {what} id {int(ids[i])}")


class _Images(NamedTuple):
    ids: np.ndarray  # sorted unique int64
    heights: np.ndarray  # int64, aligned with ids (a repeated id: its last entry, as COCO's index)
    widths: np.ndarray


def _images(data: dict, label: str) -> _Images:
    """The images table; a missing height or width is -1 (needed only to read masks)."""
    lab = f"{label}['images']"
    entries = _entries(data.get("images", []), lab)
    ids = _ints(entries, "id", lab)
    uniq, last = np.unique(ids[::-1], return_index=True)
    last = ids.shape[0] - 1 - last
    h = _ints(entries, "height", lab, default=-1)
    w = _ints(entries, "width", lab, default=-1)
    bad = (h >= 2**32) | (w >= 2**32) | (h * np.minimum(w, 2**32) >= 2**32) | (h < -1) | (w < -1)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"{FUNC}: {lab}[{i}] has the size {int(h[i])} x {int(w[i])}; height and "
                         "width must be non-negative with height * width < 2**32")
    return _Images(uniq, h[last], w[last])


def _positions(ids: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Index of each id in the sorted ``table``, or -1."""
    if table.size == 0:
        return np.full(ids.shape, -1, dtype=np.int64)
    lo, hi = int(table[0]), int(table[-1])
    if ids.size > 64 and hi - lo < 4 * table.size + 4096:  # compact ids: a lookup table
        dense = np.full(hi - lo + 1, -1, dtype=np.int64)
        dense[table - lo] = np.arange(table.size)
        inside = (ids >= lo) & (ids <= hi)  # (a wrapped ids - lo outside is clipped, unused)
        return np.where(inside, dense[np.clip(ids - lo, 0, hi - lo)], -1)
    pos = np.minimum(np.searchsorted(table, ids), table.size - 1)
    return np.where(table[pos] == ids, pos, -1).astype(np.int64)


class _Masks(NamedTuple):
    """Masks as foreground intervals (mask i's at ``starts[lo[i]:hi[i]]``, ``ends[...]``), with
    areas and xywh boxes: what the IoU kernel reads."""

    starts: np.ndarray
    ends: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    areas: np.ndarray
    boxes: np.ndarray


def _box_polygon(b: Sequence[float]) -> list[list[float]]:
    x1, x2, y1, y2 = b[0], b[0] + b[2], b[1], b[1] + b[3]
    return [[x1, y1, x1, y2, x2, y2, x2, y1]]


def _simple_polygons(segms: list[Any], where: list[int]
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(xy (V, 2) float64, vertex offsets, owner of each polygon) when each ``segms[i]`` (i in
    ``where``) is a non-empty list of polygons, each a list of an even number (at least 6) of
    ints and floats within +-2**53: the usual file, read in a few bulk calls. None otherwise:
    the general reader then applies frPyObjects' rules or names the entry."""
    from . import rle

    objects = [segms[i] for i in where]
    if not all(type(s) is list and s and all(type(q) is list for q in s) for s in objects):
        return None
    sizes = np.fromiter(map(len, itertools.chain.from_iterable(objects)), dtype=np.int64)
    if sizes.size and ((sizes < 6).any() or (sizes % 2).any()):
        return None
    flat = list(itertools.chain.from_iterable(itertools.chain.from_iterable(objects)))
    if not set(map(type, flat)) <= {float, int}:
        return None
    try:
        xy = np.array(flat, dtype=np.float64)
    except OverflowError:
        return None
    if not (np.abs(xy) <= rle.MAX_COORDINATE).all():
        return None
    owner = np.repeat(np.arange(len(objects), dtype=np.int64), [len(s) for s in objects])
    return xy.reshape(-1, 2), _offsets(sizes // 2), owner


def _general_polygons(segms: list[Any], where: list[int], label: str
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """As :func:`_simple_polygons` for any input: pycocotools' rules, one polygon at a time, and
    a ValueError naming the first entry that breaks them."""
    from . import rle

    expected = "a list of polygons, the first a flat list of at least 3 finite (x, y) pairs"
    parts: list[np.ndarray] = []
    owner: list[int] = []
    for j, i in enumerate(where):
        polys = segms[i]
        if polys and not isinstance(polys[0], (list, tuple)):
            polys = [polys]  # one flat polygon, as rle.from_polygons takes it
        if not polys:
            raise ValueError(f"{FUNC}: {label}[{i}] 'segmentation' must be {expected}, got []")
        boxes = isinstance(polys[0], (list, tuple)) and len(polys[0]) == 4
        for k, poly in enumerate(polys):
            try:
                xy = np.asarray(poly) if isinstance(poly, (list, tuple)) else None
            except (TypeError, ValueError):
                xy = None
            # frPyObjects: the first list sets the kind (4 numbers: every list is a box
            # [x, y, w, h]; more: polygons, an odd last number dropped); later polygons of
            # fewer than 3 points are empty.
            least = 4 if boxes else (5 if k == 0 else 0)
            if (xy is None or xy.ndim != 1 or (xy.dtype.kind not in "iuf" and xy.size)
                    or xy.size < least or (boxes and xy.size != 4)
                    or not (np.abs(xy) <= rle.MAX_COORDINATE).all()):
                what = ("a list of boxes, each 4 finite numbers [x, y, w, h]" if boxes
                        else expected)
                raise ValueError(f"{FUNC}: {label}[{i}] 'segmentation' must be {what} "
                                 f"(coordinates within +-2**53), got {_short(segms[i])}")
            xy = xy.astype(np.float64)
            if boxes:
                xy = np.asarray(_box_polygon(xy)[0])
            elif xy.size < 6:  # empty, but every object keeps a part: an empty triangle
                if k + 1 < len(polys) or any(o == j for o in owner[-1:]):
                    continue
                xy = np.zeros(6)
            elif xy.size % 2:
                xy = xy[:-1]
            parts.append(xy.reshape(-1, 2))
            owner.append(j)
    xy = np.concatenate(parts) if parts else np.zeros((0, 2))
    vertex_off = _offsets(np.array([v.shape[0] for v in parts], dtype=np.int64))
    return xy, vertex_off, np.asarray(owner, dtype=np.int64)


def _polygon_runs(segms: list[Any], where: list[int], img_pos: np.ndarray, images: _Images,
                  label: str, engine: Any) -> tuple[np.ndarray, np.ndarray]:
    """Runs of the polygon segmentations ``segms[i]`` for i in ``where``, each the union of its
    polygons, rasterized as pycocotools' ``frPyObjects`` then ``merge``: one compiled call for
    every polygon, a merge for the objects of several."""
    polygons = _simple_polygons(segms, where)
    xy, vertex_off, own = (polygons if polygons is not None
                           else _general_polygons(segms, where, label))
    pos = img_pos[np.asarray(where, dtype=np.int64)][own]
    heights, widths = images.heights[pos], images.widths[pos]
    if (np.diff(vertex_off) * (widths + 1) >= 2**62).any():
        raise ValueError(f"{FUNC}: {label}: a polygon is too large to rasterize")
    counts, offsets = engine.coco.rasterize(xy, vertex_off, heights, widths)
    per_object = np.bincount(own, minlength=len(where))
    if (per_object <= 1).all():
        return counts, offsets
    runs, first = [], _offsets(per_object)
    for j in range(len(where)):  # objects of several polygons: their union
        lo, hi = first[j], first[j + 1]
        if hi - lo == 1:
            runs.append(counts[offsets[lo]:offsets[hi]])
        else:
            sub = offsets[lo:hi + 1] - offsets[lo]
            runs.append(engine.rle.merge(counts[offsets[lo]:offsets[hi]], sub, False))
    return (np.concatenate(runs) if runs else np.empty(0, np.int64),
            _offsets(np.array([r.shape[0] for r in runs], dtype=np.int64)))


def _compressed_runs(rles: list[dict], where: list[int], label: str, engine: Any
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(counts, offsets, sizes) of RLE dicts with string counts, decoded in one call; None if
    some entry is not that simple (the general reader then checks and explains)."""
    from . import rle

    try:
        strings = [rles[i]["counts"] for i in where]
        strings = [c.encode("ascii") if type(c) is str else c for c in strings]
        sizes = np.asarray([rles[i]["size"] for i in where])
        if (not all(type(c) is bytes for c in strings) or sizes.dtype.kind not in "iu"
                or sizes.shape != (len(where), 2) or (sizes < 0).any()
                or (sizes >= rle.MAX_PIXELS).any()
                or (sizes[:, 0] * sizes[:, 1] >= rle.MAX_PIXELS).any()):
            return None
    except (KeyError, TypeError, ValueError, UnicodeEncodeError):
        return None
    sizes = sizes.astype(np.int64)
    counts, offsets, errors = engine.rle.decode_strings(strings, sizes[:, 0] * sizes[:, 1])
    if errors.any():
        j = int(np.argmax(errors != 0))
        raise ValueError(f"{FUNC}: {label}[{where[j]}] 'segmentation' "
                         f"{rle._ERRORS[int(errors[j])]}")
    return counts, offsets, sizes


def _masks(segms: list[Any], img_pos: np.ndarray, images: _Images, label: str) -> _Masks:
    """Read segmentations (polygons, uncompressed or compressed RLE) of images ``img_pos``."""
    from . import rle

    engine = _dispatch.load("numba")
    n = len(segms)
    sized = (images.heights[img_pos] >= 0) & (images.widths[img_pos] >= 0)
    if not sized.all():
        i = int(np.argmin(sized))
        raise ValueError(f"{FUNC}: {label}[{i}] has a segmentation, but its image (id "
                         f"{int(images.ids[img_pos[i]])}) has no 'height' and 'width'")
    poly = [i for i, s in enumerate(segms) if isinstance(s, (list, tuple))]
    other = [i for i, s in enumerate(segms) if not isinstance(s, (list, tuple))]
    for i in other:
        if not isinstance(segms[i], dict):
            raise ValueError(f"{FUNC}: {label}[{i}] 'segmentation' must be polygons or an RLE "
                             f"dict, got {_short(segms[i])}")
    # Three sources, concatenated: polygons, compressed RLE, and the rest (uncompressed).
    sources = [(poly, *_polygon_runs(segms, poly, img_pos, images, label, engine))]
    fast = _compressed_runs(segms, other, label, engine)
    if fast is not None:
        sources.append((other, fast[0], fast[1]))
        rle_sizes = fast[2]
    elif other:
        items = [segms[i] for i in other]
        try:
            runs = rle._parse(FUNC, label, items)
        except (ValueError, TypeError):
            for j, item in enumerate(items):  # name the entry by its index in the whole list
                try:
                    rle._parse(FUNC, "rle", [item])
                except (ValueError, TypeError) as exc:
                    reason = str(exc).split("rle[0] ", 1)[-1]
                    raise ValueError(f"{FUNC}: {label}[{other[j]}] 'segmentation' {reason}"
                                     ) from None
            raise
        sources.append((other, runs.counts, runs.offsets))
        rle_sizes = runs.sizes
    want = np.stack([images.heights[img_pos], images.widths[img_pos]], axis=1).reshape(-1, 2)
    if other:
        bad = (rle_sizes != want[other]).any(axis=1)
        if bad.any():
            j = int(np.argmax(bad))
            raise ValueError(f"{FUNC}: {label}[{other[j]}] 'segmentation' has the size "
                             f"{rle_sizes[j].tolist()}, its image has {want[other[j]].tolist()}")
    entry = np.concatenate([np.asarray(w, dtype=np.int64) for w, _, _ in sources])
    counts = np.concatenate([c for _, c, _ in sources])
    offsets = _offsets(np.concatenate([np.diff(o) for _, _, o in sources]))
    where = np.empty(n, dtype=np.int64)  # entry -> mask in the concatenation
    where[entry] = np.arange(n)
    starts, ends, bounds = engine.rle.intervals(counts, offsets)
    areas = engine.rle.areas(counts, offsets)
    boxes = engine.rle.bboxes(counts, offsets, np.ascontiguousarray(want[entry, 0]))
    return _Masks(starts, ends, bounds[:-1][where], bounds[1:][where], areas[where],
                  np.take(boxes, where, axis=0))


class _Objects(NamedTuple):
    """Ground truth or detections as columns, in file order."""

    image: np.ndarray  # position in the images table
    category: np.ndarray  # category id
    area: np.ndarray  # float64
    boxes: np.ndarray | None  # (n, 4) xywh float64 (bbox) or None
    masks: _Masks | None  # (segm) or None
    crowd: np.ndarray  # bool
    ids: np.ndarray  # annotation ids (gt); 1..n (detections)
    scores: np.ndarray  # float64 (detections)


def _image_positions(ids: np.ndarray, images: _Images, label: str) -> np.ndarray:
    pos = _positions(ids, images.ids)
    if (pos < 0).any():
        i = int(np.argmax(pos < 0))
        raise ValueError(f"{FUNC}: {label}[{i}] names the image id {int(ids[i])}, which is not "
                         "in the ground truth's images")
    return pos


def _read_gt(data: Any, label: str, iou_type: str
             ) -> tuple[_Objects, _Images, dict[int, str], np.ndarray]:
    if not isinstance(data, dict):
        raise ValueError(f"{FUNC}: {label} must be a COCO dict with 'images' and 'annotations', "
                         f"got {type(data).__name__}")
    images = _images(data, label)
    lab = f"{label}['annotations']"
    anns = _entries(data.get("annotations", []), lab)
    cats = _entries(data.get("categories", []), f"{label}['categories']")
    cat_ids = _ints(cats, "id", f"{label}['categories']")
    names = {int(c): str(e.get("name", c)) for c, e in zip(cat_ids, cats)}
    ids = _ints(anns, "id", lab)
    _unique_ids(ids, lab, "annotation")
    image = _image_positions(_ints(anns, "image_id", lab), images, lab)
    crowd = _column(anns, "iscrowd", lab, "0 or 1", lambda v: _is_int(v) or isinstance(v, bool),
                    "biu", default=0).astype(bool).reshape(len(anns))
    area = _reals(anns, "area", lab)
    boxes = masks = None
    if iou_type == "bbox":
        boxes = _boxes(anns, lab)
    else:
        masks = _masks(_segmentations(anns, lab), image, images, lab)
    return (_Objects(image, _ints(anns, "category_id", lab), area, boxes, masks, crowd, ids,
                     np.zeros(0)), images, names, cat_ids)


def _segmentations(entries: list[dict], label: str) -> list[Any]:
    _dicts(entries, label)
    for i, e in enumerate(entries):
        if "segmentation" not in e:
            raise ValueError(f"{FUNC}: {label}[{i}] has no 'segmentation' (expected polygons or "
                             "an RLE dict)")
    return [e["segmentation"] for e in entries]


def _is_dense(data: Any) -> bool:
    """Dense masks from a model: ``{image_id: {"masks", "scores", "labels"}}`` or a list of
    ``{"image_id", "masks", "scores", "labels"}``."""
    if isinstance(data, dict):
        return bool(data) and all(_is_int(k) for k in data)
    return (isinstance(data, (list, tuple)) and len(data) > 0 and isinstance(data[0], dict)
            and "masks" in data[0])


def _host(value: Any) -> np.ndarray:
    """A NumPy, CuPy or JAX array (or anything np.asarray takes) on the host."""
    if _is_cupy(value):
        return value.get()  # an explicit device -> host copy
    return np.asarray(value)


def _is_cupy(value: Any) -> bool:
    return type(value).__module__.split(".")[0] == "cupy"


class _Dense(NamedTuple):
    """One image's dense results, checked: ``masks`` as given (N, H, W), scores and labels on
    the host; ``name`` names the entry in messages."""

    image_id: int
    masks: Any
    scores: np.ndarray
    labels: np.ndarray
    name: str


def _dense_entries(data: Any, label: str) -> list[_Dense]:
    """The per-image entries of dense results, in image order, checked (the masks stay where
    they are)."""
    if isinstance(data, dict):
        items = [(k, v, f"{label}[{k!r}]") for k, v in data.items()]
    else:
        items = []
        for i, v in enumerate(data):
            if not isinstance(v, dict) or "image_id" not in v:
                raise ValueError(f"{FUNC}: {label}[{i}] must be a dict with 'image_id', 'masks', "
                                 f"'scores' and 'labels', got {_short(v)}")
            items.append((v["image_id"], v, f"{label}[{i}]"))
    out: list[_Dense] = []
    for image_id, entry, name in items:
        if not _is_int(image_id) or not -2**63 <= int(image_id) < 2**63:
            raise ValueError(f"{FUNC}: {name} 'image_id' must be a 64-bit integer, got "
                             f"{_short(image_id)}")
        if not isinstance(entry, dict) or not {"masks", "scores", "labels"} <= set(entry):
            raise ValueError(f"{FUNC}: {name} must be a dict with 'masks' (N, H, W), 'scores' "
                             f"(N,) and 'labels' (N,), got {_short(entry)}")
        masks = entry["masks"]
        if not (hasattr(masks, "shape") and hasattr(masks, "dtype")):
            masks = np.asarray(masks)
        scores, labels = (_host(entry[k]) for k in ("scores", "labels"))
        if len(masks.shape) != 3 or np.dtype(masks.dtype).kind not in "biu":
            raise ValueError(f"{FUNC}: {name} 'masks' must be a bool or integer (N, H, W) array, "
                             f"got shape {tuple(masks.shape)} and dtype {masks.dtype}")
        n = masks.shape[0]
        if scores.shape != (n,) or scores.dtype.kind not in "iuf" or not np.isfinite(
                scores).all():
            raise ValueError(f"{FUNC}: {name} 'scores' must be {n} finite numbers (one per "
                             f"mask), got shape {scores.shape} and dtype {scores.dtype}")
        if labels.shape != (n,) or labels.dtype.kind not in "iu" or (
                labels.dtype == np.uint64 and (labels >= 2**63).any()):
            raise ValueError(f"{FUNC}: {name} 'labels' must be {n} integer category ids (one "
                             f"per mask), got shape {labels.shape} and dtype {labels.dtype}")
        out.append(_Dense(int(image_id), masks, scores, labels, name))
    return out


def _dense_on_device(entries: list[_Dense], backend: str | None) -> bool:
    """Whether the mask IoU of dense results runs on the CUDA engine: with ``backend="cupy"``,
    or with CuPy masks and no backend named (then every entry's masks must be CuPy arrays)."""
    if backend == "cupy":
        return True
    if backend is not None:
        return False
    kinds = {_is_cupy(e.masks) for e in entries}
    if len(kinds) > 1:
        types = sorted({f"{type(e.masks).__module__}.{type(e.masks).__name__}" for e in entries})
        raise TypeError(f"{FUNC}: the dense results mix mask array types {types}; give every "
                        "image's masks as CuPy arrays, or none")
    return kinds == {True}


def _dense_results(entries: list[_Dense]) -> list[dict]:
    """COCO result dicts (compressed RLE, ``fastiou.rle.encode``) of dense results on the host, in
    image order then mask order."""
    from . import rle

    out: list[dict] = []
    for e in entries:
        if e.masks.shape[0] == 0:
            continue
        for rle_dict, score, cat in zip(rle.encode(_host(e.masks)), e.scores.tolist(),
                                        e.labels.tolist()):
            out.append({"image_id": e.image_id, "category_id": int(cat),
                        "score": float(score), "segmentation": rle_dict})
    return out


class _DeviceMasks(NamedTuple):
    """Masks packed on the CUDA engine's device: mask i starts at ``words[at[i]]`` (its image's
    H rows of ceil(W / 64) words); ``areas`` on the host."""

    words: Any  # (L,) uint64, on the device
    at: np.ndarray  # int64
    areas: np.ndarray  # int64


DEVICE_BUDGET = 2**26  # bytes of bool temporaries when packing strided masks on the device


def _device_results(entries: list[_Dense], label: str, images: _Images,
                    iou_type: str) -> _Objects:
    """Dense results as detections whose masks are packed (and counted) on the CUDA engine's
    device; only the areas (and, for ``bbox``, the boxes) come back to the host."""
    from .backends import cupy_cuda

    xp = cupy_cuda.runtime().xp
    image, words, at, areas, boxes = [], [], [], [], []
    base = 0
    for e in entries:
        pos = int(_positions(np.array([e.image_id], dtype=np.int64), images.ids)[0])
        if pos < 0:
            raise ValueError(f"{FUNC}: {e.name} names the image id {e.image_id}, which is not "
                             "in the ground truth's images")
        n, height, width = (int(v) for v in e.masks.shape)
        want = (int(images.heights[pos]), int(images.widths[pos]))
        if want[0] < 0 or want[1] < 0:
            raise ValueError(f"{FUNC}: {e.name} has masks, but its image (id {e.image_id}) has "
                             "no 'height' and 'width'")
        if (height, width) != want:
            raise ValueError(f"{FUNC}: {e.name} 'masks' have the size {[height, width]}, its "
                             f"image (id {e.image_id}) has {list(want)}")
        if n == 0:
            continue
        w, a = cupy_cuda.pack_masks(xp.asarray(e.masks), rule="nonzero", cut=None,
                                    budget=DEVICE_BUDGET)
        size = height * w.shape[-1]  # words per mask (h * w < 2**32: checked with the images)
        image.append(np.full(n, pos, dtype=np.int64))
        words.append(w.reshape(-1))
        at.append(base + size * np.arange(n, dtype=np.int64))
        areas.append(a)
        if iou_type == "bbox":
            boxes.append(cupy_cuda.mask_boxes(w, height=height, width=width))
        base += n * size
    if not image:
        return _read_results([], label, images, iou_type)
    area = _host(xp.concatenate(areas)).astype(np.int64)
    xywh = None
    if iou_type == "bbox":
        xyxy = _host(xp.concatenate(boxes)).astype(np.float64)
        xywh = np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], axis=1)
    n = area.shape[0]
    masks = _DeviceMasks(xp.concatenate(words), np.concatenate(at), area)
    return _Objects(np.concatenate(image), np.concatenate([e.labels for e in entries]).astype(
                        np.int64), area.astype(np.float64), xywh,
                    masks if iou_type == "segm" else None, np.zeros(n, dtype=bool),
                    np.arange(1, n + 1, dtype=np.int64),
                    np.concatenate([e.scores for e in entries]).astype(np.float64))


def _dense_gt(m: _Masks, index: np.ndarray, height: int, width: int) -> np.ndarray:
    """Masks ``index`` of ``m`` (one image's) as dense (n, H, W) bool, from their intervals of
    column-major pixel indices (checked against the image's size when read)."""
    n = index.shape[0]
    lo, hi = m.lo[index], m.hi[index]
    lens = hi - lo
    owner = np.repeat(np.arange(n), lens)
    k = np.repeat(lo - _offsets(lens)[:-1], lens) + np.arange(int(lens.sum()))
    edges = np.zeros((n, height * width + 1), dtype=np.int8)
    np.add.at(edges, (owner, m.starts[k]), 1)
    np.add.at(edges, (owner, m.ends[k]), -1)
    dense = np.cumsum(edges[:, :-1], axis=1, dtype=np.int8) != 0
    return np.ascontiguousarray(dense.reshape(n, width, height).transpose(0, 2, 1))


def _device_blocks(d: _DeviceMasks, g: _Objects, gi: np.ndarray, di: np.ndarray,
                   crowd: np.ndarray, heights: np.ndarray, widths: np.ndarray,
                   g_off: np.ndarray, d_off: np.ndarray, iou_off: np.ndarray) -> np.ndarray:
    """The IoU blocks of :func:`_state` (rows: ground truth, columns: detections) when the
    detections are on the device: the ground truth of each image that has detections is
    decoded on the host and packed on the device, every block's exact intersection counts come
    from one launch, and the IoU is their float64 ratio, as pycocotools' ``rleIou``."""
    from .backends import cupy_cuda

    xp = cupy_cuda.runtime().xp
    gcu, dcu = np.diff(g_off), np.diff(d_off)
    nw = heights * ((widths + 63) // 64)  # words per mask of each group's image
    # Ground truth that meets a detection, by image: decoded, uploaded and packed per image.
    g_img = g.image[gi]
    needed = np.flatnonzero(np.repeat(dcu > 0, gcu))
    at = np.zeros(gi.shape[0], dtype=np.int64)
    words, base = [], 0
    order = needed[np.argsort(g_img[needed], kind="stable")]
    cuts = np.flatnonzero(np.diff(g_img[order])) + 1
    group_of = np.repeat(np.arange(gcu.shape[0]), gcu)
    for rows in np.split(order, cuts) if order.size else []:
        b = group_of[rows[0]]
        h, w = int(heights[b]), int(widths[b])
        dense = xp.asarray(_dense_gt(g.masks, gi[rows], h, w))
        packed, _ = cupy_cuda.pack_masks(dense, rule="nonzero", cut=None, budget=DEVICE_BUDGET)
        at[rows] = base + nw[b] * np.arange(rows.shape[0], dtype=np.int64)
        words.append(packed.reshape(-1))
        base += rows.shape[0] * int(nw[b])
    w1 = xp.concatenate(words) if words else xp.zeros(0, dtype=np.uint64)
    start = np.append(iou_off, iou_off[-1] + gcu[-1] * dcu[-1]) if iou_off.size else np.zeros(
        1, dtype=np.int64)
    inter = _host(cupy_cuda.masks.segment_counts(w1, at, d.words, d.at[di], nw, g_off, d_off,
                                                 start))
    # Each pair's (object, detection), in the blocks' order.
    sizes = gcu * dcu
    grp = np.repeat(np.arange(sizes.shape[0]), sizes)
    r = np.arange(inter.shape[0], dtype=np.int64) - start[:-1][grp]
    j = g_off[:-1][grp] + r // np.maximum(dcu, 1)[grp]
    q = d_off[:-1][grp] + r % np.maximum(dcu, 1)[grp]
    da, ga = d.areas[di][q], g.masks.areas[gi][j]
    union = np.where(crowd[j], da, da + ga - inter)
    values = np.zeros(inter.shape[0], dtype=np.float64)
    np.divide(inter, union, out=values, where=inter > 0)
    return values


def _read_results(data: Any, label: str, images: _Images, iou_type: str) -> _Objects:
    anns = _entries(data, label)
    n = len(anns)
    image = _image_positions(_ints(anns, "image_id", label), images, label)
    category = _ints(anns, "category_id", label)
    scores = _reals(anns, "score", label)
    boxes = masks = None
    if n and "bbox" in anns[0] and anns[0]["bbox"] != []:  # loadRes: the boxes route
        boxes = _boxes(anns, label)
        area = boxes[:, 2] * boxes[:, 3]
        if iou_type == "segm":
            segms = [e["segmentation"] if "segmentation" in e else _box_polygon(e["bbox"])
                     for e in anns]
            masks = _masks(segms, image, images, label)
    elif n:  # the masks route: area of the mask, box from the mask unless given
        masks = _masks(_segmentations(anns, label), image, images, label)
        area = masks.areas.astype(np.float64)
        if iou_type == "bbox":
            boxes = masks.boxes.copy()
            given = [i for i, e in enumerate(anns) if "bbox" in e]
            if given:
                boxes[given] = _boxes([anns[i] for i in given], label, given)
    else:
        area = np.zeros(0)
        boxes = np.zeros((0, 4))
        masks = _masks([], image, images, label) if iou_type == "segm" else None
    if iou_type == "segm":
        boxes = None
    return _Objects(image, category, area, boxes, masks, np.zeros(n, dtype=bool),
                    np.arange(1, n + 1, dtype=np.int64), scores)


class _Params(NamedTuple):
    iou_thrs: np.ndarray
    rec_thrs: np.ndarray
    max_dets: list[int]
    area_rng: np.ndarray  # (A, 2) float64
    area_lbl: list[str]
    use_cats: bool
    img_ids: np.ndarray  # sorted unique int64
    cat_ids: np.ndarray  # int64: sorted unique (useCats), else in the given order, first kept


def _vector(params: dict, key: str) -> np.ndarray:
    try:
        a = np.asarray(params[key], dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{FUNC}: params['{key}'] must be a 1-D sequence of numbers, got "
                         f"{_short(params[key])}") from None
    if a.ndim != 1 or not np.isfinite(a).all():
        raise ValueError(f"{FUNC}: params['{key}'] must be a 1-D sequence of finite numbers, got "
                         f"{_short(params[key])}")
    return a


def _id_list(params: dict, key: str) -> np.ndarray:
    v = params[key]
    if isinstance(v, np.ndarray) and v.dtype.kind in "iu" and v.ndim == 1:
        return v.astype(np.int64)
    if not isinstance(v, (list, tuple, np.ndarray)) or not all(_is_int(x) for x in v):
        raise ValueError(f"{FUNC}: params['{key}'] must be a list of integer ids, got {_short(v)}")
    return np.asarray(list(v), dtype=np.int64).reshape(-1)


def _read_params(params: dict | None, images: _Images, cat_ids: np.ndarray) -> _Params:
    p = default_params()
    p["imgIds"], p["catIds"] = images.ids, np.unique(cat_ids)  # COCOeval's defaults
    if params is not None:
        if not isinstance(params, dict):
            raise TypeError(f"{FUNC}: params must be a dict of pycocotools Params names, got "
                            f"{type(params).__name__}")
        unknown = sorted(set(params) - set(p))
        if unknown:
            raise ValueError(f"{FUNC}: params has unknown names {unknown}; expected some of "
                             f"{sorted(p)}")
        p.update(params)
    iou = _vector(p, "iouThrs")
    if iou.size == 0 or (iou < 0).any() or (iou > 1).any():
        raise ValueError(f"{FUNC}: params['iouThrs'] must hold thresholds in [0, 1], got "
                         f"{_short(p['iouThrs'])}")
    rec = _vector(p, "recThrs")
    md = p["maxDets"]
    if (not isinstance(md, (list, tuple, np.ndarray)) or len(md) == 0
            or not all(_is_int(m) and m >= 0 for m in md)):
        raise ValueError(f"{FUNC}: params['maxDets'] must be a non-empty list of non-negative "
                         f"integers, got {_short(md)}")
    try:
        rng = np.asarray(p["areaRng"], dtype=np.float64).reshape(-1, 2)
        ok = np.ndim(p["areaRng"]) == 2 and not np.isnan(rng).any()
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"{FUNC}: params['areaRng'] must be a list of [min, max] pairs, got "
                         f"{_short(p['areaRng'])}")
    lbl = [str(v) for v in p["areaRngLbl"]]
    if len(lbl) != rng.shape[0]:
        raise ValueError(f"{FUNC}: params['areaRngLbl'] must have one label per area range "
                         f"({rng.shape[0]}), got {_short(p['areaRngLbl'])}")
    use = p["useCats"]
    if not (_is_int(use) or isinstance(use, bool)) or int(use) not in (0, 1):
        raise ValueError(f"{FUNC}: params['useCats'] must be 0 or 1, got {_short(use)}")
    imgs = np.unique(_id_list(p, "imgIds"))
    cats = _id_list(p, "catIds")
    if use:
        cats = np.unique(cats)
    else:  # pooled in the given order; a repeated id counts once
        cats = cats[np.sort(np.unique(cats, return_index=True)[1])]
    return _Params(iou, rec, sorted(int(m) for m in md), rng, lbl, bool(use), imgs, cats)


# --------------------------------------------------------------------------------------------
# The result


class _Pairs(NamedTuple):
    """What :meth:`COCOEvalResult.matches` needs (area range 0, every threshold)."""

    values: np.ndarray  # the IoU blocks
    iou_off: np.ndarray
    g_off: np.ndarray
    d_off: np.ndarray
    d_counts: np.ndarray  # detections per group
    gt: np.ndarray  # (N, T) matched object (position in group order) or -1
    ignored: np.ndarray  # (N, T) matched a crowd region (or an object outside area range 0)
    gt_index: np.ndarray  # group order -> ground-truth entry
    gt_ids: np.ndarray  # annotation ids by entry
    image_id: np.ndarray  # (N,) by detection
    category_id: np.ndarray
    result_index: np.ndarray
    score: np.ndarray
    gt_crowd: np.ndarray  # (G,) bool, group order
    gt_image: np.ndarray  # (G,) image id, group order
    gt_image_pos: np.ndarray  # (G,) position in imgIds, group order
    image_pos: np.ndarray  # (N,) position in imgIds, by detection


class COCOState:
    """The outcome of every detection of a set of images, before accumulation.

    ``merge`` states of disjoint image sets, then ``compute()``: the same
    :class:`COCOEvalResult` as one :func:`evaluate` over all their images, bit for bit
    (accumulation sorts all detections of a category by score, then image id, then rank, however
    they were split). Picklable.

    Attributes (N detections kept, in accumulation order)
    ------------------------------------------------------
    category (N,) int64: position in ``catIds``; image (N,) int64: image id; rank (N,) int64:
    position in its (image, category) list; score (N,) float64; state (N, A, T) uint8: 0 false
    positive, 1 true positive, 2 ignored; npig (K, A) int64: the objects that count.
    """

    def __init__(self, *, params: _Params, iou_type: str, names: dict[int, str],
                 category: np.ndarray, image: np.ndarray, rank: np.ndarray, score: np.ndarray,
                 state: np.ndarray, npig: np.ndarray, pairs: _Pairs | None) -> None:
        self.params, self.iou_type, self.names = params, iou_type, names
        self.category, self.image, self.rank, self.score = category, image, rank, score
        self.state, self.npig, self.pairs = state, npig, pairs

    def __repr__(self) -> str:
        return (f"COCOState(iou_type={self.iou_type!r}, images={self.params.img_ids.shape[0]}, "
                f"detections={self.score.shape[0]})")

    def merge(self, other: COCOState) -> COCOState:
        """The state of both image sets (which must be disjoint, with the same parameters)."""
        a, b = self.params, other.params
        if not isinstance(other, COCOState):
            raise TypeError(f"COCOState.merge: other must be a COCOState, got "
                            f"{type(other).__name__}")
        same = (self.iou_type == other.iou_type and a.use_cats == b.use_cats
                and a.max_dets == b.max_dets and a.area_lbl == b.area_lbl
                and all(np.array_equal(x, y) for x, y in (
                    (a.iou_thrs, b.iou_thrs), (a.rec_thrs, b.rec_thrs),
                    (a.area_rng, b.area_rng), (a.cat_ids, b.cat_ids))))
        if not same:
            raise ValueError("COCOState.merge: the states were computed with different iou_type "
                             "or parameters (other than imgIds)")
        both = np.intersect1d(a.img_ids, b.img_ids)
        if both.size:
            raise ValueError(f"COCOState.merge: the image sets overlap (image ids "
                             f"{both[:5].tolist()}); each image must be in one part only")
        category = np.concatenate([self.category, other.category])
        image = np.concatenate([self.image, other.image])
        rank = np.concatenate([self.rank, other.rank])
        score = np.concatenate([self.score, other.score])
        order = np.lexsort((rank, image, -score, category))
        state = np.concatenate([self.state, other.state])[order]
        params = a._replace(img_ids=np.union1d(a.img_ids, b.img_ids))
        return COCOState(params=params, iou_type=self.iou_type, names=self.names,
                         category=category[order], image=image[order], rank=rank[order],
                         score=score[order], state=np.ascontiguousarray(state),
                         npig=self.npig + other.npig, pairs=None)

    def compute(self, step: Callable[[str], None] | None = None) -> COCOEvalResult:
        """COCOeval.accumulate and summarize: the :class:`COCOEvalResult`."""
        kernels = _dispatch.load("numba").coco
        p = self.params
        seg = _offsets(np.bincount(self.category, minlength=self.npig.shape[0]))
        precision, recall, scores = kernels.accumulate(
            seg, self.rank, self.score, self.state, self.npig,
            np.asarray(p.max_dets, dtype=np.int64), p.rec_thrs)
        stats = _summarize(p, precision, recall)
        if step is not None:
            step("accumulate")
        return COCOEvalResult(stats=stats, precision=precision, recall=recall, scores=scores,
                              params=p, iou_type=self.iou_type, names=self.names,
                              pairs=self.pairs)


class COCOEvalResult:
    """What ``COCOeval.evaluate(); accumulate(); summarize()`` computes, as arrays.

    Attributes
    ----------
    stats : ndarray (12,) float64
        ``COCOeval.stats``: AP @[.5:.95], AP50, AP75, AP small / medium / large, AR @1, @10, @100,
        AR small / medium / large (-1 where undefined).
    precision : ndarray (T, R, K, A, M) float64
        ``eval['precision']``: IoU thresholds x recall thresholds x categories x area ranges x
        maxDets; -1 where a category has no ground truth (that is not ignored).
    recall : ndarray (T, K, A, M) float64
    scores : ndarray (T, R, K, A, M) float64
        The score at which each precision value is reached.
    category_ids : ndarray (K,) int64
        The categories of axis K (``[-1]`` with ``useCats=0``).
    per_category_ap : dict[int, float]
        AP @[.5:.95] of each category (area 'all', largest maxDets), -1 where undefined.
    params : dict
        The parameters used, by pycocotools' names.
    object_report : fastiou.evaluation.EvaluationReport or None
        The per-object IoU report of :func:`fastiou.evaluate` at IoU 0.5, read from this
        evaluation's own matching at the threshold 0.5 (area range 0, 'all' by default; the
        largest maxDets): each non-crowd ground-truth object of the evaluated images and
        categories has the IoU of its matched result (0 if missed); ``mean_iou`` over all of
        them, its ``grade`` ('excellent' > 0.95, 'good' > 0.7, else 'poor'; 'undefined', with a
        warning, without objects) and ``counts`` per grade. Results matched to crowd regions
        are ignored (not counted as predictions). ``per_object`` holds ``image`` (image id),
        ``gt_id`` (annotation id), ``pred_index`` (position in the results list, -1 if missed),
        ``iou`` and ``grade``, ordered by image id then file order; ``per_image['image']`` holds
        image ids. None when 0.5 is not one of ``iouThrs``, or for merged states.
    mean_iou, grade : float, str
        ``object_report.mean_iou`` and ``.grade`` (NaN and 'undefined' without a report).
    """

    def __init__(self, *, stats: np.ndarray, precision: np.ndarray, recall: np.ndarray,
                 scores: np.ndarray, params: _Params, iou_type: str, names: dict[int, str],
                 pairs: _Pairs | None) -> None:
        self.stats = stats
        self.precision = precision
        self.recall = recall
        self.scores = scores
        self.iou_type = iou_type
        self.category_ids = params.cat_ids.copy() if params.use_cats else np.array([-1])
        self._names = names
        self._pairs = pairs
        self._p = params
        self.params = {
            "iouThrs": params.iou_thrs.tolist(), "recThrs": params.rec_thrs.tolist(),
            "maxDets": list(params.max_dets), "areaRng": params.area_rng.tolist(),
            "areaRngLbl": list(params.area_lbl), "useCats": int(params.use_cats),
            "imgIds": params.img_ids.tolist(), "catIds": params.cat_ids.tolist(),
        }
        a = params.area_lbl.index("all") if "all" in params.area_lbl else 0
        self.per_category_ap = {}
        for k, c in enumerate(self.category_ids.tolist()):
            s = precision[:, :, k, a, -1] if precision.shape[3] else np.zeros(0)
            self.per_category_ap[c] = float(np.mean(s[s > -1])) if (s > -1).any() else -1.0
        self.object_report = _object_report(pairs, params)
        r = self.object_report
        self.mean_iou = r.mean_iou if r is not None else math.nan
        self.grade = r.grade if r is not None else "undefined"

    def matches(self, iou_threshold: float | None = None) -> dict[str, np.ndarray]:
        """The matched (ground truth, result) pairs at one IoU threshold (default: the first of
        ``iouThrs``), area range 0, largest maxDets, crowd regions left out.

        Returns
        -------
        dict of (n,) arrays: ``image_id``, ``category_id``, ``gt_id`` (annotation id),
        ``result_index`` (position in the results list), ``score``, ``iou``.
        """
        if self._pairs is None:
            raise ValueError("COCOEvalResult.matches: the matched pairs are kept by a single "
                             "evaluation, not by merged states")
        thr = self._p.iou_thrs
        t = 0 if iou_threshold is None else np.flatnonzero(thr == iou_threshold)
        if not isinstance(t, int):
            if t.size == 0:
                raise ValueError(f"COCOEvalResult.matches: iou_threshold must be one of "
                                 f"{thr.tolist()}, got {iou_threshold!r}")
            t = int(t[0])
        q = self._pairs
        keep = np.flatnonzero((q.gt[:, t] >= 0) & ~q.ignored[:, t])
        group = np.repeat(np.arange(q.d_counts.shape[0]), q.d_counts)[keep]
        gpos = q.gt[keep, t]
        at = (q.iou_off[group] + (gpos - q.g_off[group]) * q.d_counts[group]
              + keep - q.d_off[group])
        return {"image_id": q.image_id[keep], "category_id": q.category_id[keep],
                "gt_id": q.gt_ids[q.gt_index[gpos]], "result_index": q.result_index[keep],
                "score": q.score[keep], "iou": q.values[at]}

    def _summary_lines(self) -> list[str]:
        p = self._p
        lines = []
        for ap, thr, area, md, value in _summary_rows(p, self.stats):
            title = "Average Precision" if ap else "Average Recall"
            kind = "(AP)" if ap else "(AR)"
            iou = (f"{p.iou_thrs[0]:0.2f}:{p.iou_thrs[-1]:0.2f}" if thr is None else f"{thr:0.2f}")
            mds = f"{md:>3d}" if md is not None else "  -"
            lines.append(f" {title:<18} {kind} @[ IoU={iou:<9} | area={area:>6s} | maxDets={mds} ]"
                         f" = {value:0.3f}")
        return lines

    def _report_line(self) -> str | None:
        r = self.object_report
        if r is None:
            return None
        md = self._p.max_dets[-1]
        mean = "n/a" if math.isnan(r.mean_iou) else f"{r.mean_iou:0.3f}"
        c = r.counts
        return (f" {'Mean IoU per object':<23} @[ IoU=0.50      | area={self._p.area_lbl[0]:>6s} | "
                f"maxDets={md:>3d} ] = {mean} {r.grade} (excellent {c['excellent']}, good "
                f"{c['good']}, poor {c['poor']}, missed {c['missed']})")

    def table(self) -> str:
        """The 12 lines of ``COCOeval.summarize()``, a line of the per-object IoU report (mean
        IoU at 0.5 and its grade, when there is one), then AP @[.5:.95] per category."""
        lines = self._summary_lines()
        if self._report_line() is not None:
            lines.append(self._report_line())
        if self._p.use_cats and self.per_category_ap:
            width = max(8, *(len(self._names.get(c, str(c))) for c in self.per_category_ap))
            lines += ["", f" {'category':<{width}}  {'id':>6}  AP"]
            for c, v in self.per_category_ap.items():
                lines.append(f" {self._names.get(c, str(c)):<{width}}  {c:>6}  {v:0.3f}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the stats by name, per-category AP, the parameters."""
        names = ["AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large", "AR_1", "AR_10",
                 "AR_100", "AR_small", "AR_medium", "AR_large"]
        return {
            "iou_type": self.iou_type,
            "stats": dict(zip(names, (float(v) for v in self.stats))),
            "per_category_ap": {str(c): v for c, v in self.per_category_ap.items()},
            "category_names": {str(c): self._names.get(c, str(c)) for c in self.per_category_ap},
            "params": self.params,
            "object_report": None if self.object_report is None else {
                k: v for k, v in self.object_report.to_dict().items()
                if k not in ("per_image", "per_object")},
        }

    def __repr__(self) -> str:
        return (f"COCOEvalResult(iou_type={self.iou_type!r}, AP={self.stats[0]:.4f}, "
                f"AP50={self.stats[1]:.4f}, AR100={self.stats[8]:.4f})")


def _object_report(q: _Pairs | None, p: _Params) -> Any:
    """fastiou.evaluate's report at IoU 0.5 from the matching at the threshold 0.5."""
    from .evaluation import EvaluationReport, _Matches

    at = np.flatnonzero(p.iou_thrs == 0.5)
    if q is None or at.size == 0:
        return None
    t = int(at[0])
    matched = q.gt[:, t] >= 0
    keep = np.flatnonzero(matched & ~q.ignored[:, t])
    group = np.repeat(np.arange(q.d_counts.shape[0]), q.d_counts)[keep]
    gpos = q.gt[keep, t]
    where = (q.iou_off[group] + (gpos - q.g_off[group]) * q.d_counts[group]
             + keep - q.d_off[group])
    n_g = q.gt_index.shape[0]
    iou = np.zeros(n_g)
    iou[gpos] = q.values[where]
    pred = np.full(n_g, -1, dtype=np.int64)
    pred[gpos] = q.result_index[keep]
    objects = np.flatnonzero(~q.gt_crowd)
    objects = objects[np.lexsort((q.gt_index[objects], q.gt_image[objects]))]
    n_img = p.img_ids.shape[0]
    counted = ~(matched & q.ignored[:, t])  # results on crowd regions are neither TP nor FP
    num_gt = np.bincount(q.gt_image_pos[objects], minlength=n_img)
    num_pred = np.bincount(q.image_pos[counted], minlength=n_img)
    report = EvaluationReport(
        _Matches(num_gt.astype(np.int64), num_pred.astype(np.int64), pred[objects],
                 iou[objects]), iou_threshold=0.5, method="greedy", grades=(0.95, 0.7),
        func=FUNC)
    report.per_object["image"] = q.gt_image[objects]
    report.per_object["gt_id"] = q.gt_ids[q.gt_index[objects]]
    report.per_image["image"] = p.img_ids.copy()
    return report


def _summary_rows(p: _Params, stats: np.ndarray) -> list[tuple[bool, Any, str, Any, float]]:
    md = [p.max_dets[i] if i < len(p.max_dets) else None for i in range(3)]
    spec = [(True, None, "all", 100), (True, 0.5, "all", md[2]), (True, 0.75, "all", md[2]),
            (True, None, "small", md[2]), (True, None, "medium", md[2]),
            (True, None, "large", md[2]), (False, None, "all", md[0]),
            (False, None, "all", md[1]), (False, None, "all", md[2]),
            (False, None, "small", md[2]), (False, None, "medium", md[2]),
            (False, None, "large", md[2])]
    return [(*s, float(v)) for s, v in zip(spec, stats)]


def _summarize(p: _Params, precision: np.ndarray, recall: np.ndarray) -> np.ndarray:
    """COCOeval.summarize's 12 numbers, by its own indexing."""
    stats = np.zeros(12)
    for i, (ap, thr, area, md, _) in enumerate(_summary_rows(p, stats)):
        aind = [j for j, lbl in enumerate(p.area_lbl) if lbl == area]
        mind = [j for j, m in enumerate(p.max_dets) if m == md]
        if not aind or not mind:  # the area label (or maxDets) is absent: pycocotools raises
            stats[i] = -1
            continue
        if len(aind) != len(mind) and 1 not in (len(aind), len(mind)):
            # repeated labels and maxDets that pycocotools cannot pair: every combination
            aind, mind = np.ix_(aind, mind)
        s = precision if ap else recall
        if thr is not None:
            s = s[np.where(thr == p.iou_thrs)[0]]
        s = s[:, :, :, aind, mind] if ap else s[:, :, aind, mind]
        stats[i] = -1 if len(s[s > -1]) == 0 else np.mean(s[s > -1])
    return stats


# --------------------------------------------------------------------------------------------
# The evaluation


def _progress(progress: Any) -> Callable[[str], None]:
    if callable(progress):
        done = [0]

        def step(stage: str) -> None:
            done[0] += 1
            progress(stage, done[0], len(STAGES))
        return step
    if progress is True:
        try:
            from tqdm import tqdm
        except ImportError:
            return lambda stage: None
        bar = tqdm(total=len(STAGES), file=sys.stderr, desc="coco", leave=False)

        def tick(stage: str) -> None:
            bar.set_postfix_str(stage)
            bar.update(1)
            if bar.n >= len(STAGES):
                bar.close()
        return tick
    if progress is False or progress is None:
        return lambda stage: None
    raise TypeError(f"{FUNC}: progress must be a bool or a callable (stage, done, total), got "
                    f"{type(progress).__name__}")


def _offsets(counts: np.ndarray) -> np.ndarray:
    out = np.zeros(counts.shape[0] + 1, dtype=np.int64)
    np.cumsum(counts, out=out[1:])
    return out


def evaluate(gt: Any, results: Any, iou_type: str = "bbox", *, params: dict | None = None,
             backend: str | None = None, progress: Any = False) -> COCOEvalResult:
    """COCO AP/AR of ``results`` against ``gt``, identical to pycocotools' COCOeval.

    Parameters
    ----------
    gt : dict or path
        A COCO annotation dict (``images``, ``annotations``, ``categories``) or its JSON file.
        ``iou_type="segm"`` needs the images' ``height`` and ``width`` and the annotations'
        ``segmentation`` (polygons, uncompressed or compressed RLE).
    results : list of dict, path, or dense masks
        COCO results: ``image_id``, ``category_id``, ``score`` and ``bbox`` ``[x, y, w, h]``
        and/or ``segmentation``, as ``COCO.loadRes`` reads them (see the module notes). Or dense
        masks straight from a model: a dict ``{image_id: {"masks": (N, H, W), "scores": (N,),
        "labels": (N,)}}`` or a list of dicts ``{"image_id", "masks", "scores", "labels"}``,
        masks bool or integer (non-zero is foreground) of the image's size, labels category ids.
        They are evaluated as their RLE encoding (what ``pycocotools.mask.encode`` gives)
        would be, in image then mask order (that order numbers ``result_index``). NumPy and JAX
        masks are encoded on the host (JAX arrays read with ``np.asarray``). CuPy masks (every
        image's, when ``backend`` is None), or any masks with ``backend="cupy"``, stay on the
        GPU: they are packed there, the ground truth of each image is decoded on the host and
        uploaded, the exact intersection counts of every (object, detection) pair come from one
        kernel launch, and only those counts, the areas (and for ``"bbox"`` the boxes) come
        back; the IoU is their float64 ratio, as pycocotools computes it, so the result is
        identical. Memory: the packed masks (1 bit a pixel), never N x M x H x W.
    iou_type : "bbox" or "segm"
    params : dict, optional
        pycocotools' Params names: ``iouThrs`` (T,), ``recThrs`` (R,), ``maxDets`` (M,),
        ``areaRng`` (A, 2), ``areaRngLbl`` (A,), ``useCats``, ``imgIds``, ``catIds``. Missing names
        take COCOeval's defaults (all images and categories of ``gt``). A summary number whose
        area label ('all', 'small', 'medium', 'large') is not in ``areaRngLbl``, or whose
        ``maxDets`` entry is missing, is -1 (pycocotools' ``summarize`` raises IndexError
        there); ``precision`` and ``recall`` are complete.
    backend : None, "numba", "jax" or "cupy"
        COCO dicts and files are evaluated on the host (Numba engine), whatever the engine asked
        for; "cupy" (or CuPy arrays) runs the mask IoU of dense masks on the GPU (see
        ``results``).
    progress : bool or callable
        A callable gets ``(stage, done, total)`` after each stage; True shows a tqdm bar on
        stderr. Nothing is printed otherwise.

    Returns
    -------
    COCOEvalResult
        ``stats (12,)``, ``precision (T, R, K, A, M)``, ``recall (T, K, A, M)``,
        ``scores (T, R, K, A, M)``, ``per_category_ap``, ``matches()``, ``table()``,
        ``to_dict()``. With no results at all: AP and AR 0 where a category has ground truth, -1
        where it has none, and a warning.
    """
    step = _progress(progress)
    return _evaluate_state(gt, results, iou_type, params, backend, step).compute(step)


def evaluate_images(gt: Any, results: Any, iou_type: str = "bbox", *, img_ids: Any,
                    params: dict | None = None, backend: str | None = None) -> COCOState:
    """The mergeable state of the images ``img_ids``: ``COCOState.merge`` the states of disjoint
    image sets (e.g. the partitions of a Dask bag), then ``compute()`` gives what
    :func:`evaluate` gives for all of them, bit for bit.

    Parameters
    ----------
    gt, results, iou_type, params, backend
        As :func:`evaluate` (``params['imgIds']``, if given, is replaced by ``img_ids``).
    img_ids : sequence of int
        The images of this part.

    Returns
    -------
    COCOState
        Picklable; O(detections) arrays.
    """
    return _evaluate_state(gt, results, iou_type, {**(params or {}), "imgIds": img_ids},
                           backend, lambda stage: None)


def _evaluate_state(gt: Any, results: Any, iou_type: str, params: dict | None,
                    backend: str | None, step: Callable[[str], None]) -> COCOState:
    if iou_type not in IOU_TYPES:
        raise ValueError(f"{FUNC}: iou_type must be one of {IOU_TYPES}, got {iou_type!r}")
    if backend not in BACKENDS:
        raise ValueError(f"{FUNC}: backend must be one of {BACKENDS}, got {backend!r}")
    gt_data, gt_label = _load(gt, "gt")
    res_data, res_label = _load(results, "results")
    dense = None
    if _is_dense(res_data):
        dense = _dense_entries(res_data, res_label)
        res_label = f"{res_label} (dense masks, numbered in image then mask order)"
        if not _dense_on_device(dense, backend):
            res_data, dense = _dense_results(dense), None
    g, images, names, cat_ids = _read_gt(gt_data, gt_label, iou_type)
    p = _read_params(params, images, cat_ids)
    if dense is not None:
        d = _device_results(dense, res_label, images, iou_type)
    else:
        d = _read_results(res_data, res_label, images, iou_type)
    if d.image.shape[0] == 0:
        warnings.warn(f"{FUNC}: the results are empty (pycocotools raises here); every AP and AR "
                      "is 0 where a category has ground truth, -1 where it has none",
                      UserWarning, stacklevel=3)
    step("read")
    return _state(g, d, images, p, iou_type, names, step)


def _groups(obj: _Objects, images: _Images, p: _Params, detections: bool, kernels: Any
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(selected entries in group order, their group key, category position, image position).
    Group order: by (category, image) (by image with ``useCats=0``, pooling its categories in
    ``catIds`` order), detections by descending score (stable), then file order."""
    img = _positions(images.ids, p.img_ids)[obj.image]
    if p.use_cats:
        cat = _positions(obj.category, p.cat_ids)
    else:
        order = np.argsort(p.cat_ids, kind="stable")
        pos = _positions(obj.category, p.cat_ids[order])
        cat = np.where(pos >= 0, order[np.maximum(pos, 0)], -1)
    n_img, n_cat = p.img_ids.shape[0], p.cat_ids.shape[0]
    sel = kernels.group_order(img, cat, n_img, n_cat, p.use_cats,
                              np.ascontiguousarray(obj.scores) if detections else None)
    img, cat = img[sel], cat[sel]
    group = cat * n_img + img if p.use_cats else img  # n_cat * n_img < 2**62: checked
    return sel, group, cat, img


def _state(g: _Objects, d: _Objects, images: _Images, p: _Params, iou_type: str,
           names: dict[int, str], step: Callable[[str], None]) -> COCOState:
    """IoU, matching and the outcome of every detection, for the images of ``p.img_ids``."""
    engine = _dispatch.load("numba")
    kernels = engine.coco

    n_img = p.img_ids.shape[0]
    num_k = p.cat_ids.shape[0] if p.use_cats else 1
    if n_img * p.cat_ids.shape[0] >= 2**62:
        raise ValueError(f"{FUNC}: too many images x categories")
    gi, g_key, g_cat, g_img = _groups(g, images, p, False, kernels)
    di, d_key, d_cat, d_img = _groups(d, images, p, True, kernels)
    # Number the (image, category) groups that hold anything, in key order (category-major);
    # ranks within each (image, category) list: keep the first maxDets[-1].
    keys, g_group, d_group, rank = kernels.number_groups(g_key, d_key)
    n_groups = keys.shape[0]
    keep = rank < p.max_dets[-1]
    di, d_group, d_cat, d_img, rank = (v[keep] for v in (di, d_group, d_cat, d_img, rank))
    gc = np.bincount(g_group, minlength=n_groups)
    dc = np.bincount(d_group, minlength=n_groups)

    # IoU blocks of the groups that hold anything (ground truth and detections are already in
    # group order, so each group's objects and detections are contiguous).
    used = np.flatnonzero((gc > 0) | (dc > 0))
    gcu, dcu = gc[used], dc[used]
    if int(gi.shape[0]) * int(di.shape[0]) >= 2**62:
        raise ValueError(f"{FUNC}: too many ground-truth x detection pairs")
    iou_off = _offsets(gcu * dcu)
    total = int(iou_off[-1])
    iou_off = iou_off[:-1]
    g_off, d_off = _offsets(gcu), _offsets(dcu)
    crowd = np.ascontiguousarray(g.crowd[gi])
    if iou_type == "bbox":
        # (np.take: NumPy's fancy indexing of rows is several times slower)
        values = kernels.box_blocks(np.take(d.boxes, di, axis=0),
                                    np.take(g.boxes, gi, axis=0), crowd, g_off, d_off,
                                    iou_off, total)
    elif isinstance(d.masks, _DeviceMasks):
        at_img = _positions(p.img_ids, images.ids)[keys[used] % n_img]
        values = _device_blocks(d.masks, g, gi, di, crowd, images.heights[at_img],
                                images.widths[at_img], g_off, d_off, iou_off)
    else:
        heights = images.heights[_positions(p.img_ids, images.ids)[keys[used] % n_img]]
        values = kernels.rle_blocks(_select(d.masks, di), _select(g.masks, gi), crowd,
                                    np.ascontiguousarray(heights, dtype=np.int64), g_off, d_off,
                                    iou_off, total)
    step("iou")

    # Greedy matching per area range, every threshold at once.
    num_a, num_t, n = p.area_rng.shape[0], p.iou_thrs.shape[0], di.shape[0]
    g_area, d_area = g.area[gi], d.area[di]
    lo, hi = p.area_rng[:, 0:1], p.area_rng[:, 1:2]
    g_out = (g_area[None] < lo) | (g_area[None] > hi)  # (A, G)
    d_out = (d_area[None] < lo) | (d_area[None] > hi)  # (A, N)
    g_ids = g.ids[gi]
    k_of_d = d_cat if p.use_cats else np.zeros_like(d_cat)
    score = np.ascontiguousarray(d.scores[di])
    # Accumulate's order: per category by descending score, ties by image then rank; the
    # detections are in (category, image, rank) order already, and the sort is stable.
    acc = kernels.score_order(k_of_d, num_k, score)
    slot = np.empty_like(acc)
    slot[acc] = np.arange(acc.shape[0])
    state, pairs_gt, pairs_ign = _match(values, iou_off, g_off, d_off, crowd, g_out, d_out,
                                        g_ids != 0, p.iou_thrs, slot, kernels)
    step("match")

    # Per category, the detections in accumulate's order, and the objects that count.
    g_keep = ~crowd[None] & ~g_out  # (A, G) not ignored
    k_of_g = g_cat if p.use_cats else np.zeros_like(g_cat)
    npig = np.stack([np.bincount(k_of_g[g_keep[a]], minlength=num_k) for a in range(num_a)],
                    axis=1).reshape(num_k, num_a).astype(np.int64)
    pairs = _Pairs(values, iou_off, g_off, d_off, dcu, pairs_gt, pairs_ign, gi, g.ids,
                   images.ids[d.image[di]], d.category[di], di, score, crowd,
                   images.ids[g.image[gi]], g_img, d_img)
    return COCOState(params=p, iou_type=iou_type, names=names, category=k_of_d[acc],
                     image=p.img_ids[d_img[acc]], rank=rank[acc], score=score[acc], state=state,
                     npig=npig, pairs=pairs)


def _match(values: np.ndarray, iou_off: np.ndarray, g_off: np.ndarray, d_off: np.ndarray,
           crowd: np.ndarray, g_out: np.ndarray, d_out: np.ndarray, counts: np.ndarray,
           thresholds: np.ndarray, slot: np.ndarray, kernels: Any
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Greedy matching of every group in every area range, every threshold, in one call.

    Returns ``state (N, A, T)`` uint8 in accumulate's order (detection i at row ``slot[i]``): 0 a
    false positive, 1 a true positive, 2 ignored (pycocotools' dtIgnore); and for area range 0,
    ``p2g0 (N, T)`` (the matched object, position in group order, or -1) and ``pign0 (N, T)``
    (it is ignored). Each detection's candidates are listed once for all area ranges; a range
    whose objects of a group are ignored exactly as in range 0 takes range 0's matches there.
    """
    from ._validate import match_cutoffs

    cutoffs = match_cutoffs(np.asarray(thresholds, dtype=np.float64), np.dtype(np.float64))
    return kernels.match(values, iou_off, g_off, d_off, crowd, crowd[None] | g_out, counts,
                         np.ascontiguousarray(d_out), cutoffs, slot)


def _select(m: _Masks, index: np.ndarray) -> tuple[np.ndarray, ...]:
    """The masks ``index`` (in that order), as the IoU kernel reads them: intervals are kept
    where they are; their bounds, areas and boxes are gathered."""
    return (m.starts, m.ends, m.lo[index], m.hi[index], np.ascontiguousarray(m.areas[index]),
            np.take(m.boxes, index, axis=0))
