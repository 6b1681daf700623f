"""The ``fastiou`` command: argument parsing, files, progress and tables; the library does the rest.

    fastiou eval                      # COCO (bbox and segm) and semantic, on the sample data
    fastiou eval coco --gt GT.json --results RES.json [--iou-type bbox|segm]
    fastiou eval boxes FILE.npz       # per-image arrays: gt_0, pred_0, scores_0, gt_1, ...
    fastiou eval masks FILE.npz
    fastiou eval semantic --gt DIR --pred DIR --num-classes C [--ignore-index I] [--scheduler ADDR]
    fastiou info | bench [--quick] | demo

Tables go to stdout, progress bars and messages to stderr. ``--json OUT`` writes the result as
JSON (``-``: to stdout, instead of the table), atomically: a temporary file in the same folder,
renamed over OUT once complete. Exit status: 0 success, 1 bad data (one line on stderr naming the
file and the entry; nothing written), 2 usage error.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

import fastiou

__all__ = ["DataError", "count_label_maps", "main"]

DATA = Path(__file__).resolve().parent / "data"
SAMPLE_COCO = (DATA / "coco" / "instances.json", DATA / "coco" / "results.json")
SAMPLE_SEMANTIC = (DATA / "semantic" / "gt", DATA / "semantic" / "pred", 4, 255)
ENGINES = ("numba", "cupy", "jax")
LABEL_MODES = ("L", "P", "I", "I;16", "I;16B", "I;16L")  # single-channel PNG label maps


class DataError(Exception):
    """Bad input: the message is one line naming the file and the entry (exit status 1)."""


# --------------------------------------------------------------------------------------------
# Terminal helpers


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


@contextlib.contextmanager
def _warnings_to_stderr() -> Iterator[None]:
    """Library warnings (e.g. an empty dataset) as one line each on stderr."""

    def show(message: Any, category: type, *_: Any, **__: Any) -> None:
        print(f"fastiou: warning: {_one_line(str(message))}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = show
        yield


def _progress(iterable: Iterable[Any], *, total: int, desc: str, quiet: bool,
              unit: str = "it") -> Iterable[Any]:
    """A bar on stderr for work that lasts over a second; none when stderr is not a terminal
    or with --quiet."""
    if quiet or not sys.stderr.isatty():
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, file=sys.stderr, delay=1.0,
                leave=False, dynamic_ncols=True)


@contextlib.contextmanager
def _stage_bar(desc: str, quiet: bool) -> Iterator[Any]:
    """A progress callback ``(stage, done, total)`` for the library, drawn as a bar on stderr;
    False (no callback) when stderr is not a terminal or with --quiet."""
    if quiet or not sys.stderr.isatty():
        yield False
        return
    from tqdm import tqdm

    bar = tqdm(desc=desc, file=sys.stderr, delay=1.0, leave=False, dynamic_ncols=True)

    def step(stage: str, done: int, total: int) -> None:
        bar.total = total
        bar.set_postfix_str(stage, refresh=False)
        bar.update(done - bar.n)

    try:
        yield step
    finally:
        bar.close()


def _plain(value: Any) -> Any:
    """JSON-ready: NumPy scalars and arrays to Python, NaN and infinities to None."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def _check_output(path: str | None) -> None:
    """Fail before the work, not after it, when OUT cannot be written."""
    if path is None or path == "-":
        return
    folder = Path(path).resolve().parent
    if not folder.is_dir():
        raise DataError(f"{path}: cannot write the result, folder {folder} does not exist")
    if Path(path).is_dir():
        raise DataError(f"{path}: cannot write the result, it is a folder")
    if not os.access(folder, os.W_OK):
        raise DataError(f"{path}: cannot write the result, folder {folder} is not writable")


