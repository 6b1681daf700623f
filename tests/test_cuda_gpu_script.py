"""The pure-Python parts of ``python -m benchmarks.gpu`` (the script itself needs a GPU)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from fastiou.backends import cupy_cuda

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # benchmarks/ lives at the root
from benchmarks import gpu  # noqa: E402


def test_exits_with_a_clear_message_without_a_gpu(monkeypatch, capsys) -> None:
    monkeypatch.setattr(gpu, "gpu_unavailable", lambda: "CuPy is not installed")
    assert gpu.main(["--quick"]) == 2
    assert "needs an NVIDIA GPU with CuPy: CuPy is not installed" in capsys.readouterr().err


def test_reports_why_there_is_no_gpu_here() -> None:
    try:
        import cupy  # noqa: F401
    except ImportError:
        assert "CuPy is not installed" in gpu.gpu_unavailable()
    else:
        pytest.skip("cupy is installed: the reason, if any, depends on the machine")


def test_peak_bandwidth_of_an_h100_sxm() -> None:
    # H100 SXM5: HBM3 at 2619 MHz on a 5120-bit bus, 3.35 TB/s
    peak = gpu.peak_bandwidth({"memoryClockRate": 2_619_000, "memoryBusWidth": 5120})
    assert peak == pytest.approx(3.352e12, rel=1e-3)


def test_every_cuda_kernel_is_covered_by_a_benchmark() -> None:
    benches = gpu.load_benchmarks()
    covered = {prefix for b in benches.values() for prefix in b.covers}
    missing = sorted({k.split("<")[0] for kernels in cupy_cuda.KERNELS.values() for k in kernels
                      if not any(k.startswith(p) for p in covered)})
    assert not missing, f"no GPU benchmark covers {missing}: add one with @gpu_benchmark"


def test_table_has_one_row_per_op() -> None:
    rows = [
        {"op": "box_iou float32", "shape": "4000x4000", "dtype": "float32", "correct": True,
         "median_s": 2e-5, "items_per_s": 8e11, "unit": "pairs", "bandwidth_Bps": 3.2e12,
         "x_floor": 1.05},
        {"op": "mask_iou", "correct": False, "problem": "ValueError: boom"},
    ]
    cells = gpu.table(rows)
    assert [c["op"] for c in cells] == ["box_iou float32", "mask_iou"]
    assert cells[0]["median"] == "20.0 us" and cells[0]["rate"] == "800.00 Gpairs/s"
    assert cells[0]["x floor"] == "1.05" and cells[1]["correct"].startswith("NO: ValueError")


class _NumpyAsCupy:
    """Enough of CuPy's namespace for a benchmark's setup and check, with NumPy arrays (the Numba
    engine computes): catches a broken case or reference without a GPU."""

    asarray = staticmethod(np.asarray)
    asnumpy = staticmethod(np.asarray)


@pytest.mark.parametrize("name", sorted(gpu.load_benchmarks()))
def test_benchmark_case_runs_and_checks_on_numpy(name: str) -> None:
    case = gpu.BENCHMARKS[name].make(_NumpyAsCupy, True)
    assert case.bytes_moved > 0 and case.items > 0
    assert case.check(case.run()) is None


def test_main_flow_with_a_stand_in_device(monkeypatch, tmp_path, capsys) -> None:
    """The whole script (device facts, checks, timing, table, JSON) on a stand-in for CuPy."""
    import json
    import types

    class Device:
        id, compute_capability = 0, "90"
        attributes = {"MemoryClockRate": 2_619_000, "GlobalMemoryBusWidth": 5120}

        def synchronize(self) -> None:
            pass

    runtime = types.SimpleNamespace(
        getDeviceProperties=lambda i: {"name": b"Stand-in", "totalGlobalMem": 2**34},
        runtimeGetVersion=lambda: 13000, driverGetVersion=lambda: 13000,
    )
    fake = types.SimpleNamespace(
        __version__="0", asarray=np.asarray, asnumpy=np.asarray,
        cuda=types.SimpleNamespace(Device=Device, runtime=runtime),
        get_default_memory_pool=lambda: types.SimpleNamespace(free_all_blocks=lambda: None),
    )

    def benchmark(fn, n_repeat, n_warmup, max_duration):
        fn()
        return types.SimpleNamespace(gpu_times=np.full((1, 3), 1e-3), cpu_times=np.full(3, 1e-3))

    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setitem(sys.modules, "cupyx", types.SimpleNamespace())
    monkeypatch.setitem(sys.modules, "cupyx.profiler", types.SimpleNamespace(benchmark=benchmark))
    monkeypatch.setattr(gpu, "gpu_unavailable", lambda: None)
    out = tmp_path / "gpu.json"
    assert gpu.main(["--quick", "--skip-tests", "--only", "distance_box_iou", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Stand-in (sm_90), peak memory bandwidth 3352 GB/s" in printed
    assert "distance_box_iou float32" in printed and "x floor" in printed
    rows = json.loads(out.read_text())["benchmarks"]
    assert [r["op"] for r in rows] == ["distance_box_iou float32"] and rows[0]["correct"]
    assert rows[0]["median_s"] == 1e-3 and rows[0]["x_floor"] > 1
