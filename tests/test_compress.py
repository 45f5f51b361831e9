"""compress: zstd / deflate recompression, in parallel, reproducible, verified, and the
compatibility policy (no zstd where pip on CPython < 3.14 could pick the wheel).

The wheels hold one member above ``BIG_MEMBER``, so that both kinds of parallel
encoding (libzstd's multithreaded frame, deflate in independent blocks) are exercised
along with the small members encoded whole. uv and pip run for real (marked slow).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from backports.zstd import zipfile as zstd_zipfile

from tests.conftest import build_plain_wheel
from tests.installers import clean_env
from wheelforge.compress import BIG_MEMBER, zstd_allowed
from wheelforge.wheel.archive import ZipReader
from wheelforge.wheel.record import parse_record, record_hash

Cli = Callable[..., tuple[int, str, str]]
BIN = Path(sys.executable).parent
UV = BIN / "uv"
V1 = "x86_64 :: level :: v1"  # uv's builtin provider; every x86-64 CPU has it
ZSTD, DEFLATED = 93, 8


def payload() -> dict[str, bytes]:
    rng = random.Random(825)
    big = b"".join(rng.randbytes(3000) + b"kernel_%d(float*, int) " % i * 40 for i in range(2200))
    assert len(big) > BIG_MEMBER
    files = {
        "demo/__init__.py": b"BUILT_FOR = 'v1'\nfrom demo.sub import VALUE\n",
        "demo/sub.py": b"VALUE = 825\n",
        "demo/empty.txt": b"",
        "demo/_native.bin": big,
    }
    for i in range(40):
        files[f"demo/data/part{i:02d}.txt"] = b"row %d\n" % i * (50 * i + 1)
    return files


PAYLOAD = payload()


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """demo-1.0-py3-none-any.whl: deflate, every member 2024-01-01 and mode 0644."""
    return build_plain_wheel(tmp_path_factory.mktemp("plain"), files=PAYLOAD)


@pytest.fixture(scope="module")
def labelled(plain: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from wheelforge.cli import main

    out = tmp_path_factory.mktemp("labelled")
    assert main(["tag", str(plain), "-p", V1, "--label", "v1", "-o", str(out)]) == 0
    return out / "demo-1.0-py3-none-any-v1.whl"


def contents(path: Path) -> dict[str, bytes]:
    """Every member, read (and CRC-checked) by Python 3.14's zipfile."""
    with zstd_zipfile.ZipFile(path) as zf:
        return {info.filename: zf.read(info) for info in zf.infolist()}


def methods(path: Path) -> dict[str, int]:
    with ZipReader(path) as reader:
        return {m.name: m.method for m in reader.members}


def raw(path: Path) -> dict[str, bytes]:
    with ZipReader(path) as reader:
        return {m.name: b"".join(reader.iter_raw(m)) for m in reader.members}


def assert_record_verifies(path: Path) -> None:
    content = contents(path)
    record_name = next(n for n in content if n.endswith(".dist-info/RECORD"))
    for entry in parse_record(content[record_name], source=str(path)):
        if entry.path != record_name:
            assert entry.hash == record_hash(content[entry.path]), entry.path


def compress(cli: Cli, wheel: Path, out: Path, *args: str) -> Path:
    code, _, stderr = cli("compress", wheel, "-o", out, *args)
    assert code == 0, stderr
    assert stderr == ""
    return out / wheel.name


