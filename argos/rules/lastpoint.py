"""A builtin template rule's label at the last point of each window, from only the numbers that
point needs, bit for bit as the rendered rule computes it.

In the online detector's steady state (a scrape: every series gets one new point) a rule is called
on each series' last ``LOOKBACK`` points and only its last label is kept. A rendered template
computes its score at every point of that window although the last label depends only on the
scores of the last ``cooldown + persistence`` points. For a rule proved to be a template rendering
(its file is ``render(spec)`` byte for byte: :func:`argos.rules.recognise.trusted_template`),
:func:`last_point_program` builds a :class:`LastPointProgram` that computes exactly those scores,
with the same floating-point operations on the same operands in the same order, then the rendered
``detect``'s direction, persistence, threshold, gate and cool-down steps on them.

Supported, for the rule and its gate: every transform (``value``, ``diff``, ``seasonal``,
``ewma``) and every scorer but two (``static``, ``band``, ``zscore``, ``relative``,
``level_shift``, ``variance_shift``, ``robust_z``, ``cusum``): every rule of the committed rule
sets but the run length (``flat``) and spectral-saliency (``spectral``) ones, which give ``None``
(the caller runs the rule itself). Why each step is exact:

- ``window_stats`` (z-score, relative change, level and variance shift, CUSUM's z-score)
  summarises every window from its own points only: the blocks of 1, 2, 4, ... points of the
  binary digits of its width, each the pairwise tree of its points from its place in the window,
  merged largest first. For a few windows a row (:func:`_tree_stats`), every such block of every
  window of every key is a segment of one flat array, in decreasing size (each starts at a
  multiple of its size, so the pairs of a level never straddle two segments), and each level of
  pairs is one set of numpy calls for all of them; the merges run on all the windows at once,
  each window with a column of its own coefficients, the Python floats the rendered merge
  computes, by the same IEEE operations in the same order. For many windows a row, the blocks
  of a row's trailing segment are computed once for all its windows, along axis 1 as the helper
  does along the series (:func:`_sliding_stats`). ``window_cusum`` is merged the same way
  (:func:`_cusum_last`), on the z-scores of the last ``window + positions - 1`` points; its
  ``s[: 2w - 1] = nan`` never reaches the last points of a ``LOOKBACK`` window.
- the seasonal transform's ``np.median`` over the ``cycles`` same-slot values is taken along
  axis 0 of one ``(cycles, points)`` stack of the points of every key of that cycle count: a
  selection (and for an even count a mean of two) of each point's own values, whatever the
  other columns hold. For three cycles the middle value comes from ``np.minimum`` and
  ``np.maximum`` (NaN where a value is NaN, as ``np.median``'s check gives): floats that compare
  equal have the same bits but for the two zeros, so a zero median is ``np.median``'s own.
- ``ewma_before``'s ``np.convolve`` runs in "valid" mode, on each row alone or on the rows of
  every key of one ``alpha`` laid end to end (the outputs straddling two rows not read): an
  output where the weights overlap the values in full is a dot product of the same operands in
  the same order wherever it sits and whatever the mode; the rendered rule's own stream (its
  ``LOOKBACK`` window, at another array position than in a batch run) already relies on that.
- ``past_median_mad`` is exactly ``np.median`` of each window and of its absolute deviations
  (its docstring: windows of a ``LOOKBACK`` window go through ``np.median`` itself, longer
  inputs through sorted ranks proved equal to it): here each needed window is a row of one
  matrix per window length, for every key (each row's median is its own), sorted: the values at
  the middle ranks are the ones ``np.median``'s partition finds, their sum over two its mean,
  NaN for a row with a NaN; a zero median of a row holding a -0.0 (either zero could be picked)
  is ``np.median``'s own.
- every other step is elementwise IEEE arithmetic (``+ - * /``, ``sqrt``, ``abs``, ``maximum``,
  ``minimum``, ``clip``, ``nan_to_num``, comparisons), which rounds the same whatever the
  array's length or the rows stacked with a row (so the formulas of the keys of one scorer run
  on their rows stacked), and ``np.log`` (variance shift): numpy 2.4 computes float64 ``log``
  element by element with the same result wherever the element sits (here AVX2, no AVX-512: the
  scalar libm ``log`` per element; with AVX-512 a vector loop whose tail uses the same masked
  vector code). The rendered rule's stream/batch exactness (a point's score inside its
  ``LOOKBACK`` window equals the batch one, at another array position) already depends on that,
  so a last-point form adds no assumption.

The numbers are the rendered ones bit for bit, but for a NaN's sign bit, which numpy may set
either way depending on its operands' memory layout (a NaN of the data meeting one made by
``inf - inf``) and which no label step reads. ``tests/rules/test_lastpoint.py`` checks the scores
bit for bit and the labels against the rendered rules on random data (ties, flat stretches, NaN
and infinities, zeros of both signs, a 1e9 level) and on real KPI data, every committed KPI rule
included, and the scores of many keys computed together against each alone.

:func:`evaluate_last` labels many windows (rows of a matrix) at once, in three steps that each
run on the rows the previous one leaves: the rule's score at the last point reaches its threshold;
the gate's does, where that holds; the whole program (the ``persistence - 1`` and ``cooldown``
points before), where both hold (a program without a gate gets it in the second step). A row that
fails a step is labelled False whatever the earlier points hold, and anomalies are rare: the wide
windows are almost never computed. Rules that share a score (the same transform, scorer, their
params and the number of points needed: :class:`ScoreKey`), typically the same shape fitted with
other thresholds in other rule sets of a fleet, compute it once for all their rows, and the
scores of a step are computed by stage for all their keys at once (:func:`last_scores_together`:
transforms, window statistics, medians, formulas), so that the numpy calls are per stage, not
per key: a few hundred for the 24 scores of a scrape of the committed KPI sets, where one key at
a time took a few thousand.

In a steady stream (a kernel's push: ``evaluate_last``'s ``series``, each row a history row with
its stamp), a window of :data:`KEEP_MIN_WIDTH` points or more at the last point is not summed from
its points: its blocks are kept per series between pushes and advanced by one block per level
(:mod:`argos.rules.keptblocks`: the same blocks by the same operations, so the same bits). A score
whose kept windows all advance (:func:`~argos.rules.keptblocks.kept_advances`) then reads only the
trailing values its other windows and its own last point need (:func:`_narrow_width`): a z-score
over 1,440 points reads one value a row, an EWMA's convolution gives one output a row.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from argos._types import BoolArray, FloatArray, IntArray
from argos.rules.grammar import SCORERS, TRANSFORMS, Direction, RuleSpec, Structure
from argos.rules.keptblocks import (
    KeptRequest,
    SeriesRows,
    SignalId,
    kept_advances,
    kept_span,
    kept_stats,
)

__all__ = [
    "LastPointProgram",
    "ScoreKey",
    "evaluate_last",
    "last_point_program",
    "last_scores",
    "last_scores_together",
]

SUPPORTED_TRANSFORMS = frozenset({"value", "diff", "seasonal", "ewma"})
SUPPORTED_SCORERS = frozenset(
    {"static", "band", "zscore", "relative", "level_shift", "variance_shift", "robust_z", "cusum"}
)


def _ewma_span(alpha: Any) -> int:
    """The rendered ``ewma_before``'s number of weights."""
    return max(1, math.ceil(math.log(1e-3) / math.log(1.0 - alpha)))


