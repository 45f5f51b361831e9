"""``check --against`` and ``publish``'s check of the set against other indexes, with
two real local indexes: pypiserver as the public index (plain wheel, dependencies) and a
wheelforge site as the variant index (the whole set, a kernels package only it serves)."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import build_plain_wheel
from tests.test_index import META
from tests.test_publish import (
    PASSWORD,
    PyPIServer,
    _free_port,
    credentials,
    pypiserver,  # noqa: F401 - the fixture
    run,
)
from wheelforge.cli import main
from wheelforge.simple_api import JSON_CONTENT_TYPE as JSON
from wheelforge.tag import TagRequest, tag_wheel
from wheelforge.variants.properties import VariantProperty

Cli = Callable[..., tuple[int, str, str]]
PLAIN = "demo-1.0-py3-none-any.whl"
KERNELS = "demo-cuda-kernels"  # served by the variant index only


def variant_release(root: Path, *, kernels: bool = True) -> Path:
    """demo 1.0: a plain wheel requiring dep-public (conditionally), a cu120 variant that
    also requires the kernels package (when ``kernels``)."""
    dist = root / "dist"
    dist.mkdir(parents=True)
    plain = build_plain_wheel(
        dist, metadata_extra=META, requires=('dep-public>=1; python_version >= "3"',)
    )
    prop = VariantProperty.parse("nvidia :: cuda_version_lower_bound :: 12.0")
    extra = (f"{KERNELS}>=1",) if kernels else ()
    tag_wheel(
        plain,
        dist,
        TagRequest(properties=frozenset({prop}), label="cu120", requires_dist=extra),
    )
    return dist


def public_index(server: PyPIServer, dist: Path, tmp_path: Path) -> None:
    """pypiserver holding dep-public and the release's plain wheel (the same bytes)."""
    dep = tmp_path / "public-dep"
    dep.mkdir()
    shutil.copy(build_plain_wheel(dep, "dep_public", "1.0", metadata_extra=META), server.packages)
    shutil.copy(dist / PLAIN, server.packages)


def variant_index(tmp_path: Path, dist: Path) -> Path:
    """A wheelforge site with the whole set, the kernels package and a mirrored
    dep-public."""
    site = tmp_path / "site"
    for name in (KERNELS, "dep-public"):
        directory = tmp_path / name
        directory.mkdir()
        build_plain_wheel(directory, name.replace("-", "_"), "1.0", metadata_extra=META)
        assert main(["index", str(directory), "--out", str(site)]) == 0
    assert main(["index", str(dist), "--out", str(site)]) == 0
    return site


def against_findings(out: str) -> list[dict[str, str]]:
    return [f for f in json.loads(out)["findings"] if f["check"] == "against"]


@pytest.mark.slow
def test_identical_plain_wheel_and_known_requirements_pass(
    pypiserver: PyPIServer,  # noqa: F811
    tmp_path: Path,
    cli: Cli,
) -> None:
    dist = variant_release(tmp_path, kernels=False)
    public_index(pypiserver, dist, tmp_path)
    code, out, err = cli(
        "check", dist, "--against", pypiserver.url + "simple/", "--published-there", "--json"
    )
    assert code == 0, out + err
    assert against_findings(out) == []


