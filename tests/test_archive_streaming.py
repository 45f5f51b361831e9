"""The reader inflates streaming and stops at the declared size; honest archives that
other tools write (data descriptors, zip64) still read; the metadata limit is one
setting for every command."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import build_plain_wheel
from tests.hostile_zips import (
    DEFLATED,
    ZSTD,
    GiB,
    deflate_zeros,
    deflated,
    stored,
    write_zip,
    zstd_zeros,
)
from wheelforge.errors import InvalidInput
from wheelforge.inspection import inspect_wheel
from wheelforge.publish.check import check_release_set
from wheelforge.wheel.archive import (
    DEFAULT_METADATA_CAP,
    METADATA_CAP_ENV,
    Member,
    ZipReader,
    inflate,
    metadata_cap,
)
from wheelforge.wheel.wheelfile import Wheel


def _member(method: int, size: int) -> Member:
    return Member("demo/blob.bin", method, 0, 0, 0, size, 0, 0, 0, 0)


def _counted(data: bytes, read: list[int], chunk: int = 4096) -> Iterator[bytes]:
    for start in range(0, len(data), chunk):
        read.append(chunk)
        yield data[start : start + chunk]


@pytest.mark.parametrize(
    ("method", "bomb"),
    [(DEFLATED, lambda: deflate_zeros(GiB)), (ZSTD, lambda: zstd_zeros(GiB))],
)
def test_a_lying_member_stops_just_past_its_declared_size(
    method: int, bomb: Callable[[], bytes]
) -> None:
    data = bomb()
    read: list[int] = []
    pieces = []
    with pytest.raises(InvalidInput, match="inflates past its declared size of 3000000 bytes"):
        for piece in inflate(_counted(data, read), _member(method, 3_000_000), "w.whl"):
            assert len(piece) <= 1 << 20
            pieces.append(len(piece))
    assert sum(pieces) <= 3_000_000  # nothing past the declared size is handed out
    assert len(read) <= 2  # of hundreds of 4 KiB chunks: the rest is never read


def test_a_short_member_fails_at_the_end() -> None:
    data = deflate_zeros(4 << 20)
    with pytest.raises(InvalidInput, match="inflates to 4194304 bytes, its declared size is"):
        b"".join(inflate([data], _member(DEFLATED, 5 << 20), "w.whl"))


def test_pieces_are_bounded_whatever_the_input_chunks() -> None:
    """One chunk of deflate that holds 64 MiB comes out in pieces of at most 1 MiB."""
    pieces = inflate([deflate_zeros(64 << 20)], _member(DEFLATED, 64 << 20), "w.whl")
    sizes = [len(piece) for piece in _pieces_until_crc(pieces)]
    assert max(sizes) <= 1 << 20 and sum(sizes) == 64 << 20


def _pieces_until_crc(pieces: Iterator[bytes]) -> Iterator[bytes]:
    try:
        yield from pieces
    except InvalidInput as err:  # the CRC (0 here) is checked after the last piece
        assert "CRC" in err.message


def test_data_descriptor_wheels_read(tmp_path: Path) -> None:
    """zipfile writing to a pipe puts CRC and sizes after the data (flag 0x08)."""
    plain = build_plain_wheel(tmp_path, files={"demo/__init__.py": b"VALUE = 1\n"})
    buffer = io.BytesIO()

    class Unseekable(io.RawIOBase):
        def writable(self) -> bool:
            return True

        def write(self, data: bytes) -> int:  # type: ignore[override]
            return buffer.write(data)

    with zipfile.ZipFile(plain) as source, zipfile.ZipFile(Unseekable(), "w") as target:
        for info in source.infolist():
            with source.open(info) as src, target.open(info.filename, "w") as dst:
                dst.write(src.read())
    dist = tmp_path / "dist"
    dist.mkdir()
    wheel = dist / plain.name
    wheel.write_bytes(buffer.getvalue())
    with Wheel(wheel) as opened:
        assert all(m.flags & 0x08 for m in opened.zip.members)
    assert inspect_wheel(wheel).problem is None
    assert not check_release_set(dist).errors


def test_the_metadata_cap_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert metadata_cap() == DEFAULT_METADATA_CAP == 16 << 20
    monkeypatch.setenv(METADATA_CAP_ENV, "0.5")
    assert metadata_cap() == 1 << 19
    wheel = build_plain_wheel(tmp_path, files={"demo/data.txt": b"x"}, description="y" * (1 << 20))
    with pytest.raises(InvalidInput, match=r"METADATA' holds \d+ bytes, over the limit of 524288"):
        Wheel(wheel)
    for bad in ("0", "-1", "nan", "inf", "lots", "1e300"):
        monkeypatch.setenv(METADATA_CAP_ENV, bad)
        with pytest.raises(InvalidInput, match="expected a positive number of MiB"):
            metadata_cap()


def test_head_gives_the_first_bytes_inflating_little(tmp_path: Path) -> None:
    """``head`` (how ELF members are told apart) reads a few KiB of a large member, and
    a member that inflates past its declared size still fails."""
    blob = b"\x7fELF" + bytes(range(256)) * 40_000  # 10 MB
    path = write_zip(
        tmp_path / "a.zip",
        [
            stored("s.bin", blob),
            deflated("d.bin", blob),
            deflated("short.bin", b"ab"),
            deflated("liar.bin", bytes(64 << 10), size=2),
        ],
    )
    with ZipReader(path) as reader:
        members = {member.name: member for member in reader.members}
        read: list[int] = []
        real_read_at = reader._read_at

        def counting_read_at(offset: int, size: int) -> bytes:
            read.append(size)
            return real_read_at(offset, size)

        reader._read_at = counting_read_at  # type: ignore[method-assign]
        for name in ("s.bin", "d.bin"):
            read.clear()
            assert reader.head(members[name], 4) == b"\x7fELF"
            assert sum(read) < 64 << 10, (name, read)  # of 10 MB
        assert reader.head(members["short.bin"], 4) == b"ab"
        with pytest.raises(InvalidInput, match="inflates past its declared size of 2 bytes"):
            reader.head(members["liar.bin"], 4)
