"""Reading an index's project page (PEP 503 HTML or PEP 691 JSON) or a find-links
directory: which files a project has, where, with which sha256.

Shared by the stages that look at an index: publish (what a target holds already) and
select (what a machine would get).
"""

from __future__ import annotations

import base64
import hashlib
import html.parser
import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

from wheelforge.errors import InvalidInput, WheelforgeError
from wheelforge.urls import origin, redact, urlopen

JSON_CONTENT_TYPE = "application/vnd.pypi.simple.v1+json"
HTML_CONTENT_TYPE = "application/vnd.pypi.simple.v1+html"
ACCEPT = f"{JSON_CONTENT_TYPE}, {HTML_CONTENT_TYPE};q=0.2, text/html;q=0.01"


class IndexUnavailable(WheelforgeError):
    """An index did not answer, or answered with something that is not a project page."""


@dataclass(frozen=True)
class ProjectFile:
    filename: str
    url: str  # absolute: http(s) or file
    sha256: str | None = None
    requires_python: str | None = None

    def read(self) -> bytes:
        """The file's bytes, checked against its sha256 when the page gave one."""
        data = fetch(self.url)
        if self.sha256 is not None and hashlib.sha256(data).hexdigest() != self.sha256:
            raise IndexUnavailable(
                f"{redact(self.url)}: sha256 mismatch (the page says {self.sha256[:16]}…)"
            )
        return data


def project_files(
    project: str,
    *,
    index_url: str | None = None,
    find_links: Sequence[Path] = (),
    auth: tuple[str, str] | None = None,
    allow_hosts: Sequence[str] = (),
    allow_unhashed: bool = False,
) -> list[ProjectFile]:
    """Every file of ``project`` on the index and in the find-links directories; a
    remote index's files are vetted (see :func:`vet_remote_files`)."""
    files = []
    if index_url is not None:
        files += read_project_page(
            index_url,
            project,
            auth=auth,
            vet=True,
            allow_hosts=allow_hosts,
            allow_unhashed=allow_unhashed,
        )
    for directory in find_links:
        files += directory_files(directory, project)
    return files


