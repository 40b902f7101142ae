"""The LLM half of ``argos train``: run folders, resume, live progress with tokens and cost.

A run lives in one folder (``runs/<run id>`` by default) holding ``run.json`` (the options, so
``--resume RUN_ID`` needs nothing else), ``checkpoints.sqlite`` (LangGraph), ``llm-cache.sqlite``
(completed LLM calls), one rule-set folder per training unit, ``summary.json`` and
``usage.json``. Resuming re-enters every unfinished unit at its interrupted node; finished units and
paid calls are not repeated; export is idempotent.
"""

from __future__ import annotations

import hashlib
import json
import time
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from pydantic import BaseModel, Field
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from argos.cli.deployment import deployment_refusals
from argos.cli.train_tables import incumbent_lines, summary_table, usage_table
from argos.data import catalog
from argos.data.series import DataError, Dataset
from argos.llm.config import LLMConfig, load_llm_config
from argos.llm.interface import LLMError
from argos.llm.usage import Budget, LedgerSummary
from argos.metrics import Objective, resolve_guard
from argos.training.agents.run import AgentGenerator, csv_base, method_base
from argos.training.agents.state import LoopConfig
from argos.training.driver import TrainSummary, UnitResult, train_dataset, training_units
from argos.training.generator import GeneratorOutput

if TYPE_CHECKING:
    from argos.distributed import DaskExecutor, SharedLimitsChatModel

RUN_FILE = "run.json"


class RunOptions(BaseModel):
    """Everything needed to start or resume an LLM training run (``run.json``; no secrets)."""

    dataset: str
    data_dir: str | None = None
    series: str | None = None
    partition: str | None = None
    granularity: str | None = None
    provider: str | None = None
    model: str | None = None
    base_url: str | None = None
    config: str | None = None
    iterations: int = 5
    candidates: int = 5
    keep: int = 1
    max_repairs: int = 3
    max_reviews: int = 1
    patience: int = 3
    seed: int = 0
    chunk_size: int = 1000
    fit_budget: int = 24
    max_tokens: int | None = None
    max_cost: float | None = None
    max_calls: int | None = None
    time_budget: float | None = None
    fusion_base: str | None = None
    scheduler: str | None = None
    llm_concurrency: int = 4
    train_fraction: float | None = None
    objective: str = "event-pa"
    guard: str = "auto"
    incumbent: bool = True
    holdout: bool = True
    created: str = Field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))

    def llm_config(self) -> LLMConfig:
        return load_llm_config(
            self.config,
            overrides={"provider": self.provider, "model": self.model, "base_url": self.base_url},
        )

    def loop(self) -> LoopConfig:
        return LoopConfig(
            candidates_per_iteration=self.candidates,
            keep_top=self.keep,
            max_iterations=self.iterations,
            max_repairs=self.max_repairs,
            max_reviews=self.max_reviews,
            patience=self.patience,
            time_budget_s=self.time_budget,
            seed=self.seed,
            objective=Objective.parse(self.objective),
            guard=resolve_guard(self.guard, Objective.parse(self.objective)),
        )


