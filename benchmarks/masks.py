"""Mask IoU benchmark: dense pairwise mask IoU and COCO RLE, every fastiou engine available here
against the peers, in one run.

    python -m benchmarks.masks            # full run, JSON in benchmarks/results/masks.json
    python -m benchmarks.masks --quick    # smaller sizes, for a smoke test

Realistic masks: each a union of one to three ellipses and rectangles covering about 11% of the
image; half of the second set are jittered copies (shifted a few pixels) of masks of the first.
Workloads: dense pairwise 50 vs 50 masks of 480x640 and 200 vs 200 of 256x256; COCO-style RLE IoU
of 100 detections against 20 ground truths at 480x640; RLE-encoding 120 masks of 480x640.
Baselines in the same run: the NumPy float32-matmul formulation (what supervision does),
supervision and pycocotools when installed. First-call time (compilation) is reported apart from
the median of the repeats.
"""

from __future__ import annotations

import sys
from typing import Any, Callable

import numpy as np

import fastiou
from fastiou import rle

from ._common import cli, engine_variants, machine, timeit

Impl = tuple[Callable[[], Any], Callable[[Any], Any]]


def make_masks(n: int, m: int, height: int, width: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two sets of bool masks (n, H, W) and (m, H, W); half of the second jittered copies."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    target = 0.11 * height * width

    def one() -> np.ndarray:
        mask = np.zeros((height, width), dtype=bool)
        shapes = rng.integers(1, 4)
        for _ in range(shapes):
            # Each shape gets about its share of the target area.
            share = target / shapes * rng.uniform(0.7, 1.3)
            aspect = rng.uniform(0.5, 2.0)
            if rng.random() < 0.5:  # ellipse: pi a b = share
                a = np.sqrt(share * aspect / np.pi)
                b = share / (np.pi * a)
                cx, cy = rng.uniform(a, width - a), rng.uniform(b, height - b)
                mask |= ((xx - cx) / a) ** 2 + ((yy - cy) / b) ** 2 <= 1
            else:  # rectangle: w h = share
                w = min(width - 1, np.sqrt(share * aspect))
                h = min(height - 1, share / w)
                x0, y0 = rng.uniform(0, width - w), rng.uniform(0, height - h)
                mask[int(y0):int(y0 + h), int(x0):int(x0 + w)] = True
        return mask

    first = np.stack([one() for _ in range(n)])
    second = np.stack([one() for _ in range(m)])
    half = min(n, m) // 2
    for k, i in enumerate(rng.choice(n, half, replace=False)):
        dy, dx = rng.integers(-6, 7, 2)
        shifted = np.zeros_like(first[i])
        src = first[i][max(0, -dy):height - max(0, dy), max(0, -dx):width - max(0, dx)]
        shifted[max(0, dy):max(0, dy) + src.shape[0], max(0, dx):max(0, dx) + src.shape[1]] = src
        second[k] = shifted
    return first, second


# --- the NumPy baseline: float32 matmul over flattened masks (supervision's formulation) -------


def numpy_mask_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    fa = a.reshape(a.shape[0], -1).astype(np.float32)
    fb = b.reshape(b.shape[0], -1).astype(np.float32)
    inter = fa @ fb.T
    area_a, area_b = fa.sum(axis=1), fb.sum(axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union != 0)


def reference_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    fa = a.reshape(a.shape[0], -1).astype(np.float64)
    fb = b.reshape(b.shape[0], -1).astype(np.float64)
    inter = fa @ fb.T
    union = fa.sum(1)[:, None] + fb.sum(1)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union != 0)


def coco_layout(masks: np.ndarray) -> np.ndarray:
    """What pycocotools' encode demands: (H, W, N) uint8 in Fortran order (a copy)."""
    return np.asfortranarray(masks.transpose(1, 2, 0).view(np.uint8))


def _peers() -> dict[str, Any]:
    peers: dict[str, Any] = {}
    try:
        from pycocotools import mask as mask_utils

        peers["pycocotools"] = mask_utils
    except ImportError:
        pass
    try:
        import supervision

        peers["supervision"] = supervision
    except Exception:  # not installed, or broken by its own dependencies
        pass
    return peers


def dense_implementations(a: np.ndarray, b: np.ndarray) -> dict[str, Impl]:
    host = lambda r: r  # noqa: E731
    impls: dict[str, Impl] = {"numpy float32 matmul": (lambda: numpy_mask_iou(a, b), host)}
    impls["fastiou numba"] = (lambda: fastiou.mask_iou(a, b), host)
    pa, pb = fastiou.pack_masks(a), fastiou.pack_masks(b)
    impls["fastiou numba, packed once"] = (lambda: fastiou.mask_iou(pa, pb), host)
    impls.update(engine_variants(fastiou.mask_iou, a, b))
    peers = _peers()
    if "supervision" in peers:
        sv = peers["supervision"]
        impls["supervision mask_iou_batch"] = (lambda: sv.mask_iou_batch(a, b), host)
    if "pycocotools" in peers:
        mu = peers["pycocotools"]
        crowd = [0] * b.shape[0]
        # Dense masks through pycocotools: its Fortran copy, encode, then RLE IoU (d = a, g = b).
        impls["pycocotools encode + iou"] = (
            lambda: mu.iou(mu.encode(coco_layout(a)), mu.encode(coco_layout(b)), crowd), host)
    return impls


