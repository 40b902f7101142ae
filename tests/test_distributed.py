"""Training and evaluation on a local Dask cluster equal the local executor; a killed worker's unit
is retried with the same artifacts; LLM concurrency and budget are shared by all workers."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cloudpickle  # type: ignore[import-untyped]
import pytest

pytest.importorskip("distributed")

from argos._types import ProgressFn
from argos.data.demo import make_demo_dataset
from argos.data.series import Series
from argos.distributed import DaskExecutor, SchedulerError, SharedLimitsChatModel, parse_scheduler
from argos.evaluation.harness import evaluate
from argos.llm.interface import Completion, LLMBudgetExceeded, Message, Usage, estimate_tokens
from argos.llm.usage import Budget
from argos.training.builtin.config import SearchConfig
from argos.training.builtin.method import BuiltinGenerator
from argos.training.driver import train_dataset
from argos.training.generator import GeneratorOutput

# Helpers defined here travel to the workers by value (the workers cannot import this module).
cloudpickle.register_pickle_by_value(sys.modules[__name__])

GEN = BuiltinGenerator(SearchConfig(trials=40, seed=0))


@pytest.fixture(scope="module")
def cluster() -> Iterator[DaskExecutor]:
    with DaskExecutor.connect("local:2") as ex:
        yield ex


def _tree(folder: Path) -> dict[str, Any]:
    """Every file of a training output, with the fields that legitimately differ removed
    (manifest creation time, wall-clock seconds)."""
    out: dict[str, Any] = {}
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        rel = str(path.relative_to(folder))
        if path.name == "manifest.json":
            data = json.loads(path.read_text())
            data.pop("created", None)
            out[rel] = data
        elif path.name == "summary.json":
            data = json.loads(path.read_text())
            data.pop("seconds")
            data.pop("out_dir")
            for unit in data["units"]:
                unit.pop("seconds")
                unit.pop("path")
            out[rel] = data
        else:
            out[rel] = path.read_bytes()
    return out


def test_parse_scheduler() -> None:
    assert parse_scheduler("local") == ("local", None)
    assert parse_scheduler("local:3") == ("local", 3)
    assert parse_scheduler("tcp://10.0.0.1:8786") == ("tcp://10.0.0.1:8786", None)
    for bad in ("", "local:0", "local:x", "banana", "tcp://host", "host:port"):
        with pytest.raises(SchedulerError):
            parse_scheduler(bad)


@pytest.mark.timeout(20)
def test_unreachable_scheduler_is_a_clear_error() -> None:
    with pytest.raises(SchedulerError, match="cannot reach the Dask scheduler"):
        DaskExecutor.connect("tcp://127.0.0.1:9", timeout_s=1.0)


@pytest.mark.timeout(180)
def test_training_on_dask_equals_local_executor(cluster: DaskExecutor, tmp_path: Path) -> None:
    ds = make_demo_dataset()
    train_dataset(ds, generator=GEN, out_dir=tmp_path / "local", workers=1)
    dask = train_dataset(ds, generator=GEN, out_dir=tmp_path / "dask", executor=cluster)
    assert [u.unit for u in dask.units] == [s.id for s in ds.series]
    assert sum(len(u.rules) for u in dask.units) >= 5
    assert all(u.verified for u in dask.units)
    a, b = _tree(tmp_path / "local"), _tree(tmp_path / "dask")
    assert a.keys() == b.keys()
    assert any(k.endswith(".py") for k in a)
    assert a == b


@pytest.mark.timeout(300)
def test_evaluation_on_dask_equals_local_executor(cluster: DaskExecutor) -> None:
    ds = make_demo_dataset()
    methods = ["robust-zscore", "argos-builtin"]
    seen: list[int] = []
    local = evaluate(ds, methods, workers=1)
    dask = evaluate(ds, methods, executor=cluster, progress=lambda d, t, _: seen.append(d))
    assert seen[-1] == len(ds.series) * len(methods)

    def rows(result: Any) -> list[dict[str, Any]]:
        out = []
        for r in result.rows:
            d = dataclasses.asdict(r)
            d.pop("fit_seconds")
            d.pop("detect_seconds")
            out.append(d)
        return out

    assert len(rows(dask)) == len(ds.series) * len(methods)
    assert rows(dask) == rows(local)

    def summary(result: Any) -> dict[str, Any]:
        out = result.summary()
        for entry in out.values():
            entry.pop("seconds")
        return dict(out)

    assert summary(dask) == summary(local)


@dataclass(frozen=True)
class StallOnce:
    """Wraps the builtin generator; the FIRST attempt at ``unit`` writes its worker's pid to
    ``marker`` and stalls (so the test can kill that worker mid-task); later attempts run."""

    inner: BuiltinGenerator
    unit: str
    marker: str
    name: str = "builtin"
    trusted: bool = True

    def summary_config(self) -> dict[str, Any]:
        return {}  # a wrapper has no search config of its own to record

    def generate(
        self,
        train: Sequence[Series],
        validation: Sequence[Series],
        progress: ProgressFn | None = None,
    ) -> GeneratorOutput:
        if train[0].id == self.unit and not os.path.exists(self.marker):
            Path(self.marker).write_text(str(os.getpid()))
            time.sleep(120)  # killed here
        return self.inner.generate(train, validation, progress)


@pytest.mark.timeout(240)
def test_killed_worker_task_is_retried_with_same_artifacts(tmp_path: Path) -> None:
    ds = make_demo_dataset()
    unit = ds.series[2].id
    marker = tmp_path / "stalled.pid"
    reference = train_dataset(ds, generator=GEN, out_dir=tmp_path / "ref", workers=1)
    killed: list[int] = []

    def killer() -> None:
        deadline = time.monotonic() + 120
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)
        pid = int(marker.read_text())
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    with DaskExecutor.connect("local:2") as ex:
        pids_before = set(ex.client.run(os.getpid).values())
        thread = threading.Thread(target=killer, daemon=True)
        thread.start()
        gen = StallOnce(GEN, unit, str(marker))
        summary = train_dataset(ds, generator=gen, out_dir=tmp_path / "dask", executor=ex)
        thread.join(5)
        assert killed and killed[0] in pids_before  # a real worker process was SIGKILLed
        assert killed[0] not in set(ex.client.run(os.getpid).values())
    assert [u.unit for u in summary.units] == [u.unit for u in reference.units]
    got, want = _tree(tmp_path / "dask"), _tree(tmp_path / "ref")
    # The summary records a BuiltinGenerator's search config; the wrapper has none to record.
    assert got["summary.json"].pop("config") == {}
    want["summary.json"].pop("config")
    assert got == want


@dataclass
class SlowFakeModel:
    """A deterministic fake endpoint: the estimated prompt tokens + 20 completion tokens per call
    (an endpoint never answers more than ``max_tokens``); appends each
    call's (start, end) to ``log`` so the test can measure cluster-wide concurrency."""

    log: str
    model: str = "fake-model"

    def complete(
        self,
        messages: Sequence[Message],
        *,
        agent: str,
        max_tokens: int | None = None,
        temperature: float | None = None,
        seed: int | None = None,
        json: bool = False,
    ) -> Completion:
        start = time.time()
        time.sleep(0.15)
        end = time.time()
        with open(self.log, "a") as f:
            f.write(f"{start} {end}\n")
        return Completion("ok", Usage(estimate_tokens(messages), 20), self.model, end - start)


