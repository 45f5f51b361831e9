"""A zip reader and writer that move members as their stored compressed bytes.

Tagging a 2 GB wheel must cost about a file copy: members are copied with
``os.copy_file_range`` from the input's data offset, never decompressed. Only the
few members that change (``variant.json``, ``RECORD``, maybe ``METADATA``) are
compressed, deterministically, so that equal inputs give byte-equal outputs.
"""

from __future__ import annotations

import functools
import os
import struct
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType, TracebackType
from typing import BinaryIO, Self

from wheelforge.errors import InvalidInput

STORED, DEFLATED, ZSTD = 0, 8, 93
METHOD_NAMES = {STORED: "stored", DEFLATED: "deflate", ZSTD: "zstd"}

_LOCAL = struct.Struct("<4s2B4HL2L2H")
_CENTRAL = struct.Struct("<4s4B4HL2L5H2L")
_EOCD = struct.Struct("<4s4H2LH")
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_LOCAL_SIG, _CENTRAL_SIG = b"PK\x03\x04", b"PK\x01\x02"
_EOCD_SIG, _ZIP64_EOCD_SIG, _ZIP64_LOCATOR_SIG = b"PK\x05\x06", b"PK\x06\x06", b"PK\x06\x07"
_MAX32, _MAX16 = 0xFFFFFFFF, 0xFFFF
_ZIP64_EXTRA = 0x0001
_UTF8_FLAG, _DATA_DESCRIPTOR_FLAG, _ENCRYPTED_FLAG = 0x800, 0x8, 0x1
_CHUNK = 1 << 20
DEFAULT_FILE_MODE = 0o100644 << 16


@dataclass(frozen=True)
class Member:
    name: str
    method: int
    flags: int
    crc: int
    compressed_size: int
    size: int
    offset: int  # of the local header
    dos_time: int
    dos_date: int
    external_attr: int

    @property
    def is_dir(self) -> bool:
        return self.name.endswith("/")


