"""Benchmark: check and index a release set of many small variant wheels, against
``twine check`` and a loop that extracts every wheel to read its metadata.

Run on demand (not part of the test suite)::

    .venv/bin/python benchmarks/bench_publish.py [--wheels 1200] [--repeat 3] [--work DIR]

The input is generated first (its time is printed, not measured): one project,
``benchpkg`` 1.0, as one plain wheel, one null variant and ``--wheels`` - 2 variant wheels,
each with its own property set (an ``nvidia :: cuda_version_lower_bound``, an
``nvidia :: sm_arch`` and an ``x86_64 :: level``) and its hash label, plus the release's
variants file. Every wheel is small: ``__init__.py``, a 40 KiB binary-ish payload of
deterministic bytes (60% random, so deflate keeps about two thirds), METADATA with a
Markdown description, WHEEL, RECORD with sha256 hashes, and the variant's
``variant.json``. The plain wheel is written with ``zipfile``, the others by
``tag_wheel``. A second release (1.1, 100 wheels made the same way) is generated for the
"extend a site" row. Everything lives in a temporary directory under ``.bench/``
(gitignored), or in ``--work DIR``, which is kept and reused when it holds the same input.

Rows, each run ``--repeat`` times (best and median reported):

- ``check_release_set(DIST, jobs=1)``, ``jobs=2`` and ``jobs=2, verify_hashes=False``
  in-process; the report must be ``ok`` (checked once) or the benchmark stops;
- ``wheelforge check DIST --json`` as a subprocess (default jobs: the CPUs);
- ``twine check`` over every ``*.whl`` of DIST as a subprocess (``--twine-repeat`` runs,
  default 1: it is slow); twine only parses METADATA and renders the description;
- every wheel extracted with ``ZipFile.extractall`` into a fresh directory, then its
  METADATA read and parsed: what a tool that unpacks wheels to read them pays;
- ``wheelforge index DIST --out SITE --no-check --json`` into a fresh SITE (the first
  indexing), again into that SITE (nothing new: the idempotent re-run), and the 1.1
  release into a copy of the 1.0 site (extending a site that lists ``--wheels`` files).

Subprocesses get a bytecode cache (under ``.bench/pycache``) even where
PYTHONDONTWRITEBYTECODE is set, as an installed tool has. Before each run the output of
the previous one is removed (untimed) and ``os.sync()`` called. A run during which other
processes used more than 10% of the machine's CPU time is marked ``*`` in the table.
The index results are checked (files added, nothing added on the re-run).
"""

from __future__ import annotations

import argparse
import email.parser
import functools
import hashlib
import itertools
import json
import os
import random
import resource
import shutil
import statistics
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from machine import (  # benchmarks/machine.py
    CheckFailed,
    add_work_option,
    in_work_dir,
    print_header,
    require,
    run_command,
    tool,
)

from wheelforge.publish.check import check_release_set
from wheelforge.tag import TagRequest, tag_wheel
from wheelforge.variants.properties import VariantProperty
from wheelforge.variants_file import write_variants_json
from wheelforge.wheel.record import digest_to_record_hash

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / ".bench"
BIN_DIR = Path(sys.executable).parent

NAME = "benchpkg"
WHEEL_TAG = "cp311-cp311-manylinux_2_28_x86_64"
SECOND_RELEASE = ("1.1", 100)  # version, wheels
PAYLOAD_SIZE = 40 * 1024
RANDOM_SHARE = 0.6
DATE_TIME = (2025, 6, 1, 12, 0, 0)
SEED = 825
INPUT_FORMAT = 1  # bump when the generated wheels change, so that --work is regenerated
BUSY_OTHER = 0.10  # other processes' CPU time, as a share of wall time x CPUs, that marks a run
CPUS = len(os.sched_getaffinity(0))

DESCRIPTION = """\
# benchpkg

A benchmark package: one plain wheel, a null variant and many variant wheels.

- built for the `wheelforge check` and `wheelforge index` benchmark;
- every wheel carries a small binary payload.
"""

