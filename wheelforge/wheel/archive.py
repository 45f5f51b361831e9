"""A zip reader and writer that move members as their stored compressed bytes.

Tagging a 2 GB wheel must cost about a file copy: members are copied with
``os.copy_file_range`` from the input's data offset, never decompressed. Only the
few members that change (``variant.json``, ``RECORD``, maybe ``METADATA``) are
compressed, deterministically, so that equal inputs give byte-equal outputs.
"""

from __future__ import annotations

import functools
import math
import os
import struct
import time
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any, BinaryIO, Self

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
_HEAD_CHUNK = 1 << 12  # compressed bytes read at a time for head()
DEFAULT_FILE_MODE = 0o100644 << 16
DEFAULT_METADATA_CAP = 16 << 20
METADATA_CAP_ENV = "WHEELFORGE_MAX_METADATA_MB"
_CAP_HINT = f"raise the limit with --max-metadata-mb or {METADATA_CAP_ENV}"
# The file types a member may have (the high bits of a Unix external_attr): none
# given, a regular file, or a directory (named with a trailing '/').
_S_IFMT, _S_IFREG, _S_IFDIR = 0o170000, 0o100000, 0o040000


def metadata_cap() -> int:
    """The most bytes a metadata member (METADATA, RECORD, WHEEL; variant.json gets a
    sixteenth) or a central directory may hold: 16 MiB, or ``WHEELFORGE_MAX_METADATA_MB``
    (which ``--max-metadata-mb`` sets)."""
    value = os.environ.get(METADATA_CAP_ENV, "")
    return _cap_bytes(value) if value else DEFAULT_METADATA_CAP


def set_metadata_cap(mib: str) -> None:
    """``--max-metadata-mb``: checked now, read by every later :func:`metadata_cap`
    (through the environment, so that worker processes see it too)."""
    _cap_bytes(mib)
    os.environ[METADATA_CAP_ENV] = mib


def _cap_bytes(mib: str) -> int:
    try:
        value = float(mib)
    except ValueError:
        value = math.nan
    if not 0 < value <= 1 << 20:  # nan fails too
        raise InvalidInput(
            f"--max-metadata-mb / {METADATA_CAP_ENV} {mib!r}: expected a positive number "
            "of MiB (at most 1048576)"
        )
    return max(1, int(value * (1 << 20)))


