"""Matrix expansion (axes, zip, exclude, include, templating) and bad matrices."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from wheelforge.errors import InvalidInput
from wheelforge.matrix import Matrix, load_matrix

Cli = Callable[..., tuple[int, str, str]]

HEAD = """
[project]
path = "proj"
python = ["3.11"]

[variant.default-priorities]
namespace = ["nvidia", "amd", "x86_64"]
"""


def write(tmp_path: Path, body: str, name: str = "m.toml") -> Path:
    """``body`` goes after the [project] and [variant] tables; lines before a ``---``
    line go at the top level, before them."""
    (tmp_path / "proj").mkdir(exist_ok=True)
    top, _, rest = body.rpartition("---\n")
    path = tmp_path / name
    path.write_text(top + HEAD + rest)
    return path


def matrix(tmp_path: Path, body: str) -> Matrix:
    return load_matrix(write(tmp_path, body))


CUDA_TEMPLATE = """
[[variants]]
id = "cuda{{ cuda }}-sm{{ sm }}"
axes = ["cuda", "sm"]
label = "cu{{ cuda | replace('.', '') }}_{{ sm }}"
properties = ["nvidia :: cuda_version_lower_bound :: {{ cuda }}", "nvidia :: sm_arch :: {{ sm }}_real"]
toolchain = "nvcc"
toolchain-version = "{{ cuda }}"
config-settings = { "cmake.define.CMAKE_CUDA_ARCHITECTURES" = "{{ sm }}-real", "cmake.define.N" = 3 }
env = { CUDA_TAG = "cu{{ cuda }}" }
requires-dist = ["nvidia-cuda-runtime-cu{{ cuda.split('.')[0] }}>={{ cuda }}"]
"""


def test_product_of_axes_and_templating(tmp_path: Path) -> None:
    m = matrix(tmp_path, '[axes]\ncuda = ["12.8", "13.0"]\nsm = [80, 90]\n' + CUDA_TEMPLATE)
    assert [j.id for j in m.jobs] == [
        "cuda12.8-sm80",
        "cuda12.8-sm90",
        "cuda13.0-sm80",
        "cuda13.0-sm90",
    ]
    job = m.jobs[1]
    assert job.label == "cu128_90"
    assert sorted(map(str, job.properties)) == [
        "nvidia :: cuda_version_lower_bound :: 12.8",
        "nvidia :: sm_arch :: 90_real",
    ]
    assert dict(job.config_settings) == {
        "cmake.define.CMAKE_CUDA_ARCHITECTURES": "90-real",
        "cmake.define.N": "3",
    }
    assert dict(job.env) == {"CUDA_TAG": "cu12.8"}
    assert job.requires_dist == ("nvidia-cuda-runtime-cu12>=12.8",)
    assert job.toolchain == "nvcc" and job.toolchain_version == "12.8"
    assert dict(job.axes) == {"cuda": "12.8", "sm": "90"}
    assert m.project == (tmp_path / "proj").resolve()


def test_zip_exclude_include(tmp_path: Path) -> None:
    top = 'zip = [["cuda", "sm"]]\nexclude = [{ cuda = "13.0" }]\ninclude = [{ cuda = "13.1", sm = "90" }]\n'
    axes = '[axes]\ncuda = ["12.8", "13.0", "13.1"]\nsm = ["90", "100", "120"]\n'
    m = load_matrix(write(tmp_path, top + "---\n" + axes + CUDA_TEMPLATE))
    assert [j.id for j in m.jobs] == ["cuda12.8-sm90", "cuda13.1-sm120", "cuda13.1-sm90"]


def test_null_plain_defaults_and_python_axis(tmp_path: Path) -> None:
    body = """
[defaults]
compression = "zstd"
config-settings = { "cmake.define.BACKEND" = "cpu" }

[axes]
level = ["v2", "v3"]

[[variants]]
kind = "plain"
compression = "deflate"

[[variants]]
kind = "null"
python = ["3.11", "3.12"]

