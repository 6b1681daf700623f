"""The fast path of the box functions on NumPy input (one compiled call, no general validation).

It takes 2-D, C-contiguous 'xyxy' float32 or float64 arrays of one dtype with an optional ``out``;
every such call must give the float64 reference's values and, bit for bit, what the general path
gives (forced here with ``backend="numba"``), including NaN, infinite and extreme boxes, empty
sets, serial and parallel launches and rows wider than one task. Every other call must go through
the general path and behave as before: the same results, the same errors.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastiou
import fastiou._validate
import reference as ref
from box_cases import DEGENERATE_2D, OP_DIMS, PAIR_FUNCS, random_boxes, tolerance
from conftest import make_engine
from fastiou.backends.numba_cpu import boxes as kernels


@pytest.fixture
def general_calls(monkeypatch):
    """Counts the calls that reach the general path (its validation of the box pair)."""
    calls = []
    validate = fastiou._validate.box_pair

    def counting(*args, **kwargs):
        calls.append(args[0])
        return validate(*args, **kwargs)

    monkeypatch.setattr(fastiou._validate, "box_pair", counting)
    return calls


def special_boxes(dims: int, dtype: str) -> np.ndarray:
    """Degenerate, NaN, infinite and extreme boxes (past ``scale_limits``), exact in ``dtype``."""
    big, tiny = fastiou._formats.scale_limits(np.dtype(dtype), dims)
    rows = [list(r) for r in DEGENERATE_2D] if dims == 2 else [
        [0, 0, 0, 0, 0, 0], [0, 0, 0, 2, 3, 4], [4, 3, 2, 0, 0, 0], [1, 1, 1, 5, 6, 7]]
    lo, hi = [0.0] * dims, [10.0] * dims
    rows += [
        [np.nan] + lo[1:] + hi,                  # NaN
        lo + [np.inf] + hi[1:],                  # infinite
        lo + [big * 4] * dims,                   # beyond big
        lo + [tiny / 4] + hi[1:],                # an extent below tiny
        [-big * 8] + lo[1:] + [big * 8] * dims,  # huge, enclosing the others
    ]
    return np.array(rows, dtype=dtype)


def squarable(boxes: np.ndarray) -> np.ndarray:
    """Rows that the float64 reference computes without overflow (NaN rows give NaN there)."""
    return np.all(np.isnan(boxes) | (np.abs(boxes) < 1e30), axis=1)


def call_both(fn, a, b, **kwargs):
    """(fast path result, general path result)."""
    return fn(a, b, **kwargs), fn(a, b, backend="numba", **kwargs)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("aligned", [False, True], ids=["pairwise", "aligned"])
@pytest.mark.parametrize("op,dims", OP_DIMS, ids=[f"{op}-{d}d" for op, d in OP_DIMS])
def test_fast_path_equals_general_path_and_reference(general_calls, op, dims, aligned, dtype):
    rng = np.random.default_rng(3)
    fn = PAIR_FUNCS[op]
    special = special_boxes(dims, dtype)
    a = np.concatenate([random_boxes(rng, (9,), dims=dims, dtype=dtype), special])
    b = np.concatenate([special[::-1], random_boxes(rng, (9,), dims=dims, dtype=dtype)])
    a_before, b_before = a.copy(), b.copy()
    for zero_division in (0.0, -0.5):
        fast, general = call_both(fn, a, b, aligned=aligned, zero_division=zero_division)
        assert general_calls == [fn.__name__], "the fast path was not taken, or forced no fallback"
        general_calls.clear()
        assert fast.dtype == np.dtype(dtype) and fast.shape == general.shape
        np.testing.assert_array_equal(fast, general)  # bit for bit, NaN where NaN
        assert np.isnan(fast).sum() > 0
        # Against the float64 reference, on the rows whose coordinates it can square.
        ok, ok2 = squarable(a), squarable(b)
        expected = ref.pairwise(op, a, b, aligned=aligned, zero_division=zero_division)
        sel = np.ix_(ok, ok2) if not aligned else ok & ok2
        np.testing.assert_allclose(fast[sel], expected[sel], equal_nan=True,
                                   **tolerance(make_engine("numba"), dtype))
    np.testing.assert_array_equal(a, a_before)
    np.testing.assert_array_equal(b, b_before)


@pytest.mark.parametrize("op", ["iou", "ciou"])
def test_serial_and_parallel_launches_agree(monkeypatch, general_calls, op):
    # Rows wider than one task (_CHUNK columns), runs longer than one aligned task (_RUN), with
    # extreme boxes on both sides of every task boundary.
    rng = np.random.default_rng(5)
    m = kernels._CHUNK + 7
    a = random_boxes(rng, (3,), dtype="float32")
    b = random_boxes(rng, (m,), dtype="float32")
    special = special_boxes(2, "float32")
    for at in (0, kernels._RUN - 1, kernels._RUN, kernels._CHUNK - 1, kernels._CHUNK, m - 1):
        b[at] = special[10 + at % 5]
    a[1] = special[12]
    fn = PAIR_FUNCS[op]
    results = {}
    for name, threshold in (("serial", 1 << 62), ("parallel", 0)):
        monkeypatch.setattr(kernels, "PARALLEL_PAIRS", threshold)
        results[name] = (fn(a, b), fn(b, b[::-1].copy(), aligned=True))
    assert general_calls == []
    for s, p in zip(results["serial"], results["parallel"]):
        np.testing.assert_array_equal(s, p)
    pairwise, aligned = results["parallel"]
    np.testing.assert_array_equal(pairwise, fn(a, b, backend="numba"))
    ok = np.isfinite(b).all(axis=1) & squarable(b)
    expected = ref.pairwise(op, a[[0, 2]], b[ok])
    np.testing.assert_allclose(pairwise[[0, 2]][:, ok], expected, rtol=1e-5, atol=2e-6)
    assert np.isnan(pairwise[:, ~np.isfinite(b).all(axis=1)]).all()
    assert np.isnan(aligned[~(np.isfinite(b).all(axis=1) & np.isfinite(b[::-1]).all(axis=1))]).all()


@pytest.mark.parametrize("n,m", [(0, 5), (4, 0), (0, 0)])
def test_empty_sets(general_calls, n, m):
    a, b = np.zeros((n, 4), np.float32), np.zeros((m, 4), np.float32)
    result = fastiou.box_iou(a, b)
    assert result.shape == (n, m) and result.dtype == np.float32
    assert fastiou.box_iou(a, a, aligned=True).shape == (n,)
    assert general_calls == []


def test_out_is_filled_in_place(general_calls):
    rng = np.random.default_rng(2)
    a, b = random_boxes(rng, (6,)), random_boxes(rng, (5,))
    out = np.full((6, 5), -7.0)
    assert fastiou.generalized_box_iou(a, b, out=out) is out
    aligned = np.full(6, -7.0)
    assert fastiou.box_iou(a, a[::-1].copy(), aligned=True, out=aligned) is aligned
    assert general_calls == []
    np.testing.assert_allclose(out, ref.pairwise("giou", a, b), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(aligned, ref.pairwise("iou", a, a[::-1], aligned=True),
                               rtol=1e-12, atol=1e-12)


RNG = np.random.default_rng(11)
A32 = random_boxes(RNG, (5,), dtype="float32")
B32 = random_boxes(RNG, (4,), dtype="float32")
A64, B64 = A32.astype(np.float64), B32.astype(np.float64)

# Calls the fast path must leave to the general path: (id, function, boxes1, boxes2, kwargs).
REFUSED = [
    ("mixed-dtypes", fastiou.box_iou, A32, B64, {}),
    ("int32", fastiou.box_iou, A32.astype(np.int32), B32.astype(np.int32), {}),
    ("float16", fastiou.box_iou, A32.astype(np.float16), B32.astype(np.float16), {}),
    ("big-endian", fastiou.box_iou, A64.astype(">f8"), B64, {}),
    ("strided", fastiou.box_iou, np.repeat(A32, 2, axis=0)[::2], B32, {}),
    ("fortran", fastiou.box_iou, A32, np.asfortranarray(B32), {}),
    ("batch", fastiou.box_iou, A32[None], B32, {}),
    ("xywh", fastiou.box_iou, A32, B32, {"fmt": "xywh"}),
    ("zero-division-numpy", fastiou.box_iou, A32, B32, {"zero_division": np.float64(0.5)}),
    ("zero-division-int", fastiou.box_iou, A32, B32, {"zero_division": 1}),
    ("aligned-numpy-bool", fastiou.box_iou, A32, A32, {"aligned": np.True_}),
    ("list", fastiou.box_iou, A64.tolist(), B64, {}),
    ("out-float64", fastiou.box_iou, A32, B32, {"out": np.zeros((5, 4))}),
    ("out-fortran", fastiou.box_iou, A32, B32, {"out": np.zeros((4, 5), np.float32).T}),
]


@pytest.mark.parametrize("case", REFUSED, ids=[c[0] for c in REFUSED])
def test_refused_calls_take_the_general_path(general_calls, case):
    _, fn, a, b, kwargs = case
    if kwargs.get("out") is not None:  # a bad out: the general path's error, as before
        with pytest.raises(ValueError, match=r"^box_iou: out must"):
            fn(a, b, **kwargs)
        assert general_calls == ["box_iou"]
        return
    result = fn(a, b, **kwargs)
    assert general_calls == ["box_iou"]
    wide = any(np.asarray(x).dtype.kind == "f" and np.asarray(x).dtype.itemsize == 8
               for x in (a, b))  # float64 in any byte order
    assert result.dtype == (np.float64 if wide else np.float32)
    zd = float(kwargs.get("zero_division", 0.0))
    expected = ref.pairwise("iou", np.asarray(a, np.float64), np.asarray(b, np.float64),
                            fmt=kwargs.get("fmt", "xyxy"), aligned=bool(kwargs.get("aligned")),
                            zero_division=zd)
    np.testing.assert_allclose(result, expected, rtol=1e-5, atol=2e-6)


def test_out_overlapping_an_input_takes_the_general_path(general_calls):
    buffer = np.zeros(4 * 9)
    a = buffer.reshape(9, 4)
    a[:] = random_boxes(np.random.default_rng(4), (9,))
    b = a[::-1].copy()
    expected = ref.pairwise("iou", a, b, aligned=True)
    out = buffer[:9]  # the first boxes of a
    fastiou.box_iou(a, b, aligned=True, out=out)
    assert general_calls == ["box_iou"]
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("fn,a,b,kwargs,exc,message", [
    (fastiou.distance_box_iou, np.zeros((2, 6)), np.zeros((2, 6)), {}, ValueError,
     r"boxes1 must have shape \(\.\.\., N, 4\)"),
    (fastiou.generalized_box_iou_loss, np.zeros((2, 6)), np.zeros((2, 6)), {}, ValueError,
     r"boxes1 must have shape \(\.\.\., N, 4\)"),
    (fastiou.box_iou, np.zeros((2, 4)), np.zeros((3, 4)), {"aligned": True}, ValueError,
     r"aligned=True needs as many boxes"),
    (fastiou.box_iou, np.zeros((2, 5)), np.zeros((3, 5)), {}, ValueError,
     r"boxes1 must have shape"),
    (fastiou.box_iou, np.zeros((2, 4)), np.zeros((3, 6)), {}, ValueError,
     r"boxes1 and boxes2 must have the same last dimension"),
    (fastiou.box_iou, np.zeros((2, 4)), np.zeros((3, 4)), {"zero_division": float("nan")}, None,
     None),
], ids=["diou-3d", "giou-loss-3d", "aligned-n", "width-5", "widths-differ", "zd-nan"])
def test_bad_calls_raise_as_before(fn, a, b, kwargs, exc, message):
    if exc is None:  # accepted: zero-area pairs give zero_division, here NaN
        assert np.isnan(fn(a, b, **kwargs)).all()
        return
    with pytest.raises(exc, match=rf"^{fn.__name__}: {message}"):
        fn(a, b, **kwargs)


def test_negative_zero_division_keeps_its_sign():
    points = np.zeros((2, 4), np.float32)
    for zd in (0.0, -0.0, 0.0):
        result = fastiou.box_iou(points, points, zero_division=zd)
        assert (np.signbit(result) == np.signbit(zd)).all()


@pytest.mark.parametrize("op,dims", [("iou", 2), ("ciou", 2), ("giou", 3)])
def test_batched_extreme_boxes_equal_the_calls_per_batch(general_calls, op, dims):
    """Extreme boxes in some batch elements only, on either side: the batched call (general path,
    one driver over the batch, then its rescale kernel) equals, bit for bit, the fast 2-D call of
    each batch element, and the float64 reference on the boxes it can square."""
    rng = np.random.default_rng(8)
    fn = PAIR_FUNCS[op]
    special = special_boxes(dims, "float64")
    a = random_boxes(rng, (3, 6), dims=dims, dtype="float64")
    b = random_boxes(rng, (3, 5), dims=dims, dtype="float64")
    a[1, 2] = special[-3]  # beyond big, in batch element 1 of the first set
    b[2, 4] = special[-1]  # huge, in batch element 2 of the second set
    b[0, 0] = special[-2]  # an extent below tiny, in batch element 0
    batched = fn(a, b)
    assert general_calls == [fn.__name__]
    for k in range(3):
        np.testing.assert_array_equal(batched[k], fn(a[k], b[k]))
        ok, ok2 = squarable(a[k]), squarable(b[k])
        expected = ref.pairwise(op, a[k], b[k])
        np.testing.assert_allclose(batched[k][np.ix_(ok, ok2)], expected[np.ix_(ok, ok2)],
                                   **tolerance(make_engine("numba"), "float64"))
    aligned = fn(a, a[:, ::-1], aligned=True)
    for k in range(3):
        np.testing.assert_array_equal(aligned[k], fn(a[k], a[k, ::-1].copy(), aligned=True))
