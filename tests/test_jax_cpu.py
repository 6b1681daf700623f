"""The JAX engine's two formulations of each hot path agree with the float64 reference.

On CPU the JAX engine computes pairwise boxes from columns stored contiguously ("columns"), counts labels
chunk by chunk ("chunks") and counts mask intersections with shifts and adds ("swar"); on GPU/TPU
it uses one flat broadcast ("flat"), one ``jnp.bincount`` ("bincount") and
``lax.population_count`` ("popcount"). Segmented boxes run one dense row per box of set 1 on CPU
("rows") and one gathered pair per output element elsewhere ("flat"); segmented masks count as the
dense ones ("swar" / "popcount"). Aligned boxes are all computed by the scaled formula on CPU
("scaled") and by the plain one unless a box is extreme elsewhere ("checked"). The choice
follows ``jax.default_backend()`` when a call is made or traced; each module's ``FORMULATION``
switch (``MASK_FORMULATION`` for segmented masks, ``ALIGNED``) forces either one, so both run
here.
"""

from __future__ import annotations

import numpy as np
import pytest

import jax
import jax.numpy as jnp

import fastiou
import reference as ref
from box_cases import box_sets
from fastiou.backends.jax_xla import boxes as jax_boxes
from fastiou.backends.jax_xla import masks as jax_masks
from fastiou.backends.jax_xla import ragged as jax_ragged
from fastiou.backends.jax_xla import semantic as jax_semantic

BOX_FUNCS = {
    "iou": fastiou.box_iou,
    "giou": fastiou.generalized_box_iou,
    "diou": fastiou.distance_box_iou,
    "ciou": fastiou.complete_box_iou,
}


@pytest.fixture(params=("columns", "flat"))
def box_formulation(request, monkeypatch):
    monkeypatch.setattr(jax_boxes, "FORMULATION", request.param)
    return request.param


def test_columns_layout_chosen_for_pairwise_only(monkeypatch):
    monkeypatch.setattr(jax_boxes, "FORMULATION", None)
    assert jax_boxes._columns_layout(False) == (jax.default_backend() == "cpu")
    assert not jax_boxes._columns_layout(True)  # aligned: no (N, M) loop
    monkeypatch.setattr(jax_boxes, "FORMULATION", "flat")
    assert not jax_boxes._columns_layout(False)
    monkeypatch.setattr(jax_boxes, "FORMULATION", "columns")
    assert jax_boxes._columns_layout(False)


@pytest.mark.parametrize("op", list(BOX_FUNCS))
@pytest.mark.parametrize("n, m", [(12, 600), (59, 600), (7, 3), (1, 1)])
@pytest.mark.parametrize("batch", [(), (3,)])
def test_box_formulations_match_reference(box_formulation, op, n, m, batch):
    rng = np.random.default_rng(n * 1000 + m)
    b1, b2 = box_sets(rng, batch + (n,), batch + (m,), dtype="float32")
    fn = BOX_FUNCS[op]
    got = fn(jnp.asarray(b1), jnp.asarray(b2), zero_division=0.5)
    assert isinstance(got, jax.Array) and got.shape == batch + (n, m)
    assert got.dtype == jnp.float32
    want = ref.pairwise(op, b1.astype(np.float64), b2.astype(np.float64), zero_division=0.5)
    np.testing.assert_allclose(np.asarray(got), want, rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("n, m", [(12, 600), (5, 3)])
def test_box_columns_3d(box_formulation, n, m):
    rng = np.random.default_rng(5)
    b1, b2 = box_sets(rng, (n,), (m,), dims=3, dtype="float32")
    got = np.asarray(fastiou.box_iou(jnp.asarray(b1), jnp.asarray(b2)))
    want = ref.pairwise("iou", b1.astype(np.float64), b2.astype(np.float64))
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("op", ["iou", "giou", "diou"])
def test_box_formulations_with_extreme_and_nan_boxes(box_formulation, op):
    """Extreme boxes take the scaled branch; NaN gives NaN for its pairs."""
    rng = np.random.default_rng(7)
    b1, b2 = box_sets(rng, (24,), (700,), dtype="float32")
    b1[3] = [0, 0, 1e30, 1e30]  # past 2**61: the scaled formula
    b1[5] = [0, 0, 10, np.nan]
    b2[10] = [0, 0, 1e-30, 1e-30]  # a tiny non-zero extent: the scaled formula
    got = np.asarray(BOX_FUNCS[op](jnp.asarray(b1), jnp.asarray(b2)))
    want = ref.pairwise(op, b1.astype(np.float64), b2.astype(np.float64))
    assert np.isnan(got[5]).all() and not np.isnan(np.delete(got, 5, axis=0)).any()
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)


