"""Shared fixtures: real plain wheels built on the fly, and the CLI in-process."""

from __future__ import annotations

import base64
import hashlib
import shutil
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pytest

from wheelforge.cli import main
from wheelforge.tag import TagRequest, tag_wheel
from wheelforge.variants.config import default_config
from wheelforge.variants.metadata import VariantMetadata
from wheelforge.variants.properties import VariantProperty

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


def build_release(
    dist: Path,
    name: str,
    version: str,
    variants: Mapping[str, Sequence[str]],
    *,
    work: Path,
    metadata_extra: str = "",
    config: VariantMetadata | None = None,
    configs: Mapping[str, VariantMetadata] | None = None,
) -> Path:
    """A release set in ``dist``: a plain wheel, and one wheel per label of ``variants``
    (label -> properties; no properties: the null variant), each module saying what it
    was built for (``BUILT_FOR = 'label'``, ``'plain'`` for the plain wheel). ``configs``
    gives some labels their own provider config (default: ``config``, else the presets)."""
    dist.mkdir(parents=True, exist_ok=True)
    for label, properties in {"plain": (), **variants}.items():
        built = work / f"{name}-{version}-{label}"
        built.mkdir(parents=True)
        module = f"BUILT_FOR = {label!r}\n".encode()
        plain = build_plain_wheel(
            built,
            name,
            version,
            files={f"{name}/__init__.py": module},
            metadata_extra=metadata_extra,
        )
        if label == "plain":
            shutil.copy(plain, dist)
            continue
        request = TagRequest(
            properties=frozenset(VariantProperty.parse(p) for p in properties),
            label=label,
            config=(configs or {}).get(label) or config or default_config(),
        )
        tag_wheel(plain, dist, request)
    return dist


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
