"""LLM-agent training of one unit: the durable graph behind a
:class:`argos.training.generator.Generator`.

:class:`AgentGenerator` plugs the LangGraph loop of :mod:`argos.training.agents.graph` into the
shared training driver (:func:`argos.training.driver.train_dataset`), so the LLM path reuses its
units, splits, verification, export and summary. Each unit's loop starts from the builtin
generator's rule set for that unit (the incumbent, as FunSearch puts the best program so far in the
prompt): an LLM rule is kept only when a rule set with it beats the incumbent on the unit's
selection score (see :mod:`argos.training.agents.nodes`), so ``--llm`` never exports a set that
scores lower on the selection data than ``--generator builtin``. Per unit it opens:

- a :class:`~argos.sandbox.pool.Sandbox` and a :class:`~argos.training.agents.lab.SandboxRuleLab`
  over the unit's train/validation slices (labels stay in this process);
- the model stack ``Metered(Caching(endpoint))``: the response cache (``llm-cache.sqlite`` in the
  run folder) makes a resumed run replay calls it already paid for instead of sending them again;
  the meter enforces the per-call token cap and the run's token/cost budget and counts usage;
- a SQLite checkpointer (``checkpoints.sqlite``): thread id = the unit, durability ``sync``, so a
  killed run resumes at the interrupted node.

Model fusion: with ``fusion`` set, the unit trains FN-rules (target: anomalies the base detector
missed) and then FP-rules (target: its false alarms), each with the same graph, and scores
candidates on the FUSED labels ``(base and not FP) or (not base and FN)``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
from langgraph.checkpoint.sqlite import SqliteSaver

from argos._types import BoolArray, ProgressFn
from argos.data.series import Series
from argos.llm.cache import CachingChatModel, ResponseStore
from argos.llm.config import LLMConfig, build_chat_model
from argos.llm.interface import ChatModel
from argos.llm.usage import (
    AgentUsage,
    Budget,
    BudgetGuard,
    LedgerSummary,
    MeteredChatModel,
    Price,
    UsageLedger,
)
from argos.metrics import events
from argos.rules.grammar import RuleSpec
from argos.rules.templates import render
from argos.sandbox.pool import Sandbox
from argos.training.agents.context import Evaluation, GenerationRequest, TrainingContext
from argos.training.agents.graph import build_graph
from argos.training.agents.lab import DEFAULT_CHUNK_SIZE, SandboxRuleLab, hold_out_train_events
from argos.training.agents.nodes import IMPROVEMENT, new_draft
from argos.training.agents.prompts import prompt_hashes
from argos.training.agents.roles import LLMAgents
from argos.training.agents.state import DraftRule, LoopConfig, TrainState
from argos.training.builtin.config import SearchConfig
from argos.training.builtin.method import BuiltinGenerator, fit_series
from argos.training.builtin.search import search
from argos.training.generator import DeploymentCheck, GeneratedRule, GeneratorOutput

BasePredictions = Callable[[Sequence[Series], Sequence[Series]], list[tuple[BoolArray, BoolArray]]]
"""Given a unit's train and validation slices, the base detector's labels on each (fusion)."""


@dataclass
class AgentGenerator:
    """The LLM generator (``--llm``): one durable graph run per training unit.

    Attributes:
        llm: endpoint configuration (ignored when ``chat_model`` is given).
        run_dir: run folder holding the checkpoints, the response cache and the usage ledger.
        loop: budgets and sizes of the loop (n, k, iterations, repairs, reviews...).
        budget: token/cost/call budget for the whole run (all units).
        chunk_size: points per training chunk shown to the generator (published: KPI 2500,
            Yahoo 500).
        fit_budget: parameter sets tried when fitting a candidate's PARAMS.
        chat_model: an explicit model (tests pass a scripted double); wrapped like the real one.
        fusion: base detector predictions; trains FN- and FP-rules instead of a plain rule set.
        fusion_base_name: how the manifest names that base (``method:NAME`` or ``csv:FILE``).
        on_event: receives every graph event (progress displays).
        deployment: the online detector's load-time check; a candidate it refuses is not
            accepted (its status says why, and the repairer sees it).
        incumbent: start each unit from the builtin generator's rule set (fit for the loop's
            objective), which LLM rules must beat; False starts from nothing. Not used with
            fusion (its rules correct a base detector instead).
        holdout: on a unit whose validation part holds no labeled event, select on held-out
            train events (:func:`~argos.training.agents.lab.hold_out_train_events`) instead of
            on the train data the candidates were fit on. Not used with fusion.
    """

    llm: LLMConfig
    run_dir: Path
    loop: LoopConfig = field(default_factory=LoopConfig)
    budget: Budget = field(default_factory=Budget)
    chunk_size: int = DEFAULT_CHUNK_SIZE
    fit_budget: int = 24
    chat_model: ChatModel | None = None
    fusion: BasePredictions | None = None
    fusion_base_name: str = "method:base"
    on_event: Callable[[dict[str, Any]], None] | None = None
    deployment: DeploymentCheck | None = None
    incumbent: bool = True
    holdout: bool = True
    name: str = "llm"
    ledger: UsageLedger = field(init=False)
    _model: MeteredChatModel | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.run_dir = Path(self.run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.ledger = UsageLedger(self.llm.price_table(), run_id=self.run_dir.name)

    def __getstate__(self) -> dict[str, Any]:
        """Picklable, as the Generator protocol asks (Dask workers): the model stack and the
        ledger (it holds a lock) are rebuilt in the worker; a unit's usage is restored from its
        checkpoint there, and the run-wide budget is shared with
        :class:`argos.distributed.SharedLimitsChatModel`. ``on_event`` (a display callback of
        the driver) does not travel."""
        state = dict(self.__dict__)
        state["_model"] = None
        state["ledger"] = None
        state["on_event"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.ledger = UsageLedger(self.llm.price_table(), run_id=self.run_dir.name)

    @property
    def model_name(self) -> str:
        return self.chat_model.model if self.chat_model is not None else str(self.llm.model)

    def metered_model(self) -> MeteredChatModel:
        """The model stack shared by every unit of the run (built on first use)."""
        if self._model is None:
            inner = self.chat_model if self.chat_model is not None else build_chat_model(self.llm)
            store = ResponseStore(self.run_dir / "llm-cache.sqlite")
            self._model = MeteredChatModel(
                CachingChatModel(inner, store),
                ledger=self.ledger,
                guard=BudgetGuard(self.budget, self.ledger),
                max_input_tokens=self.llm.max_input_tokens,
                default_max_tokens=self.llm.max_output_tokens,
            )
        return self._model

    @property
    def trusted(self) -> bool:
        """LLM-written code: the driver runs it in the sandbox only."""
        return False

    def summary_config(self) -> dict[str, Any]:
        """Nothing: the run's options are in ``run.json``."""
        return {}

    def generator_info(self) -> dict[str, Any]:
        """What the manifest records about this generator."""
        return {
            "kind": "llm",
            "model": self.model_name,
            "prompts": prompt_hashes(),
            "objective": str(self.loop.objective),
            "guard": None if self.loop.guard is None else str(self.loop.guard),
        }

    # -- the Generator protocol ----------------------------------------------------------------
    def generate(
        self,
        train: Sequence[Series],
        validation: Sequence[Series],
        progress: ProgressFn | None = None,
    ) -> GeneratorOutput:
        unit = _unit_key(train)
        with Sandbox(workers=1) as sandbox:
            if self.fusion is None:
                if self.holdout and not any(_has_events(s) for s in validation):
                    return self._generate_held_out(unit, train, validation, sandbox, progress)
                state, lab = self._run_graph(unit, train, validation, sandbox, progress)
                kept = state.get("accepted", [])
                out = self._output([_as_rule(c, "rule") for c in kept], [state])
                return _with_set_scores(out, lab.set_score(kept), state)
            base = self.fusion(train, validation)
            states: list[TrainState] = []
            rules: list[GeneratedRule] = []
            skipped: list[str] = []
            for mode in ("fn", "fp"):
                if not any(_targets(s, b[0], mode).any() for s, b in zip(train, base, strict=True)):
                    what = "misses no anomaly" if mode == "fn" else "raises no false alarm"
                    skipped.append(f"no {mode.upper()}-rule trained: the base {what} on train")
                    continue
                st, _ = self._run_graph(
                    f"{unit}-{mode}", train, validation, sandbox, progress, mode=mode, base=base
                )
                states.append(st)
                rules += [_as_rule(c, mode) for c in st.get("accepted", [])]
            out = self._output(rules, states)
            out.notes.extend(skipped)
            return out

    def _generate_held_out(
        self,
        unit: str,
        train: Sequence[Series],
        validation: Sequence[Series],
        sandbox: Sandbox,
        progress: ProgressFn | None,
    ) -> GeneratorOutput:
        """:meth:`generate` of a unit whose validation part holds no labeled event: the loop runs
        on :func:`~argos.training.agents.lab.hold_out_train_events`' split, fitting on the first
        part of train and selecting on the train events held out (no loop when there are none to
        hold out). The incumbent is still the builtin generator's set for the unit's own split,
        and the exported set scores at least the incumbent's on the unit's own selection data
        (else the incumbent is exported), as without held-out events."""
        own = self._lab(train, validation, sandbox)
        builtin = self._builtin_rules(train, validation)
        incumbent = _drafts(builtin, own)
        inc = own.set_score(incumbent)
        split = hold_out_train_events(train, validation)
        if split is None:
            kept = incumbent
            out = replace(self._output([_as_rule(c, "rule") for c in kept], []), notes=[])
            why_kept = (
                "no LLM loop: without a validation event the loop selects on held-out train "
                "events, and no series has two (one to fit on, one to hold out)"
            )
        else:
            why_kept = None
            state, _ = self._run_graph(unit, *split, sandbox, progress, incumbent=builtin)
            kept = state.get("accepted", [])
            held = sum(len(events(v.labels)[0]) for v in split[1] if v.labels is not None)
            out = self._output([_as_rule(c, "rule") for c in kept], [state])
            out.generator["held_out_events"] = held
            before, after = state.get("incumbent_score"), state.get("set_score")
            note = f"selected on {held} held-out train event(s) (no validation event)"
            if after is not None:
                note += f": the kept set's F1 on them {after:.3f}"
                note += "" if before is None else f", the builtin set's {before:.3f}"
            out.notes.append(note)
            set_score = own.set_score(kept).score
            if incumbent and inc.score is not None and (set_score or 0.0) < inc.score:
                kept = incumbent
                out = replace(out, rules=[_as_rule(c, "rule") for c in kept])
                out.notes.append(
                    f"exported the builtin rule set: the set selected on the held-out events "
                    f"scores {set_score or 0.0:.3f} on the unit's own selection data, below its "
                    f"{inc.score:.3f}"
                )
        final = own.set_score(kept)
        scores: TrainState = {
            "incumbent_score": inc.score if incumbent else None,
            "set_score": final.score,
            "incumbent_train_score": inc.train_f1 if incumbent else None,
        }
        return _with_set_scores(out, final, scores, why_kept)

    def _lab(
        self,
        train: Sequence[Series],
        validation: Sequence[Series],
        sandbox: Sandbox,
        mode: Literal["fn", "fp"] | None = None,
        base: list[tuple[BoolArray, BoolArray]] | None = None,
    ) -> SandboxRuleLab:
        return SandboxRuleLab(
            train,
            validation,
            sandbox,
            chunk_size=self.chunk_size,
            fit_budget=self.fit_budget,
            fusion_mode=mode,
            base=base,
            deployment=self.deployment,
            objective=self.loop.objective,
            guard=self.loop.guard,
        )

    def _run_graph(
        self,
        thread: str,
        train: Sequence[Series],
        validation: Sequence[Series],
        sandbox: Sandbox,
        progress: ProgressFn | None,
        *,
        mode: Literal["fn", "fp"] | None = None,
        base: list[tuple[BoolArray, BoolArray]] | None = None,
        incumbent: Sequence[GeneratedRule] | None = None,
    ) -> tuple[TrainState, SandboxRuleLab]:
        """One graph run on this split. ``incumbent``: the rule set to start from (default: the
        builtin generator's for this split, or nothing under fusion)."""
        lab = self._lab(train, validation, sandbox, mode, base)
        if incumbent is None:
            incumbent = self._builtin_rules(train, validation) if mode is None else []
        agents = LLMAgents(self.metered_model(), lab, self.loop)
        tried = 0
        best = -1.0

        def on_event(event: dict[str, Any]) -> None:
            nonlocal tried, best
            if event.get("event") == "candidate":
                tried += 1
            if event.get("event") == "accepted" and event.get("val_f1") is not None:
                best = max(best, float(event["val_f1"]))
            if progress is not None and event.get("event") in ("candidate", "accepted"):
                progress(tried, best)
            if self.on_event is not None:
                self.on_event({"unit": thread, **event})

        ctx = TrainingContext(
            agents=agents,
            lab=lab,
            config=self.loop,
            export=lambda accepted, log: thread,  # the driver exports (idempotently)
            on_event=on_event,
            usage=lambda: self.ledger.summary().model_dump(mode="json"),
            incumbent=_drafts(incumbent, lab),
        )
        graph = build_graph(self.loop, can_repair=agents.can_repair, can_review=agents.can_review)
        config: Any = {
            "configurable": {"thread_id": thread},
            "recursion_limit": self.loop.recursion_limit,
        }
        with SqliteSaver.from_conn_string(str(self.run_dir / "checkpoints.sqlite")) as saver:
            app = graph.compile(checkpointer=saver)
            snapshot = app.get_state(config)
            self._restore_usage(snapshot.values.get("usage") if snapshot.values else None)
            if snapshot.values and not snapshot.next:
                result = snapshot.values  # finished before: nothing to redo
            elif snapshot.values:
                result = app.invoke(None, config, context=ctx, durability="sync")
            else:
                result = app.invoke({}, config, context=ctx, durability="sync")
        return cast(TrainState, result), lab

    def _builtin_rules(
        self, train: Sequence[Series], validation: Sequence[Series]
    ) -> list[GeneratedRule]:
        """The builtin generator's rule set for this split, fit for the loop's objective (what
        ``--generator builtin`` exports for it); none without an incumbent."""
        if not self.incumbent:
            return []
        config = SearchConfig(seed=self.loop.seed, objective=self.loop.objective)
        return list(BuiltinGenerator(config).generate(train, validation).rules)

    def _restore_usage(self, saved: Mapping[str, Any] | None) -> None:
        """Continue the ledger from a checkpoint that counted more calls than it has (a resumed
        run: calls made before the kill were checkpointed with the state that used them)."""
        if not saved:
            return
        summary = LedgerSummary.model_validate(saved)
        if summary.total.calls <= self.ledger.total().calls:
            return
        self.ledger = UsageLedger.from_summary(summary, self.llm.price_table())
        if self._model is not None:
            self._model.ledger = self.ledger
            if self._model.guard is not None:
                self._model.guard.ledger = self.ledger

    def _output(
        self,
        rules: list[GeneratedRule],
        states: Sequence[Mapping[str, Any]],
    ) -> GeneratorOutput:
        tried = sum(1 for st in states for e in st.get("log", []) if e.get("event") == "candidate")
        accepted = [c for st in states for c in st.get("accepted", [])]
        val = [c["val_f1"] for c in accepted if c["val_f1"] is not None]
        train = [c["train_f1"] for c in accepted if c["train_f1"] is not None]
        notes = [
            f"{st.get('iteration', 0)} iteration(s), {len(st.get('accepted', []))} rule(s) kept; "
            f"stopped: {st.get('stop_reason')}"
            for st in states
        ]
        if not accepted:
            notes.append("no candidate was accepted")
        return GeneratorOutput(
            rules=rules,
            tried=tried,
            train_f1=max(train) if train else None,
            validation_f1=max(val) if val else None,
            ranking=[
                {
                    "rule": e.get("id"),
                    "status": e.get("status"),
                    "validation_f1": e.get("val_f1"),
                    "origin": e.get("origin"),
                    "repairs": e.get("repairs"),
                }
                for st in states
                for e in st.get("log", [])
                if e.get("event") == "candidate"
            ],
            notes=notes,
            generator=self.generator_info(),
            fusion_base=self.fusion_base_name if self.fusion is not None else None,
        )