def test_box_formulations_under_jit_vmap_and_grad(box_formulation):
    rng = np.random.default_rng(11)

    def boxes(k: int) -> np.ndarray:  # continuous coordinates: no coincident edges (kinks)
        lo = rng.uniform(0, 100, (2, k, 2))
        return np.concatenate([lo, lo + rng.uniform(1, 40, (2, k, 2))], -1).astype(np.float32)

    b1, b2 = boxes(16), boxes(40)
    a, b = jnp.asarray(b1), jnp.asarray(b2)
    eager = np.asarray(fastiou.generalized_box_iou(a, b))
    mapped = jax.vmap(jax.jit(lambda x, y: fastiou.generalized_box_iou(x, y)))(a, b)
    np.testing.assert_allclose(np.asarray(mapped), eager, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(eager, ref.pairwise("giou", b1, b2), rtol=2e-5, atol=2e-6)

    def loss(x):
        return jnp.sum(fastiou.generalized_box_iou(x, b[0]))

    grad = np.asarray(jax.grad(loss)(a[0]))
    # Central differences in float64 on the reference.
    h, x0 = 1e-3, b1[0].astype(np.float64)
    numeric = np.zeros_like(x0)
    for index in np.ndindex(x0.shape):
        up, down = x0.copy(), x0.copy()
        up[index] += h
        down[index] -= h
        numeric[index] = (ref.pairwise("giou", up, b2[0]).sum()
                          - ref.pairwise("giou", down, b2[0]).sum()) / (2 * h)
    assert np.isfinite(grad).all()
    np.testing.assert_allclose(grad, numeric, rtol=2e-2, atol=2e-3)


@pytest.mark.parametrize("aligned_formulation", ["scaled", "checked"])
@pytest.mark.parametrize("op", list(BOX_FUNCS))
def test_aligned_formulations_match_reference(monkeypatch, aligned_formulation, op):
    """Aligned pairs on CPU are all computed by the scaled formula ("scaled"), elsewhere by the
    plain one unless a box is extreme ("checked"): the same values, for random, degenerate,
    extreme and NaN boxes, and finite gradients at degenerate pairs."""
    from box_cases import DEGENERATE_2D

    monkeypatch.setattr(jax_boxes, "ALIGNED", aligned_formulation)
    assert jax_boxes._aligned_scaled(True) == (aligned_formulation == "scaled")
    assert not jax_boxes._aligned_scaled(False)
    rng = np.random.default_rng(3)
    b1, b2 = box_sets(rng, (300,), (300,), dtype="float32")
    d = DEGENERATE_2D.astype(np.float32)
    b1[:len(d)], b2[:len(d)] = d, d[::-1]
    b1[20] = [0, 0, 1e30, 1e30]  # past 2**61
    b2[21] = [0, 0, 1e-30, 1e-30]  # a tiny non-zero extent
    b1[22] = [0, 0, 10, np.nan]
    got = BOX_FUNCS[op](jnp.asarray(b1), jnp.asarray(b2), aligned=True, zero_division=0.5)
    assert isinstance(got, jax.Array) and got.shape == (300,) and got.dtype == jnp.float32
    want = ref.pairwise(op, b1.astype(np.float64), b2.astype(np.float64), aligned=True,
                        zero_division=0.5)
    got = np.asarray(got)
    assert np.isnan(got[22]) and not np.isnan(np.delete(got, 22)).any()
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)
    grad = jax.grad(lambda x: jnp.sum(BOX_FUNCS[op](x, jnp.asarray(d[::-1]), aligned=True)))(
        jnp.asarray(d))
    assert np.isfinite(np.asarray(grad)).all()


