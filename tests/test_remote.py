"""Hostile URLs and remote pages: credentials in URL options are refused and never
echoed; credentials never follow a redirect to another origin (wheelforge's own urllib
reads, and twine's uploads); a remote index page may only name hashed http(s) files on
its own host (or an --allow-host). Real servers on 127.0.0.1, the real CLI."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import build_plain_wheel
from tests.test_index import release
from wheelforge.errors import InvalidInput
from wheelforge.publish.publisher import STATE_NAME
from wheelforge.simple_api import JSON_CONTENT_TYPE, ProjectFile, vet_remote_files
from wheelforge.urls import redact, urlopen

Cli = Callable[..., tuple[int, str, str]]
SECRET = "s3cret-Pa55word"
WHEEL = "demo-1.0-py3-none-any.whl"


class Server:
    """A server on 127.0.0.1 answering from ``routes`` (path -> (status, headers, body));
    it records every request's method, path and headers."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[int, dict[str, str], bytes]] = {}
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                outer.seen.append((self.command, self.path, dict(self.headers.items())))
                route = outer.routes.get(self.path)
                if callable(route):
                    route = route(self)
                status, headers, body = route or (404, {}, b"not here")
                self.send_response(status)
                for name, value in {**headers, "Content-Length": str(len(body))}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = answer

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def authorizations(self) -> list[str]:
        return [h["Authorization"] for _, _, h in self.seen if "Authorization" in h]


@contextmanager
def servers(count: int) -> Iterator[list[Server]]:
    running = [Server() for _ in range(count)]
    try:
        yield running
    finally:
        for server in running:
            server.server.shutdown()
            server.server.server_close()


def one_error_line(code: int, out: str, err: str, *expected: str) -> str:
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for text in expected:
        assert text in lines[0]
    assert SECRET not in out + err
    return lines[0]


# -- credentials in URL options ----------------------------------------------------


def test_redact_hides_any_userinfo() -> None:
    assert redact(f"http://user:{SECRET}@host:8080/simple/") == "http://***@host:8080/simple/"
    assert redact(f"https://{SECRET}@host/") == "https://***@host/"
    assert redact("https://host/simple/") == "https://host/simple/"


@pytest.mark.parametrize(
    "url",
    [f"http://user:{SECRET}@127.0.0.1:1/simple/", f"http://{SECRET}@127.0.0.1:1/simple/"],
)
def test_credentials_in_index_urls_are_refused(url: str, tmp_path: Path, cli: Cli) -> None:
    for args in (
        ("select", "demo", "--index", url),
        ("install", "demo", "--index", url),
        ("coverage", "demo", "--index", url),
    ):
        one_error_line(*cli(*args), f"--index {redact(url)}: credentials in the URL are refused")


@pytest.mark.parametrize(
    ("option", "url"),
    [
        ("--simple-url", f"http://user:{SECRET}@127.0.0.1:1/simple/"),
        ("--to", f"http://{SECRET}@127.0.0.1:1/"),
        ("--to", f"https://user:{SECRET}@127.0.0.1:1/legacy/"),
    ],
)
def test_credentials_in_publish_urls_are_refused(
    option: str, url: str, tmp_path: Path, cli: Cli
) -> None:
    dist = release(tmp_path, labels=())
    args = ["--to", "http://127.0.0.1:1/", "--simple-url", url] if option == "--simple-url" else [
        "--to", url]  # fmt: skip
    one_error_line(*cli("publish", dist, *args), f"{option} http", "://***@127.0.0.1:1/",
                   "set TWINE_USERNAME and TWINE_PASSWORD instead")  # fmt: skip
    assert not (dist / STATE_NAME).exists()


