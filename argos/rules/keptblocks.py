"""Wide windows' statistics in a steady stream from the blocks of their pairwise trees kept per
series between pushes, bit for bit as :mod:`argos.rules.lastpoint`'s tree computes them.

The rendered ``window_stats`` of a window of ``width`` points merges, largest first, the blocks
of the binary digits of its width, each the pairwise tree of its ``2 ** b`` points from its place
in the window (aligned on the window's start). The level-``b`` block of the points ``p .. p +
2 ** b - 1`` is ``merge(level b - 1 at p, level b - 1 at p + 2 ** (b - 1))`` by the same IEEE
operations wherever it sits: it depends on those points only. A signal whose value at a point
never changes once the point is in the history (every transform of the last-point forms: a fixed
function of the trailing points, see :mod:`argos.rules.lastpoint`) therefore has, at each level,
one new block per new point, and the window ending ``lag`` points before the newest one reads
each of its digits' blocks at a fixed age (how many points ago the block ended).

:class:`BlockCache` (one per history store: a kernel's) keeps, per (signal, width, lag) and per
store row, a ring of the recent blocks of each level (:class:`KeptWindow`): the ages its digits
read, and at every level below the top the age ``2 ** b`` block that the next level's new block
pairs with the new one. A push of one point per series then computes one block per level per
row (a merge of a kept block and the new block one level down), vectorised over every row of
every kept window of every kernel of the push, writes them into the rings, and merges the
digits' blocks as the tree does: O(log width) a row instead of O(width)
(:func:`kept_stats`). A window of 1,440 points keeps 1,451 blocks (23 KB a series), one of 360
points 369 (5.9 KB).

The kept blocks are a derived cache, the history the truth: every history change of a store row
that is not one point appended (a seed or fill, several points at once, a forget that moves
another series into the row, a state import) gives the row a new stamp (the store's
``stamps``, :class:`SeriesRows`); a row's blocks are used only when they were made from the
history one point ago (stamp - 1) at the window's previous push (its ``clock``: the rings are
indexed by it, so a row that missed a push, its series absent from that scrape, is rebuilt).
Any other row (new, stale, or seen for the first time) is rebuilt from its signal's trailing
points by the same doubling as the tree's levels, and then read like the others: exactness
never depends on the cache holding anything. A push that fails while writing a window's blocks
leaves it marked (``writing``): every row of it is rebuilt at the next push. Non-finite values
need nothing special: a block holding one is the same IEEE result (NaN or infinity) whichever
way it was reached.

When every row of a request advances (:func:`kept_advances`, asked before the signals are
computed), only each row's newest signal value is read: the caller computes the signal at the
last points only (``KeptRequest.warm``).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from argos._types import FloatArray, IntArray

__all__ = [
    "BlockCache",
    "KeptRequest",
    "KeptWindow",
    "SeriesRows",
    "SignalId",
    "kept_advances",
    "kept_span",
    "kept_stats",
]

SignalId = tuple[str, tuple[tuple[str, str, object], ...]]
"""A transform and its params (name, type name, value): the signal a window summarises."""


@dataclass(frozen=True)
class _Layout:
    """Where a window of ``width`` points ending ``lag`` points before the newest one keeps its
    blocks: level ``b``'s ring of ``rings[b]`` blocks (the block of age ``a`` at ring slot
    ``(clock - a) % rings[b]``) at rows ``bases[b] ..`` of the kept arrays. ``digits``: the
    merge's blocks, largest first, ``(level, age)``, with the rendered merge's coefficients
    ``size / (count + size)`` and ``count * size / (count + size)`` as Python computes them;
    ``span``: the trailing signal points a rebuild reads."""

    width: int
    lag: int
    top: int
    rings: tuple[int, ...]
    bases: tuple[int, ...]
    columns: int
    span: int
    digits: tuple[tuple[int, int], ...]
    size_coef: tuple[float, ...]
    count_coef: tuple[float, ...]


@functools.lru_cache(maxsize=64)
def _layout(width: int, lag: int) -> _Layout:
    top = width.bit_length() - 1
    digits, size_coef, count_coef = [], [], []
    need = [1 << b if b < top else 0 for b in range(top + 1)]
    for b in range(top, -1, -1):
        if width >> b & 1:
            size, before = 1 << b, (width >> b + 1) << b + 1
            age = lag + width - before - size
            digits.append((b, age))
            size_coef.append(size / (before + size))
            count_coef.append(before * size / (before + size))
            need[b] = max(need[b], age)
    rings = tuple(a + 1 for a in need)
    bases = tuple(sum(rings[:b]) for b in range(top + 1))
    span = max(rings[b] + (1 << b) - 1 for b in range(top + 1))
    return _Layout(
        width,
        lag,
        top,
        rings,
        bases,
        sum(rings),
        span,
        tuple(digits),
        tuple(size_coef),
        tuple(count_coef),
    )


@functools.lru_cache(maxsize=64)
def _places(width: int, lag: int) -> tuple[tuple[IntArray, IntArray, IntArray], ...]:
    """For :func:`_at`: the ring base, age and ring size of each block it places, for the
    pairs, the new blocks and the digits."""
    lay = _layout(width, lag)

    def places(blocks: Sequence[tuple[int, int]]) -> tuple[IntArray, IntArray, IntArray]:
        return (
            np.array([lay.bases[b] for b, _ in blocks], np.int64),
            np.array([a for _, a in blocks], np.int64),
            np.array([lay.rings[b] for b, _ in blocks], np.int64),
        )

    return (
        places([(b, 1 << b) for b in range(lay.top)]),
        places([(b, 0) for b in range(lay.top + 1)]),
        places(lay.digits),
    )


@functools.lru_cache(maxsize=256)
def _at(width: int, lag: int, clock: int) -> tuple[IntArray, IntArray, IntArray]:
    """At this clock, where a window's blocks are: each level's block that the next level's new
    block pairs with (age ``2 ** b``, levels below the top), each level's new block (age 0), and
    the digits' blocks in merge order (the block of age ``a`` of level ``b`` at
    ``bases[b] + (clock - a) % rings[b]``)."""
    out = []
    for bases, ages, rings in _places(width, lag):
        at: IntArray = bases + (clock - ages) % rings
        at.flags.writeable = False
        out.append(at)
    return out[0], out[1], out[2]


def kept_advances(signal: SignalId, width: int, lag: int, parts: Sequence[SeriesRows]) -> bool:
    """Whether every row of these parts has kept blocks of this window that advance at its
    next push (made from the history one point ago at the window's previous push): then only
    the newest signal value of each row is read."""
    for part in parts:
        kept = part.cache.windows.get((signal, width, lag))
        m = len(part.slots)
        if kept is None or kept.writing or not m:
            return False
        last = part.first + m - 1 if part.first >= 0 else int(part.slots.max())
        if last >= len(kept.seal):
            return False
        at = slice(part.first, part.first + m) if part.first >= 0 else part.slots
        if not (kept.seal[at] == part.stamps - (kept.clock + 1)).all():
            return False
    return True


def kept_span(width: int, lag: int) -> int:
    """The trailing signal points a kept window of ``width`` points ``lag`` points before the
    newest one reads to rebuild a row (``width + lag``)."""
    return _layout(width, lag).span


_UNSEALED = -1
"""The seal of a row whose blocks are not usable (stamps and clocks make seals >= 0)."""


class KeptWindow:
    """The kept blocks of one (signal, width, lag) for the rows of one history store.

    ``blocks[c, 0, r]`` and ``blocks[c, 1, r]``: the mean and sum of squared deviations of the
    block at ring column ``c`` (every level's ring, :class:`_Layout`) of store row ``r`` (a
    push reads and writes a few columns for all its rows). ``seal[r]``: the stamp of the history
    row ``r``'s blocks were made from minus the clock of the push that made them, so that they
    advance at the next push only if the row got exactly one point and the window every push
    since (stamp and clock both one more: the same seal)."""

    def __init__(self, width: int, lag: int) -> None:
        self.layout = _layout(width, lag)
        self.blocks: FloatArray = np.zeros((self.layout.columns, 2, 0))
        self.seal: IntArray = np.zeros(0, dtype=np.int64)
        self.clock = 0
        self.writing = False
        """A push is writing its blocks (still set: it failed, every row is stale)."""

    def reserve(self, rows: int) -> None:
        """Room for store rows ``0 .. rows - 1`` (a new row holds nothing usable)."""
        have = len(self.seal)
        if rows <= have:
            return
        n = max(rows, 2 * have) if have else rows  # a kernel's rows: all its first push's
        more = np.zeros((self.layout.columns, 2, n - have))
        self.blocks = np.concatenate((self.blocks, more), axis=2)
        self.seal = np.concatenate((self.seal, np.full(n - have, _UNSEALED, dtype=np.int64)))

    @property
    def nbytes(self) -> int:
        """Bytes held."""
        return self.blocks.nbytes + self.seal.nbytes


class BlockCache:
    """The kept blocks of one history store's rows, per (signal, width, lag)."""

    def __init__(self) -> None:
        self.windows: dict[tuple[SignalId, int, int], KeptWindow] = {}

    def window(self, signal: SignalId, width: int, lag: int) -> KeptWindow:
        """The kept blocks of this window of this signal (empty at first)."""
        kept = self.windows.get((signal, width, lag))
        if kept is None:
            kept = self.windows[signal, width, lag] = KeptWindow(width, lag)
        return kept

    @property
    def nbytes(self) -> int:
        """Bytes held."""
        return sum(k.nbytes for k in self.windows.values())


@dataclass(frozen=True)
class SeriesRows:
    """Rows of a request as series of a history store: each row's store row (``slots``,
    distinct) and the store's stamp of it (one more per point appended; a fresh value on any
    other change), with the store's :class:`BlockCache`. ``first``: when the slots are
    ``first, first + 1, ...``, the first (else -1)."""

    cache: BlockCache
    slots: IntArray
    stamps: IntArray
    first: int = -1


@dataclass(frozen=True)
class KeptRequest:
    """The mean and std of the window of ``width`` points ending ``lag`` points before the last
    column of each row of ``x`` (the signal, ``(m, >= width + lag)``; its last column the newest
    point of the series), whose rows are those of ``parts`` stacked."""

    signal: SignalId
    width: int
    lag: int
    x: FloatArray
    parts: tuple[SeriesRows, ...]
    warm: bool = False
    """Every row's blocks advance (:func:`kept_advances`): ``x`` may hold the newest column
    only."""


class _Group:
    """The rows of one kept window that one call reads: the distinct store rows (a ``run``
    ``(a, b)`` of them when they are ``a .. b - 1``), their stamps and signal rows, the ones
    whose blocks advance (``fresh``; ``None``: all), and where each request's part reads them
    (``shared``: every part is these rows in this order)."""

    __slots__ = (
        "clock",
        "fresh",
        "kept",
        "run",
        "shared",
        "slots",
        "sources",
        "stamps",
        "uses",
        "x",
    )

    def __init__(self, kept: KeptWindow) -> None:
        self.kept = kept
        self.uses: list[tuple[int, int, SeriesRows]] = []
        self.sources: list[tuple[SeriesRows, FloatArray]] = []
        self.slots: IntArray = _NO_ROWS
        self.stamps: IntArray = _NO_ROWS
        self.x: FloatArray = _NO_VALUES
        self.run: tuple[int, int] | None = None
        self.fresh: IntArray | None = None
        self.shared = False
        self.clock = 0

    def read(self, at: IntArray, rows: IntArray | None = None) -> FloatArray:
        """The kept blocks at columns ``at`` of these store rows (``rows`` of the group's, or
        all): ``(len(at), 2, rows)``."""
        blocks = self.kept.blocks
        if rows is None and self.run is not None:
            a, b = self.run
            got: FloatArray = blocks.take(at, axis=0)  # whole rows: faster than a 3-D index
            return got if b - a == blocks.shape[2] else got[:, :, a:b]
        slots = self.slots if rows is None else self.slots[rows]
        picked: FloatArray = blocks[at[:, None, None], np.arange(2)[:, None], slots]
        return picked

    def write(self, at: IntArray, values: FloatArray, rows: IntArray | None) -> None:
        """Set the kept blocks at columns ``at`` of these store rows (``rows`` of the group's,
        or all) to ``values`` (``(len(at), 2, rows)``)."""
        blocks = self.kept.blocks
        if rows is None and self.run is not None:
            a, b = self.run
            if b - a == blocks.shape[2]:
                blocks[at] = values
            else:
                blocks[at, :, a:b] = values
            return
        slots = self.slots if rows is None else self.slots[rows]
        blocks[at[:, None, None], np.arange(2)[:, None], slots] = values


_NO_ROWS: IntArray = np.zeros(0, dtype=np.int64)
_NO_VALUES: FloatArray = np.zeros((0, 0))


def _distinct(group: _Group) -> None:
    """The group's distinct store rows (their stamps and signal rows): one part's own when every
    part is the same rows (a kernel's push), else the sorted union."""
    first, x0 = group.sources[0]
    if all(p is first or np.array_equal(p.slots, first.slots) for p, _ in group.sources[1:]):
        group.slots, group.stamps, group.x = first.slots, first.stamps, x0
        group.shared = True
        if first.first >= 0:
            group.run = (first.first, first.first + len(first.slots))
        return
    span = group.kept.layout.span
    slots = np.concatenate([p.slots for p, _ in group.sources])
    stamps = np.concatenate([p.stamps for p, _ in group.sources])
    # a warm part's rows may hold the newest value only: they advance, never rebuild
    x = np.full((len(slots), span), np.nan)
    a = 0
    for _, rows in group.sources:
        n = min(span, rows.shape[1])
        x[a : a + len(rows), span - n :] = rows[:, rows.shape[1] - n :]
        a += len(rows)
    group.slots, at = np.unique(slots, return_index=True)
    group.stamps, group.x = stamps[at], x[at]
    if int(group.slots[-1]) - int(group.slots[0]) == len(group.slots) - 1:
        group.run = (int(group.slots[0]), int(group.slots[-1]) + 1)


def _rebuild(group: _Group, rows: IntArray) -> None:
    """Every ring of these rows of the group from their signal's last ``span`` points: each
    level's block at every start, by the tree's operations (level ``b`` from level ``b - 1``'s
    pairs)."""
    kept, clock = group.kept, group.clock
    lay = kept.layout
    x = group.x[rows]
    mean: FloatArray = np.ascontiguousarray(x[:, x.shape[1] - lay.span :])
    q: FloatArray = np.zeros_like(mean)
    for b in range(lay.top + 1):
        if b:
            h = 1 << (b - 1)
            left = mean[:, :-h]
            d = mean[:, h:] - left
            dd = d * d
            if b == 1:
                q = dd * 0.5  # 0.0 + 0.0 + y is y
            else:
                q = q[:, :-h] + q[:, h:]
                dd *= h / 2
                q += dd
            d *= 0.5
            mean = left + d
        ages = np.arange(lay.rings[b])
        src = lay.span - ages - (1 << b)
        dest = lay.bases[b] + (clock - ages) % lay.rings[b]
        group.write(dest, np.stack((mean[:, src].T, q[:, src].T), axis=1), rows)


def _advance(groups: Sequence[_Group]) -> None:
    """One new block per level for the fresh rows of every group: level ``b``'s new block is the
    merge of level ``b - 1``'s kept block of age ``2 ** (b - 1)`` and its new one (the newest
    signal value at level 0), by the tree's operations, all rows of all groups at once (the
    groups with more levels first, so that each level's rows are a prefix)."""
    todo = sorted(
        (g for g in groups if g.fresh is None or len(g.fresh)), key=lambda g: -g.kept.layout.top
    )
    if not todo:
        return
    sizes = [len(g.slots) if g.fresh is None else len(g.fresh) for g in todo]
    n = sum(sizes)
    levels = todo[0].kept.layout.top
    left = np.empty((max(levels, 1), 2, n))
    new = np.empty((levels + 1, 2, n))
    left_m, left_q = left[:, 0], left[:, 1]
    new_m, new_q = new[:, 0], new[:, 1]
    new_q[0] = 0.0
    upto = [0] * (levels + 1)
    a = 0
    for g, m in zip(todo, sizes, strict=True):
        lay = g.kept.layout
        pairs, _, _ = _at(lay.width, lay.lag, g.clock)
        left[: lay.top, :, a : a + m] = g.read(pairs, g.fresh)
        rows = slice(None) if g.fresh is None else g.fresh
        new_m[0, a : a + m] = g.x[rows, g.x.shape[1] - 1]
        a += m
        for b in range(lay.top + 1):
            upto[b] = a
    for b in range(1, levels + 1):
        k = upto[b]
        lm = left_m[b - 1, :k]
        d = new_m[b - 1, :k] - lm
        dd = d * d
        out_q = new_q[b, :k]
        if b == 1:
            np.multiply(dd, 0.5, out=out_q)  # 0.0 + 0.0 + y is y
        else:
            np.add(left_q[b - 1, :k], new_q[b - 1, :k], out=out_q)
            dd *= (1 << (b - 1)) / 2
            out_q += dd
        d *= 0.5
        np.add(lm, d, out=new_m[b, :k])
    a = 0
    for g, m in zip(todo, sizes, strict=True):
        lay = g.kept.layout
        _, newest, _ = _at(lay.width, lay.lag, g.clock)
        g.write(newest, new[: lay.top + 1, :, a : a + m], g.fresh)
        a += m


def _merge_digits(groups: Sequence[_Group]) -> dict[int, tuple[FloatArray, FloatArray]]:
    """Each group's mean and std (per distinct row): its digits' blocks merged largest first as
    the tree merges them, step ``s`` on the rows of the groups with more than ``s`` digits (a
    prefix: the groups in decreasing number of digits), each with its own coefficients."""
    order = sorted(groups, key=lambda g: -len(g.kept.layout.digits))
    sizes = [len(g.slots) for g in order]
    n, most = sum(sizes), len(order[0].kept.layout.digits)
    dig = np.empty((most, 2, n))
    dm, dq = dig[:, 0], dig[:, 1]
    a = 0
    for g, m in zip(order, sizes, strict=True):
        lay = g.kept.layout
        _, _, digits = _at(lay.width, lay.lag, g.clock)
        dig[: len(digits), :, a : a + m] = g.read(digits)
        a += m
    mean, q = dm[0].copy(), dq[0].copy()
    for step in range(1, most):
        users = [i for i, g in enumerate(order) if len(g.kept.layout.digits) > step]
        k = sum(sizes[i] for i in users)
        counts = [sizes[i] for i in users]
        d = dm[step, :k] - mean[:k]
        q_head = q[:k]
        q_head += dq[step, :k]
        dd = d * d
        dd *= np.repeat([order[i].kept.layout.count_coef[step] for i in users], counts)
        q_head += dd
        d *= np.repeat([order[i].kept.layout.size_coef[step] for i in users], counts)
        mean[:k] += d
    std = np.sqrt(q / np.repeat([float(g.kept.layout.width) for g in order], sizes))
    out = {}
    a = 0
    for g, m in zip(order, sizes, strict=True):
        out[id(g.kept)] = (mean[a : a + m], std[a : a + m])
        a += m
    return out


def kept_stats(requests: Sequence[KeptRequest]) -> list[tuple[FloatArray, FloatArray]]:
    """Each request's mean and std, ``(m, 1)`` each, bit for bit the tree's
    (:func:`argos.rules.lastpoint._tree_stats`' numbers for the window at the last point).

    Each kept window of the requests' parts is advanced once (its clock one more), whatever
    number of requests read it: its rows made from the history one point ago at its previous
    push get one new block per level (:func:`_advance`), the others are rebuilt
    (:func:`_rebuild`); then every row's digits are merged (:func:`_merge_digits`)."""
    groups: dict[int, _Group] = {}
    warm: set[int] = set()
    for i, req in enumerate(requests):
        a = 0
        for part in req.parts:
            kept = part.cache.window(req.signal, req.width, req.lag)
            group = groups.get(id(kept))
            if group is None:
                group = groups[id(kept)] = _Group(kept)
            m = len(part.slots)
            if req.warm:
                warm.add(id(kept))
            group.uses.append((i, a, part))
            group.sources.append((part, req.x[a : a + m]))
            a += m
    for g in groups.values():
        _distinct(g)
        kept = g.kept
        kept.reserve(g.run[1] if g.run is not None else int(g.slots.max()) + 1)
        at: slice | IntArray = slice(*g.run) if g.run is not None else g.slots
        kept.clock += 1
        g.clock = kept.clock
        fresh = kept.seal[at] == g.stamps - g.clock
        if kept.writing:  # a call that failed while writing: nothing it held is usable
            fresh[:] = False
        kept.writing = True  # until this push's blocks are all written and sealed
        if not fresh.all():
            if id(kept) in warm:  # the caller checked (kept_advances): never so
                raise RuntimeError("kept blocks to rebuild from the newest point only")
            g.fresh = np.flatnonzero(fresh)
            _rebuild(g, np.flatnonzero(~fresh))
    _advance(list(groups.values()))
    for g in groups.values():
        g.kept.seal[slice(*g.run) if g.run is not None else g.slots] = g.stamps - g.clock
        g.kept.writing = False
    stats = _merge_digits(list(groups.values()))
    pieces: list[list[tuple[int, FloatArray, FloatArray]]] = [[] for _ in requests]
    for key, g in groups.items():
        mean, std = stats[key]
        for i, a, part in g.uses:
            if g.shared:
                pieces[i].append((a, mean, std))
            else:
                where = np.searchsorted(g.slots, part.slots)
                pieces[i].append((a, mean[where], std[where]))
    out = []
    for got in pieces:
        got.sort(key=lambda p: p[0])
        if len(got) == 1:
            out.append((got[0][1][:, None], got[0][2][:, None]))
        else:
            out.append(
                (
                    np.concatenate([p[1] for p in got])[:, None],
                    np.concatenate([p[2] for p in got])[:, None],
                )
            )
    return out
