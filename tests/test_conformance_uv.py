"""Conformance with the real installers: uv 0.13.8 (``--preview-features wheel-variants``)
picks the variant that wheelforge's own ranking predicts, and pip falls back to the
plain wheel.

One find-links directory per module: variant wheels of one release (same name, version
and platform tag, differing only in which variant their module says it was built for),
tagged with ``wheelforge tag``, plus the null variant, a plain fallback and
``{name}-{version}-variants.json``.
"""

from __future__ import annotations

import platform
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import build_plain_wheel
from tests.installers import clean_env
from wheelforge.cli import main
from wheelforge.variants import supported
from wheelforge.variants.merge import merge
from wheelforge.variants.metadata import VariantMetadata, loads
from wheelforge.variants.ranking import Supported, best

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        sys.platform != "linux" or platform.machine() != "x86_64",
        reason="uv's x86_64 provider reads /proc/cpuinfo: needs x86_64 Linux",
    ),
]

Cli = Callable[..., tuple[int, str, str]]

BIN = Path(sys.executable).parent
UV = BIN / "uv"
NAME, VERSION, TAG = "demo", "1.0", "py3-none-any"
PLAIN_NAME = f"{NAME}-{VERSION}-{TAG}.whl"

# label -> properties; every one of them a builtin provider of uv
VARIANTS: dict[str, tuple[str, ...]] = {
    "cu120": ("nvidia :: cuda_version_lower_bound :: 12.0",),
    "cu128": ("nvidia :: cuda_version_lower_bound :: 12.8",),
    "cu131": ("nvidia :: cuda_version_lower_bound :: 13.1",),
    "v1": ("x86_64 :: level :: v1",),
    "v2": ("x86_64 :: level :: v2",),
    "v3": ("x86_64 :: level :: v3",),
    "v4": ("x86_64 :: level :: v4",),
    "null": (),
}

SELECTING = re.compile(rf"Selecting: {NAME}==1\.0 \[compatible\] \((?P<file>[^)\s]+)\)")


def plain_wheel(directory: Path, built_for: str) -> Path:
    """The same release every time; only the module's ``BUILT_FOR`` differs."""
    directory.mkdir(parents=True)
    module = f"BUILT_FOR = {built_for!r}\n__version__ = {VERSION!r}\n".encode()
    return build_plain_wheel(
        directory, NAME, VERSION, tag=TAG, files={f"{NAME}/__init__.py": module}
    )


def tag(plain: Path, out: Path, label: str, properties: tuple[str, ...]) -> Path:
    args = ["tag", str(plain), "-o", str(out)]
    if properties:
        args += ["--label", label]
        for prop in properties:
            args += ["-p", prop]
    else:
        args.append("--null")
    assert main(args) == 0
    wheel = out / f"{NAME}-{VERSION}-{TAG}-{label}.whl"
    assert wheel.is_file()
    return wheel


