"""Held-out check of the builtin search's choices for a non-default objective (docs/generator.md,
"The objective"), without test labels.

Every series is cut at its test start (the test part and its labels are gone), and ``argos eval``'s
own split of what remains (the dataset's train fraction, validation inside it) gives the scored
pseudo-test. The builtin generator's variants and the baselines are all fit for ``--objective``
and scored on the pseudo-test: 7-delay F1 (mean over series and pooled), event-PA and point F1.

Usage: ``python benchmarks/objective_validation.py --dataset nab --objective delay:7 --methods
chosen,event-pa-limits,all-baselines [--workers 2] [--detail] [--train-fraction F] [--series
IDS]``. Variants (``VARIANTS``) are subclasses of :class:`SearchConfig` overriding
:meth:`SearchConfig.for_objective` (and the few-event shapes); ``prior-W`` and ``prior-W-all``
give long events (with the delay objective, whatever their number) the catch prior of weight W,
fit on train and selected on validation, or fit and selected in sample (:class:`WithPrior`);
other names are ``argos eval`` method names. ``--train-fraction`` moves the pseudo-test's start
(the catch prior was chosen on 0.6, 0.7 and 0.8); ``--series`` keeps only the given series.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from argos.data.catalog import load_dataset
from argos.data.protocol import split_series
from argos.data.series import Dataset, Series
from argos.evaluation.harness import evaluate
from argos.methods import register_method, resolve_methods
from argos.metrics import Objective
from argos.training.builtin.config import SearchConfig
from argos.training.builtin.method import BuiltinMethod
from argos.training.builtin.shapes import FitSeries, Triple


@dataclass(frozen=True)
class EventPaLimits(SearchConfig):
    """The event-PA cool-down and duty limit whatever the objective."""

    def for_objective(self, quiet: int, *, long: bool, events: int) -> tuple[SearchConfig, int]:
        return self, quiet

    def few_event_shapes(
        self, triples: list[Triple], series: Sequence[FitSeries], *, long: bool, fit_on_all: bool
    ) -> list[Triple]:
        return SearchConfig.few_event_shapes(
            replace(self, objective=Objective()), triples, series, long=long, fit_on_all=fit_on_all
        )


@dataclass(frozen=True)
class CapOnly(EventPaLimits):
    """The cool-down capped at K points, the duty limit kept, for every unit."""

    def for_objective(self, quiet: int, *, long: bool, events: int) -> tuple[SearchConfig, int]:
        return self, min(quiet, self.objective.delay)


@dataclass(frozen=True)
class LongFree(EventPaLimits):
    """Long events: no cool-down and no duty limit (the validation penalty and the simple shapes
    of the few-event regime kept); short events: the cool-down capped at K."""

    def for_objective(self, quiet: int, *, long: bool, events: int) -> tuple[SearchConfig, int]:
        if long:
            return replace(self, max_duty=None), 0
        return self, min(quiet, self.objective.delay)


@dataclass(frozen=True)
class LongFreeNoPenalty(LongFree):
    """As :class:`LongFree`, and no validation false-alarm penalty for long events."""

    def for_objective(self, quiet: int, *, long: bool, events: int) -> tuple[SearchConfig, int]:
        config, q = super().for_objective(quiet, long=long, events=events)
        return (replace(config, no_event_fp_penalty=0.0) if long else config), q


@dataclass(frozen=True)
class WithPrior(SearchConfig):
    """Long events with the delay objective: thresholds for the expected F1 of the next events,
    the catch rate shrunk towards a random window's with the weight of ``long_prior`` events."""

    long_prior: float = 1.0
    long_in_sample: bool = False

    def for_objective(self, quiet: int, *, long: bool, events: int) -> tuple[SearchConfig, int]:
        config, q = super().for_objective(quiet, long=long, events=events)
        if long and self.objective.kind == "delay":
            return replace(
                config, catch_prior=self.long_prior, fit_in_sample=self.long_in_sample
            ), q
        return config, q


