"""The compress stage: recompress a wheel's members (zstd or deflate), in parallel.

What is written:

- Payload members get the codec (zip method 93 for zstd, 8 for deflate);
  ``.dist-info`` members are always deflate, so that an installer which cannot read
  zstd fails on the first payload member it reads, never on the metadata.
- A member that already has the method it should have is copied as its stored
  compressed bytes, unless a level is given: a zip does not record the level a member
  was compressed at, so ``level=N`` re-encodes every payload member at level N
  (``.dist-info`` members are still copied when they are deflate).
- Member order, names, timestamps and attributes are kept. The output is a function
  of the input, the codec and the level only: the same for every number of threads.

Parallelism (a pool of ``jobs`` threads; zlib and libzstd release the GIL):

- a small member (under ``BIG_MEMBER``) is one task: decoded and re-encoded whole;
- a big zstd member is one task that decodes the member as a stream and feeds it to
  libzstd's multithreaded mode with ``jobs`` workers. That mode's output is the same
  for any number of workers >= 1 (not for 0), so a big member always uses it, with
  one worker at ``jobs=1``. Big zstd members are submitted first: a wheel is often
  one huge library, whose encoding should start at once;
- a big deflate member is decoded by the calling thread and cut into 1 MiB blocks,
  each deflated as a task, primed with the 32 KiB before it and ended with a sync flush
  (as pigz does), so that the blocks concatenate to one deflate stream;
- members are written in order as they finish;
- ``jobs=1`` runs one thing at a time, in the calling thread (a big zstd member is
  decoded whole before libzstd's one worker encodes it): an honest one-core baseline.

Compatibility (DESIGN.md, "zstd where its readers can read it"): only uv and CPython
>= 3.14 read zstd members, so a wheel that pip on CPython < 3.14 could pick is never
made zstd unless forced; :func:`zstd_allowed` is the one place that decides.

Verification (on by default): the output is read back with Python 3.14's zipfile
(``backports.zstd.zipfile`` before 3.14): the same members in the same order with the
same CRC, size, time and attributes; every member's content (CRC-checked) equal to the
input's, byte for byte; and every RECORD hash right. Any difference deletes the output.
"""

from __future__ import annotations

import hashlib
import os
import queue
import re
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, ParamSpec, TypeVar

from wheelforge.errors import InvalidInput, WheelforgeError
from wheelforge.fsutil import atomic_path
from wheelforge.wheel.archive import (
    DEFLATED,
    METHOD_NAMES,
    ZSTD,
    Member,
    ZipReader,
    ZipWriter,
    compress,
    inflate,
    zstd_module,
)
from wheelforge.wheel.filename import WheelFilename
from wheelforge.wheel.record import digest_to_record_hash, parse_record
from wheelforge.wheel.wheelfile import Wheel

CODECS = {"deflate": DEFLATED, "zstd": ZSTD}
DEFAULT_LEVELS = {DEFLATED: 6, ZSTD: 10}
BLOCK = 1 << 20  # read / decode piece; a big deflate member's independent block
BIG_MEMBER = 8 << 20  # members at least this large (uncompressed) are split up
WINDOW = 32 << 20  # small members' bytes waiting to be written, per thread
BIG_AHEAD = 2  # big zstd members started and not yet written, at most
_WINDOW = 32 << 10  # deflate's window: each block is primed with the bytes before it
_RECORD_HASHES = ("sha256", "sha384", "sha512")

P = ParamSpec("P")
T = TypeVar("T")


class VerificationFailed(WheelforgeError):
    """The recompressed wheel does not read back equal to the input (exit code 1)."""


# -- the compatibility policy -------------------------------------------------------


@dataclass(frozen=True)
class ZstdVerdict:
    allowed: bool
    reason: str


_PYTHON_TAG = re.compile(r"(?:cp|py)3(\d+)")


