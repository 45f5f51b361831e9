"""Every rule of ``wheelforge.variants.installer_rules`` held to uv 0.13.8 itself.

One find-links directory per case: a plain wheel, one labelled wheel and
``demo-1.0-variants.json``, written by hand so that the metadata can hold what
wheelforge would never write. uv installs with ``--preview-features wheel-variants``;
a case that breaks a rule must make uv fail the whole install (the plain wheel beside
it notwithstanding) with the message the rule quotes, and the rule must name the key;
a case uv accepts must raise no rule.
"""

from __future__ import annotations

import copy
import json
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import build_plain_wheel
from tests.installers import clean_env
from wheelforge.publish.check import check_release_set
from wheelforge.variants.installer_rules import marker_rejections, metadata_rejections

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        sys.platform != "linux" or platform.machine() != "x86_64",
        reason="uv's x86_64 provider reads /proc/cpuinfo: needs x86_64 Linux",
    ),
]

UV = Path(sys.executable).parent / "uv"
NAME, VERSION, TAG = "demo", "1.0", "py3-none-any"
PROVIDERS_URL = "https://variants-schema.wheelnext.dev/peps/850/v0.2.0.json"
LEGACY_URL = "https://variants-schema.wheelnext.dev/v0.0.3.json"
PEP825_URL = "https://variants-schema.wheelnext.dev/peps/825/v0.1.1.json"
VARIANTLIB_URL = "https://variants-schema.wheelnext.dev/v0.2.0.json"

# x86_64 :: level :: v1 fits every x86-64 machine: uv picks it when it reads the file.
BASE: dict[str, Any] = {
    "$schema": PROVIDERS_URL,
    "default-priorities": {"namespace": ["x86_64"]},
    "providers": {"x86_64": {"requires": ["x86-64-variant-provider"]}},
    "variants": {"v1": {"x86_64": {"level": ["v1"]}}},
}
STATIC: dict[str, Any] = {
    "$schema": PROVIDERS_URL,
    "default-priorities": {"namespace": ["blas"]},
    "providers": {"blas": {"static-properties": {"vendor": ["mkl"]}}},
    "variants": {"v1": {"blas": {"vendor": ["mkl"]}}},
}


