from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wheelforge.errors import InvalidInput
from wheelforge.variants.labels import NULL_LABEL, default_label, validate_label
from wheelforge.variants.properties import VariantProperty, flatten, nest

names = st.from_regex(r"[a-z0-9_]+", fullmatch=True)
values = st.from_regex(r"[a-z0-9_.]+", fullmatch=True)
properties = st.builds(VariantProperty, names, names, values)
spaces = st.sampled_from(["", " ", "  ", "\t"])


@given(properties, spaces, spaces, spaces, spaces)
def test_property_text_round_trips(prop: VariantProperty, a: str, b: str, c: str, d: str) -> None:
    text = f"{a}{prop.namespace}{b}::{c}{prop.feature}{d}::{a}{prop.value}{b}"
    assert VariantProperty.parse(text) == prop
    assert VariantProperty.parse(str(prop)) == prop


@given(st.frozensets(properties, max_size=8))
def test_nest_flatten_round_trip(props: frozenset[VariantProperty]) -> None:
    assert flatten(nest(props)) == props


@given(st.lists(properties, min_size=1, max_size=6))
def test_default_label_ignores_order_and_duplicates(props: list[VariantProperty]) -> None:
    label = default_label(props)
    assert label == default_label(reversed(props + props))
    assert len(label) == 8 and validate_label(label) == label


def test_known_default_labels() -> None:
    assert default_label([VariantProperty.parse("x86_64 :: level :: v3")]) == "fa7c1393"
    nvidia = VariantProperty.parse("nvidia :: cuda_version_lower_bound :: 12.8")
    assert default_label([nvidia]) == "f839a2dd"
    assert default_label([]) == NULL_LABEL


@pytest.mark.parametrize(
    ("text", "culprit"),
    [
        ("nvidia :: cuda_version_lower_bound", "expected 'namespace :: feature :: value'"),
        ("nvidia::cuda::12.8::x", "expected 'namespace :: feature :: value'"),
        ("NVIDIA :: cuda :: 12.8", "namespace 'NVIDIA' must match [a-z0-9_]+"),
        ("nvidia :: cuda-version :: 12.8", "feature 'cuda-version' must match [a-z0-9_]+"),
        ("nvidia :: cuda :: 12,8", "value '12,8' must match [a-z0-9_.]+"),
        ("nvidia :: cuda ::", "value '' must match"),
    ],
)
def test_malformed_properties_name_the_culprit(text: str, culprit: str) -> None:
    with pytest.raises(InvalidInput, match=culprit.replace("[", r"\[").replace("+", r"\+")):
        VariantProperty.parse(text)


@pytest.mark.parametrize("label", ["CU128", "cu-128", "cu 128", "", "é", "cu128/"])
def test_bad_labels_are_rejected(label: str) -> None:
    with pytest.raises(InvalidInput, match="expected lowercase letters, digits"):
        validate_label(label)


@pytest.mark.parametrize("label", ["cu128", "null", "a.b_c", "x" * 40])
def test_good_labels(label: str) -> None:
    assert validate_label(label) == label
