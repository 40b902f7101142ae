"""Translate a builtin template rule (:class:`~argos.rules.grammar.RuleSpec`) into PromQL.

The Python rule works on the points of a series in order: windows of N points, ``N`` points ago.
Prometheus works on time. The two agree when the metric has exactly one sample per rule
evaluation, every ``step``; so the translation rests on one recording rule per rule set,
``argos:<set>:value`` (the user's selector), evaluated every ``step`` (the group's ``interval``),
and every later expression reads *recorded* series only:

- "the N points ending ``lag`` points before t" is the range ``X[(N - 1/2) * step] offset lag*step``
  over a recorded series: its samples are the evaluations themselves, exactly ``step`` apart, so
  the half step of margin catches exactly N of them, whatever the evaluation's phase against the
  scrapes (a subquery's points are aligned to multiples of its step instead, so how many fall in
  its range depends on that phase, and range selectors on the raw metric depend on the scrapes'
  phase: neither would be exact);
- a window statistic exists only once the window's oldest point does (``and x offset
  (N - 1 + lag)*step``; with no gaps, all N points then exist), like the helpers' NaN warm-up;
- "the value ``k`` points ago" is ``offset k*step``.

What each template becomes:

- transforms (recorded, shared by the set's rules): ``value`` is the selector; ``diff`` is
  ``v - v offset step`` (0 at the first point, as in Python); ``seasonal`` is ``v`` minus the
  median of the same slot 1..3 periods ago (one slot: the value; two: their mean; three: the
  middle one, chosen by comparisons, so exact); ``ewma`` is ``v`` minus the same truncated,
  normalised weights times ``v offset k*step``;
- window statistics (recorded, shared): ``avg_over_time`` and ``stddev_over_time``, both the
  population statistics the templates compute;
- scores (recorded per rule): static, band, z-score, relative change, level shift and variance
  shift, with the templates' scale floor ``max(scale, 1e-9 * (1 + |level|))`` written as
  ``(scale >= floor) or floor``; the stuck-value run length needs no score: ``changes(...) == 0``
  over the last ``ceil(threshold)`` points;
- direction: ``s >= thr``, ``-s >= thr``, ``abs(s) >= thr`` (NaN never fires, as in Python);
- persistence k: ``for: (k-1)*step`` when the rule has neither gate nor cool-down (the alert fires
  at the k-th consecutive evaluation), else ``count_over_time(hit[(k - 1/2) * step]) == k``;
- gate: ``and`` with the gate's own condition at the same evaluation;
- cool-down q: the combined condition is recorded and the alert is
  ``cond unless count_over_time(cond[(q - 1/2) * step] offset step)``.

Not translatable (:func:`untranslatable`): the robust z-score (the MAD of a window is a median of
deviations from *that window's* median; PromQL range functions cannot refer to the evaluation's
median), CUSUM (the largest sum of z-scores over the suffixes of a window, each against its own
rolling mean), spectral-residual saliency (an FFT per window) and seasonal medians of more than
three slots.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from argos.rules.grammar import Direction, RuleSpec, Structure

SCALE_FLOOR = 1e-9
"""The templates' ``floor_scale`` factor: a scale is at least ``1e-9 * (1 + |level|)``."""

UNTRANSLATABLE_SCORERS: dict[str, str] = {
    "robust_z": (
        "robust z-score: its MAD is the median of the window's deviations from that window's "
        "own median; PromQL's range functions cannot refer to the median at the evaluation time "
        "(a trailing median alone would be quantile_over_time, the MAD is not)"
    ),
    "cusum": (
        "CUSUM: the largest of the sums of the last 1..w z-scores, each z-score against its own "
        "rolling mean and std; PromQL's range functions cannot take a maximum over suffix sums "
        "of a derived series"
    ),
    "spectral": (
        "spectral-residual saliency: an FFT, a log-spectrum smoothing and an inverse FFT of every "
        "window, which PromQL has no function for"
    ),
}
MAX_SEASONAL_CYCLES = 3


def untranslatable(spec: RuleSpec) -> str | None:
    """Why ``spec`` has no exact PromQL translation, or ``None`` when it has one."""
    for st in (spec.structure, *((spec.gate.structure,) if spec.gate else ())):
        reason = UNTRANSLATABLE_SCORERS.get(st.scorer)
        if reason is not None:
            return reason
        if st.transform == "seasonal" and int(st.param_dict["cycles"]) > MAX_SEASONAL_CYCLES:
            return (
                f"seasonal residual over {int(st.param_dict['cycles'])} periods: the median of "
                f"more than {MAX_SEASONAL_CYCLES} slots has no exact PromQL form here"
            )
    return None


