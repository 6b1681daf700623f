"""fastiou.coco.evaluate against pycocotools' COCOeval (the reference), bit for bit.

Every dataset is evaluated by both; ``precision``, ``recall`` and ``scores`` must be equal
element for element and the 12 stats equal to 1e-12. pycocotools gets deep copies (it adds keys
to the dicts it is given) and its prints are silenced.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math

import numpy as np
import pytest

from benchmarks import coco_data
from conftest import needs_gpu
from fastiou import coco, rle

pytest.importorskip("pycocotools")
from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402


def reference(gt, results, iou_type="bbox", params=None):
    gt, results = copy.deepcopy(gt), copy.deepcopy(results)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        c = COCO()
        c.dataset = gt
        c.createIndex()
        e = COCOeval(c, c.loadRes(results), iou_type)
        for name, value in (params or {}).items():
            setattr(e.params, name, np.asarray(value) if name in ("iouThrs", "recThrs") else value)
        e.evaluate()
        e.accumulate()
        e.summarize()
    e.printed = [line for line in out.getvalue().splitlines() if "Average" in line]
    return e


def assert_same(result, ref):
    for name in ("precision", "recall", "scores"):
        mine, theirs = getattr(result, name), ref.eval[name]
        assert mine.shape == theirs.shape, name
        assert mine.dtype == np.float64
        bad = np.argwhere(mine != theirs)
        assert bad.size == 0, f"{name} differs at {bad[:3].tolist()}"
    np.testing.assert_allclose(result.stats, ref.stats, rtol=0, atol=1e-12)


def compare(gt, results, iou_type="bbox", params=None):
    result = coco.evaluate(gt, results, iou_type, params=params)
    ref = reference(gt, results, iou_type, params)
    assert_same(result, ref)
    return result, ref


# --------------------------------------------------------------------------------------------
# Generated datasets


@pytest.mark.parametrize("seed, categories", [(0, 80), (1, 80), (2, 10), (3, 5)])
def test_generated_bbox(seed, categories):
    gt, results = coco_data.make(seed, 40, categories=categories)
    result, ref = compare(gt, results)
    assert result.stats[0] > 0.1  # a dataset that exercises the matching


@pytest.mark.parametrize("seed, categories", [(10, 80), (11, 8)])
def test_generated_segm(seed, categories):
    gt, results = coco_data.make(seed, 25, segm=True, categories=categories)
    result, _ = compare(gt, results, "segm")
    assert result.stats[0] > 0.1


@pytest.mark.parametrize("params", [
    {"useCats": 0},
    {"maxDets": [1, 5, 20]},
    {"maxDets": [100, 3, 10]},  # sorted, as COCOeval does
    {"iouThrs": [0.3, 0.5, 0.75, 1.0]},
    {"recThrs": [0.0, 0.25, 0.5, 0.51, 1.0]},
    {"areaRng": [[0, 1e10], [0, 1024], [1024, 9216], [9216, 1e10], [500, 2000]],
     "areaRngLbl": ["all", "small", "medium", "large", "mid"]},
])
def test_generated_params(params):
    gt, results = coco_data.make(4, 30)
    compare(gt, results, params=params)


@pytest.mark.parametrize("params", [
    {"iouThrs": [0.9, 0.1, 0.5, 0.5, 0.75, 0.3]},  # unsorted, repeated
    {"iouThrs": np.linspace(0.05, 0.95, 19), "useCats": 0},
    {"areaRng": [[0, 1e10], [0, 400], [400, 1e10], [0, 1e10]],
     "areaRngLbl": ["all", "small", "medium", "large"], "maxDets": [0, 10, 100]},
])
def test_generated_crowded_params(params):
    """Many crowd regions and overlapping objects: detections with several candidates, crowd
    regions taken again and again, area ranges matched apart and ranges that reuse range 0's
    matches."""
    gt, results = coco_data.make(6, 30, crowd=30, categories=5)
    compare(gt, results, params=params)


def test_generated_subsets():
    gt, results = coco_data.make(5, 30)
    img_ids = [im["id"] for im in gt["images"]][::3] + [10**9]  # an id without an image
    cat_ids = [c["id"] for c in gt["categories"]][:20] + [999]  # a category only in the results
    compare(gt, results, params={"imgIds": img_ids, "catIds": cat_ids})
    compare(gt, results, params={"catIds": cat_ids[::-1], "useCats": 0})


def test_group_and_score_orders_are_lexsorts():
    """The compiled orderings (radix and bucket passes) against np.lexsort, the plain
    definition: ties, -0.0 with 0.0, infinities, tiny and huge scores, entries left out."""
    from fastiou.backends.numba_cpu import coco as kernels

    rng = np.random.default_rng(7)
    values = np.array([0.0, -0.0, 1.5, -2.0, 0.25, 1e-300, -1e-300, 5e300, np.inf, -np.inf])
    for trial in range(20):
        n = int(rng.integers(0, 400))
        n_cat, n_img = int(rng.integers(1, 9)), int(rng.integers(1, 30))
        s = rng.choice(values, n) if trial % 2 else np.round(rng.normal(size=n), 1)
        cat, img = rng.integers(-1, n_cat, n), rng.integers(-1, n_img, n)
        k = np.maximum(cat, 0)
        np.testing.assert_array_equal(kernels.score_order(k, n_cat, s), np.lexsort((-s, k)))
        sel = np.flatnonzero((img >= 0) & (cat >= 0))
        for use_cats in (True, False):
            group = cat[sel] * n_img + img[sel] if use_cats else img[sel]
            sub = np.zeros_like(sel) if use_cats else cat[sel]
            for score in (s, None):
                keys = (sel, sub, group) if score is None else (sel, sub, -s[sel], group)
                got = kernels.group_order(img, cat, n_img, n_cat, use_cats, score)
                np.testing.assert_array_equal(got, sel[np.lexsort(keys)])


def test_polygons_read_in_bulk_equal_one_at_a_time():
    gt, _ = coco_data.make(12, 8, segm=True)
    segms = [a["segmentation"] for a in gt["annotations"]]
    segms[3] = segms[3] + [[1, 2.5, 30, 4, 5, 60]]  # ints and floats, two polygons
    where = list(range(len(segms)))
    fast = coco._simple_polygons(segms, where)
    assert fast is not None
    for a, b in zip(fast, coco._general_polygons(segms, where, "gt")):
        np.testing.assert_array_equal(a, b)
    # anything else goes to the general reader (which applies pycocotools' rules or explains)
    for odd in ([[1, 2, 3, 4, 5, 6, 7]], [[1, 2, 3, 4]], [[True, 2, 3, 4, 5, 6]],
                [["1", 2, 3, 4, 5, 6]], [[1, 2, 3, 4, 5, np.float64(6)]], [1, 2, 3, 4, 5, 6],
                [], [[1, 2, 3, 4, 5, 2.0**60]], [[1, 2, 3, 4, 5, float("nan")]],
                ([1, 2, 3, 4, 5, 6],)):
        assert coco._simple_polygons(segms[:2] + [odd], [0, 1, 2]) is None, odd


# --------------------------------------------------------------------------------------------
# Hand-made edge cases


def edge_case():
    """Crowd regions, an image without ground truth, one without detections, a category without
    ground truth, detections of a category the ground truth lacks, score ties, areas exactly on
    32**2 and 96**2, an object with id 0, more detections than maxDets in one image."""
    images = [{"id": i, "width": 200, "height": 160} for i in (3, 7, 9, 12)]
    cats = [{"id": c, "name": n} for c, n in ((1, "cat"), (2, "dog"), (5, "never"))]
    a = [
        (0, 3, 1, [10, 10, 32, 32], 1024.0, 0),   # area exactly 32**2
        (2, 3, 1, [50, 50, 96, 96], 9216.0, 0),   # exactly 96**2
        (3, 3, 1, [0, 0, 150, 150], 20000.0, 1),  # crowd
        (4, 3, 2, [100, 20, 40, 30], 1023.5, 0),
        (5, 7, 1, [20, 20, 60, 60], 3000.0, 0),
        (6, 7, 2, [22, 20, 60, 60], 3000.0, 0),
        (8, 9, 2, [5, 5, 10, 10], 80.0, 0),        # image 9: no detections
        (9, 7, 1, [20, 20, 61, 60], 3000.0, 0),    # equal-IoU neighbour of object 5
    ]
    anns = [{"id": i, "image_id": im, "category_id": c, "bbox": b, "area": ar, "iscrowd": cr}
            for i, im, c, b, ar, cr in a]
    res = [
        (3, 1, [10, 10, 32, 32], 0.9), (3, 1, [11, 10, 32, 32], 0.9),
        (3, 1, [60, 60, 20, 20], 0.5), (3, 1, [52, 50, 96, 96], 0.5), (3, 1, [5, 5, 50, 50], 0.4),
        (3, 2, [100, 20, 40, 30], 0.8), (3, 2, [101, 20, 40, 30], 0.8),
        (7, 1, [20, 20, 60, 60], 0.7), (7, 1, [21, 20, 60, 60], 0.7),
        (7, 2, [20, 20, 60, 60], 0.7), (7, 999, [20, 20, 60, 60], 0.99),
        (12, 1, [0, 0, 10, 10], 0.6), (12, 5, [0, 0, 10, 10], 0.6),
        (3, 1, [0, 0, 32, 32], 0.3), (3, 1, [10, 10, 31.5, 32], 0.3),
    ] + [(7, 2, [20 + k, 20, 60, 60], 0.2) for k in range(12)]  # image 7, dog: past maxDets 10
    results = [{"image_id": im, "category_id": c, "bbox": b, "score": s} for im, c, b, s in res]
    return {"images": images, "annotations": anns, "categories": cats}, results


EDGE_PARAMS = [
    None,
    {"useCats": 0},
    {"maxDets": [1, 2, 10]},
    {"iouThrs": [0.5, 0.9, 1.0]},
    {"areaRng": [[0, 1e10], [1024, 1024], [1024, 9216]], "areaRngLbl": ["all", "small", "big"]},
    {"catIds": [1, 5], "imgIds": [3, 12]},
]


@pytest.mark.parametrize("params", EDGE_PARAMS)
def test_edge_cases_bbox(params):
    gt, results = edge_case()
    compare(gt, results, params=params)


def _square(x, y, s):
    return [[x, y, x + s, y, x + s, y + s, x, y + s]]


def _as_json_rle(m):
    return {"size": m["size"], "counts": m["counts"].decode("ascii")}


def segm_edge_case():
    """Polygon, uncompressed-RLE and compressed-RLE ground truth; RLE results."""
    gt, _ = edge_case()
    for ann in gt["annotations"]:
        x, y, w, h = ann["bbox"]
        ann["segmentation"] = [[x, y, x + w, y, x + w, y + h * 0.7, x, y + h]]
    mask = np.zeros((160, 200), dtype=bool)
    mask[10:60, 30:70] = True
    gt["annotations"][4]["segmentation"] = rle.encode(mask)  # compressed (bytes)
    dense = rle.decode(rle.from_polygons(_square(50, 50, 96)[0], 160, 200))
    counts = np.diff(np.flatnonzero(np.diff(np.r_[0, dense.T.reshape(-1), 2]) != 0), prepend=0)
    gt["annotations"][1]["segmentation"] = {"size": [160, 200], "counts": [int(c) for c in counts]}
    gt["annotations"][5]["segmentation"] = _square(22, 20, 30) + _square(40, 45, 30)  # 2 parts
    results = []
    rng = np.random.default_rng(3)
    for k, (im, cat) in enumerate([(3, 1), (3, 1), (3, 2), (7, 1), (7, 1), (7, 2), (7, 999),
                                   (12, 1), (3, 1)]):
        x, y = (10, 10) if im == 3 else (20, 20)
        s = 32 + int(rng.integers(0, 40))
        poly = _square(x + k % 3, y, s)
        results.append({"image_id": im, "category_id": cat, "score": [0.9, 0.9, 0.5][k % 3],
                        "segmentation": _as_json_rle(rle.from_polygons(poly, 160, 200))})
    return gt, results


@pytest.mark.parametrize("params", [None, {"useCats": 0}, {"maxDets": [1, 2, 10]}])
def test_edge_cases_segm(params):
    gt, results = segm_edge_case()
    compare(gt, results, "segm", params)


def test_segm_results_with_boxes_take_the_box_area():
    """loadRes: a first result with a bbox sends every result down the boxes route (area w * h);
    a result without segmentation is then its box's polygon."""
    gt, results = segm_edge_case()
    for r in results:
        r["bbox"] = [10.0, 10.0, 40.0, 40.0]
    del results[2]["segmentation"]
    compare(gt, results, "segm")


