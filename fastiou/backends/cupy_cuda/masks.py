"""Dense masks on the CUDA engine (kernels in ``fastiou/cuda/masks.cu``).

Masks are packed on the device, straight from their own dtype (no conversion), to uint64 words, a
warp per word (coalesced reads, bits gathered with ``__ballot_sync``); the pairwise kernel is a
tiled popcount "matrix product" over the packed words and holds no temporaries. Masks that are not
C-contiguous, and dtypes without a C++ type here (float16), are compared on the device a chunk of
rows at a time and packed from the bool result.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..._validate import MaskPair, size
from . import BLOCK, C_TYPES, KERNELS, MAX_GRID_X, MAX_GRID_Y, grid_1d, launch, runtime

BITS = 64
WARP = 32  # the packing, counting and aligned kernels work a warp at a time
PAIR_TILE, PAIR_THREADS = 64, 256  # as in masks.cu: a 64 x 64 tile of pairs per block
SOURCE = "masks.cu"
_RULES = {"nonzero": 0, "atleast": 1}
_OPS = {"iou": 0, "ioa": 1}
MASK_TYPES = C_TYPES  # every dtype a mask may have


def _pack_kernel(dtype: Any, rule: str) -> str:
    return f"fastiou::mask_pack<{MASK_TYPES[np.dtype(dtype)]}, {_RULES[rule]}>"


def _pair_kernel(kind: str, op: str) -> str:
    return f"fastiou::mask_{kind}<float, {_OPS[op]}>"


KERNELS[SOURCE] = (
    # bool masks are used as given (no threshold rule); floating masks only with a threshold
    tuple(_pack_kernel(t, rule) for t in MASK_TYPES for rule in _RULES
          if not (t.kind == "b" and rule == "atleast") and not (t.kind == "f" and rule == "nonzero"))
    + tuple(_pair_kernel(kind, op) for kind in ("pairwise", "aligned") for op in _OPS)
    + ("fastiou::mask_count", "fastiou::mask_boxes<float>",
       "fastiou::mask_segment_counts<long long>")
)


def _launch_pack(rows: Any, rule: str, cut: Any, dst: Any) -> None:
    """Pack C-contiguous mask rows (R, W) into the C-contiguous words (R, K)."""
    dtype = np.dtype(rows.dtype)
    count, width = rows.shape
    nwords = dst.shape[1]
    args = ((rows, dtype), (count, np.int64), (width, np.int64), (nwords, np.int64),
            (0 if cut is None else cut, dtype), (dst, np.uint64))
    launch(SOURCE, _pack_kernel(dtype, rule), grid_1d(count * nwords * WARP), (BLOCK,), args)


def pack_masks(x: Any, *, rule: str, cut: Any, budget: int) -> tuple[Any, Any]:
    """Masks (..., H, W) -> (words (..., H, K) uint64, area (...) int64)."""
    xp = runtime().xp
    *lead, height, width = x.shape
    lead = tuple(lead)
    nwords = (width + BITS - 1) // BITS
    words = xp.zeros(lead + (height, nwords), dtype=np.uint64)
    area = xp.zeros(lead, dtype=np.int64)
    if rule == "none" or words.size == 0:
        return words, area
    flat_words = words.reshape(-1, nwords)
    if np.dtype(x.dtype) in MASK_TYPES and x.flags.c_contiguous:
        _launch_pack(x.reshape(-1, width), rule, cut, flat_words)
    else:
        # Strided masks, or a dtype without a C++ type here (float16): compare on the device a
        # chunk of rows at a time (a bool temporary within the budget, never a copy of the
        # values) and pack the bool rows.
        chunk = max(1, budget // max(1, width))
        start = 0
        masks = [x] if not lead else (x[idx] for idx in np.ndindex(lead))
        for mask in masks:
            for r0 in range(0, height, chunk):
                part = mask[r0 : r0 + chunk]
                part = (part >= cut) if rule == "atleast" else (part != 0)
                stop = start + part.shape[0]
                _launch_pack(xp.ascontiguousarray(part), "nonzero", None, flat_words[start:stop])
                start = stop
    rows = size(lead)
    args = ((words, np.uint64), (rows, np.int64), (height * nwords, np.int64), (area, np.int64))
    launch(SOURCE, "fastiou::mask_count", grid_1d(rows * WARP), (BLOCK,), args)
    return words, area


def _flat(xp: Any, words: Any, area: Any, batch: tuple[int, ...]) -> tuple[Any, Any]:
    n, height, k = words.shape[-3:]
    w = xp.broadcast_to(words, batch + (n, height, k)).reshape(size(batch) * n, height * k)
    a = xp.broadcast_to(area, batch + (n,)).reshape(-1)
    return xp.ascontiguousarray(w), xp.ascontiguousarray(a)


def mask_pair(
    w1: Any, a1: Any, w2: Any, a2: Any, *, op: str, spec: MaskPair, zero_division: float,
    budget: int,
) -> Any:
    """IoU or IoA of packed masks; the kernels hold no temporaries."""
    xp = runtime().xp
    out = xp.empty(spec.out_shape, dtype=np.float32)
    if out.size == 0:
        return out
    f1, g1 = _flat(xp, w1, a1, spec.batch)
    f2, g2 = _flat(xp, w2, a2, spec.batch)
    nwords = f1.shape[-1]
    zd = (zero_division, np.float64)
    if spec.m < 0:
        count = f1.shape[0]
        args = ((f1, np.uint64), (g1, np.int64), (f2, np.uint64), (g2, np.int64),
                (count, np.int64), (nwords, np.int64), zd, (out, np.float32))
        launch(SOURCE, _pair_kernel("aligned", op), grid_1d(count * WARP), (BLOCK,), args)
    else:
        batch = size(spec.batch)
        grid = (min(-(-spec.m // PAIR_TILE), MAX_GRID_X), min(-(-spec.n // PAIR_TILE), MAX_GRID_Y),
                min(batch, MAX_GRID_Y))
        args = ((f1, np.uint64), (g1, np.int64), (f2, np.uint64), (g2, np.int64),
                (batch, np.int64), (spec.n, np.int64), (spec.m, np.int64), (nwords, np.int64),
                zd, (out, np.float32))
        launch(SOURCE, _pair_kernel("pairwise", op), grid, (PAIR_THREADS,), args)
    return out


def mask_boxes(words: Any, *, height: int, width: int) -> Any:
    """Packed (..., H, K) -> boxes (..., 4) float32 'xyxy' in pixel edges."""
    xp = runtime().xp
    lead = tuple(words.shape[:-2])
    out = xp.empty(lead + (4,), dtype=np.float32)
    count = size(lead)
    if count == 0:
        return out
    if height == 0 or words.shape[-1] == 0:
        out[...] = 0
        return out
    w = xp.ascontiguousarray(words)
    args = ((w, np.uint64), (count, np.int64), (height, np.int64), (words.shape[-1], np.int64),
            (out, np.float32))
    launch(SOURCE, "fastiou::mask_boxes<float>", grid_1d(count), (BLOCK,), args)
    return out


def segment_counts(w1: Any, at1: Any, w2: Any, at2: Any, nw: np.ndarray, off1: np.ndarray,
                   off2: np.ndarray, start: np.ndarray) -> Any:
    """Exact intersection counts of the pairs of many segments (images) in one launch.

    ``w1 (L1,)``, ``w2 (L2,)``: flat uint64 words on the device; mask i of the first set starts
    at word ``at1[i]``, mask j of the second at ``at2[j]``. Segment s pairs masks
    ``off1[s]:off1[s + 1]`` with ``off2[s]:off2[s + 1]``, all of ``nw[s]`` words;
    ``start (S + 1,)`` places its row-major block and ends with the total (a mask of a segment
    whose other side is empty is not read). ``at1``, ``at2``,
    ``nw``, ``off1``, ``off2``, ``start`` are int64 host arrays, checked here against each other
    and the word arrays before they are copied to the device. Returns the flat ``(total,)``
    int64 counts on the device.
    """
    xp = runtime().xp
    at1, at2, off1, off2, start, nw = (np.ascontiguousarray(a, dtype=np.int64)
                                       for a in (at1, at2, off1, off2, start, nw))
    segments = nw.shape[0]
    if not (off1.shape == off2.shape == start.shape == (segments + 1,)):
        raise AssertionError("segment_counts: offsets must have one entry per segment, plus one")
    rows1, rows2 = off1[1:] - off1[:-1], off2[1:] - off2[:-1]
    if ((rows1 < 0).any() or (rows2 < 0).any() or (nw < 0).any() or off1[0] != 0 or off2[0] != 0
            or off1[-1] != at1.shape[0] or off2[-1] != at2.shape[0] or start[0] != 0
            or (np.diff(start) != rows1 * rows2).any()):
        raise AssertionError("segment_counts: inconsistent offsets")
    # A mask of a segment whose other side is empty is never read (its offset may be anything).
    for at, rows, other, words in ((at1, rows1, rows2, w1), (at2, rows2, rows1, w2)):
        need = np.repeat(np.where(other > 0, nw, 0), rows)
        if (at < 0).any() or (at > words.shape[0] - need).any():
            raise AssertionError("segment_counts: a mask lies outside its word array")
    total = int(start[-1])
    out = xp.empty((total,), dtype=np.int64)
    if total == 0:
        return out
    a1, a2, d1, d2, ds, dn = (xp.asarray(a) for a in (at1, at2, off1, off2, start, nw))
    args = ((w1, np.uint64), (a1, np.int64), (w2, np.uint64), (a2, np.int64), (dn, np.int64),
            (d1, np.int64), (d2, np.int64), (ds, np.int64), (segments, np.int64),
            (total, np.int64), (out, np.int64))
    launch(SOURCE, "fastiou::mask_segment_counts<long long>", grid_1d(total * WARP), (BLOCK,),
           args)
    return out
