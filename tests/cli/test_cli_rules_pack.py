"""``argos rules pack``: rule files an operator wrote or edited become a rule set that ``detect``
and ``serve`` load, only after the gate, the sandbox, causality and stream-exactness checks; a
re-pack records who changed what, when (issue item 9)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from argos.cli import app
from argos.rules.artifacts import RuleSource, load_ruleset, write_ruleset

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "rules" / "examples" / "robust_zscore.py"
runner = CliRunner()

# Causal (a label never looks ahead) but not stream-exact: the running mean of the whole history
# needs more than LOOKBACK points, so a streaming detector would give other labels.
UNBOUNDED_HISTORY = '''"""Running mean.

Normal: the value stays within 10 of the mean of every earlier point.
Abnormal: the value is more than 10 above the mean of every earlier point.
"""
import numpy as np

PARAMS = {"margin": 10.0}
LOOKBACK = 5


def detect(values, timestamps, params):
    mean = np.cumsum(values) / np.arange(1, len(values) + 1)
    return values > mean + params["margin"]
'''

LOOKS_AHEAD = '''"""Whole-series mean.

Normal: below the mean of the whole series. Abnormal: above it (looks ahead).
"""
import numpy as np

PARAMS = {}
LOOKBACK = 0


def detect(values, timestamps, params):
    return values > values.mean() + 2 * values.std()
'''


def _pack(*args: str) -> tuple[int, dict[str, object], str]:
    res = runner.invoke(app, ["rules", "pack", *args, "--max-series", "2", "--json"])
    doc = json.loads(res.stdout) if res.stdout.strip().startswith("{") else {}
    return res.exit_code, doc, res.output


def test_pack_a_written_rule_then_verify_loads_it(tmp_path: Path) -> None:
    rule = tmp_path / "my_rule.py"
    shutil.copy(EXAMPLE, rule)
    out = tmp_path / "deploy"
    code, doc, output = _pack(str(rule), "--out", str(out), "--reviewer", "alice", "--note", "new")
    assert code == 0, output
    assert doc["rules"] == [
        {"id": "my_rule", "change": "added", "status": "ok", "detail": "", "stream_exact": True}
    ]
    verified = runner.invoke(app, ["rules", "verify", str(out)])
    assert verified.exit_code == 0 and "verified" in verified.stdout
    (entry,) = load_ruleset(out).manifest.history
    assert entry.who == "alice" and entry.note == "new" and entry.previous_id is None
    assert entry.changes[0].new_sha256 == load_ruleset(out).rules[0].sha256
    again = runner.invoke(app, ["rules", "pack", str(rule), "--out", str(out)])
    assert again.exit_code == 2 and "not empty" in again.output


def test_pack_refuses_a_rule_that_looks_ahead_or_is_not_stream_exact(tmp_path: Path) -> None:
    ahead = tmp_path / "ahead.py"
    ahead.write_text(LOOKS_AHEAD)
    code, doc, _ = _pack(str(ahead), "--out", str(tmp_path / "a"))
    assert code == 1 and doc["ok"] is False
    assert doc["rules"][0]["status"] == "bad_output" and "causal" in doc["rules"][0]["detail"]
    assert not (tmp_path / "a").exists()
    unbounded = tmp_path / "running_mean.py"
    unbounded.write_text(UNBOUNDED_HISTORY)
    code, doc, _ = _pack(str(unbounded), "--out", str(tmp_path / "b"))
    # Refused either by the causality check on every prefix (which runs first and, since the
    # hardening, ignores LOOKBACK) or by the detector's stream-exactness check.
    assert code == 1 and doc["ok"] is False
    rule = doc["rules"][0]
    caught_as_non_causal = rule["status"] == "bad_output" and "causal" in rule["detail"]
    caught_as_not_stream_exact = "LOOKBACK" in str(doc.get("not_stream_exact", {}))
    assert caught_as_non_causal or caught_as_not_stream_exact, doc
    assert not (tmp_path / "b").exists()


def test_edited_rule_is_refused_until_repacked_and_the_history_says_what_changed(
    tmp_path: Path,
) -> None:
    rs = tmp_path / "rs"  # a reviewed set exported before manifests had a history
    write_ruleset(rs, [RuleSource("z", EXAMPLE.read_text())], {"name": "reviewed"})
    assert "history" not in json.loads((rs / "manifest.json").read_text())
    old_sha = load_ruleset(rs).rules[0].sha256
    (rs / "z.py").write_text(EXAMPLE.read_text().replace('"k": 4.0', '"k": 5.0'))
    refused = runner.invoke(app, ["rules", "verify", str(rs), "--json"])
    assert refused.exit_code == 1
    error = json.loads(refused.stdout)["error"]
    assert "refusing a tampered rule" in error and f"argos rules pack --from {rs}" in error

    code, _, output = _pack("--from", str(rs), "--reviewer", "bob", "--note", "fewer alarms")
    assert code == 0, output
    assert runner.invoke(app, ["rules", "verify", str(rs)]).exit_code == 0
    m = load_ruleset(rs).manifest
    assert m.name == "reviewed" and m.rules[0].params["k"] == 5.0
    (entry,) = m.history
    assert entry.who == "bob" and entry.note == "fewer alarms"
    (change,) = entry.changes
    assert (change.change, change.old_sha256) == ("edited", old_sha)
    assert change.new_sha256 == m.rules[0].sha256 != old_sha
    assert "edited in place" in change.diff and "params k: 4.0 -> 5.0" in change.diff

    # Re-pack into a new folder with an edited copy and a new rule: a real diff, two entries.
    edited = tmp_path / "z.py"
    edited.write_text((rs / "z.py").read_text().replace('"window": 50', '"window": 60'))
    extra = tmp_path / "flat.py"
    shutil.copy(ROOT / "rules" / "examples" / "flat_line.py", extra)
    out = tmp_path / "rs2"
    code, _, output = _pack("--from", str(rs), str(edited), str(extra), "--out", str(out))
    assert code == 0, output
    history = load_ruleset(out).manifest.history
    assert len(history) == 2 and history[1].previous_id == m.id
    changes = {c.rule: c for c in history[1].changes}
    assert changes["z"].change == "edited" and changes["z"].diff.startswith("+1 -1 lines")
    assert changes["flat"].change == "added"
