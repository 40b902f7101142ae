"""The training driver shared by ``argos train``, ``argos demo`` and the ``argos-builtin`` method.

For every training unit (one series, or one partition of series) the driver:

1. builds the fitting inputs with :func:`argos.data.protocol.fit_inputs` (train and
   validation slices, copies cut before the test part: a generator never holds a test label);
2. asks a :class:`Generator` for rules (the builtin search now; the LLM path plugs in here too);
3. verifies every rule: the static gate (:func:`argos.rules.contract.check_rule`), a sandboxed
   run on the train + validation history of every series whose labels must equal what the generator
   computed in-process, and the causality check (:func:`argos.sandbox.pool.check_causality`);
4. exports the verified rules as a rule-set folder (:mod:`argos.rules.artifacts`) with metrics
   per split, and writes ``summary.json`` for the whole run.

Units run in parallel in a process pool (``workers``); results are deterministic for a seed.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from argos._types import BoolArray, ProgressFn
from argos.data.protocol import fit_inputs
from argos.data.series import Dataset, Series, SplitSpec
from argos.rules.templates import load_rule, render
from argos.training.builtin.config import SearchConfig
from argos.training.builtin.search import search
from argos.training.builtin.shapes import FitSeries


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
        train_f1: event-PA F1 of the OR-set on the train slices (mean over series with events).
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
    """

    @property
    def name(self) -> str: ...

    def generate(
        self,
        train: Sequence[Series],
        validation: Sequence[Series],
        progress: ProgressFn | None = None,
    ) -> GeneratorOutput: ...


def fit_series(train: Sequence[Series], validation: Sequence[Series]) -> list[FitSeries]:
    """Join each series' train and validation slices into the search's view of it."""
    if len(train) != len(validation):
        raise ValueError(f"{len(train)} train slices but {len(validation)} validation slices")
    out: list[FitSeries] = []
    for tr, va in zip(train, validation, strict=True):
        if tr.labels is None or (len(va) and va.labels is None):
            raise ValueError(f"series {tr.id!r}: the generator needs labeled train/validation")
        labels = [tr.labels] + ([va.labels] if len(va) and va.labels is not None else [])
        out.append(
            FitSeries(
                id=tr.id,
                values=np.concatenate((tr.values, va.values)),
                timestamps=np.concatenate((tr.timestamps, va.timestamps)),
                labels=np.concatenate(labels),
                val_start=len(tr),
            )
        )
    return out


@dataclass(frozen=True)
class BuiltinGenerator:
    """The embedded LLM-free generator: :func:`argos.training.builtin.search.search` over the
    grammar."""

    config: SearchConfig = field(default_factory=SearchConfig)
    name: str = "builtin"

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
            rules.append(
                GeneratedRule(
                    name=name,
                    source=source,
                    params=params,
                    metrics={
                        "threshold": spec.threshold,
                        "train_f1": result.train_f1,
                        "validation_f1": result.val_f1,
                    },
                )
            )
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
        )


# --------------------------------------------------------------------------------------------------
# Verification in the sandbox
# --------------------------------------------------------------------------------------------------


def in_process_labels(rules: Sequence[GeneratedRule], values: Any, timestamps: Any) -> BoolArray:
    """OR of the rules' labels computed in-process. Only for TRUSTED (template-rendered) code."""
    out = np.zeros(len(values), dtype=bool)
    for r in rules:
        detect, params = load_rule(r.source)
        out |= np.asarray(detect(values, timestamps, params), dtype=bool)
    return out


def verify_rules(
    rules: Sequence[GeneratedRule],
    history: Sequence[FitSeries],
    sandbox: Any,
    *,
    trusted: bool = True,
) -> list[str]:
    """Problems found with the rules (empty = all verified).

    Each rule must pass the static gate, run in the sandbox on the train + validation history of
    every series, give exactly the in-process labels (``trusted`` rules only: template code), and
    pass the causality check on the first series.
    """
    from argos.rules.contract import RuleContractError, check_rule
    from argos.sandbox.pool import check_causality

    problems: list[str] = []
    inputs = [(fs.values, fs.timestamps) for fs in history]
    for r in rules:
        try:
            check_rule(r.source)
        except RuleContractError as exc:
            problems.append(f"{r.name}: static gate: {exc}")
            continue
        res = sandbox.run(r.source, inputs)
        if not res.ok or res.outputs is None:
            problems.append(f"{r.name}: sandbox {res.status}: {res.detail}")
            continue
        if trusted:
            detect, params = load_rule(r.source)
            for fs, out in zip(history, res.outputs, strict=True):
                ref = np.asarray(detect(fs.values, fs.timestamps, params), dtype=bool)
                if not np.array_equal(ref, out):
                    n_diff = int((ref != out).sum())
                    problems.append(
                        f"{r.name}: sandbox labels differ from the search's on {fs.id!r} "
                        f"({n_diff} points)"
                    )
                    break
        first = history[0]
        causal = check_causality(sandbox, r.source, None, first.values, first.timestamps)
        if not causal.ok:
            problems.append(f"{r.name}: {causal.detail}")
    return problems