def zstd_allowed(filename: WheelFilename | str) -> ZstdVerdict:
    """May this wheel hold zstd members? Only if no installer that cannot read them
    (pip on CPython < 3.14) could pick it: it carries a variant label (only
    variant-aware installers see it, and they read zstd), or every python tag needs
    CPython >= 3.14 (``cp314``, ``py315``, …)."""
    wheel = filename if isinstance(filename, WheelFilename) else WheelFilename.parse(filename)
    if wheel.label is not None:
        return ZstdVerdict(
            True,
            f"it carries the variant label {wheel.label!r}: only variant-aware installers, "
            "which read zstd, pick it",
        )
    older = [tag for tag in wheel.python.split(".") if not _needs_314(tag)]
    if not older:
        return ZstdVerdict(
            True, f"its python tag {wheel.python} needs CPython >= 3.14, whose zipfile reads zstd"
        )
    return ZstdVerdict(
        False,
        f"pip on CPython < 3.14 can pick this plain wheel (python tag {older[0]}) "
        "and cannot read zstd members",
    )


def _needs_314(tag: str) -> bool:
    match = _PYTHON_TAG.fullmatch(tag)
    return match is not None and int(match.group(1)) >= 14


def policy_warnings(paths: Sequence[Path], codec: str, *, force: bool = False) -> list[str]:
    """Apply the policy to every wheel before anything is written: raise for the first
    one it refuses (unless ``force``), return a warning for each forced one."""
    _method(codec)
    warnings: list[str] = []
    if codec != "zstd":
        return warnings
    for path in paths:
        verdict = zstd_allowed(WheelFilename.parse(path.name))
        if verdict.allowed:
            continue
        if not force:
            raise InvalidInput(f"{path.name}: not made zstd: {verdict.reason} (--force overrides)")
        warnings.append(f"warning: {path.name}: zstd forced: {verdict.reason}")
    return warnings


# -- options and results ------------------------------------------------------------


