"""fastiou.match on every engine: against pycocotools' COCOeval.evaluateImg (dtMatches,
gtMatches, dtIgnore) on a small COCO dataset with crowd regions, area ranges, ties in score and in
IoU, images without ground truth or detections and several thresholds; against the plain loop of
``match_reference.py`` on random matrices (NaN, padding, batches); optimal against brute force;
the segmented many-image entry; a jitted evaluation step; bad input."""

from __future__ import annotations

import contextlib
import io
import pickle

import numpy as np
import pytest

import fastiou
import match_reference
from box_cases import x64
from fastiou.backends.numba_cpu import matching as numba_matching


def run(engine, iou, scores=None, crowd=None, gt_ignore=None, gt_valid=None, pred_valid=None,
        **kwargs):
    """fastiou.match on ``engine``; NumPy in, a MatchResult of NumPy arrays out (engine.call
    checks that every field came back in the engine's own array type)."""

    def call(iou, scores, crowd, gt_ignore, gt_valid, pred_valid, **kw):
        return fastiou.match(iou, scores=scores, crowd=crowd, gt_ignore=gt_ignore,
                             gt_valid=gt_valid, pred_valid=pred_valid, **kw)

    return fastiou.MatchResult(*engine.call(call, iou, scores, crowd, gt_ignore, gt_valid,
                                            pred_valid, **kwargs))


def assert_reference(got, iou, scores, t, crowd=None, gt_ignore=None, gt_valid=None,
                     pred_valid=None, what=""):
    p2g, g2p, pign, miou = match_reference.greedy(iou, scores, t, crowd, gt_ignore, gt_valid,
                                                  pred_valid)
    np.testing.assert_array_equal(got.pred_to_gt, p2g, err_msg=what)
    np.testing.assert_array_equal(got.gt_to_pred, g2p, err_msg=what)
    np.testing.assert_array_equal(got.pred_ignored, pign, err_msg=what)
    np.testing.assert_array_equal(got.matched_iou, np.asarray(miou, got.matched_iou.dtype),
                                  err_msg=what)


def random_case(rng, g, p, dtype=np.float32):
    iou = rng.choice([0.0, 0.3, 0.5, 0.5, 0.7, 0.9, 1.0], size=(g, p)).astype(dtype)
    if g and p:
        iou[rng.integers(g), rng.integers(p)] = np.nan
    return dict(iou=iou, scores=rng.choice([0.1, 0.5, 0.9], size=p),
                crowd=rng.random(g) < 0.2, gt_ignore=rng.random(g) < 0.2,
                gt_valid=rng.random(g) < 0.9, pred_valid=rng.random(p) < 0.9)


# --------------------------------------------------------------------------------------------
# pycocotools


def coco_dataset(seed=0):
    """Ground truth and detections: 8 images, 2 categories, crowd regions, duplicated boxes (ties
    in IoU), scores in three values (ties in score), an image without ground truth, one without
    detections, areas on both sides of the 32**2 and 96**2 boundaries."""
    rng = np.random.default_rng(seed)
    images = [{"id": i + 1, "width": 300, "height": 300} for i in range(8)]
    gts, dts = [], []
    for img in range(1, 9):
        for cat in (1, 2):
            n = 0 if img == 1 else int(rng.integers(1, 6))
            boxes = []
            for _ in range(n):
                w, h = rng.choice([20.0, 32.0, 50.0, 96.0, 120.0], size=2)
                boxes.append([float(rng.integers(0, 150)), float(rng.integers(0, 150)), w, h])
            if n >= 2 and rng.random() < 0.5:
                boxes.append(list(boxes[0]))  # an identical object: equal IoUs
            for k, b in enumerate(boxes):
                crowd = int(k == len(boxes) - 1 and rng.random() < 0.4)
                gts.append({"id": len(gts) + 1, "image_id": img, "category_id": cat, "bbox": b,
                            "area": b[2] * b[3], "iscrowd": crowd})
            if img == 2:
                continue  # no detections
            for b in boxes + ([[10.0, 10.0, 40.0, 40.0]] if img == 1 else []):
                for _ in range(int(rng.integers(1, 4))):
                    dx, dy, dw = rng.choice([0.0, 0.0, 4.0, 10.0, 25.0], size=3)
                    dts.append({"image_id": img, "category_id": cat,
                                "bbox": [b[0] + dx, b[1] + dy, b[2] + dw, b[3]],
                                "score": float(rng.choice([0.3, 0.6, 0.9]))})
    categories = [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]
    return {"images": images, "annotations": gts, "categories": categories}, dts


