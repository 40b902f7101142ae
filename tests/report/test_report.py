"""Reports: the HTML report of the demo run and of an evaluation, its figures, and the CLI.

The demo run is trained once per module with the builtin generator (a few seconds) into a
temporary folder; every test reads it.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from argos.cli import app
from argos.data.demo import make_demo_dataset
from argos.data.protocol import split_series
from argos.evaluation.harness import evaluate
from argos.evaluation.results import write_results
from argos.report.build import build_report, report_kind, write_report
from argos.report.evaluation import build_eval_report
from argos.report.html import highlight_python, render_html
from argos.report.plots import downsample_indices, series_figure
from argos.report.run import progress_from_log
from argos.report.views import Report, ReportError, pick_series, split_scores
from argos.rules.contract import docstring_conditions as rule_conditions
from argos.training.builtin.method import BuiltinGenerator
from argos.training.driver import train_dataset

runner = CliRunner()
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SECTIONS = ("overview", "evaluation", "per-series", "series", "rules", "training")


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo-run")
    train_dataset(make_demo_dataset(), generator=BuiltinGenerator(), out_dir=out, workers=1)
    return out


@pytest.fixture(scope="module")
def run_report(demo_run: Path) -> Report:
    return build_report(demo_run, baselines=("robust-zscore",))


@pytest.fixture(scope="module")
def run_html(run_report: Report) -> str:
    return render_html(run_report)


def assert_self_contained(page: str) -> None:
    """No external URL anywhere a browser would fetch; every image a decodable PNG data URI."""
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", page, re.I)
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page.lower()
    assert "@import" not in page and "url(" not in page
    srcs = re.findall(r"<img\b[^>]*\bsrc=\"([^\"]*)\"", page)
    assert srcs, "no images"
    for src in srcs:
        assert src.startswith("data:image/png;base64,"), src[:60]
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG_MAGIC)
    hrefs = re.findall(r"\bhref=\"([^\"]*)\"", page)
    assert all(h.startswith("#") or h.startswith("data:") for h in hrefs), hrefs


# --- the demo run report -------------------------------------------------------------------


def test_run_report_has_every_section_and_one_figure_per_series(run_html: str) -> None:
    assert re.findall(r'<section id="([^"]+)">', run_html) == list(SECTIONS)
    for sid in SECTIONS:
        assert f'href="#{sid}"' in run_html
    demo_ids = [s.id for s in make_demo_dataset().series]
    figures = re.findall(r'<figure class="series" id="series-([^"]+)"', run_html)
    assert figures == demo_ids
    assert run_html.count('<figure class="series"') == len(demo_ids)
    assert_self_contained(run_html)


def test_run_report_shows_every_exported_rule_with_its_conditions(
    demo_run: Path, run_report: Report, run_html: str
) -> None:
    exported = {(p.parent.name, p.stem) for p in demo_run.glob("*/*.py")}
    assert {(r.unit, r.id) for r in run_report.rules} == exported
    for r in run_report.rules:
        assert r.normal and r.abnormal, r.id  # builtin rules state both in their docstring
        assert f'id="rule-{r.unit}-{r.id}"' in run_html
        assert "def detect" in r.code


def test_run_report_detections_are_the_rule_sets_and_score_like_eval(run_report: Report) -> None:
    # The report runs the exported rule sets in the sandbox; the evaluation harness retrains
    # the same generator (deterministic) and scores the test parts: the numbers must agree.
    result = evaluate(make_demo_dataset(), ["argos-builtin"], workers=1, with_scores=False)
    expected = {r.series_id: r.scores["event_pa"] for r in result.rows}
    for view in run_report.series:
        test = next(s for s in view.scores if s.split == "test")
        assert (test.tp, test.fp, test.fn) == (
            expected[view.id].tp,
            expected[view.id].fp,
            expected[view.id].fn,
        ), view.id
    row = run_report.methods[0]
    assert row.kind == "argos"
    f1s = [expected[v.id].f1 for v in run_report.series if expected[v.id].f1 is not None]
    assert row.f1 == pytest.approx(float(np.mean(f1s)))
    assert [m.method for m in run_report.methods[1:]] == ["robust-zscore"]


def test_run_report_bounds_figures_but_scores_every_series(demo_run: Path) -> None:
    report = build_report(demo_run, baselines=(), max_series=2)
    assert len(report.series) == 2
    assert len(report.per_series) == 6
    test_f1 = {r["series"]: r["test F1"] for r in report.per_series}
    drawn = [v.id for v in report.series]
    assert test_f1[drawn[0]] == min(test_f1.values())
    assert test_f1[drawn[1]] == max(test_f1.values())
    assert any("2 of 6 series drawn" in n for n in report.notes)
    page = render_html(report)
    assert page.count('<figure class="series"') == 2
    assert page.count("<a href='#series-") == 2  # only drawn series are linked


def test_run_report_splits_follow_the_protocol(run_report: Report) -> None:
    ds = make_demo_dataset()
    by_id = {s.id: s for s in ds.series}
    for view in run_report.series:
        sp = split_series(by_id[view.id], ds.split)
        assert (view.val_start, view.test_start) == (sp.val_start, sp.test_start)
        assert [s.split for s in view.scores] == ["train", "validation", "test"]
        assert sum(s.points for s in view.scores) == view.points
        for part in view.scores:
            assert part.tp + part.fn == part.events  # event-PA: each event hit or missed


def test_run_report_of_a_moved_run_folder_still_finds_the_rule_sets(
    demo_run: Path, tmp_path: Path
) -> None:
    import shutil

    moved = tmp_path / "moved"
    shutil.copytree(demo_run, moved)
    shutil.rmtree(demo_run / "cpu_util")
    try:
        report = build_report(moved, baselines=())
    finally:
        shutil.copytree(moved / "cpu_util", demo_run / "cpu_util")
    assert any(r.unit == "cpu_util" for r in report.rules)
    assert all(v.scores for v in report.series)
    assert [m.method for m in report.methods] == ["argos rule sets (this run)"]


def test_tampered_rule_is_refused_and_said_so(demo_run: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(demo_run, copy)
    rule = next((copy / "error_rate").glob("*.py"))
    rule.write_text(rule.read_text() + "\n# edited\n")
    report = build_report(copy, baselines=())
    assert any("error_rate" in n and "sha256" in n for n in report.notes)
    view = next(v for v in report.series if v.id == "error_rate")
    assert view.scores == [] and "no rule set" in view.note


# --- evaluation reports --------------------------------------------------------------------


@pytest.fixture(scope="module")
def eval_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("eval")
    result = evaluate(
        make_demo_dataset(), ["robust-zscore", "static-threshold"], workers=1, with_scores=False
    )
    write_results(result, out)
    return out


def test_eval_report_tables_per_series_and_bounded_figures(eval_dir: Path) -> None:
    report = build_eval_report(eval_dir, max_series=2, method="robust-zscore")
    assert report_kind(eval_dir) == "eval"
    assert [m.method for m in report.methods] == ["robust-zscore", "static-threshold"]
    assert len(report.per_series) == 6
    assert len(report.series) == 2
    f1 = {r["series"]: r["robust-zscore"] for r in report.per_series}
    drawn = [v.id for v in report.series]
    assert f1[drawn[0]] == min(f1.values()) and f1[drawn[1]] == max(f1.values())
    # The drawn detections are the method refitted as eval fits it: same test scores.
    for v in report.series:
        test = next(s for s in v.scores if s.split == "test")
        assert test.f1 == pytest.approx(f1[v.id])
    page = render_html(report)
    sections = re.findall(r'<section id="([^"]+)">', page)
    assert sections == ["overview", "evaluation", "per-series", "series"]
    assert page.count('<figure class="series"') == 2
    assert "results.md (every aggregation)" in page
    assert_self_contained(page)


def test_eval_report_refuses_a_method_it_did_not_evaluate(eval_dir: Path) -> None:
    with pytest.raises(ReportError, match="not in this evaluation"):
        build_eval_report(eval_dir, method="ewma")


def test_not_a_report_folder(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="neither a training run"):
        build_report(tmp_path)


# --- pieces --------------------------------------------------------------------------------


def test_downsample_keeps_extremes_and_every_marked_point() -> None:
    rng = np.random.default_rng(0)
    n = 1_000_000
    values = rng.normal(size=n)
    values[123_457] = 50.0  # a one-point spike
    values[765_431] = -50.0
    keep = np.zeros(n, dtype=bool)
    keep[[5, 500_001, 999_998]] = True
    idx = downsample_indices(values, 1000, keep)
    assert len(idx) <= 2 * 1000 + 2 + 3
    assert {123_457, 765_431, 5, 500_001, 999_998, 0, n - 1} <= set(idx.tolist())
    assert np.all(np.diff(idx) > 0)
    # every bucket's min and max survive
    edges = np.linspace(0, n, 1001).astype(int)
    chosen = set(idx.tolist())
    for a, b in zip(edges[:-1:97], edges[1::97], strict=False):
        assert a + int(np.argmax(values[a:b])) in chosen
        assert a + int(np.argmin(values[a:b])) in chosen


def test_downsample_small_series_draws_everything() -> None:
    assert downsample_indices(np.arange(10.0), 5).tolist() == list(range(10))
    with pytest.raises(ValueError, match="buckets"):
        downsample_indices(np.arange(10.0), 0)
    with pytest.raises(ValueError, match="keep"):
        downsample_indices(np.arange(10.0), 2, np.zeros(3, dtype=bool))


def test_series_figure_is_a_png_and_checks_lengths() -> None:
    values = np.sin(np.arange(500) / 10)
    ts = np.arange(500, dtype=np.int64)
    labels = np.zeros(500, dtype=bool)
    labels[100:105] = True
    png = series_figure(values, ts, labels, labels.copy(), title="t")
    assert png.startswith(PNG_MAGIC)
    with pytest.raises(ValueError, match="one entry per value"):
        series_figure(values, ts, labels[:10])


def test_rule_conditions_reads_normal_and_abnormal_paragraphs() -> None:
    code = '''"""Spike rule.