class BuiltinAgents:
    """The builtin generator as the graph's generator node (no LLM, nothing to repair or review).

    On the first call it runs :func:`argos.training.builtin.search.search` on the lab's train and
    validation data (labels stay in this process; the search is our own trusted numpy); each
    ``generate`` call then proposes the next candidate of its ranking as rendered rule code, with
    its threshold already fitted on train. Everything after generation (sandbox check, validation,
    the accept gate, top-k, export) is the graph's, shared with the LLM path.
    """

    can_repair = False
    can_review = False
    prefitted = True

    def __init__(self, lab: SandboxRuleLab, config: LoopConfig) -> None:
        self.lab = lab
        self.n = config.candidates_per_iteration
        self.objective = config.objective
        self._ranking: list[str] | None = None

    def _codes(self) -> list[str]:
        if self._ranking is None:
            series = fit_series(self.lab.train, self.lab.validation)
            result = search(series, SearchConfig(objective=self.objective))
            self._ranking = [render(RuleSpec(c.structure, c.threshold)) for c in result.ranking]
        return self._ranking

    def generate(self, request: GenerationRequest) -> str | None:
        codes = self._codes()
        index = request.iteration * self.n + request.slot
        return codes[index] if index < len(codes) else None

    def repair(
        self, *, code: str, status: str, detail: str, traceback: str, attempt: int
    ) -> str | None:
        raise RuntimeError("the builtin generator does not repair")  # can_repair is False

    def review(self, *, old: DraftRule, new: DraftRule, regressions: str) -> str | None:
        raise RuntimeError("the builtin generator does not review")  # can_review is False


