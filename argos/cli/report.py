"""``argos report``: one self-contained HTML report for a training run or an evaluation folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from argos.cli.console import output_console
from argos.cli.options import MAX_SERIES, OUT, BenchmarkDataDirOption
from argos.report.build import write_report
from argos.report.run import DEFAULT_BASELINES
from argos.report.views import ReportError


def register(app: typer.Typer) -> None:
    """Add the ``report`` command to ``app``."""

    @app.command()
    def report(
        path: Annotated[
            Path,
            typer.Argument(help="A run folder (summary.json) or an eval folder (results.json)."),
        ],
        out: Annotated[Path | None, OUT("HTML file to write (default PATH/report.html).")] = None,
        data_dir: BenchmarkDataDirOption = None,
        baselines: Annotated[
            str,
            typer.Option(
                "--baselines",
                help="Run reports: baselines fitted next to the rules, comma-separated, '' = none.",
            ),
        ] = ",".join(DEFAULT_BASELINES),
        max_series: Annotated[
            int | None,
            MAX_SERIES(
                "Series figures (default: 60 for a run, 12 for an eval); beyond it the "
                "worst and the best by test F1.",
                min=0,
                show_default=False,
            ),
        ] = None,
        method: Annotated[
            str | None,
            typer.Option(
                "--method", help="Eval reports: whose detections to draw (default: the best F1)."
            ),
        ] = None,
    ) -> None:
        """Write a self-contained HTML report: series with anomalies and detections, rules,
        training progress and the evaluation table (images embedded, no network needed)."""
        console = output_console(stderr=True)
        if not path.is_dir():
            typer.echo(f"error: {path} is not a folder", err=True)
            raise typer.Exit(2)
        names = tuple(b.strip() for b in baselines.split(",") if b.strip())
        from argos.methods import method_names

        unknown = [b for b in names if b not in method_names()]
        if unknown:
            typer.echo(
                f"error: unknown method(s) {', '.join(unknown)} (see argos eval --list-methods)",
                err=True,
            )
            raise typer.Exit(2)
        try:
            with console.status("building the report...") as status:
                target = write_report(
                    path,
                    out,
                    data_dir=data_dir,
                    baselines=names,
                    max_series=max_series,
                    method=method,
                    progress=lambda msg: status.update(msg),
                )
        except ReportError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        output_console().print(f"report written to {target}")


def report_epilogue(folder: Path, write: bool, console: Console) -> None:
    """End of ``argos train`` / ``argos eval``: write ``folder/report.html`` when ``write`` (a
    failure is reported, never fatal: the run's results are already on disk), else say how."""
    target = folder / "report.html"
    if not write:
        console.print(f"report: argos report {folder}  (writes {target})")
        return
    try:
        with console.status("writing the report..."):
            written = write_report(folder, target)
    except (ReportError, OSError, ValueError) as exc:
        console.print(f"[yellow]report not written:[/] {exc}")
        return
    console.print(f"report written to {written}")