THRESHOLDS = np.array([0.1, 0.5, 0.55, 0.7, 0.75, 0.9, 0.95, 1.0])


@pytest.fixture(scope="module")
def coco_eval():
    pycocotools = pytest.importorskip("pycocotools.cocoeval")
    from pycocotools.coco import COCO

    dataset, results = coco_dataset()
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = dataset
        gt.createIndex()
        dt = gt.loadRes(results)
        ev = pycocotools.COCOeval(gt, dt, "bbox")
        ev.params.iouThrs = THRESHOLDS
        ev.params.maxDets = [100]
        ev.evaluate()
    return ev


def coco_blocks(ev):
    """Per (image, category): gts, dts (input order), the (G, D) IoU in input order."""
    blocks = []
    for img in ev.params.imgIds:
        for cat in ev.params.catIds:
            gts, dts = ev._gts[img, cat], ev._dts[img, cat]
            scores = np.array([d["score"] for d in dts])
            iou = np.zeros((len(gts), len(dts)))
            if len(gts) and len(dts):
                inds = np.argsort(-scores, kind="mergesort")
                iou[:, inds] = np.asarray(ev.ious[img, cat]).T  # pycocotools' rows: sorted dts
            blocks.append((img, cat, gts, dts, scores, iou))
    return blocks


def assert_coco(ev, block, area_index, p2g, g2p, pign):
    """Compare one block's matches (T, D) / (T, G), in input order, with evaluateImg's."""
    img, cat, gts, dts, scores, _ = block
    n_img, n_area = len(ev.params.imgIds), len(ev.params.areaRng)
    k = ev.params.catIds.index(cat) * n_area * n_img + area_index * n_img + \
        ev.params.imgIds.index(img)
    e = ev.evalImgs[k]
    if e is None:
        assert not gts and not dts
        return
    a0, a1 = ev.params.areaRng[area_index]
    inds = np.argsort(-scores, kind="mergesort")
    gt_ids = np.array([0] + [g["id"] for g in gts])
    dt_ids = np.array([0] + [d["id"] for d in dts])
    dt_out = np.array([d["area"] < a0 or d["area"] > a1 for d in dts], dtype=bool)
    what = f"image {img}, category {cat}, area {ev.params.areaRngLbl[area_index]}"
    np.testing.assert_array_equal(gt_ids[p2g[:, inds] + 1], e["dtMatches"], err_msg=what)
    np.testing.assert_array_equal(pign[:, inds] | ((p2g[:, inds] < 0) & dt_out[inds]),
                                  e["dtIgnore"], err_msg=what)
    order = {gid: j for j, gid in enumerate(g["id"] for g in gts)}
    gsorted = [order[gid] for gid in e["gtIds"]]
    np.testing.assert_array_equal(dt_ids[g2p[:, gsorted] + 1], e["gtMatches"], err_msg=what)


def area_ignore(gts, area):
    a0, a1 = area
    return np.array([g["area"] < a0 or g["area"] > a1 for g in gts], dtype=bool)


def test_greedy_equals_pycocotools_per_image(coco_eval):
    """One call per (image, category, area range), all thresholds at once, Numba engine."""
    for block in coco_blocks(coco_eval):
        img, cat, gts, dts, scores, iou = block
        crowd = np.array([bool(g["iscrowd"]) for g in gts], dtype=bool)
        for a, area in enumerate(coco_eval.params.areaRng):
            m = fastiou.match(iou, scores=scores, threshold=THRESHOLDS, crowd=crowd,
                              gt_ignore=area_ignore(gts, area))
            assert m.pred_to_gt.shape == (len(THRESHOLDS), len(dts))
            assert_coco(coco_eval, block, a, m.pred_to_gt, m.gt_to_pred, m.pred_ignored)


