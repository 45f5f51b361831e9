"""End to end: the bundled example matrix built for real (gcc, nvcc, hipcc, auditwheel),
tagged, compressed, then installed by the real uv under simulated hardware."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.installers import clean_env
from tests.test_readme import main_job
from wheelforge.cli import main
from wheelforge.variants import supported
from wheelforge.variants.metadata import loads
from wheelforge.variants.ranking import best

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "matrix" / "example.toml"
BIN = Path(sys.executable).parent
UV = BIN / "uv"


def wf(*args: str | Path) -> int:
    return main([str(a) for a in args])


def build(matrix: Path, out: Path, cache: Path, work: Path, *extra: str) -> int:
    return wf(
        "build", "--matrix", matrix, "--out", out, "--cache-dir", cache, "--work-dir", work, *extra
    )


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    base = tmp_path_factory.mktemp("example")
    out = base / "dist"
    # The README's main job, with its directories moved under the test's temporary one.
    args = [str(ROOT / a) if a.endswith(".toml") else a for a in main_job()]
    dirs = ["--out", out, "--cache-dir", base / "cache", "--work-dir", base / "work"]
    assert wf(*args, *dirs, "-j", "2") == 0
    yield out


def wheels(dist: Path) -> dict[str | None, Path]:
    """label (None for the plain wheel) -> wheel"""
    result: dict[str | None, Path] = {}
    for path in dist.glob("*.whl"):
        parts = path.name[:-4].split("-")
        result[parts[5] if len(parts) == 6 else None] = path
    return result


def native_library(wheel: Path, tmp_path: Path) -> Path:
    from backports.zstd import zipfile as zstd_zipfile  # reads zstd members on 3.11

    with zstd_zipfile.ZipFile(wheel) as zf:
        data = zf.read("vecadd/libvecadd.so")
    target = tmp_path / f"{wheel.stem}.so"
    target.write_bytes(data)
    return target


def readelf(flag: str, path: Path) -> str:
    return subprocess.run(
        ["readelf", flag, str(path)], capture_output=True, text=True, check=True
    ).stdout


def test_one_wheel_per_variant_with_manifest(dist: Path) -> None:
    found = wheels(dist)
    assert set(found) == {None, "null", "x86_64_v3", "cu130", "cu135", "rocm52"}
    manifest = json.loads((dist / "wheelforge-manifest.json").read_text())
    by_job = {a["job"]: a for a in manifest["artifacts"]}
    assert set(by_job) == {
        "sdist", "plain", "cpu", "cpu-x86-64-v3", "cuda13.0", "cuda13.5", "rocm",
    }  # fmt: skip
    assert by_job.pop("sdist")["file"] == "vecadd-0.1.0.tar.gz"  # what every job built from
    for artifact in by_job.values():
        wheel = dist / artifact["file"]
        assert wheel.stat().st_size == artifact["size"]
        assert len(artifact["sha256"]) == 64 and len(artifact["input_hash"]) == 64
    assert (
        by_job["cuda13.0"]["compression"] == "zstd" and by_job["plain"]["compression"] == "deflate"
    )
    variants = json.loads((dist / "vecadd-0.1.0-variants.json").read_text())
    assert set(variants["variants"]) == {"null", "x86_64_v3", "cu130", "cu135", "rocm52"}


def test_shared_objects_carry_their_device_code(dist: Path, tmp_path: Path) -> None:
    found = wheels(dist)
    for label in ("cu130", "cu135"):  # the machine's CUDA 13.0 and CUDA 13.5 from PyPI
        cuda = native_library(found[label], tmp_path)
        assert ".nv_fatbin" in readelf("-S", cuda)
    # 13.0 links the shared runtime: excluded from the wheel, declared as a dependency.
    assert "libcudart.so.13" in readelf("-d", native_library(found["cu130"], tmp_path))
    assert "libcudart" not in readelf("-d", native_library(found["cu135"], tmp_path))
    with zipfile.ZipFile(found["cu130"]) as zf:
        assert not any("libcudart" in name for name in zf.namelist())
        metadata = zf.read("vecadd-0.1.0.dist-info/METADATA").decode()
    assert "Requires-Dist: nvidia-cuda-runtime==13.*" in metadata
    rocm = native_library(found["rocm52"], tmp_path)
    assert ".hip_fatbin" in readelf("-S", rocm)
    assert "libamdhip64.so.5" in readelf("-d", rocm)  # excluded from repair, not grafted
    assert "x86 ISA needed: x86-64-v3" in readelf(
        "-n", native_library(found["x86_64_v3"], tmp_path)
    )
    baseline = native_library(found[None], tmp_path)
    assert ".nv_fatbin" not in readelf("-S", baseline) and "x86-64-v3" not in readelf(
        "-n", baseline
    )
    with zipfile.ZipFile(found["rocm52"]) as zf:
        assert not any("amdhip64" in name for name in zf.namelist())


def test_each_wheel_is_tagged_and_verifies(dist: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert wf("inspect", dist, "--json") == 0
    reports = {r["label"]: r for r in json.loads(capsys.readouterr().out)}
    assert reports["cu130"]["properties"] == ["nvidia :: cuda_version_lower_bound :: 13.0"]
    assert reports["rocm52"]["properties"] == [
        "amd :: gfx_arch :: gfx1030",
        "amd :: gfx_arch :: gfx90a",
    ]
    assert reports["x86_64_v3"]["properties"] == ["x86_64 :: level :: v3"]
    assert set(reports["cu130"]["compression"]["payload"]) == {"zstd"}
    assert set(reports["cu130"]["compression"]["dist-info"]) == {"deflate"}
    assert set(reports[None]["compression"]["payload"]) == {"deflate"}
    assert all(r["record_ok"] and r["problem"] is None for r in reports.values())


def test_the_built_release_set_passes_check_and_indexes(
    dist: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The build's dist/ (sdist, wheels, manifest, variants file) is a publishable set."""
    assert wf("check", dist, "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and not [f for f in report["findings"] if f["severity"] == "error"]
    assert "vecadd-0.1.0-variants.json" in report["files"]
    assert "vecadd-0.1.0.tar.gz" in report["files"]  # the release's sdist
    site = tmp_path / "site"
    assert wf("index", dist, "--out", site, "--json") == 0
    listed = json.loads((site / "simple" / "vecadd" / "index.json").read_text())["files"]
    assert {f["filename"] for f in listed} == {
        p.name for p in dist.iterdir() if p.name != "wheelforge-manifest.json"
    }


@pytest.fixture(scope="module")
def dependencies(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The CUDA runtime wheel the cu130 variant declares, fetched from PyPI once."""
    deps = tmp_path_factory.mktemp("deps")
    command = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:"]
    subprocess.run([*command, "-d", str(deps), "nvidia-cuda-runtime==13.*"], check=True)
    return deps


def _run_in(venv: Path, code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True, check=False
    )


@pytest.mark.parametrize(
    "driver",
    [None, "12.8", "13.0", "13.5"],
    ids=["no-gpu", "driver-12.8", "driver-13.0", "driver-13.5"],
)
def test_uv_installs_the_expected_variant(
    dependencies: Path, dist: Path, tmp_path: Path, driver: str | None
) -> None:
    meta = loads((dist / "vecadd-0.1.0-variants.json").read_bytes(), source="variants.json")
    level = supported.x86_64_level(supported.cpuinfo_flags(Path("/proc/cpuinfo").read_text()))
    machine = {"nvidia": supported.nvidia(driver), "x86_64": supported.x86_64(level)}
    expected = best(meta, machine, plain=True)
    assert expected is not None and expected.label is not None
    assert expected.label == {"13.0": "cu130", "13.5": "cu135"}.get(driver or "", expected.label)
    env = clean_env(tmp_path, UV_OFFLINE="1")
    if driver is not None:
        env["NV_VARIANT_PROVIDER_FORCE_CUDA_DRIVER_VERSION"] = driver
    venv = tmp_path / "venv"
    subprocess.run(
        [str(UV), "venv", "-q", "--python", sys.executable, str(venv)], env=env, check=True
    )
    result = subprocess.run(
        [
            str(UV),
            "pip",
            "install",
            "-v",
            "--preview-features",
            "wheel-variants",
            "--no-index",
            "--find-links",
            str(dist),
            "--find-links",
            str(dependencies),
            "--python",
            str(venv / "bin" / "python"),
            "vecadd",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert f"-{expected.label}.whl" in next(
        line for line in result.stderr.splitlines() if "Selecting: vecadd" in line
    )
    backend = {"cu130": "cuda", "cu135": "cuda", "x86_64_v3": "cpu-x86-64-v3", "null": "cpu"}[
        expected.label
    ]
    probe = _run_in(venv, "import vecadd; print(vecadd.backend())")
    assert probe.stdout.strip() == backend, probe.stderr
    computed = _run_in(venv, "import vecadd; print(vecadd.add([1, 2], [3, 4]))")
    if backend == "cuda":  # no GPU on this machine: a clear error, not a crash
        assert computed.returncode == 1
        assert "vecadd was built for CUDA but no CUDA device is available" in computed.stderr
    else:
        assert computed.stdout.strip() == "[4.0, 6.0]", computed.stderr
    # uv installed the declared CUDA runtime for the shared-runtime variant, and only there.
    runtime = list(venv.glob("lib/python*/site-packages/nvidia/cu13/lib/libcudart.so.13"))
    assert bool(runtime) == (expected.label == "cu130")


def test_pip_installs_the_plain_fallback(dist: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    env = clean_env(tmp_path, UV_OFFLINE="1")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-index",
            "--find-links",
            str(dist),
            "--target",
            str(target),
            "vecadd",
        ],
        env=env,
        check=True,
    )
    probe = subprocess.run(
        [sys.executable, "-c", "import vecadd; print(vecadd.backend(), vecadd.add([1], [2]))"],
        env={**env, "PYTHONPATH": str(target)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.split() == ["cpu", "[3.0]"]
    assert not list(target.glob("vecadd-*.dist-info/variant.json"))


# -- keep-going, cache, fan-out: on a CPU-only matrix of the same project -------------

CPU_MATRIX = """
[project]
path = "{project}"
python = ["3"]

[variant.default-priorities]
namespace = ["x86_64"]

[axes]
level = ["v3"]

[[variants]]
id = "plain"
kind = "plain"

[[variants]]
id = "cpu"
kind = "null"

[[variants]]
id = "cpu-{{{{ level }}}}"
axes = ["level"]
label = "x86_64_{{{{ level }}}}"
properties = ["x86_64 :: level :: {{{{ level }}}}"]
config-settings = {{ "cmake.define.VECADD_CPU_LEVEL" = "{{{{ level }}}}"{extra} }}
repair-isa-check = false
compression = "zstd"
"""


def cpu_matrix(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "cpu.toml"
    path.write_text(CPU_MATRIX.format(project=ROOT / "examples" / "vecadd", extra=extra))
    return path


def test_broken_variant_with_keep_going(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    matrix = cpu_matrix(tmp_path, extra=', "cmake.define.VECADD_BACKEND" = "bogus"')
    out = tmp_path / "dist"
    monkeypatch.chdir(tmp_path)  # relative directories, as a user types them
    code = build(matrix, Path("dist"), Path("cache"), Path("work"), "--keep-going", "-j", "2")
    assert code == 1
    err = capsys.readouterr().err
    log = Path("work") / "logs" / "cpu-v3.log"
    # The summary quotes the cause from the log, then names the log.
    assert re.search(
        r"error: job cpu-v3: build failed \(exit code 1\): CMake Error at CMakeLists.txt:\d+ "
        r"\(message\): VECADD_BACKEND must be cpu, cuda or rocm, not 'bogus'; see "
        + re.escape(str(log)),
        err,
    )
    # Build directories stay in the work directory, not in the project's source tree.
    assert list((tmp_path / "work" / "jobs").glob("*/build/CMakeCache.txt"))
    assert not (ROOT / "examples" / "vecadd" / "work").exists()
    assert "VECADD_BACKEND must be cpu, cuda or rocm" in log.read_text()
    assert set(wheels(out)) == {None, "null"}


def test_cached_rerun_invokes_no_compiler(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Compiler shims on PATH that record each compile, then run the real compiler.
    shims, calls = tmp_path / "shims", tmp_path / "compiler-calls.txt"
    shims.mkdir()
    for name in ("cc", "c++", "gcc", "g++"):
        real = shutil.which(name)
        assert real is not None
        (shims / name).write_text(f'#!/bin/sh\necho "{name} $*" >> {calls}\nexec {real} "$@"\n')
        (shims / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{shims}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.delenv("CXX", raising=False)

    def compiles() -> int:
        return (
            sum(1 for line in calls.read_text().splitlines() if " -c " in f" {line} ")
            if calls.exists()
            else 0
        )

    def matrix(extra: str = "") -> Path:
        # No compiler cache: every compile of a build must reach the shims.
        path = cpu_matrix(tmp_path, extra)
        path.write_text(path.read_text() + '\n[defaults]\ncompiler-cache = "none"\n')
        return path

    args = (tmp_path / "dist", tmp_path / "cache", tmp_path / "work", "--json")
    assert build(matrix(), *args) == 0
    first = {r["job"]: r["status"] for r in json.loads(capsys.readouterr().out)}
    assert first == {
        "plain": "built",
        "cpu": "cached",
        "cpu-v3": "built",
    }  # plain and null share a build
    assert compiles() > 0
    before = compiles()
    before_bytes = {p.name: p.read_bytes() for p in (tmp_path / "dist").glob("*.whl")}

    assert build(matrix(), *args) == 0
    second = {r["job"]: r["status"] for r in json.loads(capsys.readouterr().out)}
    assert second == {"plain": "cached", "cpu": "cached", "cpu-v3": "cached"}
    assert compiles() == before
    assert {p.name: p.read_bytes() for p in (tmp_path / "dist").glob("*.whl")} == before_bytes

    # Change one variant's settings: only that variant is compiled again.
    assert build(matrix(', "cmake.define.VECADD_UNUSED" = "1"'), *args) == 0
    third = {r["job"]: r["status"] for r in json.loads(capsys.readouterr().out)}
    assert third == {"plain": "cached", "cpu": "cached", "cpu-v3": "built"}
    assert compiles() > before


def test_missing_toolchain_fails_before_any_build(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(BIN))  # no nvcc, no hipcc, no compilers
    monkeypatch.setenv("CUDA_HOME", str(tmp_path / "no-cuda"))
    monkeypatch.setattr("wheelforge.build.toolchains._DEFAULT_CUDA_HOME", tmp_path / "no-cuda")
    matrix = tmp_path / "system-only.toml"  # no fetching from PyPI: the system's nvcc or nothing
    matrix.write_text(
        EXAMPLE.read_text()
        .replace('toolchain-source = "auto"', "")
        .replace("../examples", str(ROOT / "examples"))
    )
    out = tmp_path / "dist"
    code = build(matrix, out, tmp_path / "cache", tmp_path / "work", "--only", "cuda13.0")
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip() == (
        "error: variant cuda13.0 needs nvcc: not found on PATH or in CUDA_HOME "
        "(install nvidia-cuda-nvcc or set CUDA_HOME)"
    )
    assert not (tmp_path / "work").exists() and not out.exists()


def test_github_plan_fan_out_equals_single_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CI fan-out, simulated: every matrix entry built in its own directory (its own
    cache and work directory, as on its own runner), merged, checked: the same release
    set as one machine building the whole matrix."""
    matrix = cpu_matrix(tmp_path)
    assert wf("plan", "--matrix", matrix, "--format", "github") == 0
    include = json.loads(capsys.readouterr().out)["include"]
    single = tmp_path / "single"
    assert build(matrix, single, tmp_path / "cache-single", tmp_path / "work-single") == 0
    jobs = []
    for entry in include:  # each CI job: its own machine, cache and work directory
        job = tmp_path / "jobs" / entry["id"]
        assert build(matrix, job / "dist", job / "cache", job / "work", "--only", entry["id"]) == 0
        jobs.append(job / "dist")
    merged = tmp_path / "merged"
    assert wf("merge", *jobs, "--out", merged) == 0
    assert wf("check", merged) == 0
    capsys.readouterr()
    # Every job's dist holds the release's sdist, byte-identical: merge collapses them.
    published = {p.name for p in single.iterdir() if p.is_file()}
    assert "vecadd-0.1.0.tar.gz" in published
    assert {p.name for p in merged.iterdir()} == published
    for name in published - {"wheelforge-manifest.json"}:
        assert (merged / name).read_bytes() == (single / name).read_bytes(), name

    def artifacts(dist: Path) -> list[dict[str, object]]:
        entries = json.loads((dist / "wheelforge-manifest.json").read_text())["artifacts"]
        # where each runner logged, what its compiler cache held, whether it compiled itself
        per_runner = ("log", "compiler_cache", "compiled")
        return [{k: v for k, v in e.items() if k not in per_runner} for e in entries]

    assert artifacts(merged) == artifacts(single)


@pytest.mark.parametrize(
    ("installer", "driver", "backend"),
    [("pip", "13.0", "cuda"), ("uv", "13.0", "cuda"), ("pip", None, None), ("uv", None, None)],
    ids=["pip-driver-13.0", "uv-driver-13.0", "pip-no-gpu", "uv-no-gpu"],
)
def test_wheelforge_install_puts_the_right_backend_in_place(
    dependencies: Path, dist: Path, tmp_path: Path, installer: str, driver: str | None,
    backend: str | None,
) -> None:  # fmt: skip
    """``wheelforge install`` from the built dist, detection through the driver override:
    the installed example reports the backend it was built for. Variant wheels are zstd:
    pip on this Python gets them transcoded."""
    level = supported.x86_64_level(supported.cpuinfo_flags(Path("/proc/cpuinfo").read_text()))
    expected = backend or ("cpu-x86-64-v3" if level >= 3 else "cpu")
    env = clean_env(tmp_path, UV_OFFLINE="1", PIP_NO_INDEX="1")
    if driver is not None:
        env["NV_VARIANT_PROVIDER_FORCE_CUDA_DRIVER_VERSION"] = driver
    venv = tmp_path / "venv"
    if installer == "pip":
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    else:
        subprocess.run([str(UV), "venv", "-q", "--python", sys.executable, str(venv)], env=env,
                       check=True)  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "wheelforge", "install", "vecadd", "--find-links", str(dist),
         "--find-links", str(dependencies), "--installer", installer,
         "--python", str(venv / "bin" / "python")],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert ("transcoded to deflate" in result.stderr) == (installer == "pip")
    probe = _run_in(venv, "import vecadd; print(vecadd.backend())")
    assert probe.stdout.strip() == expected, probe.stderr


def test_main_job_on_a_machine_without_hipcc(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's main command on a machine without Debian's hipcc: the ROCm variant is
    skipped, with the command that installs its toolchain, and the rest is built."""
    bare = tmp_path / "bin"  # the machine's tools, hipcc left out
    bare.mkdir()
    for directory in os.environ["PATH"].split(os.pathsep):
        for tool in Path(directory).glob("*") if Path(directory).is_dir() else ():
            if not tool.name.startswith("hip") and not (bare / tool.name).exists():
                (bare / tool.name).symlink_to(tool)
    monkeypatch.setenv("PATH", str(bare))
    args = [str(ROOT / a) if a.endswith(".toml") else a for a in main_job()]
    assert "--skip-unavailable" in args
    dirs = ["--out", tmp_path / "dist", "--cache-dir", tmp_path / "cache"]
    assert wf(*args, *dirs, "--work-dir", tmp_path / "work", "--only", "plain", "rocm") == 0
    captured = capsys.readouterr()
    assert re.search(r"^rocm +rocm52 +unavailable", captured.out, re.MULTILINE), captured.out
    assert (
        "warning: job rocm skipped: variant rocm needs hipcc: not found on PATH "
        "(on Debian: apt-get install hipcc libamdhip64-dev)"
    ) in captured.err
    assert set(wheels(tmp_path / "dist")) == {None}


def test_each_job_ran_its_smoke_test_on_its_claimed_machine(dist: Path) -> None:
    """matrix/example.toml's test-command ran after every job, in a fresh venv on the
    machine the label claims: the CPU variants computed under qemu's model of their
    level, the GPU variants loaded and reached vecadd's "no device" answer."""
    logs = dist.parent / "work" / "logs"
    expected = {
        "plain": ("x86-64-v1 (qemu-x86_64 -cpu qemu64,-sse3)", "computed [11.0, 22.0, 33.0]"),
        "cpu": ("x86-64-v1 (qemu-x86_64 -cpu qemu64,-sse3)", "computed [11.0, 22.0, 33.0]"),
        "cpu-x86-64-v3": ("x86-64-v3 (qemu-x86_64 -cpu Haswell)", "computed [11.0, 22.0, 33.0]"),
        "cuda13.0": ("NV_VARIANT_PROVIDER_FORCE_CUDA_DRIVER_VERSION=13.0", "no device here"),
        "cuda13.5": ("NV_VARIANT_PROVIDER_FORCE_CUDA_DRIVER_VERSION=13.5", "no device here"),
        "rocm": ("AMD_VARIANT_PROVIDER_FORCE_GFX_ARCH=gfx1030", "no device here"),
    }
    for job, (machine, outcome) in expected.items():
        log = (logs / f"{job}-test.log").read_text()
        assert machine in log and outcome in log, (job, log[-2000:])


def test_relative_directories_reach_a_fetched_toolchain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--cache-dir cache``: the CUDA 13.5 toolchain fetched into it is named by an
    absolute path in the build's environment (CMake runs in another directory)."""
    monkeypatch.chdir(tmp_path)
    code = wf("build", "--matrix", EXAMPLE, "--only", "cuda13.5", "--no-test",
              "--out", "dist", "--work-dir", "work", "--cache-dir", "cache")  # fmt: skip
    assert code == 0
    assert [p.name.rsplit("-", 1)[-1] for p in (tmp_path / "dist").glob("*.whl")] == ["cu135.whl"]