def _write_json(path: str, payload: dict[str, Any]) -> None:
    text = json.dumps(_plain(payload), indent=2, allow_nan=False) + "\n"
    if path == "-":
        sys.stdout.write(text)
        return
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _table(header: list[str], rows: list[list[str]], align: str) -> str:
    """Columns padded to their widest cell; ``align`` is one 'l' or 'r' per column."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if a == "r" else c.ljust(w)
                         for c, w, a in zip(cells, widths, align)).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def _num(value: float, digits: int = 4) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


# --------------------------------------------------------------------------------------------
# eval coco


def _eval_coco(args: argparse.Namespace, iou_type: str) -> tuple[dict[str, Any], str]:
    gt_path, res_path = (Path(args.gt), Path(args.results)) if args.gt else SAMPLE_COCO
    from . import coco

    with _stage_bar(f"coco {iou_type}", args.quiet) as progress:
        try:
            result = coco.evaluate(str(gt_path), str(res_path), iou_type, backend=args.backend,
                                   progress=progress)
        except ValueError as exc:  # names the file, the entry and the field
            raise DataError(_one_line(str(exc))) from None
    title = f"COCO {iou_type} evaluation of " + (
        f"{gt_path} (ground truth) and {res_path} (results)" if args.gt else
        "the sample data shipped with fastiou (fastiou/data/coco)")
    payload = {"command": "eval coco", "iou_type": iou_type, "gt": str(gt_path),
               "results": str(res_path), **result.to_dict()}
    return payload, f"{title}\n{result.table()}"


# --------------------------------------------------------------------------------------------
# eval boxes / masks

NPZ_KEY = re.compile(r"(gt|pred|scores)_(0|[1-9][0-9]*)")


def _load_npz(path: Path, kind: str, quiet: bool) -> tuple[list[Any], list[Any], list[Any] | None]:
    """Per-image arrays from ``gt_<i>``, ``pred_<i>`` and (all or none) ``scores_<i>``."""
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: not a readable .npz archive ({_one_line(str(exc))})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(f"{path}: a single array, expected an .npz archive with keys gt_0, "
                        "pred_0, ... (numpy.savez)")
    with archive:
        found: dict[str, set[int]] = {"gt": set(), "pred": set(), "scores": set()}
        for key in archive.files:
            m = NPZ_KEY.fullmatch(key)
            if m is None:
                raise DataError(f"{path}: entry {key!r} is not one of gt_<i>, pred_<i>, "
                                "scores_<i> (i = 0, 1, ...)")
            found[m[1]].add(int(m[2]))
        n = len(found["gt"])
        if n == 0:
            raise DataError(f"{path}: no images (expected entries gt_0, pred_0, ...)")
        expected = set(range(n))
        for name, needed in (("gt", True), ("pred", True), ("scores", bool(found["scores"]))):
            if needed and found[name] != expected:
                i = min((expected - found[name]) or (found[name] - expected))
                what = "missing" if i in expected else f"present, but there is no gt_{i}"
                raise DataError(f"{path}: entry {name}_{i} is {what} (images are numbered "
                                f"0 to {n - 1} by their gt_<i> entries)")
        names = ["gt", "pred"] + (["scores"] if found["scores"] else [])
        data: dict[str, list[Any]] = {k: [] for k in names}
        ndim = {"boxes": 2, "masks": 3}[kind]
        for i in _progress(range(n), total=n, desc=f"reading {path.name}", quiet=quiet,
                           unit="image"):
            for name in names:
                key = f"{name}_{i}"
                try:
                    value = archive[key]
                except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
                    raise DataError(f"{path}: entry {key} is unreadable "
                                    f"({_one_line(str(exc))})") from None
                want = 1 if name == "scores" else ndim
                if value.ndim != want or value.dtype.kind not in "biuf":
                    shape = {"boxes": "(N, 4) or (N, 6)", "masks": "(N, H, W)"}[kind]
                    expect = "(P,) numbers" if name == "scores" else f"{shape} {kind}"
                    raise DataError(f"{path}: entry {key} has shape {value.shape} and dtype "
                                    f"{value.dtype}, expected {expect}")
                data[name].append(value)
    return data["gt"], data["pred"], data.get("scores")


def _eval_arrays(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    path = Path(args.file)
    gt, pred, scores = _load_npz(path, args.kind, args.quiet)
    try:
        report = fastiou.evaluate(gt, pred, scores=scores, iou_threshold=args.iou_threshold,
                                  method=args.method, fmt=getattr(args, "fmt", "xyxy"),
                                  backend=args.backend)
    except ValueError as exc:
        # gt[3] -> gt_3: the message names the archive's entry
        message = re.sub(r"\b(gt|pred|scores)\[(\d+)\]", r"\1_\2", _one_line(str(exc)))
        raise DataError(f"{path}: {message}") from None
    title = (f"{args.kind}: {path}, {report.num_images} images, {args.method} matching "
             f"at IoU >= {args.iou_threshold:g}")
    payload = {"command": f"eval {args.kind}", "file": str(path), **report.to_dict()}
    return payload, f"{title}\n{report.table()}"


# --------------------------------------------------------------------------------------------
# eval semantic


def _label_pairs(gt_dir: Path, pred_dir: Path) -> list[tuple[Path, Path]]:
    """(gt, pred) PNG paths paired by file name; every file must have its partner."""
    for d in (gt_dir, pred_dir):
        if not d.is_dir():
            raise DataError(f"{d}: not a folder")
    gt = {p.name: p for p in gt_dir.iterdir() if p.suffix.lower() == ".png" and p.is_file()}
    pred = {p.name: p for p in pred_dir.iterdir() if p.suffix.lower() == ".png" and p.is_file()}
    if not gt:
        raise DataError(f"{gt_dir}: no .png label maps")
    for name in sorted(gt):
        if name not in pred:
            raise DataError(f"{pred_dir / name}: missing (the prediction for {gt[name]})")
    for name in sorted(pred):
        if name not in gt:
            raise DataError(f"{pred[name]}: no ground truth of that name in {gt_dir}")
    return [(gt[name].resolve(), pred[name].resolve()) for name in sorted(gt)]


def _read_png(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            if image.format != "PNG":
                raise DataError(f"{path}: a {image.format} image, expected a PNG label map")
            if image.mode not in LABEL_MODES:
                raise DataError(f"{path}: a {image.mode} image; a label map is a single-channel "
                                "PNG (8- or 16-bit grayscale, or palette indices)")
            return np.asarray(image)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError,
            Image.DecompressionBombError) as exc:
        raise DataError(f"{path}: unreadable PNG ({_one_line(str(exc)) or type(exc).__name__})"
                        ) from None


def _bad_labels(gt_path: Path, pred_path: Path, target: np.ndarray, pred: np.ndarray,
                num_classes: int, ignore_index: int | None) -> DataError | None:
    kept = target != ignore_index if ignore_index is not None else np.ones(target.shape, bool)
    for path, values in ((gt_path, target[kept]), (pred_path, pred[kept])):
        bad = np.unique(values[(values < 0) | (values >= num_classes)])
        if bad.size:
            shown = ", ".join(map(str, bad[:8].tolist())) + (", ..." if bad.size > 8 else "")
            ignore = ("" if ignore_index is None else
                      f" (and {ignore_index}, ignored, in the ground truth)")
            return DataError(f"{path}: labels must be in [0, {num_classes}){ignore}, "
                             f"found {shown}")
    return None


def count_label_maps(pairs: list[tuple[Path, Path]], num_classes: int, ignore_index: int | None,
                     backend: str | None = None) -> fastiou.MeanIoU:
    """A :class:`fastiou.MeanIoU` over the (gt, pred) PNG files: one Dask task's work."""
    metric = fastiou.MeanIoU(num_classes, ignore_index=ignore_index, backend=backend)
    for gt_path, pred_path in pairs:
        _count_pair(metric, gt_path, pred_path)
    return metric


