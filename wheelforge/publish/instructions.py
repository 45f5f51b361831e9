"""What a user needs to install a published variant set safely with uv: the variant index
as an *explicit* ``[[tool.uv.index]]`` that only the project is pinned to (``[tool.uv.sources]``),
so no other name is ever taken from it, and the ``uv pip install`` command line that
gives the same index.

Why explicit and pinned: with two indexes, a name the variant index serves by mistake
(or that someone plants there) would otherwise shadow PyPI's project of that name, or
the other way round (dependency confusion). ``explicit = true`` makes uv read the index
only for the packages pinned to it."""

from __future__ import annotations

import json
import shlex
import urllib.parse
from dataclasses import asdict, dataclass
from typing import Any

from wheelforge.urls import check_url

PLACEHOLDER = "https://<where-SITE-is-served>/simple/"


def simple_root(public_url: str) -> str:
    """The simple/ root for ``--public-url URL``: URL itself when its path ends in
    ``simple`` or ``simple/``, else URL's ``simple/`` (URL is where SITE is served)."""
    check_url(
        "--public-url", public_url, instead="give the URL users read the index from, without them"
    )
    parts = urllib.parse.urlsplit(public_url)
    path = parts.path if parts.path.endswith("/") else parts.path + "/"
    if not path.endswith("/simple/"):
        path += "simple/"
    return urllib.parse.urlunsplit(parts._replace(path=path, query="", fragment=""))


@dataclass(frozen=True)
class InstallInstructions:
    project: str
    index_name: str
    url: str  # the variant index's simple/ root
    placeholder: bool  # url is a placeholder: no --public-url was given
    pyproject: str  # the TOML to add to the user's pyproject.toml
    command: str  # uv pip install with the same index

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def text(self) -> str:
        lines = [
            f"install {self.project} with uv (the variant index is explicit, pinned to "
            f"{self.project}: no other name is taken from it). In pyproject.toml:",
            "",
            *("  " + line for line in self.pyproject.splitlines()),
            "",
            "or, one-off (the variant index before PyPI for every name; uv's first-index "
            "takes a name found there from there only):",
            "",
            f"  {self.command}",
        ]
        if self.placeholder:
            lines += [
                "",
                f"({self.url} is a placeholder: give --public-url URL, where SITE is served)",
            ]
        return "\n".join(lines)


def install_instructions(project: str, public_url: str | None) -> InstallInstructions:
    url = PLACEHOLDER if public_url is None else simple_root(public_url)
    name = f"{project}-variants"
    toml = "\n".join(
        [
            "[[tool.uv.index]]",
            f"name = {json.dumps(name)}",
            f"url = {json.dumps(url)}",
            "explicit = true",
            "",
            "[tool.uv.sources]",
            f"{project} = {{ index = {json.dumps(name)} }}",
        ]
    )
    command = shlex.join(
        ["uv", "pip", "install", "--preview-features", "wheel-variants",
         "--index", f"{name}={url}", "--index-strategy", "first-index", project]
    )  # fmt: skip
    return InstallInstructions(project, name, url, public_url is None, toml + "\n", command)
