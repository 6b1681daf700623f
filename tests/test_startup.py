"""Start-up: what ``import fastiou`` and the first calls load, with an empty and a filled Numba
cache.

Each check that depends on what a process has imported runs in a new interpreter. No timings are
asserted (benchmarks/startup.py measures them); what is checked is the work each step does: the
modules imported, the family modules built, the kernels compiled or loaded from the cache.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
ENGINE_ROOTS = ("numba", "llvmlite", "jax", "jaxlib", "cupy", "scipy", "dask")
FAMILIES = {"boxes", "semantic", "masks", "matching", "rle", "reductions", "ragged", "coco"}


def run_python(script: str, **env: str) -> dict:
    """Run ``script`` in a new interpreter from the repository root; its last line as JSON."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_")}
    full["PYTHONPATH"] = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    full.update(env)
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True,
                          text=True, timeout=600, env=full, cwd=ROOT)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr[-3000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_import_loads_no_engine():
    """``import fastiou`` imports NumPy and fastiou's own modules: no Numba, jax, CuPy, SciPy,
    Dask, and no backend package."""
    got = run_python(f"""
        import json, sys
        import fastiou
        print(json.dumps(sorted(m for m in sys.modules
                                if m.split(".")[0] in {ENGINE_ROOTS!r}
                                or m.startswith("fastiou.backends."))))
    """)
    assert got == []


# The first calls of two families, compared with float64 / bincount references written here.
FIRST_CALLS = """
    import json, sys
    import numpy as np
    import fastiou

    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 50, (2, 12, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(1, 30, (2, 12, 2))], axis=-1).astype(np.float32)
    a, b = boxes.astype(np.float64)
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=-1)
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])
    iou_ref = inter / (area(a)[:, None] + area(b)[None, :] - inter)
    iou = fastiou.box_iou(boxes[0], boxes[1])

    pred = rng.integers(0, 5, (40, 50), dtype=np.uint8)
    target = rng.integers(0, 5, (40, 50), dtype=np.uint8)
    target[rng.random(target.shape) < 0.1] = 255
    keep = target != 255
    cm_ref = np.bincount(target[keep].astype(np.int64) * 5 + pred[keep], minlength=25)
    cm = fastiou.confusion_matrix(pred, target, 5, ignore_index=255)

    from fastiou.backends.numba_cpu import semantic
    stats = semantic._count_range.stats
    print(json.dumps({
        "iou_ok": iou.dtype == np.float32 and bool(np.allclose(iou, iou_ref, rtol=1e-6, atol=0)),
        "cm_ok": cm.dtype == np.int64 and cm.tolist() == cm_ref.reshape(5, 5).tolist(),
        "families": sorted(m.rsplit(".", 1)[1] for m in sys.modules
                           if m.startswith("fastiou.backends.numba_cpu.")),
        "scipy_linalg": "scipy.linalg" in sys.modules,
        "count_parallel_built": "parallel" in vars(semantic._count),
        "cache_hits": sum(stats.cache_hits.values()),
        "cache_misses": sum(stats.cache_misses.values()),
    }))
"""


def test_first_calls_with_an_empty_then_a_filled_cache(tmp_path):
    """In a new interpreter whose Numba cache is an empty folder, the first box IoU and confusion
    matrix are right, build only their own family modules, make no parallel build for a small
    label map, and import no ``scipy.linalg``; a second interpreter finds the kernels in that
    cache."""
    cache = str(tmp_path / "numba-cache")
    for run, (hits, misses) in enumerate([(0, 1), (1, 0)]):
        got = run_python(FIRST_CALLS, NUMBA_CACHE_DIR=cache)
        assert got["iou_ok"] and got["cm_ok"], (run, got)
        # boxes and semantic, nothing of the other families
        assert set(got["families"]) & FAMILIES == {"boxes", "semantic"}, got["families"]
        assert not got["scipy_linalg"]
        assert not got["count_parallel_built"]
        assert (min(got["cache_hits"], 1), min(got["cache_misses"], 1)) == (hits, misses), got
    assert any(Path(cache).rglob("*.nbi"))  # the cache is where NUMBA_CACHE_DIR says


# What the process has compiled so far: per dispatcher name (Numba's own included), the
# number of overloads of each dispatcher of that name. Prepended to the scripts below.
COMPILED = """
    import gc
    from numba.core.registry import CPUDispatcher

    def compiled():
        out = {}
        for d in gc.get_objects():
            if isinstance(d, CPUDispatcher) and d.overloads:
                name = d.py_func.__name__
                out.setdefault(name, []).append(len(d.overloads))
        return out
"""

# The first calls of a new interpreter with an empty cache, and what each compiled.
WHAT_COMPILES = COMPILED + """
    import json, math
    import numpy as np
    import fastiou

    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 50, (2, 30, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(1, 30, (2, 30, 2))], axis=-1)
    a, b = boxes
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=-1)
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])
    iou_ref = inter / (area(a)[:, None] + area(b)[None, :] - inter)
    f32 = boxes.astype(np.float32)

    iou = fastiou.box_iou(f32[0], f32[1])
    plain = compiled()
    # Box 0 of each set scaled by a power of two past the extreme-box limit: IoU is unchanged,
    # and computed by the rescale kernel.
    big, _ = fastiou._formats.scale_limits(np.dtype(np.float32), 2)
    scale = np.float32(2.0 ** (math.ceil(math.log2(big)) + 2))
    x1, x2 = f32[0].copy(), f32[1].copy()
    x1[0] *= scale
    x2[0] *= scale
    extreme = fastiou.box_iou(x1, x2)
    expected = iou_ref.copy()
    expected[0, 1:] = expected[1:, 0] = 0  # the scaled boxes lie far from the others
    after_extreme = compiled()

    gts = [f32[0][:k] for k in (3, 7, 0, 30)]
    preds = [f32[1][:k] for k in (5, 0, 4, 30)]
    report = fastiou.evaluate(gts, preds, scores=[np.linspace(1, 0, len(p)) for p in preds])
    print(json.dumps({
        "iou_err": float(np.abs(iou - iou_ref).max()),
        "extreme_err": float(np.abs(extreme - expected).max()),
        "plain": plain, "after_extreme": after_extreme, "after_evaluate": compiled(),
        "objects": int(report.per_object["iou"].shape[0]),
    }))
"""


def test_first_calls_compile_only_what_they_use(tmp_path):
    """With an empty cache, the first float32 box IoU compiles each function once and not the
    extreme-box fallback (``_scaled``, the rescale kernel); the first extreme box compiles them
    and gives the right IoU; the first ``evaluate`` of small images compiles the greedy kernel
    without its merge sort, and no function of boxes, segmented IoU and matching is compiled for
    a second signature."""
    got = run_python(WHAT_COMPILES, NUMBA_CACHE_DIR=str(tmp_path / "numba-cache"))
    assert got["iou_err"] < 1e-6 and got["extreme_err"] < 1e-6 and got["objects"] == 40, got
    plain, extreme, evaluated = got["plain"], got["after_extreme"], got["after_evaluate"]
    assert "_pairwise_iou2_serial" in plain
    assert not {"_scaled", "_rescale_pairwise_iou2_serial"} & set(plain), sorted(plain)
    assert {"_scaled", "_rescale_pairwise_iou2_serial"} <= set(extreme), sorted(extreme)
    assert "_greedy_boxes2_small_serial" in evaluated, sorted(evaluated)
    assert not {"_sort_descending", "_greedy_boxes2_serial"} & set(evaluated), sorted(evaluated)
    # one signature per function (Numba's own ``impl`` functions aside: many share that name)
    twice = {name: counts for name, counts in evaluated.items()
             if name != "impl" and (len(counts) > 1 or max(counts) > 1)}
    assert twice == {}


def test_public_names_of_later_families_load_on_first_use():
    """``import fastiou`` leaves evaluation, COCO and RLE unimported; each public name of theirs
    loads its module on first use, and ``dir`` and ``from fastiou import *`` see every name."""
    got = run_python("""
        import json, sys
        import fastiou
        before = sorted(m for m in ("fastiou.evaluation", "fastiou.coco", "fastiou.rle",
                                    "fastiou.cli") if m in sys.modules)
        evaluate = fastiou.evaluate
        after = sorted(m for m in ("fastiou.evaluation", "fastiou.coco", "fastiou.rle")
                       if m in sys.modules)
        import fastiou.evaluation
        ns = {}
        exec("from fastiou import *", ns)
        try:
            fastiou.not_a_name
            missing = None
        except AttributeError as exc:
            missing = str(exc)
        print(json.dumps({
            "before": before, "after": after,
            "same": evaluate is fastiou.evaluation.evaluate and fastiou.rle is sys.modules[
                "fastiou.rle"] and fastiou.coco.evaluate is sys.modules["fastiou.coco"].evaluate,
            "all_in_dir": sorted(set(fastiou.__all__) - set(dir(fastiou))),
            "all_imported": sorted(set(fastiou.__all__) - set(ns)),
            "missing": missing,
        }))
    """)
    assert got == {"before": [], "after": ["fastiou.evaluation"], "same": True, "all_in_dir": [],
                   "all_imported": [],
                   "missing": "module 'fastiou' has no attribute 'not_a_name'"}, got


def test_numba_linear_algebra_still_works_after_fastiou():
    """fastiou keeps Numba's start from importing scipy.linalg; a user's own jitted ``np.dot``
    still compiles afterwards (importing SciPy then) and is right."""
    got = run_python("""
        import json, sys
        import numpy as np
        import fastiou
        fastiou.confusion_matrix(np.zeros(8, np.uint8), np.zeros(8, np.uint8), 2)
        before = "scipy.linalg" in sys.modules
        import numba
        dot = numba.njit(lambda x, y: np.dot(x, y))
        x, y = np.arange(12.0).reshape(3, 4), np.arange(8.0).reshape(4, 2)
        ok = bool(np.array_equal(dot(x, y), x @ y))  # compiled here
        print(json.dumps({"before": before, "after": "scipy.linalg" in sys.modules, "ok": ok}))
    """)
    assert got == {"before": False, "after": True, "ok": True}


def test_numba_engine_works_without_scipy():
    """SciPy is optional: where it cannot be imported, Numba records that there is no BLAS and
    the Numba engine works as before."""
    got = run_python("""
        import importlib.abc, json, sys
        import numpy as np

        class NoScipy(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "scipy" or name.startswith("scipy."):
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)
                return None

        sys.meta_path.insert(0, NoScipy())
        import fastiou
        pred, target = np.array([0, 1, 1], np.uint8), np.array([0, 1, 0], np.uint8)
        cm = fastiou.confusion_matrix(pred, target, 2)
        from numba.np import arraymath
        print(json.dumps({"cm": cm.tolist(), "blas": arraymath._HAVE_BLAS,
                          "scipy": any(m.split(".")[0] == "scipy" for m in sys.modules)}))
    """)
    assert got == {"cm": [[1, 1], [0, 1]], "blas": False, "scipy": False}


# --------------------------------------------------------------------------------------------
# Family modules resolve on first use, on every engine


COMMON_NAMES = ("box_pair", "mask_pair", "pack_masks", "mask_boxes", "match", "semantic",
                "reductions", "ragged")


@pytest.mark.parametrize("package", ["numba_cpu", "jax_xla", "cupy_cuda"])
def test_backend_names_resolve(package):
    """What the public modules reach through ``engine.<name>`` exists on every engine's package
    (the Numba one imports its family modules on first use)."""
    import importlib
    import types

    module = importlib.import_module(f"fastiou.backends.{package}")
    for name in COMMON_NAMES:
        value = getattr(module, name)
        assert callable(value) or isinstance(value, types.ModuleType), name
    if package == "numba_cpu":
        for name in ("rle", "coco", "matching", "boxes", "masks"):
            assert getattr(module, name) is sys.modules[f"{module.__name__}.{name}"]
        assert module.box_pair is module.boxes.box_pair
        assert module.match is module.matching.match
        assert module.pack_masks is module.masks.pack_masks
        assert FAMILIES <= set(dir(module))


def test_unknown_backend_attribute_is_an_attribute_error():
    from fastiou.backends import numba_cpu

    with pytest.raises(AttributeError, match="fastiou.backends.numba_cpu' has no attribute 'nope'"):
        numba_cpu.nope  # noqa: B018
    assert not hasattr(numba_cpu, "box_iou")  # a public name, not a backend one


def _twin_source(x):  # a module-level function, as the family modules' kernels are
    return x + 1


def test_parallel_kernel_builds_each_twin_on_first_use():
    """A ParallelKernel makes no dispatcher until one is needed, then exactly that one."""
    from fastiou.backends.numba_cpu import ParallelKernel

    k = ParallelKernel(_twin_source)
    assert "parallel" not in vars(k) and "serial" not in vars(k)
    assert k.py_func is _twin_source  # forwarded to the parallel dispatcher, built for it
    assert "parallel" in vars(k) and "serial" not in vars(k)
    assert k.serial.py_func.__name__ == "_twin_source_serial"
    assert k.serial is k.serial and k.parallel is k.parallel
    with pytest.raises(AttributeError):
        k.not_an_attribute  # noqa: B018


def test_serial_and_parallel_make_each_dispatcher_on_first_use():
    """The serial build of ``serial_and_parallel`` is made on its first call, the parallel one on
    its own; attributes reach the serial dispatcher."""
    from fastiou.backends.numba_cpu import serial_and_parallel

    serial, parallel = serial_and_parallel(_twin_source)
    assert "serial" not in vars(parallel) and "parallel" not in vars(parallel)
    assert serial(np.int64(2)) == 3
    assert "serial" in vars(parallel) and "parallel" not in vars(parallel)
    assert serial.py_func.__name__ == "_twin_source_serial"
    assert len(serial.overloads) == 1
    with pytest.raises(AttributeError):
        serial.not_an_attribute  # noqa: B018


def test_label_tables_are_shared_and_not_written():
    """The 256-entry label tables of one-byte maps are cached per (dtypes, options); counting
    leaves them as they were."""
    import fastiou
    from fastiou import _validate
    from fastiou.backends.numba_cpu import semantic

    pred = np.array([[0, 1, 2, 255]], np.uint8)
    target = np.array([[0, 1, 255, 3]], np.uint8)
    spec = _validate.label_spec("t", pred, target, 3, 255, "ignore")
    rows, cols = semantic._tables(pred.dtype, target.dtype, spec)
    rows_before, cols_before = rows.copy(), cols.copy()
    got = fastiou.confusion_matrix(pred, target, 3, ignore_index=255, out_of_range="ignore")
    np.testing.assert_array_equal(got, [[1, 0, 0], [0, 1, 0], [0, 0, 0]])
    assert semantic._tables(pred.dtype, target.dtype, spec)[0] is rows
    np.testing.assert_array_equal(rows, rows_before)
    np.testing.assert_array_equal(cols, cols_before)
    # the table of a target byte: row offset (C + 1) * label, C for ignored, C + 1 outside
    np.testing.assert_array_equal(rows[[0, 2, 3, 255]], np.array([0, 2, 4, 3]) * 4)
    np.testing.assert_array_equal(cols[[0, 2, 3, 255]], [0, 2, 3, 3])


# The first mask and RLE calls of a new interpreter with an empty cache: what each call compiled
# that the calls before it had not (per dispatcher name, its overloads), and its result.
MASK_RLE_COMPILES = COMPILED + """
    import json
    import numpy as np
    import fastiou

    def overloads():
        return {name: sum(counts) for name, counts in compiled().items()}

    def iou_reference(a, b):  # dense float64 IoU, union 0 -> 0
        x = a.reshape(len(a), -1).astype(np.float64)
        y = b.reshape(len(b), -1).astype(np.float64)
        inter = x @ y.T
        union = x.sum(1)[:, None] + y.sum(1)[None, :] - inter
        return np.divide(inter, union, out=np.zeros_like(inter), where=union != 0)

    def uncompressed(mask):  # column-major runs, background first
        flat = mask.T.ravel()
        bounds = np.concatenate([[0], np.flatnonzero(flat[1:] != flat[:-1]) + 1, [flat.size]])
        runs = ([0] if flat[0] else []) + np.diff(bounds).tolist()
        return {"size": list(mask.shape), "counts": runs}

    rng = np.random.default_rng(3)
    a, b = rng.random((2, 5, 40, 70)) < 0.3
    b[0] = a[0]
    b[1] = False
    tall_a, tall_b = rng.random((2, 3, 600, 9)) < 0.4
    expected, tall_expected = iou_reference(a, b), iou_reference(tall_a, tall_b)
    steps, errors, seen = [], {}, overloads()

    def step(name, got, want):
        global seen
        now = overloads()
        steps.append([name, {k: v - seen.get(k, 0) for k, v in now.items()
                             if v != seen.get(k, 0)}])
        errors[name] = float(np.abs(np.asarray(got, np.float64) - want).max())
        seen = now

    step("mask_iou bool", fastiou.mask_iou(a, b), expected)
    step("mask_iou uint8", fastiou.mask_iou(a.view(np.uint8), b.view(np.uint8)), expected)
    dt, gt = fastiou.rle.encode(a), fastiou.rle.encode(b)
    from pycocotools import mask as pm  # its strings, byte for byte
    coco = pm.encode(np.asfortranarray(np.concatenate([a, b]).transpose(1, 2, 0).astype(np.uint8)))
    step("rle.encode", float(dt + gt != [{"size": [40, 70], "counts": r["counts"]} for r in coco]),
         0.0)
    step("rle.decode", fastiou.rle.decode(dt), a)
    step("rle.iou strings", fastiou.rle.iou(dt, gt), expected)
    step("rle.iou counts", fastiou.rle.iou([uncompressed(m) for m in a],
                                           [uncompressed(m) for m in b]), expected)
    step("rle.iou strings, tall", fastiou.rle.iou(fastiou.rle.encode(tall_a),
                                                  fastiou.rle.encode(tall_b)), tall_expected)
    print(json.dumps({"steps": steps, "errors": errors}))
"""


def test_first_mask_and_rle_calls_compile_only_what_they_use(tmp_path):
    """With an empty cache, the first ``mask_iou`` (bool, then uint8), ``rle.encode``,
    ``rle.decode`` and ``rle.iou`` (compressed strings, then uncompressed counts) give the dense
    float64 reference's values and each compiles its own kernels, once each, and nothing more:
    none of Numba's ``min``/``max`` overloads or error formatting, no second signature, and the
    tall-image drawing and counting only when an image taller than 512 rows comes."""
    got = run_python(MASK_RLE_COMPILES, NUMBA_CACHE_DIR=str(tmp_path / "numba-cache"))
    assert max(got["errors"].values()) < 1e-6, got["errors"]
    steps = dict(got["steps"])
    assert list(steps) == ["mask_iou bool", "mask_iou uint8", "rle.encode", "rle.decode",
                           "rle.iou strings", "rle.iou counts", "rle.iou strings, tall"]
    once = dict.fromkeys
    assert steps == {
        "mask_iou bool": once(["_area", "_count", "_pack_rows", "_pack_span", "_pair_small"], 1),
        "mask_iou uint8": {},  # the same kernels, the same signature
        "rle.encode": once(["_changes", "_encode_count_serial", "_encode_write_serial",
                            "_pack_columns", "_put"], 1),
        "rle.decode": once(["_decode_all", "_decode_serial", "_decode_strings",
                            "_string_counts"], 1),
        "rle.iou strings": once(["_draw", "_iou_bits_serial", "_split_joined"], 1),  # + _count
        "rle.iou counts": once(["_draw_runs", "_iou_bits_runs_serial"], 1),  # the bits, as strings
        "rle.iou strings, tall": once(["_column", "_draw_tall", "_iou_bits_tall_serial",
                                       "_shared"], 1),
    }, got["steps"]
