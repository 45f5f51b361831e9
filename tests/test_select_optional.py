"""Optional providers (``"optional": true``): off by default, as in uv 0.13.8 (which
installs the best wheel without them, static providers included) and variantlib (which
skips an optional plugin unless enabled); ``--enable-optional NS`` or
``WHEELFORGE_ENABLE_OPTIONAL`` turns one on, and ``--explain`` says why a variant lost."""

from __future__ import annotations

import json
import platform
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import build_release
from tests.installers import clean_env, selected, uv_install
from wheelforge.cli import main
from wheelforge.publish.serve import serving
from wheelforge.select.install import interpreter
from wheelforge.select.machine import Machine, enabled_optional_from_env, optional_off
from wheelforge.select.profiles import Profile, find_profile
from wheelforge.select.selection import Selection, parse_requirement, select
from wheelforge.simple_api import directory_files
from wheelforge.variants.config import config_from_table
from wheelforge.variants.metadata import VariantMetadata
from wheelforge.variants_file import write_variants_json

Cli = Callable[..., tuple[int, str, str]]
META = "Summary: A demo\nDescription-Content-Type: text/plain\n"
NVIDIA = {
    "requires": ["nvidia-variant-provider"],
    "plugin-api": "nvidia_variant_provider.plugin:NvidiaVariantPlugin",
}
VARIANTS: dict[str, tuple[str, ...]] = {
    "cu128": ("nvidia :: cuda_version_lower_bound :: 12.8",),
    "fast": ("acme :: fast :: on",),
    "null": (),
}


def optional_config(*, nvidia: bool = True, acme: bool = True) -> VariantMetadata:
    """The nvidia preset and a static ``acme`` provider, each optional or not."""
    return config_from_table(
        {
            "default-priorities": {"namespace": ["nvidia", "acme"]},
            "providers": {
                "nvidia": {**NVIDIA, "optional": nvidia},
                "acme": {"static-properties": {"fast": ["on"]}, "optional": acme},
            },
        },
        source="test",
    )


def release(root: Path, config: VariantMetadata, variants: dict[str, tuple[str, ...]]) -> Path:
    links = root / "links"
    build_release(links, "demo", "1.0", variants, work=root / "work", metadata_extra=META,
                  config=config)  # fmt: skip
    write_variants_json(links)
    return links


def choose(links: Path, machine: Machine) -> Selection:
    python = interpreter()
    files = directory_files(links, "demo")
    return select(parse_requirement("demo"), files, machine, tags=python.tags,
                  python_version=python.version)  # fmt: skip


H100 = find_profile("h100-driver-580").supported()


def test_optional_providers_are_off_by_default(tmp_path: Path) -> None:
    links = release(tmp_path, optional_config(), {"cu128": VARIANTS["cu128"], "null": ()})
    off = choose(links, Machine(H100))
    assert off.label == "null"
    status = {c.label: c.status for c in off.candidates}
    assert status["cu128"] == (
        "incompatible: nvidia :: cuda_version_lower_bound :: 12.8 "
        "(optional provider, off: --enable-optional nvidia)"
    )
    assert any(n.startswith("nvidia: its provider is optional, off by default") and
               "--enable-optional nvidia" in n for n in off.notes)  # fmt: skip
    on = choose(links, Machine(H100, enabled_optional=frozenset({"nvidia"})))
    assert on.label == "cu128"
    assert not any(n.startswith("nvidia:") for n in on.notes)


def test_an_optional_static_provider_is_off_too(tmp_path: Path) -> None:
    """uv 0.13.8 ignores an optional static provider as well (variantlib would use its
    properties); wheelforge follows the installer."""
    links = release(tmp_path, optional_config(), {"fast": VARIANTS["fast"], "null": ()})
    off = choose(links, Machine({}))
    assert off.label == "null"
    assert {c.label: c.status for c in off.candidates}["fast"] == (
        "incompatible: acme :: fast :: on (optional provider, off: --enable-optional acme)"
    )
    assert choose(links, Machine({}, enabled_optional=frozenset({"acme"}))).label == "fast"
    # enabling another namespace changes nothing
    assert choose(links, Machine({}, enabled_optional=frozenset({"nvidia"}))).label == "null"


