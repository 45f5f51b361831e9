"""Hardware detection: captured machines (tests/fixtures/machines), precedence, the pure
functions behind it, and one real run on this machine."""

from __future__ import annotations

import os
import platform
import re
import shlex
import shutil
import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pytest

from wheelforge.errors import InvalidInput
from wheelforge.select.detect import (
    NONE_FOUND,
    NvmlInfo,
    System,
    detect,
    detect_amd,
    detect_nvidia,
    detect_tpu,
    model_sm,
    query_nvml,
    run_tool,
)
from wheelforge.variants import supported

MACHINES = Path(__file__).parent / "fixtures" / "machines"


def tool_runner(machine: Path) -> Callable[[Sequence[str]], str | None]:
    """What the machine's tools printed, from its tools.toml; unlisted tools are missing."""
    tools_file = machine / "tools.toml"
    outputs = tomllib.loads(tools_file.read_text()) if tools_file.exists() else {}
    return lambda argv: outputs.get(shlex.join(argv))


def machine(
    name: str, env: Mapping[str, str] | None = None, nvml: NvmlInfo | None = None
) -> System:
    root = MACHINES / name
    return System(root=root, env=env or {}, run=tool_runner(root), nvml=lambda: nvml)


def empty_machine(tmp_path: Path, env: Mapping[str, str]) -> System:
    return System(root=tmp_path, env=env, run=lambda argv: None, nvml=lambda: None)


CUDA_12_4 = supported.nvidia("12.4")["cuda_version_lower_bound"]
CUDA_13_0 = supported.nvidia("13.0")["cuda_version_lower_bound"]
ROCM_6_4 = ["6.4", "6.3", "6.2", "6.1", "6.0"]

EXPECTED = {
    "h100-sapphire-rapids": {
        "nvidia": (
            {
                "cuda_version_lower_bound": CUDA_13_0,
                "sm_arch": ["90_real", "90_virtual"],
            },
            {
                "cuda_driver": "13.0",
                "sm_arch": "9.0",
                "driver": "580.65.06",
                "gpu": "NVIDIA H100 80GB HBM3",
            },
            "/sys/module/nvidia/version + nvidia-smi",
        ),
        "amd": ({}, {}, NONE_FOUND),
        "x86_64": ({"level": ["v4", "v3", "v2", "v1"]}, {"level": "v4"}, "/proc/cpuinfo"),
        "aarch64": ({}, {}, NONE_FOUND),
    },
    "rtx4090-ryzen": {
        "nvidia": (
            {"cuda_version_lower_bound": CUDA_12_4, "sm_arch": ["89_real", "88_real"]},
            {
                "cuda_driver": "12.4",
                "sm_arch": "8.9",
                "driver": "550.54.14",
                "gpu": "NVIDIA GeForce RTX 4090",
            },
            "/proc/driver/nvidia/version + /proc/driver/nvidia/gpus/*/information",
        ),
        "amd": ({}, {}, NONE_FOUND),
        "x86_64": ({"level": ["v4", "v3", "v2", "v1"]}, {"level": "v4"}, "/proc/cpuinfo"),
    },
    "l4-container": {
        "nvidia": (
            {"cuda_version_lower_bound": CUDA_12_4, "sm_arch": ["89_real"]},
            {"cuda_driver": "12.4", "sm_arch": "8.9", "driver": "550.54.15", "gpu": "NVIDIA L4"},
            "nvidia-smi",
        ),
        "x86_64": ({"level": ["v4", "v3", "v2", "v1"]}, {"level": "v4"}, "/proc/cpuinfo"),
    },
    "mi300x-genoa": {
        "nvidia": ({}, {}, NONE_FOUND),
        "amd": (
            {"gfx_arch": ["gfx942"], "rocm_version": ROCM_6_4},
            {"gfx_arch": "gfx942", "rocm_version": "6.4"},
            "KFD topology + /opt/rocm/.info/version",
        ),
        "x86_64": ({"level": ["v4", "v3", "v2", "v1"]}, {"level": "v4"}, "/proc/cpuinfo"),
    },
    "mi210-rocminfo": {
        "nvidia": ({}, {}, NONE_FOUND),
        "amd": ({"gfx_arch": ["gfx90a"]}, {"gfx_arch": "gfx90a"}, "rocminfo"),
        "x86_64": ({"level": ["v3", "v2", "v1"]}, {"level": "v3"}, "/proc/cpuinfo"),
    },
    "laptop-skylake": {
        "nvidia": ({}, {}, NONE_FOUND),
        "amd": ({}, {}, NONE_FOUND),
        "x86_64": ({"level": ["v3", "v2", "v1"]}, {"level": "v3"}, "/proc/cpuinfo"),
        "aarch64": ({}, {}, NONE_FOUND),
    },
    "old-westmere": {
        "nvidia": ({}, {}, NONE_FOUND),
        "x86_64": ({"level": ["v2", "v1"]}, {"level": "v2"}, "/proc/cpuinfo"),
    },
    "graviton3": {
        "nvidia": ({}, {}, NONE_FOUND),
        "amd": ({}, {}, NONE_FOUND),
        "x86_64": ({}, {}, NONE_FOUND),
        "aarch64": (
            {"version": ["8.4a", "8.3a", "8.2a", "8.1a", "8a"]},
            {"version": "8.4a", "cpu_part": "0xd40"},
            "/proc/cpuinfo",
        ),
    },
}