def test_bbox_evaluation_of_mask_results():
    """Results with masks only: for iou_type bbox, their boxes come from the masks (toBbox)."""
    gt, results = segm_edge_case()
    results[1]["bbox"] = [12.0, 10.0, 30.0, 30.0]  # kept where given
    compare(gt, results, "bbox")


def test_polygon_and_uncompressed_results_equal_their_rle():
    """pycocotools only reads compressed RLE results; ours accepts the other forms too and
    gives what the compressed equivalent gives."""
    gt, results = segm_edge_case()
    other = copy.deepcopy(results)
    other[0]["segmentation"] = _square(10, 10, 40)
    results[0]["segmentation"] = _as_json_rle(rle.from_polygons(_square(10, 10, 40), 160, 200))
    runs = rle.decode(results[1]["segmentation"])
    counts = np.diff(np.flatnonzero(np.diff(np.r_[0, runs.T.reshape(-1), 2]) != 0), prepend=0)
    other[1]["segmentation"] = {"size": [160, 200], "counts": [int(c) for c in counts]}
    mine = coco.evaluate(gt, other, "segm")
    assert_same(mine, reference(gt, results, "segm"))


def test_short_later_polygons_and_odd_lengths_as_pycocotools():
    """frPyObjects: after the first polygon, lists of fewer than 3 points are empty and an odd
    last number is dropped; pycocotools accepts these, and so must we, identically."""
    gt, results = segm_edge_case()
    anns = gt["annotations"]
    anns[0]["segmentation"] = anns[0]["segmentation"] + [[2, 3, 10, 5]]
    anns[2]["segmentation"] = anns[2]["segmentation"] + [[1, 2], []]
    anns[3]["segmentation"] = [anns[3]["segmentation"][0] + [7.5]] + [[1, 2, 3, 4, 5]]
    anns[6]["segmentation"] = [[1, 2, 30, 4, 5]]  # 2 points: an empty mask
    anns[7]["segmentation"] = [[1, 2, 30, 4, 5], [1, 2], anns[7]["segmentation"][0]]
    compare(gt, results, "segm")


