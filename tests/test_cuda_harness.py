"""The CPU harness for the CUDA kernels: every kernel of the package runs through it and is compared
with the reference; planted bugs in test-only kernels are caught; the harness checks the launch
code's types and configuration; every .cu source compiles with nvcc for the GPUs we support."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import cuda_harness
from cuda_harness import HarnessCall, HarnessRuntime, KernelError, harness_runtime
from cuda_harness._build import extern_shared
from fastiou.backends import cupy_cuda

PLANTED = cuda_harness.PLANTED
ALL_KERNELS = [(source, k) for source, kernels in sorted(cupy_cuda.KERNELS.items()) for k in kernels]


@pytest.fixture(scope="module")
def planted() -> HarnessRuntime:
    return HarnessRuntime(PLANTED, cuda_harness.HERE, seed=1)


def i64(v: int) -> np.int64:
    return np.int64(v)


# ------------------------------------------------------------------------------------------------
# Every kernel of the package, through the harness, against the reference


@pytest.mark.parametrize(("source", "kernel"), ALL_KERNELS, ids=[k for _, k in ALL_KERNELS])
def test_every_kernel_runs_under_the_harness(source: str, kernel: str) -> None:
    """A kernel in KERNELS without a registered check fails here, naming what to add."""
    cuda_harness.load_checks()
    check = cuda_harness.check_for(source, kernel)
    rt = harness_runtime()
    with rt.recording() as launched:
        check.fn(kernel, HarnessCall(rt))
    assert (source, kernel) in launched, f"{check.where} never launched {kernel}"


def test_every_check_matches_a_kernel() -> None:
    for check in cuda_harness.load_checks():
        names = cupy_cuda.KERNELS.get(check.source, ())
        assert any(check.pattern.fullmatch(k) for k in names), f"{check.where} matches no kernel"


def test_a_kernel_without_a_check_is_reported() -> None:
    cuda_harness.load_checks()
    with pytest.raises(LookupError, match="no harness check for fastiou::box_rotated<float>"):
        cuda_harness.check_for("boxes.cu", "fastiou::box_rotated<float>")


# ------------------------------------------------------------------------------------------------
# Planted bugs


def test_correct_kernel_runs(planted: HarnessRuntime) -> None:
    for dtype, kernel in ((np.float32, "planted::twice<float>"), (np.float64, "planted::twice<double>")):
        x = np.arange(1000, dtype=dtype)
        out = np.empty_like(x)
        planted.launch("planted.cu", kernel, (2,), (256,), (x, i64(x.size), out))
        np.testing.assert_array_equal(out, 2 * x)


@pytest.mark.parametrize(
    ("kernel", "message"),
    [
        ("planted::write_past_end", r"wrote outside argument 2 .*bytes 400\.\.403"),
        ("planted::write_before_start", r"wrote outside argument 2 .*bytes -4\.\.-1 relative to its start"),
        ("planted::read_far_past_end", r"out-of-bounds read of argument 0 .*past its end"),
    ],
)
def test_out_of_bounds_access_is_caught(planted: HarnessRuntime, kernel: str, message: str) -> None:
    x = np.ones(100, dtype=np.float32)
    out = np.zeros_like(x)
    with pytest.raises(KernelError, match=message):
        planted.launch("planted.cu", kernel, (1,), (128,), (x, i64(x.size), out))
    np.testing.assert_array_equal(out, 0)  # a failed launch leaves the caller's arrays alone


def test_unwritten_output_element_is_caught(planted: HarnessRuntime) -> None:
    x = np.ones(100, dtype=np.float32)
    with pytest.raises(KernelError, match=r"1 of 100 elements .* planted::skip_last.*index \(99,\)"):
        with planted.session():
            out = planted.xp.empty(x.shape, dtype=np.float32)
            planted.launch("planted.cu", "planted::skip_last", (1,), (128,), (x, i64(x.size), out))
    # the same kernel, with every element written, passes
    with planted.session():
        out = planted.xp.empty(x.shape, dtype=np.float32)
        planted.launch("planted.cu", "planted::twice<float>", (1,), (128,), (x, i64(x.size), out))


def test_poison_is_a_signalling_nan_and_a5_bytes(planted: HarnessRuntime) -> None:
    f32 = planted.xp.empty(3, dtype=np.float32)
    assert np.isnan(f32).all() and f32.view(np.uint32)[0] == 0x7FA5A5A5
    f64 = planted.xp.empty((2, 2), dtype=np.float64, order="F")
    assert np.isnan(f64).all()
    assert (planted.xp.empty_like(np.zeros(4, np.int64)).view(np.uint8) == 0xA5).all()


def test_write_through_const_is_caught(planted: HarnessRuntime) -> None:
    x = np.ones(64, dtype=np.float32)
    with pytest.raises(KernelError, match="wrote to argument 0, which is const"):
        planted.launch("planted.cu", "planted::write_const", (1,), (64,), (x, i64(64), np.empty_like(x)))
    assert (x == 1).all()


def test_missing_barrier_is_caught_as_a_wrong_result(planted: HarnessRuntime) -> None:
    x = np.arange(1024, dtype=np.int32)
    expected = x.reshape(4, 256)[:, ::-1].reshape(-1)
    out = np.empty_like(x)
    planted.launch("planted.cu", "planted::reverse_blocks", (4,), (256,), (x, out, np.int32(1)))
    np.testing.assert_array_equal(out, expected)
    planted.launch("planted.cu", "planted::reverse_blocks", (4,), (256,), (x, out, np.int32(0)))
    assert (out != expected).sum() > 100  # threads read tiles their partners had not written


def test_early_return_before_barrier_is_a_deadlock(planted: HarnessRuntime) -> None:
    x = np.arange(200, dtype=np.int32)
    with pytest.raises(KernelError, match=r"deadlock: 200 thread\(s\) wait at __syncthreads.*56 have exited"):
        planted.launch("planted.cu", "planted::early_return", (1,), (256,), (x, i64(200), np.empty_like(x)))


def test_warp_primitive_with_absent_lanes_is_caught(planted: HarnessRuntime) -> None:
    x = np.arange(64, dtype=np.int32)
    with pytest.raises(KernelError, match=r"__shfl_down_sync\(mask=0xffffffff\)"):
        planted.launch("planted.cu", "planted::bad_mask", (1,), (64,), (x, np.empty_like(x)))


def test_dynamic_shared_overflow_is_caught(planted: HarnessRuntime) -> None:
    out = np.empty(64, dtype=np.int32)
    with pytest.raises(KernelError, match="beyond the 256 bytes given at launch"):
        planted.launch("planted.cu", "planted::shared_overflow", (1,), (64,), (out,), shared_mem=256)
    planted.launch("planted.cu", "planted::shared_overflow", (1,), (64,), (out,), shared_mem=512)


def test_integer_division_by_zero_is_caught(planted: HarnessRuntime) -> None:
    x = np.arange(32, dtype=np.int32)
    out = np.empty_like(x)
    planted.launch("planted.cu", "planted::divide", (1,), (32,), (x, np.int32(3), out))
    np.testing.assert_array_equal(out, x // 3)
    with pytest.raises(KernelError, match="SIGFPE"):
        planted.launch("planted.cu", "planted::divide", (1,), (32,), (x, np.int32(0), out))


# ------------------------------------------------------------------------------------------------
# Shared memory, barriers, warp primitives and atomics behave as on a GPU


def test_block_reduction_with_dynamic_shared_memory_and_atomics(planted: HarnessRuntime) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(-1000, 1000, 5000).astype(np.int32)
    blocks = -(-x.size // 256)
    total = np.zeros(1, dtype=np.uint64)
    per_block = np.empty(blocks, dtype=np.int32)
    planted.launch("planted.cu", "planted::block_sums", (blocks,), (256,),
                   (x, i64(x.size), total, per_block), shared_mem=256 * 4)
    sums = np.add.reduceat(x, np.arange(0, x.size, 256))
    np.testing.assert_array_equal(per_block, sums)
    assert total[0] == np.uint64(int(sums.sum()) % 2**64)


def test_warp_primitives(planted: HarnessRuntime) -> None:
    rng = np.random.default_rng(1)
    x = rng.integers(0, 120, 96).astype(np.int32)  # three warps
    out = np.empty((96, 8), dtype=np.int32)
    planted.launch("planted.cu", "planted::warp_ops", (1,), (96,), (x, out))
    for w in range(3):
        v = x[32 * w:32 * w + 32]
        o = out[32 * w:32 * w + 32]
        odd = sum(1 << lane for lane in range(32) if v[lane] & 1)
        np.testing.assert_array_equal(o[:, 0], v.sum())
        np.testing.assert_array_equal(o[:, 1].view(np.uint32), odd)
        np.testing.assert_array_equal(o[:, 2], bin(odd).count("1"))
        np.testing.assert_array_equal(o[:, 3], v[0])
        np.testing.assert_array_equal(o[:, 4], np.concatenate([v[:1], v[:-1]]))
        np.testing.assert_array_equal(o[:, 5], int((v > 100).any()))
        np.testing.assert_array_equal(o[:, 6], 1)
        same = [sum(1 << k for k in range(32) if v[k] % 3 == v[lane] % 3) for lane in range(32)]
        np.testing.assert_array_equal(o[:, 7].view(np.uint32), np.array(same, dtype=np.uint32))


def test_warp_widths_partial_masks_and_block_counts(planted: HarnessRuntime) -> None:
    x = np.random.default_rng(3).integers(0, 1000, 64).astype(np.int32)
    out = np.empty((64, 6), dtype=np.int32)
    planted.launch("planted.cu", "planted::warp_segments", (1,), (64,), (x, out))
    lane = np.arange(64)
    np.testing.assert_array_equal(out[:, 0], x[(lane & ~7) + 3])
    down = np.where((lane % 16) + 5 < 16, lane + 5, lane)
    np.testing.assert_array_equal(out[:, 1], x[down])
    up = np.where(lane % 4 >= 2, lane - 2, lane)
    np.testing.assert_array_equal(out[:, 2], x[up])
    np.testing.assert_array_equal(out[:, 3], np.repeat([x[:32].sum(), x[32:].sum()], 32))
    np.testing.assert_array_equal(out[:, 4], np.where(lane % 32 < 16, x[lane ^ 1], -1))
    np.testing.assert_array_equal(out[:, 5], (x & 1).sum())


def test_histogram_with_shared_and_64_bit_atomics(planted: HarnessRuntime) -> None:
    x = np.random.default_rng(2).integers(0, 256, 20000).astype(np.uint8)
    bins = np.zeros(256, dtype=np.uint64)
    planted.launch("planted.cu", "planted::histogram", (7,), (128,), (x, i64(x.size), bins))
    np.testing.assert_array_equal(bins, np.bincount(x, minlength=256))


# ------------------------------------------------------------------------------------------------
# Types and launch configuration: what CuPy would pass to the GPU unchecked


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((np.ones(4, np.float64), i64(4), np.ones(4, np.float32)),
         r"`const float\*`, which needs a float32 array; got a float64"),
        ((np.ones(4, np.float32), np.int32(4), np.ones(4, np.float32)),
         r"`long long`, which needs a NumPy int64 scalar; got a NumPy int32"),
        ((np.ones(4, np.float32), 4, np.ones(4, np.float32)), r"got a Python int"),
        ((np.ones(4, np.float32), i64(4), np.ones((4, 2), np.float32)[:, 0]), r"not C-contiguous"),
        ((np.ones(4, np.float32), i64(4)), r"2 arguments for 3 parameters"),
    ],
)
def test_argument_types_are_checked(planted: HarnessRuntime, args: tuple, message: str) -> None:
    with pytest.raises(KernelError, match=message):
        planted.launch("planted.cu", "planted::twice<float>", (1,), (32,), args)


@pytest.mark.parametrize(
    ("grid", "block", "shared", "message"),
    [
        ((0,), (32,), 0, "ints >= 1"),
        ((1,), (2048,), 0, "exceeds the limits"),
        ((1,), (64, 32), 0, "2048 threads"),
        ((1, 70000), (32,), 0, "grid.y = 70000"),
        ((1,), (32,), 64 * 1024, "65536 bytes exceeds"),
        ([1], (32,), 0, "must be a tuple"),
        ((1.0,), (32,), 0, "ints >= 1"),
    ],
)
def test_launch_configuration_is_checked(planted: HarnessRuntime, grid, block, shared, message) -> None:
    x = np.ones(4, np.float32)
    with pytest.raises(KernelError, match=message):
        planted.launch("planted.cu", "planted::twice<float>", grid, block, (x, i64(4), x.copy()), shared)


def test_kernel_not_instantiated_is_caught(planted: HarnessRuntime) -> None:
    with pytest.raises(KernelError, match="not instantiated"):
        planted.launch("planted.cu", "planted::twice<int>", (1,), (32,), ())


def test_engine_launch_code_bugs_show_up() -> None:
    """The engine's own launch helper with a wrong scalar type, and a real box kernel told a count
    one too large: both are what a GPU would silently run."""
    rt = harness_runtime()
    kernel = "fastiou::box_aligned<float, float, 0, 2>"
    a = np.tile(np.array([0, 0, 1, 1], np.float32), (5, 1))
    out = np.empty(5, np.float32)
    def args(count: Any) -> tuple:
        return ((a, np.float32), (a, np.float32), count, (0, np.float32), (out, np.float32))

    with rt.session():
        with pytest.raises(KernelError, match="needs a NumPy int64 scalar; got a NumPy int32"):
            cupy_cuda.launch("boxes.cu", kernel, (1,), (256,), args((5, np.int32)))
        with pytest.raises(KernelError, match="out-of-bounds read of argument 0|wrote outside argument 4"):
            cupy_cuda.launch("boxes.cu", kernel, (1,), (256,), args((6, np.int64)))


def test_extern_shared_declarations_are_found_with_their_namespace() -> None:
    text = """
    // extern __shared__ float commented_out[];
    namespace a { namespace b::c {
    template <typename T> __global__ void k() { extern __shared__ __align__(16) unsigned char smem[]; }
    } }
    namespace { __global__ void g() { if (1) { extern __shared__ unsigned long long wide[]; } } }
    extern __shared__ int top[];
    """
    assert extern_shared(text) == [
        (("a", "b::c"), "unsigned char", "smem"),
        (("",), "unsigned long long", "wide"),
        ((), "int", "top"),
    ]


def test_a_source_that_does_not_compile_fails_alone(tmp_path) -> None:
    (tmp_path / "good.cu").write_text("__global__ void good(int* out) { out[threadIdx.x] = 7; }\n")
    (tmp_path / "bad.cu").write_text("__global__ void bad(int* out) { out[0] = undeclared; }\n")
    rt = HarnessRuntime({"good.cu": ("good",), "bad.cu": ("bad",)}, tmp_path)
    with pytest.raises(cuda_harness.BuildError, match=r"bad\.cu(.|\n)*undeclared"):
        rt.launch("bad.cu", "bad", (1,), (1,), (np.zeros(1, np.int32),))
    out = np.zeros(4, np.int32)
    rt.launch("good.cu", "good", (1,), (4,), (out,))
    assert (out == 7).all()


def test_cupy_runtime_builds_each_module_once_when_threads_race(monkeypatch) -> None:
    """The CuPy runtime's RawModule cache under concurrent first launches: one build per source
    (a stand-in ``cupy`` whose RawModule is slow to construct, so every thread arrives while the
    first build is still running)."""
    import sys
    import threading
    import time
    import types

    built: list[str] = []

    class SlowModule:
        def __init__(self, code: str, options: tuple, name_expressions: tuple) -> None:
            time.sleep(0.05)
            built.append(code)

    monkeypatch.setitem(sys.modules, "cupy", types.SimpleNamespace(RawModule=SlowModule))
    rt = cupy_cuda.CupyRuntime()
    barrier = threading.Barrier(8)
    got: list[Any] = []

    def first_use() -> None:
        barrier.wait()
        got.append(rt.module("boxes.cu"))

    threads = [threading.Thread(target=first_use) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(built) == 1 and len(got) == 8
    assert all(m is got[0] for m in got)
    assert "boxes.cu" in built[0]  # the #line directive names the real file
