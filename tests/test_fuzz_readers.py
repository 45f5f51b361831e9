"""Property-based fuzzing of the readers of untrusted text: PEP 691 JSON and PEP 503
HTML project pages (wheelforge/simple_api.py), variants files and ``variant.json``
(wheelforge/variants/metadata.py, as wheelforge/variants_file.py reads them) and matrix
files (wheelforge/matrix.py). Whatever the input, the only exception that may escape
is wheelforge's own :class:`WheelforgeError` (one ``error:`` line in the CLI). Runs are
bounded: a few hundred examples each, a few seconds in all."""

from __future__ import annotations

import contextlib
import json
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wheelforge.errors import WheelforgeError
from wheelforge.matrix import _TOP_KEYS, _VARIANT_KEYS, load_matrix, parse_matrix
from wheelforge.simple_api import ProjectFile, parse_html_page, parse_json_page
from wheelforge.variants.metadata import Schema, from_json, loads

FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
BASE = "https://index.example/simple/demo/"

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)
names = st.sampled_from(
    ["demo-1.0-py3-none-any.whl", "demo-1.0-py3-none-any-x86_64_v3.whl", "demo-1.0.tar.gz",
     "demo-1.0-variants.json", "../x.whl", "a/b.whl", "demo-1.0-1/x-py3-none-any.whl", "",
     "demo-1.0-py3-none-any-BAD.whl", "\x00.whl"]
) | st.text(max_size=30)  # fmt: skip
urls = st.sampled_from(
    ["/files/x.whl", "https://index.example/f.whl", "file:///etc/shadow", "http://[::1/x",
     "http://h:99999/x", "//other/x", "javascript:x", "", "x#sha256=" + "a" * 64]
) | st.text(max_size=30)  # fmt: skip
hashes = st.one_of(
    st.just({"sha256": "a" * 64}),
    st.dictionaries(st.sampled_from(["sha256", "md5", "x"]), scalars, max_size=2),
    json_values,
)
entries = st.fixed_dictionaries(
    {},
    optional={
        "filename": names | scalars,
        "url": urls | scalars,
        "hashes": hashes,
        "requires-python": st.text(max_size=10) | scalars,
        "core-metadata": json_values,
        "yanked": json_values,
    },
)
pages = st.one_of(
    st.fixed_dictionaries(
        {"files": st.lists(entries | json_values, max_size=5)},
        optional={"meta": json_values, "name": json_values},
    ),
    json_values,
)


def _check_files(files: list[ProjectFile]) -> None:
    for file in files:
        assert "/" not in file.filename and "\\" not in file.filename
        assert file.sha256 is None or len(file.sha256) == 64


@FUZZ
@given(pages)
def test_json_pages(page: Any) -> None:
    with contextlib.suppress(WheelforgeError):
        _check_files(parse_json_page(json.dumps(page).encode(), BASE))


@FUZZ
@given(st.binary(max_size=200))
def test_json_pages_from_bytes(body: bytes) -> None:
    with contextlib.suppress(WheelforgeError):
        _check_files(parse_json_page(body, BASE))


attribute = st.tuples(
    st.sampled_from(["href", "data-requires-python", "data-yanked", "x"]) | st.text(max_size=5),
    urls | names | st.text(max_size=20),
)
tags = st.tuples(st.sampled_from(["a", "base", "div", "A", "script"]), st.lists(attribute,
                                                                               max_size=3))  # fmt: skip
html_fragments = st.lists(
    tags.map(lambda t: f"<{t[0]} " + " ".join(f'{k}="{v}"' for k, v in t[1]) + ">x</a>")
    | st.text(max_size=30),
    max_size=6,
).map("".join)


@FUZZ
@given(html_fragments)
def test_html_pages(page: str) -> None:
    with contextlib.suppress(WheelforgeError):
        _check_files(parse_html_page(page, BASE))


@FUZZ
@given(st.text(max_size=300))
def test_html_pages_from_any_text(page: str) -> None:
    with contextlib.suppress(WheelforgeError):
        _check_files(parse_html_page(page, BASE))


properties = st.lists(
    st.sampled_from(["x86_64 :: level :: v3", "nvidia :: cuda :: 12", "a ::b", "x :: y :: z"])
    | st.text(max_size=20),
    max_size=3,
)
variants_documents = st.fixed_dictionaries(
    {"$schema": st.sampled_from([s.value for s in Schema]) | scalars},
    optional={
        "default-priorities": st.fixed_dictionaries(
            {}, optional={"namespace": st.lists(st.sampled_from(["x86_64", "nvidia"]) | scalars,
                                                max_size=3) | json_values,
                          "feature": json_values, "property": json_values},
        ) | json_values,
        "variants": st.dictionaries(
            st.sampled_from(["null", "x86_64_v3", "BAD", ""]) | st.text(max_size=8),
            st.dictionaries(st.sampled_from(["x86_64", "nvidia"]) | st.text(max_size=5),
                            st.dictionaries(st.text(max_size=5), properties | json_values,
                                            max_size=2) | json_values, max_size=2)
            | json_values,
            max_size=3,
        ) | json_values,
        "providers": st.dictionaries(st.sampled_from(["x86_64", "nvidia"]), json_values,
                                     max_size=2) | json_values,
    },
)  # fmt: skip


