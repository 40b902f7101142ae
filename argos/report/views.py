"""The data model of the reports and the building blocks both kinds share.

A report is a :class:`Report` (pydantic, JSON-ready) made of views: :class:`SeriesView` (one
series, its figure and event-PA scores per part), :class:`RuleView`, :class:`UnitView`,
:class:`MethodRow` and :class:`UsageRow`. :mod:`argos.report.run` and
:mod:`argos.report.evaluation` fill it from their folders; :mod:`argos.report.html` draws it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from argos._types import BoolArray
from argos._version import __version__ as ARGOS_VERSION
from argos.data.series import Dataset, Series, SplitSpec
from argos.metrics import Scores, event_pa
from argos.training.driver import UnitResult

if TYPE_CHECKING:
    from argos.report.plots import Boundary

StatusFn = Callable[[str], None]
"""Told what the report is doing now (a one-line status message) while it is built."""


class ReportError(RuntimeError):
    """The folder is not a run or evaluation folder, or its data cannot be loaded."""


@dataclass(frozen=True)
class SplitScore(Scores):
    """Event-PA scores of the detections on one part of one series, with the part's size."""

    split: Literal["train", "validation", "test"]
    points: int
    events: int


class SeriesView(BaseModel):
    """One series: its figure (data URI) and scores per part."""

    id: str
    unit: str = ""
    points: int
    val_start: int
    test_start: int
    method: str = ""
    scores: list[SplitScore] = Field(default_factory=list)
    figure: str
    note: str = ""
    rules: list[tuple[str, str]] = Field(default_factory=list)
    """(rule id, its abnormal condition) of the rule set that made the detections."""


class RuleView(BaseModel):
    """One exported rule: code, params and its stated conditions in plain words."""

    unit: str
    id: str
    file: str
    role: str
    status: str
    lookback: int
    params: dict[str, Any] = Field(default_factory=dict)
    title: str = ""
    normal: str = ""
    abnormal: str = ""
    code: str
    error: str = ""


class CandidateView(BaseModel):
    """One candidate of an LLM run: where it came from and what happened to it."""

    iteration: int | None = None
    rule: str
    origin: str = ""
    repairs: int | None = None
    status: str
    validation_f1: float | None = None
    outcome: str = ""


class IterationView(BaseModel):
    """One training iteration: best validation F1 after it, candidates accepted and rejected."""

    iteration: int
    best_val_f1: float | None
    accepted: int
    rejected: int


class UnitView(BaseModel):
    """One training unit of a run: its outcome as ``summary.json`` records it (the driver's
    :class:`~argos.training.driver.UnitResult`), and the candidates and progress of its log."""

    result: UnitResult
    iterations: list[IterationView] = Field(default_factory=list)
    candidates: list[CandidateView] = Field(default_factory=list)
    figure: str | None = None


class MethodRow(BaseModel):
    """One row of the evaluation table (event-PA on the test parts unless named otherwise)."""

    method: str
    kind: str = ""
    precision: float | None = None
    recall: float | None = None
    f1: float | None = None
    pooled_f1: float | None = None
    both_f1: float | None = None
    point_f1: float | None = None
    delay_f1: float | None = None
    auc_pr: float | None = None
    seconds: float | None = None


class UsageRow(BaseModel):
    """LLM calls, tokens and cost of one agent (or ``total``)."""

    agent: str
    calls: int
    cached_calls: int = 0
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float


class Report(BaseModel):
    """Everything a report shows; :func:`render_html` draws it."""

    kind: Literal["run", "eval"]
    title: str
    source: str
    dataset: str
    created: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    """When the report was built (UTC, ISO 8601)."""
    argos_version: str = ARGOS_VERSION
    facts: list[tuple[str, str]] = Field(default_factory=list)
    methods: list[MethodRow] = Field(default_factory=list)
    table_note: str = ""
    partitions: dict[str, list[MethodRow]] = Field(default_factory=dict)
    per_series: list[dict[str, Any]] = Field(default_factory=list)
    per_series_methods: list[str] = Field(default_factory=list)
    per_series_note: str = ""
    series: list[SeriesView] = Field(default_factory=list)
    rules: list[RuleView] = Field(default_factory=list)
    units: list[UnitView] = Field(default_factory=list)
    usage: list[UsageRow] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    raw_tables: str = ""


