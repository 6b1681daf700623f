"""Semantic segmentation code shared by the two array engines, NumPy (Numba) and CuPy (CUDA),
written once against the array API they share: the flat layout of the label maps, and the
streaming state, which is the (C, C) int64 confusion matrix itself on the labels' device. (The JAX
engine has its own pytree state, in ``jax_xla/semantic.py``.)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._validate import LabelSpec


def flat_pair(xp: Any, pred: Any, target: Any) -> tuple[Any, Any]:
    """Both maps as 1-D C-contiguous arrays of native byte order, in one element order: views
    when both are C- or both Fortran-contiguous, otherwise same-dtype copies (never widened)."""
    pred, target = (x if x.dtype.isnative else x.astype(x.dtype.newbyteorder("="))
                    for x in (pred, target))
    if pred.flags.f_contiguous and target.flags.f_contiguous and not (
        pred.flags.c_contiguous and target.flags.c_contiguous
    ):
        return pred.T.reshape(-1), target.T.reshape(-1)
    return xp.ascontiguousarray(pred).reshape(-1), xp.ascontiguousarray(target).reshape(-1)


def labels_known(x: Any) -> bool:
    """Whether the values of ``x`` can be inspected (always: these engines do not trace)."""
    return True


def state_from_counts(cm: Any, invalid: Any, spec: LabelSpec) -> Any:
    return cm  # already int64, on the labels' device; never written to in place


def state_merge(a: Any, b: Any) -> Any:
    return a + b


def state_matrix(state: Any) -> Any:
    return state.copy()  # the caller may write to it


def state_float(state: Any) -> Any:
    return state.astype(np.float64)


def state_invalid(state: Any) -> None:
    """Out-of-range pixels recorded under tracing: never, on these engines."""
    return None
