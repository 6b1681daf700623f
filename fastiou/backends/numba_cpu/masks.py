"""Dense masks on the Numba engine: rows packed to uint64 words, intersections by popcount.

Masks of one byte a pixel (bool, uint8, int8) in C order are packed by a compiled kernel that
reads 64 pixels as one vector and writes each word once, at memory bandwidth; any other layout,
dtype or threshold goes through ``np.packbits`` (vectorized C) on chunks of rows whose temporaries
fit the memory budget. The pairwise kernel then reads only the packed words (1/8 of a bool mask)
and holds no temporaries at all, so its memory use is the packed inputs plus the output.
"""

from __future__ import annotations

import sys
from typing import Any

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from ..._validate import MaskPair, size
from . import kernel, serial_and_parallel

BITS = 64
_OPS = {"iou": 0, "ioa": 1}


@intrinsic
def popcount(typingctx: Any, x: Any) -> Any:
    """Number of set bits of an unsigned integer (LLVM ``ctpop``: one instruction where the CPU
    has it)."""
    if not isinstance(x, types.Integer) or x.signed:
        return None

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.ctpop(args[0])

    return x(x), codegen


@intrinsic
def trailing_zeros(typingctx: Any, x: Any) -> Any:
    """Index of the lowest set bit (the argument must be non-zero)."""
    if not isinstance(x, types.Integer) or x.signed:
        return None

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.cttz(args[0], context.get_constant(types.boolean, True))

    return x(x), codegen


@intrinsic
def leading_zeros(typingctx: Any, x: Any) -> Any:
    """Number of zero bits above the highest set bit (the argument must be non-zero)."""
    if not isinstance(x, types.Integer) or x.signed:
        return None

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.ctlz(args[0], context.get_constant(types.boolean, True))

    return x(x), codegen


# --------------------------------------------------------------------------------------------
# Kernels. Words are (R, L) rows of L uint64; an unsigned word index lets the loop vectorize.


@kernel()
def _count(a, c):
    s = np.uint64(0)
    for k in range(np.uint64(0), np.uint64(a.shape[0])):
        s += popcount(a[k] & c[k])
    return np.int64(s)


def _areas(words, out):  # words (R, L) -> out (R,) int64
    for r in numba.prange(words.shape[0]):
        row = words[r]
        s = np.uint64(0)
        for k in range(np.uint64(0), np.uint64(row.shape[0])):
            s += popcount(row[k])
        out[r] = np.int64(s)


@kernel()
def _value(inter, area1, area2, op, zd):
    den = area1 if op == 1 else area1 + area2 - inter
    return inter / den if den != 0 else zd


@kernel()
def _count_2x2(a0, a1, b0, b1):
    """The four intersections of two rows with two rows in one pass: each word loaded is used
    twice, and the reduction overhead is shared."""
    s00, s01, s10, s11 = np.uint64(0), np.uint64(0), np.uint64(0), np.uint64(0)
    for k in range(np.uint64(0), np.uint64(a0.shape[0])):
        x0, x1, y0, y1 = a0[k], a1[k], b0[k], b1[k]
        s00 += popcount(x0 & y0)
        s01 += popcount(x0 & y1)
        s10 += popcount(x1 & y0)
        s11 += popcount(x1 & y1)
    return np.int64(s00), np.int64(s01), np.int64(s10), np.int64(s11)


def _pairwise(w1, a1, w2, a2, op, zd, out):  # w1 (B, N, L), w2 (B, M, L), out (B, N, M)
    n, m = w1.shape[1], w2.shape[1]
    row_pairs = (n + 1) // 2
    for task in numba.prange(w1.shape[0] * row_pairs):
        b, t = divmod(np.int64(task), row_pairs)  # prange may count unsigned
        i0 = 2 * t
        i1 = min(i0 + 1, n - 1)  # an odd last row is counted twice, written twice
        first, second, dst0, dst1 = w1[b], w2[b], out[b, i0], out[b, i1]
        for j0 in range(0, m, 2):
            j1 = min(j0 + 1, m - 1)
            c00, c01, c10, c11 = _count_2x2(first[i0], first[i1], second[j0], second[j1])
            dst0[j0] = _value(c00, a1[b, i0], a2[b, j0], op, zd)
            dst0[j1] = _value(c01, a1[b, i0], a2[b, j1], op, zd)
            dst1[j0] = _value(c10, a1[b, i1], a2[b, j0], op, zd)
            dst1[j1] = _value(c11, a1[b, i1], a2[b, j1], op, zd)


def _aligned(w1, a1, w2, a2, op, zd, out):  # w1, w2 (K, L), out (K,)
    for i in numba.prange(w1.shape[0]):
        out[i] = _value(_count(w1[i], w2[i]), a1[i], a2[i], op, zd)


