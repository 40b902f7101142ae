"""Compare two runs' rule sets on each unit's selection data: train and validation, never test.

For every series of a dataset folder (unit CSVs, the generic 70/30 split with the last 20% of
train as validation, as ``argos train`` and ``argos eval`` apply it), runs the rule set that each
of two training runs exported for it on the series and prints the event-PA and 7-delay F1 of
both on the train part and on the validation part. eval/results/llm/README.md used it to check
the gate's guard on samples B and C (the builtin run against the LLM run) before it was measured
on new units.

Usage: python scripts/selection_scores.py UNITS_DIR BASELINE_RUN OTHER_RUN
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from argos.data.loaders import load_path
from argos.data.protocol import split_series
from argos.evaluation.rulesets import rule_set_folders, run_rule_set
from argos.metrics import Scores, delay_adjusted, event_pa
from argos.rules.artifacts import load_ruleset


def _f1(s: Scores) -> str:
    return "  -  " if s.f1 is None else f"{s.f1:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("units", type=Path)
    ap.add_argument("baseline", type=Path)
    ap.add_argument("other", type=Path)
    args = ap.parse_args()
    ds = load_path(args.units)
    found = [rule_set_folders(run) for run in (args.baseline, args.other)]
    runs = [folders for folders in found if isinstance(folders, dict)]
    if len(runs) != 2:
        raise SystemExit("give two training run folders (one rule set per unit)")
    for s in ds.series:
        split = split_series(s, ds.split)
        assert s.labels is not None
        truth = np.asarray(s.labels, dtype=bool)
        preds = [run_rule_set(load_ruleset(folders[s.id]), s) for folders in runs]
        cells = []
        for name, part in (
            ("train", slice(0, split.train_end)),
            ("val", slice(split.val_start, split.test_start)),
        ):
            pa = [_f1(event_pa(truth[part], pred[part])) for pred in preds]
            k7 = [_f1(delay_adjusted(truth[part], pred[part], 7)) for pred in preds]
            cells.append(f"{name} ePA {pa[0]}->{pa[1]} 7-delay {k7[0]}->{k7[1]}")
        print(f"{s.id[:40]:40s} " + " | ".join(cells))


if __name__ == "__main__":
    main()
