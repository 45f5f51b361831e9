"""An opened wheel: its filename, its ``.dist-info``, RECORD and variant metadata."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Self

from wheelforge.errors import InvalidInput
from wheelforge.variants.metadata import VariantMetadata, loads
from wheelforge.wheel.archive import Member, ZipReader, check_member_name, metadata_cap
from wheelforge.wheel.filename import WheelFilename
from wheelforge.wheel.record import RecordEntry, digest_to_record_hash, parse_record

if TYPE_CHECKING:
    from packaging.metadata import RawMetadata

VARIANT_JSON = "variant.json"
_UNRECORDED = ("RECORD", "RECORD.jws", "RECORD.p7s")
_METADATA = ("METADATA", "RECORD", "WHEEL", VARIANT_JSON)
MAX_HEADER_LINES = 10_000  # Requires-Dist, Classifier, ...: real wheels have hundreds


def _header_end(data: bytes) -> tuple[int, int]:
    """Where the headers of core metadata end, and the separator's length."""
    ends = [(at, len(sep)) for sep in (b"\n\n", b"\r\n\r\n") if (at := data.find(sep)) >= 0]
    return min(ends, default=(len(data), 0))


def check_header_lines(data: bytes, *, source: str) -> bytes:
    """``data`` (core metadata), unless its headers have more than ``MAX_HEADER_LINES``
    lines: parsing a header costs hundreds of bytes of memory a line."""
    lines = data.count(b"\n", 0, _header_end(data)[0])
    if lines > MAX_HEADER_LINES:
        raise InvalidInput(
            f"{source}: its headers have {lines} lines, more than {MAX_HEADER_LINES}"
        )
    return data


_BIG_BODY = 1 << 20


def parse_core_metadata(data: bytes) -> tuple[RawMetadata, dict[str, list[str]]]:
    """``packaging.metadata.parse_email``, with a long description kept out of the email
    parser (which holds a long body as one object a line: 150 bytes a line)."""
    from packaging.metadata import parse_email

    end, separator = _header_end(data)
    body = data[end + separator :]
    if len(body) < _BIG_BODY:
        return parse_email(data)
    raw, unparsed = parse_email(data[: end + separator])
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        unparsed.setdefault("description", []).append(body.decode("utf-8", "replace"))
        return raw, unparsed
    if "description" in raw:  # as packaging does: a Description header and a body
        unparsed.setdefault("description", []).extend([raw.pop("description"), text])
    elif "description" in unparsed:
        unparsed["description"].append(text)
    else:
        raw["description"] = text
    return raw, unparsed


def _limit(name: str) -> int:
    """JSON members get a sixteenth of the cap: parsed, a byte of JSON can take 20."""
    cap = metadata_cap()
    return cap // 16 if name.endswith(".json") else cap


class Wheel:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.filename = WheelFilename.parse(path.name)
        self.zip = ZipReader(path)
        try:
            self.members = {}
            for member in self.zip.members:
                check_member_name(member.name, source=str(path))
                self.members[member.name] = member
            self.dist_info = self._find_dist_info()
            self._check_metadata_sizes()
        except BaseException:
            self.zip.close()
            raise

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.zip.close()

    def _find_dist_info(self) -> str:
        dirs = {name.split("/", 1)[0] for name in self.members if "/" in name}
        found = sorted(d for d in dirs if d.endswith(".dist-info"))
        if len(found) != 1:
            raise InvalidInput(
                f"{self.path}: found {len(found)} top-level .dist-info directories, expected one"
            )
        if f"{found[0]}/RECORD" not in self.members:
            raise InvalidInput(f"{self.path}: {found[0]}/RECORD is missing")
        return found[0]

    def _check_metadata_sizes(self) -> None:
        """Metadata members are read whole: each is refused if it declares more than
        :func:`metadata_cap` bytes (and :meth:`read` stops at the declared size)."""
        for name in _METADATA:
            member = self.members.get(self.dist_info_path(name))
            if member is not None and member.size > _limit(name):
                self.zip.read(member, limit=_limit(name))  # raises

    def dist_info_path(self, name: str) -> str:
        return f"{self.dist_info}/{name}"

    def member(self, name: str) -> Member | None:
        return self.members.get(name)

    def read(self, name: str) -> bytes:
        """A metadata member's content (at most :func:`metadata_cap` bytes, a sixteenth
        of it for JSON)."""
        member = self.members.get(name)
        if member is None:
            raise InvalidInput(f"{self.path}: member {name!r} is missing")
        return self.zip.read(member, limit=_limit(name.rpartition("/")[2]))

    def core_metadata(self) -> bytes:
        """METADATA (see :func:`check_header_lines`)."""
        name = self.dist_info_path("METADATA")
        return check_header_lines(self.read(name), source=f"{self.path}: {name}")

    def check_headers(self) -> None:
        """Every member's local header agrees with the central directory."""
        for member in self.zip.members:
            self.zip.data_offset(member)

    def record(self) -> list[RecordEntry]:
        data = self.read(self.dist_info_path("RECORD"))
        return parse_record(data, source=str(self.path), max_entries=len(self.members))

    def variant_metadata(self) -> VariantMetadata | None:
        name = self.dist_info_path(VARIANT_JSON)
        if name not in self.members:
            return None
        return loads(self.read(name), source=f"{self.path}!{name}")

    def checked_record(self, *, verify: bool) -> list[RecordEntry]:
        """RECORD, once it lists every member (and, with ``verify``, every hash holds)."""
        record = self.record()
        if verify:
            self.verify_record(record)
        else:
            self.check_record_listing(record)
        return record

    def check_record_listing(self, record: list[RecordEntry]) -> None:
        """Cheap structural checks (no decompression): every member is listed in RECORD
        with its uncompressed size, and every entry exists."""
        listed = {entry.path: entry for entry in record}
        unrecorded = {self.dist_info_path(name) for name in _UNRECORDED}
        for name, member in self.members.items():
            if member.is_dir or name in unrecorded:
                continue
            entry = listed.get(name)
            if entry is None:
                raise InvalidInput(f"{self.path}: member {name!r} is not listed in RECORD")
            if entry.size is not None and entry.size != member.size:
                raise InvalidInput(
                    f"{self.path}: RECORD says {name!r} has {entry.size} bytes, "
                    f"the archive holds {member.size}"
                )
        for path in listed:
            if path not in self.members and path not in unrecorded:
                raise InvalidInput(f"{self.path}: RECORD lists {path!r}, which is not in the wheel")

    def verify_record(self, record: list[RecordEntry]) -> None:
        """Inflate every member, checking its size and CRC, and its hash against RECORD."""
        self.check_record_listing(record)
        hashes = {entry.path: entry.hash for entry in record if entry.hash is not None}
        for name, member in self.members.items():
            expected = hashes.get(name)
            algorithm = (expected or "").partition("=")[0]
            if expected is not None and algorithm not in ("sha256", "sha384", "sha512"):
                raise InvalidInput(
                    f"{self.path}: RECORD entry {name!r} uses hash {algorithm!r}: "
                    "expected sha256, sha384 or sha512"
                )
            digest = hashlib.new(algorithm) if expected is not None else None
            for chunk in self.zip.iter_content(member):
                if digest is not None:
                    digest.update(chunk)
            if digest is not None and digest_to_record_hash(algorithm, digest.digest()) != expected:
                raise InvalidInput(
                    f"{self.path}: RECORD hash mismatch for {name!r}: expected {expected}"
                )