def _call_many(model: SharedLimitsChatModel, n: int) -> tuple[int, int]:
    ok = refused = 0
    for _ in range(n):
        try:
            model.complete([Message.user("hi")], agent="generator", max_tokens=20)
            ok += 1
        except LLMBudgetExceeded:
            refused += 1
    return ok, refused


def _max_overlap(spans: list[tuple[float, float]]) -> int:
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    cur = best = 0
    for _, d in events:
        cur += d
        best = max(best, cur)
    return best


@pytest.mark.timeout(120)
def test_llm_budget_and_concurrency_are_shared_across_workers(
    cluster: DaskExecutor, tmp_path: Path
) -> None:
    log = tmp_path / "calls.log"
    model = SharedLimitsChatModel(
        f"test-{os.getpid()}-{time.time_ns()}",
        budget=Budget(max_calls=9),
        max_concurrent=1,
        inner=SlowFakeModel(str(log)),
    )
    # 4 tasks x 4 calls on 2 workers: 16 attempts for a budget of 9 calls.
    futs = [cluster.client.submit(_call_many, model, 4, pure=False) for _ in range(4)]
    results = cluster.client.gather(futs)
    assert sum(ok for ok, _ in results) == 9
    assert sum(refused for _, refused in results) == 7
    spans = [
        (float(a), float(b)) for a, b in (line.split() for line in log.read_text().splitlines())
    ]
    assert len(spans) == 9  # refused calls never reached the endpoint
    assert _max_overlap(spans) == 1  # the semaphore held across both worker processes
    state = cluster.client.submit(model.spent, pure=False).result()
    per_call = estimate_tokens([Message.user("hi")]) + 20
    assert (state.spent.calls, state.spent.tokens, state.reserved.calls) == (9, 9 * per_call, 0)


