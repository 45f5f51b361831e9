"""Agreement with uv: over a grid of simulated hardware profiles, ``wheelforge select``
picks the same wheel as ``uv pip install --preview-features wheel-variants`` (uv 0.13.8)
on the same served index, for every namespace uv has a builtin provider for here
(``nvidia``, simulated with uv's own override variables, and ``x86_64``, which uv always
reads from this machine's ``/proc/cpuinfo``).

Where uv has no provider (``amd``, and any third-party plugin namespace) the two differ
on purpose: uv treats the namespace as unsupported, wheelforge detects ``amd`` itself and
ranks it as the spec says. Those cases are checked against the spec's ranking
(``variants.ranking``), and documented in docs/selection.md, "Agreement with uv".

One release set ``agree 1.0`` serves every case: each wheel's module says which variant
it was built for (``BUILT_FOR``), so the test also checks what uv really installed.
"""

from __future__ import annotations

import platform
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import build_release
from tests.installers import clean_env, selected, uv_install
from wheelforge.cli import main
from wheelforge.publish.serve import serving
from wheelforge.select.install import interpreter
from wheelforge.select.machine import Machine
from wheelforge.select.profiles import Profile
from wheelforge.select.selection import Selection, parse_requirement, select
from wheelforge.simple_api import read_project_page
from wheelforge.variants import supported
from wheelforge.variants.config import default_config
from wheelforge.variants.metadata import VariantMetadata, loads
from wheelforge.variants.providers import Provider
from wheelforge.variants.ranking import best

ON_X86_64_LINUX = sys.platform == "linux" and platform.machine() == "x86_64"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not ON_X86_64_LINUX,
        reason="uv's x86_64 provider reads /proc/cpuinfo: needs x86_64 Linux",
    ),
]

NAME, VERSION = "agree", "1.0"
PLAIN_NAME = f"{NAME}-{VERSION}-py3-none-any.whl"
META = "Summary: Agreement with uv\nDescription-Content-Type: text/plain\n"
# What uv sees of the CPU: it has no override, so every profile carries this machine's level.
LEVEL = (
    supported.x86_64_level(supported.cpuinfo_flags(Path("/proc/cpuinfo").read_text()))
    if ON_X86_64_LINUX
    else 1
)
CPU = f"v{LEVEL}" if LEVEL >= 3 else "null"  # the pick without a GPU (v1/v2 have no wheel)

ACME = "acme"  # a third-party provider namespace: a plugin neither uv nor wheelforge runs
ACME_LABEL = "acme_cpu"

# label -> properties. uv's builtin namespaces (nvidia: lower and upper CUDA bound, SM;
# x86_64: level), one amd variant (no provider in uv), and the null variant.
VARIANTS: dict[str, tuple[str, ...]] = {
    "cu118": ("nvidia :: cuda_version_lower_bound :: 11.8",),
    "cu120": ("nvidia :: cuda_version_lower_bound :: 12.0",),
    # lower bound 12.0 and upper bound 13.0: beats cu120 (one more property) on 12.x
    "cu12x_upper13": (
        "nvidia :: cuda_version_lower_bound :: 12.0",
        "nvidia :: cuda_version_upper_bound :: 13.0",
    ),
    "cu126": ("nvidia :: cuda_version_lower_bound :: 12.6",),
    # CUDA and CPU: beats cu126 without an SM to go by (two namespaces)
    "cu126_v3": ("nvidia :: cuda_version_lower_bound :: 12.6", "x86_64 :: level :: v3"),
    # SM decides: 80 alone, or 80/86 (one value of a feature is enough; best one counts)
    "cu126_sm80": ("nvidia :: cuda_version_lower_bound :: 12.6", "nvidia :: sm_arch :: 80_real"),
    "cu126_sm8x": (
        "nvidia :: cuda_version_lower_bound :: 12.6",
        "nvidia :: sm_arch :: 80_real",
        "nvidia :: sm_arch :: 86_real",
    ),
    "cu128": ("nvidia :: cuda_version_lower_bound :: 12.8",),
    "cu128_sm90": ("nvidia :: cuda_version_lower_bound :: 12.8", "nvidia :: sm_arch :: 90_real"),
    "cu130": ("nvidia :: cuda_version_lower_bound :: 13.0",),
    "cu130_sm100": (
        "nvidia :: cuda_version_lower_bound :: 13.0",
        "nvidia :: sm_arch :: 100_real",
    ),
    "cu130_sm120": (
        "nvidia :: cuda_version_lower_bound :: 13.0",
        "nvidia :: sm_arch :: 120_real",
    ),
    "v3": ("x86_64 :: level :: v3",),
    "v4": ("x86_64 :: level :: v4",),
    "gfx942": ("amd :: gfx_arch :: gfx942",),
    # the third-party namespace, with this machine's CPU level: it would beat the CPU-only
    # wheel (one more property) wherever its provider counted
    ACME_LABEL: (f"{ACME} :: fast :: on", f"x86_64 :: level :: v{LEVEL}"),
    "null": (),
}


