"""LLM configuration: precedence of file, environment and flags; secrets; building the client."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from openai_mock import MESSAGES, Recorder, completion_body

from argos.llm.config import (
    LLMConfig,
    LLMConfigError,
    build_chat_model,
    is_llm_configured,
    load_llm_config,
)
from argos.llm.usage import (
    Price,
)


def test_config_defaults_and_not_configured(tmp_path: Path) -> None:
    config = load_llm_config(env={}, cwd=tmp_path)
    assert config == LLMConfig()
    assert config.provider == "openai" and config.max_retries == 2
    assert not is_llm_configured(config)
    with pytest.raises(LLMConfigError, match="no LLM model configured"):
        build_chat_model(config)


def test_config_precedence_file_env_flags(tmp_path: Path) -> None:
    (tmp_path / "argos.toml").write_text(
        """
[llm]
model = "file-model"
base_url = "http://file:1/v1"
timeout_s = 30
max_retries = 5
[llm.prices."file-model"]
input_per_m = 1.0
output_per_m = 2.0
"""
    )
    config = load_llm_config(env={}, cwd=tmp_path)
    assert (config.model, config.base_url, config.timeout_s, config.max_retries) == (
        "file-model",
        "http://file:1/v1",
        30,
        5,
    )
    assert config.price_table()["file-model"] == Price(input_per_m=1.0, output_per_m=2.0)
    assert "gpt-4o" in config.price_table()
    env = {
        "OPENAI_BASE_URL": "http://openai-env/v1",
        "ARGOS_LLM_MODEL": "env-model",
        "OPENAI_API_KEY": "k1",
    }
    config = load_llm_config(env=env, cwd=tmp_path)
    assert (config.model, config.base_url, config.max_retries) == (
        "env-model",
        "http://openai-env/v1",
        5,
    )
    env["ARGOS_LLM_BASE_URL"] = "http://argos-env/v1"
    env["ARGOS_LLM_API_KEY"] = "k2"
    config = load_llm_config(env=env, cwd=tmp_path)
    assert config.base_url == "http://argos-env/v1"
    assert config.api_key is not None and config.api_key.get_secret_value() == "k2"
    config = load_llm_config(
        env=env, cwd=tmp_path, overrides={"model": "flag-model", "base_url": None}
    )
    assert config.model == "flag-model" and config.base_url == "http://argos-env/v1"
    assert is_llm_configured(config)


def test_explicit_config_path_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "custom.toml"
    path.write_text('[llm]\nmodel = "m"\nmax_retries = -1\n')
    with pytest.raises(LLMConfigError, match=r"custom.toml.*max_retries"):
        load_llm_config(path, env={})
    with pytest.raises(LLMConfigError, match="does not exist"):
        load_llm_config(tmp_path / "missing.toml", env={})
    path.write_text("[llm\n")
    with pytest.raises(LLMConfigError, match="not valid TOML"):
        load_llm_config(path, env={})
    path.write_text('[llm]\nmodle = "typo"\n')
    with pytest.raises(LLMConfigError, match="modle"):
        load_llm_config(path, env={})


def test_api_key_never_appears_in_repr_or_public_dict() -> None:
    config = load_llm_config(
        env={"OPENAI_API_KEY": "sk-very-secret", "ARGOS_LLM_MODEL": "gpt-4o"}, cwd="/"
    )
    assert "sk-very-secret" not in repr(config)
    assert "sk-very-secret" not in str(config)
    public = config.public_dict()
    assert "sk-very-secret" not in json.dumps(public)
    assert public["api_key_set"] is True and public["model"] == "gpt-4o"


def test_azure_config_builds_azure_client_from_env(tmp_path: Path) -> None:
    env = {
        "ARGOS_LLM_PROVIDER": "azure",
        "ARGOS_LLM_MODEL": "dep-1",
        "AZURE_OPENAI_ENDPOINT": "https://x.openai.azure.com",
        "AZURE_OPENAI_API_KEY": "az-key",
        "OPENAI_API_KEY": "not-this-one",
        "OPENAI_API_VERSION": "2024-10-21",
    }
    config = load_llm_config(env=env, cwd=tmp_path)
    assert config.provider == "azure" and is_llm_configured(config)
    assert config.api_key is not None and config.api_key.get_secret_value() == "az-key"
    rec = Recorder([httpx.Response(200, json=completion_body("az"))])
    model = build_chat_model(config, http_client=httpx.Client(transport=httpx.MockTransport(rec)))
    assert model.complete(MESSAGES, agent="generator").text == "az"
    assert rec.requests[0].url.path == "/openai/deployments/dep-1/chat/completions"
    del env["OPENAI_API_VERSION"]
    with pytest.raises(LLMConfigError, match="API version"):
        build_chat_model(load_llm_config(env=env, cwd=tmp_path))


def test_local_server_config_needs_no_key(tmp_path: Path) -> None:
    config = load_llm_config(
        env={}, cwd=tmp_path, overrides={"model": "smollm2", "base_url": "http://127.0.0.1:9/v1"}
    )
    assert is_llm_configured(config)
    rec = Recorder([httpx.Response(200, json=completion_body("local"))])
    model = build_chat_model(config, http_client=httpx.Client(transport=httpx.MockTransport(rec)))
    assert model.complete(MESSAGES, agent="generator").text == "local"
    assert rec.body()["max_tokens"] == config.max_output_tokens
    with pytest.raises(LLMConfigError, match="no API key for OpenAI"):
        build_chat_model(LLMConfig(model="gpt-4o"))


def test_empty_values_count_as_unset(tmp_path: Path) -> None:
    env = {"ARGOS_LLM_MODEL": "", "OPENAI_API_KEY": "", "ARGOS_LLM_BASE_URL": ""}
    assert load_llm_config(env=env, cwd=tmp_path) == LLMConfig()
    assert LLMConfig(model="", base_url="", api_key="").model is None  # type: ignore[arg-type]
    assert LLMConfig(model="", api_key="").api_key is None  # type: ignore[arg-type]
    with pytest.raises(LLMConfigError, match="temperature"):
        load_llm_config(env={}, cwd=tmp_path, overrides={"temperature": 3.0})
