"""COCO RLE against pycocotools: encodings byte for byte in both directions, decoding, areas,
boxes, merging, polygons, uncompressed RLE, IoU with every iscrowd combination; and the inputs
pycocotools handles badly (malformed RLE, mixed sizes) refused clearly."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis.extra import numpy as hnp

import fastiou
from fastiou import rle
from reference import crowd_mask_iou as iou_reference, draw_blobs

from pycocotools import mask as pm


def coco_encode(masks: np.ndarray) -> list[dict]:
    """pycocotools' encoding of (N, H, W) masks (it wants (H, W, N) uint8 in Fortran order)."""
    return pm.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))


def coco_decode(rles: list[dict]) -> np.ndarray:
    with warnings.catch_warnings():
        # pycocotools' Cython decode trips NumPy 2's __array__(copy=...) deprecation.
        warnings.filterwarnings("ignore", "__array__ implementation", DeprecationWarning)
        return pm.decode(rles).transpose(2, 0, 1).astype(bool)


def case_masks(rng: np.random.Generator, n: int, h: int, w: int) -> np.ndarray:
    """Random masks plus an empty one, a full one, and runs touching every border."""
    masks = rng.random((n, h, w)) < rng.uniform(0.05, 0.7, (n, 1, 1))
    masks[0] = False
    if n > 1:
        masks[1] = True
    if n > 2:
        masks[2] = False
        masks[2, 0, :] = masks[2, -1, :] = True  # first and last row
        masks[2, :, 0] = masks[2, :, -1] = True  # first and last column
    if n > 3:  # one pixel in each corner
        masks[3] = False
        masks[3, 0, 0] = masks[3, -1, -1] = masks[3, 0, -1] = masks[3, -1, 0] = True
    return masks


SIZES = [(1, 1), (1, 7), (7, 1), (2, 3), (31, 17), (64, 5), (65, 66), (130, 40), (480, 64)]


@pytest.fixture(scope="module")
def cases() -> list[tuple[np.ndarray, list[dict]]]:
    rng = np.random.default_rng(0)
    out = []
    for h, w in SIZES:
        masks = case_masks(rng, 7, h, w)
        out.append((masks, coco_encode(masks)))
    # Compact blobs: long runs across columns, as real instance masks have.
    yy, xx = np.mgrid[0:90, 0:120]
    blobs = np.stack([((xx - cx) / a) ** 2 + ((yy - cy) / b) ** 2 <= 1
                      for cx, cy, a, b in rng.uniform([10, 10, 5, 5], [110, 80, 60, 40], (9, 4))])
    out.append((blobs, coco_encode(blobs)))
    return out


def test_encode_is_byte_identical(cases):
    for masks, ref in cases:
        ours = rle.encode(masks)
        assert [r["counts"] for r in ours] == [r["counts"] for r in ref], masks.shape
        assert [r["size"] for r in ours] == [r["size"] for r in ref]
        assert all(type(r["counts"]) is bytes for r in ours)
        # pycocotools reads our strings back to the same masks.
        np.testing.assert_array_equal(coco_decode(ours), masks)
        single = rle.encode(masks[3])
        assert single == ref[3]


def test_encode_layouts_and_dtypes(cases):
    masks, ref = cases[6]
    counts = [r["counts"] for r in ref]
    variants = {
        "fortran": np.asfortranarray(masks),
        "uint8": masks.astype(np.uint8) * 255,
        "int64": masks.astype(np.int64) * -7,
        "strided": np.repeat(masks, 2, axis=2)[:, :, ::2],
        "reversed": masks[::-1, ::-1, ::-1][::-1, ::-1, ::-1],
        "big-endian": masks.astype(">i4"),
    }
    for name, variant in variants.items():
        assert [r["counts"] for r in rle.encode(variant)] == counts, name
    probs = np.where(masks, 0.75, 0.25).astype(np.float32)
    assert [r["counts"] for r in rle.encode(probs, threshold=0.5)] == counts
    before = probs.copy()
    rle.encode(probs, threshold=0.5)
    np.testing.assert_array_equal(probs, before)
    with pytest.raises(ValueError, match=r"rle.encode: masks holds floating values"):
        rle.encode(probs)
    with pytest.raises(ValueError, match=r"rle.encode: masks must have shape \(N, H, W\) or "
                                         r"\(H, W\), got shape \(1, 7, 65, 66\)"):
        rle.encode(masks[None])
    assert rle.encode(np.zeros((0, 4, 5), bool)) == []
    assert rle.encode(np.zeros((3, 4, 5), np.uint8), ) == coco_encode(np.zeros((3, 4, 5), bool))
    assert rle.encode(probs, threshold=2.0)[0]["counts"] == coco_encode(np.zeros((1,) + masks.shape[1:], bool))[0]["counts"]


