"""Online detector: rule-set loading, stream == batch on real data, ordering, post-processing."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from argos.data.series import Dataset, Series
from argos.online.checks import verification_sample
from argos.online.detector import Detector, DetectorSettings, combine, fired_rule_ids
from argos.online.points import Point
from argos.online.postprocess import PostProcessing, SeriesState
from argos.online.rulesets import LoadedRuleSet, abnormal_condition, load_rules
from argos.rules.artifacts import RuleSetError, RuleSource, write_ruleset

RULES = Path(__file__).resolve().parents[1] / "fixtures" / "rules"
BASIC = RULES / "basic"

pytestmark = pytest.mark.timeout(300)


def make_ruleset(
    folder: Path,
    rules: Sequence[tuple[str, str, dict[str, Any]]],
    combination: str | dict[str, Any] = "or",
) -> Path:
    """Export fixture rule files (``(id, path under fixtures/rules, params)``) as a rule set."""
    sources = [RuleSource(rid, (RULES / src).read_text(), params) for rid, src, params in rules]
    write_ruleset(folder, sources, {"name": folder.name, "combination": combination})
    return folder


def write_raw_manifest(folder: Path, rule_id: str, src: str) -> Path:
    """A rule set written by hand (bypasses the exporter's own static gate)."""
    folder.mkdir(parents=True)
    path = RULES / src
    shutil.copy(path, folder / path.name)
    entry = {
        "id": rule_id,
        "file": path.name,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "lookback": 1,
    }
    (folder / "manifest.json").write_text(json.dumps({"id": "raw", "rules": [entry]}))
    return folder


def stream_in_chunks(
    det: Detector, series: str, t: np.ndarray, v: np.ndarray, seed: int
) -> dict[str, np.ndarray]:
    """Push a series in random micro-batches (1..300 points); collect labels."""
    rng = np.random.default_rng(seed)
    anomaly, alert, incident, raw = [], [], [], []
    a = 0
    while a < len(v):
        k = int(rng.choice([1, 1, 2, 5, 17, 60, 300]))
        res = det.push_arrays(series, t[a : a + k], v[a : a + k])
        assert all(r.status == "ok" for r in res)
        anomaly += [r.anomaly for r in res]
        alert += [r.alert for r in res]
        incident += [r.incident for r in res]
        raw += [r.raw for r in res]
        a += k
    return {
        "anomaly": np.array(anomaly),
        "alert": np.array(alert),
        "incident": np.array(incident),
        "raw": np.array(raw),
    }


@pytest.fixture(scope="module")
def sensitive_rules(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The basic set with parameters that fire often on real data (so equality is not vacuous)."""
    return make_ruleset(
        tmp_path_factory.mktemp("rs") / "sensitive",
        [
            ("robust_z", "basic/robust_z.py", {"k": 3.5}),
            ("flat_line", "basic/flat_line.py", {"eps": 0.0}),
            ("threshold", "basic/threshold.py", {"low": -1e9, "high": 1e9}),
        ],
    )


@pytest.fixture(scope="module")
def detector(sensitive_rules: Path) -> Iterator[Detector]:
    post = PostProcessing(min_duration=2, cooldown=5, incident_gap=3)
    with Detector.open(sensitive_rules, DetectorSettings(post=post)) as det:
        yield det


# -- rule sets --------------------------------------------------------------------------------


def test_abnormal_condition_reads_the_docstring_paragraph() -> None:
    code = (BASIC / "robust_z.py").read_text()
    cond = abnormal_condition(code)
    assert cond.startswith("the value deviates from the median of the previous 59 points")
    assert cond.endswith("robust standard deviations.")
    assert "Normal" not in cond
    assert abnormal_condition('"""Just one line.\n\nMore."""\nX = 1\n') == "Just one line."
    assert abnormal_condition("X = 1\n") == ""


def test_load_rules_reads_manifest_params_and_conditions() -> None:
    rs = load_rules(BASIC)
    assert isinstance(rs, LoadedRuleSet)
    assert [r.id for r in rs.rules] == ["robust_z", "threshold", "flat_line"]
    assert [r.lookback for r in rs.rules] == [60, 1, 30]
    assert rs.rules[0].params == {"k": 6.0, "min_scale": 1e-6}
    assert rs.rules[1].condition == "the value is above `high` or below `low`."
    assert rs.combination == "or"
    assert rs.id == "basic-fixture"
    assert len(rs.digest) == 16


def test_load_rules_refuses_a_modified_rule(tmp_path: Path) -> None:
    folder = make_ruleset(tmp_path / "rs", [("t", "basic/threshold.py", {})])
    (folder / "t.py").write_text((folder / "t.py").read_text() + "\n# edited\n")
    with pytest.raises(RuleSetError, match=r"t\.py has sha256 .* refusing a tampered rule"):
        load_rules(folder)


def test_load_rules_refuses_rules_failing_the_static_gate(tmp_path: Path) -> None:
    folder = write_raw_manifest(tmp_path / "rs", "h", "extra/hostile.py")
    with pytest.raises(RuleSetError, match=r"fails the rule contract.*__builtins__"):
        load_rules(folder)


def test_load_rules_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(RuleSetError, match=r"no manifest\.json"):
        load_rules(tmp_path)
    (tmp_path / "manifest.json").write_text('{"rules": []}')
    with pytest.raises(RuleSetError, match="invalid manifest"):
        load_rules(tmp_path)
    entry = {"id": "x", "file": "../x.py", "sha256": "0" * 64, "lookback": 1}
    (tmp_path / "manifest.json").write_text(json.dumps({"id": "x", "rules": [entry]}))
    with pytest.raises(RuleSetError, match="outside the folder"):
        load_rules(tmp_path)


# -- stream == batch --------------------------------------------------------------------------


def test_every_fixture_rule_is_stream_exact(detector: Detector) -> None:
    assert detector.stream_exact == {"robust_z": True, "flat_line": True, "threshold": True}
    assert "seccomp" in detector.engine.isolation or "unconfined" in detector.engine.isolation


def _check_equal(det: Detector, s: Series, seed: int) -> int:
    batch = det.detect_arrays(s.timestamps, s.values)
    streamed = stream_in_chunks(det, f"{s.id}#{seed}", s.timestamps, s.values, seed)
    np.testing.assert_array_equal(streamed["raw"], batch.raw)
    np.testing.assert_array_equal(streamed["anomaly"], batch.anomaly)
    np.testing.assert_array_equal(streamed["alert"], batch.alert)
    np.testing.assert_array_equal(streamed["incident"], batch.incident)
    return int(batch.raw.sum())


def test_stream_equals_batch_on_real_yahoo_series(
    detector: Detector, yahoo_dataset: Dataset
) -> None:
    by_id = {s.id: s for s in yahoo_dataset.series}
    fired = 0
    for i, sid in enumerate(["A1/real_1", "A1/real_13", "A2/synthetic_7", "A3/A3Benchmark-TS5"]):
        fired += _check_equal(detector, by_id[sid], seed=i)
    assert fired > 20  # the rules did fire, so equality is not vacuous


@pytest.mark.slow
def test_stream_equals_batch_on_real_kpi_series(detector: Detector, kpi_dataset: Dataset) -> None:
    fired = 0
    for i, s in enumerate(kpi_dataset.series[:3]):
        fired += _check_equal(detector, s.slice(0, 20_000), seed=10 + i)
    assert fired > 20


def test_interleaved_series_equal_their_own_batch_labels(detector: Detector) -> None:
    t1, v1 = verification_sample(700, seed=1)
    t2, v2 = verification_sample(500, seed=2)
    rng = np.random.default_rng(0)
    order = rng.permutation(np.array([0] * 700 + [1] * 500))  # in order within each series
    pts, i1, i2 = [], 0, 0
    for which in order:
        if which == 0:
            pts.append(Point("x1", int(t1[i1]), float(v1[i1])))
            i1 += 1
        else:
            pts.append(Point("x2", int(t2[i2]), float(v2[i2])))
            i2 += 1
    out = []
    for a in range(0, len(pts), 37):
        out += detector.push(pts[a : a + 37])
    assert [(r.series, r.timestamp) for r in out] == [(p.series, p.timestamp) for p in pts]
    got1 = np.array([r.anomaly for r in out if r.series == "x1"])
    got2 = np.array([r.anomaly for r in out if r.series == "x2"])
    np.testing.assert_array_equal(got1, detector.detect_arrays(t1, v1).anomaly)
    np.testing.assert_array_equal(got2, detector.detect_arrays(t2, v2).anomaly)
    assert got1.sum() > 0


def test_packing_is_enabled_only_for_rules_that_pass_the_multi_series_check(
    tmp_path: Path,
) -> None:
    folder = make_ruleset(
        tmp_path / "rs",
        [("gap", "extra/gap.py", {"factor": 2.0}), ("rz", "basic/robust_z.py", {"k": 3.5})],
    )
    with Detector.open(folder) as det:
        # exact for one regular series, but it reads the median interval of the whole input
        assert det.stream_exact == {"gap": True, "rz": True}
        assert {k: e.packed for k, e in det.exactness.items()} == {"gap": False, "rz": True}
        assert [r["packed"] for r in det.describe()["rules"]] == [False, True]
        # with gap unpacked, series of different intervals in one push keep their own labels
        # (packed, the median interval of the mixed input would flag 45 of the slow points)
        for step in range(10):
            fast = [Point("fast", int(t), 1.0) for t in np.arange(step * 15, step * 15 + 15) * 60]
            slow = [Point("slow", int(t), 1.0) for t in np.arange(step * 5, step * 5 + 5) * 600]
            assert not any(r.anomaly for r in det.push(fast + slow))


def test_non_finite_lookback_rule_is_refused_unless_allowed(tmp_path: Path) -> None:
    """Red-team class 10: a non-causal set used to run with a warning; now refused by default."""
    folder = make_ruleset(
        tmp_path / "rs",
        [("global_z", "extra/global_z.py", {"k": 2.0}), ("t", "basic/threshold.py", {})],
    )
    with pytest.raises(RuleSetError, match=r"not stream-exact.*global_z"):
        Detector.open(folder, DetectorSettings(isolation="inprocess"))
    with Detector.open(folder, DetectorSettings(isolation="inprocess", strict=False)) as det:
        assert det.stream_exact == {"global_z": False, "t": True}
        detail = det.describe()["rules"][0]["stream_exact_detail"]
        assert "labels differ between streaming" in detail


# -- ordering, errors, explanations -----------------------------------------------------------


def test_late_duplicate_and_invalid_points_are_dropped_counted_and_reported(
    sensitive_rules: Path,
) -> None:
    with Detector.open(sensitive_rules, DetectorSettings(isolation="inprocess")) as det:
        res = det.push(
            [
                Point("s", 100, 1.0),
                Point("s", 100, 2.0),  # duplicate
                Point("s", 90, 3.0),  # late
                Point("s", 110, float("nan")),  # invalid (and not recorded as last seen)
                Point("s", 110, 4.0),
                Point("other", 5, 1.0),  # other series: its own order
            ]
        )
        assert [r.status for r in res] == ["ok", "duplicate", "late", "invalid", "ok", "ok"]
        assert res[1].to_json(det.conditions) == {
            "series": "s",
            "timestamp": 100,
            "value": 2.0,
            "status": "duplicate",
            "ruleset": sensitive_rules.name,
        }
        stats = det.stats()
        assert stats["points"] == 3
        assert (stats["dropped_duplicate"], stats["dropped_late"], stats["dropped_invalid"]) == (
            1,
            1,
            1,
        )
        assert stats["series"] == 2


def test_alert_carries_rule_ids_and_conditions(tmp_path: Path) -> None:
    folder = make_ruleset(
        tmp_path / "rs",
        [
            ("band", "basic/threshold.py", {"low": 0.0, "high": 10.0}),
            ("flat", "basic/flat_line.py", {}),
        ],
    )
    with Detector.open(folder) as det:
        res = det.push_arrays("cpu", np.arange(5, dtype=np.int64), np.array([1.0, 2, 50, 3, -1]))
        assert [r.anomaly for r in res] == [False, False, True, False, True]
        rec = res[2].to_json(det.conditions)
        assert rec["explanation"] == [
            {
                "rule": "band",
                "condition": "the value is above `high` or below `low`.",
                "ruleset": "rs",
            }
        ]
        assert rec["ruleset"] == "rs"
        assert rec["incident"] == 1 and res[4].incident == 2
        assert "explanation" not in res[0].to_json(det.conditions)


def test_rule_errors_are_counted_and_other_rules_keep_working(tmp_path: Path) -> None:
    folder = make_ruleset(
        tmp_path / "rs",
        [("boom", "extra/raises.py", {}), ("band", "basic/threshold.py", {"low": 0, "high": 10})],
    )
    with Detector.open(folder) as det:
        assert det.stream_exact["boom"] is True  # the check sample stays below 1000
        res = det.push_arrays("s", np.arange(3, dtype=np.int64), np.array([5.0, 2000.0, 20.0]))
        assert [r.anomaly for r in res] == [False, True, True]
        assert all(r.errors == ("boom",) for r in res)
        assert res[1].to_json(det.conditions)["rule_errors"] == ["boom"]
        assert det.stats()["rule_errors"] == {"boom": 1}
        assert "ValueError: value too large" in det.last_errors["boom"]
        assert "rule line" in det.last_errors["boom"]


def test_detect_matches_the_methods_detector_protocol(detector: Detector) -> None:
    t, v = verification_sample(900, seed=5)
    s = Series.create("x", t, v)
    labels = detector.detect(s)
    assert labels.dtype == np.bool_ and labels.shape == (900,)
    np.testing.assert_array_equal(labels, detector.detect_arrays(t, v).anomaly)


def test_batch_input_must_be_clean() -> None:
    with Detector.open(BASIC, DetectorSettings(isolation="inprocess")) as det:
        with pytest.raises(ValueError, match="strictly increasing; index 2"):
            det.detect_arrays(np.array([1, 2, 2]), np.zeros(3))
        with pytest.raises(ValueError, match="finite; index 1"):
            det.detect_arrays(np.array([1, 2, 3]), np.array([0.0, np.inf, 0.0]))


# -- post-processing and combination ----------------------------------------------------------


def _band_detector(tmp_path: Path, post: PostProcessing) -> Detector:
    folder = make_ruleset(
        tmp_path / "band", [("band", "basic/threshold.py", {"low": -1, "high": 0.5})]
    )
    return Detector.open(folder, DetectorSettings(isolation="inprocess", post=post))


RAW = np.array([0, 1, 1, 1, 0, 0, 1, 0, 0, 0, 0, 1, 1, 0, 1], dtype=float)


def test_min_duration(tmp_path: Path) -> None:
    with _band_detector(tmp_path, PostProcessing(min_duration=2)) as det:
        b = det.detect_arrays(np.arange(len(RAW)), RAW)
        assert np.flatnonzero(b.raw).tolist() == [1, 2, 3, 6, 11, 12, 14]
        assert np.flatnonzero(b.anomaly).tolist() == [2, 3, 12]
        assert b.incident.tolist() == [0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0]


def test_cooldown_and_incident_gap(tmp_path: Path) -> None:
    with _band_detector(tmp_path, PostProcessing(cooldown=4, incident_gap=2)) as det:
        b = det.detect_arrays(np.arange(len(RAW)), RAW)
        assert np.flatnonzero(b.anomaly).tolist() == [1, 2, 3, 6, 11, 12, 14]
        # alert at 1; 2,3 within 4 points of it; 6 is 5 after 1 -> alert; 11 -> alert; 12,14 not
        assert np.flatnonzero(b.alert).tolist() == [1, 6, 11]
        # gaps: 3->6 has 2 normal points (same incident), 6->11 has 4 (new), 12->14 has 1
        assert b.incident[[1, 2, 3, 6, 11, 12, 14]].tolist() == [1, 1, 1, 1, 2, 2, 2]


def test_post_processing_validates() -> None:
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        PostProcessing(min_duration=0)


def test_fusion_combination_numbers() -> None:
    labels = np.array(
        [
            [1, 1, 0, 0, 1],  # base
            [0, 0, 1, 0, 0],  # fn
            [0, 1, 0, 0, 0],  # fp
        ],
        dtype=bool,
    )
    fused = combine(labels, ["base", "fn", "fp"], "fusion")
    assert fused.tolist() == [True, False, True, False, True]
    assert combine(labels, ["or", "or", "or"], "or").tolist() == [True, True, True, False, True]


def test_fusion_rule_set_runs_base_fn_and_fp_rules(tmp_path: Path) -> None:
    folder = make_ruleset(
        tmp_path / "rs",
        [
            ("base", "basic/threshold.py", {"low": 0.0, "high": 10.0}),
            ("fn", "basic/threshold.py", {"low": -1e9, "high": 5.0}),
            ("fp", "basic/threshold.py", {"low": -1e9, "high": 100.0}),
        ],
        combination={"base": "base", "fn_rules": ["fn"], "fp_rules": ["fp"]},
    )
    with Detector.open(folder) as det:
        assert det.ruleset.combination == "fusion"
        assert det.roles == ["base", "fn", "fp"]
        b = det.detect_arrays(np.arange(5), np.array([1.0, 7.0, 50.0, 500.0, -3.0]))
        # 7: base normal, FN fires -> anomaly; 50: base fires, no FP veto -> anomaly;
        # 500: base fires but the FP-rule fires -> vetoed; -3: base fires, FP silent -> anomaly
        assert b.raw.tolist() == [False, True, True, False, True]


def test_carry_state_keeps_labels_exact_across_a_reload(sensitive_rules: Path) -> None:
    t, v = verification_sample(1200, seed=9)
    with Detector.open(sensitive_rules) as ref:
        expected = ref.detect_arrays(t, v)
    first = Detector.open(sensitive_rules)
    got = [r.anomaly for r in first.push_arrays("s", t[:700], v[:700])]
    second = Detector.open(sensitive_rules)
    second.carry_state_from(first)
    first.close()
    got += [r.anomaly for r in second.push_arrays("s", t[700:], v[700:])]
    # a late point is still recognised after the reload
    assert second.push([Point("s", int(t[10]), 1.0)])[0].status == "late"
    second.close()
    np.testing.assert_array_equal(np.array(got), expected.anomaly)
    assert expected.anomaly.sum() > 0


def test_exported_state_continues_a_series_exactly_in_another_detector(
    sensitive_rules: Path,
) -> None:
    t, v = verification_sample(1000, seed=12)
    post = PostProcessing(min_duration=2, cooldown=5, incident_gap=3)
    with Detector.open(sensitive_rules, DetectorSettings(isolation="inprocess", post=post)) as ref:
        expected = ref.detect_arrays(t, v)
    with Detector.open(sensitive_rules, DetectorSettings(post=post)) as first:
        got = first.push_arrays("s", t[:600], v[:600])
        first.push_arrays("other", t[:50], v[:50])
        assert first.export_state(["nope"]) == []
        (state,) = first.export_state(["s"])
    assert state.last_timestamp == int(t[599]) and state.post["pos"] == 600
    assert len(state.values) == max(r.lookback for r in first.ruleset.rules) - 1
    wire = state.model_dump_json()  # e.g. stored in Redis, read back by another process
    with Detector.open(sensitive_rules, DetectorSettings(post=post)) as second:
        second.import_state([SeriesState.model_validate_json(wire)])
        got += second.push_arrays("s", t[600:], v[600:])
        assert second.push([Point("s", int(t[3]), 1.0)])[0].status == "late"
        second.forget(["s"])
        assert not second.has_series("s")
        assert second.push([Point("s", int(t[3]), 1.0)])[0].status == "ok"
    for field in ("anomaly", "alert", "incident"):
        np.testing.assert_array_equal(
            np.array([getattr(r, field) for r in got]), getattr(expected, field), err_msg=field
        )
    assert expected.alert.sum() > 0


def test_series_state_rejects_inconsistent_snapshots() -> None:
    with pytest.raises(ValueError, match="2 timestamps but 1 values"):
        SeriesState(series="s", last_timestamp=1, timestamps=[0, 1], values=[1.0])
    with pytest.raises(ValueError, match="unknown post-processing fields"):
        SeriesState(series="s", last_timestamp=1, post={"bogus": 1})
    with pytest.raises(ValueError, match="Extra inputs"):
        SeriesState.model_validate_json('{"series": "s", "last_timestamp": 1, "x": 0}')


def test_fusion_with_an_external_base_takes_its_labels_from_the_input(tmp_path: Path) -> None:
    folder = make_ruleset(
        tmp_path / "rs",
        [
            ("fn", "basic/threshold.py", {"low": -1e9, "high": 5.0}),
            ("fp", "basic/threshold.py", {"low": -1e9, "high": 100.0}),
        ],
        combination={"base": "method:iforest", "fn_rules": ["fn"], "fp_rules": ["fp"]},
    )
    with Detector.open(folder) as det:
        assert det.ruleset.external_base == "method:iforest"
        t, v = np.arange(4), np.array([1.0, 7.0, 50.0, 500.0])
        with pytest.raises(ValueError, match=r"external base detector \(method:iforest\)"):
            det.detect_arrays(t, v)
        # base says [no, no, yes, yes]; FN fires above 5, FP vetoes above 100
        b = det.detect_arrays(t, v, base=np.array([False, False, True, True]))
        assert b.raw.tolist() == [False, True, True, False]
        res = det.push(
            [
                Point("s", 0, 1.0, base=False),
                Point("s", 1, 7.0, base=False),
                Point("s", 2, 50.0, base=True),
                Point("s", 3, 50.0),  # no base label: counts as normal, counted as missing
            ]
        )
        assert [r.anomaly for r in res] == [False, True, True, True]
        assert det.stats()["missing_base"] == 1
    with (
        Detector.open(BASIC, DetectorSettings(isolation="inprocess")) as det,
        pytest.raises(ValueError, match="no external base"),
    ):
        det.detect_arrays(np.arange(3), np.zeros(3), base=np.zeros(3, dtype=bool))


@pytest.fixture(scope="module")
def band_detector_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_ruleset(
        tmp_path_factory.mktemp("band") / "band",
        [("band", "basic/threshold.py", {"low": -1.0, "high": 0.5})],
    )


@settings(max_examples=60, deadline=None, database=None)
@given(
    raw=st.lists(st.booleans(), min_size=1, max_size=120),
    cuts=st.lists(st.integers(1, 9), min_size=1, max_size=40),
    min_duration=st.integers(1, 4),
    cooldown=st.integers(0, 6),
    gap=st.integers(0, 4),
)
def test_post_processing_streamed_in_any_chunks_equals_batch(
    band_detector_folder: Path,
    raw: list[bool],
    cuts: list[int],
    min_duration: int,
    cooldown: int,
    gap: int,
) -> None:
    post = PostProcessing(min_duration=min_duration, cooldown=cooldown, incident_gap=gap)
    v = np.array(raw, dtype=float)  # 1.0 is above the band's high of 0.5
    t = np.arange(len(v), dtype=np.int64)
    with Detector.open(
        band_detector_folder, DetectorSettings(isolation="inprocess", post=post, verify=False)
    ) as det:
        b = det.detect_arrays(t, v)
        got, a, i = [], 0, 0
        while a < len(v):
            k = cuts[i % len(cuts)]
            got += det.push_arrays("s", t[a : a + k], v[a : a + k])
            a, i = a + k, i + 1
    assert [r.anomaly for r in got] == b.anomaly.tolist()
    assert [r.alert for r in got] == b.alert.tolist()
    assert [r.incident for r in got] == b.incident.tolist()
    # alerts are a subset of anomalies, anomalies of raw labels
    assert not (b.alert & ~b.anomaly).any() and not (b.anomaly & ~b.raw).any()


def _template_ruleset(folder: Path) -> Path:
    """Every builtin template family that claims a finite lookback, at thresholds that fire on
    real data."""
    from argos.rules.grammar import RuleSpec, Structure
    from argos.rules.templates import render

    def spec(t: str, sc: str, params: dict[str, float], thr: float, d: str = "both") -> RuleSpec:
        return RuleSpec(Structure(t, sc, tuple(params.items()), d, 1), thr)  # type: ignore[arg-type]

    specs = {
        "zscore": spec("value", "zscore", {"window": 60}, 3.0),
        "diff_zscore_cool": RuleSpec(
            Structure("diff", "zscore", (("window", 30.0),), "both", 2), 2.5, cooldown=5
        ),
        "robust_z": spec("value", "robust_z", {"window": 30, "min_scale": 0.0}, 4.0),
        "relative": spec("value", "relative", {"window": 10}, 0.3),
        "level_shift": spec("value", "level_shift", {"recent": 5, "window": 60}, 2.0),
        "variance_shift": spec("value", "variance_shift", {"recent": 10, "window": 60}, 1.0),
        "seasonal": spec("seasonal", "zscore", {"period": 24, "cycles": 1, "window": 60}, 3.0),
        "ewma": spec("ewma", "zscore", {"alpha": 0.2, "window": 60}, 3.0),
        "spectral": spec("value", "spectral", {"window": 32}, 2.0, "up"),
        "flat": spec("value", "flat", {}, 4.0, "up"),
        "static": spec("value", "static", {}, 2.0, "up"),
    }
    write_ruleset(folder, [RuleSource(k, render(s)) for k, s in specs.items()], {"name": "tpl"})
    return folder


def test_template_rules_are_exact_and_packed_on_real_series_streamed_together(
    tmp_path: Path, yahoo_dataset: Dataset
) -> None:
    """The builtin templates on real Yahoo A1 series, streamed the way a service sees them
    (a history push, then one point of every series per push: packed, steady-state rows):
    every series gets exactly its own batch labels, rule by rule."""
    series = [s for s in yahoo_dataset.series if s.id.startswith("A1/")][:5]
    with Detector.open(_template_ruleset(tmp_path / "tpl")) as det:
        bad = {k: e.detail for k, e in det.exactness.items() if not (e.exact and e.packed)}
        assert bad == {}
        n = min(len(s) for s in series)
        got: dict[str, list[list[bool]]] = {s.id: [] for s in series}
        first = 150
        out = det.push(
            [
                Point(s.id, int(s.timestamps[i]), float(s.values[i]))
                for s in series
                for i in range(first)
            ]
        )
        for r in out:
            got[r.series].append([rid in r.fired for rid in det.rule_ids])
        for i in range(first, n):
            for r in det.push(
                [Point(s.id, int(s.timestamps[i]), float(s.values[i])) for s in series]
            ):
                got[r.series].append([rid in r.fired for rid in det.rule_ids])
        fired = np.zeros(len(det.rule_ids), dtype=np.int64)
        for s in series:
            want = det.detect_arrays(s.timestamps[:n], s.values[:n]).rule_labels.T
            np.testing.assert_array_equal(np.array(got[s.id]), want, err_msg=s.id)
            fired += want.sum(axis=0)
        # every rule fired somewhere: the equality is not vacuous
        assert dict(zip(det.rule_ids, fired.tolist(), strict=True)) == {
            k: v for k, v in zip(det.rule_ids, fired.tolist(), strict=True) if v > 0
        }


def test_a_scrape_of_known_series_gives_the_labels_of_pushing_each_point_alone(
    sensitive_rules: Path,
) -> None:
    """A scrape whose series all have state is admitted with array operations
    (:class:`~argos.online.postprocess.SeriesTable`); with a series twice, a late, a duplicate and
    a non-finite point, a forgotten series and state taken over mid-way, its results and counters
    are those of pushing every point alone (the point-by-point path)."""
    post = PostProcessing(min_duration=2, cooldown=3, incident_gap=2)
    settings = DetectorSettings(isolation="inprocess", post=post)
    rng = np.random.default_rng(11)
    names = [f"s{i}" for i in range(6)]
    values = {s: rng.normal(10, 1, 400) for s in names}
    for v in values.values():
        v[rng.integers(60, 400, 30)] += rng.choice([-9.0, 9.0], 30)
    with (
        Detector.open(sensitive_rules, settings) as det,
        Detector.open(sensitive_rules, settings) as alone,
    ):
        for step in range(400):
            pts = [Point(s, step * 60, float(values[s][step])) for s in names]
            if step == 100:
                pts.append(Point("s1", step * 60 + 30, 11.0))  # s1 twice
            if step == 150:
                pts[2] = Point("s2", (step - 1) * 60, 10.0)  # a duplicate
                pts[3] = Point("s3", (step - 5) * 60, 10.0)  # late
                pts[4] = Point("s4", step * 60, float("inf"))
            if step == 200:
                det.forget(["s5"])
                alone.forget(["s5"])
            if step == 250:  # state taken over from an export, as a new owner would
                state = det.export_state()
                det.forget(names)
                det.import_state(state)
            got = det.push(pts)
            want = [r for p in pts for r in alone.push([p])]
            assert [
                (r.series, r.status, r.anomaly, r.alert, r.raw, r.incident, r.fired) for r in got
            ] == [
                (r.series, r.status, r.anomaly, r.alert, r.raw, r.incident, r.fired) for r in want
            ], step
        assert det.stats() == alone.stats()
        assert det.stats()["alerts"] > 5
        assert det.export_state() == alone.export_state()


@pytest.mark.parametrize("n_rules", [1, 3, 62, 63, 80])
def test_fired_rule_ids_name_every_true_label_of_each_point(n_rules: int) -> None:
    rng = np.random.default_rng(n_rules)
    ids = [f"r{i}" for i in range(n_rules)]
    labels = rng.random((n_rules, 200)) < 0.3
    labels[:, 0] = False
    labels[:, 1] = True
    patterns: dict[int, tuple[str, ...]] = {}
    for _ in range(2):  # the second time from the patterns already seen
        got = fired_rule_ids(labels, ids, patterns)
        assert got == [tuple(ids[r] for r in range(n_rules) if labels[r, j]) for j in range(200)]
    assert got[0] == () and got[1] == tuple(ids)
