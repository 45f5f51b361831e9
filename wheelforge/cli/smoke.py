"""``wheelforge test``: each wheel installed into a fresh venv and its test command run on
the machine its label claims (see :mod:`wheelforge.smoke`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from wheelforge.errors import InvalidInput
from wheelforge.render import emit_json, job_progress, table

Handler = Callable[[argparse.Namespace], int]
if TYPE_CHECKING:
    SubParsers: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]


def add_commands(sub: SubParsers) -> dict[str, Handler]:
    test = sub.add_parser(
        "test",
        help="install each wheel into a fresh venv and run its test command on the machine "
        "its label claims",
        description="For each wheel: a fresh venv (uv), the wheel installed, then the matrix "
        "job's test-command (or --command) with {project} and {wheel} substituted. The "
        "command sees the GPU its properties claim through the providers' override variables "
        "(NV_VARIANT_PROVIDER_FORCE_CUDA_DRIVER_VERSION, ...) and runs Python on the lowest "
        "x86-64 level the wheel claims, emulated with qemu-x86_64 (v1 qemu64, v2 Nehalem, "
        "v3 Haswell; v4 natively on a v4 CPU, else skipped). A SIGILL is reported as a wheel "
        "that needs a newer CPU than its label claims.",
    )
    test.add_argument("dist", type=Path, nargs="+", metavar="DIST|WHEEL")
    test.add_argument(
        "--matrix",
        type=Path,
        metavar="FILE",
        help="where the test commands come from (default: the matrix named by the manifest)",
    )
    test.add_argument(
        "--command",
        dest="test_command",
        metavar="CMD",
        help="a shell command for every wheel instead",
    )
    test.add_argument("--index-url", metavar="URL", help="where dependencies come from (uv)")
    test.add_argument(
        "--find-links",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="also look for dependencies here (repeatable)",
    )
    test.add_argument("--no-deps", action="store_true", help="install the wheel alone")
    test.add_argument("--python", metavar="PY", help="the venvs' Python (default: the job's)")
    test.add_argument(
        "--native", action="store_true", help="no CPU emulation: run on this machine's CPU"
    )
    test.add_argument("--qemu", default="qemu-x86_64", metavar="PATH", help="qemu-user binary")
    test.add_argument("--timeout", type=float, default=600.0, metavar="S", help="per command")
    test.add_argument(
        "--log-dir",
        type=Path,
        default=Path(".wheelforge") / "logs",
        metavar="DIR",
        help="one log per wheel (default: .wheelforge/logs)",
    )
    test.add_argument("--json", action="store_true", help="print the results as JSON")
    return {"test": _cmd_test}


def _cmd_test(args: argparse.Namespace) -> int:
    import dataclasses

    from wheelforge.inspection import wheels_in
    from wheelforge.matrix import load_matrix
    from wheelforge.smoke import (
        TestOptions,
        TestResult,
        manifest_matrix,
        plan_tests,
        run_smoke_test,
        wheel_machine,
    )

    wheels = [wheel for path in args.dist for wheel in wheels_in(path)]
    matrix_path = args.matrix
    if matrix_path is None and args.test_command is None:
        found = {manifest_matrix(w.parent) for w in wheels}
        matrix_path = next(iter(found - {None}), None)
        if matrix_path is None:
            raise InvalidInput(
                "no test command: give --matrix FILE (with test-command) or --command CMD",
                hint="a dist/ written by `wheelforge build` names its matrix in its manifest",
            )
    matrix = load_matrix(matrix_path) if matrix_path is not None else None
    planned = plan_tests(wheels, matrix=matrix, command=args.test_command)
    options = TestOptions(
        index_url=args.index_url,
        find_links=tuple(args.find_links),
        no_deps=args.no_deps,
        native=args.native,
        qemu=args.qemu,
        timeout=args.timeout,
    )
    results = []
    with job_progress([p.wheel.name for p in planned]) as progress:
        for item in planned:
            if item.spec is None:
                progress(item.wheel.name, f"skipped: {item.reason}")
                machine = wheel_machine(item.wheel)
                results.append(TestResult(item.wheel, "skipped", machine, "-", error=item.reason))
                continue
            log = args.log_dir / f"test-{item.wheel.name.removesuffix('.whl')}.log"
            python = args.python or item.python
            results.append(
                run_smoke_test(
                    item.wheel,
                    item.spec,
                    dataclasses.replace(options, python=python),
                    log_path=log,
                    progress=progress,
                )
            )
    if args.json:
        emit_json([r.to_json() for r in results])
    else:
        table(
            ["wheel", "status", "level", "cpu", "gpu", "time"],
            [
                [
                    r.wheel.name,
                    r.status,
                    r.machine.level_name,
                    r.cpu,
                    " ".join(f"{k}={v}" for k, v in r.machine.env) or "-",
                    f"{r.seconds:.1f}s",
                ]
                for r in results
            ],
        )
    for r in results:
        if r.status == "failed":
            said = r.error or ""
            named = said if said.startswith(r.wheel.name) else f"{r.wheel.name}: {said}"
            print(f"error: {named}", file=sys.stderr)
            print("\n".join(f"  | {line}" for line in r.tail), file=sys.stderr)
        elif r.status == "skipped":
            print(f"warning: {r.wheel.name} not tested: {r.error}", file=sys.stderr)
    return 1 if any(r.status == "failed" for r in results) else 0
