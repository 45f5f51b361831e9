"""Fallback guards: a plain wheel or the null variant is what a machine without a GPU
installs, so GPU content there is an error in ``check`` (and at the end of ``build``).

The libraries are compiled here for real: nvcc (CUDA 13) for a library with device code
that links cudart, gcc for a library that only links cudart, Debian's hipcc for a HIP
library, gcc plus ``objcopy --add-section`` for a clang offload bundle in a section of
another name. A CUDA-labelled variant holding the same CUDA library is not flagged."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import build_plain_wheel
from wheelforge.publish.check import Finding, Severity, check_release_set, fallback_guard
from wheelforge.tag import TagRequest, tag_wheel
from wheelforge.variants.properties import VariantProperty
from wheelforge.variants_file import write_variants_json

GOOD_META = "Summary: A demo\nDescription-Content-Type: text/markdown\n"
TAG = "py3-none-linux_x86_64"
CU13 = frozenset({VariantProperty.parse("nvidia :: cuda_version_lower_bound :: 13.0")})
CUDA_HOME = Path(os.environ.get("CUDA_HOME", "/usr/local/cuda"))

Cli = Callable[..., tuple[int, str, str]]

KERNEL_CU = r"""
__global__ void add_one(int *x) { x[threadIdx.x] += 1; }
extern "C" int launch(int *x) { add_one<<<1, 32>>>(x); return 0; }
"""

HOST_ONLY_C = r"""
int cudaGetDeviceCount(int *count);
int devices(void) { int n = 0; return cudaGetDeviceCount(&n) == 0 ? n : -1; }
"""

KERNEL_HIP = r"""
#include <hip/hip_runtime.h>
__global__ void add_one(int *x) { x[threadIdx.x] += 1; }
extern "C" int launch(int *x) { hipLaunchKernelGGL(add_one, dim3(1), dim3(32), 0, 0, x); return 0; }
"""

CPU_C = "int compute(void) { return 42; }\n"

# The magic as it sits in a compiler's own code (LLVM's offload bundler): a string, no bundle.
MAGIC_AS_STRING_C = r"""
const char *bundle_magic(void) { return "__CLANG_OFFLOAD_BUNDLE__"; }
const char *other(void) { return "host-x86_64-unknown-linux-gnu"; }
"""


def _run(*command: str | Path, env: dict[str, str] | None = None) -> None:
    subprocess.run([str(c) for c in command], check=True, capture_output=True, env=env)


def _gcc_library(directory: Path, name: str, source: str, *extra: str | Path) -> Path:
    c_file = directory / f"{name}.c"
    c_file.write_text(source)
    library = directory / f"lib{name}.so"
    _run("gcc", "-O2", "-shared", "-fPIC", "-o", library, c_file, *extra)
    return library


def _offload_bundle() -> bytes:
    """A clang offload bundle in its documented layout: magic, number of bundles, then
    per bundle offset, size, triple length and triple (here: an empty host bundle and a
    gfx90a code object of four bytes)."""
    triples = [b"host-x86_64-unknown-linux", b"hipv4-amdgcn-amd-amdhsa--gfx90a"]
    header = b"__CLANG_OFFLOAD_BUNDLE__" + struct.pack("<Q", len(triples))
    entries = b""
    size = len(header) + sum(24 + len(t) for t in triples)
    payload = [b"", b"\x7fELF"]
    for triple, data in zip(triples, payload, strict=True):
        entries += struct.pack("<3Q", size, len(data), len(triple)) + triple
        size += len(data)
    return header + entries + b"".join(payload)


class Libraries:
    """The compiled libraries, by what they hold."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.cpu = _gcc_library(base, "cpu", CPU_C)
        self.magic_string = _gcc_library(base, "magic", MAGIC_AS_STRING_C)
        bundle = base / "bundle.bin"
        bundle.write_bytes(_offload_bundle())
        self.objcopy_bundle = base / "libobjcopied.so"
        _run("objcopy", "--add-section", f".gpu_code={bundle}", self.cpu, self.objcopy_bundle)

    def cuda(self) -> Path:
        """A CUDA 13 library: ``.nv_fatbin`` (sm_80) and ``libcudart.so.13``."""
        if shutil.which("nvcc") is None:
            pytest.skip("nvcc not found")
        library = self.base / "libkernel.so"
        if not library.exists():
            source = self.base / "kernel.cu"
            source.write_text(KERNEL_CU)
            _run("nvcc", "-shared", "-Xcompiler", "-fPIC", "-arch=sm_80", "-cudart", "shared",
                 "-o", library, source)  # fmt: skip
        return library

    def cubin(self) -> Path:
        """A bare CUDA code object (an ELF file for machine EM_CUDA)."""
        if shutil.which("nvcc") is None:
            pytest.skip("nvcc not found")
        cubin = self.base / "kernel.cubin"
        if not cubin.exists():
            source = self.base / "kernel.cu"
            source.write_text(KERNEL_CU)
            _run("nvcc", "-cubin", "-arch=sm_80", "-o", cubin, source)
        return cubin

    def cudart_only(self) -> Path:
        """Host code alone (gcc), linking the toolkit's libcudart.so.13: no device code."""
        cudart = CUDA_HOME / "lib64" / "libcudart.so"
        if not cudart.exists():
            pytest.skip(f"no {cudart}")
        library = self.base / "libhostonly.so"
        if not library.exists():
            _gcc_library(self.base, "hostonly", HOST_ONLY_C, cudart)
        return library

    def hip(self) -> Path:
        """A HIP library from Debian's hipcc (gfx90a): ``.hip_fatbin``, ``libamdhip64.so.5``."""
        if shutil.which("hipcc") is None:
            pytest.skip("hipcc not found (apt-get install hipcc libamdhip64-dev)")
        library = self.base / "libhipkernel.so"
        if not library.exists():
            source = self.base / "kernel.hip"
            source.write_text(KERNEL_HIP)
            env = {**os.environ, "HIP_PLATFORM": "amd"}
            _run("hipcc", "-fPIC", "-shared", "--offload-arch=gfx90a", "-x", "hip", source,
                 "-o", library, env=env)  # fmt: skip
        return library


