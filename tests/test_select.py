"""``wheelforge select`` and ``coverage``: version resolution, the variants file, the
shared ranking, explain tables, profiles, ``--assume`` and third-party providers (run
only when trusted), from find-links directories and from a served index."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import build_plain_wheel, build_release
from tests.test_index import html_only
from wheelforge.cli import main
from wheelforge.errors import InvalidInput
from wheelforge.publish.serve import serving
from wheelforge.select.install import interpreter
from wheelforge.select.machine import Machine
from wheelforge.select.profiles import find_profile, load_profile, load_profiles
from wheelforge.select.selection import Selection, parse_requirement, select
from wheelforge.simple_api import directory_files, read_project_page
from wheelforge.tag import TagRequest, tag_wheel
from wheelforge.variants.config import config_from_table
from wheelforge.variants.properties import VariantProperty
from wheelforge.variants_file import write_variants_json

Cli = Callable[..., tuple[int, str, str]]
META = "Summary: A demo\nDescription-Content-Type: text/markdown\n"
VARIANTS = {
    "cu120": "nvidia :: cuda_version_lower_bound :: 12.0",
    "cu130": "nvidia :: cuda_version_lower_bound :: 13.0",
    "v3": "x86_64 :: level :: v3",
    "fast": "acme :: fast :: on",  # a third-party provider's namespace
}
ACME = config_from_table(
    {
        "default-priorities": {"namespace": ["nvidia", "acme", "x86_64"]},
        "providers": {"acme": {"requires": ["acme-variant-provider"], "plugin-api": "acme:Plugin"}},
    },
    source="test",
)


def wheel_set(root: Path, version: str = "1.0", labels: tuple[str, ...] = (*VARIANTS, "null"),
              requires_python: str | None = None) -> Path:  # fmt: skip
    """demo VERSION in ``root/links``: a plain wheel and one per label, each module
    saying what it was built for; the variants file."""
    links = root / "links"
    extra = META + (f"Requires-Python: {requires_python}\n" if requires_python else "")
    variants = {label: (VARIANTS[label],) if label != "null" else () for label in labels}
    build_release(links, "demo", version, variants, work=root / "work", metadata_extra=extra,
                  config=ACME)  # fmt: skip
    write_variants_json(links)
    return links


def choose(links: Path, machine: Machine | str, requirement: str = "demo") -> Selection:
    if isinstance(machine, str):
        machine = Machine(find_profile(machine).supported())
    python = interpreter()
    req = parse_requirement(requirement)
    files = directory_files(links, req.name)
    return select(req, files, machine, tags=python.tags, python_version=python.version)


@pytest.mark.parametrize(
    ("profile", "expected"),
    [
        ("h100-driver-580", "cu130"),  # CUDA 13.0 beats 12.0: nvidia ranks before x86_64
        ("t4-driver-525", "cu120"),
        ("v100-driver-470", "v3"),  # CUDA 11.4: no CUDA variant fits; x86-64-v4 runs v3
        ("cpu-x86-64-v3", "v3"),
        ("cpu-x86-64-v2", "null"),
        ("graviton3", "null"),
    ],
)
def test_each_profile_gets_the_wheel_the_ranking_says(
    tmp_path: Path, profile: str, expected: str
) -> None:
    selection = choose(wheel_set(tmp_path), profile)
    assert selection.version == "1.0" and selection.label == expected
    assert selection.chosen is not None
    assert selection.chosen.filename == f"demo-1.0-py3-none-any-{expected}.whl"
    chosen = [c for c in selection.candidates if c.status == "chosen"]
    assert [c.label for c in chosen] == [expected]


def test_explain_names_the_failing_property_and_the_rank_keys(tmp_path: Path) -> None:
    selection = choose(wheel_set(tmp_path), "t4-driver-525")
    status = {c.label: c for c in selection.candidates}
    assert status["cu130"].status == (
        "incompatible: nvidia :: cuda_version_lower_bound :: 13.0 (machine: 12.0 …)"
    )
    assert status["fast"].status.startswith("incompatible: acme :: fast :: on (none)")
    assert status["cu120"].rank_key == "(0,0,0)"
    assert status["v3"].status == "compatible" and status["v3"].rank_key == "(2,0,0)"
    assert status["null"].rank_key == status[None].rank_key.replace("plain", "null")
    # untrusted third-party provider: said once, in the notes
    assert any("acme: provider 'acme-variant-provider' is a third-party plugin" in n
               for n in selection.notes)  # fmt: skip


def test_the_same_choice_through_json_and_html_pages(tmp_path: Path) -> None:
    links = wheel_set(tmp_path)
    assert main(["index", str(links), "--out", str(tmp_path / "site"), "--no-check"]) == 0
    python = interpreter()
    machine = Machine(find_profile("h100-driver-580").supported())
    for server in (serving(tmp_path / "site"), html_only(tmp_path / "site")):
        with server as url:
            files = read_project_page(url, "demo")
            selection = select(parse_requirement("demo"), files, machine, tags=python.tags,
                               python_version=python.version)  # fmt: skip
        assert selection.label == "cu130"
        assert selection.chosen is not None and selection.chosen.url.startswith("http://127.0.0.1")


def test_versions_prereleases_and_specifiers(tmp_path: Path) -> None:
    links = wheel_set(tmp_path / "a", "1.0")
    shutil.copytree(wheel_set(tmp_path / "b", "2.0rc1"), links, dirs_exist_ok=True)
    shutil.copytree(wheel_set(tmp_path / "c", "0.9", labels=()), links, dirs_exist_ok=True)
    assert choose(links, "h100-driver-580").version == "1.0"  # no pre-release unless asked
    rc = choose(links, "h100-driver-580", "demo==2.0rc1")
    assert (rc.version, rc.label) == ("2.0rc1", "cu130")
    old = choose(links, "h100-driver-580", "demo<1")
    assert (old.version, old.label) == ("0.9", None)
    nothing = choose(links, "h100-driver-580", "demo>=5")
    assert nothing.chosen is None
    assert nothing.notes == ("no version of demo matches >=5 (found 0.9, 1.0, 2.0rc1)",)


def test_an_older_version_when_the_newest_has_nothing_for_this_python(tmp_path: Path) -> None:
    """Requires-Python comes from the index page (data-requires-python)."""
    links = wheel_set(tmp_path / "a", "1.0")
    shutil.copytree(wheel_set(tmp_path / "b", "2.0", requires_python=">=4"), links,
                    dirs_exist_ok=True)  # fmt: skip
    assert main(["index", str(links), "--out", str(tmp_path / "site"), "--no-check"]) == 0
    python = interpreter()
    machine = Machine(find_profile("h100-driver-580").supported())
    with serving(tmp_path / "site") as url:
        files = read_project_page(url, "demo")
        selection = select(parse_requirement("demo"), files, machine, tags=python.tags,
                           python_version=python.version)  # fmt: skip
    assert (selection.version, selection.label) == ("1.0", "cu130")


def test_labelled_wheels_need_their_variants_file(tmp_path: Path) -> None:
    links = wheel_set(tmp_path)
    (links / "demo-1.0-variants.json").unlink()
    selection = choose(links, "h100-driver-580")
    assert selection.label is None  # the plain wheel, as uv does
    ignored = [c for c in selection.candidates if c.status == "ignored: no variants file listed"]
    assert len(ignored) == len(VARIANTS) + 1


def test_a_label_missing_from_the_variants_file_is_ignored(tmp_path: Path) -> None:
    links = wheel_set(tmp_path, labels=("cu120", "null"))
    plain = build_plain_wheel(tmp_path, "demo", "1.0", metadata_extra=META)
    prop = frozenset({VariantProperty.parse(VARIANTS["cu130"])})
    tag_wheel(plain, links, TagRequest(properties=prop, label="cu130"))  # after the file
    selection = choose(links, "h100-driver-580")
    assert selection.label == "cu120"
    assert {c.label: c.status for c in selection.candidates}["cu130"] == (
        "ignored: not in the variants file"
    )


# -- third-party providers: run only when trusted -----------------------------------


@pytest.fixture
def acme_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A real installed plugin: a module and its dist-info with a ``variant_plugins``
    entry point, on sys.path; it records that it ran."""
    site = tmp_path / "plugin-site"
    site.mkdir()
    ran = tmp_path / "plugin-ran"
    (site / "acme_plugin.py").write_text(
        "from dataclasses import dataclass\n"
        "@dataclass\nclass Config:\n    name: str\n    values: list\n"
        "class AcmePlugin:\n    namespace = 'acme'\n"
        "    def get_supported_configs(self):\n"
        "        import os\n"
        "        open(os.environ['ACME_PLUGIN_RAN'], 'w').close()\n"
        "        return [Config('fast', ['on'])]\n"
    )
    dist_info = site / "acme_plugin-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-plugin\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text(
        "[variant_plugins]\nacme = acme_plugin:AcmePlugin\n"
    )
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("ACME_PLUGIN_RAN", str(ran))
    monkeypatch.delitem(sys.modules, "acme_plugin", raising=False)
    return ran


