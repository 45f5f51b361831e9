"""Several indexes: ``wheelforge select --index A --index B --index-strategy S`` picks
what uv 0.13.8 installs with ``uv pip install --index A --index B --index-strategy S``
(uv's ``--index``: the first has priority; its older ``--extra-index-url`` has priority
over ``--index-url``, so ``--extra-index-url A --index-url B`` is the same order).

Two real indexes: ``wheelforge index`` sites served on 127.0.0.1 by ``wheelforge serve``.
Each wheel's module says which index it came from, so uv's pick is read from the venv.
uv reads no PEP 708 metadata: where the project is on both indexes, the merging
strategies refuse in wheelforge unless the pages are related (tracks, or alternate-
locations both ways), and with the relation declared wheelforge picks what uv picks.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from tests.conftest import build_plain_wheel
from tests.installers import BIN, clean_env
from wheelforge.cli import main
from wheelforge.publish.serve import serving
from wheelforge.select.sources import pools, related
from wheelforge.simple_api import BadPage, ProjectFile, ProjectPage, json_links, read_project

NAME = "demo"
STRATEGIES = ("first-index", "unsafe-first-match", "unsafe-best-match")


@dataclass(frozen=True)
class Scenario:
    name: str
    a: tuple[str, ...]  # versions on index A (the first)
    b: tuple[str, ...]  # versions on index B
    requirement: str
    expected: dict[str, str | None]  # strategy -> "A 1.0" / "B 2.0" / None (nothing)
    a_tag: str = "py3-none-any"  # the tag of A's wheels


SCENARIOS = [
    Scenario("on-both-same-version", ("1.0",), ("1.0",), NAME,
             dict.fromkeys(STRATEGIES, "A 1.0")),
    Scenario("only-on-a", ("1.0",), (), NAME, dict.fromkeys(STRATEGIES, "A 1.0")),
    Scenario("only-on-b", (), ("1.0",), NAME, dict.fromkeys(STRATEGIES, "B 1.0")),
    Scenario("newer-malicious-on-b", ("1.0",), ("1.0", "99.0"), NAME,
             {"first-index": "A 1.0", "unsafe-first-match": "A 1.0",
              "unsafe-best-match": "B 99.0"}),
    Scenario("newer-on-a", ("2.0",), ("1.0",), NAME, dict.fromkeys(STRATEGIES, "A 2.0")),
    Scenario("pinned-only-on-b", ("2.0",), ("1.0",), f"{NAME}==1.0",
             {"first-index": None, "unsafe-first-match": "B 1.0",
              "unsafe-best-match": "B 1.0"}),
    # A's 1.0 has no wheel for this platform: uv's best-match takes B's 1.0, first-match
    # does not (a version the first index lists is not taken from the next)
    Scenario("a-has-no-fitting-wheel", ("1.0",), ("1.0",), NAME,
             {"first-index": None, "unsafe-first-match": None, "unsafe-best-match": "B 1.0"},
             a_tag="py3-none-win_amd64"),
]  # fmt: skip


@dataclass(frozen=True)
class Sites:
    a: str  # simple URLs
    b: str
    site_a: Path
    site_b: Path


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Sites]]:
    """Per scenario, index A and index B, served."""
    root = tmp_path_factory.mktemp("indexes")
    with ExitStack() as stack:
        found = {}
        for scenario in SCENARIOS:
            paths = []
            for which, versions in (("A", scenario.a), ("B", scenario.b)):
                site = root / scenario.name / f"site-{which}"
                for version in versions or ("other",):  # no versions: another project only
                    dist = root / scenario.name / f"dist-{which}-{version}"
                    dist.mkdir(parents=True)
                    if version == "other":
                        build_plain_wheel(dist, "other", "1.0")
                    else:
                        tag = scenario.a_tag if which == "A" else "py3-none-any"
                        build_plain_wheel(dist, NAME, version, tag=tag, files={
                            f"{NAME}/__init__.py": f"FROM = '{which} {version}'\n".encode()})  # fmt: skip
                    assert main(["index", str(dist), "--out", str(site)]) == 0
                paths.append(site)
            url_a = stack.enter_context(serving(paths[0]))
            url_b = stack.enter_context(serving(paths[1]))
            found[scenario.name] = Sites(url_a, url_b, paths[0], paths[1])
        yield found


def declare(site: Path, tracks: str | None) -> None:
    """Write (or remove) PEP 708 ``tracks`` in both of the project's pages, by hand."""
    page = site / "simple" / NAME
    if not page.is_dir():
        return
    data = json.loads((page / "index.json").read_text())
    data["meta"] = {**data.get("meta", {}), "api-version": "1.2"}
    data["meta"].pop("tracks", None)
    html = (page / "index.html").read_text()
    html = "\n".join(line for line in html.splitlines() if "pypi:tracks" not in line)
    if tracks is not None:
        data["meta"]["tracks"] = [tracks]
        html = html.replace("<head>", f'<head>\n<meta name="pypi:tracks" content="{tracks}">', 1)
        assert "pypi:tracks" in html
    (page / "index.json").write_text(json.dumps(data))
    (page / "index.html").write_text(html)


