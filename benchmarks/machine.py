"""A one-line description of the machine a benchmark ran on (shared by the scripts)."""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path


def describe(data_dir: Path) -> str:
    """CPUs, memory, kernel, the file system holding ``data_dir``, and Python."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    fs = "?"
    try:
        best = ""
        target = str(data_dir.resolve())
        for line in Path("/proc/self/mounts").read_text().splitlines():
            _, mount, fstype, *_ = line.split()
            inside = target == mount or target.startswith(mount.rstrip("/") + "/")
            if inside and len(mount) > len(best):
                best, fs = mount, fstype
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / (1 << 30)
    return (
        f"{len(os.sched_getaffinity(0))} CPUs ({cpu}), {mem:.0f} GiB RAM, "
        f"{platform.system()} {platform.release()}, {fs} file system, "
        f"Python {platform.python_version()}"
    )


def cli_env(bench_dir: Path) -> dict[str, str]:
    """The environment for timed CLI runs: bytecode cached (under ``bench_dir/pycache``,
    so the tree stays clean) even where PYTHONDONTWRITEBYTECODE is set, as for an
    installed tool; otherwise every run would compile wheelforge's modules from source."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(bench_dir / "pycache")
    return env


def run_command(argv: list[str], bench_dir: Path) -> str:
    """Run ``argv`` with :func:`cli_env`; its stdout, or exit with its output if it failed."""
    result = subprocess.run(
        argv, capture_output=True, text=True, check=False, env=cli_env(bench_dir)
    )
    if result.returncode != 0:
        sys.exit(
            f"command failed ({result.returncode}): {shlex.join(argv[:8])}"
            f"{' ...' if len(argv) > 8 else ''}\n{result.stdout[-4000:]}{result.stderr[-4000:]}"
        )
    return result.stdout


def tool(name: str) -> str:
    """A command installed beside this interpreter (the venv's), else on PATH."""
    path = Path(sys.executable).parent / name
    found = str(path) if path.exists() else shutil.which(name)
    if found is None:
        sys.exit(f"{name}: not found next to {sys.executable} nor on PATH")
    return found


def add_work_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--work",
        type=Path,
        default=None,
        metavar="DIR",
        help="keep the input and outputs in DIR, and reuse its input "
        "(default: a temporary directory under .bench/, removed at the end)",
    )


def in_work_dir(work: Path | None, bench_dir: Path, prefix: str, run: Callable[[Path], int]) -> int:
    """``run(directory)`` in ``work``, or in a temporary directory under ``bench_dir``."""
    if work is None:
        bench_dir.mkdir(exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=prefix, dir=bench_dir) as tmp:
            return run(Path(tmp))
    work.mkdir(parents=True, exist_ok=True)
    return run(work.resolve())


def print_header(script: str, work: Path) -> None:
    """The command line, the machine and how CLI runs are made."""
    command = shlex.join([os.path.relpath(sys.executable), os.path.relpath(script), *sys.argv[1:]])
    print(f"command: {command}")
    print(f"machine: {describe(work)}")
    print("CLI runs: bytecode cached under .bench/pycache (PYTHONDONTWRITEBYTECODE unset)")


class CheckFailed(Exception):
    """An input or output is not what it must be: the timings would mean nothing."""


def require(condition: bool, what: object) -> None:
    """``assert``, but kept under ``python -O``."""
    if not condition:
        raise CheckFailed(str(what))
