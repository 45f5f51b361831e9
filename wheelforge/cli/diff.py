"""The human rendering of ``wheelforge diff`` (``--json`` prints the report itself)."""

from __future__ import annotations

from wheelforge.diff import Cause, DiffReport, MemberDiff, WheelDiff
from wheelforge.render import human_size, table


def _size(size: int | None) -> str:
    return "-" if size is None else human_size(size)


def _sizes(a: int | None, b: int | None) -> str:
    return _size(a) if a == b else f"{_size(a)} -> {_size(b)}"


def _where(member: MemberDiff) -> str:
    if member.status != "changed":
        return "only in " + ("A" if member.status == "only-a" else "B")
    if member.sections:
        shown = [
            s.name if s.size_a == s.size_b else f"{s.name} ({_sizes(s.size_a, s.size_b)})"
            for s in member.sections[:8]
        ]
        more = len(member.sections) - len(shown)
        return ", ".join(shown) + (f", +{more} more" if more else "")
    if member.first_difference is not None:
        return f"from byte {member.first_difference}"
    return f"{sum(1 for line in member.lines if line[:1] in '+-')} line(s)"


def _cause_text(cause: Cause) -> str:
    if cause.a or cause.b:
        return f"{cause.kind}: A {cause.a or '-'} / B {cause.b or '-'}"
    return cause.kind


def _render_pair(pair: WheelDiff) -> None:
    if pair.identical:
        print(f"{pair.a.name}: identical")
        return
    names = pair.a.name if pair.a.name == pair.b.name else f"{pair.a.name} vs {pair.b.name}"
    if pair.members:
        table(
            ["member", "kind", "size", "where", "cause"],
            [
                [
                    m.name,
                    m.kind,
                    _sizes(m.size_a, m.size_b),
                    _where(m),
                    ", ".join(c.kind for c in m.causes) or "-",
                ]
                for m in pair.members
            ],
            title=f"{names}: differs",
        )
    else:
        print(f"{names}: differs")
    for member in pair.members:
        if [c.kind for c in member.causes] == ["record"]:
            continue  # RECORD's changed hashes repeat the table
        for line in member.lines:
            print(f"  {member.name}: {line}")
    for note in pair.archive:
        print(f"  archive: {note}")
    for cause in pair.causes:
        print(f"  cause {_cause_text(cause)}")
        print(f"    hint: {cause.hint}")


def render_report(report: DiffReport) -> None:
    for pair in report.pairs:
        _render_pair(pair)
    for path in report.only_a:
        print(f"only in A: {path}")
    for path in report.only_b:
        print(f"only in B: {path}")
    same = sum(1 for p in report.pairs if p.identical)
    unpaired = len(report.only_a) + len(report.only_b)
    summary = f"{len(report.pairs)} pair(s): {same} identical, {len(report.pairs) - same} differ"
    if unpaired:
        summary += f"; {unpaired} wheel(s) without a partner"
    print(summary)
