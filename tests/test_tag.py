"""tag / untag: raw member copy, RECORD, reproducibility, and bad input."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import WheelFactory, build_plain_wheel
from wheelforge.wheel.archive import ZipReader
from wheelforge.wheel.record import parse_record, record_hash

Cli = Callable[..., tuple[int, str, str]]
CU128 = "nvidia :: cuda_version_lower_bound :: 12.8"


def members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        assert zf.testzip() is None
        return {name: zf.read(name) for name in zf.namelist()}


def raw_members(path: Path) -> dict[str, bytes]:
    with ZipReader(path) as reader:
        return {m.name: b"".join(reader.iter_raw(m)) for m in reader.members}


def assert_record_verifies(path: Path) -> None:
    content = members(path)
    record_name = next(n for n in content if n.endswith(".dist-info/RECORD"))
    entries = parse_record(content[record_name], source=str(path))
    assert {e.path for e in entries} == set(content)
    for entry in entries:
        if entry.path != record_name:
            assert entry.hash == record_hash(content[entry.path]), entry.path
            assert entry.size == len(content[entry.path])


def test_tag_adds_variant_json_label_and_record(
    make_wheel: WheelFactory, tmp_path: Path, cli: Cli
) -> None:
    plain = make_wheel()
    code, out, _ = cli("tag", plain, "-p", CU128, "--label", "cu128", "-o", tmp_path / "out")
    assert code == 0
    tagged = tmp_path / "out" / "demo-1.0-py3-none-any-cu128.whl"
    assert out.strip() == str(tagged)
    content = members(tagged)
    variant = json.loads(content["demo-1.0.dist-info/variant.json"])
    assert variant["$schema"] == "https://variants-schema.wheelnext.dev/peps/850/v0.2.0.json"
    assert variant["variants"] == {"cu128": {"nvidia": {"cuda_version_lower_bound": ["12.8"]}}}
    assert variant["providers"]["nvidia"] == {
        "requires": ["nvidia-variant-provider"],
        "plugin-api": "nvidia_variant_provider.plugin:NvidiaVariantPlugin",
    }
    assert variant["default-priorities"]["namespace"] == list(variant["providers"]) or set(
        variant["default-priorities"]["namespace"]
    ) == set(variant["providers"])
    assert_record_verifies(tagged)
    # METADATA and WHEEL are unchanged; variant.json sits just before RECORD.
    original = members(plain)
    for name in ("demo-1.0.dist-info/METADATA", "demo-1.0.dist-info/WHEEL", "demo/__init__.py"):
        assert content[name] == original[name]
    assert list(content)[-2:] == ["demo-1.0.dist-info/variant.json", "demo-1.0.dist-info/RECORD"]


def test_untouched_members_are_copied_as_compressed_bytes(tmp_path: Path, cli: Cli) -> None:
    # Compress at level 1: had tag recompressed (at any other level), the bytes would differ.
    plain = tmp_path / "demo-1.0-py3-none-any.whl"
    big = b"".join(b"line %d of a native library\n" % i for i in range(20000))
    build_plain_wheel(tmp_path, files={"demo/lib.so": big, "demo/__init__.py": b"x = 1\n"})
    with zipfile.ZipFile(plain) as zf, zipfile.ZipFile(tmp_path / "l1.whl", "w") as out:
        for info in zf.infolist():
            out.writestr(info, zf.read(info), zipfile.ZIP_DEFLATED, compresslevel=1)
    (tmp_path / "l1.whl").replace(plain)
    assert cli("tag", plain, "-p", CU128, "-o", tmp_path / "out")[0] == 0
    before, after = (
        raw_members(plain),
        raw_members(tmp_path / "out" / "demo-1.0-py3-none-any-f839a2dd.whl"),
    )
    for name in ("demo/lib.so", "demo/__init__.py", "demo-1.0.dist-info/METADATA"):
        assert after[name] == before[name]
    assert members(tmp_path / "out" / "demo-1.0-py3-none-any-f839a2dd.whl")["demo/lib.so"] == big


def test_default_label_and_null(make_wheel: WheelFactory, tmp_path: Path, cli: Cli) -> None:
    plain = make_wheel()
    assert cli("tag", plain, "-p", "x86_64 :: level :: v3", "-o", tmp_path)[0] == 0
    assert (tmp_path / "demo-1.0-py3-none-any-fa7c1393.whl").exists()
    assert cli("tag", plain, "--null", "-o", tmp_path)[0] == 0
    null = members(tmp_path / "demo-1.0-py3-none-any-null.whl")
    assert json.loads(null["demo-1.0.dist-info/variant.json"])["variants"] == {"null": {}}


def test_requires_dist_is_added_to_metadata(
    make_wheel: WheelFactory, tmp_path: Path, cli: Cli
) -> None:
    plain = make_wheel(requires=("numpy>=1.26",))
    code, _, _ = cli(
        "tag",
        plain,
        "-p",
        CU128,
        "--label",
        "cu128",
        "-o",
        tmp_path,
        "--requires-dist",
        "nvidia-cuda-runtime-cu12>=12.8",
        "--requires-dist",
        "cupy; python_version >= '3.10'",
    )
    assert code == 0
    tagged = tmp_path / "demo-1.0-py3-none-any-cu128.whl"
    metadata = members(tagged)["demo-1.0.dist-info/METADATA"].decode()
    headers = metadata.split("\n\n")[0].splitlines()
    assert headers[-3:] == [
        "Requires-Dist: numpy>=1.26",
        "Requires-Dist: nvidia-cuda-runtime-cu12>=12.8",
        'Requires-Dist: cupy; python_version >= "3.10"',
    ]
    assert metadata.endswith("\n\nA demo package.\n")
    assert_record_verifies(tagged)


def test_tagging_is_reproducible(
    make_wheel: WheelFactory, tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = make_wheel()
    outputs = []
    for run in ("a", "b"):
        cli("tag", plain, "-p", CU128, "--requires-dist", "x", "-o", tmp_path / run)
        outputs.append((tmp_path / run / "demo-1.0-py3-none-any-f839a2dd.whl").read_bytes())
    assert outputs[0] == outputs[1]
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    for run in ("c", "d"):
        cli("tag", plain, "-p", CU128, "-o", tmp_path / run)
    c = (tmp_path / "c" / "demo-1.0-py3-none-any-f839a2dd.whl").read_bytes()
    assert c == (tmp_path / "d" / "demo-1.0-py3-none-any-f839a2dd.whl").read_bytes()
    with zipfile.ZipFile(io.BytesIO(c)) as zf:
        assert zf.getinfo("demo-1.0.dist-info/variant.json").date_time == (2023, 11, 14, 22, 13, 20)
        assert zf.getinfo("demo/__init__.py").date_time == (2024, 1, 1, 0, 0, 0)


def test_untag_is_the_inverse(make_wheel: WheelFactory, tmp_path: Path, cli: Cli) -> None:
    plain = make_wheel()
    cli("tag", plain, "-p", CU128, "--label", "cu128", "-o", tmp_path / "tagged")
    code, out, _ = cli(
        "untag",
        tmp_path / "tagged" / "demo-1.0-py3-none-any-cu128.whl",
        "-o",
        tmp_path / "back",
        "--verify",
    )
    assert code == 0
    back = Path(out.strip())
    assert back.name == plain.name
    assert members(back) == members(plain)
    assert_record_verifies(back)


def test_input_with_data_descriptors(tmp_path: Path, cli: Cli) -> None:
    class Unseekable(io.RawIOBase):
        def __init__(self) -> None:
            self.data = bytearray()

        def writable(self) -> bool:
            return True

        def write(self, b: bytes) -> int:  # type: ignore[override]
            self.data += b
            return len(b)

    source = build_plain_wheel(tmp_path)
    sink = Unseekable()
    with zipfile.ZipFile(source) as zf, zipfile.ZipFile(sink, "w", zipfile.ZIP_DEFLATED) as out:
        for info in zf.infolist():
            out.writestr(info.filename, zf.read(info))
    streamed = tmp_path / "s" / source.name
    streamed.parent.mkdir()
    streamed.write_bytes(bytes(sink.data))
    with zipfile.ZipFile(streamed) as zf:
        assert all(info.flag_bits & 0x8 for info in zf.infolist())
    assert cli("tag", streamed, "-p", CU128, "--label", "cu128", "-o", tmp_path / "out")[0] == 0
    assert_record_verifies(tmp_path / "out" / "demo-1.0-py3-none-any-cu128.whl")


def test_zip64_wheel_with_many_members(tmp_path: Path, cli: Cli) -> None:
    files = {f"demo/data/{i}.txt": b"%d\n" % i for i in range(70_000)}
    plain = build_plain_wheel(tmp_path, files=files)
    assert cli("tag", plain, "-p", CU128, "--label", "cu128", "-o", tmp_path / "out")[0] == 0
    tagged = tmp_path / "out" / "demo-1.0-py3-none-any-cu128.whl"
    with zipfile.ZipFile(tagged) as zf:
        assert len(zf.namelist()) == 70_004
        assert zf.read("demo/data/69999.txt") == b"69999\n"
    code, _, _ = cli("inspect", tagged)
    assert code == 0


# -- bad input: one line naming the culprit, exit 2, nothing left behind ---------------


def _corrupt(
    path: Path, edit: Callable[[dict[str, bytes]], None], *, keep_record: bool = False
) -> Path:
    content = members(path)
    edit(content)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in content.items():
            zf.writestr(name, data)
    return path


def _assert_clean_failure(result: tuple[int, str, str], out_dir: Path, *fragments: str) -> None:
    code, _, err = result
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    for fragment in fragments:
        assert fragment in err, err
    assert not out_dir.exists() or list(out_dir.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (
            ["-p", "nvidia :: cuda_version_lower_bound"],
            ["'nvidia :: cuda_version_lower_bound'", "expected 'namespace :: feature :: value'"],
        ),
        (["-p", "Nvidia :: cuda :: 12"], ["namespace 'Nvidia' must match [a-z0-9_]+"]),
        (["-p", CU128, "--label", "CU128"], ["variant label 'CU128'", "expected lowercase"]),
        (["-p", CU128, "--label", "cu-128"], ["variant label 'cu-128'"]),
        (["-p", CU128, "--label", "null"], ["'null' is reserved"]),
        (["-p", "mine :: f :: v"], ["namespace 'mine' is not in the variant config"]),
        (
            ["--requires-dist", "not a req!!", "-p", CU128],
            ["--requires-dist 'not a req!!': expected a PEP 508 requirement"],
        ),
        ([], ["expected at least one -p/--property, or --null"]),
    ],
)
def test_bad_arguments(
    make_wheel: WheelFactory, tmp_path: Path, cli: Cli, args: list[str], fragments: list[str]
) -> None:
    out = tmp_path / "out"
    _assert_clean_failure(cli("tag", make_wheel(), *args, "-o", out), out, *fragments)


@pytest.mark.parametrize(
    ("member", "fragment"),
    [
        ("../evil.py", "unsafe member name '../evil.py'"),
        ("/etc/evil", "unsafe member name '/etc/evil'"),
        ("demo/../../evil", "unsafe member name 'demo/../../evil'"),
    ],
)
def test_unsafe_member_names(
    make_wheel: WheelFactory, tmp_path: Path, cli: Cli, member: str, fragment: str
) -> None:
    wheel = _corrupt(make_wheel(), lambda c: c.__setitem__(member, b"boom"))
    out = tmp_path / "out"
    _assert_clean_failure(cli("tag", wheel, "-p", CU128, "-o", out), out, str(wheel), fragment)
    _assert_clean_failure(cli("inspect", wheel), out, fragment)


def test_record_hash_mismatch(make_wheel: WheelFactory, tmp_path: Path, cli: Cli) -> None:
    wheel = _corrupt(
        make_wheel(),
        lambda c: c.__setitem__(
            "demo/__init__.py", b"BUILT_FOR = 'evil!'\n__version__ = '1.0'\n"[:41]
        ),
    )
    out = tmp_path / "out"
    _assert_clean_failure(
        cli("tag", wheel, "-p", CU128, "--verify", "-o", out),
        out,
        str(wheel),
        "RECORD hash mismatch for 'demo/__init__.py'",
        "expected sha256=",
    )
    code, stdout, err = cli("inspect", wheel)
    assert code == 2 and "FAIL" in stdout and "RECORD hash mismatch for 'demo/__init__.py'" in err


def test_member_missing_from_record(make_wheel: WheelFactory, tmp_path: Path, cli: Cli) -> None:
    wheel = _corrupt(make_wheel(), lambda c: c.__setitem__("demo/extra.py", b"x"))
    out = tmp_path / "out"
    _assert_clean_failure(
        cli("tag", wheel, "-p", CU128, "-o", out),
        out,
        "member 'demo/extra.py' is not listed in RECORD",
    )


def test_truncated_zip(make_wheel: WheelFactory, tmp_path: Path, cli: Cli) -> None:
    wheel = make_wheel()
    wheel.write_bytes(wheel.read_bytes()[:-40])
    out = tmp_path / "out"
    _assert_clean_failure(
        cli("tag", wheel, "-p", CU128, "-o", out),
        out,
        str(wheel),
        "expected a complete zip archive",
    )


def test_non_wheel_files(tmp_path: Path, cli: Cli) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    out = tmp_path / "out"
    _assert_clean_failure(
        cli("tag", text, "-p", CU128, "-o", out), out, "notes.txt: not a wheel filename"
    )
    fake = tmp_path / "demo-1.0-py3-none-any.whl"
    fake.write_text("not a zip at all")
    _assert_clean_failure(
        cli("tag", fake, "-p", CU128, "-o", out),
        out,
        "demo-1.0-py3-none-any.whl",
        "no end-of-central-directory",
    )
    bad_name = tmp_path / "demo-1.0-any.whl"
    bad_name.write_text("x")
    _assert_clean_failure(
        cli("inspect", bad_name), out, "demo-1.0-any.whl: expected {name}-{version}"
    )


def test_already_tagged_wheel_is_refused(
    make_wheel: WheelFactory, tmp_path: Path, cli: Cli
) -> None:
    cli("tag", make_wheel(), "-p", CU128, "--label", "cu128", "-o", tmp_path)
    out = tmp_path / "out"
    _assert_clean_failure(
        cli("tag", tmp_path / "demo-1.0-py3-none-any-cu128.whl", "-p", CU128, "-o", out),
        out,
        "already a variant wheel (label 'cu128')",
    )


def test_variant_config_file(make_wheel: WheelFactory, tmp_path: Path, cli: Cli) -> None:
    config = tmp_path / "pyproject.toml"
    config.write_text('[variant.default-priorities]\nnamespace = ["x86_64", "nvidia"]\n')
    cli(
        "tag",
        make_wheel(),
        "-p",
        CU128,
        "--label",
        "cu128",
        "--variant-config",
        config,
        "-o",
        tmp_path,
    )
    variant = json.loads(
        members(tmp_path / "demo-1.0-py3-none-any-cu128.whl")["demo-1.0.dist-info/variant.json"]
    )
    assert variant["default-priorities"]["namespace"] == ["x86_64", "nvidia"]
    assert set(variant["providers"]) == {"x86_64", "nvidia"}
    config.write_text('[variant.default-priorities]\nnamespace = "nvidia"\n')
    _assert_clean_failure(
        cli("tag", make_wheel(), "-p", CU128, "--variant-config", config, "-o", tmp_path / "o"),
        tmp_path / "o",
        f"{config}: variant.default-priorities.namespace: expected a non-empty list",
    )


def test_copy_without_copy_file_range(
    make_wheel: WheelFactory, tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the kernel cannot copy between the two files (EXDEV, ENOSYS), tag copies
    through memory and produces the same bytes."""
    plain = make_wheel(files={"demo/lib.so": bytes(range(256)) * 4096, "demo/__init__.py": b""})
    cli("tag", plain, "-p", CU128, "-o", tmp_path / "fast")

    def unsupported(*args: object) -> int:
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr("os.copy_file_range", unsupported)
    cli("tag", plain, "-p", CU128, "-o", tmp_path / "slow")
    name = "demo-1.0-py3-none-any-f839a2dd.whl"
    assert (tmp_path / "slow" / name).read_bytes() == (tmp_path / "fast" / name).read_bytes()
    assert_record_verifies(tmp_path / "slow" / name)


