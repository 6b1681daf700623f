"""Semantic segmentation on every engine: the confusion matrix against sklearn and a plain NumPy
bincount, scores against a per-class loop, every label dtype, ignore_index, absent and ignored
classes, empty input, out-of-range labels, bad input, streaming and merging bit for bit, pickling,
JAX under jit and psum over several devices, and Dask (locally and on a loopback cluster)."""

from __future__ import annotations

import contextlib
import logging
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sklearn.metrics

import fastiou
from conftest import GPU_REASON

ROOT = Path(__file__).resolve().parent.parent
LABEL_DTYPES = ("uint8", "int8", "uint16", "int16", "int32", "uint32", "int64", "uint64")


# --------------------------------------------------------------------------------------------
# References, written plainly


def ref_confusion(pred: Any, target: Any, c: int, ignore: int | None = None) -> np.ndarray:
    """np.bincount(target * C + pred) over the pixels whose target is not ``ignore``."""
    t = np.asarray(target).ravel().astype(np.int64)
    p = np.asarray(pred).ravel().astype(np.int64)
    keep = t != ignore if ignore is not None else np.ones(t.shape, dtype=bool)
    return np.bincount(t[keep] * c + p[keep], minlength=c * c).reshape(c, c)


def ref_scores(cm: np.ndarray, ignore: int | None = None) -> dict[str, Any]:
    """Per-class IoU and Dice and the three means, one class at a time."""
    c = len(cm)
    iou, dice = np.full(c, np.nan), np.full(c, np.nan)
    tps, unions, supports = 0, 0, []
    for k in range(c):
        tp = int(cm[k, k])
        fp = int(cm[:, k].sum()) - tp
        fn = int(cm[k, :].sum()) - tp
        if k == ignore:
            supports.append(0)
            continue
        supports.append(tp + fn)
        tps, unions = tps + tp, unions + tp + fp + fn
        if tp + fp + fn:
            iou[k] = tp / (tp + fp + fn)
            dice[k] = 2 * tp / (2 * tp + fp + fn)
    present = ~np.isnan(iou)
    weights = np.array(supports, dtype=np.float64)
    return {
        "iou": iou,
        "dice": dice,
        "macro": iou[present].mean() if present.any() else np.nan,
        "micro": tps / unions if unions else np.nan,
        "weighted": (np.nansum(iou * weights) / weights.sum()) if weights.sum() else np.nan,
    }


