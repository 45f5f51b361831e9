"""``wheelforge install``: the selected wheel installed by the real pip and the real uv,
from deflate and from zstd wheels; pip on Python < 3.14 gets a zstd wheel transcoded to
deflate first, and says so."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.installers import BIN, clean_env
from tests.test_select import wheel_set
from wheelforge.compress import compress_wheel
from wheelforge.wheel.archive import ZSTD
from wheelforge.wheel.wheelfile import Wheel

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same release twice: as built (deflate) and with zstd variant wheels."""
    root = tmp_path_factory.mktemp("install")
    deflate = wheel_set(root / "deflate")
    zstd = wheel_set(root / "zstd")
    for wheel in zstd.glob("*-*-*-*-*-*.whl"):  # labelled wheels only: the policy
        compress_wheel(wheel, wheel, "zstd")
    return {"deflate": deflate, "zstd": zstd}


def wheelforge(*args: str | Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "wheelforge", *map(str, args)], env=env,
                          capture_output=True, text=True, check=False)  # fmt: skip


def venv(path: Path, installer: str, env: dict[str, str]) -> Path:
    if installer == "pip":
        subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    else:  # uv's venvs have no pip: only uv can install into them
        subprocess.run([str(BIN / "uv"), "venv", "-q", "--python", sys.executable, str(path)],
                       env=env, check=True)  # fmt: skip
    return path / "bin" / "python"


def installed(python: Path) -> tuple[str, str | None]:
    """What the installed module says it was built for, and the installed label."""
    code = ("import demo, json, importlib.metadata as m; d = m.distribution('demo'); "
            "v = d.read_text('variant.json'); "
            "print(json.dumps([demo.BUILT_FOR, next(iter(json.loads(v)['variants'])) if v else None]))")  # fmt: skip
    result = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True)
    built_for, label = json.loads(result.stdout)
    return built_for, label


@pytest.mark.parametrize("installer", ["pip", "uv"])
@pytest.mark.parametrize("codec", ["deflate", "zstd"])
def test_install_the_selected_wheel(
    sets: dict[str, Path], tmp_path: Path, installer: str, codec: str
) -> None:
    links = sets[codec]
    env = clean_env(tmp_path, PIP_NO_INDEX="1", UV_OFFLINE="1")
    python = venv(tmp_path / "venv", installer, env)
    result = wheelforge("install", "demo", "--find-links", links, "--installer", installer,
                        "--python", python, "--profile", "t4-driver-525", env=env)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert installed(python) == ("cu120", "cu120")
    transcoded = "transcoded to deflate locally" in result.stderr
    assert transcoded == (installer == "pip" and codec == "zstd")
    assert f"installed demo-1.0-py3-none-any-cu120.whl with {installer}" in result.stderr
    if codec == "zstd":  # the input really was zstd
        with Wheel(links / "demo-1.0-py3-none-any-cu120.whl") as wheel:
            assert any(m.method == ZSTD for m in wheel.members.values())


def test_install_detects_the_machine_through_the_providers_variables(
    sets: dict[str, Path], tmp_path: Path
) -> None:
    """No profile: detection, here the driver override the real nvidia provider honours."""
    env = clean_env(tmp_path, UV_OFFLINE="1", NV_VARIANT_PROVIDER_FORCE_CUDA_DRIVER_VERSION="13.0")
    python = venv(tmp_path / "venv", "uv", env)
    result = wheelforge("install", "demo", "--find-links", sets["zstd"], "--installer", "uv",
                        "--python", python, "--json", env=env)  # fmt: skip
    assert result.returncode == 0, result.stderr
    (report,) = json.loads(result.stdout)
    assert (report["label"], report["installer"], report["transcoded"]) == ("cu130", "uv", False)
    assert installed(python) == ("cu130", "cu130")


def test_pip_without_pip_points_to_uv(sets: dict[str, Path], tmp_path: Path) -> None:
    env = clean_env(tmp_path, UV_OFFLINE="1")
    python = venv(tmp_path / "venv", "uv", env)
    result = wheelforge("install", "demo", "--find-links", sets["deflate"], "--python", python,
                        "--profile", "cpu-x86-64-v3", env=env)  # fmt: skip
    assert result.returncode == 1
    assert "error: pip could not install demo-1.0-py3-none-any-v3.whl" in result.stderr
    assert "hint: this environment has no pip: use --installer uv" in result.stderr
