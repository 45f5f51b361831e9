"""Benchmark: the ISA audit of a ~500 MB wheel, against plain ``objdump -d``.

Run on demand (not part of the test suite)::

    .venv/bin/python benchmarks/bench_isa.py [--size-mb 500] [--jobs 2] [--work DIR]

The input wheel looks like a CUDA wheel (built once; reused from ``--work``):

- real host libraries found on this machine, biggest first, up to ``--host-mb`` of files
  (the CUDA toolkit's ``libnvvm``, ``libnvperf_host``, ``libcupti``, ...; else the
  biggest ``.so`` files of this interpreter's site-packages);
- a library generated here with gcc (``--generated-functions`` functions: baseline
  loops, AVX2 and AVX-512 versions behind a cpuid check, a constructor);
- a library that carries a large incompressible ``.nv_fatbin`` section (device code in a
  real wheel, which the audit must skip), sized so that the wheel reaches ``--size-mb``.

Timed (each in a fresh process, wall and CPU time, peak memory):

- ``wheelforge audit WHEEL --json -j JOBS`` (extraction and the audit of every library);
- ``objdump -d --no-show-raw-insn`` over the same libraries' executable sections (JOBS
  processes in parallel, output discarded: a lower bound for an objdump-based audit,
  which would still have to parse that text). ``--no-objdump`` skips it.

On a shared machine, wall time depends on the load; the CPU time does not (much), so
the table shows both and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from machine import add_work_option, in_work_dir, print_header, require, tool

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / ".bench"
MIB = 1 << 20
WHEEL = "bigcuda-1.0-cp311-cp311-manylinux_2_28_x86_64.whl"
CUDA_LIBS = Path("/usr/local/cuda/lib64")


def host_libraries(limit_mb: float) -> list[Path]:
    """Real x86-64 shared libraries on this machine, biggest first, up to ``limit_mb``."""
    found = {p.resolve() for p in CUDA_LIBS.glob("lib*.so*")} if CUDA_LIBS.is_dir() else set()
    for site in {Path(p) for p in sys.path if p.endswith("site-packages")}:
        found |= {p.resolve() for p in site.rglob("*.so") if p.is_file()}
    chosen, total = [], 0
    for path in sorted(found, key=lambda p: -p.stat().st_size):
        size = path.stat().st_size
        with path.open("rb") as f:
            magic = f.read(4)
        if magic != b"\x7fELF" or total + size > limit_mb * MIB:
            continue
        chosen.append(path)
        total += size
    return chosen


def generated_source(functions: int) -> str:
    """C for a library like a numerical kernel collection: baseline, AVX2 and AVX-512
    versions of each kernel, picked at run time by ``__builtin_cpu_supports``."""
    parts = ["#include <immintrin.h>\n#include <stddef.h>\n"]
    for i in range(functions):
        parts.append(
            f"""
