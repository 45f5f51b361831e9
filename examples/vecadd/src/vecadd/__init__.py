"""vecadd: elementwise addition in a native library, built for one backend per wheel.

The native part is ``libvecadd.so``, a plain C ABI library loaded with :mod:`ctypes`
only when a kernel is first called, so ``import vecadd``, :func:`backend` and
:func:`build_info` work on any machine, with or without a GPU runtime.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
from collections.abc import Sequence
from typing import Any

from . import _build_info

__all__ = ["add", "backend", "build_info"]
__version__ = _build_info.VERSION

_LIBNAME = "libvecadd.so"
_ROCM_RUNTIME = "libamdhip64.so.5"

# Return codes of vecadd_add (csrc/vecadd.h).
_OK = 0
_ERR_NO_DEVICE = 1

_lock = threading.Lock()
_lib: ctypes.CDLL | None = None


def backend() -> str:
    """The backend this wheel was built for: ``cpu``, ``cpu-x86-64-v3``, ``cuda`` or ``rocm``.

    Read from build metadata; the native library is not loaded.
    """
    return _build_info.BACKEND


def build_info() -> dict[str, Any]:
    """How this wheel was built: backend, CPU level, GPU targets and compiler."""
    return {
        "backend": _build_info.BACKEND,
        "cpu_level": _build_info.CPU_LEVEL,
        "cuda_architectures": list(_build_info.CUDA_ARCHITECTURES),
        "hip_targets": list(_build_info.HIP_TARGETS),
        "cuda_runtime": _build_info.CUDA_RUNTIME,
        "compiler": _build_info.COMPILER,
        "version": _build_info.VERSION,
    }


def _gpu_name() -> str:
    return {"cuda": "CUDA", "rocm": "ROCm"}.get(_build_info.BACKEND, _build_info.BACKEND)


def _preload_cuda_runtime() -> None:
    """A shared-runtime CUDA build needs libcudart.so.N: from the system, or from the
    nvidia-cuda-runtime wheel the variant depends on (site-packages/nvidia/cuN/lib)."""
    soname = f"libcudart.so.{_build_info.CUDA_MAJOR}"
    candidates = [soname] + [
        os.path.join(entry, "nvidia", f"cu{_build_info.CUDA_MAJOR}", "lib", soname)
        for entry in sys.path
    ]
    for candidate in candidates:
        if candidate != soname and not os.path.exists(candidate):
            continue
        try:
            ctypes.CDLL(candidate, mode=ctypes.RTLD_GLOBAL)
            return
        except OSError:
            continue
    raise RuntimeError(
        f"vecadd was built for CUDA with the shared runtime but {soname} cannot be loaded "
        f"(install nvidia-cuda-runtime=={_build_info.CUDA_MAJOR}.*)"
    )


def _load() -> ctypes.CDLL:
    global _lib
    with _lock:
        if _lib is not None:
            return _lib
        if _build_info.BACKEND == "cuda" and _build_info.CUDA_RUNTIME == "shared":
            _preload_cuda_runtime()
        if _build_info.BACKEND == "rocm":
            # Give a clear message when the HIP runtime is missing, rather than
            # the dynamic loader's complaint about libvecadd.so.
            try:
                ctypes.CDLL(_ROCM_RUNTIME, mode=ctypes.RTLD_GLOBAL)
            except OSError as exc:
                raise RuntimeError(
                    f"vecadd was built for ROCm but {_ROCM_RUNTIME} cannot be loaded: {exc}"
                ) from exc
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), _LIBNAME)
        try:
            lib = ctypes.CDLL(path)
        except OSError as exc:
            raise RuntimeError(
                f"vecadd ({_build_info.BACKEND}) cannot load its native library {path}: {exc}"
            ) from exc
        lib.vecadd_add.argtypes = [
            ctypes.POINTER(ctypes.c_double),
            ctypes.POINTER(ctypes.c_double),
            ctypes.POINTER(ctypes.c_double),
            ctypes.c_size_t,
            ctypes.c_char_p,
            ctypes.c_size_t,
        ]
        lib.vecadd_add.restype = ctypes.c_int
        _lib = lib
        return lib


def add(a: Sequence[float], b: Sequence[float]) -> list[float]:
    """Elementwise ``a + b``, computed by the native library (on the GPU for GPU builds).

    Raises :class:`ValueError` if the lengths differ, and :class:`RuntimeError` if this is
    a GPU build and the GPU runtime or a device is not available.
    """
    n = len(a)
    if len(b) != n:
        raise ValueError(f"vecadd.add: length mismatch ({n} != {len(b)})")
    lib = _load()
    array_t = ctypes.c_double * n
    ca = array_t(*(float(x) for x in a))
    cb = array_t(*(float(x) for x in b))
    out = array_t()
    err = ctypes.create_string_buffer(512)
    rc = lib.vecadd_add(ca, cb, out, n, err, len(err))
    if rc == _OK:
        return list(out)
    message = err.value.decode("utf-8", "replace")
    if rc == _ERR_NO_DEVICE:
        gpu = _gpu_name()
        raise RuntimeError(
            f"vecadd was built for {gpu} but no {gpu} device is available: {message}"
        )
    raise RuntimeError(f"vecadd ({_build_info.BACKEND}) kernel failed: {message}")