@pytest.fixture(scope="module")
def libs(tmp_path_factory: pytest.TempPathFactory) -> Libraries:
    return Libraries(tmp_path_factory.mktemp("libs"))


def _plain(
    directory: Path, library: Path | None, member: str, requires: tuple[str, ...] = ()
) -> Path:
    files = {"demo/__init__.py": b"BUILT_FOR = 'demo'\n"}
    if library is not None:
        files[member] = library.read_bytes()
    directory.mkdir(parents=True, exist_ok=True)
    return build_plain_wheel(
        directory, tag=TAG, files=files, requires=requires, metadata_extra=GOOD_META
    )


def release(
    base: Path,
    *,
    plain: Path | None = None,
    null: Path | None = None,
    cuda: Path | None = None,
    member: str = "demo/libdemo.so",
    plain_requires: tuple[str, ...] = (),
) -> Path:
    """dist/: a plain wheel, the null variant and a CUDA 13 variant (requiring
    nvidia-cuda-runtime), each holding the library given for it at ``member``."""
    dist = base / "dist"
    dist.mkdir()
    shutil.copy(_plain(base / "plain", plain, member, plain_requires), dist)
    tag_wheel(_plain(base / "null", null, member), dist, TagRequest(properties=frozenset()))
    cuda_plain = _plain(base / "cuda", cuda, member)
    request = TagRequest(
        properties=CU13, label="cu13", requires_dist=("nvidia-cuda-runtime==13.*",)
    )
    tag_wheel(cuda_plain, dist, request)
    write_variants_json(dist)
    return dist