def label_maps(rng: np.random.Generator, shape: tuple[int, ...], c: int, *, dtype: str = "uint8",
               ignore: int | None = None, block: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Blocky target (runs of one label, as in real maps) with some noise; a prediction that is
    the target with a fifth of its blocks relabelled and a few noisy pixels; ``ignore`` on about
    5% of the target pixels, half in blocks, half scattered."""
    *lead, h, w = shape
    coarse = tuple(lead) + (-(-h // block), -(-w // block))

    def blocky(values: np.ndarray) -> np.ndarray:
        up = np.repeat(np.repeat(values, block, axis=-2), block, axis=-1)
        return up[..., :h, :w]

    target = blocky(rng.integers(0, c, coarse))
    noise = rng.random(shape) < 0.05
    target[noise] = rng.integers(0, c, int(noise.sum()))
    pred = target.copy()
    wrong = blocky(rng.random(coarse) < 0.2) | (rng.random(shape) < 0.03)
    pred[wrong] = (pred[wrong] + rng.integers(1, c, int(wrong.sum()))) % c if c > 1 else 0
    if ignore is not None:
        hole = blocky(rng.random(coarse) < 0.025) | (rng.random(shape) < 0.025)
        target[hole] = ignore
    return pred.astype(dtype), target.astype(dtype)


def tol(engine: Any) -> dict[str, float]:
    if engine.name == "jax" and not jax_x64():
        return {"rtol": 2e-6, "atol": 1e-7}
    return {"rtol": 1e-12, "atol": 1e-14}


def jax_x64() -> bool:
    import jax

    return bool(jax.config.jax_enable_x64)


def count_dtype(engine: Any) -> np.dtype:
    return np.dtype(np.int32 if engine.name == "jax" and not jax_x64() else np.int64)


def score_dtype(engine: Any) -> np.dtype:
    return np.dtype(np.float32 if engine.name == "jax" and not jax_x64() else np.float64)


def fits(engine: Any, dtype: str) -> bool:
    """JAX without x64 holds no 64-bit integers (jnp.asarray narrows them to 32 bits)."""
    return not (engine.name == "jax" and not jax_x64() and np.dtype(dtype).itemsize == 8)


def check_scores(engine: Any, pred: np.ndarray, target: np.ndarray, c: int,
                 ignore: int | None) -> None:
    ref = ref_scores(ref_confusion(pred, target, c, ignore), ignore)
    for average in ("macro", "micro", "weighted"):
        got = engine.call(fastiou.mean_iou, pred, target, num_classes=c, ignore_index=ignore,
                          average=average)
        assert got.shape == () and got.dtype == score_dtype(engine), average
        np.testing.assert_allclose(got, ref[average], **tol(engine), err_msg=average)
    got = engine.call(fastiou.mean_iou, pred, target, num_classes=c, ignore_index=ignore,
                      average="none")
    np.testing.assert_allclose(got, ref["iou"], **tol(engine))
    cm = ref_confusion(pred, target, c, ignore)
    for fn, key in ((fastiou.iou_from_confusion, "iou"), (fastiou.dice_from_confusion, "dice")):
        got = engine.call(fn, cm, ignore_index=ignore)
        assert got.shape == (c,) and got.dtype == score_dtype(engine)
        np.testing.assert_allclose(got, ref[key], **tol(engine))


# --------------------------------------------------------------------------------------------
# The confusion matrix against sklearn and the bincount reference


@pytest.mark.parametrize("dtype", LABEL_DTYPES)
def test_confusion_matrix_every_dtype(engine, dtype):
    if not fits(engine, dtype):
        pytest.skip("JAX without x64 has no 64-bit integers (see test_jax_x64)")
    rng = np.random.default_rng(LABEL_DTYPES.index(dtype))
    c = 7
    ignore = 127 if dtype == "int8" else 255
    pred, target = label_maps(rng, (3, 37, 53), c, dtype=dtype, ignore=ignore)
    got = engine.call(fastiou.confusion_matrix, pred, target, num_classes=c, ignore_index=ignore)
    assert got.dtype == count_dtype(engine) and got.shape == (c, c)
    expected = ref_confusion(pred, target, c, ignore)
    np.testing.assert_array_equal(got, expected)
    keep = target != ignore
    np.testing.assert_array_equal(
        expected, sklearn.metrics.confusion_matrix(target[keep], pred[keep], labels=np.arange(c))
    )
    assert expected.sum() == keep.sum() > 0


def test_large_input_over_several_tasks(engine, monkeypatch):
    """Many tasks (the Numba engine's minimum task size lowered), in uneven parts, with runs of
    one label pair that cross the task and window boundaries."""
    if engine.name == "numba":
        from fastiou.backends.numba_cpu import semantic

        monkeypatch.setattr(semantic, "_MIN_TASK", 10_000)
    rng = np.random.default_rng(11)
    pred, target = label_maps(rng, (5, 301, 307), 19, ignore=255, block=23)
    got = engine.call(fastiou.confusion_matrix, pred, target, num_classes=19, ignore_index=255)
    np.testing.assert_array_equal(got, ref_confusion(pred, target, 19, 255))
    check_scores(engine, pred, target, 19, 255)


@pytest.mark.parametrize(("pdtype", "tdtype"), [("int64", "uint8"), ("uint8", "int32"),
                                                ("int16", "uint16")])
def test_mixed_label_dtypes(engine, pdtype, tdtype):
    if not (fits(engine, pdtype) and fits(engine, tdtype)):
        pytest.skip("JAX without x64 has no 64-bit integers")
    rng = np.random.default_rng(3)
    pred, target = label_maps(rng, (2, 40, 41), 5, ignore=255)
    got = engine.call(fastiou.confusion_matrix, pred.astype(pdtype), target.astype(tdtype),
                      num_classes=5,
                      ignore_index=255)
    np.testing.assert_array_equal(got, ref_confusion(pred, target, 5, 255))


@pytest.mark.parametrize("ignore", [None, 255, 2, 0, -1])
def test_ignore_index(engine, ignore):
    """255, a valid class id (2, 0: that class leaves the means, NaN per class), -1 (signed maps),
    and None."""
    rng = np.random.default_rng(5)
    dtype = "int16" if ignore == -1 else "uint8"
    pred, target = label_maps(rng, (2, 33, 65), 6, dtype=dtype, ignore=ignore)
    got = engine.call(fastiou.confusion_matrix, pred, target, num_classes=6, ignore_index=ignore)
    np.testing.assert_array_equal(got, ref_confusion(pred, target, 6, ignore))
    if ignore in (0, 2):
        assert (got[ignore] == 0).all() and got[:, ignore].sum() > 0  # predicted, never a target
        per_class = engine.call(fastiou.mean_iou, pred, target, num_classes=6, ignore_index=ignore,
                                average="none")
        assert np.isnan(per_class[ignore]) and not np.isnan(np.delete(per_class, ignore)).any()
    check_scores(engine, pred, target, 6, ignore)


def test_ignore_index_that_a_dtype_cannot_hold(engine):
    """ignore_index=-1 with uint8 maps and 300 with int8 maps can match no pixel."""
    rng = np.random.default_rng(6)
    pred, target = label_maps(rng, (40, 40), 4)
    got = engine.call(fastiou.confusion_matrix, pred, target, num_classes=4, ignore_index=-1)
    np.testing.assert_array_equal(got, ref_confusion(pred, target, 4))
    got = engine.call(fastiou.confusion_matrix, pred.astype(np.int8), target.astype(np.int8),
                      num_classes=4,
                      ignore_index=300)
    np.testing.assert_array_equal(got, ref_confusion(pred, target, 4))


def test_prediction_under_an_ignored_pixel_is_not_checked(engine):
    target = np.array([[0, 1, 255], [255, 2, 1]], dtype=np.uint8)
    pred = np.array([[0, 2, 200], [255, 2, 1]], dtype=np.uint8)
    got = engine.call(fastiou.confusion_matrix, pred, target, num_classes=3, ignore_index=255)
    np.testing.assert_array_equal(got, [[1, 0, 0], [0, 1, 1], [0, 0, 1]])


# --------------------------------------------------------------------------------------------
# Absent classes, empty and fully ignored input


def test_absent_class_is_nan_and_leaves_the_mean(engine):
    pred = np.array([0, 0, 1, 1, 3, 3], dtype=np.uint8)
    target = np.array([0, 1, 1, 1, 3, 0], dtype=np.uint8)  # class 2 nowhere, class 4 nowhere
    per_class = engine.call(fastiou.mean_iou, pred, target, num_classes=5, average="none")
    np.testing.assert_allclose(per_class, [1 / 3, 2 / 3, np.nan, 1 / 2, np.nan], **tol(engine))
    macro = engine.call(fastiou.mean_iou, pred, target, num_classes=5)
    np.testing.assert_allclose(macro, (1 / 3 + 2 / 3 + 1 / 2) / 3, **tol(engine))
    # a class only predicted is present, with IoU 0
    per_class = engine.call(fastiou.mean_iou, pred, np.where(target == 3, 0, target), num_classes=5,
                            average="none")
    assert per_class[3] == 0


@pytest.mark.parametrize("case", ["empty", "all-ignored", "only-the-ignored-class"])
def test_nothing_present_gives_nan_with_a_warning(engine, case):
    if case == "empty":
        pred = target = np.zeros((0, 7), dtype=np.uint8)
        ignore = 255
    elif case == "all-ignored":
        pred, target = np.ones((4, 5), np.uint8), np.full((4, 5), 255, np.uint8)
        ignore = 255
    else:
        pred, target = np.ones((4, 5), np.uint8), np.full((4, 5), 2, np.uint8)
        ignore = 2
    cm = engine.call(fastiou.confusion_matrix, pred, target, num_classes=3, ignore_index=ignore)
    np.testing.assert_array_equal(cm, np.zeros((3, 3)))
    for average in ("macro", "micro", "weighted"):
        with pytest.warns(RuntimeWarning, match="mean_iou: no class occurs"):
            got = engine.call(fastiou.mean_iou, pred, target, num_classes=3, ignore_index=ignore,
                              average=average)
        assert np.isnan(got)
    per_class = engine.call(fastiou.mean_iou, pred, target, num_classes=3, ignore_index=ignore,
                            average="none")
    assert np.isnan(per_class).all()


# --------------------------------------------------------------------------------------------
# Out-of-range labels


def test_out_of_range_labels_are_named(engine):
    target = np.array([[0, 1, 7], [255, 2, 9]], dtype=np.int16)
    pred = np.array([[0, 5, 1], [2, -3, 1]], dtype=np.int16)
    message = (r"confusion_matrix: labels must be in \[0, 3\) or, in target, ignore_index=255, "
               r"but target holds 7, 9 and pred holds -3, 5 \(where target is not ignored\); "
               r"pass out_of_range='ignore'")
    with pytest.raises(ValueError, match=message):
        engine.call(fastiou.confusion_matrix, pred, target, num_classes=3, ignore_index=255)
    with pytest.raises(ValueError, match="mean_iou: labels must be in"):
        engine.call(fastiou.mean_iou, pred, target, num_classes=3, ignore_index=255)
    got = engine.call(fastiou.confusion_matrix, pred, target, num_classes=3, ignore_index=255,
                      out_of_range="ignore")
    np.testing.assert_array_equal(got, [[1, 0, 0], [0, 0, 0], [0, 0, 0]])  # 1 -> 5 dropped too


def test_out_of_range_ignore_equals_dropping_the_pixels(engine):
    rng = np.random.default_rng(8)
    pred, target = label_maps(rng, (50, 60), 5, ignore=255)
    pred[rng.random(pred.shape) < 0.02] = 17
    target[rng.random(target.shape) < 0.02] = 6
    keep = (pred < 5) & (target != 6)
    expected = ref_confusion(pred[keep], target[keep], 5, 255)
    got = engine.call(fastiou.confusion_matrix, pred, target, num_classes=5, ignore_index=255,
                      out_of_range="ignore")
    np.testing.assert_array_equal(got, expected)
    with pytest.raises(ValueError, match=r"target holds 6 and pred holds 17"):
        engine.call(fastiou.confusion_matrix, pred, target, num_classes=5, ignore_index=255)


@pytest.mark.parametrize("dtype", ["uint8", "int16"])  # label tables, labels computed
@pytest.mark.parametrize("where", ["pred", "target"])
@pytest.mark.parametrize("tasks", ["one", "several"])
def test_one_out_of_range_pixel_is_found(engine, monkeypatch, dtype, where, tasks):
    """A single label outside [0, C) anywhere in a map that is otherwise valid (or under an
    ignored pixel, for the prediction) is found, whether the map is counted as one task on the
    calling thread or split over several (the Numba engine's task size lowered)."""
    if tasks == "several":
        if engine.name != "numba":
            pytest.skip("the task split is the Numba engine's")
        from fastiou.backends.numba_cpu import semantic

        monkeypatch.setattr(semantic, "_MIN_TASK", 1000)
    rng = np.random.default_rng(12)
    pred, target = label_maps(rng, (3, 47, 71), 6, dtype=dtype, ignore=255)
    at = (2, 40, 3)
    target[at] = 4
    bad = pred if where == "pred" else target
    bad[at] = 6
    with pytest.raises(ValueError, match=rf"{where} holds 6\b"):
        engine.call(fastiou.confusion_matrix, pred, target, num_classes=6, ignore_index=255)
    keep = np.ones(pred.shape, bool)
    keep[at] = False
    got = engine.call(fastiou.confusion_matrix, pred, target, num_classes=6, ignore_index=255,
                      out_of_range="ignore")
    np.testing.assert_array_equal(got, ref_confusion(pred[keep], target[keep], 6, 255))
    if where == "pred":  # the same label under an ignored pixel is not checked
        target[at] = 255
        got = engine.call(fastiou.confusion_matrix, pred, target, num_classes=6, ignore_index=255)
        np.testing.assert_array_equal(got, ref_confusion(pred, target, 6, 255))


def test_many_offending_values_are_summarized():
    target = np.arange(40, dtype=np.int32)
    with pytest.raises(ValueError, match=r"target holds 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, \.\.\. "
                                         r"\(37 distinct values\)"):
        fastiou.confusion_matrix(np.zeros(40, np.int32), target, 3)


# --------------------------------------------------------------------------------------------
# Bad input


M = np.zeros((4, 5), dtype=np.uint8)
BAD_INPUT = [
    (fastiou.confusion_matrix, (M, np.zeros((5, 4), np.uint8), 3), {}, ValueError,
     r"confusion_matrix: pred and target must have the same shape, got pred with shape \(4, 5\) "
     r"and dtype uint8 and target with shape \(5, 4\) and dtype uint8"),
    (fastiou.mean_iou, (M, np.zeros((4, 5, 1), np.uint8), 3), {}, ValueError,
     r"mean_iou: pred and target must have the same shape"),
    (fastiou.confusion_matrix, (M.astype(np.float32), M, 3), {}, TypeError,
     r"confusion_matrix: pred must hold integer class labels, got shape \(4, 5\) and dtype "
     r"float32"),
    (fastiou.confusion_matrix, (M, M.astype(bool), 3), {}, TypeError,
     r"target must hold integer class labels"),
    (fastiou.confusion_matrix, (M, M, 0), {}, ValueError,
     r"confusion_matrix: num_classes must be an integer in \[1, 23170\], got 0"),
    (fastiou.confusion_matrix, (M, M, 2.0), {}, ValueError, r"num_classes must be an integer"),
    (fastiou.confusion_matrix, (M, M, True), {}, ValueError, r"num_classes must be an integer"),
    (fastiou.confusion_matrix, (M, M, 3), {"ignore_index": 2.5}, TypeError,
     r"confusion_matrix: ignore_index must be an integer or None, got 2.5"),
    (fastiou.confusion_matrix, (M, M, 3), {"out_of_range": "clip"}, ValueError,
     r"confusion_matrix: out_of_range must be one of 'raise', 'ignore', got 'clip'"),
    (fastiou.mean_iou, (M, M, 3), {"average": "mean"}, ValueError,
     r"mean_iou: average must be one of 'macro', 'micro', 'weighted', 'none', got 'mean'"),
    (fastiou.iou_from_confusion, (np.zeros((3, 4), np.int64),), {}, ValueError,
     r"iou_from_confusion: cm must be a square \(C, C\) matrix .* got shape \(3, 4\)"),
    (fastiou.dice_from_confusion, (np.zeros(3, np.int64),), {}, ValueError,
     r"dice_from_confusion: cm must be a square"),
]


@pytest.mark.parametrize("fn,args,kwargs,exc,message", BAD_INPUT,
                         ids=[f"{row[0].__name__}-{i}" for i, row in enumerate(BAD_INPUT)])
def test_bad_input(engine, fn, args, kwargs, exc, message):
    arrays = [a for a in args if isinstance(a, np.ndarray)]
    if len(arrays) < len(args):
        kwargs = {"num_classes": args[-1], **kwargs}
    with pytest.raises(exc, match=message):
        engine.call(fn, *arrays, **kwargs)


def test_mixed_engines_are_a_type_error():
    import jax.numpy as jnp

    with pytest.raises(TypeError, match=r"confusion_matrix: pred is a numpy.ndarray but target "
                                        r"is a .*jax"):
        fastiou.confusion_matrix(M, jnp.asarray(M), 3)


def test_nothing_the_caller_passed_is_mutated():
    rng = np.random.default_rng(9)
    pred, target = label_maps(rng, (30, 30), 4, ignore=255)
    pred[0, 0] = 9
    copies = pred.copy(), target.copy()
    fastiou.confusion_matrix(pred, target, 4, ignore_index=255, out_of_range="ignore")
    with pytest.raises(ValueError):
        fastiou.mean_iou(pred, target, 4, ignore_index=255)
    np.testing.assert_array_equal(pred, copies[0])
    np.testing.assert_array_equal(target, copies[1])


# --------------------------------------------------------------------------------------------
# Layouts: any shape, strides, Fortran order, byte order, lists


def test_layouts_give_the_same_counts(engine):
    rng = np.random.default_rng(10)
    pred, target = label_maps(rng, (3, 40, 50), 6, dtype="int32", ignore=255)
    expected = ref_confusion(pred, target, 6, 255)
    variants = {
        "fortran": (np.asfortranarray(pred), np.asfortranarray(target)),
        "one fortran": (np.asfortranarray(pred), target),
        "strided": (pred[:, ::2, ::3], target[:, ::2, ::3]),
        "negative stride": (pred[:, ::-1], target[:, ::-1]),
        "big-endian": (pred.astype(">i4"), target.astype(">i4")),
        "flat": (pred.ravel(), target.ravel()),
        "4-d": (pred.reshape(3, 2, 20, 50), target.reshape(3, 2, 20, 50)),
    }
    if engine.name == "jax":
        del variants["big-endian"]  # jax arrays are always in native byte order
    for name, (p, t) in variants.items():
        want = ref_confusion(p, t, 6, 255) if name == "strided" else expected
        got = engine.call(fastiou.confusion_matrix, p, t, num_classes=6, ignore_index=255)
        np.testing.assert_array_equal(got, want, err_msg=name)


def test_nested_lists():
    got = fastiou.confusion_matrix([[0, 1], [1, 1]], [[0, 1], [0, 1]], 2)
    assert isinstance(got, np.ndarray)
    np.testing.assert_array_equal(got, [[1, 1], [0, 2]])


# --------------------------------------------------------------------------------------------
# Streaming: update, merge, reset, pickling


@contextlib.contextmanager
def on(engine: Any):
    with engine.context():
        yield lambda x: engine.asarray(np.asarray(x))


def test_streaming_and_merging_are_bit_for_bit(engine):
    rng = np.random.default_rng(12)
    pred, target = label_maps(rng, (6, 45, 70), 9, ignore=255)
    with on(engine) as arr:
        whole = fastiou.MeanIoU(9, ignore_index=255, backend=engine.backend)
        whole.update(arr(pred), arr(target))
        streamed = fastiou.MeanIoU(9, ignore_index=255, backend=engine.backend)
        for k in range(6):
            streamed.update(arr(pred[k]), arr(target[k]))
        a = fastiou.MeanIoU(9, ignore_index=255, backend=engine.backend)
        b = fastiou.MeanIoU(9, ignore_index=255, backend=engine.backend)
        a.update(arr(pred[:2]), arr(target[:2]))
        b.update(arr(pred[2:]), arr(target[2:]))
        merged = a.merge(b)
        metrics = (whole, streamed, merged)
        matrices = [engine.to_numpy(m.confusion_matrix()) for m in metrics]
        results = {avg: [engine.to_numpy(m.compute(average=avg)) for m in metrics]
                   for avg in ("macro", "micro", "weighted", "none")}
    for cm in matrices:
        assert cm.dtype == count_dtype(engine)
        np.testing.assert_array_equal(cm, ref_confusion(pred, target, 9, 255))
    ref = ref_scores(ref_confusion(pred, target, 9, 255), 255)
    for avg, values in results.items():
        assert all(v.tobytes() == values[0].tobytes() for v in values), avg  # bit for bit
        np.testing.assert_allclose(values[0], ref["iou" if avg == "none" else avg], **tol(engine))


def test_streaming_state_stays_on_the_engine_and_pickles(engine):
    rng = np.random.default_rng(13)
    pred, target = label_maps(rng, (4, 30, 30), 5, ignore=255)
    with on(engine) as arr:
        m = fastiou.MeanIoU(5, ignore_index=255, backend=engine.backend)
        m.update(arr(pred[:2]), arr(target[:2]))
        assert isinstance(m.confusion_matrix(), engine.array_type)
        copy = pickle.loads(pickle.dumps(m))
        assert isinstance(copy.confusion_matrix(), engine.array_type)
        for metric in (m, copy):
            metric.update(arr(pred[2:]), arr(target[2:]))
        before = engine.to_numpy(m.compute())
        assert engine.to_numpy(copy.compute()).tobytes() == before.tobytes()
        np.testing.assert_array_equal(engine.to_numpy(copy.confusion_matrix()),
                                      ref_confusion(pred, target, 5, 255))
        m.reset()
        np.testing.assert_array_equal(engine.to_numpy(m.confusion_matrix()), np.zeros((5, 5)))
        with pytest.warns(RuntimeWarning, match="MeanIoU.compute: no class occurs"):
            assert np.isnan(engine.to_numpy(m.compute()))
        m.update(arr(pred), arr(target))
        assert engine.to_numpy(m.compute()).tobytes() == before.tobytes()


def test_streaming_checks():
    m = fastiou.MeanIoU(3, ignore_index=255)
    with pytest.raises(ValueError, match=r"MeanIoU.merge: can only merge a metric with the same "
                                         r"\(num_classes, ignore_index\), got \(3, 255\) and "
                                         r"\(4, 255\)"):
        m.merge(fastiou.MeanIoU(4, ignore_index=255))
    with pytest.raises(TypeError, match="MeanIoU.merge: other must be a MeanIoU, got int"):
        m.merge(3)
    with pytest.raises(ValueError, match=r"MeanIoU.update: labels must be in \[0, 3\)"):
        m.update(np.array([5], np.uint8), np.array([0], np.uint8))
    assert m._state is None  # a failed update adds nothing
    with pytest.raises(ValueError, match="MeanIoU: num_classes must be"):
        fastiou.MeanIoU(0)
    import jax.numpy as jnp

    m.update(np.array([0, 1], np.uint8), np.array([0, 1], np.uint8))
    with pytest.raises(TypeError, match=r"MeanIoU.update: pred is a .*jax.* but state is a "
                                        r"numpy.ndarray"):
        m.update(jnp.array([0, 1]), jnp.array([0, 1]))
    other = fastiou.MeanIoU(3, ignore_index=255)
    other.update(jnp.array([0, 1]), jnp.array([0, 1]))
    with pytest.raises(TypeError, match=r"MeanIoU.merge: state is a numpy.ndarray but other is"):
        m.merge(other)
    # merging an empty metric changes nothing, merging into an empty one copies
    empty = fastiou.MeanIoU(3, ignore_index=255)
    assert m.merge(empty) is m
    np.testing.assert_array_equal(empty.merge(m).confusion_matrix(), m.confusion_matrix())


# --------------------------------------------------------------------------------------------
# JAX: jit, no retracing, functional state, psum over several devices, x64


def test_jax_under_jit_without_retracing():
    import jax
    import jax.numpy as jnp

    rng = np.random.default_rng(14)
    pred, target = label_maps(rng, (4, 20, 24), 6, ignore=255)
    traces = []

    @jax.jit
    def step(state, p, t):
        traces.append(1)
        return fastiou.mean_iou_update(state, p, t)

    state = fastiou.mean_iou_init(6, ignore_index=255)
    for k in range(4):
        state = step(state, jnp.asarray(pred[k]), jnp.asarray(target[k]))
    assert len(traces) == 1
    cm = ref_confusion(pred, target, 6, 255)
    np.testing.assert_array_equal(fastiou.mean_iou_confusion(state), cm)
    ref = ref_scores(cm, 255)
    compute = jax.jit(fastiou.mean_iou_compute, static_argnames="average")
    for average in ("macro", "micro", "weighted"):
        np.testing.assert_allclose(compute(state, average=average), ref[average], rtol=2e-6)
    miou = jax.jit(lambda p, t: fastiou.mean_iou(p, t, 6, ignore_index=255))
    np.testing.assert_allclose(miou(jnp.asarray(pred), jnp.asarray(target)), ref["macro"],
                               rtol=2e-6)
    matrix = jax.jit(lambda p, t: fastiou.confusion_matrix(p, t, 6, ignore_index=255))
    np.testing.assert_array_equal(matrix(jnp.asarray(pred), jnp.asarray(target)), cm)
    # vmap over a batch of maps gives one matrix per map
    per_map = jax.vmap(lambda p, t: fastiou.confusion_matrix(p, t, 6, ignore_index=255))(
        jnp.asarray(pred), jnp.asarray(target))
    for k in range(4):
        np.testing.assert_array_equal(per_map[k], ref_confusion(pred[k], target[k], 6, 255))


def test_jax_psum_over_host_devices():
    import jax
    import jax.numpy as jnp
    from jax.sharding import Mesh
    from jax.sharding import PartitionSpec as P

    devices = jax.devices("cpu")
    assert len(devices) >= 4, "conftest asks XLA for 4 host devices before jax is imported"
    rng = np.random.default_rng(15)
    pred, target = label_maps(rng, (8, 24, 32), 7, ignore=255)
    mesh = Mesh(np.array(devices[:4]), ("data",))

    def shard(p, t):  # each device: two maps
        state = fastiou.mean_iou_init(7, ignore_index=255)
        for k in range(p.shape[0]):
            state = fastiou.mean_iou_update(state, p[k], t[k])
        state = jax.lax.psum(state, "data")
        return fastiou.mean_iou_confusion(state)[None], fastiou.mean_iou_compute(state)[None]

    run = jax.jit(jax.shard_map(shard, mesh=mesh, in_specs=(P("data"), P("data")),
                                out_specs=(P("data"), P("data"))))
    cms, mious = run(jnp.asarray(pred), jnp.asarray(target))
    single = fastiou.mean_iou_update(fastiou.mean_iou_init(7, ignore_index=255),
                                     jnp.asarray(pred), jnp.asarray(target))
    expected = ref_confusion(pred, target, 7, 255)
    for d in range(4):  # every device holds the total
        np.testing.assert_array_equal(cms[d], expected)
        assert np.asarray(mious[d]).tobytes() == np.asarray(
            fastiou.mean_iou_compute(single)).tobytes()


def test_jax_state_is_exact_past_32_bits_without_x64():
    import jax.numpy as jnp

    pred = np.array([0, 1, 1, 0, 1], np.uint8)
    target = np.array([0, 1, 0, 0, 1], np.uint8)
    state = fastiou.mean_iou_update(fastiou.mean_iou_init(2), jnp.asarray(pred),
                                    jnp.asarray(target))
    for _ in range(33):  # 2**33 copies of the data: counts past 2**34
        state = fastiou.mean_iou_merge(state, state)
    lo, hi = np.asarray(state.lo), np.asarray(state.hi)
    counts = [int(h) * 2**24 + int(low) for h, low in zip(hi, lo)]
    assert counts[:4] == [2 * 2**33, 1 * 2**33, 0, 2 * 2**33]
    # low limbs stay below 2**24, so a psum over up to 256 devices cannot wrap them
    assert (lo < 2**24).all()
    np.testing.assert_allclose(fastiou.mean_iou_compute(state), (2 / 3 + 2 / 3) / 2, rtol=1e-6)
    if not jax_x64():  # the int32 matrix saturates; the IoU above does not
        np.testing.assert_array_equal(fastiou.mean_iou_confusion(state),
                                      [[2**31 - 1, 2**31 - 1], [0, 2**31 - 1]])


def test_jax_x64():
    import jax
    import jax.numpy as jnp

    rng = np.random.default_rng(16)
    pred, target = label_maps(rng, (2, 30, 30), 5, dtype="int64", ignore=255)
    with jax.enable_x64(True):
        got = fastiou.confusion_matrix(jnp.asarray(pred), jnp.asarray(target.astype(np.uint64)),
                                       5, ignore_index=255)
        assert got.dtype == np.int64
        np.testing.assert_array_equal(got, ref_confusion(pred, target, 5, 255))
        state = fastiou.mean_iou_update(fastiou.mean_iou_init(5, ignore_index=255),
                                        jnp.asarray(pred), jnp.asarray(target))
        for _ in range(34):
            state = fastiou.mean_iou_merge(state, state)
        cm = fastiou.mean_iou_confusion(state)
        assert cm.dtype == np.int64
        np.testing.assert_array_equal(np.asarray(cm), ref_confusion(pred, target, 5, 255) * 2**34)
        miou = fastiou.mean_iou_compute(state)
        assert miou.dtype == np.float64
        np.testing.assert_allclose(miou, ref_scores(ref_confusion(pred, target, 5, 255), 255)
                                   ["macro"], rtol=1e-12)


def test_jax_out_of_range_under_tracing():
    import jax
    import jax.numpy as jnp

    pred = jnp.array([0, 1, 2, 1], jnp.uint8)
    target = jnp.array([0, 1, 9, 255], jnp.uint8)
    cm = jax.jit(lambda p, t: fastiou.confusion_matrix(p, t, 3, ignore_index=255))(pred, target)
    assert (np.asarray(cm) == -1).all()
    miou = jax.jit(lambda p, t: fastiou.mean_iou(p, t, 3, ignore_index=255))(pred, target)
    assert np.isnan(miou)
    step = jax.jit(fastiou.mean_iou_update)
    state = step(fastiou.mean_iou_init(3, ignore_index=255), pred, target)
    assert np.isnan(jax.jit(fastiou.mean_iou_compute)(state))
    with pytest.raises(ValueError, match=r"mean_iou_compute: 1 pixel\(s\) had labels outside "
                                         r"\[0, num_classes\) in an update made under jax tracing"):
        fastiou.mean_iou_compute(state)
    # with out_of_range='ignore' the pixel is dropped, under jit as eagerly
    state = step(fastiou.mean_iou_init(3, ignore_index=255, out_of_range="ignore"), pred, target)
    np.testing.assert_array_equal(fastiou.mean_iou_confusion(state),
                                  [[1, 0, 0], [0, 1, 0], [0, 0, 0]])
    with pytest.raises(TypeError, match="mean_iou_update: state must be the pytree made by "
                                        "mean_iou_init"):
        fastiou.mean_iou_update(np.zeros((3, 3)), pred, target)


# --------------------------------------------------------------------------------------------
# Dask


def test_dask_arrays_locally():
    from dask import array as da
    import dask

    rng = np.random.default_rng(17)
    pred, target = label_maps(rng, (6, 64, 80), 8, ignore=255)
    dp = da.from_array(pred, chunks=(2, 32, 80))
    dt = da.from_array(target, chunks=(3, 64, 40))  # other chunks: rechunked to pred's
    expected = ref_confusion(pred, target, 8, 255)
    with dask.config.set(scheduler="threads"):
        got = fastiou.confusion_matrix(dp, dt, 8, ignore_index=255)
        assert isinstance(got, np.ndarray) and got.dtype == np.int64
        np.testing.assert_array_equal(got, expected)
        np.testing.assert_array_equal(fastiou.confusion_matrix(dp, target, 8, ignore_index=255),
                                      expected)
        assert fastiou.mean_iou(dp, dt, 8, ignore_index=255) == fastiou.mean_iou(
            pred, target, 8, ignore_index=255)
        m = fastiou.MeanIoU(8, ignore_index=255)
        m.update(dp[:3], dt[:3])
        m.update(pred[3:], target[3:])
        np.testing.assert_array_equal(m.confusion_matrix(), expected)
        bad = target.copy()
        bad[5, 7, 9] = 11
        with pytest.raises(ValueError, match=r"mean_iou: labels must be in .* target holds 11"):
            fastiou.mean_iou(dp, da.from_array(bad, chunks=(2, 32, 80)), 8, ignore_index=255)
        with pytest.raises(ValueError, match=r"confusion_matrix: pred and target must have the "
                                             r"same shape"):
            fastiou.confusion_matrix(dp, dt[:5], 8)
        with pytest.raises(TypeError, match=r"mean_iou: backend='numba' cannot be combined with "
                                            r"Dask arrays"):
            fastiou.mean_iou(dp, dt, 8, backend="numba")


@pytest.mark.skipif(GPU_REASON is not None, reason=f"needs a GPU: {GPU_REASON}")
def test_dask_cupy_chunks():
    """CuPy chunks take the same path: counted by the CUDA engine, the result a CuPy array."""
    import cupy
    import dask
    import dask.array as da

    rng = np.random.default_rng(19)
    pred, target = label_maps(rng, (4, 64, 96), 6, ignore=255)
    dp = da.from_array(pred, chunks=(1, 64, 96)).map_blocks(cupy.asarray)
    dt = da.from_array(target, chunks=(2, 32, 96)).map_blocks(cupy.asarray)
    with dask.config.set(scheduler="threads"):
        got = fastiou.confusion_matrix(dp, dt, 6, ignore_index=255)
        assert isinstance(got, cupy.ndarray)
        np.testing.assert_array_equal(got.get(), ref_confusion(pred, target, 6, 255))
        m = fastiou.MeanIoU(6, ignore_index=255)
        m.update(dp, dt)
        assert isinstance(m.confusion_matrix(), cupy.ndarray)


def test_dask_local_cluster():
    """Two worker processes on loopback, a dataset of 12 chunks: identical to one machine."""
    import dask.array  # noqa: F401
    import distributed
    import dask.array as da

    rng = np.random.default_rng(18)
    pred, target = label_maps(rng, (12, 96, 128), 19, ignore=255)
    single = fastiou.MeanIoU(19, ignore_index=255)
    single.update(pred, target)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=":0",
                                  worker_dashboard_address=None,
                                  silence_logs=logging.ERROR) as cluster, \
            distributed.Client(cluster) as client:
        dp = da.from_array(pred, chunks=(1, 96, 128))
        dt = da.from_array(target, chunks=(1, 96, 128))
        assert dp.npartitions == 12 and dp.nbytes > 12 * dp.blocks[0].nbytes - 1
        got = fastiou.confusion_matrix(dp, dt, 19, ignore_index=255)
        np.testing.assert_array_equal(got, single.confusion_matrix())
        m = fastiou.MeanIoU(19, ignore_index=255)
        m.update(dp, dt)
        assert m.compute().tobytes() == single.compute().tobytes()
        assert fastiou.mean_iou(dp, dt, 19, ignore_index=255).tobytes() == \
            single.compute().tobytes()
        # the chunks were counted in the worker processes
        executed = client.run(lambda dask_worker: dask_worker.state.executed_count)
        assert len(executed) == 2 and sum(executed.values()) >= 3 * 12


def test_dispatch_imports_no_dask():
    code = ("import sys, numpy as np, fastiou; "
            "fastiou.mean_iou(np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.uint8), 2); "
            "print(sorted(m for m in ('dask', 'jax', 'cupy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=ROOT)
    assert out.stdout.strip() == "[]"