# --------------------------------------------------------------------------------------------------
# The driver
# --------------------------------------------------------------------------------------------------


@dataclass
class UnitResult:
    """The outcome of training one unit.

    Attributes:
        unit: unit name (series id or partition name).
        series: ids of the series in the unit.
        generator: generator name.
        rules: names of the exported rules.
        tried: candidates evaluated.
        train_f1 / validation_f1: of the rule set on its fitting slices.
        verified: every rule passed the gate, sandbox, equality and causality checks.
        problems: what failed verification (rules with problems are not exported).
        seconds: wall time of generation (in its worker).
        path: the exported rule-set folder, if any.
        notes: generator notes.
    """

    unit: str
    series: list[str]
    generator: str
    rules: list[str]
    tried: int
    train_f1: float | None
    validation_f1: float | None
    verified: bool
    problems: list[str]
    seconds: float
    path: str | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class TrainSummary:
    """The run summary written to ``summary.json``."""

    dataset: str
    generator: str
    granularity: str
    units: list[UnitResult]
    seconds: float
    out_dir: str | None
    config: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def training_units(
    dataset: Dataset,
    *,
    granularity: str | None = None,
    series_id: str | None = None,
    partition: str | None = None,
) -> dict[str, list[Series]]:
    """The groups of series to train, by unit name.

    ``series_id`` selects one series, ``partition`` one partition (trained per ``granularity``:
    by default the dataset's own, e.g. one rule set per KPI series, per Yahoo partition).
    """
    gran = granularity or dataset.split.granularity
    if gran not in ("series", "partition"):
        raise ValueError(f"granularity must be 'series' or 'partition', got {gran!r}")
    series: list[Series] = list(dataset.series)
    if series_id is not None:
        series = [dataset.get(series_id)]
        gran = "series"
    if partition is not None:
        if partition not in dataset.partitions:
            known = ", ".join(dataset.partitions) or "(none)"
            raise ValueError(f"no partition {partition!r} in {dataset.name!r}; known: {known}")
        wanted = set(dataset.partitions[partition])
        series = [s for s in series if s.id in wanted]
    if gran == "series":
        return {s.id: [s] for s in series}
    out: dict[str, list[Series]] = {}
    for s in series:
        out.setdefault(dataset.partition_of(s.id), []).append(s)
    return out


def _generate_unit(
    generator: Generator, unit: str, train: list[Series], validation: list[Series]
) -> tuple[str, GeneratorOutput, float]:
    t0 = time.perf_counter()
    out = generator.generate(train, validation)
    return unit, out, time.perf_counter() - t0


UnitCallback = Callable[[UnitResult, GeneratorOutput], None]


def train_dataset(
    dataset: Dataset,
    *,
    generator: Generator | None = None,
    out_dir: Path | None = None,
    granularity: str | None = None,
    series_id: str | None = None,
    partition: str | None = None,
    workers: int = 1,
    verify: bool = True,
    on_unit: UnitCallback | None = None,
    executor: Any = None,
) -> TrainSummary:
    """Train every unit of ``dataset``, verify and export the rules, and write ``summary.json``.

    ``on_unit`` is called as each unit finishes (in completion order) for progress displays.
    ``executor`` (an :class:`argos.distributed.DaskExecutor`) runs the units' generation as tasks
    on a Dask cluster instead of the local process pool; verification and export stay here.
    """
    gen: Generator = generator or BuiltinGenerator()
    spec = dataset.split
    if granularity is not None:
        spec = SplitSpec(spec.train_fraction, spec.validation_fraction, granularity)
    units = training_units(
        dataset, granularity=spec.granularity, series_id=series_id, partition=partition
    )
    jobs: list[tuple[str, list[Series], list[Series], list[str]]] = []
    for name, group in units.items():
        fi = fit_inputs(group, spec)
        jobs.append((name, fi.train, fi.validation, [s.id for s in group]))
    t0 = time.perf_counter()
    results: list[UnitResult] = []
    sandbox = _open_sandbox() if verify else None
    try:
        for (name, out, secs), job in _run_jobs(gen, jobs, workers, executor):
            history = fit_series(job[1], job[2])
            # Only template-rendered code may also run in-process (to cross-check the sandbox).
            trusted = isinstance(gen, BuiltinGenerator)
            problems = (
                verify_rules(out.rules, history, sandbox, trusted=trusted)
                if sandbox is not None
                else []
            )
            bad = {p.split(":", 1)[0] for p in problems}
            good = [r for r in out.rules if r.name not in bad]
            res = UnitResult(
                unit=name,
                series=job[3],
                generator=gen.name,
                rules=[r.name for r in good],
                tried=out.tried,
                train_f1=out.train_f1,
                validation_f1=out.validation_f1,
                verified=sandbox is not None and not problems,
                problems=problems,
                seconds=round(secs, 3),
                notes=list(out.notes),
            )
            if out_dir is not None and good:
                res.path = str(
                    export_rule_set(
                        out_dir / _safe_name(name),
                        good,
                        dataset=dataset.name,
                        unit=name,
                        series=job[3],
                        generator=gen.name,
                        output=out,
                    )
                )
            results.append(res)
            if on_unit is not None:
                on_unit(res, out)
    finally:
        if sandbox is not None:
            sandbox.close()
    order = {name: i for i, name in enumerate(units)}
    results.sort(key=lambda r: order[r.unit])
    summary = TrainSummary(
        dataset=dataset.name,
        generator=gen.name,
        granularity=spec.granularity,
        units=results,
        seconds=round(time.perf_counter() - t0, 3),
        out_dir=None if out_dir is None else str(out_dir),
        config=asdict(gen.config) if isinstance(gen, BuiltinGenerator) else {},
    )
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "summary.json").write_text(json.dumps(summary.to_json(), indent=2) + "\n")
    return summary


