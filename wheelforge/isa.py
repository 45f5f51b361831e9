"""The ISA audit: which x86-64 micro-architecture level (v1-v4) the machine code of
each ELF file in a wheel needs, which extensions make it so, and in which functions.

The code is read, not the GNU property notes alone (a note glibc enforces still counts):
every executable x86 section is disassembled with capstone (linear sweep, restarted at
each function start), each instruction is
mapped to its extension (SSE4.1, AVX2, AVX-512BW, ...) and each extension to the level
that implies it. Device code (``.nv_fatbin``, HIP offload bundles) is never read.

Runtime dispatch must not make the common case an error. A function's code is

- *load-time* when the dynamic loader runs it: the functions of ``.init_array``,
  ``.preinit_array``, ``.ctors`` and ``DT_INIT``, and the functions they call directly
  (``call``/``jmp`` to a known function start, one level deep), found by recursive
  descent from those entries rather than by the sweep. It is always required;
- *dispatched* when the library detects the CPU at run time (a ``cpuid`` or ``xgetbv``
  instruction, a reference to ``__cpu_model``/``__cpu_indicator_init``/
  ``__cpu_features2``/glibc's ``__x86_get_cpuid_feature_leaf``, an ``STT_GNU_IFUNC``
  symbol), when its name carries a gcc/clang ``target_clones`` suffix (``f.avx2``,
  ``f.arch_x86_64_v4``), or when a declaration (``LIB_GLOB:FUNCTION_GLOB``) names it.
  It is reported, not required;
- *required* otherwise.

Streaming and bounded memory: sections are read and disassembled in chunks of
:data:`CHUNK` bytes, split at function starts, on a thread pool (capstone's C decoder
runs without the GIL); only per-function summaries are kept.
"""

from __future__ import annotations

import bisect
import ctypes
import fnmatch
import functools
import os
import re
import struct
import threading
from array import array
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import capstone
from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from wheelforge.errors import InvalidInput

BASELINE = 1
MAX_LEVEL = 4
CHUNK = 1 << 15  # bytes of code per disassembly call: ~7k instructions, ~2 MB of cs_insn

# Each extension and the lowest level that implies it; None: no level does.
EXTENSION_LEVELS: dict[str, int | None] = {
    **dict.fromkeys(("SSE3", "SSSE3", "SSE4.1", "SSE4.2", "POPCNT", "CMPXCHG16B", "LAHF-SAHF"), 2),
    **dict.fromkeys(("AVX", "AVX2", "BMI1", "BMI2", "F16C", "FMA", "LZCNT", "MOVBE", "XSAVE"), 3),
    **dict.fromkeys(("AVX-512F", "AVX-512BW", "AVX-512CD", "AVX-512DQ", "AVX-512VL"), 4),
}

# Sections that hold device code or data for another processor, even when executable.
DEVICE_SECTIONS = re.compile(
    r"^(\.nv_fatbin|__nv_relfatbin|\.nvFatBinSegment|\.hip_fatbin|\.hipFatBinSegment"
    r"|__CLANG_OFFLOAD_BUNDLE.*|\.llvm\.offloading)$"
)
# Symbols through which a library reads the CPU's features at run time.
DISPATCH_SYMBOLS = frozenset(
    {
        "__cpu_model",
        "__cpu_features2",
        "__cpu_indicator_init",
        "__builtin_cpu_supports",
        "__builtin_cpu_init",
        "__x86_get_cpuid_feature_leaf",
        "__get_cpu_features",
        "__x86_get_cpu_features",
    }
)
# gcc and clang name the versions of a target_clones / multiversioned function so.
CLONE_SUFFIX = re.compile(
    r"\.(arch_[a-z0-9_]+|avx[a-z0-9_]*|sse[a-z0-9_]*|fma4?|bmi2?|popcnt|lzcnt|f16c|movbe"
    r"|resolver|default)(\.\d+)?$"
)


def level_name(level: int) -> str:
    return "x86-64" if level <= BASELINE else f"x86-64-v{level}"


# -- instructions -> extensions -----------------------------------------------------


def _each(names: str, extension: str) -> dict[str, str]:
    return dict.fromkeys(names.split(), extension)


_LEGACY: dict[str, str] = {
    **_each(
        "addsubpd addsubps haddpd haddps hsubpd hsubps lddqu movddup movshdup movsldup "
        "fisttp monitor mwait",
        "SSE3",
    ),
    **_each(
        "pabsb pabsw pabsd palignr phaddw phaddd phaddsw phsubw phsubd phsubsw pmaddubsw "
        "pmulhrsw pshufb psignb psignw psignd",
        "SSSE3",
    ),
    **_each(
        "blendpd blendps blendvpd blendvps dppd dpps extractps insertps movntdqa mpsadbw "
        "packusdw pblendvb pblendw pcmpeqq pextrb pextrd pextrq phminposuw pinsrb pinsrd "
        "pinsrq pmaxsb pmaxsd pmaxud pmaxuw pminsb pminsd pminud pminuw pmovsxbw pmovsxbd "
        "pmovsxbq pmovsxwd pmovsxwq pmovsxdq pmovzxbw pmovzxbd pmovzxbq pmovzxwd pmovzxwq "
        "pmovzxdq pmuldq pmulld ptest roundpd roundps roundsd roundss",
        "SSE4.1",
    ),
    **_each("crc32 pcmpestri pcmpestrm pcmpistri pcmpistrm pcmpgtq", "SSE4.2"),
    "popcnt": "POPCNT",
    "cmpxchg16b": "CMPXCHG16B",
    "lahf": "LAHF-SAHF",
    "sahf": "LAHF-SAHF",
    "lzcnt": "LZCNT",
    "movbe": "MOVBE",
    **_each("xsave xsave64 xrstor xrstor64", "XSAVE"),
    **_each("xsaveopt xsaveopt64", "XSAVEOPT"),
    **_each("xsavec xsavec64", "XSAVEC"),
    **_each("andn bextr blsi blsmsk blsr", "BMI1"),
    **_each("bzhi mulx pdep pext rorx sarx shlx shrx", "BMI2"),
    **_each("aesenc aesenclast aesdec aesdeclast aesimc aeskeygenassist", "AES"),
    "pclmulqdq": "PCLMULQDQ",
    **_each("sha1rnds4 sha1nexte sha1msg1 sha1msg2 sha256rnds2 sha256msg1 sha256msg2", "SHA"),
    "rdrand": "RDRAND",
    "rdseed": "RDSEED",
    "adcx": "ADX",
    "adox": "ADX",
    **_each("extrq insertq movntsd movntss", "SSE4A"),
    **_each("gf2p8affineinvqb gf2p8affineqb gf2p8mulb", "GFNI"),
}
# Instructions that read the CPU's features: evidence of runtime dispatch, not a need.
_DETECT = frozenset({"cpuid", "xgetbv"})
# Not vector instructions although their names start with "v" (VMX, SVM, segment checks).
_NOT_VECTOR = re.compile(r"^(verr|verw|vm(call|clear|func|launch|load|mcall|ptrld|ptrst"
                         r"|read|resume|run|save|write|xoff|xon|gexit))$")  # fmt: skip