@dataclass(frozen=True, slots=True)
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
    """The central directory of a zip file, and raw or decompressed member access.

    Only archives that every installer reads the same way are opened: no duplicate
    names, no overlapping members, no symlinks or other non-regular files, a central
    directory that holds exactly what its end record says; and a member is read only if
    its local header agrees with the central directory. Content is checked as it
    inflates (see :func:`inflate`), so a bomb is refused after its declared size.
    """

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

    def _refuse(self, name: str, what: str) -> InvalidInput:
        return InvalidInput(f"{self.path}: member {name!r} {what}")

    def _read_at(self, offset: int, size: int) -> bytes:
        self._file.seek(offset)
        return self._file.read(size)

    def _read_central_directory(self) -> list[Member]:
        size = self._file.seek(0, os.SEEK_END)
        tail_len = min(size, _EOCD.size + _MAX16)
        tail = self._read_at(size - tail_len, tail_len)
        at = tail.rfind(_EOCD_SIG)
        if at < 0 or at + _EOCD.size > len(tail):
            raise self._fail("no end-of-central-directory record (not a zip, or truncated)")
        _, _, _, _, count, cd_size, cd_offset, _ = _EOCD.unpack_from(tail, at)
        eocd_pos = size - tail_len + at
        if count == _MAX16 or cd_size == _MAX32 or cd_offset == _MAX32:
            locator_pos = eocd_pos - _ZIP64_LOCATOR.size
            locator = self._read_at(max(locator_pos, 0), _ZIP64_LOCATOR.size)
            if locator_pos < 0 or locator[:4] != _ZIP64_LOCATOR_SIG:
                raise self._fail("missing zip64 locator")
            _, _, z64_pos, _ = _ZIP64_LOCATOR.unpack(locator)
            if z64_pos + _ZIP64_EOCD.size > locator_pos:
                raise self._fail("zip64 locator points out of the archive")
            record = self._read_at(z64_pos, _ZIP64_EOCD.size)
            if record[:4] != _ZIP64_EOCD_SIG:
                raise self._fail("bad zip64 end-of-central-directory record")
            *_, count, cd_size, cd_offset = _ZIP64_EOCD.unpack(record)
            eocd_pos = z64_pos
        if cd_offset + cd_size > eocd_pos:
            raise self._fail("central directory out of bounds (truncated)")
        cap = metadata_cap()
        if cd_size > cap:
            raise InvalidInput(
                f"{self.path}: the central directory holds {cd_size} bytes, over the "
                f"limit of {cap} bytes for metadata ({_CAP_HINT})"
            )
        self._data_end = cd_offset
        directory = self._read_at(cd_offset, cd_size)
        members: list[Member] = []
        names: set[str] = set()
        spans: list[tuple[int, int, str]] = []  # (start, least end, name)
        pos = 0
        while pos < len(directory):
            if directory[pos : pos + 4] != _CENTRAL_SIG or pos + _CENTRAL.size > len(directory):
                raise self._fail("corrupt central directory")
            (
                *_,
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
            ) = _CENTRAL.unpack_from(directory, pos)
            pos += _CENTRAL.size
            raw_name = directory[pos : pos + name_len]
            extra = directory[pos + name_len : pos + name_len + extra_len]
            pos += name_len + extra_len + comment_len
            if pos > len(directory):
                raise self._fail("corrupt central directory")
            name = _decode_name(raw_name, flags)
            if name is None:
                raise self._fail(f"member name {raw_name!r} has the UTF-8 flag but is not UTF-8")
            zip64 = _apply_zip64(extra, usize, csize, offset)
            if zip64 is None:
                raise self._fail(f"member {name!r}: missing or short zip64 extra field")
            usize, csize, offset = zip64
            self._check_entry(name, flags, external, names)
            spans.append((offset, offset + _LOCAL.size + name_len + csize, name))
            members.append(
                Member(name, method, flags, crc, csize, usize, offset, dtime, ddate, external)
            )
        if len(members) != count:
            raise self._fail(
                f"the central directory holds {len(members)} members, its end record says {count}"
            )
        spans.sort()
        for (_, end, name), (start, _, following) in zip(
            spans, [*spans[1:], (cd_offset, 0, "")], strict=True
        ):
            if end > start:
                raise self._fail(
                    f"members {name!r} and {following!r} overlap"
                    if following
                    else f"member {name!r} extends past the data area (truncated)"
                )
        return members

    def _check_entry(self, name: str, flags: int, external: int, names: set[str]) -> None:
        if flags & _ENCRYPTED_FLAG:
            raise InvalidInput(f"{self.path}: member {name!r} is encrypted")
        if name in names:
            raise self._refuse(name, "appears twice: installers disagree on which copy they write")
        names.add(name)
        kind = (external >> 16) & _S_IFMT
        if kind not in (0, _S_IFREG) and not (kind == _S_IFDIR and name.endswith("/")):
            what = "a symlink" if kind == 0o120000 else "not a regular file"
            raise self._refuse(
                name,
                f"is {what} (mode {oct(external >> 16)}): installers write it as a "
                "regular file; expected regular files and directories only",
            )

    def data_offset(self, member: Member) -> int:
        """Where the member's compressed bytes start, once its local header agrees with
        the central directory (name, method, flags; CRC and sizes unless they follow
        the data)."""
        header = self._read_at(member.offset, _LOCAL.size)
        if len(header) != _LOCAL.size or header[:4] != _LOCAL_SIG:
            raise self._fail(f"bad local header for {member.name!r}")
        *_, flags, method, _, _, crc, csize, usize, name_len, extra_len = _LOCAL.unpack(header)
        rest = self._read_at(member.offset + _LOCAL.size, name_len + extra_len)
        if len(rest) != name_len + extra_len:
            raise self._fail(f"bad local header for {member.name!r}")
        start: int = member.offset + _LOCAL.size + name_len + extra_len
        local = {
            "name": _decode_name(rest[:name_len], flags),
            "method": method,
            "flags": flags,
        }
        central: dict[str, object] = {
            "name": member.name,
            "method": member.method,
            "flags": member.flags,
        }
        if not flags & _DATA_DESCRIPTOR_FLAG:
            zip64 = _apply_zip64(rest[name_len:], usize, csize, 0)
            if zip64 is None:
                raise self._fail(f"member {member.name!r}: missing or short zip64 extra field")
            usize, csize, _ = zip64
            local.update(crc=crc, size=usize, compressed_size=csize)
            central.update(crc=member.crc, size=member.size, compressed_size=member.compressed_size)
        for field, value in local.items():
            if value != central[field]:
                raise self._refuse(
                    member.name,
                    f"has a local header whose {field} ({value!r}) differs from the "
                    f"central directory's ({central[field]!r})",
                )
        if start + member.compressed_size > self._data_end:
            raise self._fail(f"member {member.name!r} extends past the data area (truncated)")
        return start

    def iter_raw(self, member: Member, *, skip: int = 0, chunk: int = _CHUNK) -> Iterator[bytes]:
        """The member's compressed bytes in chunks of at most ``chunk`` bytes, from
        ``skip`` bytes in."""
        start = self.data_offset(member)
        remaining = member.compressed_size - skip
        while remaining:
            at = start + member.compressed_size - remaining
            chunk_bytes = self._read_at(at, min(chunk, remaining))
            if not chunk_bytes:
                raise self._fail(f"member {member.name!r} is cut short")
            remaining -= len(chunk_bytes)
            yield chunk_bytes

    def iter_content(self, member: Member) -> Iterator[bytes]:
        """The member's uncompressed bytes in chunks, checked as they inflate."""
        return inflate(self.iter_raw(member), member, str(self.path))

    def head(self, member: Member, size: int) -> bytes:
        """The first ``size`` bytes of the member's content (fewer when it is shorter),
        inflating little more than that: for telling a file's type by its magic. Not
        CRC-checked; a member that inflates past its declared size still fails."""
        found = b""
        for piece in _decode(self.iter_raw(member, chunk=_HEAD_CHUNK), member, str(self.path)):
            found += piece
            if len(found) > member.size:
                raise InvalidInput(
                    f"{self.path}: member {member.name!r} inflates past its declared size of "
                    f"{member.size} bytes"
                )
            if len(found) >= size:
                break
        return found[:size]

    def read(self, member: Member, *, limit: int | None = None) -> bytes:
        """The member's content; over ``limit`` bytes (as declared, and so as inflated)
        is an error."""
        if limit is not None and member.size > limit:
            raise self._refuse(
                member.name,
                f"holds {member.size} bytes, over the limit of {limit} bytes for metadata "
                f"({_CAP_HINT})",
            )
        return b"".join(self.iter_content(member))


