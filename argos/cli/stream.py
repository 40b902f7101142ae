"""``argos stream``: scaled-out detection on Redis Streams (see ``docs/scale-out.md``).

``argos stream consume`` runs one detector process of the consumer group; start several.
``argos stream publish`` appends a CSV of points (``series,timestamp,value``) to the partition
streams; ``argos stream status`` prints the backlog and the alerts written so far.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Any

import typer

from argos.cli.options import (
    SERIES,
    CooldownOption,
    DefaultRulesOption,
    IsolationChoice,
    IsolationOption,
    RulesFolderOption,
    rule_isolation,
)
from argos.online.detector import DetectorSettings
from argos.online.fleet import Fleet
from argos.online.points import Point
from argos.online.postprocess import PostProcessing

if TYPE_CHECKING:
    from argos.online.streams import StreamConfig

# Module level: the annotations below are evaluated in the module's namespace.
redis_opt = typer.Option("--redis", help="Redis URL, e.g. redis://127.0.0.1:6379/0.")
prefix_opt = typer.Option(help="Key prefix of the deployment's streams and keys.")
parts_opt = typer.Option(min=1, help="Partition streams (fixed for a deployment).")


def _reach(redis_url: str) -> Any:
    """A client of the Redis at ``redis_url`` that answered a ping; else one error line (what
    failed and how to start a Redis) and exit 2."""
    import redis

    try:
        client = redis.Redis.from_url(redis_url)
        client.ping()
    except ValueError as exc:
        typer.echo(f"error: --redis {redis_url!r} is not a Redis URL: {exc}", err=True)
        raise typer.Exit(2) from None
    except redis.RedisError as exc:
        typer.echo(
            f"error: cannot reach Redis at {redis_url}: {exc} (start one, e.g. `redis-server`, "
            "or give --redis URL)",
            err=True,
        )
        raise typer.Exit(2) from None
    return client


def _connect(redis_url: str, prefix: str, partitions: int) -> tuple[Any, StreamConfig]:
    """A client of the deployment's Redis, with its partition streams and consumer group made."""
    from argos.online.streams import StreamConfig, ensure_streams

    cfg = StreamConfig(prefix=prefix, partitions=partitions)
    client = _reach(redis_url)
    ensure_streams(client, cfg)
    return client, cfg


PUBLISH_COLUMNS = ("series", "timestamp", "value")
"""The columns ``stream publish`` reads (``series`` may come from ``--series`` instead)."""


def read_points(handle: IO[str], name: str, series: str | None) -> Iterator[Point]:
    """The points of a CSV with a header naming ``series,timestamp,value`` (any order, more
    columns ignored); ``series`` names the rows of a file without a series column. Raises
    :class:`ValueError` naming the missing columns (at once) or the line of a bad row (when the
    points are read)."""
    rows = csv.DictReader(handle)
    columns = rows.fieldnames or []
    missing = [c for c in PUBLISH_COLUMNS if c not in columns and (c != "series" or not series)]
    if missing:
        hint = " (or give --series NAME for a file of one series)" if missing == ["series"] else ""
        raise ValueError(
            f"{name} has no {', '.join(repr(c) for c in missing)} column{hint}; its header is "
            f"{','.join(columns) or '(empty)'}, expected series,timestamp,value"
        )

    def points() -> Iterator[Point]:
        for row in rows:
            try:
                yield Point(
                    row.get("series") or series or "",
                    int(row["timestamp"]),
                    float(row["value"]),
                )
            except (TypeError, ValueError) as exc:
                raise ValueError(f"bad row in {name}, line {rows.line_num}: {exc}") from None

    return points()


