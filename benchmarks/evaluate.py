"""Dataset evaluation benchmark: ``fastiou.evaluate`` against a NumPy loop and pycocotools.

    python -m benchmarks.evaluate            # full run, JSON in benchmarks/results/evaluate.json
    python -m benchmarks.evaluate --quick    # smaller datasets, for a smoke test

Workloads (synthetic, seeded):

- **boxes**: 5,000 images with COCO-like sizes: 1-50 ground-truth boxes per image (uniform), 100
  predictions each (up to two jittered copies of each object, the rest random; uniform scores),
  float32 'xyxy'. Greedy matching at IoU 0.5 and the mean IoU over all objects.
- **masks**: 500 images of 480x640, 1-10 ground-truth masks each and 10 predictions (rectangles;
  predictions are jittered objects and random rectangles), bool. Smaller counts than the box
  dataset so that the dense masks (about 2.4 GB) fit in memory.
- **masks, many sizes** / **masks, one size**: 100 images (20 with ``--quick``) made as **masks**,
  each of its own size (height and width drawn without repeats from 300-640, as COCO's many
  image sizes), and the same objects at 480x640: the JAX engine's first call (compilation) on
  many sizes beside one size with the same number of masks (issue 11 item 3).

Implementations, each timed in a fresh process, every call on the dataset's images in a new order
and new memory (copied between the calls, outside the timing); the first call, with compilation,
reported apart, then the median and 90th percentile of the repeats (one repeat for the slow
baselines, whose calls take seconds):

- ``fastiou numba`` (NumPy arrays), ``fastiou jax.jit`` (jax arrays on jax's default device),
  ``fastiou cupy`` when a GPU is present;
- ``numpy loop``: per image, IoU by NumPy broadcasting (boxes) or a float32 matrix product of the
  flattened masks (masks), then the same greedy rule with a loop over the predictions;
- ``pycocotools evaluateImg`` (boxes): ``COCOeval.evaluate()`` with ``iouThrs=[0.5]``, one area
  range (all), ``maxDets=[100]``: its per-image IoU and matching (``computeIoU`` and
  ``evaluateImg``), from the loaded COCO objects.

Every implementation's number of matched objects is checked against fastiou's (``agrees``).
``--check``: exit 1 when a target (issue 8's; issue 11 item 4: jax.jit within 2x of Numba on
CPU; issue 11 item 3: the JAX first call on many sizes within 2x of one size) is missed.
"""

from __future__ import annotations

import contextlib
import io
import sys
from typing import Any, Callable

import numpy as np

from ._common import (Target, cli, failed, find, fmt_time, measure, progress, ratio,
                      run_worker)

THRESHOLD = 0.5


# --- data ----------------------------------------------------------------------------------------


def _random_boxes(rng: np.random.Generator, n: int, h: float, w: float) -> np.ndarray:
    size = np.exp(rng.uniform(np.log(6), np.log(0.6 * min(h, w)), (n, 2)))
    lo = rng.uniform(0, 1, (n, 2)) * (np.array([w, h]) - size)
    return np.concatenate([lo, lo + size], axis=1)


def _near(rng: np.random.Generator, boxes: np.ndarray, k: int, spread: float) -> np.ndarray:
    src = boxes[rng.integers(0, boxes.shape[0], k)]
    extent = np.tile(src[:, 2:] - src[:, :2], 2)
    return src + rng.normal(0, spread, src.shape) * extent


def box_dataset(images: int, seed: int = 0) -> tuple[list[np.ndarray], ...]:
    rng = np.random.default_rng(seed)
    gt, pred, scores = [], [], []
    for _ in range(images):
        g = _random_boxes(rng, int(rng.integers(1, 51)), 480, 640)
        k = min(100, int(rng.integers(g.shape[0], 2 * g.shape[0] + 1)))
        p = np.concatenate([_near(rng, g, k, 0.08), _random_boxes(rng, 100 - k, 480, 640)])
        gt.append(g.astype(np.float32))
        pred.append(p.astype(np.float32))
        scores.append(rng.random(100).astype(np.float32))
    return gt, pred, scores


