"""Per-variant smoke tests (``wheelforge test``, ``test-command``): real wheels installed
with the real uv, run under the real qemu-user with the CPU model of the level each
wheel claims, and with the GPU its properties claim in the providers' override
variables."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.isa_libs import build_wheel
from wheelforge.errors import InvalidInput
from wheelforge.matrix import load_matrix
from wheelforge.smoke import (
    FORCE_CUDA_DRIVER,
    FORCE_GFX_ARCH,
    FORCE_ROCM_VERSION,
    FORCE_SM_ARCH,
    Machine,
    choose_runner,
    claimed_machine,
    command_argv,
    died_of_sigill,
)
from wheelforge.tag import TagRequest, tag_wheel
from wheelforge.variants.config import default_config
from wheelforge.variants.properties import VariantProperty

Cli = Callable[..., tuple[int, str, str]]

needs_qemu = pytest.mark.skipif(
    shutil.which("qemu-x86_64") is None, reason="qemu-user is not installed (.ci/run installs it)"
)
IMPORT_AND_COMPUTE = 'python -c "import isademo; assert isademo.compute() == 2016"'


def props(*texts: str) -> frozenset[VariantProperty]:
    return frozenset(VariantProperty.parse(t) for t in texts)


def tagged(wheel: Path, out: Path, label: str, *properties: str) -> Path:
    request = TagRequest(properties=props(*properties), label=label, config=default_config())
    return tag_wheel(wheel, out, request)


# What a wheel claims, and how it runs here (pure).


def test_the_claimed_machine_is_the_weakest_the_wheel_names() -> None:
    plain = claimed_machine([], label=None, platform_tag="linux_x86_64")
    assert (plain.level, plain.claim, plain.env) == (1, "the plain wheel", ())
    assert claimed_machine([], label="null", platform_tag="any").level == 1
    cuda = claimed_machine(
        props(
            "nvidia :: cuda_version_lower_bound :: 13.0",
            "nvidia :: cuda_version_lower_bound :: 12.8",
            "nvidia :: sm_arch :: 100_real",
            "nvidia :: sm_arch :: 90_real",
            "x86_64 :: level :: v3",
        ),
        label="cu12",
        platform_tag="manylinux_2_28_x86_64",
    )
    assert cuda.level == 3
    assert dict(cuda.env) == {FORCE_CUDA_DRIVER: "12.8", FORCE_SM_ARCH: "9.0"}
    sm_only = claimed_machine(props("nvidia :: sm_arch :: 120_real"), label="b", platform_tag="any")
    assert dict(sm_only.env) == {FORCE_CUDA_DRIVER: "12.0", FORCE_SM_ARCH: "12.0"}
    rocm = claimed_machine(
        props(
            "amd :: gfx_arch :: gfx90a", "amd :: gfx_arch :: gfx1030", "amd :: rocm_version :: 6"
        ),
        label="rocm",
        platform_tag="linux_x86_64",
    )
    assert dict(rocm.env) == {FORCE_GFX_ARCH: "gfx1030", FORCE_ROCM_VERSION: "6.0"}
    assert claimed_machine([], label=None, platform_tag="linux_aarch64").level is None


def test_each_level_has_its_qemu_model_and_v4_runs_natively_or_not_at_all() -> None:
    def runner(level: int, host: int | None = 4, **kw: bool) -> tuple[str | None, str | None]:
        machine = Machine(level, f"level {level}", platform="linux_x86_64")
        found = choose_runner(
            machine, host_level=host, native=kw.get("native", False), qemu_found=kw.get("q", True)
        )
        return found.model, found.skip

    assert [runner(n)[0] for n in (1, 2, 3)] == ["qemu64,-sse3", "Nehalem", "Haswell"]
    assert runner(4, host=4) == (None, None)  # TCG has no AVX-512: the v4 CPU itself
    model, skip = runner(4, host=3)
    assert model is None and skip is not None and "no AVX-512" in skip
    assert runner(3, native=True) == (None, None)
    _, skip = runner(2, q=False)
    assert skip is not None and "apt-get install qemu-user" in skip
    aarch64 = Machine(None, "the plain wheel", platform="linux_aarch64")
    assert choose_runner(aarch64, host_level=3, native=False, qemu_found=True).skip


def test_placeholders_cannot_inject_into_the_shell(tmp_path: Path) -> None:
    hostile = tmp_path / "x'; touch INJECTED; echo '" / "a $(touch INJECTED2).whl"
    argv = command_argv("echo {wheel} {project}", project=tmp_path / "p q", wheel=hostile)
    assert argv[:2] == ["sh", "-c"]
    out = subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path, check=True).stdout
    assert out == f"{hostile} {tmp_path / 'p q'}\n"
    assert not list(tmp_path.glob("INJECTED*"))
    # An argv gets the values verbatim, and the shell's own ${VAR} is left alone.
    assert command_argv(("ls", "{wheel}", "${HOME}"), project=tmp_path, wheel=hostile) == [
        "ls", str(hostile), "${HOME}",
    ]  # fmt: skip


def test_sigill_is_recognised_however_it_surfaces() -> None:
    assert died_of_sigill(-4, "") and died_of_sigill(132, "")
    assert died_of_sigill(1, "qemu: uncaught target signal 4 (Illegal instruction) - core dumped")
    assert not died_of_sigill(1, "AssertionError") and not died_of_sigill(-11, "")


# The matrix keys.


HEAD = '[project]\npath = "."\n\n[[variants]]\nkind = "plain"\n'


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('test-command = "python -c \\"import demo\\" {wheels}"',
         r"variants\[0\].test-command: unknown placeholder \{wheels\} \(did you mean 'wheel'\?\); "
         r"expected \{project\} \(the project directory\) or \{wheel\}"),
        ('test-command = ["pytest", "{projekt}/tests"]',
         r"variants\[0\].test-command\[1\]: unknown placeholder \{projekt\} \(did you mean 'project'\?\)"),
        ("test-command = []", r"test-command: expected a shell command string or a non-empty argv"),
        ("test-command = 3", r"test-command: expected a shell command string or a non-empty argv"),
        ('test-command = "true"\ntest-requires = ["--index-url=http://evil"]',
         r"test-requires\[0\]: expected a PEP 508 requirement"),
        ('test-comand = "true"', r"unknown key \(did you mean 'test-command'\?\)"),
    ],
)  # fmt: skip
def test_bad_test_commands_are_one_clear_line(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "m.toml"
    path.write_text(HEAD + body + "\n")
    with pytest.raises(InvalidInput, match=message):
        load_matrix(path)


def test_test_command_forms_and_defaults(tmp_path: Path) -> None:
    path = tmp_path / "m.toml"
    path.write_text(
        '[project]\npath = "."\n[axes]\nlevel = ["v3"]\n'
        '[defaults]\ntest-command = "python -c \\"import demo\\" # ${HOME} {wheel}"\n'
        'test-requires = ["pytest>=8"]\n'
        '[[variants]]\nkind = "plain"\n'
        '[[variants]]\naxes = ["level"]\nproperties = ["x86_64 :: level :: {{ level }}"]\n'
        'test-command = ["python", "{project}/smoke_{{ level }}.py", "{wheel}"]\n'
    )
    plain, v3 = load_matrix(path).jobs
    assert plain.test_command == 'python -c "import demo" # ${HOME} {wheel}'
    assert plain.test_requires == ("pytest>=8",)
    assert v3.test_command == ("python", "{project}/smoke_v3.py", "{wheel}")
    assert v3.to_json()["test-command"] == ["python", "{project}/smoke_v3.py", "{wheel}"]


# The real thing: uv, qemu-user, gcc.


@needs_qemu
@pytest.mark.slow
def test_a_static_initialiser_needing_avx512_fails_and_a_dispatched_kernel_passes(
    tmp_path: Path, cli: Cli
) -> None:
    static = build_wheel("static-init", tmp_path / "static")
    dispatched = build_wheel("dispatched", tmp_path / "dispatched")
    logs = tmp_path / "logs"
    code, out, err = cli(
        "test", static, "--command", IMPORT_AND_COMPUTE, "--no-deps", "--log-dir", logs, "--json"
    )
    assert code == 1, err
    [result] = json.loads(out)
    assert (result["status"], result["level"]) == ("failed", "x86-64-v1")
    assert result["cpu"] == "qemu-x86_64 -cpu qemu64,-sse3"
    assert (
        "isademo-1.0-py3-none-linux_x86_64.whl needs a newer CPU than its label claims: the test "
        "died of SIGILL (illegal instruction) on x86-64-v1 (baseline), the level the plain "
        "wheel claims"
    ) in result["error"]
    assert "Illegal instruction" in "\n".join(result["tail"])
    assert "needs a newer CPU than its label claims" in err and "  | " in err  # the log's tail

    code, out, err = cli(
        "test", dispatched, "--command", IMPORT_AND_COMPUTE, "--no-deps", "--log-dir", logs
    )
    assert code == 0, err
    assert "passed" in out and "x86-64-v1" in out


@needs_qemu
@pytest.mark.slow
def test_a_v3_label_runs_on_haswell_and_names_its_level(tmp_path: Path, cli: Cli) -> None:
    plain = build_wheel("static-init", tmp_path / "static")
    v3 = tagged(plain, tmp_path / "v3", "x86_64_v3", "x86_64 :: level :: v3")
    code, out, _ = cli("test", v3, "--command", IMPORT_AND_COMPUTE, "--no-deps", "--json",
                         "--log-dir", tmp_path / "logs")  # fmt: skip
    assert code == 1
    [result] = json.loads(out)
    assert result["cpu"] == "qemu-x86_64 -cpu Haswell"
    assert "on x86-64-v3, the level label 'x86_64_v3' claims" in result["error"]


@needs_qemu
@pytest.mark.slow
def test_a_gpu_variant_sees_its_claimed_gpu_through_the_override_variables(
    tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = build_wheel("baseline", tmp_path / "base")
    cuda = tagged(
        plain, tmp_path / "cu", "cu128",
        "nvidia :: cuda_version_lower_bound :: 12.8", "nvidia :: cuda_version_lower_bound :: 13.0",
        "nvidia :: sm_arch :: 90_real",
    )  # fmt: skip
    # The command asks wheelforge's own NVIDIA detection (the selector's) what it sees,
    # and the package in the test venv computes on the emulated baseline CPU.
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import json, sys\n"
        "from wheelforge.select.detect import System, detect_nvidia\n"
        "found = detect_nvidia(System())\n"
        "json.dump({'source': found.source, 'facts': found.facts, "
        "'lower': found.features['cuda_version_lower_bound'][:2], "
        "'sm': found.features['sm_arch'][:1], 'wheel': sys.argv[1]}, "
        "open(sys.argv[2], 'w'))\n"
    )
    seen = tmp_path / "seen.json"
    command = (
        f"{IMPORT_AND_COMPUTE} && {sys.executable} {probe} {{wheel}} {seen} && "
        'test "$WHEELFORGE_TEST_LEVEL" = x86-64-v1'
    )
    monkeypatch.setenv(FORCE_CUDA_DRIVER, "99.9")  # the host's overrides are replaced
    monkeypatch.setenv(FORCE_GFX_ARCH, "gfx942")  # and removed where the wheel claims none
    code, out, err = cli("test", cuda, "--command", f"{command} && test -z \"${FORCE_GFX_ARCH}\"",
                         "--no-deps", "--json", "--log-dir", tmp_path / "logs")  # fmt: skip
    assert code == 0, err
    [result] = json.loads(out)
    assert result["env"] == {FORCE_CUDA_DRIVER: "12.8", FORCE_SM_ARCH: "9.0"}
    found = json.loads(seen.read_text())
    assert found["facts"] == {"cuda_driver": "12.8", "sm_arch": "9.0"}
    assert found["lower"] == ["12.8", "12.7"] and found["sm"] == ["90_real"]
    assert found["wheel"] == str(cuda.resolve())


@needs_qemu
@pytest.mark.slow
def test_build_runs_the_test_command_per_job_and_a_failure_keeps_the_wheel_out(
    tmp_path: Path, cli: Cli
) -> None:
    from tests.test_build_isolation import make_project, write_matrix

    project = make_project(tmp_path)
    check = (
        "test-command = \"python -c 'import os, tiny; "
        f'assert os.environ[\\"{FORCE_CUDA_DRIVER}\\"] == \\"13.0\\"\'"'
    )
    matrix = write_matrix(tmp_path, project, cuda_extra=check)
    args = ("build", "--matrix", matrix, "--out", tmp_path / "dist", "--cache-dir",
            tmp_path / "cache", "--work-dir", tmp_path / "work", "--only", "cuda", "--json")  # fmt: skip
    code, out, err = cli(*args)
    assert code == 0, err
    [job] = json.loads(out)
    assert job["test"]["status"] == "passed" and job["test"]["env"] == {FORCE_CUDA_DRIVER: "13.0"}
    assert "[1/1] cuda: test: passed" in err
    # wheelforge test on the dist: the manifest names the matrix and the job of each wheel.
    code, out, err = cli("test", tmp_path / "dist", "--json", "--log-dir", tmp_path / "logs")
    assert code == 0, err
    assert [(r["status"], r["env"]) for r in json.loads(out)] == [
        ("passed", {FORCE_CUDA_DRIVER: "13.0"})
    ]

    failing = write_matrix(tmp_path, project, cuda_extra='test-command = "exit 3"')
    (tmp_path / "dist").joinpath(Path(job["wheel"]).name).unlink()
    code, out, err = cli(*[a if a != matrix else failing for a in args])
    assert code == 1
    assert "error: job cuda: smoke test: the test command failed (exit code 3)" in err
    assert not list((tmp_path / "dist").glob("*.whl"))
    code, out, err = cli(*[a if a != matrix else failing for a in args], "--no-test")
    assert code == 0 and json.loads(out)[0]["test"] is None


def test_without_a_test_command_the_user_is_told_what_to_give(tmp_path: Path, cli: Cli) -> None:
    wheel = build_wheel("baseline", tmp_path)
    code, _, err = cli("test", wheel)
    assert code == 2 and "give --matrix FILE (with test-command) or --command CMD" in err


def test_the_generated_workflows_test_each_job_after_building_it() -> None:
    from wheelforge.ci.init import InitOptions, render

    for path, text in render(InitOptions("demo", accelerators=("cpu", "cuda"))).items():
        if not path.endswith(".yml"):
            continue
        build = text.index('wheelforge build --matrix "$MATRIX" --only "$JOB"')
        test = text.index('run: wheelforge test dist --matrix "$MATRIX"')
        upload = text.index("name: upload the job's wheels")
        assert text.index("apt-get install -y -q --no-install-recommends qemu-user") < build
        assert build < test < upload, path
        assert "--no-test" in text[build:test] and '"$UV"' in text


@needs_qemu
@pytest.mark.slow
def test_a_command_that_hangs_is_stopped_with_its_children(tmp_path: Path, cli: Cli) -> None:
    wheel = build_wheel("baseline", tmp_path)
    marker = tmp_path / "still-running"
    command = f"python -c \"import time; time.sleep(5); open({str(marker)!r}, 'w')\" & wait"
    code, out, _ = cli("test", wheel, "--command", command, "--no-deps", "--timeout", "2",
                         "--json", "--log-dir", tmp_path / "logs")  # fmt: skip
    assert code == 1
    assert "the test command timed out after 2s" in json.loads(out)[0]["error"]
    time.sleep(4)
    assert not marker.exists()  # the emulated Python went with the shell


@needs_qemu
@pytest.mark.slow
def test_a_v4_wheel_runs_natively_on_a_v4_cpu_and_is_reported_untested_below(
    tmp_path: Path,
) -> None:
    from wheelforge.smoke import TestOptions, TestSpec, host_x86_64_level, run_smoke_test

    plain = build_wheel("static-init", tmp_path / "static")
    v4 = tagged(plain, tmp_path / "v4", "x86_64_v4", "x86_64 :: level :: v4")
    spec = TestSpec(IMPORT_AND_COMPUTE, tmp_path)
    lines: list[str] = []

    def run(host: int) -> tuple[str, str, str | None]:
        options = TestOptions(no_deps=True, host_level=host)
        found = run_smoke_test(v4, spec, options, log_path=tmp_path / "v4.log",
                               progress=lambda _, line: lines.append(line))  # fmt: skip
        return found.status, found.cpu, found.error

    status, cpu, error = run(3)
    assert (status, cpu) == ("skipped", "-")
    assert error is not None and "qemu's TCG has no AVX-512 and this CPU is x86-64-v3" in error
    if host_x86_64_level() == 4:  # the AVX-512 initialiser runs on the real CPU
        assert run(4)[:2] == ("passed", "native")
