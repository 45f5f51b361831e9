"""The check stage: is a ``dist/`` directory a coherent release set, fit to publish?

Every wheel is read from its zip directory (only RECORD, METADATA and variant.json
are decompressed, plus every member when hashes are verified, which uv does not do).
Findings are collected rather than raised, so one run reports every defect.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import hashlib
import io
import multiprocessing
import re
import tarfile
import tempfile
import threading
import zipfile
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from packaging import metadata as core_metadata
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name, canonicalize_version

from wheelforge.build.manifest import MANIFEST_NAME, read_manifest
from wheelforge.compress import default_jobs, zstd_allowed
from wheelforge.errors import InvalidInput
from wheelforge.isa import (
    BASELINE,
    Declaration,
    audit_elf,
    claimed_level,
    judge,
    parse_declarations,
)
from wheelforge.paths import inside
from wheelforge.publish import layout
from wheelforge.publish.release import Artifact, Role, classify, sha256_file
from wheelforge.render import human_size
from wheelforge.repair import classify as classify_library
from wheelforge.variants import installer_rules
from wheelforge.variants.abi_dependency import NAMESPACE as ABI_NAMESPACE
from wheelforge.variants.labels import NULL_LABEL
from wheelforge.variants.lint import (
    outside_static_problems,
    provider_problems,
    unknown_schema_problems,
)
from wheelforge.variants.merge import merge_all
from wheelforge.variants.metadata import VariantMetadata, loads
from wheelforge.variants.properties import VariantProperty
from wheelforge.variants_file import differences
from wheelforge.wheel.archive import METHOD_NAMES, ZSTD, metadata_cap
from wheelforge.wheel.elf import (
    DynamicInfo,
    dynamic_info,
    iter_elf_members,
    machine,
    offload_bundles,
    section_names,
)
from wheelforge.wheel.filename import WheelFilename
from wheelforge.wheel.wheelfile import (
    VARIANT_JSON,
    Wheel,
    check_header_lines,
    parse_core_metadata,
)

DEFAULT_MAX_SIZE = 100 * 1024 * 1024  # PyPI's default per-file limit
RENDER_LIMIT = 64 << 10  # characters of reStructuredText rendered: ~130 MiB at worst
_RENDERING = threading.Lock()
# What one wheel of a release may add to the METADATA the others share.
VARIANT_FIELDS = frozenset({"requires_dist"})


class Severity(enum.StrEnum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


@dataclass(frozen=True)
class Finding:
    severity: Severity
    file: str
    check: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {
            "severity": str(self.severity),
            "file": self.file,
            "check": self.check,
            "message": self.message,
        }


@dataclass(frozen=True)
class CheckReport:
    directory: Path
    artifacts: tuple[Artifact, ...]
    findings: tuple[Finding, ...]

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity is Severity.ERROR]

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_json(self) -> dict[str, Any]:
        return {
            "directory": str(self.directory),
            "ok": self.ok,
            "files": [a.name for a in self.artifacts],
            "findings": [f.to_json() for f in self.findings],
        }


@dataclass
class _WheelFacts:
    """What one wheel says about itself, and what is wrong with it alone."""

    artifact: Artifact
    findings: list[Finding] = field(default_factory=list)
    variant: VariantMetadata | None = None
    properties: frozenset[VariantProperty] | None = None
    metadata: dict[str, Any] | None = None  # packaging's RawMetadata
    dynamic: dict[str, DynamicInfo] = field(default_factory=dict)  # ELF member -> its loader info

    def error(self, check: str, message: str) -> None:
        self.findings.append(Finding(Severity.ERROR, self.artifact.name, check, message))

    def warning(self, check: str, message: str) -> None:
        self.findings.append(Finding(Severity.WARNING, self.artifact.name, check, message))


def check_release_set(
    directory: Path,
    *,
    verify_hashes: bool = True,
    max_size: int = DEFAULT_MAX_SIZE,
    jobs: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    isa: bool = True,
    isa_dispatched: Sequence[str] = (),
    allow_missing: Sequence[str] = (),
) -> CheckReport:
    """Check every publishable file of ``directory`` and the set they form. ``isa``: audit
    the machine code of x86-64 wheels against their claimed level (``isa_dispatched``:
    ``LIB_GLOB:FUNCTION_GLOB`` declarations of dispatched code). ``allow_missing``: globs
    of sonames that ELF members may need from the system beyond its manylinux policy."""
    if not directory.is_dir():
        raise InvalidInput(f"{directory}: expected a directory of wheels")
    findings: list[Finding] = []
    artifacts: list[Artifact] = []
    for path in sorted(directory.iterdir()):
        if not path.is_file() or path.name.startswith("."):
            continue
        try:
            artifact = classify(path)
        except InvalidInput as err:
            findings.append(Finding(Severity.ERROR, path.name, "filename", _strip(err, path)))
            continue
        if artifact is not None:
            artifacts.append(artifact)
    if not artifacts and not findings:
        raise InvalidInput(f"{directory}: no wheels, sdists or variants files to check")

    readers = [a for a in artifacts if a.role is not Role.VARIANTS_FILE]
    elf_checks = (
        FALLBACK_ELF_CHECK,
        *((isa_elf_check(isa_dispatched),) if isa else ()),
        dependency_elf_check(allow_missing),
    )
    read = functools.partial(
        _read, verify_hashes=verify_hashes, max_size=max_size, elf_checks=elf_checks
    )
    facts = []
    with _pool(jobs or default_jobs(), len(readers)) as pool:
        for fact in pool.map(read, readers, chunksize=_chunk(len(readers), jobs)):
            facts.append(fact)
            if progress is not None:
                progress(len(facts), len(readers))
    for fact in facts:
        findings += fact.findings
    findings += _check_set(directory, artifacts, facts)
    return CheckReport(directory, tuple(artifacts), tuple(findings))


_PROCESSES_FROM = 64  # wheels; below this, threads (no start-up cost)


def _pool(workers: int, wheels: int) -> Executor:
    """Threads for a few wheels: hashing and inflating big members release the GIL.
    Processes for many: reading a small wheel is mostly Python (METADATA, RECORD,
    variant.json parsing), which threads would run one at a time."""
    if workers > 1 and wheels >= _PROCESSES_FROM:
        context = multiprocessing.get_context("forkserver")
        return ProcessPoolExecutor(max_workers=workers, mp_context=context)
    return ThreadPoolExecutor(max_workers=workers)


def _chunk(wheels: int, jobs: int | None) -> int:
    return max(1, wheels // (4 * (jobs or default_jobs())))


# -- one file at a time -------------------------------------------------------------


def _read(
    artifact: Artifact,
    *,
    verify_hashes: bool,
    max_size: int,
    elf_checks: tuple[ElfCheck, ...] | None = None,
) -> _WheelFacts:
    facts = _WheelFacts(artifact)
    size = artifact.path.stat().st_size
    if size > max_size:
        facts.error(
            "size",
            f"{human_size(size)} ({size} bytes), over the per-file limit of {max_size} bytes "
            "(--max-size-mb; PyPI's default limit is 100 MiB)",
        )
    try:
        if artifact.is_wheel:
            _read_wheel(facts, verify_hashes=verify_hashes, elf_checks=elf_checks)
        else:
            _check_metadata(facts, sdist_metadata(artifact.path), "PKG-INFO")
    except InvalidInput as err:
        facts.error("archive", _strip(err, artifact.path))
    return facts


def _read_wheel(
    facts: _WheelFacts, *, verify_hashes: bool, elf_checks: tuple[ElfCheck, ...] | None = None
) -> None:
    artifact = facts.artifact
    with Wheel(artifact.path) as wheel:
        wheel.check_headers()
        record = None
        try:
            record = wheel.checked_record(verify=verify_hashes)
        except InvalidInput as err:
            facts.error("record", _strip(err, artifact.path))
        _check_compression(facts, wheel)
        _check_unrepaired(facts, wheel)
        _check_variant_json(facts, wheel)
        _check_metadata(facts, wheel.core_metadata(), "METADATA")
        for rejection in installer_rules.marker_rejections(
            (facts.metadata or {}).get("requires_dist", [])
        ):
            facts.error("uv", f"METADATA: {rejection.line(_PICKED)}")
        facts.findings += fallback_requirement_findings(facts)
        facts.findings += _from_layout(facts, layout.top_level_problems(wheel))
        if record is not None:  # one that does not verify may hold a bomb: not read again
            verified = {e.path: e.hash for e in record if e.hash} if verify_hashes else {}
            facts.findings += _from_layout(facts, layout.duplicate_problems(wheel, verified))
        _elf_pass(facts, wheel, ELF_CHECKS if elf_checks is None else elf_checks)


_PICKED = "this release on machines where it picks this wheel"


def _check_compression(facts: _WheelFacts, wheel: Wheel) -> None:
    zstd_members = []
    for member in wheel.members.values():
        if member.method not in METHOD_NAMES:
            facts.error("compression", f"{member.name}: unknown zip method {member.method}")
        elif member.method == ZSTD:
            if member.name.startswith(f"{wheel.dist_info}/"):
                facts.error(
                    "compression",
                    f"{member.name} is zstd: .dist-info members must stay deflate "
                    "(installers read them before they know the wheel)",
                )
            else:
                zstd_members.append(member.name)
    if zstd_members:
        verdict = zstd_allowed(wheel.filename)
        if not verdict.allowed:
            facts.error(
                "compression",
                f"{len(zstd_members)} zstd members (first {zstd_members[0]}): {verdict.reason}",
            )


def _check_unrepaired(facts: _WheelFacts, wheel: Wheel) -> None:
    """A ``linux_*`` platform tag: auditwheel never ran (``repair = false``)."""
    tags = [tag for tag in wheel.filename.platform.split(".") if tag.startswith("linux_")]
    if tags:
        facts.warning(
            "unrepaired",
            f"platform tag {tags[0]}: not repaired (repair = false?); PyPI refuses linux_* "
            "wheels, and the external libraries it links were not grafted, so it loads only "
            "where they are installed",
        )


def _check_variant_json(facts: _WheelFacts, wheel: Wheel) -> None:
    label = wheel.filename.label
    inner = wheel.dist_info_path(VARIANT_JSON)
    if label is not None and wheel.member(inner) is not None:
        with contextlib.suppress(InvalidInput):  # unreadable: reported just below
            for rejection in installer_rules.file_rejections(wheel.read(inner), source=inner):
                facts.error("uv", f"{inner}: {rejection.line(_PICKED)}")
    try:
        meta = wheel.variant_metadata()
    except InvalidInput as err:
        facts.error("variant.json", _strip(err, wheel.path))
        return
    if label is None:
        if meta is not None:
            facts.error(
                "variant.json", f"a plain wheel (no label) carries {inner}: tag it or remove it"
            )
        return
    if meta is None:
        facts.error("variant.json", f"labelled {label!r} but has no {inner}")
        return
    if len(meta.variants) != 1:
        facts.error(
            "variant.json", f"{inner} has {len(meta.variants)} variants, expected exactly one"
        )
        return
    ((inner_label, properties),) = meta.variants.items()
    if inner_label != label:
        facts.error(
            "variant.json",
            f"{inner} names label {inner_label!r}, the filename says {label!r}",
        )
        return
    if (label == NULL_LABEL) != (not properties):
        facts.error("variant.json", f"label {label!r} with {len(properties)} properties")
        return
    facts.variant = meta
    facts.properties = frozenset(properties)
    for problem in unknown_schema_problems(meta) + outside_static_problems(meta, properties):
        facts.warning("variant.json", f"{inner}: {problem}")
    for severity, message in abi_dependency_findings(meta):
        facts.findings.append(Finding(severity, facts.artifact.name, "variant.json", message))


def abi_dependency_findings(meta: VariantMetadata) -> list[tuple[Severity, str]]:
    """The reserved ``abi_dependency`` namespace needs no provider entry, but uv 0.13.8
    rejects a release whose variants name it without listing it, and never selects it."""
    if ABI_NAMESPACE not in meta.namespaces_used():
        return []
    if ABI_NAMESPACE not in meta.namespace_priorities or ABI_NAMESPACE not in meta.providers:
        return [(
            Severity.WARNING,
            f"uses {ABI_NAMESPACE!r} without listing it in default-priorities.namespace and "
            "providers: uv 0.13.8 rejects the whole release ('wheelforge tag' lists it last "
            f"with a builtin provider entry)",
        )]  # fmt: skip
    return [(
        Severity.INFO,
        f"uses {ABI_NAMESPACE!r}: wheelforge matches it against the target environment's "
        "packages (as variantlib's resolver does); uv 0.13.8 never selects it "
        "(docs/selection.md)",
    )]  # fmt: skip


def _check_metadata(facts: _WheelFacts, data: bytes, member: str) -> None:
    """Core metadata as ``twine check`` and ``twine upload`` judge it: every field
    known and well-formed, the long description renders."""
    artifact = facts.artifact
    raw, unparsed = parse_core_metadata(data)
    if _version_tuple(str(raw.get("metadata_version", "0"))) < (2, 4):
        raw.pop("license_files", None)  # setuptools writes it too early; twine tolerates it
        unparsed.pop("license-file", None)
    for key in sorted(unparsed):
        facts.error("metadata", f"{member}: unrecognized or malformed field {key!r}")
    try:
        core_metadata.Metadata.from_raw(raw)
    except core_metadata.ExceptionGroup as group:
        for problem in sorted(str(e) for e in group.exceptions):
            facts.error("metadata", f"{member}: {problem}")
    name, version = raw.get("name", ""), raw.get("version", "")
    if canonicalize_name(str(name)) != artifact.project or canonicalize_version(
        str(version)
    ) != canonicalize_version(artifact.version):
        facts.error(
            "metadata",
            f"{member} says {name} {version}, the filename says {artifact.project} "
            f"{artifact.version}",
        )
    _check_description(facts, raw, member)
    facts.metadata = dict(raw)
    if isinstance(raw.get("description"), str):  # compared, not kept: it may be megabytes
        digest = hashlib.sha256(raw["description"].encode("utf-8", "surrogatepass"))
        facts.metadata["description"] = digest.hexdigest()


def _check_description(facts: _WheelFacts, raw: Any, member: str) -> None:
    description = raw.get("description")
    content_type = raw.get("description_content_type")
    if not description or description.rstrip() == "UNKNOWN":
        facts.warning("metadata", f"{member}: no long description (PyPI shows an empty page)")
        return
    if content_type is None:
        facts.warning(
            "metadata",
            f"{member}: no Description-Content-Type; PyPI renders the description as "
            "reStructuredText",
        )
    if content_type is None or content_type.split(";")[0].strip() == "text/x-rst":
        if len(description) > RENDER_LIMIT:
            facts.warning(
                "metadata",
                f"{member}: the long description ({len(description)} characters) is over "
                f"{RENDER_LIMIT} and was not rendered (docutils needs about 2 KiB of memory a "
                "character): run 'twine check' on it",
            )
            return
        import readme_renderer.rst

        warnings = io.StringIO()
        with _RENDERING:  # one at a time: docutils holds the GIL, and memory is bounded
            rendered = readme_renderer.rst.render(description, stream=warnings)
        if rendered is None:
            first = warnings.getvalue().strip().splitlines()[:1]
            facts.error(
                "metadata",
                f"{member}: the long description does not render as reStructuredText "
                f"(PyPI would refuse it){': ' + first[0] if first else ''}",
            )


def sdist_metadata(path: Path) -> bytes:
    """The sdist's top-level PKG-INFO (at most :func:`metadata_cap` bytes)."""
    cap = metadata_cap()
    try:
        with _pkg_info(path) as found:
            if found is not None:
                size, stream = found
                if size > cap:
                    raise InvalidInput(
                        f"{path}: PKG-INFO holds {size} bytes, over the limit of {cap} bytes "
                        "for metadata (raise the limit with --max-metadata-mb)"
                    )
                return check_header_lines(stream.read(cap), source=f"{path}: PKG-INFO")
    except (  # what zipfile, tarfile and their decompressors raise on a damaged file
        OSError,
        EOFError,
        ValueError,
        RuntimeError,
        NotImplementedError,
        tarfile.TarError,
        zipfile.BadZipFile,
        zlib.error,
    ):
        pass
    raise InvalidInput(f"{path}: not a readable sdist with a top-level PKG-INFO")


