"""Numerics every engine agrees on, single boxes, and clear errors for bad options.

- Extreme finite coordinates (areas that overflow, extents that underflow) against an exact
  reference in rational arithmetic (``fractions.Fraction``), on every engine.
- Integer coordinates on both sides of 2**53.
- Sizes multiplied as given in 'xywh' / 'cxcywh' (no corner round trip).
- A single box ``(4,)`` in the losses, as torchvision accepts.
- Confusion-matrix scores refuse negative, NaN and infinite counts; JAX without x64 warns when a
  call counts 2**31 pixels or more.
- ``python -m fastiou --help``; a table of bad options.
"""

from __future__ import annotations

import contextlib
import math
import subprocess
import sys
import warnings
from fractions import Fraction

import numpy as np
import pytest

import fastiou
from box_cases import PAIR_FUNCS, x64

# --------------------------------------------------------------------------------------------
# Exact reference: corners as Fractions, one pair at a time.


def _exact(op: str, a: list[float], b: list[float], zero_division: float = 0.0) -> float:
    """``op`` of corner boxes a and b computed exactly (no overflow, no rounding but the last)."""
    if not all(math.isfinite(v) for v in list(a) + list(b)):
        return math.nan
    d = len(a) // 2
    fa, fb = [Fraction(v) for v in a], [Fraction(v) for v in b]

    def ext(lo: Fraction, hi: Fraction) -> Fraction:
        return max(hi - lo, Fraction(0))

    e1 = [ext(fa[k], fa[d + k]) for k in range(d)]
    e2 = [ext(fb[k], fb[d + k]) for k in range(d)]
    ei = [ext(max(fa[k], fb[k]), min(fa[d + k], fb[d + k])) for k in range(d)]
    hull = [ext(min(fa[k], fb[k]), max(fa[d + k], fb[d + k])) for k in range(d)]
    area1, area2, inter = math.prod(e1), math.prod(e2), math.prod(ei)
    if op == "ioa":
        return zero_division if area1 == 0 else float(inter / area1)
    union = area1 + area2 - inter
    iou = Fraction(zero_division) if union == 0 else inter / union
    if op == "iou":
        return float(iou)
    if op == "giou":
        c = math.prod(hull)
        return float(iou - ((c - union) / c if c else 0))
    rho2 = sum(((fa[k] + fa[d + k]) / 2 - (fb[k] + fb[d + k]) / 2) ** 2 for k in range(d))
    diag2 = sum(h * h for h in hull)
    diou = iou - (rho2 / diag2 if diag2 else 0)
    if op == "diou":
        return float(diou)

    def angle(w: Fraction, h: Fraction) -> float:
        s = max(w, h)
        return 0.0 if s == 0 else math.atan2(float(w / s), float(h / s))

    v = 4 / math.pi**2 * (angle(*e2) - angle(*e1)) ** 2
    alpha = 0.0 if (1 - float(iou) + v) == 0 else v / (1 - float(iou) + v)
    return float(diou) - alpha * v


def _exact_pairwise(op: str, b1: np.ndarray, b2: np.ndarray, aligned: bool) -> np.ndarray:
    rows1, rows2 = b1.astype(np.float64).tolist(), b2.astype(np.float64).tolist()
    if aligned:
        return np.array([_exact(op, p, q) for p, q in zip(rows1, rows2)])
    return np.array([[_exact(op, p, q) for q in rows2] for p in rows1])


