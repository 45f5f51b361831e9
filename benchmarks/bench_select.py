"""Benchmark: which wheel a machine gets from a release of many variant wheels
(``select``), and what this machine supports (``detect``).

Run on demand (not part of the test suite)::

    .venv/bin/python benchmarks/bench_select.py [--variants 150] [--repeat 20]
        [--cli-repeat 5] [--work DIR] [--cprofile]

The input is generated first (its time is printed, not measured): one project,
``benchsel`` 1.0, as one plain wheel, its null variant and ``--variants`` variant wheels
made from it with ``tag_wheel`` (hash labels), plus the release's variants file
(``write_variants_json``). Four variants are CPU-only (one ``x86_64 :: level`` each); the
others each have one ``nvidia :: cuda_version_lower_bound``, one ``nvidia :: sm_arch``
and one ``x86_64 :: level``, drawn without repetition (fixed seed) from 22 CUDA versions
x 9 architectures x 4 levels. The wheels are tiny (their size does not matter: selection
reads names and the variants file, never a wheel) and carry the running interpreter's
``manylinux_2_28`` tag. The directory is also indexed (``wheelforge index``) into a
static site for the "local HTTP" rows. Everything lives in a temporary directory under
``.bench/`` (gitignored), or in ``--work DIR``, kept and reused when it holds the same
input.

Machines: the shipped profiles ``h100-driver-580`` and ``cpu-x86-64-v2``, and this
machine as ``detect()`` sees it (detected once, before timing).

Rows, each with one untimed warm-up run (shown as "first run"), then ``--repeat`` runs
(20) in-process or ``--cli-repeat`` runs (5) as subprocesses; best and median reported:

- in-process selection from the find-links directory, per machine: ``directory_files``
  then ``select`` (which reads and parses the variants file and ranks); everything but the
  network. Target: under 50 ms;
- the same with the files listed by a local served index (``serving(SITE)``, in a thread
  of this process): ``read_project_page`` then ``select``, which fetches the variants file
  over HTTP and checks its sha256. Reported, not a target;
- ``wheelforge select benchsel --find-links DIST --profile h100-driver-580`` and the same
  without ``--profile`` (detection included) as subprocesses, with ``wheelforge --version``
  and ``python -c pass`` as start-up references;
- in-process ``detect()`` of this machine (target: under 200 ms) and
  ``wheelforge detect --json`` as a subprocess; ``rocminfo`` and ``rocm_agent_enumerator``
  (when installed) as references: what asking the ROCm tools would cost.

A target counts as met when the median is under it. A per-step breakdown of the
selection (listing, reading and parsing the variants file, ranking, the rest of
``select``) and of detection (each namespace) follows, as the best of ``--repeat`` runs.
``--cprofile`` adds the top functions of 20 selections and 20 detections under cProfile.
Subprocesses get a bytecode cache (under ``.bench/pycache``), as an installed tool has.
Each row also shows the CPU time other processes used during its timed runs
(``/proc/stat``), as a share of the machine: where it is high, so is the noise.

The selections are checked: every machine gets a wheel, the H100 a CUDA variant for
``sm_arch 90``, the x86-64-v2 CPU the ``x86_64 :: level :: v2`` variant, and the command
line chooses what the library does.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import hashlib
import io
import itertools
import json
import os
import pstats
import random
import resource
import shutil
import statistics
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from machine import (  # benchmarks/machine.py
    add_work_option,
    in_work_dir,
    print_header,
    require,
    run_command,
    tool,
)
from packaging.tags import Tag

from wheelforge.publish.serve import serving
from wheelforge.select.detect import DETECTORS, System, detect
from wheelforge.select.install import interpreter
from wheelforge.select.machine import Machine
from wheelforge.select.profiles import load_profiles
from wheelforge.select.selection import Selection, parse_requirement, select
from wheelforge.simple_api import ProjectFile, directory_files, read_project_page
from wheelforge.tag import TagRequest, tag_wheel
from wheelforge.variants.metadata import VariantMetadata, loads
from wheelforge.variants.properties import VariantProperty
from wheelforge.variants.ranking import rank
from wheelforge.variants_file import write_variants_json
from wheelforge.wheel.record import digest_to_record_hash

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / ".bench"
BIN_DIR = Path(sys.executable).parent

NAME, VERSION = "benchsel", "1.0"
DATE_TIME = (2025, 6, 1, 12, 0, 0)
SEED = 825
INPUT_FORMAT = 1  # bump when the generated wheels change, so that --work is regenerated
SELECT_TARGET = 0.050  # seconds: in-process selection, no network
DETECT_TARGET = 0.200  # seconds: in-process detection
PROFILES = ("h100-driver-580", "cpu-x86-64-v2")
DETECTED = "this machine (detected)"

X86_LEVEL = ["v1", "v2", "v3", "v4"]
CUDA_LOWER = [f"11.{m}" for m in range(9)] + [f"12.{m}" for m in range(10)]
CUDA_LOWER += ["13.0", "13.1", "13.2"]
SM_ARCH = [f"{sm}_real" for sm in ("70", "75", "80", "86", "89", "90", "100", "120")]
SM_ARCH.insert(6, "90_virtual")
CPUS = len(os.sched_getaffinity(0))
MAX_VARIANTS = len(X86_LEVEL) + len(CUDA_LOWER) * len(SM_ARCH) * len(X86_LEVEL)


# --- the input ---------------------------------------------------------------------


def wheel_tag(tags: tuple[Tag, ...]) -> str:
    """The running interpreter's best ``manylinux_2_28`` tag (else its best tag)."""
    return str(next((t for t in tags if t.platform.startswith("manylinux_2_28_")), tags[0]))


