"""Bad input (one table, every engine) and engine dispatch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastiou
from conftest import GPU_REASON

ROOT = Path(__file__).resolve().parent.parent

A = np.array([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 4.0, 5.0], [2.0, 0.0, 3.0, 9.0]])  # (3, 4)
B = A[:2] + 1  # (2, 4)
A3 = np.zeros((3, 6))

PAIR = [
    ("box_iou", fastiou.box_iou),
    ("box_ioa", fastiou.box_ioa),
    ("generalized_box_iou", fastiou.generalized_box_iou),
    ("distance_box_iou", fastiou.distance_box_iou),
    ("complete_box_iou", fastiou.complete_box_iou),
]
LOSSES = [
    ("generalized_box_iou_loss", fastiou.generalized_box_iou_loss),
    ("distance_box_iou_loss", fastiou.distance_box_iou_loss),
    ("complete_box_iou_loss", fastiou.complete_box_iou_loss),
]

# (id, function, positional arrays, keyword arguments, exception, message after "<name>: ")
BAD_INPUT = []
for _name, _fn in PAIR:
    BAD_INPUT += [
        (f"{_name}-last-dim", _fn, (np.zeros((3, 5)), B), {}, ValueError,
         r"boxes1 must have shape \(\.\.\., N, 4\)( or \(\.\.\., N, 6\))?, got shape \(3, 5\)"),
        (f"{_name}-last-dim-2", _fn, (A, np.zeros((2, 3))), {}, ValueError,
         r"boxes2 must have shape \(\.\.\., N, 4\).*got shape \(2, 3\)"),
        (f"{_name}-1d", _fn, (A[0], B), {}, ValueError,
         r"boxes1 must have shape \(\.\.\., N, 4\).*got shape \(4,\)"),
        (f"{_name}-0d", _fn, (A, np.float64(1.0)), {}, ValueError,
         r"boxes2 must have shape \(\.\.\., N, 4\).*got shape \(\)"),
        (f"{_name}-aligned-n", _fn, (A, B), {"aligned": True}, ValueError,
         r"aligned=True needs as many boxes in boxes1 as in boxes2, got shape \(3, 4\).* and "
         r"shape \(2, 4\)"),
        (f"{_name}-fmt", _fn, (A, B), {"fmt": "xyhw"}, ValueError,
         r"fmt must be one of 'xyxy', 'xywh', 'cxcywh' for 2D boxes, got 'xyhw'"),
        (f"{_name}-fmt-3d-alias-on-2d", _fn, (A, B), {"fmt": "xyzxyz"}, ValueError,
         r"fmt must be one of .* for 2D boxes, got 'xyzxyz'"),
        (f"{_name}-aligned-type", _fn, (A, B), {"aligned": "yes"}, TypeError,
         r"aligned must be a bool, got 'yes'"),
        (f"{_name}-aligned-int", _fn, (A, B), {"aligned": 1}, TypeError,
         r"aligned must be a bool, got 1"),
        (f"{_name}-zero-division-str", _fn, (A, B), {"zero_division": "0"}, TypeError,
         r"zero_division must be a real number, got '0'"),
        (f"{_name}-zero-division-none", _fn, (A, B), {"zero_division": None}, TypeError,
         r"zero_division must be a real number, got None"),
        (f"{_name}-zero-division-bool", _fn, (A, B), {"zero_division": True}, TypeError,
         r"zero_division must be a real number, got True"),
        (f"{_name}-bool", _fn, (A > 1, B), {}, TypeError,
         r"boxes1 must hold integer or floating coordinates, got shape \(3, 4\) and dtype bool"),
        (f"{_name}-complex", _fn, (A, B.astype(np.complex64)), {}, TypeError,
         r"boxes2 must hold integer or floating coordinates, got shape \(2, 4\) and dtype "
         r"complex64"),
        (f"{_name}-batch", _fn, (np.zeros((2, 3, 4)), np.zeros((3, 2, 4))), {}, ValueError,
         r"the leading \(batch\) dimensions of boxes1 and boxes2 must broadcast"),
    ]
for _name, _fn in PAIR[:3]:
    BAD_INPUT += [
        (f"{_name}-mixed-2d-3d", _fn, (A, np.zeros((2, 6))), {}, ValueError,
         r"boxes1 and boxes2 must have the same last dimension, got shape \(3, 4\).*"
         r"shape \(2, 6\)"),
        (f"{_name}-fmt-3d", _fn, (A3, A3), {"fmt": "xyxyzz"}, ValueError,
         r"fmt must be one of 'xyxy', 'xywh', 'cxcywh', 'xyzxyz', 'xyzwhd', 'cxcyczwhd' for 3D "
         r"boxes, got 'xyxyzz'"),
    ]
for _name, _fn in PAIR[3:] + LOSSES:
    BAD_INPUT += [
        (f"{_name}-3d", _fn, (A3, A3), {}, ValueError,
         r"boxes1 must have shape \(\.\.\., N, 4\), got shape \(3, 6\)"),
    ]
for _name, _fn in LOSSES:
    BAD_INPUT += [
        (f"{_name}-reduction", _fn, (A, A), {"reduction": "avg"}, ValueError,
         r"reduction must be one of 'none', 'mean', 'sum', got 'avg'"),
        (f"{_name}-reduction-none-object", _fn, (A, A), {"reduction": None}, ValueError,
         r"reduction must be one of 'none', 'mean', 'sum', got None"),
        (f"{_name}-n", _fn, (A, B), {}, ValueError,
         r"aligned=True needs as many boxes in boxes1 as in boxes2"),
        (f"{_name}-fmt", _fn, (A, A), {"fmt": "XYXY"}, ValueError, r"fmt must be one of"),
    ]
BAD_INPUT += [
    ("box_area-last-dim", fastiou.box_area, (np.zeros((3, 5)),), {}, ValueError,
     r"boxes must have shape \(\.\.\., 4\) or \(\.\.\., 6\), got shape \(3, 5\)"),
    ("box_area-0d", fastiou.box_area, (np.float64(3.0),), {}, ValueError,
     r"boxes must have shape \(\.\.\., 4\) or \(\.\.\., 6\), got shape \(\)"),
    ("box_area-fmt", fastiou.box_area, (A,), {"fmt": "xyxyxy"}, ValueError,
     r"fmt must be one of .*got 'xyxyxy'"),
    ("box_area-bool", fastiou.box_area, (A > 0,), {}, TypeError,
     r"boxes must hold integer or floating coordinates"),
    ("box_convert-in_fmt", fastiou.box_convert, (A,), {"in_fmt": "xy", "out_fmt": "xyxy"},
     ValueError, r"in_fmt must be one of 'xyxy', 'xywh', 'cxcywh' for 2D boxes, got 'xy'"),
    ("box_convert-out_fmt", fastiou.box_convert, (A,), {"in_fmt": "xyxy", "out_fmt": "wh"},
     ValueError, r"out_fmt must be one of 'xyxy', 'xywh', 'cxcywh' for 2D boxes, got 'wh'"),
    ("box_convert-last-dim", fastiou.box_convert, (np.zeros((2, 2)),),
     {"in_fmt": "xyxy", "out_fmt": "xywh"}, ValueError, r"boxes must have shape \(\.\.\., 4\)"),
    ("box_convert-complex", fastiou.box_convert, (A.astype(complex),),
     {"in_fmt": "xyxy", "out_fmt": "xywh"}, TypeError,
     r"boxes must hold integer or floating coordinates"),
]


@pytest.mark.parametrize(
    "fn,arrays,kwargs,exc,message", [row[1:] for row in BAD_INPUT],
    ids=[row[0] for row in BAD_INPUT],
)
def test_bad_input(engine, fn, arrays, kwargs, exc, message):
    with pytest.raises(exc, match=rf"^{fn.__name__}: {message}"):
        engine.call(fn, *arrays, **kwargs)


@pytest.mark.parametrize("fn", [fn for _, fn in PAIR], ids=[name for name, _ in PAIR])
def test_object_dtype_is_refused(fn):
    boxes = np.array([[0, 0, 1, 1]], dtype=object)
    with pytest.raises(TypeError, match=rf"^{fn.__name__}: boxes1 must hold integer or floating "
                                        r"coordinates, got shape \(1, 4\) and dtype object"):
        fn(boxes, boxes)


# ------------------------------------------------------------------------------------------------
# Dispatch


def run_python(code: str, **env: str) -> str:
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, cwd=ROOT,
        env={**os.environ, **env}, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_import_loads_no_engine():
    out = run_python(
        "import sys, json, fastiou\n"
        "engines = ('numba', 'jax', 'jaxlib', 'cupy')\n"
        "print(json.dumps(sorted(m for m in engines if m in sys.modules)))"
    )
    assert json.loads(out) == []


def test_numpy_input_loads_neither_jax_nor_cupy():
    out = run_python(
        "import sys, json, fastiou\n"
        "fastiou.box_iou([[0, 0, 1, 1]], [[0, 0, 1, 1]])\n"
        "print(json.dumps(sorted(m for m in ('jax', 'cupy') if m in sys.modules)))"
    )
    assert json.loads(out) == []


def test_numba_kernels_are_cached_on_disk():
    """A second process finds every compiled kernel in the on-disk cache: no recompilation."""
    code = (
        "import json, numpy as np, fastiou\n"
        "from fastiou.backends.numba_cpu import boxes as k\n"
        "a = np.array([[0, 0, 10, 10], [5, 5, 15, 15]], np.float32)\n"
        "for fn in (fastiou.box_iou, fastiou.generalized_box_iou, fastiou.complete_box_iou):\n"
        "    fn(a, a); fn(a, a, aligned=True)\n"
        "fastiou.box_ioa(np.zeros((2, 6)), np.ones((3, 6)))\n"
        "used = [k._PAIRWISE['iou', 2].serial, k._ALIGNED['iou', 2].serial,\n"
        "        k._PAIRWISE['giou', 2].serial, k._ALIGNED['giou', 2].serial,\n"
        "        k._PAIRWISE['ciou', 2].serial, k._ALIGNED['ciou', 2].serial,\n"
        "        k._PAIRWISE['ioa', 3].serial]\n"
        "print(json.dumps([[sum(f.stats.cache_hits.values()), sum(f.stats.cache_misses.values())]\n"
        "                  for f in used]))"
    )
    run_python(code)  # fills the cache if this checkout has not been run yet
    stats = json.loads(run_python(code))
    assert stats == [[1, 0]] * len(stats), stats


def test_mixing_numpy_and_jax_names_both_types():
    import jax.numpy as jnp

    with pytest.raises(TypeError, match=r"^box_iou: boxes1 is a numpy\.ndarray but boxes2 is a "
                                        r"jax.*ArrayImpl; arrays from different libraries"):
        fastiou.box_iou(A, jnp.asarray(B))
    with pytest.raises(TypeError, match=r"^generalized_box_iou_loss: boxes1 is a jax.*ArrayImpl "
                                        r"but boxes2 is a numpy\.ndarray"):
        fastiou.generalized_box_iou_loss(jnp.asarray(A), A)


@pytest.mark.parametrize(
    "value", [{"boxes": 1}, object(), "0 0 1 1", {1, 2}], ids=["dict", "object", "str", "set"]
)
def test_unsupported_type(value):
    name = f"{type(value).__module__}.{type(value).__qualname__}"
    with pytest.raises(TypeError, match=rf"^box_iou: boxes2 has unsupported type {name}"):
        fastiou.box_iou(A, value)
    with pytest.raises(TypeError, match=rf"^box_area: boxes has unsupported type {name}"):
        fastiou.box_area(value)


def test_none_is_refused():
    with pytest.raises(TypeError, match=r"^box_iou: boxes2 must hold integer or floating"):
        fastiou.box_iou(A, None)


def test_backend_override():
    import jax

    result = fastiou.box_iou(A, B, backend="jax")
    assert isinstance(result, jax.Array)
    np.testing.assert_allclose(np.asarray(result), fastiou.box_iou(A, B), rtol=1e-6)
    assert isinstance(fastiou.box_area(A, backend="jax"), jax.Array)
    assert isinstance(fastiou.box_convert(A, "xyxy", "xywh", backend="jax"), jax.Array)
    assert isinstance(fastiou.generalized_box_iou_loss(A, A, backend="jax"), jax.Array)
    # A jax array sent to the Numba engine comes back as NumPy.
    back = fastiou.box_iou(jax.numpy.asarray(A), jax.numpy.asarray(B), backend="numba")
    assert type(back) is np.ndarray


@pytest.mark.parametrize("backend", ["torch", "numpy", "", "CUPY"])
def test_unknown_backend(backend):
    with pytest.raises(ValueError, match=rf"^box_iou: backend must be one of 'numba', 'cupy', "
                                         rf"'jax' or None, got '{backend}'"):
        fastiou.box_iou(A, B, backend=backend)
    with pytest.raises(ValueError, match=r"^box_convert: backend must be one of"):
        fastiou.box_convert(A, "xyxy", "xywh", backend=backend)


def test_available_backends():
    info = fastiou.available_backends()
    assert list(info) == ["numba", "cupy", "jax"]
    assert all(isinstance(v, fastiou.BackendInfo) for v in info.values())
    assert info["numba"].available and "numba" in info["numba"].detail
    assert info["jax"].available and "jax" in info["jax"].detail and "cpu" in info["jax"].detail
    assert info["cupy"].available == (GPU_REASON is None)
    if GPU_REASON == "cupy is not installed":
        assert "fastiou[cuda12]" in info["cupy"].detail
    if not info["cupy"].available:
        assert info["cupy"].detail  # says why


@pytest.mark.skipif(GPU_REASON != "cupy is not installed", reason="needs a machine without cupy")
def test_missing_engine_names_the_extra():
    with pytest.raises(ImportError, match=r"cupy engine needs the 'cupy' package.*"
                                          r"pip install \"fastiou\[cuda12\]\""):
        fastiou.box_iou(A, B, backend="cupy")
    with pytest.raises(ImportError, match=r"fastiou\[cuda12\]"):
        fastiou.box_area(A, backend="cupy")


def test_missing_jax_names_the_extra():
    # A process where jax cannot be imported: backend="jax" says how to install it.
    out = run_python(
        "import sys\n"
        "sys.modules['jax'] = None  # makes 'import jax' fail\n"
        "import fastiou\n"
        "try:\n"
        "    fastiou.box_iou([[0, 0, 1, 1]], [[0, 0, 1, 1]], backend='jax')\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
        "print(fastiou.available_backends()['jax'].available)\n"
    )
    assert 'pip install "fastiou[jax]"' in out
    assert out.strip().endswith("False")
