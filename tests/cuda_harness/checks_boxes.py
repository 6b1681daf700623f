"""Harness checks for the box kernels of ``fastiou/cuda/boxes.cu``.

``fastiou::box_{pairwise,aligned}<T, O, OP, D>`` is reached through the public function of OP with
inputs whose dtype selects (T, O): float32 -> (float, float), float64 -> (double, double), integers
-> (double, float). Each check compares with the plain float64 reference in ``tests/reference.py``
on inputs that include the edge cases of SEMANTICS.md (NaN, zero-area, inverted and identical
boxes), a batch dimension, a non-default ``zero_division`` and, once, launch limits lowered so
that the grid-stride loops in both grid dimensions are exercised.
"""

from __future__ import annotations

import contextlib
import zlib
from typing import Iterator

import numpy as np

import fastiou
import reference
from fastiou.backends import cupy_cuda

from . import HarnessCall, kernel_check, template_args

FUNCTIONS = {
    0: ("iou", fastiou.box_iou),
    1: ("giou", fastiou.generalized_box_iou),
    2: ("diou", fastiou.distance_box_iou),
    3: ("ciou", fastiou.complete_box_iou),
    4: ("ioa", fastiou.box_ioa),
}
TOLERANCE = {
    np.dtype(np.float32): dict(rtol=2e-5, atol=2e-6),
    np.dtype(np.float64): dict(rtol=1e-12, atol=1e-13),
}


def _boxes(rng: np.random.Generator, shape: tuple[int, ...], dims: int, integer: bool) -> np.ndarray:
    lo = rng.uniform(0, 40, shape + (dims,))
    size = rng.uniform(0, 25, shape + (dims,))
    if integer:
        lo, size = np.round(lo), np.round(size)
    return np.concatenate([lo, lo + size], axis=-1)


def _edge_cases(boxes: np.ndarray, dims: int, integer: bool) -> np.ndarray:
    """Overwrite the first rows with a zero-area box, an inverted box, a copy of another row and,
    for floats, a NaN coordinate."""
    b = boxes.copy()
    flat = b.reshape(-1, 2 * dims)
    flat[0, dims:] = flat[0, :dims]                        # zero extent along every axis
    flat[1, :dims], flat[1, dims:] = flat[1, dims:], flat[1, :dims].copy()  # inverted
    flat[2] = flat[3]                                      # identical to the next box
    if not integer:
        flat[4, 1] = np.nan
    return b


def _inputs(kernel: str) -> tuple[str, object, int, np.dtype, np.dtype]:
    t, o, op, dims = template_args(kernel)
    name, fn = FUNCTIONS[int(op)]
    input_dtype = {("float", "float"): np.float32, ("double", "double"): np.float64,
                   ("double", "float"): np.int32}[(t, o)]
    out = np.dtype(np.float64 if o == "double" else np.float32)
    return name, fn, int(dims), np.dtype(input_dtype), out


@contextlib.contextmanager
def _grid_limits(x: int, y: int) -> Iterator[None]:
    """Lower the engine's grid caps so that a few blocks must stride over everything."""
    old = cupy_cuda.MAX_GRID_X, cupy_cuda.boxes.MAX_GRID_Y
    cupy_cuda.MAX_GRID_X, cupy_cuda.boxes.MAX_GRID_Y = x, y
    try:
        yield
    finally:
        cupy_cuda.MAX_GRID_X, cupy_cuda.boxes.MAX_GRID_Y = old


def _compare(got: np.ndarray, expected: np.ndarray, out: np.dtype, what: str) -> None:
    assert isinstance(got, np.ndarray), what
    assert got.dtype == out, f"{what}: dtype {got.dtype}, expected {out}"
    assert got.shape == expected.shape, f"{what}: shape {got.shape}, expected {expected.shape}"
    np.testing.assert_allclose(got, expected, err_msg=what, **TOLERANCE[out])


@kernel_check("boxes.cu", r"fastiou::box_pairwise<\w+, \w+, \d, [23]>")
def check_pairwise(kernel: str, call: HarnessCall) -> None:
    name, fn, dims, dtype, out = _inputs(kernel)
    integer = dtype.kind == "i"
    rng = np.random.default_rng(zlib.crc32(kernel.encode()))
    cases = [
        # 7 x 300: two blocks along x, one partly idle
        (_edge_cases(_boxes(rng, (7,), dims, integer), dims, integer),
         _boxes(rng, (300,), dims, integer), {}),
        # batch (2, 1) with (3,): rows = 6 * n, the second set indexed by batch
        (_boxes(rng, (2, 1, 5), dims, integer),
         _edge_cases(_boxes(rng, (3, 6), dims, integer), dims, integer),
         {"zero_division": 0.5}),
    ]
    for b1, b2, kwargs in cases:
        got = call(fn, b1.astype(dtype), b2.astype(dtype), **kwargs)
        expected = reference.pairwise(name, b1, b2, **kwargs)
        _compare(got, expected, out, f"{kernel} on {b1.shape} x {b2.shape}")
    # Lowered grid limits: the grid-stride loops over columns (x) and rows (y) must cover all.
    b1, b2 = _boxes(rng, (9,), dims, integer), _boxes(rng, (600,), dims, integer)
    with _grid_limits(1, 4):
        got = call(fn, b1.astype(dtype), b2.astype(dtype))
    _compare(got, reference.pairwise(name, b1, b2), out, f"{kernel} with grid limits (1, 4)")


@kernel_check("boxes.cu", r"fastiou::box_aligned<\w+, \w+, \d, [23]>")
def check_aligned(kernel: str, call: HarnessCall) -> None:
    name, fn, dims, dtype, out = _inputs(kernel)
    integer = dtype.kind == "i"
    rng = np.random.default_rng(zlib.crc32(kernel.encode()))
    # 600 pairs: three blocks, the last partly idle; and a batch (2, 1) x (3,) of 4 pairs
    b1 = _edge_cases(_boxes(rng, (600,), dims, integer), dims, integer)
    b2 = _boxes(rng, (600,), dims, integer)
    b2[:3] = b1[:3]
    got = call(fn, b1.astype(dtype), b2.astype(dtype), aligned=True)
    _compare(got, reference.pairwise(name, b1, b2, aligned=True), out, f"{kernel} aligned")
    c1, c2 = _boxes(rng, (2, 1, 4), dims, integer), _boxes(rng, (3, 4), dims, integer)
    got = call(fn, c1.astype(dtype), c2.astype(dtype), aligned=True, zero_division=1.0)
    expected = reference.pairwise(name, c1, c2, aligned=True, zero_division=1.0)
    _compare(got, expected, out, f"{kernel} aligned, batched")
    with _grid_limits(1, cupy_cuda.boxes.MAX_GRID_Y):
        got = call(fn, b1.astype(dtype), b2.astype(dtype), aligned=True)
    _compare(got, reference.pairwise(name, b1, b2, aligned=True), out, f"{kernel} aligned, one block")
