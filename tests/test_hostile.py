"""Hostile input, as a pull request can bring it to CI where wheelforge runs as root:
matrix job ids that climb out of the work directory, templates that try to run commands,
manifests that name files elsewhere, project names that break out of the generated files,
environment variables that cibuildwheel's parser would execute. Each is refused with one
``error:`` line naming the file and key (exit 2), and nothing outside is touched."""

from __future__ import annotations

import codecs
import dataclasses
import json
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

import jinja2
import pytest
from cibuildwheel.bashlex_eval import local_environment_executor
from cibuildwheel.environment import parse_environment
from cibuildwheel.frontend import parse_config_settings
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import build_plain_wheel
from wheelforge.build.cache import REPAIRED, BuildCache
from wheelforge.build.cibuildwheel import environment_string
from wheelforge.build.manifest import MANIFEST_NAME
from wheelforge.build.orchestrator import BuildOptions, build_jobs, plan_build
from wheelforge.ci.init import InitOptions, render
from wheelforge.errors import InvalidInput
from wheelforge.matrix import Matrix, load_matrix
from wheelforge.paths import ensure_inside, inside, remove_tree
from wheelforge.publish.index import IndexedFile, Site, _templates
from wheelforge.templating import toml_string, yaml_string

Cli = Callable[..., tuple[int, str, str]]
CPU = "x86_64 :: level :: v3"


def refused(code: int, err: str, *expected: str) -> str:
    """Exit 2, one ``error:`` line holding each of ``expected``, no traceback."""
    assert code == 2, err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, err
    for text in expected:
        assert text in errors[0], (text, errors[0])
    return errors[0]


