"""ELF files inside wheels: find them, and read what the dynamic loader will see.

Members are extracted one at a time into a scratch directory (streaming: a 300 MB
CUDA library never sits in memory) and read with pyelftools, which seeks in the file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from elftools.common.exceptions import ELFError
from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile

from wheelforge.errors import InvalidInput
from wheelforge.wheel.wheelfile import Wheel

ELF_MAGIC = b"\x7fELF"


@dataclass(frozen=True)
class DynamicInfo:
    """The dynamic section's loader-facing entries."""

    soname: str | None
    needed: tuple[str, ...]
    runpath: tuple[str, ...]
    rpath: tuple[str, ...]


def iter_elf_members(wheel: Wheel, scratch: Path) -> Iterator[tuple[str, Path]]:
    """Each ELF member of ``wheel`` as (member name, extracted path under ``scratch``).

    The extracted file is removed when the iteration moves on to the next member.
    """
    for name, member in wheel.members.items():
        if member.is_dir or member.size < len(ELF_MAGIC):
            continue
        chunks = wheel.zip.iter_content(member)
        first = next(chunks, b"")
        if not first.startswith(ELF_MAGIC):
            continue
        target = scratch / f"member-{os.getpid()}.elf"
        with target.open("wb") as out:
            out.write(first)
            for chunk in chunks:
                out.write(chunk)
        try:
            yield name, target
        finally:
            target.unlink(missing_ok=True)


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
