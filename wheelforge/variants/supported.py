"""What a machine supports, per namespace, from hardware facts (pure functions).

Detection (reading sysfs, NVML, cpuinfo) lives in the selector; these functions only
turn facts into the ordered ``{feature: [values, best first]}`` the ranking needs,
following the real providers (SPEC.md, "Providers").
"""

from __future__ import annotations

from collections.abc import Iterable

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