_KMASK = re.compile(r"^k(mov|and|andn|or|xor|xnor|not|shiftl|shiftr|unpck|add|test|ortest)")
_FMA3 = re.compile(r"^vf(n?m(add|sub)|maddsub|msubadd)(132|213|231)")
_FMA4 = re.compile(r"^vf(n?m(add|sub)|maddsub|msubadd)[ps][sd]$")
_AVX2_ONLY = frozenset(
    _each(
        "vbroadcasti128 vextracti128 vinserti128 vperm2i128 vpermd vpermq vpermps vpermpd "
        "vpblendd vpmaskmovd vpmaskmovq vpsllvd vpsllvq vpsravd vpsrlvd vpsrlvq vpgatherdd "
        "vpgatherdq vpgatherqd vpgatherqq vgatherdps vgatherdpd vgatherqps vgatherqpd "
        "vpbroadcastb vpbroadcastw vpbroadcastd vpbroadcastq",
        "",
    )
)
_AVX1_VP = frozenset({"vptest", "vpermilps", "vpermilpd", "vperm2f128"})
_EVEX_CD = re.compile(r"^(vpconflict[dq]|vplzcnt[dq]|vpbroadcastm(b2q|w2d))$")
_EVEX_DQ = re.compile(
    r"^(vpmullq|vcvtt?p[sd]2u?qq|vcvtu?qq2p[sd]|vextract[fi](32x8|64x2)|vinsert[fi](32x8|64x2)"
    r"|vbroadcast[fi](32x2|32x8|64x2)|vrange[ps][sd]|vreduce[ps][sd]|vfpclass[ps][sd]"
    r"|vpmov(d2m|q2m|m2d|m2q)|vandn?p[sd]|vorp[sd]|vxorp[sd])$"
)
_EVEX_BW = re.compile(
    r"^(vmovdqu(8|16)|vpmov(b2m|w2m|m2b|m2w|wb|swb|uswb|[sz]xbw)|vperm[it]?2?w|vpermw"
    r"|vpbroadcast[bw]|vpblendm[bw]|vpcmpu?[bw]|vpcmp(eq|gt)[bw]|vptestn?m[bw]|vpshufb"
    r"|vpshuf[hl]w|vpalignr|vpsadbw|vdbpsadbw|vpmaddubsw|vpmaddwd|vpmulh(rs|u)?w|vpmullw"
    r"|vpack(ss|us)(wb|dw)|vpunpck[hl](bw|wd)|vpavg[bw]|vpabs[bw]|vpadd(u?s)?[bw]"
    r"|vpsub(u?s)?[bw]|vpm(ax|in)[su][bw]|vps(ll|ra|rl)v?w|vps[lr]ldq|vpextr[bw]|vpinsr[bw])$"
)
_EVEX_BEYOND: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^vpdp(busd|busds|wssd|wssds)$"), "AVX-512VNNI"),
    (re.compile(r"^vpmadd52[lh]uq$"), "AVX-512IFMA"),
    (re.compile(r"^(vpermb|vperm[it]2b|vpmultishiftqb)$"), "AVX-512VBMI"),
    (re.compile(r"^(vpcompress[bw]|vpexpand[bw]|vpsh[lr]dv?[wdq])$"), "AVX-512VBMI2"),
    (re.compile(r"^(vpopcnt[bw]|vpshufbitqmb)$"), "AVX-512BITALG"),
    (re.compile(r"^vpopcnt[dq]$"), "AVX-512VPOPCNTDQ"),
    (re.compile(r"^(vcvtne2ps2bf16|vcvtneps2bf16|vdpbf16ps)$"), "AVX-512BF16"),
    (re.compile(r"^vp2intersect[dq]$"), "AVX-512VP2INTERSECT"),
    (
        re.compile(
            r"^(vexp2p[sd]|vrcp28[ps][sd]|vrsqrt28[ps][sd]|v[gs]\w*pf[01]\w*|v4f\w+|vp4dpw\w+)$"
        ),
        "AVX-512 (Xeon Phi)",
    ),
    (re.compile(r"^vaes"), "VAES"),
    (re.compile(r"^vpclmulqdq$"), "VPCLMULQDQ"),
    (re.compile(r"^vgf2p8"), "GFNI"),
    (re.compile(r"^(v\w+(ph|sh)|vcvtph2(?!ps$)\w+|vcvtsh2\w+|vmovw)$"), "AVX-512FP16"),
)
_SCALAR = re.compile(
    r"^(v(?!p)\w*(ss|sd|sh)|vmov[dqw]|vp(extr|insr)[bwdq]|vcvt\w*2u?si|vcvtu?si2\w+|vinsertps"
    r"|vextractps|vmov[hl]p[sd]|vmovhlps|vmovlhps)$"
)