def _count_pair(metric: fastiou.MeanIoU, gt_path: Path, pred_path: Path) -> None:
    target, pred = _read_png(gt_path), _read_png(pred_path)
    if target.shape != pred.shape:
        raise DataError(f"{pred_path}: size {pred.shape[1]}x{pred.shape[0]} differs from its "
                        f"ground truth {gt_path} ({target.shape[1]}x{target.shape[0]})")
    try:
        metric.update(pred, target)
    except ValueError as exc:
        raise _bad_labels(gt_path, pred_path, target, pred, metric.num_classes,
                          metric.ignore_index) or DataError(
            f"{gt_path}: {_one_line(str(exc))}") from None


def _count_on_cluster(address: str, timeout: float, pairs: list[tuple[Path, Path]],
                      num_classes: int, ignore_index: int | None, backend: str | None,
                      quiet: bool) -> fastiou.MeanIoU:
    try:
        from dask.distributed import Client, as_completed
    except ImportError:
        raise DataError("--scheduler needs dask.distributed: pip install 'dask[distributed]'"
                        ) from None
    try:
        client = Client(address, timeout=timeout)
    except (OSError, TimeoutError, ValueError) as exc:
        raise DataError(f"{address}: cannot connect to the Dask scheduler "
                        f"({_one_line(str(exc))})") from None
    with client:
        workers = max(1, len(client.scheduler_info().get("workers", {})))
        size = max(1, math.ceil(len(pairs) / (4 * workers)))
        chunks = [pairs[i:i + size] for i in range(0, len(pairs), size)]
        futures = client.map(count_label_maps, chunks, num_classes=num_classes,
                             ignore_index=ignore_index, backend=backend, pure=False)
        metric = fastiou.MeanIoU(num_classes, ignore_index=ignore_index, backend=backend)
        try:
            for future in _progress(as_completed(futures), total=len(futures),
                                    desc="label maps (Dask)", quiet=quiet, unit="task"):
                metric.merge(future.result())
        except DataError:  # a bad file, read by a worker
            raise
        except Exception as exc:  # the cluster itself: a worker lost, the connection closed
            raise DataError(f"{address}: the Dask cluster failed ({type(exc).__name__}: "
                            f"{_one_line(str(exc))})") from None
        finally:
            client.cancel(futures)
    return metric