def _run_jobs(
    gen: Generator,
    jobs: Sequence[tuple[str, list[Series], list[Series], list[str]]],
    workers: int,
    executor: Any = None,
) -> Iterable[
    tuple[tuple[str, GeneratorOutput, float], tuple[str, list[Series], list[Series], list[str]]]
]:
    if executor is not None:
        yield from executor.run_training(gen, jobs)
        return
    by_name = {j[0]: j for j in jobs}
    if workers <= 1 or len(jobs) <= 1:
        for j in jobs:
            yield _generate_unit(gen, j[0], j[1], j[2]), j
        return
    from concurrent.futures import as_completed

    with ProcessPoolExecutor(max_workers=workers) as pool:
        futs = [pool.submit(_generate_unit, gen, j[0], j[1], j[2]) for j in jobs]
        for f in as_completed(futs):
            r = f.result()
            yield r, by_name[r[0]]


def _open_sandbox() -> Any:
    from argos.sandbox.pool import Sandbox

    return Sandbox(workers=1)


def _safe_name(name: str) -> str:
    """The folder name of a unit's rule set: a lower-case slug (portable across case-insensitive
    file systems), with a short hash when the slug had to change the name."""
    keep = "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip("._").lower()
    if keep == name:
        return keep
    return f"{keep or 'unit'}-{hashlib.sha256(name.encode()).hexdigest()[:6]}"


def export_rule_set(
    folder: Path,
    rules: Sequence[GeneratedRule],
    *,
    dataset: str,
    unit: str,
    series: Sequence[str],
    generator: str,
    output: GeneratorOutput,
) -> Path:
    """Write the rules as a rule-set folder (rule files + manifest) and return the folder."""
    from argos.rules.artifacts import RuleSource, write_ruleset

    fields: dict[str, Any] = {
        "name": f"{dataset} {unit} ({generator} generator)",
        "combination": "or",
        "training": {"dataset": dataset, "series": list(series), "partition": None},
        "metrics": {
            "train": {"event_pa_f1": output.train_f1, "candidates_tried": output.tried},
            "validation": {"event_pa_f1": output.validation_f1},
        },
        "generator": output.generator or {"kind": "builtin"},
    }
    if output.fusion_base is not None:
        fields["combination"] = {
            "mode": "fusion",
            "base": output.fusion_base,
            "fn_rules": [r.name for r in rules if r.role == "fn"],
            "fp_rules": [r.name for r in rules if r.role == "fp"],
        }
    if len(series) > 1 or unit not in series:
        fields["training"]["partition"] = unit
    sources = [RuleSource(r.name, r.source, r.params) for r in rules]
    write_ruleset(folder, sources, fields)
    return folder


def default_workers() -> int:
    """Worker processes for training: the CPU count, at most 4."""
    return max(1, min(4, os.cpu_count() or 1))


# --------------------------------------------------------------------------------------------------
# The ``argos-builtin`` evaluation method: train-then-detect through the sandbox
# --------------------------------------------------------------------------------------------------

_SANDBOXES: dict[int, Any] = {}


def process_sandbox() -> Any:
    """One sandbox per process, opened on first use (its zygotes die with the process)."""
    pid = os.getpid()
    sb = _SANDBOXES.get(pid)
    if sb is None:
        _SANDBOXES.clear()  # a forked child must not reuse its parent's workers
        sb = _open_sandbox()
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
    """``argos-builtin``: run the builtin generator on train/validation, detect with its rules."""

    name = "argos-builtin"

    def __init__(self, *, seed: int = 0, config: SearchConfig | None = None) -> None:
        self.config = config or SearchConfig(seed=seed)

    def fit(self, train: Sequence[Series], validation: Sequence[Series]) -> RuleSetDetector:
        out = BuiltinGenerator(self.config).generate(train, validation)
        return RuleSetDetector([r.source for r in out.rules])
