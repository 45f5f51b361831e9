"""``wheelforge publish``: verify first, fallbacks before variants, the variants file
last; idempotent, resumable after a kill, and never an index that offers a label whose
wheel is missing. Uploads go to a real pypiserver with upload auth on 127.0.0.1."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import build_plain_wheel
from tests.installers import clean_env, pip_install
from tests.test_index import META, page, release, snapshot
from wheelforge.cli import main
from wheelforge.publish.publisher import STATE_NAME
from wheelforge.publish.serve import serving
from wheelforge.simple_api import JSON_CONTENT_TYPE
from wheelforge.tag import TagRequest, tag_wheel
from wheelforge.variants.metadata import loads
from wheelforge.variants.properties import VariantProperty

Cli = Callable[..., tuple[int, str, str]]
USER, PASSWORD = "alice", "correct-horse-battery"


def big_release(root: Path, variants: int = 24) -> Path:
    """demo 1.0 with a plain wheel, the null variant and many CUDA variants."""
    dist = root / "dist"
    dist.mkdir()
    plain = build_plain_wheel(dist, metadata_extra=META)
    tag_wheel(plain, dist, TagRequest())
    for i in range(variants):
        version = f"{11 + i // 10}.{i % 10}"
        prop = VariantProperty.parse(f"nvidia :: cuda_version_lower_bound :: {version}")
        tag_wheel(plain, dist, TagRequest(properties=frozenset({prop}), label=f"cu{i:02d}"))
    return dist


def wheelforge(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "wheelforge", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def state(dist: Path) -> dict[str, dict[str, str]]:
    try:
        return json.loads((dist / STATE_NAME).read_text())
    except (OSError, ValueError):
        return {}


def kill_after(process: subprocess.Popen[str], dist: Path, target: str, files: int) -> int:
    """SIGKILL ``process`` once it has recorded ``files`` sent files; how many it had."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        sent = len(state(dist).get(target, {}))
        if sent >= files:
            process.send_signal(signal.SIGKILL)
            process.wait()
            return len(state(dist).get(target, {}))
        assert process.poll() is None, process.communicate()
        time.sleep(0.002)
    raise AssertionError("publish recorded no progress")


# -- what the served index offers ---------------------------------------------------


def offered_problems(url: str) -> list[str]:
    """What is wrong with the project page at ``url`` now: a listed file that cannot be
    fetched with its hash, or a label in the variants file whose wheel is not listed."""
    request = urllib.request.Request(url, headers={"Accept": JSON_CONTENT_TYPE})
    try:
        with urllib.request.urlopen(request) as response:
            files = json.load(response)["files"]
    except urllib.error.HTTPError as err:
        return [] if err.code == 404 else [f"page: {err}"]
    problems = []
    labels = {
        f["filename"].rsplit("-", 1)[-1].removesuffix(".whl")
        for f in files
        if f["filename"].count("-") == 5
    }
    for entry in files:
        try:
            with urllib.request.urlopen(urllib.parse.urljoin(url, entry["url"])) as response:
                data = response.read()
        except urllib.error.HTTPError as err:
            problems.append(f"{entry['filename']}: {err}")
            continue
        if hashlib.sha256(data).hexdigest() != entry["hashes"]["sha256"]:
            problems.append(f"{entry['filename']}: hash mismatch")
        if entry["filename"].endswith("-variants.json"):
            missing = set(loads(data, source="served").variants) - labels
            problems += [f"label {label!r} offered without its wheel" for label in sorted(missing)]
    return problems


