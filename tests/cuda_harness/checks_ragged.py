"""Harness checks for the segmented kernels of ``fastiou/cuda/ragged.cu``, against the plain
float64 references of ``tests/reference.py`` (boxes) and ``checks_masks`` (masks), one segment at
a time.

Every case has empty segments (no rows on one side or both) between full ones, so that the binary
search over block starts must skip them, and a segment large enough to span several blocks of
threads; one run lowers the grid cap so that the grid-stride loop covers everything.
"""

from __future__ import annotations

import zlib

import numpy as np

import fastiou
import reference
from fastiou.backends import cupy_cuda

from . import HarnessCall, kernel_check, template_args
from .checks_boxes import TOLERANCE, _boxes, _edge_cases, _grid_limits
from .checks_masks import _masks, pairwise_reference

COUNTS1 = [3, 0, 2, 0, 9, 1, 0]
COUNTS2 = [4, 5, 0, 0, 40, 1, 2]


def _offsets(counts: list[int]) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)


def _per_segment(fn, a: np.ndarray, b: np.ndarray) -> np.ndarray:  # noqa: ANN001
    o1, o2 = _offsets(COUNTS1), _offsets(COUNTS2)
    return np.concatenate([fn(a[o1[s]:o1[s + 1]], b[o2[s]:o2[s + 1]]).reshape(-1)
                           for s in range(len(COUNTS1)) if COUNTS1[s] and COUNTS2[s]])


@kernel_check("ragged.cu", r"fastiou::box_ragged<\w+, \w+, [23]>")
def check_box_ragged(kernel: str, call: HarnessCall) -> None:
    t, o, dims = template_args(kernel)
    dims = int(dims)
    dtype = {("float", "float"): np.float32, ("double", "double"): np.float64,
             ("double", "float"): np.int32}[(t, o)]
    out = np.dtype(np.float64 if o == "double" else np.float32)
    integer = np.dtype(dtype).kind == "i"
    rng = np.random.default_rng(zlib.crc32(kernel.encode()))
    a = _edge_cases(_boxes(rng, (sum(COUNTS1),), dims, integer), dims, integer)
    b = _boxes(rng, (sum(COUNTS2),), dims, integer)
    expected = _per_segment(lambda x, y: reference.pairwise("iou", x, y, zero_division=0.25), a, b)
    for limits in (None, (1, cupy_cuda.MAX_GRID_Y)):
        args = (a.astype(dtype), b.astype(dtype), _offsets(COUNTS1), _offsets(COUNTS2))
        if limits is None:
            got, blocks = call(fastiou.segmented_box_iou, *args, zero_division=0.25)
        else:
            with _grid_limits(*limits):
                got, blocks = call(fastiou.segmented_box_iou, *args, zero_division=0.25)
        assert got.dtype == out and got.shape == expected.shape, (kernel, got.dtype, got.shape)
        np.testing.assert_allclose(got, expected, err_msg=kernel, **TOLERANCE[out])
        np.testing.assert_array_equal(
            blocks, _offsets([n * m for n, m in zip(COUNTS1, COUNTS2)]))


@kernel_check("ragged.cu", r"fastiou::mask_ragged<float>")
def check_mask_ragged(kernel: str, call: HarnessCall) -> None:
    rng = np.random.default_rng(zlib.crc32(kernel.encode()))
    a = _masks(rng, (sum(COUNTS1), 6, 130))  # three words per row, the last partial
    b = _masks(rng, (sum(COUNTS2), 6, 130), empty=2)
    expected = _per_segment(lambda x, y: pairwise_reference(x, y, "iou", False, 0.5), a, b)
    for limits in (None, (1, cupy_cuda.MAX_GRID_Y)):
        args = (a, b, _offsets(COUNTS1), _offsets(COUNTS2))
        if limits is None:
            got, _ = call(fastiou.segmented_mask_iou, *args, zero_division=0.5)
        else:
            with _grid_limits(*limits):
                got, _ = call(fastiou.segmented_mask_iou, *args, zero_division=0.5)
        assert got.dtype == np.float32 and got.shape == expected.shape, (kernel, got.shape)
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7, err_msg=kernel)
