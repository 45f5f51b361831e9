"""Benchmark: tag a large native wheel, against a plain file copy and variantlib.

Run on demand (not part of the test suite)::

    .venv/bin/python benchmarks/bench_tag.py [--size-mb 256] [--repeat 3]

The input wheel is generated once and cached under ``.bench/`` (gitignored). It looks
like a real CUDA wheel: a few large ``.so`` members made of incompressible bytes
interleaved with repetitive ones (deflate keeps about 60% of them), about a thousand
small Python files, deflate-compressed members and a correct RECORD.

Every operation runs ``--repeat`` times on the same input, after one warm-up read of
the input; the best time counts. Outputs are removed (and ``os.sync()`` called)
before each run so that every run writes a fresh file. The command-line runs get a
bytecode cache (under ``.bench/pycache``) even where PYTHONDONTWRITEBYTECODE is set,
as an installed tool has. The wheelforge output is checked (valid zip, every CRC,
members byte-identical to the input's, RECORD and variant.json right) so that the
benchmark cannot silently time a broken output.

``--zip64-extra`` gives every local header of the input a zip64 extra field (as
``zipfile`` writes with ``force_zip64=True``). wheelforge does not keep it, so the
output's data offsets move against the input's, which costs the kernel copy some speed.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import random
import shlex
import shutil
import struct
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

from machine import CheckFailed, describe, require, run_command, tool  # benchmarks/machine.py

from wheelforge.tag import TagRequest, tag_wheel
from wheelforge.variants.properties import VariantProperty
from wheelforge.wheel.record import digest_to_record_hash

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / ".bench"
BIN_DIR = Path(sys.executable).parent

NAME, VERSION = "bigpkg", "1.0"
WHEEL_TAG = "cp311-cp311-manylinux_2_28_x86_64"
DIST_INFO = f"{NAME}-{VERSION}.dist-info"
PROPERTY = "nvidia :: cuda_version_lower_bound :: 12.8"
LABEL = "cu128"
MIN_SIZE_MB = 200  # what the issue asks the benchmark input to be at least

MIB = 1 << 20
BLOCK = 64 * 1024  # one block: incompressible bytes, then repetitive bytes
RANDOM_SHARE = 0.6  # of each native-library block
COMPRESSED_RATIO = 0.626  # measured: the random share plus ~4% of the repetitive share
DATE_TIME = (2025, 6, 1, 12, 0, 0)
SEED = 825
INPUT_FORMAT = 1  # bump when the generated wheel changes, so that caches are not reused

# The native libraries, as shares of the native payload (like a CUDA build of a large
# framework: one huge kernel library, a few smaller ones, the extension module).
NATIVE_MEMBERS = (
    (f"{NAME}/lib/lib{NAME}_cuda.so", 0.55),
    (f"{NAME}/lib/lib{NAME}_cublas_kernels.so", 0.24),
    (f"{NAME}/lib/lib{NAME}_flash_attention.so", 0.12),
    (f"{NAME}/lib/lib{NAME}_cpu.so", 0.06),
    (f"{NAME}/_C.cpython-311-x86_64-linux-gnu.so", 0.03),
)
PYTHON_FILES = 1000

VARIANT_PYPROJECT = """\
[variant.default-priorities]
namespace = ["nvidia"]