def test_every_fixture_machine_is_tested() -> None:
    assert sorted(p.name for p in MACHINES.iterdir() if p.is_dir()) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_machine(name: str) -> None:
    found = detect(machine(name))
    assert list(found) == ["nvidia", "amd", "tpu", "x86_64", "aarch64"]
    for namespace, (features, facts, source) in EXPECTED[name].items():
        detection = found[namespace]
        assert detection.namespace == namespace
        assert detection.source == source
        if not features:
            assert (detection.features, detection.facts) == ({}, {})
        for feature, best_values in features.items():
            assert detection.features[feature][: len(best_values)] == best_values, feature
        assert facts.items() <= detection.facts.items()


def test_h100_features_in_full() -> None:
    nvidia = detect(machine("h100-sapphire-rapids"))["nvidia"]
    assert nvidia.features == supported.nvidia("13.0", "9.0")
    assert nvidia.features["cuda_version_lower_bound"][:3] == ["13.0", "13", "12.20"]
    assert list(nvidia.features) == [
        "cuda_version_lower_bound",
        "cuda_version_upper_bound",
        "sm_arch",
    ]


def test_cpu_model_is_a_fact() -> None:
    found = detect(machine("old-westmere"))["x86_64"]
    assert found.facts["cpu"] == "Intel(R) Xeon(R) CPU           X5670  @ 2.93GHz"


def test_nothing_found_without_any_file(tmp_path: Path) -> None:
    found = detect(empty_machine(tmp_path, {}))
    assert {ns: (d.features, d.facts, d.source) for ns, d in found.items()} == {
        **{ns: ({}, {}, NONE_FOUND) for ns in ("nvidia", "amd", "x86_64", "aarch64")},
        # uv's tpu provider answers either way: no TPU is ``tpu :: present :: false``
        "tpu": ({"present": ["false"]}, {"present": "false"}, "/sys/bus/pci/devices"),
    }


# Precedence

FORCE_CUDA = "NV_VARIANT_PROVIDER_FORCE_CUDA_DRIVER_VERSION"
FORCE_SM = "NV_VARIANT_PROVIDER_FORCE_SM_ARCH"
FORCE_GFX = "AMD_VARIANT_PROVIDER_FORCE_GFX_ARCH"
FORCE_ROCM = "AMD_VARIANT_PROVIDER_FORCE_ROCM_VERSION"
H100_NVML = NvmlInfo(cuda_driver="12.8", sm_arch="9.0", gpu="NVIDIA H100 80GB HBM3")


def test_nvidia_overrides_beat_nvml_and_sysfs() -> None:
    env = {FORCE_CUDA: "12.6", FORCE_SM: "8.0"}
    found = detect_nvidia(machine("h100-sapphire-rapids", env, nvml=H100_NVML))
    assert found.features == supported.nvidia("12.6", "8.0")
    assert found.facts == {"cuda_driver": "12.6", "sm_arch": "8.0"}
    assert found.source == f"{FORCE_CUDA} + {FORCE_SM}"


