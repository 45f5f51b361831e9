"""The selector's commands: detect, select, install, coverage."""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wheelforge.errors import InvalidInput
from wheelforge.render import emit_json, info, table

if TYPE_CHECKING:
    from wheelforge.select.machine import Machine
    from wheelforge.select.selection import Selection
    from wheelforge.select.sources import Pool

Handler = Callable[[argparse.Namespace], int]


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> dict[str, Handler]:
    detect = sub.add_parser(
        "detect",
        help="show what this machine supports, per namespace",
        description="Detect this machine's supported variant properties: nvidia (NVML, "
        "/sys/module/nvidia, /proc/driver/nvidia, nvidia-smi), amd (KFD topology, rocminfo, "
        "rocm_agent_enumerator, /opt/rocm/.info/version), x86_64 and aarch64 (/proc/cpuinfo). "
        "The providers' override variables are honoured (NV_VARIANT_PROVIDER_FORCE_"
        "CUDA_DRIVER_VERSION, NV_VARIANT_PROVIDER_FORCE_SM_ARCH, AMD_VARIANT_PROVIDER_FORCE_"
        "GFX_ARCH, AMD_VARIANT_PROVIDER_FORCE_ROCM_VERSION).",
    )
    _add_machine_options(detect)
    detect.add_argument("--json", action="store_true", help="print the result as JSON")

    select = sub.add_parser(
        "select",
        help="show which wheel an installer picks here, and why",
        description="Resolve NAME[SPEC] on an index or in find-links directories, read the "
        "release's variants file and rank its wheels for this (or a profiled) machine, as "
        "uv does; print the chosen wheel.",
    )
    select.add_argument("requirement", metavar="NAME[SPEC]", help="e.g. vecadd or 'vecadd==0.1'")
    _add_source_options(select)
    _add_machine_options(select)
    _add_optional_option(select)
    select.add_argument("--python", metavar="PY", help="the interpreter whose tags count")
    select.add_argument(
        "--explain", action="store_true", help="a table of every candidate and its fate"
    )
    select.add_argument("--json", action="store_true", help="print the result as JSON")

    install = sub.add_parser(
        "install",
        help="install the wheel this machine gets",
        description="Select as 'wheelforge select' does, then install the chosen wheel with "
        "the real pip or uv into the current (or --python) environment. A zstd wheel that "
        "pip on Python < 3.14 cannot read is transcoded to deflate first.",
    )
    install.add_argument("requirements", nargs="+", metavar="NAME[SPEC]")
    _add_source_options(install)
    _add_machine_options(install)
    _add_optional_option(install)
    install.add_argument("--installer", choices=("pip", "uv"), default="pip")
    install.add_argument("--python", metavar="PY", help="the environment's interpreter")
    install.add_argument("--json", action="store_true", help="print the result as JSON")

    cov = sub.add_parser(
        "coverage",
        help="which wheel each hardware profile gets from a release",
        description="For every profile in --profiles (default: the ones wheelforge ships), the "
        "wheel it gets from DIST (a release set directory) or from --index URL NAME, and "
        "which profiles fall back to null or the plain wheel, or get nothing.",
    )
    cov.add_argument("source", metavar="DIST|NAME")
    _add_index_options(cov)
    _add_remote_options(cov)
    cov.add_argument("--profiles", type=Path, metavar="DIR", help="a directory of *.toml")
    cov.add_argument("--trust-provider", action="append", default=[], metavar="NS")
    _add_optional_option(cov)
    cov.add_argument("--python", metavar="PY", help="the interpreter whose tags count")
    cov.add_argument(
        "--require-all",
        action="store_true",
        help="exit 1 when a profile gets nothing, or a wheel whose code needs a newer CPU "
        "(a release gate)",
    )
    cov.add_argument("--json", action="store_true", help="print the table as JSON")
    from wheelforge.cli.publish import add_isa_options

    add_isa_options(cov)
    return {"detect": _cmd_detect, "select": _cmd_select, "install": _cmd_install,
            "coverage": _cmd_coverage}  # fmt: skip


def _add_source_options(parser: argparse.ArgumentParser) -> None:
    _add_index_options(parser)
    parser.add_argument(
        "--find-links", type=Path, action="append", default=[], metavar="DIR",
        help="a directory of wheels and variants files (repeatable)",
    )  # fmt: skip
    _add_remote_options(parser)


