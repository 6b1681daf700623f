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
"""

from __future__ import annotations

import ctypes
import importlib.metadata
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
    of the parallel dispatcher."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.parallel = _njit(fn, parallel=True)
        self.serial = _njit(variant(fn, fn.__name__ + "_serial"), parallel=False)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if _Launch.serial_only:
            return self.serial(*args, **kwargs)
        if _layer._threading_layer in ("tbb", "omp"):
            return self.parallel(*args, **kwargs)
        with _Launch.lock:  # workqueue, or the first launch, which picks the layer
            return self.parallel(*args, **kwargs)

    def __getattr__(self, attr: str) -> Any:
        if attr in ("parallel", "serial"):  # not set yet (e.g. while unpickling)
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


def serial_and_parallel(fn: Callable[..., Any]) -> tuple[Any, Any]:
    """(serial, parallel) builds of a driver, for calls too small to be worth waking threads."""
    both = kernel(parallel=True)(fn)
    return both.serial, both


def namespace() -> Any:
    return np


def asarray(x: Any) -> np.ndarray:
    return np.asarray(x)


def wide_float() -> np.dtype:
    return np.dtype(np.float64)


def describe() -> str:
    layer = _layer._threading_layer or "not started"
    return f"numba {numba.__version__}, {numba.get_num_threads()} threads, threading layer {layer}"


# Family modules (they import ``kernel`` from here).
from .boxes import box_pair  # noqa: E402
from . import semantic  # noqa: E402
from .masks import mask_boxes, mask_pair, pack_masks  # noqa: E402
from .matching import match  # noqa: E402  (COCO greedy and optimal matching)
from . import rle  # noqa: E402  (host-side COCO RLE loops behind fastiou.rle)
from . import reductions  # noqa: E402  (fused max / top-k / pairs)
from . import ragged  # noqa: E402  (segmented IoU: many images in one call)
from . import coco  # noqa: E402  (COCO evaluation loops behind fastiou.coco)