def wheelforge(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The real entry point, in its own process."""
    return subprocess.run(
        [sys.executable, "-m", "wheelforge", *map(str, args)],
        cwd=cwd, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def toml(value: str) -> str:
    """``value`` as a TOML string, written independently of wheelforge's own quoting."""
    text = json.dumps(value)
    assert tomllib.loads(f"x = {text}")["x"] == value
    return text


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A checkout: a project to build, and a sentinel that must survive."""
    root = tmp_path / "repo"
    (root / "proj").mkdir(parents=True)
    (root / "proj" / "pyproject.toml").write_text('[project]\nname = "demo"\nversion = "1.0"\n')
    (root / "keep.txt").write_text("the working tree")
    return root


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory nothing may write to or delete from."""
    directory = tmp_path / "outside"
    directory.mkdir()
    (directory / "keep.txt").write_text("not yours")
    (directory / "victim.whl").write_text("not yours either")
    return directory


def untouched(directory: Path) -> None:
    assert sorted(p.name for p in directory.iterdir()) == ["keep.txt", "victim.whl"]
    assert (directory / "keep.txt").read_text() == "not yours"


def write_matrix(
    repo: Path, variant: str, *, axes: str = "", python: str = '["3"]', source: str = "sdist"
) -> Path:
    path = repo / "m.toml"
    path.write_text(
        f'[project]\npath = "proj"\npython = {python}\nsource = "{source}"\n{axes}\n'
        f"[[variants]]\n{variant}\n"
    )
    return path


# -- job ids --------------------------------------------------------------------------

BAD_IDS = ["../..", "..", ".", "a/b", "jobs/../../x", "ABSOLUTE", "a\\b", "CUDA", "-rf",
           "x" * 101, "a\nb", "a\x00b", "a b"]  # fmt: skip


@pytest.mark.parametrize("job_id", BAD_IDS)
def test_plan_refuses_job_ids_that_are_not_names(
    repo: Path, outside: Path, cli: Cli, job_id: str
) -> None:
    job_id = str(outside) if job_id == "ABSOLUTE" else job_id
    matrix = write_matrix(repo, f'id = {toml(job_id)}\nkind = "plain"')
    code, _, err = cli("plan", "--matrix", matrix)
    refused(code, err, f"{matrix}: variants[0].id: job id {job_id!r}")


@pytest.mark.parametrize("job_id", ["../..", "ABSOLUTE"])
def test_build_with_a_climbing_id_deletes_nothing(repo: Path, outside: Path, job_id: str) -> None:
    """The reproduction: ``build`` removed ``.wheelforge/jobs/ID`` before building."""
    job_id = str(outside) if job_id == "ABSOLUTE" else job_id
    write_matrix(repo, f'id = {toml(job_id)}\nkind = "plain"')
    for command in (["plan"], ["build", "--cache-dir", repo / "cache"]):
        result = wheelforge(*command, "--matrix", "m.toml", cwd=repo)
        refused(result.returncode, result.stderr, "m.toml: variants[0].id: job id")
    assert (repo / "keep.txt").read_text() == "the working tree"
    assert not (repo / ".wheelforge").exists()
    untouched(outside)


def test_ids_made_from_axis_values_labels_and_pythons(repo: Path, cli: Cli) -> None:
    axis = write_matrix(
        repo, 'id = "v-{{ name }}"\naxes = ["name"]\nkind = "plain"',
        axes='[axes]\nname = ["ok", "../../x"]',
    )  # fmt: skip
    refused(*cli("plan", "--matrix", axis)[::2], "variants[0].id: job id 'v-../../x'")
    python = write_matrix(repo, 'kind = "plain"', python='["3.12", "../x"]')
    refused(*cli("plan", "--matrix", python)[::2], "project.python[1]: expected 3 or a version")
    label = write_matrix(repo, f'label = ".."\nproperties = ["{CPU}"]')  # a valid label
    refused(*cli("plan", "--matrix", label)[::2], "job id '..'", "(the default id: the label)")


@pytest.mark.parametrize(
    "job_id",
    [
        "cuda13.0",
        "cpu-x86-64-v3",
        "plain",
        "rocm",
        "cuda12.8-sm90",
        "x86_64_v3",
        "null",
        "cu128_90-py3.12",
        "a" * 100,
    ],
)
def test_the_ids_in_use_stay_valid(repo: Path, cli: Cli, job_id: str) -> None:
    code, out, err = cli("plan", "--matrix", write_matrix(repo, f'id = "{job_id}"\nkind = "plain"'),
                         "--json")  # fmt: skip
    assert code == 0, err
    assert [job["id"] for job in json.loads(out)] == [job_id]


def test_toolchain_versions_are_versions(repo: Path, cli: Cli) -> None:
    """toolchain-version names the directory a CUDA toolkit is fetched into."""
    matrix = write_matrix(repo, f'properties = ["{CPU}"]\ntoolchain = "nvcc"\n'
                                'toolchain-version = "13.0/../../../x"')  # fmt: skip
    refused(*cli("plan", "--matrix", matrix)[::2], "variants[0].toolchain-version: expected a "
            "version like 12.8 or 6.4, got '13.0/../../../x'")  # fmt: skip


# -- templates ------------------------------------------------------------------------

# Each runs `touch MARKER` when rendered by a plain jinja2.Environment (checked below).
PAYLOADS = {
    "cycler": "{{ cycler.__init__.__globals__.os.popen('touch MARKER').read() }}",
    "self": "{{ self.__init__.__globals__.__builtins__.__import__('os')"
    ".popen('touch MARKER').read() }}",
    "mro": "{% for c in cuda.__class__.__mro__[1].__subclasses__() %}"
    "{% if c.__name__ == '_wrap_close' %}"
    "{{ c.__init__.__globals__['popen']('touch MARKER').read() }}{% endif %}{% endfor %}",
    "lipsum": "{{ lipsum.__globals__['os'].popen('touch MARKER').read() }}",
}
# field -> (the variant's TOML with {} for the template, the key path in the error)
FIELDS = {
    "runner": (f'properties = ["{CPU}"]\nrunner = {{}}', "runner"),
    "label": (f'properties = ["{CPU}"]\nlabel = {{}}', "label"),
    "id": (f'properties = ["{CPU}"]\nid = {{}}', "id"),
    "properties": ("properties = [{}]", "properties[0]"),
    "config-settings": (
        f'properties = ["{CPU}"]\nconfig-settings = {{{{ "cmake.define.X" = {{}} }}}}',
        "config-settings.cmake.define.X",
    ),
    "env": (f'properties = ["{CPU}"]\nenv = {{{{ FOO = {{}} }}}}', "env.FOO"),
    "requires-dist": (f'properties = ["{CPU}"]\nrequires-dist = [{{}}]', "requires-dist[0]"),
    "toolchain-version": (f'properties = ["{CPU}"]\ntoolchain-version = {{}}', "toolchain-version"),
    "manylinux-image": (f'properties = ["{CPU}"]\nmanylinux-image = {{}}', "manylinux-image"),
}


@pytest.mark.parametrize("payload", sorted(PAYLOADS))
def test_the_payloads_do_run_commands_outside_a_sandbox(tmp_path: Path, payload: str) -> None:
    """What the sandbox tests below stop is real: jinja2 without it runs the command."""
    marker = tmp_path / "MARKER"
    template = PAYLOADS[payload].replace("MARKER", str(marker))
    jinja2.Environment().from_string(template).render(cuda="12.8", python="3.12")
    assert marker.exists()


@pytest.mark.parametrize("field", sorted(FIELDS))
@pytest.mark.parametrize("payload", sorted(PAYLOADS))
def test_templates_are_sandboxed(
    repo: Path, tmp_path: Path, cli: Cli, payload: str, field: str
) -> None:
    marker = tmp_path / "MARKER"
    template = PAYLOADS[payload].replace("MARKER", str(marker))
    variant, key = FIELDS[field]
    matrix = write_matrix(
        repo, 'axes = ["cuda"]\n' + variant.format(toml(template)), axes='[axes]\ncuda = ["12.8"]'
    )
    for fmt in ("table", "json", "github", "cibuildwheel"):
        code, _, err = cli("plan", "--matrix", matrix, "--format", fmt)
        line = refused(code, err, f"{matrix}: variants[0].{key}: template ")
        assert "refused by the sandbox" in line or "is undefined" in line
    assert not marker.exists()


def test_the_reproduced_template_through_the_entry_point(repo: Path) -> None:
    write_matrix(repo, f'properties = ["{CPU}"]\nrunner = '
                 + toml("{{ cycler.__init__.__globals__.os.popen('touch PWNED').read() }}"))  # fmt: skip
    result = wheelforge("plan", "--matrix", "m.toml", cwd=repo)
    refused(result.returncode, result.stderr, "m.toml: variants[0].runner: template ")
    assert not (repo / "PWNED").exists()


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{ '{0.__class__}'.format(cuda) }}", "refused by the sandbox"),
        ("{{ cuda.__class__ }}", "refused by the sandbox"),
        ("{{ cuda | attr('__class__') }}", "refused by the sandbox"),
        ("{{ self._TemplateReference__context }}", "refused by the sandbox"),
        ("{{ range(3) | list }}", "'range' is undefined"),
        ("{{ namespace() }}", "'namespace' is undefined"),
        ("{% include '/etc/passwd' %}", "template error"),
        ("{{ 1 / 0 }}", "template error: ZeroDivisionError"),
        ("{{ 10.0 ** 1000 }}", "template error: OverflowError"),
    ],
)
def test_other_escapes_and_failures_are_one_line_errors(
    repo: Path, cli: Cli, template: str, message: str
) -> None:
    matrix = write_matrix(repo, f'axes = ["cuda"]\nproperties = ["{CPU}"]\nrunner = {toml(template)}',
                          axes='[axes]\ncuda = ["12.8"]')  # fmt: skip
    refused(*cli("plan", "--matrix", matrix)[::2], f"{matrix}: variants[0].runner: ", message)


