"""Run every row of the README's task table as a new user would, then check the checkout is clean.

Each row runs through the real ``argos`` entry point (``python -m argos``) from the repository
root, on demo-sized data (with ``--full``, KPI from ``$ARGOS_DATA_DIR`` for the dataset and the
F1-table rows: 1.5 min more), writing only into a temporary folder. Rows that need a hosted LLM
run against the scripted OpenAI-compatible test double of ``tests/fake_openai.py``; ``promtool
test rules`` runs when ``promtool`` is on PATH. "Reproduce F1 tables" also checks that the
per-series numbers equal the committed ones.

At the end ``git status --porcelain`` must be what it was at the start (empty in CI): reproducing
the README never writes into the checkout. Exit status 0 when every row passed; each row prints
one line (``ok``/``FAIL``, seconds, the command).

    python scripts/readme_tasks.py [--full]   # with the venv's python; ~2.5 min on 2 cores
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARGOS = [sys.executable, "-m", "argos"]
sys.path.insert(0, str(ROOT / "tests"))


class TaskFailed(RuntimeError):
    """A row did not do what the README says."""


def git_status() -> str:
    return subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def argos(
    *args: str, stdin: str | None = None, env: dict[str, str] | None = None, expect: int = 0
) -> str:
    """Run ``argos ARGS`` from the repository root; return stdout, fail on another exit code."""
    proc = subprocess.run(
        [*ARGOS, *args],
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "160", **(env or {})},
        timeout=600,
    )
    if proc.returncode != expect:
        raise TaskFailed(
            f"argos {' '.join(args)}: exit {proc.returncode} (expected {expect})\n"
            f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        )
    return proc.stdout


def data_dir() -> Path | None:
    env = os.environ.get("ARGOS_DATA_DIR")
    return Path(env) if env and Path(env).is_dir() else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def demo_points(path: Path, n: int = 400) -> Path:
    """``timestamp,value`` rows of the demo's cpu_util series (what a metric stream sends)."""
    from argos.data.demo import make_demo_dataset

    series = next(s for s in make_demo_dataset().series if s.id == "cpu_util")
    pairs = zip(series.timestamps[:n], series.values[:n], strict=True)
    rows = [f"{int(t)},{float(v)!r}" for t, v in pairs]
    path.write_text("timestamp,value\n" + "\n".join(rows) + "\n")
    return path


