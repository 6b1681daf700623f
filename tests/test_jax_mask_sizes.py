"""JAX ``evaluate`` of masks over images of many sizes: the values of every pair, and a number
of compiled programs that does not grow with the number of distinct (H, W).

Every mask is packed into rows of ``ragged.CHUNK`` words, so sizes whose pixel count is and is
not a multiple of 32, 256 and of a row (8,192 pixels) are covered, as are 1 x N and N x 1 masks,
zero-pixel masks, empty and full masks, images without ground truth or without predictions.
Both ways of packing run ("host", the CPU default, and "images", the GPU/TPU one).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fastiou
from fastiou import _validate
from fastiou.backends.jax_xla import ragged

# (ground-truth masks, predicted masks, H, W); pixel counts: 37, 41, 1, 32, 256, 33, 8192,
# 8190, 8255, 17000, 9000, 0, 63, 320 (several rows of CHUNK words: 8255, 17000, 9000).
SIZES = [(2, 3, 1, 37), (3, 2, 41, 1), (1, 2, 1, 1), (2, 2, 8, 4), (3, 4, 16, 16),
         (0, 3, 3, 11), (2, 3, 64, 128), (2, 0, 90, 91), (3, 3, 65, 127), (2, 4, 100, 170),
         (2, 2, 1, 9000), (2, 3, 0, 5), (4, 1, 7, 9), (1, 1, 16, 20)]
# Per image ("images") every distinct mask shape compiles its own packing: fewer sizes, the
# same cases (1 x N, N x 1, no gt, no pred, 1, 2 and 3 rows of CHUNK words, zero pixels).
SIZES_IMAGES = [SIZES[k] for k in (0, 1, 5, 7, 8, 9, 11)]


def _sizes(pack: str) -> list[tuple[int, int, int, int]]:
    return SIZES if pack == "host" else SIZES_IMAGES


def _dataset(seed: int, sizes=SIZES) -> tuple[list[np.ndarray], list[np.ndarray], list]:
    """Masks near each other (copies, copies with flipped pixels), random ones, empty and full
    ones, bool and integer, and random scores."""
    rng = np.random.default_rng(seed)
    gt, pred, scores = [], [], []
    for k, (g, p, h, w) in enumerate(sizes):
        a = rng.random((g, h, w)) < rng.uniform(0.05, 0.6)
        b = rng.random((p, h, w)) < rng.uniform(0.05, 0.6)
        near = min(g, p)
        b[:near] = a[:near] ^ (rng.random((near, h, w)) < 0.1)
        if near and k % 2 == 0:
            b[0] = a[0]  # identical masks
        if g > 1:
            a[-1] = False  # an empty ground truth
        if p > 1:
            b[-1] = True  # a full prediction
        if k % 3 == 1:
            a = a.astype(np.int32) * 300
        if k % 4 == 2:
            b = b.astype(np.uint8) * 7
        gt.append(a)
        pred.append(b)
        scores.append(rng.random(p))
    return gt, pred, scores


def _reference(g: np.ndarray, p: np.ndarray) -> np.ndarray:
    """IoU ``(G, P)`` in float64 from the flattened 0/1 masks; union 0 gives 0."""
    a = (g != 0).reshape(g.shape[0], -1).astype(np.float64)
    b = (p != 0).reshape(p.shape[0], -1).astype(np.float64)
    inter = a @ b.T
    union = a.sum(1)[:, None] + b.sum(1)[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def _float32_ratio(g: np.ndarray, p: np.ndarray) -> np.ndarray:
    """The value the JAX engine computes from the exact counts: their ratio in float64 when x64
    is enabled, in float32 otherwise, rounded to float32."""
    a = (g != 0).reshape(g.shape[0], -1).astype(np.int64)
    b = (p != 0).reshape(p.shape[0], -1).astype(np.int64)
    inter = a @ b.T
    union = a.sum(1)[:, None] + b.sum(1)[None, :] - inter
    wide = np.float64 if jax.config.jax_enable_x64 else np.float32
    value = inter.astype(wide) / np.where(union > 0, union, 1).astype(wide)
    return np.where(union > 0, value.astype(np.float32), np.float32(0))


@pytest.fixture(params=["host", "images"])
def pack(request, monkeypatch):
    monkeypatch.setattr(ragged, "PACK", request.param)
    return request.param


def _blocks(gt, pred, budget=_validate.DEFAULT_MEMORY_BUDGET):
    used = [i for i, (g, p) in enumerate(zip(gt, pred)) if len(g) and len(p)]
    return ragged.image_mask_iou([jnp.asarray(gt[i]) for i in used],
                                 [jnp.asarray(pred[i]) for i in used], budget=budget)


def test_blocks_of_every_size_match_reference(pack):
    """The ``G_i x P_i`` blocks of images of 14 (7) sizes, in the images' order (they are counted in
    the order of their row counts), equal the float32 ratio of the exact counts bit for bit and
    the float64 reference within 1e-6; the caller's arrays are neither deleted nor changed."""
    gt, pred, _ = _dataset(1, _sizes(pack))
    copies = [a.copy() for a in gt + pred]
    jgt, jpred = [jnp.asarray(a) for a in gt], [jnp.asarray(a) for a in pred]
    values = ragged.image_mask_iou(jgt, jpred, budget=_validate.DEFAULT_MEMORY_BUDGET)
    pairs = [(g, p) for g, p in zip(gt, pred) if len(g) and len(p)]
    exact = np.concatenate([_float32_ratio(g, p).reshape(-1) for g, p in pairs])
    want = np.concatenate([_reference(g, p).reshape(-1) for g, p in pairs])
    assert isinstance(values, jax.Array) and values.dtype == jnp.float32
    assert values.shape == want.shape == (sum(len(g) * len(p) for g, p in zip(gt, pred)),)
    np.testing.assert_array_equal(np.asarray(values), exact)
    np.testing.assert_allclose(np.asarray(values), want, rtol=1e-6, atol=0)
    assert 0 < (want == 1).sum() and (want == 0).sum() > 0 and ((want > 0) & (want < 1)).any()
    assert not any(a.is_deleted() for a in jgt + jpred)
    for a, b in zip(gt + pred, copies):
        np.testing.assert_array_equal(a, b)