def default_jobs() -> int:
    """The CPUs this process may run on (``os.cpu_count()`` where that is unknown)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _method(codec: str) -> int:
    try:
        return CODECS[codec]
    except KeyError:
        raise InvalidInput(
            f"unknown codec {codec!r}: expected one of {', '.join(CODECS)}"
        ) from None


def check_options(codec: str, level: int | None, jobs: int | None) -> tuple[int, int, int]:
    """``(zip method, level, threads)``, the defaults filled in; bad values raise."""
    method = _method(codec)
    threads = default_jobs() if jobs is None else jobs
    if threads < 1:
        raise InvalidInput(f"-j {threads}: expected at least 1")
    return method, _check_level(method, level), threads


def _check_level(method: int, level: int | None) -> int:
    if level is None:
        return DEFAULT_LEVELS[method]
    if method == DEFLATED:
        low, high = 0, 9
    else:
        low, high = zstd_module().CompressionParameter.compression_level.bounds()
    if not low <= level <= high:
        raise InvalidInput(f"--level {level}: expected {low} to {high} for {METHOD_NAMES[method]}")
    return level


@dataclass(frozen=True)
class CompressResult:
    input: Path
    output: Path
    codec: str
    level: int  # of the members this run encoded in the codec
    jobs: int
    recompressed: int  # members decoded and encoded again
    copied: int  # members copied as their compressed bytes
    size_in: int
    size_out: int
    seconds: float  # reading, recompressing and writing
    verify_seconds: float | None  # None: not verified
    warning: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "input": str(self.input),
            "output": str(self.output),
            "codec": self.codec,
            "level": self.level,
            "jobs": self.jobs,
            "recompressed": self.recompressed,
            "copied": self.copied,
            "size_in": self.size_in,
            "size_out": self.size_out,
            "seconds": round(self.seconds, 3),
            "verified": self.verify_seconds is not None,
            "verify_seconds": None
            if self.verify_seconds is None
            else round(self.verify_seconds, 3),
            "warning": self.warning,
        }


@dataclass(frozen=True)
class _Step:
    """One member of the output: copied (``level`` None) or encoded with ``method``."""

    member: Member
    method: int
    level: int | None
    data_offset: int

    @property
    def copied(self) -> bool:
        return self.level is None


# -- the stage ----------------------------------------------------------------------


def compress_wheel(
    path: Path,
    output: Path,
    codec: str,
    *,
    level: int | None = None,
    jobs: int | None = None,
    verify: bool = True,
    force: bool = False,
    replace: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> CompressResult:
    """Recompress one wheel into ``output`` (which may be ``path`` itself: the file is
    replaced only once the new one is complete and verified; with ``replace=False`` an
    existing ``output`` with other bytes is an error instead). ``progress(done, total)``
    is called with uncompressed bytes as members are written."""
    method, new_level, threads = check_options(codec, level, jobs)
    warnings = policy_warnings([path], codec, force=force)
    start = time.perf_counter()
    try:
        size_in = path.stat().st_size
    except OSError as err:
        raise InvalidInput(f"{path}: cannot open ({err.strerror})") from None
    with Wheel(path) as wheel:
        record = wheel.record()
        wheel.check_record_listing(record)
        steps = _plan(wheel, method, level, new_level)
        with atomic_path(output, replace=replace) as tmp:
            with ZipWriter(tmp) as writer:
                _write(wheel.zip, writer, steps, threads, progress)
            seconds = time.perf_counter() - start
            verify_seconds = None
            if verify:
                verify_start = time.perf_counter()
                algorithms = {
                    entry.path: entry.hash.partition("=")[0]
                    for entry in record
                    if entry.hash is not None
                }
                _verify(wheel.zip, steps, tmp, threads, algorithms, path.name)
                verify_seconds = time.perf_counter() - verify_start
            size_out = tmp.stat().st_size
    return CompressResult(
        input=path,
        output=output,
        codec=codec,
        level=new_level,
        jobs=threads,
        recompressed=sum(not step.copied for step in steps),
        copied=sum(step.copied for step in steps),
        size_in=size_in,
        size_out=size_out,
        seconds=seconds,
        verify_seconds=verify_seconds,
        warning=warnings[0] if warnings else None,
    )


def _plan(wheel: Wheel, method: int, level: int | None, new_level: int) -> list[_Step]:
    prefix = f"{wheel.dist_info}/"
    steps = []
    for member in wheel.zip.members:
        offset = wheel.zip.data_offset(member)
        if member.is_dir:
            steps.append(_Step(member, member.method, None, offset))
            continue
        metadata = member.name.startswith(prefix)
        wanted = DEFLATED if metadata else method
        if member.method == wanted and (level is None or metadata):
            steps.append(_Step(member, wanted, None, offset))
        elif member.method not in METHOD_NAMES:
            raise InvalidInput(
                f"{wheel.path}: member {member.name!r} uses zip method {member.method}: "
                "expected stored (0), deflate (8) or zstd (93)"
            )
        else:
            encode_level = new_level if wanted == method else DEFAULT_LEVELS[wanted]
            steps.append(_Step(member, wanted, encode_level, offset))
    return steps


# -- writing ------------------------------------------------------------------------


class _InlineExecutor(Executor):
    """Runs each task at once in the calling thread (``jobs=1``)."""

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        future: Future[T] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as err:
            future.set_exception(err)
        return future


class _executor:
    """``workers`` threads (none with ``inline``: tasks run at once in the calling
    thread); on an error, the tasks not yet started are dropped instead of run."""

    def __init__(self, workers: int, *, inline: bool) -> None:
        self.pool: Executor = (
            _InlineExecutor() if inline else ThreadPoolExecutor(workers, "wheelforge-compress")
        )

    def __enter__(self) -> Executor:
        return self.pool

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        self.pool.shutdown(wait=True, cancel_futures=exc_type is not None)


@dataclass
class _Pending:
    step: _Step
    payload: list[Future[list[bytes]]]  # empty: copied
    queued: int  # uncompressed bytes this holds in the window (0 for a big member)

    def done(self) -> bool:
        return all(future.done() for future in self.payload)


def _write(
    reader: ZipReader,
    writer: ZipWriter,
    steps: Sequence[_Step],
    jobs: int,
    progress: Callable[[int, int], None] | None,
) -> None:
    """Encode members on a pool of ``jobs`` threads and write them in order.

    A small member is one task. A big zstd member is one task too, which decodes the
    member and feeds libzstd's ``jobs`` workers; the big zstd members are submitted
    first (up to ``BIG_AHEAD`` of them not yet written), so that the longest work starts
    first and a pool thread waiting on libzstd's workers leaves its core to them. A big
    deflate member is decoded here and its blocks are tasks. Finished members wait for
    their turn to be written in a window of ``WINDOW * jobs`` bytes of small members.
    """
    fd = reader.fileno()
    source = str(reader.path)
    total = sum(step.member.size for step in steps)
    pending: deque[_Pending] = deque()
    queued = written = 0
    big = deque(i for i, step in enumerate(steps) if _is_big_zstd(step))
    started: dict[int, Future[list[bytes]]] = {}
    big_unwritten = 0
    with _executor(jobs, inline=jobs == 1) as pool:

        def start_big(at_least: int = -1) -> None:
            nonlocal big_unwritten
            while big and (big_unwritten < BIG_AHEAD or big[0] <= at_least):
                i = big.popleft()
                started[i] = pool.submit(_encode_zstd_big, fd, steps[i], source, jobs)
                big_unwritten += 1

        def write_head() -> None:
            nonlocal queued, written, big_unwritten
            item = pending.popleft()
            member = item.step.member
            if item.step.copied:
                writer.copy(reader, member)
            else:
                writer.add_compressed(
                    member.name,
                    [piece for future in item.payload for piece in future.result()],
                    method=item.step.method,
                    crc=member.crc,
                    size=member.size,
                    dos_time=member.dos_time,
                    dos_date=member.dos_date,
                    external_attr=member.external_attr,
                )
            queued -= item.queued
            written += member.size
            if progress is not None:
                progress(written, total)
            if _is_big_zstd(item.step):
                big_unwritten -= 1
                start_big()

        start_big()
        for i, step in enumerate(steps):
            member = step.member
            if step.copied:
                pending.append(_Pending(step, [], 0))
            elif _is_big_zstd(step):
                start_big(at_least=i)
                pending.append(_Pending(step, [started.pop(i)], 0))
            elif member.size < BIG_MEMBER:
                future = pool.submit(_encode_whole, fd, step, source)
                pending.append(_Pending(step, [future], member.size))
                queued += member.size
            else:
                blocks = _encode_deflate_blocks(fd, step, source, pool, jobs)
                pending.append(_Pending(step, blocks, 0))
            while pending and (
                pending[0].done() or len(pending) > 1024 * jobs or queued > WINDOW * jobs
            ):
                write_head()
        while pending:
            write_head()


def _is_big_zstd(step: _Step) -> bool:
    return not step.copied and step.member.size >= BIG_MEMBER and step.method == ZSTD


def _encode_whole(fd: int, step: _Step, source: str) -> list[bytes]:
    data = b"".join(_content(fd, step, source))
    return [compress(data, step.method, step.level)]


def _encode_zstd_big(fd: int, step: _Step, source: str, jobs: int) -> list[bytes]:
    return _encode_zstd_stream(_content(fd, step, source), step, jobs)


def _encode_zstd_stream(content: Iterator[bytes], step: _Step, jobs: int) -> list[bytes]:
    """One zstd frame in libzstd's multithreaded mode (its output does not depend on
    the number of workers); with one job, the member is decoded first, then encoded."""
    zstd = zstd_module()
    parameter = zstd.CompressionParameter
    compressor = zstd.ZstdCompressor(
        options={parameter.compression_level: step.level, parameter.nb_workers: jobs}
    )
    compressor.set_pledged_input_size(step.member.size)
    if jobs == 1:
        data = bytearray(step.member.size)
        view = memoryview(data)
        at = 0
        for piece in content:
            end = min(at + len(piece), len(data))  # more than the size: _content raises
            view[at:end] = piece[: end - at]
            at = end
        pieces = [compressor.compress(view)]
        view.release()
        del data
    else:
        pieces = [compressor.compress(piece) for piece in content]
    pieces.append(compressor.flush())
    return [piece for piece in pieces if piece]


def _encode_deflate_blocks(
    fd: int, step: _Step, source: str, pool: Executor, jobs: int
) -> list[Future[list[bytes]]]:
    """Decode the member here and deflate its fixed 1 MiB blocks on ``pool``."""
    assert step.level is not None
    futures: list[Future[list[bytes]]] = []
    in_flight: deque[Future[list[bytes]]] = deque()
    window = b""
    for block, last in _with_last(_blocks(_content(fd, step, source), BLOCK)):
        future = pool.submit(_deflate_block, block, window, step.level, last)
        futures.append(future)
        in_flight.append(future)
        window = block[-_WINDOW:]
        while len(in_flight) > 2 * jobs:
            in_flight.popleft().result()
    return futures


def _deflate_block(block: bytes, window: bytes, level: int, last: bool) -> list[bytes]:
    if window:
        compressor = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS, zdict=window)
    else:
        compressor = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
    data = compressor.compress(block)
    return [data + compressor.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)]


def _blocks(pieces: Iterable[bytes], size: int) -> Iterator[bytes]:
    """The concatenated pieces cut at every ``size`` bytes."""
    buffer = bytearray()
    for piece in pieces:
        buffer += piece
        if len(buffer) >= size:
            view = memoryview(buffer)
            cut = len(buffer) - len(buffer) % size
            for start in range(0, cut, size):
                yield bytes(view[start : start + size])
            view.release()
            del buffer[:cut]
    if buffer:
        yield bytes(buffer)


def _with_last(items: Iterator[T]) -> Iterator[tuple[T, bool]]:
    previous = next(items, None)
    while previous is not None:
        item = next(items, None)
        yield previous, item is None
        previous = item


# -- reading ------------------------------------------------------------------------


def _raw(fd: int, step: _Step, source: str) -> Iterator[bytes]:
    """The member's compressed bytes (``os.pread``: safe from several threads)."""
    offset, remaining = step.data_offset, step.member.compressed_size
    while remaining:
        chunk = os.pread(fd, min(BLOCK, remaining), offset)
        if not chunk:
            raise InvalidInput(f"{source}: member {step.member.name!r} is cut short")
        offset += len(chunk)
        remaining -= len(chunk)
        yield chunk


