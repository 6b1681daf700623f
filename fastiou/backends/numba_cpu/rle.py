"""COCO run-length encoding on the Numba engine: the loops behind :mod:`fastiou.rle`.

RLE is host-side work (run lists of varying length, strings), so it only has a CPU
implementation. A set of RLEs is held as flat ``counts`` (int64) with ``offsets`` (N + 1): the runs
of RLE ``i`` are ``counts[offsets[i]:offsets[i + 1]]``, in column-major order, starting with
background. Kernels that can fail return an error code per RLE; the caller turns it into a
ValueError naming the RLE.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numba
import numpy as np

from . import kernel, serial_and_parallel, variant
from .masks import _Buffers, _count, _empty, popcount, trailing_zeros

# Error codes of the string decoder and of the run checks.
OK, BAD_CHAR, TRUNCATED, OVERFLOW, NEGATIVE, WRONG_TOTAL, PAST_TOTAL = 0, 1, 2, 3, 4, 5, 6

# Run lengths and their running totals never pass h * w, and h * w < 2**32 (checked by the caller):
# a count, or its difference with the count two before, then needs at most 33 bits with the sign,
# that is 7 characters of 5 bits in the compressed format.
MAX_PIXELS = 2**32
CHARS_PER_RUN = 7

# At least this many pixels (or runs) before a call starts worker threads.
PARALLEL_WORK = 1 << 27


# --------------------------------------------------------------------------------------------
# Encoding dense masks. Each mask is first packed column by column (bit y % 64 of word
# [y // 64, x] is pixel (y, x)), reading the C-ordered rows contiguously and writing contiguous
# words, so the loop vectorizes; the runs are then the positions where a bit differs from the
# previous pixel in column-major order, found a word at a time.


@kernel()
def _pack_columns(mask, rule, cut, bits):  # mask (H, W), bits (KH, W) zeroed
    height, width = mask.shape
    for y in range(height):
        row = mask[y]
        dst = bits[y // 64]
        shift = np.uint64(y % 64)
        for x in range(np.uint64(0), np.uint64(width)):
            on = (row[x] >= cut) if rule == 1 else (row[x] != 0)
            dst[x] |= np.uint64(on) << shift


@kernel()
def _changes(bits, height, k, prev):
    """Word k of a column: bit i set where pixel 64 k + i differs from the pixel before it
    (``prev`` is the last pixel before this word); returns (changes, last pixel)."""
    w = bits[k]
    valid = height - 64 * k
    valid = 64 if valid > 64 else valid  # not ``min``: one compiled function fewer
    keep = np.uint64(0xFFFFFFFFFFFFFFFF) >> np.uint64(64 - valid)
    changed = (w ^ ((w << np.uint64(1)) | prev)) & keep
    return changed, (w >> np.uint64(valid - 1)) & np.uint64(1)


def _encode_count(masks, rule, cut, bits, runs):  # masks (N, H, W), bits (N, KH, W)
    height = masks.shape[1]
    words = bits.shape[1]
    for i in numba.prange(masks.shape[0]):
        _pack_columns(masks[i], rule, cut, bits[i])
        total = np.int64(1)
        prev = np.uint64(0)
        for x in range(bits.shape[2]):
            column = bits[i, :, x]
            for k in range(words):
                changed, prev = _changes(column, height, k, prev)
                total += np.int64(popcount(changed))
        runs[i] = total


@kernel()
def _put(value, buf, pos):
    """One count of the compressed string format: 5 bits a character, low bits first, bit 5 set
    while more follow, sign-extended from bit 4 of the last character, offset by '0' (48). From
    the fourth count of a string on, the callers pass each count less the count two before it."""
    more = True
    while more:
        c = value & 0x1F
        value >>= 5
        more = (value != -1) if (c & 0x10) else (value != 0)
        if more:
            c |= 0x20
        buf[pos] = c + 48
        pos += 1
    return pos


def _encode_write(bits, height, offsets, buf, lengths):  # buf: CHARS_PER_RUN characters a run
    words = bits.shape[1]
    size = np.int64(height) * bits.shape[2]
    for i in numba.prange(bits.shape[0]):
        start = np.int64(offsets[i]) * CHARS_PER_RUN
        pos = start
        index = np.int64(0)
        last = np.int64(0)  # position where the current run started
        c1, c2 = np.int64(0), np.int64(0)  # the previous two counts
        prev = np.uint64(0)
        for x in range(bits.shape[2]):
            column = bits[i, :, x]
            base = np.int64(x) * height
            for k in range(words):
                changed, prev = _changes(column, height, k, prev)
                while changed != 0:
                    at = base + 64 * k + np.int64(trailing_zeros(changed))
                    changed &= changed - np.uint64(1)
                    count = at - last
                    pos = _put(count - c2 if index > 2 else count, buf, pos)
                    c2, c1 = c1, count
                    index += 1
                    last = at
        count = size - last
        pos = _put(count - c2 if index > 2 else count, buf, pos)
        lengths[i] = pos - start


_ENCODE_COUNT = serial_and_parallel(_encode_count)
_ENCODE_WRITE = serial_and_parallel(_encode_write)


# Masks are encoded in chunks whose column bits (1/8 of a bool mask) stay under this many bytes.
ENCODE_CHUNK_BYTES = 64 * 2**20


def encode(masks: np.ndarray, rule: str, cut: Any) -> list[bytes]:
    """Dense masks (N, H, W) in any layout -> one compressed string per mask."""
    n, height, width = masks.shape
    if height * width >= MAX_PIXELS:  # runs past 32 bits would not fit CHARS_PER_RUN
        raise ValueError(f"masks of {height} x {width} pixels: COCO RLE holds fewer than 2**32")
    if n == 0:
        return []
    if height * width == 0:
        return [b"0"] * n
    if rule == "none":
        empty = bytearray()
        return [bytes(_put_py(height * width, empty))] * n
    per_mask = 8 * width * ((height + 63) // 64)
    chunk = max(1, ENCODE_CHUNK_BYTES // per_mask)
    if n > chunk:
        return [s for i in range(0, n, chunk) for s in encode(masks[i : i + chunk], rule, cut)]
    kh = (height + 63) // 64
    bits = np.zeros((n, kh, width), dtype=np.uint64)
    runs = np.empty(n, dtype=np.int64)
    parallel = masks.size >= PARALLEL_WORK
    flag = 1 if rule == "atleast" else 0
    cut = masks.dtype.type(0) if cut is None else cut
    _ENCODE_COUNT[parallel](masks, flag, cut, bits, runs)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(runs, out=offsets[1:])
    buf = np.empty(int(offsets[-1]) * CHARS_PER_RUN, dtype=np.uint8)
    lengths = np.empty(n, dtype=np.int64)
    _ENCODE_WRITE[parallel](bits, height, offsets, buf, lengths)
    return _split(buf, offsets, lengths)


def _split(buf: np.ndarray, offsets: np.ndarray, lengths: np.ndarray) -> list[bytes]:
    """The strings written at CHARS_PER_RUN * offsets[i], lengths[i] characters each."""
    raw = buf.tobytes()
    starts = (offsets[:-1] * CHARS_PER_RUN).tolist()
    return [raw[o : o + ln] for o, ln in zip(starts, lengths.tolist())]


def _put_py(value: int, out: bytearray) -> bytearray:
    """The one-count string of an all-background mask, without compiling anything."""
    more = True
    while more:
        c = value & 0x1F
        value >>= 5
        more = (value != -1) if (c & 0x10) else (value != 0)
        out.append((c | 0x20 if more else c) + 48)
    return out


# --------------------------------------------------------------------------------------------
# Strings to runs, and checks of runs.


@kernel()
def _string_counts(buf, ends, offsets, errors):
    """offsets (N + 1): where the counts of each string begin, from how many each one holds;
    BAD_CHAR (and no counts) where a character is outside '0'..'o'. ``ends`` are cumulative."""
    start = np.int64(0)
    offsets[0] = 0
    for i in range(ends.shape[0]):
        total = np.int64(0)
        for p in range(start, ends[i]):
            c = np.int64(buf[p]) - 48
            if c < 0 or c > 63:
                total = 0
                errors[i] = BAD_CHAR
                break
            if (c & 0x20) == 0:
                total += 1
        offsets[i + 1] = offsets[i] + total
        start = ends[i]


@kernel()
def _decode_strings(buf, ends, offsets, totals, counts, errors):
    """Decode every string not already marked bad in ``errors``; an error code per string."""
    for i in range(ends.shape[0]):
        if errors[i] != OK:
            continue
        m = offsets[i]
        p = ends[i - 1] if i > 0 else np.int64(0)
        err = OK
        s = np.int64(0)  # sum of the runs so far, checked run by run: within [0, totals[i]]
        while p < ends[i]:
            x = np.int64(0)
            k = 0
            more = True
            while more:
                if p >= ends[i]:
                    err = TRUNCATED
                    break
                if k >= 12:  # more than 60 bits: no valid count is that long
                    err = OVERFLOW
                    break
                c = np.int64(buf[p]) - 48
                x |= (c & 0x1F) << (5 * k)
                more = (c & 0x20) != 0
                p += 1
                k += 1
                if not more and (c & 0x10) != 0:
                    x |= np.int64(-1) << (5 * k)
            if err != OK:
                break
            if m - offsets[i] > 2:
                x += counts[m - 2]  # |x| < 2**60 and 0 <= counts[m - 2] <= totals[i]: no wrap
            if x < 0:  # each run checked against what is left of the total: no sum can wrap
                err = NEGATIVE
                break
            if x > totals[i] - s:
                err = PAST_TOTAL
                break
            s += x
            counts[m] = x
            m += 1
        if err == OK and s != totals[i]:
            err = WRONG_TOTAL
        errors[i] = err


def decode_strings(strings: list[bytes], totals: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Compressed strings -> (counts, offsets, error code per string)."""
    n = len(strings)
    offsets = np.zeros(n + 1, dtype=np.int64)
    errors = np.zeros(n, dtype=np.int64)
    if n == 0:
        return np.empty(0, np.int64), offsets, errors
    buf = np.frombuffer(b"".join(strings), dtype=np.uint8)
    ends = np.fromiter(itertools.accumulate(map(len, strings)), dtype=np.int64, count=n)
    counts = np.empty(buf.shape[0], dtype=np.int64)  # a count takes one character or more
    _decode_all(buf, ends, offsets, np.ascontiguousarray(totals, dtype=np.int64), counts, errors)
    return counts[: offsets[-1]], offsets, errors


