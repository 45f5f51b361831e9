"""Output for people (rich tables on a terminal, plain aligned lines elsewhere) and
for machines (``--json``)."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.table import Table


def emit_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")


def table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], *, title: str | None = None
) -> None:
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        rich_table = Table(title=title)
        for header in headers:
            rich_table.add_column(header, overflow="fold")  # never hide part of a filename
        for row in rows:
            rich_table.add_row(*row)
        Console().print(rich_table)
        return
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    if title:
        print(title)
    for line in (headers, *rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())


def human_size(size: int) -> str:
    """``812 B``, ``6.7 KB``, ``12.3 MB``, ``1.1 GB`` (powers of 1024)."""
    value = float(size)
    for unit in ("B", "KB", "MB"):
        if value < 1024:
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


def info(message: str) -> None:
    sys.stderr.write(message + "\n")  # one write: lines from parallel jobs stay whole


@dataclass
class _JobState:
    message: str = "waiting"
    started: float | None = None
    ended: float | None = None


class JobProgress:
    """``progress(job, message)`` for the jobs of a run, each shown with its place
    (``[2/3] cpu-x86-64-v3: building ...``), and ``finish(job, status)`` when one ends,
    which counts it (``2/3 finished``). Steps outside the count (the sdist) show as
    ``[sdist] ...``. ``write`` gets each line in plain mode; ``None``: a live table."""

    def __init__(
        self,
        job_ids: Sequence[str],
        steps: Sequence[str] = (),
        write: Callable[[str], None] | None = info,
    ) -> None:
        self.places = {job: f"{index}/{len(job_ids)}" for index, job in enumerate(job_ids, 1)}
        self.states = {name: _JobState() for name in (*steps, *job_ids)}
        self.total = len(job_ids)
        self.finished = 0
        self.write = write
        self.lock = threading.Lock()

    def _name(self, job: str) -> str:
        place = self.places.get(job)
        return f"[{place}] {job}:" if place else f"[{job}]"

    def __call__(self, job: str, message: str) -> None:
        with self.lock:
            state = self.states.setdefault(job, _JobState())
            state.message = message
            if state.started is None:
                state.started = time.monotonic()
            if self.write is not None:
                self.write(f"{self._name(job)} {message}")

    def finish(self, job: str, status: str) -> None:
        with self.lock:
            state = self.states.setdefault(job, _JobState())
            if state.ended is not None:
                return
            state.message, state.ended = status, time.monotonic()
            if job in self.places:
                self.finished += 1
            if self.write is not None:
                self.write(f"{self._name(job)} {status} ({self.finished}/{self.total} finished)")

    def render(self) -> Table:
        from rich.table import Table

        now = time.monotonic()
        with self.lock:
            view = Table(
                "", "job", "time", "status", box=None,
                title=f"{self.finished}/{self.total} jobs finished",
            )  # fmt: skip
            for job, state in self.states.items():
                place = self.places.get(job, "")
                elapsed = ""  # a step outside the count (the sdist) never says it ended
                if place and state.started is not None:
                    elapsed = f"{(state.ended or now) - state.started:.0f}s"
                view.add_row(place, job, elapsed, state.message)
        return view


@contextmanager
def job_progress(job_ids: Sequence[str], *, steps: Sequence[str] = ()) -> Iterator[JobProgress]:
    """A :class:`JobProgress`: a live table of the jobs on a terminal (their places,
    time and last message, and how many finished), one plain line per message elsewhere
    (CI logs)."""
    if not sys.stderr.isatty():
        yield JobProgress(job_ids, steps)
        return
    from rich.console import Console
    from rich.live import Live

    progress = JobProgress(job_ids, steps, write=None)
    with Live(console=Console(stderr=True), refresh_per_second=4, get_renderable=progress.render):
        yield progress
