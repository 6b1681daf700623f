"""Fork and threads: every family of the Numba engine, on every Numba threading layer.

Each check runs in a subprocess with a timeout, so that a child killed by GNU OpenMP or a process
aborted by the workqueue layer fails the test instead of the run. The size thresholds under which
the engine stays on the calling thread are lowered in the subprocess, so that small inputs reach
the parallel kernels; the script counts the parallel launches to prove it.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

import fastiou

ROOT = Path(__file__).resolve().parent.parent

# The families, their plain float64 / NumPy references, and a counter of parallel launches.
COMMON = textwrap.dedent(
    """
    import json, os, sys, threading
    import numpy as np
    import fastiou
    from fastiou.backends import numba_cpu
    from fastiou.backends.numba_cpu import boxes as nb_boxes, masks as nb_masks, rle as nb_rle
    from fastiou.backends.numba_cpu import semantic as nb_sem

    nb_boxes.PARALLEL_PAIRS = 1  # small inputs take the parallel kernels
    nb_masks.PARALLEL_WORK = 1
    nb_rle.PARALLEL_WORK = 1
    nb_rle.PARALLEL_WORDS = 1  # and so does rle.iou of compressed strings
    nb_sem._MIN_TASK = 1024

    launches = {}
    _call = numba_cpu.ParallelKernel.__call__

    def counting(self, *args, **kwargs):  # counts may race between threads: read as "any"
        name = self.parallel.py_func.__name__
        launches[name] = launches.get(name, 0) + 1
        return _call(self, *args, **kwargs)

    numba_cpu.ParallelKernel.__call__ = counting

    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 50, (2, 120, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(1, 30, (2, 120, 2))], axis=-1)
    masks = rng.random((2, 24, 40, 56)) < 0.4
    sparse = np.zeros((2, 3, 1024, 1100), dtype=bool)  # a few small masks in a large image
    for k in range(3):
        sparse[0, k, 10 + 90 * k:40 + 90 * k, 30:60] = True
        sparse[1, k, 20 + 90 * k:50 + 90 * k, 40:75] = True
    C = 5
    pred = rng.integers(0, C, (4, 64, 64), dtype=np.uint8)
    target = rng.integers(0, C, (4, 64, 64), dtype=np.uint8)

    def family_boxes():
        return (fastiou.box_iou(boxes[0], boxes[1]),
                fastiou.generalized_box_iou(boxes[0], boxes[1], aligned=True))

    def family_masks():
        return (fastiou.mask_iou(masks[0], masks[1]),)

    def uncompressed(mask):  # run lengths in column-major order, background first
        flat = mask.T.ravel()
        bounds = np.concatenate([[0], np.flatnonzero(flat[1:] != flat[:-1]) + 1, [flat.size]])
        return ([0] if flat[0] else []) + np.diff(bounds).tolist()

    def family_rle():
        dt, gt = fastiou.rle.encode(masks[0]), fastiou.rle.encode(masks[1])
        # compressed strings and uncompressed counts (both drawn to bits), then a few small
        # masks in a large image (their runs walked)
        runs = [{"size": list(m.shape), "counts": uncompressed(m)} for m in masks[1]]
        few = [[{"size": list(m.shape), "counts": uncompressed(m)} for m in side]
               for side in sparse]
        return (fastiou.rle.decode(dt), fastiou.rle.iou(dt, gt, [0] * len(gt)),
                fastiou.rle.iou(dt, runs, [0] * len(gt)), fastiou.rle.iou(*few, [0] * 3))

    def family_semantic():
        return (fastiou.confusion_matrix(pred, target, C),)

    FAMILIES = {"boxes": family_boxes, "masks": family_masks, "rle": family_rle,
                "semantic": family_semantic}

    def plain_iou(inter, area1, area2):
        return inter / (area1[:, None] + area2[None, :] - inter)

    def reference():
        a, b = boxes
        lo = np.maximum(a[:, None, :2], b[None, :, :2])
        hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
        inter = np.prod(np.clip(hi - lo, 0, None), axis=-1)
        area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])
        iou = plain_iou(inter, area(a), area(b))
        hull = np.prod(np.maximum(a[:, 2:], b[:, 2:]) - np.minimum(a[:, :2], b[:, :2]), axis=-1)
        union = area(a) + area(b) - np.diagonal(inter)
        giou = np.diagonal(iou) - (hull - union) / hull
        m1 = masks[0].reshape(len(masks[0]), -1).astype(np.float64)
        m2 = masks[1].reshape(len(masks[1]), -1).astype(np.float64)
        mask_iou = plain_iou(m1 @ m2.T, m1.sum(1), m2.sum(1))
        s1, s2 = (x.reshape(3, -1).astype(np.float64) for x in sparse)
        sparse_iou = plain_iou(s1 @ s2.T, s1.sum(1), s2.sum(1))
        cm = np.bincount(target.ravel().astype(np.int64) * C + pred.ravel(), minlength=C * C)
        return {"boxes": (iou, giou), "masks": mask_iou, "rle": (masks[0], mask_iou, sparse_iou),
                "semantic": cm.reshape(C, C)}

    def right(name, got, ref):
        if name == "boxes":
            return all(np.allclose(g, r, rtol=1e-12, atol=1e-15) for g, r in zip(got, ref))
        if name == "masks":
            return np.allclose(got[0], ref, rtol=1e-6, atol=0)
        if name == "rle":
            return (np.array_equal(got[0], ref[0]) and np.allclose(got[1], ref[1], rtol=1e-12)
                    and np.array_equal(got[2], got[1])
                    and np.allclose(got[3], ref[2], rtol=1e-12, atol=0))
        return np.array_equal(got[0], ref)

    def same(x, y):
        return len(x) == len(y) and all(np.array_equal(p, q, equal_nan=True) for p, q in zip(x, y))

    def layer():
        return numba_cpu._layer._threading_layer
    """
)

FORK = textwrap.dedent(
    """
    ref = reference()
    first = {name: fn() for name, fn in FAMILIES.items()}
    parent = {name: right(name, first[name], ref[name]) for name in FAMILIES}
    before = dict(launches)
    pid = os.fork()
    if pid == 0:
        ok = all(right(n, fn(), ref[n]) and same(fn(), first[n]) for n, fn in FAMILIES.items())
        sys.stdout.flush()
        os._exit(0 if ok else 3)
    _, status = os.waitpid(pid, 0)
    print(json.dumps({"layer": layer(), "parent": parent, "launches": before,
                      "child": os.waitstatus_to_exitcode(status)}))
    """
)

THREADS = textwrap.dedent(
    """
    ref = reference()
    expected = {name: fn() for name, fn in FAMILIES.items()}
    parent = {name: right(name, expected[name], ref[name]) for name in FAMILIES}
    wrong = {name: 0 for name in FAMILIES}
    calls = {name: 0 for name in FAMILIES}
    lock = threading.Lock()
    start = threading.Barrier(8)

    def work(k):
        start.wait()
        names = list(FAMILIES)
        for i in range(50):
            for name in names[k % 4:] + names[:k % 4]:  # threads start on different families
                good = same(FAMILIES[name](), expected[name])
                with lock:
                    calls[name] += 1
                    wrong[name] += not good

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps({"layer": layer(), "parent": parent, "launches": launches,
                      "calls": calls, "wrong": wrong}))
    """
)

# Every parallel kernel the families above must have reached (by its Python name).
KERNELS = {
    "boxes": {"_pairwise_iou2", "_aligned_giou2"},
    "masks": {"_pack_bool", "_pairwise"},
    "rle": {"_encode_count", "_encode_write", "_decode", "_iou_bits", "_iou_bits_runs", "_iou"},
    "semantic": {"_count"},
}

LAYERS = ["default", "omp", "workqueue"]


def run_script(body: str, layer: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_THREADING_LAYER")}
    if layer != "default":
        env["NUMBA_THREADING_LAYER"] = layer
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, "-c", COMMON + body], capture_output=True, text=True, timeout=300,
        env=env, cwd=ROOT,
    )
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr[-3000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def expected_layer(layer: str) -> str:
    if layer != "default":
        return layer
    if sys.platform == "linux" and platform.machine() == "x86_64":
        return "tbb"  # the tbb wheel is a dependency there, and fastiou loads it
    return "tbb|omp|workqueue"


def check_launches(launches: dict) -> None:
    for family, names in KERNELS.items():
        missing = names - set(launches)
        assert not missing, f"{family}: no parallel launch of {sorted(missing)}: {launches}"


@pytest.mark.parametrize("layer", LAYERS)
def test_fork_after_parallel_calls(layer):
    """Parallel calls of every family, fork, the same calls in the child: exit 0, same answers
    (under GNU OpenMP the child runs the serial builds)."""
    result = run_script(FORK, layer)
    assert result["layer"] in expected_layer(layer).split("|")
    check_launches(result["launches"])
    assert result["parent"] == dict.fromkeys(KERNELS, True)
    assert result["child"] == 0, result


@pytest.mark.parametrize("layer", LAYERS)
def test_threads_call_every_family_at_once(layer):
    """8 threads x 50 calls of each family at once: no abort, every answer exactly the
    single-threaded one."""
    result = run_script(THREADS, layer)
    assert result["layer"] in expected_layer(layer).split("|")
    check_launches(result["launches"])
    assert result["parent"] == dict.fromkeys(KERNELS, True)
    assert result["calls"] == dict.fromkeys(KERNELS, 400)
    assert result["wrong"] == dict.fromkeys(KERNELS, 0)


# ------------------------------------------------------------------------------------------------
# MeanIoU: one object, several threads


def plain_confusion(pairs, c):
    cm = np.zeros((c, c), dtype=np.int64)
    for pred, target in pairs:
        np.add.at(cm, (np.asarray(target).ravel(), np.asarray(pred).ravel()), 1)
    return cm


@pytest.mark.parametrize("engine_name", ["numba", "jax"])
def test_mean_iou_updates_from_threads_are_all_kept(engine_name):
    from conftest import make_engine

    engine = make_engine(engine_name)
    c = 64  # a (C, C) state large enough that an unguarded read-add-store loses updates
    rng = np.random.default_rng(5)
    batches = [(rng.integers(0, c, (3, 17, 23)), rng.integers(0, c, (3, 17, 23)))
               for _ in range(200)]
    inputs = [(engine.asarray(p), engine.asarray(t)) for p, t in batches]
    metric = fastiou.MeanIoU(c)
    other = fastiou.MeanIoU(c)
    other.update(*inputs[0])
    start = threading.Barrier(4)
    errors = []

    def work(k):
        try:
            start.wait()
            for i in range(k, len(inputs), 4):
                metric.update(*inputs[i])
                if i % 50 == 0:
                    metric.merge(other)
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    expected = plain_confusion(batches + [batches[0]] * 4, c)  # 4 merges of batch 0
    np.testing.assert_array_equal(engine.to_numpy(metric.confusion_matrix()), expected)


def test_mean_iou_pickles_without_its_lock():
    import copy
    import pickle

    rng = np.random.default_rng(6)
    pred, target = rng.integers(0, 4, (2, 9, 9)), rng.integers(0, 4, (2, 9, 9))
    metric = fastiou.MeanIoU(4)
    metric.update(pred, target)
    assert "_lock" not in metric.__getstate__()
    for restored in (pickle.loads(pickle.dumps(metric)), copy.deepcopy(metric)):
        assert restored._lock is not metric._lock
        restored.update(pred, target)  # the restored object has a working lock of its own
        np.testing.assert_array_equal(restored.confusion_matrix(),
                                      plain_confusion([(pred, target)] * 2, 4))
    np.testing.assert_array_equal(metric.confusion_matrix(), plain_confusion([(pred, target)], 4))


# ------------------------------------------------------------------------------------------------
# Loading the tbb wheel's library

PRELOAD = textwrap.dedent(
    """
    import ctypes, json
    loaded = []
    real = ctypes.CDLL

    class Probe(real):
        def __init__(self, name, *args, **kwargs):
            if name == "libtbb.so.12":  # as in a virtual environment: not on the loader path
                raise OSError(name + ": cannot open shared object file")
            if "tbb" in str(name):
                loaded.append(str(name))
            super().__init__(name, *args, **kwargs)

    ctypes.CDLL = Probe
    from fastiou.backends import numba_cpu
    ctypes.CDLL = real
    print(json.dumps(loaded))
    """
)


@pytest.mark.skipif(not (sys.platform == "linux" and platform.machine() == "x86_64"),
                    reason="the tbb wheel is a dependency on Linux x86_64 only")
@pytest.mark.parametrize("layer", LAYERS)
def test_tbb_wheel_library_is_loaded_unless_another_layer_was_chosen(layer):
    import importlib.metadata

    wheel = [str(f.locate()) for f in importlib.metadata.distribution("tbb").files or ()
             if f.name == "libtbb.so.12"]
    assert len(wheel) == 1
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_THREADING_LAYER")}
    if layer != "default":
        env["NUMBA_THREADING_LAYER"] = layer
    proc = subprocess.run([sys.executable, "-c", PRELOAD], capture_output=True, text=True,
                          timeout=120, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    assert loaded == (wheel if layer == "default" else [])