def test_greedy_equals_pycocotools_padded_batch(engine, coco_eval):
    """Every (area range, image, category) as one padded batch with validity masks: one call."""
    blocks = coco_blocks(coco_eval)
    areas = coco_eval.params.areaRng
    gmax = max(len(b[2]) for b in blocks)
    pmax = max(len(b[3]) for b in blocks)
    n = len(blocks)
    iou = np.zeros((1, n, gmax, pmax))
    scores = np.zeros((n, pmax))
    crowd = np.zeros((n, gmax), dtype=bool)
    ignore = np.zeros((len(areas), n, gmax), dtype=bool)
    gv, pv = np.zeros((n, gmax), dtype=bool), np.zeros((n, pmax), dtype=bool)
    for i, (_, _, gts, dts, s, block) in enumerate(blocks):
        g, p = block.shape
        iou[0, i, :g, :p] = block
        iou[0, i, g:, :] = 1.0  # padding that would match if it were not masked out
        scores[i, :p], scores[i, p:] = s, 2.0
        crowd[i, :g] = [bool(x["iscrowd"]) for x in gts]
        gv[i, :g], pv[i, :p] = True, True
        for a, area in enumerate(areas):
            ignore[a, i, :g] = area_ignore(gts, area)
    # float32 IoUs: the same matches as the Numba engine's (JAX without x64 has no float64)
    args = (scores, crowd, ignore, gv, pv)
    m = run(engine, iou.astype(np.float32), *args, threshold=THRESHOLDS)
    assert m.pred_to_gt.shape == (len(THRESHOLDS), len(areas), n, pmax)
    assert m.matched_iou.dtype == np.float32 and m.gt_valid.shape == m.gt_to_pred.shape
    host = fastiou.match(iou.astype(np.float32), scores=scores, threshold=THRESHOLDS,
                         crowd=crowd, gt_ignore=ignore, gt_valid=gv, pred_valid=pv)
    for a, b in zip(m, host):
        np.testing.assert_array_equal(a, b)
    # float64 IoUs (JAX: with x64 enabled): pycocotools' matches exactly
    with x64(engine):
        exact = run(engine, iou, *args, threshold=THRESHOLDS)
    assert exact.matched_iou.dtype == np.float64 and exact.pred_to_gt.dtype == np.int64
    for a in range(len(areas)):
        for i, block in enumerate(blocks):
            g, p = block[5].shape
            assert_coco(coco_eval, block, a, exact.pred_to_gt[:, a, i, :p],
                        exact.gt_to_pred[:, a, i, :g], exact.pred_ignored[:, a, i, :p])
            assert (m.pred_to_gt[:, a, i, p:] == -1).all()
            assert (m.gt_to_pred[:, a, i, g:] == -1).all()


def test_segmented_equals_pycocotools(coco_eval):
    """The whole dataset, every area range and threshold, in one compiled call per area."""
    blocks = coco_blocks(coco_eval)
    gs = np.array([b[5].shape[0] for b in blocks])
    ps = np.array([b[5].shape[1] for b in blocks])
    gt_off = np.concatenate([[0], np.cumsum(gs)])
    pred_off = np.concatenate([[0], np.cumsum(ps)])
    iou_off = np.concatenate([[0], np.cumsum(gs * ps)])[:-1]
    flat = np.concatenate([b[5].ravel() for b in blocks])
    scores = np.concatenate([b[4] for b in blocks])
    crowd = np.array([bool(g["iscrowd"]) for b in blocks for g in b[2]], dtype=bool)
    for a, area in enumerate(coco_eval.params.areaRng):
        ignore = np.concatenate([area_ignore(b[2], area) for b in blocks])
        p2g, g2p, pign, miou = numba_matching.greedy_segmented(
            flat, iou_off, gt_off, pred_off, scores=scores, thresholds=THRESHOLDS, crowd=crowd,
            gt_ignore=ignore)
        assert p2g.dtype == np.int64 and pign.dtype == bool and miou.dtype == np.float64
        assert p2g.shape == (len(THRESHOLDS), pred_off[-1])
        for i, block in enumerate(blocks):
            gsl, psl = slice(gt_off[i], gt_off[i + 1]), slice(pred_off[i], pred_off[i + 1])
            assert_coco(coco_eval, block, a, p2g[:, psl], g2p[:, gsl], pign[:, psl])


