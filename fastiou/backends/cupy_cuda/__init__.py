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
import hashlib
import math
import re
import threading
from pathlib import Path
from typing import Any, Iterator, Protocol, Sequence

import numpy as np

from ..._dispatch import missing_engine

name = "cupy"
CUDA_DIR = Path(__file__).resolve().parent.parent.parent / "cuda"
BLOCK = 256
MAX_GRID_X = 65535 * 32  # far below the 2**31 - 1 limit; grid-stride loops cover the rest
MAX_GRID_Y = 65535

# The C name of each NumPy dtype a kernel template is instantiated for.
C_TYPES = {
    np.dtype(np.bool_): "bool",
    np.dtype(np.uint8): "unsigned char",
    np.dtype(np.int8): "signed char",
    np.dtype(np.uint16): "unsigned short",
    np.dtype(np.int16): "short",
    np.dtype(np.uint32): "unsigned int",
    np.dtype(np.int32): "int",
    np.dtype(np.uint64): "unsigned long long",
    np.dtype(np.int64): "long long",
    np.dtype(np.float32): "float",
    np.dtype(np.float64): "double",
}

# Every kernel of every source: the name expressions instantiated when its module is built.
# Each family module adds its own source here when it is imported.
KERNELS: dict[str, tuple[str, ...]] = {}


class Runtime(Protocol):
    xp: Any

    def launch(self, source: str, kernel: str, grid: tuple[int, ...], block: tuple[int, ...],
               args: tuple[Any, ...], shared_mem: int = 0) -> None: ...


# Options of every module; quoted #include names are found in CUDA_DIR (``-I``), where the .cuh
# headers with the __device__ helpers and formulas shared by several sources live.
NVRTC_OPTIONS = ("--std=c++17", "--fmad=false")
_INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]*"([^"\n]+)"', re.M)


def included_files(path: Path, include_dirs: Sequence[Path] = (CUDA_DIR,)) -> list[Path]:
    """Every file that ``path`` includes with ``#include "name"``, directly or through another,
    found as a compiler finds it: the including file's folder, then ``include_dirs`` in order.
    Sorted; a name found nowhere is left for the compiler to report."""
    root = path.resolve()
    found: set[Path] = set()
    todo = [root]
    while todo:
        current = todo.pop()
        for name in _INCLUDE.findall(current.read_text()):
            for folder in (current.parent, *include_dirs):
                candidate = (Path(folder) / name).resolve()
                if candidate.is_file():
                    if candidate != root and candidate not in found:
                        found.add(candidate)
                        todo.append(candidate)
                    break
    return sorted(found)


def read_source(source: str) -> str:
    """The text of a .cu file for NVRTC: a #line directive so compiler errors name the real file,
    after a comment holding a hash of every file it includes. CuPy's on-disk cache is keyed on
    this text and the options, not on included headers: the hash makes an edited header recompile
    instead of loading a stale binary."""
    path = CUDA_DIR / source
    digest = hashlib.sha256()
    for dep in included_files(path):
        digest.update(f"{dep}\0".encode() + dep.read_bytes() + b"\0")
    return f'// includes: {digest.hexdigest()[:32]}\n#line 1 "{path}"\n' + path.read_text()


class CupyRuntime:
    """Launches kernels on the current CUDA device through CuPy RawModules."""

    def __init__(self) -> None:
        try:
            import cupy
        except ImportError as exc:
            raise missing_engine("cupy", exc) from exc
        self.xp = cupy
        self._modules: dict[str, Any] = {}
        self._lock = threading.Lock()

    def module(self, source: str) -> Any:
        """The RawModule of ``source``, built once per process even when threads ask at once
        (CuPy compiles it for each device it is used on)."""
        module = self._modules.get(source)
        if module is not None:
            return module
        with self._lock:
            if source not in self._modules:
                self._modules[source] = self._build(source)
        return self._modules[source]

    def _build(self, source: str) -> Any:
        return self.xp.RawModule(
            code=read_source(source),
            # --fmad=false: no fused multiply-add, so products and sums round as in NumPy
            # (a fused area + area - intersection can make IoU(a, a) differ from 1).
            options=(*NVRTC_OPTIONS, f"-I{CUDA_DIR}"),
            name_expressions=KERNELS[source],
        )

    def launch(self, source: str, kernel: str, grid: tuple[int, ...], block: tuple[int, ...],
               args: tuple[Any, ...], shared_mem: int = 0) -> None:
        self.module(source).get_function(kernel)(grid, block, args, shared_mem=shared_mem)


_runtime: Runtime | None = None
_runtime_lock = threading.Lock()


def runtime() -> Runtime:
    global _runtime
    if _runtime is None:
        with _runtime_lock:  # one runtime (and one compile of each module) per process
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
    cupy = runtime().xp
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
        # Any array, 0-d included, is passed as a pointer; only NumPy/Python scalars are values.
        if hasattr(value, "dtype") and not isinstance(value, np.generic):
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



# Family modules (they register their kernels in KERNELS and launch through ``launch``).
from .boxes import box_pair  # noqa: E402
from . import semantic  # noqa: E402
from .masks import mask_boxes, mask_pair, pack_masks  # noqa: E402
from . import reductions  # noqa: E402  (fused max / top-k / pairs)
from .matching import match  # noqa: E402  (COCO greedy and optimal matching)
from . import ragged  # noqa: E402  (segmented IoU: many images in one launch)