def _pycocotools_box_route(segm, h, w):
    from pycocotools import mask as mask_utils

    m = mask_utils.merge(mask_utils.frPyObjects(np.asarray(segm, dtype=np.float64), h, w))
    return _as_json_rle(m)


def test_polygons_of_four_numbers_are_boxes():
    """frPyObjects reads a list whose first polygon has 4 numbers as boxes [x, y, w, h]
    (pycocotools 2.0.11 then fails on a list, it takes only an array): ours gives what its box
    route gives for the same numbers, in ground truth and in results."""
    gt, results = segm_edge_case()
    for r in results:
        r["bbox"] = [10.0, 10.0, 40.0, 40.0]
    ours_gt, ours_res = copy.deepcopy(gt), copy.deepcopy(results)
    boxes = {0: [[5.5, 7.25, 40.0, 30.5]], 2: [[10, 12, 30, 44], [30, 40, 20.5, 9]]}
    for i, segm in boxes.items():
        ours_gt["annotations"][i]["segmentation"] = segm
        gt["annotations"][i]["segmentation"] = _pycocotools_box_route(segm, 160, 200)
    ours_res[1]["segmentation"] = [[12.5, 9.0, 35.0, 41.0]]
    results[1]["segmentation"] = _pycocotools_box_route([[12.5, 9.0, 35.0, 41.0]], 160, 200)
    ours_res[4]["segmentation"] = [20.0, 20.0, 44.0, 30.0]  # a flat list of 4: one box
    results[4]["segmentation"] = _pycocotools_box_route([[20.0, 20.0, 44.0, 30.0]], 160, 200)
    assert_same(coco.evaluate(ours_gt, ours_res, "segm"), reference(gt, results, "segm"))
    ours_gt["annotations"][2]["segmentation"] = [[10, 12, 30, 44], [1, 2, 3, 4, 5, 6]]
    with pytest.raises(ValueError, match=r"\['annotations'\]\[2\] 'segmentation' must be a list "
                       "of boxes"):
        coco.evaluate(ours_gt, ours_res, "segm")


