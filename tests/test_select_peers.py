"""Where wheelforge sits between variantlib and uv 0.13.8 (issue 14, items 5-9, and the
sdist note): ``select`` reads what uv reads (an unknown ``$schema`` by its shape, a
malformed ``plugin-api``, an empty static value list, a property outside a static
provider's values) and picks what uv picks; ``tag`` refuses to write the unselectable
ones, as variantlib does; ``check`` warns. docs/selection.md has the table."""

from __future__ import annotations

import io
import json
import platform
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import build_plain_wheel, build_release
from tests.installers import clean_env, selected, uv_install
from wheelforge.cli import main
from wheelforge.errors import InvalidInput
from wheelforge.publish.check import Severity, check_release_set
from wheelforge.publish.serve import serving
from wheelforge.select.install import interpreter
from wheelforge.select.machine import Machine
from wheelforge.select.profiles import Profile
from wheelforge.select.selection import Selection, parse_requirement, select
from wheelforge.simple_api import directory_files
from wheelforge.variants.config import config_from_table
from wheelforge.variants.metadata import Schema, VariantMetadata, dumps, from_json
from wheelforge.variants_file import write_variants_json

Cli = Callable[..., tuple[int, str, str]]
META = "Summary: A demo\nDescription-Content-Type: text/plain\n"
NVIDIA = {
    "requires": ["nvidia-variant-provider"],
    "plugin-api": "nvidia_variant_provider.plugin:NvidiaVariantPlugin",
}
UNKNOWN = "https://example.org/variants/v9.json"
ON_X86_64_LINUX = sys.platform == "linux" and platform.machine() == "x86_64"
DRIVER_128 = Profile("cuda12.8", "driver 12.8", "12.8", None)


def choose(links: Path, machine: Machine) -> Selection:
    python = interpreter()
    files = directory_files(links, "demo")
    return select(parse_requirement("demo"), files, machine, tags=python.tags,
                  python_version=python.version)  # fmt: skip


def uv_picks(links: Path, tmp_path: Path, profile: Profile) -> str:
    """The file uv 0.13.8 selects from ``links`` served as an index."""
    if any(Path(p).exists() for p in ("/proc/driver/nvidia/version", "/sys/module/nvidia/version")):
        pytest.skip("uv would see this machine's real NVIDIA driver")
    site = tmp_path / "site"
    assert main(["index", str(links), "--out", str(site), "--no-check"]) == 0
    with serving(site) as url:
        result = uv_install(tmp_path / "venv", url, "demo", clean_env(tmp_path,
                            **profile.provider_env()))  # fmt: skip
    assert result.returncode == 0, result.stderr
    return selected(result.stderr, "demo")


# -- item 9: an unknown $schema URL ----------------------------------------------------


def document(**extra: object) -> dict[str, object]:
    return {
        "$schema": UNKNOWN,
        "default-priorities": {"namespace": ["nvidia"]},
        "variants": {"cu128": {"nvidia": {"cuda_version_lower_bound": ["12.8"]}}},
        **extra,
    }


def test_an_unknown_schema_is_read_by_its_shape_and_written_as_a_known_one() -> None:
    meta = from_json(document(providers={"nvidia": NVIDIA}), source="x")
    assert (meta.schema, meta.unknown_schema) == (Schema.PROVIDERS_V0_2_0, UNKNOWN)
    assert json.loads(dumps(meta))["$schema"] == Schema.PROVIDERS_V0_2_0.value
    no_providers = from_json(document(), source="x")
    assert (no_providers.schema, no_providers.unknown_schema) == (Schema.PEP825_V0_1_1, UNKNOWN)
    known = from_json(
        document(**{"$schema": Schema.PROVIDERS_V0_2_0.value, "providers": {"nvidia": NVIDIA}}),
        source="x",
    )
    assert known.unknown_schema is None and known == meta  # the URL is not part of equality
    # legacy keys under an unknown URL fail, as in uv ("Unknown variant metadata schema")
    legacy = document(providers={"nvidia": NVIDIA})
    legacy["default-priorities"] = {"namespace": ["nvidia"], "feature": {"nvidia": ["x"]}}
    with pytest.raises(
        InvalidInput, match=r"default-priorities\.feature: expected one of namespace"
    ):
        from_json(legacy, source="x")


