"""Degenerate boxes, NaN, large integers, empty sets, memory layouts and ``out=``, on every
engine."""

from __future__ import annotations

import numpy as np
import pytest

import fastiou
import reference as ref
from box_cases import (
    DEGENERATE_2D,
    LOSS_FUNCS,
    OP_DIMS,
    OPS_2D,
    PAIR_FUNCS,
    box_sets,
    out_dtype,
    random_boxes,
    tolerance,
    x64,
)


def test_classic_example(engine):
    # Two 10x10 boxes overlapping in a 5x5 square: intersection 25, union 175; enclosing box 15x15;
    # centres 5 apart along each axis, enclosing diagonal 15*sqrt(2); same aspect ratio.
    a = np.array([[0.0, 0.0, 10.0, 10.0]])
    b = np.array([[5.0, 5.0, 15.0, 15.0]])
    expected = {
        "iou": 25 / 175,
        "giou": 25 / 175 - (225 - 175) / 225,
        "diou": 25 / 175 - 50 / 450,
        "ciou": 25 / 175 - 50 / 450,
        "ioa": 25 / 100,
    }
    tol = tolerance(engine, "float64")
    for op, value in expected.items():
        for aligned in (False, True):
            result = engine.call(PAIR_FUNCS[op], a, b, aligned=aligned)
            assert result.shape == ((1,) if aligned else (1, 1))
            np.testing.assert_allclose(result, value, **tol)
    np.testing.assert_allclose(engine.call(fastiou.box_area, a), [100.0], **tol)
    assert fastiou.iou_quality(engine.call(fastiou.box_iou, a, b)[0, 0]) == "poor"


def test_ciou_can_go_below_minus_one(engine):
    # A thin tall box and a flat wide box far apart: the centre penalty approaches 1 and
    # alpha * v approaches 1/2, so CIoU lies in [-1.5, 1], not [-1, 1] (DIoU stays >= -1).
    a = np.array([[0.0, 0.0, 1.0, 100.0]])
    b = np.array([[1000.0, 1000.0, 1100.0, 1001.0]])
    ciou = engine.call(fastiou.complete_box_iou, a, b)
    np.testing.assert_allclose(ciou, ref.pairwise("ciou", a, b), **tolerance(engine, "float64"))
    assert -1.5 <= ciou[0, 0] < -1.3
    assert engine.call(fastiou.distance_box_iou, a, b)[0, 0] >= -1


def test_inverted_boxes_have_zero_area(engine):
    square = np.array([[0.0, 0.0, 10.0, 10.0]])
    inverted = np.array([[10.0, 10.0, 0.0, 0.0]])  # (x2-x1)*(y2-y1) would be +100
    half = np.array([[5.0, 5.0, 0.0, 0.0]])  # would overlap the square by 25 if read loosely
    assert engine.call(fastiou.box_area, inverted).tolist() == [0.0]
    assert engine.call(fastiou.box_iou, inverted, square).tolist() == [[0.0]]
    assert engine.call(fastiou.box_iou, half, square).tolist() == [[0.0]]
    assert engine.call(fastiou.box_ioa, square, half).tolist() == [[0.0]]
    # Both inverted: union 0 -> zero_division.
    assert engine.call(fastiou.box_iou, inverted, half, zero_division=0.5).tolist() == [[0.5]]
    # The enclosing box runs from the min corners to the max corners (as in torchvision), so the
    # centre of an inverted box can lie outside it: point (0, 0) and (0, -1, 0, -2) have centres
    # 1.5 apart and an enclosing box of height 1, DIoU = 0 - 1.5**2 / 1**2.
    point, flipped = np.zeros((1, 4)), np.array([[0.0, -1.0, 0.0, -2.0]])
    np.testing.assert_allclose(engine.call(fastiou.distance_box_iou, point, flipped), [[-2.25]],
                               **tolerance(engine, "float64"))
    for op in OPS_2D:
        np.testing.assert_allclose(
            engine.call(PAIR_FUNCS[op], np.concatenate([inverted, half]), square),
            ref.pairwise(op, np.concatenate([inverted, half]), square),
            **tolerance(engine, "float64"),
        )


