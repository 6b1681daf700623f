"""Box IoU family on the Numba engine.

One compiled call per result. The pairwise kernel turns the second set into columns (structure of
arrays: corners, then area, then the CIoU aspect angle) so that the inner loop reads each
coordinate contiguously and vectorizes; the aligned kernel reads the corners in one pass. Both
find the extreme boxes themselves; where there is one, a second kernel computes its pairs again
by ``_scaled`` (compiled only by a process that meets such a box). The per-pair
formulas are small functions shared by both (and by the reductions, segmented and matching
kernels). Small calls run the serial build on the calling thread, large ones the parallel build.

:func:`box_pair_fast` takes the common call (2-D C-contiguous 'xyxy' float32/float64 NumPy arrays
of one dtype) with a few attribute checks; :func:`box_pair` is the general path, after
``_validate.box_pair``.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numba
import numpy as np

from ... import _formats
from ..._validate import BoxPair
from . import kernel, variant

# --------------------------------------------------------------------------------------------
# Scalar helpers. ``v - v`` is a typed zero for finite v, so no literal widens a float32
# computation to float64; NaN is carried by comparisons, never by ``v - v``.


@kernel()
def _clamp0(v):
    return v - v if v <= 0 else v  # NaN <= 0 is false: NaN is returned as is


@kernel()
def _nan_of(value, other):
    """``value``, or ``other`` when ``other`` is NaN."""
    return value if other == other else other


@kernel()
def _ratio(num, den, fallback):
    return num / den if den != 0 else fallback


@kernel()
def _div0(num, den):
    return num / den if den != 0 else den


# --------------------------------------------------------------------------------------------
# Columns: 2D -> x1 y1 x2 y2 area angle; 3D -> x1 y1 z1 x2 y2 z2 volume.


@kernel()
def _columns2(b, cols):
    for k in range(b.shape[0]):
        x1, y1, x2, y2 = b[k, 0], b[k, 1], b[k, 2], b[k, 3]
        w = _clamp0(x2 - x1)
        h = _clamp0(y2 - y1)
        cols[0, k], cols[1, k], cols[2, k], cols[3, k] = x1, y1, x2, y2
        cols[4, k] = w * h
        # atan(w / h) for h > 0, defined (0 or pi/2) for degenerate boxes.
        cols[5, k] = math.atan2(w, h)


@kernel()
def _columns3(b, cols):
    for k in range(b.shape[0]):
        for d in range(6):
            cols[d, k] = b[k, d]
        cols[6, k] = (
            _clamp0(b[k, 3] - b[k, 0]) * _clamp0(b[k, 4] - b[k, 1]) * _clamp0(b[k, 5] - b[k, 2])
        )


@kernel()
def _load2(a, i):
    return (a[0, i], a[1, i], a[2, i], a[3, i], a[4, i], a[5, i])


@kernel()
def _load3(a, i):
    return (a[0, i], a[1, i], a[2, i], a[3, i], a[4, i], a[5, i], a[6, i])


# Rows of flat corners: box i of a contiguous (K * 2d,) array. Unsigned index arithmetic (no
# negative-index check) lets LLVM see the constant stride and vectorize the interleaved loads,
# about 4x faster than indexing a (K, 2d) array.
_U = tuple(np.uint64(v) for v in range(7))


@kernel()
def _row2(f, i):
    at = i * _U[4]
    x1, y1, x2, y2 = f[at], f[at + _U[1]], f[at + _U[2]], f[at + _U[3]]
    return (x1, y1, x2, y2, _clamp0(x2 - x1) * _clamp0(y2 - y1), x1 - x1)


@kernel()
def _row2_angle(f, i):
    at = i * _U[4]
    x1, y1, x2, y2 = f[at], f[at + _U[1]], f[at + _U[2]], f[at + _U[3]]
    w, h = _clamp0(x2 - x1), _clamp0(y2 - y1)
    return (x1, y1, x2, y2, w * h, math.atan2(w, h))


@kernel()
def _row3(f, i):
    at = i * _U[6]
    x1, y1, z1 = f[at], f[at + _U[1]], f[at + _U[2]]
    x2, y2, z2 = f[at + _U[3]], f[at + _U[4]], f[at + _U[5]]
    return (x1, y1, z1, x2, y2, z2, _clamp0(x2 - x1) * _clamp0(y2 - y1) * _clamp0(z2 - z1))


# --------------------------------------------------------------------------------------------
# Per-pair formulas on two boxes p and q, each a tuple (corners, area[, aspect angle]);
# k = (zero_division, 4 / pi**2, 1) in the compute dtype.


# min and max are written out in the two below (one compiled function fewer each): each returns
# its second operand when that is NaN, as the CUDA kernels do.


@kernel()
def _overlap(lo1, hi1, lo2, hi2):
    return _clamp0((hi1 if hi1 < hi2 else hi2) - (lo1 if lo1 > lo2 else lo2))


@kernel()
def _hull(lo1, hi1, lo2, hi2):
    return _clamp0((hi1 if hi1 > hi2 else hi2) - (lo1 if lo1 < lo2 else lo2))


@kernel()
def _inter2(p, q):
    return _overlap(p[0], p[2], q[0], q[2]) * _overlap(p[1], p[3], q[1], q[3])


@kernel()
def _inter3(p, q):
    return (
        _overlap(p[0], p[3], q[0], q[3])
        * _overlap(p[1], p[4], q[1], q[4])
        * _overlap(p[2], p[5], q[2], q[5])
    )


@kernel()
def _iou2(p, q, k):
    inter = _inter2(p, q)
    return _ratio(inter, p[4] + q[4] - inter, k[0])


@kernel()
def _ioa2(p, q, k):
    # q's area is NaN when q has a NaN: keeps NaN even where area(p) == 0.
    return _nan_of(_ratio(_inter2(p, q), p[4], k[0]), q[4])


@kernel()
def _giou2(p, q, k):
    inter = _inter2(p, q)
    union = p[4] + q[4] - inter
    hull = _hull(p[0], p[2], q[0], q[2]) * _hull(p[1], p[3], q[1], q[3])
    return _ratio(inter, union, k[0]) - _div0(hull - union, hull)


@kernel()
def _centre_penalty2(p, q):
    """Squared centre distance over squared hull diagonal (both doubled: no literal 0.5)."""
    dx = (p[0] + p[2]) - (q[0] + q[2])
    dy = (p[1] + p[3]) - (q[1] + q[3])
    hw = _hull(p[0], p[2], q[0], q[2])
    hh = _hull(p[1], p[3], q[1], q[3])
    return _div0(dx * dx + dy * dy, (hw + hw) * (hw + hw) + (hh + hh) * (hh + hh))


@kernel()
def _diou2(p, q, k):
    return _iou2(p, q, k) - _centre_penalty2(p, q)


@kernel()
def _ciou2(p, q, k):
    iou = _iou2(p, q, k)
    da = p[5] - q[5]
    v = k[1] * da * da
    return iou - _centre_penalty2(p, q) - _div0(v, k[2] - iou + v) * v


@kernel()
def _iou3(p, q, k):
    inter = _inter3(p, q)
    return _ratio(inter, p[6] + q[6] - inter, k[0])


@kernel()
def _ioa3(p, q, k):
    return _nan_of(_ratio(_inter3(p, q), p[6], k[0]), q[6])


@kernel()
def _giou3(p, q, k):
    inter = _inter3(p, q)
    union = p[6] + q[6] - inter
    hull = (
        _hull(p[0], p[3], q[0], q[3])
        * _hull(p[1], p[4], q[1], q[4])
        * _hull(p[2], p[5], q[2], q[5])
    )
    return _ratio(inter, union, k[0]) - _div0(hull - union, hull)


# --------------------------------------------------------------------------------------------
# Extreme boxes (see ``_formats.scale_limits``): coordinates beyond ``big``, a non-zero extent
# below ``tiny``, NaN or infinity. Their pairs are computed again from extents divided by the
# enclosing box (each ratio in [0, 1]), which neither overflows nor underflows; the DIoU distance
# uses one scale for both axes, as it is not invariant under per-axis scaling. Extents are taken
# at 1/8 scale, so that no denominator passes 2**(emax - 2) and no reciprocal is subnormal (XLA
# divides through reciprocals and flushes subnormals; every engine uses the same formulas).
# k = (zero_division, 4 / pi**2, 1, big, tiny, 1/8, 1/16).

_IOU, _GIOU, _DIOU, _CIOU, _IOA = range(5)
_OPCODES = {"iou": _IOU, "giou": _GIOU, "diou": _DIOU, "ciou": _CIOU, "ioa": _IOA}


@kernel()
def _extreme(lo, hi, k):
    e = hi - lo
    inside = (abs(lo) <= k[3]) & (abs(hi) <= k[3])
    return (not inside) | ((e > 0) & (e < k[4]))


@kernel()
def _extreme_row2(f, i, k):
    at = i * _U[4]
    return _extreme(f[at], f[at + _U[2]], k) | _extreme(f[at + _U[1]], f[at + _U[3]], k)


@kernel()
def _extreme_row3(f, i, k):
    at = i * _U[6]
    return (_extreme(f[at], f[at + _U[3]], k) | _extreme(f[at + _U[1]], f[at + _U[4]], k)
            | _extreme(f[at + _U[2]], f[at + _U[5]], k))


@kernel()
def _axis(lo1, hi1, lo2, hi2, k):
    """(hull side, extents of box 1, box 2 and their overlap, centre offset), all at 1/8 scale."""
    h = k[5]
    q = k[6]
    cs = _clamp0((hi1 if hi1 > hi2 else hi2) * h - (lo1 if lo1 < lo2 else lo2) * h)
    e1 = _clamp0(hi1 * h - lo1 * h)
    e2 = _clamp0(hi2 * h - lo2 * h)
    ei = _clamp0((hi1 if hi1 < hi2 else hi2) * h - (lo1 if lo1 > lo2 else lo2) * h)
    return cs, e1, e2, ei, (lo1 * q + hi1 * q) - (lo2 * q + hi2 * q)


@kernel()
def _scaled(f, i, g, j, dims, op, k):
    """``op`` for box i of flat corners f and box j of g, without overflow or underflow."""
    zero = k[2] - k[2]
    u1 = u2 = ui = hull = ioa = k[2]
    s = poison = zero
    empty1 = False
    for d in range(dims):
        lo1, hi1 = f[i * 2 * dims + d], f[i * 2 * dims + dims + d]
        lo2, hi2 = g[j * 2 * dims + d], g[j * 2 * dims + dims + d]
        poison += (lo1 - lo1) + (hi1 - hi1) + (lo2 - lo2) + (hi2 - hi2)  # NaN for NaN or inf
        cs, e1, e2, ei, _ = _axis(lo1, hi1, lo2, hi2, k)
        u1 *= _ratio(e1, cs, zero)
        u2 *= _ratio(e2, cs, zero)
        ui *= _ratio(ei, cs, zero)
        hull = hull if cs > 0 else zero
        ioa *= _ratio(ei, e1, zero)
        empty1 |= e1 == 0
        s = s if s > cs else cs
    if op == _IOA:
        return (k[0] if empty1 else ioa) + poison
    union = u1 + u2 - ui
    iou = _ratio(ui, union, k[0])
    if op == _IOU:
        return iou + poison
    if op == _GIOU:
        return iou - _div0(hull - union, hull) + poison
    rho = diag = zero
    for d in range(dims):
        lo1, hi1 = f[i * 2 * dims + d], f[i * 2 * dims + dims + d]
        lo2, hi2 = g[j * 2 * dims + d], g[j * 2 * dims + dims + d]
        cs, _, _, _, o = _axis(lo1, hi1, lo2, hi2, k)
        o, cs = _ratio(o, s, zero), _ratio(cs, s, zero)
        rho += o * o
        diag += cs * cs
    diou = iou - _div0(rho, diag)
    if op == _DIOU:
        return diou + poison
    _, a1, a2, _, _ = _axis(f[i * 4], f[i * 4 + 2], g[j * 4], g[j * 4 + 2], k)
    _, b1, b2, _, _ = _axis(f[i * 4 + 1], f[i * 4 + 3], g[j * 4 + 1], g[j * 4 + 3], k)
    da = math.atan2(a1, b1) - math.atan2(a2, b2)
    v = k[1] * da * da
    return diou - _div0(v, k[2] - iou + v) * v + poison


# --------------------------------------------------------------------------------------------
# Drivers, one pairwise and one aligned kernel per (op, dims), made from the formulas above. Each
# computes every pair by the formula, with no temporaries of the output's size, and tells whether
# an input holds an extreme box. Only then are the pairs of the extreme boxes computed again, by
# the ``_rescale_*`` kernel of the same (op, dims): extreme boxes are rare, so a process compiles
# ``_scaled`` (a third of a driver's compile time) only when one appears.

_CHUNK = 4096  # columns per task, so that one row of a wide matrix still spreads over threads
_RUN = 1024  # aligned pairs per task

# The driver templates call ``row``, ``load``, ``pair`` and ``extreme`` and read ``ROWS``,
# ``DIMS`` and ``OP``, which are not module globals: each (op, dims) gets its own copy of the
# template whose globals bind them (see ``variant``); integer globals are compile-time constants.


def _pairwise_template(b1, b2, consts, out, cols):
    """b1 (..., N, 2d) and b2 (..., M, 2d): C-contiguous corners in the compute dtype, with the
    same number B of batch elements (2-D, or 3-D with B first); out (..., N, M), B * N * M;
    cols (B, ROWS, M) scratch of the compute dtype (allocated by the caller: an allocation here
    would compile NumPy's allocator into every driver). Returns whether a box of b1 or b2 is
    extreme (its pairs are then left to ``_rescale``)."""
    n, m = b1.shape[-2], b2.shape[-2]
    if out.size == 0:
        return False
    batches = out.size // (n * m)
    f1, f2 = b1.reshape(-1), b2.reshape(-1)
    grid = out.reshape(batches, n, m)
    k = (consts[0], consts[1], consts[2], consts[3], consts[4], consts[5], consts[6])
    # What the formulas read, as the segmented and matching kernels pass it (one compiled
    # formula serves all of them).
    kp = (k[0], k[1], k[2])
    # Set 2 as columns (B, ROWS, M), so that the inner loop vectorizes.
    bad = False
    for b in range(batches):
        for j in range(m):
            at = np.uint64(b * m + j)
            q = row(f2, at)  # noqa: F821
            for r in range(ROWS):  # noqa: F821
                cols[b, r, j] = q[r]
            bad |= extreme(f2, at, k)  # noqa: F821
    for i in range(np.uint64(batches * n)):
        bad |= extreme(f1, i, k)  # noqa: F821
    chunks = (m + _CHUNK - 1) // _CHUNK
    for task in numba.prange(batches * n * chunks):
        flat_row, chunk = divmod(np.int64(task), chunks)  # prange may count unsigned
        b = flat_row // n
        lo = chunk * _CHUNK
        hi = m if m < lo + _CHUNK else lo + _CHUNK  # not ``min``: one compiled function fewer
        dst = grid[b, flat_row - b * n]
        p = row(f1, np.uint64(flat_row))  # noqa: F821
        cb = cols[b]
        # An unsigned column index spares the negative-index check, so the loop vectorizes.
        for j in range(np.uint64(lo), np.uint64(hi)):
            dst[j] = pair(p, load(cb, j), kp)  # noqa: F821
    return bad


def _rescale_pairwise_template(b1, b2, consts, out):
    """As :func:`_pairwise_template`, for the pairs with an extreme box only, by ``_scaled``."""
    n, m = b1.shape[-2], b2.shape[-2]
    batches = out.size // (n * m)
    f1, f2 = b1.reshape(-1), b2.reshape(-1)
    grid = out.reshape(batches, n, m)
    k = (consts[0], consts[1], consts[2], consts[3], consts[4], consts[5], consts[6])
    flags = np.empty(batches * m, dtype=np.bool_)
    for j in range(np.uint64(batches * m)):
        flags[j] = extreme(f2, j, k)  # noqa: F821
    for flat_row in numba.prange(batches * n):
        i = np.int64(flat_row)
        b = i // n
        dst = grid[b, i - b * n]
        whole = extreme(f1, np.uint64(i), k)  # noqa: F821
        for j in range(m):
            if whole or flags[b * m + j]:
                dst[j] = _scaled(f1, i, f2, b * m + j, DIMS, OP, k)  # noqa: F821


def _aligned_template(b1, b2, consts, out):
    """b1, b2 (K, 2d): C-contiguous corners in the compute dtype; out (K,). Returns whether a
    pair holds an extreme box (its value is then left to ``_rescale``)."""
    f1, f2 = b1.reshape(-1), b2.reshape(-1)
    k = (consts[0], consts[1], consts[2], consts[3], consts[4], consts[5], consts[6])
    kp = (k[0], k[1], k[2])
    total = out.shape[0]
    runs = 0  # runs with an extreme box
    for task in numba.prange((total + _RUN - 1) // _RUN):
        lo = np.int64(task) * _RUN
        hi = total if total < lo + _RUN else lo + _RUN
        bad = False
        for u in range(np.uint64(lo), np.uint64(hi)):
            out[u] = pair(row(f1, u), row(f2, u), kp)  # noqa: F821
            bad |= extreme(f1, u, k) | extreme(f2, u, k)  # noqa: F821
        runs += np.int64(bad)
    return runs > 0


def _rescale_aligned_template(b1, b2, consts, out):
    """As :func:`_aligned_template`, for the pairs with an extreme box only, by ``_scaled``."""
    f1, f2 = b1.reshape(-1), b2.reshape(-1)
    k = (consts[0], consts[1], consts[2], consts[3], consts[4], consts[5], consts[6])
    for task in numba.prange(out.shape[0]):
        i = np.int64(task)
        if extreme(f1, np.uint64(i), k) | extreme(f2, np.uint64(i), k):  # noqa: F821
            out[i] = _scaled(f1, i, f2, i, DIMS, OP, k)  # noqa: F821


_FORMULAS = {
    ("iou", 2): _iou2,
    ("giou", 2): _giou2,
    ("diou", 2): _diou2,
    ("ciou", 2): _ciou2,
    ("ioa", 2): _ioa2,
    ("iou", 3): _iou3,
    ("giou", 3): _giou3,
    ("ioa", 3): _ioa3,
}
_LOADS = {2: _load2, 3: _load3}
_COLUMN_ROWS = {2: 6, 3: 7}  # rows of the pairwise driver's columns (see ``_columns2``)
_ROWS = {2: _row2, 3: _row3}
_EXTREME_ROWS = {2: _extreme_row2, 3: _extreme_row3}


def _bindings(op: str, d: int) -> dict:
    return {
        "pair": _FORMULAS[op, d], "load": _LOADS[d], "extreme": _EXTREME_ROWS[d],
        "row": _row2_angle if op == "ciou" else _ROWS[d], "ROWS": _COLUMN_ROWS[d],
        "DIMS": d, "OP": _OPCODES[op],
    }


def _drivers(template: Any, name: str) -> dict:
    """One driver per (op, dims) from ``template``, as ParallelKernels: called, the parallel
    build; ``.serial``, the build for the calling thread (each compiled on first use)."""
    return {
        (op, d): kernel(parallel=True)(variant(template, f"_{name}_{op}{d}", **_bindings(op, d)))
        for op, d in _FORMULAS
    }


_PAIRWISE = _drivers(_pairwise_template, "pairwise")
_ALIGNED = _drivers(_aligned_template, "aligned")
_RESCALE = {False: _drivers(_rescale_pairwise_template, "rescale_pairwise"),
            True: _drivers(_rescale_aligned_template, "rescale_aligned")}
# By (op, box width, aligned), for the fast path: (driver, its rescale kernel, rows of the
# pairwise driver's columns).
_BY_WIDTH = {
    (op, 2 * d, aligned): ((_ALIGNED if aligned else _PAIRWISE)[op, d], _RESCALE[aligned][op, d],
                           _COLUMN_ROWS[d])
    for op, d in _FORMULAS for aligned in (False, True)
}

# Below this many pairs a call runs on the calling thread: waking the pool costs more.
PARALLEL_PAIRS = 1 << 15


def _launch(kernels: Any, rescale: Any, pairs: int, b1: np.ndarray, b2: np.ndarray,
            consts: np.ndarray, out: np.ndarray, *scratch: np.ndarray) -> None:
    """Run a driver, then, where it found an extreme box, its rescale kernel (on the same
    arguments, less the driver's scratch)."""
    parallel = pairs >= PARALLEL_PAIRS
    if (kernels if parallel else kernels.serial)(b1, b2, consts, out, *scratch):
        (rescale if parallel else rescale.serial)(b1, b2, consts, out)


@functools.lru_cache(maxsize=64)
def _consts(dtype: np.dtype, dims: int, zero_division: float, sign: float) -> np.ndarray:
    """k of the formulas and ``_scaled``, read-only: (zero_division, 4 / pi**2, 1, big, tiny,
    1/8, 1/16) in ``dtype``. ``sign`` (that of zero_division) keeps -0.0 apart from 0.0."""
    big, tiny = _formats.scale_limits(dtype, dims)
    consts = np.array([zero_division, 4 / math.pi**2, 1, big, tiny, 1 / 8, 1 / 16], dtype=dtype)
    consts.flags.writeable = False
    return consts


def _corners(b: np.ndarray, spec: BoxPair, n: int) -> np.ndarray:
    """(*batch, n, 2d) boxes in spec.fmt -> contiguous (batch * n, 2d) corners, compute dtype."""
    corners = _formats.to_corners(np, np.asarray(b, dtype=spec.compute), spec.fmt)
    corners = np.broadcast_to(corners, spec.batch + (n, 2 * spec.dims))
    return np.ascontiguousarray(corners.reshape(-1, 2 * spec.dims))


def box_pair(
    b1: np.ndarray, b2: np.ndarray, *, op: str, spec: BoxPair, zero_division: float,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """The general path: any batch dimensions, format, dtype and layout (checked by
    ``_validate.box_pair``)."""
    n = spec.n
    m = n if spec.m < 0 else spec.m
    result = np.empty(spec.out_shape, dtype=spec.out) if out is None else out
    if result.size == 0:
        return result
    consts = _consts(spec.compute, spec.dims, zero_division, math.copysign(1.0, zero_division))
    f1, f2 = _corners(b1, spec, n), _corners(b2, spec, m)
    rescale = _RESCALE[spec.m < 0][op, spec.dims]
    if spec.m < 0:
        _launch(_ALIGNED[op, spec.dims], rescale, result.size, f1, f2, consts, result.reshape(-1))
    else:
        cols = np.empty((f1.shape[0] // n, _COLUMN_ROWS[spec.dims], m), spec.compute)
        if f1.shape[0] == n:  # no batch: the 2-D build, as the fast path calls it
            _launch(_PAIRWISE[op, spec.dims], rescale, result.size, f1, f2, consts,
                    result.reshape(n, m), cols)
        else:
            w = 2 * spec.dims
            _launch(_PAIRWISE[op, spec.dims], rescale, result.size, f1.reshape(-1, n, w),
                    f2.reshape(-1, m, w), consts, result.reshape(-1, n, m), cols)
    return result


_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)


def box_pair_fast(
    op: str, b1: np.ndarray, b2: np.ndarray, zero_division: float, aligned: bool,
    out: np.ndarray | None, dims: tuple[int, ...] = (2, 3),
) -> np.ndarray | None:
    """The common call in one compiled call, or None where it needs the general path.

    Taken when ``b1`` (N, 2d) and ``b2`` (M, 2d) are C-contiguous 'xyxy' NumPy arrays of one
    native float dtype (float32 or float64, which is also the compute and output dtype) and
    ``out`` is None or a C-contiguous, writeable array of the result's shape and dtype that
    overlaps neither input, and the box width is allowed by ``dims`` (the spatial dimensions the
    public function takes); the caller has checked the types of the arguments. Everything else
    (batch dimensions, other formats, integers, mixed dtypes, strided or non-native arrays, a
    bad ``out``) returns None, and the general path validates it, raising where it must.
    """
    dtype = b1.dtype
    if b2.dtype is not dtype or (dtype is not _F32 and dtype is not _F64):
        return None
    if b1.ndim != 2 or b2.ndim != 2 or not (b1.flags.c_contiguous and b2.flags.c_contiguous):
        return None
    (n, w), (m, w2) = b1.shape, b2.shape
    kernels = _BY_WIDTH.get((op, w, aligned))
    if kernels is None or w2 != w or (aligned and m != n) or w // 2 not in dims:
        return None
    shape = (n,) if aligned else (n, m)
    if out is None:
        result = np.empty(shape, dtype)
    elif (type(out) is np.ndarray and out.shape == shape and out.dtype is dtype
          and out.flags.c_contiguous and out.flags.writeable
          and not np.may_share_memory(out, b1) and not np.may_share_memory(out, b2)):
        result = out
    else:
        return None
    consts = _consts(dtype, w // 2, zero_division, math.copysign(1.0, zero_division))
    driver, rescale, rows = kernels
    if aligned:
        _launch(driver, rescale, n, b1, b2, consts, result)
    else:
        _launch(driver, rescale, n * m, b1, b2, consts, result, np.empty((1, rows, m), dtype))
    return result
