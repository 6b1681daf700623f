"""Shared by every benchmark: timing (warm-up apart, median of repeats), machine facts, JSON, table."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any, Callable

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    import numpy as np

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
    }
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return info


def timeit(fn: Callable[[], Any], *, repeats: int = 7, min_time: float = 0.05,
           sync: Callable[[Any], Any] | None = None) -> dict[str, float]:
    """First call timed alone (compile, caches), then ``repeats`` timed calls after a warm-up.

    Each repeat runs the call enough times to last ``min_time`` seconds; the per-call median and
    the spread are reported in seconds.
    """
    finish = sync or (lambda r: r)
    t0 = time.perf_counter()
    finish(fn())
    first = time.perf_counter() - t0
    finish(fn())  # warm-up
    t0 = time.perf_counter()
    finish(fn())
    once = max(time.perf_counter() - t0, 1e-9)
    loops = max(1, int(min_time / once))
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(loops):
            result = fn()
        finish(result)
        samples.append((time.perf_counter() - t0) / loops)
    return {
        "first_call_s": first,
        "median_s": statistics.median(samples),
        "min_s": min(samples),
        "max_s": max(samples),
        "repeats": repeats,
        "loops": loops,
    }


def write_json(name: str, payload: dict[str, Any], path: str | None = None) -> Path:
    out = Path(path) if path else RESULTS_DIR / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2, default=str))
    return out


def fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} us"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def print_table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> None:
    """rows of dicts; columns as (key, header)."""
    cells = [[str(r.get(k, "")) for k, _ in columns] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h)
              for i, (_, h) in enumerate(columns)]
    print("  ".join(h.ljust(w) for (_, h), w in zip(columns, widths)))
    print("  ".join("-" * w for w in widths))
    for c in cells:
        print("  ".join(v.ljust(w) for v, w in zip(c, widths)))


def cli(name: str, doc: str, run: Callable[..., dict[str, Any]],
        targets: Callable[[dict[str, Any]], list[str]], columns: list[tuple[str, str]],
        cells: Callable[[dict[str, Any]], dict[str, str]], argv: list[str] | None = None) -> int:
    """The command line every benchmark module shares: run, print the table and the targets,
    write the JSON. ``cells`` formats a result row's extra columns."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    parser.add_argument("--json", help="where to write the results (default benchmarks/results)")
    args = parser.parse_args(argv)
    payload = run(quick=args.quick)
    rows = [{**r, "median": fmt_time(r["median_s"]), "first": fmt_time(r["first_call_s"]), **cells(r)}
            for r in payload["results"]]
    print(f"machine: {payload['machine']}, load average: {os.getloadavg()[0]:.2f}")
    print_table(rows, [("workload", "workload"), ("impl", "implementation"), ("median", "median"),
                       ("first", "first call"), *columns])
    for line in targets(payload):
        print(line)
    path = write_json(name + ("-quick" if args.quick else ""), payload, args.json)
    print(f"results: {path}")
    return 0


def engine_variants(fn: Callable[..., Any], *arrays: Any) -> dict[str, tuple[Callable[[], Any], Callable[[Any], Any]]]:
    """``fn`` on the same NumPy inputs moved to jax (jitted inside fastiou) and to CuPy, for the
    engines available here: name -> (call, finish), finish blocks and returns NumPy."""
    import numpy as np

    import fastiou

    variants: dict[str, tuple[Callable[[], Any], Callable[[Any], Any]]] = {}
    info = fastiou.available_backends()
    if info["jax"].available:
        import jax.numpy as jnp

        on_jax = [jnp.asarray(x) for x in arrays]
        variants["fastiou jax.jit"] = (lambda: fn(*on_jax),
                                       lambda r: np.asarray(r.block_until_ready()))
    if info["cupy"].available:
        import cupy

        on_gpu = [cupy.asarray(x) for x in arrays]

        def cupy_finish(r: Any) -> Any:
            cupy.cuda.get_current_stream().synchronize()
            return r.get()

        variants["fastiou cupy"] = (lambda: fn(*on_gpu), cupy_finish)
    return variants
