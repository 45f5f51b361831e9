"""The CI commands: init (scaffold a matrix and a GitHub Actions workflow), merge (what
the build jobs uploaded, in the publish job)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from wheelforge.render import emit_json, info, table

Handler = Callable[[argparse.Namespace], int]
if TYPE_CHECKING:
    SubParsers: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]


def add_commands(sub: SubParsers) -> dict[str, Handler]:
    return {"init": _add_init(sub), "merge": _add_merge(sub)}


def _add_init(sub: SubParsers) -> Handler:
    init = sub.add_parser(
        "init",
        help="scaffold matrix/wheelforge.toml and .github/workflows/wheels.yml",
        description="Write a matrix of variants and a GitHub Actions workflow that plans the "
        "jobs, builds each variant on its own runner (cibuildwheel in manylinux images with "
        "the toolchain inside, or 'build'), caches toolchains per variant, merges and checks "
        "the release set, and on a tag publishes it with trusted publishing: the fallbacks to "
        "PyPI, the variant set to a static variant index on GitHub Pages. Pull requests build "
        "a reduced matrix. Asks for what the flags do not say when run on a terminal.",
    )
    init.add_argument("--project", type=Path, default=Path("."), metavar="DIR")
    init.add_argument("--accelerators", metavar="LIST", help="cpu,cuda,rocm (default cpu,cuda)")
    init.add_argument("--cuda", metavar="LIST", help="CUDA versions (default 12.8,13.0)")
    init.add_argument("--rocm", metavar="LIST", help="ROCm versions (default 6.4)")
    init.add_argument("--gfx-archs", metavar="LIST", help="AMD GPU targets (default gfx90a,gfx942)")
    init.add_argument("--cpu-levels", metavar="LIST", help="x86-64 levels (default v3)")
    init.add_argument("--python", metavar="LIST", help="Python versions (default 3.11,3.12,3.13)")
    init.add_argument("--builder", choices=("cibuildwheel", "build"), default=None)
    init.add_argument(
        "--variant-index", choices=("pages", "none"), default=None,
        help="publish the variant set to GitHub Pages (default) or not",
    )  # fmt: skip
    init.add_argument("--no-cache", action="store_true", help="no toolchain cache in CI")
    init.add_argument("--force", action="store_true", help="replace existing files")
    init.add_argument("--yes", action="store_true", help="never ask: defaults for the rest")
    init.add_argument("--json", action="store_true", help="print the files written as JSON")
    return _cmd_init


_QUESTIONS = (
    ("accelerators", "Accelerators (cpu, cuda, rocm)", "cpu,cuda"),
    ("cuda", "CUDA versions", "12.8,13.0"),
    ("rocm", "ROCm versions", "6.4"),
    ("python", "Python versions", "3.11,3.12,3.13"),
)


def _cmd_init(args: argparse.Namespace) -> int:
    from wheelforge.ci.init import InitOptions, interactive, parse_list, project_name, write

    answers: dict[str, str] = {}
    ask = interactive() and not args.yes and not args.json
    for key, question, default in _QUESTIONS:
        given = getattr(args, key)
        if given is None and ask:
            relevant = key in ("accelerators", "python") or key in answers.get(
                "accelerators", default
            )
            if relevant:
                given = input(f"{question} [{default}]: ").strip() or default
        answers[key] = given if given is not None else default
    defaults = InitOptions(project_name(args.project))
    options = InitOptions(
        project_name=defaults.project_name,
        accelerators=parse_list(answers["accelerators"]),
        cuda=parse_list(answers["cuda"]),
        rocm=parse_list(answers["rocm"]),
        gfx_archs=parse_list(args.gfx_archs) if args.gfx_archs else defaults.gfx_archs,
        cpu_levels=parse_list(args.cpu_levels) if args.cpu_levels else defaults.cpu_levels,
        pythons=parse_list(answers["python"]),
        builder=args.builder or defaults.builder,
        variant_index=args.variant_index or defaults.variant_index,
        cache=not args.no_cache,
    )
    written = write(args.project, options, force=args.force)
    if args.json:
        emit_json([str(path) for path in written])
        return 0
    for path in written:
        print(path)
    info(
        "next: review the matrix's config-settings, 'wheelforge plan --matrix "
        f"{written[0]}', then commit them (see docs/github-actions.md in wheelforge)"
    )
    return 0


def _add_merge(sub: SubParsers) -> Handler:
    from wheelforge.cli import add_schema_option

    merge = sub.add_parser(
        "merge",
        help="merge the dist/ directories of separate CI jobs into one release set",
        description="Combine the wheels, sdists and manifests of each DIR (one build job's "
        "dist/, e.g. artifacts/*) into --out. A file several jobs hold with the same sha256 "
        "is kept once; the same name with other content, or manifest entries that disagree, "
        "are errors naming both directories. The variants file is written from the merged "
        "wheels, once each job's own variants file agrees with it. --out is written whole "
        "or not at all; re-running into the same --out changes nothing.",
    )
    merge.add_argument("dirs", type=Path, nargs="+", metavar="DIR", help="a job's dist/")
    merge.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="DIR",
        help="the merged release set: new, empty, or from an identical earlier merge",
    )
    add_schema_option(merge, what="variants files made from the wheels")
    merge.add_argument("--json", action="store_true", help="print the result as JSON")
    return _cmd_merge


def _cmd_merge(args: argparse.Namespace) -> int:
    from wheelforge.ci.merge import merge_dists

    result = merge_dists(args.dirs, args.out, schema=args.schema)
    if args.json:
        emit_json(result.to_json())
        return 0
    rows = [[name, ", ".join(map(str, dirs))] for name, dirs in result.files.items()]
    if result.manifest is not None:
        rows.append([result.manifest.name, "(merged manifests)"])
    rows += [[path.name, "(written from the wheels)"] for path in result.variants_files]
    table(["file", "sources"], rows)
    collapsed = f"{result.collapsed} identical duplicate{'s' * (result.collapsed != 1)} collapsed"
    what = "unchanged (it already held this merge)" if result.unchanged else "written"
    info(
        f"{result.out}: {what}: {len(result.files)} files from {len(args.dirs)} "
        f"directories, {collapsed}"
    )
    return 0
