"""``argos detect``: run exported rule sets on a metric stream (file or stdin), JSON lines out.

``--rules`` is one rule set (every series) or a folder of rule sets such as a training run folder
(each series served by its own set, :class:`~argos.online.fleet.Fleet`; ``--default-rules`` for
the others, else their points are refused with status ``unrouted``).

Input is read as it arrives (``tail -f metrics.csv | argos detect --rules R``): every read returns
whatever complete lines are available, and those lines form one micro-batch, so a fast producer
gets batched throughput and a slow one gets per-line latency. Output is flushed after every
micro-batch.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import sys
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import IO, Annotated, Any

import typer

from argos.cli.options import (
    FROM_POLICY_OPTIONS,
    SERIES,
    DefaultRulesOption,
    IsolationChoice,
    IsolationOption,
    RulesFolderOption,
    rule_isolation,
    with_detection_policy,
)
from argos.online.detector import DetectorSettings
from argos.online.fleet import Fleet
from argos.online.points import Point
from argos.rules.artifacts import RuleSetError
from argos.sandbox.workers import RuleWorkerError, WorkerLimits

READ_CHUNK = 1 << 16

TrustedOption = Annotated[
    bool,
    typer.Option(
        "--trusted-in-process",
        help="Run the rules in this process, without isolation (reviewed rules only).",
    ),
]


class InputFormat(StrEnum):
    """Stream formats."""

    csv = "csv"
    jsonl = "jsonl"


class LineError(ValueError):
    """One input line could not be parsed; the message says why."""


def parse_timestamp(text: object) -> int:
    """Unix seconds from an integer (or integral float) or an ISO-8601 date-time (UTC if naive)."""
    if isinstance(text, bool):
        raise LineError(f"timestamp {text!r} is not a number or ISO date-time")
    if isinstance(text, int):
        return text
    if isinstance(text, float):
        if not math.isfinite(text) or text != int(text):
            raise LineError(f"timestamp {text!r} is not a whole number of seconds")
        return int(text)
    s = str(text).strip()
    try:
        return int(s)
    except ValueError:
        pass
    try:
        f = float(s)
    except ValueError:
        try:
            dt = datetime.fromisoformat(s.replace("Z", "+00:00"))
        except ValueError:
            raise LineError(f"timestamp {s!r} is not a number or ISO date-time") from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        return int(dt.timestamp())
    if not math.isfinite(f) or f != int(f):
        raise LineError(f"timestamp {s!r} is not a whole number of seconds")
    return int(f)


def parse_value(text: object) -> float:
    """A float value; empty, ``nan`` or ``null`` become NaN (the detector drops it as invalid)."""
    if text is None or (isinstance(text, str) and text.strip().lower() in ("", "nan", "null")):
        return float("nan")
    if isinstance(text, bool) or not isinstance(text, str | int | float):
        raise LineError(f"value {text!r} is not a number")
    try:
        return float(text)
    except ValueError:
        raise LineError(f"value {text!r} is not a number") from None


def parse_base(text: object) -> bool | None:
    """An external base detector's label: true/false, 1/0, yes/no; empty or null = not given."""
    if text is None:
        return None
    if isinstance(text, bool):
        return text
    if isinstance(text, int | float) and text in (0, 1):
        return bool(text)
    s = str(text).strip().lower()
    if s in ("", "null", "none"):
        return None
    if s in ("1", "true", "yes", "t", "y"):
        return True
    if s in ("0", "false", "no", "f", "n"):
        return False
    raise LineError(f"base label {text!r} is not true/false or 1/0")


class InputError(ValueError):
    """The input as a whole cannot be read (a CSV header without the needed columns): fatal."""


CSV_COLUMNS = ("series", "timestamp", "value", "base")
"""The columns a CSV header may name; ``timestamp`` and ``value`` are required."""


def header_columns(names: list[str]) -> dict[str, int]:
    """Column positions from a CSV header; raises :class:`InputError` naming each missing required
    column, with the header's closest name as a suggestion (``timestmap`` for ``timestamp``)."""
    columns = {name: i for i, name in enumerate(names)}
    problems = []
    for need in ("timestamp", "value"):
        if need not in columns:
            unknown = [n for n in names if n not in CSV_COLUMNS]
            close = difflib.get_close_matches(need, unknown, n=1, cutoff=0.6)
            hint = f" (is {close[0]!r} a misspelling?)" if close else ""
            problems.append(f"no {need!r} column{hint}")
    if problems:
        raise InputError(
            f"CSV header {','.join(names)!r}: {'; '.join(problems)}; expected columns "
            "timestamp,value (plus optional series, base), or no header"
        )
    return columns


