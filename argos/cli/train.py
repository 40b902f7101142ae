"""``argos train``: generate, verify and export rule sets for a dataset (builtin generator)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from argos._types import default_workers
from argos.cli.console import output_console
from argos.cli.deployment import deployment_refusals
from argos.cli.options import (
    DATASET,
    JSON,
    OUT,
    PARTITION,
    REPORT,
    SCHEDULER,
    SERIES,
    TRAIN_FRACTION,
    TRIALS,
    WORKERS,
    BenchmarkDataDirOption,
    GranularityOption,
)
from argos.cli.report import report_epilogue
from argos.cli.train_tables import fmt_score, summary_table, unit_notes
from argos.data import catalog
from argos.data.series import DataError, UnknownSeries
from argos.metrics import Objective, resolve_guard
from argos.training.builtin.config import SearchConfig
from argos.training.builtin.method import BuiltinGenerator
from argos.training.driver import (
    OutDirInUseError,
    UnitResult,
    claim_out_dir,
    train_dataset,
    training_units,
)
from argos.training.generator import GeneratorOutput

if TYPE_CHECKING:
    from argos.llm.config import LLMConfig


def missing_llm_settings(config: LLMConfig) -> str:
    """What an LLM configuration lacks to be usable, said as what to set."""
    if not config.model:
        return "no model: give --model (or set ARGOS_LLM_MODEL)"
    if config.provider == "azure":
        return "no Azure endpoint: set AZURE_OPENAI_ENDPOINT (or give --base-url)"
    return (
        "no API key and no endpoint: set OPENAI_API_KEY (or ARGOS_LLM_API_KEY), or give "
        "--base-url of an OpenAI-compatible server"
    )


def register(app: typer.Typer) -> None:
    @app.command()
    def train(
        dataset: Annotated[
            str | None, DATASET("Dataset name (kpi, yahoo, nab, demo) or PATH (not with --resume).")
        ] = None,
        series: Annotated[str | None, SERIES("Train only this series id.")] = None,
        partition: Annotated[str | None, PARTITION("Train only this partition (e.g. A1).")] = None,
        generator: Annotated[
            str,
            typer.Option(
                help="Rule generator: 'builtin', 'llm', or 'auto' (llm when an LLM is "
                "configured by flags, argos.toml or environment; else builtin)."
            ),
        ] = "auto",
        out: Annotated[Path, OUT("Folder for the rule sets and summary.json.")] = Path(
            "runs/train"
        ),
        overwrite: Annotated[
            bool,
            typer.Option(
                help="Replace a previous run in --out (its rule sets and summary); without it a "
                "non-empty --out is refused, so two runs never mix."
            ),
        ] = False,
        trials: Annotated[
            int | None, TRIALS("Evaluate at most N structures per unit (seeded subset).")
        ] = None,
        seed: Annotated[int, typer.Option(help="Seed (only used with --trials).")] = 0,
        workers: Annotated[
            int | None, WORKERS("Worker processes (default: CPU count, <= 4).")
        ] = None,
        scheduler: Annotated[
            str | None,
            SCHEDULER(
                "Run the units on Dask: a scheduler ADDRESS or 'local[:N]' for a local "
                "cluster of N worker processes (docs/scale-out.md). With an LLM, the run folder "
                "must be on storage every worker shares."
            ),
        ] = None,
        granularity: GranularityOption = None,
        data_dir: BenchmarkDataDirOption = None,
        train_fraction: Annotated[
            float | None, TRAIN_FRACTION("Train share of generic datasets (0.7), as in argos eval.")
        ] = None,
        objective: Annotated[
            str,
            typer.Option(
                help="What rules are selected and fitted for: 'event-pa' (an event is caught by "
                "one alarm inside it), 'delay:K' (caught within K points of its start, the AIOps "
                "k-delay F1; e.g. delay:7) or 'point' (point-wise F1). Recorded in the manifest.",
            ),
        ] = "event-pa",
        as_json: Annotated[bool, JSON("Print summary JSON.")] = False,
        llm: Annotated[
            str | None,
            typer.Option(
                "--llm", help="LLM provider: 'openai' (any compatible server) or 'azure'."
            ),
        ] = None,
        model: Annotated[str | None, typer.Option(help="LLM model (Azure: deployment).")] = None,
        base_url: Annotated[
            str | None, typer.Option(help="OpenAI-compatible endpoint, e.g. http://host:8000/v1.")
        ] = None,
        llm_config: Annotated[
            Path | None, typer.Option(help="TOML file with an [llm] table (default ./argos.toml).")
        ] = None,
        iterations: Annotated[int, typer.Option(min=1, help="LLM: iteration budget.")] = 5,
        candidates: Annotated[
            int, typer.Option(min=1, help="LLM: candidates per iteration (n).")
        ] = 5,
        keep: Annotated[int, typer.Option(min=1, help="LLM: rules kept (top k).")] = 1,
        max_repairs: Annotated[
            int, typer.Option(min=0, help="LLM: repair attempts per candidate.")
        ] = 3,
        max_cost: Annotated[
            float | None, typer.Option(help="LLM: stop when this many USD are spent.")
        ] = None,
        max_tokens: Annotated[
            int | None, typer.Option(help="LLM: stop at this many tokens (prompt + completion).")
        ] = None,
        time_budget: Annotated[
            float | None, typer.Option(help="LLM: wall-clock budget per unit in seconds.")
        ] = None,
        chunk_size: Annotated[
            int, typer.Option(min=50, help="LLM: points per chunk shown to the generator.")
        ] = 1000,
        fusion_base: Annotated[
            str | None,
            typer.Option(
                help="LLM: train FN/FP rules correcting a base detector: a method name "
                "(e.g. robust-zscore) or csv:FILE of its predictions."
            ),
        ] = None,
        llm_concurrency: Annotated[
            int,
            typer.Option(
                min=1, help="LLM with --scheduler: calls in flight across the whole cluster."
            ),
        ] = 4,
        incumbent: Annotated[
            bool,
            typer.Option(
                help="LLM: start each unit from the builtin generator's rule set, which LLM "
                "rules must beat on the selection data (--no-incumbent: start from nothing)."
            ),
        ] = True,
        guard: Annotated[
            str,
            typer.Option(
                help="LLM: a second metric a kept rule set must not lower, on train nor on "
                "validation: 'auto' (7-delay F1 under --objective event-pa, event-PA under "
                "delay:K, none under point), 'none', or any --objective value.",
            ),
        ] = "auto",
        holdout: Annotated[
            bool,
            typer.Option(
                help="LLM: on a unit with no labeled event in validation, fit on the first part "
                "of train and select on its last events, held out (--no-holdout: select on the "
                "train data the candidates were fit on)."
            ),
        ] = True,
        resume: Annotated[
            str | None, typer.Option(help="Resume an interrupted LLM run (run id or folder).")
        ] = None,
        runs_dir: Annotated[Path, typer.Option(help="Where LLM runs are kept.")] = Path("runs"),
        report: Annotated[bool, REPORT("Also write the HTML report (OUT/report.html).")] = False,
    ) -> None:
        """Train rule sets: one per series or partition, verified in the sandbox, then exported."""
        console = output_console(stderr=as_json)
        from argos.cli.train_llm import RunOptions, new_run_dir, resolve_resume, run_llm_training
        from argos.llm.config import LLMConfigError, is_llm_configured, load_llm_config

        if resume is not None:
            run_dir = resolve_resume(resume, runs_dir)
            opts = RunOptions.model_validate_json((run_dir / "run.json").read_text())
            console.print(f"resuming {run_dir}")
            code = run_llm_training(opts, run_dir, console=console, as_json=as_json)
            report_epilogue(run_dir, report, console)
            raise typer.Exit(code)
        if dataset is None:
            typer.echo("error: give --dataset NAME|PATH (or --resume RUN_ID)", err=True)
            raise typer.Exit(2)
        llm_flags = [
            flag
            for flag, value in (
                ("--llm", llm),
                ("--model", model),
                ("--base-url", base_url),
                ("--llm-config", llm_config),
            )
            if value is not None
        ]
        overrides = {"provider": llm, "model": model, "base_url": base_url}
        try:
            config = load_llm_config(llm_config, overrides=overrides)
        except LLMConfigError as exc:
            if generator == "llm" or llm_flags:
                typer.echo(f"error: {exc}", err=True)
                raise typer.Exit(2) from None
            config = None  # a broken LLM config must not stop the offline path
        configured = config is not None and is_llm_configured(config)
        if generator not in ("auto", "builtin", "llm"):
            typer.echo("error: --generator must be 'auto', 'builtin' or 'llm'", err=True)
            raise typer.Exit(2)
        if llm_flags and generator != "builtin" and config is not None and not configured:
            missing = missing_llm_settings(config)
            typer.echo(
                f"error: {' '.join(llm_flags)} given but the LLM is not usable: {missing} "
                "(or drop the LLM flags to use the builtin generator)",
                err=True,
            )
            raise typer.Exit(2)
        if generator == "llm" and not configured:
            typer.echo(
                "error: --generator llm needs an LLM: give --model and --base-url (or set "
                "OPENAI_API_KEY / ARGOS_LLM_MODEL), or use --generator builtin",
                err=True,
            )
            raise typer.Exit(2)
        try:
            goal = Objective.parse(objective)
        except ValueError as exc:
            typer.echo(f"error: --objective: {exc}", err=True)
            raise typer.Exit(2) from None
        try:
            resolve_guard(guard, goal)
        except ValueError as exc:
            typer.echo(f"error: --guard: {exc}", err=True)
            raise typer.Exit(2) from None
        if series is not None:
            try:  # before anything is loaded: KPI takes a while
                catalog.check_series(dataset, series, data_dir=data_dir)
            except (UnknownSeries, DataError) as exc:
                typer.echo(f"error: {exc}", err=True)
                raise typer.Exit(2) from None
        if generator == "llm" or (generator == "auto" and configured):
            opts = RunOptions(
                dataset=dataset,
                data_dir=None if data_dir is None else str(data_dir),
                series=series,
                partition=partition,
                granularity=granularity,
                provider=llm,
                model=model,
                base_url=base_url,
                config=None if llm_config is None else str(llm_config),
                iterations=iterations,
                candidates=candidates,
                keep=keep,
                max_repairs=max_repairs,
                max_tokens=max_tokens,
                max_cost=max_cost,
                time_budget=time_budget,
                seed=seed,
                chunk_size=chunk_size,
                fusion_base=fusion_base,
                scheduler=scheduler,
                llm_concurrency=llm_concurrency,
                train_fraction=train_fraction,
                objective=str(goal),
                guard=guard,
                incumbent=incumbent,
                holdout=holdout,
            )
            if out == Path("runs/train"):
                run_dir = new_run_dir(runs_dir)
            else:
                run_dir = out
                _claim(out, overwrite, console)
            code = run_llm_training(opts, run_dir, console=console, as_json=as_json)
            report_epilogue(run_dir, report, console)
            raise typer.Exit(code)
        note = "" if configured else " (no LLM configured)"
        console.print(f"using the builtin generator{note}")
        if granularity not in (None, "series", "partition"):
            typer.echo("error: --granularity must be 'series' or 'partition'", err=True)
            raise typer.Exit(2)
        try:
            ds = catalog.load_dataset(dataset, data_dir=data_dir, train_fraction=train_fraction)
        except DataError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        gen = BuiltinGenerator(SearchConfig(trials=trials, seed=seed, objective=goal))
        n_workers = workers or default_workers()
        try:
            n_units = len(
                training_units(ds, granularity=granularity, series_id=series, partition=partition)
            )
        except (KeyError, ValueError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        _claim(out, overwrite, console)
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
                    best=fmt_score(best),
                )

            from argos.distributed import SchedulerError, executor_for

            try:
                with executor_for(scheduler) as executor:
                    summary = train_dataset(
                        ds,
                        generator=gen,
                        out_dir=out,
                        granularity=granularity,
                        series_id=series,
                        partition=partition,
                        workers=n_workers,
                        on_unit=on_unit,
                        executor=executor,
                        dataset_source=dataset,
                        deployment=deployment_refusals,
                    )
            except SchedulerError as exc:
                typer.echo(f"error: {exc}", err=True)
                raise typer.Exit(2) from None
        if as_json:
            typer.echo(json.dumps(summary.to_json(), indent=2))
        else:
            console.print(summary_table(summary))
            for line in unit_notes(summary):
                console.print(line)
            console.print(f"rule sets and summary.json written to {out}")
        report_epilogue(out, report, console)
        if any(u.problems for u in summary.units):
            raise typer.Exit(1)


def _claim(out: Path, overwrite: bool, console: Console) -> None:
    """Refuse a non-empty ``out`` (exit 2), or with ``--overwrite`` empty it and say what went."""
    try:
        removed = claim_out_dir(out, overwrite=overwrite)
    except OutDirInUseError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if removed:
        more = f" and {len(removed) - 8} more" if len(removed) > 8 else ""
        shown = ", ".join(removed[:8]) + more
        console.print(f"--overwrite: removed the previous run from {out}: {shown}")
