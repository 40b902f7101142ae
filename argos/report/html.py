"""The HTML of a report: one self-contained page (inline CSS, ``data:`` images, no script).

:func:`render_html` lays a :class:`~argos.report.views.Report` out as sections (overview,
evaluation, per-series F1, series figures, rules, training) under a header and a navigation bar;
the helpers escape every text, format scores (:func:`cell`) and highlight rule code.
"""

from __future__ import annotations

import html
import keyword
import re
from collections.abc import Sequence
from typing import Any

from argos.metrics import format_score
from argos.report.views import MethodRow, Report, RuleView, SeriesView, UnitView

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


def cell(x: Any) -> str:
    """A table cell's text: a score with three decimals, ``–`` for None, anything else escaped."""
    if x is None or isinstance(x, float):
        return format_score(x)
    return html.escape(str(x))


def _f1_class(x: Any) -> str:
    """The ``class`` attribute that colours an F1 cell by fifths (empty for a non-number)."""
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
            f'<td class="l">{cell(r.method)}</td>',
            f'<td class="l">{cell(r.kind)}</td>',
            *(f"<td>{cell(v)}</td>" for v in (r.precision, r.recall, r.f1, r.pooled_f1)),
        ]
        if kind == "eval":
            cells += [f"<td>{cell(v)}</td>" for v in (r.both_f1, r.point_f1, r.delay_f1, r.auc_pr)]
            cells.append(f"<td>{'–' if r.seconds is None else f'{r.seconds:.1f}'}</td>")
        cls = ' class="argos"' if r.kind == "argos" else ""
        body.append(f"<tr{cls}>{''.join(cells)}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _series_html(v: SeriesView) -> str:
    rows = "".join(
        f"<tr><td class='l'>{s.split}</td><td>{s.points:,}</td><td>{s.events}</td>"
        f"<td>{cell(s.precision)}</td><td>{cell(s.recall)}</td><td{_f1_class(s.f1)}>{cell(s.f1)}</td>"
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
    params = ", ".join(f"{html.escape(str(k))}={cell(v)}" for k, v in r.params.items())
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


def _unit_html(view: UnitView) -> str:
    u = view.result
    rows = [
        f"<p><b>{html.escape(u.unit)}</b>: {u.tried} candidates tried, "
        f"{len(u.rules)} rule(s) kept ({html.escape(', '.join(u.rules)) or 'none'}); "
        f"train F1 {cell(u.train_f1)}, validation F1 {cell(u.validation_f1)}; "
        f"verified {'yes' if u.verified else 'no'}; {u.seconds:.1f} s.</p>"
    ]
    for p in u.problems:
        rows.append(f'<p class="muted">problem: {html.escape(p)}</p>')
    for n in u.notes:
        rows.append(f'<p class="muted">note: {html.escape(n)}</p>')
    if view.figure:
        rows.append(
            f'<figure class="progress"><img src="{view.figure}" '
            f'alt="validation F1 per iteration for {html.escape(u.unit)}"></figure>'
        )
    if view.candidates:
        body = "".join(
            f"<tr><td>{cell(c.iteration)}</td><td class='l'>{html.escape(c.rule)}</td>"
            f"<td class='l'>{html.escape(c.origin)}</td><td>{cell(c.repairs)}</td>"
            f"<td class='l'>{html.escape(c.status)}</td><td>{cell(c.validation_f1)}</td>"
            f"<td class='l'>{html.escape(c.outcome)}</td></tr>"
            for c in view.candidates
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
                f"<td{_f1_class(r.get(m))}>{cell(r.get(m))}</td>" for m in report.per_series_methods
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
