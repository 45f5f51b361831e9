"""Smoke tests: install each wheel with uv into a fresh venv and run the matrix's
``test-command`` on the machine its label claims to serve.

The simulated machine is the *weakest* one the wheel claims: the lowest x86-64 level it
names (the baseline for the plain wheel, the null variant and GPU variants, whose host
code claims no level), emulated with qemu-user's CPU models, and the lowest CUDA
driver, compute capability, GPU architecture and ROCm version among its properties,
given to the command as the providers' override variables
(``NV_VARIANT_PROVIDER_FORCE_CUDA_DRIVER_VERSION``, ...).

How the CPU is emulated: the venv's ``python``, ``python3`` and ``python3.X`` become
shims that run the real interpreter under ``qemu-x86_64 -cpu MODEL`` with ``argv[0]``
kept, so ``sys.executable`` is the shim and the venv is still found. The command
itself runs natively (it may be a shell line), but every Python it starts, console
scripts included (their shebang names the shim), and every library loaded into it run
on the emulated CPU. A native program the command runs directly is not emulated (no
binfmt_misc entry can apply to the host's own architecture).

Verified models (qemu 7.2 TCG, by executing each level's instructions): ``qemu64``
runs no SSSE3/SSE4/POPCNT/AVX (x86-64-v1; it does run SSE3, and ``-sse3`` is removed
here so that v1 means v1), ``Nehalem`` runs SSE3-SSE4.2 and POPCNT but no AVX
(v2), ``Haswell`` runs AVX, AVX2, FMA, BMI1/2, F16C and MOVBE but no AVX-512 (v3).
TCG has no AVX-512, so ``Skylake-Server`` cannot stand for v4: a wheel claiming v4 runs
natively when this CPU is v4, and is skipped (reported, not passed) otherwise.
"""

from __future__ import annotations

import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from wheelforge.build.logs import signal_group, step
from wheelforge.errors import InvalidInput, WheelforgeError
from wheelforge.matrix import Job, Matrix
from wheelforge.select.detect import (  # the variables the selector honours
    FORCE_CUDA_DRIVER,
    FORCE_GFX_ARCH,
    FORCE_ROCM_VERSION,
    FORCE_SM_ARCH,
)
from wheelforge.variants.properties import VariantProperty

Progress = Callable[[str, str], None]

# x86-64 level -> the qemu-user CPU model whose instructions are exactly that level's
# (see the module docstring for how this was checked). None: TCG cannot emulate it.
QEMU_MODELS: Mapping[int, str | None] = {1: "qemu64,-sse3", 2: "Nehalem", 3: "Haswell", 4: None}
SIGILL = 4
_QEMU_SIGILL = "uncaught target signal 4"  # what qemu prints when the guest gets SIGILL
TAIL_LINES = 25

OVERRIDES = (FORCE_CUDA_DRIVER, FORCE_SM_ARCH, FORCE_GFX_ARCH, FORCE_ROCM_VERSION)
# The driver a wheel that names a compute capability but no CUDA version is tested with
# (NVIDIA's provider reads the SM override only beside a driver override).
DEFAULT_CUDA_DRIVER = "12.0"


class SmokeTestFailed(WheelforgeError):
    """A wheel's smoke test failed (install, command, or a SIGILL)."""


@dataclass(frozen=True)
class Machine:
    """The machine a wheel is tested on: the weakest it claims to serve."""

    level: int | None  # x86-64 level; None: a wheel for another architecture
    claim: str  # who claims it, for messages: "the plain wheel", "label 'x86_64_v3'"
    env: tuple[tuple[str, str], ...] = ()  # the providers' override variables
    platform: str = "any"  # the wheel's platform tag

    @property
    def level_name(self) -> str:
        return f"x86-64-v{self.level}" if self.level else "none"


@dataclass(frozen=True)
class Runner:
    """How the command runs here: under qemu with ``model``, natively, or not at all."""

    model: str | None  # qemu CPU model; None: natively
    skip: str | None = None  # why it cannot run here
    note: str = ""

    @property
    def cpu(self) -> str:
        return f"qemu-x86_64 -cpu {self.model}" if self.model else "native"