Normal conditions: the value stays
  below the bound.
Abnormal: the value jumps.

Anything else.
"""
def detect(values, timestamps, params):
    return values > 1
'''
    assert rule_conditions(code) == (
        "Spike rule.",
        "the value stays below the bound.",
        "the value jumps.",
    )
    assert rule_conditions("def detect(v, t, p):\n    return v\n") == ("", "", "")
    assert rule_conditions("def (") == ("", "", "")


def test_highlight_escapes_html() -> None:
    out = highlight_python('x = "<b>"  # a < b\nif x: pass\n')
    assert "<b>" not in out and "&lt;b&gt;" in out
    assert '<span class="kw">if</span>' in out
    assert '<span class="com"># a &lt; b</span>' in out


def test_pick_series_takes_worst_and_best() -> None:
    f1: dict[str, float | None] = {"a": 0.1, "b": 0.9, "c": 0.5, "d": None, "e": 0.0}
    assert pick_series(f1, 2) == ["e", "b"]
    assert pick_series(f1, 3) == ["e", "a", "b"]
    assert pick_series(f1, 10) == ["e", "a", "c", "b", "d"]
    assert pick_series(f1, 0) == []


def _ev(kind: str, it: int, **kw: Any) -> dict[str, Any]:
    return {"event": kind, "iteration": it, **kw}


def test_progress_from_log_counts_and_explains_candidates() -> None:
    log = [
        {"event": "start"},
        _ev("checked", 0, id="r1", status="runtime_error", detail="NameError: x"),
        _ev("checked", 0, id="r1", status="runtime_error", detail="NameError: x"),
        _ev("candidate", 0, id="r1", status="runtime_error", val_f1=None, origin="generator"),
        _ev("candidate", 0, id="r2", status="ok", val_f1=0.5, origin="generator", repairs=1),
        _ev("candidate", 0, id="r3", status="ok", val_f1=0.4, origin="generator"),
        _ev("accepted", 0, id="r2", val_f1=0.5, previous=None),
        {"event": "iteration_end", "iteration": 0, "best_val_f1": 0.5},
        _ev("candidate", 1, id="r4", status="ok", val_f1=0.3, origin="generator"),
        _ev("regressed", 1, id="r4", val_f1=0.3, baseline=0.5),
        _ev("revised", 1, id="r5"),
        _ev("accepted", 1, id="r5", val_f1=0.7, via="review"),
        {"event": "iteration_end", "iteration": 1, "best_val_f1": 0.7},
    ]
    iterations, cands = progress_from_log(log)
    assert [(i.iteration, i.best_val_f1, i.accepted, i.rejected) for i in iterations] == [
        (0, 0.5, 1, 2),
        (1, 0.7, 1, 1),
    ]
    outcome = {c.rule: c.outcome for c in cands}
    assert outcome["r1"] == "runtime_error: NameError: x"
    assert outcome["r2"] == "accepted"
    assert outcome["r3"].startswith("valid, not kept")
    assert outcome["r4"].startswith("regressed: validation F1 0.300 below the kept 0.500")
    assert outcome["r5"].startswith("accepted") and cands[-1].origin == "reviewer"


def test_progress_shows_each_candidates_real_outcome() -> None:
    log = [
        # An older log without outcome events: a candidate that could not be scored is not
        # "valid, not kept (a better candidate was)".
        _ev("candidate", 0, id="old", status="ok", val_f1=None, origin="generator"),
        {"event": "iteration_end", "iteration": 0, "best_val_f1": None},
        # The graph now states each candidate's outcome.
        _ev("candidate", 1, id="r1", status="ok", val_f1=None, origin="generator"),
        _ev("outcome", 1, id="r1", status="ok", outcome="accepted: kept with train+validation F1"),
        _ev("candidate", 1, id="r2", status="too_slow", val_f1=None, origin="generator"),
        _ev("outcome", 1, id="r2", status="too_slow", outcome="rejected (too_slow): 9000 ms"),
        _ev("accepted", 1, id="r1", val_f1=None, score=0.8),
    ]
    _, cands = progress_from_log(log)
    outcome = {c.rule: c.outcome for c in cands}
    assert outcome["old"].startswith("not scored")
    assert outcome["r1"].startswith("accepted: kept")
    assert outcome["r2"] == "rejected (too_slow): 9000 ms"


def test_render_html_escapes_untrusted_text() -> None:
    report = Report(
        kind="run",
        title="<script>alert(1)</script>",
        source="x",
        dataset="d",
        created="now",
        notes=['<img src="http://evil/x.png">'],
    )
    page = render_html(report)
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert '<img src="http://evil' not in page


# --- CLI -----------------------------------------------------------------------------------


def test_cli_report_writes_html(demo_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    result = runner.invoke(app, ["report", str(demo_run), "--out", str(out), "--baselines", ""])
    assert result.exit_code == 0, result.output
    assert "report written to" in result.output
    page = out.read_text()
    assert page.count('<figure class="series"') == 6
    assert "robust-zscore" not in page.split('<section id="evaluation">')[1].split("</table>")[0]


def test_cli_report_errors(tmp_path: Path) -> None:
    result = runner.invoke(app, ["report", str(tmp_path / "missing")])
    assert result.exit_code == 2 and "not a folder" in result.output
    result = runner.invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2 and "neither a training run" in result.output
    result = runner.invoke(app, ["report", str(tmp_path), "--baselines", "nope"])
    assert result.exit_code == 2 and "unknown method" in result.output


def test_cli_datasets_plot(tmp_path: Path) -> None:
    out = tmp_path / "one.png"
    result = runner.invoke(
        app, ["datasets", "plot", "demo", "--series", "cpu_util", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert out.read_bytes().startswith(PNG_MAGIC)
    many = tmp_path / "many.png"
    result = runner.invoke(
        app, ["datasets", "plot", "demo", "--max-series", "3", "--out", str(many)]
    )
    assert result.exit_code == 0 and "3 series drawn" in result.output
    result = runner.invoke(app, ["datasets", "plot", "demo", "--series", "nope"])
    assert result.exit_code == 2 and "no series 'nope'" in result.output


def test_cli_eval_report_needs_out() -> None:
    result = runner.invoke(app, ["eval", "--dataset", "demo", "--methods", "ewma", "--report"])
    assert result.exit_code == 2 and "--out" in result.output


def test_cli_train_report_flag_writes_and_prints_the_path(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["train", "--dataset", "demo", "--series", "error_rate", "--generator", "builtin"]
    result = runner.invoke(app, [*args, "--workers", "1", "--out", str(out), "--report"])
    assert result.exit_code == 0, result.output
    assert f"report written to {out / 'report.html'}" in result.output.replace("\n", "")
    page = (out / "report.html").read_text()
    assert page.count('<figure class="series"') == 1
    again = runner.invoke(app, [*args, "--workers", "1", "--out", str(tmp_path / "b")])
    assert "argos report" in again.output and not (tmp_path / "b" / "report.html").exists()


def test_write_report_default_location(demo_run: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(demo_run, copy)
    assert write_report(copy, baselines=()) == copy / "report.html"
    assert (copy / "report.html").read_text().startswith("<!DOCTYPE html>")


# --- an LLM run (fake OpenAI-compatible endpoint, real client, real sandbox) ----------------


@pytest.mark.slow
def test_llm_run_report_shows_progress_candidates_and_usage(tmp_path: Path) -> None:
    import hashlib
    import os
    import subprocess
    import sys

    from fake_openai import FakeOpenAI
    from scripted_rules import GOOD, QUIET, RUNTIME_ERROR, fenced

    def choose(agent: str, prompt: str) -> str:
        if agent == "repairer":
            return fenced(GOOD, "Fixed.")
        if agent == "reviewer":
            return "REVERT"
        pick = int(hashlib.sha256(prompt.encode()).hexdigest(), 16) % 3
        return fenced([GOOD, RUNTIME_ERROR, QUIET][pick])

    run = tmp_path / "llm-run"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ARGOS_LLM", "OPENAI_"))}
    env["OPENAI_API_KEY"] = "sk-test"
    with FakeOpenAI(choose) as server:
        done = subprocess.run(
            [
                *(sys.executable, "-m", "argos.cli", "train", "--dataset", "demo"),
                *("--series", "cpu_util", "--llm", "openai", "--model", "fake-model"),
                "--no-incumbent",
                *("--base-url", server.base_url, "--iterations", "3", "--candidates", "2"),
                *("--chunk-size", "600", "--out", str(run), "--report"),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "report written to" in done.stdout
    report = build_report(run, baselines=())
    unit = report.units[0]
    assert [i.iteration for i in unit.iterations] == [0, 1, 2]
    assert sum(i.accepted + i.rejected for i in unit.iterations) == unit.result.tried
    assert len(unit.candidates) == unit.result.tried
    assert all(c.outcome for c in unit.candidates)
    assert unit.figure is not None and unit.figure.startswith("data:image/png;base64,")
    usage = {u.agent: u for u in report.usage}
    assert usage["total"].calls >= usage["generator"].calls > 0
    assert usage["total"].prompt_tokens > 0
    page = (run / "report.html").read_text()
    assert "LLM usage" in page and '<figure class="progress">' in page
    assert page.count('<figure class="series"') == 1
    assert_self_contained(page)


def test_fusion_with_a_method_base_is_drawn_fused(tmp_path: Path) -> None:
    # A hand-made run: one FN-rule correcting robust-zscore on cpu_util. The report must fit the
    # base as training did and draw (base and no FP-rule) or (not base and an FN-rule).
    import json

    from scripted_rules import GOOD

    from argos.data.protocol import detection_input, fit_inputs
    from argos.methods import get_method
    from argos.rules.artifacts import RuleSource, write_ruleset
    from argos.sandbox.pool import Sandbox

    ds = make_demo_dataset()
    series = next(s for s in ds.series if s.id == "cpu_util")
    run = tmp_path / "run"
    fusion = {"mode": "fusion", "base": "method:robust-zscore", "fn_rules": ["shift"]}
    write_ruleset(run / "cpu_util", [RuleSource("shift", GOOD)], {"combination": fusion})
    unit = {
        "unit": "cpu_util",
        "series": ["cpu_util"],
        "generator": "llm",
        "rules": ["shift"],
        "tried": 1,
        "train_f1": None,
        "validation_f1": None,
        "verified": True,
        "problems": [],
        "seconds": 0.0,
        "path": str(run / "cpu_util"),
        "notes": [],
    }
    summary = {"dataset": "demo", "generator": "llm", "granularity": "series", "units": [unit]}
    (run / "summary.json").write_text(json.dumps({**summary, "seconds": 0.0}))
    report = build_report(run, baselines=())

    inputs = fit_inputs([series], ds.split)
    base_det = get_method("robust-zscore").build(seed=0).fit(inputs.train, inputs.validation)
    base = np.asarray(base_det.detect(detection_input(series)), dtype=bool)
    plain = detection_input(series)
    with Sandbox() as sb:
        outputs = sb.run(GOOD, [(plain.values, plain.timestamps)]).outputs
    assert outputs is not None
    fused = base | np.asarray(outputs[0], dtype=bool)
    sp = split_series(series, ds.split)
    truth = np.asarray(series.labels, dtype=bool)

    def counts(pred: np.ndarray) -> list[tuple[int, int, int]]:
        return [(x.tp, x.fp, x.fn) for x in split_scores(truth, pred, sp.val_start, sp.test_start)]

    got = [(x.tp, x.fp, x.fn) for x in report.series[0].scores]
    assert got == counts(fused)
    assert got != counts(np.asarray(outputs[0], dtype=bool))  # not the FN-rule alone
    assert got != counts(base)  # nor the base alone
    assert report.rules[0].role == "fn"
    assert not any("external base" in n for n in report.notes)


def test_conditions_on_one_line_and_wrapped_are_read_whole() -> None:
    from argos.online.rulesets import abnormal_condition

    code = '''"""Normal: the metric follows a smooth daily cycle (roughly 450 at night to 2,600
at the daily peak). Abnormal: the value leaves the band of `k` deviations
for `window` points.
"""
def detect(values, timestamps, params):
    return values > 1
'''
    title, normal, abnormal = rule_conditions(code)
    assert normal == (
        "the metric follows a smooth daily cycle (roughly 450 at night to 2,600 at the daily peak)."
    )
    assert abnormal == "the value leaves the band of `k` deviations for `window` points."
    assert title == ""
    assert abnormal_condition(code) == abnormal
    # Prose that merely mentions "normal:" mid-sentence is not a marker.
    assert rule_conditions('"""Spike.\n\nAbnormal: back to normal: no."""\n')[2] == (
        "back to normal: no."
    )


def test_run_report_table_rows_are_over_the_same_series(demo_run: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(demo_run, copy)
    shutil.rmtree(copy / "cpu_util")
    summary = json.loads((copy / "summary.json").read_text())
    for unit in summary["units"]:
        if unit["unit"] == "cpu_util":
            unit["path"], unit["rules"] = None, []
    (copy / "summary.json").write_text(json.dumps(summary))
    report = build_report(copy, baselines=("robust-zscore",))
    assert any("1 of 6 series have no exported rule set (cpu_util)" in n for n in report.notes)
    # The rule sets' row counts cpu_util as raising no alarm, like the baseline's row counts it.
    test_f1 = {r["series"]: r["test F1"] for r in report.per_series}
    cpu = make_demo_dataset().get("cpu_util")
    start = split_series(cpu, make_demo_dataset().split).test_start
    assert cpu.labels is not None and cpu.labels[start:].any()
    expected = [f for s, f in test_f1.items() if s != "cpu_util" and f is not None] + [0.0]
    rules_row = report.methods[0]
    assert rules_row.f1 == pytest.approx(sum(expected) / len(expected))
