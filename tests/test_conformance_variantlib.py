"""Conformance with the reference library, variantlib 0.2.x, used as a library and as a CLI.

Real code on both sides, no mocks: labels are computed by both, wheels written by one
are read and validated by the other, and both merge rules agree.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from variantlib.errors import ValidationError
from variantlib.models.variant import VariantDescription
from variantlib.models.variant import VariantProperty as VLProperty
from variantlib.variant_dist_info import VariantDistInfo
from variantlib.variants_json import VariantsJson

from tests.conftest import build_plain_wheel
from wheelforge.variants.labels import default_label
from wheelforge.variants.merge import MergeConflict, merge
from wheelforge.variants.metadata import Schema, VariantMetadata, from_json, loads, to_json
from wheelforge.variants.properties import VariantProperty
from wheelforge.variants.providers import PRESET_PRIORITY, PRESETS

Cli = Callable[..., tuple[int, str, str]]

VARIANTLIB = Path(sys.executable).parent / "variantlib"

# The [variant] table that reproduces wheelforge's default config (every preset,
# accelerators first), written for variantlib's make-variant.
PRESET_PYPROJECT = """\
[variant.default-priorities]
namespace = ["nvidia", "amd", "x86_64", "aarch64"]

[variant.providers.nvidia]
requires = ["nvidia-variant-provider"]
plugin-api = "nvidia_variant_provider.plugin:NvidiaVariantPlugin"

[variant.providers.amd]
requires = ["amd-variant-provider"]
plugin-api = "amd_variant_provider.plugin:AMDVariantPlugin"

[variant.providers.x86_64]
requires = ["x86-64-variant-provider"]

[variant.providers.aarch64]
requires = ["aarch64-variant-provider"]
"""

# A config with the other provider kinds: static properties (two features, so a
# feature-order) and an optional plugin.
CUSTOM_CONFIG = """\
[variant.default-priorities]
namespace = ["blas", "x86_64", "acme"]

[variant.providers.blas]
static-properties = { vendor = ["mkl", "openblas"], api = ["lp64", "ilp64"] }
feature-order = ["vendor", "api"]

[variant.providers.acme]
requires = ["acme-variant-provider>=1.0"]
plugin-api = "acme_provider.plugin:Plugin"
optional = true
"""


def run_variantlib(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VARIANTLIB), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        check=False,
    )


def vl_props(texts: list[str]) -> list[VLProperty]:
    return [VLProperty.from_str(text) for text in texts]


def wf_props(texts: list[str]) -> frozenset[VariantProperty]:
    return frozenset(VariantProperty.parse(text) for text in texts)


def vl_label(texts: list[str]) -> str:
    return VariantDescription(properties=vl_props(texts)).label


def vl_view(info: VariantsJson) -> dict[str, set[str]]:
    """variantlib's variants as ``{label: {'ns :: f :: v', ...}}``."""
    return {
        label: {prop.to_str() for prop in desc.properties} for label, desc in info.variants.items()
    }


def wf_view(meta: VariantMetadata) -> dict[str, set[str]]:
    return {label: {str(prop) for prop in props} for label, props in meta.variants.items()}


def read_variant_json(wheel: Path) -> bytes:
    with zipfile.ZipFile(wheel) as zf:
        (name,) = [n for n in zf.namelist() if n.endswith(".dist-info/variant.json")]
        return zf.read(name)


def label_of(wheel: Path) -> str | None:
    parts = wheel.name[: -len(".whl")].split("-")
    return parts[5] if len(parts) == 6 and not parts[2][0].isdigit() else None


# -- default labels ------------------------------------------------------------------

LABEL_CASES = [
    pytest.param(["x86_64 :: level :: v3"], id="x86_64-v3"),
    pytest.param(["nvidia :: cuda_version_lower_bound :: 12.8"], id="cuda-12.8"),
    pytest.param(["x86_64::level::v3"], id="no-whitespace"),
    pytest.param(["  x86_64 \t::  level ::v3  "], id="extra-whitespace"),
    pytest.param(
        ["nvidia :: cuda_version_lower_bound :: 12.8", "nvidia :: sm_arch :: 90_real"],
        id="two-features-one-namespace",
    ),
    pytest.param(
        ["x86_64 :: level :: v3", "nvidia :: cuda_version_lower_bound :: 12.8"],
        id="two-namespaces",
    ),
    pytest.param(
        [
            "x86_64 :: level :: v2",
            "aarch64 :: version :: 8.2a",
            "nvidia :: cuda_version_upper_bound :: 13",
        ],
        id="three-namespaces-unsorted",
    ),
    pytest.param(["x86_64 :: level :: v4", "x86_64 :: level :: v3"], id="multi-value"),
    pytest.param(
        [
            "nvidia :: sm_arch :: 80_real",
            "nvidia :: sm_arch :: 90_real",
            "nvidia :: sm_arch :: 100_real",
        ],
        id="multi-value-string-order",
    ),
    pytest.param(["amd :: gfx_arch :: gfx942", "amd :: rocm_version :: 6.2"], id="amd"),
    pytest.param(["my_ns :: feat_1 :: value.with.dots_1"], id="custom-namespace"),
    pytest.param(["a :: b :: cx", "d :: e :: f"], id="adjacent-1"),
    pytest.param(["a :: b :: c", "xd :: e :: f"], id="adjacent-2"),
    pytest.param(["a :: b :: c", "a_b :: b :: c", "a0 :: b :: c"], id="namespace-prefixes"),
    pytest.param([], id="null"),
]


