"""Checks shared by every public function: shapes, formats, dtypes and the messages they raise.

Imports no engine: it reads only ``.shape``, ``.ndim`` and ``.dtype``, which every array library
(tracers included) provides.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

BOX_FORMATS = ("xyxy", "xywh", "cxcywh")
_BOX_FORMAT_ALIASES_3D = {"xyzxyz": "xyxy", "xyzwhd": "xywh", "cxcyczwhd": "cxcywh"}
REDUCTIONS = ("none", "mean", "sum")


def describe(x: Any) -> str:
    """``shape (3, 4) and dtype float32`` for error messages."""
    return f"shape {tuple(x.shape)} and dtype {x.dtype}"


def is_float_dtype(dtype: Any) -> bool:
    dtype = np.dtype(dtype)
    return dtype.kind == "f" or dtype.name == "bfloat16"


def _numeric_kind(func: str, name: str, x: Any) -> str:
    dtype = np.dtype(x.dtype)
    if is_float_dtype(dtype):
        return "f"
    if dtype.kind in "iu":
        return "i"
    raise TypeError(
        f"{func}: {name} must hold integer or floating coordinates, got {describe(x)}"
    )


def result_dtypes(
    func: str, arrays: dict[str, Any], *, wide: Any = np.float64
) -> tuple[np.dtype, np.dtype]:
    """(compute dtype, output dtype) for coordinates.

    float64 anywhere -> float64 out; otherwise float32 out. Integer coordinates are computed in
    ``wide`` (float64: exact differences and products up to 2**31; an engine without float64,
    such as JAX with x64 disabled, passes float32) and returned as float32.
    """
    kinds = {name: _numeric_kind(func, name, x) for name, x in arrays.items()}
    any64 = any(np.dtype(x.dtype) == np.float64 for x in arrays.values())
    out = np.dtype(np.float64 if any64 else np.float32)
    compute = np.dtype(wide) if (any64 or "i" in kinds.values()) else out
    return compute, out


def box_format(func: str, fmt: Any, dims: int) -> str:
    """Canonical format name ('xyxy', 'xywh' or 'cxcywh') for boxes of ``dims`` spatial dims."""
    if isinstance(fmt, str):
        if fmt in BOX_FORMATS:
            return fmt
        if fmt in _BOX_FORMAT_ALIASES_3D and dims == 3:
            return _BOX_FORMAT_ALIASES_3D[fmt]
    names = BOX_FORMATS + (tuple(_BOX_FORMAT_ALIASES_3D) if dims == 3 else ())
    raise ValueError(
        f"{func}: fmt must be one of {', '.join(map(repr, names))} for {dims}D boxes, got {fmt!r}"
    )


def boxes(func: str, name: str, x: Any, *, min_ndim: int, dims: tuple[int, ...] = (2, 3)) -> int:
    """Check a box array ``(..., 2 * dims)``; return the number of spatial dimensions."""
    _numeric_kind(func, name, x)
    sizes = tuple(2 * d for d in dims)
    if x.ndim < min_ndim or x.shape[-1] not in sizes:
        lead = "(..., N, " if min_ndim >= 2 else "(..., "
        wanted = " or ".join(f"{lead}{s})" for s in sizes)
        raise ValueError(f"{func}: {name} must have shape {wanted}, got {describe(x)}")
    return x.shape[-1] // 2


class BoxPair(NamedTuple):
    dims: int
    fmt: str
    batch: tuple[int, ...]
    n: int
    m: int
    compute: np.dtype
    out: np.dtype

    @property
    def out_shape(self) -> tuple[int, ...]:
        return self.batch + ((self.n,) if self.m < 0 else (self.n, self.m))


def box_pair(
    func: str, b1: Any, b2: Any, *, fmt: Any, aligned: Any, dims: tuple[int, ...] = (2, 3),
    wide: Any = np.float64,
) -> BoxPair:
    """Validate two box sets for a pairwise (``(..., N, M)``) or aligned (``(..., N)``) op."""
    if not isinstance(aligned, (bool, np.bool_)):
        raise TypeError(f"{func}: aligned must be a bool, got {aligned!r}")
    d1 = boxes(func, "boxes1", b1, min_ndim=2, dims=dims)
    d2 = boxes(func, "boxes2", b2, min_ndim=2, dims=dims)
    if d1 != d2:
        raise ValueError(
            f"{func}: boxes1 and boxes2 must have the same last dimension, got {describe(b1)} "
            f"and {describe(b2)}"
        )
    canonical = box_format(func, fmt, d1)
    try:
        batch = tuple(np.broadcast_shapes(tuple(b1.shape[:-2]), tuple(b2.shape[:-2])))
    except ValueError:
        raise ValueError(
            f"{func}: the leading (batch) dimensions of boxes1 and boxes2 must broadcast, got "
            f"{describe(b1)} and {describe(b2)}"
        ) from None
    n, m = b1.shape[-2], b2.shape[-2]
    if aligned and n != m:
        raise ValueError(
            f"{func}: aligned=True needs as many boxes in boxes1 as in boxes2, got {describe(b1)} "
            f"and {describe(b2)}"
        )
    compute, out = result_dtypes(func, {"boxes1": b1, "boxes2": b2}, wide=wide)
    return BoxPair(d1, canonical, batch, n, -1 if aligned else m, compute, out)


def zero_division(func: str, value: Any) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{func}: zero_division must be a real number, got {value!r}")
    return float(value)


def reduction(func: str, value: Any) -> str:
    if value not in REDUCTIONS:
        raise ValueError(
            f"{func}: reduction must be one of {', '.join(map(repr, REDUCTIONS))}, got {value!r}"
        )
    return value


def out_array(func: str, out: Any, shape: tuple[int, ...], dtype: np.dtype) -> None:
    """``out=`` must match the result exactly and be C-contiguous (it is written in place)."""
    if tuple(out.shape) != tuple(shape) or np.dtype(out.dtype) != dtype:
        raise ValueError(
            f"{func}: out must have shape {tuple(shape)} and dtype {dtype}, got {describe(out)}"
        )
    if not out.flags.c_contiguous:
        raise ValueError(f"{func}: out must be C-contiguous")


def size(shape: tuple[int, ...]) -> int:
    return math.prod(shape)
