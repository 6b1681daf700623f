"""CUDA engine: CuPy arrays in, CuPy arrays out, kernels from the .cu sources in ``fastiou/cuda``.

Each source is one CuPy ``RawModule``, compiled lazily once per process with every template
instantiation it needs (CuPy also caches the binary on disk). CuPy does not check kernel argument
types, so every launch goes through :func:`launch`, which checks array dtypes and contiguity and
casts scalars to explicit NumPy types first.

The host side is written against a *runtime* (an array namespace plus a launcher). The default
runtime is CuPy's; the test suite swaps in a CPU runtime that executes the same kernels with the
same launch configuration, so this module's Python code is tested without a GPU too.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Any, Iterator, Protocol, Sequence

import numpy as np

from .. import _formats
from .._validate import BoxPair

name = "cupy"
CUDA_DIR = Path(__file__).resolve().parent.parent / "cuda"
BLOCK = 256
MAX_GRID_X = 65535 * 32  # far below the 2**31 - 1 limit; grid-stride loops cover the rest
MAX_GRID_Y = 65535

_C_TYPES = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}
_BOX_OPS = {"iou": 0, "giou": 1, "diou": 2, "ciou": 3, "ioa": 4}
_BOX_COMBOS = ((2, "iou"), (2, "giou"), (2, "diou"), (2, "ciou"), (2, "ioa"),
               (3, "iou"), (3, "giou"), (3, "ioa"))
_BOX_DTYPES = ((np.float32, np.float32), (np.float64, np.float64), (np.float64, np.float32))


def _box_kernel(kind: str, compute: Any, out: Any, op: str, dims: int) -> str:
    t, o = _C_TYPES[np.dtype(compute)], _C_TYPES[np.dtype(out)]
    return f"fastiou::box_{kind}<{t}, {o}, {_BOX_OPS[op]}, {dims}>"


# Every kernel of every source: the name expressions instantiated when the module is built.
KERNELS: dict[str, tuple[str, ...]] = {
    "boxes.cu": tuple(
        _box_kernel(kind, t, o, op, dims)
        for kind in ("pairwise", "aligned")
        for dims, op in _BOX_COMBOS
        for t, o in _BOX_DTYPES
    ),
}


class Runtime(Protocol):
    xp: Any

    def launch(self, source: str, kernel: str, grid: tuple[int, ...], block: tuple[int, ...],
               args: tuple[Any, ...], shared_mem: int = 0) -> None: ...


def read_source(source: str) -> str:
    """The text of a .cu file, with a #line directive so compiler errors name the real file."""
    path = CUDA_DIR / source
    return f'#line 1 "{path}"\n' + path.read_text()


class CupyRuntime:
    """Launches kernels on the current CUDA device through CuPy RawModules."""

    def __init__(self) -> None:
        import cupy

        self.xp = cupy
        self._modules: dict[str, Any] = {}

    def module(self, source: str) -> Any:
        if source not in self._modules:
            self._modules[source] = self.xp.RawModule(
                code=read_source(source),
                options=("--std=c++17", f"-I{CUDA_DIR}"),
                name_expressions=KERNELS[source],
            )
        return self._modules[source]

    def launch(self, source: str, kernel: str, grid: tuple[int, ...], block: tuple[int, ...],
               args: tuple[Any, ...], shared_mem: int = 0) -> None:
        self.module(source).get_function(kernel)(grid, block, args, shared_mem=shared_mem)


_runtime: Runtime | None = None


def runtime() -> Runtime:
    global _runtime
    if _runtime is None:
        _runtime = CupyRuntime()
    return _runtime


@contextlib.contextmanager
def use_runtime(rt: Runtime) -> Iterator[Runtime]:
    """Run this engine on another runtime (the test suite's CPU harness) inside the block."""
    global _runtime
    previous, _runtime = _runtime, rt
    try:
        yield rt
    finally:
        _runtime = previous


def namespace() -> Any:
    return runtime().xp


def asarray(x: Any) -> Any:
    return runtime().xp.asarray(x)


def wide_float() -> np.dtype:
    return np.dtype(np.float64)


def describe() -> str:
    import cupy

    count = cupy.cuda.runtime.getDeviceCount()  # raises where there is no driver or device
    if count == 0:
        raise RuntimeError("cupy is installed but no CUDA device is visible")
    props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
    return f"cupy {cupy.__version__} on {props['name'].decode()} ({count} device(s))"


def launch(source: str, kernel: str, grid: tuple[int, ...], block: tuple[int, ...],
           args: Sequence[tuple[Any, Any]], shared_mem: int = 0) -> None:
    """Check and launch: ``args`` are (value, dtype) pairs; arrays must already have that dtype
    and be C-contiguous, scalars are cast to that NumPy type."""
    if kernel not in KERNELS[source]:
        raise AssertionError(f"{kernel} is not instantiated in {source}")
    checked = []
    for value, dtype in args:
        dtype = np.dtype(dtype)
        if hasattr(value, "dtype") and getattr(value, "ndim", 0) > 0:
            if value.dtype != dtype or not value.flags.c_contiguous:
                raise AssertionError(
                    f"{kernel}: argument of dtype {value.dtype} (contiguous: "
                    f"{value.flags.c_contiguous}) where a C-contiguous {dtype} array is required"
                )
            checked.append(value)
        else:
            checked.append(dtype.type(value))
    runtime().launch(source, kernel, grid, block, tuple(checked), shared_mem)


def grid_1d(count: int) -> tuple[int]:
    return (max(1, min(math.ceil(count / BLOCK), MAX_GRID_X)),)


def _corners(xp: Any, b: Any, spec: BoxPair, n: int) -> Any:
    corners = _formats.to_corners(xp, xp.asarray(b, dtype=spec.compute), spec.fmt)
    corners = xp.broadcast_to(corners, spec.batch + (n, 2 * spec.dims))
    return xp.ascontiguousarray(corners.reshape(-1, 2 * spec.dims))


def box_pair(b1: Any, b2: Any, *, op: str, spec: BoxPair, zero_division: float, out: Any = None) -> Any:
    xp = runtime().xp
    n = spec.n
    m = n if spec.m < 0 else spec.m
    result = xp.empty(spec.out_shape, dtype=spec.out) if out is None else out
    if result.size == 0:
        return result
    a, c = _corners(xp, b1, spec, n), _corners(xp, b2, spec, m)
    t = spec.compute
    if spec.m < 0:
        kernel = _box_kernel("aligned", t, spec.out, op, spec.dims)
        args = ((a, t), (c, t), (a.shape[0], np.int64), (zero_division, t), (result, spec.out))
        launch("boxes.cu", kernel, grid_1d(a.shape[0]), (BLOCK,), args)
    else:
        rows = a.shape[0]
        kernel = _box_kernel("pairwise", t, spec.out, op, spec.dims)
        grid = (grid_1d(m)[0], min(rows, MAX_GRID_Y))
        args = ((a, t), (c, t), (rows, np.int64), (n, np.int64), (m, np.int64),
                (zero_division, t), (result, spec.out))
        launch("boxes.cu", kernel, grid, (BLOCK,), args)
    return result
