"""Every .cu source compiles with nvcc, with every kernel of ``KERNELS`` instantiated, for the GPU
generations we support (Volta sm_70, Ampere sm_80, Hopper sm_90), as device code (cubin).

An arch that the installed nvcc no longer lists (CUDA 13 dropped sm_70) is skipped with that
reason; everything is skipped only where nvcc is absent. A successful compile is remembered in the
harness cache under a hash of the sources, the kernel list, the arch and the nvcc version.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path

import pytest

import cuda_harness
from cuda_harness._build import cache_dir
from fastiou.backends import cupy_cuda

ARCHS = ("sm_70", "sm_80", "sm_90")
NVCC = shutil.which("nvcc")
SOURCES: dict[str, tuple[Path, tuple[str, ...]]] = {
    source: (cupy_cuda.CUDA_DIR / source, tuple(kernels))
    for source, kernels in sorted(cupy_cuda.KERNELS.items())
}
SOURCES["planted.cu (test-only)"] = (cuda_harness.HERE / "planted.cu", cuda_harness.PLANTED["planted.cu"])
CASES = [(source, arch) for source in SOURCES for arch in ARCHS]


@lru_cache(maxsize=None)
def nvcc_info() -> tuple[str, frozenset[str]]:
    """(version line, archs that ``nvcc --list-gpu-arch`` lists as compute_XX -> sm_XX)."""
    assert NVCC is not None
    version = subprocess.run([NVCC, "--version"], capture_output=True, text=True).stdout.strip()
    listed = subprocess.run([NVCC, "--list-gpu-arch"], capture_output=True, text=True).stdout.split()
    return version.splitlines()[-1] if version else "nvcc", frozenset(
        a.replace("compute_", "sm_") for a in listed
    )


def _wrapper(path: Path, kernels: tuple[str, ...]) -> str:
    pointers = ",\n".join(f"  (void*)&{k}" for k in kernels)
    return f'#include "{path}"\nvoid* const fastiou_nvcc_kernels[] = {{\n{pointers}\n}};\n'


def _kernel_symbols(cubin: Path) -> int | None:
    readelf = shutil.which("readelf")
    if readelf is None:
        return None
    table = subprocess.run([readelf, "-sW", str(cubin)], capture_output=True, text=True).stdout
    return sum(1 for line in table.splitlines() if " FUNC " in line and " GLOBAL " in line)


def _compile(source: str, arch: str) -> tuple[bool, str]:
    path, kernels = SOURCES[source]
    text = _wrapper(path, kernels)
    digest = hashlib.sha256(f"{nvcc_info()[0]}|{arch}|{text}".encode())
    for dep in sorted(path.parent.glob("*.cuh")) + [path]:
        digest.update(dep.read_bytes())
    marker = cache_dir() / "nvcc" / f"{path.stem}-{arch}-{digest.hexdigest()[:20]}.ok"
    if marker.exists():
        return True, "cached"
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "wrapper.cu").write_text(text)
        cmd = [NVCC, "--std=c++17", f"-I{path.parent}", f"-arch={arch}", "-cubin",
               "-diag-suppress", "177", "-o", "out.cubin", "wrapper.cu"]
        proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True)
        log = proc.stdout + proc.stderr
        if proc.returncode != 0:
            return False, log
        symbols = _kernel_symbols(Path(tmp) / "out.cubin")
        if symbols is not None and symbols != len(kernels):
            return False, f"the cubin has {symbols} kernels, {len(kernels)} expected\n{log}"
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(log)
    return True, log


@pytest.fixture(scope="module")
def nvcc_results() -> dict[tuple[str, str], tuple[bool, str]]:
    """Every supported (source, arch), compiled a few at a time."""
    if NVCC is None:
        return {}
    todo = [(s, a) for s, a in CASES if a in nvcc_info()[1]]
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        return dict(zip(todo, pool.map(lambda case: _compile(*case), todo)))


@pytest.mark.parametrize(("source", "arch"), CASES, ids=[f"{s.split()[0]}-{a}" for s, a in CASES])
def test_source_compiles_with_nvcc(source: str, arch: str, nvcc_results) -> None:
    if NVCC is None:
        pytest.skip("nvcc is not installed")
    version, archs = nvcc_info()
    if arch not in archs:
        pytest.skip(f"{version} cannot target {arch} (not in `nvcc --list-gpu-arch`)")
    ok, log = nvcc_results[(source, arch)]
    assert ok, f"nvcc -arch={arch} failed for {source}:\n{log[-6000:]}"
