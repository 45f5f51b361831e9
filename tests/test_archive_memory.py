"""Bounded memory on bombs: every reading command, in its own process, stays under
256 MiB of peak RSS on a 100 KB wheel whose zstd member inflates to 3 GiB, a 1 MB
wheel whose METADATA inflates to 1 GiB, and members whose declared size lies."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.hostile_zips import (
    DEFLATED,
    ZSTD,
    Entry,
    GiB,
    deflate_zeros,
    deflated,
    record_hash,
    wheel_entries,
    write_zip,
    zstd_zeros,
)

LIMIT_MIB = 256
DIST_INFO = "demo-1.0.dist-info"
CPU = "x86_64 :: level :: v3"

# Runs the command in a child and prints the child's peak RSS (KiB) as the last line:
# this process's RUSAGE_CHILDREN holds that one command only.
_MEASURE = """
import resource, subprocess, sys
done = subprocess.run(sys.argv[1:], capture_output=True, text=True, timeout=240)
sys.stdout.write(done.stdout)
sys.stderr.write(done.stderr)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
sys.exit(done.returncode)
"""


def measured(*args: str | Path, cwd: Path) -> tuple[int, str, str, float]:
    """``(exit code, stdout, stderr, peak RSS in MiB)`` of ``wheelforge ARGS``."""
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, sys.executable, "-m", "wheelforge", *map(str, args)],
        cwd=cwd, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    *out, peak = done.stdout.splitlines()
    return done.returncode, "\n".join(out), done.stderr, int(peak) / 1024


def bomb(tmp_path: Path, kind: str) -> Path:
    dist = tmp_path / "dist"
    dist.mkdir()
    path = dist / "demo-1.0-py3-none-any.whl"
    if kind.startswith("zstd-3GiB"):  # honest sizes, wrong CRC and hash: all 3 GiB inflate
        window_log = 27 if kind.endswith("128MiB-window") else 0
        member = Entry("demo/blob.bin", zstd_zeros(3 * GiB, window_log), ZSTD, 0, 3 * GiB)
        lines = {member.name: f"{member.name},sha256=AAAA,{3 * GiB}"}
        entries = wheel_entries([member], record_lines=lines)
    elif kind == "METADATA-1GiB":  # refused by its declared size, before inflating
        metadata = Entry(f"{DIST_INFO}/METADATA", deflate_zeros(GiB), DEFLATED, 0, GiB)
        lines = {metadata.name: f"{metadata.name},sha256=AAAA,{GiB}"}
        entries = wheel_entries(metadata=metadata, record_lines=lines)
    elif kind == "size-lies-zstd":  # says 100 bytes, inflates to 3 GiB
        member = Entry("demo/blob.bin", zstd_zeros(3 * GiB), ZSTD, 0, 100)
        entries = wheel_entries([member], record_lines={member.name: f"{member.name},,100"})
    else:  # METADATA says 1000 bytes, inflates to 1 GiB
        assert kind == "METADATA-size-lies"
        metadata = Entry(f"{DIST_INFO}/METADATA", deflate_zeros(GiB), DEFLATED, 0, 1000)
        entries = wheel_entries(
            metadata=metadata, record_lines={metadata.name: f"{metadata.name},,1000"}
        )
    return write_zip(path, entries)


KINDS = [
    "zstd-3GiB",
    "zstd-3GiB-128MiB-window",
    "METADATA-1GiB",
    "size-lies-zstd",
    "METADATA-size-lies",
]
EXPECTED = {
    "zstd-3GiB": "demo/blob.bin",
    "zstd-3GiB-128MiB-window": "demo/blob.bin",
    "METADATA-1GiB": "over the limit of 16777216 bytes for metadata",
    "size-lies-zstd": "inflates past its declared size of 100 bytes",
    "METADATA-size-lies": "inflates past its declared size of 1000 bytes",
}


@pytest.mark.parametrize("kind", KINDS)
def test_bombs_are_refused_in_bounded_memory(tmp_path: Path, kind: str) -> None:
    wheel = bomb(tmp_path, kind)
    assert wheel.stat().st_size < 1_200_000
    expected = EXPECTED[kind]
    peaks = {}
    commands: dict[str, list[str | Path]] = {
        "inspect": ["inspect", wheel],
        "tag --verify": ["tag", "--verify", wheel, "-p", CPU, "-o", tmp_path / "out"],
    }
    if kind.startswith("METADATA"):  # the payload bombs hold a fine METADATA: index takes it
        commands["index --no-check"] = ["index", "--no-check", wheel.parent, "--out", "site"]
    for name, args in commands.items():
        got, _, err, peak = measured(*args, cwd=tmp_path)
        peaks[name] = peak
        assert got == 2, (name, err)
        assert "Traceback" not in err
        lines = [line for line in err.splitlines() if line.startswith("error: ")]
        assert len(lines) == 1, (name, err)
        assert wheel.name in lines[0] and expected in lines[0], (name, lines[0])
    got, out, err, peak = measured("check", "--json", wheel.parent, cwd=tmp_path)
    peaks["check"] = peak
    assert got == 1, err
    errors = [f for f in json.loads(out)["findings"] if f["severity"] == "error"]
    assert errors and all(f["file"] == wheel.name for f in errors), errors
    assert any(expected in f["message"] for f in errors), errors
    assert not list(tmp_path.glob("out/*")) and not list(tmp_path.glob("site/files/**/*.metadata"))
    print(kind, {name: f"{peak:.0f} MiB" for name, peak in peaks.items()})
    assert max(peaks.values()) < LIMIT_MIB, peaks


def test_the_metadata_cap_can_be_raised(tmp_path: Path) -> None:
    """A 1 GiB METADATA with --max-metadata-mb 2048 is read (it is all zeros, so it is
    not valid METADATA): the option is honoured, and memory is what the user asked."""
    wheel = bomb(tmp_path, "METADATA-1GiB")
    got, _, err, _ = measured(
        "--max-metadata-mb", "2048", "inspect", "--no-verify", wheel, cwd=tmp_path
    )
    assert got == 0, err
    got, _, err, _ = measured("--max-metadata-mb", "nan", "inspect", wheel, cwd=tmp_path)
    assert got == 2 and err.startswith("error: --max-metadata-mb"), err


def _near_cap(tmp_path: Path, kind: str) -> Path:
    """A wheel whose metadata is just under its cap, shaped to cost the most memory
    once parsed (as the readers would without their limits)."""
    dist = tmp_path / "dist"
    dist.mkdir()
    size = (16 << 20) - 4096
    head = "Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n"
    if kind == "RECORD-short-lines":  # millions of entries: refused past the member count
        entries = wheel_entries()
        entries[-1] = deflated(entries[-1].name, b"a,,\n" * (size // 4))
        return write_zip(dist / "demo-1.0-py3-none-any.whl", entries)
    if kind == "variant.json-empty-lists":  # 1 MiB (a sixteenth of the cap) of []
        data = b"[" + b"[]," * ((1 << 20) // 3 - 2) + b"[]]"
        name = f"{DIST_INFO}/variant.json"
        entries = wheel_entries(
            [deflated("demo/__init__.py", b"VALUE = 1\n"), deflated(name, data)],
            record_lines={name: f"{name},{record_hash(data)},{len(data)}"},
        )
        return write_zip(dist / "demo-1.0-py3-none-any-v3.whl", entries)
    text = {
        "METADATA-header-lines": head + "Classifier: a\n" * (size // 14) + "\nbody\n",
        "METADATA-rst-sections": head + "\n" + "a\n=\n\n" * (size // 5),
        "METADATA-blank-lines": head + "\n" + "\n" * size,
    }[kind]
    data = text.encode()
    name = f"{DIST_INFO}/METADATA"
    entries = wheel_entries(
        metadata=deflated(name, data),
        record_lines={name: f"{name},{record_hash(data)},{len(data)}"},
    )
    return write_zip(dist / "demo-1.0-py3-none-any.whl", entries)


@pytest.mark.parametrize(
    "kind",
    [
        "RECORD-short-lines",
        "variant.json-empty-lists",
        "METADATA-header-lines",
        "METADATA-rst-sections",
        "METADATA-blank-lines",
    ],
)
def test_metadata_just_under_the_cap(tmp_path: Path, kind: str) -> None:
    """Parsed, 16 MiB of metadata could take gigabytes (the email parser keeps an object
    a line, docutils a node tree, csv and json an object a value): each is refused,
    kept out of the parser, or not rendered."""
    wheel = _near_cap(tmp_path, kind)
    peaks = {}
    commands: dict[str, list[str | Path]] = {
        "check": ["check", "--json", wheel.parent],
        "index --no-check": ["index", "--no-check", wheel.parent, "--out", "site"],
        "inspect": ["inspect", wheel],
    }
    for name, args in commands.items():
        got, _, err, peaks[name] = measured(*args, cwd=tmp_path)
        assert "Traceback" not in err and got in (0, 1, 2), (name, err)
    print(kind, {name: f"{peak:.0f} MiB" for name, peak in peaks.items()})
    assert max(peaks.values()) < LIMIT_MIB, peaks