@contextlib.contextmanager
def _pkg_info(path: Path) -> Iterator[tuple[int, IO[bytes]] | None]:
    """The top-level PKG-INFO's size and a stream of it, if there is one."""
    if path.name.endswith(".zip"):
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if info.filename.count("/") == 1 and info.filename.endswith("/PKG-INFO"):
                    with archive.open(info) as stream:
                        yield info.file_size, stream
                        return
            yield None
            return
    with tarfile.open(path, "r:gz") as tar:
        for member in tar:
            if member.name.count("/") == 1 and member.name.endswith("/PKG-INFO"):
                extracted = tar.extractfile(member)
                if extracted is not None:
                    yield member.size, extracted
                    return
        yield None


# -- ELF members: one pass per wheel ---------------------------------------------------


@dataclass(frozen=True)
class ElfCheck:
    """A check of each ELF member of a wheel. :func:`_elf_pass` extracts every ELF
    member once (to a scratch file, streaming) and hands it to every check that applies
    to the wheel; a wheel that no check applies to is not extracted at all."""

    name: str
    applies: Callable[[Artifact], bool]
    # (the wheel's facts so far, read-only; member name; extracted file) -> findings
    run: Callable[[_WheelFacts, str, Path], Iterable[Finding]]
    # after the last member: (the wheel's facts, the wheel) -> findings
    finish: Callable[[_WheelFacts, Wheel], Iterable[Finding]] | None = None


