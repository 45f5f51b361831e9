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
                f"{self.url}: sha256 mismatch (the page says {self.sha256[:16]}…)"
            )
        return data


def project_files(
    project: str,
    *,
    index_url: str | None = None,
    find_links: Sequence[Path] = (),
    auth: tuple[str, str] | None = None,
) -> list[ProjectFile]:
    """Every file of ``project`` on the index and in the find-links directories."""
    files = []
    if index_url is not None:
        files += read_project_page(index_url, project, auth=auth)
    for directory in find_links:
        files += directory_files(directory, project)
    return files


def read_project_page(
    index_url: str, project: str, *, auth: tuple[str, str] | None = None
) -> list[ProjectFile]:
    """The files an index lists for ``project``; none if it does not know the project.
    On 401/403 the request is retried once with ``auth`` when given."""
    url = urllib.parse.urljoin(index_url if index_url.endswith("/") else index_url + "/",
                               f"{canonicalize_name(project)}/")  # fmt: skip
    request = urllib.request.Request(url, headers={"Accept": ACCEPT})
    try:
        try:
            response = urllib.request.urlopen(request, timeout=30)
        except urllib.error.HTTPError as err:
            if err.code not in (401, 403) or auth is None:
                raise
            request.add_header("Authorization", _basic(*auth))
            response = urllib.request.urlopen(request, timeout=30)
    except urllib.error.HTTPError as err:
        if err.code == 404:
            return []
        raise IndexUnavailable(f"reading {url} failed: {err.code} {err.reason}") from None
    except (urllib.error.URLError, OSError) as err:
        raise IndexUnavailable(f"cannot read {url} ({getattr(err, 'reason', err)})") from None
    with response:
        body = response.read()
        content_type = response.headers.get("Content-Type", "")
        base = response.geturl()
    if content_type.startswith(JSON_CONTENT_TYPE):
        return parse_json_page(body, base)
    return parse_html_page(body.decode("utf-8", "replace"), base)


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
        with urllib.request.urlopen(url, timeout=60) as response:
            data: bytes = response.read()
            return data
    except urllib.error.HTTPError as err:
        raise IndexUnavailable(f"fetching {url} failed: {err.code} {err.reason}") from None
    except (urllib.error.URLError, OSError) as err:
        raise IndexUnavailable(f"cannot fetch {url} ({getattr(err, 'reason', err)})") from None


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
