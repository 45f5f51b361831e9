"""The ``tpu`` namespace against uv 0.13.8 as a black box: uv's builtin tpu provider
(``tpu-variant-provider`` / ``TpuVariantPlugin``) reports ``tpu :: present :: true`` when
``TPU_VARIANT_PROVIDER_FORCE_PRESENT`` is 1/true/yes (or a Google TPU is on the PCI
bus), and ``tpu :: present :: false`` otherwise. With the override uv installs the tpu
variant and ``wheelforge select`` agrees; without it (or with any other value) both
fall back: to the ``present :: false`` variant, and without one to the CPU variant.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import build_plain_wheel
from tests.installers import BIN, clean_env, selected
from wheelforge.cli import main
from wheelforge.select.profiles import find_profile

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        sys.platform != "linux" or platform.machine() != "x86_64",
        reason="uv's x86_64 provider reads /proc/cpuinfo: needs x86_64 Linux",
    ),
]

NAME, VERSION, TAG = "tpudemo", "1.0", "py3-none-any"
FORCE = "TPU_VARIANT_PROVIDER_FORCE_PRESENT"
VARIANTS: dict[str, tuple[str, ...]] = {
    "tpu": ("tpu :: present :: true",),
    # what uv's provider reports where there is no TPU: beats the CPU variant there
    # (tpu comes first in the namespace priorities)
    "no_tpu": ("tpu :: present :: false",),
    "cpu": ("x86_64 :: level :: v1",),  # every x86_64 machine
    "null": (),
}


@pytest.fixture(scope="module")
def links(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tpu")
    config = root / "variant.toml"
    config.write_text('[variant]\ndefault-priorities.namespace = ["tpu", "x86_64"]\n')
    out = root / "links"
    for label in [*VARIANTS, "plain"]:
        (root / label).mkdir()
        module = f"BUILT_FOR = {label!r}\n".encode()
        plain = build_plain_wheel(
            root / label, NAME, VERSION, tag=TAG, files={f"{NAME}/__init__.py": module}
        )
        if label == "plain":
            plain.rename(out / plain.name)
            continue
        args = ["tag", str(plain), "-o", str(out), "--variant-config", str(config)]
        properties = [a for p in VARIANTS[label] for a in ("-p", p)]
        assert (
            main([*args, "--label", label, *properties] if properties else [*args, "--null"]) == 0
        )
    assert main(["variants-json", str(out)]) == 0
    variants = json.loads((out / f"{NAME}-{VERSION}-variants.json").read_text())
    assert variants["providers"]["tpu"] == {
        "plugin-api": "tpu_variant_provider.plugin:TpuVariantPlugin",
        "requires": ["tpu-variant-provider"],
    }
    return out


def uv_pick(links: Path, work: Path, **env: str) -> str:
    environment = clean_env(work, UV_OFFLINE="1", **env)
    venv = work / "venv"
    subprocess.run([str(BIN / "uv"), "venv", "-q", "--python", sys.executable, str(venv)],
                   env=environment, check=True)  # fmt: skip
    command = [str(BIN / "uv"), "pip", "install", "-v", "--preview-features", "wheel-variants",
               "--no-index", "--find-links", str(links), "--python", str(venv / "bin" / "python"),
               NAME]  # fmt: skip
    result = subprocess.run(command, env=environment, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    (site,) = venv.glob("lib/python*/site-packages")
    namespace: dict[str, object] = {}
    exec((site / NAME / "__init__.py").read_text(), namespace)
    pick = selected(result.stderr, NAME)
    label = pick.removesuffix(".whl").removeprefix(f"{NAME}-{VERSION}-{TAG}").lstrip("-")
    assert namespace["BUILT_FOR"] == (label or "plain")  # what uv really installed
    return pick


def wheelforge_pick(links: Path, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    capsys.readouterr()
    assert main(["select", NAME, "--find-links", str(links), "--json", *args]) == 0
    report = json.loads(capsys.readouterr().out)
    (chosen,) = [c["filename"] for c in report["candidates"] if c["status"] == "chosen"]
    return str(chosen)


def wheel(label: str) -> str:
    return f"{NAME}-{VERSION}-{TAG}-{label}.whl"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "no_tpu"),
        ("1", "tpu"),
        ("TRUE", "tpu"),
        ("yes", "tpu"),
        ("0", "no_tpu"),
        ("on", "no_tpu"),
    ],
)
def test_uv_and_select_agree_on_the_tpu_override(
    links: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    value: str | None,
    expected: str,
) -> None:
    env = {FORCE: value} if value is not None else {}
    assert uv_pick(links, tmp_path, **env) == wheel(expected)
    monkeypatch.delenv(FORCE, raising=False)
    if value is not None:
        monkeypatch.setenv(FORCE, value)
    assert wheelforge_pick(links, capsys) == wheel(expected)


def test_the_tpu_profile_and_its_provider_env(
    links: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(FORCE, raising=False)
    profile = find_profile("tpu-v5e")
    assert profile.supported()["tpu"] == {"present": ["true"]}
    assert profile.provider_env() == {FORCE: "1"}
    assert wheelforge_pick(links, capsys, "--profile", "tpu-v5e") == wheel("tpu")
    assert uv_pick(links, tmp_path, **profile.provider_env()) == wheel("tpu")


def test_without_a_false_variant_both_fall_back_to_the_cpu_variant(
    links: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(FORCE, raising=False)
    fewer = tmp_path / "links"
    fewer.mkdir()
    for path in links.glob("*.whl"):
        if not path.name.endswith("-no_tpu.whl"):
            (fewer / path.name).write_bytes(path.read_bytes())
    assert main(["variants-json", str(fewer)]) == 0
    assert uv_pick(fewer, tmp_path / "uv") == wheel("cpu")
    assert wheelforge_pick(fewer, capsys) == wheel("cpu")
    assert uv_pick(fewer, tmp_path / "uv-tpu", **{FORCE: "1"}) == wheel("tpu")
    monkeypatch.setenv(FORCE, "1")
    assert wheelforge_pick(fewer, capsys) == wheel("tpu")