@FUZZ
@given(variants_documents | json_values)
def test_variants_files(document: Any) -> None:
    with contextlib.suppress(WheelforgeError):
        from_json(document, source="fuzz-variants.json")


@FUZZ
@given(st.binary(max_size=200))
def test_variants_files_from_bytes(data: bytes) -> None:
    with contextlib.suppress(WheelforgeError):
        loads(data, source="fuzz-variants.json")


toml_scalars = (
    st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.sampled_from(
        ["{{ cuda }}", "{{ 1/0 }}", "{{ x.__class__ }}", "{%", "x86_64 :: level :: v3"]
    )
)
toml_values = st.recursive(
    toml_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=12,
)
variant_tables = st.dictionaries(st.sampled_from(_VARIANT_KEYS), toml_values, max_size=5)
matrices = st.fixed_dictionaries(
    {},
    optional={
        "project": st.fixed_dictionaries(
            {"path": st.just(".") | toml_values},
            optional={"python": st.just(["3"]) | toml_values, "source": toml_values},
        ) | toml_values,
        "variants": st.lists(variant_tables | toml_values, max_size=3) | toml_values,
        "axes": st.dictionaries(st.sampled_from(["cuda", "x"]), st.lists(toml_scalars,
                                                                          max_size=3) | toml_values,
                                max_size=2) | toml_values,
        "variant": toml_values,
        "zip": toml_values,
        "defaults": st.dictionaries(st.sampled_from(_VARIANT_KEYS), toml_values, max_size=3),
        "include": toml_values,
        "exclude": toml_values,
    },
)  # fmt: skip


@FUZZ
@given(matrices | st.dictionaries(st.sampled_from(_TOP_KEYS), toml_values, max_size=3))
def test_matrix_documents(document: dict[str, Any]) -> None:
    with contextlib.suppress(WheelforgeError):
        parse_matrix(document, source=Path("/nonexistent/fuzz.toml"))


@pytest.fixture(scope="module")
def matrix_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-matrix")


@FUZZ
@given(data=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_matrix_files_from_bytes(data: bytes, matrix_dir: Path) -> None:
    path = matrix_dir / "m.toml"
    path.write_bytes(data)
    with contextlib.suppress(WheelforgeError):
        load_matrix(path)


def test_the_strategies_make_valid_toml_too() -> None:
    """The matrix strategy's documents are what tomllib can produce (tables, lists,
    scalars): a sanity check that they exercise the real shapes."""
    assert parse_matrix(
        tomllib.loads('[project]\npath = "."\n[[variants]]\nid = "a"\nkind = "plain"\n'),
        source=Path("/nonexistent/fuzz.toml"),
    ).jobs


# -- templates: bounded whatever the expression ---------------------------------------

atoms = st.sampled_from(
    ["1", "7", "10", "100000", "10**9", "'a'", "'ab' * 3", "cuda", "[1, 2]", "['x' * 1000]",
     "'%9999999s'", "'{:>9999999}'"]
)  # fmt: skip
binary = st.sampled_from(["**", "*", "+", "~", "%", "-", "//"])
filters = st.sampled_from(
    ["", "|string", "|center(9999999)", "|indent(9999999)", "|replace('a', 'aaaaaaaaaa')",
     "|join", "|list", "|format(1)", "|length", "|tojson"]
)  # fmt: skip
methods = st.sampled_from(["", ".ljust(10**9)", ".format(1)", ".split('.')", ".zfill(99999999)"])


@st.composite
def expressions(draw: st.DrawFn, depth: int = 3) -> str:
    if depth == 0 or draw(st.booleans()):
        return draw(atoms)
    left, right = draw(expressions(depth - 1)), draw(expressions(depth - 1))
    op = draw(binary)
    return f"(({left}) {op} ({right})){draw(filters)}" + (draw(methods) if op in ("~", "%") else "")


@settings(max_examples=150, deadline=None)
@given(expressions(), st.sampled_from(["{{ %s }}", "{%% for i in %s %%}{{ i }}{%% endfor %%}"]))
def test_templates_stay_bounded(expression: str, shape: str) -> None:
    """Whatever the expression, a render ends within its time bound with its text bounded,
    or raises (the matrix turns any exception into one line naming the field)."""
    from wheelforge import templating

    environment = templating.sandboxed(autoescape=False)
    saved = templating.MAX_SECONDS
    templating.MAX_SECONDS = 1.0
    try:
        text = environment.from_string(shape % expression).render(cuda="13.0")
        assert len(text) <= templating.MAX_OUTPUT
    except MemoryError:  # pragma: no cover - the bounds exist to make this impossible
        raise
    except Exception:  # TemplateLimit, TypeError, …: the matrix makes each one line
        pass
    finally:
        templating.MAX_SECONDS = saved
