"""PEP 825 ranking on a table of cases (SPEC.md, "Ranking")."""

from __future__ import annotations

import pytest

from wheelforge.variants import supported
from wheelforge.variants.metadata import VariantMetadata
from wheelforge.variants.properties import VariantProperty
from wheelforge.variants.providers import PRESETS, Provider
from wheelforge.variants.ranking import best, evaluate, rank


def props(*texts: str) -> frozenset[VariantProperty]:
    return frozenset(VariantProperty.parse(t) for t in texts)


CU = "nvidia :: cuda_version_lower_bound :: "
SM = "nvidia :: sm_arch :: "
LEVEL = "x86_64 :: level :: "


def meta(
    variants: dict[str, frozenset[VariantProperty]], order=("nvidia", "x86_64")
) -> VariantMetadata:  # type: ignore[no-untyped-def]
    return VariantMetadata(tuple(order), {ns: PRESETS[ns] for ns in order}, variants)


H100_DRIVER_128 = {"nvidia": supported.nvidia("12.8", "9.0"), "x86_64": supported.x86_64(3)}
CPU_ONLY_V3 = {"x86_64": supported.x86_64(3)}


CASES = [
    pytest.param(
        {"cu126": props(CU + "12.6"), "cu128": props(CU + "12.8")},
        H100_DRIVER_128,
        ("nvidia", "x86_64"),
        ["cu128", "cu126", None],
        id="best-value-first",
    ),
    pytest.param(
        {"cu": props(CU + "12.8"), "cu_sm": props(CU + "12.8", SM + "90_real")},
        H100_DRIVER_128,
        ("nvidia", "x86_64"),
        ["cu_sm", "cu", None],
        id="prefix-rule-more-keys-win",
    ),
    pytest.param(
        {"null": frozenset(), "v1": props(LEVEL + "v1"), "cu128": props(CU + "12.8")},
        H100_DRIVER_128,
        ("nvidia", "x86_64"),
        ["cu128", "v1", "null", None],
        id="null-after-every-compatible-then-plain",
    ),
    pytest.param(
        {"cu128": props(CU + "12.8"), "v3": props(LEVEL + "v3")},
        H100_DRIVER_128,
        ("x86_64", "nvidia"),
        ["v3", "cu128", None],
        id="namespace-order-decides",
    ),
    pytest.param(
        {"cu128": props(CU + "12.8"), "v3": props(LEVEL + "v3")},
        H100_DRIVER_128,
        ("nvidia", "x86_64"),
        ["cu128", "v3", None],
        id="namespace-order-decides-reversed",
    ),
    pytest.param(
        {"sm90": props(SM + "90_real"), "cu120": props(CU + "12.0")},
        H100_DRIVER_128,
        ("nvidia", "x86_64"),
        ["cu120", "sm90", None],
        id="feature-order-from-provider",
    ),
    pytest.param(
        {
            "cu131": props(CU + "13.1"),
            "v4": props(LEVEL + "v4"),
            "v3": props(LEVEL + "v3"),
            "null": frozenset(),
        },
        CPU_ONLY_V3,
        ("nvidia", "x86_64"),
        ["v3", "null", None],
        id="incompatible-dropped",
    ),
    pytest.param(
        {"multi": props(CU + "12.0", CU + "12.8"), "cu124": props(CU + "12.4")},
        H100_DRIVER_128,
        ("nvidia", "x86_64"),
        ["multi", "cu124", None],
        id="multi-value-uses-best-supported-value",
    ),
    pytest.param(
        {"both": props(CU + "12.8", LEVEL + "v3"), "cu128": props(CU + "12.8")},
        H100_DRIVER_128,
        ("nvidia", "x86_64"),
        ["both", "cu128", None],
        id="prefix-rule-across-namespaces",
    ),
    pytest.param(
        {"cu128_v4": props(CU + "12.8", LEVEL + "v4"), "cu128": props(CU + "12.8")},
        H100_DRIVER_128,
        ("nvidia", "x86_64"),
        ["cu128", None],
        id="one-unsupported-feature-makes-incompatible",
    ),
]


@pytest.mark.parametrize(("variants", "machine", "order", "expected"), CASES)
def test_ranking_table(variants, machine, order, expected) -> None:  # type: ignore[no-untyped-def]
    ranked = rank(meta(variants, order), machine, plain=True)
    assert [r.label for r in ranked if r.compatible] == expected


