"""Run methods side by side on the same splits and turn the results into tables.

:func:`evaluate` fits every method on every training unit of a dataset (one per series, or one per
partition), detects on each whole series and scores the test part only, in parallel over training
units. :class:`EvalResult` aggregates per-series scores three ways for every metric:

- ``mean``: mean of the per-series precision / recall / F1 (the published Argos convention). Series
  with no anomaly in the test part have no recall or F1 and are left out of those means (their
  precision still counts when the detector raised alarms on them, as 0).
- ``pooled``: counts summed over series, i.e. the concatenation scored as one (AIOps 2018).
- ``mean_both``: the mean over the series with anomalies in both the train part (validation
  included) and the test part, the convention of the peer numbers in ``docs/evaluation.md``.

With ``trials > 1`` each trial is aggregated separately; reported numbers are the mean over trials
and ``spread`` holds the standard deviation over trials (never the best of N).
"""

from __future__ import annotations

import multiprocessing
import os
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from argos.data.protocol import detection_input, fit_inputs, split_series, test_truth
from argos.data.series import Dataset, Series, SplitSpec
from argos.methods import FittedDetector, MethodInfo, ScoringDetector, get_method
from argos.metrics import (
    DEFAULT_DELAY,
    EVENT_PA,
    METRIC_NAMES,
    MeanScores,
    Objective,
    Scores,
    aggregate_mean,
    aggregate_pooled,
    auc_pr,
    score_all,
    vus_pr,
)

AGGREGATIONS: tuple[str, ...] = ("mean", "pooled", "mean_both")
METRIC_LABELS: dict[str, str] = {
    "point": "point-wise",
    "point_adjusted": "point-adjusted",
    "event_pa": "event-PA",
    "delay": "k-delay",
}


class EvalConfig(BaseModel):
    """Settings of one evaluation run, as read from ``eval/<name>.toml`` (flags override them).

    Attributes:
        dataset: a built-in dataset name or a PATH.
        methods: method names, or ``["all"]`` for every registered method.
        trials: repeats (seed = trial number); numbers are reported as mean and std over trials.
        delay: k of the k-delay metric.
        objective: what every trained method fits and selects for (``event-pa``, ``delay:K``,
            ``point``; :meth:`argos.metrics.Objective.parse`).
        workers: worker processes (``None`` = CPU count).
        granularity: ``"series"`` or ``"partition"`` (``None`` = the dataset's default).
        train_fraction: overrides the default 70/30 split (official splits are kept).
        validation_fraction: share of the train part held out as validation (``None`` = 0.2).
        data_dir: folder holding ``kpi/``, ``yahoo_s5/``, ``nab/`` (``None`` = ``$ARGOS_DATA_DIR``).
        out: folder for the result files (``None`` = write none); relative paths in a config
            file are relative to the file's folder.
        scores: compute AUC-PR / VUS-PR for detectors that expose a score.
    """

    model_config = ConfigDict(extra="forbid")

    dataset: str
    methods: list[str] = Field(default_factory=lambda: ["all"])
    trials: int = Field(default=1, ge=1)
    delay: int = Field(default=DEFAULT_DELAY, ge=0)
    objective: str = str(EVENT_PA)
    workers: int | None = Field(default=None, ge=1)
    granularity: str | None = None
    train_fraction: float | None = Field(default=None, gt=0.0, lt=1.0)
    validation_fraction: float | None = Field(default=None, ge=0.0, lt=1.0)
    data_dir: str | None = None
    out: str | None = None
    scores: bool = True

    @field_validator("methods", mode="before")
    @classmethod
    def _split_methods(cls, v: Any) -> Any:
        if isinstance(v, str):
            return [m.strip() for m in v.split(",") if m.strip()]
        return v

    @field_validator("objective")
    @classmethod
    def _check_objective(cls, v: str) -> str:
        return str(Objective.parse(v))

    @field_validator("granularity")
    @classmethod
    def _check_granularity(cls, v: str | None) -> str | None:
        if v is not None and v not in ("series", "partition"):
            raise ValueError(f"granularity must be 'series' or 'partition', got {v!r}")
        return v


