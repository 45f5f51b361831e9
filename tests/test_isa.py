"""The ISA audit (wheelforge.isa) on libraries built here with the real gcc and binutils:
instruction classification, load-time / dispatched / required code, declarations, GNU
property notes, and what ``check``, ``coverage`` and ``audit`` make of it."""

from __future__ import annotations

import json
import shutil
import subprocess
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import build_plain_wheel
from tests.isa_libs import build_wheel
from wheelforge.isa import (
    Declaration,
    audit_elf,
    audit_wheel,
    claimed_level,
    classify,
    encoding_of,
    judge,
)
from wheelforge.publish.check import check_release_set
from wheelforge.tag import TagRequest, tag_wheel
from wheelforge.variants.properties import VariantProperty

pytestmark = pytest.mark.skipif(
    shutil.which("gcc") is None or shutil.which("as") is None, reason="needs gcc and binutils"
)

Cli = Callable[..., tuple[int, str, str]]

# One function per instruction kind, assembled by gas (AT&T syntax).
_KINDS = {
    "f_sse2": ("paddd %xmm1, %xmm0", 1, set()),
    "f_tzcnt": ("tzcnt %rdi, %rax", 1, set()),  # runs as bsf on older CPUs
    "f_sse3": ("haddps %xmm1, %xmm0", 2, {"SSE3"}),
    "f_ssse3": ("pshufb %xmm1, %xmm0", 2, {"SSSE3"}),
    "f_sse41": ("pmulld %xmm1, %xmm0", 2, {"SSE4.1"}),
    "f_sse42": ("crc32l %edi, %eax", 2, {"SSE4.2"}),
    "f_popcnt": ("popcnt %rdi, %rax", 2, {"POPCNT"}),
    "f_cx16": ("cmpxchg16b (%rdi)", 2, {"CMPXCHG16B"}),
    "f_avx": ("vaddps %ymm1, %ymm2, %ymm0", 3, {"AVX"}),
    "f_avx2": ("vpaddd %ymm1, %ymm2, %ymm0", 3, {"AVX2"}),
    "f_fma": ("vfmadd231ps %ymm1, %ymm2, %ymm0", 3, {"FMA"}),
    "f_f16c": ("vcvtph2ps %xmm1, %ymm0", 3, {"F16C"}),
    "f_bmi1": ("andn %rdi, %rsi, %rax", 3, {"BMI1"}),
    "f_bmi2": ("shlx %rdi, %rsi, %rax", 3, {"BMI2"}),
    "f_lzcnt": ("lzcnt %rdi, %rax", 3, {"LZCNT"}),
    "f_movbe": ("movbe (%rdi), %rax", 3, {"MOVBE"}),
    "f_avx512f": ("vpaddd %zmm1, %zmm2, %zmm0", 4, {"AVX-512F"}),
    "f_avx512bw": ("vmovdqu8 %zmm0, (%rdi)", 4, {"AVX-512F", "AVX-512BW"}),
    "f_avx512dq": ("vpmullq %zmm1, %zmm2, %zmm0", 4, {"AVX-512F", "AVX-512DQ"}),
    "f_avx512cd": ("vpconflictd %zmm1, %zmm0", 4, {"AVX-512F", "AVX-512CD"}),
    "f_avx512vl": ("vpaddd %ymm1, %ymm2, %ymm0{%k1}", 4, {"AVX-512F", "AVX-512VL"}),
    "f_kmask": ("kmovw %k1, %eax", 4, {"AVX-512F"}),
    "f_aes": ("aesenc %xmm1, %xmm0", 1, {"AES"}),
    "f_vnni": ("vpdpbusd %zmm1, %zmm2, %zmm0", 1, {"AVX-512VNNI"}),
}


def _assemble(directory: Path, body: str, *, flags: tuple[str, ...] = ()) -> Path:
    """A shared library of the functions in ``body`` (gas source), linked by gcc."""
    directory.mkdir(parents=True, exist_ok=True)
    source = directory / "kinds.s"
    source.write_text(body + '\n.section .note.GNU-stack,"",@progbits\n')
    library = directory / "libkinds.so"
    subprocess.run(["gcc", "-shared", "-nostdlib", "-o", library, source, *flags], check=True)
    return library