@pytest.mark.parametrize("zero_division", [0.0, 1.0])
def test_degenerate_boxes_finite_and_match_reference(engine, zero_division):
    # Points, segments, identical boxes and inverted boxes: every value finite, as the reference.
    boxes = DEGENERATE_2D
    for op in OPS_2D:
        for aligned in (False, True):
            b2 = boxes[::-1] if aligned else boxes
            result = engine.call(PAIR_FUNCS[op], boxes, b2, aligned=aligned,
                                 zero_division=zero_division)
            assert np.isfinite(result).all(), op
            np.testing.assert_allclose(
                result,
                ref.pairwise(op, boxes, b2, aligned=aligned, zero_division=zero_division),
                **tolerance(engine, "float64"),
            )
    for op in LOSS_FUNCS:
        loss = engine.call(LOSS_FUNCS[op], boxes, boxes[::-1], reduction="sum")
        assert np.isfinite(loss)
    # Identical boxes of positive area: IoU, GIoU, DIoU, CIoU all exactly 1.
    square = np.array([[0.0, 0.0, 10.0, 10.0], [1.0, 2.0, 3.0, 7.0]])
    for op in OPS_2D:
        assert engine.call(PAIR_FUNCS[op], square, square, aligned=True).tolist() == [1.0, 1.0]


def test_nan_propagates(engine):
    rng = np.random.default_rng(21)
    for op, dims in OP_DIMS:
        k = 2 * dims
        for position in range(k):
            b1 = random_boxes(rng, (3,), dims=dims)
            b2 = random_boxes(rng, (4,), dims=dims)
            b1[1, position] = np.nan
            b2[2, position] = np.nan
            result = engine.call(PAIR_FUNCS[op], b1, b2)
            nan = np.zeros((3, 4), dtype=bool)
            nan[1, :] = nan[:, 2] = True
            assert np.array_equal(np.isnan(result), nan), (op, dims, position, result)
            aligned = engine.call(PAIR_FUNCS[op], b1, b2[:3], aligned=True)
            assert np.array_equal(np.isnan(aligned), [False, True, True]), (op, dims, position)
    boxes = np.array([[0.0, 0.0, np.nan, 1.0], [0.0, 0.0, 1.0, 1.0]])
    assert np.array_equal(np.isnan(engine.call(fastiou.box_area, boxes)), [True, False])
    converted = engine.call(fastiou.box_convert, boxes, in_fmt="xyxy", out_fmt="cxcywh")
    assert np.array_equal(np.isnan(converted[0]), [True, False, True, False])
    assert not np.isnan(converted[1]).any()


def test_nan_propagates_where_the_first_box_has_zero_area(engine):
    # |A| == 0 would give zero_division without looking at B: NaN in B must still win.
    point = np.array([[2.0, 2.0, 2.0, 2.0]])
    for position in range(4):
        other = np.array([[0.0, 0.0, 5.0, 5.0]])
        other[0, position] = np.nan
        for op in OPS_2D:
            assert np.isnan(engine.call(PAIR_FUNCS[op], point, other)).all(), (op, position)
            assert np.isnan(engine.call(PAIR_FUNCS[op], other, point)).all(), (op, position)
            assert np.isnan(engine.call(PAIR_FUNCS[op], point, other, zero_division=1.0)).all()
    point3 = np.zeros((1, 6))
    other3 = np.array([[0.0, 0.0, 0.0, 5.0, 5.0, np.nan]])
    assert np.isnan(engine.call(fastiou.box_ioa, point3, other3)).all()