def test_a_third_party_plugin_runs_only_when_trusted(
    tmp_path: Path, acme_plugin: Path, cli: Cli
) -> None:
    links = wheel_set(tmp_path, labels=("fast", "null"))
    code, out, err = cli("select", "demo", "--find-links", links, "--profile", "cpu-x86-64-v3")
    assert (code, out.strip()) == (0, "demo-1.0-py3-none-any-null.whl")
    assert "acme: provider 'acme-variant-provider' is a third-party plugin" in err
    assert not acme_plugin.exists()  # never ran
    code, out, err = cli("select", "demo", "--find-links", links, "--profile", "cpu-x86-64-v3",
                         "--trust-provider", "acme")  # fmt: skip
    assert (code, out.strip()) == (0, "demo-1.0-py3-none-any-fast.whl")
    assert acme_plugin.exists()
    acme_plugin.unlink()
    code, out, _ = cli("select", "demo", "--find-links", links, "--trust-provider", "other")
    assert out.strip() == "demo-1.0-py3-none-any-null.whl" and not acme_plugin.exists()


def test_trust_from_the_environment(tmp_path: Path, acme_plugin: Path, cli: Cli,
                                    monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    links = wheel_set(tmp_path, labels=("fast", "null"))
    monkeypatch.setenv("WHEELFORGE_TRUST_PROVIDERS", "acme")
    _code, out, _ = cli("select", "demo", "--find-links", links)
    assert out.strip() == "demo-1.0-py3-none-any-fast.whl" and acme_plugin.exists()


def test_trusted_but_not_installed(
    tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WHEELFORGE_CACHE_DIR", str(tmp_path / "cache"))
    links = wheel_set(tmp_path, labels=("fast", "null"))
    _code, out, err = cli("select", "demo", "--find-links", links, "--trust-provider", "acme")
    assert out.strip() == "demo-1.0-py3-none-any-null.whl"
    # not installed here, and not among the release's find-links either
    assert "acme: installing acme-variant-provider into an isolated environment failed" in err
    assert "its variants count as unsupported" in err


def install_plugin(site: Path, dist: str, module: str, source: str, entry: str) -> None:
    """A plugin package in ``site`` (a directory on sys.path): its module and a dist-info
    whose ``variant_plugins`` entry point is ``entry`` (``name = module:attr``)."""
    site.mkdir(exist_ok=True)
    (site / f"{module}.py").write_text(source)
    dist_info = site / f"{dist}-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text(f"[variant_plugins]\n{entry}\n")


def test_trusting_one_namespace_never_imports_another_namespaces_plugin(
    tmp_path: Path, acme_plugin: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another namespace's plugin, found before acme's, whose import alone writes a marker.
    marker = tmp_path / "other-imported"
    site = tmp_path / "other-site"
    install_plugin(site, "other_plugin", "other_plugin",
                   f"open({str(marker)!r}, 'w').close()\n"
                   "class OtherPlugin:\n    namespace = 'other'\n"
                   "    def get_supported_configs(self):\n        return []\n",
                   "aaa_other = other_plugin:OtherPlugin")  # fmt: skip
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "other_plugin", raising=False)
    links = wheel_set(tmp_path, labels=("fast", "null"))
    code, out, _ = cli("select", "demo", "--find-links", links, "--profile", "cpu-x86-64-v3",
                       "--trust-provider", "acme")  # fmt: skip
    assert (code, out.strip()) == (0, "demo-1.0-py3-none-any-fast.whl")
    assert acme_plugin.exists()  # the trusted plugin ran
    assert not marker.exists()  # the other was never imported
    assert "other_plugin" not in sys.modules
    monkeypatch.setenv("WHEELFORGE_TRUST_PROVIDERS", "x86_64")
    cli("select", "demo", "--find-links", links, "--profile", "cpu-x86-64-v3")
    assert not marker.exists()


def test_a_trusted_plugin_is_found_by_its_declared_plugin_api(
    tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The variants file declares plugin-api "acme:Plugin"; the entry point has another name.
    site = tmp_path / "acme-site"
    install_plugin(site, "acme_variant_provider", "acme",
                   "class Config:\n    def __init__(self, name, values):\n"
                   "        self.name, self.values = name, values\n"
                   "class Plugin:\n    namespace = 'acme'\n"
                   "    def get_supported_configs(self):\n"
                   "        return [Config('fast', ['on'])]\n",
                   "acme-provider = acme : Plugin")  # fmt: skip
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "acme", raising=False)
    links = wheel_set(tmp_path, labels=("fast", "null"))
    code, out, _ = cli("select", "demo", "--find-links", links, "--profile", "cpu-x86-64-v3",
                       "--trust-provider", "acme")  # fmt: skip
    assert (code, out.strip()) == (0, "demo-1.0-py3-none-any-fast.whl")


# -- profiles and --assume ----------------------------------------------------------


def test_the_shipped_profiles_load() -> None:
    profiles = load_profiles()
    assert len(profiles) >= 12
    names = {p.name for p in profiles}
    assert {"cpu-x86-64-v2", "rtx4090-driver-550", "h100-driver-580", "mi300x-rocm-6.4"} <= names
    h100 = find_profile("h100-driver-580")
    assert h100.supported()["nvidia"]["sm_arch"][0] == "90_real"
    assert h100.provider_env() == {
        "NV_VARIANT_PROVIDER_FORCE_CUDA_DRIVER_VERSION": "13.0",
        "NV_VARIANT_PROVIDER_FORCE_SM_ARCH": "9.0",
    }
    assert find_profile("mi300x-rocm-6.4").supported()["amd"]["gfx_arch"] == ["gfx942"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[nvidia]\ncuda-driver = 12.8\n",
            'nvidia.cuda-driver: expected a version like "12.8", got 12.8',
        ),
        (
            '[nvidia]\nsm-arch = "9.0"\n',
            "nvidia.cuda-driver: expected the CUDA version of the driver",
        ),
        ("[x86_64]\nlevel = 5\n", "x86_64.level: expected an integer from 1 to 4"),
        ("[x86_64]\nlvl = 3\n", "x86_64.lvl: expected one of level"),
        ('[amd]\ngfx-arch = ["942"]\n', "amd.gfx-arch: expected a list of gfx names"),
        ('[aarch64]\nversion = "7a"\n', "aarch64.version: expected one of 9.0a"),
        ('assume = ["x86_64 :: level"]\n', "assume: "),
        (
            "gpu = 1\n",
            "gpu: expected one of aarch64, amd, assume, description, installed, nvidia, tpu, x86_64",
        ),
        ("[nvidia\n", "not valid TOML"),
    ],
)
def test_bad_profiles_name_the_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "machine.toml"
    path.write_text(text)
    with pytest.raises(InvalidInput) as err:
        load_profile(path)
    assert err.value.message.startswith(f"{path}: ")
    assert message in err.value.message