def register(app: typer.Typer) -> None:
    stream_app = typer.Typer(
        help="Scaled-out detection on Redis Streams: partitioned input, one consumer group.",
        no_args_is_help=True,
    )
    app.add_typer(stream_app, name="stream")

    @stream_app.command("consume")
    def consume_cmd(
        rules: RulesFolderOption,
        default_rules: DefaultRulesOption = None,
        redis_url: Annotated[str, redis_opt] = "redis://127.0.0.1:6379/0",
        name: Annotated[
            str | None, typer.Option(help="Consumer name (default consumer-PID).")
        ] = None,
        prefix: Annotated[str, prefix_opt] = "argos",
        partitions: Annotated[int, parts_opt] = 8,
        lease_ms: Annotated[
            int, typer.Option(min=100, help="Partition lease TTL (takeover after it), ms.")
        ] = 3000,
        batch: Annotated[int, typer.Option(min=1, help="Entries per read.")] = 500,
        min_duration: Annotated[int, typer.Option(min=1, help="Points of raw alarm.")] = 1,
        cooldown: CooldownOption = 0,
        incident_gap: Annotated[int, typer.Option(min=0, help="Points joining incidents.")] = 0,
        max_idle: Annotated[
            float | None, typer.Option(help="Exit after this many seconds without input.")
        ] = None,
        trusted: Annotated[
            bool,
            typer.Option(help="Run the rules in this process, without isolation (reviewed only)."),
        ] = False,
        isolation: IsolationOption = IsolationChoice.auto,
    ) -> None:
        """Run one detector consumer until SIGTERM / Ctrl-C; prints its counters as JSON."""
        from argos.online.streams import StreamConfig, consume

        cfg = StreamConfig(
            prefix=prefix,
            partitions=partitions,
            lease_ms=lease_ms,
            batch=batch,
            heartbeat_ms=lease_ms,
        )
        post = PostProcessing(
            min_duration=min_duration, cooldown=cooldown, incident_gap=incident_gap
        )
        _reach(redis_url).close()
        settings = DetectorSettings(
            isolation=rule_isolation(isolation, trusted, "stream consume"), post=post, strict=False
        )
        fleet = Fleet(
            rules, default_rules=default_rules, settings=settings, freeze_heap=True
        ).open_single()
        stats = consume(redis_url, fleet, name=name, config=cfg, max_idle_s=max_idle)
        typer.echo(json.dumps(vars(stats)))

    @stream_app.command("publish")
    def publish_cmd(
        file: Annotated[Path, typer.Argument(help="CSV with series,timestamp,value ('-': stdin).")],
        redis_url: Annotated[str, redis_opt] = "redis://127.0.0.1:6379/0",
        prefix: Annotated[str, prefix_opt] = "argos",
        partitions: Annotated[int, parts_opt] = 8,
        series: Annotated[
            str | None, SERIES("Series name for a CSV without a series column.")
        ] = None,
    ) -> None:
        """Append points to their partition streams."""
        from argos.online.streams import publish

        try:
            handle = sys.stdin if str(file) == "-" else file.open(newline="")
        except OSError as exc:
            typer.echo(f"error: cannot read {file}: {exc.strerror}", err=True)
            raise typer.Exit(2) from None
        try:
            points = read_points(handle, str(file), series)  # the header, before connecting
            client, cfg = _connect(redis_url, prefix, partitions)
            n = publish(client, cfg, points)
        except ValueError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        finally:
            if handle is not sys.stdin:
                handle.close()
        typer.echo(f"published {n} points to {partitions} partitions of {prefix!r}")

    @stream_app.command("status")
    def status_cmd(
        redis_url: Annotated[str, redis_opt] = "redis://127.0.0.1:6379/0",
        prefix: Annotated[str, prefix_opt] = "argos",
        partitions: Annotated[int, parts_opt] = 8,
    ) -> None:
        """Backlog (unacknowledged entries) and alerts written, as JSON."""
        from argos.online.streams import backlog

        client, cfg = _connect(redis_url, prefix, partitions)
        owners = {
            k: (v.decode() if isinstance(v, bytes) else v)
            for k, v in enumerate(client.mget([cfg.lease(k) for k in range(partitions)]))
        }
        typer.echo(
            json.dumps(
                {
                    "backlog": backlog(client, cfg),
                    "alerts": client.xlen(cfg.alerts),
                    "owners": owners,
                }
            )
        )
