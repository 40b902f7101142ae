"""An ``httpx.MockTransport`` speaking the OpenAI chat API, for tests of the ``openai`` adapter and
of configurations that build it: canned chat-completion bodies, a handler replaying responses in
order, and an adapter wired to it. No network."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx

from argos.llm.interface import Message
from argos.llm.openai import OpenAIChatModel

MESSAGES = [Message.system("You write anomaly rules."), Message.user("Here is the data: 1 2 3")]
FAST = {"retry-after-ms": "1"}


def completion_body(
    text: str = "```python\nx = 1\n```", prompt: int = 120, out: int = 30
) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": prompt, "completion_tokens": out, "total_tokens": prompt + out},
    }


class Recorder:
    """A mock transport handler replaying a list of responses (or exceptions) in order."""

    def __init__(self, responses: list[httpx.Response | Exception | Callable[[], httpx.Response]]):
        self.responses = responses
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        index = min(len(self.requests), len(self.responses)) - 1
        item = self.responses[index]
        if isinstance(item, Exception):
            raise item
        if callable(item):
            return item()
        return item

    def body(self, n: int = -1) -> dict[str, Any]:
        return dict(json.loads(self.requests[n].content))


def adapter(recorder: Recorder, *, max_retries: int = 2, **kwargs: Any) -> OpenAIChatModel:
    client = httpx.Client(transport=httpx.MockTransport(recorder))
    return OpenAIChatModel(
        model="gpt-4o-mini",
        base_url="http://llm.test/v1",
        api_key="sk-test-secret",
        max_retries=max_retries,
        http_client=client,
        **kwargs,
    )
