"""Every .cu source compiles with nvcc, with every kernel of ``KERNELS`` instantiated, for the GPU
generations we support (Volta sm_70, Ampere sm_80, Hopper sm_90), as device code (cubin).

A package source is compiled as the CUDA engine gives it to NVRTC: the text of
``cupy_cuda.read_source`` (``#line`` prefix included) from a folder of its own, with the engine's
options, so that its headers are found through ``-I`` only, as they are by NVRTC. An arch that the
installed nvcc no longer lists (CUDA 13 dropped sm_70) is skipped with that reason; everything is
skipped only where nvcc is absent. A successful compile is remembered in the harness cache under a
hash of the source and every file it includes, the kernel list, the options, the arch and the nvcc
version.
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
# source -> (path, kernels, built by the engine)
SOURCES: dict[str, tuple[Path, tuple[str, ...], bool]] = {
    source: (cupy_cuda.CUDA_DIR / source, tuple(kernels), True)
    for source, kernels in sorted(cupy_cuda.KERNELS.items())
}
SOURCES["planted.cu (test-only)"] = (
    cuda_harness.HERE / "planted.cu", cuda_harness.PLANTED["planted.cu"], False
)
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


def _wrapper(source: str) -> tuple[str, tuple[str, ...], tuple[Path, ...]]:
    """(text of wrapper.cu, compiler options, include folders) for one source: the source's text
    (the engine's, for a package source) followed by the address of every kernel."""
    path, kernels, engine = SOURCES[source]
    if engine:
        text = cupy_cuda.read_source(path.name)
        options, folders = cupy_cuda.NVRTC_OPTIONS, (cupy_cuda.CUDA_DIR,)
    else:
        text, options, folders = f'#include "{path}"', ("--std=c++17",), (path.parent,)
    pointers = ",\n".join(f"  (void*)&{k}" for k in kernels)
    text += f"\nvoid* const fastiou_nvcc_kernels[] = {{\n{pointers}\n}};\n"
    return text, options, folders


def _dependencies(path: Path, folders: tuple[Path, ...]) -> list[Path]:
    """The source, every file it includes (headers and any included .cu, found as the compiler
    finds them), and every header of its folder and the include folders, to be safe."""
    headers = {h.resolve() for folder in (path.parent, *folders) for h in folder.glob("*.cuh")}
    return [path, *sorted(headers | set(cupy_cuda.included_files(path, folders)))]


def _kernel_symbols(cubin: Path) -> int | None:
    readelf = shutil.which("readelf")
    if readelf is None:
        return None
    table = subprocess.run([readelf, "-sW", str(cubin)], capture_output=True, text=True).stdout
    return sum(1 for line in table.splitlines() if " FUNC " in line and " GLOBAL " in line)


def _compile(source: str, arch: str) -> tuple[bool, str]:
    path, kernels, _ = SOURCES[source]
    text, options, folders = _wrapper(source)
    digest = hashlib.sha256(f"{nvcc_info()[0]}|{arch}|{' '.join(options)}|{text}".encode())
    for dep in _dependencies(path, folders):
        digest.update(f"{dep}\0".encode() + dep.read_bytes() + b"\0")
    marker = cache_dir() / "nvcc" / f"{path.stem}-{arch}-{digest.hexdigest()[:20]}.ok"
    if marker.exists():
        return True, "cached"
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "wrapper.cu").write_text(text)
        cmd = [NVCC, *options, *(f"-I{f}" for f in folders), f"-arch={arch}", "-cubin",
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


def test_included_files_are_found_through_every_level(tmp_path: Path) -> None:
    # a.cu -> b.cuh -> c.cu (an included .cu too) and common.cuh from the include folder.
    inc = tmp_path / "inc"
    inc.mkdir()
    (tmp_path / "a.cu").write_text('#include "b.cuh"\n// #include "commented.cuh"\n')
    (tmp_path / "b.cuh").write_text('#pragma once\n  #  include "c.cu"\n#include "common.cuh"\n')
    (tmp_path / "c.cu").write_text('#include "b.cuh"\n')  # a cycle is followed once
    (inc / "common.cuh").write_text("#pragma once\n")
    found = cupy_cuda.included_files(tmp_path / "a.cu", (inc,))
    assert found == sorted([(tmp_path / "b.cuh").resolve(), (tmp_path / "c.cu").resolve(),
                            (inc / "common.cuh").resolve()])
    assert (tmp_path / "c.cu").resolve() in _dependencies(tmp_path / "a.cu", (inc,))


@pytest.mark.parametrize("source", sorted(cupy_cuda.KERNELS))
def test_included_headers_ship_with_the_package(source: str) -> None:
    """What a source includes lies in fastiou/cuda, covered by the package-data globs, and is in
    the hash that ``read_source`` puts in front of the text (CuPy's cache key)."""
    import fnmatch
    import tomllib

    root = Path(__file__).resolve().parent.parent
    globs = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]["fastiou"]
    found = cupy_cuda.included_files(cupy_cuda.CUDA_DIR / source)
    assert cupy_cuda.CUDA_DIR.resolve() / "common.cuh" in found
    for dep in found:
        assert dep.parent == cupy_cuda.CUDA_DIR.resolve(), f"{source} includes {dep}"
        assert any(fnmatch.fnmatch(f"cuda/{dep.name}", g) for g in globs), f"{dep.name}: {globs}"
    first = cupy_cuda.read_source(source).splitlines()[:2]
    assert first[0].startswith("// includes: ")
    assert first[1] == f'#line 1 "{cupy_cuda.CUDA_DIR / source}"'