class Tasks:
    """The rows, in the README's order; each writes only under ``self.tmp``."""

    def __init__(self, tmp: Path, *, full: bool = False) -> None:
        self.tmp = tmp
        self.data = data_dir() if full else None
        self.train_out = tmp / "train"

    def look_at_a_dataset(self) -> str:
        argos("datasets", "list")
        name = "kpi" if self.data else "demo"
        shown = argos("datasets", "show", name, "--json")
        assert json.loads(shown)["name"].startswith(name), shown[:200]
        png = self.tmp / "plot.png"
        argos("datasets", "plot", "demo", "--series", "cpu_util", "--out", str(png))
        if not png.is_file():
            raise TaskFailed("datasets plot wrote no PNG")
        return f"argos datasets list / show {name} / plot demo --series cpu_util"

    def train_rules_no_llm(self) -> str:
        out = self.train_out
        argos("train", "--dataset", "demo", "--series", "cpu_util", "--out", str(out))
        from argos.rules.artifacts import load_ruleset

        load_ruleset(out / "cpu_util")
        argos("train", "--dataset", "demo", "--series", "cpu_util", "--out", str(out), expect=2)
        return "argos train --dataset demo --series cpu_util (again into the same --out: refused)"

    def train_rules_with_an_llm_and_resume(self) -> str:
        from fake_openai import FakeOpenAI
        from scripted_rules import GOOD, fenced

        def choose(agent: str, prompt: str) -> str:
            if agent == "reviewer":
                return "Keeps every anomaly.\nKEEP"
            return str(fenced(GOOD, "A level-shift rule."))

        run = self.tmp / "llm"
        env = {"OPENAI_API_KEY": "sk-test", "ARGOS_LLM_MODEL": "", "ARGOS_LLM_BASE_URL": ""}
        with FakeOpenAI(choose) as server:
            args = ["train", "--dataset", "demo", "--series", "cpu_util", "--llm", "openai"]
            args += ["--model", "fake-model", "--base-url", server.base_url, "--iterations", "1"]
            args += ["--candidates", "1", "--chunk-size", "600", "--out", str(run)]
            # the builtin set is perfect on demo data: from the incumbent no call would be made
            argos(*args, "--no-incumbent", env=env)
            paid = server.answered
            if paid == 0:
                raise TaskFailed("the LLM run made no call")
            argos("train", "--resume", str(run), env=env)
            if server.answered != paid:
                raise TaskFailed("resuming a finished run called the LLM again")
        return "argos train --llm openai (scripted test double) then --resume RUN"

    def check_and_deploy_a_rule(self) -> str:
        rule = ROOT / "rules" / "examples" / "robust_zscore.py"
        argos("rules", "check", str(rule), "--dataset", "demo", "--max-series", "2")
        mine = self.tmp / "mine"
        argos("rules", "pack", str(rule), "--out", str(mine), "--max-series", "2")
        argos("rules", "verify", str(mine))
        return "argos rules check RULE / rules pack RULE --out DIR / rules verify DIR"

    def reproduce_f1_tables(self) -> str:
        name = "kpi" if self.data else "demo"
        methods = ["static-threshold", "ewma"]
        out = self.tmp / f"eval-{name}"
        config, chosen = f"eval/{name}.toml", ",".join(methods)
        printed = argos("eval", "--config", config, "--methods", chosen, "--out", str(out))
        if "static-threshold" not in printed:
            raise TaskFailed("argos eval printed no table")

        def rows(path: Path) -> list[dict[str, str]]:
            with path.open() as fh:
                return [r for r in csv.DictReader(fh) if r["method"] in methods]

        committed = rows(ROOT / "eval" / "results" / name / "per_series.csv")
        if rows(out / "per_series.csv") != committed or not committed:
            raise TaskFailed(f"eval/results/{name}/per_series.csv is not reproduced")
        return f"argos eval --config eval/{name}.toml --out DIR (equals eval/results/{name})"

    def score_any_detector(self) -> str:
        truth = self.tmp / "truth.csv"
        pred = self.tmp / "pred.csv"
        labels = [0, 1, 1, 0, 1, 1, 1, 1, 0, 0]  # worked vector A of docs/evaluation.md
        preds = [1, 1, 0, 0, 0, 0, 0, 1, 1, 1]
        truth.write_text("timestamp,label\n" + "".join(f"{i},{v}\n" for i, v in enumerate(labels)))
        pred.write_text("timestamp,label\n" + "".join(f"{i},{v}\n" for i, v in enumerate(preds)))
        doc = json.loads(argos("score", str(truth), str(pred), "--json"))
        f1 = round(doc["event_pa"]["f1"], 4)
        if f1 != 0.5714:
            raise TaskFailed(f"event-PA F1 of vector A is {f1}, docs/evaluation.md says 0.5714")
        return "argos score truth.csv pred.csv --json"

    def detect_on_a_stream(self) -> str:
        rules = sorted(p for p in (ROOT / "rules" / "kpi").iterdir() if p.is_dir())[0]
        points = demo_points(self.tmp / "points.csv").read_text()
        lines = argos("detect", "--rules", str(rules), stdin=points).splitlines()
        if len(lines) != 400 or "anomaly" not in json.loads(lines[0]):
            raise TaskFailed(f"detect gave {len(lines)} lines for 400 points")
        argos("detect", "--rules", str(rules), "--alerts-only", stdin=points)
        return f"cat points.csv | argos detect --rules rules/kpi/{rules.name} [--alerts-only]"

    def run_the_service(self) -> str:
        port = free_port()
        cmd = [*ARGOS, "serve", "--rules", str(self.train_out / "cpu_util"), "--token", "t0k"]
        proc = subprocess.Popen(
            [*cmd, "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/v1/rulesets", headers={"Authorization": "Bearer t0k"}
            )
            deadline = time.monotonic() + 60
            while True:
                try:
                    with urllib.request.urlopen(request, timeout=5) as resp:
                        body = json.loads(resp.read())
                    break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        err = proc.stderr.read().decode() if proc.stderr else ""
                        raise TaskFailed(f"argos serve did not answer: {err[-1000:]}") from None
                    time.sleep(0.5)
            if not body.get("rules"):
                raise TaskFailed(f"/v1/rulesets lists no rules: {body}")
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        return "argos serve --rules DIR --token T (GET /v1/rulesets answered)"

    def page_from_prometheus(self) -> str:
        out = self.tmp / "rules.yml"
        test = self.tmp / "rules_test.yml"
        points = demo_points(self.tmp / "s.csv", n=600)
        rules = str(self.train_out / "cpu_util")
        argos("export", "prometheus", rules, "--selector", 'm{job="api"}', "--step", "300s",
              "--out", str(out), "--test-from", str(points), "--test-out", str(test))  # fmt: skip
        promtool = shutil.which("promtool")
        if promtool is None:
            return "argos export prometheus ... (promtool not on PATH: its test not run)"
        proc = subprocess.run([promtool, "test", "rules", str(test)], capture_output=True)
        if proc.returncode != 0:
            raise TaskFailed(f"promtool test rules failed: {proc.stdout.decode()[-1500:]}")
        return "argos export prometheus ... --test-out T, then promtool test rules T"

    def see_it(self) -> str:
        argos("report", str(self.train_out))
        if not (self.train_out / "report.html").is_file():
            raise TaskFailed("argos report wrote no report.html")
        return "argos report RUN_DIR"

    def scale_out(self) -> str:
        argos("eval", "--dataset", "demo", "--methods", "ewma", "--scheduler", "local:1")
        return "argos eval --scheduler local:1 (a local Dask cluster)"

    def all(self) -> list[Callable[[], str]]:
        return [
            self.look_at_a_dataset,
            self.train_rules_no_llm,
            self.train_rules_with_an_llm_and_resume,
            self.check_and_deploy_a_rule,
            self.reproduce_f1_tables,
            self.score_any_detector,
            self.detect_on_a_stream,
            self.run_the_service,
            self.page_from_prometheus,
            self.see_it,
            self.scale_out,
        ]


def main(argv: Sequence[str] = ()) -> int:
    full = "--full" in argv
    before = git_status()
    failed = 0
    with tempfile.TemporaryDirectory(prefix="argos-readme-tasks-") as tmp:
        for task in Tasks(Path(tmp), full=full).all():
            t0 = time.perf_counter()
            try:
                what = task()
                print(f"ok   {time.perf_counter() - t0:5.1f}s  {what}", flush=True)
            except (TaskFailed, AssertionError, subprocess.TimeoutExpired) as exc:
                failed += 1
                print(f"FAIL {time.perf_counter() - t0:5.1f}s  {task.__name__}: {exc}", flush=True)
    after = git_status()
    if after != before:
        failed += 1
        buf = io.StringIO()
        buf.write("FAIL the README's tasks changed the checkout (git status --porcelain):\n")
        buf.write(after)
        print(buf.getvalue(), flush=True)
    else:
        print("ok   git status unchanged")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