def run_usage_from_checkpoints(
    run_dir: Path, units: Sequence[Sequence[str]], prices: Mapping[str, Price] | None = None
) -> LedgerSummary:
    """A run's LLM usage, summed over its units' last checkpoints.

    Each unit's graph state carries the usage of the process that ran the unit (on Dask, every
    unit runs in its own task with its own ledger; a fusion unit's second graph continues the
    first one's ledger, so the largest of a unit's states is its total). This is how a run whose
    units ran on other machines is accounted in the driver. ``units`` lists each unit's series
    ids.
    """
    totals: dict[str, AgentUsage] = {}
    unpriced: set[str] = set()
    estimated = False
    path = Path(run_dir) / "checkpoints.sqlite"
    if not path.is_file():
        return LedgerSummary(run_id=Path(run_dir).name)
    with SqliteSaver.from_conn_string(str(path)) as saver:
        for ids in units:
            key = _unit_key_of(list(ids))
            best: LedgerSummary | None = None
            for thread in (key, f"{key}-fn", f"{key}-fp"):
                found = saver.get_tuple({"configurable": {"thread_id": thread}})
                raw = found.checkpoint["channel_values"].get("usage") if found else None
                if not raw:
                    continue
                summary = LedgerSummary.model_validate(raw)
                if best is None or summary.total.calls > best.total.calls:
                    best = summary
            if best is None:
                continue
            for agent, row in best.agents.items():
                acc = totals.setdefault(agent, AgentUsage())
                for name in AgentUsage.model_fields:
                    setattr(acc, name, getattr(acc, name) + getattr(row, name))
            unpriced.update(best.unpriced_models)
            estimated = estimated or best.estimated_usage
    merged_summary = LedgerSummary(
        run_id=Path(run_dir).name,
        agents=dict(sorted(totals.items())),
        unpriced_models=sorted(unpriced),
        estimated_usage=estimated,
    )
    return UsageLedger.from_summary(merged_summary, prices).summary()


