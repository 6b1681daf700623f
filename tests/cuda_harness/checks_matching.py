"""Harness checks for the greedy matching kernel of ``fastiou/cuda/matching.cu``.

``fastiou::greedy_match<T>`` is reached through ``fastiou.match`` with float32 (T = float) or
float64 (T = double) IoUs, and through the engine's ``greedy_segmented`` for ragged images. Each
check compares with the plain pycocotools-style loop of ``tests/match_reference.py`` on matrices
with ties in score and IoU, crowd and ignored objects, NaN, padded rows and columns, several
thresholds, images without objects or predictions, more objects than threads in a block (so the
block-wide reduction strides), and, once, launch limits lowered so that the grid-stride loops over
images and thresholds run.
"""

from __future__ import annotations

import contextlib
import zlib
from typing import Iterator

import numpy as np

import fastiou
import match_reference
from fastiou.backends import cupy_cuda

from . import HarnessCall, kernel_check, template_args

DTYPES = {"float": np.float32, "double": np.float64}
THRESHOLDS = (0.3, 0.5, 0.75, 1.0)


def case(rng: np.random.Generator, g: int, p: int, dtype: np.dtype) -> dict:
    """A (G, P) matrix of quantized IoUs (ties), NaN, crowd and ignored objects, score ties."""
    iou = rng.choice([0.0, 0.25, 0.5, 0.6, 0.75, 0.9, 1.0], size=(g, p)).astype(dtype)
    if g and p:
        iou[rng.integers(g), rng.integers(p)] = np.nan
    return dict(iou=iou, scores=rng.choice([0.2, 0.5, 0.9], size=p),
                crowd=rng.random(g) < 0.2, gt_ignore=rng.random(g) < 0.2,
                gt_valid=rng.random(g) < 0.9, pred_valid=rng.random(p) < 0.9)


def expected(c: dict, t: float) -> tuple[list, ...]:
    return match_reference.greedy(c["iou"], c["scores"], t, c["crowd"], c["gt_ignore"],
                                  c["gt_valid"], c["pred_valid"])


@contextlib.contextmanager
def _grid_limits(x: int, y: int) -> Iterator[None]:
    old = cupy_cuda.matching.MAX_GRID_X, cupy_cuda.matching.MAX_GRID_Y
    cupy_cuda.matching.MAX_GRID_X, cupy_cuda.matching.MAX_GRID_Y = x, y
    try:
        yield
    finally:
        cupy_cuda.matching.MAX_GRID_X, cupy_cuda.matching.MAX_GRID_Y = old


def _assert_matches(got: fastiou.MatchResult, want: tuple[list, ...], what: str) -> None:
    p2g, g2p, pign, miou = want
    np.testing.assert_array_equal(got.pred_to_gt, p2g, err_msg=what)
    np.testing.assert_array_equal(got.gt_to_pred, g2p, err_msg=what)
    np.testing.assert_array_equal(got.pred_ignored, pign, err_msg=what)
    np.testing.assert_array_equal(got.matched_iou, np.asarray(miou, got.matched_iou.dtype),
                                  err_msg=what)


@kernel_check("matching.cu", r"fastiou::greedy_match<(float|double)>")
def check_greedy_match(kernel: str, call: HarnessCall) -> None:
    dtype = np.dtype(DTYPES[template_args(kernel)[0]])
    rng = np.random.default_rng(zlib.crc32(kernel.encode()))
    # A batch of 3 matrices, 70 objects (more than the 64 threads of a block), empty sides.
    for g, p, batch, limits in ((5, 7, 3, None), (70, 9, 1, None), (0, 4, 1, None),
                                (3, 0, 1, None), (6, 5, 4, (3, 2))):
        cases = [case(rng, g, p, dtype) for _ in range(batch)]
        stacked = {k: np.stack([c[k] for c in cases]) for k in cases[0]}
        with _grid_limits(*limits) if limits else contextlib.nullcontext():
            got = call(fastiou.match, stacked.pop("iou"), threshold=THRESHOLDS, **stacked)
        for k, t in enumerate(THRESHOLDS):
            for b, c in enumerate(cases):
                what = f"{kernel} on ({g}, {p}) item {b} at t = {t}"
                _assert_matches(got.select((k, b)), expected(c, t), what)
    # Ragged images through the segmented entry (crowd and ignore, no validity masks).
    sizes = [(3, 4), (0, 2), (2, 0), (8, 6), (1, 1)]
    cases = [case(rng, g, p, dtype) for g, p in sizes]
    for c in cases:
        c["gt_valid"][:] = True
        c["pred_valid"][:] = True
    gs, ps = np.array([g for g, _ in sizes]), np.array([p for _, p in sizes])
    gt_off, pred_off = np.concatenate([[0], np.cumsum(gs)]), np.concatenate([[0], np.cumsum(ps)])
    iou_off = np.concatenate([[0], np.cumsum(gs * ps)])[:-1]
    with call.runtime.session():
        out = cupy_cuda.matching.greedy_segmented(
            np.concatenate([c["iou"].ravel() for c in cases]), iou_off, gt_off, pred_off,
            scores=np.concatenate([c["scores"] for c in cases]), thresholds=THRESHOLDS,
            crowd=np.concatenate([c["crowd"] for c in cases]),
            gt_ignore=np.concatenate([c["gt_ignore"] for c in cases]),
        )
    for k, t in enumerate(THRESHOLDS):
        for i, c in enumerate(cases):
            p2g, g2p, pign, miou = expected(c, t)
            gsl, psl = slice(gt_off[i], gt_off[i + 1]), slice(pred_off[i], pred_off[i + 1])
            what = f"{kernel} segmented image {i} at t = {t}"
            np.testing.assert_array_equal(out[0][k, psl], p2g, err_msg=what)
            np.testing.assert_array_equal(out[1][k, gsl], g2p, err_msg=what)
            np.testing.assert_array_equal(out[2][k, psl], pign, err_msg=what)
            np.testing.assert_array_equal(out[3][k, gsl], np.asarray(miou, dtype), err_msg=what)
