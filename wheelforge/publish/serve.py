"""``wheelforge serve``: a site on 127.0.0.1 with PEP 691 content negotiation, for tests
and local trials (a production site is any static file server; JSON pages need one
that negotiates on ``Accept`` or clients that ask for ``index.json``)."""

from __future__ import annotations

import functools
import http.server
import os
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from wheelforge.errors import InvalidInput
from wheelforge.simple_api import HTML_CONTENT_TYPE, JSON_CONTENT_TYPE

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

    def send_head(self) -> IO[bytes] | None:  # type: ignore[override]
        url = urllib.parse.urlsplit(self.path)
        path = Path(self.translate_path(url.path))
        if path.is_dir() and (path / "index.json").is_file() and url.path.endswith("/"):
            query = urllib.parse.parse_qs(url.query).get("format", [None])[0]
            page = path / negotiate(self.headers.get("Accept"), query)
            content_type = JSON_CONTENT_TYPE if page.name == "index.json" else "text/html"
            f = open(page, "rb")  # noqa: SIM115 - the base class closes it
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(os.fstat(f.fileno()).st_size))
            self.send_header("Vary", "Accept")
            self.end_headers()
            return f
        return super().send_head()

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


def make_server(site: Path, port: int = 0, *, quiet: bool = False) -> http.server.HTTPServer:
    if not (site / "simple").is_dir():
        raise InvalidInput(f"{site}: not a site (no simple/ directory; run 'wheelforge index')")
    handler = functools.partial(_Handler, directory=str(site))
    try:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    except OSError as err:
        raise InvalidInput(f"127.0.0.1:{port}: cannot listen ({err.strerror})") from None
    server.quiet = quiet  # type: ignore[attr-defined]
    return server


def simple_url(server: http.server.HTTPServer) -> str:
    host, port = server.server_address[:2]
    return f"http://{host!s}:{port}/simple/"
