"""A wheel's layout as an installer lays it out in site-packages.

Three findings for ``check``: top-level folders that are no package (``lib/``,
``include/``, …) and so land in site-packages itself; the same bytes stored under
several names (version symlinks flattened into copies); and ELF dependencies that
nothing provides once the wheel is installed.
"""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import json
import posixpath
import re
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from wheelforge.render import human_size
from wheelforge.repair import classify, install_dir, origin_relative, runtime_wheel
from wheelforge.wheel.archive import Member
from wheelforge.wheel.elf import DynamicInfo
from wheelforge.wheel.record import digest_to_record_hash
from wheelforge.wheel.wheelfile import Wheel

# Top-level folders of an install prefix: in a wheel they land in site-packages, where
# every wheel that does the same overwrites the other's files.
PREFIX_FOLDERS = frozenset(
    {"bin", "sbin", "lib", "lib32", "lib64", "libexec", "include", "share", "etc", "man", "cmake"}
)
_FOLDER_FIX = {
    "include": "into {data}/headers (installed as the distribution's headers)",
    "bin": "into {data}/scripts (installed on PATH)",
    "sbin": "into {data}/scripts (installed on PATH)",
}
# Copies smaller than this are not worth a finding (empty __init__.py files, stubs).
MIN_DUPLICATE_SIZE = 1024
_SONAME_CHAIN = re.compile(r"(?P<stem>lib[\w+.-]+?\.so)(?P<versions>(\.\d+)*)")
_LOADER = re.compile(r"ld-linux[\w.-]*\.so\.\d+|ld64\.so\.\d+|ld-musl-[\w.-]+\.so\.\d+")
_MUSL_LIBC = re.compile(r"libc\.musl-[\w.-]+\.so\.\d+")
_LIBPYTHON = re.compile(r"libpython\d+\.\d+[a-z]*\.so(\.\d+)*")
_GRAFTED = re.compile(r"^[^/]+\.libs/[^/]+$")
_POLICY_FILES = {"manylinux": "manylinux-policy.json", "musllinux": "musllinux-policy.json"}
# Driver libraries (repair.classify) and the variant namespace whose machines have them.
_DRIVER_VENDOR = re.compile(r"lib(cuda|nvidia-[\w.-]+)\.so(\.\d+)*")


@dataclass(frozen=True)
class Problem:
    severity: str  # "error" | "warning"
    check: str
    message: str


# -- top-level folders ------------------------------------------------------------------


def top_level_problems(wheel: Wheel) -> list[Problem]:
    """Top-level folders of site-packages, as the wheel installs (``.data/purelib`` and
    ``platlib`` included), that are neither a package, the ``.dist-info`` nor
    auditwheel's ``<pkg>.libs``: errors for the folders of an install prefix (``lib/``,
    ``include/``, ``bin/``, …), warnings for names no import can reach."""
    folders: dict[str, list[Member]] = defaultdict(list)
    for name, member in wheel.members.items():
        installed = _installed(name)
        top, slash, _ = (installed or "").partition("/")
        if slash and not member.is_dir:
            folders[top].append(member)
    data = wheel.dist_info.removesuffix(".dist-info") + ".data"
    packages = sorted(f for f in folders if _is_package(f, folders[f]))
    package = packages[0] if packages else data.split("-")[0]
    problems = []
    for folder, members in sorted(folders.items()):
        if folder.endswith((".dist-info", ".libs")) or folder in packages:
            continue
        files = f"{len(members)} file{'s' if len(members) != 1 else ''}"
        size = human_size(sum(m.size for m in members))
        what = f"{folder}/ ({files}, {size}) installs into site-packages/{folder}/"
        if folder in PREFIX_FOLDERS:
            fix = _FOLDER_FIX.get(folder, "into the package ({package}/{folder}/)")
            problems.append(
                Problem(
                    "error",
                    "layout",
                    f"{what}, where wheels that do the same overwrite each other's files: "
                    f"install it {fix.format(data=data, package=package, folder=folder)}",
                )
            )
        else:
            problems.append(
                Problem(
                    "warning",
                    "layout",
                    f"{what} and is no importable package (not a Python identifier): "
                    f"install it into the package ({package}/{folder}/) or into {data}/data",
                )
            )
    return problems


def _is_package(folder: str, members: Iterable[Member]) -> bool:
    if folder in PREFIX_FOLDERS:
        return False
    return folder.isidentifier() or any(m.name == f"{folder}/__init__.py" for m in members)


# -- the same bytes under several names -------------------------------------------------


