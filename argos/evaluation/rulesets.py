"""``rules:PATH``: exported rule sets evaluated by ``argos eval`` like any other method.

``PATH`` is either one rule-set folder (a ``manifest.json``: applied to every series of the
dataset) or a training run folder (``summary.json`` and one rule-set folder per unit: each series
runs its own unit's rule set). The rule set is already fitted, so :meth:`RuleSetMethod.fit` only
looks up which rule set each series runs; a series of the dataset that the run trained no rule
set for is an error naming it (reported, never silently skipped or scored as "no alarm"), so
every row of the results table is over the same series. Rules run in the
:class:`~argos.sandbox.pool.Sandbox` on the unlabeled series, OR-combined as their manifest says;
only ``accepted`` rules run. Fusion rule sets need their base detector's labels and are refused
with that reason.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from argos._types import BoolArray
from argos.data.series import Series
from argos.rules.artifacts import MANIFEST, RuleSet, RuleSetError, load_ruleset
from argos.sandbox.pool import Sandbox

PREFIX = "rules:"
"""Method names starting with this name a rule-set or run folder (``rules:runs/llm-1``)."""


def rule_set_folders(path: Path) -> dict[str, Path] | Path:
    """The rule set of every series a run folder trained (``{series id: folder}``), or ``path``
    itself when it is one rule-set folder. Raises :class:`RuleSetError` when it is neither."""
    if (path / MANIFEST).is_file():
        return path
    found: dict[str, Path] = {}
    summary = path / "summary.json"
    if summary.is_file():
        units = json.loads(summary.read_text()).get("units", [])
        for unit in units if isinstance(units, list) else []:
            if not isinstance(unit, Mapping) or not unit.get("path"):
                continue
            recorded = Path(str(unit["path"]))
            folder = path / recorded.name  # the run folder may have moved
            folder = folder if (folder / MANIFEST).is_file() else recorded
            if (folder / MANIFEST).is_file():
                for sid in unit.get("series", []):
                    found[str(sid)] = folder
    else:
        for manifest in sorted(path.glob(f"*/{MANIFEST}")):
            training = load_ruleset(manifest.parent).manifest.training
            for sid in training.series if training is not None else []:
                found[sid] = manifest.parent
    if not found and not summary.is_file():
        raise RuleSetError(
            f"{path}: neither a rule-set folder ({MANIFEST}) nor a training run folder "
            "(summary.json or rule-set subfolders)"
        )
    return found


@dataclass
class RuleSetMethod:
    """The method ``rules:PATH`` (see the module docstring)."""

    path: str

    @property
    def name(self) -> str:
        return f"{PREFIX}{self.path}"

    def fit(self, train: Sequence[Series], validation: Sequence[Series]) -> RuleSetDetector:
        folders = rule_set_folders(Path(self.path))
        if isinstance(folders, Path):
            return RuleSetDetector({s.id: folders for s in train})
        missing = [s.id for s in train if s.id not in folders]
        if missing:
            trained = ", ".join(sorted(folders)[:10]) or "(none)"
            raise RuleSetError(
                f"{self.path}: no rule set for series {', '.join(missing)} (the run has rule sets "
                f"for: {trained}); evaluate a dataset of the trained series, or retrain"
            )
        return RuleSetDetector({s.id: folders[s.id] for s in train})


@dataclass
class RuleSetDetector:
    """Runs each series' rule set in the sandbox."""

    folders: dict[str, Path]

    def detect(self, series: Series) -> BoolArray:
        ruleset = load_ruleset(self.folders[series.id])
        return run_rule_set(ruleset, series)


def run_rule_set(ruleset: RuleSet, series: Series) -> BoolArray:
    """The OR of the rule set's accepted rules on ``series`` (run in the sandbox)."""
    if ruleset.manifest.combination != "or":
        raise RuleSetError(
            f"{ruleset.directory}: a fusion rule set needs its base detector's labels; "
            "rules:PATH evaluates OR rule sets"
        )
    inputs = [(np.asarray(series.values, np.float64), np.asarray(series.timestamps, np.int64))]
    out = np.zeros(len(series), dtype=np.bool_)
    with Sandbox(workers=1) as sandbox:
        for entry in ruleset.rules:
            if entry.status != "accepted":
                continue
            result = sandbox.run(ruleset.codes[entry.id], inputs, dict(entry.params))
            if not result.ok or result.outputs is None:
                raise RuleSetError(
                    f"{ruleset.directory}: rule {entry.id} failed on {series.id!r}: "
                    f"{result.status}: {result.detail[:300]}"
                )
            out |= np.asarray(result.outputs[0], dtype=np.bool_)
    return out