# Property sets: one value of each feature, every combination (50 x 12 x 4 = 2400).
CUDA_LOWER = [f"{major}.{minor}" for major in (11, 12, 13, 14, 15) for minor in range(10)]
SM_ARCH = ["50", "60", "61", "70", "75", "80", "86", "87", "89", "90", "100", "120"]
X86_LEVEL = ["v1", "v2", "v3", "v4"]
MAX_WHEELS = len(CUDA_LOWER) * len(SM_ARCH) * len(X86_LEVEL) + 2


# --- the input ---------------------------------------------------------------------


def _payload(rng: random.Random) -> bytes:
    """Binary-ish bytes: random runs between repeated motifs, as in a small extension."""
    motifs = [rng.randbytes(rng.choice((16, 32, 64))) for _ in range(8)]
    parts: list[bytes] = []
    size = 0
    while size < PAYLOAD_SIZE:
        part = rng.randbytes(int(1024 * RANDOM_SHARE))
        part += (rng.choice(motifs) * 64)[: 1024 - len(part)]
        parts.append(part)
        size += len(part)
    return b"".join(parts)[:PAYLOAD_SIZE]


def build_plain_wheel(directory: Path, version: str) -> Path:
    """A valid plain wheel, written with the standard library's zipfile."""
    dist_info = f"{NAME}-{version}.dist-info"
    metadata = (
        f"Metadata-Version: 2.1\nName: {NAME}\nVersion: {version}\n"
        "Summary: A benchmark package for wheelforge's publishing stage\n"
        "Requires-Python: >=3.11\nDescription-Content-Type: text/markdown\n\n"
    ) + DESCRIPTION
    members = {
        f"{NAME}/__init__.py": f'"""{NAME}."""\n__version__ = {version!r}\n'.encode(),
        f"{NAME}/_native.bin": _payload(random.Random(SEED)),
        f"{dist_info}/METADATA": metadata.encode(),
        f"{dist_info}/WHEEL": (
            f"Wheel-Version: 1.0\nGenerator: bench_publish\nRoot-Is-Purelib: false\n"
            f"Tag: {WHEEL_TAG}\n"
        ).encode(),
    }
    record = "".join(
        f"{n},{digest_to_record_hash('sha256', hashlib.sha256(b).digest())},{len(b)}\n"
        for n, b in members.items()
    )
    members[f"{dist_info}/RECORD"] = (record + f"{dist_info}/RECORD,,\n").encode()
    path = directory / f"{NAME}-{version}-{WHEEL_TAG}.whl"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for member, data in members.items():
            info = zipfile.ZipInfo(member, DATE_TIME)
            info.external_attr = 0o100644 << 16
            zf.writestr(info, data, zipfile.ZIP_DEFLATED)
    return path


def property_sets() -> Iterator[frozenset[VariantProperty]]:
    for cuda, sm, level in itertools.product(CUDA_LOWER, SM_ARCH, X86_LEVEL):
        yield frozenset(
            VariantProperty.parse(text)
            for text in (
                f"nvidia :: cuda_version_lower_bound :: {cuda}",
                f"nvidia :: sm_arch :: {sm}_real",
                f"x86_64 :: level :: {level}",
            )
        )


def generate_release(dist: Path, version: str, wheels: int) -> None:
    """A plain wheel, the null variant, ``wheels - 2`` variants, the variants file."""
    shutil.rmtree(dist, ignore_errors=True)
    dist.mkdir(parents=True)
    plain = build_plain_wheel(dist, version)
    tag_wheel(plain, dist, TagRequest())
    for properties in itertools.islice(property_sets(), wheels - 2):
        tag_wheel(plain, dist, TagRequest(properties=properties, label=None))
    write_variants_json(dist)
    found = len(list(dist.glob("*.whl")))
    require(found == wheels, f"{dist}: {found} wheels, expected {wheels} (a label collided?)")


