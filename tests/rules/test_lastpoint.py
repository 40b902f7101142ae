"""The last-point form of a template rule gives, for every window, exactly the label the rendered
rule gives at the window's last point: every supported shape (directions, persistence, gates,
cool-downs), on random data with ties, flat stretches and large levels, and on real KPI data;
unsupported shapes have no last-point form."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from argos.data.series import Dataset
from argos.rules.grammar import Gate, RuleSpec, Structure
from argos.rules.lastpoint import ScoreKey, evaluate_last, last_point_program, last_scores
from argos.rules.templates import compile_score, load_rule, render


def shapes() -> list[Structure]:
    """Every supported (transform, scorer) with small windows, each direction, persistence 1-3."""
    params = {
        "static": (),
        "band": (("center", 0.25),),
        "zscore": (("window", 7.0),),
        "relative": (("window", 12.0),),
        "level_shift": (("recent", 3.0), ("window", 13.0)),
    }
    out = []
    for transform, (scorer, p), direction, k in itertools.product(
        ("value", "diff"), params.items(), ("up", "down", "both"), (1, 3)
    ):
        out.append(Structure(transform, scorer, p, direction, k))
    return out


def specs() -> list[RuleSpec]:
    rng = np.random.default_rng(0)
    gate = Gate(Structure("diff", "zscore", (("window", 5.0),), "both", 1), 1.5)
    out = []
    for i, st in enumerate(shapes()):
        thr = float(rng.uniform(0.2, 2.5 if st.persistence == 1 else 0.6))
        out.append(RuleSpec(st, thr, cooldown=(0, 1, 4)[i % 3]))
        if i % 4 == 0:
            out.append(RuleSpec(st, thr, cooldown=i % 2 * 3, gate=gate))
    # the widths of real rules (windows of 60 and 360 points: blocks 32+16+8+4, 256+64+32+8)
    out.append(RuleSpec(Structure("value", "zscore", (("window", 60.0),), "both", 1), 3.0))
    out.append(
        RuleSpec(Structure("value", "zscore", (("window", 360.0),), "both", 1), 4.0, cooldown=11)
    )
    out.append(
        RuleSpec(
            Structure("value", "level_shift", (("recent", 10.0), ("window", 60.0)), "both", 2), 2.0
        )
    )
    return out


def rows_of(values: np.ndarray, width: int) -> np.ndarray:
    """Every window of ``width`` points of a series, one per row."""
    return np.lib.stride_tricks.sliding_window_view(values, width).copy()


def reference(spec: RuleSpec, rows: np.ndarray) -> np.ndarray:
    """The rendered rule on each row; its last label."""
    detect, params = load_rule(render(spec))
    t = np.arange(rows.shape[1], dtype=np.int64)
    return np.array([bool(detect(r.copy(), t, dict(params))[-1]) for r in rows])


def noisy_series(rng: np.random.Generator, n: int) -> np.ndarray:
    """Noise with spikes, dips, level shifts, flat stretches (zero spread), repeated values and
    a high level (rounding matters there)."""
    v = rng.normal(0, 1, n)
    v[rng.integers(0, n, n // 20)] += rng.choice([-8, 8], n // 20)
    v[n // 3 :] += 4
    v[n // 8 : n // 8 + 15] -= 9
    v[n // 4 : n // 4 + 15] += rng.choice([-9, 9], 15)
    v[n // 2 : n // 2 + 40] = 2.0
    v[2 * n // 3 :] = np.round(v[2 * n // 3 :], 1)
    v[5 * n // 6 :] += 1e9
    return v


@pytest.mark.parametrize("spec", specs(), ids=lambda s: f"{s.name}_c{s.cooldown}")
def test_last_point_labels_equal_the_rendered_rule(spec: RuleSpec) -> None:
    prog = last_point_program(spec, spec.params)
    assert prog is not None
    rng = np.random.default_rng(1)
    rows = rows_of(noisy_series(rng, 900), spec.lookback())
    want = reference(spec, rows)
    assert want.any() and not want.all()  # the rule both fires and stays quiet here
    np.testing.assert_array_equal(prog.run(rows), want)
    # wider rows (a rule set's history is its longest rule's): only the last LOOKBACK points count
    wide = rows_of(noisy_series(rng, 900), spec.lookback() + 17)
    np.testing.assert_array_equal(prog.run(wide), reference(spec, wide[:, 17:]))


@pytest.mark.parametrize("positions", [1, 3, 5])
@pytest.mark.parametrize(
    "structure",
    [
        *shapes()[::6],
        Structure("value", "zscore", (("window", 360.0),), "both", 1),
        Structure("diff", "relative", (("window", 127.0),), "both", 1),
        Structure("value", "level_shift", (("recent", 10.0), ("window", 60.0)), "both", 2),
    ],
    ids=lambda s: s.name,
)
def test_last_scores_are_the_template_scores_bit_for_bit(
    structure: Structure, positions: int
) -> None:
    """Not only the labels: the numbers themselves, so that no rounding difference can hide
    behind a threshold the test data happens not to cross."""
    params = dict(structure.params)
    key = ScoreKey(structure.transform, structure.scorer, tuple(params.items()), positions)
    score = compile_score(structure.transform, structure.scorer)
    rng = np.random.default_rng(4)
    rows = rows_of(noisy_series(rng, 700), key.width)
    want = np.array([score(r.copy(), np.arange(len(r)), params)[-positions:] for r in rows])
    got = last_scores(key, rows)
    assert np.isfinite(want).any()
    assert got.tobytes() == want.tobytes()


def test_rules_sharing_a_score_compute_it_once_and_keep_their_own_labels() -> None:
    """Three thresholds of one shape and another shape, evaluated together: each gets what it
    gets alone (the shared score runs once over the stacked rows)."""
    st = Structure("value", "zscore", (("window", 60.0),), "both", 1)
    other = RuleSpec(Structure("diff", "static", (), "up", 2), 1.0, cooldown=2)
    progs = [
        (last_point_program(s, s.params), s)
        for s in (RuleSpec(st, 1.0), RuleSpec(st, 2.0, cooldown=3), RuleSpec(st, 3.0), other)
    ]
    rng = np.random.default_rng(2)
    requests = []
    for i, (prog, _) in enumerate(progs):
        assert prog is not None
        requests.append((prog, rows_of(noisy_series(rng, 300 + 50 * i), 80)))
    assert len({p.score for p, _ in requests}) == 3  # the thresholds share one score
    for (prog, rows), got, (_, spec) in zip(requests, evaluate_last(requests), progs, strict=True):
        np.testing.assert_array_equal(got, prog.run(rows))
        np.testing.assert_array_equal(got, reference(spec, rows[:, 80 - spec.lookback() :]))


@pytest.mark.parametrize(
    "structure",
    [
        Structure("value", "robust_z", (("window", 30.0), ("min_scale", 0.1)), "both", 1),
        Structure("value", "variance_shift", (("recent", 5.0), ("window", 20.0)), "up", 1),
        Structure("value", "cusum", (("window", 10.0), ("drift", 0.5)), "up", 1),
        Structure("seasonal", "zscore", (("period", 5.0), ("cycles", 2.0), ("window", 9.0))),
        Structure("ewma", "static", (("alpha", 0.2),), "both", 1),
    ],
    ids=lambda s: s.name,
)
def test_unsupported_shapes_have_no_last_point_form(structure: Structure) -> None:
    spec = RuleSpec(structure, 2.0)
    assert last_point_program(spec, spec.params) is None
    gated = RuleSpec(
        Structure("value", "zscore", (("window", 9.0),), "up", 1), 2.0, gate=Gate(structure, 1.0)
    )
    assert last_point_program(gated, gated.params) is None


def test_last_point_labels_on_real_kpi_data(kpi_dataset: Dataset) -> None:
    """The shapes the KPI rule sets use, on a real KPI series: the same labels."""
    values = kpi_dataset.series[0].values[:3000]
    for spec in (
        RuleSpec(Structure("value", "zscore", (("window", 360.0),), "both", 1), 3.0, cooldown=11),
        RuleSpec(Structure("diff", "static", (), "both", 2), 0.05),
        RuleSpec(Structure("value", "relative", (("window", 60.0),), "up", 1), 0.2),
        RuleSpec(
            Structure("diff", "static", (), "down", 1),
            0.05,
            gate=Gate(Structure("diff", "zscore", (("window", 30.0),), "both", 1), 2.0),
        ),
    ):
        prog = last_point_program(spec, spec.params)
        assert prog is not None
        rows = rows_of(values, spec.lookback())
        want = reference(spec, rows)
        assert want.any()
        np.testing.assert_array_equal(prog.run(rows), want)
