"""Trusted third-party plugins, for real: a small plugin package is built as a wheel in
the test and put beside the release in its find-links directory. For a namespace the
user trusts, ``wheelforge select`` installs the provider's ``requires`` into a cached,
uv-made venv and runs the plugin there, out of process: found from its ``plugin-api``
(given explicitly) or from its ``requires`` name (``acme-variant-provider`` ->
``acme_variant_provider``), as variantlib does. Untrusted, the plugin is never
installed nor imported (its import writes a side-effect file, and no venv appears).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from tests.conftest import build_plain_wheel, build_release
from wheelforge.select.plugins import (
    PluginFailed,
    Sources,
    TrustedPlugins,
    local_reference,
    parse_answer,
    plugin_reference,
    run_plugin,
)
from wheelforge.variants.config import config_from_table
from wheelforge.variants.providers import Provider
from wheelforge.variants_file import write_variants_json

Cli = Callable[..., tuple[int, str, str]]
PLUGIN_MODULE = """\
import os
from dataclasses import dataclass
open(os.environ["ACME_IMPORTED"], "a").write(f"{{__name__}} {{os.getpid()}}\\n")
print("chatter on stdout from the plugin")  # must not spoil the answer

@dataclass
class Config:
    name: str
    values: list

{body}
"""
# plugin-api "module": the module itself is the plugin (module-level names)
MODULE_PLUGIN = """\
namespace = "acme"

def get_supported_configs():
    return [Config("fast", ["on"])]
"""
# plugin-api "module:Attr": a class
CLASS_PLUGIN = """\
class AcmePlugin:
    namespace = "acme"

    def get_supported_configs(self):
        return [Config("fast", ["on", "turbo"])]