# --------------------------------------------------------------------------------------------
# Every engine against the plain loop


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_random_against_reference(cpu_engine, dtype):
    rng = np.random.default_rng(3)
    thresholds = [0.0, 0.3, 0.5, 0.7, 1.0]
    for g, p in ((6, 8), (9, 3), (0, 5), (4, 0), (1, 1)):
        cases = [random_case(rng, g, p, dtype) for _ in range(3)]
        stacked = {k: np.stack([c[k] for c in cases]) for k in cases[0]}
        m = run(cpu_engine, stacked.pop("iou"), **stacked, threshold=thresholds)
        want_float = np.float64 if dtype == np.float64 and cpu_engine.name != "jax" else np.float32
        assert m.matched_iou.dtype == want_float
        assert m.pred_to_gt.shape == (len(thresholds), 3, p)
        for k, t in enumerate(thresholds):
            for b, c in enumerate(cases):
                # the reference sees the IoUs as the engine holds them (JAX: float32)
                assert_reference(m.select((k, b)), c["iou"].astype(want_float), c["scores"], t,
                                 c["crowd"], c["gt_ignore"], c["gt_valid"], c["pred_valid"],
                                 f"{cpu_engine.name} ({g}, {p}) item {b} t {t}")


def test_gpu_engine_against_reference(engine):
    """The same on the engine of the fixture, cupy included where there is a GPU."""
    rng = np.random.default_rng(4)
    c = random_case(rng, 7, 9)
    m = run(engine, c["iou"], c["scores"], c["crowd"], c["gt_ignore"], c["gt_valid"],
            c["pred_valid"], threshold=0.5)
    assert m.pred_to_gt.shape == (9,) and m.gt_to_pred.shape == (7,)
    assert_reference(m, c["iou"], c["scores"], 0.5, c["crowd"], c["gt_ignore"], c["gt_valid"],
                     c["pred_valid"], engine.name)


def test_pycocotools_tie_rules(engine):
    """Equal IoUs: the later object wins; equal scores: the earlier prediction chooses first; a
    regular object is preferred to a crowd region of higher IoU; a crowd region absorbs any
    number; a gt_ignore object only one."""
    iou = np.array([[0.8, 0.8, 0.0, 0.0],
                    [0.8, 0.8, 0.0, 0.0],
                    [0.9, 0.9, 0.9, 0.6],   # crowd
                    [0.0, 0.0, 0.7, 0.7]])  # gt_ignore
    scores = np.array([0.5, 0.5, 0.9, 0.5])
    m = run(engine, iou, scores, np.array([0, 0, 1, 0], bool), np.array([0, 0, 0, 1], bool))
    # order: 2 (0.9), then 0, 1, 3 (ties in input order)
    np.testing.assert_array_equal(m.pred_to_gt, [1, 0, 2, 3])
    np.testing.assert_array_equal(m.pred_ignored, [False, False, True, True])
    np.testing.assert_array_equal(m.gt_to_pred, [1, 0, 2, 3])
    np.testing.assert_array_equal(m.gt_ignored, [False, False, True, True])
    # the views
    np.testing.assert_array_equal(m.gt_index, [0, 1])
    np.testing.assert_array_equal(m.pred_index, [1, 0])
    np.testing.assert_allclose(m.iou, [0.8, 0.8])
    assert m.unmatched_gt.size == 0 and m.unmatched_pred.size == 0
    np.testing.assert_array_equal(m.ignored_pred, [2, 3])


def test_threshold_compares_exactly(engine):
    """A float32 IoU is compared by its exact value: float32(0.7) < 0.7 does not match 0.7, and
    t = 1 matches an IoU of 1 (pycocotools' min(t, 1 - 1e-10))."""
    v = np.float32(0.7)
    above = np.nextafter(v, np.float32(1))
    iou = np.array([[v, 0, 0], [0, above, 0], [0, 0, 1]], dtype=np.float32)
    m = run(engine, iou, threshold=0.7)
    np.testing.assert_array_equal(m.pred_to_gt, [-1, 1, 2])
    m = run(engine, iou, threshold=1.0)
    np.testing.assert_array_equal(m.pred_to_gt, [-1, -1, 2])
    m = run(engine, iou.astype(np.float64), threshold=float(v))
    np.testing.assert_array_equal(m.pred_to_gt, [0, 1, 2])


def test_nan_and_zero_never_match(engine):
    iou = np.array([[np.nan, 0.0], [0.0, np.nan]])
    m = run(engine, iou, threshold=0.0)
    np.testing.assert_array_equal(m.pred_to_gt, [-1, -1])
    np.testing.assert_array_equal(m.matched_iou, [0, 0])
    np.testing.assert_array_equal(m.unmatched_gt, [0, 1])