def _confusion_reference(pred, target, c, ignore):
    cm = np.zeros((c, c), np.int64)
    keep = target.reshape(-1) != ignore
    for t, p in zip(target.reshape(-1)[keep], pred.reshape(-1)[keep]):
        cm[int(t), int(p)] += 1
    return cm


@pytest.mark.parametrize("formulation, chunk", [("chunks", 1000), ("chunks", 4096),
                                                ("bincount", 1000)])
def test_semantic_formulations_match_reference(monkeypatch, formulation, chunk):
    """Several chunks and a tail (37 x 53 = 1961 pixels a map, 3 maps)."""
    monkeypatch.setattr(jax_semantic, "FORMULATION", formulation)
    monkeypatch.setattr(jax_semantic, "_CHUNK", chunk)
    rng = np.random.default_rng(5)
    target = rng.integers(0, 6, (3, 37, 53)).astype(np.uint8)
    pred = rng.integers(0, 6, (3, 37, 53)).astype(np.uint8)
    target[rng.random(target.shape) < 0.1] = 255
    got = fastiou.confusion_matrix(jnp.asarray(pred), jnp.asarray(target), 6, ignore_index=255)
    assert isinstance(got, jax.Array) and got.shape == (6, 6)
    want = _confusion_reference(pred, target, 6, 255)
    np.testing.assert_array_equal(np.asarray(got), want)
    np.testing.assert_array_equal(np.asarray(got), fastiou.confusion_matrix(pred, target, 6,
                                                                            ignore_index=255))
    jitted = jax.jit(lambda p, t: fastiou.confusion_matrix(p, t, 6, ignore_index=255))
    np.testing.assert_array_equal(np.asarray(jitted(jnp.asarray(pred), jnp.asarray(target))),
                                  want)


def test_semantic_chunks_out_of_range_ignored(monkeypatch):
    monkeypatch.setattr(jax_semantic, "FORMULATION", "chunks")
    monkeypatch.setattr(jax_semantic, "_CHUNK", 300)
    rng = np.random.default_rng(6)
    target = rng.integers(0, 5, (41, 29)).astype(np.int16)
    pred = rng.integers(-1, 6, (41, 29)).astype(np.int16)  # -1 and 5 are outside [0, 5)
    got = fastiou.confusion_matrix(jnp.asarray(pred), jnp.asarray(target), 5,
                                   out_of_range="ignore")
    keep = (pred >= 0) & (pred < 5)
    want = _confusion_reference(pred[keep], target[keep], 5, ignore=-99)
    np.testing.assert_array_equal(np.asarray(got), want)


def _mask_reference(a, b):
    fa = a.reshape(a.shape[0], -1).astype(np.float64)
    fb = b.reshape(b.shape[0], -1).astype(np.float64)
    inter = fa @ fb.T
    union = fa.sum(1)[:, None] + fb.sum(1)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union != 0)


