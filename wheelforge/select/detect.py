"""What this machine supports, per namespace: reading NVML, sysfs, ``/proc`` and vendor tools.

Each ``detect_*`` tries its sources in order and the first that answers wins; a missing
file or tool is "not found", never an error. The facts become features through the pure
functions of :mod:`wheelforge.variants.supported`.
"""

from __future__ import annotations

import ctypes
import os
import re
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from wheelforge.errors import InvalidInput
from wheelforge.variants import supported

NONE_FOUND = "none found"

FORCE_CUDA_DRIVER = "NV_VARIANT_PROVIDER_FORCE_CUDA_DRIVER_VERSION"
FORCE_SM_ARCH = "NV_VARIANT_PROVIDER_FORCE_SM_ARCH"
FORCE_GFX_ARCH = "AMD_VARIANT_PROVIDER_FORCE_GFX_ARCH"
FORCE_ROCM_VERSION = "AMD_VARIANT_PROVIDER_FORCE_ROCM_VERSION"
FORCE_TPU_PRESENT = "TPU_VARIANT_PROVIDER_FORCE_PRESENT"

# The PCI ids uv 0.13.8's tpu provider looks for (Google's vendor id and its TPU chips),
# as they stand in uv's binary.
GOOGLE_PCI_VENDOR = 0x1AE0
TPU_PCI_DEVICES = frozenset(
    {0x0027, 0x0056, 0x005E, 0x0062, 0x0063, 0x006F, 0x0076, 0x007C, 0x0083}
)
# The values uv takes as "yes" for the override (any case); uv ignores every other value.
_TRUE = frozenset({"1", "true", "yes"})

NVIDIA_SMI_QUERY = ("nvidia-smi", "--query-gpu=compute_cap,name", "--format=csv,noheader")

_MAJOR_MINOR = re.compile(r"\d+\.\d+")
_GFX_NAME = re.compile(r"gfx[0-9a-f]+")
_GFX_LIST = re.compile(r"gfx[0-9a-f]+(?:,gfx[0-9a-f]+)*")
_KERNEL_MODULE_VERSION = re.compile(r"Kernel Module.*?\s(\d+\.\d+(?:\.\d+)*)(?:\s|$)")
_SMI_CUDA_VERSION = re.compile(r"CUDA Version:\s*(\d+\.\d+)")
_SMI_DRIVER_VERSION = re.compile(r"Driver Version:\s*(\d+(?:\.\d+)+)")
_ROCMINFO_AGENT = re.compile(r"^\s*Name:\s+(gfx[0-9a-f]+)\s*$", re.MULTILINE)

# Compute capability of well-known GPUs, for when only the model name is known.
GPU_MODEL_SM: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\bG?B200\b"), "10.0"),
    (re.compile(r"\bG?H[12]00\b"), "9.0"),
    # GeForce numbers end in 50-90; Quadro RTX 4000/5000 are Turing (7.5), not in here.
    (re.compile(r"\bRTX 50[5-9]0\b"), "12.0"),
    (re.compile(r"\bRTX 40[5-9]0\b"), "8.9"),
    (re.compile(r"\bL40S?\b|\bL4\b"), "8.9"),
    (re.compile(r"\bRTX 30[5-9]0\b"), "8.6"),
    (re.compile(r"\bA10G?\b"), "8.6"),
    (re.compile(r"\bA100\b|\bA30\b"), "8.0"),
    (re.compile(r"\bRTX 20[5-9]0\b|\bT4\b"), "7.5"),
    (re.compile(r"\bV100\b"), "7.0"),
)


@dataclass(frozen=True)
class Detection:
    namespace: str
    features: dict[str, list[str]]  # this namespace's part of Supported; {}: nothing supported
    facts: dict[str, str]  # what was found, for people: driver, GPU name, CPU model
    source: str  # where it came from, or NONE_FOUND


@dataclass(frozen=True)
class NvmlInfo:
    cuda_driver: str
    sm_arch: str | None
    gpu: str | None


def run_tool(argv: Sequence[str], timeout: float = 10) -> str | None:
    """A tool's standard output; ``None`` when it is missing, fails or hangs."""
    try:
        done = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def _sm_key(sm_arch: str) -> tuple[int, int]:
    major, _, minor = sm_arch.partition(".")
    return int(major), int(minor or 0)


def query_nvml() -> NvmlInfo | None:
    """The driver's CUDA version and the newest GPU, from NVML; ``None`` without NVML."""
    try:
        lib = ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return None
    try:
        if lib.nvmlInit_v2() != 0:
            return None
    except AttributeError:
        return None
    try:
        return _query_nvml(lib)
    except AttributeError:  # a driver too old for the _v2 entry points
        return None
    finally:
        lib.nvmlShutdown()