def _functions(text: dict[str, str]) -> str:
    out = [".text"]
    for name, instruction in text.items():
        out += [
            f".globl {name}",
            f".type {name}, @function",
            f"{name}:",
            f"    {instruction}",
            "    ret",
            f".size {name}, .-{name}",
        ]
    return "\n".join(out)


def _compile(directory: Path, source: str, *flags: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "lib.c").write_text(source)
    library = directory / "libisademo.so"
    subprocess.run(
        ["gcc", "-O2", "-shared", "-fPIC", "-march=x86-64", "-o", library,
         directory / "lib.c", *flags],
        check=True,
    )  # fmt: skip
    return library


def _wheel(directory: Path, library: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    return build_plain_wheel(
        directory,
        "isademo",
        "1.0",
        tag="py3-none-linux_x86_64",
        files={"isademo/libisademo.so": library.read_bytes()},
        metadata_extra="Summary: demo\nDescription-Content-Type: text/markdown\n",
    )


def _isa(findings: object) -> list[tuple[str, str]]:
    return [(str(f.severity), f.message) for f in findings if f.check == "isa"]  # type: ignore[attr-defined]


# -- instructions -------------------------------------------------------------------


def test_each_instruction_kind_maps_to_its_extension_and_level(tmp_path: Path) -> None:
    library = _assemble(tmp_path, _functions({k: v[0] for k, v in _KINDS.items()}))
    result = audit_elf(library)
    found = {f.name: f for f in result.functions}
    for name, (_, level, extensions) in _KINDS.items():
        if not extensions:
            assert name not in found, name
            continue
        assert found[name].level == level, name
        assert set(found[name].extensions) == extensions, name
        assert found[name].kind == "required"
    assert result.required_level == 4
    assert "AVX-512BW" in result.required_extensions


def test_encoding_and_classify_are_pure() -> None:
    assert encoding_of(bytes.fromhex("62f16d48fec1")) == "evex"
    assert encoding_of(bytes.fromhex("c5f5fec2")) == "vex"
    assert encoding_of(bytes.fromhex("660ffec1")) == "legacy"
    assert classify("vpaddd", "vex", False, False, False) == {"AVX"}
    assert classify("vpaddd", "vex", False, True, False) == {"AVX2"}
    assert classify("vbroadcastss", "vex", False, True, True) == {"AVX"}
    assert classify("vbroadcastss", "vex", False, True, False) == {"AVX2"}
    assert classify("vaddss", "evex", False, False, False) == {"AVX-512F"}  # scalar: no VL
    claims = [VariantProperty.parse("x86_64 :: level :: v3")]
    assert claimed_level(claims) == 3 and claimed_level(None) == 1


# -- the three libraries of tests/isa_libs.py ----------------------------------------


@pytest.fixture(scope="module")
def isa_wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("isa")
    return {kind: build_wheel(kind, base) for kind in ("static-init", "dispatched", "baseline")}


def test_static_initialiser_is_load_time_and_required(isa_wheels: dict[str, Path]) -> None:
    (library,) = audit_wheel(isa_wheels["static-init"]).libraries
    assert library.required_level == 4 and library.dispatch == ()
    (function,) = library.functions
    assert (function.name, function.kind, function.level) == ("fill_table", "load-time", 4)
    assert "AVX-512F" in function.extensions
    problems = judge(library, 1, "the plain wheel")
    assert [p.severity for p in problems] == ["error"]
    assert "fill_table" in problems[0].message and "x86-64-v4" in problems[0].message


def test_dispatched_kernel_is_reported_not_required(isa_wheels: dict[str, Path]) -> None:
    (library,) = audit_wheel(isa_wheels["dispatched"]).libraries
    assert library.required_level == 1 and library.dispatched_level == 4
    assert "references __cpu_model" in library.dispatch
    kernel = next(f for f in library.functions if f.name.startswith("sum_avx512"))
    assert kernel.kind == "dispatched" and "AVX-512F" in kernel.extensions
    assert [p.severity for p in judge(library, 1, "the plain wheel")] == ["info"]


def test_check_reports_the_static_initialiser_only(
    tmp_path: Path, isa_wheels: dict[str, Path]
) -> None:
    for kind, expected in (("static-init", ["error"]), ("dispatched", ["info"]),
                           ("baseline", [])):  # fmt: skip
        dist = tmp_path / kind
        dist.mkdir()
        shutil.copy(isa_wheels[kind], dist)
        report = check_release_set(dist)
        assert [s for s, _ in _isa(report.findings)] == expected, kind
        if kind == "static-init":
            assert not report.ok
            assert "fill_table" in _isa(report.findings)[0][1]
    assert _isa(check_release_set(tmp_path / "static-init", isa=False).findings) == []


def test_coverage_fails_cpu_profiles_below_the_code(
    tmp_path: Path, isa_wheels: dict[str, Path], cli: Cli
) -> None:
    for kind in ("static-init", "dispatched"):
        links = tmp_path / kind
        links.mkdir()
        shutil.copy(isa_wheels[kind], links)
        _code, out, _ = cli("coverage", links, "--json")
        rows = {r["profile"]: r for r in json.loads(out)}
        if kind == "static-init":
            assert rows["cpu-x86-64-v2"]["outcome"] == "fails"
            assert rows["cpu-x86-64-v3"]["outcome"] == "fails"
            assert rows["cpu-x86-64-v4"]["outcome"] == "plain"
            assert any("fill_table" in n and "x86-64-v4" in n
                       for n in rows["cpu-x86-64-v2"]["notes"])  # fmt: skip
            assert cli("coverage", links, "--require-all")[0] == 1
            _, out, _ = cli("coverage", links, "--json", "--no-isa")
            assert {r["outcome"] for r in json.loads(out) if r["profile"].startswith("cpu")} == {
                "plain"
            }
        else:
            assert {rows[f"cpu-x86-64-v{n}"]["outcome"] for n in (2, 3, 4)} == {"plain"}


# -- claims of labelled wheels --------------------------------------------------------

_AVX2_INIT = r"""
#include <immintrin.h>
static volatile int table[8];
__attribute__((constructor, target("avx2")))
static void fill_table(void) {
    __m256i v = _mm256_loadu_si256((const __m256i *)table);
    _mm256_storeu_si256((__m256i *)table, _mm256_add_epi32(v, _mm256_set1_epi32(1)));
}
int compute(void) { return table[0]; }
"""


def _labelled(tmp_path: Path, level: str) -> Path:
    plain = _wheel(tmp_path / "plain", _compile(tmp_path / "lib", _AVX2_INIT))
    dist = tmp_path / f"dist-{level}"
    dist.mkdir()
    properties = frozenset({VariantProperty.parse(f"x86_64 :: level :: {level}")})
    tag_wheel(plain, dist, TagRequest(properties=properties))
    shutil.copy(plain, dist)  # the fallback, which the AVX2 constructor breaks as well
    return dist


def test_v3_variant_with_avx2_load_time_code_passes(tmp_path: Path) -> None:
    report = check_release_set(_labelled(tmp_path, "v3"))
    errors = [f for f in report.findings if f.check == "isa" and str(f.severity) == "error"]
    # only the plain fallback fails; the v3 variant's claim covers its AVX2 constructor
    assert [f.file for f in errors] == ["isademo-1.0-py3-none-linux_x86_64.whl"]


def test_v2_variant_with_avx2_load_time_code_fails(tmp_path: Path) -> None:
    report = check_release_set(_labelled(tmp_path, "v2"))
    plain = "isademo-1.0-py3-none-linux_x86_64.whl"
    variant = [f for f in report.findings if f.check == "isa" and f.file != plain]
    assert [str(f.severity) for f in variant] == ["error"]
    assert "x86-64-v3" in variant[0].message and "claims x86-64-v2" in variant[0].message
    assert "AVX2" in variant[0].message


# -- code without a CPU check, declarations, notes --------------------------------------

_AVX2_PLAIN = r"""
#include <immintrin.h>
__attribute__((target("avx2"))) int avx2_sum(const int *v) {
    __m256i a = _mm256_loadu_si256((const __m256i *)v);
    a = _mm256_add_epi32(a, _mm256_srli_si256(a, 8));
    return _mm256_extract_epi32(a, 0) + _mm256_extract_epi32(a, 4);
}
"""


def test_undispatched_code_is_an_error_unless_declared(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    dist.mkdir()
    _wheel(dist, _compile(tmp_path / "lib", _AVX2_PLAIN))
    (error,) = _isa(check_release_set(dist).findings)
    assert error[0] == "error" and "without a runtime CPU check" in error[1]
    assert "avx2_sum" in error[1] and "--isa-dispatched" in error[1]
    declared = check_release_set(dist, isa_dispatched=["libisademo.so:avx2_*"])
    assert [s for s, _ in _isa(declared.findings)] == ["info"]
    assert Declaration.parse("lib*.so") == Declaration("lib*.so", "*")
    with pytest.raises(Exception, match="LIB_GLOB:FUNCTION_GLOB"):
        check_release_set(dist, isa_dispatched=["lib.so:"])


def test_gnu_property_note_is_required(tmp_path: Path) -> None:
    library = _compile(tmp_path, "int f(void) { return 1; }\n", "-Wl,-z,x86-64-v3")
    result = audit_elf(library)
    assert result.note_level == 3 and result.required_level == 3
    assert [p.severity for p in judge(result, 1, "the plain wheel")] == ["error"]


def test_audit_command(tmp_path: Path, isa_wheels: dict[str, Path], cli: Cli) -> None:
    code, out, _err = cli("audit", isa_wheels["static-init"], "--json")
    (report,) = json.loads(out)
    assert code == 1 and report["required_level"] == "x86-64-v4" and report["claims"] == "x86-64"
    assert report["libraries"][0]["functions"][0]["name"] == "fill_table"
    code, out, _ = cli("audit", isa_wheels["dispatched"])
    assert code == 0 and "sum_avx512" in out and "dispatched" in out


def test_damaged_library_is_invalid_input_not_a_crash(tmp_path: Path) -> None:
    from wheelforge.errors import InvalidInput

    library = _compile(tmp_path, "int f(void) { return 1; }\n")
    data = bytearray(library.read_bytes())
    data[0x28:0x30] = (len(data) * 4).to_bytes(8, "little")  # e_shoff past the end
    broken = tmp_path / "broken.so"
    broken.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(InvalidInput):
        audit_elf(broken)


def test_public_capstone_api_gives_the_same_audit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fallback through capstone's public ``disasm_lite`` (for a binding whose C
    structures the fast path cannot read) agrees with the fast path."""
    from wheelforge.isa import _decoder

    library = _assemble(tmp_path, _functions({k: v[0] for k, v in _KINDS.items()}))
    fast = audit_elf(library)
    monkeypatch.setattr(_decoder(), "fast", False)
    assert audit_elf(library) == fast


_STRIPPED = """
.section .init_array,"aw"
.align 8
.quad ctor
.text
ctor:
    {ctor}
    ret
kernel:
    vpaddd %zmm1, %zmm2, %zmm0
    ret
detect:
    cpuid
    ret
"""


@pytest.mark.parametrize(
    ("ctor", "required", "kind"),
    [("nop", 1, "dispatched"), ("vpaddd %zmm1, %zmm2, %zmm0", 4, "load-time")],
)
def test_load_time_code_is_followed_not_swept(
    tmp_path: Path, ctor: str, required: int, kind: str
) -> None:
    """A stripped constructor with no symbol and no FDE, followed by hand-written
    AVX-512 assembly (as dav1d's): the loader runs only the constructor's own code."""
    library = _assemble(tmp_path, _STRIPPED.format(ctor=ctor))
    subprocess.run(["strip", "--strip-all", library], check=True)
    result = audit_elf(library)
    assert result.required_level == required
    assert result.dispatched_level == (4 if kind == "dispatched" else 1)
    assert any(f.level == 4 and f.kind == kind for f in result.functions)


def test_mutated_libraries_audit_or_refuse(tmp_path: Path) -> None:
    """Random byte flips and truncations: every result is an audit or InvalidInput
    (never another exception, nor a read sized by a damaged header)."""
    import contextlib
    import random

    from wheelforge.errors import InvalidInput

    source = _compile(tmp_path / "lib", _AVX2_INIT).read_bytes()
    rng = random.Random(12)
    for i in range(60):
        data = bytearray(source)
        if i % 3 == 0:
            data = data[: rng.randrange(4, len(data))]
        else:
            for _ in range(rng.randrange(1, 40)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        mutated = tmp_path / f"m{i}.so"
        mutated.write_bytes(bytes(data))
        with contextlib.suppress(InvalidInput):
            audit_elf(mutated, jobs=1)


def test_target_clones_and_ifunc_are_dispatched(tmp_path: Path) -> None:
    source = (
        '__attribute__((target_clones("avx2", "arch=x86-64-v4", "default")))\n'
        "int f(int *a) { int s = 0; for (int i = 0; i < 64; i++) s += a[i]; return s; }\n"
    )
    result = audit_elf(_compile(tmp_path, source, "-O3"))
    assert result.required_level == 1 and result.dispatched_level == 4
    assert any(d.startswith("1 ifunc symbols (f)") for d in result.dispatch)
    clones = {f.name: f for f in result.functions if f.kind == "dispatched"}
    assert clones["f.arch_x86_64_v4"].level == 4 and clones["f.avx2"].level == 3


def test_check_cli_takes_declarations(tmp_path: Path, cli: Cli) -> None:
    dist = tmp_path / "dist"
    dist.mkdir()
    _wheel(dist, _compile(tmp_path / "lib", _AVX2_PLAIN))
    code, out, _ = cli("check", dist, "--json")
    assert code == 1 and any(f["check"] == "isa" for f in json.loads(out)["findings"])
    code, out, _ = cli("check", dist, "--json", "--isa-dispatched", "libisademo.so:avx2_*")
    assert code == 0
    assert cli("check", dist, "--no-isa")[0] == 0


def test_coverage_audits_a_large_wheel_from_a_served_index(tmp_path: Path, cli: Cli) -> None:
    """A remote wheel is streamed to a file for the audit, whatever its size (here past
    the 16 MiB metadata cap, which once bounded the download)."""
    import os
    import threading
    from functools import partial
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    library = build_wheel("static-init", tmp_path / "lib")
    with zipfile.ZipFile(library) as zf:
        members = {name: zf.read(name) for name in zf.namelist() if "dist-info" not in name}
    members["isademo/blob.bin"] = os.urandom(20 * 1024 * 1024)  # incompressible
    dist = tmp_path / "dist"
    dist.mkdir()
    build_plain_wheel(dist, "isademo", "1.0", tag="py3-none-linux_x86_64", files=members)
    # The site holds it anyway (index checks it: --no-isa), as a site of others might.
    assert cli("index", dist, "--out", tmp_path / "site", "--no-isa")[0] == 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(tmp_path / "site")))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        index = f"http://127.0.0.1:{server.server_address[1]}/simple/"
        _code, out, err = cli("coverage", "isademo", "--index", index, "--json")
    finally:
        server.shutdown()
        server.server_close()
    rows = {r["profile"]: r for r in json.loads(out)}
    assert rows["cpu-x86-64-v3"]["outcome"] == "fails", err
    assert any("fill_table" in note for note in rows["cpu-x86-64-v3"]["notes"])
