"""Fused IoU reductions (fastiou.reductions) on every engine.

Each result is compared with two things: the full matrix of ``box_iou`` / ``mask_iou`` on the same
engine (indices, order and selected pairs must match exactly, since the reductions compare those
very values), and a plain float64 reference (``reference.pairwise`` for boxes, pixel counts for
masks) for the values. The data hold exact ties, NaN boxes, zero-area boxes, empty masks, 3D boxes
and every format; the memory budget is varied to show that the tiling does not change a result.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import box_cases
import fastiou
import reference
from fastiou import reductions

TOL = {np.dtype(np.float32): dict(rtol=2e-6, atol=1e-7),
       np.dtype(np.float64): dict(rtol=1e-12, atol=1e-13)}


# --------------------------------------------------------------------------------------------
# Data and plain references


def make_boxes(rng: np.random.Generator, n: int, dims: int = 2, fmt: str = "xyxy",
               edge_cases: bool = True) -> np.ndarray:
    """Integer-valued float64 boxes in ``fmt``; the first rows hold the edge cases: a copy of row
    5 (exact ties), a zero-area box, an inverted box and a NaN coordinate."""
    lo = np.round(rng.uniform(0, 30, (n, dims)))
    size = np.round(rng.uniform(0, 20, (n, dims)))
    corners = np.concatenate([lo, lo + size], axis=1)
    if edge_cases and n >= 6:
        corners[0] = corners[5]
        corners[1, dims:] = corners[1, :dims]
        corners[2, :dims], corners[2, dims:] = corners[2, dims:] + 1, corners[2, :dims].copy()
        corners[3, 1] = np.nan
    if fmt in ("xywh", "xyzwhd"):
        return np.concatenate([corners[:, :dims], corners[:, dims:] - corners[:, :dims]], axis=1)
    if fmt in ("cxcywh", "cxcyczwhd"):
        return np.concatenate([(corners[:, :dims] + corners[:, dims:]) / 2,
                               corners[:, dims:] - corners[:, :dims]], axis=1)
    return corners


def make_masks(rng: np.random.Generator, n: int, h: int = 7, w: int = 70) -> np.ndarray:
    m = rng.random((n, h, w)) < rng.uniform(0.1, 0.6, (n, 1, 1))
    if n >= 3:
        m[0] = False  # empty: union 0 with another empty mask
        m[2] = m[1]  # exact ties
    return m


def mask_reference(a: np.ndarray, b: np.ndarray, zd: float = 0.0) -> np.ndarray:
    """IoU of pixel counts in float64."""
    fa = a.reshape(a.shape[0], -1).astype(np.float64)
    fb = b.reshape(b.shape[0], -1).astype(np.float64)
    inter = fa @ fb.T
    union = fa.sum(1)[:, None] + fb.sum(1)[None, :] - inter
    out = np.full(inter.shape, zd)
    np.divide(inter, union, out=out, where=union != 0)
    return out


def first_k(full: np.ndarray, k: int) -> np.ndarray:
    """Columns of each row in IoU order: NaN first, then descending, ties by lowest index."""
    key = np.where(np.isnan(full), np.inf, full)
    return np.argsort(-key, axis=1, kind="stable")[:, :k]


def expected_max(full: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    if full.shape[axis] == 0:
        n = full.shape[1 - axis]
        return np.zeros(n, full.dtype), np.full(n, -1)
    return np.max(full, axis=axis), np.argmax(full, axis=axis)


def check_max(r: tuple, full: np.ndarray, ref: np.ndarray) -> None:
    assert len(r) == 4
    for axis, (val, idx) in enumerate(((r[0], r[1]), (r[2], r[3]))):
        want_val, want_idx = expected_max(full, 1 - axis)
        assert val.dtype == full.dtype and idx.dtype.kind == "i", (val.dtype, idx.dtype)
        np.testing.assert_array_equal(idx, want_idx)
        np.testing.assert_array_equal(val, want_val)
        if ref.size and ref.shape[1 - axis]:
            np.testing.assert_allclose(val, np.max(ref, axis=1 - axis), **TOL[val.dtype])


def check_topk(values: np.ndarray, indices: np.ndarray, full: np.ndarray, ref: np.ndarray,
               k: int) -> None:
    assert values.shape == indices.shape == (full.shape[0], k)
    assert values.dtype == full.dtype
    np.testing.assert_array_equal(indices, first_k(full, k))
    np.testing.assert_array_equal(values, np.take_along_axis(full, indices, 1))
    np.testing.assert_allclose(values, np.take_along_axis(ref, indices, 1), **TOL[values.dtype])


def check_pairs(p: tuple, full: np.ndarray, ref: np.ndarray, t: float) -> None:
    rows, cols = np.nonzero(full >= full.dtype.type(t))
    np.testing.assert_array_equal(p[0], rows)
    np.testing.assert_array_equal(p[1], cols)
    np.testing.assert_array_equal(p[2], full[rows, cols])
    np.testing.assert_allclose(p[2], ref[rows, cols], **TOL[full.dtype])
    assert p[2].dtype == full.dtype and int(p[3]) == rows.size and p[3].shape == ()


# --------------------------------------------------------------------------------------------
# Boxes


BOX_CASES = [(2, "xyxy"), (2, "xywh"), (2, "cxcywh"), (3, "xyzxyz"), (3, "cxcyczwhd")]


@pytest.mark.parametrize(("dims", "fmt"), BOX_CASES)
def test_box_reductions_match_the_full_matrix(engine, dims: int, fmt: str) -> None:
    rng = np.random.default_rng(dims * 10 + len(fmt))
    a = make_boxes(rng, 23, dims, fmt).astype(np.float32)
    b = make_boxes(rng, 17, dims, fmt).astype(np.float32)
    b[7] = a[5]  # IoU 1 with a copy
    full = engine.call(fastiou.box_iou, a, b, fmt=fmt)
    ref = reference.pairwise("iou", a.astype(np.float64), b.astype(np.float64), fmt=fmt)
    assert np.isnan(full).any() and (np.diff(np.sort(full, axis=1), axis=1) == 0).any()
    # The first case in full: one tile, and tiles of a row or two (the result does not change);
    # the other formats with fewer variants (each is a new compilation on JAX).
    first = (dims, fmt) == BOX_CASES[0]
    for budget in (None, 40) if first else (None,):
        check_max(engine.call(fastiou.box_iou_max, a, b, fmt=fmt, memory_budget=budget), full, ref)
        for k in (1, 17) if first else ():
            v, i = engine.call(fastiou.box_iou_topk, a, b, k=k, fmt=fmt, memory_budget=budget)
            check_topk(v, i, full, ref, k)
        for t in (0.0, 0.25, 1.0) if first and budget is None else (0.25,):
            p = engine.call(fastiou.box_iou_pairs, a, b, threshold=t, fmt=fmt,
                            memory_budget=budget)
            check_pairs(p, full, ref, t)


def test_box_dtypes_and_zero_division(engine) -> None:
    rng = np.random.default_rng(3)
    a, b = make_boxes(rng, 23, edge_cases=False), make_boxes(rng, 17, edge_cases=False)
    a[0, 2:] = a[0, :2]
    b[4, 2:] = b[4, :2]  # two zero-area boxes: union 0 -> zero_division
    for dtype in (np.float64, np.int32):  # integers: computed wide, float32 out
        x, y = a.astype(dtype), b.astype(dtype)
        full = engine.call(fastiou.box_iou, x, y, zero_division=0.5)
        ref = reference.pairwise("iou", x.astype(np.float64), y.astype(np.float64),
                                 zero_division=0.5)
        assert full[0, 4] == 0.5
        check_max(engine.call(fastiou.box_iou_max, x, y, zero_division=0.5), full, ref)
        if dtype == np.float64:
            v, i = engine.call(fastiou.box_iou_topk, x, y, k=3, zero_division=0.5)
            check_topk(v, i, full, ref, 3)
        check_pairs(engine.call(fastiou.box_iou_pairs, x, y, threshold=0.5, zero_division=0.5),
                    full, ref, 0.5)


def test_float64_and_int64_indices_with_jax_x64(engine) -> None:
    rng = np.random.default_rng(12)
    a, b = make_boxes(rng, 23), make_boxes(rng, 17)
    a[4] += 1e-9  # differs from its neighbours only in float64
    with box_cases.x64(engine):
        full = engine.call(fastiou.box_iou, a, b)
        assert full.dtype == np.float64
        ref = reference.pairwise("iou", a, b)
        r = engine.call(fastiou.box_iou_max, a, b)
        check_max(r, full, ref)
        assert r[1].dtype == np.int64
        check_pairs(engine.call(fastiou.box_iou_pairs, a, b, threshold=0.3), full, ref, 0.3)


def test_nan_ranks_first_and_is_never_selected(engine) -> None:
    a = np.array([[0, 0, 10, 10], [0, 0, np.nan, 10], [5, 5, 15, 15]], np.float32)
    b = np.array([[0, 0, 10, 10], [0, np.nan, 4, 4], [0, 0, 10, 10], [1, 1, 9, 9]], np.float32)
    r = engine.call(fastiou.box_iou_max, a, b)
    assert np.isnan(r[0][0]) and r[1][0] == 1  # row 0: the NaN column, not the exact match
    assert np.isnan(r[0][1]) and r[1][1] == 0  # an all-NaN row: the first NaN
    assert np.isnan(r[2][0]) and r[3][0] == 1  # column 0: the NaN row
    assert np.isnan(r[2][1]) and r[3][1] == 0
    v, i = engine.call(fastiou.box_iou_topk, a, b, k=4)
    np.testing.assert_array_equal(i[0], [1, 0, 2, 3])  # NaN, then 1.0 twice (lower index first)
    np.testing.assert_array_equal(i[1], [0, 1, 2, 3])
    p = engine.call(fastiou.box_iou_pairs, a, b, threshold=0.0)
    assert not np.isnan(p[2]).any()
    np.testing.assert_array_equal(p[0], [0, 0, 0, 2, 2, 2])
    np.testing.assert_array_equal(p[1], [0, 2, 3, 0, 2, 3])


def test_threshold_is_rounded_to_the_output_dtype(engine) -> None:
    # IoU 7 / 10 in float32 is float32(0.7), which is below 0.7 in float64: a threshold of 0.7
    # selects it (as ``box_iou(a, b) >= 0.7`` does), the next float32 up does not.
    a = np.array([[0, 0, 7, 1]], np.float32)
    b = np.array([[0, 0, 10, 1], [50, 50, 60, 60]], np.float32)
    full = engine.call(fastiou.box_iou, a, b)
    assert full[0, 0] == np.float32(0.7) and float(full[0, 0]) < 0.7
    p = engine.call(fastiou.box_iou_pairs, a, b, threshold=0.7)
    np.testing.assert_array_equal(p[1], [0])
    above = float(np.nextafter(np.float32(0.7), np.float32(1)))
    p = engine.call(fastiou.box_iou_pairs, a, b, threshold=above)
    assert p[1].shape == (0,)


def test_extreme_coordinates_give_the_values_of_box_iou(engine) -> None:
    # Beyond the plain formula's range (products overflow or fall subnormal in float32), box_iou
    # rescales; the reductions must give its values, not inf or 0.
    rng = np.random.default_rng(11)
    a = make_boxes(rng, 23, edge_cases=False).astype(np.float32)
    b = make_boxes(rng, 17, edge_cases=False).astype(np.float32)
    a[0], b[0] = [1e30, 1e30, 3e30, 3e30], [2e30, 2e30, 4e30, 4e30]  # IoU 1/7
    a[1], b[1] = [0, 0, 2e-30, 2e-30], [1e-30, 1e-30, 3e-30, 3e-30]
    full = engine.call(fastiou.box_iou, a, b)
    np.testing.assert_allclose(full[[0, 1], [0, 1]], 1 / 7, rtol=1e-5)
    r = engine.call(fastiou.box_iou_max, a, b, memory_budget=300)
    check_max(r, full, full.astype(np.float64))
    assert r[1][0] == 0 and r[1][1] == 1
    v, i = engine.call(fastiou.box_iou_topk, a, b, k=3)
    np.testing.assert_array_equal(i, first_k(full, 3))
    check_pairs(engine.call(fastiou.box_iou_pairs, a, b, threshold=0.1, memory_budget=300),
                full, full.astype(np.float64), 0.1)


def test_empty_sides(engine) -> None:
    rng = np.random.default_rng(4)
    some = make_boxes(rng, 5).astype(np.float32)
    none = np.zeros((0, 4), np.float32)
    for a, b in ((some, none), (none, some), (none, none)):
        full = engine.call(fastiou.box_iou, a, b)
        r = engine.call(fastiou.box_iou_max, a, b)
        check_max(r, full, full.astype(np.float64))
        assert (r[1] == -1).all() and (r[0] == 0).all() and (r[3] == -1).all()
        v, i = engine.call(fastiou.box_iou_topk, a, b, k=0)
        assert v.shape == i.shape == (a.shape[0], 0)
        p = engine.call(fastiou.box_iou_pairs, a, b, threshold=0.0)
        assert p[0].shape == p[1].shape == p[2].shape == (0,) and int(p[3]) == 0
        p = engine.call(fastiou.box_iou_pairs, a, b, threshold=0.0, max_pairs=3)
        np.testing.assert_array_equal(p[0], [-1, -1, -1])


def test_max_pairs_truncates_and_pads(engine) -> None:
    rng = np.random.default_rng(5)
    a, b = make_boxes(rng, 23).astype(np.float32), make_boxes(rng, 17).astype(np.float32)
    full = engine.call(fastiou.box_iou, a, b)
    rows, cols = np.nonzero(full >= 0.1)
    assert 4 < rows.size < 400
    for size in (4, rows.size, 400):
        p = engine.call(fastiou.box_iou_pairs, a, b, threshold=0.1, max_pairs=size)
        keep = min(size, rows.size)
        assert p[0].shape == (size,) and int(p[3]) == rows.size
        np.testing.assert_array_equal(p[0][:keep], rows[:keep])
        np.testing.assert_array_equal(p[1][:keep], cols[:keep])
        np.testing.assert_array_equal(p[2][:keep], full[rows[:keep], cols[:keep]])
        assert (p[0][keep:] == -1).all() and (p[1][keep:] == -1).all() and (p[2][keep:] == 0).all()


def test_inputs_are_not_modified(engine) -> None:
    rng = np.random.default_rng(6)
    a = np.asfortranarray(make_boxes(rng, 23, fmt="cxcywh").astype(np.float32))
    b = make_boxes(rng, 17, fmt="cxcywh").astype(np.float32)[::-1]
    a0, b0 = a.copy(), b.copy()
    full = engine.call(fastiou.box_iou, np.ascontiguousarray(a), np.ascontiguousarray(b),
                       fmt="cxcywh")
    r = engine.call(fastiou.box_iou_max, a, b, fmt="cxcywh")
    np.testing.assert_array_equal(r[1], np.argmax(full, axis=1))
    np.testing.assert_array_equal(a, a0)
    np.testing.assert_array_equal(b, b0)


# --------------------------------------------------------------------------------------------
# Masks


def test_mask_reductions_match_the_full_matrix(engine) -> None:
    rng = np.random.default_rng(7)
    a, b = make_masks(rng, 9), make_masks(rng, 13)
    b[5] = a[3]  # IoU 1
    full = engine.call(fastiou.mask_iou, a, b, zero_division=0.25)
    ref = mask_reference(a, b, 0.25)
    assert full[0, 0] == 0.25
    for budget in (None, 200):  # 200 bytes: tiles of a few rows, packing a row at a time
        kw = dict(zero_division=0.25, memory_budget=budget)
        check_max(engine.call(fastiou.mask_iou_max, a, b, **kw), full, ref)
        check_topk(*engine.call(fastiou.mask_iou_topk, a, b, k=5, **kw), full, ref, 5)
        for t in (0.0, 0.2, 1.0) if budget is None else (0.2,):
            check_pairs(engine.call(fastiou.mask_iou_pairs, a, b, iou_threshold=t, **kw),
                        full, ref, t)


def test_masks_packed_thresholded_and_empty(engine) -> None:
    rng = np.random.default_rng(8)
    probs = rng.random((6, 5, 40)).astype(np.float32)
    other = (rng.random((4, 5, 40)) * 255).astype(np.uint8)
    full = engine.call(fastiou.mask_iou, probs, other, threshold=0.6)
    ref = mask_reference(probs >= np.float32(0.6), other >= 0.6)
    with engine.context():
        x = engine.asarray(probs)
        backend = engine.backend
        packed = fastiou.pack_masks(x, threshold=0.6, backend=backend)
        r = fastiou.mask_iou_max(packed, engine.asarray(other), threshold=0.6, backend=backend)
        r = engine.to_numpy(tuple(r))
    check_max(r, full, ref)
    none = np.zeros((0, 5, 40), bool)
    r = engine.call(fastiou.mask_iou_max, none, other)
    assert r[0].shape == (0,) and (r[3] == -1).all() and (r[2] == 0).all()


# --------------------------------------------------------------------------------------------
# The typical call's shape, small: many anchors, few ground-truth boxes, both orders


def test_many_against_few(cpu_engine) -> None:
    rng = np.random.default_rng(9)
    anchors = make_boxes(rng, 700, edge_cases=False).astype(np.float32)
    gt = make_boxes(rng, 6).astype(np.float32)
    full = cpu_engine.call(fastiou.box_iou, anchors, gt)
    ref = reference.pairwise("iou", anchors.astype(np.float64), gt.astype(np.float64))
    check_max(cpu_engine.call(fastiou.box_iou_max, anchors, gt, memory_budget=4096), full, ref)
    swapped = cpu_engine.call(fastiou.box_iou_max, gt, anchors, memory_budget=4096)
    check_max(swapped, full.T, ref.T)



def test_column_maxima_carried_across_ragged_tiles(cpu_engine) -> None:
    """Column maxima made tile by tile (the JAX engine carries them through its scan): ties
    between rows of different tiles keep the lowest row, a NaN in a later tile still wins, and
    the padded rows of a last, partial tile never do."""
    rng = np.random.default_rng(21)
    a = make_boxes(rng, 23, edge_cases=False).astype(np.float32)
    a[:, 2:] = np.maximum(a[:, 2:], a[:, :2] + 1)  # no empty row
    b = make_boxes(rng, 5, edge_cases=False).astype(np.float32)
    a[[4, 11, 19]] = b[2]  # IoU 1 in three tiles: row 4 must win column 2
    b[4] = [1000, 1000, 1001, 1001]  # no overlap: every row 0, the maximum at row 0
    b[3] = [5, 5, 5, 5]  # empty: 0 with every row, zero_division with an empty padding row
    with_nan = a.copy()
    with_nan[22, 1] = np.nan  # a NaN row in the last, partial tile: every column's maximum
    for boxes, want in ((a, [4, 0, 0]), (with_nan, [22, 22, 22])):
        full = cpu_engine.call(fastiou.box_iou, boxes, b, zero_division=0.5)
        ref = reference.pairwise("iou", boxes.astype(np.float64), b.astype(np.float64),
                                 zero_division=0.5)
        for budget in (80, 160, 240, 400, 800, 10**6):  # from one row a tile to one tile
            r = cpu_engine.call(fastiou.box_iou_max, boxes, b, zero_division=0.5,
                                memory_budget=budget)
            check_max(r, full, ref)
            assert list(r[3][[2, 3, 4]]) == want, (budget, r[3])

# --------------------------------------------------------------------------------------------
# JAX: jit, vmap, no retracing, tracing without a static size


def test_jax_jit_vmap_and_static_pairs() -> None:
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    rng = np.random.default_rng(10)
    a, b = make_boxes(rng, 10).astype(np.float32), make_boxes(rng, 7).astype(np.float32)
    full = np.asarray(fastiou.box_iou(a, b))
    traces = []

    @jax.jit
    def step(x, y):
        traces.append(1)
        r = fastiou.box_iou_max(x, y)
        v, i = fastiou.box_iou_topk(x, y, 3)
        p = fastiou.box_iou_pairs(x, y, 0.1, max_pairs=50)
        return r, (v, i), p

    for _ in range(2):
        r, (v, i), p = step(jnp.asarray(a), jnp.asarray(b))
    assert len(traces) == 1
    np.testing.assert_array_equal(np.asarray(r.row_argmax), np.argmax(full, axis=1))
    np.testing.assert_array_equal(np.asarray(i), first_k(full, 3))
    rows, cols = np.nonzero(full >= np.float32(0.1))
    assert int(p.count) == rows.size
    np.testing.assert_array_equal(np.asarray(p.row)[: rows.size], rows)
    np.testing.assert_array_equal(np.asarray(p.col)[: rows.size], cols)

    batch_a = jnp.asarray(np.stack([a, a[::-1]]))
    rb = jax.vmap(lambda x: fastiou.box_iou_max(x, jnp.asarray(b)))(batch_a)
    np.testing.assert_array_equal(np.asarray(rb.row_argmax[1]), np.argmax(full[::-1], axis=1))

    with pytest.raises(TypeError, match="box_iou_pairs: under jax tracing.*max_pairs"):
        jax.jit(lambda x, y: fastiou.box_iou_pairs(x, y, 0.5))(jnp.asarray(a), jnp.asarray(b))


# --------------------------------------------------------------------------------------------
# Bad input


B4 = np.zeros((3, 4), np.float32)
M3 = np.zeros((2, 4, 5), bool)
BAD = [
    (fastiou.box_iou_max, (B4, np.zeros((3, 6), np.float32)), {}, ValueError,
     "box_iou_max: boxes1 and boxes2 must have the same last dimension"),
    (fastiou.box_iou_max, (np.zeros((2, 3, 4)), B4), {}, ValueError,
     r"box_iou_max: boxes1 must have shape \(N, 4\) or \(N, 6\) \(no batch"),
    (fastiou.box_iou_max, (B4, B4), {"fmt": "xyzxyz"}, ValueError, "box_iou_max: fmt must be"),
    (fastiou.box_iou_max, (B4, B4), {"zero_division": None}, TypeError,
     "box_iou_max: zero_division must be a real number"),
    (fastiou.box_iou_max, (B4, B4), {"memory_budget": 0}, ValueError,
     "box_iou_max: memory_budget must be a positive"),
    (fastiou.box_iou_max, (B4.astype(str), B4), {}, TypeError,
     "box_iou_max: boxes1 must hold integer or floating"),
    (fastiou.box_iou_topk, (B4, B4, 4), {}, ValueError,
     r"box_iou_topk: k must be in \[0, M\] = \[0, 3\].*got 4"),
    (fastiou.box_iou_topk, (B4, B4, -1), {}, ValueError, "box_iou_topk: k must be in"),
    (fastiou.box_iou_topk, (B4, B4, 1.0), {}, TypeError, "box_iou_topk: k must be an integer"),
    (fastiou.box_iou_pairs, (B4, B4, float("nan")), {}, TypeError,
     "box_iou_pairs: threshold must be a real number"),
    (fastiou.box_iou_pairs, (B4, B4, "0.5"), {}, TypeError,
     "box_iou_pairs: threshold must be a real number"),
    (fastiou.box_iou_pairs, (B4, B4, 0.5), {"max_pairs": -1}, ValueError,
     "box_iou_pairs: max_pairs must be a non-negative integer"),
    (fastiou.box_iou_pairs, (B4, B4, 0.5), {"max_pairs": 2.0}, TypeError,
     "box_iou_pairs: max_pairs must be a non-negative integer"),
    (fastiou.box_iou_max, (B4, B4), {"backend": "torch"}, ValueError,
     "box_iou_max: backend must be one of"),
    (fastiou.mask_iou_max, (M3, np.zeros((2, 4, 6), bool)), {}, ValueError,
     r"mask_iou_max: masks1 and masks2 must have the same \(H, W\)"),
    (fastiou.mask_iou_max, (np.zeros((1, 2, 4, 5), bool), M3), {}, ValueError,
     r"mask_iou_max: masks1 must have shape \(N, H, W\) \(no batch"),
    (fastiou.mask_iou_max, (M3.astype(np.float32), M3), {}, ValueError,
     "mask_iou_max: masks1 holds floating values"),
    (fastiou.mask_iou_topk, (M3, M3, 3), {}, ValueError, r"mask_iou_topk: k must be in \[0, M\]"),
    (fastiou.mask_iou_pairs, (M3, M3, None), {}, TypeError,
     "mask_iou_pairs: iou_threshold must be a real number"),
    (fastiou.mask_iou_pairs, (M3, M3, 0.5), {"threshold": 0.5}, ValueError,
     "mask_iou_pairs: threshold=0.5 was given but masks1 is a bool mask"),
]


@pytest.mark.parametrize(("fn", "args", "kwargs", "error", "message"), BAD,
                         ids=[f"{row[0].__name__}-{i}" for i, row in enumerate(BAD)])
def test_bad_input(fn, args, kwargs, error, message) -> None:
    before = [np.copy(a) if isinstance(a, np.ndarray) else a for a in args]
    with pytest.raises(error, match=message):
        fn(*args, **kwargs)
    for a, b in zip(args, before):
        if isinstance(a, np.ndarray):
            np.testing.assert_array_equal(a, b)


def test_mixed_engines_are_refused() -> None:
    jnp = pytest.importorskip("jax.numpy")
    with pytest.raises(TypeError, match="box_iou_max: boxes1 is a numpy.ndarray but boxes2"):
        fastiou.box_iou_max(B4, jnp.asarray(B4))


def test_public_names() -> None:
    for name in reductions.__all__:
        assert getattr(fastiou, name) is getattr(reductions, name)


# --------------------------------------------------------------------------------------------
# Property: any sizes (either side longer, one row, one column), integer boxes with many ties


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 9), m=st.integers(0, 9), seed=st.integers(0, 2**16))
def test_numba_reductions_equal_the_full_matrix_for_any_sizes(n: int, m: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    lo = rng.integers(0, 4, (n + m, 2))
    boxes = np.concatenate([lo, lo + rng.integers(0, 3, (n + m, 2))], axis=1).astype(np.float32)
    a, b = boxes[:n], boxes[n:]
    full = fastiou.box_iou(a, b)
    check_max(fastiou.box_iou_max(a, b), full, full.astype(np.float64))
    k = min(m, 3)
    v, i = fastiou.box_iou_topk(a, b, k)
    np.testing.assert_array_equal(i, first_k(full, k))
    p = fastiou.box_iou_pairs(a, b, 0.25, max_pairs=5)
    rows, cols = np.nonzero(full >= np.float32(0.25))
    np.testing.assert_array_equal(p.row[: min(5, rows.size)], rows[:5])
    np.testing.assert_array_equal(p.col[: min(5, rows.size)], cols[:5])
    assert int(p.count) == rows.size
