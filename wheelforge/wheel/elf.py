"""ELF files inside wheels: find them, and read what the dynamic loader will see.

Members are extracted one at a time into a scratch directory (streaming: a 300 MB
CUDA library never sits in memory) and read with pyelftools, which seeks in the file.
"""

from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from elftools.common.exceptions import ELFError
from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile

from wheelforge.errors import InvalidInput
from wheelforge.wheel.wheelfile import Wheel

ELF_MAGIC = b"\x7fELF"
# A clang offload bundle (HIP, OpenMP offload): this magic, the number of bundles, then
# per bundle its offset, size, target-triple length and triple.
OFFLOAD_BUNDLE_MAGIC = b"__CLANG_OFFLOAD_BUNDLE__"
_BUNDLE_HEADER = struct.Struct("<4Q")  # bundles; first bundle's offset, size, triple length


@dataclass(frozen=True)
class DynamicInfo:
    """The dynamic section's loader-facing entries."""

    soname: str | None
    needed: tuple[str, ...]
    runpath: tuple[str, ...]
    rpath: tuple[str, ...]


def iter_elf_members(
    wheel: Wheel, scratch: Path | Callable[[], Path]
) -> Iterator[tuple[str, Path]]:
    """Each ELF member of ``wheel`` as (member name, extracted path under ``scratch``).

    Members are told by their first bytes, inflating little more; ``scratch`` may be a
    function that makes the directory, called at the first ELF member. The extracted file
    is removed when the iteration moves on to the next member.
    """
    directory = scratch if isinstance(scratch, Path) else None
    for name, member in wheel.members.items():
        if member.is_dir or member.size < len(ELF_MAGIC):
            continue
        if wheel.zip.head(member, len(ELF_MAGIC)) != ELF_MAGIC:
            continue
        if directory is None:
            assert not isinstance(scratch, Path)
            directory = scratch()
        target = directory / f"member-{os.getpid()}.elf"
        with target.open("wb") as out:
            for chunk in wheel.zip.iter_content(member):
                out.write(chunk)
        try:
            yield name, target
        finally:
            target.unlink(missing_ok=True)


def dynamic_infos(wheel: Path, scratch: Path) -> dict[str, DynamicInfo]:
    """Each loadable ELF member of the wheel at ``wheel`` and its dynamic entries
    (members that are not readable ELF files are left out)."""
    infos: dict[str, DynamicInfo] = {}
    with Wheel(wheel) as opened:
        for member, path in iter_elf_members(opened, scratch):
            try:
                infos[member] = dynamic_info(path, member=member)
            except InvalidInput:
                continue
    return infos


def _open(path: Path, member: str) -> tuple[ELFFile, BinaryIO]:
    stream = path.open("rb")
    try:
        return ELFFile(stream), stream
    except (ELFError, ValueError, OSError) as err:
        stream.close()
        raise InvalidInput(f"{member}: not a readable ELF file ({err})") from None


def dynamic_info(path: Path, *, member: str = "") -> DynamicInfo:
    """SONAME, DT_NEEDED, DT_RUNPATH and DT_RPATH of the ELF file at ``path``."""
    elf, stream = _open(path, member or str(path))
    soname: str | None = None
    needed: list[str] = []
    runpath: list[str] = []
    rpath: list[str] = []
    try:
        for section in elf.iter_sections():
            if not isinstance(section, DynamicSection):
                continue
            for tag in section.iter_tags():
                # pyelftools sets the string value as an attribute named after the tag.
                value = vars(tag)
                if tag.entry.d_tag == "DT_SONAME":
                    soname = value["soname"]
                elif tag.entry.d_tag == "DT_NEEDED":
                    needed.append(value["needed"])
                elif tag.entry.d_tag == "DT_RUNPATH":
                    runpath.extend(p for p in value["runpath"].split(":") if p)
                elif tag.entry.d_tag == "DT_RPATH":
                    rpath.extend(p for p in value["rpath"].split(":") if p)
    except (ELFError, ValueError) as err:
        raise InvalidInput(f"{member or path}: damaged dynamic section ({err})") from None
    finally:
        stream.close()
    return DynamicInfo(soname, tuple(needed), tuple(runpath), tuple(rpath))


def section_names(path: Path, *, member: str = "") -> tuple[str, ...]:
    """The names of the ELF file's sections, in file order."""
    elf, stream = _open(path, member or str(path))
    try:
        return tuple(section.name for section in elf.iter_sections())
    except (ELFError, ValueError) as err:
        raise InvalidInput(f"{member or path}: damaged section headers ({err})") from None
    finally:
        stream.close()


def machine(path: Path, *, member: str = "") -> str:
    """The ELF header's machine, as pyelftools names it (``EM_X86_64``, ``EM_CUDA``, …)."""
    elf, stream = _open(path, member or str(path))
    try:
        return str(elf["e_machine"])
    finally:
        stream.close()


def offload_bundles(path: Path, *, member: str = "") -> tuple[str, ...]:
    """The sections that hold a clang offload bundle (device code for HIP or OpenMP
    offload), found by its magic and a well-formed header; ``"?"`` for one outside any
    section. The file is mapped, not read: the search costs about a memchr over it."""
    elf, stream = _open(path, member or str(path))
    try:
        ranges = [
            (section["sh_offset"], section["sh_offset"] + section["sh_size"], section.name)
            for section in elf.iter_sections()
            if section["sh_type"] != "SHT_NOBITS"
        ]
        if os.fstat(stream.fileno()).st_size == 0:
            return ()
        with mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ) as data:
            found: list[str] = []
            start = data.find(OFFLOAD_BUNDLE_MAGIC)
            while start != -1:
                if _is_bundle_header(data, start + len(OFFLOAD_BUNDLE_MAGIC)):
                    name = next((n for lo, hi, n in ranges if lo <= start < hi), "?")
                    if name not in found:
                        found.append(name)
                start = data.find(OFFLOAD_BUNDLE_MAGIC, start + 1)
            return tuple(found)
    except (ELFError, ValueError) as err:
        raise InvalidInput(f"{member or path}: damaged section headers ({err})") from None
    finally:
        stream.close()


def _is_bundle_header(data: mmap.mmap, at: int) -> bool:
    """A real bundle header, not the magic string as it sits in a compiler's own code."""
    if at + _BUNDLE_HEADER.size > len(data):
        return False
    count, _offset, _size, triple_size = _BUNDLE_HEADER.unpack_from(data, at)
    if not 1 <= count <= 1 << 16 or not 1 <= triple_size <= 256:
        return False
    triple = data[at + _BUNDLE_HEADER.size : at + _BUNDLE_HEADER.size + triple_size]
    return len(triple) == triple_size and b"-" in triple and all(0x21 <= b < 0x7F for b in triple)
