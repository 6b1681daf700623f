"""COCO AP/AR benchmark: ``fastiou.coco.evaluate`` against pycocotools and faster-coco-eval.

    python -m benchmarks.coco            # full run, JSON in benchmarks/results/coco.json
    python -m benchmarks.coco --quick    # smaller datasets, for a smoke test

Workloads (synthetic, seeded, from ``benchmarks/coco_data.py``):

- **bbox**: val2017's sizes: 5,000 images, 80 categories, 35,889 objects of which 365 crowd,
  134,457 detections, 41/34/25 % small/medium/large, scores rounded to 2 decimals (ties).
- **segm**: 500 images at the same rates, polygon ground truth, compressed-RLE detections.

Each implementation runs in a fresh process, on the same JSON-parsed dicts; the first call is
reported apart, then the median and 90th percentile of the repeats. Two timings each:

- ``eval``: evaluate + accumulate + summarize from data already loaded (pycocotools and
  faster-coco-eval: ``COCO`` and ``loadRes`` done, untimed; fastiou: the dicts read into arrays,
  untimed);
- ``end to end``: from the parsed dicts to the 12 numbers (pycocotools and faster-coco-eval:
  ``COCO(dataset)``, ``loadRes``, evaluate, accumulate, summarize; fastiou: ``coco.evaluate``).
  Their inputs are fresh deep copies (both add keys to the dicts they are given), made untimed.

CPU time is the process's (all threads), a figure less sensitive than wall time to other load on
the machine. Peak memory: the growth of the resident set (``VmHWM`` after resetting it) during one
end-to-end call, in a fresh process warmed up on 20 images. ``agrees``: the 12 stats equal
pycocotools' to 1e-12.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable

import numpy as np

from ._common import cli, fmt_time, machine

IMPLS = ("fastiou", "pycocotools", "faster-coco-eval")
WORKLOADS = {"bbox": 5000, "segm": 500}


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _peak_growth_mib(fn: Callable[[], Any]) -> float | None:
    """Resident-set growth during ``fn()`` (Linux: reset the high-water mark first)."""
    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return None
    base = _rss_kib("VmRSS")
    fn()
    return (_rss_kib("VmHWM") - base) / 1024


def _time(fn: Callable[..., Any], repeats: int, setup: Callable[[], Any] | None = None
          ) -> dict[str, Any]:
    """First call apart, then ``repeats`` calls; ``setup()`` (untimed) makes each call's input.
    Wall and CPU time (all threads of the process) of each call."""
    def once() -> tuple[float, float, Any]:
        arg = setup() if setup else None
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn(arg) if setup else fn()
        return time.perf_counter() - t0, time.process_time() - c0, out

    first, _, result = once()
    runs = [once()[:2] for _ in range(repeats)]
    samples = sorted(w for w, _ in runs)
    return {"first_call_s": first, "median_s": statistics.median(samples),
            "p90_s": samples[min(len(samples) - 1, int(round(0.9 * (len(samples) - 1))))],
            "cpu_median_s": statistics.median(c for _, c in runs),
            "repeats": repeats, "stats": [float(v) for v in np.asarray(result)]}


def _fastiou(gt: dict, res: list, iou_type: str, repeats: int) -> dict[str, Any]:
    from fastiou import coco

    def arrays() -> tuple[Any, ...]:  # what the public call reads first (internal, for the split)
        g, images, names, cat_ids = coco._read_gt(gt, "gt", iou_type)
        p = coco._read_params(None, images, cat_ids)
        d = coco._read_results(res, "results", images, iou_type)
        return g, d, images, p, iou_type, names, lambda stage: None

    ev = _time(lambda a: coco._state(*a).compute().stats, repeats, arrays)
    e2e = _time(lambda: coco.evaluate(gt, res, iou_type).stats, repeats)
    return {"eval": ev, "e2e": e2e}


def _cocoapi(module: str, gt: dict, res: list, iou_type: str, repeats: int) -> dict[str, Any]:
    if module == "pycocotools":
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        def load(g: dict) -> Any:
            c = COCO()
            c.dataset = g
            c.createIndex()
            return c

        def evaluator(c: Any, d: Any) -> Any:
            return COCOeval(c, d, iou_type)
    else:
        from faster_coco_eval import COCO, COCOeval_faster

        def load(g: dict) -> Any:
            return COCO(g)

        def evaluator(c: Any, d: Any) -> Any:
            return COCOeval_faster(c, d, iou_type, print_function=lambda *a, **k: None)

    def run_eval(pair: tuple[Any, Any]) -> Any:
        e = evaluator(*pair)
        with contextlib.redirect_stdout(io.StringIO()):
            e.evaluate()
            e.accumulate()
            e.summarize()
        return e.stats

    def loaded() -> tuple[Any, Any]:
        with contextlib.redirect_stdout(io.StringIO()):
            c = load(copy.deepcopy(gt))
            return c, c.loadRes(copy.deepcopy(res))

    def fresh() -> tuple[dict, list]:
        return copy.deepcopy(gt), copy.deepcopy(res)

    def end_to_end(data: tuple[dict, list]) -> Any:
        with contextlib.redirect_stdout(io.StringIO()):
            c = load(data[0])
            return run_eval((c, c.loadRes(data[1])))

    if repeats == 0:  # the peak-memory run: one end-to-end call
        data = fresh()
        return {"peak": lambda: end_to_end(data)}
    ev = _time(run_eval, repeats, loaded)
    e2e = _time(end_to_end, repeats, fresh)
    return {"eval": ev, "e2e": e2e}


def _small(gt: dict, res: list, images: int = 20) -> tuple[dict, list]:
    """The first images of a dataset (a warm-up that loads compiled code and caches)."""
    keep = {im["id"] for im in gt["images"][:images]}
    return ({**gt, "images": gt["images"][:images],
             "annotations": [a for a in gt["annotations"] if a["image_id"] in keep]},
            [r for r in res if r["image_id"] in keep])


def peak(workload: str, impl: str, path: str) -> float | None:
    """Resident-set growth of one end-to-end call, in a fresh process warmed up on 20 images."""
    with open(path) as f:
        gt, res = json.load(f)
    if impl == "fastiou":
        from fastiou import coco

        coco.evaluate(*_small(gt, res), workload)
        return _peak_growth_mib(lambda: coco.evaluate(gt, res, workload))
    _cocoapi(impl, *_small(gt, res), workload, 0)["peak"]()
    run = _cocoapi(impl, gt, res, workload, 0)["peak"]
    return _peak_growth_mib(run)


def child(workload: str, impl: str, path: str, quick: bool) -> list[dict[str, Any]]:
    with open(path) as f:
        gt, res = json.load(f)
    repeats = 1 if impl == "pycocotools" else 3 if quick else 7
    if impl == "fastiou":
        out = _fastiou(gt, res, workload, repeats)
    else:
        out = _cocoapi(impl, gt, res, workload, repeats)
    rows = []
    for stage, label in (("eval", "eval+accumulate+summarize"), ("e2e", "end to end")):
        rows.append({"workload": f"{workload}: {label}", "impl": impl, **out[stage]})
    return rows


def _available(impl: str) -> bool:
    import importlib.util

    name = {"fastiou": "fastiou", "pycocotools": "pycocotools",
            "faster-coco-eval": "faster_coco_eval"}[impl]
    return importlib.util.find_spec(name) is not None


def run(quick: bool = False) -> dict[str, Any]:
    from . import coco_data

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    results: list[dict[str, Any]] = []
    sizes = {}
    with tempfile.TemporaryDirectory() as tmp:
        for workload, images in WORKLOADS.items():
            n = images // 10 if quick else images
            gt, res = coco_data.val2017(0, segm=workload == "segm", images=n)
            sizes[workload] = {"images": len(gt["images"]), "objects": len(gt["annotations"]),
                               "crowd": sum(a["iscrowd"] for a in gt["annotations"]),
                               "detections": len(res)}
            path = os.path.join(tmp, f"{workload}.json")
            with open(path, "w") as f:
                json.dump([gt, res], f)
            del gt, res
            for impl in IMPLS:
                if not _available(impl):
                    continue
                cmd = [sys.executable, "-m", "benchmarks.coco", "--child", workload, impl, path]
                if quick:
                    cmd.append("--quick")
                out = subprocess.run(cmd, capture_output=True, text=True, cwd=root)
                if out.returncode != 0:
                    raise RuntimeError(f"{workload} / {impl} failed:\n{out.stderr[-4000:]}")
                rows = json.loads(out.stdout.strip().splitlines()[-1])
                cmd[3] = "--peak"
                out = subprocess.run(cmd, capture_output=True, text=True, cwd=root)
                if out.returncode != 0:
                    raise RuntimeError(f"{workload} / {impl} (peak) failed:\n"
                                       f"{out.stderr[-4000:]}")
                rows[-1]["peak_mib"] = json.loads(out.stdout.strip().splitlines()[-1])
                results += rows
    for r in results:
        ref = next((x for x in results if x["workload"] == r["workload"]
                    and x["impl"] == "pycocotools"), None)
        r["agrees"] = None if ref is None else bool(
            np.allclose(r["stats"], ref["stats"], rtol=0, atol=1e-12))
        ours = next(x for x in results if x["workload"] == r["workload"] and x["impl"] == "fastiou")
        r["fastiou_speedup"] = r["median_s"] / ours["median_s"]
        r["fastiou_cpu_speedup"] = r["cpu_median_s"] / ours["cpu_median_s"]
    return {"machine": machine(), "quick": quick, "sizes": sizes, "results": results}


def targets(payload: dict[str, Any]) -> list[str]:
    rows = {(r["workload"], r["impl"]): r for r in payload["results"]}
    lines = [f"data: {payload['sizes']}"]
    goals = [("bbox: eval+accumulate+summarize", "faster-coco-eval", 10),
             ("bbox: end to end", "faster-coco-eval", 5),
             ("segm: end to end", "faster-coco-eval", 5)]
    for workload, impl, goal in goals:
        if (workload, impl) in rows:
            ratio = rows[(workload, impl)]["fastiou_speedup"]
            cpu = rows[(workload, impl)]["fastiou_cpu_speedup"]
            lines.append(f"{workload}: fastiou {ratio:.1f}x {impl} in time, {cpu:.1f}x in CPU "
                         f"time (target >= {goal}x): {'met' if ratio >= goal else 'NOT met'}")
    ours = rows.get(("bbox: eval+accumulate+summarize", "fastiou"))
    if ours and not payload["quick"]:
        lines.append(f"bbox eval+accumulate+summarize: {fmt_time(ours['median_s'])} "
                     f"(target <= 0.25 s): {'met' if ours['median_s'] <= 0.25 else 'NOT met'}")
    if any(r["agrees"] is False for r in payload["results"]):
        lines.append("WARNING: some stats differ from pycocotools' by more than 1e-12")
    return lines


def cells(r: dict[str, Any]) -> dict[str, str]:
    return {"p90": fmt_time(r["p90_s"]), "x": f"{r['fastiou_speedup']:.1f}x",
            "cpu": fmt_time(r["cpu_median_s"]), "xc": f"{r['fastiou_cpu_speedup']:.1f}x",
            "peak": "-" if r.get("peak_mib") is None else f"{r['peak_mib']:.0f} MiB",
            "AP": f"{r['stats'][0]:.4f}",
            "agrees": {None: "-", True: "yes", False: "NO"}[r["agrees"]]}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        print(json.dumps(child(argv[1], argv[2], argv[3], "--quick" in argv)))
        return 0
    if argv and argv[0] == "--peak":
        print(json.dumps(peak(argv[1], argv[2], argv[3])))
        return 0
    return cli("coco", __doc__, run, targets,
               [("p90", "p90"), ("x", "time / fastiou's"), ("cpu", "CPU time"),
                ("xc", "CPU / fastiou's"), ("peak", "peak memory"), ("AP", "AP"),
                ("agrees", "= pycocotools")], cells, argv)


if __name__ == "__main__":
    sys.exit(main())
