"""Upload targets: indexes that take files through ``twine upload`` (PyPI, TestPyPI,
devpi, pypiserver).

What such an index already holds is read from its simple page before anything is
sent, so a re-run skips what is there and a same-name-different-content file is refused
up front (pypiserver answers both with the same "400 already exists"). Credentials are
twine's: ``TWINE_USERNAME``/``TWINE_PASSWORD``, keyring, or trusted publishing in CI.
They are never put on a command line, and any output shown is scrubbed of them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from wheelforge.errors import InvalidInput, WheelforgeError
from wheelforge.simple_api import IndexUnavailable, read_project_page
from wheelforge.urls import check_url, redact, refuse_credentials

CREDENTIALS_INSTEAD = "set TWINE_USERNAME and TWINE_PASSWORD instead"


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
    ``{url}/simple/``, where pypiserver has it). Credentials in either URL are refused."""
    if simple_url is not None:
        check_url("--simple-url", simple_url, instead=CREDENTIALS_INSTEAD)
    if text in _KNOWN:
        upload, simple = _KNOWN[text]
        return UploadTarget(text, upload, simple_url or simple, accepts_variant_filenames=False)
    refuse_credentials("--to", text, instead=CREDENTIALS_INSTEAD)
    try:
        parts = urllib.parse.urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError when out of range or not a number
    except ValueError as err:
        raise InvalidInput(f"--to {redact(text)}: not a valid URL ({err})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(
            f"--to {redact(text)}: expected pypi, testpypi, an http(s) URL or a directory"
        )
    check_url("--to", text, instead=CREDENTIALS_INSTEAD)
    upload = text if text.endswith("/") else text + "/"
    simple = simple_url or urllib.parse.urljoin(upload, "simple/")
    pypi = parts.hostname in _PYPI_HOSTS
    return UploadTarget(upload, upload, simple, accepts_variant_filenames=not pypi)


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
    try:
        listed = read_project_page(target.simple_url, project, auth=credentials())
    except IndexUnavailable as err:
        raise UploadFailed(f"{target.name}: {err.message}") from None
    return {f.filename: f.sha256 for f in listed}


def credentials() -> tuple[str, str] | None:
    """twine's credentials from the environment, to read a private index's pages."""
    user, password = os.environ.get("TWINE_USERNAME"), os.environ.get("TWINE_PASSWORD")
    return (user, password) if user and password else None


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