def test_encode_does_not_depend_on_the_chunk_size(cases, monkeypatch):
    from fastiou.backends.numba_cpu import rle as numba_rle

    masks, ref = cases[-1]
    monkeypatch.setattr(numba_rle, "ENCODE_CHUNK_BYTES", 1)  # one mask at a time
    assert rle.encode(masks) == ref


def test_decode_area_bbox_match(cases):
    for masks, ref in cases:
        decoded = rle.decode(ref)
        assert decoded.dtype == np.bool_ and decoded.flags.c_contiguous
        np.testing.assert_array_equal(decoded, masks)
        np.testing.assert_array_equal(rle.decode(rle.encode(masks)), masks)
        np.testing.assert_array_equal(rle.decode(ref[1]), masks[1])
        area = rle.area(ref)
        assert area.dtype == np.int64
        np.testing.assert_array_equal(area, pm.area(ref))
        assert rle.area(ref[2]) == pm.area(ref[2])
        boxes = rle.to_bbox(ref)
        assert boxes.dtype == np.float64 and boxes.shape == (len(ref), 4)
        np.testing.assert_array_equal(boxes, pm.toBbox(ref))
        np.testing.assert_array_equal(rle.to_bbox(ref[3]), pm.toBbox(ref[3]))
        # The same boxes as the dense engines give (in xyxy).
        xyxy = np.asarray(fastiou.masks_to_boxes(masks), dtype=np.float64)
        np.testing.assert_array_equal(fastiou.box_convert(boxes, "xywh", "xyxy"), xyxy)


def test_str_and_uncompressed_counts_are_accepted(cases):
    masks, ref = cases[4]
    as_str = [{"size": r["size"], "counts": r["counts"].decode()} for r in ref]
    np.testing.assert_array_equal(rle.decode(as_str), masks)
    runs = [rle._parse("t", "rles", [r]).counts.tolist() for r in ref]
    uncompressed = [{"size": r["size"], "counts": c} for r, c in zip(ref, runs)]
    np.testing.assert_array_equal(rle.decode(uncompressed), masks)
    np.testing.assert_array_equal(rle.area(uncompressed), pm.area(ref))
    assert rle.from_uncompressed(uncompressed) == ref
    assert rle.from_uncompressed(uncompressed[2]) == ref[2]
    np.testing.assert_array_equal(rle.iou(uncompressed, as_str), pm.iou(ref, ref, [0] * len(ref)))


def test_from_uncompressed_keeps_runs_as_pycocotools():
    # Empty runs in the middle are kept as they are, like frPyObjects (then merged by merge()).
    for counts in ([0, 1, 18, 1], [3, 0, 2, 15], [20], [0, 20], [5, 0, 0, 0, 15], [1] * 20):
        obj = {"size": [4, 5], "counts": counts}
        assert rle.from_uncompressed(obj) == pm.frPyObjects(obj, 4, 5), counts
        assert rle.merge([rle.from_uncompressed(obj)]) == pm.merge([pm.frPyObjects(obj, 4, 5)])
        twice = rle.merge([obj, obj])
        np.testing.assert_array_equal(rle.decode(twice), rle.decode(obj))
        if 0 not in counts[1:]:
            assert twice == pm.merge([pm.frPyObjects(obj, 4, 5)] * 2), counts
        else:  # pycocotools stops at the empty run: its result does not cover the image
            assert rle.merge([obj, obj])["counts"] != pm.merge([pm.frPyObjects(obj, 4, 5)] * 2)["counts"]
    objs = [{"size": [4, 5], "counts": [3, 0, 2, 15]}, {"size": [4, 5], "counts": [19, 1]}]
    assert rle.from_uncompressed(objs) == pm.frPyObjects(objs, 4, 5)


def test_merge_matches(cases):
    rng = np.random.default_rng(3)
    for masks, ref in cases:
        for k in (1, 2, 3, len(ref)):
            pick = [ref[i] for i in rng.permutation(len(ref))[:k]]
            for intersect in (False, True):
                ours = rle.merge(pick, intersect=intersect)
                assert ours == pm.merge(pick, intersect=intersect), (masks.shape, k, intersect)
                dense = rle.decode(pick)
                expected = dense.all(axis=0) if intersect else dense.any(axis=0)
                np.testing.assert_array_equal(rle.decode(ours), expected)


