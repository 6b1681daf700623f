"""Box IoU benchmark: every fastiou engine available here against the peers, in one run.

    python -m benchmarks.boxes            # full run, JSON in benchmarks/results/boxes.json
    python -m benchmarks.boxes --quick    # smaller sizes, for a smoke test
    python -m benchmarks.boxes --check    # also exit 1 when a target of the issues is missed

Realistic float32 boxes: inside a 1000x1000 image, sides 5 to 200, half of the second set jittered
copies of the first. Baselines: NumPy broadcasting (float32), torchvision.ops and pycocotools when
installed. Every implementation runs in its own fresh process, on a new pair of box sets for every
call (made before the first call; device copies and tensors made outside the timing); the first
call of the process (compilation, cache loading) is reported apart from the median and p90 of the
repeats. Targets: issue 11 item 5 (pairwise 4000x4000 >= 50x torchvision), item 4 (jax.jit within
2x of Numba on every workload, on CPU), and issue 2's.
"""

from __future__ import annotations

import sys
from typing import Any, Callable

import numpy as np

import fastiou

from ._common import Target, cli, failed, find, fmt_time, measure, progress, ratio, run_worker


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


def _prepare(impl: str, op: str, aligned: bool, n: int,
             m: int) -> tuple[Callable[..., Any], ...] | str:
    """(convert, call, finish) of one implementation, or why it is not available here.

    ``convert(a, b)`` makes the arguments from fresh NumPy boxes, outside the timing (device
    copies, tensors, pycocotools' xywh float64); ``finish`` blocks until the result exists and
    returns it as NumPy."""
    fn = fastiou.box_iou if op == "iou" else fastiou.generalized_box_iou
    host = lambda r: r  # noqa: E731
    same = lambda a, b: (a, b)  # noqa: E731
    if impl == "numpy":
        return same, lambda a, b: numpy_iou(a, b, aligned, op == "giou"), host
    if impl == "fastiou numba":
        return same, lambda a, b: fn(a, b, aligned=aligned), host
    if impl == "fastiou numba out=":  # the caller's loop reuses one output array
        out = np.empty((n,) if aligned else (n, m), np.float32)
        return same, lambda a, b: fn(a, b, aligned=aligned, out=out), host
    info = fastiou.available_backends()
    if impl == "fastiou jax.jit":
        if not info["jax"].available:
            return info["jax"].detail
        import jax.numpy as jnp

        def on_jax(a: np.ndarray, b: np.ndarray) -> tuple[Any, ...]:
            return tuple(jnp.asarray(x).block_until_ready() for x in (a, b))

        return on_jax, lambda a, b: fn(a, b, aligned=aligned), (
            lambda r: np.asarray(r.block_until_ready()))
    if impl == "fastiou cupy":
        if not info["cupy"].available:
            return info["cupy"].detail
        import cupy

        def on_gpu(a: np.ndarray, b: np.ndarray) -> tuple[Any, ...]:
            pair = (cupy.asarray(a), cupy.asarray(b))
            cupy.cuda.get_current_stream().synchronize()
            return pair

        def cupy_finish(r: Any) -> Any:
            cupy.cuda.get_current_stream().synchronize()
            return r.get()

        return on_gpu, lambda a, b: fn(a, b, aligned=aligned), cupy_finish
    if impl == "torchvision.ops":
        try:
            import torch
            import torchvision.ops as ops
        except Exception as exc:  # not installed, or a torch/torchvision mismatch
            return f"{type(exc).__name__}: {exc}"
        torch.set_num_threads(2)
        tensors = lambda a, b: (torch.from_numpy(a), torch.from_numpy(b))  # noqa: E731
        if not aligned:
            return tensors, ops.box_iou if op == "iou" else ops.generalized_box_iou, (
                lambda r: r.numpy())
        if op == "giou":
            return tensors, lambda a, b: 1 - ops.generalized_box_iou_loss(a, b, eps=0.0), (
                lambda r: r.numpy())
        return "torchvision has no aligned box_iou"
    if impl == "pycocotools":
        if op != "iou" or aligned:
            return "pycocotools has only pairwise IoU"
        try:
            from pycocotools import mask as mask_utils
        except ImportError as exc:
            return str(exc)

        def xywh(a: np.ndarray, b: np.ndarray) -> tuple[Any, ...]:
            return tuple(np.concatenate([x[:, :2], x[:, 2:] - x[:, :2]], 1).astype(np.float64)
                         for x in (a, b)) + ([0] * b.shape[0],)

        return xywh, mask_utils.iou, host
    raise ValueError(f"benchmarks.boxes: no implementation {impl!r}")


def _applies(impl: str, op: str, aligned: bool) -> bool:
    """Whether ``impl`` has this operation, and its engine is here (known without a worker)."""
    if impl == "fastiou cupy":
        return fastiou.available_backends()["cupy"].available
    if impl == "torchvision.ops":
        return not aligned or op == "giou"
    if impl == "pycocotools":
        return op == "iou" and not aligned
    return True


