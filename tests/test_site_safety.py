"""A static site under hostile conditions: two writers at once, symlinks planted in the
site, and ``wheelforge serve`` facing listings, dot-files, symlinks and idle clients."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tests.test_publish import big_release
from wheelforge.variants.metadata import loads


def publish_cli(dist: Path, site: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "wheelforge", "publish", str(dist), "--to", str(site), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def site_labels(site: Path) -> tuple[set[str], set[str]]:
    """(labels of the variant wheels the page lists, labels the variants file lists)."""
    files = json.loads((site / "simple" / "demo" / "index.json").read_text())["files"]
    wheels = {
        f["filename"].rsplit("-", 1)[-1].removesuffix(".whl")
        for f in files
        if f["filename"].count("-") == 5
    }
    variants = next(f for f in files if f["filename"].endswith("-variants.json"))
    path = site / "simple" / "demo" / variants["url"]
    return wheels, set(loads(path.read_bytes(), source=str(path)).variants)


# -- two writers at once --------------------------------------------------------------


def test_parallel_publishes_of_halves_merge_every_label(tmp_path: Path) -> None:
    whole = big_release(tmp_path, variants=6)
    wheels = sorted(p for p in whole.iterdir() if p.name.count("-") == 5)
    plain = whole / "demo-1.0-py3-none-any.whl"
    halves = []
    for i, part in enumerate((wheels[::2], wheels[1::2])):
        dist = tmp_path / f"half{i}"
        dist.mkdir()
        for wheel in [plain, *part]:
            shutil.copy2(wheel, dist / wheel.name)
        halves.append(dist)
    every = {w.name.rsplit("-", 1)[-1].removesuffix(".whl") for w in wheels}
    deadline = time.monotonic() + 120
    for round_ in range(10):
        site = tmp_path / f"site{round_}"
        runs = [publish_cli(dist, site) for dist in halves]
        for run in runs:
            _, err = run.communicate(timeout=max(1, deadline - time.monotonic()))
            assert run.returncode == 0, err
        listed, offered = site_labels(site)
        assert listed == every, round_
        assert offered == listed, f"round {round_}: variants file lists {sorted(offered)}"
