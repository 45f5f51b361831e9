"""Third-party variant plugins, run out of process and only when trusted.

A provider's plugin is named by its ``plugin-api`` (``module`` or ``module:Attr``), or,
without one, by its first ``requires`` entry's name with ``-`` turned into ``_``
(variantlib's ``plugin_api_from_requires``). wheelforge never imports it: a small runner
(:data:`RUNNER`) does, in a child Python (``-I``, its own session, an empty temporary
working directory, a timeout, stdout bounded), and prints the plugin's
``get_supported_configs()`` as JSON.

Where the plugin is run:

1. in this environment, when it is already installed here: an entry point of group
   ``variant_plugins`` named for the namespace or pointing at the reference, or the
   reference's top-level module found on ``sys.path`` (found, not imported);
2. otherwise in an isolated environment: a venv made by uv and cached under
   ``$WHEELFORGE_CACHE_DIR/plugin-envs/<sha256 of requires, Python and sources>``, into
   which the provider's ``requires`` are installed from the release's own sources (the
   index or find-links directories ``select`` reads), as variantlib's installer does.

The caller (:class:`wheelforge.select.machine.Machine`) asks only for namespaces the
user trusts (``--trust-provider NS``); nothing here is reached otherwise.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib.machinery import PathFinder
from importlib.metadata import entry_points
from pathlib import Path
from typing import IO

from packaging.requirements import InvalidRequirement, Requirement

from wheelforge.errors import WheelforgeError
from wheelforge.variants.properties import NAME_PATTERN, VALUE_PATTERN
from wheelforge.variants.providers import Provider

PLUGIN_GROUP = "variant_plugins"
TIMEOUT_S = 60.0  # one plugin run
INSTALL_TIMEOUT_S = 600.0  # creating and filling one isolated environment
OUTPUT_LIMIT = 1 << 20  # bytes of JSON a plugin may answer with

# variantlib's VALIDATION_PROVIDER_PLUGIN_API_REGEX, anchored: ``module`` or ``module:attr``.
_PLUGIN_API = re.compile(r"\s*(?P<module>[\w.]+)(?:\s*:\s*(?P<attr>[\w.]+))?\s*")

RUNNER = r"""
import importlib, inspect, json, os, sys
from functools import reduce
reference, namespace = sys.argv[1], sys.argv[2]
sys.path[:0] = json.loads(sys.argv[3])
out = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)  # whatever the plugin prints goes to stderr, never into the answer
sys.stdout = sys.stderr
module_name, _, attr = reference.partition(":")
plugin = reduce(getattr, attr.split(".") if attr else [], importlib.import_module(module_name))
if inspect.isclass(plugin):
    plugin = plugin()
declared = getattr(plugin, "namespace", namespace)
try:
    configs = plugin.get_supported_configs()
except TypeError:  # the older API took the known properties as an argument
    configs = plugin.get_supported_configs(None)
answer = {"namespace": str(declared),
          "features": [[str(c.name), [str(v) for v in c.values]] for c in configs]}
json.dump(answer, out)
out.close()
"""


class PluginFailed(WheelforgeError):
    """A trusted plugin could not be installed or run, or answered nonsense."""


def plugin_reference(provider: Provider) -> str | None:
    """``module:attr`` (or ``module``) for the provider's plugin, as variantlib finds it:
    its ``plugin-api``, else its first ``requires`` name with ``-`` as ``_``; ``None``
    for a provider without ``requires`` or with a malformed ``plugin-api``."""
    if not provider.requires:
        return None
    if provider.plugin_api is not None:
        match = _PLUGIN_API.fullmatch(provider.plugin_api)
        if match is None:
            return None
        attr = match["attr"]
        return f"{match['module']}:{attr}" if attr else str(match["module"])
    try:
        return Requirement(provider.requires[0]).name.replace("-", "_")
    except InvalidRequirement:
        return None


def _same(reference: str, entry_value: str) -> bool:
    return "".join(reference.split()) == "".join(entry_value.split())


def local_reference(namespace: str, reference: str | None) -> str | None:
    """The plugin's reference if it is installed in this environment (found through
    metadata and the import path, never imported): an entry point named ``namespace``
    or pointing at ``reference``, else ``reference``'s top-level module on sys.path."""
    for entry in entry_points(group=PLUGIN_GROUP):
        if entry.name == namespace or (reference is not None and _same(reference, entry.value)):
            return "".join(entry.value.split())
    if reference is None:
        return None
    top = reference.partition(":")[0].split(".")[0]
    return reference if PathFinder.find_spec(top, sys.path) is not None else None


