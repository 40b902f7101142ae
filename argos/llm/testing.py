"""Test doubles for the :class:`~argos.llm.interface.ChatModel` port, so every LLM-dependent path
runs offline and deterministically.

- :class:`ScriptedChatModel`: a strict scripted double; it fails on an unexpected call (wrong
  agent, prompt not as expected, no step left) and on replies left unconsumed.
- :class:`ReplayChatModel`: replies from a JSONL replay file keyed by agent and
  :func:`~argos.llm.interface.prompt_sha256`; :class:`RecordingChatModel` writes such files
  from a real model.

Their failures are :class:`ScriptError` (an ``AssertionError``, deliberately NOT an
:class:`~argos.llm.interface.LLMError`, so code under test cannot swallow a broken script as an
LLM failure). Usage is synthetic: scripted, recorded, or estimated from the texts.
"""

from __future__ import annotations

import json as jsonlib
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from argos.llm.interface import (
    BaseChatModel,
    CallOptions,
    ChatModel,
    Completion,
    ContextManaged,
    LLMError,
    Message,
    Usage,
    WrappingChatModel,
    estimate_tokens,
    prompt_sha256,
)

__all__ = [
    "RecordedCall",
    "RecordingChatModel",
    "ReplayChatModel",
    "ReplayMiss",
    "ScriptError",
    "ScriptStep",
    "ScriptedChatModel",
]


class ScriptError(AssertionError):
    """A test double saw a call it was not scripted for, or a script ended unconsumed.

    Deliberately NOT an :class:`LLMError`: code under test must not swallow it as an LLM failure.
    """


class ReplayMiss(ScriptError):
    """A :class:`ReplayChatModel` has no recorded response for this agent and prompt."""


@dataclass(frozen=True)
class ScriptStep:
    """One expected call of a :class:`ScriptedChatModel`.

    Exactly one of ``reply`` (the text to return) or ``error`` (an :class:`LLMError` to raise).
    ``agent``: the agent that must make this call (None = any). ``expect``: a substring the
    concatenated prompt must contain, or a predicate on it (None = anything). ``usage``: reported
    usage (None = estimated from the texts). ``finish_reason``: e.g. ``length`` to simulate a cut
    reply.
    """

    reply: str | None = None
    error: LLMError | None = None
    agent: str | None = None
    expect: str | Callable[[str], bool] | None = None
    usage: Usage | None = None
    finish_reason: str = "stop"

    def __post_init__(self) -> None:
        if (self.reply is None) == (self.error is None):
            raise ValueError("a ScriptStep needs exactly one of reply= or error=")


@dataclass(frozen=True)
class RecordedCall:
    """A call seen by a test double: what was sent and with which parameters."""

    agent: str
    messages: tuple[Message, ...]
    max_tokens: int | None
    temperature: float | None
    seed: int | None
    json: bool

    @classmethod
    def of(cls, agent: str, messages: Sequence[Message], options: CallOptions) -> RecordedCall:
        """The record of one call."""
        o = options
        return cls(agent, tuple(messages), o.max_tokens, o.temperature, o.seed, o.json)

    @property
    def prompt(self) -> str:
        """All message contents joined by blank lines (what ``expect`` is matched against)."""
        return "\n\n".join(m.content for m in self.messages)


class ScriptedChatModel(BaseChatModel, ContextManaged):
    """A strict scripted :class:`ChatModel` for tests.

    Built from steps (a :class:`ScriptStep`, a plain reply string, or an :class:`LLMError` instance
    to raise). Each call consumes the next step; a call with no step left, from the wrong agent, or
    whose prompt fails the step's expectation raises :class:`ScriptError` (and is remembered, so
    :meth:`assert_consumed` fails even if the code under test swallowed the error). Leaving the
    ``with`` block, or calling :meth:`assert_consumed`, fails when steps remain. ``calls`` records
    every call for assertions. Usage is synthetic (estimated from the texts unless scripted).
    """

    def __init__(
        self, steps: Iterable[ScriptStep | str | LLMError], *, model: str = "scripted"
    ) -> None:
        self._steps: list[ScriptStep] = []
        for step in steps:
            if isinstance(step, ScriptStep):
                self._steps.append(step)
            elif isinstance(step, str):
                self._steps.append(ScriptStep(reply=step))
            elif isinstance(step, LLMError):
                self._steps.append(ScriptStep(error=step))
            else:
                raise TypeError(f"script steps are ScriptStep, str or LLMError, got {step!r}")
        self._model = model
        self._next = 0
        self._lock = threading.Lock()
        self.calls: list[RecordedCall] = []
        self.failures: list[str] = []

    @property
    def model(self) -> str:
        """The synthetic model name reported in completions."""
        return self._model

    @property
    def remaining(self) -> int:
        """How many scripted steps are not consumed yet."""
        return len(self._steps) - self._next

    def _fail(self, message: str) -> ScriptError:
        self.failures.append(message)
        return ScriptError(message)

    def _complete(
        self, messages: Sequence[Message], agent: str, options: CallOptions
    ) -> Completion:
        """Consume the next scripted step: return its reply or raise its error."""
        call = RecordedCall.of(agent, messages, options)
        with self._lock:  # steps are consumed atomically if agents call from several threads
            self.calls.append(call)
            number = len(self.calls)
            if self._next >= len(self._steps):
                raise self._fail(
                    f"unexpected LLM call #{number} from agent {agent!r}: the script has only "
                    f"{len(self._steps)} step(s). Prompt starts: {call.prompt[:200]!r}"
                )
            step = self._steps[self._next]
            self._next += 1
        if step.agent is not None and step.agent != agent:
            raise self._fail(
                f"LLM call #{number}: expected agent {step.agent!r}, got {agent!r}. "
                f"Prompt starts: {call.prompt[:200]!r}"
            )
        if isinstance(step.expect, str) and step.expect not in call.prompt:
            raise self._fail(
                f"LLM call #{number} ({agent}): prompt does not contain {step.expect!r}. "
                f"Prompt starts: {call.prompt[:300]!r}"
            )
        if callable(step.expect) and not step.expect(call.prompt):
            raise self._fail(
                f"LLM call #{number} ({agent}): prompt fails the step's predicate. "
                f"Prompt starts: {call.prompt[:300]!r}"
            )
        if step.error is not None:
            raise step.error
        assert step.reply is not None
        usage = step.usage or Usage(estimate_tokens(messages), estimate_tokens(step.reply))
        return Completion(step.reply, usage, self._model, 0.0, step.finish_reason)

    def assert_consumed(self) -> None:
        """Fail when a scripted step was never used or an earlier call broke the script."""
        if self.failures:
            raise ScriptError("the LLM script was violated: " + " | ".join(self.failures))
        if self.remaining:
            pending = self._steps[self._next]
            what = (
                f"reply {pending.reply[:80]!r}"
                if pending.reply is not None
                else repr(pending.error)
            )
            raise ScriptError(
                f"{self.remaining} scripted LLM step(s) never consumed "
                f"({self._next} of {len(self._steps)} used); next: {what}"
                + (f" for agent {pending.agent!r}" if pending.agent else "")
            )

    def _leave(self, *, failed: bool) -> None:
        if not failed:
            self.assert_consumed()


