"""``argos detect`` as a real subprocess: stdin streaming, formats, alerts-only, errors."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from argos.cli.detect import (
    CsvParser,
    InputError,
    JsonlParser,
    LineError,
    parse_timestamp,
    read_line_batches,
)
from argos.data.series import Dataset
from argos.online.checks import verification_sample
from argos.online.detector import Detector, DetectorSettings
from argos.rules.artifacts import RuleSource, write_ruleset

RULES = Path(__file__).resolve().parents[1] / "fixtures" / "rules"
BASIC = RULES / "basic"
CLI = [sys.executable, "-c", "from argos.cli import main; main()", "detect"]

pytestmark = pytest.mark.timeout(120)


def band_rules(tmp_path: Path) -> Path:
    """A one-rule set: anomalous outside [0, 10]."""
    folder = tmp_path / "band"
    code = (BASIC / "threshold.py").read_text()
    write_ruleset(folder, [RuleSource("band", code, {"low": 0.0, "high": 10.0})], {"name": "band"})
    return folder


def run_cli(
    args: list[str], stdin: str = "", timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(CLI + args, input=stdin, capture_output=True, text=True, timeout=timeout)


def test_stdin_csv_with_series_column_matches_batch_labels() -> None:
    t1, v1 = verification_sample(400, seed=1)
    t2, v2 = verification_sample(300, seed=2)
    lines = ["series,timestamp,value"]
    i1 = i2 = 0
    while i1 < 400 or i2 < 300:  # interleave, in order within each series
        if i1 < 400:
            lines.append(f"web,{t1[i1]},{float(v1[i1])!r}")
            i1 += 1
        if i2 < 300 and (i1 % 3 == 0 or i1 >= 400):
            lines.append(f"db,{t2[i2]},{float(v2[i2])!r}")
            i2 += 1
    proc = run_cli(["--rules", str(BASIC)], "\n".join(lines) + "\n")
    assert proc.returncode == 0, proc.stderr
    recs = [json.loads(x) for x in proc.stdout.splitlines()]
    assert len(recs) == 700
    with Detector.open(BASIC, DetectorSettings(isolation="inprocess")) as det:
        for name, t, v in (("web", t1, v1), ("db", t2, v2)):
            got = np.array([r["anomaly"] for r in recs if r["series"] == name])
            np.testing.assert_array_equal(got, det.detect_arrays(t, v).anomaly)
    fired = [r for r in recs if r["anomaly"]]
    assert fired and all(
        e["rule"] in ("robust_z", "flat_line") for r in fired for e in r["explanation"]
    )
    assert "isolated worker" in proc.stderr


def test_alerts_only_jsonl_output_file_and_dropped_points(tmp_path: Path) -> None:
    rules = band_rules(tmp_path)
    lines = [
        {"timestamp": 1, "value": 5},
        {"timestamp": 2, "value": 50},
        {"timestamp": 2, "value": 60},  # duplicate
        {"timestamp": "1970-01-01T00:00:03Z", "value": -1},
        {"timestamp": 4, "value": None},  # invalid
        {"timestamp": 0, "value": 99},  # late
    ]
    out = tmp_path / "alerts.jsonl"
    stdin = "\n".join(json.dumps(x) for x in lines) + "\n"
    proc = run_cli(
        ["--rules", str(rules), "--format", "jsonl", "--alerts-only", "--output", str(out)], stdin
    )
    assert proc.returncode == 0, proc.stderr
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    assert [(r["timestamp"], r["value"]) for r in recs] == [(2, 50.0), (3, -1.0)]
    assert recs[0]["series"] == "default"
    assert recs[0]["explanation"] == [
        {
            "rule": "band",
            "condition": "the value is above `high` or below `low`.",
            "ruleset": "band",
        }
    ]
    summary = json.loads(proc.stderr.strip().splitlines()[-1].split("argos detect: ", 1)[1])
    assert summary["points"] == 3
    assert (summary["dropped_duplicate"], summary["dropped_invalid"], summary["dropped_late"]) == (
        1,
        1,
        1,
    )


def test_malformed_lines_are_reported_and_skipped(tmp_path: Path) -> None:
    rules = band_rules(tmp_path)
    proc = run_cli(["--rules", str(rules)], "1,5\nnot,a,number,row\n2,abc\n3,20\n")
    assert proc.returncode == 0, proc.stderr
    assert "line 2: expected 2 fields, got 4; skipped" in proc.stderr
    assert "line 3: value 'abc' is not a number; skipped" in proc.stderr
    recs = [json.loads(x) for x in proc.stdout.splitlines()]
    assert [(r["timestamp"], r["anomaly"]) for r in recs] == [(1, False), (3, True)]


def test_tail_friendly_each_line_is_answered_before_the_next_arrives(tmp_path: Path) -> None:
    rules = band_rules(tmp_path)
    proc = subprocess.Popen(
        [*CLI, "--rules", str(rules)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        fd = proc.stdout.fileno()
        for i, value in enumerate([1.0, 42.0, 3.0]):
            proc.stdin.write(f"{i},{value}\n".encode())
            proc.stdin.flush()
            deadline = time.monotonic() + 30
            buf = b""
            while not buf.endswith(b"\n"):
                wait = deadline - time.monotonic()
                assert wait > 0, "no output for a line while stdin stayed open"
                if select.select([fd], [], [], wait)[0]:
                    chunk = os.read(fd, 4096)
                    assert chunk, "detect exited early"
                    buf += chunk
            rec = json.loads(buf)
            assert rec["timestamp"] == i and rec["anomaly"] is (value > 10)
    finally:
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0


def test_bad_rules_or_input_exit_2_with_a_message(tmp_path: Path) -> None:
    proc = run_cli(["--rules", str(tmp_path)])
    assert proc.returncode == 2
    assert "no manifest.json" in proc.stderr
    proc = run_cli(["--rules", str(BASIC), "--input", str(tmp_path / "missing.csv")])
    assert proc.returncode == 2
    assert "cannot read" in proc.stderr


def test_input_file_option(tmp_path: Path) -> None:
    rules = band_rules(tmp_path)
    f = tmp_path / "in.csv"
    f.write_text("timestamp,value\n10,1\n20,11")  # no trailing newline
    proc = run_cli(["--rules", str(rules), "--input", str(f), "--trusted-in-process"])
    assert proc.returncode == 0, proc.stderr
    assert [json.loads(x)["anomaly"] for x in proc.stdout.splitlines()] == [False, True]
    assert "none (in-process" in proc.stderr


def test_parsers() -> None:
    assert parse_timestamp("2024-01-01T00:00:00Z") == 1704067200
    assert parse_timestamp("2024-01-01 00:00:00") == 1704067200
    assert parse_timestamp(5.0) == 5
    with pytest.raises(LineError, match="whole number"):
        parse_timestamp("5.5")
    csv = CsvParser("d")
    assert csv.parse("value,timestamp") is None
    p = csv.parse("3.5,7")
    assert p is not None and (p.series, p.timestamp, p.value) == ("d", 7, 3.5)
    with_base = CsvParser("d")
    assert with_base.parse("timestamp,value,base") is None
    p = with_base.parse("5,1.5,true")
    assert p is not None and p.base is True
    p = with_base.parse("6,1.5,")
    assert p is not None and p.base is None
    with pytest.raises(LineError, match="base label 'maybe'"):
        with_base.parse("7,1.5,maybe")
    js = JsonlParser("d")
    p = js.parse('{"timestamp": 1, "value": 2, "base": 1}')
    assert p is not None and p.base is True
    with pytest.raises(LineError, match="missing 'value'"):
        js.parse('{"timestamp": 1}')
    with pytest.raises(LineError, match="not JSON"):
        js.parse("{")


def test_read_line_batches_joins_lines_split_across_reads() -> None:
    r, w = os.pipe()
    with os.fdopen(r, "rb", buffering=0) as reader:
        os.write(w, b"1,5\n2,")
        batches = read_line_batches(reader)
        assert next(batches) == [(1, "1,5")]  # the partial line waits for its end
        os.write(w, b"6\r\n3,7\n4,8")
        assert next(batches) == [(2, "2,6"), (3, "3,7")]
        os.close(w)
        assert next(batches) == [(4, "4,8")]  # last line without newline, at EOF
        assert next(batches, None) is None


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("timestmap,value", "no 'timestamp' column (is 'timestmap' a misspelling?)"),
        ("timestamp,valeu", "no 'value' column (is 'valeu' a misspelling?)"),
        ("a,b", "no 'timestamp' column; no 'value' column"),
    ],
)
def test_a_csv_header_without_the_needed_columns_is_one_error(
    tmp_path: Path, header: str, message: str
) -> None:
    rules = band_rules(tmp_path)
    proc = run_cli(["--rules", str(rules), "--trusted-in-process"], f"{header}\n1,5\n2,6\n")
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr and "is not a number" not in proc.stderr
    assert proc.stdout == ""


def test_empty_input_says_there_were_no_points(tmp_path: Path) -> None:
    rules = band_rules(tmp_path)
    for stdin in ("", "timestamp,value\n"):
        proc = run_cli(["--rules", str(rules), "--trusted-in-process"], stdin)
        assert proc.returncode == 0, proc.stderr
        assert "no data points in the input" in proc.stderr
        assert '"points": 0' in proc.stderr


def test_first_line_header_detection() -> None:
    p = CsvParser("d").parse("2024-01-01T00:00:00Z,")  # data: an ISO time and a missing value
    assert p is not None and p.timestamp == 1704067200
    with pytest.raises(InputError, match="no 'timestamp' column"):
        CsvParser("d").parse("series,value")


def test_non_causal_set_is_refused_unless_allow_non_causal(tmp_path: Path) -> None:
    """Red-team class 10: the detector used to only warn about a non-causal rule."""
    folder = tmp_path / "global"
    code = (RULES / "extra" / "global_z.py").read_text()
    write_ruleset(folder, [RuleSource("global_z", code, {"k": 2.0})], {"name": "global"})
    args = ["--rules", str(folder), "--trusted-in-process"]
    proc = run_cli(args, "timestamp,value\n10,1\n")
    assert proc.returncode == 2 and "not stream-exact" in proc.stderr
    proc = run_cli([*args, "--allow-non-causal"], "timestamp,value\n10,1\n")
    assert proc.returncode == 0, proc.stderr
    assert "WARNING (--allow-non-causal): rule global_z is not stream-exact" in proc.stderr


KPI_RULES = Path(__file__).resolve().parents[2] / "rules" / "kpi"


def test_the_committed_kpi_set_with_a_cusum_is_accepted_without_allow_non_causal() -> None:
    """Its CUSUM used to run over the whole history (refused as not stream-exact); the template
    now restarts it at most a window back, and the regenerated set passes the check."""
    folder = KPI_RULES / "a8c06b47-cc41-3738-9110-12df0ee4c721"
    assert any(p.name.startswith("cusum_") for p in folder.glob("*.py"))
    proc = run_cli(["--rules", str(folder)], "timestamp,value\n1700000000,1.0\n", timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "not stream-exact" not in proc.stderr and '"status":"ok"' in proc.stdout


def test_a_training_run_folder_routes_each_series_to_its_own_set(kpi_dataset: Dataset) -> None:
    """``--rules RUN_DIR`` on a multi-series CSV of real KPI data: every series gets its own
    set's labels, a series no set lists is refused (or served by --default-rules)."""
    wanted = ["301c70d8-1630-35ac-8f96-bc1b6f4359ea", "0efb375b-b902-3661-ab23-9a0bb799f4e3"]
    data = {}
    for s in kpi_dataset.series:
        if s.id in wanted:
            a = int(s.meta["test_start"])
            data[s.id] = (s.timestamps[a : a + 2000], s.values[a : a + 2000])
    data["new-kpi"] = data[wanted[0]]
    lines = ["series,timestamp,value"] + [
        f"{name},{t[i]},{float(v[i])!r}" for i in range(2000) for name, (t, v) in data.items()
    ]
    stdin = "\n".join(lines) + "\n"
    proc = run_cli(["--rules", str(KPI_RULES)], stdin, timeout=180)
    assert proc.returncode == 0, proc.stderr
    recs = [json.loads(x) for x in proc.stdout.splitlines()]
    assert "29 rule sets" in proc.stderr
    assert "no rule set for series 'new-kpi'" in proc.stderr
    for name in wanted:
        with Detector.open(
            KPI_RULES / name, DetectorSettings(isolation="inprocess", verify=False)
        ) as det:
            expected = det.detect_arrays(*data[name]).anomaly
        got = [r for r in recs if r["series"] == name]
        assert {r["ruleset"] for r in got} == {name}
        np.testing.assert_array_equal(np.array([r["anomaly"] for r in got]), expected)
    assert {r["status"] for r in recs if r["series"] == "new-kpi"} == {"unrouted"}
    summary = json.loads(proc.stderr.strip().splitlines()[-1].split("argos detect: ", 1)[1])
    assert summary["unrouted"] == 2000 and summary["rulesets_open"] == 2
    # the same input with a default set: the new series gets that set's labels
    default = KPI_RULES / wanted[0]
    proc = run_cli(
        ["--rules", str(KPI_RULES), "--default-rules", str(default), "--alerts-only"],
        stdin,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    recs = [json.loads(x) for x in proc.stdout.splitlines()]
    mine = [r["timestamp"] for r in recs if r["series"] == wanted[0]]
    new = [r["timestamp"] for r in recs if r["series"] == "new-kpi"]
    assert new == mine and new
    assert {r["ruleset"] for r in recs if r["series"] == "new-kpi"} == {"default"}


def test_isolation_auto_runs_template_renders_in_process_and_worker_forces_isolation(
    tmp_path: Path,
) -> None:
    """By default a rule whose file is byte for byte a builtin template rendering runs in the
    detector's process; ``--isolation worker`` puts it in a worker; the labels are the same."""
    from argos.rules.grammar import RuleSpec, Structure
    from argos.rules.templates import render

    spec = RuleSpec(Structure("value", "zscore", (("window", 30.0),), "both", 1), 3.0)
    folder = tmp_path / "set"
    write_ruleset(folder, [RuleSource(spec.name, render(spec))])
    edited = tmp_path / "edited"
    write_ruleset(edited, [RuleSource(spec.name, render(spec) + "# reviewed\n")])
    t, v = verification_sample(300, seed=4)
    stdin = "timestamp,value\n" + "".join(f"{a},{float(b)!r}\n" for a, b in zip(t, v, strict=True))
    auto = run_cli(["--rules", str(folder)], stdin)
    forced = run_cli(["--rules", str(folder), "--isolation", "worker"], stdin)
    changed = run_cli(["--rules", str(edited)], stdin)
    for proc in (auto, forced, changed):
        assert proc.returncode == 0, proc.stderr
    assert "builtin-template rules in-process" in auto.stderr
    assert "isolated worker per rule" in forced.stderr and "in-process" not in forced.stderr
    assert "isolated worker per rule" in changed.stderr  # one byte more: untrusted
    labels = [[json.loads(x)["anomaly"] for x in p.stdout.splitlines()] for p in (auto, forced)]
    assert labels[0] == labels[1] and any(labels[0])
    both = run_cli(["--rules", str(folder), "--isolation", "worker", "--trusted-in-process"])
    assert both.returncode == 2 and "contradicts" in both.stderr
