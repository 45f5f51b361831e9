"""The publishing commands: check, index, serve, publish."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from wheelforge.errors import InvalidInput
from wheelforge.render import emit_json, info, table

if TYPE_CHECKING:
    from wheelforge.publish.check import CheckReport
    from wheelforge.publish.index import ProjectLinks
    from wheelforge.publish.release import Artifact

Handler = Callable[[argparse.Namespace], int]


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> dict[str, Handler]:
    check = sub.add_parser(
        "check",
        help="verify a release set before anything is published",
        description="Check every wheel, sdist and variants file in DIST and the set they form: "
        "filenames, RECORD hashes, variant.json against labels, one label per property set, "
        "the variants file against the wheels, METADATA agreement, a fallback, the zstd "
        "policy, core metadata as twine judges it, and per-file size limits.",
    )
    check.add_argument("dist", type=Path, metavar="DIST")
    _add_check_options(check)
    _add_against_option(check)
    check.add_argument(
        "--published-there",
        action="store_true",
        help="the plain wheels and sdist are published on each --against index: the project "
        "and each of those files must be there",
    )
    check.add_argument("--json", action="store_true", help="print the findings as JSON")

    index = sub.add_parser(
        "index",
        help="write or extend a static variant index",
        description="Check DIST, then add it to the static index SITE: PEP 503 HTML and "
        "PEP 691 JSON pages, PEP 658/714 .metadata files, #sha256= fragments, "
        "data-requires-python and the release's variants file (made from the wheels when "
        "DIST has none, merged with the one SITE has). Pages are swapped in atomically.",
    )
    index.add_argument("dist", type=Path, metavar="DIST")
    index.add_argument("--out", type=Path, required=True, metavar="SITE")
    index.add_argument("--no-check", action="store_true", help="skip 'wheelforge check'")
    _add_link_options(index)
    _add_check_options(index)
    _add_schema_option(index)
    index.add_argument("--json", action="store_true", help="print the result as JSON")

    serve = sub.add_parser(
        "serve",
        help="serve a static index on 127.0.0.1 (for testing)",
        description="Serve SITE with PEP 691 content negotiation (JSON or HTML by the "
        "Accept header, or ?format=). No directory listings, dot-files or symlinks out of "
        "SITE; idle connections are closed. Stops on Ctrl-C.",
    )
    serve.add_argument("site", type=Path, metavar="SITE")
    serve.add_argument("--port", type=int, default=8000, help="port (default: 8000; 0: any)")
    serve.add_argument(
        "--idle-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="close a connection idle this long (default: 10)",
    )
    serve.add_argument(
        "--workers", type=int, default=16, help="requests served at once (default: 16)"
    )

    pub = sub.add_parser(
        "publish",
        help="check, then publish a release set to a static site or an upload index",
        description="Check DIST, then send it to each --to TARGET: fallbacks first, then "
        "variant wheels, then the variants file where the target can hold it. Files already "
        "there with the same sha256 are skipped; a same-name file with other content is "
        "refused before anything is sent. Progress is recorded in DIST, so an interrupted "
        "publish resumes. TARGET is a directory (a static variant index), 'pypi', 'testpypi' "
        "or an upload URL (devpi, pypiserver); PyPI gets the fallbacks only. Credentials: "
        "TWINE_USERNAME/TWINE_PASSWORD, keyring or trusted publishing, as twine reads them.",
    )
    pub.add_argument("dist", type=Path, metavar="DIST")
    pub.add_argument(
        "--to",
        dest="targets",
        action="append",
        default=[],
        required=True,
        metavar="TARGET",
        help="a static site directory, pypi, testpypi or an upload URL (repeatable)",
    )
    pub.add_argument(
        "--simple-url",
        metavar="URL",
        help="the upload index's simple API, read to skip files already there "
        "(default: URL/simple/, or PyPI's)",
    )
    pub.add_argument("--dry-run", action="store_true", help="show what would be sent")
    _add_against_option(pub)
    _add_link_options(pub)
    pub.add_argument(
        "--public-url",
        metavar="URL",
        help="where the static site is served (its simple/ root, or the URL SITE is served "
        "at), for the uv configuration printed after publishing (default: a placeholder)",
    )
    _add_check_options(pub)
    _add_schema_option(pub)
    pub.add_argument("--json", action="store_true", help="print the result as JSON")
    return {"check": _cmd_check, "index": _cmd_index, "serve": _cmd_serve, "publish": _cmd_publish}


def _add_link_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tracks",
        action="append",
        default=[],
        metavar="URL",
        help="PEP 708: the project's page on the index this one mirrors, e.g. "
        "https://pypi.org/simple/NAME/ (repeatable; replaces the links the pages had)",
    )
    parser.add_argument(
        "--alternate-location",
        dest="alternate_locations",
        action="append",
        default=[],
        metavar="URL",
        help="PEP 708: another index's page of the same project, whose files are part of "
        "it too (repeatable; replaces the links the pages had)",
    )
    parser.add_argument(
        "--clear-links",
        action="store_true",
        help="remove the PEP 708 links the project's pages carry",
    )


def project_links(args: argparse.Namespace) -> ProjectLinks | None:
    """The PEP 708 links the options give (``None`` when none: the pages keep theirs;
    empty with ``--clear-links``); each an http(s) URL without credentials."""
    from wheelforge.publish.index import ProjectLinks
    from wheelforge.urls import check_url

    instead = "a PEP 708 link is public: give the URL without them"
    tracks = [check_url("--tracks", url, instead=instead) for url in args.tracks]
    alternates = [
        check_url("--alternate-location", url, instead=instead) for url in args.alternate_locations
    ]
    if args.clear_links:
        if tracks or alternates:
            raise InvalidInput(
                "--clear-links: give it alone, or --tracks/--alternate-location (which "
                "replace the links)"
            )
        return ProjectLinks()
    if not tracks and not alternates:
        return None
    return ProjectLinks(tuple(dict.fromkeys(tracks)), tuple(dict.fromkeys(alternates)))


def _add_schema_option(parser: argparse.ArgumentParser) -> None:
    from wheelforge.cli import add_schema_option

    add_schema_option(parser, what="variants files made from the wheels")


def _add_against_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--against",
        action="append",
        default=[],
        metavar="URL",
        help="a simple-index root (e.g. https://pypi.org/simple/) to check the set against: "
        "same-name files must have the same sha256, every Requires-Dist name must exist "
        "there (repeatable; docs/publishing.md)",
    )


def _run_against(args: argparse.Namespace, report: CheckReport) -> CheckReport:
    """``report`` with the --against findings added (``check`` only)."""
    import dataclasses

    from wheelforge.publish.against import check_against

    if not args.against:
        return report
    show = sys.stderr.isatty() and not args.json

    def progress(done: int, total: int) -> None:
        sys.stderr.write(f"\rreading index pages {done}/{total}" + ("\n" if done == total else ""))

    findings = check_against(
        report.artifacts,
        args.against,
        published_there=args.published_there,
        progress=progress if show else None,
    )
    return dataclasses.replace(report, findings=report.findings + tuple(findings))


def _add_check_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--max-size-mb",
        type=float,
        default=100.0,
        metavar="MB",
        help="per-file size limit in MiB (default: 100, PyPI's default limit)",
    )
    parser.add_argument(
        "--no-verify-hashes",
        action="store_true",
        help="skip RECORD hash verification (only check that RECORD lists every member)",
    )
    parser.add_argument(
        "-j", "--jobs", type=int, default=None, help="wheels read in parallel (default: CPUs)"
    )
    add_isa_options(parser)
    parser.add_argument(
        "--allow-missing",
        action="append",
        default=[],
        metavar="SONAME",
        help="libraries ELF members may need from the system beyond the manylinux policy's "
        "(fnmatch glob, e.g. 'libamdhip64.so.*'; repeatable)",
    )


def add_isa_options(parser: argparse.ArgumentParser, *, skip: bool = True) -> None:
    if skip:
        parser.add_argument(
            "--no-isa",
            action="store_true",
            help="skip the ISA audit (the x86-64 level the wheels' machine code needs)",
        )
    parser.add_argument(
        "--isa-dispatched",
        action="append",
        default=[],
        metavar="LIB:FUNC",
        help="functions that run only after a runtime CPU check the audit does not see "
        "(fnmatch globs, e.g. 'libfoo*.so:*_avx512*'; repeatable)",
    )


def run_check(args: argparse.Namespace, *, quiet: bool) -> CheckReport:
    from wheelforge.publish.check import check_release_set

    size_limit(args.max_size_mb)
    if args.jobs is not None and args.jobs < 1:
        raise InvalidInput(f"-j {args.jobs}: expected at least 1")
    show = sys.stderr.isatty() and not quiet

    def progress(done: int, total: int) -> None:
        sys.stderr.write(f"\rchecking {done}/{total}" + ("\n" if done == total else ""))

    return check_release_set(
        args.dist,
        verify_hashes=not args.no_verify_hashes,
        max_size=size_limit(args.max_size_mb),
        jobs=args.jobs,
        progress=progress if show else None,
        isa=not args.no_isa,
        isa_dispatched=args.isa_dispatched,
        allow_missing=args.allow_missing,
    )


MAX_SIZE_MB = 2**20  # 1 TiB: anything more is a typo


def size_limit(megabytes: float, option: str = "--max-size-mb") -> int:
    """``--max-size-mb`` in bytes; NaN, infinities, zero and negatives are refused."""
    if not 0 < megabytes <= MAX_SIZE_MB:  # NaN fails the comparison too
        raise InvalidInput(
            f"{option} {megabytes}: expected a positive number of MiB, at most {MAX_SIZE_MB}"
        )
    return int(megabytes * 2**20)


def _cmd_check(args: argparse.Namespace) -> int:
    from wheelforge.publish.against import check_against_url
    from wheelforge.publish.check import severities

    for url in args.against:
        check_against_url(url)
    if args.published_there and not args.against:
        raise InvalidInput("--published-there: give the index with --against URL")
    report = _run_against(args, run_check(args, quiet=args.json))
    if args.json:
        emit_json(report.to_json())
        return 0 if report.ok else 1
    print_findings(report)
    counts = severities(report.findings)
    verdict = "ok" if report.ok else "FAILED"
    info(
        f"{args.dist}: {verdict}: {len(report.artifacts)} files, {counts['error']} errors, "
        f"{counts['warning']} warnings"
    )
    return 0 if report.ok else 1


def print_findings(report: CheckReport) -> None:
    if report.findings:
        table(
            ["severity", "file", "check", "finding"],
            [[str(f.severity), f.file, f.check, f.message] for f in report.findings],
        )


def _checked(args: argparse.Namespace) -> tuple[CheckReport, list[Artifact]]:
    """Check DIST (printing the findings unless --json); raise if it has errors."""
    from wheelforge.publish.publisher import verified_artifacts

    report = run_check(args, quiet=args.json)
    if not args.json and any(f.severity != "info" for f in report.findings):
        print_findings(report)
    return report, verified_artifacts(report)


def _cmd_index(args: argparse.Namespace) -> int:
    from wheelforge.publish.publisher import index_release_set

    links = project_links(args)
    if args.no_check:
        from wheelforge.publish.release import artifacts_in

        artifacts = artifacts_in(args.dist)
    else:
        _, artifacts = _checked(args)
    result = index_release_set(artifacts, args.out, schema=args.schema, links=links)
    if args.json:
        emit_json(result.to_json())
        return 0
    for name in result.added:
        print(f"added      {name}")
    for name in result.unchanged:
        print(f"unchanged  {name}")
    info(
        f"{args.out}: pages of {', '.join(result.projects) or 'no project'} updated; "
        f"serve it with 'wheelforge serve {args.out}'"
    )
    for note in result.notes:
        info(f"note: {note}")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from wheelforge.publish.serve import make_server, simple_url

    if not 0 <= args.port <= 65535:
        raise InvalidInput(f"--port {args.port}: expected 0 (any free port) to 65535")
    if not 1 <= args.workers <= 1024:
        raise InvalidInput(f"--workers {args.workers}: expected 1 to 1024")
    if not 0 < args.idle_timeout <= 86400:  # NaN fails the comparison too
        raise InvalidInput(f"--idle-timeout {args.idle_timeout}: expected 0 < SECONDS <= 86400")
    server = make_server(args.site, args.port, idle_timeout=args.idle_timeout, workers=args.workers)
    info(f"serving {args.site} at {simple_url(server)} (Ctrl-C stops)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def _cmd_publish(args: argparse.Namespace) -> int:
    from wheelforge.publish.against import check_against_url
    from wheelforge.publish.instructions import install_instructions, simple_root
    from wheelforge.publish.publisher import (
        check_targets,
        publish,
        refuse_links_without_site,
        site_targets,
    )

    check_targets(args.targets, args.simple_url)
    links = project_links(args)
    refuse_links_without_site(args.targets, links)
    for url in args.against:
        check_against_url(url)
    if args.public_url is not None:
        simple_root(args.public_url)  # refuse a malformed one before the check
    report, artifacts = _checked(args)

    def progress(target: str, file: str, what: str) -> None:
        info(f"{target}: {what} {file}")

    result = publish(
        args.dist,
        args.targets,
        report=report,
        artifacts=artifacts,
        dry_run=args.dry_run,
        simple_url=args.simple_url,
        schema=args.schema,
        progress=None if args.json else progress,
        against=args.against,
        links=links,
    )
    if site_targets(args.targets):  # how to install from the variant index
        projects = sorted({a.project for a in artifacts})
        result.install = [install_instructions(p, args.public_url) for p in projects]
    if args.json:
        emit_json(result.to_json())
        return 0
    if result.resumed:
        info(f"resuming: {result.resumed} files were sent by an earlier run")
    table(
        ["target", "file", "action", "why"],
        [
            [
                a.target,
                a.file,
                ("would send" if args.dry_run else "sent") if a.action == "send" else a.action,
                a.reason,
            ]
            for a in result.actions
        ],
    )
    for note in result.notes:
        info(f"note: {note}")
    for instructions in result.install:
        print()
        print(instructions.text())
    return 0