def _unit_key(train: Sequence[Series]) -> str:
    return _unit_key_of([s.id for s in train])


def _unit_key_of(ids: list[str]) -> str:
    if len(ids) == 1:
        return ids[0]
    digest = hashlib.sha256(json.dumps(ids).encode()).hexdigest()[:10]
    return f"{len(ids)}series-{digest}"


def _drafts(rules: Sequence[GeneratedRule], lab: SandboxRuleLab) -> list[DraftRule]:
    """Rules as members of a set the loop keeps, scored by ``lab`` like any candidate (a rule
    the lab would reject is left out)."""
    members = []
    for rule in rules:
        ev = lab.evaluate(rule.source, rule.params)
        if ev.status != "ok":
            continue
        draft = cast(
            DraftRule,
            new_draft(rule.source, "builtin")
            | asdict(ev)
            | {"params": dict(rule.params), "name": rule.name},
        )
        members.append(draft)
    return members


def _has_events(series: Series) -> bool:
    return series.labels is not None and bool(series.labels.any())


def _with_set_scores(
    out: GeneratorOutput, scores: Evaluation, state: TrainState, why_kept: str | None = None
) -> GeneratorOutput:
    """``out`` with the kept set's own scores and a note on what the loop did to the incumbent
    (``why_kept``: why the incumbent was kept, when no candidate was tried)."""
    before, after = state.get("incumbent_score"), state.get("set_score")
    train_before, train_after = state.get("incumbent_train_score"), scores.train_f1
    on = scores.scored_on
    notes = list(out.notes)
    info = dict(out.generator)
    if before is not None:
        info |= {"incumbent": "builtin", "incumbent_score": before, "score": after}
        if train_before is not None:
            info |= {"incumbent_train_score": train_before, "train_score": train_after}
        if after is not None and after > before + IMPROVEMENT:
            notes.append(
                f"the LLM improved on the builtin rule set: selection F1 {before:.3f} -> "
                f"{after:.3f} (+{after - before:.3f}) on {on}"
            )
        elif (
            after is not None
            and train_before is not None
            and train_after is not None
            and train_after > train_before + IMPROVEMENT
        ):
            notes.append(
                f"the LLM improved on the builtin rule set: selection F1 level at {after:.3f} "
                f"on {on}, train F1 {train_before:.3f} -> {train_after:.3f} "
                f"(+{train_after - train_before:.3f})"
            )
        else:
            notes.append(
                f"kept the builtin rule set: {why_kept}"
                if why_kept
                else f"kept the builtin rule set: no LLM candidate beat its selection F1 "
                f"{before:.3f} on {on}"
            )
    return replace(
        out,
        train_f1=scores.train_f1,
        validation_f1=scores.val_f1,
        notes=notes,
        generator=info,
    )