def test_a_provider_that_is_not_optional_is_used(tmp_path: Path) -> None:
    links = release(tmp_path, optional_config(nvidia=False, acme=False), VARIANTS)
    selection = choose(links, Machine(H100))
    assert selection.label == "cu128"
    assert not any("optional" in n for n in selection.notes)


def test_optional_off_and_the_environment() -> None:
    meta = optional_config(nvidia=True, acme=False)
    assert optional_off(meta, frozenset()) == ("nvidia",)
    assert optional_off(meta, frozenset({"nvidia"})) == ()
    assert optional_off(None, frozenset()) == ()
    env = {"WHEELFORGE_ENABLE_OPTIONAL": " nvidia, acme ,,"}
    assert enabled_optional_from_env(env) == frozenset({"nvidia", "acme"})
    assert enabled_optional_from_env({}) == frozenset()


def test_cli_enable_optional_explain_json_and_coverage(
    tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    links = release(tmp_path, optional_config(), VARIANTS)
    args = ("select", "demo", "--find-links", links, "--profile", "h100-driver-580")
    code, out, err = cli(*args, "--explain")
    assert code == 0 and out.strip().splitlines()[-1] == "demo-1.0-py3-none-any-null.whl"
    assert "--enable-optional nvidia" in out  # the explain table
    assert "note: nvidia: its provider is optional" in err
    code, out, _ = cli(*args, "--enable-optional", "nvidia", "--json")
    assert code == 0 and json.loads(out)["label"] == "cu128"
    code, out, _ = cli(*args, "--enable-optional", "nvidia", "--enable-optional", "acme")
    assert out.strip() == "demo-1.0-py3-none-any-cu128.whl"  # nvidia ranks first
    code, out, _ = cli(*args, "--enable-optional", "acme")
    assert out.strip() == "demo-1.0-py3-none-any-fast.whl"
    monkeypatch.setenv("WHEELFORGE_ENABLE_OPTIONAL", "nvidia")
    assert cli(*args)[1].strip() == "demo-1.0-py3-none-any-cu128.whl"
    monkeypatch.delenv("WHEELFORGE_ENABLE_OPTIONAL")

    code, out, _ = cli("coverage", links, "--json")
    rows = {r["profile"]: r for r in json.loads(out)}
    assert rows["h100-driver-580"]["outcome"] == "null"
    code, out, _ = cli("coverage", links, "--enable-optional", "nvidia", "--json")
    rows = {r["profile"]: r for r in json.loads(out)}
    assert (rows["h100-driver-580"]["label"], rows["t4-driver-525"]["label"]) == ("cu128", "null")


# -- against uv 0.13.8 ---------------------------------------------------------------

ON_X86_64_LINUX = sys.platform == "linux" and platform.machine() == "x86_64"


@pytest.mark.slow
@pytest.mark.skipif(not ON_X86_64_LINUX, reason="uv's providers need x86_64 Linux")
def test_uv_installs_what_wheelforge_selects_with_optional_providers(tmp_path: Path) -> None:
    """Driver 12.8 simulated for both: uv picks ``null`` (it has no way to enable an
    optional provider), as does wheelforge by default; enabled, wheelforge picks cu128."""
    if any(Path(p).exists() for p in ("/proc/driver/nvidia/version", "/sys/module/nvidia/version")):
        pytest.skip("uv would see this machine's real NVIDIA driver")
    links = release(tmp_path, optional_config(), VARIANTS)
    site = tmp_path / "site"
    assert main(["index", str(links), "--out", str(site), "--no-check"]) == 0
    profile = Profile("cuda12.8", "driver 12.8", "12.8", None)
    ours = choose(links, Machine(profile.supported()))
    assert ours.chosen is not None and ours.label == "null"
    with serving(site) as url:
        env = clean_env(tmp_path, **profile.provider_env())
        result = uv_install(tmp_path / "venv", url, "demo", env)
    assert result.returncode == 0, result.stderr
    assert selected(result.stderr, "demo") == ours.chosen.filename
    enabled = Machine(profile.supported(), enabled_optional=frozenset({"nvidia", "acme"}))
    assert choose(links, enabled).label == "cu128"