def load_config(path: Path) -> dict[str, Any]:
    """Raw settings from a TOML file (validated later, once flags are merged in).

    Relative ``out`` and ``data_dir`` are resolved against the file's folder. Raises
    ``ValueError`` with the file name for unreadable TOML.
    """
    import tomllib

    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path}: cannot read config ({exc})") from None
    for key in ("out", "data_dir"):
        if isinstance(raw.get(key), str) and not Path(raw[key]).expanduser().is_absolute():
            raw[key] = str(path.parent / raw[key])
    return raw


class EvaluationError(RuntimeError):
    """A method failed on a training unit; the message names both and carries the traceback."""


@dataclass(frozen=True)
class SeriesResult:
    """Scores of one method on the test part of one series in one trial."""

    method: str
    trial: int
    series_id: str
    group: str
    partition: str
    n_test: int
    train_anomalies: int
    test_anomalies: int
    scores: dict[str, Scores]
    auc_pr: float | None
    vus_pr: float | None
    fit_seconds: float
    detect_seconds: float

    @property
    def anomalies_in_both(self) -> bool:
        """Whether the series has anomalies in the train part and in the test part."""
        return self.train_anomalies > 0 and self.test_anomalies > 0


@dataclass(frozen=True)
class EvalTask:
    """One task of :func:`evaluate`: fit ``method`` (trial ``trial``, for ``objective``) on one
    training unit (``group``: the series at ``series_idx`` of the dataset) and score its series."""

    method: str
    trial: int
    group: str
    series_idx: tuple[int, ...]
    partitions: tuple[str, ...]
    size: int
    objective: Objective = EVENT_PA


# Set in the parent before the worker processes are forked; read by the workers.
_WORKER_STATE: dict[str, Any] = {}


def _run_task(task: EvalTask) -> list[SeriesResult]:
    return run_eval_task(
        task, _WORKER_STATE["dataset"], _WORKER_STATE["delay"], _WORKER_STATE["with_scores"]
    )


def run_eval_task(
    task: EvalTask, dataset: Dataset, delay: int, with_scores: bool
) -> list[SeriesResult]:
    """Fit one method on one training unit and score its series (one task of :func:`evaluate`;
    :class:`argos.distributed.DaskExecutor` runs it on Dask workers)."""
    spec: SplitSpec = dataset.split
    group = [dataset.series[i] for i in task.series_idx]
    try:
        method = get_method(task.method).build(seed=task.trial, objective=task.objective)
        t0 = time.perf_counter()
        inputs = fit_inputs(group, spec)
        detector = method.fit(inputs.train, inputs.validation)
        fit_seconds = time.perf_counter() - t0
        out: list[SeriesResult] = []
        for series, partition in zip(group, task.partitions, strict=True):
            out.append(
                _score_series(
                    task, series, partition, detector, spec, delay, with_scores, fit_seconds
                )
            )
        return out
    except Exception as exc:
        raise EvaluationError(
            f"method {task.method!r} failed on {task.group!r} (trial {task.trial}): "
            f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"
        ) from None


def _score_series(
    task: EvalTask,
    series: Series,
    partition: str,
    detector: FittedDetector,
    spec: SplitSpec,
    delay: int,
    with_scores: bool,
    fit_seconds: float,
) -> SeriesResult:
    split = split_series(series, spec)
    t0 = time.perf_counter()
    unlabeled = detection_input(series)
    pred = np.asarray(detector.detect(unlabeled))
    detect_seconds = time.perf_counter() - t0
    if pred.shape != (len(series),):
        raise ValueError(
            f"detect() returned shape {pred.shape} for series {series.id!r} of {len(series)} points"
        )
    if pred.dtype != np.bool_:
        if not np.isin(pred, (0, 1)).all():
            raise ValueError(f"detect() returned non-binary labels for series {series.id!r}")
        pred = pred.astype(np.bool_)
    truth = test_truth(series, split)
    test_pred = pred[split.test_start :]
    ap = vus = None
    if with_scores and isinstance(detector, ScoringDetector) and truth.any():
        score = np.asarray(detector.score(unlabeled), dtype=np.float64)[split.test_start :]
        filled = np.nan_to_num(score, nan=-np.inf, posinf=np.finfo(np.float64).max)
        ap = auc_pr(truth, filled)
        vus = vus_pr(truth, filled)
    labels = series.labels
    assert labels is not None  # test_truth raised otherwise
    return SeriesResult(
        method=task.method,
        trial=task.trial,
        series_id=series.id,
        group=task.group,
        partition=partition,
        n_test=split.n_test,
        train_anomalies=int(np.count_nonzero(labels[: split.test_start])),
        test_anomalies=int(np.count_nonzero(truth)),
        scores=score_all(truth, test_pred, delay),
        auc_pr=ap,
        vus_pr=vus,
        fit_seconds=fit_seconds,  # of the whole training unit (deduplicated in summary)
        detect_seconds=detect_seconds,
    )


