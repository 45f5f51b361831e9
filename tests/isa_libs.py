"""Two small native libraries that need AVX-512, built with the real gcc, and wheels
around them (a ctypes package, ``isademo``, whose ``compute()`` returns 2016).

- ``static-init``: a static initialiser (``constructor``) runs AVX-512 code at load
  time, as a CMake project that adds ``-mavx512*`` behind your back does: it dies
  with SIGILL on any CPU without AVX-512.
- ``dispatched``: the AVX-512 kernel runs only when ``__builtin_cpu_supports`` says the
  CPU has it (cpuid), as numpy or OpenBLAS do: it loads and computes everywhere.
- ``baseline``: plain x86-64 code, for comparison.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.conftest import build_plain_wheel

KINDS = ("static-init", "dispatched", "baseline")

_STATIC_INIT = r"""
#include <immintrin.h>
static volatile int table[16];

__attribute__((constructor, target("avx512f,avx512bw")))
static void fill_table(void) {
    __m512i ones = _mm512_set1_epi32(1);
    __m512i idx = _mm512_loadu_si512((const void *)table);
    _mm512_storeu_si512((void *)table, _mm512_add_epi32(idx, ones));
}

int compute(void) {
    int sum = 0;
    for (int i = 0; i < 64; i++) sum += i;
    return sum * table[0];
}
"""

_DISPATCHED = r"""
#include <immintrin.h>

__attribute__((target("avx512f")))
static int sum_avx512(const int *values, int n) {
    __m512i acc = _mm512_setzero_si512();
    for (int i = 0; i + 16 <= n; i += 16)
        acc = _mm512_add_epi32(acc, _mm512_loadu_si512((const void *)(values + i)));
    return _mm512_reduce_add_epi32(acc);
}

static int sum_scalar(const int *values, int n) {
    int sum = 0;
    for (int i = 0; i < n; i++) sum += values[i];
    return sum;
}

int compute(void) {
    int values[64];
    for (int i = 0; i < 64; i++) values[i] = i;
    if (__builtin_cpu_supports("avx512f")) return sum_avx512(values, 64);
    return sum_scalar(values, 64);
}
"""

_BASELINE = r"""
int compute(void) {
    volatile int sum = 0;
    for (int i = 0; i < 64; i++) sum += i;
    return sum;
}
"""

_SOURCES = {"static-init": _STATIC_INIT, "dispatched": _DISPATCHED, "baseline": _BASELINE}

_PACKAGE = b"""import ctypes, pathlib

_lib = ctypes.CDLL(str(pathlib.Path(__file__).with_name("libisademo.so")))


def compute() -> int:
    return int(_lib.compute())
"""


def build_library(kind: str, directory: Path) -> Path:
    """``libisademo.so`` of ``kind``, compiled with gcc -O2 for baseline x86-64."""
    directory.mkdir(parents=True, exist_ok=True)
    source = directory / f"{kind}.c"
    source.write_text(_SOURCES[kind])
    library = directory / "libisademo.so"
    subprocess.run(
        ["gcc", "-O2", "-shared", "-fPIC", "-march=x86-64", "-o", library, source],
        check=True,
    )
    return library


def build_wheel(kind: str, directory: Path, *, version: str = "1.0") -> Path:
    """A plain ``isademo`` wheel (``py3-none-linux_x86_64``) holding the ``kind`` library."""
    library = build_library(kind, directory / f"lib-{kind}")
    out = directory / f"wheel-{kind}"
    out.mkdir(parents=True, exist_ok=True)
    return build_plain_wheel(
        out,
        "isademo",
        version,
        tag="py3-none-linux_x86_64",
        files={
            "isademo/__init__.py": _PACKAGE,
            "isademo/libisademo.so": library.read_bytes(),
        },
    )