def test_non_contiguous_inputs_and_no_mutation(cpu_engine):
    rng = np.random.default_rng(5)
    c = random_case(rng, 5, 6, np.float64)
    fortran = np.asfortranarray(c["iou"])
    flipped = c["iou"][:, ::-1].copy()[:, ::-1]  # a negative-stride view of a copy
    before = {k: v.copy() for k, v in c.items()}
    base = run(cpu_engine, c["iou"], c["scores"], c["crowd"])
    for iou in (fortran, flipped, c["iou"].astype(">f8")):
        if iou.dtype.isnative or cpu_engine.name != "jax":
            got = run(cpu_engine, iou, c["scores"], c["crowd"])
        else:  # the fixture's jnp.asarray refuses '>f8'; fastiou converts NumPy input itself
            got = fastiou.match(iou, scores=c["scores"], crowd=c["crowd"], backend="jax")
            got = fastiou.MatchResult(*(np.asarray(f) for f in got))
        for a, b in zip(got, base):
            np.testing.assert_array_equal(a, b)
    for k, v in c.items():
        np.testing.assert_array_equal(v, before[k])


# --------------------------------------------------------------------------------------------
# Optimal


def test_optimal_against_brute_force(cpu_engine):
    rng = np.random.default_rng(6)
    for _ in range(12):
        g, p = int(rng.integers(0, 5)), int(rng.integers(0, 5))
        iou = rng.choice([0.0, 0.4, 0.55, 0.6, 0.8, 1.0], size=(g, p))
        m = run(cpu_engine, iou, threshold=0.5, method="optimal")
        pairs = [(j, q) for q, j in enumerate(m.pred_to_gt) if j >= 0]
        assert len({j for j, _ in pairs}) == len(pairs)  # one to one
        for j, q in pairs:
            assert m.gt_to_pred[j] == q and iou[j, q] >= 0.5
        total = sum(iou[j, q] for j, q in pairs)
        assert total == pytest.approx(match_reference.optimal_total(iou, 0.5), abs=1e-6)


def test_optimal_beats_greedy_and_handles_crowd():
    iou = np.array([[0.9, 0.8, 0.6], [0.8, 0.0, 0.0], [0.0, 0.7, 0.9]])
    scores = [0.9, 0.8, 0.7]
    greedy = fastiou.match(iou[:2], scores=scores)
    optimal = fastiou.match(iou[:2], scores=scores, method="optimal")
    np.testing.assert_array_equal(greedy.pred_to_gt, [0, -1, -1])  # total 0.9
    np.testing.assert_array_equal(optimal.pred_to_gt, [1, 0, -1])  # total 1.6
    np.testing.assert_array_equal(optimal.gt_to_pred, [1, 0])
    np.testing.assert_allclose(optimal.matched_iou, [0.8, 0.8])
    # the leftover prediction meets the crowd region by the greedy rule
    m = fastiou.match(iou, scores=scores, method="optimal", crowd=np.array([0, 0, 1], bool))
    np.testing.assert_array_equal(m.pred_to_gt, [1, 0, 2])
    np.testing.assert_array_equal(m.pred_ignored, [False, False, True])


def test_optimal_refuses_jit():
    jax = pytest.importorskip("jax")
    f = jax.jit(lambda iou: fastiou.match(iou, method="optimal").pred_to_gt)
    with pytest.raises(TypeError, match="optimal"):
        f(jax.numpy.ones((2, 2)))


# --------------------------------------------------------------------------------------------
# JAX: a jitted evaluation step, vmap, no retracing, pytree