def inflate(raw: Iterable[bytes], member: Member, source: str) -> Iterator[bytes]:
    """The member's content in pieces of at most 1 MiB, from its compressed bytes.

    Checked as it inflates: a member that inflates past its declared size fails as soon
    as it does (a bomb is never held), one that ends short of it fails, and so does a
    CRC mismatch at the end.
    """
    crc = size = 0
    for piece in _decode(raw, member, source):
        size += len(piece)
        if size > member.size:
            raise InvalidInput(
                f"{source}: member {member.name!r} inflates past its declared size of "
                f"{member.size} bytes"
            )
        crc = zlib.crc32(piece, crc)
        yield piece
    if size != member.size:
        raise InvalidInput(
            f"{source}: member {member.name!r} inflates to {size} bytes, its declared "
            f"size is {member.size}"
        )
    if crc != member.crc:
        raise InvalidInput(f"{source}: member {member.name!r} fails its CRC check")


def _decode(raw: Iterable[bytes], member: Member, source: str) -> Iterator[bytes]:
    """The member's content in pieces of at most ``_CHUNK`` bytes."""
    if member.method == STORED:
        yield from raw
        return
    decoder: Any
    if member.method == DEFLATED:
        decoder, error = zlib.decompressobj(-zlib.MAX_WBITS), zlib.error
    elif member.method == ZSTD:
        zstd = zstd_module()
        decoder, error = zstd.ZstdDecompressor(), zstd.ZstdError
    else:
        raise InvalidInput(
            f"{source}: member {member.name!r} uses zip method {member.method}: "
            "expected stored (0), deflate (8) or zstd (93)"
        )
    try:
        for chunk in raw:
            piece = decoder.decompress(chunk, _CHUNK)
            while True:  # a full piece: more may come from the input already given
                if piece:
                    yield piece
                if decoder.eof or len(piece) < _CHUNK:
                    break
                # zlib hands back the input it did not take; zstd keeps it
                rest = decoder.unconsumed_tail if member.method == DEFLATED else b""
                piece = decoder.decompress(rest, _CHUNK)
            if decoder.eof:
                return
    except error as err:
        raise InvalidInput(f"{source}: member {member.name!r} is corrupt ({err})") from None
    raise InvalidInput(f"{source}: member {member.name!r} is corrupt (its stream is cut short)")


def _decode_name(raw: bytes, flags: int) -> str | None:
    try:
        return raw.decode("utf-8" if flags & _UTF8_FLAG else "cp437")
    except UnicodeDecodeError:
        return None


def _apply_zip64(extra: bytes, usize: int, csize: int, offset: int) -> tuple[int, int, int] | None:
    """The sizes and offset, those at 0xFFFFFFFF taken from the zip64 extra field;
    None if that field is missing or too short for them."""
    wanted = [value == _MAX32 for value in (usize, csize, offset)]
    if not any(wanted):
        return usize, csize, offset
    pos = 0
    while pos + 4 <= len(extra):
        tag, length = struct.unpack_from("<2H", extra, pos)
        field = extra[pos + 4 : pos + 4 + length]
        pos += 4 + length
        if tag != _ZIP64_EXTRA:
            continue
        values = list(struct.unpack_from(f"<{len(field) // 8}Q", field))
        if len(values) < sum(wanted):
            return None
        usize = values.pop(0) if wanted[0] else usize
        csize = values.pop(0) if wanted[1] else csize
        offset = values.pop(0) if wanted[2] else offset
        return usize, csize, offset
    return None


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
