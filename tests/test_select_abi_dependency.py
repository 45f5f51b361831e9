"""The reserved ``abi_dependency`` namespace: matched against the target environment's
installed distributions (and ``VARIANT_ABI_DEPENDENCY``) as variantlib's resolver does,
ranked after every other namespace.

The installed ``torch`` here is a tiny dummy wheel (a real wheel, installed by uv into a
fresh venv): only its content is fake.
"""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from variantlib.models.variant import VariantDescription
from variantlib.models.variant import VariantProperty as LibProperty
from variantlib.resolver.lib import sort_and_filter_supported_variants

from tests.conftest import build_plain_wheel, build_release
from tests.installers import clean_env
from wheelforge.cli import main
from wheelforge.select.coverage import coverage
from wheelforge.select.install import abi_environment, installed_distributions, interpreter
from wheelforge.select.profiles import load_profile
from wheelforge.select.selection import parse_requirement
from wheelforge.simple_api import directory_files
from wheelforge.tag import TagRequest, build_variant_metadata
from wheelforge.variants import abi_dependency, supported
from wheelforge.variants.labels import default_label
from wheelforge.variants.metadata import Schema, VariantMetadata, dumps, loads
from wheelforge.variants.properties import VariantProperty
from wheelforge.variants.providers import PRESETS, Provider
from wheelforge.variants.ranking import rank

Cli = Callable[..., tuple[int, str, str]]
UV = Path(sys.executable).parent / "uv"

# CUDA 12.8 extension wheels built against torch 2.8 and 2.9, and a CPU one for torch 2.9
VARIANTS = {
    "torch28_cu128": (
        "abi_dependency :: torch :: 2.8",
        "nvidia :: cuda_version_lower_bound :: 12.8",
    ),
    "torch29_cu128": (
        "abi_dependency :: torch :: 2.9",
        "nvidia :: cuda_version_lower_bound :: 12.8",
    ),
    "torch29": ("abi_dependency :: torch :: 2.9",),
    "null": (),
}


# -- the rules, as pure functions ---------------------------------------------------


def test_names_and_versions_follow_variantlib() -> None:
    assert abi_dependency.normalize_name("Foo.Bar-baz") == "foo_bar_baz"
    assert abi_dependency.version_matches("2.9.1+cu128") == ("2", "2.9", "2.9.1")
    assert abi_dependency.version_matches("3") == ("3", "3.0", "3.0.0")
    assert abi_dependency.version_matches("2.10.0rc1") == ("2", "2.10", "2.10.0")
    assert abi_dependency.version_matches("1!4.5.6.7") == ("4", "4.5", "4.5.6")
    assert abi_dependency.version_matches("not a version") == ()


def test_the_environment_variable_overrides_installed_versions() -> None:
    env = abi_dependency.environment(
        {"Torch": "2.9.1", "numpy": "2.1.0"},
        where="installed in /venv/bin/python",
        env_value="torch==2.8.0,Flash-Attn==2.7.4,broken",
    )
    assert env.packages == {"torch": "2.8.0", "numpy": "2.1.0", "flash_attn": "2.7.4"}
    assert env.supported() == {
        "flash_attn": ["2", "2.7", "2.7.4"],
        "numpy": ["2", "2.1", "2.1.0"],
        "torch": ["2", "2.8", "2.8.0"],
    }
    assert env.describe("torch") == "torch 2.8.0 (VARIANT_ABI_DEPENDENCY)"
    assert env.describe("numpy") == "numpy 2.1.0 (installed in /venv/bin/python)"
    assert env.describe("jax") == "jax not installed"
    assert any("ignored 'broken'" in note for note in env.notes)
    assert any("torch 2.8.0 instead of installed 2.9.1" in note for note in env.notes)


def test_the_namespace_ranks_last_unless_listed() -> None:
    assert abi_dependency.namespace_order(("nvidia", "x86_64")) == (
        "nvidia",
        "x86_64",
        "abi_dependency",
    )
    listed = ("abi_dependency", "nvidia")
    assert abi_dependency.namespace_order(listed) == listed


def _desc(properties: tuple[str, ...]) -> VariantDescription:
    return VariantDescription([LibProperty.from_str(p) for p in properties])


