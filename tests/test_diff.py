"""``wheelforge diff``: real wheels, real gcc libraries, and the prefix maps wheelforge
sets for every build (``wheelforge.build.reproducible``) checked with the real gcc."""

from __future__ import annotations

import gzip
import json
import os
import shlex
import shutil
import subprocess
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import build_plain_wheel
from wheelforge.build.reproducible import MAPPED_PREFIX, reproducible_flags
from wheelforge.diff import diff_paths

Cli = Callable[..., tuple[int, str, str]]

_SOURCE = r"""
const char *where(void) { return WHERE; }
int answer(void) { return 42; }
"""

needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")


def _wheel(directory: Path, files: dict[str, bytes], **kwargs: object) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    return build_plain_wheel(
        directory, "demo", "1.0", tag="py3-none-linux_x86_64", files=files, **kwargs
    )  # type: ignore[arg-type]


def _library(directory: Path, where: str, *flags: str, env: dict[str, str] | None = None) -> bytes:
    """A tiny shared library compiled by gcc in ``directory`` (``WHERE``: a C expression)."""
    directory.mkdir(parents=True, exist_ok=True)
    source = directory / "lib.c"
    source.write_text(_SOURCE)
    target = directory / "libdemo.so"
    subprocess.run(
        ["gcc", "-O2", "-shared", "-fPIC", f"-DWHERE={where}", *flags, "-o", target, source],
        check=True,
        env={**os.environ, **(env or {})},
    )
    return target.read_bytes()


def _json(cli: Cli, a: Path, b: Path) -> tuple[int, dict[str, object]]:
    code, out, err = cli("diff", a, b, "--json")
    assert err == ""
    return code, json.loads(out)


def test_identical_wheels(cli: Cli, tmp_path: Path) -> None:
    files = {"demo/__init__.py": b"x = 1\n"}
    a, b = _wheel(tmp_path / "a", files), _wheel(tmp_path / "b", files)
    code, out, _ = cli("diff", a, b)
    assert code == 0
    assert f"{a.name}: identical" in out
    code, report = _json(cli, a, b)
    assert code == 0 and report["identical"] is True


def test_text_member(cli: Cli, tmp_path: Path) -> None:
    a = _wheel(tmp_path / "a", {"demo/__init__.py": b"x = 1\ny = 2\n"})
    b = _wheel(tmp_path / "b", {"demo/__init__.py": b"x = 1\ny = 3\n"})
    code, report = _json(cli, a, b)
    assert code == 1 and report["identical"] is False
    [pair] = report["pairs"]  # type: ignore[misc]
    members = {m["name"]: m for m in pair["members"]}
    assert set(members) == {"demo/__init__.py", "demo-1.0.dist-info/RECORD"}
    text = members["demo/__init__.py"]
    assert text["kind"] == "text" and text["lines"] == ["@@ -2 +2 @@", "-y = 2", "+y = 3"]
    assert text["causes"] == []  # an honest change: no known cause
    assert [c["kind"] for c in members["demo-1.0.dist-info/RECORD"]["causes"]] == ["record"]
    code, out, _ = cli("diff", a, b)
    assert code == 1
    assert "demo/__init__.py" in out and "+y = 3" in out and "0 identical, 1 differ" in out


@needs_gcc
def test_elf_section_with_a_temp_path(cli: Cli, tmp_path: Path) -> None:
    lib_a = _library(tmp_path / "la", '"/tmp/tmpk2x9a1/gen.c"')
    lib_b = _library(tmp_path / "lb", '"/tmp/tmpq7zzb4/gen.c"')
    a = _wheel(tmp_path / "a", {"demo/libdemo.so": lib_a})
    b = _wheel(tmp_path / "b", {"demo/libdemo.so": lib_b})
    code, report = _json(cli, a, b)
    assert code == 1
    [member] = [m for m in report["pairs"][0]["members"] if m["name"] == "demo/libdemo.so"]  # type: ignore[index]
    assert member["kind"] == "elf"
    sections = {s["name"] for s in member["sections"]}
    assert ".rodata" in sections and ".text" not in sections
    causes = {c["kind"]: c for c in member["causes"]}
    assert causes["temp-path"]["a"] == "/tmp/tmpk2x9a1/gen.c"
    assert causes["temp-path"]["b"] == "/tmp/tmpq7zzb4/gen.c"
    code, out, _ = cli("diff", a, b)
    assert code == 1 and ".rodata" in out and "temp-path" in out and "hint: " in out


