"""The committed rule sets, exported and proved by ``promtool``.

``promtool check rules`` accepts the export of every committed set (rules/kpi, rules/yahoo,
rules/nab, one file per collection). ``promtool test rules`` runs on each committed KPI and Yahoo
set with translatable rules, on a slice of its own series' test part around its first alert (the
slice starts a ``LOOKBACK`` before it, so the rules are warm), with the detector's labels as the
expected alerts. Sets whose ``LOOKBACK`` exceeds 1000 points (a day of minutes and more; promtool
then evaluates thousands of windows of 1440 points) and the NAB sets run only with
``ARGOS_PROMTOOL_LONG=1``, to keep the suite fast; their template families are proved by the
family tests on real data either way.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from promtool_cases import promtool, run_case, run_promtool

from argos.data.series import Dataset, Series
from argos.export.prometheus import (
    expected_alerts,
    export_ruleset,
    near_threshold,
    regular_step,
    rule_file,
    run_units,
)
from argos.rules.artifacts import load_ruleset

RULES = Path(__file__).resolve().parents[2] / "rules"
LONG = os.environ.get("ARGOS_PROMTOOL_LONG", "") == "1"
MAX_LOOKBACK = 1000


@pytest.fixture(scope="module", autouse=True)
def _needs_promtool() -> None:
    promtool()


@pytest.mark.parametrize("collection", ["kpi", "yahoo", "nab"])
def test_every_committed_export_passes_promtool_check(tmp_path: Path, collection: str) -> None:
    exports = [
        export_ruleset(d, f'argos_metric{{unit="{d.name}"}}', 60_000)
        for d in run_units(RULES / collection)
    ]
    assert exports
    path = tmp_path / f"{collection}.yml"
    path.write_text(rule_file(exports))
    res = run_promtool("check", "rules", str(path))
    assert res.returncode == 0, res.stdout + res.stderr
    alerts = sum(e.exported for e in exports)
    assert f"SUCCESS: {sum(len(e.rules) for e in exports)} rules found" in res.stdout
    assert alerts == sum(1 for e in exports for r in e.rules if r.alert)


def _slice(directory: Path, s: Series, lookback: int) -> tuple[np.ndarray, np.ndarray]:
    """A slice from ``lookback + 10`` points before an alert to 30 after it: the
    first alert whose slice is regular and has no point within rounding of a threshold, else (no
    such alert) the first such slice of the test part, else of the whole series."""
    export = export_ruleset(directory, "m", 60_000)
    start = int(s.meta.get("test_start", int(len(s.values) * 0.7)))
    t, v = s.timestamps[start:], s.values[start:]
    labels = expected_alerts(directory, t, v, isolation="inprocess")
    hits = np.flatnonzero(np.any([labels[r] for r in export.specs], axis=0))
    before, after = lookback + 10, 30
    candidates = [(t, v, int(h)) for h in hits if h >= before]
    # irregular series: any regular stretch of the test part will do, else of the whole series
    candidates += [(t, v, a) for a in range(before, len(v), 97)]
    candidates += [(s.timestamps, s.values, a) for a in range(before, len(s.values), 97)]
    for ts, vs, a in candidates:
        lo, hi = a - before, min(len(vs), a + after)
        if regular_step(ts[lo:hi]) is None:
            continue
        if any(near_threshold(spec, vs[lo:hi]) for spec in export.specs.values()):
            continue
        return ts[lo:hi], vs[lo:hi]
    pytest.skip(
        f"{directory.name}: its series has no regular stretch of {before + after} points without "
        "a point within rounding of a threshold (the translation is exact on regular series only)"
    )


def _cases(collection: str) -> list[Any]:
    out = []
    for d in run_units(RULES / collection):
        export = export_ruleset(d, "m", 60_000)
        if not export.specs:
            continue
        lookback = max(e.lookback for e in load_ruleset(d).rules if e.id in export.specs)
        marks = []
        if (lookback > MAX_LOOKBACK or collection == "nab") and not LONG:
            marks.append(pytest.mark.skip(reason="long; set ARGOS_PROMTOOL_LONG=1"))
        case = pytest.param(collection, d.name, lookback, id=f"{collection}/{d.name}", marks=marks)
        out.append(case)
    return out


def _series_of(d: Path, ds: Dataset) -> Series:
    manifest = load_ruleset(d).manifest
    assert manifest.training is not None
    wanted = manifest.training.series[0]
    return next(s for s in ds.series if s.id == wanted)


@pytest.mark.parametrize(
    ("collection", "name", "lookback"), _cases("kpi") + _cases("yahoo") + _cases("nab")
)
def test_committed_set_matches_the_detector(
    tmp_path: Path, request: pytest.FixtureRequest, collection: str, name: str, lookback: int
) -> None:
    ds: Dataset = request.getfixturevalue(f"{collection}_dataset")
    d = RULES / collection / name
    s = _series_of(d, ds)
    t, v = _slice(d, s, lookback)
    step = regular_step(t)
    assert step is not None
    # Yahoo's timestamps are point numbers (1, 2, ...): hourly data
    run_case(tmp_path, d, v, t, 3_600_000 if collection == "yahoo" else step * 1000)