def _add_index_options(parser: argparse.ArgumentParser) -> None:
    from wheelforge.select.sources import STRATEGIES

    parser.add_argument(
        "--index", dest="indexes", action="append", default=[], metavar="URL",
        type=lambda url: [url],
        help="a simple index (PEP 503/691); repeatable, the first has priority (uv's --index)",
    )  # fmt: skip
    parser.add_argument(
        "--index-group", dest="indexes", action="append", metavar="URL,URL",
        type=lambda urls: [u for u in urls.split(",") if u],
        help="several indexes read as one (merged, best version; declared one namespace, so "
        "PEP 708 is not asked between them); in order with --index",
    )  # fmt: skip
    parser.add_argument(
        "--index-strategy", choices=STRATEGIES, default="first-index",
        help="as uv's: first-index (default: the first index listing the project supplies "
        "every file of it), unsafe-first-match (the first index with a version that fits), "
        "unsafe-best-match (the best version on any index); the two unsafe ones merge only "
        "indexes related by PEP 708 tracks/alternate-locations",
    )  # fmt: skip


def _add_remote_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--allow-host", action="append", default=[], metavar="HOST",
        help="a remote index's files may also come from HOST (repeatable; by default only "
        "from the index's own host)",
    )  # fmt: skip
    parser.add_argument(
        "--allow-unhashed", action="store_true",
        help="accept files a remote index lists without a sha256 hash",
    )  # fmt: skip


def _groups(args: argparse.Namespace) -> list[list[str]]:
    """--index and --index-group in order, each refused when it carries credentials
    (never echoed)."""
    from wheelforge.urls import check_url

    return [
        [check_url("--index", url, instead="give the index's URL without user, password or "
                   "token", schemes=("http", "https", "file")) for url in group]
        for group in args.indexes
    ]  # fmt: skip


def _index(args: argparse.Namespace) -> str | None:
    """The first --index (where a trusted plugin and dependencies come from)."""
    urls = _index_urls(args)
    return urls[0] if urls else None


def _index_urls(args: argparse.Namespace) -> list[str]:
    return [url for group in _groups(args) for url in group]


def _find_links(args: argparse.Namespace) -> list[Path]:
    for directory in args.find_links:
        scheme = str(directory).partition(":")[0]
        if ":" in str(directory) and len(scheme) > 1 and scheme.isalpha():
            raise InvalidInput(
                "--find-links: expected a directory, not a URL (give an index with --index URL)"
            )
    return list(args.find_links)


def _add_machine_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--profile", metavar="FILE|NAME", help="describe the machine with a profile instead "
        "of detecting it (a TOML file, or a shipped profile such as h100-driver-580)",
    )  # fmt: skip
    parser.add_argument(
        "--assume", action="append", default=[], metavar="'NS :: F :: V'",
        help="treat this property as supported, ahead of any other value (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--trust-provider", action="append", default=[], metavar="NS",
        help="run the third-party provider plugin for this namespace, out of process: "
        "installed here, or else its requires installed into a cached isolated venv from "
        "--index/--find-links (repeatable; also WHEELFORGE_TRUST_PROVIDERS=ns,ns)",
    )  # fmt: skip


def _add_optional_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--enable-optional", action="append", default=[], metavar="NS",
        help="turn on this namespace's optional provider (\"optional\": true), off by "
        "default as in uv and variantlib (repeatable; also WHEELFORGE_ENABLE_OPTIONAL=ns,ns)",
    )  # fmt: skip


def _enabled_optional(args: argparse.Namespace) -> frozenset[str]:
    from wheelforge.select.machine import enabled_optional_from_env

    return frozenset(args.enable_optional) | enabled_optional_from_env()


def _assumed(args: argparse.Namespace) -> tuple[Any, ...]:
    from wheelforge.variants.properties import VariantProperty

    try:
        return tuple(VariantProperty.parse(text) for text in args.assume)
    except InvalidInput as err:
        raise InvalidInput(f"--assume: {err.message}") from None


