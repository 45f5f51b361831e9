"""End to end on the second bundled example, built the way real GPU libraries build:
examples/saxpy's setup.py drives CMake, which writes ``libsaxpy_<backend>.so`` into the
package folder of its source tree, and its CUDA variant links cuBLAS, which the machine's
toolkit lacks (``cuda-components``). Built at ``-j 2`` with real setuptools, CMake, gcc,
nvcc and auditwheel: no fallback wheel may carry device code, the tree stays untouched,
and a cached re-run compiles nothing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from wheelforge.build.sources import tree_snapshot
from wheelforge.cli import main

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
MATRIX = ROOT / "matrix" / "saxpy.toml"
PROJECT = ROOT / "examples" / "saxpy"


def build(base: Path, *extra: str) -> int:
    return main(
        [
            "build", "--matrix", str(MATRIX), "--out", str(base / "dist"),
            "--cache-dir", str(base / "cache"), "--work-dir", str(base / "work"), *extra,
        ]
    )  # fmt: skip


def readelf(flag: str, data: bytes, tmp_path: Path, name: str) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return subprocess.run(
        ["readelf", flag, str(path)], capture_output=True, text=True, check=True
    ).stdout


def contents(wheel: Path) -> dict[str, bytes]:
    from backports.zstd import zipfile as zstd_zipfile  # zstd members on 3.11

    with zstd_zipfile.ZipFile(wheel) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


class Built:
    def __init__(self, base: Path, first: dict[str, str], tree_before: dict[str, tuple[int, ...]]):
        self.base, self.first, self.tree_before = base, first, tree_before
        self.dist = base / "dist"

    def wheel(self, label: str | None) -> Path:
        for path in self.dist.glob("*.whl"):
            parts = path.stem.split("-")
            if (parts[5] if len(parts) == 6 else None) == label:
                return path
        raise AssertionError(f"no wheel labelled {label} in {self.dist}")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    base = tmp_path_factory.mktemp("saxpy")
    before = tree_snapshot(PROJECT)
    stdout = _json_build(base, "-j", "2")
    yield Built(base, stdout, before)


def _json_build(base: Path, *extra: str) -> dict[str, str]:
    """``wheelforge build --json`` as a subprocess: job -> status."""
    command = [sys.executable, "-m", "wheelforge", "build", "--matrix", str(MATRIX),
               "--out", str(base / "dist"), "--cache-dir", str(base / "cache"),
               "--work-dir", str(base / "work"), "--json", *extra]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    return {r["job"]: r["status"] for r in json.loads(result.stdout)}


def test_every_job_built_at_j2(built: Built) -> None:
    assert built.first == {
        "plain": "built", "cpu": "cached", "cpu-x86-64-v3": "built", "cuda13.0": "built",
    }  # fmt: skip
    names = sorted(p.name for p in built.dist.iterdir())
    assert "saxpy-0.1.0.tar.gz" in names and "saxpy-0.1.0-variants.json" in names


def test_no_fallback_wheel_holds_device_code(built: Built, tmp_path: Path) -> None:
    for label in (None, "null", "x86_64_v3"):
        files = contents(built.wheel(label))
        libraries = sorted(n for n in files if n.startswith("saxpy/libsaxpy_"))
        assert libraries == ["saxpy/libsaxpy_cpu.so"], (label, libraries)
        library = files["saxpy/libsaxpy_cpu.so"]
        assert ".nv_fatbin" not in readelf("-S", library, tmp_path, f"{label}.so")
        assert "cublas" not in readelf("-d", library, tmp_path, f"{label}.so")
        metadata = next(v for k, v in files.items() if k.endswith(".dist-info/METADATA"))
        assert b"Requires-Dist: nvidia" not in metadata, label
        assert b'BACKEND: str = "cpu' in files["saxpy/_build_info.py"]
    # The CUDA variant: device code, cuBLAS from its nvidia-* wheel (not grafted).
    files = contents(built.wheel("cu130"))
    assert sorted(n for n in files if n.startswith("saxpy/libsaxpy_")) == ["saxpy/libsaxpy_cuda.so"]
    cuda = files["saxpy/libsaxpy_cuda.so"]
    assert ".nv_fatbin" in readelf("-S", cuda, tmp_path, "cuda.so")
    assert "libcublas.so.13" in readelf("-d", cuda, tmp_path, "cuda.so")
    assert not any("libcublas" in name for name in files)
    metadata = next(v for k, v in files.items() if k.endswith(".dist-info/METADATA")).decode()
    assert "Requires-Dist: nvidia-cublas==13.*" in metadata


def test_the_project_tree_is_untouched(built: Built) -> None:
    assert tree_snapshot(PROJECT) == built.tree_before
    assert not (PROJECT / "build").exists()
    assert not list((PROJECT / "src" / "saxpy").glob("libsaxpy_*.so"))


def test_the_set_passes_check(built: Built, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(built.dist), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert "saxpy-0.1.0.tar.gz" in report["files"]


def test_the_cpu_wheel_runs(built: Built, tmp_path: Path) -> None:
    target = tmp_path / "site"
    with zipfile.ZipFile(built.wheel(None)) as zf:
        zf.extractall(target)
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import saxpy; print(saxpy.backend(), saxpy.saxpy(2, [1, 2], [3, 4]))",
        ],
        env={**os.environ, "PYTHONPATH": str(target)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip() == "cpu [5.0, 8.0]"


def test_every_job_ran_its_smoke_test(built: Built) -> None:
    """matrix/saxpy.toml's test-command after every job: the CPU wheels compute under
    qemu's model of their level; the CUDA wheel, with cuBLAS and the CUDA runtime from
    its nvidia-* dependencies, loads and reaches saxpy's "no device" answer."""
    logs = built.base / "work" / "logs"
    computed = "computed saxpy [3.0, 5.0, 7.0], dot 32.0"
    for job, machine, outcome in (
        ("plain", "x86-64-v1 (qemu-x86_64 -cpu qemu64,-sse3)", computed),
        ("cpu", "x86-64-v1 (qemu-x86_64 -cpu qemu64,-sse3)", computed),
        ("cpu-x86-64-v3", "x86-64-v3 (qemu-x86_64 -cpu Haswell)", computed),
        ("cuda13.0", "NV_VARIANT_PROVIDER_FORCE_CUDA_DRIVER_VERSION=13.0", "no device here"),
    ):
        log = (logs / f"{job}-test.log").read_text()
        assert machine in log and outcome in log, (job, log[-2000:])