# Packing. Bytes to bits is where a mask spends its only pass over the dense input, so it must
# run at memory bandwidth: each output word is built in a register from 64 bytes loaded as one
# vector (two AVX2 loads, compares and ``vpmovmskb``; NEON and others get LLVM's lowering of the
# same IR) and stored once into an output from ``np.empty``. Building words in memory instead (a
# multiply trick per 8 pixels, OR-ed eight times into a zeroed output word) tops out near 8 GB/s a
# core with the input in cache; this loop does 50+ GB/s there and is bound by DRAM otherwise.


@intrinsic
def bits64(typingctx: Any, src: Any, start: Any) -> Any:
    """Bit i of the uint64 result is set when byte ``start + i`` of the contiguous 1D uint8 array
    ``src`` is non-zero. The 64 bytes must lie inside ``src`` (not checked)."""
    if not (isinstance(src, types.Array) and src.ndim == 1 and src.layout == "C"
            and src.dtype == types.uint8 and isinstance(start, types.Integer)):
        return None

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        array = context.make_array(signature.args[0])(context, builder, args[0])
        offset = context.cast(builder, args[1], signature.args[1], types.intp)
        vector = ir.VectorType(ir.IntType(8), 64)
        address = builder.bitcast(builder.gep(array.data, [offset]), vector.as_pointer())
        nonzero = builder.icmp_unsigned("!=", builder.load(address, align=1),
                                        ir.Constant(vector, None))
        return builder.bitcast(nonzero, ir.IntType(64))  # element i -> bit i (little-endian)

    return types.uint64(src, start), codegen