def _query_nvml(lib: ctypes.CDLL) -> NvmlInfo | None:
    version = ctypes.c_int()
    if lib.nvmlSystemGetCudaDriverVersion_v2(ctypes.byref(version)) != 0:
        return None
    cuda_driver = f"{version.value // 1000}.{version.value % 1000 // 10}"
    count = ctypes.c_uint()
    if lib.nvmlDeviceGetCount_v2(ctypes.byref(count)) != 0:
        return NvmlInfo(cuda_driver, None, None)
    best: tuple[str, str | None] | None = None
    for index in range(count.value):
        handle = ctypes.c_void_p()
        if lib.nvmlDeviceGetHandleByIndex_v2(ctypes.c_uint(index), ctypes.byref(handle)) != 0:
            continue
        major, minor = ctypes.c_int(), ctypes.c_int()
        status = lib.nvmlDeviceGetCudaComputeCapability(
            handle, ctypes.byref(major), ctypes.byref(minor)
        )
        if status != 0:
            continue
        name = ctypes.create_string_buffer(96)
        named = lib.nvmlDeviceGetName(handle, name, ctypes.c_uint(len(name))) == 0
        sm_arch = f"{major.value}.{minor.value}"
        if best is None or _sm_key(sm_arch) > _sm_key(best[0]):
            best = (sm_arch, name.value.decode(errors="replace") if named else None)
    if best is None:
        return NvmlInfo(cuda_driver, None, None)
    return NvmlInfo(cuda_driver, *best)


def _environ() -> dict[str, str]:
    return dict(os.environ)


@dataclass(frozen=True)
class System:
    """What detection reads; tests point it at captured fixtures."""

    root: Path = Path("/")  # prefix for /proc, /sys, /opt/rocm
    env: Mapping[str, str] = field(default_factory=_environ)
    run: Callable[[Sequence[str]], str | None] = run_tool
    nvml: Callable[[], NvmlInfo | None] = query_nvml

    def path(self, absolute: str) -> Path:
        return self.root / absolute.lstrip("/")

    def read(self, absolute: str) -> str | None:
        return _read(self.path(absolute))


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def _nothing(namespace: str) -> Detection:
    return Detection(namespace, {}, {}, NONE_FOUND)


def _forced(
    env: Mapping[str, str], name: str, pattern: re.Pattern[str], expected: str
) -> str | None:
    # An empty variable counts as unset, as it does for most tools.
    value = env.get(name, "").strip()
    if not value:
        return None
    if not pattern.fullmatch(value):
        raise InvalidInput(f"{name}={value!r}: expected {expected}")
    return value


# NVIDIA


def _nvidia_detection(
    cuda_driver: str | None, sm_arch: str | None, facts: dict[str, str | None], source: str
) -> Detection:
    found = {key: value for key, value in facts.items() if value is not None}
    return Detection("nvidia", supported.nvidia(cuda_driver, sm_arch), found, source)


def _kernel_driver(system: System) -> tuple[str, str] | None:
    text = system.read("/sys/module/nvidia/version")
    if text is not None and re.fullmatch(r"\d+(\.\d+)+", text.strip()):
        return text.strip(), "/sys/module/nvidia/version"
    text = system.read("/proc/driver/nvidia/version")
    if text is not None:
        match = _KERNEL_MODULE_VERSION.search(text.partition("\n")[0])
        if match:
            return match[1], "/proc/driver/nvidia/version"
    return None


def smi_compute_caps(output: str) -> tuple[str, str | None] | None:
    """The highest ``(sm_arch, gpu)`` in ``nvidia-smi --query-gpu=compute_cap,name`` lines."""
    best: tuple[str, str | None] | None = None
    for line in output.splitlines():
        cap, _, name = (part.strip() for part in line.partition(","))
        if _MAJOR_MINOR.fullmatch(cap) and (best is None or _sm_key(cap) > _sm_key(best[0])):
            best = (cap, name or None)
    return best


def model_sm(model: str) -> str | None:
    """The compute capability of a well-known GPU model, e.g. ``NVIDIA H100 80GB HBM3``."""
    for pattern, sm_arch in GPU_MODEL_SM:
        if pattern.search(model):
            return sm_arch
    return None


def _proc_gpu_models(system: System) -> list[str]:
    models = []
    for information in sorted(system.path("/proc/driver/nvidia/gpus").glob("*/information")):
        for line in (_read(information) or "").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "Model" and value.strip():
                models.append(value.strip())
    return models


