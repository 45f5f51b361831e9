"""What a machine supports, per namespace, from hardware facts (pure functions).

Detection (reading sysfs, NVML, cpuinfo) lives in the selector; these functions only
turn facts into the ordered ``{feature: [values, best first]}`` the ranking needs,
following the real providers (SPEC.md, "Providers").
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from wheelforge.errors import InvalidInput

_OLDEST_CUDA_MAJOR = 11
_MAX_MINOR = 20

X86_64_LEVEL_FLAGS: tuple[frozenset[str], ...] = (
    frozenset(),  # v1: the baseline
    frozenset({"cx16", "lahf_lm", "popcnt", "pni", "ssse3", "sse4_1", "sse4_2"}),
    frozenset({"avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave"}),
    frozenset({"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"}),
)


def _parse_version(text: str) -> tuple[int, int]:
    major, _, minor = text.strip().partition(".")
    return int(major), int(minor or 0)


def nvidia(driver_cuda: str | None, sm_arch: str | None = None) -> dict[str, list[str]]:
    """``nvidia`` features for a driver supporting CUDA ``driver_cuda`` (``"12.8"``) and a
    GPU of compute capability ``sm_arch`` (``"9.0"``); no driver, nothing supported."""
    if driver_cuda is None:
        return {}
    major, minor = _parse_version(driver_cuda)
    lower = [f"{major}.{m}" for m in range(minor, -1, -1)] + [str(major)]
    for older in range(major - 1, _OLDEST_CUDA_MAJOR - 1, -1):
        lower += [f"{older}.{m}" for m in range(_MAX_MINOR, -1, -1)] + [str(older)]
    upper = [f"{major}.{m}" for m in range(minor + 1, _MAX_MINOR + 1)]
    for newer in range(major + 1, major + 4):
        upper += [str(newer)] + [f"{newer}.{m}" for m in range(_MAX_MINOR + 1)]
    features = {"cuda_version_lower_bound": lower, "cuda_version_upper_bound": upper}
    if sm_arch is not None:
        sm_major, sm_minor = _parse_version(sm_arch)
        features["sm_arch"] = [f"{sm_major}{m}_real" for m in range(sm_minor, -1, -1)] + [
            f"{sm_major}0_virtual"
        ]
    return features


def x86_64_level(cpu_flags: Iterable[str]) -> int:
    """The highest x86-64 micro-architecture level (1-4) whose flags are all present."""
    flags = set(cpu_flags)
    level = 1
    needed: set[str] = set()
    for candidate, extra in enumerate(X86_64_LEVEL_FLAGS[1:], start=2):
        needed |= extra
        if not needed <= flags:
            break
        level = candidate
    return level


def x86_64(level: int) -> dict[str, list[str]]:
    return {"level": [f"v{n}" for n in range(level, 0, -1)]}


def cpuinfo_flags(cpuinfo: str) -> set[str]:
    """The ``flags`` of the first processor in ``/proc/cpuinfo`` text."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return set(value.split())
    return set()


# The newest CUDA version each Linux driver supports: the minimum driver of each toolkit's
# GA release (CUDA toolkit release notes, "CUDA Toolkit and Corresponding Driver Versions").
CUDA_MINIMUM_DRIVERS: tuple[tuple[str, str], ...] = (
    ("13.1", "590.44.01"),
    ("13.0", "580.65.06"),
    ("12.9", "575.51.03"),
    ("12.8", "570.26"),
    ("12.6", "560.28.03"),
    ("12.5", "555.42.02"),
    ("12.4", "550.54.14"),
    ("12.3", "545.23.06"),
    ("12.2", "535.54.03"),
    ("12.1", "530.30.02"),
    ("12.0", "525.60.13"),
    ("11.8", "520.61.05"),
    ("11.7", "515.43.04"),
    ("11.6", "510.39.01"),
    ("11.5", "495.29.05"),
    ("11.4", "470.42.01"),
    ("11.3", "465.19.01"),
    ("11.2", "460.27.03"),
    ("11.1", "455.23"),
    ("11.0", "450.36.06"),
)