@pytest.mark.slow
def test_same_name_other_bytes_is_caught_and_publish_sends_nothing(
    pypiserver: PyPIServer,  # noqa: F811
    tmp_path: Path,
    cli: Cli,
) -> None:
    dist = variant_release(tmp_path, kernels=False)
    other = tmp_path / "other"
    other.mkdir()
    rebuilt = build_plain_wheel(
        other,
        metadata_extra=META,
        requires=('dep-public>=1; python_version >= "3"',),
        files={"demo/__init__.py": b"# rebuilt\n"},
    )
    public_index(pypiserver, dist, tmp_path)
    shutil.copy(rebuilt, pypiserver.packages)  # the same name, other bytes
    simple = pypiserver.url + "simple/"
    code, out, err = cli("check", dist, "--against", simple, "--json")
    assert code == 1, err
    (finding,) = against_findings(out)
    assert finding["severity"] == "error" and finding["file"] == PLAIN
    assert simple in finding["message"] and "other content" in finding["message"]
    assert pypiserver.files()[PLAIN] in finding["message"]  # theirs
    ours = subprocess.run(["sha256sum", dist / PLAIN], capture_output=True, text=True)
    assert ours.stdout.split()[0] in finding["message"]
    # the table form names the file and the check too
    code, out, _ = cli("check", dist, "--against", simple)
    assert code == 1 and "against" in out and PLAIN in out
    # publish to the variant index with --against the public one: nothing is written
    site = tmp_path / "site"
    code, _, err = cli("publish", dist, "--to", site, "--against", simple)
    assert code == 2
    assert "--against errors, nothing was sent" in err and PLAIN in err
    assert not (site / "simple").exists()


@pytest.mark.slow
def test_a_requirement_only_the_variant_index_serves_is_refused(
    pypiserver: PyPIServer,  # noqa: F811
    tmp_path: Path,
    cli: Cli,
) -> None:
    dist = variant_release(tmp_path)
    public_index(pypiserver, dist, tmp_path)
    site = variant_index(tmp_path, dist)
    simple = pypiserver.url + "simple/"
    # against the variant index itself every name is known...
    code, out, err = cli("check", dist, "--against", (site / "simple").as_uri(), "--json")
    assert code == 0, out + err
    # ...against the public one the kernels name is dependency confusion waiting to happen
    code, out, err = cli("check", dist, "--against", simple, "--json")
    assert code == 1, err
    (finding,) = against_findings(out)
    assert finding["file"] == "demo-1.0-py3-none-any-cu120.whl"
    assert f"requires {KERNELS}, which {simple} does not know" in finding["message"]
    assert "dependency confusion" in finding["message"]
    # publish to the public index runs the same check first and uploads nothing
    before = pypiserver.files()
    code, _, err = cli("publish", dist, "--to", pypiserver.url, "--dry-run")
    assert code == 2 and f"requires {KERNELS}" in err  # a dry run says so too
    result = run("publish", dist, "--to", pypiserver.url, env=credentials())
    assert result.returncode == 2, result.stderr
    assert f"requires {KERNELS}" in result.stderr and "nothing was sent" in result.stderr
    assert "uploaded" not in result.stderr
    assert pypiserver.files() == before
    assert PASSWORD not in result.stdout + result.stderr


@pytest.mark.slow
def test_published_there_needs_the_project_and_its_fallbacks(
    pypiserver: PyPIServer,  # noqa: F811
    tmp_path: Path,
    cli: Cli,
) -> None:
    dist = variant_release(tmp_path, kernels=False)
    dep = tmp_path / "dep"
    dep.mkdir()
    shutil.copy(
        build_plain_wheel(dep, "dep_public", "1.0", metadata_extra=META), pypiserver.packages
    )
    simple = pypiserver.url + "simple/"
    code, out, _ = cli("check", dist, "--against", simple, "--json")
    assert code == 0 and against_findings(out) == []  # not published there: not asked
    code, out, _ = cli("check", dist, "--against", simple, "--published-there", "--json")
    assert code == 1
    (finding,) = against_findings(out)
    assert finding["file"] == "demo" and f"{simple} does not know demo" in finding["message"]


def test_a_page_without_hashes_is_compared_by_downloading(tmp_path: Path, cli: Cli) -> None:
    dist = variant_release(tmp_path, kernels=False)
    index = tmp_path / "index"
    for project, files in {
        "demo": {PLAIN: b"not the same bytes"},
        "dep-public": {"dep_public-1.0.tar.gz": b"an sdist"},
    }.items():
        (index / project).mkdir(parents=True)
        links = "".join(f'<a href="{name}">{name}</a>' for name in files)
        (index / project / "index.html").write_text(f"<html><body>{links}</body></html>")
        for name, data in files.items():
            (index / project / name).write_bytes(data)
    code, out, err = cli("check", dist, "--against", index.as_uri(), "--json")
    assert code == 1, err
    (finding,) = against_findings(out)
    assert finding["file"] == PLAIN and "(larger than this file)" not in finding["message"]
    assert "other content" in finding["message"]
    (index / "demo" / PLAIN).write_bytes((dist / PLAIN).read_bytes())
    code, out, err = cli("check", dist, "--against", index.as_uri(), "--json")
    assert code == 0, out + err


