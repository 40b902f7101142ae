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
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import httpx

from argos.llm.interface import (
    BaseChatModel,
    CallOptions,
    Completion,
    LLMBadResponse,
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

__all__ = ["OpenAIChatModel"]


def _status_detail(err: Any) -> str:
    """A short, key-free description of an openai APIStatusError."""
    status = getattr(err, "status_code", "?")
    message = str(getattr(err, "message", "") or err)
    if len(message) > 300:
        message = message[:300] + "..."
    return f"HTTP {status}: {message}"


class OpenAIChatModel(BaseChatModel):
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