def test_jitted_evaluation_step():
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    rng = np.random.default_rng(7)
    traces = []

    @jax.jit
    def step(gt, pred, scores, gt_valid, pred_valid):
        traces.append(1)
        iou = fastiou.box_iou(gt, pred)
        m = fastiou.match(iou, scores=scores, threshold=0.5, gt_valid=gt_valid,
                          pred_valid=pred_valid)
        per_object = jnp.where(m.gt_valid, m.matched_iou, 0.0)
        return m, per_object.sum() / m.gt_valid.sum()

    for _ in range(2):
        gt = rng.uniform(0, 50, (6, 2))
        gt = np.concatenate([gt, gt + rng.uniform(5, 30, (6, 2))], axis=1).astype(np.float32)
        pred = np.concatenate([gt + rng.uniform(-3, 3, gt.shape), gt[:2]]).astype(np.float32)
        scores = rng.random(8).astype(np.float32)
        gv = np.array([1, 1, 1, 1, 0, 0], bool)
        pv = np.array([1, 1, 1, 0, 1, 1, 1, 0], bool)
        m, mean = step(*(jnp.asarray(x) for x in (gt, pred, scores, gv, pv)))
        assert isinstance(m, fastiou.MatchResult) and isinstance(m.pred_to_gt, jax.Array)
        want = fastiou.match(fastiou.box_iou(gt[:4], pred), scores=scores, pred_valid=pv)
        np.testing.assert_array_equal(np.asarray(m.pred_to_gt), want.pred_to_gt)
        np.testing.assert_allclose(float(mean), want.matched_iou.mean(), rtol=1e-6)
    assert len(traces) == 1  # same shapes and dtypes: no retracing


def test_vmap_and_pickle():
    jax = pytest.importorskip("jax")
    rng = np.random.default_rng(8)
    iou = rng.choice([0.0, 0.5, 0.8], size=(4, 3, 5)).astype(np.float32)
    scores = rng.random((4, 5)).astype(np.float32)
    f = jax.vmap(lambda i, s: fastiou.match(i, scores=s, threshold=[0.5, 0.75]))
    m = f(jax.numpy.asarray(iou), jax.numpy.asarray(scores))
    want = fastiou.match(iou, scores=scores, threshold=[0.5, 0.75])
    # vmap puts the mapped axis first: (B, T, P) against the batched call's (T, B, P)
    np.testing.assert_array_equal(np.moveaxis(np.asarray(m.pred_to_gt), 0, 1), want.pred_to_gt)
    back = pickle.loads(pickle.dumps(want))
    assert isinstance(back, fastiou.MatchResult)
    np.testing.assert_array_equal(back.gt_to_pred, want.gt_to_pred)


# --------------------------------------------------------------------------------------------
# Bad input


IOU = np.full((2, 3), 0.5)
BAD = [
    (dict(iou=np.ones((2, 3), dtype=np.int32)), TypeError, "iou must be a floating"),
    (dict(iou=np.ones(3)), ValueError, r"iou must have shape \(\.\.\., G, P\)"),
    (dict(scores=np.ones(4)), ValueError, r"scores must have shape \(\.\.\., P\) with P = 3"),
    (dict(scores=np.array([0.5, np.nan, 0.1])), ValueError, "scores must not be NaN"),
    (dict(scores=np.array(["a", "b", "c"])), TypeError, "scores must be a numeric"),
    (dict(threshold=-0.1), ValueError, r"threshold must lie in \[0, 1\]"),
    (dict(threshold=1.5), ValueError, r"threshold must lie in \[0, 1\]"),
    (dict(threshold=float("nan")), ValueError, r"threshold must lie in \[0, 1\]"),
    (dict(threshold=[0.5, 2.0]), ValueError, r"threshold must lie in \[0, 1\]"),
    (dict(threshold="0.5"), TypeError, "threshold must be a number"),
    (dict(threshold=[[0.5]]), TypeError, "threshold must be a number"),
    (dict(threshold=[]), TypeError, "threshold must be a number"),
    (dict(method="hungarian"), ValueError, "method must be one of 'greedy', 'optimal'"),
    (dict(crowd=np.zeros(3, bool)), ValueError, r"crowd must have shape \(\.\.\., G\) with G = 2"),
    (dict(gt_ignore=np.zeros(2, np.float32)), TypeError, "gt_ignore must be a bool"),
    (dict(pred_valid=np.ones(2, bool)), ValueError, r"pred_valid must have shape \(\.\.\., P\)"),
    (dict(gt_valid=np.ones((3, 2), bool), scores=np.ones((2, 3))), ValueError,
     r"the leading \(batch\) dimensions of iou, scores and the masks must broadcast"),
]


@pytest.mark.parametrize(("kwargs", "error", "message"), BAD,
                         ids=[f"{i}-{'-'.join(k)}" for i, (k, _, _) in enumerate(BAD)])
