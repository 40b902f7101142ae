"""The last-point form of a template rule gives, for every window, exactly the label the rendered
rule gives at the window's last point: every supported shape (directions, persistence, gates,
cool-downs), on random data with ties, flat stretches, NaN/inf and large levels, and on real KPI
data, where every rule of the committed KPI rule sets has one; the two shapes without a
last-point form (run length, spectral saliency) have none."""

from __future__ import annotations

import itertools
import pickle
from pathlib import Path

import numpy as np
import pytest

from argos.data.series import Dataset
from argos.rules.artifacts import load_ruleset
from argos.rules.grammar import DIRECTIONS, Direction, Gate, RuleSpec, Structure
from argos.rules.lastpoint import (
    ScoreKey,
    evaluate_last,
    last_point_program,
    last_scores,
    last_scores_together,
)
from argos.rules.recognise import trusted_template
from argos.rules.templates import compile_score, load_rule, render

# windows with NaN and inf on purpose: numpy's "invalid value" warnings are expected, on both sides
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")

SCORER_PARAMS: dict[str, tuple[tuple[str, float], ...]] = {
    "static": (),
    "band": (("center", 0.25),),
    "zscore": (("window", 7.0),),
    "relative": (("window", 12.0),),
    "level_shift": (("recent", 3.0), ("window", 13.0)),
    "variance_shift": (("recent", 4.0), ("window", 11.0)),
    "robust_z": (("window", 8.0), ("min_scale", 0.05)),
    "cusum": (("window", 6.0), ("drift", 0.5)),
}
"""Every supported scorer with small windows (an even robust-z window: its median averages)."""

TRANSFORM_PARAMS: dict[str, tuple[tuple[str, float], ...]] = {
    "value": (),
    "diff": (),
    "seasonal": (("period", 9.0), ("cycles", 3.0)),
    "ewma": (("alpha", 0.3),),
}


def structure(transform: str, scorer: str, direction: Direction = "both", k: int = 1) -> Structure:
    params = TRANSFORM_PARAMS[transform] + SCORER_PARAMS[scorer]
    return Structure(transform, scorer, params, direction, k)


def shapes() -> list[Structure]:
    """Every supported scorer on ``value`` and ``diff``, each direction, persistence 1 and 3;
    the seasonal and EWMA transforms with every scorer, directions and persistence in turn."""
    out = [
        structure(transform, scorer, direction, k)
        for transform, scorer, direction, k in itertools.product(
            ("value", "diff"), SCORER_PARAMS, DIRECTIONS, (1, 3)
        )
    ]
    for i, (transform, scorer) in enumerate(itertools.product(("seasonal", "ewma"), SCORER_PARAMS)):
        out.append(structure(transform, scorer, DIRECTIONS[i % 3], 1 + i % 2 * 2))
    return out