def duplicate_problems(wheel: Wheel, verified: Mapping[str, str] | None = None) -> list[Problem]:
    """Groups of members with the same bytes (each at least :data:`MIN_DUPLICATE_SIZE`,
    ``.dist-info`` aside), one warning a group. ``verified``: RECORD hashes already
    checked against the members (member -> ``sha256=…``); other members whose size
    another shares are hashed here, streaming."""
    verified = verified or {}
    by_size: dict[int, list[Member]] = defaultdict(list)
    for member in wheel.members.values():
        if member.is_dir or member.size < MIN_DUPLICATE_SIZE:
            continue
        if member.name.startswith(f"{wheel.dist_info}/"):
            continue
        by_size[member.size].append(member)
    problems = []
    for size, members in sorted(by_size.items()):
        if len(members) < 2:
            continue
        by_digest: dict[str, list[str]] = defaultdict(list)
        for member in members:
            known = verified.get(member.name, "")
            digest = known if known.startswith("sha256=") else _sha256(wheel, member)
            by_digest[digest].append(member.name)
        for names in by_digest.values():
            if len(names) > 1:
                problems.append(_duplicate(sorted(names), size))
    return problems


def _sha256(wheel: Wheel, member: Member) -> str:
    digest = hashlib.sha256()
    for chunk in wheel.zip.iter_content(member):
        digest.update(chunk)
    return digest_to_record_hash("sha256", digest.digest())


def _duplicate(names: list[str], size: int) -> Problem:
    wasted = human_size(size * (len(names) - 1))
    message = (
        f"{len(names)} members hold the same {human_size(size)}: {', '.join(names)} "
        f"({wasted} stored more than once)"
    )
    chain = [_SONAME_CHAIN.fullmatch(posixpath.basename(n)) for n in names]
    stems = {m["stem"] if m else n for m, n in zip(chain, names, strict=True)}
    if len(stems) == 1 and len({posixpath.dirname(n) for n in names}) == 1:
        sonames = [
            n for m, n in zip(chain, names, strict=True) if m and m["versions"].count(".") == 1
        ]
        keep = posixpath.basename(sonames[0]) if sonames else "the file named by its soname"
        message += (
            f": a shared library's version symlinks became copies; install only {keep} "
            "(CMake: SOVERSION without VERSION on the target, install(TARGETS … "
            "NAMELINK_SKIP)), or let auditwheel graft the library"
        )
    return Problem("warning", "duplicates", message)


# -- ELF dependencies once installed ----------------------------------------------------


@dataclass(frozen=True)
class Context:
    """What, beside the wheel's own files, provides a library once it is installed."""

    platform: str  # the wheel filename's platform tag (compressed tag sets allowed)
    requires_dist: tuple[str, ...] = ()
    namespaces: frozenset[str] | None = None  # the variant's; None: a fallback wheel
    allowed: tuple[str, ...] = ()  # fnmatch globs of sonames expected from elsewhere


def dependency_problems(
    members: Collection[str], dynamic: Mapping[str, DynamicInfo], context: Context
) -> list[Problem]:
    """Each DT_NEEDED of each ELF member (``dynamic``: member -> its dynamic section)
    that resolves nowhere: not a file of the wheel on the member's RUNPATH (``$ORIGIN``
    relative to where it installs), not grafted by auditwheel (``<pkg>.libs/``), not a
    system library of the platform's manylinux/musllinux policy, not a driver library
    on a wheel for that vendor, not in a ``Requires-Dist`` that ships it, not allowed."""
    system = system_libraries(context.platform)
    if system is None:
        return []  # not a Linux wheel: no loader to model
    installed = {path for m in members if (path := _installed(m)) is not None}
    grafted = {posixpath.basename(m) for m in members if _GRAFTED.match(m)}
    grafted |= {i.soname for m, i in dynamic.items() if i.soname and _GRAFTED.match(m)}
    declared = _requirement_names(context.requires_dist)
    problems = []
    for member, info in sorted(dynamic.items()):
        where = install_dir(member)
        search = info.runpath or info.rpath
        dirs = [d for entry in search if (d := _origin_dir(entry, where)) is not None]
        for needed in info.needed:
            if any(_join(d, needed) in installed for d in dirs) or needed in grafted:
                continue
            if needed in system or _LOADER.fullmatch(needed) or _MUSL_LIBC.fullmatch(needed):
                continue
            if _LIBPYTHON.fullmatch(needed) or _provided(needed, declared, context):
                continue
            if any(fnmatch.fnmatchcase(needed, glob) for glob in context.allowed):
                continue
            message = _unresolved(member, needed, search, installed, context.platform)
            problems.append(Problem("error", "dependencies", message))
    return problems