def _elf_pass(facts: _WheelFacts, wheel: Wheel, checks: Iterable[ElfCheck]) -> None:
    active = [c for c in checks if c.applies(facts.artifact)]
    if not active:
        return
    with contextlib.ExitStack() as stack:

        def scratch() -> Path:  # made only for a wheel that holds ELF members
            return Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="wheelforge-")))

        for member, path in iter_elf_members(wheel, scratch):
            for check in active:
                try:
                    facts.findings += check.run(facts, member, path)
                except InvalidInput as err:  # unreadable: say so once, not once a check
                    facts.error("elf", _strip(err, path))
                    break
        for check in active:
            if check.finish is not None:
                facts.findings += check.finish(facts, wheel)


# -- fallback guards: no GPU content in a plain wheel or the null variant ------------------

# Sections in which nvcc and hipcc put device code.
DEVICE_SECTIONS = {
    ".nv_fatbin": "CUDA",
    "__nv_relfatbin": "CUDA",
    ".nvFatBinSegment": "CUDA",
    ".hip_fatbin": "HIP",
    ".hipFatBinSegment": "HIP",
}
DEVICE_MACHINES = {"EM_CUDA": "CUDA", "EM_AMDGPU": "AMDGPU"}  # a bare cubin / code object
# ROCm libraries beyond those repair.classify knows (the HIP runtime, drivers).
_ROCM_LIBRARIES = re.compile(
    r"lib(rocblas|rocfft|rocrand|rocsolver|rocsparse|roctx64|roctracer64|rocm_smi64|"
    r"hip(blas|blaslt|fft|rand|solver|sparse|rtc)|MIOpen|rccl|amd_smi)\.so(\.\d+)*"
)
# Pure-Python nvidia-* projects: no GPU runtime behind them.
_NVIDIA_PURE_PYTHON = frozenset({"nvidia-ml-py", "nvidia-ml-py3", "nvidia-variant-provider"})
# Markers that make a requirement opt-in rather than part of every install.
_OPT_IN_MARKERS = frozenset(
    {"extra", "variant_label", "variant_namespaces", "variant_features", "variant_properties"}
)
_MARKER_WORDS = frozenset({"and", "or", "in", "not"})