@pytest.mark.timeout(120)
def test_token_budget_refuses_a_call_that_could_overshoot(
    cluster: DaskExecutor, tmp_path: Path
) -> None:
    model = SharedLimitsChatModel(
        f"tok-{os.getpid()}-{time.time_ns()}",
        budget=Budget(max_tokens=100),
        max_concurrent=2,
        inner=SlowFakeModel(str(tmp_path / "calls.log")),
    )
    futs = [cluster.client.submit(_call_many, model, 3, pure=False) for _ in range(2)]
    results = cluster.client.gather(futs)
    spent = cluster.client.submit(model.spent, pure=False).result().spent
    assert spent.tokens <= 100
    assert sum(ok for ok, _ in results) == spent.calls >= 1
    assert sum(r for _, r in results) == 6 - spent.calls


@dataclass(frozen=True)
class AlwaysSameReply:
    """A fake endpoint for the LLM loop: every call gets the same reply (a valid rule)."""

    text: str
    model: str = "fake-model"

    def complete(
        self,
        messages: Sequence[Message],
        *,
        agent: str,
        max_tokens: int | None = None,
        temperature: float | None = None,
        seed: int | None = None,
        json: bool = False,
    ) -> Completion:
        return Completion(self.text, Usage(estimate_tokens(messages), 50), self.model, 0.01)


def _llm_generator(run_dir: Path, max_calls: int | None, client: Any = None) -> Any:
    from scripted_rules import GOOD, fenced

    from argos.llm.config import LLMConfig
    from argos.training.agents.run import AgentGenerator
    from argos.training.agents.state import LoopConfig

    shared = SharedLimitsChatModel(
        f"train-{os.getpid()}-{time.time_ns()}",
        budget=Budget(max_calls=max_calls),
        max_concurrent=1,
        inner=AlwaysSameReply(fenced(GOOD)),
        client=client,
    )
    return AgentGenerator(
        llm=LLMConfig(model="fake-model"),
        run_dir=run_dir,
        loop=LoopConfig(candidates_per_iteration=1, max_iterations=1),
        chat_model=shared,
        fit_budget=6,
        chunk_size=600,
        incumbent=False,  # the builtin set is perfect on demo data: no call would be made
    )


@pytest.mark.timeout(300)
def test_llm_units_on_dask_equal_local_and_share_the_call_budget(
    cluster: DaskExecutor, tmp_path: Path
) -> None:
    ds = make_demo_dataset()
    ids = [s.id for s in ds.series[:3]]
    small = type(ds)(ds.name, [ds.get(i) for i in ids], ds.split)
    local = train_dataset(
        small,
        generator=_llm_generator(tmp_path / "local", None, cluster.client),
        out_dir=tmp_path / "local",
    )
    dask = train_dataset(
        small,
        generator=_llm_generator(tmp_path / "dask", None),
        out_dir=tmp_path / "dask",
        executor=cluster,
    )
    assert [u.rules for u in dask.units] == [u.rules for u in local.units]
    assert all(u.rules for u in dask.units)
    for u in ids:
        rules_a = sorted((tmp_path / "local" / u).glob("*.py"))
        rules_b = sorted((tmp_path / "dask" / u).glob("*.py"))
        assert rules_a and [p.read_bytes() for p in rules_a] == [p.read_bytes() for p in rules_b]
    # One generator call per unit; a run-wide budget of 2 calls across both workers: exactly two
    # units get a rule, the third is refused its call (and says so).
    capped = train_dataset(
        small,
        generator=_llm_generator(tmp_path / "capped", 2),
        out_dir=tmp_path / "capped",
        executor=cluster,
    )
    assert sorted(bool(u.rules) for u in capped.units) == [False, True, True]
    refused = next(u for u in capped.units if not u.rules)
    assert any("budget" in n for n in refused.notes), refused.notes


