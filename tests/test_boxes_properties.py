"""Invariants of the box family (hypothesis) and agreement with pycocotools."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastiou
from box_cases import OPS_2D, PAIR_FUNCS, box_sets, tolerance
import conftest

PROPERTY_SETTINGS = settings(max_examples=25, deadline=None)

# Fixed set sizes, so that the JAX engine compiles once per function and the examples stay cheap.
N, M = 5, 4


def boxes(count: int, *, min_size: int = -3) -> st.SearchStrategy[np.ndarray]:
    """``count`` xyxy boxes with integer-valued float64 coordinates in [-50, 90]: every sum and
    difference is exact, so translated copies compute the very same numbers. Negative sizes give
    inverted boxes, zero sizes points and segments."""
    corner = st.integers(-50, 50)
    size = st.integers(min_size, 40)
    box = st.tuples(corner, corner, size, size).map(
        lambda t: (t[0], t[1], t[0] + t[2], t[1] + t[3])
    )
    return st.lists(box, min_size=count, max_size=count).map(lambda b: np.array(b, np.float64))


engines = pytest.mark.parametrize("engine_name", ["numba", "jax", "cuda-harness"])


@functools.cache
def make_engine(name):
    return conftest.make_engine(name)


def close(engine):
    tol = tolerance(engine, "float64")
    return {"rtol": tol["rtol"], "atol": max(tol["atol"], 1e-12)}


@engines
@PROPERTY_SETTINGS
@given(a=boxes(N), b=boxes(M))
def test_ranges_and_order(engine_name, a, b):
    engine = make_engine(engine_name)
    tol = close(engine)["atol"] * 4
    iou = engine.call(fastiou.box_iou, a, b)
    ioa = engine.call(fastiou.box_ioa, a, b)
    giou = engine.call(fastiou.generalized_box_iou, a, b)
    diou = engine.call(fastiou.distance_box_iou, a, b)
    ciou = engine.call(fastiou.complete_box_iou, a, b)
    assert ((0 <= iou) & (iou <= 1)).all()
    assert ((0 <= ioa) & (ioa <= 1)).all()
    assert (giou <= iou + tol).all() and (diou <= iou + tol).all() and (ciou <= diou + tol).all()
    assert (giou >= -1 - tol).all()
    # The DIoU/CIoU floors hold for boxes that are not inverted: an inverted box's centre can lie
    # outside the enclosing box (built, as in torchvision, from the min corners and max corners),
    # and then the centre penalty exceeds 1.
    valid = ((a[:, 2:] >= a[:, :2]).all(axis=1)[:, None]
             & (b[:, 2:] >= b[:, :2]).all(axis=1)[None, :])
    assert (diou[valid] >= -1 - tol).all()
    # CIoU subtracts alpha * v <= 1/2 from DIoU, so its floor is -1.5, not -1
    # (test_boxes_edges.test_ciou_can_go_below_minus_one reaches below -1).
    assert (ciou[valid] >= -1.5 - tol).all()


@engines
@PROPERTY_SETTINGS
@given(a=boxes(N, min_size=1))
def test_iou_with_itself_is_one(engine_name, a):
    engine = make_engine(engine_name)
    # Exactly 1: x / x is 1 in IEEE arithmetic (no reciprocal approximation, no fused product).
    for op in ("iou", "giou", "diou", "ciou", "ioa"):
        assert engine.call(PAIR_FUNCS[op], a, a, aligned=True).tolist() == [1.0] * N, op
    assert np.diagonal(engine.call(fastiou.box_iou, a, a)).tolist() == [1.0] * N


@engines
@PROPERTY_SETTINGS
@given(a=boxes(N), b=boxes(M))
def test_symmetry(engine_name, a, b):
    engine = make_engine(engine_name)
    for op in ("iou", "giou", "diou", "ciou"):
        np.testing.assert_allclose(engine.call(PAIR_FUNCS[op], a, b),
                                   engine.call(PAIR_FUNCS[op], b, a).T, **close(engine))


@engines
@PROPERTY_SETTINGS
@given(a=boxes(N), b=boxes(M))
def test_pairwise_entry_equals_aligned_pair(engine_name, a, b):
    engine = make_engine(engine_name)
    rows = np.repeat(a, M, axis=0)  # a[i] for every j
    cols = np.tile(b, (N, 1))  # b[j] for every i
    for op in OPS_2D:
        pairwise = engine.call(PAIR_FUNCS[op], a, b)
        aligned = engine.call(PAIR_FUNCS[op], rows, cols, aligned=True).reshape(N, M)
        np.testing.assert_allclose(pairwise, aligned, **close(engine))


@engines
@PROPERTY_SETTINGS
@given(a=boxes(N), b=boxes(M), dx=st.integers(-1000, 1000), dy=st.integers(-1000, 1000))
def test_translation_invariance(engine_name, a, b, dx, dy):
    engine = make_engine(engine_name)
    shift = np.array([dx, dy, dx, dy], dtype=np.float64)
    for op in OPS_2D:
        np.testing.assert_allclose(engine.call(PAIR_FUNCS[op], a + shift, b + shift),
                                   engine.call(PAIR_FUNCS[op], a, b), **close(engine))


# ------------------------------------------------------------------------------------------------
# pycocotools: maskUtils.iou on xywh boxes; iscrowd=1 divides by the detection's area (= IoA).


def test_matches_pycocotools(engine):
    from pycocotools import mask as mask_utils
    rng = np.random.default_rng(40)
    for _ in range(3):
        dt, gt = box_sets(rng, (7,), (6,), fmt="xywh")
        dt[:, 2:] += 0.5  # pycocotools expects boxes of positive size
        gt[:, 2:] += 0.5
        tol = tolerance(engine, "float64")
        coco = mask_utils.iou(dt, gt, [0] * len(gt))
        np.testing.assert_allclose(engine.call(fastiou.box_iou, dt, gt, fmt="xywh"), coco, **tol)
        crowd = mask_utils.iou(dt, gt, [1] * len(gt))
        np.testing.assert_allclose(engine.call(fastiou.box_ioa, dt, gt, fmt="xywh"), crowd, **tol)