def wheelforge_select(
    sites: Sites,
    strategy: str,
    requirement: str,
    capsys: pytest.CaptureFixture[str],
    sources: tuple[str, ...] | None = None,
) -> tuple[int, str | None, str]:
    """(exit code, "A 1.0"-style pick or None, stderr)."""
    sources = sources or ("--index", sites.a, "--index", sites.b)
    code = main(["select", requirement, *sources, "--index-strategy", strategy, "--json"])
    out, err = capsys.readouterr()
    if code == 2:
        return code, None, err
    result = json.loads(out)
    if result["chosen"] is None:
        return code, None, err
    which = {sites.a: "A", sites.b: "B"}.get(result["index"], "L")
    return code, f"{which} {result['version']}", err


def uv_pick(
    sites: Sites,
    strategy: str,
    requirement: str,
    work: Path,
    sources: tuple[str, ...] | None = None,
) -> str | None:
    env = clean_env(work)
    venv = work / "venv"
    uv = str(BIN / "uv")
    subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(venv)], env=env,
                   check=True)  # fmt: skip
    result = subprocess.run(
        [uv, "pip", "install", *(sources or ("--index", sites.a, "--index", sites.b)),
         "--index-strategy", strategy, "--python", str(venv / "bin" / "python"), requirement],
        env=env, capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    if result.returncode != 0:
        assert "No solution found" in result.stderr, result.stderr
        return None
    (module,) = venv.glob(f"lib/python*/site-packages/{NAME}/__init__.py")
    namespace: dict[str, object] = {}
    exec(module.read_text(), namespace)
    return str(namespace["FROM"])


@pytest.mark.slow  # a real uv
@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_wheelforge_picks_what_uv_picks(
    sites: dict[str, Sites],
    scenario: Scenario,
    strategy: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    here = sites[scenario.name]
    declare(here.site_b, None)
    uv = uv_pick(here, strategy, scenario.requirement, tmp_path)
    assert uv == scenario.expected[strategy]
    # unrelated indexes: what uv does, except where a merging strategy would mix them
    code, ours, err = wheelforge_select(here, strategy, scenario.requirement, capsys)
    on_both = bool(scenario.a) and bool(scenario.b)
    if strategy != "first-index" and on_both:
        assert code == 2 and ours is None
        (line,) = [line for line in err.splitlines() if line.startswith("error:")]
        assert here.a in line and here.b in line and "PEP 708" in line
    else:
        assert ours == uv, err
        assert code == (0 if uv else 1)
    # B tracks A (a mirror that says so): wheelforge merges, and agrees with uv
    declare(here.site_b, f"{here.a}{NAME}/")
    try:
        code, ours, err = wheelforge_select(here, strategy, scenario.requirement, capsys)
    finally:
        declare(here.site_b, None)
    assert ours == uv, err
    assert code == (0 if uv else 1)


@pytest.mark.slow  # a real uv
@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("version", ["1.0", "2.0"])
def test_find_links_merged_ahead_of_the_index(
    sites: dict[str, Sites],
    strategy: str,
    version: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """uv 0.13.8 merges its find-links with the index under every strategy, and takes a
    find-links file over the index's for the same version; so does wheelforge."""
    here = sites["only-on-a"]  # A: 1.0
    links = tmp_path / "links"
    links.mkdir()
    build_plain_wheel(links, NAME, version, files={
        f"{NAME}/__init__.py": f"FROM = 'L {version}'\n".encode()})  # fmt: skip
    sources = ("--index", here.a, "--find-links", str(links))
    uv = uv_pick(here, strategy, NAME, tmp_path, sources)
    assert uv == f"L {version}"
    assert wheelforge_select(here, strategy, NAME, capsys, sources)[1] == uv


def test_explain_names_each_candidates_index(
    sites: dict[str, Sites], capsys: pytest.CaptureFixture[str]
) -> None:
    here = sites["newer-malicious-on-b"]
    assert main(["select", NAME, "--index", here.a, "--index", here.b, "--explain"]) == 0
    out, err = capsys.readouterr()
    assert out.strip().splitlines()[-1] == f"{NAME}-1.0-py3-none-any.whl"
    (row,) = [line for line in out.splitlines() if "chosen" in line]
    assert here.a in row  # the candidate's index column
    (skipped,) = [line for line in err.splitlines() if "not consulted" in line]
    assert here.b in skipped and "first-index" in skipped


def test_index_group_merges_without_pep708(
    sites: dict[str, Sites], capsys: pytest.CaptureFixture[str]
) -> None:
    here = sites["newer-malicious-on-b"]
    assert main(["select", NAME, "--index-group", f"{here.a},{here.b}", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["version"], result["index"]) == ("99.0", here.b)


def test_pep708_links_read_from_json_and_html(sites: dict[str, Sites], tmp_path: Path) -> None:
    here = sites["on-both-same-version"]
    declare(here.site_b, "https://pypi.org/simple/demo/")
    try:
        page = read_project(here.b, NAME)  # JSON, as wheelforge serve negotiates
    finally:
        declare(here.site_b, None)
    assert page.tracks == ("https://pypi.org/simple/demo/",)
    # PEP 503 HTML (a local index's page) and PEP 691 JSON's top-level alternate-locations
    html = (
        '<html><head><meta name="pypi:tracks" content="https://a/simple/demo/">'
        '<meta name="pypi:alternate-locations" content="https://b/simple/demo/">'
        '<meta name="pypi:alternate-locations" content="https://c/simple/demo/">'
        '</head><body><a href="demo-1.0-py3-none-any.whl">x</a></body></html>'
    )
    (tmp_path / NAME).mkdir()
    (tmp_path / NAME / "index.html").write_text(html)
    page = read_project(tmp_path.as_uri(), NAME)
    assert [f.filename for f in page.files] == ["demo-1.0-py3-none-any.whl"]
    assert page.tracks == ("https://a/simple/demo/",)
    assert page.alternate_locations == ("https://b/simple/demo/", "https://c/simple/demo/")
    body = json.dumps({"meta": {"api-version": "1.2", "tracks": []}, "files": [],
                       "alternate-locations": ["https://b/simple/demo/"]}).encode()  # fmt: skip
    assert json_links(body) == ((), ("https://b/simple/demo/",))
    with pytest.raises(BadPage, match="alternate-locations"):
        json_links(b'{"files": [], "alternate-locations": "https://b/"}')


def _page(url: str, tracks: tuple[str, ...] = (), alternates: tuple[str, ...] = ()) -> ProjectPage:
    wheel = ProjectFile(f"{NAME}-1.0-py3-none-any.whl", url + f"{NAME}-1.0-py3-none-any.whl")
    return ProjectPage(url, (wheel,), tracks, alternates)


def test_pep708_relation() -> None:
    a, b = "https://a.example/simple/demo/", "https://b.example/simple/demo"
    assert related(_page(a), _page(b, tracks=(a,)))
    assert related(_page(a, tracks=(b + "/",)), _page(b))
    # alternate-locations count only when each page names the other
    assert not related(_page(a, alternates=(b,)), _page(b))
    assert related(_page(a, alternates=(a, b)), _page(b, alternates=(a, b)))
    assert not related(_page(a), _page(b))


def test_variants_file_used_in_isolation() -> None:
    """A version's files come from one index: B's variants file of 1.0 never meets A's
    wheels of 1.0, and B's labelled wheels of 1.0 are not offered."""
    a, b = "https://a.example/simple/demo/", "https://b.example/simple/demo/"
    pages = {
        "A": ProjectPage(a, (ProjectFile("demo-1.0-py3-none-any.whl", a + "w"),)),
        "B": ProjectPage(b, (
            ProjectFile("demo-1.0-py3-none-any.whl", b + "w"),
            ProjectFile("demo-1.0-py3-none-any-x86_64_v3.whl", b + "v"),
            ProjectFile("demo-1.0-variants.json", b + "j"),
        ), tracks=(a,)),
    }  # fmt: skip
    (pool,) = pools(NAME, [["A"], ["B"]], pages.__getitem__, strategy="unsafe-best-match")
    assert [f.url for f in pool.files] == [a + "w"]
    assert any("1.0 (from A)" in note for note in pool.notes)


def test_coverage_takes_the_indexes_and_strategy(
    sites: dict[str, Sites], capsys: pytest.CaptureFixture[str]
) -> None:
    here = sites["newer-malicious-on-b"]
    assert main(["coverage", NAME, "--index", here.a, "--index", here.b, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows and {row["wheel"] for row in rows} == {f"{NAME}-1.0-py3-none-any.whl"}
    code = main(["coverage", NAME, "--index", here.a, "--index", here.b,
                 "--index-strategy", "unsafe-best-match", "--json"])  # fmt: skip
    assert code == 2
    assert "PEP 708" in capsys.readouterr().err


@pytest.mark.slow  # a real uv
def test_install_with_uv_from_the_first_index(
    sites: dict[str, Sites],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    here = sites["newer-malicious-on-b"]
    env = clean_env(tmp_path)
    for name in [k for k in list(os.environ) if k.startswith(("UV_", "PIP_"))]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        if name.startswith("UV_"):
            monkeypatch.setenv(name, value)
    venv = tmp_path / "venv"
    subprocess.run([str(BIN / "uv"), "venv", "-q", "--python", sys.executable, str(venv)],
                   env=env, check=True)  # fmt: skip
    code = main(["install", NAME, "--index", here.a, "--index", here.b, "--installer", "uv",
                 "--python", str(venv / "bin" / "python"), "--json"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    (result,) = json.loads(capsys.readouterr().out)
    assert result["index"] == here.a
    (module,) = venv.glob(f"lib/python*/site-packages/{NAME}/__init__.py")
    assert "A 1.0" in module.read_text()


@pytest.fixture
def public(tmp_path: Path) -> Iterator[str]:
    """pypiserver as "the public index", holding demo 1.0 and a newer 99.0 someone
    registered there (the dependency-confusion attack); its simple URL."""
    packages = tmp_path / "public"
    packages.mkdir()
    for version in ("1.0", "99.0"):
        build_plain_wheel(packages, NAME, version, files={
            f"{NAME}/__init__.py": f"FROM = 'P {version}'\n".encode()})  # fmt: skip
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    process = subprocess.Popen(
        [sys.executable, "-m", "pypiserver", "run", "-p", str(port), "-i", "127.0.0.1",
         "-a", ".", "-P", ".", "--disable-fallback", str(packages)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(url + "health", timeout=1):
                    break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline
                time.sleep(0.05)
        yield url + "simple/"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.mark.slow  # a real uv
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_pypiserver_public_index(
    sites: dict[str, Sites],
    public: str,
    strategy: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The variant index (A: demo 1.0) first, pypiserver second: uv takes the public 99.0
    under unsafe-best-match; wheelforge refuses unless A's page tracks the public one."""
    here = replace(sites["only-on-a"], b=public)
    uv = uv_pick(here, strategy, NAME, tmp_path)
    assert uv == ("P 99.0" if strategy == "unsafe-best-match" else "A 1.0")
    code, ours, err = wheelforge_select(here, strategy, NAME, capsys)
    if strategy == "first-index":
        assert ours == uv
    else:
        assert code == 2 and here.a in err and public in err
    declare(here.site_a, f"{public}{NAME}/")
    try:
        ours = wheelforge_select(here, strategy, NAME, capsys)[1]
    finally:
        declare(here.site_a, None)
    assert ours == uv.replace("P", "B")


def test_a_variants_file_on_b_never_applies_to_wheels_on_a(tmp_path: Path) -> None:
    """A holds demo 1.0's wheels (labelled and plain) without a variants file; B, which
    tracks A, holds the variants file: A's labelled wheels stay unlisted (the plain wheel
    is chosen, from A) rather than being ranked with B's file."""
    from tests.test_select import wheel_set
    from wheelforge.select.install import interpreter
    from wheelforge.select.machine import Machine
    from wheelforge.select.profiles import find_profile
    from wheelforge.select.selection import parse_requirement
    from wheelforge.select.sources import select_from
    from wheelforge.simple_api import directory_files

    links = wheel_set(tmp_path)
    variants = [f for f in directory_files(links, NAME) if f.filename.endswith(".json")]
    wheels = [f for f in directory_files(links, NAME) if f.filename.endswith(".whl")]
    a, b = "https://a.example/simple/demo/", "https://b.example/simple/demo/"
    pages = {"A": ProjectPage(a, tuple(wheels)), "B": ProjectPage(b, tuple(variants), (a,))}
    candidates = pools(NAME, [["A"], ["B"]], pages.__getitem__, strategy="unsafe-best-match")
    python = interpreter()
    selection = select_from(parse_requirement(NAME), candidates,
                            Machine(find_profile("h100-driver-580").supported()),
                            tags=python.tags, python_version=python.version)  # fmt: skip
    assert selection.label is None and selection.source == "A"
    assert selection.variants_file is None
    labelled = [c for c in selection.candidates if c.label is not None]
    assert labelled and {c.status for c in labelled} == {"ignored: no variants file listed"}
    assert {c.source for c in selection.candidates} == {"A"}


@pytest.mark.parametrize("form", ["--tracks", "--alternate-location"])
def test_links_written_by_index_are_what_select_merges_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], form: str
) -> None:
    """``index --tracks`` / ``--alternate-location`` (the writer) on the variant index,
    read back by the selector: a merging strategy takes the newer version from the
    related index; without the links it refuses."""
    dists = {}
    for which, version in (("A", "1.0"), ("B", "2.0")):
        dist = tmp_path / f"dist-{which}"
        dist.mkdir()
        build_plain_wheel(dist, NAME, version, files={
            f"{NAME}/__init__.py": f"FROM = '{which} {version}'\n".encode()})  # fmt: skip
        dists[which] = dist
    site_a, site_b = tmp_path / "site-a", tmp_path / "site-b"
    assert main(["index", str(dists["A"]), "--out", str(site_a)]) == 0
    with serving(site_a) as url_a:
        assert main(["index", str(dists["B"]), "--out", str(site_b)]) == 0
        with serving(site_b) as url_b:
            sites = Sites(url_a, url_b, site_a, site_b)
            capsys.readouterr()
            code, ours, err = wheelforge_select(sites, "unsafe-best-match", NAME, capsys)
            assert code == 2 and ours is None, err
            # B declares A (and, for alternate-locations, A declares B)
            assert main(["index", str(dists["B"]), "--out", str(site_b), form,
                         f"{url_a}{NAME}/"]) == 0  # fmt: skip
            if form == "--alternate-location":
                assert main(["index", str(dists["A"]), "--out", str(site_a),
                             form, f"{url_b}{NAME}/"]) == 0  # fmt: skip
            capsys.readouterr()
            code, ours, err = wheelforge_select(sites, "unsafe-best-match", NAME, capsys)
            assert (code, ours) == (0, "B 2.0"), err
