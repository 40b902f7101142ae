"""Choose the units of the capable-model measurement (eval/results/llm) from labels, before any run.

Split: the generic 70/30 chronological split with the last 20% of the train part as validation,
which ``argos train`` / ``argos eval --dataset FOLDER`` apply to the unit CSVs. Rule, per dataset,
in natural series-id order:

- one unit with no event in validation: the first series with >= 1 labeled event in train (before
  validation), none in validation and >= 1 in test;
- three units with >= 1 event in train, in validation and in test: the first three such series.
  For Yahoo, one per partition among A1, A3 and A4 (A2 has no series with a test event under this
  split: its anomalies lie in the first 65% of each series, hence its native 50/50 split).

Writes ``OUT/<dataset>_<series id>.csv`` (``timestamp,value,is_anomaly``; the values as Python
writes floats, so they read back exactly) and prints one line per unit with its event counts.

Usage: python scripts/choose_llm_units.py OUT [--data-dir ../shared/datasets]
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from argos.data import catalog
from argos.data.series import Series, SplitSpec
from argos.metrics import events

SPLIT = SplitSpec(train_fraction=0.7, validation_fraction=0.2, granularity="series")


def unit_name(dataset: str, series_id: str) -> str:
    return f"{dataset}_{re.sub(r'[^A-Za-z0-9_.-]', '_', series_id)}"


def event_counts(s: Series) -> tuple[int, int, int]:
    """Labeled events in the train part proper, the validation part and the test part."""
    assert s.labels is not None
    bare = Series(id=s.id, timestamps=s.timestamps, values=s.values, labels=s.labels)
    val_start, test_start = SPLIT.bounds(bare)
    cuts = ((0, val_start), (val_start, test_start), (test_start, len(s)))
    tr, va, te = (len(events(s.labels[a:b])[0]) for a, b in cuts)
    return tr, va, te


def write_unit_csv(s: Series, path: Path) -> None:
    assert s.labels is not None
    rows = (
        f"{int(t)},{float(v)!r},{int(lab)}"
        for t, v, lab in zip(s.timestamps, s.values, s.labels, strict=True)
    )
    path.write_text("timestamp,value,is_anomaly\n" + "\n".join(rows) + "\n")


def _natural(series_id: str) -> list[int | str]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", series_id)]


def choose(dataset: str, data_dir: Path | None) -> list[Series]:
    ds = catalog.load_dataset(dataset, data_dir=data_dir)
    no_validation: Series | None = None
    with_validation: list[Series] = []
    partitions: set[str] = set()
    for s in sorted(ds.series, key=lambda s: _natural(s.id)):
        if s.labels is None:
            continue
        tr, va, te = event_counts(s)
        if tr < 1 or te < 1:
            continue
        part = str(s.meta.get("partition", ""))
        if va == 0:
            if no_validation is None and (dataset != "yahoo" or part == "A1"):
                no_validation = s
        elif dataset == "yahoo":
            if part in ("A1", "A3", "A4") and part not in partitions:
                partitions.add(part)
                with_validation.append(s)
        elif len(with_validation) < 3:
            with_validation.append(s)
    if no_validation is None or len(with_validation) < 3:
        raise SystemExit(f"{dataset}: the rule found too few units")
    return [no_validation, *with_validation]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--data-dir", type=Path, default=None)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for dataset in ("kpi", "yahoo", "nab"):
        for s in choose(dataset, args.data_dir):
            name = unit_name(dataset, s.id)
            write_unit_csv(s, args.out / f"{name}.csv")
            tr, va, te = event_counts(s)
            print(f"{name}\t{dataset}\t{s.id}\t{len(s)} points\tevents {tr}/{va}/{te}")


if __name__ == "__main__":
    main()