def test_nvidia_override_on_a_machine_without_gpu() -> None:
    found = detect_nvidia(machine("laptop-skylake", {FORCE_CUDA: "12.8"}))
    assert found.features == supported.nvidia("12.8")
    assert "sm_arch" not in found.features
    assert found.source == FORCE_CUDA


def test_sm_override_alone_is_ignored() -> None:
    found = detect_nvidia(machine("h100-sapphire-rapids", {FORCE_SM: "8.0"}))
    assert found.facts["sm_arch"] == "9.0"
    assert found.source == "/sys/module/nvidia/version + nvidia-smi"
    assert detect_nvidia(machine("laptop-skylake", {FORCE_SM: "8.0"})).features == {}


def test_nvml_beats_sysfs() -> None:
    found = detect_nvidia(machine("h100-sapphire-rapids", nvml=H100_NVML))
    assert found.source == "NVML"
    assert found.features == supported.nvidia("12.8", "9.0")
    assert found.facts == {"cuda_driver": "12.8", "sm_arch": "9.0", "gpu": "NVIDIA H100 80GB HBM3"}


def test_nvml_without_a_gpu_answers_the_driver_only() -> None:
    found = detect_nvidia(machine("laptop-skylake", nvml=NvmlInfo("12.4", None, None)))
    assert found.features == supported.nvidia("12.4")
    assert found.facts == {"cuda_driver": "12.4"}


def test_sysfs_beats_proc_driver_version(tmp_path: Path) -> None:
    (tmp_path / "sys/module/nvidia").mkdir(parents=True)
    (tmp_path / "sys/module/nvidia/version").write_text("570.86.10\n")
    (tmp_path / "proc/driver/nvidia").mkdir(parents=True)
    (tmp_path / "proc/driver/nvidia/version").write_text(
        "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.14  Thu Feb 22 01:44:30 UTC 2024\n"
    )
    found = detect_nvidia(empty_machine(tmp_path, {}))
    assert found.facts == {"cuda_driver": "12.8", "driver": "570.86.10"}
    assert found.source == "/sys/module/nvidia/version"
    assert "sm_arch" not in found.features


def test_driver_too_old_for_cuda_11(tmp_path: Path) -> None:
    (tmp_path / "sys/module/nvidia").mkdir(parents=True)
    (tmp_path / "sys/module/nvidia/version").write_text("418.226.00\n")
    found = detect_nvidia(empty_machine(tmp_path, {}))
    assert found.features == {}
    assert found.facts == {"driver": "418.226.00"}


@pytest.mark.parametrize(
    ("variable", "value"),
    [(FORCE_CUDA, "abc"), (FORCE_CUDA, "12"), (FORCE_CUDA, "12.8.1")],
)
def test_malformed_driver_override(tmp_path: Path, variable: str, value: str) -> None:
    with pytest.raises(
        InvalidInput, match=rf"{variable}='{value}': expected MAJOR\.MINOR like 12\.8"
    ):
        detect_nvidia(empty_machine(tmp_path, {variable: value}))


def test_malformed_sm_override(tmp_path: Path) -> None:
    env = {FORCE_CUDA: "12.8", FORCE_SM: "sm_90"}
    with pytest.raises(InvalidInput, match=f"{FORCE_SM}='sm_90'"):
        detect_nvidia(empty_machine(tmp_path, env))


def test_empty_override_counts_as_unset() -> None:
    found = detect_nvidia(machine("h100-sapphire-rapids", {FORCE_CUDA: ""}))
    assert found.source == "/sys/module/nvidia/version + nvidia-smi"


def test_amd_overrides_beat_kfd() -> None:
    env = {FORCE_GFX: "gfx90a,gfx942,gfx90a", FORCE_ROCM: "6.2"}
    found = detect_amd(machine("mi300x-genoa", env))
    assert found.features == {
        "gfx_arch": ["gfx90a", "gfx942"],
        "rocm_version": ["6.2", "6.1", "6.0"],
    }
    assert found.source == f"{FORCE_GFX} + {FORCE_ROCM}"


def test_amd_rocm_override_alone_keeps_detected_archs() -> None:
    found = detect_amd(machine("mi300x-genoa", {FORCE_ROCM: "7.0"}))
    assert found.features == {"gfx_arch": ["gfx942"], "rocm_version": ["7.0"]}
    assert found.source == f"KFD topology + {FORCE_ROCM}"


