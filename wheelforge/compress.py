"""The compress stage: recompress a wheel's payload (zstd or deflate).

``.dist-info`` members always stay deflate, so an installer that cannot read zstd
fails cleanly before unpacking anything. A wheel that pip on CPython < 3.14 could
pick (one without a variant label) is never made zstd here.
"""

from __future__ import annotations

from pathlib import Path

from wheelforge.errors import InvalidInput
from wheelforge.fsutil import atomic_path
from wheelforge.wheel.archive import DEFLATED, ZSTD, ZipWriter
from wheelforge.wheel.wheelfile import Wheel

CODECS = {"deflate": DEFLATED, "zstd": ZSTD}


def recompress(path: Path, output: Path, codec: str, *, level: int | None = None) -> Path:
    """Write ``path`` to ``output`` with its payload members in ``codec``."""
    method = CODECS[codec]
    with Wheel(path) as wheel:
        if method == ZSTD and wheel.filename.label is None:
            raise InvalidInput(
                f"{path}: a wheel without a variant label must stay deflate (pip on "
                "CPython < 3.14 cannot read zstd members)"
            )
        prefix = f"{wheel.dist_info}/"
        with atomic_path(output) as tmp, ZipWriter(tmp) as writer:
            for member in wheel.zip.members:
                wanted = DEFLATED if member.name.startswith(prefix) else method
                if member.method == wanted or member.is_dir:
                    writer.copy(wheel.zip, member)
                    continue
                writer.add(
                    member.name,
                    wheel.zip.read(member),
                    dos_time=member.dos_time,
                    dos_date=member.dos_date,
                    external_attr=member.external_attr,
                    method=wanted,
                    level=level,
                )
    return output