def test_an_unknown_profile_lists_the_shipped_ones(cli: Cli) -> None:
    code, _, err = cli("select", "demo", "--find-links", ".", "--profile", "h100")
    assert code == 2 and "not a shipped profile" in err and "h100-driver-580" in err


def test_assume_puts_a_property_first(tmp_path: Path, cli: Cli) -> None:
    links = wheel_set(tmp_path)
    args = ["select", "demo", "--find-links", links, "--profile", "cpu-x86-64-v2"]
    assert cli(*args)[1].strip() == "demo-1.0-py3-none-any-null.whl"
    code, out, _ = cli(*args, "--assume", "x86_64 :: level :: v3")
    assert out.strip() == "demo-1.0-py3-none-any-v3.whl"
    code, _, err = cli(*args, "--assume", "x86_64 :: level")
    assert code == 2 and err.startswith("error: --assume: ")


# -- the CLI -------------------------------------------------------------------------


def test_detect_shows_this_machine_and_profiles(cli: Cli) -> None:
    code, out, _ = cli("detect", "--json")
    report = json.loads(out)
    assert code == 0 and set(report) == {"nvidia", "amd", "tpu", "x86_64", "aarch64"}
    if Path("/proc/cpuinfo").read_text().count("flags"):
        assert report["x86_64"]["features"]["level"][-1] == "v1"
        assert report["x86_64"]["source"] == "/proc/cpuinfo"
    code, out, _ = cli("detect", "--json", "--profile", "h100-driver-580",
                       "--assume", "acme :: fast :: on")  # fmt: skip
    report = json.loads(out)
    assert report["nvidia"]["features"]["cuda_version_lower_bound"][0] == "13.0"
    assert report["nvidia"]["source"] == "profile h100-driver-580"
    assert report["acme"] == {"features": {"fast": ["on"]}, "facts": {}, "source": "--assume"}
    code, out, _ = cli("detect", "--profile", "h100-driver-580")
    assert "cuda_version_lower_bound: 13.0, 13, 12.20, 12.19 …" in out


