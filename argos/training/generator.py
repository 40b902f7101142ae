"""The seams of the training driver: what it asks of a generator, of an executor and of a sandbox.

The driver (:mod:`argos.training.driver`) knows its collaborators only through the Protocols here,
so it imports neither the builtin search nor the LLM agents nor Dask:

- :class:`Generator` proposes rules for one training unit (:class:`GeneratorOutput` of
  :class:`GeneratedRule`). It also says whether its rules are template-rendered code the driver
  may run in-process to cross-check the sandbox (``trusted``) and what the run summary records of
  its configuration (``summary_config``); the driver never checks a generator's class.
- :class:`UnitExecutor` runs the generation of a list of :class:`TrainJob` and yields each
  :class:`GeneratedUnit` as it finishes (a local process pool in the driver, or
  :class:`argos.distributed.DaskExecutor`). :func:`generate_unit` is the task either one runs.
- :class:`RuleRunner` is what verification needs of the sandbox
  (:class:`argos.sandbox.pool.Sandbox` is one).
- :class:`DeploymentCheck` is the online detector's own load-time check, asked before a rule is
  accepted or exported, so that every exported set opens in ``argos detect`` as it is (the CLI
  passes :func:`argos.cli.deployment.deployment_refusals`; training cannot import the detector).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from argos._types import FloatArray, IntArray, ProgressFn
from argos.data.series import Series

if TYPE_CHECKING:
    from argos.rules.artifacts import RuleSource
    from argos.sandbox.pool import RunResult


@dataclass(frozen=True)
class GeneratedRule:
    """One rule a generator proposes, as source code plus what it measured.

    Attributes:
        name: identifier (file stem in the exported rule set).
        source: the rule module's code (rule contract).
        params: the rule's ``PARAMS`` (as fitted).
        metrics: numbers measured while fitting, e.g. ``{"train_f1": .9, "validation_f1": .8}``.
        role: ``or`` for a plain rule set; ``fn`` / ``fp`` for model fusion (see
            :mod:`argos.training.agents.run`).
    """

    name: str
    source: str
    params: dict[str, Any]
    metrics: dict[str, float | None] = field(default_factory=dict)
    role: str = "or"


@dataclass(frozen=True)
class GeneratorOutput:
    """What a generator returns for one training unit.

    Attributes:
        rules: the rules of the proposed rule set, combined with OR.
        tried: candidates evaluated.
        train_f1: F1 of the OR-set on the train slices (mean over series with events), by the
            objective the generator fits (``generator["objective"]``; event-PA by default).
        validation_f1: same on the validation slices (None when validation has no event).
        ranking: short descriptions of the best single candidates (for the summary).
        notes: anything the user should know (e.g. "no labeled anomaly").
        generator: what the manifest records about the generator (kind, model, prompt hashes);
            empty = ``{"kind": "builtin"}``.
        fusion_base: for model fusion, the external base detector the FN/FP rules correct
            (``method:NAME`` or ``csv:FILE``); None for a plain OR rule set.
    """

    rules: list[GeneratedRule]
    tried: int
    train_f1: float | None
    validation_f1: float | None
    ranking: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    generator: dict[str, Any] = field(default_factory=dict)
    fusion_base: str | None = None


class Generator(Protocol):
    """Proposes rules from labeled train and validation slices of one training unit.

    ``train[i]`` and ``validation[i]`` are consecutive slices of the same series. Implementations
    must be picklable (the driver runs them in worker processes) and deterministic for a seed.
    ``trusted`` is true only when every rule is template-rendered code: the driver then also runs
    it in-process and requires the sandbox's labels to be equal. ``summary_config`` is what
    ``summary.json`` records of the generator's configuration (``{}`` for nothing).
    """

    @property
    def name(self) -> str: ...

    @property
    def trusted(self) -> bool: ...

    def summary_config(self) -> dict[str, Any]: ...

    def generate(
        self,
        train: Sequence[Series],
        validation: Sequence[Series],
        progress: ProgressFn | None = None,
    ) -> GeneratorOutput: ...


@dataclass(frozen=True)
class TrainJob:
    """One training unit, ready to generate.

    Attributes:
        unit: unit name (series id or partition name).
        train / validation: the fitting slices of its series (copies cut before the test part).
        series: ids of the series in the unit.
    """

    unit: str
    train: list[Series]
    validation: list[Series]
    series: list[str]


@dataclass(frozen=True)
class GeneratedUnit:
    """A generator's output for one job and the wall time it took (in its worker)."""

    job: TrainJob
    output: GeneratorOutput
    seconds: float


def generate_unit(generator: Generator, job: TrainJob) -> GeneratedUnit:
    """Run ``generator`` on one job: the task a :class:`UnitExecutor` runs in its workers."""
    t0 = time.perf_counter()
    out = generator.generate(job.train, job.validation)
    return GeneratedUnit(job, out, time.perf_counter() - t0)


class UnitExecutor(Protocol):
    """Runs the generation of training units somewhere (a local pool, a Dask cluster).

    Yields every job's :class:`GeneratedUnit` once, in completion order.
    """

    def run_training(
        self, generator: Generator, jobs: Sequence[TrainJob]
    ) -> Iterator[GeneratedUnit]: ...


class RuleRunner(Protocol):
    """What verification needs of a sandbox: run a rule's code on inputs, and close."""

    def run(
        self,
        code: str,
        inputs: Sequence[tuple[FloatArray, IntArray]],
        params: Mapping[str, Any] | None = None,
    ) -> RunResult: ...

    def close(self) -> None: ...


class DeploymentCheck(Protocol):
    """What the online detector would refuse of these rules: rule id -> why (empty: none).

    ``rules`` carry their fitted params. ``trusted`` rules (template-rendered code) may be
    checked in-process; others run isolated, as the detector runs them.
    """

    def __call__(self, rules: Sequence[RuleSource], *, trusted: bool) -> dict[str, str]: ...


def join_history(train: Sequence[Series], validation: Sequence[Series]) -> list[Series]:
    """Each series' train and validation slices joined back into its labeled fitting history."""
    if len(train) != len(validation):
        raise ValueError(f"{len(train)} train slices but {len(validation)} validation slices")
    out: list[Series] = []
    for tr, va in zip(train, validation, strict=True):
        if tr.labels is None or (len(va) and va.labels is None):
            raise ValueError(f"series {tr.id!r}: the generator needs labeled train/validation")
        labels = [tr.labels] + ([va.labels] if len(va) and va.labels is not None else [])
        out.append(
            Series(
                id=tr.id,
                timestamps=np.concatenate((tr.timestamps, va.timestamps)),
                values=np.concatenate((tr.values, va.values)),
                labels=np.concatenate(labels),
                meta=tr.meta,
            )
        )
    return out