def _is_fallback(artifact: Artifact) -> bool:
    return artifact.is_wheel and artifact.role is Role.FALLBACK


def _fallback_role(artifact: Artifact) -> str:
    return "the plain wheel" if artifact.label is None else "the null variant"


def _guard(facts: _WheelFacts, message: str) -> Finding:
    role = _fallback_role(facts.artifact)
    return Finding(
        Severity.ERROR,
        facts.artifact.name,
        "fallback-gpu",
        f"{message}; {role} is the fallback for machines without a GPU: move it to a variant",
    )


def fallback_elf_findings(facts: _WheelFacts, member: str, path: Path) -> list[Finding]:
    """Device code in, or GPU libraries linked by, one ELF member of a fallback wheel."""
    findings = []
    kind = DEVICE_MACHINES.get(machine(path, member=member))
    if kind is not None:
        findings.append(_guard(facts, f"{member} is {kind} device code"))
        return findings
    device = [s for s in section_names(path, member=member) if s in DEVICE_SECTIONS]
    bundles = [s for s in offload_bundles(path, member=member) if s not in device]
    if device:
        kinds = "/".join(sorted({DEVICE_SECTIONS[s] for s in device}))
        findings.append(_guard(facts, f"{member} holds {kinds} device code ({', '.join(device)})"))
    if bundles:
        where = ", ".join(bundles)
        findings.append(_guard(facts, f"{member} holds a clang offload bundle (in {where})"))
    gpu = [
        lib
        for lib in dynamic_info(path, member=member).needed
        if classify_library(lib) is not None or _ROCM_LIBRARIES.fullmatch(lib)
    ]
    if gpu:
        findings.append(_guard(facts, f"{member} links GPU libraries {', '.join(gpu)}"))
    return findings


