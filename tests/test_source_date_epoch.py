"""``source-date-epoch = false``: the build runs without ``SOURCE_DATE_EPOCH`` (ggml's
CMakeLists turns its native-CPU default off when it is set), the caller's value
included, while wheelforge's own zip dates still take it.

The project is a small real scikit-build-core project whose CMakeLists records what the
build saw, as ggml decides ``GGML_NATIVE``'s default: ``if(DEFINED
ENV{SOURCE_DATE_EPOCH})``."""

from __future__ import annotations

import dataclasses
import json
import zipfile
from pathlib import Path

import pytest

from wheelforge.build.cache import compile_key
from wheelforge.build.toolchains import Toolchain
from wheelforge.cli import main
from wheelforge.matrix import Job

EPOCH = "1700000000"  # the caller's SOURCE_DATE_EPOCH: 2023-11-14 22:13:20 UTC

PYPROJECT = """\
[build-system]
requires = ["scikit-build-core>=0.10"]
build-backend = "scikit_build_core.build"

[project]
name = "sde"
version = "0.1.0"

[tool.scikit-build]
wheel.py-api = "py3"
cmake.version = ">=3.25"
wheel.packages = ["src/sde"]
"""

CMAKELISTS = """\
cmake_minimum_required(VERSION 3.25)
project(sde LANGUAGES C)
if(DEFINED ENV{SOURCE_DATE_EPOCH})
  set(SEEN "$ENV{SOURCE_DATE_EPOCH}")
else()
  set(SEEN "unset")
endif()
file(WRITE "${CMAKE_CURRENT_BINARY_DIR}/seen.txt" "${SEEN}")
add_library(_core MODULE core.c)
set_target_properties(_core PROPERTIES PREFIX "")
install(TARGETS _core LIBRARY DESTINATION sde)
install(FILES "${CMAKE_CURRENT_BINARY_DIR}/seen.txt" DESTINATION sde)
"""

# Off in [defaults], on again for the plain wheel: the plain wheel and the null variant
# would otherwise share one compile.
MATRIX = """\
[project]
path = "proj"

[defaults]
source-date-epoch = false

[[variants]]
kind = "plain"
source-date-epoch = true

[[variants]]
kind = "null"
"""


def build(base: Path, out: str, *extra: str) -> int:
    return main(
        [
            "build", "--matrix", str(base / "matrix.toml"), "--out", str(base / out),
            "--cache-dir", str(base / "cache"), "--work-dir", str(base / "work"), "--json",
            *extra,
        ]
    )  # fmt: skip


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("sde")
    package = base / "proj" / "src" / "sde"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (base / "proj" / "pyproject.toml").write_text(PYPROJECT)
    (base / "proj" / "CMakeLists.txt").write_text(CMAKELISTS)
    (base / "proj" / "core.c").write_text("int sde_answer(void) { return 42; }\n")
    (base / "matrix.toml").write_text(MATRIX)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SOURCE_DATE_EPOCH", EPOCH)
        assert build(base, "dist", "-j", "2") == 0
    return base


def wheels(dist: Path) -> dict[str, Path]:
    """By label: "plain" for the plain wheel."""
    found = {}
    for wheel in dist.glob("*.whl"):
        parts = wheel.stem.split("-")
        found[parts[5] if len(parts) == 6 else "plain"] = wheel
    return found


@pytest.mark.slow
def test_the_build_sees_source_date_epoch_only_where_the_matrix_keeps_it(base: Path) -> None:
    built = wheels(base / "dist")
    assert set(built) == {"plain", "null"}
    with zipfile.ZipFile(built["plain"]) as zf:
        assert zf.read("sde/seen.txt") == EPOCH.encode()
    with zipfile.ZipFile(built["null"]) as zf:
        assert zf.read("sde/seen.txt") == b"unset"  # the caller's value was removed too


@pytest.mark.slow
def test_zip_dates_still_take_source_date_epoch(base: Path) -> None:
    for wheel in wheels(base / "dist").values():
        with zipfile.ZipFile(wheel) as zf:
            dates = {info.date_time for info in zf.infolist()}
        assert dates == {(2023, 11, 14, 22, 13, 20)}, wheel.name


@pytest.mark.slow
def test_a_rebuild_without_it_is_byte_identical_and_the_key_is_cached(
    base: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SOURCE_DATE_EPOCH", EPOCH)
        assert build(base, "dist-cached") == 0
        statuses = {r["job"]: r["status"] for r in json.loads(capsys.readouterr().out)}
        assert statuses == {"plain": "cached", "null": "cached"}  # two keys, both kept
        assert build(base, "dist-again", "--only", "null", "--no-cache") == 0
    again = wheels(base / "dist-again")["null"]
    assert again.read_bytes() == wheels(base / "dist")["null"].read_bytes()


def test_it_is_part_of_the_compile_key() -> None:
    job = Job("null", "null", "null", frozenset(), "3")
    toolchain = Toolchain("host", "/usr/bin/gcc", "12.2.0")
    keys = {
        compile_key(dataclasses.replace(job, source_date_epoch=on), "src", toolchain, "3.11", EPOCH)
        for on in (True, False)
    }
    assert len(keys) == 2
