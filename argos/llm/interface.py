"""Provider-neutral LLM access: the port, the ``openai`` adapter, test doubles, accounting, caching.

The agents (generator, repairer, reviewer) only ever talk to a :class:`ChatModel`: messages in,
a :class:`Completion` (text + token usage) out. Vendor SDKs live behind that port:

- :class:`OpenAIChatModel` wraps the real ``openai`` client (``openai.OpenAI`` or
  ``openai.AzureOpenAI``). It reaches OpenAI, Azure OpenAI and every OpenAI-compatible server
  (vLLM, Ollama, llama.cpp, LM Studio) through ``base_url``. Transient failures (timeouts, 429,
  5xx) are retried by the ``openai`` client ONLY (``max_retries``); nothing above it retries.
  Failures surface as the :class:`LLMError` hierarchy.
- :class:`ScriptedChatModel` (strict scripted double: fails on an unexpected call and on unconsumed
  replies) and :class:`ReplayChatModel` (JSONL replay file) make every LLM-dependent path
  testable offline. :class:`RecordingChatModel` writes such replay files.
- :class:`CachingChatModel` stores completed calls in SQLite keyed by a request hash, so a resumed
  training run never pays twice for a call that already completed.
- :class:`MeteredChatModel` enforces the per-call input token cap (:class:`PromptTooLarge`, before
  sending), asks a :class:`BudgetGuard` (:class:`LLMBudgetExceeded`, before sending) and records
  every completion in a :class:`UsageLedger` (tokens, calls and USD cost per agent).

The usual stack for a training run is::

    ledger = UsageLedger(prices=config.price_table())
    model = MeteredChatModel(
        CachingChatModel(build_chat_model(config), ResponseStore(run_dir / "llm-cache.sqlite")),
        ledger=ledger,
        guard=BudgetGuard(Budget(max_cost_usd=2.0), ledger),
        max_input_tokens=config.max_input_tokens,
    )
    completion = model.complete(messages, agent="generator", seed=candidate_index)

Configuration (``LLMConfig``, ``load_llm_config``, ``build_chat_model``): :mod:`argos.llm.config`.
"""

from __future__ import annotations

import hashlib
import json as jsonlib
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

import httpx
from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    import openai

