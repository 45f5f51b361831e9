"""Benchmark: recompress real large wheels with deflate-6 and zstd 3 / 10 / 19, on one
thread and on two, and time uv installing each result.

Run on demand (not part of the test suite)::

    .venv/bin/python benchmarks/bench_compress.py [--wheel nvidia-cublas --wheel numpy]
        [--config zstd-10 ...] [--jobs 1 --jobs 2] [--no-install]

The inputs are downloaded once from PyPI into ``.bench/wheels/`` (gitignored), pinned:
an NVIDIA runtime wheel (``nvidia-cublas``, one 526 MB library inside) and numpy's
manylinux wheel for this Python (about a thousand members). The example project's CUDA
wheel is added when ``dist/`` (or ``--example-dir``) holds one (``wheelforge build
--matrix matrix/example.toml``); it is skipped, with a note, otherwise.

Every configuration runs once per thread count, through ``compress_wheel`` with an
explicit level (so that deflate-6 re-encodes the input's deflate members instead of
copying them) and ``force=True`` (these are plain wheels; the policy refuses them zstd,
but uv reads zstd and this measures what zstd would give). What is measured:

- the time to write the output (reading, decoding, encoding, writing), and the CPU time
  this process used for it (user + system, every thread), so that the thread count's
  effect can be told from a busy machine;
- the verification that follows (on by default in ``wheelforge compress``);
- ``other``: CPU time used by anything else on the machine meanwhile (from
  ``/proc/stat``, steal included); a run during which that exceeded 10% of the machine
  is run again (``--retries``, default 2) and marked ``*`` if it still did;
- the output's size, and that the one-thread and two-thread outputs are byte-identical;
- ``uv pip install --no-deps`` of the output (and of the input as published) into a
  fresh virtual environment with an empty cache: uv reads zstd members.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from machine import describe  # benchmarks/machine.py

from wheelforge.compress import compress_wheel
from wheelforge.wheel.wheelfile import Wheel

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / ".bench"
WHEELS_DIR = BENCH_DIR / "wheels"
OUT_DIR = BENCH_DIR / "compress"
UV = Path(sys.executable).parent / "uv"

# name -> (requirement to download, filename glob)
DOWNLOADS = {
    "nvidia-cublas": ("nvidia-cublas==13.10.0.20", "nvidia_cublas-13.10.0.20-*.whl"),
    "numpy": (
        "numpy==2.4.6",
        f"numpy-2.4.6-cp{sys.version_info[0]}{sys.version_info[1]}-*manylinux*x86_64.whl",
    ),
}
CONFIGS = ("deflate-6", "zstd-3", "zstd-10", "zstd-19")
BUSY_OTHER = 0.10  # other CPU use, as a share of the run's wall time x CPUs, that marks it
CPUS = len(os.sched_getaffinity(0))


@dataclass
class Run:
    wheel: str
    config: str
    jobs: int
    size: int
    seconds: float
    cpu_seconds: float
    other_cpu_seconds: float
    verify_seconds: float
    sha256: str


def download(name: str) -> Path:
    requirement, pattern = DOWNLOADS[name]
    found = sorted(WHEELS_DIR.glob(pattern))
    if not found:
        WHEELS_DIR.mkdir(parents=True, exist_ok=True)
        print(f"downloading {requirement} into {WHEELS_DIR}", file=sys.stderr)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "-d",
                str(WHEELS_DIR),
                requirement,
            ],
            check=True,
        )
        found = sorted(WHEELS_DIR.glob(pattern))
    if not found:
        raise SystemExit(f"no {pattern} in {WHEELS_DIR} after downloading {requirement}")
    return found[-1]


def example_cuda_wheel(directory: Path) -> Path | None:
    """A wheel in ``directory`` whose variant has an ``nvidia`` property."""
    for path in sorted(directory.glob("*.whl")):
        with Wheel(path) as wheel:
            meta = wheel.variant_metadata()
        if meta is not None and any(
            prop.namespace == "nvidia"
            for properties in meta.variants.values()
            for prop in properties
        ):
            return path
    return None


def busy_jiffies() -> tuple[int, int]:
    """(busy, total) CPU time of the whole machine so far, in clock ticks."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = fields[:8]
    busy = user + nice + system + irq + softirq + steal
    return busy, busy + idle + iowait


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(name: str, source: Path, config: str, jobs: int) -> Run:
    codec, level = config.split("-")
    output = OUT_DIR / f"{config}-j{jobs}" / source.name
    shutil.rmtree(output.parent, ignore_errors=True)
    os.sync()
    ticks = os.sysconf("SC_CLK_TCK")
    marks: dict[str, tuple[float, float, int]] = {}

    def progress(done: int, total: int) -> None:
        if done == total:  # the last member is written: the rest is verification
            marks["written"] = (time.perf_counter(), own_cpu(), busy_jiffies()[0])

    start = (time.perf_counter(), own_cpu(), busy_jiffies()[0])
    result = compress_wheel(
        source,
        output,
        codec,
        level=int(level),
        jobs=jobs,
        verify=True,
        force=True,
        progress=progress,
    )
    written = marks["written"]
    cpu = written[1] - start[1]
    other = max(0.0, (written[2] - start[2]) / ticks - cpu)
    assert result.verify_seconds is not None
    return Run(
        wheel=name,
        config=config,
        jobs=jobs,
        size=result.size_out,
        seconds=result.seconds,
        cpu_seconds=cpu,
        other_cpu_seconds=other,
        verify_seconds=result.verify_seconds,
        sha256=hashlib.sha256(output.read_bytes()).hexdigest(),
    )