@pytest.fixture(scope="module")
def find_links(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("uv-conformance")
    links = root / "links"
    links.mkdir()
    for label, properties in VARIANTS.items():
        tag(plain_wheel(root / "plain" / label, label), links, label, properties)
    shutil.copy(plain_wheel(root / "plain" / "plain", "plain"), links / PLAIN_NAME)
    assert main(["variants-json", str(links)]) == 0
    assert (links / f"{NAME}-{VERSION}-variants.json").is_file()
    return links


def variants_meta(links: Path) -> VariantMetadata:
    path = links / f"{NAME}-{VERSION}-variants.json"
    return loads(path.read_bytes(), source=str(path))


def cpu_level() -> int:
    return supported.x86_64_level(supported.cpuinfo_flags(Path("/proc/cpuinfo").read_text()))


def machine(driver: str | None) -> Supported:
    """What uv sees here: the real CPU, and the forced CUDA driver (no GPU otherwise)."""
    support: dict[str, dict[str, list[str]]] = {"x86_64": supported.x86_64(cpu_level())}
    if driver is not None:
        support["nvidia"] = supported.nvidia(driver)
    return support


def predict(meta: VariantMetadata, driver: str | None) -> str | None:
    """The label wheelforge's ranking picks (``None``: the plain wheel)."""
    winner = best(meta, machine(driver), plain=True)
    assert winner is not None  # the plain wheel is always compatible
    return winner.label


def wheel_name(label: str | None) -> str:
    return PLAIN_NAME if label is None else f"{NAME}-{VERSION}-{TAG}-{label}.whl"


def uv_env(work: Path, driver: str | None) -> dict[str, str]:
    """uv offline, with its cache in ``work/uv-cache`` and the simulated driver."""
    forced = {"NV_VARIANT_PROVIDER_FORCE_CUDA_DRIVER_VERSION": driver} if driver else {}
    return clean_env(work, UV_OFFLINE="1", **forced)


def uv_install(links: Path, work: Path, driver: str | None) -> tuple[str, Path]:
    """Install ``demo`` from ``links`` into a fresh venv with uv; return (the file uv
    selected, the venv's site-packages)."""
    env = uv_env(work, driver)
    venv = work / "venv"
    result = subprocess.run(
        [str(UV), "venv", "--python", sys.executable, str(venv)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    result = subprocess.run(
        [
            str(UV),
            "pip",
            "install",
            "--preview-features",
            "wheel-variants",
            "--no-index",
            "--find-links",
            str(links),
            "--python",
            str(venv),
            NAME,
            "-v",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    selected = SELECTING.findall(output)
    assert len(selected) == 1, output
    (site_packages,) = venv.glob("lib/python*/site-packages")
    shutil.rmtree(work / "uv-cache", ignore_errors=True)
    return selected[0], site_packages


def installed(site_packages: Path) -> tuple[str | None, str]:
    """(the installed variant's label or None, the module's BUILT_FOR)."""
    (dist_info,) = site_packages.glob(f"{NAME}-{VERSION}.dist-info")
    label = None
    variant_json = dist_info / "variant.json"
    if variant_json.exists():
        meta = loads(variant_json.read_bytes(), source=str(variant_json))
        label = meta.single_label(str(variant_json))
    namespace: dict[str, object] = {}
    exec((site_packages / NAME / "__init__.py").read_text(), namespace)
    return label, str(namespace["BUILT_FOR"])


@pytest.mark.parametrize("driver", [None, "12.8", "13.1"], ids=["no-gpu", "cuda-12.8", "cuda-13.1"])
def test_uv_picks_the_predicted_variant(
    find_links: Path, tmp_path: Path, driver: str | None
) -> None:
    meta = variants_meta(find_links)
    assert set(meta.variants) == set(VARIANTS)
    predicted = predict(meta, driver)
    # sanity: the cases really differ
    expected = {None: f"v{cpu_level()}", "12.8": "cu128", "13.1": "cu131"}[driver]
    assert predicted == expected

    selected, site_packages = uv_install(find_links, tmp_path, driver)
    assert selected == wheel_name(predicted)
    label, built_for = installed(site_packages)
    assert label == predicted
    assert built_for == predicted


def test_pip_installs_the_plain_fallback(find_links: Path, tmp_path: Path) -> None:
    labelled = [p.name for p in find_links.glob("*.whl") if p.name != PLAIN_NAME]
    assert len(labelled) == len(VARIANTS)
    target = tmp_path / "target"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-index",
            "--find-links",
            str(find_links),
            "--target",
            str(target),
            "--no-compile",
            NAME,
        ],
        env=clean_env(tmp_path, PIP_DISABLE_PIP_VERSION_CHECK="1"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert PLAIN_NAME in result.stdout
    assert not any(name in result.stdout for name in labelled)
    label, built_for = installed(target)
    assert label is None
    assert built_for == "plain"
    assert not list(target.rglob("variant.json"))


def test_uv_ignores_a_wheel_missing_from_variants_json(
    find_links: Path, tmp_path: Path, cli: Cli
) -> None:
    links = tmp_path / "links"
    shutil.copytree(find_links, links)
    stale = variants_meta(links)
    driver = "13.1"
    # A wheel that would win under CUDA 13.1 (more properties than cu131), added
    # after variants.json was written.
    label = "cu131_v1"
    properties = ("nvidia :: cuda_version_lower_bound :: 13.1", "x86_64 :: level :: v1")
    newcomer = tag(plain_wheel(tmp_path / "plain", label), links, label, properties)
    with zipfile.ZipFile(newcomer) as zf:
        newcomer_meta = loads(
            zf.read(f"{NAME}-{VERSION}.dist-info/variant.json"), source=newcomer.name
        )
    assert predict(merge(stale, newcomer_meta), driver) == label  # it would win
    assert predict(stale, driver) == "cu131"

    code, _, stderr = cli("variants-json", "--check", links)
    assert code != 0
    assert f"label {label!r} of a wheel is missing" in stderr

    selected, site_packages = uv_install(links, tmp_path / "stale", driver)
    assert selected == wheel_name("cu131")
    assert installed(site_packages) == ("cu131", "cu131")

    # once the file is brought up to date, uv does pick it
    code, _, stderr = cli("variants-json", links)
    assert code == 0, stderr
    assert predict(variants_meta(links), driver) == label
    selected, site_packages = uv_install(links, tmp_path / "fresh", driver)
    assert selected == wheel_name(label)
    assert installed(site_packages) == (label, label)
