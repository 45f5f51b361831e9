"""The command line as a user runs it: help, version, inspect, variants-json."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import WheelFactory
from wheelforge import __version__
from wheelforge.cli import COMMANDS

Cli = Callable[..., tuple[int, str, str]]
CU128 = "nvidia :: cuda_version_lower_bound :: 12.8"
V3 = "x86_64 :: level :: v3"


def test_version_and_module_entry_point() -> None:
    for command in (
        [sys.executable, "-m", "wheelforge"],
        [str(Path(sys.executable).parent / "wheelforge")],
    ):
        result = subprocess.run([*command, "--version"], capture_output=True, text=True, check=True)
        assert result.stdout.strip() == f"wheelforge {__version__}"
    result = subprocess.run(
        [sys.executable, "-m", "wheelforge", "--help"], capture_output=True, text=True, check=True
    )
    for command in COMMANDS:
        assert command in result.stdout


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_subcommand_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    from wheelforge.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: wheelforge {command}") and "--json" in out


def _release(make_wheel: WheelFactory, out: Path, cli: Cli) -> Path:
    plain = make_wheel()
    for args in (["-p", CU128, "--label", "cu128"], ["-p", V3, "--label", "v3"], ["--null"]):
        assert cli("tag", plain, *args, "-o", out)[0] == 0
    (out / plain.name).write_bytes(plain.read_bytes())
    return out


def test_inspect_json_reports_everything(
    make_wheel: WheelFactory, tmp_path: Path, cli: Cli
) -> None:
    out = _release(make_wheel, tmp_path / "dist", cli)
    code, stdout, _ = cli("inspect", out, "--json")
    assert code == 0
    reports = {r["label"]: r for r in json.loads(stdout)}
    assert set(reports) == {"cu128", "v3", "null", None}
    cu = reports["cu128"]
    assert cu["name"] == "demo" and cu["version"] == "1.0" and cu["tags"] == ["py3-none-any"]
    assert cu["properties"] == [CU128]
    assert cu["schema"] == "providers-v0.2.0"
    assert cu["record_ok"] is True and cu["problem"] is None
    assert cu["compression"] == {"dist-info": {"deflate": 4}, "payload": {"deflate": 1}}
    assert reports[None]["schema"] is None and reports[None]["properties"] == []


def test_inspect_table(make_wheel: WheelFactory, tmp_path: Path, cli: Cli) -> None:
    out = _release(make_wheel, tmp_path / "dist", cli)
    code, stdout, _ = cli("inspect", out / "demo-1.0-py3-none-any-cu128.whl")
    assert code == 0
    header, row = stdout.splitlines()
    assert header.split() == [
        "wheel",
        "version",
        "label",
        "properties",
        "schema",
        "compression",
        "RECORD",
    ]
    assert "cu128" in row and CU128 in row and row.rstrip().endswith("ok")


def test_inspect_flags_label_mismatch(make_wheel: WheelFactory, tmp_path: Path, cli: Cli) -> None:
    out = _release(make_wheel, tmp_path / "dist", cli)
    renamed = out / "demo-1.0-py3-none-any-cu999.whl"
    (out / "demo-1.0-py3-none-any-cu128.whl").rename(renamed)
    code, _, err = cli("inspect", renamed)
    assert code == 2
    assert "variant.json names label 'cu128', expected the filename's label 'cu999'" in err


def test_variants_json_write_and_check(make_wheel: WheelFactory, tmp_path: Path, cli: Cli) -> None:
    out = _release(make_wheel, tmp_path / "dist", cli)
    code, stdout, _ = cli("variants-json", out)
    assert code == 0 and stdout.strip() == f"{out / 'demo-1.0-variants.json'} (written)"
    document = json.loads((out / "demo-1.0-variants.json").read_text())
    assert set(document["variants"]) == {"cu128", "v3", "null"}
    assert document["variants"]["v3"] == {"x86_64": {"level": ["v3"]}}
    # Idempotent: a second run changes nothing.
    assert cli("variants-json", out)[1].strip().endswith("(unchanged)")
    assert cli("variants-json", out, "--check")[0] == 0
    # A wheel added after the file was written: the file lags, --check says so.
    assert (
        cli("tag", make_wheel(), "-p", "x86_64 :: level :: v4", "--label", "v4", "-o", out)[0] == 0
    )
    code, _, err = cli("variants-json", out, "--check")
    assert code == 1 and "demo-1.0-variants.json: label 'v4' of a wheel is missing" in err
    code, stdout, _ = cli("variants-json", out, "--check", "--json")
    assert json.loads(stdout)["ok"] is False


def test_variants_json_other_schema(make_wheel: WheelFactory, tmp_path: Path, cli: Cli) -> None:
    out = _release(make_wheel, tmp_path / "dist", cli)
    assert cli("variants-json", out, "--schema", "legacy-v0.0.3")[0] == 0
    document = json.loads((out / "demo-1.0-variants.json").read_text())
    assert document["$schema"] == "https://variants-schema.wheelnext.dev/v0.0.3.json"
    assert cli("variants-json", out, "--check")[0] == 0


def test_variants_json_conflict_names_both_wheels(
    make_wheel: WheelFactory, tmp_path: Path, cli: Cli
) -> None:
    out = tmp_path / "dist"
    cli("tag", make_wheel(), "-p", CU128, "--label", "cu", "-o", out)
    other = make_wheel(tag="py311-none-any")
    cli(
        "tag", other, "-p", "nvidia :: cuda_version_lower_bound :: 13.0", "--label", "cu", "-o", out
    )
    code, _, err = cli("variants-json", out)
    assert code == 2 and err.count("\n") == 1
    assert (
        "demo-1.0-py3-none-any-cu.whl and demo-1.0-py311-none-any-cu.whl give label 'cu' different properties"
        in err
    )
    assert not (out / "demo-1.0-variants.json").exists()


def test_variants_json_on_a_directory_without_variants(
    make_wheel: WheelFactory, tmp_path: Path, cli: Cli
) -> None:
    code, _, err = cli("variants-json", make_wheel().parent)
    assert code == 0 and "nothing to write" in err
    code, _, err = cli("variants-json", tmp_path / "missing")
    assert code == 2 and "expected a directory of wheels" in err
