"""What publishing a release set to a site does, step by step, before any step runs."""

from __future__ import annotations

from dataclasses import dataclass

from wheelforge.errors import InvalidInput
from wheelforge.publish.index import Site
from wheelforge.publish.release import VARIANTS_SUFFIX, Artifact, Role, sha256_bytes
from wheelforge.variants.merge import merge
from wheelforge.variants.metadata import Schema, VariantMetadata, dumps, loads
from wheelforge.variants_file import Release, release_metadata


@dataclass(frozen=True)
class Step:
    artifact: Artifact
    data: bytes | None = None  # content made here (a variants file), else the file's own


def site_steps(
    artifacts: list[Artifact], site: Site | None, *, schema: Schema = Schema.PROVIDERS_V0_2_0
) -> list[Step]:
    """The files to publish in order, each release's variants file last: the one in
    the set, or one made from its wheels, merged with what ``site`` lists already."""
    steps = [Step(a) for a in artifacts if a.role is not Role.VARIANTS_FILE]
    for project, version in sorted({(a.project, a.version) for a in artifacts}):
        release = [a for a in artifacts if (a.project, a.version) == (project, version)]
        step = _variants_step(release, site, schema)
        if step is not None:
            steps.append(step)
    return steps


def _variants_step(release: list[Artifact], site: Site | None, schema: Schema) -> Step | None:
    given = next((a for a in release if a.role is Role.VARIANTS_FILE), None)
    wheels = [a for a in release if a.role is Role.VARIANT or a.label is not None]
    if given is not None:
        meta = loads(given.path.read_bytes(), source=str(given.path))
        schema = meta.schema if meta.schema is not Schema.LEGACY_V0_0_3 else schema
        name = given.name
    elif wheels:
        name, version = _release_key(wheels[0])
        meta = release_metadata(
            Release(name, version, tuple(a.path for a in wheels), plain_wheels=())
        )
        name = f"{name}-{version}{VARIANTS_SUFFIX}"
    else:
        return None
    first = given or wheels[0]
    artifact = Artifact(first.path.parent / name, first.project, first.version, Role.VARIANTS_FILE)
    published = _published_variants(site, artifact)
    if published is not None:
        meta = merge(published, meta, names=(f"the site's {name}", f"the release set's {name}"))
    elif given is not None:
        return Step(given)
    return Step(artifact, dumps(meta, schema).encode())


def _published_variants(site: Site | None, artifact: Artifact) -> VariantMetadata | None:
    if site is None:
        return None
    listed = site.files(artifact.project).get(artifact.name)
    if listed is None:
        return None
    path = site.path_of(artifact.project, listed)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise InvalidInput(f"{path}: listed on the site but unreadable ({err})") from None
    if sha256_bytes(data) != listed.sha256:
        raise InvalidInput(
            f"{path}: its content does not match the sha256 its page lists "
            f"({listed.sha256[:16]}…); the site's store was changed under it"
        )
    return loads(data, source=str(path))


def _release_key(wheel: Artifact) -> tuple[str, str]:
    from wheelforge.wheel.filename import WheelFilename

    return WheelFilename.parse(wheel.name).release