def test_ranking_agrees_with_variantlibs_resolver(monkeypatch: pytest.MonkeyPatch) -> None:
    """variantlib injects this process's distributions and ``VARIANT_ABI_DEPENDENCY``;
    wheelforge, given the same environment, orders the same variants the same way."""
    monkeypatch.setenv(abi_dependency.ENV_VARIABLE, "torch==2.9.1,Foo.Bar==1.2rc1")
    candidates: list[tuple[str, ...]] = [
        ("abi_dependency :: torch :: 2.9",),
        ("abi_dependency :: torch :: 2",),
        ("abi_dependency :: torch :: 2.9.1",),
        ("abi_dependency :: torch :: 2.8",),  # not installed: filtered out
        ("abi_dependency :: torch :: 2.9", "x86_64 :: level :: v2"),
        ("abi_dependency :: torch :: 2.8", "x86_64 :: level :: v2"),
        ("abi_dependency :: foo_bar :: 1.2",),
        ("abi_dependency :: torch :: 2.9", "abi_dependency :: foo_bar :: 1"),
        ("abi_dependency :: torch :: 3", "abi_dependency :: torch :: 2.9.1"),
        ("x86_64 :: level :: v3",),
        ("x86_64 :: level :: v1",),
        ("abi_dependency :: jax :: 0.4",),  # not installed
    ]
    x86 = supported.x86_64(3)
    lib_supported = [LibProperty("x86_64", "level", v) for v in x86["level"]]
    expected = sort_and_filter_supported_variants(
        [_desc(c) for c in candidates], lib_supported, ["x86_64"], filter_values=True
    )

    props = {default_label(fs): fs for fs in (frozenset(map(VariantProperty.parse, c))
                                              for c in candidates)}  # fmt: skip
    meta = VariantMetadata(
        ("x86_64",),
        {"x86_64": PRESETS["x86_64"]},
        {**props, "null": frozenset()},
    )
    env = abi_environment(interpreter())  # this process, as variantlib sees it
    ours = rank(meta, {"x86_64": x86, "abi_dependency": env.supported()})
    assert [r.label for r in ours if r.compatible] == [d.label for d in expected]
    assert len(expected) == 10  # 9 variants and null: the cases really differ


def test_this_interpreter_is_listed_in_process() -> None:
    found = installed_distributions(interpreter())
    assert found["variantlib"] == importlib.metadata.version("variantlib")


# -- the metadata: tag, read, check -------------------------------------------------


def test_tag_lists_the_namespace_last_with_a_builtin_provider() -> None:
    props = frozenset(map(VariantProperty.parse, VARIANTS["torch29_cu128"]))
    label, meta = build_variant_metadata(TagRequest(properties=props, label="torch29_cu128"))
    assert label == "torch29_cu128"
    assert meta.namespace_priorities[-1] == "abi_dependency"
    assert meta.providers["abi_dependency"] == Provider(builtin="abi_dependency")
    # a variant without it is written as before
    _, plain = build_variant_metadata(
        TagRequest(properties=frozenset({VariantProperty.parse("x86_64 :: level :: v3")}))
    )
    assert "abi_dependency" not in plain.namespace_priorities
    assert "abi_dependency" not in plain.providers


@pytest.mark.parametrize("schema", [Schema.LEGACY_V0_0_3, Schema.PEP825_V0_1_1])
def test_older_schemas_leave_the_reserved_namespace_unlisted(schema: Schema) -> None:
    props = frozenset(map(VariantProperty.parse, VARIANTS["torch29_cu128"]))
    _, meta = build_variant_metadata(TagRequest(properties=props, label="t", schema=schema))
    assert "abi_dependency" not in meta.namespace_priorities
    assert "abi_dependency" not in meta.providers
    assert loads(dumps(meta, schema), source="variant.json").variants == {"t": props}