def guard_errors(dist: Path) -> list[Finding]:
    report = check_release_set(dist)
    others = [f for f in report.errors if f.check != "fallback-gpu"]
    assert others == [], others
    return [f for f in report.errors if f.check == "fallback-gpu"]


def test_a_clean_set_passes_and_a_cuda_variant_may_hold_device_code(
    tmp_path: Path, libs: Libraries
) -> None:
    dist = release(tmp_path, plain=libs.cpu, null=libs.cpu, cuda=libs.cuda())
    report = check_release_set(dist)
    assert report.errors == [], report.errors


def test_a_plain_wheel_with_a_cuda_library(tmp_path: Path, libs: Libraries, cli: Cli) -> None:
    dist = release(tmp_path, plain=libs.cuda(), null=libs.cpu, cuda=libs.cuda())
    found = guard_errors(dist)
    assert {f.file for f in found} == {"demo-1.0-py3-none-linux_x86_64.whl"}
    device, linked = found
    assert device.message.startswith("demo/libdemo.so holds CUDA device code (.nv_fatbin, ")
    assert ".nvFatBinSegment" in device.message
    assert "the plain wheel is the fallback for machines without a GPU" in device.message
    assert linked.message.startswith("demo/libdemo.so links GPU libraries libcudart.so.13;")
    code, out, _ = cli("check", dist)
    assert code == 1
    assert "fallback-gpu" in out and ".nv_fatbin" in out


def test_a_null_variant_linking_cudart(tmp_path: Path, libs: Libraries) -> None:
    dist = release(tmp_path, plain=libs.cpu, null=libs.cudart_only(), cuda=libs.cuda())
    (finding,) = guard_errors(dist)
    assert finding.file == "demo-1.0-py3-none-linux_x86_64-null.whl"
    assert finding.message == (
        "demo/libdemo.so links GPU libraries libcudart.so.13; the null variant is the "
        "fallback for machines without a GPU: move it to a variant"
    )


def test_a_bare_cubin_in_a_fallback(tmp_path: Path, libs: Libraries) -> None:
    dist = release(tmp_path, plain=libs.cubin(), member="demo/kernels/add.cubin")
    (finding,) = guard_errors(dist)
    assert finding.message.startswith("demo/kernels/add.cubin is CUDA device code;")


def test_a_plain_wheel_with_a_hip_library(tmp_path: Path, libs: Libraries) -> None:
    dist = release(tmp_path, plain=libs.hip())
    device, linked = guard_errors(dist)
    assert device.message.startswith("demo/libdemo.so holds HIP device code (.hip_fatbin, ")
    assert linked.message.startswith("demo/libdemo.so links GPU libraries libamdhip64.so.5;")


def test_an_offload_bundle_in_a_section_of_another_name(tmp_path: Path, libs: Libraries) -> None:
    """gcc library + ``objcopy --add-section .gpu_code=bundle``: found by the bundle's
    magic and header, not by the section's name."""
    dist = release(tmp_path, null=libs.objcopy_bundle)
    (finding,) = guard_errors(dist)
    assert finding.file.endswith("-null.whl")
    assert finding.message.startswith(
        "demo/libdemo.so holds a clang offload bundle (in .gpu_code);"
    )


def test_the_magic_as_a_string_is_no_bundle(tmp_path: Path, libs: Libraries) -> None:
    assert b"__CLANG_OFFLOAD_BUNDLE__" in libs.magic_string.read_bytes()
    dist = release(tmp_path, plain=libs.magic_string, null=libs.magic_string)
    assert guard_errors(dist) == []


