"""Compare two wheels (or two dist directories) member by member, and say why they differ.

Used to measure reproducibility: two clean builds of one job should give byte-equal
wheels; where they do not, the report names the members that differ, how (sizes; for
ELF files the sections that differ) and, where it recognises one, the cause: nvcc's
temporary file names, absolute build or temporary paths, embedded dates and times,
zip and gzip timestamps, and a GNU build-id that only follows from those.

Members are compared through their CRC, size and stored bytes first; only members that
differ are decompressed, each into a scratch file, and ELF sections are hashed as
streams from there (a 300 MB CUDA library never sits in memory).
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from wheelforge.errors import InvalidInput
from wheelforge.inspection import directory_wheels
from wheelforge.wheel.archive import METHOD_NAMES, Member
from wheelforge.wheel.elf import ELF_MAGIC
from wheelforge.wheel.wheelfile import Wheel

_CHUNK = 1 << 20
_OVERLAP = 4096  # a pattern match longer than this may be missed at a chunk boundary
_TEXT_LIMIT = 1 << 20  # members up to this size that decode as UTF-8 get a line diff
_TEXT_LINES = 12  # lines of line diff kept per member
_EVIDENCE = 64  # matches kept per pattern and side
_GZIP_MAGIC = b"\x1f\x8b\x08"
_BUILD_ID = ".note.gnu.build-id"

# What a cause is, and what to do about it. Keys are the ``kind`` of a Cause.
HINTS: dict[str, str] = {
    "temp-name": "nvcc compiles through temporary files named tmpxft_<pid>_<counter>, and "
    "the name lands in the host object's symbol table (STT_FILE) and debug info: nvcc "
    "-objtemp names them after the object file instead (wheelforge passes it in CUDAFLAGS; "
    "a build that ignores CUDAFLAGS needs it in its own flags), or strip the library",
    "build-path": "the job's build directory (WORK/jobs/ID/...) is embedded: wheelforge maps "
    "it to /wheelforge through CFLAGS, CXXFLAGS, HIPFLAGS and CUDAFLAGS; a build that "
    "ignores these variables needs -ffile-prefix-map=DIR=. in its own flags (for nvcc "
    "through -Xcompiler)",
    "temp-path": "a temporary path (/tmp/... or $TMPDIR) is embedded: a compiler or build "
    "step wrote its scratch file name into the output",
    "sccache-temp": "sccache runs nvcc's steps in a temporary directory of its own "
    "(sccache_nvcc...), whose name lands in the debug info of unstripped CUDA objects: strip "
    'the library, or build that variant with compiler-cache = "ccache" or "none"',
    "absolute-path": "an absolute path differs between the builds: map it with "
    "-ffile-prefix-map=DIR=. or build in the same directory",
    "timestamp": "a date or time is embedded (__DATE__/__TIME__, a generated header, a "
    "gzip or zip date): honour SOURCE_DATE_EPOCH, which wheelforge sets for every build "
    "unless the matrix says source-date-epoch = false",
    "build-id": "the GNU build-id is a hash of the linked output: it changes with any other "
    "difference in the file and needs no fix of its own",
    "stripped": "only the GNU build-id differs: the linker computed it before the library "
    "was stripped, over what strip then removed (debug info, the size of the symbol "
    "table), so that differed (a path, nvcc's temporary names): build without stripping "
    "and diff again to see it",
    "record": "RECORD holds every member's hash: it differs because the members above do",
}

_CONSEQUENCES = ("stripped", "build-id", "record")

# Each pattern starts with a literal byte, which re finds quickly (a 500 MB section scans
# in seconds); (kind, pattern, bytes before the match that belong to it, the full form
# those bytes and the match must have).
_MONTH = rb"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
_PATH_CHAR = rb"[\w.+@=-]"
_PATTERNS: tuple[tuple[str, re.Pattern[bytes], int, re.Pattern[bytes] | None], ...] = (
    ("temp-name", re.compile(rb"tmpxft_[0-9a-f]{8}_[0-9a-f]{8}(?:-[0-9]+)?"), 0, None),
    ("path", re.compile(rb"/" + _PATH_CHAR + rb"+(?:/" + _PATH_CHAR + rb"+)+/?"), 0, None),
    (  # __DATE__: "Dec  3 2026"
        "timestamp",
        re.compile(rb" [ 0-3][0-9] [12][0-9]{3}(?![0-9])"),
        3,
        re.compile(_MONTH + rb" [ 0-3][0-9] [12][0-9]{3}"),
    ),
    (  # __TIME__: "10:40:00"
        "timestamp",
        re.compile(rb":[0-5][0-9]:[0-6][0-9](?![0-9])"),
        2,
        re.compile(rb"[0-2][0-9]:[0-5][0-9]:[0-6][0-9]"),
    ),
    (  # ISO 8601: "2026-12-03T10:40"
        "timestamp",
        re.compile(rb"-[01][0-9]-[0-3][0-9][T ][0-2][0-9]:[0-5][0-9]"),
        4,
        re.compile(rb"[12][0-9]{3}-[01][0-9]-[0-3][0-9][T ][0-2][0-9]:[0-5][0-9]"),
    ),
)
_KINDS = ("temp-name", "path", "timestamp")
_PATH_BEFORE = re.compile(_PATH_CHAR)
_JOB_DIR = re.compile(r"/jobs/[^/]+/(?:src|build|tmp)(?:/|$)")


@dataclass(frozen=True)
class Cause:
    """A recognised reason for a difference, with one example from each side."""

    kind: str  # a key of HINTS
    a: str  # an example from the first wheel ("" when there is none)
    b: str

    @property
    def hint(self) -> str:
        return HINTS[self.kind]

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "a": self.a, "b": self.b, "hint": self.hint}


@dataclass(frozen=True)
class SectionDiff:
    """An ELF section (or header table, in parentheses) whose bytes differ."""

    name: str
    size_a: int | None  # None: the section is only in the other file
    size_b: int | None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "size_a": self.size_a, "size_b": self.size_b}


@dataclass(frozen=True)
class MemberDiff:
    name: str
    status: str  # "changed" | "only-a" | "only-b"
    kind: str  # "elf" | "text" | "gzip" | "binary"
    size_a: int | None
    size_b: int | None
    sections: tuple[SectionDiff, ...] = ()  # kind "elf"
    lines: tuple[str, ...] = ()  # kind "text": a unified diff, cut short
    first_difference: int | None = None  # kind "binary"/"gzip": offset of the first byte
    causes: tuple[Cause, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "kind": self.kind,
            "size_a": self.size_a,
            "size_b": self.size_b,
            "sections": [s.to_json() for s in self.sections],
            "lines": list(self.lines),
            "first_difference": self.first_difference,
            "causes": [c.to_json() for c in self.causes],
        }


@dataclass(frozen=True)
class WheelDiff:
    """Two wheels: byte-identical, or the members and archive details that differ."""

    a: Path
    b: Path
    identical: bool
    members: tuple[MemberDiff, ...] = ()
    archive: tuple[str, ...] = ()  # zip-level differences (dates, order, methods, modes)
    archive_causes: tuple[Cause, ...] = ()

    @property
    def causes(self) -> tuple[Cause, ...]:
        """Every cause, each kind once (the first example found); the consequences of
        other differences (build-id, RECORD) last."""
        seen: dict[str, Cause] = {}
        for cause in (*self.archive_causes, *(c for m in self.members for c in m.causes)):
            seen.setdefault(cause.kind, cause)
        return tuple(sorted(seen.values(), key=lambda c: c.kind in _CONSEQUENCES))

    def to_json(self) -> dict[str, Any]:
        return {
            "a": str(self.a),
            "b": str(self.b),
            "identical": self.identical,
            "members": [m.to_json() for m in self.members],
            "archive": list(self.archive),
            "causes": [c.to_json() for c in self.causes],
        }


@dataclass(frozen=True)
class DiffReport:
    pairs: tuple[WheelDiff, ...]
    only_a: tuple[Path, ...] = ()  # wheels of the first directory with no partner
    only_b: tuple[Path, ...] = ()

    @property
    def identical(self) -> bool:
        return not self.only_a and not self.only_b and all(p.identical for p in self.pairs)

    def to_json(self) -> dict[str, Any]:
        return {
            "identical": self.identical,
            "pairs": [p.to_json() for p in self.pairs],
            "only_a": [str(p) for p in self.only_a],
            "only_b": [str(p) for p in self.only_b],
        }


def diff_paths(a: Path, b: Path) -> DiffReport:
    """Compare two wheels, or two directories whose wheels are paired by filename."""
    for path in (a, b):
        if not path.exists():
            raise InvalidInput(f"{path}: no such file or directory")
    if a.is_dir() != b.is_dir():
        raise InvalidInput(f"{a} and {b}: expected two wheels or two directories, got one of each")
    if not a.is_dir():
        return DiffReport((diff_wheels(a, b),))
    wheels_a = {p.name: p for p in directory_wheels(a)}
    wheels_b = {p.name: p for p in directory_wheels(b)}
    if not wheels_a and not wheels_b:
        raise InvalidInput(f"{a} and {b}: no .whl files in either directory")
    pairs = tuple(
        diff_wheels(wheels_a[name], wheels_b[name]) for name in sorted(wheels_a.keys() & wheels_b)
    )
    return DiffReport(
        pairs,
        only_a=tuple(wheels_a[n] for n in sorted(wheels_a.keys() - wheels_b)),
        only_b=tuple(wheels_b[n] for n in sorted(wheels_b.keys() - wheels_a)),
    )


def diff_wheels(a: Path, b: Path) -> WheelDiff:
    """Compare two wheels (their filenames need not match)."""
    with Wheel(a) as wa, Wheel(b) as wb:  # both must be readable wheels, even if equal
        if _same_file_bytes(a, b):
            return WheelDiff(a, b, identical=True)
        with tempfile.TemporaryDirectory(prefix="wheelforge-diff-") as scratch:
            members = _diff_members(wa, wb, Path(scratch))
        archive, archive_causes = _diff_archive(wa, wb)
    if not members and not archive:
        archive = ("the archives' bytes differ outside the members (zip headers or comment)",)
    return WheelDiff(a, b, False, members, archive, archive_causes)


def _same_file_bytes(a: Path, b: Path) -> bool:
    if a.stat().st_size != b.stat().st_size:
        return False
    with a.open("rb") as fa, b.open("rb") as fb:
        while True:
            chunk = fa.read(_CHUNK)
            if chunk != fb.read(_CHUNK):
                return False
            if not chunk:
                return True


def _diff_archive(wa: Wheel, wb: Wheel) -> tuple[tuple[str, ...], tuple[Cause, ...]]:
    """Zip-level differences of the members both wheels hold."""
    common = [n for n in wa.members if n in wb.members]
    notes: list[str] = []
    causes: list[Cause] = []
    dated = [
        n
        for n in common
        if (wa.members[n].dos_date, wa.members[n].dos_time)
        != (wb.members[n].dos_date, wb.members[n].dos_time)
    ]
    if dated:
        notes.append(f"zip dates differ for {len(dated)} member(s), e.g. {dated[0]}")
        first_a, first_b = wa.members[dated[0]], wb.members[dated[0]]
        causes.append(Cause("timestamp", _dos_text(first_a), _dos_text(first_b)))
    methods = [n for n in common if wa.members[n].method != wb.members[n].method]
    if methods:
        m_a, m_b = wa.members[methods[0]].method, wb.members[methods[0]].method
        notes.append(
            f"compression differs for {len(methods)} member(s), e.g. {methods[0]} "
            f"({METHOD_NAMES.get(m_a, m_a)} vs {METHOD_NAMES.get(m_b, m_b)})"
        )
    modes = [n for n in common if wa.members[n].external_attr != wb.members[n].external_attr]
    if modes:
        notes.append(f"file modes differ for {len(modes)} member(s), e.g. {modes[0]}")
    if [n for n in wb.members if n in wa.members] != common:
        notes.append("the members are stored in a different order")
    return tuple(notes), tuple(causes)


def _dos_text(member: Member) -> str:
    d, t = member.dos_date, member.dos_time
    return (
        f"{(d >> 9) + 1980:04d}-{(d >> 5) & 15:02d}-{d & 31:02d} "
        f"{t >> 11:02d}:{(t >> 5) & 63:02d}:{(t & 31) * 2:02d}"
    )


def _diff_members(wa: Wheel, wb: Wheel, scratch: Path) -> tuple[MemberDiff, ...]:
    names = [n for n in wa.members if not n.endswith("/")]
    names += [n for n in wb.members if n not in wa.members and not n.endswith("/")]
    record = {wa.dist_info_path("RECORD"), wb.dist_info_path("RECORD")}
    changed: list[MemberDiff] = []
    for name in sorted(names):
        ma, mb = wa.members.get(name), wb.members.get(name)
        if ma is None or mb is None:
            changed.append(
                MemberDiff(
                    name,
                    "only-b" if ma is None else "only-a",
                    "binary",
                    ma.size if ma else None,
                    mb.size if mb else None,
                )
            )
            continue
        if _same_content(wa, ma, wb, mb):
            continue
        path_a, path_b = scratch / "a", scratch / "b"
        try:
            _extract(wa, ma, path_a)
            _extract(wb, mb, path_b)
            diff = _diff_files(name, path_a, path_b)
        finally:
            path_a.unlink(missing_ok=True)
            path_b.unlink(missing_ok=True)
        if name in record and not diff.causes:
            diff = dataclasses.replace(diff, causes=(Cause("record", "", ""),))
        changed.append(diff)
    return tuple(changed)


def _same_content(wa: Wheel, ma: Member, wb: Wheel, mb: Member) -> bool:
    if ma.size != mb.size or ma.crc != mb.crc:
        return False
    if (
        ma.method == mb.method
        and ma.compressed_size == mb.compressed_size
        and _digest(wa.zip.iter_raw(ma)) == _digest(wb.zip.iter_raw(mb))
    ):
        return True  # the same stored bytes: no need to decompress
    return _digest(wa.zip.iter_content(ma)) == _digest(wb.zip.iter_content(mb))


def _digest(chunks: Iterable[bytes]) -> bytes:
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
    return digest.digest()


def _extract(wheel: Wheel, member: Member, target: Path) -> None:
    with target.open("wb") as out:
        for chunk in wheel.zip.iter_content(member):
            out.write(chunk)


def _diff_files(name: str, a: Path, b: Path) -> MemberDiff:
    size_a, size_b = a.stat().st_size, b.stat().st_size
    with a.open("rb") as fa, b.open("rb") as fb:
        head_a, head_b = fa.read(16), fb.read(16)
        if head_a.startswith(ELF_MAGIC) and head_b.startswith(ELF_MAGIC):
            sections = _diff_elf(fa, fb)
            if sections is not None:
                return MemberDiff(
                    name,
                    "changed",
                    "elf",
                    size_a,
                    size_b,
                    sections=tuple(s for s, _, _ in sections),
                    # Bytes between sections (padding) are in no section.
                    first_difference=None if sections else _first_difference(fa, fb),
                    causes=_elf_causes(fa, fb, sections),
                )
        first = _first_difference(fa, fb)
        causes = _causes(*_scan_pairs(fa, fb, [((0, size_a), (0, size_b))]))
        if head_a.startswith(_GZIP_MAGIC) and head_b.startswith(_GZIP_MAGIC):
            if head_a[4:8] != head_b[4:8]:  # MTIME of the gzip header
                mtime_a = int.from_bytes(head_a[4:8], "little")
                mtime_b = int.from_bytes(head_b[4:8], "little")
                gzip_date = Cause("timestamp", f"gzip mtime {mtime_a}", f"gzip mtime {mtime_b}")
                causes = (gzip_date, *(c for c in causes if c.kind != "timestamp"))
            return MemberDiff(
                name, "changed", "gzip", size_a, size_b, first_difference=first, causes=causes
            )
        lines = _text_diff(fa, fb, size_a, size_b)
        if lines is not None:
            return MemberDiff(name, "changed", "text", size_a, size_b, lines=lines, causes=causes)
        return MemberDiff(
            name, "changed", "binary", size_a, size_b, first_difference=first, causes=causes
        )


def _first_difference(fa: BinaryIO, fb: BinaryIO) -> int:
    fa.seek(0)
    fb.seek(0)
    offset = 0
    while True:
        chunk_a, chunk_b = fa.read(_CHUNK), fb.read(_CHUNK)
        if chunk_a != chunk_b:
            for i, (x, y) in enumerate(zip(chunk_a, chunk_b, strict=False)):
                if x != y:
                    return offset + i
            return offset + min(len(chunk_a), len(chunk_b))
        if not chunk_a:
            return offset
        offset += len(chunk_a)


def _text_diff(fa: BinaryIO, fb: BinaryIO, size_a: int, size_b: int) -> tuple[str, ...] | None:
    if max(size_a, size_b) > _TEXT_LIMIT:
        return None
    fa.seek(0)
    fb.seek(0)
    try:
        text_a, text_b = fa.read().decode(), fb.read().decode()
    except UnicodeDecodeError:
        return None
    if "\x00" in text_a or "\x00" in text_b:
        return None
    diff = difflib.unified_diff(
        text_a.splitlines(), text_b.splitlines(), "a", "b", n=0, lineterm=""
    )
    lines = [line for line in diff if not line.startswith(("---", "+++"))]
    if len(lines) > _TEXT_LINES:
        lines = [*lines[:_TEXT_LINES], f"... {len(lines) - _TEXT_LINES} more line(s)"]
    return tuple(lines)


# --- ELF --------------------------------------------------------------------------

_Region = tuple[int, int]  # (offset, size) in the file
_SectionDiffWithRegions = tuple[SectionDiff, _Region | None, _Region | None]


def _elf_parts(stream: BinaryIO) -> dict[str, _Region] | None:
    """Every section's (offset, size), keyed by name (``name#2`` for a repeated name),
    and the header tables as ``(ELF header)``, ``(program headers)``, ``(section headers)``.
    None when pyelftools cannot read the file."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile

    try:
        elf = ELFFile(stream)
        header = elf.header
        parts: dict[str, _Region] = {
            "(ELF header)": (0, int(header["e_ehsize"])),
            "(program headers)": (
                int(header["e_phoff"]),
                int(header["e_phnum"]) * int(header["e_phentsize"]),
            ),
            "(section headers)": (
                int(header["e_shoff"]),
                int(header["e_shnum"]) * int(header["e_shentsize"]),
            ),
        }
        for section in elf.iter_sections():
            key = section.name or "(unnamed)"
            count = 1
            while key in parts:
                count += 1
                key = f"{section.name}#{count}"
            nobits = section["sh_type"] == "SHT_NOBITS"
            parts[key] = (int(section["sh_offset"]), 0 if nobits else int(section["sh_size"]))
    except (ELFError, ValueError, KeyError, OSError):
        return None
    return parts