@dataclass(frozen=True)
class Case:
    profile: Profile
    expected: str  # the label the spec's ranking picks (a sanity check of the grid)


def case(driver: str | None, sm: str | None, expected: str) -> Case:
    name = "cpu-only" if driver is None else f"cuda{driver}" + (f"-sm{sm}" if sm else "-nosm")
    description = f"driver {driver or 'none'}, SM {sm or 'none'}, x86-64-v{LEVEL}"
    return Case(Profile(name, description, driver, sm, x86_64_level=LEVEL), expected)


CU126_CPU = "cu126_v3" if LEVEL >= 3 else "cu126"
GRID: tuple[Case, ...] = (
    case(None, None, CPU),
    case("11.8", None, "cu118"),
    case("11.8", "7.5", "cu118"),
    case("12.0", None, "cu12x_upper13"),
    case("12.0", "8.0", "cu12x_upper13"),
    case("12.4", None, "cu12x_upper13"),
    case("12.4", "8.6", "cu12x_upper13"),
    case("12.6", None, CU126_CPU),
    case("12.6", "7.5", CU126_CPU),
    case("12.6", "8.0", "cu126_sm80"),  # sm80 and sm8x tie on their keys: the label decides
    case("12.6", "8.6", "cu126_sm8x"),
    case("12.6", "8.9", "cu126_sm8x"),  # 86_real is a better SM value than 80_real on 8.9
    case("12.8", None, "cu128"),
    case("12.8", "8.6", "cu128"),  # the CUDA bound ranks before the SM
    case("12.8", "9.0", "cu128_sm90"),
    case("12.8", "12.0", "cu128"),
    case("12.9", None, "cu128"),
    case("12.9", "9.0", "cu128_sm90"),
    case("12.9", "10.0", "cu128"),
    case("13.0", None, "cu130"),
    case("13.0", "9.0", "cu130"),
    case("13.0", "10.0", "cu130_sm100"),
    case("13.0", "12.0", "cu130_sm120"),
    case("13.1", None, "cu130"),
    case("13.1", "8.9", "cu130"),
    case("13.1", "10.0", "cu130_sm100"),
    case("13.1", "12.0", "cu130_sm120"),
)

MI300X = Profile(
    "mi300x", "MI300X, ROCm 6.4", gfx_archs=("gfx942",), rocm_version="6.4", x86_64_level=LEVEL
)


@dataclass(frozen=True)
class Index:
    url: str
    meta: VariantMetadata  # the release's variants file, as served
    cache: Path  # one uv cache for the module


def wheel_name(label: str | None) -> str:
    return PLAIN_NAME if label is None else f"{NAME}-{VERSION}-py3-none-any-{label}.whl"


def acme_config() -> VariantMetadata:
    """The presets plus a third-party provider for ``acme``, last in priority."""
    presets = default_config()
    return VariantMetadata(
        (*presets.namespace_priorities, ACME),
        {**presets.providers, ACME: Provider(requires=("acme-provider",))},
    )


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Index]:
    root = tmp_path_factory.mktemp("agree")
    dist = build_release(
        root / "dist", NAME, VERSION, VARIANTS, work=root / "plain", metadata_extra=META,
        configs={ACME_LABEL: acme_config()},
    )  # fmt: skip
    site = root / "site"
    assert main(["index", str(dist), "--out", str(site)]) == 0
    with serving(site) as url:
        (variants,) = [f for f in read_project_page(url, NAME) if f.filename.endswith(".json")]
        meta = loads(variants.read(), source=variants.url)
        assert set(meta.variants) == set(VARIANTS)
        yield Index(url, meta, root / "uv-cache")


def acme_plugin(namespace: str, _provider: Provider | None = None) -> dict[str, list[str]] | None:
    """A stand-in for an installed ``acme`` plugin, run only when trusted."""
    return {"fast": ["on"]} if namespace == ACME else None


def wheelforge_select(
    url: str, profile: Profile, trusted: frozenset[str] = frozenset()
) -> Selection:
    python = interpreter()
    files = read_project_page(url, NAME)
    machine = Machine(profile.supported(), trusted=trusted, plugins=acme_plugin)
    return select(
        parse_requirement(NAME), files, machine, tags=python.tags, python_version=python.version
    )