def input_sets(work: Path, wheels: int) -> tuple[Path, Path]:
    """DIST (1.0) and the second release's directory, generated unless ``work`` holds
    them already."""
    dist, dist2 = work / "dist", work / f"dist-{SECOND_RELEASE[0]}"
    stamp = work / "input.json"
    wanted = {"format": INPUT_FORMAT, "wheels": wheels, "second": list(SECOND_RELEASE)}
    if stamp.is_file() and json.loads(stamp.read_text()) == wanted:
        print(f"input:   {dist} (reused)")
        return dist, dist2
    stamp.unlink(missing_ok=True)
    print(f"input:   generating {wheels} wheels of {NAME} 1.0 in {dist} ...", flush=True)
    start = time.perf_counter()
    generate_release(dist, "1.0", wheels)
    generate_release(dist2, *SECOND_RELEASE)
    print(
        f"         generated in {time.perf_counter() - start:.1f} s (not measured), with "
        f"{SECOND_RELEASE[1]} wheels of {NAME} {SECOND_RELEASE[0]} in {dist2}"
    )
    stamp.write_text(json.dumps(wanted))
    return dist, dist2


# --- timing ------------------------------------------------------------------------


def busy_jiffies() -> int:
    """Busy CPU time of the whole machine so far, in clock ticks (steal included)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return user + nice + system + irq + softirq + steal


def own_cpu() -> float:
    """CPU time of this process and all its descendants, in seconds: finished children
    (``RUSAGE_CHILDREN``) and live ones with what they reaped (a process pool's
    forkserver and its workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
    ticks = os.sysconf("SC_CLK_TCK")
    for fields in _descendants(os.getpid()):
        utime, stime, cutime, cstime = (int(v) for v in fields[11:15])
        total += (utime + stime + cutime + cstime) / ticks
    return total


def _descendants(root: int) -> list[list[str]]:
    """The ``/proc/PID/stat`` fields (after the command name) of every live descendant."""
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                text = (entry / "stat").read_text()
            except OSError:
                continue
            stats[int(entry.name)] = text.rsplit(")", 1)[1].split()
    children: dict[int, list[int]] = {}
    for pid, fields in stats.items():
        children.setdefault(int(fields[1]), []).append(pid)
    found, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop()
        found.append(stats[pid])
        todo += children.get(pid, [])
    return found


@dataclass
class Row:
    label: str
    short: str  # how a ratio against this row names it
    wheels: int
    times: list[float]
    busy: list[bool]  # per run: other processes used the machine
    ref: str | None = None  # the key of the row its ratio is against

    @property
    def best(self) -> float:
        return min(self.times)

    @property
    def per_wheel_ms(self) -> float:
        return 1000 * self.best / self.wheels


def timed(
    label: str,
    short: str,
    wheels: int,
    repeat: int,
    action: Callable[[], object],
    *,
    setup: Callable[[], object] | None = None,
    ref: str | None = None,
) -> Row:
    """Run ``action`` ``repeat`` times, each after ``setup`` and ``os.sync()``."""
    ticks = os.sysconf("SC_CLK_TCK")
    times: list[float] = []
    busy: list[bool] = []
    for _ in range(repeat):
        if setup is not None:
            setup()
        os.sync()  # no write-back of the setup's or an earlier run's files during this one
        jiffies, cpu, start = busy_jiffies(), own_cpu(), time.perf_counter()
        action()
        seconds = time.perf_counter() - start
        other = (busy_jiffies() - jiffies) / ticks - (own_cpu() - cpu)
        times.append(seconds)
        busy.append(other > max(0.05, BUSY_OTHER * seconds * CPUS))
    row = Row(label, short, wheels, times, busy, ref)
    print(
        f"  {label}: best {row.best:.3f} s, median {statistics.median(times):.3f} s"
        f" ({', '.join(f'{t:.3f}' for t in times)})",
        flush=True,
    )
    return row


# --- the operations ----------------------------------------------------------------


def extract_all(wheels: list[Path], out: Path) -> int:
    """Extract every wheel into its own directory, then read and parse its METADATA;
    return how many METADATA files named the project."""
    parser = email.parser.BytesParser()
    found = 0
    for path in wheels:
        target = out / path.stem
        with zipfile.ZipFile(path) as zf:
            zf.extractall(target)
        [metadata] = target.glob("*.dist-info/METADATA")
        found += parser.parsebytes(metadata.read_bytes())["Name"] == NAME
    return found


def index_result(stdout: str) -> tuple[int, int]:
    """(added, unchanged) from ``wheelforge index --json``."""
    result = json.loads(stdout)
    return len(result["added"]), len(result["unchanged"])


def _clean(directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)


def _secs(seconds: float) -> str:
    return f"{seconds:.2f}" if seconds >= 1 else f"{seconds:.3f}"


def table(rows: dict[str, Row]) -> str:
    head = ["operation", "wheels", "runs", "best s", "median s", "ms per wheel (best)"]
    lines = [
        "| " + " | ".join([*head, "ratio (per wheel)"]) + " |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for key, row in rows.items():
        if row.ref is None or row.ref == key:
            ratio = "1.00x (reference)"
        else:
            ref = rows[row.ref]
            ratio = f"{row.per_wheel_ms / ref.per_wheel_ms:.2f}x vs {ref.short}"
        best_run = row.times.index(row.best)
        mark = " *" if row.busy[best_run] else ""
        lines.append(
            f"| {row.label} | {row.wheels} | {len(row.times)} | {_secs(row.best)}{mark} | "
            f"{_secs(statistics.median(row.times))} | {row.per_wheel_ms:.2f} | {ratio} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--wheels", type=int, default=1200, help="wheels in the release set")
    parser.add_argument("--repeat", type=int, default=3, help="runs per operation")
    parser.add_argument(
        "--twine-repeat", type=int, default=1, help="runs of twine check (slow; default 1)"
    )
    add_work_option(parser)
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.twine_repeat < 1:
        parser.error("--repeat, --twine-repeat: expected at least 1")
    if not 3 <= args.wheels <= MAX_WHEELS:
        parser.error(f"--wheels: expected 3 to {MAX_WHEELS}")

    return in_work_dir(args.work, BENCH_DIR, "publish-", functools.partial(run, args))


def run(args: argparse.Namespace, work: Path) -> int:
    print_header(__file__, work)
    dist, dist2 = input_sets(work, args.wheels)
    wheels = sorted(dist.glob("*.whl"))
    n, n2 = len(wheels), SECOND_RELEASE[1]
    files = sorted(p for p in dist.iterdir() if p.is_file())
    size = sum(p.stat().st_size for p in wheels)
    print(
        f"input:   {n} wheels, {size / 1e6:.1f} MB ({size / n / 1e3:.1f} kB a wheel), "
        f"and {len(files) - n} other file(s): {', '.join(p.name for p in files if p not in wheels)}"
    )

    report = check_release_set(dist, jobs=2)
    if not report.ok:
        for finding in report.errors[:20]:
            print(f"  {finding.file}: {finding.check}: {finding.message}", file=sys.stderr)
        raise CheckFailed(f"{dist}: wheelforge check finds {len(report.errors)} errors")
    others = [f for f in report.findings if f.severity != "error"]
    print(
        f"checked: the input passes wheelforge check ({len(report.artifacts)} files, "
        f"{len(others)} warnings or notes{': ' if others else ''}"
        f"{'; '.join(f'{f.check}: {f.message}' for f in others[:3])})"
    )

    wheelforge = tool("wheelforge")
    twine = [sys.executable, "-m", "twine", "check"]
    site, site2, extracted = work / "site", work / "site-extended", work / "extracted"
    index_argv = [wheelforge, "index", str(dist), "--out", str(site), "--no-check", "--json"]
    index2_argv = [wheelforge, "index", str(dist2), "--out", str(site2), "--no-check", "--json"]
    run_command([wheelforge, "check", "--help"], BENCH_DIR)  # fill the bytecode cache before timing
    run_command([wheelforge, "index", "--help"], BENCH_DIR)
    run_command([*twine, "--help"], BENCH_DIR)
    for path in files + sorted(dist2.iterdir()):  # every input in the page cache
        path.read_bytes()

    print(f"timing:  {args.repeat} runs each (twine check: {args.twine_repeat}) ...", flush=True)
    rows: dict[str, Row] = {}
    rows["check-1"] = timed(
        "check, in-process, `jobs=1`",
        "check `jobs=1`",
        n,
        args.repeat,
        lambda: check_release_set(dist, jobs=1),
        ref="check-2",
    )
    rows["check-2"] = timed(
        "check, in-process, `jobs=2`",
        "check `jobs=2`",
        n,
        args.repeat,
        lambda: check_release_set(dist, jobs=2),
    )
    rows["check-nohash"] = timed(
        "check, in-process, `jobs=2, verify_hashes=False`",
        "",
        n,
        args.repeat,
        lambda: check_release_set(dist, jobs=2, verify_hashes=False),
        ref="check-2",
    )
    rows["check-cli"] = timed(
        "`wheelforge check DIST --json` (CLI)",
        "CLI check",
        n,
        args.repeat,
        lambda: run_command([wheelforge, "check", str(dist), "--json"], BENCH_DIR),
        ref="check-2",
    )
    rows["twine"] = timed(
        "`twine check DIST/*.whl` (CLI)",
        "",
        n,
        args.twine_repeat,
        lambda: run_command([*twine, *map(str, wheels)], BENCH_DIR),
        ref="check-cli",
    )
    counted: list[int] = []
    rows["extract"] = timed(
        "extract every wheel, read METADATA (in-process, 1 thread)",
        "",
        n,
        args.repeat,
        lambda: counted.append(extract_all(wheels, extracted)),
        setup=lambda: _clean(extracted),
        ref="check-1",
    )
    require(counted[-1] == n, f"extraction found {counted[-1]} METADATA files of {n}")
    _clean(extracted)

    outcomes: list[tuple[int, int]] = []
    rows["index"] = timed(
        "`wheelforge index DIST --out SITE --no-check` (CLI), new site",
        "first index",
        n,
        args.repeat,
        lambda: outcomes.append(index_result(run_command(index_argv, BENCH_DIR))),
        setup=lambda: _clean(site),
    )
    require(outcomes[-1] == (len(files), 0), f"first index: (added, unchanged) {outcomes[-1]}")
    rows["reindex"] = timed(
        "the same again into that site (nothing new)",
        "",
        n,
        args.repeat,
        lambda: outcomes.append(index_result(run_command(index_argv, BENCH_DIR))),
        ref="index",
    )
    require(outcomes[-1] == (0, len(files)), f"re-index: (added, unchanged) {outcomes[-1]}")

    def copy_site() -> None:
        _clean(site2)
        shutil.copytree(site, site2, symlinks=True)

    n2_files = len([p for p in dist2.iterdir() if p.is_file()])
    rows["extend"] = timed(
        f"index {NAME} {SECOND_RELEASE[0]} ({n2} wheels) into that site (CLI)",
        "",
        n2,
        args.repeat,
        lambda: outcomes.append(index_result(run_command(index2_argv, BENCH_DIR))),
        setup=copy_site,
        ref="index",
    )
    require(outcomes[-1] == (n2_files, 0), f"extend: (added, unchanged) {outcomes[-1]}")
    page = site2 / "simple" / NAME / "index.json"
    listed = len(json.loads(page.read_bytes())["files"])
    require(listed == len(files) + n2_files, f"{page}: lists {listed} files")
    print(
        f"checked: index outputs right; the extended project page lists {listed} files "
        f"(index.json {page.stat().st_size / 1e3:.0f} kB, index.html "
        f"{page.with_name('index.html').stat().st_size / 1e3:.0f} kB)"
    )

    print()
    print(table(rows))
    disturbed = sum(b for row in rows.values() for b in row.busy)
    runs = sum(len(row.busy) for row in rows.values())
    print(
        f"\n`*`: during that row's best run other processes used more than "
        f"{100 * BUSY_OTHER:.0f}% of the machine's CPU time ({disturbed} of {runs} runs were "
        "so disturbed)."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