[[variants]]
axes = ["level"]
properties = ["x86_64 :: level :: {{ level }}"]
repair-isa-check = false
"""
    m = matrix(tmp_path, body)
    jobs = {j.id: j for j in m.jobs}
    assert list(jobs) == ["plain", "null-py3.11", "null-py3.12", "40aba78e", "fa7c1393"]
    assert jobs["plain"].label is None and jobs["plain"].compression == "deflate"
    assert jobs["null-py3.12"].label == "null" and jobs["null-py3.12"].python == "3.12"
    assert jobs["fa7c1393"].compression == "zstd" and not jobs["fa7c1393"].repair_isa_check
    assert dict(jobs["fa7c1393"].config_settings) == {"cmake.define.BACKEND": "cpu"}


def test_pyproject_tool_table(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        '[project]\nname = "x"\n\n[tool.wheelforge]\n[[tool.wheelforge.variants]]\nkind = "null"\n'
    )
    m = load_matrix(pyproject)
    assert m.project == tmp_path.resolve() and [j.id for j in m.jobs] == ["null"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            '[[variants]]\nkind = "null"\nconfig-setings = {}\n',
            "m.toml: variants[0].config-setings: unknown key (did you mean 'config-settings'?); expected one of id, kind, axes,",
        ),
        (
            'colour = 1\n---\n[[variants]]\nkind = "null"\n',
            "m.toml: colour: unknown key; expected one of project, variant, axes, zip, exclude, include, defaults, variants",
        ),
        (
            '[[variants]]\nkind = "nul"\n',
            "m.toml: variants[0].kind: expected one of variant, null, plain, got 'nul' (did you mean 'null'?)",
        ),
        (
            '[[variants]]\naxes = ["cuda"]\nproperties = ["x86_64 :: level :: v3"]\n',
            "m.toml: variants[0].axes: unknown axis 'cuda'; axes: none",
        ),
        (
            '[axes]\ncuda = ["13.0"]\n[[variants]]\naxes = ["cuda"]\nproperties = ["nvidia :: cuda_version_lower_bound :: {{ cudaa }}"]\n',
            "m.toml: variants[0].properties[0]: template error: 'cudaa' is undefined (axes here: cuda, python)",
        ),
        (
            '[[variants]]\nproperties = ["nvidia :: cuda"]\n',
            "m.toml: variants[0].properties[0]: variant property 'nvidia :: cuda': expected 'namespace :: feature :: value'",
        ),
        (
            '[[variants]]\nlabel = "CU"\nproperties = ["nvidia :: cuda_version_lower_bound :: 13.0"]\n',
            "m.toml: variants[0].label: variant label 'CU': expected lowercase letters",
        ),
        (
            '[[variants]]\nproperties = ["aarch64 :: version :: 8a"]\n',
            "m.toml: variants[0].properties: namespace 'aarch64' is not in variant.default-priorities.namespace (nvidia, amd, x86_64)",
        ),
        (
            '[[variants]]\nkind = "null"\nlabel = "x"\n',
            "m.toml: variants[0].label: not allowed for kind = 'null'",
        ),
        (
            '[[variants]]\nkind = "plain"\ncompression = "zstd"\n',
            "m.toml: variants[0].compression: expected deflate for the plain wheel: pip on CPython < 3.14 cannot read zstd members",
        ),
        (
            '[[variants]]\nkind = "null"\ntoolchain = "clang"\n',
            "m.toml: variants[0].toolchain: expected one of host, nvcc, hipcc, got 'clang'",
        ),
        (
            '[[variants]]\nkind = "null"\n[[variants]]\nkind = "null"\n',
            "m.toml: variants[1].id: job id 'null' is also produced by variants[0]; expected unique ids",
        ),
        (
            '[[variants]]\nlabel = "a"\nproperties = ["x86_64 :: level :: v3"]\n[[variants]]\nid = "b"\nlabel = "a"\nproperties = ["x86_64 :: level :: v2"]\n',
            "m.toml: variants[1]: label 'a' of job 'b' has other properties than job 'a'; expected one property set per label",
        ),
        ('[axes]\na = ["1", "2"]\nb = ["1"]\n[[variants]]\nkind = "null"\n', None),
        (
            'zip = [["a", "b"]]\n---\n[axes]\na = ["1", "2"]\nb = ["1"]\n[[variants]]\nkind = "null"\n',
            "m.toml: zip[0]: expected zipped axes of equal length; got a=2, b=1",
        ),
        (
            'zip = [["a", "c"]]\n---\n[axes]\na = ["1"]\nb = ["1"]\n[[variants]]\nkind = "null"\n',
            "m.toml: zip[0]: unknown axis 'c'",
        ),
        (
            'exclude = [{ cuda = "1" }]\n---\n[axes]\na = ["1"]\n[[variants]]\nkind = "null"\n',
            "m.toml: exclude[0].cuda: unknown key; expected one of a",
        ),
        (
            'colour = 1\n[[variants]]\nkind = "null"\n',
            "m.toml: variant.default-priorities.colour: unknown key; expected namespace",
        ),
        (
            '[axes]\ncuda = []\n[[variants]]\nkind = "null"\n',
            "m.toml: axes.cuda: expected a non-empty list of strings or numbers",
        ),
        (
            "",
            "m.toml: variants: expected an array of tables ([[variants]]) with at least one entry",
        ),
        (
            '[[variants]]\nkind = "null"\naccelerator-runtime = "ship"\n',
            "m.toml: variants[0].accelerator-runtime: expected one of exclude, bundle, got 'ship'",
        ),
        (
            '[[variants]]\nkind = "null"\nmax-size-mb = 0\n',
            "m.toml: variants[0].max-size-mb: expected a positive number of megabytes, got 0",
        ),
        (
            '[[variants]]\nkind = "null"\noversize = "ignore"\n',
            "m.toml: variants[0].oversize: expected one of fail, warn, got 'ignore'",
        ),
        (
            '[[variants]]\nproperties = ["x86_64 :: level :: v3"]\nrepair-isa-check = "no"\n',
            "m.toml: variants[0].repair-isa-check: expected true or false",
        ),
    ],
)
def test_bad_matrices(tmp_path: Path, body: str, message: str | None) -> None:
    path = write(tmp_path, body)
    if message is None:
        load_matrix(path)
        return
    with pytest.raises(InvalidInput) as info:
        load_matrix(path)
    assert info.value.message.startswith(f"{path}: ") or info.value.message.startswith(str(path))
    assert message.replace("m.toml", str(path), 1) in info.value.message


def test_missing_and_broken_files(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="no such matrix file"):
        load_matrix(tmp_path / "nope.toml")
    broken = tmp_path / "b.toml"
    broken.write_text("[project\n")
    with pytest.raises(InvalidInput, match=r"b.toml: not valid TOML"):
        load_matrix(broken)


def test_plan_formats(tmp_path: Path, cli: Cli) -> None:
    path = write(tmp_path, '[axes]\ncuda = ["12.8", "13.0"]\nsm = ["90"]\n' + CUDA_TEMPLATE)
    code, out, _ = cli("plan", "--matrix", path, "--format", "github")
    assert code == 0
    common = {"toolchain": "nvcc", "python": "3.11", "runner": "ubuntu-latest"}
    assert json.loads(out) == {
        "include": [
            {"id": "cuda12.8-sm90", "label": "cu128_90", "toolchain-version": "12.8",
             "image": "pytorch/manylinux2_28-builder:cuda12.8", "cache-key": "nvcc-12.8",
             **common},
            {"id": "cuda13.0-sm90", "label": "cu130_90", "toolchain-version": "13.0",
             "image": "pytorch/manylinux2_28-builder:cuda13.0", "cache-key": "nvcc-13.0",
             **common},
        ]
    }  # fmt: skip
    code, out, _ = cli("plan", "--matrix", path, "--format", "github", "--pull-request")
    assert [e["id"] for e in json.loads(out)["include"]] == ["cuda12.8-sm90"]
    code, out, _ = cli("plan", "--matrix", path, "--format", "json")
    assert [j["id"] for j in json.loads(out)] == ["cuda12.8-sm90", "cuda13.0-sm90"]
    code, out, _ = cli("plan", "--matrix", path)
    assert out.splitlines()[0].split() == [
        "job",
        "kind",
        "label",
        "properties",
        "toolchain",
        "python",
        "compression",
        "settings",
    ]
    assert "cu130_90" in out
    code, _, err = cli("plan", "--matrix", tmp_path / "missing.toml")
    assert code == 2 and "no such matrix file" in err


def test_unknown_only_job(tmp_path: Path, cli: Cli) -> None:
    path = write(tmp_path, '[[variants]]\nkind = "null"\n')
    code, _, err = cli(
        "build", "--matrix", path, "--only", "null", "nul", "--out", tmp_path / "dist"
    )
    assert code == 2
    assert f"{path}: no job 'nul' (did you mean 'null'?); jobs: null" in err


def test_a_config_setting_given_as_a_list_repeats_in_order(tmp_path: Path) -> None:
    path = tmp_path / "m.toml"
    path.write_text(
        '[project]\npath = "."\n\n[[variants]]\nkind = "plain"\n'
        'config-settings = { "setup-args" = ["-Dz=1", "-Da={{ python }}"], "b" = "2" }\n'
    )
    (job,) = load_matrix(path).jobs
    assert job.config_settings == (("b", "2"), ("setup-args", "-Dz=1"), ("setup-args", "-Da=3"))
    assert job.to_json()["config-settings"] == {"b": "2", "setup-args": ["-Dz=1", "-Da=3"]}
    path.write_text(path.read_text().replace('"-Dz=1"', "1.5").replace('"b" = "2"', '"b" = [true]'))
    with pytest.raises(
        InvalidInput,
        match=r"variants\[0\]\.config-settings\.b\[0\]: expected a string or a list of strings",
    ):
        load_matrix(path)


ABI_EXAMPLE = Path(__file__).parent.parent / "matrix" / "abi-example.toml"


@pytest.mark.parametrize(
    ("torch", "driver", "expected"),
    [
        ("2.9.1", "13.0", "torch29_cu130"),
        ("2.9.0+cu128", "12.8", "torch29_cu128"),
        ("2.8.0", "12.9", "torch28_cu128"),  # same CUDA key as cu128, one key more
        # abi_dependency ranks last: the better CUDA match wins over the torch match
        ("2.8.0", "13.0", "cu130"),
        ("2.7.1", "13.0", "cu130"),  # a torch not built for: the CUDA-only wheel
        (None, "12.8", "cu128"),
        ("2.9.1", None, "null"),
    ],
)
def test_the_abi_dependency_example_plans_and_selects(
    torch: str | None, driver: str | None, expected: str
) -> None:
    """matrix/abi-example.toml: a torch axis carried as ``abi_dependency :: torch :: X``
    beside CUDA properties, which needs no priority entry; tagged as ``build`` would tag
    it, the release picks the wheel built for the installed torch and the driver."""
    from wheelforge.tag import TagRequest, build_variant_metadata
    from wheelforge.variants import abi_dependency, supported
    from wheelforge.variants.merge import merge_all
    from wheelforge.variants.ranking import best

    plan = load_matrix(ABI_EXAMPLE)
    variants = {job.label: job for job in plan.jobs if job.kind == "variant"}
    assert sorted(variants) == [
        "cu128", "cu130", "torch28_cu128", "torch29_cu128", "torch29_cu130",
    ]  # fmt: skip
    assert "abi_dependency" not in plan.config.namespace_priorities
    assert variants["torch28_cu128"].requires_dist == ("torch==2.8.*",)
    assert {str(p) for p in variants["torch29_cu130"].properties} == {
        "abi_dependency :: torch :: 2.9",
        "nvidia :: cuda_version_lower_bound :: 13.0",
    }

    release = merge_all(
        build_variant_metadata(
            TagRequest(properties=job.properties, label=job.label, config=plan.config)
        )
        for job in plan.jobs
        if job.kind != "plain"
    )
    assert release.namespace_priorities[-1] == "abi_dependency"
    installed = {"torch": torch} if torch else {}
    machine = {
        "nvidia": supported.nvidia(driver),
        "abi_dependency": abi_dependency.environment(installed, where="test").supported(),
    }
    winner = best(release, machine, plain=True)
    assert winner is not None
    assert winner.label == expected


MERGE = """
[defaults]
config-settings = { "cmake.define.BACKEND" = "cpu", "cmake.define.NATIVE" = "OFF", "setup-args" = ["-Da=1", "-Db=2"] }
env = { CC_TAG = "gcc", LEVEL = "v1" }