def test_the_documented_template_features_still_work(repo: Path, cli: Cli) -> None:
    matrix = write_matrix(
        repo,
        'id = "cuda{{ cuda }}"\naxes = ["cuda"]\nlabel = "cu{{ cuda | replace(\'.\', \'\') }}"\n'
        'properties = ["nvidia :: cuda_version_lower_bound :: {{ cuda }}"]\n'
        "requires-dist = [\"nvidia-cuda-runtime-cu{{ cuda.split('.')[0] }}>={{ cuda }}\"]\n"
        "runner = \"{{ 'gpu' if cuda == '13.0' else 'cpu' }}-py{{ python }}\"",
        axes='[axes]\ncuda = ["12.8", "13.0"]',
    )
    code, out, err = cli("plan", "--matrix", matrix, "--json")
    assert code == 0, err
    jobs = json.loads(out)
    assert [(j["id"], j["label"], j["runner"]) for j in jobs] == [
        ("cuda12.8", "cu128", "cpu-py3"),
        ("cuda13.0", "cu130", "gpu-py3"),
    ]
    assert jobs[1]["requires-dist"] == ["nvidia-cuda-runtime-cu13>=13.0"]


# -- cibuildwheel's environment -------------------------------------------------------


@pytest.mark.parametrize(
    "key", ["A=1 B=$(touch MARKER) C", "1A", "A-B", "A B", "", "PATH\n", "A;touch MARKER"]
)
def test_env_keys_must_be_variable_names(repo: Path, tmp_path: Path, cli: Cli, key: str) -> None:
    marker = tmp_path / "MARKER"
    key = key.replace("MARKER", str(marker))
    shown = key if re.fullmatch(r"[A-Za-z0-9_.-]+", key) else json.dumps(key)  # a TOML key
    matrix = write_matrix(repo, f'properties = ["{CPU}"]\nenv = {{ {toml(key)} = "x" }}')
    for fmt in ("cibuildwheel", "table"):
        code, _, err = cli("plan", "--matrix", matrix, "--format", fmt)
        refused(code, err, f"{matrix}: variants[0].env.{shown}: environment variable "
                f"name {key!r}: expected letters")  # fmt: skip
    assert not marker.exists()


