"""The command line: parse, call a stage, render, map errors to exit codes."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from wheelforge import __version__
from wheelforge.cli import ci, isa, publish, select, smoke
from wheelforge.errors import InvalidInput, WheelforgeError
from wheelforge.render import emit_json, human_size, info, job_progress, table
from wheelforge.variants.metadata import SCHEMA_BY_NAME, Schema

if TYPE_CHECKING:
    from wheelforge.matrix import Job

# Stage modules are imported by the command that needs them: start-up time counts
# when tagging a wheel costs about as much as copying it.


def _schema(value: str) -> Schema:
    try:
        return SCHEMA_BY_NAME[value]
    except KeyError:
        raise argparse.ArgumentTypeError(
            f"unknown schema {value!r}: expected one of {', '.join(SCHEMA_BY_NAME)}"
        ) from None


def add_schema_option(parser: argparse.ArgumentParser, *, what: str = "metadata") -> None:
    parser.add_argument(
        "--schema",
        type=_schema,
        default=Schema.PROVIDERS_V0_2_0,
        metavar="NAME",
        help=f"schema generation of the {what} written: {', '.join(SCHEMA_BY_NAME)} "
        "(default: providers-v0.2.0, what uv needs)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wheelforge",
        description="Build, tag, check and publish variant wheels (PEP 825 wheel variants).",
    )
    parser.add_argument("--version", action="version", version=f"wheelforge {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument(
        "--max-metadata-mb",
        metavar="MB",
        help="largest METADATA, RECORD, variant.json or zip directory read (default: 16; "
        "also WHEELFORGE_MAX_METADATA_MB)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    tag = sub.add_parser(
        "tag",
        help="turn a plain wheel into a variant wheel",
        description="Add *.dist-info/variant.json, append the label to the filename and "
        "update RECORD. Every other member is copied as its stored compressed bytes.",
    )
    tag.add_argument("wheel", type=Path, help="the plain wheel")
    tag.add_argument(
        "-p",
        "--property",
        dest="properties",
        action="append",
        default=[],
        metavar="'NS :: FEATURE :: VALUE'",
        help="a variant property (repeatable)",
    )
    label = tag.add_mutually_exclusive_group()
    label.add_argument("--label", help="the variant label (default: the hash of the properties)")
    label.add_argument("--null", action="store_true", help="make the null variant (no properties)")
    tag.add_argument(
        "--variant-config",
        type=Path,
        metavar="FILE",
        help="TOML file with a [variant] table (pyproject-style) or a matrix file giving "
        "providers and namespace priorities (default: the built-in presets for "
        "nvidia, amd, x86_64, aarch64)",
    )
    tag.add_argument(
        "--requires-dist",
        action="append",
        default=[],
        metavar="REQ",
        help="add a Requires-Dist line to this variant's METADATA (repeatable)",
    )
    tag.add_argument("-o", "--out", type=Path, required=True, metavar="OUTDIR")
    tag.add_argument(
        "--force",
        action="store_true",
        help="replace a different file of the same name in OUTDIR (identical: left as is)",
    )
    tag.add_argument("--verify", action="store_true", help="check every RECORD hash first")
    add_schema_option(tag)
    tag.add_argument("--json", action="store_true", help="print the result as JSON")

    untag = sub.add_parser(
        "untag",
        help="turn a variant wheel back into a plain wheel",
        description="Remove variant.json and the label. Requirements added with "
        "--requires-dist stay in METADATA.",
    )
    untag.add_argument("wheel", type=Path)
    untag.add_argument("-o", "--out", type=Path, required=True, metavar="OUTDIR")
    untag.add_argument(
        "--force",
        action="store_true",
        help="replace a different file of the same name in OUTDIR (identical: left as is)",
    )
    untag.add_argument("--verify", action="store_true", help="check every RECORD hash first")
    untag.add_argument("--json", action="store_true", help="print the result as JSON")

    inspect = sub.add_parser(
        "inspect",
        help="show what wheels are and whether their RECORD verifies",
        description="Name, version, tags, label, properties, schema generation, compression "
        "per member group and RECORD verification, for a wheel or every wheel in a directory.",
    )
    inspect.add_argument("path", type=Path, metavar="WHEEL|DIR")
    inspect.add_argument(
        "--no-verify",
        action="store_true",
        help="skip hash verification (only check that RECORD lists every member)",
    )
    inspect.add_argument("--json", action="store_true", help="print the reports as JSON")

    vjson = sub.add_parser(
        "variants-json",
        help="write or check {name}-{version}-variants.json files",
        description="For each release in DIR, merge its wheels' variant.json files into "
        "{name}-{version}-variants.json (or, with --check, verify the existing ones).",
    )
    vjson.add_argument("directory", type=Path, metavar="DIR")
    vjson.add_argument("--check", action="store_true", help="verify instead of writing")
    add_schema_option(vjson)
    vjson.add_argument("--json", action="store_true", help="print the result as JSON")

    plan = sub.add_parser(
        "plan",
        help="list the build jobs of a matrix",
        description="Expand a matrix file into its build jobs. --format github prints the "
        '{"include": [...]} object for a GitHub Actions strategy.matrix; each entry runs as '
        "'wheelforge build --matrix FILE --only ID'.",
    )
    plan.add_argument(
        "--matrix",
        type=Path,
        required=True,
        metavar="FILE",
        help="a matrix file (matrix/*.toml) or a pyproject.toml with [tool.wheelforge]",
    )
    plan.add_argument(
        "--format",
        choices=("table", "json", "github", "cibuildwheel"),
        default="table",
        help="github: a strategy.matrix (runner, image, cache key per job); cibuildwheel: "
        "each job's CIBW_* environment",
    )
    plan.add_argument(
        "--pull-request",
        action="store_true",
        help="with --format github: a reduced matrix, one job per kind and toolchain",
    )
    plan.add_argument(
        "--allow-runner",
        action="append",
        default=[],
        metavar="LABEL",
        help="with --pull-request: a runner label the matrix may choose besides GitHub-hosted "
        "ones (ubuntu-*, windows-*, macos-*) (repeatable)",
    )
    plan.add_argument(
        "--json", action="store_const", dest="format", const="json", help="same as --format json"
    )

    build = sub.add_parser(
        "build",
        help="build, repair, tag and compress every variant of a matrix",
        description="For each job: a PEP 517 build (isolated, its own build directory), "
        "auditwheel repair, tag, compress; wheels, a manifest and the variants file go to "
        "--out. Unchanged jobs come from the build cache.",
    )
    build.add_argument(
        "--matrix",
        type=Path,
        required=True,
        metavar="FILE",
        help="a matrix file (matrix/*.toml) or a pyproject.toml with [tool.wheelforge]",
    )
    build.add_argument(
        "--only",
        action="extend",
        nargs="+",
        default=[],
        metavar="ID",
        help="build only these jobs (--only a b, or --only a --only b)",
    )
    build.add_argument(
        "-j",
        "--jobs",
        type=int,
        default=default_build_jobs(),
        metavar="N",
        help="jobs run in parallel (default: the number of CPUs, at most 4; here "
        f"{default_build_jobs()}); every job builds in its own source copy",
    )
    build.add_argument(
        "--skip-unavailable",
        action="store_true",
        help="build the other jobs when a job's toolchain (nvcc, hipcc) is missing and cannot "
        "be fetched, and list what was skipped (default: an error before anything is built)",
    )
    build.add_argument(
        "--keep-going", action="store_true", help="finish the other jobs when one fails"
    )
    build.add_argument(
        "--out", type=Path, default=Path("dist"), help="output directory (default: dist)"
    )
    build.add_argument(
        "--no-cache", action="store_true", help="rebuild everything (still refreshes the cache)"
    )
    build.add_argument(
        "--cache-dir",
        type=Path,
        metavar="DIR",
        help="build cache (default: $WHEELFORGE_CACHE_DIR or ~/.cache/wheelforge)",
    )
    build.add_argument(
        "--work-dir",
        type=Path,
        default=Path(".wheelforge"),
        metavar="DIR",
        help="build directories and logs (default: .wheelforge)",
    )
    build.add_argument(
        "--builder",
        choices=("build", "cibuildwheel"),
        default="build",
        help="build here with 'build' (PEP 517, default), or in manylinux containers with "
        "cibuildwheel (CI runners with Docker)",
    )
    build.add_argument(
        "--no-test", action="store_true", help="skip the matrix's test-command (wheelforge test)"
    )
    build.add_argument("--json", action="store_true", help="print the results as JSON")

    repair = sub.add_parser(
        "repair",
        help="auditwheel repair with accelerator-aware policies",
        description="Repair a plain wheel with auditwheel. Driver libraries (libcuda.so.1, "
        "libnvidia-ml.so.1, libamdhip64, libhsa-runtime64, ...) are always excluded; CUDA "
        "runtime libraries are excluded with a matching Requires-Dist, or bundled. A GPU "
        "library grafted anyway fails the repair.",
    )
    repair.add_argument("wheel", type=Path, help="the plain wheel (repair before tagging)")
    repair.add_argument("-o", "--out", type=Path, required=True, metavar="OUTDIR")
    repair.add_argument(
        "--exclude",
        action="extend",
        nargs="+",
        default=[],
        metavar="SONAME",
        help="never graft SONAME (several values, or the flag repeated)",
    )
    repair.add_argument(
        "--library-path",
        action="extend",
        nargs="+",
        default=[],
        metavar="DIR",
        help="also search DIR for libraries to graft; {wheel}/PATH is PATH in the wheel "
        "(several values, or the flag repeated)",
    )
    repair.add_argument(
        "--runtime",
        choices=("exclude", "bundle"),
        default="exclude",
        help="CUDA runtime libraries: exclude and declare the PyPI package (default), or bundle",
    )
    repair.add_argument(
        "--cuda-version",
        metavar="X.Y",
        help="CUDA version for runtime requirements (default: from the library's soname)",
    )
    repair.add_argument(
        "--no-isa-check",
        action="store_true",
        help="allow x86-64-v2+ instructions (CPU-level variants: their label carries it)",
    )
    repair.add_argument(
        "--max-size-mb", type=float, default=100.0, help="size limit (default: PyPI's 100 MB)"
    )
    repair.add_argument(
        "--oversize",
        choices=("fail", "warn"),
        default="fail",
        help="what a wheel over the limit does",
    )
    repair.add_argument(
        "--log",
        type=Path,
        metavar="FILE",
        help="auditwheel's output (default: .wheelforge/logs/repair-NAME.log)",
    )
    repair.add_argument("--json", action="store_true", help="print the report as JSON")
    comp = sub.add_parser(
        "compress",
        help="recompress wheels' members with zstd or deflate, in parallel",
        description="Recompress every payload member with the codec (zip method 93 for "
        "zstd) on -j threads; .dist-info members stay deflate. A member that already has "
        "the codec is copied as its compressed bytes unless --level is given (a zip does "
        "not record levels, so --level re-encodes every payload member). The output is "
        "byte-reproducible and, unless --no-verify, read back with Python 3.14's zipfile "
        "and compared with the input. A wheel that pip on CPython < 3.14 could pick (no "
        "variant label, not tagged for 3.14+) is never made zstd unless --force.",
    )
    comp.add_argument("path", type=Path, metavar="WHEEL|DIR")
    comp.add_argument("--codec", choices=("zstd", "deflate"), required=True)
    comp.add_argument(
        "--level",
        type=int,
        metavar="N",
        help="compression level (default: zstd 10, deflate 6); re-encodes every payload member",
    )
    comp.add_argument(
        "-j",
        "--jobs",
        type=int,
        metavar="N",
        help="threads (default: every CPU this process may use); the output does not depend on it",
    )
    comp_out = comp.add_mutually_exclusive_group(required=True)
    comp_out.add_argument("-o", "--out", type=Path, metavar="OUTDIR")
    comp_out.add_argument(
        "--in-place", action="store_true", help="replace each wheel (once verified)"
    )
    comp.add_argument(
        "--force",
        action="store_true",
        help="make zstd even a wheel that pip on CPython < 3.14 could pick (warns), and "
        "replace a different file of the same name in OUTDIR",
    )
    comp.add_argument("--no-verify", action="store_true", help="skip reading the output back")
    comp.add_argument("--json", action="store_true", help="print the results as JSON")
    diff = sub.add_parser(
        "diff",
        help="compare two wheels or two dist directories (reproducibility)",
        description="Which members differ and how (sizes; ELF sections), with a hint for "
        "known causes (nvcc temp names, build paths, timestamps). Directories: wheels are "
        "paired by filename. Exit 0: identical, 1: they differ, 2: bad input.",
    )
    diff.add_argument("a", type=Path, metavar="A", help="a wheel or a directory")
    diff.add_argument("b", type=Path, metavar="B", help="a wheel or a directory")
    diff.add_argument("--json", action="store_true", help="print the report as JSON")
    COMMANDS.update(publish.add_commands(sub))
    COMMANDS.update(select.add_commands(sub))
    COMMANDS.update(ci.add_commands(sub))
    COMMANDS.update(smoke.add_commands(sub))
    COMMANDS.update(isa.add_commands(sub))
    return parser


def _cmd_repair(args: argparse.Namespace) -> int:
    import os

    from wheelforge.cli.publish import size_limit
    from wheelforge.repair import check_size, repair_wheel

    limit = size_limit(args.max_size_mb)
    log_path = args.log or Path(".wheelforge") / "logs" / f"repair-{args.wheel.stem}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", encoding="utf-8") as log:
        repaired, report = repair_wheel(
            args.wheel,
            args.out,
            exclude=args.exclude,
            isa_check=not args.no_isa_check,
            runtime=args.runtime,
            cuda_version=args.cuda_version,
            library_path=args.library_path,
            env=os.environ,
            log=log,
            log_path=log_path,
        )
    warning = check_size(repaired, limit=limit, action=args.oversize)
    if args.json:
        emit_json(report.to_json() | {"warning": warning})
    else:
        table(
            ["library", "kind", "action", "requires-dist"],
            [
                [lib.soname, lib.kind, lib.action, lib.requirement or "-"]
                for lib in report.libraries
            ],
        )
        for fix in report.runpaths:
            print(fix.describe())
        print(repaired)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def _settings(job: Job) -> str:
    """What a job's build is given, in one line: ``cmake.define.X=Y, env: A=B``."""
    parts = [f"{key}={value}" for key, value in job.config_settings]
    if job.env:
        parts.append("env: " + " ".join(f"{key}={value}" for key, value in job.env))
    if not job.source_date_epoch:
        parts.append("no SOURCE_DATE_EPOCH")
    return ", ".join(parts)


