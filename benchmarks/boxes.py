"""Box IoU benchmark: every fastiou engine available here against the peers, in one run.

    python -m benchmarks.boxes            # full run, JSON in benchmarks/results/boxes.json
    python -m benchmarks.boxes --quick    # smaller sizes, for a smoke test

Realistic float32 boxes: inside a 1000x1000 image, sides 5 to 200, half of the second set jittered
copies of the first. Baselines: NumPy broadcasting (float32), torchvision.ops and pycocotools when
installed. First-call time (compilation) is reported apart from the median of the repeats.
"""

from __future__ import annotations

import sys
from typing import Any, Callable

import numpy as np

import fastiou

from ._common import cli, engine_variants, machine, timeit


def make_boxes(n: int, m: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)

    def random_boxes(k: int) -> np.ndarray:
        wh = rng.uniform(5, 200, (k, 2))
        xy = rng.uniform(0, 1000 - wh)
        return np.concatenate([xy, xy + wh], axis=1)

    a = random_boxes(n)
    b = random_boxes(m)
    half = min(n, m) // 2
    pick = rng.choice(n, half, replace=False)
    jitter = rng.normal(0, 4, (half, 4))
    b[:half] = np.clip(a[pick] + jitter, 0, 1000)
    b[:half, 2:] = np.maximum(b[:half, 2:], b[:half, :2] + 1)
    return a.astype(np.float32), b.astype(np.float32)


# --- the NumPy baseline: plain broadcasting, float32 ------------------------------------------


def numpy_iou(a: np.ndarray, b: np.ndarray, aligned: bool = False, giou: bool = False) -> np.ndarray:
    if not aligned:
        a, b = a[:, None, :], b[None, :, :]
    area1 = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area2 = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    wh = np.clip(np.minimum(a[..., 2:], b[..., 2:]) - np.maximum(a[..., :2], b[..., :2]), 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = area1 + area2 - inter
    iou = inter / union
    if not giou:
        return iou
    hull = np.maximum(a[..., 2:], b[..., 2:]) - np.minimum(a[..., :2], b[..., :2])
    hull_area = hull[..., 0] * hull[..., 1]
    return iou - (hull_area - union) / hull_area


def _peers() -> dict[str, Any]:
    peers: dict[str, Any] = {}
    try:
        import torch
        import torchvision.ops

        torch.set_num_threads(2)
        peers["torchvision"] = (torch, torchvision.ops)
    except Exception:  # not installed, or a torch/torchvision mismatch
        pass
    try:
        from pycocotools import mask as mask_utils

        peers["pycocotools"] = mask_utils
    except ImportError:
        pass
    return peers


def implementations(op: str, aligned: bool, a: np.ndarray, b: np.ndarray) -> dict[str, tuple[Callable[[], Any], Callable[[Any], Any]]]:
    """name -> (call, finish) where finish blocks until the result exists and returns NumPy."""
    fn = fastiou.box_iou if op == "iou" else fastiou.generalized_box_iou
    impls: dict[str, tuple[Callable[[], Any], Callable[[Any], Any]]] = {}
    host = lambda r: r  # noqa: E731
    impls["numpy"] = (lambda: numpy_iou(a, b, aligned, op == "giou"), host)
    out = np.empty((a.shape[0],) if aligned else (a.shape[0], b.shape[0]), np.float32)
    impls["fastiou numba"] = (lambda: fn(a, b, aligned=aligned), host)
    impls["fastiou numba out="] = (lambda: fn(a, b, aligned=aligned, out=out), host)
    impls.update(engine_variants(lambda *xs: fn(*xs, aligned=aligned), a, b))
    peers = _peers()
    if "torchvision" in peers:
        torch, ops = peers["torchvision"]
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        if not aligned:
            tfn = ops.box_iou if op == "iou" else ops.generalized_box_iou
            impls["torchvision.ops"] = (lambda: tfn(ta, tb), lambda r: r.numpy())
        elif op == "giou":
            impls["torchvision.ops"] = (
                lambda: 1 - ops.generalized_box_iou_loss(ta, tb, eps=0.0),
                lambda r: r.numpy(),
            )
    if "pycocotools" in peers and op == "iou" and not aligned:
        mu = peers["pycocotools"]
        xa = np.concatenate([a[:, :2], a[:, 2:] - a[:, :2]], 1).astype(np.float64)
        xb = np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], 1).astype(np.float64)
        crowd = [0] * xb.shape[0]
        impls["pycocotools"] = (lambda: mu.iou(xa, xb, crowd), host)
    return impls


