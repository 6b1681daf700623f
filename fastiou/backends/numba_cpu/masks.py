"""Dense masks on the Numba engine: rows packed to uint64 words, intersections by popcount.

Masks of one byte a pixel (bool, uint8, int8) in C order are packed by a compiled kernel that
reads 64 pixels as one vector and writes each word once, at memory bandwidth; any other layout,
dtype or threshold goes through ``np.packbits`` (vectorized C) on chunks of rows whose temporaries
fit the memory budget. The pairwise kernel then reads only the packed words (1/8 of a bool mask),
and of those only the rows that both masks of a pair occupy in each word column (see
:func:`_pairwise`); its temporaries are those rows of each set, at most the packed size. Packed
words and these temporaries come from buffers kept between calls (:class:`_Buffers`), so that a
call does not pay a page fault for every 4 KiB it writes.
"""

from __future__ import annotations

import os
import sys
import threading
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


@kernel()
def _area(row):
    s = np.uint64(0)
    for k in range(np.uint64(0), np.uint64(row.shape[0])):
        s += popcount(row[k])
    return np.int64(s)


def _areas(words, out):  # words (R, L) -> out (R,) int64
    for r in numba.prange(words.shape[0]):
        out[r] = _area(words[r])


@kernel()
def _value(inter, area1, area2, op, zd):
    den = area1 if op == 1 else area1 + area2 - inter
    return inter / den if den != 0 else zd


# Pairwise. Masks cover a small part of the image, so most of the words of two masks meet only
# zeros. Each set is first reduced to its columns: for every mask and every word column q, the
# rows [lo, hi) between its first and last non-zero word, those words stored contiguously (column
# after column). A pair then counts, column by column, only the rows where both spans overlap, in
# one contiguous loop that LLVM vectorizes (AVX2: nibble lookup and ``vpsadbw``). On masks of about
# a tenth of the image this reads 5-10% of the words of the all-rows loop; on full masks it does
# the same work. The columns are a temporary of at most the packed size, and only the words inside
# the spans are ever written (the pages of the rest are never touched).


@kernel()
def _run(x, u, z, v, length):
    """popcount(x[u + t] & z[v + t]) summed over t < length."""
    s, u, v = np.uint64(0), np.uint64(u), np.uint64(v)  # unsigned: no negative-index wrap
    for t in range(np.uint64(0), np.uint64(length)):
        s += popcount(x[u + t] & z[v + t])
    return s


@kernel()
def _first_set(flat):
    """Index of the first non-zero word of ``flat``, or its length: eight words at a time (one
    OR and one branch), then word by word."""
    n, t = flat.shape[0], 0
    while t + 8 <= n:
        if (flat[t] | flat[t + 1] | flat[t + 2] | flat[t + 3]
                | flat[t + 4] | flat[t + 5] | flat[t + 6] | flat[t + 7]) != 0:
            break
        t += 8
    while t < n and flat[t] == 0:
        t += 1
    return t


@kernel()
def _last_set(flat):
    """Index of the last non-zero word of ``flat``, or -1."""
    t = flat.shape[0]
    while t >= 8:
        if (flat[t - 1] | flat[t - 2] | flat[t - 3] | flat[t - 4]
                | flat[t - 5] | flat[t - 6] | flat[t - 7] | flat[t - 8]) != 0:
            break
        t -= 8
    t -= 1
    while t >= 0 and flat[t] == 0:
        t -= 1
    return t


@kernel()
def _spans(words, spans):
    """One mask: words (H, K) -> spans (K, 3) [lo, hi, .]: the rows from the first to the last
    non-zero word of each column; lo = hi = 0 for an empty column. The first and last rows with
    a pixel are found on the flat words; each column is then scanned from them inwards, so the
    words read are those outside its span (and the span's ends), not all of them."""
    height, k = words.shape
    flat = words.reshape(-1)
    first = _first_set(flat)
    for q in range(k):
        spans[q, 0] = 0
        spans[q, 1] = 0
    if first == flat.shape[0]:
        return
    y0, y1 = first // k, _last_set(flat) // k
    for q in range(k):
        lo = y0
        while lo <= y1 and words[lo, q] == 0:
            lo += 1
        if lo <= y1:
            hi = y1
            while words[hi, q] == 0:  # stops at row lo at the latest
                hi -= 1
            spans[q, 0] = lo
            spans[q, 1] = hi + 1