@functools.cache
def classify(mnemonic: str, encoding: str, zmm: bool, ymm: bool, memory: bool) -> frozenset[str]:
    """The extensions an instruction needs, from its mnemonic, its encoding ("legacy",
    "vex", "evex", "xop") and its operands (zmm, ymm registers; a memory operand)."""
    if encoding == "legacy":
        ext = _LEGACY.get(mnemonic)
        return frozenset({ext}) if ext else frozenset()
    if encoding == "xop":
        return frozenset({"XOP"})
    if _KMASK.match(mnemonic):
        kind = mnemonic[-1]
        if kind in "dq":
            return frozenset({"AVX-512BW"})
        if kind == "b" or mnemonic in ("kaddw", "ktestw"):
            return frozenset({"AVX-512DQ"})
        return frozenset({"AVX-512F"})
    if encoding == "vex":
        if mnemonic in _LEGACY and not mnemonic.startswith("v"):
            return frozenset({_LEGACY[mnemonic]})  # BMI1/BMI2 (VEX-encoded GPR instructions)
        if _FMA3.match(mnemonic):
            return frozenset({"FMA"})
        if _FMA4.match(mnemonic):
            return frozenset({"FMA4"})
        if mnemonic in ("vcvtph2ps", "vcvtps2ph"):
            return frozenset({"F16C"})
        if mnemonic in ("vpdpbusd", "vpdpbusds", "vpdpwssd", "vpdpwssds"):
            return frozenset({"AVX-VNNI"})
        if mnemonic.startswith("vaes"):
            return frozenset({"VAES" if ymm else "AES", "AVX"})
        if mnemonic == "vpclmulqdq":
            return frozenset({"VPCLMULQDQ" if ymm else "PCLMULQDQ", "AVX"})
        if mnemonic.startswith("vgf2p8"):
            return frozenset({"GFNI", "AVX"})
        if (
            mnemonic in _AVX2_ONLY
            or (ymm and mnemonic.startswith("vp") and mnemonic not in _AVX1_VP)
            or (ymm and mnemonic in ("vmpsadbw", "vmovntdqa"))
            or (mnemonic in ("vbroadcastss", "vbroadcastsd") and not memory)
        ):
            return frozenset({"AVX2"})
        return frozenset({"AVX"})
    # EVEX
    for pattern, name in _EVEX_BEYOND:
        if pattern.match(mnemonic):
            return frozenset({name})
    base = (
        "AVX-512CD"
        if _EVEX_CD.match(mnemonic)
        else "AVX-512DQ"
        if _EVEX_DQ.match(mnemonic)
        else "AVX-512BW"
        if _EVEX_BW.match(mnemonic)
        else "AVX-512F"
    )
    found = {base, "AVX-512F"}
    if not zmm and (ymm or not _SCALAR.match(mnemonic)):
        found.add("AVX-512VL")
    return frozenset(found)


def level_of(extensions: Iterable[str]) -> int:
    """The lowest level that implies every extension (those of no level count as none)."""
    return max((EXTENSION_LEVELS.get(e) or BASELINE for e in extensions), default=BASELINE)


_LEGACY_PREFIXES = frozenset({0x66, 0x67, 0xF2, 0xF3, 0xF0, 0x2E, 0x36, 0x3E, 0x26, 0x64, 0x65})


def encoding_of(code: bytes) -> str:
    """ "legacy", "vex", "evex" or "xop": the instruction's encoding, from its bytes."""
    for i, byte in enumerate(code):
        if byte in _LEGACY_PREFIXES or 0x40 <= byte <= 0x4F:
            continue
        if byte == 0x62:
            return "evex"
        if byte in (0xC4, 0xC5):
            return "vex"
        if byte == 0x8F and i + 1 < len(code) and code[i + 1] & 0x1F >= 8:
            return "xop"
        return "legacy"
    return "legacy"


# -- results ------------------------------------------------------------------------


@dataclass(frozen=True)
class FunctionIsa:
    """One function whose code needs more than baseline x86-64 (or detects the CPU)."""

    name: str
    address: int
    level: int
    extensions: tuple[str, ...]
    kind: str  # "load-time", "required" or "dispatched"
    detects_cpu: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "address": f"0x{self.address:x}",
            "level": level_name(self.level),
            "extensions": list(self.extensions),
            "kind": self.kind,
            "detects_cpu": self.detects_cpu,
        }


@dataclass(frozen=True)
class LibraryIsa:
    """The audit of one ELF file."""

    member: str
    machine: str  # e_machine, e.g. "EM_X86_64"
    audited: bool  # False: not x86-64 code (nothing disassembled)
    required_level: int  # what its load-time and undispatched code (and its notes) need
    dispatched_level: int  # what its dispatched code needs (reported, not required)
    note_level: int | None  # GNU_PROPERTY_X86_ISA_1_NEEDED, which glibc enforces at load
    required_extensions: tuple[str, ...]
    dispatched_extensions: tuple[str, ...]
    dispatch: tuple[str, ...]  # the evidence of runtime dispatch, if any
    functions: tuple[FunctionIsa, ...]  # above baseline or detecting the CPU, by level
    code_bytes: int  # bytes of x86 code disassembled

    @property
    def load_time_level(self) -> int:
        return max((f.level for f in self.functions if f.kind == "load-time"), default=BASELINE)

    def responsible(self, above: int, *, kind: str | None = None) -> list[FunctionIsa]:
        """The functions whose code needs more than level ``above``."""
        return [
            f
            for f in self.functions
            if f.level > above and (f.kind == kind if kind else f.kind != "dispatched")
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "member": self.member,
            "machine": self.machine,
            "audited": self.audited,
            "required_level": level_name(self.required_level),
            "dispatched_level": level_name(self.dispatched_level),
            "note_level": None if self.note_level is None else level_name(self.note_level),
            "required_extensions": list(self.required_extensions),
            "dispatched_extensions": list(self.dispatched_extensions),
            "dispatch": list(self.dispatch),
            "functions": [f.to_json() for f in self.functions],
            "code_bytes": self.code_bytes,
        }


