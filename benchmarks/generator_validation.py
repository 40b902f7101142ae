"""Validation protocol (docs/generator.md): compare builtin-generator choices without test labels.

Every series is cut at its test start (the test part is gone), and the last 25% of what remains
serves as a pseudo-test: variants are fit on the first 75% (itself split train / validation as the
dataset's split says) and scored on the pseudo-test with event-PA F1, mean over the series with
events in both parts (and pooled); ``static-threshold`` is scored on the same pseudo-tests.

Usage: ``python benchmarks/generator_validation.py --dataset nab --variants base,no-and
[--granularity series] [--partition A1] [--workers 2]``. Variants are named configurations of
:class:`argos.training.builtin.config.SearchConfig`, or of ``AblationConfig`` (in
``few_event_protocol.py``) for the switches of rejected rows (see ``VARIANTS``).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from few_event_protocol import (  # the scripts sit side by side in benchmarks/
    PREVIOUS,
    AblationConfig,
)

from argos.data.catalog import load_dataset
from argos.data.protocol import split_series
from argos.data.series import Dataset, Series, SplitSpec
from argos.evaluation.harness import evaluate
from argos.methods import Method, register_method
from argos.metrics import aggregate_mean, aggregate_pooled
from argos.training.builtin.config import SearchConfig
from argos.training.builtin.method import BuiltinMethod

PSEUDO_TRAIN_FRACTION = 0.75  # the docs table: one cut; NAB rows also use 0.75,0.6,0.5

VARIANTS: dict[str, Callable[[], SearchConfig]] = {
    "base": lambda: SearchConfig(),
    # before the cool-down and the few-long-event restrictions (the defaults of the older rows)
    "previous": lambda: SearchConfig(**PREVIOUS),
    "no-cooldown": lambda: SearchConfig(cooldown=0.0),
    "cooldown-.25": lambda: SearchConfig(cooldown=0.25),
    "cooldown-1": lambda: SearchConfig(cooldown=1.0),
    "cooldown-2": lambda: SearchConfig(cooldown=2.0),
    # the cap on z-score thresholds (deviations) an exported rule may have
    "max-z-none": lambda: SearchConfig(max_z=None),
    "max-z-50": lambda: SearchConfig(max_z=50.0),
    # the fourth round: the share of normal points a condition may hold on, AND composition
    "before-round-4": lambda: SearchConfig(max_duty=None, and_gates=False),
    "no-and": lambda: SearchConfig(and_gates=False),
    "duty-.01-no-and": lambda: SearchConfig(max_duty=0.01, and_gates=False),
    "no-weekly": lambda: SearchConfig(weekly=False),
    "g75": lambda: SearchConfig(few_events_gap=0.75, few_events_long_gap=0.75),
    "g90": lambda: SearchConfig(few_events_gap=0.9, few_events_long_gap=0.9),
    "g97": lambda: SearchConfig(few_events_gap=0.97, few_events_long_gap=0.97),
    "g99": lambda: SearchConfig(few_events_gap=0.99, few_events_long_gap=0.99),
    "long-g97": lambda: SearchConfig(few_events_gap=0.9, few_events_long_gap=0.97),
    "or1": lambda: SearchConfig(few_events_or=1),
    "or3": lambda: SearchConfig(few_events_or=3),
    "old": lambda: AblationConfig(few_events_margin="std"),
    "band": lambda: AblationConfig(band=True),
    "band-std": lambda: AblationConfig(band=True, few_events_margin="std"),
    "uncapped": lambda: AblationConfig(few_events_margin="uncapped"),
    "simple-std": lambda: AblationConfig(simple_first=True, few_events_margin="std"),
    "band-simple-std": lambda: AblationConfig(
        band=True, simple_first=True, few_events_margin="std"
    ),
    # few-event ties broken by simplicity before the margin (the first design table)
    "few-order-simplest": lambda: AblationConfig(few_events_order=True),
}


def pseudo_dataset(
    ds: Dataset, granularity: str | None, partition: str | None, fraction: float = 0.75
) -> Dataset:
    """``ds`` cut before every test part, re-split 75/25 (the 25% is the pseudo-test)."""
    out: list[Series] = []
    wanted = set(ds.partitions[partition]) if partition else None
    for s in ds.series:
        if wanted is not None and s.id not in wanted:
            continue
        sp = split_series(s, ds.split)
        h = s.slice(0, sp.test_start)
        meta = {k: v for k, v in s.meta.items() if k not in ("test_start", "train_fraction")}
        out.append(
            Series(id=s.id, timestamps=h.timestamps, values=h.values, labels=h.labels, meta=meta)
        )
    split = SplitSpec(
        fraction,
        ds.split.validation_fraction,
        granularity or ds.split.granularity,
    )
    ids = {s.id for s in out}
    parts = {p: [i for i in v if i in ids] for p, v in ds.partitions.items()}
    parts = {p: v for p, v in parts.items() if v}
    return Dataset(ds.name, out, split, parts, ds.meta)


def _register(name: str, make: Callable[[], SearchConfig]) -> str:
    method = f"vp-{name}"

    def factory(*, seed: int = 0) -> Method:
        return BuiltinMethod(seed=seed, config=replace(make(), seed=seed))

    register_method(method, factory, description=name, kind="argos", replace=True)
    return method


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--variants", default="base")
    ap.add_argument("--granularity", default=None)
    ap.add_argument("--partition", default=None)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--per-partition", action="store_true")
    ap.add_argument(
        "--fractions",
        default=str(PSEUDO_TRAIN_FRACTION),
        help="pseudo-train fractions (comma-separated): each is one cut; rows of all cuts pooled",
    )
    ap.add_argument("--detail", action="store_true", help="per-series event-PA counts")
    args = ap.parse_args()
    full = load_dataset(args.dataset)
    names = args.variants.split(",")
    methods = [_register(n, VARIANTS[n]) for n in names]
    names.append("static-threshold")  # the reference, on the same pseudo-tests
    methods.append("static-threshold")
    t0 = time.perf_counter()
    all_rows = []
    fractions = [float(f) for f in args.fractions.split(",")]
    for fraction in fractions:
        ds = pseudo_dataset(full, args.granularity, args.partition, fraction)
        all_rows += evaluate(ds, methods, workers=args.workers, with_scores=False).rows
    print(
        f"{args.dataset} {args.partition or ''} gran={ds.split.granularity} cuts={fractions} "
        f"({time.perf_counter() - t0:.0f} s)"
    )

    def rows_of(m: str, g: str | None) -> list[Any]:
        return [r for r in all_rows if r.method == m and (g is None or r.partition == g)]

    groups: list[str | None] = [None]
    if args.per_partition:
        groups += sorted(ds.partitions)
    for n, m in zip(names, methods, strict=True):
        line: list[Any] = [f"{n:>24}"]
        for g in groups:
            rows = [r for r in rows_of(m, g) if r.anomalies_in_both]
            mean = aggregate_mean([r.scores["event_pa"] for r in rows])
            pooled = aggregate_pooled([r.scores["event_pa"] for r in rows])
            f1 = getattr(mean, "f1", None)
            line.append(
                f"{g or 'all'}: mean {f1 if f1 is None else round(f1, 3)} "
                f"pooled {pooled.f1 if pooled.f1 is None else round(pooled.f1, 3)} "
                f"(n={len(rows)})"
            )
        print("  ".join(str(x) for x in line))
        if args.detail:
            for r in rows_of(m, None):
                if r.anomalies_in_both:
                    e = r.scores["event_pa"]
                    print(f"    {r.series_id:<60} tp {e.tp} fp {e.fp} fn {e.fn} f1 {e.f1}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