# ---------------------------------------------------------------------------------------------
# aggregation
# ---------------------------------------------------------------------------------------------


SCORE_FIELDS = ("precision", "recall", "f1")
"""The fields of a metric's scores in the result tables."""
COUNT_FIELDS = ("tp", "fp", "fn")
"""The counts behind them (per series, in per_series.csv)."""


def _prf(s: Scores | MeanScores) -> dict[str, Any]:
    return {k: getattr(s, k) for k in SCORE_FIELDS}


def _of_defined(reduce: Callable[[list[float]], Any], values: list[Any]) -> float | None:
    """``reduce`` (``np.mean``, ``np.std``) of the values that are not None (None if none)."""
    defined = [v for v in values if v is not None]
    return float(reduce(defined)) if defined else None


def _aggregate_trial(rows: Sequence[SeriesResult]) -> dict[str, Any]:
    """All aggregations of one method in one trial."""
    out: dict[str, Any] = {}
    both = [r for r in rows if r.anomalies_in_both]
    for metric in METRIC_NAMES:
        scores = [r.scores[metric] for r in rows]
        mean = aggregate_mean(scores)
        pooled = aggregate_pooled(scores)
        mb = aggregate_mean([r.scores[metric] for r in both])
        out[metric] = {
            "mean": _prf(mean),
            "pooled": {**_prf(pooled), **_counts(pooled)},
            "mean_both": _prf(mb),
        }
    out["auc_pr"] = _of_defined(np.mean, [r.auc_pr for r in rows])
    out["vus_pr"] = _of_defined(np.mean, [r.vus_pr for r in rows])
    return out


def _counts(s: Scores) -> dict[str, int]:
    return {k: getattr(s, k) for k in COUNT_FIELDS}


