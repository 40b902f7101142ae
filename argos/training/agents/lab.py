"""The rule lab: where the training loop runs candidate rules and scores them.

:class:`SandboxRuleLab` implements :class:`argos.training.agents.context.RuleLab` for one training
unit. Rule code only ever runs in the :class:`argos.sandbox.pool.Sandbox` and only sees values and
timestamps; labels stay here, in the trainer, where the scoring happens. It also cuts the training
data into chunks for the agents' prompts and picks which chunk to show next:

- before any rule is accepted: chunks that contain anomalies, with a contrastive normal chunk whose
  mean and standard deviation are closest;
- afterwards, alternating: a chunk where the kept rule set misses anomalies (contrast: a similar
  normal chunk) and a chunk where it raises false alarms (contrast: a similar anomalous chunk), as
  in the published design. The first candidate of each kind takes the chunk with the most
  misses (false alarms), each later one the next in that ranking, so the prompts move through
  the data.

Scores use the run's :class:`~argos.metrics.Objective` (event-PA F1 by default). A candidate is
scored alone (:meth:`SandboxRuleLab.evaluate`) and as a member of a rule set, whose alarms are the
OR of its members' (:meth:`SandboxRuleLab.set_score`): the accept gate compares rule sets, so an
LLM rule is kept only when the set with it beats the set without it (the builtin incumbent first).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from argos._types import BoolArray, FloatArray, IntArray
from argos.data.series import Series
from argos.metrics import EVENT_PA, Objective, Scores, aggregate_pooled, event_pa, events
from argos.rules.artifacts import RuleSource
from argos.rules.contract import RuleContractError, check_rule
from argos.sandbox.pool import RuleInput, Sandbox, check_causality
from argos.training.agents.context import CheckOutcome, Evaluation
from argos.training.agents.prompts import render_regressions
from argos.training.agents.state import DraftRule
from argos.training.fitting import fit_params, stream_check_ends
from argos.training.generator import DeploymentCheck

DEFAULT_CHUNK_SIZE = 1000
HOLDOUT_FRACTION = 0.2
"""Without a validation event, the share of each series' train events held out for selection
(:func:`hold_out_train_events`)."""
STREAM_CHECK_POINTS = 48
"""Positions at which a fitted candidate's label on the whole history is compared with its label
on the last ``LOOKBACK`` points only (what the online detector computes when streaming)."""


@dataclass(frozen=True)
class Chunk:
    """A window of one training series: ``series`` indexes the unit's train list."""

    series: int
    start: int
    stop: int
    n_events: int
    mean: float
    std: float


@dataclass(frozen=True)
class ChunkData:
    """What the agents' prompts show of a chunk."""

    values: FloatArray
    timestamps: IntArray
    labels: BoolArray
    offset: int
    series_id: str


MISSED_SHOWN = 4
"""The validation account describes at most this many missed events."""


def event_shape(values: FloatArray, start: int, end: int, reference: int = 60) -> str:
    """How the event ``values[start:end]`` departs from the ``reference`` points before it, in
    words: its length, the direction, and its peak and mean deviation in robust standard
    deviations (1.4826 MAD) of those points from their median. Never a value: the agents are
    told what a missed validation event looks like, not the validation data."""
    before = values[max(0, start - reference) : start]
    before = before[np.isfinite(before)]
    inside = values[start:end]
    inside = inside[np.isfinite(inside)]
    length = f"{end - start} points"
    if len(before) < 3 or not len(inside):
        return length
    centre = float(np.median(before))
    spread = 1.4826 * float(np.median(np.abs(before - centre))) or float(np.std(before))
    deviation = inside - centre
    peak = float(deviation[np.argmax(np.abs(deviation))])
    way = "up" if peak > 0 else "down" if peak < 0 else "level"
    if spread == 0.0:
        return f"{length}, values {way} from the flat level of the {len(before)} points before"
    return (
        f"{length}, values {way}: peak {peak / spread:+.1f}, mean "
        f"{float(deviation.mean()) / spread:+.1f} robust sd from the median of the "
        f"{len(before)} points before"
    )


