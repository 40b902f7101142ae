"""Composition of the builtin search's rule set from the ranked single rules.

After the search has ranked every (structure, direction, persistence) with its threshold fit on
train, this module builds what is exported: :func:`compose_or` ORs up to ``max_rules`` rules
greedily, each new threshold swept conditionally on the rules already chosen; :func:`add_gates`
gives each chosen rule the AND gate that helps most; :func:`independent_or` is the few-long-event
variant (shapes fit each on its own); :func:`refit_thresholds` re-fits the final thresholds on
train + validation. :func:`unlabeled_rule` is the unsupervised fallback for a unit without a
usable label. Every threshold goes through :func:`fit_threshold` and :func:`reviewable`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from argos._types import BoolArray, FloatArray
from argos.rules.grammar import Gate, RuleSpec, Structure
from argos.rules.templates import compile_score, directional
from argos.training.builtin.config import SearchConfig
from argos.training.builtin.shapes import (
    Z_SCORERS,
    Candidate,
    FitSeries,
    data_resolution,
    median_center,
)
from argos.training.builtin.sweep import Counts, Part, alarm, flags_counts, sweep


def selection_score(
    train_f1: float, val_counts: Counts, config: SearchConfig
) -> tuple[float | None, float]:
    """The validation F1 and the selection score of a rule (set) with this train F1 and these
    validation counts (``config.val_weight`` and ``config.no_event_fp_penalty``)."""
    vf1 = val_counts.f1()
    if vf1 is None:
        # no validation event: penalise validation false alarms against the train fit
        fp = float(val_counts.fp.sum())
        return None, train_f1 / (1.0 + config.no_event_fp_penalty * fp)
    return vf1, (1.0 - config.val_weight) * train_f1 + config.val_weight * vf1


def fit_threshold(
    scores: Sequence[FloatArray],
    parts: Sequence[Part],
    base: Sequence[BoolArray] | None,
    config: SearchConfig,
    quiet: int,
) -> tuple[float, float]:
    """:func:`~argos.training.builtin.sweep.sweep` with the config's candidate cap, gap and duty
    limit: the threshold and its F1."""
    thr, f1, _ = sweep(
        scores,
        parts,
        base,
        config.max_candidates,
        config.gap,
        quiet=quiet,
        max_duty=config.max_duty,
        catch_prior=config.catch_prior,
        window=config.objective.delay + 1,
    )
    return thr, f1


def unlabeled_rule(series: Sequence[FitSeries], cooldown: int) -> RuleSpec:
    """The rule for a unit without any label: the value leaves the band around its train +
    validation median that it kept there (beyond the largest deviation seen, by one step of the
    data's resolution), alarming once per excursion."""
    center = median_center(series, train_only=False)
    dev = np.concatenate([np.abs(fs.values - center) for fs in series])
    dev = dev[np.isfinite(dev)]
    widest = float(dev.max()) if len(dev) else 0.0
    step = data_resolution(series)
    thr = widest + step if step > 0 else float(np.nextafter(widest, math.inf))
    return RuleSpec(Structure("value", "band", (("center", center),), "both", 1), thr, cooldown)


def recenter(series: Sequence[FitSeries], st: Structure) -> Structure:
    """A band structure with its centre re-fitted on train + validation (others unchanged)."""
    if st.scorer != "band":
        return st
    params = tuple(
        (k, median_center(series, train_only=False) if k == "center" else v) for k, v in st.params
    )
    return replace(st, params=params)


def selection_step(c: Candidate, config: SearchConfig) -> int:
    """The candidate's selection score in steps of ``config.resolution`` (equal = a tie)."""
    return round(c.selection / config.resolution)


def scores_of(series: Sequence[FitSeries], st: Structure) -> list[FloatArray]:
    """The structure's directional scores (with its persistence) on every series of the unit."""
    fn = compile_score(st.transform, st.scorer)
    p = st.param_dict
    return [
        directional(fn(fs.values, fs.timestamps, p), st.direction, st.persistence) for fs in series
    ]


def gated_scores(series: Sequence[FitSeries], st: Structure, gate: Gate | None) -> list[FloatArray]:
    """The structure's scores where the gate holds (``-inf`` elsewhere): thresholding them gives
    the AND of the two conditions, exactly as the rendered rule computes it."""
    scores = scores_of(series, st)
    if gate is None:
        return scores
    opens = scores_of(series, gate.structure)
    return [np.where(g >= gate.threshold, s, -np.inf) for s, g in zip(scores, opens, strict=True)]


def flags_of(series: Sequence[FitSeries], rules: Sequence[RuleSpec]) -> list[BoolArray]:
    """Where the OR of the rules alarms, per series (each rule with its gate and cool-down)."""
    out = [np.zeros(len(fs.values), dtype=bool) for fs in series]
    for r in rules:
        for i, s in enumerate(gated_scores(series, r.structure, r.gate)):
            out[i] |= alarm(s, r.threshold, r.cooldown)
    return out


def add_gates(
    series: Sequence[FitSeries],
    chosen: Sequence[RuleSpec],
    ranking: Sequence[Candidate],
    train_parts: Sequence[Part],
    val_parts: Sequence[Part],
    config: SearchConfig,
    sel: float,
    in_sample: bool = False,
    quiet: int = 0,
) -> tuple[list[RuleSpec], float]:
    """AND composition: each chosen rule in turn gets the gate (a second shape that must hold at
    the same point) that raises the selection score most, if by at least ``min_gain``.

    For a gate shape, its threshold is swept with the rule's own fixed, then the rule's threshold
    again given the gate (it may go lower once the gate removes its false alarms): two exact
    sweeps, each conditional on the other rules of the set.
    """
    pool: list[Structure] = []
    for c in ranking[: 4 * config.top_k]:
        st = replace(c.structure, persistence=1)
        if st not in pool:
            pool.append(st)
    cache: dict[Structure, list[FloatArray]] = {}
    out = list(chosen)
    for i, rule in enumerate(out):
        if rule.gate is not None:
            continue
        others = out[:i] + out[i + 1 :]
        base = flags_of(series, others) if others else None
        main = scores_of(series, rule.structure)
        best: tuple[float, RuleSpec] | None = None
        for st in pool:
            if st.key == rule.structure.key:
                continue
            opens = cache.get(st)
            if opens is None:
                opens = cache[st] = scores_of(series, st)
            masked = [
                np.where(m >= rule.threshold, g, -np.inf) for m, g in zip(main, opens, strict=True)
            ]
            g_thr, _ = fit_threshold(masked, train_parts, base, config, quiet)
            if not reviewable(st, g_thr, config):
                continue
            gated = [np.where(g >= g_thr, m, -np.inf) for m, g in zip(main, opens, strict=True)]
            thr, tf1 = fit_threshold(gated, train_parts, base, config, quiet)
            if not reviewable(rule.structure, thr, config):
                continue
            candidate = RuleSpec(rule.structure, thr, quiet, gate=Gate(st, g_thr))
            if in_sample:
                cand_sel = tf1
            else:
                flags = [alarm(s, thr, quiet) for s in gated]
                if base is not None:
                    flags = [b | f for b, f in zip(base, flags, strict=True)]
                _, cand_sel = selection_score(tf1, flags_counts(flags, val_parts), config)
            if best is None or cand_sel > best[0]:
                best = (cand_sel, candidate)
        if best is not None and best[0] >= sel + config.min_gain:
            sel = best[0]
            out[i] = best[1]
    return out, sel


def compose_or(
    series: Sequence[FitSeries],
    ranking: Sequence[Candidate],
    train_parts: Sequence[Part],
    val_parts: Sequence[Part],
    config: SearchConfig,
    in_sample: bool = False,
    quiet: int = 0,
) -> tuple[list[RuleSpec], float]:
    """Greedy OR: start from the best single rule, add conditionally-fit rules while they help."""
    first = ranking[0]
    chosen = [RuleSpec(first.structure, first.threshold, quiet)]
    sel = first.selection
    pool = [c.structure for c in ranking[1 : 1 + 4 * config.top_k]]
    base = flags_of(series, chosen)
    while len(chosen) < config.max_rules and pool:
        best: tuple[float, RuleSpec, int] | None = None
        for j, st in enumerate(pool):
            scores = scores_of(series, st)
            thr, tf1 = fit_threshold(scores, train_parts, base, config, quiet)
            if not reviewable(st, thr, config):
                continue
            rule = RuleSpec(st, thr, quiet)
            flags = [b | alarm(s, thr, quiet) for b, s in zip(base, scores, strict=True)]
            if in_sample:
                cand_sel = tf1
            else:
                _, cand_sel = selection_score(tf1, flags_counts(flags, val_parts), config)
            if best is None or cand_sel > best[0]:
                best = (cand_sel, rule, j)
        if best is None or best[0] < sel + config.min_gain:
            break
        sel = best[0]
        chosen.append(best[1])
        pool.pop(best[2])
        base = flags_of(series, chosen)
    return chosen, sel


def refit_on(
    series: Sequence[FitSeries],
    structure: Structure,
    gate: Gate | None,
    all_parts: Sequence[Part],
    base: list[BoolArray] | None,
    config: SearchConfig,
    quiet: int,
) -> tuple[Structure, list[FloatArray], float]:
    """``structure`` recentred on ``series``, its scores (where ``gate`` holds) and the threshold
    fit on ``all_parts`` of them, given the alarms ``base`` of the rules before it."""
    st = recenter(series, structure)
    scores = gated_scores(series, st, gate)
    thr, _ = fit_threshold(scores, all_parts, base, config, quiet)
    return st, scores, thr


def independent_or(
    series: Sequence[FitSeries],
    ranking: Sequence[Candidate],
    all_parts: Sequence[Part],
    config: SearchConfig,
    quiet: int = 0,
) -> list[RuleSpec]:
    """The best ``few_events_or`` candidates of different score shapes, each fit on its own."""
    out: list[RuleSpec] = []
    keys: set[tuple[str, str]] = set()
    for c in ranking:
        if c.structure.key in keys:
            continue
        if (
            out
            and config.few_events_or_ties
            and selection_step(c, config) < selection_step(ranking[0], config)
        ):
            break  # only shapes as good as the best one add recall without adding doubt
        st, _, thr = refit_on(series, c.structure, None, all_parts, None, config, quiet)
        if not reviewable(st, thr, config):
            continue
        keys.add(c.structure.key)
        out.append(RuleSpec(st, thr, quiet))
        if len(out) >= config.few_events_or:
            break
    return out


def reviewable(st: Structure, thr: float, config: SearchConfig) -> bool:
    """A finite threshold an operator can review: a z-score rule needing more than
    ``config.max_z`` deviations is a degenerate scale (a window that sat on one value), not a
    rule."""
    if not math.isfinite(thr):
        return False
    return config.max_z is None or st.scorer not in Z_SCORERS or abs(thr) <= config.max_z


def refit_thresholds(
    series: Sequence[FitSeries],
    chosen: Sequence[RuleSpec],
    all_parts: Sequence[Part],
    config: SearchConfig,
    quiet: int = 0,
) -> list[RuleSpec]:
    """Re-fit the thresholds in order on train + validation, each given the earlier ones."""
    out: list[RuleSpec] = []
    base: list[BoolArray] | None = None
    for r in chosen:
        st, scores, thr = refit_on(series, r.structure, r.gate, all_parts, base, config, quiet)
        if not math.isfinite(thr):
            continue  # adds nothing on train + validation once the earlier rules are in
        if not reviewable(st, thr, config):
            st, thr = r.structure, r.threshold  # keep the train fit
            scores = gated_scores(series, st, r.gate)
        out.append(RuleSpec(st, thr, quiet, gate=r.gate))
        new = [alarm(s, thr, quiet) for s in scores]
        base = new if base is None else [b | f for b, f in zip(base, new, strict=True)]
    return out