def test_an_unreachable_index_is_one_error_line(tmp_path: Path, cli: Cli) -> None:
    dist = variant_release(tmp_path, kernels=False)
    url = f"http://127.0.0.1:{_free_port()}/simple/"  # nothing listens there
    code, _, err = cli("check", dist, "--against", url)
    assert code == 2
    assert err.startswith(f"error: --against {url}: cannot read {url}")
    assert len([line for line in err.splitlines() if line.startswith("error:")]) == 1


@pytest.mark.parametrize(
    "url",
    ["https://bob:hunter22@example.org/simple/", "ftp://example.org/simple/", "http://:80/"],
)
def test_a_bad_against_url_is_refused_before_anything(url: str, tmp_path: Path, cli: Cli) -> None:
    dist = variant_release(tmp_path, kernels=False)
    for command in ("check", "publish"):
        extra = ("--to", tmp_path / "site") if command == "publish" else ()
        code, out, err = cli(command, dist, *extra, "--against", url)
        assert code == 2 and err.startswith("error: --against ")
        assert "hunter22" not in out + err
        assert not (tmp_path / "site").exists()


def test_each_page_is_read_once_and_progress_is_reported(tmp_path: Path) -> None:
    """Forty requirements, two wheels naming each: forty-one pages read once each."""
    from tests.test_remote import servers
    from wheelforge.publish.against import check_against
    from wheelforge.publish.release import artifacts_in

    names = [f"dep-{i:02d}" for i in range(40)]
    dist = tmp_path / "dist"
    dist.mkdir()
    plain = build_plain_wheel(dist, metadata_extra=META, requires=tuple(names))
    prop = VariantProperty.parse("nvidia :: cuda_version_lower_bound :: 12.0")
    tag_wheel(plain, dist, TagRequest(properties=frozenset({prop}), label="cu120"))
    page = b'{"meta": {"api-version": "1.0"}, "name": "x", "files": []}'
    known = b'<a href="x-1.0.tar.gz#sha256=' + b"0" * 64 + b'">x</a>'
    seen: list[tuple[int, int]] = []
    with servers(1) as (index,):
        for name in names[:-1]:  # the last one is unknown
            index.routes[f"/simple/{name}/"] = (200, {"Content-Type": "text/html"}, known)
        index.routes["/simple/demo/"] = (200, {"Content-Type": JSON}, page)
        findings = check_against(
            artifacts_in(dist),
            [index.url + "/simple/"],
            jobs=4,
            progress=lambda done, total: seen.append((done, total)),
        )
        paths = sorted(path for _, path, _ in index.seen)
    assert paths == sorted({f"/simple/{name}/" for name in [*names, "demo"]})
    assert seen[-1] == (41, 41) and len(seen) == 41
    (finding,) = findings
    assert f"requires {names[-1]}, which" in finding.message
    assert "(and 1 more wheels)" in finding.message


def test_a_malformed_page_is_one_error_line(tmp_path: Path, cli: Cli) -> None:
    from tests.test_remote import servers

    dist = variant_release(tmp_path, kernels=False)
    with servers(1) as (index,):
        index.routes["/simple/demo/"] = (200, {"Content-Type": JSON}, b"{not json")
        code, out, err = cli("check", dist, "--against", index.url + "/simple/")
    assert code == 2 and out == ""
    assert err.startswith(f"error: --against {index.url}/simple/: ")
    assert "not a PEP 691 project page" in err
    assert len([line for line in err.splitlines() if line.startswith("error:")]) == 1
