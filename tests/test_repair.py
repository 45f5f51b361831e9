"""Accelerator-aware repair with the real auditwheel on real shared objects (gcc)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import build_plain_wheel
from wheelforge.build.logs import BuildFailed
from wheelforge.repair import check_grafts, classify, runtime_requirement

Cli = Callable[..., tuple[int, str, str]]
CUDA_LIB = Path("/usr/local/cuda/lib64")


def gcc(*args: str | Path) -> None:
    subprocess.run(["gcc", *map(str, args)], check=True, capture_output=True)


@pytest.fixture
def stub_driver(tmp_path: Path) -> Path:
    """A stub ``libcuda.so.1`` (as CUDA's stubs/ directory ships) in its own directory."""
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    (stubs / "cuda.c").write_text("int cuInit(unsigned int flags) { return 100; }\n")
    gcc(
        "-shared",
        "-fPIC",
        "-Wl,-soname,libcuda.so.1",
        "-o",
        stubs / "libcuda.so.1",
        stubs / "cuda.c",
    )
    return stubs


def native_wheel(tmp_path: Path, *link: str) -> Path:
    """``probe-1.0-py3-none-linux_x86_64.whl`` whose library links ``link``."""
    src = tmp_path / "probe.c"
    src.write_text("int probe(void) { return 42; }\n")
    lib = tmp_path / "libprobe.so"
    gcc("-shared", "-fPIC", "-o", lib, src, "-Wl,--no-as-needed", *link)
    files = {"probe/__init__.py": b"", "probe/libprobe.so": lib.read_bytes()}
    return build_plain_wheel(tmp_path, "probe", "1.0", tag="py3-none-linux_x86_64", files=files)


def members(wheel: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(wheel) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


@pytest.mark.parametrize(
    ("soname", "kind"),
    [
        ("libcuda.so.1", "driver"),
        ("libnvidia-ml.so.1", "driver"),
        ("libnvidia-ptxjitcompiler.so.1", "driver"),
        ("libamdhip64.so.5", "driver"),
        ("libhsa-runtime64.so.1", "driver"),
        ("libcudart.so.12", "runtime"),
        ("libcublasLt.so.13", "runtime"),
        ("libcufft.so.12", "runtime"),
        ("libcudnn.so.9", "runtime"),
        ("libstdc++.so.6", None),
        ("libnuma.so.1", None),
    ],
)
def test_classify(soname: str, kind: str | None) -> None:
    assert classify(soname) == kind


def test_runtime_requirements() -> None:
    assert runtime_requirement("libcudart.so.12", "12.8") == "nvidia-cuda-runtime-cu12==12.*"
    assert runtime_requirement("libcudart.so.13", None) == "nvidia-cuda-runtime==13.*"
    assert runtime_requirement("libcublasLt.so.13", "13.0") == "nvidia-cublas==13.*"
    assert runtime_requirement("libcufft.so.12", "13.0") is None  # unknown: the user decides


def test_stub_driver_is_never_grafted(
    tmp_path: Path, stub_driver: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    wheel = native_wheel(tmp_path, f"-L{stub_driver}", "-l:libcuda.so.1")
    monkeypatch.setenv("LD_LIBRARY_PATH", str(stub_driver))  # auditwheel finds the stub

    # What plain auditwheel does: it grafts the stub driver, and the check catches it.
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    raw = tmp_path / "raw-repair"
    subprocess.run(
        [sys.executable, "-m", "auditwheel", "repair", "-w", str(raw), str(wheel)],
        env=env,
        check=True,
        capture_output=True,
    )
    grafted = next(raw.glob("*.whl"))
    assert any("libcuda" in name for name in members(grafted))
    with pytest.raises(BuildFailed) as info:
        check_grafts(grafted, runtime="exclude")
    message = info.value.message
    assert message.startswith(f"{grafted.name}: auditwheel grafted GPU library libcuda.so.1 (")
    assert (
        "B) into the wheel; expected it excluded: driver libraries come with the driver" in message
    )

    # What wheelforge does: the driver library is excluded, and said so.
    code, out, err = cli("repair", wheel, "-o", tmp_path / "out", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["libraries"] == [
        {
            "soname": "libcuda.so.1",
            "path": str(stub_driver / "libcuda.so.1"),
            "kind": "driver",
            "action": "excluded",
            "requirement": None,
        },
    ]
    repaired = Path(report["wheel"])
    assert "manylinux" in repaired.name and not any("libcuda" in n for n in members(repaired))


@pytest.mark.skipif(
    not (CUDA_LIB / "libcudart.so.13").exists(), reason="needs the machine's CUDA 13 runtime"
)
def test_cuda_runtime_excluded_with_requirement_or_bundled(tmp_path: Path, cli: Cli) -> None:
    wheel = native_wheel(tmp_path, f"-L{CUDA_LIB}", "-l:libcudart.so.13")
    code, out, err = cli("repair", wheel, "-o", tmp_path / "excluded", "--json")
    assert code == 0, err
    report = json.loads(out)
    cudart = next(lib for lib in report["libraries"] if lib["soname"] == "libcudart.so.13")
    assert cudart["kind"] == "runtime" and cudart["action"] == "excluded"
    assert report["requires_dist"] == ["nvidia-cuda-runtime==13.*"]
    content = members(Path(report["wheel"]))
    assert not any("libcudart" in name for name in content)
    assert b"Requires-Dist: nvidia-cuda-runtime==13.*" in content["probe-1.0.dist-info/METADATA"]
    assert cli("inspect", report["wheel"])[0] == 0  # RECORD still verifies

    code, out, err = cli(
        "repair", wheel, "-o", tmp_path / "bundled", "--runtime", "bundle", "--json"
    )
    assert code == 0, err
    report = json.loads(out)
    assert report["requires_dist"] == []
    assert any("libcudart" in name for name in members(Path(report["wheel"])))


def test_size_budget(tmp_path: Path, cli: Cli) -> None:
    big = os.urandom(300_000)
    wheel = build_plain_wheel(
        tmp_path,
        "big",
        "1.0",
        tag="py3-none-any",
        files={"big/blob.bin": big, "big/__init__.py": b""},
    )
    code, _, err = cli("repair", wheel, "-o", tmp_path / "out", "--max-size-mb", "0.1")
    assert code == 1
    assert (
        err.startswith(f"error: {wheel.name} is ")
        and "over the 102.4 KB limit; largest members: big/blob.bin (" in err
    )
    code, _, err = cli(
        "repair", wheel, "-o", tmp_path / "out2", "--max-size-mb", "0.1", "--oversize", "warn"
    )
    assert code == 0 and err.startswith("warning: ") and "big/blob.bin" in err


def test_missing_wheel(tmp_path: Path, cli: Cli) -> None:
    code, _, err = cli(
        "repair", tmp_path / "nope-1.0-py3-none-linux_x86_64.whl", "-o", tmp_path / "out"
    )
    assert code == 2 and "nope-1.0-py3-none-linux_x86_64.whl" in err
