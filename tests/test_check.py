"""``wheelforge check``: each defect class, on a purpose-made broken release set, is
reported with a message that names the file; a good set passes."""

from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import build_plain_wheel
from wheelforge.compress import compress_wheel
from wheelforge.publish.check import Finding, Severity, check_release_set
from wheelforge.tag import TagRequest, tag_wheel
from wheelforge.variants.properties import VariantProperty
from wheelforge.variants_file import write_variants_json

V3 = frozenset({VariantProperty.parse("x86_64 :: level :: v3")})
V4 = frozenset({VariantProperty.parse("x86_64 :: level :: v4")})
GOOD_META = "Summary: A demo\nDescription-Content-Type: text/markdown\n"

Cli = Callable[..., tuple[int, str, str]]


def _tag(
    plain: Path,
    out: Path,
    properties: frozenset[VariantProperty] = frozenset(),
    label: str | None = None,
    **kwargs: object,
) -> Path:
    return tag_wheel(plain, out, TagRequest(properties=properties, label=label, **kwargs))  # type: ignore[arg-type]


@pytest.fixture
def good_set(tmp_path: Path) -> Path:
    """demo 1.0: a plain wheel, the null variant, v3 and v4, and the variants file."""
    dist = tmp_path / "dist"
    dist.mkdir()
    plain = build_plain_wheel(dist, metadata_extra=GOOD_META)
    _tag(plain, dist)
    _tag(plain, dist, V3)
    _tag(plain, dist, V4, requires_dist=("numpy>=2",))  # a variant may add Requires-Dist
    write_variants_json(dist)
    return dist


def errors(dist: Path, **kwargs: object) -> list[Finding]:
    report = check_release_set(dist, **kwargs)  # type: ignore[arg-type]
    return report.errors


def only_error(dist: Path, check: str, **kwargs: object) -> Finding:
    found = errors(dist, **kwargs)
    assert [f.check for f in found] == [check], found
    return found[0]


def test_a_good_set_passes(good_set: Path) -> None:
    report = check_release_set(good_set)
    assert report.ok, report.findings
    assert len(report.artifacts) == 5
    assert not [f for f in report.findings if f.severity is Severity.WARNING]


def test_a_filename_that_does_not_parse(good_set: Path) -> None:
    shutil.copy(good_set / "demo-1.0-py3-none-any.whl", good_set / "demo-1.0-py3-none-any-Fast.whl")
    finding = only_error(good_set, "filename")
    assert finding.file == "demo-1.0-py3-none-any-Fast.whl"
    assert "lowercase" in finding.message


def test_a_record_hash_mismatch(good_set: Path) -> None:
    wheel = good_set / "demo-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as src:
        members = {i: src.read(i) for i in src.infolist()}
    wheel.unlink()
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as out:
        for info, data in members.items():
            if info.filename == "demo/__init__.py":
                data = data.replace(b"plain", b"PLAIN")  # same size, other bytes
            out.writestr(info, data)
    finding = only_error(good_set, "record")
    assert finding.file == wheel.name
    assert "RECORD hash mismatch for 'demo/__init__.py'" in finding.message
    # --no-verify-hashes trades this check for speed
    assert errors(good_set, verify_hashes=False) == []


def test_variant_json_that_disagrees_with_the_label(good_set: Path) -> None:
    (v3,) = good_set.glob("*-fa7c1393.whl")
    v3.rename(good_set / "demo-1.0-py3-none-any-fast.whl")
    found = errors(good_set)
    mismatch = next(f for f in found if f.check == "variant.json")
    assert mismatch.file == "demo-1.0-py3-none-any-fast.whl"
    assert "names label 'fa7c1393', the filename says 'fast'" in mismatch.message
    # and the variants file now lists a label without its wheel
    assert any(f.check == "variants-file" and "'fa7c1393' has no wheel" in f.message for f in found)


def test_a_labelled_wheel_without_variant_json(good_set: Path) -> None:
    shutil.copy(good_set / "demo-1.0-py3-none-any.whl", good_set / "demo-1.0-py3-none-any-x1.whl")
    finding = only_error(good_set, "variant.json")
    assert finding.file == "demo-1.0-py3-none-any-x1.whl"
    assert "labelled 'x1' but has no demo-1.0.dist-info/variant.json" in finding.message


