"""The tag stage: a plain wheel in, a variant wheel out (and back again with untag).

Every untouched member is copied as its stored compressed bytes; only
``variant.json``, ``RECORD`` and, with per-variant requirements, ``METADATA`` are
written anew, with timestamps from ``SOURCE_DATE_EPOCH`` (or the input's RECORD
timestamp) so that the same input always gives the same bytes.
"""

from __future__ import annotations

import hashlib
import os
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from wheelforge.errors import InvalidInput
from wheelforge.formats import read_toml, table_at

if TYPE_CHECKING:
    from packaging.requirements import Requirement
from wheelforge.fsutil import atomic_path
from wheelforge.variants.abi_dependency import BUILTIN as ABI_BUILTIN
from wheelforge.variants.abi_dependency import NAMESPACE as ABI_NAMESPACE
from wheelforge.variants.config import config_from_table, default_config
from wheelforge.variants.labels import NULL_LABEL, default_label, validate_new_label
from wheelforge.variants.lint import outside_static_problems, provider_problems
from wheelforge.variants.metadata import Schema, VariantMetadata, dumps
from wheelforge.variants.properties import VariantProperty
from wheelforge.variants.providers import Provider
from wheelforge.wheel.archive import DEFLATED, Member, ZipWriter, dos_datetime
from wheelforge.wheel.record import (
    RecordEntry,
    digest_to_record_hash,
    format_record,
    record_hash,
)
from wheelforge.wheel.wheelfile import VARIANT_JSON, Wheel

_CHUNK = 1 << 20


@dataclass(frozen=True)
class TagRequest:
    properties: frozenset[VariantProperty] = frozenset()
    label: str | None = None  # None: the default hash label (or "null" without properties)
    config: VariantMetadata = field(default_factory=default_config)
    requires_dist: tuple[str, ...] = ()
    schema: Schema = Schema.PROVIDERS_V0_2_0
    verify: bool = False  # decompress every member and check RECORD hashes first


def load_variant_config(path: Path) -> VariantMetadata:
    """Providers and priorities from a TOML file's ``[variant]`` table (a pyproject.toml
    or a matrix file) or its ``[tool.wheelforge.variant]`` table."""
    document = read_toml(path, what="variant config")
    table = table_at(document, "variant", source=str(path))
    if table is None:
        table = table_at(document, "tool", "wheelforge", "variant", source=str(path))
    if table is None:
        raise InvalidInput(f"{path}: expected a [variant] or [tool.wheelforge.variant] table")
    return config_from_table(table, source=str(path))


def source_date_epoch() -> int | None:
    value = os.environ.get("SOURCE_DATE_EPOCH")
    if value is None or value == "":
        return None
    if not value.isdigit():
        raise InvalidInput(f"SOURCE_DATE_EPOCH={value!r}: expected a whole number of seconds")
    return int(value)


def build_variant_metadata(request: TagRequest) -> tuple[str, VariantMetadata]:
    """The label and the ``variant.json`` content for a tag request."""
    props = request.properties
    if request.label is not None:
        label = request.label
    else:
        label = default_label(props) if props else NULL_LABEL
    validate_new_label(label)
    if props and label == NULL_LABEL:
        raise InvalidInput("variant label 'null' is reserved for the variant without properties")
    if not props and label != NULL_LABEL:
        raise InvalidInput(
            f"variant label {label!r} needs at least one property (-p); use --null for the "
            "null variant"
        )
    config = request.config
    if request.schema is Schema.PROVIDERS_V0_2_0:  # the older schemas have no builtin
        config = with_abi_dependency(config, props)
    listed = {*config.namespace_priorities, ABI_NAMESPACE}  # reserved: needs no entry
    missing = sorted({p.namespace for p in props} - listed)
    if missing:
        raise InvalidInput(
            f"property namespace {missing[0]!r} is not in the variant config's "
            f"default-priorities.namespace ({', '.join(config.namespace_priorities)})"
        )
    _refuse_unselectable(config, props)
    return label, replace(config, variants={label: props}, schema=request.schema)


def _refuse_unselectable(config: VariantMetadata, props: frozenset[VariantProperty]) -> None:
    """Refuse what variantlib refuses and what no installer would ever select: a
    malformed ``plugin-api``, a static feature without values, a property outside its
    static provider's declared values (``check`` only warns about these in others' files)."""
    for problem in provider_problems(config):
        raise InvalidInput(f"variant config: {problem}")
    for problem in outside_static_problems(config, props):
        raise InvalidInput(f"{problem} (add it to the provider's static-properties)")