@pytest.mark.parametrize("crowd", ["none", "all", "first", "odd"])
def test_iou_matches_for_every_iscrowd(cases, crowd):
    rng = np.random.default_rng(4)
    for masks, ref in cases:
        dt = [ref[i] for i in rng.permutation(len(ref))] + ref[:2]
        gt = ref[1:]
        iscrowd = {"none": [0] * len(gt), "all": [1] * len(gt),
                   "first": [1] + [0] * (len(gt) - 1), "odd": [i % 2 for i in range(len(gt))]}[crowd]
        ours = rle.iou(dt, gt, iscrowd)
        expected = pm.iou(dt, gt, iscrowd)
        assert ours.dtype == np.float64 and ours.shape == (len(dt), len(gt))
        np.testing.assert_array_equal(ours, expected)
        # Booleans as well as 0/1, and dense masks (encoded first) give the same.
        np.testing.assert_array_equal(rle.iou(dt, gt, [bool(c) for c in iscrowd]), expected)
        np.testing.assert_array_equal(rle.iou(rle.decode(dt), gt, iscrowd), expected)
    masks, ref = cases[-1]
    if crowd == "none":  # the dense engines agree
        np.testing.assert_allclose(rle.iou(ref, ref), fastiou.mask_iou(masks, masks), rtol=1e-6)


def test_iou_edges():
    empty = rle.encode(np.zeros((2, 6, 7), bool))
    full = rle.encode(np.ones((1, 6, 7), bool))
    np.testing.assert_array_equal(rle.iou(empty, empty), np.zeros((2, 2)))
    np.testing.assert_array_equal(rle.iou(empty, empty, zero_division=1.0), np.ones((2, 2)))
    np.testing.assert_array_equal(rle.iou(empty + full, full, [1]), [[0.0], [0.0], [1.0]])
    np.testing.assert_array_equal(rle.iou(empty + full, full, [1], zero_division=-1.0),
                                  [[-1.0], [-1.0], [1.0]])
    assert rle.iou([], full, [0]).shape == (0, 1)
    assert rle.iou(full, [], []).shape == (1, 0)
    assert rle.iou(full[0], full[0], [0]).shape == (1, 1)
    with pytest.raises(ValueError, match=r"rle.iou: every RLE must have the same size, got dt\[0\] "
                                         r"of size \[6, 7\] and gt\[0\] of size \[7, 6\]"):
        rle.iou(full, rle.encode(np.ones((1, 7, 6), bool)), [0])
    with pytest.raises(ValueError, match=r"rle.iou: iscrowd must hold one bool per ground truth \(1\)"):
        rle.iou(full, full, [0, 1])
    with pytest.raises(TypeError, match=r"rle.iou: gt looks like boxes .*use fastiou.box_iou"):
        rle.iou(full, np.zeros((3, 4)), [0, 0, 0])
    with pytest.raises(TypeError, match=r"rle.iou: zero_division must be a real number"):
        rle.iou(full, full, [0], zero_division="0")


def random_polygons(rng: np.random.Generator, h: int, w: int, kind: int) -> list[list[float]]:
    polys = []
    for _ in range(rng.integers(1, 4)):
        pts = rng.uniform(-4, [w + 4, h + 4], size=(rng.integers(3, 10), 2)).ravel()
        if kind == 0:
            pts = np.round(pts)
        elif kind == 1:
            pts = np.round(pts, 1)
        polys.append(pts.tolist())
    return polys


def test_from_polygons_matches():
    rng = np.random.default_rng(5)
    for t in range(400):
        h, w = (int(v) for v in rng.integers(1, 70, 2))
        polys = random_polygons(rng, h, w, t % 3)
        expected = pm.merge(pm.frPyObjects(polys, h, w))
        assert rle.from_polygons(polys, h, w) == expected, (h, w, polys)
        assert rle.from_polygons(polys[0], h, w) == pm.frPyObjects([polys[0]], h, w)[0]
    # A square given exactly: its pixels.
    square = rle.from_polygons([[2, 1, 6, 1, 6, 4, 2, 4]], 8, 9)
    assert square == pm.frPyObjects([[2, 1, 6, 1, 6, 4, 2, 4]], 8, 9)[0]


def test_from_boxes_matches():
    rng = np.random.default_rng(6)
    boxes = np.concatenate([rng.uniform(-5, 60, (40, 2)), rng.uniform(0, 40, (40, 2))], axis=1)
    boxes[:10] = np.round(boxes[:10])
    boxes[10, 2:] = 0  # an empty box
    assert rle.from_boxes(boxes, 50, 60) == pm.frPyObjects(boxes, 50, 60)
    # Integer boxes are their pixels.
    np.testing.assert_array_equal(rle.decode(rle.from_boxes([[2, 1, 3, 4]], 8, 9)[0])[1:5, 2:5], True)
    assert rle.area(rle.from_boxes([[2, 1, 3, 4]], 8, 9)) == [12]
    with pytest.raises(ValueError, match=r"rle.from_boxes: boxes must be finite \[x, y, w, h\] rows"):
        rle.from_boxes([[0, 0, 1]], 8, 9)


