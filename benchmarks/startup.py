"""Small calls, cold starts, fork and threads: the speed a user meets outside big batches.

    python -m benchmarks.startup            # full run, JSON in benchmarks/results/startup.json
    python -m benchmarks.startup --quick    # fewer calls and processes, for a smoke test
    python -m benchmarks.startup --check    # also exit 1 when a target below is missed

Every workload runs in fresh processes.

Small calls (issue 11 item 2), one process per workload and implementation, every call on its own
inputs, made before any timing; per-call median and p90, the first call of the process apart:

- a detector evaluated image by image: 2000 images, 1-19 ground-truth and 50-99 predicted
  float32 boxes each; ``fastiou.box_iou`` against NumPy broadcasting (float32) and
  ``torchvision.ops.box_iou`` (on tensors made beforehand, 2 torch threads); "total" is the sum
  over the images, the first call included;
- one ``box_iou`` of (10, 4) x (100, 4) float32, 2000 different pairs (target <= 6 us a call);
- one small image: ``mask_iou`` of 4 x 8 bool masks of 96x128 (NumPy float32 matmul beside it),
  ``rle.iou`` of the same masks as COCO RLE, 8 detections against 4 ground truths of which one
  is crowd (pycocotools beside it), ``confusion_matrix`` of one 128x128 uint8 map, 19 classes,
  255 ignored (NumPy bincount).

Cold start (item 3), each figure from a new interpreter (``python -c``), timed inside it, with
Python's bytecode cache allowed (``PYTHONDONTWRITEBYTECODE`` removed: an installed package has its
``.pyc`` files; without them every process compiles fastiou's sources again). Beside each figure,
how many compiled kernels the process loaded from Numba's cache and how many it compiled (each
load costs; each compilation far more):

- ``import numpy`` alone, for reference;
- ``import fastiou`` + the first ``box_iou`` with the Numba cache as it is (warmed by a first
  process, reported apart): target <= 0.25 s from an interpreter with nothing imported (NumPy's
  import included);
- with an empty cache (``NUMBA_CACHE_DIR`` a new temporary folder for every process), the first
  call of each family and dtype: target <= 1 s each (the import reported beside it);
- ``python -m fastiou eval --quiet`` on the sample data shipped with fastiou (COCO bbox, segm and
  semantic), wall time of the whole command with a warm cache: "well under a second" (<= 1 s).

Fork and threads (the hardening issue), in a fresh process on inputs large enough for the parallel
kernels: the calls of every family from 2 threads at once against the same calls one after the
other (exact answers, time); then a child forked after those parallel calls makes the same calls
(exit status, exact answers, time), with a timeout so that a hang is reported, not waited for.
What the process wrote on stderr (the threading layer's warnings, such as TBB's "Unable to join
threads to shut down before fork()") is kept in the fork row and shown beside its target.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from typing import Any, Callable

import numpy as np

from ._common import (ROOT, Target, cli, failed, fmt_time, measure, p90, progress, ratio,
                      run_worker, time_limit)

C = 19
IGNORE = 255

# --- small calls -------------------------------------------------------------------------------


def _boxes(rng: np.random.Generator, k: int) -> np.ndarray:
    wh = rng.uniform(4, 200, (k, 2))
    xy = rng.uniform(0, (640, 480) - wh)
    return np.concatenate([xy, xy + wh], axis=1).astype(np.float32)


def box_images(images: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per image: 1-19 ground truths and 50-99 predictions, float32 xyxy; a third of the
    predictions near a ground truth."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(images):
        gt = _boxes(rng, int(rng.integers(1, 20)))
        pred = _boxes(rng, int(rng.integers(50, 100)))
        near = pred.shape[0] // 3
        pred[:near] = gt[rng.integers(0, gt.shape[0], near)] + rng.normal(0, 3, (near, 4))
        out.append((gt, pred))
    return out


def box_pairs(count: int, n: int = 10, m: int = 100, seed: int = 1) -> list[tuple[np.ndarray, ...]]:
    rng = np.random.default_rng(seed)
    return [(_boxes(rng, n), _boxes(rng, m)) for _ in range(count)]


def small_masks(count: int, seed: int = 2, n: int = 4, m: int = 8, h: int = 96,
                w: int = 128) -> list[tuple[np.ndarray, np.ndarray]]:
    """``count`` pairs of (n, H, W) and (m, H, W) bool masks: rectangles, half of the second set
    overlapping the first."""
    rng = np.random.default_rng(seed)

    def paint(boxes: np.ndarray) -> np.ndarray:
        out = np.zeros((boxes.shape[0], h, w), dtype=bool)
        for mask, (x0, y0, x1, y1) in zip(out, boxes.astype(int)):
            mask[y0:y1 + 1, x0:x1 + 1] = True
        return out

    def boxes(k: int) -> np.ndarray:
        size = rng.uniform(8, 64, (k, 2))
        lo = rng.uniform(0, 1, (k, 2)) * ((w, h) - size)
        return np.concatenate([lo, lo + size], axis=1)

    sets = []
    for _ in range(count):
        a = boxes(n)
        b = boxes(m)
        b[: n // 2] = a[: n // 2] + rng.normal(0, 3, (n // 2, 4))
        sets.append((paint(np.clip(a, 0, None)), paint(np.clip(b, 0, None))))
    return sets


def label_maps(count: int, seed: int = 3, h: int = 128,
               w: int = 128) -> list[tuple[np.ndarray, ...]]:
    """``count`` (pred, target) uint8 maps: 19 classes in blocks of 16x16, a tenth of the
    prediction's blocks wrong, about 5% of the target pixels 255."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        blocks = rng.integers(0, C, (h // 16, w // 16), dtype=np.uint8)
        target = np.kron(blocks, np.ones((16, 16), np.uint8))
        wrong = rng.random(blocks.shape) < 0.1
        guess = np.where(wrong, (blocks + 1) % C, blocks).astype(np.uint8)
        pred = np.kron(guess, np.ones((16, 16), np.uint8))
        target[rng.random((h, w)) < 0.05] = IGNORE
        out.append((pred, target))
    return out


