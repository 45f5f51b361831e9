"""Shared fixtures: real plain wheels built on the fly, and the CLI in-process."""

from __future__ import annotations

import base64
import hashlib
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from wheelforge.cli import main

WheelFactory = Callable[..., Path]


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest}"


def build_plain_wheel(
    directory: Path,
    name: str = "demo",
    version: str = "1.0",
    *,
    tag: str = "py3-none-any",
    files: dict[str, bytes] | None = None,
    requires: tuple[str, ...] = (),
    compression: int = zipfile.ZIP_DEFLATED,
    metadata_extra: str = "",
    description: str = "A demo package.\n",
) -> Path:
    """A valid plain wheel written with the standard library's zipfile."""
    dist_info = f"{name}-{version}.dist-info"
    payload = (
        files
        if files is not None
        else {f"{name}/__init__.py": f"BUILT_FOR = 'plain'\n__version__ = {version!r}\n".encode()}
    )
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    metadata += metadata_extra
    metadata += "".join(f"Requires-Dist: {req}\n" for req in requires)
    members = dict(payload)
    members[f"{dist_info}/METADATA"] = (metadata + "\n" + description).encode()
    members[f"{dist_info}/WHEEL"] = (
        f"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: {tag}\n"
    ).encode()
    record = "".join(f"{n},{_record_hash(b)},{len(b)}\n" for n, b in members.items())
    members[f"{dist_info}/RECORD"] = (record + f"{dist_info}/RECORD,,\n").encode()
    path = directory / f"{name}-{version}-{tag}.whl"
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        for member, data in members.items():
            zf.writestr(zipfile.ZipInfo(member, (2024, 1, 1, 0, 0, 0)), data, compression)
    return path


@pytest.fixture
def make_wheel(tmp_path: Path) -> WheelFactory:
    wheels = tmp_path / "plain"
    wheels.mkdir(exist_ok=True)

    def factory(name: str = "demo", version: str = "1.0", **kwargs: object) -> Path:
        return build_plain_wheel(wheels, name, version, **kwargs)  # type: ignore[arg-type]

    return factory


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """Run ``wheelforge ARGS`` in-process; return (exit code, stdout, stderr)."""

    def run(*args: str | Path) -> tuple[int, str, str]:
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err

    return run
