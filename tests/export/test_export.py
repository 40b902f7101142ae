"""The export without promtool: recognising templates, the PromQL shapes, reports, the CLI."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from promtool_cases import promtool, run_promtool, shape, write_specs
from typer.testing import CliRunner

from argos.cli import app
from argos.export.prometheus import (
    docstring_fields,
    export_ruleset,
    export_units,
    plan_units,
    rule_file,
    run_units,
    selector_labels,
)
from argos.export.promql import duration, number, parse_duration
from argos.rules.artifacts import RuleSource, load_ruleset, write_ruleset
from argos.rules.grammar import Gate, RuleSpec
from argos.rules.recognise import NotTemplate, Recognised, recognise
from argos.rules.templates import render

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "rules"


def test_every_committed_rule_is_recognised_as_its_template() -> None:
    count = 0
    for collection in ("kpi", "yahoo", "nab"):
        for d in run_units(RULES / collection):
            rs = load_ruleset(d)
            for entry in rs.rules:
                found = recognise(entry, rs.codes[entry.id])
                assert isinstance(found, Recognised), (d, entry.id, found)
                assert found.spec.name == entry.id
                count += 1
    assert count == 138


def test_an_edited_rule_is_not_a_template(tmp_path: Path) -> None:
    spec = RuleSpec(shape("value", "zscore", "up", window=30), 3.0, 2)
    code = render(spec).replace("nan=-np.inf) >= params", "nan=-np.inf) > params")
    write_ruleset(tmp_path / "s", [RuleSource(spec.name, code)], {"generator": {"kind": "builtin"}})
    rs = load_ruleset(tmp_path / "s")
    found = recognise(rs.rules[0], rs.codes[spec.name])
    assert isinstance(found, NotTemplate)
    assert "differs from that template's rendering" in found.reason
    e = export_ruleset(tmp_path / "s", "m", 60_000)
    assert e.exported == 0 and e.total == 1 and not e.rules
    assert "not a template" in e.outcomes[0].reason


def test_a_renamed_rule_is_not_a_template(tmp_path: Path) -> None:
    spec = RuleSpec(shape("diff", "static", "both"), 3.0)
    write_ruleset(tmp_path / "s", [RuleSource("spikes", render(spec))])
    rs = load_ruleset(tmp_path / "s")
    found = recognise(rs.rules[0], rs.codes["spikes"])
    assert isinstance(found, NotTemplate) and "match no builtin template" in found.reason


def test_llm_rules_are_reported_not_dropped(tmp_path: Path) -> None:
    spec = RuleSpec(shape("value", "static", "up"), 3.0)
    write_ruleset(
        tmp_path / "s",
        [RuleSource(spec.name, render(spec))],
        {"generator": {"kind": "llm", "model": "m"}},
    )
    e = export_ruleset(tmp_path / "s", "m", 60_000)
    assert (e.exported, e.total) == (0, 1)
    assert "LLM-written" in e.outcomes[0].reason
    assert "exported 0 of 1 rules" in e.summary() and "LLM-written" in e.summary()


def test_untranslatable_families_say_why(tmp_path: Path) -> None:
    specs = [
        RuleSpec(shape("value", "robust_z", "both", window=30, min_scale=0.1), 4.0),
        RuleSpec(shape("value", "cusum", "up", window=30, drift=0.5), 4.0),
        RuleSpec(shape("value", "spectral", "up", window=32), 4.0),
        RuleSpec(shape("seasonal", "static", "up", period=10, cycles=5), 4.0),
        RuleSpec(
            shape("value", "static", "up"),
            4.0,
            gate=Gate(shape("value", "robust_z", "up", window=30, min_scale=0.1), 2.0),
        ),
        RuleSpec(shape("value", "static", "up"), 4.0),
    ]
    e = export_ruleset(write_specs(tmp_path / "s", specs), "m", 60_000)
    reasons = {o.rule_id: o.reason for o in e.outcomes}
    assert e.exported == 1 and reasons["static_value_up"] == ""
    assert reasons["robust_z_value_w30_both"].startswith("robust z-score")
    assert reasons["cusum_value_w30_d05_up"].startswith("CUSUM")
    assert reasons["spectral_value_w32_up"].startswith("spectral")
    assert "median of more than 3" in reasons["static_seasonal_p10_c5_up"]
    assert reasons["static_value_up_and_robust_z_value_w30_up"].startswith("robust z-score")


def test_promql_shapes(tmp_path: Path) -> None:
    specs = [
        RuleSpec(shape("value", "zscore", "down", 3, window=30), 2.5),
        RuleSpec(shape("diff", "static", "both", 2), 1.5, cooldown=4),
    ]
    e = export_ruleset(write_specs(tmp_path / "s", specs), 'up{job="api"}', 60_000)
    by = {r.record or r.alert: r for r in e.rules}
    p = f"argos:{e.ruleset_id.replace('-', '_')}"
    assert by[f"{p}:value"].expr == 'up{job="api"}'
    assert by[f"{p}:diff"].expr == f"({p}:value - {p}:value offset 1m) or ({p}:value * 0)"
    assert by[f"{p}:value:avg30_lag1"].expr == (
        f"avg_over_time({p}:value[29m30s] offset 1m) and {p}:value offset 30m"
    )
    zs = by["argos_zscore_value_w30_down_k3"]
    assert zs.for_ms == 120_000 and zs.expr == f"-{p}:zscore_value_w30_down_k3:score >= 2.5"
    cd = by["argos_static_diff_both_k2"]
    assert cd.for_ms == 0
    assert cd.expr == (
        f"{p}:static_diff_both_k2:condition unless "
        f"count_over_time({p}:static_diff_both_k2:condition[3m30s] offset 1m)"
    )
    assert by[f"{p}:static_diff_both_k2:condition"].expr == (
        f"{p}:static_diff_both_k2:hit and "
        f"(count_over_time({p}:static_diff_both_k2:hit[1m30s]) == 2)"
    )
    assert zs.labels == {"argos_ruleset": e.ruleset_id, "argos_rule": "zscore_value_w30_down_k3"}
    assert zs.annotations["abnormal"].startswith("The value is more than 2.5 standard deviations")
    assert json.loads(zs.annotations["params"])["threshold"] == 2.5


def test_formatting_helpers() -> None:
    assert duration(60_000) == "1m"
    assert duration(1_770_000) == "29m30s"
    assert duration(5_400_000 + 500) == "1h30m500ms"
    assert parse_duration("1h30m") == 5_400_000 and parse_duration("500ms") == 500
    with pytest.raises(ValueError):
        parse_duration("1 minute")
    for v in (0.1, 9.697500000000002, -3.0, 1e-9, 1e300):
        assert float(number(v)) == v
    assert number(30.0) == "30"
    assert selector_labels('up{job="api", instance="a\\"b"}') == (
        "up",
        {"job": "api", "instance": 'a"b'},
    )
    with pytest.raises(ValueError):
        selector_labels("rate(x[5m])")
    fields = docstring_fields(render(RuleSpec(shape("value", "static", "up"), 4.0)))
    assert set(fields) == {"summary", "normal", "abnormal"}


def test_plan_units_needs_selectors_for_run_folders(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--selectors"):
        plan_units(RULES / "yahoo", None, None)
    units = plan_units(RULES / "yahoo", None, {"a1-16a36e": "a", "a2-c8361f": "b"})
    assert [u.selector for u in units] == ["a", "b", "", ""]
    kpi = plan_units(RULES / "kpi", None, {"05f10d3a-239c-3bef-9bdc-a2feeb0037aa": "k"})
    assert sum(bool(u.selector) for u in kpi) == 1


def test_cli_exports_and_writes_a_passing_unit_test(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    values = np.round(10 + rng.normal(0, 1, 240), 2)
    values[150] += 9
    values[200:204] -= 7
    csv = tmp_path / "series.csv"
    csv.write_text(
        "timestamp,value\n"
        + "".join(f"{1_700_000_000 + 60 * i},{v}\n" for i, v in enumerate(values))
    )
    specs = [
        RuleSpec(shape("value", "zscore", "both", window=30), 5.5, 5),
        RuleSpec(shape("value", "static", "down", 2), -5.0),
    ]
    rules = write_specs(tmp_path / "set", specs)
    res = CliRunner().invoke(
        app,
        [
            "export",
            "prometheus",
            str(rules),
            "--selector",
            'app_latency{job="api"}',
            "--step",
            "1m",
            "--out",
            str(tmp_path / "out" / "rules.yml"),
            "--test-from",
            str(csv),
            "--test-out",
            str(tmp_path / "tests" / "rules_test.yml"),
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert (report["exported"], report["total"]) == (2, 2)
    assert report["test"]["alerts"]["zscore_value_w30_both"] >= 2
    assert report["test"]["alerts"]["static_value_down_k2"] >= 1
    # the expected alerts are exactly what `argos detect` streams for the same CSV and rule set
    det = CliRunner().invoke(
        app, ["detect", "--rules", str(rules), "--input", str(csv), "--alerts-only"]
    )
    assert det.exit_code == 0, det.output
    lines = [json.loads(x) for x in det.stdout.splitlines() if x.startswith("{")]
    streamed = {(x["timestamp"] - 1_700_000_000) // 60: x for x in lines if x["alert"]}
    written = _expected_in_test_file((tmp_path / "tests" / "rules_test.yml").read_text())
    assert set(streamed) == {i for i, _ in written}
    for i, alert in written:
        assert alert.removeprefix("argos_") in {e["rule"] for e in streamed[i]["explanation"]}
    text = (tmp_path / "tests" / "rules_test.yml").read_text()
    assert "rule_files:\n- '../out/rules.yml'" in text
    assert len(re.findall(r"eval_time", text)) == 2 * 240
    promtool()
    ok = run_promtool("test", "rules", str(tmp_path / "tests" / "rules_test.yml"))
    assert ok.returncode == 0, ok.stdout + ok.stderr


def _expected_in_test_file(text: str) -> list[tuple[int, str]]:
    """(point index, alert name) of every non-empty ``exp_alerts`` in a 1m-step test file."""
    out = []
    for m in re.finditer(
        r"- eval_time: '([^']+)'\n\s+alertname: '([^']+)'\n\s+exp_alerts:\n", text
    ):
        out.append((parse_duration(m.group(1)) // 60_000, m.group(2)))
    return out


def test_cli_reports_a_set_with_nothing_to_export(tmp_path: Path) -> None:
    spec = RuleSpec(shape("value", "cusum", "up", window=30, drift=0.5), 4.0)
    rules = write_specs(tmp_path / "set", [spec])
    res = CliRunner().invoke(
        app,
        ["export", "prometheus", str(rules), "--selector", "m", "--out", str(tmp_path / "r.yml")],
    )
    assert res.exit_code == 1
    assert "exported 0 of 1 rules" in res.output and "CUSUM" in res.output
    assert not (tmp_path / "r.yml").exists()


def test_coverage_script_matches_the_docs() -> None:
    out = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "prometheus_coverage.py"), "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    data = json.loads(out.stdout)
    doc = (REPO / "docs" / "prometheus.md").read_text()
    for row in data["collections"]:
        line = f"| {row['collection']} | {row['sets']} | {row['rules']} | {row['exported']} |"
        assert line in doc, line
    assert f"{data['exported']} of {data['rules']}" in doc


def test_identical_units_of_a_run_get_distinct_groups(tmp_path: Path) -> None:
    spec = RuleSpec(shape("diff", "zscore", "both", window=10), 4.0, 3)
    for unit in ("u1", "u2"):
        write_specs(tmp_path / "run" / unit, [spec])
    units = plan_units(tmp_path / "run", None, {"u1": 'm{u="1"}', "u2": 'm{u="2"}'})
    exports = export_units(units, 60_000)
    assert exports[0].ruleset_id == exports[1].ruleset_id
    assert len({e.group for e in exports}) == 2
    (tmp_path / "r.yml").write_text(rule_file(exports))
    promtool()
    res = run_promtool("check", "rules", str(tmp_path / "r.yml"))
    assert res.returncode == 0, res.stdout + res.stderr