@kernel()
def _decode_all(buf, ends, offsets, totals, counts, errors):
    _string_counts(buf, ends, offsets, errors)
    counts[: offsets[-1]] = 0  # what a string that fails leaves undecoded
    _decode_strings(buf, ends, offsets, totals, counts, errors)


@kernel()
def _check_all(counts, offsets, totals, errors):
    """The error code of each RLE's runs; each run is checked against what is left of the total
    before it is added, so that no sum of runs can wrap around."""
    for i in range(totals.shape[0]):
        s, total, err = np.int64(0), totals[i], OK
        for j in range(offsets[i], offsets[i + 1]):
            if counts[j] < 0:
                err = NEGATIVE
                break
            if counts[j] > total - s:
                err = PAST_TOTAL
                break
            s += counts[j]
        if err == OK and s != total:
            err = WRONG_TOTAL
        errors[i] = err


def check_runs(counts: np.ndarray, offsets: np.ndarray, totals: np.ndarray) -> np.ndarray:
    errors = np.zeros(totals.shape[0], dtype=np.int64)
    if totals.shape[0]:
        _check_all(counts, offsets, totals, errors)
    return errors


@kernel()
def _compress(counts, offsets, buf, lengths):
    for i in range(offsets.shape[0] - 1):
        start = offsets[i] * CHARS_PER_RUN
        pos = start
        lo = offsets[i]
        for j in range(lo, offsets[i + 1]):
            pos = _put(counts[j] - counts[j - 2] if j - lo > 2 else counts[j], buf, pos)
        lengths[i] = pos - start