@kernel()
def _pack_span(row, out, q0, q1):  # row (W,) uint8, out (ceil(W / 64),) uint64: words q0:q1
    full = min(q1, row.shape[0] // 64)
    for q in range(q0, full):
        out[q] = bits64(row, 64 * q)
    if full < q1:  # the last word of a row whose width is not a multiple of 64
        word = np.uint64(0)
        for j in range(64 * full, row.shape[0]):
            if row[j] != 0:
                word |= np.uint64(1) << np.uint64(j - 64 * full)
        out[full] = word


PACK_PIECE = 4096  # output words per parallel task: 256 KiB of input


def _pack_bool(src, dst):  # src (R, W) uint8, C order; dst (R, ceil(W / 64)) uint64, all written
    k = dst.shape[1]
    pieces = (k + PACK_PIECE - 1) // PACK_PIECE
    for task in numba.prange(src.shape[0] * pieces):
        r, p = divmod(np.int64(task), pieces)
        q0 = p * PACK_PIECE
        _pack_span(src[r], dst[r], q0, min(k, q0 + PACK_PIECE))


def _boxes(words, out):  # words (R, H, K) -> out (R, 4) xyxy, pixel edges; empty -> 0
    for r in numba.prange(words.shape[0]):
        x0, y0, x1, y1 = np.int64(-1), np.int64(-1), np.int64(-1), np.int64(-1)
        for y in range(words.shape[1]):
            row = words[r, y]
            first, last = np.int64(-1), np.int64(-1)
            for k in range(row.shape[0]):
                v = row[k]
                if v != 0:
                    if first < 0:
                        first = k * 64 + np.int64(trailing_zeros(v))
                    last = k * 64 + 63 - np.int64(leading_zeros(v))
            if first >= 0:
                if y0 < 0:
                    y0, x0, x1 = y, first, last
                x0 = min(x0, first)
                x1 = max(x1, last)
                y1 = y
        if y0 < 0:
            out[r, 0], out[r, 1], out[r, 2], out[r, 3] = 0, 0, 0, 0
        else:
            out[r, 0], out[r, 1], out[r, 2], out[r, 3] = x0, y0, x1 + 1, y1 + 1


# Each driver in two builds. Waking the worker threads costs tens of microseconds on an idle
# machine (a scheduler time slice on an overloaded one), while a popcount kernel gets through
# about 2**23 words a millisecond per core; so calls under PARALLEL_WORK words (about a quarter of
# a millisecond of work) run on the calling thread.
PARALLEL_WORK = 1 << 21


_DRIVERS = {
    fn.__name__: serial_and_parallel(fn)
    for fn in (_areas, _pairwise, _aligned, _boxes, _pack_bool)
}


def _driver(name: str, work: int) -> Any:
    return _DRIVERS[name][work >= PARALLEL_WORK]


# --------------------------------------------------------------------------------------------
# Host side.


def _rows_of(x: np.ndarray) -> tuple[np.ndarray, ...]:
    """x (..., H, W) as 2D (rows, W) views without copying: one view if the leading dimensions
    collapse, otherwise one per mask."""
    width = x.shape[-1]
    if x.ndim == 2:
        return (x,)
    collapsible = all(
        x.strides[d] == x.strides[d + 1] * x.shape[d + 1] for d in range(x.ndim - 2)
    )
    if collapsible:
        return (np.lib.stride_tricks.as_strided(
            x, (size(x.shape[:-1]), width), x.strides[-2:], writeable=False
        ),)
    return tuple(x[idx] for idx in np.ndindex(x.shape[:-2]))


def _byte_rows(x: np.ndarray, rule: str) -> tuple[np.ndarray, ...] | None:
    """x as C-ordered 2D uint8 rows for :func:`_pack_bool` (one byte a pixel, foreground where
    non-zero), or None when x needs the general path."""
    if rule != "nonzero" or x.dtype.itemsize != 1 or x.dtype.kind not in "biu":
        return None
    if sys.byteorder != "little" or x.shape[-1] == 0:
        return None
    rows = _rows_of(x)
    if not all(r.strides == (x.shape[-1], 1) for r in rows):
        return None
    return tuple(r.view(np.uint8) for r in rows)


def pack_masks(x: np.ndarray, *, rule: str, cut: Any, budget: int) -> tuple[np.ndarray, np.ndarray]:
    """Masks (..., H, W) -> (words (..., H, K) uint64, area (...) int64)."""
    *lead, height, width = x.shape
    k = (width + BITS - 1) // BITS
    shape = tuple(lead) + (height, k)
    byte_rows = _byte_rows(x, rule) if size(shape) else None
    if byte_rows is not None:
        # One byte a pixel in C order: the kernel writes every word once, so no zeroing. Rows
        # whose width is a multiple of 64 are one stream of words, split evenly across threads.
        words = np.empty(shape, dtype=np.uint64)
        flat = words.reshape(-1, k)
        start = 0
        for rows in byte_rows:
            stop = start + rows.shape[0]
            src, dst = rows, flat[start:stop]
            if width % BITS == 0:
                src, dst = src.reshape(1, -1), dst.reshape(1, -1)
            _driver("_pack_bool", src.size)(src, dst)
            start = stop
    else:
        words = np.zeros(shape, dtype=np.uint64)
    if rule != "none" and words.size and byte_rows is None:
        dst = words.reshape(-1, k).view(np.uint8)  # (rows, 8 k) bytes, little-endian words
        nbytes = (width + 7) // 8
        # Per row: the packed bytes, plus a bool row when the threshold must be applied first.
        per_row = nbytes + (width if rule == "atleast" else 0)
        chunk = max(1, budget // max(1, per_row))
        start = 0
        for rows in _rows_of(x):
            for r0 in range(0, rows.shape[0], chunk):
                part = rows[r0 : r0 + chunk]
                if rule == "atleast":
                    part = np.greater_equal(part, cut)
                stop = start + part.shape[0]
                # packbits reads any non-zero integer as 1 and pads the last byte with zeros.
                dst[start:stop, :nbytes] = np.packbits(part, axis=-1, bitorder="little")
                start = stop
        if sys.byteorder == "big":
            words.byteswap(inplace=True)
    area = np.empty(tuple(lead), dtype=np.int64)
    if area.size:
        _driver("_areas", words.size)(words.reshape(area.size, -1), area.reshape(-1))
    return words, area


def _flat(words: np.ndarray, area: np.ndarray, batch: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Packed (..., N, H, K) broadcast to ``batch`` -> contiguous (B, N, H * K) and (B, N)."""
    n, height, k = words.shape[-3:]
    count = size(batch)
    w = np.broadcast_to(words, batch + (n, height, k)).reshape(count, n, height * k)
    a = np.broadcast_to(area, batch + (n,)).reshape(count, n)
    return np.ascontiguousarray(w), np.ascontiguousarray(a)


def mask_pair(
    w1: np.ndarray, a1: np.ndarray, w2: np.ndarray, a2: np.ndarray, *, op: str, spec: MaskPair,
    zero_division: float, budget: int,
) -> np.ndarray:
    """IoU or IoA of packed masks; the kernels hold no temporaries (``budget`` has nothing to
    bound here)."""
    out = np.empty(spec.out_shape, dtype=np.float32)
    if out.size == 0:
        return out
    f1, g1 = _flat(w1, a1, spec.batch)
    f2, g2 = _flat(w2, a2, spec.batch)
    if spec.m < 0:
        shape = (f1.shape[0] * f1.shape[1], f1.shape[2])
        _driver("_aligned", f1.size)(f1.reshape(shape), g1.reshape(-1), f2.reshape(shape),
                                     g2.reshape(-1), _OPS[op], zero_division, out.reshape(-1))
    else:
        _driver("_pairwise", f1.size * spec.m)(f1, g1, f2, g2, _OPS[op], zero_division,
                                               out.reshape(-1, spec.n, spec.m))
    return out


def mask_boxes(words: np.ndarray, *, height: int, width: int) -> np.ndarray:
    """Packed (..., H, K) -> boxes (..., 4) float32 'xyxy' in pixel edges."""
    lead = words.shape[:-2]
    out = np.empty(lead + (4,), dtype=np.float32)
    if out.size:
        flat = np.ascontiguousarray(words).reshape(size(lead), height, words.shape[-1])
        _driver("_boxes", flat.size)(flat, out.reshape(-1, 4))
    return out
