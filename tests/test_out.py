"""``out=`` of the box functions: memory overlapping an input, and the errors for a bad ``out``.

Runs on the Numba engine, on the CUDA engine's host code and kernels through the CPU harness, and
on CuPy where there is a GPU; the JAX engine refuses ``out=``.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastiou
import reference as ref
from box_cases import OPS_2D, OPS_3D, PAIR_FUNCS


@pytest.fixture(params=["numba", "cuda-harness", "cupy"])
def host_engine(request):
    from conftest import make_engine

    return make_engine(request.param)


def xp_of(engine):
    if engine.name == "cupy":
        import cupy

        return cupy
    return np


def boxes(rng, n, d=2):
    lo = rng.uniform(-20, 20, (n, d))
    return np.concatenate([lo, lo + rng.uniform(0, 15, (n, d))], axis=-1)


def check(engine, got, expected):
    np.testing.assert_allclose(engine.to_numpy(got), expected, rtol=1e-12, atol=1e-12)


# Where out lies in a buffer holding an input: (offset of out, in elements; how boxes1 is viewed).
ALIGNED_OVERLAPS = {
    "same_start": (0, lambda a: a),
    "shifted": (3, lambda a: a),
    "tail": (-1, lambda a: a),  # out ends where the buffer ends
    "reversed_input": (0, lambda a: a[::-1]),
}


@pytest.mark.parametrize("where", ALIGNED_OVERLAPS)
@pytest.mark.parametrize("operand", [0, 1])
@pytest.mark.parametrize("op", OPS_2D)
def test_aligned_out_overlapping_an_input(host_engine, op, operand, where):
    engine, xp = host_engine, xp_of(host_engine)
    rng = np.random.default_rng(1)
    n = 9
    pair = [boxes(rng, n), boxes(rng, n)]
    offset, view = ALIGNED_OVERLAPS[where]
    start = 4 * n - n if offset < 0 else offset
    with engine.context():
        buf = xp.asarray(pair[operand].reshape(-1).copy())
        x = [xp.asarray(pair[0]), xp.asarray(pair[1])]
        x[operand] = view(buf.reshape(n, 4))  # the input is a view of buf
        expected = ref.pairwise(op, engine.to_numpy(x[0]), engine.to_numpy(x[1]), aligned=True)
        out = buf[start:start + n]
        result = PAIR_FUNCS[op](*x, aligned=True, out=out, backend=engine.backend)
        assert result is out
        check(engine, out, expected)


@pytest.mark.parametrize("operand", [0, 1])
@pytest.mark.parametrize("op,d", [(op, 2) for op in OPS_2D] + [(op, 3) for op in OPS_3D])
def test_pairwise_out_is_an_input(host_engine, op, d, operand):
    """(N, 2d) x (M, 2d) -> (N, M) with N == M == 2d: out may be boxes1 or boxes2 itself."""
    engine, xp = host_engine, xp_of(host_engine)
    rng = np.random.default_rng(2)
    b1, b2 = boxes(rng, 2 * d, d), boxes(rng, 2 * d, d)
    expected = ref.pairwise(op, b1, b2)
    with engine.context():
        x = [xp.asarray(b1), xp.asarray(b2)]
        result = PAIR_FUNCS[op](*x, out=x[operand], backend=engine.backend)
        assert result is x[operand]
        check(engine, x[operand], expected)


def test_pairwise_batched_out_overlapping_boxes1(host_engine):
    """boxes1 (2, 5, 4) and out (2, 5, 3) share one buffer, out starting inside boxes1."""
    engine, xp = host_engine, xp_of(host_engine)
    rng = np.random.default_rng(3)
    b1 = boxes(rng, 10).reshape(2, 5, 4)
    b2 = boxes(rng, 3)
    expected = {op: ref.pairwise(op, b1, b2) for op in OPS_2D}
    for op in OPS_2D:
        with engine.context():
            buf = xp.zeros(40 + 30 - 7)
            buf[:40] = xp.asarray(b1.reshape(-1))
            out = buf[33:].reshape(2, 5, 3)
            result = PAIR_FUNCS[op](buf[:40].reshape(2, 5, 4), xp.asarray(b2), out=out,
                                    backend=engine.backend)
            assert result is out
            check(engine, out, expected[op])


def test_out_not_overlapping_leaves_inputs_alone(host_engine):
    engine, xp = host_engine, xp_of(host_engine)
    rng = np.random.default_rng(4)
    b1, b2 = boxes(rng, 6), boxes(rng, 6)
    with engine.context():
        x1, x2 = xp.asarray(b1), xp.asarray(b2)
        out = xp.full((6,), -1.0)
        fastiou.box_iou(x1, x2, aligned=True, out=out, backend=engine.backend)
        check(engine, out, ref.pairwise("iou", b1, b2, aligned=True))
        np.testing.assert_array_equal(engine.to_numpy(x1), b1)
        np.testing.assert_array_equal(engine.to_numpy(x2), b2)


# ------------------------------------------------------------------------------------------------
# Errors: one line naming the function, the argument, what came and what was expected


@pytest.mark.parametrize("op", OPS_2D)
def test_read_only_out(host_engine, op):
    if host_engine.name == "cupy":
        pytest.skip("CuPy arrays cannot be read-only")
    engine = host_engine
    b = np.array([[0.0, 0.0, 1.0, 1.0]], np.float32)
    out = np.zeros((1, 1), np.float32)
    out.flags.writeable = False
    with engine.context(), pytest.raises(ValueError) as info:
        PAIR_FUNCS[op](b, b, out=out, backend=engine.backend)
    name = PAIR_FUNCS[op].__name__
    assert str(info.value) == (f"{name}: out must be writeable, got a read-only array of "
                               "shape (1, 1) and dtype float32")
    assert not out.any()


@pytest.mark.parametrize(
    "value,got", [([[0.0]], "list"), (((0.0,),), "tuple"), (0.0, "float")],
    ids=["list", "tuple", "float"],
)
def test_out_that_is_not_an_array(host_engine, value, got):
    engine, xp = host_engine, xp_of(host_engine)
    b = xp.asarray(np.array([[0.0, 0.0, 1.0, 1.0]], np.float32))
    kind = "cupy.ndarray" if engine.name == "cupy" else "numpy.ndarray"
    with engine.context(), pytest.raises(TypeError) as info:
        fastiou.box_iou(b, b, out=value, backend=engine.backend)
    assert str(info.value) == (f"box_iou: out must be a {kind} of shape (1, 1) and dtype "
                               f"float32, got {got}")


def test_numpy_out_for_cupy_engine_is_refused():
    from conftest import make_engine

    engine = make_engine("cupy")  # skipped, with the reason, where there is no GPU
    import cupy

    b = cupy.asarray(np.array([[0.0, 0.0, 1.0, 1.0]], np.float32))
    with pytest.raises(TypeError, match=r"^box_iou: .*numpy"):
        fastiou.box_iou(b, b, out=np.zeros((1, 1), np.float32), backend=engine.backend)


def test_jax_still_refuses_out():
    import jax.numpy as jnp

    b = jnp.asarray([[0.0, 0.0, 1.0, 1.0]])
    with pytest.raises(TypeError, match=r"^box_iou: out= is not supported for jax arrays"):
        fastiou.box_iou(b, b, out=jnp.zeros((1, 1)))
    with pytest.raises(TypeError, match=r"^box_iou: out= is not supported for jax arrays"):
        fastiou.box_iou(b, b, out=jnp.zeros((1,)), aligned=True)
    with pytest.raises(TypeError,
                       match=r"^box_iou: boxes1 is a jax.* but out is a (builtins\.)?list"):
        fastiou.box_iou(b, b, out=[[0.0]])