def test_one_label_two_property_sets(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    dist.mkdir()
    plain = build_plain_wheel(dist, metadata_extra=GOOD_META)
    other = build_plain_wheel(dist, tag="py3-none-manylinux_2_17_x86_64", metadata_extra=GOOD_META)
    _tag(plain, dist, V3, label="fast")
    _tag(other, dist, V4, label="fast")
    found = [f for f in errors(dist) if f.check == "label"]
    assert len(found) == 1
    assert found[0].file == "demo-1.0-py3-none-manylinux_2_17_x86_64-fast.whl"
    assert (
        "label 'fast' has other properties than in demo-1.0-py3-none-any-fast.whl"
        in found[0].message
    )


def test_one_property_set_two_labels(good_set: Path) -> None:
    _tag(good_set / "demo-1.0-py3-none-any.whl", good_set, V3, label="v3")
    write_variants_json(good_set)
    finding = only_error(good_set, "label")
    assert finding.file in ("demo-1.0-py3-none-any-v3.whl", "demo-1.0-py3-none-any-fa7c1393.whl")
    assert "the same properties as label" in finding.message


def test_a_variants_file_that_lags_the_wheels(good_set: Path) -> None:
    _tag(
        good_set / "demo-1.0-py3-none-any.whl",
        good_set,
        frozenset({VariantProperty.parse("x86_64 :: level :: v2")}),
    )
    finding = only_error(good_set, "variants-file")
    assert finding.file == "demo-1.0-variants.json"
    assert "of a wheel is missing" in finding.message


def test_a_missing_variants_file_is_only_noted(good_set: Path) -> None:
    (good_set / "demo-1.0-variants.json").unlink()
    report = check_release_set(good_set)
    assert report.ok
    (note,) = [f for f in report.findings if f.severity is Severity.INFO]
    assert note.file == "demo-1.0-variants.json" and "write it from the wheels" in note.message


def test_two_releases_in_one_set(good_set: Path) -> None:
    build_plain_wheel(good_set, version="1.1", metadata_extra=GOOD_META)
    finding = only_error(good_set, "release")
    assert "holds 2 releases (demo 1.0, demo 1.1)" in finding.message


def test_metadata_that_differs_between_wheels(good_set: Path, tmp_path: Path) -> None:
    other = build_plain_wheel(
        tmp_path,
        metadata_extra="Summary: Something else\nDescription-Content-Type: text/markdown\n",
    )
    (good_set / "demo-1.0-py3-none-any-null.whl").unlink()
    _tag(other, good_set)
    finding = only_error(good_set, "metadata")
    assert finding.file == "demo-1.0-py3-none-any-null.whl"
    assert "differs from demo-1.0-py3-none-any.whl in Summary" in finding.message


def test_no_fallback(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    dist.mkdir()
    plain = build_plain_wheel(tmp_path, metadata_extra=GOOD_META)
    _tag(plain, dist, V3)
    finding = only_error(dist, "fallback")
    assert "no fallback" in finding.message
    # the null variant alone is a fallback, with a warning for pip users
    _tag(plain, dist)
    report = check_release_set(dist)
    assert report.ok
    assert any(f.check == "fallback" and f.severity is Severity.WARNING for f in report.findings)


def test_zstd_in_a_plain_wheel(good_set: Path, tmp_path: Path) -> None:
    wheel = good_set / "demo-1.0-py3-none-any.whl"
    compress_wheel(wheel, wheel, "zstd", force=True)
    finding = only_error(good_set, "compression")
    assert finding.file == wheel.name
    assert "pip on CPython < 3.14 can pick this plain wheel" in finding.message


def test_zstd_dist_info_in_a_variant_wheel(good_set: Path) -> None:
    from backports.zstd import zipfile as zipfile314

    (v3,) = good_set.glob("*-fa7c1393.whl")
    with zipfile.ZipFile(v3) as src:
        members = [(i.filename, src.read(i)) for i in src.infolist()]
    v3.unlink()
    with zipfile314.ZipFile(v3, "w", zipfile314.ZIP_ZSTANDARD) as out:
        for name, data in members:
            out.writestr(name, data)
    found = errors(good_set)
    assert {f.check for f in found} == {"compression"}
    assert all(
        f.file == v3.name and ".dist-info members must stay deflate" in f.message for f in found
    )


def test_core_metadata_twine_would_refuse(good_set: Path, tmp_path: Path) -> None:
    bad = build_plain_wheel(
        tmp_path,
        metadata_extra="Description-Content-Type: text/x-rst\nRequires-Dist: numpy >=\n",
        description="Title\n=\n\n`broken\n",
    )
    shutil.copy(bad, good_set / bad.name)  # replaces the good plain wheel
    found = [f for f in errors(good_set) if f.check == "metadata" and f.file == bad.name]
    messages = " | ".join(f.message for f in found)
    assert "'numpy >=' is invalid for 'requires-dist'" in messages
    assert "does not render as reStructuredText" in messages


def test_per_file_size_limit(good_set: Path) -> None:
    sizes = {p.name: p.stat().st_size for p in good_set.glob("*.whl")}
    limit = sorted(sizes.values())[1]  # the smallest wheel and those of its size pass
    found = errors(good_set, max_size=limit)
    assert {f.check for f in found} == {"size"}
    assert {f.file for f in found} == {name for name, size in sizes.items() if size > limit}
    assert f"over the per-file limit of {limit} bytes" in found[0].message


def test_a_manifest_that_disagrees(good_set: Path) -> None:
    wheel = good_set / "demo-1.0-py3-none-any.whl"
    entries = [{"file": wheel.name, "sha256": "0" * 64}, {"file": "gone.whl", "sha256": "0" * 64}]
    (good_set / "wheelforge-manifest.json").write_text(
        json.dumps({"version": 1, "artifacts": entries})
    )
    found = errors(good_set)
    assert sorted((f.file, f.check) for f in found) == [
        (wheel.name, "manifest"),
        ("wheelforge-manifest.json", "manifest"),
    ]
    assert any("lists gone.whl, which is not in the directory" in f.message for f in found)
    entries = [
        {"file": p.name, "sha256": hashlib.sha256(p.read_bytes()).hexdigest()}
        for p in good_set.glob("*.whl")
    ]
    (good_set / "wheelforge-manifest.json").write_text(
        json.dumps({"version": 1, "artifacts": entries})
    )
    assert errors(good_set) == []


def test_cli_check_table_json_and_exit_codes(good_set: Path, cli: Cli) -> None:
    code, out, err = cli("check", good_set)
    assert code == 0 and "ok: 5 files, 0 errors" in err
    shutil.copy(good_set / "demo-1.0-py3-none-any.whl", good_set / "demo-1.0-py3-none-any-x1.whl")
    code, out, err = cli("check", good_set)
    assert code == 1
    assert "demo-1.0-py3-none-any-x1.whl" in out and "variant.json" in out
    assert "FAILED: 6 files, 1 errors" in err
    code, out, _ = cli("check", good_set, "--json")
    data = json.loads(out)
    assert code == 1 and data["ok"] is False
    assert [f["file"] for f in data["findings"] if f["severity"] == "error"] == [
        "demo-1.0-py3-none-any-x1.whl"
    ]
    code, _, err = cli("check", good_set / "nowhere")
    assert code == 2 and "expected a directory of wheels" in err


def test_many_wheels_are_read_in_processes_with_the_same_findings(tmp_path: Path) -> None:
    """From 64 wheels on, wheels are read in worker processes: same report as one thread."""
    dist = tmp_path / "dist"
    dist.mkdir()
    plain = build_plain_wheel(dist, metadata_extra=GOOD_META)
    for i in range(70):
        prop = VariantProperty.parse(f"nvidia :: cuda_version_lower_bound :: 12.{i}")
        _tag(plain, dist, frozenset({prop}))
    (broken,) = [p for p in dist.glob("*.whl") if p.name != plain.name][:1]
    broken.rename(broken.with_name(broken.name.replace(".whl", "x.whl")))  # label != variant.json
    progress: list[int] = []
    parallel = check_release_set(dist, jobs=2, progress=lambda done, total: progress.append(done))
    serial = check_release_set(dist, jobs=1)
    assert parallel.findings == serial.findings
    assert [f.check for f in parallel.errors] == ["variant.json"]
    assert progress == list(range(1, 72))


def _sdist(directory: Path, pkg_info: str) -> Path:
    import io
    import tarfile

    path = directory / "demo-1.0.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        data = pkg_info.encode()
        info = tarfile.TarInfo("demo-1.0/PKG-INFO")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return path


def test_an_sdist_is_part_of_the_set(good_set: Path, tmp_path: Path) -> None:
    from wheelforge.publish.publisher import index_release_set, verified_artifacts

    _sdist(
        good_set,
        "Metadata-Version: 2.1\nName: demo\nVersion: 1.0\nRequires-Python: >=3.10\n"
        + GOOD_META
        + "\nA demo package.\n",
    )
    report = check_release_set(good_set)
    assert report.ok, report.errors
    artifacts = verified_artifacts(report)
    assert [a.name for a in artifacts][:3] == [
        "demo-1.0-py3-none-any.whl",
        "demo-1.0.tar.gz",
        "demo-1.0-py3-none-any-null.whl",
    ]
    index_release_set(artifacts, tmp_path / "site")
    entry = json.loads((tmp_path / "site" / "simple" / "demo" / "index.json").read_text())
    (sdist,) = [f for f in entry["files"] if f["filename"] == "demo-1.0.tar.gz"]
    assert sdist["requires-python"] == ">=3.10" and "core-metadata" not in sdist
    # a broken sdist is named
    (good_set / "demo-1.0.tar.gz").write_bytes(b"not a tarball")
    finding = only_error(good_set, "archive")
    assert finding.file == "demo-1.0.tar.gz" and "not a readable sdist" in finding.message


# -- what uv 0.13.8 would reject (tests/test_conformance_uv_rules.py runs uv on each rule)


def _uv_findings(dist: Path) -> list[Finding]:
    return [f for f in check_release_set(dist, isa=False).findings if f.check == "uv"]


def test_legacy_priorities_uv_would_reject(tmp_path: Path) -> None:
    """A legacy v0.0.3 release with explicit priorities: wheelforge reads it (and ranks
    by them), uv fails the whole release: check says so, one line per file and key."""
    from wheelforge.variants.metadata import Schema, VariantMetadata
    from wheelforge.variants.providers import PRESETS

    config = VariantMetadata(
        ("x86_64",),
        {"x86_64": PRESETS["x86_64"]},
        feature_priorities={"x86_64": ("level",)},
        property_priorities={"x86_64": {"level": ("v3", "v4")}},
    )
    dist = tmp_path / "dist"
    dist.mkdir()
    plain = build_plain_wheel(dist, metadata_extra=GOOD_META)
    _tag(plain, dist, V3, config=config, schema=Schema.LEGACY_V0_0_3)
    _tag(plain, dist, V4, config=config, schema=Schema.LEGACY_V0_0_3)
    write_variants_json(dist, Schema.LEGACY_V0_0_3)
    found = _uv_findings(dist)
    assert all(f.severity is Severity.ERROR for f in found)
    variants_file = [f for f in found if f.file == "demo-1.0-variants.json"]
    assert sorted(f.message.split(": ")[1] for f in variants_file) == [
        "default-priorities.feature",
        "default-priorities.property",
    ]
    assert variants_file[0].message.startswith("uv 0.13.8 would reject this release: ")
    wheels = {f.file for f in found} - {"demo-1.0-variants.json"}
    assert len(wheels) == 2
    assert all(
        "variant.json: uv 0.13.8 would reject this release on machines where it picks this "
        "wheel: default-priorities." in f.message
        for f in found
        if f.file in wheels
    )


def test_a_good_set_has_nothing_uv_would_reject(good_set: Path) -> None:
    assert _uv_findings(good_set) == []


def test_a_variant_marker_uv_would_reject(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    dist.mkdir()
    extra = GOOD_META + 'Requires-Dist: six; variant_label == "v3"\n'
    plain = build_plain_wheel(dist, metadata_extra=extra)
    (finding,) = _uv_findings(dist)
    assert finding.file == plain.name
    assert finding.message.startswith(
        "METADATA: uv 0.13.8 would reject this release on machines where it picks this wheel: "
        "Requires-Dist: 'six; variant_label == \"v3\"' uses the variant marker variant_label"
    )


def test_a_legacy_schema_url_alone_is_no_uv_finding(good_set: Path) -> None:
    name = "demo-1.0-variants.json"
    data = json.loads((good_set / name).read_text())
    data["$schema"] = "https://variants-schema.wheelnext.dev/v0.0.3.json"
    data["default-priorities"]["feature"] = {"x86_64": ["level"]}
    (good_set / name).write_text(json.dumps(data))
    assert [f.message.split(": ")[1] for f in _uv_findings(good_set)] == [
        "default-priorities.feature"
    ]
    del data["default-priorities"]["feature"]
    (good_set / name).write_text(json.dumps(data))
    assert _uv_findings(good_set) == []
