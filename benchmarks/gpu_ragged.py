"""GPU benchmarks of the segmented IoU kernels (``fastiou/cuda/ragged.cu``), for benchmarks.gpu.

COCO-like ragged images in one launch each: 5,000 images of 1 to 50 boxes against 100 predictions
(``fastiou.segmented_box_iou``), and 200 images of 1 to 10 masks of 480x640 against 10 predictions
(``fastiou.segmented_mask_iou``). Checked one image at a time against the float64 references of
the test suite on the first images.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .gpu import Case, _compare, _mask_refs, _reference, gpu_benchmark


def _offsets(counts: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)


@gpu_benchmark("segmented box_iou COCO-like", covers=("fastiou::box_ragged",))
def _boxes(cp: Any, quick: bool) -> Case:
    import fastiou

    images = 500 if quick else 5000
    rng = np.random.default_rng(0)
    gs, ps = rng.integers(1, 51, images), np.full(images, 100)
    o1, o2 = _offsets(gs), _offsets(ps)

    def boxes(n: int) -> np.ndarray:
        lo = rng.uniform(0, 600, (n, 2))
        return np.concatenate([lo, lo + rng.uniform(4, 200, (n, 2))], axis=1).astype(np.float32)

    b1, b2 = boxes(int(o1[-1])), boxes(int(o2[-1]))
    d1, d2 = cp.asarray(b1), cp.asarray(b2)
    pairs = int((gs * ps).sum())

    def check(result: Any) -> str | None:
        values, blocks = result
        ref = _reference()
        want = np.concatenate([ref.pairwise("iou", b1[o1[i]:o1[i + 1]], b2[o2[i]:o2[i + 1]]).ravel()
                               for i in range(3)])
        return _compare(cp.asnumpy(values[:int(blocks[3])]), want, rtol=2e-5, atol=2e-6)

    return Case(run=lambda: fastiou.segmented_box_iou(d1, d2, o1, o2), check=check,
                bytes_moved=(b1.nbytes + b2.nbytes) + pairs * 4, items=pairs,
                shape=f"{images} images", dtype="float32")


@gpu_benchmark("segmented mask_iou 480x640", covers=("fastiou::mask_ragged",))
def _masks(cp: Any, quick: bool) -> Case:
    import fastiou

    images, h, w = (20, 120, 160) if quick else (200, 480, 640)
    rng = np.random.default_rng(1)
    gs, ps = rng.integers(1, 11, images), np.full(images, 10)
    o1, o2 = _offsets(gs), _offsets(ps)
    refs = _mask_refs()
    m1 = np.zeros((int(o1[-1]), h, w), bool)
    m2 = np.zeros((int(o2[-1]), h, w), bool)
    for m in (m1, m2):
        for k in range(m.shape[0]):
            y, x = rng.integers(0, h // 2), rng.integers(0, w // 2)
            m[k, y:y + rng.integers(8, h // 2), x:x + rng.integers(8, w // 2)] = True
    p1, p2 = fastiou.pack_masks(cp.asarray(m1)), fastiou.pack_masks(cp.asarray(m2))
    pairs = int((gs * ps).sum())

    def check(result: Any) -> str | None:
        values, blocks = result
        want = np.concatenate([
            refs.pairwise_reference(m1[o1[i]:o1[i + 1]], m2[o2[i]:o2[i + 1]], "iou", False, 0.0)
            .ravel() for i in range(3)])
        return _compare(cp.asnumpy(values[:int(blocks[3])]), want, rtol=1e-6, atol=1e-7)

    words = (w + 63) // 64 * h
    return Case(run=lambda: fastiou.segmented_mask_iou(p1, p2, o1, o2), check=check,
                bytes_moved=pairs * 2 * words * 8 + pairs * 4, items=pairs,
                shape=f"{images} images of {h}x{w}, packed", dtype="bool")