def test_round_trip_zstd_deflate_zstd(labelled: Path, tmp_path: Path, cli: Cli) -> None:
    original = contents(labelled)
    first = compress(cli, labelled, tmp_path / "zstd", "--codec", "zstd")
    second = compress(cli, first, tmp_path / "deflate", "--codec", "deflate")
    third = compress(cli, second, tmp_path / "zstd-again", "--codec", "zstd")
    for wheel, payload_method in ((first, ZSTD), (second, DEFLATED), (third, ZSTD)):
        assert contents(wheel) == original
        assert list(contents(wheel)) == list(original)  # member order kept
        for name, method in methods(wheel).items():
            expected = DEFLATED if name.startswith("demo-1.0.dist-info/") else payload_method
            assert method == expected, (wheel, name)
        assert_record_verifies(wheel)
        # the standard library's zipfile (pip's reader on 3.11) reads deflate blocks
        if payload_method == DEFLATED:
            with zipfile.ZipFile(wheel) as zf:
                assert zf.testzip() is None
    # The output depends on the content, codec and level only.
    assert third.read_bytes() == first.read_bytes()
    # zstd members say they need zip 6.3 to extract, as Python 3.14's zipfile writes
    with zstd_zipfile.ZipFile(first) as zf:
        assert {(i.compress_type, i.extract_version) for i in zf.infolist()} == {
            (ZSTD, 63),
            (DEFLATED, 20),
        }
    assert first.stat().st_size < labelled.stat().st_size


def test_dist_info_always_deflate_and_metadata_kept(
    labelled: Path, tmp_path: Path, cli: Cli
) -> None:
    # An input whose every member is zstd (dist-info included), with odd times and modes.
    content = contents(labelled)
    odd = tmp_path / "in" / labelled.name
    odd.parent.mkdir()
    with zstd_zipfile.ZipFile(odd, "w") as zf:
        for i, (name, data) in enumerate(content.items()):
            info = zstd_zipfile.ZipInfo(name, (2001, 2, 3, 4, 5, 2 * (i % 30)))
            info.external_attr = (0o100755 if i % 2 else 0o100600) << 16
            zf.writestr(info, data, compress_type=zstd_zipfile.ZIP_ZSTANDARD)
    out = compress(cli, odd, tmp_path / "out", "--codec", "zstd", "--level", "3")
    assert {n: m for n, m in methods(out).items() if ".dist-info/" in n} == {
        n: DEFLATED for n in content if ".dist-info/" in n
    }
    with zstd_zipfile.ZipFile(odd) as before, zstd_zipfile.ZipFile(out) as after:
        keep = [(i.filename, i.date_time, i.external_attr, i.CRC) for i in before.infolist()]
        assert [(i.filename, i.date_time, i.external_attr, i.CRC) for i in after.infolist()] == keep
    assert contents(out) == content


def test_reproducible_whatever_the_threads(labelled: Path, tmp_path: Path, cli: Cli) -> None:
    for codec, level in (("zstd", "10"), ("deflate", "6")):
        outputs = [
            compress(
                cli,
                labelled,
                tmp_path / f"{codec}-{run}-j{jobs}",
                "--codec",
                codec,
                "--level",
                level,
                "-j",
                jobs,
            ).read_bytes()
            for run, jobs in enumerate(("1", "2", "2"))
        ]
        assert outputs[0] == outputs[1] == outputs[2], codec
    # With --level, the deflate payload is re-encoded (in 1 MiB blocks for the big member).
    assert (
        raw(tmp_path / "deflate-0-j1" / labelled.name)["demo/_native.bin"]
        != raw(labelled)["demo/_native.bin"]
    )