def mask_dataset(images: int, seed: int = 1, h: int = 480, w: int = 640,
                 max_gt: int = 10, preds: int = 10,
                 sizes: np.ndarray | None = None) -> tuple[list[np.ndarray], ...]:
    """``sizes (images, 2)``: each image's (H, W) instead of ``h x w``; the objects (drawn for
    480 x 640) are scaled to it."""
    rng = np.random.default_rng(seed)
    gt, pred, scores = [], [], []

    def paint(boxes: np.ndarray) -> np.ndarray:
        scale = 1.0 if sizes is None else np.array([w / 640, h / 480] * 2)
        out = np.zeros((boxes.shape[0], h, w), dtype=bool)
        b = np.clip(np.round(boxes * scale), 0, [w, h, w, h]).astype(int)
        for m, (x0, y0, x1, y1) in zip(out, b):
            m[y0:y1, x0:x1] = True
        return out

    for k in range(images):
        if sizes is not None:
            h, w = (int(v) for v in sizes[k])
        g = _random_boxes(rng, int(rng.integers(1, max_gt + 1)), 480, 640)
        near = min(preds, g.shape[0] + int(rng.integers(0, 3)))
        p = np.concatenate([_near(rng, g, near, 0.08), _random_boxes(rng, preds - near, 480, 640)])
        gt.append(paint(g))
        pred.append(paint(p))
        scores.append(rng.random(preds).astype(np.float32))
    return gt, pred, scores


def distinct_sizes(images: int, seed: int = 2) -> np.ndarray:
    """``(images, 2)`` (H, W), each image's own: heights and widths drawn from 300-640 without
    repeats."""
    rng = np.random.default_rng(seed)
    return np.stack([rng.choice(np.arange(300, 641), images, replace=False) for _ in range(2)], 1)


DATASETS: dict[str, Callable[[int], tuple[list[np.ndarray], ...]]] = {
    "boxes": box_dataset,
    "masks": mask_dataset,
    "masks, many sizes": lambda images: mask_dataset(images, sizes=distinct_sizes(images)),
    "masks, one size": lambda images: mask_dataset(
        images, sizes=np.tile([480, 640], (images, 1))),
}


# --- baselines -----------------------------------------------------------------------------------


def _greedy(iou: np.ndarray, scores: np.ndarray, t: float) -> np.ndarray:
    """COCO's greedy rule on one (G, P) matrix: the IoU of each object with its match, or 0."""
    got = np.zeros(iou.shape[0])
    taken = np.zeros(iou.shape[0], dtype=bool)
    cut = min(t, 1 - 1e-10)
    for j in np.argsort(-scores, kind="stable"):
        col = np.where(taken, -1.0, iou[:, j])
        k = col.shape[0] - 1 - int(np.argmax(col[::-1]))  # the last of equal IoUs, as COCO
        if col[k] >= cut and col[k] > 0:
            taken[k] = True
            got[k] = col[k]
    return got


def numpy_boxes(gt: list, pred: list, scores: list) -> tuple[float, int]:
    total, count, matched = 0.0, 0, 0
    for g, p, s in zip(gt, pred, scores):
        count += g.shape[0]
        if not (g.shape[0] and p.shape[0]):
            continue
        lt = np.maximum(g[:, None, :2], p[None, :, :2])
        rb = np.minimum(g[:, None, 2:], p[None, :, 2:])
        wh = np.clip(rb - lt, 0, None)
        inter = wh[..., 0] * wh[..., 1]
        area_g = np.prod(g[:, 2:] - g[:, :2], axis=1)
        area_p = np.prod(p[:, 2:] - p[:, :2], axis=1)
        got = _greedy(inter / (area_g[:, None] + area_p[None, :] - inter), s, THRESHOLD)
        total += got.sum()
        matched += int(np.count_nonzero(got))
    return total / count, matched


def numpy_masks(gt: list, pred: list, scores: list) -> tuple[float, int]:
    total, count, matched = 0.0, 0, 0
    for g, p, s in zip(gt, pred, scores):
        count += g.shape[0]
        a = g.reshape(g.shape[0], -1).astype(np.float32)
        b = p.reshape(p.shape[0], -1).astype(np.float32)
        inter = a @ b.T
        union = a.sum(1)[:, None] + b.sum(1)[None, :] - inter
        got = _greedy(np.divide(inter, union, out=np.zeros_like(inter), where=union > 0), s,
                      THRESHOLD)
        total += got.sum()
        matched += int(np.count_nonzero(got))
    return total / count, matched