def compress(counts: np.ndarray, offsets: np.ndarray) -> list[bytes]:
    """Runs -> compressed strings. Every run must be in [0, 2**32), as pycocotools stores them
    (checked: that is what bounds a run to CHARS_PER_RUN characters)."""
    n = offsets.shape[0] - 1
    if counts.size and (counts.min() < 0 or counts.max() >= MAX_PIXELS):
        raise ValueError("run lengths to compress must be in [0, 2**32)")
    buf = np.empty(max(1, int(offsets[-1]) * CHARS_PER_RUN), dtype=np.uint8)
    lengths = np.empty(n, dtype=np.int64)
    if n:
        _compress(counts, offsets, buf, lengths)
    return _split(buf, offsets, lengths)


# --------------------------------------------------------------------------------------------
# Decoding, areas, boxes.


def _decode(counts, offsets, height, out):  # out (N, H, W) zeroed; runs checked
    width = out.shape[2]
    for i in numba.prange(offsets.shape[0] - 1):
        pos = np.int64(0)
        on = False
        for j in range(offsets[i], offsets[i + 1]):
            c = counts[j]
            if on and c > 0:
                x, y = divmod(pos, height)
                left = c
                while left > 0 and x < width:  # one column at a time, never past the mask
                    take = height - y
                    take = left if left < take else take
                    for yy in range(y, y + take):
                        out[i, yy, x] = True
                    left -= take
                    x += 1
                    y = 0
            pos += c
            on = not on


_DECODE = serial_and_parallel(_decode)


def decode(counts: np.ndarray, offsets: np.ndarray, height: int, width: int) -> np.ndarray:
    n = offsets.shape[0] - 1
    out = np.zeros((n, height, width), dtype=np.bool_)
    if out.size:
        _DECODE[out.size >= PARALLEL_WORK](counts, offsets, height, out)
    return out


@kernel()
def _areas(counts, offsets, out):
    for i in range(out.shape[0]):
        s = np.int64(0)
        for j in range(offsets[i] + 1, offsets[i + 1], 2):
            s += counts[j]
        out[i] = s


