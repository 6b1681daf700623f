"""Semantic segmentation on the Numba engine: confusion counts with privatized histograms.

The label maps are read in their own dtype (a uint8 map is never widened in memory: each label is
converted in a register). The pixels are split into tasks run in parallel, each counting into its
own int64 histogram (no counter is shared between threads; exact for any number of pixels); the
histograms are summed at the end.

A histogram is a (C + 2) x (C + 1) matrix, flattened: row t < C, column p < C counts target t
predicted p; row C the ignored pixels (whatever their prediction); row C + 1 and column C the
pixels with a label outside [0, C). The bin of a pixel is ``row(target) + col(pred)``: for
one-byte labels both are read from 256-entry tables, otherwise computed.

Real label maps are piecewise constant, so within a task the pixels are read in windows of
``WINDOW``: a window where target and prediction hold one label pair each is counted with one
addition (the test is a vectorized comparison); a window that crosses a boundary is tested again
in quarters, and only the quarters that cross it are counted pixel by pixel.
"""

from __future__ import annotations

import functools
from typing import Any

import numba
import numpy as np

from ..._validate import LabelSpec
from .._semantic_arrays import (  # noqa: F401  (the streaming state: the int64 matrix itself)
    flat_pair,
    labels_known,
    state_float,
    state_from_counts,
    state_invalid,
    state_matrix,
    state_merge,
)
from . import kernel

WINDOW = 16  # pixels tested at once for a single (target, prediction) pair
SUB = 4  # then in quarters, where a window crosses a boundary
_MIN_TASK = 1 << 19  # pixels per task at least (~0.3 ms of work): smaller inputs use fewer threads
_MAX_PRIVATE = 1 << 23  # int64 entries in all private histograms together (64 MiB)


# Row and column offsets of a label: read from a 256-entry table for one-byte labels, computed
# for wider ones (the table is None then; Numba compiles each case apart, dropping the other).
# Unsigned, so that indexing needs no negative-index check; unsigned comparisons also reject
# negative labels (and uint64 labels >= 2**63) in one test.


@kernel()
def _row(t, c, ignore, has_ignore, table):
    if table is None:
        tt = np.uint64(np.int64(t))
        r = tt if tt < np.uint64(c) else np.uint64(c + 1)
        r = np.uint64(c) if has_ignore & (t == ignore) else r
        return r * np.uint64(c + 1)
    return table[np.uint8(t)]


@kernel()
def _col(p, c, table):
    if table is None:
        pp = np.uint64(np.int64(p))
        return pp if pp < np.uint64(c) else np.uint64(c)
    return table[np.uint8(p)]


@kernel()
def _count_range(pred, target, c, ignore, has_ignore, rows, cols, h):
    """Add every pixel of the 1-D label maps to the histogram h.

    Indices start at 0 and only grow, so the compiler drops the negative-index checks; the
    uniformity tests have constant trip counts, so they are unrolled and vectorized.
    """
    n = pred.shape[0]
    i = 0
    while i + WINDOW <= n:
        a, b = target[i], pred[i]
        same = True
        for j in range(1, WINDOW):
            same &= (target[i + j] == a) & (pred[i + j] == b)
        if same:
            h[_row(a, c, ignore, has_ignore, rows) + _col(b, c, cols)] += WINDOW
        else:  # a boundary: the same test on each quarter, then pixel by pixel
            for q in range(0, WINDOW, SUB):
                k = i + q
                a, b = target[k], pred[k]
                same = True
                for j in range(1, SUB):
                    same &= (target[k + j] == a) & (pred[k + j] == b)
                if same:
                    h[_row(a, c, ignore, has_ignore, rows) + _col(b, c, cols)] += SUB
                else:
                    for j in range(SUB):
                        h[_row(target[k + j], c, ignore, has_ignore, rows)
                          + _col(pred[k + j], c, cols)] += 1
        i += WINDOW
    for j in range(i, n):
        h[_row(target[j], c, ignore, has_ignore, rows) + _col(pred[j], c, cols)] += 1


@kernel(parallel=True)
def _count(pred, target, c, ignore, has_ignore, rows, cols, private):
    """private: (tasks, bins) zeros; task k counts its slice of the flat label maps."""
    n = pred.shape[0]
    tasks = private.shape[0]
    for task in numba.prange(tasks):
        k = np.int64(task)
        lo, hi = n * k // tasks, n * (k + 1) // tasks
        _count_range(pred[lo:hi], target[lo:hi], c, ignore, has_ignore, rows, cols, private[k])


@functools.lru_cache(maxsize=64)
def _tables(pred: np.dtype, target: np.dtype, spec: LabelSpec) -> tuple[Any, Any]:
    """Row and column offsets of every byte value for one-byte labels, else None (cached: the
    kernels only read them)."""
    c = spec.num_classes

    def values(dtype: np.dtype) -> np.ndarray:
        return np.arange(256, dtype=np.uint8).view(dtype).astype(np.int64)

    rows = cols = None
    if target.itemsize == 1:
        v = values(target)
        r = np.where((v >= 0) & (v < c), v, c + 1)
        if spec.ignore_active:
            r[v == spec.ignore_index] = c
        rows = (r * (c + 1)).astype(np.uint64)
    if pred.itemsize == 1:
        v = values(pred)
        cols = np.where((v >= 0) & (v < c), v, c).astype(np.uint64)
    return rows, cols


def confusion_counts(pred: np.ndarray, target: np.ndarray,
                     spec: LabelSpec) -> tuple[np.ndarray, np.int64]:
    """``(C, C)`` int64 counts and the number of pixels with a label outside ``[0, C)``."""
    p, t = flat_pair(np, pred, target)
    c = spec.num_classes
    bins = (c + 2) * (c + 1)
    # Fewer than two tasks' worth of pixels: one task on the calling thread, without asking
    # Numba for its thread count (which would start the thread pool).
    tasks = p.shape[0] // _MIN_TASK
    if tasks > 1:
        tasks = min(4 * numba.get_num_threads(), tasks, _MAX_PRIVATE // bins)
    private = np.zeros((max(tasks, 1), bins), dtype=np.int64)
    ignore = spec.ignore_index if spec.ignore_active else 0
    args = (np.int64(c), t.dtype.type(ignore), spec.ignore_active, *_tables(p.dtype, t.dtype, spec))
    if tasks <= 1:  # no thread pool for one task: on a busy machine waking it costs milliseconds
        _count_range(p, t, *args, private[0])
        h = private[0]
    else:
        _count(p, t, *args, private)
        h = private.sum(axis=0)
    h = h.reshape(c + 2, c + 1)
    cm = h[:c, :c].copy()
    return cm, np.int64(p.shape[0] - h[c].sum() - cm.sum())  # row c: ignored pixels