@kernel()
def _starts(spans):
    """spans (R, K, 3): where the column words of each mask and column start in a set's columns
    (the total is at most R * H * K, the size of the words: no overflow)."""
    start = 0
    for r in range(spans.shape[0]):
        for q in range(spans.shape[1]):
            spans[r, q, 2] = start
            start += spans[r, q, 1] - spans[r, q, 0]


@kernel()
def _gather(words, spans, cols):
    """One mask: the words of rows lo:hi of column q to cols[start:start + hi - lo]."""
    for q in range(words.shape[1]):
        lo, hi, at = spans[q, 0], spans[q, 1], spans[q, 2]
        for y in range(lo, hi):
            cols[at + y - lo] = words[y, q]


def _pairwise(w1, a1, x1, s1, c1, w2, a2, x2, s2, c2, op, zd, out):
    """Packed sets w (R, H, K) with areas a (R,), the mask of each (batch, row) x1 (B, N) and
    x2 (B, M) -> out (B, N, M). Fills spans s (R, K, 3) and columns c (R H K,) first."""
    r1 = w1.shape[0]
    for r in numba.prange(r1 + w2.shape[0]):  # both sets in one parallel loop: one launch
        if r < r1:
            _spans(w1[r], s1[r])
        else:
            _spans(w2[r - r1], s2[r - r1])
    _starts(s1)
    _starts(s2)
    for r in numba.prange(r1 + w2.shape[0]):
        if r < r1:
            _gather(w1[r], s1[r], c1)
        else:
            _gather(w2[r - r1], s2[r - r1], c2)
    n, m, k = x1.shape[1], x2.shape[1], s1.shape[1]
    for task in numba.prange(x1.shape[0] * n):
        b, i = divmod(np.int64(task), n)  # prange may count unsigned
        p = x1[b, i]
        for j in range(m):
            r = x2[b, j]
            inter = np.uint64(0)
            for q in range(k):
                y0 = max(s1[p, q, 0], s2[r, q, 0])
                y1 = min(s1[p, q, 1], s2[r, q, 1])
                if y0 < y1:
                    inter += _run(c1, s1[p, q, 2] + y0 - s1[p, q, 0],
                                  c2, s2[r, q, 2] + y0 - s2[r, q, 0], y1 - y0)
            out[b, i, j] = _value(np.int64(inter), a1[p], a2[r], op, zd)


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
    full = row.shape[0] // 64
    full = q1 if q1 < full else full  # not ``min``: one compiled function fewer
    for q in range(q0, full):
        out[q] = bits64(row, 64 * q)
    if full < q1:  # the last word of a row whose width is not a multiple of 64
        word = np.uint64(0)
        for j in range(64 * full, row.shape[0]):
            if row[j] != 0:
                word |= np.uint64(1) << np.uint64(j - 64 * full)
        out[full] = word


PACK_PIECE = 4096  # output words per parallel task: 256 KiB of input


def _pack_bool(src, dst, words, area):
    """src (R, W) uint8, C order -> dst (R, ceil(W / 64)) uint64, every word written; then the
    areas of ``words`` (A, L) into area (A,) (the packed masks, once the last rows are in)."""
    k = dst.shape[1]
    pieces = (k + PACK_PIECE - 1) // PACK_PIECE
    for task in numba.prange(src.shape[0] * pieces):
        r, p = divmod(np.int64(task), pieces)
        q0 = p * PACK_PIECE
        _pack_span(src[r], dst[r], q0, min(k, q0 + PACK_PIECE))
    for r in numba.prange(words.shape[0]):
        area[r] = _area(words[r])


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