FALLBACK_ELF_CHECK = ElfCheck("fallback-gpu", _is_fallback, fallback_elf_findings)


# -- layout: folders, copies, ELF dependencies once installed (publish/layout.py) ---------


def _from_layout(facts: _WheelFacts, problems: Iterable[layout.Problem]) -> list[Finding]:
    name = facts.artifact.name
    return [Finding(Severity(p.severity), name, p.check, p.message) for p in problems]


def dependency_elf_check(allow_missing: Sequence[str] = ()) -> ElfCheck:
    """Every ELF member's DT_NEEDED resolves once installed (``allow_missing``: globs
    of sonames the system provides beyond the platform's policy)."""
    finish = functools.partial(dependency_findings, allow_missing=tuple(allow_missing))
    return ElfCheck("dependencies", _is_linux_wheel, _record_dynamic, finish)


def _record_dynamic(facts: _WheelFacts, member: str, path: Path) -> list[Finding]:
    facts.dynamic[member] = dynamic_info(path, member=member)
    return []


def dependency_findings(
    facts: _WheelFacts, wheel: Wheel, *, allow_missing: tuple[str, ...] = ()
) -> list[Finding]:
    """The DT_NEEDED entries of the wheel's ELF members (read by ``_record_dynamic``)
    that nothing provides once installed (:func:`layout.dependency_problems`)."""
    if not facts.dynamic:
        return []
    properties = facts.properties if facts.artifact.role is not Role.FALLBACK else None
    context = layout.Context(
        platform=wheel.filename.platform,
        requires_dist=tuple((facts.metadata or {}).get("requires_dist", [])),
        namespaces=None if properties is None else frozenset(p.namespace for p in properties),
        allowed=allow_missing,
    )
    return _from_layout(facts, layout.dependency_problems(wheel.members, facts.dynamic, context))