def unknown_schema_release(root: Path) -> Path:
    variants = {"cu128": ("nvidia :: cuda_version_lower_bound :: 12.8",), "null": ()}
    links = build_release(root / "links", "demo", "1.0", variants, work=root / "work",
                          metadata_extra=META)  # fmt: skip
    write_variants_json(links)
    path = links / "demo-1.0-variants.json"
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "$schema": UNKNOWN}))
    return links


def test_select_and_check_accept_an_unknown_schema(tmp_path: Path, cli: Cli) -> None:
    links = unknown_schema_release(tmp_path)
    selection = choose(links, Machine(DRIVER_128.supported()))
    assert selection.label == "cu128"
    assert any(f"unknown $schema {UNKNOWN!r}" in n and "as uv 0.13.8 does" in n
               for n in selection.notes)  # fmt: skip
    report = check_release_set(links, isa=False)
    assert report.ok, report.errors
    warnings = [f for f in report.findings if f.severity is Severity.WARNING]
    assert any(f.file == "demo-1.0-variants.json" and UNKNOWN in f.message for f in warnings)
    code, out, err = cli("select", "demo", "--find-links", links, "--profile", "h100-driver-580",
                         "--explain")  # fmt: skip
    assert code == 0 and out.strip().endswith("demo-1.0-py3-none-any-cu128.whl")
    assert f"unknown $schema {UNKNOWN!r}" in err


@pytest.mark.slow
@pytest.mark.skipif(not ON_X86_64_LINUX, reason="uv's providers need x86_64 Linux")
def test_uv_agrees_on_an_unknown_schema(tmp_path: Path) -> None:
    links = unknown_schema_release(tmp_path)
    ours = choose(links, Machine(DRIVER_128.supported()))
    assert ours.chosen is not None
    assert uv_picks(links, tmp_path, DRIVER_128) == ours.chosen.filename


# -- items 5, 6, 8: metadata whose variants are never selected ---------------------------


def peculiar_config() -> VariantMetadata:
    """``acme``: a plugin with a malformed plugin-api; ``stat``: a static provider with an
    empty value list for ``empty``."""
    return config_from_table(
        {
            "default-priorities": {"namespace": ["acme", "stat"]},
            "providers": {
                "acme": {"requires": ["acme-provider"], "plugin-api": "foo:bar:baz"},
                "stat": {
                    "static-properties": {"level": ["on"], "empty": []},
                    "feature-order": ["level", "empty"],
                },
            },
        },
        source="test",
    )


PECULIAR = {
    "plugin": ("acme :: fast :: on",),  # item 5: no plugin can be loaded
    "empty": ("stat :: empty :: x",),  # item 6: the feature has no values
    "off": ("stat :: level :: off",),  # item 8: outside the declared values
    "good": ("stat :: level :: on",),
    "null": (),
}


