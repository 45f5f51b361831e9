"""The build cache keeps the unrepaired wheel apart from the repaired one: changing how a
variant is repaired never compiles again, jobs that differ only in their repair options
compile once, and a compile or repair that failed in a run is not tried again by another
job of that run.

Real builds of ``tests/fixtures/vendored`` (scikit-build-core, CMake, gcc) and real
auditwheel: with its default top-level ``lib/`` layout auditwheel cannot locate
``libtoy.so.0``, which ``repair-exclude`` fixes. A job that compiles leaves a CMake build
directory in its job folder (``SKBUILD_BUILD_DIR``); one that did not compile has none."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

PROJECT = Path(__file__).resolve().parent / "fixtures" / "vendored"

HEAD = f"""\
[project]
path = "{PROJECT}"

[defaults]
compiler-cache = "none"
config-settings = {{ "cmake.define.VENDORED_LAYOUT" = "{{layout}}" }}
"""

PLAIN = """
[[variants]]
id = "plain"
kind = "plain"
{options}
"""

NULL = """
[[variants]]
id = "cpu"
kind = "null"
{options}
"""

V3 = """
[[variants]]
id = "v3"
label = "x86_64_v3"
properties = ["x86_64 :: level :: v3"]
repair-isa-check = false
{options}
"""

EXCLUDE = 'repair-exclude = ["libtoy.so.0"]'
NOT_LOCATED = 'required library "libtoy.so.0" could not be located'


@dataclass(frozen=True)
class Run:
    code: int
    results: dict[str, dict[str, Any]]  # job id -> its --json entry
    err: str
    base: Path

    def log(self, job: str) -> Path:
        return self.base / "work" / "logs" / f"{job}.log"

    def compiled(self, job: str) -> bool:
        """Whether the job ran CMake: its job folder holds a build directory."""
        return (self.base / "work" / "jobs" / job / "build").exists()

    def manifest(self) -> dict[str, dict[str, Any]]:
        document = json.loads((self.base / "dist" / "wheelforge-manifest.json").read_text())
        return {entry["job"]: entry for entry in document["artifacts"]}


def write_matrix(base: Path, *variants: str, layout: str = "toplevel") -> Path:
    base.mkdir(parents=True, exist_ok=True)
    path = base / "matrix.toml"
    path.write_text(HEAD.replace("{layout}", layout) + "".join(variants))
    return path


def build(base: Path, matrix: Path, cache: Path, *extra: str) -> Run:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(
        [sys.executable, "-m", "wheelforge", "build", "--matrix", str(matrix), "--json",
         "--out", str(base / "dist"), "--cache-dir", str(cache),
         "--work-dir", str(base / "work"), *extra],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    results = {entry["job"]: entry for entry in json.loads(done.stdout)}
    return Run(done.returncode, results, done.stderr, base)


def wheels(cache: Path, kind: str) -> list[Path]:
    return sorted((cache / kind).rglob("*.whl"))


@pytest.fixture(scope="module")
def first(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """One compile for three jobs: plain and cpu without repair options (auditwheel fails),
    v3 with repair-exclude (repairs)."""
    base = tmp_path_factory.mktemp("first")
    matrix = write_matrix(base, PLAIN.format(options=""), NULL.format(options=""),
                          V3.format(options=EXCLUDE))  # fmt: skip
    return build(base, matrix, base / "cache", "--keep-going", "-j", "2")


def test_jobs_differing_only_in_their_repair_options_compile_once(first: Run) -> None:
    assert first.code == 1, first.err
    assert first.results["plain"]["status"] == "failed"
    assert NOT_LOCATED in first.log("plain").read_text()
    # v3 repaired plain's wheel: it compiled nothing, and its log holds its repair alone.
    assert first.results["v3"]["status"] == "repaired", first.err
    assert first.compiled("plain") and not first.compiled("v3")
    assert first.log("v3").read_text().startswith("not compiled: repairing the unrepaired ")
    assert "Build files have been written" not in first.log("v3").read_text()
    entry = first.manifest()["v3"]
    assert entry["compiled"] is False and entry["log"] == str(first.log("v3"))
    cache = first.base / "cache"
    (raw,) = wheels(cache, "raw")  # one compile, cached although its repair failed
    assert raw.parent.name == entry["compile_hash"]
    (repaired,) = wheels(cache, "repaired")
    assert repaired.parent.name == entry["input_hash"]
    with zipfile.ZipFile(first.base / "dist" / first.results["v3"]["wheel"]) as zf:
        assert "vendored/_native.so" in zf.namelist()


def test_a_repair_that_failed_is_not_tried_again_in_the_run(first: Run) -> None:
    assert first.results["cpu"]["status"] == "failed"
    assert first.results["cpu"]["error"] == (
        f"not repaired again: the same repair failed in this run; see {first.log('plain')}"
    )
    assert not first.compiled("cpu") and not first.log("cpu").exists()


def test_changed_repair_options_repair_the_cached_build_without_compiling(
    first: Run, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    shutil.copytree(first.base / "cache", cache)
    matrix = write_matrix(tmp_path, PLAIN.format(options=EXCLUDE))
    second = build(tmp_path, matrix, cache)
    assert second.code == 0, second.err
    assert second.results["plain"]["status"] == "repaired"
    assert second.results["plain"]["compiler_cache"] is None
    assert not second.compiled("plain")
    assert "Build files have been written" not in second.log("plain").read_text()
    assert second.manifest()["plain"]["compiled"] is False
    assert len(wheels(cache, "raw")) == 1
    # Then nothing at all is built again.
    third = build(tmp_path, matrix, cache)
    assert third.code == 0, third.err
    assert third.results["plain"]["status"] == "cached"
    assert third.manifest()["plain"]["compiled"] is False


def test_a_failed_compile_is_not_compiled_again_by_a_job_with_other_repair_options(
    tmp_path: Path,
) -> None:
    matrix = write_matrix(tmp_path, PLAIN.format(options=""), NULL.format(options=EXCLUDE),
                          layout="bogus")  # fmt: skip
    run = build(tmp_path, matrix, tmp_path / "cache", "--keep-going")
    assert run.code == 1
    assert run.results["plain"]["status"] == "failed"
    assert "VENDORED_LAYOUT=bogus: expected toplevel or package" in run.results["plain"]["error"]
    assert run.results["cpu"]["status"] == "failed"
    assert run.results["cpu"]["error"] == (
        f"not built again: the same build failed in this run; see {run.log('plain')}"
    )
    assert not run.compiled("cpu") and not run.log("cpu").exists()
    assert not wheels(tmp_path / "cache", "raw")


def test_a_repair_that_searches_the_build_tree_compiles_although_the_build_is_cached(
    first: Run, tmp_path: Path
) -> None:
    """The cache keeps the unrepaired wheel but not the build tree that
    ``repair-library-path = ["{build}/..."]`` searches: such a job compiles again."""
    cache = tmp_path / "cache"
    shutil.copytree(first.base / "cache", cache)
    option = 'repair-library-path = ["{build}/third_party/toy"]'
    second = build(tmp_path, write_matrix(tmp_path, PLAIN.format(options=option)), cache)
    assert second.code == 0, second.err
    assert second.results["plain"]["status"] == "built"
    assert second.compiled("plain")
    with zipfile.ZipFile(tmp_path / "dist" / second.results["plain"]["wheel"]) as zf:
        assert any(n.startswith("vendored.libs/libtoy") for n in zf.namelist())