def _is_datum(field: str) -> bool:
    """Whether a field of a first line reads as data (a number, a date-time or empty), not as a
    column name."""
    try:
        parse_value(field.strip('"'))
        return True
    except LineError:
        pass
    try:
        parse_timestamp(field.strip('"'))
        return True
    except LineError:
        return False


class CsvParser:
    """``series,timestamp,value`` or ``timestamp,value`` rows, with or without a header line.

    With a header, columns may come in any order and a ``base`` column carries an external base
    detector's labels (for fusion rule sets that correct one)."""

    def __init__(self, default_series: str) -> None:
        self.default_series = default_series
        self.columns: dict[str, int] | None = None
        self.width = 0

    def parse(self, line: str) -> Point | None:
        """A point, ``None`` for a header or blank line; raises :class:`LineError`."""
        fields = [f.strip() for f in line.split(",")]
        if not line.strip():
            return None
        if self.columns is None:
            lowered = [f.lower().strip('"') for f in fields]
            self.width = len(fields)
            if "value" in lowered or "timestamp" in lowered or not any(map(_is_datum, fields)):
                self.columns = header_columns(lowered)
                return None
            if len(fields) == 3:
                self.columns = {"series": 0, "timestamp": 1, "value": 2}
            elif len(fields) == 2:
                self.columns = {"timestamp": 0, "value": 1}
            else:
                raise LineError(f"expected series,timestamp,value or timestamp,value: {line!r}")
        cols = self.columns
        if len(fields) != self.width:
            raise LineError(f"expected {self.width} fields, got {len(fields)}")
        series = fields[cols["series"]].strip('"') if "series" in cols else self.default_series
        return Point(
            series or self.default_series,
            parse_timestamp(fields[cols["timestamp"]].strip('"')),
            parse_value(fields[cols["value"]]),
            parse_base(fields[cols["base"]]) if "base" in cols else None,
        )


class JsonlParser:
    """One JSON object per line: ``timestamp``, ``value``, optional ``series`` and ``base``."""

    def __init__(self, default_series: str) -> None:
        self.default_series = default_series

    def parse(self, line: str) -> Point | None:
        """A point, ``None`` for a blank line; raises :class:`LineError`."""
        if not line.strip():
            return None
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise LineError(f"not JSON: {exc.msg}") from None
        if not isinstance(obj, dict):
            raise LineError("expected a JSON object with timestamp and value")
        for key in ("timestamp", "value"):
            if key not in obj:
                raise LineError(f"missing {key!r}")
        series = obj.get("series", self.default_series)
        if not isinstance(series, str | int) or isinstance(series, bool):
            raise LineError("'series' must be a string")
        return Point(
            str(series),
            parse_timestamp(obj["timestamp"]),
            parse_value(obj["value"]),
            parse_base(obj.get("base")),
        )


def read_line_batches(stream: IO[bytes]) -> Iterator[list[tuple[int, str]]]:
    """Yield lists of ``(line number, text)`` of complete lines as they become available.

    Each ``os.read`` returns what the pipe or file has (at most 64 KiB); the complete lines in it
    form one batch. A last line without a newline is yielded at EOF.
    """
    fd = stream.fileno()
    pending = b""
    lineno = 0
    while True:
        chunk = os.read(fd, READ_CHUNK)
        if not chunk:
            break
        pending += chunk
        *lines, pending = pending.split(b"\n")
        if lines:
            batch = []
            for raw in lines:
                lineno += 1
                batch.append((lineno, raw.decode("utf-8", errors="replace").rstrip("\r")))
            yield batch
    if pending.strip():
        yield [(lineno + 1, pending.decode("utf-8", errors="replace").rstrip("\r"))]


def run_detect(
    detector: Fleet,
    source: IO[bytes],
    sink: IO[str],
    *,
    fmt: InputFormat,
    alerts_only: bool,
    default_series: str,
    errors: IO[str],
) -> dict[str, Any]:
    """Stream ``source`` through the fleet writing JSON lines to ``sink``; return the summary.

    Points of series no set serves are written with status ``unrouted`` and the reason (once per
    series on ``errors`` too). Malformed lines are reported on ``errors`` with their line number
    and skipped.
    """
    parser: CsvParser | JsonlParser = (
        CsvParser(default_series) if fmt == InputFormat.csv else JsonlParser(default_series)
    )
    malformed = 0
    refused: set[str] = set()
    for batch in read_line_batches(source):
        points: list[Point] = []
        for lineno, text in batch:
            try:
                p = parser.parse(text)
            except LineError as exc:
                malformed += 1
                errors.write(f"argos detect: line {lineno}: {exc}; skipped\n")
                continue
            if p is not None:
                points.append(p)
        if not points:
            continue
        out = []
        for r in detector.push(points):
            if r.status == "unrouted" and r.series not in refused:
                refused.add(r.series)
                errors.write(f"argos detect: {r.detail}\n")
            if alerts_only and not r.alert:
                continue
            out.append(json.dumps(detector.result_json(r), separators=(",", ":")))
        if out:
            sink.write("\n".join(out) + "\n")
            sink.flush()
    summary = detector.stats()
    summary["malformed_lines"] = malformed
    return summary


