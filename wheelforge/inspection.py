"""The inspect stage: what a wheel is, what it claims, and whether RECORD verifies."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from wheelforge.errors import InvalidInput
from wheelforge.wheel.archive import METHOD_NAMES
from wheelforge.wheel.wheelfile import VARIANT_JSON, Wheel


@dataclass(frozen=True)
class WheelReport:
    path: str
    name: str
    version: str
    tags: list[str]
    label: str | None
    properties: list[str]
    schema: str | None
    compression: dict[str, dict[str, int]]  # "dist-info" / "payload" -> method -> count
    record_ok: bool
    problem: str | None  # the first thing wrong, one line

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def inspect_wheel(path: Path, *, verify: bool = True) -> WheelReport:
    """Report on one wheel. A wheel that cannot be read raises; a wheel that reads but is
    inconsistent (RECORD, label, variant.json) is reported with its ``problem``."""
    with Wheel(path) as wheel:
        problem = None
        try:
            meta = wheel.variant_metadata()
        except InvalidInput as err:
            meta, problem = None, err.message
        label = wheel.filename.label
        if meta is not None and problem is None:
            try:
                inner = meta.single_label(f"{path}!{wheel.dist_info_path(VARIANT_JSON)}")
                if inner != label:
                    problem = (
                        f"{path}: variant.json names label {inner!r}, "
                        f"expected the filename's label {label!r}"
                    )
            except InvalidInput as err:
                problem = err.message
        elif meta is None and label is not None and problem is None:
            problem = f"{path}: labelled {label!r} but has no {wheel.dist_info_path(VARIANT_JSON)}"
        record_ok = True
        try:
            wheel.checked_record(verify=verify)
        except InvalidInput as err:
            record_ok = False
            problem = problem or err.message
        compression: dict[str, Counter[str]] = {"dist-info": Counter(), "payload": Counter()}
        for member in wheel.members.values():
            if member.is_dir:
                continue
            group = "dist-info" if member.name.startswith(f"{wheel.dist_info}/") else "payload"
            compression[group][METHOD_NAMES.get(member.method, str(member.method))] += 1
        properties = (
            sorted(str(p) for p in meta.variants[label])
            if meta is not None and label is not None and label in meta.variants
            else []
        )
        return WheelReport(
            path=str(path),
            name=wheel.filename.name,
            version=wheel.filename.version,
            tags=sorted(str(tag) for tag in wheel.filename.tags),
            label=label,
            properties=properties,
            schema=meta.schema.short_name if meta is not None else None,
            compression={group: dict(sorted(c.items())) for group, c in compression.items()},
            record_ok=record_ok,
            problem=problem,
        )


def directory_wheels(directory: Path) -> list[Path]:
    """The ``.whl`` files directly in ``directory``, sorted."""
    return sorted(p for p in directory.iterdir() if p.suffix == ".whl" and p.is_file())


def wheels_in(path: Path) -> list[Path]:
    if path.is_dir():
        wheels = directory_wheels(path)
        if not wheels:
            raise InvalidInput(f"{path}: no .whl files in this directory")
        return wheels
    if not path.exists():
        raise InvalidInput(f"{path}: no such file or directory")
    return [path]
