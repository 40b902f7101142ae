"""``argos rules check`` and ``argos rules verify`` through the real CLI app."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from argos.cli import app
from argos.rules.artifacts import RuleSource, write_ruleset

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "rules" / "examples"
runner = CliRunner()

NON_CAUSAL = '''"""Normal: below the whole-series mean. Abnormal: above it (looks ahead)."""
import numpy as np

PARAMS = {}
LOOKBACK = 0


def detect(values, timestamps, params):
    return values > values.mean() + 2 * values.std()
'''

CRASHING = '''"""Normal: -. Abnormal: -."""
import numpy as np

PARAMS = {}
LOOKBACK = 0


def detect(values, timestamps, params):
    return values[len(values) + 5] > 0
'''


def _data_dir() -> Path | None:
    env = os.environ.get("ARGOS_DATA_DIR")
    for cand in ([Path(env)] if env else []) + [ROOT.parent / "shared" / "datasets"]:
        if cand.is_dir():
            return cand
    return None


def _check(*args: str) -> tuple[int, dict[str, object]]:
    res = runner.invoke(app, ["rules", "check", *args, "--json"])
    return res.exit_code, json.loads(res.stdout)


@pytest.mark.timeout(120)
def test_example_rule_is_ok_on_demo() -> None:
    code, report = _check(str(EXAMPLES / "robust_zscore.py"))
    assert code == 0, report
    assert report["status"] == "ok" and report["detail"] == ""
    assert report["series"] == 6 and report["points"] == 24192
    assert isinstance(report["runtime_ms"], float) and report["runtime_ms"] > 0
    assert 0 < int(report["flagged"]) < 24192  # type: ignore[call-overload]


@pytest.mark.timeout(120)
def test_static_reject_exit_1_with_lines(tmp_path: Path) -> None:
    rule = tmp_path / "bad.py"
    rule.write_text(NON_CAUSAL.replace("import numpy as np", "import os\nimport numpy as np"))
    code, report = _check(str(rule))
    assert code == 1
    assert report["status"] == "static_reject"
    assert report["issues"] == [
        "line 2: import of 'os' is not allowed (allowed modules: math, numpy, statistics)"
    ]


@pytest.mark.timeout(120)
def test_non_causal_rule_is_bad_output(tmp_path: Path) -> None:
    rule = tmp_path / "lookahead.py"
    rule.write_text(NON_CAUSAL)
    code, report = _check(str(rule))
    assert code == 1
    assert report["status"] == "bad_output"
    assert "non-causal: label at index" in str(report["detail"])


@pytest.mark.timeout(120)
def test_runtime_error_reports_rule_traceback(tmp_path: Path) -> None:
    rule = tmp_path / "crash.py"
    rule.write_text(CRASHING)
    code, report = _check(str(rule), "--max-series", "2")
    assert code == 1 and report["status"] == "runtime_error"
    assert str(report["detail"]).startswith("series 0: IndexError")
    assert 'File "<rule>", line 9, in detect' in str(report["traceback"])
    assert report["series"] == 2


def test_missing_file_and_bad_dataset_exit_2(tmp_path: Path) -> None:
    res = runner.invoke(app, ["rules", "check", str(tmp_path / "none.py")])
    assert res.exit_code == 2 and "no such rule file" in res.stdout
    res = runner.invoke(
        app, ["rules", "check", str(EXAMPLES / "robust_zscore.py"), "--dataset", "nope"]
    )
    assert res.exit_code == 2 and "unknown dataset" in res.stdout


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_check_on_yahoo_a1() -> None:
    data = _data_dir()
    if data is None:
        pytest.skip("benchmark data not found (set ARGOS_DATA_DIR or provide ../shared/datasets)")
    code, report = _check(
        str(EXAMPLES / "level_shift.py"), "--dataset", "yahoo-a1", "--data-dir", str(data)
    )
    assert code == 0, report
    assert report["series"] == 67 and report["points"] == 94866


def test_verify_accepts_exported_and_refuses_tampered(tmp_path: Path) -> None:
    d = tmp_path / "rs"
    write_ruleset(d, [RuleSource("z", (EXAMPLES / "robust_zscore.py").read_text())], {"name": "t"})
    res = runner.invoke(app, ["rules", "verify", str(d)])
    assert res.exit_code == 0 and "verified" in res.stdout
    (d / "z.py").write_text((d / "z.py").read_text() + "\n# edited\n")
    res = runner.invoke(app, ["rules", "verify", str(d), "--json"])
    assert res.exit_code == 1
    assert "refusing a tampered rule" in json.loads(res.stdout)["error"]


BUSY = '''"""Normal: -. Abnormal: -. Burns CPU."""
import numpy as np

PARAMS = {}
LOOKBACK = 0


def detect(values, timestamps, params):
    total = 0
    for i in range(10**10):
        total += i
    return values > total
'''


@pytest.mark.timeout(120)
def test_cpu_limit_can_be_raised_and_the_error_says_how(tmp_path: Path) -> None:
    rule = tmp_path / "busy.py"
    rule.write_text(BUSY)
    code, report = _check(str(rule), "--max-series", "1", "--cpu-seconds", "1")
    assert code == 1
    assert report["status"] == "cpu_limit"
    assert "CPU limit of 1 s exceeded" in str(report["detail"])
    assert "raise it with --cpu-seconds N, now 1" in str(report["detail"])


# Red-team class 8: hostile inputs that used to crash the parent with a traceback.
DEEP = NON_CAUSAL.replace("PARAMS = {}", "PARAMS = {}\nX = " + "-" * 5000 + "1")


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("deep.py", DEEP.encode(), "nested too deeply to parse"),
        ("latin1.py", NON_CAUSAL.encode() + b"# caf\xe9\n", "not UTF-8 text"),
    ],
)
def test_hostile_rule_file_is_static_reject_exit_1(
    tmp_path: Path, name: str, data: bytes, message: str
) -> None:
    """Before: RecursionError / UnicodeDecodeError escaped as a traceback."""
    rule = tmp_path / name
    rule.write_bytes(data)
    code, report = _check(str(rule))
    assert code == 1
    assert report["status"] == "static_reject" and message in str(report["detail"])


def _swap_rule(folder: Path, rule_id: str, data: bytes) -> None:
    """Replace a rule file and re-sign it in the manifest (an attacker who can write both)."""
    (folder / f"{rule_id}.py").write_bytes(data)
    manifest = json.loads((folder / "manifest.json").read_text())
    for r in manifest["rules"]:
        if r["id"] == rule_id:
            r["sha256"] = hashlib.sha256(data).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    ("data", "message"),
    [(DEEP.encode(), "nested too deeply"), (b'"""x"""\n# \xff\xfe\n', "not UTF-8 text")],
)
def test_verify_refuses_hostile_rule_files(tmp_path: Path, data: bytes, message: str) -> None:
    d = tmp_path / "rs"
    write_ruleset(d, [RuleSource("z", (EXAMPLES / "robust_zscore.py").read_text())], {"name": "t"})
    _swap_rule(d, "z", data)
    res = runner.invoke(app, ["rules", "verify", str(d), "--json"])
    assert res.exit_code == 1
    assert message in json.loads(res.stdout)["error"]


# Red-team class 10: causality-check evasions that used to pass.
CACHING = '''"""Normal: below the whole-series mean. Abnormal: above it (cached)."""
import numpy as np

PARAMS = {}
LOOKBACK = 0
CACHE = {}


def detect(values, timestamps, params):
    key = int(timestamps[0])
    seen = CACHE.get(key)
    if seen is not None and len(seen) >= len(values):
        return seen[: len(values)]
    out = values > values.mean() + 2 * values.std()
    CACHE[key] = out
    return out
'''


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "code",
    [CACHING, NON_CAUSAL.replace("LOOKBACK = 0", "LOOKBACK = 10000000")],
    ids=["cache_across_calls", "lookback_longer_than_sample"],
)
def test_causality_evasions_are_caught(tmp_path: Path, code: str) -> None:
    rule = tmp_path / "evasive.py"
    rule.write_text(code)
    exit_code, report = _check(str(rule), "--max-series", "1")
    assert exit_code == 1, report
    assert report["status"] == "bad_output" and "non-causal" in str(report["detail"])
