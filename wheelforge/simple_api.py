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
from collections.abc import Callable, Sequence
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


class BadPage(IndexUnavailable):
    """A project page that is malformed: bad input (exit code 2), whoever served it."""

    exit_code = 2


MAX_PAGE_BYTES = 64 * 2**20  # a project page; PyPI's largest are a few MiB
MAX_METADATA_BYTES = 16 * 2**20  # a variants file, as every metadata member is capped
_CHUNK = 1 << 20
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_UNSAFE_NAME = re.compile(r"[/\\\x00-\x1f\x7f]")


@dataclass(frozen=True)
class ProjectFile:
    filename: str
    url: str  # absolute: http(s) or file
    sha256: str | None = None
    requires_python: str | None = None

    def read(self, limit: int = MAX_METADATA_BYTES) -> bytes:
        """The file's bytes (a variants file: at most ``limit``), checked against its
        sha256 when the page gave one."""
        chunks: list[bytes] = []
        self._stream(chunks.append, limit)
        return b"".join(chunks)

    def download(self, target: Path) -> None:
        """Stream the file into ``target`` (a wheel may be larger than memory), checked
        against its sha256 when the page gave one; ``target`` is removed if it fails."""
        try:
            with open(target, "wb") as out:
                self._stream(out.write, None)
        except BaseException:
            target.unlink(missing_ok=True)
            raise

    def _stream(self, sink: Callable[[bytes], object], limit: int | None) -> None:
        digest = hashlib.sha256()

        def checked(chunk: bytes) -> None:
            digest.update(chunk)
            sink(chunk)

        fetch_into(self.url, checked, limit)
        if self.sha256 is not None and digest.hexdigest() != self.sha256:
            raise IndexUnavailable(
                f"{redact(self.url)}: sha256 mismatch (the page says {self.sha256[:16]}…)"
            )


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


@dataclass(frozen=True)
class ProjectPage:
    """A project page: its URL, its files and its PEP 708 links (``meta.tracks`` and
    ``alternate-locations`` in JSON; ``<meta name="pypi:tracks">`` and
    ``<meta name="pypi:alternate-locations">`` in HTML)."""

    url: str
    files: tuple[ProjectFile, ...]
    tracks: tuple[str, ...] = ()
    alternate_locations: tuple[str, ...] = ()


def read_project_page(
    index_url: str,
    project: str,
    *,
    auth: tuple[str, str] | None = None,
    vet: bool = False,
    allow_hosts: Sequence[str] = (),
    allow_unhashed: bool = False,
) -> list[ProjectFile]:
    """The files an index lists for ``project`` (see :func:`read_project`)."""
    return list(read_project(index_url, project, auth=auth, vet=vet, allow_hosts=allow_hosts,
                             allow_unhashed=allow_unhashed).files)  # fmt: skip


def project_url(index_url: str, project: str) -> str:
    """The project page's URL on ``index_url`` (PEP 503: the normalized name, a slash)."""
    return urllib.parse.urljoin(index_url if index_url.endswith("/") else index_url + "/",
                                f"{canonicalize_name(project)}/")  # fmt: skip


