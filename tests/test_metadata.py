"""variant.json / *-variants.json: every schema generation read, the asked-for one written."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wheelforge.errors import InvalidInput
from wheelforge.variants.config import config_from_table
from wheelforge.variants.merge import MergeConflict, merge, merge_all
from wheelforge.variants.metadata import Schema, VariantMetadata, dumps, from_json, loads
from wheelforge.variants.properties import VariantProperty
from wheelforge.variants.providers import PRESETS, Provider

NVIDIA = {
    "requires": ["nvidia-variant-provider"],
    "plugin-api": "nvidia_variant_provider.plugin:NvidiaVariantPlugin",
}

# As on deployed PyTorch variant indexes (schema v0.0.3).
LEGACY = {
    "$schema": "https://variants-schema.wheelnext.dev/v0.0.3.json",
    "default-priorities": {
        "namespace": ["nvidia", "cpu_level"],
        "feature": {"nvidia": ["cuda_version_lower_bound", "sm_arch"]},
        "property": {"nvidia": {"sm_arch": ["90_real", "80_real"]}},
    },
    "providers": {
        "nvidia": {
            "enable-if": "platform_system == 'Linux' or platform_system == 'Windows'",
            "plugin-api": "nvidia_variant_provider.plugin:NvidiaVariantPlugin",
            "requires": ["nvidia-variant-provider>=0.0.1,<1.0.0"],
        },
        "cpu_level": {"install-time": False},
    },
    "static-properties": {"cpu_level": {"x86_64_level": ["v3", "v2", "v1"]}},
    "variants": {
        "cu126": {
            "nvidia": {"cuda_version_lower_bound": ["12.6"], "sm_arch": ["80_real", "90_real"]}
        },
        "cpuv3": {"cpu_level": {"x86_64_level": ["v3"]}},
    },
}

PEP825 = {
    "$schema": "https://variants-schema.wheelnext.dev/peps/825/v0.1.1.json",
    "default-priorities": {"namespace": ["gpu", "cpu"]},
    "variants": {"fast": {"gpu": {"cuda": ["12.0", "13.0"]}}, "null": {}},
}

PROVIDERS = {
    "$schema": "https://variants-schema.wheelnext.dev/peps/850/v0.2.0.json",
    "default-priorities": {"namespace": ["nvidia", "vendor"]},
    "providers": {
        "nvidia": NVIDIA,
        "vendor": {
            "static-properties": {"blas": ["openblas", "mkl"], "omp": ["gnu"]},
            "feature-order": ["omp", "blas"],
        },
    },
    "variants": {"cu13": {"nvidia": {"cuda_version_lower_bound": ["13.0"]}}, "null": {}},
}


def test_reads_legacy_v0_0_3() -> None:
    meta = from_json(LEGACY, source="torch-2.8.0-variants.json")
    assert meta.schema is Schema.LEGACY_V0_0_3
    assert meta.namespace_priorities == ("nvidia", "cpu_level")
    assert meta.providers["nvidia"].enable_if is not None
    assert meta.providers["nvidia"].requires == ("nvidia-variant-provider>=0.0.1,<1.0.0",)
    assert meta.providers["cpu_level"].static_properties == (("x86_64_level", ("v3", "v2", "v1")),)
    assert VariantProperty.parse("nvidia :: sm_arch :: 90_real") in meta.variants["cu126"]
    assert meta.feature_priorities == {"nvidia": ("cuda_version_lower_bound", "sm_arch")}


def test_reads_pep825_v0_1_1() -> None:
    meta = from_json(PEP825, source="x")
    assert meta.schema is Schema.PEP825_V0_1_1
    assert meta.providers == {}
    assert meta.variants["null"] == frozenset()
    assert len(meta.variants["fast"]) == 2


def test_reads_providers_v0_2_0_with_feature_order() -> None:
    meta = from_json(PROVIDERS, source="x")
    assert meta.schema is Schema.PROVIDERS_V0_2_0
    assert meta.providers["nvidia"] == PRESETS["nvidia"]
    assert [f for f, _ in meta.providers["vendor"].static_properties] == ["omp", "blas"]


def test_reads_variantlib_schema_address() -> None:
    data = dict(PROVIDERS, **{"$schema": "https://variants-schema.wheelnext.dev/v0.2.0.json"})
    assert from_json(data, source="x").schema is Schema.PROVIDERS_V0_2_0


@pytest.mark.parametrize(
    "document", [LEGACY, PEP825, PROVIDERS], ids=["legacy", "pep825", "providers"]
)
def test_each_generation_round_trips(document: dict[str, Any]) -> None:
    meta = from_json(document, source="x")
    again = loads(dumps(meta, meta.schema), source="y")
    assert again == meta
    assert json.loads(dumps(meta, meta.schema)) == json.loads(json.dumps(document, sort_keys=True))


def test_providers_v0_2_0_is_written_by_default() -> None:
    meta = from_json(LEGACY, source="x")
    written = json.loads(dumps(meta))
    assert written["$schema"] == Schema.PROVIDERS_V0_2_0.value
    assert written["providers"]["cpu_level"] == {
        "static-properties": {"x86_64_level": ["v3", "v2", "v1"]}
    }
    assert "static-properties" not in written and "feature" not in written["default-priorities"]
    assert loads(json.dumps(written), source="x").variants == meta.variants


def test_pep825_output_drops_providers() -> None:
    written = json.loads(dumps(from_json(PROVIDERS, source="x"), Schema.PEP825_V0_1_1))
    assert set(written) == {"$schema", "default-priorities", "variants"}


def _broken(document: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    doc = json.loads(json.dumps(document))
    *parents, last = path.split("/")
    target = doc
    for key in parents:
        target = target[key]
    if value is KeyError:
        del target[last]
    else:
        target[last] = value
    return doc


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("$schema", 42, r"x: \$schema: expected a schema URL such as one of"),
        ("$schema", KeyError, r"x: \$schema: expected a schema URL"),
        (
            "default-priorities/namespace",
            ["nvidia"],
            "x: providers: expected one entry per namespace",
        ),
        ("default-priorities/namespace", "nvidia", "default-priorities.namespace: expected a list"),
        ("variants/CU13", {}, "variants.CU13: variant label 'CU13'"),
        (
            "variants/cu13/nvidia/cuda_version_lower_bound",
            [],
            "variants.cu13.nvidia.cuda_version_lower_bound: expected at least one value",
        ),
        (
            "variants/cu13/nvidia/cuda_version_lower_bound",
            ["13,0"],
            r"expected a list of strings matching \[a-z0-9_.\]\+",
        ),
        (
            "variants/null",
            {"nvidia": {"x": ["1"]}},
            "variants.null: expected no properties for the null variant",
        ),
        ("variants/empty", {}, "variants.empty: expected at least one property"),
        (
            "variants/cu13",
            {"amd": {"gfx_arch": ["gfx90a"]}},
            "default-priorities.namespace: expected to list every namespace used; missing 'amd'",
        ),
        ("providers/nvidia/plugin-api", KeyError, None),
        (
            "providers/nvidia/requires",
            KeyError,
            "x: providers.nvidia: expected exactly one of 'requires', 'static-properties' or 'builtin'",
        ),
        (
            "providers/vendor/feature-order",
            KeyError,
            "providers.vendor.feature-order: expected a list",
        ),
        ("providers/nvidia/bogus", 1, "providers.nvidia.bogus: expected one of"),
        ("extra", 1, r"x: \(top level\).extra: expected one of"),
    ],
)
def test_bad_metadata_names_the_key(path: str, value: Any, message: str | None) -> None:
    document = _broken(PROVIDERS, path, value)
    if message is None:
        from_json(document, source="x")  # valid: plugin-api is optional
        return
    with pytest.raises(InvalidInput, match=message):
        from_json(document, source="x")


def test_not_json() -> None:
    with pytest.raises(InvalidInput, match="x: not valid JSON"):
        loads(b"{nope", source="x")


# -- merging -----------------------------------------------------------------------

names = st.sampled_from(["nvidia", "x86_64", "amd"])
props_strategy = st.frozensets(
    st.builds(
        VariantProperty,
        names,
        st.sampled_from(["f", "g"]),
        st.sampled_from(["1", "2", "3.0"]),
    ),
    min_size=1,
    max_size=3,
)


def _wheel_meta(
    label: str, props: frozenset[VariantProperty], order: tuple[str, ...]
) -> VariantMetadata:
    return VariantMetadata(order, {ns: PRESETS[ns] for ns in order}, {label: props})


@given(
    st.dictionaries(
        st.from_regex(r"[a-z]{1,4}", fullmatch=True), props_strategy, min_size=1, max_size=6
    ),
    st.randoms(),
)
def test_merge_is_order_independent(
    variants: dict[str, frozenset[VariantProperty]], rnd: Any
) -> None:
    full = ("nvidia", "x86_64", "amd")
    # Each wheel lists a prefix of the full priority list, as wheels of older releases may.
    metas = [
        (label, _wheel_meta(label, props, full[: rnd.randint(1, 3)] if i else full))
        for i, (label, props) in enumerate(variants.items())
    ]
    shuffled = list(metas)
    rnd.shuffle(shuffled)
    a, b = merge_all(metas), merge_all(shuffled)
    assert a == b
    assert dumps(a) == dumps(b)
    assert dict(a.variants) == variants
    assert a.namespace_priorities == full


def test_merge_conflicting_label_names_both_sources() -> None:
    p1 = frozenset({VariantProperty.parse("nvidia :: cuda_version_lower_bound :: 12.8")})
    p2 = frozenset({VariantProperty.parse("nvidia :: cuda_version_lower_bound :: 13.0")})
    order = ("nvidia",)
    with pytest.raises(
        MergeConflict, match=r"a.whl and b.whl give label 'cu' different properties"
    ):
        merge_all(
            [("a.whl", _wheel_meta("cu", p1, order)), ("b.whl", _wheel_meta("cu", p2, order))]
        )


def test_merge_priorities_must_be_prefixes() -> None:
    p = frozenset({VariantProperty.parse("x86_64 :: level :: v3")})
    a = _wheel_meta("v3", p, ("nvidia", "x86_64"))
    b = _wheel_meta("v3", p, ("x86_64", "nvidia"))
    with pytest.raises(MergeConflict, match=r"disagree on default-priorities.namespace"):
        merge(a, b, names=("a.whl", "b.whl"))


def test_merge_providers_must_agree() -> None:
    p = frozenset({VariantProperty.parse("x86_64 :: level :: v3")})
    a = _wheel_meta("v3", p, ("x86_64",))
    b = VariantMetadata(("x86_64",), {"x86_64": Provider(requires=("other",))}, {"v3": p})
    with pytest.raises(MergeConflict, match="different providers for namespace 'x86_64'"):
        merge(a, b, names=("a.whl", "b.whl"))


def test_config_table_uses_presets_and_checks_keys() -> None:
    config = config_from_table(
        {"default-priorities": {"namespace": ["x86_64", "nvidia"]}}, source="m.toml"
    )
    assert config.namespace_priorities == ("x86_64", "nvidia")
    assert config.providers["nvidia"] == PRESETS["nvidia"]
    with pytest.raises(
        InvalidInput, match=r"m.toml: variant.providers.mine: expected a provider entry"
    ):
        config_from_table({"default-priorities": {"namespace": ["mine"]}}, source="m.toml")
    with pytest.raises(InvalidInput, match=r"m.toml: variant.providerz: expected one of"):
        config_from_table(
            {"default-priorities": {"namespace": ["x86_64"]}, "providerz": {}}, source="m.toml"
        )


def test_legacy_output_keeps_a_static_providers_feature_order() -> None:
    """Legacy static properties have no feature-order and dumps sorts their keys: the
    order goes to default-priorities.feature, after explicit priorities, so the file
    read back ranks as before."""
    from wheelforge.variants.ranking import rank

    meta = from_json(PROVIDERS, source="x")  # vendor: feature-order omp, blas
    written = json.loads(dumps(meta, Schema.LEGACY_V0_0_3))
    assert written["default-priorities"]["feature"] == {"vendor": ["omp", "blas"]}
    assert list(written["static-properties"]["vendor"]) == ["blas", "omp"]  # sorted
    again = loads(dumps(meta, Schema.LEGACY_V0_0_3), source="y")
    variants = {
        "blas": frozenset({VariantProperty.parse("vendor :: blas :: mkl")}),
        "omp": frozenset({VariantProperty.parse("vendor :: omp :: gnu")}),
    }
    order = [[r.label for r in rank(replace(m, variants=variants), {})] for m in (meta, again)]
    assert order[0] == order[1] == ["omp", "blas"]
    explicit = replace(meta, feature_priorities={"vendor": ("blas",)})
    written = json.loads(dumps(explicit, Schema.LEGACY_V0_0_3))
    assert written["default-priorities"]["feature"] == {"vendor": ["blas", "omp"]}
