"""The response cache: repeated requests are served from SQLite, across restarts; errors are
never stored."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx
import pytest
from openai_mock import MESSAGES, Recorder, adapter, completion_body

from argos.llm.cache import CachingChatModel
from argos.llm.interface import (
    LLMTimeout,
    Usage,
)
from argos.llm.testing import (
    ScriptedChatModel,
)


def test_cache_serves_repeat_requests_without_calling_again(tmp_path: Path) -> None:
    rec = Recorder([httpx.Response(200, json=completion_body("paid once", 100, 10))])
    db = tmp_path / "cache.sqlite"
    model = CachingChatModel(adapter(rec), db)
    first = model.complete(MESSAGES, agent="generator", seed=1)
    second = model.complete(MESSAGES, agent="generator", seed=1)
    assert len(rec.requests) == 1
    assert not first.cached and second.cached
    assert second.text == "paid once" and second.usage == Usage(100, 10)
    assert (model.hits, model.misses) == (1, 1)
    # a different seed is a different request (n candidates from one prompt)
    model.complete(MESSAGES, agent="generator", seed=2)
    assert len(rec.requests) == 2


def test_cache_survives_a_restart_and_never_stores_errors(tmp_path: Path) -> None:
    db = tmp_path / "run" / "cache.sqlite"
    script = ScriptedChatModel([LLMTimeout("down"), "fresh reply"])
    model = CachingChatModel(script, db, namespace="run-1")
    with pytest.raises(LLMTimeout):
        model.complete(MESSAGES, agent="generator")
    assert model.complete(MESSAGES, agent="generator").text == "fresh reply"
    model.store.close()
    # "resumed process": a new store on the same file, and a double with NO replies left
    resumed = CachingChatModel(ScriptedChatModel([]), db, namespace="run-1")
    assert resumed.complete(MESSAGES, agent="generator").text == "fresh reply"
    assert len(resumed.store) == 1
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT agent, text FROM llm_responses").fetchall() == [
            ("generator", "fresh reply")
        ]
    # another namespace does not share entries
    other = CachingChatModel(ScriptedChatModel(["other run"]), db, namespace="run-2")
    assert other.complete(MESSAGES, agent="generator").text == "other run"