@dataclass(frozen=True)
class TestSpec:
    command: str | tuple[str, ...]  # a string runs with sh -c, a tuple is an argv
    project: Path
    requires: tuple[str, ...] = ()


@dataclass(frozen=True)
class TestOptions:
    python: str = sys.executable  # the venv's interpreter (a path, or a version for uv)
    index_url: str | None = None
    find_links: tuple[Path, ...] = ()
    no_deps: bool = False
    native: bool = False  # run natively, no CPU emulation
    qemu: str = "qemu-x86_64"
    timeout: float = 600.0
    host_level: int | None = None  # this CPU's x86-64 level; None: read /proc/cpuinfo


@dataclass(frozen=True)
class TestResult:
    wheel: Path
    status: str  # "passed" | "failed" | "skipped"
    machine: Machine
    cpu: str  # "qemu Haswell", "native", "-"
    seconds: float = 0.0
    log: Path | None = None
    error: str | None = None
    tail: tuple[str, ...] = ()  # the log's last lines, for a failure

    @property
    def ok(self) -> bool:
        return self.status != "failed"

    def to_json(self) -> dict[str, Any]:
        return {
            "wheel": str(self.wheel),
            "status": self.status,
            "level": self.machine.level_name,
            "cpu": self.cpu,
            "env": dict(self.machine.env),
            "seconds": round(self.seconds, 3),
            "log": str(self.log) if self.log else None,
            "error": self.error,
            "tail": list(self.tail),
        }


# Pure parts: what a wheel claims, how to run it here, the command line.


def _version_key(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".") if part.isdigit())


def _sm_version(value: str) -> str | None:
    """``90_real`` / ``90_virtual`` / ``100_real`` -> ``9.0`` / ``9.0`` / ``10.0``."""
    digits = value.partition("_")[0]
    if not digits.isdigit() or len(digits) < 2:
        return None
    return f"{int(digits[:-1])}.{digits[-1]}"


def _major_minor(version: str) -> str:
    return version if "." in version else f"{version}.0"


def claimed_machine(
    properties: Iterable[VariantProperty], *, label: str | None, platform_tag: str
) -> Machine:
    """The weakest machine a wheel with these properties claims to serve."""
    props = list(properties)
    claim = (
        "the plain wheel"
        if label is None
        else ("the null variant" if label == "null" else f"label {label!r}")
    )
    values: dict[tuple[str, str], list[str]] = {}
    for prop in props:
        values.setdefault((prop.namespace, prop.feature), []).append(prop.value)

    def lowest(
        namespace: str, feature: str, key: Callable[[str], Any] = _version_key
    ) -> str | None:
        found = values.get((namespace, feature))
        return min(found, key=key) if found else None

    level: int | None = None
    if platform_tag == "any" or platform_tag.endswith("x86_64"):  # any: runs on the baseline
        from wheelforge.isa import claimed_level  # the ISA audit's reading of the claim

        level = claimed_level(props)
    env: dict[str, str] = {}
    driver = lowest("nvidia", "cuda_version_lower_bound")
    sms = [s for v in values.get(("nvidia", "sm_arch"), []) if (s := _sm_version(v))]
    if driver is not None or sms:
        env[FORCE_CUDA_DRIVER] = _major_minor(driver) if driver else DEFAULT_CUDA_DRIVER
        if sms:
            env[FORCE_SM_ARCH] = min(sms, key=_version_key)
    gfx = lowest("amd", "gfx_arch", key=str)
    if gfx is not None:
        env[FORCE_GFX_ARCH] = gfx
    rocm = lowest("amd", "rocm_version")
    if rocm is not None:
        env[FORCE_ROCM_VERSION] = _major_minor(rocm)
    return Machine(level, claim, tuple(sorted(env.items())), platform_tag)


