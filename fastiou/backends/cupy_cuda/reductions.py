"""Fused IoU reductions on the CUDA engine (kernels in ``fastiou/cuda/reductions.cu``).

The first set is walked in tiles of rows; each tile of IoUs is made by the box or mask engine's own
kernels (``box_pairwise``, ``mask_pairwise``), so its values are those of ``box_iou`` /
``mask_iou``, into a buffer of at most ``memory_budget`` bytes, and reduced at once by a block per
row. Column maxima are the row maxima of the swapped call (IoU is symmetric bit for bit), so long
rows and long columns both spread over many blocks. Pairs take two passes: per-row counts, an
exclusive prefix sum (``cumsum``, deterministic), then each row writes its pairs at its offset with
a block scan, in column order: the order is row-major whatever the schedule.
"""

from __future__ import annotations

from typing import Any, Iterator, NamedTuple

import numpy as np

from ..._validate import BoxPair, MaskPair
from . import BLOCK, C_TYPES, KERNELS, MAX_GRID_X, launch, runtime
from .boxes import box_pair
from .masks import mask_pair

SOURCE = "reductions.cu"
THREADS = 256  # REDUCE_THREADS in reductions.cu
INDEX = np.dtype(np.int64)
assert THREADS == BLOCK


def _kernel(what: str, out: Any) -> str:
    return f"fastiou::iou_row_{what}<{C_TYPES[np.dtype(out)]}>"


KERNELS[SOURCE] = tuple(
    _kernel(what, out) for what in ("topk", "count", "pairs") for out in (np.float32, np.float64)
)


class Items(NamedTuple):
    kind: str  # 'box' or 'mask'
    a: Any  # boxes (n, 2d), or (words (n, H, K), area (n,))
    b: Any
    n: int
    m: int
    spec: Any  # BoxPair of (a, b) for boxes
    zd: float
    out: np.dtype

    def swapped(self) -> Items:
        spec = self.spec._replace(n=self.m, m=self.n) if self.kind == "box" else None
        return self._replace(a=self.b, b=self.a, n=self.m, m=self.n, spec=spec)


def box_items(b1: Any, b2: Any, *, spec: BoxPair, zero_division: float) -> Items:
    return Items("box", b1, b2, spec.n, spec.m, spec, zero_division, spec.out)


def mask_items(w1: Any, a1: Any, w2: Any, a2: Any, *, zero_division: float) -> Items:
    return Items("mask", (w1, a1), (w2, a2), w1.shape[0], w2.shape[0], None, zero_division,
                 np.dtype(np.float32))


def _tiles(items: Items, budget: int) -> Iterator[tuple[int, Any]]:
    """(first row, IoU tile (rows, m)) for consecutive tiles of rows of ``items.a``."""
    xp = runtime().xp
    tile = max(1, min(items.n, budget // (items.m * items.out.itemsize)))
    buffer = xp.empty((tile, items.m), items.out) if items.kind == "box" else None
    for r0 in range(0, items.n, tile):
        r1 = min(items.n, r0 + tile)
        if items.kind == "box":
            spec = items.spec._replace(n=r1 - r0)
            values = box_pair(items.a[r0:r1], items.b, op="iou", spec=spec,
                              zero_division=items.zd, out=buffer[: r1 - r0])
        else:
            (w1, a1), (w2, a2) = items.a, items.b
            values = mask_pair(w1[r0:r1], a1[r0:r1], w2, a2, op="iou",
                               spec=MaskPair((), r1 - r0, items.m), zero_division=items.zd,
                               budget=budget)
        yield r0, values


def _grid(rows: int) -> tuple[int]:
    return (max(1, min(rows, MAX_GRID_X)),)


def _row_topk(items: Items, k: int, budget: int) -> tuple[Any, Any]:
    xp = runtime().xp
    vals, idx = xp.empty((items.n, k), items.out), xp.empty((items.n, k), INDEX)
    for r0, v in _tiles(items, budget):
        rows = v.shape[0]
        args = ((v, items.out), (rows, np.int64), (items.m, np.int64), (k, np.int64),
                (vals[r0 : r0 + rows], items.out), (idx[r0 : r0 + rows], INDEX))
        launch(SOURCE, _kernel("topk", items.out), _grid(rows), (THREADS,), args)
    return vals, idx


def _empty_max(n: int, out: np.dtype) -> tuple[Any, Any]:
    xp = runtime().xp
    return xp.zeros(n, out), xp.full(n, -1, INDEX)


def iou_max(items: Items, *, budget: int) -> tuple[Any, ...]:
    if items.n == 0 or items.m == 0:
        return (*_empty_max(items.n, items.out), *_empty_max(items.m, items.out))
    result = []
    for it in (items, items.swapped()):
        vals, idx = _row_topk(it, 1, budget)
        result += [vals.reshape(-1), idx.reshape(-1)]
    return tuple(result)


def iou_topk(items: Items, k: int, *, budget: int) -> tuple[Any, Any]:
    xp = runtime().xp
    if items.n == 0 or k == 0:
        return xp.zeros((items.n, k), items.out), xp.zeros((items.n, k), INDEX)
    return _row_topk(items, k, budget)


def iou_pairs(items: Items, threshold: float, *, max_pairs: int | None, budget: int,
              func: str) -> tuple[Any, ...]:
    xp = runtime().xp
    thr = (threshold, items.out)  # cast by launch: rounded to the output dtype
    counts = xp.zeros(items.n, INDEX)
    if items.n and items.m:
        for r0, v in _tiles(items, budget):
            rows = v.shape[0]
            args = ((v, items.out), (rows, np.int64), (items.m, np.int64), thr,
                    (counts[r0 : r0 + rows], INDEX))
            launch(SOURCE, _kernel("count", items.out), _grid(rows), (THREADS,), args)
    offsets = xp.zeros(items.n, INDEX)
    if items.n > 1:
        offsets[1:] = xp.cumsum(counts[:-1])
    total = int(counts.sum())  # the output size: one scalar to the host
    size = total if max_pairs is None else max_pairs
    out_r, out_c = xp.full(size, -1, INDEX), xp.full(size, -1, INDEX)
    out_v = xp.zeros(size, items.out)
    if size and total:
        for r0, v in _tiles(items, budget):
            rows = v.shape[0]
            args = ((v, items.out), (rows, np.int64), (items.m, np.int64), thr,
                    (offsets[r0 : r0 + rows], INDEX), (r0, np.int64), (size, np.int64),
                    (out_r, INDEX), (out_c, INDEX), (out_v, items.out))
            launch(SOURCE, _kernel("pairs", items.out), _grid(rows), (THREADS,), args)
    return out_r, out_c, out_v, xp.asarray(total, dtype=INDEX)