def parse_answer(stdout: bytes, namespace: str, reference: str) -> dict[str, list[str]]:
    """The runner's JSON as ``{feature: [values, best first]}``, checked."""
    where = f"variant plugin {reference}"
    try:
        answer = json.loads(stdout)
        declared, features = answer["namespace"], answer["features"]
    except (ValueError, KeyError, TypeError):
        raise PluginFailed(f"{where}: answered with something other than its JSON") from None
    if declared != namespace:
        raise PluginFailed(f"{where}: is the plugin of namespace {declared!r}, not {namespace!r}")
    result: dict[str, list[str]] = {}
    if not isinstance(features, list):
        raise PluginFailed(f"{where}: expected a list of features")
    for item in features:
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[1], list)):
            raise PluginFailed(f"{where}: expected [feature, [values]], got {item!r:.80}")
        feature, values = item
        if not isinstance(feature, str) or not NAME_PATTERN.fullmatch(feature):
            raise PluginFailed(f"{where}: feature {feature!r:.80} is not a valid name")
        bad = [v for v in values if not isinstance(v, str) or not VALUE_PATTERN.fullmatch(v)]
        if bad:
            raise PluginFailed(f"{where}: {feature}: value {bad[0]!r:.80} is not valid")
        result.setdefault(feature, []).extend(v for v in values if v not in result[feature])
    return result


def _child_env(env: Mapping[str, str]) -> dict[str, str]:
    # -I ignores PYTHON* variables anyway; dropping them keeps the child's view plain
    return {k: v for k, v in env.items() if not k.startswith("PYTHON") and k != "VIRTUAL_ENV"}


def run_plugin(
    python: str,
    reference: str,
    namespace: str,
    *,
    import_path: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    timeout: float = TIMEOUT_S,
    limit: int = OUTPUT_LIMIT,
) -> dict[str, list[str]]:
    """Run the plugin ``reference`` with ``python -I`` in a child process (its own
    session, in an empty temporary directory, ``import_path`` put first on its sys.path)
    and return what it supports. It is killed after ``timeout`` seconds, or as soon as it
    has written more than ``limit`` bytes."""
    argv = [python, "-I", "-c", RUNNER, reference, namespace, json.dumps(list(import_path))]
    child_env = _child_env(env if env is not None else os.environ)
    timed_out = threading.Event()
    tail = bytearray()  # the last 2000 bytes of the plugin's stderr (and its chatter)

    def drain(stream: IO[bytes]) -> None:
        while chunk := os.read(stream.fileno(), 65536):
            tail.extend(chunk)
            del tail[:-2000]

    with tempfile.TemporaryDirectory(prefix="wheelforge-plugin-") as cwd:
        process = subprocess.Popen(  # a trusted plugin, by the user's word
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            cwd=cwd, env=child_env, start_new_session=True,
        )  # fmt: skip
        assert process.stdout is not None and process.stderr is not None

        def kill() -> None:
            with contextlib.suppress(OSError):
                os.killpg(process.pid, signal.SIGKILL)

        def expire() -> None:
            timed_out.set()
            kill()

        timer = threading.Timer(timeout, expire)
        reader = threading.Thread(target=drain, args=(process.stderr,), daemon=True)
        timer.start()
        reader.start()
        try:
            stdout = process.stdout.read(limit + 1)
            if len(stdout) > limit:
                kill()
            code = process.wait()
            reader.join(timeout=5)
        finally:
            timer.cancel()
            process.stdout.close()
            if not reader.is_alive():
                process.stderr.close()
    message = tail.decode(errors="replace").strip()
    where = f"variant plugin {reference} (namespace {namespace})"
    if len(stdout) > limit:
        raise PluginFailed(f"{where}: answered with more than {limit} bytes")
    if timed_out.is_set():
        raise PluginFailed(f"{where}: stopped after {timeout:g} s")
    if code != 0:
        raise PluginFailed(f"{where}: failed (exit {code})" + (f":\n{message}" if message else ""))
    return parse_answer(stdout, namespace, reference)


