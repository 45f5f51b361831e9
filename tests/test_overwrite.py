"""Outputs never replace a different existing file unless --force: tag, untag and
compress -o keep an identical file (idempotent), refuse a different one with one
``error:`` line naming it (exit 2), and replace it with --force."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import build_plain_wheel

Cli = Callable[..., tuple[int, str, str]]
CU128 = "nvidia :: cuda_version_lower_bound :: 12.8"
LABELLED = "demo-1.0-py3-none-any-cu128.whl"
PLAIN = "demo-1.0-py3-none-any.whl"


def _wheel(directory: Path, content: bytes) -> Path:
    directory.mkdir()
    return build_plain_wheel(directory, files={"demo/__init__.py": content})


def _plain(tmp_path: Path) -> Path:
    return _wheel(tmp_path / "in", b"X = 1\n")


def _refused(result: tuple[int, str, str], target: Path) -> None:
    code, out, err = result
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert str(target) in lines[0] and "different content" in lines[0] and "--force" in lines[0]


def _no_leftovers(directory: Path) -> None:
    assert not [p.name for p in directory.iterdir() if p.name.startswith(".")]


def test_tag_keeps_an_identical_output_refuses_another_and_force_replaces(
    tmp_path: Path, cli: Cli
) -> None:
    plain, out = _plain(tmp_path), tmp_path / "out"
    assert cli("tag", plain, "-p", CU128, "--label", "cu128", "-o", out)[0] == 0
    target = out / LABELLED
    made = target.read_bytes()
    assert cli("tag", plain, "-p", CU128, "--label", "cu128", "-o", out)[0] == 0  # identical
    target.write_bytes(b"someone else's wheel")
    _refused(cli("tag", plain, "-p", CU128, "--label", "cu128", "-o", out), target)
    assert target.read_bytes() == b"someone else's wheel"
    _no_leftovers(out)
    assert cli("tag", plain, "-p", CU128, "--label", "cu128", "-o", out, "--force")[0] == 0
    assert target.read_bytes() == made


def test_untag_refuses_to_replace_a_different_plain_wheel(tmp_path: Path, cli: Cli) -> None:
    plain = _plain(tmp_path)
    cli("tag", plain, "-p", CU128, "--label", "cu128", "-o", tmp_path / "tagged")
    tagged, out = tmp_path / "tagged" / LABELLED, tmp_path / "out"
    assert cli("untag", tagged, "-o", out)[0] == 0
    target = out / PLAIN
    made = target.read_bytes()
    assert cli("untag", tagged, "-o", out)[0] == 0  # identical: fine
    assert target.read_bytes() == made
    other = _wheel(tmp_path / "other", b"X = 2\n")
    target.write_bytes(other.read_bytes())
    _refused(cli("untag", tagged, "-o", out), target)
    assert target.read_bytes() == other.read_bytes()
    _no_leftovers(out)
    assert cli("untag", tagged, "-o", out, "--force")[0] == 0
    assert target.read_bytes() == made


def test_compress_out_refuses_to_replace_a_different_file(tmp_path: Path, cli: Cli) -> None:
    plain = _plain(tmp_path)
    cli("tag", plain, "-p", CU128, "--label", "cu128", "-o", tmp_path / "tagged")
    tagged, out = tmp_path / "tagged" / LABELLED, tmp_path / "out"
    assert cli("compress", tagged, "--codec", "zstd", "-o", out)[0] == 0
    target = out / LABELLED
    made = target.read_bytes()
    assert cli("compress", tagged, "--codec", "zstd", "-o", out)[0] == 0  # identical: fine
    target.write_bytes(b"not this")
    _refused(cli("compress", tagged, "--codec", "zstd", "-o", out), target)
    assert target.read_bytes() == b"not this"
    _no_leftovers(out)
    assert cli("compress", tagged, "--codec", "zstd", "-o", out, "--force")[0] == 0
    assert target.read_bytes() == made


@pytest.mark.parametrize("kind", ["directory", "symlink"])
def test_an_output_path_that_is_not_a_regular_file_is_refused(
    tmp_path: Path, cli: Cli, kind: str
) -> None:
    plain, out = _plain(tmp_path), tmp_path / "out"
    out.mkdir()
    target = out / LABELLED
    if kind == "directory":
        target.mkdir()
    else:
        elsewhere = tmp_path / "elsewhere.whl"
        elsewhere.write_bytes(b"precious")
        target.symlink_to(elsewhere)
    code, _out, err = cli("tag", plain, "-p", CU128, "--label", "cu128", "-o", out)
    assert code == 2 and err.startswith(f"error: {target}: exists and is not a regular file")
    if kind == "symlink":
        assert target.is_symlink() and (tmp_path / "elsewhere.whl").read_bytes() == b"precious"
    _no_leftovers(out)
