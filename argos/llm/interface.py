"""The LLM port: the :class:`ChatModel` protocol, its messages and completions, the errors, and
the helpers every implementation shares (token estimation, request hashing, argument checks).

The agents (generator, repairer, reviewer) only ever talk to a :class:`ChatModel`: messages in,
a :class:`Completion` (text + token usage) out. This module is the bottom of :mod:`argos.llm`;
everything else in the package builds on it and it imports none of them:

- :mod:`argos.llm.openai`: :class:`~argos.llm.openai.OpenAIChatModel`, the adapter on the real
  ``openai`` client (OpenAI, Azure OpenAI and every OpenAI-compatible server). Transient failures
  are retried by the ``openai`` client ONLY; nothing above it retries. Failures surface as the
  :class:`LLMError` hierarchy defined here.
- :mod:`argos.llm.cache`: the SQLite response cache, so a resumed run never pays twice.
- :mod:`argos.llm.usage`: prices, the usage ledger, budgets and the metering wrapper (also the
  ledger state that :mod:`argos.distributed` shares across a Dask cluster).
- :mod:`argos.llm.testing`: scripted, replay and recording doubles for offline tests.
- :mod:`argos.llm.config` (configuration, :func:`~argos.llm.config.build_chat_model`) and
  :mod:`argos.llm.local` (a local llama.cpp server for integration tests).

Token estimation lives here, not in :mod:`argos.llm.usage`: adapters and doubles synthesise usage
with it when an endpoint reports none, and they must not depend on the accounting layer.

The usual stack for a training run is::

    ledger = UsageLedger(prices=config.price_table())
    model = MeteredChatModel(
        CachingChatModel(build_chat_model(config), ResponseStore(run_dir / "llm-cache.sqlite")),
        ledger=ledger,
        guard=BudgetGuard(Budget(max_cost_usd=2.0), ledger),
        max_input_tokens=config.max_input_tokens,
    )
    completion = model.complete(messages, agent="generator", seed=candidate_index)
"""

from __future__ import annotations

import hashlib
import json as jsonlib
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from types import TracebackType
from typing import Any, Literal, Protocol, Self, runtime_checkable

__all__ = [
    "AGENTS",
    "BaseChatModel",
    "CachedLookup",
    "CallOptions",
    "ChatModel",
    "Completion",
    "ContextManaged",
    "LLMBadResponse",
    "LLMBudgetExceeded",
    "LLMError",
    "LLMRateLimited",
    "LLMTimeout",
    "LLMUnavailable",
    "Message",
    "PromptTooLarge",
    "Usage",
    "WrappingChatModel",
    "check_agent",
    "check_messages",
    "estimate_tokens",
    "messages_payload",
    "prompt_sha256",
    "request_key",
]

Role = Literal["system", "user", "assistant"]
AGENTS: tuple[str, ...] = ("generator", "repairer", "reviewer")
"""The agent names Argos uses. Any non-empty name is accepted; these are the documented ones."""


# --------------------------------------------------------------------------------------------
# Messages and completions
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    """One chat message. ``role`` is ``system``, ``user`` or ``assistant``."""

    role: Role
    content: str

    def __post_init__(self) -> None:
        if self.role not in ("system", "user", "assistant"):
            raise ValueError(f"message role must be system, user or assistant, got {self.role!r}")
        if not isinstance(self.content, str):
            raise TypeError(f"message content must be str, got {type(self.content).__name__}")

    @classmethod
    def system(cls, content: str) -> Message:
        """A system message."""
        return cls("system", content)

    @classmethod
    def user(cls, content: str) -> Message:
        """A user message."""
        return cls("user", content)

    @classmethod
    def assistant(cls, content: str) -> Message:
        """An assistant message."""
        return cls("assistant", content)


@dataclass(frozen=True)
class Usage:
    """Token counts of one call (or a sum of calls). ``estimated`` is True when the endpoint did
    not report usage and the counts come from :func:`estimate_tokens`."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    estimated: bool = False

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion tokens."""
        return self.prompt_tokens + self.completion_tokens

    @classmethod
    def reported_or_estimated(
        cls,
        prompt_tokens: object,
        completion_tokens: object,
        messages: Sequence[Message],
        text: str,
    ) -> Usage:
        """The usage an endpoint (or a record) reported when both counts are integers, else one
        estimated from the prompt ``messages`` and the reply ``text``."""
        if isinstance(prompt_tokens, int) and isinstance(completion_tokens, int):
            return cls(prompt_tokens, completion_tokens)
        return cls(estimate_tokens(messages), estimate_tokens(text), estimated=True)

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.estimated or other.estimated,
        )


