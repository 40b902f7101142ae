"""The test doubles: the strict scripted model, and recording then replaying a JSONL file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from openai_mock import MESSAGES

from argos.llm.interface import (
    LLMTimeout,
    Message,
    Usage,
    estimate_tokens,
    prompt_sha256,
)
from argos.llm.testing import (
    RecordingChatModel,
    ReplayChatModel,
    ReplayMiss,
    ScriptedChatModel,
    ScriptError,
    ScriptStep,
)


def test_scripted_model_replies_in_order_and_records_calls() -> None:
    with ScriptedChatModel(
        [
            ScriptStep(reply="first", agent="generator", expect="Here is the data"),
            ScriptStep(reply="second", agent="repairer", expect=lambda p: "rules" in p),
        ]
    ) as model:
        a = model.complete(MESSAGES, agent="generator", seed=3)
        b = model.complete(MESSAGES, agent="repairer")
    assert (a.text, b.text) == ("first", "second")
    assert a.usage.prompt_tokens == estimate_tokens(MESSAGES) > 0
    assert [c.agent for c in model.calls] == ["generator", "repairer"]
    assert model.calls[0].seed == 3
    assert "Here is the data" in model.calls[0].prompt
    assert model.remaining == 0


def test_scripted_model_fails_on_unexpected_call() -> None:
    model = ScriptedChatModel(["only one"])
    model.complete(MESSAGES, agent="generator")
    with pytest.raises(ScriptError, match="unexpected LLM call #2 from agent 'reviewer'"):
        model.complete(MESSAGES, agent="reviewer")


def test_scripted_model_fails_when_replies_remain() -> None:
    model = ScriptedChatModel(["a", "b"])
    model.complete(MESSAGES, agent="generator")
    with pytest.raises(ScriptError, match=r"1 scripted LLM step\(s\) never consumed"):
        model.assert_consumed()
    with pytest.raises(ScriptError, match="never consumed"), ScriptedChatModel(["unused"]):
        pass


def test_scripted_model_checks_agent_and_prompt_and_remembers_violations() -> None:
    model = ScriptedChatModel([ScriptStep(reply="x", agent="repairer")])
    with pytest.raises(ScriptError, match="expected agent 'repairer', got 'generator'"):
        model.complete(MESSAGES, agent="generator")
    # Even if the code under test swallowed that error, the end-of-test check still fails.
    with pytest.raises(ScriptError, match="script was violated"):
        model.assert_consumed()
    model = ScriptedChatModel([ScriptStep(reply="x", expect="traceback")])
    with pytest.raises(ScriptError, match="does not contain 'traceback'"):
        model.complete(MESSAGES, agent="repairer")


def test_scripted_model_raises_scripted_errors_and_scripted_usage() -> None:
    model = ScriptedChatModel(
        [
            LLMTimeout("simulated"),
            ScriptStep(reply="y", usage=Usage(1000, 50), finish_reason="length"),
        ]
    )
    with pytest.raises(LLMTimeout, match="simulated"):
        model.complete(MESSAGES, agent="generator")
    out = model.complete(MESSAGES, agent="generator")
    assert out.usage == Usage(1000, 50) and out.truncated
    model.assert_consumed()
    with pytest.raises(ValueError, match="exactly one"):
        ScriptStep()


def test_scripted_context_manager_does_not_mask_the_real_error() -> None:
    with pytest.raises(KeyError), ScriptedChatModel(["never used"]):
        raise KeyError("original")


def test_recording_then_replay_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "replay.jsonl"
    recorder = RecordingChatModel(
        ScriptedChatModel([ScriptStep(reply="rule v1", usage=Usage(10, 5)), "rule v2"]), path
    )
    recorder.complete(MESSAGES, agent="generator")
    recorder.complete([Message.user("fix it")], agent="repairer")
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[0]["prompt_sha256"] == prompt_sha256(MESSAGES)
    replay = ReplayChatModel(path)
    out = replay.complete(MESSAGES, agent="generator")
    assert out.text == "rule v1" and out.usage == Usage(10, 5)
    assert replay.complete([Message.user("fix it")], agent="repairer").text == "rule v2"
    with pytest.raises(ReplayMiss, match="no recorded response for agent 'repairer'"):
        replay.complete(MESSAGES, agent="repairer")
    with pytest.raises(ReplayMiss, match=prompt_sha256([Message.user("changed")])):
        replay.complete([Message.user("changed")], agent="generator")


def test_replay_file_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(
        '{"agent": "generator", "prompt_sha256": "ab", "response": "x"}\n{"agent": 1}\n'
    )
    with pytest.raises(ValueError, match="line 2"):
        ReplayChatModel(path)
