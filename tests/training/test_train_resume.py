"""Crash test: kill ``argos train --llm`` mid-run (several times) and resume it to the same result.

The trainer runs as a real process and talks to an OpenAI-compatible HTTP server through the real
``openai`` client. The server answers by a function of the prompt (so answers do not depend on call
order), counts the calls it answered (what an endpoint bills), and SIGKILLs the trainer when a
chosen request arrives, before answering it. After every kill ``argos train --resume`` continues
the run. The final rule set must equal an uninterrupted run's, and no answered call may be paid
twice.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from fake_openai import FakeOpenAI
from scripted_rules import GOOD, QUIET, RUNTIME_ERROR, fenced

pytestmark = [pytest.mark.timeout(900), pytest.mark.slow]

ARGOS = [sys.executable, "-m", "argos.cli"]


def choose(agent: str, prompt: str) -> str:
    """Deterministic replies: the generator alternates good, broken and useless rules by prompt
    hash; the repairer always fixes; the reviewer always reverts."""
    if agent == "repairer":
        return fenced(GOOD, "Fixed the undefined call.")
    if agent == "reviewer":
        return "The change loses anomalies.\nREVERT"
    pick = int(hashlib.sha256(prompt.encode()).hexdigest(), 16) % 3
    return fenced([GOOD, RUNTIME_ERROR, QUIET][pick])


def train_cmd(base_url: str, out: Path) -> list[str]:
    return [
        *ARGOS,
        "train",
        "--dataset",
        "demo",
        "--series",
        "cpu_util",
        "--no-incumbent",  # drive the LLM from an empty set: the builtin one is perfect here
        "--llm",
        "openai",
        "--model",
        "fake-model",
        "--base-url",
        base_url,
        "--iterations",
        "3",
        "--candidates",
        "2",
        "--chunk-size",
        "600",
        "--out",
        str(out),
        "--json",
    ]


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["OPENAI_API_KEY"] = "sk-test"
    for k in ("ARGOS_LLM_MODEL", "ARGOS_LLM_BASE_URL", "OPENAI_BASE_URL"):
        e.pop(k, None)
    return e


def ruleset_state(run: Path) -> dict[str, str]:
    manifest = json.loads((run / "cpu_util" / "manifest.json").read_text())
    return {
        r["id"]: r["sha256"] + json.dumps(r["params"], sort_keys=True) for r in manifest["rules"]
    }


def test_killed_training_resumes_to_the_same_rule_set(tmp_path: Path) -> None:
    # Reference: one uninterrupted run.
    with FakeOpenAI(choose) as server:
        ref = subprocess.run(
            train_cmd(server.base_url, tmp_path / "ref"),
            env=env(),
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert ref.returncode == 0, ref.stderr[-3000:]
        paid_reference = server.answered
    # cpu_util's validation part defeats GOOD, so the run never converges early: it makes every
    # call of its 3 iterations x 2 candidates (plus repairs), and the kills land mid-run.
    assert paid_reference >= 6
    reference = ruleset_state(tmp_path / "ref")
    usage = json.loads(ref.stdout)["usage"]["total"]
    # Identical requests within a run are served from the response cache, not paid again.
    assert usage["calls"] - usage["cached_calls"] == paid_reference

    # The same run, killed when requests 2, 4 and 5 arrive (counted across all processes).
    kill_at = {2, 4, 5}
    victim: dict[str, subprocess.Popen[str]] = {}

    def on_request(number: int) -> bool:
        if number in kill_at:
            os.kill(victim["proc"].pid, signal.SIGKILL)
            return False
        return True

    run = tmp_path / "crashy"
    kills = 0
    with FakeOpenAI(choose, on_request=on_request) as server:
        cmd = train_cmd(server.base_url, run)
        for _attempt in range(len(kill_at) + 1):
            proc = subprocess.Popen(
                cmd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            victim["proc"] = proc
            out, err = proc.communicate(timeout=600)
            if proc.returncode == -signal.SIGKILL:
                kills += 1
                cmd = [*ARGOS, "train", "--resume", str(run), "--json"]
                continue
            assert proc.returncode == 0, err[-3000:]
            break
        paid_crashy = server.answered
    assert kills == len(kill_at)
    assert ruleset_state(run) == reference
    assert paid_crashy == paid_reference  # no completed call was paid twice
    final = json.loads(out)
    assert final["usage"]["total"]["calls"] == usage["calls"]  # the ledger survived the kills

    # Resuming a finished run changes nothing and calls nothing (export is idempotent).
    manifest_before = (run / "cpu_util" / "manifest.json").read_bytes()
    with FakeOpenAI(choose) as server:
        again = subprocess.run(
            [*ARGOS, "train", "--resume", str(run), "--json"],
            env=env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert again.returncode == 0, again.stderr[-3000:]
        assert server.received == 0
    assert (run / "cpu_util" / "manifest.json").read_bytes() == manifest_before
