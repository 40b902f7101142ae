"""The result files of an evaluation: results.md, results.csv, results.json, per_series.csv and
command.txt (the command, versions, date and git commit of the run).

:func:`write_results` writes them all from an :class:`~argos.evaluation.harness.EvalResult`;
:func:`markdown_table` is the results.md text (also what ``argos eval`` prints without ``--out``).
"""

from __future__ import annotations

import csv
import json
import platform
import shlex
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from argos._version import __version__
from argos.evaluation.harness import (
    AGGREGATIONS,
    COUNT_FIELDS,
    METRIC_LABELS,
    SCORE_FIELDS,
    EvalResult,
)
from argos.metrics import EVENT_PA, METRIC_NAMES, format_score


def markdown_table(result: EvalResult, command: str | None = None) -> str:
    """``results.md``: one table per aggregation (methods x metrics, P / R / F1) and the notes."""
    summary = result.summary()
    counts = result.series_counts()
    not_run: dict[str, str] = result.meta.get("not_run", {})
    lines = [
        f"# {result.dataset}: {len(result.methods)} methods, {counts['series']} series",
        "",
        f"Granularity: one fit per {result.granularity}. Trials: {result.trials}"
        + (" (numbers are means over trials, ± the std)" if result.trials > 1 else "")
        + f". k-delay uses k = {result.delay}. Thresholds and parameters are fit on the train part"
        " (validation included) only"
        + (
            ""
            if result.objective == EVENT_PA
            else f", for the objective {result.objective} (every method that fits one)"
        )
        + "; only the test part is scored.",
        "",
    ]
    titles = {
        "mean": "Mean over series (the published Argos convention)",
        "pooled": "Pooled: all series concatenated (the AIOps 2018 convention)",
        "mean_both": "Mean over the series with anomalies in both the train and the test part "
        "(the convention of the peer numbers in docs/evaluation.md)",
    }
    for agg in AGGREGATIONS:
        header = ["method"]
        for metric in METRIC_NAMES:
            label = METRIC_LABELS[metric]
            header += [f"{label} P", f"{label} R", f"{label} F1"]
        if agg == "mean":
            header += ["AUC-PR", "VUS-PR", "time (s)"]
        lines += [f"## {titles[agg]}", ""]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("| " + " | ".join(["---"] + ["---:"] * (len(header) - 1)) + " |")
        for method in result.methods:
            entry = summary[method]
            cells = [method]
            for metric in METRIC_NAMES:
                block = entry[metric][agg]
                sp = entry[metric].get("spread", {}).get(agg, {})
                cells += [format_score(block[k], spread=sp.get(k)) for k in SCORE_FIELDS]
            if agg == "mean":
                cells += [
                    format_score(entry["auc_pr"]),
                    format_score(entry["vus_pr"]),
                    f"{entry['seconds']:.1f}",
                ]
            lines.append("| " + " | ".join(cells) + " |")
        for method in not_run:
            lines.append("| " + " | ".join([method, "not run"] + ["–"] * (len(header) - 2)) + " |")
        lines.append("")
    if len(result.partitions) > 1:
        lines += _partition_table(result)
    lines += [
        "Notes:",
        f"- {counts['without_test_anomalies']} of {counts['series']} series have no anomaly in "
        "the test part: they are excluded from the mean recall and F1 (undefined there); their "
        "precision counts in the mean (as 0) when the method raised alarms on them.",
        f"- {counts['with_anomalies_in_both']} series have anomalies in both the train and the "
        "test part (the third table).",
        *(
            [
                f"- {len(result.meta['skipped_unlabeled'])} unlabeled series were left out: "
                + ", ".join(result.meta["skipped_unlabeled"][:10])
            ]
            if result.meta.get("skipped_unlabeled")
            else []
        ),
        *(f"- {name} was not run: {why}." for name, why in not_run.items()),
        "- Pooled sums TP/FP/FN over series (events never merge across series).",
        "- Event-PA: TP = true events with at least one alarm, FN = events with none, FP = alarms "
        "outside every event (each point once).",
        "- AUC-PR / VUS-PR: mean over series with test anomalies, for methods exposing a score.",
        f"- Wall time of the whole run: {result.seconds:.1f} s; the time column sums fit + "
        "detect over series (per trial).",
    ]
    if command:
        lines += ["", f"Regenerate: `{command}`"]
    return "\n".join(lines) + "\n"