def _gpu_sm(system: System) -> tuple[str | None, str | None, str | None]:
    """``(sm_arch, gpu, source)``: from ``nvidia-smi``, else from the model in ``/proc``."""
    output = system.run(NVIDIA_SMI_QUERY)
    found = smi_compute_caps(output) if output is not None else None
    if found is not None:
        return found[0], found[1], "nvidia-smi"
    known = [(sm, model) for model in _proc_gpu_models(system) if (sm := model_sm(model))]
    if known:
        sm_arch, model = max(known, key=lambda pair: _sm_key(pair[0]))
        return sm_arch, model, "/proc/driver/nvidia/gpus/*/information"
    return None, None, None


def detect_nvidia(system: System) -> Detection:
    cuda_driver = _forced(system.env, FORCE_CUDA_DRIVER, _MAJOR_MINOR, "MAJOR.MINOR like 12.8")
    if cuda_driver is not None:
        # As in NVIDIA's provider, the SM override only counts beside the driver override.
        sm_arch = _forced(system.env, FORCE_SM_ARCH, _MAJOR_MINOR, "MAJOR.MINOR like 9.0")
        source = FORCE_CUDA_DRIVER + (f" + {FORCE_SM_ARCH}" if sm_arch else "")
        facts = {"cuda_driver": cuda_driver, "sm_arch": sm_arch}
        return _nvidia_detection(cuda_driver, sm_arch, facts, source)

    nvml = system.nvml()
    if nvml is not None:
        facts = {"cuda_driver": nvml.cuda_driver, "sm_arch": nvml.sm_arch, "gpu": nvml.gpu}
        return _nvidia_detection(nvml.cuda_driver, nvml.sm_arch, facts, "NVML")

    kernel = _kernel_driver(system)
    if kernel is not None:
        driver, source = kernel
        cuda_driver = supported.cuda_from_driver(driver)
        sm_arch, gpu, sm_source = _gpu_sm(system)
        facts = {"cuda_driver": cuda_driver, "sm_arch": sm_arch, "driver": driver, "gpu": gpu}
        source += f" + {sm_source}" if sm_source else ""
        return _nvidia_detection(cuda_driver, sm_arch, facts, source)

    # No kernel driver to be seen (a container without /proc/driver/nvidia, say).
    header = system.run(["nvidia-smi"])
    cuda_match = _SMI_CUDA_VERSION.search(header or "")
    if header is None or cuda_match is None:
        return _nothing("nvidia")
    driver_match = _SMI_DRIVER_VERSION.search(header)
    output = system.run(NVIDIA_SMI_QUERY)
    sm_arch, gpu = (smi_compute_caps(output) if output else None) or (None, None)
    facts = {
        "cuda_driver": cuda_match[1],
        "sm_arch": sm_arch,
        "driver": driver_match[1] if driver_match else None,
        "gpu": gpu,
    }
    return _nvidia_detection(cuda_match[1], sm_arch, facts, "nvidia-smi")


# AMD


def _kfd_archs(system: System) -> list[str]:
    nodes = system.path("/sys/class/kfd/kfd/topology/nodes")
    try:
        names = [entry.name for entry in nodes.iterdir() if entry.name.isdigit()]
    except OSError:
        return []
    archs = []
    for name in sorted(names, key=int):
        for line in (_read(nodes / name / "properties") or "").splitlines():
            key, _, value = line.partition(" ")
            if key == "gfx_target_version" and value.strip().isdigit() and int(value) != 0:
                archs.append(supported.gfx_arch_name(int(value)))
    return archs


def rocminfo_archs(output: str) -> list[str]:
    """The GPU agents' names in ``rocminfo`` output (CPU agents have no ``gfx`` name)."""
    return [name for name in _ROCMINFO_AGENT.findall(output) if name != "gfx000"]


def agent_enumerator_archs(output: str) -> list[str]:
    """The GPUs in ``rocm_agent_enumerator`` output; ``gfx000`` is the CPU."""
    names = (line.strip() for line in output.splitlines())
    return [name for name in names if _GFX_NAME.fullmatch(name) and name != "gfx000"]


def _amdgpu_loaded(system: System) -> bool:
    return system.path("/dev/kfd").exists() or system.path("/sys/module/amdgpu").exists()


