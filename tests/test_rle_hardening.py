"""COCO RLE against crafted input: run lengths whose sums wrap around int64, re-compression of
huge runs, polygons and boxes with huge coordinates, sizes at and past 2**32, and the unclear
errors of issue 10. Each reproducer of the issue is kept here; every accepted input is compared
with pycocotools or a plain reference, every refused one must be a one-line ValueError/TypeError."""

from __future__ import annotations

import numpy as np
import pytest

from fastiou import rle
from fastiou.backends.numba_cpu import rle as numba_rle

from pycocotools import mask as pm


def put(value: int) -> bytes:
    """One count in COCO's compressed format, for any Python int (no range limit)."""
    out = bytearray()
    more = True
    while more:
        c = value & 0x1F
        value >>= 5
        more = (value != -1) if (c & 0x10) else (value != 0)
        out.append((c | 0x20 if more else c) + 48)
    return bytes(out)


def compressed(counts: list[int]) -> bytes:
    """COCO's string for a run list: from the fourth count on, the difference with two before."""
    return b"".join(put(c - counts[i - 2] if i > 2 else c) for i, c in enumerate(counts))


def wrapping_runs() -> list[int]:
    """Runs of a 10 x 10 RLE whose sum is 100 + 2**64 (100 in int64 arithmetic), every run
    positive and below 2**63, and every compressed count at most 12 characters."""
    j = 8
    t = j * (j + 1) // 2
    k = -(-(2**64 - 2**58) // t)
    runs = [5]
    for i in range(j):
        runs += [(i + 1) * k, 0]
    runs[-1] = 2**64 - k * t + 95
    assert sum(runs) == 100 + 2**64 and max(runs) < 2**63 and 0 < runs[-1] < 2**59
    assert max(len(put(c - runs[i - 2] if i > 2 else c)) for i, c in enumerate(runs)) <= 12
    return runs


PAST = r"has a run length, or a running total of run lengths, past h \* w"
FUNCS = [rle.decode, rle.area, rle.to_bbox, rle.merge, rle.from_uncompressed]
EMPTY = {"size": [10, 10], "counts": [100]}

WRAPS = {  # item 1 of issue 10, and its variants through every input path
    "max-runs": [2**63 - 1, 2**63 - 1, 102],
    "wrap-into-next": [105, 5, 2**63 - 1, 0, 2**63 - 9],
    "one-long-run": [0, 101],
    "running-total": [60, 30, 11],
    "huge-python-int": [0, 2**64 + 100],
    "huge-with-negative": [2**63, -1],
    "uint64": np.array([2**64 - 1, 101], dtype=np.uint64),
    "int64-array": np.array([2**62, 2**62, 2**62, 2**62, 100], dtype=np.int64),
    "compressed-wrap": compressed(wrapping_runs()),
    "compressed-wrap-str": compressed(wrapping_runs()).decode(),
    "compressed-long-run": compressed([0, 2**59 - 1]),
}


@pytest.mark.parametrize("fn", FUNCS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("counts", WRAPS.values(), ids=WRAPS.keys())
def test_runs_past_the_image_are_refused(fn, counts):
    bad = {"size": [10, 10], "counts": counts}
    with pytest.raises(ValueError, match=rf"rle\.{fn.__name__}: rles\[0\] {PAST}"):
        fn([bad, EMPTY])
    with pytest.raises(ValueError, match=rf"rle\.{fn.__name__}: rles\[1\] {PAST}"):
        fn([EMPTY, bad])
    with pytest.raises(ValueError, match=rf"rle\.{fn.__name__}: rles\[0\] {PAST}"):
        fn(bad)


def test_wrapping_runs_in_iou_name_the_operand():
    bad = {"size": [10, 10], "counts": [105, 5, 2**63 - 1, 0, 2**63 - 9]}
    with pytest.raises(ValueError, match=rf"rle\.iou: dt\[0\] {PAST}"):
        rle.iou([bad], [EMPTY])
    with pytest.raises(ValueError, match=rf"rle\.iou: gt\[1\] {PAST}"):
        rle.iou([EMPTY], [EMPTY, {"size": [10, 10], "counts": compressed(wrapping_runs())}])


def test_the_bytes_fast_path_checks_runs_too():
    # Only bytes counts and int sizes: the bulk path.
    good = rle.encode(np.ones((1, 10, 10), bool))[0]
    with pytest.raises(ValueError, match=rf"rle\.area: rles\[1\] {PAST}"):
        rle.area([good, {"size": [10, 10], "counts": compressed(wrapping_runs())}])
    # The wrapping string is not silently a full mask, nor a pixel in the next mask.
    assert rle.area([good, EMPTY]).tolist() == [100, 0]


def bbox(counts: list[int], h: int) -> list[float]:
    """COCO's box (xywh) of runs: a foreground run over two columns or more spans every row."""
    x0 = y0 = x1 = y1 = None
    pos = 0
    for i, c in enumerate(counts):
        if i % 2 and c:
            xa, ya, xb, yb = pos // h, pos % h, (pos + c - 1) // h, (pos + c - 1) % h
            ya, yb = (0, h - 1) if xb > xa else (ya, yb)
            x0 = xa if x0 is None else x0
            x1 = xb
            y0 = ya if y0 is None else min(y0, ya)
            y1 = yb if y1 is None else max(y1, yb)
        pos += c
    return [0.0] * 4 if x0 is None else [x0, y0, x1 - x0 + 1, y1 - y0 + 1]


def test_runs_up_to_the_image_are_accepted():
    for counts in ([100], [0, 100], [50, 50], [100, 0], [0, 100, 0], [99, 1], [0, 0, 0, 100],
                   [3, 14, 0, 5, 78]):
        obj = {"size": [10, 10], "counts": counts}
        ref = pm.frPyObjects(obj, 10, 10)
        assert rle.area(obj) == pm.area(ref) == sum(counts[1::2])
        np.testing.assert_array_equal(rle.to_bbox(obj), bbox(counts, 10))
        assert rle.from_uncompressed(obj) == ref
        expected = np.zeros(100, bool)
        pos = 0
        for i, c in enumerate(counts):
            expected[pos : pos + c] = i % 2 == 1
            pos += c
        np.testing.assert_array_equal(rle.decode(obj), expected.reshape(10, 10).T)


def test_decode_never_writes_past_its_mask():
    # Below the validation: even runs that pass the image do not touch the next mask.
    counts = np.array([5, 1000, 100], dtype=np.int64)
    offsets = np.array([0, 2, 3], dtype=np.int64)
    out = numba_rle.decode(counts, offsets, 10, 10)
    column_major = out[0].reshape(-1, order="F")
    assert not column_major[:5].any() and column_major[5:].all()
    assert not out[1].any()


# --------------------------------------------------------------------------------------------
# Item 2: re-compression of huge runs.


def test_merge_of_huge_runs_is_refused_not_corrupt():
    with pytest.raises(ValueError, match=rf"rle\.merge: rles\[0\] {PAST}"):
        rle.merge([{"size": [10, 10], "counts": [2**62] * 4 + [100]}])
    with pytest.raises(ValueError, match=rf"rle\.merge: rles\[0\] {PAST}"):
        rle.merge([{"size": [10, 10], "counts": [2**62] * 8000 + [100]}])


def test_compress_refuses_runs_that_do_not_fit_its_buffer():
    offsets = np.array([0, 2], dtype=np.int64)
    with pytest.raises(ValueError, match=r"run lengths to compress must be in \[0, 2\*\*32\)"):
        numba_rle.compress(np.array([0, 2**32], dtype=np.int64), offsets)
    with pytest.raises(ValueError, match=r"run lengths to compress must be in \[0, 2\*\*32\)"):
        numba_rle.compress(np.array([-1, 5], dtype=np.int64), offsets)


LARGEST = (65535, 65537)  # h * w = 2**32 - 1, the largest image


@pytest.mark.parametrize("counts", [
    [0, 2**32 - 1],
    [2**32 - 1],
    [1, 2**32 - 4, 1, 1],  # then a difference of -(2**32 - 5): 7 characters
    [2**31, 1, 2**31 - 2],
    [0, 2**31 - 1, 2**31, 0],
    [3, 0, 2**32 - 9, 5],
])
def test_worst_case_runs_are_byte_identical(counts):
    # pycocotools encodes such runs right (in 64 bits) but reads 7-character numbers back with a
    # 32-bit shift, so only its strings are compared here; areas and boxes with plain references.
    h, w = LARGEST
    assert sum(counts) == h * w
    obj = {"size": [h, w], "counts": counts}
    ref = pm.frPyObjects(obj, h, w)
    ours = rle.from_uncompressed(obj)
    assert ours == ref == {"size": [h, w], "counts": compressed(counts)}
    assert max(len(put(c - counts[i - 2] if i > 2 else c)) for i, c in enumerate(counts)) == 7
    assert rle.merge([obj]) == ours
    assert rle.from_uncompressed(ours) == ours  # read back
    assert rle.area(ours) == sum(counts[1::2])
    np.testing.assert_array_equal(rle.to_bbox(ours), bbox(counts, h))
    assert rle.area(rle.merge([ours, obj])) == sum(counts[1::2])
    assert rle.area(rle.merge([ours, obj], intersect=True)) == sum(counts[1::2])


def test_many_huge_runs_round_trip():
    rng = np.random.default_rng(11)
    h, w = LARGEST
    cuts = np.sort(rng.integers(0, 2**32 - 1, 299))
    runs = np.diff(np.concatenate([[0], cuts, [2**32 - 1]])).tolist()
    runs[1:4] = [2**32 - 1 - sum(runs[:1]) - sum(runs[4:]) - 2, 1, 1]  # one huge run among them
    obj = {"size": [h, w], "counts": runs}
    ref = pm.frPyObjects(obj, h, w)
    assert rle.from_uncompressed(obj) == ref == {"size": [h, w], "counts": compressed(runs)}
    assert rle.merge([obj]) == ref
    assert rle.from_uncompressed(ref) == ref  # the string read back
    assert rle.area(ref) == sum(runs[1::2])


# --------------------------------------------------------------------------------------------
# Item 3: polygons and boxes with huge coordinates.


def test_boxes_with_huge_coordinates():
    full = {"size": [10, 10], "counts": compressed([0, 100])}
    assert rle.from_boxes([[0, 0, 9.2e17, 9.2e17]], 10, 10) == [full]
    assert rle.from_boxes([[-1e300, -1e300, 1e308, 1e308]], 10, 10) == [full]
    assert rle.from_boxes(np.array([[0, 0, 2**62, 2**62]], dtype=np.int64), 10, 10) == [full]
    # x + w overflows float64: the far edge is at infinity.
    assert rle.from_boxes([[1e308, 0, 1e308, 5]], 10, 10) == [{"size": [10, 10], "counts": b"T3"}]
    for bad in ([[0, 0, np.inf, 3]], [[np.nan, 0, 1, 1]], [[0, -np.inf, 1, 1]]):
        with pytest.raises(ValueError, match=r"rle.from_boxes: boxes must be finite \[x, y, w, h\]"):
            rle.from_boxes(bad, 10, 10)


def test_boxes_far_outside_equal_pycocotools_nearer():
    # A corner far out gives what pycocotools gives with that corner 1e4 out (its int32 fine
    # grid holds 1e4, not 1e12). Coordinates on a grid of 1/8, so x + w is exact.
    rng = np.random.default_rng(7)
    h, w = 23, 31
    near = np.round(rng.uniform(-6, 37, (300, 4)) * 8) / 8
    far = near.copy()
    for k in range(4):
        side = rng.random(300) < 0.3
        far[side, k] = np.where(k < 2, -1, 1) * rng.choice([1e12, 1e17, 1e300], side.sum())
    x0, y0 = far[:, 0], far[:, 1]
    x1, y1 = far[:, 0] + far[:, 2], far[:, 1] + far[:, 3]
    moderate = [np.clip(v, -1e4, 1e4) for v in (x0, y0, x1, y1)]
    boxes = np.stack([moderate[0], moderate[1], moderate[2] - moderate[0],
                      moderate[3] - moderate[1]], axis=1)
    assert rle.from_boxes(far, h, w) == pm.frPyObjects(boxes, h, w)
    assert rle.from_boxes(near, h, w) == pm.frPyObjects(near, h, w)


def random_polygon(rng: np.random.Generator, h: int, w: int, reach: float, grid: int) -> list[float]:
    pts = rng.uniform(-reach, [w + reach, h + reach], size=(rng.integers(3, 9), 2)).ravel()
    return (np.round(pts * grid) / grid).tolist() if grid else pts.tolist()


@pytest.mark.parametrize("reach,cases", [(3.0, 150), (40.0, 150), (2000.0, 100), (2e4, 30), (2e5, 6)])
def test_polygons_crossing_the_border_match_pycocotools(reach, cases):
    # The walk is searched, not stepped, outside the image: the marks must be those of the walk.
    # (pycocotools steps through every point: far vertices are slow there, hence fewer cases.)
    rng = np.random.default_rng(int(reach))
    for t in range(cases):
        h, w = (int(v) for v in rng.integers(1, 40, 2))
        polys = [random_polygon(rng, h, w, reach, (1, 10, 0)[t % 3]) for _ in range(rng.integers(1, 3))]
        assert rle.from_polygons(polys, h, w) == pm.merge(pm.frPyObjects(polys, h, w)), (h, w, polys)


@pytest.mark.parametrize("far", [1e6, 1e9, 1e12, 2.0**45])
def test_polygons_with_far_vertices_match_pycocotools_nearer(far):
    # A cone from a vertex inside the image along directions whose slope on the fine grid is
    # exact (1/2, 2, 1/3 rounded the same way): the image sees the same edges whether the far
    # vertices are 100 or `far` away; pycocotools can only draw the first. (Up to 2**45 the
    # vertices, on a grid of 1/4, and the fine grid 5x stay exact in float64.)
    rng = np.random.default_rng(3)
    h, w = 17, 19
    for _ in range(40):
        ax, ay = rng.uniform(1, [w - 1, h - 1])
        ax, ay = round(ax * 4) / 4, round(ay * 4) / 4
        i, j = rng.choice(5, 2, replace=False)
        d1, d2 = ((2, 1), (1, 2), (3, 1), (1, 3), (1, 1))[i], ((2, 1), (1, 2), (3, 1), (1, 3), (1, 1))[j]
        cone = lambda k: [ax, ay, ax + k * d1[0], ay + k * d1[1], ax + k * d2[0], ay + k * d2[1]]
        expected = pm.frPyObjects([cone(100)], h, w)[0]
        assert rle.from_polygons([cone(far)], h, w) == expected, (ax, ay, d1, d2)


def test_polygon_work_depends_on_the_image_not_the_coordinates():
    for c in (10.0, 1e7, 1e12, 2.0**53):
        xy = np.array([[0, 0], [c, 0], [0, c], [-c, -c]], dtype=np.float64)
        xs, ys = numba_rle._fine_grid(xy)
        assert numba_rle._mark_bound(xs, ys, 10) <= 4 * 11
        ours = rle.from_polygons(xy.ravel().tolist(), 10, 10)
        if c == 10.0:
            assert ours == pm.frPyObjects([xy.ravel().tolist()], 10, 10)[0]
        else:
            assert ours == {"size": [10, 10], "counts": b"0T3"}  # every pixel
    # The case: 1e7 in a 10 x 10 image (2.4 GB before), now a few hundred bytes.
    assert rle.from_polygons([[0, 0, 1e7, 0, 0, 1e7]], 10, 10) == {"size": [10, 10], "counts": b"0T3"}


def test_polygon_coordinates_out_of_range():
    for c in (1e18, -1e16, 2.0**53 + 2):
        with pytest.raises(ValueError, match=r"rle.from_polygons: polygons\[0\] has the coordinate "
                                             r".* coordinates must be within \+-2\*\*53"):
            rle.from_polygons([[0, 0, c, 0, 0, 5]], 10, 10)
    for c in (np.nan, np.inf, -np.inf):
        with pytest.raises(ValueError, match=r"rle.from_polygons: polygons\[1\] must be a flat list "
                                             r"of at least 3 finite \(x, y\) pairs"):
            rle.from_polygons([[0, 0, 4, 0, 0, 5], [0, 0, c, 0, 0, 5]], 10, 10)
    rle.from_polygons([[0, 0, 2.0**53, 0, 0, -(2.0**53)]], 10, 10)  # the limit itself


# --------------------------------------------------------------------------------------------
# Item 4: sizes at and past 2**32.


SIZE = r"must be a dict with 'size': \[h, w\] \(non-negative integers, h \* w < 2\*\*32\)"


@pytest.mark.parametrize("size", [[2**32, 2**32], [2**70, 1], [2**70, 0], [2**32, 0],
                                  [0, 2**32], [65536, 65536], [2**63, 2], [-1, -1]])
@pytest.mark.parametrize("counts", [b"", b"0", [0], "0"])
@pytest.mark.parametrize("fn", FUNCS + [lambda r: rle.iou(r, r)], ids=lambda f: f.__name__)
def test_sizes_past_the_limit_are_refused(fn, size, counts):
    with pytest.raises(ValueError, match=rf"rle\.\w+: (rles|dt)\[0\] {SIZE}"):
        fn([{"size": size, "counts": counts}])


def test_largest_size_is_accepted():
    h, w = LARGEST
    obj = {"size": [h, w], "counts": compressed([7, 2**32 - 8])}
    assert rle.area(obj) == 2**32 - 8
    assert rle.area([obj, {"size": [h, w], "counts": [2**32 - 1]}]).tolist() == [2**32 - 8, 0]
    np.testing.assert_array_equal(rle.to_bbox(obj), pm.toBbox(obj))
    assert rle.iou([obj], [obj]).tolist() == [[1.0]]


def test_encode_refuses_sizes_past_the_limit():
    for shape in ((1, 2**17, 2**17), (2**16, 2**16), (3, 2**33, 1)):
        view = np.broadcast_to(np.zeros(1, bool), shape)
        with pytest.raises(ValueError, match=r"rle.encode: masks of H x W = \d+ x \d+ pixels are too "
                                             r"large for COCO RLE, which needs H \* W < 2\*\*32"):
            rle.encode(view)


def test_rasterizers_refuse_sizes_past_the_limit():
    with pytest.raises(ValueError, match=r"rle.from_polygons: height \* width must be below 2\*\*32"):
        rle.from_polygons([[0, 0, 1, 0, 0, 1]], 2**16, 2**16)
    with pytest.raises(ValueError, match=r"rle.from_boxes: height \* width must be below 2\*\*32"):
        rle.from_boxes([[0, 0, 1, 1]], 2**70, 0)
    with pytest.raises(ValueError, match=r"rle.from_boxes: width must be a non-negative integer"):
        rle.from_boxes([[0, 0, 1, 1]], 4, 5.0)


# --------------------------------------------------------------------------------------------
# Item 5: unclear errors.


@pytest.mark.parametrize("shape", [(1, 0, 5), (2, 5, 0), (3, 0, 0), (0, 5), (5, 0)])
def test_encode_of_empty_images_matches_pycocotools(shape):
    masks = np.zeros(shape, bool)
    ours = rle.encode(masks)
    stack = masks if masks.ndim == 3 else masks[None]
    ref = pm.encode(np.asfortranarray(stack.transpose(1, 2, 0).astype(np.uint8)))
    assert ours == (ref if masks.ndim == 3 else ref[0])
    assert ours == ([{"size": list(shape[-2:]), "counts": b"0"}] * shape[0] if masks.ndim == 3
                    else {"size": list(shape), "counts": b"0"})


@pytest.mark.parametrize("boxes,error,message", [
    ([[0, 0, 1, 1], [0, 0, 1]], ValueError, r"boxes must be \[x, y, w, h\] rows of shape \(N, 4\), "
                                            r"got a ragged sequence"),
    ([[0, 0, 1, [1]]], ValueError, r"boxes must be .* got a ragged sequence"),
    ([["0", "0", "1", "1"]], TypeError, r"boxes must hold real numbers .* dtype <U1"),
    ("0011", TypeError, r"boxes must hold real numbers"),
    ([[0, 0, 1, None]], TypeError, r"boxes must hold real numbers .* dtype object"),
    ([[True, False, True, True]], TypeError, r"boxes must hold real numbers .* dtype bool"),
    ([[0, 0, 1]], ValueError,
     r"boxes must be finite \[x, y, w, h\] rows of shape \(N, 4\), got shape \(1, 3\)"),
])
def test_from_boxes_bad_input_is_one_line(boxes, error, message):
    with pytest.raises(error, match=rf"rle.from_boxes: {message}") as info:
        rle.from_boxes(boxes, 4, 5)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("poly,error", [
    (["0", "0", "1", "1", "2", "0"], TypeError),
    ([[0, 0], [1, 1], [2]], ValueError),
    ([0, 0, 1, None, 2, 0], TypeError),
])
def test_from_polygons_bad_input_is_one_line(poly, error):
    with pytest.raises(error, match=r"rle.from_polygons: polygons\[0\] must ") as info:
        rle.from_polygons([poly], 4, 5)
    assert "\n" not in str(info.value)


def test_inputs_are_not_modified():
    boxes = np.array([[-1e300, 2.5, 1e308, 3.0]])
    poly = [0.0, 0.0, 1e12, 0.0, 0.0, 1e12]
    counts = np.array([2**64 - 1, 5], dtype=np.uint64)
    before = (boxes.copy(), list(poly), counts.copy())
    rle.from_boxes(boxes, 4, 5)
    rle.from_polygons([poly], 4, 5)
    with pytest.raises(ValueError):
        rle.area({"size": [4, 5], "counts": counts})
    np.testing.assert_array_equal(boxes, before[0])
    assert poly == before[1]
    np.testing.assert_array_equal(counts, before[2])
