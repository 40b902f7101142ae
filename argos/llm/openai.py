"""The ``openai`` adapter: :class:`OpenAIChatModel`, a :class:`~argos.llm.interface.ChatModel` on
the real ``openai`` client (``openai.OpenAI`` or ``openai.AzureOpenAI``).

It reaches OpenAI, Azure OpenAI and every OpenAI-compatible server (vLLM, Ollama, llama.cpp,
LM Studio) through ``base_url``. Transient failures (timeouts, 429, 5xx) are retried by the
``openai`` client ONLY (``max_retries``); nothing above it retries. Every client failure is
translated into the :class:`~argos.llm.interface.LLMError` hierarchy, so callers never see an
``openai`` exception. When the endpoint reports no usage, it is estimated with
:func:`~argos.llm.interface.estimate_tokens` (and marked ``estimated``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

import httpx

from argos.llm.interface import (
    BaseChatModel,
    CallOptions,
    Completion,
    LLMBadResponse,
    LLMError,
    LLMRateLimited,
    LLMTimeout,
    LLMUnavailable,
    Message,
    PromptTooLarge,
    Usage,
    messages_payload,
)

if TYPE_CHECKING:
    import openai

__all__ = ["ClientOptions", "OpenAIChatModel"]


class ClientOptions(TypedDict, total=False):
    """The arguments :class:`OpenAIChatModel` and :meth:`OpenAIChatModel.azure` share (an unset
    one takes the default in brackets): ``api_key`` [None: the client's environment variable;
    local servers accept any non-empty string], ``timeout_s`` [120.0] per attempt,
    ``max_retries`` [2] (the ONLY retry layer: the client retries timeouts, 408/409/429 and 5xx
    with exponential backoff, honouring ``retry-after(-ms)``), ``http_client`` [None] (an
    injection point for tests: ``httpx.Client(transport=httpx.MockTransport(handler))``), and
    ``temperature``/``max_tokens`` [None], the defaults for calls that pass None."""

    api_key: str | None
    timeout_s: float
    max_retries: int
    http_client: httpx.Client | None
    temperature: float | None
    max_tokens: int | None


_DEFAULT_TIMEOUT_S = 120.0
_DEFAULT_MAX_RETRIES = 2


def _build_client(
    make: Callable[..., openai.OpenAI], provider: str, options: ClientOptions, **endpoint: Any
) -> openai.OpenAI:
    """``make(...)`` (``openai.OpenAI`` or ``openai.AzureOpenAI``) on ``options`` and the
    provider's ``endpoint`` arguments; a client that cannot be built is :class:`LLMUnavailable`."""
    import openai as _openai

    try:
        return make(
            api_key=options.get("api_key"),
            timeout=options.get("timeout_s", _DEFAULT_TIMEOUT_S),
            max_retries=options.get("max_retries", _DEFAULT_MAX_RETRIES),
            http_client=options.get("http_client"),
            **endpoint,
        )
    except _openai.OpenAIError as err:  # e.g. no api key anywhere
        raise LLMUnavailable(f"cannot build the {provider} client: {err}") from err


def _status_detail(err: Any) -> str:
    """A short, key-free description of an openai APIStatusError."""
    status = getattr(err, "status_code", "?")
    message = str(getattr(err, "message", "") or err)
    if len(message) > 300:
        message = message[:300] + "..."
    return f"HTTP {status}: {message}"


def _is_context_overflow(err: Exception) -> bool:
    text = str(err).lower()
    return "context_length" in text or "context length" in text or "too long" in text


def _is_server_error(err: Exception) -> bool:
    return int(getattr(err, "status_code", 0)) >= 500


_ERROR_TABLE: tuple[tuple[str, Callable[[Exception], bool] | None, type[LLMError], str], ...] = (
    # (openai exception name, extra condition, the LLMError raised, its message): first match wins
    (
        "APITimeoutError",
        None,
        LLMTimeout,
        "{where} timed out after {retries} retries (timeout {timeout}s per attempt)",
    ),
    (
        "RateLimitError",
        None,
        LLMRateLimited,
        "{where} was rate limited after {retries} retries ({detail})",
    ),
    (
        "AuthenticationError",
        None,
        LLMUnavailable,
        "{where} was refused, check the API key ({detail})",
    ),
    (
        "PermissionDeniedError",
        None,
        LLMUnavailable,
        "{where} was refused, check the API key ({detail})",
    ),
    (
        "NotFoundError",
        None,
        LLMUnavailable,
        "{where}: model, deployment or URL not found ({detail})",
    ),
    (
        "BadRequestError",
        _is_context_overflow,
        PromptTooLarge,
        "{where}: the prompt exceeds the model's context window ({detail}); shrink the chunk or "
        "lower max_points",
    ),
    (
        "BadRequestError",
        None,
        LLMBadResponse,
        "{where}: the endpoint rejected the request ({detail})",
    ),
    (
        "APIStatusError",
        _is_server_error,
        LLMUnavailable,
        "{where} failed with a server error after {retries} retries ({detail})",
    ),
    ("APIStatusError", None, LLMBadResponse, "{where}: unexpected HTTP status ({detail})"),
    (
        "APIConnectionError",
        None,
        LLMUnavailable,
        "{where}: cannot connect to {base_url} after {retries} retries ({cause})",
    ),
    (
        "APIResponseValidationError",
        None,
        LLMBadResponse,
        "{where}: malformed response body ({err})",
    ),
    # a garbage body's JSONDecodeError, a pydantic validation error
    ("ValueError", None, LLMBadResponse, "{where}: the response body is not valid JSON ({err})"),
)


