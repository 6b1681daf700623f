"""Fused reductions benchmark: max IoU and argmax per anchor and per ground-truth box.

    python -m benchmarks.reductions            # 250,000 anchors x 500 boxes, JSON in results/
    python -m benchmarks.reductions --quick    # 25,000 x 100, for a smoke test

The detector-training call: float32 anchors against ground-truth boxes, the highest IoU of each
anchor (and which box) and of each box (and which anchor). Routes:

- ``fastiou box_iou_max`` (Numba; and jax.jit when installed): no N x M matrix;
- ``torchvision box_iou + max``: the full float32 matrix, then ``max`` along both axes (torch
  with 2 threads), when torchvision is installed;
- ``numpy full matrix + max``: broadcasting, float32, then ``max`` and ``argmax`` along both axes;
- ``fastiou box_iou + max``: fastiou's full matrix, then NumPy's ``max``/``argmax``.

Each route runs in a fresh process, on fresh inputs for every timed call (made before the first
call; tensors and jax arrays made outside the timing); the first call (compilation, caches) is
reported apart, then the median and the 90th percentile of the repeats (2 for the full-matrix
NumPy and torchvision routes, seconds a call; 7 for the others). Peak memory, over one more call
on new inputs after the timed ones: ``tracemalloc`` (NumPy allocations, which is what
the NumPy and Numba routes allocate) and the growth of the process's peak resident set (every
allocator, torch's and XLA's included). Every route's argmax on the first input is compared with
the NumPy route's. ``--check``: exit 1 when a target (issue 8's, and issue 11 item 4: jax.jit
within 2x of Numba on CPU) is missed.
"""

from __future__ import annotations

import hashlib
import resource
import sys
import threading
import tracemalloc
from typing import Any, Callable

import numpy as np

from ._common import Target, cli, failed, find, measure, progress, ratio, run_worker

NUMPY, TORCH, FULL = "numpy full matrix + max", "torchvision box_iou + max", "fastiou box_iou + max"
OURS, JAX = "fastiou box_iou_max (numba)", "fastiou box_iou_max (jax.jit)"
ROUTES = (NUMPY, TORCH, FULL, OURS, JAX)
SIZES = {False: (250_000, 500), True: (25_000, 100)}