@needs_gcc
def test_elf_build_path_from_file_macro_and_the_prefix_map_that_fixes_it(
    cli: Cli, tmp_path: Path
) -> None:
    """``__FILE__`` of a source in two job directories: the hint names the build path;
    with the flags wheelforge sets for every job, the two libraries are byte-identical."""
    job_a = tmp_path / "wa" / "jobs" / "demo"
    job_b = tmp_path / "wb" / "jobs" / "demo"
    lib_a = _library(job_a / "src", "__FILE__")
    lib_b = _library(job_b / "src", "__FILE__")
    a = _wheel(tmp_path / "a", {"demo/libdemo.so": lib_a})
    b = _wheel(tmp_path / "b", {"demo/libdemo.so": lib_b})
    report = diff_paths(a, b)
    [member] = [m for m in report.pairs[0].members if m.name == "demo/libdemo.so"]
    assert ".rodata" in {s.name for s in member.sections}
    [cause] = [c for c in member.causes if c.kind == "build-path"]
    assert cause.a == f"{job_a}/src/lib.c" and cause.b == f"{job_b}/src/lib.c"
    if ".note.gnu.build-id" in {s.name for s in member.sections}:
        assert "build-id" in {c.kind for c in member.causes}

    fixed = []
    for job in (job_a, job_b):
        flags = shlex.split(reproducible_flags(job, {})["CFLAGS"])
        fixed.append(_library(job / "src", "__FILE__", "-g", *flags))
    assert fixed[0] == fixed[1]
    assert f"{MAPPED_PREFIX}/src/lib.c".encode() in fixed[0]


@needs_gcc
def test_elf_timestamp_and_nvcc_temp_name(tmp_path: Path) -> None:
    # gcc takes __DATE__ and __TIME__ from SOURCE_DATE_EPOCH when it is set.
    stamp = '__DATE__ " " __TIME__ " tmpxft_0000%s_00000000-6_k.cudafe1.cpp"'
    lib_a = _library(tmp_path / "la", stamp % "1af8", env={"SOURCE_DATE_EPOCH": "1700000000"})
    lib_b = _library(tmp_path / "lb", stamp % "1c80", env={"SOURCE_DATE_EPOCH": "1700090000"})
    report = diff_paths(
        _wheel(tmp_path / "a", {"demo/libdemo.so": lib_a}),
        _wheel(tmp_path / "b", {"demo/libdemo.so": lib_b}),
    )
    causes = {c.kind: c for c in report.pairs[0].causes}
    assert causes["timestamp"].a != causes["timestamp"].b
    assert causes["temp-name"].a == "tmpxft_00001af8_00000000-6"
    assert causes["temp-name"].b == "tmpxft_00001c80_00000000-6"


@needs_gcc
def test_only_the_build_id_differs_after_strip(tmp_path: Path) -> None:
    """Debug info counts in the build-id; strip removes it but the build-id stays."""
    libs = []
    for side in ("la", "lb"):
        _library(tmp_path / side, '"x"', "-g")  # lib.c at two paths: DW_AT_name differs
        subprocess.run(["strip", tmp_path / side / "libdemo.so"], check=True)
        libs.append((tmp_path / side / "libdemo.so").read_bytes())
    report = diff_paths(
        _wheel(tmp_path / "a", {"demo/libdemo.so": libs[0]}),
        _wheel(tmp_path / "b", {"demo/libdemo.so": libs[1]}),
    )
    [member] = [m for m in report.pairs[0].members if m.name == "demo/libdemo.so"]
    assert [s.name for s in member.sections] == [".note.gnu.build-id"]
    assert [c.kind for c in member.causes] == ["stripped"]
    assert "before the library was stripped" in member.causes[0].hint


