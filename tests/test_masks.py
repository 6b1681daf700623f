"""Dense masks on every engine against a plain int64/float64 reference: pairwise and aligned IoU
and IoA, areas, boxes, packing and reuse, dtypes and thresholds, tile-size invariance, bounded
memory, and the bad-input table."""

from __future__ import annotations

import tracemalloc
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastiou
from fastiou import PackedMasks


# --------------------------------------------------------------------------------------------
# The reference: one pair of masks at a time, counts in int64, ratios in float64.


def ref_foreground(masks: np.ndarray, threshold: float | None = None) -> np.ndarray:
    masks = np.asarray(masks)
    if threshold is not None:
        return masks.astype(np.float64) >= threshold
    return masks != 0


def ref_ratio(inter: int, den: int, zero_division: float) -> float:
    return inter / den if den != 0 else zero_division


def ref_pair(op: str, m1: np.ndarray, m2: np.ndarray, *, aligned: bool = False,
             zero_division: float = 0.0, threshold: float | None = None) -> np.ndarray:
    f1, f2 = ref_foreground(m1, threshold), ref_foreground(m2, threshold)
    batch = np.broadcast_shapes(f1.shape[:-3], f2.shape[:-3])
    f1 = np.broadcast_to(f1, batch + f1.shape[-3:])
    f2 = np.broadcast_to(f2, batch + f2.shape[-3:])
    n, m = f1.shape[-3], f2.shape[-3]
    out = np.zeros(batch + ((n,) if aligned else (n, m)), dtype=np.float64)
    for b in np.ndindex(batch):
        for i in range(n):
            for j in [i] if aligned else range(m):
                a, c = f1[b + (i,)], f2[b + (j,)]
                inter = int(np.count_nonzero(a & c))
                area1, area2 = int(np.count_nonzero(a)), int(np.count_nonzero(c))
                den = area1 if op == "ioa" else area1 + area2 - inter
                out[b + ((i,) if aligned else (i, j))] = ref_ratio(inter, den, zero_division)
    return out


def ref_area(masks: np.ndarray, threshold: float | None = None) -> np.ndarray:
    return ref_foreground(masks, threshold).sum(axis=(-2, -1), dtype=np.int64)


def ref_boxes(masks: np.ndarray) -> np.ndarray:
    f = ref_foreground(masks)
    out = np.zeros(f.shape[:-2] + (4,), dtype=np.float64)
    for idx in np.ndindex(f.shape[:-2]):
        ys, xs = np.nonzero(f[idx])
        if len(xs):
            out[idx] = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    return out


# --------------------------------------------------------------------------------------------
# Helpers.

PAIR_FUNCS = {"iou": fastiou.mask_iou, "ioa": fastiou.mask_ioa}