def specs() -> list[RuleSpec]:
    rng = np.random.default_rng(0)
    gate = Gate(Structure("diff", "zscore", (("window", 5.0),), "both", 1), 1.5)
    out = []
    for i, st in enumerate(shapes()):
        thr = float(rng.uniform(0.2, 2.5 if st.persistence == 1 else 0.6))
        if st.scorer == "variance_shift":
            thr /= 3  # a log ratio of spreads
        out.append(RuleSpec(st, thr, cooldown=(0, 1, 4)[i % 3]))
        if i % 4 == 0:
            out.append(RuleSpec(st, thr, cooldown=i % 2 * 3, gate=gate))
    # gates of every transform and scorer
    main = Structure("diff", "static", (), "both", 1)
    for i, (transform, scorer) in enumerate(itertools.product(TRANSFORM_PARAMS, SCORER_PARAMS)):
        g = structure(transform, scorer, DIRECTIONS[(i + 2) % 3])
        thr = 0.3 if scorer == "variance_shift" else 1.0
        out.append(RuleSpec(main, 0.8, cooldown=i % 3, gate=Gate(g, thr)))
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
    # a robust-z gate inside a long LOOKBACK: the rendered rule takes its medians from the sorted
    # windows' ranks (past_median_mad's fast path), the last-point form from np.median
    out.append(
        RuleSpec(
            Structure("value", "zscore", (("window", 90.0),), "both", 1),
            1.0,
            gate=Gate(Structure("value", "robust_z", (("window", 10.0), ("min_scale", 0.0))), 1.0),
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


def noisy_series(rng: np.random.Generator, n: int, holes: bool = False) -> np.ndarray:
    """Noise with spikes, dips, level shifts, flat stretches (zero spread), repeated values and
    a high level (rounding matters there); with ``holes``, NaN and infinite values too."""
    v = rng.normal(0, 1, n)
    v[rng.integers(0, n, n // 20)] += rng.choice([-8, 8], n // 20)
    v[n // 3 :] += 4
    v[n // 8 : n // 8 + 15] -= 9
    v[n // 4 : n // 4 + 15] += rng.choice([-9, 9], 15)
    v[n // 2 : n // 2 + 40] = 2.0
    v[2 * n // 3 :] = np.round(v[2 * n // 3 :], 1)
    v[5 * n // 6 :] += 1e9
    if holes:  # in 60 points a third of the way in: windows with some, and windows with none
        at = n // 3 + rng.permutation(60)
        v[at[:10]] = np.nan
        v[at[10:14]] = np.inf
        v[at[14:18]] = -np.inf
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
    # NaN and infinite values in the window
    holed = rows_of(noisy_series(rng, 600, holes=True), spec.lookback())
    np.testing.assert_array_equal(prog.run(holed), reference(spec, holed))


@pytest.mark.parametrize("positions", [1, 3, 5, 12])
@pytest.mark.parametrize(
    "structure",
    [
        *shapes()[::6],
        *(structure(t, sc) for t in ("seasonal", "ewma") for sc in SCORER_PARAMS),
        Structure("value", "zscore", (("window", 360.0),), "both", 1),
        Structure("diff", "relative", (("window", 127.0),), "both", 1),
        Structure("value", "level_shift", (("recent", 10.0), ("window", 60.0)), "both", 2),
        Structure("value", "variance_shift", (("recent", 30.0), ("window", 360.0)), "up", 1),
        Structure("diff", "robust_z", (("window", 120.0), ("min_scale", 0.0)), "up", 1),
        Structure("value", "cusum", (("window", 120.0), ("drift", 0.5)), "up", 2),
        Structure("ewma", "zscore", (("alpha", 0.05), ("window", 120.0)), "down", 1),
        Structure("seasonal", "zscore", (("period", 144.0), ("cycles", 1.0), ("window", 60.0))),
    ],
    ids=lambda s: s.name,
)
@pytest.mark.parametrize("holes", [False, True], ids=["finite", "holes"])
def test_last_scores_are_the_template_scores_bit_for_bit(
    structure: Structure, positions: int, holes: bool
) -> None:
    """Not only the labels: the numbers themselves, so that no rounding difference can hide
    behind a threshold the test data happens not to cross. Infinities as such, NaN as NaN: numpy
    may give a NaN either sign bit depending on the memory layout of its operands (a NaN of the
    data meeting one made by ``inf - inf``), which no label step reads (comparisons,
    ``np.minimum``, ``abs``, negation and ``nan_to_num`` treat every NaN alike)."""
    params = dict(structure.params)
    key = ScoreKey(structure.transform, structure.scorer, tuple(params.items()), positions)
    score = compile_score(structure.transform, structure.scorer)
    rng = np.random.default_rng(4)
    rows = rows_of(noisy_series(rng, 400 + key.width, holes), key.width)
    want = np.array([score(r.copy(), np.arange(len(r)), params)[-positions:] for r in rows])
    got = last_scores(key, rows)
    assert np.isfinite(want).any()
    assert bits(got) == bits(want)


def bits(a: np.ndarray) -> bytes:
    """The bytes of ``a`` with every NaN made the same NaN."""
    return np.where(np.isnan(a), np.nan, a).tobytes()


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
        Structure("value", "flat", (), "up", 1),
        Structure("diff", "spectral", (("window", 32.0),), "up", 1),
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


KPI_RULES = Path(__file__).resolve().parents[2] / "rules" / "kpi"


def committed_kpi_rules() -> list[tuple[str, RuleSpec, dict[str, object], str]]:
    """(set folder, proved spec, params, code) of every rule of the committed KPI rule sets."""
    out = []
    for manifest in sorted(KPI_RULES.glob("*/manifest.json")):
        rs = load_ruleset(manifest.parent)
        for entry in rs.rules:
            spec = trusted_template(entry, rs.codes[entry.id], max(1, entry.lookback))
            assert spec is not None, (manifest.parent.name, entry.id)
            out.append((manifest.parent.name, spec, dict(entry.params), rs.codes[entry.id]))
    return out


def test_every_committed_kpi_rule_has_a_last_point_form() -> None:
    rules = committed_kpi_rules()
    missing = [
        (s, spec.name) for s, spec, params, _ in rules if not last_point_program(spec, params)
    ]
    assert missing == []
    assert len(rules) >= 53


def test_committed_kpi_rules_label_their_own_series_as_their_last_point_form(
    kpi_dataset: Dataset,
) -> None:
    """Every committed KPI rule on 2,000 windows of its own series around its first labelled
    anomaly in the test part: the last-point labels are the rule's batch labels there, and the
    rule's own label on each window (checked on every window where it alarms and on a sample of
    the others)."""
    series = {s.id: s for s in kpi_dataset.series}
    rng = np.random.default_rng(5)
    fired = 0
    for name, spec, params, code in committed_kpi_rules():
        prog = last_point_program(spec, params)
        assert prog is not None
        s = series[name]
        lookback = spec.lookback()
        ts = int(s.meta["test_start"])
        anomalies = np.nonzero(s.labels[ts:])[0]
        end = ts + (int(anomalies[0]) + 1000 if len(anomalies) else 2000)
        start = max(0, end - 2000 - lookback + 1)
        values, t = s.values[start:end], s.timestamps[start:end]
        detect, _ = load_rule(code)
        batch = np.asarray(detect(values.copy(), t.copy(), dict(params)))[lookback - 1 :]
        rows = rows_of(values, lookback)
        got = prog.run(rows)
        np.testing.assert_array_equal(got, batch, err_msg=f"{name}/{spec.name}")
        check = np.union1d(np.nonzero(got)[0], rng.choice(len(rows), 20, replace=False))
        own = [
            bool(detect(rows[i].copy(), t[i : i + lookback].copy(), dict(params))[-1])
            for i in check
        ]
        np.testing.assert_array_equal(got[check], own, err_msg=f"{name}/{spec.name}")
        fired += bool(got.any())
    assert fired >= 30  # most rules alarm somewhere in these windows


def test_log_rounds_each_element_alone(kpi_dataset: Dataset) -> None:
    """The variance shift's ``np.log``: the same bits for an element whatever its position in
    the array and the array's length (vector loop or scalar tail), on random ratios and on
    ratios of real KPI values."""
    rng = np.random.default_rng(6)
    kpi = np.concatenate([s.values[:2000] for s in kpi_dataset.series[:5]])
    kpi = np.abs(kpi[1:] / np.where(kpi[:-1] == 0, 1.0, kpi[:-1])) + 1e-12
    for x in (np.exp(rng.normal(0, 3, 4001)), rng.uniform(1e-300, 1e-290, 513), kpi):
        whole = np.log(x)
        for offset in range(1, 9):
            assert np.log(x[offset:]).tobytes() == whole[offset:].tobytes()
            assert np.log(x[offset : offset + 7]).tobytes() == whole[offset : offset + 7].tobytes()
        one_by_one = np.array([np.log(np.float64(v)) for v in x[:300]])
        assert one_by_one.tobytes() == whole[:300].tobytes()


def template_scores(key: ScoreKey, rows: np.ndarray) -> np.ndarray:
    """The rendered score at the last ``key.positions`` points of each row."""
    params = dict(key.params)
    score = compile_score(key.transform, key.scorer)
    return np.array(
        [score(r.copy(), np.arange(len(r)), params)[-key.positions :] for r in rows]
    ).reshape(len(rows), key.positions)


def assert_together_is_alone(
    wanted: list[tuple[ScoreKey, np.ndarray]], rendered: bool = True
) -> None:
    """The scores computed together equal each pair's alone, bit for bit (and, with
    ``rendered``, the rendered template's)."""
    together = last_scores_together(wanted)
    assert len(together) == len(wanted)
    for (key, rows), got in zip(wanted, together, strict=True):
        alone = last_scores(key, rows[:, rows.shape[1] - key.width :])
        assert got.shape == (len(rows), key.positions)
        assert bits(got) == bits(alone), key
        if rendered:
            assert bits(got) == bits(template_scores(key, rows[:, rows.shape[1] - key.width :]))


def test_windows_of_every_width_share_one_tree_bit_for_bit() -> None:
    """Z-scores, relative changes and level shifts over windows of every width from 1 to 70
    and a few wide ones (around powers of two, and the KPI rules' 360 and 1,440), a few over
    several positions, and requests of one key on rows of other lengths, all in one call: the
    window statistics share one tree of blocks (or, over 40 positions, the blocks along the
    rows), and each score is the rendered one."""
    rng = np.random.default_rng(7)
    series = noisy_series(rng, 2200), noisy_series(rng, 2200, holes=True)
    wanted = []
    widths = [*range(1, 71), 127, 128, 129, 255, 256, 257, 360, 1023, 1024, 1025, 1440]
    for n, w in enumerate(widths):
        scorer = ("zscore", "relative")[n % 2]
        key = ScoreKey("value", scorer, (("window", float(w)),), 1 + 4 * (n % 9 == 0))
        # rows of other lengths; windows around the holes (NaN, inf) for some
        rows = rows_of(series[w < 200 and n % 4 == 0], key.width + n % 3)
        wanted.append((key, rows[700 - min(w, 700) :: 11][:25]))
    for w in (7, 60, 127):  # many positions: the blocks shared along the rows
        key = ScoreKey("value", "zscore", (("window", float(w)),), 40)
        wanted.append((key, rows_of(series[1], key.width)[500:800:13]))
    level = ScoreKey("diff", "level_shift", (("recent", 3.0), ("window", 30.0)), 1)
    wanted.append((level, rows_of(series[1], level.width)[600:800:5]))
    wanted.append((wanted[5][0], rows_of(series[0], wanted[5][0].width + 7)[:30]))
    assert_together_is_alone(wanted)


def test_robust_z_keys_sharing_medians_keep_their_own_min_scale() -> None:
    """Robust z-scores of one window and transform that differ in ``min_scale`` (their medians
    computed in one call), on flat stretches (a zero MAD: the floor decides), zeros of both
    signs (where a median's zero could be either) and holes; odd and even windows, several
    positions: each the rendered score, bit for bit."""
    rng = np.random.default_rng(8)
    v = noisy_series(rng, 700, holes=True)
    v[400:600] = np.where(rng.random(200) < 0.5, 0.0, -0.0)
    v[450:460] = 1.0
    wanted = []
    for n, (transform, w, min_scale) in enumerate(
        itertools.product(("value", "diff"), (9.0, 120.0), (0.0, 1e-14, 0.11))
    ):
        key = ScoreKey(transform, "robust_z", (("window", w), ("min_scale", min_scale)), 1 + n % 3)
        wanted.append((key, rows_of(v, key.width)[:: 3 + n % 2]))
    assert_together_is_alone(wanted)


def test_seasonal_medians_of_three_are_numpy_s_own() -> None:
    """The seasonal transform over three cycles (the median of three by minimum and maximum):
    the same bits as ``np.median``, zeros of either sign and NaN included; two periods and
    cycle counts of 1 to 4 in one call."""
    rng = np.random.default_rng(9)
    v = noisy_series(rng, 900, holes=True)
    v[::3] = np.where(rng.random(300) < 0.5, 0.0, -0.0)
    wanted = []
    for period, cycles in ((7.0, 3.0), (11.0, 3.0), (5.0, 1.0), (6.0, 2.0), (4.0, 4.0)):
        key = ScoreKey(
            "seasonal", "static", (("period", period), ("cycles", cycles)), 1 + int(cycles)
        )
        wanted.append((key, rows_of(v, key.width)))
    assert_together_is_alone(wanted)


def test_every_shape_together_equals_each_alone() -> None:
    """Every transform and scorer of the shapes above, at one and several positions, with
    requests that share a key, a request with no rows, all in one call."""
    rng = np.random.default_rng(10)
    wanted = []
    for n, st in enumerate(shapes()):
        key = ScoreKey(st.transform, st.scorer, st.params, 1 + 2 * (n % 2))
        rows = rows_of(noisy_series(rng, 200 + key.width, n % 5 == 0), key.width + n % 4)
        wanted.append((key, rows))
        if n % 7 == 0:
            wanted.append((key, rows[: n % 3]))  # the same key again, 0 to 2 rows
        if n % 2 == 0:  # a key of its own with no rows
            empty = ScoreKey(key.transform, key.scorer, key.params, 2)
            wanted.append((empty, np.zeros((0, empty.width + n % 3))))
    assert any(len(rows) == 0 for _, rows in wanted)
    assert_together_is_alone(wanted, rendered=False)
    assert last_scores_together([]) == []


@pytest.mark.parametrize("spec", specs()[::5], ids=lambda s: f"{s.name}_c{s.cooldown}")
def test_requests_with_no_rows_or_alone_get_their_own_labels(spec: RuleSpec) -> None:
    """A request with no rows gets no labels, in a call of its own or among others; a single
    request gets the rendered rule's labels."""
    prog = last_point_program(spec, spec.params)
    assert prog is not None
    rows = rows_of(noisy_series(np.random.default_rng(11), 400), spec.lookback())
    empty = rows[:0]
    assert [len(lab) for lab in evaluate_last([(prog, empty)])] == [0]
    other = RuleSpec(Structure("value", "zscore", (("window", 30.0),), "up", 1), 1.0)
    other_prog = last_point_program(other, other.params)
    assert other_prog is not None
    mixed = evaluate_last(
        [
            (prog, empty),
            (other_prog, rows_of(noisy_series(np.random.default_rng(12), 300), 40)),
            (prog, rows),
        ]
    )
    assert len(mixed[0]) == 0
    np.testing.assert_array_equal(mixed[2], reference(spec, rows))
    np.testing.assert_array_equal(evaluate_last([(prog, rows)])[0], mixed[2])


def test_a_score_key_is_hashed_once_and_pickled_without_its_hash() -> None:
    key = ScoreKey("value", "zscore", (("window", 60),), 1)
    assert hash(key) == hash(ScoreKey("value", "zscore", (("window", 60),), 1))
    assert "_hash" in key.__dict__  # cached on first use
    copy = pickle.loads(pickle.dumps(key))
    # another process hashes strings differently: the copy hashes itself afresh there
    assert "_hash" not in copy.__dict__
    assert copy == key and hash(copy) == hash(key)