HOSTILE_VALUES = [
    "$(touch MARKER)", "`touch MARKER`", "; touch MARKER", "&& touch MARKER", "| touch MARKER",
    "'$(touch MARKER)'", '"$(touch MARKER)"', "\\$(touch MARKER)", "\\\\$(touch MARKER)",
    "<(touch MARKER)", ">(touch MARKER)", "${X:-$(touch MARKER)}", "line\n$(touch MARKER)",
    "it's", 'say "hi"', "if", "a=b", "$HOME", "~", "*", "#x", "{wheel}", "", "two words",
    "tab\there", "é", "back\\slash",
]  # fmt: skip


def test_env_values_reach_cibuildwheel_verbatim(repo: Path, tmp_path: Path, cli: Cli) -> None:
    """The generated CIBW_ENVIRONMENT, read by cibuildwheel's own parser and evaluated with
    its own executor, gives exactly the matrix's variables and runs nothing."""
    marker = tmp_path / "MARKER"
    values = {f"V{i}": v.replace("MARKER", str(marker)) for i, v in enumerate(HOSTILE_VALUES)}
    table = ", ".join(f"{name} = {toml(value)}" for name, value in values.items())
    settings_table = '{ "cmake.define.X" = "$(touch MARKER); \'q\' \\"w\\"" }'.replace(
        "MARKER", str(marker)
    )
    matrix = write_matrix(
        repo, f'properties = ["{CPU}"]\nenv = {{ {table} }}\nconfig-settings = {settings_table}'
    )
    code, out, err = cli("plan", "--matrix", matrix, "--format", "cibuildwheel")
    assert code == 0, err
    ((_, env),) = json.loads(out).items()
    parsed = parse_environment(env["CIBW_ENVIRONMENT_LINUX"])
    assert [a.name for a in parsed.assignments] == sorted(values)
    assert parsed.as_dictionary({}, executor=local_environment_executor) == values
    settings_ = parse_config_settings(env["CIBW_CONFIG_SETTINGS_LINUX"])
    assert settings_ == {"cmake.define.X": f"$(touch {marker}); 'q' \"w\""}
    assert not marker.exists()


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True),
                       st.text(st.characters(exclude_characters="\x00"), max_size=30),
                       max_size=4))  # fmt: skip
def test_any_environment_round_trips_through_cibuildwheels_parser(
    variables: dict[str, str],
) -> None:
    ran: list[list[str]] = []

    def executor(command: list[str], env: dict[str, str]) -> str:
        ran.append(command)
        return "RAN"

    text = environment_string(variables, job="j")
    assert parse_environment(text).as_dictionary({}, executor=executor) == variables
    assert ran == []


# -- the manifest ---------------------------------------------------------------------


def cached_build(repo: Path, kind: str = "null") -> tuple[Path, Path]:
    """A one-job matrix whose build is in the cache (so ``build`` compiles nothing):
    the matrix file and the cache directory."""
    matrix_file = write_matrix(repo, f'id = "{kind}"\nkind = "{kind}"', source="tree")
    matrix = load_matrix(matrix_file)
    cache = repo / "cache"
    options = BuildOptions(out=repo / "dist", work_dir=repo / "work", cache_dir=cache)
    (plan,) = plan_build(matrix, matrix.jobs, options, lambda job, message: None).plans
    wheels = repo / "wheels"
    wheels.mkdir(exist_ok=True)
    BuildCache(cache / REPAIRED).put(plan.key, build_plain_wheel(wheels, "demo", "1.0"))
    return matrix_file, cache


