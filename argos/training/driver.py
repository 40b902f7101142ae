"""The training driver shared by ``argos train``, ``argos demo`` and the ``argos-builtin`` method.

For every training unit (one series, or one partition of series) the driver:

1. builds the fitting inputs with :func:`argos.data.protocol.fit_inputs` (train and validation
   slices, copies cut before the test part: a generator never holds a test label);
2. asks a :class:`~argos.training.generator.Generator` for rules (the builtin search of
   :mod:`argos.training.builtin.method`, or the LLM agents of :mod:`argos.training.agents.run`);
3. verifies every rule: the static gate (:func:`argos.rules.contract.check_rule`), a sandboxed run
   on the train + validation history of every series whose labels must equal what the generator
   computed in-process (trusted, template-rendered generators only), the causality check
   (:func:`argos.sandbox.pool.check_causality`) and, for trusted rules, the stream-exactness
   check (:func:`stream_mismatch`: the label from the last ``LOOKBACK`` points alone equals the
   batch label, so the online detector accepts the set); a failure travels as a
   :class:`~argos.sandbox.workers.RuleError` naming the rule;
4. exports the verified rules as a rule-set folder (:mod:`argos.rules.artifacts`) with metrics per
   split, and writes ``summary.json`` for the whole run.

The driver knows its collaborators only through the Protocols of :mod:`argos.training.generator`:
units run in a local process pool (``workers``) or on any
:class:`~argos.training.generator.UnitExecutor` (a Dask cluster); results are deterministic for a
seed.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from argos._types import BoolArray, FloatArray, IntArray
from argos.data.protocol import fit_inputs
from argos.data.series import Dataset, Series, SplitSpec
from argos.metrics import EVENT_PA, Objective
from argos.rules.artifacts import RuleSource, write_ruleset
from argos.rules.contract import RuleContractError, check_rule, with_params
from argos.rules.templates import load_rule
from argos.sandbox.kernel import RuleError
from argos.sandbox.pool import Sandbox, check_causality
from argos.training.fitting import stream_check_ends
from argos.training.generator import (
    DeploymentCheck,
    GeneratedRule,
    GeneratedUnit,
    Generator,
    GeneratorOutput,
    RuleRunner,
    TrainJob,
    UnitExecutor,
    generate_unit,
    join_history,
)

# --------------------------------------------------------------------------------------------------
# Verification in the sandbox
# --------------------------------------------------------------------------------------------------


def in_process_labels(
    rules: Sequence[GeneratedRule], values: FloatArray, timestamps: IntArray
) -> BoolArray:
    """OR of the rules' labels computed in-process. Only for TRUSTED (template-rendered) code."""
    out = np.zeros(len(values), dtype=bool)
    for r in rules:
        detect, params = load_rule(r.source)
        out |= np.asarray(detect(values, timestamps, params), dtype=bool)
    return out


def verify_rules(
    rules: Sequence[GeneratedRule],
    history: Sequence[Series],
    sandbox: RuleRunner,
    *,
    trusted: bool = True,
    deployment: DeploymentCheck | None = None,
) -> list[RuleError]:
    """Problems found with the rules (empty = all verified), one :class:`RuleError` each.

    Each rule must pass the static gate, run in the sandbox on the train + validation history of
    every series, give exactly the in-process labels (``trusted`` rules only: template code),
    pass the causality check on the first series and, when ``deployment`` is given, the online
    detector's own load-time check (so that ``argos detect`` opens what is exported).
    ``RuleError.item`` indexes ``history`` (0 when the problem is not about one series).
    """
    problems: list[RuleError] = []
    inputs = [(s.values, s.timestamps) for s in history]
    for r in rules:
        try:
            # What is verified is what is exported: the code with its fitted PARAMS.
            code = with_params(r.source, r.params)
        except RuleContractError as exc:
            problems.append(RuleError(0, r.name, f"static gate: {exc}"))
            continue
        res = sandbox.run(code, inputs)
        if not res.ok or res.outputs is None:
            problems.append(RuleError(0, r.name, f"sandbox {res.status}: {res.detail}"))
            continue
        if trusted:
            detect, params = load_rule(code)
            for i, (s, out) in enumerate(zip(history, res.outputs, strict=True)):
                ref = np.asarray(detect(s.values, s.timestamps, params), dtype=bool)
                if not np.array_equal(ref, out):
                    n_diff = int((ref != out).sum())
                    message = (
                        f"sandbox labels differ from the search's on {s.id!r} ({n_diff} points)"
                    )
                    problems.append(RuleError(i, r.name, message))
                    break
            first = history[0]
            lookback = check_rule(code).lookback
            mismatch = stream_mismatch(detect, params, lookback, first.values, first.timestamps)
            if mismatch:
                problems.append(RuleError(0, r.name, mismatch))
        first = history[0]
        causal = check_causality(
            sandbox,
            code,
            None,
            first.values,
            first.timestamps,
        )
        if not causal.ok:
            problems.append(RuleError(0, r.name, causal.detail))
    if deployment is not None:
        failed = {p.rule_id for p in problems}
        sources = [RuleSource(r.name, r.source, r.params) for r in rules if r.name not in failed]
        for rule_id, why in deployment(sources, trusted=trusted).items():
            problems.append(RuleError(0, rule_id, f"the online detector refuses it: {why}"))
    return problems


