"""PEP 517 builds through ``build``, in an isolated environment, one build directory a job."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

from wheelforge.errors import WheelforgeError


class BuildFailed(WheelforgeError):
    """A build, repair or tool step exited non-zero; the message names its log."""


def run_logged(
    command: Sequence[str],
    *,
    env: Mapping[str, str],
    log: IO[str],
    what: str,
    log_path: Path,
    cwd: Path | None = None,
) -> None:
    """Run ``command`` with its output appended to the job's log."""
    log.write(f"$ {' '.join(command)}\n")
    log.flush()
    result = subprocess.run(
        list(command), stdout=log, stderr=subprocess.STDOUT, env=dict(env), cwd=cwd, check=False
    )
    log.write(f"[exit code {result.returncode}]\n")
    log.flush()
    if result.returncode != 0:
        raise BuildFailed(f"{what} failed (exit code {result.returncode}); see {log_path}")


def pep517_wheel(
    python: str,
    project: Path,
    outdir: Path,
    *,
    config_settings: Sequence[tuple[str, str]],
    build_dir: Path,
    env: Mapping[str, str],
    log: IO[str],
    log_path: Path,
) -> Path:
    """Build one wheel of ``project`` into ``outdir``; return its path."""
    outdir.mkdir(parents=True, exist_ok=True)
    # Absolute paths: the backend runs in the project directory.
    command = [python, "-m", "build", "--wheel", "--outdir", str(outdir.resolve()), str(project)]
    settings = [("build-dir", str(build_dir.resolve())), *config_settings]
    command += [f"--config-setting={key}={value}" for key, value in settings]
    run_logged(command, env=env, log=log, what="build", log_path=log_path)
    wheels = sorted(outdir.glob("*.whl"))
    if len(wheels) != 1:
        raise BuildFailed(f"build produced {len(wheels)} wheels, expected one; see {log_path}")
    return wheels[0]