def read_project_page(
    index_url: str,
    project: str,
    *,
    auth: tuple[str, str] | None = None,
    vet: bool = False,
    allow_hosts: Sequence[str] = (),
    allow_unhashed: bool = False,
) -> list[ProjectFile]:
    """The files an index lists for ``project``; none if it does not know the project.
    On 401/403 the request is retried once with ``auth`` when given (a redirect to
    another origin drops it). With ``vet``, files that will be downloaded are checked
    first (:func:`vet_remote_files`)."""
    url = urllib.parse.urljoin(index_url if index_url.endswith("/") else index_url + "/",
                               f"{canonicalize_name(project)}/")  # fmt: skip
    request = urllib.request.Request(url, headers={"Accept": ACCEPT})
    try:
        try:
            response = urlopen(request, timeout=30)
        except urllib.error.HTTPError as err:
            if err.code not in (401, 403) or auth is None:
                raise
            request.add_header("Authorization", _basic(*auth))
            response = urlopen(request, timeout=30)
    except urllib.error.HTTPError as err:
        if err.code == 404:
            return []
        raise IndexUnavailable(f"reading {redact(url)} failed: {err.code} {err.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = str(getattr(err, "reason", err))
        raise IndexUnavailable(f"cannot read {redact(url)} ({_scrub(reason, url)})") from None
    with response:
        body = response.read()
        content_type = response.headers.get("Content-Type", "")
        base = response.geturl()
    if content_type.startswith(JSON_CONTENT_TYPE):
        files = parse_json_page(body, base)
    else:
        files = parse_html_page(body.decode("utf-8", "replace"), base)
    if vet:
        vet_remote_files(files, url, base, allow_hosts=allow_hosts, allow_unhashed=allow_unhashed)
    return files


def vet_remote_files(
    files: Sequence[ProjectFile],
    page_url: str,
    final_url: str | None = None,
    *,
    allow_hosts: Sequence[str] = (),
    allow_unhashed: bool = False,
) -> None:
    """Refuse a remote (http/https) page that names a file wheelforge must not read: a
    ``file:`` URL or any other scheme (local files come only from a ``file:`` index or
    --find-links), a host other than the page's (the one asked, or the one it redirected
    to) or an --allow-host, or a file without a sha256 (unless ``allow_unhashed``).
    A local (``file:``) index is the user's own and is not vetted."""
    pages = [page_url, *([final_url] if final_url else [])]
    if all(urllib.parse.urlsplit(page).scheme.lower() == "file" for page in pages):
        return
    shown = redact(page_url)
    hosts = {origin(page)[1] for page in pages} | {host.lower() for host in allow_hosts}
    for file in files:
        scheme, host, _ = origin(file.url)
        if scheme not in ("http", "https"):
            raise InvalidInput(
                f"{shown}: {file.filename} is at a {scheme or 'relative'}: URL; expected an "
                "http(s) URL (local files come only from a file: index or --find-links DIR)"
            )
        if host not in hosts:
            raise InvalidInput(
                f"{shown}: {file.filename} is on another host ({host}); expected "
                f"{' or '.join(sorted(hosts))} (allow a host with --allow-host {host})"
            )
        if file.sha256 is None and not allow_unhashed:
            raise InvalidInput(
                f"{shown}: {file.filename} has no sha256 hash, so a tampered file would go "
                "unnoticed; expected #sha256=… or hashes.sha256 (or pass --allow-unhashed)"
            )


def parse_json_page(body: bytes, base_url: str) -> list[ProjectFile]:
    try:
        entries: list[Any] = json.loads(body)["files"]
        return [
            ProjectFile(
                filename=str(entry["filename"]),
                url=urllib.parse.urljoin(base_url, str(entry["url"])),
                sha256=(entry.get("hashes") or {}).get("sha256"),
                requires_python=entry.get("requires-python"),
            )
            for entry in entries
        ]
    except (ValueError, KeyError, TypeError, AttributeError):
        raise IndexUnavailable(f"{base_url}: not a PEP 691 project page") from None


class _Links(html.parser.HTMLParser):
    def __init__(self, base_url: str) -> None:
        super().__init__()
        self.base_url = base_url
        self.files: list[ProjectFile] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        href = attributes.get("href")
        if tag == "base" and href:
            self.base_url = urllib.parse.urljoin(self.base_url, href)
        if tag != "a" or not href:
            return
        url, _, fragment = href.partition("#")
        filename = urllib.parse.unquote(urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1])
        match = re.fullmatch(r"sha256=([0-9a-f]{64})", fragment)
        self.files.append(
            ProjectFile(
                filename=filename,
                url=urllib.parse.urljoin(self.base_url, url),
                sha256=match.group(1) if match else None,
                requires_python=attributes.get("data-requires-python"),
            )
        )


def parse_html_page(page: str, base_url: str) -> list[ProjectFile]:
    parser = _Links(base_url)
    parser.feed(page)
    return parser.files


def directory_files(directory: Path, project: str) -> list[ProjectFile]:
    """A find-links directory's files of ``project`` (wheels, sdists, variants files)."""
    if not directory.is_dir():
        raise InvalidInput(f"--find-links {directory}: not a directory")
    prefix = canonicalize_name(project).replace("-", "_")
    base = directory.resolve()
    found = []
    for name in sorted(os.listdir(base)):
        stem = name.split("-", 1)[0]
        if canonicalize_name(stem).replace("-", "_") == prefix and (base / name).is_file():
            found.append(ProjectFile(name, (base / name).as_uri()))
    return found


def fetch(url: str) -> bytes:
    if url.startswith("file:"):
        path = Path(urllib.request.url2pathname(urllib.parse.urlsplit(url).path))
        try:
            return path.read_bytes()
        except OSError as err:
            raise IndexUnavailable(f"{path}: {err.strerror}") from None
    try:
        with urlopen(url, timeout=60) as response:
            data: bytes = response.read()
            return data
    except urllib.error.HTTPError as err:
        raise IndexUnavailable(f"fetching {redact(url)} failed: {err.code} {err.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = _scrub(str(getattr(err, "reason", err)), url)
        raise IndexUnavailable(f"cannot fetch {redact(url)} ({reason})") from None


def _scrub(reason: str, url: str) -> str:
    """An error's text without the URL's userinfo (http.client quotes the netloc)."""
    try:
        userinfo = urllib.parse.urlsplit(url).netloc.rpartition("@")[0]
    except ValueError:
        return "malformed URL"
    return reason.replace(userinfo, "***") if userinfo else reason


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