STREAM_CHECK_POINTS = 64
"""How many points :func:`stream_mismatch` labels from their ``LOOKBACK`` window alone."""


def stream_mismatch(
    detect: Callable[[FloatArray, IntArray, dict[str, float]], BoolArray],
    params: dict[str, float],
    lookback: int,
    values: FloatArray,
    timestamps: IntArray,
) -> str:
    """Why a TRUSTED rule (run in-process) is not stream-exact on this series ("" when it is).

    The online detector labels a point from the ``lookback`` points ending there; this compares
    that label with the batch label where :func:`~argos.training.fitting.stream_check_ends` says
    (:data:`STREAM_CHECK_POINTS` evenly spaced points and as many flagged ones).
    """
    lookback = max(1, lookback)
    batch = np.asarray(detect(values, timestamps, dict(params)), dtype=bool)
    for e in stream_check_ends(batch, lookback, STREAM_CHECK_POINTS):
        a = e - lookback + 1
        label = bool(detect(values[a : e + 1], timestamps[a : e + 1], dict(params))[-1])
        if label != batch[e]:
            return (
                f"not stream-exact: at index {int(e)} the label from the last LOOKBACK={lookback} "
                f"points ({label}) differs from the batch label ({bool(batch[e])})"
            )
    return ""


def problem_text(error: RuleError) -> str:
    """How ``summary.json`` and the CLI table show a verification problem: ``rule: message``."""
    return f"{error.rule_id}: {error.message}"


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
    dataset_source: str | None = None
    """The dataset as the user named it (a catalog name or a PATH): what ``argos report`` loads.
    ``dataset`` is the loaded dataset's name (a folder's name for a PATH)."""
    split: dict[str, Any] = field(default_factory=dict)
    """The split the run used: ``train_fraction``, ``validation_fraction``, ``granularity``."""

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


UnitCallback = Callable[[UnitResult, GeneratorOutput], None]


# --------------------------------------------------------------------------------------------------
# The output folder: one run per folder
# --------------------------------------------------------------------------------------------------

#: Files a training run writes at the top of its folder (the LLM path adds its run state and
#: caches). Rule-set folders are recognised by their ``manifest.json``.
RUN_FILES = (
    "summary.json",
    "usage.json",
    "run.json",
    "report.html",
    "checkpoints.sqlite",
    "llm-cache.sqlite",
)


class OutDirInUseError(ValueError):
    """The output folder holds files (another run's rule sets, or anything else)."""


def _is_run_entry(path: Path) -> bool:
    if path.is_dir() and not path.is_symlink():
        return (path / "manifest.json").is_file()
    return any(path.name == f or path.name.startswith(f + "-") for f in RUN_FILES)


def claim_out_dir(out_dir: Path, *, overwrite: bool) -> list[str]:
    """Make ``out_dir`` ready for a new run and return the names of the entries removed.

    A run writes one rule-set folder per unit next to ``summary.json``; training into a folder
    that already holds another run would mix both runs' rule sets under a summary naming only the
    second. So a non-empty folder is refused (:class:`OutDirInUseError`) unless ``overwrite``;
    even then only what a run writes (rule-set folders with a ``manifest.json``, the files of
    :data:`RUN_FILES`) is removed, and a folder holding anything else is refused untouched.
    """
    if not out_dir.exists():
        return []
    if not out_dir.is_dir():
        raise OutDirInUseError(f"{out_dir} is not a folder")
    entries = sorted(out_dir.iterdir())
    if not entries:
        return []
    if not overwrite:
        raise OutDirInUseError(
            f"{out_dir} already holds {len(entries)} entries (another run's rule sets?); "
            "training into it would mix two runs: give an empty or new --out, or --overwrite "
            "to replace a previous run there"
        )
    foreign = [e.name for e in entries if not _is_run_entry(e)]
    if foreign:
        raise OutDirInUseError(
            f"{out_dir} holds files no training run wrote ({', '.join(foreign[:5])}); "
            "--overwrite replaces only a previous run: give an empty or new --out"
        )
    removed = [e.name + ("/" if e.is_dir() else "") for e in entries]
    for entry in entries:
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    return removed