def _numpy_box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    area1 = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area2 = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    wh = np.clip(np.minimum(a[:, None, 2:], b[None, :, 2:])
                 - np.maximum(a[:, None, :2], b[None, :, :2]), 0, None)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (area1[:, None] + area2[None, :] - inter)


def _numpy_mask_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    fa = a.reshape(a.shape[0], -1).astype(np.float32)
    fb = b.reshape(b.shape[0], -1).astype(np.float32)
    inter = fa @ fb.T
    union = fa.sum(1)[:, None] + fb.sum(1)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union != 0)


def _bincount(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    keep = target != IGNORE
    return np.bincount(target[keep].astype(np.int64) * C + pred[keep],
                       minlength=C * C).reshape(C, C)


def _reference_box(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return _numpy_box_iou(a.astype(np.float64), b.astype(np.float64))


def _reference_mask(a: np.ndarray, b: np.ndarray, crowd: list[bool] | None = None) -> np.ndarray:
    fa = a.reshape(a.shape[0], -1).astype(np.float64)
    fb = b.reshape(b.shape[0], -1).astype(np.float64)
    inter = fa @ fb.T
    union = fa.sum(1)[:, None] + fb.sum(1)[None, :] - inter
    if crowd is not None:  # COCO: against a crowd region, the union is the detection's area
        union[:, np.asarray(crowd)] = fa.sum(1)[:, None]
    return np.divide(inter, union, out=np.zeros_like(inter), where=union != 0)


SMALL = {
    # workload: (implementations, full count, quick count)
    "boxes per image, 2000 images": (("fastiou box_iou", "numpy broadcasting",
                                      "torchvision box_iou"), 2000, 200),
    "box_iou (10,4)x(100,4)": (("fastiou box_iou", "numpy broadcasting", "torchvision box_iou"),
                               2000, 200),
    "mask_iou 4x8 @96x128": (("fastiou mask_iou", "numpy float32 matmul"), 500, 100),
    "rle.iou 4x8 @96x128": (("fastiou rle.iou", "pycocotools iou"), 500, 100),
    "confusion_matrix 128x128": (("fastiou confusion_matrix", "numpy bincount"), 500, 100),
}


def _small_worker(workload: str, impl: str, count: int) -> dict[str, Any]:
    """One small-call workload and implementation, in this fresh process."""
    if workload.startswith("boxes per image"):
        inputs: list[tuple[Any, ...]] = box_images(count)
        expected = _reference_box(*inputs[0])
    elif workload.startswith("box_iou"):
        inputs = box_pairs(count)
        expected = _reference_box(*inputs[0])
    elif workload.startswith("mask_iou"):
        inputs = small_masks(count)
        expected = _reference_mask(*inputs[0])
    elif workload.startswith("rle.iou"):
        from fastiou import rle  # the RLE is made outside the timing, for both implementations

        masks = small_masks(count)
        crowd = [k == 0 for k in range(masks[0][0].shape[0])]  # one crowd ground truth
        inputs = [(rle.encode(dt), rle.encode(gt), crowd) for gt, dt in masks]
        expected = _reference_mask(masks[0][1], masks[0][0], crowd)
    else:
        inputs = label_maps(count)
        expected = _bincount(*inputs[0])
    finish: Callable[[Any], Any] = np.asarray
    if impl.startswith("fastiou"):
        import fastiou

        call: Callable[..., Any] = {
            "fastiou box_iou": fastiou.box_iou, "fastiou mask_iou": fastiou.mask_iou,
            "fastiou rle.iou": fastiou.rle.iou,
            "fastiou confusion_matrix": lambda p, t: fastiou.confusion_matrix(
                p, t, C, ignore_index=IGNORE)}[impl]
    elif impl in ("numpy broadcasting", "numpy float32 matmul", "numpy bincount"):
        call = {"numpy broadcasting": _numpy_box_iou, "numpy float32 matmul": _numpy_mask_iou,
                "numpy bincount": _bincount}[impl]
    elif impl == "pycocotools iou":
        try:
            from pycocotools import mask as mask_utils
        except ImportError as exc:
            return {"skipped": str(exc)}
        call = mask_utils.iou
    elif impl == "torchvision box_iou":
        try:
            import torch
            import torchvision.ops
        except Exception as exc:  # not installed, or a torch/torchvision mismatch
            return {"skipped": f"{type(exc).__name__}: {exc}"}
        torch.set_num_threads(2)
        inputs = [tuple(torch.from_numpy(x) for x in args) for args in inputs]
        call, finish = torchvision.ops.box_iou, lambda r: r.numpy()
    else:
        raise ValueError(impl)
    return measure(call, inputs, finish=finish,
                   check=lambda v: float(np.abs(np.asarray(v, np.float64) - expected).max()))


# --- cold start: scripts run by a new interpreter ------------------------------------------------

COLD_FIRST = {
    # family and dtype: the statements of its first call (numpy as np, fastiou imported)
    "box_iou float32": "fastiou.box_iou(np.ones((10, 4), np.float32), "
                       "np.ones((100, 4), np.float32))",
    "box_iou float64": "fastiou.box_iou(np.ones((10, 4)), np.ones((100, 4)))",
    "generalized_box_iou float32": "fastiou.generalized_box_iou(np.ones((10, 4), np.float32), "
                                   "np.ones((100, 4), np.float32))",
    "mask_iou bool": "fastiou.mask_iou(np.ones((4, 96, 128), bool), np.ones((8, 96, 128), bool))",
    "rle.encode + rle.iou": "m = np.ones((4, 96, 128), bool); "
                            "fastiou.rle.iou(fastiou.rle.encode(m), fastiou.rle.encode(m), "
                            "[0] * 4)",
    "confusion_matrix uint8": "fastiou.confusion_matrix(np.zeros((128, 128), np.uint8), "
                              "np.zeros((128, 128), np.uint8), 19)",
    "evaluate boxes float32": "fastiou.evaluate([np.ones((3, 4), np.float32)], "
                              "[np.ones((5, 4), np.float32)], scores=[np.ones(5, np.float32)])",
}

# Timed inside a new interpreter: the import of fastiou (NumPy's included), then the first call.
COLD_SCRIPT = textwrap.dedent("""
    import time
    t0 = time.perf_counter()
    import fastiou
    t1 = time.perf_counter()
    import numpy as np
    {call}
    t2 = time.perf_counter()
    import json, sys
    print(json.dumps({{"import_s": t1 - t0, "first_call_s": t2 - t1, "total_s": t2 - t0,
                      "numba_imported": "numba" in sys.modules,
                      "scipy_imported": "scipy" in sys.modules, **kernel_counts()}}))
""")

# Appended to a script: ``kernel_counts()``, the kernels of this process loaded from Numba's cache
# and compiled (each overload of each dispatcher, Numba's own included).
COUNT_KERNELS = textwrap.dedent("""
    def kernel_counts():
        import gc, sys
        if "numba" not in sys.modules:
            return {"kernels_loaded": 0, "kernels_compiled": 0}
        from numba.core.registry import CPUDispatcher
        found = [d for d in gc.get_objects() if isinstance(d, CPUDispatcher)]
        return {"kernels_loaded": sum(sum(d.stats.cache_hits.values()) for d in found),
                "kernels_compiled": sum(len(d.overloads) for d in found)
                - sum(sum(d.stats.cache_hits.values()) for d in found)}
""")
COLD_SCRIPT = COUNT_KERNELS.replace("{", "{{").replace("}", "}}") + COLD_SCRIPT  # a template

# ``fastiou eval --quiet`` as ``python -m fastiou`` runs it, then the kernel counts (a process of
# its own, not timed: the wall-time figure runs the command itself).
EVAL_COUNT_SCRIPT = COUNT_KERNELS + textwrap.dedent("""
    import contextlib, io, json, runpy, sys
    sys.argv = ["fastiou", "eval", "--quiet"]
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            runpy.run_module("fastiou", run_name="__main__", alter_sys=True)
        except SystemExit as exc:
            if exc.code:
                raise
    print(json.dumps(kernel_counts()))
""")

NUMPY_SCRIPT = textwrap.dedent("""
    import time
    t0 = time.perf_counter()
    import numpy
    t1 = time.perf_counter()
    import json
    print(json.dumps({"import_s": t1 - t0, "first_call_s": 0.0, "total_s": t1 - t0}))
""")


def _cold_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment with ``env`` added, bytecode caching allowed, and the
    repository root first on the path."""
    full_env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    full_env.update(env or {})
    full_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return full_env


def _python(script: str, env: dict[str, str] | None = None, timeout: float = 300) -> dict[str, Any]:
    """Run ``script`` in a new interpreter from the repository root: its last line as JSON."""
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT,
                          env=_cold_env(env), timeout=timeout, check=False)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"cold-start script failed (exit {done.returncode}):\n"
                           f"{done.stderr[-3000:]}")
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "process_wall_s": wall}


def _summary(runs: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """The first process apart, then the median and p90 of the others (``key`` of each run)."""
    rest = [r[key] for r in runs[1:]] or [runs[0][key]]
    return {"first_call_s": runs[0][key], "median_s": statistics.median(rest), "p90_s": p90(rest),
            "repeats": len(rest),
            "process_wall_median_s": statistics.median(r["process_wall_s"]
                                                       for r in runs[1:] or runs),
            **{k: runs[-1][k] for k in ("kernels_loaded", "kernels_compiled") if k in runs[-1]},
            **({"import_median_s": statistics.median(r["import_s"] for r in runs[1:] or runs),
                "numba_imported": runs[-1].get("numba_imported"),
                "scipy_imported": runs[-1].get("scipy_imported")} if "import_s" in runs[0] else {})}


PROCESSES = {False: 6, True: 3}  # new interpreters per warm-cache figure (the first apart)
EVAL_PROCESSES = {False: 4, True: 2}
EMPTY_CACHE_QUICK = ("box_iou float32",)  # the families of the quick run (each compiles, ~2 s)


def cold_rows(quick: bool) -> list[dict[str, Any]]:
    processes = PROCESSES[quick]
    plans: list[tuple[str, str, Callable[[], dict[str, Any]]]] = [
        ("cold start, warm cache", "import numpy (reference)",
         lambda: _summary([_python(NUMPY_SCRIPT) for _ in range(processes)], "total_s")),
        # the first process may fill the cache: it is the "first call" column
        ("cold start, warm cache", "import fastiou + first box_iou",
         lambda: _summary([_python(COLD_SCRIPT.format(call=COLD_FIRST["box_iou float32"]))
                           for _ in range(processes)], "total_s")),
    ]
    for family in EMPTY_CACHE_QUICK if quick else list(COLD_FIRST):
        plans.append(("cold start, empty cache", f"first {family}",
                      lambda family=family: _empty_cache(COLD_FIRST[family])))
    if EVAL_PROCESSES[quick]:
        plans.append(("cold start, warm cache", "python -m fastiou eval (sample data)",
                      lambda: {**_summary([_eval_sample() for _ in range(EVAL_PROCESSES[quick])],
                                          "process_wall_s"), **_python(EVAL_COUNT_SCRIPT)}))
    rows = []
    for workload, impl, measure_it in plans:
        progress(f"{workload}: {impl} ...")
        try:
            rows.append({"workload": workload, "impl": impl, **measure_it()})
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            rows.append(failed(workload, impl, exc))
    return rows


def _empty_cache(call: str) -> dict[str, Any]:
    """The first call in a new interpreter whose Numba cache is a new, empty folder."""
    with tempfile.TemporaryDirectory(prefix="fastiou-numba-cache-") as cache:
        run = _python(COLD_SCRIPT.format(call=call), env={"NUMBA_CACHE_DIR": cache})
    return {"first_call_s": run["first_call_s"], "median_s": run["first_call_s"],
            "p90_s": run["first_call_s"], "repeats": 1, "import_median_s": run["import_s"],
            "process_wall_median_s": run["process_wall_s"], "kernels_loaded": run["kernels_loaded"],
            "kernels_compiled": run["kernels_compiled"]}


def _eval_sample() -> dict[str, Any]:
    """Wall time of ``python -m fastiou eval --quiet`` (the sample data), a new process."""
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "fastiou", "eval", "--quiet"], capture_output=True,
                          text=True, cwd=ROOT, timeout=300, check=False, env=_cold_env())
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"fastiou eval failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return {"process_wall_s": wall}


# --- fork and threads ----------------------------------------------------------------------------


def _family_inputs(quick: bool, seed: int) -> dict[str, tuple[Any, ...]]:
    """Inputs large enough that every family takes its parallel kernel."""
    rng = np.random.default_rng(seed)
    n = 600 if quick else 1500
    masks = small_masks(1, seed=seed, n=12, m=12, h=240, w=320)[0]
    pred, target = label_maps(1, seed=seed, h=512, w=1024)[0]
    return {"box_iou": (_boxes(rng, n), _boxes(rng, n)), "mask_iou": masks,
            "confusion_matrix": (pred, target)}


def _call_families(inputs: dict[str, tuple[Any, ...]]) -> dict[str, np.ndarray]:
    import fastiou

    return {"box_iou": fastiou.box_iou(*inputs["box_iou"]),
            "mask_iou": fastiou.mask_iou(*inputs["mask_iou"]),
            "confusion_matrix": fastiou.confusion_matrix(*inputs["confusion_matrix"], C,
                                                         ignore_index=IGNORE)}


def _copy(inputs: dict[str, tuple[Any, ...]]) -> dict[str, tuple[Any, ...]]:
    return {k: tuple(x.copy() for x in v) for k, v in inputs.items()}


def _exact(got: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> bool:
    return all(np.array_equal(got[k], expected[k]) for k in expected)


def _fork_threads(quick: bool) -> list[dict[str, Any]]:
    import fastiou  # noqa: F401

    calls = 5 if quick else 20
    # Fresh inputs for every call, all made before any timing: one set per call for the pass on
    # one thread; copies of them (new memory, not read since) for the two threads and the child.
    sets = [_family_inputs(quick, seed) for seed in range(2 * calls + 1)]
    thread_sets = [_copy(s) for s in sets[1:]]
    child_sets = [_copy(s) for s in sets[1:4]]
    expected = [{"box_iou": _reference_box(*s["box_iou"]).astype(np.float32),
                 "mask_iou": None, "confusion_matrix": _bincount(*s["confusion_matrix"])}
                for s in sets]
    first_start = time.perf_counter()
    warm = _call_families(sets[0])  # the first (parallel) calls of this process
    first = time.perf_counter() - first_start
    for e, s in zip(expected, sets):
        e["mask_iou"] = _reference_mask(*s["mask_iou"]).astype(np.float32)
    # IoU within float32 rounding of the float64 reference; each later result equal bit for bit to
    # the same call made on one thread (which is what "exact" means for the threads and the fork)
    ok0 = all(np.allclose(warm[k], expected[0][k], rtol=1e-6, atol=1e-6) for k in warm)
    serial_sets = sets[1:]
    t0 = time.perf_counter()
    serial = [_call_families(s) for s in serial_sets]
    one_thread = time.perf_counter() - t0
    ok_serial = ok0 and all(np.allclose(r[k], e[k], rtol=1e-6, atol=1e-6)
                            for r, e in zip(serial, expected[1:]) for k in r)
    results: list[Any] = [None] * len(serial_sets)
    errors: list[str] = []

    def work(lane: int) -> None:
        try:
            for k in range(lane, len(serial_sets), 2):
                results[k] = _call_families(thread_sets[k])
        except Exception as exc:  # reported, not lost in the thread
            errors.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=work, args=(lane,)) for lane in (0, 1)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    two_threads = time.perf_counter() - t0
    hung = any(t.is_alive() for t in threads)
    threads_ok = not hung and not errors and all(
        r is not None and _exact(r, s) for r, s in zip(results, serial))
    rows = [
        {"workload": "threads", "impl": f"{len(serial_sets)} x 3 families, 1 thread",
         "first_call_s": first, "median_s": one_thread, "p90_s": one_thread, "repeats": 1,
         "completes": ok_serial},
        {"workload": "threads", "impl": f"{len(serial_sets)} x 3 families, 2 threads at once",
         "first_call_s": first, "median_s": two_threads, "p90_s": two_threads, "repeats": 1,
         "completes": threads_ok, "errors": errors, "hung": hung},
    ]
    # A child forked after the parallel calls above makes the same calls on the first sets.
    read_end, write_end = os.pipe()
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # the child: no exception may escape, no atexit handler may run
        status = 1
        try:
            os.close(read_end)
            samples, same = [], True
            for s, r in zip(child_sets, serial):
                c0 = time.perf_counter()
                got = _call_families(s)
                samples.append(time.perf_counter() - c0)
                same = same and _exact(got, r)
            with os.fdopen(write_end, "w") as f:
                f.write(json.dumps({"samples": samples, "exact": same}))
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    deadline = time.perf_counter() + 120
    status = None
    while time.perf_counter() < deadline:
        done, code = os.waitpid(pid, os.WNOHANG)
        if done:
            status = os.waitstatus_to_exitcode(code)
            break
        time.sleep(0.005)
    fork_wall = time.perf_counter() - t0
    if status is None:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    with os.fdopen(read_end) as f:
        report = json.loads(f.read() or "{}")
    samples = report.get("samples") or [float("nan")]
    rows.append({"workload": "fork after parallel calls",
                 "impl": f"child: {len(child_sets)} x 3 families",
                 "first_call_s": samples[0], "median_s": float(np.median(samples)),
                 "p90_s": float(np.max(samples)), "repeats": len(samples),
                 "child_exit": status, "child_wall_s": fork_wall,
                 "completes": status == 0 and bool(report.get("exact"))})
    return rows


# --- the parent ----------------------------------------------------------------------------------


def worker(name: str, params: dict[str, Any]) -> Any:
    if name == "small":
        return _small_worker(params["workload"], params["impl"], params["count"])
    if name == "fork_threads":
        return _fork_threads(params["quick"])
    raise ValueError(f"benchmarks.startup: no worker {name!r}")


def run(quick: bool = False) -> dict[str, Any]:
    results: list[dict[str, Any]] = []
    for workload, (impls, count, quick_count) in SMALL.items():
        for impl in impls:
            progress(f"small calls: {workload}, {impl} ...")
            try:
                row = run_worker("startup", "small", {"workload": workload, "impl": impl,
                                                      "count": quick_count if quick else count})
            except RuntimeError as exc:
                results.append(failed(workload, impl, exc))
                continue
            if "skipped" in row:
                progress(f"  skipped: {row['skipped']}")
                continue
            results.append({"workload": workload, "impl": impl, "calls": row["repeats"] + 1, **row})
    results += cold_rows(quick)
    progress("fork and threads ...")
    try:
        rows, said = run_worker("startup", "fork_threads", {"quick": quick}, timeout=600,
                                with_stderr=True)
        rows[-1]["stderr"] = said.strip()[-2000:]  # the threading layer's warnings, if any
        results += rows
    except RuntimeError as exc:
        results.append(failed("fork after parallel calls", "fork and threads worker", exc))
    return {"benchmark": "startup", "quick": quick, "results": results}


ITEM2, ITEM3 = "issue 11 item 2", "issue 11 item 3"
SAME_CARE = "issue 11 item 2 gives no figure: at least the peer's speed"


def targets(payload: dict[str, Any]) -> list[Target]:
    rows = payload["results"]
    out = [time_limit(rows, "box_iou (10,4)x(100,4)", "fastiou box_iou", 6e-6, source=ITEM2,
                      what="box_iou (10,4)x(100,4) float32, per call")]
    for workload, ours, peers in (
            ("boxes per image, 2000 images", "fastiou box_iou",
             ("numpy broadcasting", "torchvision box_iou")),
            ("box_iou (10,4)x(100,4)", "fastiou box_iou", ("numpy broadcasting",)),
            ("mask_iou 4x8 @96x128", "fastiou mask_iou", ("numpy float32 matmul",)),
            ("rle.iou 4x8 @96x128", "fastiou rle.iou", ("pycocotools iou",)),
            ("confusion_matrix 128x128", "fastiou confusion_matrix", ("numpy bincount",))):
        for peer in peers:
            out.append(ratio(rows, workload, peer, ours, 1.0, source=SAME_CARE,
                             what=f"{workload}: {peer} / {ours} per call"))
    out.append(time_limit(rows, "cold start, warm cache", "import fastiou + first box_iou", 0.25,
                          source=ITEM3, what="warm cache: import fastiou + first box_iou"))
    for r in rows:
        if r["workload"] == "cold start, empty cache":
            out.append(Target(f"empty cache: {r['impl']} (import apart: "
                              f"{fmt_time(r['import_median_s'])})", r["median_s"], 1.0, False, "s",
                              ITEM3))
    out.append(time_limit(rows, "cold start, warm cache", "python -m fastiou eval (sample data)",
                          1.0, source=ITEM3 + ", 'well under a second'",
                          what="fastiou eval on the sample data, whole process"))
    for workload in ("threads", "fork after parallel calls"):
        for r in rows:
            if r["workload"] == workload:
                said = (r.get("stderr") or "").splitlines()
                out.append(Target(f"{workload}: {r['impl']} completes with the exact answers",
                                  float(bool(r.get("completes"))), 1.0, True, "ok",
                                  "issue 10 item 5", f"time {fmt_time(r['median_s'])}"
                                  + (f"; stderr: {said[0]}" if said else "")))
    if not any(r["workload"] == "fork after parallel calls" for r in rows):
        out.append(Target("fork after parallel calls", None, 1.0, True, "ok", "issue 10 item 5"))
    return out


def cells(r: dict[str, Any]) -> dict[str, str]:
    extra = ""
    if "total_s" in r and r["total_s"] is not None:
        extra = f"total {fmt_time(r['total_s'])}"
    elif "process_wall_median_s" in r:
        extra = (f"import {fmt_time(r['import_median_s'])}, " if "import_median_s" in r else "") \
            + f"process {fmt_time(r['process_wall_median_s'])}"
        if r.get("scipy_imported"):
            extra += ", SciPy imported"
        if "kernels_loaded" in r:
            extra += f", kernels {r['kernels_loaded']} loaded / {r['kernels_compiled']} compiled"
    elif "completes" in r:
        extra = "completes" if r["completes"] else "FAILED"
    err = f"{r['max_abs_err']:.1e}" if "max_abs_err" in r else ""
    return {"extra": extra, "err": err}


def main(argv: list[str] | None = None) -> int:
    return cli("startup", __doc__, run, targets, [("extra", ""), ("err", "max |err|")], cells,
               argv, worker)


if __name__ == "__main__":
    sys.exit(main())
