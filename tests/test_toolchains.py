"""Toolchain resolution errors, before any build starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from wheelforge.build.toolchains import resolve_python, resolve_toolchain
from wheelforge.errors import InvalidInput
from wheelforge.matrix import Job


def job(**fields: object) -> Job:
    base: dict[str, object] = {
        "id": "j",
        "kind": "null",
        "label": "null",
        "properties": frozenset(),
        "python": "3",
    }
    return Job(**(base | fields))  # type: ignore[arg-type]


def test_cuda_12_cannot_be_fetched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setenv("CUDA_HOME", str(tmp_path))
    monkeypatch.setattr("wheelforge.build.toolchains._DEFAULT_CUDA_HOME", tmp_path)
    cuda12 = job(id="cuda12.8", toolchain="nvcc", toolchain_version="12.8", toolchain_source="auto")
    with pytest.raises(
        InvalidInput, match=r"variant cuda12.8 needs nvcc 12.8: CUDA 12 cannot be fetched from PyPI"
    ):
        resolve_toolchain(cuda12, tmp_path / "toolchains")
    assert not (tmp_path / "toolchains").exists()


def test_wrong_system_cuda_version_is_named() -> None:
    if not Path("/usr/local/cuda/bin/nvcc").exists():
        pytest.skip("needs the machine's CUDA toolkit")
    wrong = job(id="cuda9.9", toolchain="nvcc", toolchain_version="9.9")
    with pytest.raises(
        InvalidInput,
        match=r"variant cuda9.9 needs nvcc 9.9: found 13\.\d+ at .*nvcc \(set CUDA_HOME",
    ):
        resolve_toolchain(wrong)


def test_missing_hipcc_and_python(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(
        InvalidInput,
        match=r"variant rocm needs hipcc: not found on PATH \(on Debian: apt-get install hipcc libamdhip64-dev\)",
    ):
        resolve_toolchain(job(id="rocm", toolchain="hipcc"))
    with pytest.raises(
        InvalidInput, match=r"variant old needs Python 2.7: python2.7 not found on PATH"
    ):
        resolve_python(job(id="old", python="2.7"))
