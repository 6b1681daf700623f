"""Mask IoU benchmark, measured as users meet it: every workload in its own fresh process, fresh
inputs for every timed call, the first call of the process reported apart from the median and p90
of the repeats.

    python -m benchmarks.masks            # full run, JSON in benchmarks/results/masks.json
    python -m benchmarks.masks --quick    # smaller sizes, for a smoke test
    python -m benchmarks.masks --check    # also exit 1 when a target below is missed

Realistic masks: each a union of one to three ellipses and rectangles covering about 11% of the
image; half of the second set are jittered copies (shifted a few pixels) of masks of the first.
Workloads: dense pairwise 50 vs 50 masks of 480x640 and 200 vs 200 of 256x256; COCO-style RLE IoU
of 100 detections against 20 ground truths at 480x640; RLE-encoding 120 masks of 480x640; and small
calls, as when a detector is evaluated image by image: ``mask_iou`` of 4 vs 6 masks of 64x64 and
``rle.iou`` of 4 vs 6 RLEs of 64x64, a new pair of sets for every call (there the Python path,
not the kernel, is what a user waits for). The RLE IoU also with uncompressed counts (lists of
Python ints, as COCO stores crowd regions), small (4 vs 6 at 64x64) and large (100 vs 20 at
480x640), against pycocotools' ``frPyObjects`` + ``iou`` on the same lists and against fastiou on
the same masks as compressed strings; there each implementation runs in its own fresh process.

Fresh inputs: each timed call gets its own arrays (the masks of the workload in a new random order,
copied into new memory before any timing), never read since they were made, as when a model or a
decoder has just produced them. The dense workloads also run in every order that changed the
figures before: fastiou imported (with Numba) before or after the masks are allocated, and fastiou
called before or after the baseline (whose float32 temporaries reshape the heap). The dense target
must hold in each of them.

Baselines in the same process: the NumPy float32-matmul formulation (what supervision does),
supervision and pycocotools when installed; for packing, NumPy reading the same bytes
(``np.bitwise_or.reduce`` over a uint64 view), a memory-bandwidth floor.
"""

from __future__ import annotations

import sys
from typing import Any, Callable

import numpy as np

from ._common import Target, cli, failed, find, fmt_time, measure, progress, ratio, run_worker

# (name, full size, quick size) of each workload; each runs in its own process.
DENSE = [(50, 480, 640), (200, 256, 256)]  # n = m masks of H x W
DENSE_QUICK = [(20, 240, 320), (60, 128, 128)]
RLE_IOU = {False: (100, 20, 480, 640), True: (40, 10, 240, 320)}  # detections, ground truths, H, W
RLE_ENCODE = {False: (120, 480, 640), True: (30, 240, 320)}  # masks, H, W
# Import order x call order: every combination is a separate process.
ORDERS = ("import first, fastiou first", "import first, baseline first",
          "masks first, fastiou first", "masks first, baseline first")
# (workload prefix, ours, theirs, target ratio theirs/ours or None, issue aim or None)
TARGETS = [
    ("dense", "fastiou mask_iou", "numpy float32 matmul", 15.0, 30.0),
    ("RLE IoU", "fastiou rle.iou", "pycocotools iou", 2.0, None),
    ("RLE encode", "fastiou rle.encode", "pycocotools encode + Fortran copy", 1.5, None),
    # Item 2 of the issue asks for "the same care" for small mask and RLE calls, without a figure.
    ("small mask_iou", "fastiou mask_iou", "numpy float32 matmul", None, None),
    ("small RLE IoU", "fastiou rle.iou", "pycocotools iou", None, None),
    ("small uncompressed RLE IoU", "fastiou rle.iou", "pycocotools frPyObjects + iou", None, None),
    ("uncompressed RLE IoU", "fastiou rle.iou", "pycocotools frPyObjects + iou", None, None),
]
SMALL = (4, 6, 64, 64)  # n, m, H, W of each small call
STRINGS = "fastiou rle.iou, same masks as compressed strings"
SMALL_CALLS = 50  # small calls per repeat
REPEATS = 9  # timed calls after the first, in each workload