def test_blocks_do_not_depend_on_the_tile(monkeypatch):
    """Tiles of 4 pairs (masks of several sizes in one tile, and tiles of one size) give the same
    values as one tile of every pair; so do both counts (shifts and adds, popcount), and runs of
    pairs counted apart (the fewest entries a run may hold: two masks' rows)."""
    gt, pred, _ = _dataset(2)
    whole = np.asarray(_blocks(gt, pred))
    np.testing.assert_array_equal(np.asarray(_blocks(gt, pred, budget=4 * 4 * ragged.CHUNK)),
                                  whole)
    runs = []
    count = ragged._span_pairs
    monkeypatch.setattr(ragged, "_span_pairs", lambda *a, **k: runs.append(1) or count(*a, **k))
    monkeypatch.setattr(ragged, "_ENTRY_BYTES", 2**40)  # runs of two masks' rows
    np.testing.assert_array_equal(np.asarray(_blocks(gt, pred)), whole)
    assert len(runs) > 2, len(runs)
    monkeypatch.undo()
    for formulation in ("swar", "popcount"):
        try:
            ragged.MASK_FORMULATION = formulation
            np.testing.assert_array_equal(np.asarray(_blocks(gt, pred, budget=4096)), whole)
        finally:
            ragged.MASK_FORMULATION = None


def test_evaluate_matches_numba_and_reference(pack):
    """``evaluate`` on jax arrays of 14 (7) sizes: the same matches and IoUs as the Numba engine on
    the NumPy arrays, and as greedy matching over the float64 reference blocks."""
    gt, pred, scores = _dataset(3, _sizes(pack))
    report = fastiou.evaluate([jnp.asarray(a) for a in gt], [jnp.asarray(a) for a in pred],
                              scores=scores, iou_threshold=0.3)
    numba = fastiou.evaluate(gt, pred, scores=scores, iou_threshold=0.3)
    np.testing.assert_array_equal(report.per_object["pred_index"],
                                  numba.per_object["pred_index"])
    np.testing.assert_allclose(report.per_object["iou"], numba.per_object["iou"], rtol=1e-6)
    # Greedy matching, written plainly: predictions by descending score, each takes the
    # unmatched ground truth of highest IoU (>= threshold and > 0).
    pred_index, iou = [], []
    for g, p, s in zip(gt, pred, scores):
        block = _reference(g, p) if len(g) and len(p) else np.zeros((len(g), len(p)))
        to_pred = np.full(len(g), -1)
        for j in np.argsort(-s, kind="stable"):
            free = np.where(to_pred < 0, block[:, j], -1.0)
            if len(g) and free.max() >= 0.3 and free.max() > 0:
                to_pred[int(np.argmax(free))] = j
        pred_index.append(to_pred)
        iou.append(np.array([block[i, t] if t >= 0 else 0.0 for i, t in enumerate(to_pred)]))
    np.testing.assert_array_equal(report.per_object["pred_index"], np.concatenate(pred_index))
    np.testing.assert_allclose(report.per_object["iou"], np.concatenate(iou), rtol=1e-6)
    assert (np.concatenate(pred_index) >= 0).sum() >= 5


