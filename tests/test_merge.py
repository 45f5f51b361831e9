"""``wheelforge merge``: the dist/ directories of separate CI jobs become one release set;
identical duplicates collapse, conflicts name both sources, nothing is half-written."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import build_plain_wheel
from wheelforge.build.manifest import MANIFEST_NAME, Artifact, update_manifest
from wheelforge.ci.merge import merge_dists
from wheelforge.errors import InvalidInput
from wheelforge.publish.check import check_release_set
from wheelforge.tag import TagRequest, tag_wheel
from wheelforge.variants.metadata import Schema, loads
from wheelforge.variants.properties import VariantProperty
from wheelforge.variants_file import check_variants_json, write_variants_json

Cli = Callable[..., tuple[int, str, str]]

META = "Summary: A demo\nDescription-Content-Type: text/markdown\n"
LEVEL = {level: f"x86_64 :: level :: {level}" for level in ("v3", "v4")}
VARIANTS = "demo-1.0-variants.json"
PLAIN = "demo-1.0-py3-none-any.whl"


def _plain(directory: Path, tag: str = "py3-none-any", **kwargs: object) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    return build_plain_wheel(directory, tag=tag, metadata_extra=META, **kwargs)  # type: ignore[arg-type]


def _variant(
    work: Path, out: Path, level: str, *, label: str | None = None, tag: str = "py3-none-any"
) -> Path:
    plain = _plain(work / f"plain-{tag}", tag)
    request = TagRequest(
        properties=frozenset({VariantProperty.parse(LEVEL[level])}), label=label or level
    )
    return tag_wheel(plain, out, request)


def _record(dist: Path, wheel: Path, job: str, **fields: object) -> None:
    """Add ``job``'s entry (for ``wheel``, already in ``dist``) to dist's manifest."""
    data = wheel.read_bytes()
    entry: dict[str, object] = {
        "job": job,
        "kind": "variant",
        "label": None,
        "properties": [],
        "python": "3.12",
        "file": wheel.name,
        "sha256": hashlib.sha256(data).hexdigest(),
        "size": len(data),
        "compression": "deflate",
        "input_hash": f"key-{job}",
        "log": None,
    }
    entry.update(fields)
    update_manifest(dist, [Artifact(**entry)], matrix=Path("matrix/demo.toml"))  # type: ignore[arg-type]


def _job(root: Path, job: str, level: str | None, **tag: str) -> Path:
    """A job's dist/ as ``wheelforge build --only JOB`` leaves it: the wheel, the
    manifest, the variants file (for a variant) and a log that merge ignores."""
    dist = root / "artifacts" / f"wheels-{job}"
    dist.mkdir(parents=True)
    if level is None:
        wheel = _plain(dist)
    else:
        wheel = _variant(root / "work" / job, dist, level, **tag)
        write_variants_json(dist)
    _record(dist, wheel, job, label=level)
    (dist / "build.log").write_text("log\n")
    return dist


@pytest.fixture
def jobs(tmp_path: Path) -> list[Path]:
    return [_job(tmp_path, "plain", None), _job(tmp_path, "v3", "v3"), _job(tmp_path, "v4", "v4")]


def _names(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir()}


def test_merge_is_the_union_and_passes_check(jobs: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "dist"
    result = merge_dists(jobs, out)
    wheels = {p.name for job in jobs for p in job.glob("*.whl")}
    assert _names(out) == wheels | {MANIFEST_NAME, VARIANTS}
    for job in jobs:
        for wheel in job.glob("*.whl"):
            assert (out / wheel.name).read_bytes() == wheel.read_bytes()
    assert set(result.files) == wheels
    assert result.collapsed == 0 and not result.unchanged
    assert result.manifest == out / MANIFEST_NAME
    assert result.variants_files == (out / VARIANTS,)

    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["matrix"] == "matrix/demo.toml"
    assert [e["job"] for e in manifest["artifacts"]] == ["plain", "v3", "v4"]
    assert {e["file"] for e in manifest["artifacts"]} == wheels

    variants = loads((out / VARIANTS).read_bytes(), source=VARIANTS)
    assert set(variants.variants) == {"v3", "v4"}  # each job's own file had one
    assert check_variants_json(out) == []
    report = check_release_set(out)
    assert report.ok, report.errors
    assert not [f for f in report.findings if f.check == "manifest"]


def test_identical_file_in_two_jobs_collapses(jobs: list[Path], tmp_path: Path) -> None:
    shutil.copy(jobs[0] / PLAIN, jobs[1] / PLAIN)  # e.g. the job also built the fallback
    result = merge_dists(jobs, tmp_path / "dist")
    assert result.collapsed == 1
    assert result.files[PLAIN] == (jobs[0], jobs[1])
    assert check_release_set(tmp_path / "dist").ok


def test_same_name_other_content_is_a_conflict(jobs: list[Path], tmp_path: Path, cli: Cli) -> None:
    _plain(jobs[2], files={"demo/__init__.py": b"OTHER = 1\n"})
    out = tmp_path / "dist"
    code, _, err = cli("merge", *jobs, "--out", out)
    assert code == 2
    assert f"conflict: {PLAIN} differs between {jobs[0]} and {jobs[2]}" in err
    assert not out.exists()
    assert _names(tmp_path) == {"artifacts", "work"}  # no temporary directory left


def test_one_job_built_on_one_runner_and_cached_on_another_collapses(
    jobs: list[Path], tmp_path: Path
) -> None:
    wheel = next(jobs[1].glob("*.whl"))
    shutil.copy(wheel, jobs[2])
    runner = {"log": "work/logs/v3.log", "compiled": False, "compiler_cache": {"hits": 3}}
    _record(jobs[2], jobs[2] / wheel.name, "v3", label="v3", **runner)
    result = merge_dists(jobs, tmp_path / "dist")
    assert result.files[wheel.name] == (jobs[1], jobs[2])


def test_manifest_entries_that_differ_are_a_conflict(jobs: list[Path], tmp_path: Path) -> None:
    wheel = next(jobs[1].glob("*.whl"))
    shutil.copy(wheel, jobs[2])
    _record(jobs[2], jobs[2] / wheel.name, "v3", label="v3", input_hash="other")
    with pytest.raises(InvalidInput) as caught:
        merge_dists(jobs, tmp_path / "dist")
    message = caught.value.message
    assert "entries of job 'v3' differ between" in message
    assert str(jobs[1]) in message and str(jobs[2]) in message and "input_hash" in message
    assert not (tmp_path / "dist").exists()


def test_one_job_two_files_is_a_conflict(jobs: list[Path], tmp_path: Path) -> None:
    wheel = next(jobs[2].glob("*.whl"))
    _record(jobs[2], wheel, "v3", label="v3")  # the v4 wheel, claimed by job v3
    with pytest.raises(InvalidInput, match="job 'v3' produced") as caught:
        merge_dists(jobs, tmp_path / "dist")
    assert str(jobs[1]) in caught.value.message and str(jobs[2]) in caught.value.message


def test_identical_manifest_entries_collapse(jobs: list[Path], tmp_path: Path) -> None:
    shutil.copytree(jobs[1], tmp_path / "artifacts" / "wheels-v3-again")
    result = merge_dists([*jobs, tmp_path / "artifacts" / "wheels-v3-again"], tmp_path / "dist")
    assert result.collapsed == 1
    manifest = json.loads((tmp_path / "dist" / MANIFEST_NAME).read_text())
    assert [e["job"] for e in manifest["artifacts"]] == ["plain", "v3", "v4"]


def test_manifests_from_other_matrices_conflict(jobs: list[Path], tmp_path: Path) -> None:
    path = jobs[2] / MANIFEST_NAME
    data = json.loads(path.read_text())
    path.write_text(json.dumps(data | {"matrix": "matrix/other.toml"}))
    with pytest.raises(InvalidInput, match="different matrices") as caught:
        merge_dists(jobs, tmp_path / "dist")
    assert str(jobs[0]) in caught.value.message and str(jobs[2]) in caught.value.message


def test_manifest_entry_without_its_file(jobs: list[Path], tmp_path: Path) -> None:
    wheel = next(jobs[2].glob("*.whl"))
    moved = tmp_path / wheel.name
    wheel.rename(moved)
    _plain(jobs[2], tag="py2-none-any")  # the job dir still holds a wheel
    with pytest.raises(InvalidInput, match="which is in none of the sources") as caught:
        merge_dists(jobs, tmp_path / "dist")
    assert str(jobs[2] / MANIFEST_NAME) in caught.value.message
    assert wheel.name in caught.value.message


def test_conflicting_labels_name_both_jobs(tmp_path: Path) -> None:
    a = _job(tmp_path, "fast-cp312", "v3", label="fast", tag="cp312-none-any")
    b = _job(tmp_path, "fast-cp313", "v4", label="fast", tag="cp313-none-any")
    with pytest.raises(InvalidInput, match="give label 'fast' different properties") as caught:
        merge_dists([a, b], tmp_path / "dist")
    assert f"{a}/{VARIANTS}" in caught.value.message
    assert f"{b}/{VARIANTS}" in caught.value.message
    assert not (tmp_path / "dist").exists()


def test_job_variants_file_must_match_the_wheels(jobs: list[Path], tmp_path: Path) -> None:
    extra = _variant(tmp_path / "work" / "extra", tmp_path / "extra", "v4", label="avx512")
    shutil.copy(extra, jobs[2])
    write_variants_json(jobs[2])  # lists avx512 too
    extra_name = extra.name
    (jobs[2] / extra_name).unlink()
    with pytest.raises(InvalidInput, match="lists label 'avx512', but no source has a wheel"):
        merge_dists(jobs, tmp_path / "dist")


def test_rerun_is_idempotent(jobs: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "dist"
    merge_dists(jobs, out)
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    again = merge_dists(jobs, out)
    assert again.unchanged
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before


def test_out_with_other_files_is_refused(jobs: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "dist"
    merge_dists(jobs[:2], out)
    before = _names(out)
    with pytest.raises(InvalidInput, match="exists and holds other files; remove it"):
        merge_dists(jobs, out)
    assert _names(out) == before
    assert _names(tmp_path) == {"artifacts", "work", "dist"}


def test_empty_out_is_filled(jobs: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "dist"
    out.mkdir()
    assert not merge_dists(jobs, out).unchanged
    assert VARIANTS in _names(out)


@pytest.mark.parametrize("kind", ["missing", "file", "no-wheels"])
def test_source_must_be_a_job_dist(jobs: list[Path], tmp_path: Path, kind: str) -> None:
    bad = tmp_path / "bad"
    if kind == "file":
        bad.write_text("")
    elif kind == "no-wheels":
        bad.mkdir()
        (bad / "build.log").write_text("")
    with pytest.raises(
        InvalidInput, match=r"expected a directory of built wheels \(a job's dist/\)"
    ) as caught:
        merge_dists([*jobs, bad], tmp_path / "dist")
    assert caught.value.message.startswith(f"{bad}: ")
    assert not (tmp_path / "dist").exists()


def test_out_may_not_be_a_source(jobs: list[Path]) -> None:
    with pytest.raises(InvalidInput, match="is also a source"):
        merge_dists(jobs, jobs[0])


def test_schema_option(jobs: list[Path], tmp_path: Path, cli: Cli) -> None:
    code, _, _ = cli("merge", *jobs, "--out", tmp_path / "dist", "--schema", "pep825-v0.1.1")
    assert code == 0
    meta = loads((tmp_path / "dist" / VARIANTS).read_bytes(), source=VARIANTS)
    assert meta.schema is Schema.PEP825_V0_1_1


def test_cli_table_and_check(jobs: list[Path], tmp_path: Path, cli: Cli) -> None:
    shutil.copy(jobs[0] / PLAIN, jobs[1] / PLAIN)
    out = tmp_path / "dist"
    code, stdout, err = cli("merge", *jobs, "--out", out)
    assert code == 0, err
    assert PLAIN in stdout and f"{jobs[0]}, {jobs[1]}" in stdout
    assert VARIANTS in stdout and MANIFEST_NAME in stdout
    assert f"{out}: written: 3 files from 3 directories, 1 identical duplicate collapsed" in err
    assert cli("check", out)[0] == 0
    code, _, err = cli("merge", *jobs, "--out", out)
    assert code == 0 and "unchanged" in err


def test_cli_json(jobs: list[Path], tmp_path: Path, cli: Cli) -> None:
    out = tmp_path / "dist"
    code, stdout, _ = cli("merge", *jobs, "--out", out, "--json")
    assert code == 0
    data = json.loads(stdout)
    assert data["out"] == str(out)
    assert data["files"][PLAIN] == [str(jobs[0])]
    assert data["collapsed"] == 0
    assert data["manifest"] == str(out / MANIFEST_NAME)
    assert data["variants_files"] == [str(out / VARIANTS)]
    assert data["unchanged"] is False
    assert json.loads(cli("merge", *jobs, "--out", out, "--json")[1])["unchanged"] is True


# -- leftovers and links ------------------------------------------------------------


def test_a_merge_killed_midway_leaves_scratch_that_the_next_merge_clears(
    jobs: list[Path], tmp_path: Path, cli: Cli
) -> None:
    out = tmp_path / "dist"
    # A merge that is SIGKILLed while copying its second file: nothing can clean up.
    script = (
        "import os, shutil, signal, sys\n"
        "from pathlib import Path\n"
        "from wheelforge.ci import merge\n"
        "copied = []\n"
        "real = shutil.copyfile\n"
        "def copyfile(src, dst):\n"
        "    if copied: os.kill(os.getpid(), signal.SIGKILL)\n"
        "    copied.append(real(src, dst))\n"
        "merge.shutil.copyfile = copyfile\n"
        "merge.merge_dists([Path(a) for a in sys.argv[2:]], Path(sys.argv[1]))\n"
    )
    run = subprocess.run([sys.executable, "-c", script, str(out), *map(str, jobs)], check=False)
    assert run.returncode == -signal.SIGKILL
    assert not out.exists()
    (left,) = [p for p in tmp_path.iterdir() if p.name.startswith(".dist.")]
    assert left.is_dir() and left.name.endswith(".tmp") and list(left.iterdir())
    code, _, err = cli("merge", *jobs, "--out", out)
    assert code == 0, err
    assert _names(tmp_path) == {"artifacts", "work", "dist"}  # the scratch is gone
    assert check_release_set(out).ok


def test_merge_clears_only_its_own_stale_scratch(jobs: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "dist"
    stale = [tmp_path / ".dist.99999999.deadbeef.tmp", tmp_path / ".dist.cafebabe.tmp"]
    for path in stale:
        path.mkdir()
        (path / PLAIN).write_bytes(b"half")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep").write_text("keep")
    kept = {
        ".dist.0badf00d.tmp": "link",  # a link, even named as scratch: not ours to delete
        f".dist.{os.getpid()}.0badf00d.tmp": "dir",  # a live process: perhaps still merging
        ".dist.notes.tmp": "dir",  # not our naming
        ".other.0badf00d.tmp": "dir",  # another --out's
        ".dist.feedface.tmp": "file",  # not a directory
    }
    for name, kind in kept.items():
        path = tmp_path / name
        if kind == "link":
            path.symlink_to(elsewhere, target_is_directory=True)
        elif kind == "dir":
            path.mkdir()
        else:
            path.write_text("x")
    merge_dists(jobs, out)
    assert not any(path.exists() for path in stale)
    assert _names(tmp_path) == {"artifacts", "work", "dist", "elsewhere", *kept}
    assert (elsewhere / "keep").read_text() == "keep"


def test_merge_out_a_symlink_is_refused(jobs: list[Path], tmp_path: Path, cli: Cli) -> None:
    real = tmp_path / "real"
    real.mkdir()
    out = tmp_path / "dist"
    out.symlink_to(real, target_is_directory=True)
    code, _, err = cli("merge", *jobs, "--out", out)
    assert code == 2
    assert err.strip().splitlines()[0] == (
        f"error: {out}: is a symbolic link; expected --out to be a real directory "
        "(new, empty, or from an identical earlier merge)"
    )
    assert out.is_symlink() and not list(real.iterdir())