def _translate_error(err: Exception, where: str, client: openai.OpenAI) -> LLMError | None:
    """The :class:`LLMError` for a failed request (see :data:`_ERROR_TABLE`), or None for an
    error the adapter does not translate."""
    import openai as _openai

    for name, condition, error, message in _ERROR_TABLE:
        kind = ValueError if name == "ValueError" else getattr(_openai, name)
        if isinstance(err, kind) and (condition is None or condition(err)):
            return error(
                message.format(
                    where=where,
                    retries=client.max_retries,
                    timeout=client.timeout,
                    base_url=client.base_url,
                    detail=_status_detail(err),
                    cause=err.__cause__ or err,
                    err=err,
                )
            )
    return None


class OpenAIChatModel(BaseChatModel):
    """A :class:`ChatModel` on the real ``openai`` client (OpenAI or any compatible server).

    ``base_url`` is the server (None = the client's default / ``OPENAI_BASE_URL``); the other
    arguments are the :class:`ClientOptions`. For Azure OpenAI use :meth:`azure`; ``model`` is
    then the deployment name.
    """

    def __init__(
        self,
        *,
        model: str,
        base_url: str | None = None,
        client: openai.OpenAI | None = None,
        **options: Unpack[ClientOptions],
    ) -> None:
        import openai as _openai

        if not model:
            raise ValueError("model must be a non-empty model name (or Azure deployment name)")
        max_retries = options.get("max_retries", _DEFAULT_MAX_RETRIES)
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        timeout_s = options.get("timeout_s", _DEFAULT_TIMEOUT_S)
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self._model = model
        self.default_temperature = options.get("temperature")
        self.default_max_tokens = options.get("max_tokens")
        self._client = (
            client
            if client is not None
            else _build_client(_openai.OpenAI, "OpenAI", options, base_url=base_url)
        )

    @classmethod
    def azure(
        cls,
        *,
        deployment: str,
        azure_endpoint: str,
        api_version: str,
        **options: Unpack[ClientOptions],
    ) -> OpenAIChatModel:
        """An adapter on ``openai.AzureOpenAI``: requests go to
        ``{azure_endpoint}/openai/deployments/{deployment}/chat/completions?api-version=...``."""
        import openai as _openai

        if not azure_endpoint:
            raise ValueError("azure_endpoint is required for Azure OpenAI (AZURE_OPENAI_ENDPOINT)")
        if not api_version:
            raise ValueError("api_version is required for Azure OpenAI (OPENAI_API_VERSION)")
        client = _build_client(
            _openai.AzureOpenAI,
            "Azure OpenAI",
            options,
            azure_endpoint=azure_endpoint,
            azure_deployment=deployment,
            api_version=api_version,
        )
        return cls(
            model=deployment,
            client=client,
            temperature=options.get("temperature"),
            max_tokens=options.get("max_tokens"),
        )

    @property
    def model(self) -> str:
        """The model (or Azure deployment) name sent with every request."""
        return self._model

    @property
    def client(self) -> openai.OpenAI:
        """The underlying ``openai`` client (for advanced use; agents should not need it)."""
        return self._client

    def _complete(
        self, messages: Sequence[Message], agent: str, options: CallOptions
    ) -> Completion:
        """One chat completion. Raises :class:`~argos.llm.interface.LLMTimeout`,
        :class:`~argos.llm.interface.LLMRateLimited`, :class:`~argos.llm.interface.LLMUnavailable`,
        :class:`~argos.llm.interface.LLMBadResponse` or
        :class:`~argos.llm.interface.PromptTooLarge`."""
        import openai as _openai

        kwargs: dict[str, Any] = {"model": self._model, "messages": messages_payload(messages)}
        max_tokens = self.default_max_tokens if options.max_tokens is None else options.max_tokens
        temperature = (
            self.default_temperature if options.temperature is None else options.temperature
        )
        if max_tokens is not None:
            kwargs["max_tokens"] = max_tokens
        if temperature is not None:
            kwargs["temperature"] = temperature
        if options.seed is not None:
            kwargs["seed"] = options.seed
        if options.json:
            kwargs["response_format"] = {"type": "json_object"}
        where = f"{agent} call to model {self._model!r}"
        started = time.perf_counter()
        try:
            response = self._client.chat.completions.create(**kwargs)
        except (_openai.OpenAIError, ValueError) as err:
            translated = _translate_error(err, where, self._client)
            if translated is None:
                raise
            raise translated from err
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
        usage = Usage.reported_or_estimated(
            getattr(raw_usage, "prompt_tokens", None),
            getattr(raw_usage, "completion_tokens", None),
            messages,
            text,
        )
        model = getattr(response, "model", None)
        return Completion(
            text=text,
            usage=usage,
            model=model if isinstance(model, str) and model else self._model,
            latency_s=latency,
            finish_reason=finish,
        )