def build(cli: Cli, repo: Path, matrix: Path, cache: Path) -> tuple[int, str, str]:
    return cli("build", "--matrix", matrix, "--cache-dir", cache, "--work-dir", repo / "work",
               "--out", repo / "dist")  # fmt: skip


def write_manifest(dist: Path, artifacts: object) -> Path:
    dist.mkdir(parents=True, exist_ok=True)
    path = dist / MANIFEST_NAME
    path.write_text(json.dumps({"version": 1, "artifacts": artifacts}))
    return path


def test_a_cached_build_works(repo: Path, cli: Cli) -> None:
    """The setup the manifest and work-directory tests below build on."""
    matrix, cache = cached_build(repo)
    code, _, err = build(cli, repo, matrix, cache)
    assert code == 0, err
    assert (repo / "dist" / "demo-1.0-py3-none-any-null.whl").is_file()


@pytest.mark.parametrize(
    ("file", "message"),
    [
        ("../../outside/victim.whl", "contains '..'"),
        ("ABSOLUTE", "is an absolute path"),
        ("sub/victim.whl", "contains a path separator"),
        ("", "empty"),
    ],
)
def test_build_never_removes_what_a_manifest_names_elsewhere(
    repo: Path, outside: Path, cli: Cli, file: str, message: str
) -> None:
    """The reproduction: a re-built job's old file was unlinked wherever it pointed."""
    file = str(outside / "victim.whl") if file == "ABSOLUTE" else file
    (repo / "dist" / "sub").mkdir(parents=True)
    (repo / "dist" / "sub" / "victim.whl").write_text("kept")
    matrix, cache = cached_build(repo)
    manifest = write_manifest(repo / "dist", [{"job": "null", "file": file}])
    code, _, err = build(cli, repo, matrix, cache)
    refused(code, err, f"{manifest}: artifacts[0].file: ", message)
    untouched(outside)
    assert (repo / "dist" / "sub" / "victim.whl").read_text() == "kept"


@pytest.mark.parametrize(
    ("artifacts", "message"),
    [
        (["demo-1.0-py3-none-any.whl"], "artifacts[0]: expected an object, got a string"),
        ([None], "artifacts[0]: expected an object, got null"),
        ([{"job": "null", "file": "a.whl"}, 7], "artifacts[1]: expected an object, got a number"),
        ([[]], "artifacts[0]: expected an object, got an array"),
        ([{"job": [], "file": "a.whl"}], "artifacts[0].job: expected a job id"),
        ([{"job": "null", "file": 3}], "artifacts[0].file: expected the name of a file"),
        ([{"job": "null"}], "artifacts[0].file: expected the name of a file"),
    ],
)
def test_build_refuses_malformed_manifest_entries(
    repo: Path, cli: Cli, artifacts: list[object], message: str
) -> None:
    matrix, cache = cached_build(repo)
    manifest = write_manifest(repo / "dist", artifacts)
    refused(*build(cli, repo, matrix, cache)[::2], f"{manifest}: {message}")


def test_check_reports_a_manifest_naming_files_elsewhere(
    tmp_path: Path, outside: Path, cli: Cli
) -> None:
    """``check`` hashed any path a manifest named; now such a manifest is a finding (the
    findings table is how ``check`` reports the set, exit 1) and nothing is read."""
    dist = tmp_path / "dist"
    dist.mkdir()
    build_plain_wheel(dist, "demo", "1.0")
    for file, message in [
        ("../outside/victim.whl", "artifacts[0].file: '../outside/victim.whl' contains '..'"),
        ("/etc/passwd", "artifacts[0].file: '/etc/passwd' is an absolute path"),
        ("..", "artifacts[0].file: '..' contains '..'"),
    ]:
        write_manifest(dist, [{"file": file, "sha256": "0" * 64}])
        code, out, err = cli("check", dist, "--json")
        assert code == 1 and "Traceback" not in err
        found = [f for f in json.loads(out)["findings"] if f["check"] == "manifest"]
        assert [(f["severity"], f["file"]) for f in found] == [("error", MANIFEST_NAME)]
        assert message in found[0]["message"], found
    for artifacts, message in [(["x"], "expected an object, got a string"), ([{}], ".file")]:
        write_manifest(dist, artifacts)
        code, out, err = cli("check", dist, "--json")
        assert code == 1 and "Traceback" not in err
        (finding,) = [f for f in json.loads(out)["findings"] if f["check"] == "manifest"]
        assert message in finding["message"]
    untouched(outside)


