"""PEP 517 builds through ``build``, each in an isolated environment (made by uv when it
is available: build's ``--installer uv``)."""

from __future__ import annotations

import functools
import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

from wheelforge.build.logs import BuildFailed, Heartbeat, run_logged


@functools.cache
def uv_binary() -> str | None:
    """uv for build environments: the one installed beside this interpreter, the ``uv``
    package's, or one on PATH. ``WHEELFORGE_BUILD_INSTALLER=pip`` turns it off."""
    if os.environ.get("WHEELFORGE_BUILD_INSTALLER", "").lower() == "pip":
        return None
    beside = Path(sys.executable).parent / "uv"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    try:
        import uv  # type: ignore[import-not-found,unused-ignore]

        return str(uv.find_uv_bin())
    except (ImportError, FileNotFoundError):
        return shutil.which("uv")


def _installer_options(env: Mapping[str, str]) -> tuple[list[str], dict[str, str]]:
    """build's options and the environment that make it create environments with uv."""
    uv = uv_binary()
    if uv is None:
        return [], dict(env)
    path = os.pathsep.join([str(Path(uv).parent), env.get("PATH", os.defpath)])
    return ["--installer", "uv"], {**env, "PATH": path}


def pep517_build(
    python: str,
    project: Path,
    outdir: Path,
    *,
    distribution: str,  # "wheel" | "sdist"
    config_settings: Sequence[tuple[str, str]] = (),
    env: Mapping[str, str],
    log: IO[str],
    log_path: Path,
    heartbeat: Heartbeat | None = None,
) -> Path:
    """Build one wheel or sdist of ``project`` into ``outdir``; return its path."""
    outdir.mkdir(parents=True, exist_ok=True)
    options, build_env = _installer_options(env)
    # Absolute paths: the backend runs in the project directory.
    command = [python, "-m", "build", f"--{distribution}", *options]
    command += ["--outdir", str(outdir.resolve()), str(project.resolve())]
    command += [f"--config-setting={key}={value}" for key, value in config_settings]
    what = "build" if distribution == "wheel" else "sdist build"
    run_logged(command, env=build_env, log=log, what=what, log_path=log_path, heartbeat=heartbeat)
    pattern = "*.whl" if distribution == "wheel" else "*.tar.gz"
    built = sorted(outdir.glob(pattern))
    if len(built) != 1:
        raise BuildFailed(
            f"{what} produced {len(built)} {pattern} files, expected one; see {log_path}"
        )
    return built[0]