@dataclass(frozen=True)
class WheelIsa:
    path: str
    libraries: tuple[LibraryIsa, ...]

    @property
    def required_level(self) -> int:
        return max((lib.required_level for lib in self.libraries), default=BASELINE)

    @property
    def dispatched_level(self) -> int:
        return max((lib.dispatched_level for lib in self.libraries), default=BASELINE)

    def reason(self) -> str:
        """Why the wheel needs its required level, in a few words."""
        level = self.required_level
        for library in self.libraries:
            if library.required_level < level or level <= BASELINE:
                continue
            culprits = [f for f in library.functions if f.kind != "dispatched" and f.level == level]
            if not culprits:
                return f"GNU property note of {library.member}"
            first = culprits[0]
            extensions = [e for e in first.extensions if EXTENSION_LEVELS.get(e) == level]
            return (
                f"{'/'.join(extensions)} in {first.name}"
                f"{f' and {len(culprits) - 1} more' if len(culprits) > 1 else ''}, "
                f"{first.kind}, {library.member}"
            )
        return "baseline code"

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "required_level": level_name(self.required_level),
            "dispatched_level": level_name(self.dispatched_level),
            "libraries": [lib.to_json() for lib in self.libraries],
        }


@dataclass(frozen=True)
class Declaration:
    """``LIB_GLOB:FUNCTION_GLOB``: functions that run only after the library checked the
    CPU, though the heuristics do not see it. LIB_GLOB matches the member's path in the
    wheel or its file name; a bare LIB_GLOB means every function of the library."""

    library: str
    function: str = "*"

    @classmethod
    def parse(cls, text: str) -> Declaration:
        library, sep, function = text.partition(":")
        if not library or (sep and not function):
            raise InvalidInput(
                f"{text!r}: expected LIB_GLOB:FUNCTION_GLOB (e.g. 'libfoo*.so:*_avx512*')"
            )
        return cls(library, function or "*")

    def library_matches(self, member: str) -> bool:
        return fnmatch.fnmatchcase(member, self.library) or fnmatch.fnmatchcase(
            member.rsplit("/", 1)[-1], self.library
        )


def parse_declarations(texts: Iterable[str]) -> tuple[Declaration, ...]:
    return tuple(Declaration.parse(t) for t in texts)


# -- reading the ELF file -----------------------------------------------------------


@dataclass(frozen=True)
class _Region:
    """An executable section: where its bytes are in the file and in memory."""

    name: str
    offset: int
    address: int
    size: int


@dataclass
class _Layout:
    regions: list[_Region]
    starts: list[int]  # boundaries, sorted: function starts and the ends of known sizes
    names: dict[int, str]
    clones: set[int]  # starts of target_clones versions
    init: set[int]  # addresses the loader calls
    known: set[int] = field(default_factory=set)  # real function starts (symbol or FDE)
    dispatch: list[str] = field(default_factory=list)
    note_level: int | None = None


def _layout(elf: ELFFile, stream: BinaryIO) -> _Layout:
    regions = []
    sections = list(elf.iter_sections())
    size = os.fstat(stream.fileno()).st_size
    for section in sections:
        if section["sh_type"] != "SHT_NOBITS" and (
            section["sh_offset"] < 0 or section["sh_offset"] + section["sh_size"] > size
        ):
            raise InvalidInput(f"section {section.name or '?'} lies outside the file")
    by_name = {section.name: section for section in sections}
    for section in sections:
        flags = section["sh_flags"]
        if not flags & 0x4 or section["sh_type"] != "SHT_PROGBITS" or not section["sh_size"]:
            continue  # SHF_EXECINSTR only, with bytes in the file
        if DEVICE_SECTIONS.match(section.name):
            continue
        if section.name.startswith(".plt"):
            continue  # stubs that jump through the GOT
        regions.append(
            _Region(section.name, section["sh_offset"], section["sh_addr"], section["sh_size"])
        )
    layout = _Layout(regions, [], {}, set(), set())
    starts: set[int] = {r.address for r in regions}
    ends: set[int] = set()
    ifuncs: set[str] = set()
    dispatch_refs: set[str] = set()
    for table in (".dynsym", ".symtab"):
        symtab = by_name.get(table)
        if symtab is None or symtab["sh_type"] not in ("SHT_SYMTAB", "SHT_DYNSYM"):
            continue
        strtab = sections[symtab["sh_link"]]
        strings = _read_at(stream, strtab["sh_offset"], strtab["sh_size"])
        dispatch_refs.update(n for n in DISPATCH_SYMBOLS if b"\0" + n.encode() + b"\0" in strings)
        for start, size, name, ifunc in _functions(stream, symtab, strings):
            if ifunc:
                ifuncs.add(name)
            starts.add(start)
            layout.known.add(start)
            if size:
                ends.add(start + size)
            if table == ".symtab" or start not in layout.names:
                layout.names[start] = name
            if CLONE_SUFFIX.search(name):
                layout.clones.add(start)
    for start, end in _fde_ranges(by_name.get(".eh_frame_hdr"), by_name.get(".eh_frame"), stream):
        starts.add(start)
        layout.known.add(start)
        if end is not None:
            ends.add(end)
    # An end that no function starts at begins code no symbol or FDE covers (hand-written
    # assembly, say): a region of its own, not the tail of the function before it.
    starts |= ends
    layout.init = _init_addresses(elf, stream, sections)
    starts |= layout.init  # what the loader calls is a function, symbol or not
    layout.known |= layout.init
    layout.starts = sorted(s for s in starts if _region_of(regions, s) is not None)
    layout.dispatch += [f"references {n}" for n in sorted(dispatch_refs)]
    if ifuncs:
        shown = ", ".join(sorted(ifuncs)[:3])
        layout.dispatch.append(f"{len(ifuncs)} ifunc symbols ({shown})")
    layout.note_level = _note_level(by_name.get(".note.gnu.property"))
    return layout


def _read_at(stream: BinaryIO, offset: int, size: int) -> bytes:
    """``size`` bytes at ``offset``: all of them, or InvalidInput (a damaged header)."""
    stream.seek(offset)
    data = stream.read(max(0, size))
    if len(data) != max(0, size):
        raise InvalidInput(f"{size} bytes at offset {offset} lie outside the file")
    return data