def test_merge_refuses_a_manifest_naming_files_elsewhere(tmp_path: Path, cli: Cli) -> None:
    job = tmp_path / "job"
    job.mkdir()
    wheel = build_plain_wheel(job, "demo", "1.0")
    manifest = write_manifest(job, [{"job": "plain", "file": f"../job/{wheel.name}"}])
    code, _, err = cli("merge", job, "--out", tmp_path / "merged")
    refused(code, err, f"{manifest}: artifacts[0].file: ", "contains '..'")
    assert not (tmp_path / "merged").exists()


# -- the work directory (defence in depth behind the matrix's id rules) -------------------


def test_a_job_directory_symlinked_outside_is_refused(repo: Path, outside: Path, cli: Cli) -> None:
    matrix, cache = cached_build(repo)
    (repo / "work" / "jobs").mkdir(parents=True)
    (repo / "work" / "jobs" / "null").symlink_to(outside)
    refused(*build(cli, repo, matrix, cache)[::2], "job 'null': 'null' resolves to", "outside")
    untouched(outside)  # tagging would have written outside/tagged/


def test_a_log_symlinked_outside_is_refused(repo: Path, outside: Path, cli: Cli) -> None:
    matrix, cache = cached_build(repo)
    (repo / "work" / "logs").mkdir(parents=True)
    (repo / "work" / "logs" / "null.log").symlink_to(outside / "keep.txt")
    refused(*build(cli, repo, matrix, cache)[::2], "'null.log' resolves to", "outside")
    untouched(outside)


def test_a_job_directory_symlinked_inside_is_unlinked_not_followed(repo: Path, cli: Cli) -> None:
    matrix, cache = cached_build(repo)
    elsewhere = repo / "work" / "elsewhere"
    elsewhere.mkdir(parents=True)
    (elsewhere / "keep.txt").write_text("kept")
    (repo / "work" / "jobs").mkdir()
    (repo / "work" / "jobs" / "null").symlink_to(elsewhere)
    code, _, err = build(cli, repo, matrix, cache)
    assert code == 0, err
    assert sorted(p.name for p in elsewhere.iterdir()) == ["keep.txt"]
    assert not (repo / "work" / "jobs" / "null").is_symlink()


def test_the_orchestrator_refuses_an_id_the_parser_would_have(repo: Path, outside: Path) -> None:
    matrix_file, cache = cached_build(repo)
    matrix = load_matrix(matrix_file)
    for bad in ("../..", str(outside), "a/b"):
        job = dataclasses.replace(matrix.jobs[0], id=bad)
        hostile = Matrix(matrix.source, matrix.project, None, matrix.config, (job,))
        options = BuildOptions(out=repo / "dist", work_dir=repo / "work", cache_dir=cache)
        with pytest.raises(InvalidInput, match=re.escape(f"{matrix_file}: job {bad!r}: ")):
            build_jobs(hostile, [job], options, lambda job, message: None)
    assert (repo / "keep.txt").is_file()
    untouched(outside)


# -- init -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "demo\n[[variants]]\nid = '../..'",
        'de"mo',
        "de'mo",
        "{{ 7 * 7 }}",
        "[[ generator ]]",
        "demo\n",
        "a b",
        "-demo",
        "démo",
    ],
)
def test_init_refuses_names_that_are_not_project_names(tmp_path: Path, cli: Cli, name: str) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(f"[project]\nname = {toml(name)}\n")
    code, _, err = cli("init", "--project", tmp_path, "--yes")
    refused(code, err, f"{pyproject}: project.name: {name!r}: expected a project name")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pyproject.toml"]


def test_init_refuses_a_directory_name_that_is_not_a_project_name(tmp_path: Path, cli: Cli) -> None:
    project = tmp_path / "x{{ 7 * 7 }}"
    project.mkdir()
    code, _, err = cli("init", "--project", project, "--yes")
    refused(code, err, "the directory's name: 'x{{ 7 * 7 }}': expected a project name")
    assert list(project.iterdir()) == []


