"""Checks shared by every public function: shapes, formats, dtypes and the messages they raise.

Imports no engine: it reads only ``.shape``, ``.ndim`` and ``.dtype``, which every array library
(tracers included) provides.
"""

from __future__ import annotations

import functools
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
    # By kind and size, so that a non-native byte order ('>f8') still counts as float64.
    any64 = any(np.dtype(x.dtype).kind == "f" and np.dtype(x.dtype).itemsize == 8
                for x in arrays.values())
    out = np.dtype(np.float64 if any64 else np.float32)
    compute = np.dtype(wide) if (any64 or "i" in kinds.values()) else out
    return compute, out


def box_format(func: str, fmt: Any, dims: int, name: str = "fmt") -> str:
    """Canonical format name ('xyxy', 'xywh' or 'cxcywh') for boxes of ``dims`` spatial dims;
    ``name`` is the argument named in the error."""
    if isinstance(fmt, str):
        if fmt in BOX_FORMATS:
            return fmt
        if fmt in _BOX_FORMAT_ALIASES_3D and dims == 3:
            return _BOX_FORMAT_ALIASES_3D[fmt]
    names = BOX_FORMATS + (tuple(_BOX_FORMAT_ALIASES_3D) if dims == 3 else ())
    raise ValueError(
        f"{func}: {name} must be one of {', '.join(map(repr, names))} for {dims}D boxes, "
        f"got {fmt!r}"
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
    try:
        return float(value)
    except OverflowError:  # a Python int past the float range, e.g. 10**400
        raise ValueError(
            f"{func}: zero_division must be a real number within the float64 range, got an "
            f"integer of {len(str(abs(value)))} digits"
        ) from None


def _one_of(value: Any, allowed: tuple[str, ...]) -> bool:
    """Whether ``value`` is one of the strings ``allowed`` (an array is not, whatever it holds)."""
    return isinstance(value, str) and value in allowed


def reduction(func: str, value: Any) -> str:
    if not _one_of(value, REDUCTIONS):
        raise ValueError(
            f"{func}: reduction must be one of {', '.join(map(repr, REDUCTIONS))}, got {value!r}"
        )
    return value


def out_array(func: str, out: Any, shape: tuple[int, ...], dtype: np.dtype,
              array_type: type) -> None:
    """``out=`` must be an ``array_type`` (the engine's array) that matches the result exactly and
    is C-contiguous and writeable (it is written in place)."""
    if not isinstance(out, array_type):
        kind = type(out)
        got = kind.__qualname__
        if kind.__module__ != "builtins":
            got = f"{kind.__module__}.{got}"
        raise TypeError(
            f"{func}: out must be a {array_type.__module__}.{array_type.__name__} of shape "
            f"{tuple(shape)} and dtype {dtype}, got {got}"
        )
    if tuple(out.shape) != tuple(shape) or np.dtype(out.dtype) != dtype:
        raise ValueError(
            f"{func}: out must have shape {tuple(shape)} and dtype {dtype}, got {describe(out)}"
        )
    if not out.flags.c_contiguous:
        raise ValueError(f"{func}: out must be C-contiguous")
    if not getattr(out.flags, "writeable", True):  # CuPy arrays have no such flag
        raise ValueError(f"{func}: out must be writeable, got a read-only array of {describe(out)}")


def size(shape: tuple[int, ...]) -> int:
    return math.prod(shape)


# --------------------------------------------------------------------------------------------
# Semantic segmentation

AVERAGES = ("macro", "micro", "weighted", "none")
OUT_OF_RANGE = ("raise", "ignore")
MAX_MATRIX_BYTES = 4 * 2**30  # largest (C, C) int64 confusion matrix: 4 GiB
# 23170 classes; also keeps num_classes**2 + 2 bins below 2**31 (int32 indices on every engine).
MAX_MATRIX_CLASSES = math.isqrt(MAX_MATRIX_BYTES // 8)


class LabelSpec(NamedTuple):
    """Validated options of a confusion-matrix count."""

    num_classes: int
    ignore_index: int | None  # as given
    ignore_active: bool  # ignore_index can equal a value of the target's dtype
    raise_out_of_range: bool

    @property
    def bins(self) -> int:
        """Flat counts: num_classes**2 cells, then ignored pixels, then out-of-range pixels."""
        return self.num_classes * self.num_classes + 2


def _is_integer(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def num_classes(func: str, value: Any) -> int:
    if _is_integer(value) and value > MAX_MATRIX_CLASSES:
        c = int(value)  # refused before anything of that size is allocated
        size = f"{c * c * 8 / 2**30:.1f} GiB" if c < 2**64 else "more than 2**131 bytes"
        raise ValueError(
            f"{func}: num_classes={c} needs a {c} x {c} int64 confusion matrix of {size} (held "
            f"up to 3 times while counting); the limit is "
            f"{MAX_MATRIX_BYTES // 2**30} GiB, num_classes <= {MAX_MATRIX_CLASSES}"
        )
    if not _is_integer(value) or not 1 <= value <= MAX_MATRIX_CLASSES:
        raise ValueError(
            f"{func}: num_classes must be an integer in [1, {MAX_MATRIX_CLASSES}], got {value!r}"
        )
    return int(value)


def ignore_index(func: str, value: Any) -> int | None:
    if value is None:
        return None
    if not _is_integer(value):
        raise TypeError(f"{func}: ignore_index must be an integer or None, got {value!r}")
    if not -(2**63) <= value < 2**64:
        raise ValueError(f"{func}: ignore_index must fit in 64 bits, got {value!r}")
    return int(value)


def out_of_range(func: str, value: Any) -> bool:
    """True when out-of-range labels must raise, False when they are dropped."""
    if not _one_of(value, OUT_OF_RANGE):
        raise ValueError(
            f"{func}: out_of_range must be one of {', '.join(map(repr, OUT_OF_RANGE))}, "
            f"got {value!r}"
        )
    return value == "raise"


def average(func: str, value: Any) -> str:
    if not _one_of(value, AVERAGES):
        raise ValueError(
            f"{func}: average must be one of {', '.join(map(repr, AVERAGES))}, got {value!r}"
        )
    return value


def label_maps(func: str, pred: Any, target: Any) -> None:
    """Two integer label maps of the same shape (any shape, any integer dtype)."""
    for name, x in (("pred", pred), ("target", target)):
        if np.dtype(x.dtype).kind not in "iu":
            raise TypeError(
                f"{func}: {name} must hold integer class labels, got {describe(x)}; turn scores "
                "into labels first (e.g. argmax over the class axis)"
            )
    if tuple(pred.shape) != tuple(target.shape):
        raise ValueError(
            f"{func}: pred and target must have the same shape, got pred with {describe(pred)} "
            f"and target with {describe(target)}"
        )


def label_spec(
    func: str, pred: Any, target: Any, classes: Any, ignore: Any, mode: Any
) -> LabelSpec:
    """Check label maps and the options ``num_classes``, ``ignore_index``, ``out_of_range``."""
    label_maps(func, pred, target)
    c = num_classes(func, classes)
    ignore = ignore_index(func, ignore)
    raise_ = out_of_range(func, mode)
    active = False
    if ignore is not None:
        low, high = _integer_range(np.dtype(target.dtype))
        active = low <= ignore <= high
    return LabelSpec(c, ignore, active, raise_)


@functools.lru_cache(maxsize=None)
def _integer_range(dtype: np.dtype) -> tuple[int, int]:
    """(min, max) of an integer dtype (``np.iinfo`` costs microseconds a call)."""
    info = np.iinfo(dtype)
    return int(info.min), int(info.max)


def outside_labels(x: Any, classes: int) -> Any:
    """Where the labels ``x`` (any array library, traced too) fall outside [0, classes),
    compared in their own dtype (no widened copy, no overflow of the bound)."""
    info = np.iinfo(np.dtype(x.dtype))
    out = x > min(classes - 1, int(info.max))
    return out | (x < 0) if info.min < 0 else out


def _listing(values: list[int], limit: int = 10) -> str:
    shown = ", ".join(map(str, values[:limit]))
    return shown + (f", ... ({len(values)} distinct values)" if len(values) > limit else "")


def out_of_range_error(
    func: str, spec: LabelSpec, pred_values: list[int], target_values: list[int]
) -> ValueError:
    """The error for labels outside [0, num_classes) (other than ignore_index in the target)."""
    found = []
    if target_values:
        found.append(f"target holds {_listing(target_values)}")
    if pred_values:
        found.append(f"pred holds {_listing(pred_values)} (where target is not ignored)")
    allowed = f"[0, {spec.num_classes})"
    if spec.ignore_index is not None:
        allowed += f" or, in target, ignore_index={spec.ignore_index}"
    return ValueError(
        f"{func}: labels must be in {allowed}, but {' and '.join(found)}; "
        "pass out_of_range='ignore' to drop those pixels"
    )


def traced_out_of_range_error(func: str, count: int) -> ValueError:
    return ValueError(
        f"{func}: {count} pixel(s) had labels outside [0, num_classes) in an update made under "
        "jax tracing (jit, vmap, pmap), where the values could not be named; check the labels "
        "outside jit, or pass out_of_range='ignore' to drop them"
    )


def dask_backend(func: str, backend: Any) -> None:
    if backend is not None:
        raise TypeError(
            f"{func}: backend={backend!r} cannot be combined with Dask arrays, whose chunks are "
            "each counted by the engine of their own array type; convert the chunks instead (e.g. "
            "x.map_blocks(cupy.asarray) to count them on GPUs)"
        )


def confusion(func: str, cm: Any) -> int:
    """A square (C, C) matrix of counts; returns C."""
    kind = np.dtype(cm.dtype).kind
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or kind not in "iuf":
        raise ValueError(
            f"{func}: cm must be a square (C, C) matrix of integer or floating counts "
            f"(rows = target, columns = prediction), got {describe(cm)}"
        )
    return int(cm.shape[0])


def all_absent_message(func: str) -> str:
    return (
        f"{func}: no class occurs in target or prediction (empty input, every pixel ignored, or "
        "only the ignored class); the mean IoU is NaN"
    )


def same_metric(func: str, mine: tuple[Any, ...], theirs: tuple[Any, ...]) -> None:
    if mine != theirs:
        raise ValueError(
            f"{func}: can only merge a metric with the same (num_classes, ignore_index), got "
            f"{mine} and {theirs}"
        )


# --------------------------------------------------------------------------------------------
# Masks

DEFAULT_MEMORY_BUDGET = 256 * 2**20  # bytes of temporaries a mask call may hold at once


class MaskSpec(NamedTuple):
    """A validated dense mask array ``(..., H, W)``: how its pixels become foreground."""

    batch: tuple[int, ...]  # every dimension before (H, W): (..., N) for a set of masks
    height: int
    width: int
    rule: str  # 'bool' (as given), 'nonzero' (integers) or 'threshold' (value >= threshold)
    threshold: float | None


def mask_array(func: str, name: str, x: Any, *, threshold: Any, min_ndim: int) -> MaskSpec:
    """Check a dense mask array ``(..., H, W)`` with at least ``min_ndim`` dimensions."""
    dtype = np.dtype(x.dtype)
    lead = "(..., N, H, W)" if min_ndim >= 3 else "(..., H, W)"
    if x.ndim < min_ndim:
        raise ValueError(f"{func}: {name} must have shape {lead}, got {describe(x)}")
    if dtype.kind not in "biuf" and dtype.name != "bfloat16":
        raise TypeError(
            f"{func}: {name} must hold bool, integer or floating values, got {describe(x)}"
        )
    if threshold is not None:
        if isinstance(threshold, (bool, np.bool_)) or not isinstance(
            threshold, (int, float, np.integer, np.floating)
        ) or math.isnan(threshold):
            raise TypeError(f"{func}: threshold must be a real number or None, got {threshold!r}")
        if dtype.kind == "b":
            raise ValueError(
                f"{func}: threshold={threshold!r} was given but {name} is a bool mask "
                f"({describe(x)}), which is used as given; pass threshold=None"
            )
        rule = "threshold"
    elif dtype.kind not in "biu" and is_float_dtype(dtype):
        raise ValueError(
            f"{func}: {name} holds floating values ({describe(x)}); pass threshold= (foreground "
            "is value >= threshold), or give bool or integer masks (non-zero is foreground)"
        )
    else:
        rule = "bool" if dtype.kind == "b" else "nonzero"
    *batch, height, width = (int(s) for s in x.shape)
    return MaskSpec(tuple(batch), height, width, rule, None if threshold is None else float(threshold))


class MaskPair(NamedTuple):
    batch: tuple[int, ...]
    n: int
    m: int  # -1 when aligned

    @property
    def out_shape(self) -> tuple[int, ...]:
        return self.batch + ((self.n,) if self.m < 0 else (self.n, self.m))


def mask_pair(
    func: str, shape1: tuple[int, ...], shape2: tuple[int, ...], *, aligned: Any
) -> MaskPair:
    """Check two mask sets of shapes ``(..., N, H, W)`` and ``(..., M, H, W)``."""
    if not isinstance(aligned, (bool, np.bool_)):
        raise TypeError(f"{func}: aligned must be a bool, got {aligned!r}")
    if tuple(shape1[-2:]) != tuple(shape2[-2:]):
        raise ValueError(
            f"{func}: masks1 and masks2 must have the same (H, W), got masks of shape "
            f"{tuple(shape1)} and {tuple(shape2)}"
        )
    try:
        lead1, lead2 = tuple(shape1[:-3]), tuple(shape2[:-3])
        batch = lead1 if lead1 == lead2 else tuple(np.broadcast_shapes(lead1, lead2))
    except ValueError:
        raise ValueError(
            f"{func}: the leading (batch) dimensions of masks1 and masks2 must broadcast, got "
            f"masks of shape {tuple(shape1)} and {tuple(shape2)}"
        ) from None
    n, m = shape1[-3], shape2[-3]
    if aligned and n != m:
        raise ValueError(
            f"{func}: aligned=True needs as many masks in masks1 as in masks2, got masks of "
            f"shape {tuple(shape1)} and {tuple(shape2)}"
        )
    return MaskPair(batch, n, -1 if aligned else m)


def memory_budget(func: str, value: Any) -> int:
    """Bytes of temporaries a mask call may use at once (None: the default)."""
    if value is None:
        return DEFAULT_MEMORY_BUDGET
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(
            f"{func}: memory_budget must be a positive number of bytes or None, got {value!r}"
        )
    return int(value)


# --------------------------------------------------------------------------------------------
# Segments (one per image, or per image and category) of concatenated arrays


def segment_offsets(func: str, name: str, offsets: Any, total: int) -> np.ndarray:
    """Host offsets ``(S + 1,)`` of segments of an array of ``total`` rows: integers, starting at
    0, non-decreasing, ending at ``total``. Returned as a contiguous int64 copy (they may come from
    a user's file)."""
    if hasattr(offsets, "__cuda_array_interface__") or type(offsets).__module__.startswith("jax"):
        raise TypeError(
            f"{func}: {name} must be host integers (a list or numpy.ndarray), got "
            f"{type(offsets).__name__}; the offsets decide output sizes, so they live on the host"
        )
    a = np.asarray(offsets)
    if a.ndim != 1 or a.shape[0] < 1 or (a.size and a.dtype.kind not in "iu"):
        raise ValueError(
            f"{func}: {name} must be a 1-D sequence of S + 1 integer offsets, got {describe(a)}"
        )
    if a.dtype.kind == "u" and a.size and int(a.max()) > np.iinfo(np.int64).max:
        raise ValueError(f"{func}: {name} holds offsets past 2**63 - 1")
    a = np.ascontiguousarray(a, dtype=np.int64)
    if a[0] != 0 or a[-1] != total:
        raise ValueError(
            f"{func}: {name} must start at 0 and end at the number of rows ({total}), got "
            f"{int(a[0])} ... {int(a[-1])}"
        )
    steps = np.diff(a)
    if steps.size and steps.min() < 0:
        k = int(np.argmax(steps < 0))
        raise ValueError(
            f"{func}: {name} must be non-decreasing, but {name}[{k + 1}] = {int(a[k + 1])} < "
            f"{name}[{k}] = {int(a[k])}"
        )
    return a


def segment_blocks(func: str, offsets1: np.ndarray, offsets2: np.ndarray) -> np.ndarray:
    """Start of each segment's ``N_i x M_i`` block in the concatenated output ``(S + 1,)`` int64
    (the last entry is the total), refusing a total past 2**62 before any product can overflow."""
    if offsets1.shape != offsets2.shape:
        raise ValueError(
            f"{func}: offsets1 and offsets2 must describe as many segments, got "
            f"{offsets1.shape[0] - 1} and {offsets2.shape[0] - 1}"
        )
    n, m = np.diff(offsets1), np.diff(offsets2)
    # Each count is below 2**63, so the float64 products are within a relative 2**-52 of exact.
    if float(np.sum(n.astype(np.float64) * m.astype(np.float64))) >= 2.0**62:
        raise ValueError(
            f"{func}: the segments hold more than 2**62 pairs in all; the output cannot be "
            "allocated"
        )
    starts = np.zeros(n.shape[0] + 1, dtype=np.int64)
    np.cumsum(n * m, out=starts[1:])
    return starts


# --------------------------------------------------------------------------------------------
# Matching

MATCH_METHODS = ("greedy", "optimal")
# pycocotools compares with min(t, 1 - 1e-10), so that t == 1 still matches IoU 1.
_COCO_TOP = 1 - 1e-10


class MatchSpec(NamedTuple):
    """Validated options of a :func:`fastiou.match` call."""

    batch: tuple[int, ...]  # leading dimensions of the result (iou's, scores' and masks' broadcast)
    g: int
    p: int
    compute: np.dtype  # float32 or float64: the dtype IoUs are compared in
    thresholds: np.ndarray  # (T,) float64, as given
    scalar: bool  # threshold given as one number: the result has no leading T axis
    method: str


def match_thresholds(func: str, value: Any, name: str = "threshold") -> tuple[np.ndarray, bool]:
    """(thresholds as a (T,) float64 array, whether one number was given)."""
    scalar = np.ndim(value) == 0 if not isinstance(value, (str, bytes)) else True
    try:
        thr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        thr = None
    if (thr is None or isinstance(value, (bool, np.bool_, str, bytes)) or thr.ndim > 1
            or (not scalar and thr.size == 0)):
        raise TypeError(
            f"{func}: {name} must be a number in [0, 1] or a non-empty 1-D sequence of them, "
            f"got {value!r}"
        )
    thr = thr.reshape(-1)
    bad = ~((thr >= 0) & (thr <= 1))  # NaN is bad too
    if bad.any():
        raise ValueError(f"{func}: {name} must lie in [0, 1], got {thr[bad].tolist()}")
    return thr, scalar


def match_cutoffs(thresholds: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Each threshold as pycocotools compares it, ``min(t, 1 - 1e-10)``, rounded up to ``dtype``.

    For an IoU ``v`` of ``dtype``, ``v >= cutoff`` holds exactly when ``float64(v) >= min(t,
    1 - 1e-10)``, so float32 IoUs are selected as a float64 comparison would select them.
    """
    exact = np.minimum(thresholds, _COCO_TOP)
    cut = exact.astype(dtype)
    low = cut.astype(np.float64) < exact
    cut[low] = np.nextafter(cut[low], dtype.type(np.inf))
    return cut


def _flag_kind(func: str, name: str, x: Any, what: str) -> None:
    kind = np.dtype(x.dtype).kind
    if kind not in "biu":
        raise TypeError(f"{func}: {name} must be a bool (or integer) array {what}, got {describe(x)}")


def match_spec(
    func: str, iou: Any, *, scores: Any, threshold: Any, method: Any, gt_flags: dict[str, Any],
    pred_flags: dict[str, Any], wide: Any = np.float64,
) -> MatchSpec:
    """Check the arguments of a matching call: ``iou (..., G, P)``, ``scores (..., P)``,
    ``gt_flags`` (name -> ``(..., G)`` array or None), ``pred_flags`` (``(..., P)``)."""
    if not isinstance(method, str) or method not in MATCH_METHODS:
        raise ValueError(
            f"{func}: method must be one of {', '.join(map(repr, MATCH_METHODS))}, got {method!r}"
        )
    if not is_float_dtype(iou.dtype):
        raise TypeError(f"{func}: iou must be a floating (..., G, P) IoU matrix, got {describe(iou)}")
    if iou.ndim < 2:
        raise ValueError(f"{func}: iou must have shape (..., G, P), got {describe(iou)}")
    g, p = int(iou.shape[-2]), int(iou.shape[-1])
    shapes = [tuple(iou.shape[:-2])]
    if scores is not None:
        if np.dtype(scores.dtype).kind not in "iuf" and not is_float_dtype(scores.dtype):
            raise TypeError(f"{func}: scores must be a numeric (..., P) array, got {describe(scores)}")
        if scores.ndim < 1 or scores.shape[-1] != p:
            raise ValueError(
                f"{func}: scores must have shape (..., P) with P = {p} (iou has shape "
                f"{tuple(iou.shape)}), got {describe(scores)}"
            )
        shapes.append(tuple(scores.shape[:-1]))
    for flags, size, label in ((gt_flags, g, "G"), (pred_flags, p, "P")):
        for name, x in flags.items():
            if x is None:
                continue
            _flag_kind(func, name, x, f"of shape (..., {label})")
            if x.ndim < 1 or x.shape[-1] != size:
                raise ValueError(
                    f"{func}: {name} must have shape (..., {label}) with {label} = {size} (iou has "
                    f"shape {tuple(iou.shape)}), got {describe(x)}"
                )
            shapes.append(tuple(x.shape[:-1]))
    try:
        batch = tuple(int(d) for d in np.broadcast_shapes(*shapes))
    except ValueError:
        raise ValueError(
            f"{func}: the leading (batch) dimensions of iou, scores and the masks must broadcast, "
            f"got {shapes}"
        ) from None
    thresholds, scalar = match_thresholds(func, threshold)
    wide = np.dtype(wide)
    compute = np.dtype(np.float64 if np.dtype(iou.dtype) == np.float64 and wide == np.float64
                       else np.float32)
    return MatchSpec(batch, g, p, compute, thresholds, scalar, method)


def match_segments(
    func: str, iou_size: int, iou_offsets: Any, gt_offsets: Any, pred_offsets: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Check the offsets of concatenated per-image IoU blocks (host arrays); return them as int64.

    ``gt_offsets`` and ``pred_offsets`` are ``(n + 1,)``, start at 0 and never decrease;
    ``iou_offsets`` is ``(n,)``; block i, ``G_i * P_i`` values, must lie inside ``iou_flat``.
    """
    arrays = []
    for name, x, extra in (("iou_offsets", iou_offsets, 0), ("gt_offsets", gt_offsets, 1),
                           ("pred_offsets", pred_offsets, 1)):
        a = np.asarray(x)
        if a.dtype.kind not in "iu" or a.ndim != 1:
            raise TypeError(f"{func}: {name} must be a 1-D integer array, got {describe(a)}")
        if a.dtype.kind == "u" and a.size and a.max() > np.iinfo(np.int64).max:
            raise ValueError(f"{func}: {name} holds values past 2**63 - 1")
        arrays.append(np.ascontiguousarray(a, dtype=np.int64))
    iou_off, gt_off, pred_off = arrays
    n = iou_off.shape[0]
    for name, a in (("gt_offsets", gt_off), ("pred_offsets", pred_off)):
        if a.shape[0] != n + 1:
            raise ValueError(
                f"{func}: {name} must have shape (n + 1,) = ({n + 1},) for n = {n} images "
                f"(the length of iou_offsets), got shape {a.shape}"
            )
        if a[0] != 0 or (np.diff(a) < 0).any():
            raise ValueError(f"{func}: {name} must start at 0 and never decrease")
    gs, ps = np.diff(gt_off), np.diff(pred_off)
    limit = 2**62
    over = (gs > 0) & (ps > limit // np.maximum(gs, 1))
    if over.any() or (iou_off < 0).any() or (iou_off > limit).any():
        raise ValueError(f"{func}: iou_offsets or the block sizes G_i * P_i are out of range")
    end = iou_off + gs * ps  # both terms <= 2**62: no overflow
    if (end > iou_size).any():
        i = int(np.argmax(end > iou_size))
        raise ValueError(
            f"{func}: the IoU block of image {i} ({gs[i]} x {ps[i]} at offset {iou_off[i]}) "
            f"ends past the end of iou_flat (size {iou_size})"
        )
    return iou_off, gt_off, pred_off
