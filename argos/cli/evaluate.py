"""``argos eval``: run methods side by side on the same splits and write the result tables."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from argos.cli.console import output_console, usage_error
from argos.cli.options import (
    DATASET,
    DELAY,
    JSON,
    OUT,
    PARTITION,
    REPORT,
    SCHEDULER,
    TRAIN_FRACTION,
    TRIALS,
    WORKERS,
    BenchmarkDataDirOption,
    GranularityOption,
)
from argos.data import catalog
from argos.data.series import DataError, Dataset, SplitSpec, close_matches
from argos.evaluation.harness import (
    EvalConfig,
    EvalResult,
    EvaluationError,
    evaluate,
    load_config,
)
from argos.evaluation.results import run_info, write_results
from argos.methods import (
    UnknownMethodError,
    get_method,
    method_names,
    resolve_methods,
    unavailable_methods,
)
from argos.metrics import EVENT_PA, Objective, format_score


def build_config(config: Path | None, flags: dict[str, Any]) -> EvalConfig:
    """Merge a TOML config (if any) with the flags that were given (flags win) and validate."""
    raw: dict[str, Any] = load_config(config) if config is not None else {}
    raw.update({k: v for k, v in flags.items() if v is not None})
    if "dataset" not in raw:
        raise ValueError("no dataset: pass --dataset NAME|PATH or a --config with 'dataset'")
    return EvalConfig.model_validate(raw)


def load_for_eval(cfg: EvalConfig, progress: bool) -> Dataset:
    """Load the dataset and apply the split overrides of ``cfg``."""
    dataset = catalog.load_dataset(
        cfg.dataset,
        data_dir=Path(cfg.data_dir) if cfg.data_dir else None,
        train_fraction=cfg.train_fraction,
        progress=progress,
    )
    split = dataset.split
    if cfg.granularity is not None or cfg.validation_fraction is not None:
        split = SplitSpec(
            train_fraction=split.train_fraction,
            validation_fraction=(
                split.validation_fraction
                if cfg.validation_fraction is None
                else cfg.validation_fraction
            ),
            granularity=cfg.granularity or split.granularity,
        )
        dataset = Dataset(dataset.name, dataset.series, split, dataset.partitions, dataset.meta)
    return dataset


def only_partition(dataset: Dataset, partition: str) -> Dataset:
    """The series of one partition of ``dataset``; raises :class:`DataError` naming the closest
    partitions when it has no such partition."""
    if not dataset.partitions and partition == dataset.name:
        return dataset  # one partition, named after the dataset
    if partition not in dataset.partitions:
        names = list(dataset.partitions)
        close = close_matches(partition, names)
        hint = f"did you mean {', '.join(map(repr, close))}? " if close else ""
        raise DataError(
            f"no partition {partition!r} in dataset {dataset.name!r}; {hint}"
            f"its partitions: {', '.join(names) or '(none)'}"
        )
    ids = set(dataset.partitions[partition])
    series = [s for s in dataset.series if s.id in ids]
    return Dataset(
        dataset.name,
        series,
        dataset.split,
        {partition: dataset.partitions[partition]},
        dataset.meta,
    )


def resolved_command(cfg: EvalConfig, partition: str | None = None) -> str:
    """An ``argos eval`` command line equivalent to ``cfg`` with every setting spelled out."""
    args = ["argos", "eval", "--dataset", cfg.dataset, "--methods", ",".join(cfg.methods)]
    if partition is not None:
        args += ["--partition", partition]
    args += ["--trials", str(cfg.trials), "--delay", str(cfg.delay)]
    if cfg.objective != str(EVENT_PA):
        args += ["--objective", cfg.objective]
    if cfg.granularity is not None:
        args += ["--granularity", cfg.granularity]
    if cfg.train_fraction is not None:
        args += ["--train-fraction", str(cfg.train_fraction)]
    if not cfg.scores:
        args.append("--no-scores")
    return shlex.join(args)


def print_summary(result: EvalResult, console: Console) -> None:
    """A compact console table: event-PA three ways, the other metrics' mean F1, AUC-PR, time."""
    summary = result.summary()
    counts = result.series_counts()
    table = Table(
        title=f"{result.dataset}: {counts['series']} series, one fit per {result.granularity}"
        + (f", {result.trials} trials (means)" if result.trials > 1 else "")
    )
    columns = [
        "P",
        "R",
        "F1",
        "pooled F1",
        "both F1",
        "point F1",
        "PA F1",
        f"{result.delay}-delay F1",
        "AUC-PR",
        "time s",
    ]
    # On a narrow terminal keep the event-PA columns and the time; results.md has everything.
    keep = columns if console.width >= 130 else columns[:5] + columns[-1:]
    table.add_column("method", no_wrap=True)
    for col in keep:
        table.add_column(col, justify="right", no_wrap=True)
    for method in result.methods:
        e = summary[method]
        ev = e["event_pa"]
        f1 = ev["mean"]["f1"]
        if result.trials > 1 and f1 is not None:
            spread = ev["spread"]["mean"]["f1"]
            f1_text = format_score(f1, spread=spread)
        else:
            f1_text = format_score(f1)
        cells = dict(
            zip(
                columns,
                [
                    format_score(ev["mean"]["precision"]),
                    format_score(ev["mean"]["recall"]),
                    f1_text,
                    format_score(ev["pooled"]["f1"]),
                    format_score(ev["mean_both"]["f1"]),
                    format_score(e["point"]["mean"]["f1"]),
                    format_score(e["point_adjusted"]["mean"]["f1"]),
                    format_score(e["delay"]["mean"]["f1"]),
                    format_score(e["auc_pr"]),
                    f"{e['seconds']:.1f}",
                ],
                strict=True,
            )
        )
        table.add_row(method, *(cells[c] for c in keep))
    not_run: dict[str, str] = result.meta.get("not_run", {})
    for method in not_run:
        table.add_row(method, "not run", *["–"] * (len(keep) - 1))
    console.print(table)
    for method, why in not_run.items():
        console.print(f"{method} was not run: {why}.", soft_wrap=True, markup=False)
    console.print(
        "P, R, F1, pooled F1, both F1 = event-F1 with point adjustment; P/R/F1 and the other "
        "metrics' F1 are "
        f"means over series; {counts['without_test_anomalies']} of {counts['series']} series "
        "have no test anomaly and are excluded from mean recall/F1. pooled = counts summed over "
        f"series. both = mean over the {counts['with_anomalies_in_both']} series with anomalies "
        "in both train and test (the peer convention). Thresholds fit on train only.",
        soft_wrap=True,
    )