def _known(args: argparse.Namespace) -> tuple[dict[str, dict[str, list[str]]], dict[str, Any]]:
    """What the machine supports (detected, or the profile's), and per namespace the
    detection itself (facts and source) for people."""
    if args.profile:
        from wheelforge.select.profiles import find_profile

        profile = find_profile(args.profile)
        known = profile.supported()
        return known, {ns: {"facts": {}, "source": f"profile {profile.name}"} for ns in known}
    from wheelforge.select.detect import detect

    found = detect()
    known = {ns: d.features for ns, d in found.items() if d.features}
    return known, {ns: {"facts": d.facts, "source": d.source} for ns, d in found.items()}


def _machine(args: argparse.Namespace, target: Any) -> Machine:
    from wheelforge.select.machine import Machine, trusted_from_env
    from wheelforge.select.plugins import Sources, TrustedPlugins

    known, _ = _known(args)
    trusted = frozenset(args.trust_provider) | trusted_from_env()
    # A trusted plugin not installed here is installed, into an isolated environment,
    # from the release's own sources.
    find_links = tuple(str(Path(d).resolve()) for d in _find_links(args))
    index = _index(args)
    sources = Sources(index, find_links) if index or find_links else None
    return Machine(
        known,
        _assumed(args),
        trusted,
        TrustedPlugins(sources),
        enabled_optional=_enabled_optional(args),
        abi=_abi(args, target),
    )


def _abi(args: argparse.Namespace, target: Any) -> Any:
    """The packages ``abi_dependency`` is judged against: the profile's ``[installed]``
    table when it has one, else the target interpreter's environment; with
    ``VARIANT_ABI_DEPENDENCY`` on top."""
    import os

    from wheelforge.select.install import abi_environment
    from wheelforge.variants.abi_dependency import ENV_VARIABLE

    if args.profile:
        from wheelforge.select.profiles import find_profile

        simulated = find_profile(args.profile).abi_environment(os.environ.get(ENV_VARIABLE))
        if simulated is not None:
            return simulated
    return abi_environment(target)


def _cmd_detect(args: argparse.Namespace) -> int:
    from wheelforge.select.profiles import with_assumed

    known, about = _known(args)
    assumed = _assumed(args)
    machine = with_assumed(known, assumed)
    report = {
        ns: {"features": machine.get(ns, {}), **about.get(ns, {"facts": {}, "source": "--assume"})}
        for ns in dict.fromkeys([*about, *machine])
    }
    if args.json:
        emit_json(report)
        return 0
    rows = []
    for namespace, entry in report.items():
        features = entry["features"]
        shown = "; ".join(
            f"{feature}: {', '.join(values[:4])}{' …' if len(values) > 4 else ''}"
            for feature, values in features.items()
        )
        facts = ", ".join(f"{k}={v}" for k, v in entry["facts"].items())
        rows.append([namespace, shown or "nothing", facts or "-", entry["source"]])
    table(["namespace", "supported (best first)", "facts", "source"], rows)
    return 0


def _pools(args: argparse.Namespace, project: str, find_links: list[Path]) -> list[Pool]:
    from wheelforge.select.sources import Source, pools
    from wheelforge.simple_api import ProjectPage, directory_files, read_project

    groups = _groups(args)
    if not groups and not find_links:
        raise InvalidInput("give --index URL or --find-links DIR: where to look for wheels")
    links = [
        Source(str(d), ProjectPage(Path(d).resolve().as_uri(),
                                   tuple(directory_files(d, project))))
        for d in find_links
    ]  # fmt: skip

    def read(url: str) -> ProjectPage:
        return read_project(url, project, vet=True, allow_hosts=args.allow_host,
                            allow_unhashed=args.allow_unhashed)  # fmt: skip

    return pools(project, groups, read, strategy=args.index_strategy, find_links=links)


def _selection(
    args: argparse.Namespace, requirement_text: str, python: Any, machine: Machine
) -> Selection:
    from wheelforge.select.selection import parse_requirement
    from wheelforge.select.sources import select_from

    requirement = parse_requirement(requirement_text)
    candidates = _pools(args, requirement.name, _find_links(args))
    return select_from(requirement, candidates, machine, tags=python.tags,
                       python_version=python.version)  # fmt: skip