def _cmd_plan(args: argparse.Namespace) -> int:
    from wheelforge.matrix import load_matrix

    matrix = load_matrix(args.matrix)
    if args.format == "json":
        emit_json([job.to_json() for job in matrix.jobs])
    elif args.format == "github":
        from wheelforge.ci.plan import github_matrix

        plan = github_matrix(
            matrix.jobs, pull_request=args.pull_request, allowed_runners=args.allow_runner
        )
        print(json.dumps(plan, separators=(",", ":")))
    elif args.format == "cibuildwheel":
        from wheelforge.ci.plan import cibuildwheel_plan

        emit_json(cibuildwheel_plan(matrix.jobs))
    else:
        headers = ["job", "kind", "label", "properties", "toolchain", "python", "compression"]
        rows = [
            [
                job.id,
                job.kind,
                job.label or "-",
                "; ".join(sorted(map(str, job.properties))),
                job.toolchain,
                job.python,
                job.compression,
            ]
            for job in matrix.jobs
        ]
        settings = [_settings(job) for job in matrix.jobs]
        if any(settings):  # the merged config-settings and env, [defaults] included
            headers.append("settings")
            for row, text in zip(rows, settings, strict=True):
                row.append(text or "-")
        table(headers, rows)
    return 0


def _cmd_build(args: argparse.Namespace) -> int:
    from wheelforge.build.cache import default_cache_dir
    from wheelforge.build.orchestrator import (
        SDIST_JOB,
        BuildInterrupted,
        BuildOptions,
        build_jobs,
    )
    from wheelforge.matrix import load_matrix

    matrix = load_matrix(args.matrix)
    jobs = matrix.select(args.only)
    if args.jobs < 1:
        raise InvalidInput(f"-j {args.jobs}: expected at least 1")
    from wheelforge.fsutil import check_dir_option

    for option, directory in (("--out", args.out), ("--work-dir", args.work_dir),
                              ("--cache-dir", args.cache_dir)):  # fmt: skip
        if directory is not None:
            check_dir_option(directory, option)
    options = BuildOptions(
        out=args.out,
        work_dir=args.work_dir,
        cache_dir=args.cache_dir or default_cache_dir(),
        read_cache=not args.no_cache,
        workers=args.jobs,
        keep_going=args.keep_going,
        builder=args.builder,
        skip_unavailable=args.skip_unavailable,
        test=not args.no_test,
    )
    interrupted = None
    with job_progress([job.id for job in jobs], steps=[SDIST_JOB]) as progress:
        try:
            results = build_jobs(matrix, jobs, options, progress, progress.finish)
        except BuildInterrupted as err:  # report what became of each job, then exit 130
            results, interrupted = err.results, err
    if args.json:
        emit_json(
            [
                {
                    "job": r.job.id,
                    "label": r.job.label,
                    "status": r.status,
                    "seconds": round(r.seconds, 3),
                    "wheel": str(r.wheel) if r.wheel else None,
                    "size": r.wheel.stat().st_size if r.wheel else None,
                    "log": str(r.log) if r.log else None,
                    "error": r.error,
                    "compiler_cache": r.compiler_cache.to_json() if r.compiler_cache else None,
                    "test": r.test.to_json() if r.test else None,
                }
                for r in results
            ]
        )
    else:
        table(
            ["job", "label", "status", "time", "size", "compiler cache"],
            [
                [
                    r.job.id,
                    r.job.label or "plain",
                    r.status if r.ok or r.status != "failed" else f"failed (see {r.log})",
                    f"{r.seconds:.1f}s",
                    human_size(r.wheel.stat().st_size) if r.wheel else "-",
                    r.compiler_cache.summary() if r.compiler_cache else "-",
                ]
                for r in results
            ],
        )
    for r in results:
        if r.warning:
            print(f"warning: job {r.job.id}: {r.warning}", file=sys.stderr)
    for r in results:
        if r.status == "unavailable":
            print(f"warning: job {r.job.id} skipped: {r.error}", file=sys.stderr)
    failed = [r for r in results if not r.ok and r.status != "unavailable"]
    for r in failed:
        if r.error:
            print(f"error: job {r.job.id}: {r.error}", file=sys.stderr)
    if interrupted is not None:
        raise interrupted
    return 1 if failed else 0


