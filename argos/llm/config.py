"""LLM configuration: where it comes from, and building a :class:`~argos.llm.interface.ChatModel`
from it.

Precedence, lowest to highest:

1. defaults (:class:`LLMConfig` field defaults);
2. the ``[llm]`` table of a TOML file (``argos.toml`` in the working directory, or ``--config``);
3. environment variables (see :data:`ENV_VARS`); ``ARGOS_LLM_*`` beat the generic ``OPENAI_*``;
4. explicit overrides (CLI flags), given as a mapping of field names; None values are ignored.

The API key is a ``SecretStr``: it is masked in ``repr``, logs and :meth:`LLMConfig.public_dict`
(what artifacts and run summaries may store).

Example ``argos.toml``::

    [llm]
    provider = "openai"
    model = "gpt-4.1-mini"
    base_url = "http://localhost:8000/v1"   # vLLM, Ollama, llama.cpp, LM Studio...
    timeout_s = 120
    max_retries = 2
    max_input_tokens = 16000

    [llm.prices."my-local-model"]
    input_per_m = 0.0
    output_per_m = 0.0
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from argos.llm.interface import LLMError
from argos.llm.openai import ClientOptions, OpenAIChatModel
from argos.llm.usage import DEFAULT_PRICES, Price

__all__ = [
    "CONFIG_FILE_NAME",
    "ENV_VARS",
    "LLMConfig",
    "LLMConfigError",
    "build_chat_model",
    "is_llm_configured",
    "load_llm_config",
]

CONFIG_FILE_NAME = "argos.toml"

ENV_VARS: Mapping[str, str] = {
    "ARGOS_LLM_PROVIDER": "provider (openai | azure)",
    "ARGOS_LLM_MODEL": "model name (Azure: deployment name)",
    "ARGOS_LLM_BASE_URL": "base URL of an OpenAI-compatible endpoint (beats OPENAI_BASE_URL)",
    "ARGOS_LLM_API_KEY": "API key (beats OPENAI_API_KEY / AZURE_OPENAI_API_KEY)",
    "OPENAI_BASE_URL": "base URL (the openai client's own variable)",
    "OPENAI_API_KEY": "API key for provider openai",
    "AZURE_OPENAI_ENDPOINT": "Azure resource endpoint, e.g. https://NAME.openai.azure.com",
    "AZURE_OPENAI_API_KEY": "API key for provider azure",
    "OPENAI_API_VERSION": "Azure API version, e.g. 2024-10-21",
}
"""Environment variables read by :func:`load_llm_config` and what they set."""


class LLMConfigError(LLMError, ValueError):
    """The LLM configuration is invalid or incomplete; the message names the source and field."""


class LLMConfig(BaseModel):
    """Everything needed to reach a model and to account for it.

    Attributes:
        provider: ``openai`` (OpenAI and every OpenAI-compatible server) or ``azure``.
        model: model name; for Azure the deployment name. None = not configured.
        base_url: endpoint URL (``.../v1``); None = the client's default (api.openai.com).
        api_key: secret key; local servers accept any non-empty string.
        azure_endpoint: Azure resource endpoint (provider ``azure``).
        api_version: Azure API version (provider ``azure``).
        timeout_s: per-attempt request timeout in seconds.
        max_retries: retries of transient failures inside the ``openai`` client (the only layer
            that retries).
        temperature: sampling temperature default (None = the endpoint's default).
        max_output_tokens: completion token limit per call.
        max_input_tokens: per-call prompt cap, checked before sending (None = no cap).
        prices: price table entries added to / overriding
        :data:`argos.llm.interface.DEFAULT_PRICES`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    provider: Literal["openai", "azure"] = "openai"
    model: str | None = None
    base_url: str | None = None
    api_key: SecretStr | None = None
    azure_endpoint: str | None = None
    api_version: str | None = None
    timeout_s: float = Field(default=120.0, gt=0)
    max_retries: int = Field(default=2, ge=0, le=10)
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_output_tokens: int | None = Field(default=2048, gt=0)
    max_input_tokens: int | None = Field(default=16000, gt=0)
    prices: dict[str, Price] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _empty_strings_are_unset(self) -> LLMConfig:
        for name in ("model", "base_url", "azure_endpoint", "api_version"):
            if getattr(self, name) == "":
                object.__setattr__(self, name, None)
        if self.api_key is not None and not self.api_key.get_secret_value():
            object.__setattr__(self, "api_key", None)
        return self

    def price_table(self) -> dict[str, Price]:
        """The default prices with this config's entries on top."""
        table = dict(DEFAULT_PRICES)
        table.update(self.prices)
        return table

    def public_dict(self) -> dict[str, Any]:
        """A JSON-ready dict for artifacts and run summaries: everything except the API key,
        which is replaced by whether one is set."""
        data = self.model_dump(mode="json", exclude={"api_key"})
        data["api_key_set"] = self.api_key is not None
        return data


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            document = tomllib.load(fh)
    except OSError as err:
        raise LLMConfigError(f"cannot read config file {path}: {err}") from err
    except tomllib.TOMLDecodeError as err:
        raise LLMConfigError(f"config file {path} is not valid TOML: {err}") from err
    table = document.get("llm", {})
    if not isinstance(table, dict):
        raise LLMConfigError(f"{path}: [llm] must be a table, got {type(table).__name__}")
    return dict(table)


def _env_layer(env: Mapping[str, str], provider: str) -> dict[str, Any]:
    def get(name: str) -> str | None:
        value = env.get(name)
        return value if value else None

    layer: dict[str, Any] = {}
    if (value := get("ARGOS_LLM_PROVIDER")) is not None:
        layer["provider"] = value.strip().lower()
    if (value := get("ARGOS_LLM_MODEL")) is not None:
        layer["model"] = value
    base_url = get("ARGOS_LLM_BASE_URL") or get("OPENAI_BASE_URL")
    if base_url is not None:
        layer["base_url"] = base_url
    vendor_key = "AZURE_OPENAI_API_KEY" if provider == "azure" else "OPENAI_API_KEY"
    api_key = get("ARGOS_LLM_API_KEY") or get(vendor_key)
    if api_key is not None:
        layer["api_key"] = api_key
    if (value := get("AZURE_OPENAI_ENDPOINT")) is not None:
        layer["azure_endpoint"] = value
    if (value := get("OPENAI_API_VERSION")) is not None:
        layer["api_version"] = value
    return layer


def load_llm_config(
    config_path: str | Path | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
) -> LLMConfig:
    """Merge defaults < TOML ``[llm]`` < environment < ``overrides`` into an :class:`LLMConfig`.

    ``config_path``: an explicit file (must exist); otherwise ``argos.toml`` in ``cwd`` (default:
    the working directory) is read when present. ``env`` defaults to ``os.environ``. ``overrides``
    keys are :class:`LLMConfig` field names; None values mean "not given". ``prices`` merge
    per model across layers. Raises :class:`LLMConfigError` with the offending source.
    """
    env = os.environ if env is None else env
    file_layer: dict[str, Any] = {}
    source = "defaults"
    if config_path is not None:
        path = Path(config_path)
        if not path.is_file():
            raise LLMConfigError(f"config file {path} does not exist")
        file_layer = _read_toml(path)
        source = str(path)
    else:
        candidate = Path(cwd if cwd is not None else Path.cwd()) / CONFIG_FILE_NAME
        if candidate.is_file():
            file_layer = _read_toml(candidate)
            source = str(candidate)
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    provider = str(
        given.get("provider")
        or env.get("ARGOS_LLM_PROVIDER", "").strip().lower()
        or file_layer.get("provider")
        or "openai"
    )
    env_layer = _env_layer(env, provider)
    merged: dict[str, Any] = {}
    prices: dict[str, Any] = {}
    for layer in (file_layer, env_layer, given):
        for key, value in layer.items():
            if key == "prices":
                if not isinstance(value, Mapping):
                    raise LLMConfigError(f"prices must be a table of model -> price, got {value!r}")
                prices.update(value)
            else:
                merged[key] = value
    if prices:
        merged["prices"] = prices
    try:
        return LLMConfig.model_validate(merged)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors()
        )
        raise LLMConfigError(
            f"invalid LLM configuration (file: {source}, plus environment and flags): {problems}"
        ) from err


