"""Which engine runs a call: found from the types of the inputs, never by importing a framework.

If ``"jax"`` is not in ``sys.modules`` no jax array can exist, so the check only consults modules
that are already imported. The answer is cached per type. jax tracers (under ``jit``, ``vmap``,
``grad``) are subclasses of ``jax.core.Tracer`` but not of ``jax.Array``, so both are checked.
"""

from __future__ import annotations

import functools
import importlib
import sys
from types import ModuleType
from typing import Any, NamedTuple

import numpy as np

ENGINES = ("numba", "cupy", "jax")

_MODULES = {
    "numba": "fastiou.backends.numba_cpu",
    "cupy": "fastiou.backends.cupy_cuda",
    "jax": "fastiou.backends.jax_xla",
}
_EXTRAS = {
    "numba": 'pip install fastiou  (numba is a core dependency)',
    "cupy": 'pip install "fastiou[cuda12]"  or  "fastiou[cuda13]"',
    "jax": 'pip install "fastiou[jax]"',
}
_HOST_TYPES = (np.ndarray, np.generic, list, tuple, int, float, bool)


@functools.lru_cache(maxsize=None)
def _engine_of_type(tp: type) -> str | None:
    if issubclass(tp, _HOST_TYPES):
        return "numba"
    cupy = sys.modules.get("cupy")
    if cupy is not None and issubclass(tp, cupy.ndarray):
        return "cupy"
    jax = sys.modules.get("jax")
    if jax is not None and (issubclass(tp, jax.Array) or issubclass(tp, jax.core.Tracer)):
        return "jax"
    return None


@functools.lru_cache(maxsize=None)
def _is_dask_type(tp: type) -> bool:
    array = sys.modules.get("dask.array")
    return array is not None and issubclass(tp, array.Array)


def is_dask(x: Any) -> bool:
    """Whether ``x`` is a Dask array (a collection of chunks, each with its own engine)."""
    return _is_dask_type(type(x))


def _type_name(x: Any) -> str:
    tp = type(x)
    return f"{tp.__module__}.{tp.__qualname__}"


def engine_name(func: str, arrays: dict[str, Any], backend: str | None = None) -> str:
    """Name of the engine for ``arrays`` (argument name -> value), or ``backend`` if given."""
    if backend is not None:
        if backend not in ENGINES:
            raise ValueError(
                f"{func}: backend must be one of {', '.join(map(repr, ENGINES))} or None, got {backend!r}"
            )
        return backend
    found: tuple[str, str, Any] | None = None
    for name, value in arrays.items():
        if value is None:
            continue
        engine = _engine_of_type(type(value))
        if engine is None:
            raise TypeError(
                f"{func}: {name} has unsupported type {_type_name(value)}; expected a numpy.ndarray "
                "or a nested list (Numba engine), a cupy.ndarray (CUDA engine) or a jax.Array"
            )
        if found is None:
            found = (engine, name, value)
        elif engine != found[0]:
            raise TypeError(
                f"{func}: {found[1]} is a {_type_name(found[2])} but {name} is a {_type_name(value)}; "
                "arrays from different libraries cannot be mixed in one call: move them to one "
                "library first (e.g. numpy.asarray, cupy.asarray or jax.numpy.asarray)"
            )
    return "numba" if found is None else found[0]


def missing_engine(engine: str, exc: ImportError) -> ImportError:
    """The error for an engine whose framework is not installed: it names the extra."""
    return ImportError(
        f"fastiou: the {engine} engine needs the '{engine}' package, which could not be imported "
        f"({exc}); install it with: {_EXTRAS[engine]}"
    )


@functools.lru_cache(maxsize=None)
def load(engine: str) -> ModuleType:
    """Import the backend module of ``engine`` (the CUDA one imports cupy on first use)."""
    try:
        return importlib.import_module(_MODULES[engine])
    except ImportError as exc:
        raise missing_engine(engine, exc) from exc


def backend_for(func: str, arrays: dict[str, Any], backend: str | None = None) -> ModuleType:
    return load(engine_name(func, arrays, backend))


class BackendInfo(NamedTuple):
    available: bool
    detail: str


def available_backends() -> dict[str, BackendInfo]:
    """Which engines can run here and, for the others, why not.

    Importing a framework is the point of this call, so it imports each one.
    """
    info: dict[str, BackendInfo] = {}
    for engine in ENGINES:
        try:
            module = load(engine)
            info[engine] = BackendInfo(True, module.describe())
        except Exception as exc:  # each engine reports its own reason: import, driver, device
            info[engine] = BackendInfo(False, str(exc))
    return info