static double k{i}_base(const double *x, size_t n) {{
    double s = {i}.0; for (size_t j = 0; j < n; j++) s += x[j] * {i % 7 + 1}.5 - x[j] / {i + 2}.0;
    return s;
}}
__attribute__((target("avx2,fma"))) static double k{i}_avx2(const double *x, size_t n) {{
    __m256d s = _mm256_set1_pd({i}.0), m = _mm256_set1_pd({i % 7 + 1}.5);
    for (size_t j = 0; j + 4 <= n; j += 4) s = _mm256_fmadd_pd(_mm256_loadu_pd(x + j), m, s);
    double out[4]; _mm256_storeu_pd(out, s); return out[0] + out[1] + out[2] + out[3];
}}
__attribute__((target("avx512f"))) static double k{i}_avx512(const double *x, size_t n) {{
    __m512d s = _mm512_set1_pd({i}.0), m = _mm512_set1_pd({i % 7 + 1}.5);
    for (size_t j = 0; j + 8 <= n; j += 8) s = _mm512_fmadd_pd(_mm512_loadu_pd(x + j), m, s);
    return _mm512_reduce_add_pd(s);
}}
double kernel{i}(const double *x, size_t n) {{
    if (__builtin_cpu_supports("avx512f")) return k{i}_avx512(x, n);
    if (__builtin_cpu_supports("avx2")) return k{i}_avx2(x, n);
    return k{i}_base(x, n);
}}
"""
        )
    parts.append("__attribute__((constructor)) static void init(void) { }\n")
    return "".join(parts)


def build_generated(directory: Path, functions: int, jobs: int) -> Path:
    """The generated library, compiled in ``jobs`` pieces by gcc -O2."""
    per = max(1, functions // jobs)
    sources = []
    for part in range(jobs):
        source = directory / f"gen{part}.c"
        text = (
            generated_source(per).replace("kernel", f"kernel_p{part}_").replace(" k", f" p{part}k")
        )
        source.write_text(text)
        sources.append(source)
    objects = [s.with_suffix(".o") for s in sources]

    def compile_one(source: Path) -> None:
        obj = source.with_suffix(".o")
        subprocess.run(["gcc", "-O2", "-fPIC", "-c", "-o", obj, source], check=True)

    with ThreadPoolExecutor(jobs) as pool:
        list(pool.map(compile_one, sources))
    library = directory / "libkernels.so"
    subprocess.run(["gcc", "-shared", "-o", library, *objects], check=True)
    return library


def build_fatbin(directory: Path, size: int) -> Path:
    """A small host library with a ``size``-byte incompressible ``.nv_fatbin`` section."""
    source = directory / "fat.c"
    source.write_text("int launch(int x) { return x + 1; }\n")
    host = directory / "libfat-host.so"
    subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-o", host, source], check=True)
    blob = directory / "fatbin.bin"
    rng = random.Random(825)
    with blob.open("wb") as out:
        left = size
        while left > 0:
            out.write(rng.randbytes(min(left, 16 * MIB)))
            left -= 16 * MIB
    library = directory / "libdevice_kernels.so"
    subprocess.run(["objcopy", "--add-section", f".nv_fatbin={blob}",
                    "--set-section-flags", ".nv_fatbin=alloc,readonly,data", host, library],
                   check=True)  # fmt: skip
    blob.unlink()
    return library


def build_wheel(work: Path, size_mb: float, host_mb: float, functions: int, jobs: int) -> Path:
    wheel = work / WHEEL
    if wheel.exists():
        return wheel
    parts = work / "parts"
    parts.mkdir(exist_ok=True)
    libraries = [*host_libraries(host_mb), build_generated(parts, functions, jobs)]
    partial = work / (WHEEL + ".part")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for i, library in enumerate(libraries):
            zf.write(library, f"bigcuda/lib/{i:02d}-{library.name}")
        zf.fp.flush()  # type: ignore[union-attr]
        room = int(size_mb * MIB) - partial.stat().st_size
        if room > MIB:
            fat = build_fatbin(parts, room)
            zf.write(fat, f"bigcuda/lib/{fat.name}", compress_type=zipfile.ZIP_STORED)
        dist_info = "bigcuda-1.0.dist-info"
        zf.writestr(f"{dist_info}/METADATA", "Metadata-Version: 2.1\nName: bigcuda\nVersion: 1.0\n")
        zf.writestr(f"{dist_info}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: false\n"
                    "Tag: cp311-cp311-manylinux_2_28_x86_64\n")  # fmt: skip
        zf.writestr(f"{dist_info}/RECORD", "")
    partial.rename(wheel)
    shutil.rmtree(parts)
    return wheel


def timed(
    argv: list[str], *, stdout: int | None = subprocess.PIPE
) -> tuple[float, float, int, bytes]:
    """Wall seconds, CPU seconds (user + system, children), peak RSS (KiB) and stdout."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        process = subprocess.Popen(argv, stdout=out if stdout is not None else None)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - start
        out.seek(0)
        data = out.read()
    require(process.returncode in (0, 1), f"{argv[:3]} failed with {process.returncode}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss, data


def objdump_all(wheel: Path, jobs: int, scratch: Path) -> tuple[float, float, int]:
    """Extract the ELF members (as the audit does) and run objdump -d on each, ``jobs`` at
    a time, output to /dev/null."""
    script = (
        "import sys, subprocess, zipfile, pathlib\n"
        "from concurrent.futures import ThreadPoolExecutor\n"
        "wheel, jobs, scratch = sys.argv[1], int(sys.argv[2]), pathlib.Path(sys.argv[3])\n"
        "paths = []\n"
        "with zipfile.ZipFile(wheel) as zf:\n"
        "    for i, info in enumerate(zf.infolist()):\n"
        "        with zf.open(info) as f:\n"
        "            if f.read(4) != b'\\x7fELF': continue\n"
        "        target = scratch / f'{i}.so'\n"
        "        with zf.open(info) as f, target.open('wb') as out:\n"
        "            while chunk := f.read(1 << 20): out.write(chunk)\n"
        "        paths.append(target)\n"
        "def run(p):\n"
        "    subprocess.run(['objdump', '-d', '--no-show-raw-insn', str(p)],\n"
        "                   stdout=subprocess.DEVNULL, check=True)\n"
        "with ThreadPoolExecutor(jobs) as pool: list(pool.map(run, paths))\n"
    )
    wall, cpu, rss, _ = timed([sys.executable, "-c", script, str(wheel), str(jobs), str(scratch)])
    return wall, cpu, rss


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=float, default=500.0, help="wheel size (default 500)")
    parser.add_argument(
        "--host-mb",
        type=float,
        default=70.0,
        help="real host libraries to include, in MiB of files (default 70)",
    )
    parser.add_argument("--generated-functions", type=int, default=1500)
    parser.add_argument("--jobs", type=int, default=2, help="threads / processes (default 2)")
    parser.add_argument("--no-objdump", action="store_true", help="skip the objdump run")
    add_work_option(parser)
    args = parser.parse_args()
    require(shutil.which("objdump") is not None and shutil.which("gcc") is not None,
            "needs gcc and binutils")  # fmt: skip

    def run(work: Path) -> int:
        print_header(__file__, work)
        wheel = build_wheel(work, args.size_mb, args.host_mb, args.generated_functions, args.jobs)
        with zipfile.ZipFile(wheel) as zf:
            members = [(i.filename, i.file_size) for i in zf.infolist() if ".so" in i.filename]
        print(f"wheel: {wheel.name}, {wheel.stat().st_size / MIB:.0f} MiB; ELF members:")
        for name, size in members:
            print(f"  {name}: {size / MIB:.1f} MiB")
        rows: list[tuple[str, float, float, int, str]] = []
        load: Callable[[], str] = lambda: "/".join(f"{x:.1f}" for x in os.getloadavg())  # noqa: E731
        print(f"load average before: {load()}")
        wall, cpu, rss, out = timed([tool("wheelforge"), "audit", str(wheel), "--json",
                                     "-j", str(args.jobs)])  # fmt: skip
        (report,) = json.loads(out)
        code = sum(lib["code_bytes"] for lib in report["libraries"])
        rows.append(("wheelforge audit (capstone)", wall, cpu, rss, f"{code / wall / 1e6:.1f}"))
        if not args.no_objdump:
            with tempfile.TemporaryDirectory(dir=work) as scratch:
                wall, cpu, rss = objdump_all(wheel, args.jobs, Path(scratch))
            rows.append((f"objdump -d > /dev/null (x{args.jobs})", wall, cpu, rss,
                         f"{code / wall / 1e6:.1f}"))  # fmt: skip
        print(f"load average after: {load()}")
        print(f"x86 code disassembled: {code / 1e6:.1f} MB; required "
              f"{report['required_level']}, dispatched {report['dispatched_level']}")  # fmt: skip
        print()
        print(
            f"| {'tool':38} | wall s | CPU s | CPU s / {args.jobs} | peak RSS MiB | MB/s (wall) |"
        )
        print(f"|{'-' * 40}|-------:|------:|--------:|-------------:|------------:|")
        for what, wall, cpu, rss, speed in rows:
            print(f"| {what:38} | {wall:6.1f} | {cpu:5.1f} | {cpu / args.jobs:7.1f} "
                  f"| {rss / 1024:12.0f} | {speed:>11} |")  # fmt: skip
        return 0

    return in_work_dir(args.work, BENCH_DIR, "bench-isa-", run)


if __name__ == "__main__":
    sys.exit(main())