def split_scores(
    truth: BoolArray, pred: BoolArray, val_start: int, test_start: int
) -> list[SplitScore]:
    """Event-PA scores of ``pred`` against ``truth`` on train, validation and test."""
    from argos.metrics import events as find_events

    out: list[SplitScore] = []
    parts: tuple[tuple[Literal["train", "validation", "test"], int, int], ...] = (
        ("train", 0, val_start),
        ("validation", val_start, test_start),
        ("test", test_start, len(truth)),
    )
    for name, a, b in parts:
        t, p = truth[a:b], pred[a:b]
        s = event_pa(t, p)
        out.append(
            SplitScore(
                **s.to_dict(),
                split=name,
                points=b - a,
                events=len(find_events(t)[0]),
            )
        )
    return out


def _boundaries(val_start: int, test_start: int) -> list[Boundary]:
    from argos.report.plots import Boundary

    marks = []
    if val_start < test_start:
        marks.append(Boundary(val_start, "validation"))
    marks.append(Boundary(test_start, "test"))
    return marks


def load_report_dataset(
    name: str,
    data_dir: Path | None,
    train_fraction: float | None,
    granularity: str | None,
) -> Dataset:
    """Load dataset ``name`` as the run or evaluation loaded it (``granularity`` overrides the
    catalog's); a loading failure is a :class:`ReportError`."""
    from argos.data import catalog
    from argos.data.series import DataError

    try:
        ds = catalog.load_dataset(name, data_dir=data_dir, train_fraction=train_fraction)
    except (DataError, ValueError) as exc:
        raise ReportError(f"cannot load dataset {name!r} for the report: {exc}") from exc
    if granularity in ("series", "partition") and granularity != ds.split.granularity:
        split = SplitSpec(ds.split.train_fraction, ds.split.validation_fraction, granularity)
        ds = Dataset(ds.name, ds.series, split, ds.partitions, ds.meta)
    return ds


def truth_labels(series: Series) -> BoolArray:
    """The series' labels as booleans (all normal when it has none)."""
    if series.labels is None:
        return np.zeros(len(series), dtype=np.bool_)
    return np.asarray(series.labels, dtype=np.bool_)


def series_view(
    series: Series,
    spec: SplitSpec,
    pred: BoolArray | None,
    *,
    unit: str,
    method: str,
    note: str = "",
    draw: bool = True,
) -> SeriesView:
    """The view of ``series``: event-PA scores of ``pred`` per part and, when ``draw``, its
    figure."""
    from argos.data.protocol import split_series

    sp = split_series(series, spec)
    truth = truth_labels(series)
    scores = [] if pred is None else split_scores(truth, pred, sp.val_start, sp.test_start)
    view = SeriesView(
        id=series.id,
        unit=unit,
        points=len(series),
        val_start=sp.val_start,
        test_start=sp.test_start,
        method=method,
        scores=scores,
        figure="",
        note=note,
    )
    if draw:
        draw_series(view, series, pred)
    return view


def draw_series(view: SeriesView, series: Series, pred: BoolArray | None) -> None:
    """Render ``view``'s figure (values, labels, detections, split boundaries)."""
    from argos.report.plots import png_data_uri, series_figure

    method = view.method
    title = f"{series.id}" + (f"  (detections: {method})" if method and pred is not None else "")
    png = series_figure(
        series.values,
        series.timestamps,
        series.labels,
        pred,
        boundaries=_boundaries(view.val_start, view.test_start),
        title=title,
    )
    view.figure = png_data_uri(png)


def read_json_object(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``; anything else is a :class:`ReportError`."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ReportError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ReportError(f"{path}: expected a JSON object")
    return data


def pick_series(f1: Mapping[str, float | None], max_series: int) -> list[str]:
    """The series to draw: half the worst and half the best by F1 (undefined F1 last), at most
    ``max_series``, in ascending F1 order."""
    if max_series <= 0:
        return []
    ranked = sorted(f1, key=lambda s: (f1[s] is None, f1[s] if f1[s] is not None else 0.0, s))
    defined = [s for s in ranked if f1[s] is not None]
    rest = [s for s in ranked if f1[s] is None]
    if len(defined) <= max_series:
        return (defined + rest)[:max_series]
    worst = max_series - max_series // 2
    return defined[:worst] + defined[len(defined) - max_series // 2 :]
