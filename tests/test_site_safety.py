"""A static site under hostile conditions: two writers at once, symlinks planted in the
site, and ``wheelforge serve`` facing listings, dot-files, symlinks and idle clients."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.test_index import page, release
from tests.test_publish import big_release
from wheelforge.cli import main
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


# -- wheelforge serve -----------------------------------------------------------------


@contextlib.contextmanager
def serving_site(site: Path, idle_timeout: int) -> Iterator[tuple[str, int]]:
    """A real ``wheelforge serve`` of ``site`` with 4 workers; yields (base URL, pid)."""
    command = [sys.executable, "-m", "wheelforge", "serve", str(site), "--port", "0"]
    server = subprocess.Popen(
        [*command, "--idle-timeout", str(idle_timeout), "--workers", "4"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stderr is not None
        line = server.stderr.readline()
        match = re.search(r"at (http://127\.0\.0\.1:\d+)/simple/", line)
        assert match, line
        yield match.group(1), server.pid
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, int]]:
    """A real ``wheelforge serve`` (idle timeout 1 s) of a site with symlinks planted out
    of it; yields (base URL, site, server pid)."""
    root = tmp_path_factory.mktemp("served")
    site = root / "site"
    assert main(["index", str(release(root)), "--out", str(site), "--no-check"]) == 0
    outside = root / "outside"
    outside.mkdir()
    (outside / "secret").write_text("not for the site\n")
    (site / "files" / "demo" / "passwd").symlink_to(outside / "secret")
    (site / "files" / "away").symlink_to(outside)
    with serving_site(site, idle_timeout=1) as (base, pid):
        yield base, site, pid


def status_of(url: str, timeout: float = 30) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as err:
        return err.code


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/files/",
        "/files/demo/",
        "/simple/demo/../../",
        "/.wheelforge.lock",
        "/%2ewheelforge.lock",
        "/simple/.hidden",
        "/files/demo/passwd",  # a symlink to a file outside the site
        "/files/away/secret",  # a symlinked directory out of the site
    ],
)
def test_serve_offers_no_listing_dot_file_or_symlink_out(
    served: tuple[str, Path, int], path: str
) -> None:
    base, _, _ = served
    assert status_of(base + path) == 404


def test_serve_still_serves_pages_and_files(served: tuple[str, Path, int]) -> None:
    base, site, _ = served
    assert status_of(base + "/simple/") == 200
    assert status_of(base + "/simple/demo/") == 200
    url = page(site, "demo")["demo-1.0-py3-none-any.whl"]["url"]
    assert status_of(urllib.parse.urljoin(base + "/simple/demo/", str(url))) == 200


def still_open(sock: socket.socket) -> bool:
    """Whether the server has not closed ``sock`` (nothing to read, no end of stream)."""
    sock.setblocking(False)
    try:
        return sock.recv(1) != b""
    except BlockingIOError:
        return True
    finally:
        sock.setblocking(True)


def test_idle_connections_do_not_take_the_workers(served: tuple[str, Path, int]) -> None:
    """50 idle connections, 4 workers, an idle timeout far longer than any request: the
    request is answered while every idle connection is still open, so it was not
    waiting for them to be closed."""
    _, site, _ = served
    with serving_site(site, idle_timeout=300) as (base, pid):
        host, port = urllib.parse.urlsplit(base).netloc.split(":")
        idle = [socket.create_connection((host, int(port)), timeout=60) for _ in range(50)]
        try:
            assert status_of(base + "/simple/", timeout=120) == 200
            assert all(still_open(sock) for sock in idle)
            threads = len(os.listdir(f"/proc/{pid}/task"))
            assert threads < 20, threads  # no thread for each connection
        finally:
            for sock in idle:
                sock.close()


def test_idle_and_stalled_connections_are_closed(served: tuple[str, Path, int]) -> None:
    base, _, _ = served
    host, port = urllib.parse.urlsplit(base).netloc.split(":")
    idle = [socket.create_connection((host, int(port)), timeout=60) for _ in range(50)]
    try:
        for sock in idle:  # closed by the server after its 1 s idle timeout
            assert sock.recv(1) == b""
        # a client that starts a request and stalls is closed too
        with socket.create_connection((host, int(port)), timeout=60) as slow:
            slow.sendall(b"GET /simple/ HTTP/1.1\r\n")
            assert slow.recv(1) == b""
        assert status_of(base + "/simple/") == 200
    finally:
        for sock in idle:
            sock.close()