def test_large_integer_coordinates_are_exact(engine):
    # With coordinates near 2**31 a float32 computation loses the widths and an int32 area
    # overflows (past 46340); the classic 25/175 must survive any offset.
    top = 2**31 - 1
    cases = [
        (np.int32, [[top - 15, top - 15, top - 5, top - 5]], [[top - 10, top - 10, top, top]],
         25 / 175),
        (np.int32, [[0, 0, 65536, 65536]], [[0, 0, 65536, 32768]], 0.5),
        (np.int64, [[0, 0, 2**31, 2**31]], [[2**30, 2**30, 2**31, 2**31]], 0.25),
        (np.uint32, [[2**32 - 11, 0, 2**32 - 1, 10]], [[2**32 - 6, 5, 2**32 - 1, 10]], 0.25),
    ]
    with x64(engine):  # JAX computes integers in float64 only with x64 enabled
        for dtype, a, b, expected in cases:
            a, b = np.array(a, dtype=dtype), np.array(b, dtype=dtype)
            iou = engine.call(fastiou.box_iou, a, b)
            assert iou.dtype == np.float32
            assert iou.tolist() == [[np.float32(expected)]], (dtype, iou)
            assert engine.call(fastiou.box_iou, a, b, aligned=True).tolist() == [
                np.float32(expected)
            ]
            np.testing.assert_allclose(engine.call(fastiou.generalized_box_iou, a, b),
                                       ref.pairwise("giou", a, b), rtol=2e-7)
            np.testing.assert_allclose(engine.call(fastiou.complete_box_iou, a, b),
                                       ref.pairwise("ciou", a, b), rtol=2e-7, atol=1e-7)
            area = engine.call(fastiou.box_area, a)
            assert area.tolist() == [np.float32(ref.box_area(a)[0])]


def test_float16_in_float32_out(engine):
    a = np.array([[0, 0, 10, 10], [1, 1, 3, 3]], dtype=np.float16)
    b = np.array([[5, 5, 15, 15]], dtype=np.float16)
    for fn in [*PAIR_FUNCS.values()]:
        result = engine.call(fn, a, b)
        assert result.dtype == np.float32 and result.shape == (2, 1)
    np.testing.assert_allclose(engine.call(fastiou.box_iou, a, b)[0, 0], 25 / 175, rtol=1e-6)
    assert engine.call(fastiou.box_area, a).dtype == np.float32
    assert engine.call(fastiou.box_convert, a, in_fmt="xyxy", out_fmt="cxcywh").dtype == np.float32


@pytest.mark.parametrize("dtype", ["float64", "float32", "int32"])
def test_empty_sets(engine, dtype):
    rng = np.random.default_rng(2)
    want = out_dtype(engine, dtype)
    some = random_boxes(rng, (3,), dtype=dtype)
    none = some[:0]
    for op in OPS_2D:
        fn = PAIR_FUNCS[op]
        for b1, b2, shape in [(none, some, (0, 3)), (some, none, (3, 0)), (none, none, (0, 0))]:
            result = engine.call(fn, b1, b2)
            assert result.shape == shape and result.dtype == want, (op, result.shape, result.dtype)
        aligned = engine.call(fn, none, none, aligned=True)
        assert aligned.shape == (0,) and aligned.dtype == want
        batched = engine.call(fn, np.zeros((2, 0, 4), dtype), np.zeros((3, 1, 5, 4), dtype))
        assert batched.shape == (3, 2, 0, 5) and batched.dtype == want
    empty3 = engine.call(fastiou.box_iou, np.zeros((0, 6), dtype), np.zeros((2, 6), dtype))
    assert empty3.shape == (0, 2)
    area = engine.call(fastiou.box_area, none)
    assert area.shape == (0,) and area.dtype == want
    assert engine.call(fastiou.box_convert, none, in_fmt="xyxy", out_fmt="xywh").shape == (0, 4)
    for fn in LOSS_FUNCS.values():
        assert engine.call(fn, none, none).shape == (0,)
        for reduction in ("mean", "sum"):
            value = engine.call(fn, none, none, reduction=reduction)
            assert np.shape(value) == () and float(value) == 0.0