def _as_rule(c: DraftRule, role: str) -> GeneratedRule:
    if "name" in c:
        return GeneratedRule(
            name=c["name"],
            source=c["code"],
            params=dict(c["params"]),
            metrics={"train_f1": c["train_f1"], "validation_f1": c["val_f1"]},
        )
    return GeneratedRule(
        name=f"{role}_{c['id']}",
        source=c["code"],
        params=dict(c["params"]),
        metrics={"train_f1": c["train_f1"], "validation_f1": c["val_f1"]},
        role="or" if role == "rule" else role,
    )


def _targets(series: Series, base: BoolArray, mode: str) -> BoolArray:
    """What a fusion rule of ``mode`` must flag: the base's misses (fn) or false alarms (fp)."""
    truth = series.labels if series.labels is not None else np.zeros(len(series), dtype=bool)
    return (truth & ~base) if mode == "fn" else (base & ~truth)


def method_base(method_name: str) -> BasePredictions:
    """Fusion base from a registered evaluation method (e.g. a baseline), fitted on the unit's
    train/validation slices exactly as ``argos eval`` fits it, then run on the unlabeled history."""
    from argos.methods import get_method

    def predict(
        train: Sequence[Series], validation: Sequence[Series]
    ) -> list[tuple[BoolArray, BoolArray]]:
        detector = get_method(method_name).factory().fit(train, validation)
        out = []
        for tr, va in zip(train, validation, strict=True):
            history = Series(
                id=tr.id,
                timestamps=np.concatenate([tr.timestamps, va.timestamps]),
                values=np.concatenate([tr.values, va.values]),
                meta=tr.meta,
            )
            labels = np.asarray(detector.detect(history), dtype=bool)
            out.append((labels[: len(tr)], labels[len(tr) :]))
        return out

    return predict