def run(engine: Any, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """``engine.call`` that also passes PackedMasks through untouched."""
    with engine.context():
        conv = [a if isinstance(a, PackedMasks) else engine.asarray(np.asarray(a)) for a in args]
        if engine.backend is not None:
            kwargs.setdefault("backend", engine.backend)
        return engine.to_numpy(fn(*conv, **kwargs))


def pack(engine: Any, masks: np.ndarray, **kwargs: Any) -> PackedMasks:
    with engine.context():
        if engine.backend is not None:
            kwargs.setdefault("backend", engine.backend)
        packed = fastiou.pack_masks(engine.asarray(np.asarray(masks)), **kwargs)
    assert isinstance(packed, PackedMasks)
    assert isinstance(packed.words, engine.array_type)
    return packed


def random_masks(rng: np.random.Generator, shape: tuple[int, ...], p: float = 0.3) -> np.ndarray:
    masks = rng.random(shape) < p
    flat = masks.reshape(-1, *shape[-2:])
    if len(flat) > 2:
        flat[0] = False  # an empty mask
        flat[1] = True  # a full one
    return masks


def check(result: np.ndarray, expected: np.ndarray) -> None:
    assert result.dtype == np.float32, result.dtype
    assert result.shape == expected.shape, (result.shape, expected.shape)
    # Counts are exact; the only rounding is the division (float64 then float32, or float32).
    np.testing.assert_allclose(result.astype(np.float64), expected, rtol=2e-7, atol=0)


# Widths around the word sizes (32 and 64 bits), and a 1-pixel image.
SIZES = [(1, 1), (3, 31), (5, 64), (4, 65), (2, 130)]


# --------------------------------------------------------------------------------------------
# Values against the reference.


@pytest.mark.parametrize("aligned", [False, True], ids=["pairwise", "aligned"])
@pytest.mark.parametrize("op", ["iou", "ioa"])
def test_pair_matches_reference(engine, op, aligned):
    rng = np.random.default_rng(3 + aligned)
    fn = PAIR_FUNCS[op]
    for h, w in SIZES:
        m1 = random_masks(rng, (5, h, w))
        m2 = np.concatenate([m1[:2], random_masks(rng, (3, h, w), p=0.6)]) if aligned else \
            random_masks(rng, (4, h, w), p=0.6)
        check(run(engine, fn, m1, m2, aligned=aligned), ref_pair(op, m1, m2, aligned=aligned))
    # Batch dimensions broadcast.
    m1 = random_masks(rng, (2, 1, 3, 6, 70))
    m2 = random_masks(rng, (4, 3, 6, 70))
    check(run(engine, fn, m1, m2, aligned=aligned), ref_pair(op, m1, m2, aligned=aligned))


def object_masks(rng: np.random.Generator, n: int, h: int, w: int) -> np.ndarray:
    """Masks as detectors give them: one to three rectangles and ellipses covering a small part
    of the image, anywhere (touching the edges too), some of them two shapes in the same columns
    with background rows between; plus an empty mask, a full one and a single pixel."""
    yy, xx = np.mgrid[0:h, 0:w]
    masks = np.zeros((n, h, w), dtype=bool)
    for mask in masks:
        for _ in range(rng.integers(1, 4)):
            y0, x0 = rng.integers(-h // 4, h), rng.integers(-w // 4, w)
            dy, dx = rng.integers(1, h // 3 + 2), rng.integers(1, w // 3 + 2)
            if rng.random() < 0.5:
                mask[max(y0, 0):y0 + dy, max(x0, 0):x0 + dx] = True
            else:
                mask |= ((yy - y0) / dy) ** 2 + ((xx - x0) / dx) ** 2 <= 1
    masks[0] = False
    masks[1] = True
    masks[2] = False
    masks[2, h - 1, w - 1] = True
    return masks


@pytest.mark.parametrize("op", ["iou", "ioa"])
def test_object_masks_match_reference(engine, op):
    """Sparse masks, where the Numba engine counts only the rows of each word column that both
    masks occupy: every way two such row spans can overlap, widths around word boundaries."""
    rng = np.random.default_rng(21)
    fn = PAIR_FUNCS[op]
    for h, w in [(40, 200), (17, 130), (64, 31)]:
        m1, m2 = object_masks(rng, 9, h, w), object_masks(rng, 7, h, w)
        m2[3:5] = m1[3:5]  # identical pairs
        m2[5] = np.roll(m1[5], 3, axis=0)  # shifted copies, as from a jittered detection
        m2[6] = np.roll(m1[6], -70, axis=1)
        check(run(engine, fn, m1, m2), ref_pair(op, m1, m2))
        check(run(engine, fn, pack(engine, m2), m1), ref_pair(op, m2, m1))
    # Batch dimensions broadcast: every pair of a batch against its own masks.
    m1 = object_masks(rng, 2 * 5, 20, 100).reshape(2, 1, 5, 20, 100)
    m2 = object_masks(rng, 3 * 4, 20, 100).reshape(3, 4, 20, 100)
    check(run(engine, fn, m1, m2), ref_pair(op, m1, m2))
    check(run(engine, fn, pack(engine, m1), pack(engine, m2)), ref_pair(op, m1, m2))


def test_numba_column_spans_match_a_plain_scan():
    """The rows each word column of a packed mask occupies (what the Numba engine counts a pair
    over) against a plain scan: every single pixel of small images, sparse to full masks, flat
    word counts below and above the eight words the scan skips at a time."""
    from fastiou.backends.numba_cpu import masks as engine

    rng = np.random.default_rng(22)
    for h, w in [(1, 1), (1, 64), (3, 70), (9, 200), (40, 130), (7, 600)]:
        single = np.zeros((h * w, h, w), dtype=bool)
        single.reshape(h * w, -1)[np.arange(h * w), np.arange(h * w)] = True
        sparse = rng.random((25, h, w)) < rng.choice([0, 1e-3, 0.02, 0.3, 1], (25, 1, 1))
        for masks in (single[:: max(1, h * w // 400)], sparse, object_masks(rng, 9, h, w)):
            words = np.ascontiguousarray(fastiou.pack_masks(masks).words)
            for one in words:
                spans = np.full((one.shape[1], 3), -7, dtype=np.int64)
                engine._spans(one, spans)
                for q in range(one.shape[1]):
                    rows = np.flatnonzero(one[:, q])
                    expected = (rows[0], rows[-1] + 1) if rows.size else (0, 0)
                    assert tuple(spans[q, :2]) == expected, (h, w, q)


@pytest.mark.parametrize("zero_division", [0.0, 1.0, -0.5])
def test_zero_division(engine, zero_division):
    empty = np.zeros((2, 4, 9), dtype=bool)
    full = np.ones((1, 4, 9), dtype=bool)
    masks = np.concatenate([empty, full])
    for fn, op in ((fastiou.mask_iou, "iou"), (fastiou.mask_ioa, "ioa")):
        result = run(engine, fn, masks, masks, zero_division=zero_division)
        check(result, ref_pair(op, masks, masks, zero_division=zero_division))
        assert result[0, 0] == np.float32(zero_division)
        assert result[2, 2] == 1


def test_area_and_boxes_match_reference(engine):
    rng = np.random.default_rng(5)
    for h, w in SIZES + [(7, 200)]:
        masks = random_masks(rng, (6, h, w), p=0.05)
        masks[3] = False
        if h > 2 and w > 2:  # a single pixel, away from the borders
            masks[3, h // 2, w // 2] = True
        if w > 1:  # touching the right border only
            masks[4] = False
            masks[4, :, -1] = True
        area = run(engine, fastiou.mask_area, masks)
        assert area.dtype in (np.int64, np.int32) and area.shape == (6,)
        np.testing.assert_array_equal(area, ref_area(masks))
        boxes = run(engine, fastiou.masks_to_boxes, masks)
        assert boxes.dtype == np.float32 and boxes.shape == (6, 4)
        np.testing.assert_array_equal(boxes, ref_boxes(masks))
    # One mask without a set dimension, and a batch of sets.
    masks = random_masks(rng, (2, 3, 5, 66), p=0.02)
    np.testing.assert_array_equal(run(engine, fastiou.mask_area, masks[0, 0]), ref_area(masks[0, 0]))
    np.testing.assert_array_equal(run(engine, fastiou.masks_to_boxes, masks), ref_boxes(masks))


def test_rasterized_integer_boxes_give_box_iou(engine):
    rng = np.random.default_rng(11)
    h, w = 40, 70
    xy = rng.integers(0, [w, h, w, h], size=(12, 4))
    boxes = np.concatenate([np.minimum(xy[:, :2], xy[:, 2:]), np.maximum(xy[:, :2], xy[:, 2:])], 1)
    boxes[0] = (0, 0, w, h)  # touches every border
    boxes[1] = (3, 3, 3, 9)  # zero width: an empty mask
    ys, xs = np.mgrid[0:h, 0:w]
    masks = ((xs >= boxes[:, 0, None, None]) & (xs < boxes[:, 2, None, None])
             & (ys >= boxes[:, 1, None, None]) & (ys < boxes[:, 3, None, None]))
    b = boxes.astype(np.float64)
    np.testing.assert_allclose(run(engine, fastiou.mask_iou, masks[:7], masks[5:]),
                               fastiou.box_iou(b[:7], b[5:]), rtol=2e-7)
    np.testing.assert_allclose(run(engine, fastiou.mask_ioa, masks[:7], masks[5:]),
                               fastiou.box_ioa(b[:7], b[5:]), rtol=2e-7)
    found = run(engine, fastiou.masks_to_boxes, masks)
    np.testing.assert_array_equal(found[2:], boxes[2:])
    np.testing.assert_array_equal(found[1], 0)
    np.testing.assert_array_equal(run(engine, fastiou.mask_area, masks),
                                  fastiou.box_area(b).astype(np.int64))


# --------------------------------------------------------------------------------------------
# Input rules: dtypes, thresholds, layouts.

INT_DTYPES = ("uint8", "int8", "int16", "uint16", "int32", "uint32", "int64", "uint64")


def test_bool_and_integer_dtypes_are_identical(engine):
    rng = np.random.default_rng(2)
    m1, m2 = random_masks(rng, (4, 9, 70)), random_masks(rng, (3, 9, 70))
    expected = run(engine, fastiou.mask_iou, m1, m2)
    check(expected, ref_pair("iou", m1, m2))
    wide_ok = engine.name != "jax"  # jax without x64 has no 64-bit integers
    for name in INT_DTYPES:
        if name.endswith("64") and not wide_ok:
            continue
        dtype = np.dtype(name)
        # Non-zero is foreground, whatever the value (1, 255, the largest value, -1).
        values = np.array([1, min(255, np.iinfo(dtype).max), np.iinfo(dtype).max,
                           -1 if dtype.kind == "i" else 7], dtype=object).astype(dtype)
        a = np.where(m1, values[rng.integers(0, 4, m1.shape)], 0).astype(dtype)
        b = np.where(m2, values[rng.integers(0, 4, m2.shape)], 0).astype(dtype)
        np.testing.assert_array_equal(run(engine, fastiou.mask_iou, a, b), expected, err_msg=name)
        np.testing.assert_array_equal(run(engine, fastiou.mask_area, a), ref_area(m1))


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64", "uint8", "int16"])
def test_threshold_is_exact(engine, dtype):
    if engine.name == "jax" and dtype == "float64":
        pytest.skip("jax with x64 disabled has no float64 arrays")
    rng = np.random.default_rng(4)
    dt = np.dtype(dtype)
    if dt.kind == "f":
        # Values on both sides of thresholds that the dtype cannot represent exactly.
        thresholds = (0.1, 0.5, 1 / 3)
        near = [np.nextafter(dt.type(t), dt.type(s)) for t in thresholds for s in (-1, 2)]
        pool = np.array([dt.type(t) for t in thresholds] + near + [0, 1, np.nan], dtype=dt)
    else:
        thresholds = (127.5, 128, -3.2, 1e9, -1e9)
        pool = np.array([0, 1, 127, 128, 129, 100], dtype=dt)
    m1 = pool[rng.integers(0, len(pool), (4, 6, 67))]
    m2 = pool[rng.integers(0, len(pool), (3, 6, 67))]
    for t in thresholds:
        check(run(engine, fastiou.mask_iou, m1, m2, threshold=t),
              ref_pair("iou", m1, m2, threshold=t))
        np.testing.assert_array_equal(run(engine, fastiou.mask_area, m1, threshold=t),
                                      ref_area(m1, t))


def test_noncontiguous_layouts_give_the_same_result(engine):
    rng = np.random.default_rng(8)
    m1 = random_masks(rng, (5, 12, 80)).astype(np.uint8) * 3
    m2 = random_masks(rng, (4, 12, 80))
    expected = ref_pair("iou", m1, m2)
    layouts = {
        "fortran": lambda m: np.asfortranarray(m),
        "reversed": lambda m: m[::-1, :, ::-1][::-1, :, ::-1],
        "strided": lambda m: np.repeat(m, 2, axis=2)[:, :, ::2],
        "transposed": lambda m: np.ascontiguousarray(m.transpose(0, 2, 1)).transpose(0, 2, 1),
        "big-endian": lambda m: m.astype(m.dtype.newbyteorder(">")) if m.dtype.itemsize > 1 else m,
    }
    if engine.name == "jax":  # jax.numpy.asarray itself refuses non-native byte order
        del layouts["big-endian"]
    for name, layout in layouts.items():
        a, b = layout(m1), layout(m2)
        np.testing.assert_array_equal(a, m1)
        check(run(engine, fastiou.mask_iou, a, b), expected)
        np.testing.assert_array_equal(run(engine, fastiou.masks_to_boxes, a), ref_boxes(m1))
    if engine.name != "jax":
        check(run(engine, fastiou.mask_iou, m1.astype(">i4"), m2), expected)


def test_inputs_are_not_mutated(engine):
    rng = np.random.default_rng(9)
    m1 = rng.random((3, 5, 70)).astype(np.float32)
    m2 = rng.random((2, 5, 70)).astype(np.float32)
    c1, c2 = m1.copy(), m2.copy()
    run(engine, fastiou.mask_iou, m1, m2, threshold=0.5)
    run(engine, fastiou.masks_to_boxes, m1, threshold=0.5)
    np.testing.assert_array_equal(m1, c1)
    np.testing.assert_array_equal(m2, c2)


def test_empty_sets(engine):
    some = np.ones((3, 4, 5), dtype=bool)
    none = np.ones((0, 4, 5), dtype=bool)
    assert run(engine, fastiou.mask_iou, none, some).shape == (0, 3)
    assert run(engine, fastiou.mask_iou, some, none).shape == (3, 0)
    assert run(engine, fastiou.mask_iou, none, none, aligned=True).shape == (0,)
    assert run(engine, fastiou.mask_iou, np.ones((2, 0, 4, 5), bool), some).shape == (2, 0, 3)
    assert run(engine, fastiou.mask_area, none).shape == (0,)
    assert run(engine, fastiou.masks_to_boxes, none).shape == (0, 4)
    # Zero-size images: every mask is empty.
    flat = np.ones((2, 0, 5), dtype=bool)
    np.testing.assert_array_equal(run(engine, fastiou.mask_iou, flat, flat), np.zeros((2, 2)))
    np.testing.assert_array_equal(run(engine, fastiou.masks_to_boxes, flat), np.zeros((2, 4)))


# --------------------------------------------------------------------------------------------
# Packing, reuse, tiles.


def test_packed_masks_are_accepted_everywhere(engine):
    rng = np.random.default_rng(12)
    pred = rng.random((2, 6, 10, 100)).astype(np.float32)
    gt = random_masks(rng, (3, 10, 100))
    packed_gt = pack(engine, gt)
    packed_pred = pack(engine, pred, threshold=0.7)
    assert packed_gt.shape == gt.shape and packed_pred.shape == pred.shape
    assert repr(packed_gt) == f"PackedMasks(shape={gt.shape}, engine={packed_gt.engine!r})"
    expected = ref_pair("iou", pred, gt, threshold=0.7)
    check(run(engine, fastiou.mask_iou, packed_pred, packed_gt), expected)
    check(run(engine, fastiou.mask_iou, pred, packed_gt, threshold=0.7), expected)
    check(run(engine, fastiou.mask_ioa, packed_gt, gt), ref_pair("ioa", gt, gt))
    np.testing.assert_array_equal(run(engine, fastiou.mask_area, packed_gt), ref_area(gt))
    np.testing.assert_array_equal(engine.to_numpy(packed_gt.area), ref_area(gt))
    np.testing.assert_array_equal(run(engine, fastiou.masks_to_boxes, packed_pred),
                                  ref_boxes(ref_foreground(pred, 0.7)))
    with pytest.raises(ValueError, match=r"mask_iou: threshold=0\.5 was given but masks1 is "
                                         r"already packed"):
        run(engine, fastiou.mask_iou, packed_gt, packed_pred, threshold=0.5)
    with pytest.raises(ValueError, match=r"mask_area: threshold=0\.5 was given but masks is "
                                         r"already packed"):
        run(engine, fastiou.mask_area, packed_pred, threshold=0.5)
    other = "jax" if engine.backend != "jax" and engine.name != "jax" else "numba"
    with pytest.raises(ValueError, match=rf"mask_iou: masks2 was packed by the .* engine but "
                                         rf"this call runs on the {other} engine"):
        fastiou.mask_iou(np.asarray(gt), packed_gt, backend=other)


@pytest.mark.parametrize("budget", [1, 500, 4096, 10**6, None])
def test_results_do_not_depend_on_the_memory_budget(engine, budget):
    rng = np.random.default_rng(13)
    m1 = rng.random((2, 7, 9, 75)).astype(np.float32)
    m2 = rng.random((5, 9, 75)).astype(np.float32)
    kw = dict(threshold=0.6, memory_budget=budget)
    check(run(engine, fastiou.mask_iou, m1, m2, **kw), ref_pair("iou", m1, m2, threshold=0.6))
    check(run(engine, fastiou.mask_ioa, m1[0, :5], m2, aligned=True, **kw),
          ref_pair("ioa", m1[0, :5], m2, aligned=True, threshold=0.6))
    np.testing.assert_array_equal(run(engine, fastiou.mask_area, m1, **kw), ref_area(m1, 0.6))
    np.testing.assert_array_equal(run(engine, fastiou.masks_to_boxes, m2, **kw),
                                  ref_boxes(ref_foreground(m2, 0.6)))
    np.testing.assert_array_equal(
        run(engine, fastiou.mask_iou, m1[0], m1[1], threshold=0.6, memory_budget=budget),
        run(engine, fastiou.mask_iou, m1[0], m1[1], threshold=0.6),
    )


def test_numba_reused_buffers_never_touch_what_the_caller_holds(monkeypatch):
    """Packed words and temporaries of the Numba engine come from buffers kept between calls; a
    buffer is handed out again only when nothing refers to it. Words the caller holds (a
    PackedMasks, a view of its words) must survive any number of later calls unchanged, results
    must stay right, and the kept memory must stay bounded."""
    from fastiou.backends.numba_cpu import masks as nb_masks

    monkeypatch.setattr(nb_masks._Buffers, "kept", [])  # counted for this test's calls alone

    rng = np.random.default_rng(22)
    shape = (48, 96, 700)  # 48 * 96 * 11 words: 396 KiB of packed words a set
    assert 48 * 96 * 11 * 8 >= nb_masks._Buffers.MIN_BYTES
    first = object_masks(rng, *shape)
    held = fastiou.pack_masks(first)
    words, area = held.words.copy(), held.area.copy()
    view = held.words[5:9]
    view_copy = view.copy()
    expected = ref_pair("iou", first[:6], first[:6])
    for k in range(4):
        m1, m2 = object_masks(rng, *shape), object_masks(rng, *shape)
        # Pairwise in full (dense sets packed for the call only) and against the held words.
        got = fastiou.mask_iou(m1, m2)
        check(got[:5, :5], ref_pair("iou", m1[:5], m2[:5]))
        check(fastiou.mask_iou(m1[:6], m2[:6]), ref_pair("iou", m1[:6], m2[:6]))
        if k < 2:
            check(fastiou.mask_iou(held, m1)[:6, :4], ref_pair("iou", first[:6], m1[:4]))
        if k == 1:
            del held  # from now on only the view holds the buffer
    np.testing.assert_array_equal(view, view_copy)
    np.testing.assert_array_equal(words[5:9], view)
    assert area.shape == (48,)
    kept = nb_masks._Buffers.kept
    assert sum(b.nbytes for b in kept) <= nb_masks._Buffers.KEEP_BYTES
    assert len(kept) <= 8, [b.nbytes for b in kept]  # reused, not one new buffer per call
    check(fastiou.mask_iou(first[:6], first[:6]), expected)


def test_numba_concurrent_calls_get_their_own_buffers():
    """Threads calling at once (the kernels release the GIL) never share a buffer."""
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(23)
    sets = [(object_masks(rng, 40, 64, 700), object_masks(rng, 40, 64, 700)) for _ in range(4)]
    expected = [ref_pair("iou", a[:4], b[:4]) for a, b in sets]

    def work(k: int) -> list[np.ndarray]:
        a, b = sets[k % 4]
        return [fastiou.mask_iou(a, b)[:4, :4] for _ in range(3)]

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(work, range(8)))
    for k, got in enumerate(results):
        for value in got:
            check(value, expected[k % 4])


def test_numba_memory_stays_bounded():
    # 48 x 48 float32 masks of 128 x 256: an N x M x H x W intermediate would be 302 MB, a float
    # copy of the masks 12 MB, their packed bits 0.4 MB.
    rng = np.random.default_rng(14)
    m1 = rng.random((48, 128, 256), dtype=np.float32)
    m2 = rng.random((48, 128, 256), dtype=np.float32)
    fastiou.mask_iou(m1[:2], m2[:2], threshold=0.5)  # compile outside the measurement
    budget = 2**20
    tracemalloc.start()
    try:
        fastiou.mask_iou(m1, m2, threshold=0.5, memory_budget=budget)
        fastiou.masks_to_boxes(m1, threshold=0.5, memory_budget=budget)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < budget + 2 * 2**20, peak


def test_jax_temporaries_stay_within_the_budget():
    import jax
    import jax.numpy as jnp

    rng = np.random.default_rng(15)
    m1 = jnp.asarray(rng.random((40, 64, 128)) < 0.3)
    m2 = jnp.asarray(rng.random((30, 64, 128)) < 0.3)
    budget = 64 * 1024  # far below the 40 x 30 x 1 MB of an N x M x H x W array of ANDed words

    def largest(jaxpr: Any) -> int:
        found = 0
        for eqn in jaxpr.eqns:
            for var in eqn.outvars:
                aval = var.aval
                if hasattr(aval, "shape"):
                    found = max(found, int(np.prod(aval.shape)) * aval.dtype.itemsize)
            for param in eqn.params.values():
                for sub in param if isinstance(param, (list, tuple)) else [param]:
                    if hasattr(sub, "jaxpr"):
                        inner = sub.jaxpr if hasattr(sub.jaxpr, "eqns") else sub.jaxpr.jaxpr
                        found = max(found, largest(inner))
                    elif hasattr(sub, "eqns"):
                        found = max(found, largest(sub))
        return found

    for fn in (fastiou.mask_iou, fastiou.mask_ioa):
        closed = jax.make_jaxpr(lambda a, b: fn(a, b, memory_budget=budget))(m1, m2)
        inputs = max(m1.nbytes, m2.nbytes)  # the dense bool masks themselves
        assert largest(closed.jaxpr) <= max(inputs, budget), largest(closed.jaxpr)
        check(np.asarray(fn(m1, m2, memory_budget=budget)),
              ref_pair("iou" if fn is fastiou.mask_iou else "ioa", np.asarray(m1), np.asarray(m2)))


def test_jax_jit_and_vmap():
    import jax
    import jax.numpy as jnp

    rng = np.random.default_rng(16)
    m1 = rng.random((3, 4, 8, 40)).astype(np.float32)
    m2 = rng.random((3, 2, 8, 40)).astype(np.float32)
    expected = ref_pair("iou", m1, m2, threshold=0.5)
    jitted = jax.jit(lambda a, b: fastiou.mask_iou(a, b, threshold=0.5))
    check(np.asarray(jitted(jnp.asarray(m1), jnp.asarray(m2))), expected)
    mapped = jax.vmap(lambda a, b: fastiou.mask_iou(a, b, threshold=0.5))
    check(np.asarray(mapped(jnp.asarray(m1), jnp.asarray(m2))), expected)


# --------------------------------------------------------------------------------------------
# Bad input: one table, every engine.

M3 = np.zeros((2, 4, 5), dtype=bool)
F3 = np.zeros((2, 4, 5), dtype=np.float32)

BAD_INPUT = [
    # (function, args, kwargs, exception, message)
    (fastiou.mask_iou, (F3, M3), {}, ValueError,
     r"mask_iou: masks1 holds floating values \(shape \(2, 4, 5\) and dtype float32\); pass "
     r"threshold="),
    (fastiou.mask_area, (F3,), {}, ValueError, r"mask_area: masks holds floating values"),
    (fastiou.mask_iou, (M3, np.zeros((2, 4, 6), bool)), {}, ValueError,
     r"mask_iou: masks1 and masks2 must have the same \(H, W\), got masks of shape \(2, 4, 5\) "
     r"and \(2, 4, 6\)"),
    (fastiou.mask_iou, (M3[0], M3), {}, ValueError,
     r"mask_iou: masks1 must have shape \(\.\.\., N, H, W\), got shape \(4, 5\) and dtype bool"),
    (fastiou.masks_to_boxes, (M3[0, 0],), {}, ValueError,
     r"masks_to_boxes: masks must have shape \(\.\.\., H, W\), got shape \(5,\)"),
    (fastiou.mask_ioa, (M3, M3[:1]), {"aligned": True}, ValueError,
     r"mask_ioa: aligned=True needs as many masks in masks1 as in masks2, got masks of shape "
     r"\(2, 4, 5\) and \(1, 4, 5\)"),
    (fastiou.mask_iou, (np.zeros((2, 2, 4, 5), bool), np.zeros((3, 2, 4, 5), bool)), {},
     ValueError, r"mask_iou: the leading \(batch\) dimensions of masks1 and masks2 must broadcast"),
    (fastiou.mask_iou, (M3, M3), {"threshold": 0.5}, ValueError,
     r"mask_iou: threshold=0\.5 was given but masks1 is a bool mask"),
    (fastiou.mask_iou, (F3, F3), {"threshold": "0.5"}, TypeError,
     r"mask_iou: threshold must be a real number or None, got '0\.5'"),
    (fastiou.mask_iou, (F3, F3), {"threshold": float("nan")}, TypeError,
     r"mask_iou: threshold must be a real number or None, got nan"),
    (fastiou.mask_iou, (M3, M3), {"memory_budget": 0}, ValueError,
     r"mask_iou: memory_budget must be a positive number of bytes or None, got 0"),
    (fastiou.pack_masks, (M3,), {"memory_budget": 1.5}, ValueError,
     r"pack_masks: memory_budget must be a positive number of bytes or None, got 1\.5"),
    (fastiou.mask_iou, (M3, M3), {"zero_division": "x"}, TypeError,
     r"mask_iou: zero_division must be a real number, got 'x'"),
    (fastiou.mask_iou, (M3, M3), {"aligned": 1}, TypeError, r"mask_iou: aligned must be a bool"),
    (fastiou.mask_area, (np.zeros((2, 3), dtype=np.complex64),), {}, TypeError,
     r"mask_area: masks must hold bool, integer or floating values, got shape \(2, 3\) and "
     r"dtype complex64"),
]


@pytest.mark.parametrize("fn,args,kwargs,exc,message", BAD_INPUT,
                         ids=[f"{row[0].__name__}-{i}" for i, row in enumerate(BAD_INPUT)])
def test_bad_input(engine, fn, args, kwargs, exc, message):
    with pytest.raises(exc, match=message):
        run(engine, fn, *args, **kwargs)


def test_jax_with_x64_enabled():
    import jax
    import jax.numpy as jnp

    rng = np.random.default_rng(17)
    m1 = random_masks(rng, (4, 6, 70)).astype(np.int64) * 9
    m2 = rng.random((3, 6, 70))
    with jax.enable_x64(True):
        a, b = jnp.asarray(m1), jnp.asarray(m2)
        assert b.dtype == jnp.float64
        check(np.asarray(fastiou.mask_iou(a, b, threshold=0.5)),
              ref_pair("iou", m1, m2, threshold=0.5))
        area = fastiou.mask_area(b, threshold=0.5)
        assert area.dtype == jnp.int64
        np.testing.assert_array_equal(np.asarray(area), ref_area(m2, 0.5))


def test_cuda_grid_stride_loops(monkeypatch):
    """With the launch limits lowered to one block per grid dimension, every mask kernel must cover
    its whole range through its grid-stride loops (run on the CPU harness)."""
    from conftest import make_engine
    from fastiou.backends import cupy_cuda
    from fastiou.backends.cupy_cuda import masks as cuda_masks

    engine = make_engine("cuda-harness")
    monkeypatch.setattr(cupy_cuda, "MAX_GRID_X", 1)  # grid_1d
    monkeypatch.setattr(cuda_masks, "MAX_GRID_X", 1)
    monkeypatch.setattr(cuda_masks, "MAX_GRID_Y", 1)
    rng = np.random.default_rng(18)
    m1 = random_masks(rng, (2, 70, 5, 130))  # 2 batches, 70 masks: two row tiles of 64
    m2 = random_masks(rng, (2, 67, 5, 130))
    check(run(engine, fastiou.mask_iou, m1, m2), ref_pair("iou", m1, m2))
    check(run(engine, fastiou.mask_ioa, m1[:, :67], m2, aligned=True),
          ref_pair("ioa", m1[:, :67], m2, aligned=True))
    np.testing.assert_array_equal(run(engine, fastiou.mask_area, m1), ref_area(m1))
    np.testing.assert_array_equal(run(engine, fastiou.masks_to_boxes, m2), ref_boxes(m2))


def test_jax_does_not_retrace_for_the_same_shapes():
    import jax  # noqa: F401
    import jax.numpy as jnp

    from fastiou.backends.jax_xla import masks as jax_masks

    rng = np.random.default_rng(19)
    shapes = ((3, 7, 45), (2, 7, 45))
    fastiou.mask_iou(*(jnp.asarray(rng.random(s) < 0.5) for s in shapes))
    before = (jax_masks._pair._cache_size(), jax_masks._pack._cache_size())
    for _ in range(3):
        fastiou.mask_iou(*(jnp.asarray(rng.random(s) < 0.5) for s in shapes))
    assert (jax_masks._pair._cache_size(), jax_masks._pack._cache_size()) == before


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 5), st.integers(1, 5), st.integers(1, 9), st.integers(1, 140),
       st.integers(0, 2**32 - 1))
def test_properties(n, m, h, w, seed):
    """0 <= IoU <= 1, symmetry, IoU(a, a) = 1 for a non-empty mask, pairwise = aligned, and
    IoA >= IoU (Numba engine)."""
    rng = np.random.default_rng(seed)
    a = rng.random((n, h, w)) < rng.uniform(0, 1)
    b = rng.random((m, h, w)) < rng.uniform(0, 1)
    iou = fastiou.mask_iou(a, b)
    assert ((iou >= 0) & (iou <= 1)).all()
    np.testing.assert_array_equal(iou, fastiou.mask_iou(b, a).T)
    np.testing.assert_array_equal(np.diag(fastiou.mask_iou(a, a)), a.any(axis=(1, 2)).astype(np.float32))
    k = min(n, m)
    np.testing.assert_array_equal(np.diag(iou[:k, :k]), fastiou.mask_iou(a[:k], b[:k], aligned=True))
    assert (fastiou.mask_ioa(a, b) >= iou).all()