[variant.providers.nvidia]
requires = ["nvidia-variant-provider"]
plugin-api = "nvidia_variant_provider.plugin:NvidiaVariantPlugin"
"""


# --- the input wheel -------------------------------------------------------------------


def _repetitive_segments(rng: random.Random, count: int, size: int) -> list[bytes]:
    """Byte runs that deflate well: code-like motifs repeated with variations, and
    zero padding, as in the non-random parts of a fat binary."""
    motifs = [rng.randbytes(rng.choice((16, 32, 48, 64))) for _ in range(24)]
    segments = []
    for _ in range(count):
        parts: list[bytes] = []
        length = 0
        while length < size:
            if rng.random() < 0.08:
                part = bytes(rng.choice((64, 256, 1024)))
            else:
                part = rng.choice(motifs) * rng.randint(1, 6)
            parts.append(part)
            length += len(part)
        segments.append(b"".join(parts)[:size])
    return segments


def _native_chunks(rng: random.Random, size: int, segments: list[bytes]) -> Iterator[bytes]:
    """``size`` bytes of a native library, in chunks of ``BLOCK``."""
    random_len = int(BLOCK * RANDOM_SHARE)
    while size > 0:
        block = rng.randbytes(random_len) + rng.choice(segments)
        yield block[:size]
        size -= len(block)


def _python_source(rng: random.Random, index: int) -> bytes:
    words = ["tensor", "device", "dtype", "kernel", "stream", "grad", "shape", "module"]
    lines = [f'"""Module {index} of {NAME}."""', "", "from __future__ import annotations", ""]
    for n in range(rng.randint(5, 60)):
        a, b = rng.choice(words), rng.choice(words)
        lines += [
            f"def {a}_{b}_{n}(x, {b}=None):",
            f'    """Return the {a} of x along {b}."""',
            f"    if {b} is None:",
            f"        {b} = x.{a}",
            f"    return x.to({b}) + {rng.randint(0, 1 << 16)}",
            "",
        ]
    return "\n".join(lines).encode()


def _write_member(
    zf: zipfile.ZipFile,
    name: str,
    size: int,
    chunks: Iterator[bytes],
    *,
    mode: int = 0o644,
    zip64_extra: bool = False,
) -> tuple[str, str, int]:
    info = zipfile.ZipInfo(name, date_time=DATE_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = (0o100000 | mode) << 16
    info.file_size = size  # as ZipFile.write sets it: zip64 headers only when needed
    digest = hashlib.sha256()
    written = 0
    with zf.open(info, "w", force_zip64=zip64_extra) as out:
        for chunk in chunks:
            digest.update(chunk)
            written += len(chunk)
            out.write(chunk)
    require(written == size, (name, written, size))
    return name, digest_to_record_hash("sha256", digest.digest()), size


def generate_wheel(path: Path, size_mb: int, *, zip64_extra: bool = False) -> None:
    """Write the benchmark's input wheel to ``path`` (atomically).

    With ``zip64_extra``, every local header carries a zip64 extra field, as zipfile
    writes with ``force_zip64=True`` (and as streaming zip writers do)."""
    rng = random.Random(SEED)
    segments = _repetitive_segments(rng, 64, BLOCK - int(BLOCK * RANDOM_SHARE))
    native_total = int(size_mb * MIB / COMPRESSED_RATIO)
    record: list[tuple[str, str, int]] = []
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:

        def add(name: str, data: bytes) -> None:
            record.append(_write_member(zf, name, len(data), iter([data]), zip64_extra=zip64_extra))

        add(f"{NAME}/__init__.py", b'"""bigpkg: a benchmark wheel."""\n__version__ = "1.0"\n')
        for name, share in NATIVE_MEMBERS:
            size = int(native_total * share)
            chunks = _native_chunks(rng, size, segments)
            record.append(
                _write_member(zf, name, size, chunks, mode=0o755, zip64_extra=zip64_extra)
            )
        for i in range(PYTHON_FILES):
            add(f"{NAME}/nn/modules/m{i // 100:02d}/mod_{i:04d}.py", _python_source(rng, i))
        add(
            f"{DIST_INFO}/METADATA",
            f"Metadata-Version: 2.1\nName: {NAME}\nVersion: {VERSION}\n"
            "Requires-Python: >=3.11\nRequires-Dist: numpy\n\nA benchmark wheel.\n".encode(),
        )
        add(
            f"{DIST_INFO}/WHEEL",
            f"Wheel-Version: 1.0\nGenerator: bench_tag\nRoot-Is-Purelib: false\n"
            f"Tag: {WHEEL_TAG}\n".encode(),
        )
        add(f"{DIST_INFO}/top_level.txt", f"{NAME}\n".encode())
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerows(record)
        writer.writerow([f"{DIST_INFO}/RECORD", "", ""])
        info = zipfile.ZipInfo(f"{DIST_INFO}/RECORD", date_time=DATE_TIME)
        info.compress_type = zipfile.ZIP_DEFLATED
        info.external_attr = 0o100644 << 16
        zf.writestr(info, out.getvalue())
    os.replace(tmp, path)


def input_wheel(size_mb: int, *, zip64_extra: bool) -> Path:
    variant = f"input-v{INPUT_FORMAT}-{size_mb}mb" + ("-zip64-extra" if zip64_extra else "")
    path = BENCH_DIR / variant / f"{NAME}-{VERSION}-{WHEEL_TAG}.whl"
    if path.exists():
        print(f"input:   {path.relative_to(ROOT)} (cached)")
    else:
        print(f"input:   generating {path.relative_to(ROOT)} ...", flush=True)
        start = time.perf_counter()
        generate_wheel(path, size_mb, zip64_extra=zip64_extra)
        print(f"         generated in {time.perf_counter() - start:.1f} s")
    return path


# --- sanity checks ---------------------------------------------------------------------


def _raw_bytes(path: Path, info: zipfile.ZipInfo) -> bytes:
    """A member's stored (compressed) bytes, found from its local header."""
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        header = f.read(30)
        if header[:4] != b"PK\x03\x04":
            raise CheckFailed(f"{path}: bad local header for {info.filename}")
        name_len, extra_len = struct.unpack("<2H", header[26:30])
        f.seek(info.header_offset + 30 + name_len + extra_len)
        return f.read(info.compress_size)


