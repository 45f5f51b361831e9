"""The publish stage: check, then send a release set to each target in order.

Fallbacks go first, variant wheels next, the variants file last where the target can
hold it. A file already there with the same sha256 is skipped; one with other content
is refused before anything is sent to any target. Each sent file is recorded in
``DIST/.wheelforge-publish.json``, so an interrupted publish resumes where it stopped.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from wheelforge.errors import InvalidInput
from wheelforge.fsutil import atomic_write
from wheelforge.publish.check import CheckReport
from wheelforge.publish.index import IndexedFile, ProjectLinks, Site
from wheelforge.publish.instructions import InstallInstructions
from wheelforge.publish.plan import Step, site_steps
from wheelforge.publish.release import Artifact, Role, in_publish_order, sha256_bytes, sha256_file
from wheelforge.publish.upload import (
    CREDENTIALS_INSTEAD,
    UploadTarget,
    remote_files,
    twine_upload,
    upload_target,
)
from wheelforge.urls import check_url
from wheelforge.variants.metadata import Schema

STATE_NAME = ".wheelforge-publish.json"
Progress = Callable[[str, str, str], None]  # target, file, what happened


@dataclass(frozen=True)
class Action:
    target: str
    file: str
    action: str  # "send", "skip" (already there), "not sent" (the target cannot take it)
    reason: str = ""


@dataclass
class PublishReport:
    check: CheckReport
    actions: list[Action] = field(default_factory=list)
    resumed: int = 0  # files an earlier, interrupted run had sent
    dry_run: bool = False
    notes: list[str] = field(default_factory=list)
    install: list[InstallInstructions] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "install": [i.to_json() for i in self.install],
            "dry_run": self.dry_run,
            "resumed": self.resumed,
            "actions": [asdict(a) for a in self.actions],
            "notes": self.notes,
            "check": self.check.to_json(),
        }


class CheckFailed(InvalidInput):
    """The release set has errors; nothing was published."""


def verified_artifacts(report: CheckReport) -> list[Artifact]:
    """The checked set's files in publishing order; :class:`CheckFailed` if it has errors."""
    if not report.ok:
        first = report.errors[0]
        raise CheckFailed(
            f"{report.directory}: {len(report.errors)} check errors, nothing published "
            f"(first: {first.file}: {first.message})",
            hint=f"run 'wheelforge check {report.directory}' for every finding",
        )
    return in_publish_order(list(report.artifacts))


# -- index: one batch ---------------------------------------------------------------


@dataclass(frozen=True)
class IndexResult:
    site: Path
    added: list[str]
    unchanged: list[str]
    projects: list[str]  # whose pages changed
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "site": str(self.site)}


def links_for(artifacts: Sequence[Artifact], links: ProjectLinks | None) -> dict[str, ProjectLinks]:
    """project -> the PEP 708 links to write: ``links`` name one project's pages, so a set
    of several projects is refused (one line). Empty ``links`` remove the page's."""
    if links is None:
        return {}
    projects = sorted({a.project for a in artifacts})
    if len(projects) != 1:
        raise InvalidInput(
            f"--tracks/--alternate-location/--clear-links: the set holds {len(projects)} projects "
            f"({', '.join(projects) or 'none'}); PEP 708 links name one project's pages: "
            "publish each project with its own links"
        )
    return {projects[0]: links}


def _note_replaced(site: Site, links: dict[str, ProjectLinks], notes: list[str]) -> None:
    for project, new in links.items():
        old = site.links(project)
        if old and old != new:
            notes.append(
                f"{site.root}: {project}: PEP 708 links replaced (tracks were "
                f"{', '.join(old.tracks) or 'none'}; alternate-locations were "
                f"{', '.join(old.alternate_locations) or 'none'})"
            )


def index_release_set(
    artifacts: Sequence[Artifact],
    root: Path,
    *,
    schema: Schema = Schema.PROVIDERS_V0_2_0,
    links: ProjectLinks | None = None,
) -> IndexResult:
    """Add a checked release set to the static site at ``root`` in one atomic swap; with
    ``links``, its project's pages carry those PEP 708 links (replacing the ones they had;
    without, they keep theirs)."""
    site = Site(root)
    per_project = links_for(artifacts, links)
    notes: list[str] = []
    with site.locked():
        _note_replaced(site, per_project, notes)
        site.check_new(artifacts)
        steps = site_steps(list(artifacts), site, schema=schema)
        _refuse_labels_without_wheels(steps, site)
        stored = []
        try:
            for step in steps:
                stored.append(site.store(step.artifact, step.data))
        except BaseException:  # nothing listed yet: take back what this run stored
            site.discard([item for item in stored if item.new])
            raise
        additions: dict[str, list[IndexedFile]] = {}
        added: list[str] = []
        unchanged: list[str] = []
        listed = {project: site.files(project) for project in {s.project for s in stored}}
        for item in stored:
            additions.setdefault(item.project, []).append(item.file)
            same = listed[item.project].get(item.file.filename) == item.file
            (unchanged if same else added).append(item.file.filename)
        for project in per_project:
            additions.setdefault(project, [])
        projects = site.publish_pages(additions, per_project)
    return IndexResult(root, added, unchanged, projects, notes)


