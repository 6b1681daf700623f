"""Shared by every benchmark: workloads in fresh processes on fresh inputs, targets, JSON, table.

How a workload is measured (``measure``): every timed call gets its own inputs, made before the
call and not touched since (a list made up front, each entry used once, or a function called
between the calls, outside the timed region); the first call of the process (compilation, caches,
first page faults) is reported apart; then the median and the 90th percentile of the others.

How a benchmark runs (``cli`` and ``run_worker``): the parent starts one fresh Python process per
workload, ``python -m benchmarks.<family> --worker <workload> '<json parameters>'``, which prints
one JSON value on its last line of stdout; the parent prints the table, each target of the issues
beside its measured value (``Target``), and writes ``benchmarks/results/<family>.json`` with the
machine's facts. ``--check`` exits 1 when a target is missed or could not be measured.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Sequence, Union

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "benchmarks" / "results"


def machine() -> dict[str, Any]:
    """The facts a figure needs beside it: CPU, cores usable, versions, load, thread settings."""
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "load_average": os.getloadavg()[0],
    }
    for package in ("numpy", "numba", "jax", "torch", "torchvision", "pycocotools", "cupy"):
        try:
            info[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    for var in ("NUMBA_NUM_THREADS", "NUMBA_THREADING_LAYER", "OMP_NUM_THREADS"):
        if var in os.environ:
            info[var] = os.environ[var]
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return info


# --- one workload: fresh inputs per call, first call apart, median and p90 ---------------------


Inputs = Union[Sequence[Sequence[Any]], Callable[[int], Sequence[Any]]]


def p90(samples: Sequence[float]) -> float:
    """The 90th percentile (linear interpolation between the closest ranks)."""
    if len(samples) == 1:
        return samples[0]
    return statistics.quantiles(samples, n=10, method="inclusive")[-1]


def measure(call: Callable[..., Any], inputs: Inputs, *, repeats: int | None = None,
            finish: Callable[[Any], Any] | None = None,
            check: Callable[[Any], float] | None = None) -> dict[str, Any]:
    """Time ``call(*args)`` on fresh arguments for every call.

    Parameters
    ----------
    call : the function timed.
    inputs : a sequence of argument tuples, each used once (the first for the first call), or a
        function ``k -> argument tuple`` called before the k-th call, outside the timed region.
    repeats : calls after the first; default ``len(inputs) - 1`` (at least 1 either way).
    finish : blocks until the result exists (a device synchronisation), inside the timed region.
    check : turns the first call's result (after ``finish``) into an error, ``max_abs_err``.

    Returns
    -------
    dict with ``first_call_s``, ``median_s`` and ``p90_s`` of the repeats, ``repeats``,
    ``total_s`` (every call, the first included), and ``max_abs_err`` when ``check`` is given.
    """
    done = finish or (lambda r: r)
    if callable(inputs):
        count = 1 + max(1, repeats if repeats is not None else 1)
        fresh = inputs
    else:
        count = min(len(inputs), 1 + repeats) if repeats is not None else len(inputs)
        if count < 2:
            raise ValueError("measure: inputs needs at least 2 argument tuples (first call, "
                             f"then the repeats), got {len(inputs)}")
        listed = inputs
        fresh = lambda k: listed[k]  # noqa: E731
    samples, row = [], {}
    for k in range(count):
        args = fresh(k)
        t0 = time.perf_counter()
        result = done(call(*args))
        samples.append(time.perf_counter() - t0)
        if k == 0 and check is not None:
            row["max_abs_err"] = float(check(result))
        del result, args
    rest = samples[1:]
    return {"first_call_s": samples[0], "median_s": statistics.median(rest), "p90_s": p90(rest),
            "repeats": len(rest), "total_s": sum(samples), **row}


def run_worker(family: str, workload: str, params: dict[str, Any] | None = None, *,
               env: dict[str, str] | None = None, timeout: float = 900,
               with_stderr: bool = False) -> Any:
    """Run ``python -m benchmarks.<family> --worker <workload> <params>`` in a fresh process from
    the repository root; return the JSON value on the last line of its stdout (and what the
    process wrote on stderr, as a second value, with ``with_stderr=True``).

    ``env`` entries are added to this process's environment. A failure or a timeout raises
    ``RuntimeError`` with the end of the worker's stderr.
    """
    cmd = [sys.executable, "-m", f"benchmarks.{family}", "--worker", workload,
           json.dumps(params or {})]
    full_env = {**os.environ, **(env or {})}
    full_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=full_env,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"benchmarks.{family} worker {workload!r} ran past {timeout:g} s") \
            from exc
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"benchmarks.{family} worker {workload!r} failed (exit "
                           f"{done.returncode}):\n{done.stderr[-4000:]}")
    value = json.loads(lines[-1])
    return (value, done.stderr) if with_stderr else value


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def failed(workload: str, impl: str, error: Exception) -> dict[str, Any]:
    """The row of a workload that failed: kept in the table and the JSON (its targets are then
    "not measured"), the run goes on."""
    last = str(error).strip().splitlines()[-1:] or [type(error).__name__]
    progress(f"  FAILED: {workload} / {impl}: {last[0]}")
    return {"workload": workload, "impl": impl, "error": str(error)[-4000:], "median_s": None,
            "p90_s": None, "first_call_s": None}


# --- targets -------------------------------------------------------------------------------------


@dataclass
class Target:
    """One target of an issue beside the value measured in this run.

    ``value`` is a ratio (``unit="x"``), a time in seconds (``unit="s"``) or 1.0 / 0.0 for a
    yes/no outcome (``unit="ok"``, goal 1); ``at_least`` says
    whether it must be at least ``goal`` (a speed-up) or at most ``goal`` (a time, a slow-down).
    ``value=None``: not measured here (a peer not installed, a workload that failed).
    """

    what: str
    value: float | None
    goal: float
    at_least: bool = True
    unit: str = "x"
    source: str = ""
    detail: str = ""
    aim: float | None = None

    @property
    def met(self) -> bool | None:
        if self.value is None:
            return None
        return self.value >= self.goal if self.at_least else self.value <= self.goal

    def line(self) -> str:
        show: Callable[[float], str] = {
            "x": lambda v: f"{v:.2f}x" if v < 10 else f"{v:.1f}x",
            "s": fmt_time,
            "ok": lambda v: "yes" if v >= 1 else "no",
        }[self.unit]
        goal = ("must be yes" if self.unit == "ok"
                else f"{'>=' if self.at_least else '<='} {show(self.goal)}")
        if self.aim is not None:
            goal += f", aim {show(self.aim)}"
        source = f", {self.source}" if self.source else ""
        verdict = {True: "met", False: "NOT met", None: "not measured"}[self.met]
        value = "-" if self.value is None else show(self.value)
        detail = f" [{self.detail}]" if self.detail else ""
        return f"{self.what}: {value} (target {goal}{source}){detail}: {verdict}"


def find(rows: Sequence[dict[str, Any]], workload: str, impl: str) -> dict[str, Any] | None:
    return next((r for r in rows if r["workload"] == workload and r["impl"] == impl), None)


def ratio(rows: Sequence[dict[str, Any]], workload: str, numerator: str, denominator: str,
          goal: float, *, at_least: bool = True, source: str = "", aim: float | None = None,
          what: str | None = None, key: str = "median_s") -> Target:
    """Target on ``numerator``'s time / ``denominator``'s time for one workload (rows of the
    same run): a speed-up over a peer (numerator the peer, ``at_least``) or a slow-down bound."""
    num, den = find(rows, workload, numerator), find(rows, workload, denominator)
    value = detail = None
    if num is not None and den is not None and num.get(key) and den.get(key):
        value = num[key] / den[key]
        detail = f"{numerator} {fmt_time(num[key])}, {denominator} {fmt_time(den[key])}"
    return Target(what or f"{workload}: {numerator} / {denominator}", value, goal, at_least,
                  "x", source, detail or "", aim)


def time_limit(rows: Sequence[dict[str, Any]], workload: str, impl: str, goal_s: float, *,
               source: str = "", key: str = "median_s", what: str | None = None) -> Target:
    """Target on one row's time (seconds), at most ``goal_s``."""
    row = find(rows, workload, impl)
    return Target(what or f"{workload}: {impl} ({key[:-2].replace('_', ' ')})",
                  None if row is None else row.get(key), goal_s, False, "s", source)