@pytest.mark.timeout(300)
def test_cli_eval_and_train_with_scheduler(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from argos.cli import app

    runner = CliRunner()
    base = ["eval", "--dataset", "demo", "--methods", "ewma,robust-zscore", "--json"]
    local = runner.invoke(app, [*base, "--workers", "1"])
    dask = runner.invoke(app, [*base, "--scheduler", "local:2"])
    assert local.exit_code == 0 and dask.exit_code == 0, dask.output
    a, b = json.loads(local.stdout), json.loads(dask.stdout)
    for doc in (a, b):
        doc.pop("seconds")
        for entry in doc["methods"].values():
            entry.pop("seconds")
        for part in doc.get("by_partition", {}).values():
            for entry in part["methods"].values():
                entry.pop("seconds")
    assert a == b
    args = ["train", "--dataset", "demo", "--generator", "builtin", "--trials", "10"]
    out = runner.invoke(app, [*args, "--scheduler", "local:x", "--out", str(tmp_path / "t")])
    assert out.exit_code == 2 and "local:N" in out.output
    out = runner.invoke(app, [*args, "--scheduler", "local:2", "--out", str(tmp_path / "t")])
    assert out.exit_code == 0, out.output
    assert len(list((tmp_path / "t").glob("*/manifest.json"))) == len(make_demo_dataset().series)


@dataclass(frozen=True)
class StallOnCall:
    """A fake endpoint that logs every answered call to ``log``; the call that finds ``stall_at``
    calls logged stalls (once, pid written to ``marker``) so the test can kill its worker."""

    text: str
    log: str
    marker: str
    stall_at: int = -1
    model: str = "fake-model"

    def complete(
        self,
        messages: Sequence[Message],
        *,
        agent: str,
        max_tokens: int | None = None,
        temperature: float | None = None,
        seed: int | None = None,
        json: bool = False,
    ) -> Completion:
        done = len(Path(self.log).read_text().splitlines()) if os.path.exists(self.log) else 0
        if done == self.stall_at and not os.path.exists(self.marker):
            Path(self.marker).write_text(str(os.getpid()))
            time.sleep(120)  # killed here, with the call in flight
        with open(self.log, "a") as f:
            f.write(f"{agent}\n")
        return Completion(self.text, Usage(estimate_tokens(messages), 50), self.model, 0.01)


@pytest.mark.timeout(300)
def test_killed_llm_unit_resumes_from_its_checkpoint_without_paying_twice(tmp_path: Path) -> None:
    from scripted_rules import GOOD, fenced

    from argos.llm.config import LLMConfig
    from argos.training.agents.run import AgentGenerator
    from argos.training.agents.state import LoopConfig

    ds = make_demo_dataset()
    one = type(ds)(ds.name, [ds.get("api_latency_ms")], ds.split)  # 3 iterations, 3 calls

    def generator(run: str, model: StallOnCall) -> AgentGenerator:
        shared = SharedLimitsChatModel(
            f"{run}-{os.getpid()}-{time.time_ns()}",
            budget=Budget(),
            max_concurrent=2,  # the killed call's lease stays held until Dask's lease timeout
            inner=model,
        )
        return AgentGenerator(
            llm=LLMConfig(model="fake-model"),
            run_dir=tmp_path / run,
            loop=LoopConfig(candidates_per_iteration=1, max_iterations=3, patience=5),
            chat_model=shared,
            fit_budget=1,  # the written defaults: below F1 1.0, so all 3 iterations run
            chunk_size=600,
            incumbent=False,
        )

    marker = tmp_path / "stalled.pid"
    with DaskExecutor.connect("local:2") as ex:
        ref_log = str(tmp_path / "ref.log")
        train_dataset(
            one,
            generator=generator("ref", StallOnCall(fenced(GOOD), ref_log, str(marker))),
            out_dir=tmp_path / "ref",
            executor=ex,
        )
        calls = len(Path(ref_log).read_text().splitlines())
        assert calls == 3
        killed: list[int] = []

        def killer() -> None:
            deadline = time.monotonic() + 120
            while not marker.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.2)
            pid = int(marker.read_text())
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

        thread = threading.Thread(target=killer, daemon=True)
        thread.start()
        log = str(tmp_path / "run.log")
        model = StallOnCall(fenced(GOOD), log, str(marker), stall_at=calls - 1)
        summary = train_dataset(
            one, generator=generator("run", model), out_dir=tmp_path / "run", executor=ex
        )
        thread.join(5)
    assert killed, "the LLM unit was never interrupted"
    # the calls answered before the kill came from the response cache on the retry: the endpoint
    # answered exactly as many calls as in the uninterrupted run
    assert len(Path(log).read_text().splitlines()) == calls
    assert summary.units[0].rules
    ref_rules = sorted((tmp_path / "ref" / "api_latency_ms").glob("*.py"))
    got_rules = sorted((tmp_path / "run" / "api_latency_ms").glob("*.py"))
    assert [p.name for p in got_rules] == [p.name for p in ref_rules]
    assert [p.read_bytes() for p in got_rules] == [p.read_bytes() for p in ref_rules]