def make_inputs(n: int, m: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Anchors on a grid-like spread over a 1000 x 1000 image, and ground-truth boxes."""
    rng = np.random.default_rng(seed)

    def boxes(k: int, lo: float, hi: float) -> np.ndarray:
        wh = rng.uniform(lo, hi, (k, 2))
        xy = rng.uniform(0, 1000 - wh)
        return np.concatenate([xy, xy + wh], axis=1).astype(np.float32)

    return boxes(n, 8, 256), boxes(m, 10, 400)


def _numpy_full(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    area1 = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area2 = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    wh = np.clip(np.minimum(a[:, None, 2:], b[None, :, 2:]) - lo, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (area1[:, None] + area2[None, :] - inter)


def _route(name: str) -> tuple[Callable[..., Any], ...]:
    """(convert, call, finish) of one route: ``convert(a, b)`` makes the arguments from NumPy
    inputs outside the timing; ``finish`` -> (row_max, row_argmax, col_max, col_argmax) as NumPy."""
    same = lambda a, b: (a, b)  # noqa: E731
    host = lambda r: r  # noqa: E731
    if name == NUMPY:
        def numpy_route(a: np.ndarray, b: np.ndarray) -> tuple:
            iou = _numpy_full(a, b)
            return iou.max(1), iou.argmax(1), iou.max(0), iou.argmax(0)
        return same, numpy_route, host
    if name == FULL:
        import fastiou

        def full_route(a: np.ndarray, b: np.ndarray) -> tuple:
            iou = fastiou.box_iou(a, b)
            return iou.max(1), iou.argmax(1), iou.max(0), iou.argmax(0)
        return same, full_route, host
    if name == OURS:
        import fastiou

        return same, lambda a, b: tuple(fastiou.box_iou_max(a, b)), host
    if name == JAX:
        import jax
        import jax.numpy as jnp

        import fastiou

        fn = jax.jit(lambda a, b: tuple(fastiou.box_iou_max(a, b)))
        return (lambda a, b: (jnp.asarray(a).block_until_ready(),
                              jnp.asarray(b).block_until_ready()),
                fn, lambda r: tuple(np.asarray(x.block_until_ready()) for x in r))
    if name == TORCH:
        import torch
        import torchvision.ops

        torch.set_num_threads(2)

        def torch_route(a: Any, b: Any) -> tuple:
            iou = torchvision.ops.box_iou(a, b)
            rows, cols = iou.max(dim=1), iou.max(dim=0)
            return rows.values, rows.indices, cols.values, cols.indices
        return (lambda a, b: (torch.from_numpy(a), torch.from_numpy(b)), torch_route,
                lambda r: tuple(x.numpy() for x in r))
    raise ValueError(name)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


class _RssPeak:
    """The highest resident set seen by a thread polling every millisecond, above a baseline."""

    def __init__(self) -> None:
        self.baseline = self.peak = _rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.wait(0.001):
            self.peak = max(self.peak, _rss_bytes())

    def growth(self) -> int:
        self._stop.set()
        self._thread.join()
        return max(0, max(self.peak, _rss_bytes()) - self.baseline)


def worker(name: str, p: dict[str, Any]) -> dict[str, Any]:
    """Time one route in this (fresh) process: a new input pair for every call (seeds 0, 1, ...),
    made before the first; the first call's argmax is kept (a digest, compared across routes);
    then the peak memory of one more call on new inputs."""
    try:
        convert, call, finish = _route(p["route"])
    except ImportError as exc:
        return {"skipped": f"{type(exc).__name__}: {exc}"}
    n, m, repeats = p["n"], p["m"], p["repeats"]
    inputs = [convert(*make_inputs(n, m, seed)) for seed in range(repeats + 1)]
    digest = []

    def keep(result: tuple) -> float:
        digest.append(hashlib.sha1(b"".join(np.ascontiguousarray(x, np.int64).tobytes()
                                            for x in (result[1], result[3]))).hexdigest())
        return 0.0

    row = measure(call, inputs, finish=finish, check=keep)
    row.pop("max_abs_err")
    del inputs
    more = convert(*make_inputs(n, m, repeats + 1))
    tracemalloc.start()
    traced_base = tracemalloc.get_traced_memory()[0]
    rss = _RssPeak()
    finish(call(*more))
    rss_growth = rss.growth()
    traced_peak = tracemalloc.get_traced_memory()[1] - traced_base
    tracemalloc.stop()
    return {**row, "traced_peak_bytes": traced_peak, "rss_growth_bytes": rss_growth,
            "argmax_digest": digest[0]}


def run(quick: bool = False) -> dict[str, Any]:
    n, m = SIZES[quick]
    results = []
    workload = f"max/argmax both axes {n:,} x {m}"
    for name in ROUTES:
        progress(f"{workload}: {name} ...")
        try:
            # the full-matrix routes take seconds a call: fewer repeats
            repeats = 2 if quick or name in (NUMPY, TORCH) else 7
            row = run_worker("reductions", "route", {"route": name, "n": n, "m": m,
                                                     "repeats": repeats})
        except RuntimeError as exc:
            results.append(failed(workload, name, exc))
            continue
        if "skipped" in row:
            progress(f"skipped {name}: {row['skipped']}")
            continue
        results.append({"workload": workload, "impl": name, "n": n, "m": m, **row})
    base = find(results, workload, NUMPY)
    for r in results:
        r["argmax_agrees_with_numpy"] = (base is not None and "argmax_digest" in r
                                         and r["argmax_digest"] == base.get("argmax_digest"))
    return {"benchmark": "reductions", "quick": quick, "results": results}


def targets(payload: dict[str, Any]) -> list[Target | str]:
    rows = payload["results"]
    if not rows:
        return [Target("box_iou_max against torchvision", None, 5, source="issue 8")]
    workload = rows[0]["workload"]
    by = {r["impl"]: r for r in rows if "error" not in r}
    ours, torch = by.get(OURS), by.get(TORCH)
    out: list[Target | str] = [
        ratio(rows, workload, TORCH, OURS, 5, source="issue 8"),
        ratio(rows, workload, JAX, OURS, 2, at_least=False, source="issue 11 item 4",
              what=f"{workload}: jax.jit / numba on CPU"),
    ]
    for other in (by.get(NUMPY), by.get(FULL), torch):
        if not (ours and other):
            continue
        # torch allocates outside tracemalloc's view: its resident-set growth is compared with
        # the larger of our two measures (our resident set hardly grows: pages are reused)
        if other is torch:
            how = "torch resident set / our larger measure"
            value = other["rss_growth_bytes"] / max(ours["rss_growth_bytes"],
                                                    ours["traced_peak_bytes"], 1)
        else:
            how = "tracemalloc"
            value = other["traced_peak_bytes"] / max(ours["traced_peak_bytes"], 1)
        out.append(Target(f"peak memory, {other['impl']} / box_iou_max ({how})", value, 20,
                          source="issue 8"))
    if not all(r.get("argmax_agrees_with_numpy") for r in by.values()):
        out.append(Target("every route's argmax equals NumPy's", 0.0, 1, unit="ok"))
    return out


def _mib(value: int) -> str:
    return f"{value / 2**20:.1f} MiB"


def main(argv: list[str] | None = None) -> int:
    return cli("reductions", __doc__, run, targets,
               [("traced", "peak (tracemalloc)"), ("rss", "peak RSS growth"),
                ("agree", "argmax = numpy")],
               lambda r: {"traced": _mib(r["traced_peak_bytes"]),
                          "rss": _mib(r["rss_growth_bytes"]),
                          "agree": "yes" if r["argmax_agrees_with_numpy"] else "NO"},
               argv, worker)


if __name__ == "__main__":
    sys.exit(main())
