"""``rle.iou`` on uncompressed counts (lists or tuples of run lengths, as COCO stores crowd
regions and ``pycocotools.mask.frPyObjects`` takes them), on mixes of compressed and uncompressed
counts and on dense masks: the values of the compressed-strings path, of pycocotools and of a
plain float64 reference, bit for bit where the arithmetic is the same; every malformed input
refused with the general path's message; the caller's input left alone."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastiou import rle
from fastiou.backends.numba_cpu import rle as engine
from reference import crowd_mask_iou as reference, draw_blobs

from pycocotools import mask as pm


def runs_of(mask: np.ndarray) -> list[int]:
    """Column-major runs of an (H, W) mask, starting with background, as Python ints."""
    flat = mask.T.ravel().tolist()
    runs, value, length = [], False, 0
    for pixel in flat:
        if pixel != value:
            runs.append(length)
            value, length = pixel, 0
        length += 1
    runs.append(length)
    return runs


def dense_of(counts: list[int], h: int, w: int) -> np.ndarray:
    """The (H, W) mask of column-major runs (zero-length runs allowed)."""
    flat = np.zeros(h * w, dtype=bool)
    pos = 0
    for i, c in enumerate(counts):
        flat[pos : pos + c] = i % 2 == 1
        pos += c
    assert pos == h * w
    return flat.reshape(w, h).T


def uncompressed(masks: np.ndarray, kind=list) -> list[dict]:
    return [{"size": [int(masks.shape[1]), int(masks.shape[2])], "counts": kind(runs_of(m))}
            for m in masks]


def coco_iou(dt: list[dict], gt: list[dict], crowd, h: int, w: int) -> np.ndarray:
    """pycocotools on the same input: frPyObjects (uncompressed -> its RLE), then iou."""
    return np.asarray(pm.iou(pm.frPyObjects(dt, h, w), pm.frPyObjects(gt, h, w), list(crowd)))


def masks_for(rng: np.random.Generator, k: int, h: int, w: int) -> np.ndarray:
    """Blobs and rectangles (runs across columns), an empty mask, a full one, a pixel at each end
    of the column-major order, and a copy, so that the IoU takes every kind of value."""
    out = draw_blobs(rng, np.zeros((k, h, w), dtype=bool))
    out[0] = False
    if k > 1:
        out[1] = True
    if k > 2:
        out[2] = False
        out[2, 0, 0] = out[2, -1, -1] = True
    if k > 3:
        out[3] = out[k - 1]
    return out


SIZES = [(64, 64), (1, 37), (37, 1), (1, 1), (30, 70), (600, 9), (7, 700)]


def fast(dt, gt, crowd=None, zd=0.0):
    """The fast path's own answer (None where it hands the call to the general path)."""
    return rle._fast_iou("rle.iou", dt, gt, crowd, zd)


@pytest.mark.parametrize("h,w", SIZES)
def test_uncompressed_equals_strings_pycocotools_and_reference(h, w):
    rng = np.random.default_rng(h * 1000 + w)
    a, b = masks_for(rng, 7, h, w), masks_for(rng, 5, h, w)
    b[-1] = a[-2]  # an identical pair
    crowd = [1, 0, 0, 1, 0]
    dt, gt = rle.encode(a), rle.encode(b)
    expected = rle.iou(dt, gt, crowd)  # the compressed-strings path
    np.testing.assert_allclose(expected, reference(a, b, crowd), rtol=1e-15, atol=0)
    for kind in (list, tuple):
        udt, ugt = uncompressed(a, kind), uncompressed(b, kind)
        got = fast(udt, ugt, crowd)
        assert got is not None, (h, w, kind)
        for value in (got, rle.iou(udt, ugt, crowd), rle.iou(udt, ugt, np.asarray(crowd))):
            assert value.dtype == np.float64 and value.shape == (7, 5)
            np.testing.assert_array_equal(value, expected)
        np.testing.assert_array_equal(rle.iou(tuple(udt), tuple(ugt), crowd), expected)  # general
        np.testing.assert_array_equal(coco_iou(udt, ugt, crowd, h, w), expected)
    # zero_division where the union is 0 (empty against empty, empty against a crowd region)
    for zd in (0.5, float("nan")):
        np.testing.assert_array_equal(rle.iou(uncompressed(a), uncompressed(b), crowd,
                                              zero_division=zd),
                                      rle.iou(dt, gt, crowd, zero_division=zd))