def _eval_semantic(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    if args.gt is None:
        gt_dir, pred_dir, num_classes, ignore_index = SAMPLE_SEMANTIC
    else:
        gt_dir, pred_dir = Path(args.gt), Path(args.pred)
        num_classes, ignore_index = args.num_classes, args.ignore_index
    pairs = _label_pairs(gt_dir, pred_dir)
    if args.scheduler:
        metric = _count_on_cluster(args.scheduler, args.connect_timeout, pairs, num_classes,
                                   ignore_index, args.backend, args.quiet)
    else:
        metric = fastiou.MeanIoU(num_classes, ignore_index=ignore_index, backend=args.backend)
        for gt_path, pred_path in _progress(pairs, total=len(pairs), desc="label maps",
                                            quiet=args.quiet, unit="map"):
            _count_pair(metric, gt_path, pred_path)
    cm = _to_numpy(metric.confusion_matrix()).astype(np.int64)
    per_class = _to_numpy(fastiou.iou_from_confusion(cm, ignore_index=ignore_index))
    miou = float(_to_numpy(metric.compute()))  # NaN, with a warning, if no class is present
    total = int(cm.sum())
    payload = {
        "command": "eval semantic", "gt": str(gt_dir), "pred": str(pred_dir),
        "num_images": len(pairs), "num_classes": num_classes, "ignore_index": ignore_index,
        "scheduler": args.scheduler, "mean_iou": miou, "per_class_iou": per_class,
        "pixel_accuracy": float(np.trace(cm) / total) if total else math.nan,
        "pixels": total, "confusion_matrix": cm,
    }
    rows = [[str(c), _num(per_class[c]), str(int(cm[c].sum())), str(int(cm[:, c].sum()))]
            for c in range(num_classes)]
    present = int(np.isfinite(per_class).sum())
    where = f"on the Dask cluster at {args.scheduler}" if args.scheduler else "in this process"
    text = "\n".join([
        f"semantic segmentation of {len(pairs)} label maps: " + (
            f"{gt_dir} (ground truth) and {pred_dir} (predictions)" if args.gt else
            "the sample data shipped with fastiou (fastiou/data/semantic)") + f", counted {where}",
        f"{num_classes} classes" + ("" if ignore_index is None else
                                    f", ground-truth pixels labelled {ignore_index} ignored"),
        "",
        _table(["class", "IoU", "gt pixels", "predicted pixels"], rows, "rrrr"),
        "",
        f"mean IoU over the {present} classes present: {_num(miou)}",
        f"pixel accuracy: {_num(payload['pixel_accuracy'])} of {total} pixels",
    ])
    return payload, text


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "get") and type(x).__module__.startswith("cupy"):
        return x.get()
    return np.asarray(x)


# --------------------------------------------------------------------------------------------
# info, bench, demo

OPTIONAL = ("jax", "jaxlib", "cupy-cuda12x", "cupy-cuda13x", "pycocotools", "pillow", "tqdm",
            "dask", "distributed", "scipy")