def edit(document: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of ``document`` with ``value`` at the dotted ``path`` (None: deleted)."""
    out = copy.deepcopy(document)
    *parents, last = path.split("|")
    node = out
    for key in parents:
        node = node[key]
    if value is None:
        del node[last]
    else:
        node[last] = value
    return out


# (id, variants.json, the key a rule names, what uv says)
REJECTED = [
    ("dp-feature", edit(BASE, "default-priorities|feature", {"x86_64": ["level"]}),
     "default-priorities.feature", "unknown field `feature`, expected `namespace`"),
    ("dp-property", edit(BASE, "default-priorities|property", {"x86_64": {"level": ["v1"]}}),
     "default-priorities.property", "unknown field `property`, expected `namespace`"),
    ("enable-if", edit(BASE, "providers|x86_64|enable-if", "platform_machine == 'x86_64'"),
     "providers.x86_64.enable-if", "untagged enum ProviderKind"),
    ("install-time-true", edit(BASE, "providers|x86_64|install-time", True),
     "providers.x86_64.install-time", "untagged enum ProviderKind"),
    ("install-time-false-static",
     {"$schema": LEGACY_URL, "default-priorities": {"namespace": ["blas"]},
      "providers": {"blas": {"install-time": False}},
      "static-properties": {"blas": {"vendor": ["mkl"]}},
      "variants": {"v1": {"blas": {"vendor": ["mkl"]}}}},
     "providers.blas.install-time", "untagged enum ProviderKind"),
    ("top-level-static-properties",
     edit(BASE, "static-properties", {"x86_64": {"level": ["v1"]}}),
     "static-properties", "unknown field `static-properties`"),
    ("unknown-top-level-key", edit(BASE, "extra", 1), "extra", "unknown field `extra`"),
    ("build-requires",
     edit(BASE, "providers|x86_64", {"build-requires": ["x86-64-variant-provider"]}),
     "providers.x86_64.build-requires", "untagged enum ProviderKind"),
    ("requires-and-static",
     edit(BASE, "providers|x86_64|static-properties", {"level": ["v1"]}),
     "providers.x86_64", "untagged enum ProviderKind"),
    ("requires-and-feature-order", edit(BASE, "providers|x86_64|feature-order", ["level"]),
     "providers.x86_64", "untagged enum ProviderKind"),
    ("no-provider-for-a-namespace", edit(BASE, "providers", {}),
     "providers", "Variant providers must match the namespaces"),
    ("provider-not-in-namespaces",
     edit(BASE, "providers|blas", {"static-properties": {"vendor": ["mkl"]}}),
     "providers", "Variant providers must match the namespaces"),
    ("no-providers-key-pep850", edit(BASE, "providers", None),
     "providers", "Variant providers must match the namespaces"),
    ("namespace-twice", edit(BASE, "default-priorities|namespace", ["x86_64", "x86_64"]),
     "default-priorities.namespace", "must be non-empty and unique"),
    ("used-namespace-unlisted", edit(BASE, "variants|mkl", {"blas": {"vendor": ["mkl"]}}),
     "default-priorities.namespace", "Variant namespace `blas` is missing"),
    ("uppercase-label", edit(edit(BASE, "variants|v1", None), "variants|V1",
                             {"x86_64": {"level": ["v1"]}}),
     "variants.V1", "Variant label must contain only lowercase"),
    ("uppercase-value", edit(BASE, "variants|up", {"x86_64": {"level": ["V1"]}}),
     "variants.up.x86_64.level", "Invalid variant value"),
    ("uppercase-feature", edit(BASE, "variants|up", {"x86_64": {"Level": ["v1"]}}),
     "variants.up.x86_64.Level", "Invalid variant feature"),
    ("duplicate-values", edit(BASE, "variants|dup", {"x86_64": {"level": ["v1", "v1"]}}),
     "variants.dup.x86_64.level", "must not contain duplicate values"),
    ("no-values", edit(BASE, "variants|none", {"x86_64": {"level": []}}),
     "variants.none.x86_64.level", "must have at least one value"),
    ("namespace-with-a-space",
     edit(BASE, "variants|v1", {"x86_64": {"level": ["v1"]}, "x86_64 ": {}}),
     "variants.v1.x86_64 ", "Invalid variant namespace"),
    ("uppercase-namespace",
     edit(edit(BASE, "default-priorities|namespace", ["x86_64", "Other"]),
          "providers|Other", {"static-properties": {"f": ["a"]}}),
     "default-priorities.namespace", "Invalid variant namespace"),
    ("optional-not-a-boolean", edit(BASE, "providers|x86_64|optional", "yes"),
     "providers.x86_64.optional", "expected a boolean"),
    ("requires-not-a-list", edit(BASE, "providers|x86_64|requires", "x86-64-variant-provider"),
     "providers.x86_64.requires", "untagged enum ProviderKind"),
    ("null-with-properties", edit(BASE, "variants|null", {"x86_64": {"level": ["v1"]}}),
     "variants.null", "The null variant must not have properties"),
    ("static-features-without-order",
     edit(STATIC, "providers|blas|static-properties", {"vendor": ["mkl"], "api": ["lp64"]}),
     "providers.blas.feature-order", "must define feature-order for multiple static"),
]  # fmt: skip

ACCEPTED = [
    ("providers-v0.2.0", BASE),
    ("legacy-schema-url-alone", edit(BASE, "$schema", LEGACY_URL)),
    ("unknown-schema-url", edit(BASE, "$schema", "https://example.com/variants.json")),
    ("no-providers-key-legacy", edit(edit(BASE, "providers", None), "$schema", LEGACY_URL)),
    ("no-providers-key-pep825", edit(edit(BASE, "providers", None), "$schema", PEP825_URL)),
    ("no-providers-key-variantlib-url",
     edit(edit(BASE, "providers", None), "$schema", VARIANTLIB_URL)),
    ("long-label", edit(edit(BASE, "variants|v1", None), "variants|averyveryverylonglabel_x",
                        {"x86_64": {"level": ["v1"]}})),
    ("namespace-without-features", edit(BASE, "variants|v1", {"x86_64": {"level": ["v1"]},
                                                               "other": {}})),
    ("label-with-a-dot", edit(edit(BASE, "variants|v1", None), "variants|v1.x",
                              {"x86_64": {"level": ["v1"]}})),
    ("static-optional", edit(STATIC, "providers|blas|optional", True)),
    ("builtin-optional", edit(BASE, "providers|x86_64", {"builtin": "x86_64", "optional": True})),
]  # fmt: skip


def release(root: Path, document: dict[str, Any], *, wheel_document: Any = None,
            metadata_extra: str = "") -> Path:  # fmt: skip
    """A find-links directory: the plain wheel, the first label's wheel, the variants file."""
    links = root / "links"
    links.mkdir(parents=True)
    build_plain_wheel(links, NAME, VERSION, tag=TAG)
    label, properties = next(iter(document["variants"].items()))
    inner = copy.deepcopy(wheel_document if wheel_document is not None else document)
    inner["variants"] = {label: properties}
    scratch = root / "labelled"
    scratch.mkdir()
    files = {
        f"{NAME}/__init__.py": f"BUILT_FOR = {label!r}\n".encode(),
        f"{NAME}-{VERSION}.dist-info/variant.json": json.dumps(inner).encode(),
    }
    plain = build_plain_wheel(
        scratch, NAME, VERSION, tag=TAG, files=files, metadata_extra=metadata_extra
    )
    plain.rename(links / f"{NAME}-{VERSION}-{TAG}-{label}.whl")
    (links / f"{NAME}-{VERSION}-variants.json").write_text(json.dumps(document))
    return links


def uv_install(links: Path, work: Path) -> tuple[int, str]:
    env = clean_env(work, UV_OFFLINE="1")
    venv = work / "venv"
    subprocess.run([str(UV), "venv", "-q", "--python", sys.executable, str(venv)],
                   env=env, check=True, timeout=60)  # fmt: skip
    result = subprocess.run(
        [str(UV), "pip", "install", "--preview-features", "wheel-variants", "--no-index",
         "--find-links", str(links), "--python", str(venv), NAME, "-v"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    return result.returncode, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("document", "key", "uv_says"),
    [pytest.param(doc, key, says, id=case) for case, doc, key, says in REJECTED],
)
def test_uv_rejects_what_the_rules_name(
    tmp_path: Path, document: dict[str, Any], key: str, uv_says: str
) -> None:
    rejections = {r.key: r.reason for r in metadata_rejections(document)}
    assert key in rejections, rejections
    assert uv_says in rejections[key]
    code, output = uv_install(release(tmp_path, document), tmp_path)
    assert code != 0, output
    assert "Failed to parse variant metadata" in output
    assert uv_says in output
    # the whole release fails: the plain wheel beside it is not installed either
    assert not list((tmp_path / "venv").glob("lib/python*/site-packages/demo"))


@pytest.mark.parametrize(
    "document", [pytest.param(doc, id=case) for case, doc in ACCEPTED]
)  # fmt: skip
def test_uv_accepts_what_no_rule_names(tmp_path: Path, document: dict[str, Any]) -> None:
    assert metadata_rejections(document) == ()
    code, output = uv_install(release(tmp_path, document), tmp_path)
    assert code == 0, output
    assert "Selecting: demo==1.0 [compatible]" in output


def test_uv_rejects_legacy_keys_in_a_wheel_it_picks(tmp_path: Path) -> None:
    """The variants file is clean; the picked wheel's own variant.json is legacy."""
    legacy = edit(BASE, "default-priorities|feature", {"x86_64": ["level"]})
    assert [r.key for r in metadata_rejections(legacy)] == ["default-priorities.feature"]
    links = release(tmp_path, BASE, wheel_document=legacy)
    code, output = uv_install(links, tmp_path)
    assert code != 0
    assert "Failed to parse variant metadata `variant.json`: unknown field `feature`" in output
    report = check_release_set(links, isa=False)
    uv_lines = [f for f in report.findings if f.check == "uv"]
    assert [(f.file, f.message.split(": ")[1]) for f in uv_lines] == [
        (f"{NAME}-{VERSION}-{TAG}-v1.whl", "uv 0.13.8 would reject this release on machines "
         "where it picks this wheel")
    ]  # fmt: skip
    assert "default-priorities.feature" in uv_lines[0].message


@pytest.mark.parametrize(
    "marker",
    [
        'variant_label == "v1"',
        '"x86_64" in variant_namespaces',
        '"x86_64 :: level" in variant_features',
        '"x86_64 :: level :: v1" in variant_properties',
    ],
)
def test_uv_rejects_variant_markers_in_a_wheel_it_picks(tmp_path: Path, marker: str) -> None:
    line = f"six; {marker}"
    (rejection,) = marker_rejections([line, "numpy>=2", 'rich; extra == "variant_label"'])
    assert rejection.key == "Requires-Dist"
    links = release(tmp_path, BASE, metadata_extra=f"Requires-Dist: {line}\n")
    code, output = uv_install(links, tmp_path)
    assert code != 0
    assert "Expected a quoted string or a valid marker name" in output
    assert rejection.reason.split("(uv: ")[1].startswith(
        "Expected a quoted string or a valid marker name"
    )


def test_uv_ignores_variant_markers_in_a_wheel_it_does_not_pick(tmp_path: Path) -> None:
    """So a marker fails the install only where that wheel wins: check names the wheel."""
    document = edit(BASE, "variants", {"never": {"x86_64": {"level": ["v9"]}}})
    links = release(tmp_path, document, metadata_extra='Requires-Dist: six; variant_label == "x"\n')
    code, output = uv_install(links, tmp_path)
    assert code == 0, output
    assert f"Selecting: demo==1.0 [compatible] ({NAME}-{VERSION}-{TAG}.whl)" in output
