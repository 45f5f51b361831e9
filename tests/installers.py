"""The real installers, driven the same way by every test that installs from an index:
uv with wheel variants into a fresh venv, pip into a target directory. Neither sees the
machine's own configuration (pip's constraints and find-links, uv's config) or any
simulated-hardware variable the test did not set."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent


# the providers' override variables (simulated hardware), uv's and pip's settings
_NOT_INHERITED = ("NV_VARIANT_PROVIDER_", "AMD_VARIANT_PROVIDER_", "TPU_VARIANT_PROVIDER_",
                  "UV_", "PIP_")  # fmt: skip


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(_NOT_INHERITED) and k not in {"VIRTUAL_ENV", "PYTHONPATH"}
    }
    env.update(
        PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}",
        UV_CACHE_DIR=str(tmp_path / "uv-cache"),
        UV_NO_CONFIG="1",
        UV_PYTHON_DOWNLOADS="never",
        PIP_CONFIG_FILE=os.devnull,
    )
    env.update(extra)
    return env


def uv_install(
    venv: Path, index_url: str, package: str, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """``uv pip install --preview-features wheel-variants`` into a new venv."""
    uv = str(BIN / "uv")
    subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(venv)], env=env, check=True)
    command = [uv, "pip", "install", "-v", "--preview-features", "wheel-variants",
               "--index-url", index_url, "--python", str(venv / "bin" / "python"), package]  # fmt: skip
    return subprocess.run(command, env=env, capture_output=True, text=True, check=False)


def selected(uv_stderr: str, package: str) -> str:
    """The wheel uv's ``-v`` log says it selected for ``package``."""
    match = re.search(rf"Selecting: {package}==\S+ \[compatible\] \((\S+)\)", uv_stderr)
    assert match, uv_stderr
    return match.group(1)


def pip_install(
    target: Path, index_url: str, package: str, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """``pip install --target`` from an index, nothing cached."""
    command = [sys.executable, "-m", "pip", "install", "--no-cache-dir",
               "--disable-pip-version-check", "--index-url", index_url,
               "--target", str(target), package]  # fmt: skip
    return subprocess.run(command, env=env, capture_output=True, text=True, check=False)