def test_a_file_that_does_not_list_the_namespace_is_read(tmp_path: Path) -> None:
    text = json.dumps({
        "$schema": "https://variants-schema.wheelnext.dev/peps/850/v0.2.0.json",
        "default-priorities": {"namespace": ["x86_64"]},
        "providers": {"x86_64": {"requires": ["x86-64-variant-provider"]}},
        "variants": {"t29": {"abi_dependency": {"torch": ["2.9"]}}},
    })  # fmt: skip
    meta = loads(text, source="demo-1.0-variants.json")
    (winner, *_) = rank(meta, {"abi_dependency": {"torch": ["2", "2.9", "2.9.0"]}})
    assert winner.label == "t29"
    assert winner.keys == ((1, 0, 1),)  # namespace after x86_64


def _unlisted(wheel: Path) -> None:
    """Rewrite a wheel's variant.json without the abi_dependency entries (RECORD is
    left stale: only the metadata matters here)."""
    with zipfile.ZipFile(wheel) as zin:
        members = {i.filename: zin.read(i) for i in zin.infolist()}
    (name,) = [n for n in members if n.endswith("variant.json")]
    data = json.loads(members[name])
    data["default-priorities"]["namespace"].remove("abi_dependency")
    del data["providers"]["abi_dependency"]
    members[name] = json.dumps(data).encode()
    with zipfile.ZipFile(wheel, "w") as zout:
        for member, content in members.items():
            zout.writestr(member, content)


def test_check_needs_no_provider_entry_but_warns_of_uv(tmp_path: Path, cli: Cli) -> None:
    dist = build_release(tmp_path / "dist", "demo", "1.0", VARIANTS, work=tmp_path / "w")
    code, out, err = cli("check", dist, "--json")
    report = json.loads(out)
    abi = [f for f in report["findings"] if "abi_dependency" in f["message"]]
    assert code == 0, err
    assert {f["severity"] for f in abi} == {"info"}
    assert len(abi) == 3
    assert all("uv 0.13.8 never selects it" in f["message"] for f in abi)

    _unlisted(dist / "demo-1.0-py3-none-any-torch29.whl")
    code, out, _ = cli("check", dist, "--json")
    findings = json.loads(out)["findings"]
    warned = [f for f in findings if "uv 0.13.8 rejects the whole release" in f["message"]]
    assert [f["file"] for f in warned] == ["demo-1.0-py3-none-any-torch29.whl"]
    assert not any("providers" in f["message"] and f["severity"] == "error" for f in findings
                   if "RECORD" not in f["message"])  # fmt: skip


# -- select, install and coverage against a real environment -------------------------