@pytest.mark.parametrize("h,w", [(64, 64), (600, 9), (1, 37)])
def test_mixed_counts_and_str(h, w):
    rng = np.random.default_rng(w)
    a, b = masks_for(rng, 6, h, w), masks_for(rng, 6, h, w)
    crowd = [0, 1, 0, 0, 1, 0]
    dt, gt = rle.encode(a), rle.encode(b)
    udt, ugt = uncompressed(a), uncompressed(b)
    expected = rle.iou(dt, gt, crowd)
    text = [{"size": r["size"], "counts": r["counts"].decode()} for r in dt]
    mixes = [
        (dt[:3] + udt[3:], gt),  # detections mixed, ground truths compressed
        (dt, gt[:2] + ugt[2:]),  # crowd regions uncompressed, as in COCO
        (udt, gt),
        (text[:2] + udt[2:4] + dt[4:], [ugt[0]] + gt[1:3] + [{"size": [h, w],
                                                              "counts": tuple(ugt[3]["counts"])}]
         + ugt[4:]),
        (text, gt),  # str and bytes
    ]
    for mdt, mgt in mixes:
        got = fast(mdt, mgt, crowd)
        assert got is not None
        np.testing.assert_array_equal(got, expected)
        np.testing.assert_array_equal(rle.iou(mdt, mgt, crowd), expected)
        np.testing.assert_array_equal(rle.iou(tuple(mdt), tuple(mgt), crowd), expected)


def test_zero_length_runs_and_runs_across_columns():
    h, w = 4, 5
    cases = [
        [3, 0, 2, 15],  # an empty run inside: background continues
        [0, 0, 0, 20],  # empty foreground runs only
        [0, 20],  # full
        [20],  # empty
        [1, 10, 0, 3, 6],  # a foreground run over three columns, then one joined across 0
        [2, 3, 4, 0, 0, 5, 6],
        [0, 1, 18, 1],  # the first and the last pixel
    ]
    dt = [{"size": [h, w], "counts": c} for c in cases]
    gt = [{"size": [h, w], "counts": c} for c in reversed(cases)]
    dense_dt = np.stack([dense_of(c, h, w) for c in cases])
    dense_gt = dense_dt[::-1]
    for crowd in ([0] * 7, [1, 0, 1, 0, 1, 0, 1]):
        want = reference(dense_dt, dense_gt, crowd)
        got = fast(dt, gt, crowd)
        assert got is not None
        np.testing.assert_allclose(got, want, rtol=1e-15, atol=0)
        np.testing.assert_array_equal(got, rle.iou(tuple(dt), tuple(gt), crowd))
        strings = rle.from_uncompressed(dt), rle.from_uncompressed(gt)  # runs kept as they are
        np.testing.assert_array_equal(got, rle.iou(*strings, crowd))


def test_empty_image_and_empty_sets():
    zero = [{"size": [0, 5], "counts": [0]}]
    np.testing.assert_array_equal(rle.iou(zero, zero), rle.iou(tuple(zero), tuple(zero)))
    np.testing.assert_array_equal(rle.iou(zero, zero, zero_division=2.0), [[2.0]])
    one = [{"size": [3, 3], "counts": [9]}]
    assert rle.iou([], one).shape == (0, 1) and rle.iou(one, []).shape == (1, 0)


def test_dense_masks_take_the_bits_and_agree():
    rng = np.random.default_rng(11)
    for h, w in [(64, 64), (600, 9), (40, 1)]:
        a, b = masks_for(rng, 6, h, w), masks_for(rng, 4, h, w)
        crowd = [0, 1, 0, 0]
        expected = rle.iou(rle.encode(a), rle.encode(b), crowd)
        np.testing.assert_allclose(expected, reference(a, b, crowd), rtol=1e-15, atol=0)
        for x, y in ((a, b), (a.view(np.uint8), b), (a, rle.encode(b)), (uncompressed(a), b)):
            np.testing.assert_array_equal(rle.iou(x, y, crowd), expected)