def _is_linux_wheel(artifact: Artifact) -> bool:
    """A wheel for Linux (``manylinux_*``, ``musllinux_*``, ``linux_*``): the loader
    that :func:`layout.dependency_problems` models."""
    return artifact.is_wheel and "linux" in WheelFilename.parse(artifact.name).platform


ELF_CHECKS: tuple[ElfCheck, ...] = (FALLBACK_ELF_CHECK, dependency_elf_check())


# -- ISA audit: the machine code needs no newer CPU than the wheel claims ---------------


def isa_elf_check(dispatched: Sequence[str] = ()) -> ElfCheck:
    """The ISA audit as an ELF check (``dispatched``: ``LIB_GLOB:FUNCTION_GLOB``)."""
    declarations = parse_declarations(dispatched)
    return ElfCheck(
        "isa", _is_x86_64_wheel, functools.partial(isa_findings, declarations=declarations)
    )


def _is_x86_64_wheel(artifact: Artifact) -> bool:
    return artifact.is_wheel and "x86_64" in artifact.name


def isa_findings(
    facts: _WheelFacts, member: str, path: Path, *, declarations: tuple[Declaration, ...] = ()
) -> list[Finding]:
    """One ELF member's machine code against the level its wheel claims (plain and null:
    baseline; ``x86_64 :: level :: vN``: vN). See :func:`wheelforge.isa.judge`."""
    artifact = facts.artifact
    if artifact.label is None:
        claim, claimant = BASELINE, "the plain wheel"
    elif artifact.label == NULL_LABEL:
        claim, claimant = BASELINE, "the null variant"
    else:
        claim, claimant = claimed_level(facts.properties), f"variant {artifact.label!r}"
    library = audit_elf(path, member=member, declarations=declarations)
    return [
        Finding(Severity(problem.severity), artifact.name, "isa", problem.message)
        for problem in judge(library, claim, claimant)
    ]


def fallback_requirement_findings(facts: _WheelFacts) -> list[Finding]:
    """GPU runtime packages that every install of a fallback wheel pulls in."""
    if not _is_fallback(facts.artifact) or facts.metadata is None:
        return []
    findings = []
    for line in facts.metadata.get("requires_dist", []):
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            continue  # a metadata finding already
        if _is_gpu_runtime_project(requirement.name) and not _opt_in(requirement):
            quoted = f" ({line})" if line.strip() != requirement.name else ""
            findings.append(
                _guard(facts, f"requires the GPU runtime package {requirement.name}{quoted}")
            )
    return findings


def _is_gpu_runtime_project(name: str) -> bool:
    name = canonicalize_name(name)
    if name.startswith("nvidia-"):
        return name not in _NVIDIA_PURE_PYTHON
    return name == "rocm" or name.startswith("rocm-")


def _opt_in(requirement: Requirement) -> bool:
    """Whether the marker makes the requirement optional (an extra, a variant marker);
    a marker on the platform alone (``sys_platform == "linux"``) does not."""
    if requirement.marker is None:
        return False
    unquoted = re.sub(r"\"[^\"]*\"|'[^']*'", " ", str(requirement.marker))
    names = set(re.findall(r"[A-Za-z_][A-Za-z0-9_.]*", unquoted)) - _MARKER_WORDS
    return bool(names & _OPT_IN_MARKERS)