def _refuse_labels_without_wheels(steps: Sequence[Step], site: Site) -> None:
    """Every label of a variants file about to be listed has its wheel, in this batch or
    on the site already (``index --no-check`` would otherwise offer a label whose
    wheel no installer can find)."""
    from packaging.utils import canonicalize_version

    from wheelforge.variants.metadata import loads
    from wheelforge.wheel.filename import WheelFilename

    def release_labels(project: str, version: str, names: Iterable[str]) -> set[str]:
        labels = set()
        for name in names:
            if not name.endswith(".whl"):
                continue
            try:
                wheel = WheelFilename.parse(name)
            except InvalidInput:
                continue
            if wheel.label and canonicalize_version(wheel.version) == version:
                labels.add(wheel.label)
        return labels

    for step in steps:
        artifact = step.artifact
        if artifact.role is not Role.VARIANTS_FILE:
            continue
        data = step.data if step.data is not None else artifact.path.read_bytes()
        meta = loads(data, source=str(artifact.path))
        version = canonicalize_version(artifact.version)
        names = [s.artifact.name for s in steps if s.artifact.project == artifact.project]
        names += list(site.files(artifact.project))
        missing = sorted(set(meta.variants) - release_labels(artifact.project, version, names))
        if missing:
            raise InvalidInput(
                f"{artifact.path}: lists label {missing[0]!r}"
                + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
                + " but neither the release set nor the site has its wheel; nothing was "
                "written (an installer would pick a wheel it cannot download)"
            )


# -- publish: one file at a time ----------------------------------------------------


def publish(
    dist: Path,
    targets: Sequence[str],
    *,
    report: CheckReport,
    artifacts: list[Artifact],
    dry_run: bool = False,
    simple_url: str | None = None,
    schema: Schema = Schema.PROVIDERS_V0_2_0,
    progress: Progress | None = None,
    against: Sequence[str] = (),
    links: ProjectLinks | None = None,
) -> PublishReport:
    if not targets:
        raise InvalidInput("publish: give at least one --to TARGET")
    result = PublishReport(report, dry_run=dry_run)
    per_project = links_for(artifacts, links)
    refuse_links_without_site(targets, links)
    plans: list[tuple[str, Site | UploadTarget, list[tuple[Step, Action]]]] = []
    for text in targets:  # plan every target before anything is sent anywhere
        target = _target(text, simple_url)
        if isinstance(target, Site):
            plans.append((str(target.root), target, _plan_site(target, artifacts, schema)))
        else:
            plans.append((target.name, target, _plan_upload(target, artifacts, schema)))
    _note_unsent_variants(result, plans)
    for _, target, _ in plans:
        if isinstance(target, Site):
            _note_replaced(target, per_project, result.notes)
    _verify_against(artifacts, [t for _, t, _ in plans if isinstance(t, UploadTarget)], against)
    state = _State(dist)
    for name, _, plan in plans:
        result.actions += [action for _, action in plan]
        result.resumed += sum(
            1 for step, action in plan if action.action == "skip" and state.sent(name, step)
        )
    if dry_run:
        return result
    for index, (name, target, plan) in enumerate(plans):
        if isinstance(target, Site):
            with target.locked():
                # Plan again under the lock: another writer may have published since the
                # plan above, and the variants file must merge what the site holds now.
                plan = _plan_site(target, artifacts, schema)
                plans[index] = (name, target, plan)
                todo = [(step, action) for step, action in plan if action.action == "send"]
                for step, _ in todo:
                    stored = target.store(step.artifact, step.data)
                    target.publish_pages({stored.project: [stored.file]}, per_project)
                    state.record(name, step, stored.file.sha256)
                    if progress:
                        progress(name, step.artifact.name, "published")
                if per_project:  # every file already there: the links may still be new
                    target.publish_pages({p: [] for p in per_project}, per_project)
        else:
            todo = [(step, action) for step, action in plan if action.action == "send"]
            for step, _ in todo:
                twine_upload(target, step.artifact.path)
                state.record(name, step, sha256_file(step.artifact.path))
                if progress:
                    progress(name, step.artifact.name, "uploaded")
    result.actions = [action for _, _, plan in plans for _, action in plan]
    return result


def _verify_against(
    artifacts: Sequence[Artifact], uploads: Sequence[UploadTarget], against: Sequence[str]
) -> None:
    """Before anything is sent: the set against each upload target's simple index (with
    twine's credentials) and each --against index; any error stops publish here. A
    static-site target is the variant index itself: checking it against itself proves
    nothing (its same-name files are refused by the plan already)."""
    from wheelforge.publish.against import check_against
    from wheelforge.publish.upload import credentials

    simple = [t.simple_url for t in uploads]  # their files: compared by the plan already
    findings = check_against(artifacts, simple, same_names=False, auth=credentials())
    findings += check_against(artifacts, list(against))
    errors = [f for f in findings if f.severity == "error"]
    if errors:
        raise CheckFailed(
            f"{len(errors)} --against errors, nothing was sent (first: {errors[0].file}: "
            f"{errors[0].message})",
            hint="run 'wheelforge check DIST --against URL' for every finding",
        )