WORKLOADS = [
    # op, aligned, n, m (full run), n, m (quick)
    ("iou", False, 1000, 1000, 300, 300),
    ("iou", False, 4000, 4000, 1000, 1000),
    ("giou", False, 1000, 1000, 300, 300),
    ("iou", True, 1_000_000, 1_000_000, 100_000, 100_000),
    ("giou", True, 1_000_000, 1_000_000, 100_000, 100_000),
]


def workload_name(op: str, aligned: bool, n: int, m: int) -> str:
    label = "IoU" if op == "iou" else "GIoU"
    if aligned:
        return f"aligned {label} {n:,} pairs"
    return f"pairwise {label} {n}x{m}"


def run(quick: bool = False, repeats: int = 7) -> dict[str, Any]:
    results = []
    for op, aligned, n, m, qn, qm in WORKLOADS:
        if quick:
            n, m = qn, qm
        name = workload_name(op, aligned, n, m)
        a, b = make_boxes(n, m)
        reference = numpy_iou(a.astype(np.float64), b.astype(np.float64), aligned, op == "giou")
        base = None
        for impl, (call, finish) in implementations(op, aligned, a, b).items():
            value = np.asarray(finish(call()), dtype=np.float64)
            err = float(np.nanmax(np.abs(value - reference))) if value.size else 0.0
            t = timeit(call, repeats=repeats, sync=finish)
            if impl == "numpy":
                base = t["median_s"]
            results.append({"workload": name, "impl": impl, "n": n, "m": m,
                            "max_abs_err": err, **t})
        for r in results:
            if r["workload"] == name and base:
                r["speedup_vs_numpy"] = base / r["median_s"]
    return {"benchmark": "boxes", "quick": quick, "machine": machine(),
            "engines": {k: v._asdict() for k, v in fastiou.available_backends().items()},
            "results": results}


def targets(payload: dict[str, Any]) -> list[str]:
    """The issue's targets for the Numba engine, checked on this run's figures."""
    by = {(r["workload"], r["impl"]): r for r in payload["results"]}
    lines = []
    w = workload_name("iou", False, *((1000, 1000) if payload["quick"] else (4000, 4000)))
    nb, npy, jx = by.get((w, "fastiou numba")), by.get((w, "numpy")), by.get((w, "fastiou jax.jit"))
    if nb and npy:
        ratio = npy["median_s"] / nb["median_s"]
        lines.append(f"{w}: numba {ratio:.1f}x the NumPy baseline (target >= 50x): "
                     f"{'met' if ratio >= 50 else 'NOT met'}")
    if nb and jx:
        ratio = jx["median_s"] / nb["median_s"]
        lines.append(f"{w}: numba {ratio:.1f}x faster than jax.jit on CPU (target > 1x): "
                     f"{'met' if ratio > 1 else 'NOT met'}")
    w = workload_name("iou", True, *((100_000,) * 2 if payload["quick"] else (1_000_000,) * 2))
    nb, npy = by.get((w, "fastiou numba")), by.get((w, "numpy"))
    if nb and npy:
        ratio = npy["median_s"] / nb["median_s"]
        lines.append(f"{w}: numba {ratio:.1f}x the NumPy baseline (target >= 15x): "
                     f"{'met' if ratio >= 15 else 'NOT met'}")
    return lines


def main(argv: list[str] | None = None) -> int:
    return cli("boxes", __doc__, run, targets,
               [("speedup", "vs numpy"), ("err", "max |err|")],
               lambda r: {"speedup": f"{r.get('speedup_vs_numpy', float('nan')):.1f}x",
                          "err": f"{r['max_abs_err']:.1e}"}, argv)

if __name__ == "__main__":
    sys.exit(main())