def repeated_properties(texts: Sequence[str]) -> list[VariantProperty]:
    """The properties given more than once (after normalising the spaces around ``::``):
    the variant holds each once; variantlib refuses the repetition, wheelforge warns."""
    seen: set[VariantProperty] = set()
    repeated: list[VariantProperty] = []
    for prop in (VariantProperty.parse(text) for text in texts):
        if prop in seen and prop not in repeated:
            repeated.append(prop)
        seen.add(prop)
    return repeated


def with_abi_dependency(
    config: VariantMetadata, props: Iterable[VariantProperty]
) -> VariantMetadata:
    """The config, for a variant using the reserved ``abi_dependency`` namespace, with
    that namespace listed last and a ``builtin`` provider entry (unless the config has
    its own): it needs no config entry, but uv 0.13.8 rejects a whole release whose
    variants name a namespace that ``default-priorities`` and ``providers`` lack."""
    if ABI_NAMESPACE not in {p.namespace for p in props}:
        return config
    if ABI_NAMESPACE in config.namespace_priorities:
        return config
    return replace(
        config,
        namespace_priorities=(*config.namespace_priorities, ABI_NAMESPACE),
        providers={**config.providers, ABI_NAMESPACE: Provider(builtin=ABI_BUILTIN)},
    )


def _parse_requirements(texts: Sequence[str]) -> list[Requirement]:
    from packaging.requirements import InvalidRequirement, Requirement  # only when asked

    requirements = []
    for text in texts:
        try:
            req = Requirement(text)
        except InvalidRequirement as err:
            reason = str(err).splitlines()[0]
            raise InvalidInput(
                f"--requires-dist {text!r}: expected a PEP 508 requirement ({reason})"
            ) from None
        if req.marker is not None and "variant_" in str(req.marker):
            raise InvalidInput(
                f"--requires-dist {text!r}: variant markers are rejected by uv; a variant "
                "wheel's own requirements need no marker"
            )
        requirements.append(req)
    return requirements


def _add_requirements(
    metadata: bytes, requirements: Sequence[Requirement], *, source: str
) -> bytes:
    """Insert ``Requires-Dist`` lines after the existing ones (or at the end of the headers)."""
    try:
        text = metadata.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(f"{source}: METADATA is not UTF-8") from None
    head, sep, body = text.partition("\n\n")
    lines = head.split("\n")
    last = max(
        (i for i, line in enumerate(lines) if line.lower().startswith("requires-dist:")),
        default=len(lines) - 1,
    )
    lines[last + 1 : last + 1] = [f"Requires-Dist: {req}" for req in requirements]
    return ("\n".join(lines) + (sep + body if sep else "\n")).encode("utf-8")


def _timestamp(record_member: Member) -> tuple[int, int]:
    epoch = source_date_epoch()
    if epoch is not None:
        return dos_datetime(epoch)
    return record_member.dos_time, record_member.dos_date


def _record_entry(name: str, content: bytes | Path) -> RecordEntry:
    if isinstance(content, bytes):
        return RecordEntry(name, record_hash(content), len(content))
    digest = hashlib.sha256()
    with content.open("rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return RecordEntry(
        name, digest_to_record_hash("sha256", digest.digest()), content.stat().st_size
    )


