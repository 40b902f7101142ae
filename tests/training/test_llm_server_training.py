"""Integration: a short real ``argos train --llm`` run over HTTP against llama.cpp's server.

The bundled SmolLM2-135M model is far too small to write good rules, so nothing here asserts rule
quality or text: only that the whole pipeline runs as a user would run it (a real server process,
the real ``openai`` client, the agents, the sandbox, checkpoints, run artifacts and token counts).
Skipped with the reason shown when the server is not installed, unless ``ARGOS_TEST_LLM=1``
(``.ci/run`` sets it), where a missing server fails the test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from argos.llm.local import LocalLLMServer, bundled_model_path, llama_server_installed
from argos.rules.artifacts import load_ruleset

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def server() -> Iterator[LocalLLMServer]:
    if not (llama_server_installed() and bundled_model_path() is not None):
        reason = "local LLM server not installed: run `make install-llm-server`"
        if os.environ.get("ARGOS_TEST_LLM") == "1":
            pytest.fail("ARGOS_TEST_LLM=1 but " + reason)
        pytest.skip(reason)
    with LocalLLMServer(ready_timeout_s=120) as running:
        yield running


def test_short_real_training_over_http(server: LocalLLMServer, tmp_path: Path) -> None:
    config = tmp_path / "argos.toml"
    config.write_text("[llm]\nmax_output_tokens = 400\ntimeout_s = 300\nmax_retries = 0\n")
    run = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "ARGOS_LLM"))}
    env["OPENAI_API_KEY"] = "sk-local"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "argos.cli",
            "train",
            "--dataset",
            "demo",
            "--series",
            "error_rate",
            "--llm",
            "openai",
            "--model",
            server.alias,
            "--base-url",
            server.base_url,
            "--llm-config",
            str(config),
            "--iterations",
            "1",
            "--candidates",
            "2",
            "--max-repairs",
            "1",
            "--chunk-size",
            "300",
            "--out",
            str(run),
            "--json",
            "--no-incumbent",  # the builtin set is perfect on this series: no call would be made
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=800,
    )
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    usage = summary["usage"]["total"]
    assert usage["calls"] >= 2 and usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    assert set(summary["usage"]["agents"]) >= {"generator"}
    for name in (
        "run.json",
        "summary.json",
        "usage.json",
        "checkpoints.sqlite",
        "llm-cache.sqlite",
    ):
        assert (run / name).is_file(), name
    unit = summary["units"][0]
    assert unit["tried"] == 2
    if unit["rules"]:  # the tiny model may or may not produce a rule that survives the gates
        rs = load_ruleset(unit["path"])
        assert rs.manifest.generator is not None and rs.manifest.generator.model == server.alias