def _unresolved(
    member: str, needed: str, search: tuple[str, ...], installed: set[str], platform: str
) -> str:
    elsewhere = sorted(p for p in installed if posixpath.basename(p) == needed)
    message = (
        f"{member} needs {needed}: not in the wheel on its RUNPATH "
        f"({':'.join(search) or 'none'}), not grafted, not a system library of "
        f"{platform}, not provided by a declared dependency"
    )
    if elsewhere:
        message += (
            f"; the wheel has {', '.join(elsewhere)}, which the loader does not search: "
            f"install it beside {posixpath.basename(member)} with RUNPATH $ORIGIN, or "
            "repair the wheel with auditwheel"
        )
    return message + f" (if the system provides it: check --allow-missing {needed})"


def _installed(member: str) -> str | None:
    """Where ``member`` lands, relative to site-packages (None: outside it)."""
    where = install_dir(member)
    return None if where is None else _join(where, posixpath.basename(member))


def _join(directory: str, name: str) -> str:
    return posixpath.normpath(posixpath.join(directory, name))


def _origin_dir(entry: str, where: str | None) -> str | None:
    """The site-packages directory an ``$ORIGIN`` search-path entry names (None: an
    absolute or relative path, which points at nothing the wheel installs)."""
    rest = origin_relative(entry)
    return None if where is None or rest is None else _join(where, rest)


def _requirement_names(lines: Iterable[str]) -> frozenset[str]:
    names = set()
    for line in lines:
        try:
            names.add(canonicalize_name(Requirement(line).name))
        except InvalidRequirement:
            continue  # a metadata finding already
    return frozenset(names)


def _provided(needed: str, declared: frozenset[str], context: Context) -> bool:
    kind = classify(needed)
    if kind is None:
        return False
    if context.namespaces is None:
        return True  # a GPU library in a fallback wheel: the fallback-gpu check reports it
    if kind == "runtime":
        provider = runtime_wheel(needed, None)
        if provider is not None:
            return _requirement_names([provider.requirement]) <= declared
        return any(n.startswith("nvidia-") and _component(needed) in n for n in declared)
    vendor = "nvidia" if _DRIVER_VENDOR.fullmatch(needed) else "amd"  # a driver library
    return vendor in context.namespaces


def _component(soname: str) -> str:
    """The name NVIDIA's wheels give a CUDA library: ``libcufft.so.12`` -> ``cufft``
    (``nvidia-cufft-cu12``), ``libcudnn_ops.so.9`` -> ``cudnn``, ``libnvToolsExt`` -> ``nvtx``."""
    stem = re.sub(r"^lib|[_.].*$", "", soname).lower()
    return "nvtx" if stem == "nvtoolsext" else stem


def system_libraries(platform: str) -> frozenset[str] | None:
    """The libraries auditwheel's policy lets a wheel of ``platform`` take from the
    system: for a compressed tag set, those every tag allows; ``linux_*`` (no policy):
    those of any manylinux policy. None for a platform that is not Linux."""
    allowed: frozenset[str] | None = None
    for tag in platform.split("."):
        family, policy = _policy_name(tag)
        if family is None:
            continue
        policies = _policies(family)
        names = [set(p["lib_whitelist"]) for p in policies if policy in _names(p)]
        if policy == "linux":
            names = [set(p["lib_whitelist"]) for p in policies]
        libraries = frozenset(set().union(*names))
        allowed = libraries if allowed is None else allowed & libraries
    return allowed


def _policy_name(tag: str) -> tuple[str | None, str]:
    """(policy file family, policy name) of a platform tag: ``manylinux_2_28_x86_64`` ->
    (``manylinux``, ``manylinux_2_28``); ``linux_x86_64`` -> (``manylinux``, ``linux``)."""
    match = re.fullmatch(r"(?P<name>(many|musl)linux(_\d+_\d+|1|2010|2014))_\w+", tag)
    if match:
        return ("musllinux" if tag.startswith("musl") else "manylinux"), match["name"]
    if tag.startswith("linux_"):
        return "manylinux", "linux"
    return None, ""


def _names(policy: Mapping[str, Any]) -> set[str]:
    return {policy["name"], *policy.get("aliases", ())}


@functools.cache
def _policies(family: str) -> tuple[dict[str, Any], ...]:
    """auditwheel's policy file (package data: it says which libraries each policy
    takes from the system)."""
    data = resources.files("auditwheel").joinpath("policy", _POLICY_FILES[family]).read_text()
    return tuple(json.loads(data))
