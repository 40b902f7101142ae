"""The detector's load-time checks of a rule set, and the alarm-rate guard's thresholds.

* **Stream-exactness** (:func:`stream_exactness`): a deterministic synthetic sample
  (:func:`verification_sample`) streamed in irregular micro-batches through the serving engine
  must give, rule by rule, the labels of one batch run. The batch run goes through a
  *reference* engine of fresh processes when there is one, so no rule process that is
  streamed has seen the batch answers (a rule that caches labels across calls cannot replay
  them). The batch run's alarm rates are the rules' baselines for the guard.
* **Packing** (:func:`packable_rules`): three unlike samples streamed together with packing on
  must each give its own batch labels.
* **Alarm-rate guard** (:class:`AlarmRateGuard`): when a rule's alarm rate in a window of
  streamed points counts as an alert storm; :class:`argos.online.detector.Detector` applies it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from argos._types import BoolArray, FloatArray, IntArray
from argos.sandbox.kernel import RuleEngine

VERIFY_SERIES = "\x00argos-stream-exactness-check"
"""The private series id of the checks (clients cannot send control characters)."""


@dataclass(frozen=True)
class AlarmRateGuard:
    """When a rule's alarm rate counts as an alert storm (then the rule is quarantined).

    Streamed points of the set are counted in windows of ``window`` points (all series
    together); at the end of a window, a rule that fired on more than
    ``min(ceiling, max(floor, factor * baseline))`` of them is quarantined, where ``baseline``
    is its alarm rate on the verification sample at load time (0 when the set was not
    verified). Defaults: 2,000 points, 20x, at least 20%, at most 90%: a rule that fired on 1%
    of the sample is stopped above 20% of the stream, one that fired on 3% above 60%. Batch
    requests (``detect_arrays``) are not counted. An operator releases a quarantined rule by
    reloading its set (``POST /v1/rulesets/reload?force=true``, or restarting the process).
    """

    window: int = 2000
    factor: float = 20.0
    floor: float = 0.2
    ceiling: float = 0.9

    def threshold(self, baseline: float) -> float:
        """The alarm rate above which a rule with this verification rate is quarantined."""
        return min(self.ceiling, max(self.floor, self.factor * baseline))


@dataclass(frozen=True)
class StreamExactness:
    """Result of the finite-lookback check of one rule."""

    rule_id: str
    exact: bool
    detail: str
    packed: bool = False


def verification_sample(n: int = 1500, seed: int = 7) -> tuple[IntArray, FloatArray]:
    """A deterministic synthetic metric that exercises typical rules (no labels involved).

    Daily seasonality, noise, spikes, a level shift, a flat stretch, a variance burst and a
    stretch of dense spikes and a stretch of exponential growth (alarms a few points apart or
    on every point, which exposes rules whose label depends on their own earlier alarms, like an
    in-rule cool-down), at 60 s.
    """
    rng = np.random.default_rng(seed)
    i = np.arange(n)
    v = 50 + 10 * np.sin(2 * np.pi * i / 288) + rng.normal(0, 1.0, n)
    v[rng.choice(n, size=max(1, n // 100), replace=False)] += rng.choice([-1, 1]) * 25
    v[n // 2 :] += 15
    v[n // 3 : n // 3 + 80] = v[n // 3]
    v[2 * n // 3 : 2 * n // 3 + 60] += rng.normal(0, 8, 60)
    dense = 5 * n // 6 + np.cumsum(rng.integers(2, 7, size=max(1, n // 40)))
    dense = dense[dense < n]
    v[dense] += rng.choice([-1.0, 1.0], size=len(dense)) * rng.uniform(10, 40, size=len(dense))
    # exponential growth: a long run of consecutive alarms for most scores (alarm chains)
    g0, g1 = n // 12, n // 12 + max(1, n // 10)
    v[g0:g1] = v[g0] * 1.015 ** np.arange(1, g1 - g0 + 1)
    t = 1_700_000_000 + 60 * i.astype(np.int64)
    return t.astype(np.int64), v.astype(np.float64)


def _chunk_sizes(n: int, seed: int = 11) -> list[int]:
    """Irregular micro-batch sizes covering ``n`` points (many 1-point pushes, some large)."""
    rng = np.random.default_rng(seed)
    sizes: list[int] = []
    total = 0
    while total < n:
        s = int(rng.choice([1, 1, 1, 2, 3, 7, 16, 61, 200]))
        s = min(s, n - total)
        sizes.append(s)
        total += s
    return sizes


def stream_exactness(
    engine: RuleEngine,
    reference: RuleEngine,
    rule_ids: Sequence[str],
    timestamps: IntArray,
    values: FloatArray,
) -> tuple[dict[str, StreamExactness], dict[str, float]]:
    """Stream a sample in irregular micro-batches through ``engine`` and compare with one batch
    run through ``reference``, per rule; also each rule's alarm rate in the batch run.

    The stream runs on :data:`VERIFY_SERIES`, forgotten before and after. The caller holds
    whatever lock serialises pushes to ``engine``.
    """
    full = reference.batch([(timestamps, values)])
    baseline = {
        rid: float(full.labels[0][r].mean()) if len(values) else 0.0
        for r, rid in enumerate(rule_ids)
    }
    streamed: list[BoolArray] = []
    errors: dict[str, str] = {e.rule_id: e.message for e in full.errors}
    a = 0
    engine.forget([VERIFY_SERIES])
    try:
        for s in _chunk_sizes(len(values)):
            res = engine.push([(VERIFY_SERIES, timestamps[a : a + s], values[a : a + s])])
            for e in res.errors:
                errors.setdefault(e.rule_id, e.message)
            streamed.append(res.labels[0])
            a += s
    finally:
        engine.forget([VERIFY_SERIES])
    stream = np.concatenate(streamed, axis=1)
    out: dict[str, StreamExactness] = {}
    for r, rid in enumerate(rule_ids):
        if rid in errors:
            out[rid] = StreamExactness(rid, False, f"rule failed on the check: {errors[rid]}")
            continue
        diff = np.flatnonzero(stream[r] != full.labels[0][r])
        if diff.size:
            i = int(diff[0])
            out[rid] = StreamExactness(
                rid,
                False,
                f"{diff.size} of {len(values)} labels differ between streaming (last "
                f"LOOKBACK points) and batch; first at index {i}: batch "
                f"{bool(full.labels[0][r][i])}, stream {bool(stream[r][i])}. The label depends "
                "on points older than LOOKBACK (or on the input's length/position)",
            )
        else:
            out[rid] = StreamExactness(rid, True, "streamed labels equal batch labels")
    return out, baseline


def packable_rules(
    engine: RuleEngine,
    reference: RuleEngine,
    rule_ids: Sequence[str],
    candidates: Sequence[str],
) -> set[str]:
    """Which of the ``candidates`` (stream-exact rules) give the same labels when run once over
    the concatenated windows of several series.

    Streams three samples at once through ``engine`` in irregular micro-batches (different
    levels, sampling intervals and timestamp origins; one joins late, so short and full
    histories mix) with packing enabled, and compares each series with its own batch run through
    ``reference``. Packing is switched off again afterwards; the caller enables the result.
    """
    t1, v1 = verification_sample(900, seed=21)
    t2, v2 = verification_sample(700, seed=22)
    t2 = 10_000 + 300 * np.arange(len(v2), dtype=np.int64)
    v2 = v2 * 100.0 - 3000.0
    t3, v3 = verification_sample(500, seed=23)
    v3 = v3 * 0.01
    samples = {"a": (t1, v1, 0), "b": (t2, v2, 0), "c": (t3, v3, 20)}
    names = {k: f"{VERIFY_SERIES}/{k}" for k in samples}
    expected = {k: reference.batch([(t, v)]).labels[0] for k, (t, v, _) in samples.items()}
    got: dict[str, list[BoolArray]] = {k: [] for k in samples}
    pos = {k: 0 for k in samples}
    rng = np.random.default_rng(5)
    failed: set[str] = set()
    engine.set_packed(list(candidates))
    engine.forget(list(names.values()))
    try:
        step = 0
        while any(pos[k] < len(v) for k, (_, v, _) in samples.items()):
            items = []
            for k, (t, v, start) in samples.items():
                if step < start or pos[k] >= len(v):
                    continue
                c = int(rng.choice([1, 1, 2, 5, 30, 61]))
                a = pos[k]
                items.append((k, t[a : a + c], v[a : a + c]))
                pos[k] = min(len(v), a + c)
            step += 1
            if not items:
                continue
            res = engine.push([(names[k], t, v) for k, t, v in items])
            failed.update(e.rule_id for e in res.errors)
            for (k, _, _), lab in zip(items, res.labels, strict=True):
                got[k].append(lab)
    finally:
        engine.forget(list(names.values()))
        engine.set_packed([])
    ok: set[str] = set()
    for r, rid in enumerate(rule_ids):
        if rid not in candidates or rid in failed:
            continue
        if all(np.array_equal(np.concatenate(got[k], axis=1)[r], expected[k][r]) for k in samples):
            ok.add(rid)
    return ok
