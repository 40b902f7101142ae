"""Choose the units of the capable-model measurement (eval/results/llm) from labels, before any run.

Split: the generic 70/30 chronological split with the last 20% of the train part as validation,
which ``argos train`` / ``argos eval --dataset FOLDER`` apply to the unit CSVs. Rule, per dataset,
in natural series-id order:

- one unit with no event in validation: the first series with >= 1 labeled event in train (before
  validation), none in validation and >= 1 in test;
- three units with >= 1 event in train, in validation and in test: the first three such series.
  For Yahoo, one per partition among A1, A3 and A4 (A2 has no series with a test event under this
  split: its anomalies lie in the first 65% of each series, hence its native 50/50 split).

Sample B (``--sample b``, session 14, written down before any of its units was chosen or run):
12 further units by the same rule, skipping sample A's series (``--exclude units.json``), with one
condition more: the builtin generator's rule set for the unit scores below 1.0 on the unit's
selection data (validation F1, or train + validation without a validation event). Only there can
the accept gate keep an LLM set that ranks above the incumbent on selection; sample A spent 4 of
its 12 units where it could not. The score is the one the LLM loop's start computes: each
candidate is trained by ``argos train --llm`` with ``--iterations 1 --candidates 1`` against an
address where no model listens (its one call fails to connect), and the manifest's
``generator.incumbent_score`` is read. No test label enters this beyond ">= 1 test event". KPI has
no further unit without a validation event and NAB none with one where the builtin set leaves
room, so B takes four KPI units with one and four NAB units without (``SAMPLE_B_COUNTS``): B keeps
4/4/4 units, 5 of them without a validation event.

Sample C (``--sample c``, session 15, eval/results/llm/sample-c/PREREGISTRATION.md): 12 further
units by sample B's rule and counts, skipping the series of samples A and B (``--exclude`` both
units.json files). NAB has only three further units where the builtin set leaves room, so its
fourth is the first of the others in natural order (the pre-registration's amendment).

Sample D (``--sample d``, session 16, eval/results/llm/sample-d/PREREGISTRATION.md): sample C's
rule on the series of none of A, B and C; wherever a dataset (or a Yahoo partition) has too few
units where the builtin set leaves room, the first others in natural order fill it. NAB has only
three further series without a validation event, so its fourth unit is the first with one
(``SAMPLE_D_COUNTS``, the pre-registration's amendment).

Writes ``OUT/<dataset>_<series id>.csv`` (``timestamp,value,is_anomaly``; the values as Python
writes floats, so they read back exactly) and prints one line per unit with its event counts.

Usage: python scripts/choose_llm_units.py OUT [--data-dir ../shared/datasets]
       [--sample b|c|d --exclude eval/results/llm/units.json [eval/results/llm/sample-*/units.json]]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from argos.data import catalog
from argos.data.series import Series, SplitSpec
from argos.metrics import events

SAMPLE_B_COUNTS = {"kpi": (0, 4), "yahoo": (1, 3), "nab": (4, 0)}
"""Sample B's units without and with a validation event per dataset. KPI has no series besides
sample A's with events in train and test but none in validation; NAB's two series besides sample
A's with events in train, validation and test both have a builtin set perfect on the selection
data (both found by scans of this rule, before any LLM call)."""
SAMPLE_D_COUNTS = {**SAMPLE_B_COUNTS, "nab": (3, 1)}
"""Sample D's: NAB has three further series with events in train and test and none in validation
(found by the scan of this rule, before any LLM call), so its fourth unit has one."""

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


def incumbent_score(dataset: str, s: Series) -> float:
    """The builtin rule set's selection score for this unit, as the LLM loop's start computes it
    (see the module docstring)."""
    with tempfile.TemporaryDirectory() as tmp:
        units = Path(tmp) / "units"
        units.mkdir()
        write_unit_csv(s, units / f"{unit_name(dataset, s.id)}.csv")
        (Path(tmp) / "argos.toml").write_text(
            '[llm]\nprovider = "openai"\nmodel = "none"\ntimeout_s = 5\nmax_retries = 0\n'
        )
        argos = Path(sys.executable).with_name("argos")
        cmd = [str(argos), "train", "--dataset", "units", "--llm", "openai", "--model", "none"]
        cmd += ["--base-url", "http://127.0.0.1:9/v1", "--llm-config", "argos.toml"]
        cmd += ["--out", "out", "--iterations", "1", "--candidates", "1", "--keep", "1"]
        env = os.environ | {"ARGOS_LLM_API_KEY": "unused"}
        subprocess.run(cmd, cwd=tmp, env=env, check=True, capture_output=True)
        (manifest,) = (Path(tmp) / "out").glob("*/manifest.json")
        return float(json.loads(manifest.read_text())["generator"]["incumbent_score"])


def choose(
    dataset: str,
    data_dir: Path | None,
    exclude: frozenset[str] = frozenset(),
    keep: Callable[[Series], bool] = lambda s: True,
    counts: tuple[int, int] = (1, 3),
    fill: str = "",
) -> list[Series]:
    """``counts``: how many units without and with a validation event. ``fill``: when too few
    units pass ``keep``, the first that did not fill in: ``"without"`` only units without a
    validation event (sample C), ``"both"`` both kinds and each Yahoo partition (sample D)."""
    ds = catalog.load_dataset(dataset, data_dir=data_dir)
    no_validation: list[Series] = []
    with_validation: list[Series] = []
    passed_over: list[Series] = []
    passed_over_with: dict[str, list[Series]] = {}
    partitions: set[str] = set()
    for s in sorted(ds.series, key=lambda s: _natural(s.id)):
        if s.labels is None or s.id in exclude:
            continue
        tr, va, te = event_counts(s)
        if tr < 1 or te < 1:
            continue
        part = str(s.meta.get("partition", "")) if dataset == "yahoo" else ""
        if va == 0:
            if len(no_validation) < counts[0] and (dataset != "yahoo" or part == "A1"):
                (no_validation if keep(s) else passed_over).append(s)
        elif dataset == "yahoo":
            if part in ("A1", "A3", "A4") and part not in partitions:
                if keep(s):
                    partitions.add(part)
                    with_validation.append(s)
                else:
                    passed_over_with.setdefault(part, []).append(s)
        elif len(with_validation) < counts[1]:
            (with_validation if keep(s) else passed_over_with.setdefault("", [])).append(s)
    if fill and len(no_validation) < counts[0]:
        no_validation += passed_over[: counts[0] - len(no_validation)]
        no_validation.sort(key=lambda s: _natural(s.id))
    if fill == "both":
        wanted = ("A1", "A3", "A4") if dataset == "yahoo" else ("",)
        for part in wanted:
            if dataset == "yahoo" and part in partitions:
                continue
            short = 1 if dataset == "yahoo" else counts[1] - len(with_validation)
            with_validation += passed_over_with.get(part, [])[: max(0, short)]
        with_validation.sort(key=lambda s: _natural(s.id))
    if len(no_validation) < counts[0] or len(with_validation) < counts[1]:
        raise SystemExit(f"{dataset}: the rule found too few units")
    return [*no_validation, *with_validation]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--sample", choices=("a", "b", "c", "d"), default="a")
    ap.add_argument(
        "--exclude", type=Path, nargs="+", default=[], help="units.json of samples to skip"
    )
    ap.add_argument("--datasets", nargs="+", default=["kpi", "yahoo", "nab"])
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    skip = {k: v for path in args.exclude for k, v in json.loads(path.read_text()).items()}
    for dataset in args.datasets:
        exclude = frozenset(u["series"] for u in skip.values() if u["dataset"] == dataset)
        keep: Callable[[Series], bool] = lambda s: True  # noqa: E731
        if args.sample != "a":

            def keep(s: Series, dataset: str = dataset) -> bool:
                score = incumbent_score(dataset, s)
                print(f"  {unit_name(dataset, s.id)}: builtin selection F1 {score:.3f}", flush=True)
                return score < 1.0

        counts = {"a": (1, 3), "d": SAMPLE_D_COUNTS[dataset]}.get(
            args.sample, SAMPLE_B_COUNTS[dataset]
        )
        fill = {"c": "without" if dataset == "nab" else "", "d": "both"}.get(args.sample, "")
        for s in choose(dataset, args.data_dir, exclude, keep, counts, fill):
            name = unit_name(dataset, s.id)
            write_unit_csv(s, args.out / f"{name}.csv")
            tr, va, te = event_counts(s)
            print(f"{name}\t{dataset}\t{s.id}\t{len(s)} points\tevents {tr}/{va}/{te}")


if __name__ == "__main__":
    main()