@dataclass
class EvalResult:
    """Per-series results of an evaluation and their aggregations."""

    dataset: str
    methods: list[str]
    trials: int
    delay: int
    granularity: str
    rows: list[SeriesResult]
    n_series: int
    seconds: float
    meta: dict[str, Any] = field(default_factory=dict)
    objective: Objective = EVENT_PA

    def rows_of(
        self, method: str, trial: int | None = None, partition: str | None = None
    ) -> list[SeriesResult]:
        """Per-series rows of one method (one trial or all; one partition or all)."""
        return [
            r
            for r in self.rows
            if r.method == method
            and (trial is None or r.trial == trial)
            and (partition is None or r.partition == partition)
        ]

    @property
    def partitions(self) -> list[str]:
        """Partition names in the order their series appear."""
        return list(dict.fromkeys(r.partition for r in self.rows))

    def series_counts(self, partition: str | None = None) -> dict[str, int]:
        """How many series have anomalies in the test part, in both parts, and in neither."""
        first = self.rows_of(self.methods[0], 0, partition) if self.methods else []
        return {
            "series": len(first),
            "with_test_anomalies": sum(r.test_anomalies > 0 for r in first),
            "without_test_anomalies": sum(r.test_anomalies == 0 for r in first),
            "with_anomalies_in_both": sum(r.anomalies_in_both for r in first),
        }

    def summary(self, partition: str | None = None) -> dict[str, Any]:
        """``{method: {metric: {"mean"|"pooled"|"mean_both": {...}, "spread": ...}, ...}}``.

        Numbers are means over trials; with more than one trial ``spread`` holds the standard
        deviation over trials of every number. ``partition`` restricts to one partition.
        """
        out: dict[str, Any] = {}
        for method in self.methods:
            per_trial = [
                _aggregate_trial(self.rows_of(method, t, partition)) for t in range(self.trials)
            ]
            entry: dict[str, Any] = {}
            for metric in METRIC_NAMES:
                m: dict[str, Any] = {}
                spread: dict[str, Any] = {}
                for agg in AGGREGATIONS:
                    trials = {
                        k: [pt[metric][agg][k] for pt in per_trial]
                        for k in per_trial[0][metric][agg]
                    }
                    m[agg] = {k: _of_defined(np.mean, v) for k, v in trials.items()}
                    spread[agg] = {k: _of_defined(np.std, trials[k]) for k in SCORE_FIELDS}
                if self.trials > 1:
                    m["spread"] = spread
                entry[metric] = m
            for extra in ("auc_pr", "vus_pr"):
                entry[extra] = _of_defined(np.mean, [pt[extra] for pt in per_trial])
                if self.trials > 1:
                    entry[f"{extra}_spread"] = _of_defined(np.std, [pt[extra] for pt in per_trial])
            rows = self.rows_of(method, partition=partition)
            fit_time = sum({(r.group, r.trial): r.fit_seconds for r in rows}.values())
            entry["seconds"] = (fit_time + sum(r.detect_seconds for r in rows)) / self.trials
            out[method] = entry
        return out

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` document: dataset, settings, series counts and the summary."""
        return {
            "dataset": self.dataset,
            "methods": self.summary(),
            "trials": self.trials,
            "delay": self.delay,
            "objective": str(self.objective),
            "granularity": self.granularity,
            "series": self.series_counts(),
            "seconds": self.seconds,
            "by_partition": (
                {
                    p: {"series": self.series_counts(p), "methods": self.summary(p)}
                    for p in self.partitions
                }
                if len(self.partitions) > 1
                else {}
            ),
            **({"meta": self.meta} if self.meta else {}),
        }


# ---------------------------------------------------------------------------------------------
# running
# ---------------------------------------------------------------------------------------------


def _tasks(
    dataset: Dataset,
    methods: Sequence[MethodInfo],
    trials: int,
    objective: Objective = EVENT_PA,
) -> list[EvalTask]:
    index = {s.id: i for i, s in enumerate(dataset.series)}
    groups = dataset.groups()
    tasks = [
        EvalTask(
            method=m.name,
            trial=t,
            group=g,
            series_idx=tuple(index[s.id] for s in members),
            partitions=tuple(dataset.partition_of(s.id) for s in members),
            size=sum(len(s) for s in members),
            objective=objective,
        )
        for t in range(trials)
        for m in methods
        for g, members in groups.items()
    ]
    tasks.sort(key=lambda task: -task.size)  # longest first: better load balance
    return tasks


ProgressCallback = Callable[[int, int, str], None]


class TaskExecutor(Protocol):
    """Runs evaluation tasks somewhere else than the local process pool (a Dask cluster:
    :class:`argos.distributed.DaskExecutor`). The harness declares it here, at its own seam: the
    training driver's :class:`~argos.training.generator.UnitExecutor` is a sibling layer it may
    not import, and the two ask different things of an executor."""

    def run_evaluation(
        self,
        tasks: Sequence[EvalTask],
        dataset: Dataset,
        *,
        delay: int,
        with_scores: bool,
        progress: ProgressCallback | None = None,
    ) -> list[SeriesResult]: ...


def evaluate(
    dataset: Dataset,
    methods: Sequence[str] | Sequence[MethodInfo],
    *,
    trials: int = 1,
    delay: int = DEFAULT_DELAY,
    workers: int | None = None,
    with_scores: bool = True,
    progress: ProgressCallback | None = None,
    executor: TaskExecutor | None = None,
    objective: Objective = EVENT_PA,
) -> EvalResult:
    """Evaluate ``methods`` on ``dataset`` (same splits for all) and return every per-series score.

    ``workers`` processes run the (method, trial, training unit) tasks (default: CPU count; 1 runs
    in this process). ``progress(done, total, description)`` is called once with ``done=0`` when
    the workers have been forked (start progress-display threads only then), and after every task.
    ``with_scores`` computes AUC-PR / VUS-PR for detectors that expose scores. ``executor`` (an
    :class:`argos.distributed.DaskExecutor`) runs the tasks on a Dask cluster instead (``workers``
    is then ignored). ``objective`` is what every method that fits one (the catalogued methods:
    argos-builtin and the baselines) fits and selects its thresholds for; every metric is scored
    whatever it is.

    Raises :class:`EvaluationError` when a method fails (naming the method and the training unit)
    and ``ValueError`` for bad arguments (the message of an unknown method lists known ones).
    Unlabeled series cannot be scored: they are left out and listed in
    ``meta["skipped_unlabeled"]``.
    """
    if trials < 1:
        raise ValueError(f"trials must be >= 1, got {trials}")
    if delay < 0:
        raise ValueError(f"delay must be >= 0, got {delay}")
    infos = [m if isinstance(m, MethodInfo) else get_method(m) for m in methods]
    if not infos:
        raise ValueError("no methods to evaluate")
    unlabeled = [s.id for s in dataset.series if s.labels is None]
    if len(unlabeled) == len(dataset.series):
        raise ValueError(f"dataset {dataset.name!r} has no labeled series to score")
    if unlabeled:  # nothing to score them against: leave them out, and say so in the tables
        keep = [s for s in dataset.series if s.labels is not None]
        dataset = Dataset(
            dataset.name,
            keep,
            dataset.split,
            {p: [i for i in ids if i not in unlabeled] for p, ids in dataset.partitions.items()},
            dataset.meta,
        )
    for s in dataset.series:
        split_series(s, dataset.split)  # fail early on impossible splits
    tasks = _tasks(dataset, infos, trials, objective)
    n_workers = max(1, min(workers or os.cpu_count() or 1, len(tasks)))
    start = time.perf_counter()
    _WORKER_STATE.update(dataset=dataset, delay=delay, with_scores=with_scores)
    rows: list[SeriesResult] = []
    try:
        if executor is not None:
            rows = executor.run_evaluation(
                tasks, dataset, delay=delay, with_scores=with_scores, progress=progress
            )
        elif n_workers == 1 or "fork" not in multiprocessing.get_all_start_methods():
            if progress:
                progress(0, len(tasks), "running")
            for i, task in enumerate(tasks):
                rows.extend(_run_task(task))
                if progress:
                    progress(i + 1, len(tasks), f"{task.method} on {task.group}")
        else:
            rows = _run_parallel(tasks, n_workers, progress)
    finally:
        _WORKER_STATE.clear()
    order = {(m.name): i for i, m in enumerate(infos)}
    series_order = {s.id: i for i, s in enumerate(dataset.series)}
    rows.sort(key=lambda r: (order[r.method], r.trial, series_order[r.series_id]))
    return EvalResult(
        dataset=dataset.name,
        methods=[m.name for m in infos],
        trials=trials,
        delay=delay,
        granularity=dataset.split.granularity,
        rows=rows,
        n_series=len(dataset),
        seconds=time.perf_counter() - start,
        meta={"skipped_unlabeled": unlabeled} if unlabeled else {},
        objective=objective,
    )


def _run_parallel(
    tasks: Sequence[EvalTask], n_workers: int, progress: ProgressCallback | None
) -> list[SeriesResult]:
    # fork: workers inherit the dataset and the method registry (plugins registered at run time
    # included) without pickling either.
    ctx = multiprocessing.get_context("fork")
    rows: list[SeriesResult] = []
    with ProcessPoolExecutor(max_workers=n_workers, mp_context=ctx) as pool:
        pending: dict[Future[list[SeriesResult]], EvalTask] = {
            pool.submit(_run_task, t): t for t in tasks
        }
        # Workers are forked by now: a caller may start threads (a progress display) from here on.
        if progress:
            progress(0, len(tasks), "running")
        done_count = 0
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    task = pending.pop(fut)
                    rows.extend(fut.result())
                    done_count += 1
                    if progress:
                        progress(done_count, len(tasks), f"{task.method} on {task.group}")
        except BaseException:
            for fut in pending:
                fut.cancel()
            raise
    return rows
