"""Dataset evaluation: segmented IoU, ``evaluate``, ``Evaluator`` and ``evaluate_step``.

Every result is compared with a plain float64 reference written below: one image at a time, with
Python floats, COCO's greedy rule spelled out (predictions by descending score, ties in input
order; each takes the unmatched object of highest IoU >= threshold and > 0, the last of equal
IoUs as pycocotools does), and the means and counts taken by hand.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import pickle
import random
import threading
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastiou
import reference
from fastiou import _formats, _validate

# --------------------------------------------------------------------------------------------
# The reference


def ref_mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    inter = int(np.logical_and(a, b).sum())
    union = int(np.logical_or(a, b).sum())
    return 0.0 if union == 0 else inter / union


def ref_block(kind: str, g: np.ndarray, p: np.ndarray, fmt: str = "xyxy") -> list[list[float]]:
    """G x P IoU of one image, float64, one pair at a time."""
    if kind == "boxes":
        return [[reference.iou(reference.to_corners(a, fmt), reference.to_corners(b, fmt))
                 for b in p] for a in g]
    return [[ref_mask_iou(a, b) for b in p] for a in g]


def ref_greedy(block: list[list[float]], scores: list[float] | None, t: float) -> list[int]:
    """COCO greedy matching of one image: the matched prediction of each object, or -1."""
    n_gt = len(block)
    n_pred = len(block[0]) if n_gt else (len(scores) if scores is not None else 0)
    order = list(range(n_pred))
    if scores is not None:
        order.sort(key=lambda j: -scores[j])  # stable: ties keep input order
    taken = [-1] * n_gt
    for j in order:
        best, m = min(t, 1 - 1e-10), -1
        for g in range(n_gt):
            v = block[g][j]
            if taken[g] >= 0 or not v > 0 or v < best:
                continue
            best, m = v, g
        if m >= 0:
            taken[m] = j
    return taken


def ref_evaluate(kind: str, gt: list, pred: list, scores: list | None, t: float,
                 fmt: str = "xyxy") -> dict:
    per_image, pred_index, ious = [], [], []
    for i, (g, p) in enumerate(zip(gt, pred)):
        block = ref_block(kind, g, p, fmt)
        s = None if scores is None else [float(v) for v in scores[i]]
        taken = ref_greedy(block, s, t) if len(p) else [-1] * len(g)
        pred_index += taken
        ious += [block[k][j] if j >= 0 else 0.0 for k, j in enumerate(taken)]
        per_image.append((len(g), len(p), sum(j >= 0 for j in taken)))
    n_gt = sum(r[0] for r in per_image)
    n_pred = sum(r[1] for r in per_image)
    matched = [v for v, j in zip(ious, pred_index) if j >= 0]
    return {
        "pred_index": pred_index, "iou": ious, "per_image": per_image,
        "mean_iou": sum(ious) / n_gt if n_gt else math.nan,
        "mean_iou_matched": sum(matched) / len(matched) if matched else math.nan,
        "precision": len(matched) / n_pred if n_pred else math.nan,
        "recall": len(matched) / n_gt if n_gt else math.nan,
        "f1": 2 * len(matched) / (n_gt + n_pred) if n_gt + n_pred else math.nan,
    }


def grade(v: float) -> str:
    if math.isnan(v):
        return "undefined"
    return "excellent" if v > 0.95 else "good" if v > 0.7 else "poor"


def check_report(report: fastiou.EvaluationReport, ref: dict, rtol: float) -> None:
    np.testing.assert_array_equal(report.per_object["pred_index"], ref["pred_index"])
    np.testing.assert_allclose(report.per_object["iou"], ref["iou"], rtol=rtol, atol=1e-7)
    assert report.per_object["iou"].dtype == np.float64
    n = np.array(ref["per_image"], dtype=np.int64).reshape(-1, 3)
    np.testing.assert_array_equal(report.per_image["num_gt"], n[:, 0])
    np.testing.assert_array_equal(report.per_image["num_pred"], n[:, 1])
    np.testing.assert_array_equal(report.per_image["num_matched"], n[:, 2])
    image = np.repeat(np.arange(n.shape[0]), n[:, 0])
    np.testing.assert_array_equal(report.per_object["image"], image)
    np.testing.assert_array_equal(report.per_object["gt_index"],
                                  np.concatenate([np.arange(k) for k in n[:, 0]] or [[]]))
    for key in ("mean_iou", "mean_iou_matched", "precision", "recall", "f1"):
        np.testing.assert_allclose(getattr(report, key), ref[key], rtol=rtol, err_msg=key)
    assert report.grade == grade(report.mean_iou)
    expected_grades = ["missed" if j < 0 else grade(v)
                       for j, v in zip(ref["pred_index"], ref["iou"])]
    assert report.per_object["grade"].tolist() == expected_grades
    assert report.counts == {k: expected_grades.count(k)
                             for k in ("excellent", "good", "poor", "missed")}


# --------------------------------------------------------------------------------------------
# Data


def rand_boxes(rng: np.random.Generator, n: int, dims: int = 2) -> np.ndarray:
    lo = rng.uniform(0, 60, (n, dims))
    return np.concatenate([lo, lo + rng.uniform(2, 30, (n, dims))], axis=1)


def box_dataset(rng: np.random.Generator, images: int, dims: int = 2):
    """Ground truth, and predictions near it (jittered copies, plus noise), with scores."""
    gt, pred, scores = [], [], []
    for i in range(images):
        g = rand_boxes(rng, int(rng.integers(0, 7)) if i else 4, dims)
        near = g[rng.random(g.shape[0]) < 0.8]
        near = near + rng.normal(0, 2.0, near.shape)
        p = np.concatenate([near, rand_boxes(rng, int(rng.integers(0, 4)), dims)])
        p = p[rng.permutation(p.shape[0])]
        gt.append(g)
        pred.append(p)
        scores.append(rng.permutation(p.shape[0]).astype(np.float64) / 7)  # distinct
    return gt, pred, scores


def mask_dataset(rng: np.random.Generator, images: int, shapes=((20, 70), (33, 64))):
    """Rectangles and blobs; (H, W) varies between images."""
    gt, pred, scores = [], [], []
    for i in range(images):
        h, w = shapes[i % len(shapes)]
        n = int(rng.integers(0, 5)) if i else 3

        def rect() -> np.ndarray:
            m = np.zeros((h, w), bool)
            y, x = rng.integers(0, h - 4), rng.integers(0, w - 4)
            m[y:y + rng.integers(3, h - y + 1), x:x + rng.integers(3, w - x + 1)] = True
            return m

        g = np.array([rect() for _ in range(n)], dtype=bool).reshape(n, h, w)
        noisy = g ^ (rng.random(g.shape) < 0.08)
        p = np.concatenate([noisy, np.array([rect() for _ in range(int(rng.integers(0, 3)))],
                                            dtype=bool).reshape(-1, h, w)])
        gt.append(g)
        pred.append(p)
        scores.append(rng.random(p.shape[0]))
    return gt, pred, scores


def on(engine, items):  # noqa: ANN001
    return [engine.asarray(np.asarray(x)) for x in items]


# --------------------------------------------------------------------------------------------
# Segmented IoU


def segments(rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
    n = rng.integers(0, 5, count)
    m = rng.integers(0, 6, count)
    n[1], m[2] = 0, 0
    return np.r_[0, np.cumsum(n)], np.r_[0, np.cumsum(m)]


@pytest.mark.parametrize(("dims", "fmt", "dtype"), [
    (2, "xyxy", np.float32), (2, "xywh", np.float64), (2, "cxcywh", np.int32),
    (3, "xyzxyz", np.float32), (3, "xyzwhd", np.float64),
])
def test_segmented_box_iou(engine, dims, fmt, dtype):
    rng = np.random.default_rng(dims * 10 + len(fmt))
    o1, o2 = segments(rng, 9)
    b1 = rand_boxes(rng, o1[-1], dims).round().astype(dtype)
    b2 = rand_boxes(rng, o2[-1], dims).round().astype(dtype)
    b1[0, dims:] = b1[0, :dims]  # zero area
    if dtype != np.int32:
        b2[1, 0] = np.nan
    with engine.context():
        values, blocks = fastiou.segmented_box_iou(engine.asarray(b1), engine.asarray(b2), o1, o2,
                                                   fmt=fmt, zero_division=0.5,
                                                   backend=engine.backend)
    values = engine.to_numpy(values)
    out = np.float64 if dtype == np.float64 and engine.name != "jax" else np.float32
    assert values.dtype == out and isinstance(blocks, np.ndarray) and blocks.dtype == np.int64
    expected, starts = [], [0]
    for s in range(len(o1) - 1):
        block = [[reference.iou(reference.to_corners(a, fmt), reference.to_corners(b, fmt), 0.5)
                  for b in b2[o2[s]:o2[s + 1]]] for a in b1[o1[s]:o1[s + 1]]]
        expected += [v for row in block for v in row]
        starts.append(len(expected))
    np.testing.assert_array_equal(blocks, starts)
    np.testing.assert_allclose(values, expected, rtol=1e-5 if out == np.float32 else 1e-12,
                               atol=1e-6 if out == np.float32 else 1e-13)


def extreme_boxes(rng: np.random.Generator, k: int, dims: int, dtype,  # noqa: ANN001
                  engine) -> np.ndarray:  # noqa: ANN001
    """Finite corner boxes whose areas overflow or underflow in ``dtype`` as ``engine`` holds it
    (JAX without x64: float32): per box, unit, huge (beyond ``scale_limits``) or tiny (extents
    below its inverse) integer multiples, with some boxes huge or tiny along some axes only;
    boxes of one scale overlap often."""
    held = engine.asarray(np.zeros(0, dtype)).dtype
    big, tiny = (float(v) for v in _formats.scale_limits(np.dtype(held), dims))
    s = np.repeat(rng.choice([1.0, 8 * big, tiny / 8], size=(k, 1)), dims, axis=1)
    s[rng.random(k) < 0.3, 0] = 1.0
    lo = rng.integers(0, 4, (k, dims)) * s
    hi = lo + rng.integers(1, 5, (k, dims)) * s
    return np.concatenate([lo, hi], axis=1).astype(dtype)


EXTREME_CASES = [(2, np.float32), (2, np.float64), (3, np.float32), (3, np.float64)]


@pytest.mark.parametrize(("dims", "dtype"), EXTREME_CASES)
def test_segmented_box_iou_is_box_iou_for_extreme_boxes(engine, dims, dtype):
    """Pairs with a box beyond the scale limits take box_iou's exact path in every block: the
    same value bit for bit, not the plain formula's overflow or underflow."""
    rng = np.random.default_rng(dims * 100 + np.dtype(dtype).itemsize)
    o1, o2 = segments(rng, 6)
    b1 = extreme_boxes(rng, o1[-1], dims, dtype, engine)
    b2 = extreme_boxes(rng, o2[-1], dims, dtype, engine)
    b1[-1], b2[-1] = np.r_[[0] * dims, [10] * dims], np.r_[[0] * dims, [1e20] * dims]
    with engine.context():
        values, blocks = fastiou.segmented_box_iou(engine.asarray(b1), engine.asarray(b2), o1, o2,
                                                   backend=engine.backend)
        values = engine.to_numpy(values)
        expected = [engine.to_numpy(fastiou.box_iou(engine.asarray(b1[o1[s]:o1[s + 1]]),
                                                    engine.asarray(b2[o2[s]:o2[s + 1]]),
                                                    backend=engine.backend))
                    for s in range(len(o1) - 1)]
    for s, block in enumerate(expected):
        assert values.dtype == block.dtype
        np.testing.assert_array_equal(values[blocks[s]:blocks[s + 1]].reshape(block.shape), block)
    everything = np.concatenate([e.reshape(-1) for e in expected])
    assert np.isfinite(everything).all()
    assert ((everything > 0) & (everything < 1)).any()  # overlaps of extreme boxes, not only 0/1