def test_many_big_members(tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    import wheelforge.compress

    # Every member "big" and many 64 KiB deflate blocks: the parallel paths, many at once.
    monkeypatch.setattr(wheelforge.compress, "BIG_MEMBER", 1 << 16)
    monkeypatch.setattr(wheelforge.compress, "BLOCK", 1 << 16)
    rng = random.Random(7)
    files = {f"demo/lib{i}.so": rng.randbytes(20000) * (3 + i) + bytes(30000 * i) for i in range(7)}
    wheel = build_plain_wheel(tmp_path, tag="cp314-cp314-linux_x86_64", files=files)
    for codec, level in (("zstd", "3"), ("deflate", "6")):
        outputs = [
            compress(
                cli,
                wheel,
                tmp_path / f"{codec}-j{jobs}",
                "--codec",
                codec,
                "--level",
                level,
                "-j",
                jobs,
            )
            for jobs in ("1", "2", "3")
        ]
        assert outputs[0].read_bytes() == outputs[1].read_bytes() == outputs[2].read_bytes()
        assert contents(outputs[0]) == contents(wheel)


def test_members_with_the_codec_are_copied_unless_a_level_is_given(
    labelled: Path, tmp_path: Path, cli: Cli
) -> None:
    zstd_wheel = compress(cli, labelled, tmp_path / "a", "--codec", "zstd", "--level", "1")
    code, stdout, _ = cli("compress", zstd_wheel, "-o", tmp_path / "b", "--codec", "zstd", "--json")
    assert code == 0
    (report,) = json.loads(stdout)
    assert report["recompressed"] == 0 and report["copied"] == len(PAYLOAD) + 4
    assert raw(tmp_path / "b" / labelled.name) == raw(zstd_wheel)
    # A level re-encodes the payload (a zip does not say which level a member has) ...
    code, stdout, _ = cli(
        "compress", zstd_wheel, "-o", tmp_path / "c", "--codec", "zstd", "--level", "5", "--json"
    )
    (report,) = json.loads(stdout)
    assert report["recompressed"] == len(PAYLOAD) and report["level"] == 5
    assert report["verified"] is True
    relevelled = raw(tmp_path / "c" / labelled.name)
    assert relevelled["demo/_native.bin"] != raw(zstd_wheel)["demo/_native.bin"]
    # ... but never the .dist-info members, which stay as they were.
    for name in relevelled:
        if ".dist-info/" in name:
            assert relevelled[name] == raw(zstd_wheel)[name]


def test_in_place_and_table(labelled: Path, tmp_path: Path, cli: Cli) -> None:
    wheel = tmp_path / labelled.name
    shutil.copy(labelled, wheel)
    code, stdout, stderr = cli("compress", wheel, "--in-place", "--codec", "zstd")
    assert code == 0 and stderr == ""
    assert str(wheel) in stdout and "zstd-10" in stdout and "ok (" in stdout
    assert methods(wheel)["demo/_native.bin"] == ZSTD
    assert (
        wheel.read_bytes()
        == compress(cli, labelled, tmp_path / "o", "--codec", "zstd").read_bytes()
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([wheel.name, "o"])  # no temp file


# -- the policy ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "allowed"),
    [
        ("demo-1.0-py3-none-any.whl", False),
        ("demo-1.0-py2.py3-none-any.whl", False),
        ("demo-1.0-cp313-cp313-linux_x86_64.whl", False),
        ("demo-1.0-cp39-abi3-linux_x86_64.whl", False),
        ("demo-1.0-cp313.cp314-cp313-linux_x86_64.whl", False),
        ("demo-1.0-pp310-pypy310_pp73-linux_x86_64.whl", False),
        ("demo-1.0-py31-none-any.whl", False),
        ("demo-1.0-cp314-cp314-linux_x86_64.whl", True),
        ("demo-1.0-cp314-abi3-linux_x86_64.whl", True),
        ("demo-1.0-cp314.cp315-cp314-linux_x86_64.whl", True),
        ("demo-1.0-py314-none-any.whl", True),
        ("demo-1.0-py3-none-any-v1.whl", True),
        ("demo-1.0-cp311-cp311-linux_x86_64-cu128.whl", True),
    ],
)
def test_zstd_allowed(filename: str, allowed: bool) -> None:
    assert zstd_allowed(filename).allowed is allowed


POLICY = (
    "pip on CPython < 3.14 can pick this plain wheel (python tag py3) and cannot read zstd members"
)


def test_policy_refuses_a_plain_py3_wheel(plain: Path, tmp_path: Path, cli: Cli) -> None:
    code, stdout, stderr = cli("compress", plain, "-o", tmp_path / "out", "--codec", "zstd")
    assert code == 2
    assert stdout == ""
    assert stderr == f"error: {plain.name}: not made zstd: {POLICY} (--force overrides)\n"
    assert not (tmp_path / "out").exists()
    # deflate is always allowed
    assert compress(cli, plain, tmp_path / "deflate", "--codec", "deflate").is_file()


def test_policy_checks_a_whole_directory_first(
    plain: Path, labelled: Path, tmp_path: Path, cli: Cli
) -> None:
    dist = tmp_path / "dist"
    dist.mkdir()
    for wheel in (plain, labelled):
        shutil.copy(wheel, dist)
    before = {p.name: p.read_bytes() for p in dist.iterdir()}
    code, _, stderr = cli("compress", dist, "--in-place", "--codec", "zstd")
    assert code == 2 and stderr.count("\n") == 1 and plain.name in stderr
    assert {p.name: p.read_bytes() for p in dist.iterdir()} == before  # nothing written
    code, stdout, _ = cli("compress", dist, "-o", tmp_path / "out", "--codec", "deflate", "--json")
    assert code == 0
    assert [Path(r["output"]).name for r in json.loads(stdout)] == sorted(before)
    assert contents(tmp_path / "out" / plain.name) == contents(plain)


def test_policy_forced_with_a_warning(plain: Path, tmp_path: Path, cli: Cli) -> None:
    code, _, stderr = cli("compress", plain, "-o", tmp_path, "--codec", "zstd", "--force")
    assert code == 0
    assert stderr == f"warning: {plain.name}: zstd forced: {POLICY}\n"
    assert methods(tmp_path / plain.name)["demo/_native.bin"] == ZSTD


def test_policy_allows_labelled_and_cp314_wheels(labelled: Path, tmp_path: Path, cli: Cli) -> None:
    assert (
        methods(compress(cli, labelled, tmp_path / "a", "--codec", "zstd"))["demo/sub.py"] == ZSTD
    )
    cp314 = build_plain_wheel(
        tmp_path, tag="cp314-cp314-manylinux_2_28_x86_64", files={"demo/x.py": b"x = 1\n" * 99}
    )
    assert methods(compress(cli, cp314, tmp_path / "b", "--codec", "zstd"))["demo/x.py"] == ZSTD


# -- bad input and failed verification ----------------------------------------------


def test_corrupt_and_unsupported_input(plain: Path, tmp_path: Path, cli: Cli) -> None:
    out = tmp_path / "out"
    truncated = tmp_path / "t" / plain.name
    truncated.parent.mkdir()
    truncated.write_bytes(plain.read_bytes()[:-100])
    (tmp_path / "b").mkdir()
    bzip2 = build_plain_wheel(
        tmp_path / "b", files={"demo/x.py": b"x = 1\n" * 99}, compression=zipfile.ZIP_BZIP2
    )
    flipped = tmp_path / "f" / plain.name
    flipped.parent.mkdir()
    data = bytearray(plain.read_bytes())
    with ZipReader(plain) as reader:
        member = next(m for m in reader.members if m.name == "demo/_native.bin")
        data[reader.data_offset(member) + member.compressed_size // 2] ^= 0xFF
    flipped.write_bytes(bytes(data))
    cases = {
        truncated: "expected a complete zip archive",
        bzip2: "uses zip method 12: expected stored (0), deflate (8) or zstd (93)",
        flipped: "member 'demo/_native.bin' ",
    }
    for wheel, message in cases.items():
        code, _, stderr = cli("compress", wheel, "-o", out, "--codec", "deflate", "--level", "6")
        assert code == 2, stderr
        assert stderr.startswith("error: ") and stderr.count("\n") == 1 and message in stderr
        assert not out.exists() or not list(out.iterdir())
    code, _, stderr = cli(
        "compress", plain, "-o", out, "--codec", "zstd", "--level", "99", "--force"
    )
    assert code == 2 and stderr == "error: --level 99: expected -131072 to 22 for zstd\n"
    code, _, stderr = cli("compress", plain, "-o", out, "--codec", "deflate", "-j", "0")
    assert code == 2 and stderr == "error: -j 0: expected at least 1\n"


def test_a_bad_output_fails_verification_and_is_deleted(
    labelled: Path, tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    import wheelforge.compress

    # Fault injection: the encoder of small members corrupts one member's content.
    encode = wheelforge.compress.compress

    def wrong(data: bytes, method: int, level: int | None = None) -> bytes:
        return encode(data.replace(b"825", b"826"), method, level)

    monkeypatch.setattr(wheelforge.compress, "compress", wrong)
    wheel = tmp_path / labelled.name
    shutil.copy(labelled, wheel)
    code, _, stderr = cli("compress", wheel, "--in-place", "--codec", "zstd")
    assert code == 1
    assert stderr.startswith(
        f"error: {wheel.name}: verification failed: member 'demo/sub.py' does not read back "
        "(BadZipFile: Bad CRC-32 for file 'demo/sub.py'); the output was deleted\n"
    )
    assert wheel.read_bytes() == labelled.read_bytes()
    assert [p.name for p in tmp_path.iterdir()] == [wheel.name]
    # --no-verify writes it (this is what verification is for)
    assert cli("compress", wheel, "-o", tmp_path / "nv", "--codec", "zstd", "--no-verify")[0] == 0


# -- the real installers --------------------------------------------------------------


def run(*args: str | Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.slow
@pytest.mark.skipif(
    sys.platform != "linux" or os.uname().machine != "x86_64",
    reason="the variant is x86_64 :: level :: v1",
)
def test_uv_installs_a_zstd_variant_wheel(labelled: Path, tmp_path: Path, cli: Cli) -> None:
    links = tmp_path / "links"
    wheel = compress(cli, labelled, links, "--codec", "zstd")
    assert methods(wheel)["demo/_native.bin"] == ZSTD
    assert cli("variants-json", links)[0] == 0
    env = clean_env(tmp_path, UV_OFFLINE="1")
    venv = tmp_path / "venv"
    assert run(UV, "venv", "--python", sys.executable, venv, env=env).returncode == 0
    result = run(
        UV,
        "pip",
        "install",
        "--preview-features",
        "wheel-variants",
        "--no-index",
        "--find-links",
        links,
        "--python",
        venv,
        "demo",
        "-v",
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert f"({wheel.name})" in result.stderr
    (site_packages,) = venv.glob("lib/python*/site-packages")
    for name, data in PAYLOAD.items():
        assert (site_packages / name).read_bytes() == data, name
    imported = run(venv / "bin" / "python", "-c", "import demo; print(demo.VALUE)", env=env)
    assert imported.stdout == "825\n", imported.stderr


@pytest.mark.slow
def test_pip_on_this_python_cannot_install_a_forced_zstd_plain_wheel(
    plain: Path, tmp_path: Path, cli: Cli
) -> None:
    # The reason for the policy: pip on CPython < 3.14 reads wheels with zipfile, which
    # has no zstd, and fails halfway. (On 3.14+ this would install.)
    assert sys.version_info < (3, 14)
    assert cli("compress", plain, "-o", tmp_path / "dist", "--codec", "zstd", "--force")[0] == 0
    env = clean_env(tmp_path, PIP_DISABLE_PIP_VERSION_CHECK="1")
    venv = tmp_path / "venv"
    assert run(sys.executable, "-m", "venv", "--without-pip", venv, env=env).returncode == 0
    result = run(
        sys.executable,
        "-m",
        "pip",
        "--python",
        venv / "bin" / "python",
        "install",
        "--no-index",
        "--no-deps",
        tmp_path / "dist" / plain.name,
        env=env,
    )
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "NotImplementedError: That compression method is not supported" in output
    (site_packages,) = venv.glob("lib/python*/site-packages")
    # A half-install: the package's directory without its files, and no .dist-info.
    assert (site_packages / "demo").is_dir()
    assert not (site_packages / "demo" / "_native.bin").exists()
    assert not list(site_packages.glob("demo-*.dist-info"))
