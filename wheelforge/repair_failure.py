"""Why ``auditwheel repair`` failed, on one line: auditwheel's decisive line, the library
and the wheel members that need it, and the fixes that cost no recompile."""

from __future__ import annotations

import posixpath
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from wheelforge.wheel.elf import DynamicInfo, dynamic_infos
from wheelforge.wheel.wheelfile import Wheel

_MISSING = re.compile(r'required library "(?P<library>[^"]+)" could not be located')
_PARSER_ERROR = re.compile(r"^\S+: error: (?P<message>.+)$")
_EXCEPTION = re.compile(r"^[\w.]*(?:Error|Exception): (?P<message>.+)$")
_ISA_MEMBER = re.compile(r"ELF file \w*\('(?P<member>[^']+)'\) requires '(?P<isa>[^']+)'")
_NOISE = re.compile(r"^(\[exit code -?\d+\]|Traceback |File \"|usage: |\$ |INFO:|DEBUG:|\^+$)")
_MAX_LINE = 300


@dataclass(frozen=True)
class RepairFailure:
    """A failed repair: what auditwheel said, what the wheel shows, what would fix it."""

    cause: str  # auditwheel's decisive line
    library: str | None = None  # the library that could not be located
    needed_by: tuple[str, ...] = ()  # the members that need it
    held_at: tuple[str, ...] = ()  # members of the wheel with the library's name
    details: tuple[str, ...] = ()
    fixes: tuple[str, ...] = ()
    log: str = ""

    def message(self) -> str:
        parts = [f"auditwheel repair failed: {self.cause.rstrip('.')}", *self.details]
        if self.fixes:
            parts.append("fix: " + "; or ".join(self.fixes))
        parts.append(f"see {self.log}")
        return "; ".join(parts)


def decisive_line(text: str) -> str:
    """The line of auditwheel's output that says why it failed: the library it could not
    locate, its own error (policy, ISA, symbols), a Python exception, or else the last
    line that is not a traceback frame or a log prefix."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    found = next((line for line in lines if _MISSING.search(line)), None)
    if found is None:
        found = next((m["message"] for line in lines if (m := _PARSER_ERROR.match(line))), None)
    if found is None:
        found = next(
            (m.group(0) for line in reversed(lines) if (m := _EXCEPTION.match(line))), None
        )
    if found is None:
        found = next((line for line in reversed(lines) if not _NOISE.match(line)), "no output")
    if found.startswith("ValueError: "):
        found = found.removeprefix("ValueError: ")
    return found if len(found) <= _MAX_LINE else found[: _MAX_LINE - 1] + "…"


def _members_named(wheel: Path, name: str) -> tuple[str, ...]:
    with Wheel(wheel) as opened:
        return tuple(m for m in opened.members if posixpath.basename(m) == name)


def _search_note(member: str, info: DynamicInfo, held: str) -> str:
    """Why ``member`` does not find ``held`` (a member of the same wheel)."""
    entries = info.runpath or info.rpath
    if not entries:
        return f"the wheel holds it at {held}, but {member} has no RUNPATH there"
    tag = "RUNPATH" if info.runpath else "RPATH"
    return (
        f"the wheel holds it at {held}, but {member}'s {tag} ({':'.join(entries)}) "
        "does not lead there"
    )


def diagnose(wheel: Path, output: str, log_path: Path) -> RepairFailure:
    """The failure of ``auditwheel repair`` on ``wheel`` from what it wrote (``output``)."""
    cause = decisive_line(output)
    missing = _MISSING.search(cause)
    if missing is not None:
        return _missing_library(wheel, cause, missing["library"], log_path)
    if "unsupported ISA extensions" in cause:
        members = dict.fromkeys(m["member"] for m in _ISA_MEMBER.finditer(output))
        isas = dict.fromkeys(m["isa"] for m in _ISA_MEMBER.finditer(output))
        details = (
            (f"{', '.join(members)} requires {', '.join(isas)} instructions",) if members else ()
        )
        fixes: tuple[str, ...] = (
            "repair-isa-check = false (wheelforge repair --no-isa-check) for a CPU-level "
            "variant, whose label carries the level",
            "build the plain wheel and the null variant without -march flags",
        )
        return RepairFailure(cause, details=details, fixes=fixes, log=str(log_path))
    if "too-recent versioned symbols" in cause:
        fixes = (
            "build in an older manylinux image (manylinux-image, built with cibuildwheel) "
            "or with an older toolchain",
        )
        return RepairFailure(cause, fixes=fixes, log=str(log_path))
    return RepairFailure(cause, log=str(log_path))


def _missing_library(wheel: Path, cause: str, library: str, log_path: Path) -> RepairFailure:
    with tempfile.TemporaryDirectory(prefix="wheelforge-diagnose-") as scratch:
        infos = dynamic_infos(wheel, Path(scratch))
    needed_by = tuple(m for m, info in infos.items() if library in info.needed)
    held_at = tuple(m for m in _members_named(wheel, library) if m not in needed_by)
    details: list[str] = []
    if needed_by:
        details.append(f"{', '.join(needed_by)} needs {library}")
    details += [_search_note(m, infos[m], held) for m in needed_by for held in held_at]
    folder = posixpath.dirname(held_at[0]) if held_at else None
    where = "{build}/DIR" if folder is None else f"{{wheel}}/{folder}" if folder else "{wheel}"
    fixes = [
        f'repair-exclude = ["{library}"] (wheelforge repair --exclude {library}) if a '
        "dependency provides it at run time",
        f'repair-library-path = ["{where}"] (--library-path) to graft '
        + ("the wheel's own copy" if held_at else "it from where the build put it"),
        "fix the install rules: install it beside "
        f"{needed_by[0] if needed_by else 'the library that needs it'} with RUNPATH $ORIGIN",
    ]
    return RepairFailure(
        cause,
        library=library,
        needed_by=needed_by,
        held_at=held_at,
        details=tuple(details),
        fixes=tuple(fixes),
        log=str(log_path),
    )