def test_empty_results_warn_and_give_zero_or_minus_one():
    gt, _ = edge_case()
    with pytest.warns(UserWarning, match="results are empty"):
        result = coco.evaluate(gt, [])
    # pycocotools raises on []; one detection it never evaluates gives its algorithm's answer
    ref = reference(gt, [{"image_id": 3, "category_id": 999, "bbox": [0, 0, 1, 1], "score": 1}])
    assert_same(result, ref)
    k = list(result.category_ids).index(5)  # no ground truth: -1
    assert (result.precision[:, :, k] == -1).all()
    assert (result.precision[:, :, list(result.category_ids).index(1), 0] == 0).all()


def test_inputs_are_not_modified():
    for iou_type, (gt, results) in (("bbox", edge_case()), ("segm", segm_edge_case())):
        before = copy.deepcopy((gt, results))
        coco.evaluate(gt, results, iou_type)
        assert (gt, results) == before


def test_every_backend_name_evaluates_on_the_host():
    gt, results = edge_case()
    ref = reference(gt, results)
    for backend in ("numba", "jax", "cupy"):
        assert_same(coco.evaluate(gt, results, backend=backend), ref)


def test_files(tmp_path):
    gt, results = edge_case()
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "res.json").write_text(json.dumps(results))
    from_files = coco.evaluate(str(tmp_path / "gt.json"), tmp_path / "res.json")
    assert_same(from_files, reference(gt, results))


def test_summary_table_and_dict():
    gt, results = coco_data.make(6, 20)
    result, ref = compare(gt, results)
    lines = result.table().splitlines()
    assert lines[:12] == ref.printed
    assert any(line.startswith(" class") for line in lines[12:])
    d = result.to_dict()
    json.dumps(d)
    assert d["stats"]["AP"] == result.stats[0] and len(d["stats"]) == 12
    # per-category AP is the mean of that category's precision (area all, largest maxDets)
    for k, c in enumerate(result.category_ids):
        s = ref.eval["precision"][:, :, k, 0, -1]
        want = np.mean(s[s > -1]) if (s > -1).any() else -1.0
        assert result.per_category_ap[int(c)] == want


def test_matches_are_pycocotools_pairs():
    gt, results = coco_data.make(7, 20)
    result, ref = compare(gt, results)
    pairs = result.matches(0.5)
    got = set(zip((pairs["result_index"] + 1).tolist(), pairs["gt_id"].tolist()))
    want = set()
    for e in ref.evalImgs:  # area range 'all' comes first for each category
        if e is None or e["aRng"] != ref.params.areaRng[0]:
            continue
        for d, g, ign in zip(e["dtIds"], e["dtMatches"][0], e["dtIgnore"][0]):
            if g > 0 and not ign:
                want.add((d, int(g)))
    assert got == want and len(got) > 10
    assert ((pairs["iou"] >= 0.5) & (pairs["iou"] <= 1)).all()
    with pytest.raises(ValueError, match="iou_threshold"):
        result.matches(0.51)


def _reference_object_report(ref):
    """Per-object IoU at 0.5 from pycocotools: evalImgs' gtMatches at t = 0 (area 'all', the
    largest maxDets) and computeIoU's values; non-crowd objects, missed ones 0."""
    assert ref.params.iouThrs[0] == 0.5
    ious = {}
    for e in ref.evalImgs:
        if e is None or e["aRng"] != ref.params.areaRng[0]:
            continue
        key = (e["image_id"], e["category_id"])
        block = ref.ious[key]
        columns = {g["id"]: j for j, g in enumerate(ref._gts[key])}
        for gid, m, ign in zip(e["gtIds"], e["gtMatches"][0], e["gtIgnore"]):
            if ign:
                continue
            ious[gid] = 0.0
            if m > 0:
                ious[gid] = float(block[e["dtIds"].index(int(m)), columns[gid]])
    return ious


def test_object_report_from_pycocotools_matches():
    gt, results = coco_data.make(8, 30, categories=12)
    result, ref = compare(gt, results)
    want = _reference_object_report(ref)
    r = result.object_report
    got = dict(zip(r.per_object["gt_id"].tolist(), r.per_object["iou"].tolist()))
    assert got.keys() == want.keys() and len(got) > 50
    for gid, v in want.items():
        assert got[gid] == v, gid
    values = np.array(list(want.values()))
    assert result.mean_iou == pytest.approx(values.mean(), rel=1e-12, abs=0)
    expect_grade = ("excellent" if values.mean() > 0.95 else "good" if values.mean() > 0.7
                    else "poor")
    assert result.grade == r.grade == expect_grade
    matched = np.array([gid for gid in want if want[gid] > 0])
    assert r.num_matched == matched.size
    assert r.counts["excellent"] == int((values > 0.95).sum())
    assert r.counts["good"] == int(((values > 0.7) & (values <= 0.95)).sum())
    assert r.counts["missed"] == len(values) - matched.size
    # the pairs of matches(0.5) are the same objects
    assert sorted(result.matches(0.5)["gt_id"].tolist()) == sorted(matched.tolist())
    line = result.table().splitlines()[12]
    assert line.startswith(" Mean IoU per object") and r.grade in line
    d = result.to_dict()["object_report"]
    json.dumps(d)
    assert d["mean_iou"] == result.mean_iou and d["counts"] == r.counts


def test_object_report_segm_and_without_threshold_half():
    gt, results = segm_edge_case()
    result, ref = compare(gt, results, "segm")
    want = _reference_object_report(ref)
    got = dict(zip(result.object_report.per_object["gt_id"].tolist(),
                   result.object_report.per_object["iou"].tolist()))
    assert got == want
    other = coco.evaluate(gt, results, "segm", params={"iouThrs": [0.75]})
    assert other.object_report is None and other.grade == "undefined"
    assert len(other.table().splitlines()) >= 12 and other.to_dict()["object_report"] is None