def _partition_table(result: EvalResult) -> list[str]:
    """Event-PA F1 per partition: mean over series / mean over both-splits series / pooled."""
    parts = result.partitions
    per = {p: result.summary(p) for p in parts}
    counts = {p: result.series_counts(p) for p in parts}
    lines = [
        "## Event-PA F1 per partition: mean over series / mean over series with anomalies in "
        "both parts / pooled",
        "",
        "| method | " + " | ".join(f"{p} ({counts[p]['series']})" for p in parts) + " |",
        "| --- | " + " | ".join("---:" for _ in parts) + " |",
    ]
    for method in result.methods:
        cells = [method]
        for p in parts:
            ev = per[p][method]["event_pa"]
            cells.append(
                " / ".join(format_score(ev[agg]["f1"]) for agg in ("mean", "mean_both", "pooled"))
            )
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    return lines


def write_csv(result: EvalResult, path: Path) -> None:
    """``results.csv``: one row per method x metric x aggregation (means over trials)."""
    summary = result.summary()
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(
            [
                "method",
                "metric",
                "aggregation",
                *SCORE_FIELDS,
                *COUNT_FIELDS,
                *(f"{k}_std" for k in SCORE_FIELDS),
            ]
        )
        for method in result.methods:
            for metric in METRIC_NAMES:
                for agg in AGGREGATIONS:
                    b = summary[method][metric][agg]
                    sp = summary[method][metric].get("spread", {}).get(agg, {})
                    w.writerow(
                        [
                            method,
                            metric,
                            agg,
                            *(_csv_num(b[k]) for k in SCORE_FIELDS),
                            *(_csv_num(b.get(k)) for k in COUNT_FIELDS),
                            *(_csv_num(sp.get(k)) for k in SCORE_FIELDS),
                        ]
                    )


def write_per_series_csv(result: EvalResult, path: Path) -> None:
    """``per_series.csv``: every method x trial x series with all metrics (for inspection)."""
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        head = ["method", "trial", "series", "group", "partition", "n_test"]
        head += ["train_anomalies", "test_anomalies"]
        for metric in METRIC_NAMES:
            head += [f"{metric}_{k}" for k in (*SCORE_FIELDS, *COUNT_FIELDS)]
        w.writerow([*head, "auc_pr", "vus_pr"])
        for r in result.rows:
            row: list[Any] = [
                r.method,
                r.trial,
                r.series_id,
                r.group,
                r.partition,
                r.n_test,
                r.train_anomalies,
                r.test_anomalies,
            ]
            for metric in METRIC_NAMES:
                s = r.scores[metric]
                row += [_csv_num(s.precision), _csv_num(s.recall), _csv_num(s.f1), s.tp, s.fp, s.fn]
            w.writerow([*row, _csv_num(r.auc_pr), _csv_num(r.vus_pr)])


def _csv_num(x: float | int | None) -> str:
    if x is None:
        return ""
    if isinstance(x, float):
        return f"{x:.6f}"
    return str(x)


def run_info(argv: Sequence[str] | None = None) -> dict[str, str]:
    """The exact command, versions, python, date and git commit, for ``command.txt``."""
    import pandas
    import sklearn

    args = list(sys.argv if argv is None else argv)
    if args:
        args[0] = Path(args[0]).name
    return {
        "command": shlex.join(args),
        "argos": __version__,
        "numpy": np.__version__,
        "pandas": pandas.__version__,
        "scikit-learn": sklearn.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_commit": _git_commit(),
    }


def _git_commit() -> str:
    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10
        )
        if head.returncode != 0:
            return "unknown"
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "argos"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        )
        changed = [line[3:] for line in dirty.stdout.splitlines() if line.strip()]
        suffix = f" (uncommitted changes in: {', '.join(changed)})" if changed else ""
        return head.stdout.strip() + suffix
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def write_results(
    result: EvalResult, out_dir: Path, info: dict[str, str] | None = None
) -> list[Path]:
    """Write the result files to ``out_dir`` and return their paths.

    Files: results.md, results.csv, results.json, per_series.csv and command.txt.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    info = info or run_info()
    paths = {
        name: out_dir / name
        for name in (
            "results.md",
            "results.csv",
            "results.json",
            "per_series.csv",
            "command.txt",
        )
    }
    paths["results.md"].write_text(markdown_table(result, info.get("command")))
    write_csv(result, paths["results.csv"])
    doc = result.to_json()
    doc["run"] = info
    paths["results.json"].write_text(json.dumps(doc, indent=2) + "\n")
    write_per_series_csv(result, paths["per_series.csv"])
    paths["command.txt"].write_text("".join(f"{k}: {v}\n" for k, v in info.items()))
    return list(paths.values())
