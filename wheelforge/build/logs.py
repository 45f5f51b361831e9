"""Build logs: run a step with its output in the job's log, a heartbeat with the build
step the log shows while it runs, and, when it fails, the lines of the log that say why.
An interrupt stops every running step with all the processes it started."""

from __future__ import annotations

import math
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any

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


# A line that says where a build is: ninja/meson "[12/193] Building C object ...", make
# "[ 45%] Building ...", CMake's "-- ..." status lines, scikit-build-core's "*** ...",
# build's "* Building wheel...", cargo's "Compiling foo v1.0".
_STEP = re.compile(
    r"\[\s*\d+/\d+\]\s+\S|\[\s*\d+%\]\s+\S|-- \S|\*\*\* \S|\* \S|"
    r"Successfully built \S|\s*(?:Compiling|Building) \S+ v\d"
)
_STEP_WIDTH = 100
_FOLLOW_BYTES = 64 * 1024  # of a log's new output, at most its last 64 KiB is read


def _shorten(line: str) -> str:
    return line if len(line) <= _STEP_WIDTH else line[: _STEP_WIDTH - 1] + "…"


def build_step(line: str) -> str | None:
    """``line`` (shortened) when it says which step a build is at, else ``None``."""
    return _shorten(line.strip()) if _STEP.match(line) else None


class LogSteps:
    """Follows a growing log from ``offset``: :meth:`latest` is the newest build step it
    gained (its last line while no step has been seen), ``None`` when nothing changed.
    Only the tail of what was written since the last call is read."""

    def __init__(self, path: Path, offset: int = 0) -> None:
        self.path = path
        self.offset = offset
        self.partial = ""  # a line not yet ended
        self.shown: str | None = None
        self.seen_step = False

    def _new_lines(self) -> list[str]:
        try:
            with open(self.path, "rb") as f:
                size = f.seek(0, os.SEEK_END)
                start = max(self.offset, size - _FOLLOW_BYTES)
                f.seek(start)
                data = f.read(size - start).decode("utf-8", "replace")
        except OSError:
            return []
        if start > self.offset:  # skipped output: the first line read is a fragment
            self.partial, data = "", data.partition("\n")[2]
        self.offset = size
        lines = re.split(r"[\r\n]", self.partial + data)
        self.partial = lines.pop()[-_FOLLOW_BYTES:]
        return [line for line in lines if line.strip()]

    def latest(self) -> str | None:
        lines = self._new_lines()
        steps = [step for step in map(build_step, lines) if step is not None]
        if steps:
            self.seen_step = True
            latest: str | None = steps[-1]
        else:
            latest = _shorten(lines[-1].strip()) if lines and not self.seen_step else None
        if latest is None or latest == self.shown:
            return None
        self.shown = latest
        return latest


class StepInterrupted(KeyboardInterrupt):
    """A step was stopped, or refused to start, because the run was interrupted."""


# The steps running in this process (their process groups), for an interrupt to stop.
_running: set[subprocess.Popen[bytes]] = set()
_running_lock = threading.Lock()
_interrupted = threading.Event()
_GRACE_SECONDS = 5.0  # between SIGTERM and SIGKILL


@contextmanager
def interruptible_steps() -> Iterator[Callable[[], None]]:
    """Within the block, ``interrupt()`` terminates every running step (its whole
    process group: no compiler is left behind) and makes later steps raise
    :class:`StepInterrupted` instead of starting."""
    _interrupted.clear()
    try:
        yield _interrupt
    finally:
        _interrupted.clear()


def _interrupt() -> None:
    with _running_lock:
        _interrupted.set()
        running = list(_running)
    for process in running:
        signal_group(process, signal.SIGTERM)


def signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    """Send ``signum`` to a step's whole process group (nothing when it is gone)."""
    with suppress(ProcessLookupError, PermissionError):  # the group is gone already
        os.killpg(process.pid, signum)


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """Terminate a step's process group: SIGTERM, SIGKILL for what outlives the grace
    period; return once the group is gone (or only zombies nobody reaps are left)."""
    signal_group(process, signal.SIGTERM)
    if not _group_ends(process, _GRACE_SECONDS):
        signal_group(process, signal.SIGKILL)
        _group_ends(process, 2.0)
    process.wait()


def _group_ends(process: subprocess.Popen[bytes], seconds: float) -> bool:
    """Whether the step's process group is empty within ``seconds`` (its leader is
    reaped meanwhile; the others are reaped by whoever adopts them)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        process.poll()
        try:
            os.killpg(process.pid, 0)
        except (ProcessLookupError, PermissionError):
            return True
        time.sleep(0.02)
    return False


@contextmanager
def step(
    command: Sequence[str], *, log: IO[str], what: str, **popen: Any
) -> Iterator[subprocess.Popen[bytes]]:
    """``command`` running for the block, in its own process group (session), its output
    in ``log``. An interrupt of the run (:func:`interruptible_steps`) terminates it with
    all it started, and so does leaving the block by an exception (a timeout, Ctrl-C).
    Raises :class:`StepInterrupted` when the run was interrupted before the step started,
    or while it ran and it failed (a step that succeeded anyway stands)."""
    with _running_lock:
        if _interrupted.is_set():
            raise StepInterrupted(f"{what}: not started, the run was interrupted")
        process = subprocess.Popen(
            list(command), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            **popen,
        )  # fmt: skip
        _running.add(process)
    try:
        yield process
    finally:
        with _running_lock:
            _running.discard(process)
        if process.poll() is None or _interrupted.is_set():
            _stop_group(process)
    if process.returncode != 0 and _interrupted.is_set():
        log.write("[interrupted]\n")
        log.flush()
        raise StepInterrupted(f"{what}: interrupted")


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
    """Run ``command`` with its output appended to the job's log. At most every
    :func:`heartbeat_interval` seconds, and only when it changed, ``heartbeat`` gets the
    elapsed time and the build step the log shows (:class:`LogSteps`)."""
    log.write(f"$ {' '.join(command)}\n")
    log.flush()
    offset = log.tell()
    started = time.monotonic()
    steps = LogSteps(log_path, offset)
    interval = heartbeat_interval()
    next_beat = started + interval
    with step(command, log=log, what=what, env=dict(env), cwd=cwd) as process:
        while process.poll() is None and not _interrupted.is_set():
            try:
                process.wait(timeout=min(interval, 0.25))
            except subprocess.TimeoutExpired:
                now = time.monotonic()
                if heartbeat is not None and now >= next_beat:
                    next_beat = now + interval
                    latest = steps.latest()
                    if latest is not None:
                        heartbeat(f"{what}: {_elapsed(now - started)} | {latest}")
    returncode = process.returncode
    log.write(f"[exit code {returncode}]\n")
    log.flush()
    if returncode != 0:
        raise BuildFailed(failure_message(what, returncode, log_path, offset=offset))
