"""The embedded, LLM-free rule generator: an exact threshold search over the template grammar.

For one training unit (a series, or all series of a partition) the search:

1. proposes structures from :mod:`argos.rules.grammar` sized to the data (windows scaled to the
   series length, the seasonal period from the timestamps or the autocorrelation of the train
   values);
2. computes each (transform, scorer, params) score ONCE over train + validation (causal, so the
   validation part sees its real history), then for every direction and persistence sweeps ALL
   thresholds exactly for the config's objective (event-PA by default, or k-delay or point F1):
   the F1 as a function of the threshold only changes at the maximum score of an event's hit
   window, so the best threshold is found in O(n log n) by sorting (:mod:`.sweep`); every rule
   has a cool-down (it alarms once per burst: its condition must have been off for half a labeled
   event before; none with the ``point`` objective), and the sweep counts the cooled-down alarms,
   still exactly and in O(n log n);
3. fits the threshold on the train part only and scores the structure on the validation part
   (selection uses validation; train F1 only breaks ties and fills in when validation has no
   event); with no train event, or few long events and the delay objective (where the catch
   prior of :meth:`SearchConfig.for_objective` regularises instead), it fits and selects on
   train + validation together;
4. composes an OR of up to ``max_rules`` rules greedily: each new rule's threshold is swept
   conditionally on the events and false alarms the rules already chosen have, and it is kept only
   when it improves the selection score by ``min_gain``; then gives each chosen rule the AND gate
   (a second shape that must hold at the same point) that raises the selection score most, if by
   ``min_gain`` (units with 3 labeled events or more); no threshold may leave its condition on for
   more than ``max_duty`` of the normal points;
5. re-fits the chosen thresholds on train + validation (never test: the search never receives test
   labels) and places each threshold inside the gap below the optimal event maximum (a quarter of
   the way down by default), so it is not sitting on a training point;
6. narrows each rule to the side(s) whose score can reach its threshold and drops a rule that
   cannot fire at all (:func:`reachable_rules`, :mod:`argos.rules.reach`): neither changes a
   label, and the exported text never describes an event that cannot happen.

Deterministic: no randomness is used except the optional ``trials`` subsampling, seeded.

This module is the driver of those steps; the pieces live beside it: :mod:`.shapes` (the unit's
series and the proposed structures, step 1), :mod:`.sweep` (the exact threshold sweep and the
cool-down counting, step 2), :mod:`.compose` (OR / AND composition, re-fit and the unsupervised
fallback, steps 4-5) and :mod:`.config` (the knobs and the extension points the protocol scripts
use).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from argos._types import ProgressFn
from argos.rules.grammar import SCORERS, Direction, RuleSpec, Structure
from argos.rules.reach import reachable
from argos.rules.templates import compile_score, directional
from argos.training.builtin.compose import (
    add_gates,
    compose_or,
    flags_of,
    independent_or,
    refit_thresholds,
    reviewable,
    selection_score,
    unlabeled_rule,
)
from argos.training.builtin.config import SearchConfig
from argos.training.builtin.shapes import Candidate, FitSeries, propose_structures
from argos.training.builtin.sweep import Part, flags_counts, part_of, sweep, threshold_counts


@dataclass
class SearchResult:
    """What the search returns for one training unit.

    Attributes:
        rules: the chosen rules (OR-ed), thresholds final.
        ranking: the top candidates by selection score (single rules, thresholds fit on train).
        tried: number of (structure, direction, persistence) candidates evaluated.
        selection: selection score of the chosen OR-set (thresholds fit on train).
        train_f1 / val_f1: of the chosen OR-set with its final thresholds.
    """

    rules: list[RuleSpec]
    ranking: list[Candidate]
    tried: int
    selection: float
    train_f1: float | None
    val_f1: float | None
    notes: list[str] = field(default_factory=list)


_NO_LABEL = "no labeled anomaly in train/validation"


def search(
    series: Sequence[FitSeries],
    config: SearchConfig | None = None,
    progress: ProgressFn | None = None,
) -> SearchResult:
    """Search the grammar for the best OR-set of rules for one training unit (see module doc;
    ``config`` defaults to :class:`SearchConfig`'s defaults), each rule narrowed to the
    thresholds its score can reach (:func:`reachable_rules`)."""
    result = _search(series, config or SearchConfig(), progress)
    rules, notes = reachable_rules(series, result.rules)
    return replace(result, rules=rules, notes=[*result.notes, *notes])


def nonnegative_metric(series: Sequence[FitSeries]) -> bool:
    """Whether the unit's metric never went below zero in its fitting history (train and
    validation of every series): then it is taken as a nonnegative metric (see
    :mod:`argos.rules.reach`)."""
    for fs in series:
        v = fs.values[np.isfinite(fs.values)]
        if len(v) and float(v.min()) < 0:
            return False
    return True


def reachable_rules(
    series: Sequence[FitSeries], rules: Sequence[RuleSpec]
) -> tuple[list[RuleSpec], list[str]]:
    """The rules narrowed to the sides that can reach their thresholds, without the rules that
    cannot fire at all (:func:`argos.rules.reach.reachable`: neither changes a label), and a note
    for each change."""
    nonnegative = nonnegative_metric(series)
    domain = "a metric that never went below zero" if nonnegative else "this metric"
    out: list[RuleSpec] = []
    notes: list[str] = []
    for r in rules:
        kept = reachable(r, nonnegative)
        if kept is None:
            notes.append(f"dropped {r.name}: no value of {domain} can reach its threshold")
        else:
            if kept.name != r.name:
                notes.append(
                    f"narrowed {r.name} to {kept.name}: the other side cannot reach its "
                    f"threshold for {domain}"
                )
            out.append(kept)
    return out, notes


def _search(
    series: Sequence[FitSeries], config: SearchConfig, progress: ProgressFn | None
) -> SearchResult:
    if not series:
        raise ValueError("search needs at least one series")
    goal = config.objective
    train_parts = [part_of(fs.labels, 0, fs.val_start, goal) for fs in series]
    val_parts = [part_of(fs.labels, fs.val_start, len(fs.values), goal) for fs in series]
    all_parts = [part_of(fs.labels, 0, len(fs.values), goal) for fs in series]
    # the regimes (few events, long events, the cool-down) look at the labeled events themselves
    labeled = [part_of(fs.labels, 0, len(fs.values)) for fs in series]
    if sum(p.n_events for p in train_parts) + sum(p.n_events for p in val_parts) == 0:
        if config.unlabeled_cooldown is None:
            return SearchResult([], [], 0, 0.0, None, None, [_NO_LABEL])
        rule = unlabeled_rule(series, config.unlabeled_cooldown)
        note = f"{_NO_LABEL}: one unsupervised rule, the value leaving the band it kept there"
        return SearchResult([rule], [], 1, 0.0, None, None, [note])
    fit_on_all = sum(p.n_events for p in train_parts) == 0
    triples = propose_structures(series, weekly=config.weekly)
    n_events = sum(p.n_events for p in labeled)
    few = n_events < config.few_events
    long = _long_events(labeled, config)
    config, quiet = config.for_objective(_quiet_points(labeled, config), long=long, events=n_events)
    fit_on_all = fit_on_all or config.fit_in_sample
    margin = config.tie_margin(few_long=few and long)
    directions: tuple[Direction, ...] | None = None
    if few:
        # too few labeled events to choose among hundreds of shapes: keep the simple ones, and
        # lean towards recall inside the (flat) optimal threshold interval
        triples = config.few_event_shapes(triples, series, long=long, fit_on_all=fit_on_all)
        config = replace(config, gap=config.few_events_long_gap if long else config.few_events_gap)
        if long:
            # one alarm anywhere inside a long event is a hit: a direction or a persistence
            # learnt from one or two events only costs recall on the next one
            directions = config.few_events_long_directions
            config = replace(config, persistences=config.few_events_long_persistences)
    if config.trials is not None and config.trials < len(triples):
        rng = np.random.default_rng(config.seed)
        keep = sorted(rng.choice(len(triples), size=config.trials, replace=False).tolist())
        triples = [triples[i] for i in keep]
    ranking: list[Candidate] = []
    tried = 0
    best_sel = -1.0
    for transform, scorer, params in triples:
        fn = compile_score(transform, scorer)
        pd_ = dict(params)
        raw = [fn(fs.values, fs.timestamps, pd_) for fs in series]
        for direction in _directions(scorer, directions):
            for k in config.persistences:
                st = Structure(transform, scorer, params, direction, k)
                scores = [directional(r, direction, k) for r in raw]
                tried += 1
                thr, tf1, clear = sweep(
                    scores,
                    all_parts if fit_on_all else train_parts,
                    None,
                    config.max_candidates,
                    config.gap,
                    margin,
                    quiet,
                    config.max_duty,
                    config.catch_prior,
                    goal.delay + 1,
                )
                if not reviewable(st, thr, config):
                    continue
                vc = threshold_counts(scores, val_parts, thr, None, quiet)
                if fit_on_all:  # no train event: select on train + validation too
                    vf1, sel = vc.f1(), tf1
                else:
                    vf1, sel = selection_score(tf1, vc, config)
                ranking.append(Candidate(st, thr, tf1, vf1, int(vc.fp.sum()), sel, clear))
                best_sel = max(best_sel, sel)
        if progress is not None:
            progress(tried, max(best_sel, 0.0))
    res = config.resolution
    ranking.sort(
        key=lambda c: (-round(c.selection / res), -c.margin, -c.train_f1, c.structure.name)
    )
    if not ranking:
        note = "no structure caught a labeled event"
        if config.unlabeled_cooldown is None:
            return SearchResult([], [], tried, 0.0, None, None, [note])
        rule = unlabeled_rule(series, config.unlabeled_cooldown)
        note += ": one unsupervised rule, the value leaving the band it kept there"
        return SearchResult([rule], [], tried, 0.0, None, None, [note])
    ranking = config.order_ranking(ranking, few=few)
    # no train event: fit and select on train + validation together (in sample)
    fit_on, select_on = (all_parts, all_parts) if fit_on_all else (train_parts, val_parts)
    chosen, sel = compose_or(series, ranking, fit_on, select_on, config, fit_on_all, quiet)
    if config.and_gates and not few:
        chosen, sel = add_gates(
            series, chosen, ranking, fit_on, select_on, config, sel, fit_on_all, quiet
        )
    final = refit_thresholds(series, chosen, all_parts, config, quiet)
    if few and config.few_events_or > 1 and long:
        # long events: one alarm anywhere inside is a hit, so a second shape buys recall
        final = independent_or(series, ranking, all_parts, config, quiet)
    flags = flags_of(series, final)
    final_train = flags_counts(flags, train_parts).f1()
    final_val = flags_counts(flags, val_parts).f1()
    return SearchResult(final, ranking[: config.top_k], tried, sel, final_train, final_val)


def _mean_event_length(parts: Sequence[Part]) -> float:
    """Mean length (points) of the labeled events of the parts (0 when there is none)."""
    n = sum(p.n_events for p in parts)
    length = sum(int((p.ends - p.starts).sum()) for p in parts)
    return length / n if n else 0.0


def _quiet_points(parts: Sequence[Part], config: SearchConfig) -> int:
    """The rules' cool-down in points: ``config.cooldown`` times the mean labeled event length,
    at least 1 (0 when the cool-down is off; :meth:`SearchConfig.objective_limits` adapts it to
    the objective)."""
    if config.cooldown <= 0:
        return 0
    return max(1, round(config.cooldown * _mean_event_length(parts)))


def _directions(scorer: str, wanted: tuple[Direction, ...] | None) -> tuple[Direction, ...]:
    """The scorer's directions, restricted to ``wanted`` when it offers any of them."""
    own = SCORERS[scorer].directions
    keep = tuple(d for d in own if wanted is None or d in wanted)
    return keep or own


def _long_events(parts: Sequence[Part], config: SearchConfig) -> bool:
    """Whether the labeled events are long on average (``long_event`` points or more)."""
    return _mean_event_length(parts) >= config.long_event
