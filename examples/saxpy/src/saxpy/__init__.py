"""saxpy: ``a * x + y``, a dot product and a matrix product in a native library.

The native part is ``libsaxpy_<backend>.so`` (``cpu`` or ``cuda``; the CUDA one uses
cuBLAS), a plain C ABI library written into this package by CMake and loaded with
:mod:`ctypes` only when a function is first called, so ``import saxpy``,
:func:`backend` and :func:`build_info` work on any machine, with or without a GPU.
"""

from __future__ import annotations

import ctypes
import glob
import os
import sys
import threading
from collections.abc import Sequence
from typing import Any

from . import _build_info

__all__ = ["backend", "build_info", "dot", "matmul", "saxpy"]
__version__ = _build_info.VERSION

# Return codes (csrc/saxpy.h).
_OK = 0
_ERR_NO_DEVICE = 1

_HERE = os.path.dirname(os.path.abspath(__file__))
_lock = threading.Lock()
_lib: ctypes.CDLL | None = None


def backend() -> str:
    """The backend this wheel was built for: ``cpu``, ``cpu-x86-64-v3`` or ``cuda``.

    Read from build metadata; the native library is not loaded.
    """
    return _build_info.BACKEND


def build_info() -> dict[str, Any]:
    """How this wheel was built: backend, CPU level, library, CUDA targets, compiler."""
    return {
        "backend": _build_info.BACKEND,
        "cpu_level": _build_info.CPU_LEVEL,
        "library": _build_info.LIBRARY,
        "libraries_present": sorted(
            os.path.basename(p) for p in glob.glob(os.path.join(_HERE, "libsaxpy_*.so"))
        ),
        "cuda_architectures": list(_build_info.CUDA_ARCHITECTURES),
        "cuda_major": _build_info.CUDA_MAJOR,
        "compiler": _build_info.COMPILER,
        "version": _build_info.VERSION,
    }


def _library_path() -> str:
    """The library named by the build info; else whichever backend's library is here."""
    named = os.path.join(_HERE, _build_info.LIBRARY)
    if os.path.exists(named):
        return named
    present = sorted(glob.glob(os.path.join(_HERE, "libsaxpy_*.so")))
    if not present:
        raise RuntimeError(f"saxpy: no libsaxpy_*.so in {_HERE} (was the package built?)")
    return present[0]


def _preload_cuda_libraries() -> None:
    """libsaxpy_cuda.so finds libcublas and libcudart through its RUNPATH
    ($ORIGIN/../nvidia/cuN/lib: the nvidia-cublas and nvidia-cuda-runtime wheels in the
    same site-packages). When they are installed elsewhere on sys.path, load them here."""
    major = _build_info.CUDA_MAJOR
    for soname in (f"libcudart.so.{major}", f"libcublasLt.so.{major}", f"libcublas.so.{major}"):
        for entry in sys.path:
            candidate = os.path.join(entry, "nvidia", f"cu{major}", "lib", soname)
            if os.path.exists(candidate):
                try:
                    ctypes.CDLL(candidate, mode=ctypes.RTLD_GLOBAL)
                    break
                except OSError:
                    continue


def _load() -> ctypes.CDLL:
    global _lib
    with _lock:
        if _lib is not None:
            return _lib
        path = _library_path()
        if os.path.basename(path) == "libsaxpy_cuda.so":
            _preload_cuda_libraries()
        try:
            lib = ctypes.CDLL(path)
        except OSError as exc:
            raise RuntimeError(f"saxpy cannot load its native library {path}: {exc}") from exc
        f32p = ctypes.POINTER(ctypes.c_float)
        size, errbuf = ctypes.c_size_t, ctypes.c_char_p
        lib.saxpy_saxpy.argtypes = [ctypes.c_float, f32p, f32p, size, errbuf, size]
        lib.saxpy_dot.argtypes = [f32p, f32p, size, f32p, errbuf, size]
        lib.saxpy_sgemm.argtypes = [size, size, size, f32p, f32p, f32p, errbuf, size]
        for function in (lib.saxpy_saxpy, lib.saxpy_dot, lib.saxpy_sgemm):
            function.restype = ctypes.c_int
        lib.saxpy_backend.restype = ctypes.c_char_p
        _lib = lib
        return lib


def _floats(values: Sequence[float]) -> ctypes.Array[ctypes.c_float]:
    return (ctypes.c_float * len(values))(*(float(v) for v in values))


def _check(rc: int, err: ctypes.Array[ctypes.c_char]) -> None:
    if rc == _OK:
        return
    message = err.value.decode("utf-8", "replace")
    if rc == _ERR_NO_DEVICE:
        raise RuntimeError(f"saxpy was built for CUDA but no CUDA device is available: {message}")
    raise RuntimeError(f"saxpy ({_build_info.BACKEND}) failed: {message}")


def saxpy(a: float, x: Sequence[float], y: Sequence[float]) -> list[float]:
    """``a * x + y``, elementwise, in single precision (on the GPU for CUDA builds).

    Raises :class:`ValueError` if the lengths differ, and :class:`RuntimeError` if this
    is a CUDA build and no CUDA device is available.
    """
    if len(x) != len(y):
        raise ValueError(f"saxpy: length mismatch ({len(x)} != {len(y)})")
    lib = _load()
    cx, cy = _floats(x), _floats(y)
    err = ctypes.create_string_buffer(512)
    _check(lib.saxpy_saxpy(float(a), cx, cy, len(cx), err, len(err)), err)
    return list(cy)


def dot(x: Sequence[float], y: Sequence[float]) -> float:
    """The dot product of ``x`` and ``y`` (a block reduction on the GPU for CUDA builds)."""
    if len(x) != len(y):
        raise ValueError(f"dot: length mismatch ({len(x)} != {len(y)})")
    lib = _load()
    out = ctypes.c_float()
    err = ctypes.create_string_buffer(512)
    _check(lib.saxpy_dot(_floats(x), _floats(y), len(x), ctypes.byref(out), err, len(err)), err)
    return out.value


def matmul(a: Sequence[Sequence[float]], b: Sequence[Sequence[float]]) -> list[list[float]]:
    """The matrix product of row lists ``a`` (m x k) and ``b`` (k x n) (cuBLAS
    ``cublasSgemm`` for CUDA builds)."""
    m, k = len(a), len(b)
    n = len(b[0]) if b else 0
    if any(len(row) != k for row in a) or any(len(row) != n for row in b):
        raise ValueError("matmul: a must be m x k and b k x n")
    lib = _load()
    c = (ctypes.c_float * (m * n))()
    err = ctypes.create_string_buffer(512)
    flat_a = _floats([v for row in a for v in row])
    flat_b = _floats([v for row in b for v in row])
    _check(lib.saxpy_sgemm(m, n, k, flat_a, flat_b, c, err, len(err)), err)
    return [list(c[i * n : (i + 1) * n]) for i in range(m)]
