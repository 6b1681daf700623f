"""Synthetic COCO-like data: a ground-truth dict and a results list, seeded.

``make(seed, images=...)`` draws a dataset shaped like COCO val2017 at any scale: image sizes
around 640 x 480, objects of 80 categories (some far more frequent than others), 41 / 34 / 25 %
small / medium / large (areas below 32**2, up to 96**2, above), about 1 % crowd regions, a few
images without objects, and detections that are jittered copies of the objects (sometimes of the
wrong category) plus random false positives, with scores rounded to 2 decimals (so that many
tie), a few of a category that the ground truth does not have, and a few images without any.
With ``segm=True`` the objects are polygons (a jittered ellipse in the box) and the detections
compressed RLE (str counts, as read from JSON), made from jittered polygons.

``val2017(seed)`` is the benchmark's full size: 5,000 images, 35,889 objects of which 365 crowd,
134,457 detections.
"""

from __future__ import annotations

from typing import Any

import numpy as np

SIZES = [(640, 480), (480, 640), (640, 427), (427, 640), (640, 360), (500, 375), (612, 612)]
SIZE_MIX = (0.41, 0.34, 0.25)  # small, medium, large
VAL2017 = {"images": 5000, "objects": 35889, "crowd": 365, "detections": 134457}


def _boxes(rng: np.random.Generator, n: int, w: np.ndarray, h: np.ndarray) -> np.ndarray:
    """n xywh boxes in images of sizes (w, h), areas drawn by the size mix."""
    kind = rng.choice(3, size=n, p=SIZE_MIX)
    lo = np.array([4.0, 32.0**2, 96.0**2])[kind]
    hi = np.array([32.0**2, 96.0**2, 300.0**2])[kind]
    area = np.exp(rng.uniform(np.log(lo), np.log(hi)))
    aspect = np.exp(rng.uniform(-0.8, 0.8, n))
    bw = np.minimum(np.sqrt(area * aspect), w - 1)
    bh = np.minimum(area / bw, h - 1)
    x = rng.uniform(0, 1, n) * (w - bw)
    y = rng.uniform(0, 1, n) * (h - bh)
    return np.round(np.stack([x, y, bw, bh], axis=1), 2)


def _polygon(rng: np.random.Generator, box: np.ndarray) -> list[float]:
    """A jittered ellipse inscribed in the xywh box, 8-16 vertices."""
    k = int(rng.integers(8, 17))
    t = np.sort(rng.uniform(0, 2 * np.pi, k))
    r = rng.uniform(0.8, 1.0, k)
    x = box[0] + box[2] / 2 * (1 + r * np.cos(t))
    y = box[1] + box[3] / 2 * (1 + r * np.sin(t))
    return np.round(np.stack([x, y], axis=1).reshape(-1), 2).tolist()


