"""``wheelforge index`` and ``serve``: a static PEP 503/691/658/714 index that carries the
variants file; pip installs the fallback and uv the right variant from it, through HTML
pages and through JSON pages."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import threading
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import build_plain_wheel, build_release
from tests.installers import clean_env, pip_install, selected, uv_install
from wheelforge.cli import main
from wheelforge.publish.serve import negotiate, serving
from wheelforge.simple_api import JSON_CONTENT_TYPE
from wheelforge.variants.metadata import loads

Cli = Callable[..., tuple[int, str, str]]
BIN = Path(sys.executable).parent
META = "Summary: A demo\nRequires-Python: >=3.9\nDescription-Content-Type: text/markdown\n"
# label -> properties, all of uv's builtin nvidia provider (its driver can be simulated)
VARIANTS = {
    "cu120": ("nvidia :: cuda_version_lower_bound :: 12.0",),
    "cu130": ("nvidia :: cuda_version_lower_bound :: 13.0",),
}


def release(
    root: Path,
    name: str = "demo",
    version: str = "1.0",
    labels: tuple[str, ...] = ("null", "cu120", "cu130"),
) -> Path:
    """A release set in ``root/dist-{name}-{version}``: a plain wheel and the labelled ones,
    each module saying what it was built for."""
    variants = {label: VARIANTS.get(label, ()) for label in labels}
    return build_release(
        root / f"dist-{name}-{version}", name, version, variants, work=root / "plain",
        metadata_extra=META,
    )  # fmt: skip


def page(site: Path, project: str) -> dict[str, dict[str, object]]:
    data = json.loads((site / "simple" / project / "index.json").read_text())
    return {f["filename"]: f for f in data["files"]}


def snapshot(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every file under ``root``: (inode, size, mtime_ns)."""
    return {
        str(p.relative_to(root)): (p.stat().st_ino, p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_negotiation_follows_pep_691() -> None:
    uv = f"{JSON_CONTENT_TYPE}, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01"
    assert negotiate(uv) == "index.json"
    assert negotiate("text/html") == "index.html"
    assert negotiate(None) == "index.html"
    assert negotiate("*/*") == "index.html"
    assert negotiate(f"text/html, {JSON_CONTENT_TYPE};q=0.5") == "index.html"
    assert negotiate("text/html", JSON_CONTENT_TYPE) == "index.json"  # ?format=


def test_index_writes_every_page_and_file(tmp_path: Path, cli: Cli) -> None:
    dist = release(tmp_path)
    site = tmp_path / "site"
    code, _out, err = cli("index", dist, "--out", site)
    assert code == 0, err
    files = page(site, "demo")
    variants_name = "demo-1.0-variants.json"
    assert sorted(files) == sorted([p.name for p in dist.glob("*.whl")] + [variants_name])
    html = (site / "simple" / "demo" / "index.html").read_text()
    for name, entry in files.items():
        sha256 = entry["hashes"]["sha256"]  # type: ignore[index]
        path = (site / "simple" / "demo" / str(entry["url"])).resolve()
        assert hashlib.sha256(path.read_bytes()).hexdigest() == sha256
        assert f'#sha256={sha256}"' in html and f">{name}</a>" in html
        if name.endswith(".whl"):
            # PEP 658/714: the METADATA beside the wheel, its hash on both page kinds
            metadata = path.with_name(name + ".metadata").read_bytes()
            digest = hashlib.sha256(metadata).hexdigest()
            assert entry["core-metadata"] == {"sha256": digest}
            assert f'data-core-metadata="sha256={digest}"' in html
            assert f'data-dist-info-metadata="sha256={digest}"' in html
            assert b"Name: demo" in metadata and entry["requires-python"] == ">=3.9"
            assert 'data-requires-python="&gt;=3.9"' in html  # escaped, as PEP 503 asks
    # the variants file was made from the wheels (dist has none) and carries every label
    variants = (site / "simple" / "demo" / str(files[variants_name]["url"])).resolve()
    meta = loads(variants.read_bytes(), source=str(variants))
    assert sorted(meta.variants) == ["cu120", "cu130", "null"]
    root = json.loads((site / "simple" / "index.json").read_text())
    assert root == {"meta": {"api-version": "1.1"}, "projects": [{"name": "demo"}]}
    assert 'href="demo/"' in (site / "simple" / "index.html").read_text()
    assert not list(dist.glob("*-variants.json"))  # nothing written into the release set


def test_adding_a_release_touches_only_its_project(tmp_path: Path, cli: Cli) -> None:
    site = tmp_path / "site"
    assert cli("index", release(tmp_path), "--out", site)[0] == 0
    assert cli("index", release(tmp_path, "other", labels=()), "--out", site)[0] == 0
    before = snapshot(site)
    code, out, err = cli("index", release(tmp_path, "demo", "1.1"), "--out", site)
    assert code == 0, err
    after = snapshot(site)
    changed = {path for path in before if before[path] != after.get(path)}
    assert changed == {"simple/demo/index.html", "simple/demo/index.json"}
    added = set(after) - set(before)
    assert all(path.startswith("files/demo/") for path in added)
    assert len([p for p in added if p.endswith(".whl")]) == 4
    assert {"demo-1.0-variants.json", "demo-1.1-variants.json"} <= set(page(site, "demo"))
    assert json.loads((site / "simple" / "demo" / "index.json").read_text())["versions"] == [
        "1.0",
        "1.1",
    ]
    # the same set again changes nothing at all
    code, out, _ = cli("index", release(tmp_path / "again", "demo", "1.1"), "--out", site)
    assert code == 0 and "added" not in out
    assert snapshot(site) == after


def test_a_new_variant_extends_the_published_variants_file(tmp_path: Path, cli: Cli) -> None:
    site = tmp_path / "site"
    assert cli("index", release(tmp_path, labels=("null", "cu120")), "--out", site)[0] == 0
    old = page(site, "demo")["demo-1.0-variants.json"]
    assert cli("index", release(tmp_path / "more", labels=("cu130",)), "--out", site)[0] == 0
    new = page(site, "demo")["demo-1.0-variants.json"]
    assert new["url"] != old["url"]  # a new content-addressed file; the old one stays
    assert (site / "simple" / "demo" / str(old["url"])).resolve().is_file()
    path = (site / "simple" / "demo" / str(new["url"])).resolve()
    assert sorted(loads(path.read_bytes(), source="v").variants) == ["cu120", "cu130", "null"]


def test_same_name_other_content_is_refused_and_nothing_is_written(
    tmp_path: Path, cli: Cli
) -> None:
    site = tmp_path / "site"
    assert cli("index", release(tmp_path), "--out", site)[0] == 0
    before = snapshot(site)
    dist = release(tmp_path / "rebuilt", labels=("null", "cu120", "cu130"))
    plain = dist / "demo-1.0-py3-none-any.whl"
    replacement = build_plain_wheel(
        tmp_path,
        "demo",
        "1.0",
        metadata_extra=META,
        files={"demo/__init__.py": b"BUILT_FOR = 'other'\n"},
    )
    shutil.copy(replacement, plain)
    code, _, err = cli("index", dist, "--out", site)
    assert code == 2
    assert (
        "demo-1.0-py3-none-any.whl: the site already has a file of this name with other content"
        in err
    )
    assert snapshot(site) == before


def test_index_refuses_a_set_that_fails_check(tmp_path: Path, cli: Cli) -> None:
    dist = release(tmp_path)
    shutil.copy(dist / "demo-1.0-py3-none-any.whl", dist / "demo-1.0-py3-none-any-x1.whl")
    code, out, err = cli("index", dist, "--out", tmp_path / "site")
    assert code == 2
    assert "1 check errors, nothing published" in err and "demo-1.0-py3-none-any-x1.whl" in out
    assert not (tmp_path / "site" / "simple").exists()


def test_pages_are_swapped_atomically(tmp_path: Path) -> None:
    """A reader polling the pages while releases are added never sees a missing,
    partial or dangling page."""
    site = tmp_path / "site"
    dists = [release(tmp_path, "demo", f"1.{i}", labels=("cu120",)) for i in range(8)]
    assert main(["index", str(dists[0]), "--out", str(site)]) == 0
    stop, seen, problems = threading.Event(), [], []

    def reader() -> None:
        while not stop.is_set():
            try:
                files = page(site, "demo")
                root = json.loads((site / "simple" / "index.json").read_text())
                assert root["projects"] == [{"name": "demo"}]
                for entry in files.values():
                    assert (site / "simple" / "demo" / str(entry["url"])).resolve().is_file()
                seen.append(len(files))
            except Exception as err:
                problems.append(repr(err))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for dist in dists[1:]:
            assert main(["index", str(dist), "--out", str(site), "--no-check"]) == 0
    finally:
        stop.set()
        thread.join()
    assert problems == []
    assert seen and seen == sorted(seen)  # never a page from before an earlier one
    assert len(page(site, "demo")) == 8 * 3  # plain, cu120, variants file each
    assert not (site / ".simple.new").exists()


def test_an_interrupted_writer_leaves_the_site_usable(tmp_path: Path) -> None:
    site = tmp_path / "site"
    assert main(["index", str(release(tmp_path)), "--out", str(site)]) == 0
    (site / ".simple.new" / "demo").mkdir(parents=True)  # what a killed writer leaves
    (site / ".simple.new" / "demo" / "index.json").write_text("{")
    assert main(["index", str(release(tmp_path, "demo", "1.1")), "--out", str(site)]) == 0
    assert not (site / ".simple.new").exists()
    assert "demo-1.1-py3-none-any.whl" in page(site, "demo")


# -- real installers against the served site ---------------------------------------


class _HtmlOnly(SimpleHTTPRequestHandler):
    """Any static file server: directories answer with index.html, whatever is asked."""

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def html_only(site: Path) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_HtmlOnly, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/simple/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def served_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("served")
    assert main(["index", str(release(root)), "--out", str(root / "site")]) == 0
    return root / "site"


def _installed_label(site_packages: Path) -> str | None:
    (dist_info,) = site_packages.glob("demo-1.0.dist-info")
    variant = dist_info / "variant.json"
    if not variant.exists():
        return None
    return next(iter(json.loads(variant.read_text())["variants"]))


@pytest.mark.slow
@pytest.mark.parametrize("pages", ["json", "html"])
@pytest.mark.parametrize(
    ("driver", "expected"), [(None, "null"), ("12.8", "cu120"), ("13.1", "cu130")]
)
def test_uv_installs_the_right_variant_from_the_index(
    served_site: Path, tmp_path: Path, pages: str, driver: str | None, expected: str
) -> None:
    server = serving(served_site) if pages == "json" else html_only(served_site)
    env = clean_env(tmp_path)
    if driver:
        env["NV_VARIANT_PROVIDER_FORCE_CUDA_DRIVER_VERSION"] = driver
    with server as url:
        request = urllib.request.Request(
            url + "demo/", headers={"Accept": f"{JSON_CONTENT_TYPE}, text/html;q=0.01"}
        )
        with urllib.request.urlopen(request) as response:
            served = response.headers["Content-Type"]
        assert (served == JSON_CONTENT_TYPE) == (pages == "json")
        venv = tmp_path / "venv"
        result = uv_install(venv, url, "demo", env)
    assert result.returncode == 0, result.stderr
    assert selected(result.stderr, "demo") == f"demo-1.0-py3-none-any-{expected}.whl"
    (site_packages,) = venv.glob("lib/python*/site-packages")
    assert _installed_label(site_packages) == expected
    assert (site_packages / "demo" / "__init__.py").read_text() == f"BUILT_FOR = {expected!r}\n"


@pytest.mark.slow
@pytest.mark.parametrize("pages", ["json", "html"])
def test_pip_installs_the_plain_fallback_from_the_index(
    served_site: Path, tmp_path: Path, pages: str
) -> None:
    server = serving(served_site) if pages == "json" else html_only(served_site)
    target = tmp_path / "target"
    with server as url:
        result = pip_install(target, url, "demo", clean_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert _installed_label(target) is None
    assert (target / "demo" / "__init__.py").read_text() == "BUILT_FOR = 'plain'\n"