@dataclass(frozen=True)
class ExactCatch(SearchConfig):
    """Long events with the delay objective: thresholds fit for the labeled events' own F1, on
    train, selected on validation (no catch prior; the choice before it)."""

    def for_objective(self, quiet: int, *, long: bool, events: int) -> tuple[SearchConfig, int]:
        config, q = super().for_objective(quiet, long=long, events=events)
        return replace(config, catch_prior=None, fit_in_sample=False), q


VARIANTS: dict[str, type[SearchConfig]] = {
    "chosen": SearchConfig,  # production: SearchConfig.for_objective
    "event-pa-limits": EventPaLimits,
    "cap-only": CapOnly,
    "long-free": LongFree,
    "long-free-no-penalty": LongFreeNoPenalty,
    "exact-catch": ExactCatch,
}


def held_out(dataset: Dataset) -> Dataset:
    """Every series cut at its test start, with no official split left: the harness splits what
    remains as it splits any series."""
    cut = []
    for s in dataset.series:
        h = s.slice(0, split_series(s, dataset.split).test_start)
        meta = {k: v for k, v in s.meta.items() if k not in ("test_start", "train_fraction")}
        labels = None if h.labels is None else h.labels.copy()
        cut.append(Series(h.id, h.timestamps.copy(), h.values.copy(), labels, meta))
    name = f"{dataset.name}-held-out"
    return Dataset(name, cut, dataset.split, dataset.partitions, dataset.meta)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--objective", default="delay:7")
    ap.add_argument("--methods", default="chosen,event-pa-limits,all-baselines")
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--detail", action="store_true", help="per-series k-delay TP/FP/FN")
    ap.add_argument("--series", default=None, help="only these series ids (comma-separated)")
    ap.add_argument(
        "--train-fraction",
        type=float,
        default=None,
        help="the pseudo-split's train share of what remains (default: the dataset's own)",
    )
    args = ap.parse_args()
    goal = Objective.parse(args.objective)
    data = held_out(load_dataset(args.dataset, data_dir=args.data_dir))
    if args.series:
        keep = set(args.series.split(","))
        parts = {p: [i for i in ids if i in keep] for p, ids in data.partitions.items()}
        kept = [s for s in data.series if s.id in keep]
        data = Dataset(data.name, kept, data.split, parts, data.meta)
    if args.train_fraction is not None:
        split = replace(data.split, train_fraction=args.train_fraction)
        data = Dataset(data.name, data.series, split, data.partitions, data.meta)
    names = []
    for name in args.methods.split(","):
        if name.startswith("prior-"):
            prior, _, where = name[6:].partition("-")
            config: SearchConfig = WithPrior(
                objective=goal, long_prior=float(prior), long_in_sample=where == "all"
            )
            register_method(
                f"builtin:{name}",
                lambda *, seed=0, c=config: BuiltinMethod(config=c),
                kind="argos",
                replace=True,
            )
            names.append(f"builtin:{name}")
        elif name in VARIANTS:
            config = VARIANTS[name](objective=goal)
            register_method(
                f"builtin:{name}",
                lambda *, seed=0, c=config: BuiltinMethod(config=c),
                kind="argos",
                replace=True,
            )
            names.append(f"builtin:{name}")
        else:
            names.append(name)
    start = time.perf_counter()
    result = evaluate(
        data, resolve_methods(names), workers=args.workers, with_scores=False, objective=goal
    )
    summary = result.summary()
    print(f"{data.name}, fit for {goal}: {time.perf_counter() - start:.0f} s")
    print("method | k-delay F1 mean | pooled | event-PA F1 mean | point F1 mean")
    for m in result.methods:
        e = summary[m]
        cells = [e["delay"]["mean"]["f1"], e["delay"]["pooled"]["f1"]]
        cells += [e["event_pa"]["mean"]["f1"], e["point"]["mean"]["f1"]]
        print(m, "|", " | ".join("-" if c is None else f"{c:.3f}" for c in cells))
    if args.detail:
        for r in result.rows:
            s = r.scores["delay"]
            print(f"{r.method} {r.series_id} tp {s.tp} fp {s.fp} fn {s.fn}")


if __name__ == "__main__":
    main()