def test_incompatible_candidates_say_which_feature_failed() -> None:
    ranked = rank(meta({"v4": props(LEVEL + "v4"), "cu": props(CU + "13.1")}), CPU_ONLY_V3)
    by_label = {r.label: r for r in ranked}
    assert by_label["v4"].unsupported == (("x86_64", "level"),)
    assert by_label["cu"].unsupported == (("nvidia", "cuda_version_lower_bound"),)
    assert best(meta({"v4": props(LEVEL + "v4")}), CPU_ONLY_V3) is None


def test_static_provider_properties_are_supported_everywhere() -> None:
    static = Provider(static_properties=(("blas", ("openblas", "mkl")),))
    m = VariantMetadata(
        ("vendor",),
        {"vendor": static},
        {"mkl": props("vendor :: blas :: mkl"), "openblas": props("vendor :: blas :: openblas")},
    )
    assert [r.label for r in rank(m, {})] == ["openblas", "mkl"]


def test_rank_key_indices() -> None:
    ranked = evaluate("x", props(CU + "12.6", LEVEL + "v2"), ("nvidia", "x86_64"), H100_DRIVER_128)
    # nvidia first namespace, cuda_version_lower_bound its first feature, 12.6 third value
    assert ranked.keys == ((0, 0, 2), (1, 0, 1))


def test_nvidia_supported_values_follow_the_driver() -> None:
    values = supported.nvidia("12.8")["cuda_version_lower_bound"]
    assert values[:10] == [
        "12.8",
        "12.7",
        "12.6",
        "12.5",
        "12.4",
        "12.3",
        "12.2",
        "12.1",
        "12.0",
        "12",
    ]
    assert "11.20" in values and values[-1] == "11" and "13.0" not in values
    assert supported.nvidia(None) == {}
    assert supported.nvidia("12.8", "8.9")["sm_arch"][:2] == ["89_real", "88_real"]
    assert supported.nvidia("12.8", "8.9")["sm_arch"][-1] == "80_virtual"


@pytest.mark.parametrize(
    ("flags", "level"),
    [
        ("fpu sse2", 1),
        ("cx16 lahf_lm popcnt pni ssse3 sse4_1 sse4_2", 2),
        (
            "cx16 lahf_lm popcnt pni ssse3 sse4_1 sse4_2 avx avx2 bmi1 bmi2 f16c fma abm movbe xsave",
            3,
        ),
        (
            "cx16 lahf_lm popcnt pni ssse3 sse4_1 sse4_2 avx avx2 bmi1 bmi2 f16c fma abm movbe xsave "
            "avx512f avx512bw avx512cd avx512dq avx512vl",
            4,
        ),
        ("avx512f avx512bw avx512cd avx512dq avx512vl avx avx2", 1),
    ],
)
def test_x86_64_level_from_cpu_flags(flags: str, level: int) -> None:
    assert (
        supported.x86_64_level(supported.cpuinfo_flags(f"processor: 0\nflags\t: {flags}\n"))
        == level
    )


def test_legacy_priorities_reorder_features_then_values() -> None:
    from wheelforge.variants.ranking import with_priorities

    support = {"ns": {"a": ["1", "2", "3"], "b": ["x", "y"], "c": ["p"]}}
    ordered = with_priorities(support, {"ns": ["c", "zz", "b"]}, {"ns": {"a": ["3", "9", "2"]}})
    assert list(ordered["ns"]) == ["c", "b", "a"]  # listed first, then the provider's order
    assert ordered["ns"]["a"] == ["3", "2", "1"]  # an unsupported listed value changes nothing
    assert ordered["ns"]["b"] == ["x", "y"]


def test_legacy_feature_priority_decides_the_winner() -> None:
    cu, sm = props(CU + "12.8"), props(SM + "90_real")
    plain = VariantMetadata(("nvidia",), {"nvidia": PRESETS["nvidia"]}, {"cu": cu, "sm": sm})
    assert [r.label for r in rank(plain, H100_DRIVER_128)] == ["cu", "sm"]
    legacy = VariantMetadata(
        ("nvidia",),
        {"nvidia": PRESETS["nvidia"]},
        {"cu": cu, "sm": sm, "cu126": props(CU + "12.6")},
        feature_priorities={"nvidia": ("sm_arch",)},
        property_priorities={"nvidia": {"cuda_version_lower_bound": ("12.6",)}},
    )
    assert [r.label for r in rank(legacy, H100_DRIVER_128)] == ["sm", "cu126", "cu"]