def make(seed: int, images: int = 40, *, objects: int | None = None, crowd: int | None = None,
         detections: int | None = None, categories: int = 80, segm: bool = False
         ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(gt, results) of ``images`` images; counts default to val2017's per-image rates."""
    rng = np.random.default_rng(seed)
    objects = round(images * 7.18) if objects is None else objects
    crowd = round(objects * 0.0102) if crowd is None else crowd
    detections = round(images * 26.9) if detections is None else detections
    img_ids = np.sort(rng.choice(10 * images + 100, images, replace=False)) + 1
    size = np.array(SIZES)[rng.integers(0, len(SIZES), images)]
    cat_ids = np.sort(rng.choice(np.arange(1, 91), categories, replace=False))
    cat_p = 1.0 / np.arange(1, categories + 1) ** 0.8
    cat_p /= cat_p.sum()
    # Objects per image (about 1 % of the images get none), then their boxes.
    weight = rng.gamma(1.2, 1.0, images) * (rng.uniform(0, 1, images) > 0.01)
    per_image = rng.multinomial(objects, weight / weight.sum())
    img_of = np.repeat(np.arange(images), per_image)
    w, h = size[img_of, 0].astype(float), size[img_of, 1].astype(float)
    boxes = _boxes(rng, objects, w, h)
    cats = cat_ids[rng.choice(categories, objects, p=cat_p)]
    is_crowd = np.zeros(objects, dtype=int)
    is_crowd[rng.choice(objects, crowd, replace=False)] = 1
    # Areas as a mask would have them, some exactly on the 32**2 and 96**2 boundaries.
    area = np.round(boxes[:, 2] * boxes[:, 3] * rng.uniform(0.55, 0.9, objects), 2)
    edge = rng.uniform(0, 1, objects) < 0.01
    area[edge] = rng.choice([32.0**2, 96.0**2], int(edge.sum()))
    anns = []
    for i in range(objects):
        ann = {"id": i + 1, "image_id": int(img_ids[img_of[i]]), "category_id": int(cats[i]),
               "bbox": boxes[i].tolist(), "area": float(area[i]), "iscrowd": int(is_crowd[i])}
        if segm:
            ann["segmentation"] = [_polygon(rng, boxes[i])]
        anns.append(ann)
    gt = {
        "info": {"description": f"synthetic COCO-like data, seed {seed}"},
        "images": [{"id": int(i), "width": int(s[0]), "height": int(s[1])}
                   for i, s in zip(img_ids, size)],
        "annotations": anns,
        "categories": [{"id": int(c), "name": f"class{int(c)}", "supercategory": "thing"}
                       for c in cat_ids],
    }
    # Detections: per image, about 80 % of them jittered copies of its objects, the rest random.
    dw = (per_image + 2.0) * (rng.uniform(0, 1, images) > 0.02)
    dets_per_image = rng.multinomial(detections, dw / dw.sum())
    dimg = np.repeat(np.arange(images), dets_per_image)
    first = np.concatenate([[0], np.cumsum(per_image)])
    has = per_image[dimg] > 0
    copy = has & (rng.uniform(0, 1, detections) < 0.8)
    src = first[dimg] + (rng.uniform(0, 1, detections) * np.maximum(per_image[dimg], 1)).astype(int)
    src = np.minimum(src, max(objects - 1, 0))
    dbox = _boxes(rng, detections, size[dimg, 0].astype(float), size[dimg, 1].astype(float))
    if objects:
        jitter = rng.normal(0, 0.08, (detections, 4)) * np.tile(boxes[src, 2:], 2)
        dbox[copy] = np.round(np.abs(boxes[src[copy]] + jitter[copy]), 2)
    dcat = cat_ids[rng.choice(categories, detections, p=cat_p)]
    right = copy & (rng.uniform(0, 1, detections) < 0.9)
    if objects:
        dcat[right] = cats[src[right]]
    dcat[rng.uniform(0, 1, detections) < 0.002] = 999  # a category the ground truth lacks
    score = np.round(np.where(copy, rng.uniform(0.3, 1.0, detections),
                              rng.uniform(0.0, 0.7, detections)), 2)
    results = []
    if segm:
        from fastiou import rle

    for j in range(detections):
        res = {"image_id": int(img_ids[dimg[j]]), "category_id": int(dcat[j]),
               "score": float(score[j])}
        if segm:
            wh = size[dimg[j]]
            m = rle.from_polygons([_polygon(rng, dbox[j])], int(wh[1]), int(wh[0]))
            res["segmentation"] = {"size": m["size"], "counts": m["counts"].decode("ascii")}
        else:
            res["bbox"] = dbox[j].tolist()
        results.append(res)
    return gt, results


def val2017(seed: int = 0, *, segm: bool = False, images: int = VAL2017["images"]
            ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """val2017's sizes (scaled down proportionally for fewer images)."""
    scale = images / VAL2017["images"]
    return make(seed, images, objects=round(VAL2017["objects"] * scale),
                crowd=round(VAL2017["crowd"] * scale),
                detections=round(VAL2017["detections"] * scale), segm=segm)