def read_project(
    index_url: str,
    project: str,
    *,
    auth: tuple[str, str] | None = None,
    vet: bool = False,
    allow_hosts: Sequence[str] = (),
    allow_unhashed: bool = False,
) -> ProjectPage:
    """The page an index serves for ``project``; no files if it does not know the project.
    On 401/403 the request is retried once with ``auth`` when given (a redirect to
    another origin drops it). With ``vet``, files that will be downloaded are checked
    first (:func:`vet_remote_files`)."""
    url = project_url(index_url, project)
    if urllib.parse.urlsplit(url).scheme.lower() == "file":
        return _local_project_page(index_url, url)
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
            return ProjectPage(url, ())
        raise IndexUnavailable(f"reading {redact(url)} failed: {err.code} {err.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = str(getattr(err, "reason", err))
        raise IndexUnavailable(f"cannot read {redact(url)} ({_scrub(reason, url)})") from None
    try:
        with response:
            chunks: list[bytes] = []
            _copy(response, chunks.append, MAX_PAGE_BYTES, redact(url))
            body = b"".join(chunks)
            content_type = response.headers.get("Content-Type", "")
            base = response.geturl()
    except OSError as err:  # the connection broke while the page was read
        raise IndexUnavailable(f"cannot read {redact(url)} ({_scrub(str(err), url)})") from None
    page = _parse(body, base, url, content_type.startswith(JSON_CONTENT_TYPE))
    if vet:
        vet_remote_files(page.files, url, base, allow_hosts=allow_hosts,
                         allow_unhashed=allow_unhashed)  # fmt: skip
    return page


def _parse(body: bytes, base: str, url: str, as_json: bool) -> ProjectPage:
    if as_json:
        tracks, alternates = json_links(body)
        return ProjectPage(url, tuple(parse_json_page(body, base)), tracks, alternates)
    parser = _Links(base)
    parser.feed(body.decode("utf-8", "replace"))
    return ProjectPage(url, tuple(parser.files), tuple(parser.tracks), tuple(parser.alternates))


def json_links(body: bytes) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """PEP 708's ``meta.tracks`` and top-level ``alternate-locations`` of a PEP 691 page
    (anything not a list of strings is a :class:`BadPage`)."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return (), ()  # parse_json_page says what is wrong
    if not isinstance(data, dict):
        return (), ()
    meta = data.get("meta", {})
    found = []
    for where, value in (("meta.tracks", meta.get("tracks", []) if isinstance(meta, dict)
                          else []),
                         ("alternate-locations", data.get("alternate-locations", []))):  # fmt: skip
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise BadPage(f"not a PEP 708 project page: {where}: expected a list of URLs")
        found.append(tuple(value))
    return found[0], found[1]


def _local_project_page(index_url: str, url: str) -> ProjectPage:
    """A project page of a local (``file:``) index such as ``wheelforge index`` writes:
    the project's directory with ``index.json`` (PEP 691) or ``index.html`` (PEP 503),
    or one page file. A project the index does not have: none."""
    root = Path(urllib.request.url2pathname(urllib.parse.urlsplit(index_url).path))
    if not root.is_dir():
        raise InvalidInput(f"--index {index_url}: {root} is not a directory")
    path = Path(urllib.request.url2pathname(urllib.parse.urlsplit(url).path))
    for page, parse_as_json in ((path / "index.json", True), (path / "index.html", False),
                                (path, False)):  # fmt: skip
        if page.is_file():
            try:
                body = page.read_bytes()
            except OSError as err:
                raise IndexUnavailable(f"{page}: cannot read ({err.strerror})") from None
            base = path.as_uri() + "/" if path.is_dir() else page.as_uri()
            return _parse(body, base, url, parse_as_json)
    return ProjectPage(url, ())


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
    """The files of a PEP 691 JSON project page; anything malformed is a :class:`BadPage`
    naming the page and the entry."""
    shown = redact(base_url)
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, nested too deeply
        raise BadPage(f"{shown}: not a PEP 691 project page (not valid JSON)") from None
    entries = data.get("files") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise BadPage(f"{shown}: not a PEP 691 project page (expected a 'files' list)")
    files = []
    for i, entry in enumerate(entries):
        where = f"{shown}: not a PEP 691 project page: files[{i}]"
        if not isinstance(entry, dict):
            raise BadPage(f"{where}: expected an object")
        filename, url = entry.get("filename"), entry.get("url")
        hashes = entry.get("hashes", {})
        requires_python = entry.get("requires-python")
        if not isinstance(filename, str) or not isinstance(url, str):
            raise BadPage(f"{where}: expected 'filename' and 'url' strings")
        if not isinstance(hashes, dict):
            raise BadPage(f"{where}.hashes: expected an object")
        if requires_python is not None and not isinstance(requires_python, str):
            raise BadPage(f"{where}.requires-python: expected a string")
        files.append(
            _file(shown, filename, _join(where, base_url, url), hashes.get("sha256"),
                  requires_python)
        )  # fmt: skip
    return files


def _join(where: str, base_url: str, url: str) -> str:
    try:
        joined = urllib.parse.urljoin(base_url, url)
        urllib.parse.urlsplit(joined).port  # noqa: B018 - ValueError when malformed
    except ValueError as err:
        raise BadPage(f"{where}: url {url[:200]!r} is not a valid URL ({err})") from None
    return joined


def _file(
    page: str, filename: str, url: str, sha256: object, requires_python: str | None
) -> ProjectFile:
    """A page's file, its name a plain file name and its sha256 (if any) a hex digest."""
    if not filename or filename in (".", "..") or _UNSAFE_NAME.search(filename):
        raise BadPage(
            f"{page}: file name {filename[:300]!r}: expected a plain file name (no '/', "
            "'\\' or control characters)"
        )
    if sha256 is not None and not (isinstance(sha256, str) and _SHA256.fullmatch(sha256)):
        raise BadPage(f"{page}: {filename}: sha256 {str(sha256)[:80]!r}: expected 64 hex digits")
    return ProjectFile(filename, url, sha256.lower() if sha256 is not None else None,
                       requires_python)  # fmt: skip


class _Links(html.parser.HTMLParser):
    def __init__(self, base_url: str) -> None:
        super().__init__()
        self.page_url = self.base_url = base_url
        self.files: list[ProjectFile] = []
        self.tracks: list[str] = []
        self.alternates: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        content = attributes.get("content")
        if tag == "meta" and content:
            if attributes.get("name") == "pypi:tracks":
                self.tracks.append(content)
            elif attributes.get("name") == "pypi:alternate-locations":
                self.alternates.append(content)
        href = attributes.get("href")
        if tag == "base" and href:
            self.base_url = _join(f"{redact(self.page_url)}: <base>", self.base_url, href)
        if tag != "a" or not href:
            return
        url, _, fragment = href.partition("#")
        shown = redact(self.page_url)
        where = f"{shown}: link {len(self.files) + 1}"
        joined = _join(where, self.base_url, url)
        filename = urllib.parse.unquote(urllib.parse.urlsplit(joined).path.rsplit("/", 1)[-1])
        match = re.fullmatch(r"sha256=([0-9a-fA-F]{64})", fragment)
        self.files.append(
            _file(shown, filename, joined, match.group(1) if match else None,
                  attributes.get("data-requires-python"))
        )  # fmt: skip


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


def fetch(url: str, limit: int | None = MAX_METADATA_BYTES) -> bytes:
    """The bytes at ``url`` (at most ``limit``: None for no limit)."""
    chunks: list[bytes] = []
    fetch_into(url, chunks.append, limit)
    return b"".join(chunks)


def _copy(source: Any, sink: Callable[[bytes], object], limit: int | None, shown: str) -> None:
    total = 0
    while chunk := source.read(_CHUNK):
        total += len(chunk)
        if limit is not None and total > limit:
            raise BadPage(f"{shown}: larger than {limit:,} bytes; refused")
        sink(chunk)


def fetch_into(url: str, sink: Callable[[bytes], object], limit: int | None) -> None:
    """Stream the bytes at ``url`` into ``sink``, refusing more than ``limit``."""
    if url.startswith("file:"):
        path = Path(urllib.request.url2pathname(urllib.parse.urlsplit(url).path))
        try:
            with open(path, "rb") as source:
                _copy(source, sink, limit, str(path))
        except OSError as err:
            raise IndexUnavailable(f"{path}: {err.strerror}") from None
        return
    try:
        with urlopen(url, timeout=60) as response:
            _copy(response, sink, limit, redact(url))
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