def choose_runner(
    machine: Machine, *, host_level: int | None, native: bool, qemu_found: bool
) -> Runner:
    """Emulate the claimed level with qemu where qemu can; v4 natively on a v4 CPU."""
    if host_level is None:  # not an x86-64 machine: its own wheels run natively
        if machine.level is not None and machine.platform != "any":
            return Runner(None, skip=f"a {machine.platform} wheel, and this is no x86-64 machine")
        return Runner(None, note="no CPU emulation on this architecture")
    if machine.level is None:
        return Runner(None, skip=f"a {machine.platform} wheel does not run on this x86-64 machine")
    if native:
        return Runner(None, note="not emulated (--native)")
    model = QEMU_MODELS.get(machine.level)
    if model is None:
        if host_level >= machine.level:
            return Runner(
                None, note=f"native: qemu cannot emulate AVX-512, this CPU is v{host_level}"
            )
        return Runner(
            None,
            skip=f"{machine.claim} claims {machine.level_name}: qemu's TCG has no AVX-512 and "
            f"this CPU is x86-64-v{host_level}; run it on a v4 machine",
        )
    if not qemu_found:
        return Runner(
            model,
            skip=f"{machine.claim} claims {machine.level_name}, emulated with qemu-x86_64, "
            "which is not installed (apt-get install qemu-user; or --native)",
        )
    return Runner(model)


def command_argv(command: str | tuple[str, ...], *, project: Path, wheel: Path) -> list[str]:
    """The argv of a test command with {project} and {wheel} substituted: shell-quoted
    in a shell string (a file name cannot inject a command), verbatim in an argv."""
    values = {"project": str(project), "wheel": str(wheel)}
    if isinstance(command, str):
        quoted = {name: shlex.quote(value) for name, value in values.items()}
        return ["sh", "-c", _substitute(command, quoted)]
    return [_substitute(arg, values) for arg in command]


def _substitute(text: str, values: Mapping[str, str]) -> str:
    for name, value in values.items():
        text = text.replace("{" + name + "}", value)
    return text


def died_of_sigill(returncode: int, output: str) -> bool:
    """The command, or a Python it ran under qemu, died of an illegal instruction."""
    return returncode in (-SIGILL, 128 + SIGILL) or _QEMU_SIGILL in output


def host_x86_64_level(cpuinfo: str | None = None) -> int | None:
    """This CPU's x86-64 level from ``/proc/cpuinfo``; None when it is no x86-64."""
    from wheelforge.variants.supported import cpuinfo_flags, x86_64_level

    if platform.machine() not in ("x86_64", "AMD64"):
        return None
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return 1
    return x86_64_level(cpuinfo_flags(cpuinfo))


def shim_script(qemu: str, model: str, interpreter: Path, argv0: Path) -> str:
    """A ``python`` that runs ``interpreter`` under qemu, keeping ``argv0`` (so the venv
    and ``sys.executable`` stay the shim's). No core files in the test's directory."""
    q = shlex.quote
    return (
        "#!/bin/sh\nulimit -c 0 2>/dev/null\n"
        f'exec {q(qemu)} -cpu {q(model)} -0 {q(str(argv0))} {q(str(interpreter))} "$@"\n'
    )


# Effects: venvs, installs, the command.


def find_uv() -> str:
    try:
        from uv import find_uv_bin  # type: ignore[import-not-found,unused-ignore]

        return str(find_uv_bin())
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        if found is None:
            raise InvalidInput(
                "wheelforge test installs wheels with uv, which is not installed",
                hint="pip install uv",
            ) from None
        return found


def wheel_machine(wheel: Path) -> Machine:
    from wheelforge.wheel.wheelfile import Wheel

    with Wheel(wheel) as archive:
        meta = archive.variant_metadata()
        label = archive.filename.label
        props = meta.variants.get(label, frozenset()) if meta and label else frozenset()
        return claimed_machine(props, label=label, platform_tag=archive.filename.platform)


def _run(argv: list[str], log: IO[str], *, timeout: float | None = None, **kwargs: Any) -> int:
    """Run with the output in the log, as a build step (an interrupted build stops it).
    On timeout the whole process group goes at once (the command's own children too:
    emulated Pythons, test runners), then it raises."""
    log.write(f"$ {shlex.join(argv)}\n")
    log.flush()
    with step(argv, log=log, what=argv[0], stdin=subprocess.DEVNULL, **kwargs) as process:
        try:
            returncode = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            signal_group(process, signal.SIGKILL)  # a hung command gets no grace
            raise
    log.write(f"[exit code {returncode}]\n")
    log.flush()
    return returncode


