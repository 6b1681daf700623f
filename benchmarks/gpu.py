"""Everything that needs an NVIDIA GPU, in one command: the GPU tests and the CUDA benchmarks.

    python -m benchmarks.gpu                 # tests + benchmarks, JSON in benchmarks/results/gpu.json
    python -m benchmarks.gpu --skip-tests    # benchmarks only
    python -m benchmarks.gpu --quick         # smaller sizes (a smoke test)

1. Runs pytest on the GPU subset of the suite: the ``cupy`` engine and JAX (whatever device JAX has;
   the report says which), in a subprocess, with a time limit.
2. Times every CUDA op registered below (``@gpu_benchmark``) on CuPy arrays: median GPU time over
   repeats (CUDA events, ``cupyx.profiler.benchmark``), items per second, effective bandwidth, and
   the ratio of the median to the memory-bandwidth floor (inputs read once + output written once at
   the device's peak bandwidth, from its memory clock and bus width). Each result is checked
   against the float64 reference of ``tests/reference.py`` on a slice.
3. Prints one short table and writes every number to JSON. Exit status: 0 when every test passed
   and every result is correct, 1 otherwise, 2 where there is no usable GPU.

Adding an op: write a function ``(cupy) -> Case`` decorated with ``@gpu_benchmark(name, covers=...)``
here or in a module ``benchmarks/gpu_<family>.py`` (imported automatically); ``covers`` names the
kernels (prefixes of name expressions in ``cupy_cuda.KERNELS``) that the op launches, and the test
suite checks that every kernel is covered by some benchmark. Finishes in well under 8 minutes on an
H100 (the tests take most of it).
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ._common import fmt_time, machine, print_table, write_json

ROOT = Path(__file__).resolve().parent.parent
TESTS_TIMEOUT_S = 330
BENCH_BUDGET_S = 2.5  # per op, for the timed repeats (at most 200)


# ------------------------------------------------------------------------------------------------
# Registry


@dataclass
class Case:
    """One benchmark, its inputs already on the device."""

    run: Callable[[], Any]                     # the op (returns a CuPy array)
    check: Callable[[Any], str | None]         # None when correct, otherwise what is wrong
    bytes_moved: int                           # inputs read once + outputs written once
    items: int                                 # pairs (or pixels) computed
    unit: str = "pairs"
    shape: str = ""
    dtype: str = "float32"


@dataclass
class Benchmark:
    name: str
    make: Callable[[Any, bool], Case]          # (cupy, quick) -> Case
    covers: tuple[str, ...] = field(default_factory=tuple)


BENCHMARKS: dict[str, Benchmark] = {}


def gpu_benchmark(name: str, *, covers: tuple[str, ...]) -> Callable[[Callable[[Any, bool], Case]],
                                                                    Callable[[Any, bool], Case]]:
    """Register ``make(cupy, quick) -> Case`` as the benchmark ``name``."""

    def register(make: Callable[[Any, bool], Case]) -> Callable[[Any, bool], Case]:
        if name in BENCHMARKS:
            raise ValueError(f"benchmark {name!r} registered twice")
        BENCHMARKS[name] = Benchmark(name, make, tuple(covers))
        return make

    return register


def load_benchmarks() -> dict[str, Benchmark]:
    """This module's benchmarks plus those of every ``benchmarks/gpu_*.py``."""
    for module in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if module.name.startswith("gpu_"):
            importlib.import_module(f"{__package__}.{module.name}")
    return BENCHMARKS


def _reference() -> Any:
    """tests/reference.py, the float64 oracle of the test suite."""
    sys.path.insert(0, str(ROOT / "tests"))
    import reference

    return reference


def _compare(got: Any, expected: np.ndarray, rtol: float, atol: float) -> str | None:
    got = np.asarray(got, dtype=np.float64)
    if got.shape != expected.shape:
        return f"shape {got.shape}, expected {expected.shape}"
    bad = ~np.isclose(got, expected, rtol=rtol, atol=atol, equal_nan=True)
    if bad.any():
        i = np.unravel_index(int(np.flatnonzero(bad)[0]), bad.shape)
        return f"{int(bad.sum())} values differ, first at {i}: {got[i]!r} vs {expected[i]!r}"
    return None


