"""Benchmark: ``check``'s per-wheel read (RECORD, metadata, variant.json, layout and
duplicate findings, the ELF pass) over the wheels of a directory, in-process, one wheel
after the other.

Run on demand (not part of the test suite), for example on the input
``bench_publish.py`` makes, and under another checkout to compare two versions of the
code (the first line printed names the wheelforge that was imported)::

    .venv/bin/python benchmarks/bench_check_read.py /tmp/bench-pub/dist [--wheels 400] [--repeat 3]
    (cd OLD && PYTHONPATH=OLD /path/to/.venv/bin/python /path/to/benchmarks/bench_check_read.py ...)

Every run reads the same wheels once untimed first (warm page cache); the best and the
median of ``--repeat`` timed runs are shown.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import wheelforge
from wheelforge.publish import check
from wheelforge.publish.release import classify


def read_all(wheels: list[Path]) -> None:
    for wheel in wheels:
        artifact = classify(wheel)
        assert artifact is not None, wheel
        check._read(artifact, verify_hashes=True, max_size=1 << 40)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dist", type=Path)
    parser.add_argument("--wheels", type=int, default=400)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    wheels = sorted(args.dist.glob("*.whl"))[: args.wheels]
    if not wheels:
        print(f"{args.dist}: no wheels", file=sys.stderr)
        return 2
    print(f"wheelforge from {Path(wheelforge.__file__).parent}; {len(wheels)} wheels")
    read_all(wheels)
    times = []
    for _ in range(args.repeat):
        started = time.perf_counter()
        read_all(wheels)
        times.append(time.perf_counter() - started)
    best, median = min(times), statistics.median(times)
    print("| wheels | runs | best s | median s | ms per wheel (best) |")
    print("|---:|---:|---:|---:|---:|")
    per_wheel = best / len(wheels) * 1000
    print(f"| {len(wheels)} | {args.repeat} | {best:.3f} | {median:.3f} | {per_wheel:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
