"""The blocks of the wide windows kept per series between pushes (:mod:`argos.rules.keptblocks`):
a stream of pushes through the kernel gives the same scores, bit for bit, and the same labels with
them as without them (every wide window then summed from its points by the tree), on random data
(NaN and infinities, zeros of both signs, flat stretches, a 1e9 level) and on real KPI data
through every committed KPI rule; and every history change that is not one point appended to a
series (a seed, several points at once, a forget that moves another series into the row, a
series absent from a push, a push that failed while writing them) makes that series' blocks
rebuilt, not advanced."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import argos.rules.keptblocks as keptblocks
import argos.rules.lastpoint as lastpoint
from argos.data.series import Dataset
from argos.rules.artifacts import load_ruleset
from argos.rules.grammar import Gate, RuleSpec, Structure
from argos.rules.keptblocks import BlockCache, KeptRequest, SeriesRows, kept_stats
from argos.rules.templates import render
from argos.sandbox.kernel import RuleCode, RuleKernel, SeriesBatch, push_together

# windows with NaN and inf on purpose: numpy's "invalid value" warnings are expected, on both sides
pytestmark = [
    pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning"),
    pytest.mark.timeout(300),
]

KPI_RULES = Path(__file__).resolve().parents[2] / "rules" / "kpi"


def spec(transform: str, scorer: str, threshold: float, **params: float) -> RuleSpec:
    return RuleSpec(Structure(transform, scorer, tuple(params.items()), "both", 1), threshold)


WIDE = [
    spec("value", "zscore", 1.5, window=200.0),  # blocks of 128 + 64 + 8 points
    spec("value", "zscore", 2.5, window=200.0),  # the same score, another threshold
    spec("diff", "zscore", 1.5, window=130.0),
    spec("seasonal", "zscore", 1.5, period=7.0, cycles=3.0, window=129.0),  # a 1-point block
    spec("ewma", "zscore", 1.5, alpha=0.3, window=150.0),
    spec("value", "relative", 0.2, window=257.0),
    spec("value", "level_shift", 1.0, recent=3.0, window=140.0),  # 3 points before it
    spec("value", "variance_shift", 0.1, recent=130.0, window=160.0),  # a wide recent window
    spec("value", "cusum", 2.0, window=130.0, drift=0.5),
    RuleSpec(
        Structure("diff", "static", (), "both", 1),
        0.5,
        gate=Gate(Structure("value", "zscore", (("window", 128.0),), "up", 1), 0.5),
    ),
    RuleSpec(Structure("value", "zscore", (("window", 300.0),), "both", 3), 0.5, cooldown=2),
]
"""Wide windows of every transform, digits of 1 point to 256, lags of 0 to 130, a gate, a
persistence and a cool-down; rules sharing a score."""


def codes(specs: Sequence[RuleSpec]) -> list[RuleCode]:
    """The rendered rules (ids as the templates name them: two thresholds of a shape share one)."""
    return [RuleCode(s.name, render(s), s.params, s.lookback()) for s in specs]


def noisy(rng: np.random.Generator, n: int) -> np.ndarray:
    """Noise with spikes, a level shift, a flat stretch, rounding, zeros of both signs, a 1e9
    level, and NaN and infinite values in a few places."""
    v = rng.normal(0, 1, n)
    v[rng.integers(0, n, n // 20)] += rng.choice([-8, 8], n // 20)
    v[n // 3 :] += 4
    v[n // 2 : n // 2 + 150] = 2.0
    v[n // 5 : n // 5 + 60] = rng.choice([0.0, -0.0], 60)
    v[2 * n // 3 :] = np.round(v[2 * n // 3 :], 1)
    v[5 * n // 6 :] += 1e9
    at = rng.choice(n, 12, replace=False)
    v[at[:6]] = np.nan
    v[at[6:9]] = np.inf
    v[at[9:]] = -np.inf
    return v


REAL_SCORES, REAL_REBUILD = lastpoint._scores_of, keptblocks._rebuild
"""The functions the runs spy on (each run patches them anew)."""

Step = Callable[[list[RuleKernel], int], Any]
"""Something done to the kernels before push ``i`` (a seed, a forget), or nothing."""


def run(
    kernels: list[RuleKernel],
    data: list[dict[str, np.ndarray]],
    start: int,
    pushes: int,
    keep: bool,
    monkeypatch: pytest.MonkeyPatch,
    before: Step | None = None,
    absent: Callable[[int, str], bool] = lambda i, s: False,
) -> tuple[list[list[bytes]], list[bytes], list[int]]:
    """Seed every series with its first ``start`` points, then push one point per series
    ``pushes`` times (all kernels together; point ``i`` at time ``10 * i``): every score the
    last-point forms computed (bits, NaN made one NaN), every push's labels, and the rows
    rebuilt at each push."""
    if not keep:
        monkeypatch.setattr(lastpoint, "KEEP_MIN_WIDTH", 10**9)
    scores: list[list[bytes]] = []
    rebuilt: list[int] = [0]
    real_scores, real_rebuild = REAL_SCORES, REAL_REBUILD

    def spy_scores(*args: Any) -> list[np.ndarray]:
        out = real_scores(*args)
        scores[-1].extend(np.where(np.isnan(s), np.nan, s).tobytes() for s in out)
        return out

    def spy_rebuild(group: Any, rows: np.ndarray) -> None:
        rebuilt[-1] += len(rows)
        real_rebuild(group, rows)

    monkeypatch.setattr(lastpoint, "_scores_of", spy_scores)
    monkeypatch.setattr(keptblocks, "_rebuild", spy_rebuild)
    for kernel, series in zip(kernels, data, strict=True):
        for name, v in series.items():
            kernel.seed(name, 10 * np.arange(start, dtype=np.int64), v[:start])
    labels = []
    per_push = []
    for i in range(start, start + pushes):
        scores.append([])
        rebuilt.append(0)
        if before is not None:
            before(kernels, i)
        batches = []
        for kernel, series in zip(kernels, data, strict=True):
            names = [s for s in series if not absent(i, s)]
            t = np.full(len(names), 10 * i, dtype=np.int64)
            v = np.array([series[s][i] for s in names])
            batches.append((kernel, SeriesBatch(names, t, v, range(len(names) + 1))))
        for res in push_together(batches):
            assert res.errors == []
            labels.append(res.all_labels().tobytes())
        per_push.append(rebuilt[-1])
    return scores, labels, per_push


def wide_kernels(seed: int) -> tuple[list[RuleKernel], list[dict[str, np.ndarray]]]:
    """Two kernels (rule sets) sharing some scores, 9 and 7 series of random data."""
    rng = np.random.default_rng(seed)
    sets = [WIDE, [WIDE[0], WIDE[2], WIDE[5], spec("value", "zscore", 1.0, window=1030.0)]]
    kernels = [RuleKernel(codes(s), last_point=True) for s in sets]
    for k in kernels:
        assert all(p is not None for p in k.programs)
    data = [
        {f"a{j}": noisy(rng, 1600) for j in range(9)},
        {f"b{j}": noisy(rng, 1600) for j in range(7)},
    ]
    return kernels, data


def compare(
    monkeypatch: pytest.MonkeyPatch, pushes: int = 40, **how: Any
) -> tuple[list[int], list[int]]:
    """The stream with and without the kept blocks: the same scores and labels; the rows
    rebuilt at each push (with, then without: none)."""
    got = run(*wide_kernels(7), 1100, pushes, True, monkeypatch, **how)
    want = run(*wide_kernels(7), 1100, pushes, False, monkeypatch, **how)
    assert got[0] == want[0]  # every score, bit for bit
    assert got[1] == want[1]  # every label
    assert sum(sum(map(len, s)) for s in got[0]) > 0
    return got[2], want[2]


def test_a_steady_stream_advances_the_blocks_and_equals_the_tree(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Built at the first push, then advanced; after the first push, the scores whose kept
    windows all advance read their rows' newest values only (``warm``)."""
    warm: list[int] = []
    real = lastpoint.kept_stats

    def spy(requests: Sequence[KeptRequest]) -> list[tuple[np.ndarray, np.ndarray]]:
        warm.append(sum(r.warm and r.x.shape[1] < r.width for r in requests))
        return real(requests)

    monkeypatch.setattr(lastpoint, "kept_stats", spy)
    rebuilt, without = compare(monkeypatch)
    assert warm[0] == 0 and min(warm[1:40]) >= 10
    assert rebuilt[0] > 0 and rebuilt[1:] == [0] * (len(rebuilt) - 1)  # built once, then kept
    assert without == [0] * len(without)


