"""The LLM agents of the training loop: generator, repairer and reviewer over a :class:`ChatModel`.

:class:`LLMAgents` implements :class:`argos.training.agents.context.Agents`. It renders the
prompts in ``agents/`` with the data of a :class:`argos.training.agents.lab.SandboxRuleLab` (token
economy: values to a few significant figures, long normal stretches summarised, anomalous windows
verbatim), sends them through the port, and turns replies into code with
:func:`argos.rules.contract.extract_code`.

Failures are data, not crashes: a call that failed for good after the client's retries becomes an
:class:`AgentError` (the candidate is dropped as ``llm_error``); a spent budget, an oversized prompt
that cannot be shrunk, or ``max_consecutive_failures`` failing calls in a row become
:class:`StopRun` (the run ends and exports what it has).
"""

from __future__ import annotations

from collections.abc import Sequence

from argos.llm.interface import ChatModel, LLMBudgetExceeded, LLMError, Message, PromptTooLarge
from argos.rules.contract import extract_code, fenced_blocks
from argos.training.agents.context import AgentError, GenerationRequest, StopRun
from argos.training.agents.lab import SandboxRuleLab
from argos.training.agents.prompts import (
    describe_rule_set,
    generator_messages,
    is_revert,
    render_chunk,
    repairer_messages,
    reviewer_messages,
)
from argos.training.agents.state import DraftRule, LoopConfig

_FOCUS_TASKS = {
    "initial": "Write a rule that flags the labeled anomalies below and nothing else.",
    "missed": (
        "The current rule set MISSES the anomalies marked `!` below. Write a rule that catches "
        "them without flagging normal data: one to add to the set, or a better replacement for "
        "one of its rules."
    ),
    "false_alarms": (
        "The current rule set raises FALSE ALARMS (marked `?`) on the data below. Write a rule "
        "that replaces one of its rules, stays quiet on normal behaviour like this and still "
        "catches the real anomalies."
    ),
    "refine": "Write a rule that makes the current rule set more precise or catch more events.",
}
FEW_EVENTS = 3
"""Units with fewer labeled events than this get the few-event warning in the prompt."""

_FUSION_CONTEXT = {
    "fn": (
        "This rule corrects an existing base detector: the labeled points below are anomalies "
        "the BASE DETECTOR MISSED. Your rule adds alarms only where the base detector is quiet, "
        "so flag these missed anomalies and stay quiet elsewhere."
    ),
    "fp": (
        "This rule corrects an existing base detector: the labeled points below are the BASE "
        "DETECTOR'S FALSE ALARMS (normal behaviour it wrongly flags). Your rule vetoes the base "
        "detector's alarms where it fires, so flag exactly these false-alarm points and never "
        "real incidents."
    ),
}


