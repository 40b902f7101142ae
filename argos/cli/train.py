"""``argos train``: generate, verify and export rule sets for a dataset (builtin generator)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from argos import catalog
from argos.builtin_generator import SearchConfig
from argos.series import DataError, Dataset, SplitSpec
from argos.training import (
    BuiltinGenerator,
    GeneratorOutput,
    TrainSummary,
    UnitResult,
    default_workers,
    train_dataset,
)


def _fmt(x: float | None) -> str:
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
            _fmt(u.train_f1),
            _fmt(u.validation_f1),
            verified,
            f"{u.seconds:.1f}",
        )
    return table


def _apply_granularity(dataset: Dataset, granularity: str | None) -> Dataset:
    if granularity is None:
        return dataset
    split = SplitSpec(dataset.split.train_fraction, dataset.split.validation_fraction, granularity)
    return Dataset(dataset.name, dataset.series, split, dataset.partitions, dataset.meta)


def register(app: typer.Typer) -> None:
    @app.command()
    def train(
        dataset: Annotated[str, typer.Option(help="Dataset name (kpi, yahoo, nab, demo) or PATH.")],
        series: Annotated[str | None, typer.Option(help="Train only this series id.")] = None,
        partition: Annotated[
            str | None, typer.Option(help="Train only this partition (e.g. A1).")
        ] = None,
        generator: Annotated[
            str, typer.Option(help="Rule generator: 'builtin' (default without an LLM).")
        ] = "builtin",
        out: Annotated[
            Path, typer.Option(help="Folder for the rule sets and summary.json.")
        ] = Path("runs/train"),
        trials: Annotated[
            int | None,
            typer.Option(min=1, help="Evaluate at most N structures per unit (seeded subset)."),
        ] = None,
        seed: Annotated[int, typer.Option(help="Seed (only used with --trials).")] = 0,
        workers: Annotated[
            int | None, typer.Option(min=1, help="Worker processes (default: CPU count, <= 4).")
        ] = None,
        granularity: Annotated[
            str | None, typer.Option(help="'series' or 'partition' (dataset default).")
        ] = None,
        data_dir: Annotated[
            Path | None, typer.Option(help="Benchmark data folder (default $ARGOS_DATA_DIR).")
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print summary JSON.")] = False,
    ) -> None:
        """Train rule sets: one per series or partition, verified in the sandbox, then exported."""
        console = Console(stderr=as_json)
        if generator != "builtin":
            from argos.llm_config import is_llm_configured

            if not is_llm_configured():
                typer.echo(
                    f"error: generator {generator!r} needs an LLM endpoint and none is "
                    "configured; use --generator builtin",
                    err=True,
                )
                raise typer.Exit(2)
            typer.echo(
                f"error: generator {generator!r} is not wired into argos train yet; "
                "use --generator builtin",
                err=True,
            )
            raise typer.Exit(2)
        try:
            from argos.llm_config import is_llm_configured

            llm = is_llm_configured()
        except Exception:  # a broken LLM config must not stop the offline path
            llm = False
        note = "" if llm else " (no LLM configured)"
        console.print(f"using the builtin generator{note}")
        if granularity not in (None, "series", "partition"):
            typer.echo("error: --granularity must be 'series' or 'partition'", err=True)
            raise typer.Exit(2)
        try:
            ds = catalog.load_dataset(dataset, data_dir=data_dir)
        except DataError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        ds = _apply_granularity(ds, granularity)
        gen = BuiltinGenerator(SearchConfig(trials=trials, seed=seed))
        n_workers = workers or default_workers()
        try:
            from argos.training import training_units

            n_units = len(training_units(ds, series_id=series, partition=partition))
        except (KeyError, ValueError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        tried = 0
        best: float | None = None
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("candidates {task.fields[tried]}  best valid. F1 {task.fields[best]}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        ) as progress:
            task = progress.add_task(f"training {ds.name}", total=n_units, tried=0, best="–")

            def on_unit(res: UnitResult, output: GeneratorOutput) -> None:
                nonlocal tried, best
                tried += res.tried
                if res.validation_f1 is not None:
                    best = res.validation_f1 if best is None else max(best, res.validation_f1)
                progress.update(
                    task,
                    advance=1,
                    description=f"{ds.name}: {res.unit}",
                    tried=tried,
                    best=_fmt(best),
                )

            summary = train_dataset(
                ds,
                generator=gen,
                out_dir=out,
                series_id=series,
                partition=partition,
                workers=n_workers,
                on_unit=on_unit,
            )
        if as_json:
            typer.echo(json.dumps(summary.to_json(), indent=2))
        else:
            console.print(summary_table(summary))
            console.print(f"rule sets and summary.json written to {out}")
        if any(u.problems for u in summary.units):
            raise typer.Exit(1)