def areas(counts: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    out = np.empty(offsets.shape[0] - 1, dtype=np.int64)
    if out.size:
        _areas(counts, offsets, out)
    return out


@kernel()
def _bboxes(counts, offsets, heights, out):
    """xywh boxes, float64; (0, 0, 0, 0) for an empty RLE. A foreground run that spans two
    columns or more covers rows 0 and h - 1."""
    for i in range(out.shape[0]):
        h = heights[i]
        x0, y0, x1, y1 = np.int64(-1), h, np.int64(-1), np.int64(-1)
        pos = np.int64(0)
        on = False
        for j in range(offsets[i], offsets[i + 1]):
            c = counts[j]
            if on and c > 0:
                xa, ya = divmod(pos, h)
                xb, yb = divmod(pos + c - 1, h)
                if x0 < 0:
                    x0 = xa
                x1 = xb
                if xb > xa:
                    y0, y1 = 0, h - 1
                else:
                    y0, y1 = (ya if ya < y0 else y0), (yb if yb > y1 else y1)
            pos += c
            on = not on
        if x1 < 0:
            out[i, 0], out[i, 1], out[i, 2], out[i, 3] = 0.0, 0.0, 0.0, 0.0
        else:
            out[i, 0], out[i, 1], out[i, 2], out[i, 3] = x0, y0, x1 - x0 + 1, y1 - y0 + 1


def bboxes(counts: np.ndarray, offsets: np.ndarray, heights: np.ndarray) -> np.ndarray:
    out = np.empty((offsets.shape[0] - 1, 4), dtype=np.float64)
    if out.size:
        _bboxes(counts, offsets, heights, out)
    return out


# --------------------------------------------------------------------------------------------
# Merging and IoU, on the runs.


@kernel()
def _merge2(a, b, intersect, out):
    """Union (or intersection) of two run lists of the same total; canonical runs into ``out``
    (its length is at least len(a) + len(b)); returns how many."""
    ia, ib = 0, 0
    ca, cb = a[0], b[0]
    va, vb = False, False
    value = False  # value of the run being built
    run = np.int64(0)
    m = 0
    while True:
        # Skip exhausted runs (zero-length runs included).
        while ca == 0 and ia + 1 < a.shape[0]:
            ia += 1
            ca = a[ia]
            va = not va
        while cb == 0 and ib + 1 < b.shape[0]:
            ib += 1
            cb = b[ib]
            vb = not vb
        if ca == 0 or cb == 0:
            break
        step = min(ca, cb)
        v = (va and vb) if intersect else (va or vb)
        if v != value:
            out[m] = run
            m += 1
            run = np.int64(0)
            value = v
        run += step
        ca -= step
        cb -= step
    out[m] = run
    return m + 1


@kernel()
def _merge_all(counts, offsets, intersect, out, scratch):
    """Fold _merge2 over every RLE; returns the number of runs in ``out``."""
    lo, hi = offsets[0], offsets[1]
    m = hi - lo
    out[:m] = counts[lo:hi]
    for i in range(1, offsets.shape[0] - 1):
        lo, hi = offsets[i], offsets[i + 1]
        k = _merge2(out[:m], counts[lo:hi], intersect, scratch)
        out[:k] = scratch[:k]
        m = k
    return m


def merge(counts: np.ndarray, offsets: np.ndarray, intersect: bool) -> np.ndarray:
    """Runs of the union (or intersection) of every RLE; canonical (no empty run but the first)."""
    size = int(offsets[-1])
    out = np.empty(size + 2, dtype=np.int64)
    scratch = np.empty(size + 2, dtype=np.int64)
    m = _merge_all(counts, offsets, intersect, out, scratch)
    return out[:m].copy()


@kernel()
def _intervals(counts, offsets, starts, ends, bounds):
    """Foreground runs as [start, end) positions in column-major order; ``bounds`` (N + 1) tells
    where each RLE's begin."""
    n = 0
    for i in range(offsets.shape[0] - 1):
        bounds[i] = n
        pos = np.int64(0)
        on = False
        for j in range(offsets[i], offsets[i + 1]):
            c = counts[j]
            if on and c > 0:
                if n > bounds[i] and ends[n - 1] == pos:  # joined across an empty run
                    ends[n - 1] = pos + c
                else:
                    starts[n] = pos
                    ends[n] = pos + c
                    n += 1
            pos += c
            on = not on
    bounds[offsets.shape[0] - 1] = n


def intervals(counts: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    size = counts.shape[0] // 2 + 1
    starts = np.empty(size, dtype=np.int64)
    ends = np.empty(size, dtype=np.int64)
    bounds = np.empty(offsets.shape[0], dtype=np.int64)
    _intervals(counts, offsets, starts, ends, bounds)
    return starts, ends, bounds


@kernel()
def _first_ending_after(ends, lo, hi, pos):
    """First index in [lo, hi) whose end is past ``pos`` (ends are increasing)."""
    while lo < hi:
        mid = (lo + hi) // 2
        if ends[mid] <= pos:
            lo = mid + 1
        else:
            hi = mid
    return lo


@kernel()
def _intersection(sa, ea, a0, a1, sb, eb, b0, b1, first, last):
    """Pixels shared by two interval lists, looking only at positions in [first, last)."""
    i = _first_ending_after(ea, a0, a1, first)
    j = _first_ending_after(eb, b0, b1, first)
    inter = np.int64(0)
    while i < a1 and j < b1:
        s1, e1, s2, e2 = sa[i], ea[i], sb[j], eb[j]
        if s1 >= last or s2 >= last:
            break
        overlap = (e1 if e1 < e2 else e2) - (s1 if s1 > s2 else s2)
        inter += overlap if overlap > 0 else 0
        if e1 <= e2:
            i += 1
        else:
            j += 1
    return inter


@kernel()
def _overlaps(p, q):
    """True when two xywh boxes share a pixel."""
    for k in range(2):  # the lesser end past the greater start, on both axes
        pe, qe = p[k] + p[2 + k], q[k] + q[2 + k]
        if not ((pe if pe < qe else qe) > (p[k] if p[k] > q[k] else q[k])):
            return False
    return True


def _iou(ds, de, dbounds, da, db, gs, ge, gbounds, ga, gb, height, crowd, zd, out):
    """out[d, g]: IoU of detection d with ground truth g, or with a crowd g the intersection over
    the area of d. Only the columns both boxes span are walked; pairs whose boxes do not overlap
    share no pixel."""
    for d in numba.prange(out.shape[0]):
        for g in range(out.shape[1]):
            inter = np.int64(0)
            p, q = db[d], gb[g]
            if _overlaps(p, q):
                first = np.int64(p[0] if p[0] > q[0] else q[0]) * height
                pe, qe = p[0] + p[2], q[0] + q[2]
                last = np.int64(pe if pe < qe else qe) * height
                inter = _intersection(ds, de, dbounds[d], dbounds[d + 1],
                                      gs, ge, gbounds[g], gbounds[g + 1], first, last)
            union = da[d] if crowd[g] else da[d] + ga[g] - inter
            out[d, g] = inter / union if union != 0 else zd


_IOU = serial_and_parallel(_iou)


@kernel()
def _operands(counts, offsets, heights, starts, ends, bounds, areas, boxes):
    """What :func:`_iou` reads of a set, in one call: intervals, areas and boxes."""
    _intervals(counts, offsets, starts, ends, bounds)
    _areas(counts, offsets, areas)
    _bboxes(counts, offsets, heights, boxes)


def _iou_operands(counts: np.ndarray, offsets: np.ndarray, height: int) -> tuple[np.ndarray, ...]:
    n = offsets.shape[0] - 1
    size = counts.shape[0] // 2 + 1
    ops = (np.empty(size, np.int64), np.empty(size, np.int64), np.empty(n + 1, np.int64),
           np.empty(n, np.int64), np.empty((n, 4), np.float64))
    heights = np.empty(n, np.int64)
    heights.fill(height)
    _operands(counts, offsets, heights, *ops)
    return ops


def iou(dt: tuple[np.ndarray, np.ndarray], gt: tuple[np.ndarray, np.ndarray], height: int,
        crowd: np.ndarray, zero_division: float) -> np.ndarray:
    """dt, gt: (counts, offsets) of each set, all RLEs of the given height."""
    n, m = dt[1].shape[0] - 1, gt[1].shape[0] - 1
    out = np.empty((n, m), dtype=np.float64)
    if out.size:
        work = int(dt[0].shape[0]) * m + int(gt[0].shape[0]) * n
        _IOU[work >= PARALLEL_WORK](*_iou_operands(*dt, height), *_iou_operands(*gt, height),
                                    height, crowd, zero_division, out)
    return out


# Compressed strings straight to bits: the path of rle.iou for compressed strings of one size
# (and, built with RUNS, for run lengths: uncompressed counts, mixes, dense masks encoded first).
# Each string is decoded, with every check of :func:`_decode_strings`, into column-major bits
# (bit i of word q is pixel 64 q + i), together with its area, first and last pixel and, in tall
# images, the rows its pixels span; each pair is then counted by popcount over the words from the
# first pixel both masks may share to the last (in tall images, only the rows both span in each
# column). Walking the runs of every pair instead (:func:`_iou`) costs a branch per run and pair,
# several times the popcount over the same pixels. The bits of the ground truths are held at once,
# those of the detections one at a time in each block of them, SMALL_WORDS words in all at most
# (64 MiB); where the ground truths alone would take more than half of that, or the strings hold
# more than SMALL_CHARS characters, the strings are decoded to runs and :func:`iou_runs` takes
# the call (the ground truths in chunks).
SMALL_CHARS = 1 << 32
SMALL_WORDS = 1 << 23
# Words counted by a pair (an upper bound) from which a call starts worker threads, as for masks.
PARALLEL_WORDS = 1 << 21
# Between the rows of one column and those of the next, gaps of at most this many words are
# counted through rather than skipped: a new stretch of words costs more than a few words.
GAP_WORDS = 8
_ALL = np.uint64(0xFFFFFFFFFFFFFFFF)


# The drawing and pair-counting code below comes in two builds, bound by ``variant``: TALL for
# images taller than 64 GAP_WORDS rows, which also tracks the rows and columns each mask spans
# (:func:`_shared` skips the rows between them), and the other, which counts every word between
# a pair's first and last shared pixel. TALL is a compile-time constant, so a process that meets
# no tall image compiles none of that tracking. For the same reason the helpers are written out
# in the loops (a run check, setting bits, min and max): each compiled function costs a first
# call with an empty cache about a tenth of a second.


@kernel()
def _column(pos, col, start, height):
    """(column, its first pixel) of the position ``pos`` >= ``start``, the first pixel of column
    ``col``: a step or two in the common case, a division otherwise."""
    if pos - start < height:
        return col, start
    if pos - start < 2 * height:
        return col + 1, start + height
    col = pos // height
    return col, col * height


def _draw_template(source, starts, i, total, height, bits, spans, errors):
    """RLE i of ``total`` pixels in columns of ``height``: the compressed string
    source[starts[i]:starts[i + 1] - 1], decoded with every check of :func:`_string_counts` and
    :func:`_decode_strings`, or with RUNS its run lengths source[starts[i]:starts[i + 1]]
    (int64, checked as :func:`_check_all` does); its foreground runs drawn into ``bits`` (one
    row of words, overwritten) as it goes. Into spans[i] its area, first and last foreground
    pixel, first and last column and row (-1 but the rows when the mask is empty; with TALL
    False the columns are -1 and the rows 0 and height - 1, as :func:`_shared` alone reads
    them), into errors[i] its error code."""
    bits[:] = 0
    p, end = starts[i], starts[i + 1] - 1
    if RUNS:  # noqa: F821
        end = starts[i + 1]
    area, first, last = np.int64(0), np.int64(-1), np.int64(-1)
    y0, y1 = np.int64(0), np.int64(height - 1)
    if TALL:  # noqa: F821
        y0, y1 = np.int64(height), np.int64(-1)
    s, index = np.int64(0), np.int64(0)  # pixels so far, within [0, total]; runs so far
    c1, c2 = np.int64(0), np.int64(0)  # the previous two runs
    col, start = np.int64(0), np.int64(0)  # a column at or before s, and its first pixel
    err = OK
    while p < end:
        x = np.int64(0)
        if RUNS:  # noqa: F821
            x = source[p]
            p += 1
        else:  # one count, as in _decode_strings, checking each character as _string_counts does
            k = 0
            more = True
            while more:
                if p >= end:
                    err = TRUNCATED
                    break
                if k >= 12:
                    err = OVERFLOW
                    break
                ch = np.int64(source[p]) - 48
                if ch < 0 or ch > 63:
                    err = BAD_CHAR
                    break
                x |= (ch & 0x1F) << (5 * k)
                more = (ch & 0x20) != 0
                p += 1
                k += 1
                if not more and (ch & 0x10) != 0:
                    x |= np.int64(-1) << (5 * k)
            if err != OK:
                break
            if index > 2:
                x += c2  # |x| < 2**60 and 0 <= c2 <= total: no wrap
        if x < 0:  # the run checks of _decode_strings
            err = NEGATIVE
            break
        if x > total - s:
            err = PAST_TOTAL
            break
        if index % 2 == 1 and x > 0:  # s + x <= total: then height > 0
            # bits s .. s + x - 1 set
            q0, q1 = s >> 6, (s + x - 1) >> 6
            head = _ALL << np.uint64(s & 63)
            tail = _ALL >> np.uint64(63 - ((s + x - 1) & 63))
            if q0 == q1:
                bits[q0] |= head & tail
            else:
                bits[q0] |= head
                for q in range(q0 + 1, q1):
                    bits[q] = _ALL
                bits[q1] |= tail
            area += x
            if first < 0:
                first = s
            last = s + x - 1
            if TALL:  # noqa: F821
                xa, start = _column(s, col, start, height)
                ya = s - start
                col, start = _column(last, xa, start, height)
                yb = last - start
                if col > xa:  # over two columns or more: rows 0 and height - 1 both covered
                    ya, yb = np.int64(0), np.int64(height - 1)
                y0, y1 = (ya if ya < y0 else y0), (yb if yb > y1 else y1)
        s += x
        c2, c1 = c1, x
        index += 1
    if err == OK and s != total:
        err = WRONG_TOTAL
    x0, x1 = np.int64(-1), np.int64(-1)
    if TALL and first >= 0:  # noqa: F821
        x0, x1 = first // height, last // height
    span = spans[i]
    span[0], span[1], span[2], span[3], span[4], span[5], span[6] = area, first, last, x0, x1, \
        y0, y1
    errors[i] = err


@kernel()
def _split_joined(joined, starts):
    """Strings separated by single spaces: string i is joined[starts[i]:starts[i + 1] - 1].
    False when the spaces are not len(starts) - 2."""
    k, c = starts.shape[0] - 1, joined.shape[0]
    p = np.int64(0)
    for i in range(k):
        starts[i] = p
        while p < c and joined[p] != 32:
            p += 1
        if (p < c) != (i < k - 1):  # too few or too many strings
            return False
        p += 1
    starts[k] = p
    return True


@kernel()
def _shared(a, b, p, q, height):
    """Pixels set in both column-major bit rows a and b of spans p and q (see :func:`_draw`) in
    a tall image, each word counted once: the words from the first pixel both may share to the
    last, as one stretch, unless the rows both boxes span leave more than GAP_WORDS words
    between consecutive columns; then one stretch per column (or run of close columns)."""
    x0, x1 = (p[3] if p[3] > q[3] else q[3]), (p[4] if p[4] < q[4] else q[4])
    y0, y1 = (p[5] if p[5] > q[5] else q[5]), (p[6] if p[6] < q[6] else q[6])
    lo, hi = (p[1] if p[1] > q[1] else q[1]), (p[2] if p[2] < q[2] else q[2])
    first, last = x0 * height + y0, x1 * height + y1
    lo, hi = (lo if lo > first else first), (hi if hi < last else last)
    if x0 > x1 or y0 > y1 or lo > hi:
        return np.int64(0)
    if height - (y1 - y0 + 1) <= 64 * GAP_WORDS:  # no gap worth skipping
        return _count(a[lo >> 6 : (hi >> 6) + 1], b[lo >> 6 : (hi >> 6) + 1])
    s = np.int64(0)
    lo = (x0 * height + y0) >> 6
    hi = (x0 * height + y1) >> 6
    for x in range(x0 + 1, x1 + 1):
        qa = (x * height + y0) >> 6
        if qa > hi + GAP_WORDS:
            s += _count(a[lo : hi + 1], b[lo : hi + 1])
            lo = qa
        hi = (x * height + y1) >> 6
    return s + _count(a[lo : hi + 1], b[lo : hi + 1])


def _iou_bits_template(source, n, total, height, crowd, zd, spans, marks, bits, out):
    """``source``: the compressed strings of n detections then M ground truths, separated by
    single spaces (a character no valid string holds), or with RUNS their run lengths (int64,
    those of RLE i at source[marks[1, i]:marks[1, i + 1]]), every RLE of ``total`` pixels in
    columns of ``height`` (taller than 64 GAP_WORDS rows exactly when TALL). The ground truths
    are drawn into bits[:M] (M, W) uint64; the detections are split into B = len(bits) - M
    blocks, block b drawn one detection at a time into bits[M + b] and counted against every
    ground truth while its words are in cache: over the words from the first pixel both masks
    may share to the last (with TALL, see :func:`_shared`, only the rows both boxes span in each
    column). Areas and boxes go to ``spans`` (n + M, 7) int64, the error code of each RLE to
    marks[0] and where each starts to marks[1] (2, n + M + 1; with RUNS given, and checked to
    lie in ``source``). Returns False where an RLE is malformed, the spaces are not n + M - 1 or
    the starts are out of order (``out`` is then not complete), True with ``out`` (n, M)
    filled."""
    errors, starts = marks[0], marks[1]
    if RUNS:  # noqa: F821
        last = starts.shape[0] - 1
        if starts[0] != 0 or starts[last] > source.shape[0]:
            return False
        for i in range(last):
            if starts[i] > starts[i + 1]:
                return False
    elif not _split_joined(source, starts):
        return False
    m = out.shape[1]
    blocks = bits.shape[0] - m
    for g in numba.prange(m):
        draw(source, starts, n + g, total, height, bits[g], spans, errors)  # noqa: F821
    for g in range(m):
        if errors[n + g] != OK:
            return False
    for b in numba.prange(blocks):
        row = bits[m + b]
        for d in range(b * n // blocks, (b + 1) * n // blocks):
            draw(source, starts, d, total, height, row, spans, errors)  # noqa: F821
            if errors[d] != OK:
                continue
            p = spans[d]
            for g in range(m):  # written out here: a call per pair costs as much as its count
                q = spans[n + g]
                lo = p[1] if p[1] > q[1] else q[1]
                hi = p[2] if p[2] < q[2] else q[2]
                inter = np.int64(0)
                if p[1] >= 0 and q[1] >= 0 and lo <= hi:
                    if TALL:  # noqa: F821
                        inter = _shared(row, bits[g], p, q, height)
                    else:
                        inter = _count(row[lo >> 6 : (hi >> 6) + 1],
                                       bits[g, lo >> 6 : (hi >> 6) + 1])
                union = p[0] if crowd[g] else p[0] + q[0] - inter
                out[d, g] = inter / union if union != 0 else zd
    for d in range(n):
        if errors[d] != OK:
            return False
    return True


# By RUNS and TALL: _draw and _iou_bits (serial, parallel) read compressed strings in images of
# at most 64 GAP_WORDS rows, _draw_tall and _iou_bits_tall in taller ones; _draw_runs,
# _iou_bits_runs, _draw_runs_tall and _iou_bits_runs_tall read run lengths.
def _name(base: str, runs: bool, tall: bool) -> str:
    return base + ("_runs" if runs else "") + ("_tall" if tall else "")


_DRAW = {(runs, tall): kernel()(variant(_draw_template, _name("_draw", runs, tall), RUNS=runs,
                                        TALL=tall))
         for runs in (False, True) for tall in (False, True)}
_IOU_BITS = {
    (runs, tall): serial_and_parallel(variant(_iou_bits_template, _name("_iou_bits", runs, tall),
                                              RUNS=runs, TALL=tall, draw=_DRAW[runs, tall]))
    for runs in (False, True) for tall in (False, True)
}


def _bits_iou(source: np.ndarray, starts: np.ndarray | None, n: int, m: int, height: int,
              width: int, crowd: np.ndarray, zero_division: float) -> np.ndarray | None:
    """One call of _iou_bits: ``source`` the joined strings (uint8, ``starts`` None) or the
    run lengths (int64) with where each RLE's begin, ``starts`` (n + m + 1). None where an RLE
    is malformed."""
    total = height * width
    words = (total + 63) // 64
    parallel = n * m * words + (n + m) * words >= PARALLEL_WORDS
    # Blocks of detections: a few per thread (the split is even, the work is not), their rows
    # within the other half of SMALL_WORDS.
    blocks = 1
    if parallel:
        blocks = min(n, 4 * numba.get_num_threads(), SMALL_WORDS // 2 // max(1, words))
    out = np.empty((n, m), dtype=np.float64)
    spans = np.empty((n + m, 7), dtype=np.int64)
    marks = np.empty((2, n + m + 1), dtype=np.int64)
    if starts is not None:
        marks[1] = starts
    rows = (m + blocks, words)
    # Kept buffers (no page faults) where they serve; below that, np.empty costs less to ask.
    large = (m + blocks) * words * 8 >= _Buffers.MIN_BYTES
    bits = _empty(rows, np.uint64) if large else np.empty(rows, dtype=np.uint64)
    kernels = _IOU_BITS[starts is not None, height > 64 * GAP_WORDS]
    ok = kernels[parallel](source, n, total, height, crowd, zero_division, spans, marks, bits,
                           out)
    return out if ok else None


def iou_strings(joined: bytes, n: int, m: int, height: int, width: int, crowd: np.ndarray,
                zero_division: float) -> np.ndarray | None:
    """IoU of n >= 1 detections with m >= 1 ground truths given as their compressed strings
    joined by single spaces, all RLEs of size (height, width) with height * width < 2**32
    (checked by the caller): :func:`iou` of the same RLEs, bit for bit. None where the call is
    too large for the bits (SMALL_WORDS, SMALL_CHARS) or a string is malformed: the general path
    then takes it (and names the bad RLE)."""
    words = (height * width + 63) // 64
    if len(joined) > SMALL_CHARS or 2 * m * words > SMALL_WORDS:
        return None
    return _bits_iou(np.frombuffer(joined, dtype=np.uint8), None, n, m, height, width, crowd,
                     zero_division)


def iou_runs(counts: np.ndarray, offsets: np.ndarray, n: int, height: int, width: int,
             crowd: np.ndarray, zero_division: float) -> np.ndarray | None:
    """IoU of n >= 1 detections with m >= 1 ground truths given as their run lengths, RLE i at
    counts[offsets[i]:offsets[i + 1]] (int64, detections first; offsets (n + m + 1) int64,
    non-decreasing from 0), all of size (height, width) with height * width < 2**32 (checked
    by the caller): :func:`iou` of the same RLEs, bit for bit, every run checked as
    :func:`check_runs` does. None where an RLE is malformed (the caller names it).

    The bits path, as for strings, where drawing every mask, (n + m) words of bits, is no
    more work than walking the runs of every pair, n m times the runs (the runs walk wins for
    small masks in large images); the ground truths in chunks of at most SMALL_WORDS / 2 words
    of bits (the detections drawn again for each). Otherwise, or where one mask alone takes
    more than that, the runs are checked and walked (:func:`iou`)."""
    m = offsets.shape[0] - 1 - n
    total = height * width
    words = (total + 63) // 64
    walk = int(offsets[n] - offsets[0]) * m + int(offsets[-1] - offsets[n]) * n
    if 2 * words > SMALL_WORDS or (n + m) * words > walk:
        if offsets[0] != 0 or offsets[-1] > counts.shape[0] or (offsets[1:] < offsets[:-1]).any():
            raise ValueError("iou_runs: offsets must be non-decreasing from 0, within counts")
        if check_runs(counts, offsets, np.full(n + m, total, dtype=np.int64)).any():
            return None
        split = int(offsets[n])
        return iou((counts[:split], offsets[: n + 1]), (counts[split:], offsets[n:] - split),
                   height, crowd, zero_division)
    chunk = SMALL_WORDS // 2 // max(1, words)  # ground truths whose bits are held at once
    if m <= chunk:
        return _bits_iou(counts, offsets, n, m, height, width, crowd, zero_division)
    out = np.empty((n, m), dtype=np.float64)
    base = int(offsets[n])
    for g0 in range(0, m, chunk):
        g1 = min(m, g0 + chunk)
        lo, hi = int(offsets[n + g0]), int(offsets[n + g1])
        part = np.concatenate([counts[:base], counts[lo:hi]])
        starts = np.concatenate([offsets[: n + 1], offsets[n + g0 + 1 : n + g1 + 1] - lo + base])
        got = _bits_iou(part, starts, n, g1 - g0, height, width, crowd[g0:g1], zero_division)
        if got is None:
            return None
        out[:, g0:g1] = got
    return out


# --------------------------------------------------------------------------------------------
# Polygons: COCO's rasterization, so that the runs are exactly those of pycocotools. COCO scales
# the polygon by 5 and walks it densely along its edges; every step of the walk that changes column
# on the fine grid at a pixel centre of the coarse grid (fine column 5 X + 2, X in [0, w)) marks the
# first row inside the polygon in that column (or the first row past it); sorted, those marks are
# the run boundaries. The fine column changes monotonically along an edge, so instead of walking
# every step (as many as the coordinates are large) the step that leaves column 5 X + 2 is found by
# bisection, for each of the image's columns the edge spans: work and memory depend on the image
# and the vertex count, not on the coordinates, and the marks are those of the full walk. This
# relies on the engine's fastmath set allowing no fused multiply-add, which would round some walk
# steps differently from COCO's C.

_SCALE = 5.0


@kernel()
def _c_int(v):
    """A C cast from double to int: truncation toward zero."""
    return np.int64(math.trunc(v))


@kernel()
def _edge(xs, ys, j):
    """COCO's walk of edge j, from vertex j to j + 1 on the fine grid, as
    (steep, flip, n, x_start, y_start, slope): points d = 0..n, see _walk."""
    x_start, x_end, y_start, y_end = xs[j], xs[j + 1], ys[j], ys[j + 1]
    dx, dy = abs(x_end - x_start), abs(y_start - y_end)
    steep = dx < dy
    flip = (not steep and x_start > x_end) or (steep and y_start > y_end)
    if flip:
        x_start, x_end = x_end, x_start
        y_start, y_end = y_end, y_start
    if steep:
        return steep, flip, dy, x_start, y_start, (x_end - x_start) / dy
    return steep, flip, dx, x_start, y_start, (y_end - y_start) / dx if dx != 0 else 0.0


@kernel()
def _walk(edge, d):
    """Point d (0..n) of an edge's walk, (u, v) = (fine column, fine row), from vertex j on."""
    steep, flip, n, x_start, y_start, slope = edge
    t = n - d if flip else d
    if steep:
        return _c_int(x_start + slope * t + 0.5), t + y_start
    return t + x_start, _c_int(y_start + slope * t + 0.5)


@kernel()
def _mark(u1, v1, u2, v2, height, width):
    """COCO's run boundary for two consecutive points of the walk, or -1 when they give none."""
    if u1 == u2:
        return np.int64(-1)
    xd = (min(u1, u2) + 0.5) / _SCALE - 0.5
    if math.floor(xd) != xd or xd < 0 or xd > width - 1:
        return np.int64(-1)
    yd = (min(v1, v2) + 0.5) / _SCALE - 0.5
    if yd < 0:
        yd = 0.0
    elif yd > height:
        yd = float(height)
    return _c_int(xd) * height + _c_int(math.ceil(yd))


@kernel()
def _columns(u0, un, width):
    """The image columns X whose fine column 5 X + 2 lies between u0 and un: [first, last]."""
    lo, hi = min(u0, un), max(u0, un)
    first = max(np.int64(0), -((2 - lo) // 5))  # ceil((lo - 2) / 5)
    last = min(np.int64(width) - 1, (hi - 2) // 5)
    return first, last


@kernel()
def _step_leaving(edge, target, rising):
    """The step d (1..n) of the walk whose pair (d - 1, d) leaves fine column ``target``
    (rising: u goes up from it; otherwise u comes down to it), or -1. Bisection on the monotone u."""
    n = edge[2]
    lo, hi = np.int64(1), n + 1
    while lo < hi:
        mid = lo + (hi - lo) // 2
        u = _walk(edge, mid)[0]
        if (u > target) if rising else (u <= target):
            hi = mid
        else:
            lo = mid + 1
    if lo > n:
        return np.int64(-1)
    here = lo - 1 if rising else lo
    return lo if _walk(edge, here)[0] == target else np.int64(-1)


@kernel()
def _mark_bound(xs, ys, width):
    """An upper bound on the marks of a polygon: per edge, one per column it spans, plus one."""
    total = np.int64(0)
    for j in range(xs.shape[0] - 1):
        edge = _edge(xs, ys, j)
        first, last = _columns(_walk(edge, 0)[0], _walk(edge, edge[2])[0], width)
        total += max(np.int64(0), last - first + 1) + 1
    return total


@kernel()
def _polygon_marks(xs, ys, height, width, marks):
    """COCO's run boundaries of the polygon (xs, ys on the fine grid, closed: last = first) into
    ``marks`` (room for _mark_bound of them); returns how many."""
    count = 0
    pu, pv = np.int64(0), np.int64(0)  # the last point of the previous edge's walk
    for j in range(xs.shape[0] - 1):
        edge = _edge(xs, ys, j)
        u0, v0 = _walk(edge, 0)
        un, vn = _walk(edge, edge[2])
        if j > 0:  # the pair made by the previous edge's last point and this edge's first
            at = _mark(pu, pv, u0, v0, height, width)
            if at >= 0:
                marks[count] = at
                count += 1
        pu, pv = un, vn
        if u0 == un:
            continue
        first, last = _columns(u0, un, width)
        for x in range(first, last + 1):
            d = _step_leaving(edge, 5 * x + 2, un > u0)
            if d > 0:
                ua, va = _walk(edge, d - 1)
                ub, vb = _walk(edge, d)
                at = _mark(ua, va, ub, vb, height, width)
                if at >= 0:
                    marks[count] = at
                    count += 1
    return count


@kernel()
def _runs_from_marks(marks, total):
    """Sorted run boundaries (and ``total`` = h * w) -> COCO's runs, empty runs folded: an empty
    run joins the next one onto the run before it."""
    count = marks.shape[0] + 1
    bounds = np.empty(count, dtype=np.int64)
    bounds[: count - 1] = np.sort(marks)
    bounds[count - 1] = total
    previous = np.int64(0)
    for j in range(count):
        here = bounds[j]
        bounds[j] = here - previous
        previous = here
    out = np.empty(count, dtype=np.int64)
    n = 0
    out[n] = bounds[0]
    n += 1
    j = 1
    while j < count:
        if bounds[j] > 0:
            out[n] = bounds[j]
            n += 1
            j += 1
        else:
            j += 1
            if j < count:
                out[n - 1] += bounds[j]
                j += 1
    return out[:n].copy()


@kernel()
def _fine_grid(xy):
    """Vertices (K, 2) -> COCO's fine-grid vertices xs, ys (K + 1, closed), as C casts them."""
    k = xy.shape[0]
    xs = np.empty(k + 1, dtype=np.int64)
    ys = np.empty(k + 1, dtype=np.int64)
    for j in range(k):
        xs[j] = _c_int(_SCALE * xy[j, 0] + 0.5)
        ys[j] = _c_int(_SCALE * xy[j, 1] + 0.5)
    xs[k], ys[k] = xs[0], ys[0]
    return xs, ys


def polygon_runs(xy: np.ndarray, height: int, width: int) -> np.ndarray:
    """Runs of one polygon ``xy`` (K, 2) rasterized into an image of ``height`` x ``width``.

    The caller checks that the coordinates are finite and small enough for the fine grid to fit
    int64 (|coordinate| <= 2**53) and that height * width < 2**32.
    """
    if xy.shape[0] * (width + 1) >= 2**62:  # _mark_bound cannot wrap
        raise ValueError(f"a polygon of {xy.shape[0]} vertices is too large to rasterize")
    return _polygon_runs(np.ascontiguousarray(xy, dtype=np.float64), height, width)


@kernel()
def _polygon_runs(xy, height, width):  # one compiled call: most polygons are small
    xs, ys = _fine_grid(xy)
    marks = np.empty(_mark_bound(xs, ys, width), dtype=np.int64)
    count = _polygon_marks(xs, ys, height, width, marks)
    return _runs_from_marks(marks[:count], np.int64(height) * width)