def make_masks(n: int, m: int, height: int, width: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two sets of bool masks (n, H, W) and (m, H, W); half of the second jittered copies."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    target = 0.11 * height * width

    def one() -> np.ndarray:
        mask = np.zeros((height, width), dtype=bool)
        shapes = rng.integers(1, 4)
        for _ in range(shapes):
            # Each shape gets about its share of the target area.
            share = target / shapes * rng.uniform(0.7, 1.3)
            aspect = rng.uniform(0.5, 2.0)
            if rng.random() < 0.5:  # ellipse: pi a b = share
                a = np.sqrt(share * aspect / np.pi)
                b = share / (np.pi * a)
                cx, cy = rng.uniform(a, width - a), rng.uniform(b, height - b)
                mask |= ((xx - cx) / a) ** 2 + ((yy - cy) / b) ** 2 <= 1
            else:  # rectangle: w h = share
                w = min(width - 1, np.sqrt(share * aspect))
                h = min(height - 1, share / w)
                x0, y0 = rng.uniform(0, width - w), rng.uniform(0, height - h)
                mask[int(y0):int(y0 + h), int(x0):int(x0 + w)] = True
        return mask

    first = np.stack([one() for _ in range(n)])
    second = np.stack([one() for _ in range(m)])
    half = min(n, m) // 2
    for k, i in enumerate(rng.choice(n, half, replace=False)):
        dy, dx = rng.integers(-6, 7, 2)
        shifted = np.zeros_like(first[i])
        src = first[i][max(0, -dy):height - max(0, dy), max(0, -dx):width - max(0, dx)]
        shifted[max(0, dy):max(0, dy) + src.shape[0], max(0, dx):max(0, dx) + src.shape[1]] = src
        second[k] = shifted
    return first, second


def fresh_sets(masks: np.ndarray, count: int, seed: int) -> list[np.ndarray]:
    """``count`` new arrays, each the masks in a new order (new memory, not read since)."""
    return [masks[p] for p in orders_of(masks.shape[0], count, seed)]


def orders_of(n: int, count: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.permutation(n) for _ in range(count)]


# --- the NumPy baseline: float32 matmul over flattened masks (supervision's formulation) -------


def numpy_mask_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    fa = a.reshape(a.shape[0], -1).astype(np.float32)
    fb = b.reshape(b.shape[0], -1).astype(np.float32)
    inter = fa @ fb.T
    area_a, area_b = fa.sum(axis=1), fb.sum(axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union != 0)


def reference_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    fa = a.reshape(a.shape[0], -1).astype(np.float64)
    fb = b.reshape(b.shape[0], -1).astype(np.float64)
    inter = fa @ fb.T
    union = fa.sum(1)[:, None] + fb.sum(1)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union != 0)


def uncompressed_rle(masks: np.ndarray) -> list[dict[str, Any]]:
    """COCO's uncompressed RLE of (N, H, W) masks: the column-major runs as a list of Python
    ints, starting with background (as COCO stores crowd regions)."""
    out = []
    for mask in masks:
        flat = mask.T.ravel()
        bounds = np.concatenate([[0], np.flatnonzero(flat[1:] != flat[:-1]) + 1, [flat.size]])
        runs = np.diff(bounds).tolist()
        out.append({"size": [int(mask.shape[0]), int(mask.shape[1])],
                    "counts": [0] + runs if flat.size and flat[0] else runs})
    return out


def crowd_reference(a: np.ndarray, b: np.ndarray, crowd: list[bool]) -> np.ndarray:
    """Float64 IoU with COCO's crowd rule (union = area of the detection for a crowd region)."""
    fa = a.reshape(a.shape[0], -1).astype(np.float64)
    fb = b.reshape(b.shape[0], -1).astype(np.float64)
    inter = fa @ fb.T
    union = np.where(np.asarray(crowd)[None, :], fa.sum(1)[:, None],
                     fa.sum(1)[:, None] + fb.sum(1)[None, :] - inter)
    return np.divide(inter, union, out=np.zeros_like(inter), where=union != 0)


def coco_layout(masks: np.ndarray) -> np.ndarray:
    """What pycocotools' encode demands: (H, W, N) uint8 in Fortran order (a copy)."""
    return np.asfortranarray(masks.transpose(1, 2, 0).view(np.uint8))


def _pycocotools() -> Any:
    try:
        from pycocotools import mask as mask_utils
    except ImportError:
        return None
    return mask_utils


def _supervision() -> Any:
    try:
        import supervision
    except Exception:  # not installed, or broken by its own dependencies
        return None
    return supervision


# --- one workload, in a child process ----------------------------------------------------------