def uv_install_seconds(wheel: Path) -> float:
    """``uv pip install --no-deps WHEEL`` into a fresh venv with a fresh cache."""
    work = OUT_DIR / "uv"
    shutil.rmtree(work, ignore_errors=True)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("UV_", "PIP_")) and key not in {"VIRTUAL_ENV", "PYTHONPATH"}
    }
    env.update(UV_CACHE_DIR=str(work / "cache"), UV_NO_CONFIG="1", UV_OFFLINE="1")
    # The example's CUDA variant needs a driver uv can see; none here, so say there is.
    env["NV_VARIANT_PROVIDER_FORCE_CUDA_DRIVER_VERSION"] = "13.0"
    venv = work / "venv"
    subprocess.run(
        [str(UV), "venv", "--python", sys.executable, str(venv)],
        env=env,
        check=True,
        capture_output=True,
    )
    os.sync()
    start = time.perf_counter()
    result = subprocess.run(
        [
            str(UV),
            "pip",
            "install",
            "--preview-features",
            "wheel-variants",
            "--no-deps",
            "--no-index",
            "--python",
            str(venv),
            str(wheel),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"uv could not install {wheel}:\n{result.stderr}")
    shutil.rmtree(work, ignore_errors=True)
    return seconds


def busy(run: Run) -> bool:
    """Did other processes use much of the machine during the run?"""
    return run.other_cpu_seconds > max(0.05, BUSY_OTHER * run.seconds * CPUS)


def size_text(size: int) -> str:
    return f"{size / 1e6:.1f} MB" if size >= 1e6 else f"{size / 1e3:.1f} kB"


def secs(seconds: float) -> str:
    return f"{seconds:.2f}" if seconds >= 0.1 else f"{seconds:.3f}"


def table(runs: list[Run], inputs: dict[str, Path], installs: dict[tuple[str, str], float]) -> str:
    jobs = sorted({r.jobs for r in runs})
    head = ["wheel", "codec", "size", "vs deflate-6"]
    head += [f"-j {j}: time s (CPU s)" for j in jobs]
    if len(jobs) > 1:
        head.append(f"-j {jobs[0]} / -j {jobs[-1]}")
    head += [f"verify s (-j {jobs[-1]})", "uv install s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, source in inputs.items():
        cells = [name, "input", size_text(source.stat().st_size), "", *[""] * len(jobs)]
        if len(jobs) > 1:
            cells.append("")
        cells += ["", secs(installs[(name, "input")]) if (name, "input") in installs else ""]
        lines.append("| " + " | ".join(cells) + " |")
        by = {(r.config, r.jobs): r for r in runs if r.wheel == name}
        base = by.get(("deflate-6", jobs[0]))
        for config in CONFIGS:
            these = [by[(config, j)] for j in jobs if (config, j) in by]
            if not these:
                continue
            size = these[0].size
            cells = [name, config, size_text(size)]
            cells.append(f"{100 * (size / base.size - 1):+.1f}%" if base else "")
            for j in jobs:
                run = by.get((config, j))
                if run is None:
                    cells.append("")
                    continue
                mark = " *" if busy(run) else ""
                cells.append(f"{secs(run.seconds)} ({secs(run.cpu_seconds)}){mark}")
            if len(jobs) > 1:
                one, many = by.get((config, jobs[0])), by.get((config, jobs[-1]))
                cells.append(f"{one.seconds / many.seconds:.2f}x" if one and many else "")
            last = by.get((config, jobs[-1]))
            cells.append(secs(last.verify_seconds) if last else "")
            install = installs.get((name, config))
            cells.append(secs(install) if install is not None else "")
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def targets(runs: list[Run], inputs: dict[str, Path]) -> list[str]:
    """The issue's targets, per large wheel (10 MB or more): zstd-10 >= 15% smaller than
    deflate-6 and faster to produce; the most threads >= 1.7x faster than one."""
    out = []
    jobs = sorted({r.jobs for r in runs})
    for name in dict.fromkeys(r.wheel for r in runs):
        if inputs[name].stat().st_size < 10_000_000:
            continue
        by = {(r.config, r.jobs): r for r in runs if r.wheel == name}
        deflate, zstd = by.get(("deflate-6", jobs[0])), by.get(("zstd-10", jobs[0]))
        if deflate and zstd:
            smaller = 100 * (1 - zstd.size / deflate.size)
            out.append(
                f"- {name}: zstd-10 is {smaller:.1f}% smaller than deflate-6 (target >= 15%: "
                f"{'met' if smaller >= 15 else 'missed'})"
            )
            for j in jobs:
                d, z = by.get(("deflate-6", j)), by.get(("zstd-10", j))
                if d and z:
                    out.append(
                        f"- {name}: -j {j}: zstd-10 takes {z.seconds:.2f} s, deflate-6 "
                        f"{d.seconds:.2f} s (target faster: "
                        f"{'met' if z.seconds < d.seconds else 'missed'})"
                    )
        if len(jobs) > 1:
            for config in CONFIGS:
                one, many = by.get((config, jobs[0])), by.get((config, jobs[-1]))
                if one and many:
                    ratio = one.seconds / many.seconds
                    out.append(
                        f"- {name}: {config}: -j {jobs[-1]} is {ratio:.2f}x faster than "
                        f"-j {jobs[0]} (target >= 1.7x: {'met' if ratio >= 1.7 else 'missed'})"
                    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wheel", action="append", choices=sorted(DOWNLOADS), default=[])
    parser.add_argument("--config", action="append", choices=CONFIGS, default=[])
    parser.add_argument("--jobs", action="append", type=int, default=[])
    parser.add_argument("--no-install", action="store_true", help="skip the uv installs")
    parser.add_argument(
        "--retries",
        type=int,
        default=2,
        metavar="N",
        help="run again, up to N times, a run during which other processes used more than "
        f"{100 * BUSY_OTHER:.0f}%% of the machine (default: 2)",
    )
    parser.add_argument(
        "--example-dir",
        type=Path,
        default=ROOT / "dist",
        metavar="DIR",
        help="where to look for the example's CUDA wheel (default: dist)",
    )
    parser.add_argument("--no-example", action="store_true", help="skip the example's wheel")
    args = parser.parse_args()
    names = args.wheel or list(DOWNLOADS)
    configs = args.config or list(CONFIGS)
    all_jobs = sorted(set(args.jobs or [1, 2]))

    inputs = {name: download(name) for name in names}
    notes = []
    cuda = None if args.no_example else example_cuda_wheel(args.example_dir)
    if cuda is not None:
        inputs[f"example {cuda.name.split('-')[0]} (CUDA)"] = cuda
    elif not args.no_example:
        notes.append(
            f"The example project's CUDA wheel was skipped: {args.example_dir} holds none "
            "(build it with `wheelforge build --matrix matrix/example.toml`)."
        )
    print(f"machine: {describe(OUT_DIR.parent)}", file=sys.stderr)
    runs: list[Run] = []
    retried: list[str] = []
    installs: dict[tuple[str, str], float] = {}
    for name, source in inputs.items():
        if not args.no_install:
            installs[(name, "input")] = uv_install_seconds(source)
        for config in configs:
            for jobs in all_jobs:
                for attempt in range(1 + args.retries):
                    run = measure(name, source, config, jobs)
                    print(
                        f"{name} {config} -j {jobs}: {size_text(run.size)} in "
                        f"{run.seconds:.2f} s (CPU {run.cpu_seconds:.2f} s, others "
                        f"{run.other_cpu_seconds:.2f} s), verified in {run.verify_seconds:.2f} s",
                        file=sys.stderr,
                        flush=True,
                    )
                    if not busy(run):
                        break
                    if attempt < args.retries:
                        retried.append(f"{name} {config} -j {jobs}")
                runs.append(run)
            digests = {r.sha256 for r in runs if r.wheel == name and r.config == config}
            if len(digests) != 1:
                raise SystemExit(f"{name} {config}: the outputs differ between thread counts")
            if not args.no_install:
                output = OUT_DIR / f"{config}-j{all_jobs[-1]}" / source.name
                installs[(name, config)] = uv_install_seconds(output)
    (OUT_DIR / "results.json").write_text(
        json.dumps(
            {
                "machine": describe(OUT_DIR.parent),
                "runs": [asdict(r) for r in runs],
                "installs": {f"{k[0]} {k[1]}": v for k, v in installs.items()},
            },
            indent=2,
        )
    )
    print(f"Machine: {describe(OUT_DIR.parent)}\n")
    print(table(runs, inputs, installs))
    print()
    print("\n".join(targets(runs, inputs)))
    print(
        "\nOne run each. `*`: other processes used more than "
        f"{100 * BUSY_OTHER:.0f}% of the machine meanwhile (after {args.retries} retries). "
        "The one-thread and two-thread outputs were byte-identical for every configuration."
    )
    if retried:
        print(f"Run again because other processes used the machine: {'; '.join(retried)}.")
    for note in notes:
        print(f"\n{note}")


if __name__ == "__main__":
    main()