@pytest.mark.parametrize("texts", LABEL_CASES)
def test_default_label_matches_variantlib(texts: list[str]) -> None:
    description = VariantDescription(properties=vl_props(texts))
    ours = default_label(wf_props(texts))
    assert ours == description.label
    if texts:
        assert ours == description.hexdigest
    else:
        assert ours == "null"


def test_default_label_known_values() -> None:
    known = {
        "x86_64 :: level :: v3": "fa7c1393",
        "nvidia :: cuda_version_lower_bound :: 12.8": "f839a2dd",
    }
    for text, label in known.items():
        assert default_label(wf_props([text])) == label
        assert vl_label([text]) == label
    # whitespace around '::' does not change the label
    assert default_label(wf_props(["x86_64::level::v3"])) == "fa7c1393"


def test_default_label_matches_variantlib_cli() -> None:
    texts = ["x86_64 :: level :: v3", "nvidia :: cuda_version_lower_bound :: 12.8"]
    result = run_variantlib("get-variant-hash", "-p", *texts)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == default_label(wf_props(texts))


_name = st.from_regex(r"[a-z0-9_]{1,6}", fullmatch=True)
_value = st.from_regex(r"[a-z0-9_.]{1,6}", fullmatch=True)
_property_sets = st.lists(st.tuples(_name, _name, _value), min_size=1, max_size=6, unique=True)


@settings(max_examples=200, deadline=None)
@given(_property_sets)
def test_default_label_matches_variantlib_for_any_set(triples: list[tuple[str, str, str]]) -> None:
    texts = [f"{ns} :: {feature} :: {value}" for ns, feature, value in triples]
    assert default_label(wf_props(texts)) == vl_label(texts)
    # the order in which properties are given never matters
    assert default_label(wf_props(texts[::-1])) == vl_label(texts)


# -- wheelforge-made wheels, read by variantlib ------------------------------------------

# label (None: the default hash label) -> properties
DEFAULT_CONFIG_VARIANTS: list[tuple[str | None, list[str]]] = [
    (None, ["x86_64 :: level :: v3"]),
    (None, ["nvidia :: cuda_version_lower_bound :: 12.8"]),
    ("cu131", ["nvidia :: cuda_version_lower_bound :: 13.1"]),
    ("cu12_sm", ["nvidia :: cuda_version_lower_bound :: 12.0", "nvidia :: sm_arch :: 90_real"]),
    ("multi.v", ["x86_64 :: level :: v3", "x86_64 :: level :: v4"]),
    (None, ["nvidia :: cuda_version_lower_bound :: 12.8", "x86_64 :: level :: v2"]),
    ("null", []),
]

CUSTOM_CONFIG_VARIANTS: list[tuple[str | None, list[str]]] = [
    ("mkl", ["blas :: vendor :: mkl", "blas :: api :: lp64"]),
    (None, ["blas :: vendor :: openblas", "x86_64 :: level :: v2"]),
    ("acme", ["acme :: thing :: yes"]),
]


def variants_for(
    config: str, tmp_path: Path
) -> tuple[list[tuple[str | None, list[str]]], list[str | Path]]:
    """The variants to tag for a config, and the ``tag`` options that select it."""
    if config == "default":
        return DEFAULT_CONFIG_VARIANTS, []
    config_file = tmp_path / "variants.toml"
    config_file.write_text(CUSTOM_CONFIG)
    return CUSTOM_CONFIG_VARIANTS, ["--variant-config", config_file]