@pytest.mark.parametrize("formulation", ["swar", "popcount"])
@pytest.mark.parametrize("shape", [(31, 992), (37, 32), (64, 64)])
def test_mask_formulations_match_reference(monkeypatch, formulation, shape):
    """Random masks, full masks (every byte count at its maximum: no carry between the byte or
    16-bit lanes of the grouped sums) and empty ones; word counts with groups of 31, 1 and 16."""
    monkeypatch.setattr(jax_masks, "FORMULATION", formulation)
    rng = np.random.default_rng(shape[0])
    h, w = shape
    a = rng.random((5, h, w)) < 0.4
    b = rng.random((6, h, w)) < 0.6
    a[0] = True
    b[0] = True
    b[1] = False
    b[2] = a[1]
    got = fastiou.mask_iou(jnp.asarray(a), jnp.asarray(b))
    assert isinstance(got, jax.Array) and got.shape == (5, 6) and got.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(got), _mask_reference(a, b), rtol=1e-6)
    assert float(got[0, 0]) == 1.0 and float(got[1, 2]) == 1.0


def test_mask_group_sizes(monkeypatch):
    monkeypatch.setattr(jax_masks, "FORMULATION", "swar")
    assert jax_masks._group(31 * 992 // 32, 10, 10) == 31
    assert jax_masks._group(2048, 10, 10) == 16
    assert jax_masks._group(9600, 10, 10) == 30
    assert jax_masks._group(37, 10, 10) == 1
    assert jax_masks._group(2048, 5, 10) == 0  # column tiles: population_count
    monkeypatch.setattr(jax_masks, "FORMULATION", "popcount")
    assert jax_masks._group(2048, 10, 10) == 0
    monkeypatch.setattr(jax_masks, "FORMULATION", None)  # by the backend: CPU here
    assert jax.default_backend() == "cpu"
    assert jax_masks._group(2048, 200, 200) == 16  # many columns: swar
    assert jax_masks._group(9600, 50, 50) == 0  # few columns: population_count


# --- segmented (ragged) boxes: "rows" on CPU, "flat" on GPU/TPU ----------------------------------

@pytest.fixture(params=("rows", "flat"))
def ragged_formulation(request, monkeypatch):
    monkeypatch.setattr(jax_ragged, "FORMULATION", request.param)
    return request.param


def _segmented_reference(b1, b2, off1, off2, fmt="xyxy", zero_division=0.0):
    """The N_s x M_s blocks, row-major, one after another, from the float64 reference."""
    out = [ref.pairwise("iou", b1[off1[s]:off1[s + 1]].astype(np.float64),
                        b2[off2[s]:off2[s + 1]].astype(np.float64), fmt=fmt,
                        zero_division=zero_division).reshape(-1)
           for s in range(len(off1) - 1)]
    return np.concatenate(out) if out else np.zeros(0)


def _segment_boxes(rng, counts, dims=2):
    lo = rng.uniform(0, 50, (sum(counts), dims))
    return np.concatenate([lo, lo + rng.uniform(0, 30, lo.shape)], -1).astype(np.float32)


SEGMENT_CASES = {
    # (rows of set 1, rows of set 2) per segment
    "uniform width": ([3, 1, 5, 2], [4, 4, 4, 4]),  # every row 4 wide: no compaction
    "ragged": ([0, 3, 2, 0, 4, 1], [2, 5, 0, 3, 1, 6]),  # empty segments at both ends and inside
    "one wide segment": ([1, 6, 2], [1, 2, 9]),
}


@pytest.mark.parametrize("case", list(SEGMENT_CASES))
@pytest.mark.parametrize("fmt", ["xyxy", "xywh"])
def test_segmented_box_formulations_match_reference(ragged_formulation, case, fmt):
    n, m = SEGMENT_CASES[case]
    rng = np.random.default_rng(len(n) * 10 + len(fmt))
    b1, b2 = _segment_boxes(rng, n), _segment_boxes(rng, m)
    b2[0] = b1[0] if n[0] and m[0] else b2[0]
    off1, off2 = np.cumsum([0] + n), np.cumsum([0] + m)
    layout = jax_ragged._row_layout(off1, off2, np.cumsum([0] + [a * b for a, b in zip(n, m)]))
    assert (layout is not None) == (ragged_formulation == "rows")
    if fmt == "xywh":
        b1[:, 2:] -= b1[:, :2]
        b2[:, 2:] -= b2[:, :2]
    values, blocks = fastiou.segmented_box_iou(jnp.asarray(b1), jnp.asarray(b2), off1, off2,
                                               fmt=fmt, zero_division=0.25)
    want = _segmented_reference(b1, b2, off1, off2, fmt, 0.25)
    assert isinstance(values, jax.Array) and values.dtype == jnp.float32
    assert values.shape == want.shape == (blocks[-1],)
    np.testing.assert_allclose(np.asarray(values), want, rtol=2e-5, atol=2e-6)
    numba_values, _ = fastiou.segmented_box_iou(b1, b2, off1, off2, fmt=fmt, zero_division=0.25)
    np.testing.assert_allclose(np.asarray(values), numba_values, rtol=2e-6, atol=2e-7)


def test_segmented_box_rows_3d_extreme_nan_and_zero_area(ragged_formulation):
    """3D boxes; an extreme box (the scaled formula), a NaN box, and zero-area pairs."""
    rng = np.random.default_rng(3)
    n, m = [2, 3, 1], [3, 2, 4]
    b1, b2 = _segment_boxes(rng, n, dims=3), _segment_boxes(rng, m, dims=3)
    b1[1] = [0, 0, 0, 1e30, 1e30, 1e30]
    b2[4] = [0, 0, 0, 1, np.nan, 1]
    b1[5] = [5, 5, 5, 5, 5, 5]  # zero volume: zero_division against zero-volume b2[8]
    b2[8] = [5, 5, 5, 5, 5, 5]
    off1, off2 = np.cumsum([0] + n), np.cumsum([0] + m)
    values, _ = fastiou.segmented_box_iou(jnp.asarray(b1), jnp.asarray(b2), off1, off2,
                                          zero_division=0.5)
    want = _segmented_reference(b1, b2, off1, off2, zero_division=0.5)
    got = np.asarray(values)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    assert np.isnan(want).sum() == 3 and 0.5 in want
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)


