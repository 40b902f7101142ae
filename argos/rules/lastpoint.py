"""A builtin template rule's label at the last point of each window, from only the numbers that
point needs, bit for bit as the rendered rule computes it.

In the online detector's steady state (a scrape: every series gets one new point) a rule is called
on each series' last ``LOOKBACK`` points and only its last label is kept. A rendered template
computes its score at every point of that window (``window_stats`` summarises a block at every
start) although the last label depends only on the scores of the last ``cooldown + persistence``
points. For a rule proved to be a template rendering (its file is ``render(spec)`` byte for byte:
:func:`argos.rules.recognise.trusted_template`), :func:`last_point_program` builds a
:class:`LastPointProgram` that computes exactly those scores, with the same floating-point
operations on the same operands in the same order, then the rendered ``detect``'s direction,
persistence, threshold, gate and cool-down steps on them. This is exact, not approximate:
``window_stats`` summarises every window from its own points only (blocks of 1, 2, 4, ... points
merged pairwise from the window's start, then merged largest first), so computing one window's
blocks alone gives the numbers the full run gives at that window; every other step is elementwise
IEEE arithmetic (``+ - * /``, ``sqrt``, ``abs``, ``maximum``, ``minimum``, comparisons), which
rounds the same whatever the array's length. ``tests/rules/test_lastpoint.py`` checks labels
against the rendered rules on random and real data, for every supported shape.

Many windows (rows of a matrix) at once, and rules that share a score (the same transform,
scorer, their params and the number of points needed: :class:`ScoreKey`), typically the same shape
fitted with other thresholds in other rule sets of a fleet, compute it once for all their rows
(:func:`evaluate_last`).

Supported: transforms ``value`` and ``diff``; scorers ``static``, ``band``, ``zscore``,
``relative`` and ``level_shift`` (for the main condition and the gate). Any other shape gives
``None`` and the caller runs the rule itself: the robust z-score, CUSUM, spectral and run-length
scorers and the seasonal and EWMA transforms have no last-point form here, and the variance shift
takes a logarithm, which numpy may round differently in its vector loops than in their scalar tail.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from argos._types import BoolArray, FloatArray
from argos.rules.grammar import SCORERS, TRANSFORMS, Direction, RuleSpec, Structure

__all__ = ["LastPointProgram", "ScoreKey", "evaluate_last", "last_point_program", "last_scores"]

SUPPORTED_TRANSFORMS = frozenset({"value", "diff"})
SUPPORTED_SCORERS = frozenset({"static", "band", "zscore", "relative", "level_shift"})

_SCORER_LOOKBACK = {"static": 0, "band": 0, "zscore": 1, "relative": 1}
"""Points a scorer needs before its output point, besides its windows (level_shift: r + w - 1)."""


@dataclass(frozen=True)
class ScoreKey:
    """One score at the last ``positions`` points of each row: the transform and scorer, and the
    params their code reads (name, value as the rule's ``PARAMS`` hold it). ``width`` is how many
    trailing points of a row that needs."""

    transform: str
    scorer: str
    params: tuple[tuple[str, Any], ...]
    positions: int

    @property
    def width(self) -> int:
        """Trailing points of a row the score at its last ``positions`` points depends on."""
        p = dict(self.params)
        sc = self.scorer
        if sc in ("static", "band"):
            need = 1
        elif sc == "level_shift":
            need = int(p["recent"]) + int(p["window"])
        else:
            need = int(p["window"]) + _SCORER_LOOKBACK[sc]
        return need + (1 if self.transform == "diff" else 0) + self.positions - 1


def _floor_scale(scale: FloatArray, level: FloatArray) -> FloatArray:
    """The rendered ``floor_scale``."""
    return np.maximum(scale, 1e-9 * (1.0 + np.abs(level)))


def _block_stats(win: FloatArray, width: int) -> tuple[FloatArray, FloatArray]:
    """Mean and sum of squared deviations of each row of ``win`` (``(r, width)``), merged as the
    rendered ``window_stats`` merges the window that starts at that row's first point: blocks
    of 1, 2, 4, ... points aligned on the window's start, merged pairwise, then the blocks that
    add up to ``width`` merged largest first."""
    sizes = [1 << b for b in range(width.bit_length()) if width & (1 << b)]
    offset: dict[int, int] = {}
    prefix: dict[int, int] = {}
    acc = 0
    for s in reversed(sizes):
        offset[s] = acc
        acc += s
        prefix[s] = acc
    blocks: dict[int, tuple[FloatArray, FloatArray]] = {}
    size, mean = 1, win
    m2: FloatArray | None = None  # zeros at size 1
    while True:
        if width & size:
            j = offset[size] // size
            blocks[size] = (
                mean[:, j],
                np.zeros(len(win)) if m2 is None else m2[:, j],
            )
        if 2 * size > width:
            break
        # blocks of 2 * size and larger cover the first prefix[...] points of the window
        cols = max(p for s, p in prefix.items() if s >= 2 * size) // size
        a, b = mean[:, 0:cols:2], mean[:, 1:cols:2]
        d = b - a
        if m2 is None:
            m2 = d * d * (size / 2)  # 0.0 + 0.0 + y is y
        else:
            m2 = m2[:, 0:cols:2] + m2[:, 1:cols:2] + d * d * (size / 2)
        mean = a + d * 0.5
        size *= 2
    count = 0
    m = q = np.zeros(len(win))
    for s in reversed(sizes):
        bm, bq = blocks[s]
        if count == 0:
            m, q = bm, bq
        else:
            d = bm - m
            q = q + bq + d * d * (count * s / (count + s))
            m = m + d * (s / (count + s))
        count += s
    return m, q


def _window_stats_last(
    x: FloatArray, width: int, lag: int, positions: int
) -> tuple[FloatArray, FloatArray]:
    """The rendered ``window_stats(x, width, lag)`` at the last ``positions`` columns of each row
    of ``x``: mean and std, ``(m, positions)``."""
    m, n = x.shape
    start = n - positions - lag - width + 1
    if positions <= 4:  # each position's windows as a view of the rows (no copy)
        stats = [_block_stats(x[:, start + o : start + o + width], width) for o in range(positions)]
        mean = np.stack([mu for mu, _ in stats], axis=1)
        q = np.stack([sq for _, sq in stats], axis=1)
        return mean, np.sqrt(q / width)
    seg = x[:, start : start + positions + width - 1]
    win = np.lib.stride_tricks.sliding_window_view(seg, width, axis=1).reshape(-1, width)
    mean, q = _block_stats(win, width)
    return mean.reshape(m, positions), np.sqrt(q / width).reshape(m, positions)


def last_scores(key: ScoreKey, v: FloatArray) -> FloatArray:
    """The rendered ``score`` at the last ``key.positions`` columns of each row of ``v``
    (``(m, key.width)``): ``(m, positions)``."""
    p = dict(key.params)
    q = key.positions
    x = v[:, 1:] - v[:, :-1] if key.transform == "diff" else v
    xq = x[:, x.shape[1] - q :]
    sc = key.scorer
    if sc == "static":
        return xq
    if sc == "band":
        s: FloatArray = xq - p["center"]
        return s
    if sc == "zscore":
        mean, std = _window_stats_last(x, int(p["window"]), 1, q)
        s = (xq - mean) / _floor_scale(std, mean)
        return s
    if sc == "relative":
        mean, _ = _window_stats_last(x, int(p["window"]), 1, q)
        s = (xq - mean) / _floor_scale(np.abs(mean), mean)
        return s
    if sc == "level_shift":
        recent, _ = _window_stats_last(x, int(p["recent"]), 0, q)
        before, std = _window_stats_last(x, int(p["window"]), int(p["recent"]), q)
        s = (recent - before) / _floor_scale(std, before)
        return s
    raise ValueError(f"no last-point form for scorer {sc!r}")


_LOWEST = -np.finfo(np.float64).max


def _reaches(s: FloatArray, threshold: Any) -> BoolArray:
    """The rendered ``np.nan_to_num(s, nan=-np.inf) >= threshold`` (a number, or a column of one
    per row). For thresholds strictly between the lowest float and infinity that is
    ``s >= threshold`` (NaN compares false; the infinities, which ``nan_to_num`` makes the
    largest and lowest floats, compare the same), one numpy call instead of ``nan_to_num``'s
    dozen."""
    if isinstance(threshold, np.ndarray):
        plain = bool(((threshold > _LOWEST) & (threshold < np.inf)).all())
    else:
        plain = _LOWEST < threshold < np.inf
    if plain:
        out: BoolArray = s >= threshold
        return out
    full: BoolArray = np.nan_to_num(s, nan=-np.inf) >= threshold
    return full


def _directional(s: FloatArray, direction: Direction) -> FloatArray:
    if direction == "down":
        out: FloatArray = -s
        return out
    if direction == "both":
        return np.abs(s)
    return s


@dataclass(frozen=True)
class LastPointProgram:
    """A template rule's last-point labels: its score (and the gate's) at the points the last
    label depends on, then the rendered ``detect``'s steps on them (see the module docstring).

    ``threshold`` and the gate's come from the rule's ``PARAMS`` as the rule reads them.
    """

    score: ScoreKey
    direction: Direction
    persistence: int
    threshold: Any
    cooldown: int
    gate: ScoreKey | None = None
    gate_direction: Direction = "up"
    gate_threshold: Any = None

    @property
    def keys(self) -> tuple[ScoreKey, ...]:
        """The scores it needs."""
        return (self.score,) if self.gate is None else (self.score, self.gate)

    def labels(
        self,
        scores: FloatArray,
        gate: FloatArray | None = None,
        thresholds: FloatArray | None = None,
        gate_thresholds: FloatArray | None = None,
    ) -> BoolArray:
        """The label of each row's last point, from the scores of :attr:`score` (and the
        gate's), ``(m, positions)`` each. ``thresholds`` (and ``gate_thresholds``), one per row,
        replace the program's own: programs that differ only in their thresholds run as one."""
        s = _directional(scores, self.direction)
        k = self.persistence
        if k > 1:
            # the smallest score of the last k points (NaN propagates, as np.minimum does)
            held = s[:, k - 1 :]
            for j in range(1, k):
                held = np.minimum(held, s[:, k - 1 - j : s.shape[1] - j])
            s = held
        alarm = _reaches(s, self.threshold if thresholds is None else thresholds[:, None])
        if self.gate is not None and gate is not None:
            g_thr = self.gate_threshold if gate_thresholds is None else gate_thresholds[:, None]
            alarm &= _reaches(_directional(gate, self.gate_direction), g_thr)
        if self.cooldown > 0:
            # alarm at the last point, and none in the `cooldown` points before it
            out: BoolArray = alarm[:, -1] & ~alarm[:, :-1].any(axis=1)
            return out
        last: BoolArray = alarm[:, -1]
        return last

    @property
    def shape(self) -> tuple[object, ...]:
        """Everything but the thresholds: programs of one shape label as one."""
        return (
            self.score,
            self.direction,
            self.persistence,
            self.cooldown,
            self.gate,
            self.gate_direction,
        )

    def run(self, rows: FloatArray) -> BoolArray:
        """The label of the last point of each row of ``rows`` (values, ``(m, >= LOOKBACK)``)."""
        return evaluate_last([(self, rows)])[0]


