"""Build logs: run a step with its output in the job's log, a heartbeat while it runs,
and, when it fails, the lines of the log that say why."""

from __future__ import annotations

import math
import os
import re
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

from wheelforge.errors import WheelforgeError


class BuildFailed(WheelforgeError):
    """A build, repair or tool step exited non-zero; the message quotes the log's first
    error and names the log."""


# The first line of an error, as compilers, linkers and build systems print it.
_ERROR_START = re.compile(
    r"CMake Error|(?<![\w-])(?:fatal )?error(?:\[\w+\])?:|\berror [A-Z]+\d+:|"
    r"undefined reference to|ld(?:\.\w+)?: cannot find|ERROR: |"
    r"^\w*(?:Error|Exception): "  # a Python exception, the last line of a traceback
)
_CMAKE_CONTINUATION = re.compile(r"^\s+\S")
_MAX_EXCERPT = 300

Heartbeat = Callable[[str], None]


def heartbeat_interval() -> float:
    """Seconds between heartbeats: ``$WHEELFORGE_HEARTBEAT`` (0.1 to 3600), else 30."""
    try:
        seconds = float(os.environ.get("WHEELFORGE_HEARTBEAT", "30"))
    except ValueError:
        return 30.0
    return min(3600.0, max(0.1, seconds)) if math.isfinite(seconds) else 30.0


def error_excerpt(text: str) -> str | None:
    """The first error of a build log on one line: the error line, and for CMake the
    indented message that follows it. ``None`` when no line looks like an error."""
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if not _ERROR_START.search(line):
            continue
        parts = [line.strip()]
        if line.lstrip().startswith("CMake Error"):
            for follow in lines[index + 1 : index + 6]:
                if not follow.strip():
                    if len(parts) > 1:
                        break
                    continue
                if not _CMAKE_CONTINUATION.match(follow):
                    break
                parts.append(follow.strip())
        excerpt = " ".join(parts)
        return excerpt if len(excerpt) <= _MAX_EXCERPT else excerpt[: _MAX_EXCERPT - 1] + "…"
    return None


def last_line(path: Path, *, limit: int = 100) -> str:
    """The last non-empty line of a file (its tail only is read)."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 4096))
            tail = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    for line in reversed(tail.splitlines()):
        if line.strip():
            line = line.strip()
            return line if len(line) <= limit else line[: limit - 1] + "…"
    return ""


def failure_message(what: str, returncode: int, log_path: Path, *, offset: int = 0) -> str:
    """``{what} failed (exit code N): {first error}; see {log}``, the error taken from
    what the step wrote (the log from ``offset`` on)."""
    try:
        with open(log_path, "rb") as f:
            f.seek(offset)
            excerpt = error_excerpt(f.read().decode("utf-8", "replace"))
    except OSError:
        excerpt = None
    cause = f": {excerpt}" if excerpt else ""
    return f"{what} failed (exit code {returncode}){cause}; see {log_path}"


def _elapsed(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def run_logged(
    command: Sequence[str],
    *,
    env: Mapping[str, str],
    log: IO[str],
    what: str,
    log_path: Path,
    cwd: Path | None = None,
    heartbeat: Heartbeat | None = None,
) -> None:
    """Run ``command`` with its output appended to the job's log; every
    :func:`heartbeat_interval` seconds, ``heartbeat`` gets the elapsed time and the
    log's last line."""
    log.write(f"$ {' '.join(command)}\n")
    log.flush()
    offset = log.tell()
    started = time.monotonic()
    process = subprocess.Popen(
        list(command), stdout=log, stderr=subprocess.STDOUT, env=dict(env), cwd=cwd
    )
    try:
        interval = heartbeat_interval()
        while True:
            try:
                returncode = process.wait(timeout=interval)
                break
            except subprocess.TimeoutExpired:
                if heartbeat is not None:
                    elapsed = _elapsed(time.monotonic() - started)
                    heartbeat(f"{what}: {elapsed} | {last_line(log_path)}")
    finally:
        if process.poll() is None:  # interrupted: take the step down with us
            process.kill()
            process.wait()
    log.write(f"[exit code {returncode}]\n")
    log.flush()
    if returncode != 0:
        raise BuildFailed(failure_message(what, returncode, log_path, offset=offset))