# ------------------------------------------------------------------------------------------------
# Box ops

_BOX_OPS = {"iou": "box_iou", "giou": "generalized_box_iou", "diou": "distance_box_iou",
            "ciou": "complete_box_iou", "ioa": "box_ioa"}


def _boxes(n: int, dims: int, rng: np.random.Generator) -> np.ndarray:
    size = rng.uniform(5, 200, (n, dims))
    lo = rng.uniform(0, 1000, (n, dims))
    return np.concatenate([lo, lo + size], axis=1)


def _box_case(cp: Any, op: str, *, n: int, m: int, dims: int = 2, dtype: Any = np.float32,
              aligned: bool = False) -> Case:
    import fastiou

    fn = getattr(fastiou, _BOX_OPS[op])
    rng = np.random.default_rng(0)
    a, b = _boxes(n, dims, rng), _boxes(m, dims, rng)
    if not aligned:
        b[: m // 2] = a[rng.integers(0, n, m // 2)] + rng.normal(0, 4, (m // 2, 2 * dims))
    a_dev, b_dev = cp.asarray(a.astype(dtype)), cp.asarray(b.astype(dtype))
    itemsize = np.dtype(dtype).itemsize
    out_items = n if aligned else n * m
    tol = dict(rtol=1e-4, atol=1e-5) if np.dtype(dtype) == np.float32 else dict(rtol=1e-10, atol=1e-12)

    def check(result: Any) -> str | None:
        ref = _reference()
        a32, b32 = a.astype(dtype).astype(np.float64), b.astype(dtype).astype(np.float64)
        if aligned:
            k = min(n, 2048)
            return _compare(cp.asnumpy(result[:k]), ref.pairwise(op, a32[:k], b32[:k], aligned=True), **tol)
        rows, cols = min(n, 8), min(m, 512)
        return _compare(cp.asnumpy(result[:rows, :cols]), ref.pairwise(op, a32[:rows], b32[:cols]), **tol)

    return Case(
        run=lambda: fn(a_dev, b_dev, aligned=aligned),
        check=check,
        bytes_moved=(n + m) * 2 * dims * itemsize + out_items * itemsize,
        items=out_items,
        shape=f"{n} pairs" if aligned else f"{n}x{m}",
        dtype=np.dtype(dtype).name + (" 3D" if dims == 3 else ""),
    )


def _register_boxes() -> None:
    full, quick = (4000, 4000), (500, 500)
    pairwise = [("iou", 2, np.float32), ("iou", 2, np.float64), ("giou", 2, np.float32),
                ("diou", 2, np.float32), ("ciou", 2, np.float32), ("ioa", 2, np.float32),
                ("iou", 3, np.float32), ("giou", 3, np.float64)]
    for op, dims, dtype in pairwise:
        name = f"{_BOX_OPS[op]} {'3D ' if dims == 3 else ''}{np.dtype(dtype).name}"

        def make(cp: Any, q: bool, op: str = op, dims: int = dims, dtype: Any = dtype) -> Case:
            n, m = quick if q else full
            return _box_case(cp, op, n=n, m=m, dims=dims, dtype=dtype)

        gpu_benchmark(name, covers=("fastiou::box_pairwise",))(make)
    for op in ("iou", "giou", "ciou"):
        def make_aligned(cp: Any, q: bool, op: str = op) -> Case:
            k = 100_000 if q else 1_000_000
            return _box_case(cp, op, n=k, m=k, aligned=True)

        gpu_benchmark(f"{_BOX_OPS[op]} aligned float32", covers=("fastiou::box_aligned",))(make_aligned)


_register_boxes()


# ------------------------------------------------------------------------------------------------
# Mask and semantic ops (references: NumPy, from tests/cuda_harness/checks_masks.py and bincount)


def _mask_refs() -> Any:
    sys.path.insert(0, str(ROOT / "tests"))
    from cuda_harness import checks_masks

    return checks_masks


def _blobs(rng: np.random.Generator, n: int, h: int, w: int) -> np.ndarray:
    """n masks of rectangles with ragged noise: realistic foreground fractions, not uniform noise."""
    masks = np.zeros((n, h, w), dtype=bool)
    for i in range(n):
        y0, x0 = rng.integers(0, h // 2), rng.integers(0, w // 2)
        masks[i, y0:y0 + rng.integers(8, h // 2), x0:x0 + rng.integers(8, w // 2)] = True
    masks ^= rng.random((n, h, w)) < 0.02
    return masks


@gpu_benchmark("mask_iou dense bool", covers=("fastiou::mask_pack", "fastiou::mask_count",
                                               "fastiou::mask_pairwise"))
def _mask_iou_dense(cp: Any, quick: bool) -> Case:
    import fastiou

    n, h, w = (40, 256, 256) if quick else (200, 512, 512)
    rng = np.random.default_rng(0)
    a, b = _blobs(rng, n, h, w), _blobs(rng, n, h, w)
    a_dev, b_dev = cp.asarray(a), cp.asarray(b)

    def check(result: Any) -> str | None:
        ref = _mask_refs().pairwise_reference(a[:8], b, "iou", False, 0.0)
        return _compare(cp.asnumpy(result[:8]), ref, rtol=1e-6, atol=1e-7)

    return Case(run=lambda: fastiou.mask_iou(a_dev, b_dev), check=check,
                bytes_moved=2 * n * h * w + n * n * 4, items=n * n, shape=f"{n}x{n} of {h}x{w}",
                dtype="bool")


@gpu_benchmark("mask_iou packed", covers=("fastiou::mask_pairwise",))
def _mask_iou_packed(cp: Any, quick: bool) -> Case:
    import fastiou

    n, h, w = (100, 256, 256) if quick else (1000, 256, 256)
    rng = np.random.default_rng(1)
    a = _blobs(rng, n, h, w)
    packed = fastiou.pack_masks(cp.asarray(a))
    words = packed.words.size * 8

    def check(result: Any) -> str | None:
        ref = _mask_refs().pairwise_reference(a[:4], a, "iou", False, 0.0)
        return _compare(cp.asnumpy(result[:4]), ref, rtol=1e-6, atol=1e-7)

    return Case(run=lambda: fastiou.mask_iou(packed, packed), check=check,
                bytes_moved=2 * words + n * n * 4, items=n * n, shape=f"{n}x{n} of {h}x{w}",
                dtype="packed")


@gpu_benchmark("mask_ioa aligned uint8", covers=("fastiou::mask_aligned", "fastiou::mask_pack"))
def _mask_aligned(cp: Any, quick: bool) -> Case:
    import fastiou

    n, h, w = (100, 128, 128) if quick else (2000, 256, 256)
    rng = np.random.default_rng(2)
    a, b = _blobs(rng, n, h, w).astype(np.uint8), _blobs(rng, n, h, w).astype(np.uint8)
    a_dev, b_dev = cp.asarray(a), cp.asarray(b)

    def check(result: Any) -> str | None:
        ref = _mask_refs().pairwise_reference(a[:64] != 0, b[:64] != 0, "ioa", True, 0.0)
        return _compare(cp.asnumpy(result[:64]), ref, rtol=1e-6, atol=1e-7)

    return Case(run=lambda: fastiou.mask_ioa(a_dev, b_dev, aligned=True), check=check,
                bytes_moved=2 * n * h * w + n * 4, items=n, unit="pairs", shape=f"{n} of {h}x{w}",
                dtype="uint8")


@gpu_benchmark("pack_masks float32 threshold", covers=("fastiou::mask_pack", "fastiou::mask_count"))
def _pack_float(cp: Any, quick: bool) -> Case:
    import fastiou

    n, h, w = (20, 256, 256) if quick else (200, 512, 512)
    rng = np.random.default_rng(3)
    x = rng.random((n, h, w), dtype=np.float32)
    x_dev = cp.asarray(x)

    def check(result: Any) -> str | None:
        refs = _mask_refs()
        words = refs.packed_reference(x[:4] >= 0.5)
        got = cp.asnumpy(result.words[:4])
        if not np.array_equal(got, words):
            return "packed words differ from np.packbits"
        return _compare(cp.asnumpy(result.area[:4]), (x[:4] >= 0.5).sum(axis=(1, 2)).astype(float), 0, 0)

    return Case(run=lambda: fastiou.pack_masks(x_dev, threshold=0.5), check=check,
                bytes_moved=n * h * w * 4 + n * h * -(-w // 64) * 8 + n * 8, items=n * h * w,
                unit="pixels", shape=f"{n}x{h}x{w}", dtype="float32")


@gpu_benchmark("masks_to_boxes bool", covers=("fastiou::mask_boxes", "fastiou::mask_pack"))
def _mask_boxes(cp: Any, quick: bool) -> Case:
    import fastiou

    n, h, w = (40, 256, 256) if quick else (500, 512, 512)
    a = _blobs(np.random.default_rng(4), n, h, w)
    a_dev = cp.asarray(a)

    def check(result: Any) -> str | None:
        return _compare(cp.asnumpy(result[:16]), _mask_refs().boxes_reference(a[:16]), 0, 0)

    return Case(run=lambda: fastiou.masks_to_boxes(a_dev), check=check,
                bytes_moved=n * h * w + n * 16, items=n * h * w, unit="pixels",
                shape=f"{n}x{h}x{w}", dtype="bool")


@gpu_benchmark("coco segm dense masks", covers=("fastiou::mask_segment_counts",
                                                 "fastiou::mask_pack", "fastiou::mask_count"))
def _coco_dense(cp: Any, quick: bool) -> Case:
    """End to end ``coco.evaluate`` of per-image dense masks: on the GPU the masks are packed
    and every (object, detection) intersection counted there; checked bit for bit against the
    host evaluation of the same NumPy masks."""
    from fastiou import coco, rle

    from . import coco_data

    images = 20 if quick else 200
    gt, results = coco_data.make(5, images, segm=True, categories=20)
    size = {im["id"]: (im["height"], im["width"]) for im in gt["images"]}
    dense: dict[int, dict[str, np.ndarray]] = {}
    for r in results:
        entry = dense.setdefault(r["image_id"], {"masks": [], "scores": [], "labels": []})
        entry["masks"].append(rle.decode(r["segmentation"]))
        entry["scores"].append(r["score"])
        entry["labels"].append(r["category_id"])
    host = {k: {"masks": np.array(v["masks"], dtype=bool).reshape(-1, *size[k]),
                "scores": np.array(v["scores"]), "labels": np.array(v["labels"])}
            for k, v in dense.items()}
    on_device = {k: {name: cp.asarray(a) for name, a in v.items()} for k, v in host.items()}
    pixels = sum(v["masks"].size for v in host.values())

    def check(result: Any) -> str | None:
        expected = coco.evaluate(gt, host, "segm")
        for name in ("precision", "recall", "stats"):
            if not np.array_equal(getattr(result, name), getattr(expected, name)):
                return f"{name} differs from the host evaluation of the same masks"
        return None

    return Case(run=lambda: coco.evaluate(gt, on_device, "segm"), check=check,
                bytes_moved=pixels, items=pixels, unit="pixels",
                shape=f"{images} images, {len(results)} masks", dtype="bool")


def _confusion_case(cp: Any, quick: bool, classes: int, dtype: Any) -> Case:
    import fastiou

    shape = (4, 256, 256) if quick else (16, 1024, 1024)
    rng = np.random.default_rng(5)
    target = rng.integers(0, classes, shape).astype(dtype)
    pred = np.where(rng.random(shape) < 0.8, target, rng.integers(0, classes, shape)).astype(dtype)
    target[:, :8] = 255
    p_dev, t_dev = cp.asarray(pred), cp.asarray(target)

    def check(result: Any) -> str | None:
        keep = target != 255
        t, p = target[keep].astype(np.int64), pred[keep].astype(np.int64)
        expected = np.bincount(t * classes + p, minlength=classes**2).reshape(classes, classes)
        return None if np.array_equal(cp.asnumpy(result), expected) else "counts differ from np.bincount"

    pixels = int(np.prod(shape))
    return Case(run=lambda: fastiou.confusion_matrix(p_dev, t_dev, classes, ignore_index=255),
                check=check, bytes_moved=2 * pixels * np.dtype(dtype).itemsize + classes**2 * 8,
                items=pixels, unit="pixels", shape="x".join(map(str, shape)),
                dtype=np.dtype(dtype).name)


@gpu_benchmark("confusion_matrix 21 classes", covers=("fastiou::confusion_counts",))
def _confusion_voc(cp: Any, quick: bool) -> Case:
    return _confusion_case(cp, quick, 21, np.uint8)


@gpu_benchmark("confusion_matrix 150 classes", covers=("fastiou::confusion_counts",))
def _confusion_ade(cp: Any, quick: bool) -> Case:
    return _confusion_case(cp, quick, 150, np.int32)


# ------------------------------------------------------------------------------------------------
# Device, tests, timing


def gpu_unavailable() -> str | None:
    """None when CuPy sees a CUDA device, otherwise why not."""
    try:
        import cupy
    except ImportError:
        return "CuPy is not installed (pip install 'fastiou[cuda12]' or 'fastiou[cuda13]')"
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return "CuPy sees no CUDA device"
    except Exception as exc:  # no driver, no device
        return f"CuPy cannot reach a CUDA device ({exc})"
    return None


def peak_bandwidth(attributes: dict[str, Any]) -> float:
    """Bytes per second: memory clock (kHz) x 2 (double data rate) x bus width (bits) / 8."""
    return 2.0 * float(attributes["memoryClockRate"]) * 1e3 * float(attributes["memoryBusWidth"]) / 8


def device_info(cp: Any) -> dict[str, Any]:
    dev = cp.cuda.Device()
    props = cp.cuda.runtime.getDeviceProperties(dev.id)
    attrs = {key: props.get(key) for key in ("memoryClockRate", "memoryBusWidth")}
    if not all(attrs.values()):  # CUDA 13 dropped them from cudaDeviceProp; the attributes remain
        extra = dev.attributes
        attrs = {"memoryClockRate": extra["MemoryClockRate"],
                 "memoryBusWidth": extra["GlobalMemoryBusWidth"]}
    return {
        "name": props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"]),
        "compute_capability": dev.compute_capability,
        "memory_bytes": int(props["totalGlobalMem"]),
        **attrs,
        "peak_bandwidth_Bps": peak_bandwidth(attrs),
        "cupy": cp.__version__,
        "cuda_runtime": cp.cuda.runtime.runtimeGetVersion(),
        "driver": cp.cuda.runtime.driverGetVersion(),
    }


def run_tests(timeout: float = TESTS_TIMEOUT_S) -> dict[str, Any]:
    """pytest on the cupy engine and on JAX, in a subprocess; counts from its JUnit XML."""
    env = dict(os.environ, XLA_PYTHON_CLIENT_PREALLOCATE="false")
    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / "junit.xml"
        cmd = [sys.executable, "-m", "pytest", "tests", "-q", "-p", "no:cacheprovider",
               "-k", "cupy or jax or gpu", f"--junitxml={xml}"]
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
            output, rc = proc.stdout + proc.stderr, proc.returncode
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout or b""
            output = out.decode() if isinstance(out, bytes) else out
            rc = "timeout"
        result: dict[str, Any] = {"command": " ".join(cmd), "returncode": rc,
                                  "seconds": time.perf_counter() - t0, "tail": output[-4000:]}
        if xml.exists():
            suite = ElementTree.parse(xml).getroot()
            suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
            for key in ("tests", "failures", "errors", "skipped"):
                result[key] = int(suite.get(key, 0)) if suite is not None else 0
    try:
        probe = subprocess.run([sys.executable, "-c", "import jax; print(jax.default_backend())"],
                               env=env, capture_output=True, text=True, timeout=120)
        result["jax_backend"] = probe.stdout.strip() or probe.stderr.strip()[-200:]
    except Exception as exc:
        result["jax_backend"] = f"unavailable ({exc})"
    result["passed"] = rc == 0
    return result


def time_case(cp: Any, case: Case, budget: float = BENCH_BUDGET_S) -> dict[str, Any]:
    from cupyx.profiler import benchmark

    perf = benchmark(case.run, n_repeat=200, n_warmup=3, max_duration=budget)
    gpu = np.asarray(perf.gpu_times).ravel()
    return {"median_s": float(np.median(gpu)), "min_s": float(gpu.min()),
            "max_s": float(gpu.max()), "repeats": int(gpu.size),
            "cpu_median_s": float(np.median(np.asarray(perf.cpu_times)))}


def run_benchmarks(cp: Any, peak: float, quick: bool, only: str | None = None) -> list[dict[str, Any]]:
    rows = []
    for bench in load_benchmarks().values():
        if only and only not in bench.name:
            continue
        row: dict[str, Any] = {"op": bench.name, "covers": list(bench.covers)}
        try:
            case = bench.make(cp, quick)
            row.update(shape=case.shape, dtype=case.dtype, items=case.items, unit=case.unit,
                       bytes_moved=case.bytes_moved)
            t0 = time.perf_counter()
            result = case.run()  # the first call also compiles the kernels (CuPy caches them)
            cp.cuda.Device().synchronize()
            row["first_call_s"] = time.perf_counter() - t0
            problem = case.check(result)
            del result
            row["correct"] = problem is None
            row["problem"] = problem
            row.update(time_case(cp, case))
            t = row["median_s"]
            row["items_per_s"] = case.items / t
            row["bandwidth_Bps"] = case.bytes_moved / t
            row["floor_s"] = case.bytes_moved / peak
            row["x_floor"] = t / row["floor_s"]
            del case
            cp.get_default_memory_pool().free_all_blocks()
        except Exception as exc:  # one broken op must not hide the others
            row["correct"] = False
            row["problem"] = f"{type(exc).__name__}: {exc}"
        rows.append(row)
    return rows


def _rate(row: dict[str, Any]) -> str:
    if "items_per_s" not in row:
        return "-"
    rate, unit = row["items_per_s"], row.get("unit", "items")
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if rate >= scale:
            return f"{rate / scale:.2f} {prefix}{unit}/s"
    return f"{rate:.0f} {unit}/s"


def table(rows: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [
        {
            "op": r["op"], "shape": str(r.get("shape", "")), "dtype": str(r.get("dtype", "")),
            "correct": "yes" if r.get("correct") else f"NO: {r.get('problem')}"[:60],
            "median": fmt_time(r.get("median_s")), "rate": _rate(r),
            "GB/s": f"{r['bandwidth_Bps'] / 1e9:.0f}" if "bandwidth_Bps" in r else "-",
            "x floor": f"{r['x_floor']:.2f}" if "x_floor" in r else "-",
        }
        for r in rows
    ]


COLUMNS = [("op", "op"), ("shape", "shape"), ("dtype", "dtype"), ("correct", "correct"),
           ("median", "median"), ("rate", "rate"), ("GB/s", "GB/s"), ("x floor", "x floor")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    parser.add_argument("--skip-tests", action="store_true", help="benchmarks only")
    parser.add_argument("--only", help="only the benchmarks whose name contains this")
    parser.add_argument("--json", help="output path (default benchmarks/results/gpu.json)")
    args = parser.parse_args(argv)

    reason = gpu_unavailable()
    if reason is not None:
        print(f"benchmarks.gpu: needs an NVIDIA GPU with CuPy: {reason}", file=sys.stderr)
        return 2
    import cupy as cp

    started = time.perf_counter()
    info = device_info(cp)
    print(f"{info['name']} (sm_{info['compute_capability']}), peak memory bandwidth "
          f"{info['peak_bandwidth_Bps'] / 1e9:.0f} GB/s, CuPy {info['cupy']}")
    tests = None
    if not args.skip_tests:
        print("running the GPU tests (cupy engine, JAX) ...", flush=True)
        tests = run_tests()
        print(f"tests: {'passed' if tests['passed'] else 'FAILED'} ({tests.get('tests', '?')} run, "
              f"{tests.get('failures', '?')} failed, {tests.get('errors', '?')} errors, "
              f"{tests.get('skipped', '?')} skipped; JAX on {tests.get('jax_backend')}) "
              f"in {tests['seconds']:.0f} s", flush=True)
        if not tests["passed"]:
            print(tests["tail"][-2000:])
    rows = run_benchmarks(cp, info["peak_bandwidth_Bps"], args.quick, args.only)
    print()
    print_table(table(rows), COLUMNS)
    payload = {"device": info, "machine": machine(), "quick": args.quick, "tests": tests,
               "benchmarks": rows, "seconds": time.perf_counter() - started}
    out = write_json("gpu-quick" if args.quick else "gpu", payload, args.json)
    print(f"\nfull results: {out} ({payload['seconds']:.0f} s)")
    ok = all(r.get("correct") for r in rows) and (tests is None or tests["passed"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