@pytest.mark.timeout(900)
def test_cli_llm_training_on_dask_equals_local_and_accounts_every_call(tmp_path: Path) -> None:
    """``argos train --llm ... --scheduler local:2`` against an OpenAI-compatible HTTP server:
    the same rule sets as a local run, and usage.json counts exactly the calls the endpoint
    answered, although they were made in the Dask workers."""
    import subprocess

    from fake_openai import FakeOpenAI
    from scripted_rules import GOOD, fenced

    def rule_sets(run: Path) -> dict[str, list[str]]:
        return {
            m.parent.name: sorted(r["sha256"] for r in json.loads(m.read_text())["rules"])
            for m in run.glob("*/manifest.json")
        }

    env = dict(os.environ, OPENAI_API_KEY="sk-test")
    for k in ("ARGOS_LLM_MODEL", "ARGOS_LLM_BASE_URL", "OPENAI_BASE_URL"):
        env.pop(k, None)
    args = "--dataset demo --llm openai --model fake-model --iterations 1 --candidates 1 "
    args += "--chunk-size 600 --json --no-incumbent"
    runs: dict[str, tuple[dict[str, Any], int]] = {}
    with FakeOpenAI(lambda agent, prompt: fenced(GOOD)) as server:
        for name, extra in (("local", []), ("dask", ["--scheduler", "local:2"])):
            before = server.answered
            cmd = [sys.executable, "-m", "argos.cli", "train", *args.split()]
            cmd += ["--base-url", server.base_url, "--out", str(tmp_path / name), *extra]
            proc = subprocess.run(
                cmd,
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
            )
            assert proc.returncode == 0, proc.stderr[-3000:]
            runs[name] = (json.loads(proc.stdout), server.answered - before)
    sets = rule_sets(tmp_path / "local")
    assert len(sets) == len(make_demo_dataset().series) and any(sets.values())
    assert rule_sets(tmp_path / "dask") == sets
    for name in ("local", "dask"):
        summary, answered = runs[name]
        total = summary["usage"]["total"]
        assert answered > 0 and total["calls"] - total["cached_calls"] == answered, name
        assert summary["usage"]["agents"], name
    assert runs["dask"][1] == runs["local"][1]
    saved = json.loads((tmp_path / "dask" / "usage.json").read_text())
    assert saved["total"] == runs["dask"][0]["usage"]["total"]
    assert json.loads((tmp_path / "dask" / "run.json").read_text())["scheduler"] == "local:2"


def test_shared_ledger_resumes_from_what_a_run_spent(cluster: DaskExecutor) -> None:
    model = SharedLimitsChatModel(
        f"resume-{time.time_ns()}",
        budget=Budget(max_calls=3),
        max_concurrent=1,
        inner=AlwaysSameReply("ok"),
        client=cluster.client,
    )
    model.resume_from(2, 100, 0.5)
    model.resume_from(1, 10, 0.1)  # the ledger already holds more: unchanged
    assert (
        model.spent().spent.calls,
        model.spent().spent.tokens,
        model.spent().spent.cost_usd,
    ) == (2, 100, 0.5)
    model.complete([Message("user", "hi")], agent="generator")
    with pytest.raises(LLMBudgetExceeded, match="call budget of 3 is used up"):
        model.complete([Message("user", "hi")], agent="generator")