# Layout name -> (transform, what makes it unusual); values are those of the input except for the
# zero-stride view, whose rows all repeat the first box.
LAYOUTS = {
    "fortran": (np.asfortranarray, lambda x: not x.flags.c_contiguous),
    "row-strided": (lambda x: np.repeat(x, 2, axis=0)[::2], lambda x: not x.flags.c_contiguous),
    "column-strided": (lambda x: np.repeat(x, 2, axis=-1)[..., ::2],
                       lambda x: not x.flags.c_contiguous),
    "negative-stride": (lambda x: x[::-1, ::-1].copy()[::-1, ::-1], lambda x: min(x.strides) < 0),
    "byte-swapped": (lambda x: x.astype(x.dtype.newbyteorder()),
                     lambda x: not x.dtype.isnative),
    "zero-stride": (lambda x: np.broadcast_to(x[:1], x.shape), lambda x: x.strides[0] == 0),
}


def call_with_numpy(engine, fn, *arrays, **kwargs):
    """Like ``engine.call``, but JAX gets the NumPy arrays themselves (with backend="jax"), so
    that its own conversion of unusual layouts is what is tested."""
    if engine.name != "jax":
        return engine.call(fn, *arrays, **kwargs)
    import jax

    result = fn(*arrays, backend="jax", **kwargs)
    assert isinstance(result, jax.Array)
    return np.asarray(result)


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("dtype", ["float64", "float32", "int32"])
def test_memory_layouts_give_the_same_result(engine, layout, dtype):
    rng = np.random.default_rng(4)
    transform, unusual = LAYOUTS[layout]
    b1, b2 = box_sets(rng, (5,), (4,), dtype=dtype)
    for op in ("iou", "giou", "ciou", "ioa"):
        for aligned in (False, True):
            c2 = b1[::-1].copy() if aligned else b2
            for x, y in [(transform(b1), c2), (b1, transform(c2))]:
                assert unusual(x) or unusual(y)
                result = call_with_numpy(engine, PAIR_FUNCS[op], x, y, aligned=aligned, fmt="xywh")
                clean = call_with_numpy(
                    engine, PAIR_FUNCS[op], np.ascontiguousarray(x, x.dtype.newbyteorder("=")),
                    np.ascontiguousarray(y, y.dtype.newbyteorder("=")), aligned=aligned, fmt="xywh"
                )
                assert result.dtype == clean.dtype == out_dtype(engine, dtype)
                np.testing.assert_array_equal(result, clean)
    odd = transform(b1)
    clean = np.ascontiguousarray(odd, odd.dtype.newbyteorder("="))
    area = call_with_numpy(engine, fastiou.box_area, odd)
    assert area.dtype == out_dtype(engine, dtype)
    np.testing.assert_array_equal(area, call_with_numpy(engine, fastiou.box_area, clean))
    converted = call_with_numpy(engine, fastiou.box_convert, odd, in_fmt="xyxy", out_fmt="cxcywh")
    assert converted.dtype == out_dtype(engine, dtype)
    np.testing.assert_array_equal(
        converted,
        call_with_numpy(engine, fastiou.box_convert, clean, in_fmt="xyxy", out_fmt="cxcywh"),
    )


def test_inputs_are_not_mutated(engine):
    rng = np.random.default_rng(6)
    for fmt in ("xyxy", "cxcywh"):
        b1, b2 = box_sets(rng, (2, 5), (5,), fmt=fmt, dtype="float32")
        keep1, keep2 = b1.copy(), b2.copy()
        for fn in [*PAIR_FUNCS.values()]:
            engine.call(fn, b1, b2, fmt=fmt)
            engine.call(fn, b1, b2, fmt=fmt, aligned=True)
        for fn in LOSS_FUNCS.values():
            engine.call(fn, b1, b2, fmt=fmt, reduction="mean")
        engine.call(fastiou.box_area, b1, fmt=fmt)
        engine.call(fastiou.box_convert, b1, in_fmt=fmt, out_fmt="xyxy")
        assert np.array_equal(b1, keep1) and np.array_equal(b2, keep2)