def new_run_dir(runs_dir: Path) -> Path:
    """A fresh run folder named by the time (unique within the runs folder)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = runs_dir / f"llm-{stamp}"
    n = 1
    while path.exists():
        n += 1
        path = runs_dir / f"llm-{stamp}-{n}"
    return path


def resolve_resume(resume: str, runs_dir: Path) -> Path:
    """A run folder from a run id (under ``runs_dir``) or a path."""
    for cand in (Path(resume), runs_dir / resume):
        if (cand / RUN_FILE).is_file():
            return cand
    raise typer.BadParameter(
        f"no run {resume!r}: neither {resume} nor {runs_dir / resume} holds a {RUN_FILE}"
    )


def run_llm_training(opts: RunOptions, run_dir: Path, *, console: Console, as_json: bool) -> int:
    """Start or resume the run in ``run_dir``; print progress, a summary table and usage."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / RUN_FILE).write_text(opts.model_dump_json(indent=2) + "\n")
    try:
        llm = opts.llm_config()
        ds = catalog.load_dataset(
            opts.dataset,
            data_dir=Path(opts.data_dir) if opts.data_dir else None,
            train_fraction=opts.train_fraction,
        )
    except (LLMError, DataError) as exc:
        typer.echo(f"error: {exc}", err=True)
        return 2
    budget = Budget(
        max_tokens=opts.max_tokens, max_cost_usd=opts.max_cost, max_calls=opts.max_calls
    )
    with ExitStack() as stack:
        executor: DaskExecutor | None = None
        shared = None
        if opts.scheduler is not None:
            from argos.distributed import DaskExecutor, SchedulerError

            try:
                executor = stack.enter_context(DaskExecutor.connect(opts.scheduler))
                shared = _cluster_model(opts, run_dir, ds, llm, budget, executor)
            except (SchedulerError, KeyError, ValueError) as exc:
                typer.echo(f"error: {exc}", err=True)
                return 2
            budget = Budget()  # the cluster-wide model enforces it
        gen = AgentGenerator(
            llm=llm,
            run_dir=run_dir,
            loop=opts.loop(),
            budget=budget,
            chunk_size=opts.chunk_size,
            fit_budget=opts.fit_budget,
            chat_model=shared,
            deployment=deployment_refusals,
            incumbent=opts.incumbent,
            holdout=opts.holdout,
        )
        return _train(opts, ds, gen, run_dir, executor, console=console, as_json=as_json)


def _cluster_model(
    opts: RunOptions,
    run_dir: Path,
    ds: Dataset,
    llm: LLMConfig,
    budget: Budget,
    executor: DaskExecutor,
) -> SharedLimitsChatModel:
    """The endpoint with the run's budget and concurrency shared by every Dask worker. A resumed
    run starts its ledger from what its units spent before (cache replays included: the budget
    errs on the safe side)."""
    from argos.distributed import SharedLimitsChatModel
    from argos.training.agents.run import run_usage_from_checkpoints

    run_key = hashlib.sha256(str(run_dir.resolve()).encode()).hexdigest()[:16]
    shared = SharedLimitsChatModel(
        f"train-{run_key}",
        budget=budget,
        max_concurrent=opts.llm_concurrency,
        llm=llm,
        client=executor.client,
    )
    units = training_units(
        ds, granularity=opts.granularity, series_id=opts.series, partition=opts.partition
    )
    before = run_usage_from_checkpoints(
        run_dir, [[s.id for s in g] for g in units.values()], llm.price_table()
    ).total
    if before.calls:
        shared.resume_from(
            before.calls, before.prompt_tokens + before.completion_tokens, before.cost_usd
        )
    return shared


def event_line(event: dict[str, Any], gen: AgentGenerator) -> str:
    """One graph event as a line of progress, with the tokens (and cost) spent so far."""
    total = gen.ledger.total()
    cost = total.cost_usd
    extra = ""
    if event.get("event") == "outcome":
        extra = f" {event.get('outcome')}"
    elif event.get("val_f1") is not None:
        extra = f" val F1 {event['val_f1']:.3f}"
    return (
        f"{event.get('unit')} it {event.get('iteration', '-')} "
        f"{event.get('event')} {event.get('status', '')}{extra}  "
        f"tokens {total.prompt_tokens + total.completion_tokens:,}"
        + (f"  ${cost:.4f}" if cost else "")
    )


def plain_line(console: Console, text: str) -> None:
    """Write one unstyled line to the console's file and flush it (no TTY: no live display)."""
    console.file.write(text.rstrip() + "\n")
    console.file.flush()