def default_build_jobs() -> int:
    """Parallel build jobs by default: one a CPU, at most 4 (each build runs its own
    parallel compiler too)."""
    return max(
        1,
        min(
            4,
            len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity")
            else (os.cpu_count() or 1),
        ),
    )


def _cmd_tag(args: argparse.Namespace) -> int:
    from wheelforge.tag import TagRequest, load_variant_config, repeated_properties, tag_wheel
    from wheelforge.variants.config import default_config
    from wheelforge.variants.properties import VariantProperty

    config = load_variant_config(args.variant_config) if args.variant_config else default_config()
    if args.null and args.properties:
        raise InvalidInput("--null takes no properties: the null variant has none")
    if not args.null and not args.properties:
        raise InvalidInput("expected at least one -p/--property, or --null")
    for prop in repeated_properties(args.properties):
        info(f"warning: property '{prop}' given more than once; the variant holds it once")
    request = TagRequest(
        properties=frozenset(VariantProperty.parse(text) for text in args.properties),
        label=args.label,
        config=config,
        requires_dist=tuple(args.requires_dist),
        schema=args.schema,
        verify=args.verify,
    )
    output = tag_wheel(args.wheel, args.out, request, replace=args.force)
    if args.json:
        emit_json({"input": str(args.wheel), "output": str(output)})
    else:
        print(output)
    return 0