def _record(zf: zipfile.ZipFile) -> dict[str, tuple[str, str]]:
    text = zf.read(f"{DIST_INFO}/RECORD").decode()
    return {row[0]: (row[1], row[2]) for row in csv.reader(io.StringIO(text)) if row}


def check_tagged(source: Path, output: Path) -> None:
    """Fail unless ``output`` is ``source`` tagged: every CRC right, every other member
    byte-identical (raw and decompressed), RECORD and variant.json right."""
    require(output.name == f"{NAME}-{VERSION}-{WHEEL_TAG}-{LABEL}.whl", output.name)
    variant_json = f"{DIST_INFO}/variant.json"
    record_name = f"{DIST_INFO}/RECORD"
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(output) as zout:
        bad = zout.testzip()  # decompresses every member and checks its CRC
        require(bad is None, f"{output}: member {bad} fails its CRC check")
        expected_names = [n for n in zin.namelist() if n != variant_json]
        expected_names.insert(expected_names.index(record_name), variant_json)
        require(zout.namelist() == expected_names, "member names or order differ")

        infos_in = {i.filename: i for i in zin.infolist()}
        copied = [i for i in zout.infolist() if i.filename not in (record_name, variant_json)]
        for info in copied:
            orig = infos_in[info.filename]
            same = (info.CRC, info.compress_size, info.file_size, info.compress_type) == (
                orig.CRC, orig.compress_size, orig.file_size, orig.compress_type,
            )  # fmt: skip
            require(same, f"{info.filename}: CRC, sizes or method differ from the input")
            require(info.external_attr == orig.external_attr, f"{info.filename}: mode differs")
        largest = sorted(copied, key=lambda i: i.compress_size)[-3:]
        sample = [*largest, *random.Random(SEED).sample(copied, 10)]
        for info in sample:
            name = info.filename
            require(_raw_bytes(output, info) == _raw_bytes(source, infos_in[name]), name)
            require(zout.read(name) == zin.read(name), f"{name}: content differs")

        record_in, record_out = _record(zin), _record(zout)
        data = zout.read(variant_json)
        expected_entry = (
            digest_to_record_hash("sha256", hashlib.sha256(data).digest()),
            str(len(data)),
        )
        require(record_out.pop(variant_json) == expected_entry, "variant.json's RECORD entry")
        require(record_out == record_in, "RECORD entries of copied members changed")
        variants = json.loads(data)["variants"]
        require(variants == {LABEL: {"nvidia": {"cuda_version_lower_bound": ["12.8"]}}}, variants)


def check_variantlib(output: Path) -> None:
    require(output.name == f"{NAME}-{VERSION}-{WHEEL_TAG}-{LABEL}.whl", output.name)
    with zipfile.ZipFile(output) as zf:
        require(f"{DIST_INFO}/variant.json" in zf.namelist(), "variantlib wrote no variant.json")


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(4 * MIB):
            digest.update(chunk)
    return digest.hexdigest()


# --- timing ----------------------------------------------------------------------------


