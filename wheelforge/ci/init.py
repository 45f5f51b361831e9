"""``wheelforge init``: scaffold a project's matrix file and its GitHub Actions workflow
from the jinja2 templates in ``wheelforge/templates/ci``."""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wheelforge import __version__
from wheelforge.errors import InvalidInput
from wheelforge.fsutil import atomic_write

ACCELERATORS = ("cpu", "cuda", "rocm")
BUILDERS = ("build", "cibuildwheel")
VARIANT_INDEXES = ("pages", "none")
MATRIX_PATH = "matrix/wheelforge.toml"
WORKFLOW_PATH = ".github/workflows/wheels.yml"
RELEASE_PATH = ".github/workflows/release.yml"
_VERSION = re.compile(r"\d+\.\d+")
_LEVEL = re.compile(r"v[1-4]")
_GFX = re.compile(r"gfx[0-9a-f]+")


@dataclass(frozen=True)
class InitOptions:
    project_name: str
    accelerators: tuple[str, ...] = ("cpu", "cuda")
    cuda: tuple[str, ...] = ("12.8", "13.0")
    rocm: tuple[str, ...] = ("6.4",)
    gfx_archs: tuple[str, ...] = ("gfx90a", "gfx942")
    cpu_levels: tuple[str, ...] = ("v3",)
    pythons: tuple[str, ...] = ("3.11", "3.12", "3.13")
    builder: str = "cibuildwheel"
    variant_index: str = "pages"
    cache: bool = True
    ci_python: str = "3.12"
    wheelforge_requirement: str = f"wheelforge=={__version__}"
    cibuildwheel_requirement: str = "cibuildwheel>=2.22"
    uv_requirement: str = "uv>=0.13"  # wheelforge test installs each wheel with uv
    extra: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        def bad(option: str, value: str, expected: str) -> InvalidInput:
            return InvalidInput(f"--{option} {value}: expected {expected}")

        check_project_name(self.project_name, "project name")
        if not _VERSION.fullmatch(self.ci_python):
            raise InvalidInput(f"CI Python {self.ci_python!r}: expected a version like 3.12")
        for what, requirement in (
            ("wheelforge requirement", self.wheelforge_requirement),
            ("cibuildwheel requirement", self.cibuildwheel_requirement),
            ("uv requirement", self.uv_requirement),
        ):
            _check_requirement(what, requirement)

        for accelerator in self.accelerators:
            if accelerator not in ACCELERATORS:
                raise bad("accelerators", accelerator, f"one of {', '.join(ACCELERATORS)}")
        if not self.accelerators:
            raise InvalidInput("--accelerators: expected at least one of cpu, cuda, rocm")
        for option, values, pattern, example in (
            ("cuda", self.cuda, _VERSION, "a version like 12.8"),
            ("rocm", self.rocm, _VERSION, "a version like 6.4"),
            ("python", self.pythons, _VERSION, "a version like 3.12"),
            ("cpu-levels", self.cpu_levels, _LEVEL, "v1, v2, v3 or v4"),
            ("gfx-archs", self.gfx_archs, _GFX, "a name like gfx942"),
        ):
            for value in values:
                if not pattern.fullmatch(value):
                    raise bad(option, value, example)
        if self.builder not in BUILDERS:
            raise bad("builder", self.builder, " or ".join(BUILDERS))
        if self.variant_index not in VARIANT_INDEXES:
            raise bad("variant-index", self.variant_index, " or ".join(VARIANT_INDEXES))


