"""The response cache: completed calls stored in SQLite, keyed by a request hash, so a resumed
training run never pays twice for a call that already completed (idempotency for resumed runs).

:class:`ResponseStore` is the table; :class:`CachingChatModel` wraps a
:class:`~argos.llm.interface.ChatModel` and serves repeated requests from it. It declares
:class:`~argos.llm.interface.CachedLookup` (its :meth:`CachingChatModel.lookup`), which is how
the metering wrapper of :mod:`argos.llm.usage` tells a cached request from one it must charge.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from argos.llm.interface import (
    CallOptions,
    ChatModel,
    Completion,
    ContextManaged,
    Message,
    Usage,
    WrappingChatModel,
    request_key,
)

__all__ = ["CachingChatModel", "ResponseStore"]


class ResponseStore(ContextManaged):
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

    def _leave(self, *, failed: bool) -> None:
        self.close()


class CachingChatModel(WrappingChatModel):
    """Serves repeated requests from a :class:`ResponseStore`; only completed calls are stored
    (errors never). The key covers ``namespace`` (e.g. a run id), the model, the messages and all
    parameters, but not the agent name. Give each of n candidates its own ``seed``."""

    def __init__(
        self, inner: ChatModel, store: ResponseStore | str | Path, *, namespace: str = ""
    ) -> None:
        super().__init__(inner)
        self.store = store if isinstance(store, ResponseStore) else ResponseStore(store)
        self.namespace = namespace
        self.hits = 0
        self.misses = 0

    def _key(self, messages: Sequence[Message], options: CallOptions) -> str:
        return request_key(self._inner.model, messages, options, namespace=self.namespace)

    def lookup(self, messages: Sequence[Message], options: CallOptions) -> Completion | None:
        """The stored completion for this request, without calling the model."""
        return self.store.get(self._key(messages, options))

    def _complete(
        self, messages: Sequence[Message], agent: str, options: CallOptions
    ) -> Completion:
        """Return the stored reply for this request, or call ``inner`` and store its reply."""
        key = self._key(messages, options)
        hit = self.store.get(key)
        if hit is not None:
            self.hits += 1
            return hit
        self.misses += 1
        completion = self.forward(messages, agent, options)
        self.store.put(key, agent, completion)
        return completion
