"""JAX engine: pure ``jnp`` functions under ``jax.jit``; works on tracers (jit, vmap, grad).

String and shape options are static arguments, values are traced, so a call with the same shapes
and dtypes never retraces.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

name = "jax"


def namespace() -> Any:
    return jnp


def asarray(x: Any) -> Any:
    if isinstance(x, (jax.Array, jax.core.Tracer)):
        return x
    if isinstance(x, np.ndarray) and not x.dtype.isnative:  # jax refuses non-native byte order
        x = x.astype(x.dtype.newbyteorder("="))
    return jnp.asarray(x)


def native(types: set[type]) -> bool:
    """Whether :func:`asarray` returns arrays of every one of ``types`` as they are."""
    return all(issubclass(t, (jax.Array, jax.core.Tracer)) for t in types)


def wide_float() -> np.dtype:
    """float64 when x64 is enabled, otherwise float32 (jax would silently narrow it)."""
    return np.dtype(jax.dtypes.canonicalize_dtype(np.float64))


def describe() -> str:
    devices = ", ".join(sorted({d.platform for d in jax.devices()}))
    return f"jax {jax.__version__} on {devices}, x64 {'on' if jax.config.jax_enable_x64 else 'off'}"


# Family modules.
from .boxes import box_pair  # noqa: E402
from . import semantic  # noqa: E402
from .masks import mask_boxes, mask_pair, pack_masks  # noqa: E402
from . import reductions  # noqa: E402  (fused max / top-k / pairs)
from .matching import match  # noqa: E402  (COCO greedy and optimal matching)
from . import ragged  # noqa: E402  (segmented IoU: many images in one call)
