"""The JAX engine under jit, vmap and grad; retracing; x64 enabled and disabled.

With x64 disabled (JAX's default) there is no float64: float64 input becomes float32 on the way
in, is computed in float32 and comes back as float32; integer input is computed in float32 too.
With x64 enabled the engine follows the NumPy rules (float64 stays float64, integers are computed
in float64).
"""

from __future__ import annotations

import numpy as np
import pytest

import jax
import jax.numpy as jnp  # noqa: E402

import fastiou  # noqa: E402
import reference as ref  # noqa: E402
from box_cases import DEGENERATE_2D, LOSS_FUNCS, OPS_2D, PAIR_FUNCS, box_sets  # noqa: E402
from fastiou.backends.jax_xla import boxes as jax_boxes  # noqa: E402


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


@pytest.mark.parametrize("op", OPS_2D)
def test_jit_and_vmap_match_eager(op):
    fn = PAIR_FUNCS[op]
    rng = np.random.default_rng(30)
    b1, b2 = box_sets(rng, (3, 5), (3, 4), fmt="cxcywh", dtype="float32")
    a, b = jnp.asarray(b1), jnp.asarray(b2)
    eager = fn(a, b, fmt="cxcywh")
    jitted = jax.jit(lambda x, y: fn(x, y, fmt="cxcywh"))(a, b)
    mapped = jax.vmap(lambda x, y: fn(x, y, fmt="cxcywh"))(a, b)
    mapped_one = jax.vmap(lambda x: fn(x, b[0], fmt="cxcywh"))(a)
    for result in (jitted, mapped):
        assert isinstance(result, jax.Array) and result.shape == (3, 5, 4)
        np.testing.assert_allclose(np.asarray(result), np.asarray(eager), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(np.asarray(mapped_one),
                               np.asarray(fn(a, b[0], fmt="cxcywh")), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(np.asarray(eager), ref.pairwise(op, b1, b2, fmt="cxcywh"),
                               rtol=1e-5, atol=2e-6)
    # aligned under vmap, and a jitted loss
    aligned = jax.vmap(lambda x, y: fn(x, y, aligned=True))(a[:, :4], b)
    np.testing.assert_allclose(np.asarray(aligned), np.asarray(fn(a[:, :4], b, aligned=True)),
                               rtol=1e-6, atol=1e-7)
    area = jax.jit(fastiou.box_area)(a)
    assert area.shape == (3, 5)


@pytest.mark.parametrize("op", list(LOSS_FUNCS))
def test_jitted_losses(op):
    rng = np.random.default_rng(31)
    b1, b2 = box_sets(rng, (6,), (6,))
    loss = jax.jit(lambda x, y: LOSS_FUNCS[op](x, y, reduction="mean"))(
        jnp.asarray(b1, jnp.float32), jnp.asarray(b2, jnp.float32)
    )
    assert loss.shape == () and loss.dtype == jnp.float32
    np.testing.assert_allclose(float(loss), float(ref.loss(op, b1, b2, reduction="mean")),
                               rtol=1e-5)


# Degenerate configurations for gradients: (boxes1, boxes2), aligned.
DEGENERATE_PAIRS = {
    "zero-area": ([[0.0, 0.0, 0.0, 5.0], [1.0, 1.0, 1.0, 1.0]],
                  [[0.0, 0.0, 5.0, 5.0], [0.0, 0.0, 3.0, 3.0]]),
    "both-zero-area": ([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 4.0, 0.0]],
                       [[1.0, 1.0, 1.0, 1.0], [2.0, -1.0, 2.0, 3.0]]),
    "identical": ([[0.0, 0.0, 10.0, 10.0], [2.0, 3.0, 5.0, 9.0]],
                  [[0.0, 0.0, 10.0, 10.0], [2.0, 3.0, 5.0, 9.0]]),
    "disjoint": ([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 2.0, 4.0]],
                 [[5.0, 5.0, 6.0, 7.0], [10.0, 0.0, 11.0, 4.0]]),
    "inverted": ([[5.0, 5.0, 0.0, 0.0], [0.0, 0.0, 4.0, 4.0]],
                 [[0.0, 0.0, 5.0, 5.0], [4.0, 4.0, 0.0, 0.0]]),
}


