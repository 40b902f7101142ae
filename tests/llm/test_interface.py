"""The port itself: the error hierarchy and token estimation."""

from __future__ import annotations

from openai_mock import MESSAGES

from argos.llm.interface import (
    LLMBadResponse,
    LLMBudgetExceeded,
    LLMError,
    LLMRateLimited,
    LLMTimeout,
    LLMUnavailable,
    PromptTooLarge,
    estimate_tokens,
)
from argos.llm.testing import (
    ScriptError,
)


def test_errors_form_one_hierarchy() -> None:
    for cls in (
        LLMTimeout,
        LLMRateLimited,
        LLMUnavailable,
        LLMBadResponse,
        LLMBudgetExceeded,
        PromptTooLarge,
    ):
        assert issubclass(cls, LLMError)
    assert not issubclass(ScriptError, LLMError)
    assert LLMTimeout.transient and not LLMBadResponse.transient


def test_estimate_tokens_is_about_chars_over_four() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("abcd" * 100) in range(25, 101)  # tiktoken or chars/4
    assert estimate_tokens(MESSAGES) > estimate_tokens(MESSAGES[1].content)


def test_call_options_pass_on_as_complete_keyword_arguments() -> None:
    from argos.llm.interface import CallOptions

    assert CallOptions(max_tokens=5, seed=3, json=True).as_kwargs() == {
        "max_tokens": 5,
        "temperature": None,
        "seed": 3,
        "json": True,
    }