class SandboxRuleLab:
    """Runs and scores candidates for one training unit (a series or a partition)."""

    def __init__(
        self,
        train: Sequence[Series],
        validation: Sequence[Series],
        sandbox: Sandbox,
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        fit_budget: int = 24,
        causality_prefixes: int = 6,
        fusion_mode: Literal["fn", "fp"] | None = None,
        base: Sequence[tuple[BoolArray, BoolArray]] | None = None,
        deployment: DeploymentCheck | None = None,
        objective: Objective = EVENT_PA,
        guard: Objective | None = None,
    ) -> None:
        if not train:
            raise ValueError("a training unit needs at least one series")
        for s in [*train, *validation]:
            if s.labels is None:
                raise ValueError(f"series {s.id!r} has no labels: training needs labeled data")
        if (fusion_mode is None) != (base is None):
            raise ValueError("fusion needs both a mode (fn/fp) and the base detector's labels")
        self.fusion_mode = fusion_mode
        self.objective = objective
        self.guard = guard
        self.base = None if base is None else list(base)
        # The truth stays for scoring; rules are fitted and shown their TARGET labels.
        self.truth_train = [_labels(s) for s in train]
        self.truth_val = [_labels(s) for s in validation]
        self.train = [_relabel(s, t) for s, t in zip(train, self._targets(0), strict=True)]
        self.validation = [
            _relabel(s, t) for s, t in zip(validation, self._targets(1), strict=True)
        ]
        self.sandbox = sandbox
        self.deployment = deployment
        self.chunk_size = chunk_size
        self.fit_budget = fit_budget
        self.causality_prefixes = causality_prefixes
        self.chunks = self._cut_chunks()
        # History handed to rules for scoring: train followed by validation, per series.
        self._history: list[RuleInput] = []
        self._n_train: list[int] = []
        for tr, va in zip(self.train, self.validation, strict=True):
            self._history.append(
                (
                    np.concatenate([tr.values, va.values]),
                    np.concatenate([tr.timestamps, va.timestamps]),
                )
            )
            self._n_train.append(len(tr))
        self._history_handle = sandbox.preload(self._history)
        self._train_handle = sandbox.preload([(s.values, s.timestamps) for s in self.train])
        self._predictions: dict[str, list[BoolArray]] = {}

    def _targets(self, part: int) -> list[BoolArray]:
        truth = self.truth_train if part == 0 else self.truth_val
        if self.fusion_mode is None or self.base is None:
            return truth
        base = [b[part] for b in self.base]
        if self.fusion_mode == "fn":
            return [t & ~b for t, b in zip(truth, base, strict=True)]
        return [b & ~t for t, b in zip(truth, base, strict=True)]

    def _fused(self, pred: BoolArray, i: int, part: int) -> BoolArray:
        if self.fusion_mode is None or self.base is None:
            return pred
        b = self.base[i][part]
        return (b | pred) if self.fusion_mode == "fn" else (b & ~pred)

    # -- chunks --------------------------------------------------------------------------------
    def _cut_chunks(self) -> list[Chunk]:
        out: list[Chunk] = []
        for i, s in enumerate(self.train):
            n = len(s)
            size = min(self.chunk_size, n)
            for start in range(0, max(n - size, 0) + 1, size):
                stop = n if start + 2 * size > n else start + size
                assert s.labels is not None
                vals = s.values[start:stop]
                out.append(
                    Chunk(
                        series=i,
                        start=start,
                        stop=stop,
                        n_events=len(events(s.labels[start:stop])[0]),
                        mean=float(vals.mean()),
                        std=float(vals.std()),
                    )
                )
                if stop == n:
                    break
        return out

    def n_chunks(self) -> int:
        return len(self.chunks)

    def n_events(self) -> int:
        """Labeled events (of the rules' target) in the unit's train and validation parts."""
        return sum(
            len(events(s.labels)[0])
            for s in [*self.train, *self.validation]
            if s.labels is not None and len(s)
        )

    def chunk_data(self, index: int) -> ChunkData:
        c = self.chunks[index]
        s = self.train[c.series]
        assert s.labels is not None
        return ChunkData(
            values=s.values[c.start : c.stop],
            timestamps=s.timestamps[c.start : c.stop],
            labels=s.labels[c.start : c.stop],
            offset=c.start,
            series_id=s.id,
        )

    def _similar(self, index: int, anomalous: bool) -> int | None:
        ref = self.chunks[index]
        pool = [
            i for i, c in enumerate(self.chunks) if i != index and (c.n_events > 0) == anomalous
        ]
        if not pool:
            return None
        scale = max(ref.std, 1e-9)

        def distance(i: int) -> float:
            c = self.chunks[i]
            return abs(c.mean - ref.mean) / scale + abs(c.std - ref.std) / scale

        return min(pool, key=lambda i: (distance(i), i))

    def plan_chunk(
        self, iteration: int, slot: int, accepted: Sequence[DraftRule], seed: int, slots: int = 1
    ) -> tuple[int, int | None, str]:
        rng = np.random.default_rng([seed, iteration, slot])
        if not accepted:
            anomalous = [i for i, c in enumerate(self.chunks) if c.n_events > 0]
            pick = int(rng.choice(anomalous)) if anomalous else int(rng.integers(len(self.chunks)))
            return pick, self._similar(pick, anomalous=False), "initial"
        preds = self.train_alarms(accepted)
        missed = np.zeros(len(self.chunks))
        false_alarms = np.zeros(len(self.chunks))
        for i, c in enumerate(self.chunks):
            truth = self.train[c.series].labels
            assert truth is not None
            t, p = truth[c.start : c.stop], preds[c.series][c.start : c.stop]
            s = event_pa(t, p)
            missed[i], false_alarms[i] = s.fn, s.fp
        # Even slots look at misses and odd ones at false alarms (all at misses when the set
        # raises none); each candidate of the run takes the next turn of its kind.
        both = false_alarms.max() > 0 and missed.max() > 0
        want_missed = not both or slot % 2 == 0
        if not both:
            turn = iteration * slots + slot
        elif want_missed:
            turn = iteration * ((slots + 1) // 2) + slot // 2
        else:
            turn = iteration * (slots // 2) + slot // 2
        ties = np.random.default_rng(seed)  # one tie order for the run: turns move through it
        if want_missed and missed.max() > 0:
            pick = _in_turn(missed, turn, ties)
            return pick, self._similar(pick, anomalous=False), "missed"
        if false_alarms.max() > 0:
            pick = _in_turn(false_alarms, turn, ties)
            return pick, self._similar(pick, anomalous=True), "false_alarms"
        pick = int(rng.integers(len(self.chunks)))
        return pick, self._similar(pick, anomalous=self.chunks[pick].n_events == 0), "refine"

    # -- running -------------------------------------------------------------------------------
    def check(self, code: str, chunk: int) -> CheckOutcome:
        data = self.chunk_data(chunk)
        res = check_causality(
            self.sandbox,
            code,
            None,
            data.values,
            data.timestamps,
            n_prefixes=self.causality_prefixes,
        )
        return CheckOutcome(
            status=str(res.status),
            detail=res.detail,
            traceback=res.traceback,
            runtime_ms=res.runtime_ms,
        )

    def fit(self, code: str, seed: int) -> dict[str, Any]:
        """The best params on train that keep the rule stream-exact.

        Window-like integer params are searched up to ``LOOKBACK`` only (see
        :func:`argos.training.fitting.fit_params`); then the best trials, in score order, are
        checked with :meth:`stream_mismatch` and the first exact one wins. When none of the
        first few is exact the best is returned and :meth:`evaluate` rejects it with the reason.
        """
        labels = [_labels(s) for s in self.train]
        result = fit_params(
            self.sandbox,
            code,
            self._train_handle,
            labels,
            budget=self.fit_budget,
            seed=seed,
            objective=self.objective,
        )
        ranked = sorted(
            (t for t in result.trace if t.score is not None),
            key=lambda t: -(t.score or 0.0),
        )
        for trial in ranked[:4]:
            if not self.stream_mismatch(code, trial.params):
                return dict(trial.params)
        return dict(result.best_params)

    def stream_mismatch(self, code: str, params: Mapping[str, Any]) -> str:
        """Why the rule with ``params`` is not stream-exact ("" when it is).

        The online detector labels a new point from the last ``LOOKBACK`` points only; a rule
        whose label depends on older points (a window grown past ``LOOKBACK`` by fitting, an
        unbounded EWMA or CUSUM recursion) labels differently streaming and in batch, and
        ``argos detect --strict`` refuses it. The check compares, at
        :data:`STREAM_CHECK_POINTS` positions of the first series' history, the label on the
        whole history with the label on the ``LOOKBACK`` points ending there (one sandbox run).
        """
        try:
            lookback = max(1, check_rule(code, max_bytes=10**7).lookback)
        except RuleContractError:
            return ""  # the gate reports it
        values, timestamps = self._history[0]
        if len(values) <= lookback:
            return ""
        full = self.sandbox.run(code, [(values, timestamps)], params)
        if not full.ok or not full.outputs:
            return ""  # evaluate reports the failure
        batch = np.asarray(full.outputs[0], dtype=bool)
        ends = stream_check_ends(batch, lookback, STREAM_CHECK_POINTS)
        windows = [
            (values[e - lookback + 1 : e + 1], timestamps[e - lookback + 1 : e + 1]) for e in ends
        ]
        res = self.sandbox.run(code, windows, params)
        if not res.ok or res.outputs is None:
            return f"the rule fails on a window of LOOKBACK={lookback} points: {res.detail[:200]}"
        differ = [
            int(e) for e, out in zip(ends, res.outputs, strict=True) if bool(out[-1]) != batch[e]
        ]
        if not differ:
            return ""
        fitted = {k: v for k, v in params.items() if not isinstance(v, str)}
        return (
            f"not stream-exact: at {len(differ)} of {len(ends)} checked points (first at index "
            f"{differ[0]}) the label on the last LOOKBACK={lookback} points differs from the label "
            f"on the whole history, so the rule depends on older points (params {fitted}). Make "
            "LOOKBACK cover the longest window the params can set, and bound recursions (EWMA, "
            "CUSUM) to LOOKBACK points or choose LOOKBACK so older points change no label"
        )

    def deployment_refusal(self, code: str, params: Mapping[str, Any]) -> str:
        """Why the online detector would refuse the rule ("" when it opens it, or when no
        :class:`~argos.training.generator.DeploymentCheck` was given).

        :meth:`stream_mismatch` checks the unit's own history; the detector checks its own sample
        in irregular micro-batches. A candidate is accepted only when both agree, so that every
        exported set opens in ``argos detect`` as it is.
        """
        if self.deployment is None:
            return ""
        refused = self.deployment([RuleSource("candidate", code, dict(params))], trusted=False)
        if not refused:
            return ""
        why = "; ".join(refused.values())
        return (
            f"the online detector refuses it: {why}. Make LOOKBACK cover every point the label "
            "depends on (windows set by params, recursions such as EWMA or CUSUM)"
        )

    def predictions(self, code: str, params: Mapping[str, Any]) -> tuple[list[BoolArray], Any]:
        """Labels of the rule over train + validation history, per series, and the run result."""
        res = self.sandbox.run(code, self._history_handle, params)
        return (res.outputs or []), res

    def evaluate(self, code: str, params: Mapping[str, Any]) -> Evaluation:
        outputs, res = self.predictions(code, params)
        if not res.ok:
            return Evaluation(None, None, None, None, res.runtime_ms, str(res.status), res.detail)
        mismatch = self.stream_mismatch(code, params) or self.deployment_refusal(code, params)
        if mismatch:
            return Evaluation(None, None, None, None, res.runtime_ms, "not_stream_exact", mismatch)
        self._predictions[_member_key(code, params)] = [np.asarray(o, bool) for o in outputs]
        return self._scored(outputs, res.runtime_ms)

    def _scored(self, outputs: Sequence[BoolArray], runtime_ms: float = 0.0) -> Evaluation:
        """Scores of history-long predictions (one array per series) with the run's objective
        (and its guard's F1 on train and on validation, when it has a guard)."""
        metrics = [self.objective] if self.guard is None else [self.objective, self.guard]
        train_scores: list[list[Scores]] = [[] for _ in metrics]
        val_scores: list[list[Scores]] = [[] for _ in metrics]
        for i, pred in enumerate(outputs):
            n_tr = self._n_train[i]
            # Scored against the TRUTH: under fusion, on the fused labels.
            train_pred = self._fused(pred[:n_tr], i, 0)
            val_pred = self._fused(pred[n_tr:], i, 1) if len(self.validation[i]) else None
            for m, metric in enumerate(metrics):
                train_scores[m].append(metric.score(self.truth_train[i], train_pred))
                if val_pred is not None:
                    val_scores[m].append(metric.score(self.truth_val[i], val_pred))
        tr_all = aggregate_pooled(train_scores[0])
        va_all = aggregate_pooled(val_scores[0]) if val_scores[0] else tr_all
        score, scored_on = va_all.f1, "validation"
        if va_all.f1 is None:
            # No labeled anomaly in validation: rank on train + validation pooled, as the builtin
            # generator fits on both when a part has no event. Never on test.
            score = aggregate_pooled([*train_scores[0], *val_scores[0]]).f1
            scored_on = "train+validation"
        guard_train = guard_val = None
        if self.guard is not None:
            guard_train = aggregate_pooled(train_scores[1]).f1
            guard_val = aggregate_pooled(val_scores[1]).f1 if val_scores[1] else None
        return Evaluation(
            train_f1=tr_all.f1,
            val_f1=va_all.f1 if val_scores[0] else None,
            val_precision=va_all.precision if val_scores[0] else None,
            val_recall=va_all.recall if val_scores[0] else None,
            runtime_ms=runtime_ms,
            score=score,
            scored_on=scored_on,
            guard_train=guard_train,
            guard_val=guard_val,
        )

    def _history_alarms(self, members: Sequence[DraftRule]) -> list[BoolArray]:
        """The OR of the members' labels over each series' train + validation history."""
        out = [np.zeros(len(v), dtype=bool) for v, _ in self._history]
        for m in members:
            key = _member_key(m["code"], m["params"])
            if key not in self._predictions:
                outputs, _ = self.predictions(m["code"], m["params"])
                self._predictions[key] = [np.asarray(o, bool) for o in outputs] or [
                    np.zeros(len(v), dtype=bool) for v, _ in self._history
                ]
            for acc, pred in zip(out, self._predictions[key], strict=True):
                acc |= pred
        return out

    def set_score(self, members: Sequence[DraftRule]) -> Evaluation:
        """Scores of the rule set whose alarms are the OR of ``members``' (an empty set never
        fires), on the same data and with the same selection rule as :meth:`evaluate`."""
        return self._scored(self._history_alarms(members))

    def validation_account(self, members: Sequence[DraftRule]) -> str:
        """The rule set's outcome on the validation part, in words and counts only (the part's
        values are never shown to the agents): how many events it catches, how long the missed
        ones are and which way and how far their values move (:func:`event_shape`), and how
        many false-alarm points it raises."""
        n_events = caught = false_points = 0
        missed: list[str] = []
        delay = self.objective.delay if self.objective.kind == "delay" else None
        for i, alarms in enumerate(self._history_alarms(members)):
            truth = self.truth_val[i]
            pred = alarms[self._n_train[i] :]
            starts, ends = events(truth)
            for a, b in zip(starts, ends, strict=True):
                window = pred[a : b if delay is None else min(b, a + delay + 1)]
                n_events += 1
                if window.any():
                    caught += 1
                else:
                    n_tr = self._n_train[i]
                    missed.append(event_shape(self._history[i][0], n_tr + a, n_tr + b))
            false_points += int((pred & ~truth).sum())
        if n_events == 0:
            return (
                "The validation part (not shown here) holds no labeled event; the set raises "
                f"{false_points} false-alarm point(s) there."
            )
        shown = "; ".join(missed[:MISSED_SHOWN])
        more = f"; and {len(missed) - MISSED_SHOWN} more" if len(missed) > MISSED_SHOWN else ""
        missed_text = f" (missed: {len(missed)} event(s): {shown}{more})" if missed else ""
        return (
            f"On the validation part (not shown here) the set catches {caught} of {n_events} "
            f"event(s){missed_text} and raises {false_points} false-alarm point(s)."
        )

    def train_alarms(self, members: Sequence[DraftRule]) -> list[BoolArray]:
        """Where the rule set of ``members`` fires on each series' train part."""
        return [a[: self._n_train[i]] for i, a in enumerate(self._history_alarms(members))]

    def chunk_alarms(self, index: int, members: Sequence[DraftRule]) -> BoolArray:
        """Where the rule set of ``members`` fires inside training chunk ``index``."""
        c = self.chunks[index]
        return self.train_alarms(members)[c.series][c.start : c.stop]

    def regressions(self, old: DraftRule, new: DraftRule) -> str:
        old_out, _ = self.predictions(old["code"], old["params"])
        new_out, _ = self.predictions(new["code"], new["params"])
        if not old_out or not new_out:
            return ""
        parts = []
        for i, va in enumerate(self.validation):
            n_tr = self._n_train[i]
            assert va.labels is not None
            text = render_regressions(
                va.values,
                va.labels,
                old_out[i][n_tr:],
                new_out[i][n_tr:],
                start_index=n_tr,
            )
            if text:
                parts.append(f"Series {va.id}:\n{text}" if len(self.validation) > 1 else text)
        return "\n\n".join(parts[:3])


def hold_out_train_events(
    train: Sequence[Series], validation: Sequence[Series], fraction: float = HOLDOUT_FRACTION
) -> tuple[list[Series], list[Series]] | None:
    """The split the loop runs on when the unit's validation part holds no labeled event.

    Without a validation event the selection score pools train and validation: it is computed on
    the data the candidates were fit on (and shown), so a set that fits the train events better
    ranks higher whether or not it generalises. Here each series with at least two train events
    holds out its last ``max(1, round(fraction * events))`` of them (never all): its train part
    is cut midway between the last event kept and the first one held out, and the rest joins the
    validation part, so the loop fits on the first part and selects on events it never saw, as
    on a unit with validation events. Series with fewer events keep their split. None when no
    series has two train events (nothing can be held out).
    """
    new_train: list[Series] = []
    new_validation: list[Series] = []
    held = 0
    for tr, va in zip(train, validation, strict=True):
        starts, ends = events(_labels(tr))
        n = len(starts)
        if n < 2:
            new_train.append(tr)
            new_validation.append(va)
            continue
        h = min(n - 1, max(1, round(fraction * n)))
        cut = (int(ends[n - h - 1]) + int(starts[n - h])) // 2
        held += h
        tail = tr.slice(cut)
        new_train.append(tr.slice(0, cut))
        new_validation.append(
            Series(
                id=tr.id,
                timestamps=np.concatenate([tail.timestamps, va.timestamps]),
                values=np.concatenate([tail.values, va.values]),
                labels=np.concatenate([_labels(tail), _labels(va)]),
                meta=tr.meta,
            )
        )
    return (new_train, new_validation) if held else None


def _in_turn(counts: FloatArray, turn: int, rng: np.random.Generator) -> int:
    """The chunk for ``turn``: the chunks with a positive count ranked by it (ties in the order
    ``rng`` draws, the same for every turn of a run), turn 0 taking the first, turn 1 the second,
    and so on round the ranking, so that later iterations see other chunks while the kept set
    errs in several."""
    order = rng.permutation(len(counts))
    ranked = [int(i) for i in order[np.argsort(-counts[order], kind="stable")] if counts[i] > 0]
    return ranked[turn % len(ranked)]


def _member_key(code: str, params: Mapping[str, Any]) -> str:
    return code + "\0" + repr(sorted(params.items()))


def _labels(s: Series) -> BoolArray:
    if s.labels is None:
        raise ValueError(f"series {s.id!r} has no labels")
    return s.labels


def _relabel(s: Series, labels: BoolArray) -> Series:
    return Series(id=s.id, timestamps=s.timestamps, values=s.values, labels=labels, meta=s.meta)
