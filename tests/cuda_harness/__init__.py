"""A CPU runtime for the CUDA engine: fastiou's .cu kernels, unchanged, compiled with the host C++
compiler and launched with exactly the grid, block and shared memory that the engine's Python code
asks for. Test infrastructure only; see README.md in this folder for what it can and cannot check.

Use::

    from cuda_harness import harness_runtime
    rt = harness_runtime()
    with rt.session():            # = cupy_cuda.use_runtime(rt) + the unwritten-output check
        fastiou.box_iou(a, b, backend="cupy")   # NumPy in, NumPy out, kernels on the CPU

What a launch checks, beyond computing the result:

- the kernel is one of the name expressions in ``cupy_cuda.KERNELS`` (the harness builds exactly
  those), the grid/block/shared-memory configuration is one a GPU would accept;
- every argument has the C++ type of the kernel's parameter: an array of exactly the pointee's
  dtype, C-contiguous, for a pointer; a NumPy scalar of exactly the parameter's type otherwise;
- every array is copied into a buffer between inaccessible pages with poisoned slack around it: a
  read or write outside the array fails the launch with the argument and offset, a write to the
  slack is found after the launch, and a write to a ``const`` parameter's array is reported;
- threads of a block run concurrently (fibers) with a shuffled schedule, so a missing
  ``__syncthreads`` or a warp primitive with a wrong mask shows up as a wrong result or an error.

Arrays from ``rt.xp.empty``/``empty_like`` are filled with a poison pattern (signalling NaN for
floats, 0xA5 bytes otherwise); at the end of a ``session()``, an element of such an array that
still holds the pattern was never written, which fails the test.

Every kernel in ``KERNELS`` must have a registered check (see :func:`kernel_check` and
``checks_boxes.py``); ``tests/test_cuda_harness.py`` fails for a kernel without one.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import importlib
import os
import pkgutil
import re
import threading
import traceback
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from ._build import HERE, BuildError, Target, build

__all__ = [
    "BuildError", "HarnessCall", "HarnessRuntime", "KernelError", "harness_runtime",
    "kernel_check", "check_for", "load_checks", "poison_bytes", "template_args", "CHECKS", "HERE",
    "PLANTED",
]


class KernelError(AssertionError):
    """A launch the harness rejected or a kernel that misbehaved (a test failure)."""


# ------------------------------------------------------------------------------------------------
# Types

_DTYPES = {
    "b1": np.bool_, "i1": np.int8, "u1": np.uint8, "i2": np.int16, "u2": np.uint16,
    "i4": np.int32, "u4": np.uint32, "i8": np.int64, "u8": np.uint64,
    "f4": np.float32, "f8": np.float64,
}
_C_NAMES = {
    "b1": "bool", "i1": "signed char", "u1": "unsigned char", "i2": "short", "u2": "unsigned short",
    "i4": "int", "u4": "unsigned int", "i8": "long long", "u8": "unsigned long long",
    "f4": "float", "f8": "double", "v": "void",
}


def _c_name(code: str) -> str:
    base, _, lanes = code.partition("x")
    return _C_NAMES[base] + (f" (vector of {lanes})" if lanes else "")


def _describe_param(code: str) -> str:
    if code.startswith("pc"):
        return f"const {_c_name(code[2:])}*"
    if code.startswith("p"):
        return f"{_c_name(code[1:])}*"
    return _c_name(code)


def _describe_value(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"a {value.dtype} array of shape {value.shape}"
    if isinstance(value, np.generic):
        return f"a NumPy {value.dtype} scalar"
    return f"a Python {type(value).__name__} ({value!r})"


_POISON = {
    np.dtype(np.float16): (0x7DA5).to_bytes(2, "little"),
    np.dtype(np.float32): (0x7FA5A5A5).to_bytes(4, "little"),
    np.dtype(np.float64): (0x7FF4A5A5A5A5A5A5).to_bytes(8, "little"),
}


def poison_bytes(dtype: Any) -> bytes:
    """One element of the poison pattern: a signalling NaN for floats (never produced by
    arithmetic), 0xA5 bytes for everything else."""
    dtype = np.dtype(dtype)
    if dtype in _POISON:
        return _POISON[dtype]
    if dtype.kind == "c":
        return _POISON[np.dtype(f"f{dtype.itemsize // 2}")] * 2
    return b"\xa5" * dtype.itemsize


def _raw(a: np.ndarray) -> np.ndarray:
    """The bytes of a contiguous array, as a writable-if-possible 1-D uint8 view."""
    b = a if a.flags.c_contiguous else a.T
    return b.reshape(-1).view(np.uint8)


def _pattern(element: bytes, n: int) -> np.ndarray:
    """``element`` repeated over ``n`` bytes (read-only; small ones cached)."""
    return _small_pattern(element, n) if n <= 1 << 16 else _tile(element, n)


def _tile(element: bytes, n: int) -> np.ndarray:
    out = np.tile(np.frombuffer(element, dtype=np.uint8), -(-n // len(element)))[:n]
    out.flags.writeable = False
    return out


_small_pattern = functools.lru_cache(maxsize=256)(_tile)


def _poisoned_elements(a: np.ndarray) -> np.ndarray:
    """Boolean mask (C order) of the elements of ``a`` that still hold the poison pattern."""
    if a.size == 0:
        return np.zeros(0, dtype=bool)
    rows = np.ascontiguousarray(a).reshape(-1).view(np.uint8).reshape(a.size, a.dtype.itemsize)
    return (rows == np.frombuffer(poison_bytes(a.dtype), dtype=np.uint8)).all(axis=1)


# ------------------------------------------------------------------------------------------------
# Loaded libraries


class _Entry(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("signature", ctypes.c_char_p), ("invoke", ctypes.c_void_p)]


class _Library:
    def __init__(self, path: Path, names: tuple[str, ...]) -> None:
        self.path, self.names = path, names
        self.lib = lib = ctypes.CDLL(str(path))
        lib.cuda_harness_kernels.restype = ctypes.POINTER(_Entry)
        lib.cuda_harness_kernels.argtypes = [ctypes.POINTER(ctypes.c_int)]
        lib.cuda_harness_launch.restype = ctypes.c_int
        lib.cuda_harness_launch.argtypes = [
            ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_uint),
            ctypes.POINTER(ctypes.c_uint), ctypes.c_ulonglong, ctypes.c_ulonglong, ctypes.c_char_p,
            ctypes.c_int, ctypes.POINTER(ctypes.c_longlong),
        ]
        lib.cuda_harness_alloc.restype = ctypes.c_void_p
        lib.cuda_harness_alloc.argtypes = [
            ctypes.c_ulonglong, ctypes.POINTER(ctypes.c_ulonglong), ctypes.POINTER(ctypes.c_ulonglong),
        ]
        lib.cuda_harness_free.restype = None
        lib.cuda_harness_free.argtypes = [ctypes.c_ulonglong, ctypes.c_ulonglong]
        count = ctypes.c_int()
        table = lib.cuda_harness_kernels(ctypes.byref(count))
        self.kernels: dict[str, tuple[tuple[str, ...], int]] = {}
        for i in range(count.value):
            sig = table[i].signature.decode()
            self.kernels[table[i].name.decode()] = (tuple(sig.split(",")) if sig else (), table[i].invoke)


class _Guarded:
    """An argument array's bytes in a buffer between inaccessible pages, with poisoned slack."""

    def __init__(self, lib: _Library, index: int, array: np.ndarray) -> None:
        self.lib, self.index, self.array = lib, index, array
        self.params: list[str] = []  # signature codes of the parameters it is passed as
        self.nbytes = array.nbytes
        base, size = ctypes.c_ulonglong(), ctypes.c_ulonglong()
        ptr = lib.lib.cuda_harness_alloc(self.nbytes, ctypes.byref(base), ctypes.byref(size))
        if not ptr:
            raise MemoryError("cuda harness: cannot map a guarded buffer")
        self.base, self.size, self.ptr = base.value, size.value, ptr
        guard = 1 << 20
        self.front = ptr - (self.base + guard)
        rounded = -(-self.nbytes // 256) * 256
        accessible = self.front + rounded
        region = (ctypes.c_uint8 * accessible).from_address(self.base + guard) if accessible else None
        self.region = np.ctypeslib.as_array(region) if region is not None else np.zeros(0, np.uint8)
        self.expected = _pattern(poison_bytes(array.dtype), accessible)
        self.region[:] = self.expected
        self.region[self.front:self.front + self.nbytes] = _raw(array)

    def data(self) -> np.ndarray:
        return self.region[self.front:self.front + self.nbytes]

    def slack_damage(self) -> str | None:
        front = self.region[:self.front]
        tail = self.region[self.front + self.nbytes:]
        for part, offset0 in ((front, 0), (tail, self.front + self.nbytes)):
            bad = np.flatnonzero(part != self.expected[offset0:offset0 + part.size])
            if bad.size:
                first, last = offset0 + bad[0] - self.front, offset0 + bad[-1] - self.front
                return f"bytes {first}..{last} relative to its start"
        return None

    def contains(self, address: int) -> bool:
        return self.base <= address < self.base + self.size

    def free(self) -> None:
        self.lib.lib.cuda_harness_free(self.base, self.size)


def _describe_offset(offset: int, nbytes: int) -> str:
    if offset < 0:
        return f"{-offset} bytes before its start"
    if offset >= nbytes:
        return f"byte {offset}, {offset - nbytes + 1} bytes past its end"
    return f"byte {offset}"


# ------------------------------------------------------------------------------------------------
# The runtime


@dataclass
class _Tracked:
    array: np.ndarray
    site: str
    kernels: list[str] = field(default_factory=list)


class HarnessNumpy:
    """NumPy, except that ``empty``/``empty_like`` return poisoned arrays the runtime tracks."""

    def __init__(self, runtime: HarnessRuntime) -> None:
        self._runtime = runtime

    def __getattr__(self, name: str) -> Any:
        return getattr(np, name)

    @staticmethod
    def asnumpy(a: Any) -> np.ndarray:  # CuPy's device-to-host copy
        return np.asarray(a)

    def empty(self, shape: Any, dtype: Any = float, order: str = "C", **kwargs: Any) -> np.ndarray:
        return self._runtime._poison(np.empty(shape, dtype=dtype, order=order, **kwargs))

    def empty_like(self, prototype: Any, dtype: Any = None, order: str = "K", subok: bool = True,
                   shape: Any = None) -> np.ndarray:
        return self._runtime._poison(np.empty_like(prototype, dtype, order, subok, shape))


def _dims(what: str, value: Any) -> tuple[int, int, int]:
    if not isinstance(value, tuple) or not 1 <= len(value) <= 3:
        raise KernelError(f"{what} must be a tuple of 1 to 3 ints (as CuPy takes it), got {value!r}")
    for v in value:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or v < 1:
            raise KernelError(f"{what} must hold ints >= 1, got {value!r}")
    dims = tuple(int(v) for v in value) + (1,) * (3 - len(value))
    return dims  # type: ignore[return-value]


class HarnessRuntime:
    """The CUDA engine's runtime on the CPU (see the module docstring).

    ``kernels``/``directory`` default to the package's own ``cupy_cuda.KERNELS`` and ``fastiou/cuda``
    (read at each launch, so families registered later are built too); tests pass their own for
    test-only sources.
    """

    def __init__(self, kernels: dict[str, tuple[str, ...]] | None = None,
                 directory: Path | None = None, *, seed: int | None = None) -> None:
        self._kernels = kernels
        self._directory = directory
        self.xp = HarnessNumpy(self)
        self.seed = int(os.environ.get("FASTIOU_HARNESS_SEED", "0")) if seed is None else seed
        self.launches: Counter[tuple[str, str]] = Counter()
        self._count = 0
        self._libraries: dict[str, _Library] = {}
        self._build_errors: dict[str, tuple[tuple[str, ...], BuildError]] = {}
        self._lock = threading.RLock()
        self._tracking: list[list[_Tracked]] = []
        self._recorders: list[set[tuple[str, str]]] = []

    # -- sources ---------------------------------------------------------------------------------
    def kernel_table(self) -> dict[str, tuple[str, ...]]:
        if self._kernels is not None:
            return self._kernels
        from fastiou.backends import cupy_cuda

        return cupy_cuda.KERNELS

    def directory(self) -> Path:
        if self._directory is not None:
            return self._directory
        from fastiou.backends import cupy_cuda

        return cupy_cuda.CUDA_DIR

    def library(self, source: str) -> _Library:
        table = self.kernel_table()
        if source not in table:
            raise KernelError(f"{source!r} is not a source with registered kernels ({sorted(table)})")
        with self._lock:
            lib = self._libraries.get(source)
            if lib is not None and lib.names == tuple(table[source]):
                return lib
            # Build every source not loaded yet, in parallel (most sessions need them all). A
            # source that failed to compile with this kernel list is not retried in this process.
            def current(s: str) -> bool:
                if s in self._libraries and self._libraries[s].names == tuple(table[s]):
                    return True
                return s in self._build_errors and self._build_errors[s][0] == tuple(table[s])

            stale = [s for s in table if not current(s)]
            targets = [Target(self.directory() / s, tuple(table[s])) for s in stale]
            for s, t, built in zip(stale, targets, build(targets)):
                if isinstance(built, BuildError):
                    self._build_errors[s] = (t.kernels, built)
                else:
                    self._libraries[s] = _Library(built, t.kernels)
                    self._build_errors.pop(s, None)
            if source in self._build_errors:
                raise self._build_errors[source][1]
            return self._libraries[source]

    # -- poisoned outputs ------------------------------------------------------------------------
    def _poison(self, a: np.ndarray) -> np.ndarray:
        if a.size:
            _raw(a)[:] = _pattern(poison_bytes(a.dtype), a.nbytes)
        if self._tracking:
            frame = next((f for f in reversed(traceback.extract_stack(limit=8)[:-2])
                          if "cuda_harness" not in f.filename), None)
            site = f"{frame.filename}:{frame.lineno} ({frame.name})" if frame else "?"
            with self._lock:
                self._tracking[-1].append(_Tracked(a, site))
        return a

    @contextlib.contextmanager
    def session(self) -> Iterator[HarnessRuntime]:
        """``use_runtime(self)`` for the CUDA engine, then fail if an element of an array that the
        engine allocated with ``xp.empty`` inside the block was never written."""
        from fastiou.backends import cupy_cuda

        tracked: list[_Tracked] = []
        with self._lock:
            self._tracking.append(tracked)
        try:
            with cupy_cuda.use_runtime(self):
                yield self
        finally:
            with self._lock:
                self._tracking.remove(tracked)
        problems = []
        for t in tracked:
            mask = _poisoned_elements(t.array)
            if mask.any():
                first = np.unravel_index(int(np.flatnonzero(mask)[0]), t.array.shape)
                kernels = ", ".join(dict.fromkeys(t.kernels)) or "no kernel"
                problems.append(
                    f"{int(mask.sum())} of {t.array.size} elements of a {t.array.dtype} array of "
                    f"shape {t.array.shape} (allocated with xp.empty at {t.site}, passed to "
                    f"{kernels}) were never written; first at index {tuple(int(i) for i in first)}"
                )
        if problems:
            raise KernelError("cuda harness: unwritten output:\n" + "\n".join(problems))

    @contextlib.contextmanager
    def recording(self) -> Iterator[set[tuple[str, str]]]:
        """The set of (source, kernel) launched inside the block."""
        seen: set[tuple[str, str]] = set()
        with self._lock:
            self._recorders.append(seen)
        try:
            yield seen
        finally:
            with self._lock:
                self._recorders.remove(seen)

    # -- launch ----------------------------------------------------------------------------------
    def launch(self, source: str, kernel: str, grid: tuple[int, ...], block: tuple[int, ...],
               args: tuple[Any, ...], shared_mem: int = 0) -> None:
        lib = self.library(source)
        if kernel not in lib.kernels:
            raise KernelError(f"{kernel} is not instantiated in {source} (not in KERNELS[{source!r}])")
        codes, invoke = lib.kernels[kernel]
        where = f"{kernel} <<<{grid}, {block}, {shared_mem}>>>"
        grid3, block3 = _dims("grid", grid), _dims("block", block)
        if isinstance(shared_mem, (bool, np.bool_)) or not isinstance(shared_mem, (int, np.integer)) \
                or shared_mem < 0:
            raise KernelError(f"{where}: shared_mem must be an int >= 0, got {shared_mem!r}")
        if len(args) != len(codes):
            raise KernelError(f"{where}: {len(args)} arguments for {len(codes)} parameters "
                              f"({', '.join(map(_describe_param, codes))})")
        holders: list[Any] = []
        guarded: list[_Guarded] = []
        slots = (ctypes.c_void_p * max(1, len(args)))()
        try:
            for i, (value, code) in enumerate(zip(args, codes)):
                holders.append(self._marshal(lib, where, i, value, code, guarded))
                slots[i] = holders[-1].ctypes.data
            index = self._note_launch(source, kernel, args)
            error = ctypes.create_string_buffer(1024)
            fault = (ctypes.c_longlong * 3)()
            seed = (self.seed * 1_000_003 + index) ^ zlib.crc32(kernel.encode())
            rc = lib.lib.cuda_harness_launch(
                invoke, slots, (ctypes.c_uint * 3)(*grid3), (ctypes.c_uint * 3)(*block3),
                int(shared_mem), seed, error, len(error), fault,
            )
            problems = []
            if rc == 2:
                problems.append(self._describe_fault(error.value.decode(), fault, guarded))
            elif rc != 0:
                problems.append(error.value.decode())
            for g in guarded:
                damage = g.slack_damage()
                if damage:
                    problems.append(f"wrote outside argument {g.index} ({_describe_value(g.array)}, "
                                    f"{g.nbytes} bytes): {damage}")
            for g in guarded:
                const = all(code.startswith("pc") for code in g.params)
                changed = not np.array_equal(g.data(), _raw(g.array))
                if changed and (const or not g.array.flags.writeable):
                    problems.append(f"wrote to argument {g.index}, which is const or read-only")
            if problems:
                raise KernelError(f"cuda harness: {where}:\n" + "\n".join(problems))
            for g in guarded:
                if g.array.flags.writeable and g.nbytes:
                    _raw(g.array)[:] = g.data()
        finally:
            for g in guarded:
                g.free()

    def _marshal(self, lib: _Library, where: str, i: int, value: Any, code: str,
                 guarded: list[_Guarded]) -> np.ndarray:
        param = _describe_param(code)
        if code.startswith("p"):
            element = code[2:] if code.startswith("pc") else code[1:]
            base = element.partition("x")[0]
            if not isinstance(value, np.ndarray):
                raise KernelError(f"{where}: argument {i} is `{param}`; got {_describe_value(value)}")
            if base != "v" and value.dtype != np.dtype(_DTYPES[base]):
                raise KernelError(f"{where}: argument {i} is `{param}`, which needs a "
                                  f"{np.dtype(_DTYPES[base])} array; got {_describe_value(value)}")
            if not value.flags.c_contiguous:
                raise KernelError(f"{where}: argument {i} (`{param}`) is not C-contiguous")
            g = self._guard(lib, where, i, value, guarded)
            g.params.append(code)
            return np.array([g.ptr], dtype=np.uintp)
        if "x" in code:
            raise KernelError(f"{where}: argument {i}: vector-typed parameters ({param}) are not "
                              "supported by the harness")
        expected = np.dtype(_DTYPES[code])
        if not isinstance(value, np.generic) or value.dtype != expected:
            raise KernelError(f"{where}: argument {i} is `{param}`, which needs a NumPy {expected} "
                              f"scalar; got {_describe_value(value)}")
        return np.array([value], dtype=expected)

    def _guard(self, lib: _Library, where: str, i: int, value: np.ndarray,
               guarded: list[_Guarded]) -> _Guarded:
        for g in guarded:
            if g.array is value or (g.array.ctypes.data == value.ctypes.data and g.nbytes == value.nbytes
                                    and g.array.dtype == value.dtype):
                return g
            if np.may_share_memory(g.array, value):
                raise KernelError(f"{where}: arguments {g.index} and {i} overlap partially, which the "
                                  "harness cannot reproduce")
        g = _Guarded(lib, i, value)
        guarded.append(g)
        return g

    def _note_launch(self, source: str, kernel: str, args: tuple[Any, ...]) -> int:
        """Record the launch; returns its index (which seeds the thread and block order)."""
        with self._lock:
            self.launches[(source, kernel)] += 1
            self._count += 1
            for r in self._recorders:
                r.add((source, kernel))
            for tracked in self._tracking:
                for t in tracked:
                    if any(isinstance(a, np.ndarray) and np.may_share_memory(a, t.array) for a in args):
                        t.kernels.append(kernel)
            return self._count

    @staticmethod
    def _describe_fault(message: str, fault: Any, guarded: list[_Guarded]) -> str:
        address, signal, write = fault[0], fault[1], fault[2]
        names = {11: "SIGSEGV", 7: "SIGBUS", 8: "SIGFPE"}
        access = {1: "write", 0: "read"}.get(write, "access")
        if signal == 8:
            return f"{message}: arithmetic trap (SIGFPE), e.g. an integer division by zero"
        for g in guarded:
            if g.contains(address):
                return (f"{message}: out-of-bounds {access} of argument {g.index} "
                        f"({_describe_value(g.array)}, {g.nbytes} bytes) at "
                        f"{_describe_offset(address - g.ptr, g.nbytes)}")
        return (f"{message}: {names.get(signal, signal)} on a {access} at address {address:#x}, "
                "outside every argument (a wild pointer, or a thread's stack overflowing)")


_DEFAULT: HarnessRuntime | None = None

# The test-only kernels of planted.cu (for HarnessRuntime(PLANTED, HERE)).
PLANTED = {
    "planted.cu": (
        "planted::twice<float>", "planted::twice<double>", "planted::write_past_end",
        "planted::write_before_start", "planted::read_far_past_end", "planted::skip_last",
        "planted::write_const", "planted::reverse_blocks", "planted::early_return",
        "planted::block_sums", "planted::warp_ops", "planted::bad_mask", "planted::shared_overflow",
        "planted::histogram", "planted::divide", "planted::warp_segments",
    )
}


def harness_runtime() -> HarnessRuntime:
    """The shared runtime for the package's own kernels (libraries are built once per process,
    and cached on disk by a hash of the sources)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = HarnessRuntime()
    return _DEFAULT


# ------------------------------------------------------------------------------------------------
# Kernel checks: every name expression in KERNELS needs one


@dataclass(frozen=True)
class KernelCheck:
    source: str
    pattern: re.Pattern[str]
    fn: Callable[[str, HarnessCall], None]

    @property
    def where(self) -> str:
        return f"{self.fn.__module__}.{self.fn.__qualname__}"


CHECKS: list[KernelCheck] = []


def kernel_check(source: str, pattern: str) -> Callable[[Callable[[str, HarnessCall], None]],
                                                        Callable[[str, HarnessCall], None]]:
    """Register ``fn(kernel, call)`` as the check of every kernel of ``source`` whose name
    expression fully matches the regular expression ``pattern``.

    The check must make the engine launch ``kernel`` (through ``call``, which runs the public API
    on the CUDA engine under the harness) and compare the result with a reference; the test that
    lists kernels verifies that the kernel was launched.
    """

    def register(fn: Callable[[str, HarnessCall], None]) -> Callable[[str, HarnessCall], None]:
        CHECKS.append(KernelCheck(source, re.compile(pattern), fn))
        return fn

    return register


def load_checks() -> list[KernelCheck]:
    """Import every ``checks_*.py`` module of this package (each registers its checks)."""
    for module in pkgutil.iter_modules([str(HERE)]):
        if module.name.startswith("checks_"):
            importlib.import_module(f"{__name__}.{module.name}")
    return CHECKS


def check_for(source: str, kernel: str) -> KernelCheck:
    found = [c for c in CHECKS if c.source == source and c.pattern.fullmatch(kernel)]
    if not found:
        raise LookupError(
            f"no harness check for {kernel} ({source}): register one with "
            "@cuda_harness.kernel_check(source, pattern) in tests/cuda_harness/checks_<family>.py"
        )
    if len(found) > 1:
        raise LookupError(f"{kernel} matches several checks: {[c.where for c in found]}")
    return found[0]


def template_args(kernel: str) -> list[str]:
    """``"ns::k<float, double, 0, 2>"`` -> ``["float", "double", "0", "2"]``."""
    inner = kernel[kernel.index("<") + 1:kernel.rindex(">")]
    args, depth, start = [], 0, 0
    for i, ch in enumerate(inner):
        if ch in "<(":
            depth += 1
        elif ch in ">)":
            depth -= 1
        elif ch == "," and depth == 0:
            args.append(inner[start:i].strip())
            start = i + 1
    args.append(inner[start:].strip())
    return args


class HarnessCall:
    """``call(fn, *arrays, **kwargs)``: ``fn(*arrays, backend="cupy", **kwargs)`` under the
    harness, inside a :meth:`HarnessRuntime.session`; array results must be NumPy arrays."""

    def __init__(self, runtime: HarnessRuntime) -> None:
        self.runtime = runtime

    def __call__(self, fn: Callable[..., Any], *arrays: Any, **kwargs: Any) -> Any:
        with self.runtime.session():
            result = fn(*arrays, backend="cupy", **kwargs)
        for r in result if isinstance(result, tuple) else (result,):
            if hasattr(r, "dtype") and not isinstance(r, (np.ndarray, np.generic)):
                raise AssertionError(f"the CUDA engine under the harness returned {type(r)}")
        return result
