"""``wheelforge serve``: a site on 127.0.0.1 with PEP 691 content negotiation, for tests
and local trials (a production site is any static file server; JSON pages need one
that negotiates on ``Accept`` or clients that ask for ``index.json``)."""

from __future__ import annotations

import functools
import http.server
import io
import os
import selectors
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from wheelforge.errors import InvalidInput
from wheelforge.simple_api import HTML_CONTENT_TYPE, JSON_CONTENT_TYPE

IDLE_TIMEOUT = 10.0  # seconds a connection may sit idle before it is closed
WORKERS = 16  # requests served at once

_CHOICES = {
    JSON_CONTENT_TYPE: "index.json",
    HTML_CONTENT_TYPE: "index.html",
    "text/html": "index.html",
}


def negotiate(accept: str | None, query_format: str | None = None) -> str:
    """The page a request gets: ``index.json`` or ``index.html`` (PEP 691's rules:
    highest q wins, ties go to the order above; no usable Accept means HTML)."""
    if query_format in _CHOICES:
        return _CHOICES[query_format]
    best, best_q = "index.html", 0.0
    for part in (accept or "").split(","):
        media, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for param in params:
            if param.startswith("q="):
                try:
                    q = float(param[2:])
                except ValueError:
                    q = 0.0
        page = _CHOICES.get(media) or ("index.html" if media in ("*/*", "text/*") else None)
        if page is not None and q > best_q:
            best, best_q = page, q
    return best


class _Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {  # noqa: RUF012 - the base class declares it so
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".whl": "application/octet-stream",
        ".metadata": "text/plain; charset=utf-8",
        ".json": "application/json",
    }

    def setup(self) -> None:
        self.timeout = getattr(self.server, "idle_timeout", None)  # type: ignore[misc]
        super().setup()

    def send_head(self) -> IO[bytes] | None:  # type: ignore[override]
        url = urllib.parse.urlsplit(self.path)
        names = urllib.parse.unquote(url.path).split("/")
        if any(name.startswith(".") for name in names):  # the lock, staging, temp files
            self.send_error(404)
            return None
        path = Path(self.translate_path(url.path))
        if not self._in_site(path):  # a symlink out of the site
            self.send_error(404)
            return None
        if path.is_dir() and (path / "index.json").is_file() and url.path.endswith("/"):
            query = urllib.parse.parse_qs(url.query).get("format", [None])[0]
            page = path / negotiate(self.headers.get("Accept"), query)
            if not self._in_site(page):
                self.send_error(404)
                return None
            content_type = JSON_CONTENT_TYPE if page.name == "index.json" else "text/html"
            f = open(page, "rb")  # noqa: SIM115 - the base class closes it
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(os.fstat(f.fileno()).st_size))
            self.send_header("Vary", "Accept")
            self.end_headers()
            return f
        return super().send_head()

    def _in_site(self, path: Path) -> bool:
        root: Path = self.server.root  # type: ignore[attr-defined]
        resolved = path.resolve()
        return resolved == root or root in resolved.parents

    def list_directory(self, path: str | os.PathLike[str]) -> io.BytesIO | None:
        self.send_error(404)  # no listings: a site is read through its pages
        return None

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.quiet:  # type: ignore[attr-defined]
            return
        super().log_message(format, *args)


@contextmanager
def serving(site: Path, port: int = 0, *, quiet: bool = True) -> Iterator[str]:
    """Serve ``site`` on 127.0.0.1 in a thread; yield its ``/simple/`` URL."""
    server = make_server(site, port, quiet=quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield simple_url(server)
    finally:
        server.shutdown()
        server.server_close()


class _PooledServer(http.server.HTTPServer):
    """Requests run on a fixed pool of workers. A connection gets a worker only once it
    has sent something; one idle for ``idle_timeout`` seconds (waiting, or in the middle
    of a request) is closed; past ``max_waiting`` idle connections new ones are closed."""

    def __init__(
        self,
        address: tuple[str, int],
        handler: Any,
        *,
        root: Path,
        idle_timeout: float,
        workers: int,
        max_waiting: int = 1024,
    ) -> None:
        super().__init__(address, handler)
        self.root = root.resolve()
        self.idle_timeout = idle_timeout
        self.quiet = False
        self._max_waiting = max_waiting
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="serve")
        self._selector = selectors.DefaultSelector()
        self._wake_read, self._wake_write = socket.socketpair()
        self._selector.register(self._wake_read, selectors.EVENT_READ)
        self._lock = threading.Lock()
        self._arrived: list[tuple[socket.socket, Any]] = []
        self._waiting: dict[socket.socket, tuple[Any, float]] = {}
        self._closing = False
        self._waiter = threading.Thread(target=self._wait, daemon=True)
        self._waiter.start()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._lock:
            if len(self._arrived) + len(self._waiting) >= self._max_waiting:
                self.shutdown_request(request)
                return
            self._arrived.append((request, client_address))
        self._wake_write.send(b"\0")

    def _wait(self) -> None:
        """Watch idle connections: hand a readable one to a worker, close a stale one."""
        while not self._closing:
            now = time.monotonic()
            deadline = min((d for _, d in self._waiting.values()), default=now + 1.0)
            for key, _ in self._selector.select(max(0.0, deadline - now)):
                if key.fileobj is self._wake_read:
                    self._wake_read.recv(4096)
                    continue
                request = key.fileobj
                self._selector.unregister(request)
                address, _ = self._waiting.pop(request)  # type: ignore[call-overload]
                self._pool.submit(self._work, request, address)
            with self._lock:
                arrived, self._arrived = self._arrived, []
            now = time.monotonic()
            for request, address in arrived:
                self._waiting[request] = (address, now + self.idle_timeout)
                self._selector.register(request, selectors.EVENT_READ)
            for request, (_, deadline) in list(self._waiting.items()):
                if deadline <= now:
                    self._selector.unregister(request)
                    del self._waiting[request]
                    self.shutdown_request(request)
        for request in [*self._waiting, *(r for r, _ in self._arrived)]:
            self.shutdown_request(request)

    def _work(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)

    def server_close(self) -> None:
        super().server_close()
        self._closing = True
        self._wake_write.send(b"\0")
        self._waiter.join()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._selector.close()
        self._wake_read.close()
        self._wake_write.close()


def make_server(
    site: Path,
    port: int = 0,
    *,
    quiet: bool = False,
    idle_timeout: float = IDLE_TIMEOUT,
    workers: int = WORKERS,
) -> http.server.HTTPServer:
    if not (site / "simple").is_dir():
        raise InvalidInput(f"{site}: not a site (no simple/ directory; run 'wheelforge index')")
    if idle_timeout <= 0 or workers < 1:
        raise InvalidInput(
            f"--idle-timeout {idle_timeout}, --workers {workers}: expected positive numbers"
        )
    handler = functools.partial(_Handler, directory=str(site))
    try:
        server = _PooledServer(
            ("127.0.0.1", port), handler, root=site, idle_timeout=idle_timeout, workers=workers
        )
    except OSError as err:
        raise InvalidInput(f"127.0.0.1:{port}: cannot listen ({err.strerror})") from None
    server.quiet = quiet
    return server


def simple_url(server: http.server.HTTPServer) -> str:
    host, port = server.server_address[:2]
    return f"http://{host!s}:{port}/simple/"