def train_dataset(
    dataset: Dataset,
    *,
    generator: Generator,
    out_dir: Path | None = None,
    granularity: str | None = None,
    series_id: str | None = None,
    partition: str | None = None,
    workers: int = 1,
    verify: bool = True,
    on_unit: UnitCallback | None = None,
    executor: UnitExecutor | None = None,
    dataset_source: str | None = None,
    deployment: DeploymentCheck | None = None,
) -> TrainSummary:
    """Train every unit of ``dataset``, verify and export the rules, and write ``summary.json``.

    ``on_unit`` is called as each unit finishes (in completion order) for progress displays.
    ``executor`` (e.g. an :class:`argos.distributed.DaskExecutor`) runs the units' generation
    instead of the local pool of ``workers`` processes; verification and export stay here.
    ``dataset_source`` is how the user named the dataset (recorded for ``argos report``).
    ``deployment`` is the online detector's check (see :func:`verify_rules`); a rule it refuses
    is not exported.
    """
    spec = dataset.split
    if granularity is not None:
        spec = SplitSpec(spec.train_fraction, spec.validation_fraction, granularity)
    units = training_units(
        dataset, granularity=spec.granularity, series_id=series_id, partition=partition
    )
    split = {
        "train_fraction": spec.train_fraction,
        "validation_fraction": spec.validation_fraction,
        "granularity": spec.granularity,
    }
    jobs: list[TrainJob] = []
    for name, group in units.items():
        fi = fit_inputs(group, spec)
        jobs.append(TrainJob(name, fi.train, fi.validation, [s.id for s in group]))
    t0 = time.perf_counter()
    results: list[UnitResult] = []
    runner = executor if executor is not None else LocalExecutor(workers)
    sandbox = Sandbox(workers=1) if verify else None
    try:
        for done in runner.run_training(generator, jobs):
            res = _verify_and_export(
                done, dataset.name, generator, sandbox, out_dir, split, deployment
            )
            results.append(res)
            if on_unit is not None:
                on_unit(res, done.output)
    finally:
        if sandbox is not None:
            sandbox.close()
    order = {name: i for i, name in enumerate(units)}
    results.sort(key=lambda r: order[r.unit])
    summary = TrainSummary(
        dataset=dataset.name,
        generator=generator.name,
        granularity=spec.granularity,
        units=results,
        seconds=round(time.perf_counter() - t0, 3),
        out_dir=None if out_dir is None else str(out_dir),
        config=generator.summary_config(),
        dataset_source=dataset_source,
        split=split,
    )
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "summary.json").write_text(json.dumps(summary.to_json(), indent=2) + "\n")
    return summary


def _verify_and_export(
    done: GeneratedUnit,
    dataset: str,
    generator: Generator,
    sandbox: RuleRunner | None,
    out_dir: Path | None,
    split: dict[str, Any] | None = None,
    deployment: DeploymentCheck | None = None,
) -> UnitResult:
    """Verify one unit's rules, export the good ones, and say what happened."""
    job, out = done.job, done.output
    problems: list[RuleError] = []
    if sandbox is not None:
        # Only template-rendered code may also run in-process (to cross-check the sandbox).
        history = join_history(job.train, job.validation)
        problems = verify_rules(
            out.rules, history, sandbox, trusted=generator.trusted, deployment=deployment
        )
    bad = {p.rule_id for p in problems}
    good = [r for r in out.rules if r.name not in bad]
    res = UnitResult(
        unit=job.unit,
        series=job.series,
        generator=generator.name,
        rules=[r.name for r in good],
        tried=out.tried,
        train_f1=out.train_f1,
        validation_f1=out.validation_f1,
        verified=sandbox is not None and not problems,
        problems=[problem_text(p) for p in problems],
        seconds=round(done.seconds, 3),
        notes=list(out.notes),
    )
    if out_dir is not None and good:
        folder = out_dir / _safe_name(job.unit)
        export_rule_set(
            folder,
            good,
            dataset=dataset,
            unit=job.unit,
            series=job.series,
            generator=generator.name,
            output=out,
            split=split,
        )
        res.path = str(folder)
    return res


@dataclass(frozen=True)
class LocalExecutor:
    """The default :class:`~argos.training.generator.UnitExecutor`: a local process pool of
    ``workers`` processes (in this process for one worker or one job)."""

    workers: int = 1

    def run_training(
        self, generator: Generator, jobs: Sequence[TrainJob]
    ) -> Iterator[GeneratedUnit]:
        if self.workers <= 1 or len(jobs) <= 1:
            for job in jobs:
                yield generate_unit(generator, job)
            return
        with ProcessPoolExecutor(max_workers=self.workers) as pool:
            futures = [pool.submit(generate_unit, generator, job) for job in jobs]
            for fut in as_completed(futures):
                yield fut.result()


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
    split: dict[str, Any] | None = None,
) -> Path:
    """Write the rules as a rule-set folder (rule files + manifest) and return the folder.
    ``split`` (train/validation fractions, granularity) is recorded in the manifest; the train and
    validation F1 are named by the objective the generator records (``event_pa_f1`` when none)."""
    generator_info = output.generator or {"kind": "builtin"}
    f1_key = Objective.parse(str(generator_info.get("objective", EVENT_PA))).metric_key
    fields: dict[str, Any] = {
        "name": f"{dataset} {unit} ({generator} generator)",
        "combination": "or",
        "training": {
            "dataset": dataset,
            "series": list(series),
            "partition": None,
            "split": dict(split or {}),
        },
        "metrics": {
            "train": {f1_key: output.train_f1, "candidates_tried": output.tried},
            "validation": {f1_key: output.validation_f1},
        },
        "generator": generator_info,
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
