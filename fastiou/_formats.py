"""Box layouts, written once against an array namespace (numpy, cupy or jax.numpy).

A box of ``d`` spatial dimensions has ``2 * d`` numbers. 'xyxy' is (min corner, max corner),
'xywh' is (min corner, size), 'cxcywh' is (centre, size); the 3D names 'xyzxyz', 'xyzwhd' and
'cxcyczwhd' are the same layouts with one more axis.
"""

from __future__ import annotations

from typing import Any


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