def _tail(log_path: Path, offset: int = 0, *, lines: int | None = TAIL_LINES) -> tuple[str, ...]:
    """The log's last non-empty ``lines`` (all with None) from byte ``offset`` on."""
    with open(log_path, "rb") as f:
        f.seek(offset)
        text = f.read().decode("utf-8", "replace")
    found = [line.rstrip() for line in text.splitlines() if line.strip()]
    return tuple(found[-lines:] if lines else found)


def _install_shims(venv: Path, qemu: str, model: str) -> None:
    bin_dir = venv / "bin"
    real = (bin_dir / "python").resolve()
    native = bin_dir / ".wheelforge-native-python"
    native.symlink_to(real)
    names = {"python", "python3", *(p.name for p in bin_dir.glob("python3.*"))}
    for name in names:
        shim = bin_dir / name
        if shim.is_symlink() or shim.exists():
            shim.unlink()
        shim.write_text(shim_script(qemu, model, native, bin_dir / "python"))
        shim.chmod(0o755)


def run_smoke_test(
    wheel: Path,
    spec: TestSpec,
    options: TestOptions,
    *,
    log_path: Path,
    progress: Progress,
    name: str | None = None,
) -> TestResult:
    """Install ``wheel`` into a fresh venv and run ``spec.command`` on its claimed
    machine. A failure is a result (with the log's tail), not an exception."""
    from wheelforge.wheel.filename import WheelFilename

    name = name or wheel.name
    wheel = wheel.resolve()
    machine = wheel_machine(wheel)
    qemu = shutil.which(options.qemu) or options.qemu
    host = options.host_level if options.host_level is not None else host_x86_64_level()
    runner = choose_runner(
        machine, host_level=host, native=options.native, qemu_found=shutil.which(qemu) is not None
    )
    if runner.skip:
        progress(name, f"skipped: {runner.skip}")
        return TestResult(wheel, "skipped", machine, "-", error=runner.skip)
    started = time.monotonic()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    uv = find_uv()
    index = ["--index-url", options.index_url] if options.index_url else []
    for directory in options.find_links:
        index += ["--find-links", str(directory)]
    with (
        tempfile.TemporaryDirectory(prefix="wheelforge-test-") as tmp,
        open(log_path, "w", encoding="utf-8") as log,
    ):
        root = Path(tmp)
        venv = root / "venv"
        # uv reads a labelled file name as an error; the plain name installs the same bytes.
        plain = root / "wheel" / WheelFilename.parse(wheel.name).plain().filename
        plain.parent.mkdir()
        shutil.copyfile(wheel, plain)
        progress(name, "installing into a fresh venv")

        def fail(message: str, offset: int = 0) -> TestResult:
            progress(name, f"FAILED: {message}")
            return TestResult(
                wheel, "failed", machine, runner.cpu, time.monotonic() - started, log_path,
                f"{message}; see {log_path}", _tail(log_path, offset),
            )  # fmt: skip

        if _run([uv, "venv", "--quiet", "--python", options.python, str(venv)], log) != 0:
            return fail(f"uv could not create a venv with Python {options.python}")
        python = venv / "bin" / "python"
        install = [uv, "pip", "install", "--python", str(python)]
        if _run([*install, *index, *(["--no-deps"] if options.no_deps else []), str(plain)], log):
            return fail(f"uv could not install {wheel.name}")
        if spec.requires and _run([*install, *index, *spec.requires], log):
            return fail(f"uv could not install the test requirements ({', '.join(spec.requires)})")
        if runner.model:
            _install_shims(venv, qemu, runner.model)
        argv = command_argv(spec.command, project=spec.project.resolve(), wheel=wheel)
        env = {k: v for k, v in os.environ.items() if k not in OVERRIDES}
        env.update(machine.env)
        env.update(
            VIRTUAL_ENV=str(venv),
            PATH=os.pathsep.join([str(venv / "bin"), env.get("PATH", os.defpath)]),
            WHEELFORGE_TEST_LEVEL=machine.level_name,
            WHEELFORGE_TEST_CPU=runner.cpu,
        )
        env.pop("PYTHONHOME", None)
        workdir = root / "cwd"  # not the project: the installed package is what is imported
        workdir.mkdir()
        where = f"{machine.level_name} ({runner.cpu})" if machine.level else runner.cpu
        gpu = " ".join(f"{k}={v}" for k, v in machine.env)
        progress(name, f"running the test command on {where}{' with ' + gpu if gpu else ''}")
        log.write(f"# machine: {where}; {runner.note}\n# env: {gpu or '-'}\n")
        offset = log.tell()
        try:
            returncode = _run(argv, log, env=env, cwd=workdir, timeout=options.timeout)
        except subprocess.TimeoutExpired:
            log.write(f"[timed out after {options.timeout:.0f}s]\n")
            log.flush()
            return fail(f"the test command timed out after {options.timeout:.0f}s", offset)
        if returncode != 0:
            if died_of_sigill(returncode, "\n".join(_tail(log_path, offset, lines=None))):
                level = machine.level_name + (" (baseline)" if machine.level == 1 else "")
                return fail(
                    f"{wheel.name} needs a newer CPU than its label claims: the test died of "
                    f"SIGILL (illegal instruction) on {level}, the level {machine.claim} "
                    f"claims ({runner.cpu})",
                    offset,
                )
            return fail(f"the test command failed (exit code {returncode})", offset)
    seconds = time.monotonic() - started
    progress(name, f"passed in {seconds:.1f}s on {where}")
    return TestResult(wheel, "passed", machine, runner.cpu, seconds, log_path)