def tag_all(
    cli: Cli,
    plain: Path,
    out: Path,
    variants: list[tuple[str | None, list[str]]],
    *extra: str | Path,
) -> dict[str, Path]:
    """Tag ``plain`` once per variant; return ``{label: wheel}``."""
    out.mkdir(exist_ok=True)
    wheels = {}
    for label, texts in variants:
        args: list[str | Path] = ["tag", plain, "-o", out, *extra]
        if not texts:
            args.append("--null")
        elif label is not None:
            args += ["--label", label]
        for text in texts:
            args += ["-p", text]
        code, stdout, stderr = cli(*args)
        assert code == 0, stderr
        wheel = Path(stdout.strip())
        expected = label if label is not None else default_label(wf_props(texts))
        assert label_of(wheel) == expected
        wheels[expected] = wheel
    return wheels


@pytest.mark.parametrize("config", ["default", "custom"])
def test_tagged_wheels_validate_with_variantlib(
    config: str, make_wheel: Callable[..., Path], cli: Cli, tmp_path: Path
) -> None:
    variants, extra = variants_for(config, tmp_path)
    wheels = tag_all(cli, make_wheel(), tmp_path / "out", variants, *extra)
    expected_props = {
        (label or default_label(wf_props(texts))): {str(p) for p in wf_props(texts)}
        for label, texts in variants
    }
    assert set(wheels) == set(expected_props)

    for label, wheel in wheels.items():
        raw = read_variant_json(wheel)
        info = VariantDistInfo(raw, expected_label=label)
        assert info.variant_label == label
        assert vl_view(info) == {label: expected_props[label]}
        document = json.loads(raw)
        # variantlib's view of priorities and providers is what wheelforge wrote
        assert info.namespace_priorities == document["default-priorities"]["namespace"]
        assert info.providers_dict() == document["providers"]
        if config == "default":
            assert info.namespace_priorities == list(PRESET_PRIORITY)
        else:
            assert info.namespace_priorities == ["blas", "x86_64", "acme"]
            assert info.providers["blas"].feature_order == ["vendor", "api"]
            assert info.providers["blas"].static_properties == {
                "vendor": ["mkl", "openblas"],
                "api": ["lp64", "ilp64"],
            }
            assert info.providers["acme"].optional is True
            assert info.providers["x86_64"].requires == list(PRESETS["x86_64"].requires)
        # and variantlib checks the label against the filename's for real
        with pytest.raises(ValidationError):
            VariantDistInfo(raw, expected_label=f"{label}x")


def test_variantlib_analyze_wheel_accepts_tagged_wheels(
    make_wheel: Callable[..., Path], cli: Cli, tmp_path: Path
) -> None:
    wheels = tag_all(cli, make_wheel(), tmp_path / "out", DEFAULT_CONFIG_VARIANTS)
    for label, texts in DEFAULT_CONFIG_VARIANTS:
        label = label or default_label(wf_props(texts))
        result = run_variantlib("analyze-wheel", "-i", wheels[label])
        assert result.returncode == 0, result.stderr
        assert f"Variant: `{label}`" in result.stdout
        assert "is a Wheel Variant" in result.stderr
        shown = {line for line in result.stdout.splitlines() if " :: " in line}
        assert shown == {str(p) for p in wf_props(texts)}


@pytest.mark.parametrize("config", ["default", "custom"])
def test_variants_json_parses_with_variantlib(
    config: str, make_wheel: Callable[..., Path], cli: Cli, tmp_path: Path
) -> None:
    variants, extra = variants_for(config, tmp_path)
    out = tmp_path / "out"
    wheels = tag_all(cli, make_wheel(), out, variants, *extra)
    shutil.copy(make_wheel(), out)  # a plain fallback beside them is left out of the file
    code, _, stderr = cli("variants-json", out)
    assert code == 0, stderr
    text = (out / "demo-1.0-variants.json").read_text()
    document = json.loads(text)

    info = VariantsJson(document)
    assert set(info.variants) == set(wheels)
    expected = {
        (label or default_label(wf_props(texts))): {str(p) for p in wf_props(texts)}
        for label, texts in variants
    }
    assert vl_view(info) == expected
    assert info.providers_dict() == document["providers"]
    first = VariantDistInfo(read_variant_json(next(iter(wheels.values()))))
    assert info.namespace_priorities == first.namespace_priorities
    assert info.providers_dict() == first.providers_dict()

    # variantlib's own index generator, on a copy of the same wheels, agrees
    theirs_dir = tmp_path / "theirs"
    theirs_dir.mkdir()
    for wheel in wheels.values():
        shutil.copy(wheel, theirs_dir)
    result = run_variantlib("generate-index-json", "-d", theirs_dir)
    assert result.returncode == 0, result.stderr
    theirs_text = (theirs_dir / "demo-1.0-variants.json").read_text()
    theirs = VariantsJson(json.loads(theirs_text))
    assert vl_view(theirs) == vl_view(info)
    assert theirs.namespace_priorities == info.namespace_priorities
    assert theirs.providers_dict() == info.providers_dict()
    # ... and wheelforge reads variantlib's file as the same metadata as its own
    assert loads(theirs_text, source="theirs") == loads(text, source="ours")