def test_one_program_for_many_sizes(pack):
    """Ten images of ten distinct sizes compile one counting program, and on CPU ("host") at
    most two area programs (ground truth and predictions) and no packing program; ten other
    sizes then compile nothing new. Per image ("images", four sizes) the packing compiles per
    distinct mask shape, the counting still once."""
    count_sizes = 10 if pack == "host" else 4

    def sizes(base: int) -> list[tuple[int, int, int, int]]:
        return [(3, 4, base + 3 * k, 2 * base - 5 * k) for k in range(count_sizes)]

    def run(base: int) -> None:
        gt, pred, scores = _dataset(base, sizes(base))
        fastiou.evaluate([jnp.asarray(a) for a in gt], [jnp.asarray(a) for a in pred],
                         scores=scores)

    assert len({h * w for *_, h, w in sizes(40) + sizes(43)}) == 2 * count_sizes
    count, areas, per_image = (ragged._span_pairs._cache_size(),
                               ragged._row_areas._cache_size(),
                               ragged._pack_image._cache_size())
    run(40)
    assert ragged._span_pairs._cache_size() - count <= 1
    if pack == "host":
        assert ragged._row_areas._cache_size() - areas <= 2
        assert ragged._pack_image._cache_size() == per_image
    else:
        assert ragged._pack_image._cache_size() - per_image >= count_sizes
    count, areas = ragged._span_pairs._cache_size(), ragged._row_areas._cache_size()
    run(43)
    assert ragged._span_pairs._cache_size() == count
    if pack == "host":
        assert ragged._row_areas._cache_size() == areas


def test_sizes_of_several_rows_share_the_count():
    """Masks of 1 to 5 rows of CHUNK words each (images in no order of size) are counted by one
    program, and the values are those of each image."""
    sizes = [(2, 3, 100, 300), (2, 2, 16, 16), (3, 2, 200, 200), (1, 3, 90, 91), (2, 2, 1, 9000)]
    assert sorted({ragged._chunks(h * w) for *_, h, w in sizes}) == [1, 2, 4, 5]
    gt, pred, _ = _dataset(4, sizes)
    count = ragged._span_pairs._cache_size()
    values = np.asarray(_blocks(gt, pred))
    assert ragged._span_pairs._cache_size() - count <= 1
    want = np.concatenate([_reference(g, p).reshape(-1) for g, p in zip(gt, pred)])
    np.testing.assert_allclose(values, want, rtol=1e-6, atol=0)


def test_bad_masks_of_many_sizes_are_refused():
    """A floating mask among images of several sizes is a ValueError naming evaluate and the
    entry; gt and pred of different sizes in one image, too."""
    gt, pred, _ = _dataset(5, SIZES[:4])
    bad = [jnp.asarray(a) for a in pred]
    bad[2] = bad[2].astype(jnp.float32)
    with pytest.raises(ValueError, match=r"evaluate.*pred\[2\]"):
        fastiou.evaluate([jnp.asarray(a) for a in gt], bad)
    bad = [jnp.asarray(a) for a in pred]
    bad[1] = jnp.zeros((2, 41, 2), bool)
    with pytest.raises(ValueError, match=r"evaluate.*image 1"):
        fastiou.evaluate([jnp.asarray(a) for a in gt], bad)