@pytest.mark.parametrize("parallel", [False, True])
def test_chunked_ground_truths_and_both_engines_of_iou_runs(monkeypatch, parallel):
    """Ground truths beyond the bits held at once are taken in chunks; the runs walk, chosen
    for small masks in large images, gives the same values; with ``parallel``, worker threads."""
    monkeypatch.setattr(engine, "PARALLEL_WORDS", 1 if parallel else 2**62)
    rng = np.random.default_rng(12)
    h, w = 130, 40
    a, b = masks_for(rng, 9, h, w), masks_for(rng, 11, h, w)
    crowd = (np.arange(11) % 3 == 0).tolist()
    expected = rle.iou(rle.encode(a), rle.encode(b), crowd)
    np.testing.assert_allclose(expected, reference(a, b, crowd), rtol=1e-15, atol=0)
    udt, ugt = uncompressed(a), uncompressed(b)
    words = (h * w + 63) // 64
    for held in (1, 2, 3, 11):  # ground truths whose bits fit at once
        monkeypatch.setattr(engine, "SMALL_WORDS", 2 * held * words)
        np.testing.assert_array_equal(rle.iou(udt, ugt, crowd), expected)
        np.testing.assert_array_equal(rle.iou(a, b, crowd), expected)  # dense, general path
    monkeypatch.setattr(engine, "SMALL_WORDS", words)  # one mask alone too large: the runs walk
    np.testing.assert_array_equal(rle.iou(udt, ugt, crowd), expected)
    # Small masks in a large image: drawing every mask costs more than walking the runs.
    monkeypatch.undo()
    big = np.zeros((2, 3, 700, 900), dtype=bool)
    big[0, 0, 10:20, 30:36] = big[1, 0, 15:25, 33:40] = big[0, 1, 600:610, 0:3] = True
    big[1, 2, 600:605, 1:2] = big[0, 2, 0, 899] = True
    crowd = [0, 0, 1]
    sparse_dt, sparse_gt = uncompressed(big[0]), uncompressed(big[1])
    calls = []
    monkeypatch.setattr(engine, "_bits_iou", lambda *args: calls.append(args))
    got = rle.iou(sparse_dt, sparse_gt, crowd)
    assert not calls  # the runs walk served it
    np.testing.assert_allclose(got, reference(big[0], big[1], crowd), rtol=1e-15, atol=0)
    # its runs are checked all the same
    bad = [sparse_dt[0], {"size": [700, 900], "counts": [0, 700 * 900 + 1]}, sparse_dt[2]]
    text = message(lambda: rle.iou(bad, sparse_gt, crowd))
    assert text == message(lambda: rle.iou(tuple(bad), tuple(sparse_gt), crowd))
    assert text.startswith("ValueError: rle.iou: dt[1] has a run length, or a running total")


def test_compressed_strings_of_sparse_masks_in_a_large_image_take_the_runs_walk(monkeypatch):
    """From 2**20 pixels on, compressed strings whose lengths bound the runs walk below the
    cost of drawing every mask are walked; denser ones keep the bits. Same values either way."""
    h, w = 1024, 1100
    sparse = np.zeros((2, 4, h, w), dtype=bool)
    sparse[0, 0, 10:40, 30:60] = sparse[1, 0, 15:45, 33:70] = True
    sparse[0, 1, 900:1000, 0:5] = sparse[1, 1, 950:1024, 2:4] = True
    sparse[0, 2, 0, 1099] = sparse[1, 3, 500:510, 500:510] = True
    dense = np.zeros_like(sparse)
    dense[:, :, 100:900, 100:1000] = True
    dense[0, :, 200:300, :] = False
    dense[1, 1:, :, 500:600] = False
    crowd = [0, 1, 0, 0]
    calls = []
    bits = engine._bits_iou
    monkeypatch.setattr(engine, "_bits_iou", lambda *args: calls.append(1) or bits(*args))
    for masks, drawn in ((sparse, False), (dense, True)):
        dt, gt = rle.encode(masks[0]), rle.encode(masks[1])
        calls.clear()
        got = rle.iou(dt, gt, crowd)
        assert bool(calls) == drawn
        np.testing.assert_array_equal(got, pm.iou(dt, gt, crowd))
        np.testing.assert_allclose(got, reference(masks[0], masks[1], crowd), rtol=1e-15, atol=0)


