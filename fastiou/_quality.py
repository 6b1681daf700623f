"""The usual reading of an IoU score."""

from __future__ import annotations

import numbers
from typing import Any

EXCELLENT = 0.95
GOOD = 0.7


def _value(iou: Any) -> float:
    """``iou`` as a float: a real number, a NumPy scalar or a 0-d (or one-element) array of any
    engine; strings, None and bools are refused."""
    func = "iou_quality"
    if isinstance(iou, (str, bytes, bool)) or iou is None:
        raise TypeError(f"{func}: iou must be a real number, got {iou!r}")
    if isinstance(iou, numbers.Real):
        try:
            return float(iou)
        except OverflowError:  # a Python int past the float range
            raise ValueError(f"{func}: iou must be a real number in the float range, got an "
                             f"integer of {len(str(abs(iou)))} digits") from None
    dtype = getattr(iou, "dtype", None)
    shape = getattr(iou, "shape", None)
    kind = getattr(dtype, "kind", None)
    if shape is None or kind not in ("f", "i", "u") and getattr(dtype, "name", "") != "bfloat16":
        raise TypeError(f"{func}: iou must be a real number, got {iou!r}")
    size = 1
    for s in shape:
        size *= s
    if size != 1:
        raise ValueError(
            f"{func}: iou must be a single value, got an array of shape {tuple(shape)}"
        )
    return float(iou.reshape(()))


def iou_quality(iou: Any) -> str:
    """'excellent' above 0.95, 'good' above 0.7, 'poor' otherwise (NaN reads as 'poor').

    Parameters
    ----------
    iou : float
        A real number, NumPy scalar, or a one-element array (NumPy, CuPy, jax).

    Returns
    -------
    str
        'excellent', 'good' or 'poor'. A string, None or a bool is a TypeError.
    """
    value = _value(iou)
    if value > EXCELLENT:
        return "excellent"
    if value > GOOD:
        return "good"
    return "poor"