def _content(fd: int, step: _Step, source: str) -> Iterator[bytes]:
    """The member's uncompressed bytes in pieces of at most ``BLOCK`` bytes, checked as
    they inflate (:func:`inflate`)."""
    return inflate(_raw(fd, step, source), step.member, source)


# -- verification -------------------------------------------------------------------


def zipfile_module() -> ModuleType:
    """Python 3.14's zipfile: the standard library's from 3.14, ``backports.zstd``'s
    copy before."""
    import zipfile

    if hasattr(zipfile, "ZIP_ZSTANDARD"):
        return zipfile
    from backports.zstd import zipfile as backport

    module: ModuleType = backport
    return module


def _verify(
    reader: ZipReader,
    steps: Sequence[_Step],
    output: Path,
    jobs: int,
    algorithms: dict[str, str],
    name: str,
) -> None:
    """Read ``output`` back with Python 3.14's zipfile and compare it with the input."""

    def fail(what: str) -> VerificationFailed:
        return VerificationFailed(
            f"{name}: verification failed: {what}; the output was deleted",
            hint="this is a bug in wheelforge's compress: please report it",
        )

    zipfile = zipfile_module()
    try:
        archive = zipfile.ZipFile(output)
    except (zipfile.BadZipFile, OSError) as err:
        raise fail(f"the output is not a readable zip ({err})") from None
    with archive, open(output, "rb") as out_file:
        infos = archive.infolist()
        if [info.filename for info in infos] != [step.member.name for step in steps]:
            raise fail("the output's members differ from the input's (names or order)")
        for info, step in zip(infos, steps, strict=True):
            member = step.member
            if (
                info.compress_type != step.method
                or member.crc != info.CRC
                or info.file_size != member.size
                or info.external_attr != member.external_attr
                or info.date_time != _date_time(member)
            ):
                raise fail(f"member {member.name!r} has other metadata than the input's")
        out_reader = ZipReader(output)
        with out_reader:
            out_offsets = {m.name: out_reader.data_offset(m) for m in out_reader.members}
        order = sorted(range(len(steps)), key=lambda i: -steps[i].member.size)
        local = threading.local()
        opened: list[Any] = []
        lock = threading.Lock()

        def own_archive() -> Any:
            # zipfile reads different members from one ZipFile safely, but counts its
            # open members without a lock: each thread gets a ZipFile of its own.
            mine = getattr(local, "archive", None)
            if mine is None:
                mine = local.archive = zipfile.ZipFile(output)
                with lock:
                    opened.append(mine)
            return mine

        def check(i: int) -> tuple[str | None, str | None]:
            mine = own_archive()
            return _check_member(
                mine,
                mine.infolist()[i],
                steps[i],
                reader.fileno(),
                out_file.fileno(),
                out_offsets[steps[i].member.name],
                algorithms.get(steps[i].member.name),
                str(reader.path),
                jobs > 1,
            )

        try:
            with _executor(jobs, inline=jobs == 1) as pool:
                futures = {i: pool.submit(check, i) for i in order}
                results = {i: futures[i].result() for i in range(len(steps))}
        finally:
            for mine in opened:
                mine.close()
        digests: dict[str, str] = {}
        for i in range(len(steps)):
            problem, digest = results[i]
            if problem:
                raise fail(f"member {steps[i].member.name!r} {problem}")
            if digest is not None:
                digests[steps[i].member.name] = digest
        record_name = next(
            (s.member.name for s in steps if s.member.name.endswith(".dist-info/RECORD")), None
        )
        assert record_name is not None  # Wheel() checked
        for entry in parse_record(archive.read(record_name), source=name):
            if entry.hash is None or entry.path not in digests:
                continue
            if digests[entry.path] != entry.hash:
                raise InvalidInput(
                    f"{reader.path}: RECORD hash mismatch for {entry.path!r}: expected "
                    f"{entry.hash} (the input's RECORD does not match its content)"
                )


