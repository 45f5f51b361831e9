"""Property-based fuzzing of the wheel readers: whatever the bytes, only wheelforge's
own error (``WheelforgeError``) escapes the zip reader, RECORD, METADATA, WHEEL and
``variant.json`` readers, and the commands built on them (inspect, check, tag)."""

from __future__ import annotations

import contextlib
import copy
import json
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import build_plain_wheel
from tests.hostile_zips import deflated, record_hash, wheel_entries, write_zip
from wheelforge.errors import WheelforgeError
from wheelforge.inspection import inspect_wheel
from wheelforge.publish.check import check_release_set
from wheelforge.tag import TagRequest, tag_wheel
from wheelforge.variants.metadata import loads
from wheelforge.variants.properties import VariantProperty
from wheelforge.wheel.filename import WheelFilename
from wheelforge.wheel.record import parse_record
from wheelforge.wheel.wheelfile import Wheel

FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
CPU = VariantProperty.parse("x86_64 :: level :: v3")


def _variant_wheel() -> tuple[str, bytes]:
    with tempfile.TemporaryDirectory() as tmp:
        plain = build_plain_wheel(
            Path(tmp), files={"demo/__init__.py": b"VALUE = 1\n", "demo/data.bin": bytes(300)}
        )
        tagged = tag_wheel(plain, Path(tmp) / "out", TagRequest(frozenset({CPU})))
        return tagged.name, tagged.read_bytes()


NAME, BASE = _variant_wheel()
PLAIN = WheelFilename.parse(NAME).plain().filename


def _header_fields(data: bytes) -> list[tuple[int, int]]:
    """``(offset, width)`` of every field of every local header, central directory
    entry and end record in ``data``."""
    layouts = {
        b"PK\x03\x04": [(4, 2), (6, 2), (8, 2), (14, 4), (18, 4), (22, 4), (26, 2), (28, 2)],
        b"PK\x01\x02": [(8, 2), (10, 2), (16, 4), (20, 4), (24, 4), (28, 2), (30, 2), (32, 2), (38, 4), (42, 4)],
        b"PK\x05\x06": [(8, 2), (10, 2), (12, 4), (16, 4), (20, 2)],
    }  # fmt: skip
    fields = []
    for signature, layout in layouts.items():
        at = data.find(signature)
        while at >= 0:
            fields += [
                (at + offset, width) for offset, width in layout if at + offset + width <= len(data)
            ]
            at = data.find(signature, at + 1)
    return fields


FIELDS = _header_fields(BASE)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(BASE)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["field", "field", "flip", "truncate", "insert"]))
        if kind == "field":
            offset, width = draw(st.sampled_from(FIELDS))
            top = (1 << (8 * width)) - 1
            value = draw(st.sampled_from([0, 1, 0x800, 0x8, top, top >> 1]) | st.integers(0, top))
            data[offset : offset + width] = value.to_bytes(width, "little")
        elif kind == "flip":
            at = draw(st.integers(0, len(data) - 1))
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "truncate":
            del data[draw(st.integers(0, len(data) - 1)) :]
        else:
            at = draw(st.integers(0, len(data)))
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        if not data:
            break
    return bytes(data)


def exercise(path: Path) -> None:
    """Every reader and command on ``path``: only WheelforgeError may escape."""
    try:
        with Wheel(path) as wheel:
            wheel.check_headers()
            wheel.variant_metadata()
            wheel.checked_record(verify=True)
            wheel.read(wheel.dist_info_path("METADATA"))
    except WheelforgeError:
        pass
    with contextlib.suppress(WheelforgeError):
        inspect_wheel(path)
    check_release_set(path.parent, jobs=1)  # collects findings: never raises for a wheel
    plain = path.rename(path.with_name(PLAIN))
    with contextlib.suppress(WheelforgeError):
        tag_wheel(plain, path.parent / "out", TagRequest(frozenset({CPU}), verify=True))


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as tmp:
        yield Path(tmp)


def _fresh(workdir: Path) -> Path:
    return Path(tempfile.mkdtemp(dir=workdir))


@FUZZ
@given(data=mutated())
def test_mutated_wheels(workdir: Path, data: bytes) -> None:
    path = _fresh(workdir) / NAME
    path.write_bytes(data)
    exercise(path)


# -- the metadata readers -----------------------------------------------------------