def test_masks_of_several_rows_and_one_row_count_alike():
    """Images whose masks all have three rows of CHUNK words (three sizes) give the same values
    alone as with one more image of one row a mask after them, and those of the reference."""
    sizes = [(2, 3, 100, 170), (3, 2, 90, 200), (1, 2, 120, 150)]
    assert {ragged._chunks(h * w) for *_, h, w in sizes} == {3}
    gt, pred, _ = _dataset(6, sizes + [(2, 2, 16, 16)])
    alone = np.asarray(_blocks(gt[:3], pred[:3]))
    rows = np.asarray(_blocks(gt, pred))
    want = np.concatenate([_reference(g, p).reshape(-1) for g, p in zip(gt, pred)])
    np.testing.assert_allclose(rows, want, rtol=1e-6, atol=0)
    np.testing.assert_array_equal(alone, rows[:alone.shape[0]])


def _bands(rows: list[list[tuple[int, ...]]], h: int, w: int) -> np.ndarray:
    """Masks ``(len(rows), h, w)``: mask k is foreground on the image rows ``[a, b)`` of each
    ``(a, b)`` of ``rows[k]``, and on the pixel ``p`` of the flattened mask of each ``(p,)``."""
    out = np.zeros((len(rows), h, w), bool)
    for mask, spans in zip(out, rows):
        for span in spans:
            if len(span) == 1:
                mask.reshape(-1)[span[0]] = True
            else:
                mask[span[0]:span[1]] = True
    return out


def test_pairs_are_counted_over_the_rows_both_masks_reach(monkeypatch, pack):
    """Masks of several rows of CHUNK words with set bits only in some rows: bands that end on a
    row's first or last bit, that straddle two rows, two bands with empty rows between, single
    pixels at the first and last pixel, empty and full masks. The values equal the float32 ratio
    of the exact counts bit for bit, and every pair is counted over exactly the rows from the
    later of its masks' first rows with a set bit to the earlier of their last ones."""
    entries = []
    span_pairs = ragged._span_pairs

    def spy(w1, w2, r1, r2, pair, *args, **kwargs):
        entries.append(int((np.asarray(pair) < args[0].shape[0]).sum()))
        return span_pairs(w1, w2, r1, r2, pair, *args, **kwargs)

    monkeypatch.setattr(ragged, "_span_pairs", spy)
    row = ragged.CHUNK * 32  # pixels of one row of words
    # 96 x 256: three rows of words (32 image rows each); 100 x 170: 17,000 pixels, three rows,
    # the last one partly past the mask.
    kinds = [[(0, 32)], [(32, 64)], [(64, 96)], [(31, 33)], [(0, 32), (64, 96)], [],
             [(0,), (row - 1,)], [(row,), (3 * row - 1,)], [(0, 96)], [(5, 6)],
             [(40, 41), (90, 91)]]
    gt = [_bands(kinds[:6], 96, 256), _bands(kinds[6:], 96, 256),
          _bands([[(0, 48)], [(16999,)], [(49, 50)], []], 100, 170)]
    pred = [_bands(kinds[3:] + kinds[:1], 96, 256), _bands(kinds[:7], 96, 256),
            _bands([[(48, 100)], [(0,)], [(0, 100)], [(60, 61)], [(16999,)]], 100, 170)]
    values = np.asarray(_blocks(gt, pred))
    exact = np.concatenate([_float32_ratio(g, p).reshape(-1) for g, p in zip(gt, pred)])
    np.testing.assert_array_equal(values, exact)
    assert (exact == 0).sum() > 10 and (exact == 1).sum() >= 3 and ((exact > 0) & (exact < 1)).any()

    def reach(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """First and last row of words with a set bit of each mask (0, -1 when empty)."""
        flat = m.reshape(m.shape[0], -1)
        lo = np.array([np.flatnonzero(f)[0] // row if f.any() else 0 for f in flat])
        hi = np.array([np.flatnonzero(f)[-1] // row if f.any() else -1 for f in flat])
        return lo, hi

    want = 0
    for g, p in zip(gt, pred):
        (lo1, hi1), (lo2, hi2) = reach(g), reach(p)
        span = np.minimum(hi1[:, None], hi2[None]) - np.maximum(lo1[:, None], lo2[None]) + 1
        want += int(np.clip(span, 0, None).sum())
    assert entries == [want] and 0 < want < sum(len(g) * len(p) * 3 for g, p in zip(gt, pred))
