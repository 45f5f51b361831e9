"""Upload targets: indexes that take files through ``twine upload`` (PyPI, TestPyPI,
devpi, pypiserver).

What such an index already holds is read from its simple page before anything is
sent, so a re-run skips what is there and a same-name-different-content file is refused
up front (pypiserver answers both with the same "400 already exists"). Credentials are
twine's: ``TWINE_USERNAME``/``TWINE_PASSWORD``, keyring, or trusted publishing in CI.
They are never put on a command line, and any output shown is scrubbed of them.
"""

from __future__ import annotations

import base64
import html.parser
import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wheelforge.errors import InvalidInput, WheelforgeError
from wheelforge.publish.index import JSON_CONTENT_TYPE


@dataclass(frozen=True)
class UploadTarget:
    name: str  # as shown: an alias or the URL without credentials
    upload_url: str
    simple_url: str
    accepts_variant_filenames: bool  # PyPI refuses labelled wheel names today

    @property
    def holds_variants_file(self) -> bool:
        return False  # twine cannot upload it, and these indexes would not serve it


_KNOWN = {
    "pypi": ("https://upload.pypi.org/legacy/", "https://pypi.org/simple/"),
    "testpypi": ("https://test.pypi.org/legacy/", "https://test.pypi.org/simple/"),
}
_PYPI_HOSTS = {"upload.pypi.org", "pypi.org", "test.pypi.org"}


class UploadFailed(WheelforgeError):
    """The index refused or did not answer (exit code 1)."""


def upload_target(text: str, simple_url: str | None = None) -> UploadTarget:
    """``pypi``, ``testpypi`` or an upload URL (its simple index defaults to
    ``{url}/simple/``, where pypiserver has it)."""
    if text in _KNOWN:
        upload, simple = _KNOWN[text]
        return UploadTarget(text, upload, simple_url or simple, accepts_variant_filenames=False)
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(
            f"--to {redact(text)}: expected pypi, testpypi, an http(s) URL or a directory"
        )
    if parts.username or parts.password:
        raise InvalidInput(
            f"--to {redact(text)}: credentials in the URL would show in logs; "
            "set TWINE_USERNAME and TWINE_PASSWORD instead"
        )
    upload = text if text.endswith("/") else text + "/"
    simple = simple_url or urllib.parse.urljoin(upload, "simple/")
    pypi = parts.hostname in _PYPI_HOSTS
    return UploadTarget(upload, upload, simple, accepts_variant_filenames=not pypi)


def redact(text: str) -> str:
    """A URL with any password replaced by ``***``."""
    parts = urllib.parse.urlsplit(text)
    if parts.password is None:
        return text
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def scrub(text: str) -> str:
    """Output of a tool with every credential this process knows replaced by ``***``."""
    for variable in ("TWINE_PASSWORD", "TWINE_USERNAME"):
        secret = os.environ.get(variable)
        if secret and len(secret) >= 3:
            text = text.replace(secret, "***")
    return text


# -- what the index holds -----------------------------------------------------------


def remote_files(target: UploadTarget, project: str) -> dict[str, str | None]:
    """The files the index lists for ``project``: filename -> sha256 (None if it gives
    no sha256). A project the index does not know yet has none."""
    url = urllib.parse.urljoin(target.simple_url, f"{project}/")
    request = urllib.request.Request(
        url, headers={"Accept": f"{JSON_CONTENT_TYPE}, text/html;q=0.1"}
    )
    try:
        response = _open(request)
    except urllib.error.HTTPError as err:
        if err.code == 404:
            return {}
        credentials = _credentials()
        if err.code in (401, 403) and credentials is not None:
            request.add_header("Authorization", _basic_auth(*credentials))
            try:
                response = _open(request)
            except urllib.error.HTTPError as again:
                raise _listing_failed(target, url, again) from None
        else:
            raise _listing_failed(target, url, err) from None
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise UploadFailed(f"{target.name}: cannot read {url} ({reason})") from None
    with response:
        body = response.read()
        content_type = response.headers.get("Content-Type", "")
    if content_type.startswith(JSON_CONTENT_TYPE):
        try:
            data = json.loads(body)
            return {f["filename"]: f.get("hashes", {}).get("sha256") for f in data["files"]}
        except (ValueError, KeyError, TypeError):
            raise UploadFailed(f"{target.name}: {url} is not a PEP 691 page") from None
    return _links(body.decode("utf-8", "replace"))


def _open(request: urllib.request.Request) -> Any:
    return urllib.request.urlopen(request, timeout=30)


def _listing_failed(target: UploadTarget, url: str, err: urllib.error.HTTPError) -> UploadFailed:
    return UploadFailed(f"{target.name}: reading {url} failed: {err.code} {err.reason}")


def _credentials() -> tuple[str, str] | None:
    user, password = os.environ.get("TWINE_USERNAME"), os.environ.get("TWINE_PASSWORD")
    return (user, password) if user and password else None


def _basic_auth(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class _LinkParser(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.files: dict[str, str | None] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        href = dict(attrs).get("href")
        if tag != "a" or not href:
            return
        url, _, fragment = href.partition("#")
        filename = urllib.parse.unquote(urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1])
        match = re.fullmatch(r"sha256=([0-9a-f]{64})", fragment)
        self.files[filename] = match.group(1) if match else None


def _links(page: str) -> dict[str, str | None]:
    parser = _LinkParser()
    parser.feed(page)
    return parser.files


# -- sending ------------------------------------------------------------------------


def twine_upload(target: UploadTarget, path: Path) -> None:
    """Upload one file with ``twine upload``; a refusal raises with twine's reason."""
    command = [
        sys.executable, "-m", "twine", "--no-color", "upload", "--non-interactive",
        "--disable-progress-bar", "--repository-url", target.upload_url, str(path),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode == 0:
        return
    output = scrub(result.stdout + result.stderr)
    raise UploadFailed(
        f"{target.name}: uploading {path.name} failed: {_reason(output)}", hint=_hint(output)
    )


def _reason(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line.removeprefix("ERROR").strip() for line in lines if line.startswith("ERROR")]
    return (errors or lines or ["twine gave no reason"])[-1]


def _hint(output: str) -> str | None:
    if "403" in output or "401" in output:
        return (
            "the index refused the credentials: set TWINE_USERNAME and TWINE_PASSWORD "
            "(or a keyring entry) for this repository"
        )
    if "No module named twine" in output:
        return "install twine (pip install twine)"
    return None