def _region_digest(stream: BinaryIO, region: _Region) -> bytes:
    offset, size = region
    digest = hashlib.sha256()
    stream.seek(offset)
    while size > 0:
        chunk = stream.read(min(_CHUNK, size))
        if not chunk:
            break
        digest.update(chunk)
        size -= len(chunk)
    digest.update(size.to_bytes(8, "little", signed=True))  # a cut-short section differs
    return digest.digest()


def _diff_elf(fa: BinaryIO, fb: BinaryIO) -> list[_SectionDiffWithRegions] | None:
    parts_a, parts_b = _elf_parts(fa), _elf_parts(fb)
    if parts_a is None or parts_b is None:
        return None
    result: list[_SectionDiffWithRegions] = []
    names = [*parts_a, *(n for n in parts_b if n not in parts_a)]
    for name in names:
        ra, rb = parts_a.get(name), parts_b.get(name)
        if (
            ra is not None
            and rb is not None
            and ra[1] == rb[1]
            and _region_digest(fa, ra) == _region_digest(fb, rb)
        ):
            continue
        result.append((SectionDiff(name, ra[1] if ra else None, rb[1] if rb else None), ra, rb))
    return result


def _elf_causes(
    fa: BinaryIO, fb: BinaryIO, sections: list[_SectionDiffWithRegions]
) -> tuple[Cause, ...]:
    content = [s for s in sections if not s[0].name.startswith("(")]
    causes = _causes(*_scan_pairs(fa, fb, [(ra, rb) for _, ra, rb in content]))
    if [s.name for s, _, _ in content] == [_BUILD_ID]:
        causes += (Cause("stripped", "", ""),)
    elif any(s.name == _BUILD_ID for s, _, _ in content):
        causes += (Cause("build-id", "", ""),)
    return causes