def dos_datetime(epoch: int) -> tuple[int, int]:
    """``(dos_time, dos_date)`` in UTC, clamped to the zip format's 1980 minimum."""
    t = time.gmtime(max(epoch, 315532800))
    return (
        (t.tm_hour << 11) | (t.tm_min << 5) | (t.tm_sec // 2),
        ((t.tm_year - 1980) << 9) | (t.tm_mon << 5) | t.tm_mday,
    )


def check_member_name(name: str, *, source: str) -> None:
    """Reject names that would escape the install directory."""
    if (
        not name
        or name.startswith("/")
        or "\\" in name
        or "\x00" in name
        or name[1:2] == ":"
        or ".." in name.split("/")
    ):
        raise InvalidInput(
            f"{source}: unsafe member name {name!r}: expected a relative path without '..'"
        )


class ZipReader:
    """The central directory of a zip file, and raw or decompressed member access."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._file: BinaryIO = open(path, "rb")  # noqa: SIM115 - closed by close()
        except OSError as err:
            raise InvalidInput(f"{path}: cannot open ({err.strerror})") from None
        try:
            self.members = self._read_central_directory()
        except BaseException:
            self._file.close()
            raise

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()

    def fileno(self) -> int:
        return self._file.fileno()

    def _fail(self, what: str) -> InvalidInput:
        return InvalidInput(f"{self.path}: {what}: expected a complete zip archive (a wheel)")

    def _read_central_directory(self) -> list[Member]:
        f = self._file
        size = f.seek(0, os.SEEK_END)
        tail_len = min(size, _EOCD.size + _MAX16)
        f.seek(size - tail_len)
        tail = f.read(tail_len)
        at = tail.rfind(_EOCD_SIG)
        if at < 0 or at + _EOCD.size > len(tail):
            raise self._fail("no end-of-central-directory record (not a zip, or truncated)")
        _, _, _, _, count, cd_size, cd_offset, _ = _EOCD.unpack_from(tail, at)
        eocd_pos = size - tail_len + at
        if count == _MAX16 or cd_size == _MAX32 or cd_offset == _MAX32:
            locator_pos = eocd_pos - _ZIP64_LOCATOR.size
            f.seek(locator_pos)
            sig, _, z64_pos, _ = _ZIP64_LOCATOR.unpack(f.read(_ZIP64_LOCATOR.size))
            if sig != _ZIP64_LOCATOR_SIG:
                raise self._fail("missing zip64 locator")
            f.seek(z64_pos)
            record = f.read(_ZIP64_EOCD.size)
            if len(record) != _ZIP64_EOCD.size or record[:4] != _ZIP64_EOCD_SIG:
                raise self._fail("bad zip64 end-of-central-directory record")
            *_, count, cd_size, cd_offset = _ZIP64_EOCD.unpack(record)
        if cd_offset + cd_size > eocd_pos:
            raise self._fail("central directory out of bounds (truncated)")
        f.seek(cd_offset)
        directory = f.read(cd_size)
        members = []
        pos = 0
        for _ in range(count):
            if directory[pos : pos + 4] != _CENTRAL_SIG:
                raise self._fail("corrupt central directory")
            fields = _CENTRAL.unpack_from(directory, pos)
            (
                _,
                _,
                _,
                _,
                _,
                flags,
                method,
                dtime,
                ddate,
                crc,
                csize,
                usize,
                name_len,
                extra_len,
                comment_len,
                _,
                _,
                external,
                offset,
            ) = fields
            pos += _CENTRAL.size
            raw_name = directory[pos : pos + name_len]
            extra = directory[pos + name_len : pos + name_len + extra_len]
            pos += name_len + extra_len + comment_len
            name = raw_name.decode("utf-8" if flags & _UTF8_FLAG else "cp437")
            usize, csize, offset = _apply_zip64(extra, usize, csize, offset)
            if flags & _ENCRYPTED_FLAG:
                raise InvalidInput(f"{self.path}: member {name!r} is encrypted")
            if offset + csize > cd_offset:
                raise self._fail(f"member {name!r} extends past the data area (truncated)")
            members.append(
                Member(name, method, flags, crc, csize, usize, offset, dtime, ddate, external)
            )
        return members

    def data_offset(self, member: Member) -> int:
        self._file.seek(member.offset)
        header = self._file.read(_LOCAL.size)
        if len(header) != _LOCAL.size or header[:4] != _LOCAL_SIG:
            raise self._fail(f"bad local header for {member.name!r}")
        name_len, extra_len = struct.unpack_from("<2H", header, _LOCAL.size - 4)
        return member.offset + _LOCAL.size + int(name_len) + int(extra_len)

    def iter_raw(self, member: Member, *, skip: int = 0) -> Iterator[bytes]:
        """The member's compressed bytes in chunks, from ``skip`` bytes in."""
        start = self.data_offset(member)
        remaining = member.compressed_size - skip
        while remaining:
            self._file.seek(start + member.compressed_size - remaining)
            chunk = self._file.read(min(_CHUNK, remaining))
            if not chunk:
                raise self._fail(f"member {member.name!r} is cut short")
            remaining -= len(chunk)
            yield chunk

    def iter_content(self, member: Member) -> Iterator[bytes]:
        """The member's uncompressed bytes in chunks; the CRC is checked at the end."""
        decompress = _decompressor(member, self.path)
        crc = 0
        for raw in self.iter_raw(member):
            chunk = decompress(raw)
            crc = zlib.crc32(chunk, crc)
            yield chunk
        if crc != member.crc:
            raise InvalidInput(f"{self.path}: member {member.name!r} fails its CRC check")

    def read(self, member: Member) -> bytes:
        return b"".join(self.iter_content(member))


def _apply_zip64(extra: bytes, usize: int, csize: int, offset: int) -> tuple[int, int, int]:
    pos = 0
    while pos + 4 <= len(extra):
        tag, length = struct.unpack_from("<2H", extra, pos)
        if tag == _ZIP64_EXTRA:
            values = list(struct.unpack_from(f"<{length // 8}Q", extra, pos + 4))
            if usize == _MAX32:
                usize = values.pop(0)
            if csize == _MAX32:
                csize = values.pop(0)
            if offset == _MAX32:
                offset = values.pop(0)
            break
        pos += 4 + length
    return usize, csize, offset


def _decompressor(member: Member, path: Path) -> Callable[[bytes], bytes]:
    if member.method == STORED:
        return lambda data: data
    if member.method == DEFLATED:
        return zlib.decompressobj(-zlib.MAX_WBITS).decompress
    if member.method == ZSTD:
        decompress: Callable[[bytes], bytes] = zstd_module().ZstdDecompressor().decompress
        return decompress
    raise InvalidInput(
        f"{path}: member {member.name!r} uses zip method {member.method}: "
        "expected stored (0), deflate (8) or zstd (93)"
    )


def compress(data: bytes, method: int, level: int | None = None) -> bytes:
    if method == DEFLATED:
        compressor = zlib.compressobj(6 if level is None else level, zlib.DEFLATED, -zlib.MAX_WBITS)
        return compressor.compress(data) + compressor.flush()
    if method == ZSTD:
        result: bytes = zstd_module().compress(data, level=3 if level is None else level)
        return result
    if method == STORED:
        return data
    raise ValueError(f"unsupported zip method {method}")


@functools.cache  # a failed import is not cached by Python: it searches sys.path again
def zstd_module() -> ModuleType:
    """``compression.zstd`` on Python 3.14+, ``backports.zstd`` before."""
    try:
        from compression import zstd  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        from backports import zstd  # type: ignore[no-redef,unused-ignore]
    module: ModuleType = zstd
    return module


def _needed_version(method: int, *, zip64: bool) -> int:
    """The "version needed to extract": 6.3 for zstd (APPNOTE; what Python 3.14's
    zipfile writes), 4.5 for zip64, 2.0 otherwise."""
    if method == ZSTD:
        return 63
    return 45 if zip64 else 20


class ZipWriter:
    """Writes members in order: raw copies from a reader, or new compressed bytes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = open(path, "xb", buffering=0)  # noqa: SIM115 - closed by close()
        self._central: list[bytes] = []
        self._offset = 0
        self._names: set[str] = set()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.finish()
        self._file.close()

    def _write(self, data: bytes, *, advance: bool = True) -> None:
        view = memoryview(data)
        while view:
            written = self._file.write(view)
            assert written is not None  # a raw file in blocking mode
            view = view[written:]
        if advance:
            self._offset += len(data)

    def _header(self, member: Member, name: bytes, flags: int) -> None:
        big = member.size >= _MAX32 or member.compressed_size >= _MAX32
        extra = struct.pack("<2H2Q", _ZIP64_EXTRA, 16, member.size, member.compressed_size)
        self._write(
            _LOCAL.pack(
                _LOCAL_SIG,
                _needed_version(member.method, zip64=big),
                0,
                flags,
                member.method,
                member.dos_time,
                member.dos_date,
                member.crc,
                _MAX32 if big else member.compressed_size,
                _MAX32 if big else member.size,
                len(name),
                len(extra) if big else 0,
            )
            + name
            + (extra if big else b"")
        )

    def _record(self, member: Member, name: bytes, flags: int, offset: int) -> None:
        zip64 = []
        usize, csize, off = member.size, member.compressed_size, offset
        if usize >= _MAX32:
            zip64.append(usize)
            usize = _MAX32
        if csize >= _MAX32:
            zip64.append(csize)
            csize = _MAX32
        if off >= _MAX32:
            zip64.append(off)
            off = _MAX32
        extra = (
            struct.pack(f"<2H{len(zip64)}Q", _ZIP64_EXTRA, 8 * len(zip64), *zip64) if zip64 else b""
        )
        version = _needed_version(member.method, zip64=bool(zip64))
        self._central.append(
            _CENTRAL.pack(
                _CENTRAL_SIG,
                version,
                3,
                version,
                0,
                flags,
                member.method,
                member.dos_time,
                member.dos_date,
                member.crc,
                csize,
                usize,
                len(name),
                len(extra),
                0,
                0,
                0,
                member.external_attr,
                off,
            )
            + name
            + extra
        )

    def _begin(self, member: Member) -> tuple[bytes, int, int]:
        if member.name in self._names:
            raise InvalidInput(f"{self.path}: duplicate member {member.name!r}")
        self._names.add(member.name)
        name = member.name.encode("utf-8")
        flags = _UTF8_FLAG if not member.name.isascii() else 0
        offset = self._offset
        self._header(member, name, flags)
        return name, flags, offset

    def copy(self, reader: ZipReader, member: Member) -> None:
        """Copy a member as its stored compressed bytes (no data descriptor kept)."""
        name, flags, offset = self._begin(member)
        source = reader.data_offset(member)
        remaining = member.compressed_size
        try:
            while remaining:
                copied = os.copy_file_range(
                    reader.fileno(),
                    self._file.fileno(),
                    remaining,
                    source + member.compressed_size - remaining,
                )
                if copied == 0:
                    raise InvalidInput(f"{reader.path}: member {member.name!r} is cut short")
                remaining -= copied
        except OSError:  # no copy_file_range between these files: copy through memory
            done = member.compressed_size - remaining
            self._file.seek(self._offset + done)
            for chunk in reader.iter_raw(member, skip=done):
                self._write(chunk, advance=False)
        self._offset += member.compressed_size
        self._file.seek(self._offset)
        self._record(member, name, flags, offset)

    def add(
        self,
        name: str,
        data: bytes,
        *,
        dos_time: int,
        dos_date: int,
        external_attr: int = DEFAULT_FILE_MODE,
        method: int = DEFLATED,
        level: int | None = None,
    ) -> None:
        """Add a new member: deflated (level 6 by default) or zstd (level 3 by default);
        deterministic for a given zlib / libzstd."""
        self.add_compressed(
            name,
            [compress(data, method, level)],
            method=method,
            crc=zlib.crc32(data),
            size=len(data),
            dos_time=dos_time,
            dos_date=dos_date,
            external_attr=external_attr,
        )

    def add_compressed(
        self,
        name: str,
        payload: Sequence[bytes],
        *,
        method: int,
        crc: int,
        size: int,
        dos_time: int,
        dos_date: int,
        external_attr: int = DEFAULT_FILE_MODE,
    ) -> None:
        """Add a member whose data is already compressed with ``method`` (the pieces of
        ``payload`` in order), holding ``size`` bytes with CRC-32 ``crc``."""
        member = Member(
            name,
            method,
            0,
            crc,
            sum(len(piece) for piece in payload),
            size,
            0,
            dos_time,
            dos_date,
            external_attr,
        )
        name_bytes, flags, offset = self._begin(member)
        for piece in payload:
            self._write(piece)
        self._record(member, name_bytes, flags, offset)

    def finish(self) -> None:
        cd_offset = self._offset
        for record in self._central:
            self._write(record)
        cd_size = self._offset - cd_offset
        count = len(self._central)
        if count >= _MAX16 or cd_offset >= _MAX32 or cd_size >= _MAX32:
            z64_offset = self._offset
            self._write(
                _ZIP64_EOCD.pack(
                    _ZIP64_EOCD_SIG,
                    _ZIP64_EOCD.size - 12,
                    45,
                    45,
                    0,
                    0,
                    count,
                    count,
                    cd_size,
                    cd_offset,
                )
            )
            self._write(_ZIP64_LOCATOR.pack(_ZIP64_LOCATOR_SIG, 0, z64_offset, 1))
            count, cd_size, cd_offset = _MAX16, _MAX32, _MAX32
        self._write(_EOCD.pack(_EOCD_SIG, 0, 0, count, count, cd_size, cd_offset, 0))
