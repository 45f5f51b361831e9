"""The CI commands: merge (what the build jobs uploaded, in the publish job)."""

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
    return {"merge": _add_merge(sub)}


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