def fallback_guard(path: Path) -> list[Finding]:
    """The fallback guards alone, on one wheel file: ``build`` runs them on what it built.
    A wheel that is not a fallback (a labelled variant, an sdist) has nothing to guard."""
    artifact = classify(path)
    if artifact is None or not _is_fallback(artifact):
        return []
    facts = _WheelFacts(artifact)
    with Wheel(path) as wheel:
        raw, _ = parse_core_metadata(wheel.core_metadata())
        facts.metadata = dict(raw)
        facts.findings += fallback_requirement_findings(facts)
        _elf_pass(facts, wheel, (FALLBACK_ELF_CHECK,))
    return facts.findings


# -- the set ------------------------------------------------------------------------


def _check_set(
    directory: Path, artifacts: list[Artifact], facts: list[_WheelFacts]
) -> list[Finding]:
    findings: list[Finding] = []

    def error(file: str, check: str, message: str) -> None:
        findings.append(Finding(Severity.ERROR, file, check, message))

    releases = sorted({(a.project, a.version) for a in artifacts})
    if len(releases) > 1:
        names = ", ".join(f"{p} {v}" for p, v in releases)
        error(
            directory.name + "/",
            "release",
            f"holds {len(releases)} releases ({names}); a release set is one name and one version",
        )
    by_release: dict[tuple[str, str], list[_WheelFacts]] = defaultdict(list)
    for fact in facts:
        by_release[fact.artifact.project, fact.artifact.version].append(fact)
    variants_files = {(a.project, a.version): a for a in artifacts if a.role is Role.VARIANTS_FILE}
    for release in releases:
        wheels = [f for f in by_release[release] if f.artifact.is_wheel]
        findings += _check_labels(wheels)
        findings += _check_fallback(release, wheels, directory)
        findings += _check_agreement(by_release[release])
        findings += _check_variants_file(release, wheels, variants_files.get(release))
        findings += _check_providers(wheels, variants_files.get(release))
    findings += _check_manifest(directory, artifacts)
    return findings


def _check_labels(wheels: list[_WheelFacts]) -> list[Finding]:
    """One label <-> one property set."""
    findings = []
    by_label: dict[str, tuple[str, frozenset[VariantProperty]]] = {}
    by_properties: dict[frozenset[VariantProperty], tuple[str, str]] = {}
    for fact in wheels:
        label, props = fact.artifact.label, fact.properties
        if label is None or props is None:
            continue
        name = fact.artifact.name
        seen = by_label.setdefault(label, (name, props))
        if seen[1] != props:
            findings.append(
                Finding(
                    Severity.ERROR,
                    name,
                    "label",
                    f"label {label!r} has other properties than in {seen[0]}: "
                    f"one label must mean one property set",
                )
            )
        other = by_properties.setdefault(props, (label, name))
        if other[0] != label:
            findings.append(
                Finding(
                    Severity.ERROR,
                    name,
                    "label",
                    f"label {label!r} has the same properties as label {other[0]!r} "
                    f"({other[1]}): one property set must have one label",
                )
            )
    return findings


def _check_fallback(
    release: tuple[str, str], wheels: list[_WheelFacts], directory: Path
) -> list[Finding]:
    plain = [f for f in wheels if f.artifact.label is None]
    null = [f for f in wheels if f.artifact.label == NULL_LABEL]
    variants = [f for f in wheels if f.artifact.role is Role.VARIANT]
    where = f"{release[0]} {release[1]}"
    if not variants or plain:
        return []
    if not null:
        return [
            Finding(
                Severity.ERROR,
                directory.name + "/",
                "fallback",
                f"{where}: no fallback: machines that no variant fits get nothing; "
                'add a plain wheel (kind = "plain") or a null variant (kind = "null")',
            )
        ]
    return [
        Finding(
            Severity.WARNING,
            directory.name + "/",
            "fallback",
            f"{where}: no plain wheel: installers without variant support (pip) find no wheel",
        )
    ]


def _check_agreement(facts: list[_WheelFacts]) -> list[Finding]:
    """Every wheel's METADATA equals the others' but for a variant's own fields."""
    findings: list[Finding] = []
    readable = [f for f in facts if f.metadata is not None and f.artifact.is_wheel]
    readable.sort(key=lambda f: (f.artifact.label is not None, f.artifact.name))
    if not readable:
        return findings
    reference = readable[0]
    assert reference.metadata is not None
    for fact in readable[1:]:
        assert fact.metadata is not None
        keys = set(reference.metadata) | set(fact.metadata)
        differing = sorted(
            k for k in keys - VARIANT_FIELDS if reference.metadata.get(k) != fact.metadata.get(k)
        )
        if differing:
            fields = ", ".join(_field_name(k) for k in differing)
            findings.append(
                Finding(
                    Severity.ERROR,
                    fact.artifact.name,
                    "metadata",
                    f"METADATA differs from {reference.artifact.name} in {fields} "
                    "(a variant may only add Requires-Dist)",
                )
            )
    return findings