def test_gzip_mtime_and_zip_dates(tmp_path: Path) -> None:
    data = b"table\n" * 100
    a = _wheel(tmp_path / "a", {"demo/t.gz": gzip.compress(data, mtime=1)})
    b = _wheel(tmp_path / "b", {"demo/t.gz": gzip.compress(data, mtime=2)})
    [pair] = diff_paths(a, b).pairs
    [member] = [m for m in pair.members if m.name == "demo/t.gz"]
    assert member.kind == "gzip" and member.first_difference == 4
    assert [(c.kind, c.a, c.b) for c in member.causes] == [
        ("timestamp", "gzip mtime 1", "gzip mtime 2")
    ]

    # The same members with other zip dates: only the archive differs.
    c = tmp_path / "c" / a.name
    c.parent.mkdir()
    with zipfile.ZipFile(a) as src, zipfile.ZipFile(c, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            info.date_time = (2025, 6, 1, 12, 0, 0)
            dst.writestr(info, src.read(info))
    [pair] = diff_paths(a, c).pairs
    assert not pair.identical and pair.members == ()
    assert pair.archive[0].startswith("zip dates differ for 4 member(s)")
    assert [(x.kind, x.a, x.b) for x in pair.causes] == [
        ("timestamp", "2024-01-01 00:00:00", "2025-06-01 12:00:00")
    ]


def test_dist_directories_pair_wheels_by_filename(cli: Cli, tmp_path: Path) -> None:
    dist_a, dist_b = tmp_path / "dist-a", tmp_path / "dist-b"
    for dist, extra in ((dist_a, "alpha"), (dist_b, "beta")):
        dist.mkdir()
        build_plain_wheel(dist, "same", "1.0")
        build_plain_wheel(dist, extra, "1.0")
        (dist / "wheelforge-manifest.json").write_text("{}")  # not a wheel: ignored
    code, report = _json(cli, dist_a, dist_b)
    assert code == 1
    assert [Path(p["a"]).name for p in report["pairs"]] == ["same-1.0-py3-none-any.whl"]  # type: ignore[union-attr]
    assert report["pairs"][0]["identical"] is True  # type: ignore[index]
    assert [Path(p).name for p in report["only_a"]] == ["alpha-1.0-py3-none-any.whl"]  # type: ignore[union-attr]
    assert [Path(p).name for p in report["only_b"]] == ["beta-1.0-py3-none-any.whl"]  # type: ignore[union-attr]
    code, out, _ = cli("diff", dist_a, dist_b)
    assert code == 1
    assert f"only in A: {dist_a / 'alpha-1.0-py3-none-any.whl'}" in out
    assert f"only in B: {dist_b / 'beta-1.0-py3-none-any.whl'}" in out
    assert "1 pair(s): 1 identical, 0 differ; 2 wheel(s) without a partner" in out


@pytest.mark.parametrize("case", ["missing", "mixed", "not-a-wheel", "empty-dirs"])
def test_bad_input(cli: Cli, tmp_path: Path, case: str) -> None:
    wheel = _wheel(tmp_path / "w", {"demo/__init__.py": b""})
    (tmp_path / "d1").mkdir()
    (tmp_path / "d2").mkdir()
    junk = tmp_path / "junk-1.0-py3-none-any.whl"
    junk.write_bytes(b"not a zip")
    a, b = {
        "missing": (wheel, tmp_path / "nope.whl"),
        "mixed": (wheel, tmp_path / "d1"),
        "not-a-wheel": (wheel, junk),
        "empty-dirs": (tmp_path / "d1", tmp_path / "d2"),
    }[case]
    code, out, err = cli("diff", a, b)
    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1 and err.startswith("error: ")
