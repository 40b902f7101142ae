"""Helpers of the Prometheus export tests: promtool, real-data slices, rules fitted on a slice.

Thresholds are chosen from the slice's own scores, halfway between two neighbouring distinct
values, so every point is far from its threshold compared with the ~1e-15 differences between numpy
and Prometheus arithmetic (and :func:`run_case` asserts it with ``near_threshold``): the expected
alerts are never adjusted, the slices and thresholds are chosen honestly instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from argos._types import BoolArray, FloatArray
from argos.data.series import Series
from argos.export.prometheus import (
    SetExport,
    expected_alerts,
    export_ruleset,
    near_threshold,
    regular_step,
    rule_file,
    unit_test_file,
)
from argos.rules.artifacts import RuleSource, write_ruleset
from argos.rules.grammar import Direction, Gate, RuleSpec, Structure
from argos.rules.templates import compile_score, directional, render


def promtool() -> str:
    """The ``promtool`` binary (Debian package ``prometheus``; ``make test`` installs it)."""
    path = shutil.which("promtool")
    if path is None:
        reason = "promtool not installed (apt-get install prometheus; make test does it)"
        if os.environ.get("ARGOS_TEST_PROMTOOL") == "1":  # set by .ci/run: fail, never skip
            pytest.fail("ARGOS_TEST_PROMTOOL=1 but " + reason)
        pytest.skip(reason)
    return path


def run_promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args], capture_output=True, text=True, cwd=cwd, timeout=1800, check=False
    )


def regular_slice(s: Series, length: int, start: int = 0) -> tuple[np.ndarray, FloatArray]:
    """The first ``length`` points from ``start`` on with regularly spaced timestamps."""
    t, v = s.timestamps, s.values
    for a in range(start, len(t) - length + 1):
        if regular_step(t[a : a + length]) is not None:
            return t[a : a + length], v[a : a + length]
    raise AssertionError(f"{s.id}: no regular slice of {length} points")


def _scores(st: Structure, values: FloatArray) -> FloatArray:
    if st.scorer == "flat":
        idx = np.arange(len(values))
        changed = np.concatenate(([True], values[1:] != values[:-1]))
        return (idx - np.maximum.accumulate(np.where(changed, idx, 0)) + 1).astype(float)
    score = compile_score(st.transform, st.scorer)(values, np.arange(len(values)), st.param_dict)
    return directional(score, st.direction, st.persistence)


def _between(sorted_values: FloatArray, i: int) -> float:
    """Halfway below the i-th distinct value, or the next one that is clearly apart from its
    predecessor (residuals of decimal data differ by rounding noise: 0.01 vs 0.010000000000005)."""
    d = sorted_values
    j = next(
        (k for k in range(max(1, i), len(d)) if d[k] - d[k - 1] > 1e-5 * max(1.0, abs(d[k]))),
        max(1, i),
    )
    return float((d[j - 1] + d[j]) / 2)


def fit(
    st: Structure,
    values: FloatArray,
    quantile: float,
    *,
    gate: Structure | None = None,
    cooldown: int = 0,
) -> RuleSpec:
    """A rule of shape ``st`` whose threshold is the ``quantile`` of its scores on ``values``
    (moved halfway to the next lower distinct score); a gate gets a threshold that lets at least
    one point where the main condition holds through."""
    s = _scores(st, values)
    distinct = np.unique(s[np.isfinite(s)])
    i = max(1, min(len(distinct) - 1, int(quantile * len(distinct))))
    thr = _between(distinct, i)
    g: Gate | None = None
    if gate is not None:
        gs = _scores(gate, values)
        fired = gs[(s >= thr) & np.isfinite(gs)]
        assert len(fired), "the main condition never holds with a finite gate score"
        pick = float(np.sort(fired)[len(fired) // 2])
        gd = np.unique(gs[np.isfinite(gs)])
        j = int(np.searchsorted(gd, pick))
        g = Gate(gate, _between(gd, j) if j > 0 else pick - 1.0)
    return RuleSpec(st, thr, cooldown, gate=g)


def shape(
    transform: str,
    scorer: str,
    direction: Direction,
    persistence: int = 1,
    **params: float,
) -> Structure:
    return Structure(transform, scorer, tuple(params.items()), direction, persistence)


def write_specs(directory: Path, specs: Sequence[RuleSpec]) -> Path:
    """A builtin rule set holding ``specs`` (rendered exactly like the generator's)."""
    write_ruleset(
        directory,
        [RuleSource(spec.name, render(spec)) for spec in specs],
        {"name": directory.name, "generator": {"kind": "builtin"}},
    )
    return directory


@dataclass
class CaseResult:
    export: SetExport
    expected: dict[str, BoolArray]
    output: str


def run_case(
    tmp: Path,
    ruleset: Path,
    values: FloatArray,
    timestamps: np.ndarray,
    step_ms: int,
    selector: str = 'argos_test_metric{job="api"}',
) -> CaseResult:
    """Export ``ruleset``, write the unit test of ``values`` and run ``promtool check rules`` and
    ``promtool test rules``; fail with promtool's output unless both pass."""
    export = export_ruleset(ruleset, selector, step_ms)
    assert export.specs, export.summary()
    for rid, spec in export.specs.items():
        near = near_threshold(spec, values)
        assert not near, f"{rid}: points {near[:5]} are within rounding of the threshold"
    expected = expected_alerts(ruleset, timestamps, values, isolation="inprocess")
    (tmp / "rules.yml").write_text(rule_file([export]))
    test = tmp / "rules_test.yml"
    test.write_text(unit_test_file(export, "rules.yml", values, expected))
    check = run_promtool("check", "rules", str(tmp / "rules.yml"))
    assert check.returncode == 0, check.stdout + check.stderr
    res = run_promtool("test", "rules", str(test))
    assert res.returncode == 0, (res.stdout + res.stderr)[-6000:]
    return CaseResult(export, expected, res.stdout)