# -- variantlib-made wheels, read by wheelforge ------------------------------------------


def make_variant(plain: Path, out: Path, pyproject: Path, *args: str) -> Path:
    out.mkdir(exist_ok=True)
    before = set(out.glob("*.whl"))
    result = run_variantlib(
        "make-variant",
        "-f",
        plain,
        "-o",
        out,
        "--pyproject-toml",
        pyproject,
        "--skip-plugin-validation",
        "--no-isolation",
        *args,
    )
    assert result.returncode == 0, result.stderr
    (made,) = set(out.glob("*.whl")) - before
    return made


def test_wheelforge_inspects_variantlib_wheels(
    make_wheel: Callable[..., Path], cli: Cli, tmp_path: Path
) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(PRESET_PYPROJECT)
    plain, out = make_wheel(), tmp_path / "vl"
    cases = {
        "x86_64 :: level :: v2": make_variant(plain, out, pyproject, "-p", "x86_64 :: level :: v2"),
        "custom": make_variant(
            plain,
            out,
            pyproject,
            "--variant-label",
            "cu12_v3",
            "-p",
            "nvidia :: cuda_version_lower_bound :: 12.0",
            "-p",
            "x86_64 :: level :: v3",
        ),
        "null": make_variant(plain, out, pyproject, "--null-variant"),
    }
    expected = {
        cases["x86_64 :: level :: v2"].name: ("40aba78e", ["x86_64 :: level :: v2"]),
        cases["custom"].name: (
            "cu12_v3",
            ["nvidia :: cuda_version_lower_bound :: 12.0", "x86_64 :: level :: v3"],
        ),
        cases["null"].name: ("null", []),
    }
    assert default_label(wf_props(["x86_64 :: level :: v2"])) == "40aba78e"

    code, stdout, stderr = cli("inspect", "--json", out)
    assert code == 0, stderr
    reports = {Path(r["path"]).name: r for r in json.loads(stdout)}
    assert set(reports) == set(expected)
    for name, (label, props) in expected.items():
        report = reports[name]
        assert report["label"] == label
        assert report["properties"] == sorted(props)
        assert report["record_ok"] is True
        assert report["problem"] is None
        assert report["schema"] == Schema.PROVIDERS_V0_2_0.short_name
        assert report["name"] == "demo"
        assert report["version"] == "1.0"


def test_variants_json_on_mixed_wheels(
    make_wheel: Callable[..., Path], cli: Cli, tmp_path: Path
) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(PRESET_PYPROJECT)
    plain, out = make_wheel(), tmp_path / "mixed"
    theirs = [
        make_variant(plain, out, pyproject, "-p", "x86_64 :: level :: v2"),
        make_variant(plain, out, pyproject, "--null-variant"),
    ]
    ours = tag_all(
        cli,
        plain,
        out,
        [
            ("cu128", ["nvidia :: cuda_version_lower_bound :: 12.8"]),
            (None, ["x86_64 :: level :: v3"]),
        ],
    )
    code, _, stderr = cli("variants-json", out)
    assert code == 0, stderr
    text = (out / "demo-1.0-variants.json").read_text()
    meta = loads(text, source="variants.json")
    assert wf_view(meta) == {
        "40aba78e": {"x86_64 :: level :: v2"},
        "null": set(),
        "cu128": {"nvidia :: cuda_version_lower_bound :: 12.8"},
        "fa7c1393": {"x86_64 :: level :: v3"},
    }
    assert {label_of(w) for w in theirs} | set(ours) == set(meta.variants)
    assert meta.namespace_priorities == PRESET_PRIORITY
    assert dict(meta.providers) == {ns: PRESETS[ns] for ns in PRESET_PRIORITY}
    code, _, stderr = cli("variants-json", "--check", out)
    assert code == 0, stderr
    # variantlib reads the merged file as the same thing
    info = VariantsJson(json.loads(text))
    assert vl_view(info) == wf_view(meta)
    assert info.namespace_priorities == list(meta.namespace_priorities)


def test_variants_json_rejects_mixed_wheels_with_other_priorities(
    make_wheel: Callable[..., Path], cli: Cli, tmp_path: Path
) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        PRESET_PYPROJECT.replace(
            '["nvidia", "amd", "x86_64", "aarch64"]', '["x86_64", "nvidia", "amd", "aarch64"]'
        )
    )
    plain, out = make_wheel(), tmp_path / "mixed"
    theirs = make_variant(plain, out, pyproject, "-p", "x86_64 :: level :: v2")
    ours = tag_all(cli, plain, out, [("cu128", ["nvidia :: cuda_version_lower_bound :: 12.8"])])
    code, _, stderr = cli("variants-json", out)
    assert code != 0
    assert "default-priorities.namespace" in stderr
    assert not (out / "demo-1.0-variants.json").exists()
    # variantlib refuses the same merge
    merged = VariantDistInfo(read_variant_json(theirs))
    with pytest.raises(ValidationError):
        merged.merge(VariantDistInfo(read_variant_json(ours["cu128"])))