def render(options: InitOptions, project_path: str = "..") -> dict[str, str]:
    """The files to write, by path relative to the project: matrix and workflow."""
    options.validate()
    axes: dict[str, list[str]] = {}
    namespaces = []
    if "cuda" in options.accelerators:
        axes["cuda"] = list(options.cuda)
        namespaces.append("nvidia")
    if "rocm" in options.accelerators:
        axes["rocm"] = list(options.rocm)
        namespaces.append("amd")
    if "cpu" in options.accelerators and options.cpu_levels:
        axes["cpu_level"] = list(options.cpu_levels)
    namespaces.append("x86_64")
    context = {
        "generator": f"wheelforge {__version__}",
        "project_name": options.project_name,  # validated, and written with | toml_str
        "project_path": project_path,
        "matrix_path": MATRIX_PATH,
        "pythons": list(options.pythons),
        "namespaces": namespaces,
        "axes": axes,
        "gfx_properties": [f"amd :: gfx_arch :: {g}" for g in options.gfx_archs],
        "builder": options.builder,
        "variant_index": options.variant_index,
        "cache": options.cache,
        "ci_python": options.ci_python,
        "wheelforge_requirement": options.wheelforge_requirement,
        "cibuildwheel_requirement": options.cibuildwheel_requirement,
        "uv_requirement": options.uv_requirement,
        "import_name": options.project_name.replace("-", "_").replace(".", "_").lower(),
    }
    return {
        MATRIX_PATH: _render("wheelforge.toml.j2", context),
        WORKFLOW_PATH: _render("wheels.yml.j2", {**context, "release": False}),
        RELEASE_PATH: _render("wheels.yml.j2", {**context, "release": True}),
    }


def write(project: Path, options: InitOptions, *, force: bool = False) -> list[Path]:
    """Render, check that the matrix is valid, then write both files (none is replaced
    without ``force``)."""
    import tomllib

    from wheelforge.matrix import parse_matrix

    files = render(options)
    targets = {project / relative: text for relative, text in files.items()}
    existing = [str(path) for path in targets if path.exists()]
    if existing and not force:
        raise InvalidInput(
            f"{', '.join(existing)}: already exists; nothing was written (--force replaces)"
        )
    matrix_file = project / MATRIX_PATH
    # A template bug must not reach the user: the matrix must read back.
    parse_matrix(tomllib.loads(files[MATRIX_PATH]), source=matrix_file)
    for path, text in targets.items():
        atomic_write(path, text.encode())
    return list(targets)


def project_name(project: Path) -> str:
    """The project's name from its pyproject.toml, else the directory's; either must be
    a valid project name (it goes into the generated files)."""
    import tomllib

    pyproject = project / "pyproject.toml"
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
        name = data["project"]["name"]
    except (OSError, KeyError, TypeError, tomllib.TOMLDecodeError):
        name = project.resolve().name
        return check_project_name(name, f"{project.resolve()}: the directory's name")
    if not isinstance(name, str):
        raise InvalidInput(f"{pyproject}: project.name: expected a string")
    return check_project_name(name, f"{pyproject}: project.name")


def check_project_name(name: str, where: str) -> str:
    """``name`` if it is a valid project name (PEP 508: letters, digits, ``.``, ``_``
    and ``-``, beginning and ending with a letter or digit)."""
    from packaging.utils import InvalidName, canonicalize_name

    try:
        canonicalize_name(name, validate=True)
        if name.endswith("\n"):  # older packaging's check ends in '$', which allows one
            raise InvalidName(name)
    except InvalidName:
        raise InvalidInput(
            f"{where}: {name!r}: expected a project name (letters, digits, '.', '_' and "
            "'-', beginning and ending with a letter or digit)"
        ) from None
    return name


def _check_requirement(what: str, requirement: str) -> None:
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        Requirement(requirement)
    except InvalidRequirement as err:
        reason = str(err).splitlines()[0]
        raise InvalidInput(f"{what} {requirement!r}: expected a requirement ({reason})") from None
    if "${{" in requirement or "\n" in requirement:  # a GitHub expression, a new line
        raise InvalidInput(
            f"{what} {requirement!r}: expected a requirement without '${{{{' or a line break"
        )


@functools.cache
def _environment() -> Any:
    import jinja2

    from wheelforge.templating import sandboxed, toml_string, yaml_string

    # GitHub's own ${{ }} stays literal: wheelforge's templates use [[ ]] and [% %].
    environment = sandboxed(
        loader=jinja2.PackageLoader("wheelforge", "templates/ci"),
        variable_start_string="[[",
        variable_end_string="]]",
        block_start_string="[%",
        block_end_string="%]",
        comment_start_string="[#",
        comment_end_string="#]",
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,  # YAML and TOML, not HTML: strings go through these filters
    )
    environment.filters["toml_str"] = toml_string
    environment.filters["yaml_str"] = yaml_string
    return environment


def _render(template: str, context: dict[str, Any]) -> str:
    text: str = _environment().get_template(template).render(**context)
    return text


def parse_list(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def interactive() -> bool:
    return os.isatty(0)