def test_segmented_mask_iou(engine):
    rng = np.random.default_rng(3)
    o1, o2 = segments(rng, 8)
    m1 = rng.random((o1[-1], 9, 70)) < 0.3
    m2 = rng.random((o2[-1], 9, 70)) < 0.3
    m1[0] = False
    with engine.context():
        values, blocks = fastiou.segmented_mask_iou(engine.asarray(m1), engine.asarray(m2),
                                                    o1.tolist(), o2, zero_division=0.25,
                                                    backend=engine.backend)
    values = engine.to_numpy(values)
    assert values.dtype == np.float32
    expected = []
    for s in range(len(o1) - 1):
        for a in m1[o1[s]:o1[s + 1]]:
            expected += [ref_mask_iou(a, b) if (a | b).any() else 0.25 for b in m2[o2[s]:o2[s + 1]]]
    np.testing.assert_allclose(values, expected, rtol=1e-6, atol=1e-7)
    assert blocks[-1] == len(expected)


def test_segmented_offsets_are_checked():
    b = np.zeros((3, 4), np.float32)
    f = fastiou.segmented_box_iou
    with pytest.raises(ValueError, match=r"segmented_box_iou: offsets1 must be non-decreasing, "
                                         r"but offsets1\[2\] = 1 < offsets1\[1\] = 2"):
        f(b, b, [0, 2, 1, 3], [0, 1, 2, 3])
    with pytest.raises(ValueError, match=r"offsets2 must start at 0 and end at the number of rows "
                                         r"\(3\), got 0 \.\.\. 4"):
        f(b, b, [0, 3], [0, 4])
    with pytest.raises(ValueError, match=r"offsets1 must be a 1-D sequence of S \+ 1 integer"):
        f(b, b, np.array([0.0, 3.0]), [0, 3])
    with pytest.raises(ValueError, match=r"offsets1 must be a 1-D sequence"):
        f(b, b, [], [])
    with pytest.raises(ValueError, match=r"offsets1 and offsets2 must describe as many segments, "
                                         r"got 2 and 1"):
        f(b, b, [0, 1, 3], [0, 3])
    with pytest.raises(ValueError, match=r"must start at 0"):
        f(b, b, [-1, 3], [0, 3])
    with pytest.raises(ValueError, match=r"offsets1 holds offsets past 2\*\*63 - 1"):
        f(b, b, np.array([0, 2**64 - 1], np.uint64), [0, 3])
    with pytest.raises(ValueError, match=r"boxes1 and boxes2 must be concatenated"):
        f(np.zeros((2, 3, 4)), np.zeros((2, 3, 4)), [0, 3], [0, 3])
    # A total past 2**62 pairs is refused before any product can overflow.
    big = np.array([0, 2**40, 2**41], np.int64)
    with pytest.raises(ValueError, match=r"more than 2\*\*62 pairs"):
        _validate.segment_blocks("f", big, big)
    masks = np.zeros((3, 4, 5), bool)
    with pytest.raises(ValueError, match=r"segmented_mask_iou: offsets2 must start at 0"):
        fastiou.segmented_mask_iou(masks, masks, [0, 3], [0, 2])
    with pytest.raises(ValueError, match=r"segmented_mask_iou: masks1 and masks2 must have the "
                                         r"same"):
        fastiou.segmented_mask_iou(masks, np.zeros((3, 4, 6), bool), [0, 3], [0, 3])


