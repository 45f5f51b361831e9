"""Wheel filenames, with the optional variant label as a sixth (or seventh) part."""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from packaging.utils import InvalidWheelFilename, parse_wheel_filename

from wheelforge.errors import InvalidInput
from wheelforge.variants.labels import validate_label

if TYPE_CHECKING:
    from packaging.tags import Tag


@dataclass(frozen=True)
class WheelFilename:
    name: str  # as spelled in the filename
    version: str
    build: str | None
    python: str
    abi: str
    platform: str
    label: str | None = None

    @classmethod
    def parse(cls, filename: str) -> WheelFilename:
        if not filename.endswith(".whl"):
            raise InvalidInput(f"{filename}: not a wheel filename (expected a '.whl' name)")
        if any(char in "/\\" or ord(char) < 0x20 or ord(char) == 0x7F for char in filename):
            raise InvalidInput(
                f"{filename!r}: not a wheel filename ('/', '\\' or a control character)"
            )
        parts = filename[: -len(".whl")].split("-")
        build = label = None
        if len(parts) == 7:
            build, label = parts[2], parts[6]
            del parts[6], parts[2]
        elif len(parts) == 6:
            if parts[2][:1].isdigit():
                build = parts.pop(2)
            else:
                label = parts.pop()
        if len(parts) != 5:
            raise InvalidInput(
                f"{filename}: expected {{name}}-{{version}}(-{{build}})?-{{python}}-{{abi}}"
                "-{platform}(-{label})?.whl"
            )
        if label is not None:
            try:
                validate_label(label)
            except InvalidInput as err:
                raise InvalidInput(f"{filename}: {err.message}") from None
        wheel = cls(parts[0], parts[1], build, parts[2], parts[3], parts[4], label)
        try:
            parse_wheel_filename(wheel.plain().filename)
        except InvalidWheelFilename as err:
            raise InvalidInput(f"{filename}: {err}") from None
        return wheel

    @property
    def filename(self) -> str:
        parts = [self.name, self.version]
        if self.build is not None:
            parts.append(self.build)
        parts += [self.python, self.abi, self.platform]
        if self.label is not None:
            parts.append(self.label)
        return "-".join(parts) + ".whl"

    def __str__(self) -> str:
        return self.filename

    def plain(self) -> WheelFilename:
        return replace(self, label=None)

    def with_label(self, label: str | None) -> WheelFilename:
        return replace(self, label=label)

    @functools.cached_property
    def tags(self) -> frozenset[Tag]:
        from packaging.tags import parse_tag  # costly to import; only inspect needs it

        return parse_tag(f"{self.python}-{self.abi}-{self.platform}")

    @functools.cached_property
    def release(self) -> tuple[str, str]:
        """``(name, version)`` normalized as in wheel filenames: the variants-file key."""
        name, version, _, _ = parse_wheel_filename(self.plain().filename)
        return name.replace("-", "_"), str(version)
