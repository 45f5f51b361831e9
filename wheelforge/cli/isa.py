"""``wheelforge audit``: the ISA audit of wheels (see :mod:`wheelforge.isa`)."""

from __future__ import annotations

import argparse
import functools
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from wheelforge.render import emit_json, info, table

if TYPE_CHECKING:
    from wheelforge.simple_api import ProjectFile

Handler = Callable[[argparse.Namespace], int]


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> dict[str, Handler]:
    from wheelforge.cli.publish import add_isa_options

    audit = sub.add_parser(
        "audit",
        help="which x86-64 level each library's machine code needs, and why",
        description="Disassemble the executable x86-64 sections of every ELF file in a wheel "
        "(or every wheel in a directory) and report the micro-architecture level (v1-v4) "
        "its code needs, the extensions behind it and the functions responsible: load-time "
        "code (constructors), code without a CPU check, and dispatched code (reported, not "
        "required). Exit 1 when a wheel needs more than it claims (plain and null: "
        "baseline; x86_64 :: level :: vN: vN).",
    )
    audit.add_argument("path", type=Path, metavar="WHEEL|DIR")
    add_isa_options(audit, skip=False)
    audit.add_argument(
        "-j", "--jobs", type=int, default=None, help="disassembly threads (default: CPUs)"
    )
    audit.add_argument("--json", action="store_true", help="print the audits as JSON")
    return {"audit": _cmd_audit}


def _cmd_audit(args: argparse.Namespace) -> int:
    from wheelforge.inspection import wheels_in
    from wheelforge.isa import (
        audit_wheel,
        judge,
        level_name,
        parse_declarations,
        wheel_claim,
    )

    declarations = parse_declarations(args.isa_dispatched)
    failed = False
    reports, rows = [], []
    for path in wheels_in(args.path):
        result = audit_wheel(path, declarations=declarations, jobs=args.jobs)
        claim, claimant = wheel_claim(path)
        problems = [p for lib in result.libraries for p in judge(lib, claim, claimant)]
        failed |= any(p.severity == "error" for p in problems)
        reports.append({**result.to_json(), "claims": level_name(claim),
                        "findings": [{"severity": p.severity, "message": p.message}
                                     for p in problems]})  # fmt: skip
        for lib in result.libraries:
            top = [f for f in lib.functions if f.level > 1][:3]
            rows.append([
                path.name, lib.member, level_name(claim),
                level_name(lib.required_level) if lib.audited else f"- ({lib.machine})",
                level_name(lib.dispatched_level) if lib.audited else "-",
                "; ".join(f"{f.name} ({f.kind}: {', '.join(f.extensions)})" for f in top) or "-",
                "; ".join(lib.dispatch[:2]) or "-",
            ])  # fmt: skip
        if not args.json:
            for problem in problems:
                info(f"{problem.severity}: {path.name}: {problem.message}")
    if args.json:
        emit_json(reports)
    else:
        table(["wheel", "library", "claims", "needs", "dispatched", "functions", "dispatch"],
              rows)  # fmt: skip
    return 1 if failed else 0


def isa_needs(args: argparse.Namespace) -> Callable[[ProjectFile], tuple[int, str]] | None:
    """What ``coverage`` asks of each chosen wheel: the level its code needs, and why.
    A remote wheel is downloaded (once) to a temporary file; ``--no-isa``: None."""
    from wheelforge.isa import audit_wheel, parse_declarations

    if args.no_isa:
        return None
    declarations = parse_declarations(args.isa_dispatched)

    @functools.cache
    def needs(file: ProjectFile) -> tuple[int, str]:
        url = urllib.parse.urlparse(file.url)
        with tempfile.TemporaryDirectory(prefix="wheelforge-isa-") as work:
            if url.scheme == "file":
                path = Path(urllib.request.url2pathname(url.path))
            else:
                path = Path(work) / file.filename
                file.download(path)  # streamed: a wheel may be larger than memory
            result = audit_wheel(path, declarations=declarations)
        return result.required_level, result.reason()

    return needs