# Which command tests which wheel.


@dataclass(frozen=True)
class Planned:
    wheel: Path
    job: Job | None  # the matrix job that built it, when known
    spec: TestSpec | None  # None: nothing to run (``reason`` says why)
    python: str
    reason: str | None = None


def job_python(job: Job | None) -> str:
    """The venv's interpreter for a job: this one when its version matches, else the
    version, which uv finds (or fetches)."""
    current = f"{sys.version_info.major}.{sys.version_info.minor}"
    if job is None or job.python in ("3", current) or current.startswith(job.python + "."):
        return sys.executable
    return job.python


def manifest_jobs(directory: Path) -> dict[str, str]:
    """``{file name: job id}`` from the manifest in ``directory`` (none: empty)."""
    from wheelforge.build.manifest import read_manifest

    entries = read_manifest(directory)["artifacts"]
    return {e["file"]: e["job"] for e in entries if isinstance(e.get("job"), str)}


def manifest_matrix(directory: Path) -> Path | None:
    """The matrix file named by the manifest in ``directory``, if it still exists."""
    from wheelforge.build.manifest import read_manifest

    named = read_manifest(directory).get("matrix")
    return Path(named) if isinstance(named, str) and Path(named).is_file() else None


def plan_tests(
    wheels: Iterable[Path],
    *,
    matrix: Matrix | None,
    command: str | tuple[str, ...] | None = None,
    requires: tuple[str, ...] = (),
    project: Path | None = None,
) -> list[Planned]:
    """Each wheel with its test: ``command`` for every wheel, else the ``test-command``
    of the matrix job that built it (by the manifest beside it, else by its label)."""
    from wheelforge.wheel.filename import WheelFilename

    planned = []
    by_dir: dict[Path, dict[str, str]] = {}
    for wheel in wheels:
        job = None
        if matrix is not None:
            files = by_dir.setdefault(wheel.parent, manifest_jobs(wheel.parent))
            jobs = {j.id: j for j in matrix.jobs}
            job = jobs.get(files.get(wheel.name, ""))
            if job is None:
                label = WheelFilename.parse(wheel.name).label
                job = next((j for j in matrix.jobs if j.label == label), None)
        root = project or (matrix.project if matrix is not None else Path.cwd())
        python = job_python(job)
        if command is not None:
            spec = TestSpec(command, root, requires)
            planned.append(Planned(wheel, job, spec, python))
        elif job is None:
            planned.append(Planned(wheel, None, None, python, "no matrix job built it"))
        elif job.test_command is None:
            reason = f"job {job.id!r} has no test-command"
            planned.append(Planned(wheel, job, None, python, reason))
        else:
            spec = TestSpec(job.test_command, root, (*job.test_requires, *requires))
            planned.append(Planned(wheel, job, spec, python))
    return planned
