"""The one-compiled-call paths for small NumPy calls of ``mask_iou`` / ``mask_ioa`` and
``rle.iou``: bit for bit the general path's result and the float64 reference's (and
pycocotools'), taken where they should be, and every input they must not take still checked and
refused as before."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import fastiou
from fastiou import _dispatch, rle

from pycocotools import mask as pm

MASKS = _dispatch.load("numba").masks
RLE = _dispatch.load("numba").rle


def small_masks(rng: np.random.Generator, n: int, h: int, w: int) -> np.ndarray:
    """Blobs and noise, plus an empty mask, a full one and one touching only the borders."""
    yy, xx = np.mgrid[0:h, 0:w]
    c = rng.uniform(0, [h, w], (n, 2))
    r = rng.uniform(1, [h / 2 + 1, w / 2 + 1], (n, 2))
    masks = ((yy - c[:, :1, None]) / r[:, :1, None]) ** 2 + ((xx - c[:, 1:, None]) / r[:, 1:, None]) ** 2 <= 1
    masks[n // 2:] ^= rng.random((n - n // 2, h, w)) < 0.05
    masks[0] = False
    if n > 1:
        masks[1] = True
    if n > 2:
        masks[2] = False
        masks[2, 0, :] = masks[2, -1, :] = masks[2, :, 0] = masks[2, :, -1] = True
    return masks


def reference(a: np.ndarray, b: np.ndarray, op: str, aligned: bool, zd: float) -> np.ndarray:
    """Plain float64 IoU / IoA of dense masks, rounded once to float32."""
    a, b = a.astype(bool).astype(np.float64), b.astype(bool).astype(np.float64)
    if aligned:
        inter = (a * b).sum(axis=(1, 2))
        area1, area2 = a.sum(axis=(1, 2)), b.sum(axis=(1, 2))
    else:
        inter = np.einsum("nhw,mhw->nm", a, b)
        area1, area2 = a.sum(axis=(1, 2))[:, None], b.sum(axis=(1, 2))[None, :]
    den = area1 if op == "ioa" else area1 + area2 - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(den != 0, inter / np.where(den != 0, den, 1), zd)
    return out.astype(np.float32)


SHAPES = [(1, 1, 1), (3, 1, 7), (4, 7, 1), (5, 31, 17), (4, 64, 64), (6, 65, 66), (3, 20, 128),
          (2, 130, 40)]


@pytest.mark.parametrize("dtype", [np.bool_, np.uint8, np.int8])
@pytest.mark.parametrize("op", ["iou", "ioa"])
@pytest.mark.parametrize("aligned", [False, True], ids=["pairwise", "aligned"])
def test_mask_fast_path_equals_general_path_and_reference(dtype, op, aligned):
    rng = np.random.default_rng(1)
    fn = fastiou.mask_iou if op == "iou" else fastiou.mask_ioa
    for n, h, w in SHAPES:
        a = small_masks(rng, n, h, w)
        b = small_masks(rng, n if aligned else n + 2, h, w)
        if dtype is not np.bool_:
            a = a.astype(dtype) * (-3 if dtype is np.int8 else 255)  # any non-zero byte counts
            b = b.astype(dtype)
        for zd in (0.0, 1.0, float("nan")):
            fast = MASKS.mask_pair_fast(op, a, b, zd, aligned)
            assert fast is not None, (n, h, w)  # the fast path takes these calls
            public = fn(a, b, aligned=aligned, zero_division=zd)
            general = fn(a, b, aligned=aligned, zero_division=zd, backend="numba")  # general path
            for got in (fast, public):
                assert type(got) is np.ndarray and got.dtype == np.float32
                assert got.shape == general.shape
                np.testing.assert_array_equal(got, general)
            np.testing.assert_array_equal(public, reference(a, b, op, aligned, zd))


def test_mask_fast_path_leaves_inputs_alone():
    rng = np.random.default_rng(2)
    a, b = small_masks(rng, 4, 30, 50), small_masks(rng, 5, 30, 50)
    a0, b0 = a.copy(), b.copy()
    fastiou.mask_iou(a, b)
    np.testing.assert_array_equal(a, a0)
    np.testing.assert_array_equal(b, b0)


def test_mask_calls_the_fast_path_refuses_still_work():
    rng = np.random.default_rng(3)
    a, b = small_masks(rng, 4, 30, 50), small_masks(rng, 5, 30, 50)
    expected = reference(a, b, "iou", False, 0.0)
    declined = {
        "fortran": (np.asfortranarray(a), b),
        "strided": (np.repeat(a, 2, axis=2)[:, :, ::2], b),
        "int16": (a.astype(np.int16), b),
        "batch": (a[None], b[None]),
    }
    for name, (x, y) in declined.items():
        assert MASKS.mask_pair_fast("iou", x, y, 0.0, False) is None, name
        got = fastiou.mask_iou(x, y)
        np.testing.assert_array_equal(got.reshape(expected.shape), expected, err_msg=name)
    # Empty sets and work past the serial threshold go to the general path too.
    assert MASKS.mask_pair_fast("iou", a[:0], b, 0.0, False) is None
    assert fastiou.mask_iou(a[:0], b).shape == (0, 5)
    big = np.zeros((2, 1024, 1024), bool)
    assert MASKS.mask_pair_fast("iou", big, big, 0.0, False) is None
    # Options the fast path does not read send the call to the general path, unchanged.
    np.testing.assert_array_equal(fastiou.mask_iou(a, b, memory_budget=4096), expected)
    np.testing.assert_array_equal(fastiou.mask_iou(a.astype(np.float32), b.astype(np.float32),
                                                   threshold=0.5), expected)


BAD_MASK_CALLS = [
    ((np.zeros((2, 4, 5), bool), np.zeros((2, 4, 6), bool)), {}, ValueError,
     r"mask_iou: masks1 and masks2 must have the same \(H, W\)"),
    ((np.zeros((2, 4, 5), bool), np.zeros((3, 4, 5), bool)), {"aligned": True}, ValueError,
     r"mask_iou: aligned=True needs as many masks"),
    ((np.zeros((2, 4, 5), bool), np.zeros((2, 4, 5), bool)), {"aligned": "yes"}, TypeError,
     r"mask_iou: aligned must be a bool"),
    ((np.zeros((2, 4, 5), bool), np.zeros((2, 4, 5), bool)), {"threshold": 0.5}, ValueError,
     r"mask_iou: threshold=0.5 was given but masks1 is a bool mask"),
    ((np.zeros((2, 4, 5), np.float32), np.zeros((2, 4, 5), bool)), {}, ValueError,
     r"mask_iou: masks1 holds floating values"),
    ((np.zeros((4, 5), bool), np.zeros((2, 4, 5), bool)), {}, ValueError,
     r"mask_iou: masks1 must have shape \(\.\.\., N, H, W\)"),
    ((np.zeros((2, 4, 5), bool), np.zeros((2, 4, 5), bool)), {"zero_division": "0"}, TypeError,
     r"mask_iou: zero_division must be a real number"),
    ((np.zeros((2, 4, 5), "U1"), np.zeros((2, 4, 5), bool)), {}, TypeError,
     r"mask_iou: masks1 must hold bool, integer or floating values"),
]


@pytest.mark.parametrize("args,kwargs,exc,message", BAD_MASK_CALLS,
                         ids=[m.split(": ")[1][:30] for *_, m in BAD_MASK_CALLS])
def test_mask_bad_input_is_refused_as_before(args, kwargs, exc, message):
    with pytest.raises(exc, match=message):
        fastiou.mask_iou(*args, **kwargs)
    with pytest.raises(exc, match=message):
        fastiou.mask_iou(*args, backend="numba", **kwargs)


# --------------------------------------------------------------------------------------------
# rle.iou


def coco_encode(masks: np.ndarray) -> list[dict]:
    return pm.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))


def rle_reference(dt: np.ndarray, gt: np.ndarray, crowd: list[int], zd: float) -> np.ndarray:
    """Plain float64 IoU of dense masks with COCO's crowd rule."""
    d = dt.reshape(len(dt), -1).astype(np.float64)
    g = gt.reshape(len(gt), -1).astype(np.float64)
    inter = d @ g.T
    union = np.where(np.asarray(crowd, bool)[None, :], d.sum(1)[:, None],
                     d.sum(1)[:, None] + g.sum(1)[None, :] - inter)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union != 0, inter / np.where(union != 0, union, 1), zd)