# --- causes -----------------------------------------------------------------------


_Found = dict[str, set[bytes]]


def _scan_pairs(
    fa: BinaryIO, fb: BinaryIO, pairs: list[tuple[_Region | None, _Region | None]]
) -> tuple[_Found, _Found]:
    """The pattern matches (at most _EVIDENCE a kind) in each side's regions. Where both
    sides of a pair have one size, only the chunks that differ are scanned (with
    _OVERLAP bytes of context either side); else each side is scanned whole."""
    found_a: _Found = {kind: set() for kind in _KINDS}
    found_b: _Found = {kind: set() for kind in _KINDS}
    for ra, rb in pairs:
        if ra is not None and rb is not None and ra[1] == rb[1]:
            for offset in range(0, ra[1], _CHUNK):
                length = min(_CHUNK, ra[1] - offset)
                if _read(fa, ra[0] + offset, length) == _read(fb, rb[0] + offset, length):
                    continue
                lo = max(0, offset - _OVERLAP)
                hi = min(ra[1], offset + length + _OVERLAP)
                _match(_read(fa, ra[0] + lo, hi - lo), found_a)
                _match(_read(fb, rb[0] + lo, hi - lo), found_b)
            continue
        for region, found, stream in ((ra, found_a, fa), (rb, found_b, fb)):
            if region is None:
                continue
            for offset in range(0, region[1], _CHUNK):
                lo = max(0, offset - _OVERLAP)
                hi = min(region[1], offset + _CHUNK)
                _match(_read(stream, region[0] + lo, hi - lo), found)
    return found_a, found_b