class _Buffers:
    """Memory for packed words and column temporaries, handed out again from call to call.

    A page of fresh memory costs a fault on its first write: several microseconds each on a
    virtual machine, which for the packed words of a pair of mask sets is as long as reading the
    dense masks. Whether ``np.empty`` returns fresh pages depends on the history of the process
    (glibc serves large blocks by ``mmap`` and trims its heap), so the speed did too. Buffers of
    at least ``MIN_BYTES`` come from here instead, up to ``KEEP_BYTES`` kept in all.

    A kept buffer is handed out again only when nothing else refers to it: every NumPy view of it
    (the words of a :class:`~fastiou.PackedMasks` the caller holds, a slice of them) keeps a
    reference to the buffer itself, so while the caller uses the words they are never reused.
    """

    MIN_BYTES = 1 << 18
    KEEP_BYTES = 1 << 26
    lock = threading.Lock()
    kept: list[np.ndarray] = []


def _references_when_free() -> int:
    """What ``sys.getrefcount`` says of a kept buffer nobody else refers to, asked the way
    :func:`_empty` asks (2 on CPython 3.11: the list's reference and the argument's; measured
    rather than assumed, since interpreters may borrow the argument's reference)."""
    kept = [np.empty(1, np.uint8)]
    return sys.getrefcount(kept[0])


_FREE_REFS = _references_when_free()


def _after_fork_in_child() -> None:
    _Buffers.lock = threading.Lock()  # a thread of the parent may have held it


os.register_at_fork(after_in_child=_after_fork_in_child)