def test_the_general_path_is_not_used_for_counts(monkeypatch):
    rng = np.random.default_rng(13)
    a, b = masks_for(rng, 4, 64, 64), masks_for(rng, 6, 64, 64)
    expected = rle.iou(rle.encode(a), rle.encode(b))

    def refuse(*args):
        raise AssertionError("the general path was taken")

    monkeypatch.setattr(rle, "_parse", refuse)
    np.testing.assert_array_equal(rle.iou(uncompressed(a), uncompressed(b)), expected)
    np.testing.assert_array_equal(rle.iou(rle.encode(a), uncompressed(b)), expected)


# --------------------------------------------------------------------------------------------
# Bad input: the fast path hands it to the general path, whose message is given unchanged.


def message(call) -> str:
    with pytest.raises((ValueError, TypeError)) as info:
        call()
    return f"{info.type.__name__}: {info.value}"


H, W = 4, 5
GOOD = [0, 3, 17]
BAD_COUNTS = {
    "negative run": ([0, 1, -1, 20], "has a negative run length"),
    "not adding up": ([0, 1, 18], "has run lengths that do not add up to h * w"),
    "past h * w": ([0, 1, 30], "has a run length, or a running total of run lengths, past h * w"),
    "running total past h * w": ([15, 15, 0], "past h * w"),
    "float counts": ([0.5, 19.5], "has 'counts' that is neither a compressed string nor a list"),
    "float that is whole": ([0, 1.0, 19], "has 'counts' that is neither"),
    "numpy float": ([0, np.float64(1), 19], "has 'counts' that is neither"),
    "bools only": ([False, True], "has 'counts' that is neither"),
    "int past int64": ([0, 2**64 + 1], "past h * w"),
    "2**63 with a negative": ([2**63, -1], "past h * w"),
    "past int64, negative": ([-(2**64), 20], "has a negative run length"),
    "str items": (["0", "20"], "has 'counts' that is neither"),
    "None item": ([0, None, 20], "has 'counts' that is neither"),
    "nested": ([[0, 20]], "has 'counts' that is neither"),
    "counts a number": (20, "must have 'counts' as a compressed string"),
    "counts a set": ({0, 20}, "must have 'counts' as a compressed string"),
    "malformed string": (b"01b0", "has run lengths that do not add up"),
    "non-ascii string": ("01b\u00e9", "has a character outside"),
}


@pytest.mark.parametrize("bad,words", BAD_COUNTS.values(), ids=BAD_COUNTS.keys())
@pytest.mark.parametrize("where", ["dt", "gt"])
def test_malformed_counts_give_the_general_paths_error(bad, words, where):
    good = {"size": [H, W], "counts": GOOD}
    item = {"size": [H, W], "counts": bad}
    dt, gt = [good, item, good], [good, good]
    if where == "gt":
        dt, gt = [good, good], [good, item]
    assert fast(dt, gt) is None
    text = message(lambda: rle.iou(dt, gt))
    assert text == message(lambda: rle.iou(tuple(dt), tuple(gt)))
    assert text.startswith(f"ValueError: rle.iou: {where}[1] ") and words in text, text
    # mixed with compressed strings: the same
    strings = rle.from_uncompressed(good)
    mixed_dt = [strings] + dt[1:] if where == "gt" else dt[:2] + [strings]
    assert message(lambda: rle.iou(mixed_dt, gt)) == message(lambda: rle.iou(tuple(mixed_dt),
                                                                             tuple(gt)))


BAD_SIZES = {
    "size of one": {"size": [H], "counts": GOOD},
    "float size": {"size": [4.0, W], "counts": GOOD},
    "bool size": {"size": [True, 20], "counts": [0, 3, 17]},
    "other size": {"size": [W, H], "counts": GOOD},
    "negative size": {"size": [-4, -5], "counts": GOOD},
    "too large": {"size": [70000, 70000], "counts": [0]},
    "no size": {"counts": GOOD},
    "no counts": {"size": [H, W]},
    "not a dict": [0, 3, 17],
}