@dataclass(frozen=True)
class ScoreKey:
    """One score at the last ``positions`` points of each row: the transform and scorer, and the
    params their code reads (name, value as the rule's ``PARAMS`` hold it). ``width`` is how many
    trailing points of a row that needs."""

    transform: str
    scorer: str
    params: tuple[tuple[str, Any], ...]
    positions: int

    @functools.cached_property
    def width(self) -> int:
        """Trailing points of a row the score at its last ``positions`` points depends on: the
        grammar's history of the transform and scorer (what the score at one point reads, that
        point included), and one point more for each other position."""
        return Structure(self.transform, self.scorer, self.params).lookback() + self.positions - 1

    @functools.cached_property
    def named(self) -> dict[str, Any]:
        """The params by name (read, never written)."""
        return dict(self.params)

    def __hash__(self) -> int:  # keys are looked up many times a push: hashed once
        return self._hash

    @functools.cached_property
    def _hash(self) -> int:
        return hash((self.transform, self.scorer, self.params, self.positions))

    def __getstate__(self) -> dict[str, Any]:
        """Pickled without the cached hash: another process hashes strings otherwise."""
        state = dict(self.__dict__)
        state.pop("_hash", None)
        return state


def _floor_scale(scale: FloatArray, level: FloatArray) -> FloatArray:
    """The rendered ``floor_scale``."""
    return np.maximum(scale, 1e-9 * (1.0 + np.abs(level)))


@dataclass(frozen=True)
class _TreePlan:
    """Where :func:`_tree_stats` puts and finds each block, for windows of given widths and
    counts (a scrape's requests have the same shapes push after push: the plan is cached).

    ``digits``: ``(b, i)``, the block of ``2 ** b`` points of every window of array ``i``, in
    the order of the flat array (decreasing size), and ``start`` where each begins at level 0;
    ``ends``: per level, how many of its elements the next level pairs; ``bases``: where each
    level begins in the buffer of all levels. ``first``: where each array's windows begin in
    merge order (the arrays in decreasing number of digits); per merge step (digit
    ``s`` from the largest), ``take[s]`` the buffer index of each window's block (its sum of
    squared deviations at the same index, or the zero after the last level for a 1-point
    block), ``size_coef[s]`` and ``count_coef[s]`` the rendered merge's ``size / (count +
    size)`` and ``count * size / (count + size)`` of each window, as Python computes them."""

    digits: tuple[tuple[int, int], ...]
    start: dict[tuple[int, int], int]
    ends: tuple[int, ...]
    bases: tuple[int, ...]
    first: tuple[int, ...]
    take: tuple[tuple[IntArray, IntArray], ...]
    size_coef: tuple[FloatArray, ...]
    count_coef: tuple[FloatArray, ...]
    width: FloatArray


@functools.lru_cache(maxsize=32)
def _tree_plan(shapes: tuple[tuple[int, int], ...]) -> _TreePlan:
    """The :class:`_TreePlan` of arrays of ``(width, count)`` windows. A plan holds a few arrays
    of one entry per window (a scrape of 100,000 series: several MB), so only the last 32 are
    kept: a steady scrape needs one large plan and a few small ones (the rows whose score fires)."""
    width = [w for w, _ in shapes]
    count = [c for _, c in shapes]
    digits = sorted(
        ((b, i) for i, w in enumerate(width) for b in range(w.bit_length()) if w >> b & 1),
        key=lambda d: (-d[0], -width[d[1]], d[1]),
    )
    start: dict[tuple[int, int], int] = {}
    total = 0
    for b, i in digits:
        start[b, i] = total
        total += count[i] << b
    ends = []
    bases = [0]
    level_len = total
    for level in range(max(width).bit_length() - 1):
        # the elements of this level in blocks of more than 2 ** level points: a prefix
        end = next((start[d] for d in digits if d[0] <= level), total) >> level
        ends.append(end)
        bases.append(bases[-1] + level_len)
        level_len = end // 2
    zero = bases[-1] + level_len
    order = sorted(range(len(shapes)), key=lambda i: (-width[i].bit_count(), i))
    first = [0] * len(shapes)
    at = 0
    for i in order:
        first[i] = at
        at += count[i]
    take, size_coef, count_coef = [], [], []
    for step in range(max(w.bit_count() for w in width)):
        # each window with more than `step` digits: its block of 2 ** b points, the points of
        # the larger blocks merged before it, and the rendered merge's coefficients
        at_mean: list[int] = []
        at_sq: list[int] = []
        sizes: list[float] = []
        counts: list[float] = []
        for i in order:
            if width[i].bit_count() <= step:
                break
            b = [d for d in range(width[i].bit_length()) if width[i] >> d & 1][-1 - step]
            size, before, n = 1 << b, (width[i] >> b + 1) << b + 1, count[i]
            block = bases[b] + (start[b, i] >> b)
            at_mean.extend(range(block, block + n))
            at_sq.extend(range(block, block + n) if b else [zero] * n)
            sizes.extend([size / (before + size)] * n)
            counts.extend([before * size / (before + size)] * n)
        take.append((np.array(at_mean, dtype=np.int64), np.array(at_sq, dtype=np.int64)))
        size_coef.append(np.array(sizes, dtype=np.float64))
        count_coef.append(np.array(counts, dtype=np.float64))
    widths = np.array([float(width[i]) for i in order for _ in range(count[i])], dtype=np.float64)
    for arr in (widths, *size_coef, *count_coef, *(a for pair in take for a in pair)):
        arr.flags.writeable = False  # shared by every call with these shapes
    return _TreePlan(
        tuple(digits),
        start,
        tuple(ends),
        tuple(bases),
        tuple(first),
        tuple(take),
        tuple(size_coef),
        tuple(count_coef),
        widths,
    )


