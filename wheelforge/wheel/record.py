"""RECORD files: parse, hash, write."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
from dataclasses import dataclass

from wheelforge.errors import InvalidInput


@dataclass(frozen=True)
class RecordEntry:
    path: str
    hash: str | None  # "sha256=<urlsafe b64, unpadded>"
    size: int | None


def record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def digest_to_record_hash(algorithm: str, digest: bytes) -> str:
    return f"{algorithm}=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def parse_record(data: bytes, *, source: str, max_entries: int | None = None) -> list[RecordEntry]:
    """RECORD's entries; more than ``max_entries`` is an error (read lazily, so that a
    RECORD of millions of short lines is refused before it is held)."""
    reader = csv.reader(io.TextIOWrapper(io.BytesIO(data), encoding="utf-8", newline=""))
    entries = []
    try:
        for row in reader:
            if row:
                entries.append(_entry(row, reader.line_num, source))
            if max_entries is not None and len(entries) > max_entries:
                raise InvalidInput(
                    f"{source}: RECORD lists more than {max_entries} files, the members "
                    "of the wheel"
                )
    except UnicodeDecodeError:
        raise InvalidInput(f"{source}: RECORD is not UTF-8") from None
    except csv.Error as err:
        raise InvalidInput(f"{source}: RECORD line {reader.line_num}: not CSV ({err})") from None
    return entries


def _entry(row: list[str], lineno: int, source: str) -> RecordEntry:
    if len(row) != 3:
        raise InvalidInput(
            f"{source}: RECORD line {lineno}: expected 'path,hash,size', got {len(row)} fields"
        )
    path, hash_, size = row
    if hash_ and "=" not in hash_:
        raise InvalidInput(f"{source}: RECORD line {lineno}: expected hash 'algo=digest'")
    if size and not (size.isascii() and size.isdigit() and len(size) <= 20):
        raise InvalidInput(f"{source}: RECORD line {lineno}: expected a size in bytes")
    return RecordEntry(path, hash_ or None, int(size) if size else None)


def format_record(entries: list[RecordEntry]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for entry in entries:
        writer.writerow(
            [entry.path, entry.hash or "", "" if entry.size is None else str(entry.size)]
        )
    return out.getvalue().encode("utf-8")
