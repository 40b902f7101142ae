"""The training driver: fitting inputs, verification in the sandbox, export, summary, and the
``argos-builtin`` evaluation method."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from argos.data.protocol import fit_inputs
from argos.data.series import Dataset, Series, SplitSpec
from argos.methods import get_method
from argos.rules.artifacts import load_ruleset
from argos.training.builtin.config import SearchConfig
from argos.training.builtin.method import BuiltinGenerator, BuiltinMethod, fit_series
from argos.training.driver import (
    in_process_labels,
    problem_text,
    train_dataset,
    training_units,
    verify_rules,
)
from argos.training.generator import GeneratedRule, join_history


def _series(sid: str, seed: int, n: int = 2000) -> Series:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    v = 20 + 5 * np.sin(2 * np.pi * t / 96) + rng.normal(0, 0.5, n)
    lab = np.zeros(n, bool)
    for a in range(150, n - 5, 137):
        v[a : a + 2] += 8
        lab[a : a + 2] = True
    return Series.create(sid, 1_700_000_000 + 900 * t, v, lab)


def _dataset() -> Dataset:
    return Dataset(
        "toy",
        [_series("a", 0), _series("b", 1), _series("c", 2)],
        SplitSpec(0.7, 0.2, "series"),
        partitions={"P1": ["a", "b"], "P2": ["c"]},
    )


def test_fit_series_joins_train_and_validation() -> None:
    ds = _dataset()
    fi = fit_inputs([ds.get("a")], ds.split)
    (fs,) = fit_series(fi.train, fi.validation)
    assert len(fs.values) == len(fi.train[0]) + len(fi.validation[0]) == 1400
    assert fs.val_start == len(fi.train[0]) == 1120
    np.testing.assert_array_equal(fs.values, ds.get("a").values[:1400])
    with pytest.raises(ValueError, match="2 train slices but 1"):
        fit_series(fi.train * 2, fi.validation)


def test_training_units_by_series_partition_and_selection() -> None:
    ds = _dataset()
    assert list(training_units(ds)) == ["a", "b", "c"]
    assert {
        k: [s.id for s in v] for k, v in training_units(ds, granularity="partition").items()
    } == {
        "P1": ["a", "b"],
        "P2": ["c"],
    }
    assert list(training_units(ds, series_id="b")) == ["b"]
    assert list(training_units(ds, partition="P1")) == ["a", "b"]
    with pytest.raises(ValueError, match="no partition 'Z'"):
        training_units(ds, partition="Z")
    with pytest.raises(KeyError):
        training_units(ds, series_id="nope")


def test_train_dataset_verifies_exports_and_summarises(tmp_path: Path) -> None:
    ds = _dataset()
    seen: list[str] = []
    summary = train_dataset(
        ds,
        generator=BuiltinGenerator(),
        out_dir=tmp_path,
        workers=2,
        on_unit=lambda r, o: seen.append(r.unit),
    )
    assert sorted(seen) == ["a", "b", "c"]
    assert [u.unit for u in summary.units] == ["a", "b", "c"]
    for u in summary.units:
        assert u.verified and not u.problems, u.problems
        assert u.rules and u.tried > 100
        assert u.train_f1 is not None and u.train_f1 > 0.9
        rs = load_ruleset(Path(u.path or ""))
        assert [r.id for r in rs.rules] == u.rules
        assert rs.manifest.metrics["validation"]["event_pa_f1"] == u.validation_f1
        assert rs.manifest.training is not None and rs.manifest.training.series == [u.unit]
        assert rs.manifest.generator is not None and rs.manifest.generator.kind == "builtin"
    data = json.loads((tmp_path / "summary.json").read_text())
    assert data["generator"] == "builtin" and len(data["units"]) == 3


def test_partition_training_writes_one_rule_set_per_partition(tmp_path: Path) -> None:
    summary = train_dataset(
        _dataset(), generator=BuiltinGenerator(), out_dir=tmp_path, granularity="partition"
    )
    assert [u.unit for u in summary.units] == ["P1", "P2"]
    assert summary.units[0].series == ["a", "b"]
    path = summary.units[0].path
    assert path is not None and Path(path).parent == tmp_path
    assert Path(path).name.startswith("p1-")  # folder names are lower-case slugs
    rs = load_ruleset(path)
    assert rs.manifest.training is not None and rs.manifest.training.partition == "P1"


def test_verification_reports_broken_and_mismatching_rules() -> None:
    from argos.sandbox.pool import Sandbox

    ds = _dataset()
    fi = fit_inputs([ds.get("a")], ds.split)
    history = join_history(fi.train, fi.validation)
    out = BuiltinGenerator().generate(fi.train, fi.validation)
    good = out.rules[0]
    crashing = GeneratedRule("crashing", good.source.replace("return alarm", "return 1 / 0"), {})
    broken = GeneratedRule("broken", "import os\n" + good.source, {})
    with Sandbox(workers=1) as sb:
        assert verify_rules([good], history, sb) == []
        problems = verify_rules([broken, crashing, good], history, sb)
    assert [(p.item, p.rule_id) for p in problems] == [(0, "broken"), (0, "crashing")]
    assert problem_text(problems[0]).startswith("broken: static gate")
    assert problem_text(problems[1]).startswith("crashing: sandbox runtime_error")


def test_verification_refuses_a_trusted_rule_whose_label_needs_more_than_lookback() -> None:
    """A rule whose score runs over the whole history (here: the classic, unbounded CUSUM
    recursion the template had) is reported, so the builtin generator never exports a set the
    detector refuses as not stream-exact."""
    from argos.sandbox.pool import Sandbox

    ds = _dataset()
    fi = fit_inputs([ds.get("a")], ds.split)
    history = join_history(fi.train, fi.validation)
    unbounded = """\"\"\"global_cusum: the cumulative sum of the whole history.