def _tree_stats(windows: Sequence[FloatArray]) -> list[tuple[FloatArray, FloatArray]]:
    """Mean and std (the rendered ``sqrt(m2 / width)``) of every window of each array of
    ``windows`` (its last axis holds a window's points; any leading axes), each merged as the
    rendered ``window_stats`` merges the window that starts at that window's first point: the
    windows of all the arrays in one tree of blocks, so that the numpy calls are per level of
    blocks and per merge step, not per window (:class:`_TreePlan`).

    The rendered code's blocks of a window are aligned on its start, and the ones it merges are
    the binary digits of its width, largest first: the block of ``2 ** b`` points at offset
    ``(width >> b + 1) << b + 1``, the pairwise tree of exactly those points. Here each such
    block of each window is a segment of one flat array, the segments in decreasing size, so
    each starts at a multiple of its size: level ``b + 1`` pairs the elements of level ``b`` of
    the segments larger than ``2 ** b`` (a prefix of the array), and no pair straddles two
    segments. A segment of ``2 ** b`` points is one element at level ``b``: the same operations
    on the same operands as the rendered tree, and no point is computed but the window's own.
    The merge then runs on all windows at once, step ``s`` on the windows with more than ``s``
    digits (a prefix in merge order): each window's ``s``-th block from the largest, merged
    with its own coefficients (a column of Python's ``count * size / (count + size)`` and
    ``size / (count + size)``, the rendered merge's numbers) by the same IEEE operations in the
    same order as the rendered ``window_stats``' scalar ones."""
    if not windows:
        return []
    shapes = tuple((win.shape[-1], math.prod(win.shape[:-1])) for win in windows)
    plan = _tree_plan(shapes)
    total = sum(shapes[i][1] << b for b, i in plan.digits)
    means = np.empty(plan.bases[-1] + (plan.ends[-1] // 2 if plan.ends else total))
    sqs = np.empty(len(means) + 1)
    sqs[-1] = 0.0
    for b, i in plan.digits:
        w, count = shapes[i]
        offset = (w >> b + 1) << b + 1
        seg = means[plan.start[b, i] : plan.start[b, i] + (count << b)]
        seg.reshape(*windows[i].shape[:-1], 1 << b)[...] = windows[i][
            ..., offset : offset + (1 << b)
        ]
    for level, end in enumerate(plan.ends):
        base, dest = plan.bases[level], plan.bases[level + 1]
        pairs = means[base : base + end].reshape(-1, 2)
        left = pairs[:, 0]
        d = pairs[:, 1] - left
        dd = d * d
        out_q = sqs[dest : dest + end // 2]
        if level == 0:
            np.multiply(dd, 0.5, out=out_q)  # 0.0 + 0.0 + y is y
        else:
            q_pairs = sqs[base : base + end].reshape(-1, 2)
            np.add(q_pairs[:, 0], q_pairs[:, 1], out=out_q)
            dd *= (1 << level) / 2
            out_q += dd
        d *= 0.5
        np.add(left, d, out=means[dest : dest + end // 2])
    m = q = np.zeros(0)
    for step, (at_mean, at_sq) in enumerate(plan.take):
        bm, bq = means[at_mean], sqs[at_sq]
        if step == 0:
            m, q = bm, bq
            continue
        n = len(bm)
        d = bm - m[:n]
        q_head = q[:n]
        q_head += bq
        dd = d * d
        dd *= plan.count_coef[step]
        q_head += dd
        d *= plan.size_coef[step]
        m[:n] += d
    std = np.sqrt(q / plan.width)
    out = []
    for i, win in enumerate(windows):
        a, b = plan.first[i], plan.first[i] + shapes[i][1]
        out.append((m[a:b].reshape(win.shape[:-1]), std[a:b].reshape(win.shape[:-1])))
    return out


def _merge_blocks(
    blocks: Sequence[tuple[int, FloatArray, FloatArray]],
) -> tuple[FloatArray, FloatArray]:
    """The rendered ``window_stats``' last step: a window's blocks (size, means, sums of squared
    deviations; smallest first, each block the one at its place in the window) merged largest
    first, each after the previous one."""
    count = 0
    m = q = blocks[-1][1]
    for size, bm, bq in reversed(blocks):
        if count == 0:
            m, q = bm, bq
        else:
            d = bm - m
            q = q + bq + d * d * (count * size / (count + size))
            m = m + d * (size / (count + size))
        count += size
    return m, q


def _flat_rows(seg: FloatArray, width: int) -> tuple[FloatArray, int]:
    """The rows of ``seg`` (``(m, n)``) end to end, and how many windows of ``width`` points
    start in that flat array (the last row's last window the last one): along it, a block of
    ``size`` points that starts at a row's column ``c`` with ``c + size <= n`` is the pairwise
    tree of that row's points, as along the row; the blocks that straddle two rows are never
    read."""
    flat = np.ascontiguousarray(seg).reshape(-1)
    return flat, len(flat) - width + 1


def _as_rows(flat: FloatArray, m: int, n: int, windows: int) -> FloatArray:
    """The ``(m, windows)`` results of the windows starting at each row's first ``windows``
    columns, from the results of every window start of a flat array of ``m`` rows of ``n``."""
    out = np.empty(m * n)
    out[: len(flat)] = flat
    rows: FloatArray = out.reshape(m, n)[:, :windows]
    return rows


def _sliding_stats(seg: FloatArray, width: int) -> tuple[FloatArray, FloatArray]:
    """Mean and sum of squared deviations of every window of ``width`` points of each row of
    ``seg`` (``(m, n)``: ``(m, n - width + 1)``), the rendered ``window_stats`` along the rows:
    the blocks computed once for all the windows of a row, by the same operations on the same
    operands as along the 1-D series, on the rows laid end to end (:func:`_flat_rows`)."""
    m, n = seg.shape
    windows = n - width + 1
    if m == 0:
        return np.zeros((0, windows)), np.zeros((0, windows))
    block_mean, starts = _flat_rows(seg, width)
    size, block_m2 = 1, np.zeros(len(block_mean))
    blocks = []
    while size <= width:
        if width & size:
            blocks.append((size, block_mean, block_m2))
        if 2 * size > width:
            break
        d = block_mean[size:] - block_mean[:-size]
        if size == 1:
            block_m2 = d * d * (size / 2)  # 0.0 + 0.0 + y is y
        else:
            block_m2 = block_m2[:-size] + block_m2[size:] + d * d * (size / 2)
        block_mean = block_mean[:-size] + d * 0.5
        size *= 2
    placed = []
    offset = 0
    for size, bm, bq in reversed(blocks):
        placed.append((size, bm[offset : offset + starts], bq[offset : offset + starts]))
        offset += size
    mean, q = _merge_blocks(placed[::-1])
    return _as_rows(mean, m, n, windows), _as_rows(q, m, n, windows)


_CALL_COST = 2500
"""A numpy call's fixed cost, in array elements' worth of work (about 2 microseconds)."""


def _share_blocks(rows: int, width: int, positions: int) -> bool:
    """Whether ``positions`` windows of ``width`` points a row are cheaper summarised from the
    blocks they share (:func:`_sliding_stats`) than each alone (:func:`_tree_stats`), by a
    cost model fitted on 34 to 1,000 rows and widths 10 to 1,440 when each window had its own
    numpy calls: per level of blocks a window alone costs a few numpy calls and ``width``
    elements a row; the shared blocks cost the calls once and ``width + positions`` elements a
    row, at about twice the cost per element (larger arrays, fewer cache hits). In the shared
    tree a window alone has no call of its own, but a model without that cost sent more windows
    of the later steps to the tree and measured slower on captured KPI scrapes (the tree's
    layout for their many windows costs more to plan than the calls it saves)."""
    levels = width.bit_length()
    alone = positions * (levels * _CALL_COST + rows * width)
    shared = levels * (_CALL_COST + 2 * rows * (width + positions))
    return shared < alone


def _cusum_last(z: FloatArray, horizon: int) -> FloatArray:
    """The rendered ``window_cusum(z, horizon)`` at every window of ``horizon`` points of each
    row of ``z`` (``(m, n)``: ``(m, n - horizon + 1)``), along the rows by the same operations,
    on the rows laid end to end (:func:`_flat_rows`)."""
    m, n = z.shape
    windows = n - horizon + 1
    if m == 0:
        return np.zeros((0, windows))
    flat, starts = _flat_rows(z, horizon)
    size, total, best = 1, flat, flat
    blocks = []
    while size <= horizon:
        if horizon & size:
            blocks.append((size, total, best))
        if 2 * size > horizon:
            break
        best = np.maximum(best[size:], total[size:] + best[:-size])
        total = total[:-size] + total[size:]
        size *= 2
    end = horizon
    acc_total = acc_best = flat[:0]
    for size, total, best in blocks:
        start = end - size
        bt = total[start : start + starts]
        bb = best[start : start + starts]
        if end == horizon:
            acc_total, acc_best = bt, bb
        else:
            acc_best = np.maximum(acc_best, acc_total + bb)
            acc_total = bt + acc_total
        end = start
    return _as_rows(np.maximum(acc_best, 0.0), m, n, windows)


WindowRequest = tuple[FloatArray, int, int, int]
"""``(x, width, lag, positions)``: the rendered ``window_stats(x, width, lag)`` at the last
``positions`` columns of each row of ``x``."""


KEEP_MIN_WIDTH = 64
"""The narrowest window whose blocks are kept between pushes (:mod:`argos.rules.keptblocks`).
Measured on the committed KPI sets' scrape (evaluations alternating in one process): 64 and 100
(their windows of 120 and 130 points kept) about 5% faster than 128, 32 and 50 no faster than
64; a kept window costs a few numpy calls per kernel a push where a narrow one costs the tree
little, and the typical sets' windows of 60 points over 29 kernels stay in the tree."""

KeptSource = tuple[SignalId, tuple[SeriesRows, ...], bool]
"""The signal a window request summarises, its rows as series (what keeps its blocks), and
whether every row's blocks advance (``x`` then may hold only the columns the other windows and
the score read: :func:`_narrow_width`)."""


def _kept(width: int, positions: int) -> bool:
    """Whether a window of rows that are series reads the blocks kept between pushes."""
    return positions == 1 and width >= KEEP_MIN_WIDTH


def _transform_history(key: ScoreKey) -> int:
    """Points before a signal value that the key's transform reads."""
    t, p = key.transform, key.named
    if t == "diff":
        return 1
    if t == "seasonal":
        return int(p["period"]) * int(p["cycles"])
    if t == "ewma":
        return _ewma_span(p["alpha"])
    return 0


def _narrow_width(key: ScoreKey) -> int | None:
    """The trailing values of a row the key reads when its kept windows' blocks all advance
    (their signal read at the newest point only): the other windows' points and the score's
    own last point, with the transform's history; ``None`` when no window is kept or the
    scorer reads more (robust z-score's medians, CUSUM's z-scores)."""
    return _narrow_width_from(key, KEEP_MIN_WIDTH)


@functools.lru_cache(maxsize=1024)
def _narrow_width_from(key: ScoreKey, keep_min_width: int) -> int | None:
    """:func:`_narrow_width` with windows of ``keep_min_width`` points or more kept."""
    if key.positions != 1 or key.scorer not in (
        "zscore",
        "relative",
        "level_shift",
        "variance_shift",
    ):
        return None
    windows = _windows_of(key)
    if not any(_kept(w, q) for w, _, q in windows):
        return None
    signal = max([1, *(w + lag + q - 1 for w, lag, q in windows if not _kept(w, q))])
    return signal + _transform_history(key)


def _window_stats(
    requests: Sequence[WindowRequest], kept: Sequence[KeptSource | None] | None = None
) -> list[tuple[FloatArray, FloatArray]]:
    """Each request's mean and std, ``(m, positions)`` each.

    For a few windows a row, each window's own blocks (:func:`_tree_stats`, O(positions x width)
    a row; the windows of every such request in one tree); for many, the blocks they share
    (:func:`_sliding_stats`, O((positions + width) log width) a row; :func:`_share_blocks`). A
    wide window at the last point only, of rows that are series (``kept``), from the blocks kept
    between pushes (:func:`~argos.rules.keptblocks.kept_stats`, O(log width) a row)."""
    out: list[tuple[FloatArray, FloatArray]] = [(_NO_SCORES, _NO_SCORES)] * len(requests)
    alone: list[int] = []
    windows: list[FloatArray] = []
    keep: list[int] = []
    keep_requests: list[KeptRequest] = []
    for i, (x, width, lag, positions) in enumerate(requests):
        source = None if kept is None else kept[i]
        if (
            source is not None
            and len(x)
            and _kept(width, positions)
            and (source[2] or x.shape[1] >= kept_span(width, lag))
        ):
            keep.append(i)
            keep_requests.append(KeptRequest(source[0], width, lag, x, source[1], source[2]))
            continue
        start = x.shape[1] - positions - lag - width + 1
        seg = x[:, start : start + positions + width - 1]
        if _share_blocks(len(x), width, positions):
            mean, q = _sliding_stats(seg, width)
            out[i] = (mean, np.sqrt(q / width))
        elif positions == 1:
            alone.append(i)
            windows.append(seg[:, None, :])
        else:
            alone.append(i)
            windows.append(np.lib.stride_tricks.sliding_window_view(seg, width, axis=1))
    for i, stats in zip(alone, _tree_stats(windows), strict=True):
        out[i] = stats
    if keep:
        for i, stats in zip(keep, kept_stats(keep_requests), strict=True):
            out[i] = stats
    return out


@functools.lru_cache(maxsize=1024)
def _signal_id(key: ScoreKey) -> SignalId:
    """The key's transform and its params (with their types: ``1`` and ``1.0`` may compute
    differently)."""
    p = key.named
    names = TRANSFORMS[key.transform].params
    return key.transform, tuple((n, type(p[n]).__name__, p[n]) for n in names)


def _signals(items: Sequence[tuple[ScoreKey, FloatArray]]) -> list[FloatArray]:
    """The rendered transform's ``x`` at the columns of each ``v`` (``(m, key.width)``) from the
    transform's history on (all of them for ``value``), the keys of one seasonal cycle count, or
    of one EWMA ``alpha``, in one numpy call (:func:`_seasonal`, :func:`_ewma`)."""
    out = [v for _, v in items]
    seasonal: dict[int, list[int]] = {}
    ewma: dict[tuple[type, Any], list[int]] = {}
    for i, (key, v) in enumerate(items):
        t = key.transform
        if t == "diff":
            out[i] = v[:, 1:] - v[:, :-1]
        elif t == "seasonal":
            seasonal.setdefault(int(key.named["cycles"]), []).append(i)
        elif t == "ewma":
            alpha = key.named["alpha"]
            ewma.setdefault((type(alpha), alpha), []).append(i)
        elif t != "value":
            raise ValueError(f"no last-point form for transform {t!r}")
    for cycles, members in seasonal.items():
        parts = [(int(items[i][0].named["period"]), items[i][1]) for i in members]
        for i, x in zip(members, _seasonal(cycles, parts), strict=True):
            out[i] = x
    for (_, alpha), members in ewma.items():
        for i, x in zip(members, _ewma(alpha, [items[i][1] for i in members]), strict=True):
            out[i] = x
    return out


def _seasonal(cycles: int, parts: Sequence[tuple[int, FloatArray]]) -> list[FloatArray]:
    """The seasonal transform of each ``(period, v)``: each point minus the ``np.median`` of its
    ``cycles`` same-slot values, taken along axis 0 of one ``(cycles, points)`` stack of every
    point of every part: a selection (and, for an even count, a mean of two) of each point's own
    values, whatever the other columns hold."""
    sizes = [len(v) * (v.shape[1] - period * cycles) for period, v in parts]
    same_slot = np.empty((cycles, sum(sizes)))
    a = 0
    for (period, v), size in zip(parts, sizes, strict=True):
        n = v.shape[1]
        for k in range(1, cycles + 1):
            dest = same_slot[k - 1, a : a + size].reshape(len(v), n - period * cycles)
            dest[...] = v[:, period * (cycles - k) : n - period * k]
        a += size
    median = _median_along_0(same_slot)
    out = []
    a = 0
    for (period, v), size in zip(parts, sizes, strict=True):
        x = v[:, period * cycles :]
        out.append(x - median[a : a + size].reshape(x.shape))
        a += size
    return out


def _median_along_0(stack: FloatArray) -> FloatArray:
    """``np.median(stack, axis=0)``. For three rows, the middle value by ``np.minimum`` and
    ``np.maximum`` (a NaN in a column gives NaN, as ``np.median``'s check does): floats that
    compare equal have the same bits but for zeros of either sign, so the columns whose median
    is zero take ``np.median``'s own."""
    if len(stack) != 3:
        out: FloatArray = np.median(stack, axis=0)
        return out
    a, b, c = stack
    median: FloatArray = np.maximum(np.minimum(a, b), np.minimum(np.maximum(a, b), c))
    zero = np.flatnonzero(median == 0.0)
    if len(zero):
        median[zero] = np.median(stack[:, zero], axis=0)
    return median


_CONVOLVE_CALL = 9000
"""An ``np.convolve`` call's fixed cost, in multiply-adds' worth of work (about 3 microseconds)."""


def _ewma(alpha: Any, parts: Sequence[FloatArray]) -> list[FloatArray]:
    """The rendered EWMA transform of each ``v``: each point minus the weighted mean of the
    ``span`` points before it (``ewma_before``'s ``np.convolve``, in "valid" mode on each row's
    ``n - 1`` points before its last: the full convolution's outputs ``span - 1 .. n - 2``, the
    rendered slice).

    An output where the weights overlap the values in full is a dot product of the same operands
    in the same order wherever it sits and whatever the mode (as the rendered rule's stream
    relies on), so the rows can be laid end to end and convolved in one call, the outputs that
    straddle two rows not read. That computes ``span - 1`` outputs too many a row: when those
    cost more than a call a row (:data:`_CONVOLVE_CALL`), each row is convolved alone."""
    span = _ewma_span(alpha)
    weights = alpha * (1.0 - alpha) ** np.arange(span)
    weights /= weights.sum()
    sizes = [v.size - len(v) for v in parts]  # each row but its last point
    total = sum(sizes)
    if total == 0 or (span - 1) * span > _CONVOLVE_CALL:
        return [
            v[:, span:]
            - np.array([np.convolve(r[:-1], weights, "valid") for r in v]).reshape(
                len(v), v.shape[1] - span
            )
            for v in parts
        ]
    values = np.empty(total + span - 1)
    values[total:] = 0.0
    a = 0
    for v, size in zip(parts, sizes, strict=True):
        values[a : a + size].reshape(len(v), v.shape[1] - 1)[...] = v[:, :-1]
        a += size
    before = np.convolve(values, weights, "valid")
    out = []
    a = 0
    for v, size in zip(parts, sizes, strict=True):
        n = v.shape[1]
        out.append(v[:, span:] - before[a : a + size].reshape(len(v), n - 1)[:, : n - span])
        a += size
    return out


def _row_medians(block: FloatArray) -> FloatArray:
    """``np.median(block, axis=1)``, from the rows sorted (``np.sort``'s vectorised sort is
    about three times faster than ``np.median``'s partition around three ranks).

    ``np.median`` takes the middle value (or the mean of the middle two: their sum, divided
    by 2) of each row partitioned around the middle ranks, and NaN for a row with a NaN (which
    it finds last). A sorted row holds the same values at those ranks, and floats that compare
    equal have the same bits but for zeros of either sign, so a row whose median is zero and
    that holds a -0.0 (where the two could pick different zeros) takes ``np.median``'s own."""
    ordered = np.sort(block, axis=1)
    h = block.shape[1] // 2
    odd = block.shape[1] % 2
    median = ordered[:, h].copy() if odd else (ordered[:, h - 1] + ordered[:, h]) / 2
    last = ordered[:, -1]
    nan = np.isnan(last)
    if nan.any():
        np.copyto(median, last, where=nan)
    zero = np.flatnonzero(median == 0.0)
    if len(zero):
        negative = (np.signbit(block[zero]) & (block[zero] == 0.0)).any(axis=1)
        if negative.any():
            rows = zero[negative]
            median[rows] = np.median(block[rows], axis=1)
    return median


def _medians_mads(
    parts: Sequence[tuple[FloatArray, int, int]],
) -> list[tuple[FloatArray, FloatArray]]:
    """The rendered ``past_median_mad`` of each ``(x, window, positions)``: ``np.median`` of the
    ``window`` points before each of the last ``positions`` columns of each row, and of their
    absolute deviations from it, ``(m, positions)`` each; the windows of every part of one
    ``window`` one row each of one ``np.median`` call (each row's median is its own)."""
    by_window: dict[int, list[int]] = {}
    for i, (_, w, _) in enumerate(parts):
        by_window.setdefault(w, []).append(i)
    out: list[tuple[FloatArray, FloatArray]] = [(_NO_SCORES, _NO_SCORES)] * len(parts)
    for w, members in by_window.items():
        sizes = [len(parts[i][0]) * parts[i][2] for i in members]
        block = np.empty((sum(sizes), w))
        a = 0
        for i, size in zip(members, sizes, strict=True):
            x, _, q = parts[i]
            n = x.shape[1]
            if q == 1:
                block[a : a + size] = x[:, n - 1 - w : n - 1]
            else:
                windows = np.lib.stride_tricks.sliding_window_view(x[:, n - q - w : n - 1], w, 1)
                block[a : a + size].reshape(len(x), q, w)[...] = windows
            a += size
        median = _row_medians(block)
        mad = _row_medians(np.abs(block - median[:, None]))
        a = 0
        for i, size in zip(members, sizes, strict=True):
            shape = (len(parts[i][0]), parts[i][2])
            out[i] = (median[a : a + size].reshape(shape), mad[a : a + size].reshape(shape))
            a += size
    return out


@functools.lru_cache(maxsize=1024)
def _windows_of(key: ScoreKey) -> tuple[tuple[int, int, int], ...]:
    """The ``window_stats`` calls of the key's scorer: ``(width, lag, positions)`` each."""
    p = key.named
    q = key.positions
    sc = key.scorer
    if sc in ("zscore", "relative"):
        return ((int(p["window"]), 1, q),)
    if sc in ("level_shift", "variance_shift"):
        recent = int(p["recent"])
        return ((recent, 0, q), (int(p["window"]), recent, q))
    if sc == "cusum":
        w = int(p["window"])
        return ((w, 1, w + q - 1),)  # the z-scores the last q sums read
    return ()


def _standardised(
    key: ScoreKey,
    x: FloatArray,
    stats: Sequence[tuple[FloatArray, FloatArray]],
    robust: tuple[FloatArray, FloatArray] | None,
) -> tuple[FloatArray, FloatArray, FloatArray] | None:
    """``(value, level, scale)`` of a scorer whose score is the rendered ``(value - level) /
    floor_scale(scale, level)`` (z-score, relative change, level shift, robust z-score), from
    the statistics of its :func:`_windows_of` and, for the robust z-score, its medians and
    MADs; ``None`` for the others."""
    sc = key.scorer
    xq = x[:, x.shape[1] - key.positions :]
    if sc == "zscore":
        mean, std = stats[0]
        return xq, mean, std
    if sc == "relative":
        mean, _ = stats[0]
        return xq, mean, np.abs(mean)
    if sc == "level_shift":
        (recent, _), (before, std) = stats
        return recent, before, std
    if sc == "robust_z" and robust is not None:
        median, mad = robust
        return xq, median, np.maximum(1.4826 * mad, key.named["min_scale"])
    return None


def _score(
    key: ScoreKey, x: FloatArray, stats: Sequence[tuple[FloatArray, FloatArray]]
) -> FloatArray:
    """The rendered ``score`` at the last ``key.positions`` columns of each row of the signal
    ``x`` for the scorers :func:`_standardised` leaves, from the statistics of its
    :func:`_windows_of`."""
    p = key.named
    q = key.positions
    xq = x[:, x.shape[1] - q :]
    sc = key.scorer
    if sc == "static":
        return xq
    if sc == "band":
        s: FloatArray = xq - p["center"]
        return s
    if sc == "variance_shift":
        (_, recent), (level, before) = stats
        s = np.log(_floor_scale(recent, level) / _floor_scale(before, level))
        return s
    if sc == "cusum":
        w = int(p["window"])
        mean, std = stats[0]
        z = np.clip(
            (x[:, x.shape[1] - (w + q - 1) :] - mean) / _floor_scale(std, mean), -10.0, 10.0
        )
        z[np.isnan(z)] = 0.0  # np.nan_to_num: no infinity is left after the clip
        # the upward and downward sums, row by row, in one stack
        both = _cusum_last(np.concatenate([z - p["drift"], -z - p["drift"]]), w)
        upper, lower = both[: len(z)], both[len(z) :]
        s = np.where(upper >= lower, upper, -lower)
        return s
    raise ValueError(f"no last-point form for scorer {sc!r}")


def _scores_of(
    items: Sequence[tuple[ScoreKey, FloatArray]],
    series: Sequence[tuple[SeriesRows, ...] | None] | None = None,
    warm: Sequence[bool] | None = None,
) -> list[FloatArray]:
    """The score of each ``(key, v)`` (``v``: ``(m, key.width)`` values), in stages that each
    run once for all the keys: the transforms (:func:`_signals`), every window statistic of
    every key (:func:`_window_stats`; ``series``: per item, its rows as series, the parts
    stacked, when their wide windows may use the blocks kept between pushes; ``warm``: per
    item, whether every row's kept blocks advance, its ``v`` then :func:`_narrow_width`
    columns), every robust
    z-score's medians (:func:`_medians_mads`), then the scorers' formulas, the standardised
    ones of all keys of one ``positions`` stacked into one (elementwise: each row's numbers are
    its own)."""
    signals = _signals(items)
    requests: list[WindowRequest] = []
    kept: list[KeptSource | None] = []
    owners: list[int] = []
    robust: list[int] = []
    for i, ((key, _), x) in enumerate(zip(items, signals, strict=True)):
        rows = None if series is None else series[i]
        for width, lag, positions in _windows_of(key):
            requests.append((x, width, lag, positions))
            kept.append(
                None if rows is None else (_signal_id(key), rows, warm is not None and warm[i])
            )
            owners.append(i)
        if key.scorer == "robust_z":
            robust.append(i)
    stats: list[list[tuple[FloatArray, FloatArray]]] = [[] for _ in items]
    for i, st in zip(owners, _window_stats(requests, kept), strict=True):
        stats[i].append(st)
    parts = [(signals[i], int(items[i][0].named["window"]), items[i][0].positions) for i in robust]
    medians = dict(zip(robust, _medians_mads(parts), strict=True))
    out: list[FloatArray] = [_NO_SCORES] * len(items)
    standard: dict[int, list[tuple[int, FloatArray, FloatArray, FloatArray]]] = {}
    for i, ((key, _), x) in enumerate(zip(items, signals, strict=True)):
        terms = _standardised(key, x, stats[i], medians.get(i))
        if terms is None:
            out[i] = _score(key, x, stats[i])
        else:
            standard.setdefault(key.positions, []).append((i, *terms))
    for group in standard.values():
        if len(group) == 1:
            i, value, level, scale = group[0]
            out[i] = (value - level) / _floor_scale(scale, level)
            continue
        value, level, scale = (np.concatenate([g[k] for g in group]) for k in (1, 2, 3))
        score = (value - level) / _floor_scale(scale, level)
        a = 0
        for i, v, _, _ in group:
            out[i] = score[a : a + len(v)]
            a += len(v)
    return out


def last_scores(key: ScoreKey, v: FloatArray) -> FloatArray:
    """The rendered ``score`` at the last ``key.positions`` columns of each row of ``v``
    (``(m, key.width)``): ``(m, positions)``."""
    return _scores_of([(key, v)])[0]


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


def _hold(s: FloatArray, direction: Direction, k: int) -> FloatArray:
    """The rendered direction and persistence steps: the smallest directional score of the last
    ``k`` points at each column from the ``k``-th (NaN propagates, as np.minimum does)."""
    s = _directional(s, direction)
    if k > 1:
        held = s[:, k - 1 :]
        for j in range(1, k):
            held = np.minimum(held, s[:, k - 1 - j : s.shape[1] - j])
        s = held
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

    @functools.cached_property
    def last_key(self) -> ScoreKey:
        """Its score at the last point only."""
        return replace(self.score, positions=1)

    @functools.cached_property
    def gate_last_key(self) -> ScoreKey | None:
        """The gate's score at the last point only."""
        return None if self.gate is None else replace(self.gate, positions=1)

    def holds(self, scores: FloatArray) -> BoolArray:
        """The rule's own condition (direction, persistence, threshold) at each column of the
        scores of :attr:`score` from the ``persistence``-th on."""
        return _reaches(_hold(scores, self.direction, self.persistence), self.threshold)

    def labels(self, scores: FloatArray, gate: FloatArray | None = None) -> BoolArray:
        """The label of each row's last point, from the scores of :attr:`score` (and the
        gate's), ``(m, positions)`` each."""
        alarm = self.holds(scores)
        if self.gate is not None and gate is not None:
            alarm &= _reaches(_directional(gate, self.gate_direction), self.gate_threshold)
        if self.cooldown > 0:
            # alarm at the last point, and none in the `cooldown` points before it
            out: BoolArray = alarm[:, -1] & ~alarm[:, :-1].any(axis=1)
            return out
        last: BoolArray = alarm[:, -1]
        return last

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


def last_scores_together(
    wanted: Sequence[tuple[ScoreKey, FloatArray]], series: Sequence[SeriesRows | None] | None = None
) -> list[FloatArray]:
    """:func:`last_scores` of each ``(key, rows)`` pair (``rows``: ``(m, >= key.width)``
    values, the last ``key.width`` read), bit for bit, all computed together: each distinct key
    once over the stacked rows of every pair that needs it (each row's numbers are its own
    whatever rows it is stacked with), and all the keys in the stages of :func:`_scores_of`.

    ``series``: per pair, its rows as series of a history store whose last column is the
    newest point (or ``None``): a key whose every pair has them reads its wide windows at the
    last point from the blocks kept between pushes (:mod:`argos.rules.keptblocks`)."""
    if not wanted:
        return []
    by_key: dict[ScoreKey, list[int]] = {}
    for i, (key, _) in enumerate(wanted):
        by_key.setdefault(key, []).append(i)
    items: list[tuple[ScoreKey, FloatArray]] = []
    as_series: list[tuple[SeriesRows, ...] | None] = []
    warm: list[bool] = []
    for key, users in by_key.items():
        given = [None if series is None else series[i] for i in users]
        as_rows = None if None in given else tuple(g for g in given if g is not None)
        as_series.append(as_rows)
        w = key.width
        narrow = None if as_rows is None else _narrow_width(key)
        warm.append(
            narrow is not None
            and as_rows is not None
            and all(
                kept_advances(_signal_id(key), width, lag, as_rows)
                for width, lag, q in _windows_of(key)
                if _kept(width, q)
            )
        )
        if warm[-1] and narrow is not None:
            w = narrow
        parts = [wanted[i][1] for i in users]
        if len(users) == 1:
            items.append((key, parts[0][:, parts[0].shape[1] - w :]))
        else:
            items.append((key, np.concatenate([r[:, r.shape[1] - w :] for r in parts])))
    out: list[FloatArray] = [_NO_SCORES] * len(wanted)
    computed_all = _scores_of(items, as_series, warm)
    for users, computed in zip(by_key.values(), computed_all, strict=True):
        a = 0
        for i in users:
            n = len(wanted[i][1])
            out[i] = computed[a : a + n]
            a += n
    return out


_SIGN: dict[Direction, float] = {"up": 1.0, "down": -1.0, "both": 1.0}


def _last_reaches(
    requests: Sequence[tuple[LastPointProgram, FloatArray]], scores: Sequence[FloatArray]
) -> tuple[list[BoolArray], set[int]]:
    """Whether each request's directional score at its rows' last point reaches its threshold,
    from its :attr:`~LastPointProgram.last_key` scores, and the requests where some row does.

    Every request whose threshold compares with float64 scores as a float and is neither the
    lowest float nor infinite (:func:`_reaches`) compares at once: the scores times a column of
    +1.0 or -1.0 (``-s`` for ``down``: negation is exact), their absolute values on ``both``
    rows, against a column of the thresholds."""
    out: list[BoolArray] = [_NO_LABELS] * len(requests)
    hit: set[int] = set()
    plain: list[int] = []
    for i, (prog, _) in enumerate(requests):
        t = prog.threshold
        if _exact_float(t) and t is not None and _LOWEST < t < np.inf:
            plain.append(i)
        else:
            out[i] = _reaches(_directional(scores[i][:, -1], prog.direction), t)
            if out[i].any():
                hit.add(i)
    if not plain:
        return out, hit
    sizes = [len(scores[i]) for i in plain]
    progs = [requests[i][0] for i in plain]
    s = np.concatenate([scores[i][:, -1] for i in plain]) * np.repeat(
        [_SIGN[p.direction] for p in progs], sizes
    )
    np.abs(s, out=s, where=np.repeat([p.direction == "both" for p in progs], sizes))
    reached = s >= np.repeat([float(p.threshold) for p in progs], sizes)
    ends = np.cumsum(sizes)
    for k in np.unique(np.searchsorted(ends, np.flatnonzero(reached), side="right")).tolist():
        hit.add(plain[k])
    a = 0
    for i, n in zip(plain, sizes, strict=True):
        out[i] = reached[a : a + n]
        a += n
    return out, hit


def evaluate_last(
    requests: Sequence[tuple[LastPointProgram, FloatArray]],
    series: Sequence[SeriesRows | None] | None = None,
) -> list[BoolArray]:
    """Each request's last-point labels (a program and its rows, ``(m, >= its LOOKBACK)``
    values), computing each distinct score once over the rows of every request that needs it.
    ``series``: per request, its rows as series of a history store, each row's last column its
    newest point (or ``None``), for the blocks kept between pushes (first step only).

    In three steps, each on the rows the previous one leaves: the rule's score at the last point
    reaches its threshold, on every row; the gate's does, where that holds; the whole program
    (persistence: the ``persistence - 1`` points before; cool-down: the ``cooldown`` points
    before), where both hold. A row that fails a step is labelled False whatever the points
    before hold: the persistence's smallest score reaches the threshold only if the last one
    does (``nan_to_num`` keeps the order, NaN lowest), and an alarm needs the last point's
    condition. Alarms are rare, so the wide windows are almost never computed. A program
    without a gate needs no second step: its whole program is computed with the others' gates,
    in one call (:func:`last_scores_together`)."""
    last = last_scores_together([(prog.last_key, rows) for prog, rows in requests], series)
    labels, hit = _last_reaches(requests, last)
    at = {i: np.flatnonzero(labels[i]) for i in sorted(hit)}
    gated = [i for i in at if requests[i][0].gate is not None]
    full = [
        i
        for i in at
        if requests[i][0].gate is None
        and (requests[i][0].cooldown > 0 or requests[i][0].persistence > 1)
    ]
    scores = last_scores_together(
        [(requests[i][0].score, requests[i][1][at[i]]) for i in full]
        + [(_gate_key(requests[i][0], last=True), requests[i][1][at[i]]) for i in gated]
    )
    for i, main in zip(full, scores, strict=False):
        labels[i][at[i]] = requests[i][0].labels(main)
    for i, g in zip(gated, scores[len(full) :], strict=True):
        prog = requests[i][0]
        labels[i][at[i]] = _reaches(
            _directional(g[:, -1], prog.gate_direction), prog.gate_threshold
        )
    full = [
        i
        for i in gated
        if (requests[i][0].cooldown > 0 or requests[i][0].persistence > 1) and labels[i].any()
    ]
    if full:
        at = {i: np.flatnonzero(labels[i]) for i in full}
        scores = last_scores_together(
            [(requests[i][0].score, requests[i][1][at[i]]) for i in full]
            + [(_gate_key(requests[i][0]), requests[i][1][at[i]]) for i in full]
        )
        for i, main, gate in zip(full, scores, scores[len(full) :], strict=False):
            labels[i][at[i]] = requests[i][0].labels(main, gate)
    return labels


def _gate_key(prog: LastPointProgram, last: bool = False) -> ScoreKey:
    """The program's gate key (at the last point only with ``last``)."""
    key = prog.gate_last_key if last else prog.gate
    if key is None:
        raise ValueError("the program has no gate")
    return key


_NO_LABELS: BoolArray = np.zeros(0, dtype=np.bool_)
_NO_SCORES: FloatArray = np.zeros((0, 0))


def _exact_float(v: object) -> bool:
    """Whether ``v`` compares with float64 scores exactly as ``float(v)`` does (a float, or an
    int that converts exactly; ``None``: no gate)."""
    if v is None or isinstance(v, float):
        return True
    return isinstance(v, int) and not isinstance(v, bool) and abs(v) <= 2**53
