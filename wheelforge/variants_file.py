"""The variants-json stage: one ``{name}-{version}-variants.json`` per release in a
directory, merged from the wheels' own ``variant.json`` files."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from wheelforge.errors import InvalidInput
from wheelforge.fsutil import atomic_write
from wheelforge.variants.merge import merge_all
from wheelforge.variants.metadata import Schema, VariantMetadata, dumps, loads
from wheelforge.wheel.filename import WheelFilename
from wheelforge.wheel.wheelfile import VARIANT_JSON, Wheel


@dataclass(frozen=True)
class Release:
    name: str  # normalized as in wheel filenames
    version: str
    variant_wheels: tuple[Path, ...]
    plain_wheels: tuple[Path, ...]

    @property
    def variants_json_name(self) -> str:
        return f"{self.name}-{self.version}-variants.json"


def releases_in(directory: Path) -> list[Release]:
    if not directory.is_dir():
        raise InvalidInput(f"{directory}: expected a directory of wheels")
    groups: dict[tuple[str, str], list[tuple[Path, WheelFilename]]] = defaultdict(list)
    for path in sorted(directory.glob("*.whl")):
        if path.is_symlink():  # as in a release set: see publish.release.classify
            raise InvalidInput(f"{path}: a symbolic link; expected a regular file (copy it in)")
        filename = WheelFilename.parse(path.name)
        groups[filename.release].append((path, filename))
    return [
        Release(
            name,
            version,
            tuple(p for p, f in wheels if f.label is not None),
            tuple(p for p, f in wheels if f.label is None),
        )
        for (name, version), wheels in sorted(groups.items())
    ]


def wheel_variant_metadata(path: Path) -> VariantMetadata:
    """A labelled wheel's ``variant.json``, checked against its filename label."""
    with Wheel(path) as wheel:
        meta = wheel.variant_metadata()
        if meta is None:
            raise InvalidInput(
                f"{path}: labelled {wheel.filename.label!r} but has no "
                f"{wheel.dist_info_path(VARIANT_JSON)}"
            )
        label = meta.single_label(f"{path}!{wheel.dist_info_path(VARIANT_JSON)}")
        if label != wheel.filename.label:
            raise InvalidInput(
                f"{path}: variant.json names label {label!r}, expected the filename's label "
                f"{wheel.filename.label!r}"
            )
        return meta


def release_metadata(release: Release) -> VariantMetadata:
    return merge_all((p.name, wheel_variant_metadata(p)) for p in release.variant_wheels)


def write_variants_json(
    directory: Path, schema: Schema = Schema.PROVIDERS_V0_2_0
) -> list[tuple[Path, bool]]:
    """Write each release's variants file; return ``(path, changed)`` pairs."""
    written = []
    for release in releases_in(directory):
        if not release.variant_wheels:
            continue
        text = dumps(release_metadata(release), schema).encode()
        target = directory / release.variants_json_name
        changed = not target.exists() or target.read_bytes() != text
        if changed:
            atomic_write(target, text)
        written.append((target, changed))
    return written


def check_variants_json(directory: Path) -> list[str]:
    """Problems with the variants files of a directory, one line each (empty: all good)."""
    problems = []
    for release in releases_in(directory):
        if not release.variant_wheels:
            continue
        expected = release_metadata(release)
        target = directory / release.variants_json_name
        if not target.exists():
            problems.append(
                f"{target}: missing (expected for {len(release.variant_wheels)} "
                "variant wheels; run 'wheelforge variants-json' to write it)"
            )
            continue
        actual = loads(target.read_bytes(), source=str(target))
        problems += [f"{target}: {diff}" for diff in differences(actual, expected)]
    return problems


def differences(actual: VariantMetadata, expected: VariantMetadata) -> list[str]:
    diffs = []
    for label in sorted(set(expected.variants) - set(actual.variants)):
        diffs.append(f"label {label!r} of a wheel is missing")
    for label in sorted(set(actual.variants) - set(expected.variants)):
        diffs.append(f"label {label!r} has no wheel")
    for label in sorted(set(actual.variants) & set(expected.variants)):
        if actual.variants[label] != expected.variants[label]:
            diffs.append(f"label {label!r} has other properties than its wheel")
    if actual.namespace_priorities != expected.namespace_priorities:
        diffs.append(
            f"default-priorities.namespace is {list(actual.namespace_priorities)}, "
            f"expected {list(expected.namespace_priorities)}"
        )
    if (
        actual.schema is not Schema.LEGACY_V0_0_3
        and actual.schema is expected.schema
        and (dict(actual.providers) != dict(expected.providers))
    ):
        diffs.append("providers differ from the wheels' variant.json")
    return diffs