def build_plain_wheel(directory: Path, tag: str) -> Path:
    """A small valid plain wheel, written with the standard library's zipfile."""
    dist_info = f"{NAME}-{VERSION}.dist-info"
    members = {
        f"{NAME}/__init__.py": f'"""{NAME}."""\n__version__ = {VERSION!r}\n'.encode(),
        f"{dist_info}/METADATA": (
            f"Metadata-Version: 2.1\nName: {NAME}\nVersion: {VERSION}\n"
            "Summary: A benchmark package for wheelforge's selection\n"
        ).encode(),
        f"{dist_info}/WHEEL": (
            f"Wheel-Version: 1.0\nGenerator: bench_select\nRoot-Is-Purelib: false\nTag: {tag}\n"
        ).encode(),
    }
    record = "".join(
        f"{n},{digest_to_record_hash('sha256', hashlib.sha256(b).digest())},{len(b)}\n"
        for n, b in members.items()
    )
    members[f"{dist_info}/RECORD"] = (record + f"{dist_info}/RECORD,,\n").encode()
    path = directory / f"{NAME}-{VERSION}-{tag}.whl"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for member, data in members.items():
            info = zipfile.ZipInfo(member, DATE_TIME)
            info.external_attr = 0o100644 << 16
            zf.writestr(info, data, zipfile.ZIP_DEFLATED)
    return path


def property_sets(variants: int) -> list[frozenset[VariantProperty]]:
    """The CPU-only sets first, then distinct CUDA sets drawn with a fixed seed."""
    cpu_only = [[f"x86_64 :: level :: {level}"] for level in X86_LEVEL]
    combos = list(itertools.product(CUDA_LOWER, SM_ARCH, X86_LEVEL))
    drawn = random.Random(SEED).sample(combos, max(0, variants - len(cpu_only)))
    cuda = [
        [
            f"nvidia :: cuda_version_lower_bound :: {lower}",
            f"nvidia :: sm_arch :: {sm}",
            f"x86_64 :: level :: {level}",
        ]
        for lower, sm, level in drawn
    ]
    sets = (cpu_only + cuda)[:variants]
    return [frozenset(VariantProperty.parse(text) for text in texts) for texts in sets]


def generate_release(dist: Path, variants: int, tag: str) -> None:
    """The plain wheel, the null variant, ``variants`` variants, the variants file."""
    shutil.rmtree(dist, ignore_errors=True)
    dist.mkdir(parents=True)
    plain = build_plain_wheel(dist, tag)
    tag_wheel(plain, dist, TagRequest())
    for properties in property_sets(variants):
        tag_wheel(plain, dist, TagRequest(properties=properties, label=None))
    write_variants_json(dist)
    found = len(list(dist.glob("*.whl")))
    require(found == variants + 2, f"{dist}: {found} wheels, expected {variants + 2}")


def input_set(work: Path, variants: int, tag: str, wheelforge: str) -> tuple[Path, Path]:
    """DIST and its static SITE, generated unless ``work`` holds them already."""
    dist, site = work / "dist", work / "site"
    stamp = work / "input.json"
    wanted = {"format": INPUT_FORMAT, "variants": variants, "tag": tag}
    if stamp.is_file() and json.loads(stamp.read_text()) == wanted:
        print(f"input:   {dist} and {site} (reused)")
        return dist, site
    stamp.unlink(missing_ok=True)
    print(f"input:   generating {variants} variants of {NAME} {VERSION} in {dist} ...", flush=True)
    start = time.perf_counter()
    generate_release(dist, variants, tag)
    shutil.rmtree(site, ignore_errors=True)
    run_command([wheelforge, "index", str(dist), "--out", str(site), "--json"], BENCH_DIR)
    print(f"         generated and indexed in {time.perf_counter() - start:.1f} s (not measured)")
    stamp.write_text(json.dumps(wanted))
    return dist, site


