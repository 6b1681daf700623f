"""Box layouts, written once against an array namespace (numpy, cupy or jax.numpy).

A box of ``d`` spatial dimensions has ``2 * d`` numbers. 'xyxy' is (min corner, max corner),
'xywh' is (min corner, size), 'cxcywh' is (centre, size); the 3D names 'xyzxyz', 'xyzwhd' and
'cxcyczwhd' are the same layouts with one more axis.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def to_corners(xp: Any, b: Any, fmt: str) -> Any:
    if fmt == "xyxy":
        return b
    d = b.shape[-1] // 2
    first, size = b[..., :d], b[..., d:]
    if fmt == "xywh":
        return xp.concatenate([first, first + size], axis=-1)
    half = size / 2
    return xp.concatenate([first - half, first + half], axis=-1)


def from_corners(xp: Any, b: Any, fmt: str) -> Any:
    if fmt == "xyxy":
        return b
    d = b.shape[-1] // 2
    lo, hi = b[..., :d], b[..., d:]
    if fmt == "xywh":
        return xp.concatenate([lo, hi - lo], axis=-1)
    return xp.concatenate([(lo + hi) / 2, hi - lo], axis=-1)


def scale_limits(dtype: Any, dims: int) -> tuple[float, float]:
    """(big, tiny) for boxes of ``dims`` spatial dimensions computed in ``dtype``.

    A box whose coordinates all lie within ``[-big, big]`` and whose non-zero extents are all at
    least ``tiny`` has areas (volumes), unions, hulls and squared diagonals that neither overflow
    nor fall into the subnormal range, so the plain formulas are accurate. Every other box (and a
    box with a NaN or infinite coordinate) is computed, in each of its pairs, from extents divided
    by the enclosing box: the same value, without overflow or underflow.
    float32: 2D 2**61, 3D 2**41; float64: 2D 2**509, 3D 2**339; ``tiny = 1 / big``. The CUDA
    kernels hold the same values (``Limit`` in ``fastiou/cuda/boxes.cu``).
    """
    emax = np.finfo(dtype).maxexp
    exponent = (emax - 6) // 2 if dims == 2 else (emax - 5) // 3
    return 2.0**exponent, 2.0**-exponent
