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

from tests.installers import clean_env, pip_install, selected, uv_install

ROOT = Path(__file__).resolve().parent.parent


def console_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    return re.findall(r"```console\n(.+?)\n```", readme, flags=re.S)


def main_job() -> list[str]:
    """The quick start's main job, without the install: run by tests/test_build_e2e.py."""
    install, _, job = console_commands()[0].partition(" && ")
    assert install == "python -m pip install ."
    assert job == "wheelforge build --matrix matrix/example.toml --skip-unavailable"
    return job.split()[1:]


def test_quick_start_commands() -> None:
    assert main_job() == ["build", "--matrix", "matrix/example.toml", "--skip-unavailable"]
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


def test_publishing_the_tagged_sample(tmp_path: Path) -> None:
    """The tag example, then the publish example; its server answers uv and pip."""
    import socket
    import time
    import urllib.request

    from wheelforge.variants import supported

    env = clean_env(tmp_path)
    shutil.copytree(ROOT / "examples" / "wheels", tmp_path / "examples" / "wheels")
    *steps, serve = console_commands()[3].split(" && ")
    assert serve == "wheelforge serve site --port 8000"
    for command in [console_commands()[2], " && ".join(steps)]:
        result = subprocess.run(
            command, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stderr
    with socket.socket() as sock:  # port 8000 may be taken here; any free one will do
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [*serve.replace("8000", str(port)).split()],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}/simple/"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(url, timeout=1).close()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, server.stderr
                time.sleep(0.05)
        uv = uv_install(tmp_path / "venv", url, "hello-variants", clean_env(tmp_path))
        pip = pip_install(tmp_path / "pip-target", url, "hello-variants", clean_env(tmp_path))
    finally:
        server.terminate()
        server.wait(timeout=10)
    level = supported.x86_64_level(supported.cpuinfo_flags(Path("/proc/cpuinfo").read_text()))
    expected = "v3" if level >= 3 else "null"
    assert uv.returncode == 0, uv.stderr
    assert (
        selected(uv.stderr, "hello-variants") == f"hello_variants-1.0.0-py3-none-any-{expected}.whl"
    )
    assert pip.returncode == 0, pip.stderr
    assert not list((tmp_path / "pip-target").glob("*.dist-info/variant.json"))
