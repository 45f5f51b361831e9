"""Paths made from input: a matrix's job ids, a manifest's file names, an index's URLs.

wheelforge runs on pull requests' matrices, often as root in CI, so a name that came
from a file never leaves the directory it is meant for: :func:`inside` joins a root and
names and refuses anything that is absolute, climbs out with ``..``, holds a separator
where one name is expected, holds NUL, or resolves (symlinks followed) outside the root.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from wheelforge.errors import InvalidInput

_SEPARATORS = frozenset({"/", os.sep} | ({os.altsep} if os.altsep else set()))


def inside(root: Path, *names: str, where: str) -> Path:
    """``root / names[0] / names[1] …``, each name one path component that stays inside
    ``root``; :class:`InvalidInput` naming ``where`` (file and key) otherwise."""
    path = root
    for name in names:
        _check_name(name, root, where)
        path = path / name
    return ensure_inside(path, root, where=where, name=names[-1] if names else str(path))


def ensure_inside(path: Path, root: Path, *, where: str, name: str | None = None) -> Path:
    """``path`` if it resolves (symlinks followed) to something strictly below ``root``."""
    base = root.resolve()
    resolved = path.resolve()
    if base not in resolved.parents:
        shown = name if name is not None else str(path)
        raise InvalidInput(
            f"{where}: {shown!r} resolves to {resolved}, outside {root}; "
            f"expected a name inside {root}"
        )
    return path


def remove_tree(path: Path, *, root: Path) -> None:
    """Remove the directory ``path``, which must lie inside ``root``. A symlink is
    unlinked, never followed; a missing path is fine."""
    if path.is_symlink():
        path.unlink()
        return
    if not path.exists():
        return
    ensure_inside(path, root, where=f"refusing to remove {path}")
    shutil.rmtree(path, ignore_errors=True)


def _check_name(name: str, root: Path, where: str) -> None:
    if not name:
        raise InvalidInput(f"{where}: empty; expected a file name")
    if "\0" in name:
        raise InvalidInput(f"{where}: {name!r} contains NUL; expected a plain file name")
    if name.startswith(tuple(_SEPARATORS)) or Path(name).is_absolute():
        raise InvalidInput(f"{where}: {name!r} is an absolute path; expected a name inside {root}")
    parts = [name]
    for separator in _SEPARATORS:
        parts = [piece for part in parts for piece in part.split(separator)]
    if ".." in parts:
        raise InvalidInput(f"{where}: {name!r} contains '..'; expected a name inside {root}")
    if any(sep in name for sep in _SEPARATORS):
        raise InvalidInput(f"{where}: {name!r} contains a path separator; expected one file name")
    if name == ".":
        raise InvalidInput(f"{where}: '.' is not a file name; expected a name inside {root}")