# Pairs (a, b) of corner boxes, scaled per dtype; every value is exact in float32.
E = 2.0**61  # float32, 2D: the largest coordinate computed by the plain formulas
CASES_2D = [
    ([0, 0, 10, 10], [0, 0, 1e20, 1e20]),                   # the issue: area of b overflows
    ([0, 0, 1e20, 1e20], [5e19, 5e19, 1.5e20, 1.5e20]),     # both huge: 1/7
    ([0, 0, 1e20, 1e20], [0, 0, 1e20, 1e20]),               # identical huge boxes
    ([-3e38, -3e38, 3e38, 3e38], [0, 0, 3e38, 3e38]),       # extents past the float32 range
    ([-3e38, 0, 3e38, 1], [0, 0, 1, 1]),                    # a huge, thin box
    ([0, 0, 1e30, 0], [0, 0, 1e30, 1e30]),                  # zero area, huge
    ([0, 0, 1e20, 1e20], [2e20, 0, 3e20, 1e20]),            # apart: GIoU, DIoU penalties
    ([0, 0, 1e20, 2e19], [1e19, 0, 3e19, 1e20]),            # different aspect ratios (CIoU)
    ([1e-30, 1e-30, 3e-30, 3e-30], [2e-30, 2e-30, 4e-30, 4e-30]),  # tiny: 1/7
    ([0, 0, 1, 1e-30], [0, 0, 1, 2e-30]),                   # a tiny extent
    ([0, 0, E, E], [E / 2, E / 2, E, E]),                   # at the limit: plain formulas
    ([0, 0, 2 * E, 2 * E], [E, E, 2 * E, 2 * E]),           # just past it: scaled
    ([0, 0, 3, 7], [1, 2, 4, 5]),                           # an ordinary pair
]
CASES_3D = [
    ([0, 0, 0, 10, 10, 10], [0, 0, 0, 1e15, 1e15, 1e15]),   # volume overflows in float32
    ([0, 0, 0, 1e15, 1e15, 1e15], [5e14, 5e14, 5e14, 1.5e15, 1.5e15, 1.5e15]),
    ([1e-15, 0, 0, 3e-15, 1e-14, 1], [2e-15, 0, 0, 4e-15, 1e-14, 1]),
    ([0, 0, 0, 3, 7, 2], [1, 2, 0, 4, 5, 3]),
]
# float64: the same pairs moved to where float64 overflows / underflows.
SCALE = {"float32": 1.0, "float64": 1e150}
TOLERANCE = {"float32": dict(rtol=1e-5, atol=2e-6), "float64": dict(rtol=1e-12, atol=1e-13)}
OPS = [(op, 2) for op in ("iou", "giou", "diou", "ciou", "ioa")] + [
    (op, 3) for op in ("iou", "giou", "ioa")]


