"""The builtin search as a training :class:`~argos.training.generator.Generator` and as the
``argos-builtin`` evaluation method.

:class:`BuiltinGenerator` runs :func:`argos.training.builtin.search.search` on a unit's fitting
history and renders the chosen rules from their templates (trusted code: the driver also runs it
in-process to cross-check the sandbox). :class:`BuiltinMethod` (``argos eval --methods
argos-builtin``, named in the catalogue of :mod:`argos.methods`) trains the same way, then detects
with :class:`RuleSetDetector`, which runs every rule in the sandbox, never in-process.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from argos._types import BoolArray, ProgressFn
from argos.data.series import Series
from argos.metrics import EVENT_PA, Objective
from argos.rules.templates import load_rule, render
from argos.sandbox.pool import Sandbox
from argos.training.builtin.config import SearchConfig
from argos.training.builtin.search import search
from argos.training.builtin.shapes import FitSeries
from argos.training.generator import GeneratedRule, GeneratorOutput, join_history


def fit_series(train: Sequence[Series], validation: Sequence[Series]) -> list[FitSeries]:
    """Join each series' train and validation slices into the search's view of it."""
    return [
        FitSeries(
            id=joined.id,
            values=joined.values,
            timestamps=joined.timestamps,
            labels=joined.labels,
            val_start=len(tr),
        )
        for tr, joined in zip(train, join_history(train, validation), strict=True)
        if joined.labels is not None  # join_history raised otherwise
    ]


@dataclass(frozen=True)
class BuiltinGenerator:
    """The embedded LLM-free generator: the template search over the grammar."""

    config: SearchConfig = field(default_factory=SearchConfig)
    name: str = "builtin"

    @property
    def trusted(self) -> bool:
        """Template-rendered rules: the driver may also run them in-process."""
        return True

    def summary_config(self) -> dict[str, Any]:
        """The search configuration, as ``summary.json`` records it (the objective as text)."""
        return {**asdict(self.config), "objective": str(self.config.objective)}

    def generate(
        self,
        train: Sequence[Series],
        validation: Sequence[Series],
        progress: ProgressFn | None = None,
    ) -> GeneratorOutput:
        """Search, then render the chosen rules with their fitted numbers and metrics."""
        result = search(fit_series(train, validation), self.config, progress)
        rules: list[GeneratedRule] = []
        used: set[str] = set()
        for spec in result.rules:
            name = spec.name
            while name in used:
                name += "_b"
            used.add(name)
            source = render(spec)
            _, params = load_rule(source)
            metrics = {
                "threshold": spec.threshold,
                "train_f1": result.train_f1,
                "validation_f1": result.val_f1,
            }
            rules.append(GeneratedRule(name=name, source=source, params=params, metrics=metrics))
        ranking = [
            {
                "rule": c.structure.name,
                "threshold": c.threshold,
                "train_f1": round(c.train_f1, 4),
                "validation_f1": None if c.val_f1 is None else round(c.val_f1, 4),
                "selection": round(c.selection, 4),
            }
            for c in result.ranking
        ]
        return GeneratorOutput(
            rules=rules,
            tried=result.tried,
            train_f1=result.train_f1,
            validation_f1=result.val_f1,
            ranking=ranking,
            notes=list(result.notes),
            generator={"kind": "builtin", "objective": str(self.config.objective)},
        )


# --------------------------------------------------------------------------------------------------
# The ``argos-builtin`` evaluation method: train-then-detect through the sandbox
# --------------------------------------------------------------------------------------------------

_SANDBOXES: dict[int, Sandbox] = {}


def process_sandbox() -> Sandbox:
    """One sandbox per process, opened on first use (its zygotes die with the process)."""
    pid = os.getpid()
    sb = _SANDBOXES.get(pid)
    if sb is None:
        _SANDBOXES.clear()  # a forked child must not reuse its parent's workers
        sb = Sandbox(workers=1)
        _SANDBOXES[pid] = sb
    return sb


class RuleSetDetector:
    """Labels a series with the OR of rule sources, each run in the sandbox (never in-process)."""

    def __init__(self, sources: Sequence[str]) -> None:
        self.sources = list(sources)

    def detect(self, series: Series) -> BoolArray:
        out = np.zeros(len(series), dtype=bool)
        if not self.sources:
            return out
        sandbox = process_sandbox()
        for src in self.sources:
            res = sandbox.run(src, [(series.values, series.timestamps)])
            if not res.ok or res.outputs is None:
                raise RuntimeError(
                    f"rule failed in the sandbox on {series.id!r}: {res.status}: {res.detail}"
                )
            out |= res.outputs[0]
        return out


class BuiltinMethod:
    """``argos-builtin``: run the builtin generator on train/validation, detect with its rules
    (the search fits and selects for ``objective``, ``argos eval --objective``)."""

    name = "argos-builtin"
    description = "builtin LLM-free rule generator: template search, rules run in the sandbox"

    def __init__(
        self,
        *,
        seed: int = 0,
        objective: Objective = EVENT_PA,
        config: SearchConfig | None = None,
    ) -> None:
        self.config = config or SearchConfig(seed=seed, objective=objective)

    def fit(self, train: Sequence[Series], validation: Sequence[Series]) -> RuleSetDetector:
        out = BuiltinGenerator(self.config).generate(train, validation)
        return RuleSetDetector([r.source for r in out.rules])
