"""Hardware profiles: a small TOML file that describes a machine, for selecting and
reviewing coverage without that machine::

    description = "H100, driver 580 (CUDA 13.0), Sapphire Rapids (x86-64-v4)"
    assume = ["acme :: fast :: on"]      # optional: more supported properties

    [nvidia]
    cuda-driver = "13.0"                 # the CUDA version the driver supports
    sm-arch = "9.0"                      # the GPU's compute capability (optional)

    [amd]
    gfx-arch = ["gfx942"]
    rocm-version = "6.4"                 # optional

    [tpu]
    present = true                       # a Google TPU (without it: tpu :: present :: false)

    [x86_64]
    level = 4

    [aarch64]
    version = "9.0a"

    [installed]                          # optional: packages in the target environment,
    torch = "2.9.1"                      # for abi_dependency (instead of the real ones)

A table left out means the machine has none of that (no NVIDIA GPU, not x86_64, ...).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from wheelforge.errors import InvalidInput
from wheelforge.formats import read_toml
from wheelforge.variants import abi_dependency, supported
from wheelforge.variants.abi_dependency import Environment as AbiEnvironment
from wheelforge.variants.properties import VariantProperty
from wheelforge.variants.ranking import Supported

_VERSION = re.compile(r"\d+\.\d+")
_GFX = re.compile(r"gfx[0-9a-f]+")
_AARCH64 = ("9.0a", "8.5a", "8.4a", "8.3a", "8.2a", "8.1a", "8a")
_KEYS: Mapping[str, frozenset[str]] = {
    "": frozenset(
        {"description", "assume", "nvidia", "amd", "tpu", "x86_64", "aarch64", "installed"}
    ),
    "nvidia": frozenset({"cuda-driver", "sm-arch"}),
    "amd": frozenset({"gfx-arch", "rocm-version"}),
    "tpu": frozenset({"present"}),
    "x86_64": frozenset({"level"}),
    "aarch64": frozenset({"version"}),
}


@dataclass(frozen=True)
class Profile:
    name: str  # the file's stem
    description: str
    cuda_driver: str | None = None
    sm_arch: str | None = None
    gfx_archs: tuple[str, ...] = ()
    rocm_version: str | None = None
    x86_64_level: int | None = None
    aarch64_version: str | None = None
    assume: tuple[VariantProperty, ...] = ()
    tpu: bool = False
    installed: tuple[tuple[str, str], ...] | None = None  # (name, version); None: not given

    def abi_environment(self, env_value: str | None = None) -> AbiEnvironment | None:
        """The ``[installed]`` packages as the target environment for ``abi_dependency``
        (``VARIANT_ABI_DEPENDENCY``'s value on top); ``None`` without that table."""
        if self.installed is None:
            return None
        return abi_dependency.environment(
            dict(self.installed), where=f"profile {self.name}", env_value=env_value
        )

    def supported(self) -> dict[str, dict[str, list[str]]]:
        machine: dict[str, dict[str, list[str]]] = {}
        if self.cuda_driver is not None:
            machine["nvidia"] = supported.nvidia(self.cuda_driver, self.sm_arch)
        if self.gfx_archs:
            machine["amd"] = supported.amd(self.gfx_archs, self.rocm_version)
        machine["tpu"] = supported.tpu(self.tpu)  # uv's provider answers either way
        if self.x86_64_level is not None:
            machine["x86_64"] = supported.x86_64(self.x86_64_level)
        if self.aarch64_version is not None:
            machine["aarch64"] = supported.aarch64(self.aarch64_version)
        return with_assumed(machine, self.assume)

    def provider_env(self) -> dict[str, str]:
        """The override variables that make the real providers (and uv) see this
        machine's GPU; CPU levels have none."""
        env = {}
        if self.cuda_driver is not None:
            env["NV_VARIANT_PROVIDER_FORCE_CUDA_DRIVER_VERSION"] = self.cuda_driver
            if self.sm_arch is not None:
                env["NV_VARIANT_PROVIDER_FORCE_SM_ARCH"] = self.sm_arch
        if self.gfx_archs:
            env["AMD_VARIANT_PROVIDER_FORCE_GFX_ARCH"] = ",".join(self.gfx_archs)
            if self.rocm_version is not None:
                env["AMD_VARIANT_PROVIDER_FORCE_ROCM_VERSION"] = self.rocm_version
        if self.tpu:
            env["TPU_VARIANT_PROVIDER_FORCE_PRESENT"] = "1"
        return env


def with_assumed(
    machine: Supported, assumed: Sequence[VariantProperty]
) -> dict[str, dict[str, list[str]]]:
    """``machine`` plus ``assumed`` properties, each put first (best) in its feature."""
    result = {ns: {f: list(v) for f, v in features.items()} for ns, features in machine.items()}
    for prop in reversed(list(assumed)):
        values = result.setdefault(prop.namespace, {}).setdefault(prop.feature, [])
        if prop.value in values:
            values.remove(prop.value)
        values.insert(0, prop.value)
    return result


def load_profile(path: Path) -> Profile:
    return parse_profile(read_toml(path, what="profile"), path)


def parse_profile(data: Mapping[str, Any], path: Path) -> Profile:
    def fail(key: str, expected: str) -> InvalidInput:
        return InvalidInput(f"{path}: {key}: expected {expected}")

    for table, allowed in _KEYS.items():
        section = data if not table else data.get(table, {})
        if not isinstance(section, Mapping):
            raise fail(table, "a table")
        for key in section:
            if key not in allowed:
                where = f"{table}.{key}" if table else key
                raise fail(where, f"one of {', '.join(sorted(allowed))}")
    description = data.get("description", path.stem)
    if not isinstance(description, str):
        raise fail("description", "a string")
    nvidia, amd = data.get("nvidia", {}), data.get("amd", {})
    x86, arm = data.get("x86_64", {}), data.get("aarch64", {})
    cuda_driver = _version(nvidia, "cuda-driver", path, "nvidia", "12.8")
    sm_arch = _version(nvidia, "sm-arch", path, "nvidia", "9.0")
    if nvidia and cuda_driver is None:
        raise fail("nvidia.cuda-driver", 'the CUDA version of the driver, like "12.8"')
    gfx = amd.get("gfx-arch", [])
    if not isinstance(gfx, list) or not all(isinstance(g, str) and _GFX.fullmatch(g) for g in gfx):
        raise fail("amd.gfx-arch", 'a list of gfx names like ["gfx942"]')
    if amd and not gfx:
        raise fail("amd.gfx-arch", "at least one gfx name")
    rocm = _version(amd, "rocm-version", path, "amd", "6.4")
    level = x86.get("level")
    if level is not None and (isinstance(level, bool) or level not in (1, 2, 3, 4)):
        raise fail("x86_64.level", "an integer from 1 to 4")
    version = arm.get("version")
    if version is not None and version not in _AARCH64:
        raise fail("aarch64.version", f"one of {', '.join(_AARCH64)}")
    tpu = data["tpu"].get("present", True) if "tpu" in data else False
    if not isinstance(tpu, bool):
        raise fail("tpu.present", "true or false")
    assume = data.get("assume", [])
    if not isinstance(assume, list) or not all(isinstance(a, str) for a in assume):
        raise fail("assume", 'a list of properties like ["ns :: feature :: value"]')
    try:
        assumed = tuple(VariantProperty.parse(a) for a in assume)
    except InvalidInput as err:
        raise InvalidInput(f"{path}: assume: {err.message}") from None
    return Profile(path.stem, description, cuda_driver, sm_arch, tuple(gfx), rocm, level,
                   version, assumed, tpu, _installed(data, path))  # fmt: skip


def _installed(data: Mapping[str, Any], path: Path) -> tuple[tuple[str, str], ...] | None:
    table = data.get("installed")
    if table is None:
        return None
    if not isinstance(table, Mapping) or not all(
        isinstance(v, str) and abi_dependency.version_matches(v) for v in table.values()
    ):
        raise InvalidInput(f'{path}: installed: expected a table of versions like torch = "2.9.1"')
    return tuple((str(name), version) for name, version in table.items())


def _version(
    table: Mapping[str, Any], key: str, path: Path, where: str, example: str
) -> str | None:
    value = table.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not _VERSION.fullmatch(value):
        raise InvalidInput(
            f'{path}: {where}.{key}: expected a version like "{example}", got {value!r}'
        )
    return value


def shipped_profiles_dir() -> Path:
    return Path(str(resources.files("wheelforge").joinpath("profiles")))


def load_profiles(directory: Path | None = None) -> list[Profile]:
    """Every ``*.toml`` profile of ``directory`` (default: the ones wheelforge ships)."""
    directory = directory or shipped_profiles_dir()
    if not directory.is_dir():
        raise InvalidInput(f"--profiles {directory}: not a directory")
    profiles = [load_profile(f) for f in sorted(directory.iterdir()) if f.suffix == ".toml"]
    if not profiles:
        raise InvalidInput(f"{directory}: no *.toml profiles")
    return profiles


def find_profile(name_or_path: str) -> Profile:
    """``--profile``: a file, or the name of a profile wheelforge ships."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        return load_profile(path)
    shipped = {p.name: p for p in load_profiles()}
    if name_or_path in shipped:
        return shipped[name_or_path]
    raise InvalidInput(
        f"--profile {name_or_path}: no such file, and not a shipped profile "
        f"({', '.join(sorted(shipped))})"
    )
