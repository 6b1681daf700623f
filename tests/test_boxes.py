"""Every engine against the float64 reference: every box function, format, 2D/3D, pairwise and
aligned, batch broadcasting, every dtype; output library (checked by ``engine.call``), dtype and
shape as well as values."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

import fastiou
import reference as ref
from box_cases import (
    ALL_DTYPES,
    FORMATS,
    LOSS_FUNCS,
    OP_DIMS,
    OPS_2D,
    OPS_3D,
    PAIR_FUNCS,
    box_sets,
    out_dtype,
    random_boxes,
    tolerance,
)


def check(result: np.ndarray, expected: np.ndarray, dtype: np.dtype, **tol: float) -> None:
    assert result.dtype == dtype, (result.dtype, dtype)
    assert result.shape == expected.shape, (result.shape, expected.shape)
    np.testing.assert_allclose(result.astype(np.float64), expected, equal_nan=True, **tol)


# Batch layouts: (shape of boxes1, shape of boxes2) without the last dimension.
PAIRWISE_SHAPES = [((5,), (4,)), ((2, 1, 5), (3, 4))]
ALIGNED_SHAPES = [((6,), (6,)), ((2, 1, 5), (3, 5))]


@pytest.mark.parametrize("aligned", [False, True], ids=["pairwise", "aligned"])
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("op,dims", OP_DIMS, ids=[f"{op}-{d}d" for op, d in OP_DIMS])
def test_pair_ops_match_reference(engine, op, dims, fmt, aligned):
    rng = np.random.default_rng(zlib.crc32(f"{op}{dims}{fmt}{aligned}".encode()))
    fn = PAIR_FUNCS[op]
    for shape1, shape2 in ALIGNED_SHAPES if aligned else PAIRWISE_SHAPES:
        for dtype in ("float64", "float32"):
            b1, b2 = box_sets(rng, shape1, shape2, dims=dims, fmt=fmt, dtype=dtype)
            result = engine.call(fn, b1, b2, fmt=fmt, aligned=aligned)
            expected = ref.pairwise(op, b1, b2, fmt=fmt, aligned=aligned)
            check(result, expected, out_dtype(engine, dtype), **tolerance(engine, dtype))


@pytest.mark.parametrize("zero_division", [0.0, 1.0, -0.5])
def test_zero_division_value_is_used(engine, zero_division):
    # Pairs of zero-area boxes (union 0) give zero_division for IoU and IoA, and GIoU, DIoU and
    # CIoU start from it; compared with the reference on a set with degenerate boxes.
    rng = np.random.default_rng(1)
    b1 = random_boxes(rng, (7,))
    b1[:3, 2:] = b1[:3, :2]  # three points
    b2 = np.concatenate([b1[:3], random_boxes(rng, (3,))])
    for op in OPS_2D:
        result = engine.call(PAIR_FUNCS[op], b1, b2, zero_division=zero_division)
        expected = ref.pairwise(op, b1, b2, zero_division=zero_division)
        check(result, expected, out_dtype(engine, "float64"), **tolerance(engine, "float64"))
    points = np.zeros((2, 4))
    assert engine.call(fastiou.box_iou, points, points, zero_division=zero_division).tolist() == [
        [zero_division] * 2
    ] * 2


@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_dtypes_match_reference(engine, dtype):
    """Every function on every dtype, one tolerance table (box_cases.TOLERANCE)."""
    rng = np.random.default_rng(7)
    tol = tolerance(engine, dtype)
    want = out_dtype(engine, dtype)
    # cxcywh: the conversion to corners (halving sizes) happens in the compute dtype too.
    b1, b2 = box_sets(rng, (5,), (4,), fmt="cxcywh", dtype=dtype)
    for op in OPS_2D:
        check(engine.call(PAIR_FUNCS[op], b1, b2, fmt="cxcywh"),
              ref.pairwise(op, b1, b2, fmt="cxcywh"), want, **tol)
        check(engine.call(PAIR_FUNCS[op], b1[:4], b2, fmt="cxcywh", aligned=True),
              ref.pairwise(op, b1[:4], b2, fmt="cxcywh", aligned=True), want, **tol)
    b3 = random_boxes(rng, (2, 3), dims=3, dtype=dtype)
    for op in OPS_3D:
        check(engine.call(PAIR_FUNCS[op], b3, b3[::-1]), ref.pairwise(op, b3, b3[::-1]), want,
              **tol)
    for fmt in ("xyxy", "cxcywh"):
        boxes = random_boxes(rng, (6,), fmt=fmt, dtype=dtype)
        check(engine.call(fastiou.box_area, boxes, fmt=fmt), ref.box_area(boxes, fmt), want,
              rtol=tol["rtol"], atol=0)
        check(engine.call(fastiou.box_convert, boxes, in_fmt=fmt, out_fmt="xywh"),
              ref.box_convert(boxes, fmt, "xywh"), want, rtol=tol["rtol"], atol=0)


@pytest.mark.parametrize(
    "dtype1,dtype2", [("float32", "float64"), ("float16", "int32"), ("uint8", "float64"),
                      ("int64", "float32")],
)
def test_mixed_dtypes(engine, dtype1, dtype2):
    rng = np.random.default_rng(3)
    b1 = random_boxes(rng, (4,), dtype=dtype1)
    b2 = random_boxes(rng, (3,), dtype=dtype2)
    for op in ("iou", "ciou"):
        check(engine.call(PAIR_FUNCS[op], b1, b2), ref.pairwise(op, b1, b2),
              out_dtype(engine, dtype1, dtype2), **tolerance(engine, dtype1, dtype2))


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("op", list(LOSS_FUNCS))
def test_losses_match_reference(engine, op, reduction):
    rng = np.random.default_rng(5)
    for fmt in FORMATS:
        b1, b2 = box_sets(rng, (2, 6), (6,), fmt=fmt)
        result = engine.call(LOSS_FUNCS[op], b1, b2, reduction=reduction, fmt=fmt)
        expected = ref.loss(op, b1, b2, reduction=reduction, fmt=fmt)
        # A sum of 12 values may be accumulated in any order: a few ulps more.
        tol = tolerance(engine, "float64")
        check(np.asarray(result), expected, out_dtype(engine, "float64"),
              rtol=4 * tol["rtol"], atol=4 * tol["atol"])


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("fmt", FORMATS)
def test_area_and_convert_match_reference(engine, fmt, dims):
    rng = np.random.default_rng(11)
    boxes = random_boxes(rng, (2, 3, 5), dims=dims, fmt=fmt)
    tol = tolerance(engine, "float64")
    want = out_dtype(engine, "float64")
    check(engine.call(fastiou.box_area, boxes, fmt=fmt), ref.box_area(boxes, fmt), want,
          rtol=tol["rtol"], atol=0)
    check(engine.call(fastiou.box_area, boxes[0, 0, 0], fmt=fmt), ref.box_area(boxes[0, 0, 0], fmt),
          want, rtol=tol["rtol"], atol=0)
    for out_fmt in FORMATS:
        check(engine.call(fastiou.box_convert, boxes, in_fmt=fmt, out_fmt=out_fmt),
              ref.box_convert(boxes, fmt, out_fmt), want, rtol=tol["rtol"], atol=1e-12)


def test_3d_format_aliases(engine):
    rng = np.random.default_rng(12)
    for alias, fmt in [("xyzxyz", "xyxy"), ("xyzwhd", "xywh"), ("cxcyczwhd", "cxcywh")]:
        b1, b2 = box_sets(rng, (4,), (3,), dims=3, fmt=fmt)
        for op in OPS_3D:
            assert np.array_equal(engine.call(PAIR_FUNCS[op], b1, b2, fmt=alias),
                                  engine.call(PAIR_FUNCS[op], b1, b2, fmt=fmt), equal_nan=True)
        assert np.array_equal(engine.call(fastiou.box_convert, b1, in_fmt=alias, out_fmt="xyxy"),
                              engine.call(fastiou.box_convert, b1, in_fmt=fmt, out_fmt="xyzxyz"))