[axes]
level = ["v2", "v3"]

[[variants]]
kind = "plain"

[[variants]]
axes = ["level"]
properties = ["x86_64 :: level :: {{ level }}"]
config-settings = { "cmake.define.BACKEND" = "cpu-{{ level }}", "setup-args" = ["-Dc=3"] }
env = { LEVEL = "{{ level }}", EXTRA = "1" }

[[variants]]
kind = "null"
env = {}
"""


def test_table_valued_keys_merge_with_defaults_and_the_variant_wins_per_key(
    tmp_path: Path,
) -> None:
    jobs = {j.id: j for j in matrix(tmp_path, MERGE).jobs}
    defaults_only = {
        "cmake.define.BACKEND": "cpu",
        "cmake.define.NATIVE": "OFF",
        "setup-args": ["-Da=1", "-Db=2"],
    }
    assert jobs["plain"].to_json()["config-settings"] == defaults_only
    assert dict(jobs["plain"].env) == {"CC_TAG": "gcc", "LEVEL": "v1"}
    v3 = next(j for j in jobs.values() if j.axes == (("level", "v3"),))
    # The default NATIVE=OFF survives a variant that sets other CMake options; a list
    # value is one entry (the variant's replaces the default's whole).
    assert v3.to_json()["config-settings"] == {
        "cmake.define.BACKEND": "cpu-v3",
        "cmake.define.NATIVE": "OFF",
        "setup-args": "-Dc=3",
    }
    assert dict(v3.env) == {"CC_TAG": "gcc", "EXTRA": "1", "LEVEL": "v3"}
    # An empty table removes nothing: TOML has no null to remove a default entry with.
    assert dict(jobs["null"].env) == {"CC_TAG": "gcc", "LEVEL": "v1"}


def test_templates_in_defaults_render_with_each_variants_axes(tmp_path: Path) -> None:
    body = """
