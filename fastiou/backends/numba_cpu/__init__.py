"""Numba engine: NumPy arrays (and nested lists) in, NumPy arrays out, compiled CPU loops.

Every compiled function of every family module comes from :func:`kernel`.
"""

from __future__ import annotations

from types import FunctionType
from typing import Any, Callable

import numba
import numpy as np

name = "numba"

# One fastmath set for every kernel. Never no-NaN / no-inf: NaN must propagate as NumPy does.
# Nor 'reassoc', 'contract' or 'arcp': they change rounding (IoU(a, a) would miss 1 by an ulp,
# COCO polygon rasterization would differ from pycocotools) and, with 'reassoc', LLVM folds
# ``v - v`` to 0 even for NaN. Nor 'afn' (approximate libm calls). What is left cannot change a
# result beyond the sign of a zero; vectorization does not need more (no float reductions here).
FASTMATH = {"nsz"}


def kernel(*, parallel: bool = False) -> Callable[[Callable[..., Any]], Any]:
    """The one decorator factory for every compiled function of this engine."""

    def decorate(fn: Callable[..., Any]) -> Any:
        return numba.njit(
            cache=True, nogil=True, error_model="numpy", fastmath=FASTMATH, parallel=parallel
        )(fn)

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
    return kernel()(variant(fn, fn.__name__ + "_serial")), kernel(parallel=True)(fn)


def namespace() -> Any:
    return np


def asarray(x: Any) -> np.ndarray:
    return np.asarray(x)


def wide_float() -> np.dtype:
    return np.dtype(np.float64)


def describe() -> str:
    return f"numba {numba.__version__}, {numba.get_num_threads()} threads"


# Family modules (they import ``kernel`` from here).
from .boxes import box_pair  # noqa: E402
from . import semantic  # noqa: E402
from .masks import mask_boxes, mask_pair, pack_masks  # noqa: E402
from . import rle  # noqa: E402  (host-side COCO RLE loops behind fastiou.rle)
