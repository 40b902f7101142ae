"""Training and evaluation reports: one self-contained HTML file per run or evaluation.

Two sources, recognised by their files:

- a **training run** folder (``summary.json``, one rule-set folder per unit; LLM runs also
  ``usage.json``, ``run.json`` and the event log in ``checkpoints.sqlite``): the data comes from
  :func:`argos.data.catalog.load_dataset`, the splits from
  :func:`argos.data.protocol.split_series`, and the
  detections from running each exported rule set on the whole unlabeled series **in the sandbox**
  (rule code is never executed in this process). The report scores the rule sets on train,
  validation and test, next to baselines fitted on the same train parts;
- an **evaluation** folder (``results.json``, ``per_series.csv``, ``command.txt`` written by
  ``argos eval --out``): the tables, per-series F1, and figures for a bounded number of series (the
  worst and the best), with the detections of one method refitted exactly as ``argos eval`` fits it.

:func:`build_report` returns a :class:`Report` (pydantic, JSON-ready); :func:`render_html` turns it
into HTML with inline CSS and PNG figures as ``data:`` URIs (no script, no external URL);
:func:`write_report` does both. Figures come from :mod:`argos.report.plots`.
"""

from __future__ import annotations

import ast
import csv
import html
import json
import keyword
import re
import shlex
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from argos._types import BoolArray
from argos._version import __version__ as ARGOS_VERSION
from argos.data.series import Dataset, Series, SplitSpec
from argos.metrics import Scores, aggregate_mean, aggregate_pooled, event_pa

if TYPE_CHECKING:
    from argos.report.plots import Boundary
    from argos.rules.artifacts import RuleSet
    from argos.sandbox.pool import Sandbox

DEFAULT_BASELINES = ("robust-zscore", "spectral-residual")
"""Baselines fitted next to a run's rule sets (the ones ``argos demo`` shows)."""

DEFAULT_MAX_SERIES = 12
"""Series figures in an evaluation report (half the worst, half the best by F1)."""

DEFAULT_RUN_MAX_SERIES = 60
"""Series figures in a run report before it draws only the worst and the best by test F1."""

ProgressFn = Callable[[str], None]


class ReportError(RuntimeError):
    """The folder is not a run or evaluation folder, or its data cannot be loaded."""


# --------------------------------------------------------------------------------------------
# Data model
# --------------------------------------------------------------------------------------------


class SplitScore(BaseModel):
    """Event-PA scores of the detections on one part of one series."""

    split: Literal["train", "validation", "test"]
    points: int
    events: int
    precision: float | None
    recall: float | None
    f1: float | None
    tp: int
    fp: int
    fn: int


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
    """One training unit of a run: outcome, candidates and progress."""

    unit: str
    series: list[str]
    generator: str
    rules: list[str]
    tried: int
    train_f1: float | None
    validation_f1: float | None
    verified: bool
    problems: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    seconds: float = 0.0
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
    created: str
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


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------

_SECTION = re.compile(r"^\s*(normal|abnormal)\b[^:\n]{0,30}:\s*", re.I)


def rule_conditions(code: str) -> tuple[str, str, str]:
    """``(title, normal, abnormal)`` from a rule's module docstring.

    ``title`` is the docstring's first line; ``normal`` / ``abnormal`` are the paragraphs that start
    with ``Normal:`` / ``Abnormal:`` (also ``Normal conditions:`` and the like), empty when absent.
    """
    try:
        doc = ast.get_docstring(ast.parse(code)) or ""
    except SyntaxError:
        return "", "", ""
    lines = doc.strip().splitlines()
    found: dict[str, list[str]] = {"normal": [], "abnormal": []}
    current: str | None = None
    title = ""
    for i, line in enumerate(lines):
        m = _SECTION.match(line)
        if m:
            current = m.group(1).lower()
            found[current].append(line[m.end() :].strip())
        elif not line.strip():
            current = None
        elif current is not None:
            found[current].append(line.strip())
        elif i == 0:
            title = line.strip()
    return (
        title,
        " ".join(p for p in found["normal"] if p),
        " ".join(p for p in found["abnormal"] if p),
    )


