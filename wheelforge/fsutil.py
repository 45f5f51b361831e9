"""Atomic file output: write beside the target, rename into place, never half-write."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from wheelforge.errors import InvalidInput

NAME_MAX = 255  # bytes in one path component, on every common file system


def make_dir(directory: Path) -> Path:
    """``directory`` (and its parents) made if missing; one line when that cannot be."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise InvalidInput(f"{directory}: exists and is not a directory") from None
    except NotADirectoryError:
        raise InvalidInput(
            f"{directory}: cannot be made (a file is in the way of a parent directory)"
        ) from None
    except OSError as err:
        raise InvalidInput(f"{directory}: cannot make the directory ({err.strerror})") from None
    return directory


def check_dir_option(directory: Path, option: str) -> Path:
    """``directory`` when it is a directory or could be made one (its nearest existing
    ancestor is a directory); else one line naming ``option``. Nothing is made."""
    for candidate in (directory, *directory.parents):
        if candidate.exists():
            if not candidate.is_dir():
                where = "" if candidate == directory else f" ({candidate} is in the way)"
                raise InvalidInput(f"{option} {directory}: cannot be a directory{where}")
            break
    return directory


@contextmanager
def atomic_path(target: Path, *, replace: bool = True) -> Iterator[Path]:
    """A fresh temporary path next to ``target``; renamed onto it if the block succeeds,
    removed if it raises. With ``replace=False`` an existing ``target`` is kept when it
    holds the same bytes and is otherwise an :class:`InvalidInput` (``--force`` replaces)."""
    make_dir(target.parent)
    if len(os.fsencode(target.name)) > NAME_MAX:
        raise InvalidInput(
            f"{target}: the file name is {len(os.fsencode(target.name))} bytes; a file "
            f"system holds at most {NAME_MAX}"
        )
    try:
        fd, name = tempfile.mkstemp(
            prefix=f".{target.name[:100]}.", suffix=".tmp", dir=target.parent
        )
    except OSError as err:
        raise InvalidInput(f"{target}: cannot write ({err.strerror})") from None
    os.close(fd)
    tmp = Path(name)
    tmp.unlink()
    try:
        yield tmp
        if replace:
            os.replace(tmp, target)
        else:
            _place_new(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _place_new(tmp: Path, target: Path) -> None:
    """Move ``tmp`` to ``target`` unless ``target`` exists: then keep it if it holds the
    same bytes (``tmp`` is removed), else refuse."""
    try:
        os.link(tmp, target)  # fails, atomically, if target exists
    except FileExistsError:
        pass
    except OSError:  # no hard links here: check, then rename
        if not os.path.lexists(target):
            os.replace(tmp, target)
            return
    else:
        tmp.unlink()
        return
    if target.is_symlink() or not target.is_file():
        raise InvalidInput(
            f"{target}: exists and is not a regular file; expected a new output path "
            "(remove it, or --force replaces it)"
        )
    if target.stat().st_size != tmp.stat().st_size or file_sha256(target) != file_sha256(tmp):
        raise InvalidInput(
            f"{target}: exists with different content; expected a new output or an "
            "identical one (--force replaces it)"
        )
    tmp.unlink()  # the same bytes are already there


def atomic_write(target: Path, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def file_sha256(path: Path) -> str:
    """The sha256 of a file's content, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