# --- timing ------------------------------------------------------------------------


@dataclass
class Row:
    label: str
    first: float  # the untimed warm-up run, seconds
    times: list[float]
    others: float  # other processes' CPU time during the timed runs, a share of the machine
    target: float | None = None  # seconds; None: reported, no target

    @property
    def best(self) -> float:
        return min(self.times)

    @property
    def median(self) -> float:
        return statistics.median(self.times)


def busy_seconds() -> float:
    """Busy CPU time of the whole machine so far (steal included), in seconds."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_cpu() -> float:
    """CPU time of this process (the served index's thread included) and its finished
    children, in seconds."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def measure(repeat: int, action: Callable[[], object]) -> tuple[float, list[float], float]:
    """The warm-up run's time, ``repeat`` timed runs' of ``action``, and the share of the
    machine's CPU time other processes used during the timed runs."""
    start = time.perf_counter()
    action()
    first = time.perf_counter() - start
    times: list[float] = []
    busy, cpu, wall = busy_seconds(), own_cpu(), time.perf_counter()
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    elapsed = time.perf_counter() - wall
    others = max(0.0, (busy_seconds() - busy) - (own_cpu() - cpu)) / (elapsed * CPUS)
    return first, times, others


def timed(
    label: str, repeat: int, action: Callable[[], object], target: float | None = None
) -> Row:
    first, times, others = measure(repeat, action)
    row = Row(label, first, times, others, target)
    print(
        f"  {label}: best {_ms(row.best)} ms, median {_ms(row.median)} ms, "
        f"first run {_ms(first)} ms; other processes {100 * others:.0f}% of the CPUs",
        flush=True,
    )
    return row


def _ms(seconds: float) -> str:
    ms = 1000 * seconds
    return f"{ms:.0f}" if ms >= 100 else f"{ms:.1f}" if ms >= 1 else f"{ms:.2f}"


def run_failing(argv: list[str]) -> int:
    """Run a tool that may fail (its output discarded); its exit status."""
    done = subprocess.run(argv, capture_output=True, check=False, stdin=subprocess.DEVNULL)
    return done.returncode


def table(rows: list[Row]) -> str:
    lines = [
        "| operation | runs | best ms | median ms | first run ms | others' CPU | target "
        "| median vs target |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        target, verdict = "", ""
        if row.target is not None:
            target = f"< {_ms(row.target)} ms"
            verdict = "met" if row.median < row.target else "**missed**"
        lines.append(
            f"| {row.label} | {len(row.times)} | {_ms(row.best)} | {_ms(row.median)} | "
            f"{_ms(row.first)} | {100 * row.others:.0f}% | {target} | {verdict} |"
        )
    return "\n".join(lines)


# --- the operations ----------------------------------------------------------------


def chosen_properties(selection: Selection) -> tuple[str, ...]:
    return next((c.properties for c in selection.candidates if c.status == "chosen"), ())


def describe_choice(selection: Selection) -> str:
    chosen = selection.chosen.filename if selection.chosen else "nothing"
    return f"{chosen} ({'; '.join(chosen_properties(selection)) or 'no properties'})"


def rank_only(meta: VariantMetadata, machine: Machine) -> object:
    """The ranking proper: what the machine supports for this release, then ``rank``."""
    return rank(meta, machine.for_release(meta)[0], plain=True)


def cprofile(label: str, action: Callable[[], object], runs: int = 20) -> None:
    """The top functions of ``runs`` calls of ``action`` (after a warm-up), by own time."""
    action()
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(runs):
        action()
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(12)
    print(f"\ncProfile, {label}, {runs} calls, top functions by own time:")
    text = out.getvalue()
    print(text[text.find("   ncalls") :].rstrip())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--variants", type=int, default=150, help="variant wheels, besides null and plain"
    )
    parser.add_argument("--repeat", type=int, default=20, help="runs per in-process row")
    parser.add_argument("--cli-repeat", type=int, default=5, help="runs per subprocess row")
    parser.add_argument(
        "--cprofile", action="store_true", help="profile one selection and one detection"
    )
    add_work_option(parser)
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.cli_repeat < 1:
        parser.error("--repeat, --cli-repeat: expected at least 1")
    if not 1 <= args.variants <= MAX_VARIANTS:
        parser.error(f"--variants: expected 1 to {MAX_VARIANTS}")

    return in_work_dir(args.work, BENCH_DIR, "select-", functools.partial(run, args))


def run(args: argparse.Namespace, work: Path) -> int:
    print_header(__file__, work)
    wheelforge = tool("wheelforge")

    start = time.perf_counter()
    python = interpreter()
    tags_seconds = time.perf_counter() - start
    tag = wheel_tag(python.tags)
    dist, site = input_set(work, args.variants, tag, wheelforge)
    names = sorted(p.name for p in dist.iterdir())
    variants_path = dist / f"{NAME}-{VERSION}-variants.json"
    require(variants_path.is_file(), f"{variants_path}: missing")
    print(
        f"input:   {len(names) - 1} wheels ({args.variants} variants, null, plain; tag {tag}) "
        f"and {variants_path.name} ({variants_path.stat().st_size / 1e3:.1f} kB)"
    )

    found = detect()
    known = {ns: d.features for ns, d in found.items() if d.features}
    print(
        "detected: "
        + "; ".join(f"{ns}: {d.facts or '-'} from {d.source}" for ns, d in found.items())
    )
    shipped = {p.name: p for p in load_profiles()}
    machines = {f"`{name}` profile": Machine(shipped[name].supported()) for name in PROFILES}
    machines[DETECTED] = Machine(known)
    requirement = parse_requirement(NAME)

    def from_dir(machine: Machine) -> Selection:
        files = directory_files(dist, NAME)
        return select(requirement, files, machine, tags=python.tags, python_version=python.version)

    with serving(site) as url:

        def from_http(machine: Machine) -> Selection:
            files = read_project_page(url, NAME)
            return select(
                requirement, files, machine, tags=python.tags, python_version=python.version
            )

        chosen: dict[str, Selection] = {}
        for label, machine in machines.items():
            chosen[label] = selection = from_dir(machine)
            local, over_http = selection.chosen, from_http(machine).chosen
            require(local is not None, f"{label}: no wheel chosen")
            require(
                over_http is not None and local is not None
                and over_http.filename == local.filename,
                f"{label}: the served index gives another wheel",
            )  # fmt: skip
            print(f"chosen:  {label}: {describe_choice(selection)}")
        h100 = chosen_properties(chosen[f"`{PROFILES[0]}` profile"])
        require(any(p.startswith("nvidia :: ") for p in h100), f"H100 gets {h100}")
        cpu = chosen_properties(chosen[f"`{PROFILES[1]}` profile"])
        require(cpu == ("x86_64 :: level :: v2",), f"x86-64-v2 gets {cpu}")

        cli_select = [wheelforge, "select", NAME, "--find-links", str(dist)]
        cli_h100 = [*cli_select, "--profile", PROFILES[0]]
        cli_json = json.loads(run_command([*cli_h100, "--json"], BENCH_DIR))
        h100_file = chosen[f"`{PROFILES[0]}` profile"].chosen
        require(
            h100_file is not None and cli_json["chosen"] == h100_file.filename,
            f"CLI chooses {cli_json['chosen']}",
        )
        print("checked: every machine gets a wheel, the same from the directory, the served")
        print("         index and the command line; the H100 an sm 90, the v2 CPU the v2 one")

        print(
            f"timing:  {args.repeat} runs in-process, {args.cli_repeat} runs a subprocess, "
            "after one warm-up run each ...",
            flush=True,
        )
        rows: list[Row] = []
        for label, machine in machines.items():
            rows.append(
                timed(
                    f"select, in-process, find-links, {label}",
                    args.repeat,
                    functools.partial(from_dir, machine),
                    SELECT_TARGET,
                )
            )
        for label, machine in machines.items():
            rows.append(
                timed(
                    f"select, in-process, local HTTP index, {label}",
                    args.repeat,
                    functools.partial(from_http, machine),
                )
            )

    rows.append(
        timed(
            f"`wheelforge select {NAME} --find-links DIST --profile {PROFILES[0]}` (CLI)",
            args.cli_repeat,
            lambda: run_command(cli_h100, BENCH_DIR),
        )
    )
    rows.append(
        timed(
            f"`wheelforge select {NAME} --find-links DIST` (CLI, detects)",
            args.cli_repeat,
            lambda: run_command(cli_select, BENCH_DIR),
        )
    )
    rows.append(
        timed(
            "`wheelforge --version` (CLI start-up)",
            args.cli_repeat,
            lambda: run_command([wheelforge, "--version"], BENCH_DIR),
        )
    )
    rows.append(
        timed(
            "`python -c pass` (interpreter start-up)",
            args.cli_repeat,
            lambda: run_command([sys.executable, "-c", "pass"], BENCH_DIR),
        )
    )
    rows.append(timed("`detect()`, in-process", args.repeat, detect, DETECT_TARGET))
    rows.append(
        timed(
            "`wheelforge detect --json` (CLI)",
            args.cli_repeat,
            lambda: run_command([wheelforge, "detect", "--json"], BENCH_DIR),
        )
    )
    rocm_status: dict[str, int] = {}
    for rocm_tool in ("rocminfo", "rocm_agent_enumerator"):
        path = shutil.which(rocm_tool)
        if path is None:
            print(f"  {rocm_tool}: not installed, no row")
            continue
        rocm_status[rocm_tool] = run_failing([path])
        rows.append(
            timed(
                f"`{rocm_tool}` (subprocess, exit status {rocm_status[rocm_tool]})",
                args.cli_repeat,
                functools.partial(run_failing, [path]),
            )
        )

    print()
    print(table(rows))
    print(
        "\nA target is met when the median is under it. others' CPU: the CPU time other "
        f"processes used during the timed runs, a share of the machine's {CPUS} CPUs."
    )

    # --- breakdown -----------------------------------------------------------------
    files = directory_files(dist, NAME)
    [variants_file] = [f for f in files if f.filename.endswith("-variants.json")]
    data = variants_file.read()
    meta = loads(data, source=variants_file.url)

    def best_of(action: Callable[[], object]) -> float:
        return min(measure(args.repeat, action)[1])

    listing = best_of(lambda: directory_files(dist, NAME))
    reading = best_of(variants_file.read)
    parsing = best_of(lambda: loads(data, source=variants_file.url))
    print(f"\nSelection, step by step (best of {args.repeat} runs, ms):\n")
    print("| step | " + " | ".join(machines) + " |")
    print("|---|" + "---:|" * len(machines))
    ranking: list[float] = []
    rest: list[float] = []
    totals: list[float] = []

    def cached(_: ProjectFile) -> bytes:
        return data

    for machine in machines.values():
        ranked = best_of(functools.partial(rank_only, meta, machine))
        whole = best_of(
            functools.partial(
                select, requirement, files, machine, tags=python.tags,
                python_version=python.version, read=cached,
            )
        )  # fmt: skip
        ranking.append(ranked)
        rest.append(whole - parsing - ranked)
        totals.append(listing + reading + whole)
    steps = [
        ("list the directory (`directory_files`)", [listing] * len(machines)),
        ("read the variants file (`ProjectFile.read`)", [reading] * len(machines)),
        ("parse the variants file (`loads`)", [parsing] * len(machines)),
        ("rank (`Machine.for_release` + `rank`)", ranking),
        ("the rest of `select` (filenames, tags, candidates; by difference)", rest),
        ("sum", totals),
    ]
    for step, values in steps:
        print(f"| {step} | " + " | ".join(_ms(v) for v in values) + " |")
    print(
        f"\nNot in the rows: the interpreter's {len(python.tags)} tags (`interpreter()`, "
        f"once per process) took {_ms(tags_seconds)} ms."
    )

    system = System()
    print(f"\nDetection, namespace by namespace (best of {args.repeat} runs):\n")
    print("| detector | best ms | source |")
    print("|---|---:|---|")
    for detector in DETECTORS:
        seconds = best_of(functools.partial(detector, system))
        print(f"| `{detector.__name__}` | {_ms(seconds)} | {detector(system).source} |")
    if rocm_status:
        print(
            "\nROCm tools installed ("
            + ", ".join(f"{t}: exit {s}" for t, s in rocm_status.items())
            + "); detect() asks them only when the amdgpu driver is loaded "
            f"(/dev/kfd or /sys/module/amdgpu: {'yes' if amdgpu_loaded() else 'no'})."
        )

    if args.cprofile:
        cprofile(f"select from find-links, {DETECTED}", lambda: from_dir(machines[DETECTED]))
        cprofile("detect()", detect)
    return 0


def amdgpu_loaded() -> bool:
    return Path("/dev/kfd").exists() or Path("/sys/module/amdgpu").exists()


if __name__ == "__main__":
    sys.exit(main())