def test_segmented_box_rows_under_jit_and_vmap(ragged_formulation):
    """Under jit the extreme-box test runs on the device (a lax.cond); vmap over two datasets of
    the same layout gives each one's values."""
    rng = np.random.default_rng(4)
    n, m = [2, 0, 3], [3, 2, 2]
    off1, off2 = np.cumsum([0] + n), np.cumsum([0] + m)
    b1 = np.stack([_segment_boxes(rng, n) for _ in range(2)])
    b2 = np.stack([_segment_boxes(rng, m) for _ in range(2)])
    b2[1, 0] = [0, 0, 1e-30, 1e-30]  # a tiny extent: the scaled formula in dataset 1
    fn = jax.jit(lambda a, b: fastiou.segmented_box_iou(a, b, off1, off2)[0])
    for k in range(2):
        want = _segmented_reference(b1[k], b2[k], off1, off2)
        np.testing.assert_allclose(np.asarray(fn(jnp.asarray(b1[k]), jnp.asarray(b2[k]))),
                                   want, rtol=2e-5, atol=2e-6)
    mapped = np.asarray(jax.vmap(fn)(jnp.asarray(b1), jnp.asarray(b2)))
    for k in range(2):
        np.testing.assert_allclose(mapped[k], _segmented_reference(b1[k], b2[k], off1, off2),
                                   rtol=2e-5, atol=2e-6)


