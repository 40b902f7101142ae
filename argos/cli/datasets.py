"""``argos datasets``: which datasets exist, where they were looked for, and what is in them."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from argos.cli.console import output_console
from argos.cli.options import (
    MAX_SERIES,
    OUT,
    SERIES,
    TRAIN_FRACTION,
    DatasetNameArgument,
    JsonTableOption,
)
from argos.data import catalog
from argos.data.series import DataError, UnknownSeries

DataDirOption = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help=f"Folder holding kpi/, yahoo_s5/, nab/ (default: ${catalog.DATA_DIR_ENV}).",
        show_default=False,
    ),
]


def register(app: typer.Typer) -> None:
    """Add the ``datasets`` command group (``list``, ``show``, ``plot``) to ``app``."""
    group = typer.Typer(
        help="Benchmark and demo datasets: what is available and what is in them.",
        no_args_is_help=True,
    )

    @group.command("list")
    def list_datasets(data_dir: DataDirOption = None, as_json: JsonTableOption = False) -> None:
        """Built-in dataset names, where their data was looked for, and whether it was found."""
        root = catalog.resolve_data_dir(data_dir)
        origin = (
            "--data-dir"
            if data_dir is not None
            else (catalog.DATA_DIR_ENV if root is not None else None)
        )
        rows: list[dict[str, Any]] = []
        for name in catalog.dataset_names():
            info = catalog.BUILTIN[name]
            location = catalog.dataset_location(name, data_dir)
            rows.append(
                {
                    "name": name,
                    "layout": info.layout,
                    "path": None if location is None else str(location),
                    "found": catalog.is_available(name, data_dir),
                    "split": info.split,
                    "license": info.license,
                    "description": info.description,
                }
            )
        if as_json:
            out = {"data_dir": None if root is None else str(root), "data_dir_from": origin}
            typer.echo(json.dumps({**out, "datasets": rows}, indent=2))
            return
        console = output_console()
        if root is None:
            console.print(
                f"data dir: [yellow]not set[/] (pass --data-dir or set {catalog.DATA_DIR_ENV})"
            )
        else:
            state = "" if root.is_dir() else " [red](missing)[/]"
            console.print(f"data dir: {root} (from {origin}){state}")
        table = Table("name", "found", "looked in", "description")
        for row in rows:
            found = "[green]yes[/]" if row["found"] else "[red]no[/]"
            where = row["path"] or ("built in" if row["layout"] == "demo" else "-")
            table.add_row(row["name"], found, where, row["description"])
        console.print(table)
        console.print("Any PATH works too: a folder of CSV/Parquet files or UCR archive files.")

    @group.command("show")
    def show(
        name: DatasetNameArgument,
        data_dir: DataDirOption = None,
        as_json: JsonTableOption = False,
        train_fraction: Annotated[
            float | None,
            TRAIN_FRACTION(
                "Share of each series used for training (default 0.7; official splits kept).",
                show_default=False,
            ),
        ] = None,
        list_ids: Annotated[
            bool,
            typer.Option(
                "--series", help="List the series ids, one a line (without loading the data)."
            ),
        ] = False,
    ) -> None:
        """Series count, points, anomaly ratio, sampling interval, split sizes, partitions and
        series ids."""
        if list_ids:
            _print_ids(name, data_dir, as_json)
            return
        try:
            dataset = catalog.load_dataset(
                name,
                data_dir=data_dir,
                train_fraction=train_fraction,
                progress=not as_json and sys.stderr.isatty(),
            )
        except (DataError, ValueError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        summary = {**catalog.describe(dataset), "series_ids": [s.id for s in dataset.series]}
        if as_json:
            typer.echo(json.dumps(summary, indent=2))
            return
        _print_summary(summary)

    @group.command("plot")
    def plot(
        name: DatasetNameArgument,
        series: Annotated[
            str | None, SERIES("Series id (default: the first --max-series series).")
        ] = None,
        out: Annotated[
            Path | None,
            OUT("PNG file to write (default ./NAME[-SERIES].png)."),
        ] = None,
        max_series: Annotated[int, MAX_SERIES("Series stacked without --series.", min=1)] = 4,
        data_dir: DataDirOption = None,
    ) -> None:
        """Draw series with their labeled anomalies and train / validation / test boundaries."""
        from argos.data.protocol import split_series
        from argos.report.plots import Boundary, SeriesPanel, stacked_series_figure

        try:
            if series is not None:
                catalog.check_series(name, series, data_dir=data_dir)
            dataset = catalog.load_dataset(name, data_dir=data_dir, progress=sys.stderr.isatty())
            chosen = [dataset.get(series)] if series is not None else []
        except (DataError, ValueError, UnknownSeries) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        if series is None:
            chosen = list(dataset.series[:max_series])
        panels = []
        for s in chosen:
            sp = split_series(s, dataset.split)
            marks = [Boundary(sp.val_start, "validation")] if sp.val_start < sp.test_start else []
            n_anom = 0 if s.labels is None else int(s.labels.sum())
            panels.append(
                SeriesPanel(
                    s.values,
                    s.timestamps,
                    s.labels,
                    boundaries=[*marks, Boundary(sp.test_start, "test")],
                    title=f"{dataset.name} / {s.id}: {len(s):,} points, {n_anom:,} anomalous",
                )
            )
        if out is None:
            stem = Path(name).name if series is None else f"{Path(name).name}-{series}"
            out = Path("".join(c if c.isalnum() or c in "-_." else "_" for c in stem) + ".png")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(stacked_series_figure(panels))
        output_console().print(f"{len(panels)} series drawn to {out}")

    app.add_typer(group, name="datasets")


def _print_ids(name: str, data_dir: Path | None, as_json: bool) -> None:
    """``datasets show NAME --series``: the ids from the file names (KPI: its id column), or
    from the loaded data for a PATH."""
    try:
        ids = catalog.series_ids(name, data_dir=data_dir)
        if ids is None:
            ids = [s.id for s in catalog.load_dataset(name, data_dir=data_dir).series]
    except (DataError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(json.dumps(ids, indent=2) if as_json else "\n".join(ids))


SHOWN_IDS = 5
"""Series ids the ``datasets show`` table names (``--series`` lists all)."""


def _print_summary(d: dict[str, Any]) -> None:
    console = output_console()
    table = Table(title=f"dataset {d['name']} ({d['layout']})", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    length = d["length"]
    ratio = d["anomaly_ratio"]
    split = d["split"]
    pts = split["points"]
    anom = split["anomalies"]
    total = max(d["points"], 1)
    table.add_row("series", f"{d['series']:,} ({d['labeled_series']:,} labeled)")
    table.add_row("points", f"{d['points']:,} (per series {length['min']:,}..{length['max']:,})")
    table.add_row(
        "anomalies",
        "no labels"
        if ratio is None
        else f"{d['anomalies']:,} points = {ratio:.2%}, {d['events']:,} events",
    )
    intervals = ", ".join(f"{_seconds(int(k))} x{v}" for k, v in d["intervals"].items())
    table.add_row("interval", f"median {_seconds(d['interval_s'])} ({intervals})")
    how = f"{split['granularity']}, train fraction {split['train_fraction']}"
    if split["official_series"]:
        how += f", official split on {split['official_series']} series"
    if split["own_fraction_series"]:
        how += f", own train fraction on {split['own_fraction_series']} series"
    table.add_row("split", how)
    for part in ("train", "validation", "test"):
        table.add_row(
            f"  {part}",
            f"{pts[part]:,} points ({pts[part] / total:.0%}), {anom[part]:,} anomalous",
        )
    if d["partitions"]:
        table.add_row("partitions", ", ".join(f"{k} ({v})" for k, v in d["partitions"].items()))
    ids = d["series_ids"]
    more = f", ... ({len(ids)} in all: --series lists them)" if len(ids) > SHOWN_IDS else ""
    table.add_row("series ids", ", ".join(ids[:SHOWN_IDS]) + more)
    if d["filled"] or d["retimed"]:
        table.add_row("repairs", f"{d['filled']:,} NaN filled, {d['retimed']:,} timestamps retimed")
    console.print(table)


def _seconds(s: int) -> str:
    """60 -> '1 min', 3600 -> '1 h', 1 -> '1 s' (Yahoo A1 has index timestamps)."""
    if s >= 3600 and s % 3600 == 0:
        return f"{s // 3600} h"
    if s >= 60 and s % 60 == 0:
        return f"{s // 60} min"
    return f"{s} s"
