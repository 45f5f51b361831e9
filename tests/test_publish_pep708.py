"""``index``/``publish --tracks/--alternate-location``: PEP 708 links on a static site's
project pages (JSON ``meta.tracks`` and ``alternate-locations``, HTML ``pypi:tracks`` and
``pypi:alternate-locations`` meta tags, api-version 1.2), kept per project across batches;
and the uv configuration ``publish`` prints, installed from for real with uv 0.13.8."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.installers import clean_env, pip_install, selected
from tests.test_index import Cli, html_only, release
from wheelforge.publish.serve import serving

BIN = Path(sys.executable).parent
PYPI_DEMO = "https://pypi.org/simple/demo/"
MIRROR_DEMO = "https://mirror.example/simple/demo/"


class _Head(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.meta: list[tuple[str, str]] = []
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "meta":
            self.meta.append((values["name"] or "", values["content"] or ""))
        elif tag == "a":
            self.links.append(values["href"] or "")


def pages(site: Path, project: str) -> tuple[dict[str, object], _Head]:
    data = json.loads((site / "simple" / project / "index.json").read_text())
    head = _Head()
    head.feed((site / "simple" / project / "index.html").read_text())
    return data, head


def test_index_writes_pep708_links_on_both_pages(tmp_path: Path, cli: Cli) -> None:
    site = tmp_path / "site"
    code, _, err = cli(
        "index", release(tmp_path), "--out", site, "--tracks", PYPI_DEMO,
        "--alternate-location", MIRROR_DEMO, "--alternate-location", PYPI_DEMO,
    )  # fmt: skip
    assert code == 0, err
    data, head = pages(site, "demo")
    assert data["meta"] == {"api-version": "1.2", "tracks": [PYPI_DEMO]}
    assert data["alternate-locations"] == [MIRROR_DEMO, PYPI_DEMO]
    assert head.meta == [
        ("pypi:repository-version", "1.2"),
        ("pypi:tracks", PYPI_DEMO),
        ("pypi:alternate-locations", MIRROR_DEMO),
        ("pypi:alternate-locations", PYPI_DEMO),
    ]
    assert len(head.links) == len(data["files"]) == 5  # type: ignore[arg-type]
    # the root pages carry no PEP 708 data and keep api-version 1.1
    root = json.loads((site / "simple" / "index.json").read_text())
    assert root["meta"] == {"api-version": "1.1"}


def test_a_page_without_links_is_unchanged(tmp_path: Path, cli: Cli) -> None:
    site = tmp_path / "site"
    assert cli("index", release(tmp_path), "--out", site)[0] == 0
    data, head = pages(site, "demo")
    assert data["meta"] == {"api-version": "1.1"}
    assert "alternate-locations" not in data
    assert head.meta == [("pypi:repository-version", "1.1")]


@pytest.mark.parametrize(
    ("option", "url", "message"),
    [
        ("--tracks", "ftp://pypi.org/simple/demo/", "expected an http: or https: URL"),
        ("--tracks", "https://user:secret@pypi.org/simple/demo/", "credentials in the URL"),
        ("--alternate-location", "https:///simple/demo/", "expected a host in the URL"),
        ("--alternate-location", "https://a b/simple/", "spaces or control characters"),
    ],
)
@pytest.mark.parametrize("command", ["index", "publish"])
def test_bad_link_urls_are_one_error_line(
    tmp_path: Path, cli: Cli, command: str, option: str, url: str, message: str
) -> None:
    site = tmp_path / "site"
    where = ["--out", site] if command == "index" else ["--to", site]
    code, out, err = cli(command, tmp_path / "no-dist", *where, option, url)
    assert code == 2
    (line,) = [line for line in err.splitlines() if line.startswith("error:")]
    assert line.startswith(f"error: {option} ") and message in line
    assert "secret" not in err + out
    assert not site.exists()


def test_links_are_kept_per_project_across_publishes(tmp_path: Path, cli: Cli) -> None:
    site = tmp_path / "site"
    other = "https://pypi.org/simple/other/"
    assert cli("publish", release(tmp_path), "--to", site, "--tracks", PYPI_DEMO)[0] == 0
    # another project, with its own links, into the same site: demo keeps its links
    code, _, err = cli("publish", release(tmp_path, "other"), "--to", site, "--tracks", other)
    assert code == 0, err
    assert pages(site, "demo")[0]["meta"] == {"api-version": "1.2", "tracks": [PYPI_DEMO]}
    assert pages(site, "other")[0]["meta"] == {"api-version": "1.2", "tracks": [other]}
    # a new release of demo without --tracks keeps them, and lists the new files
    code, _, err = cli("publish", release(tmp_path, version="1.1"), "--to", site)
    assert code == 0, err
    data, head = pages(site, "demo")
    assert data["meta"] == {"api-version": "1.2", "tracks": [PYPI_DEMO]}
    assert data["versions"] == ["1.0", "1.1"]
    assert ("pypi:tracks", PYPI_DEMO) in head.meta


def test_republishing_with_other_links_replaces_them_with_a_note(tmp_path: Path, cli: Cli) -> None:
    site = tmp_path / "site"
    dist = release(tmp_path)
    assert cli("publish", dist, "--to", site, "--tracks", PYPI_DEMO)[0] == 0
    # every file is already there: the links still change
    code, _, err = cli("publish", dist, "--to", site, "--alternate-location", MIRROR_DEMO)
    assert code == 0, err
    data, head = pages(site, "demo")
    assert data["meta"] == {"api-version": "1.2"}
    assert data["alternate-locations"] == [MIRROR_DEMO]
    assert [m for m in head.meta if m[0] != "pypi:repository-version"] == [
        ("pypi:alternate-locations", MIRROR_DEMO)
    ]
    assert f"note: {site}: demo: PEP 708 links replaced (tracks were {PYPI_DEMO}" in err
    # index does the same
    code, _, err = cli("index", dist, "--out", site, "--tracks", PYPI_DEMO)
    assert code == 0, err
    assert pages(site, "demo")[0]["meta"] == {"api-version": "1.2", "tracks": [PYPI_DEMO]}
    assert "PEP 708 links replaced" in err
    # --clear-links removes them: the pages are as without links again
    code, _, err = cli("publish", dist, "--to", site, "--clear-links")
    assert code == 0, err
    data, head = pages(site, "demo")
    assert data["meta"] == {"api-version": "1.1"}
    assert "alternate-locations" not in data
    assert head.meta == [("pypi:repository-version", "1.1")]
    code, _, err = cli("index", dist, "--out", site, "--clear-links", "--tracks", PYPI_DEMO)
    assert code == 2
    assert "error: --clear-links: give it alone" in err


def test_links_for_a_set_of_several_projects_are_refused(tmp_path: Path, cli: Cli) -> None:
    dist = release(tmp_path)
    for wheel in release(tmp_path, "other").glob("*.whl"):
        wheel.rename(dist / wheel.name)
    site = tmp_path / "site"
    code, _, err = cli("index", dist, "--out", site, "--no-check", "--tracks", PYPI_DEMO)
    assert code == 2
    assert not site.exists()
    assert (
        "error: --tracks/--alternate-location/--clear-links: the set holds 2 projects (demo, other)"
        in err
    )


def test_links_without_a_site_target_are_refused(tmp_path: Path, cli: Cli) -> None:
    code, _, err = cli(
        "publish", release(tmp_path), "--to", "https://upload.example/legacy/",
        "--tracks", PYPI_DEMO, "--dry-run",
    )  # fmt: skip
    assert code == 2
    assert "error: --tracks/--alternate-location/--clear-links: PEP 708 links are written" in err


def test_publish_prints_the_uv_configuration(tmp_path: Path, cli: Cli) -> None:
    site = tmp_path / "site"
    dist = release(tmp_path)
    code, out, err = cli("publish", dist, "--to", site)
    assert code == 0, err
    assert '[[tool.uv.index]]\n  name = "demo-variants"' in out
    assert "explicit = true" in out
    assert 'demo = { index = "demo-variants" }' in out
    assert "https://<where-SITE-is-served>/simple/ is a placeholder: give --public-url" in out
    code, out, _ = cli(
        "publish", dist, "--to", site, "--public-url", "https://o.example/v", "--json"
    )
    (install,) = json.loads(out)["install"]
    assert install["url"] == "https://o.example/v/simple/"
    assert install["placeholder"] is False
    assert install["command"] == (
        "uv pip install --preview-features wheel-variants "
        "--index demo-variants=https://o.example/v/simple/ --index-strategy first-index demo"
    )
    code, _, err = cli("publish", dist, "--to", site, "--public-url", "file:///x")
    assert code == 2
    assert "error: --public-url file:///x: expected an http: or https: URL" in err


@pytest.mark.slow
@pytest.mark.parametrize("served", ["json", "html"])
def test_the_printed_uv_command_and_config_install_the_variant(
    tmp_path: Path, cli: Cli, served: str
) -> None:
    """uv 0.13.8 reads the PEP 708 pages and installs with the command and the
    pyproject.toml configuration ``publish`` printed (the null variant: no driver)."""
    site = tmp_path / "site"
    dist = release(tmp_path)
    tracks = ("--tracks", PYPI_DEMO, "--alternate-location", MIRROR_DEMO)
    assert cli("publish", dist, "--to", site, *tracks)[0] == 0
    server = serving(site) if served == "json" else html_only(site)
    with server as url:
        code, out, err = cli("publish", dist, "--to", site, "--public-url", url, "--json")
        assert code == 0, err
        (install,) = json.loads(out)["install"]
        # the command line, as printed
        env = clean_env(tmp_path / "cmd")
        venv = tmp_path / "venv"
        uv = str(BIN / "uv")
        subprocess.run(
            [uv, "venv", "-q", "--python", sys.executable, str(venv)], env=env, check=True
        )
        command = shlex.split(install["command"])
        assert command[:3] == ["uv", "pip", "install"]
        command = [uv, *command[1:3], "-v", "--python", str(venv / "bin" / "python"), *command[3:]]
        result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stderr
        assert selected(result.stderr, "demo") == "demo-1.0-py3-none-any-null.whl"
        # the pyproject.toml configuration, as printed: uv pip install -r pyproject.toml
        project = tmp_path / "app"
        project.mkdir()
        (project / "pyproject.toml").write_text(
            '[project]\nname = "app"\nversion = "0"\ndependencies = ["demo"]\n\n'
            + install["pyproject"]
        )
        env = clean_env(tmp_path / "toml")
        del env["UV_NO_CONFIG"]  # uv reads the project's [tool.uv]
        venv = tmp_path / "venv2"
        subprocess.run(
            [uv, "venv", "-q", "--python", sys.executable, str(venv)], env=env, check=True
        )
        result = subprocess.run(
            [uv, "pip", "install", "-v", "--preview-features", "wheel-variants",
             "--python", str(venv / "bin" / "python"), "-r", "pyproject.toml"],
            cwd=project, env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert selected(result.stderr, "demo") == "demo-1.0-py3-none-any-null.whl"
        assert url in result.stderr  # read from the pinned index


@pytest.mark.slow
@pytest.mark.parametrize("served", ["json", "html"])
def test_pip_installs_the_fallback_from_pages_with_links(
    tmp_path: Path, cli: Cli, served: str
) -> None:
    site = tmp_path / "site"
    assert cli("index", release(tmp_path), "--out", site, "--tracks", PYPI_DEMO)[0] == 0
    server = serving(site) if served == "json" else html_only(site)
    target = tmp_path / "target"
    with server as url:
        result = pip_install(target, url, "demo", clean_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert (target / "demo" / "__init__.py").read_text() == "BUILT_FOR = 'plain'\n"


@pytest.mark.slow
def test_the_pinned_config_takes_no_other_name_from_the_variant_index(
    tmp_path: Path, cli: Cli
) -> None:
    """Dependency confusion: the variant index also serves ``other`` 9.9 (planted), the
    public index ``other`` 1.0. The printed pyproject configuration (explicit, pinned)
    takes ``other`` from the public index; the one-off command line, which puts the
    variant index first for every name, takes the planted one (as docs/publishing.md
    says)."""
    variants, public = tmp_path / "variants", tmp_path / "public"
    assert cli("index", release(tmp_path), "--out", variants, "--tracks", PYPI_DEMO)[0] == 0
    assert cli("index", release(tmp_path, "other", "9.9"), "--out", variants)[0] == 0
    assert cli("index", release(tmp_path, "other", "1.0"), "--out", public)[0] == 0
    uv = str(BIN / "uv")
    with serving(variants) as url, serving(public) as public_url:
        code, out, err = cli("publish", release(tmp_path / "again"), "--to", variants,
                             "--public-url", url, "--json")  # fmt: skip
        assert code == 0, err
        (install,) = json.loads(out)["install"]
        project = tmp_path / "app"
        project.mkdir()
        (project / "pyproject.toml").write_text(
            '[project]\nname = "app"\nversion = "0"\ndependencies = ["demo", "other"]\n\n'
            + install["pyproject"]
        )
        env = clean_env(tmp_path / "toml")
        del env["UV_NO_CONFIG"]
        venv = tmp_path / "venv"
        subprocess.run(
            [uv, "venv", "-q", "--python", sys.executable, str(venv)], env=env, check=True
        )
        python = str(venv / "bin" / "python")
        pinned = subprocess.run(
            [uv, "pip", "install", "-v", "--preview-features", "wheel-variants", "--python",
             python, "--default-index", public_url, "-r", "pyproject.toml"],
            cwd=project, env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert pinned.returncode == 0, pinned.stderr
        assert selected(pinned.stderr, "demo") == "demo-1.0-py3-none-any-null.whl"
        assert selected(pinned.stderr, "other").startswith("other-1.0-")
        # the command line, as printed, with the public index as the default
        env = clean_env(tmp_path / "cmd")
        venv = tmp_path / "venv2"
        subprocess.run(
            [uv, "venv", "-q", "--python", sys.executable, str(venv)], env=env, check=True
        )
        command = shlex.split(install["command"])
        command = [uv, *command[1:3], "-v", "--python", str(venv / "bin" / "python"),
                   "--default-index", public_url, *command[3:], "other"]  # fmt: skip
        one_off = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        assert one_off.returncode == 0, one_off.stderr
        assert selected(one_off.stderr, "other").startswith("other-9.9-")