def is_llm_configured(config: LLMConfig | None = None) -> bool:
    """True when a model is set and there is somewhere to send it: a base URL, an API key, or (for
    Azure) an endpoint. The trainer uses the builtin generator when this is False."""
    config = load_llm_config() if config is None else config
    if not config.model:
        return False
    if config.provider == "azure":
        return config.azure_endpoint is not None or config.base_url is not None
    return config.base_url is not None or config.api_key is not None


def build_chat_model(
    config: LLMConfig, *, http_client: httpx.Client | None = None
) -> OpenAIChatModel:
    """The :class:`~argos.llm.openai.OpenAIChatModel` described by ``config``.

    Raises :class:`LLMConfigError` when the model (or, for Azure, endpoint/API version) is missing.
    Without an API key, OpenAI-compatible local servers get the placeholder ``sk-no-key`` when a
    ``base_url`` is set (they ignore it); against the default OpenAI URL a key is required.
    """
    if not config.model:
        raise LLMConfigError(
            "no LLM model configured: set ARGOS_LLM_MODEL, [llm] model in argos.toml, or --model"
        )
    key = config.api_key.get_secret_value() if config.api_key is not None else None

    def client_options(api_key: str) -> ClientOptions:
        return ClientOptions(
            api_key=api_key,
            timeout_s=config.timeout_s,
            max_retries=config.max_retries,
            http_client=http_client,
            temperature=config.temperature,
            max_tokens=config.max_output_tokens,
        )

    if config.provider == "azure":
        if not config.azure_endpoint and not config.base_url:
            raise LLMConfigError(
                "provider azure needs an endpoint: set AZURE_OPENAI_ENDPOINT or [llm] "
                "azure_endpoint"
            )
        if not config.api_version:
            raise LLMConfigError(
                "provider azure needs an API version: set OPENAI_API_VERSION or [llm] api_version"
            )
        if key is None:
            raise LLMConfigError(
                "provider azure needs an API key: set AZURE_OPENAI_API_KEY or ARGOS_LLM_API_KEY"
            )
        return OpenAIChatModel.azure(
            deployment=config.model,
            azure_endpoint=config.azure_endpoint or str(config.base_url),
            api_version=config.api_version,
            **client_options(key),
        )
    if key is None:
        if config.base_url is None:
            raise LLMConfigError(
                "no API key for OpenAI: set OPENAI_API_KEY (or ARGOS_LLM_API_KEY), or point "
                "base_url at a local OpenAI-compatible server"
            )
        key = "sk-no-key"
    return OpenAIChatModel(
        model=config.model,
        base_url=config.base_url,
        **client_options(key),
    )