# -- merging -----------------------------------------------------------------------------

NVIDIA = {
    "requires": ["nvidia-variant-provider"],
    "plugin-api": "nvidia_variant_provider.plugin:NvidiaVariantPlugin",
}
X86 = {"requires": ["x86-64-variant-provider"]}


def doc(priorities: list[str], variants: dict[str, Any], **providers: Any) -> dict[str, Any]:
    defaults = {"nvidia": NVIDIA, "x86_64": X86, "amd": {"requires": ["amd-variant-provider"]}}
    return {
        "$schema": Schema.PROVIDERS_V0_2_0.value,
        "default-priorities": {"namespace": priorities},
        "providers": {ns: providers.get(ns, defaults[ns]) for ns in priorities},
        "variants": variants,
    }


CU128 = {"nvidia": {"cuda_version_lower_bound": ["12.8"]}}
CU131 = {"nvidia": {"cuda_version_lower_bound": ["13.1"]}}
V3 = {"x86_64": {"level": ["v3"]}}

MERGE_CASES = [
    pytest.param(
        doc(["nvidia", "x86_64"], {"cu128": CU128, "v3": V3}),
        doc(["nvidia"], {"cu131": CU131, "null": {}}),
        True,
        id="prefix-priorities",
    ),
    pytest.param(
        doc(["nvidia", "x86_64"], {"cu128": CU128, "v3": V3}),
        doc(["nvidia", "x86_64"], {"cu128": CU128}),
        True,
        id="same-label-same-properties",
    ),
    pytest.param(
        doc(["nvidia", "x86_64", "amd"], {"v3": V3}),
        doc(["nvidia", "x86_64"], {"multi": {"x86_64": {"level": ["v3", "v4"]}, **CU128}}),
        True,
        id="multi-value-and-longer-priorities",
    ),
    pytest.param(
        doc(["nvidia"], {"cu": CU128}),
        doc(["nvidia"], {"cu": CU131}),
        False,
        id="conflict-label-properties",
    ),
    pytest.param(
        doc(["nvidia", "x86_64"], {"cu128": CU128}),
        doc(["x86_64", "nvidia"], {"v3": V3}),
        False,
        id="conflict-priorities",
    ),
    pytest.param(
        doc(["nvidia"], {"cu128": CU128}),
        doc(["nvidia"], {"cu131": CU131}, nvidia={"requires": ["nvidia-variant-provider"]}),
        False,
        id="conflict-providers",
    ),
]


def _vl_merge(a: dict[str, Any], b: dict[str, Any]) -> VariantsJson:
    merged = VariantsJson(json.loads(json.dumps(a)))
    merged.merge(VariantsJson(json.loads(json.dumps(b))))
    return merged


def _wf_merge(a: dict[str, Any], b: dict[str, Any]) -> VariantMetadata:
    return merge(from_json(a, source="a"), from_json(b, source="b"))


@pytest.mark.parametrize("first_a", [True, False], ids=["a+b", "b+a"])
@pytest.mark.parametrize(("a", "b", "ok"), MERGE_CASES)
def test_merge_agrees_with_variantlib(
    a: dict[str, Any], b: dict[str, Any], ok: bool, first_a: bool
) -> None:
    if not first_a:
        a, b = b, a
    if not ok:
        with pytest.raises(ValidationError):
            _vl_merge(a, b)
        with pytest.raises(MergeConflict):
            _wf_merge(a, b)
        return
    theirs = _vl_merge(a, b)
    ours = _wf_merge(a, b)
    assert wf_view(ours) == vl_view(theirs)
    assert list(ours.namespace_priorities) == theirs.namespace_priorities
    assert to_json(ours)["providers"] == theirs.providers_dict()
    # the union of both inputs' labels, nothing more
    assert set(ours.variants) == set(a["variants"]) | set(b["variants"])


# -- legacy priorities (issue 14 item 3) ----------------------------------------------
#
# A legacy v0.0.3 file's ``default-priorities.feature`` / ``.property`` are explicit
# priorities. variantlib 0.2.2 refuses those keys in a file (as uv does), but its sort
# takes feature and property priorities ahead of the providers' own orders (api.py
# merges the user configuration's into ``sort_and_filter_supported_variants``).
# wheelforge ranks a legacy file's priorities exactly so: checked here against
# variantlib's public ``get_variants_by_priority`` (static providers: no plugin runs)
# with its configuration carrying the file's priorities, and against its resolver with
# what a machine supports for the plugin namespaces.

