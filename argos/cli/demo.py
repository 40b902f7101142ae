"""``argos demo``: the main job on the embedded default (what ``make demo`` runs).

Trains rules on the synthetic demo set with the builtin generator (no LLM needed), evaluates them
on the demo's test split next to two baselines, prints the table and where the rule sets are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from argos.cli.console import output_console
from argos.cli.deployment import deployment_refusals
from argos.cli.options import OUT, WORKERS
from argos.data.demo import DEMO_SERIES, make_demo_dataset
from argos.evaluation.harness import evaluate
from argos.metrics import format_score
from argos.training.builtin.method import BuiltinGenerator
from argos.training.driver import OutDirInUseError, claim_out_dir, train_dataset

DEMO_BASELINES = ("robust-zscore", "spectral-residual")


def demo_legend() -> list[str]:
    """The two lines under the demo table: what event-PA and pooled F1 mean, what the data is
    (the incident kinds are listed in datasets/README.md and :mod:`argos.data.demo`)."""
    kinds = {k for ks in DEMO_SERIES.values() for k in ks}
    return [
        "event-PA: an incident is found if any alarm is in it; pooled F1 sums all series",
        f"data: {len(DEMO_SERIES)} synthetic service metrics, 14 days at 5 min, "
        f"{len(kinds)} kinds of incident",
    ]


def register(app: typer.Typer) -> None:
    @app.command()
    def demo(
        out: Annotated[Path, OUT("Folder for the exported demo rule sets.")] = Path("runs/demo"),
        workers: Annotated[int, WORKERS("Worker processes.")] = 2,
    ) -> None:
        """Train rules on the synthetic demo set (builtin generator), evaluate them, show them."""
        console = output_console()
        console.print("using the builtin generator (no LLM needed for the demo)")
        dataset = make_demo_dataset()
        try:
            # The demo's folder holds the demo's last run: replace it, never mix two runs.
            replaced = claim_out_dir(out, overwrite=True)
        except OutDirInUseError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        with console.status("training rules on the demo train/validation parts..."):
            summary = train_dataset(
                dataset,
                generator=BuiltinGenerator(),
                out_dir=out,
                workers=workers,
                deployment=deployment_refusals,
            )
        with console.status("evaluating on the demo test part next to two baselines..."):
            result = evaluate(
                dataset, ["argos-builtin", *DEMO_BASELINES], workers=workers, with_scores=False
            )
        agg = result.summary()
        table = Table(
            title=f"demo: {len(dataset)} series, test part only, event-PA (mean over series)"
        )
        for col in ("method", "precision", "recall", "F1", "pooled F1"):
            table.add_column(col, justify="left" if col == "method" else "right")
        for name in result.methods:
            mean = agg[name]["event_pa"]["mean"]
            pooled = agg[name]["event_pa"]["pooled"]
            table.add_row(
                name,
                format_score(mean["precision"]),
                format_score(mean["recall"]),
                format_score(mean["f1"]),
                format_score(pooled["f1"]),
            )
        console.print(table)
        for line in demo_legend():
            console.print(line, markup=False, highlight=False)
        n_rules = sum(len(u.rules) for u in summary.units)
        console.print(
            f"{n_rules} rules exported to {out}/<series>/ (read them: they are plain Python), "
            f"run summary in {out / 'summary.json'}"
        )
        first = next((u for u in summary.units if u.path and u.rules), None)
        if first is not None:
            console.print(f"for example: {Path(first.path or '') / (first.rules[0] + '.py')}")
        console.print(f"see every series, detection and rule: argos report {out}")
        if replaced:
            console.print(f"(replaced the previous demo run in {out})")