def test_amd_gfx_override_on_a_machine_without_gpu() -> None:
    found = detect_amd(machine("laptop-skylake", {FORCE_GFX: "gfx1100"}))
    assert found.features == {"gfx_arch": ["gfx1100"]}


@pytest.mark.parametrize(
    ("variable", "value"),
    [(FORCE_GFX, "mi300"), (FORCE_GFX, "gfx942, gfx90a"), (FORCE_GFX, "GFX942"), (FORCE_ROCM, "6")],
)
def test_malformed_amd_override(tmp_path: Path, variable: str, value: str) -> None:
    with pytest.raises(InvalidInput, match=variable):
        detect_amd(empty_machine(tmp_path, {variable: value}))


def recording_runner(
    outputs: Mapping[str, str],
) -> tuple[list[str], Callable[[Sequence[str]], str | None]]:
    """A tool runner answering from ``outputs`` and the command lines it was asked."""
    asked: list[str] = []

    def run(argv: Sequence[str]) -> str | None:
        asked.append(shlex.join(argv))
        return outputs.get(shlex.join(argv))

    return asked, run


def test_kfd_beats_rocm_tools() -> None:
    asked, run = recording_runner({"rocminfo": "  Name:                    gfx90a\n"})
    found = detect_amd(System(MACHINES / "mi300x-genoa", {}, run, lambda: None))
    assert found.source.startswith("KFD topology")
    assert asked == []


def test_rocm_agent_enumerator_after_rocminfo(tmp_path: Path) -> None:
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev/kfd").touch()
    asked, run = recording_runner({"rocm_agent_enumerator": "gfx000\ngfx1100\ngfx1100\n"})
    found = detect_amd(System(tmp_path, {}, run, lambda: None))
    assert found.features == {"gfx_arch": ["gfx1100"]}
    assert found.source == "rocm_agent_enumerator"
    assert asked == ["rocminfo", "rocm_agent_enumerator"]


def test_rocm_tools_not_asked_without_the_amdgpu_driver(tmp_path: Path) -> None:
    asked, run = recording_runner({"rocminfo": "  Name:                    gfx90a\n"})
    assert detect_amd(System(tmp_path, {}, run, lambda: None)).features == {}
    assert asked == []


def test_tools_not_asked_when_files_answer() -> None:
    asked, run = recording_runner({})
    detect(System(MACHINES / "rtx4090-ryzen", {}, run, lambda: None))
    assert asked == ["nvidia-smi --query-gpu=compute_cap,name --format=csv,noheader"]


# Pure functions (wheelforge.variants.supported)


@pytest.mark.parametrize(
    ("driver", "cuda"),
    [
        ("590.44.01", "13.1"),
        ("580.95.05", "13.0"),
        ("580.65.06", "13.0"),
        ("580.65.05", "12.9"),
        ("570.26", "12.8"),
        ("570.25.99", "12.6"),
        ("550.54.15", "12.4"),
        ("550.54.14", "12.4"),
        ("550.54.13", "12.3"),
        ("535.104.05", "12.2"),
        ("455.23", "11.1"),
        ("450.36.06", "11.0"),
        ("450.36.05", None),
        ("449", None),
        ("1000", "13.1"),
    ],
)
def test_cuda_from_driver(driver: str, cuda: str | None) -> None:
    assert supported.cuda_from_driver(driver) == cuda


@pytest.mark.parametrize("driver", ["", "abc", "550.54.x", "550..54", "v550.54.14", " 550.54.14"])
def test_cuda_from_malformed_driver(driver: str) -> None:
    with pytest.raises(InvalidInput, match=re.escape(repr(driver))):
        supported.cuda_from_driver(driver)


@pytest.mark.parametrize(
    ("target", "name"),
    [
        (90402, "gfx942"),
        (90010, "gfx90a"),
        (90008, "gfx908"),
        (90006, "gfx906"),
        (110000, "gfx1100"),
        (100300, "gfx1030"),
        (120001, "gfx1201"),
        (90012, "gfx90c"),
    ],
)
def test_gfx_arch_name(target: int, name: str) -> None:
    assert supported.gfx_arch_name(target) == name


