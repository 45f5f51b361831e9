"""A static site under hostile conditions: two writers at once, symlinks planted in the
site, and ``wheelforge serve`` facing listings, dot-files, symlinks and idle clients."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.test_index import page, release
from tests.test_publish import big_release
from wheelforge.variants.metadata import loads

Cli = Callable[..., tuple[int, str, str]]


def publish_cli(dist: Path, site: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "wheelforge", "publish", str(dist), "--to", str(site), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def site_labels(site: Path) -> tuple[set[str], set[str]]:
    """(labels of the variant wheels the page lists, labels the variants file lists)."""
    files = json.loads((site / "simple" / "demo" / "index.json").read_text())["files"]
    wheels = {
        f["filename"].rsplit("-", 1)[-1].removesuffix(".whl")
        for f in files
        if f["filename"].count("-") == 5
    }
    variants = next(f for f in files if f["filename"].endswith("-variants.json"))
    path = site / "simple" / "demo" / variants["url"]
    return wheels, set(loads(path.read_bytes(), source=str(path)).variants)


# -- two writers at once --------------------------------------------------------------


def test_parallel_publishes_of_halves_merge_every_label(tmp_path: Path) -> None:
    whole = big_release(tmp_path, variants=6)
    wheels = sorted(p for p in whole.iterdir() if p.name.count("-") == 5)
    plain = whole / "demo-1.0-py3-none-any.whl"
    halves = []
    for i, part in enumerate((wheels[::2], wheels[1::2])):
        dist = tmp_path / f"half{i}"
        dist.mkdir()
        for wheel in [plain, *part]:
            shutil.copy2(wheel, dist / wheel.name)
        halves.append(dist)
    every = {w.name.rsplit("-", 1)[-1].removesuffix(".whl") for w in wheels}
    deadline = time.monotonic() + 120
    for round_ in range(10):
        site = tmp_path / f"site{round_}"
        runs = [publish_cli(dist, site) for dist in halves]
        for run in runs:
            _, err = run.communicate(timeout=max(1, deadline - time.monotonic()))
            assert run.returncode == 0, err
        listed, offered = site_labels(site)
        assert listed == every, round_
        assert offered == listed, f"round {round_}: variants file lists {sorted(offered)}"


# -- symlinks and planted files in a site ---------------------------------------------


def write_cmd(command: str, dist: Path, site: Path) -> list[str | Path]:
    return ["index", dist, "--out", site] if command == "index" else ["publish", dist, "--to", site]


def refused(code: int, err: str, *expected: str) -> None:
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    for text in expected:
        assert text in lines[0], err


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory beside the site that no command may write into."""
    directory = tmp_path / "outside"
    directory.mkdir()
    (directory / "secret").write_text("not for the site\n")
    return directory


def untouched(directory: Path) -> None:
    assert sorted(p.name for p in directory.iterdir()) == ["secret"]
    assert (directory / "secret").read_text() == "not for the site\n"


@pytest.mark.parametrize("command", ["index", "publish"])
@pytest.mark.parametrize("name", ["files", "simple", ".wheelforge.lock", ".simple.new"])
def test_a_symlinked_site_directory_or_lock_is_refused(
    tmp_path: Path, cli: Cli, outside: Path, command: str, name: str
) -> None:
    dist = release(tmp_path)
    site = tmp_path / "site"
    site.mkdir()
    target = outside / "secret" if name.endswith("lock") else outside
    (site / name).symlink_to(target)
    code, _, err = cli(*write_cmd(command, dist, site))
    refused(code, err, str(site / name), ": a symlink in the site")
    untouched(outside)
    assert (site / name).is_symlink()  # refused, not removed: the owner decides


@pytest.mark.parametrize("command", ["index", "publish"])
def test_a_symlinked_store_file_is_refused(
    tmp_path: Path, cli: Cli, outside: Path, command: str
) -> None:
    dist = release(tmp_path)
    wheel = dist / "demo-1.0-py3-none-any.whl"
    sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
    site = tmp_path / "site"
    store = site / "files" / "demo" / sha[:16]
    store.mkdir(parents=True)
    (store / wheel.name).symlink_to(outside / "secret")
    code, _, err = cli(*write_cmd(command, dist, site))
    refused(code, err, str(store / wheel.name), ": a symlink in the site")
    untouched(outside)
    assert not (site / "simple").exists()


def test_a_symlinked_page_is_refused(tmp_path: Path, cli: Cli, outside: Path) -> None:
    site = tmp_path / "site"
    assert cli("index", release(tmp_path), "--out", site)[0] == 0
    page_json = site / "simple" / "demo" / "index.json"
    page_json.unlink()
    page_json.symlink_to(outside / "secret")
    code, _, err = cli("index", release(tmp_path, version="2.0"), "--out", site)
    refused(code, err, str(page_json), ": a symlink in the site")
    untouched(outside)


@pytest.mark.parametrize("command", ["index", "publish"])
def test_a_planted_store_file_is_verified_not_trusted(
    tmp_path: Path, cli: Cli, command: str
) -> None:
    dist = release(tmp_path)
    wheel = dist / "demo-1.0-py3-none-any-cu120.whl"
    sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
    planted = tmp_path / "site" / "files" / "demo" / sha[:16] / wheel.name
    planted.parent.mkdir(parents=True)
    planted.write_bytes(b"not the wheel")
    code, _, err = cli(*write_cmd(command, dist, tmp_path / "site"))
    refused(code, err, str(planted), "other content")
    assert planted.read_bytes() == b"not the wheel"


def test_a_changed_variants_file_is_not_merged(tmp_path: Path, cli: Cli) -> None:
    site = tmp_path / "site"
    assert cli("index", release(tmp_path, labels=("null", "cu120")), "--out", site)[0] == 0
    listed = page(site, "demo")["demo-1.0-variants.json"]
    stored = site / "simple" / "demo" / str(listed["url"])
    stored.write_bytes(stored.read_bytes().replace(b"cu120", b"cu999"))
    more = tmp_path / "more"
    code, _, err = cli("index", release(more, labels=("null", "cu130")), "--out", site)
    refused(code, err, str(stored.resolve().name), "does not match the sha256")