"""


def plugin_wheel(links: Path, work: Path, dist: str, module: str, body: str) -> Path:
    work.mkdir(parents=True)
    source = PLUGIN_MODULE.format(body=body).encode()
    wheel = build_plain_wheel(work, dist, "1.0", files={f"{module}.py": source})
    return wheel.rename(links / wheel.name)


def release(root: Path, provider: Mapping[str, object]) -> Path:
    links = root / "links"
    config = config_from_table(
        {"default-priorities": {"namespace": ["acme", "x86_64"]}, "providers": {"acme": provider}},
        source="test",
    )
    variants = {"fast": ("acme :: fast :: on",), "turbo": ("acme :: fast :: turbo",), "null": ()}
    build_release(links, "demo", "1.0", variants, work=root / "work", config=config)
    write_variants_json(links)
    return links


@pytest.fixture
def imported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The side-effect file a plugin's import appends to; and a private plugin cache."""
    marker = tmp_path / "imported"
    monkeypatch.setenv("ACME_IMPORTED", str(marker))
    monkeypatch.setenv("WHEELFORGE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("WHEELFORGE_TRUST_PROVIDERS", raising=False)
    return marker


def venvs(tmp_path: Path) -> list[Path]:
    cache = tmp_path / "cache" / "plugin-envs"
    return sorted(cache.iterdir()) if cache.is_dir() else []


def select(cli: Cli, links: Path, *args: str) -> tuple[str, str]:
    code, out, err = cli("select", "demo", "--find-links", links, "--profile", "cpu-x86-64-v3",
                         "--json", *args)  # fmt: skip
    assert code == 0, err
    report = json.loads(out)
    (chosen,) = [c["label"] for c in report["candidates"] if c["status"] == "chosen"]
    return str(chosen), err + json.dumps(report)


@pytest.mark.slow
def test_plugin_from_its_requires_name(tmp_path: Path, imported: Path, cli: Cli) -> None:
    links = release(tmp_path, {"requires": ["acme-variant-provider >= 1"]})
    plugin_wheel(links, tmp_path / "plugin", "acme_variant_provider", "acme_variant_provider",
                 MODULE_PLUGIN)  # fmt: skip

    # untrusted: never installed, never imported
    label, err = select(cli, links)
    assert label == "null"
    assert "acme: provider 'acme-variant-provider >= 1' is a third-party plugin" in err
    assert not imported.exists() and venvs(tmp_path) == []
    label, _ = select(cli, links, "--trust-provider", "other")
    assert label == "null" and not imported.exists() and venvs(tmp_path) == []

    # trusted: installed into an isolated venv and run there, in another process
    label, err = select(cli, links, "--trust-provider", "acme")
    assert label == "fast", err
    (venv,) = venvs(tmp_path)
    assert list(venv.glob("lib/python*/site-packages/acme_variant_provider.py"))
    (line,) = imported.read_text().splitlines()
    name, pid = line.split()
    assert name == "acme_variant_provider" and int(pid) != os.getpid()
    assert "acme_variant_provider" not in sys.modules

    # the venv is cached: a second run reuses it
    label, _ = select(cli, links, "--trust-provider", "acme")
    assert label == "fast" and venvs(tmp_path) == [venv]


@pytest.mark.slow
def test_plugin_from_an_explicit_plugin_api(tmp_path: Path, imported: Path, cli: Cli) -> None:
    provider = {"requires": ["acme-tools"], "plugin-api": "acme_tools_plugin : AcmePlugin"}
    links = release(tmp_path, provider)
    plugin_wheel(links, tmp_path / "plugin", "acme_tools", "acme_tools_plugin", CLASS_PLUGIN)
    label, _ = select(cli, links)
    assert label == "null" and not imported.exists() and venvs(tmp_path) == []
    label, err = select(cli, links, "--trust-provider", "acme")
    assert label == "fast", err  # "on" is the plugin's best value
    assert imported.read_text().startswith("acme_tools_plugin ")
    assert "acme_tools_plugin" not in sys.modules


def test_an_importable_plugin_runs_here_out_of_process(
    tmp_path: Path, imported: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Installed in this environment (on sys.path, no entry point, no dist-info): found
    # from the requires name, run by a child of this Python; nothing is installed.
    links = release(tmp_path, {"requires": ["acme-variant-provider"]})
    site = tmp_path / "site"
    site.mkdir()
    (site / "acme_variant_provider.py").write_text(PLUGIN_MODULE.format(body=MODULE_PLUGIN))
    monkeypatch.syspath_prepend(str(site))
    label, _ = select(cli, links)
    assert label == "null" and not imported.exists()
    label, err = select(cli, links, "--trust-provider", "acme")
    assert label == "fast", err
    (line,) = imported.read_text().splitlines()
    assert line.split()[0] == "acme_variant_provider"
    assert int(line.split()[1]) != os.getpid()
    assert "acme_variant_provider" not in sys.modules
    assert venvs(tmp_path) == []


def test_plugin_reference_as_variantlib_finds_it() -> None:
    assert plugin_reference(Provider(requires=("acme-variant-provider>=1",))) == (
        "acme_variant_provider"
    )
    assert plugin_reference(Provider(requires=("x",), plugin_api=" a.b : C.d ")) == "a.b:C.d"
    assert plugin_reference(Provider(requires=("x",), plugin_api="a.b")) == "a.b"
    assert plugin_reference(Provider(requires=("x",), plugin_api="foo:bar:baz")) is None
    assert plugin_reference(Provider(static_properties=(("f", ("v",)),))) is None


@pytest.mark.parametrize(
    ("requires", "plugin_api"),
    [
        ("acme-variant-provider >= 1", None),
        ("Acme.Tools[extra]>=2", None),
        ("x", " a.b : C.d "),
        ("x", "a_b"),
    ],
)
def test_plugin_reference_agrees_with_variantlib(requires: str, plugin_api: str | None) -> None:
    from variantlib.models.variant_info import ProviderInfo  # type: ignore[import-untyped]

    theirs = ProviderInfo(requires=[requires], plugin_api=plugin_api).object_reference
    module, _, attr = "".join(theirs.split()).partition(":")
    expected = f"{module}:{attr}" if attr else module  # variantlib's normalised form
    assert plugin_reference(Provider(requires=(requires,), plugin_api=plugin_api)) == expected


def test_local_lookup_never_imports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "site" / "sneaky_pkg"
    package.mkdir(parents=True)
    marker = tmp_path / "imported"
    (package / "__init__.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    assert local_reference("acme", "sneaky_pkg.plugin:X") == "sneaky_pkg.plugin:X"
    assert local_reference("acme", "not_there_at_all:X") is None
    assert not marker.exists() and "sneaky_pkg" not in sys.modules


def write_module(directory: Path, name: str, source: str) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.py").write_text(source)
    return str(directory)


def test_a_plugin_that_hangs_is_stopped(tmp_path: Path) -> None:
    path = write_module(tmp_path, "slow_plugin", "import time\ntime.sleep(60)\n")
    with pytest.raises(PluginFailed, match="stopped after 1 s"):
        run_plugin(sys.executable, "slow_plugin", "acme", import_path=[path], timeout=1)


def test_a_plugin_that_answers_too_much_or_floods_stderr_is_cut_off(tmp_path: Path) -> None:
    source = (
        "import sys\nfrom types import SimpleNamespace as C\nnamespace = 'acme'\n"
        "for _ in range(2000):\n    print('x' * 10000)\n"  # 20 MB of chatter: bounded
        "def get_supported_configs():\n    return [C(name='f', values=['v'] * 100000)]\n"
    )
    path = write_module(tmp_path, "loud_plugin", source)
    with pytest.raises(PluginFailed, match="more than 1000 bytes"):
        run_plugin(sys.executable, "loud_plugin", "acme", import_path=[path], limit=1000,
                   timeout=20)  # fmt: skip


def test_a_plugin_of_another_namespace_or_a_bad_answer_is_refused(tmp_path: Path) -> None:
    source = "namespace = 'other'\ndef get_supported_configs():\n    return []\n"
    path = write_module(tmp_path, "other_plugin", source)
    with pytest.raises(PluginFailed, match="namespace 'other', not 'acme'"):
        run_plugin(sys.executable, "other_plugin", "acme", import_path=[path])
    with pytest.raises(PluginFailed, match="not a valid name"):
        parse_answer(b'{"namespace": "acme", "features": [["Bad Name", ["x"]]]}', "acme", "p")
    with pytest.raises(PluginFailed, match="something other than its JSON"):
        parse_answer(b"hello", "acme", "p")


def test_nothing_to_install_from_means_no_plugin(tmp_path: Path) -> None:
    loader = TrustedPlugins(sources=None, cache=tmp_path)
    assert loader("acme", Provider(requires=("surely-not-installed-provider",))) is None
    assert Sources("https://example.invalid/simple", ("/d",)).uv_args() == [
        "--index-url", "https://example.invalid/simple", "--find-links", "/d",
    ]  # fmt: skip


def test_requires_that_are_not_requirements_never_reach_uv(tmp_path: Path) -> None:
    for bad in ("--index-url=https://example.invalid/simple", "-e .", "acme; ; bad"):
        with pytest.raises(PluginFailed, match="not a PEP 508 requirement"):
            TrustedPlugins(Sources(None, (str(tmp_path),)), cache=tmp_path / "c")(
                "acme", Provider(requires=(bad,), plugin_api="acme_mod:P")
            )
    assert not (tmp_path / "c").exists()