def duration(ms: int) -> str:
    """A Prometheus duration for ``ms`` milliseconds (``1h``, ``29m30s``, ``500ms``)."""
    if ms <= 0:
        return "0s"
    out = ""
    for unit, size in (("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)):
        if ms >= size:
            out += f"{ms // size}{unit}"
            ms %= size
    return out


def number(v: float) -> str:
    """A PromQL number literal that parses back to exactly ``v``."""
    v = float(v)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "Inf" if v > 0 else "-Inf"
    if v.is_integer() and abs(v) < 1e15:
        return str(int(v))
    return repr(v)


def metric_part(text: str) -> str:
    """``text`` as a piece of a metric name (letters, digits, underscores)."""
    part = re.sub(r"[^A-Za-z0-9_]", "_", text)
    return part if part and not part[0].isdigit() else f"_{part}"


@dataclass(frozen=True)
class PromRule:
    """One Prometheus rule: a recording rule (``record``) or an alerting rule (``alert``)."""

    expr: str
    record: str = ""
    alert: str = ""
    for_ms: int = 0
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)


def _floor(scale: str, level: str) -> str:
    floor = f"({number(SCALE_FLOOR)} * (1 + abs({level})))"
    return f"(({scale} >= {floor}) or {floor})"


def _vmin(a: str, b: str) -> str:
    """Element-wise min (exists where ``b`` exists; ``a`` must exist there too)."""
    return f"(({a} <= {b}) or {b})"


def _vmax(a: str, b: str) -> str:
    return f"(({a} >= {b}) or {b})"


class SetTranslator:
    """Builds the recording and alerting rules of one rule set, sharing transforms and statistics.

    ``prefix`` starts every recorded name (``argos:<set>``); ``step_ms`` is the sampling step.
    Call :meth:`add_rule` per rule, then read :attr:`rules` (in evaluation order: a rule only reads
    series recorded before it in the group).
    """

    def __init__(self, prefix: str, selector: str, step_ms: int) -> None:
        if step_ms <= 0:
            raise ValueError("the step must be positive")
        self.prefix = prefix
        self.step_ms = step_ms
        self.value = f"{prefix}:value"
        self.shared: dict[str, str] = {self.value: selector}
        self.own: list[PromRule] = []

    # -- time ------------------------------------------------------------------------------------
    def _offset(self, points: int) -> str:
        return f" offset {duration(points * self.step_ms)}" if points else ""

    def _range(self, series: str, points: int, lag: int) -> str:
        """The ``points`` samples of ``series`` ending ``lag`` evaluations before now."""
        return f"{series}[{duration(points * self.step_ms - self.step_ms // 2)}]{self._offset(lag)}"

    def _record(self, name: str, expr: str) -> str:
        old = self.shared.setdefault(name, expr)
        if old != expr:  # pragma: no cover - names encode every parameter of the expression
            raise ValueError(f"two expressions for {name}")
        return name

    # -- transforms ------------------------------------------------------------------------------
    def transform(self, st: Structure) -> str:
        """The recorded signal ``x`` of ``st``'s transform."""
        v = self.value
        p = st.param_dict
        if st.transform == "value":
            return v
        if st.transform == "diff":
            return self._record(f"{self.prefix}:diff", f"({v} - {v}{self._offset(1)}) or ({v} * 0)")
        if st.transform == "seasonal":
            period, cycles = int(p["period"]), int(p["cycles"])
            slots = [f"{v}{self._offset(period * k)}" for k in range(1, cycles + 1)]
            if cycles == 1:
                median = slots[0]
            elif cycles == 2:
                median = f"(({slots[0]} + {slots[1]}) / 2)"
            elif cycles == 3:
                a, b, c = slots
                median = _vmax(_vmin(a, b), _vmin(_vmax(a, b), c))
            else:
                raise ValueError(f"no exact median of {cycles} slots")
            name = f"{self.prefix}:seasonal_p{period}_c{cycles}"
            return self._record(name, f"{v} - {median}")
        if st.transform == "ewma":
            alpha = float(p["alpha"])
            span = max(1, math.ceil(math.log(1e-3) / math.log(1.0 - alpha)))
            weights = alpha * (1.0 - alpha) ** np.arange(span)
            weights /= weights.sum()
            terms = " + ".join(
                f"{number(float(w))} * {v}{self._offset(j + 1)}" for j, w in enumerate(weights)
            )
            name = f"{self.prefix}:ewma_a{metric_part(number(alpha))}"
            return self._record(name, f"{v} - ({terms})")
        raise ValueError(f"unknown transform {st.transform!r}")

    # -- window statistics -----------------------------------------------------------------------
    def _stat(self, x: str, fn: str, width: int, lag: int) -> str:
        short = {"avg_over_time": "avg", "stddev_over_time": "stddev"}[fn]
        # the window's oldest point exists (so, with no gaps, all of them): the NaN warm-up
        expr = f"{fn}({self._range(x, width, lag)}) and {x}{self._offset(width - 1 + lag)}"
        return self._record(f"{x}:{short}{width}_lag{lag}", expr)

    def mean(self, x: str, width: int, lag: int) -> str:
        """Recorded mean of the ``width`` points of ``x`` ending ``lag`` points before t."""
        return self._stat(x, "avg_over_time", width, lag)

    def std(self, x: str, width: int, lag: int) -> str:
        """Recorded population standard deviation of the same window."""
        return self._stat(x, "stddev_over_time", width, lag)

    # -- scores ----------------------------------------------------------------------------------
    def score(self, st: Structure) -> str:
        """The expression of ``st``'s score ``s`` (not for ``flat``, which has its own hit)."""
        x = self.transform(st)
        p = st.param_dict
        sc = st.scorer
        if sc == "static":
            return x
        if sc == "band":
            return f"{x} - {number(p['center'])}"
        if sc == "zscore":
            w = int(p["window"])
            m, s = self.mean(x, w, 1), self.std(x, w, 1)
            return f"({x} - {m}) / {_floor(s, m)}"
        if sc == "relative":
            w = int(p["window"])
            m = self.mean(x, w, 1)
            return f"({x} - {m}) / {_floor(f'abs({m})', m)}"
        if sc in ("level_shift", "variance_shift"):
            r, w = int(p["recent"]), int(p["window"])
            before, spread = self.mean(x, w, r), self.std(x, w, r)
            if sc == "level_shift":
                recent = self.mean(x, r, 0)
                return f"({recent} - {before}) / {_floor(spread, before)}"
            recent = self.std(x, r, 0)
            return f"ln({_floor(recent, before)} / {_floor(spread, before)})"
        raise ValueError(f"scorer {sc!r} has no PromQL translation")

    def hit(self, st: Structure, threshold: float, name: str) -> str:
        """A recorded series present exactly where the directional score reaches ``threshold``
        (one point, before persistence); ``name`` is the rule's recorded-name stem."""
        if st.scorer == "flat":
            x = self.transform(st)
            run = max(1, math.ceil(threshold))
            rng = self._range(x, run, 0)
            expr = f"{x} and (changes({rng}) == 0) and (count_over_time({rng}) == {run})"
            return self._own_record(f"{name}:hit", expr)
        score = self._own_record(f"{name}:score", self.score(st))
        return self._own_record(f"{name}:hit", directional(score, st.direction, threshold))

    def _own_record(self, name: str, expr: str) -> str:
        self.own.append(PromRule(expr, record=name))
        return name

    # -- a whole rule ----------------------------------------------------------------------------
    def add_rule(
        self,
        spec: RuleSpec,
        name: str,
        alert: str,
        labels: Mapping[str, str],
        annotations: Mapping[str, str],
    ) -> None:
        """Add ``spec``'s recording rules and its alerting rule (``name``: recorded-name stem)."""
        st = spec.structure
        k = st.persistence
        use_for = spec.gate is None and spec.cooldown == 0 and st.scorer != "flat"
        if use_for:
            score = self._own_record(f"{name}:score", self.score(st))
            cond = directional(score, st.direction, spec.threshold)
        else:
            hit = self.hit(st, spec.threshold, name)
            cond = hit
            if k > 1:
                cond = f"{hit} and (count_over_time({self._range(hit, k, 0)}) == {k})"
            if spec.gate is not None:
                g = self.hit(spec.gate.structure, spec.gate.threshold, f"{name}:gate")
                cond = f"{cond} and {g}" if k == 1 else f"({cond}) and {g}"
            if spec.cooldown:
                if cond != hit:
                    cond = self._own_record(f"{name}:condition", cond)
                quiet = self._range(cond, spec.cooldown, 1)
                cond = f"{cond} unless count_over_time({quiet})"
        self.own.append(
            PromRule(
                cond,
                alert=alert,
                for_ms=(k - 1) * self.step_ms if use_for else 0,
                labels=dict(labels),
                annotations=dict(annotations),
            )
        )

    @property
    def rules(self) -> list[PromRule]:
        """Shared records (value, transforms, statistics) first, then each rule's own rules."""
        return [PromRule(e, record=n) for n, e in self.shared.items()] + self.own


def directional(score: str, direction: Direction, threshold: float) -> str:
    """``score`` compared to ``threshold`` in ``direction`` (a filter: present where it holds)."""
    thr = number(threshold)
    if direction == "up":
        return f"{score} >= {thr}"
    if direction == "down":
        return f"-{score} >= {thr}"
    return f"abs({score}) >= {thr}"


_DURATION_PART = re.compile(r"(\d+)(ms|s|m|h|d)")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def parse_duration(text: str) -> int:
    """Milliseconds of a Prometheus-style duration (``60s``, ``5m``, ``1h30m``, ``500ms``)."""
    s = text.strip()
    pos, total = 0, 0
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        if m is None:
            raise ValueError(f"not a duration: {text!r} (e.g. 60s, 5m, 1h)")
        total += int(m.group(1)) * _UNIT_MS[m.group(2)]
        pos = m.end()
    if total <= 0:
        raise ValueError(f"not a positive duration: {text!r}")
    return total
