"""Starting the engines that run a rule set's rules where its isolation says
(:data:`argos.online.detector.Isolation`): every rule in this process (a
:class:`~argos.sandbox.kernel.InProcessEngine`), every rule in its own worker process (a
:class:`~argos.sandbox.workers.WorkerEngine`), or both (a :class:`~argos.sandbox.mixed.MixedEngine`:
the proved builtin-template renderings here, the others in workers), and the second engine of
fresh processes the detector's load-time checks run their batch references in.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from argos.online.rulesets import LoadedRuleSet
from argos.rules.recognise import trusted_template
from argos.sandbox.kernel import InProcessEngine, RuleCode, RuleEngine
from argos.sandbox.mixed import MixedEngine
from argos.sandbox.workers import WorkerEngine, WorkerLimits

__all__ = ["TEMPLATES_INPROCESS", "TRUSTED_SET", "one_engine", "start_engines", "trusted_rule_ids"]

TEMPLATES_INPROCESS = "builtin-template rules in-process (trusted: byte-identical renders)"
TRUSTED_SET = "none (in-process, trusted rules only)"


def trusted_rule_ids(ruleset: LoadedRuleSet) -> list[str]:
    """The rules of a set that ``isolation="auto"`` runs in this process: those proved to be a
    builtin template rendering, byte for byte, with the rendering's own lookback
    (:func:`argos.rules.recognise.trusted_template`)."""
    return [r.id for r in ruleset.rules if trusted_template(r, r.code, r.lookback) is not None]


def one_engine(
    codes: Sequence[RuleCode],
    trusted: Sequence[str],
    workers: int,
    limits: WorkerLimits | None,
    recognised: bool,
) -> RuleEngine:
    """The engine for these rules: in this process when every rule is trusted, in workers when
    none is, else both (:class:`~argos.sandbox.mixed.MixedEngine`). ``recognised``: the trusted
    rules were proved to be template renderings (else the caller vouched for the whole set)."""
    if len(trusted) == len(codes):
        return InProcessEngine(codes, isolation=TEMPLATES_INPROCESS if recognised else TRUSTED_SET)
    if not trusted:
        return WorkerEngine(codes, workers=workers, limits=limits)
    return MixedEngine(codes, trusted, workers=workers, limits=limits)


def start_engines(
    codes: Sequence[RuleCode],
    trusted: Sequence[str],
    workers: int,
    limits: WorkerLimits | None,
    verify: bool,
    recognised: bool,
) -> tuple[RuleEngine, RuleEngine | None]:
    """The serving engine and, with ``verify``, a reference engine of fresh processes (and a
    fresh in-process kernel for the trusted rules) for the checks, both started at once.
    ``trusted`` names the rules that run in this process (see :func:`one_engine`)."""
    if len(trusted) == len(codes) or not verify:
        serving = one_engine(codes, trusted, workers, limits, recognised)
        return serving, one_engine(codes, trusted, 1, limits, recognised) if verify else None
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [
            pool.submit(one_engine, codes, trusted, workers, limits, recognised),
            pool.submit(one_engine, codes, trusted, 1, limits, recognised),
        ]
        engines: list[RuleEngine] = []
        failure: BaseException | None = None
        for fut in futures:
            try:
                engines.append(fut.result())
            except BaseException as exc:  # close what did start, then raise the first failure
                failure = failure or exc
    if failure is not None:
        for e in engines:
            e.close()
        raise failure
    return engines[0], engines[1]
