"""The one error family: a one-line message, an optional hint, an exit code."""

from __future__ import annotations


class WheelforgeError(Exception):
    """A failure the user can act on; the CLI prints ``error: {message}``."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class InvalidInput(WheelforgeError):
    """Bad input: a malformed property, label, wheel or file (exit code 2)."""

    exit_code = 2
