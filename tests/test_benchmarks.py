"""The benchmarks' harness: fresh inputs per call, targets and ``--check``, and every benchmark
module run end to end on tiny sizes (workers in fresh processes). No timing is asserted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks import _common, boxes, evaluate, masks, reductions, semantic, startup
from benchmarks._common import Target, measure, missed, ratio, time_limit

TIMING_KEYS = {"workload", "impl", "median_s", "p90_s", "first_call_s", "repeats"}


# --- measure -------------------------------------------------------------------------------------


def test_measure_uses_each_input_once_and_reports_the_first_call_apart() -> None:
    inputs = [(np.full(3, k),) for k in range(6)]
    seen: list[int] = []
    checked: list[Any] = []

    def call(x: np.ndarray) -> int:
        seen.append(id(x))
        return int(x[0])

    row = measure(call, inputs, check=lambda r: checked.append(r) or 0.5)
    assert seen == [id(args[0]) for args in inputs]  # in order, each once, none reused
    assert checked == [0]  # the check sees the first call's result only
    assert row["repeats"] == 5 and row["max_abs_err"] == 0.5
    assert set(row) >= {"first_call_s", "median_s", "p90_s", "total_s"}
    assert row["median_s"] <= row["p90_s"]


def test_measure_makes_inputs_between_calls_when_given_a_function() -> None:
    log: list[str] = []

    def fresh(k: int) -> tuple[int]:
        log.append(f"make {k}")
        return (k,)

    row = measure(lambda k: log.append(f"call {k}"), fresh, repeats=3)
    assert log == ["make 0", "call 0", "make 1", "call 1", "make 2", "call 2", "make 3", "call 3"]
    assert row["repeats"] == 3


def test_measure_finish_is_applied_to_every_result() -> None:
    finished: list[int] = []
    measure(lambda k: k, [(k,) for k in range(4)], finish=finished.append)
    assert finished == [0, 1, 2, 3]


def test_measure_needs_a_first_call_and_a_repeat() -> None:
    with pytest.raises(ValueError, match="measure: inputs needs at least 2"):
        measure(lambda: None, [()])


def test_p90_interpolates() -> None:
    assert _common.p90([float(k) for k in range(1, 12)]) == pytest.approx(10.0)
    assert _common.p90([4.0]) == 4.0


# --- targets and --check -------------------------------------------------------------------------


ROWS = [
    {"workload": "w", "impl": "peer", "median_s": 0.5},
    {"workload": "w", "impl": "ours", "median_s": 0.01},
    {"workload": "w", "impl": "jax", "median_s": 0.03},
    {"workload": "w", "impl": "broken", "median_s": None, "error": "boom"},
]


def test_ratio_targets_are_judged_both_ways() -> None:
    fast = ratio(ROWS, "w", "peer", "ours", 50)
    assert fast.value == pytest.approx(50.0) and fast.met is True
    assert ratio(ROWS, "w", "peer", "ours", 51).met is False
    slow = ratio(ROWS, "w", "jax", "ours", 2, at_least=False)
    assert slow.value == pytest.approx(3.0) and slow.met is False
    assert "NOT met" in slow.line() and "<= 2.00x" in slow.line()
    assert ratio(ROWS, "w", "jax", "ours", 3, at_least=False).met is True


def test_a_target_without_its_rows_is_not_measured_and_counts_as_missed() -> None:
    for target in (ratio(ROWS, "w", "torchvision", "ours", 5),
                   ratio(ROWS, "w", "broken", "ours", 5),
                   time_limit(ROWS, "other", "ours", 1.0)):
        assert target.value is None and target.met is None
        assert target.line().endswith("not measured")
        assert missed([target]) == [target.line()]


def test_time_and_yes_no_targets() -> None:
    assert time_limit(ROWS, "w", "ours", 6e-6).met is False
    assert "10.00 ms" in time_limit(ROWS, "w", "ours", 6e-6).line()
    assert time_limit(ROWS, "w", "ours", 0.02).met is True
    assert Target("fork", 1.0, 1.0, unit="ok").line().endswith("yes (target must be yes): met")
    assert Target("fork", 0.0, 1.0, unit="ok").met is False


def test_missed_reads_the_plain_lines_of_older_benchmarks() -> None:
    lines = ["a: 3x (target >= 5x): NOT met", "b: 6x (target >= 5x): met", "data: 5 images"]
    assert missed(lines) == [lines[0]]


def _fake_cli(tmp_path: Path, capsys: Any, medians: dict[str, float],
              *flags: str) -> tuple[int, dict, str]:
    def run(quick: bool) -> dict[str, Any]:
        return {"results": [{"workload": "w", "impl": k, "median_s": v, "p90_s": v,
                             "first_call_s": 2 * v} for k, v in medians.items()]}

    def targets(payload: dict[str, Any]) -> list[Target]:
        return [ratio(payload["results"], "w", "peer", "ours", 50, source="issue 11 item 5")]

    out = tmp_path / "fake.json"
    code = _common.cli("fake", "A fake benchmark.", run, targets, [], lambda r: {},
                       ["--json", str(out), *flags])
    return code, json.loads(out.read_text()), capsys.readouterr().out


def test_check_exits_1_only_when_a_target_is_missed(tmp_path, capsys) -> None:
    code, payload, text = _fake_cli(tmp_path, capsys, {"peer": 0.4, "ours": 0.01}, "--check")
    assert code == 1 and "40.0x (target >= 50.0x, issue 11 item 5)" in text and "NOT met" in text
    target = payload["targets"][0]
    assert target["met"] is False and target["value"] == pytest.approx(40)
    code, payload, text = _fake_cli(tmp_path, capsys, {"peer": 0.6, "ours": 0.01}, "--check")
    assert code == 0 and payload["targets"][0]["met"] is True
    # without --check the exit status does not depend on the targets
    code, _, _ = _fake_cli(tmp_path, capsys, {"peer": 0.4, "ours": 0.01})
    assert code == 0
    # a peer that did not run: not measured, a failed check
    code, payload, text = _fake_cli(tmp_path, capsys, {"ours": 0.01}, "--check")
    assert code == 1 and payload["targets"][0]["met"] is None and "not measured" in text


def test_the_payload_carries_the_machine(tmp_path, capsys) -> None:
    _, payload, text = _fake_cli(tmp_path, capsys, {"peer": 0.6, "ours": 0.01})
    assert {"cpu", "cores", "python", "numpy", "load_average"} <= set(payload["machine"])
    assert payload["benchmark"] == "fake" and "wall_s" in payload
    assert "implementation" in text and "p90" in text and "first call" in text


def test_a_failed_worker_is_reported_not_hidden() -> None:
    with pytest.raises(RuntimeError, match="worker 'nope' failed"):
        _common.run_worker("boxes", "nope", {})
    row = _common.failed("w", "broken", RuntimeError("worker failed:\nValueError: bad"))
    assert row["median_s"] is None and "ValueError: bad" in row["error"]


# --- every module end to end, tiny sizes ----------------------------------------------------------


def _run_module(module: Any, tmp_path: Path, capsys: Any) -> tuple[int, dict[str, Any], str]:
    out = tmp_path / f"{module.__name__}.json"
    code = module.main(["--quick", "--check", "--json", str(out)])
    return code, json.loads(out.read_text()), capsys.readouterr().out


def _rows_ok(payload: dict[str, Any], impls: set[str]) -> None:
    rows = payload["results"]
    assert not [r for r in rows if "error" in r], [r["error"] for r in rows if "error" in r]
    assert {r["impl"] for r in rows} == impls
    for r in rows:
        assert TIMING_KEYS <= set(r) and r["repeats"] >= 1
        assert 0 < r["median_s"] <= r["p90_s"]


def test_boxes_module(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(boxes, "WORKLOADS", [("iou", False, 60, 70, 30, 40),
                                             ("giou", True, 60, 60, 50, 50)])
    monkeypatch.setattr(boxes, "IMPLS", ("numpy", "fastiou numba"))
    code, payload, text = _run_module(boxes, tmp_path, capsys)
    _rows_ok(payload, {"numpy", "fastiou numba"})
    assert all(r["max_abs_err"] < 1e-5 for r in payload["results"])  # against float64
    # the targets' workloads and peers did not run: not measured, and --check says so
    by = {t["what"]: t for t in payload["targets"] if "what" in t}
    assert by["pairwise IoU 1000x1000: torchvision.ops / fastiou numba"]["met"] is None
    assert by["pairwise IoU 30x40: jax.jit / numba on CPU"]["met"] is None
    assert code == 1 and "not measured" in text


def test_semantic_module(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(semantic, "SIZES", {True: (1, 64, 96)})
    monkeypatch.setattr(semantic, "REGIONS", ("numpy bincount", "fastiou numba",
                                              "fastiou numba, 1 thread"))
    monkeypatch.setattr(semantic, "NOISE", ("numpy bincount", "fastiou numba"))
    code, payload, text = _run_module(semantic, tmp_path, capsys)
    _rows_ok(payload, {"numpy bincount", "fastiou numba", "fastiou numba, 1 thread"})
    assert all(r["exact"] for r in payload["results"])
    assert code == 1 and "jax.jit / numba on CPU: - (target <= 2.00x" in text


def test_reductions_module(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(reductions, "SIZES", {True: (300, 20)})
    monkeypatch.setattr(reductions, "ROUTES", (reductions.NUMPY, reductions.OURS))
    code, payload, text = _run_module(reductions, tmp_path, capsys)
    _rows_ok(payload, {reductions.NUMPY, reductions.OURS})
    assert all(r["argmax_agrees_with_numpy"] for r in payload["results"])
    assert code == 1  # torchvision did not run: the >= 5x target is not measured


def test_evaluate_module(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(evaluate, "IMPLS", {"boxes": ("fastiou numba", "numpy loop")})
    monkeypatch.setattr(evaluate, "IMAGES", {"boxes": {True: 12}})
    code, payload, text = _run_module(evaluate, tmp_path, capsys)
    _rows_ok(payload, {"fastiou numba", "numpy loop"})
    rows = payload["results"]
    assert rows[0]["matched"] == rows[1]["matched"] > 0 and all(r["agrees"] for r in rows)
    assert rows[0]["mean_iou"] == pytest.approx(rows[1]["mean_iou"], abs=1e-6)
    assert code == 1


def test_startup_module(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(startup, "SMALL", {
        "box_iou (10,4)x(100,4)": (("fastiou box_iou", "numpy broadcasting"), 0, 20),
        "rle.iou 4x8 @96x128": (("fastiou rle.iou", "pycocotools iou"), 0, 5)})
    monkeypatch.setattr(startup, "PROCESSES", {True: 2})
    monkeypatch.setattr(startup, "EVAL_PROCESSES", {True: 0})  # ~5 s a process: left out
    monkeypatch.setattr(startup, "EMPTY_CACHE_QUICK", ())
    code, payload, text = _run_module(startup, tmp_path, capsys)
    rows = {(r["workload"], r["impl"]): r for r in payload["results"]}
    assert not [r for r in rows.values() if "error" in r]
    small = rows[("box_iou (10,4)x(100,4)", "fastiou box_iou")]
    assert small["repeats"] == 19 and small["max_abs_err"] < 1e-6
    assert rows[("rle.iou 4x8 @96x128", "fastiou rle.iou")]["max_abs_err"] < 1e-12
    assert rows[("rle.iou 4x8 @96x128", "pycocotools iou")]["max_abs_err"] < 1e-12
    warm = rows[("cold start, warm cache", "import fastiou + first box_iou")]
    assert warm["repeats"] == 1 and warm["median_s"] > warm["import_median_s"] > 0
    forked = [r for r in payload["results"] if r["workload"] == "fork after parallel calls"]
    assert len(forked) == 1 and forked[0]["completes"] and forked[0]["child_exit"] == 0
    assert isinstance(forked[0]["stderr"], str)
    assert all(r["completes"] for r in payload["results"] if r["workload"] == "threads")
    by = {t["what"]: t for t in payload["targets"] if "what" in t}
    assert by["box_iou (10,4)x(100,4) float32, per call"]["goal"] == 6e-6
    assert by["warm cache: import fastiou + first box_iou"]["goal"] == 0.25
    assert by["fastiou eval on the sample data, whole process"]["met"] is None
    # the 2000-image workload did not run: its ratios are not measured, --check fails
    assert code == 1 and "not measured" in text


def test_masks_module(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(masks, "DENSE_QUICK", [(4, 40, 70)])
    monkeypatch.setattr(masks, "ORDERS", masks.ORDERS[::3])  # import first / masks first
    monkeypatch.setattr(masks, "RLE_IOU", {True: (6, 3, 40, 70)})
    monkeypatch.setattr(masks, "RLE_ENCODE", {True: (5, 40, 70)})
    monkeypatch.setattr(masks, "SMALL", (2, 3, 16, 16))
    monkeypatch.setattr(masks, "SMALL_CALLS", 2)
    monkeypatch.setattr(masks, "REPEATS", 2)
    code, payload, text = _run_module(masks, tmp_path, capsys)
    rows = payload["results"]
    assert not [r for r in rows if "error" in r], [r["error"] for r in rows if "error" in r]
    for r in rows:
        assert TIMING_KEYS <= set(r) and 0 < r["median_s"] <= r["p90_s"]
        assert r.get("max_abs_err", 0.0) < 1e-6, r  # against float64 / the same strings
    dense = {r["workload"] for r in rows if r["workload"].startswith("dense")}
    assert dense == {"dense 4x4 @40x70 [import first, fastiou first]",
                     "dense 4x4 @40x70 [masks first, baseline first]"}
    impls = {r["impl"] for r in rows}
    assert {"fastiou mask_iou", "numpy float32 matmul", "fastiou rle.iou", "pycocotools iou",
            "fastiou rle.encode", "pycocotools encode + Fortran copy"} <= impls
    # every target with a figure is measured (met or not: timing is not asserted)
    measured = [t for t in payload["targets"] if "what" in t]
    assert len(measured) == 4 and all(t["value"] is not None for t in measured)
    assert code in (0, 1) and text.count("(no figure in the issue)") == 4  # RLE: + uncompressed