def test_bad_input(cpu_engine, kwargs, error, message):
    kwargs = dict(kwargs)
    iou = kwargs.pop("iou", IOU)
    arrays = {k: kwargs.pop(k, None) for k in ("scores", "crowd", "gt_ignore", "gt_valid",
                                                 "pred_valid")}
    if cpu_engine.name == "jax" and arrays["scores"] is not None \
            and arrays["scores"].dtype.kind == "U":
        pytest.skip("jax has no string arrays: the case cannot be built on this engine")
    with pytest.raises(error, match=f"^match: {message}"):
        run(cpu_engine, iou, **arrays, **kwargs)


def test_mixed_engines_are_refused():
    jax = pytest.importorskip("jax")
    with pytest.raises(TypeError, match="match: iou is a .* but scores is a"):
        fastiou.match(IOU, scores=jax.numpy.ones(3))


def test_views_need_one_matrix():
    m = fastiou.match(np.full((2, 2, 3), 0.6))
    with pytest.raises(ValueError, match="use select"):
        m.gt_index
    np.testing.assert_array_equal(m.select(1).gt_index, [0, 1])


SEGMENT_BAD = [
    (dict(gt_offsets=[0, 2]), ValueError, r"gt_offsets must have shape \(n \+ 1,\)"),
    (dict(pred_offsets=[1, 3, 3]), ValueError, "pred_offsets must start at 0 and never decrease"),
    (dict(gt_offsets=[0, 3, 2]), ValueError, "gt_offsets must start at 0 and never decrease"),
    (dict(iou_offsets=[0, 10]), ValueError, "the IoU block of image 1"),
    (dict(iou_offsets=[-1, 6]), ValueError, "iou_offsets or the block sizes"),
    (dict(gt_offsets=[0, 2**40, 2**41], pred_offsets=[0, 2**30, 2**31]), ValueError,
     "iou_offsets or the block sizes"),
    (dict(iou_offsets=[0.0, 6.0]), TypeError, "iou_offsets must be a 1-D integer array"),
    (dict(scores=[0.1, np.nan, 0.2, 0.3, 0.4]), ValueError, "scores must not be NaN"),
    (dict(scores=[0.1, 0.2]), ValueError, r"scores must be a numeric array of shape \(5,\)"),
    (dict(crowd=[True]), ValueError, r"crowd must be a bool array of shape \(4,\)"),
    (dict(thresholds=1.2), ValueError, r"thresholds must lie in \[0, 1\]"),
    (dict(iou_flat=np.zeros(12, np.int64)), TypeError, "iou_flat must be a 1-D floating"),
]


@pytest.mark.parametrize(("kwargs", "error", "message"), SEGMENT_BAD,
                         ids=[f"{i}-{'-'.join(k)}" for i, (k, _, _) in enumerate(SEGMENT_BAD)])
def test_segmented_bad_input(kwargs, error, message):
    args = dict(iou_flat=np.full(12, 0.6), iou_offsets=[0, 6], gt_offsets=[0, 2, 4],
                pred_offsets=[0, 3, 5])
    args.update(kwargs)
    with pytest.raises(error, match=f"^greedy_segmented: ({message})"):
        numba_matching.greedy_segmented(**args)


def test_segmented_equals_match_per_image():
    rng = np.random.default_rng(9)
    sizes = [(3, 4), (0, 2), (2, 0), (5, 6), (1, 1)]
    cases = [random_case(rng, g, p, np.float64) for g, p in sizes]
    gs, ps = np.array([s[0] for s in sizes]), np.array([s[1] for s in sizes])
    gt_off, pred_off = np.r_[0, np.cumsum(gs)], np.r_[0, np.cumsum(ps)]
    # blocks stored with a gap between them: offsets need not be contiguous
    starts = np.r_[0, np.cumsum(gs * ps + 3)][:-1]
    flat = np.full(int(starts[-1] + gs[-1] * ps[-1]), 0.99)
    for s, c in zip(starts, cases):
        flat[s:s + c["iou"].size] = c["iou"].ravel()
    out = numba_matching.greedy_segmented(
        flat, starts, gt_off, pred_off, scores=np.concatenate([c["scores"] for c in cases]),
        thresholds=[0.5, 0.9], crowd=np.concatenate([c["crowd"] for c in cases]),
        gt_ignore=np.concatenate([c["gt_ignore"] for c in cases]))
    for i, c in enumerate(cases):
        m = fastiou.match(c["iou"], scores=c["scores"], threshold=[0.5, 0.9], crowd=c["crowd"],
                          gt_ignore=c["gt_ignore"])
        gsl, psl = slice(gt_off[i], gt_off[i + 1]), slice(pred_off[i], pred_off[i + 1])
        np.testing.assert_array_equal(out[0][:, psl], m.pred_to_gt)
        np.testing.assert_array_equal(out[1][:, gsl], m.gt_to_pred)
        np.testing.assert_array_equal(out[2][:, psl], m.pred_ignored)
        np.testing.assert_array_equal(out[3][:, gsl], m.matched_iou)


