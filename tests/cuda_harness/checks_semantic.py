"""Harness checks for the confusion-count kernel of ``fastiou/cuda/semantic.cu``.

``fastiou::confusion_counts<P, T>`` is reached through ``fastiou.confusion_matrix`` with a
prediction of dtype P and a target of dtype T. Each check compares with ``np.bincount`` on blocky
label maps with an ignored label, out-of-range labels (dropped with ``out_of_range='ignore'``),
and: few classes (32 private histograms per block in shared memory), 40 classes (4 of them),
150 classes (too many for shared memory: 64-bit atomics on the global histogram), and, once, the
block cap lowered so that a few blocks must stride over every pixel.
"""

from __future__ import annotations

import contextlib
import zlib
from typing import Iterator

import numpy as np

import fastiou
from fastiou.backends import cupy_cuda

from . import HarnessCall, kernel_check, template_args

C_DTYPES = {name: dtype for dtype, name in cupy_cuda.semantic.LABEL_TYPES.items()}


def _maps(rng: np.random.Generator, c: int, shape: tuple[int, int, int], pdtype: np.dtype,
          tdtype: np.dtype) -> tuple[np.ndarray, np.ndarray, int]:
    """(pred, target, ignore_index): runs of one label pair, a relabelled fifth, ignored and
    out-of-range pixels, in values every dtype holds."""
    n, h, w = shape
    coarse = rng.integers(0, c, (n, -(-h // 4), -(-w // 4)))
    target = np.repeat(np.repeat(coarse, 4, axis=1), 4, axis=2)[:, :h, :w]
    pred = target.copy()
    wrong = rng.random(shape) < 0.2
    pred[wrong] = rng.integers(0, c, int(wrong.sum()))
    ignore = -1 if tdtype.kind == "i" and tdtype.itemsize == 1 else 255
    target[rng.random(shape) < 0.05] = ignore
    hi_p, hi_t = int(np.iinfo(pdtype).max), int(np.iinfo(tdtype).max)
    pred[rng.random(shape) < 0.01] = min(c + 3, hi_p) if c < hi_p else -1
    target[rng.random(shape) < 0.01] = min(c + 5, hi_t) if c < hi_t and c + 5 != ignore else -2
    return pred, target, ignore


def _expected(pred: np.ndarray, target: np.ndarray, c: int, ignore: int) -> np.ndarray:
    p, t = pred.astype(np.int64).ravel(), target.astype(np.int64).ravel()
    keep = (t != ignore) & (t >= 0) & (t < c) & (p >= 0) & (p < c)
    return np.bincount(t[keep] * c + p[keep], minlength=c * c).reshape(c, c)


@contextlib.contextmanager
def _max_blocks(blocks: int) -> Iterator[None]:
    old = cupy_cuda.semantic.MAX_BLOCKS
    cupy_cuda.semantic.MAX_BLOCKS = blocks
    try:
        yield
    finally:
        cupy_cuda.semantic.MAX_BLOCKS = old


@kernel_check("semantic.cu", r"fastiou::confusion_counts<[\w ]+, [\w ]+>")
def check_confusion_counts(kernel: str, call: HarnessCall) -> None:
    pdtype, tdtype = (np.dtype(C_DTYPES[name]) for name in template_args(kernel))
    rng = np.random.default_rng(zlib.crc32(kernel.encode()))
    cases = [(5, (2, 19, 23), None), (40, (1, 30, 37), None), (150, (1, 20, 30), None),
             (7, (3, 16, 40), 2)]
    if pdtype.itemsize == 1 or tdtype.itemsize == 1:
        cases[2] = (120, (1, 20, 30), None)  # 150 > int8 max: the widest that int8 labels hold
    for c, shape, blocks in cases:
        pred, target, ignore = _maps(rng, c, shape, pdtype, tdtype)
        with _max_blocks(blocks) if blocks else contextlib.nullcontext():
            got = call(fastiou.confusion_matrix, pred.astype(pdtype), target.astype(tdtype),
                       num_classes=c, ignore_index=ignore, out_of_range="ignore")
        expected = _expected(pred, target, c, ignore)
        what = f"{kernel} with {c} classes on {shape}" + (f", {blocks} blocks" if blocks else "")
        assert got.dtype == np.int64 and got.shape == (c, c), what
        np.testing.assert_array_equal(got, expected, err_msg=what)