def test_segmented_rows_chosen_by_padding(monkeypatch):
    """On CPU "rows" is taken while the dense (K1, W) rows hold at most 4 times the pairs."""
    monkeypatch.setattr(jax_ragged, "FORMULATION", None)
    assert jax.default_backend() == "cpu"

    def layout(n, m):
        return jax_ragged._row_layout(np.cumsum([0] + n), np.cumsum([0] + m),
                                      np.cumsum([0] + [a * b for a, b in zip(n, m)]))

    first, segment, width, base, w = layout([2, 0, 3], [4, 7, 2])
    assert w == 4  # the empty segment's 7 boxes are never used
    np.testing.assert_array_equal(np.asarray(first), [0, 11])
    np.testing.assert_array_equal(np.asarray(segment), [0, 0, 1, 1, 1])
    np.testing.assert_array_equal(np.asarray(width), [4, 4, 2, 2, 2])
    np.testing.assert_array_equal(np.asarray(base), [0, 4, 8, 10, 12])
    assert layout([10, 10], [100, 40]) is not None  # 2000 values for 1400 pairs
    assert layout([10, 10, 10], [100, 1, 1]) is not None  # 3000 for 1020
    assert layout([10] * 5, [100, 1, 1, 1, 1]) is None  # 5000 for 1040: flat
    assert layout([3], [0]) is None and layout([0], [5]) is None
    monkeypatch.setattr(jax_ragged, "FORMULATION", "rows")
    assert layout([10] * 5, [100, 1, 1, 1, 1]) is not None  # forced