def test_a_cached_rerun_compiles_nothing(built: Built, tmp_path: Path) -> None:
    """A second run on the same cache, with compiler shims that record every call: every
    job cached, the sdist too, not one compiler started, the same bytes."""
    shims, calls = tmp_path / "shims", tmp_path / "calls.txt"
    shims.mkdir()
    for name in ("cc", "c++", "gcc", "g++", "nvcc", "cmake"):
        real = shutil.which(name)
        if real is not None:
            (shims / name).write_text(f'#!/bin/sh\necho "{name} $*" >> {calls}\nexec {real} "$@"\n')
            (shims / name).chmod(0o755)
    before = {p.name: p.read_bytes() for p in built.dist.glob("*.whl")}
    env_path = f"{shims}{os.pathsep}{os.environ['PATH']}"
    old = os.environ["PATH"]
    os.environ["PATH"] = env_path
    try:
        statuses = _json_build(built.base, "-j", "2")
    finally:
        os.environ["PATH"] = old
    assert statuses == dict.fromkeys(("plain", "cpu", "cpu-x86-64-v3", "cuda13.0"), "cached")
    # Toolchain resolution asks each compiler its version; nothing else may run.
    ran = calls.read_text().splitlines() if calls.exists() else []
    assert ran and all(line.endswith(" --version") for line in ran), ran
    assert {p.name: p.read_bytes() for p in built.dist.glob("*.whl")} == before


def test_a_forced_rebuild_hits_the_compiler_cache(built: Built) -> None:
    """``--no-cache`` compiles again, through the compiler cache the first run filled:
    the CPU builds hit on every compile, the CUDA build on its device code too."""
    command = [sys.executable, "-m", "wheelforge", "build", "--matrix", str(MATRIX),
               "--out", str(built.base / "dist"), "--cache-dir", str(built.base / "cache"),
               "--work-dir", str(built.base / "work"), "--json", "--no-cache"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    stats = {
        r["job"]: r["compiler_cache"] for r in json.loads(result.stdout) if r["status"] == "built"
    }
    assert set(stats) == {"plain", "cpu-x86-64-v3", "cuda13.0"}
    for job in ("plain", "cpu-x86-64-v3"):
        assert stats[job]["hits"] > 0 and stats[job]["misses"] == 0, (job, stats[job])
    assert stats["cuda13.0"]["hits"] > 0, stats["cuda13.0"]
    manifest = json.loads((built.dist / "wheelforge-manifest.json").read_text())
    recorded = {a["job"]: a["compiler_cache"] for a in manifest["artifacts"]}
    assert recorded["plain"] == stats["plain"]