def _date_time(member: Member) -> tuple[int, int, int, int, int, int]:
    d, t = member.dos_date, member.dos_time
    return (d >> 9) + 1980, (d >> 5) & 0xF, d & 0x1F, t >> 11, (t >> 5) & 0x3F, (t & 0x1F) * 2


def _check_member(
    archive: Any,
    info: Any,
    step: _Step,
    in_fd: int,
    out_fd: int,
    out_offset: int,
    algorithm: str | None,
    source: str,
    prefetch: bool,
) -> tuple[str | None, str | None]:
    """``(problem, RECORD-style digest)`` for one member: its output content, read by
    zipfile (which checks the CRC), against the input's."""
    if algorithm is not None and algorithm not in _RECORD_HASHES:
        raise InvalidInput(
            f"{source}: RECORD entry {step.member.name!r} uses hash {algorithm!r}: "
            f"expected {', '.join(_RECORD_HASHES)}"
        )
    digest = hashlib.new(algorithm) if algorithm else None
    if step.copied:
        out_step = _Step(step.member, step.method, None, out_offset)
        for left, right in zip(
            _raw(in_fd, step, source), _raw(out_fd, out_step, "output"), strict=True
        ):
            if left != right:
                return "was copied with other compressed bytes than the input's", None
        expected: Iterator[bytes] | None = None
    else:
        content = _content(in_fd, step, source)
        expected = _prefetched(content) if prefetch and step.member.size >= BIG_MEMBER else content
    try:
        with archive.open(info) as stream:
            if expected is None:
                for piece in iter(lambda: stream.read(BLOCK), b""):
                    if digest is not None:
                        digest.update(piece)
            else:
                for piece in expected:
                    got = stream.read(len(piece))
                    if got != piece:
                        return "reads back with other content than the input's", None
                    if digest is not None:
                        digest.update(got)
                if stream.read(1):
                    return "reads back longer than the input's", None
    except InvalidInput:
        raise
    except Exception as err:  # zipfile: BadZipFile (bad CRC), zlib.error, ZstdError, ...
        return f"does not read back ({type(err).__name__}: {err})", None
    if digest is None or algorithm is None:
        return None, None
    return None, digest_to_record_hash(algorithm, digest.digest())


_DONE = object()


def _prefetched(items: Iterator[bytes], depth: int = 8) -> Iterator[bytes]:
    """``items`` produced by a thread of its own, up to ``depth`` ahead (so that
    decoding the input overlaps reading the output back)."""
    slots: queue.Queue[object] = queue.Queue(depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                slots.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(_DONE)
        except BaseException as err:
            put(err)

    thread = threading.Thread(target=produce, name="wheelforge-verify-read", daemon=True)
    thread.start()
    try:
        while True:
            item = slots.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, bytes)
            yield item
    finally:
        stop.set()
        thread.join()
