"""Matrix files: a declarative set of variants, expanded into build jobs.

Axes in the manner of conda-build's variant files (list-valued axes, ``zip`` of axes,
``exclude`` and ``include`` entries), and per-variant values templated from axis
values with jinja2. Pure apart from reading the file; every error names the file,
the key path and what was expected.
"""

from __future__ import annotations

import difflib
import itertools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from wheelforge.errors import InvalidInput
from wheelforge.formats import read_toml, table_at
from wheelforge.library_path import parse_entry as parse_library_path
from wheelforge.templating import SecurityError, sandboxed
from wheelforge.variants.abi_dependency import NAMESPACE as ABI_NAMESPACE
from wheelforge.variants.config import config_from_table, default_config
from wheelforge.variants.labels import NULL_LABEL, default_label, validate_new_label
from wheelforge.variants.metadata import VariantMetadata
from wheelforge.variants.properties import VariantProperty

KINDS = ("variant", "null", "plain")
TOOLCHAINS = ("host", "nvcc", "hipcc")
COMPRESSIONS = ("deflate", "zstd")
_COMPONENT = re.compile(r"[a-z][a-z0-9_]*")

_TOP_KEYS = ("project", "variant", "axes", "zip", "exclude", "include", "defaults", "variants")
_PROJECT_KEYS = ("path", "python", "platform", "source")
SOURCE_MODES = ("sdist", "tree")
COMPILER_CACHES = ("auto", "sccache", "ccache", "none")
RESERVED_IDS = ("sdist",)  # the manifest's name for the release's sdist
_VARIANT_KEYS = (
    "id",
    "kind",
    "axes",
    "label",
    "properties",
    "toolchain",
    "toolchain-version",
    "toolchain-source",
    "config-settings",
    "env",
    "requires-dist",
    "repair",
    "repair-exclude",
    "repair-isa-check",
    "repair-library-path",
    "accelerator-runtime",
    "max-size-mb",
    "oversize",
    "compression",
    "python",
    "runner",
    "manylinux-image",
    "before-build",
    "cuda-components",
    "compiler-cache",
    "test-command",
    "test-requires",
    "source-date-epoch",
)
_DEFAULTABLE = tuple(k for k in _VARIANT_KEYS if k not in ("id", "kind", "axes", "label"))
# Job ids name directories and logs (.wheelforge/jobs/ID): the label's characters plus
# '-', lowercase only (one job a directory on case-insensitive file systems too).
JOB_ID_PATTERN = re.compile(r"[0-9a-z_.][0-9a-z_.-]*")
JOB_ID_MAX = 100
ENV_NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # POSIX: what a shell can set
TOOLCHAIN_VERSION_PATTERN = re.compile(r"[0-9]+(\.[0-9]+)*")
_BARE_KEY = re.compile(r"[A-Za-z0-9_.-]+")
# test-command placeholders (as cibuildwheel's): the project directory and the wheel.
TEST_PLACEHOLDERS = ("project", "wheel")
# A {name} that is no placeholder is most likely a misspelt one; ${name} is the shell's.
_PLACEHOLDER = re.compile(r"(?<!\$)\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class Job:
    """One build: a variant (or the null variant, or the plain wheel) for one Python."""

    id: str
    kind: str
    label: str | None  # None for the plain wheel
    properties: frozenset[VariantProperty]
    python: str
    toolchain: str = "host"
    toolchain_version: str | None = None
    toolchain_source: str = "system"  # "auto": fetch a missing CUDA version from PyPI
    config_settings: tuple[tuple[str, str], ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    requires_dist: tuple[str, ...] = ()
    repair: bool = True  # False: no auditwheel; the wheel keeps its linux_* tag
    repair_exclude: tuple[str, ...] = ()
    repair_isa_check: bool = True
    # Directories auditwheel also searches: {build}, {source} or {wheel} + a relative path.
    repair_library_path: tuple[str, ...] = ()
    accelerator_runtime: str = (
        "exclude"  # CUDA runtime libraries: "exclude" (+ Requires-Dist) | "bundle"
    )
    max_size_mb: float = 100.0  # PyPI's default per-file limit
    oversize: str = "fail"  # "fail" | "warn"
    compression: str = "deflate"
    axes: tuple[tuple[str, str], ...] = ()
    runner: str = "ubuntu-latest"  # the GitHub Actions runner that builds it
    manylinux_image: str | None = None  # cibuildwheel's image; None: the toolchain's default
    # Commands run in the job's source copy before the build: a string runs with sh -c,
    # a tuple is an argv.
    before_build: tuple[str | tuple[str, ...], ...] = ()
    cuda_components: tuple[str, ...] = ()  # nvidia-* wheels fetched for the build (nvcc)
    compiler_cache: str = (
        "auto"  # "auto" (sccache, else ccache, else none) | "sccache" | "ccache" | "none"
    )
    # The smoke test run on each built wheel (``wheelforge test``): a string runs with
    # sh -c, a tuple is an argv; {project} and {wheel} are substituted. None: no test.
    test_command: str | tuple[str, ...] | None = None
    test_requires: tuple[str, ...] = ()  # installed beside the wheel for the test
    # False: the build runs without SOURCE_DATE_EPOCH (some build systems change their
    # flags when it is set); wheelforge's own zip dates still take it.
    source_date_epoch: bool = True

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "label": self.label,
            "properties": sorted(str(p) for p in self.properties),
            "python": self.python,
            "toolchain": self.toolchain,
            "toolchain-version": self.toolchain_version,
            "toolchain-source": self.toolchain_source,
            "config-settings": _settings_json(self.config_settings),
            "env": dict(self.env),
            "requires-dist": list(self.requires_dist),
            "repair": self.repair,
            "repair-exclude": list(self.repair_exclude),
            "repair-isa-check": self.repair_isa_check,
            "repair-library-path": list(self.repair_library_path),
            "accelerator-runtime": self.accelerator_runtime,
            "max-size-mb": self.max_size_mb,
            "oversize": self.oversize,
            "compression": self.compression,
            "axes": dict(self.axes),
            "runner": self.runner,
            "manylinux-image": self.manylinux_image,
            "before-build": [list(s) if isinstance(s, tuple) else s for s in self.before_build],
            "cuda-components": list(self.cuda_components),
            "compiler-cache": self.compiler_cache,
            "test-command": list(self.test_command)
            if isinstance(self.test_command, tuple)
            else self.test_command,
            "test-requires": list(self.test_requires),
            "source-date-epoch": self.source_date_epoch,
        }


@dataclass(frozen=True)
class Matrix:
    source: Path
    project: Path
    platform: str | None
    config: VariantMetadata
    jobs: tuple[Job, ...] = field(default=())
    source_mode: str = "sdist"  # what jobs build from: the sdist, or a copy of the tree

    def select(self, ids: Sequence[str]) -> list[Job]:
        known = {job.id: job for job in self.jobs}
        for job_id in ids:
            if job_id not in known:
                raise InvalidInput(
                    f"{self.source}: no job {job_id!r}{_did_you_mean(job_id, known)}; "
                    f"jobs: {', '.join(known)}"
                )
        return [job for job in self.jobs if not ids or job.id in ids]


def validate_job_id(job_id: str) -> str:
    """``job_id`` if it is a valid job id; :class:`InvalidInput` (without a file) if not."""
    if not JOB_ID_PATTERN.fullmatch(job_id) or len(job_id) > JOB_ID_MAX or job_id in (".", ".."):
        raise InvalidInput(
            f"job id {job_id!r}: expected lowercase letters, digits, '_', '.' and '-' "
            f"(not first), at most {JOB_ID_MAX} characters, not '.' or '..'"
        )
    return job_id


def _key(name: str) -> str:
    """A table key as it appears in a key path: bare when it can be, else quoted (one line)."""
    return name if _BARE_KEY.fullmatch(name) else json.dumps(name)


def _did_you_mean(word: str, choices: Sequence[str] | Mapping[str, Any]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


class _Checker:
    def __init__(self, source: Path, inherited: Sequence[str] = ()) -> None:
        self.source = source
        self.inherited = tuple(inherited)  # key paths whose value came from [defaults]

    def fail(self, path: str, expected: str) -> InvalidInput:
        if any(path == p or path.startswith((f"{p}.", f"{p}[")) for p in self.inherited):
            path += " (from [defaults])"
        return InvalidInput(f"{self.source}: {path}: {expected}")

    def keys(self, table: Mapping[str, Any], path: str, allowed: Sequence[str]) -> None:
        for key in table:
            if key not in allowed:
                where = f"{path}.{_key(key)}" if path else _key(key)
                raise self.fail(
                    where,
                    f"unknown key{_did_you_mean(key, allowed)}; expected one of "
                    f"{', '.join(allowed)}",
                )

    def table(self, value: Any, path: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(path, "expected a table")
        return value

    def strings(self, value: Any, path: str) -> list[str]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(path, "expected a list of strings")
        return value

    def string(self, value: Any, path: str, choices: Sequence[str] | None = None) -> str:
        if not isinstance(value, str):
            raise self.fail(path, "expected a string")
        if choices is not None and value not in choices:
            raise self.fail(
                path,
                f"expected one of {', '.join(choices)}, got {value!r}"
                f"{_did_you_mean(value, choices)}",
            )
        return value


class _Renderer:
    """Templates from the matrix file (a pull request's, perhaps) render in jinja2's
    sandbox, with the axis values and ``python`` as their only variables."""

    def __init__(self, checker: _Checker) -> None:
        self.checker = checker
        self.env = sandboxed(autoescape=False)

    def __call__(self, text: str, context: Mapping[str, str], path: str) -> str:
        try:
            return self.env.from_string(text).render(context)
        except SecurityError as err:
            raise self.checker.fail(
                path,
                f"template refused by the sandbox: {err} (templates may only use "
                "the axis values and python)",
            ) from None
        except jinja2.UndefinedError as err:
            names = ", ".join(context) or "none"
            raise self.checker.fail(
                path, f"template error: {err.message} (axes here: {names})"
            ) from None
        except jinja2.TemplateError as err:
            raise self.checker.fail(path, f"template error: {err}") from None
        except Exception as err:  # the template's own arithmetic, indexing, formatting
            raise self.checker.fail(path, f"template error: {type(err).__name__}: {err}") from None


def load_matrix(path: Path) -> Matrix:
    """Read a matrix file, or a ``pyproject.toml`` with a ``[tool.wheelforge]`` table."""
    document = read_toml(path, what="matrix file")
    if path.name == "pyproject.toml":
        table = table_at(document, "tool", "wheelforge", source=str(path))
        if table is None:
            raise InvalidInput(f"{path}: expected a [tool.wheelforge] table")
        return parse_matrix(table, source=path, default_project=".")
    return parse_matrix(document, source=path)


def parse_matrix(
    document: Mapping[str, Any], *, source: Path, default_project: str | None = None
) -> Matrix:
    check = _Checker(source)
    check.keys(document, "", _TOP_KEYS)
    project = check.table(document.get("project", {}), "project")
    check.keys(project, "project", _PROJECT_KEYS)
    project_path = project.get("path", default_project)
    if project_path is None:
        raise check.fail("project.path", "expected the path of the project to build")
    project_dir = (source.parent / check.string(project_path, "project.path")).resolve()
    pythons = _pythons(check, project.get("python", ["3"]), "project.python")
    platform = project.get("platform")
    if platform is not None:
        check.string(platform, "project.platform")
    source_mode = check.string(project.get("source", "sdist"), "project.source", SOURCE_MODES)

    config = (
        config_from_table(document["variant"], source=str(source))
        if "variant" in document
        else default_config()
    )
    axes = _axes(check, document)
    zips = _zips(check, document, axes)
    excludes = _entries(check, document, "exclude", axes)
    includes = _entries(check, document, "include", axes)
    defaults = check.table(document.get("defaults", {}), "defaults")
    check.keys(defaults, "defaults", _DEFAULTABLE)

    jobs: list[Job] = []
    origin: dict[str, str] = {}
    variants = document.get("variants")
    if not isinstance(variants, list) or not variants:
        raise check.fail(
            "variants", "expected an array of tables ([[variants]]) with at least one entry"
        )
    for index, entry in enumerate(variants):
        path = f"variants[{index}]"
        template = check.table(entry, path)
        check.keys(template, path, _VARIANT_KEYS)
        merged = _with_defaults(defaults, template)
        # Errors name a key that came from [defaults] as such.
        variant_check = _Checker(source, _inherited(defaults, template, path))
        render = _Renderer(variant_check)
        own_axes = variant_check.strings(merged.get("axes", []), f"{path}.axes")
        for axis in own_axes:
            if axis not in axes:
                raise variant_check.fail(
                    f"{path}.axes",
                    f"unknown axis {axis!r}{_did_you_mean(axis, axes)}; "
                    f"axes: {', '.join(axes) or 'none'}",
                )
        own_pythons = _pythons(variant_check, merged.get("python", pythons), f"{path}.python")
        for combo in _combinations(own_axes, axes, zips, excludes, includes):
            for python in own_pythons:
                context = {**combo, "python": python}
                job = _job(
                    variant_check, render, merged, path, context, config, len(own_pythons) > 1
                )
                if job.id in origin:
                    raise variant_check.fail(
                        f"{path}.id",
                        f"job id {job.id!r} is also produced by "
                        f"{origin[job.id]}; expected unique ids",
                    )
                origin[job.id] = path
                jobs.append(job)
    _check_labels(check, jobs, origin)
    return Matrix(source, project_dir, platform, config, tuple(jobs), source_mode)


def _with_defaults(defaults: Mapping[str, Any], variant: Mapping[str, Any]) -> dict[str, Any]:
    """A variant's keys over ``[defaults]``; where both give a table (``config-settings``,
    ``env``), the tables merge and the variant's entry wins per key. Rendering comes
    later, so a default's template sees each variant's axis values."""
    merged = {**defaults, **variant}
    for key, value in variant.items():
        default = defaults.get(key)
        if isinstance(value, dict) and isinstance(default, dict):
            merged[key] = {**default, **value}
    return merged


def _inherited(defaults: Mapping[str, Any], variant: Mapping[str, Any], path: str) -> list[str]:
    """The key paths of a variant whose value comes from ``[defaults]`` (for errors)."""
    paths = []
    for key, value in defaults.items():
        own = variant.get(key)
        if key not in variant:
            paths.append(f"{path}.{key}")
        elif isinstance(value, dict) and isinstance(own, dict):
            paths += [f"{path}.{key}.{_key(name)}" for name in value if name not in own]
    return paths


def _axes(check: _Checker, document: Mapping[str, Any]) -> dict[str, list[str]]:
    axes = check.table(document.get("axes", {}), "axes")
    result = {}
    for name, values in axes.items():
        if (
            not isinstance(values, list)
            or not values
            or not all(isinstance(v, str | int | float) and not isinstance(v, bool) for v in values)
        ):
            raise check.fail(f"axes.{name}", "expected a non-empty list of strings or numbers")
        result[name] = [str(v) for v in values]
    return result


def _zips(
    check: _Checker, document: Mapping[str, Any], axes: Mapping[str, list[str]]
) -> list[list[str]]:
    zips = document.get("zip", [])
    if not isinstance(zips, list):
        raise check.fail("zip", 'expected a list of axis lists, e.g. [["cuda", "sm"]]')
    seen: set[str] = set()
    for i, group in enumerate(zips):
        names = check.strings(group, f"zip[{i}]")
        if len(names) < 2:
            raise check.fail(f"zip[{i}]", "expected at least two axes to zip")
        for name in names:
            if name not in axes:
                raise check.fail(f"zip[{i}]", f"unknown axis {name!r}{_did_you_mean(name, axes)}")
            if name in seen:
                raise check.fail(f"zip[{i}]", f"axis {name!r} is already zipped")
            seen.add(name)
        lengths = {len(axes[name]) for name in names}
        if len(lengths) != 1:
            raise check.fail(
                f"zip[{i}]",
                "expected zipped axes of equal length; got "
                + ", ".join(f"{n}={len(axes[n])}" for n in names),
            )
    return zips


def _entries(
    check: _Checker, document: Mapping[str, Any], key: str, axes: Mapping[str, list[str]]
) -> list[dict[str, str]]:
    entries = document.get(key, [])
    if not isinstance(entries, list):
        raise check.fail(key, "expected an array of tables")
    result = []
    for i, entry in enumerate(entries):
        table = check.table(entry, f"{key}[{i}]")
        check.keys(table, f"{key}[{i}]", list(axes))
        if not table:
            raise check.fail(f"{key}[{i}]", "expected at least one axis = value")
        result.append({name: str(value) for name, value in table.items()})
    return result


def _combinations(
    own: Sequence[str],
    axes: Mapping[str, list[str]],
    zips: Sequence[Sequence[str]],
    excludes: Sequence[Mapping[str, str]],
    includes: Sequence[Mapping[str, str]],
) -> list[dict[str, str]]:
    if not own:
        return [{}]
    groups: list[list[dict[str, str]]] = []
    done: set[str] = set()
    for axis in own:
        if axis in done:
            continue
        group = next((z for z in zips if axis in z), [axis])
        members = [name for name in group if name in own]
        done.update(members)
        length = len(axes[axis])
        groups.append([{name: axes[name][i] for name in members} for i in range(length)])
    combos = [
        {k: v for part in parts for k, v in part.items()} for parts in itertools.product(*groups)
    ]
    combos = [
        combo
        for combo in combos
        if not any(
            set(ex) <= set(own) and all(combo[k] == v for k, v in ex.items()) for ex in excludes
        )
    ]
    for extra in includes:
        if set(extra) == set(own) and extra not in combos:
            combos.append(dict(extra))
    return combos


def _job(
    check: _Checker,
    render: _Renderer,
    entry: Mapping[str, Any],
    path: str,
    context: Mapping[str, str],
    config: VariantMetadata,
    python_in_id: bool,
) -> Job:
    kind = check.string(entry.get("kind", "variant"), f"{path}.kind", KINDS)

    def text(key: str, default: str | None = None) -> str | None:
        value = entry.get(key, default)
        if value is None:
            return None
        return render(check.string(value, f"{path}.{key}"), context, f"{path}.{key}")

    def texts(key: str) -> tuple[str, ...]:
        values = check.strings(entry.get(key, []), f"{path}.{key}")
        return tuple(render(v, context, f"{path}.{key}[{i}]") for i, v in enumerate(values))

    def mapping(key: str, *, repeatable: bool = False) -> tuple[tuple[str, str], ...]:
        """A table of strings; with ``repeatable``, a value may be a list of strings, one
        pair each, in the list's order (meson-python's ``setup-args``)."""
        table = check.table(entry.get(key, {}), f"{path}.{key}")
        out = []
        for name, value in table.items():
            where = f"{path}.{key}.{_key(name)}"
            values = value if repeatable and isinstance(value, list) and value else [value]
            for i, item in enumerate(values):
                at = f"{where}[{i}]" if values is value else where
                if isinstance(item, bool) or not isinstance(item, str | int | float):
                    expected = "a string or a list of strings" if repeatable else "a string"
                    raise check.fail(at, f"expected {expected}")
                out.append((name, render(str(item), context, at)))
        return tuple(sorted(out, key=lambda pair: pair[0]))  # stable: a list keeps its order

    def environment() -> tuple[tuple[str, str], ...]:
        variables = mapping("env")
        for name, value in variables:
            where = f"{path}.env.{_key(name)}"
            if not ENV_NAME_PATTERN.fullmatch(name):
                raise check.fail(
                    where,
                    f"environment variable name {name!r}: expected letters, digits and '_', "
                    'not starting with a digit (one variable a key: NAME = "value")',
                )
            if "\0" in value:
                raise check.fail(where, "the value contains NUL, which no environment can hold")
        return variables

    properties: frozenset[VariantProperty] = frozenset()
    for i, prop in enumerate(texts("properties")):
        try:
            properties |= {VariantProperty.parse(prop)}
        except InvalidInput as err:
            raise check.fail(f"{path}.properties[{i}]", err.message) from None
    label = text("label")
    if kind == "variant":
        if not properties:
            raise check.fail(
                f"{path}.properties",
                "expected at least one property for a variant "
                '(use kind = "null" for the null variant)',
            )
        label = label or default_label(properties)
        try:
            validate_new_label(label)
        except InvalidInput as err:
            raise check.fail(f"{path}.label", err.message) from None
        if label == NULL_LABEL:
            raise check.fail(f"{path}.label", "'null' is reserved for kind = \"null\"")
        # abi_dependency is reserved: it needs no entry ('tag' lists it last)
        listed = {*config.namespace_priorities, ABI_NAMESPACE}
        missing = sorted({p.namespace for p in properties} - listed)
        if missing:
            raise check.fail(
                f"{path}.properties",
                f"namespace {missing[0]!r} is not in "
                f"variant.default-priorities.namespace "
                f"({', '.join(config.namespace_priorities)})",
            )
    else:
        for key in ("label", "properties"):
            if key in entry:
                raise check.fail(f"{path}.{key}", f"not allowed for kind = {kind!r}")
        label = NULL_LABEL if kind == "null" else None
    compression = check.string(
        entry.get("compression", "deflate"), f"{path}.compression", COMPRESSIONS
    )
    if kind == "plain" and compression == "zstd":
        raise check.fail(
            f"{path}.compression",
            "expected deflate for the plain wheel: pip on CPython < 3.14 cannot read zstd members",
        )
    isa_check = entry.get("repair-isa-check", True)
    if not isinstance(isa_check, bool):
        raise check.fail(f"{path}.repair-isa-check", "expected true or false")
    epoch = entry.get("source-date-epoch", True)
    if not isinstance(epoch, bool):
        raise check.fail(
            f"{path}.source-date-epoch",
            f"expected true (the build sees SOURCE_DATE_EPOCH) or false, got {epoch!r}",
        )
    repair = entry.get("repair", True)
    if not isinstance(repair, bool):
        raise check.fail(f"{path}.repair", "expected true or false")
    library_path = texts("repair-library-path")
    for i, directory in enumerate(library_path):
        try:
            parse_library_path(directory)
        except InvalidInput as err:
            raise check.fail(f"{path}.repair-library-path[{i}]", err.message) from None
    python = context["python"]
    default_id = label if label is not None else "plain"
    job_id = text("id", default_id) or default_id
    if python_in_id:
        job_id = f"{job_id}-py{python}"
    try:
        validate_job_id(job_id)
    except InvalidInput as err:
        origin = "" if "id" in entry else " (the default id: the label)"
        raise check.fail(f"{path}.id", err.message + origin) from None
    if job_id in RESERVED_IDS:
        raise check.fail(f"{path}.id", f"{job_id!r} is reserved (the release's sdist)")
    toolchain_version = text("toolchain-version")
    if toolchain_version is not None and not TOOLCHAIN_VERSION_PATTERN.fullmatch(toolchain_version):
        raise check.fail(
            f"{path}.toolchain-version",
            f"expected a version like 12.8 or 6.4, got {toolchain_version!r}",
        )
    toolchain = check.string(entry.get("toolchain", "host"), f"{path}.toolchain", TOOLCHAINS)
    components = texts("cuda-components")
    if components and toolchain != "nvcc":
        raise check.fail(f"{path}.cuda-components", 'expected only with toolchain = "nvcc"')
    for i, component in enumerate(components):
        if not _COMPONENT.fullmatch(component):
            raise check.fail(
                f"{path}.cuda-components[{i}]",
                f"expected a CUDA library name such as cublas or cusparse, got {component!r}",
            )
    return Job(
        id=job_id,
        kind=kind,
        label=label,
        properties=properties,
        python=python,
        toolchain=toolchain,
        toolchain_version=toolchain_version,
        toolchain_source=check.string(
            entry.get("toolchain-source", "system"), f"{path}.toolchain-source", ("system", "auto")
        ),
        config_settings=mapping("config-settings", repeatable=True),
        env=environment(),
        requires_dist=_requirements(check, texts("requires-dist"), f"{path}.requires-dist"),
        repair=repair,
        repair_exclude=texts("repair-exclude"),
        repair_isa_check=isa_check,
        repair_library_path=library_path,
        accelerator_runtime=check.string(
            entry.get("accelerator-runtime", "exclude"),
            f"{path}.accelerator-runtime",
            ("exclude", "bundle"),
        ),
        max_size_mb=_positive(check, entry.get("max-size-mb", 100.0), f"{path}.max-size-mb"),
        oversize=check.string(entry.get("oversize", "fail"), f"{path}.oversize", ("fail", "warn")),
        compression=compression,
        axes=tuple(sorted((k, v) for k, v in context.items() if k != "python")),
        runner=text("runner") or "ubuntu-latest",
        manylinux_image=_image_name(check, text("manylinux-image"), f"{path}.manylinux-image"),
        before_build=_before_build(check, render, entry.get("before-build", []), path, context),
        cuda_components=components,
        compiler_cache=check.string(
            entry.get("compiler-cache", "auto"), f"{path}.compiler-cache", COMPILER_CACHES
        ),
        test_command=_test_command(check, render, entry.get("test-command"), path, context),
        test_requires=_requirements(check, texts("test-requires"), f"{path}.test-requires"),
        source_date_epoch=epoch,
    )


def _settings_json(pairs: Sequence[tuple[str, str]]) -> dict[str, str | list[str]]:
    """Config settings as a table: a key given several times maps to the list."""
    table: dict[str, list[str]] = {}
    for key, value in pairs:
        table.setdefault(key, []).append(value)
    return {key: values[0] if len(values) == 1 else values for key, values in table.items()}


def _before_build(
    check: _Checker, render: _Renderer, value: Any, path: str, context: Mapping[str, str]
) -> tuple[str | tuple[str, ...], ...]:
    """``before-build``: a list whose items are shell strings (run with ``sh -c``) or
    argv lists; a single string is a list of one."""
    where = f"{path}.before-build"
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list):
        raise check.fail(where, "expected a command string or a list of commands")
    steps: list[str | tuple[str, ...]] = []
    for i, item in enumerate(items):
        if isinstance(item, str):
            steps.append(render(item, context, f"{where}[{i}]"))
        elif isinstance(item, list) and item and all(isinstance(a, str) for a in item):
            steps.append(
                tuple(render(a, context, f"{where}[{i}][{j}]") for j, a in enumerate(item))
            )
        else:
            raise check.fail(
                f"{where}[{i}]",
                "expected a shell command string or a non-empty argv list of strings",
            )
    return tuple(steps)


def _test_command(
    check: _Checker, render: _Renderer, value: Any, path: str, context: Mapping[str, str]
) -> str | tuple[str, ...] | None:
    """``test-command``: a shell string (``sh -c``) or a non-empty argv list; only the
    placeholders {project} and {wheel} (a misspelt one is an error, ``${VAR}`` is not)."""
    where = f"{path}.test-command"
    if value is None:
        return None
    if isinstance(value, str):
        parts = [(where, render(value, context, where))]
    elif isinstance(value, list) and value and all(isinstance(a, str) for a in value):
        parts = [
            (f"{where}[{i}]", render(a, context, f"{where}[{i}]")) for i, a in enumerate(value)
        ]
    else:
        raise check.fail(
            where, "expected a shell command string or a non-empty argv list of strings"
        )
    for at, text in parts:
        if "\0" in text:
            raise check.fail(at, "the command contains NUL")
        for name in _PLACEHOLDER.findall(text):
            if name not in TEST_PLACEHOLDERS:
                raise check.fail(
                    at,
                    f"unknown placeholder {{{name}}}{_did_you_mean(name, TEST_PLACEHOLDERS)}; "
                    "expected {project} (the project directory) or {wheel} (the wheel's path)",
                )
    if isinstance(value, str):
        return parts[0][1]
    return tuple(text for _, text in parts)


_PYTHON = re.compile(r"3(\.[0-9]{1,3}t?)?")


def _pythons(check: _Checker, value: Any, path: str) -> list[str]:
    """Python versions: ``3`` (the running one) or ``3.X`` (``3.Xt``: free-threaded);
    they become an interpreter's name (``python3.X``), so nothing else is accepted."""
    pythons = check.strings(value, path)
    for i, python in enumerate(pythons):
        if not _PYTHON.fullmatch(python):
            raise check.fail(f"{path}[{i}]", f"expected 3 or a version 3.X, got {python!r}")
    return pythons


_IMAGE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:@+-]{0,254}")


def _image_name(check: _Checker, image: str | None, path: str) -> str | None:
    """A container image reference (``registry/name:tag``, ``…@sha256:…``)."""
    if image is not None and not _IMAGE.fullmatch(image):
        raise check.fail(path, f"expected a container image name like name:tag, got {image!r}")
    return image


def _requirements(check: _Checker, texts: tuple[str, ...], path: str) -> tuple[str, ...]:
    """PEP 508 requirements: they are written into the wheel's METADATA."""
    from packaging.requirements import InvalidRequirement, Requirement

    for i, text in enumerate(texts):
        try:
            Requirement(text)
        except InvalidRequirement as err:
            reason = str(err).splitlines()[0]
            raise check.fail(
                f"{path}[{i}]", f"expected a PEP 508 requirement, got {text!r} ({reason})"
            ) from None
    return texts


MAX_SIZE_MB = 2**20  # 1 TiB: more is a typo (and float() of a huge int fails)


def _positive(check: _Checker, value: Any, path: str) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not 0 < value <= MAX_SIZE_MB:  # NaN fails the comparison
        shown = repr(value) if len(repr(value)) < 40 else f"{repr(value)[:20]}…"
        raise check.fail(
            path, f"expected a positive number of megabytes, got {shown} (at most {MAX_SIZE_MB})"
        )
    return float(value)


def _check_labels(check: _Checker, jobs: Sequence[Job], origin: Mapping[str, str]) -> None:
    by_label: dict[str, Job] = {}
    for job in jobs:
        if job.label is None:
            continue
        other = by_label.setdefault(job.label, job)
        if other.properties != job.properties:
            raise check.fail(
                origin[job.id],
                f"label {job.label!r} of job {job.id!r} has other properties than "
                f"job {other.id!r}; expected one property set per label",
            )