def _cmd_untag(args: argparse.Namespace) -> int:
    from wheelforge.tag import untag_wheel

    output = untag_wheel(args.wheel, args.out, verify=args.verify, replace=args.force)
    if args.json:
        emit_json({"input": str(args.wheel), "output": str(output)})
    else:
        print(output)
    return 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    from wheelforge.inspection import inspect_wheel, wheels_in

    reports = [inspect_wheel(path, verify=not args.no_verify) for path in wheels_in(args.path)]
    if args.json:
        emit_json([r.to_json() for r in reports])
    else:
        table(
            ["wheel", "version", "label", "properties", "schema", "compression", "RECORD"],
            [
                [
                    Path(r.path).name,
                    r.version,
                    r.label or "-",
                    "\n".join(r.properties) if sys.stdout.isatty() else "; ".join(r.properties),
                    r.schema or "-",
                    " ".join(
                        f"{group}:{'+'.join(methods)}"
                        for group, methods in r.compression.items()
                        if methods
                    ),
                    "ok" if r.record_ok else "FAIL",
                ]
                for r in reports
            ],
        )
    problems = [r.problem for r in reports if r.problem]
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return InvalidInput.exit_code if problems else 0


def _cmd_variants_json(args: argparse.Namespace) -> int:
    from wheelforge.variants_file import check_variants_json, write_variants_json

    if args.check:
        problems = check_variants_json(args.directory)
        if args.json:
            emit_json({"ok": not problems, "problems": problems})
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        if not problems and not args.json:
            info(f"{args.directory}: variants files match the wheels")
        return 1 if problems else 0
    written = write_variants_json(args.directory, args.schema)
    if args.json:
        emit_json([{"path": str(p), "changed": changed} for p, changed in written])
    else:
        for path, changed in written:
            print(f"{path} ({'written' if changed else 'unchanged'})")
        if not written:
            info(f"{args.directory}: no variant wheels, nothing to write")
    return 0


