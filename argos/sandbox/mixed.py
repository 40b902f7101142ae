"""One rule set on two engines: trusted rules in this process, every other rule in its own worker.

The online detector's default (``isolation="auto"``, :mod:`argos.online.detector`) hands each
rule to the engine its provenance allows. A rule whose file is byte for byte a rendering of the
builtin templates (:func:`argos.rules.recognise.trusted_template`) is our own code: it runs in a
:class:`~argos.sandbox.kernel.InProcessEngine`, which saves the round trip to a worker process
per rule and push. Every other rule (LLM-written, hand-written, a template edited by one byte) runs
in a :class:`~argos.sandbox.workers.WorkerEngine`, one locked-down process per rule, exactly as
with ``isolation="worker"``: the trusted rules share nothing with it but the points of the push.

:class:`MixedEngine` implements :class:`~argos.sandbox.kernel.RuleEngine`: labels come back in
the rule set's order (each engine's rows put back in place), errors in item order; seeding,
forgetting and packing go to both; a quarantine goes to the engine that runs the rule. With only
one kind of rule it is that engine alone (the detector then uses the engine directly).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence

import numpy as np

from argos._types import BoolArray, FloatArray, IntArray
from argos.sandbox.kernel import EngineResult, InProcessEngine, RuleCode
from argos.sandbox.workers import WorkerEngine, WorkerLimits


class MixedEngine:
    """Rules named in ``trusted`` in this process, the others in isolated worker processes.

    ``rules`` keeps the rule set's order; ``trusted`` must name only rules whose code the caller
    proved to be its own (a builtin template rendering), and at least one of each kind must be
    present (else use the one engine). The worker engine is closed if the constructor fails.
    """

    def __init__(
        self,
        rules: Sequence[RuleCode],
        trusted: Sequence[str],
        *,
        workers: int = 1,
        limits: WorkerLimits | None = None,
    ) -> None:
        wanted = set(trusted)
        inside = [r for r in rules if r.id in wanted]
        outside = [r for r in rules if r.id not in wanted]
        if not inside or not outside:
            raise ValueError("a mixed engine needs trusted and untrusted rules")
        self.isolated = WorkerEngine(outside, workers=workers, limits=limits)
        try:
            self.inprocess = InProcessEngine(inside)
        except BaseException:
            self.isolated.close()
            raise
        loaded = set(self.inprocess.rule_ids) | set(self.isolated.rule_ids)
        self._rule_ids = tuple(r.id for r in rules if r.id in loaded)
        row = {rid: i for i, rid in enumerate(self._rule_ids)}
        self._rows_inside = np.array([row[i] for i in self.inprocess.rule_ids], dtype=np.int64)
        self._rows_outside = np.array([row[i] for i in self.isolated.rule_ids], dtype=np.int64)
        self._trusted = frozenset(self.inprocess.rule_ids)

    @property
    def rule_ids(self) -> tuple[str, ...]:
        """Ids of the rules that loaded (in either engine), in the rule set's order."""
        return self._rule_ids

    @property
    def trusted_ids(self) -> frozenset[str]:
        """The rules that run in this process."""
        return self._trusted

    @property
    def load_errors(self) -> Mapping[str, str]:
        """Rules that failed to load, with the reason (from both engines)."""
        return {**self.inprocess.load_errors, **self.isolated.load_errors}

    @property
    def isolation(self) -> str:
        """Where the rules run."""
        return (
            f"{len(self._trusted)} builtin-template rules in-process (trusted: byte-identical "
            f"renders), {len(self.isolated.rule_ids)} in an {self.isolated.isolation}"
        )

    @property
    def pids(self) -> list[int]:
        """Process ids of the live workers (the untrusted rules')."""
        return self.isolated.pids

    def rule_pids(self, rule_id: str) -> list[int]:
        """Process ids of one rule's live workers (none for a trusted rule)."""
        return self.isolated.rule_pids(rule_id)

    def _merge(
        self, inside: EngineResult, outside: EngineResult, lengths: Sequence[int]
    ) -> EngineResult:
        bounds = np.cumsum([0, *lengths]).tolist()
        joined = np.zeros((len(self._rule_ids), bounds[-1]), dtype=np.bool_)
        joined[self._rows_inside] = inside.all_labels()
        joined[self._rows_outside] = outside.all_labels()
        errors = sorted([*inside.errors, *outside.errors], key=lambda e: e.item)
        labels: list[BoolArray] = [joined[:, a:b] for a, b in itertools.pairwise(bounds)]
        return EngineResult(labels, errors, joined)

    def push(self, items: Sequence[tuple[str, IntArray, FloatArray]]) -> EngineResult:
        """Both engines label the new points; their rows are put back in the set's order."""
        outside = self.isolated.push(items)
        inside = self.inprocess.push(items)
        return self._merge(inside, outside, [len(v) for _, _, v in items])

    def batch(self, items: Sequence[tuple[IntArray, FloatArray]]) -> EngineResult:
        """Stateless run on whole arrays, in both engines."""
        outside = self.isolated.batch(items)
        inside = self.inprocess.batch(items)
        return self._merge(inside, outside, [len(v) for _, v in items])

    def seed(self, series: str, timestamps: IntArray, values: FloatArray) -> None:
        """Set a series' history in both engines."""
        self.isolated.seed(series, timestamps, values)
        self.inprocess.seed(series, timestamps, values)

    def forget(self, series: Sequence[str]) -> None:
        """Drop these series in both engines."""
        self.isolated.forget(series)
        self.inprocess.forget(series)

    def history(
        self, series: Sequence[str] | None = None
    ) -> Iterator[tuple[str, IntArray, FloatArray]]:
        """The history of the engine that keeps the longer one (it holds the other's too)."""
        if self.inprocess.kernel.history_len >= self.isolated.history_len:
            return self.inprocess.history(series)
        return self.isolated.history(series)

    def set_packed(self, rule_ids: Sequence[str]) -> None:
        """Pack these rules, each in its own engine."""
        self.inprocess.set_packed([r for r in rule_ids if r in self._trusted])
        self.isolated.set_packed([r for r in rule_ids if r not in self._trusted])

    @property
    def quarantined(self) -> Mapping[str, str]:
        """Rules stopped for good (until a reload), with the reason (from both engines)."""
        return {**self.inprocess.quarantined, **self.isolated.quarantined}

    def quarantine(self, rule_id: str, reason: str) -> None:
        """Stop a rule in the engine that runs it."""
        if rule_id in self._trusted:
            self.inprocess.quarantine(rule_id, reason)
        else:
            self.isolated.quarantine(rule_id, reason)

    def close(self) -> None:
        """Stop the worker processes."""
        self.inprocess.close()
        self.isolated.close()