def test_zstd_members_are_read_verified_and_copied(tmp_path: Path, cli: Cli) -> None:
    from backports.zstd import zipfile as zstd_zipfile

    plain = build_plain_wheel(tmp_path, files={"demo/lib.so": b"kernel " * 50_000})
    content = members(plain)
    with zstd_zipfile.ZipFile(plain, "w") as zf:
        for name, data in content.items():
            method = zipfile.ZIP_DEFLATED if ".dist-info/" in name else zstd_zipfile.ZIP_ZSTANDARD
            zf.writestr(name, data, compress_type=method)
    code, stdout, _ = cli("inspect", plain, "--json")
    assert code == 0
    report = json.loads(stdout)[0]
    assert report["compression"] == {"dist-info": {"deflate": 3}, "payload": {"zstd": 1}}
    assert report["record_ok"] is True
    assert (
        cli("tag", plain, "-p", CU128, "--label", "cu128", "--verify", "-o", tmp_path / "o")[0] == 0
    )
    tagged = tmp_path / "o" / "demo-1.0-py3-none-any-cu128.whl"
    assert raw_members(tagged)["demo/lib.so"] == raw_members(plain)["demo/lib.so"]
    with zstd_zipfile.ZipFile(tagged) as zf:
        assert zf.read("demo/lib.so") == b"kernel " * 50_000