def _empty(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """``np.empty(shape, dtype)``, from a kept buffer where one is free (see :class:`_Buffers`)."""
    dtype = np.dtype(dtype)
    nbytes = size(shape) * dtype.itemsize
    if nbytes < _Buffers.MIN_BYTES:
        return np.empty(shape, dtype)
    with _Buffers.lock:
        kept, best = _Buffers.kept, -1
        for k in range(len(kept)):
            # Any reference beyond the list's (and the argument's) is a user of the buffer.
            if (sys.getrefcount(kept[k]) == _FREE_REFS and kept[k].nbytes >= nbytes
                    and (best < 0 or kept[k].nbytes < kept[best].nbytes)):
                best = k
        if best >= 0:
            buffer = kept[best]
        else:
            buffer = np.empty(nbytes, dtype=np.uint8)  # 16-byte aligned, as every NumPy array
            free = [k for k in range(len(kept)) if sys.getrefcount(kept[k]) == _FREE_REFS]
            while free and sum(b.nbytes for b in kept) + nbytes > _Buffers.KEEP_BYTES:
                del kept[free.pop()]  # indices in increasing order: the last is still valid
            if sum(b.nbytes for b in kept) + nbytes <= _Buffers.KEEP_BYTES:
                kept.append(buffer)
        return buffer[:nbytes].view(dtype).reshape(shape)


def _rows_of(x: np.ndarray) -> tuple[np.ndarray, ...]:
    """x (..., H, W) as 2D (rows, W) views without copying: one view if the leading dimensions
    collapse, otherwise one per mask."""
    width = x.shape[-1]
    if x.ndim == 2:
        return (x,)
    if x.flags.c_contiguous:
        return (x.reshape(-1, width),)
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
    if x.flags.c_contiguous:
        return (x.reshape(-1, x.shape[-1]).view(np.uint8),)
    rows = _rows_of(x)
    if not all(r.strides == (x.shape[-1], 1) for r in rows):
        return None
    return tuple(r.view(np.uint8) for r in rows)


def pack_masks(x: np.ndarray, *, rule: str, cut: Any, budget: int) -> tuple[np.ndarray, np.ndarray]:
    """Masks (..., H, W) -> (words (..., H, K) uint64, area (...) int64)."""
    *lead, height, width = x.shape
    k = (width + BITS - 1) // BITS
    shape = tuple(lead) + (height, k)
    area = np.empty(tuple(lead), dtype=np.int64)
    byte_rows = _byte_rows(x, rule) if size(shape) else None
    if byte_rows is not None:
        # One byte a pixel in C order: the kernel writes every word once, so no zeroing. Rows
        # whose width is a multiple of 64 are one stream of words, split evenly across threads.
        # The call that packs the last rows also counts the areas.
        words = _empty(shape, np.uint64)
        flat = words.reshape(-1, k)
        start = 0
        for g, rows in enumerate(byte_rows):
            stop = start + rows.shape[0]
            src, dst = rows, flat[start:stop]
            if width % BITS == 0:
                src, dst = src.reshape(1, -1), dst.reshape(1, -1)
            last = g == len(byte_rows) - 1
            counted = words.reshape(area.size, -1) if last else flat[:0]
            _driver("_pack_bool", src.size)(src, dst, counted,
                                            area.reshape(-1)[: counted.shape[0]])
            start = stop
        return words, area
    words = _empty(shape, np.uint64)
    words.fill(0)
    if rule != "none" and words.size:
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


def _set(words: np.ndarray, area: np.ndarray) -> tuple[np.ndarray, ...]:
    """Packed (..., H, K) and areas -> (R, H, K) words, (R,) areas, and room for their spans
    and columns (see :func:`_pairwise`)."""
    height, k = words.shape[-2:]
    rows = size(words.shape[:-2])
    flat = np.ascontiguousarray(words).reshape(rows, height, k)
    return (flat, np.ascontiguousarray(area).reshape(rows), _empty((rows, k, 3), np.int64),
            _empty((flat.size,), np.uint64))  # only the words inside the spans are written


def _indices(lead: tuple[int, ...], batch: tuple[int, ...]) -> np.ndarray:
    """Masks (*lead, N) numbered in C order, broadcast to (*batch, N) -> (B, N) int64."""
    numbers = np.arange(size(lead), dtype=np.int64).reshape(-1, lead[-1])
    if lead[:-1] == batch:
        return numbers
    every = np.broadcast_to(numbers.reshape(lead), batch + lead[-1:])
    return np.array(every.reshape(-1, lead[-1]))


def mask_pair(
    w1: np.ndarray, a1: np.ndarray, w2: np.ndarray, a2: np.ndarray, *, op: str, spec: MaskPair,
    zero_division: float, budget: int,
) -> np.ndarray:
    """IoU or IoA of packed masks. Temporaries: the columns of both sets (at most their packed
    size; ``budget`` bounds the dense masks, not these)."""
    out = np.empty(spec.out_shape, dtype=np.float32)
    if out.size == 0:
        return out
    if spec.m < 0:
        f1, g1 = _flat(w1, a1, spec.batch)
        f2, g2 = _flat(w2, a2, spec.batch)
        shape = (f1.shape[0] * f1.shape[1], f1.shape[2])
        _driver("_aligned", f1.size)(f1.reshape(shape), g1.reshape(-1), f2.reshape(shape),
                                     g2.reshape(-1), _OPS[op], zero_division, out.reshape(-1))
        return out
    f1, g1, s1, c1 = _set(w1, a1)
    f2, g2, s2, c2 = _set(w2, a2)
    x1, x2 = _indices(a1.shape, spec.batch), _indices(a2.shape, spec.batch)
    work = out.size * w1.shape[-2] * w1.shape[-1]  # words of the all-rows loop: an upper bound
    _driver("_pairwise", work)(f1, g1, x1, s1, c1, f2, g2, x2, s2, c2, _OPS[op], zero_division,
                               out.reshape(-1, spec.n, spec.m))
    return out


# One small call in one compiled call: both sets packed, their areas and the rows each mask
# occupies, and the pairs counted over the rows both masks of a pair occupy, on the calling thread.
# Taken where the general path would run serially anyway (see :func:`mask_pair_fast`).


@kernel()
def _pack_rows(masks, words, rows):
    """masks (R, H, W) uint8 -> words (R, H * K) every word written, and rows (R, 3) int64: the
    area, first and last row with a pixel of each mask (-1, -1 when empty)."""
    height, width = masks.shape[1], masks.shape[2]
    k = words.shape[1] // height
    for r in range(masks.shape[0]):
        if width % 64 == 0:  # the rows of a mask are one stream of whole words
            _pack_span(masks[r].reshape(-1), words[r], 0, words.shape[1])
        else:
            for y in range(height):
                _pack_span(masks[r, y], words[r, y * k : (y + 1) * k], 0, k)
        area, y0, y1 = np.int64(0), np.int64(-1), np.int64(-1)
        for y in range(height):
            s = _area(words[r, y * k : (y + 1) * k])
            if s != 0:
                area += s
                y1 = y
                if y0 < 0:
                    y0 = y
        rows[r, 0], rows[r, 1], rows[r, 2] = area, y0, y1


@kernel()
def _pair_small(m1, m2, op, zd, aligned, w1, w2, r1, r2, out):
    """m1 (N, H, W), m2 (M, H, W) uint8 -> out (N * M,) float32, row i of the (N, M) result at
    i * M; with ``aligned`` (N == M) out (N,) of the pairs (i, i). w1, w2 (N or M, H * K) uint64
    and r1, r2 (N or M, 3) int64 are temporaries."""
    _pack_rows(m1, w1, r1)
    _pack_rows(m2, w2, r2)
    k = w1.shape[1] // m1.shape[1]
    m = np.int64(m2.shape[0])
    for i in range(m1.shape[0]):
        j0, j1 = (np.int64(i), np.int64(i) + 1) if aligned else (np.int64(0), m)
        for j in range(j0, j1):
            lo = r1[i, 1] if r1[i, 1] > r2[j, 1] else r2[j, 1]  # not max, min: two compiled
            hi = r1[i, 2] if r1[i, 2] < r2[j, 2] else r2[j, 2]  # functions fewer
            inter = np.int64(0)
            if r1[i, 1] >= 0 and r2[j, 1] >= 0 and lo <= hi:
                inter = _count(w1[i, lo * k : (hi + 1) * k], w2[j, lo * k : (hi + 1) * k])
            # _value written out (one compiled function fewer): the same operations
            den = r1[i, 0] if op == 1 else r1[i, 0] + r2[j, 0] - inter
            out[i if aligned else i * m + j] = inter / den if den != 0 else zd


_BYTE = (np.dtype(np.bool_), np.dtype(np.uint8), np.dtype(np.int8))
_LITTLE = sys.byteorder == "little"


def mask_pair_fast(op: str, m1: np.ndarray, m2: np.ndarray, zero_division: float,
                   aligned: bool) -> np.ndarray | None:
    """The common call in one compiled call, or None where it needs the general path.

    Taken when ``m1`` (N, H, W) and ``m2`` (M, H, W) are C-contiguous NumPy arrays of one byte a
    pixel (bool, uint8 or int8: non-zero is foreground, the threshold being None), N, M, H, W > 0
    (N == M when ``aligned``), and the work is under PARALLEL_WORK (where the general path would
    run on the calling thread too); the caller has checked the types of the arguments. Everything
    else returns None, and the general path validates it, raising where it must. The result is
    the general path's, bit for bit: the same exact counts, divided as :func:`_value` divides.
    """
    if m1.ndim != 3 or m2.ndim != 3 or m1.dtype not in _BYTE or m2.dtype not in _BYTE:
        return None
    if not (_LITTLE and m1.flags.c_contiguous and m2.flags.c_contiguous):
        return None
    (n, height, width), (m, h2, w2) = m1.shape, m2.shape
    if h2 != height or w2 != width or (aligned and m != n) or 0 in (n, m, height, width):
        return None
    k = (width + BITS - 1) // BITS
    pairs = n if aligned else n * m
    if (n + m) * height * width >= PARALLEL_WORK or pairs * height * k >= PARALLEL_WORK:
        return None
    out = np.empty((n,) if aligned else (n, m), dtype=np.float32)
    words = np.empty((n + m, height * k), dtype=np.uint64)
    rows = np.empty((n + m, 3), dtype=np.int64)
    _pair_small(m1.view(np.uint8), m2.view(np.uint8), _OPS[op], zero_division, aligned,
                words[:n], words[n:], rows[:n], rows[n:], out.reshape(-1))
    return out


def mask_boxes(words: np.ndarray, *, height: int, width: int) -> np.ndarray:
    """Packed (..., H, K) -> boxes (..., 4) float32 'xyxy' in pixel edges."""
    lead = words.shape[:-2]
    out = np.empty(lead + (4,), dtype=np.float32)
    if out.size:
        flat = np.ascontiguousarray(words).reshape(size(lead), height, words.shape[-1])
        _driver("_boxes", flat.size)(flat, out.reshape(-1, 4))
    return out