Normal: The running sum stays below 5.
Abnormal: The running sum of the value minus 20 reaches 5.
\"\"\"
import numpy as np

PARAMS = {"threshold": 5.0}
LOOKBACK = 30


def detect(values, timestamps, params=PARAMS):
    hi, out = 0.0, np.zeros(len(values), dtype=bool)
    for i, v in enumerate(np.asarray(values, dtype=float).tolist()):
        hi = max(0.0, hi + v - 20.5)
        out[i] = hi >= params["threshold"]
    return out
"""
    rule = GeneratedRule("global_cusum", unbounded, {"threshold": 5.0})
    with Sandbox(workers=1) as sb:
        problems = verify_rules([rule], history, sb)
        assert verify_rules([rule], history, sb, trusted=False) == []
    assert [(p.rule_id, p.message.split(":")[0]) for p in problems] == [
        ("global_cusum", "not stream-exact")
    ]
    assert "LOOKBACK=30" in problems[0].message


def test_builtin_method_is_catalogued_and_detects_through_the_sandbox() -> None:
    method = get_method("argos-builtin").build(seed=0)
    assert isinstance(method, BuiltinMethod)
    ds = _dataset()
    s = ds.get("b")
    fi = fit_inputs([s], ds.split)
    det = method.fit(fi.train, fi.validation)
    labels = det.detect(s.without_labels())
    assert labels.dtype == np.bool_ and labels.shape == (len(s),)
    ref = in_process_labels(
        BuiltinGenerator(SearchConfig(seed=0)).generate(fi.train, fi.validation).rules,
        s.values,
        s.timestamps,
    )
    np.testing.assert_array_equal(labels, ref)
    test = slice(1400, None)
    truth = s.labels[test] if s.labels is not None else None
    assert truth is not None
    from argos.metrics import event_pa

    assert (event_pa(truth, labels[test]).f1 or 0) > 0.9


@pytest.mark.slow
def test_kpi_series_training_beats_the_robust_zscore_baseline(kpi_dataset: Dataset) -> None:
    """On one real KPI series the builtin rules score well above the robust z-score baseline."""
    from argos.evaluation.harness import evaluate

    sid = kpi_dataset.series[0].id
    one = Dataset("kpi1", [kpi_dataset.get(sid)], kpi_dataset.split)
    res = evaluate(one, ["argos-builtin", "robust-zscore"], workers=1, with_scores=False)
    agg = res.summary()
    ours = agg["argos-builtin"]["event_pa"]["mean"]["f1"]
    base = agg["robust-zscore"]["event_pa"]["mean"]["f1"]
    assert ours is not None and base is not None
    assert ours > base + 0.1


def test_a_rule_the_online_detector_would_refuse_is_not_exported() -> None:
    """The driver's own checks (sandbox, causality on the unit's history) pass LATCH; the online
    detector's stream-exactness check on its own sample refuses it, and so does training."""
    from scripted_rules import GOOD, LATCH

    from argos.cli.deployment import deployment_refusals
    from argos.sandbox.pool import Sandbox

    ds = _dataset()
    fi = fit_inputs([ds.get("a")], ds.split)
    history = join_history(fi.train, fi.validation)
    rules = [GeneratedRule("good", GOOD, {}), GeneratedRule("latch", LATCH, {})]
    with Sandbox(workers=1) as sb:
        assert verify_rules(rules, history, sb, trusted=False) == []
        problems = verify_rules(rules, history, sb, trusted=False, deployment=deployment_refusals)
    assert [p.rule_id for p in problems] == ["latch"]
    assert "online detector refuses it" in problems[0].message
    assert "differ between streaming" in problems[0].message