@pytest.mark.parametrize("case", list(DEGENERATE_PAIRS))
def test_gradients_are_finite_at_degenerate_boxes(case):
    b1, b2 = (jnp.asarray(x, jnp.float32) for x in DEGENERATE_PAIRS[case])
    for op, fn in LOSS_FUNCS.items():
        for argnums in (0, 1):
            grad = jax.grad(lambda x, y: fn(x, y, reduction="sum"), argnums=argnums)(b1, b2)
            assert grad.shape == (2, 4)
            assert np.isfinite(np.asarray(grad)).all(), (op, argnums, grad)
    for op in OPS_2D:
        grad = jax.grad(lambda x: PAIR_FUNCS[op](x, b2).sum())(b1)
        assert np.isfinite(np.asarray(grad)).all(), (op, grad)
    grad = jax.grad(lambda x: fastiou.box_iou(x, x, zero_division=1.0).sum())(b1)
    assert np.isfinite(np.asarray(grad)).all()


def _reference_loss(op, b1, b2, alpha=None):
    """Sum over aligned pairs of 1 - op; for CIoU, ``alpha`` (one per pair) is held fixed."""
    total = 0.0
    for i in range(len(b1)):
        if op == "ciou":
            total += 1 - ref.ciou(b1[i], b2[i], alpha=alpha[i])
        else:
            total += 1 - ref.OPS[op](b1[i], b2[i])
    return total


@pytest.mark.parametrize("op", list(LOSS_FUNCS))
def test_gradients_match_finite_differences(op, x64):
    # Generic pairs: overlapping and disjoint, different aspect ratios, no ties between
    # coordinates (where min/max would not be differentiable).
    b1 = np.array([[0.3, 0.7, 10.1, 8.2], [1.1, 2.3, 3.7, 9.4], [0.2, 0.1, 2.9, 1.3]])
    b2 = np.array([[4.6, 2.9, 12.8, 15.3], [1.9, 1.2, 6.1, 7.7], [5.4, 3.3, 7.6, 9.1]])
    alpha = [ref.ciou_alpha(p, q) for p, q in zip(b1, b2)]
    grads = jax.grad(lambda x, y: LOSS_FUNCS[op](x, y, reduction="sum"), argnums=(0, 1))(
        jnp.asarray(b1), jnp.asarray(b2)
    )
    h = 1e-6
    for which, grad in enumerate(grads):
        assert grad.dtype == jnp.float64
        numeric = np.zeros_like(b1)
        for index in np.ndindex(b1.shape):
            args = [b1.copy(), b2.copy()]
            args[which][index] += h
            up = _reference_loss(op, *args, alpha=alpha)
            args[which][index] -= 2 * h
            down = _reference_loss(op, *args, alpha=alpha)
            numeric[index] = (up - down) / (2 * h)
        np.testing.assert_allclose(np.asarray(grad), numeric, rtol=1e-5, atol=1e-8)


def test_no_retracing_for_repeated_shapes_and_dtypes(monkeypatch):
    traces = []
    value = jax_boxes._value

    def counting(*args, **kwargs):
        traces.append(kwargs.get("op", args[2] if len(args) > 2 else None))
        return value(*args, **kwargs)

    monkeypatch.setattr(jax_boxes, "_value", counting)
    rng = np.random.default_rng(33)
    # A shape no other test uses, so the first call must trace.
    for k in range(4):
        b1, b2 = box_sets(rng, (13,), (17,), dtype="float32")
        fastiou.generalized_box_iou(jnp.asarray(b1), jnp.asarray(b2), zero_division=float(k))
    assert traces == ["giou"]
    for k in range(3):  # loss: the same after the first call
        b1, b2 = box_sets(rng, (11,), (11,), dtype="float32")
        fastiou.complete_box_iou_loss(jnp.asarray(b1), jnp.asarray(b2), reduction="mean")
    assert traces == ["giou", "ciou"]
    # A new dtype or shape traces again, once.
    for k in range(2):
        fastiou.generalized_box_iou(jnp.asarray(b1, jnp.float16), jnp.asarray(b2, jnp.float16))
    assert traces == ["giou", "ciou", "giou"]