class ReplayChatModel(BaseChatModel):
    """Replies from a JSONL replay file; each line ``{"agent", "prompt_sha256", "response"}``
    (optional ``prompt_tokens``, ``completion_tokens``, ``finish_reason``).

    A call whose (agent, :func:`prompt_sha256`) is not in the file raises :class:`ReplayMiss`
    naming the hash, so a stale replay (prompts changed) fails loudly. Identical prompts replay
    their recorded responses in file order, then repeat the last one.
    """

    def __init__(self, path: str | Path, *, model: str = "replay") -> None:
        self._path = Path(path)
        self._model = model
        self._entries: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._served: dict[tuple[str, str], int] = {}
        self.calls: list[RecordedCall] = []
        try:
            lines = self._path.read_text(encoding="utf-8").splitlines()
        except OSError as err:
            raise ValueError(f"cannot read replay file {self._path}: {err}") from err
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                entry = jsonlib.loads(line)
                key = (str(entry["agent"]), str(entry["prompt_sha256"]))
                str(entry["response"])
            except (ValueError, KeyError, TypeError) as err:
                raise ValueError(
                    f"{self._path}, line {number}: expected a JSON object with agent, "
                    f"prompt_sha256 and response ({err})"
                ) from err
            self._entries.setdefault(key, []).append(entry)

    @property
    def model(self) -> str:
        """The synthetic model name reported in completions."""
        return self._model

    def _complete(
        self, messages: Sequence[Message], agent: str, options: CallOptions
    ) -> Completion:
        """Return the recorded response for this agent and prompt hash."""
        self.calls.append(RecordedCall.of(agent, messages, options))
        key = (agent, prompt_sha256(messages))
        entries = self._entries.get(key)
        if not entries:
            raise ReplayMiss(
                f"{self._path}: no recorded response for agent {agent!r} and prompt sha256 "
                f"{key[1]} (prompts changed? re-record with RecordingChatModel)"
            )
        index = min(self._served.get(key, 0), len(entries) - 1)
        self._served[key] = index + 1
        entry = entries[index]
        text = str(entry["response"])
        usage = Usage.reported_or_estimated(
            entry.get("prompt_tokens"), entry.get("completion_tokens"), messages, text
        )
        return Completion(text, usage, self._model, 0.0, str(entry.get("finish_reason", "stop")))


class RecordingChatModel(WrappingChatModel):
    """Passes calls to ``inner`` and appends each completed one to a JSONL replay file that
    :class:`ReplayChatModel` reads."""

    def __init__(self, inner: ChatModel, path: str | Path) -> None:
        super().__init__(inner)
        self._path = Path(path)

    def _complete(
        self, messages: Sequence[Message], agent: str, options: CallOptions
    ) -> Completion:
        """Call ``inner`` and record the reply."""
        completion = self.forward(messages, agent, options)
        line = {
            "agent": agent,
            "prompt_sha256": prompt_sha256(messages),
            "response": completion.text,
            "prompt_tokens": completion.usage.prompt_tokens,
            "completion_tokens": completion.usage.completion_tokens,
            "finish_reason": completion.finish_reason,
        }
        with self._path.open("a", encoding="utf-8") as fh:
            fh.write(jsonlib.dumps(line, ensure_ascii=False) + "\n")
        return completion
