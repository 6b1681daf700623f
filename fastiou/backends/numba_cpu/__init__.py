"""Numba engine: NumPy arrays (and nested lists) in, NumPy arrays out, compiled CPU loops.

Every compiled function of every family module comes from :func:`kernel`.

Threads and fork. Numba runs ``parallel=True`` code on one of three threading layers, chosen at
the first parallel call of the process: TBB (safe under threads and fork), GNU OpenMP (threads
are safe; a child forked after it started is killed at its first parallel call) or workqueue
(fork is safe; two threads launching at once abort the process). Numba prefers TBB but does not
find the ``libtbb`` of the ``tbb`` wheel, which lands in the environment's ``lib/`` directory;
this module loads it first, unless the user chose a layer. Whatever layer runs, parallel kernels
go through :class:`ParallelKernel`, which keeps each call safe: serialized under workqueue, and in
a child forked after GNU OpenMP started, run on the calling thread by the kernel's serial build.

Start-up. The family modules (``boxes``, ``masks``, ``rle`` ...) are imported on first use, through
the module ``__getattr__`` at the end of this file, so that a process which only computes box IoU
never builds the dispatchers of the other families. Numba's CPU target, when it starts, would
import ``scipy.linalg`` to learn whether BLAS is there (see :func:`_defer_scipy`).
"""

from __future__ import annotations

import ctypes
import functools
import importlib
import importlib.util
import os
import sys
import threading
from types import FunctionType
from typing import Any, Callable

import numba
import numba.np.ufunc.parallel as _layer  # ``_threading_layer``: None until the first launch
import numpy as np

name = "numba"

_TBB_LIBRARY = {"linux": "libtbb.so.12", "darwin": "libtbb.12.dylib", "win32": "tbb12.dll"}


def _load_tbb() -> None:
    """Load ``libtbb`` from the ``tbb`` wheel when Numba would not find it by itself.

    Nothing is done when the user chose a layer without TBB (``NUMBA_THREADING_LAYER`` omp or
    workqueue), when the layer is already running, or when a ``libtbb`` is already loadable (a
    conda or system one). A failure leaves Numba to pick another layer, as it would anyway.
    """
    if str(numba.config.THREADING_LAYER).lower() in ("omp", "workqueue"):
        return
    library = _TBB_LIBRARY.get(sys.platform)
    if library is None or _layer._threading_layer is not None:
        return
    try:
        ctypes.CDLL(library)
        return
    except OSError:
        pass
    import importlib.metadata  # here: scanning the installed distributions takes a while

    try:
        files = importlib.metadata.distribution("tbb").files or ()
    except importlib.metadata.PackageNotFoundError:
        return
    for file in files:
        if file.name == library:
            try:
                ctypes.CDLL(str(file.locate()))
            except OSError:
                pass
            return


_load_tbb()


def _defer_scipy() -> None:
    """Keep Numba's start from importing ``scipy.linalg`` (a tenth of a second or more).

    When Numba's CPU target starts it imports ``numba.np.arraymath``, whose ``_check_blas()``
    imports ``scipy.linalg.cython_blas`` only to record whether BLAS exists (it then picks BLAS
    or a plain loop inside ``np.correlate`` and ``np.convolve``). Here that module is imported
    first, with the check answered by whether ``scipy.linalg`` can be found, without running
    it. Numba's linear algebra (``np.dot``, ``np.linalg.*`` in jitted code) is unaffected:
    compiling it calls the real ``ensure_blas()``, which imports SciPy then. Nothing is done
    when Numba's target has started already, when SciPy's linalg is loaded anyway, or when
    Numba's internals differ from these.
    """
    if "numba.np.arraymath" in sys.modules or "scipy.linalg" in sys.modules:
        return
    try:
        from numba.np import linalg
    except ImportError:
        return
    real = getattr(linalg, "ensure_blas", None)
    if real is None:
        return

    def found() -> None:
        try:
            spec = importlib.util.find_spec("scipy.linalg")  # imports ``scipy`` only
        except (ImportError, ValueError):
            spec = None
        if spec is None:
            raise ImportError("scipy.linalg")

    linalg.ensure_blas = found
    try:
        from numba.np import arraymath
    finally:
        linalg.ensure_blas = real
    if getattr(arraymath, "ensure_blas", None) is found:
        arraymath.ensure_blas = real


_defer_scipy()


class _Launch:
    """Process state of parallel launches (reset in a forked child)."""

    lock = threading.Lock()  # serializes launches where the layer cannot take two at once
    serial_only = False  # True in a child forked after GNU OpenMP started


def _after_fork_in_child() -> None:
    _Launch.lock = threading.Lock()  # a thread of the parent may have held it
    if _layer._threading_layer == "omp":
        omp = sys.modules.get("numba.np.ufunc.omppool")
        _Launch.serial_only = getattr(omp, "openmp_vendor", "GNU") == "GNU"


os.register_at_fork(after_in_child=_after_fork_in_child)