def csv_base(path: Path) -> BasePredictions:
    """Fusion base from a user's CSV of predictions with columns ``series,timestamp,label``
    (``series`` may be omitted for a single series; the label column may also be named ``pred``
    or ``anomaly``). Points missing from the file count as normal."""
    import pandas as pd

    from argos.data.series import DataError

    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read base predictions: {exc}", source=str(path)) from None
    label_col = next((c for c in ("label", "pred", "anomaly") if c in frame.columns), None)
    if label_col is None or "timestamp" not in frame.columns:
        raise DataError(
            "base predictions need columns timestamp and label (or pred / anomaly)",
            source=str(path),
        )

    def lookup(series_id: str) -> dict[int, bool]:
        rows = (
            frame
            if "series" not in frame.columns
            else frame[frame["series"].astype(str) == series_id]
        )
        return dict(
            zip(rows["timestamp"].astype("int64"), rows[label_col].astype(bool), strict=True)
        )

    def predict(
        train: Sequence[Series], validation: Sequence[Series]
    ) -> list[tuple[BoolArray, BoolArray]]:
        out = []
        for tr, va in zip(train, validation, strict=True):
            table = lookup(tr.id)
            parts = tuple(
                np.array([table.get(int(t), False) for t in s.timestamps], dtype=bool)
                for s in (tr, va)
            )
            out.append((parts[0], parts[1]))
        return out

    return predict
