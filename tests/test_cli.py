"""The ``fastiou`` command end to end: the sample data, each kind of bad file, usage errors, JSON.

Numbers are checked against independent computations on the same files: pycocotools for COCO,
scikit-learn's confusion matrix for the label maps, and the library called directly.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import fastiou
from fastiou import cli

SAMPLE_GT, SAMPLE_RES = cli.SAMPLE_COCO
SAMPLE_LABELS, SAMPLE_PREDS = cli.SAMPLE_SEMANTIC[:2]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``fastiou ARGV`` in this process: (exit status, stdout, stderr)."""
    try:
        code = cli.main(list(argv))
    except SystemExit as exc:  # argparse: --help (0) and usage errors (2)
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    code, out, err = run(capsys, *argv, "--json", "-")
    assert (code, err) == (0, ""), err
    return json.loads(out)


# --------------------------------------------------------------------------------------------
# The sample data


def test_sample_data_is_small_and_complete() -> None:
    files = [p for p in cli.DATA.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 200_000
    gt = json.loads(SAMPLE_GT.read_text())
    results = json.loads(SAMPLE_RES.read_text())
    assert len(gt["images"]) == 10 and len(gt["categories"]) == 3
    assert sum(a["iscrowd"] for a in gt["annotations"]) == 1
    assert all("bbox" in r and isinstance(r["segmentation"]["counts"], str) for r in results)
    assert sorted(p.name for p in SAMPLE_LABELS.glob("*.png")) == sorted(
        p.name for p in SAMPLE_PREDS.glob("*.png"))


def test_sample_data_generator_reproduces_the_shipped_files() -> None:
    from benchmarks import make_sample_data

    gt, results = make_sample_data.coco(np.random.default_rng(2024))
    assert json.dumps(gt, separators=(",", ":")) + "\n" == SAMPLE_GT.read_text()
    assert json.dumps(results, separators=(",", ":")) + "\n" == SAMPLE_RES.read_text()


# --------------------------------------------------------------------------------------------
# eval coco


def pycocotools_stats(gt_path: Path, res_path: Path, iou_type: str) -> np.ndarray:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints as it goes
        gt = COCO(str(gt_path))
        evaluation = COCOeval(gt, gt.loadRes(str(res_path)), iou_type)
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return evaluation.stats


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_eval_coco_on_the_sample_data_equals_pycocotools(capsys, iou_type) -> None:
    payload = run_json(capsys, "eval", "coco", "--iou-type", iou_type)
    stats = np.array(list(payload["stats"].values()))
    np.testing.assert_allclose(stats, pycocotools_stats(SAMPLE_GT, SAMPLE_RES, iou_type),
                               rtol=0, atol=1e-12)
    assert 0.2 < stats[0] < 0.9  # a sample with something to find and something to miss

    code, out, err = run(capsys, "eval", "coco", "--iou-type", iou_type)
    assert (code, err) == (0, "")
    assert f"COCO {iou_type} evaluation" in out
    first = "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]"
    assert f"{first} = {stats[0]:.3f}" in out


def test_eval_coco_files_given_equal_the_library(capsys, tmp_path) -> None:
    results = json.loads(SAMPLE_RES.read_text())[::2]  # a different results file
    res = tmp_path / "res.json"
    res.write_text(json.dumps(results))
    payload = run_json(capsys, "eval", "coco", "--gt", str(SAMPLE_GT), "--results", str(res),
                       "--iou-type", "segm")
    direct = fastiou.coco.evaluate(str(SAMPLE_GT), str(res), "segm").to_dict()
    assert payload["stats"] == direct["stats"]
    np.testing.assert_allclose(list(payload["stats"].values()),
                               pycocotools_stats(SAMPLE_GT, res, "segm"), rtol=0, atol=1e-12)


def test_plain_eval_runs_everything_on_the_sample_data(capsys, tmp_path) -> None:
    out_file = tmp_path / "all.json"
    code, out, err = run(capsys, "eval", "--json", str(out_file))
    assert (code, err) == (0, "")
    assert "COCO bbox evaluation" in out and "COCO segm evaluation" in out
    assert "semantic segmentation" in out
    payload = json.loads(out_file.read_text())
    assert set(payload) == {"command", "coco_bbox", "coco_segm", "semantic"}
    assert payload["coco_bbox"]["stats"] == run_json(capsys, "eval", "coco")["stats"]
    assert payload["semantic"]["mean_iou"] == run_json(capsys, "eval", "semantic")["mean_iou"]
    assert [p.name for p in tmp_path.iterdir()] == ["all.json"]  # no temporary file left


# --------------------------------------------------------------------------------------------
# eval boxes / masks


def test_eval_boxes_classic_example(capsys, tmp_path) -> None:
    f = tmp_path / "classic.npz"
    np.savez(f, gt_0=np.array([[0.0, 0, 10, 10]]), pred_0=np.array([[5.0, 5, 15, 15]]))
    payload = run_json(capsys, "eval", "boxes", str(f), "--iou-threshold", "0.1")
    assert payload["mean_iou"] == pytest.approx(25 / 175) and payload["grade"] == "poor"
    payload = run_json(capsys, "eval", "boxes", str(f))  # 0.143 < 0.5: missed
    assert payload["mean_iou"] == 0.0 and payload["counts"]["missed"] == 1
    code, out, _ = run(capsys, "eval", "boxes", str(f), "--iou-threshold", "0.1")
    assert code == 0 and "0.1429  poor" in out


def random_boxes(rng: np.random.Generator, n: int) -> np.ndarray:
    xy = rng.uniform(0, 100, (n, 2))
    return np.concatenate([xy, xy + rng.uniform(5, 30, (n, 2))], axis=1)


@pytest.mark.parametrize("fmt", ["xyxy", "xywh"])
def test_eval_boxes_equals_the_library(capsys, tmp_path, fmt) -> None:
    rng = np.random.default_rng(1)
    gt = [random_boxes(rng, n) for n in (3, 0, 5, 2)]
    pred = [np.concatenate([g + rng.normal(0, 2, g.shape), random_boxes(rng, 1)]) for g in gt]
    pred[3] = np.zeros((0, 4))  # an image without predictions
    scores = [rng.random(len(p)) for p in pred]
    f = tmp_path / "boxes.npz"
    np.savez(f, **{f"{k}_{i}": v for k, vs in (("gt", gt), ("pred", pred), ("scores", scores))
                   for i, v in enumerate(vs)})
    payload = run_json(capsys, "eval", "boxes", str(f), "--fmt", fmt, "--iou-threshold", "0.3")
    direct = fastiou.evaluate(gt, pred, scores=scores, fmt=fmt, iou_threshold=0.3)
    assert payload == {"command": "eval boxes", "file": str(f), **direct.to_dict()}
    assert payload["num_images"] == 4 and payload["num_gt"] == 10


def test_eval_masks_equals_the_library(capsys, tmp_path) -> None:
    rng = np.random.default_rng(2)
    gt = [rng.random((n, 12, 16)) < 0.4 for n in (2, 3)]
    pred = [(g ^ (rng.random(g.shape) < 0.05)).astype(np.uint8) for g in gt]  # 0/1 uint8
    f = tmp_path / "masks.npz"
    np.savez_compressed(f, gt_0=gt[0], pred_0=pred[0], gt_1=gt[1], pred_1=pred[1])
    payload = run_json(capsys, "eval", "masks", str(f), "--method", "optimal")
    direct = fastiou.evaluate(gt, pred, method="optimal")
    assert payload["mean_iou"] == direct.mean_iou > 0.7
    assert payload["per_object"] == direct.to_dict()["per_object"]


@pytest.mark.parametrize("backend", ["jax", "cupy"])
def test_eval_boxes_on_another_engine(capsys, tmp_path, backend) -> None:
    f = tmp_path / "classic.npz"
    np.savez(f, gt_0=np.array([[0.0, 0, 10, 10]]), pred_0=np.array([[5.0, 5, 15, 15]]))
    argv = ("eval", "boxes", str(f), "--iou-threshold", "0.1", "--backend", backend)
    if fastiou.available_backends()[backend].available:
        assert run_json(capsys, *argv)["mean_iou"] == pytest.approx(25 / 175, rel=1e-6)
    else:  # exit 1, the engine's own reason
        code, out, err = run(capsys, *argv)
        assert (code, out) == (1, "") and err.count("\n") == 1
        assert f"--backend {backend}: not available here" in err


def test_eval_boxes_without_ground_truth_warns_on_stderr(capsys, tmp_path) -> None:
    f = tmp_path / "empty.npz"
    np.savez(f, gt_0=np.zeros((0, 4)), pred_0=np.array([[0.0, 0, 1, 1]]))
    code, out, err = run(capsys, "eval", "boxes", str(f))
    assert code == 0 and "n/a  undefined" in out
    assert err.startswith("fastiou: warning: ") and "no ground-truth objects" in err
    assert err.count("\n") == 1


# --------------------------------------------------------------------------------------------
# eval semantic


def read_pairs(gt_dir: Path, pred_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    names = sorted(p.name for p in gt_dir.glob("*.png"))
    gt = np.concatenate([np.asarray(Image.open(gt_dir / n)).ravel() for n in names])
    pred = np.concatenate([np.asarray(Image.open(pred_dir / n)).ravel() for n in names])
    return gt, pred


def sklearn_iou(gt: np.ndarray, pred: np.ndarray, num_classes: int, ignore: int | None):
    from sklearn.metrics import confusion_matrix

    keep = gt != ignore if ignore is not None else np.ones(gt.shape, bool)
    cm = confusion_matrix(gt[keep], pred[keep], labels=np.arange(num_classes))
    tp = np.diag(cm)
    with np.errstate(invalid="ignore"):
        return cm, tp / (cm.sum(0) + cm.sum(1) - tp)


def test_eval_semantic_on_the_sample_data(capsys) -> None:
    payload = run_json(capsys, "eval", "semantic")
    gt, pred = read_pairs(SAMPLE_LABELS, SAMPLE_PREDS)
    cm, iou = sklearn_iou(gt, pred, 4, 255)
    assert payload["confusion_matrix"] == cm.tolist()
    np.testing.assert_allclose(payload["per_class_iou"], iou, rtol=1e-12)
    assert payload["mean_iou"] == pytest.approx(np.nanmean(iou), rel=1e-12)
    assert payload["mean_iou"] == float(fastiou.mean_iou(pred, gt, 4, ignore_index=255))
    assert (payload["num_images"], payload["num_classes"], payload["ignore_index"]) == (5, 4, 255)
    code, out, err = run(capsys, "eval", "semantic")
    assert code == 0 and err == ""
    assert f"mean IoU over the 4 classes present: {payload['mean_iou']:.4f}" in out


def write_png(path: Path, labels: np.ndarray, mode: str = "L") -> None:
    image = Image.fromarray(labels)
    if mode == "P":
        image = image.convert("L").convert("P")  # palette indices equal to the labels
        image.putpalette([v for i in range(256) for v in (i, 255 - i, (7 * i) % 256)])
    image.save(path)


@pytest.fixture
def label_dirs(tmp_path: Path) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    gt_dir, pred_dir = tmp_path / "gt", tmp_path / "pred"
    gt_dir.mkdir()
    pred_dir.mkdir()
    gts, preds = [], []
    for i, mode in enumerate(["L", "P", "I;16"]):
        g = rng.integers(0, 6, (9 + i, 11)).astype(np.uint16 if mode == "I;16" else np.uint8)
        p = np.where(rng.random(g.shape) < 0.7, g, rng.integers(0, 6, g.shape)).astype(g.dtype)
        g[0] = 9  # ignored
        write_png(gt_dir / f"{i}.png", g, mode)
        write_png(pred_dir / f"{i}.png", p, mode)
        gts.append(g.ravel())
        preds.append(p.ravel())
    return gt_dir, pred_dir, np.concatenate(gts), np.concatenate(preds)


def test_eval_semantic_files_given(capsys, label_dirs) -> None:
    gt_dir, pred_dir, gt, pred = label_dirs
    payload = run_json(capsys, "eval", "semantic", "--gt", str(gt_dir), "--pred", str(pred_dir),
                       "--num-classes", "6", "--ignore-index", "9")
    cm, iou = sklearn_iou(gt.astype(np.int64), pred.astype(np.int64), 6, 9)
    assert payload["confusion_matrix"] == cm.tolist()
    np.testing.assert_allclose(payload["per_class_iou"], iou, rtol=1e-12)


def test_eval_semantic_on_a_dask_cluster_equals_one_process(capsys, label_dirs) -> None:
    from dask.distributed import LocalCluster

    gt_dir, pred_dir, _, _ = label_dirs
    args = ("eval", "semantic", "--gt", str(gt_dir), "--pred", str(pred_dir), "--num-classes",
            "6", "--ignore-index", "9")
    local = run_json(capsys, *args)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster:
        remote = run_json(capsys, *args, "--scheduler", cluster.scheduler_address)
        # a bad file read by a worker: the same one-line error
        (pred_dir / "1.png").write_bytes(b"not a png")
        code, out, err = run(capsys, *args, "--scheduler", cluster.scheduler_address)
    assert remote.pop("scheduler") == cluster.scheduler_address and local.pop("scheduler") is None
    assert remote == local
    assert code == 1 and out == "" and str(pred_dir / "1.png") in err and "unreadable PNG" in err
    assert err.count("\n") == 1


def test_eval_semantic_unreachable_scheduler(capsys) -> None:
    code, _, err = run(capsys, "eval", "semantic", "--scheduler", "tcp://127.0.0.1:9",
                       "--connect-timeout", "0.5")
    assert code == 1 and "tcp://127.0.0.1:9: cannot connect to the Dask scheduler" in err
    assert err.count("\n") == 1


# --------------------------------------------------------------------------------------------
# Bad data: exit 1, one line naming the file and the entry, no output file


def expect_data_error(capsys, tmp_path: Path, argv: list[str], *expected: str) -> None:
    out_file = tmp_path / "out" / "result.json"
    out_file.parent.mkdir(exist_ok=True)
    code, out, err = run(capsys, *argv, "--json", str(out_file))
    assert code == 1, (out, err)
    assert out == "" and err.startswith("fastiou: error: ") and err.count("\n") == 1, err
    for text in expected:
        assert text in err, (text, err)
    assert list(out_file.parent.iterdir()) == []  # nothing written, no temporary file


def coco_files(tmp_path: Path, edit_gt=None, edit_res=None) -> tuple[str, str]:
    gt, res = json.loads(SAMPLE_GT.read_text()), json.loads(SAMPLE_RES.read_text())
    gt_path, res_path = tmp_path / "gt.json", tmp_path / "res.json"
    gt_path.write_text(edit_gt(gt) if edit_gt else json.dumps(gt))
    res_path.write_text(edit_res(res) if edit_res else json.dumps(res))
    return str(gt_path), str(res_path)


def edit(entries, index, key, value):
    entries[index][key] = value
    return json.dumps(entries)


BAD_COCO = {
    # name: (edit gt, edit results, iou type, which file, the entry and field named)
    "malformed-json": (lambda g: json.dumps(g)[:-40], None, "bbox", "gt.json", "not valid JSON"),
    "unknown-image-id": (None, lambda r: edit(r, 3, "image_id", 999), "bbox", "res.json",
                         "[3] names the image id 999"),
    "bad-box": (None, lambda r: edit(r, 4, "bbox", [1, 2, "x", 4]), "bbox", "res.json",
                "[4] 'bbox'"),
    "malformed-rle": (None, lambda r: edit(r, 5, "segmentation", {"size": [120, 160],
                                                                    "counts": "!!"}),
                      "segm", "res.json", "[5] 'segmentation'"),
    "annotation-unknown-image": (
        lambda g: (g["annotations"][2].update(image_id=77), json.dumps(g))[1], None, "bbox",
        "gt.json", "['annotations'][2] names the image id 77"),
    "results-not-a-list": (None, lambda r: json.dumps({"detections": r}), "bbox", "res.json",
                           "must be a list"),
}


@pytest.mark.parametrize("case", BAD_COCO)
def test_eval_coco_bad_files(capsys, tmp_path, case) -> None:
    edit_gt, edit_res, iou_type, name, entry = BAD_COCO[case]
    gt, res = coco_files(tmp_path, edit_gt, edit_res)
    expect_data_error(capsys, tmp_path, ["eval", "coco", "--gt", gt, "--results", res,
                                         "--iou-type", iou_type],
                      str(tmp_path / name), entry)


def test_eval_coco_missing_file(capsys, tmp_path) -> None:
    missing = str(tmp_path / "nope.json")
    expect_data_error(capsys, tmp_path, ["eval", "coco", "--gt", str(SAMPLE_GT), "--results",
                                         missing], missing)


GOOD_BOX = np.array([[0.0, 0, 10, 10]])
BAD_NPZ = {
    # name: (entries of the archive, what the message names)
    "unknown-key": ({"gt_0": GOOD_BOX, "pred_0": GOOD_BOX, "boxes_0": GOOD_BOX}, "'boxes_0'"),
    "missing-pred": ({"gt_0": GOOD_BOX, "pred_0": GOOD_BOX, "gt_1": GOOD_BOX}, "pred_1 is missing"),
    "gap-in-images": ({"gt_0": GOOD_BOX, "pred_0": GOOD_BOX, "gt_2": GOOD_BOX, "pred_2": GOOD_BOX},
                      "gt_1 is missing"),
    "scores-for-some": ({"gt_0": GOOD_BOX, "pred_0": GOOD_BOX, "gt_1": GOOD_BOX,
                         "pred_1": GOOD_BOX, "scores_1": np.ones(1)}, "scores_0 is missing"),
    "no-images": ({"pred_0": GOOD_BOX}, "no images"),
    "wrong-width": ({"gt_0": GOOD_BOX, "pred_0": GOOD_BOX, "gt_1": np.zeros((1, 5)),
                     "pred_1": GOOD_BOX}, "gt_1 has shape (1, 5)"),
    "masks-given-to-boxes": ({"gt_0": np.ones((1, 4, 4), bool), "pred_0": np.ones((1, 4, 4), bool)},
                             "gt_0 has shape (1, 4, 4)"),
    "text-array": ({"gt_0": np.array(["a", "b", "c", "d"])[None], "pred_0": GOOD_BOX},
                   "gt_0 has shape (1, 4) and dtype <U1"),
    "nan-score": ({"gt_0": GOOD_BOX, "pred_0": GOOD_BOX, "scores_0": np.array([np.nan])},
                  "scores_0 holds NaN"),
    "score-count": ({"gt_0": GOOD_BOX, "pred_0": GOOD_BOX, "scores_0": np.ones(2)}, "scores_0"),
}


@pytest.mark.parametrize("case", BAD_NPZ)
def test_eval_boxes_bad_files(capsys, tmp_path, case) -> None:
    entries, named = BAD_NPZ[case]
    f = tmp_path / "data.npz"
    np.savez(f, **entries)
    expect_data_error(capsys, tmp_path, ["eval", "boxes", str(f)], str(f), named)


def test_eval_masks_bad_files(capsys, tmp_path) -> None:
    f = tmp_path / "masks.npz"
    np.savez(f, gt_0=np.ones((1, 4, 4), bool), pred_0=np.ones((1, 5, 4), bool))
    expect_data_error(capsys, tmp_path, ["eval", "masks", str(f)], str(f), "image 0",
                      "same (H, W)")
    np.savez(f, gt_0=np.ones((1, 4), bool), pred_0=np.ones((1, 4), bool))
    expect_data_error(capsys, tmp_path, ["eval", "masks", str(f)], str(f), "gt_0 has shape (1, 4)")
    np.savez(f, gt_0=np.ones((1, 4, 4), np.float32), pred_0=np.ones((1, 4, 4), np.float32))
    expect_data_error(capsys, tmp_path, ["eval", "masks", str(f)], str(f), "threshold")
    np.savez(f, gt_0=np.array([None, 1], dtype=object), pred_0=GOOD_BOX)  # needs pickle
    expect_data_error(capsys, tmp_path, ["eval", "masks", str(f)], str(f), "gt_0 is unreadable")
    f.write_text("gt_0,pred_0\n")  # not an archive
    expect_data_error(capsys, tmp_path, ["eval", "masks", str(f)], str(f), "not a readable .npz")
    np.save(tmp_path / "one.npy", GOOD_BOX)  # a single array
    expect_data_error(capsys, tmp_path, ["eval", "boxes", str(tmp_path / "one.npy")],
                      "one.npy", "a single array")
    expect_data_error(capsys, tmp_path, ["eval", "boxes", str(tmp_path / "no.npz")],
                      str(tmp_path / "no.npz"), "no such file")


def break_png(gt_dir: Path, pred_dir: Path, case: str) -> tuple[Path, str]:
    """Spoil the label folders one way: returns the file the message must name and a phrase."""
    target = pred_dir / "1.png"
    if case == "unreadable":
        target.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
        return target, "unreadable PNG"
    if case == "truncated":
        target.write_bytes(target.read_bytes()[:-30])
        return target, "unreadable PNG"
    if case == "rgb":
        Image.new("RGB", (11, 10)).save(target)
        return target, "a RGB image"
    if case == "jpeg-named-png":
        Image.new("L", (11, 10)).save(target, format="JPEG")
        return target, "a JPEG image"
    if case == "size":
        write_png(target, np.zeros((3, 4), np.uint8))
        return target, "size 4x3 differs from its ground truth"
    if case == "label-in-pred":
        labels = np.asarray(Image.open(target)).copy()
        labels[5, 3] = 7
        write_png(target, labels)
        return target, "found 7"
    if case == "label-in-gt":
        target = gt_dir / "2.png"
        labels = np.asarray(Image.open(target)).copy()
        labels[4, 4] = 300
        write_png(target, labels, "I;16")
        return target, "found 300"
    if case == "missing-pred":
        target.unlink()
        return target, "missing"
    if case == "extra-pred":
        shutil.copy(pred_dir / "0.png", pred_dir / "extra.png")
        return pred_dir / "extra.png", "no ground truth of that name"
    if case == "no-maps":
        for p in gt_dir.iterdir():
            p.unlink()
        return gt_dir, "no .png label maps"
    raise ValueError(case)


BAD_PNG = ["unreadable", "truncated", "rgb", "jpeg-named-png", "size", "label-in-pred",
           "label-in-gt", "missing-pred", "extra-pred", "no-maps"]


@pytest.mark.parametrize("case", BAD_PNG)
def test_eval_semantic_bad_files(capsys, tmp_path, label_dirs, case) -> None:
    gt_dir, pred_dir, _, _ = label_dirs
    named, phrase = break_png(gt_dir, pred_dir, case)
    expect_data_error(capsys, tmp_path, ["eval", "semantic", "--gt", str(gt_dir), "--pred",
                                         str(pred_dir), "--num-classes", "6",
                                         "--ignore-index", "9"], str(named), phrase)


def test_output_folder_missing_fails_before_the_work(capsys, tmp_path) -> None:
    code, out, err = run(capsys, "eval", "semantic", "--json", str(tmp_path / "no" / "x.json"))
    assert code == 1 and out == "" and "folder" in err and "does not exist" in err
    assert not (tmp_path / "no").exists()


# --------------------------------------------------------------------------------------------
# Usage errors: exit 2 with the usage


USAGE_ERRORS = {
    "unknown-command": ["evaluate"],
    "unknown-kind": ["eval", "detections"],
    "unknown-flag": ["eval", "coco", "--no-such-flag"],
    "gt-without-results": ["eval", "coco", "--gt", "x.json"],
    "iou-type": ["eval", "coco", "--iou-type", "keypoints"],
    "backend": ["eval", "coco", "--backend", "torch"],
    "npz-missing-argument": ["eval", "boxes"],
    "threshold-above-1": ["eval", "boxes", "f.npz", "--iou-threshold", "1.5"],
    "threshold-not-a-number": ["eval", "masks", "f.npz", "--iou-threshold", "nan?"],
    "fmt": ["eval", "boxes", "f.npz", "--fmt", "yxyx"],
    "semantic-without-classes": ["eval", "semantic", "--gt", "a", "--pred", "b"],
    "semantic-without-pred": ["eval", "semantic", "--gt", "a", "--num-classes", "3"],
    "zero-classes": ["eval", "semantic", "--gt", "a", "--pred", "b", "--num-classes", "0"],
    "classes-without-data": ["eval", "semantic", "--num-classes", "3"],
    "ignore-not-int": ["eval", "semantic", "--gt", "a", "--pred", "b", "--num-classes", "3",
                       "--ignore-index", "x"],
    "timeout": ["eval", "semantic", "--connect-timeout", "-1"],
}


@pytest.mark.parametrize("case", USAGE_ERRORS)
def test_usage_errors_exit_2(capsys, case) -> None:
    code, out, err = run(capsys, *USAGE_ERRORS[case])
    assert code == 2 and out == ""
    assert err.startswith("usage: fastiou") and "error: " in err


# --------------------------------------------------------------------------------------------
# --help, info, bench, demo, python -m fastiou


def test_help(capsys) -> None:
    code, out, err = run(capsys, "--help")
    assert code == 0 and err == "" and out.startswith("usage: fastiou")
    for command in ("eval", "info", "bench", "demo"):
        assert f"\n    {command} " in out
    code, out, _ = run(capsys, "eval", "boxes", "--help")
    assert code == 0 and "gt_<i> and pred_<i>" in out and "allow_pickle=False" in out
    code, out, _ = run(capsys, "eval", "semantic", "--help")
    assert code == 0 and "--scheduler ADDRESS" in out


def test_module_runs_the_command() -> None:
    """``python -m fastiou`` is the same command; with no command, the demo."""
    ok = subprocess.run([sys.executable, "-m", "fastiou", "eval", "boxes", "--help"],
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and ok.stdout.startswith("usage: python -m fastiou eval boxes")
    bad = subprocess.run([sys.executable, "-m", "fastiou", "eval", "boxes", "/no/such.npz"],
                         capture_output=True, text=True, timeout=120)
    assert (bad.returncode, bad.stdout) == (1, "")
    assert bad.stderr == "python -m fastiou: error: /no/such.npz: no such file\n"


def test_demo(capsys) -> None:
    code, out, err = run(capsys, "demo")
    assert code == 0 and err == ""
    assert "intersection 25, union 175, IoU 0.143 -> poor" in out
    assert "numba   0.143  -0.079" in out.replace("  numba", "numba", 1)
    code, plain, _ = run(capsys)  # no command: the demo
    assert code == 0 and plain == out


def test_info(capsys) -> None:
    payload = run_json(capsys, "info")
    assert payload["fastiou"] == fastiou.__version__
    assert set(payload["engines"]) == {"numba", "cupy", "jax"}
    numba = payload["engines"]["numba"]
    assert numba["available"] and "threading layer" in numba["detail"]
    assert "not started" not in numba["detail"]
    expected = {name: info.available for name, info in fastiou.available_backends().items()}
    assert {name: e["available"] for name, e in payload["engines"].items()} == expected
    assert payload["packages"]["numpy"] == np.__version__
    code, out, err = run(capsys, "info")
    assert code == 0 and err == "" and "engine  available  detail" in out


def test_bench_builtin(capsys) -> None:
    payload = run_json(capsys, "bench", "--quick", "--builtin")
    assert payload["kind"] == "builtin" and payload["quick"] is True
    engines = {name for name, i in fastiou.available_backends().items() if i.available}
    assert {r["engine"] for r in payload["results"]} == engines
    assert len(payload["results"]) == 2 * len(engines)
    assert all(r["median_s"] > 0 for r in payload["results"])


def test_bench_finds_the_benchmarks_of_a_source_checkout() -> None:
    root, modules = cli._benchmark_modules()
    assert root == Path(__file__).resolve().parent.parent
    assert {"boxes", "masks", "semantic"} <= set(modules)
    assert all((root / "benchmarks" / f"{m}.py").is_file() for m in modules)


def test_bench_runs_the_modules_of_the_checkout(capsys, tmp_path, monkeypatch) -> None:
    bench = tmp_path / "benchmarks"
    bench.mkdir()
    (bench / "__init__.py").write_text("")
    (bench / "good.py").write_text("import sys\nprint('good table', sys.argv[1:])\n")
    (bench / "bad.py").write_text("raise SystemExit(3)\n")
    monkeypatch.setattr(cli, "_benchmark_modules", lambda: (tmp_path, ["good", "bad"]))
    code, out, err = run(capsys, "bench", "--quick", "--json", str(tmp_path / "index.json"))
    assert code == 1 and "benchmarks.bad exited with status 3" in err
    index = json.loads((tmp_path / "index.json").read_text())
    assert index["modules"] == {
        "good": {"exit_status": 0, "results": str(bench / "results" / "good-quick.json")},
        "bad": {"exit_status": 3, "results": str(bench / "results" / "bad-quick.json")},
    }


def test_options_before_the_kind(capsys) -> None:
    code, out, err = run(capsys, "eval", "--json", "-", "--quiet", "coco", "--iou-type", "segm")
    assert (code, err) == (0, "") and json.loads(out)["iou_type"] == "segm"


def test_json_to_stdout_and_file_agree(capsys, tmp_path) -> None:
    out_file = tmp_path / "semantic.json"
    code, out, err = run(capsys, "eval", "semantic", "--json", str(out_file), "--quiet")
    assert code == 0 and err == "" and "mean IoU" in out  # the table, and the file
    assert json.loads(out_file.read_text()) == run_json(capsys, "eval", "semantic")
    out_file.write_text("old")  # replaced whole
    run(capsys, "eval", "semantic", "--json", str(out_file))
    assert json.loads(out_file.read_text())["command"] == "eval semantic"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_only_on_a_terminal_and_not_with_quiet(monkeypatch) -> None:
    from tqdm import tqdm

    items = [1, 2, 3]
    assert cli._progress(items, total=3, desc="x", quiet=False) is items  # stderr: a pipe here
    monkeypatch.setattr(sys, "stderr", Terminal())
    assert cli._progress(items, total=3, desc="x", quiet=True) is items
    bar = cli._progress(items, total=3, desc="maps", quiet=False)
    assert isinstance(bar, tqdm) and list(bar) == items
    with cli._stage_bar("coco", quiet=True) as callback:
        assert callback is False
    with cli._stage_bar("coco", quiet=False) as callback:  # what coco.evaluate calls
        callback("read", 1, 4)
        callback("match", 3, 4)