class ParallelKernel:
    """A ``parallel=True`` build of a function and its serial twin; calling it runs whichever
    is safe in this process and thread (see the module docstring). Other attributes are those
    of the parallel dispatcher. Each build's dispatcher is made on first use (making one costs
    a fraction of a millisecond, and a process rarely needs both)."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self._fn = fn

    @functools.cached_property
    def parallel(self) -> Any:
        return _njit(self._fn, parallel=True)

    @functools.cached_property
    def serial(self) -> Any:
        return _njit(variant(self._fn, self._fn.__name__ + "_serial"), parallel=False)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if _Launch.serial_only:
            return self.serial(*args, **kwargs)
        if _layer._threading_layer in ("tbb", "omp"):
            return self.parallel(*args, **kwargs)
        with _Launch.lock:  # workqueue, or the first launch, which picks the layer
            return self.parallel(*args, **kwargs)

    def __getattr__(self, attr: str) -> Any:
        if attr == "_fn" or attr.startswith("__"):  # not set yet (e.g. while unpickling)
            raise AttributeError(attr)
        return getattr(self.parallel, attr)

# One fastmath set for every kernel. Never no-NaN / no-inf: NaN must propagate as NumPy does.
# Nor 'reassoc', 'contract' or 'arcp': they change rounding (IoU(a, a) would miss 1 by an ulp,
# COCO polygon rasterization would differ from pycocotools) and, with 'reassoc', LLVM folds
# ``v - v`` to 0 even for NaN. Nor 'afn' (approximate libm calls). What is left cannot change a
# result beyond the sign of a zero; vectorization does not need more (no float reductions here).
FASTMATH = {"nsz"}


def _njit(fn: Callable[..., Any], *, parallel: bool) -> Any:
    return numba.njit(
        cache=True, nogil=True, error_model="numpy", fastmath=FASTMATH, parallel=parallel
    )(fn)


def kernel(*, parallel: bool = False) -> Callable[[Callable[..., Any]], Any]:
    """The one decorator factory for every compiled function of this engine.

    ``parallel=True`` gives a :class:`ParallelKernel` (callable from Python only, as the outer
    ``prange`` driver of a family is); otherwise a Numba dispatcher.
    """

    def decorate(fn: Callable[..., Any]) -> Any:
        return ParallelKernel(fn) if parallel else _njit(fn, parallel=False)

    return decorate


def variant(fn: Callable[..., Any], name: str, **bound: Any) -> Callable[..., Any]:
    """A copy of ``fn`` under its own name, with ``bound`` added to its globals.

    This is how a family makes several compiled variants of one function. Not a closure: Numba
    keys the on-disk cache entry of a closure by its pickled cells, and a pickled dispatcher
    carries an id that is new in every process, so a closure over compiled functions would be
    recompiled by every process. Globals are not part of the key, and the distinct name gives
    each variant its own cache entry (the key does not include compile flags either).
    """
    scope = {**fn.__globals__, **bound} if bound else fn.__globals__
    copy = FunctionType(fn.__code__, scope, name)
    copy.__qualname__ = name
    return copy


class _SerialBuild:
    """The serial build of a :class:`ParallelKernel`, its dispatcher made on first call (a
    family module then makes none for the drivers a process does not use)."""

    __slots__ = ("_both",)

    def __init__(self, both: ParallelKernel) -> None:
        self._both = both

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._both.serial(*args, **kwargs)

    def __getattr__(self, attr: str) -> Any:
        if attr == "_both" or attr.startswith("__"):  # not set yet (e.g. while unpickling)
            raise AttributeError(attr)
        return getattr(self._both.serial, attr)


def serial_and_parallel(fn: Callable[..., Any]) -> tuple[Any, Any]:
    """(serial, parallel) builds of a driver, for calls too small to be worth waking threads.
    Neither dispatcher is made before its first use."""
    both = kernel(parallel=True)(fn)
    return _SerialBuild(both), both


def namespace() -> Any:
    return np


def asarray(x: Any) -> np.ndarray:
    return np.asarray(x)


def wide_float() -> np.dtype:
    return np.dtype(np.float64)


def describe() -> str:
    layer = _layer._threading_layer or "not started"
    return f"numba {numba.__version__}, {numba.get_num_threads()} threads, threading layer {layer}"


# Family modules (they import ``kernel`` from here), imported on first use: ``engine.rle``,
# ``engine.box_pair`` ... resolve through ``__getattr__``.
_FAMILIES = ("boxes", "semantic", "masks", "matching", "rle", "reductions", "ragged", "coco")
_FUNCTIONS = {
    "box_pair": "boxes",
    "mask_boxes": "masks",
    "mask_pair": "masks",
    "pack_masks": "masks",
    "match": "matching",  # COCO greedy and optimal matching
}


def __getattr__(attr: str) -> Any:
    if attr in _FAMILIES:
        return importlib.import_module(f"{__name__}.{attr}")
    family = _FUNCTIONS.get(attr)
    if family is None:
        raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")
    value = getattr(importlib.import_module(f"{__name__}.{family}"), attr)
    globals()[attr] = value  # found directly from now on
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_FAMILIES, *_FUNCTIONS})