def pycocotools_setup(gt: list, pred: list, scores: list) -> Callable[[], Any]:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, anns, dets = [], [], []
    for i, (g, p, s) in enumerate(zip(gt, pred, scores)):
        images.append({"id": i, "height": 480, "width": 640})
        for b in g.astype(np.float64):
            w, h = b[2] - b[0], b[3] - b[1]
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": 1, "iscrowd": 0,
                         "bbox": [b[0], b[1], w, h], "area": w * h})
        for b, v in zip(p.astype(np.float64), s):
            dets.append({"image_id": i, "category_id": 1, "score": float(v),
                         "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]]})
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = {"images": images, "annotations": anns,
                        "categories": [{"id": 1, "name": "object"}]}
        coco.createIndex()
        results = coco.loadRes(dets)

    def run() -> int:
        e = COCOeval(coco, results, "bbox")
        e.params.iouThrs = np.array([THRESHOLD])
        e.params.areaRng = [[0, 1e10]]
        e.params.areaRngLbl = ["all"]
        e.params.maxDets = [100]
        with contextlib.redirect_stdout(io.StringIO()):
            e.evaluate()
        return sum(int(np.count_nonzero(r["dtMatches"][0])) for r in e.evalImgs if r)

    return run


# --- one workload in this process ----------------------------------------------------------------


def _fresh(data: tuple[list[np.ndarray], ...], k: int) -> tuple[list[np.ndarray], ...]:
    """The dataset's images in a new order (seed ``k``; ``k = 0`` keeps the order), every array a
    new copy: new memory, not read since it was made. The mean IoU and the matched count do not
    depend on the order of the images."""
    images = len(data[0])
    order = np.arange(images) if k == 0 else np.random.default_rng(k).permutation(images)
    return tuple([side[i].copy() for i in order] for side in data)


def _prepare(workload: str, impl: str) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """(convert, call): ``convert(gt, pred, scores)`` makes the arguments outside the timing;
    ``call(*arguments)`` returns (mean IoU, matched objects)."""
    import fastiou

    def report_of(r: Any) -> tuple[float, int]:
        return float(r.mean_iou), int(r.num_matched)

    def ours(gt: list, pred: list, scores: list) -> tuple[float, int]:
        return report_of(fastiou.evaluate(gt, pred, scores=scores))

    same = lambda *data: data  # noqa: E731
    if impl == "fastiou numba":
        return same, ours
    if impl == "fastiou jax.jit":
        import jax
        import jax.numpy as jnp

        def on_jax(gt: list, pred: list, scores: list) -> tuple[list, ...]:
            # jax copies to its device asynchronously: wait, so the copy is not timed
            data = jax.block_until_ready(([jnp.asarray(x) for x in gt],
                                          [jnp.asarray(x) for x in pred]))
            return (*data, scores)

        return on_jax, ours
    if impl == "fastiou cupy":
        import cupy

        return (lambda gt, pred, scores: ([cupy.asarray(x) for x in gt],
                                          [cupy.asarray(x) for x in pred], scores)), ours
    if impl == "numpy loop":
        return same, numpy_boxes if workload == "boxes" else numpy_masks
    if impl == "pycocotools evaluateImg":  # COCO and loadRes made outside the timing
        return (lambda *data: (pycocotools_setup(*data),)), lambda run: (None, run())
    raise ValueError(impl)


SLOW = ("numpy loop", "pycocotools evaluateImg")  # one timed call after the first: seconds each


def worker(name: str, p: dict[str, Any]) -> dict[str, Any]:
    """One implementation on one dataset, in this fresh process: each call on the dataset's images
    in a new order, copied into new memory between the calls, outside the timing (the mask
    dataset is 2.4 GB: one copy at a time)."""
    workload, impl, quick = p["workload"], p["impl"], p["quick"]
    data = DATASETS[workload](p["images"])
    if quick or impl in SLOW:
        repeats = 1
    elif impl == "fastiou numba":
        repeats = 7 if workload == "boxes" else 4
    else:  # jax.jit and cupy: several times slower on CPU, the first call compiles for seconds
        repeats = 3 if workload == "boxes" else 2
    convert, call = _prepare(workload, impl)
    first: dict[str, Any] = {}

    def keep(result: tuple[float | None, int]) -> float:
        first["mean_iou"], first["matched"] = result
        return 0.0

    row = measure(call, lambda k: convert(*_fresh(data, k)), repeats=repeats, check=keep)
    row.pop("max_abs_err")
    return {"workload": workload, "impl": impl, **first, **row}


IMPLS = {
    "boxes": ("fastiou numba", "fastiou jax.jit", "fastiou cupy", "numpy loop",
              "pycocotools evaluateImg"),
    "masks": ("fastiou numba", "fastiou jax.jit", "fastiou cupy", "numpy loop"),
    "masks, many sizes": ("fastiou numba", "fastiou jax.jit", "fastiou cupy"),
    "masks, one size": ("fastiou numba", "fastiou jax.jit"),
}
IMAGES = {"boxes": {False: 5000, True: 500}, "masks": {False: 500, True: 40},
          "masks, many sizes": {False: 100, True: 20}, "masks, one size": {False: 100, True: 20}}


def _available(impl: str) -> bool:
    import importlib.util

    if impl == "fastiou jax.jit":
        return importlib.util.find_spec("jax") is not None
    if impl == "fastiou cupy":
        import fastiou

        return fastiou.available_backends()["cupy"].available
    if impl == "pycocotools evaluateImg":
        return importlib.util.find_spec("pycocotools") is not None
    return True


def run(quick: bool = False) -> dict[str, Any]:
    results = []
    for workload, impls in IMPLS.items():
        for impl in impls:
            if not _available(impl):
                continue
            progress(f"{workload}: {impl} ...")
            try:
                results.append(run_worker("evaluate", "dataset", {
                    "workload": workload, "impl": impl, "quick": quick,
                    "images": IMAGES[workload][quick]}))
            except RuntimeError as exc:
                results.append(failed(workload, impl, exc))
    for workload in IMPLS:
        rows = [r for r in results if r["workload"] == workload]
        if not rows:
            continue
        ours = find(rows, workload, "fastiou numba")
        base = find(rows, workload, "numpy loop")
        for r in rows:
            r["agrees"] = ours is not None and r.get("matched") == ours.get("matched")
            r["speedup_vs_numpy"] = (base["median_s"] / r["median_s"]
                                     if base and base["median_s"] and r["median_s"] else None)
    return {"benchmark": "evaluate", "threshold": THRESHOLD, "quick": quick, "results": results}


def targets(payload: dict[str, Any]) -> list[Target | str]:
    rows = payload["results"]
    out: list[Target | str] = [
        ratio(rows, "boxes", "numpy loop", "fastiou numba", 20, source="issue 8"),
        ratio(rows, "boxes", "pycocotools evaluateImg", "fastiou numba", 50, source="issue 8"),
    ]
    for workload in ("boxes", "masks", "masks, many sizes"):
        out.append(ratio(rows, workload, "fastiou jax.jit", "fastiou numba", 2, at_least=False,
                         source="issue 11 item 4", what=f"{workload}: jax.jit / numba on CPU"))
    many, one = (find(rows, w, "fastiou jax.jit") for w in ("masks, many sizes", "masks, one size"))
    first = [r.get("first_call_s") if r else None for r in (many, one)]
    out.append(Target("masks: jax.jit first call, many sizes / one size (as many masks)",
                      first[0] / first[1] if all(first) else None, 2, False, "x",
                      "issue 11 item 3", f"{fmt_time(first[0])}, {fmt_time(first[1])}"
                      if all(first) else ""))
    if not all(r["agrees"] for r in rows if "error" not in r):
        out.append(Target("every implementation matches as many objects as fastiou numba", 0.0,
                          1, unit="ok"))
    return out


def cells(r: dict[str, Any]) -> dict[str, str]:
    speed = r.get("speedup_vs_numpy")
    return {"vs": "-" if speed is None else f"{speed:.1f}x",
            "mean": f"{r['mean_iou']:.4f}" if r.get("mean_iou") is not None else "-",
            "matched": str(r["matched"]), "agrees": "yes" if r["agrees"] else "NO"}


def main(argv: list[str] | None = None) -> int:
    return cli("evaluate", __doc__, run, targets,
               [("vs", "vs numpy loop"), ("mean", "mean IoU"), ("matched", "matched"),
                ("agrees", "agrees")], cells, argv, worker)


if __name__ == "__main__":
    sys.exit(main())