def test_lists_are_accepted():
    a = [[0, 0, 10, 10]]
    b = [[5, 5, 15, 15], [0, 0, 10, 10]]
    result = fastiou.box_iou(a, b)
    assert isinstance(result, np.ndarray) and result.dtype == np.float32
    np.testing.assert_allclose(result, [[25 / 175, 1.0]], rtol=1e-7)
    assert fastiou.box_area([0.0, 0.0, 2.0, 3.0]) == 6.0


# ------------------------------------------------------------------------------------------------
# out= (NumPy arrays: the Numba engine, and the CUDA engine's host code through the harness)


@pytest.fixture(params=["numba", "cuda-harness", "cupy"])
def host_engine(request):
    from conftest import make_engine

    return make_engine(request.param)


def test_out_is_filled_and_returned(host_engine):
    engine = host_engine
    rng = np.random.default_rng(8)
    b1, b2 = box_sets(rng, (2, 5), (4,))
    with engine.context():
        x1, x2 = engine.asarray(b1), engine.asarray(b2)
        for op in OPS_2D:
            out = engine.asarray(np.full((2, 5, 4), -7.0))
            result = PAIR_FUNCS[op](x1, x2, out=out, backend=engine.backend)
            assert result is out
            np.testing.assert_allclose(engine.to_numpy(out), ref.pairwise(op, b1, b2), rtol=1e-12,
                                       atol=1e-12)
            out = engine.asarray(np.full((2, 4), -7.0, dtype=np.float64))
            result = PAIR_FUNCS[op](x1[:, :4], x2, aligned=True, out=out, backend=engine.backend)
            assert result is out
            np.testing.assert_allclose(engine.to_numpy(out),
                                       ref.pairwise(op, b1[:, :4], b2, aligned=True), rtol=1e-12,
                                       atol=1e-12)
        # float32 input writes a float32 out
        out = engine.asarray(np.zeros((2, 5, 4), dtype=np.float32))
        fastiou.box_iou(x1.astype(np.float32), x2.astype(np.float32), out=out,
                        backend=engine.backend)
        np.testing.assert_allclose(engine.to_numpy(out), ref.pairwise("iou", b1, b2), rtol=1e-5,
                                   atol=1e-6)


@pytest.mark.parametrize(
    "make_out,message",
    [
        (lambda: np.zeros((2, 5, 3)),
         r"box_iou: out must have shape \(2, 5, 4\) and dtype float64, got shape \(2, 5, 3\)"),
        (lambda: np.zeros((2, 5, 4), np.float32), r"box_iou: out must have shape \(2, 5, 4\) and "
                                                  r"dtype float64, got .*float32"),
        (lambda: np.zeros((4, 5, 2)).transpose(2, 1, 0), r"box_iou: out must be C-contiguous"),
        (lambda: np.zeros((2, 5, 8))[..., ::2], r"box_iou: out must be C-contiguous"),
    ],
    ids=["shape", "dtype", "fortran", "strided"],
)
def test_out_rejects_mismatch(host_engine, make_out, message):
    engine = host_engine
    rng = np.random.default_rng(9)
    b1, b2 = box_sets(rng, (2, 5), (4,))
    with engine.context():
        out = make_out()
        if engine.name == "cupy":
            import cupy

            out = cupy.asarray(out) if out.flags.c_contiguous else cupy.asfortranarray(out)
        with pytest.raises(ValueError, match=message):
            fastiou.box_iou(engine.asarray(b1), engine.asarray(b2), out=out, backend=engine.backend)


def test_out_is_refused_for_jax():
    import jax.numpy as jnp

    boxes = jnp.zeros((2, 4))
    with pytest.raises(TypeError, match=r"box_iou: out= is not supported for jax arrays"):
        fastiou.box_iou(boxes, boxes, out=jnp.zeros((2, 2)))
    with pytest.raises(TypeError, match=r"box_iou: boxes1 is a .*jax.* but out is a numpy"):
        fastiou.box_iou(boxes, boxes, out=np.zeros((2, 2), np.float32))