def _dense_case(seed=12, images=12):
    """Per-image dense masks (NumPy) and the same masks as pycocotools-encoded COCO results."""
    from pycocotools import mask as mask_utils

    gt, results = coco_data.make(seed, images, segm=True, categories=6)
    size = {im["id"]: (im["height"], im["width"]) for im in gt["images"]}
    rng = np.random.default_rng(seed)
    dense, coco_results = {}, []
    for im in gt["images"]:
        rs = [r for r in results if r["image_id"] == im["id"]]
        h, w = size[im["id"]]
        masks = np.zeros((len(rs), h, w), dtype=np.uint8 if im["id"] % 2 else bool)
        for k, r in enumerate(rs):
            masks[k] = rle.decode(r["segmentation"])
        scores = np.array([r["score"] for r in rs], dtype=np.float64)
        labels = np.array([r["category_id"] for r in rs], dtype=np.int64)
        if len(rs) > 1 and rng.random() < 0.5:
            scores[1] = scores[0]  # a tie, kept in mask order
        dense[im["id"]] = {"masks": masks, "scores": scores, "labels": labels}
        fortran = np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8))  # (H, W, N)
        for m, s, c in zip(mask_utils.encode(fortran) if len(rs) else [],
                           scores.tolist(), labels.tolist()):
            coco_results.append({"image_id": im["id"], "category_id": c, "score": s,
                                 "segmentation": _as_json_rle(m)})
    return gt, dense, coco_results


def test_dense_numpy_masks_equal_their_pycocotools_encoding():
    gt, dense, coco_results = _dense_case()
    assert len(coco_results) > 20
    before = copy.deepcopy(dense)
    ref = reference(gt, coco_results, "segm")
    for form in (dense, [{"image_id": k, **v} for k, v in dense.items()]):
        result = coco.evaluate(gt, form, "segm")
        assert_same(result, ref)
        assert result.stats[0] > 0.1
        mine = coco.evaluate(gt, coco_results, "segm").matches(0.5)
        for key, value in result.matches(0.5).items():
            np.testing.assert_array_equal(value, mine[key])
    for k, v in dense.items():  # not modified
        for name in v:
            np.testing.assert_array_equal(v[name], before[k][name])
    assert_same(coco.evaluate(gt, dense, "bbox"), reference(gt, coco_results, "bbox"))


def test_dense_jax_masks_are_read_on_the_host():
    jnp = pytest.importorskip("jax.numpy")
    gt, dense, coco_results = _dense_case(14, 6)
    on_jax = {k: {name: jnp.asarray(a) for name, a in v.items()} for k, v in dense.items()}
    # without x64, JAX holds the scores as float32: the reference gets the same values
    scores = np.concatenate([np.asarray(v["scores"], dtype=np.float64) for v in on_jax.values()])
    for r, score in zip(coco_results, scores.tolist()):
        r["score"] = score
    assert_same(coco.evaluate(gt, on_jax, "segm"), reference(gt, coco_results, "segm"))


def _small_dense_case(seed=0):
    """Small images (cheap under the CUDA harness): polygon and RLE ground truth with a crowd
    region, an image without ground truth and one without detections, a category only among the
    detections, score ties, masks of several dtypes (one strided); the dense results and their
    pycocotools encoding."""
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(seed)
    sizes = {3: (24, 70), 7: (17, 130), 11: (9, 9), 20: (30, 40), 21: (12, 65)}
    gt = {"images": [{"id": i, "height": h, "width": w} for i, (h, w) in sizes.items()],
          "categories": [{"id": c, "name": f"c{c}"} for c in (1, 2, 5)], "annotations": []}

    def blob(h, w):
        m = np.zeros((h, w), dtype=bool)
        y0, x0 = rng.integers(0, h - 2), rng.integers(0, w - 2)
        m[y0:y0 + rng.integers(2, h // 2 + 3), x0:x0 + rng.integers(2, w // 2 + 3)] = True
        return m & (rng.random((h, w)) < 0.9)

    dense, coco_results = {}, []
    for image_id, (h, w) in sizes.items():
        objects = [] if image_id == 11 else [blob(h, w) for _ in range(rng.integers(2, 5))]
        cats = rng.choice([1, 2, 5], len(objects))
        for k, m in enumerate(objects):
            crowd = int(image_id == 3 and k == 0)
            if k % 2 and not crowd:
                ys, xs = np.nonzero(m)
                x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
                segmentation = [[float(x0), float(y0), float(x1), float(y0), float(x1),
                                 float(y1), float(x0), float(y1)]]
            else:
                segmentation = _as_json_rle(rle.encode(m[None])[0])
            gt["annotations"].append({
                "id": len(gt["annotations"]) + 1, "image_id": image_id,
                "category_id": int(cats[k]), "iscrowd": crowd,
                "area": float(m.sum()) if crowd or k % 2 == 0 else float(rng.uniform(8, 400)),
                "bbox": rle.to_bbox(rle.encode(m[None]))[0].tolist(),
                "segmentation": segmentation})
        if image_id == 20:
            continue
        found = [np.roll(m, rng.integers(-1, 2, 2), axis=(0, 1)) for m in objects]
        masks = np.array(found + [blob(h, w) for _ in range(rng.integers(1, 4))])
        masks[-1] = False  # an empty detection
        n = masks.shape[0]
        scores = np.round(rng.uniform(0, 1, n), 1)  # ties
        labels = np.concatenate([cats, rng.choice([1, 2, 5, 9], n - len(objects))])
        labels[rng.random(n) < 0.15] = 9  # a category not in the ground truth
        dtype = (bool, np.uint8, np.int32, np.int64)[image_id % 4]
        dense[image_id] = {"masks": masks.astype(dtype), "scores": scores, "labels": labels}
        fortran = np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8))
        for m, sc, c in zip(mask_utils.encode(fortran), scores.tolist(), labels.tolist()):
            coco_results.append({"image_id": image_id, "category_id": c, "score": sc,
                                 "segmentation": _as_json_rle(m)})
    # strided masks (a transposed view) are read as they are
    first = next(iter(dense))
    dense[first]["masks"] = np.ascontiguousarray(
        dense[first]["masks"].transpose(0, 2, 1)).transpose(0, 2, 1)
    assert not dense[first]["masks"].flags.c_contiguous
    return gt, dense, coco_results


