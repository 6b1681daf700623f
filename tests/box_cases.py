"""Shared pieces of the box tests: test data, the tolerance table, expected output dtypes."""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import ml_dtypes
import numpy as np

import fastiou

# Public pair functions by op name, and the ops that accept 3D boxes.
PAIR_FUNCS = {
    "iou": fastiou.box_iou,
    "giou": fastiou.generalized_box_iou,
    "diou": fastiou.distance_box_iou,
    "ciou": fastiou.complete_box_iou,
    "ioa": fastiou.box_ioa,
}
LOSS_FUNCS = {
    "giou": fastiou.generalized_box_iou_loss,
    "diou": fastiou.distance_box_iou_loss,
    "ciou": fastiou.complete_box_iou_loss,
}
OPS_2D = tuple(PAIR_FUNCS)
OPS_3D = ("iou", "giou", "ioa")
OP_DIMS = [(op, 2) for op in OPS_2D] + [(op, 3) for op in OPS_3D]
FORMATS = ("xyxy", "xywh", "cxcywh")

BFLOAT16 = np.dtype(ml_dtypes.bfloat16)
FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")
INT_DTYPES = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
ALL_DTYPES = FLOAT_DTYPES + INT_DTYPES


def dtype_of(name: str) -> np.dtype:
    return BFLOAT16 if name == "bfloat16" else np.dtype(name)


# One table: input dtype -> (rtol, atol) against the float64 reference evaluated on the very values
# the engine received. Results lie in [-1.5, 1].
# - float64 is computed in float64.
# - float32, float16 and bfloat16 are computed in float32 (the test values are exact in each).
# - integers are computed in float64 and rounded once to float32 on output.
TOLERANCE: dict[str, tuple[float, float]] = {
    "float64": (1e-12, 1e-12),
    "float32": (1e-5, 2e-6),
    "float16": (1e-5, 2e-6),
    "bfloat16": (1e-5, 2e-6),
    **{name: (2e-7, 1e-7) for name in INT_DTYPES},
}


def jax_x64() -> bool:
    import jax

    return bool(jax.config.jax_enable_x64)


def computes_in_float32(engine: Any) -> bool:
    """JAX with x64 disabled turns float64 and integer input into float32 before computing."""
    return engine.name == "jax" and not jax_x64()


def tolerance(engine: Any, *dtypes: str) -> dict[str, float]:
    names = ["float32" if computes_in_float32(engine) and d in ("float64",) + INT_DTYPES else d
             for d in dtypes]
    rtol = max(TOLERANCE[d][0] for d in names)
    atol = max(TOLERANCE[d][1] for d in names)
    return {"rtol": rtol, "atol": atol}


def out_dtype(engine: Any, *dtypes: str) -> np.dtype:
    """float64 for float64 input (on JAX only with x64 enabled), float32 for everything else."""
    if "float64" in dtypes and not computes_in_float32(engine):
        return np.dtype(np.float64)
    return np.dtype(np.float32)


@contextlib.contextmanager
def x64(engine: Any) -> Iterator[None]:
    """Enable JAX's 64-bit mode for the block when ``engine`` is JAX (no-op otherwise)."""
    if engine.name != "jax":
        yield
        return
    import jax

    with jax.enable_x64(True):
        yield


def random_boxes(
    rng: np.random.Generator, shape: tuple[int, ...], *, dims: int = 2, fmt: str = "xyxy",
    dtype: str = "float64",
) -> np.ndarray:
    """``(*shape, 2 * dims)`` boxes in ``fmt`` whose coordinates are exact in ``dtype``.

    Integers below 128 (multiples of 1/8 for float dtypes) so every dtype holds them exactly;
    sizes from -4 to 59, so some boxes are inverted or have zero extent along an axis (xyxy only:
    sizes stay >= 0 in the formats that store sizes, as a negative size is not a box).
    """
    first = rng.integers(0, 64, size=shape + (dims,)).astype(np.float64)
    size = rng.integers(-4, 60, size=shape + (dims,)).astype(np.float64)
    if dtype in FLOAT_DTYPES:
        first += rng.integers(0, 8, size=first.shape) / 8
        size += rng.integers(0, 8, size=size.shape) / 8
    if fmt == "xyxy":
        second = np.clip(first + size, 0, 127)
    else:
        second = np.maximum(size, 0)
    boxes = np.concatenate([first, second], axis=-1)
    return boxes.astype(dtype_of(dtype))


def box_sets(
    rng: np.random.Generator, shape1: tuple[int, ...], shape2: tuple[int, ...], *, dims: int = 2,
    fmt: str = "xyxy", dtype: str = "float64",
) -> tuple[np.ndarray, np.ndarray]:
    """Two random sets; the second starts with shifted copies of the first, so that many pairs
    overlap (and a few are identical)."""
    b1 = random_boxes(rng, shape1, dims=dims, fmt=fmt, dtype=dtype)
    b2 = random_boxes(rng, shape2, dims=dims, fmt=fmt, dtype=dtype)
    k = min(shape1[-1], shape2[-1])
    lead = np.broadcast_shapes(shape1[:-1], shape2[:-1])
    src = np.broadcast_to(b1[..., :k, :], lead + (k, 2 * dims)).astype(np.float64)
    shift = rng.integers(-2, 3, size=src.shape).astype(np.float64)
    shift[..., 0, :] = 0  # one identical pair per set
    if fmt != "xyxy":
        shift[..., dims:] = np.maximum(shift[..., dims:], 0)
    copies = np.clip(src + shift, 0, 127)
    b2 = np.broadcast_to(b2, lead + b2.shape[-2:]).copy()
    b2[..., :k, :] = copies.astype(b2.dtype)
    # Back to shape2: one slice along the batch dimensions that shape2 broadcasts.
    extra = len(lead) - (len(shape2) - 1)
    index = (0,) * extra + tuple(slice(0, 1) if s == 1 else slice(None) for s in shape2[:-1])
    return b1, b2[index]


# A handful of degenerate 2D boxes (xyxy): points, lines, inverted, identical, nested.
DEGENERATE_2D = np.array(
    [
        [0, 0, 0, 0],        # point at the origin
        [0, 0, 0, 0],        # the same point
        [3, 3, 3, 3],        # another point
        [0, 0, 5, 0],        # horizontal segment
        [2, -1, 2, 4],       # vertical segment
        [0, 0, 10, 10],      # a square
        [0, 0, 10, 10],      # the same square
        [10, 10, 0, 0],      # the square inverted: zero area
        [2, 2, 4, 8],        # nested in the square
        [20, 30, 21, 31],    # far away
    ],
    dtype=np.float64,
)
