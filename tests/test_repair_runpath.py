"""RUNPATH repair: leaked search paths are dropped, and every ELF that links an excluded
CUDA runtime finds it in the ``nvidia-*`` wheel that repair declared. The end-to-end test
installs the repaired wheel and ``nvidia-cuda-runtime`` with the real uv into a fresh venv
and asks ``ldd`` (and the loader itself) where ``libcudart`` comes from; no GPU needed."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import build_plain_wheel
from tests.installers import clean_env
from wheelforge.repair import (
    DroppedEntry,
    RunpathFix,
    drop_reason,
    fix_runpaths,
    install_dir,
    origin_entry,
    plan_runpath,
    runtime_wheel,
)
from wheelforge.wheel.elf import DynamicInfo

Cli = Callable[..., tuple[int, str, str]]
BIN = Path(sys.executable).parent
CUDA = Path("/usr/local/cuda")
needs_cuda = pytest.mark.skipif(
    not (CUDA / "lib64" / "libcudart.so.13").exists(), reason="needs the machine's CUDA 13 toolkit"
)


@pytest.mark.parametrize(
    ("soname", "cuda", "requirement", "libdir"),
    [
        # Checked against the wheels' contents (pip download --no-deps; unzip -l).
        ("libcudart.so.13", None, "nvidia-cuda-runtime==13.*", "nvidia/cu13/lib"),
        ("libcudart.so.13", "13.0", "nvidia-cuda-runtime==13.*", "nvidia/cu13/lib"),
        ("libcublas.so.13", "13.0", "nvidia-cublas==13.*", "nvidia/cu13/lib"),
        ("libcublasLt.so.13", None, "nvidia-cublas==13.*", "nvidia/cu13/lib"),
        ("libnvrtc.so.13", None, "nvidia-cuda-nvrtc==13.*", "nvidia/cu13/lib"),
        ("libcudart.so.12", "12.8", "nvidia-cuda-runtime-cu12==12.*", "nvidia/cuda_runtime/lib"),
        ("libcublas.so.12", None, "nvidia-cublas-cu12==12.*", "nvidia/cublas/lib"),
        ("libcublasLt.so.12", "12.4", "nvidia-cublas-cu12==12.*", "nvidia/cublas/lib"),
        ("libnvrtc.so.12", None, "nvidia-cuda-nvrtc-cu12==12.*", "nvidia/cuda_nvrtc/lib"),
        ("libcudart.so.11.0", "11.8", "nvidia-cuda-runtime-cu11==11.*", "nvidia/cuda_runtime/lib"),
        ("libcublasLt.so.11", None, "nvidia-cublas-cu11==11.*", "nvidia/cublas/lib"),
    ],
)
def test_runtime_wheel_and_where_it_installs(
    soname: str, cuda: str | None, requirement: str, libdir: str
) -> None:
    provider = runtime_wheel(soname, cuda)
    assert provider is not None
    assert (provider.requirement, provider.libdir) == (requirement, libdir)


def test_unknown_runtime_has_no_wheel() -> None:
    assert runtime_wheel("libcufft.so.12", "13.0") is None
    assert runtime_wheel("libstdc++.so.6", None) is None


@pytest.mark.parametrize(
    ("member", "where"),
    [
        ("pkg/_lib.so", "pkg"),
        ("_top.so", ""),
        ("pkg/sub/deep/_k.so", "pkg/sub/deep"),
        ("pkg-1.0.data/platlib/pkg/sub/_x.so", "pkg/sub"),
        ("pkg-1.0.data/purelib/_y.so", ""),
        ("pkg-1.0.data/scripts/tool", None),
        ("pkg-1.0.data/data/lib/libz.so", None),
    ],
)
def test_install_dir(member: str, where: str | None) -> None:
    assert install_dir(member) == where


@pytest.mark.parametrize(
    ("from_dir", "target", "entry"),
    [
        ("pkg", "nvidia/cu13/lib", "$ORIGIN/../nvidia/cu13/lib"),
        ("", "nvidia/cu13/lib", "$ORIGIN/nvidia/cu13/lib"),
        ("pkg/sub/deep", "nvidia/cublas/lib", "$ORIGIN/../../../nvidia/cublas/lib"),
        ("pkg/_native", "nvidia/cuda_runtime/lib", "$ORIGIN/../../nvidia/cuda_runtime/lib"),
        ("nvidia/cu13/lib", "nvidia/cu13/lib", "$ORIGIN"),
        ("nvidia/cu13", "nvidia/cu13/lib", "$ORIGIN/lib"),
    ],
)
def test_origin_entry(from_dir: str, target: str, entry: str) -> None:
    assert origin_entry(from_dir, target) == entry


@pytest.mark.parametrize(
    ("entry", "from_dir", "reason"),
    [
        ("/usr/local/cuda-13.0/lib", "pkg", "absolute path on the build machine"),
        ("/tmp", "pkg", "absolute path into a world-writable temporary directory"),
        (
            "/tmp/pip-build-x/nvidia/cu13/lib",
            "pkg",
            "absolute path into a world-writable temporary directory",
        ),
        ("/var/tmp/b", "pkg", "absolute path into a world-writable temporary directory"),
        ("/tmpfoo/lib", "pkg", "absolute path on the build machine"),
        ("lib", "pkg", "relative to the working directory at load time"),
        ("$ORIGIN/../../lib", "pkg", "leads out of site-packages"),
        ("$ORIGIN/..", "", "leads out of site-packages"),
        ("$ORIGIN", "pkg", None),
        ("$ORIGIN/", "", None),
        ("$ORIGIN/../pkg.libs", "pkg", None),
        ("${ORIGIN}/../nvidia/cu13/lib", "pkg", None),
        ("$ORIGIN/../../nvidia/cublas/lib", "pkg/sub", None),
        ("$ORIGIN/../../..", None, None),  # installed outside site-packages: no judgement
        ("/opt/lib", None, "absolute path on the build machine"),
        ("$ORIGINAL/x", "pkg", "relative to the working directory at load time"),
    ],
)
def test_drop_reason(entry: str, from_dir: str | None, reason: str | None) -> None:
    assert drop_reason(entry, from_dir) == reason


def info(
    needed: tuple[str, ...] = (), runpath: tuple[str, ...] = (), rpath: tuple[str, ...] = ()
) -> DynamicInfo:
    return DynamicInfo(None, needed, runpath, rpath)


CU13 = {"libcudart.so.13": "nvidia/cu13/lib", "libcublas.so.13": "nvidia/cu13/lib"}
CU12 = {"libcudart.so.12": "nvidia/cuda_runtime/lib", "libcublas.so.12": "nvidia/cublas/lib"}


def test_plan_drops_leaks_and_points_at_the_cuda13_wheels() -> None:
    leaked = info(
        ("libcublas.so.13", "libcudart.so.13", "libc.so.6"),
        runpath=("/usr/local/cuda-13.0/lib", "/tmp/x/nvidia/cu13/lib", "$ORIGIN/../probe.libs"),
    )
    assert plan_runpath("probe/_lib.so", leaked, CU13) == RunpathFix(
        member="probe/_lib.so",
        tag="RUNPATH",
        before=("/usr/local/cuda-13.0/lib", "/tmp/x/nvidia/cu13/lib", "$ORIGIN/../probe.libs"),
        after=("$ORIGIN/../probe.libs", "$ORIGIN/../nvidia/cu13/lib"),
        dropped=(
            DroppedEntry("/usr/local/cuda-13.0/lib", "absolute path on the build machine"),
            DroppedEntry(
                "/tmp/x/nvidia/cu13/lib", "absolute path into a world-writable temporary directory"
            ),
        ),
        added=("$ORIGIN/../nvidia/cu13/lib",),
    )


def test_plan_cuda12_one_directory_per_wheel_nested_and_rpath_kept() -> None:
    fix = plan_runpath(
        "probe-1.0.data/platlib/probe/ops/_k.so",
        info(("libcudart.so.12", "libcublas.so.12"), rpath=("/build/lib",)),
        CU12,
    )
    assert fix is not None
    assert fix.tag == "RPATH"  # DT_RPATH stays DT_RPATH: it also serves indirect dependencies
    assert (
        fix.after
        == fix.added
        == (
            "$ORIGIN/../../nvidia/cuda_runtime/lib",
            "$ORIGIN/../../nvidia/cublas/lib",
        )
    )
    assert fix.dropped == (DroppedEntry("/build/lib", "absolute path on the build machine"),)
    assert "dropped /build/lib (absolute path on the build machine);" in fix.describe()


def test_plan_leaves_clean_libraries_alone() -> None:
    assert plan_runpath("p/_a.so", info(("libc.so.6",), runpath=("$ORIGIN",)), CU13) is None
    already = info(("libcudart.so.13",), runpath=("$ORIGIN/../nvidia/cu13/lib",))
    assert plan_runpath("p/_a.so", already, CU13) is None
    # Installed outside site-packages: leaks still go, no wheel directory is guessed.
    script = plan_runpath("p-1.data/scripts/t", info(("libcudart.so.13",), ("/usr/lib",)), CU13)
    assert script is not None and script.after == () and script.added == ()


def test_plan_judges_both_entries_and_keeps_the_one_the_loader_reads() -> None:
    both = info(runpath=("$ORIGIN",), rpath=("/opt/old", "$ORIGIN/../x"))
    fix = plan_runpath("p/_a.so", both, {})
    assert fix is not None
    assert (fix.tag, fix.before, fix.after) == ("RUNPATH", ("$ORIGIN",), ("$ORIGIN",))
    assert [d.entry for d in fix.dropped] == ["/opt/old"]


# --- real libraries, real auditwheel, patchelf, uv and ldd ------------------------------


def test_fix_runpaths_patches_real_files_and_skips_the_rest(tmp_path: Path) -> None:
    src = tmp_path / "a.c"
    src.write_text("int a(void) { return 1; }\n")
    leaky, clean = tmp_path / "leaky.so", tmp_path / "clean.so"
    gcc("-shared", "-fPIC", "-o", leaky, src, "-Wl,-rpath,/opt/build/lib:$ORIGIN")
    gcc("-shared", "-fPIC", "-o", clean, src, "-Wl,-rpath,$ORIGIN")
    files = {
        "pkg/leaky.so": leaky.read_bytes(),
        "pkg/clean.so": clean.read_bytes(),
        "pkg/data.bin": b"\x7fELF but not an ELF file",
    }
    wheel = build_plain_wheel(tmp_path, "pkg", "1.0", tag="py3-none-linux_x86_64", files=files)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}")
    fixes, patched = fix_runpaths(wheel, {}, scratch=scratch, env=env)
    assert [(f.member, f.after) for f in fixes] == [("pkg/leaky.so", ("$ORIGIN",))]
    assert list(patched) == ["pkg/leaky.so"]
    patched_readelf = dynamic(patched["pkg/leaky.so"].read_bytes(), tmp_path)
    assert search_path(patched_readelf) == ("RUNPATH", "$ORIGIN")


def gcc(*args: str | Path) -> None:
    subprocess.run(["gcc", *map(str, args)], check=True, capture_output=True)


def dynamic(data: bytes, tmp_path: Path) -> str:
    path = tmp_path / "member.so"
    path.write_bytes(data)
    return subprocess.run(
        ["readelf", "-d", str(path)], capture_output=True, text=True, check=True
    ).stdout


def search_path(readelf: str) -> tuple[str, str] | None:
    match = re.search(r"\((RUNPATH|RPATH)\)\s+Library r(?:un)?path: \[(.*)\]", readelf)
    return (match[1], match[2]) if match else None


def members(wheel: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(wheel) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def leaky_wheel(tmp_path: Path) -> tuple[Path, Path]:
    """``probe``: ``probe/libprobe.so`` (DT_RUNPATH) and ``probe/_native/sub/libdeep.so``
    (DT_RPATH) both link libcudart with search paths into the toolkit and a /tmp build
    directory, as CMake leaves them. Returns the wheel and the leaked build directory."""
    leak = tmp_path / "build" / "nvidia" / "cu13" / "lib"
    leak.mkdir(parents=True)
    src = tmp_path / "probe.c"
    src.write_text(
        "#include <cuda_runtime_api.h>\n"
        "int probe_runtime_version(void) {\n"
        "  int v = 0; return cudaRuntimeGetVersion(&v) == cudaSuccess ? v : -1;\n}\n"
    )
    cuda = ["-I", CUDA / "include", f"-L{CUDA / 'lib64'}", "-lcudart"]
    shallow, deep = tmp_path / "libprobe.so", tmp_path / "libdeep.so"
    gcc("-shared", "-fPIC", "-o", shallow, src, *cuda,
        f"-Wl,--enable-new-dtags,-rpath,{CUDA / 'lib64'}:{leak}")  # fmt: skip
    gcc("-shared", "-fPIC", "-o", deep, src, *cuda,
        f"-Wl,--disable-new-dtags,-rpath,{leak}:$ORIGIN/..:{CUDA / 'lib64'}")  # fmt: skip
    files = {
        "probe/__init__.py": b"",
        "probe/libprobe.so": shallow.read_bytes(),
        "probe/_native/sub/libdeep.so": deep.read_bytes(),
    }
    wheel = build_plain_wheel(tmp_path, "probe", "1.0", tag="py3-none-linux_x86_64", files=files)
    return wheel, leak


@needs_cuda
def test_repair_drops_leaked_search_paths_and_reports_them(tmp_path: Path, cli: Cli) -> None:
    wheel, leak = leaky_wheel(tmp_path)
    toolkit = str(CUDA / "lib64")
    code, out, err = cli("repair", wheel, "-o", tmp_path / "out", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["requires_dist"] == ["nvidia-cuda-runtime==13.*"]
    fixes = {fix["member"]: fix for fix in report["runpaths"]}
    machine = "absolute path on the build machine"
    in_tmp = "absolute path into a world-writable temporary directory"
    leaked = {"entry": str(leak), "reason": in_tmp if str(leak).startswith("/tmp/") else machine}
    assert fixes == {
        "probe/libprobe.so": {
            "member": "probe/libprobe.so",
            "tag": "RUNPATH",
            "before": [toolkit, str(leak)],
            "after": ["$ORIGIN/../nvidia/cu13/lib"],
            "dropped": [{"entry": toolkit, "reason": machine}, leaked],
            "added": ["$ORIGIN/../nvidia/cu13/lib"],
        },
        "probe/_native/sub/libdeep.so": {
            "member": "probe/_native/sub/libdeep.so",
            "tag": "RPATH",
            "before": [str(leak), "$ORIGIN/..", toolkit],
            "after": ["$ORIGIN/..", "$ORIGIN/../../../nvidia/cu13/lib"],
            "dropped": [leaked, {"entry": toolkit, "reason": machine}],
            "added": ["$ORIGIN/../../../nvidia/cu13/lib"],
        },
    }

    repaired = Path(report["wheel"])
    content = members(repaired)
    assert search_path(dynamic(content["probe/libprobe.so"], tmp_path)) == (
        "RUNPATH",
        "$ORIGIN/../nvidia/cu13/lib",
    )
    assert search_path(dynamic(content["probe/_native/sub/libdeep.so"], tmp_path)) == (
        "RPATH",
        "$ORIGIN/..:$ORIGIN/../../../nvidia/cu13/lib",
    )
    assert cli("inspect", repaired)[0] == 0  # RECORD holds the patched members' hashes

    # The human output names each dropped entry too.
    code, out, err = cli("repair", wheel, "-o", tmp_path / "human")
    assert code == 0, err
    assert f"probe/libprobe.so: RUNPATH dropped {toolkit} ({machine}), {leak} (" in out
    assert "now $ORIGIN/../nvidia/cu13/lib" in out


@needs_cuda
def test_runtime_excluded_by_hand_is_still_found_in_its_wheel(tmp_path: Path, cli: Cli) -> None:
    wheel, _ = leaky_wheel(tmp_path)
    code, out, err = cli(
        "repair", wheel, "-o", tmp_path / "out", "--exclude", "libcudart.so.13", "--json"
    )
    assert code == 0, err
    report = json.loads(out)
    assert report["requires_dist"] == []  # the user declares it (matrix requires-dist)
    after = {fix["member"]: fix["after"] for fix in report["runpaths"]}
    assert after == {
        "probe/libprobe.so": ["$ORIGIN/../nvidia/cu13/lib"],
        "probe/_native/sub/libdeep.so": ["$ORIGIN/..", "$ORIGIN/../../../nvidia/cu13/lib"],
    }


@needs_cuda
def test_repair_of_runpaths_is_reproducible(
    tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    wheel, _ = leaky_wheel(tmp_path)
    outputs = []
    for run in ("a", "b"):
        code, out, err = cli("repair", wheel, "-o", tmp_path / run, "--json")
        assert code == 0, err
        outputs.append(Path(json.loads(out)["wheel"]).read_bytes())
    assert outputs[0] == outputs[1]


def ldd(library: Path, env: dict[str, str]) -> dict[str, str]:
    """soname -> the path the loader resolves it to, or "not found"."""
    out = subprocess.run(
        ["ldd", str(library)], capture_output=True, text=True, env=env, check=True
    ).stdout
    return dict(re.findall(r"^\s*(\S+) => (\S+|not found)", out, re.MULTILINE))


@pytest.mark.slow
@needs_cuda
def test_excluded_runtime_resolves_into_the_venv_after_a_real_uv_install(
    tmp_path: Path, cli: Cli
) -> None:
    wheel, leak = leaky_wheel(tmp_path)
    # The leaked build directory holds a libcudart too, as the machine had: the
    # loader must not take it.
    (leak / "libcudart.so.13").write_bytes((CUDA / "lib64" / "libcudart.so.13").read_bytes())
    code, out, err = cli("repair", wheel, "-o", tmp_path / "out", "--json")
    assert code == 0, err
    report = json.loads(out)
    repaired = Path(report["wheel"])

    deps = tmp_path / "deps"
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
         "-d", str(deps), *report["requires_dist"]],
        check=True, capture_output=True,
    )  # fmt: skip
    env = clean_env(tmp_path, UV_OFFLINE="1")
    env.pop("LD_LIBRARY_PATH", None)
    venv = tmp_path / "venv"
    uv = str(BIN / "uv")
    subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(venv)], env=env, check=True)
    subprocess.run(
        [uv, "pip", "install", "-q", "--python", str(venv / "bin" / "python"),
         "--no-index", "--find-links", str(deps), f"probe @ {repaired.as_uri()}"],
        env=env, check=True, capture_output=True,
    )  # fmt: skip
    site = next((venv / "lib").glob("python3.*/site-packages"))
    wheel_cudart = site / "nvidia" / "cu13" / "lib" / "libcudart.so.13"
    assert wheel_cudart.is_file()

    for member in ("probe/libprobe.so", "probe/_native/sub/libdeep.so"):
        resolved = ldd(site / member, env).get("libcudart.so.13", "not linked")
        assert Path(resolved).resolve() == wheel_cudart.resolve(), (member, resolved)

    # The loader agrees: the library loads, and the cudart mapped is the wheel's.
    probe = (
        "import ctypes, sys\n"
        f"lib = ctypes.CDLL({str(site / 'probe' / 'libprobe.so')!r})\n"
        "assert lib.probe_runtime_version() > 0\n"
        "maps = open('/proc/self/maps').read().split()\n"
        "print(*sorted({p for p in maps if p.endswith('libcudart.so.13')}))\n"
    )
    run = subprocess.run(
        [str(venv / "bin" / "python"), "-c", probe],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert [Path(p).resolve() for p in run.stdout.split()] == [wheel_cudart.resolve()]
    assert str(leak) not in os.fspath(run.stdout)