def test_amd_features() -> None:
    assert supported.amd(["gfx942", "gfx90a", "gfx942"], "6.4") == {
        "gfx_arch": ["gfx942", "gfx90a"],
        "rocm_version": ROCM_6_4,
    }
    assert supported.amd(["gfx1100"], "7.0.1") == {"gfx_arch": ["gfx1100"], "rocm_version": ["7.0"]}
    assert supported.amd(["gfx1100"], None) == {"gfx_arch": ["gfx1100"]}
    assert supported.amd([], "6.4") == {}
    with pytest.raises(InvalidInput, match="'six'"):
        supported.amd(["gfx942"], "six")


GRAVITON3 = "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm jscvt fcma lrcpc dcpop sha3 sm3 sm4 asimddp sha512 sve asimdfhm dit uscat ilrcpc flagm ssbs paca pacg dcpodp svei8mm svebf16 i8mm bf16 dgh rng"
V85 = "atomics asimdrdm crc32 dcpop jscvt fcma lrcpc dit uscat ilrcpc flagm sb dcpodp flagm2 frint"


@pytest.mark.parametrize(
    ("features", "version"),
    [
        ("", "8a"),
        ("fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid", "8a"),  # Cortex-A72
        ("fp asimd crc32 atomics asimdrdm", "8.1a"),
        (
            "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp ssbs",
            "8.2a",
        ),  # Neoverse-N1
        (GRAVITON3, "8.4a"),
        (V85, "8.5a"),
        (V85 + " sve2", "9.0a"),
        ("sve2 sb frint", "8a"),  # each step needs the lower steps' flags too
    ],
)
def test_aarch64_version(features: str, version: str) -> None:
    assert supported.aarch64_version(features.split()) == version


def test_aarch64_features() -> None:
    assert supported.aarch64("9.0a") == {
        "version": ["9.0a", "8.5a", "8.4a", "8.3a", "8.2a", "8.1a", "8a"]
    }
    assert supported.aarch64("8.2a") == {"version": ["8.2a", "8.1a", "8a"]}
    assert supported.aarch64("8a") == {"version": ["8a"]}
    with pytest.raises(InvalidInput, match=re.escape("'8.6a'")):
        supported.aarch64("8.6a")


def test_cpuinfo_features() -> None:
    text = (MACHINES / "graviton3/proc/cpuinfo").read_text()
    assert supported.cpuinfo_features(text) == set(GRAVITON3.split())
    assert supported.cpuinfo_features("processor\t: 0\nflags\t\t: fpu sse\n") == set()


def test_gpu_model_table() -> None:
    assert model_sm("NVIDIA A100-SXM4-80GB") == "8.0"
    assert model_sm("NVIDIA A10G") == "8.6"
    assert model_sm("NVIDIA A10") == "8.6"
    assert model_sm("NVIDIA GH200 480GB") == "9.0"
    assert model_sm("NVIDIA B200") == "10.0"
    assert model_sm("NVIDIA GeForce RTX 5090") == "12.0"
    assert model_sm("Tesla V100-SXM2-16GB") == "7.0"
    assert model_sm("NVIDIA RTX A6000") is None
    assert model_sm("Quadro RTX 4000") is None  # Turing, not an RTX 40 series card
    assert model_sm("NVIDIA L40S") == "8.9"
    assert model_sm("NVIDIA GeForce RTX 3050 Laptop GPU") == "8.6"


@pytest.mark.parametrize(
    ("machine_name", "driver"),
    [("h100-sapphire-rapids", "580.65.06"), ("rtx4090-ryzen", "550.54.14")],
)
def test_proc_driver_version_formats(tmp_path: Path, machine_name: str, driver: str) -> None:
    """Both first lines: proprietary and open (``Open Kernel Module for x86_64``) modules."""
    version = MACHINES / machine_name / "proc/driver/nvidia/version"
    (tmp_path / "proc/driver/nvidia").mkdir(parents=True)
    (tmp_path / "proc/driver/nvidia/version").write_text(version.read_text())
    found = detect_nvidia(empty_machine(tmp_path, {}))
    assert found.facts["driver"] == driver
    assert found.source == "/proc/driver/nvidia/version"


def test_run_tool() -> None:
    assert run_tool(["sh", "-c", "echo 9.0, NVIDIA H100"]) == "9.0, NVIDIA H100\n"
    assert run_tool(["sh", "-c", "echo partial; exit 3"]) is None
    assert run_tool(["wheelforge-no-such-tool"]) is None