LEGACY_STATIC_VARIANTS = {
    "mkl": {"blas": {"vendor": ["mkl"]}},
    "openblas": {"blas": {"vendor": ["openblas"]}},
    "ilp64": {"blas": {"api": ["ilp64"]}},
    "lp64": {"blas": {"api": ["lp64"]}},
    "mkl_ilp64": {"blas": {"vendor": ["mkl"], "api": ["ilp64"]}},
    "gfx_a": {"gpu": {"arch": ["a"]}},
    "gfx_b": {"gpu": {"arch": ["b"]}},
    "gfx_ab": {"gpu": {"arch": ["a", "b"]}},
    "null": {},
}

# (feature priorities, property priorities) of the legacy file
LEGACY_PRIORITIES: list[Any] = [
    pytest.param({}, {}, id="none"),
    pytest.param({"blas": ["api"]}, {}, id="feature-api-first"),
    pytest.param({"blas": ["api", "vendor"]}, {}, id="feature-both-listed"),
    pytest.param({}, {"blas": {"vendor": ["openblas"]}}, id="property-openblas-first"),
    pytest.param({}, {"gpu": {"arch": ["b", "a"]}}, id="property-reversed"),
    pytest.param(
        {"blas": ["api"]},
        {"blas": {"api": ["ilp64"], "vendor": ["openblas", "mkl"]}, "gpu": {"arch": ["b"]}},
        id="feature-and-property",
    ),
    pytest.param({"blas": ["nosuch"]}, {"gpu": {"arch": ["zz", "b"]}}, id="unknown-entries"),
]


def _legacy_static_file(feature: dict[str, Any], prop: dict[str, Any]) -> dict[str, Any]:
    priorities: dict[str, Any] = {"namespace": ["blas", "gpu"]}
    if feature:
        priorities["feature"] = feature
    if prop:
        priorities["property"] = prop
    return {
        "$schema": Schema.LEGACY_V0_0_3.value,
        "default-priorities": priorities,
        "providers": {"blas": {"install-time": False}, "gpu": {"install-time": False}},
        "static-properties": {
            "blas": {"vendor": ["mkl", "openblas"], "api": ["lp64", "ilp64"]},
            "gpu": {"arch": ["a", "b"]},
        },
        "variants": LEGACY_STATIC_VARIANTS,
    }


def _wheelforge_order(meta: VariantMetadata, support: Any) -> list[str]:
    from wheelforge.variants.ranking import rank

    return [r.label for r in rank(meta, support) if r.compatible and r.label is not None]