def test_select_cli_explain_json_and_exit_codes(tmp_path: Path, cli: Cli) -> None:
    links = wheel_set(tmp_path)
    code, out, _ = cli(
        "select", "demo", "--find-links", links, "--profile", "t4-driver-525", "--explain"
    )
    assert code == 0 and out.strip().splitlines()[-1] == "demo-1.0-py3-none-any-cu120.whl"
    assert "demo 1.0 (variants file: demo-1.0-variants.json)" in out
    assert "incompatible: nvidia :: cuda_version_lower_bound :: 13.0" in out
    code, out, _ = cli("select", "demo==1.0", "--find-links", links, "--json")
    data = json.loads(out)
    assert data["version"] == "1.0" and data["chosen"].startswith("demo-1.0-py3-none-any")
    code, _, err = cli("select", "demo", "--find-links", links, "--python", "/nonexistent/python")
    assert code == 2 and "--python /nonexistent/python: not a working Python interpreter" in err
    code, _, err = cli("select", "demo")
    assert code == 2 and "give --index URL or --find-links DIR" in err
    code, _, err = cli("select", "demo[extra]", "--find-links", links)
    assert code == 2 and "give NAME with an optional version specifier only" in err
    only_variants = tmp_path / "only"
    only_variants.mkdir()
    for name in ("demo-1.0-py3-none-any-cu130.whl", "demo-1.0-variants.json"):
        shutil.copy(links / name, only_variants)
    code, out, err = cli(
        "select", "demo", "--find-links", only_variants, "--profile", "cpu-x86-64-v3"
    )
    assert code == 1 and out == "" and "demo: nothing fits this machine" in err