def test_a_seeded_series_is_rebuilt(monkeypatch: pytest.MonkeyPatch) -> None:
    """A seed (a fill, a state import) replaces a series' history in its row."""
    other = np.random.default_rng(3).normal(5, 2, 1600)

    def seed(kernels: list[RuleKernel], i: int) -> None:
        if i == 1110:
            kernels[0].seed("a3", 10 * np.arange(i, dtype=np.int64), other[:i])

    rebuilt, _ = compare(monkeypatch, before=seed)
    assert rebuilt[10] > 0 and rebuilt[11:] == [0] * (len(rebuilt) - 11)


def test_several_points_at_once_rebuild_the_series(monkeypatch: pytest.MonkeyPatch) -> None:
    """Points pushed outside a scrape's one point per series (here, two points for one series
    between two scrapes) go through the history's replacement."""
    extra = np.random.default_rng(4).normal(0, 3, 2)

    def two_points(kernels: list[RuleKernel], i: int) -> None:
        if i == 1110:
            t = np.array([10 * i - 7, 10 * i - 3], dtype=np.int64)
            kernels[1].push([("b2", t, extra)])

    rebuilt, _ = compare(monkeypatch, before=two_points)
    assert rebuilt[10] > 0 and rebuilt[11:] == [0] * (len(rebuilt) - 11)


