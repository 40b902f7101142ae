"""The capable-model measurements, replayed: their recorded answers give their rule sets again.

``eval/results/llm`` (sample A) and ``eval/results/llm/sample-b``, ``sample-c`` and ``sample-d``
each hold, per unit, the response-cache rows of every LLM call the measurement made
(``replay/<unit>.jsonl``, in call order) and the rule sets it exported (``rules/<unit>/``).
Loaded into a fresh run folder's ``llm-cache.sqlite``, the rows make ``argos train --llm`` replay
the run through the whole graph with no model: the endpoint is unreachable, so a request that is
not among the recorded ones fails (its candidate is dropped and the rule set differs). The test
asserts that every recorded answer is served, that no request misses, and that the exported rule
files are byte-identical to the committed ones. A change to the prompts, the lab, the accept gate or
the builtin incumbent that changes what the run did fails here.

The unit CSVs are cut from the real benchmark data (``units.json`` names each unit's dataset and
series) exactly as the measurement cut them.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from argos.cli.train_llm import RUN_FILE, RunOptions
from argos.data import catalog
from argos.llm.cache import ResponseStore
from argos.llm.interface import Completion, Usage

LLM_RESULTS = Path(__file__).resolve().parents[2] / "eval" / "results" / "llm"
SAMPLES = {
    "a": LLM_RESULTS,
    "b": LLM_RESULTS / "sample-b",
    "c": LLM_RESULTS / "sample-c",
    "d": LLM_RESULTS / "sample-d",
}


def _read(sample: str, name: str) -> dict[str, Any]:
    path = SAMPLES[sample] / name
    return dict(json.loads(path.read_text())) if path.is_file() else {}


UNITS = {sample: _read(sample, "units.json") for sample in SAMPLES}
OPTIONS = {sample: _read(sample, "options.json") for sample in SAMPLES}

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


def write_unit_csv(data_root: Path, spec: dict[str, Any], unit: str, folder: Path) -> Path:
    """The unit's series as the measurement wrote it: ``timestamp,value,is_anomaly``."""
    ds = catalog.load_dataset(spec["dataset"], data_dir=data_root)
    s = ds.get(spec["series"])
    assert s.labels is not None
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{unit}.csv"
    rows = (
        f"{int(t)},{float(v)!r},{int(lab)}"
        for t, v, lab in zip(s.timestamps, s.values, s.labels, strict=True)
    )
    path.write_text("timestamp,value,is_anomaly\n" + "\n".join(rows) + "\n")
    return path


def seed_cache(run_dir: Path, replay: Path) -> int:
    """Load the recorded responses into the run folder's response cache; returns how many."""
    rows = [json.loads(line) for line in replay.read_text().splitlines() if line.strip()]
    with ResponseStore(run_dir / "llm-cache.sqlite") as store:
        for row in rows:
            usage = Usage(row["prompt_tokens"], row["completion_tokens"], bool(row["estimated"]))
            completion = Completion(
                row["text"], usage, row["model"], row["latency_s"], row["finish_reason"]
            )
            store.put(row["key"], row["agent"], completion)
    return len(rows)


@pytest.mark.parametrize("sample", sorted(SAMPLES))
def test_the_measurement_records_every_unit(sample: str) -> None:
    results, units = SAMPLES[sample], UNITS[sample]
    assert len(units) >= 12
    for unit, spec in units.items():
        assert (results / "replay" / f"{unit}.jsonl").is_file(), unit
        assert (results / "transcripts" / f"{unit}.md").is_file(), unit
        assert any((results / "rules" / spec["rules"]).glob("*.py")), unit


def test_the_samples_share_no_unit() -> None:
    for one, other in itertools.combinations(sorted(SAMPLES), 2):
        assert not UNITS[one].keys() & UNITS[other].keys(), (one, other)


@pytest.mark.parametrize(
    ("sample", "unit"),
    [(sample, unit) for sample in sorted(SAMPLES) for unit in sorted(UNITS[sample])],
)
def test_replaying_the_recorded_answers_gives_the_same_rule_set(
    sample: str, unit: str, data_root: Path, tmp_path: Path
) -> None:
    results, options = SAMPLES[sample], OPTIONS[sample]
    why = options.get("not_replayed", {}).get(unit)
    if why:
        pytest.skip(f"not replayable on another machine: {why}")
    write_unit_csv(data_root, UNITS[sample][unit], unit, tmp_path / "units")
    run = tmp_path / "run"
    run.mkdir()
    recorded = seed_cache(run, results / "replay" / f"{unit}.jsonl")
    config = tmp_path / "argos.toml"
    config.write_text("[llm]\nmax_retries = 0\ntimeout_s = 5\n")
    # The run as the measurement started it, but against an unreachable endpoint: `--resume`
    # reads these options and keeps the seeded cache (a new run would refuse the non-empty folder).
    opts = RunOptions(
        dataset=str(tmp_path / "units"),
        series=unit,
        provider="openai",
        model=options["model"],
        base_url="http://127.0.0.1:9/v1",
        config=str(config),
        iterations=options["iterations"],
        candidates=options["candidates"],
        keep=options["keep"],
        holdout=options.get("holdout", True),
        guard=options.get("guard", "auto"),
    )
    (run / RUN_FILE).write_text(opts.model_dump_json(indent=2))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "ARGOS_LLM"))}
    env["ARGOS_LLM_API_KEY"] = "x"
    cmd = [sys.executable, "-m", "argos.cli", "train", "--resume", str(run)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1700)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    usage = json.loads((run / "usage.json").read_text())["total"]
    assert usage["calls"] == usage["cached_calls"] == recorded, usage
    folder = UNITS[sample][unit]["rules"]
    committed = {p.name: p.read_bytes() for p in (results / "rules" / folder).glob("*.py")}
    replayed = {p.name: p.read_bytes() for p in (run / folder).glob("*.py")}
    assert sorted(replayed) == sorted(committed)
    for name, code in committed.items():
        assert replayed[name] == code, f"{unit}/{name} differs from the recorded run's"
