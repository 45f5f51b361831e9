"""Output for people (rich tables on a terminal, plain aligned lines elsewhere) and
for machines (``--json``)."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any


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


@contextmanager
def job_progress(job_ids: Sequence[str]) -> Iterator[Callable[[str, str], None]]:
    """A ``progress(job_id, message)`` callback: a live table of jobs on a terminal,
    one plain line per message elsewhere (CI logs)."""
    if not sys.stderr.isatty():
        yield lambda job, message: info(f"[{job}] {message}")
        return
    from rich.console import Console
    from rich.live import Live
    from rich.table import Table

    state = dict.fromkeys(job_ids, "waiting")
    lock = threading.Lock()

    def render() -> Table:
        view = Table("job", "status", box=None)
        for job, message in state.items():
            view.add_row(job, message)
        return view

    with Live(render(), console=Console(stderr=True), refresh_per_second=8) as live:

        def update(job: str, message: str) -> None:
            with lock:
                state[job] = message
                live.update(render())

        yield update