def _cmd_select(args: argparse.Namespace) -> int:
    from wheelforge.select.install import interpreter

    target = interpreter(args.python)
    selection = _selection(args, args.requirement, target, _machine(args, target))
    if args.json:
        emit_json(selection.to_json())
        return 0 if selection.chosen else 1
    if args.explain and selection.candidates:
        table(
            ["wheel", "index", "label", "properties", "result", "rank key"],
            [
                [
                    c.filename,
                    c.source or "-",
                    c.label or "-",
                    "; ".join(c.properties) or "-",
                    c.status,
                    c.rank_key,
                ]
                for c in selection.candidates
            ],
            title=f"{selection.project} {selection.version}"
            + (f" (variants file: {selection.variants_file})" if selection.variants_file else ""),
        )
    for note in selection.notes:
        info(f"note: {note}")
    if selection.chosen is None:
        info(f"{selection.project}: nothing fits this machine")
        return 1
    print(selection.chosen.filename)
    return 0


def _cmd_install(args: argparse.Namespace) -> int:
    from wheelforge.select.install import install, interpreter

    target = interpreter(args.python)
    machine = _machine(args, target)
    results = []
    for requirement in args.requirements:
        selection = _selection(args, requirement, target, machine)
        for note in selection.notes:
            info(f"note: {note}")
        with tempfile.TemporaryDirectory(prefix="wheelforge-install-") as work:
            result = install(
                selection, target, installer=args.installer, workdir=Path(work),
                index_urls=_index_urls(args), index_strategy=args.index_strategy,
                find_links=_find_links(args),
                notify=lambda message: info(f"note: {message}"),
            )  # fmt: skip
        results.append(result)
        if not args.json:
            info(f"installed {selection.chosen.filename if selection.chosen else '?'} "
                 f"with {args.installer} into {target.executable}")  # fmt: skip
    if args.json:
        emit_json([
            {**r.selection.to_json(), "installer": r.installer, "transcoded": r.transcoded,
             "python": target.executable}
            for r in results
        ])  # fmt: skip
    return 0


def _cmd_coverage(args: argparse.Namespace) -> int:
    from wheelforge.select.coverage import coverage
    from wheelforge.select.install import interpreter
    from wheelforge.select.machine import trusted_from_env
    from wheelforge.select.profiles import load_profiles
    from wheelforge.select.selection import parse_requirement
    from wheelforge.simple_api import directory_files

    if args.indexes:
        requirement = parse_requirement(args.source)
        candidates = _pools(args, requirement.name, [])
        if len(candidates) > 1:
            raise InvalidInput(
                "coverage: --index-strategy unsafe-first-match with the project on several "
                "indexes is not supported (each profile may get another index): use "
                "first-index or unsafe-best-match"
            )
        for note in candidates[0].notes:
            info(f"note: {note}")
        files = list(candidates[0].files)
    else:
        dist = Path(args.source)
        requirement = parse_requirement(_project_in(dist))
        files = directory_files(dist, requirement.name)
    profiles = load_profiles(args.profiles)
    trusted = frozenset(args.trust_provider) | trusted_from_env()
    from wheelforge.cli.isa import isa_needs
    from wheelforge.select.install import abi_environment

    target = interpreter(args.python)
    rows = coverage(requirement, files, profiles, target, trusted=trusted,
                    enabled_optional=_enabled_optional(args), needs=isa_needs(args),
                    abi=abi_environment(target))  # fmt: skip
    if args.json:
        emit_json([row.to_json() for row in rows])
    else:
        table(
            ["profile", "machine", "gets", "label", "outcome"],
            [[r.profile, r.description, r.wheel or "-", r.label or "-", r.outcome] for r in rows],
            title=f"{requirement.name}: {len(rows)} profiles",
        )
        counts = {
            o: sum(r.outcome == o for r in rows)
            for o in ("variant", "null", "plain", "nothing", "fails")
        }
        info(", ".join(f"{n} {o}" for o, n in counts.items()))
        for row in rows:
            if row.outcome == "fails":
                info(f"{row.profile}: {row.notes[-1]}")
    return 1 if args.require_all and any(r.outcome in ("nothing", "fails") for r in rows) else 0


def _project_in(dist: Path) -> str:
    from wheelforge.wheel.filename import WheelFilename

    if not dist.is_dir():
        raise InvalidInput(f"{dist}: expected a release set directory (or --index URL NAME)")
    names = {WheelFilename.parse(p.name).release[0] for p in dist.glob("*.whl")}
    if len(names) != 1:
        raise InvalidInput(
            f"{dist}: expected the wheels of one project, found {len(names)} "
            f"({', '.join(sorted(names))})"
        )
    return names.pop()