def _score_key(st: Structure, params: Mapping[str, Any], positions: int) -> ScoreKey | None:
    if st.transform not in SUPPORTED_TRANSFORMS or st.scorer not in SUPPORTED_SCORERS:
        return None
    names = (*TRANSFORMS[st.transform].params, *SCORERS[st.scorer].params)
    return ScoreKey(st.transform, st.scorer, tuple((n, params[n]) for n in names), positions)


def last_point_program(spec: RuleSpec, params: Mapping[str, Any]) -> LastPointProgram | None:
    """The last-point form of a template rule (``spec``, proved to be what its file renders, and
    the ``params`` its ``detect`` is called with), or ``None`` when its shape has none."""
    st = spec.structure
    k = int(params["persistence"])
    cooldown = int(params.get("cooldown", 0))
    if k != st.persistence or k < 1 or cooldown < 0:
        return None
    main = _score_key(st, params, cooldown + k)
    if main is None:
        return None
    if spec.gate is None:
        return LastPointProgram(main, st.direction, k, params["threshold"], cooldown)
    g = spec.gate.structure
    gate_params = {n[5:]: v for n, v in params.items() if n.startswith("gate_")}
    gate = _score_key(g, gate_params, cooldown + 1)
    if gate is None or g.persistence != 1:
        return None
    return LastPointProgram(
        main,
        st.direction,
        k,
        params["threshold"],
        cooldown,
        gate,
        g.direction,
        gate_params["threshold"],
    )