def _clean(directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    os.sync()  # no write-back of an earlier run's output during this one


def best_of(repeat: int, out_dir: Path, action: Callable[[Path], object]) -> float:
    """The best wall time of ``repeat`` runs, each into a freshly emptied ``out_dir``
    (the last run's output is left there for the checks)."""
    times = []
    for _ in range(repeat):
        _clean(out_dir)
        start = time.perf_counter()
        action(out_dir)
        times.append(time.perf_counter() - start)
    return min(times)


def warm(path: Path) -> None:
    """Read the input once so that every timed run finds it in the page cache."""
    with open(path, "rb") as f:
        while f.read(8 * MIB):
            pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--size-mb", type=int, default=256, help="input wheel size (MiB)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per operation (best)")
    parser.add_argument(
        "--zip64-extra",
        action="store_true",
        help="give every local header of the input a zip64 extra field (zipfile's "
        "force_zip64=True); wheelforge drops it, which shifts the output's data offsets",
    )
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat: expected at least 1")

    command = shlex.join(
        [os.path.relpath(sys.executable), os.path.relpath(__file__), *sys.argv[1:]]
    )
    print(f"command: {command}")
    print(f"machine: {describe(BENCH_DIR)}")
    print("CLI runs: bytecode cached under .bench/pycache (PYTHONDONTWRITEBYTECODE unset)")
    source = input_wheel(args.size_mb, zip64_extra=args.zip64_extra)
    size = source.stat().st_size
    with zipfile.ZipFile(source) as zf:
        infos = zf.infolist()
    unpacked = sum(i.file_size for i in infos)
    print(
        f"input:   {size / MIB:.1f} MiB ({size} bytes), {len(infos)} members, "
        f"{unpacked / MIB:.1f} MiB unpacked (deflate keeps {size / unpacked:.0%})"
    )
    if size < MIN_SIZE_MB * MIB:
        print(f"warning: the input is under {MIN_SIZE_MB} MiB; the issue's targets need more")

    wheelforge, variantlib = tool("wheelforge"), tool("variantlib")
    config = BENCH_DIR / "variant-pyproject.toml"
    config.write_text(VARIANT_PYPROJECT)
    request = TagRequest(properties=frozenset({VariantProperty.parse(PROPERTY)}), label=LABEL)
    verify_request = TagRequest(
        properties=frozenset({VariantProperty.parse(PROPERTY)}), label=LABEL, verify=True
    )
    tag_argv = [wheelforge, "tag", str(source), "-p", PROPERTY, "--label", LABEL, "-o"]
    variantlib_argv = [
        variantlib, "make-variant", "-f", str(source), "-p", PROPERTY,
        "--variant-label", LABEL, "--skip-plugin-validation", "--no-isolation",
        "--pyproject-toml", str(config), "-o",
    ]  # fmt: skip
    operations: dict[str, tuple[str, Callable[[Path], object]]] = {
        "copy": ("copy (`shutil.copyfile`)", lambda d: shutil.copyfile(source, d / source.name)),
        "tag": ("wheelforge tag (in-process `tag_wheel`)", lambda d: tag_wheel(source, d, request)),
        "tag-cli": (
            "wheelforge tag (CLI subprocess)",
            lambda d: run_command([*tag_argv, str(d)], BENCH_DIR),
        ),
        "tag-verify": (
            "wheelforge tag, `verify=True` (in-process)",
            lambda d: tag_wheel(source, d, verify_request),
        ),
        "variantlib": (
            "variantlib make-variant (CLI subprocess)",
            lambda d: run_command([*variantlib_argv, str(d)], BENCH_DIR),
        ),
    }
    out = BENCH_DIR / "out"
    dirs = {key: out / key for key in operations}

    warm(source)
    run_command([wheelforge, "tag", "--help"], BENCH_DIR)  # fill the bytecode cache before timing
    run_command([variantlib, "make-variant", "--help"], BENCH_DIR)
    print(f"timing:  best of {args.repeat} runs each ...", flush=True)
    seconds = {
        key: best_of(args.repeat, dirs[key], action) for key, (_, action) in operations.items()
    }

    # The outputs of the last runs must be right, or the numbers mean nothing.
    [tagged] = dirs["tag"].iterdir()
    check_tagged(source, tagged)
    for key in ("tag-cli", "tag-verify"):
        [other] = dirs[key].iterdir()
        require(_sha256_file(other) == _sha256_file(tagged), f"{key}: output differs from tag's")
    [variantlib_out] = dirs["variantlib"].iterdir()
    check_variantlib(variantlib_out)
    print("checked: wheelforge outputs valid and identical; variantlib output has variant.json")
    shutil.rmtree(out)

    copy, tag_s, cli_s, vl_s = (seconds[k] for k in ("copy", "tag", "tag-cli", "variantlib"))
    print()
    print(f"| operation | seconds (best of {args.repeat}) | ratio vs copy |")
    print("|---|---:|---:|")
    for key, (label, _) in operations.items():
        print(f"| {label} | {seconds[key]:.3f} | {seconds[key] / copy:.2f}x |")
    print()
    print(
        f"variantlib / wheelforge tag: {vl_s / cli_s:.1f}x (CLI vs CLI), "
        f"{vl_s / tag_s:.1f}x (variantlib CLI vs in-process tag)"
    )
    print()
    verdict = {True: "met", False: "MISSED"}
    print(
        f"target: tag within 2x of copy: in-process {tag_s / copy:.2f}x "
        f"({verdict[tag_s <= 2 * copy]}), CLI {cli_s / copy:.2f}x ({verdict[cli_s <= 2 * copy]})"
    )
    print(
        f"target: tag at least 10x faster than variantlib: CLI vs CLI {vl_s / cli_s:.1f}x "
        f"({verdict[vl_s >= 10 * cli_s]})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