@pytest.mark.parametrize("iou_type, params", [
    ("segm", None), ("segm", {"useCats": 0, "areaRng": [[0, 1e5], [0, 60], [60, 1e5]],
                              "areaRngLbl": ["all", "small", "large"]}),
    ("bbox", {"maxDets": [1, 3, 100]}),
])
def test_dense_masks_on_the_cuda_engine_under_the_harness(iou_type, params):
    """backend="cupy": masks packed, counted and intersected by the CUDA kernels (on the CPU
    harness), the IoU from their exact counts in float64: bit-identical to the host path and to
    pycocotools."""
    from cuda_harness import harness_runtime

    gt, dense, coco_results = _small_dense_case()
    before = copy.deepcopy(dense)
    ref = reference(gt, coco_results, iou_type, params)
    host = coco.evaluate(gt, dense, iou_type, params=params)
    assert_same(host, ref)
    rt = harness_runtime()
    launched_before = dict(rt.launches)
    with rt.session():
        on_device = coco.evaluate(gt, dense, iou_type, params=params, backend="cupy")
    assert_same(on_device, ref)
    for key, value in host.matches(0.5).items():
        np.testing.assert_array_equal(on_device.matches(0.5)[key], value)
    launched = {k for k, v in rt.launches.items() if v > launched_before.get(k, 0)}
    kernel = ("fastiou::mask_segment_counts<long long>" if iou_type == "segm"
              else "fastiou::mask_boxes<float>")
    assert any(kernel in k for k in map(str, launched)), launched
    assert ref.stats[1] > 0.1 and any(a["iscrowd"] for a in gt["annotations"])
    for k, v in dense.items():  # not modified
        for name in v:
            np.testing.assert_array_equal(v[name], before[k][name])


def test_dense_masks_on_the_cuda_engine_check_their_size():
    from cuda_harness import harness_runtime

    gt, dense, _ = _small_dense_case()
    dense[7]["masks"] = dense[7]["masks"][:, :, :-1]
    with harness_runtime().session(), pytest.raises(
            ValueError, match=r"results\[7\] 'masks' have the size \[17, 129\], its image "
                              r"\(id 7\) has \[17, 130\]"):
        coco.evaluate(gt, dense, "segm", backend="cupy")
    dense[99] = dense.pop(7)
    with harness_runtime().session(), pytest.raises(ValueError, match="names the image id 99"):
        coco.evaluate(gt, dense, "segm", backend="cupy")


@needs_gpu
def test_dense_cupy_masks_are_evaluated_on_the_gpu():
    import cupy

    for gt, dense, coco_results in (_dense_case(15, 6), _small_dense_case(1)):
        on_gpu = {k: {name: cupy.asarray(a) for name, a in v.items()} for k, v in dense.items()}
        for iou_type in ("segm", "bbox"):
            assert_same(coco.evaluate(gt, on_gpu, iou_type),
                        reference(gt, coco_results, iou_type))
        mixed = dict(on_gpu)
        first = next(iter(mixed))
        mixed[first] = dense[first]
        with pytest.raises(TypeError, match="mix mask array types"):
            coco.evaluate(gt, mixed, "segm")


@pytest.mark.parametrize("change, message", [
    (lambda d, k: d[k].update(masks=np.zeros((2, 3))), r"results\[{k}\] 'masks' must be a bool or "
     r"integer \(N, H, W\) array, got shape \(2, 3\)"),
    (lambda d, k: d[k].update(masks=d[k]["masks"].astype(np.float32)), "'masks' must be a bool"),
    (lambda d, k: d[k].update(scores=d[k]["scores"][:1]),
     r"results\[{k}\] 'scores' must be 2 finite"),
    (lambda d, k: d[k].update(labels=d[k]["labels"].astype(float)), r"'labels' must be 2 int"),
    (lambda d, k: d[k].pop("labels"), r"results\[{k}\] must be a dict with 'masks'"),
    (lambda d, k: d.update({999: d[k]}), "names the image id 999"),
])
def test_bad_dense_masks(change, message):
    gt, dense, _ = _dense_case(13, 4)
    k = next(iter(dense))
    dense[k]["masks"] = np.zeros((2, *dense[k]["masks"].shape[1:]), dtype=bool)
    dense[k]["scores"] = np.array([0.5, 0.4])
    dense[k]["labels"] = np.array([1, 2])
    change(dense, k)
    with pytest.raises(ValueError, match=message.format(k=k)):
        coco.evaluate(gt, dense, "segm")
    with pytest.raises(ValueError, match=r"results\[0\] must be a dict with 'image_id'"):
        coco.evaluate(gt, [{"masks": dense[k]["masks"]}], "segm")


def test_progress_callback_and_no_output(capsys):
    gt, results = edge_case()
    seen = []
    coco.evaluate(gt, results, progress=lambda *args: seen.append(args))
    assert [s for s, _, _ in seen] == list(coco.STAGES) and seen[-1][1:] == (4, 4)
    assert capsys.readouterr() == ("", "")