def test_a_forgotten_series_moves_another_into_its_row(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forgetting a series moves the last row's series into its row: that series' blocks are
    another row's, so it is rebuilt."""

    def forget(kernels: list[RuleKernel], i: int) -> None:
        if i == 1110:
            kernels[0].forget(["a2"])

    rebuilt, _ = compare(monkeypatch, before=forget, absent=lambda i, s: s == "a2" and i >= 1110)
    assert rebuilt[10] > 0 and rebuilt[11:] == [0] * (len(rebuilt) - 11)


def test_a_series_absent_from_a_push_is_rebuilt_when_it_returns(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its history did not change, but the rings moved on without it (a late or dropped
    point)."""
    rebuilt, _ = compare(monkeypatch, absent=lambda i, s: s in ("a5", "b0") and i == 1120)
    assert rebuilt[20] == 0 and rebuilt[21] > 0 and rebuilt[22:] == [0] * (len(rebuilt) - 22)


def test_a_new_kernel_starts_with_no_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """A reload (a new rule set version) is a new kernel with its own history and blocks."""
    kernels, data = wide_kernels(7)
    _, _, rebuilt = run(kernels, data, 1100, 3, True, monkeypatch)
    assert rebuilt[0] > 0 and rebuilt[1:] == [0, 0]
    fresh = [RuleKernel(k.rules, last_point=True) for k in kernels]
    _, _, again = run(fresh, data, 1200, 2, True, monkeypatch)
    assert again[0] == rebuilt[0] and again[1] == 0


def test_parts_with_other_rows_of_one_store_read_their_union(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two parts reading one kept window at overlapping, unordered rows (not a kernel's push,
    where every request has the same rows): each row advanced once a push, each part gets its
    own rows' numbers, the tree's."""
    rebuilt: list[int] = []
    monkeypatch.setattr(
        keptblocks, "_rebuild", lambda g, rows: (rebuilt.append(len(rows)), REAL_REBUILD(g, rows))
    )
    rng = np.random.default_rng(9)
    cache = BlockCache()
    values = rng.normal(0, 1, (12, 700))
    values[4, 500:] += 1e9
    stamps = np.arange(12, dtype=np.int64) << 40
    one = np.array([3, 0, 7, 5], dtype=np.int64)
    two = np.array([5, 11, 2, 9, 3], dtype=np.int64)
    for end in range(400, 460):
        stamps += 1
        parts = (SeriesRows(cache, one, stamps[one]), SeriesRows(cache, two, stamps[two]))
        x = values[np.concatenate((one, two)), end - 301 : end]
        (got,) = kept_stats([KeptRequest(("value", ()), 300, 1, x, parts)])
        (want,) = lastpoint._tree_stats([x[:, None, :300]])
        assert got[0].tobytes() == want[0].tobytes()
        assert got[1].tobytes() == want[1].tobytes()
    assert rebuilt == [7]  # the 7 distinct rows, once


def kpi_kernels(kpi_dataset: Dataset) -> tuple[list[RuleKernel], list[dict[str, np.ndarray]]]:
    """Every committed KPI rule set, each on its own series and two others."""
    series = {s.id: s for s in kpi_dataset.series}
    names = sorted(series)
    kernels, data = [], []
    for i, folder in enumerate(sorted(p for p in KPI_RULES.iterdir() if p.is_dir())):
        rs = load_ruleset(folder)
        rules = [
            RuleCode(e.id, rs.codes[e.id], dict(e.params), max(1, e.lookback))
            for e in rs.rules
            if e.status == "accepted"
        ]
        kernel = RuleKernel(rules, last_point=True)
        assert all(p is not None for p in kernel.programs)
        kernels.append(kernel)
        own = [folder.name, names[(i + 3) % len(names)], names[(i + 11) % len(names)]]
        data.append({f"{s}/{j}": series[s].values for j, s in enumerate(own)})
    return kernels, data


def test_committed_kpi_rules_stream_equals_the_tree(
    kpi_dataset: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every committed KPI rule set on its own series and two others, 25 pushes from point
    6,000 (each series' own values, with its own history)."""
    got = run(*kpi_kernels(kpi_dataset), 6000, 25, True, monkeypatch)
    want = run(*kpi_kernels(kpi_dataset), 6000, 25, False, monkeypatch)
    assert got[0] == want[0]
    assert got[1] == want[1]
    assert got[2][0] > 0 and got[2][1:] == [0] * 24


def test_a_push_that_fails_while_writing_leaves_no_block_in_use(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A push whose evaluation fails after writing some kept windows' new blocks and not others
    (the kernel then runs the rules themselves): no block of that push is trusted after it."""
    armed: list[int] = []
    real_write = keptblocks._Group.write

    def write(group: Any, at: np.ndarray, values: np.ndarray, rows: Any) -> None:
        if armed:
            armed[0] += 1
            if armed[0] == 2:
                armed.clear()
                raise MemoryError("while writing")
        real_write(group, at, values, rows)

    monkeypatch.setattr(keptblocks._Group, "write", write)

    def arm(kernels: list[RuleKernel], i: int) -> None:
        if i == 1110:
            armed.append(0)

    got = run(*wide_kernels(7), 1100, 20, True, monkeypatch, before=arm)
    assert "last-point evaluation failed" in caplog.text
    want = run(*wide_kernels(7), 1100, 20, False, monkeypatch)
    assert got[1] == want[1]  # the failed push labelled by the rules' own code
    assert got[0][:10] == want[0][:10] and got[0][11:] == want[0][11:]
    assert got[2][11] > 0 and got[2][12:] == [0] * 8