_DRIVER_VERSION = re.compile(r"\d+(\.\d+)*")


def _driver_parts(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def cuda_from_driver(driver_version: str) -> str | None:
    """The CUDA version (``"12.4"``) an NVIDIA driver (``"550.54.14"``) supports; ``None``
    for a driver older than CUDA 11.0's."""
    if not _DRIVER_VERSION.fullmatch(driver_version):
        raise InvalidInput(
            f"NVIDIA driver version {driver_version!r}: expected numbers like 550.54.14"
        )
    installed = _driver_parts(driver_version)
    for cuda, minimum in CUDA_MINIMUM_DRIVERS:
        if installed >= _driver_parts(minimum):
            return cuda
    return None


def gfx_arch_name(target_version: int) -> str:
    """The LLVM target name of a KFD ``gfx_target_version`` (``90402`` is ``gfx942``):
    the minor version and stepping are single hexadecimal digits."""
    major, minor, step = (
        target_version // 10000,
        (target_version // 100) % 100,
        target_version % 100,
    )
    return f"gfx{major}{minor:x}{step:x}"


_ROCM_VERSION = re.compile(r"(\d+)\.(\d+)")


def amd(gfx_archs: Sequence[str], rocm_version: str | None) -> dict[str, list[str]]:
    """``amd`` features for GPUs of ``gfx_archs`` and ROCm ``rocm_version`` (``"6.4"``); no
    GPU, nothing supported.

    There is no ``amd`` provider in uv; this rule is wheelforge's own. HIP keeps backward
    compatibility within a major version, so ROCm 6.4 also runs wheels built for 6.3 … 6.0.
    """
    if not gfx_archs:
        return {}
    features = {"gfx_arch": list(dict.fromkeys(gfx_archs))}
    if rocm_version is not None:
        match = _ROCM_VERSION.match(rocm_version)
        if match is None:
            raise InvalidInput(f"ROCm version {rocm_version!r}: expected MAJOR.MINOR like 6.4")
        major, minor = int(match[1]), int(match[2])
        features["rocm_version"] = [f"{major}.{m}" for m in range(minor, -1, -1)]
    return features


def tpu(present: bool) -> dict[str, list[str]]:
    """What uv 0.13.8's builtin tpu provider reports: ``tpu :: present :: true`` when a
    Google TPU is there, ``tpu :: present :: false`` otherwise (found by running uv, see
    docs/selection.md)."""
    return {"present": ["true" if present else "false"]}


# Each version needs its own flags and those of every version before it.
AARCH64_VERSION_FLAGS: tuple[tuple[str, frozenset[str]], ...] = (
    ("8a", frozenset()),
    ("8.1a", frozenset({"atomics", "asimdrdm", "crc32"})),
    ("8.2a", frozenset({"dcpop"})),
    ("8.3a", frozenset({"jscvt", "fcma", "lrcpc"})),
    ("8.4a", frozenset({"dit", "uscat", "ilrcpc", "flagm"})),
    ("8.5a", frozenset({"sb", "dcpodp", "flagm2", "frint"})),
    ("9.0a", frozenset({"sve2"})),
)


def aarch64_version(features: Iterable[str]) -> str:
    """The highest ARM architecture version whose ``/proc/cpuinfo`` features are all present."""
    present = set(features)
    version = AARCH64_VERSION_FLAGS[0][0]
    needed: set[str] = set()
    for candidate, extra in AARCH64_VERSION_FLAGS[1:]:
        needed |= extra
        if not needed <= present:
            break
        version = candidate
    return version


def aarch64(version: str) -> dict[str, list[str]]:
    ladder = [name for name, _ in reversed(AARCH64_VERSION_FLAGS)]
    if version not in ladder:
        raise InvalidInput(f"aarch64 version {version!r}: expected one of {', '.join(ladder)}")
    return {"version": ladder[ladder.index(version) :]}


def cpuinfo_features(cpuinfo: str) -> set[str]:
    """The ``Features`` of the first processor in an aarch64 ``/proc/cpuinfo`` text."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "Features":
            return set(value.split())
    return set()
