"""What uv 0.13.8 does with ``abi_dependency`` variants, observed as a black box, next
to what wheelforge selects (docs/selection.md, "abi_dependency").

The target venv has a dummy ``torch`` (a real wheel, installed by uv) of version 2.9.1;
the release has CUDA 12.8 extension wheels for torch 2.8 and 2.9, a CUDA-only wheel, the
null variant and a plain wheel. Observed:

- as ``wheelforge tag`` writes it (``abi_dependency`` last in ``default-priorities``, a
  ``builtin`` provider entry), uv logs "Skipping unsupported wheel variant provider" and
  installs the best variant *without* ``abi_dependency``: it never selects by it, from
  the installed torch or from ``VARIANT_ABI_DEPENDENCY``;
- not listed in ``default-priorities.namespace`` (variantlib's reserved-namespace form),
  or listed without a ``providers`` entry, uv rejects the whole release.

If uv starts selecting by ``abi_dependency``, these tests fail: update the docs then.
"""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import tests.test_select_abi_dependency as abi
from tests.conftest import build_release
from tests.installers import clean_env
from wheelforge.cli import main

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        sys.platform != "linux" or platform.machine() != "x86_64",
        reason="uv's providers read /proc/cpuinfo: needs x86_64 Linux",
    ),
]

UV = Path(sys.executable).parent / "uv"
VARIANTS = {**abi.VARIANTS, "cu128": ("nvidia :: cuda_version_lower_bound :: 12.8",)}
VARIANTS_FILE = "demo-1.0-variants.json"


@pytest.fixture(scope="module")
def links(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("uv-abi")
    dist = build_release(root / "links", "demo", "1.0", VARIANTS, work=root / "work")
    assert main(["variants-json", str(dist)]) == 0
    return dist


def uv_install_demo(
    links: Path, work: Path, torch: str | None, **env: str
) -> subprocess.CompletedProcess[str]:
    """A fresh venv (with the dummy torch when given), then ``uv pip install demo``
    with wheel variants, offline from ``links``, CUDA driver 12.8 simulated."""
    python = abi.venv_with(work, *([abi.dummy_torch(work / "torch", torch)] if torch else []))
    variables = clean_env(
        work, UV_OFFLINE="1", NV_VARIANT_PROVIDER_FORCE_CUDA_DRIVER_VERSION="12.8", **env
    )
    command = [str(UV), "pip", "install", "-v", "--preview-features", "wheel-variants",
               "--no-index", "--find-links", str(links), "--python", str(python), "demo"]  # fmt: skip
    return subprocess.run(command, env=variables, capture_output=True, text=True, timeout=120)


def selected(result: subprocess.CompletedProcess[str]) -> str:
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    lines = [line for line in output.splitlines() if "Selecting: demo==1.0" in line]
    assert len(lines) == 1, output
    return lines[0].rsplit("(", 1)[1].rstrip(")")


def wheelforge_selects(links: Path, python: Path, cli: abi.Cli) -> str:
    code, out, err = abi_select(links, python, cli)
    assert code == 0, err
    return out.strip().splitlines()[-1]


def abi_select(links: Path, python: Path, cli: abi.Cli) -> tuple[int, str, str]:
    return cli("select", "demo", "--find-links", links, "--python", python,
               "--assume", "nvidia :: cuda_version_lower_bound :: 12.8")  # fmt: skip


def test_uv_ignores_abi_dependency_given_an_installed_torch(
    links: Path, tmp_path: Path, cli: abi.Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VARIANT_ABI_DEPENDENCY", raising=False)
    result = uv_install_demo(links, tmp_path, "2.9.1")
    assert selected(result) == "demo-1.0-py3-none-any-cu128.whl"
    assert "Skipping unsupported wheel variant provider `abi_dependency`" in result.stderr
    # wheelforge, for the same target environment, picks the torch 2.9 build
    python = tmp_path / "venv" / "bin" / "python"
    assert wheelforge_selects(links, python, cli) == "demo-1.0-py3-none-any-torch29_cu128.whl"


def test_uv_ignores_the_environment_variable_too(
    links: Path, tmp_path: Path, cli: abi.Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = uv_install_demo(links, tmp_path, None, VARIANT_ABI_DEPENDENCY="torch==2.8.0")
    assert selected(result) == "demo-1.0-py3-none-any-cu128.whl"
    monkeypatch.setenv("VARIANT_ABI_DEPENDENCY", "torch==2.8.0")
    python = tmp_path / "venv" / "bin" / "python"
    assert wheelforge_selects(links, python, cli) == "demo-1.0-py3-none-any-torch28_cu128.whl"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            "unlisted",
            "Variant namespace `abi_dependency` is missing from default-priorities.namespace",
        ),
        ("no-provider", "Variant providers must match the namespaces in default-priorities"),
    ],
)
def test_uv_rejects_the_release_without_the_entries(
    links: Path, tmp_path: Path, cli: abi.Cli, edit: str, message: str
) -> None:
    edited = tmp_path / "links"
    shutil.copytree(links, edited)
    data = json.loads((edited / VARIANTS_FILE).read_text())
    del data["providers"]["abi_dependency"]
    if edit == "unlisted":
        data["default-priorities"]["namespace"].remove("abi_dependency")
    (edited / VARIANTS_FILE).write_text(json.dumps(data))

    result = uv_install_demo(edited, tmp_path, "2.9.1")
    assert result.returncode != 0
    assert message in result.stderr
    assert "Selecting: demo==1.0 [compatible] (demo-1.0-py3-none-any-" not in result.stderr

    python = tmp_path / "venv" / "bin" / "python"
    code, out, err = abi_select(edited, python, cli)
    if edit == "unlisted":  # the reserved namespace needs no entry in wheelforge
        assert out.strip().splitlines()[-1] == "demo-1.0-py3-none-any-torch29_cu128.whl"
    else:  # listed in default-priorities without a provider: not a valid file
        assert code == 2
        assert "providers" in err