@dataclass(frozen=True)
class Completion:
    """The outcome of one successful call.

    ``finish_reason`` is what the endpoint reported (``stop``, ``length`` when the reply was cut
    at ``max_tokens``, ``content_filter``...; ``unknown`` when absent). ``cached`` is True when the
    reply came from a response cache (:mod:`argos.llm.cache`) instead of the endpoint.
    """

    text: str
    usage: Usage
    model: str
    latency_s: float
    finish_reason: str = "stop"
    cached: bool = False

    @property
    def truncated(self) -> bool:
        """True when the reply was cut at the output token limit."""
        return self.finish_reason == "length"


@dataclass(frozen=True)
class CallOptions:
    """The parameters of one :meth:`ChatModel.complete` call besides the messages and the agent;
    None = the model's configured default. ``json=True`` asks for a JSON object reply."""

    max_tokens: int | None = None
    temperature: float | None = None
    seed: int | None = None
    json: bool = False

    def as_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of :meth:`ChatModel.complete` that pass these options on (the
        fields are named after them)."""
        return asdict(self)


@runtime_checkable
class ChatModel(Protocol):
    """The port every agent talks to. Implementations must not retry transient errors themselves
    unless they are the vendor client layer (see module docstring).

    ``agent`` names the calling agent (``generator``, ``repairer``, ``reviewer``) for accounting
    and scripted expectations. ``json=True`` asks for a JSON object reply. ``None`` parameters
    mean "the model's configured default".
    """

    @property
    def model(self) -> str:
        """The model identifier requests go to (used in cache keys and cost accounting)."""
        ...

    def complete(
        self,
        messages: Sequence[Message],
        *,
        agent: str,
        max_tokens: int | None = None,
        temperature: float | None = None,
        seed: int | None = None,
        json: bool = False,
    ) -> Completion:
        """Send ``messages`` and return the reply, or raise an :class:`LLMError`."""
        ...


@runtime_checkable
class CachedLookup(Protocol):
    """What a chat model that serves repeated requests from a store declares (the response cache,
    :class:`argos.llm.cache.CachingChatModel`): :meth:`lookup` tells, without calling anything,
    whether a request is already answered. Wrappers that charge for calls (metering, budgets)
    use it to let a cached request through without counting it against the caps."""

    def lookup(self, messages: Sequence[Message], options: CallOptions) -> Completion | None:
        """The stored completion for this request, or None (nothing is sent)."""
        ...


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class LLMError(Exception):
    """Base of every failure of an LLM call. ``transient`` says whether trying again later could
    succeed; the retries themselves already happened in the client layer."""

    transient: bool = False


class LLMTimeout(LLMError):
    """The endpoint did not answer within the timeout (after the client's retries)."""

    transient = True


class LLMRateLimited(LLMError):
    """The endpoint kept answering 429 (rate limit or quota) after the client's retries."""

    transient = True


class LLMUnavailable(LLMError):
    """The endpoint cannot serve us: connection refused, DNS, 5xx after retries, bad key (401/403),
    unknown model or deployment (404), or a configuration that cannot build a client."""

    transient = True


class LLMBadResponse(LLMError):
    """The endpoint answered, but not with a usable chat completion (malformed body, no choices,
    no text), or it rejected the request itself (400/422)."""


class LLMBudgetExceeded(LLMError):
    """A token, cost or call budget would be exceeded by the next call; raised BEFORE sending."""


class PromptTooLarge(LLMError):
    """The prompt exceeds the per-call input token cap (raised before sending) or the model's
    context window (reported by the endpoint)."""


# --------------------------------------------------------------------------------------------
# Token estimation and hashing
# --------------------------------------------------------------------------------------------

_MESSAGE_OVERHEAD_TOKENS = 4  # role and separators per chat message, as OpenAI's chat format does
_tiktoken_encoder: Any = None
_tiktoken_tried = False


def _tiktoken_count(text: str) -> int | None:
    """Count with tiktoken when it is installed and its encoding is available offline."""
    global _tiktoken_encoder, _tiktoken_tried
    if not _tiktoken_tried:
        _tiktoken_tried = True
        try:
            import tiktoken  # type: ignore[import-not-found,unused-ignore]

            _tiktoken_encoder = tiktoken.get_encoding("o200k_base")
        except Exception:  # not installed, or the encoding cannot be fetched offline
            _tiktoken_encoder = None
    if _tiktoken_encoder is None:
        return None
    return len(_tiktoken_encoder.encode(text, disallowed_special=()))


_DIGITS = re.compile(r"[0-9]+")
_LETTERS = re.compile(r"[^\W\d_]+")
_OTHER = re.compile(r"[^\w\s]|_")


def _heuristic_tokens(text: str) -> int:
    """Digit runs in groups of 3 (as GPT tokenizers split numbers), letter runs at 4 characters
    per token, every other visible symbol one token; whitespace free."""
    digits = sum(-(-len(m) // 3) for m in _DIGITS.findall(text))
    letters = sum(-(-len(m) // 4) for m in _LETTERS.findall(text))
    return digits + letters + len(_OTHER.findall(text))


def estimate_tokens(content: str | Sequence[Message]) -> int:
    """A rough token count: tiktoken's ``o200k_base`` when installed (and its encoding is available
    offline), else a heuristic: digit runs in groups of 3, letter runs at 4 characters per token,
    one token per other symbol.

    For a message list, adds a few tokens of per-message overhead. Used to enforce the input cap
    before sending and to synthesise usage when an endpoint reports none. Plain chars/4 would
    undercount numeric data badly (``!40.23`` is 4 tokens for GPT-4o, 6 for SmolLM2, which splits
    every digit); the heuristic errs high for code and prose and is close for data chunks.
    """
    if isinstance(content, str):
        counted = _tiktoken_count(content)
        return counted if counted is not None else _heuristic_tokens(content)
    return sum(_MESSAGE_OVERHEAD_TOKENS + estimate_tokens(m.content) for m in content) + 3


def messages_payload(messages: Sequence[Message]) -> list[dict[str, str]]:
    """The messages as the JSON list chat endpoints take (and request hashes cover)."""
    return [{"role": m.role, "content": m.content} for m in messages]


def prompt_sha256(messages: Sequence[Message]) -> str:
    """The sha256 (hex) of a message list (roles and contents, canonical JSON). Replay files key
    responses by it."""
    blob = jsonlib.dumps(messages_payload(messages), ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def request_key(
    model: str, messages: Sequence[Message], options: CallOptions, *, namespace: str = ""
) -> str:
    """The idempotency key of a request: sha256 of (namespace, model, messages, parameters).

    Two calls that must give different replies (e.g. n candidates from the same prompt) must differ
    in some part of the key: pass a different ``seed`` per candidate.
    """
    blob = jsonlib.dumps(
        {
            "namespace": namespace,
            "model": model,
            "messages": messages_payload(messages),
            "max_tokens": options.max_tokens,
            "temperature": options.temperature,
            "seed": options.seed,
            "json": options.json,
        },
        ensure_ascii=False,
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def check_agent(agent: str) -> None:
    """Raise ValueError unless ``agent`` is a non-empty name."""
    if not isinstance(agent, str) or not agent.strip():
        raise ValueError("agent must be a non-empty name such as 'generator'")


def check_messages(messages: Sequence[Message]) -> None:
    """Raise unless ``messages`` is a non-empty sequence of :class:`Message`."""
    if not messages:
        raise ValueError("messages must not be empty")
    for m in messages:
        if not isinstance(m, Message):
            raise TypeError(f"messages must be argos.llm.interface.Message, got {type(m).__name__}")


# --------------------------------------------------------------------------------------------
# The skeleton of implementations
# --------------------------------------------------------------------------------------------


class BaseChatModel(ABC):
    """The common skeleton of Argos's :class:`ChatModel` implementations: :meth:`complete` checks
    the agent and the messages, gathers the parameters in a :class:`CallOptions` and hands them to
    :meth:`_complete`, the one method an implementation writes (besides :attr:`model`). The port
    stays a :class:`~typing.Protocol`: a model need not derive from this class."""

    @property
    @abstractmethod
    def model(self) -> str:
        """The model identifier requests go to (used in cache keys and cost accounting)."""

    def complete(
        self,
        messages: Sequence[Message],
        *,
        agent: str,
        max_tokens: int | None = None,
        temperature: float | None = None,
        seed: int | None = None,
        json: bool = False,
    ) -> Completion:
        """Send ``messages`` and return the reply, or raise an :class:`LLMError`."""
        check_agent(agent)
        check_messages(messages)
        return self._complete(messages, agent, CallOptions(max_tokens, temperature, seed, json))

    @abstractmethod
    def _complete(
        self, messages: Sequence[Message], agent: str, options: CallOptions
    ) -> Completion:
        """Answer one checked call."""


class WrappingChatModel(BaseChatModel):
    """A :class:`BaseChatModel` that adds something around another chat model, ``inner`` (a cache,
    metering, recording): it reports the inner model's name and :meth:`forward` passes a call on
    unchanged."""

    def __init__(self, inner: ChatModel) -> None:
        self._inner = inner

    @property
    def model(self) -> str:
        """The inner model's name."""
        return self._inner.model

    def forward(self, messages: Sequence[Message], agent: str, options: CallOptions) -> Completion:
        """The inner model's reply to this call."""
        return self._inner.complete(messages, agent=agent, **options.as_kwargs())


# --------------------------------------------------------------------------------------------
# The ``with`` statement for the package's resources
# --------------------------------------------------------------------------------------------


class ContextManaged(ABC):
    """``with obj:`` for the package's resources (the response store, the local server, the
    scripted double): entering gives the object back, leaving calls :meth:`_leave` with whether
    the block raised. A subclass that must act on entry (start a server) extends
    :meth:`__enter__`."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._leave(failed=exc_type is not None)

    @abstractmethod
    def _leave(self, *, failed: bool) -> None:
        """Release the resource (or check it) at the end of a ``with`` block."""