def _cmd_compress(args: argparse.Namespace) -> int:
    from wheelforge.compress import check_options, compress_wheel, policy_warnings
    from wheelforge.inspection import wheels_in

    check_options(args.codec, args.level, args.jobs)
    paths = wheels_in(args.path)
    for warning in policy_warnings(paths, args.codec, force=args.force):
        print(warning, file=sys.stderr)
    show = sys.stderr.isatty() and not args.json
    results = []
    for path in paths:

        def progress(done: int, total: int, name: str = path.name) -> None:
            sys.stderr.write(f"\r{name}: {100 * done // max(total, 1)}%")

        results.append(
            compress_wheel(
                path,
                path if args.in_place else args.out / path.name,
                args.codec,
                level=args.level,
                jobs=args.jobs,
                verify=not args.no_verify,
                force=args.force,
                replace=args.in_place or args.force,
                progress=progress if show else None,
            )
        )
        if show:
            sys.stderr.write("\r\033[K")
    if args.json:
        emit_json([r.to_json() for r in results])
        return 0
    table(
        ["wheel", "codec", "members", "size", "time", "verified"],
        [
            [
                str(r.output),
                f"{r.codec}-{r.level}",
                f"{r.recompressed} recompressed, {r.copied} copied",
                f"{human_size(r.size_in)} -> {human_size(r.size_out)} "
                f"({100 * r.size_out / max(r.size_in, 1):.0f}%)",
                f"{r.seconds:.1f}s (-j {r.jobs})",
                "-" if r.verify_seconds is None else f"ok ({r.verify_seconds:.1f}s)",
            ]
            for r in results
        ],
    )
    return 0


def _cmd_diff(args: argparse.Namespace) -> int:
    from wheelforge.cli.diff import render_report
    from wheelforge.diff import diff_paths

    report = diff_paths(args.a, args.b)
    if args.json:
        emit_json(report.to_json())
    else:
        render_report(report)
    return 0 if report.identical else 1


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "tag": _cmd_tag,
    "untag": _cmd_untag,
    "inspect": _cmd_inspect,
    "variants-json": _cmd_variants_json,
    "plan": _cmd_plan,
    "build": _cmd_build,
    "repair": _cmd_repair,
    "compress": _cmd_compress,
    "diff": _cmd_diff,
}


def _one_line(text: str) -> str:
    """A message as one line, whatever a file's text put into it."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.max_metadata_mb is not None:
            from wheelforge.wheel.archive import set_metadata_cap

            set_metadata_cap(args.max_metadata_mb)
        return COMMANDS[args.command](args)
    except WheelforgeError as err:
        if args.debug:
            raise
        print(f"error: {_one_line(err.message)}", file=sys.stderr)
        if err.hint:
            print(f"hint: {_one_line(err.hint)}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. piped into head: the reader has what it wanted
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - no flush error at exit
        return 0
