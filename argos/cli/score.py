"""``argos score TRUTH PRED``: score any detector's output against labels.

Both files are CSV with a ``timestamp`` column; TRUTH has a ``label`` column, PRED a ``label``,
``pred`` or ``anomaly`` column (0/1 or true/false). The files are joined on timestamp: both must
hold exactly the same timestamps (any order; they are sorted), else the error names the first
timestamp found in one file and not the other.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
import typer
from rich.table import Table

from argos._types import BoolArray
from argos.cli.console import output_console
from argos.cli.options import DELAY, JsonTableOption
from argos.data.series import show_value
from argos.metrics import DEFAULT_DELAY, Scores, format_score, score_all

PRED_COLUMNS: tuple[str, ...] = ("label", "pred", "anomaly")


class ScoreInputError(ValueError):
    """A TRUTH or PRED file that cannot be scored; the message names the file and the problem."""


def _read(path: Path, columns: tuple[str, ...], role: str) -> pd.DataFrame:
    """Read ``path`` into a frame with ``timestamp`` and ``label`` (bool) columns."""
    if not path.is_file():
        raise ScoreInputError(f"{role} file not found: {path}")
    try:
        frame = pd.read_csv(path, skip_blank_lines=False)  # row i is line i + 2, as in loaders
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ScoreInputError(f"{path}: not a readable CSV ({exc})") from None
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    frame = frame.loc[~frame.isna().all(axis=1)]  # blank lines; the index keeps line - 2
    if "timestamp" not in frame.columns:
        raise ScoreInputError(f"{path}: no 'timestamp' column (columns: {list(frame.columns)})")
    column = next((c for c in columns if c in frame.columns), None)
    if column is None:
        want = " or ".join(repr(c) for c in columns)
        raise ScoreInputError(f"{path}: no {want} column (columns: {list(frame.columns)})")
    raw = frame[column]
    text = raw.astype(str).str.strip().str.lower()
    mapping = {"1": True, "0": False, "1.0": True, "0.0": False, "true": True, "false": False}
    labels = text.map(mapping)
    bad = labels.isna()
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise ScoreInputError(
            f"{path}, line {frame.index[i] + 2}: {column} {show_value(raw.iloc[i])} is not 0/1 "
            "or true/false"
        )
    ts = frame["timestamp"]
    dup = ts.duplicated()
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        raise ScoreInputError(
            f"{path}, line {frame.index[i] + 2}: duplicate timestamp {show_value(ts.iloc[i])}"
        )
    return pd.DataFrame({"timestamp": ts.astype(str).str.strip(), "label": labels.astype(bool)})


def _sort_key(ts: pd.Series) -> pd.Series:
    """Numeric timestamps sort as numbers, anything else as dates or text."""
    num = pd.to_numeric(ts, errors="coerce")
    if not num.isna().any():
        return num
    dates = pd.to_datetime(ts, errors="coerce")
    if not dates.isna().any():
        return dates
    return ts


def load_pair(truth_path: Path, pred_path: Path) -> tuple[BoolArray, BoolArray]:
    """Truth and prediction arrays aligned on timestamp (sorted chronologically).

    Raises :class:`ScoreInputError` naming the first mismatched timestamp.
    """
    truth = _read(truth_path, ("label",), "TRUTH")
    pred = _read(pred_path, PRED_COLUMNS, "PRED")
    only_truth = truth.loc[~truth["timestamp"].isin(pred["timestamp"]), "timestamp"]
    only_pred = pred.loc[~pred["timestamp"].isin(truth["timestamp"]), "timestamp"]
    if len(only_truth) or len(only_pred):
        parts = []
        if len(only_truth):
            parts.append(
                f"timestamp {only_truth.iloc[0]} is in {truth_path} but not in {pred_path}"
                f" ({len(only_truth)} such)"
            )
        if len(only_pred):
            parts.append(
                f"timestamp {only_pred.iloc[0]} is in {pred_path} but not in {truth_path}"
                f" ({len(only_pred)} such)"
            )
        raise ScoreInputError("timestamps do not match: " + "; ".join(parts))
    merged = truth.merge(pred, on="timestamp", suffixes=("_truth", "_pred"))
    merged = merged.iloc[np.argsort(_sort_key(merged["timestamp"]).to_numpy(), kind="stable")]
    return (
        merged["label_truth"].to_numpy(dtype=np.bool_),
        merged["label_pred"].to_numpy(dtype=np.bool_),
    )


def score_document(truth: BoolArray, pred: BoolArray, k: int) -> dict[str, Any]:
    """``{"point": {...}, "point_adjusted": {...}, "event_pa": {...}, "delay": {"k": K, ...}}``."""
    scores = score_all(truth, pred, k)
    doc: dict[str, Any] = {name: _as_dict(s) for name, s in scores.items()}
    doc["delay"] = {"k": k, **doc["delay"]}
    return doc


def _as_dict(s: Scores) -> dict[str, Any]:
    return {
        "precision": s.precision,
        "recall": s.recall,
        "f1": s.f1,
        "tp": s.tp,
        "fp": s.fp,
        "fn": s.fn,
    }


def register(app: typer.Typer) -> None:
    """Add the ``score`` command to ``app``."""

    @app.command("score")
    def score(
        truth: Annotated[Path, typer.Argument(help="CSV with columns timestamp,label.")],
        pred: Annotated[
            Path, typer.Argument(help="CSV with timestamp and a label, pred or anomaly column.")
        ],
        delay: Annotated[int, DELAY("k of the k-delay metric (AIOps 2018).")] = DEFAULT_DELAY,
        as_json: JsonTableOption = False,
    ) -> None:
        """Score predictions against labels: point-wise, point-adjusted, event-PA and k-delay."""
        try:
            t, p = load_pair(truth, pred)
        except ScoreInputError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        doc = score_document(t, p, delay)
        if as_json:
            typer.echo(json.dumps(doc, indent=2))
            return
        table = Table(
            title=f"{len(t):,} points, {int(t.sum()):,} anomalous, {int(p.sum()):,} flagged"
        )
        for col in ("metric", "precision", "recall", "F1", "TP", "FP", "FN"):
            table.add_column(col, justify="left" if col == "metric" else "right")
        names = {
            "point": "point-wise",
            "point_adjusted": "point-adjusted",
            "event_pa": "event-PA",
            "delay": f"{delay}-delay",
        }
        for key, label in names.items():
            d = doc[key]
            table.add_row(
                label,
                format_score(d["precision"], 4, missing="undefined"),
                format_score(d["recall"], 4, missing="undefined"),
                format_score(d["f1"], 4, missing="undefined"),
                str(d["tp"]),
                str(d["fp"]),
                str(d["fn"]),
            )
        console = output_console()
        console.print(table)
        if not t.any():
            console.print("No true anomaly: recall and F1 are undefined.")
        console.print("event-PA TP/FN count events; FP counts flagged points outside every event.")
