"""Installing the selected wheel with the real pip or uv into an interpreter.

The installer gets the chosen wheel as a local file under its plain name (the
``variant.json`` inside still records the label): pip cannot parse a labelled
filename, and uv would judge the variant again against the real machine, where a
profile or ``--assume`` describes another. pip on CPython < 3.14 cannot read zstd
members: such a wheel is transcoded to deflate locally first (verified, as
``wheelforge compress`` does).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.tags import Tag, compatible_tags, cpython_tags, sys_tags
from packaging.version import Version

from wheelforge.errors import InvalidInput, WheelforgeError
from wheelforge.paths import inside
from wheelforge.select.selection import Selection
from wheelforge.variants import abi_dependency
from wheelforge.variants.abi_dependency import Environment as AbiEnvironment
from wheelforge.wheel.archive import ZSTD
from wheelforge.wheel.filename import WheelFilename
from wheelforge.wheel.wheelfile import Wheel

INSTALLERS = ("pip", "uv")
_PROBE = (
    "import json, sys; print(json.dumps([sys.implementation.name, list(sys.version_info[:3])]))"
)


class InstallFailed(WheelforgeError):
    """The installer ran and failed (exit code 1)."""


@dataclass(frozen=True)
class Interpreter:
    executable: str
    version: Version
    tags: tuple[Tag, ...]

    @property
    def zipfile_reads_zstd(self) -> bool:
        return self.version >= Version("3.14")


def interpreter(python: str | None = None) -> Interpreter:
    """This interpreter, or ``python`` (a path or a command): its version and the wheel
    tags it accepts."""
    if python is None:
        version = Version(".".join(map(str, sys.version_info[:3])))
        return Interpreter(sys.executable, version, tuple(sys_tags()))
    found = shutil.which(python) or python
    try:
        probe = subprocess.run([found, "-c", _PROBE], capture_output=True, text=True,
                               timeout=30, check=True)  # fmt: skip
        implementation, parts = json.loads(probe.stdout)
    except (OSError, subprocess.SubprocessError, ValueError) as err:
        raise InvalidInput(f"--python {python}: not a working Python interpreter ({err})") from None
    version = Version(".".join(map(str, parts)))
    short = (int(parts[0]), int(parts[1]))
    tags: list[Tag] = []
    if implementation == "cpython":
        tags += cpython_tags(python_version=short)
    tags += compatible_tags(python_version=short)
    return Interpreter(found, version, tuple(tags))


_DISTRIBUTIONS_PROBE = (
    "import json, importlib.metadata as m; "
    "print(json.dumps([[d.metadata['Name'], d.version] for d in m.distributions()]))"
)


def installed_distributions(target: Interpreter) -> dict[str, str]:
    """``{name: version}`` of every distribution installed in ``target``'s environment
    (asked through its own ``importlib.metadata``; in-process when ``target`` is this
    interpreter). The first one found of a name wins, as on ``sys.path``."""
    if os.path.abspath(target.executable) == os.path.abspath(sys.executable):
        pairs = [(d.metadata["Name"], d.version) for d in importlib.metadata.distributions()]
    else:
        try:
            command = [target.executable, "-c", _DISTRIBUTIONS_PROBE]
            probe = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
            pairs = [tuple(pair) for pair in json.loads(probe.stdout)]
        except (OSError, subprocess.SubprocessError, ValueError) as err:
            raise InvalidInput(
                f"{target.executable}: could not list its installed distributions ({err})"
            ) from None
    found: dict[str, str] = {}
    for name, version in pairs:
        if isinstance(name, str) and isinstance(version, str):
            found.setdefault(name, version)
    return found


def abi_environment(target: Interpreter, env: Mapping[str, str] | None = None) -> AbiEnvironment:
    """What ``abi_dependency`` is judged against: ``target``'s installed distributions,
    overridden by ``VARIANT_ABI_DEPENDENCY`` (as variantlib does)."""
    variables = os.environ if env is None else env
    return abi_dependency.environment(
        installed_distributions(target),
        where=f"installed in {target.executable}",
        env_value=variables.get(abi_dependency.ENV_VARIABLE),
    )


@dataclass(frozen=True)
class InstallResult:
    selection: Selection
    installer: str
    wheel: Path  # the file handed to the installer
    transcoded: bool
    command: tuple[str, ...]


def install(
    selection: Selection,
    target: Interpreter,
    *,
    installer: str,
    workdir: Path,
    index_url: str | None = None,
    find_links: Sequence[Path] = (),
    index_urls: Sequence[str] = (),
    index_strategy: str | None = None,
    notify: Callable[[str], None] = lambda message: None,
) -> InstallResult:
    """Download the chosen wheel (its sha256 checked), make it readable by ``installer``,
    and install it; its dependencies come from the same index or find-links."""
    if installer not in INSTALLERS:
        raise InvalidInput(f"--installer {installer}: expected one of {', '.join(INSTALLERS)}")
    chosen = selection.chosen
    if chosen is None:
        build = f" (uv or pip would build {selection.sdist.filename})" if selection.sdist else ""
        raise InvalidInput(f"{selection.project}: no wheel to install on this machine{build}")
    where = f"{selection.project}: the index's file name"
    downloaded = inside(workdir, chosen.filename, where=where)  # a name from the index
    chosen.download(downloaded)
    wheel = downloaded
    transcoded = False
    if installer == "pip" and not target.zipfile_reads_zstd and _has_zstd(downloaded):
        from wheelforge.compress import compress_wheel

        deflated = inside(workdir, "deflate", chosen.filename, where=where)
        deflated.parent.mkdir()
        compress_wheel(downloaded, deflated, "deflate")
        notify(
            f"{chosen.filename} has zstd members, which pip on Python {target.version} cannot "
            "read: transcoded to deflate locally (verified)"
        )
        wheel, transcoded = deflated, True
    plain = inside(workdir, "plain", WheelFilename.parse(chosen.filename).plain().filename,
                   where=where)  # fmt: skip
    plain.parent.mkdir()
    shutil.copyfile(wheel, plain)
    wheel = plain
    if installer == "pip":
        command = [target.executable, "-m", "pip", "install", "--disable-pip-version-check",
                   str(plain)]  # fmt: skip
    else:
        command = [_uv(), "pip", "install", "--python", target.executable, str(plain)]
    urls = [index_url] if index_url else list(index_urls)
    if installer == "uv":  # --index: the first has priority, as wheelforge reads them
        for url in urls:
            command += ["--index", url]
        command += ["--index-strategy", index_strategy] if index_strategy and urls else []
    else:
        command += ["--index-url", urls[0]] if urls else []
        for url in urls[1:]:
            command += ["--extra-index-url", url]
    for directory in find_links:
        command += ["--find-links", str(directory)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        last = (result.stderr.strip() or result.stdout.strip()).splitlines()[-1:]
        hint = None
        if installer == "pip" and "No module named pip" in result.stderr:
            hint = "this environment has no pip: use --installer uv"
        reason = last[0] if last else f"exit code {result.returncode}"
        raise InstallFailed(f"{installer} could not install {chosen.filename}: {reason}", hint=hint)
    return InstallResult(selection, installer, wheel, transcoded, tuple(command))


def _has_zstd(path: Path) -> bool:
    with Wheel(path) as wheel:
        return any(member.method == ZSTD for member in wheel.members.values())


def _uv() -> str:
    try:
        from uv import find_uv_bin

        return str(find_uv_bin())
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        if found is None:
            raise InvalidInput("--installer uv: uv is not installed (pip install uv)") from None
        return found