@pytest.mark.parametrize("crowd", ["none", "some"])
def test_rle_fast_path_equals_general_path_pycocotools_and_reference(crowd):
    rng = np.random.default_rng(5)
    for _, h, w in SHAPES + [(0, 480, 64)]:
        dense_dt, dense_gt = small_masks(rng, 5, h, w), small_masks(rng, 4, h, w)
        dt, gt = coco_encode(dense_dt), coco_encode(dense_gt)
        iscrowd = [0] * 4 if crowd == "none" else [1, 0, 1, 0]
        joined = b" ".join(r["counts"] for r in dt + gt)
        fast = RLE.iou_strings(joined, 5, 4, h, w, np.asarray(iscrowd, bool), 0.0)
        assert fast is not None, (h, w)  # the fast path takes these calls
        general = rle.iou(tuple(dt), tuple(gt), iscrowd)  # tuples take the general path
        expected = pm.iou(dt, gt, iscrowd)
        for got in (fast, rle.iou(dt, gt, iscrowd), rle.iou(dt, gt, np.asarray(iscrowd))):
            assert got.dtype == np.float64 and got.shape == (5, 4)
            np.testing.assert_array_equal(got, general)
            np.testing.assert_array_equal(got, expected)
        np.testing.assert_allclose(general, rle_reference(dense_dt, dense_gt, iscrowd, 0.0),
                                   rtol=1e-15, atol=0)
        # str counts (as json gives them) and zero_division
        text_dt = [{"size": r["size"], "counts": r["counts"].decode()} for r in dt]
        np.testing.assert_array_equal(rle.iou(text_dt, gt, iscrowd), expected)
        for zd in (1.0, float("nan")):
            np.testing.assert_array_equal(rle.iou(dt, gt, iscrowd, zero_division=zd),
                                          rle.iou(tuple(dt), tuple(gt), iscrowd, zero_division=zd))