def test_segmented_score_order_ties_and_image_sizes():
    """The order within each image is NumPy's stable argsort of -score (ties in input order,
    -0.0 == 0.0, infinities) for small images and for large ones (the kernel ranks up to 256
    predictions by counting and merges above), and the matching built on it is the plain
    loop's."""
    rng = np.random.default_rng(12)
    sizes = [0, 1, 2, 17, 255, 256, 257, 700, 33]
    pred_off = np.r_[0, np.cumsum(sizes)]
    values = [-np.inf, -1.0, -0.0, 0.0, 0.25, 0.5, 1.0, np.inf]
    scores = rng.choice(values, size=int(pred_off[-1]))
    # P objects of IoU 1 with every prediction: the k-th prediction in order takes object P-1-k.
    sizes_sq = np.array(sizes) ** 2
    p2g = numba_matching.greedy_segmented(
        np.ones(int(sizes_sq.sum())), np.r_[0, np.cumsum(sizes_sq)][:-1], pred_off, pred_off,
        scores=scores)[0][0]
    for i, p in enumerate(sizes):
        s, got = scores[pred_off[i]:pred_off[i + 1]], p2g[pred_off[i]:pred_off[i + 1]]
        np.testing.assert_array_equal(got[np.argsort(-s, kind="stable")], p - 1 - np.arange(p))
    cases = [random_case(rng, int(rng.integers(0, 6)), p, np.float32) for p in sizes]
    for c, p in zip(cases, sizes):
        c["scores"] = rng.choice(values, size=p)
    gs = np.array([c["iou"].shape[0] for c in cases])
    gt_off = np.r_[0, np.cumsum(gs)]
    flat = np.concatenate([c["iou"].ravel() for c in cases])
    out = numba_matching.greedy_segmented(
        flat, np.r_[0, np.cumsum(gs * np.array(sizes))][:-1], gt_off, pred_off,
        scores=np.concatenate([c["scores"] for c in cases]), thresholds=[0.5, 0.9],
        crowd=np.concatenate([c["crowd"] for c in cases]),
        gt_ignore=np.concatenate([c["gt_ignore"] for c in cases]))
    for i, c in enumerate(cases):
        gsl, psl = slice(gt_off[i], gt_off[i + 1]), slice(pred_off[i], pred_off[i + 1])
        for k, t in enumerate([0.5, 0.9]):
            got = fastiou.MatchResult(out[0][k, psl], out[1][k, gsl], out[2][k, psl],
                                      out[3][k, gsl], None, None, None)
            assert_reference(got, c["iou"], c["scores"], t, c["crowd"], c["gt_ignore"],
                             what=f"image {i}, threshold {t}")


def test_shuffling_predictions_with_distinct_scores_changes_nothing():
    rng = np.random.default_rng(10)
    for _ in range(5):
        c = random_case(rng, 6, 9, np.float64)
        scores = rng.permutation(9) / 9.0  # distinct
        perm = rng.permutation(9)
        kw = dict(threshold=[0.3, 0.7], crowd=c["crowd"], gt_ignore=c["gt_ignore"])
        base = fastiou.match(c["iou"], scores=scores, **kw)
        moved = fastiou.match(c["iou"][:, perm], scores=scores[perm], **kw)
        np.testing.assert_array_equal(moved.pred_to_gt, base.pred_to_gt[:, perm])
        np.testing.assert_array_equal(moved.pred_ignored, base.pred_ignored[:, perm])
        back = np.where(moved.gt_to_pred >= 0, perm[moved.gt_to_pred], -1)
        np.testing.assert_array_equal(back, base.gt_to_pred)
