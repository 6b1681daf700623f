"""GPU benchmarks of the fused reductions (``fastiou/cuda/reductions.cu``), registered with
``benchmarks.gpu`` (imported automatically by ``load_benchmarks``).

The detector-training call (250,000 anchors x 500 ground-truth boxes: max/argmax both ways), top-k
per ground-truth box, and the pairs above 0.5; each checked against NumPy reductions of the float64
reference matrix on a slice.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .gpu import Case, _compare, _reference, gpu_benchmark


def _inputs(quick: bool) -> tuple[np.ndarray, np.ndarray]:
    n, m = (25_000, 100) if quick else (250_000, 500)
    rng = np.random.default_rng(5)

    def boxes(k: int, lo: float, hi: float) -> np.ndarray:
        wh = rng.uniform(lo, hi, (k, 2))
        xy = rng.uniform(0, 1000 - wh)
        return np.concatenate([xy, xy + wh], axis=1).astype(np.float32)

    return boxes(n, 8, 256), boxes(m, 10, 400)


def _slice_reference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """float64 IoU of the first 64 rows of ``a`` with all of ``b``."""
    return _reference().pairwise("iou", a[:64].astype(np.float64), b.astype(np.float64))


@gpu_benchmark("box_iou_max 250k x 500 float32", covers=("fastiou::iou_row_topk",))
def _box_max(cp: Any, quick: bool) -> Case:
    import fastiou

    a, b = _inputs(quick)
    a_dev, b_dev = cp.asarray(a), cp.asarray(b)

    def check(result: Any) -> str | None:
        ref = _slice_reference(a, b)
        problem = _compare(cp.asnumpy(result.row_max[:64]), ref.max(axis=1), rtol=1e-5, atol=1e-6)
        if problem is None and not np.array_equal(cp.asnumpy(result.row_argmax[:64]),
                                                  ref.argmax(axis=1)):
            problem = "row_argmax differs from the reference"
        return problem

    n, m = a.shape[0], b.shape[0]
    return Case(run=lambda: fastiou.box_iou_max(a_dev, b_dev), check=check,
                bytes_moved=(n + m) * 16 + (n + m) * 12, items=n * m, shape=f"{n}x{m}")


@gpu_benchmark("box_iou_topk k=9 per gt float32", covers=("fastiou::iou_row_topk",))
def _box_topk(cp: Any, quick: bool) -> Case:
    import fastiou

    a, b = _inputs(quick)
    a_dev, b_dev = cp.asarray(a), cp.asarray(b)

    def check(result: Any) -> str | None:
        ref = _reference().pairwise("iou", b[:8].astype(np.float64), a.astype(np.float64))
        top = np.sort(ref, axis=1)[:, ::-1][:, :9]
        return _compare(cp.asnumpy(result.values[:8]), top, rtol=1e-5, atol=1e-6)

    n, m = a.shape[0], b.shape[0]
    return Case(run=lambda: fastiou.box_iou_topk(b_dev, a_dev, 9), check=check,
                bytes_moved=(n + m) * 16 + m * 9 * 12, items=n * m, shape=f"{m}x{n}")


@gpu_benchmark("box_iou_pairs >= 0.5 float32",
               covers=("fastiou::iou_row_count", "fastiou::iou_row_pairs"))
def _box_pairs(cp: Any, quick: bool) -> Case:
    import fastiou

    a, b = _inputs(quick)
    a_dev, b_dev = cp.asarray(a), cp.asarray(b)

    def check(result: Any) -> str | None:
        # the selection of the CPU engine (the same IEEE operations), values against float64
        rows, cols = np.nonzero(fastiou.box_iou(a[:64], b) >= np.float32(0.5))
        ref = _slice_reference(a, b)
        got_rows = cp.asnumpy(result.row)
        keep = got_rows < 64
        if not (np.array_equal(got_rows[keep], rows) and
                np.array_equal(cp.asnumpy(result.col)[keep], cols)):
            return "selected pairs differ from the Numba engine's on the first 64 rows"
        return _compare(cp.asnumpy(result.iou)[keep], ref[rows, cols], rtol=1e-5, atol=1e-6)

    n, m = a.shape[0], b.shape[0]
    return Case(run=lambda: fastiou.box_iou_pairs(a_dev, b_dev, 0.5), check=check,
                bytes_moved=(n + m) * 16, items=n * m, shape=f"{n}x{m}")