def _dense(name: str, size: tuple[int, int, int], order: str, repeats: int) -> list[dict[str, Any]]:
    n, h, w = size
    import_first = order.startswith("import first")
    if import_first:
        import fastiou  # noqa: F401  (Numba and the kernels loaded before the masks exist)
    a0, b0 = make_masks(n, n, h, w, seed=h)
    expected = reference_iou(a0, b0)
    # Fresh pairs for every call of every implementation, all made before any timing.
    slow_repeats = max(3, repeats // 3)  # the baseline takes ~100x longer
    fast = list(zip(fresh_sets(a0, repeats + 1, 1), fresh_sets(b0, repeats + 1, 2)))
    packing = list(zip(fresh_sets(a0, repeats + 1, 3), fresh_sets(b0, repeats + 1, 4)))
    reading = list(zip(fresh_sets(a0, repeats + 1, 5), fresh_sets(b0, repeats + 1, 6)))
    slow = list(zip(fresh_sets(a0, slow_repeats + 1, 7), fresh_sets(b0, slow_repeats + 1, 8)))
    import fastiou

    def err_of(seed_a: int, seed_b: int) -> Callable[[Any], float]:
        # The first pair is (a0, b0) in the orders drawn from these seeds.
        ia, ib = orders_of(n, 1, seed_a)[0], orders_of(n, 1, seed_b)[0]
        return lambda value: float(
            np.abs(np.asarray(value, np.float64) - expected[np.ix_(ia, ib)]).max())

    def read(a: np.ndarray, b: np.ndarray) -> Any:
        return (np.bitwise_or.reduce(a.reshape(-1).view(np.uint64)),
                np.bitwise_or.reduce(b.reshape(-1).view(np.uint64)))

    impls = [
        ("fastiou mask_iou", fastiou.mask_iou, fast, err_of(1, 2)),
        ("fastiou pack_masks (both sets)",
         lambda a, b: (fastiou.pack_masks(a), fastiou.pack_masks(b)), packing, None),
        ("numpy reads both sets (bitwise_or.reduce)", read, reading, None),
    ]
    baseline = ("numpy float32 matmul", numpy_mask_iou, slow, err_of(7, 8))
    impls = [baseline] + impls if order.endswith("baseline first") else impls + [baseline]
    sv = _supervision()
    if sv is not None:
        impls.append(("supervision mask_iou_batch", sv.mask_iou_batch, slow, err_of(7, 8)))
    rows = []
    for impl, call, inputs, check in impls:
        rows.append({"workload": f"{name} [{order}]", "order": order, "impl": impl, "n": n,
                     "m": n, "height": h, "width": w, "fill": float(a0.mean()),
                     **measure(call, inputs, check=check)})
    return rows


def _rle_iou(name: str, size: tuple[int, int, int, int], repeats: int) -> list[dict[str, Any]]:
    nd, ng, h, w = size
    from fastiou import rle

    gt_masks, dt_masks = make_masks(ng, nd, h, w, seed=7)
    crowd = [i % 5 == 0 for i in range(ng)]  # some crowd regions, as in COCO
    sets = [(rle.encode(d), rle.encode(g), crowd)
            for d, g in zip(fresh_sets(dt_masks, repeats + 1, 1), [gt_masks] * (repeats + 1))]
    expected = np.asarray(rle.iou(*sets[0]))
    impls = [("fastiou rle.iou", rle.iou)]
    mu = _pycocotools()
    if mu is not None:
        impls.append(("pycocotools iou", mu.iou))
    return [{"workload": name, "impl": impl, "n": nd, "m": ng,
             **measure(call, sets, check=lambda v: float(np.abs(np.asarray(v) - expected).max()))}
            for impl, call in impls]


def _rle_encode(name: str, size: tuple[int, int, int], repeats: int) -> list[dict[str, Any]]:
    n, h, w = size
    from fastiou import rle

    masks, _ = make_masks(n, 1, h, w, seed=11)
    expected = [r["counts"] for r in rle.encode(masks)]
    impls: list[tuple[str, Callable[..., Any], list[tuple[Any, ...]]]] = [
        ("fastiou rle.encode", rle.encode, [(masks.copy(),) for _ in range(repeats + 1)])]
    mu = _pycocotools()
    if mu is not None:
        impls.append(("pycocotools encode + Fortran copy", lambda x: mu.encode(coco_layout(x)),
                      [(masks.copy(),) for _ in range(repeats + 1)]))
        impls.append(("pycocotools encode, Fortran input given", mu.encode,
                      [(coco_layout(masks),) for _ in range(repeats + 1)]))
    def check(value: Any) -> float:
        return 0.0 if [r["counts"] for r in value] == expected else 1.0

    return [{"workload": name, "impl": impl, "n": n, **measure(call, inputs, check=check)}
            for impl, call, inputs in impls]


def _small(name: str, kind: str, size: tuple[int, int, int, int], calls_per_repeat: int,
           repeats: int) -> list[dict[str, Any]]:
    """Many small calls, each on sets not used before: mask_iou or rle.iou of n vs m at H x W."""
    n, m, h, w = size
    calls = (repeats + 1) * calls_per_repeat
    import fastiou
    from fastiou import rle

    pairs = [make_masks(n, m, h, w, seed=100 + k) for k in range(calls)]
    if kind == "masks":
        impls = [("fastiou mask_iou", fastiou.mask_iou, [(a.copy(), b.copy()) for a, b in pairs]),
                 ("numpy float32 matmul", numpy_mask_iou, [(a.copy(), b.copy()) for a, b in pairs])]
        expected = reference_iou(*pairs[0])
    else:
        crowd = [False] * m
        sets = [(rle.encode(a), rle.encode(b), crowd) for a, b in pairs]
        impls = [("fastiou rle.iou", rle.iou, sets)]
        mu = _pycocotools()
        if mu is not None:
            copies = [([dict(r) for r in d], [dict(r) for r in g], c) for d, g, c in sets]
            impls.append(("pycocotools iou", mu.iou, copies))
        expected = reference_iou(*pairs[0])
    rows = []
    for impl, call, inputs in impls:
        r = measure(call, inputs,
                    check=lambda v: float(np.abs(np.asarray(v, np.float64) - expected).max()))
        rows.append({"workload": name, "impl": impl, "n": n, "m": m, "height": h, "width": w,
                     "calls": calls, **r})
    return rows


def _rle_counts(name: str, impl: str, size: tuple[int, int, int, int], calls_per_repeat: int,
                repeats: int) -> list[dict[str, Any]]:
    """rle.iou of uncompressed counts (new lists for every call, made before any timing), one
    implementation in this process: fastiou, pycocotools (frPyObjects + iou), or fastiou on the
    same masks as compressed strings ("fastiou strings")."""
    n, m, h, w = size
    calls = (repeats + 1) * calls_per_repeat
    crowd = [i % 5 == 0 for i in range(m)]  # some crowd regions, as in COCO
    gt_masks, dt_masks = make_masks(m, n, h, w, seed=13)
    expected = crowd_reference(dt_masks, gt_masks, crowd)
    orders = orders_of(n, calls, 3)
    sets = [(uncompressed_rle(dt_masks[p]), uncompressed_rle(gt_masks), list(crowd))
            for p in orders]
    if impl.startswith("fastiou"):
        from fastiou import rle

        label, call = "fastiou rle.iou", rle.iou
        if impl == "fastiou strings":
            label = STRINGS
            sets = [(rle.encode(dt_masks[p]), rle.encode(gt_masks), list(crowd)) for p in orders]
    else:
        mu = _pycocotools()
        if mu is None:
            return []
        label = "pycocotools frPyObjects + iou"

        def call(d: Any, g: Any, c: Any) -> Any:
            return mu.iou(mu.frPyObjects(d, h, w), mu.frPyObjects(g, h, w), c)

    first = expected[orders[0]]
    r = measure(call, sets, check=lambda v: float(np.abs(np.asarray(v, np.float64) - first).max()))
    return [{"workload": name, "impl": label, "n": n, "m": m, "height": h, "width": w,
             "calls": calls, **r}]


def workloads(quick: bool) -> list[dict[str, Any]]:
    """Each entry is one child process."""
    out: list[dict[str, Any]] = []
    for n, h, w in DENSE_QUICK if quick else DENSE:
        out += [{"kind": "dense", "name": f"dense {n}x{n} @{h}x{w}", "size": (n, h, w),
                 "order": o} for o in ORDERS]
    nd, ng, h, w = RLE_IOU[quick]
    out.append({"kind": "rle_iou", "name": f"RLE IoU {nd} dt x {ng} gt @{h}x{w}",
                "size": (nd, ng, h, w)})
    n, h, w = RLE_ENCODE[quick]
    out.append({"kind": "rle_encode", "name": f"RLE encode {n} masks @{h}x{w}", "size": (n, h, w)})
    n, m, h, w = SMALL
    out.append({"kind": "small_masks", "name": f"small mask_iou {n} x {m} @{h}x{w}",
                "size": SMALL, "calls": SMALL_CALLS})
    out.append({"kind": "small_rle", "name": f"small RLE IoU {n} dt x {m} gt @{h}x{w}",
                "size": SMALL, "calls": SMALL_CALLS})
    nd, ng, hd, wd = RLE_IOU[quick]
    for name, size, calls in ((f"small uncompressed RLE IoU {n} dt x {m} gt @{h}x{w}", SMALL,
                               SMALL_CALLS),
                              (f"uncompressed RLE IoU {nd} dt x {ng} gt @{hd}x{wd}",
                               RLE_IOU[quick], 1)):
        for impl in ("fastiou", "pycocotools", "fastiou strings"):  # each in its own process
            out.append({"kind": "rle_counts", "impl": impl, "size": size, "calls": calls,
                        "name": name})
    return out


def worker(kind: str, spec: dict[str, Any]) -> list[dict[str, Any]]:
    """One workload in this fresh process (the child side of ``run_worker``)."""
    repeats = spec.get("repeats", REPEATS)
    if kind == "dense":
        return _dense(spec["name"], tuple(spec["size"]), spec["order"], repeats)
    if kind == "rle_iou":
        return _rle_iou(spec["name"], tuple(spec["size"]), repeats)
    if kind == "rle_counts":
        return _rle_counts(spec["name"], spec["impl"], tuple(spec["size"]), spec["calls"], repeats)
    if kind == "rle_encode":
        return _rle_encode(spec["name"], tuple(spec["size"]), repeats)
    if kind.startswith("small_"):
        return _small(spec["name"], kind[len("small_"):], tuple(spec["size"]), spec["calls"],
                      repeats)
    raise ValueError(f"benchmarks.masks: no worker {kind!r}")


# --- the parent: one process per workload, the table, the targets -----------------------------


def run(quick: bool = False) -> dict[str, Any]:
    results: list[dict[str, Any]] = []
    for spec in workloads(quick):
        label = spec["name"] + (f" [{spec['order']}]" if "order" in spec else "") + (
            f" ({spec['impl']})" if "impl" in spec else "")
        progress(f"running {label} ...")
        try:
            results += run_worker("masks", spec["kind"], {**spec, "repeats": REPEATS})
        except RuntimeError as exc:
            results.append(failed(label, spec["kind"], exc))
    for r in results:  # ratio to the baseline of the same process
        base = next((b for b in results if b["workload"] == r["workload"]
                     and b["impl"] in _baselines() and b.get("median_s")), None)
        if base is not None and r.get("median_s"):
            r["baseline"] = base["impl"]
            r["speedup_vs_baseline"] = base["median_s"] / r["median_s"]
    import fastiou

    return {"benchmark": "masks", "quick": quick,
            "engines": {k: v._asdict() for k, v in fastiou.available_backends().items()},
            "results": results}


def _baselines() -> set[str]:
    return {t[2] for t in TARGETS}


def targets(payload: dict[str, Any]) -> list[Target | str]:
    """Every target of the issue, per workload and call order; a plain line where the issue
    gives no figure."""
    out: list[Target | str] = []
    rows = payload["results"]
    for prefix, ours, theirs, goal, aim in TARGETS:
        for workload in dict.fromkeys(r["workload"] for r in rows):
            if not workload.startswith(prefix):
                continue
            if goal is not None:
                out.append(ratio(rows, workload, theirs, ours, goal, aim=aim, source="issue 11",
                                 what=f"{workload}: {theirs} / {ours}"))
                continue
            mine, base = find(rows, workload, ours), find(rows, workload, theirs)
            if mine and base and mine.get("median_s") and base.get("median_s"):
                out.append(f"{workload}: {ours} {fmt_time(mine['median_s'])} vs {theirs} "
                           f"{fmt_time(base['median_s'])}: "
                           f"{base['median_s'] / mine['median_s']:.1f}x (no figure in the issue)")
    for workload in dict.fromkeys(r["workload"] for r in rows):  # what reading the counts costs
        mine, strings = find(rows, workload, "fastiou rle.iou"), find(rows, workload, STRINGS)
        if mine and strings and mine.get("median_s") and strings.get("median_s"):
            out.append(f"{workload}: uncompressed counts {fmt_time(mine['median_s'])} vs the same "
                       f"masks as compressed strings {fmt_time(strings['median_s'])}: "
                       f"{mine['median_s'] / strings['median_s']:.2f}x the time")
    return out


def cells(r: dict[str, Any]) -> dict[str, str]:
    speed, err = r.get("speedup_vs_baseline"), r.get("max_abs_err")
    return {"speedup": "" if speed is None else f"{speed:.1f}x",
            "err": "" if err is None else f"{err:.1e}"}


def main(argv: list[str] | None = None) -> int:
    return cli("masks", __doc__, run, targets,
               [("speedup", "vs baseline"), ("err", "max |err|")], cells, argv, worker)


if __name__ == "__main__":
    sys.exit(main())
