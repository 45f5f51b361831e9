"""A corpus of hostile wheels: every reading command refuses each with one line.

``inspect`` and ``tag --verify`` end in one ``error:`` line naming the wheel (exit 2)
and write nothing; ``check`` reports an error finding for the wheel (exit 1). No
traceback, whatever the zip holds: lying sizes, disagreeing headers, duplicate names,
symlinks, broken zip64 records, undecodable names, RECORD and variant.json defects.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.hostile_zips import (
    DEFLATED,
    MAX32,
    STORED,
    ZIP64_LOCATOR,
    Entry,
    deflated,
    record_hash,
    stored,
    wheel_entries,
    write_zip,
)
from wheelforge.wheel.filename import WheelFilename

Cli = Callable[..., tuple[int, str, str]]
WHEEL = "demo-1.0-py3-none-any.whl"
LABELLED = WheelFilename.parse(WHEEL).with_label("v3").filename
DIST_INFO = "demo-1.0.dist-info"
MODULE = "demo/__init__.py"
CPU = "x86_64 :: level :: v3"
Build = Callable[[Path], Path]
CASES: dict[str, tuple[Build, str]] = {}


def case(name: str, expected: str) -> Callable[[Build], Build]:
    """Register a hostile wheel: ``build(dist)`` writes it; every command's error
    names it and holds ``expected``."""

    def register(build: Build) -> Build:
        CASES[name] = (build, expected)
        return build

    return register


def member_case(name: str, expected: str, entry: Entry, **record: str) -> None:
    """A wheel whose payload is ``entry`` (RECORD line from ``record``, else none)."""
    lines = {entry.name: record.get("line", f"{entry.name},,")}
    case(name, expected)(
        lambda dist: write_zip(dist / WHEEL, wheel_entries([entry], record_lines=lines))
    )


def module(**fields: object) -> Entry:
    return deflated(MODULE, b"VALUE = 1\n", **fields)


def plain(dist: Path, payload: list[Entry] | None = None, **options: object) -> Path:
    return write_zip(dist / WHEEL, wheel_entries(payload), **options)  # type: ignore[arg-type]


# -- names --------------------------------------------------------------------------

member_case("utf8-flag-invalid-name", "has the UTF-8 flag but is not UTF-8",
            module(raw_name=b"demo/\xff\xfe.py", flags=0x800))  # fmt: skip
for bad, why in [
    ("../evil.py", "unsafe member name"),
    ("/etc/evil.py", "unsafe member name"),
    ("demo\\..\\evil.py", "unsafe member name"),
    ("demo/a\x00.py", "unsafe member name"),
    ("C:evil.py", "unsafe member name"),
]:
    member_case(f"name-{bad!r}", why, deflated(bad, b"x = 1\n"))


@case("duplicate-names", "appears twice")
def _(dist: Path) -> Path:
    return plain(dist, [module(), deflated(MODULE, b"VALUE = 2\n")])


@case("duplicate-metadata", "appears twice")
def _(dist: Path) -> Path:
    entries = wheel_entries()
    return write_zip(dist / WHEEL, [*entries, entries[1]])


# -- member types -------------------------------------------------------------------

for mode, what in [
    (0o120777, "is a symlink"),
    (0o120644, "is a symlink"),
    (0o010644, "not a regular file"),  # fifo
    (0o020644, "not a regular file"),  # character device
    (0o060644, "not a regular file"),  # block device
    (0o140644, "not a regular file"),  # socket
    (0o040755, "not a regular file"),  # a directory mode on a file name
]:
    member_case(f"mode-{oct(mode)}", what, module(external_attr=mode << 16))


# -- local header and central directory disagree ------------------------------------

for field, value, what in [
    ("name", b"demo/__main__.py", "name"),
    ("method", STORED, "method"),
    ("flags", 0x800, "flags"),
    ("crc", 1234, "crc"),
    ("size", 5, "size"),
    ("csize", 3, "compressed_size"),
]:
    member_case(
        f"local-{field}", f"local header whose {what}", module(local={field: value}),
        line=f"{MODULE},{record_hash(b'VALUE = 1' + bytes([10]))},10",
    )  # fmt: skip


# -- sizes, CRCs and streams --------------------------------------------------------

_DATA = b"VALUE = 1\n" * 100
_GOOD = f"{MODULE},{record_hash(_DATA)},{len(_DATA)}"
member_case("size-says-less", "inflates past its declared size of 10 bytes",
            deflated(MODULE, _DATA, size=10), line=f"{MODULE},,10")  # fmt: skip
member_case("size-says-more", "inflates to 1000 bytes, its declared size is 5000",
            deflated(MODULE, _DATA, size=5000), line=f"{MODULE},,5000")  # fmt: skip
member_case("stored-size-says-less", "inflates past its declared size",
            stored(MODULE, _DATA, size=10), line=f"{MODULE},,10")  # fmt: skip
member_case("crc-mismatch", "fails its CRC check",
            deflated(MODULE, _DATA, crc=1), line=_GOOD)  # fmt: skip
member_case("deflate-garbage", "is corrupt",
            Entry(MODULE, b"\xff" * 64, DEFLATED, zlib.crc32(_DATA), len(_DATA)), line=_GOOD)  # fmt: skip
member_case("deflate-cut-short", "is corrupt",
            deflated(MODULE, _DATA, payload=deflated(MODULE, _DATA).payload[:20]), line=_GOOD)  # fmt: skip
member_case("zstd-garbage", "is corrupt",
            Entry(MODULE, b"\x28\xb5\x2f\xfd" + b"\xff" * 32, 93, zlib.crc32(_DATA), len(_DATA)),
            line=_GOOD)  # fmt: skip
member_case("unknown-method", "uses zip method 12",
            Entry(MODULE, _DATA, 12, zlib.crc32(_DATA), len(_DATA)), line=_GOOD)  # fmt: skip
member_case("encrypted", "is encrypted", module(flags=0x1))
member_case("hash-mismatch", "RECORD hash mismatch",
            deflated(MODULE, _DATA), line=f"{MODULE},{record_hash(b'other')},{len(_DATA)}")  # fmt: skip
member_case("record-size-mismatch", "RECORD says",
            deflated(MODULE, _DATA), line=f"{MODULE},{record_hash(_DATA)},999")  # fmt: skip
member_case("record-5000-digit-size", "expected a size in bytes",
            deflated(MODULE, _DATA), line=f"{MODULE},{record_hash(_DATA)},{'9' * 5000}")  # fmt: skip
member_case("record-unicode-digit-size", "expected a size in bytes",
            deflated(MODULE, _DATA), line=f"{MODULE},{record_hash(_DATA)},\u00b2")  # fmt: skip
member_case("record-md5", "uses hash 'md5'",
            deflated(MODULE, _DATA), line=f"{MODULE},md5=abc,{len(_DATA)}")  # fmt: skip
member_case("record-hash-without-algorithm", "expected hash 'algo=digest'",
            deflated(MODULE, _DATA), line=f"{MODULE},abc,{len(_DATA)}")  # fmt: skip
member_case("record-four-fields", "expected 'path,hash,size'",
            deflated(MODULE, _DATA), line=f"{MODULE},,{len(_DATA)},x")  # fmt: skip
member_case("record-unlisted-member", "is not listed in RECORD",
            deflated(MODULE, _DATA), line="demo/other.py,,")  # fmt: skip


@case("record-not-utf8", "RECORD is not UTF-8")
def _(dist: Path) -> Path:
    entries = wheel_entries()
    return write_zip(dist / WHEEL, [*entries[:-1], deflated(entries[-1].name, b"\xff\xfe,,\n")])


@case("record-missing", "RECORD is missing")
def _(dist: Path) -> Path:
    return write_zip(dist / WHEEL, wheel_entries()[:-1])


@case("no-dist-info", "found 0 top-level .dist-info")
def _(dist: Path) -> Path:
    return write_zip(dist / WHEEL, [module()])


@case("two-dist-infos", "found 2 top-level .dist-info")
def _(dist: Path) -> Path:
    return write_zip(dist / WHEEL, [*wheel_entries(), deflated("other-1.0.dist-info/RECORD", b"")])


# -- the central directory and its end records --------------------------------------


@case("count-says-fewer", "the central directory holds 4 members, its end record says 3")
def _(dist: Path) -> Path:  # zipfile reads the directory by size: a hidden member
    return plain(dist, count=3)


@case("count-says-more", "the central directory holds 4 members, its end record says 9")
def _(dist: Path) -> Path:
    return plain(dist, count=9)


@case("overlapping-members", "overlap")
def _(dist: Path) -> Path:  # the second member's central entry points at the first's data
    path = plain(dist, [module(), deflated("demo/b.py", b"VALUE = 1\n")])
    data = bytearray(path.read_bytes())
    second = data.index(b"PK\x01\x02", data.index(b"PK\x01\x02") + 1)
    struct.pack_into("<L", data, second + 42, 0)
    path.write_bytes(bytes(data))
    return path


@case("directory-past-the-end", "central directory out of bounds")
def _(dist: Path) -> Path:
    return plain(dist, end={"cd_offset": 10_000_000})


@case("directory-size-lies", "corrupt central directory")
def _(dist: Path) -> Path:
    return plain(dist, end={"cd_size": 60})


@case("member-offset-past-the-data", "extends past the data area")
def _(dist: Path) -> Path:
    path = plain(dist)
    data = bytearray(path.read_bytes())
    struct.pack_into("<L", data, data.index(b"PK\x01\x02") + 42, 5_000)
    path.write_bytes(bytes(data))
    return path


@case("bad-local-signature", "bad local header")
def _(dist: Path) -> Path:
    path = plain(dist)
    path.write_bytes(b"XX" + path.read_bytes()[2:])
    return path


@case("zip64-locator-out-of-range", "zip64 locator points out of the archive")
def _(dist: Path) -> Path:
    locator = ZIP64_LOCATOR.pack(b"PK\x06\x07", 0, 2**63, 1)
    return plain(dist, before_end=locator, end={"cd_offset": MAX32})


@case("zip64-locator-at-garbage", "bad zip64 end-of-central-directory record")
def _(dist: Path) -> Path:
    locator = ZIP64_LOCATOR.pack(b"PK\x06\x07", 0, 0, 1)
    return plain(dist, before_end=locator, end={"cd_offset": MAX32})


@case("zip64-locator-missing", "missing zip64 locator")
def _(dist: Path) -> Path:
    return plain(dist, end={"cd_offset": MAX32})


member_case("zip64-extra-short", "missing or short zip64 extra field",
            module(size=MAX32, central_extra=struct.pack("<2HL", 1, 4, 7)))  # fmt: skip
member_case("zip64-extra-missing", "missing or short zip64 extra field", module(size=MAX32))
member_case("zip64-extra-length-lies", "missing or short zip64 extra field",
            module(size=MAX32, central_extra=struct.pack("<2H", 1, 200)))  # fmt: skip


@case("not-a-zip", "no end-of-central-directory record")
def _(dist: Path) -> Path:
    (dist / WHEEL).write_bytes(b"not a zip at all\n" * 10)
    return dist / WHEEL


@case("empty-file", "no end-of-central-directory record")
def _(dist: Path) -> Path:
    (dist / WHEEL).write_bytes(b"")
    return dist / WHEEL


@case("truncated", "")
def _(dist: Path) -> Path:
    path = plain(dist)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] + data[-22:])
    return path


# -- metadata members ---------------------------------------------------------------


@case("metadata-declared-over-the-cap", "over the limit of 16777216 bytes for metadata")
def _(dist: Path) -> Path:
    entries = wheel_entries()
    entries[1] = Entry(entries[1].name, entries[1].payload, DEFLATED, entries[1].crc, 17 << 20)
    return write_zip(dist / WHEEL, entries)


@case("record-size-lies", "inflates past its declared size of 20 bytes")
def _(dist: Path) -> Path:
    entries = wheel_entries()
    record = entries[-1]
    entries[-1] = Entry(record.name, record.payload, DEFLATED, record.crc, 20)
    return write_zip(dist / WHEEL, entries)


def _labelled(dist: Path, variant_json: bytes) -> Path:
    name = f"{DIST_INFO}/variant.json"
    entry = deflated(name, variant_json)
    line = f"{name},{record_hash(variant_json)},{len(variant_json)}"
    return write_zip(dist / LABELLED, wheel_entries([module(), entry], record_lines={name: line}))


@case("variant-json-nested-100k", "nested too deeply")
def _(dist: Path) -> Path:
    return _labelled(dist, b"[" * 100_000 + b"]" * 100_000)


@case("variant-json-not-utf8", "not valid JSON")
def _(dist: Path) -> Path:
    return _labelled(dist, b"\xff\xfe{}")


@case("variant-json-not-an-object", "variant.json")
def _(dist: Path) -> Path:
    return _labelled(dist, json.dumps([1, 2]).encode())


# -- the tests ----------------------------------------------------------------------


@pytest.fixture(params=sorted(CASES))
def hostile(tmp_path: Path, request: pytest.FixtureRequest) -> tuple[Path, str]:
    build, expected = CASES[request.param]
    dist = tmp_path / "dist"
    dist.mkdir()
    return build(dist), expected


def one_error(code: int, err: str, wheel: Path, expected: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, err
    assert wheel.name in errors[0] and expected in errors[0], errors[0]


def test_inspect(hostile: tuple[Path, str], cli: Cli) -> None:
    wheel, expected = hostile
    code, _, err = cli("inspect", wheel)
    one_error(code, err, wheel, expected)


def test_tag_verify_writes_nothing(hostile: tuple[Path, str], cli: Cli, tmp_path: Path) -> None:
    wheel, expected = hostile
    out = tmp_path / "out"
    code, _, err = cli("tag", "--verify", wheel, "-p", CPU, "-o", out)
    if wheel.name == LABELLED:
        expected = "already a variant wheel"
    one_error(code, err, wheel, expected)
    assert not out.exists() or not list(out.iterdir())


def test_check(hostile: tuple[Path, str], cli: Cli) -> None:
    wheel, expected = hostile
    code, out, err = cli("check", "--json", wheel.parent)
    assert code == 1, err
    errors = [f for f in json.loads(out)["findings"] if f["severity"] == "error"]
    assert any(f["file"] == wheel.name and expected in f["message"] for f in errors), errors


def test_the_corpus_is_large() -> None:
    assert len(CASES) >= 60