def _functions(
    stream: BinaryIO, symtab: Any, strings: bytes
) -> Iterator[tuple[int, int, str, bool]]:
    """(address, size, name, is an ifunc) of each defined function symbol (read with struct:
    pyelftools takes seconds for the 100k symbols of a big C++ library)."""
    if symtab["sh_entsize"] != 24:
        return
    data = _read_at(stream, symtab["sh_offset"], symtab["sh_size"] // 24 * 24)
    for st_name, st_info, _, shndx, value, size in struct.iter_unpack("<IBBHQQ", data):
        kind = st_info & 0xF
        if kind not in (2, 10) or not value or shndx == 0:  # STT_FUNC, STT_GNU_IFUNC
            continue
        end = strings.find(b"\0", st_name)
        name = strings[st_name : end if end >= 0 else None].decode("utf-8", "replace")
        yield value, size, name, kind == 10


def _region_of(regions: Sequence[_Region], address: int) -> _Region | None:
    for region in regions:  # a handful: .init, .text, .fini, ...
        if region.address <= address < region.address + region.size:
            return region
    return None


def _fde_ranges(hdr: Any, frames: Any, stream: BinaryIO) -> list[tuple[int, int | None]]:
    """(start, end or None) of each function with unwind information: the starts from
    .eh_frame_hdr's binary search table (covers stripped code), the ends from the FDEs'
    address ranges where they use the usual pc-relative sdata4 encoding."""
    if hdr is None or hdr["sh_size"] < 12:
        return []
    head = _read_at(stream, hdr["sh_offset"], 12)
    version, _ptr_enc, count_enc, table_enc = head[:4]
    if version != 1 or count_enc != 0x03 or table_enc != 0x3B:
        return []  # not the udata4 count + datarel sdata4 table every linker writes
    (count,) = struct.unpack_from("<I", head, 8)
    count = min(count, (hdr["sh_size"] - 12) // 8)
    table = array("i")
    table.frombytes(_read_at(stream, hdr["sh_offset"] + 12, count * 8))
    base = hdr["sh_addr"]
    data = b""
    if frames is not None and frames["sh_type"] == "SHT_PROGBITS":
        data = _read_at(stream, frames["sh_offset"], frames["sh_size"])
    ranges: list[tuple[int, int | None]] = []
    for i in range(0, len(table) - 1, 2):
        start, fde = base + table[i], base + table[i + 1] - (frames["sh_addr"] if data else 0)
        end = None
        if data and fde >= 0 and fde + 16 <= len(data):
            length, _, begin, size = struct.unpack_from("<IIiI", data, fde)
            if length != 0xFFFFFFFF and frames["sh_addr"] + fde + 8 + begin == start:
                end = start + size
        ranges.append((start, end))
    return ranges


def _init_addresses(elf: ELFFile, stream: BinaryIO, sections: list[Any]) -> set[int]:
    """What the loader calls: DT_INIT, and the entries of DT_INIT_ARRAY,
    DT_PREINIT_ARRAY (or the sections of those names) and ``.ctors``."""
    init: set[int] = set()
    ranges: set[tuple[int, int]] = set()
    for section in sections:
        if section.name in (".init_array", ".preinit_array", ".ctors"):
            ranges.add((section["sh_addr"], section["sh_size"]))
    dynamic = next((s for s in sections if s["sh_type"] == "SHT_DYNAMIC"), None)
    if dynamic is not None:
        tags = {t.entry.d_tag: t.entry.d_val for t in dynamic.iter_tags()}
        if "DT_INIT" in tags:
            init.add(tags["DT_INIT"])
        for array_tag in ("DT_INIT_ARRAY", "DT_PREINIT_ARRAY"):
            if array_tag in tags:
                ranges.add((tags[array_tag], tags.get(array_tag + "SZ", 0)))
    unresolved = []
    for address, size in ranges:
        holder = next(
            (s for s in sections if s["sh_type"] != "SHT_NOBITS"
             and s["sh_addr"] <= address < s["sh_addr"] + s["sh_size"]),
            None,
        )  # fmt: skip
        if holder is None or not size:
            continue
        size = min(size, holder["sh_addr"] + holder["sh_size"] - address)
        values = array("Q")
        values.frombytes(
            _read_at(stream, holder["sh_offset"] + address - holder["sh_addr"], size // 8 * 8)
        )
        for i, value in enumerate(values):
            if value == 0:  # a RELA relocation holds it
                unresolved.append(address + 8 * i)
            elif value != 0xFFFFFFFFFFFFFFFF:  # .ctors' end marker
                init.add(value)
    if unresolved:
        init.update(_relative_addends(stream, sections, set(unresolved)))
    return init


def _relative_addends(stream: BinaryIO, sections: list[Any], where: set[int]) -> list[int]:
    found = []
    for section in sections:
        if section["sh_type"] != "SHT_RELA" or section["sh_entsize"] != 24:
            continue
        entries = array("Q")
        entries.frombytes(_read_at(stream, section["sh_offset"], section["sh_size"] // 24 * 24))
        offsets = entries[0::3]
        for offset in where.intersection(offsets):
            i = offsets.index(offset)
            if entries[3 * i + 1] & 0xFFFFFFFF == 8:  # R_X86_64_RELATIVE
                found.append(entries[3 * i + 2])
    return found


def _note_level(section: Any) -> int | None:
    """The level GNU_PROPERTY_X86_ISA_1_NEEDED records (glibc refuses to load below it)."""
    if section is not None and section["sh_type"] == "SHT_NOTE":
        data = section.data()
        pos = 0
        while pos + 16 <= len(data):
            namesz, descsz, _ = struct.unpack_from("<III", data, pos)
            desc = pos + 12 + ((namesz + 3) & ~3)
            end = desc + descsz
            while desc + 8 <= end:
                kind, size = struct.unpack_from("<II", data, desc)
                if kind == 0xC0008002 and size >= 4:  # GNU_PROPERTY_X86_ISA_1_NEEDED
                    (bits,) = struct.unpack_from("<I", data, desc + 8)
                    return max((n + 1 for n in range(4) if bits >> n & 1), default=BASELINE)
                desc += 8 + ((size + 7) & ~7)
            pos = end
    return None


# -- disassembly --------------------------------------------------------------------


@dataclass(frozen=True)
class _Chunk:
    offset: int
    address: int
    size: int


@dataclass
class _Found:
    """What one chunk's code needs, per function start."""

    extensions: dict[int, set[str]] = field(default_factory=dict)
    detects: dict[int, set[str]] = field(default_factory=dict)


class _Decoder:
    """capstone through its C API (``cs_disasm`` into an array of ``cs_insn``, read
    in place) when the binding exposes it; else its ``disasm_lite`` generator (slower)."""

    def __init__(self) -> None:
        self.local = threading.local()
        md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
        names = {i: md.insn_name(i) or "" for i in range(1, _instruction_count(md))}
        self.names = names
        self.interesting = frozenset(
            i
            for i, n in names.items()
            if n in _LEGACY or n in _DETECT or _KMASK.match(n)
            or (n.startswith("v") and not _NOT_VECTOR.match(n))
        )  # fmt: skip
        insn = getattr(capstone, "_cs_insn", None)
        fields = dict(getattr(insn, "_fields_", ()))
        self.fast = insn is not None and hasattr(capstone, "_cs") and {
            "id", "address", "size", "bytes", "op_str"} <= set(fields)  # fmt: skip
        if self.fast:
            assert insn is not None
            self.stride = ctypes.sizeof(insn)
            self.off_address = insn.address.offset
            self.off_bytes = insn.bytes.offset
            self.off_op = insn.op_str.offset
            self.op_len = ctypes.sizeof(fields["op_str"])
            self.fast = self.stride % 8 == 0 and self.off_address % 8 == 0

    def _cs(self) -> capstone.Cs:
        md: capstone.Cs | None = getattr(self.local, "md", None)
        if md is None:
            md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
            md.skipdata = True
            self.local.md = md
        return md

    def instructions(self, code: bytes, address: int) -> Iterator[tuple[int, str, bytes, str]]:
        """(address, mnemonic, first bytes, operands) of each interesting instruction."""
        md = self._cs()
        if not self.fast:
            for addr, size, mnemonic, op_str in md.disasm_lite(code, address):
                if mnemonic in _LEGACY or mnemonic in _DETECT or mnemonic.startswith(("v", "k")):
                    start = addr - address
                    yield addr, mnemonic, code[start : start + size], op_str
            return
        yield from self._fast(md, code, address)

    def _fast(
        self, md: capstone.Cs, code: bytes, address: int
    ) -> Iterator[tuple[int, str, bytes, str]]:
        pointer = ctypes.POINTER(capstone._cs_insn)()
        count = capstone._cs.cs_disasm(md.csh, code, len(code), address, 0, ctypes.byref(pointer))
        if count <= 0:
            return
        try:
            stride = self.stride
            raw = memoryview((ctypes.c_char * (count * stride)).from_address(
                ctypes.addressof(pointer.contents))).cast("B")  # fmt: skip
            ids = raw.cast("I")[0 :: stride // 4]
            if self.interesting.isdisjoint(ids):
                return
            addresses = raw.cast("Q")[self.off_address // 8 :: stride // 8]
            hits = [i for i, x in enumerate(ids) if x in self.interesting]
            for i in hits:
                base = i * stride
                op = bytes(raw[base + self.off_op : base + self.off_op + self.op_len])
                yield (
                    addresses[i],
                    self.names[ids[i]],
                    bytes(raw[base + self.off_bytes : base + self.off_bytes + 6]),
                    op.split(b"\0", 1)[0].decode("ascii", "replace"),
                )
        finally:
            capstone._cs.cs_free(pointer, count)


def _instruction_count(md: capstone.Cs) -> int:
    ending = getattr(capstone.x86_const, "X86_INS_ENDING", None)
    if isinstance(ending, int):
        return ending
    count = 1
    while md.insn_name(count):
        count += 1
    return count


@functools.cache
def _decoder() -> _Decoder:
    return _Decoder()


def _scan(fd: int, chunk: _Chunk, starts: Sequence[int]) -> _Found:
    code = os.pread(fd, chunk.size, chunk.offset)
    found = _Found()
    for address, mnemonic, raw, op_str in _decoder().instructions(code, chunk.address):
        index = bisect.bisect_right(starts, address) - 1
        function = starts[index] if index >= 0 else chunk.address
        if mnemonic in _DETECT:
            found.detects.setdefault(function, set()).add(mnemonic)
            continue
        extensions = classify(
            mnemonic, encoding_of(raw), "zmm" in op_str, "ymm" in op_str, "ptr" in op_str
        )
        if extensions:
            found.extensions.setdefault(function, set()).update(extensions)
    return found


def _chunks(region: _Region, starts: Sequence[int], size: int = 0) -> Iterator[_Chunk]:
    """The region in pieces of about ``size`` bytes (default :data:`CHUNK`), cut at
    function starts."""
    size = size or CHUNK
    end = region.address + region.size
    at = region.address
    while at < end:
        target = at + size
        if target >= end:
            cut = end
        else:
            index = bisect.bisect_left(starts, target)
            cut = starts[index] if index < len(starts) and starts[index] < end else end
            if cut - at > 4 * size:  # no function start near: cut anyway (resyncs fast)
                cut = target
        yield _Chunk(region.offset + (at - region.address), at, cut - at)
        at = cut


_STOP = frozenset({"ret", "retf", "iret", "iretq", "ud2", "hlt", "int3", "sysret"})
_REACH_BUDGET = 50_000  # instructions followed from one load-time entry


def _reach(fd: int, layout: _Layout, entry: int) -> tuple[set[str], set[int]]:
    # extensions include "cpuid" / "xgetbv" when the code reads the CPU's features
    """What the code reachable from ``entry`` needs, following its branches (recursive
    descent, not a linear sweep: a function without a symbol or FDE does not swallow
    the code after it), and the functions it calls or tail-jumps to directly (addresses
    where a symbol, an FDE or the loader says a function starts)."""
    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    extensions: set[str] = set()
    callees: set[int] = set()
    seen: set[int] = set()
    todo = [entry]
    budget = _REACH_BUDGET
    while todo and budget > 0:
        address = todo.pop()
        while address not in seen and budget > 0:
            region = _region_of(layout.regions, address)
            if region is None:
                break
            seen.add(address)
            budget -= 1
            code = os.pread(fd, 16, region.offset + address - region.address)
            decoded = next(md.disasm_lite(code, address, 1), None)
            if decoded is None:
                break
            _, size, mnemonic, op_str = decoded
            if mnemonic in _DETECT:
                extensions.add(mnemonic)
            elif mnemonic in _LEGACY or mnemonic.startswith(("v", "k")):
                extensions |= classify(
                    mnemonic, encoding_of(code[:size]), "zmm" in op_str, "ymm" in op_str,
                    "ptr" in op_str,
                )  # fmt: skip
            target = int(op_str, 16) if op_str.startswith("0x") else None
            if mnemonic in _STOP:
                break
            if mnemonic == "call":
                if target is not None and target in layout.known:
                    callees.add(target)
            elif mnemonic == "jmp":
                if target is not None and target in layout.known and target != entry:
                    callees.add(target)  # a tail call
                elif target is not None:
                    todo.append(target)
                break
            elif mnemonic.startswith(("j", "loop")) and target is not None:
                todo.append(target)
            address += size
    return extensions, callees


def _name(layout: _Layout, start: int) -> str:
    return layout.names.get(start) or f"sub_{start:x}"


def audit_elf(
    path: Path,
    *,
    member: str = "",
    declarations: Sequence[Declaration] = (),
    jobs: int | None = None,
) -> LibraryIsa:
    """Audit the ELF file at ``path`` (named ``member`` in reports)."""
    member = member or str(path)
    with path.open("rb") as stream:
        try:
            elf = ELFFile(stream)
            machine = str(elf["e_machine"])
            if machine != "EM_X86_64":
                return LibraryIsa(member, machine, False, BASELINE, BASELINE, None,
                                  (), (), (), (), 0)  # fmt: skip
            layout = _layout(elf, stream)
        except InvalidInput as err:
            raise InvalidInput(f"{member}: damaged ELF file ({err.message})") from None
        except (ELFError, ValueError, struct.error, IndexError, KeyError, OSError) as err:
            raise InvalidInput(f"{member}: not a readable ELF file ({err})") from None
        fd = stream.fileno()
        chunks = [c for r in layout.regions for c in _chunks(r, layout.starts)]
        scan = functools.partial(_scan, fd, starts=layout.starts)
        workers = max(1, min(jobs or os.cpu_count() or 1, len(chunks)))
        if workers == 1:
            results = list(map(scan, chunks))
        else:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                results = list(pool.map(scan, chunks))
        extensions: dict[int, set[str]] = {}
        detects: dict[int, set[str]] = {}
        for found in results:
            for start, exts in found.extensions.items():
                extensions.setdefault(start, set()).update(exts)
            for start, what in found.detects.items():
                detects.setdefault(start, set()).update(what)
        load_time: dict[int, set[str]] = {}
        for entry in sorted(layout.init):
            needs, callees = _reach(fd, layout, entry)
            load_time.setdefault(entry, set()).update(needs)
            for callee in sorted(callees - layout.clones):
                load_time.setdefault(callee, set()).update(_reach(fd, layout, callee)[0])
    return _summarise(member, layout, extensions, detects, load_time, declarations,
                      sum(r.size for r in layout.regions))  # fmt: skip


def _summarise(
    member: str,
    layout: _Layout,
    extensions: dict[int, set[str]],
    detects: dict[int, set[str]],
    load_time: dict[int, set[str]],
    declarations: Sequence[Declaration],
    code_bytes: int,
) -> LibraryIsa:
    dispatch = list(layout.dispatch)
    for start, what in sorted(detects.items()):
        dispatch.append(f"{'/'.join(sorted(what))} in {_name(layout, start)}")
    if len(dispatch) > 8:
        dispatch = [*dispatch[:8], f"... {len(dispatch) - 8} more"]
    if layout.clones:
        dispatch.append(f"{len(layout.clones)} target_clones versions")
    dispatching = bool(layout.dispatch or detects)
    mine = [d for d in declarations if d.library_matches(member)]
    functions = []
    required_ext: set[str] = set()
    dispatched_ext: set[str] = set()
    for start, found in sorted(load_time.items()):
        exts, reads_cpu = found - _DETECT, bool(found & _DETECT)
        if exts or reads_cpu:
            required_ext.update(exts)
            functions.append(
                FunctionIsa(_name(layout, start), start, level_of(exts), tuple(sorted(exts)),
                            "load-time", reads_cpu)
            )  # fmt: skip
    for start in sorted(set(extensions) | set(detects)):
        name = _name(layout, start)
        exts = extensions.get(start, set())
        level = level_of(exts)
        if start in load_time and exts <= load_time[start]:
            continue  # reported as load-time above
        if (
            dispatching
            or start in layout.clones
            or any(fnmatch.fnmatchcase(name, d.function) for d in mine)
        ):
            kind = "dispatched"
        else:
            kind = "required"
        (dispatched_ext if kind == "dispatched" else required_ext).update(exts)
        functions.append(FunctionIsa(name, start, level, tuple(sorted(exts)), kind,
                                     start in detects))  # fmt: skip
    functions.sort(key=lambda f: (-f.level, f.kind != "load-time", f.name))
    required = max((f.level for f in functions if f.kind != "dispatched"), default=BASELINE)
    if layout.note_level is not None:
        required = max(required, layout.note_level)
    return LibraryIsa(
        member=member,
        machine="EM_X86_64",
        audited=True,
        required_level=required,
        dispatched_level=max(
            (f.level for f in functions if f.kind == "dispatched"), default=BASELINE
        ),
        note_level=layout.note_level,
        required_extensions=tuple(sorted(required_ext)),
        dispatched_extensions=tuple(sorted(dispatched_ext)),
        dispatch=tuple(dispatch),
        functions=tuple(functions),
        code_bytes=code_bytes,
    )


def audit_wheel(
    path: Path,
    *,
    declarations: Sequence[Declaration] = (),
    jobs: int | None = None,
    scratch: Path | None = None,
) -> WheelIsa:
    """Audit every ELF member of the wheel at ``path``, one at a time."""
    import tempfile

    from wheelforge.wheel.elf import iter_elf_members
    from wheelforge.wheel.wheelfile import Wheel

    libraries = []
    with (
        tempfile.TemporaryDirectory(prefix="wheelforge-isa-", dir=scratch) as work,
        Wheel(path) as wheel,
    ):
        for member, extracted in iter_elf_members(wheel, Path(work)):
            libraries.append(
                audit_elf(extracted, member=member, declarations=declarations, jobs=jobs)
            )
    return WheelIsa(str(path), tuple(libraries))


# -- judging a claim ----------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """What a library's code means for a wheel that claims ``claim``."""

    severity: str  # "error", "warning" or "info"
    message: str


def claimed_level(properties: Iterable[Any] | None) -> int:
    """The level a wheel promises to run on: the lowest ``x86_64 :: level :: vN`` of its
    properties; baseline for a plain wheel, the null variant and every other variant."""
    levels = [
        int(p.value[1:])
        for p in properties or ()
        if p.namespace == "x86_64" and p.feature == "level" and re.fullmatch(r"v[1-9]", p.value)
    ]
    return min(levels, default=BASELINE)


def _listing(functions: Sequence[FunctionIsa], above: int, limit: int = 3) -> str:
    picked = [f for f in functions if f.level > above]
    extensions = sorted(
        {e for f in picked for e in f.extensions if (EXTENSION_LEVELS.get(e) or 0) > above},
        key=lambda e: (-(EXTENSION_LEVELS.get(e) or 0), e),
    )
    names = ", ".join(f.name for f in picked[:limit])
    more = f" and {len(picked) - limit} more" if len(picked) > limit else ""
    return f"{', '.join(extensions)} in {names}{more}"


def judge(library: LibraryIsa, claim: int, claimant: str) -> list[Problem]:
    """The findings for ``library`` in a wheel (``claimant``, e.g. "the plain wheel")
    that claims level ``claim``: an error when code that runs unconditionally needs more
    (load-time code, code without a CPU check, a GNU property note), information when
    only dispatched code does, a warning for extensions no level implies."""
    if not library.audited:
        return []
    member, problems = library.member, []
    promise = f"{claimant} claims {level_name(claim)}"
    load_time = library.responsible(claim, kind="load-time")
    if load_time:
        problems.append(Problem("error", (
            f"{member}: code the loader runs (init_array, .ctors, DT_INIT and what they "
            f"call) needs {level_name(max(f.level for f in load_time))} "
            f"({_listing(load_time, claim)}); {promise}: importing it on an older CPU "
            "dies with SIGILL"
        )))  # fmt: skip
    if library.note_level is not None and library.note_level > claim:
        problems.append(Problem("error", (
            f"{member}: its GNU property note (x86 ISA needed) says "
            f"{level_name(library.note_level)}, which glibc enforces when loading it; {promise}"
        )))  # fmt: skip
    required = library.responsible(claim, kind="required")
    if required:
        name = member.rsplit("/", 1)[-1]
        problems.append(Problem("error", (
            f"{member}: code without a runtime CPU check needs "
            f"{level_name(max(f.level for f in required))} ({_listing(required, claim)}); "
            f"{promise}: calling it on an older CPU dies with SIGILL (if it runs only after "
            f"a CPU check, declare it: --isa-dispatched '{name}:FUNCTION_GLOB')"
        )))  # fmt: skip
    dispatched = library.responsible(claim, kind="dispatched")
    if dispatched:
        evidence = library.dispatch[0] if library.dispatch else "declared dispatched"
        problems.append(Problem("info", (
            f"{member}: dispatched code needs {level_name(library.dispatched_level)} "
            f"({_listing(dispatched, claim)}); it runs only where the CPU has it "
            f"({evidence})"
        )))  # fmt: skip
    beyond = sorted(
        {e for f in library.functions if f.kind != "dispatched" for e in f.extensions
         if e in _BEYOND_LEVELS}
    )  # fmt: skip
    if beyond:
        users = [f.name for f in library.functions
                 if f.kind != "dispatched" and set(f.extensions) & set(beyond)]  # fmt: skip
        problems.append(Problem("warning", (
            f"{member}: uses {', '.join(beyond)}, which no x86-64 level implies, without a "
            f"runtime CPU check (in {', '.join(users[:3])}"
            f"{f' and {len(users) - 3} more' if len(users) > 3 else ''})"
        )))  # fmt: skip
    return problems


# Extensions that need a CPU feature beyond what the levels promise (TZCNT is not here:
# on older CPUs it runs as BSF, which is why compilers emit it for baseline code).
_BEYOND_LEVELS = frozenset(
    {
        "AES", "PCLMULQDQ", "SHA", "RDRAND", "RDSEED", "ADX", "SSE4A", "GFNI", "XOP",
        "FMA4", "XSAVEOPT", "XSAVEC", "AVX-VNNI", "VAES", "VPCLMULQDQ", "AVX-512VNNI",
        "AVX-512IFMA", "AVX-512VBMI", "AVX-512VBMI2", "AVX-512BITALG", "AVX-512VPOPCNTDQ",
        "AVX-512BF16", "AVX-512VP2INTERSECT", "AVX-512 (Xeon Phi)", "AVX-512FP16",
    }
)  # fmt: skip


def wheel_claim(path: Path) -> tuple[int, str]:
    """The level the wheel at ``path`` claims, and who claims it ("the plain wheel")."""
    from wheelforge.variants.labels import NULL_LABEL
    from wheelforge.wheel.wheelfile import Wheel

    with Wheel(path) as wheel:
        label = wheel.filename.label
        if label is None:
            return BASELINE, "the plain wheel"
        if label == NULL_LABEL:
            return BASELINE, "the null variant"
        meta = wheel.variant_metadata()
        properties = meta.variants.get(label, ()) if meta is not None else ()
        return claimed_level(properties), f"variant {label!r}"
