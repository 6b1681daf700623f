"""Build the sample data shipped in ``fastiou/data/`` (what ``fastiou eval`` runs on).

    python -m benchmarks.make_sample_data    # rewrites fastiou/data/coco, fastiou/data/semantic

Deterministic (fixed seed): running it again gives the same files byte for byte.

- ``coco/instances.json``: 10 images, 3 categories with COCO's ids (1 person, 3 car, 18 dog),
  28 objects from small to large (COCO's 32² and 96² area ranges) as compressed RLE, and one
  crowd region as uncompressed RLE (as in COCO's own files); image 10 has no objects.
- ``coco/results.json``: detections with ``bbox``, compressed RLE ``segmentation`` and ``score``:
  jittered copies of most objects, some missed, false positives, a wrong category, detections
  inside the crowd region, tied scores; image 8 has no detections.
- ``semantic/gt/*.png`` and ``semantic/pred/*.png``: 5 label maps (96 x 64, 8-bit grayscale PNG),
  classes 0 to 3 and 255 (ignored) on a border of the ground truth; the predictions are shifted
  shapes with some noise. Evaluate with ``--num-classes 4 --ignore-index 255``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

import fastiou

DATA = Path(__file__).resolve().parent.parent / "fastiou" / "data"
CATEGORIES = [
    {"id": 1, "name": "person", "supercategory": "person"},
    {"id": 3, "name": "car", "supercategory": "vehicle"},
    {"id": 18, "name": "dog", "supercategory": "animal"},
]
NUM_IMAGES = 10
SEMANTIC_CLASSES = 4
IGNORE = 255


def _shape(h: int, w: int, cy: float, cx: float, ry: float, rx: float, kind: str) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    if kind == "ellipse":
        return ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 <= 1.0
    return (np.abs(y - cy) <= ry) & (np.abs(x - cx) <= rx)


def _compressed(mask: np.ndarray) -> dict:
    rle = fastiou.rle.encode(mask[None])[0]
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def _uncompressed(mask: np.ndarray) -> dict:
    flat = mask.flatten(order="F").astype(np.int8)  # COCO: column-major, background first
    edges = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate([[0], edges, [flat.size]]))
    counts = ([0] if flat[0] else []) + runs.tolist()
    return {"size": list(mask.shape), "counts": [int(c) for c in counts]}


def _box(mask: np.ndarray) -> list[float]:
    x, y, w, h = fastiou.rle.to_bbox(fastiou.rle.encode(mask[None]))[0]
    return [float(x), float(y), float(w), float(h)]


def coco(rng: np.random.Generator) -> tuple[dict, list[dict]]:
    images, annotations, results = [], [], []
    sizes = [(120, 160), (150, 200), (120, 160), (96, 128), (150, 200)]
    for image_id in range(1, NUM_IMAGES + 1):
        h, w = sizes[image_id % len(sizes)]
        images.append({"id": image_id, "file_name": f"{image_id:012d}.jpg", "height": h,
                       "width": w})
        if image_id == NUM_IMAGES:
            continue  # an image without ground truth (its detections are all false positives)
        n = 2 + image_id % 3 + (image_id == 1)
        for k in range(n):
            # areas from ~30 px (small) to ~12,000 px (large), spread over the three ranges
            scale = [3, 8, 14, 22, 35, 55][(image_id + 2 * k) % 6]
            ry, rx = scale * rng.uniform(0.6, 1.0), scale * rng.uniform(0.8, 1.3)
            cy, cx = rng.uniform(ry, h - ry), rng.uniform(rx, w - rx)
            kind = "ellipse" if (image_id + k) % 2 else "rect"
            mask = _shape(h, w, cy, cx, ry, rx, kind)
            cat = CATEGORIES[(image_id + k) % 3]["id"]
            ann_id = len(annotations) + 1
            annotations.append({
                "id": ann_id, "image_id": image_id, "category_id": cat, "iscrowd": 0,
                "area": int(mask.sum()), "bbox": _box(mask), "segmentation": _compressed(mask),
            })
            if image_id == 8 or (image_id + k) % 7 == 3:
                continue  # image 8 has no detections; a few objects are missed
            jy, jx = rng.normal(0, 0.12 * ry), rng.normal(0, 0.12 * rx)
            det = _shape(h, w, cy + jy, cx + jx, ry * rng.uniform(0.85, 1.15),
                         rx * rng.uniform(0.85, 1.15), kind)
            if not det.any():
                continue
            wrong = (image_id + k) % 11 == 5  # right place, wrong category
            results.append({
                "image_id": image_id,
                "category_id": CATEGORIES[((image_id + k) % 3 + wrong) % 3]["id"],
                "bbox": _box(det), "segmentation": _compressed(det),
                "score": round(float(rng.uniform(0.3, 1.0)), 2),  # 2 decimals: some ties
            })
    # A crowd region (a group of people) in image 2, with detections inside it.
    h, w = next((im["height"], im["width"]) for im in images if im["id"] == 2)
    crowd = _shape(h, w, h * 0.75, w * 0.3, h * 0.2, w * 0.25, "rect")
    annotations.append({
        "id": len(annotations) + 1, "image_id": 2, "category_id": 1, "iscrowd": 1,
        "area": int(crowd.sum()), "bbox": _box(crowd), "segmentation": _uncompressed(crowd),
    })
    for k in range(3):
        det = _shape(h, w, h * 0.75, w * (0.15 + 0.15 * k), h * 0.15, w * 0.05, "ellipse")
        results.append({"image_id": 2, "category_id": 1, "bbox": _box(det),
                        "segmentation": _compressed(det), "score": 0.5})
    # False positives, one in the image without ground truth.
    for image_id in (3, 5, NUM_IMAGES):
        h, w = next((im["height"], im["width"]) for im in images if im["id"] == image_id)
        det = _shape(h, w, h * 0.2, w * 0.8, 6, 9, "rect")
        results.append({"image_id": image_id, "category_id": 3, "bbox": _box(det),
                        "segmentation": _compressed(det), "score": 0.45})
    gt = {
        "info": {"description": "fastiou sample data (synthetic; benchmarks/make_sample_data.py)"},
        "images": images, "annotations": annotations, "categories": CATEGORIES,
    }
    return gt, results


def semantic(rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    h, w = 64, 96
    maps = []
    for i in range(5):
        gt = np.zeros((h, w), np.uint8)
        pred = np.zeros((h, w), np.uint8)
        for c in range(1, SEMANTIC_CLASSES):
            if (i + c) % 4 == 0:
                continue  # a class absent from this image
            cy, cx = rng.uniform(12, h - 12), rng.uniform(12, w - 12)
            ry, rx = rng.uniform(6, 14), rng.uniform(8, 20)
            kind = "ellipse" if c % 2 else "rect"
            gt[_shape(h, w, cy, cx, ry, rx, kind)] = c
            pred[_shape(h, w, cy + rng.normal(0, 2), cx + rng.normal(0, 3), ry, rx, kind)] = c
        noise = rng.random((h, w)) < 0.03
        pred[noise] = rng.integers(0, SEMANTIC_CLASSES, int(noise.sum()))
        gt[:2, :] = IGNORE  # an unlabelled border, ignored whatever the prediction says
        maps.append((gt, pred))
    return maps


def main() -> int:
    from PIL import Image

    rng = np.random.default_rng(2024)
    gt, results = coco(rng)
    (DATA / "coco").mkdir(parents=True, exist_ok=True)
    (DATA / "coco" / "instances.json").write_text(json.dumps(gt, separators=(",", ":")) + "\n")
    (DATA / "coco" / "results.json").write_text(json.dumps(results, separators=(",", ":")) + "\n")
    for sub in ("gt", "pred"):
        (DATA / "semantic" / sub).mkdir(parents=True, exist_ok=True)
    for i, (g, p) in enumerate(semantic(rng)):
        Image.fromarray(g).save(DATA / "semantic" / "gt" / f"scene_{i}.png", optimize=True)
        Image.fromarray(p).save(DATA / "semantic" / "pred" / f"scene_{i}.png", optimize=True)
    n_crowd = sum(a["iscrowd"] for a in gt["annotations"])
    print(f"{DATA}: {len(gt['images'])} images, {len(gt['annotations'])} annotations "
          f"({n_crowd} crowd), {len(results)} detections; 5 label-map pairs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