class LLMAgents:
    """Generator, repairer and reviewer backed by one chat model."""

    can_repair = True
    can_review = True
    prefitted = False

    def __init__(
        self,
        model: ChatModel,
        lab: SandboxRuleLab,
        loop: LoopConfig | None = None,
        *,
        max_points: int = 600,
        max_consecutive_failures: int = 3,
    ) -> None:
        self.model = model
        self.lab = lab
        self.loop = loop or LoopConfig()
        self.max_points = max_points
        self.max_consecutive_failures = max_consecutive_failures
        self._failures = 0

    # -- plumbing ------------------------------------------------------------------------------
    def _call(self, messages: Sequence[Message], agent: str, seed: int) -> str:
        try:
            completion = self.model.complete(messages, agent=agent, seed=seed)
        except LLMBudgetExceeded as exc:
            raise StopRun(f"budget exhausted: {exc}") from exc
        except PromptTooLarge as exc:
            raise StopRun(f"prompt too large: {exc}") from exc
        except LLMError as exc:
            self._failures += 1
            if self._failures >= self.max_consecutive_failures:
                raise StopRun(
                    f"the LLM failed {self._failures} times in a row; last error: {exc}"
                ) from exc
            raise AgentError(f"{type(exc).__name__}: {exc}") from exc
        self._failures = 0
        return completion.text

    @staticmethod
    def _code(reply: str) -> str | None:
        """The rule code in a reply, or None when it holds none.

        A fenced block that defines ``detect`` but does not parse is returned as written, so the
        static gate reports the syntax error to the repairer (trimming it to a parseable prefix
        would silently cut the function away).
        """
        try:
            code: str | None = extract_code(reply)
        except ValueError:
            code = None
        if code is not None and "def detect" in code:
            return code
        fences = [b for b in fenced_blocks(reply) if "def detect" in b]
        if fences:
            return max(fences, key=len)
        return code if code is not None and "def " in code else None

    def _render(self, index: int, kept: Sequence[DraftRule] = ()) -> str:
        data = self.lab.chunk_data(index)
        return render_chunk(
            data.values,
            data.labels,
            timestamps=data.timestamps,
            start_index=data.offset,
            max_points=self.max_points,
            alarms=self.lab.chunk_alarms(index, kept) if kept else None,
        )

    # -- agents --------------------------------------------------------------------------------
    def generate(self, request: GenerationRequest) -> str | None:
        contrast, kept = request.contrast, request.current
        contrast_text = contrast_kind = None
        if contrast is not None:
            contrast_text = self._render(contrast, kept)
            contrast_kind = "anomalous" if self.lab.chunk_data(contrast).labels.any() else "normal"
        current = None
        if kept:
            scores = self.lab.set_score(kept)
            current = describe_rule_set(
                [(c["origin"], c["code"], c["params"]) for c in kept],
                score=request.current_score,
                scored_on=scores.scored_on,
                train_f1=scores.train_f1,
                validation=self.lab.validation_account(kept),
                guard=self.lab.guard,
            )
        task = _FOCUS_TASKS.get(request.focus, "")
        if self.lab.fusion_mode is not None:
            task = f"{_FUSION_CONTEXT[self.lab.fusion_mode]}\n{task}"
        task = "\n".join(filter(None, [task, *self._notes(request)]))
        messages = generator_messages(
            self._render(request.chunk, kept),
            objective=self.lab.objective,
            task=task,
            contrast=contrast_text,
            contrast_kind=contrast_kind,
            current=current,
            feedback=_feedback(request),
        )
        seed = self.loop.seed * 10_000 + request.iteration * 100 + request.slot
        reply = self._call(messages, "generator", seed=seed)
        return self._code(reply)

    def _notes(self, request: GenerationRequest) -> list[str]:
        """Unit-specific warnings: few labeled events, a validation part without events, and
        which of the iteration's independent candidates this is."""
        notes = []
        labeled = self.lab.n_events()
        if labeled < FEW_EVENTS:
            notes.append(
                f"This unit has only {labeled} labeled event(s) in its training data: do not fit "
                "the exact shape, size or timing of one event; prefer a structure that "
                "generalises (e.g. a deviation from a robust trailing baseline), and leave the "
                "threshold to fitting."
            )
        if not any(s.labels is not None and s.labels.any() for s in self.lab.validation):
            notes.append(
                "The validation part holds no labeled anomaly, so rules are compared on train + "
                "validation together: false alarms on normal data weigh heavily."
            )
        n = self.loop.candidates_per_iteration
        if n > 1:
            notes.append(
                f"This is candidate {request.slot + 1} of {n} of this iteration; "
                "candidates are written independently, so try a different kind of rule for "
                "each candidate number (level, change, spread, seasonality, persistence)."
            )
        return notes

    def repair(
        self, *, code: str, status: str, detail: str, traceback: str, attempt: int
    ) -> str | None:
        messages = repairer_messages(code, status=status, error=detail, traceback=traceback)
        reply = self._call(messages, "repairer", seed=self.loop.seed * 10_000 + attempt)
        return self._code(reply)

    def review(self, *, old: DraftRule, new: DraftRule, regressions: str) -> str | None:
        messages = reviewer_messages(
            old["code"],
            new["code"],
            old_metrics=_metrics(old),
            new_metrics=_metrics(new),
            old_params=old["params"],
            new_params=new["params"],
            regressions=regressions,
            objective=self.lab.objective,
        )
        reply = self._call(messages, "reviewer", seed=self.loop.seed)
        if is_revert(reply):
            return None
        return self._code(reply)


def _feedback(request: GenerationRequest) -> str | None:
    """The prompt's account of earlier iterations: where this one stands and what became of
    the previous candidates, so no two iterations send the same prompt."""
    if request.iteration == 0:
        return None
    of = f" of {request.max_iterations}" if request.max_iterations else ""
    lines = list(request.feedback) or ["- (no candidate reached scoring)"]
    return (
        f"This is iteration {request.iteration + 1}{of}. What became of the earlier candidates "
        "(write something different from the ones not kept):\n" + "\n".join(lines)
    )


def _metrics(c: DraftRule) -> dict[str, float | None]:
    return {
        "F1": c["val_f1"],
        "precision": c["val_precision"],
        "recall": c["val_recall"],
        "train F1": c["train_f1"],
    }