def _deflate_file(path: Path) -> tuple[list[bytes], int, int]:
    """The deflated pieces, CRC-32 and size of the file at ``path``, read in chunks."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    pieces, crc, size = [], 0, 0
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK):
            crc, size = zlib.crc32(chunk, crc), size + len(chunk)
            pieces.append(compressor.compress(chunk))
    pieces.append(compressor.flush())
    return pieces, crc, size


def _rewrite(
    wheel: Wheel,
    record: list[RecordEntry],
    output: Path,
    *,
    replaced: Mapping[str, bytes | Path],
    dropped: Iterable[str] = (),
    added_before_record: dict[str, bytes] | None = None,
    replace: bool = True,
) -> None:
    """Copy ``wheel`` to ``output`` raw, replacing (with bytes, or a file's content read
    in chunks), dropping and adding dist-info members, and rewriting RECORD to match.
    ``replace=False``: an existing ``output`` with other bytes is an error (see
    :func:`atomic_path`)."""
    record_name = wheel.dist_info_path("RECORD")
    record_member = wheel.members[record_name]
    dos_time, dos_date = _timestamp(record_member)
    added = added_before_record or {}
    skip = set(dropped) | set(added)
    entries = [e for e in record if e.path not in skip]
    changed = {**replaced, **added}
    entries = [_record_entry(e.path, changed[e.path]) if e.path in changed else e for e in entries]
    record_index = next((i for i, e in enumerate(entries) if e.path == record_name), len(entries))
    entries[record_index:record_index] = [
        RecordEntry(name, record_hash(data), len(data)) for name, data in added.items()
    ]
    record_bytes = format_record(entries)

    with atomic_path(output, replace=replace) as tmp, ZipWriter(tmp) as writer:
        for member in wheel.zip.members:
            if member.name in skip:
                continue
            if member.name == record_name:
                for name, data in added.items():
                    writer.add(name, data, dos_time=dos_time, dos_date=dos_date)
                writer.add(
                    record_name,
                    record_bytes,
                    dos_time=dos_time,
                    dos_date=dos_date,
                    external_attr=member.external_attr,
                )
            elif isinstance(content := replaced.get(member.name), Path):
                pieces, crc, size = _deflate_file(content)
                writer.add_compressed(
                    member.name,
                    pieces,
                    method=DEFLATED,
                    crc=crc,
                    size=size,
                    dos_time=dos_time,
                    dos_date=dos_date,
                    external_attr=member.external_attr,
                )
            elif content is not None:
                writer.add(
                    member.name,
                    content,
                    dos_time=dos_time,
                    dos_date=dos_date,
                    external_attr=member.external_attr,
                )
            else:
                writer.copy(wheel.zip, member)


def tag_wheel(path: Path, out_dir: Path, request: TagRequest, *, replace: bool = True) -> Path:
    """Write the variant wheel for ``path`` into ``out_dir``; return its path.
    ``replace=False``: a different file of that name already there is an error."""
    label, meta = build_variant_metadata(request)
    requirements = _parse_requirements(request.requires_dist)
    with Wheel(path) as wheel:
        if wheel.filename.label is not None:
            raise InvalidInput(
                f"{path}: already a variant wheel (label {wheel.filename.label!r}); "
                "expected a plain wheel (run 'wheelforge untag' first)"
            )
        record = wheel.checked_record(verify=request.verify)
        replaced = {}
        if requirements:
            name = wheel.dist_info_path("METADATA")
            replaced[name] = _add_requirements(
                wheel.core_metadata(), requirements, source=str(path)
            )
        variant_json = wheel.dist_info_path(VARIANT_JSON)
        output = out_dir / wheel.filename.with_label(label).filename
        _rewrite(
            wheel,
            record,
            output,
            replaced=replaced,
            dropped=[variant_json],
            added_before_record={variant_json: dumps(meta, request.schema).encode()},
            replace=replace,
        )
    return output


def untag_wheel(path: Path, out_dir: Path, *, verify: bool = False, replace: bool = True) -> Path:
    """The plain wheel: ``variant.json`` and the label removed. ``replace=False``: a
    different file of that name already in ``out_dir`` is an error."""
    with Wheel(path) as wheel:
        variant_json = wheel.dist_info_path(VARIANT_JSON)
        if wheel.filename.label is None and variant_json not in wheel.members:
            raise InvalidInput(f"{path}: not a variant wheel (no label, no {VARIANT_JSON})")
        record = wheel.checked_record(verify=verify)
        output = out_dir / wheel.filename.plain().filename
        _rewrite(wheel, record, output, replaced={}, dropped=[variant_json], replace=replace)
    return output


def add_requires_dist(path: Path, output: Path, requirements: Sequence[str]) -> Path:
    """``path`` with ``Requires-Dist`` lines added to METADATA (RECORD updated)."""
    return rewrite_wheel(path, output, requirements=requirements)


def rewrite_wheel(
    path: Path,
    output: Path,
    *,
    replaced: Mapping[str, bytes | Path] | None = None,
    requirements: Sequence[str] = (),
) -> Path:
    """``path`` with the members in ``replaced`` given new content (bytes, or a file's,
    deflated in chunks) and ``Requires-Dist`` lines added to METADATA; every other member
    is copied raw, RECORD is rewritten."""
    parsed = _parse_requirements(requirements)
    with Wheel(path) as wheel:
        changed: dict[str, bytes | Path] = dict(replaced or {})
        if parsed:
            name = wheel.dist_info_path("METADATA")
            changed[name] = _add_requirements(wheel.core_metadata(), parsed, source=str(path))
        missing = sorted(set(changed) - set(wheel.members))
        if missing:
            raise InvalidInput(f"{path}: member {missing[0]!r} is missing")
        _rewrite(wheel, wheel.record(), output, replaced=changed)
    return output