class Watcher(threading.Thread):
    """Checks the served page over and over while publishing runs."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.stop, self.problems, self.looks = url, threading.Event(), [], 0

    def run(self) -> None:
        while not self.stop.is_set():
            self.problems += offered_problems(self.url)
            self.looks += 1

    def __enter__(self) -> Watcher:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.join()


# -- a static site as the target ----------------------------------------------------


def test_publish_to_a_site_in_order(tmp_path: Path, cli: Cli) -> None:
    dist = release(tmp_path)
    site = tmp_path / "site"
    code, out, err = cli("publish", dist, "--to", site)
    assert code == 0, err
    order = [line.rsplit(" ", 1)[-1] for line in err.splitlines() if ": published " in line]
    assert order == [
        "demo-1.0-py3-none-any.whl",  # fallbacks: the plain wheel, then the null variant
        "demo-1.0-py3-none-any-null.whl",
        "demo-1.0-py3-none-any-cu120.whl",  # variant wheels
        "demo-1.0-py3-none-any-cu130.whl",
        "demo-1.0-variants.json",  # the variants file last
    ]
    assert set(page(site, "demo")) == set(order)
    assert set(state(dist)[str(site)]) == set(order)
    # a re-run sends nothing and changes nothing
    before = snapshot(site)
    code, out, err = cli("publish", dist, "--to", site)
    assert code == 0 and "published" not in err
    assert out.count("already published") == 5
    assert snapshot(site) == before


def test_dry_run_sends_nothing(tmp_path: Path, cli: Cli) -> None:
    dist = release(tmp_path)
    code, out, err = cli("publish", dist, "--to", tmp_path / "site", "--dry-run", "--json")
    assert code == 0, err
    actions = json.loads(out)["actions"]
    assert [a["action"] for a in actions] == ["send"] * 5
    assert actions[-1]["file"] == "demo-1.0-variants.json"
    assert not (tmp_path / "site" / "simple").exists()
    assert not (dist / STATE_NAME).exists()


def test_publish_refuses_a_set_that_fails_check(tmp_path: Path, cli: Cli) -> None:
    dist = release(tmp_path)
    (dist / "demo-1.0-py3-none-any.whl").unlink()
    (dist / "demo-1.0-py3-none-any-null.whl").unlink()
    code, out, err = cli("publish", dist, "--to", tmp_path / "site")
    assert code == 2 and "nothing published" in err and "no fallback" in out
    assert not (tmp_path / "site").exists()


def test_a_killed_publish_resumes_and_never_offers_a_missing_wheel(tmp_path: Path) -> None:
    dist = big_release(tmp_path)
    site = tmp_path / "site"
    site.mkdir()
    (site / "simple").mkdir()
    total = len(list(dist.glob("*.whl"))) + 1
    with serving(site) as url, Watcher(url + "demo/") as watcher:
        killed_at = kill_after(wheelforge("publish", dist, "--to", site), dist, str(site), 5)
        assert 5 <= killed_at < total
        assert offered_problems(url + "demo/") == []
        assert "demo-1.0-variants.json" not in page(site, "demo")  # it comes last
        # the kill may land between a file's page swap and its record in the state file
        listed = len(page(site, "demo"))
        assert killed_at <= listed <= killed_at + 1
        rerun = wheelforge("publish", dist, "--to", site)
        _out, err = rerun.communicate(timeout=300)
        assert rerun.returncode == 0, err
        assert f"resuming: {killed_at} files were sent by an earlier run" in err
        assert err.count(": published ") == total - listed
    assert watcher.looks > 10 and watcher.problems == []
    assert len(page(site, "demo")) == total
    # the same site a single uninterrupted run makes
    assert main(["index", str(dist), "--out", str(tmp_path / "one-shot")]) == 0
    assert page(site, "demo") == page(tmp_path / "one-shot", "demo")


# -- an upload index: pypiserver with upload auth ------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PyPIServer:
    def __init__(self, root: Path) -> None:
        from passlib.apache import HtpasswdFile

        self.packages = root / "packages"
        self.packages.mkdir(parents=True)
        htpasswd = HtpasswdFile(str(root / "htpasswd"), new=True, default_scheme="apr_md5_crypt")
        htpasswd.set_password(USER, PASSWORD)
        htpasswd.save()
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pypiserver",
                "run",
                "-p",
                str(self.port),
                "-i",
                "127.0.0.1",
                "-P",
                str(root / "htpasswd"),
                "-a",
                "update",
                "--disable-fallback",
                str(self.packages),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(self.url + "health", timeout=1):
                    break
            except OSError:
                assert self.process.poll() is None, "pypiserver did not start"
                assert time.monotonic() < deadline, "pypiserver did not answer"
                time.sleep(0.05)

    def files(self) -> dict[str, str]:
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in self.packages.iterdir()}

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


@pytest.fixture
def pypiserver(tmp_path: Path) -> Iterator[PyPIServer]:
    server = PyPIServer(tmp_path / "pypiserver")
    try:
        yield server
    finally:
        server.stop()


def credentials(password: str = PASSWORD) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWINE_")}
    return env | {"TWINE_USERNAME": USER, "TWINE_PASSWORD": password}


def run(*args: str | Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    process = wheelforge(*args, env=env)
    out, err = process.communicate(timeout=600)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


@pytest.mark.slow
def test_upload_to_pypiserver_then_rerun(pypiserver: PyPIServer, tmp_path: Path) -> None:
    dist = release(tmp_path)
    result = run("publish", dist, "--to", pypiserver.url, env=credentials())
    assert result.returncode == 0, result.stderr
    wheels = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in dist.glob("*.whl")}
    assert pypiserver.files() == wheels
    assert "demo-1.0-variants.json" in result.stdout and "not sent" in result.stdout
    assert "publish them to a static site" in result.stdout
    assert PASSWORD not in result.stdout + result.stderr
    assert PASSWORD not in (dist / STATE_NAME).read_text()
    uploaded = [
        line.rsplit(" ", 1)[-1] for line in result.stderr.splitlines() if ": uploaded " in line
    ]
    assert uploaded[:2] == ["demo-1.0-py3-none-any.whl", "demo-1.0-py3-none-any-null.whl"]
    # pip, which ignores labelled wheels, installs the fallback from there
    target = tmp_path / "target"
    pip = pip_install(target, pypiserver.url + "simple/", "demo", clean_env(tmp_path))
    assert pip.returncode == 0, pip.stderr
    assert (target / "demo" / "__init__.py").read_text() == "BUILT_FOR = 'plain'\n"
    # idempotent: everything is there with the same hash, nothing is sent
    again = run("publish", dist, "--to", pypiserver.url, env=credentials())
    assert again.returncode == 0, again.stderr
    assert "uploaded" not in again.stderr and again.stdout.count("already there") == 4
    assert pypiserver.files() == wheels


@pytest.mark.slow
def test_wrong_password_is_a_clear_error_and_stays_secret(
    pypiserver: PyPIServer, tmp_path: Path
) -> None:
    dist = release(tmp_path, labels=())
    result = run("publish", dist, "--to", pypiserver.url, env=credentials("wrong-password-123"))
    assert result.returncode == 1
    assert f"error: {pypiserver.url}: uploading demo-1.0-py3-none-any.whl failed: " in result.stderr
    assert "403 Forbidden" in result.stderr
    assert (
        "hint: the index refused the credentials: set TWINE_USERNAME and TWINE_PASSWORD"
        in result.stderr
    )
    assert "wrong-password-123" not in result.stdout + result.stderr
    assert pypiserver.files() == {}


@pytest.mark.slow
def test_same_name_other_content_is_refused_before_anything_is_sent(
    pypiserver: PyPIServer, tmp_path: Path
) -> None:
    first = release(tmp_path / "first", labels=("cu120",))
    assert run("publish", first, "--to", pypiserver.url, env=credentials()).returncode == 0
    before = pypiserver.files()
    second = release(tmp_path / "second", labels=("cu120", "cu130"))  # cu130 is new
    rebuilt = build_plain_wheel(
        tmp_path, metadata_extra=META, files={"demo/__init__.py": b"# rebuilt\n"}
    )
    (second / rebuilt.name).write_bytes(rebuilt.read_bytes())
    result = run("publish", second, "--to", pypiserver.url, env=credentials())
    assert result.returncode == 2
    assert "error: demo-1.0-py3-none-any.whl: " + pypiserver.url in result.stderr
    assert "already has a file of this name with other content" in result.stderr
    assert "nothing was sent" in result.stderr
    assert pypiserver.files() == before  # not even the new cu130 wheel


@pytest.mark.slow
def test_a_killed_upload_resumes(pypiserver: PyPIServer, tmp_path: Path) -> None:
    dist = release(tmp_path)
    killed_at = kill_after(
        wheelforge("publish", dist, "--to", pypiserver.url, env=credentials()),
        dist,
        pypiserver.url,
        1,
    )
    assert 1 <= killed_at < 4
    result = run("publish", dist, "--to", pypiserver.url, env=credentials())
    assert result.returncode == 0, result.stderr
    assert f"resuming: {killed_at} files were sent by an earlier run" in result.stderr
    assert len(pypiserver.files()) == 4


@pytest.mark.slow
def test_pypi_gets_the_fallbacks_and_the_site_the_variant_set(
    pypiserver: PyPIServer, tmp_path: Path, cli: Cli
) -> None:
    """PyPI refuses variant filenames: it gets the plain wheel; the variant index gets all.
    (PyPI's page is read from a local stand-in, and --dry-run sends nothing to PyPI.)"""
    dist = release(tmp_path)
    site = tmp_path / "site"
    code, out, err = cli(
        "publish",
        dist,
        "--to",
        "pypi",
        "--to",
        site,
        "--dry-run",
        "--json",
        "--simple-url",
        pypiserver.url + "simple/",
    )
    assert code == 0, err
    actions = json.loads(out)
    pypi = {a["file"]: a for a in actions["actions"] if a["target"] == "pypi"}
    assert pypi["demo-1.0-py3-none-any.whl"]["action"] == "send"
    for name in (
        "demo-1.0-py3-none-any-null.whl",
        "demo-1.0-py3-none-any-cu120.whl",
        "demo-1.0-variants.json",
    ):
        assert pypi[name]["action"] == "not sent"
    assert "pypi refuses variant filenames" in pypi["demo-1.0-py3-none-any-cu120.whl"]["reason"]
    to_site = [a for a in actions["actions"] if a["target"] == str(site)]
    assert [a["action"] for a in to_site] == ["send"] * 5
    assert actions["notes"] == [
        f"4 files that the upload indexes cannot take go to the variant index {site}"
    ]


def test_credentials_in_a_url_are_refused(tmp_path: Path, cli: Cli) -> None:
    code, _, err = cli(
        "publish", release(tmp_path), "--to", "https://bob:hunter22@example.org/legacy/"
    )
    assert code == 2 and "set TWINE_USERNAME and TWINE_PASSWORD instead" in err
    assert "hunter22" not in err


def test_an_unreachable_index_is_one_clear_line(tmp_path: Path, cli: Cli) -> None:
    port = _free_port()  # nothing listens there
    code, _, err = cli("publish", release(tmp_path), "--to", f"http://127.0.0.1:{port}/")
    assert code == 1
    assert err.startswith(
        f"error: http://127.0.0.1:{port}/: cannot read http://127.0.0.1:{port}/simple/demo/"
    )
    assert "Connection refused" in err


def test_serving_something_that_is_not_a_site(tmp_path: Path, cli: Cli) -> None:
    code, _, err = cli("serve", tmp_path)
    assert code == 2 and "not a site (no simple/ directory" in err