def check_targets(targets: Sequence[str], simple_url: str | None) -> None:
    """Refuse a malformed --to or --simple-url before the (slow) check of the set."""
    if simple_url is not None:
        check_url("--simple-url", simple_url, instead=CREDENTIALS_INSTEAD)
    for text in targets:
        _target(text, simple_url)


def refuse_links_without_site(targets: Sequence[str], links: ProjectLinks | None) -> None:
    if links is not None and not site_targets(targets):
        raise InvalidInput(
            "--tracks/--alternate-location/--clear-links: PEP 708 links are written on a "
            "static site's pages; add --to SITE (an upload index sets its own)"
        )


def site_targets(targets: Sequence[str]) -> list[str]:
    """The --to targets that are static site directories."""
    return [text for text in targets if not _is_upload(text)]


def _is_upload(text: str) -> bool:
    return text in ("pypi", "testpypi") or "://" in text


def _target(text: str, simple_url: str | None) -> Site | UploadTarget:
    if _is_upload(text):
        return upload_target(text, simple_url)
    return Site(Path(text))


def _plan_site(site: Site, artifacts: list[Artifact], schema: Schema) -> list[tuple[Step, Action]]:
    site.check_layout()
    site.check_new(artifacts)
    plan = []
    pages = {project: site.files(project) for project in {a.project for a in artifacts}}
    for step in site_steps(artifacts, site, schema=schema):
        listed = pages[step.artifact.project].get(step.artifact.name)
        sha256 = sha256_file(step.artifact.path) if step.data is None else sha256_bytes(step.data)
        if listed is not None and listed.sha256 == sha256:
            action = Action(str(site.root), step.artifact.name, "skip", "already published")
        else:
            why = "the variants file, last" if step.artifact.role is Role.VARIANTS_FILE else ""
            action = Action(str(site.root), step.artifact.name, "send", why)
        plan.append((step, action))
    return plan


def _plan_upload(
    target: UploadTarget, artifacts: list[Artifact], schema: Schema
) -> list[tuple[Step, Action]]:
    plan = []
    remote: dict[str, dict[str, str | None]] = {}
    for step in site_steps(artifacts, None, schema=schema):
        artifact = step.artifact
        if artifact.role is Role.VARIANTS_FILE:
            reason = "an upload index cannot hold variants files; publish them to a static site"
            plan.append((step, Action(target.name, artifact.name, "not sent", reason)))
            continue
        if artifact.label is not None and not target.accepts_variant_filenames:
            reason = f"{target.name} refuses variant filenames; publish them to a static site"
            plan.append((step, Action(target.name, artifact.name, "not sent", reason)))
            continue
        if artifact.project not in remote:
            remote[artifact.project] = remote_files(target, artifact.project)
        files = remote[artifact.project]
        sha256 = sha256_file(artifact.path)
        if artifact.name not in files:
            plan.append((Step(artifact), Action(target.name, artifact.name, "send")))
        elif files[artifact.name] in (sha256, None):
            why = "already there" + (
                " (no hash listed to compare)" if files[artifact.name] is None else ""
            )
            plan.append((Step(artifact), Action(target.name, artifact.name, "skip", why)))
        else:
            raise InvalidInput(
                f"{artifact.name}: {target.name} already has a file of this name with other "
                f"content (sha256 {files[artifact.name]}); nothing was sent",
                hint="published files are never replaced: bump the version or the build number",
            )
    return plan


def _note_unsent_variants(
    result: PublishReport, plans: list[tuple[str, Site | UploadTarget, list[tuple[Step, Action]]]]
) -> None:
    refused = {a.file for _, _, plan in plans for _, a in plan if a.action == "not sent"}
    sites = [name for name, target, _ in plans if isinstance(target, Site)]
    if not refused:
        return
    if sites:
        result.notes.append(
            f"{len(refused)} files that the upload indexes cannot take go to the variant "
            f"index {', '.join(sites)}"
        )
    else:
        result.notes.append(
            f"{len(refused)} files (variant wheels, variants file) are published nowhere: "
            "add --to SITE to put the variant set on a static variant index"
        )


class _State:
    """``DIST/.wheelforge-publish.json``: target -> filename -> sha256 of what was sent."""

    def __init__(self, dist: Path) -> None:
        self.path = dist / STATE_NAME
        try:
            data = json.loads(self.path.read_text()) if self.path.exists() else {}
        except (ValueError, RecursionError):  # not ours, or damaged: start afresh
            data = {}
        self.data: dict[str, dict[str, str]] = data if isinstance(data, dict) else {}

    def sent(self, target: str, step: Step) -> bool:
        return step.artifact.name in self.data.get(target, {})

    def record(self, target: str, step: Step, sha256: str) -> None:
        self.data.setdefault(target, {})[step.artifact.name] = sha256
        atomic_write(self.path, (json.dumps(self.data, indent=1, sort_keys=True) + "\n").encode())
