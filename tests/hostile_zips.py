"""Zip archives written field by field, so that tests can make them lie.

The standard library's zipfile only writes honest archives; these helpers write what
an attacker would: sizes that differ from the content, local headers that disagree
with the central directory, duplicate names, symlink modes, bombs. Bombs are built
from compressed zero streams, so a 3 GiB member costs about 100 KB here.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import struct
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path

STORED, DEFLATED, ZSTD = 0, 8, 93
REGULAR = 0o100644 << 16
GiB = 1 << 30

_LOCAL = struct.Struct("<4s2B4HL2L2H")
_CENTRAL = struct.Struct("<4s4B4HL2L5H2L")
_EOCD = struct.Struct("<4s4H2LH")
ZIP64_LOCATOR = struct.Struct("<4sLQL")
MAX32 = 0xFFFFFFFF


@dataclass(frozen=True)
class Entry:
    """One member as written: ``payload`` is its compressed bytes; every other field
    is what the headers declare (``local`` overrides the local header's)."""

    name: str
    payload: bytes
    method: int
    crc: int
    size: int
    flags: int = 0
    external_attr: int = REGULAR
    raw_name: bytes | None = None  # the name's bytes, if not its UTF-8
    central_extra: bytes = b""
    local_extra: bytes = b""
    local: dict[str, int | bytes] = field(default_factory=dict)


def stored(name: str, data: bytes, **fields: object) -> Entry:
    return replace(Entry(name, data, STORED, zlib.crc32(data), len(data)), **fields)  # type: ignore[arg-type]


def deflated(name: str, data: bytes, **fields: object) -> Entry:
    compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    payload = compressor.compress(data) + compressor.flush()
    return replace(Entry(name, payload, DEFLATED, zlib.crc32(data), len(data)), **fields)  # type: ignore[arg-type]


def write_zip(
    path: Path,
    entries: list[Entry],
    *,
    count: int | None = None,
    before_end: bytes = b"",
    end: dict[str, int] | None = None,
) -> Path:
    """The archive of ``entries`` in order. ``count``: the member count the end record
    claims; ``before_end``: bytes between the central directory and the end record (a
    zip64 locator); ``end``: other end record fields (cd_size, cd_offset)."""
    out = bytearray()
    central = bytearray()
    for entry in entries:
        name = entry.raw_name if entry.raw_name is not None else entry.name.encode()
        local = {
            "name": name,
            "flags": entry.flags,
            "method": entry.method,
            "crc": entry.crc,
            "csize": len(entry.payload),
            "size": entry.size,
            **entry.local,
        }
        offset = len(out)
        local_name = local["name"]
        assert isinstance(local_name, bytes)
        out += _LOCAL.pack(
            b"PK\x03\x04", 20, 0, local["flags"], local["method"], 0, 0x5821,
            local["crc"], local["csize"], local["size"], len(local_name), len(entry.local_extra),
        )  # fmt: skip
        out += local_name + entry.local_extra + entry.payload
        central += _CENTRAL.pack(
            b"PK\x01\x02", 20, 3, 20, 0, entry.flags, entry.method, 0, 0x5821,
            entry.crc, len(entry.payload), entry.size, len(name), len(entry.central_extra),
            0, 0, 0, entry.external_attr, offset,
        )  # fmt: skip
        central += name + entry.central_extra
    fields = {"count": len(entries) if count is None else count, "cd_size": len(central)}
    fields = {**fields, "cd_offset": len(out), **(end or {})}
    n = fields["count"]
    eocd = _EOCD.pack(b"PK\x05\x06", 0, 0, n, n, fields["cd_size"], fields["cd_offset"], 0)
    path.write_bytes(bytes(out + central + before_end + eocd))
    return path


def record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest}"


def wheel_entries(
    payload: list[Entry] | None = None,
    *,
    metadata: Entry | None = None,
    record_lines: dict[str, str] | None = None,
    name: str = "demo",
    version: str = "1.0",
) -> list[Entry]:
    """A wheel's members: ``payload`` (default: one small module), METADATA (default: a
    valid one), WHEEL and a RECORD listing them all. ``record_lines`` gives the RECORD
    line of a member whose content the RECORD cannot hash here (a bomb's)."""
    dist_info = f"{name}-{version}.dist-info"
    if payload is None:
        payload = [deflated(f"{name}/__init__.py", b"VALUE = 1\n")]
    text = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\nA demo.\n"
    wheel = b"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    members = [
        *payload,
        metadata or deflated(f"{dist_info}/METADATA", text.encode()),
        deflated(f"{dist_info}/WHEEL", wheel),
    ]
    contents = {
        f"{dist_info}/METADATA": text.encode(),
        f"{dist_info}/WHEEL": wheel,
        **{e.name: _content(e) for e in payload if e.name not in (record_lines or {})},
    }
    lines = dict(record_lines or {})
    for member, data in contents.items():
        lines.setdefault(member, f"{member},{record_hash(data)},{len(data)}")
    record = "".join(f"{line}\n" for line in lines.values()) + f"{dist_info}/RECORD,,\n"
    return [*members, deflated(f"{dist_info}/RECORD", record.encode())]


def _content(entry: Entry) -> bytes:
    if entry.method == STORED:
        return entry.payload
    return zlib.decompress(entry.payload, -zlib.MAX_WBITS)


@functools.cache
def zstd_zeros(size: int, window_log: int = 0) -> bytes:
    """One zstd frame of ``size`` zero bytes (multiple of 1 MiB), compressed streaming;
    ``window_log``: the window its decoder must hold (27: 128 MiB, the most libzstd
    decodes by default)."""
    from backports import zstd

    parameter = zstd.CompressionParameter
    options: dict[int, int] = {parameter.compression_level: 1, parameter.window_log: window_log}
    compressor = zstd.ZstdCompressor(options=options)
    compressor.set_pledged_input_size(size)
    block = bytes(1 << 20)
    pieces = [compressor.compress(block) for _ in range(size >> 20)]
    return b"".join([*pieces, compressor.flush()])


@functools.cache
def deflate_zeros(size: int) -> bytes:
    """A raw deflate stream of ``size`` zero bytes (multiple of 1 MiB): one fully
    flushed 1 MiB block repeated, so only 1 MiB is ever compressed."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    block = compressor.compress(bytes(1 << 20)) + compressor.flush(zlib.Z_FULL_FLUSH)
    return block * (size >> 20) + compressor.flush()
