"""A tiny OpenAI-compatible HTTP server for tests of the real client path across processes.

It answers ``POST /v1/chat/completions`` with a reply chosen by a function of the prompt (so the
same prompt always gets the same answer, whatever the order of calls), reports token usage, and
counts the requests it ANSWERED (what a hosted endpoint would bill). ``on_request`` runs before
answering with the 1-based request number: a crash test uses it to kill the client mid-run, at a
deterministic point, while the call is still unanswered (so it is never billed).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Chooser = Callable[[str, str], str]
"""(agent guess, prompt) -> reply text."""


class FakeOpenAI:
    def __init__(self, choose: Chooser, on_request: Callable[[int], bool] | None = None) -> None:
        self.choose = choose
        self.on_request = on_request
        self.received = 0
        self.answered = 0
        self.prompts: list[str] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:
                body = json.dumps({"object": "list", "data": [{"id": "fake", "object": "model"}]})
                self._send(200, body)

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                payload = json.loads(self.rfile.read(length))
                prompt = "\n\n".join(m["content"] for m in payload["messages"])
                with outer._lock:
                    outer.received += 1
                    number = outer.received
                if outer.on_request is not None and not outer.on_request(number):
                    # The client is being killed: never answer this request.
                    self.close_connection = True
                    return
                system = payload["messages"][0]["content"] if payload["messages"] else ""
                agent = (
                    "repairer"
                    if "You repair" in system
                    else "reviewer"
                    if "You review" in system
                    else "generator"
                )
                text = outer.choose(agent, prompt)
                body = json.dumps(
                    {
                        "id": "chatcmpl-" + hashlib.sha256(prompt.encode()).hexdigest()[:12],
                        "object": "chat.completion",
                        "created": 0,
                        "model": payload.get("model", "fake"),
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": text},
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": {
                            "prompt_tokens": len(prompt) // 4,
                            "completion_tokens": len(text) // 4,
                            "total_tokens": len(prompt) // 4 + len(text) // 4,
                        },
                    }
                )
                with outer._lock:
                    outer.answered += 1
                    outer.prompts.append(prompt)
                self._send(200, body)

            def _send(self, code: int, body: str) -> None:
                data = body.encode()
                self.send_response(code)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def __enter__(self) -> FakeOpenAI:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
