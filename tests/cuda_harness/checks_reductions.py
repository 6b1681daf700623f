"""Harness checks for the reduction kernels of ``fastiou/cuda/reductions.cu``.

``fastiou::iou_row_{topk,count,pairs}<O>`` run on tiles of IoUs made by the box kernels (O = float
for float32 boxes, double for float64 boxes; the mask kernels give float tiles too). Each check
goes through the public functions with a small ``memory_budget`` (several tiles, the last one
partial), rows longer than a block (a grid-stride loop over columns and, for pairs, several scan
chunks), exact ties, a NaN box and zero-area boxes, and once with the grid capped at 2 blocks so
that the grid-stride loop over rows is exercised. Expected values come from a plain float64
reference (values) and from the full matrix of the same engine (indices and selected pairs, which
must match exactly).
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

DTYPES = {"float": np.float32, "double": np.float64}


def _boxes(rng: np.random.Generator, n: int) -> np.ndarray:
    lo = np.round(rng.uniform(0, 40, (n, 2)))
    return np.concatenate([lo, lo + np.round(rng.uniform(0, 25, (n, 2)))], axis=1)


def _inputs(kernel: str) -> tuple[np.ndarray, np.ndarray, np.dtype]:
    dtype = np.dtype(DTYPES[template_args(kernel)[0]])
    rng = np.random.default_rng(zlib.crc32(kernel.encode()))
    a, b = _boxes(rng, 9), _boxes(rng, 300)  # 300 columns: longer than a block of 256
    b[10:20] = b[3]  # exact ties along each row
    a[2, 3] = np.nan
    a[4, 2:] = a[4, :2]  # zero area
    b[30, 2:] = b[30, :2]
    return a.astype(dtype), b.astype(dtype), dtype


@contextlib.contextmanager
def _grid_x(limit: int) -> Iterator[None]:
    old = cupy_cuda.reductions.MAX_GRID_X
    cupy_cuda.reductions.MAX_GRID_X = limit
    try:
        yield
    finally:
        cupy_cuda.reductions.MAX_GRID_X = old


def _first_k(full: np.ndarray, k: int) -> np.ndarray:
    """Columns of each row in IoU order: NaN first, then descending, ties by lowest index."""
    key = np.where(np.isnan(full), np.inf, full)
    return np.argsort(-key, axis=1, kind="stable")[:, :k]


@kernel_check("reductions.cu", r"fastiou::iou_row_topk<(float|double)>")
def check_topk(kernel: str, call: HarnessCall) -> None:
    a, b, dtype = _inputs(kernel)
    full = call(fastiou.box_iou, a, b)
    expected = reference.pairwise("iou", a.astype(np.float64), b.astype(np.float64))
    tol = dict(rtol=2e-6 if dtype == np.float32 else 1e-13, atol=1e-7)
    for budget, grid in ((300 * dtype.itemsize * 4, None), (None, 2)):
        with _grid_x(grid) if grid else contextlib.nullcontext():
            r = call(fastiou.box_iou_max, a, b, memory_budget=budget)
            vals, idx = call(fastiou.box_iou_topk, a, b, k=12, memory_budget=budget)
        assert r.row_max.dtype == dtype and r.row_argmax.dtype == np.int64, kernel
        np.testing.assert_array_equal(r.row_argmax, np.argmax(full, axis=1), err_msg=kernel)
        np.testing.assert_array_equal(r.col_argmax, np.argmax(full, axis=0), err_msg=kernel)
        np.testing.assert_allclose(r.row_max, np.max(expected, axis=1), err_msg=kernel, **tol)
        np.testing.assert_allclose(r.col_max, np.max(expected, axis=0), err_msg=kernel, **tol)
        np.testing.assert_array_equal(idx, _first_k(full, 12), err_msg=kernel)
        np.testing.assert_allclose(vals, np.take_along_axis(expected, idx, 1), err_msg=kernel,
                                   **tol)
    if dtype == np.float32:  # mask tiles are float32 too
        rng = np.random.default_rng(1)
        m1, m2 = rng.random((5, 6, 70)) < 0.4, rng.random((4, 6, 70)) < 0.4
        m1[0] = False
        m2[1] = m2[2]
        r = call(fastiou.mask_iou_max, m1, m2, memory_budget=64)
        mfull = call(fastiou.mask_iou, m1, m2)
        np.testing.assert_array_equal(r.row_argmax, np.argmax(mfull, axis=1), err_msg=kernel)
        np.testing.assert_array_equal(r.col_max, np.max(mfull, axis=0), err_msg=kernel)


@kernel_check("reductions.cu", r"fastiou::iou_row_(count|pairs)<(float|double)>")
def check_pairs(kernel: str, call: HarnessCall) -> None:
    a, b, dtype = _inputs(kernel)
    full = call(fastiou.box_iou, a, b)
    for budget, grid, t in ((300 * dtype.itemsize * 2, None, 0.05), (None, 2, 0.0)):
        with _grid_x(grid) if grid else contextlib.nullcontext():
            p = call(fastiou.box_iou_pairs, a, b, threshold=t, memory_budget=budget)
            cut = call(fastiou.box_iou_pairs, a, b, threshold=t, max_pairs=7, memory_budget=budget)
        rows, cols = np.nonzero(full >= dtype.type(t))
        # t = 0.05 selects some pairs of each kind; t = 0 all of them (rows of several chunks)
        assert 0 < rows.size < full.size if t else rows.size == full.size - 300, kernel
        np.testing.assert_array_equal(p.row, rows, err_msg=kernel)
        np.testing.assert_array_equal(p.col, cols, err_msg=kernel)
        np.testing.assert_array_equal(p.iou, full[rows, cols], err_msg=kernel)
        assert int(p.count) == rows.size and int(cut.count) == rows.size, kernel
        np.testing.assert_array_equal(cut.row, rows[:7], err_msg=kernel)
        np.testing.assert_array_equal(cut.col, cols[:7], err_msg=kernel)
