"""Hostile input, as a pull request can bring it to CI where wheelforge runs as root:
matrix job ids that climb out of the work directory, templates that try to run commands,
manifests that name files elsewhere, project names that break out of the generated files,
environment variables that cibuildwheel's parser would execute. Each is refused with one
``error:`` line naming the file and key (exit 2), and nothing outside is touched."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

import jinja2
import pytest

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


def write_matrix(repo: Path, variant: str, *, axes: str = "", python: str = '["3"]') -> Path:
    path = repo / "m.toml"
    path.write_text(
        f'[project]\npath = "proj"\npython = {python}\n{axes}\n[[variants]]\n{variant}\n'
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
    refused(*cli("plan", "--matrix", python)[::2], "variants[0].id: job id 'plain-py../x'")
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