def _gfx_archs(system: System) -> tuple[list[str], str] | None:
    """``(archs, source)``: the override, else the KFD topology, else the ROCm tools."""
    forced = _forced(system.env, FORCE_GFX_ARCH, _GFX_LIST, "comma-separated names like gfx942")
    if forced is not None:
        return forced.split(","), FORCE_GFX_ARCH
    if archs := _kfd_archs(system):
        return archs, "KFD topology"
    # Without the amdgpu driver the ROCm tools can find no GPU, and rocm_agent_enumerator
    # alone takes ~0.2 s to say so: don't ask them.
    if not _amdgpu_loaded(system):
        return None
    output = system.run(["rocminfo"])
    if output and (archs := rocminfo_archs(output)):
        return archs, "rocminfo"
    output = system.run(["rocm_agent_enumerator"])
    if output and (archs := agent_enumerator_archs(output)):
        return archs, "rocm_agent_enumerator"
    return None


def _installed_rocm(system: System) -> str | None:
    match = re.match(r"\s*(\d+)\.(\d+)", system.read("/opt/rocm/.info/version") or "")
    return f"{match[1]}.{match[2]}" if match else None


def detect_amd(system: System) -> Detection:
    rocm = _forced(system.env, FORCE_ROCM_VERSION, _MAJOR_MINOR, "MAJOR.MINOR like 6.4")
    found = _gfx_archs(system)
    if found is None:
        return _nothing("amd")
    archs, sources = found[0], [found[1]]
    if rocm is not None:
        sources.append(FORCE_ROCM_VERSION)
    elif rocm := _installed_rocm(system):
        sources.append("/opt/rocm/.info/version")
    facts = {"gfx_arch": ",".join(dict.fromkeys(archs))}
    if rocm is not None:
        facts["rocm_version"] = rocm
    return Detection("amd", supported.amd(archs, rocm), facts, " + ".join(sources))


# TPU


def _pci_id(text: str | None) -> int | None:
    try:
        return int(text.strip(), 16) if text is not None else None
    except ValueError:
        return None


def tpu_pci_devices(system: System) -> list[str]:
    """The PCI addresses of Google TPUs under ``/sys/bus/pci/devices``."""
    devices = system.path("/sys/bus/pci/devices")
    try:
        addresses = sorted(entry.name for entry in devices.iterdir())
    except OSError:
        return []
    return [
        address
        for address in addresses
        if _pci_id(_read(devices / address / "vendor")) == GOOGLE_PCI_VENDOR
        and _pci_id(_read(devices / address / "device")) in TPU_PCI_DEVICES
    ]


def detect_tpu(system: System) -> Detection:
    """As uv's tpu provider: present when ``TPU_VARIANT_PROVIDER_FORCE_PRESENT`` is
    1/true/yes (any case), else when a Google TPU is on the PCI bus; and like it, an
    answer either way (``present :: false`` is a property uv reports without a TPU)."""
    if system.env.get(FORCE_TPU_PRESENT, "").lower() in _TRUE:
        return Detection("tpu", supported.tpu(True), {"present": "true"}, FORCE_TPU_PRESENT)
    found = tpu_pci_devices(system)
    facts = {"present": "true", "pci": ",".join(found)} if found else {"present": "false"}
    return Detection("tpu", supported.tpu(bool(found)), facts, "/sys/bus/pci/devices")


# CPUs


def _first_processor(cpuinfo: str, key: str) -> str | None:
    for line in cpuinfo.splitlines():
        name, sep, value = line.partition(":")
        if sep and name.strip() == key:
            return value.strip()
    return None


def detect_x86_64(system: System) -> Detection:
    cpuinfo = system.read("/proc/cpuinfo") or ""
    if _first_processor(cpuinfo, "flags") is None:
        return _nothing("x86_64")
    level = supported.x86_64_level(supported.cpuinfo_flags(cpuinfo))
    facts = {"level": f"v{level}"}
    if model := _first_processor(cpuinfo, "model name"):
        facts["cpu"] = model
    return Detection("x86_64", supported.x86_64(level), facts, "/proc/cpuinfo")


def detect_aarch64(system: System) -> Detection:
    cpuinfo = system.read("/proc/cpuinfo") or ""
    if _first_processor(cpuinfo, "Features") is None:
        return _nothing("aarch64")
    version = supported.aarch64_version(supported.cpuinfo_features(cpuinfo))
    facts = {"version": version}
    if part := _first_processor(cpuinfo, "CPU part"):
        facts["cpu_part"] = part
    return Detection("aarch64", supported.aarch64(version), facts, "/proc/cpuinfo")


DETECTORS: tuple[Callable[[System], Detection], ...] = (
    detect_nvidia,
    detect_amd,
    detect_tpu,
    detect_x86_64,
    detect_aarch64,
)


def detect(system: System | None = None) -> dict[str, Detection]:
    """Every builtin namespace's detection, in the order nvidia, amd, tpu, x86_64, aarch64."""
    system = system if system is not None else System()
    return {found.namespace: found for found in (detector(system) for detector in DETECTORS)}