def split_scores(
    truth: BoolArray, pred: BoolArray, val_start: int, test_start: int
) -> list[SplitScore]:
    """Event-PA scores of ``pred`` against ``truth`` on train, validation and test."""
    from argos.metrics import events as find_events

    out: list[SplitScore] = []
    for name, a, b in (
        ("train", 0, val_start),
        ("validation", val_start, test_start),
        ("test", test_start, len(truth)),
    ):
        t, p = truth[a:b], pred[a:b]
        s = event_pa(t, p)
        out.append(
            SplitScore(
                split=name,  # type: ignore[arg-type]
                points=b - a,
                events=len(find_events(t)[0]),
                precision=s.precision,
                recall=s.recall,
                f1=s.f1,
                tp=s.tp,
                fp=s.fp,
                fn=s.fn,
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


def _load_data(
    name: str,
    data_dir: Path | None,
    train_fraction: float | None,
    granularity: str | None,
) -> Dataset:
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


def _truth(series: Series) -> BoolArray:
    if series.labels is None:
        return np.zeros(len(series), dtype=np.bool_)
    return np.asarray(series.labels, dtype=np.bool_)


def _series_view(
    series: Series,
    spec: SplitSpec,
    pred: BoolArray | None,
    *,
    unit: str,
    method: str,
    note: str = "",
    draw: bool = True,
) -> SeriesView:
    from argos.data.protocol import split_series

    sp = split_series(series, spec)
    truth = _truth(series)
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
        _draw(view, series, pred)
    return view


def _draw(view: SeriesView, series: Series, pred: BoolArray | None) -> None:
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


def _method_row(name: str, kind: str, test_scores: Sequence[Scores]) -> MethodRow:
    mean = aggregate_mean(list(test_scores))
    pooled = aggregate_pooled(test_scores)
    return MethodRow(
        method=name,
        kind=kind,
        precision=mean.precision,
        recall=mean.recall,
        f1=mean.f1,
        pooled_f1=pooled.f1,
    )


# --------------------------------------------------------------------------------------------
# Training runs
# --------------------------------------------------------------------------------------------


def _external_base(spec: str, group: Sequence[Series], split: SplitSpec) -> list[BoolArray] | None:
    """Labels of a fusion's external ``method:NAME`` base on every series of ``group``: the method
    fitted on the unit's train/validation parts (seed 0), as training fitted it; None for a
    ``csv:`` base or a method that is not registered."""
    from argos.data.protocol import detection_input, fit_inputs
    from argos.methods import get_method

    if not spec.startswith("method:"):
        return None
    try:
        info = get_method(spec.removeprefix("method:"))
    except KeyError:
        return None
    inputs = fit_inputs(group, split)
    detector = info.build(seed=0).fit(inputs.train, inputs.validation)
    return [np.asarray(detector.detect(detection_input(s)), dtype=np.bool_) for s in group]


def _run_rules(
    sandbox: Sandbox, ruleset: RuleSet, group: Sequence[Series], split: SplitSpec
) -> tuple[list[BoolArray], list[str]]:
    """Labels of the rule set on every series of ``group`` (whole series, no labels), combined
    as the manifest says, computed in the sandbox; plus problems met."""
    from argos.data.protocol import detection_input
    from argos.online.detector import combine
    from argos.rules.artifacts import Fusion

    inputs = [
        (np.asarray(s.values, np.float64), np.asarray(s.timestamps, np.int64))
        for s in (detection_input(x) for x in group)
    ]
    per_rule: list[list[BoolArray]] = []
    roles: list[Any] = []
    problems: list[str] = []
    for entry in ruleset.rules:
        result = sandbox.run(ruleset.codes[entry.id], inputs, dict(entry.params))
        if not result.ok or result.outputs is None:
            problems.append(f"rule {entry.id}: {result.status}: {result.detail[:200]}")
            continue
        per_rule.append([np.asarray(o, dtype=np.bool_) for o in result.outputs])
        roles.append(entry.role)
    comb = ruleset.manifest.combination
    external = (
        _external_base(comb.base, group, split)
        if isinstance(comb, Fusion) and comb.external_base
        else None
    )
    out: list[BoolArray] = []
    for j, s in enumerate(group):
        labels = (
            np.stack([r[j] for r in per_rule])
            if per_rule
            else np.zeros((0, len(s)), dtype=np.bool_)
        )
        if isinstance(comb, Fusion):
            base = None if external is None else external[j]
            if comb.external_base and base is None:
                problems.append(
                    f"fusion with the external base {comb.base}: showing the FN-rules' alarms "
                    "only (the base's labels are not part of the run)"
                )
                fn_rows = [i for i, r in enumerate(roles) if r == "fn"]
                out.append(
                    np.asarray(labels[fn_rows].any(axis=0), dtype=np.bool_)
                    if fn_rows
                    else np.zeros(len(s), dtype=np.bool_)
                )
                continue
            out.append(combine(labels, roles, "fusion", base))
        else:
            out.append(combine(labels, roles, "or"))
    return out, sorted(set(problems))


def _checkpoint_logs(path: Path) -> dict[str, list[dict[str, Any]]]:
    """The graph event log of every thread (unit) in an LLM run's ``checkpoints.sqlite``."""
    if not path.is_file():
        return {}
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            threads = [r[0] for r in conn.execute("SELECT DISTINCT thread_id FROM checkpoints")]
    except sqlite3.Error:
        return {}
    try:
        from langgraph.checkpoint.sqlite import SqliteSaver
    except ImportError:
        return {}
    logs: dict[str, list[dict[str, Any]]] = {}
    with SqliteSaver.from_conn_string(str(path)) as saver:
        for thread in threads:
            tup = saver.get_tuple({"configurable": {"thread_id": thread}})
            if tup is None:
                continue
            log = tup.checkpoint.get("channel_values", {}).get("log") or []
            logs[str(thread)] = [dict(e) for e in log if isinstance(e, Mapping)]
    return logs


def progress_from_log(
    log: Sequence[Mapping[str, Any]],
) -> tuple[list[IterationView], list[CandidateView]]:
    """Per-iteration progress and the candidate table from a training graph's event log.

    Candidates are matched to what happened to them by (iteration, id): ``accepted`` events mark
    the kept one, a failed ``checked`` event gives the reason a candidate was dropped, a
    ``regressed`` event the metric comparison. Reviewer revisions appear as rows of their own
    (origin ``reviewer``) with the gate's verdict.
    """
    why: dict[tuple[Any, str], str] = {}
    accepted: set[tuple[Any, str]] = set()
    candidates: list[CandidateView] = []
    per_iter: dict[int, Any] = {}
    for e in log:
        kind = e.get("event")
        it = e.get("iteration")
        key = (it, str(e.get("id")))
        if kind == "checked" and e.get("status") != "ok":
            why[key] = f"{e.get('status')}: {e.get('detail', '')}".strip()
        elif kind == "accepted":
            if e.get("via") == "review":
                candidates.append(
                    CandidateView(
                        iteration=it if isinstance(it, int) else None,
                        rule=str(e.get("id")),
                        origin="reviewer",
                        status="ok",
                        validation_f1=e.get("val_f1"),
                        outcome="accepted (revision by the reviewer)",
                    )
                )
            else:
                accepted.add(key)
        elif kind == "candidate":
            status = str(e.get("status"))
            candidates.append(
                CandidateView(
                    iteration=it if isinstance(it, int) else None,
                    rule=str(e.get("id")),
                    origin=str(e.get("origin") or ""),
                    repairs=e.get("repairs") if isinstance(e.get("repairs"), int) else None,
                    status=status,
                    validation_f1=e.get("val_f1"),
                    outcome="" if status == "ok" else why.get(key, status),
                )
            )
        elif kind == "regressed":
            why[key] = (
                f"regressed: validation F1 {_f(e.get('val_f1'))} below the kept "
                f"{_f(e.get('baseline'))}; sent to the reviewer"
            )
        elif kind == "reverted":
            if "status" in e:  # the reviewer's revision failed the gate
                candidates.append(
                    CandidateView(
                        iteration=it if isinstance(it, int) else None,
                        rule=str(e.get("id")),
                        origin="reviewer",
                        status=str(e.get("status")),
                        validation_f1=e.get("val_f1"),
                        outcome="revision rejected (regressed or failed its checks)",
                    )
                )
            else:
                why[key] = why.get(key, "regressed") + "; the reviewer reverted it"
        elif kind == "iteration_end" and isinstance(it, int):
            per_iter[it] = e.get("best_val_f1")
    for c in candidates:
        if c.origin == "reviewer" or c.status != "ok":
            continue
        key = (c.iteration, c.rule)
        if key in accepted:
            c.outcome = "accepted"
            accepted.discard(key)  # an identical later candidate is a duplicate
        else:
            c.outcome = why.get(key, "valid, not kept (a better candidate was)")
    iterations: list[IterationView] = []
    for it in sorted({c.iteration for c in candidates if c.iteration is not None} | set(per_iter)):
        mine = [c for c in candidates if c.iteration == it]
        acc = sum(1 for c in mine if c.outcome.startswith("accepted"))
        best = per_iter.get(it)
        iterations.append(
            IterationView(
                iteration=it,
                best_val_f1=None if best is None or best < 0 else float(best),
                accepted=acc,
                rejected=len(mine) - acc,
            )
        )
    return iterations, candidates


def _usage_rows(usage: Mapping[str, Any]) -> list[UsageRow]:
    rows = []
    for name, u in [*usage.get("agents", {}).items(), ("total", usage.get("total", {}))]:
        if not isinstance(u, Mapping):
            continue
        rows.append(
            UsageRow(
                agent=str(name),
                calls=int(u.get("calls", 0)),
                cached_calls=int(u.get("cached_calls", 0)),
                prompt_tokens=int(u.get("prompt_tokens", 0)),
                completion_tokens=int(u.get("completion_tokens", 0)),
                cost_usd=float(u.get("cost_usd", 0.0)),
            )
        )
    return rows


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ReportError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ReportError(f"{path}: expected a JSON object")
    return data


def _ruleset_dir(run_dir: Path, unit: Mapping[str, Any]) -> Path | None:
    """The unit's rule-set folder: inside ``run_dir`` (the folder being reported, even when it
    was moved or copied), else the path recorded in the summary."""
    raw = unit.get("path")
    if not raw:
        return None
    path = Path(str(raw))
    inside = run_dir / path.name
    if (inside / "manifest.json").is_file():
        return inside
    return path if (path / "manifest.json").is_file() else None


def build_run_report(
    run_dir: Path,
    *,
    data_dir: Path | None = None,
    baselines: Sequence[str] = DEFAULT_BASELINES,
    max_series: int | None = DEFAULT_RUN_MAX_SERIES,
    progress: ProgressFn | None = None,
) -> Report:
    """The report of a training run folder (see the module docstring).

    Every series is scored (the per-series table); figures are drawn for all of them up to
    ``max_series`` (None = no limit), beyond that for the worst and the best by test F1.
    """
    from argos.data.protocol import detection_input, fit_inputs, split_series
    from argos.methods import get_method
    from argos.report.plots import png_data_uri, progress_figure
    from argos.rules.artifacts import RuleSetError, load_ruleset
    from argos.sandbox.pool import Sandbox

    say = progress or (lambda _msg: None)
    summary = _read_json(run_dir / "summary.json")
    run_opts = _read_json(run_dir / "run.json") if (run_dir / "run.json").is_file() else {}
    if data_dir is None and run_opts.get("data_dir"):
        data_dir = Path(str(run_opts["data_dir"]))
    name = str(summary.get("dataset", ""))
    say(f"loading dataset {name}")
    ds = _load_data(name, data_dir, None, summary.get("granularity"))
    by_id = {s.id: s for s in ds.series}
    units = [u for u in summary.get("units", []) if isinstance(u, Mapping)]
    logs = _checkpoint_logs(run_dir / "checkpoints.sqlite")
    report = Report(
        kind="run",
        title=f"Training run: {name}",
        source=str(run_dir),
        dataset=name,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    usage = summary.get("usage") or (
        _read_json(run_dir / "usage.json") if (run_dir / "usage.json").is_file() else {}
    )
    report.usage = _usage_rows(usage) if usage else []
    report.facts = [
        ("dataset", name),
        ("generator", str(summary.get("generator", ""))),
        ("granularity", str(summary.get("granularity", ""))),
        ("units", str(len(units))),
        ("series", str(sum(len(u.get("series", [])) for u in units))),
        ("rules exported", str(sum(len(u.get("rules", [])) for u in units))),
        ("training time", f"{float(summary.get('seconds', 0.0)):.1f} s"),
    ]
    if run_opts.get("model"):
        report.facts.append(("model", str(run_opts["model"])))
    rule_test: list[Scores] = []
    scored: list[tuple[SeriesView, Series, BoolArray | None]] = []
    base_test: dict[str, list[Scores]] = {b: [] for b in baselines}
    with Sandbox() as sandbox:
        for u in units:
            unit = str(u.get("unit", ""))
            group = [by_id[i] for i in u.get("series", []) if i in by_id]
            missing = [i for i in u.get("series", []) if i not in by_id]
            if missing:
                report.notes.append(f"unit {unit}: series not in the dataset: {missing[:5]}")
            view = UnitView(
                unit=unit,
                series=[str(i) for i in u.get("series", [])],
                generator=str(u.get("generator", "")),
                rules=[str(r) for r in u.get("rules", [])],
                tried=int(u.get("tried", 0)),
                train_f1=u.get("train_f1"),
                validation_f1=u.get("validation_f1"),
                verified=bool(u.get("verified", False)),
                problems=[str(p) for p in u.get("problems", [])],
                notes=[str(n) for n in u.get("notes", [])],
                seconds=float(u.get("seconds", 0.0)),
            )
            unit_logs = [
                v for k, v in sorted(logs.items()) if k == unit or k.startswith(unit + "/")
            ]
            if unit_logs:
                its, cands = progress_from_log([e for lg in unit_logs for e in lg])
                view.iterations, view.candidates = its, cands
                if its:
                    view.figure = png_data_uri(
                        progress_figure(
                            [i.iteration for i in its],
                            [i.best_val_f1 for i in its],
                            [i.accepted for i in its],
                            [i.rejected for i in its],
                            title=f"{unit}: validation F1 per iteration",
                        )
                    )
            report.units.append(view)
            say(f"running the rules of {unit} in the sandbox")
            rs_dir = _ruleset_dir(run_dir, u)
            preds: list[BoolArray | None] = [None] * len(group)
            if rs_dir is not None:
                try:
                    ruleset = load_ruleset(rs_dir)
                except RuleSetError as exc:
                    report.notes.append(f"unit {unit}: rule set not loaded: {exc}")
                else:
                    for entry in ruleset.rules:
                        title, normal, abnormal = rule_conditions(ruleset.codes[entry.id])
                        report.rules.append(
                            RuleView(
                                unit=unit,
                                id=entry.id,
                                file=entry.file,
                                role=entry.role,
                                status=entry.status,
                                lookback=entry.lookback,
                                params=dict(entry.params),
                                title=title,
                                normal=normal,
                                abnormal=abnormal,
                                code=ruleset.codes[entry.id],
                            )
                        )
                    if group:
                        labels, problems = _run_rules(sandbox, ruleset, group, ds.split)
                        report.notes.extend(f"unit {unit}: {p}" for p in problems)
                        preds = list(labels)
            stated = [(r.id, r.abnormal or r.title) for r in report.rules if r.unit == unit]
            for s, pred in zip(group, preds, strict=True):
                note = "" if pred is not None else "no rule set exported for this unit"
                view_s = _series_view(
                    s, ds.split, pred, unit=unit, method="rule set", note=note, draw=False
                )
                if pred is not None:
                    view_s.rules = stated
                scored.append((view_s, s, pred))
                if pred is not None:
                    sp = split_series(s, ds.split)
                    rule_test.append(event_pa(_truth(s)[sp.test_start :], pred[sp.test_start :]))
            for b in baselines:
                if not group:
                    continue
                say(f"fitting baseline {b} on {unit}")
                try:
                    inputs = fit_inputs(group, ds.split)
                    det = get_method(b).build(seed=0).fit(inputs.train, inputs.validation)
                except (KeyError, ValueError) as exc:
                    report.notes.append(f"baseline {b} on {unit}: {exc}")
                    continue
                for s in group:
                    sp = split_series(s, ds.split)
                    lab = np.asarray(det.detect(detection_input(s)), dtype=np.bool_)
                    base_test[b].append(event_pa(_truth(s)[sp.test_start :], lab[sp.test_start :]))
    f1_of = {v.id: next((x.f1 for x in v.scores if x.split == "test"), None) for v, _, _ in scored}
    if max_series is None or len(scored) <= max_series:
        chosen = set(f1_of)
    else:
        chosen = set(pick_series(f1_of, max_series))
        report.notes.append(
            f"{len(chosen)} of {len(scored)} series drawn (the worst and the best by test F1; "
            "--max-series); every series is in the per-series table"
        )
    for view_s, s, pred in scored:
        split_f1 = {x.split: x.f1 for x in view_s.scores}
        report.per_series.append(
            {
                "series": view_s.id,
                "partition": view_s.unit,
                "test_anomalies": next((x.events for x in view_s.scores if x.split == "test"), ""),
                "drawn": view_s.id in chosen,
                **{f"{k} F1": split_f1.get(k) for k in ("train", "validation", "test")},
            }
        )
        if view_s.id in chosen:
            say(f"drawing {view_s.id}")
            _draw(view_s, s, pred)
            report.series.append(view_s)
    report.per_series_methods = ["train F1", "validation F1", "test F1"]
    report.per_series_note = "event-PA F1 of the run's rule set on each part (events counted)."
    report.methods = [_method_row("argos rule sets (this run)", "argos", rule_test)]
    report.methods += [_method_row(b, "baseline", sc) for b, sc in base_test.items() if sc]
    report.table_note = (
        "Event-F1 with point adjustment on the test part of every series; P/R/F1 are means over "
        "series (F1 and recall over the series with a test anomaly), pooled F1 sums the counts. "
        "Baselines are fitted on the same train/validation parts as the rules."
    )
    return report


# --------------------------------------------------------------------------------------------
# Evaluations
# --------------------------------------------------------------------------------------------


def _num(raw: str) -> float | None:
    try:
        return float(raw) if raw not in ("", "nan", "None") else None
    except ValueError:
        return None


def _rows_from_results(methods: Mapping[str, Any], kinds: Mapping[str, str]) -> list[MethodRow]:
    rows = []
    for name, m in methods.items():
        ev = m.get("event_pa", {})
        rows.append(
            MethodRow(
                method=name,
                kind=kinds.get(name, ""),
                precision=ev.get("mean", {}).get("precision"),
                recall=ev.get("mean", {}).get("recall"),
                f1=ev.get("mean", {}).get("f1"),
                pooled_f1=ev.get("pooled", {}).get("f1"),
                both_f1=ev.get("mean_both", {}).get("f1"),
                point_f1=m.get("point", {}).get("mean", {}).get("f1"),
                delay_f1=m.get("delay", {}).get("mean", {}).get("f1"),
                auc_pr=m.get("auc_pr"),
                seconds=m.get("seconds"),
            )
        )
    return rows


def _train_fraction(command: str) -> float | None:
    try:
        words = shlex.split(command)
    except ValueError:
        return None
    for i, w in enumerate(words):
        if w == "--train-fraction" and i + 1 < len(words):
            return _num(words[i + 1])
        if w.startswith("--train-fraction="):
            return _num(w.split("=", 1)[1])
    return None


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


def build_eval_report(
    eval_dir: Path,
    *,
    data_dir: Path | None = None,
    max_series: int = DEFAULT_MAX_SERIES,
    method: str | None = None,
    progress: ProgressFn | None = None,
) -> Report:
    """The report of an ``argos eval --out`` folder (see the module docstring)."""
    from argos.data.protocol import detection_input, fit_inputs
    from argos.methods import get_method

    say = progress or (lambda _msg: None)
    results = _read_json(eval_dir / "results.json")
    name = str(results.get("dataset", ""))
    methods = results.get("methods", {})
    if not isinstance(methods, Mapping) or not methods:
        raise ReportError(f"{eval_dir / 'results.json'}: no methods")
    kinds: dict[str, str] = {}
    for m in methods:
        try:
            kinds[m] = get_method(m).kind
        except KeyError:
            kinds[m] = ""
    run = results.get("run", {}) if isinstance(results.get("run"), Mapping) else {}
    report = Report(
        kind="eval",
        title=f"Evaluation: {name}",
        source=str(eval_dir),
        dataset=name,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        methods=_rows_from_results(methods, kinds),
    )
    counts = results.get("series", {}) if isinstance(results.get("series"), Mapping) else {}
    report.facts = [
        ("dataset", name),
        ("methods", ", ".join(methods)),
        ("trials", str(results.get("trials", 1))),
        ("granularity", str(results.get("granularity", ""))),
        ("series", str(counts.get("series", ""))),
        ("without test anomalies", str(counts.get("without_test_anomalies", ""))),
        ("k (delay metric)", str(results.get("delay", ""))),
        ("command", str(run.get("command", ""))),
        ("git commit", str(run.get("git_commit", ""))),
        ("date", str(run.get("date", ""))),
    ]
    report.table_note = (
        "Test part only. P/R/F1 = event-F1 with point adjustment, means over series (recall and F1 "
        "over the series with a test anomaly); pooled = counts summed over series; both = mean "
        "over the series with anomalies in train and test; point and delay = mean F1 of the "
        "point-wise and k-delay metrics."
    )
    parts = results.get("by_partition") or {}
    if isinstance(parts, Mapping):
        for part, pm in parts.items():
            if isinstance(pm, Mapping) and pm:
                report.partitions[str(part)] = _rows_from_results(
                    pm.get("methods", pm) if isinstance(pm.get("methods", pm), Mapping) else {},
                    kinds,
                )
    md = eval_dir / "results.md"
    if md.is_file():
        report.raw_tables = md.read_text()
    # Per-series event-PA F1 (trial 0), one column per method.
    per_series: dict[str, dict[str, Any]] = {}
    ps = eval_dir / "per_series.csv"
    if ps.is_file():
        with ps.open(newline="") as fh:
            for row in csv.DictReader(fh):
                if row.get("trial", "0") not in ("0", ""):
                    continue
                sid = row["series"]
                entry = per_series.setdefault(
                    sid,
                    {
                        "series": sid,
                        "partition": row.get("partition", ""),
                        "test_anomalies": row.get("test_anomalies", ""),
                    },
                )
                entry[row["method"]] = _num(row.get("event_pa_f1", ""))
    report.per_series = list(per_series.values())
    report.per_series_methods = list(methods)
    report.per_series_note = "event-PA F1 of each method on the test part, trial 0."
    chosen = method or max(report.methods, key=lambda r: -1.0 if r.f1 is None else r.f1).method
    if chosen not in methods:
        raise ReportError(f"method {chosen!r} is not in this evaluation: {', '.join(methods)}")
    pick = pick_series({s: e.get(chosen) for s, e in per_series.items()}, max_series)
    if not pick:
        return report
    say(f"loading dataset {name}")
    ds = _load_data(
        name,
        data_dir,
        _train_fraction(str(run.get("resolved_command", ""))),
        str(results.get("granularity") or "") or None,
    )
    groups = ds.groups()
    unit_of = {s.id: g for g, members in groups.items() for s in members}
    try:
        info = get_method(chosen)
    except KeyError:
        info = None
        report.notes.append(
            f"method {chosen!r} is not registered in this process: "
            "figures show data and labels only"
        )
    detectors: dict[str, Any] = {}
    by_id = {s.id: s for s in ds.series}
    for sid in pick:
        s = by_id.get(sid)
        if s is None:
            report.notes.append(f"series {sid} is not in the dataset as loaded now")
            continue
        pred: BoolArray | None = None
        if info is not None:
            g = unit_of[sid]
            if g not in detectors:
                say(f"fitting {chosen} on {g}")
                inputs = fit_inputs(groups[g], ds.split)
                detectors[g] = info.build(seed=0).fit(inputs.train, inputs.validation)
            pred = np.asarray(detectors[g].detect(detection_input(s)), dtype=np.bool_)
        report.series.append(
            _series_view(
                s, ds.split, pred, unit=unit_of[sid], method=chosen if pred is not None else ""
            )
        )
    return report


# --------------------------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------------------------


def report_kind(path: Path) -> Literal["run", "eval"]:
    """``run`` for a training run folder, ``eval`` for an evaluation folder; raise otherwise."""
    if (path / "summary.json").is_file():
        return "run"
    if (path / "results.json").is_file():
        return "eval"
    raise ReportError(
        f"{path}: neither a training run (summary.json) nor an evaluation (results.json) folder"
    )


def build_report(
    path: Path,
    *,
    data_dir: Path | None = None,
    baselines: Sequence[str] = DEFAULT_BASELINES,
    max_series: int | None = None,
    method: str | None = None,
    progress: ProgressFn | None = None,
) -> Report:
    """Build the report of a run or evaluation folder (recognised by :func:`report_kind`).

    ``max_series`` bounds the series figures (default: 60 for a run, 12 for an evaluation).
    """
    if report_kind(path) == "run":
        return build_run_report(
            path,
            data_dir=data_dir,
            baselines=baselines,
            max_series=DEFAULT_RUN_MAX_SERIES if max_series is None else max_series,
            progress=progress,
        )
    return build_eval_report(
        path,
        data_dir=data_dir,
        max_series=DEFAULT_MAX_SERIES if max_series is None else max_series,
        method=method,
        progress=progress,
    )


def write_report(
    path: Path,
    out: Path | None = None,
    **options: Any,
) -> Path:
    """Build the report of ``path`` and write it as HTML to ``out`` (default
    ``path/report.html``); return where it was written."""
    report = build_report(path, **options)
    target = out or (path / "report.html")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render_html(report), encoding="utf-8")
    return target


# --------------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------------

_CSS = """
body{font-family:-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:0;color:#222;
background:#fafafa}
header{background:#243447;color:#fff;padding:18px 32px}
header h1{margin:0 0 4px;font-size:22px}
header p{margin:0;color:#c9d4e0;font-size:13px}
nav{padding:8px 32px;background:#e9eef3;font-size:13px}
nav a{margin-right:16px;color:#243447}
main{padding:8px 32px 40px;max-width:1400px}
section{margin-top:24px}
h2{font-size:18px;border-bottom:2px solid #243447;padding-bottom:4px}
h3{font-size:15px;margin:18px 0 6px}
table{border-collapse:collapse;font-size:13px;margin:6px 0 12px;background:#fff}
th,td{border:1px solid #d5dbe1;padding:3px 8px;text-align:right}
th{background:#eef2f6}
td.l,th.l{text-align:left}
tr.argos td{font-weight:bold}
figure{margin:10px 0 18px;background:#fff;border:1px solid #e1e5ea;padding:6px}
figure img{max-width:100%;height:auto;display:block}
figcaption{font-size:12px;color:#444;margin-top:4px}
pre{background:#f4f6f8;border:1px solid #e1e5ea;padding:8px;font-size:12px;overflow-x:auto}
.rule{background:#fff;border:1px solid #e1e5ea;padding:8px 12px;margin:10px 0}
.cond{font-size:13px;margin:4px 0}
.cond b{display:inline-block;width:80px}
.muted{color:#666;font-size:12px}
.kw{color:#8959a8;font-weight:bold}.str{color:#718c00}.com{color:#8e908c;font-style:italic}
.num{color:#f5871f}
.f1-0{background:#f8d7d3}.f1-1{background:#fbe9d0}.f1-2{background:#fdf6d3}.f1-3{background:#e6f4d7}
.f1-4{background:#cfead0}
"""

_KEYWORDS = frozenset(keyword.kwlist)
_TOKEN = re.compile(
    r"(?P<com>#[^\n]*)|(?P<str>\"\"\"[\s\S]*?\"\"\"|'''[\s\S]*?'''|\"[^\"\n]*\"|'[^'\n]*')"
    r"|(?P<num>\b\d+(?:\.\d+)?(?:[eE][-+]?\d+)?\b)|(?P<word>\b[A-Za-z_]\w*\b)"
)


def highlight_python(code: str) -> str:
    """Escaped HTML of ``code`` with spans for keywords, strings, comments and numbers."""
    out: list[str] = []
    pos = 0
    for m in _TOKEN.finditer(code):
        out.append(html.escape(code[pos : m.start()]))
        text = html.escape(m.group(0))
        kind = m.lastgroup
        if kind == "word":
            out.append(f'<span class="kw">{text}</span>' if m.group(0) in _KEYWORDS else text)
        else:
            out.append(f'<span class="{kind}">{text}</span>')
        pos = m.end()
    out.append(html.escape(code[pos:]))
    return "".join(out)


def _f(x: Any) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.3f}"
    return html.escape(str(x))


def _f1_class(x: Any) -> str:
    if not isinstance(x, float | int):
        return ""
    return f' class="f1-{min(4, int(float(x) * 5))}"'


def _methods_table(rows: Sequence[MethodRow], kind: str) -> str:
    cols = ["method", "kind", "P", "R", "F1", "pooled F1"]
    if kind == "eval":
        cols += ["both F1", "point F1", "delay F1", "AUC-PR", "time (s)"]
    head = "".join(f'<th class="{"l" if c in ("method", "kind") else ""}">{c}</th>' for c in cols)
    body = []
    for r in rows:
        cells = [
            f'<td class="l">{_f(r.method)}</td>',
            f'<td class="l">{_f(r.kind)}</td>',
            *(f"<td>{_f(v)}</td>" for v in (r.precision, r.recall, r.f1, r.pooled_f1)),
        ]
        if kind == "eval":
            cells += [f"<td>{_f(v)}</td>" for v in (r.both_f1, r.point_f1, r.delay_f1, r.auc_pr)]
            cells.append(f"<td>{'–' if r.seconds is None else f'{r.seconds:.1f}'}</td>")
        cls = ' class="argos"' if r.kind == "argos" else ""
        body.append(f"<tr{cls}>{''.join(cells)}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _series_html(v: SeriesView) -> str:
    rows = "".join(
        f"<tr><td class='l'>{s.split}</td><td>{s.points:,}</td><td>{s.events}</td>"
        f"<td>{_f(s.precision)}</td><td>{_f(s.recall)}</td><td{_f1_class(s.f1)}>{_f(s.f1)}</td>"
        f"<td>{s.tp}</td><td>{s.fp}</td><td>{s.fn}</td></tr>"
        for s in v.scores
    )
    table = (
        "<table><tr><th class='l'>part</th><th>points</th><th>events</th><th>P</th><th>R</th>"
        f"<th>F1</th><th>TP</th><th>FP pts</th><th>FN</th></tr>{rows}</table>"
        if rows
        else ""
    )
    unit = f" · unit {html.escape(v.unit)}" if v.unit and v.unit != v.id else ""
    note = f" · {html.escape(v.note)}" if v.note else ""
    alt = html.escape(f"values of {v.id} over time with anomalies and detections")
    fired = "".join(
        f'<p class="cond"><a href="#rule-{html.escape(v.unit)}-{html.escape(rid)}">'
        f"{html.escape(rid)}</a> · <b>Abnormal:</b> {html.escape(text) or '(not stated)'}</p>"
        for rid, text in v.rules
    )
    return (
        f'<figure class="series" id="series-{html.escape(v.id)}">'
        f'<img src="{v.figure}" alt="{alt}">'
        f"<figcaption><b>{html.escape(v.id)}</b>{unit} · {v.points:,} points, validation from "
        f"{v.val_start:,}, test from {v.test_start:,}{note}</figcaption>{fired}{table}</figure>"
    )


def _rule_html(r: RuleView) -> str:
    params = ", ".join(f"{html.escape(str(k))}={_f(v)}" for k, v in r.params.items())
    return (
        f'<div class="rule" id="rule-{html.escape(r.unit)}-{html.escape(r.id)}">'
        f"<h3>{html.escape(r.unit)} / {html.escape(r.id)}</h3>"
        f'<p class="muted">{html.escape(r.title)} · role {html.escape(r.role)} · '
        f"{html.escape(r.status)} · lookback {r.lookback} · params {params or '–'}</p>"
        f'<p class="cond"><b>Normal:</b> {html.escape(r.normal) or "(not stated)"}</p>'
        f'<p class="cond"><b>Abnormal:</b> {html.escape(r.abnormal) or "(not stated)"}</p>'
        f"<details><summary>code ({html.escape(r.file)})</summary>"
        f"<pre><code>{highlight_python(r.code)}</code></pre></details></div>"
    )


def _unit_html(u: UnitView) -> str:
    rows = [
        f"<p><b>{html.escape(u.unit)}</b>: {u.tried} candidates tried, "
        f"{len(u.rules)} rule(s) kept ({html.escape(', '.join(u.rules)) or 'none'}); "
        f"train F1 {_f(u.train_f1)}, validation F1 {_f(u.validation_f1)}; "
        f"verified {'yes' if u.verified else 'no'}; {u.seconds:.1f} s.</p>"
    ]
    for p in u.problems:
        rows.append(f'<p class="muted">problem: {html.escape(p)}</p>')
    for n in u.notes:
        rows.append(f'<p class="muted">note: {html.escape(n)}</p>')
    if u.figure:
        rows.append(
            f'<figure class="progress"><img src="{u.figure}" '
            f'alt="validation F1 per iteration for {html.escape(u.unit)}"></figure>'
        )
    if u.candidates:
        body = "".join(
            f"<tr><td>{_f(c.iteration)}</td><td class='l'>{html.escape(c.rule)}</td>"
            f"<td class='l'>{html.escape(c.origin)}</td><td>{_f(c.repairs)}</td>"
            f"<td class='l'>{html.escape(c.status)}</td><td>{_f(c.validation_f1)}</td>"
            f"<td class='l'>{html.escape(c.outcome)}</td></tr>"
            for c in u.candidates
        )
        rows.append(
            "<table><tr><th>iteration</th><th class='l'>candidate</th><th class='l'>origin</th>"
            "<th>repairs</th><th class='l'>status</th><th>valid. F1</th>"
            f"<th class='l'>outcome / why</th></tr>{body}</table>"
        )
    return '<div class="unit">' + "".join(rows) + "</div>"


def render_html(report: Report) -> str:
    """The report as one self-contained HTML page (inline CSS, ``data:`` images, no script)."""
    esc = html.escape
    sections: list[tuple[str, str, str]] = []
    facts = "".join(
        f"<tr><th class='l'>{esc(k)}</th><td class='l'>{esc(v)}</td></tr>" for k, v in report.facts
    )
    overview = f"<table>{facts}</table>"
    if report.notes:
        overview += "<ul>" + "".join(f"<li>{esc(n)}</li>" for n in report.notes) + "</ul>"
    sections.append(("overview", "Overview", overview))
    ev = _methods_table(report.methods, report.kind)
    ev += f'<p class="muted">{esc(report.table_note)}</p>'
    for part, rows in report.partitions.items():
        ev += f"<h3>partition {esc(part)}</h3>" + _methods_table(rows, report.kind)
    if report.raw_tables:
        ev += (
            "<details><summary>results.md (every aggregation)</summary>"
            f"<pre>{esc(report.raw_tables)}</pre></details>"
        )
    sections.append(("evaluation", "Evaluation", ev))
    if report.per_series:
        drawn = {v.id for v in report.series}
        head = "".join(f"<th>{esc(m)}</th>" for m in report.per_series_methods)
        body = "".join(
            "<tr><td class='l'>"
            + (
                f"<a href='#series-{esc(r['series'])}'>{esc(r['series'])}</a>"
                if r.get("drawn", r["series"] in drawn)
                else esc(r["series"])
            )
            + "</td>"
            f"<td class='l'>{esc(str(r.get('partition', '')))}</td>"
            f"<td>{esc(str(r.get('test_anomalies', '')))}</td>"
            + "".join(
                f"<td{_f1_class(r.get(m))}>{_f(r.get(m))}</td>" for m in report.per_series_methods
            )
            + "</tr>"
            for r in report.per_series
        )
        sections.append(
            (
                "per-series",
                "Per-series F1",
                f"<p class='muted'>{esc(report.per_series_note)}</p>"
                "<table><tr><th class='l'>series</th><th class='l'>unit / partition</th>"
                f"<th>test anomalies</th>{head}</tr>{body}</table>",
            )
        )
    legend = (
        "<p class='muted'>Blue: values (downsampled per pixel column, keeping every labeled and "
        "detected point). Pink: labeled anomalies that were detected; orange hatched with a "
        "triangle: missed anomalies; green dots: detections inside an anomaly (true positives); "
        "red crosses: detections outside every anomaly (false positives). Dashed lines: the "
        "train / validation / test boundaries.</p>"
    )
    figs = "".join(_series_html(v) for v in report.series)
    if report.kind == "eval" and report.series:
        legend += (
            f"<p class='muted'>{len(report.series)} series drawn (the worst and the best by "
            "test F1 of the method named in each title).</p>"
        )
    sections.append(("series", "Series", legend + (figs or "<p>No series to draw.</p>")))
    if report.rules:
        sections.append(("rules", "Rules", "".join(_rule_html(r) for r in report.rules)))
    if report.kind == "run":
        training = "".join(_unit_html(u) for u in report.units)
        if report.usage:
            body = "".join(
                f"<tr><td class='l'>{esc(u.agent)}</td><td>{u.calls}</td><td>{u.cached_calls}</td>"
                f"<td>{u.prompt_tokens:,}</td><td>{u.completion_tokens:,}</td>"
                f"<td>${u.cost_usd:.4f}</td></tr>"
                for u in report.usage
            )
            training += (
                "<h3>LLM usage</h3><table><tr><th class='l'>agent</th><th>calls</th>"
                "<th>cached</th><th>prompt tokens</th><th>completion tokens</th><th>cost</th></tr>"
                f"{body}</table>"
            )
        sections.append(("training", "Training", training or "<p>No units.</p>"))
    nav = "".join(f'<a href="#{sid}">{esc(title)}</a>' for sid, title, _ in sections)
    body = "".join(
        f'<section id="{sid}"><h2>{esc(title)}</h2>{content}</section>'
        for sid, title, content in sections
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'
        f"<title>{esc(report.title)}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>{esc(report.title)}</h1><p>{esc(report.source)} · generated "
        f"{esc(report.created)} by argos {esc(report.argos_version)}</p></header>"
        f"<nav>{nav}</nav><main>{body}</main></body></html>\n"
    )