def describe_fleet(fleet: Fleet) -> None:
    """What runs, on stderr: the set (and its rules' stream-exactness), or the fleet's size."""
    if not fleet.single:
        d = fleet.describe(stats=False)
        default = f", default set {d['default']}" if d["default"] else ""
        typer.echo(
            f"argos detect: {len(fleet.keys)} rule sets in {fleet.rules} "
            f"({len(d['partitions'])} by partition{default}), opened as their series arrive",
            err=True,
        )
        for key, err in fleet.load_errors.items():
            typer.echo(f"argos detect: warning: rule set {key} cannot be used: {err}", err=True)
        return
    d = fleet.detector(fleet.keys[0]).describe()
    typer.echo(
        f"argos detect: rule set {d['name']} ({len(d['rules'])} rules, "
        f"{d['combination']}), {d['isolation']}",
        err=True,
    )
    for r in d["rules"]:
        if r["stream_exact"] is False:
            typer.echo(
                f"argos detect: WARNING (--allow-non-causal): rule {r['id']} is not "
                "stream-exact, its labels are not the evaluated ones: "
                f"{r['stream_exact_detail']}",
                err=True,
            )


def register(app: typer.Typer) -> None:
    """Add ``argos detect``."""

    @app.command()
    @with_detection_policy
    def detect(
        rules: RulesFolderOption,
        default_rules: DefaultRulesOption = None,
        input: Annotated[
            str, typer.Option("--input", "-i", help="Input file, or - for stdin.")
        ] = "-",
        fmt: Annotated[
            InputFormat, typer.Option("--format", "-f", help="csv or jsonl.")
        ] = InputFormat.csv,
        output: Annotated[
            Path | None, typer.Option("--output", "-o", help="Output file (default stdout).")
        ] = None,
        alerts_only: Annotated[
            bool, typer.Option("--alerts-only", help="Write only points that raise an alert.")
        ] = False,
        series: Annotated[
            str, SERIES("Series name for input without a series column.")
        ] = "default",
        settings: DetectorSettings = FROM_POLICY_OPTIONS,
        trusted: TrustedOption = False,
        isolation: IsolationOption = IsolationChoice.auto,
        timeout: Annotated[
            float, typer.Option(help="Seconds a micro-batch may take before the worker is killed.")
        ] = 10.0,
    ) -> None:
        """Detect anomalies in a metric stream: one JSON line per point (or per alert)."""
        where = rule_isolation(isolation, trusted, "detect")
        limits = WorkerLimits(request_seconds=timeout)
        try:
            det = Fleet(
                rules,
                default_rules=default_rules,
                settings=replace(settings, isolation=where, limits=limits),
            ).open_single()  # one set: loaded now, so a broken set exits 2 before any input
        except (RuleSetError, RuleWorkerError) as exc:
            typer.echo(f"argos detect: {exc}", err=True)
            raise typer.Exit(2) from None
        with det:
            describe_fleet(det)
            try:
                source: IO[bytes] = sys.stdin.buffer if input == "-" else open(input, "rb")  # noqa: SIM115
            except OSError as exc:
                typer.echo(f"argos detect: cannot read {input}: {exc.strerror}", err=True)
                raise typer.Exit(2) from None
            sink: IO[str] = (
                sys.stdout if output is None else open(output, "w", encoding="utf-8")  # noqa: SIM115
            )
            try:
                summary = run_detect(
                    det,
                    source,
                    sink,
                    fmt=fmt,
                    alerts_only=alerts_only,
                    default_series=series,
                    errors=sys.stderr,
                )
            except KeyboardInterrupt:
                summary = det.stats()
            except InputError as exc:
                typer.echo(f"argos detect: {input if input != '-' else 'stdin'}: {exc}", err=True)
                raise typer.Exit(2) from None
            finally:
                if source is not sys.stdin.buffer:
                    source.close()
                if sink is not sys.stdout:
                    sink.close()
            shown = {k: v for k, v in summary.items() if v not in ({}, 0) or k == "points"}
            if not summary.get("points") and not summary.get("malformed_lines"):
                typer.echo(
                    "argos detect: no data points in the input (it was empty or held only a "
                    "header)",
                    err=True,
                )
                shown = {"points": 0, **shown}
            typer.echo("argos detect: " + json.dumps(shown), err=True)