@pytest.mark.parametrize(("feature", "prop"), LEGACY_PRIORITIES)
def test_legacy_priorities_rank_as_variantlib_sorts(
    feature: dict[str, Any], prop: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from variantlib import api
    from variantlib.configuration import VariantConfiguration
    from variantlib.models.configuration import VariantConfiguration as ConfigModel

    legacy = _legacy_static_file(feature, prop)
    if feature or prop:
        with pytest.raises(ValidationError, match="unexpected subkeys"):
            VariantsJson(legacy)  # variantlib 0.2.2 refuses the keys in a file
    meta = from_json(legacy, source="legacy-variants.json")
    config = ConfigModel(
        namespace_priorities=[], feature_priorities=feature, property_priorities=prop
    )
    monkeypatch.setattr(VariantConfiguration, "get_config", classmethod(lambda cls: config))
    # the same release in the generation variantlib reads, the priorities in its config
    current = to_json(meta, Schema.PROVIDERS_V0_2_0)
    theirs = [v.label for v in api.get_variants_by_priority(variants_json=current)]
    assert _wheelforge_order(meta, {}) == theirs


@pytest.mark.parametrize(
    ("feature", "prop"),
    [
        pytest.param({}, {}, id="none"),
        pytest.param({"nvidia": ["sm_arch"]}, {}, id="sm-arch-first"),
        pytest.param({}, {"nvidia": {"cuda_version_lower_bound": ["12.6"]}}, id="cu126-first"),
        pytest.param({}, {"x86_64": {"level": ["v1", "v2"]}}, id="low-levels-first"),
        pytest.param(
            {"nvidia": ["sm_arch", "cuda_version_lower_bound"]},
            {"nvidia": {"sm_arch": ["80_real"], "cuda_version_lower_bound": ["12.0", "12.8"]}},
            id="both",
        ),
    ],
)
def test_legacy_priorities_on_plugin_namespaces_rank_as_variantlib(
    feature: dict[str, list[str]], prop: dict[str, dict[str, list[str]]]
) -> None:
    from variantlib.resolver.lib import sort_and_filter_supported_variants

    from wheelforge.variants import supported

    variants = {
        "cu126": {"nvidia": {"cuda_version_lower_bound": ["12.6"]}},
        "cu128": {"nvidia": {"cuda_version_lower_bound": ["12.8"]}},
        "cu120": {"nvidia": {"cuda_version_lower_bound": ["12.0"]}},
        "sm80": {"nvidia": {"sm_arch": ["80_real"]}},
        "sm90": {"nvidia": {"sm_arch": ["90_real"]}},
        "cu128_sm80": {"nvidia": {"cuda_version_lower_bound": ["12.8"], "sm_arch": ["80_real"]}},
        "v1": {"x86_64": {"level": ["v1"]}},
        "v2": {"x86_64": {"level": ["v2"]}},
        "v3": {"x86_64": {"level": ["v3"]}},
        "null": {},
    }
    priorities: dict[str, Any] = {"namespace": ["nvidia", "x86_64"]}
    if feature:
        priorities["feature"] = feature
    if prop:
        priorities["property"] = prop
    legacy = {
        "$schema": Schema.LEGACY_V0_0_3.value,
        "default-priorities": priorities,
        "providers": {
            "nvidia": {"requires": ["nvidia-variant-provider"]},
            "x86_64": {"requires": ["x86-64-variant-provider"]},
        },
        "variants": variants,
    }
    meta = from_json(legacy, source="legacy-variants.json")
    machine = {"nvidia": supported.nvidia("12.8", "9.0"), "x86_64": supported.x86_64(3)}
    supported_vprops = [
        VLProperty(namespace=ns, feature=f, value=v)
        for ns, features in machine.items()
        for f, values in features.items()
        for v in values
    ]
    theirs = sort_and_filter_supported_variants(
        [VariantDescription.from_dict(props, label=label) for label, props in variants.items()],
        supported_vprops,
        namespace_priorities=["nvidia", "x86_64"],
        feature_priorities=feature,
        property_priorities=prop,
        filter_values=True,
    )
    assert _wheelforge_order(meta, machine) == [v.label for v in theirs]


# -- variantlib 0.2.2's build-requires (ahead-of-time plugins): refused, with a line --

AOT_PYPROJECT = """\
[variant.default-priorities]
namespace = ["x86_64", "acme"]

[variant.providers.x86_64]
requires = ["x86-64-variant-provider"]

[variant.providers.acme]
build-requires = ["acme-variant-provider"]
plugin-api = "acme_provider:Plugin"
"""


def test_build_requires_is_refused_with_a_line(tmp_path: Path, cli: Cli) -> None:
    """variantlib reads build-requires in pyproject.toml (and runs the plugin when it
    builds); it refuses the key in a published file, as uv does. wheelforge runs no
    plugin at build time: it refuses the key and says what to write instead."""
    import tomllib

    from variantlib.pyproject_toml import VariantPyProjectToml

    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(AOT_PYPROJECT)
    theirs = VariantPyProjectToml(tomllib.loads(AOT_PYPROJECT))
    assert theirs.providers["acme"].build_requires == ["acme-variant-provider"]
    published = {
        "$schema": Schema.PROVIDERS_V0_2_0.value,
        "default-priorities": {"namespace": ["acme"]},
        "providers": {"acme": {"build-requires": ["acme-variant-provider"]}},
        "variants": {},
    }
    with pytest.raises(ValidationError, match="build-requires is not allowed in this file"):
        VariantsJson(published)

    plain = tmp_path / "plain"
    plain.mkdir()
    wheel = build_plain_wheel(plain)
    code, _, stderr = cli(
        "tag", wheel, "-p", "x86_64 :: level :: v3", "--variant-config", pyproject,
        "-o", tmp_path / "out",
    )  # fmt: skip
    assert code == 2
    assert (
        f"error: {pyproject}: variant.providers.acme.build-requires: ahead-of-time plugins "
        "(variantlib's build-requires) are not run by wheelforge"
    ) in stderr
    assert "hint: write what the plugin reports on the build machine as " in stderr
    assert "variant.providers.acme.static-properties" in stderr
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


@pytest.mark.parametrize(("feature", "prop"), LEGACY_PRIORITIES)
def test_select_over_a_legacy_release_picks_variantlibs_first(
    feature: dict[str, Any],
    prop: dict[str, Any],
    tmp_path: Path,
    cli: Cli,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``wheelforge select`` over a find-links directory whose wheels and variants file
    are legacy v0.0.3 with explicit priorities: the wheel it picks is variantlib's first."""
    from dataclasses import replace

    from variantlib import api
    from variantlib.configuration import VariantConfiguration
    from variantlib.models.configuration import VariantConfiguration as ConfigModel

    from wheelforge.tag import TagRequest, tag_wheel
    from wheelforge.variants.properties import flatten
    from wheelforge.variants_file import write_variants_json

    meta = from_json(_legacy_static_file(feature, prop), source="legacy")
    config = replace(meta, variants={})
    links = tmp_path / "links"
    links.mkdir()
    plain = build_plain_wheel(tmp_path)
    for label, nested in LEGACY_STATIC_VARIANTS.items():
        request = TagRequest(
            properties=frozenset(flatten(nested)),
            label=label,
            config=config,
            schema=Schema.LEGACY_V0_0_3,
        )
        tag_wheel(plain, links, request)
    write_variants_json(links, Schema.LEGACY_V0_0_3)
    written = json.loads((links / "demo-1.0-variants.json").read_text())["default-priorities"]
    assert written.get("property", {}) == prop
    # blas's static order (two features, and legacy has no feature-order) follows the
    # explicit priorities
    assert written["feature"]["blas"][: len(feature.get("blas", []))] == feature.get("blas", [])

    code, out, err = cli("select", "demo", "--find-links", links, "--json")
    assert code == 0, err
    chosen = json.loads(out)["chosen"]
    # ... and select says that uv 0.13.8 refuses this release as a whole
    assert any(
        note.startswith("uv 0.13.8 would reject this release (demo-1.0-variants.json")
        and "default-priorities.feature" in note
        for note in json.loads(out)["notes"]
    ), out

    model = ConfigModel(
        namespace_priorities=[], feature_priorities=feature, property_priorities=prop
    )
    monkeypatch.setattr(VariantConfiguration, "get_config", classmethod(lambda cls: model))
    theirs = api.get_variants_by_priority(variants_json=to_json(meta, Schema.PROVIDERS_V0_2_0))
    assert chosen == f"demo-1.0-py3-none-any-{theirs[0].label}.whl"


_FEATURES = {"ns_a": {"f1": ["a", "b", "c"], "f2": ["x", "y"]}, "ns_b": {"g1": ["p", "q", "r"]}}
_ALL_PROPS = [(ns, f, v) for ns, fs in _FEATURES.items() for f, vs in fs.items() for v in vs]


@st.composite
def _legacy_rankings(draw: st.DrawFn) -> tuple[Any, ...]:
    variants = draw(
        st.lists(
            st.sets(st.sampled_from(_ALL_PROPS), min_size=1, max_size=4),
            min_size=1,
            max_size=8,
            unique_by=lambda s: tuple(sorted(s)),
        )
    )

    def prefix(items: list[str]) -> list[str]:
        order = draw(st.permutations(items))
        return list(order[: draw(st.integers(0, len(order)))])

    feature = {ns: prefix(list(fs)) for ns, fs in _FEATURES.items()}
    prop = {ns: {f: prefix(vs) for f, vs in fs.items()} for ns, fs in _FEATURES.items()}
    return variants, feature, prop


@settings(max_examples=150, deadline=None)
@given(_legacy_rankings())
def test_legacy_priorities_rank_as_variantlib_for_any_ordering(case: tuple[Any, ...]) -> None:
    from variantlib.resolver.lib import sort_and_filter_supported_variants

    from wheelforge.variants.providers import Provider
    from wheelforge.variants.ranking import rank

    variant_sets, feature, prop = case
    labels = {f"l{i}": props for i, props in enumerate(variant_sets)}
    meta = VariantMetadata(
        tuple(_FEATURES),
        {
            ns: Provider(static_properties=tuple((f, tuple(vs)) for f, vs in fs.items()))
            for ns, fs in _FEATURES.items()
        },
        {label: frozenset(VariantProperty(*p) for p in props) for label, props in labels.items()},
        feature_priorities={ns: tuple(fs) for ns, fs in feature.items() if fs},
        property_priorities={
            ns: {f: tuple(vs) for f, vs in fs.items() if vs} for ns, fs in prop.items()
        },
    )
    ours = [r.label for r in rank(meta, {}) if r.compatible]
    theirs = sort_and_filter_supported_variants(
        [
            VariantDescription([VLProperty(*p) for p in props], label=label)
            for label, props in labels.items()
        ],
        [VLProperty(*p) for p in _ALL_PROPS],
        namespace_priorities=list(_FEATURES),
        feature_priorities={ns: list(fs) for ns, fs in feature.items()},
        property_priorities={ns: {f: list(v) for f, v in fs.items()} for ns, fs in prop.items()},
        filter_values=True,
    )
    assert ours == [v.label for v in theirs if v.properties]