@pytest.mark.parametrize("item", BAD_SIZES.values(), ids=BAD_SIZES.keys())
def test_wrong_size_entries_give_the_general_paths_error(item):
    good = {"size": [H, W], "counts": GOOD}
    dt, gt = [good], [good, item]
    assert fast(dt, gt) is None
    text = message(lambda: rle.iou(dt, gt, [0, 0]))
    assert text == message(lambda: rle.iou(tuple(dt), tuple(gt), [0, 0]))
    assert text.startswith("ValueError: rle.iou: ") and "gt[" in text, text


def test_accepted_as_before():
    """What the general path accepts, the fast path accepts with the same values: bools among
    integers, NumPy integers, a bad ``iscrowd`` still refused with its own message."""
    good = {"size": [H, W], "counts": GOOD}
    same = {
        "bools among ints": [0, True, False, 2, 17],
        "numpy ints": [np.int64(0), np.int32(3), np.uint8(17)],
        "array counts": np.array(GOOD),
        "big-endian array": np.array(GOOD, dtype=">i8"),
        "uint64 array": np.array(GOOD, dtype=np.uint64),
        "empty runs": [0, 0, 0, 3, 17],
    }
    for name, counts in same.items():
        item = {"size": [H, W], "counts": counts}
        got = rle.iou([good, item], [item, good])
        np.testing.assert_array_equal(got, rle.iou((good, item), (item, good)), err_msg=name)
        np.testing.assert_array_equal(got, np.ones((2, 2)), err_msg=name)
    for crowd, text in (([0, 1, 0], r"iscrowd must hold one bool per ground truth \(2\)"),
                        (["a", "b"], "iscrowd must hold one bool per ground truth")):
        with pytest.raises(ValueError, match=rf"rle.iou: {text}"):
            rle.iou([good], [good, good], crowd)
    with pytest.raises(TypeError, match="rle.iou: zero_division must be a real number"):
        rle.iou([good], [good], zero_division="0")


def test_inputs_are_not_modified():
    rng = np.random.default_rng(14)
    a, b = masks_for(rng, 3, 20, 30), masks_for(rng, 4, 20, 30)
    dt = uncompressed(a)
    dt[1]["counts"] = tuple(dt[1]["counts"])
    gt = rle.encode(b)[:2] + uncompressed(b)[2:]
    gt[0] = {"size": gt[0]["size"], "counts": gt[0]["counts"].decode()}
    crowd = [True, False, False, True]
    before = copy.deepcopy((dt, gt, crowd))
    a_before, b_before = a.copy(), b.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rle.iou(dt, gt, crowd)
        rle.iou(a, b, crowd)
    assert (dt, gt, crowd) == before
    np.testing.assert_array_equal(a, a_before)
    np.testing.assert_array_equal(b, b_before)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 9), st.integers(1, 9), st.integers(1, 4), st.integers(1, 4),
       st.integers(0, 2**32 - 1), st.booleans())
def test_property_random_runs_with_empty_runs(h, w, n, m, seed, as_tuple):
    """Random masks whose runs get empty runs inserted (a run split as c, 0, 0): the fast path
    equals the general path and the float64 reference."""
    rng = np.random.default_rng(seed)
    a, b = rng.random((n, h, w)) < 0.5, rng.random((m, h, w)) < 0.4
    crowd = (rng.random(m) < 0.3).tolist()

    def with_empty_runs(mask):
        runs = []
        for c in runs_of(mask):
            runs += [c] if rng.random() < 0.7 or c == 0 else [c - 1, 0, 1]
        return {"size": [h, w], "counts": tuple(runs) if as_tuple else runs}

    dt, gt = [with_empty_runs(x) for x in a], [with_empty_runs(x) for x in b]
    got = fast(dt, gt, crowd)
    assert got is not None
    np.testing.assert_array_equal(got, rle.iou(tuple(dt), tuple(gt), crowd))
    np.testing.assert_allclose(got, reference(a, b, crowd), rtol=1e-15, atol=0)
