"""Export an LLM training run that was answered through a file relay: transcripts and replay files.

The capable-model measurement (docs/llm.md, ``eval/results/llm``) runs ``argos train --llm`` against
``relay_llm.py``, which writes every request to ``RELAY/NNNN.req.md`` and reads the answer from
``RELAY/NNNN.resp.md``. Units run one after the other (the LLM path trains with one worker), so the
requests of a run are its units' calls in training order. For each unit this writes:

- ``OUT/transcripts/<unit>.md``: every request and answer, as text. The requests of units named by
  ``--withhold`` (data that may not be redistributed, e.g. Yahoo S5) are replaced by their SHA-256
  and size, and numbers in the prose of their answers (outside code blocks, where a model may quote
  values) by ``[n]``; the code, which is what the run used, is kept.
- ``OUT/replay/<unit>.jsonl``: the run's response-cache rows of the unit's calls, in call order
  (``key``, ``agent``, ``text``, token counts): loaded into a fresh run folder's
  ``llm-cache.sqlite``, they make ``argos train`` replay the run without an endpoint
  (``tests/training/test_llm_replay.py``).
- ``OUT/calls.json``: per unit, calls and prompt/completion tokens per agent.

Usage: python scripts/llm_transcripts.py --run RUN_OUT --relay RELAY_DIR --out DIR
       [--withhold PREFIX ...]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sqlite3
from pathlib import Path
from typing import Any


def cache_rows(run: Path) -> list[dict[str, Any]]:
    """The run's response-cache rows, oldest first."""
    con = sqlite3.connect(run / "llm-cache.sqlite")
    try:
        cur = con.execute(
            "SELECT key, agent, model, text, prompt_tokens, completion_tokens, estimated,"
            " finish_reason, latency_s FROM llm_responses ORDER BY created, rowid"
        )
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    finally:
        con.close()


def relay_calls(relay: Path) -> list[tuple[str, str]]:
    """(request text, answer text) of every answered relay request, in order."""
    out = []
    for req in sorted(relay.glob("*.req.md")):
        resp = req.with_name(req.name.replace(".req.md", ".resp.md"))
        if resp.is_file():
            out.append((req.read_text(), resp.read_text()))
    return out


def unit_order(run: Path) -> list[str]:
    """The run's units in training order (summary.json lists them as they finished)."""
    summary = json.loads((run / "summary.json").read_text())
    return [str(u["unit"]) for u in summary["units"]]


def assign(
    units: list[str],
    calls: list[tuple[str, str]],
    rows: list[dict[str, Any]],
    unit_calls: list[int],
) -> dict[str, list[tuple[str, str, dict[str, Any]]]]:
    """Each unit's calls: consecutive blocks of the relay's requests, the i-th request paired
    with the i-th cached response (calls were served one at a time, so both are in call order).
    The answer shown is the response as served (the cache row), even if the relay's answer file
    was edited after it was read."""
    if not sum(unit_calls) == len(calls) == len(rows):
        raise SystemExit(
            f"{len(calls)} relay calls, {len(rows)} cached responses, units made {sum(unit_calls)}"
        )
    out: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    i = 0
    for unit, n in zip(units, unit_calls, strict=True):
        out[unit] = [
            (req, row["text"] if row["text"] == answer else _edited(row["text"]), row)
            for (req, answer), row in zip(calls[i : i + n], rows[i : i + n], strict=True)
        ]
        i += n
    return out


def redact_prose(text: str) -> str:
    """``text`` with every number outside fenced code blocks replaced by ``[n]``."""
    out, fenced = [], False
    for line in text.split("\n"):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        out.append(line if fenced or line.lstrip().startswith("```") else NUMBER.sub("[n]", line))
    return "\n".join(out)


NUMBER = re.compile(r"(?<![A-Za-z_])[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?")


def _edited(served: str) -> str:
    return served + "\n\n[the relay's answer file was edited after this text was served]"


def calls_per_unit(run: Path, units: list[str]) -> list[int]:
    """Calls each unit made: differences of the usage in the units' checkpoints, which is
    cumulative over a run whose units ran one after the other in one process."""
    from argos.training.agents.run import run_usage_from_checkpoints

    summary = json.loads((run / "summary.json").read_text())
    series = {str(u["unit"]): list(u["series"]) for u in summary["units"]}
    totals = [run_usage_from_checkpoints(run, [series[u]]).total.calls for u in units]
    for i in range(1, len(totals)):  # a unit that made no call saved no usage
        totals[i] = max(totals[i], totals[i - 1])
    return [b - a for a, b in zip([0, *totals[:-1]], totals, strict=True)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, required=True, help="the run's --out folder")
    ap.add_argument("--relay", type=Path, required=True, help="the relay's request folder")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--withhold", nargs="*", default=[], help="unit-name prefixes to redact")
    args = ap.parse_args()
    units = unit_order(args.run)
    per_unit = assign(
        units, relay_calls(args.relay), cache_rows(args.run), calls_per_unit(args.run, units)
    )
    (args.out / "transcripts").mkdir(parents=True, exist_ok=True)
    (args.out / "replay").mkdir(parents=True, exist_ok=True)
    counts_path = args.out / "calls.json"
    counts = json.loads(counts_path.read_text()) if counts_path.is_file() else {}
    for unit, block in per_unit.items():
        withheld = any(unit.startswith(p) for p in args.withhold)
        lines = [f"# {unit}: {len(block)} LLM call(s)", ""]
        if withheld:
            lines += [
                "The requests quote values of a dataset that may not be redistributed: each is",
                "replaced by its SHA-256 and size, and numbers in the prose of the answers by [n].",
                "The answers' code is as served.",
                "",
            ]
        agents: dict[str, dict[str, int]] = {}
        with (args.out / "replay" / f"{unit}.jsonl").open("w") as replay:
            for n, (req, answer, row) in enumerate(block, start=1):
                if withheld:
                    answer = redact_prose(answer)
                    row = {**row, "text": redact_prose(str(row["text"]))}
                agent = str(row["agent"])
                use = agents.setdefault(
                    agent, {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0}
                )
                use["calls"] += 1
                use["prompt_tokens"] += int(row["prompt_tokens"])
                use["completion_tokens"] += int(row["completion_tokens"])
                if withheld:
                    digest = hashlib.sha256(req.encode()).hexdigest()
                    shown = f"(withheld: {len(req)} characters, sha256 {digest})"
                else:
                    shown = req.rstrip()
                lines += [
                    f"## Call {n}: {agent}",
                    "",
                    "### Request",
                    "",
                    "````text",
                    shown,
                    "````",
                    "",
                    "### Answer",
                    "",
                    "````text",
                    answer.rstrip(),
                    "````",
                    "",
                ]
                replay.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")
        (args.out / "transcripts" / f"{unit}.md").write_text("\n".join(lines))
        counts[unit] = agents
    counts_path.write_text(json.dumps(counts, indent=2, sort_keys=True) + "\n")
    print(f"{len(per_unit)} unit(s): " + ", ".join(f"{u} {len(b)}" for u, b in per_unit.items()))


if __name__ == "__main__":
    main()