def peculiar_release(root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Built as another tool would (wheelforge's tag refuses these)."""
    with monkeypatch.context() as patch:
        patch.setattr("wheelforge.tag._refuse_unselectable", lambda *_: None)
        links = build_release(root / "links", "demo", "1.0", PECULIAR, work=root / "work",
                              metadata_extra=META, config=peculiar_config())  # fmt: skip
    write_variants_json(links)
    return links


def test_select_reads_them_and_never_picks_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    links = peculiar_release(tmp_path, monkeypatch)

    def acme_everywhere(namespace: str, _api: str | None) -> dict[str, list[str]] | None:
        return {"fast": ["on"]} if namespace == "acme" else None  # would support it

    trusting = Machine({}, trusted=frozenset({"acme"}), plugins=acme_everywhere)
    for machine in (Machine({}), trusting):
        selection = choose(links, machine)
        assert selection.label == "good"
        status = {c.label: c.status for c in selection.candidates}
        assert status["off"].startswith("incompatible: stat :: level :: off")
        assert status["empty"].startswith("incompatible: stat :: empty :: x")
        assert status["plugin"].startswith("incompatible: acme :: fast :: on")
    # trusted, the malformed plugin-api loads nothing (variantlib refuses such a file)
    assert any("its plugin-api 'foo:bar:baz' is not 'module:attribute'" in n
               for n in choose(links, trusting).notes)  # fmt: skip


def test_check_warns_about_each(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    links = peculiar_release(tmp_path, monkeypatch)
    report = check_release_set(links, isa=False)
    assert report.ok, report.errors
    warnings = [(f.file, f.check, f.message) for f in report.findings
                if f.severity is Severity.WARNING]  # fmt: skip
    messages = "\n".join(m for _, _, m in warnings)
    assert "providers.acme.plugin-api 'foo:bar:baz': expected 'module' or" in messages
    assert "providers.stat.static-properties.empty: an empty list" in messages
    (off,) = [w for w in warnings if "stat :: level :: off" in w[2]]
    assert off[0] == "demo-1.0-py3-none-any-off.whl" and "never selected" in off[2]
    # said once per release, not once per wheel
    assert sum("plugin-api" in m for _, _, m in warnings) == 1


@pytest.mark.slow
@pytest.mark.skipif(not ON_X86_64_LINUX, reason="uv's providers need x86_64 Linux")
def test_uv_agrees_on_the_peculiar_release(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    links = peculiar_release(tmp_path, monkeypatch)
    assert uv_picks(links, tmp_path, DRIVER_128) == "demo-1.0-py3-none-any-good.whl"


# -- tag refuses what can never be selected; warns on a repeated property ---------------


def config_file(tmp_path: Path, providers: str) -> Path:
    path = tmp_path / "variant.toml"
    path.write_text('[variant]\ndefault-priorities.namespace = ["stat"]\n' + providers)
    return path


@pytest.mark.parametrize(
    ("providers", "prop", "message"),
    [
        (
            '[variant.providers.stat]\nrequires = ["stat-provider"]\nplugin-api = "foo:bar:baz"\n',
            "stat :: level :: on",
            "error: variant config: providers.stat.plugin-api 'foo:bar:baz': expected 'module' "
            "or 'module:attribute'",
        ),
        (
            "[variant.providers.stat]\nstatic-properties = { level = [] }\n",
            "stat :: level :: on",
            "error: variant config: providers.stat.static-properties.level: an empty list",
        ),
        (
            '[variant.providers.stat]\nstatic-properties = { level = ["on"] }\n',
            "stat :: level :: off",
            "error: stat :: level :: off: not among the static provider's declared values (on)",
        ),
    ],
    ids=["malformed-plugin-api", "empty-static-values", "outside-static-values"],
)
def test_tag_refuses_an_unselectable_variant(
    tmp_path: Path, cli: Cli, providers: str, prop: str, message: str
) -> None:
    plain = build_plain_wheel(tmp_path)
    config = config_file(tmp_path, providers)
    code, out, err = cli("tag", plain, "-o", tmp_path / "out", "--variant-config", config,
                         "-p", prop, "--label", "x")  # fmt: skip
    assert code == 2 and out == ""
    assert err.startswith(message) and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out" / "demo-1.0-py3-none-any-x.whl").exists()


def test_tag_warns_on_a_repeated_property_and_writes_it_once(tmp_path: Path, cli: Cli) -> None:
    plain = build_plain_wheel(tmp_path)
    code, out, err = cli("tag", plain, "-o", tmp_path / "out", "--label", "v3",
                         "-p", "x86_64 :: level :: v3", "-p", "x86_64::level::v3")  # fmt: skip
    assert code == 0, err
    assert err.strip() == (
        "warning: property 'x86_64 :: level :: v3' given more than once; the variant holds it once"
    )
    with zipfile.ZipFile(out.strip()) as zf:
        variant = json.loads(zf.read("demo-1.0.dist-info/variant.json"))
    assert variant["variants"] == {"v3": {"x86_64": {"level": ["v3"]}}}


# -- sdists: select ignores them, but says when an installer would build one -------------


def sdist(links: Path, version: str) -> Path:
    """A minimal sdist (setuptools backend; offline, uv cannot build it, which is enough
    to see that it chose it)."""
    path = links / f"demo-{version}.tar.gz"
    files = {
        "PKG-INFO": f"Metadata-Version: 2.1\nName: demo\nVersion: {version}\n",
        "pyproject.toml": '[build-system]\nrequires = ["setuptools"]\n'
        'build-backend = "setuptools.build_meta"\n'
        f'[project]\nname = "demo"\nversion = "{version}"\n',
    }
    with tarfile.open(path, "w:gz") as tf:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"demo-{version}/{name}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def cu130_only(root: Path) -> Path:
    """demo 1.0: one CUDA 13.0 variant, no fallback, and an sdist."""
    variants = {"cu130": ("nvidia :: cuda_version_lower_bound :: 13.0",)}
    links = build_release(root / "links", "demo", "1.0", variants, work=root / "work",
                          metadata_extra=META)  # fmt: skip
    (links / "demo-1.0-py3-none-any.whl").unlink()  # no plain wheel
    write_variants_json(links)
    sdist(links, "1.0")
    return links


def test_no_wheel_fits_but_an_sdist_is_there(tmp_path: Path, cli: Cli) -> None:
    links = cu130_only(tmp_path)
    selection = choose(links, Machine(DRIVER_128.supported()))
    assert selection.chosen is None
    assert selection.sdist is not None and selection.sdist.filename == "demo-1.0.tar.gz"
    assert selection.notes[-1] == (
        "no wheel fits, but demo-1.0.tar.gz does: an installer would build it from source "
        "(uv 0.13.8 does; wheelforge selects wheels only)"
    )
    code, out, err = cli("select", "demo", "--find-links", links, "--profile", "t4-driver-525")
    assert code == 1 and out == ""
    assert "an installer would build it from source" in err
    code, out, _ = cli("select", "demo", "--find-links", links, "--profile", "t4-driver-525",
                       "--json")  # fmt: skip
    data = json.loads(out)
    assert code == 1 and data["chosen"] is None and data["sdist"] == "demo-1.0.tar.gz"
    assert data["sdist_url"].startswith("file://")
    code, _, err = cli("install", "demo", "--find-links", links, "--profile", "t4-driver-525")
    assert code == 2
    assert err.strip().splitlines()[-1] == (
        "error: demo: no wheel to install on this machine (uv or pip would build demo-1.0.tar.gz)"
    )
    # where a wheel fits, the sdist of the same version changes nothing
    fits = choose(links, Machine({"nvidia": {"cuda_version_lower_bound": ["13.0"]}}))
    assert fits.label == "cu130" and fits.sdist is None
    assert not any("sdist" in n or ".tar.gz" in n for n in fits.notes)


def test_a_newer_version_with_only_an_sdist(tmp_path: Path) -> None:
    links = cu130_only(tmp_path)
    sdist(links, "2.0")
    sdist(links, "3.0rc1")  # a pre-release counts only when asked for
    selection = choose(links, Machine({"nvidia": {"cuda_version_lower_bound": ["13.0"]}}))
    assert (selection.version, selection.label) == ("1.0", "cu130")
    assert selection.sdist is not None and selection.sdist.filename == "demo-2.0.tar.gz"
    assert selection.notes[-1].startswith(
        "demo-2.0.tar.gz is newer than 1.0: an installer would build it from source"
    )
    assert selection.to_json()["chosen"] == "demo-1.0-py3-none-any-cu130.whl"


@pytest.mark.slow
@pytest.mark.skipif(not ON_X86_64_LINUX, reason="uv's providers need x86_64 Linux")
def test_uv_builds_the_sdist_when_no_wheel_fits(tmp_path: Path) -> None:
    if any(Path(p).exists() for p in ("/proc/driver/nvidia/version", "/sys/module/nvidia/version")):
        pytest.skip("uv would see this machine's real NVIDIA driver")
    links = cu130_only(tmp_path)
    env = clean_env(tmp_path, UV_OFFLINE="1", **DRIVER_128.provider_env())
    uv = str(Path(sys.executable).parent / "uv")
    venv = tmp_path / "venv"
    subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(venv)], env=env, check=True)
    result = subprocess.run(
        [uv, "pip", "install", "-v", "--preview-features", "wheel-variants", "--no-index",
         "--find-links", str(links), "--python", str(venv), "demo"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    ours = choose(links, Machine(DRIVER_128.supported()))
    assert ours.sdist is not None
    assert selected(result.stderr, "demo") == ours.sdist.filename  # it chose the sdist
    assert "Building demo==1.0" in result.stderr  # and tried to build it (offline: it fails)