@pytest.mark.parametrize("formulation", ["swar", "popcount"])
@pytest.mark.parametrize("shape", [(31, 992), (37, 32), (16, 64)])  # groups of 31, 1, 16 words
def test_segmented_mask_formulations_match_reference(monkeypatch, formulation, shape):
    """Random, full (every byte count at its maximum) and empty masks, ragged segments."""
    monkeypatch.setattr(jax_ragged, "MASK_FORMULATION", formulation)
    h, w = shape
    words = h * (-(-w // 32))
    assert jax_ragged._mask_group(words) == {"swar": {31: 31, 37: 1, 16: 16}[h],
                                             "popcount": 0}[formulation]
    rng = np.random.default_rng(h)
    n, m = [2, 0, 3, 1], [3, 2, 2, 0]
    a = rng.random((sum(n), h, w)) < 0.4
    b = rng.random((sum(m), h, w)) < 0.6
    a[0] = True
    b[0] = True
    b[1] = False
    b[5] = a[2]
    off1, off2 = np.cumsum([0] + n), np.cumsum([0] + m)
    values, blocks = fastiou.segmented_mask_iou(jnp.asarray(a), jnp.asarray(b), off1, off2)
    want = np.concatenate([_mask_reference(a[off1[s]:off1[s + 1]], b[off2[s]:off2[s + 1]])
                           .reshape(-1) for s in range(len(n)) if n[s] and m[s]])
    assert isinstance(values, jax.Array) and values.dtype == jnp.float32
    assert values.shape == want.shape == (blocks[-1],)
    np.testing.assert_allclose(np.asarray(values), want, rtol=1e-6)
    assert float(values[0]) == 1.0 and float(values[6]) == 1.0  # a[0] vs b[0]; a[2] vs b[5]


def test_segmented_box_rows_no_retrace(monkeypatch):
    """Same shapes, dtypes and offsets, new values: the compiled "rows" programs are reused."""
    monkeypatch.setattr(jax_ragged, "FORMULATION", "rows")
    rng = np.random.default_rng(9)
    n, m = [3, 0, 2], [4, 1, 3]
    off1, off2 = np.cumsum([0] + n), np.cumsum([0] + m)
    for k in range(3):
        b1, b2 = _segment_boxes(rng, n), _segment_boxes(rng, m)
        values, _ = fastiou.segmented_box_iou(jnp.asarray(b1), jnp.asarray(b2), off1, off2)
        np.testing.assert_allclose(np.asarray(values), _segmented_reference(b1, b2, off1, off2),
                                   rtol=2e-5, atol=2e-6)
        if k == 0:
            sizes = (jax_ragged._tiles._cache_size(), jax_ragged._box_rows._cache_size())
    assert (jax_ragged._tiles._cache_size(), jax_ragged._box_rows._cache_size()) == sizes


# --- evaluate on the JAX engine: boxes matched on the host (CPU) or from the device's blocks;
# --- masks packed image by image into one buffer -------------------------------------------------

def _evaluate_reference(blocks, scores, t):
    """Per-object (pred_index, iou) of every image's float64 block, by COCO's greedy rule."""
    import match_reference

    pred_index, iou = [], []
    for block, s in zip(blocks, scores):
        if block.shape[0] == 0:
            continue
        if block.shape[1] == 0:
            pred_index += [-1] * block.shape[0]
            iou += [0.0] * block.shape[0]
            continue
        _, g2p, _, matched = match_reference.greedy(block, scores=s, t=t)
        pred_index += g2p
        iou += matched
    return np.array(pred_index, np.int64), np.array(iou)


def test_evaluate_jax_boxes_match_reference(monkeypatch):
    """evaluate computes the IoU blocks of jax boxes with the JAX engine (one segmented call)
    and matches them as the reference does; the caller's arrays are left as they were."""
    calls = []
    real = jax_ragged.box_iou
    monkeypatch.setattr(jax_ragged, "box_iou", lambda *a, **k: calls.append(1) or real(*a, **k))
    rng = np.random.default_rng(41)
    counts = [(3, 7), (0, 4), (5, 0), (1, 1), (8, 12), (0, 0)]
    gt = [_segment_boxes(rng, [g]) for g, _ in counts]
    near = [max(0, p - 1) if len(g) else 0 for g, (_, p) in zip(gt, counts)]
    pred = [np.concatenate([g[rng.integers(0, max(1, len(g)), k)] + rng.normal(0, 0.5, (k, 4)),
                            _segment_boxes(rng, [p - k])]).astype(np.float32)
            for g, (_, p), k in zip(gt, counts, near)]
    scores = [rng.random(p) for _, p in counts]
    originals = [a.copy() for a in gt + pred]
    jgt, jpred = [jnp.asarray(a) for a in gt], [jnp.asarray(a) for a in pred]
    report = fastiou.evaluate(jgt, jpred, scores=scores, iou_threshold=0.3)
    assert len(calls) == 1
    blocks = [ref.pairwise("iou", g.astype(np.float64), p.astype(np.float64))
              for g, p in zip(gt, pred)]
    pred_index, iou = _evaluate_reference(blocks, scores, 0.3)
    np.testing.assert_array_equal(report.per_object["pred_index"], pred_index)
    np.testing.assert_allclose(report.per_object["iou"], iou, rtol=2e-6, atol=1e-7)
    assert (pred_index >= 0).sum() >= 8
    assert all((np.asarray(a) == b).all() for a, b in zip(jgt + jpred, originals))


def pack_one_chunk(images):
    """The masks of images of one size packed one after another, a row of words per mask."""
    h, w = images[0].shape[1:]
    ones = np.ones(len(images), np.int64)
    words, area, _ = jax_ragged._pack_rows("test", images, ones, jax_ragged._flat_words(h * w))
    return words, area


@pytest.mark.parametrize("pack", ["images", "host"])
def test_packed_rows_counts_match_reference(monkeypatch, pack):
    """Rows of every image one after another, rows past them zero; popcounts of the words are the
    areas and those of AND-ed rows the intersections, for bool and integer masks (256 is
    foreground), H W a multiple of 32 or not; the caller's arrays stay alive. Per image
    ("images"), and by NumPy on the host ("host", the CPU default)."""
    monkeypatch.setattr(jax_ragged, "PACK", pack)
    rng = np.random.default_rng(12)
    for h, w, dtype in [(5, 9, np.bool_), (4, 8, np.int16), (7, 40, np.uint8)]:
        images = [rng.random((n, h, w)) < 0.4 for n in (2, 0, 3, 1, 7, 5)]
        images[0][0] = True
        if dtype != np.bool_:
            images = [np.where(m, 256 if dtype == np.int16 else 3, 0).astype(dtype) for m in images]
        jimages = [jnp.asarray(m) for m in images]
        words, area = pack_one_chunk(jimages)
        flat = np.concatenate([m.reshape(m.shape[0], h * w) != 0 for m in images])
        total = flat.shape[0]
        words, area = np.asarray(words), np.asarray(area)
        assert words.dtype == np.uint32 and words.shape[0] >= total
        assert words.shape[1] == jax_ragged._flat_words(h * w) and words.shape[1] % 8 == 0
        assert not words[total:].any() and not area[total:].any()
        count = np.vectorize(lambda v: bin(int(v)).count("1"))
        np.testing.assert_array_equal(area[:total], flat.sum(1))
        np.testing.assert_array_equal(count(words[:total]).sum(1), flat.sum(1))
        inter = count(words[:total, None, :] & words[None, :total, :]).sum(-1)
        np.testing.assert_array_equal(inter, flat.astype(np.int64) @ flat.T.astype(np.int64))
        assert not any(m.is_deleted() for m in jimages)


def test_evaluate_masks_match_reference_and_reuse_compiled_packing():
    """Masks of two sizes, integer and bool, images without objects or predictions; a second
    dataset with the same shapes compiles nothing new."""
    rng = np.random.default_rng(8)

    def dataset():
        gt, pred = [], []
        for g, p, (h, w) in [(2, 3, (12, 20)), (0, 2, (12, 20)), (3, 0, (9, 7)), (1, 4, (9, 7)),
                             (2, 2, (12, 20))]:
            gt.append(rng.random((g, h, w)) < 0.5)
            pred.append(np.concatenate([gt[-1][:min(g, p)] ^ (rng.random((min(g, p), h, w))
                                                               < 0.1),
                                        rng.random((p - min(g, p), h, w)) < 0.5]))
        return gt, pred

    for k in range(2):
        gt, pred = dataset()
        gt[3] = gt[3].astype(np.int32) * 300
        scores = [rng.random(p.shape[0]) for p in pred]
        report = fastiou.evaluate([jnp.asarray(a) for a in gt], [jnp.asarray(a) for a in pred],
                                  scores=scores, iou_threshold=0.4)
        blocks = [_mask_reference(g != 0, p) if len(g) and len(p) else np.zeros((len(g), len(p)))
                  for g, p in zip(gt, pred)]
        pred_index, iou = _evaluate_reference(blocks, scores, 0.4)
        np.testing.assert_array_equal(report.per_object["pred_index"], pred_index)
        np.testing.assert_allclose(report.per_object["iou"], iou, rtol=1e-6)
        assert (pred_index >= 0).sum() >= 3
        if k == 0:
            compiled = (jax_ragged._row_areas._cache_size(), jax_ragged._span_pairs._cache_size())
    assert (jax_ragged._row_areas._cache_size(), jax_ragged._span_pairs._cache_size()) == compiled


def test_packing_on_the_host_compiles_one_program_for_any_mask_counts(monkeypatch):
    """On CPU ("host") images with nine different numbers of masks are packed by NumPy and their
    areas counted by one compiled program (per image, "images", nine packing programs), and the
    rows are those of each image."""
    monkeypatch.setattr(jax_ragged, "PACK", "host")
    rng = np.random.default_rng(13)
    images = [rng.random((n, 6, 11)) < 0.3 for n in range(1, 10)]
    before = jax_ragged._row_areas._cache_size()
    words, area = pack_one_chunk([jnp.asarray(m) for m in images])
    assert jax_ragged._row_areas._cache_size() - before <= 1
    flat = np.concatenate([m.reshape(m.shape[0], -1) for m in images])
    np.testing.assert_array_equal(np.asarray(area)[:flat.shape[0]], flat.sum(1))