def test_the_refusal_through_the_entry_point(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "wheelforge", "select", "demo", "--index",
         f"http://{SECRET}@127.0.0.1:1/simple/"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    one_error_line(result.returncode, result.stdout, result.stderr, "http://***@127.0.0.1:1/")


# -- redirects: credentials stay with their origin ----------------------------------


def test_authorization_is_kept_on_the_same_origin_and_dropped_elsewhere() -> None:
    with servers(2) as (first, other):
        first.routes["/same"] = (302, {"Location": first.url + "/target"}, b"")
        first.routes["/away"] = (302, {"Location": other.url + "/target"}, b"")
        first.routes["/target"] = (200, {}, b"ok")
        other.routes["/target"] = (200, {}, b"ok")
        for path in ("/same", "/away"):
            request = urllib.request.Request(
                first.url + path, headers={"Authorization": "Basic " + SECRET, "Cookie": SECRET}
            )
            with urlopen(request, timeout=10) as response:
                assert response.read() == b"ok"
    assert first.authorizations() == ["Basic " + SECRET] * 3
    assert other.seen and other.authorizations() == []
    assert all("Cookie" not in headers for _, _, headers in other.seen)


def test_publish_credentials_never_reach_another_origin(
    tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The upload index answers 401, then (with credentials) redirects its simple page
    and its upload endpoint to another port: neither wheelforge's read (urllib) nor
    twine's upload (requests) hands the credentials over."""
    dist = release(tmp_path, labels=())
    monkeypatch.setenv("TWINE_USERNAME", "alice")
    monkeypatch.setenv("TWINE_PASSWORD", SECRET)
    with servers(2) as (index, other):

        def simple(handler: BaseHTTPRequestHandler) -> tuple[int, dict[str, str], bytes]:
            if "Authorization" not in handler.headers:
                return 401, {"WWW-Authenticate": 'Basic realm="x"'}, b""
            return 302, {"Location": other.url + "/simple/demo/"}, b""

        index.routes["/simple/demo/"] = simple  # type: ignore[assignment]
        index.routes["/"] = (302, {"Location": other.url + "/"}, b"")
        code, out, err = cli("publish", dist, "--to", index.url + "/")
    assert code == 1, err
    assert "redirect" in err.lower()
    assert SECRET not in out + err
    # the index got the credentials: the read's retry and twine's POST
    assert len(index.authorizations()) >= 2
    assert [m for m, _, _ in index.seen].count("POST") >= 1
    # the other origin got the redirected read, without them, and no upload
    assert [(m, p) for m, p, _ in other.seen] == [("GET", "/simple/demo/")]
    assert other.authorizations() == []


# -- remote pages -------------------------------------------------------------------


def page(*files: dict[str, object]) -> tuple[int, dict[str, str], bytes]:
    body = {"meta": {"api-version": "1.0"}, "name": "demo", "files": list(files)}
    return 200, {"Content-Type": JSON_CONTENT_TYPE}, json.dumps(body).encode()


def entry(url: str, sha256: str | None) -> dict[str, object]:
    return {"filename": WHEEL, "url": url, "hashes": {"sha256": sha256} if sha256 else {}}


@pytest.fixture
def wheel(tmp_path: Path) -> tuple[bytes, str]:
    (tmp_path / "built").mkdir()
    path = build_plain_wheel(tmp_path / "built")
    data = path.read_bytes()
    return data, hashlib.sha256(data).hexdigest()


@pytest.fixture
def bare_python(tmp_path: Path) -> Path:
    """A venv without pip: an install that got through would fail there, and leave
    nothing in this test environment."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", tmp_path / "venv"], check=True)
    return tmp_path / "venv" / "bin" / "python"


def installed(python: Path) -> list[Path]:
    return list(python.parent.parent.glob("lib/python*/site-packages/demo*"))


@pytest.mark.parametrize("where", ["shadow", "local-wheel"])
def test_a_remote_page_may_not_name_local_files(
    where: str, tmp_path: Path, cli: Cli, wheel: tuple[bytes, str], bare_python: Path
) -> None:
    _, digest = wheel
    target = tmp_path / "built" / WHEEL
    if where == "shadow":
        target = tmp_path / "shadow"
        target.write_text(f"root:{SECRET}:19000::::::\n")
        digest = hashlib.sha256(target.read_bytes()).hexdigest()
    with servers(1) as (index,):
        index.routes["/simple/demo/"] = page(entry(target.as_uri(), digest))
        for command in ("select", "install"):
            one_error_line(
                *cli(command, "demo", "--index", index.url + "/simple/", "--python", bare_python),
                f"error: {index.url}/simple/demo/: {WHEEL} is at a file: URL; expected an http(s) URL",
            )
    assert installed(bare_python) == []


def test_files_on_another_host_need_allow_host(
    cli: Cli, wheel: tuple[bytes, str], bare_python: Path
) -> None:
    data, digest = wheel
    with servers(2) as (index, other):
        elsewhere = other.url.replace("127.0.0.1", "localhost") + "/files/" + WHEEL
        other.routes["/files/" + WHEEL] = (200, {}, data)
        index.routes["/simple/demo/"] = page(entry(elsewhere, digest))
        url = index.url + "/simple/"
        for command in ("select", "install", "coverage"):
            one_error_line(
                *cli(command, "demo", "--index", url,
                     *(["--python", str(bare_python)] if command != "coverage" else [])),
                f"{WHEEL} is on another host (localhost); expected 127.0.0.1 "
                "(allow a host with --allow-host localhost)",
            )  # fmt: skip
        assert other.seen == []
        code, out, err = cli("select", "demo", "--index", url, "--allow-host", "localhost")
        assert (code, out.strip()) == (0, WHEEL), err
        assert [p for _, p, _ in other.seen] == []  # a plain wheel: nothing to read yet
    assert installed(bare_python) == []


def test_unhashed_files_need_allow_unhashed(
    tmp_path: Path, cli: Cli, wheel: tuple[bytes, str], bare_python: Path
) -> None:
    data, _ = wheel
    tampered = data.replace(b"BUILT_FOR = 'plain'", b"BUILT_FOR = 'EVIL!'")
    with servers(1) as (index,):
        index.routes["/files/" + WHEEL] = (200, {}, tampered)
        index.routes["/simple/demo/"] = page(entry("/files/" + WHEEL, None))
        url = index.url + "/simple/"
        for command in ("select", "install"):
            one_error_line(
                *cli(command, "demo", "--index", url, "--python", bare_python),
                f"error: {url}demo/: {WHEEL} has no sha256 hash",
                "(or pass --allow-unhashed)",
            )
        assert [p for _, p, _ in index.seen] == ["/simple/demo/"] * 2
        code, out, err = cli("select", "demo", "--index", url, "--allow-unhashed")
        assert (code, out.strip()) == (0, WHEEL), err
    assert installed(bare_python) == []


def test_a_local_index_may_name_local_files(tmp_path: Path) -> None:
    files = [ProjectFile(WHEEL, (tmp_path / WHEEL).as_uri())]  # no hash either
    vet_remote_files(files, (tmp_path / "simple" / "demo").as_uri() + "/")
    with pytest.raises(InvalidInput, match="is at a file: URL"):
        vet_remote_files(files, "https://example.org/simple/demo/")
