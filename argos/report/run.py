"""The report of a training run folder.

A run folder holds ``summary.json`` and one rule-set folder per unit; LLM runs also ``usage.json``,
``run.json`` and the event log in ``checkpoints.sqlite``. The data comes from
:func:`argos.data.catalog.load_dataset`, the splits from :func:`argos.data.protocol.split_series`,
and the detections from running each exported rule set on the whole unlabeled series **in the
sandbox** (rule code is never executed in this process). The report scores the rule sets on
train, validation and test, next to baselines fitted on the same train parts, and shows each
unit's training progress and candidates.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from argos._types import BoolArray
from argos.data.series import Series, SplitSpec
from argos.metrics import Scores, aggregate_mean, aggregate_pooled, event_pa
from argos.report.html import cell
from argos.report.views import (
    CandidateView,
    IterationView,
    MethodRow,
    Report,
    RuleView,
    SeriesView,
    StatusFn,
    UnitView,
    UsageRow,
    draw_series,
    load_report_dataset,
    pick_series,
    read_json_object,
    series_view,
    truth_labels,
)
from argos.rules.contract import docstring_conditions
from argos.training.driver import UnitResult

if TYPE_CHECKING:
    from argos.rules.artifacts import RuleSet
    from argos.sandbox.pool import Sandbox

DEFAULT_BASELINES = ("robust-zscore", "spectral-residual")
"""Baselines fitted next to a run's rule sets (the ones ``argos demo`` shows)."""

DEFAULT_RUN_MAX_SERIES = 60
"""Series figures in a run report before it draws only the worst and the best by test F1."""


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
    ``regressed`` event the metric comparison, and an ``outcome`` event (written by the graph's
    select step) the real outcome in words, which wins over the others. Reviewer revisions appear
    as rows of their own (origin ``reviewer``) with the gate's verdict.
    """
    why: dict[tuple[Any, str], str] = {}
    stated: dict[tuple[Any, str], str] = {}
    accepted: set[tuple[Any, str]] = set()
    candidates: list[CandidateView] = []
    per_iter: dict[int, Any] = {}
    for e in log:
        kind = e.get("event")
        it = e.get("iteration")
        key = (it, str(e.get("id")))
        if kind == "outcome":
            stated[key] = str(e.get("outcome"))
        elif kind == "checked" and e.get("status") != "ok":
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
                f"regressed: validation F1 {cell(e.get('val_f1'))} below the kept "
                f"{cell(e.get('baseline'))}; sent to the reviewer"
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
        key = (c.iteration, c.rule)
        if c.origin != "reviewer" and key in stated:
            c.outcome = stated[key]
            if key in why and "reviewer" in why[key]:
                c.outcome += f"; {why[key].split('; ')[-1]}"
            continue
        if c.origin == "reviewer" or c.status != "ok":
            continue
        if c.validation_f1 is None:
            c.outcome = "not scored: no labeled anomaly in validation; not kept"
        elif key in accepted:
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
    progress: StatusFn | None = None,
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
    summary = read_json_object(run_dir / "summary.json")
    run_opts = read_json_object(run_dir / "run.json") if (run_dir / "run.json").is_file() else {}
    if data_dir is None and run_opts.get("data_dir"):
        data_dir = Path(str(run_opts["data_dir"]))
    # The dataset as the user named it (a PATH too); older summaries hold only the loaded name.
    name = str(
        summary.get("dataset_source") or run_opts.get("dataset") or summary.get("dataset", "")
    )
    split = summary.get("split")
    used = split.get("train_fraction") if isinstance(split, Mapping) else None
    say(f"loading dataset {name}")
    ds = load_report_dataset(
        name, data_dir, run_opts.get("train_fraction"), summary.get("granularity")
    )
    if isinstance(used, float) and used != ds.split.train_fraction:
        # The run used another split than the catalog's default (``--train-fraction``).
        ds = load_report_dataset(name, data_dir, used, summary.get("granularity"))
    by_id = {s.id: s for s in ds.series}
    units = [u for u in summary.get("units", []) if isinstance(u, Mapping)]
    logs = _checkpoint_logs(run_dir / "checkpoints.sqlite")
    report = Report(
        kind="run",
        title=f"Training run: {name}",
        source=str(run_dir),
        dataset=name,
    )
    usage = summary.get("usage") or (
        read_json_object(run_dir / "usage.json") if (run_dir / "usage.json").is_file() else {}
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
    # Every row of the table is over the same series: a series whose unit exported no rule set
    # counts as "no alarm" in the rule sets' row (what deploying the run gives it), and a baseline
    # that fails on a unit is left out of the table rather than averaged over fewer series.
    rule_test: list[Scores] = []
    without_rules: list[str] = []
    scored: list[tuple[SeriesView, Series, BoolArray | None]] = []
    base_test: dict[str, list[Scores]] = {b: [] for b in baselines}
    base_failed: set[str] = set()
    with Sandbox() as sandbox:
        for u in units:
            unit = str(u.get("unit", ""))
            group = [by_id[i] for i in u.get("series", []) if i in by_id]
            missing = [i for i in u.get("series", []) if i not in by_id]
            if missing:
                report.notes.append(f"unit {unit}: series not in the dataset: {missing[:5]}")
            result = UnitResult(
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
            view = UnitView(result=result)
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
                        title, normal, abnormal = docstring_conditions(ruleset.codes[entry.id])
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
                view_s = series_view(
                    s, ds.split, pred, unit=unit, method="rule set", note=note, draw=False
                )
                if pred is not None:
                    view_s.rules = stated
                scored.append((view_s, s, pred))
                sp = split_series(s, ds.split)
                if pred is None:
                    without_rules.append(s.id)
                shown = np.zeros(len(s), dtype=np.bool_) if pred is None else pred
                rule_test.append(event_pa(truth_labels(s)[sp.test_start :], shown[sp.test_start :]))
            for b in baselines:
                if not group:
                    continue
                say(f"fitting baseline {b} on {unit}")
                try:
                    inputs = fit_inputs(group, ds.split)
                    det = get_method(b).build(seed=0).fit(inputs.train, inputs.validation)
                except (KeyError, ValueError) as exc:
                    report.notes.append(f"baseline {b} on {unit}: {exc}")
                    base_failed.add(b)
                    continue
                for s in group:
                    sp = split_series(s, ds.split)
                    lab = np.asarray(det.detect(detection_input(s)), dtype=np.bool_)
                    base_test[b].append(
                        event_pa(truth_labels(s)[sp.test_start :], lab[sp.test_start :])
                    )
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
            draw_series(view_s, s, pred)
            report.series.append(view_s)
    report.per_series_methods = ["train F1", "validation F1", "test F1"]
    report.per_series_note = "event-PA F1 of the run's rule set on each part (events counted)."
    report.methods = [_method_row("argos rule sets (this run)", "argos", rule_test)]
    report.methods += [
        _method_row(b, "baseline", sc) for b, sc in base_test.items() if sc and b not in base_failed
    ]
    if without_rules:
        report.notes.append(
            f"{len(without_rules)} of {len(rule_test)} series have no exported rule set "
            f"({', '.join(without_rules[:10])}): the rule sets' row counts them as raising no "
            "alarm, so every row is over the same series"
        )
    report.table_note = (
        "Event-F1 with point adjustment on the test part of every series; P/R/F1 are means over "
        "series (F1 and recall over the series with a test anomaly), pooled F1 sums the counts. "
        "Baselines are fitted on the same train/validation parts as the rules."
    )
    return report
