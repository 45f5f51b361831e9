"""The command line: parse, call a stage, render, map errors to exit codes."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from wheelforge import __version__
from wheelforge.errors import InvalidInput, WheelforgeError
from wheelforge.render import emit_json, info, table
from wheelforge.variants.metadata import SCHEMA_BY_NAME, Schema

# Stage modules are imported by the command that needs them: start-up time counts
# when tagging a wheel costs about as much as copying it.


def _schema(value: str) -> Schema:
    try:
        return SCHEMA_BY_NAME[value]
    except KeyError:
        raise argparse.ArgumentTypeError(
            f"unknown schema {value!r}: expected one of {', '.join(SCHEMA_BY_NAME)}"
        ) from None


def _add_schema_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--schema",
        type=_schema,
        default=Schema.PROVIDERS_V0_2_0,
        metavar="NAME",
        help=f"metadata schema generation to write: {', '.join(SCHEMA_BY_NAME)} "
        "(default: providers-v0.2.0, what uv needs)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wheelforge",
        description="Build, tag, check and publish variant wheels (PEP 825 wheel variants).",
    )
    parser.add_argument("--version", action="version", version=f"wheelforge {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
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
    tag.add_argument("--verify", action="store_true", help="check every RECORD hash first")
    _add_schema_option(tag)
    tag.add_argument("--json", action="store_true", help="print the result as JSON")

    untag = sub.add_parser(
        "untag",
        help="turn a variant wheel back into a plain wheel",
        description="Remove variant.json and the label. Requirements added with "
        "--requires-dist stay in METADATA.",
    )
    untag.add_argument("wheel", type=Path)
    untag.add_argument("-o", "--out", type=Path, required=True, metavar="OUTDIR")
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
    _add_schema_option(vjson)
    vjson.add_argument("--json", action="store_true", help="print the result as JSON")
    return parser


def _cmd_tag(args: argparse.Namespace) -> int:
    from wheelforge.tag import TagRequest, load_variant_config, tag_wheel
    from wheelforge.variants.config import default_config
    from wheelforge.variants.properties import VariantProperty

    config = load_variant_config(args.variant_config) if args.variant_config else default_config()
    if args.null and args.properties:
        raise InvalidInput("--null takes no properties: the null variant has none")
    if not args.null and not args.properties:
        raise InvalidInput("expected at least one -p/--property, or --null")
    request = TagRequest(
        properties=frozenset(VariantProperty.parse(text) for text in args.properties),
        label=args.label,
        config=config,
        requires_dist=tuple(args.requires_dist),
        schema=args.schema,
        verify=args.verify,
    )
    output = tag_wheel(args.wheel, args.out, request)
    if args.json:
        emit_json({"input": str(args.wheel), "output": str(output)})
    else:
        print(output)
    return 0


def _cmd_untag(args: argparse.Namespace) -> int:
    from wheelforge.tag import untag_wheel

    output = untag_wheel(args.wheel, args.out, verify=args.verify)
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


COMMANDS = {
    "tag": _cmd_tag,
    "untag": _cmd_untag,
    "inspect": _cmd_inspect,
    "variants-json": _cmd_variants_json,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except WheelforgeError as err:
        if args.debug:
            raise
        print(f"error: {err.message}", file=sys.stderr)
        if err.hint:
            print(f"hint: {err.hint}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
