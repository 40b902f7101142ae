"""Training and evaluation reports: one self-contained HTML file per run or evaluation.

Two sources, recognised by their files (:func:`report_kind`): a **training run** folder
(``summary.json``; :mod:`argos.report.run`) and an **evaluation** folder (``results.json``;
:mod:`argos.report.evaluation`). :func:`build_report` returns the
:class:`~argos.report.views.Report` (pydantic, JSON-ready) of either;
:func:`~argos.report.html.render_html` turns it into HTML with inline CSS and PNG figures as
``data:`` URIs (no script, no external URL); :func:`write_report` does both. Figures come from
:mod:`argos.report.plots`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal, TypedDict, Unpack

from argos.report.evaluation import DEFAULT_MAX_SERIES, build_eval_report
from argos.report.html import render_html
from argos.report.run import DEFAULT_BASELINES, DEFAULT_RUN_MAX_SERIES, build_run_report
from argos.report.views import Report, ReportError, StatusFn


def report_kind(path: Path) -> Literal["run", "eval"]:
    """``run`` for a training run folder, ``eval`` for an evaluation folder; raise otherwise."""
    if (path / "summary.json").is_file():
        return "run"
    if (path / "results.json").is_file():
        return "eval"
    raise ReportError(
        f"{path}: neither a training run (summary.json) nor an evaluation (results.json) folder"
    )


class ReportOptions(TypedDict, total=False):
    """The options :func:`build_report` and :func:`write_report` take (an unset one takes its
    default): ``data_dir`` (the benchmark data folder; default ``$ARGOS_DATA_DIR``),
    ``baselines`` (run reports: the methods compared with the rules; default
    ``DEFAULT_BASELINES``), ``max_series`` (the series figures; default 60 for a run, 12 for an
    evaluation), ``method`` (evaluation reports: the method drawn) and ``progress`` (a status
    callback)."""

    data_dir: Path | None
    baselines: Sequence[str]
    max_series: int | None
    method: str | None
    progress: StatusFn | None


def build_report(path: Path, **options: Unpack[ReportOptions]) -> Report:
    """Build the report of a run or evaluation folder (recognised by :func:`report_kind`)."""
    max_series = options.get("max_series")
    if report_kind(path) == "run":
        return build_run_report(
            path,
            data_dir=options.get("data_dir"),
            baselines=options.get("baselines", DEFAULT_BASELINES),
            max_series=DEFAULT_RUN_MAX_SERIES if max_series is None else max_series,
            progress=options.get("progress"),
        )
    return build_eval_report(
        path,
        data_dir=options.get("data_dir"),
        max_series=DEFAULT_MAX_SERIES if max_series is None else max_series,
        method=options.get("method"),
        progress=options.get("progress"),
    )


def write_report(path: Path, out: Path | None = None, **options: Unpack[ReportOptions]) -> Path:
    """Build the report of ``path`` and write it as HTML to ``out`` (default
    ``path/report.html``); return where it was written."""
    report = build_report(path, **options)
    target = out or (path / "report.html")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render_html(report), encoding="utf-8")
    return target