def test_x64_enabled_follows_numpy_rules(x64):
    rng = np.random.default_rng(34)
    b1, b2 = box_sets(rng, (4,), (3,))
    for op in OPS_2D:
        result = PAIR_FUNCS[op](jnp.asarray(b1), jnp.asarray(b2))
        assert result.dtype == jnp.float64
        np.testing.assert_allclose(np.asarray(result), ref.pairwise(op, b1, b2), rtol=1e-12,
                                   atol=1e-12)
    big = jnp.asarray([[2**31 - 16, 0, 2**31 - 6, 10]], jnp.int64)
    shifted = big + jnp.asarray([5, 5, 5, 5], jnp.int64)
    iou = fastiou.box_iou(big, shifted)
    assert iou.dtype == jnp.float32 and float(iou[0, 0]) == np.float32(25 / 175)
    assert fastiou.box_iou(jnp.asarray(b1, jnp.float32), jnp.asarray(b2)).dtype == jnp.float64
    assert fastiou.box_iou(jnp.asarray(b1, jnp.float32), jnp.asarray(b2, jnp.float32)).dtype == \
        jnp.float32


def test_x64_disabled_computes_in_float32():
    assert not jax.config.jax_enable_x64
    rng = np.random.default_rng(35)
    b1, b2 = box_sets(rng, (4,), (3,))
    # NumPy float64 sent to the JAX engine, or a jax array made from it: float32 throughout.
    for result in (fastiou.box_iou(b1, b2, backend="jax"),
                   fastiou.box_iou(jnp.asarray(b1), jnp.asarray(b2)),
                   fastiou.box_area(b1, backend="jax")):
        assert result.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(fastiou.box_iou(b1, b2, backend="jax")),
                               ref.pairwise("iou", b1, b2), rtol=1e-5, atol=2e-6)
    # Integers are computed in float32: widths are lost near 2**31 (with x64 they are exact).
    big = np.array([[2**31 - 200, 0, 2**31 - 190, 10]], np.int64)
    assert fastiou.box_iou(big, big + 5, backend="jax").dtype == jnp.float32


def test_x64_switch_does_not_reuse_stale_compilations():
    b = np.array([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 15.0, 15.0]])
    first = fastiou.box_iou(jnp.asarray(b), jnp.asarray(b))
    with jax.enable_x64(True):
        wide = fastiou.box_iou(jnp.asarray(b), jnp.asarray(b))
    again = fastiou.box_iou(jnp.asarray(b), jnp.asarray(b))
    assert (first.dtype, wide.dtype, again.dtype) == (jnp.float32, jnp.float64, jnp.float32)


def test_bfloat16_in_float32_out():
    b = jnp.asarray(DEGENERATE_2D, jnp.bfloat16)
    for fn in PAIR_FUNCS.values():
        result = fn(b, b)
        assert result.dtype == jnp.float32 and np.isfinite(np.asarray(result)).all()
    np.testing.assert_allclose(np.asarray(fastiou.box_iou(b, b)),
                               ref.pairwise("iou", DEGENERATE_2D, DEGENERATE_2D), rtol=1e-6)


def test_result_stays_on_the_callers_device():
    devices = jax.devices()
    device = devices[-1]
    a = jax.device_put(jnp.asarray(DEGENERATE_2D, jnp.float32), device)
    for fn in (fastiou.box_iou, fastiou.complete_box_iou):
        assert fn(a, a).devices() == {device}
    assert fastiou.box_area(a).devices() == {device}