def _case_arrays(dims: int, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    cases = CASES_2D if dims == 2 else CASES_3D
    scale = SCALE[dtype] if dims == 2 else SCALE[dtype] ** (2 / 3)
    a = np.array([c[0] for c in cases], dtype=np.float64) * scale
    b = np.array([c[1] for c in cases], dtype=np.float64) * scale
    return a.astype(dtype), b.astype(dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("op,dims", OPS)
def test_extreme_coordinates_match_exact_values_on_every_engine(cpu_engine, op, dims, dtype):
    a, b = _case_arrays(dims, dtype)
    fn = PAIR_FUNCS[op]
    # The float64 values need float64 on JAX too; float32 runs in JAX's default mode.
    with x64(cpu_engine) if dtype == "float64" else contextlib.nullcontext():
        for x, y, aligned in ((a, b, True), (b, a, True), (a, b, False)):
            got = cpu_engine.call(fn, x, y, aligned=aligned)
            expected = _exact_pairwise(op, x, y, aligned)
            assert got.dtype == np.dtype(dtype)
            assert np.isfinite(got).all(), (op, got)
            np.testing.assert_allclose(
                got, expected, err_msg=f"{op} {dims}D {dtype} aligned={aligned}",
                **TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_numba_and_cuda_kernels_agree_bit_for_bit_on_extreme_values(dtype):
    # The same formulas and limits in Python and in boxes.cu (the harness runs the .cu source).
    from conftest import make_engine

    numba_engine, cuda_engine = make_engine("numba"), make_engine("cuda-harness")
    for op, dims in OPS:
        a, b = _case_arrays(dims, dtype)
        for aligned in (True, False):
            np.testing.assert_array_equal(
                numba_engine.call(PAIR_FUNCS[op], a, b, aligned=aligned),
                cuda_engine.call(PAIR_FUNCS[op], a, b, aligned=aligned),
                err_msg=f"{op} {dims}D aligned={aligned}")


def test_a_pair_does_not_depend_on_the_other_boxes_of_the_call(cpu_engine):
    # The scaled formulas are chosen per pair: ordinary pairs give the same bits (JAX: the same
    # value up to XLA's rounding) whether or not an extreme box shares the call; non-finite
    # coordinates give NaN.
    rng = np.random.default_rng(7)
    lo = rng.uniform(0, 50, (6, 2))
    ordinary = np.concatenate([lo, lo + rng.uniform(0, 30, (6, 2))], axis=1).astype(np.float32)
    extreme = np.array([[0, 0, 1e20, 1e20], [np.nan, 0, 1, 1], [0, 0, np.inf, 1]], np.float32)
    for op, fn in PAIR_FUNCS.items():
        alone = cpu_engine.call(fn, ordinary, ordinary)
        mixed = cpu_engine.call(fn, np.concatenate([ordinary, extreme]),
                                np.concatenate([extreme, ordinary]))
        if cpu_engine.name == "jax":  # XLA rounds differently from one fusion to another
            np.testing.assert_allclose(mixed[:6, 3:], alone, err_msg=op, **TOLERANCE["float32"])
        else:
            np.testing.assert_array_equal(mixed[:6, 3:], alone, err_msg=op)
        assert np.isnan(mixed[:6, 1:3]).all() and np.isnan(mixed[7:, 3:]).all(), op
        assert np.isfinite(mixed[:6, 0]).all() and np.isfinite(mixed[6, 3:]).all(), op


def test_jax_gradients_stay_finite_next_to_extreme_boxes():
    import jax
    import jax.numpy as jnp

    a = jnp.asarray([[0, 0, 10, 10], [1, 1, 3, 4], [0, 0, 1e20, 1e20]], jnp.float32)
    b = jnp.asarray([[0, 0, 1e20, 1e20], [0, 0, 2, 2], [5e19, 5e19, 1.5e20, 1.5e20]], jnp.float32)
    ordinary = b.at[0].set(jnp.asarray([0, 0, 2, 2], jnp.float32)).at[2].set(b[1])
    for loss in (fastiou.generalized_box_iou_loss, fastiou.complete_box_iou_loss):
        grad = jax.jit(jax.grad(lambda x, y: loss(x, y, reduction="sum")))
        g = grad(a, b)
        assert np.isfinite(np.asarray(g)).all(), loss.__name__
        # The ordinary pair's gradient is the one it has among ordinary boxes only.
        alone = grad(a.at[::2].set(1), ordinary)
        np.testing.assert_allclose(np.asarray(g[1]), np.asarray(alone[1]), rtol=1e-6)


# --------------------------------------------------------------------------------------------
# Integer coordinates: exact up to 2**53, refused beyond (float64 computation on every engine;
# JAX needs x64 for 64-bit integers).

LIMIT = 2**53


@pytest.mark.parametrize("dtype", [np.int64, np.uint64])
def test_integer_coordinates_exact_up_to_2_53(cpu_engine, dtype):
    a = np.array([[LIMIT - 15, LIMIT - 15, LIMIT - 5, LIMIT - 5]], dtype=dtype)
    b = np.array([[LIMIT - 10, LIMIT - 10, LIMIT, LIMIT]], dtype=dtype)
    with x64(cpu_engine):
        iou = cpu_engine.call(fastiou.box_iou, a, b)
        assert iou.dtype == np.float32 and iou.tolist() == [[np.float32(25 / 175)]]
        assert cpu_engine.call(fastiou.box_area, a).tolist() == [100.0]
        np.testing.assert_array_equal(cpu_engine.call(fastiou.box_convert, a, in_fmt="xyxy",
                                                      out_fmt="xywh"),
                                      [[np.float32(LIMIT - 15)] * 2 + [10.0, 10.0]])


@pytest.mark.parametrize("dtype,value", [(np.int64, LIMIT + 1), (np.uint64, 2**60),
                                         (np.int64, -(LIMIT + 1))])
def test_integer_coordinates_past_2_53_are_refused(cpu_engine, dtype, value):
    # uint64 near 2**60 used to give 0.0 instead of 25/175.
    bad = np.array([[value, 0, value, 10]], dtype=dtype)
    fine = np.array([[0, 0, 10, 10]], dtype=dtype)
    cases = [(fastiou.box_iou, (fine, bad), "boxes2"), (fastiou.box_ioa, (bad, fine), "boxes1"),
             (fastiou.generalized_box_iou_loss, (bad, fine), "boxes1"),
             (fastiou.box_area, (bad,), "boxes"),
             (fastiou.box_convert, (bad, "xyxy", "xywh"), "boxes")]
    with x64(cpu_engine):
        for fn, args, name in cases:
            arrays = [x for x in args if isinstance(x, np.ndarray)]
            rest = args[len(arrays):]
            with pytest.raises(ValueError, match=rf"^{fn.__name__}: {name} holds integer "
                               rf"coordinates up to magnitude {abs(value)}, beyond 2\*\*53"):
                with cpu_engine.context():
                    kw = {} if cpu_engine.backend is None else {"backend": cpu_engine.backend}
                    fn(*[cpu_engine.asarray(x) for x in arrays], *rest, **kw)


# --------------------------------------------------------------------------------------------
# Sizes as given in 'xywh' / 'cxcywh'


def test_box_area_multiplies_the_sizes_as_given(cpu_engine):
    # The box: a corner round trip in float32 gives 21521514; w * h is 21524202.
    xywh = np.array([[1959077.6, 1369404.4, 80005.59, 269.03372],
                     [3.0e7, 1.0e7, 0.37, 12.5], [5.0, 5.0, -2.0, 3.0]], np.float32)
    expected = np.maximum(xywh[:, 2].astype(np.float64), 0) * np.maximum(xywh[:, 3], 0)
    cxcywh = xywh.copy()
    cxcywh[:, :2] += 1e6
    for fmt, boxes in (("xywh", xywh), ("cxcywh", cxcywh)):
        area = cpu_engine.call(fastiou.box_area, boxes, fmt=fmt)
        assert area.dtype == np.float32
        np.testing.assert_array_equal(area, expected.astype(np.float32), err_msg=fmt)
    assert cpu_engine.call(fastiou.box_area, xywh[:1], fmt="xywh")[0] == np.float32(21524202)


def test_box_convert_between_size_formats_keeps_the_sizes(cpu_engine):
    boxes = np.array([[1959077.6, 1369404.4, 80005.59, 269.03372],
                      [3.0e7, 1.0e7, 0.37, 12.5]], np.float32)
    for fmt_in, fmt_out in (("xywh", "cxcywh"), ("cxcywh", "xywh"), ("xywh", "xywh")):
        got = cpu_engine.call(fastiou.box_convert, boxes, in_fmt=fmt_in, out_fmt=fmt_out)
        np.testing.assert_array_equal(got[:, 2:], boxes[:, 2:], err_msg=(fmt_in, fmt_out))
        b64 = boxes.astype(np.float64)
        sign = {("xywh", "cxcywh"): 1, ("cxcywh", "xywh"): -1, ("xywh", "xywh"): 0}[fmt_in, fmt_out]
        np.testing.assert_allclose(got[:, :2], b64[:, :2] + sign * b64[:, 2:] / 2, rtol=1e-7)


# --------------------------------------------------------------------------------------------
# A single box (4,) in the losses, as torchvision accepts


LOSSES = {"giou": fastiou.generalized_box_iou_loss, "diou": fastiou.distance_box_iou_loss,
          "ciou": fastiou.complete_box_iou_loss}


@pytest.mark.parametrize("op", sorted(LOSSES))
def test_losses_accept_a_single_box(cpu_engine, op):
    import reference

    a = np.array([0.0, 0.0, 10.0, 10.0], np.float32)
    b = np.array([5.0, 5.0, 15.0, 20.0], np.float32)
    many = np.array([[5.0, 5.0, 15.0, 20.0], [0.0, 0.0, 10.0, 10.0], [20, 20, 30, 30]], np.float32)
    one = 1 - reference.pairwise(op, a[None], b[None], aligned=True)[0]
    for reduction in ("none", "mean", "sum"):
        got = cpu_engine.call(LOSSES[op], a, b, reduction=reduction)
        assert got.shape == () and got.dtype == np.float32, (reduction, got)
        np.testing.assert_allclose(got, one, rtol=1e-6)
    expected = 1 - reference.pairwise(op, np.broadcast_to(a, many.shape), many, aligned=True)
    for x, y in ((a, many), (many, a)):
        got = cpu_engine.call(LOSSES[op], x, y)
        assert got.shape == (3,)
        np.testing.assert_allclose(got, expected, rtol=1e-6)
    with pytest.raises(ValueError, match=r"boxes1 must have shape \(\.\.\., N, 4\)"):
        cpu_engine.call(LOSSES[op], np.zeros(5, np.float32), b)


# --------------------------------------------------------------------------------------------
# Scores from a confusion matrix: counts only


BAD_COUNTS = [
    ("negative", np.array([[3, -1], [0, 2]], np.int64), "cm[0, 1] = -1"),
    ("negative-float", np.array([[3.0, 0.0], [-2.0, 2.0]]), "cm[1, 0] = -2.0"),
    ("nan", np.array([[3.0, 0.0], [0.0, np.nan]]), "cm[1, 1] = nan"),
    ("inf", np.array([[np.inf, 0.0], [0.0, 1.0]]), "cm[0, 0] = inf"),
]


@pytest.mark.parametrize("fn", [fastiou.iou_from_confusion, fastiou.dice_from_confusion])
@pytest.mark.parametrize("case,cm,where", BAD_COUNTS, ids=[c[0] for c in BAD_COUNTS])
def test_scores_refuse_what_is_not_a_count(cpu_engine, fn, case, cm, where):
    # A Dice of 2.0 came out of [[3, -1], [0, 2]] before.
    with pytest.raises(ValueError, match=rf"^{fn.__name__}: cm must hold counts \(finite and "
                       rf">= 0\), got shape \(2, 2\) and dtype \w+ with {re_escape(where)}"):
        cpu_engine.call(fn, cm)


def re_escape(text: str) -> str:
    import re

    return re.escape(text)


def test_scores_of_valid_counts_are_unchanged(cpu_engine):
    cm = np.array([[5, 1, 0], [2, 7, 0], [0, 0, 0]])
    tp, fp, fn = np.diag(cm).astype(float), cm.sum(0) - np.diag(cm), cm.sum(1) - np.diag(cm)
    with np.errstate(invalid="ignore"):
        iou, dice = tp / (tp + fp + fn), 2 * tp / (2 * tp + fp + fn)
    np.testing.assert_allclose(cpu_engine.call(fastiou.iou_from_confusion, cm), iou, rtol=1e-6)
    np.testing.assert_allclose(cpu_engine.call(fastiou.dice_from_confusion, cm), dice, rtol=1e-6)


def test_scores_under_jit_are_nan_for_bad_counts():
    import jax
    import jax.numpy as jnp

    bad = jnp.asarray([[3, -1], [0, 2]])
    for fn in (fastiou.iou_from_confusion, fastiou.dice_from_confusion):
        assert np.isnan(np.asarray(jax.jit(fn)(bad))).all()
        good = np.asarray(jax.jit(fn)(jnp.abs(bad)))
        np.testing.assert_allclose(good, np.asarray(fn(np.abs(np.asarray(bad)))), rtol=1e-6)


def test_jax_without_x64_warns_when_a_count_can_pass_2_31():
    import jax
    import jax.numpy as jnp

    assert not jax.config.jax_enable_x64
    count = lambda p, t: fastiou.confusion_matrix(p, t, 3, out_of_range="ignore")  # noqa: E731
    huge = jax.ShapeDtypeStruct((2**31,), jnp.uint8)  # traced only: nothing is allocated
    with pytest.warns(RuntimeWarning, match=r"2147483648 pixels counted with jax x64 disabled, "
                      r"where confusion counts are int32"):
        assert jax.eval_shape(count, huge, huge).shape == (3, 3)
    just_below = jax.ShapeDtypeStruct((2**31 - 1,), jnp.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        jax.eval_shape(count, just_below, just_below)
        with jax.enable_x64(True):  # int64 counts: no limit to warn about
            jax.eval_shape(count, huge, huge)


# --------------------------------------------------------------------------------------------
# python -m fastiou


def test_module_help_prints_usage_and_exits_0():
    run = subprocess.run([sys.executable, "-m", "fastiou", "--help"], capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("usage: python -m fastiou")
    # The description, not the demo (which prints a table of the engines).
    assert "the classic IoU example" in run.stdout and "Engines on this machine" not in run.stdout
    bad = subprocess.run([sys.executable, "-m", "fastiou", "--no-such-flag"], capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == 2 and "unrecognized arguments: --no-such-flag" in bad.stderr


# --------------------------------------------------------------------------------------------
# Bad options: one line naming the function, the argument, what came and what was expected

A = np.array([[0.0, 0.0, 10.0, 10.0]])
LABELS = np.zeros((2, 3), np.uint8)
BAD_OPTIONS = [
    ("zero-division-huge-int", fastiou.box_iou, (A, A), {"zero_division": 10**400}, ValueError,
     r"box_iou: zero_division must be a real number within the float64 range, got an integer "
     r"of 401 digits"),
    ("quality-str", fastiou.iou_quality, ("x",), {}, TypeError,
     r"iou_quality: iou must be a real number, got 'x'"),
    ("quality-numeric-str", fastiou.iou_quality, ("0.99",), {}, TypeError,
     r"iou_quality: iou must be a real number, got '0.99'"),
    ("quality-none", fastiou.iou_quality, (None,), {}, TypeError,
     r"iou_quality: iou must be a real number, got None"),
    ("quality-bool", fastiou.iou_quality, (True,), {}, TypeError,
     r"iou_quality: iou must be a real number, got True"),
    ("quality-array", fastiou.iou_quality, (np.array([0.5, 0.9]),), {}, ValueError,
     r"iou_quality: iou must be a single value, got an array of shape \(2,\)"),
    ("quality-huge-int", fastiou.iou_quality, (10**400,), {}, ValueError,
     r"iou_quality: iou must be a real number in the float range"),
    ("reduction-array", fastiou.generalized_box_iou_loss, (A, A),
     {"reduction": np.array(["mean", "sum"])}, ValueError,
     r"generalized_box_iou_loss: reduction must be one of 'none', 'mean', 'sum', got "
     r"array\(\['mean', 'sum'\]"),
    ("reduction-0d-array", fastiou.complete_box_iou_loss, (A, A),
     {"reduction": np.array("mean")}, ValueError, r"complete_box_iou_loss: reduction must be one"),
    ("average-array", fastiou.mean_iou, (LABELS, LABELS, 2), {"average": np.array(["macro"])},
     ValueError, r"mean_iou: average must be one of 'macro', 'micro', 'weighted', 'none', got "
     r"array\(\['macro'\]"),
    ("out-of-range-array", fastiou.confusion_matrix, (LABELS, LABELS, 2),
     {"out_of_range": np.array(["raise"])}, ValueError,
     r"confusion_matrix: out_of_range must be one of 'raise', 'ignore', got array"),
    ("num-classes-memory", fastiou.confusion_matrix, (LABELS, LABELS, 40000), {}, ValueError,
     r"confusion_matrix: num_classes=40000 needs a 40000 x 40000 int64 confusion matrix of "
     r"11\.9 GiB \(held up to 3 times while counting\); the limit is 4 GiB, num_classes <= "
     r"23170"),
    ("num-classes-past-int32", fastiou.mean_iou, (LABELS, LABELS, 10**12), {}, ValueError,
     r"mean_iou: num_classes=1000000000000 needs a 1000000000000 x 1000000000000 int64"),
    ("num-classes-metric", fastiou.MeanIoU, (23171,), {}, ValueError,
     r"MeanIoU: num_classes=23171 needs a 23171 x 23171 int64 confusion matrix of 4\.0 GiB"),
]


@pytest.mark.parametrize("case,fn,args,kwargs,exc,message", BAD_OPTIONS,
                         ids=[row[0] for row in BAD_OPTIONS])
def test_bad_options_have_clear_errors(case, fn, args, kwargs, exc, message):
    with pytest.raises(exc, match="^" + message):
        fn(*args, **kwargs)


def test_largest_accepted_num_classes_allocates_nothing_up_front():
    # The memory check refuses before any allocation; at the limit the metric is created lazily.
    metric = fastiou.MeanIoU(23170)
    assert metric.num_classes == 23170
    assert fastiou.iou_quality(np.float32(0.96)) == "excellent"
    assert fastiou.iou_quality(np.array(0.8)) == "good"