def dummy_torch(directory: Path, version: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    module = f"__version__ = {version!r}  # a dummy, not PyTorch\n".encode()
    return build_plain_wheel(directory, "torch", version, files={"torch/__init__.py": module})


def venv_with(tmp_path: Path, *wheels: Path) -> Path:
    """A fresh venv with ``wheels`` installed by uv; its python."""
    env = clean_env(tmp_path, UV_OFFLINE="1")
    venv = tmp_path / "venv"
    subprocess.run([str(UV), "venv", "-q", "--python", sys.executable, str(venv)],
                   env=env, check=True, timeout=120)  # fmt: skip
    python = venv / "bin" / "python"
    if wheels:
        subprocess.run([str(UV), "pip", "install", "-q", "--python", str(python),
                        *map(str, wheels)], env=env, check=True, timeout=120)  # fmt: skip
    return python


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("abi-release")
    dist = build_release(root / "dist", "demo", "1.0", VARIANTS, work=root / "work")
    assert main(["variants-json", str(dist)]) == 0
    return dist


@pytest.fixture(scope="module")
def torch29_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("torch29-venv")
    return venv_with(root, dummy_torch(root / "wheels", "2.9.1"))


@pytest.mark.slow
def test_select_matches_the_target_environments_torch(
    release: Path, torch29_python: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(abi_dependency.ENV_VARIABLE, raising=False)
    base = ["select", "demo", "--find-links", release, "--python", torch29_python, "--explain"]
    code, out, err = cli(*base, "--profile", "h100-driver-580")
    assert code == 0, err
    assert out.strip().splitlines()[-1] == "demo-1.0-py3-none-any-torch29_cu128.whl"
    assert f"abi_dependency: torch 2.9.1 (installed in {torch29_python})" in err
    assert "abi_dependency :: torch :: 2.8 (installed: 2.9.1)" in out + err

    code, out, _ = cli(*base, "--profile", "cpu-x86-64-v3")  # no GPU
    assert out.strip().splitlines()[-1] == "demo-1.0-py3-none-any-torch29.whl"

    monkeypatch.setenv(abi_dependency.ENV_VARIABLE, "torch==2.8.0")
    code, out, err = cli(*base, "--profile", "h100-driver-580")
    assert out.strip().splitlines()[-1] == "demo-1.0-py3-none-any-torch28_cu128.whl"
    assert "VARIANT_ABI_DEPENDENCY: torch 2.8.0 instead of installed 2.9.1" in err


@pytest.mark.slow
def test_without_torch_only_null_fits(release: Path, tmp_path: Path, cli: Cli) -> None:
    python = venv_with(tmp_path)
    code, out, err = cli("select", "demo", "--find-links", release, "--python", python,
                         "--profile", "h100-driver-580")  # fmt: skip
    assert code == 0, err
    assert out.strip().splitlines()[-1] == "demo-1.0-py3-none-any-null.whl"
    assert "abi_dependency: torch not installed" in err


@pytest.mark.slow
def test_install_puts_the_matching_variant_into_the_target(
    release: Path, tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(abi_dependency.ENV_VARIABLE, raising=False)
    python = venv_with(tmp_path, dummy_torch(tmp_path / "wheels", "2.8.2"))
    monkeypatch.setenv("UV_CACHE_DIR", str(tmp_path / "uv-cache"))
    code, _, err = cli("install", "demo", "--find-links", release, "--python", python,
                       "--installer", "uv", "--profile", "a100-driver-570")  # fmt: skip
    assert code == 0, err
    (site,) = (tmp_path / "venv").glob("lib/python*/site-packages")
    variant_json = site / "demo-1.0.dist-info" / "variant.json"
    meta = loads(variant_json.read_bytes(), source=str(variant_json))
    assert meta.single_label(str(variant_json)) == "torch28_cu128"


def test_profiles_declare_installed_packages(
    release: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(abi_dependency.ENV_VARIABLE, raising=False)
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "h100-torch28.toml").write_text(
        '[nvidia]\ncuda-driver = "13.0"\n[installed]\ntorch = "2.8.0+cu128"\n'
    )
    (profiles / "h100.toml").write_text('[nvidia]\ncuda-driver = "13.0"\n')
    loaded = [load_profile(p) for p in sorted(profiles.iterdir())]
    target = abi_dependency.environment({"torch": "2.9.0"}, where="installed in the target")
    rows = coverage(parse_requirement("demo"), directory_files(release, "demo"), loaded,
                    interpreter(), abi=target)  # fmt: skip
    got = {row.profile: row.label for row in rows}
    assert got == {"h100": "torch29_cu128", "h100-torch28": "torch28_cu128"}
    (torch28_row,) = [r for r in rows if r.profile == "h100-torch28"]
    assert "abi_dependency: torch 2.8.0+cu128 (profile h100-torch28)" in torch28_row.notes


@pytest.mark.slow
def test_a_profiles_installed_table_replaces_the_target_environment(
    release: Path, torch29_python: Path, tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(abi_dependency.ENV_VARIABLE, raising=False)
    profile = tmp_path / "a100-torch28.toml"
    profile.write_text('[nvidia]\ncuda-driver = "12.8"\n[installed]\ntorch = "2.8.0"\n')
    code, out, err = cli("select", "demo", "--find-links", release, "--python", torch29_python,
                         "--profile", profile, "--explain")  # fmt: skip
    assert code == 0, err
    assert out.strip().splitlines()[-1] == "demo-1.0-py3-none-any-torch28_cu128.whl"
    assert "abi_dependency: torch 2.8.0 (profile a100-torch28)" in err


@pytest.mark.parametrize(
    "table",
    ["[installed]\ntorch = 2.9\n", '[installed]\ntorch = "two"\n', 'installed = "torch"\n'],
)
def test_bad_installed_tables(tmp_path: Path, table: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(table)
    with pytest.raises(Exception, match="installed: expected a table of versions"):
        load_profile(path)