def test_progress_bar_on_stderr_only(capsys):
    pytest.importorskip("tqdm")
    gt, results = edge_case()
    coco.evaluate(gt, results, progress=True)
    assert capsys.readouterr().out == ""


def test_short_max_dets_give_minus_one_where_pycocotools_raises():
    gt, results = edge_case()
    result = coco.evaluate(gt, results, params={"maxDets": [1, 10]})
    ref = reference(gt, results, params={"maxDets": [1, 10, 99]})  # same arrays for m < 2
    np.testing.assert_array_equal(result.precision, ref.eval["precision"][..., :2])
    assert result.stats[1] == -1 and result.stats[8] == -1 and result.stats[6] == ref.stats[6]


@pytest.mark.parametrize("labels, max_dets", [
    (["all", "tiny", "huge"], [100, 100, 100]), (["all", "small", "huge"], [1, 100, 100]),
])
def test_area_labels_without_small_medium_large_give_minus_one(labels, max_dets):
    """pycocotools' summarize raises IndexError here; its precision and recall are still
    computed: the stats whose area label is present are their plain means, the others -1."""
    gt, results = edge_case()
    params = {"areaRng": [[0, 1e10], [0, 100], [100, 1e10]], "areaRngLbl": labels,
              "maxDets": max_dets}
    result = coco.evaluate(gt, results, params=params)
    gt_copy, res_copy = copy.deepcopy(gt), copy.deepcopy(results)
    with contextlib.redirect_stdout(io.StringIO()):
        c = COCO()
        c.dataset = gt_copy
        c.createIndex()
        e = COCOeval(c, c.loadRes(res_copy), "bbox")
        e.params.areaRng, e.params.areaRngLbl, e.params.maxDets = (
            params["areaRng"], labels, max_dets)
        e.evaluate()
        e.accumulate()
        with pytest.raises(IndexError):
            e.summarize()
    precision, recall = e.eval["precision"], e.eval["recall"]
    np.testing.assert_array_equal(result.precision, precision)
    np.testing.assert_array_equal(result.recall, recall)

    def mean(values):
        values = values[values > -1]
        return -1.0 if values.size == 0 else float(np.mean(values))

    expected = np.full(12, -1.0)
    a_all = labels.index("all")
    top = [m for m, v in enumerate(max_dets) if v == max_dets[2]]
    thr = {0.5: 0, 0.75: 5}
    expected[0] = mean(precision[:, :, :, a_all][..., [m for m, v in enumerate(max_dets)
                                                      if v == 100]])
    expected[1] = mean(precision[thr[0.5], :, :, a_all][..., top])
    expected[2] = mean(precision[thr[0.75], :, :, a_all][..., top])
    for i, k in ((6, 0), (7, 1), (8, 2)):
        expected[i] = mean(recall[:, :, a_all][..., [m for m, v in enumerate(max_dets)
                                                     if v == max_dets[k]]])
    if "small" in labels:
        expected[3] = mean(precision[:, :, :, labels.index("small")][..., top])
        expected[9] = mean(recall[:, :, labels.index("small")][..., top])
    np.testing.assert_allclose(result.stats, expected, rtol=0, atol=1e-12)
    assert (result.stats[[4, 5, 10, 11]] == -1).all() and (result.stats[[0, 6]] > 0).all()


# --------------------------------------------------------------------------------------------
# Bad input: a ValueError naming the function, the file or argument, the entry and the field


def _bad_results():
    good = {"image_id": 3, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.5}
    rows = [
        ("unknown image", {"image_id": 4}, r"results\[1\] names the image id 4"),
        ("short box", {"bbox": [1, 2, 3]}, r"results\[1\] 'bbox' must be 4 finite"),
        ("NaN box", {"bbox": [1, 2, math.nan, 4]}, r"results\[1\] 'bbox' must be 4 finite"),
        ("text box", {"bbox": [1, 2, "3", 4]}, r"results\[1\] 'bbox' must be 4 finite"),
        ("no score", {"score": None}, r"results\[1\] has no 'score'"),
        ("NaN score", {"score": math.nan}, r"results\[1\] 'score' must be a finite number"),
        ("float image id", {"image_id": 3.0}, r"results\[1\] 'image_id' must be an integer"),
    ]
    out = []
    for name, change, msg in rows:
        bad = {**good, **change}
        bad = {k: v for k, v in bad.items() if v is not None}
        out.append(pytest.param([good, bad, good], "bbox", msg, id=name))
    seg = {"image_id": 3, "category_id": 1, "score": 0.5,
           "segmentation": _as_json_rle(rle.from_polygons(_square(3, 4, 20), 160, 200))}
    for name, s, msg in [
        ("bad RLE string", {"size": [160, 200], "counts": "!!"},
         r"results\[1\] 'segmentation' has a character outside"),
        ("RLE runs too long", {"size": [160, 200], "counts": [40000]},
         r"results\[1\] 'segmentation' has a run length, or a running total of run lengths, past"),
        ("RLE of another size", {"size": [10, 10], "counts": [100]},
         r"results\[1\] 'segmentation' has the size \[10, 10\], its image has \[160, 200\]"),
        ("bad polygon", [[1, 2, 3]], r"results\[1\] 'segmentation' must be a list of polygons"),
        ("segmentation not a dict", 5, r"results\[1\] 'segmentation' must be polygons"),
    ]:
        out.append(pytest.param([seg, {**seg, "segmentation": s}], "segm", msg, id=name))
    out.append(pytest.param([seg, {"image_id": 3, "category_id": 1, "score": 0.5}], "segm",
                            r"results\[1\] has no 'segmentation'", id="no segmentation"))
    out.append(pytest.param([good, [1, 2]], "bbox", r"results\[1\] must be a dict",
                            id="not a dict"))
    out.append(pytest.param({"a": 1}, "bbox", r"results must be a list", id="not a list"))
    return out


