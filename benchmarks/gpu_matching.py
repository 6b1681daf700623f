"""GPU benchmark of COCO greedy matching (``fastiou/cuda/matching.cu``), loaded by benchmarks.gpu.

COCO-like ragged images (1 to 50 objects, 100 predictions, a few crowd regions), ten thresholds,
one launch for the whole dataset; checked against the Numba engine's segmented matching.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .gpu import Case, gpu_benchmark


@gpu_benchmark("match greedy COCO-like, 10 thresholds", covers=("fastiou::greedy_match",))
def _match_coco(cp: Any, quick: bool) -> Case:
    from fastiou.backends.cupy_cuda import matching as cuda_matching
    from fastiou.backends.numba_cpu import matching as numba_matching

    images = 500 if quick else 5000
    rng = np.random.default_rng(0)
    gs = rng.integers(1, 51, images)
    ps = np.full(images, 100)
    gt_off = np.concatenate([[0], np.cumsum(gs)])
    pred_off = np.concatenate([[0], np.cumsum(ps)])
    iou_off = np.concatenate([[0], np.cumsum(gs * ps)])[:-1]
    # sparse IoUs, as box IoUs are: most pairs do not overlap
    flat = np.where(rng.random(int((gs * ps).sum())) < 0.05,
                    rng.random(int((gs * ps).sum())), 0.0).astype(np.float32)
    scores = rng.random(int(pred_off[-1])).astype(np.float32)
    crowd = rng.random(int(gt_off[-1])) < 0.01
    thresholds = np.linspace(0.5, 0.95, 10)
    dev = {name: cp.asarray(x) for name, x in
           (("flat", flat), ("scores", scores), ("crowd", crowd))}

    # The test suite's stand-in for CuPy hands NumPy arrays: those go to the Numba engine.
    engine = numba_matching if isinstance(dev["flat"], np.ndarray) else cuda_matching

    def run() -> Any:
        return engine.greedy_segmented(dev["flat"], iou_off, gt_off, pred_off,
                                       scores=dev["scores"], thresholds=thresholds,
                                       crowd=dev["crowd"])

    def check(result: Any) -> str | None:
        want = numba_matching.greedy_segmented(flat, iou_off, gt_off, pred_off, scores=scores,
                                               thresholds=thresholds, crowd=crowd)
        for name, got, ref in zip(("pred_to_gt", "gt_to_pred", "pred_ignored", "matched_iou"),
                                  result, want):
            if not np.array_equal(cp.asnumpy(got), ref):
                return f"{name} differs from the Numba engine's"
        return None

    t = thresholds.shape[0]
    return Case(run=run, check=check,
                bytes_moved=flat.nbytes + scores.nbytes + t * (int(pred_off[-1]) * 9
                                                               + int(gt_off[-1]) * 12),
                items=int((gs * ps).sum()) * t, unit="pairs",
                shape=f"{images} images x {t} thresholds", dtype="float32")
