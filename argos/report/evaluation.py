"""The report of an evaluation folder (``results.json``, ``per_series.csv``, ``command.txt``
written by ``argos eval --out``).

It shows the evaluation's tables (every method, every partition), the per-series F1 of trial 0,
and figures for a bounded number of series (the worst and the best by F1) with the detections of
one method refitted exactly as ``argos eval`` fits it.
"""

from __future__ import annotations

import csv
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from argos._types import BoolArray
from argos.report.views import (
    MethodRow,
    Report,
    ReportError,
    StatusFn,
    load_report_dataset,
    pick_series,
    read_json_object,
    series_view,
)

DEFAULT_MAX_SERIES = 12
"""Series figures in an evaluation report (half the worst, half the best by F1)."""


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


def build_eval_report(
    eval_dir: Path,
    *,
    data_dir: Path | None = None,
    max_series: int = DEFAULT_MAX_SERIES,
    method: str | None = None,
    progress: StatusFn | None = None,
) -> Report:
    """The report of an ``argos eval --out`` folder (see the module docstring)."""
    from argos.data.protocol import detection_input, fit_inputs
    from argos.methods import get_method

    say = progress or (lambda _msg: None)
    results = read_json_object(eval_dir / "results.json")
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
    ds = load_report_dataset(
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
            series_view(
                s, ds.split, pred, unit=unit_of[sid], method=chosen if pred is not None else ""
            )
        )
    return report