def test_group_segments_pairs_only_within_image_and_category():
    rng = np.random.default_rng(4)
    img1, img2 = rng.integers(0, 5, 40), rng.integers(1, 7, 50)
    cat1, cat2 = rng.integers(0, 3, 40), rng.integers(0, 3, 50)
    b1, b2 = rand_boxes(rng, 40), rand_boxes(rng, 50)
    s = fastiou.group_segments(img1, img2, cat1, cat2)
    values, blocks = fastiou.segmented_box_iou(b1[s.order1], b2[s.order2], s.offsets1, s.offsets2)
    got = {}
    for k, (image, category) in enumerate(s.keys):
        rows1 = s.order1[s.offsets1[k]:s.offsets1[k + 1]]
        rows2 = s.order2[s.offsets2[k]:s.offsets2[k + 1]]
        block = values[blocks[k]:blocks[k + 1]].reshape(len(rows1), len(rows2))
        for a, row in zip(rows1, block):
            for b, v in zip(rows2, row):
                got[a, b] = v
    expected = {(a, b): reference.iou(b1[a], b2[b]) for a in range(40) for b in range(50)
                if img1[a] == img2[b] and cat1[a] == cat2[b]}
    assert got.keys() == expected.keys()
    np.testing.assert_allclose([got[k] for k in expected], list(expected.values()), rtol=1e-12)
    keys = sorted({(i, c) for i, c in zip(img1, cat1)} | {(i, c) for i, c in zip(img2, cat2)})
    assert s.keys.tolist() == [list(k) for k in keys]
    by_image = fastiou.group_segments(img1, img2)
    assert by_image.keys[:, 0].tolist() == sorted(set(img1) | set(img2))
    with pytest.raises(ValueError, match=r"group_segments: give category1 and category2 both"):
        fastiou.group_segments(img1, img2, cat1)
    with pytest.raises(ValueError, match=r"group_segments: image1 must be a 1-D array of integers"):
        fastiou.group_segments(np.zeros((2, 2), int), img2)


# --------------------------------------------------------------------------------------------
# evaluate against the reference, on every engine


def test_the_brief_example(engine):
    gt, pred = [np.array([[0, 0, 10, 10]], np.float32)], [np.array([[5, 5, 15, 15]], np.float32)]
    with engine.context():
        low = fastiou.evaluate(on(engine, gt), on(engine, pred), iou_threshold=0.1,
                               backend=engine.backend)
        default = fastiou.evaluate(on(engine, gt), on(engine, pred), backend=engine.backend)
    assert low.mean_iou == pytest.approx(25 / 175, rel=1e-6) and low.grade == "poor"
    assert low.grade == fastiou.iou_quality(low.mean_iou)
    assert low.per_object["pred_index"].tolist() == [0] and low.counts["poor"] == 1
    assert default.mean_iou == 0.0 and default.counts["missed"] == 1
    assert default.per_object["iou"].tolist() == [0.0] and default.grade == "poor"
    assert math.isnan(default.mean_iou_matched) and default.recall == 0.0