def register(app: typer.Typer) -> None:
    """Add the ``eval`` command to ``app``."""

    @app.command("eval")
    def eval_command(
        dataset: Annotated[
            str | None, DATASET("Dataset name (kpi, yahoo, nab, demo, ...) or PATH.")
        ] = None,
        methods: Annotated[
            str | None,
            typer.Option(
                "--methods",
                help=(
                    "Comma-separated method names, 'all' (default), 'all-baselines', or "
                    "rules:PATH (a rule set or a training run folder). See --list-methods."
                ),
                show_default=False,
            ),
        ] = None,
        trials: Annotated[int | None, TRIALS("Repeats (default 1).")] = None,
        out: Annotated[
            Path | None, OUT("Write results.md/.csv/.json and command.txt here.")
        ] = None,
        as_json: Annotated[bool, JSON("Print JSON to stdout.")] = False,
        config: Annotated[
            Path | None,
            typer.Option("--config", help="TOML file with the same settings (flags override)."),
        ] = None,
        data_dir: BenchmarkDataDirOption = None,
        train_fraction: Annotated[
            float | None, TRAIN_FRACTION("Train share of generic datasets (0.7).")
        ] = None,
        delay: Annotated[int | None, DELAY("k of the k-delay metric (7).")] = None,
        objective: Annotated[
            str | None,
            typer.Option(
                "--objective",
                help="What every trained method (argos-builtin, the baselines) fits and selects "
                "its thresholds for: event-pa (default), delay:K (k-delay F1) or point.",
                show_default=False,
            ),
        ] = None,
        workers: Annotated[int | None, WORKERS("Worker processes (default: CPU count).")] = None,
        scheduler: Annotated[
            str | None,
            SCHEDULER(
                "Run the tasks on Dask: a scheduler ADDRESS, or 'local[:N]' to start a "
                "local cluster of N worker processes (docs/scale-out.md)."
            ),
        ] = None,
        granularity: GranularityOption = None,
        partition: Annotated[
            str | None, PARTITION("Evaluate only this partition (e.g. A1).")
        ] = None,
        scores: Annotated[
            bool | None,
            typer.Option("--scores/--no-scores", help="AUC-PR / VUS-PR for scoring methods."),
        ] = None,
        list_methods: Annotated[
            bool, typer.Option("--list-methods", help="List registered methods and exit.")
        ] = False,
        report: Annotated[bool, REPORT("Also write OUT/report.html (needs --out).")] = False,
    ) -> None:
        """Evaluate methods side by side on the same chronological splits.

        Every method is fit on the train part (validation included) of each series or partition,
        detects on the whole unlabeled series and is scored on the test part only: point-wise,
        point-adjusted, event-PA and k-delay, as the mean over series, pooled, and the mean over
        the series with anomalies in both parts.
        """
        if list_methods:
            _print_methods()
            return
        flags = {
            "dataset": dataset,
            "methods": methods,
            "trials": trials,
            "out": str(out) if out is not None else None,
            "data_dir": str(data_dir) if data_dir is not None else None,
            "train_fraction": train_fraction,
            "delay": delay,
            "objective": objective,
            "workers": workers,
            "granularity": granularity,
            "scores": scores,
        }
        try:
            cfg = build_config(config, flags)
            infos = resolve_methods(cfg.methods)
            not_run = unavailable_methods(cfg.methods)
            if not infos:
                raise ValueError(
                    "no method can run: " + "; ".join(f"{n} {w}" for n, w in not_run.items())
                )
        except UnknownMethodError as exc:
            raise usage_error(str(exc)) from None
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
            )
            raise usage_error(f"bad settings: {problems}") from None
        except ValueError as exc:
            raise usage_error(str(exc)) from None
        if report and cfg.out is None:
            raise usage_error(
                "--report writes OUT/report.html: give --out DIR (or out in the config)"
            )
        err = output_console(stderr=True)
        for name, why in not_run.items():
            err.print(f"note: skipping {name}: {why}; the table lists it as not run", markup=False)
        interactive = sys.stderr.isatty()
        try:
            data = load_for_eval(cfg, progress=interactive and not as_json)
        except (DataError, ValueError) as exc:
            raise usage_error(str(exc)) from None
        if partition is not None:
            try:
                data = only_partition(data, partition)
            except DataError as exc:
                raise usage_error(str(exc)) from None
        bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err,
            transient=True,
            disable=not interactive,
        )
        task_id = bar.add_task(f"eval {data.name}", total=None)

        def on_progress(done: int, total: int, what: str) -> None:
            # Started on the first call, after the worker processes were forked: the display's
            # refresh thread must not exist at fork time.
            if not bar.live.is_started:
                bar.start()
            bar.update(task_id, completed=done, total=total, description=what)

        from argos.distributed import SchedulerError, executor_for

        try:
            with executor_for(scheduler) as executor:
                result = evaluate(
                    data,
                    infos,
                    trials=cfg.trials,
                    delay=cfg.delay,
                    workers=cfg.workers,
                    with_scores=cfg.scores,
                    progress=on_progress,
                    executor=executor,
                    objective=Objective.parse(cfg.objective),
                )
        except (EvaluationError, ValueError, DataError, SchedulerError) as exc:
            raise usage_error(str(exc)) from None
        finally:
            bar.stop()
        if not_run:
            result.meta["not_run"] = not_run
        skipped = result.meta.get("skipped_unlabeled", [])
        if skipped and not as_json:
            err.print(f"left out {len(skipped)} unlabeled series: {', '.join(skipped[:10])}")
        if cfg.out is not None:
            info = {"resolved_command": resolved_command(cfg, partition), **run_info()}
            paths = write_results(result, Path(cfg.out), info)
            if not as_json:
                err.print(f"wrote {', '.join(str(p) for p in paths)}")
        if as_json:
            typer.echo(json.dumps(result.to_json(), indent=2))
        else:
            console = output_console()
            print_summary(result, console)
        if cfg.out is not None:
            from argos.cli.report import report_epilogue

            report_epilogue(Path(cfg.out), report, err)


def _print_methods() -> None:
    table = Table("method", "kind", "description")
    for name in method_names():
        info = get_method(name)
        table.add_row(name, info.kind, info.description)
    output_console().print(table)