# --------------------------------------------------------------------------------------------
# Malformed input: a ValueError naming the function and the RLE, never a crash.

GOOD = {"size": [4, 5], "counts": b"01b00"}

MALFORMED = [
    ({"size": [4, 5], "counts": b"01b0"}, r"rles\[0\] has run lengths that do not add up to h \* w"),
    ({"size": [4, 5], "counts": [0, 1, 18]}, r"rles\[0\] has run lengths that do not add up"),
    ({"size": [4, 5], "counts": [0, 1, -1, 20]}, r"rles\[0\] has a negative run length"),
    ({"size": [4, 5], "counts": b"01b0 "}, r"rles\[0\] has a character outside '0'\.\.'o'"),
    ({"size": [4, 5], "counts": "01b0\u00e9"}, r"rles\[0\] has a character outside"),
    ({"size": [4, 5], "counts": b"01b"}, r"rles\[0\] has a compressed counts string that ends in the middle"),
    ({"size": [4, 5], "counts": b"o" * 20}, r"rles\[0\] has a compressed counts string with a number too long"),
    ({"size": [4, 5], "counts": b"0\x7f"}, r"rles\[0\] has a character outside"),
    ({"size": [4], "counts": b"01b00"}, r"rles\[0\] must be a dict with 'size': \[h, w\]"),
    ({"size": [4, -5], "counts": b"01b00"}, r"rles\[0\] must be a dict with 'size'"),
    ({"size": [4.0, 5], "counts": b"01b00"}, r"rles\[0\] must be a dict with 'size'"),
    ({"size": [70000, 70000], "counts": [0]}, r"rles\[0\] must be a dict .*h \* w < 2\*\*32"),
    ({"counts": b"01b00"}, r"rles\[0\] must be a dict with 'size'"),
    ({"size": [4, 5]}, r"rles\[0\] must have 'counts' as a compressed string"),
    ({"size": [4, 5], "counts": 20}, r"rles\[0\] must have 'counts' as a compressed string"),
    ({"size": [4, 5], "counts": [0.5, 19.5]}, r"rles\[0\] has 'counts' that is neither"),
    ("not a dict", r"rles\[0\] must be a dict with 'size'"),
]


@pytest.mark.parametrize("bad,message", MALFORMED, ids=[m[1][:30] for m in MALFORMED])
@pytest.mark.parametrize("fn", [rle.decode, rle.area, rle.to_bbox, rle.merge, rle.from_uncompressed])
def test_malformed_rle_is_refused(fn, bad, message):
    with pytest.raises(ValueError, match=rf"rle\.{fn.__name__}: {message}".replace(r"rles\[0\]", r"rles\[1\]")):
        fn([GOOD, bad])


def test_malformed_in_iou_names_the_operand():
    bad = {"size": [4, 5], "counts": b"01b0"}
    with pytest.raises(ValueError, match=r"rle.iou: gt\[1\] has run lengths that do not add up"):
        rle.iou([GOOD], [GOOD, bad], [0, 0])
    with pytest.raises(ValueError, match=r"rle.iou: dt\[0\] has run lengths"):
        rle.iou([bad], [GOOD], [0])


def test_bad_arguments():
    with pytest.raises(TypeError, match=r"rle.decode: rles must be an RLE dict or a list of them, got str"):
        rle.decode("01b00")
    with pytest.raises(ValueError, match=r"rle.merge: rles must hold at least one RLE"):
        rle.merge([])
    with pytest.raises(TypeError, match=r"rle.merge: intersect must be a bool, got 1"):
        rle.merge([GOOD], 1)
    with pytest.raises(ValueError, match=r"rle.merge: every RLE must have the same size, got "
                                         r"rles\[0\] of size \[4, 5\] and rles\[1\] of size \[5, 4\]"):
        rle.merge([GOOD, {"size": [5, 4], "counts": [20]}])
    with pytest.raises(ValueError, match=r"rle.from_polygons: polygons\[0\] must be a flat list of "
                                         r"at least 3 finite \(x, y\) pairs"):
        rle.from_polygons([[0, 0, 1, 1]], 4, 5)
    with pytest.raises(ValueError, match=r"rle.from_polygons: polygons\[1\] must be a flat list"):
        rle.from_polygons([[0, 0, 1, 1, 2, 0], [0, 0, 1, float("nan"), 2, 0]], 4, 5)
    with pytest.raises(ValueError, match=r"rle.from_polygons: height must be a non-negative integer"):
        rle.from_polygons([[0, 0, 1, 1, 2, 0]], -4, 5)
    with pytest.raises(ValueError, match=r"rle.from_polygons: polygons must be a non-empty list"):
        rle.from_polygons([], 4, 5)