def test_run_tool_kills_a_hanging_tool(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    hanging = ["sh", "-c", f'echo $$ > "{pid_file}"; exec sleep 600']
    assert run_tool(hanging, timeout=0.5) is None
    assert not Path(f"/proc/{pid_file.read_text().strip()}").exists()  # killed and reaped


# This machine


@pytest.mark.skipif(not Path("/proc/cpuinfo").exists(), reason="no /proc/cpuinfo")
def test_real_machine(capsys: pytest.CaptureFixture[str]) -> None:
    start = time.perf_counter()
    found = detect()
    elapsed = time.perf_counter() - start
    with capsys.disabled():
        print(f"\ndetect() on this machine: {elapsed * 1000:.1f} ms")
        for detection in found.values():
            print(f"  {detection.namespace}: {detection.facts} ({detection.source})")

    if platform.machine() == "x86_64":
        level = supported.x86_64_level(supported.cpuinfo_flags(Path("/proc/cpuinfo").read_text()))
        assert level >= 1
        assert found["x86_64"].features == supported.x86_64(level)
        assert found["aarch64"].features == {}
    nvidia_driver = ("/proc/driver/nvidia", "/sys/module/nvidia")
    if not any(map(os.path.exists, nvidia_driver)) and shutil.which("nvidia-smi") is None:
        assert found["nvidia"].features == {}
    if not Path("/dev/kfd").exists() and not Path("/sys/module/amdgpu").exists():
        assert found["amd"].features == {}


@pytest.mark.skipif(Path("/proc/driver/nvidia").exists(), reason="an NVIDIA driver is present")
def test_query_nvml_without_nvidia_driver() -> None:
    assert query_nvml() is None


# TPU: uv 0.13.8's tpu provider (tests/test_select_tpu_uv.py runs uv itself)


def _pci_device(root: Path, address: str, vendor: str, device: str) -> None:
    directory = root / "sys/bus/pci/devices" / address
    directory.mkdir(parents=True)
    (directory / "vendor").write_text(vendor + "\n")
    (directory / "device").write_text(device + "\n")


@pytest.mark.parametrize("value", ["1", "true", "TRUE", "yes", "Yes"])
def test_tpu_override_forces_present(tmp_path: Path, value: str) -> None:
    found = detect_tpu(empty_machine(tmp_path, {"TPU_VARIANT_PROVIDER_FORCE_PRESENT": value}))
    assert found.features == {"present": ["true"]} == supported.tpu(True)
    assert found.source == "TPU_VARIANT_PROVIDER_FORCE_PRESENT"


@pytest.mark.parametrize("value", ["", "0", "false", "no", "on", "y", " 1", "2"])
def test_tpu_override_other_values_mean_nothing(tmp_path: Path, value: str) -> None:
    # uv takes only 1/true/yes (any case); with no TPU on the bus: present :: false
    found = detect_tpu(empty_machine(tmp_path, {"TPU_VARIANT_PROVIDER_FORCE_PRESENT": value}))
    assert (found.features, found.source) == ({"present": ["false"]}, "/sys/bus/pci/devices")


def test_tpu_found_on_the_pci_bus(tmp_path: Path) -> None:
    _pci_device(tmp_path, "0000:00:04.0", "0x1ae0", "0x0062")  # a Google TPU
    _pci_device(tmp_path, "0000:00:05.0", "0x1ae0", "0x0042")  # Google, not a TPU
    _pci_device(tmp_path, "0000:00:06.0", "0x10de", "0x2330")  # an NVIDIA H100
    found = detect_tpu(empty_machine(tmp_path, {}))
    assert found.features == {"present": ["true"]}
    assert found.facts == {"present": "true", "pci": "0000:00:04.0"}
    assert found.source == "/sys/bus/pci/devices"


def test_no_tpu_among_other_pci_devices(tmp_path: Path) -> None:
    _pci_device(tmp_path, "0000:00:05.0", "0x1ae0", "0x0042")
    _pci_device(tmp_path, "0000:00:06.0", "0x10de", "garbage")
    assert detect_tpu(empty_machine(tmp_path, {})).features == {"present": ["false"]}