IMPLS = ("numpy", "fastiou numba", "fastiou numba out=", "fastiou jax.jit", "fastiou cupy",
         "torchvision.ops", "pycocotools")
SLOW = ("numpy", "torchvision.ops", "pycocotools")  # fewer repeats: each call takes long

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


def worker(name: str, p: dict[str, Any]) -> dict[str, Any]:
    """One implementation on one workload, in this fresh process: a new pair of box sets for every
    call (seeds 1, 2, ...), all made before the first call."""
    if name != "pair":
        raise ValueError(f"benchmarks.boxes: no worker {name!r}")
    op, aligned, n, m = p["op"], p["aligned"], p["n"], p["m"]
    prepared = _prepare(p["impl"], op, aligned, n, m)
    if isinstance(prepared, str):
        return {"skipped": prepared}
    convert, call, finish = prepared
    sets = [make_boxes(n, m, seed=k) for k in range(1, p["repeats"] + 2)]
    a, b = sets[0]
    reference = numpy_iou(a.astype(np.float64), b.astype(np.float64), aligned, op == "giou")
    inputs = [convert(a, b) for a, b in sets]
    del sets

    def err(value: Any) -> float:
        value = np.asarray(value, dtype=np.float64)
        return float(np.nanmax(np.abs(value - reference))) if value.size else 0.0

    return measure(call, inputs, finish=finish, check=err)


def run(quick: bool = False) -> dict[str, Any]:
    results = []
    for op, aligned, n, m, qn, qm in WORKLOADS:
        if quick:
            n, m = qn, qm
        name = workload_name(op, aligned, n, m)
        for impl in IMPLS:
            if not _applies(impl, op, aligned):
                continue  # not worth a process
            progress(f"{name}: {impl} ...")
            repeats = 3 if quick else (3 if impl in SLOW else 7)
            try:
                row = run_worker("boxes", "pair", {"op": op, "aligned": aligned, "n": n, "m": m,
                                                   "impl": impl, "repeats": repeats})
            except RuntimeError as exc:
                results.append(failed(name, impl, exc))
                continue
            if "skipped" in row:
                continue
            results.append({"workload": name, "impl": impl, "n": n, "m": m, **row})
        base = find(results, name, "numpy")
        for r in results:
            if r["workload"] == name and base and base["median_s"] and r["median_s"]:
                r["speedup_vs_numpy"] = base["median_s"] / r["median_s"]
    return {"benchmark": "boxes", "quick": quick,
            "engines": {k: v._asdict() for k, v in fastiou.available_backends().items()},
            "results": results}


def targets(payload: dict[str, Any]) -> list[Target | str]:
    """The issues' targets: item 5 and item 4 of issue 11, and those of issue 2."""
    rows = payload["results"]
    big = workload_name("iou", False, *((1000, 1000) if payload["quick"] else (4000, 4000)))
    pairs = 100_000 if payload["quick"] else 1_000_000
    aligned = workload_name("iou", True, pairs, pairs)
    out: list[Target | str] = [
        ratio(rows, big, "torchvision.ops", "fastiou numba", 50, source="issue 11 item 5"),
    ]
    ours = find(rows, big, "fastiou numba")
    if ours and ours["median_s"]:
        out.append(f"{big}: fastiou numba {fmt_time(ours['median_s'])} (issue 11 item 5 aims at "
                   f"<= 2.5 ms: {'reached' if ours['median_s'] <= 2.5e-3 else 'not reached'})")
    for name in dict.fromkeys(r["workload"] for r in rows):
        out.append(ratio(rows, name, "fastiou jax.jit", "fastiou numba", 2, at_least=False,
                         source="issue 11 item 4", what=f"{name}: jax.jit / numba on CPU"))
    out += [
        ratio(rows, big, "numpy", "fastiou numba", 50, source="issue 2"),
        ratio(rows, big, "fastiou jax.jit", "fastiou numba", 1, source="issue 2",
              what=f"{big}: numba faster than jax.jit (jax.jit / numba)"),
        ratio(rows, aligned, "numpy", "fastiou numba", 15, source="issue 2"),
    ]
    return out


def cells(r: dict[str, Any]) -> dict[str, str]:
    speed = r.get("speedup_vs_numpy")
    return {"speedup": "-" if speed is None else f"{speed:.1f}x",
            "err": f"{r['max_abs_err']:.1e}" if "max_abs_err" in r else ""}


def main(argv: list[str] | None = None) -> int:
    return cli("boxes", __doc__, run, targets, [("speedup", "vs numpy"), ("err", "max |err|")],
               cells, argv, worker)


if __name__ == "__main__":
    sys.exit(main())