[defaults]
config-settings = { "cmake.define.TAG" = "{{ level }}-py{{ python }}" }
env = { LEVEL = "{{ level }}" }

[axes]
level = ["v2", "v3"]

[[variants]]
axes = ["level"]
properties = ["x86_64 :: level :: {{ level }}"]
env = { OWN = "x" }
"""
    jobs = matrix(tmp_path, body).jobs
    assert sorted(dict(j.config_settings)["cmake.define.TAG"] for j in jobs) == [
        "v2-py3.11",
        "v3-py3.11",
    ]
    assert sorted(j.env for j in jobs) == [
        (("LEVEL", "v2"), ("OWN", "x")),
        (("LEVEL", "v3"), ("OWN", "x")),
    ]


def test_errors_name_what_came_from_defaults(tmp_path: Path) -> None:
    cases = [
        ('[defaults]\nenv = { "BAD-NAME" = "1" }\n\n[[variants]]\nkind = "null"\nenv = { A = "1" }\n',
         "variants[0].env.BAD-NAME (from [defaults]): environment variable name 'BAD-NAME'"),
        ('[defaults]\nenv = { L = "{{ level }}" }\n\n[[variants]]\nkind = "null"\n',
         "variants[0].env.L (from [defaults]): template error: 'level' is undefined"),
        ('[defaults]\ncompression = "zstd"\n\n[[variants]]\nkind = "plain"\n',
         "variants[0].compression (from [defaults]): expected deflate for the plain wheel"),
        # The variant's own entry is named as the variant's.
        ('[defaults]\nenv = { A = "1" }\n\n[[variants]]\nkind = "null"\nenv = { "B-C" = "1" }\n',
         "variants[0].env.B-C: environment variable name"),
    ]  # fmt: skip
    for body, expected in cases:
        with pytest.raises(InvalidInput) as err:
            matrix(tmp_path, body)
        assert f"m.toml: {expected}" in str(err.value)


def test_source_date_epoch_key(tmp_path: Path, cli: Cli) -> None:
    body = """