def _version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _info(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    import platform

    # One parallel call starts Numba's threading layer, so that the engine can name it.
    fastiou.box_iou(np.zeros((64, 4), np.float32), np.zeros((64, 4), np.float32))
    engines = fastiou.available_backends()
    packages = {d: _version(d) for d in ("numpy", "numba", "tbb", *OPTIONAL)}
    payload = {
        "fastiou": fastiou.__version__, "python": platform.python_version(),
        "platform": f"{platform.system()} {platform.machine()}", "cores": os.cpu_count(),
        "engines": {name: {"available": i.available, "detail": i.detail}
                    for name, i in engines.items()},
        "packages": packages,
    }
    rows = [[name, "yes" if i.available else "no", _one_line(i.detail)]
            for name, i in engines.items()]
    installed = ", ".join(f"{d} {v}" for d, v in packages.items() if v)
    missing = ", ".join(d for d, v in packages.items() if not v)
    text = "\n".join([
        f"fastiou {fastiou.__version__}, Python {payload['python']} on {payload['platform']}, "
        f"{payload['cores']} cores",
        "",
        _table(["engine", "available", "detail"], rows, "lll"),
        "",
        f"installed: {installed}",
        f"not installed: {missing or 'none'}",
    ])
    return payload, text


BENCH_MODULES = ("startup", "boxes", "masks", "semantic", "reductions", "evaluate", "coco")


def _benchmark_modules() -> tuple[Path, list[str]] | None:
    """The source checkout's root and its benchmark modules, when fastiou runs from one."""
    root = Path(__file__).resolve().parent.parent
    bench = root / "benchmarks"
    if not (bench / "__init__.py").is_file() or not (bench / "_common.py").is_file():
        return None
    return root, [m for m in BENCH_MODULES if (bench / f"{m}.py").is_file()]


def _builtin_bench(quick: bool, quiet: bool) -> tuple[dict[str, Any], str]:
    rng = np.random.default_rng(0)

    def boxes(n: int) -> np.ndarray:
        xy = rng.uniform(0, 900, (n, 2))
        return np.concatenate([xy, xy + rng.uniform(5, 100, (n, 2))], 1).astype(np.float32)

    nb, nm, side = (500, 20, 128) if quick else (2000, 50, 256)
    b1, b2 = boxes(nb), boxes(nb)
    m1 = rng.random((nm, side, side)) < 0.3
    m2 = rng.random((nm, side, side)) < 0.3
    workloads = [
        (f"box_iou {nb}x{nb} float32", lambda xp: (xp(b1), xp(b2)), fastiou.box_iou),
        (f"mask_iou {nm}x{nm} at {side}x{side} bool", lambda xp: (xp(m1), xp(m2)),
         fastiou.mask_iou),
    ]
    engines = {n: i for n, i in fastiou.available_backends().items() if i.available}
    rows, results = [], []
    jobs = [(w, e) for w in workloads for e in engines]
    for (name, make, fn), engine in _progress(jobs, total=len(jobs), desc="timing",
                                              quiet=quiet):
        xp = _array_module(engine)
        a, b = make(xp)
        sync = _sync(engine)
        t0 = time.perf_counter()
        sync(fn(a, b))
        first = time.perf_counter() - t0
        times = []
        for _ in range(3 if quick else 7):
            t0 = time.perf_counter()
            sync(fn(a, b))
            times.append(time.perf_counter() - t0)
        median = float(np.median(times))
        results.append({"workload": name, "engine": engine, "first_call_s": first,
                        "median_s": median})
        rows.append([name, engine, f"{median * 1e3:.3f} ms", f"{first * 1e3:.1f} ms"])
    text = "\n".join([
        "built-in timing (no benchmarks/ folder next to this installation of fastiou; the full "
        "benchmarks compare with NumPy, torchvision and pycocotools in a source checkout)",
        "",
        _table(["workload", "engine", "median", "first call"], rows, "llrr"),
    ])
    return {"command": "bench", "kind": "builtin", "quick": quick, "results": results}, text


def _array_module(engine: str) -> Any:
    if engine == "jax":
        import jax.numpy as jnp

        return jnp.asarray
    if engine == "cupy":
        import cupy

        return cupy.asarray
    return np.asarray


def _sync(engine: str) -> Any:
    if engine == "numba":
        return lambda r: r
    return lambda r: r.block_until_ready() if engine == "jax" else r.get()


def _bench(args: argparse.Namespace) -> int:
    found = None if args.builtin else _benchmark_modules()
    if found is None:
        payload, text = _builtin_bench(args.quick, args.quiet)
        return _finish(args, payload, text)
    root, modules = found
    results = root / "benchmarks" / "results"
    print(f"benchmarks from the source checkout {root}: {', '.join(modules)} "
          f"({'quick' if args.quick else 'full'} runs; each prints its table and writes JSON to "
          f"{results})", file=sys.stderr)
    runs = {}
    to_stderr = args.json == "-"  # stdout carries only the JSON index then
    for module in modules:
        print(f"\n== python -m benchmarks.{module}{' --quick' if args.quick else ''}", flush=True,
              file=sys.stderr if to_stderr else sys.stdout)
        cmd = [sys.executable, "-m", f"benchmarks.{module}", *(["--quick"] if args.quick else [])]
        rc = subprocess.run(cmd, cwd=root, stdout=2 if to_stderr else None).returncode
        if rc:
            print(f"fastiou: benchmarks.{module} exited with status {rc}", file=sys.stderr)
        runs[module] = {"exit_status": rc,
                        "results": str(results / f"{module}{'-quick' if args.quick else ''}.json")}
    if args.json:  # an index of the modules' own JSON files
        _write_json(args.json, {"command": "bench", "kind": "benchmarks", "quick": args.quick,
                                "modules": runs})
    return 1 if any(r["exit_status"] for r in runs.values()) else 0


def _demo(args: argparse.Namespace) -> int:
    data = json.loads((DATA / "classic.json").read_text())
    a = np.array([data["classic"]["box_a"]], dtype=np.float64)
    b = np.array([data["classic"]["box_b"]], dtype=np.float64)
    area_a, area_b = (float(x) for x in fastiou.box_area(np.concatenate([a, b])))
    inter = float(fastiou.box_ioa(a, b)[0, 0]) * area_a
    union = area_a + area_b - inter
    iou = float(fastiou.box_iou(a, b)[0, 0])
    print(f"fastiou {fastiou.__version__}: the classic example")
    print(f"  box A {data['classic']['box_a']}, box B {data['classic']['box_b']} ({data['fmt']})")
    print(f"  intersection {inter:g}, union {union:g}, IoU {iou:.3f} -> {fastiou.iou_quality(iou)}")

    print("\nIoU versus GIoU (NumPy input, Numba engine)")
    pa = np.array([p["box_a"] for p in data["pairs"]], dtype=np.float64)
    pb = np.array([p["box_b"] for p in data["pairs"]], dtype=np.float64)
    ious = fastiou.box_iou(pa, pb, aligned=True)
    gious = fastiou.generalized_box_iou(pa, pb, aligned=True)
    rows = [[p["name"], f"{i:.3f}", f"{g:.3f}", fastiou.iou_quality(i)]
            for p, i, g in zip(data["pairs"], ious, gious)]
    print(_indent(_table(["pair", "IoU", "GIoU", "reading"], rows, "lrrl")))

    print("\nEngines on this machine (the classic pair)")
    rows = []
    for engine, info in fastiou.available_backends().items():
        if not info.available:
            rows.append([engine, "-", "-", "not available", _one_line(info.detail)])
            continue
        xp = _array_module(engine)
        r_iou, r_giou = fastiou.box_iou(xp(a), xp(b)), fastiou.generalized_box_iou(xp(a), xp(b))
        kind = f"{type(r_iou).__module__.split('.')[0]}.{type(r_iou).__name__}"
        rows.append([engine, f"{float(r_iou[0, 0]):.3f}", f"{float(r_giou[0, 0]):.3f}", kind,
                     info.detail])
    print(_indent(_table(["engine", "IoU", "GIoU", "result type", "detail"], rows, "lrrll")))
    print("\nNext: fastiou eval (COCO and semantic evaluation of the sample data); "
          "fastiou --help for every command")
    return 0


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


# --------------------------------------------------------------------------------------------
# Command line


def _threshold(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None


DESCRIPTION = """\
Intersection over Union from the command line: evaluate detections, instance masks and
semantic segmentation from files, describe this installation, time the engines.
With no command, runs the demo: the classic IoU example on every engine available here.

  fastiou eval                    COCO bbox and segm, and semantic mIoU, of the sample data
  fastiou eval coco --gt GT.json --results RES.json [--iou-type segm]
  fastiou eval boxes FILE.npz     mean IoU and its grade (entries gt_0, pred_0, scores_0, ...)
  fastiou eval semantic --gt DIR --pred DIR --num-classes C [--ignore-index I]
  fastiou info | bench [--quick] | demo

Exit status: 0 success, 1 bad data (one line on stderr naming the file and the entry),
2 usage error."""

NPZ_HELP = """\
FILE is an .npz archive (numpy.savez) with one entry per image and kind:
gt_<i> and pred_<i> for i = 0 .. n-1, and optionally scores_<i> for every image
(the greedy matching takes predictions by descending score; without scores, in order).
boxes: gt_<i> (N, 4) or (N, 6), pred_<i> (P, 4) or (P, 6) in --fmt; masks: (N, H, W)
bool or integer (non-zero is foreground), the same (H, W) within an image. An image without
objects is an empty array, e.g. numpy.zeros((0, 4)). Arrays are read with allow_pickle=False."""


def _common(p: argparse.ArgumentParser, *, backend: bool = True, json_out: bool = True) -> None:
    """Options every command takes, after the command or before it (``fastiou eval --quiet``)."""
    if json_out:
        p.add_argument("--json", metavar="OUT", default=argparse.SUPPRESS,
                       help="also write the result as JSON to OUT (atomically); '-' writes it to "
                            "stdout instead of the table")
    p.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                   help="no progress bar (there is none anyway when stderr is not a terminal)")
    if backend:
        p.add_argument("--backend", choices=ENGINES, default=argparse.SUPPRESS,
                       help="engine to compute with (default: numba, for data read from files)")


def parser(prog: str = "fastiou") -> argparse.ArgumentParser:
    raw = argparse.RawDescriptionHelpFormatter
    top = argparse.ArgumentParser(prog=prog, description=DESCRIPTION, formatter_class=raw)
    top.add_argument("--version", action="version", version=f"fastiou {fastiou.__version__}")
    sub = top.add_subparsers(dest="command", metavar="COMMAND")

    ev = sub.add_parser("eval", help="evaluate predictions from files (default: the sample data)",
                        description="Evaluate predictions from files. Without a kind, runs COCO "
                        "bbox and segm and semantic evaluation on the sample data shipped with "
                        "fastiou.", formatter_class=raw)
    _common(ev)
    kinds = ev.add_subparsers(dest="kind", metavar="KIND")

    c = kinds.add_parser("coco", help="COCO AP/AR of a results file (pycocotools' numbers)",
                         description="COCO AP/AR, the 12 numbers of pycocotools' summarize(), "
                         "per-category AP and the mean IoU at 0.5. Without --gt and --results: "
                         "the sample data.")
    c.add_argument("--gt", metavar="GT.json", help="COCO annotation file (instances_*.json)")
    c.add_argument("--results", metavar="RES.json", help="COCO results file (list of detections)")
    c.add_argument("--iou-type", choices=("bbox", "segm"), default="bbox",
                   help="boxes or masks (default bbox)")
    _common(c)
    c.set_defaults(usage_error=c.error)

    for kind in ("boxes", "masks"):
        k = kinds.add_parser(kind, help=f"mean IoU and its grade of per-image {kind} in an .npz",
                             description=f"Match predicted {kind} to ground truth in every image "
                             "and report the mean IoU over all objects (missed ones count 0) and "
                             "its grade.", epilog=NPZ_HELP, formatter_class=raw)
        k.add_argument("file", metavar="FILE.npz")
        k.add_argument("--iou-threshold", type=_threshold, default=0.5, metavar="T",
                       help="least IoU of a match (default 0.5)")
        k.add_argument("--method", choices=("greedy", "optimal"), default="greedy",
                       help="COCO's greedy matching by score, or the optimal assignment")
        if kind == "boxes":
            k.add_argument("--fmt", choices=("xyxy", "xywh", "cxcywh"), default="xyxy",
                           help="box layout (default xyxy)")
        _common(k)

    s = kinds.add_parser("semantic", help="per-class IoU and mIoU of PNG label maps",
                         description="Per-class IoU and mean IoU of PNG label maps (8- or 16-bit "
                         "grayscale or palette), paired by file name between the two folders, "
                         "counted one map at a time. Without --gt and --pred: the sample data.")
    s.add_argument("--gt", metavar="DIR", help="folder of ground-truth label maps")
    s.add_argument("--pred", metavar="DIR", help="folder of predicted label maps, same names")
    s.add_argument("--num-classes", type=_positive, metavar="C",
                   help="number of classes; labels are 0 .. C-1")
    s.add_argument("--ignore-index", type=_integer, metavar="I",
                   help="ground-truth label to ignore (e.g. 255)")
    s.add_argument("--scheduler", metavar="ADDRESS",
                   help="count on this Dask cluster (e.g. tcp://host:8786); every worker must "
                        "see the files at the same paths and have fastiou installed")
    s.add_argument("--connect-timeout", type=_seconds, default=30.0, metavar="SECONDS",
                   help="how long to try to reach the scheduler (default 30)")
    _common(s)
    s.set_defaults(usage_error=s.error)

    i = sub.add_parser("info", help="engines, devices, versions, threading layer",
                       description="What fastiou can run here: each engine, its device and "
                       "threads or the reason it is not available, and the versions installed.")
    _common(i, backend=False)
    b = sub.add_parser("bench", help="time the engines on this machine",
                       description="In a source checkout, runs the benchmark modules "
                       "(benchmarks/*.py, which also time NumPy, torchvision and pycocotools); "
                       "otherwise, or with --builtin, a short built-in timing of box_iou and "
                       "mask_iou on every engine available.")
    b.add_argument("--quick", action="store_true", help="small sizes, a smoke run")
    b.add_argument("--builtin", action="store_true",
                   help="the built-in timing even in a source checkout")
    _common(b, backend=False)
    d = sub.add_parser("demo", help="the classic IoU example on every engine available",
                       description="The classic IoU example (two boxes shipped with the "
                       "package), IoU versus GIoU on a few pairs, and the same pair on every "
                       "engine available here, with the reason for each engine that is not.")
    _common(d, backend=False, json_out=False)
    return top


def _finish(args: argparse.Namespace, payload: dict[str, Any], text: str) -> int:
    if args.json:
        _write_json(args.json, payload)
    if args.json != "-":
        print(text, flush=True)
    return 0


def _eval(args: argparse.Namespace) -> int:
    if args.kind == "coco":
        payload, text = _eval_coco(args, args.iou_type)
    elif args.kind in ("boxes", "masks"):
        payload, text = _eval_arrays(args)
    elif args.kind == "semantic":
        payload, text = _eval_semantic(args)
    else:  # everything on the sample data
        args.gt = args.results = args.pred = args.scheduler = None
        parts = [_eval_coco(args, "bbox"), _eval_coco(args, "segm"), _eval_semantic(args)]
        payload = {"command": "eval", "coco_bbox": parts[0][0], "coco_segm": parts[1][0],
                   "semantic": parts[2][0]}
        text = "\n\n".join(t for _, t in parts)
    return _finish(args, payload, text)


def _check_usage(args: argparse.Namespace) -> None:
    """Combinations argparse cannot express: exit 2 with the usage of the command."""
    kind, error = getattr(args, "kind", None), getattr(args, "usage_error", None)
    if kind == "coco" and (args.gt is None) != (args.results is None):
        error("--gt and --results go together (neither: the sample data)")
    if kind == "semantic":
        if (args.gt is None) != (args.pred is None):
            error("--gt and --pred go together (neither: the sample data)")
        if args.gt is not None and args.num_classes is None:
            error("--num-classes is required with --gt and --pred")
        if args.gt is None and (args.num_classes is not None or args.ignore_index is not None):
            error("--num-classes and --ignore-index need --gt and --pred (the sample data has "
                  "its own: 4 classes, 255 ignored)")


def _check_backend(name: str | None) -> None:
    if name is None:
        return
    from . import _dispatch

    try:
        _dispatch.load(name).describe()  # as available_backends() checks it
    except Exception as exc:  # import, driver or device: the engine's own reason
        raise DataError(f"--backend {name}: not available here ({_one_line(str(exc))})") from None


def main(argv: list[str] | None = None, prog: str = "fastiou") -> int:
    """Run the ``fastiou`` command; returns the exit status (argparse exits 2 on usage errors)."""
    p = parser(prog)
    args = p.parse_args(argv)
    for name, default in (("json", None), ("quiet", False), ("backend", None)):
        if not hasattr(args, name):
            setattr(args, name, default)
    _check_usage(args)
    command = args.command or "demo"
    try:
        with _warnings_to_stderr():
            _check_output(args.json)
            _check_backend(args.backend)
            if command == "eval":
                return _eval(args)
            if command == "info":
                return _finish(args, *_info(args))
            if command == "bench":
                return _bench(args)
            return _demo(args)
    except DataError as exc:
        print(f"{prog}: error: {_one_line(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `fastiou eval | head`: the reader left, nothing to say
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
