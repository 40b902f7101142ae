"""The few-event protocol of docs/generator.md: rank the builtin generator's few-event choices.

It scores them on many pseudo-units with exactly 1 (or 2) labeled events, never touching any
official test part.

Every series of KPI, Yahoo (A1-A4) and NAB is first cut at its official test start (the test part
is gone). In what remains, a pseudo-unit is a slice ``[a, c)`` cut at ``b``:

* its fitting part ``[a, b)`` holds exactly ``k`` labeled events (``k`` = 1 or 2): ``a`` is the end
  of the event before them (or 0), moved forward to at most ``PRE`` points before the first one;
  ``b`` is midway between the last of them and the next event;
* its pseudo-test part ``[b, c)`` holds at least that next event: ``c`` is at least as far from
  ``b`` as ``a`` is, and at least ``TAIL`` points past the next event's end (capped at the cut).

With ``--k 0`` the fitting part holds no event at all (the generator's unsupervised rule): it is
the first 3/4 of the quiet stretch before an event (from the end of the previous one, at most
``PRE`` points), and the pseudo-test holds that event. A ``k = 0`` unit is *long* when the event
to catch is.

The fitting part is split train / validation as every dataset here does (last 20% validation),
and the unit goes through ``argos.evaluation.harness.evaluate`` exactly as the ``argos-builtin``
method and the baselines see a series with an official ``test_start``. A unit is *long* when its
fitting events are 20 points or more on average (the generator's own ``long_event`` criterion;
NAB-like), else *short*. Per series at most ``PER_SERIES`` units per ``k`` are kept, evenly spaced
over the possible positions (deterministic).

Reported per variant: event-PA F1 on the pseudo-tests, mean over units and pooled, separately for
long and short units and ``k``; ``static-threshold`` is scored on the same units as the reference.

Usage: ``python benchmarks/few_event_protocol.py --variants base,previous [--k 1,2] [--workers 2]``
(variants: ``VARIANTS`` below; ``static-threshold`` is always included, and with
``--cooled-static`` also ``static-threshold`` with the generator's cool-down applied afterwards).
Rows whose choice lost use :class:`AblationConfig`: the switches production no longer has, put
back through the extension points of ``SearchConfig`` (docs/generator.md, "SearchConfig").
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from argos._types import BoolArray, FloatArray
from argos.data.catalog import load_dataset
from argos.data.protocol import split_series
from argos.data.series import Dataset, Series, SplitSpec
from argos.evaluation.baselines import StaticThreshold
from argos.evaluation.harness import evaluate
from argos.methods import FittedDetector, Method, register_method
from argos.metrics import aggregate_mean, aggregate_pooled, events, format_score
from argos.rules.grammar import SCORERS, Structure
from argos.rules.templates import apply_cooldown
from argos.training.builtin.config import SearchConfig
from argos.training.builtin.method import BuiltinMethod
from argos.training.builtin.shapes import Candidate, FitSeries, Triple, median_center
from argos.training.builtin.sweep import MarginFn, std_margin

PRE = 3000  # at most this many points of fitting history before the first fitting event
TAIL = 100  # the pseudo-test runs at least this far past its first event (if the data allow)
MIN_FIT = 200  # fitting parts shorter than this are skipped (windows need history)
LONG = 20  # mean fitting-event length (points) from which a unit counts as long
PER_SERIES = {"kpi": 8, "yahoo": 2, "nab": 4}


# --------------------------------------------------------------------------------------------------
# The switches of the rows whose choice lost: not in production's SearchConfig, but re-runnable
# through the search's extension points (SearchConfig.few_event_shapes / tie_margin / order_ranking)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AblationConfig(SearchConfig):
    """:class:`SearchConfig` with the switches of the rejected rows of docs/generator.md; every
    switch's default is what production does, so ``AblationConfig()`` searches as ``argos train``.

    Attributes:
        band: in the few-event regime, also search a band around the train median of the values
            (its centre fitted like a threshold: on train, re-fitted on train + validation).
        few_events_long_shapes: for units with few LONG events, search only these (transform,
            scorer) pairs of the simple ones (``("value", "band")`` adds the band); None: all.
        few_events_margin: the selection tie-break margin for units with few LONG events:
            ``"std"`` (production), ``"relative"`` (:func:`relative_margin`) or ``"uncapped"``.
        simple_first: in the few-event regime, the simplest shape's best candidate goes first
            unless another is strictly better on both train and validation.
        few_events_order: in the few-event regime, break selection ties by simplicity (static
            value first) before the margin.
    """

    band: bool = False
    few_events_long_shapes: tuple[tuple[str, str], ...] | None = None
    few_events_margin: str = "std"
    simple_first: bool = False
    few_events_order: bool = False

    def few_event_shapes(
        self, triples: list[Triple], series: Sequence[FitSeries], *, long: bool, fit_on_all: bool
    ) -> list[Triple]:
        triples = super().few_event_shapes(triples, series, long=long, fit_on_all=fit_on_all)
        shapes = self.few_events_long_shapes if long else None
        if self.band or (shapes is not None and ("value", "band") in shapes):
            center = median_center(series, train_only=not fit_on_all)
            triples.insert(0, ("value", "band", (("center", center),)))
        if shapes is not None:
            triples = [t for t in triples if (t[0], t[1]) in shapes]
        return triples

    def tie_margin(self, *, few_long: bool) -> MarginFn:
        if not few_long or self.few_events_margin == "std":
            return std_margin
        if self.few_events_margin == "relative":
            return relative_margin
        if self.few_events_margin == "uncapped":
            return uncapped_margin
        raise ValueError(f"unknown margin {self.few_events_margin!r}")

    def order_ranking(self, ranking: list[Candidate], *, few: bool) -> list[Candidate]:
        if few and self.few_events_order:
            res = self.resolution
            ranking = sorted(
                ranking,
                key=lambda c: (-round(c.selection / res), simplicity(c.structure), -c.margin),
            )
        if few and self.simple_first:
            ranking = simple_first(ranking)
        return ranking


def relative_margin(normal: FloatArray, c: float, below: float) -> float:
    """The share of the event maximum's excess over the median normal score that is clear of the
    next lower score, in [0, 1]: 1 = nothing else comes near, 0 = the event barely stands out."""
    normal = normal[np.isfinite(normal)]
    typical = float(np.median(normal)) if len(normal) else -math.inf
    if not math.isfinite(below) or not math.isfinite(typical) or c <= typical:
        return 1.0
    return min(1.0, (c - below) / (c - typical))


def uncapped_margin(normal: FloatArray, c: float, below: float) -> float:
    """:func:`~argos.training.builtin.sweep.std_margin` without its cap (10 when nothing is
    below the candidate)."""
    normal = normal[np.isfinite(normal)]
    if not math.isfinite(below):
        return 10.0
    spread = float(normal.std()) if len(normal) > 1 else 0.0
    return (c - below) / spread if spread > 0 else math.inf


def simplicity(st: Structure) -> tuple[int, int, float, int]:
    """Rank of a shape by simplicity: band, static value, static difference, then the scorers in
    grammar order (differences after values); longer windows and shorter persistence first."""
    order = {("value", "band"): -1, ("value", "static"): 0, ("diff", "static"): 1}
    rank = order.get(st.key, 2 + list(SCORERS).index(st.scorer) + 10 * (st.transform != "value"))
    dirs = {"both": 0, "up": 1, "down": 2}[st.direction]
    return (rank, st.persistence, -st.param_dict.get("window", 0.0), dirs)


def simple_first(ranking: list[Candidate]) -> list[Candidate]:
    """The simplest shape's best candidate first, unless the top one beats it on train AND
    validation (strictly)."""
    simplest = min(simplicity(c.structure)[0] for c in ranking)
    simple = next(c for c in ranking if simplicity(c.structure)[0] == simplest)
    top = ranking[0]
    if top is simple:
        return ranking
    better_val = (
        top.val_f1 > simple.val_f1
        if top.val_f1 is not None and simple.val_f1 is not None
        else top.val_fp < simple.val_fp
    )
    if top.train_f1 > simple.train_f1 and better_val:
        return ranking
    return [simple, *[c for c in ranking if c is not simple]]


#: The defaults before the cool-down and the few-long-event restrictions (the rows of the first
#: table in docs/generator.md were measured with these).
PREVIOUS: dict[str, Any] = {
    "cooldown": 0.0,
    "few_events_long_directions": ("up", "down", "both"),
    "few_events_long_persistences": (1, 2, 3),
    "few_events_or_ties": False,
}


def _cfg(gap: float = 0.75, margin: str = "std", **kw: Any) -> SearchConfig:
    """A config of the first table: the previous defaults, the few-LONG-event gap and tie-break
    margin spelled out."""
    return AblationConfig(few_events_long_gap=gap, few_events_margin=margin, **{**PREVIOUS, **kw})


def _now(**kw: Any) -> SearchConfig:
    """A config of the second table: the current defaults with some settings changed."""
    return AblationConfig(**kw)


_BAND = ("value", "band")
_STATIC = ("value", "static")
_SIMPLE_NOT_STATIC = (
    ("diff", "static"),
    ("value", "zscore"),
    ("diff", "zscore"),
    ("value", "robust_z"),
    ("diff", "robust_z"),
)

#: The rows of the docs table (every setting explicit, so the names survive default changes).
VARIANTS: dict[str, Callable[[], SearchConfig]] = {
    "base": lambda: SearchConfig(),  # the current defaults
    # the second table: cool-down and the few-long-event restrictions, one at a time
    "previous": lambda: _cfg(),  # the defaults before them
    "long-both-k1": lambda: _cfg(
        few_events_long_directions=("both",), few_events_long_persistences=(1,)
    ),
    "long-both-k1-ties": lambda: _cfg(
        few_events_long_directions=("both",),
        few_events_long_persistences=(1,),
        few_events_or_ties=True,
    ),
    "no-cooldown": lambda: _now(cooldown=0.0),
    "cooldown-.25": lambda: _now(cooldown=0.25),
    "cooldown-1": lambda: _now(cooldown=1.0),
    "cooldown-2": lambda: _now(cooldown=2.0),
    "cooldown-long-gap-.5": lambda: _now(few_events_long_gap=0.5),
    "cooldown-long-gap-.9": lambda: _now(few_events_long_gap=0.9),
    "cooldown-long-or1": lambda: _now(few_events_or=1),
    "cooldown-long-no-ties": lambda: _now(few_events_or_ties=False),
    # the cap on z-score thresholds (deviations) an exported rule may have
    "max-z-none": lambda: _now(max_z=None),
    "max-z-50": lambda: _now(max_z=50.0),
    # the share of normal points a rule's condition may hold on (None: any)
    "duty-none": lambda: _now(max_duty=None),
    "duty-.05": lambda: _now(max_duty=0.05),
    "duty-.01": lambda: _now(max_duty=0.01),
    "long-gap-.6": lambda: _now(few_events_long_gap=0.6),
    "long-margin-uncapped": lambda: _now(few_events_margin="uncapped"),
    "long-margin-relative": lambda: _now(few_events_margin="relative"),
    "long-band-not-static": lambda: _now(few_events_long_shapes=(_BAND, *_SIMPLE_NOT_STATIC)),
    "long-no-static": lambda: _now(few_events_long_shapes=_SIMPLE_NOT_STATIC),
    "long-band-and-static": lambda: _now(
        few_events_long_shapes=(_BAND, _STATIC, *_SIMPLE_NOT_STATIC)
    ),
    # units without a fitting event (--k 0): the unsupervised band rule's cool-down, or no rule
    "unlabeled-none": lambda: _now(unlabeled_cooldown=None),
    "unlabeled-cd0": lambda: _now(unlabeled_cooldown=0),
    "unlabeled-cd1": lambda: _now(unlabeled_cooldown=1),
    "unlabeled-cd100": lambda: _now(unlabeled_cooldown=100),
    # the first table (previous defaults), few LONG events: gap x tie-break margin x OR size
    "rel-g97": lambda: _cfg(0.97, "relative"),  # the defaults before this protocol
    "rel-g90": lambda: _cfg(0.9, "relative"),
    "rel-g50": lambda: _cfg(0.5, "relative"),
    "rel-g97-or1": lambda: _cfg(0.97, "relative", few_events_or=1),
    "std-g97": lambda: _cfg(0.97),
    "std-g90": lambda: _cfg(0.9),  # the defaults before the relative margin and .97
    "std-g75": lambda: _cfg(0.75),  # chosen
    "std-g50": lambda: _cfg(0.5),
    "std-g90-or1": lambda: _cfg(0.9, few_events_or=1),
    "std-g75-or1": lambda: _cfg(0.75, few_events_or=1),
    "std-g50-or1": lambda: _cfg(0.5, few_events_or=1),
    # few LONG events: only some shapes (gap .97 / .9 / .5, relative margin)
    "L-static": lambda: _cfg(0.97, "relative", few_events_long_shapes=(_STATIC,)),
    "L-band": lambda: _cfg(0.97, "relative", few_events_long_shapes=(_BAND,)),
    "L-band-static": lambda: _cfg(0.97, "relative", few_events_long_shapes=(_BAND, _STATIC)),
    "L-value": lambda: _cfg(
        0.97,
        "relative",
        few_events_long_shapes=(_STATIC, ("value", "zscore"), ("value", "robust_z")),
    ),
    "L-band-g90": lambda: _cfg(0.9, "relative", few_events_long_shapes=(_BAND,)),
    "L-band-g50": lambda: _cfg(0.5, "relative", few_events_long_shapes=(_BAND,)),
    "L-static-g50": lambda: _cfg(0.5, "relative", few_events_long_shapes=(_STATIC,)),
    "L-band-static-g50": lambda: _cfg(0.5, "relative", few_events_long_shapes=(_BAND, _STATIC)),
    # every few-event unit (short too), relative margin for the long ones
    "all-g50": lambda: _cfg(0.5, "relative", few_events_gap=0.5),
    "all-band": lambda: _cfg(0.97, "relative", band=True),
    "all-simple-std": lambda: _cfg(0.97, simple_first=True),
    "all-band-simple-std": lambda: _cfg(0.97, band=True, simple_first=True),
    "all-band-simple-or1-g50": lambda: _cfg(
        0.5, band=True, simple_first=True, few_events_or=1, few_events_gap=0.5
    ),
}


@dataclass(frozen=True)
class Unit:
    dataset: str
    series: Series  # the slice [a, c), meta["test_start"] = b - a
    k: int
    long: bool


def _positions(n: int, keep: int) -> list[int]:
    if n <= keep:
        return list(range(n))
    return sorted(set(np.rint(np.linspace(0, n - 1, keep)).astype(int).tolist()))


def units_of(name: str, ds: Dataset, k: int, per_series: int) -> list[Unit]:
    """The pseudo-units with ``k`` fitting events of every series of ``ds`` (before test)."""
    out: list[Unit] = []
    for s in ds.series:
        if s.labels is None:
            continue
        sp = split_series(s, ds.split)
        n_h = sp.test_start
        st, en = events(s.labels[:n_h])
        possible = []
        for i in range(len(st) - k):
            a = max(int(en[i - 1]) if i > 0 else 0, int(st[i]) - PRE)
            nxt = i + k
            if k == 0:  # no fitting event: fit on 3/4 of the quiet stretch before event i
                b = a + (int(st[i]) - a) * 3 // 4
            else:
                last_end = int(en[i + k - 1])
                b = last_end + (int(st[nxt]) - last_end) // 2
            c = min(n_h, max(b + (b - a), int(en[nxt]) + TAIL))
            if b - a < MIN_FIT or c - b < 10:
                continue
            possible.append((i, a, b, c))
        for j in _positions(len(possible), per_series):
            i, a, b, c = possible[j]
            lengths = en[i : i + max(k, 1)] - st[i : i + max(k, 1)]  # k = 0: the event to catch
            meta = {kk: v for kk, v in s.meta.items() if kk not in ("test_start", "train_fraction")}
            meta["test_start"] = b - a
            piece = Series(
                id=f"{name}/{s.id}/k{k}/{i}",
                timestamps=np.array(s.timestamps[a:c], copy=True),
                values=np.array(s.values[a:c], copy=True),
                labels=np.array(s.labels[a:c], copy=True),
                meta=meta,
            )
            out.append(Unit(name, piece, k, float(lengths.mean()) >= LONG))
    return out


def build_units(ks: list[int], datasets: list[str]) -> list[Unit]:
    units: list[Unit] = []
    for name in datasets:
        ds = load_dataset(name)
        for k in ks:
            units += units_of(name, ds, k, PER_SERIES[name])
    return units


def _register(name: str, make: Callable[[], SearchConfig]) -> str:
    method = f"fe-{name}"

    def factory(*, seed: int = 0) -> Method:
        return BuiltinMethod(seed=seed, config=replace(make(), seed=seed))

    register_method(method, factory, description=name, kind="argos", replace=True)
    return method


class _CooledStatic:
    """``static-threshold`` with the generator's cool-down bolted on after the fact (half the mean
    labeled event length of the fitting part; 10 points without a label): how much of the
    generator's lead is alert suppression alone."""

    name = "static-threshold+cooldown"

    def fit(self, train: Sequence[Series], validation: Sequence[Series]) -> FittedDetector:
        det = StaticThreshold().fit(train, validation)
        lengths = [
            int(e - s)
            for part in (*train, *validation)
            if part.labels is not None
            for s, e in zip(*events(part.labels), strict=True)
        ]
        quiet = max(1, round(0.5 * float(np.mean(lengths)))) if lengths else 10

        class _Cooled:
            def detect(self, series: Series) -> BoolArray:
                return apply_cooldown(det.detect(series), quiet)

        return _Cooled()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", default="base")
    ap.add_argument("--k", default="1,2", help="fitting events per unit (comma-separated)")
    ap.add_argument("--datasets", default="kpi,yahoo,nab")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--count", action="store_true", help="only count the units")
    ap.add_argument(
        "--cooled-static",
        action="store_true",
        help="also score static-threshold with the same cool-down, applied after the fact",
    )
    ap.add_argument(
        "--only", choices=("long", "short"), help="only these units (long-only variants)"
    )
    args = ap.parse_args()
    ks = [int(x) for x in args.k.split(",")]
    t0 = time.perf_counter()
    units = build_units(ks, args.datasets.split(","))
    if args.only:
        units = [u for u in units if u.long == (args.only == "long")]
    groups: dict[str, list[Unit]] = {}
    for u in units:
        for g in (
            f"{'long' if u.long else 'short'}",
            f"{'long' if u.long else 'short'} k={u.k}",
            f"{'long' if u.long else 'short'} {u.dataset}",
        ):
            groups.setdefault(g, []).append(u)
    order = sorted(groups, key=lambda g: (not g.startswith("long"), len(g), g))
    print(f"{len(units)} units: " + ", ".join(f"{g} {len(groups[g])}" for g in order))
    if args.count:
        return 0
    names = args.variants.split(",")
    refs = ["static-threshold"]
    if args.cooled_static:
        register_method(
            _CooledStatic.name,
            lambda *, seed=0: _CooledStatic(),
            description="static-threshold + the cool-down",
            kind="baseline",
            replace=True,
        )
        refs.append(_CooledStatic.name)
    methods = [_register(n, VARIANTS[n]) for n in names] + refs
    labels = [*names, *refs]
    ds = Dataset(
        "few-event-units",
        [u.series for u in units],
        SplitSpec(0.7, 0.2, "series"),
        {"all": [u.series.id for u in units]},
        {},
    )
    rows = evaluate(ds, methods, workers=args.workers, with_scores=False).rows
    by: dict[tuple[str, str], Any] = {(r.method, r.series_id): r for r in rows}
    print(f"({time.perf_counter() - t0:.0f} s) event-PA F1 on the pseudo-tests: mean / pooled")
    print(f"{'variant':>22}  " + "  ".join(f"{g + f' ({len(groups[g])})':>22}" for g in order))
    for label, m in zip(labels, methods, strict=True):
        cells = []
        for g in order:
            sc = [by[(m, u.series.id)].scores["event_pa"] for u in groups[g]]
            mean = aggregate_mean(sc).f1
            pooled = aggregate_pooled(sc).f1
            f1s = (format_score(f1, missing="  -  ") for f1 in (mean, pooled))
            cells.append(" / ".join(f1s))
        print(f"{label:>22}  " + "  ".join(f"{c:>22}" for c in cells))
    # paired, per unit: how many units each variant scores higher / lower than the first one
    print(f"units better / worse than {labels[0]} (event-PA F1 per unit)")
    for label, m in zip(labels[1:], methods[1:], strict=True):
        cells = []
        for g in order:
            d = [
                (by[(m, u.series.id)].scores["event_pa"].f1 or 0.0)
                - (by[(methods[0], u.series.id)].scores["event_pa"].f1 or 0.0)
                for u in groups[g]
            ]
            cells.append(f"+{sum(x > 1e-9 for x in d)} -{sum(x < -1e-9 for x in d)}")
        print(f"{label:>22}  " + "  ".join(f"{c:>22}" for c in cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
