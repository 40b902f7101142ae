"""The tables ``argos train`` prints, for the builtin and the LLM generator alike: one row per
training unit, the notes the table leaves out, and the LLM usage per agent."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from argos.training.driver import TrainSummary


def fmt_score(x: float | None) -> str:
    """A score with three decimals, or a dash when there is none."""
    return "–" if x is None else f"{x:.3f}"


def summary_table(summary: TrainSummary) -> Table:
    """One row per training unit: rules, candidates tried, train/validation F1, verification."""
    table = Table(
        title=f"{summary.dataset}: {len(summary.units)} unit(s), one rule set per "
        f"{summary.granularity}, {summary.generator} generator"
    )
    for col in ("unit", "rules", "tried", "train F1", "valid. F1", "verified", "time (s)"):
        table.add_column(col, justify="left" if col in ("unit", "rules") else "right")
    for u in summary.units:
        verified = (
            "yes" if u.verified else ("no: " + "; ".join(u.problems)[:60] if u.problems else "–")
        )
        table.add_row(
            u.unit,
            "\n".join(u.rules) or ("(none) " + "; ".join(u.notes)),
            str(u.tried),
            fmt_score(u.train_f1),
            fmt_score(u.validation_f1),
            verified,
            f"{u.seconds:.1f}",
        )
    return table


def unit_notes(summary: TrainSummary, limit: int = 5) -> list[str]:
    """What the table leaves out: the notes of units that did export rules (e.g. the
    unsupervised rule of a unit without labels), at most ``limit`` lines."""
    noted = [u for u in summary.units if u.rules and u.notes]
    lines = [f"note: {u.unit}: {'; '.join(u.notes)}" for u in noted[:limit]]
    if len(noted) > limit:
        lines.append(f"note: ... and {len(noted) - limit} more unit(s) (see summary.json)")
    return lines


INCUMBENT_VERDICTS = (
    "the LLM improved on the builtin rule set",
    "kept the builtin rule set",
    "selected on",  # held-out train events (no validation event)
    "exported the builtin rule set",
)
"""How an LLM unit's notes begin when they say what became of the builtin incumbent."""


def incumbent_lines(summary: TrainSummary) -> list[str]:
    """One line per LLM unit that started from the builtin rule set: whether the LLM improved on
    it on the selection data, and by how much."""
    return [
        f"{u.unit}: {note}"
        for u in summary.units
        for note in u.notes
        if note.startswith(INCUMBENT_VERDICTS)
    ]


def usage_table(usage: dict[str, Any]) -> Table:
    """Calls, tokens and cost per agent."""
    table = Table(title="LLM usage")
    for col in ("agent", "calls", "cached", "prompt tokens", "completion tokens", "cost USD"):
        table.add_column(col, justify="left" if col == "agent" else "right")
    rows = {**usage.get("agents", {}), "total": usage.get("total", {})}
    for agent, u in rows.items():
        table.add_row(
            agent,
            str(u.get("calls", 0)),
            str(u.get("cached_calls", 0)),
            f"{u.get('prompt_tokens', 0):,}",
            f"{u.get('completion_tokens', 0):,}",
            f"{u.get('cost_usd', 0.0):.4f}",
        )
    return table
