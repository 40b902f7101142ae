"""The knobs of the builtin search (:class:`SearchConfig`) and its extension points.

The fields are what ``argos train`` runs with; the evidence behind every default (the protocol
rows that chose it) is in docs/generator.md, "SearchConfig: the defaults and their evidence".
Choices that lost on the protocols are not fields: the protocol scripts in ``benchmarks/``
re-run them by subclassing :class:`SearchConfig` and overriding its four hook methods
(:meth:`SearchConfig.few_event_shapes`, :meth:`SearchConfig.tie_margin`,
:meth:`SearchConfig.order_ranking`, :meth:`SearchConfig.for_objective`), which production
leaves at their defaults.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from argos.metrics import EVENT_PA, Objective
from argos.rules.grammar import Direction
from argos.training.builtin.shapes import SIMPLE_SCORERS, Candidate, FitSeries, Triple
from argos.training.builtin.sweep import MarginFn, std_margin


@dataclass(frozen=True)
class SearchConfig:
    """Knobs of the search (defaults are what ``argos train`` uses; evidence: docs/generator.md).

    Attributes:
        persistences: consecutive points a rule must hold before it fires.
        max_rules: at most this many rules are OR-ed into the rule set.
        min_gain: an extra OR member or AND gate must raise the selection score by at least this.
        top_k: how many ranked candidates are kept in the result (for reports and composition).
        trials: if set, evaluate at most this many structures (a seeded random subset).
        seed: seed for ``trials`` subsampling.
        max_candidates: cap on distinct thresholds swept per structure (quantiles beyond it).
        resolution: selection scores closer than this count as a tie, broken by the margin.
        few_events: with fewer labeled events than this (train + validation, all series), only
            the shapes of :meth:`few_event_shapes` are searched (the few-event regime).
        val_weight: weight of the validation F1 in the selection score (the rest: train F1).
        gap: where the threshold sits in the gap below the optimal event maximum (0.5: midway;
            smaller: nearer the event maximum).
        few_events_gap: ``gap`` in the few-event regime.
        few_events_long_gap: ``gap`` in the few-event regime when the events are long.
        few_events_or: in the few-event regime with long events, OR this many rules of
            different shapes, each fit on its own (1 = the normal composition).
        long_event: mean labeled event length (points) from which events count as long.
        cooldown: an alarm needs the rule's condition off for ``cooldown`` x (mean labeled event
            length) points before it (at least 1; 0 = no cool-down); the sweep counts the
            cooled-down alarms.
        few_events_long_directions: the directions searched in the few-event regime with long
            events (one alarm anywhere in a long event is a hit).
        few_events_long_persistences: the persistences searched there.
        few_events_or_ties: OR the next shape (``few_events_or``) only when it ties the best one
            on selection (same ``resolution`` step).
        unlabeled_cooldown: a unit with no labeled anomaly (or whose events no structure
            catches) gets one unsupervised rule, the value leaving the band around its median
            that it kept there, with this cool-down in points; None exports no rule for it.
        max_z: a z-score rule whose fitted threshold is more than this many deviations is
            dropped (a degenerate scale, not a reviewable rule); None keeps them.
        max_duty: a rule's condition may hold on at most this share of the normal points it is
            fit on (before the cool-down); None allows any threshold.
        and_gates: AND composition: each chosen rule may get a gate, a second shape that must
            hold at the same point (units with ``few_events`` events or more).
        weekly: seasonal residuals also use a one-week period when the timestamps allow it.
        objective: what selection and threshold fitting maximise (``argos train --objective``;
            :meth:`for_objective` adapts the other knobs to it).
        no_event_fp_penalty: when validation has no event, the selection score is the train F1
            divided by ``1 + no_event_fp_penalty x`` (validation false alarms).
        catch_prior: None: thresholds maximise the objective's F1 on the labeled events. A
            number (no cool-down only): they maximise the expected F1 of the next events, each
            caught with the labeled events' catch rate shrunk towards that of a random hit
            window of normal points, with this weight in events
            (:class:`~argos.training.builtin.sweep.ShrunkTable`; :meth:`for_objective` sets it
            for the delay objective with long events).
        fit_in_sample: fit and select on train + validation together (in sample), as the
            search does anyway when the train part holds no event.
        long_catch_prior: the ``catch_prior`` of the delay objective with few long events.
        catch_prior_events: "few" there: fewer labeled events than this (train + validation,
            all series of the unit).
    """

    persistences: tuple[int, ...] = (1, 2, 3)
    max_rules: int = 3
    min_gain: float = 0.01
    top_k: int = 10
    trials: int | None = None
    seed: int = 0
    max_candidates: int = 4000
    resolution: float = 0.02
    few_events: int = 3
    val_weight: float = 0.5
    gap: float = 0.25
    few_events_gap: float = 0.9
    few_events_long_gap: float = 0.75
    few_events_or: int = 2
    long_event: int = 20
    cooldown: float = 0.5
    few_events_long_directions: tuple[Direction, ...] = ("both",)
    few_events_long_persistences: tuple[int, ...] = (1,)
    few_events_or_ties: bool = True
    unlabeled_cooldown: int | None = 10
    max_z: float | None = 20.0
    max_duty: float | None = 0.02
    and_gates: bool = True
    weekly: bool = True
    objective: Objective = EVENT_PA
    no_event_fp_penalty: float = 0.1
    catch_prior: float | None = None
    fit_in_sample: bool = False
    long_catch_prior: float = 16.0
    catch_prior_events: int = 10

    # Extension points: production uses these defaults; the protocol scripts override them in a
    # subclass to re-run the rows of docs/generator.md whose choice lost.

    def few_event_shapes(
        self, triples: list[Triple], series: Sequence[FitSeries], *, long: bool, fit_on_all: bool
    ) -> list[Triple]:
        """The shapes searched in the few-event regime, from the proposed ``triples`` (``long``:
        the events are long; ``fit_on_all``: no train event, so fits use train + validation).
        Here: the simple scorers (:data:`SIMPLE_SCORERS`) of the values and differences; every
        shape for the ``delay`` objective with long events (early detection is another problem
        than catching the event somewhere, :meth:`for_objective`)."""
        if long and self.objective.kind == "delay":
            return triples
        return [t for t in triples if t[1] in SIMPLE_SCORERS and t[0] in ("value", "diff")]

    def tie_margin(self, *, few_long: bool) -> MarginFn:
        """The margin that breaks selection ties (``few_long``: the few-event regime with long
        events). Here: :func:`~argos.training.builtin.sweep.std_margin` for every unit."""
        return std_margin

    def for_objective(self, quiet: int, *, long: bool, events: int) -> tuple[SearchConfig, int]:
        """The configuration and the cool-down (points) the search runs with for
        :attr:`objective`, from the event-PA cool-down ``quiet`` (``long``: the unit's labeled
        events are long, ``long_event`` points or more on average; ``events``: how many labeled
        events the unit has, train + validation).

        event-PA: unchanged. ``point``: no cool-down (it would silence labeled points, each a
        miss). ``delay:K`` with short events: the cool-down at most K points (a longer one
        silences an alarm at an event's start after a burst just before it, and the event is
        then missed, where event-PA would still count a later alarm). ``delay:K`` with long
        events, early detection of long windows: no cool-down, no duty limit (a caught event
        weighs its length in points, so the best threshold may hold on many normal points), no
        validation false-alarm penalty in selection (the objective's F1 counts false alarms
        already) and every shape (:meth:`few_event_shapes`); with fewer than
        ``catch_prior_events`` labeled ``events``, also the catch prior
        (``long_catch_prior``: thresholds for the expected F1 of the next events, whose starts
        may look like any other stretch) and fits and selection on train + validation together
        (``fit_in_sample``: the prior, not a validation part that rarely holds an event, is the
        regulariser)."""
        goal = self.objective
        if goal.kind == "point":
            return self, 0
        if goal.kind == "delay" and long:
            free = replace(self, max_duty=None, no_event_fp_penalty=0.0)
            if events < self.catch_prior_events:
                return replace(free, catch_prior=self.long_catch_prior, fit_in_sample=True), 0
            return free, 0
        if goal.kind == "delay":
            return self, min(quiet, goal.delay)
        return self, quiet

    def order_ranking(self, ranking: list[Candidate], *, few: bool) -> list[Candidate]:
        """The ranked candidates (best first, never empty) in the order the composition takes
        them (``few``: the few-event regime). Here: unchanged."""
        return ranking