def test_rle_fast_path_empty_image_and_empty_masks():
    empty = rle.encode(np.zeros((2, 6, 7), bool))
    full = rle.encode(np.ones((1, 6, 7), bool))
    np.testing.assert_array_equal(rle.iou(empty, empty), np.zeros((2, 2)))
    np.testing.assert_array_equal(rle.iou(empty + full, full, [1], zero_division=-1.0),
                                  [[-1.0], [-1.0], [1.0]])
    zero = [{"size": [0, 5], "counts": b"0"}]
    np.testing.assert_array_equal(rle.iou(zero, zero), rle.iou(tuple(zero), tuple(zero)))


def test_rle_large_calls_take_the_general_path(monkeypatch):
    rng = np.random.default_rng(6)
    dt, gt = coco_encode(small_masks(rng, 6, 90, 70)), coco_encode(small_masks(rng, 3, 90, 70))
    expected = pm.iou(dt, gt, [0, 1, 0])
    for name in ("SMALL_CHARS", "SMALL_WORDS"):
        with monkeypatch.context() as m:
            m.setattr(RLE, name, 10)
            assert RLE.iou_strings(b" ".join(r["counts"] for r in dt + gt), 6, 3, 90, 70,
                                   np.zeros(3, bool), 0.0) is None
            np.testing.assert_array_equal(rle.iou(dt, gt, [0, 1, 0]), expected)


def message(call) -> str:
    with pytest.raises((ValueError, TypeError)) as info:
        call()
    return f"{info.type.__name__}: {info.value}"


def test_rle_bad_input_is_refused_as_before():
    rng = np.random.default_rng(7)
    dt, gt = coco_encode(small_masks(rng, 3, 20, 30)), coco_encode(small_masks(rng, 2, 20, 30))
    good = dt[1]["counts"]
    bad_counts = {
        "bad character": good[:3] + b"\x7f" + good[4:],
        "space": good[:3] + b" " + good[3:],
        "truncated": good[:-1] + b"o",
        "wrong total": good[:-1],
        "non-ascii": good.decode()[:3] + "é" + good.decode()[3:],
    }
    for name, counts in bad_counts.items():
        broken = [dt[0], {"size": [20, 30], "counts": counts}, dt[2]]
        text = message(lambda: rle.iou(broken, gt))
        assert text == message(lambda: rle.iou(tuple(broken), tuple(gt))), name
        assert text.startswith("ValueError: rle.iou: dt[1] "), (name, text)
        # The malformed RLE is reported before a bad iscrowd, as on the general path.
        assert message(lambda: rle.iou(broken, gt, [0])) == text, name
    bad_sizes = {
        "float size": {"size": [20.0, 30], "counts": good},
        "bool size": {"size": [True, 30], "counts": good},
        "other size": {"size": [30, 20], "counts": good},
        "size array": {"size": np.array([20, 30]), "counts": good},
        "no counts": {"size": [20, 30]},
        "list counts": {"size": [20, 30], "counts": [600]},
    }
    for name, item in bad_sizes.items():
        call = (lambda: rle.iou(dt, [gt[0], item])) if name != "list counts" else (
            lambda: rle.iou(dt, [gt[0], item], [0, 1]))
        general = (lambda: rle.iou(tuple(dt), (gt[0], item))) if name != "list counts" else (
            lambda: rle.iou(tuple(dt), (gt[0], item), [0, 1]))
        if name in ("size array", "list counts"):  # valid: the general path computes them
            np.testing.assert_array_equal(call(), general())
            continue
        assert message(call) == message(general), name
        assert "rle.iou: " in message(call)
    with pytest.raises(ValueError, match=r"rle.iou: iscrowd must hold one bool per ground truth \(2\)"):
        rle.iou(dt, gt, [0, 1, 0])
    with pytest.raises(ValueError, match=r"rle.iou: iscrowd must hold one bool per ground truth"):
        rle.iou(dt, gt, ["a", "b"])
    with pytest.raises(TypeError, match=r"rle.iou: zero_division must be a real number"):
        rle.iou(dt, gt, zero_division="0")
    with pytest.raises(TypeError, match=r"rle.iou: dt must be an RLE dict or a list of them"):
        rle.iou(3, gt)


def test_rle_fast_path_leaves_inputs_alone():
    rng = np.random.default_rng(8)
    dt, gt = coco_encode(small_masks(rng, 3, 20, 30)), coco_encode(small_masks(rng, 2, 20, 30))
    text = [{"size": list(r["size"]), "counts": r["counts"].decode()} for r in gt]
    before = repr(dt) + repr(text)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rle.iou(dt, text, [1, 0])
    assert repr(dt) + repr(text) == before