def test_init_options_are_checked_and_quoted(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"project name: 'a\\nb': expected a project name"):
        render(InitOptions("a\nb"))
    with pytest.raises(InvalidInput, match="CI Python"):
        render(InitOptions("demo", ci_python='3.12"\n  evil: "x'))
    with pytest.raises(InvalidInput, match="expected a requirement without"):
        render(InitOptions("demo", cibuildwheel_requirement="cibuildwheel @ https://x/${{secrets.T}}"))  # fmt: skip
    with pytest.raises(InvalidInput, match=r"expected a requirement \(Expected"):
        render(InitOptions("demo", wheelforge_requirement="wheelforge\nevil: x"))
    # A valid requirement that a shell would execute stays data: it is an env value in
    # YAML quotes, and the step's shell sees only "$CIBUILDWHEEL".
    requirement = 'cibuildwheel; python_version >= "3.9" or sys_platform == "$(touch x)"'
    workflow = render(InitOptions("demo", cibuildwheel_requirement=requirement))[
        ".github/workflows/wheels.yml"
    ]
    assert f"  CIBUILDWHEEL: {yaml_string(requirement)}\n" in workflow
    assert 'run: python -m pip install "$WHEELFORGE" "$UV" "$CIBUILDWHEEL"\n' in workflow
    assert "$(touch x)" not in workflow.replace(yaml_string(requirement), "")


@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(exclude_categories=["Cs"])))
def test_toml_strings_read_back(value: str) -> None:
    text = toml_string(value)
    assert "\n" not in text and "\r" not in text
    assert tomllib.loads(f"x = {text}\n# {text}\ny = 1")["x"] == value


@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(exclude_categories=["Cs"])))
def test_yaml_strings_are_one_quoted_printable_line(value: str) -> None:
    text = yaml_string(value)
    assert text[0] == text[-1] == '"' and all(" " <= c <= "~" for c in text)
    inner = text[1:-1]
    assert '"' not in inner.replace('\\"', "").replace("\\\\", "")
    # YAML's double-quoted escapes used here (\\ \" \t \n \r \xXX \uXXXX \UXXXXXXXX) mean
    # what Python's unicode_escape codec makes of them.
    assert codecs.decode(inner, "unicode_escape") == value


# -- the static index, and the containment check itself -------------------------------


def test_site_pages_cannot_point_outside_the_site(tmp_path: Path) -> None:
    site = Site(tmp_path / "site")
    listed = IndexedFile("demo-1.0-variants.json", "../../../../outside/x.json", "0" * 64, 1)
    with pytest.raises(InvalidInput, match=r"demo-1\.0-variants\.json: url: .* outside"):
        site.path_of("demo", listed)


def test_index_templates_are_sandboxed() -> None:
    assert isinstance(_templates(), jinja2.sandbox.ImmutableSandboxedEnvironment)
    assert _templates().globals == {}


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("..", "contains '..'"),
        ("a/..", "contains '..'"),
        ("/etc", "is an absolute path"),
        ("a/b", "contains a path separator"),
        ("a\x00b", "contains NUL"),
        ("", "empty"),
        (".", "'.' is not a file name"),
    ],
)
def test_inside_refuses(tmp_path: Path, name: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=f"^m.toml: variants\\[0\\].id: .*{message}"):
        inside(tmp_path, name, where="m.toml: variants[0].id")


def test_inside_follows_symlinks_and_remove_tree_does_not(tmp_path: Path, outside: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    assert inside(root, "jobs", "a.b-c_d", where="w") == root / "jobs" / "a.b-c_d"
    (root / "link").symlink_to(outside)
    with pytest.raises(InvalidInput, match=r"resolves to .* outside"):
        inside(root, "link", where="w")
    with pytest.raises(InvalidInput, match=r"resolves to .* outside"):
        inside(root, "link", "keep.txt", where="w")
    remove_tree(root / "link", root=root)  # the link goes, not what it points at
    assert not (root / "link").exists()
    untouched(outside)
    with pytest.raises(InvalidInput, match="refusing to remove"):
        remove_tree(outside, root=root)
    untouched(outside)
    (root / "loop").symlink_to(root)  # the root itself is not inside it
    with pytest.raises(InvalidInput, match="outside"):
        ensure_inside(root / "loop", root, where="w")
    assert os.path.isdir(root)
