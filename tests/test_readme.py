"""The README's commands work as written."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def console_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    return re.findall(r"```console\n(.+?)\n```", readme, flags=re.S)


def main_job() -> list[str]:
    """The quick start's main job, without the install: run by tests/test_build_e2e.py."""
    install, _, job = console_commands()[0].partition(" && ")
    assert install == "python -m pip install ."
    assert job == "wheelforge build --matrix matrix/example.toml"
    return job.split()[1:]


def test_quick_start_commands() -> None:
    assert main_job() == ["build", "--matrix", "matrix/example.toml"]
    test_command = console_commands()[1]
    assert test_command == "python -m pip install -e '.[test]' && python -m pytest"
    assert test_command in (ROOT / ".ci" / "run").read_text()


def test_tagging_an_existing_wheel(tmp_path: Path) -> None:
    command = console_commands()[2]
    shutil.copytree(ROOT / "examples" / "wheels", tmp_path / "examples" / "wheels")
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    result = subprocess.run(
        command, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    dist = tmp_path / "dist"
    assert sorted(p.name for p in dist.iterdir()) == [
        "hello_variants-1.0.0-py3-none-any-null.whl",
        "hello_variants-1.0.0-py3-none-any-v3.whl",
        "hello_variants-1.0.0-variants.json",
    ]
    variants = json.loads((dist / "hello_variants-1.0.0-variants.json").read_text())
    assert variants["variants"] == {"null": {}, "v3": {"x86_64": {"level": ["v3"]}}}
    assert "hello_variants-1.0.0-py3-none-any-v3.whl" in result.stdout
    with zipfile.ZipFile(dist / "hello_variants-1.0.0-py3-none-any-v3.whl") as zf:
        assert zf.testzip() is None