__all__ = [
    "DEFAULT_PRICES",
    "AgentUsage",
    "Budget",
    "BudgetGuard",
    "CachingChatModel",
    "ChatModel",
    "Completion",
    "LLMBadResponse",
    "LLMBudgetExceeded",
    "LLMError",
    "LLMRateLimited",
    "LLMTimeout",
    "LLMUnavailable",
    "LedgerSummary",
    "Message",
    "MeteredChatModel",
    "OpenAIChatModel",
    "Price",
    "PromptTooLarge",
    "RecordedCall",
    "RecordingChatModel",
    "ReplayChatModel",
    "ReplayMiss",
    "ResponseStore",
    "ScriptError",
    "ScriptStep",
    "ScriptedChatModel",
    "Usage",
    "UsageLedger",
    "estimate_tokens",
    "price_for",
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
    reply came from a :class:`CachingChatModel` store instead of the endpoint.
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


class ScriptError(AssertionError):
    """A test double saw a call it was not scripted for, or a script ended unconsumed.

    Deliberately NOT an :class:`LLMError`: code under test must not swallow it as an LLM failure.
    """


class ReplayMiss(ScriptError):
    """A :class:`ReplayChatModel` has no recorded response for this agent and prompt."""


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


def _messages_payload(messages: Sequence[Message]) -> list[dict[str, str]]:
    return [{"role": m.role, "content": m.content} for m in messages]


def prompt_sha256(messages: Sequence[Message]) -> str:
    """The sha256 (hex) of a message list (roles and contents, canonical JSON). Replay files key
    responses by it."""
    blob = jsonlib.dumps(_messages_payload(messages), ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def request_key(
    model: str,
    messages: Sequence[Message],
    *,
    max_tokens: int | None,
    temperature: float | None,
    seed: int | None,
    json_mode: bool,
    namespace: str = "",
) -> str:
    """The idempotency key of a request: sha256 of (namespace, model, messages, parameters).

    Two calls that must give different replies (e.g. n candidates from the same prompt) must differ
    in some part of the key: pass a different ``seed`` per candidate.
    """
    blob = jsonlib.dumps(
        {
            "namespace": namespace,
            "model": model,
            "messages": _messages_payload(messages),
            "max_tokens": max_tokens,
            "temperature": temperature,
            "seed": seed,
            "json": json_mode,
        },
        ensure_ascii=False,
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _check_agent(agent: str) -> None:
    if not isinstance(agent, str) or not agent.strip():
        raise ValueError("agent must be a non-empty name such as 'generator'")


def _check_messages(messages: Sequence[Message]) -> None:
    if not messages:
        raise ValueError("messages must not be empty")
    for m in messages:
        if not isinstance(m, Message):
            raise TypeError(f"messages must be argos.llm.interface.Message, got {type(m).__name__}")


# --------------------------------------------------------------------------------------------
# The openai adapter
# --------------------------------------------------------------------------------------------


def _status_detail(err: Any) -> str:
    """A short, key-free description of an openai APIStatusError."""
    status = getattr(err, "status_code", "?")
    message = str(getattr(err, "message", "") or err)
    if len(message) > 300:
        message = message[:300] + "..."
    return f"HTTP {status}: {message}"


class OpenAIChatModel:
    """A :class:`ChatModel` on the real ``openai`` client (OpenAI or any compatible server).

    Parameters mirror the client: ``base_url`` (None = the client's default / ``OPENAI_BASE_URL``),
    ``api_key`` (local servers accept any non-empty string), ``timeout_s`` per attempt,
    ``max_retries`` (the ONLY retry layer: the client retries timeouts, 408/409/429 and 5xx with
    exponential backoff, honouring ``retry-after(-ms)``). ``http_client`` is an injection point for
    tests: ``httpx.Client(transport=httpx.MockTransport(handler))``.

    For Azure OpenAI use :meth:`azure`; ``model`` is then the deployment name.
    ``temperature``/``max_tokens`` given here are defaults for calls that pass None.
    """

    def __init__(
        self,
        *,
        model: str,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout_s: float = 120.0,
        max_retries: int = 2,
        http_client: httpx.Client | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        client: openai.OpenAI | None = None,
    ) -> None:
        import openai as _openai

        if not model:
            raise ValueError("model must be a non-empty model name (or Azure deployment name)")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self._model = model
        self.default_temperature = temperature
        self.default_max_tokens = max_tokens
        if client is not None:
            self._client = client
        else:
            try:
                self._client = _openai.OpenAI(
                    api_key=api_key,
                    base_url=base_url,
                    timeout=timeout_s,
                    max_retries=max_retries,
                    http_client=http_client,
                )
            except _openai.OpenAIError as err:  # e.g. no api key anywhere
                raise LLMUnavailable(f"cannot build the OpenAI client: {err}") from err

    @classmethod
    def azure(
        cls,
        *,
        deployment: str,
        azure_endpoint: str,
        api_version: str,
        api_key: str | None = None,
        timeout_s: float = 120.0,
        max_retries: int = 2,
        http_client: httpx.Client | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> OpenAIChatModel:
        """An adapter on ``openai.AzureOpenAI``: requests go to
        ``{azure_endpoint}/openai/deployments/{deployment}/chat/completions?api-version=...``."""
        import openai as _openai

        if not azure_endpoint:
            raise ValueError("azure_endpoint is required for Azure OpenAI (AZURE_OPENAI_ENDPOINT)")
        if not api_version:
            raise ValueError("api_version is required for Azure OpenAI (OPENAI_API_VERSION)")
        try:
            client = _openai.AzureOpenAI(
                api_key=api_key,
                azure_endpoint=azure_endpoint,
                azure_deployment=deployment,
                api_version=api_version,
                timeout=timeout_s,
                max_retries=max_retries,
                http_client=http_client,
            )
        except _openai.OpenAIError as err:
            raise LLMUnavailable(f"cannot build the Azure OpenAI client: {err}") from err
        return cls(
            model=deployment,
            client=client,
            temperature=temperature,
            max_tokens=max_tokens,
        )

    @property
    def model(self) -> str:
        """The model (or Azure deployment) name sent with every request."""
        return self._model

    @property
    def client(self) -> openai.OpenAI:
        """The underlying ``openai`` client (for advanced use; agents should not need it)."""
        return self._client

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
        """One chat completion. Raises :class:`LLMTimeout`, :class:`LLMRateLimited`,
        :class:`LLMUnavailable`, :class:`LLMBadResponse` or :class:`PromptTooLarge`."""
        import openai as _openai

        _check_agent(agent)
        _check_messages(messages)
        kwargs: dict[str, Any] = {"model": self._model, "messages": _messages_payload(messages)}
        max_tokens = max_tokens if max_tokens is not None else self.default_max_tokens
        temperature = temperature if temperature is not None else self.default_temperature
        if max_tokens is not None:
            kwargs["max_tokens"] = max_tokens
        if temperature is not None:
            kwargs["temperature"] = temperature
        if seed is not None:
            kwargs["seed"] = seed
        if json:
            kwargs["response_format"] = {"type": "json_object"}
        where = f"{agent} call to model {self._model!r}"
        started = time.perf_counter()
        try:
            response = self._client.chat.completions.create(**kwargs)
        except _openai.APITimeoutError as err:
            raise LLMTimeout(
                f"{where} timed out after {self._client.max_retries} retries "
                f"(timeout {self._client.timeout}s per attempt)"
            ) from err
        except _openai.RateLimitError as err:
            raise LLMRateLimited(
                f"{where} was rate limited after {self._client.max_retries} retries "
                f"({_status_detail(err)})"
            ) from err
        except (_openai.AuthenticationError, _openai.PermissionDeniedError) as err:
            raise LLMUnavailable(
                f"{where} was refused, check the API key ({_status_detail(err)})"
            ) from err
        except _openai.NotFoundError as err:
            raise LLMUnavailable(
                f"{where}: model, deployment or URL not found ({_status_detail(err)})"
            ) from err
        except _openai.BadRequestError as err:
            text = str(err).lower()
            if "context_length" in text or "context length" in text or "too long" in text:
                raise PromptTooLarge(
                    f"{where}: the prompt exceeds the model's context window "
                    f"({_status_detail(err)}); shrink the chunk or lower max_points"
                ) from err
            raise LLMBadResponse(
                f"{where}: the endpoint rejected the request ({_status_detail(err)})"
            ) from err
        except _openai.APIStatusError as err:
            if err.status_code >= 500:
                raise LLMUnavailable(
                    f"{where} failed with a server error after {self._client.max_retries} "
                    f"retries ({_status_detail(err)})"
                ) from err
            raise LLMBadResponse(
                f"{where}: unexpected HTTP status ({_status_detail(err)})"
            ) from err
        except _openai.APIConnectionError as err:
            raise LLMUnavailable(
                f"{where}: cannot connect to {self._client.base_url} after "
                f"{self._client.max_retries} retries ({err.__cause__ or err})"
            ) from err
        except _openai.APIResponseValidationError as err:
            raise LLMBadResponse(f"{where}: malformed response body ({err})") from err
        except ValueError as err:  # JSONDecodeError of a garbage body, pydantic validation
            raise LLMBadResponse(f"{where}: the response body is not valid JSON ({err})") from err
        latency = time.perf_counter() - started
        return self._parse(response, messages, where, latency)

    def _parse(
        self, response: Any, messages: Sequence[Message], where: str, latency: float
    ) -> Completion:
        choices = getattr(response, "choices", None)
        if not isinstance(choices, list) or not choices:
            shown = repr(response)[:200]
            raise LLMBadResponse(f"{where}: the response has no choices: {shown}")
        choice = choices[0]
        message = getattr(choice, "message", None)
        text = getattr(message, "content", None)
        finish = str(getattr(choice, "finish_reason", None) or "unknown")
        if text is None:
            refusal = getattr(message, "refusal", None)
            if refusal:
                raise LLMBadResponse(f"{where}: the model refused: {str(refusal)[:200]}")
            if finish == "length":
                text = ""
            else:
                raise LLMBadResponse(f"{where}: the response has no message content")
        if not isinstance(text, str):
            raise LLMBadResponse(f"{where}: message content is {type(text).__name__}, not text")
        raw_usage = getattr(response, "usage", None)
        prompt = getattr(raw_usage, "prompt_tokens", None)
        completion = getattr(raw_usage, "completion_tokens", None)
        if isinstance(prompt, int) and isinstance(completion, int):
            usage = Usage(prompt, completion)
        else:
            usage = Usage(estimate_tokens(messages), estimate_tokens(text), estimated=True)
        model = getattr(response, "model", None)
        return Completion(
            text=text,
            usage=usage,
            model=model if isinstance(model, str) and model else self._model,
            latency_s=latency,
            finish_reason=finish,
        )


# --------------------------------------------------------------------------------------------
# Test doubles
# --------------------------------------------------------------------------------------------


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

    @property
    def prompt(self) -> str:
        """All message contents joined by blank lines (what ``expect`` is matched against)."""
        return "\n\n".join(m.content for m in self.messages)


class ScriptedChatModel:
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
        """Consume the next scripted step: return its reply or raise its error."""
        _check_agent(agent)
        _check_messages(messages)
        call = RecordedCall(agent, tuple(messages), max_tokens, temperature, seed, json)
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

    def __enter__(self) -> ScriptedChatModel:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.assert_consumed()


class ReplayChatModel:
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
        """Return the recorded response for this agent and prompt hash."""
        _check_agent(agent)
        _check_messages(messages)
        self.calls.append(RecordedCall(agent, tuple(messages), max_tokens, temperature, seed, json))
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
        prompt_tokens = entry.get("prompt_tokens")
        completion_tokens = entry.get("completion_tokens")
        if isinstance(prompt_tokens, int) and isinstance(completion_tokens, int):
            usage = Usage(prompt_tokens, completion_tokens)
        else:
            usage = Usage(estimate_tokens(messages), estimate_tokens(text), estimated=True)
        return Completion(text, usage, self._model, 0.0, str(entry.get("finish_reason", "stop")))


class RecordingChatModel:
    """Passes calls to ``inner`` and appends each completed one to a JSONL replay file that
    :class:`ReplayChatModel` reads."""

    def __init__(self, inner: ChatModel, path: str | Path) -> None:
        self._inner = inner
        self._path = Path(path)

    @property
    def model(self) -> str:
        """The inner model's name."""
        return self._inner.model

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
        """Call ``inner`` and record the reply."""
        completion = self._inner.complete(
            messages,
            agent=agent,
            max_tokens=max_tokens,
            temperature=temperature,
            seed=seed,
            json=json,
        )
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


# --------------------------------------------------------------------------------------------
# Response cache (idempotency for resumed runs)
# --------------------------------------------------------------------------------------------


class ResponseStore:
    """A SQLite table of completed calls keyed by :func:`request_key`. Each write commits at once,
    so a completion survives a kill right after the call returned. Safe across threads."""

    _SCHEMA = """
    CREATE TABLE IF NOT EXISTS llm_responses (
        key TEXT PRIMARY KEY,
        agent TEXT NOT NULL,
        model TEXT NOT NULL,
        text TEXT NOT NULL,
        prompt_tokens INTEGER NOT NULL,
        completion_tokens INTEGER NOT NULL,
        estimated INTEGER NOT NULL,
        finish_reason TEXT NOT NULL,
        latency_s REAL NOT NULL,
        created REAL NOT NULL
    )
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(str(self.path), check_same_thread=False, timeout=30.0)
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute(self._SCHEMA)
            self._conn.commit()

    def get(self, key: str) -> Completion | None:
        """The stored completion for ``key`` (marked ``cached=True``), or None."""
        with self._lock:
            row = self._conn.execute(
                "SELECT model, text, prompt_tokens, completion_tokens, estimated, finish_reason,"
                " latency_s FROM llm_responses WHERE key = ?",
                (key,),
            ).fetchone()
        if row is None:
            return None
        model, text, prompt, completion, estimated, finish, latency = row
        return Completion(
            text, Usage(prompt, completion, bool(estimated)), model, latency, finish, cached=True
        )

    def put(self, key: str, agent: str, completion: Completion) -> None:
        """Store a completion (first write wins; a second put of the same key is ignored)."""
        with self._lock:
            self._conn.execute(
                "INSERT OR IGNORE INTO llm_responses VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key,
                    agent,
                    completion.model,
                    completion.text,
                    completion.usage.prompt_tokens,
                    completion.usage.completion_tokens,
                    int(completion.usage.estimated),
                    completion.finish_reason,
                    completion.latency_s,
                    time.time(),
                ),
            )
            self._conn.commit()

    def __len__(self) -> int:
        with self._lock:
            (count,) = self._conn.execute("SELECT COUNT(*) FROM llm_responses").fetchone()
        return int(count)

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> ResponseStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class CachingChatModel:
    """Serves repeated requests from a :class:`ResponseStore`; only completed calls are stored
    (errors never). The key covers ``namespace`` (e.g. a run id), the model, the messages and all
    parameters, but not the agent name. Give each of n candidates its own ``seed``."""

    def __init__(
        self, inner: ChatModel, store: ResponseStore | str | Path, *, namespace: str = ""
    ) -> None:
        self._inner = inner
        self.store = store if isinstance(store, ResponseStore) else ResponseStore(store)
        self.namespace = namespace
        self.hits = 0
        self.misses = 0

    @property
    def model(self) -> str:
        """The inner model's name."""
        return self._inner.model

    def _key(
        self,
        messages: Sequence[Message],
        max_tokens: int | None,
        temperature: float | None,
        seed: int | None,
        json: bool,
    ) -> str:
        return request_key(
            self._inner.model,
            messages,
            max_tokens=max_tokens,
            temperature=temperature,
            seed=seed,
            json_mode=json,
            namespace=self.namespace,
        )

    def lookup(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        seed: int | None = None,
        json: bool = False,
    ) -> Completion | None:
        """The stored completion for this request, without calling the model."""
        return self.store.get(self._key(messages, max_tokens, temperature, seed, json))

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
        """Return the stored reply for this request, or call ``inner`` and store its reply."""
        _check_agent(agent)
        _check_messages(messages)
        key = self._key(messages, max_tokens, temperature, seed, json)
        hit = self.store.get(key)
        if hit is not None:
            self.hits += 1
            return hit
        self.misses += 1
        completion = self._inner.complete(
            messages,
            agent=agent,
            max_tokens=max_tokens,
            temperature=temperature,
            seed=seed,
            json=json,
        )
        self.store.put(key, agent, completion)
        return completion


# --------------------------------------------------------------------------------------------
# Accounting and budgets
# --------------------------------------------------------------------------------------------


class Price(BaseModel):
    """USD per one million tokens."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    input_per_m: float = Field(ge=0)
    output_per_m: float = Field(ge=0)

    def cost(self, usage: Usage) -> float:
        """The USD cost of ``usage`` at this price."""
        return (
            usage.prompt_tokens * self.input_per_m + usage.completion_tokens * self.output_per_m
        ) / 1e6


DEFAULT_PRICES: Mapping[str, Price] = {
    # OpenAI list prices (standard tier, uncached input), USD per 1M tokens, as published in 2025.
    # Override or extend them in the config ([llm.prices."model"]) when they change.
    "gpt-4o": Price(input_per_m=2.50, output_per_m=10.00),
    "gpt-4o-mini": Price(input_per_m=0.15, output_per_m=0.60),
    "gpt-4.1": Price(input_per_m=2.00, output_per_m=8.00),
    "gpt-4.1-mini": Price(input_per_m=0.40, output_per_m=1.60),
    "gpt-4.1-nano": Price(input_per_m=0.10, output_per_m=0.40),
    "o4-mini": Price(input_per_m=1.10, output_per_m=4.40),
    "o3": Price(input_per_m=2.00, output_per_m=8.00),
}


def price_for(model: str, prices: Mapping[str, Price]) -> Price | None:
    """The price of ``model``: an exact entry, else the longest entry that ``model`` extends with a
    ``-`` suffix (so ``gpt-4o-2024-08-06`` costs as ``gpt-4o`` and ``gpt-4o-mini-x`` as
    ``gpt-4o-mini``), else None (unpriced)."""
    if model in prices:
        return prices[model]
    best: str | None = None
    for name in prices:
        if model.startswith(name + "-") and (best is None or len(name) > len(best)):
            best = name
    return prices[best] if best is not None else None


class AgentUsage(BaseModel):
    """Totals for one agent (or all agents). ``cost_usd`` excludes unpriced models."""

    model_config = ConfigDict(extra="forbid")

    calls: int = 0
    cached_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion tokens."""
        return self.prompt_tokens + self.completion_tokens


class LedgerSummary(BaseModel):
    """A JSON-ready summary of a ledger: per-agent and total usage and cost, and which models had
    no price (their cost counted as 0)."""

    model_config = ConfigDict(extra="forbid")

    run_id: str | None = None
    agents: dict[str, AgentUsage] = Field(default_factory=dict)
    total: AgentUsage = Field(default_factory=AgentUsage)
    unpriced_models: list[str] = Field(default_factory=list)
    estimated_usage: bool = False


class UsageLedger:
    """Counts calls, tokens and USD cost per agent for one run.

    ``prices`` is the model price table (default :data:`DEFAULT_PRICES`); unknown models cost 0 and
    are listed in ``unpriced_models``. Completions served from the response cache are counted
    normally (they were paid once, by this run before it was interrupted; the checkpointed ledger
    did not include them) and also in ``cached_calls``. :meth:`summary` gives a pydantic model for
    run summaries; :meth:`from_summary` restores a ledger from one (e.g. from a checkpoint).
    """

    def __init__(
        self, prices: Mapping[str, Price] | None = None, *, run_id: str | None = None
    ) -> None:
        self.prices: Mapping[str, Price] = dict(DEFAULT_PRICES if prices is None else prices)
        self.run_id = run_id
        self._agents: dict[str, AgentUsage] = {}
        self._unpriced: set[str] = set()
        self._estimated = False
        self._lock = threading.Lock()

    def cost(self, model: str, usage: Usage) -> float | None:
        """The USD cost of ``usage`` on ``model``, or None when the model has no price."""
        price = price_for(model, self.prices)
        return None if price is None else price.cost(usage)

    def record(self, agent: str, completion: Completion) -> float:
        """Add one completion to ``agent``'s totals; returns its cost (0 when unpriced)."""
        _check_agent(agent)
        cost = self.cost(completion.model, completion.usage)
        with self._lock:
            if cost is None:
                self._unpriced.add(completion.model)
            self._estimated = self._estimated or completion.usage.estimated
            row = self._agents.setdefault(agent, AgentUsage())
            row.calls += 1
            row.cached_calls += int(completion.cached)
            row.prompt_tokens += completion.usage.prompt_tokens
            row.completion_tokens += completion.usage.completion_tokens
            row.cost_usd += cost or 0.0
        return cost or 0.0

    def agent(self, agent: str) -> AgentUsage:
        """A copy of one agent's totals (zeros when it made no call)."""
        with self._lock:
            return self._agents.get(agent, AgentUsage()).model_copy()

    def total(self) -> AgentUsage:
        """Totals over all agents."""
        with self._lock:
            rows = list(self._agents.values())
        return AgentUsage(
            calls=sum(r.calls for r in rows),
            cached_calls=sum(r.cached_calls for r in rows),
            prompt_tokens=sum(r.prompt_tokens for r in rows),
            completion_tokens=sum(r.completion_tokens for r in rows),
            cost_usd=sum(r.cost_usd for r in rows),
        )

    @property
    def unpriced_models(self) -> list[str]:
        """Models seen without a price (their cost is counted as 0)."""
        with self._lock:
            return sorted(self._unpriced)

    def summary(self) -> LedgerSummary:
        """A JSON-ready snapshot."""
        with self._lock:
            agents = {name: row.model_copy() for name, row in sorted(self._agents.items())}
            unpriced = sorted(self._unpriced)
            estimated = self._estimated
        return LedgerSummary(
            run_id=self.run_id,
            agents=agents,
            total=self.total(),
            unpriced_models=unpriced,
            estimated_usage=estimated,
        )

    @classmethod
    def from_summary(
        cls, summary: LedgerSummary, prices: Mapping[str, Price] | None = None
    ) -> UsageLedger:
        """A ledger continuing from a saved :meth:`summary`."""
        ledger = cls(prices, run_id=summary.run_id)
        ledger._agents = {name: row.model_copy() for name, row in summary.agents.items()}
        ledger._unpriced = set(summary.unpriced_models)
        ledger._estimated = summary.estimated_usage
        return ledger


class Budget(BaseModel):
    """Limits for one run; None = unlimited. Tokens are prompt + completion."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_tokens: int | None = Field(default=None, ge=0)
    max_cost_usd: float | None = Field(default=None, ge=0)
    max_calls: int | None = Field(default=None, ge=0)


class BudgetGuard:
    """Refuses a call BEFORE it is sent when it could push the ledger past the budget.

    The projection is pessimistic: spent so far + the estimated prompt tokens + the full
    ``max_tokens`` of output (when known). Cost is projected with the ledger's price table;
    an unpriced model never trips the cost budget (but does trip the token budget).
    """

    def __init__(self, budget: Budget, ledger: UsageLedger) -> None:
        self.budget = budget
        self.ledger = ledger

    def check(
        self, *, agent: str, model: str, prompt_tokens: int, max_output_tokens: int | None
    ) -> None:
        """Raise :class:`LLMBudgetExceeded` when the next call could exceed a limit."""
        spent = self.ledger.total()
        b = self.budget
        out = max_output_tokens or 0
        if b.max_calls is not None and spent.calls + 1 > b.max_calls:
            raise LLMBudgetExceeded(
                f"{agent} call refused: the call budget of {b.max_calls} is used up "
                f"({spent.calls} made)"
            )
        if b.max_tokens is not None and spent.total_tokens + prompt_tokens + out > b.max_tokens:
            raise LLMBudgetExceeded(
                f"{agent} call refused: {spent.total_tokens} tokens spent + about {prompt_tokens} "
                f"prompt + up to {out} output would exceed the token budget of {b.max_tokens}"
            )
        if b.max_cost_usd is not None:
            projected = self.ledger.cost(model, Usage(prompt_tokens, out)) or 0.0
            if spent.cost_usd + projected > b.max_cost_usd:
                raise LLMBudgetExceeded(
                    f"{agent} call refused: ${spent.cost_usd:.4f} spent + up to ${projected:.4f} "
                    f"for this call would exceed the cost budget of ${b.max_cost_usd:.2f}"
                )


class MeteredChatModel:
    """The accounting wrapper the agents should call.

    Before sending: enforces ``max_input_tokens`` (:class:`PromptTooLarge`) with
    :func:`estimate_tokens`, then asks ``guard`` (:class:`LLMBudgetExceeded`). A request already in
    an inner :class:`CachingChatModel` skips both checks (it costs nothing new). After a call:
    records the completion in ``ledger``. Failed calls are not recorded (the endpoint reports no
    usage for them). ``max_tokens`` default for calls that pass None: ``default_max_tokens``.
    """

    def __init__(
        self,
        inner: ChatModel,
        *,
        ledger: UsageLedger,
        guard: BudgetGuard | None = None,
        max_input_tokens: int | None = None,
        default_max_tokens: int | None = None,
    ) -> None:
        self._inner = inner
        self.ledger = ledger
        self.guard = guard
        self.max_input_tokens = max_input_tokens
        self.default_max_tokens = default_max_tokens

    @property
    def model(self) -> str:
        """The inner model's name."""
        return self._inner.model

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
        """Check the cap and budget, call ``inner``, record usage."""
        _check_agent(agent)
        _check_messages(messages)
        max_tokens = max_tokens if max_tokens is not None else self.default_max_tokens
        cached = None
        if isinstance(self._inner, CachingChatModel):
            cached = self._inner.lookup(
                messages, max_tokens=max_tokens, temperature=temperature, seed=seed, json=json
            )
        if cached is None:
            prompt_tokens = estimate_tokens(messages)
            if self.max_input_tokens is not None and prompt_tokens > self.max_input_tokens:
                biggest = max(messages, key=lambda m: len(m.content))
                raise PromptTooLarge(
                    f"{agent} prompt is about {prompt_tokens} tokens, over the per-call cap of "
                    f"{self.max_input_tokens} (largest message: {biggest.role}, "
                    f"{len(biggest.content)} chars). Use a smaller chunk, fewer verbatim points "
                    f"(render_chunk max_points) or raise max_input_tokens."
                )
            if self.guard is not None:
                self.guard.check(
                    agent=agent,
                    model=self._inner.model,
                    prompt_tokens=prompt_tokens,
                    max_output_tokens=max_tokens,
                )
        completion = self._inner.complete(
            messages,
            agent=agent,
            max_tokens=max_tokens,
            temperature=temperature,
            seed=seed,
            json=json,
        )
        self.ledger.record(agent, completion)
        return completion


def iter_agents(ledger: UsageLedger) -> Iterator[tuple[str, AgentUsage]]:
    """(agent, totals) pairs in name order, for tables."""
    yield from ledger.summary().agents.items()