@pytest.mark.parametrize("threshold", [0.5, 0.3])
def test_boxes_against_the_reference(engine, threshold):
    rng = np.random.default_rng(int(threshold * 10))
    gt, pred, scores = box_dataset(rng, 25)
    dtype = np.float64 if engine.name == "numba" else np.float32
    gt, pred = [g.astype(dtype) for g in gt], [p.astype(dtype) for p in pred]
    with engine.context():
        report = fastiou.evaluate(on(engine, gt), on(engine, pred), scores=scores,
                                  iou_threshold=threshold, backend=engine.backend)
    check_report(report, ref_evaluate("boxes", gt, pred, scores, threshold),
                 1e-12 if dtype == np.float64 else 2e-6)


def test_boxes_3d_and_formats():
    rng = np.random.default_rng(5)
    gt, pred, scores = box_dataset(rng, 10, dims=3)
    report = fastiou.evaluate(gt, pred, scores=scores, fmt="xyzxyz")
    check_report(report, ref_evaluate("boxes", gt, pred, scores, 0.5), 1e-12)
    gt, pred, scores = box_dataset(rng, 10)
    as_xywh = [np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], axis=1) for b in gt]
    pred_xywh = [np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], axis=1) for b in pred]
    report = fastiou.evaluate(as_xywh, pred_xywh, scores=scores, fmt="xywh")
    check_report(report, ref_evaluate("boxes", as_xywh, pred_xywh, scores, 0.5, "xywh"), 1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("dims", "fmt"), [(2, "xyxy"), (2, "cxcywh"), (3, "xyzwhd")])