def test_coverage_table_and_exit_codes(tmp_path: Path, cli: Cli) -> None:
    links = wheel_set(tmp_path)
    code, out, err = cli("coverage", links, "--json")
    rows = {r["profile"]: r for r in json.loads(out)}
    assert code == 0 and len(rows) == len(load_profiles())
    assert (rows["h100-driver-580"]["label"], rows["h100-driver-580"]["outcome"]) == (
        "cu130",
        "variant",
    )
    assert rows["cpu-x86-64-v2"]["outcome"] == "null"
    assert rows["graviton3"]["outcome"] == "null"
    code, out, err = cli("coverage", links)
    assert "demo-1.0-py3-none-any-cu130.whl" in out and "variant," in err
    # a release without fallbacks: some profiles get nothing, and the exit code says so
    for name in ("demo-1.0-py3-none-any.whl", "demo-1.0-py3-none-any-null.whl"):
        (links / name).unlink()
    code, out, err = cli("coverage", links, "--json")
    assert code == 0  # a table to review; --require-all makes it a gate
    assert cli("coverage", links, "--require-all")[0] == 1
    assert {r["profile"] for r in json.loads(out) if r["outcome"] == "nothing"} >= {
        "cpu-x86-64-v2",
        "graviton3",
    }
    # own profiles
    mine = tmp_path / "profiles"
    mine.mkdir()
    (mine / "lab.toml").write_text('description = "lab box"\n[nvidia]\ncuda-driver = "12.4"\n')
    code, out, _ = cli("coverage", links, "--profiles", mine, "--json")
    assert [(r["profile"], r["label"]) for r in json.loads(out)] == [("lab", "cu120")]


def test_coverage_from_an_index(tmp_path: Path, cli: Cli) -> None:
    links = wheel_set(tmp_path)
    assert cli("index", links, "--out", tmp_path / "site", "--no-check")[0] == 0
    with serving(tmp_path / "site") as url:
        code, out, _ = cli("coverage", "demo", "--index", url, "--json")
    assert code == 0
    assert {r["profile"]: r["label"] for r in json.loads(out)}["t4-driver-525"] == "cu120"


def test_python_option_reads_another_interpreters_tags() -> None:
    other = interpreter(sys.executable)
    assert other.version == interpreter().version
    assert other.tags[0] == interpreter().tags[0]
