"""URLs and secrets: one redaction for every URL wheelforge prints, the refusal of
credentials written into a URL option, and the one HTTP opener wheelforge reads with,
whose redirects never carry ``Authorization`` or ``Cookie`` to another origin."""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from http.client import HTTPMessage
from typing import IO, Any

from wheelforge.errors import InvalidInput

# headers that name who is asking: sent to the origin they were given for, only
_SECRET_HEADERS = ("Authorization", "Cookie", "Proxy-authorization")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def redact(url: str) -> str:
    """``url`` with any userinfo (``user:password@`` or ``token@``) shown as ``***@``."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<a malformed URL>" if "@" in url else url
    if "@" not in parts.netloc:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]))


def has_credentials(url: str) -> bool:
    try:
        return "@" in urllib.parse.urlsplit(url).netloc
    except ValueError:
        return "@" in url


def refuse_credentials(option: str, url: str, *, instead: str) -> str:
    """``url`` unchanged when it carries no credentials; else a one-line refusal that
    does not echo them. ``instead`` says where the credentials belong."""
    if has_credentials(url):
        raise InvalidInput(
            f"{option} {redact(url)}: credentials in the URL are refused (they would show "
            f"in logs and travel wherever the URL goes); {instead}"
        )
    return url


def check_url(
    option: str, url: str, *, instead: str, schemes: tuple[str, ...] = ("http", "https")
) -> str:
    """``url`` when it is a well-formed URL of one of ``schemes`` (http(s): with a host
    and a valid port) without credentials; else one line naming ``option`` (and the URL
    without its userinfo)."""
    refuse_credentials(option, url, instead=instead)
    shown = redact(url)
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError when out of range or not a number
    except ValueError as err:
        raise InvalidInput(f"{option} {shown}: not a valid URL ({err})") from None
    scheme = parts.scheme.lower()
    if scheme not in schemes:
        expected = " or ".join(f"{s}:" for s in schemes)
        raise InvalidInput(f"{option} {shown}: expected an {expected} URL")
    if scheme in ("http", "https") and not parts.hostname:
        raise InvalidInput(f"{option} {shown}: expected a host in the URL")
    if any(ord(char) < 0x21 or ord(char) == 0x7F for char in url):
        raise InvalidInput(f"{option} {shown!r}: spaces or control characters in the URL")
    return url


def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) with the scheme's default port filled in."""
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    return scheme, (parts.hostname or "").lower(), port or _DEFAULT_PORTS.get(scheme)


class SameOriginCredentials(urllib.request.HTTPRedirectHandler):
    """Follows http(s) redirects as urllib does, but one that leaves the request's
    origin (scheme, host or port) loses its ``Authorization`` and ``Cookie`` headers.
    (urllib copies every header to the new URL, so a 401 answered with credentials and
    then a 302 elsewhere would hand them to the other host.)"""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        if urllib.parse.urlsplit(newurl).scheme.lower() not in ("http", "https"):
            raise urllib.error.HTTPError(
                redact(req.full_url), code, f"redirect to a {redact(newurl)!r} refused", headers, fp
            )
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and origin(req.full_url) != origin(new.full_url):
            for name in _SECRET_HEADERS:
                new.headers.pop(name, None)
                new.unredirected_hdrs.pop(name, None)
        return new


_OPENER = urllib.request.build_opener(SameOriginCredentials)


def urlopen(request: urllib.request.Request | str, *, timeout: float) -> Any:
    """``urllib.request.urlopen`` through :class:`SameOriginCredentials`."""
    return _OPENER.open(request, timeout=timeout)
