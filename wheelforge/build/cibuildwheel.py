"""cibuildwheel as the builder, for manylinux wheels built in CI containers.

Per job, the variant's settings become cibuildwheel's environment: the interpreter
(``CIBW_BUILD``), config-settings, the job's environment, the manylinux image of its
toolchain (CUDA or ROCm images where the variant compiles device code), and a repair
command that runs ``wheelforge repair`` inside the container, so the accelerator policy
(driver libraries never grafted, CUDA runtimes excluded with their Requires-Dist) is the
same as in a local build. wheelforge then tags and compresses the output on the host.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import IO

from wheelforge import __version__
from wheelforge.build.logs import BuildFailed, run_logged
from wheelforge.errors import InvalidInput
from wheelforge.matrix import ENV_NAME_PATTERN, Job

# Images with the toolchain inside: PyTorch's manylinux builders carry CUDA and ROCm.
DEFAULT_IMAGES = {
    "host": "manylinux_2_28",
    "nvcc": "pytorch/manylinux2_28-builder:cuda{version}",
    "hipcc": "pytorch/manylinux2_28-builder:rocm{version}",
}


def manylinux_image(job: Job) -> str:
    if job.manylinux_image:
        return job.manylinux_image
    template = DEFAULT_IMAGES[job.toolchain]
    if "{version}" in template and not job.toolchain_version:
        raise InvalidInput(
            f"job {job.id}: toolchain {job.toolchain} needs toolchain-version (the image's "
            "CUDA or ROCm version) or manylinux-image to build with cibuildwheel"
        )
    return template.format(version=job.toolchain_version)


def build_identifier(job: Job, arch: str = "x86_64") -> str:
    """``cp311-manylinux_x86_64`` for ``python = "3.11"``; ``"3"``: this interpreter's."""
    if job.python == "3":
        version = f"{sys.version_info.major}{sys.version_info.minor}"
    else:
        major, _, minor = job.python.partition(".")
        if not (major.isdigit() and minor.isdigit()):
            raise InvalidInput(
                f"job {job.id}: python {job.python!r}: cibuildwheel builds need X.Y or 3"
            )
        version = f"{major}{minor}"
    return f"cp{version}-manylinux_{arch}"


def repair_command(job: Job, wheelforge_requirement: str | None = None) -> str:
    """The container's repair step: ``wheelforge repair`` with the job's policy."""
    requirement = wheelforge_requirement or f"wheelforge=={__version__}"
    repair = ["wheelforge", "repair", "{wheel}", "-o", "{dest_dir}",
              "--runtime", job.accelerator_runtime]  # fmt: skip
    for soname in job.repair_exclude:
        repair += ["--exclude", soname]
    if job.toolchain == "nvcc" and job.toolchain_version:
        repair += ["--cuda-version", job.toolchain_version]
    if not job.repair_isa_check:
        repair.append("--no-isa-check")
    repair += ["--max-size-mb", f"{job.max_size_mb:g}", "--oversize", job.oversize]
    # {wheel} and {dest_dir} are cibuildwheel's placeholders: keep them unquoted.
    quoted = " ".join(part if part.startswith("{") else shlex.quote(part) for part in repair)
    return f"python -m pip install {shlex.quote(requirement)} && {quoted}"


def cibuildwheel_env(
    job: Job,
    *,
    arch: str = "x86_64",
    source_date_epoch: str | None = None,
    wheelforge_requirement: str | None = None,
) -> dict[str, str]:
    """The ``CIBW_*`` variables that build ``job`` (nothing else is needed)."""
    environment = dict(job.env)
    if source_date_epoch is not None:
        environment["SOURCE_DATE_EPOCH"] = source_date_epoch
    env = {
        "CIBW_BUILD": build_identifier(job, arch),
        "CIBW_ARCHS_LINUX": arch,
        f"CIBW_MANYLINUX_{arch.upper()}_IMAGE": manylinux_image(job),
        "CIBW_REPAIR_WHEEL_COMMAND_LINUX": repair_command(job, wheelforge_requirement),
        "CIBW_BUILD_VERBOSITY": "1",
    }
    if job.config_settings:
        env["CIBW_CONFIG_SETTINGS_LINUX"] = " ".join(
            shlex.quote(f"{key}={value}") for key, value in job.config_settings
        )
    if environment:
        env["CIBW_ENVIRONMENT_LINUX"] = environment_string(environment, job=job.id)
    return env


def environment_string(variables: Mapping[str, str], *, job: str) -> str:
    """``NAME="value" …`` as cibuildwheel's ``CIBW_ENVIRONMENT`` parser reads it back:
    exactly these variables, these values, and no command run.

    cibuildwheel parses the string with bashlex and evaluates each value itself
    (``cibuildwheel.environment.parse_environment``), which is not quite bash: single
    quotes with an embedded ``'`` come back mangled, a bare ``if`` or ``a=b`` is a parse
    error, and ``<(``/``>(`` fail even inside quotes. Double quotes with ``\\``, ``"``,
    ``$``, backquote, ``<`` and ``>`` backslash-escaped read back verbatim."""
    parts = []
    for name, value in sorted(variables.items()):
        if not ENV_NAME_PATTERN.fullmatch(name):
            raise InvalidInput(f"job {job}: env {name!r}: expected a variable name")
        parts.append(f"{name}={_double_quoted(value)}")
    return " ".join(parts)


def _double_quoted(value: str) -> str:
    return '"' + re.sub(r'([\\"$`<>])', r"\\\1", value) + '"'


def print_build_identifiers(env: Mapping[str, str], project: Path) -> list[str]:
    """What cibuildwheel would build with ``env`` (no container is started)."""
    command = [sys.executable, "-m", "cibuildwheel", "--print-build-identifiers",
               "--platform", "linux", str(project)]  # fmt: skip
    result = subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True,
                            check=False)  # fmt: skip
    if result.returncode != 0:
        raise BuildFailed(f"cibuildwheel --print-build-identifiers failed: {result.stderr.strip()}")
    return result.stdout.split()


def run_cibuildwheel(
    job: Job,
    project: Path,
    output_dir: Path,
    *,
    env: Mapping[str, str],
    log: IO[str],
    log_path: Path,
    source_date_epoch: str | None,
) -> Path:
    """Build and repair ``job`` in its manylinux container; the one repaired wheel."""
    output_dir.mkdir(parents=True, exist_ok=True)
    variables = cibuildwheel_env(job, source_date_epoch=source_date_epoch)
    command = [sys.executable, "-m", "cibuildwheel", "--platform", "linux",
               "--output-dir", str(output_dir), str(project)]  # fmt: skip
    run_logged(command, env={**env, **variables}, log=log, what="cibuildwheel",
               log_path=log_path)  # fmt: skip
    wheels = sorted(output_dir.glob("*.whl"))
    if len(wheels) != 1:
        raise BuildFailed(
            f"cibuildwheel produced {len(wheels)} wheels, expected one; see {log_path}"
        )
    return wheels[0]