@pytest.mark.parametrize("results, iou_type, message", _bad_results())
def test_bad_results(results, iou_type, message):
    gt, _ = segm_edge_case()
    with pytest.raises(ValueError, match=f"coco.evaluate: {message}"):
        coco.evaluate(gt, results, iou_type)


ANNS = r"gt\['annotations'\]"


@pytest.mark.parametrize("change, message", [
    (lambda g: g["annotations"][2].pop("area"), ANNS + r"\[2\] has no 'area'"),
    (lambda g: g["annotations"][3].update(id=0), ANNS + r"\[3\] repeats the annotation id 0"),
    (lambda g: g["annotations"][1].update(image_id=99), ANNS + r"\[1\] names the image id 99"),
    (lambda g: g["annotations"][1].update(bbox=[1, 2]), ANNS + r"\[1\] 'bbox' must be 4 finite"),
    (lambda g: g["images"][0].pop("id"), r"gt\['images'\]\[0\] has no 'id'"),
])
def test_bad_ground_truth(change, message):
    gt, results = edge_case()
    change(gt)
    with pytest.raises(ValueError, match=f"coco.evaluate: {message}"):
        coco.evaluate(gt, results)


def test_bad_files_name_the_file(tmp_path):
    gt, results = edge_case()
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    results[4]["bbox"] = [1, 2, 3]
    (tmp_path / "res.json").write_text(json.dumps(results))
    with pytest.raises(ValueError, match=r"results file '.*res.json'\[4\] 'bbox'"):
        coco.evaluate(tmp_path / "gt.json", tmp_path / "res.json")
    (tmp_path / "broken.json").write_text("[{")
    with pytest.raises(ValueError, match=r"results file '.*broken.json' is not valid JSON"):
        coco.evaluate(tmp_path / "gt.json", tmp_path / "broken.json")
    with pytest.raises(ValueError, match=r"cannot read the gt file"):
        coco.evaluate(tmp_path / "missing.json", results)


@pytest.mark.parametrize("kwargs, error, message", [
    ({"iou_type": "keypoints"}, ValueError, "iou_type must be one of"),
    ({"backend": "tpu"}, ValueError, "backend must be one of"),
    ({"params": {"iouThr": [0.5]}}, ValueError, r"params has unknown names \['iouThr'\]"),
    ({"params": {"iouThrs": [0.5, 1.5]}}, ValueError, r"params\['iouThrs'\] must hold"),
    ({"params": {"recThrs": [0.5, math.nan]}}, ValueError, r"params\['recThrs'\]"),
    ({"params": {"maxDets": [1, -1]}}, ValueError, r"params\['maxDets'\]"),
    ({"params": {"areaRng": [[0, 1]], "areaRngLbl": ["a", "b"]}}, ValueError,
     r"params\['areaRngLbl'\] must have one label per"),
    ({"params": {"useCats": 2}}, ValueError, r"params\['useCats'\]"),
    ({"params": {"imgIds": [1.5]}}, ValueError, r"params\['imgIds'\]"),
    ({"params": [("useCats", 0)]}, TypeError, "params must be a dict"),
    ({"progress": "yes"}, TypeError, "progress must be"),
])
def test_bad_arguments(kwargs, error, message):
    gt, results = edge_case()
    with pytest.raises(error, match=f"coco.evaluate: {message}"):
        coco.evaluate(gt, results, **kwargs)


def test_merged_states_equal_one_evaluation():
    """Disjoint image sets evaluated apart (and pickled), merged in any grouping: the same arrays
    as one evaluation."""
    import pickle

    gt, results = coco_data.make(8, 30, categories=10)
    ids = [im["id"] for im in gt["images"]]
    parts = [coco.evaluate_images(gt, results, img_ids=ids[k::3]) for k in range(3)]
    parts = [pickle.loads(pickle.dumps(s)) for s in parts]
    merged = parts[2].merge(parts[0]).merge(parts[1]).compute()
    assert_same(merged, reference(gt, results))
    with pytest.raises(ValueError, match="overlap"):
        parts[0].merge(parts[0])
    other = coco.evaluate_images(gt, results, img_ids=ids[1::3], params={"maxDets": [1, 2, 3]})
    with pytest.raises(ValueError, match="different"):
        parts[0].merge(other)
    with pytest.raises(ValueError, match="merged"):
        merged.matches()


def test_dask_local_cluster_gives_the_single_process_result():
    """Image partitions evaluated in two worker processes, states merged: pycocotools' arrays."""
    import logging
    import warnings

    distributed = pytest.importorskip("distributed")
    gt, results = coco_data.make(9, 24, categories=10)
    ids = [im["id"] for im in gt["images"]]

    def part(img_ids):  # noqa: ANN001, ANN202  (pickled by value: defined in a function)
        from fastiou import coco as c

        return c.evaluate_images(gt, results, img_ids=img_ids)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                      host="127.0.0.1", dashboard_address=":0",
                                      worker_dashboard_address=None,
                                      silence_logs=logging.ERROR) as cluster, \
                distributed.Client(cluster) as client:
            states = client.gather(client.map(part, [ids[k::4] for k in range(4)], pure=False))
            ran = client.run(lambda dask_worker: dask_worker.state.executed_count)
    assert len(ran) == 2 and sum(ran.values()) >= 4
    merged = states[0]
    for s in states[1:]:
        merged = merged.merge(s)
    assert_same(merged.compute(), reference(gt, results))
