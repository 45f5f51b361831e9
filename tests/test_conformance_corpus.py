"""The conformance corpus: cases ported from the peers' public test material
(variantlib's ``tests/`` and artifacts, uv's wheel-variant unit tests), each naming its
source (``tests/conformance/sources.json`` gives the repository and commit), run
against wheelforge's own implementation.

A case with ``xfail_reason`` is a known disagreement (issue 14, or on purpose); it runs
as a strict xfail, so the mark must go when the disagreement is fixed.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from wheelforge.errors import InvalidInput
from wheelforge.select.selection import VARIANTS_SUFFIX
from wheelforge.variants.labels import default_label, validate_label
from wheelforge.variants.merge import MergeConflict, merge, merge_all
from wheelforge.variants.metadata import Schema, VariantMetadata, from_json, loads
from wheelforge.variants.properties import VariantProperty
from wheelforge.variants.providers import Provider
from wheelforge.variants.ranking import rank
from wheelforge.wheel.filename import WheelFilename
from wheelforge.wheel.wheelfile import Wheel

CORPUS = Path(__file__).parent / "conformance"
ARTIFACTS = CORPUS / "artifacts"
SOURCES: dict[str, dict[str, str]] = json.loads((CORPUS / "sources.json").read_text())
KINDS = (
    "properties",
    "labels",
    "filenames",
    "metadata",
    "ranking",
    "merge",
    "abi_dependency",
    "optional",
    "plugin_reference",
)

Case = dict[str, Any]


def _load(kind: str) -> list[Case]:
    cases: list[Case] = json.loads((CORPUS / f"{kind}.json").read_text())["cases"]
    return cases


def _params(kind: str) -> list[Any]:
    params = []
    for case in _load(kind):
        marks = []
        if "xfail_reason" in case:
            marks.append(pytest.mark.xfail(strict=True, reason=case["xfail_reason"]))
        params.append(pytest.param(case, id=case["id"], marks=marks))
    return params


def _props(texts: Sequence[str]) -> frozenset[VariantProperty]:
    return frozenset(VariantProperty.parse(text) for text in texts)


def _strs(props: frozenset[VariantProperty]) -> list[str]:
    return sorted(str(prop) for prop in props)


# -- the corpus itself ---------------------------------------------------------------


def test_every_case_names_its_source() -> None:
    total = 0
    for kind in KINDS:
        ids = set()
        for case in _load(kind):
            total += 1
            assert case["id"] not in ids, case["id"]
            ids.add(case["id"])
            source = case["source"]
            assert source["peer"] in SOURCES, case["id"]
            assert source["path"] and source["test"], case["id"]
            for key in ("artifact", "wheel"):
                if key in case:
                    assert (ARTIFACTS / case[key]).is_file(), case["id"]
    assert total >= 100


def test_sources_pin_a_commit() -> None:
    for peer, source in SOURCES.items():
        assert len(source["commit"]) == 40, peer
        assert source["repo"].count("/") == 1, peer
        assert (CORPUS / "licenses" / source["license_file"]).is_file(), peer


# -- properties ----------------------------------------------------------------------


@pytest.mark.parametrize("case", _params("properties"))
def test_property(case: Case) -> None:
    if "text" in case:
        if case["expected"] is None:
            with pytest.raises(InvalidInput):
                VariantProperty.parse(case["text"])
        else:
            prop = VariantProperty.parse(case["text"])
            assert [prop.namespace, prop.feature, prop.value] == case["expected"]
    elif "parts" in case:
        if case["valid"]:
            prop = VariantProperty(*case["parts"])
            if "str" in case:
                assert str(prop) == case["str"]
                assert VariantProperty.parse(case["str"]) == prop
        else:
            with pytest.raises(InvalidInput):
                VariantProperty(*case["parts"])
    elif "parts_each" in case:
        accepted = []
        for parts in case["parts_each"]:
            try:
                VariantProperty(*parts)
            except InvalidInput:
                continue
            accepted.append(parts)
        assert accepted == []
    else:
        data = [VariantProperty(*parts) for parts in case["sort_input"]]
        assert sorted(data) == [VariantProperty(*parts) for parts in case["sort_expected"]]


# -- labels --------------------------------------------------------------------------


@pytest.mark.parametrize("case", _params("labels"))
def test_label(case: Case) -> None:
    if "validate" in case:
        if case["valid"]:
            assert validate_label(case["validate"]) == case["validate"]
        else:
            with pytest.raises(InvalidInput):
                validate_label(case["validate"])
    elif "distinct" in case:
        first, second = (default_label(_props(texts)) for texts in case["distinct"])
        assert first != second
    else:
        assert default_label(_props(case["properties"])) == case["label"]


# -- file names ----------------------------------------------------------------------


@pytest.mark.parametrize("case", _params("filenames"))
def test_filename(case: Case) -> None:
    if "variants_filename" in case:
        name, _, version = case["variants_filename"][: -len(VARIANTS_SUFFIX)].rpartition("-")
        assert [name, version] == case["expected"]
        return
    if case.get("roundtrip"):
        assert WheelFilename.parse(case["filename"]).filename == case["filename"]
        return
    if case["expected"] is None:
        with pytest.raises(InvalidInput):
            WheelFilename.parse(case["filename"])
        return
    wheel = WheelFilename.parse(case["filename"])
    expected = case["expected"]
    assert wheel.release == (expected["name"], expected["version"])
    assert wheel.build == expected["build"]
    assert (wheel.python, wheel.abi, wheel.platform) == (
        expected["python"],
        expected["abi"],
        expected["platform"],
    )
    assert wheel.label == expected["label"]
    assert wheel.filename == case["filename"]


# -- metadata documents --------------------------------------------------------------


def _provider_json(provider: Provider) -> dict[str, Any]:
    entry: dict[str, Any] = {"requires": list(provider.requires)}
    if provider.plugin_api is not None:
        entry["plugin-api"] = provider.plugin_api
    if provider.optional:
        entry["optional"] = True
    if provider.enable_if is not None:
        entry["enable-if"] = provider.enable_if
    return entry


def _check_expected(meta: VariantMetadata, expected: Mapping[str, Any]) -> None:
    if "namespaces" in expected:
        assert list(meta.namespace_priorities) == expected["namespaces"]
    if "feature_priorities" in expected:
        assert {ns: list(f) for ns, f in meta.feature_priorities.items()} == expected[
            "feature_priorities"
        ]
    if "property_priorities" in expected:
        assert {
            ns: {f: list(v) for f, v in features.items()}
            for ns, features in meta.property_priorities.items()
        } == expected["property_priorities"]
    if "providers" in expected:
        assert {ns: _provider_json(p) for ns, p in meta.providers.items()} == expected["providers"]
    if "variants" in expected:
        assert {label: _strs(props) for label, props in meta.variants.items()} == expected[
            "variants"
        ]


@pytest.mark.parametrize("case", _params("metadata"))
def test_metadata(case: Case) -> None:
    if "wheel" in case:
        with Wheel(ARTIFACTS / case["wheel"]) as wheel:
            meta = wheel.variant_metadata()
        name = WheelFilename.parse(Path(case["wheel"]).name)
        assert name.label == case["expected_label"]
        if case["expected_label"] is None:
            assert meta is None
        else:
            assert meta is not None
            assert meta.single_label(case["wheel"]) == case["expected_label"]
        return
    source = case["id"]
    if "artifact" in case:
        text = (ARTIFACTS / case["artifact"]).read_text()
    elif "text" in case:
        text = case["text"]
    else:
        text = json.dumps(case["document"])
    if not case["valid"]:
        with pytest.raises(InvalidInput):
            loads(text, source=source)
        return
    meta = loads(text, source=source)
    _check_expected(meta, case.get("expected", {}))
    if "variant_count" in case:
        assert len(meta.variants) == case["variant_count"]
    if "single_label" in case:  # read as one wheel's variant.json
        if case["single_label"] is None:
            with pytest.raises(InvalidInput):
                meta.single_label(source)
        else:
            assert meta.single_label(source) == case["single_label"]


# -- ranking -------------------------------------------------------------------------


@pytest.mark.parametrize("case", _params("ranking"))
def test_ranking(case: Case) -> None:
    providers = {
        ns: from_json(
            {
                "$schema": Schema.PROVIDERS_V0_2_0.value,
                "default-priorities": {"namespace": [ns]},
                "providers": {ns: entry},
            },
            source=case["id"],
        ).providers[ns]
        for ns, entry in case.get("static", {}).items()
    }
    meta = VariantMetadata(
        tuple(case["namespaces"]),
        providers,
        {label: _props(texts) for label, texts in case["variants"].items()},
        feature_priorities={ns: tuple(f) for ns, f in case.get("feature_priorities", {}).items()},
        property_priorities={
            ns: {f: tuple(v) for f, v in features.items()}
            for ns, features in case.get("property_priorities", {}).items()
        },
    )
    ranked = rank(meta, case["supported"])
    compatible = [entry.label for entry in ranked if entry.compatible]
    incompatible = sorted(entry.label or "" for entry in ranked if not entry.compatible)
    if "expected_order" in case:
        assert compatible == case["expected_order"]
    else:
        assert sorted(label or "" for label in compatible) == sorted(case["compatible"])
    assert incompatible == sorted(case["incompatible"])


# -- merging -------------------------------------------------------------------------


def _wheel_metadata(name: str) -> VariantMetadata:
    with Wheel(ARTIFACTS / name) as wheel:
        meta = wheel.variant_metadata()
    assert meta is not None, name
    return meta


@pytest.mark.parametrize("case", _params("merge"))
def test_merge(case: Case) -> None:
    if "wheels" in case:
        merged = merge_all((name, _wheel_metadata(name)) for name in case["wheels"])
        if "expected_artifact" in case:
            text = (ARTIFACTS / case["expected_artifact"]).read_text()
            expected = loads(text, source=case["expected_artifact"])
            assert merged.variants == expected.variants
            assert merged.namespace_priorities == expected.namespace_priorities
            assert dict(merged.providers) == dict(expected.providers)
        else:
            assert {k: _strs(v) for k, v in merged.variants.items()} == case["expected_variants"]
            assert list(merged.namespace_priorities) == case["expected_namespaces"]
        return
    a = from_json(case["a"], source="a")
    b = from_json(case["b"], source="b")
    if case["expected_variants"] is None:
        with pytest.raises(MergeConflict):
            merge(a, b)
        return
    merged = merge(a, b)
    assert {k: _strs(v) for k, v in merged.variants.items()} == case["expected_variants"]
    assert merge(merged, merged) == merged


# -- abi_dependency (issue 14: being added) ------------------------------------------


@pytest.mark.parametrize("case", _params("abi_dependency"))
def test_abi_dependency(case: Case) -> None:
    abi = importlib.import_module("wheelforge.variants.abi_dependency")
    env = abi.environment(case["installed"], where="corpus", env_value=case["env"])
    supported = env.supported()
    pairs = sorted([feature, value] for feature, values in supported.items() for value in values)
    assert pairs == case["expected"]
    assert list(abi.namespace_order(case["namespaces_in"])) == case["namespaces_out"]


# -- optional providers (issue 14 item 1: being fixed) -------------------------------


@pytest.mark.parametrize("case", _params("optional"))
def test_optional_provider(case: Case) -> None:
    machine = importlib.import_module("wheelforge.select.machine")
    meta = from_json(
        {
            "$schema": Schema.PROVIDERS_V0_2_0.value,
            "default-priorities": {"namespace": case["namespaces"]},
            "providers": case["providers"],
        },
        source=case["id"],
    )
    off = machine.optional_off(meta, frozenset(case["enabled"]))
    assert list(off) == case["expected_off"]


# -- plugin references (issue 14 item 4: being fixed) --------------------------------


@pytest.mark.parametrize("case", _params("plugin_reference"))
def test_plugin_reference(case: Case) -> None:
    plugins = importlib.import_module("wheelforge.select.plugins")
    provider = Provider(requires=tuple(case["requires"]), plugin_api=case["plugin_api"])
    assert plugins.plugin_reference(provider) == case["expected"]
