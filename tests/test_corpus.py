"""A corpus of bad inputs (JSON, TOML, index pages, command-line arguments), each run
through the real CLI: each ends in exactly one ``error:`` line with exit 2 (or, for
``check``, findings and exit 1), never a traceback, writes nothing in the working
directory and leaves no temporary files behind. (Bad wheel archives have their own
corpus in tests/test_archive_corpus.py.)"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import build_plain_wheel, build_release
from tests.test_remote import Server, servers
from wheelforge import templating
from wheelforge.simple_api import JSON_CONTENT_TYPE

Cli = Callable[..., tuple[int, str, str]]
DEEP = 100_000
DEEP_JSON = "[" * DEEP + "]" * DEEP
DEEP_OBJECT = '{"a":' * DEEP + "1" + "}" * DEEP
WHEEL = "demo-1.0-py3-none-any.whl"
VARIANT = "demo-1.0-py3-none-any-x86_64_v3.whl"


@dataclass
class Env:
    """A case's working directory (the current directory while the CLI runs) and the
    index server it may point at."""

    root: Path
    server: Server

    def write(self, name: str, data: str | bytes) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        return path

    def dist(self, name: str = "dist", *, variants: bool = True) -> Path:
        """A release set: a plain wheel and an x86_64_v3 variant wheel."""
        dist = self.root / name
        build_release(
            dist,
            "demo",
            "1.0",
            {"x86_64_v3": ["x86_64 :: level :: v3"]} if variants else {},
            work=Path(tempfile.mkdtemp(dir=self.root.parent)),
        )
        return dist

    def wheel(self, members: dict[str, bytes] | None = None, *, name: str = WHEEL) -> Path:
        """A plain wheel (with extra ``members`` listed in RECORD), named ``name``."""
        work = Path(tempfile.mkdtemp(dir=self.root.parent))
        files = {"demo/__init__.py": b"x = 1\n", **(members or {})}
        built = build_plain_wheel(work, files=files)
        target = self.root / name
        target.write_bytes(built.read_bytes())
        return target

    def page(self, body: str | bytes, content_type: str = JSON_CONTENT_TYPE) -> str:
        """Serve ``body`` as the project page of ``demo``; the index URL."""
        data = body.encode() if isinstance(body, str) else body
        self.server.routes["/simple/demo/"] = (200, {"Content-Type": content_type}, data)
        return self.server.url + "/simple/"

    def matrix(self, text: str, name: str = "m.toml") -> Path:
        (self.root / "proj").mkdir(exist_ok=True)
        (self.root / "proj" / "pyproject.toml").write_text(
            '[project]\nname = "demo"\nversion = "1.0"\n'
        )
        return self.write(name, text)


Setup = Callable[[Env], list[str | Path]]
MATRIX_HEAD = '[project]\npath = "proj"\npython = ["3"]\n'


def variant(body: str, head: str = MATRIX_HEAD) -> Callable[[Env], Path]:
    """A matrix with one [[variants]] entry ``body`` (after ``head``)."""
    return lambda env: env.matrix(f"{head}\n[[variants]]\n{body}\n")


def plan(text: str | Callable[[Env], Path]) -> Setup:
    def setup(env: Env) -> list[str | Path]:
        path = text(env) if callable(text) else env.matrix(text)
        return ["plan", "--matrix", path]

    return setup


def entry(filename: str, url: str | None = None, sha256: str = "0" * 64) -> dict[str, object]:
    return {"filename": filename, "url": url or f"/files/{filename}", "hashes": {"sha256": sha256}}


def json_page(*entries: object) -> str:
    return json.dumps({"meta": {"api-version": "1.0"}, "name": "demo", "files": list(entries)})


def with_variants_file(text: str | bytes) -> Callable[[Env], Path]:
    def make(env: Env) -> Path:
        dist = env.dist()
        env.write("dist/demo-1.0-variants.json", text)
        return dist

    return make


def with_manifest(text: str) -> Callable[[Env], Path]:
    def make(env: Env) -> Path:
        dist = env.dist()
        env.write("dist/wheelforge-manifest.json", text)
        return dist

    return make


def site_page(text: str) -> Setup:
    """``index`` into a site whose project page is ``text``."""

    def setup(env: Env) -> list[str | Path]:
        dist = env.dist()
        env.write("site/simple/demo/index.json", text)
        (env.root / "site" / "files").mkdir()
        return ["index", dist, "--out", env.root / "site"]

    return setup


def variant_json_wheel(text: str) -> Callable[[Env], Path]:
    """A labelled wheel whose variant.json is ``text``."""
    return lambda env: env.wheel({"demo-1.0.dist-info/variant.json": text.encode()}, name=VARIANT)


# Each case: id -> (setup, exit code, text the error line must hold).
AnySetup = Callable[..., list[str | Path]]  # a Setup, perhaps with bound defaults
CASES: dict[str, tuple[AnySetup, int, str]] = {}


def case(name: str, setup: AnySetup, text: str, code: int = 2) -> None:
    assert name not in CASES, name
    CASES[name] = (setup, code, text)


# -- JSON -----------------------------------------------------------------------------

for command in ("inspect", "check"):
    case(
        f"variant.json-100k-deep-{command}",
        lambda env, c=command: [c, variant_json_wheel(DEEP_JSON)(env) if c == "inspect" else
                                variant_json_wheel(DEEP_JSON)(env).parent],
        "variant.json",
        code=1 if command == "check" else 2,
    )  # fmt: skip
case("variant.json-deep-object", lambda env: ["inspect", variant_json_wheel(DEEP_OBJECT)(env)],
     "variant.json")  # fmt: skip
case("variant.json-not-json", lambda env: ["inspect", variant_json_wheel("{nope")(env)],
     "variant.json")  # fmt: skip
case("variant.json-a-list", lambda env: ["inspect", variant_json_wheel("[1, 2]")(env)],
     "variant.json")  # fmt: skip
case("variant.json-nul", lambda env: ["inspect", variant_json_wheel('{"$schema": "\0"}')(env)],
     "variant.json")  # fmt: skip
for command, extra in (
    ("variants-json", ["--check"]),
    ("check", []),
    ("merge", ["--out", "merged"]),
    ("coverage", []),
):
    for what, text in (
        ("100k-deep", DEEP_JSON),
        ("deep-object", DEEP_OBJECT),
        ("not-utf8", b'{"$schema": "\xff\xfe"}'),
        ("empty", ""),
        ("wrong-types", '{"$schema": 1, "variants": []}'),
    ):
        case(
            f"variants-file-{what}-{command}",
            lambda env, c=command, e=extra, t=text: [c, with_variants_file(t)(env), *e],
            "demo-1.0-variants.json",
            code=1 if command == "check" else 2,
        )
case("variants-file-find-links-select",
     lambda env: ["select", "demo", "--find-links", with_variants_file(DEEP_JSON)(env),
                  "--profile", "h100-driver-580"],
     "demo-1.0-variants.json")  # fmt: skip

for what, text in (
    ("100k-deep", DEEP_JSON),
    ("artifacts-not-objects", '{"version": 1, "artifacts": [1, "x", null]}'),
    ("artifacts-not-a-list", '{"version": 1, "artifacts": {"a": 1}}'),
    ("file-not-a-string", '{"version": 1, "artifacts": [{"file": 1}]}'),
    ("file-outside", '{"version": 1, "artifacts": [{"file": "../x"}]}'),
):
    for command in ("check", "merge"):
        case(
            f"manifest-{what}-{command}",
            lambda env, c=command, t=text: [c, with_manifest(t)(env),
                                            *(["--out", "merged"] if c == "merge" else [])],
            "wheelforge-manifest.json",
            code=1 if command == "check" else 2,
        )  # fmt: skip

# -- index pages ------------------------------------------------------------------------

REMOTE_PAGES: dict[str, tuple[str | bytes, str, str]] = {
    "json-100k-deep": (DEEP_JSON, JSON_CONTENT_TYPE, "not a PEP 691 project page"),
    "json-deep-object": ('{"files": ' + DEEP_JSON + "}", JSON_CONTENT_TYPE, "project page"),
    "json-not-json": ("{", JSON_CONTENT_TYPE, "not a PEP 691 project page"),
    "json-not-utf8": (b'{"files": [\xff]}', JSON_CONTENT_TYPE, "not a PEP 691 project page"),
    "json-files-not-a-list": ('{"files": 3}', JSON_CONTENT_TYPE, "not a PEP 691 project page"),
    "json-entry-not-object": ('{"files": [3]}', JSON_CONTENT_TYPE, "not a PEP 691 project page"),
    "json-hashes-not-object": (
        json.dumps({"files": [{"filename": WHEEL, "url": "/f", "hashes": [1]}]}),
        JSON_CONTENT_TYPE,
        "not a PEP 691 project page",
    ),
    "json-sha256-not-hex": (json_page(entry(WHEEL, sha256="zz")), JSON_CONTENT_TYPE, "sha256"),
    "json-sha256-a-number": (
        json.dumps({"files": [{"filename": WHEEL, "url": "/f", "hashes": {"sha256": 5}}]}),
        JSON_CONTENT_TYPE,
        "sha256",
    ),
    "json-url-a-number": (
        json.dumps({"files": [{"filename": WHEEL, "url": 5}]}),
        JSON_CONTENT_TYPE,
        "not a PEP 691 project page",
    ),
    "json-filename-slash-in-build-tag": (
        json_page(entry("demo-1.0-1/x-py3-none-any.whl")),
        JSON_CONTENT_TYPE,
        "demo-1.0-1/x-py3-none-any.whl",
    ),
    "json-filename-dotdot": (
        json_page(entry("../demo-1.0-py3-none-any.whl")),
        JSON_CONTENT_TYPE,
        "demo-1.0-py3-none-any.whl",
    ),
    "json-requires-python-a-number": (
        json.dumps({"files": [{**entry(WHEEL), "requires-python": 3}]}),
        JSON_CONTENT_TYPE,
        "requires-python",
    ),
    "json-url-bad-port": (
        json_page(entry(WHEEL, url="http://127.0.0.1:99999/x.whl")),
        JSON_CONTENT_TYPE,
        "99999",
    ),
    "json-filename-nul": (
        json_page(entry("demo-1.0-py3-none-any\0.whl")),
        JSON_CONTENT_TYPE,
        "file name",
    ),
    "json-url-bracket": (
        json_page(entry(WHEEL, url="http://[::1/x.whl")),
        JSON_CONTENT_TYPE,
        "demo",
    ),
    "html-slash-in-build-tag": (
        '<a href="/files/demo-1.0-1%2Fx-py3-none-any.whl#sha256=' + "0" * 64 + '">x</a>',
        "text/html",
        "demo-1.0-1/x-py3-none-any.whl",
    ),
    "html-not-utf8": (b'<a href="/f/\xff.whl">x</a>', "text/html", "demo"),
    "html-bad-port": (
        '<a href="http://127.0.0.1:99999/demo-1.0-py3-none-any.whl">x</a>',
        "text/html",
        "99999",
    ),
    "html-bad-sha256": (f'<a href="/f/{WHEEL}#sha256=zz">x</a>', "text/html", "demo"),
}
# Files whose names are not wheel or sdist names are ignored, as installers do: nothing
# is found (exit 1, a note).
for what, body in (
    ("json-filename-bad-label", json_page(entry("demo-1.0-py3-none-any-BAD!.whl"))),
    ("json-filename-bad-version", json_page(entry("demo-one!!-py3-none-any.whl"))),
    ("html-100k-deep", "<div>" * DEEP),
    ("json-no-files", json_page()),
):
    case(
        f"remote-page-{what}",
        lambda env, b=body: ["select", "demo", "--index",
                             env.page(b, "text/html" if b.startswith("<") else JSON_CONTENT_TYPE),
                             "--profile", "h100-driver-580"],
        "no wheels of demo",
        code=1,
    )  # fmt: skip
for what, (page_body, content_type, text) in REMOTE_PAGES.items():
    case(
        f"remote-page-{what}",
        lambda env, b=page_body, ct=content_type: [
            "select", "demo", "--index", env.page(b, ct), "--profile", "h100-driver-580",
        ],
        text,
    )  # fmt: skip
case("remote-page-deep-coverage",
     lambda env: ["coverage", "demo", "--index", env.page(DEEP_JSON)],
     "not a PEP 691 project page")  # fmt: skip

case("site-page-100k-deep", site_page(DEEP_JSON), "index.json")


def local_index(text: str) -> Setup:
    """``select`` from a local index (a file: URL) whose project page is ``text``."""

    def setup(env: Env) -> list[str | Path]:
        env.write("site/simple/demo/index.json", text)
        url = (env.root / "site" / "simple").as_uri() + "/"
        return ["select", "demo", "--index", url, "--profile", "h100-driver-580"]

    return setup


case("local-index-100k-deep", local_index(DEEP_JSON), "not a PEP 691 project page")
case("local-index-slash-in-build-tag",
     local_index(json_page(entry("demo-1.0-1/x-py3-none-any.whl"))), "file name")  # fmt: skip
case("local-index-not-json", local_index("{"), "not a PEP 691 project page")

case("site-page-files-not-objects", site_page('{"files": [1]}'), "index.json")
case("site-page-slash-in-build-tag",
     site_page(json_page(entry("demo-1.0-1/x-py3-none-any.whl", "../../files/x.whl"))),
     "index.json")  # fmt: skip
case("site-page-not-utf8", site_page(b'{"files": [\xff]}'.decode("latin-1")), "index.json")

# -- TOML: matrix files ---------------------------------------------------------------

case("matrix-a-directory", lambda env: ["plan", "--matrix", env.root], "is a directory")
case("matrix-missing", lambda env: ["plan", "--matrix", env.root / "nope.toml"], "no such")
case("matrix-empty", plan(""), "project")
case("matrix-invalid-toml", plan("[project\n"), "not valid TOML")
case("matrix-not-utf8", lambda env: ["plan", "--matrix", env.write("m.toml", b"a = '\xff'\n")],
     "m.toml")  # fmt: skip
case("matrix-100k-deep", plan("a = " + DEEP_JSON + "\n"), "m.toml")
case("matrix-deep-inline-table", plan("a = " + "{b=" * 5000 + "1" + "}" * 5000 + "\n"), "m.toml")
case("matrix-namespace-tables", plan(variant('id = "a"\nkind = "plain"', MATRIX_HEAD +
                                     "[variant.default-priorities]\nnamespace = [{a=1}]\n")),
     "namespace")  # fmt: skip
case("matrix-unknown-top-key", plan(MATRIX_HEAD + "colour = 1\n"), "colour")
case("matrix-unknown-variant-key", plan(variant('id = "a"\nkind = "plain"\nflavour = 1')),
     "flavour")  # fmt: skip
case("matrix-project-not-table", plan("project = 1\n"), "project")
case("matrix-path-a-number", plan("[project]\npath = 1\n"), "project.path")
case("matrix-python-a-string", plan('[project]\npath = "proj"\npython = "3"\n'), "python")
case("matrix-python-not-a-version", plan('[project]\npath = "proj"\npython = ["three"]\n'
                                         '[[variants]]\nid = "a"\nkind = "plain"\n'), "python")  # fmt: skip
case("matrix-variants-a-table", plan(MATRIX_HEAD + "[variants]\nid = 1\n"), "variants")
case("matrix-id-a-number", plan(variant('id = 1\nkind = "plain"')), "id")
case("matrix-id-huge-int", plan(variant("id = " + "9" * 5000)), "m.toml")
case("matrix-id-nul", plan(variant('id = "a\\u0000b"\nkind = "plain"')), "id")
case("matrix-kind-unknown", plan(variant('id = "a"\nkind = "weird"')), "kind")
case("matrix-label-a-number", plan(variant('id = "a"\nlabel = 5\nproperties = []')), "label")
case("matrix-label-300-chars", plan(variant(f'id = "a"\nlabel = "{"a" * 300}"\n'
                                            'properties = ["x86_64 :: level :: v3"]')), "label")  # fmt: skip
case("matrix-properties-a-string", plan(variant('id = "a"\nproperties = "x"')), "properties")
case("matrix-property-bad-namespace",
     plan(variant('id = "a"\nproperties = ["Bad NS :: level :: v3"]')), "properties[0]")  # fmt: skip
case("matrix-property-bad-value",
     plan(variant('id = "a"\nproperties = ["x86_64 :: level :: v 3"]')), "properties[0]")  # fmt: skip
case("matrix-property-nul",
     plan(variant('id = "a"\nproperties = ["x86_64 :: level :: v\\u00003"]')), "properties[0]")  # fmt: skip
case("matrix-config-settings-a-list",
     plan(variant('id = "a"\nkind = "plain"\nconfig-settings = [1]')), "config-settings")  # fmt: skip
case("matrix-env-a-list", plan(variant('id = "a"\nkind = "plain"\nenv = [1]')), "env")
case("matrix-env-key-with-equals",
     plan(variant('id = "a"\nkind = "plain"\nenv = { "A=1 B" = "x" }')), "env")  # fmt: skip
case("matrix-env-value-a-table",
     plan(variant('id = "a"\nkind = "plain"\nenv = { A = { b = 1 } }')), "env")  # fmt: skip
case("matrix-compression-unknown",
     plan(variant('id = "a"\nkind = "plain"\ncompression = "lz4"')), "compression")  # fmt: skip
case("matrix-toolchain-a-number",
     plan(variant('id = "a"\nkind = "plain"\ntoolchain = 1')), "toolchain")  # fmt: skip
case("matrix-toolchain-version-shell",
     plan(variant('id = "a"\nkind = "plain"\ntoolchain = "nvcc"\n'
                  'toolchain-version = "12;rm -rf /"')), "toolchain-version")  # fmt: skip
case("matrix-repair-exclude-a-number",
     plan(variant('id = "a"\nkind = "plain"\nrepair-exclude = 1')), "repair-exclude")  # fmt: skip
case("matrix-repair-isa-check-a-string",
     plan(variant('id = "a"\nkind = "plain"\nrepair-isa-check = "no"')), "repair-isa-check")  # fmt: skip
case("matrix-before-build-a-number",
     plan(variant('id = "a"\nkind = "plain"\nbefore-build = 1')), "before-build")  # fmt: skip
for what, value in (("nan", "nan"), ("inf", "inf"), ("negative", "-1"), ("zero", "0"),
                    ("a-string", '"10"'), ("huge", "9" * 400)):  # fmt: skip
    case(f"matrix-max-size-mb-{what}",
         plan(variant(f'id = "a"\nkind = "plain"\nmax-size-mb = {value}')), "max-size-mb")  # fmt: skip
case("matrix-requires-dist-newline",
     plan(variant('id = "a"\nkind = "plain"\nrequires-dist = ["foo\\nEvil: x"]')),
     "requires-dist[0]")  # fmt: skip
case("matrix-manylinux-image-shell",
     plan(variant('id = "a"\nkind = "plain"\nmanylinux-image = "x y; rm -rf /"')),
     "manylinux-image")  # fmt: skip
case("matrix-axes-a-list", plan(MATRIX_HEAD + "axes = [1]\n"), "axes")
case("matrix-axis-empty", plan(MATRIX_HEAD + "[axes]\ncuda = []\n"), "axes.cuda")
case("matrix-axis-tables", plan(MATRIX_HEAD + "[axes]\ncuda = [{a = 1}]\n"), "axes.cuda")
case("matrix-axis-unknown", plan(variant('id = "a{{ x }}"\naxes = ["x"]\nkind = "plain"')), "x")
case("matrix-zip-a-string", plan(MATRIX_HEAD + 'zip = "a"\n'), "zip")
case("matrix-template-undefined", plan(variant('id = "a{{ nope }}"\nkind = "plain"')), "id")
case("matrix-template-syntax", plan(variant('id = "a{{"\nkind = "plain"')), "id")

# Templates that would burn CPU or memory: each bounded, one line naming the field.
TEMPLATE_BOMBS = {
    "power": "{{ 10**(10**10) }}",
    "power-of-powers": "{{ (10**10)**(10**10) }}",
    "string-repeat": "{{ 'a' * 10**10 }}",
    "list-repeat": "{{ [1] * 10**9 }}",
    "nested-list-repeat": "{{ (['a' * 100000] * 100000) | join }}",
    "ljust": "{{ 'x'.ljust(10**9) }}",
    "format-width": "{{ '{:>999999999}'.format(1) }}",
    "percent-width": "{{ '%999999999s' % 'a' }}",
    "percent-star": "{{ '%*s' % (999999999, 'a') }}",
    "center-filter": "{{ 'a' | center(999999999) }}",
    "format-filter": "{{ '%999999999s' | format('a') }}",
    "replace-filter": "{{ ('a' * 100000) | replace('a', 'a' * 100000) }}",
    "concat": "{% set a = 'x' * 60000 %}{{ a ~ a }}",
    "string-of-nested-lists": "{% set a = ['x' * 60000] %}{{ [a, a, a] | string }}",
    "output": "{% for i in 'x' * 100000 %}{{ 'y' * 100 }}{% endfor %}",
    "recursion": "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}",
    "loops": "{% for i in 'x' * 100000 %}{% for j in 'x' * 100000 %}{% endfor %}{% endfor %}",
}
for what, template in TEMPLATE_BOMBS.items():
    case(f"matrix-template-{what}",
         plan(variant(f'id = "a"\nkind = "plain"\nrunner = {json.dumps(template)}')),
         "variants[0].runner: template")  # fmt: skip
case("matrix-pyproject-without-table",
     lambda env: ["plan", "--matrix", env.write("pyproject.toml", '[project]\nname = "x"\n')],
     "[tool.wheelforge]")  # fmt: skip
case("matrix-pyproject-tool-not-a-table",
     lambda env: ["plan", "--matrix", env.write("pyproject.toml", "tool = 1\n")], "pyproject.toml")  # fmt: skip

# -- TOML: --variant-config and --profile --------------------------------------------


def tag_with_config(text: str | bytes) -> Setup:
    return lambda env: ["tag", env.wheel(), "-p", "x86_64 :: level :: v3", "--variant-config",
                        env.write("config.toml", text), "-o", env.root / "out"]  # fmt: skip


case("variant-config-invalid-toml", tag_with_config("[variant\n"), "config.toml")
case("variant-config-not-utf8", tag_with_config(b"a = '\xff'\n"), "config.toml")
case("variant-config-100k-deep", tag_with_config("a = " + DEEP_JSON + "\n"), "config.toml")
case("variant-config-tool-not-a-table", tag_with_config("tool = 1\n"), "config.toml")
case("variant-config-variant-not-a-table", tag_with_config("variant = 1\n"), "config.toml")
case("variant-config-namespace-tables",
     tag_with_config("[variant.default-priorities]\nnamespace = [{a=1}]\n"), "config.toml")  # fmt: skip


def select_with_profile(text: str | bytes) -> Setup:
    return lambda env: ["select", "demo", "--find-links", env.dist(),
                        "--profile", env.write("machine.toml", text)]  # fmt: skip


case("profile-invalid-toml", select_with_profile("[x\n"), "machine.toml")
case("profile-not-utf8", select_with_profile(b"a = '\xff'\n"), "machine.toml")
case("profile-100k-deep", select_with_profile("a = " + DEEP_JSON + "\n"), "machine.toml")
case("profile-wrong-types", select_with_profile("name = 1\nsupported = 2\n"), "machine.toml")
case("profile-missing", lambda env: ["select", "demo", "--find-links", env.dist(),
                                     "--profile", "no-such-profile"], "no-such-profile")  # fmt: skip

# -- command-line arguments -----------------------------------------------------------

for value in ("nan", "inf", "-1", "0", "-inf", "1e300"):
    case(f"check-max-size-mb-{value}", lambda env, v=value: ["check", env.dist(),
                                                             f"--max-size-mb={v}"], "--max-size-mb")  # fmt: skip
case("index-max-size-mb-nan", lambda env: ["index", env.dist(), "--out", "site",
                                           "--max-size-mb", "nan"], "--max-size-mb")  # fmt: skip
case("repair-max-size-mb-nan", lambda env: ["repair", env.wheel(), "-o", "out",
                                            "--max-size-mb", "nan"], "--max-size-mb")  # fmt: skip
for value in ("-1", "0"):
    case(f"check-jobs-{value}", lambda env, v=value: ["check", env.dist(), f"-j={v}"], "-j")
case("index-jobs-negative", lambda env: ["index", env.dist(), "--out", "site", "-j=-1"], "-j")
case("compress-jobs-zero", lambda env: ["compress", env.wheel(), "--codec", "zstd", "-o", "out",
                                        "-j", "0"], "-j")  # fmt: skip
case("compress-level-huge", lambda env: ["compress", env.wheel(), "--codec", "zstd", "-o", "out",
                                         "--level", "1000"], "--level")  # fmt: skip
case("build-jobs-zero", lambda env: ["build", "--matrix", env.matrix(MATRIX_HEAD +
                                     '[[variants]]\nid = "a"\nkind = "plain"\n'), "-j", "0"], "-j")  # fmt: skip
for option in ("--out", "--work-dir", "--cache-dir"):
    case(
        f"build{option}-under-a-file",
        lambda env, o=option: ["build", "--matrix", env.matrix(MATRIX_HEAD + '[[variants]]\n'
                               'id = "a"\nkind = "plain"\n'), o, env.write("afile", "x") / "d"],
        f"{option} ",
    )  # fmt: skip
case("serve-port-huge", lambda env: ["serve", env.root, "--port", "70000"], "--port")
case("serve-port-negative", lambda env: ["serve", env.root, "--port=-1"], "--port")
case("serve-workers-zero", lambda env: ["serve", env.root, "--workers", "0"], "--workers")
case("serve-idle-nan", lambda env: ["serve", env.root, "--idle-timeout", "nan"], "--idle-timeout")
case("serve-idle-negative", lambda env: ["serve", env.root, "--idle-timeout=-1"],
     "--idle-timeout")  # fmt: skip
case("serve-not-a-site", lambda env: ["serve", env.root / "nope"], "nope")

for url in ("http://127.0.0.1:99999/", "http://127.0.0.1:port/", "http://[::1/", "ftp://host/",
            "http:///nohost", "http://host/a b"):  # fmt: skip
    case(f"publish-to-{url}", lambda env, u=url: ["publish", env.dist(), "--to", u,
                                                  "--dry-run"], "--to")  # fmt: skip
for url in ("http://127.0.0.1:99999/", "notaurl", "ftp://host/simple/", "http://[::1/"):
    case(f"publish-simple-url-{url}",
         lambda env, u=url: ["publish", env.dist(), "--to", "http://127.0.0.1:1/",
                             "--simple-url", u, "--dry-run"], "--simple-url")  # fmt: skip
for url in ("notaurl", "ftp://host/simple/", "http://127.0.0.1:99999/simple/", "http://[::1/",
            "http://127.0.0.1:x/simple/", "file:///nonexistent/simple/", "http://"):  # fmt: skip
    case(f"select-index-{url}", lambda env, u=url: ["select", "demo", "--index", u,
                                                    "--profile", "h100-driver-580"], "--index")  # fmt: skip
case(
    "publish-simple-url-notaurl-with-a-site",
    lambda env: ["publish", env.dist(), "--to", "site", "--simple-url", "notaurl", "--dry-run"],
    "--simple-url",
)
case("coverage-index-notaurl", lambda env: ["coverage", "demo", "--index", "notaurl"], "--index")
case("install-index-notaurl", lambda env: ["install", "demo", "--index", "notaurl",
                                           "--profile", "h100-driver-580"], "--index")  # fmt: skip
case("select-requirement-garbage", lambda env: ["select", "demo!!", "--find-links", env.dist(),
                                                "--profile", "h100-driver-580"], "demo!!")  # fmt: skip
case("select-python-garbage", lambda env: ["select", "demo", "--find-links", env.dist(),
                                           "--profile", "h100-driver-580", "--python", "x\0y"],
     "--python")  # fmt: skip
case("select-assume-garbage", lambda env: ["select", "demo", "--find-links", env.dist(),
                                           "--assume", "nope"], "--assume")  # fmt: skip
case("select-find-links-missing", lambda env: ["select", "demo", "--find-links", "nope",
                                               "--profile", "h100-driver-580"], "nope")  # fmt: skip
case("coverage-profiles-not-a-dir",
     lambda env: ["coverage", env.dist(), "--profiles", env.write("p.toml", "")], "p.toml")  # fmt: skip


def tag(*extra: str) -> Setup:
    return lambda env: ["tag", env.wheel(), "-o", env.root / "out", *extra]


case("tag-label-300-chars", tag("-p", "x86_64 :: level :: v3", "--label", "a" * 300), "label")
case("tag-label-slash", tag("-p", "x86_64 :: level :: v3", "--label", "a/b"), "label")
case("tag-label-empty", tag("-p", "x86_64 :: level :: v3", "--label", ""), "label")
case("tag-label-null", tag("-p", "x86_64 :: level :: v3", "--label", "null"), "null")
case("tag-property-garbage", tag("-p", "nope"), "nope")
case("tag-property-nul", tag("-p", "x86_64 :: level :: v\x003"), "level")
case("tag-requires-dist-garbage", tag("-p", "x86_64 :: level :: v3", "--requires-dist", "a b c!"),
     "a b c!")  # fmt: skip
case("tag-input-missing", lambda env: ["tag", env.root / "nope.whl", "--null", "-o", "out"],
     "nope.whl")  # fmt: skip
case("tag-input-not-a-wheel-name", lambda env: ["tag", env.write("x.whl", "x"), "--null",
                                                "-o", "out"], "x.whl")  # fmt: skip
case("tag-out-under-a-file", lambda env: ["tag", env.wheel(), "--null", "-o",
                                          env.write("afile", "x") / "sub"], "afile")  # fmt: skip
case("tag-out-a-file", lambda env: ["tag", env.wheel(), "--null", "-o", env.write("afile", "x")],
     "afile")  # fmt: skip
case("untag-out-under-a-file", lambda env: ["untag", variant_json_wheel("{}")(env), "-o",
                                            env.write("afile", "x") / "sub"], "afile")  # fmt: skip
case("compress-out-under-a-file", lambda env: ["compress", env.wheel(), "--codec", "deflate",
                                               "-o", env.write("afile", "x") / "sub"], "afile")  # fmt: skip
case("index-out-under-a-file", lambda env: ["index", env.dist(), "--out",
                                            env.write("afile", "x") / "site"], "afile")  # fmt: skip
case("inspect-missing", lambda env: ["inspect", env.root / "nope"], "nope")
case("variants-json-missing", lambda env: ["variants-json", env.root / "nope"], "nope")
case("check-missing", lambda env: ["check", env.root / "nope"], "nope")
case("check-a-file", lambda env: ["check", env.wheel()], WHEEL)


def merge_out_symlink(env: Env) -> list[str | Path]:
    dist = env.dist()
    (env.root / "elsewhere").mkdir()
    (env.root / "merged").symlink_to(env.root / "elsewhere")
    return ["merge", dist, "--out", env.root / "merged"]


case("merge-out-symlink", merge_out_symlink, "merged")


def dist_with_link(to: str) -> Callable[[Env], Path]:
    """A release set whose plain wheel is a symbolic link (to a file outside, or to a
    wheel inside)."""

    def make(env: Env) -> Path:
        dist = env.dist()
        wheel = dist / WHEEL
        if to == "outside":
            secret = env.write("secret.txt", "root:hash:19000::::::\n")
            wheel.unlink()
            wheel.symlink_to(secret)
        else:
            (dist / "copy").mkdir()
            wheel.rename(dist / "copy" / WHEEL)
            wheel.symlink_to(Path("copy") / WHEEL)
        return dist

    return make


for where in ("outside", "inside"):
    for command in ("check", "merge", "index", "variants-json"):
        extra = {"merge": ["--out", "merged"], "index": ["--out", "site", "--no-check"]}.get(
            command, []
        )
        case(
            f"dist-symlinked-wheel-{where}-{command}",
            lambda env, c=command, e=extra, w=where: [c, dist_with_link(w)(env), *e],
            "symbolic link",
            code=1 if command == "check" else 2,
        )

case("merge-out-a-file", lambda env: ["merge", env.dist(), "--out", env.write("afile", "x")],
     "afile")  # fmt: skip
case("merge-dir-missing", lambda env: ["merge", env.root / "nope", "--out", "merged"], "nope")
case("init-name-newline", lambda env: ["init", "--project", env.root / "proj", "--yes",
                                       "--python", "3.12\n[x]"], "--python")  # fmt: skip


# -- the harness ----------------------------------------------------------------------


def snapshot(root: Path) -> dict[str, tuple[str, str]]:
    """Every path under ``root``: its kind and (files) its sha256, (links) its target."""
    seen: dict[str, tuple[str, str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            key = str(path.relative_to(root))
            if path.is_symlink():
                seen[key] = ("link", os.readlink(path))
            elif path.is_dir():
                seen[key] = ("dir", oct(path.stat().st_mode))
            else:
                seen[key] = ("file", hashlib.sha256(path.read_bytes()).hexdigest())
    return seen


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with servers(1) as (running,):
        yield running


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_is_one_error_line_and_writes_nothing(
    name: str,
    tmp_path: Path,
    cli: Cli,
    server: Server,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    setup, code, text = CASES[name]
    monkeypatch.setattr(templating, "MAX_SECONDS", 0.5)  # the "loops" bomb's limit
    root = tmp_path / "work"
    root.mkdir()
    server.routes.clear()
    env = Env(root, server)
    args = setup(env)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    monkeypatch.chdir(root)
    before = snapshot(root)

    got, out, err = cli(*args)

    assert "Traceback" not in out + err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    if code == 2 or got == 2:
        assert got == 2, (got, out, err)
        assert len(errors) == 1, err
        assert text in errors[0], (text, errors[0])
        assert not [line for line in err.splitlines() if line.strip() and
                    not line.startswith(("error: ", "hint: "))], err  # fmt: skip
    else:  # check: findings, exit 1, one of them naming the file
        assert got == 1, (got, out, err)
        assert text in out + err, (text, out, err)
    after = snapshot(root)
    # A site's lock file is made (empty) the first time the site is locked, and kept:
    # removing it would race another writer.
    after = {k: v for k, v in after.items() if k in before or not k.endswith(".wheelforge.lock")}
    assert after == before
    assert list(scratch.iterdir()) == []


def test_the_corpus_is_large() -> None:
    assert len(CASES) >= 60


# -- index --no-check leaves nothing half-done (issue 13, item 18) ---------------------


def _site_files(site: Path) -> list[str]:
    return sorted(str(p.relative_to(site)) for p in (site / "files").rglob("*") if p.is_file())


def test_index_no_check_takes_back_what_a_failed_batch_stored(tmp_path: Path, cli: Cli) -> None:
    dist = build_release(tmp_path / "dist", "demo", "1.0", {}, work=tmp_path / "work")
    (dist / "demo-1.0-py3-none-manylinux_2_17_x86_64.whl").write_bytes(b"not a zip")
    site = tmp_path / "site"
    code, _, err = cli("index", dist, "--out", site, "--no-check")
    assert code == 2 and err.count("error: ") == 1 and "Traceback" not in err, err
    assert not (site / "files").exists() or _site_files(site) == []
    assert not (site / "simple").exists()
    # A good batch afterwards lists what it stores, and nothing unlisted is left.
    (dist / "demo-1.0-py3-none-manylinux_2_17_x86_64.whl").unlink()
    assert cli("index", dist, "--out", site, "--no-check")[0] == 0
    listed = json.loads((site / "simple" / "demo" / "index.json").read_text())["files"]
    urls = {Path(f["url"]).name for f in listed}
    assert {Path(name).name for name in _site_files(site)} - {f"{u}.metadata" for u in urls} == (
        urls
    )


def test_index_no_check_refuses_a_label_without_its_wheel(tmp_path: Path, cli: Cli) -> None:
    dist = build_release(
        tmp_path / "dist",
        "demo",
        "1.0",
        {"x86_64_v3": ["x86_64 :: level :: v3"], "x86_64_v4": ["x86_64 :: level :: v4"]},
        work=tmp_path / "work",
    )
    assert cli("variants-json", dist)[0] == 0
    (dist / "demo-1.0-py3-none-any-x86_64_v4.whl").unlink()  # the file still lists it
    site = tmp_path / "site"
    code, _, err = cli("index", dist, "--out", site, "--no-check")
    assert code == 2, err
    (line,) = [line for line in err.splitlines() if line.startswith("error: ")]
    assert "lists label 'x86_64_v4' but neither the release set nor the site has its wheel" in line
    assert not (site / "simple").exists() and _site_files(site) == []


def test_a_label_whose_wheel_the_site_has_already_is_fine(tmp_path: Path, cli: Cli) -> None:
    v3 = {"x86_64_v3": ["x86_64 :: level :: v3"]}
    v4 = {"x86_64_v4": ["x86_64 :: level :: v4"]}
    first = build_release(tmp_path / "a", "demo", "1.0", v3, work=tmp_path / "wa")
    second = build_release(tmp_path / "b", "demo", "1.0", {**v3, **v4}, work=tmp_path / "wb")
    assert cli("variants-json", second)[0] == 0
    for name in ("demo-1.0-py3-none-any.whl", "demo-1.0-py3-none-any-x86_64_v3.whl"):
        (second / name).unlink()  # the site gets these from the first batch
    site = tmp_path / "site"
    assert cli("index", first, "--out", site, "--no-check")[0] == 0
    code, _, err = cli("index", second, "--out", site, "--no-check")
    assert code == 0, err


# -- a local index given as a file: URL -------------------------------------------------


def test_a_local_site_works_as_a_file_url_index(tmp_path: Path, cli: Cli) -> None:
    dist = build_release(
        tmp_path / "dist", "demo", "1.0", {"x86_64_v3": ["x86_64 :: level :: v3"]},
        work=tmp_path / "work",
    )  # fmt: skip
    site = tmp_path / "site"
    assert cli("index", dist, "--out", site)[0] == 0
    url = (site / "simple").as_uri() + "/"
    for index in (url, url.rstrip("/")):
        code, out, err = cli("select", "demo", "--index", index, "--assume",
                             "x86_64 :: level :: v3", "--profile", "h100-driver-580")  # fmt: skip
        assert code == 0, err
        assert out.strip() == "demo-1.0-py3-none-any-x86_64_v3.whl"
    code, out, err = cli("select", "other", "--index", url, "--profile", "h100-driver-580")
    assert code == 1 and "Traceback" not in err
    code, _, err = cli("select", "demo", "--index", (tmp_path / "nope").as_uri() + "/")
    assert code == 2 and "is not a directory" in err


# -- a pull request's matrix may not pick a self-hosted runner ---------------------------

RUNNER_MATRIX = MATRIX_HEAD + '[[variants]]\nid = "a"\nkind = "plain"\nrunner = "{runner}"\n'


@pytest.mark.parametrize("runner", ["self-hosted", "gpu-box", "ubuntu-latest; rm", "Linux"])
def test_a_pull_requests_matrix_may_not_choose_a_self_hosted_runner(
    tmp_path: Path, cli: Cli, runner: str
) -> None:
    (tmp_path / "proj").mkdir()
    matrix = tmp_path / "m.toml"
    matrix.write_text(RUNNER_MATRIX.format(runner=runner))
    code, _, err = cli("plan", "--matrix", matrix, "--format", "github", "--pull-request")
    assert code == 2, err
    assert err.splitlines()[0] == (
        f"error: job a: runner {runner!r} is not a GitHub-hosted runner; a pull request's "
        "matrix may not choose it (it could run the pull request's code on a self-hosted "
        "machine)"
    )
    code, out, err = cli("plan", "--matrix", matrix, "--format", "github", "--pull-request",
                         "--allow-runner", runner)  # fmt: skip
    assert code == 0 and json.loads(out)["include"][0]["runner"] == runner, err
    code, out, err = cli("plan", "--matrix", matrix, "--format", "github")  # main's matrix
    assert code == 0 and json.loads(out)["include"][0]["runner"] == runner, err


@pytest.mark.parametrize(
    "runner", ["ubuntu-latest", "ubuntu-24.04", "ubuntu-24.04-arm", "windows-2022", "macos-15"]
)
def test_github_hosted_runners_are_fine_for_pull_requests(
    tmp_path: Path, cli: Cli, runner: str
) -> None:
    (tmp_path / "proj").mkdir()
    matrix = tmp_path / "m.toml"
    matrix.write_text(RUNNER_MATRIX.format(runner=runner))
    code, out, err = cli("plan", "--matrix", matrix, "--format", "github", "--pull-request")
    assert code == 0 and json.loads(out)["include"][0]["runner"] == runner, err


# -- remote reads are bounded --------------------------------------------------------


def test_a_remote_page_larger_than_the_cap_is_refused(
    tmp_path: Path, cli: Cli, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    from wheelforge import simple_api

    monkeypatch.setattr(simple_api, "MAX_PAGE_BYTES", 4096)
    monkeypatch.chdir(tmp_path)
    server.routes.clear()
    env = Env(tmp_path, server)
    url = env.page(json_page(*[entry(f"demo-1.0-py3-none-any-v{i}.whl") for i in range(100)]))
    code, _, err = cli("select", "demo", "--index", url, "--profile", "h100-driver-580")
    assert code == 2, err
    assert err.splitlines() == [f"error: {url}demo/: larger than 4,096 bytes; refused"]
    assert list(tmp_path.iterdir()) == []