def _train(
    opts: RunOptions,
    ds: Dataset,
    gen: AgentGenerator,
    run_dir: Path,
    executor: DaskExecutor | None,
    *,
    console: Console,
    as_json: bool,
) -> int:
    llm = gen.llm
    if opts.fusion_base is not None:
        if opts.fusion_base.startswith("csv:"):
            gen.fusion = csv_base(Path(opts.fusion_base[4:]))
            gen.fusion_base_name = opts.fusion_base
        else:
            name = opts.fusion_base.removeprefix("method:")
            gen.fusion = method_base(name)
            gen.fusion_base_name = f"method:{name}"
    where = f"; units on Dask ({opts.scheduler})" if executor is not None else ""
    console.print(
        f"LLM generator: model [bold]{llm.model}[/] at {llm.base_url or 'the provider default'}; "
        f"run folder {run_dir}{where}"
    )
    try:
        n_units = len(
            training_units(
                ds, granularity=opts.granularity, series_id=opts.series, partition=opts.partition
            )
        )
    except (KeyError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        return 2
    live = console.is_terminal
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=console,
        disable=not live,
    ) as progress:
        task = progress.add_task(f"training {ds.name}", total=n_units, status="")
        done = 0

        def on_event(event: dict[str, Any]) -> None:
            status = event_line(event, gen)
            if live:
                progress.update(task, status=status)
            else:  # a log file or a pipe: one plain line per event, flushed as it happens
                plain_line(console, status)

        def on_unit(res: UnitResult, output: GeneratorOutput) -> None:
            nonlocal done
            done += 1
            progress.update(task, advance=1, description=f"{ds.name}: {res.unit}")
            if not live:
                plain_line(console, f"unit {res.unit} done ({done}/{n_units})")

        gen.on_event = on_event
        try:
            summary = train_dataset(
                ds,
                generator=gen,
                out_dir=run_dir,
                granularity=opts.granularity,
                series_id=opts.series,
                partition=opts.partition,
                workers=1,  # one endpoint, one request at a time; the graph is sequential
                on_unit=on_unit,
                executor=executor,
                dataset_source=opts.dataset,
                deployment=deployment_refusals,
            )
        except LLMError as exc:
            typer.echo(f"error: {exc}\nresume with: argos train --resume {run_dir}", err=True)
            return 1
    if executor is None:
        usage = gen.ledger.summary()
    else:  # the units ran (and were metered) in the workers: sum their checkpointed usage
        from argos.training.agents.run import run_usage_from_checkpoints

        usage = run_usage_from_checkpoints(
            run_dir, [u.series for u in summary.units], llm.price_table()
        )
    endpoint_error = failed_on_endpoint(summary, usage)
    if endpoint_error is not None:
        typer.echo(
            f"error: every unit failed on the LLM endpoint "
            f"({llm.base_url or 'the provider default'}): {endpoint_error}",
            err=True,
        )
    (run_dir / "usage.json").write_text(usage.model_dump_json(indent=2) + "\n")
    summary_json = {**summary.to_json(), "usage": usage.model_dump(mode="json")}
    (run_dir / "summary.json").write_text(json.dumps(summary_json, indent=2) + "\n")
    if as_json:
        typer.echo(json.dumps(summary_json, indent=2))
    else:
        console.print(summary_table(summary))
        for line in incumbent_lines(summary):
            console.print(line)
        console.print(usage_table(usage.model_dump(mode="json")))
        console.print(f"run folder: {run_dir}  (resume with: argos train --resume {run_dir})")
    return 1 if endpoint_error is not None or any(u.problems for u in summary.units) else 0


def failed_on_endpoint(summary: TrainSummary, usage: LedgerSummary) -> str | None:
    """The endpoint's last error when no LLM call of the run succeeded and no unit got a rule
    because of it (unreachable server, bad key, unknown model); None otherwise."""
    if usage.total.calls or usage.total.cached_calls or not summary.units:
        return None
    if any(u.rules for u in summary.units):
        return None
    notes = [note for u in summary.units for note in u.notes]
    errors = [note.split(LAST_ERROR, 1)[1] for note in notes if LAST_ERROR in note]
    return errors[-1] if errors else None


LAST_ERROR = "last error: "
"""How a unit's notes give the LLM error that stopped it (``argos.training.agents.roles``)."""