def test_boxes_match_without_blocks_as_with_them(dims, fmt, dtype):
    """On the Numba engine, evaluate computes box IoU and matches in one pass without the IoU
    blocks: exactly what matching the blocks of segmented_box_iou gives (ties in IoU and score,
    NaN boxes, images without objects or predictions, more than 256 predictions)."""
    from fastiou.backends.numba_cpu.matching import greedy_segmented

    rng = np.random.default_rng(dims * 10 + len(fmt))
    gt, pred, scores = [], [], []
    for g, p in [(3, 5), (0, 4), (4, 0), (6, 300), (1, 1), (8, 40)]:
        base = np.round(rng.random((max(g, 1), 2 * dims)) * 6).astype(dtype)[:g]
        gt.append(base)
        extra = np.round(rng.random((p, 2 * dims)) * 6).astype(dtype)
        if g and p:
            extra[: p // 2] = base[rng.integers(0, g, p // 2)]  # equal IoUs
            extra[0, 0] = np.nan
        pred.append(extra)
        scores.append(rng.choice([0.2, 0.5, 0.9], size=p))
    for t in (0.0, 0.3, 0.5, 1.0):
        report = fastiou.evaluate(gt, pred, scores=scores, iou_threshold=t, fmt=fmt)
        off1 = np.r_[0, np.cumsum([g.shape[0] for g in gt])]
        off2 = np.r_[0, np.cumsum([p.shape[0] for p in pred])]
        values, blocks = fastiou.segmented_box_iou(np.concatenate(gt), np.concatenate(pred),
                                                   off1, off2, fmt=fmt)
        _, to_pred, _, matched = greedy_segmented(values, blocks[:-1], off1, off2,
                                                  scores=np.concatenate(scores), thresholds=t)
        np.testing.assert_array_equal(report.per_object["pred_index"], to_pred[0])
        np.testing.assert_array_equal(report.per_object["iou"], matched[0].astype(np.float64))


@pytest.mark.parametrize(("dims", "dtype"), EXTREME_CASES)
def test_evaluate_extreme_boxes_as_box_iou_blocks(engine, dims, dtype):
    """evaluate (the fused pass on Numba) matches extreme boxes by box_iou's values: the same
    matches and per-object IoUs as matching each image's box_iou block."""
    from fastiou.backends.numba_cpu.matching import greedy_segmented

    rng = np.random.default_rng(dims * 10 + np.dtype(dtype).itemsize)
    gt, pred, scores = [], [], []
    for g, p in [(3, 5), (0, 2), (6, 9), (1, 1), (4, 6)]:
        base = extreme_boxes(rng, g, dims, dtype, engine)
        extra = extreme_boxes(rng, p, dims, dtype, engine)
        if g and p:
            extra[: p // 2] = base[rng.integers(0, g, p // 2)]
        gt.append(base)
        pred.append(extra)
        scores.append(rng.random(p))
    gt[3][0], pred[3][0] = np.r_[[0] * dims, [10] * dims], np.r_[[0] * dims, [1e20] * dims]
    with engine.context():
        blocks = [engine.to_numpy(fastiou.box_iou(engine.asarray(g), engine.asarray(p),
                                                  backend=engine.backend))
                  for g, p in zip(gt, pred)]
        reports = {t: fastiou.evaluate(on(engine, gt), on(engine, pred),
                                       scores=on(engine, scores), iou_threshold=t,
                                       backend=engine.backend)
                   for t in (0.0, 0.3, 0.7)}
    off1 = np.r_[0, np.cumsum([g.shape[0] for g in gt])]
    off2 = np.r_[0, np.cumsum([p.shape[0] for p in pred])]
    starts = np.r_[0, np.cumsum([b.size for b in blocks])]
    for t, report in reports.items():
        _, to_pred, _, matched = greedy_segmented(
            np.concatenate([b.reshape(-1) for b in blocks]), starts[:-1], off1, off2,
            scores=np.concatenate(scores), thresholds=t)
        np.testing.assert_array_equal(report.per_object["pred_index"], to_pred[0])
        np.testing.assert_array_equal(report.per_object["iou"], matched[0].astype(np.float64))
    assert (reports[0.3].per_object["pred_index"] >= 0).any()


def test_masks_against_the_reference(engine):
    rng = np.random.default_rng(11)
    gt, pred, scores = mask_dataset(rng, 12)
    with engine.context():
        report = fastiou.evaluate(on(engine, gt), on(engine, pred), scores=scores,
                                  backend=engine.backend)
    check_report(report, ref_evaluate("masks", gt, pred, scores, 0.5), 2e-6)


def test_rle_matches_dense_masks():
    rng = np.random.default_rng(12)
    gt, pred, scores = mask_dataset(rng, 10)
    gt_rle = [fastiou.rle.encode(g) if len(g) else [] for g in gt]
    pred_rle = [fastiou.rle.encode(p) if len(p) else [] for p in pred]
    report = fastiou.evaluate(gt_rle, pred_rle, scores=scores)
    ref = ref_evaluate("masks", gt, pred, scores, 0.5)
    check_report(report, ref, 1e-12)  # RLE IoU is float64


def test_rle_blocks_are_one_call_and_equal_rle_iou():
    """RLE blocks come from one segmented call: equal bit for bit to rle.iou per image, with
    empty images, empty masks, images without ground truth or without predictions."""
    from fastiou import evaluation

    rng = np.random.default_rng(31)
    gt, pred, scores = [], [], []
    for i in range(40):
        h, w = (17, 23) if i % 3 else (30, 12)
        kind = i % 5  # 0: empty image, 1: no predictions, 2: no gt, else both
        ng = 0 if kind in (0, 2) else int(rng.integers(1, 5))
        npred = 0 if kind in (0, 1) else int(rng.integers(1, 6))
        g = rng.random((ng, h, w)) < rng.uniform(0.0, 0.5, (ng, 1, 1))
        p = rng.random((npred, h, w)) < rng.uniform(0.0, 0.5, (npred, 1, 1))
        g[: ng // 2, : h // 2] = False
        if ng:
            g[0] = False  # an empty mask
        if npred > 1:
            p[1] = False
            p[0] = g[0] if ng else p[0]
        gt.append(g)
        pred.append(p)
        scores.append(rng.random(npred))
    gt_rle = [fastiou.rle.encode(g) if len(g) else [] for g in gt]
    pred_rle = [fastiou.rle.encode(p) if len(p) else [] for p in pred]
    data = evaluation._read("evaluate", gt_rle, pred_rle, None, None)
    off1, off2 = evaluation._offsets(data.num_gt), evaluation._offsets(data.num_pred)
    blocks = _validate.segment_blocks("evaluate", off1, off2)
    values = evaluation._rle_blocks("evaluate", data, blocks)
    expected = [fastiou.rle.iou(p, g).T.reshape(-1) for g, p in zip(gt_rle, pred_rle)
                if len(g) and len(p)]
    assert values.dtype == np.float64
    np.testing.assert_array_equal(values, np.concatenate(expected))
    assert (values.view(np.int64) == np.concatenate(expected).view(np.int64)).all()
    report = fastiou.evaluate(gt_rle, pred_rle, scores=scores)
    dense = fastiou.evaluate(gt, pred, scores=scores)
    np.testing.assert_array_equal(report.per_object["pred_index"], dense.per_object["pred_index"])
    np.testing.assert_allclose(report.per_object["iou"], dense.per_object["iou"], rtol=1e-6)
    for key in ("num_gt", "num_pred", "num_matched"):
        np.testing.assert_array_equal(report.per_image[key], dense.per_image[key])
    check_report(report, ref_evaluate("masks", gt, pred, scores, 0.5), 1e-12)
    # An unreadable RLE or a size that differs names the first such image, as rle.iou says it.
    bad = [list(x) for x in pred_rle]
    bad[8][0] = {"size": [17, 23], "counts": [5]}
    bad[13][0] = {"size": [17, 24], "counts": [17 * 24]}
    with pytest.raises(ValueError, match=r"^evaluate: image 8: rle.iou: dt\[0\] has run lengths "
                                         r"that do not add up"):
        fastiou.evaluate(gt_rle, bad)
    bad[8] = pred_rle[8]
    with pytest.raises(ValueError, match=r"^evaluate: image 13: rle.iou: every RLE must have the "
                                         r"same size, got dt\[0\] of size \[17, 24\]"):
        fastiou.evaluate(gt_rle, bad)
    assert len(gt_rle[12]) == 0
    bad[12] = [{"size": [17, 23], "counts": "!"}]  # image 12 has no gt: still checked
    bad[13] = pred_rle[13]
    with pytest.raises(ValueError, match=r"^evaluate: image 12: rle.iou: dt\[0\] "):
        fastiou.evaluate(gt_rle, bad)


def test_without_scores_predictions_keep_their_order():
    gt = [np.array([[0, 0, 10, 10]], float)]
    pred = [np.array([[0, 0, 10, 9], [0, 0, 10, 10]], float)]  # the first in order wins
    assert fastiou.evaluate(gt, pred).per_object["pred_index"].tolist() == [0]
    got = fastiou.evaluate(gt, pred, scores=[np.array([0.1, 0.9])])
    assert got.per_object["pred_index"].tolist() == [1] and got.mean_iou == 1.0
    assert got.precision == 0.5 and got.recall == 1.0 and got.f1 == pytest.approx(2 / 3)


@st.composite
def tied_datasets(draw):  # noqa: ANN001, ANN201
    """Small images of integer boxes on a 6 x 6 grid and integer scores: equal IoUs and equal
    scores are frequent, and every IoU is an exact ratio of integers."""
    boxes = st.lists(st.tuples(*[st.integers(0, 6)] * 4), max_size=5).map(
        lambda b: np.array([(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
                            for x0, y0, x1, y1 in b], dtype=np.float64).reshape(-1, 4))
    images = draw(st.integers(0, 4))
    gt = [draw(boxes) for _ in range(images)]
    pred = [draw(boxes) for _ in range(images)]
    scores = [np.array(draw(st.lists(st.integers(0, 2), min_size=len(p), max_size=len(p))),
                       dtype=float) for p in pred]
    return gt, pred, scores, draw(st.sampled_from([0.0, 0.25, 0.5, 1.0]))


@settings(max_examples=40, deadline=None)
@given(tied_datasets())
def test_ties_against_the_reference(data):
    gt, pred, scores, threshold = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # datasets without ground truth
        report = fastiou.evaluate(gt, pred, scores=scores, iou_threshold=threshold)
    ref = ref_evaluate("boxes", gt, pred, scores, threshold)
    np.testing.assert_array_equal(report.per_object["pred_index"], ref["pred_index"])
    np.testing.assert_array_equal(report.per_object["iou"], ref["iou"])
    for key in ("mean_iou", "precision", "recall", "f1"):  # sums in another order: 1e-14
        np.testing.assert_allclose(getattr(report, key), ref[key], rtol=1e-14)


def test_optimal_against_brute_force():
    rng = np.random.default_rng(13)
    gt, pred, _ = box_dataset(rng, 15)
    report = fastiou.evaluate(gt, pred, method="optimal", iou_threshold=0.3)
    for i, (g, p) in enumerate(zip(gt, pred)):
        block = ref_block("boxes", g, p)
        best = 0.0
        n, m = len(g), len(p)
        pairs = ([(k, j) for k, j in enumerate(perm)]
                 for perm in itertools.permutations(range(m), n)) if n <= m else (
                 [(k, j) for j, k in enumerate(perm)]
                 for perm in itertools.permutations(range(n), m))
        for assignment in pairs:
            total = sum(block[k][j] for k, j in assignment if block[k][j] >= 0.3)
            best = max(best, total)
        got = report.per_object["iou"][report.per_object["image"] == i].sum()
        assert got == pytest.approx(best, rel=1e-12, abs=1e-12)


def test_images_without_objects_or_predictions_and_empty_datasets():
    box = np.array([[0, 0, 4, 4]], float)
    gt = [box, np.zeros((0, 4)), [], box]
    pred = [np.zeros((0, 4)), box, box, []]
    report = fastiou.evaluate(gt, pred, scores=[[], [1.0], [2.0], []])
    assert report.num_images == 4 and report.num_gt == 2 and report.num_pred == 2
    assert report.mean_iou == 0.0 and report.counts["missed"] == 2 and report.precision == 0.0
    per_image = report.per_image["mean_iou"]
    assert per_image[0] == 0 and math.isnan(per_image[1]) and math.isnan(per_image[2])
    for gt, pred in (([], []), ([np.zeros((0, 4))], [box])):
        with pytest.warns(RuntimeWarning, match=r"evaluate: the dataset holds no ground-truth "
                                                r"objects; the mean IoU is NaN"):
            empty = fastiou.evaluate(gt, pred)
        assert math.isnan(empty.mean_iou) and empty.grade == "undefined"
        assert json.loads(json.dumps(empty.to_dict()))["mean_iou"] is None


def test_grades_are_configurable():
    gt = [np.array([[0, 0, 10, 10]], float)] * 3
    pred = [np.array([[0, 0, 10, 9.7]]), np.array([[0, 0, 10, 8]]), np.array([[0, 0, 10, 6]])]
    report = fastiou.evaluate(gt, pred)
    assert report.per_object["grade"].tolist() == ["excellent", "good", "poor"]
    assert report.mean_iou == pytest.approx((0.97 + 0.8 + 0.6) / 3)
    strict = fastiou.evaluate(gt, pred, grades=(0.99, 0.9))
    assert strict.per_object["grade"].tolist() == ["good", "poor", "poor"]
    assert strict.grade == "poor" and report.grade == "good"


def test_report_table_and_dict():
    rng = np.random.default_rng(14)
    gt, pred, scores = box_dataset(rng, 6)
    report = fastiou.evaluate(gt, pred, scores=scores)
    text = report.table()
    assert f"{report.mean_iou:.4f}  {report.grade}" in text and "missed" in text
    d = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert d["per_object"]["pred_index"] == report.per_object["pred_index"].tolist()
    assert d["mean_iou"] == report.mean_iou and d["num_images"] == 6
    assert sum(d["counts"].values()) == report.num_gt


# --------------------------------------------------------------------------------------------
# Properties


def test_perfect_predictions_are_excellent(engine):
    rng = np.random.default_rng(15)
    gt, _, _ = box_dataset(rng, 8)
    gt = [g.astype(np.float32) for g in gt]
    pred = [g[::-1] for g in gt]
    with engine.context():
        report = fastiou.evaluate(on(engine, gt), on(engine, gt), backend=engine.backend)
        shuffled = fastiou.evaluate(on(engine, gt), on(engine, pred), backend=engine.backend)
    for r in (report, shuffled):
        assert r.mean_iou == 1.0 and r.grade == "excellent" and r.counts["excellent"] == r.num_gt
        assert r.precision == r.recall == r.f1 == 1.0


def test_shuffling_images_or_predictions_changes_nothing():
    rng = np.random.default_rng(16)
    gt, pred, scores = box_dataset(rng, 30)
    base = fastiou.evaluate(gt, pred, scores=scores)
    # Images in another order: each image's results move with it.
    order = rng.permutation(len(gt))
    moved = fastiou.evaluate([gt[i] for i in order], [pred[i] for i in order],
                             scores=[scores[i] for i in order])
    assert moved.mean_iou == pytest.approx(base.mean_iou, rel=1e-14)
    assert moved.counts == base.counts and moved.precision == base.precision
    for k, i in enumerate(order):
        mine = base.per_object["image"] == i
        theirs = moved.per_object["image"] == k
        np.testing.assert_array_equal(moved.per_object["iou"][theirs], base.per_object["iou"][mine])
    # Predictions in another order, scores (distinct) moving with them: the same matches.
    perms = [rng.permutation(p.shape[0]) for p in pred]
    shuffled = fastiou.evaluate(gt, [p[q] for p, q in zip(pred, perms)],
                                scores=[s[q] for s, q in zip(scores, perms)])
    assert shuffled.to_dict()["mean_iou"] == base.to_dict()["mean_iou"]
    np.testing.assert_array_equal(shuffled.per_object["iou"], base.per_object["iou"])
    back = [np.where(j >= 0, q[np.maximum(j, 0)], -1) for j, q in zip(
        np.split(shuffled.per_object["pred_index"], np.cumsum([len(g) for g in gt])[:-1]), perms)]
    np.testing.assert_array_equal(np.concatenate(back), base.per_object["pred_index"])


def test_batchings_and_merges_give_identical_reports():
    rng = np.random.default_rng(17)
    gt, pred, scores = box_dataset(rng, 40)
    one = fastiou.evaluate(gt, pred, scores=scores).to_dict()
    for trial in range(4):
        cuts = sorted(rng.choice(np.arange(1, 40), size=trial + 2, replace=False).tolist())
        parts = list(zip([0] + cuts, cuts + [40]))
        streaming = fastiou.Evaluator()
        for a, b in parts:
            streaming.update(gt[a:b], pred[a:b], scores[a:b])
        assert streaming.compute().to_dict() == one
        evaluators = []
        for a, b in parts:
            e = fastiou.Evaluator()
            e.update(gt[a:b], pred[a:b], scores[a:b])
            evaluators.append(pickle.loads(pickle.dumps(e)))
        merged = evaluators[0]
        for e in evaluators[1:]:
            assert merged.merge(e) is merged
        assert merged.compute().to_dict() == one
    streaming.reset()
    streaming.update(gt, pred, scores)
    assert streaming.compute().to_dict() == one


def test_update_is_thread_safe():
    rng = np.random.default_rng(18)
    gt, pred, scores = box_dataset(rng, 48)
    single = fastiou.evaluate(gt, pred, scores=scores)
    e = fastiou.Evaluator()
    chunks = [(gt[k:k + 4], pred[k:k + 4], scores[k:k + 4]) for k in range(0, 48, 4)]
    threads = [threading.Thread(target=lambda c=c: e.update(*c)) for c in chunks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    report = e.compute()
    assert report.num_images == 48 and report.num_gt == single.num_gt
    assert report.num_matched == single.num_matched and report.counts == single.counts
    assert report.mean_iou == pytest.approx(single.mean_iou, rel=1e-13)


def test_inputs_are_not_modified():
    rng = np.random.default_rng(19)
    gt, pred, scores = box_dataset(rng, 6)
    copies = [[a.copy() for a in x] for x in (gt, pred, scores)]
    fastiou.evaluate(gt, pred, scores=scores)
    for original, copy in zip((gt, pred, scores), copies):
        for a, b in zip(original, copy):
            np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------------------------
# Bad input


BOX = np.array([[0, 0, 4, 4]], float)


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    (dict(gt=[BOX, BOX], pred=[BOX]), ValueError,
     r"evaluate: gt and pred must have one entry per image, got 2 and 1 entries"),
    (dict(gt=[BOX], pred=[BOX], scores=[[1.0, 2.0]]), ValueError,
     r"evaluate: scores\[0\] must have shape \(1,\), one score per prediction of pred\[0\], got "
     r"shape \(2,\)"),
    (dict(gt=[BOX, BOX], pred=[BOX, BOX], scores=[[1.0]]), ValueError,
     r"evaluate: scores must have one entry per image \(2\), got 1 entries"),
    (dict(gt=[BOX, BOX], pred=[BOX, BOX], scores=[[1.0], [np.nan]]), ValueError,
     r"evaluate: image 1: scores\[1\] holds NaN"),
    (dict(gt=[np.zeros((1, 5, 6), bool)], pred=[np.zeros((2, 5, 7), bool)]), ValueError,
     r"evaluate: image 0: gt\[0\] and pred\[0\] must have masks of the same \(H, W\), got "
     r"shapes \(1, 5, 6\) and \(2, 5, 7\)"),
    (dict(gt=[BOX, np.zeros((1, 5, 6), bool)], pred=[BOX, BOX]), ValueError,
     r"evaluate: gt\[1\] has shape \(1, 5, 6\) and dtype bool; every entry must be boxes"),
    (dict(gt=[BOX], pred=[np.zeros((1, 6))]), ValueError,
     r"evaluate: pred\[0\] has shape \(1, 6\) and dtype float64; every box array must be"),
    (dict(gt=[np.zeros((1, 3))], pred=[np.zeros((1, 3))]), ValueError,
     r"evaluate: gt\[0\] has shape \(1, 3\) and dtype float64; every box array must be"),
    (dict(gt=[np.zeros((1, 5, 6), np.float32)], pred=[np.zeros((1, 5, 6), bool)]), ValueError,
     r"evaluate: gt\[0\] holds floating values"),
    (dict(gt=BOX[0].tolist(), pred=[BOX]), ValueError, r"evaluate: gt and pred must have"),
    (dict(gt={"a": 1}, pred=[BOX]), TypeError, r"evaluate: gt must be a sequence with one entry "
                                               r"per image"),
    (dict(gt=[BOX], pred=[BOX], iou_threshold=1.5), ValueError,
     r"evaluate: iou_threshold must be a number in \[0, 1\], got 1.5"),
    (dict(gt=[BOX], pred=[BOX], method="hungarian"), ValueError,
     r"evaluate: method must be one of 'greedy', 'optimal', got 'hungarian'"),
    (dict(gt=[BOX], pred=[BOX], grades=(0.5, 0.9)), ValueError,
     r"evaluate: grades must be two numbers \(excellent, good\) with good <= excellent"),
    (dict(gt=[BOX], pred=[BOX], fmt="yxyx"), ValueError, r"evaluate: fmt must be one of"),
    (dict(gt=[[{"size": [4, 4], "counts": "0"}]], pred=[BOX]), TypeError,
     r"evaluate: gt\[0\] is a COCO RLE list, so every entry must be one .* but pred\[0\] is "
     r"ndarray"),
    (dict(gt=[[{"size": [4, 4], "counts": [16]}]], pred=[[{"size": [4, 5], "counts": [20]}]]),
     ValueError, r"evaluate: image 0: rle.iou: every RLE must have the same size"),
])
def test_bad_input(kwargs, error, message):
    gt, pred = kwargs.pop("gt"), kwargs.pop("pred")
    with pytest.raises(error, match=message):
        fastiou.evaluate(gt, pred, **kwargs)


def test_mixed_engines_name_both_entries():
    import jax.numpy as jnp

    with pytest.raises(TypeError, match=r"evaluate: gt\[0\] is a numpy.ndarray but pred\[0\] is "
                                        r"a .*ArrayImpl"):
        fastiou.evaluate([BOX], [jnp.asarray(BOX)])


def test_merge_refuses_other_settings():
    with pytest.raises(ValueError, match=r"Evaluator.merge: can only merge evaluators with the "
                                         r"same \(iou_threshold, method, grades\)"):
        fastiou.Evaluator().merge(fastiou.Evaluator(iou_threshold=0.7))
    with pytest.raises(TypeError, match=r"Evaluator.merge: other must be an Evaluator"):
        fastiou.Evaluator().merge(object())


# --------------------------------------------------------------------------------------------
# JAX: a padded batch step under jit


def test_evaluate_step_under_jit():
    import jax
    import jax.numpy as jnp

    rng = np.random.default_rng(20)
    gt, pred, scores = box_dataset(rng, 6)
    gt = [g.astype(np.float32) for g in gt]
    pred = [p.astype(np.float32) for p in pred]
    G, P = max(len(g) for g in gt), max(len(p) for p in pred)

    def pad(items, n, tail):  # noqa: ANN001, ANN202
        out = np.zeros((len(items), n) + tail, np.float32)
        valid = np.zeros((len(items), n), bool)
        for i, x in enumerate(items):
            out[i, :len(x)] = x
            valid[i, :len(x)] = True
        return jnp.asarray(out), jnp.asarray(valid)

    g, gv = pad(gt, G, (4,))
    p, pv = pad(pred, P, (4,))
    s, _ = pad(scores, P, ())
    step = jax.jit(lambda g, p, s, gv, pv: fastiou.evaluate_step(
        g, p, scores=s, gt_valid=gv, pred_valid=pv, iou_threshold=0.5))
    result = step(g, p, s, gv, pv)
    assert isinstance(result.iou, jax.Array) and result.iou.shape == (len(gt), G)
    report = fastiou.evaluate(gt, pred, scores=scores)
    gvalid = np.asarray(gv)
    np.testing.assert_allclose(np.asarray(result.iou)[gvalid], report.per_object["iou"], rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(result.pred_index)[gvalid],
                                  report.per_object["pred_index"])
    assert int(result.num_gt) == report.num_gt and int(result.num_pred) == report.num_pred
    assert int(result.num_matched) == report.num_matched
    assert float(result.sum_iou) / int(result.num_gt) == pytest.approx(report.mean_iou, rel=1e-5)
    # Masks (B, G, H, W): the same step, jitted.
    mg, mp, ms = mask_dataset(rng, 3, shapes=((12, 40),))
    G, P = max(len(g) for g in mg), max(len(p) for p in mp)
    masks_g, mgv = pad([m.astype(np.float32) for m in mg], G, (12, 40))
    masks_p, mpv = pad([m.astype(np.float32) for m in mp], P, (12, 40))
    s, _ = pad(ms, P, ())
    got = jax.jit(lambda g, p, s, gv, pv: fastiou.evaluate_step(
        g > 0, p > 0, scores=s, gt_valid=gv, pred_valid=pv))(masks_g, masks_p, s, mgv, mpv)
    report = fastiou.evaluate(mg, mp, scores=ms)
    np.testing.assert_allclose(np.asarray(got.iou)[np.asarray(mgv)], report.per_object["iou"],
                               rtol=1e-6)
    assert int(got.num_matched) == report.num_matched
    with pytest.raises(ValueError, match=r"evaluate_step: gt and pred must be padded boxes"):
        fastiou.evaluate_step(jnp.zeros((2, 4)), jnp.zeros((2, 4)))


# --------------------------------------------------------------------------------------------
# Dask: partitions evaluated in two worker processes, merged in order


def test_dask_local_cluster_gives_the_single_process_report():
    import distributed

    rng = np.random.default_rng(21)
    gt, pred, scores = box_dataset(rng, 24)
    single = fastiou.evaluate(gt, pred, scores=scores).to_dict()

    def partition(part):  # noqa: ANN001, ANN202  (pickled by value: defined in a function)
        import fastiou as f

        e = f.Evaluator()
        e.update(*part)
        return e

    parts = [(gt[k:k + 4], pred[k:k + 4], scores[k:k + 4]) for k in range(0, 24, 4)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                      host="127.0.0.1", dashboard_address=":0",
                                      worker_dashboard_address=None,
                                      silence_logs=logging.ERROR) as cluster, \
                distributed.Client(cluster) as client:
            futures = client.map(partition, parts, pure=False)
            evaluators = client.gather(futures)
            ran = client.run(lambda dask_worker: dask_worker.state.executed_count)
    assert len(ran) == 2 and sum(ran.values()) >= len(parts)
    merged = fastiou.Evaluator()
    for e in evaluators:
        merged.merge(e)
    assert merged.compute().to_dict() == single


def test_random_batching_property():
    """Random partitions, updated or merged in random nesting: always the one-pass report."""
    rng = np.random.default_rng(22)
    gt, pred, scores = box_dataset(rng, 20)
    one = fastiou.evaluate(gt, pred, scores=scores).to_dict()
    r = random.Random(5)
    for _ in range(5):
        cuts = sorted(r.sample(range(1, 20), 4))
        bounds = list(zip([0] + cuts, cuts + [20]))
        pieces = []
        for a, b in bounds:
            e = fastiou.Evaluator()
            e.update(gt[a:b], pred[a:b], scores[a:b])
            pieces.append(e)
        while len(pieces) > 1:  # merge neighbours in a random order (keeps the image order)
            k = r.randrange(len(pieces) - 1)
            pieces[k:k + 2] = [pieces[k].merge(pieces[k + 1])]
        assert pieces[0].compute().to_dict() == one