def missed(targets: Sequence[Target | str]) -> list[str]:
    """The lines of the targets missed or not measured. A plain string line counts as missed
    when it says ``NOT met`` (the format of the benchmarks that print their own lines)."""
    return [t.line() if isinstance(t, Target) else t for t in targets
            if (t.met is not True if isinstance(t, Target) else "NOT met" in t)]


# --- output --------------------------------------------------------------------------------------


def write_json(name: str, payload: dict[str, Any], path: str | None = None) -> Path:
    out = Path(path) if path else RESULTS_DIR / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str))
    tmp.replace(out)
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
        targets: Callable[[dict[str, Any]], Sequence[Target | str]],
        columns: list[tuple[str, str]], cells: Callable[[dict[str, Any]], dict[str, str]],
        argv: list[str] | None = None,
        worker: Callable[[str, dict[str, Any]], Any] | None = None) -> int:
    """The command line every benchmark module shares.

    ``--worker NAME PARAMS`` (the child side of ``run_worker``) prints ``worker(NAME, PARAMS)``
    as JSON. Otherwise ``run(quick=...)`` gives the payload (``results``: rows with ``workload``,
    ``impl``, ``median_s``, ``first_call_s`` and ``p90_s``); the table (``cells`` formats a row's
    extra ``columns``) and the targets are printed, the JSON written; with ``--check`` the exit
    status is 1 when a target is missed or not measured.
    """
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 when a target of the issues is missed or not measured")
    parser.add_argument("--json", help="where to write the results (default benchmarks/results)")
    parser.add_argument("--worker", nargs=2, metavar=("WORKLOAD", "PARAMS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        if worker is None:
            parser.error("this benchmark has no workers")
        print(json.dumps(worker(args.worker[0], json.loads(args.worker[1])), default=float))
        return 0
    started = time.perf_counter()
    payload = run(quick=args.quick)
    payload.setdefault("benchmark", name)
    payload.setdefault("quick", args.quick)
    payload.setdefault("machine", machine())
    payload["load_average_after"] = os.getloadavg()[0]
    payload["wall_s"] = time.perf_counter() - started
    checked = list(targets(payload))
    payload["targets"] = [asdict(t) | {"met": t.met} if isinstance(t, Target) else {"line": t}
                          for t in checked]
    keys = {k for k, _ in columns}
    rows = [{**r, "median": fmt_time(r.get("median_s")), "first": fmt_time(r.get("first_call_s")),
             "p90_": fmt_time(r.get("p90_s")),
             **({"median": "FAILED"} if "error" in r else cells(r))}
            for r in payload["results"]]
    auto_p90 = [] if "p90" in keys else [("p90_", "p90")]
    m = payload["machine"]
    print(f"machine: {m.get('cpu')}, {m.get('cores_usable') or m.get('cores')} cores, python "
          f"{m.get('python')}; load average {m.get('load_average', 0):.2f} before, "
          f"{payload['load_average_after']:.2f} after")
    print_table(rows, [("workload", "workload"), ("impl", "implementation"), ("median", "median"),
                       *auto_p90, ("first", "first call"), *columns])
    if args.quick:
        print("quick run: small sizes; the issues' targets are stated for the full sizes")
    for t in checked:
        print(t.line() if isinstance(t, Target) else t)
    path = write_json(name + ("-quick" if args.quick else ""), payload, args.json)
    print(f"results: {path}")
    failed = missed(checked)
    if args.check and failed:
        print(f"--check: {len(failed)} target(s) missed or not measured", file=sys.stderr)
        return 1
    return 0
