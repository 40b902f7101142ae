"""Parameter fitting: search a rule's ``PARAMS`` by running it in the sandbox; score in the parent.

LLMs choose structure well and thresholds badly, so the trainer tunes the numeric constants a rule
exposes in ``PARAMS``. The rule runs only in :class:`argos.sandbox.pool.Sandbox` (batched with
``run_grid``); labels stay here, in the parent, where the predictions are scored.

Search space, per parameter (unless ``space`` names explicit candidates):

* declared ``PARAM_RANGES = {"k": (lo, hi)}``: values between ``lo`` and ``hi`` (integers when the
  default is an int);
* numeric without a declared range: a multiplicative range ``default / 4 .. default * 4`` (log
  spaced); parameters whose default is 0 are left alone;
* booleans: ``False, True``; strings: left at their default;
* an integer whose default is at most the rule's ``LOOKBACK`` (a window, a lag, a period) is
  never searched above ``LOOKBACK``, declared range or not: a window grown past ``LOOKBACK``
  makes the rule depend on history the online detector does not keep (not stream-exact; the
  trainer also checks the fitted rule, see :meth:`argos.training.agents.lab.SandboxRuleLab.fit`).

With ``search="auto"`` a full grid is used when it fits in ``budget`` with at least three levels per
parameter, otherwise seeded random search. The defaults are always the first trial, so fitting never
returns something worse on the training objective than the rule as written.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from argos._types import BoolArray
from argos.metrics import EVENT_PA, Objective, aggregate_pooled
from argos.rules.contract import ParamValue, RuleContractError, check_rule
from argos.sandbox.pool import InputHandle, RuleInput, RunResult, Sandbox

MULTIPLICATIVE_SPAN = 4.0
"""Undeclared numeric parameters are searched in ``default / 4 .. default * 4``."""


@dataclass(frozen=True)
class Trial:
    """One evaluated parameter set: ``score`` is None when the run failed (see ``status``)."""

    params: dict[str, ParamValue]
    score: float | None
    status: str
    detail: str = ""


@dataclass(frozen=True)
class FitResult:
    """Best parameters found, their training score (None if no trial ran), and every trial."""

    best_params: dict[str, ParamValue]
    best_score: float | None
    trace: list[Trial] = field(default_factory=list)

    @property
    def n_failed(self) -> int:
        """Trials whose run did not succeed."""
        return sum(t.score is None for t in self.trace)


def score_predictions(
    labels: Sequence[BoolArray], preds: Sequence[BoolArray], objective: Objective = EVENT_PA
) -> float:
    """Pooled score over all series (counts summed, then F1).

    When the training labels contain no anomaly at all F1 is undefined; the score is then minus
    the fraction of points flagged, so quieter parameters win.
    """
    pooled = aggregate_pooled(objective.score(t, p) for t, p in zip(labels, preds, strict=True))
    if pooled.f1 is not None:
        return float(pooled.f1)
    total = sum(len(p) for p in preds)
    return -float(sum(int(np.count_nonzero(p)) for p in preds)) / max(total, 1)


def _axis(
    default: ParamValue, declared: tuple[float, float] | None, levels: int
) -> list[ParamValue]:
    """Candidate values of one parameter for a grid with ``levels`` levels."""
    if isinstance(default, bool):
        return [default, not default]
    if isinstance(default, str):
        return [default]
    lo, hi, log = _bounds(default, declared)
    if lo == hi:
        return [default]
    raw = np.geomspace(lo, hi, levels) if log else np.linspace(lo, hi, levels)
    vals: list[ParamValue] = [default]
    for x in raw:
        v: ParamValue = round(float(x)) if isinstance(default, int) else float(x)
        if v not in vals:
            vals.append(v)
    return vals


def _bounds(default: float, declared: tuple[float, float] | None) -> tuple[float, float, bool]:
    if declared is not None:
        lo, hi = declared
        return float(lo), float(hi), lo > 0 and hi / lo >= 20
    if default == 0:
        return 0.0, 0.0, False
    a, b = default / MULTIPLICATIVE_SPAN, default * MULTIPLICATIVE_SPAN
    lo, hi = min(a, b), max(a, b)
    if isinstance(default, int) and default > 0:
        lo = max(1.0, lo)
    return lo, hi, lo > 0


def _sample(
    default: ParamValue, declared: tuple[float, float] | None, rng: np.random.Generator
) -> ParamValue:
    if isinstance(default, bool):
        return bool(rng.integers(2))
    if isinstance(default, str):
        return default
    lo, hi, log = _bounds(default, declared)
    if lo == hi:
        return default
    x = float(np.exp(rng.uniform(math.log(lo), math.log(hi)))) if log else rng.uniform(lo, hi)
    return round(x) if isinstance(default, int) else float(x)


def candidate_params(
    defaults: Mapping[str, ParamValue],
    ranges: Mapping[str, tuple[float, float]],
    *,
    space: Mapping[str, Sequence[ParamValue]] | None = None,
    budget: int = 32,
    seed: int = 0,
    search: Literal["auto", "grid", "random"] = "auto",
) -> list[dict[str, ParamValue]]:
    """Parameter sets to try (defaults first, no duplicates, at most ``budget``)."""
    if budget < 1:
        raise ValueError("budget must be >= 1")
    base = dict(defaults)
    out: list[dict[str, ParamValue]] = [base]
    seen = {_key(base)}

    def add(p: dict[str, ParamValue]) -> None:
        k = _key(p)
        if k not in seen and len(out) < budget:
            seen.add(k)
            out.append(p)

    def grid(axes: Mapping[str, list[ParamValue]]) -> list[dict[str, ParamValue]]:
        names = list(axes)
        for combo in itertools.product(*(axes[n] for n in names)):
            add({**base, **dict(zip(names, combo, strict=True))})
        return out

    if space is not None:
        unknown = set(space) - set(defaults)
        if unknown:
            raise ValueError(f"space names parameters not in PARAMS: {sorted(unknown)}")
        return grid({k: list(v) for k, v in space.items() if len(v)})
    tunable = [
        k
        for k, v in defaults.items()
        if isinstance(v, bool)
        or (not isinstance(v, str) and _bounds(v, ranges.get(k))[:2] != (0.0, 0.0))
    ]
    n_numeric = sum(not isinstance(defaults[k], bool) for k in tunable)
    levels = max(2, math.floor(budget ** (1.0 / max(1, n_numeric)) + 1e-9))
    axes = {k: _axis(defaults[k], ranges.get(k), levels) for k in tunable}
    grid_size = math.prod(len(v) for v in axes.values())
    if search == "grid" or (search == "auto" and grid_size <= budget and levels >= 3):
        return grid(axes)
    rng = np.random.default_rng(seed)
    attempts = 0
    while len(out) < budget and attempts < budget * 20:
        attempts += 1
        add({**base, **{k: _sample(defaults[k], ranges.get(k), rng) for k in tunable}})
    return out


def _key(p: Mapping[str, ParamValue]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, repr(v)) for k, v in p.items()))


def capped_ranges(
    defaults: Mapping[str, ParamValue],
    ranges: Mapping[str, tuple[float, float]],
    lookback: int,
) -> dict[str, tuple[float, float]]:
    """``ranges`` with every window-like integer (default ``1..lookback``) capped at
    ``lookback``; the defaults' own ranges are made explicit where a cap applies."""
    out = dict(ranges)
    for name, default in defaults.items():
        if isinstance(default, bool) or not isinstance(default, int):
            continue
        if not 1 <= default <= lookback:
            continue
        lo, hi, _log = _bounds(default, ranges.get(name))
        if hi > lookback:
            out[name] = (min(lo, float(lookback)), float(lookback))
    return out


