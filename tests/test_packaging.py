"""The wheel of wheelforge itself carries its data files: the README's quick start
installs it non-editable (``pip install .``), and index pages, CI templates and
hardware profiles must come with it."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_the_wheel_carries_templates_and_profiles(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-cache-dir", "-q",
         "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("wheelforge-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    package = ROOT / "wheelforge"
    data = [
        p.relative_to(ROOT).as_posix()
        for folder in ("templates", "profiles")
        for p in (package / folder).rglob("*")
        if p.is_file()
    ]
    assert len(data) >= 20
    assert sorted(set(data) - names) == []
