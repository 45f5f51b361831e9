"""The README's quick start works as written (minus the install, done by the test setup)."""

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


def _console_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    return re.findall(r"```console\n(.+?)\n```", readme, flags=re.S)


def test_quick_start_main_job(tmp_path: Path) -> None:
    main_job, test_command = _console_commands()[:2]
    assert test_command == "python -m pip install -e '.[test]' && python -m pytest"
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_command in ci
    install, _, job = main_job.partition(" && ")
    assert install == "python -m pip install ."
    shutil.copytree(ROOT / "examples" / "wheels", tmp_path / "examples" / "wheels")
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    result = subprocess.run(
        job, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, check=False
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