@pytest.mark.parametrize(
    ("requirement", "flagged"),
    [
        ("nvidia-cublas", True),
        ("nvidia-cublas>=13; sys_platform == 'linux' and platform_machine == 'x86_64'", True),
        ("nvidia_cuda_runtime_cu12==12.*", True),
        ("rocm-sdk-core", True),
        ("nvidia-cublas; extra == 'cuda'", False),
        ("nvidia-ml-py>=12", False),  # NVML's Python bindings: pure Python
        ("numpy>=2", False),
    ],
)
def test_gpu_runtime_requirements_of_a_plain_wheel(
    tmp_path: Path, requirement: str, flagged: bool
) -> None:
    dist = release(tmp_path, plain_requires=(requirement,))
    # METADATA may differ only in Requires-Dist: the agreement check allows that.
    found = guard_errors(dist)
    if not flagged:
        assert found == []
        return
    (finding,) = found
    assert finding.file == "demo-1.0-py3-none-linux_x86_64.whl"
    name = requirement.split(";")[0].split(">")[0].split("=")[0]
    quoted = f" ({requirement})" if requirement != name else ""
    assert finding.message.startswith(f"requires the GPU runtime package {name}{quoted}; ")
    assert "the plain wheel is the fallback" in finding.message


def test_fallback_guard_on_one_wheel(tmp_path: Path, libs: Libraries) -> None:
    """What ``build`` runs on each wheel it built: only fallbacks are guarded."""
    dist = release(tmp_path, plain=libs.cuda(), cuda=libs.cuda(), plain_requires=("nvidia-cublas",))
    by_name = {p.name: fallback_guard(p) for p in dist.glob("*.whl")}
    plain = by_name["demo-1.0-py3-none-linux_x86_64.whl"]
    assert [f.severity for f in plain] == [Severity.ERROR] * 3
    assert by_name["demo-1.0-py3-none-linux_x86_64-cu13.whl"] == []
    assert by_name["demo-1.0-py3-none-linux_x86_64-null.whl"] == []


# -- at the end of build --------------------------------------------------------------

BUILD_PYPROJECT = """\
[build-system]
requires = ["setuptools>=77"]
build-backend = "setuptools.build_meta"

[project]
name = "guarded"
version = "1.0"
description = "A project whose fallbacks require a GPU runtime."
dependencies = ["nvidia-cublas"]

[tool.setuptools]
packages = ["guarded"]
"""

BUILD_MATRIX = """\
[project]
path = "{project}"

[[variants]]
id = "plain"
kind = "plain"

[[variants]]
id = "cpu"
kind = "null"

[[variants]]
id = "cuda"
label = "cu130"
properties = ["nvidia :: cuda_version_lower_bound :: 13.0"]
"""


@pytest.mark.slow
def test_build_rejects_fallbacks_that_require_a_gpu_runtime(tmp_path: Path, cli: Cli) -> None:
    """A pure-Python project (no compiler, one setuptools build shared by the three
    jobs) that requires nvidia-cublas everywhere: the plain and null jobs are rejected,
    the run fails, the CUDA variant is fine."""
    project = tmp_path / "guarded-src"
    (project / "guarded").mkdir(parents=True)
    (project / "guarded" / "__init__.py").write_text("")
    (project / "pyproject.toml").write_text(BUILD_PYPROJECT)
    matrix = tmp_path / "matrix.toml"
    matrix.write_text(BUILD_MATRIX.format(project=project))
    code, out, err = cli(
        "build", "--matrix", matrix, "--out", tmp_path / "dist", "--cache-dir",
        tmp_path / "cache", "--work-dir", tmp_path / "work", "--json",
    )  # fmt: skip
    assert code == 1, err
    results = {r["job"]: r for r in json.loads(out)}
    assert {job: r["status"] for job, r in results.items()} == {
        "plain": "rejected",
        "cpu": "rejected",
        "cuda": "cached",  # the same build as the plain job
    }
    assert results["plain"]["error"] == (
        "requires the GPU runtime package nvidia-cublas; the plain wheel is the fallback "
        "for machines without a GPU: move it to a variant"
    )
    assert "error: job cpu: requires the GPU runtime package nvidia-cublas; the null variant" in err