def _check_variants_file(
    release: tuple[str, str], wheels: list[_WheelFacts], variants_file: Artifact | None
) -> list[Finding]:
    labelled = [f for f in wheels if f.variant is not None]
    expected: VariantMetadata | None = None
    if labelled:
        try:
            expected = merge_all((f.artifact.name, f.variant) for f in labelled if f.variant)
        except InvalidInput as err:
            return [
                Finding(Severity.ERROR, labelled[0].artifact.name, "variants-file", err.message)
            ]
    if variants_file is None:
        if expected is None:
            return []
        return [
            Finding(
                Severity.INFO,
                f"{release[0].replace('-', '_')}-{release[1]}-variants.json",
                "variants-file",
                "not in the directory: 'wheelforge index' and 'publish' write it from the wheels",
            )
        ]
    name = variants_file.name
    data = variants_file.path.read_bytes()
    rejected = [
        Finding(Severity.ERROR, name, "uv", rejection.line("this release"))
        for rejection in installer_rules.file_rejections(data, source=name)
    ]
    try:
        actual = loads(data, source=name)
    except InvalidInput as err:
        return [*rejected, Finding(Severity.ERROR, name, "variants-file", err.message)]
    if expected is None:
        expected = VariantMetadata(namespace_priorities=())
    return rejected + [
        Finding(Severity.ERROR, name, "variants-file", diff)
        for diff in differences(actual, expected)
    ]


def _check_providers(wheels: list[_WheelFacts], variants_file: Artifact | None) -> list[Finding]:
    """Warnings, once per release, on providers whose variants are never selected and on
    an unknown ``$schema`` (``variants.lint``): uv installs such a release."""
    if variants_file is not None:
        try:
            meta = loads(variants_file.path.read_bytes(), source=variants_file.name)
        except InvalidInput:
            return []  # an error of _check_variants_file
        where, problems = variants_file.name, unknown_schema_problems(meta)
    else:
        labelled = [f.variant for f in wheels if f.variant is not None]
        if not labelled:
            return []
        meta, problems = labelled[0], []
        where = next(f.artifact.name for f in wheels if f.variant is meta)
    problems += provider_problems(meta)
    return [Finding(Severity.WARNING, where, "providers", problem) for problem in problems]


def _check_manifest(directory: Path, artifacts: list[Artifact]) -> list[Finding]:
    if not (directory / MANIFEST_NAME).exists():
        return []
    findings = []
    try:
        entries = read_manifest(directory)["artifacts"]
    except InvalidInput as err:
        return [Finding(Severity.ERROR, MANIFEST_NAME, "manifest", err.message)]
    listed = set()
    for entry in entries:
        file = entry["file"]  # read_manifest: a file name in ``directory``
        listed.add(file)
        path = inside(directory, file, where=f"{directory / MANIFEST_NAME}: {file}")
        if not path.exists():
            findings.append(
                Finding(
                    Severity.ERROR,
                    MANIFEST_NAME,
                    "manifest",
                    f"lists {file}, which is not in the directory",
                )
            )
        elif entry.get("sha256") != sha256_file(path):
            findings.append(
                Finding(
                    Severity.ERROR,
                    file,
                    "manifest",
                    f"sha256 differs from the one {MANIFEST_NAME} records",
                )
            )
    for artifact in artifacts:
        if artifact.is_wheel and artifact.name not in listed:
            findings.append(
                Finding(
                    Severity.WARNING,
                    artifact.name,
                    "manifest",
                    f"not listed in {MANIFEST_NAME} (built elsewhere?)",
                )
            )
    return findings


# -- helpers ------------------------------------------------------------------------


def _strip(err: InvalidInput, path: Path) -> str:
    """The message without the path prefix: the findings table has a file column."""
    for prefix in (f"{path}: ", f"{path.name}: "):
        if err.message.startswith(prefix):
            return err.message[len(prefix) :]
    return err.message


def _version_tuple(value: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in value.split("."))
    except ValueError:
        return (0,)


def _field_name(key: str) -> str:
    return "-".join(part.capitalize() for part in key.split("_"))


def severities(findings: Iterable[Finding]) -> dict[str, int]:
    counts = dict.fromkeys((str(s) for s in Severity), 0)
    for finding in findings:
        counts[str(finding.severity)] += 1
    return counts