[defaults]
source-date-epoch = false

[[variants]]
kind = "plain"

[[variants]]
kind = "null"
source-date-epoch = true
"""
    jobs = {j.id: j for j in matrix(tmp_path, body).jobs}
    assert not jobs["plain"].source_date_epoch and jobs["null"].source_date_epoch
    assert jobs["plain"].to_json()["source-date-epoch"] is False
    code, out, _ = cli("plan", "--matrix", tmp_path / "m.toml")
    rows = {line.split()[0]: line for line in out.splitlines()}
    assert code == 0 and rows["job"].endswith("settings")
    assert rows["plain"].endswith("no SOURCE_DATE_EPOCH") and rows["null"].endswith(" -")
    with pytest.raises(InvalidInput) as err:
        matrix(tmp_path, '[[variants]]\nkind = "null"\nsource-date-epoch = "no"\n')
    assert str(err.value).endswith(
        "m.toml: variants[0].source-date-epoch: expected true (the build sees "
        "SOURCE_DATE_EPOCH) or false, got 'no'"
    )


def test_plan_shows_the_merged_settings(cli: Cli) -> None:
    path = Path(__file__).parent / "fixtures" / "vendored" / "matrix.toml"
    code, out, _ = cli("plan", "--matrix", path)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[-1] == "settings"
    v3 = next(line for line in lines if line.startswith("cpu-x86-64-v3 "))
    assert v3.endswith(
        "cmake.define.CMAKE_C_FLAGS=-march=x86-64-v3, cmake.define.VENDORED_LAYOUT=toplevel"
    )
    plain = next(line for line in lines if line.startswith("plain "))
    assert plain.endswith("cmake.define.VENDORED_LAYOUT=toplevel")
    code, out, _ = cli("plan", "--matrix", path, "--format", "json")
    settings = {j["id"]: j["config-settings"] for j in json.loads(out)}
    assert settings["cpu-x86-64-v3"] == {
        "cmake.define.CMAKE_C_FLAGS": "-march=x86-64-v3",
        "cmake.define.VENDORED_LAYOUT": "toplevel",
    }


def test_plan_has_no_settings_column_when_no_job_has_settings(tmp_path: Path, cli: Cli) -> None:
    code, out, _ = cli("plan", "--matrix", write(tmp_path, '[[variants]]\nkind = "null"\n'))
    assert code == 0 and out.splitlines()[0].split()[-1] == "compression"
