"""One fixture, ``engine``, parametrized over every engine fastiou runs on.

- ``numba``: NumPy arrays, the Numba engine.
- ``jax``: jax arrays, the JAX engine (on whatever device jax has; CPU here).
- ``cuda-harness``: NumPy arrays through the CUDA engine's own Python code and .cu kernels, run on
  the CPU by the harness in ``tests/cuda_harness`` (same launch configuration as on a GPU).
- ``cupy``: CuPy arrays on a real GPU; skipped, with the reason, where there is none.

Tests call ``engine.call(fastiou.box_iou, a, b, fmt="xywh")`` with NumPy inputs and get NumPy
results back, after ``engine.call`` has checked that the engine returned its own array type.
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

# Several host CPU devices for the JAX multi-device tests; must be set before jax is imported.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")

ENGINES = ("numba", "jax", "cuda-harness", "cupy")


def _has_gpu() -> str | None:
    """None when CuPy sees a GPU, otherwise the reason why not."""
    try:
        import cupy
    except ImportError:
        return "cupy is not installed"
    try:
        if cupy.cuda.runtime.getDeviceCount() > 0:
            return None
        return "no CUDA device"
    except Exception as exc:  # no driver, no device
        return f"no usable CUDA device ({exc})"


GPU_REASON = _has_gpu()
needs_gpu = pytest.mark.skipif(GPU_REASON is not None, reason=f"needs a GPU: {GPU_REASON}")


@dataclass
class Engine:
    name: str
    backend: str | None
    asarray: Callable[[Any], Any]
    array_type: type
    context: Callable[[], contextlib.AbstractContextManager] = field(default=contextlib.nullcontext)

    def call(self, fn: Callable[..., Any], *arrays: Any, **kwargs: Any) -> Any:
        """Run ``fn`` on this engine; inputs and result are NumPy (or Python scalars)."""
        with self.context():
            args = [self.asarray(np.asarray(a)) if a is not None else None for a in arrays]
            if self.backend is not None:
                kwargs.setdefault("backend", self.backend)
            result = fn(*args, **kwargs)
        return self.to_numpy(result)

    def to_numpy(self, result: Any) -> Any:
        if isinstance(result, tuple):
            return tuple(self.to_numpy(r) for r in result)
        if isinstance(result, (float, int, np.generic)) and self.array_type is not np.ndarray:
            raise AssertionError(f"{self.name} returned a Python/NumPy scalar {result!r}")
        if not isinstance(result, (self.array_type, float, int, np.generic)):
            raise AssertionError(
                f"{self.name} engine returned {type(result)}, expected {self.array_type}"
            )
        if self.name == "cupy":
            return result.get()
        return np.asarray(result)


def make_engine(name: str) -> Engine:
    if name == "numba":
        return Engine("numba", None, np.asarray, np.ndarray)
    if name == "jax":
        import jax
        import jax.numpy as jnp

        return Engine("jax", None, jnp.asarray, jax.Array)
    if name == "cuda-harness":
        from cuda_harness import harness_runtime

        # session(): use_runtime(rt) for the CUDA engine, then fail on unwritten output elements
        rt = harness_runtime()
        return Engine("cuda-harness", "cupy", np.asarray, np.ndarray, context=rt.session)
    if name == "cupy":
        if GPU_REASON is not None:
            pytest.skip(f"cupy engine needs a GPU: {GPU_REASON}")
        import cupy

        return Engine("cupy", None, cupy.asarray, cupy.ndarray)
    raise ValueError(name)


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> Engine:
    return make_engine(request.param)


@pytest.fixture(params=("numba", "jax", "cuda-harness"))
def cpu_engine(request: pytest.FixtureRequest) -> Engine:
    """The engines that always run on this machine (no skip possible)."""
    return make_engine(request.param)