_record_text = st.lists(
    st.lists(
        st.sampled_from(
            ["demo/a.py", "sha256=abc", "", "12", "-1", "١٢", "9" * 30, '"', "\n", "\x00"]
        )
        | st.text(max_size=10),
        max_size=5,
    ).map(",".join),
    max_size=5,
).map("\n".join)


@FUZZ
@given(text=_record_text, raw=st.binary(max_size=200))
def test_record_parser(text: str, raw: bytes) -> None:
    for data in (text.encode("utf-8", "surrogatepass"), raw):
        try:
            for entry in parse_record(data, source="RECORD"):
                assert entry.size is None or 0 <= entry.size < 10**20
        except WheelforgeError:
            pass


def _base_variant_json() -> Any:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / NAME
        path.write_bytes(BASE)
        with Wheel(path) as wheel:
            return json.loads(wheel.read(wheel.dist_info_path("variant.json")))


VARIANT = _base_variant_json()
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _paths(item, (*prefix, i))


PATHS = list(_paths(VARIANT))


@FUZZ
@given(
    path=st.sampled_from(PATHS),
    value=_json,
    key=st.none() | st.text(max_size=8),
    raw=st.binary(max_size=100),
)
def test_variant_json_reader(
    path: tuple[Any, ...], value: Any, key: str | None, raw: bytes
) -> None:
    document = copy.deepcopy(VARIANT)
    if not path:
        document = value
    else:
        parent = document
        for step in path[:-1]:
            parent = parent[step]
        if key is not None and isinstance(parent, dict):
            parent[key] = value  # an extra or replaced key
        else:
            parent[path[-1]] = value
    for data in (json.dumps(document).encode(), raw, b"[" * 5000 + b"]" * 5000):
        with contextlib.suppress(WheelforgeError):
            loads(data, source="variant.json")


_header_line = st.sampled_from(
    [
        "Metadata-Version: 2.1", "Metadata-Version: 2.4", "Metadata-Version: x", "Name: demo",
        "Name: other", "Version: 1.0", "Version: not a version", "Requires-Dist: numpy>=1",
        "Requires-Dist: ((", "Requires-Python: >=3.8", "Requires-Python: >>", "Dynamic: Name",
        "Description-Content-Type: text/markdown", "Description-Content-Type: text/x-rst",
        "Description-Content-Type: text/plain; charset=latin-1", "License-File: x",
        "Provides-Extra: a b", "Keywords: a,b", "Project-URL: x", "   continued", ":", "",
    ]
) | st.text(max_size=30)  # fmt: skip


@FUZZ
@given(
    lines=st.lists(_header_line, max_size=12),
    body=st.text(max_size=80) | st.sampled_from(["", "Title\n===\n\n`bad", ".. raw:: html\n\n x"]),
    raw=st.none() | st.binary(max_size=100),
    wheel_text=st.none() | st.binary(max_size=100),
)
def test_metadata_and_wheel_readers(
    workdir: Path, lines: list[str], body: str, raw: bytes | None, wheel_text: bytes | None
) -> None:
    """METADATA through check (packaging, the description renderer) and tag
    --requires-dist; WHEEL as an installer would find it."""
    data = (
        raw
        if raw is not None
        else ("\n".join(lines) + "\n\n" + body).encode("utf-8", "surrogatepass")
    )
    name = "demo-1.0.dist-info/METADATA"
    metadata = deflated(name, data)
    record = {name: f"{name},{record_hash(data)},{len(data)}"}
    wheel_name = "demo-1.0.dist-info/WHEEL"
    if wheel_text is not None:
        record[wheel_name] = f"{wheel_name},{record_hash(wheel_text)},{len(wheel_text)}"
    entries = wheel_entries(metadata=metadata, record_lines=record)
    if wheel_text is not None:
        entries = [deflated(wheel_name, wheel_text) if e.name == wheel_name else e for e in entries]
    directory = _fresh(workdir)
    path = write_zip(directory / "demo-1.0-py3-none-any.whl", entries)
    check_release_set(directory, jobs=1)
    with contextlib.suppress(WheelforgeError):
        tag_wheel(
            path, directory / "out", TagRequest(frozenset({CPU}), requires_dist=("numpy>=1",))
        )


def test_the_base_wheel_is_clean(tmp_path: Path) -> None:
    """The fuzzers start from a wheel that every reader accepts."""
    path = tmp_path / NAME
    path.write_bytes(BASE)
    report = inspect_wheel(path)
    assert report.record_ok and report.problem is None
    assert struct.unpack("<H", BASE[-12:-10])[0] > 0