def evaluate_last(requests: Sequence[tuple[LastPointProgram, FloatArray]]) -> list[BoolArray]:
    """Each request's last-point labels (a program and its rows, ``(m, >= its LOOKBACK)``
    values), computing each distinct score once over the rows of every request that needs it."""
    by_key: dict[ScoreKey, list[tuple[int, FloatArray]]] = {}
    for i, (prog, rows) in enumerate(requests):
        for key in prog.keys:
            by_key.setdefault(key, []).append((i, rows))
    scores: dict[tuple[int, ScoreKey], FloatArray] = {}
    for key, users in by_key.items():
        w = key.width
        if len(users) == 1:
            i, rows = users[0]
            scores[i, key] = last_scores(key, rows[:, rows.shape[1] - w :])
            continue
        stacked = np.concatenate([rows[:, rows.shape[1] - w :] for _, rows in users])
        computed = last_scores(key, stacked)
        a = 0
        for i, rows in users:
            scores[i, key] = computed[a : a + len(rows)]
            a += len(rows)
    # programs of one shape (thresholds aside) label their rows together
    groups: dict[tuple[object, ...], list[int]] = {}
    for i, (prog, _) in enumerate(requests):
        groups.setdefault(prog.shape, []).append(i)
    out: list[BoolArray] = [_NO_LABELS] * len(requests)
    for members in groups.values():
        prog = requests[members[0]][0]
        if len(members) == 1 or not all(
            _exact_float(requests[i][0].threshold) and _exact_float(requests[i][0].gate_threshold)
            for i in members
        ):
            for i in members:
                p = requests[i][0]
                out[i] = p.labels(scores[i, p.score], None if p.gate is None else scores[i, p.gate])
            continue
        sizes = [len(scores[i, prog.score]) for i in members]
        thresholds = np.repeat([float(requests[i][0].threshold) for i in members], sizes)
        main = np.concatenate([scores[i, prog.score] for i in members])
        gate = gate_thr = None
        if prog.gate is not None:
            gate = np.concatenate([scores[i, prog.gate] for i in members])
            gate_thr = np.repeat([float(requests[i][0].gate_threshold) for i in members], sizes)
        labels = prog.labels(main, gate, thresholds, gate_thr)
        a = 0
        for i, n in zip(members, sizes, strict=True):
            out[i] = labels[a : a + n]
            a += n
    return out


_NO_LABELS: BoolArray = np.zeros(0, dtype=np.bool_)


def _exact_float(v: object) -> bool:
    """Whether ``v`` compares with float64 scores exactly as ``float(v)`` does (a float, or an
    int that converts exactly; ``None``: no gate)."""
    if v is None or isinstance(v, float):
        return True
    return isinstance(v, int) and not isinstance(v, bool) and abs(v) <= 2**53
