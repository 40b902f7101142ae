"""Hostile rules against the service (red-team classes 7 and 9 of issue 23).

Class 7: a rule that behaves during the load-time verification and turns into an alert storm
later is quarantined by the alarm-rate guard, reported in ``/v1/rulesets`` and ``/metrics``, and
released by a reload. Class 9: a rule with a huge ``Abnormal:`` paragraph that fires on every
point does not blow up a response: its condition is bounded and sent once per response.
Before the guard and the once-per-response conditions, both attacks had their effect (every
later point of every series flagged; a response growing by the condition's length per point).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from argos.online.checks import AlarmRateGuard
from argos.online.detector import Detector, DetectorSettings
from argos.online.points import Point
from argos.online.service import ServiceConfig, create_app
from argos.rules.artifacts import RuleSetError, RuleSource, write_ruleset

pytestmark = pytest.mark.timeout(300)

BAND = '''"""Static band.

Normal: the value is at most `high`.
Abnormal: the value is above `high`.
"""

import numpy as np

PARAMS = {"high": 1000.0}
LOOKBACK = 1


def detect(values, timestamps, params):
    return values > params["high"]
'''

#: Behaves like the band until it has seen one value of at least 1e6, then flags every point.
STORM = '''"""Band that turns into an alert storm.

Normal: the value is at most `high`.
Abnormal: the value is above `high`.
"""

import numpy as np

PARAMS = {"high": 1000.0}
LOOKBACK = 1
SEEN = [False]


def detect(values, timestamps, params):
    if (values >= 1e6).any():
        SEEN[0] = True
    if SEEN[0]:
        return np.ones(len(values), dtype=bool)
    return values > params["high"]
'''


def storm_set(folder: Path) -> Path:
    write_ruleset(
        folder,
        [RuleSource("band", BAND, {"high": 1000.0}), RuleSource("storm", STORM, {"high": 1000.0})],
        {"name": "storm"},
    )
    return folder


def scrape(step: int, n_series: int = 100, trigger: bool = False) -> dict[str, object]:
    rng = np.random.default_rng(step)
    values = rng.normal(50.0, 5.0, n_series)
    if trigger:
        values[7] = 1e7
    return {
        "points": [
            {"series": f"s{i}", "timestamp": 1_700_000_000 + 60 * step, "value": float(values[i])}
            for i in range(n_series)
        ]
    }


def test_an_alert_storm_is_quarantined_reported_and_released_by_a_reload(tmp_path: Path) -> None:
    folder = storm_set(tmp_path / "storm")
    with TestClient(create_app(ServiceConfig(rules=folder))) as c:
        for step in range(5):
            assert not any(
                p["anomaly"] for p in c.post("/v1/points", json=scrape(step)).json()["results"]
            )
        hit = c.post("/v1/points", json=scrape(5, trigger=True)).json()["results"]
        assert hit[7]["anomaly"] and set(hit[7]["rules"]) == {"band", "storm"}
        flagged = 0
        for step in range(6, 30):  # 2,400 points: the guard's window (2,000) ends in here
            flagged += sum(
                p["anomaly"] for p in c.post("/v1/points", json=scrape(step)).json()["results"]
            )
        assert 0 < flagged < 2400  # the storm ran until the window ended, then stopped
        sets = c.get("/v1/rulesets").json()["rulesets"][0]
        rules = {r["id"]: r for r in sets["rules"]}
        assert "alert storm" in rules["storm"]["quarantined"]
        assert rules["band"]["quarantined"] is None
        metrics = c.get("/metrics").text
        assert 'argos_rule_quarantined{rule="storm",ruleset="storm"} 1.0' in metrics
        # quarantined: normal points are normal again; the band still fires on its own
        after = c.post("/v1/points", json=scrape(40, trigger=True)).json()["results"]
        assert [p["series"] for p in after if p["anomaly"]] == ["s7"]
        assert after[7]["rules"] == ["band"]
        # an operator releases it by reloading the set
        assert c.post("/v1/rulesets/reload?force=true").status_code == 200
        sets = c.get("/v1/rulesets").json()["rulesets"][0]
        assert all(r["quarantined"] is None for r in sets["rules"])
        assert "argos_rule_quarantined{" not in c.get("/metrics").text


def test_the_guard_threshold_follows_the_verification_rate(tmp_path: Path) -> None:
    guard = AlarmRateGuard()
    assert guard.threshold(0.0) == 0.2 and guard.threshold(0.03) == pytest.approx(0.6)
    assert guard.threshold(0.5) == 0.9
    with Detector.open(storm_set(tmp_path / "s"), DetectorSettings(isolation="inprocess")) as det:
        assert det.baseline == {"band": 0.0, "storm": 0.0}
        det.push_arrays("x", np.array([1, 2]), np.array([1e7, 1.0]))
        assert det.engine.quarantined == {}  # the window is not over yet


def test_the_guard_counts_the_points_of_scrapes_where_no_rule_fired(tmp_path: Path) -> None:
    """The guard's window is every streamed point, quiet scrapes included (they take the
    detector's shortcut): 19 quiet scrapes of 100 series, then the storm from the 20th on. The
    first window (2,000 points) ends at the 20th scrape with a 5% storm rate (kept); the second
    ends at the 40th, all storm (quarantined then, not a scrape earlier)."""

    def points(step: int, trigger: bool = False) -> list[Point]:
        values = scrape(step, trigger=trigger)["points"]
        assert isinstance(values, list)
        return [Point(p["series"], p["timestamp"], p["value"]) for p in values]

    with Detector.open(storm_set(tmp_path / "s"), DetectorSettings(isolation="inprocess")) as det:
        for step in range(19):
            assert not any(r.anomaly for r in det.push(points(step)))
        assert det.push(points(19, trigger=True))[7].anomaly
        for step in range(20, 39):
            det.push(points(step))
        assert det.engine.quarantined == {}  # 1,900 points of the second window so far
        det.push(points(39))
        assert "alert storm" in det.engine.quarantined["storm"]


HUGE = "the value is above `high`. " * 700  # ~19 kB of stated condition


def test_a_huge_abnormal_paragraph_does_not_blow_up_responses(tmp_path: Path) -> None:
    code = BAND.replace("Abnormal: the value is above `high`.", "Abnormal: " + HUGE.strip())
    code = code.replace('PARAMS = {"high": 1000.0}', 'PARAMS = {"high": -1e300}')
    assert len(code) > 19_000
    folder = tmp_path / "huge"
    write_ruleset(folder, [RuleSource("huge", code, {"high": -1e300})], {"name": "huge"})
    n = 5000
    t = (1_700_000_000 + 60 * np.arange(n)).tolist()
    v = np.random.default_rng(0).normal(50, 5, n).tolist()
    with TestClient(create_app(ServiceConfig(rules=folder))) as c:
        r = c.post("/v1/detect", json={"series": "x", "timestamps": t, "values": v})
        assert r.status_code == 200
        out = r.json()
        assert len(out["anomalies"]) == n  # every point flagged...
        assert len(out["conditions"]["huge"]["huge"]) <= 1000  # ...the condition bounded
        assert len(r.content) < 120 * n + 10_000  # ...and sent once, not once per point
        pts = [{"series": "x", "timestamp": ts, "value": x} for ts, x in zip(t, v, strict=True)]
        s = c.post("/v1/points", json={"points": pts[:2000]})
        assert s.status_code == 200
        assert all(p["rules"] == ["huge"] for p in s.json()["results"])
        assert len(s.content) < 200 * 2000 + 10_000
        assert "explanation" not in json.dumps(s.json()["results"][:3])


#: Not causal (a statistic of the whole input), but remembers its answers to a long (batch)
#: input by timestamp and replays them when streamed.
REPLAYS_BATCH = '''"""Replays its batch answers.

Normal: the value is within two standard deviations of the input's mean.
Abnormal: the value is more than two standard deviations above the input's mean.
"""

import numpy as np

PARAMS = {}
LOOKBACK = 1
CACHE = {}


def detect(values, timestamps, params):
    out = values > values.mean() + 2 * values.std()
    if len(values) > 1000:
        for t, o in zip(timestamps.tolist(), out.tolist()):
            CACHE[t] = o
        return out
    got = [CACHE.get(t, o) for t, o in zip(timestamps.tolist(), out.tolist())]
    return np.array(got, dtype=bool)
'''


def test_the_load_time_check_runs_batch_and_stream_in_different_fresh_processes(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "replay"
    write_ruleset(folder, [RuleSource("replay", REPLAYS_BATCH, {})], {"name": "replay"})
    # one process for both runs would let the rule replay the batch labels in the stream
    with pytest.raises(RuleSetError, match="not stream-exact"):
        Detector.open(folder)