@dataclass(frozen=True)
class Sources:
    """Where a provider's ``requires`` are installed from: the release's own sources."""

    index_url: str | None = None
    find_links: tuple[str, ...] = ()

    def uv_args(self) -> list[str]:
        args = ["--index-url", self.index_url] if self.index_url else ["--no-index"]
        for directory in self.find_links:
            args += ["--find-links", directory]
        return args


def env_key(requires: Sequence[str], python: str, sources: Sources) -> str:
    inputs = {"requires": sorted(requires), "python": python, "sources": sources.uv_args()}
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:32]


def _uv() -> str:
    from wheelforge.smoke import find_uv

    return find_uv()


def isolated_env(
    requires: Sequence[str], sources: Sources, cache: Path, *, python: str = sys.executable
) -> Path:
    """The Python of a cached venv holding ``requires`` (made with uv on first use).
    Each entry must be a PEP 508 requirement, so none can pass as an option to uv."""
    for entry in requires:
        try:
            Requirement(entry)
        except InvalidRequirement:
            raise PluginFailed(f"requires {entry!r}: not a PEP 508 requirement") from None
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    target = cache / env_key(requires, f"{python} {version}", sources)
    interpreter = target / "bin" / "python"
    if (target / ".complete").is_file():
        return interpreter
    cache.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{target.name}.", suffix=".tmp", dir=cache))
    env = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "PYTHONPATH"}}
    commands = [
        [_uv(), "venv", "--quiet", "--python", python, str(work)],
        [_uv(), "pip", "install", "--quiet", "--python", str(work / "bin" / "python"),
         *sources.uv_args(), *requires],
    ]  # fmt: skip
    try:
        for command in commands:
            done = subprocess.run(
                command, capture_output=True, text=True, errors="replace", env=env,
                timeout=INSTALL_TIMEOUT_S, check=False, stdin=subprocess.DEVNULL,
            )  # fmt: skip
            if done.returncode != 0:
                tail = (done.stderr or done.stdout)[-2000:].strip()
                raise PluginFailed(
                    f"installing {', '.join(requires)} into an isolated environment failed"
                    + (f":\n{tail}" if tail else "")
                )
        (work / ".complete").write_text("")
        try:
            work.rename(target)
        except OSError:  # made meanwhile by another run: keep that one
            if not (target / ".complete").is_file():
                raise
    except subprocess.TimeoutExpired:
        raise PluginFailed(
            f"installing {', '.join(requires)} took over {INSTALL_TIMEOUT_S:g} s"
        ) from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return interpreter


def _default_cache() -> Path:
    from wheelforge.build.cache import default_cache_dir

    return default_cache_dir() / "plugin-envs"


@dataclass(frozen=True)
class TrustedPlugins:
    """The plugin loader a :class:`Machine` calls for a trusted namespace:
    ``(namespace, provider) -> {feature: [values]}``, or ``None`` where the provider names
    no plugin that can be found here and ``sources`` is ``None`` (nothing to install
    from)."""

    sources: Sources | None = None
    cache: Path = field(default_factory=_default_cache)
    timeout: float = TIMEOUT_S

    def __call__(self, namespace: str, provider: Provider) -> dict[str, list[str]] | None:
        reference = plugin_reference(provider)
        local = local_reference(namespace, reference)
        if local is not None:
            # what this process could import, the child can: the same sys.path
            path = [entry for entry in sys.path if entry]
            return run_plugin(sys.executable, local, namespace, import_path=path,
                              timeout=self.timeout)  # fmt: skip
        if reference is None or self.sources is None:
            return None
        python = isolated_env(provider.requires, self.sources, self.cache)
        return run_plugin(str(python), reference, namespace, timeout=self.timeout)