def run(quick: bool = False, repeats: int = 7) -> dict[str, Any]:
    results: list[dict[str, Any]] = []
    peers = _peers()
    mu = peers.get("pycocotools")

    def record(name: str, impl: str, t: dict[str, float], err: float, base: str, **extra: Any) -> None:
        results.append({"workload": name, "impl": impl, "max_abs_err": err, "baseline": base,
                        **extra, **t})

    def finish_ratios(name: str, base: str) -> None:
        ref = next((r for r in results if r["workload"] == name and r["impl"] == base), None)
        for r in results:
            if r["workload"] == name and ref:
                r["speedup_vs_baseline"] = ref["median_s"] / r["median_s"]

    # Dense pairwise mask IoU.
    for n, h, w, qn, qh, qw in ((50, 480, 640, 20, 240, 320), (200, 256, 256, 60, 128, 128)):
        if quick:
            n, h, w = qn, qh, qw
        name = f"dense pairwise {n}x{n} masks of {h}x{w}"
        a, b = make_masks(n, n, h, w, seed=h)
        expected = reference_iou(a, b)
        base = "numpy float32 matmul"
        for impl, (call, finish) in dense_implementations(a, b).items():
            value = np.asarray(finish(call()), dtype=np.float64)
            err = float(np.abs(value - expected).max()) if value.size else 0.0
            record(name, impl, timeit(call, repeats=repeats, sync=finish), err, base,
                   n=n, m=n, fill=float(a.mean()))
        finish_ratios(name, base)

    # COCO-style RLE IoU: 100 detections against 20 ground truths.
    nd, ng, h, w = (40, 10, 240, 320) if quick else (100, 20, 480, 640)
    name = f"RLE IoU {nd} dt x {ng} gt at {h}x{w}"
    gt_masks, dt_masks = make_masks(ng, nd, h, w, seed=7)
    dt, gt = rle.encode(dt_masks), rle.encode(gt_masks)
    crowd = [i % 5 == 0 for i in range(ng)]  # some crowd regions, as in COCO
    expected = rle.iou(dt, gt, crowd)
    base = "pycocotools iou" if mu is not None else "fastiou rle.iou (numba)"
    impls: dict[str, Callable[[], Any]] = {"fastiou rle.iou (numba)": lambda: rle.iou(dt, gt, crowd)}
    if mu is not None:
        impls["pycocotools iou"] = lambda: mu.iou(dt, gt, crowd)
    for impl, call in impls.items():
        err = float(np.abs(np.asarray(call()) - expected).max())
        record(name, impl, timeit(call, repeats=repeats), err, base, n=nd, m=ng)
    finish_ratios(name, base)

    # RLE encoding from the natural (N, H, W) C layout.
    n, h, w = (30, 240, 320) if quick else (120, 480, 640)
    name = f"RLE encode {n} masks of {h}x{w}"
    masks, _ = make_masks(n, 1, h, w, seed=11)
    expected_counts = [r["counts"] for r in rle.encode(masks)]
    base = "pycocotools encode + Fortran copy" if mu is not None else "fastiou rle.encode (numba)"
    enc: dict[str, Callable[[], Any]] = {"fastiou rle.encode (numba)": lambda: rle.encode(masks)}
    if mu is not None:
        fortran = coco_layout(masks)
        enc["pycocotools encode + Fortran copy"] = lambda: mu.encode(coco_layout(masks))
        enc["pycocotools encode, Fortran input given"] = lambda: mu.encode(fortran)
    for impl, call in enc.items():
        same = [r["counts"] for r in call()] == expected_counts
        record(name, impl, timeit(call, repeats=repeats), 0.0 if same else 1.0, base, n=n)
    finish_ratios(name, base)

    return {"benchmark": "masks", "quick": quick, "machine": machine(),
            "engines": {k: v._asdict() for k, v in fastiou.available_backends().items()},
            "results": results}


def targets(payload: dict[str, Any]) -> list[str]:
    """The issue's targets for the Numba engine, checked on this run's figures."""
    by = {(r["workload"], r["impl"]): r for r in payload["results"]}
    quick = payload["quick"]
    checks = [
        (f"dense pairwise {'20x20 masks of 240x320' if quick else '50x50 masks of 480x640'}",
         "fastiou numba", "numpy float32 matmul", 15.0),
        (f"dense pairwise {'60x60 masks of 128x128' if quick else '200x200 masks of 256x256'}",
         "fastiou numba", "numpy float32 matmul", 15.0),
        (f"RLE IoU {'40 dt x 10 gt at 240x320' if quick else '100 dt x 20 gt at 480x640'}",
         "fastiou rle.iou (numba)", "pycocotools iou", 2.0),
        (f"RLE encode {'30 masks of 240x320' if quick else '120 masks of 480x640'}",
         "fastiou rle.encode (numba)", "pycocotools encode + Fortran copy", 1.5),
    ]
    lines = []
    for workload, ours, theirs, goal in checks:
        a, b = by.get((workload, ours)), by.get((workload, theirs))
        if a and b:
            ratio = b["median_s"] / a["median_s"]
            lines.append(f"{workload}: {ours} {ratio:.1f}x {theirs} (target >= {goal:g}x): "
                         f"{'met' if ratio >= goal else 'NOT met'}")
    return lines


def main(argv: list[str] | None = None) -> int:
    return cli("masks", __doc__, run, targets,
               [("speedup", "vs baseline"), ("baseline", "baseline"), ("err", "max |err|")],
               lambda r: {"speedup": f"{r.get('speedup_vs_baseline', float('nan')):.1f}x",
                          "err": f"{r['max_abs_err']:.1e}"}, argv)

if __name__ == "__main__":
    sys.exit(main())