def uv_select(index: Index, profile: Profile, work: Path) -> tuple[str, str, str]:
    """(the file uv selects for ``profile``, the installed module's BUILT_FOR, uv's log)."""
    env = clean_env(work, UV_CACHE_DIR=str(index.cache), **profile.provider_env())
    venv = work / "venv"
    result = uv_install(venv, index.url, NAME, env)
    assert result.returncode == 0, result.stderr
    chosen = selected(result.stderr, NAME)
    (site_packages,) = venv.glob("lib/python*/site-packages")
    namespace: dict[str, object] = {}
    exec((site_packages / NAME / "__init__.py").read_text(), namespace)
    return chosen, str(namespace["BUILT_FOR"]), result.stderr


def skip_on_a_real_nvidia_driver() -> None:
    """uv detects a real driver whenever no override says otherwise."""
    if any(Path(p).exists() for p in ("/proc/driver/nvidia/version", "/sys/module/nvidia/version")):
        pytest.skip("uv would see this machine's real NVIDIA driver")


def test_the_grid_tells_profiles_apart() -> None:
    assert len(GRID) >= 20
    assert len({c.profile.name for c in GRID}) == len(GRID)
    assert len({c.expected for c in GRID}) >= 10


@pytest.mark.parametrize("case", GRID, ids=[c.profile.name for c in GRID])
def test_wheelforge_and_uv_pick_the_same_wheel(index: Index, tmp_path: Path, case: Case) -> None:
    profile = case.profile
    if profile.cuda_driver is None:
        skip_on_a_real_nvidia_driver()
    ours = wheelforge_select(index.url, profile)
    assert ours.chosen is not None, ours.notes
    # the grid means something: this is what the spec's ranking picks here
    spec = best(index.meta, profile.supported(), plain=True)
    assert spec is not None
    assert (ours.label, spec.label) == (case.expected, case.expected)

    uv_file, built_for, _ = uv_select(index, profile, tmp_path)
    assert ours.chosen.filename == uv_file == wheel_name(case.expected)
    assert built_for == ours.label


def test_amd_uv_has_no_provider(index: Index, tmp_path: Path) -> None:
    """On an MI300X (gfx942), wheelforge picks the ``gfx942`` wheel, as the spec's ranking
    says (``amd`` ranks before ``x86_64`` in the release's namespace priorities). uv 0.13.8
    has no ``amd`` provider: ``AMD_VARIANT_PROVIDER_FORCE_GFX_ARCH`` means nothing to it,
    the namespace counts as unsupported, and it installs the best wheel without it: the
    CPU-level one. A documented difference (docs/selection.md, "Agreement with uv")."""
    skip_on_a_real_nvidia_driver()
    ours = wheelforge_select(index.url, MI300X)
    assert ours.chosen is not None and ours.label == "gfx942"
    spec = best(index.meta, MI300X.supported(), plain=True)
    assert spec is not None and spec.label == "gfx942"

    # uv: the same machine with amd unsupported
    without_amd = {ns: f for ns, f in MI300X.supported().items() if ns != "amd"}
    uv_spec = best(index.meta, without_amd, plain=True)
    assert uv_spec is not None and uv_spec.label == CPU
    assert MI300X.provider_env()["AMD_VARIANT_PROVIDER_FORCE_GFX_ARCH"] == "gfx942"
    uv_file, built_for, log = uv_select(index, MI300X, tmp_path)
    assert uv_file == wheel_name(CPU) != ours.chosen.filename
    assert built_for == CPU
    assert "Skipping unsupported wheel variant provider" in log and "namespace `amd`" in log


def test_third_party_namespace_is_unsupported_by_both(index: Index, tmp_path: Path) -> None:
    """``acme :: fast :: on`` comes from a plugin (``requires = ["acme-provider"]``) that
    neither installer runs without trust: uv never picks it, nor does wheelforge unless
    told to trust ``acme``; it says why in its notes."""
    skip_on_a_real_nvidia_driver()
    profile = GRID[0].profile  # no GPU: the acme wheel would win if acme counted
    ours = wheelforge_select(index.url, profile)
    uv_file, built_for, log = uv_select(index, profile, tmp_path)
    assert "Skipping unsupported wheel variant provider for namespace `acme`" in log
    assert ours.chosen is not None
    assert ours.chosen.filename == uv_file == wheel_name(CPU)
    assert built_for == CPU
    assert any(
        note.startswith(f"{ACME}: provider 'acme-provider' is a third-party plugin")
        and "count as unsupported" in note
        for note in ours.notes
    ), ours.notes
    (acme,) = [c for c in ours.candidates if c.label == ACME_LABEL]
    assert acme.status.startswith("incompatible: acme :: fast :: on")

    # trusted (here: a stand-in plugin that supports it), the acme wheel wins, as ranked
    trusting = wheelforge_select(index.url, profile, trusted=frozenset({ACME}))
    assert trusting.label == ACME_LABEL