def fit_params(
    sandbox: Sandbox,
    code: str,
    train_inputs: Sequence[RuleInput] | InputHandle,
    train_labels: Sequence[BoolArray],
    *,
    space: Mapping[str, Sequence[ParamValue]] | None = None,
    budget: int = 32,
    seed: int = 0,
    objective: Objective = EVENT_PA,
    search: Literal["auto", "grid", "random"] = "auto",
    batch_size: int = 8,
) -> FitResult:
    """Search the rule's ``PARAMS`` on training data; return the best set and the trace.

    ``train_inputs`` are ``(values, timestamps)`` pairs (or a preloaded handle) and ``train_labels``
    the matching label arrays, which never leave this process. Runs go to the sandbox in batches of
    ``batch_size`` parameter sets per child. Ties keep the earlier trial (the defaults come first).
    Raises ``RuleContractError`` when the rule fails the static gate.
    """
    info = check_rule(code, max_bytes=sandbox.limits.max_code_bytes)
    handle = (
        train_inputs if isinstance(train_inputs, InputHandle) else sandbox.preload(train_inputs)
    )
    labels = [np.asarray(lab, dtype=bool) for lab in train_labels]
    if [len(lab) for lab in labels] != list(handle.lengths):
        raise ValueError(
            f"train_labels lengths {[len(lab) for lab in labels]} do not match the inputs "
            f"{list(handle.lengths)}"
        )
    candidates = candidate_params(
        info.params,
        capped_ranges(info.params, info.param_ranges, info.lookback),
        space=space,
        budget=budget,
        seed=seed,
        search=search,
    )
    trace: list[Trial] = []
    best: Trial | None = None
    for start in range(0, len(candidates), max(1, batch_size)):
        batch = candidates[start : start + batch_size]
        results = sandbox.run_grid(code, handle, batch)
        for params, res in zip(batch, results, strict=True):
            trial = _score_trial(params, res, labels, objective)
            trace.append(trial)
            if trial.score is not None and (best is None or trial.score > (best.score or -1e18)):
                best = trial
    if best is None:
        return FitResult(dict(info.params), None, trace)
    return FitResult(dict(best.params), best.score, trace)


def _score_trial(
    params: dict[str, ParamValue],
    res: RunResult,
    labels: Sequence[BoolArray],
    objective: Objective,
) -> Trial:
    if not res.ok or res.outputs is None:
        return Trial(params, None, str(res.status), res.detail)
    return Trial(params, score_predictions(labels, res.outputs, objective), "ok")


__all__ = [
    "FitResult",
    "Objective",
    "RuleContractError",
    "Trial",
    "candidate_params",
    "capped_ranges",
    "fit_params",
    "score_predictions",
]


def stream_check_ends(batch: BoolArray, lookback: int, points: int) -> np.ndarray:
    """Where to compare a rule's label from its last ``lookback`` points (what the online
    detector computes when streaming) with its ``batch`` label on the whole history.

    ``points`` evenly spaced positions (a stream that fires where the batch does not) and up to
    ``points`` of the positions the batch flags (a stream that misses them): a rule fires
    rarely, so both are needed. Empty when the history is no longer than ``lookback``.
    """
    n = len(batch)
    if n <= lookback:
        return np.zeros(0, dtype=np.int64)
    flagged = np.flatnonzero(batch[lookback:]) + lookback
    if flagged.size > points:
        flagged = flagged[np.linspace(0, flagged.size - 1, points).astype(int)]
    spaced = np.linspace(lookback, n - 1, points).astype(np.int64)
    return np.unique(np.concatenate([spaced, flagged]))