def test_encode_refuses_device_arrays():
    from jax import numpy as jnp
    with pytest.raises(TypeError, match=r"rle.encode: masks must be a numpy.ndarray \(RLE encoding "
                                         r"runs on the host\), got jax"):
        rle.encode(jnp.zeros((1, 4, 5), bool))


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.bool_, hnp.array_shapes(min_dims=3, max_dims=3, min_side=1, max_side=70)))
def test_property_round_trip_and_identity(masks):
    ours = rle.encode(masks)
    assert [r["counts"] for r in ours] == [r["counts"] for r in coco_encode(masks)]
    np.testing.assert_array_equal(rle.decode(ours), masks)
    np.testing.assert_array_equal(rle.iou(ours, ours, [0] * len(ours)),
                                  pm.iou(ours, ours, [0] * len(ours)))


def shapes(rng: np.random.Generator, n: int, h: int, w: int) -> np.ndarray:
    """Ellipses and rectangles of every size, anywhere (small objects in tall images leave long
    gaps between the rows of consecutive columns), after the cases of ``case_masks`` and one run
    from the last rows of a column into the first rows of the next."""
    masks = case_masks(rng, n, h, w)
    masks[4] = False
    masks[4, -2:, w // 3] = masks[4, :2, w // 3 + 1 if w > 1 else 0] = True
    return draw_blobs(rng, masks, first=5)


@pytest.mark.parametrize("parallel", [False, True])
def test_iou_bits_path_equals_runs_path_pycocotools_and_reference(monkeypatch, parallel):
    """Compressed strings of one size take the bits path (one compiled call; with ``parallel``,
    worker threads and detections in uneven blocks): the same values as the runs path, as
    pycocotools and as a plain reference, in tall, wide and square images."""
    from fastiou.backends.numba_cpu import rle as engine

    monkeypatch.setattr(engine, "PARALLEL_WORDS", 1 if parallel else 2**62)
    rng = np.random.default_rng(8)
    for h, w in [(480, 64), (3000, 9), (7, 700), (130, 40), (64, 64), (1, 1)]:
        dense_dt, dense_gt = shapes(rng, 13, h, w), shapes(rng, 6, h, w)
        dense_dt[-2:] = dense_gt[-2:]  # identical pairs
        dt, gt = coco_encode(dense_dt), coco_encode(dense_gt)
        iscrowd = [1, 0, 0, 1, 0, 0]
        joined = b" ".join(r["counts"] for r in dt + gt)
        bits = engine.iou_strings(joined, 13, 6, h, w, np.asarray(iscrowd, bool), 0.0)
        assert bits is not None, (h, w)
        expected = pm.iou(dt, gt, iscrowd)
        d, g = rle._parse("t", "dt", dt), rle._parse("t", "gt", gt)
        walked = engine.iou((d.counts, d.offsets), (g.counts, g.offsets), h,
                            np.asarray(iscrowd, bool), 0.0)  # the runs of each pair
        for got in (bits, rle.iou(dt, gt, iscrowd), rle.iou(tuple(dt), tuple(gt), iscrowd)):
            assert got.dtype == np.float64 and got.shape == (13, 6)
            np.testing.assert_array_equal(got, expected)
            np.testing.assert_array_equal(got, walked)
        np.testing.assert_allclose(bits, iou_reference(dense_dt, dense_gt, iscrowd),
                                   rtol=1e-15, atol=0)
        # A malformed string anywhere among the detections or ground truths is named.
        for name, k in (("dt", 11), ("gt", 4)):
            bad_dt, bad_gt = list(dt), list(gt)
            target = bad_dt if name == "dt" else bad_gt
            target[k] = {"size": [h, w], "counts": target[k]["counts"] + b"1"}
            assert engine.iou_strings(b" ".join(r["counts"] for r in bad_dt + bad_gt), 13, 6, h,
                                      w, np.zeros(6, bool), 0.0) is None
            with pytest.raises(ValueError, match=rf"rle.iou: {name}\[{k}\] has"):
                rle.iou(bad_dt, bad_gt, iscrowd)