def _read(stream: BinaryIO, offset: int, size: int) -> bytes:
    stream.seek(offset)
    return stream.read(size)


def _match(window: bytes, found: _Found) -> None:
    for kind, pattern, back, full in _PATTERNS:
        matches = found[kind]
        for match in pattern.finditer(window):
            if len(matches) >= _EVIDENCE:
                break
            start = match.start() - back
            if start < 0:
                continue
            text = window[start : match.end()]
            if full is not None and not full.fullmatch(text):
                continue
            if kind == "path" and start > 0 and _PATH_BEFORE.match(window, start - 1):
                continue  # a relative path's tail, not an absolute path
            matches.add(text)


def _path_kind(path: str) -> str:
    if _JOB_DIR.search(path) or "/.wheelforge/" in path:
        return "build-path"
    if "/sccache_nvcc" in path:
        return "sccache-temp"
    if path.startswith(("/tmp/", "/var/tmp/")) or "/tmp/" in path:
        return "temp-path"
    return "absolute-path"


def _causes(found_a: dict[str, set[bytes]], found_b: dict[str, set[bytes]]) -> tuple[Cause, ...]:
    """The causes whose evidence differs between the sides."""
    causes: list[Cause] = []
    for kind in ("temp-name", "timestamp"):
        only_a, only_b = (
            sorted(found_a[kind] - found_b[kind]),
            sorted(found_b[kind] - found_a[kind]),
        )
        if only_a or only_b:
            causes.append(Cause(kind, _text(only_a), _text(only_b)))
    paths_a = {p.decode(errors="replace") for p in found_a["path"] - found_b["path"]}
    paths_b = {p.decode(errors="replace") for p in found_b["path"] - found_a["path"]}
    for kind in ("build-path", "sccache-temp", "temp-path", "absolute-path"):
        side_a = sorted(p for p in paths_a if _path_kind(p) == kind)
        side_b = sorted(p for p in paths_b if _path_kind(p) == kind)
        if side_a or side_b:
            causes.append(Cause(kind, side_a[0] if side_a else "", side_b[0] if side_b else ""))
    return tuple(causes)


def _text(values: list[bytes]) -> str:
    return values[0].decode(errors="replace") if values else ""
