"""``repair-library-path``: directories auditwheel also searches for libraries.

A matrix comes from pull requests, so an entry names a directory of the job's own:
``{build}`` (scikit-build-core's build directory), ``{source}`` (the job's isolated
source copy) or ``{wheel}`` (the ELF members of the unrepaired wheel, unpacked), then
an optional relative path without ``..``: ``{wheel}/lib``. Resolved (symlinks followed),
it must stay inside its root. ``wheelforge repair --library-path`` also takes a plain
directory: the person at the terminal chose it.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath

from wheelforge.errors import InvalidInput
from wheelforge.paths import ensure_inside, inside
from wheelforge.wheel.elf import iter_elf_members
from wheelforge.wheel.wheelfile import Wheel

ROOTS = ("build", "source", "wheel")
_ROOTED = re.compile(r"\{(?P<root>[^{}]*)\}(?P<rest>.*)", re.DOTALL)
_EXPECTED = (
    "expected {build}, {source} or {wheel}, optionally followed by /RELATIVE/PATH "
    "without '..' (e.g. {wheel}/lib)"
)


def parse_entry(entry: str) -> tuple[str, str]:
    """(root, relative path) of an entry such as ``{wheel}/lib``; :class:`InvalidInput`
    (the caller adds where it came from) otherwise."""
    match = _ROOTED.fullmatch(entry)
    if match is None or match["root"] not in ROOTS:
        raise InvalidInput(f"{entry!r}: {_EXPECTED}")
    rest = match["rest"]
    if rest and not rest.startswith("/"):
        raise InvalidInput(f"{entry!r}: expected '/' after {{{match['root']}}}; {_EXPECTED}")
    relative = rest.lstrip("/")
    if "\0" in relative or "\\" in relative:
        raise InvalidInput(f"{entry!r}: NUL or backslash in the path; {_EXPECTED}")
    if ".." in PurePosixPath(relative).parts:
        raise InvalidInput(f"{entry!r}: contains '..'; {_EXPECTED}")
    return match["root"], relative


def resolve(entries: Sequence[str], roots: Mapping[str, Path], *, where: str) -> list[Path]:
    """The directories ``entries`` name, each checked to stay inside its root (``roots``:
    placeholder -> directory). A plain path (no placeholder) is taken as it is."""
    resolved = []
    for entry in entries:
        if not entry.startswith("{"):
            path = Path(entry).resolve()
        else:
            try:
                root_name, relative = parse_entry(entry)
            except InvalidInput as err:
                raise InvalidInput(f"{where}: {err.message}") from None
            if root_name not in roots:
                available = ", ".join(f"{{{name}}}" for name in roots) or "none"
                raise InvalidInput(
                    f"{where}: {entry!r}: {{{root_name}}} is not available here "
                    f"(available: {available})"
                )
            root = roots[root_name]
            path = root.resolve()
            if relative:
                path = ensure_inside(root / relative, root, where=f"{where}: {entry!r}")
                path = path.resolve()
        if not path.is_dir():
            raise InvalidInput(f"{where}: {entry!r}: {path} is not a directory")
        resolved.append(path)
    return resolved


def uses_build_tree(entries: Sequence[str]) -> bool:
    """Whether an entry names the compiling job's ``{build}`` or ``{source}`` directory."""
    return any(entry.startswith(("{build}", "{source}")) for entry in entries)


def uses_wheel(entries: Sequence[str]) -> bool:
    return any(entry.startswith("{wheel}") for entry in entries)


def unpack_libraries(wheel: Path, dest: Path) -> Path:
    """The ELF members of ``wheel`` under ``dest`` at their paths in the wheel (other
    members are of no use to a library search); returns ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    scratch = dest.with_name(f"{dest.name}.scratch")  # beside: no member's path can meet it
    scratch.mkdir(exist_ok=True)
    with Wheel(wheel) as opened:
        for member, path in iter_elf_members(opened, scratch):
            parts = member.split("/")
            target = dest.joinpath(*parts[:-1])
            inside(dest, *parts, where=f"{wheel.name}: member {member!r}")
            target.mkdir(parents=True, exist_ok=True)
            shutil.move(path, target / parts[-1])
    scratch.rmdir()
    return dest
