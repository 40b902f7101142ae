"""Scaled-out stream detection on Redis Streams: several detector processes, one consumer group.

Design (``docs/scale-out.md`` has the diagrams and the Kafka mapping):

- **Shards.** A point ``(series, timestamp, value)`` goes to the partition stream
  ``{prefix}:in:{k}`` with ``k = crc32(series) % partitions`` (:func:`publish`). Every point of a
  series lands in one partition, in publish order.
- **Ownership.** Partition ``k`` is read by the one consumer holding the lease
  ``{prefix}:lease:{k}`` (``SET NX PX``, renewed every loop). Consumers announce themselves in
  ``{prefix}:consumers`` and hold at most ``ceil(partitions / live consumers)`` partitions, so
  partitions spread out as consumers join and are released to others (rebalance). Each series
  therefore has exactly one owner at a time, and its state stays consistent.
- **Exactly once in effect.** A consumer reads a micro-batch of one partition with
  ``XREADGROUP``, runs :meth:`argos.online.detector.Detector.push`, then commits in ONE
  ``MULTI/EXEC`` guarded by ``WATCH`` on the lease: the anomalies go to the output stream
  ``{prefix}:alerts``, each touched series' state snapshot to the hash ``{prefix}:state``, and
  the entries are ``XACK``-ed. Either all three happen or none: a consumer killed before
  ``EXEC`` leaves its entries pending and the state at the last acknowledged point; one that
  lost its lease (paused past the TTL) has its ``EXEC`` refused, so it cannot write twice.
- **Takeover.** When a lease expires (the owner died: the lease TTL is the idle timeout), the
  next consumer to take the partition moves the dead owner's pending entries to itself with
  ``XAUTOCLAIM``, re-reads them first (``XREADGROUP`` from id ``0``), and rebuilds each series'
  state from the snapshot: the last ``max(LOOKBACK) - 1`` points (seeded into the rule engine),
  the last accepted timestamp and the post-processing counters. The labels are then exactly the
  labels batch detection gives for the same points.

A snapshot is a few hundred numbers per series, written only for the series of the batch, so
the commit costs one round trip per micro-batch.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import time
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import ValidationError

from argos.online.detector import Detector
from argos.online.fleet import Fleet, StreamDetector
from argos.online.points import Point, PointResult
from argos.online.postprocess import SeriesState

GROUP = "detectors"

log = logging.getLogger(__name__)

_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
# Read only while holding the lease, atomically: a consumer that lost its partition (paused past
# the TTL) can never take entries into its pending list after the new owner claimed the old ones.
_READ = """
if redis.call('get', KEYS[1]) ~= ARGV[1] then
  return 0
end
return redis.call('xreadgroup', 'GROUP', ARGV[2], ARGV[1], 'COUNT', ARGV[3],
                  'STREAMS', KEYS[2], ARGV[4])
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


def _import_redis() -> Any:
    try:
        import redis
    except ImportError:
        raise RuntimeError(
            "stream detection needs redis-py: pip install 'argos-rules[scale]'"
        ) from None
    return redis


def partition_of(series: str, partitions: int) -> int:
    """The partition of a series: ``crc32(series) % partitions`` (stable across processes)."""
    return zlib.crc32(series.encode()) % partitions


@dataclass(frozen=True)
class StreamConfig:
    """Where and how the consumer group works.

    Attributes:
        prefix: key prefix of every Redis key (``{prefix}:in:{k}``, ``:alerts``, ``:state``...).
        partitions: partition streams (fixed for the life of a deployment: changing it moves
            series between partitions).
        lease_ms: partition lease TTL; a dead consumer's partitions are taken over after it.
        batch: entries read per partition per ``XREADGROUP``.
        heartbeat_ms: a consumer that has not announced itself for this long is not counted
            when computing fair shares.
        trim: drop acknowledged entries from the input streams in each commit (``XTRIM MINID``,
            approximate); the state snapshots make old input unnecessary.
    """

    prefix: str = "argos"
    partitions: int = 8
    lease_ms: int = 3000
    batch: int = 500
    heartbeat_ms: int = 3000
    trim: bool = True

    def stream(self, k: int) -> str:
        """The input stream of partition ``k``."""
        return f"{self.prefix}:in:{k}"

    def lease(self, k: int) -> str:
        """The lease key of partition ``k``."""
        return f"{self.prefix}:lease:{k}"

    @property
    def alerts(self) -> str:
        """The output stream of anomalous points."""
        return f"{self.prefix}:alerts"

    @property
    def state(self) -> str:
        """The hash of per-series state snapshots."""
        return f"{self.prefix}:state"

    @property
    def consumers(self) -> str:
        """The sorted set of live consumers (score = last heartbeat, ms)."""
        return f"{self.prefix}:consumers"


def ensure_streams(client: Any, config: StreamConfig) -> None:
    """Create the partition streams and the consumer group (idempotent)."""
    redis = _import_redis()
    for k in range(config.partitions):
        try:
            client.xgroup_create(config.stream(k), GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise


def publish(client: Any, config: StreamConfig, points: Iterable[Point], chunk: int = 1000) -> int:
    """Append points to their partition streams (pipelined); returns how many were sent.

    Creates the streams and the group first, so no point is published before the group exists.
    """
    ensure_streams(client, config)
    n = 0
    pipe = client.pipeline(transaction=False)
    for p in points:
        pipe.xadd(
            config.stream(partition_of(p.series, config.partitions)),
            {"series": p.series, "timestamp": str(int(p.timestamp)), "value": repr(float(p.value))},
        )
        n += 1
        if n % chunk == 0:
            pipe.execute()
    pipe.execute()
    return n


def partition_backlog(client: Any, config: StreamConfig) -> list[int]:
    """Per partition: entries not yet acknowledged by the group (never delivered + pending)."""
    out = []
    for k in range(config.partitions):
        n = 0
        for g in client.xinfo_groups(config.stream(k)):
            name = g["name"].decode() if isinstance(g["name"], bytes) else g["name"]
            if name == GROUP:
                lag = g.get("lag")
                if lag is None:  # Redis < 7: a conservative count from the stream length
                    lag = client.xlen(config.stream(k))
                n = int(lag) + int(g["pending"])
        out.append(n)
    return out


def backlog(client: Any, config: StreamConfig) -> int:
    """Entries not yet acknowledged by the group, over all partitions."""
    return sum(partition_backlog(client, config))


def read_alerts(client: Any, config: StreamConfig) -> list[dict[str, Any]]:
    """Every record of the output stream, in write order."""
    out = []
    for _, fields in client.xrange(config.alerts):
        rec = {k.decode(): v.decode() for k, v in fields.items()}
        out.append(
            {
                "series": rec["series"],
                "timestamp": int(rec["timestamp"]),
                "alert": rec["alert"] == "1",
                "incident": int(rec["incident"]),
                "fired": [r for r in rec["fired"].split(",") if r],
                "ruleset": rec.get("ruleset", ""),
            }
        )
    return out


@dataclass
class ConsumerStats:
    """What one consumer did (for logs, the benchmark and tests)."""

    points: int = 0
    anomalies: int = 0
    batches: int = 0
    claimed: int = 0
    fenced: int = 0
    restored: int = 0
    bad_snapshots: int = 0
    unrouted: int = 0
    acquired: list[int] = field(default_factory=list)


class StreamConsumer:
    """One detector process of the consumer group (see the module docstring for the protocol).

    ``detector`` is a :class:`Detector` (one rule set for every series) or a
    :class:`~argos.online.fleet.Fleet` (each series routed to its own set: a partition stream
    carries points of many sets; points of series no set serves are acknowledged and counted in
    ``ConsumerStats.unrouted``, never retried). Call :meth:`step` in a loop (or :meth:`run`);
    each step renews or takes leases, then processes at most one micro-batch per owned
    partition.
    """

    def __init__(
        self,
        client: Any,
        detector: StreamDetector,
        name: str,
        config: StreamConfig | None = None,
    ) -> None:
        self.redis = client
        self.detector = detector
        self.name = name
        self.config = config or StreamConfig()
        self.owned: set[int] = set()
        self._drain_pending: set[int] = set()  # partitions whose own PEL must be re-read first
        self._loaded: dict[int, set[str]] = {}  # series whose state is current, per partition
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self._read = client.register_script(_READ)
        self.stats = ConsumerStats()
        self._stop = False
        ensure_streams(client, self.config)

    # -- leases --------------------------------------------------------------------------------
    def _fair_share(self) -> int:
        now = int(time.time() * 1000)
        self.redis.zadd(self.config.consumers, {self.name: now})
        live = self.redis.zcount(self.config.consumers, now - self.config.heartbeat_ms, "+inf")
        return math.ceil(self.config.partitions / max(1, int(live)))

    def rebalance(self) -> None:
        """Renew owned leases, drop lost ones, release extras beyond the fair share, take free
        partitions up to it (claiming a dead owner's pending entries)."""
        cfg = self.config
        for k in sorted(self.owned):
            if not self._renew(keys=[cfg.lease(k)], args=[self.name, cfg.lease_ms]):
                self._lose(k)
        share = self._fair_share()
        for k in sorted(self.owned, reverse=True)[: max(0, len(self.owned) - share)]:
            self._release(keys=[cfg.lease(k)], args=[self.name])
            self._lose(k)
        if len(self.owned) >= share:
            return
        start = zlib.crc32(self.name.encode()) % cfg.partitions
        for i in range(cfg.partitions):
            k = (start + i) % cfg.partitions
            if k in self.owned:
                continue
            if self.redis.set(cfg.lease(k), self.name, nx=True, px=cfg.lease_ms):
                self._acquire(k)
                if len(self.owned) >= share:
                    break

    def _acquire(self, k: int) -> None:
        cfg = self.config
        self.owned.add(k)
        self._loaded[k] = set()
        self.stats.acquired.append(k)
        cursor = "0-0"
        while True:  # move every pending entry of the partition to us (the lease is the fence)
            res = self.redis.xautoclaim(
                cfg.stream(k), GROUP, self.name, min_idle_time=0, start_id=cursor, count=1000
            )
            cursor, claimed = res[0], res[1]
            self.stats.claimed += sum(1 for c in claimed if c is not None)
            if cursor in (b"0-0", "0-0"):
                break
        self._drain_pending.add(k)

    def _lose(self, k: int) -> None:
        self.owned.discard(k)
        self._drain_pending.discard(k)
        self._loaded.pop(k, None)

    # -- processing ----------------------------------------------------------------------------
    def step(self) -> int:
        """Rebalance, then process one micro-batch per owned partition; returns points read."""
        self.rebalance()
        n = 0
        for k in sorted(self.owned):
            n += self._process_partition(k)
        return n

    def _process_partition(self, k: int) -> int:
        cfg = self.config
        start = "0" if k in self._drain_pending else ">"
        reply = self._read(
            keys=[cfg.lease(k), cfg.stream(k)], args=[self.name, GROUP, cfg.batch, start]
        )
        if reply == 0:  # the lease expired under us: another consumer owns the partition
            self.stats.fenced += 1
            self._lose(k)
            return 0
        entries = reply[0][1] if reply else []
        if not entries:
            self._drain_pending.discard(k)
            return 0
        ids = [eid for eid, _ in entries]
        points = []
        for _, flat in entries:
            if not flat:  # trimmed from the stream while pending: nothing to detect, just ack
                continue
            f = dict(zip(flat[::2], flat[1::2], strict=True))
            points.append(Point(f[b"series"].decode(), int(f[b"timestamp"]), float(f[b"value"])))
        self._restore(k, {p.series for p in points})
        results = self.detector.push(points)
        if not self._commit(k, ids, results):
            self.stats.fenced += 1
            self._lose(k)
            return 0
        self.stats.points += len(points)
        self.stats.unrouted += sum(1 for r in results if r.status == "unrouted")
        self.stats.batches += 1
        return len(points)

    def _restore(self, k: int, series: set[str]) -> None:
        """Load the snapshot of series whose state this consumer does not hold (new owner)."""
        missing = sorted(series - self._loaded[k])
        if not missing:
            return
        snaps = self.redis.hmget(self.config.state, missing)
        self.detector.forget(missing)
        states = []
        for s, raw in zip(missing, snaps, strict=True):
            if raw is None:
                continue
            try:
                states.append(SeriesState.model_validate_json(raw))
            except ValidationError as exc:  # the series starts afresh rather than stalling
                self.stats.bad_snapshots += 1
                log.warning("ignoring the unreadable state snapshot of %s: %s", s, exc)
        self.detector.import_state(states)
        self.stats.restored += len(states)
        self._loaded[k].update(missing)

    def _snapshot(self, results: Sequence[PointResult]) -> dict[str, str]:
        touched = list(dict.fromkeys(r.series for r in results))
        return {st.series: st.model_dump_json() for st in self.detector.export_state(touched)}

    def _commit(self, k: int, ids: Sequence[bytes], results: Sequence[PointResult]) -> bool:
        """Alerts + state snapshots + XACK atomically, only while we still hold the lease."""
        redis = _import_redis()
        cfg = self.config
        snaps = self._snapshot(results)
        anomalous = [r for r in results if r.status == "ok" and r.anomaly]
        with self.redis.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(cfg.lease(k))
                owner = pipe.get(cfg.lease(k))
                if owner is None or owner.decode() != self.name:
                    pipe.reset()
                    return False
                pipe.multi()
                for r in anomalous:
                    pipe.xadd(
                        cfg.alerts,
                        {
                            "series": r.series,
                            "timestamp": str(r.timestamp),
                            "alert": "1" if r.alert else "0",
                            "incident": str(r.incident),
                            "fired": ",".join(r.fired),
                            "ruleset": r.ruleset,
                        },
                    )
                if snaps:
                    pipe.hset(cfg.state, mapping=snaps)
                pipe.xack(cfg.stream(k), GROUP, *ids)
                if cfg.trim:
                    # one owner, pending entries first: everything before this batch's last id is
                    # acknowledged, and restarts need the snapshots, not the input
                    pipe.xtrim(cfg.stream(k), minid=ids[-1], approximate=True)
                pipe.execute()
            except redis.WatchError:
                return False
        self.stats.anomalies += len(anomalous)
        return True

    # -- lifecycle -----------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask :meth:`run` to return after the current step."""
        self._stop = True

    def release_all(self) -> None:
        """Give up every lease (a clean shutdown: others take over without waiting the TTL)."""
        for k in sorted(self.owned):
            self._release(keys=[self.config.lease(k)], args=[self.name])
            self._lose(k)
        self.redis.zrem(self.config.consumers, self.name)

    def run(self, *, idle_sleep_s: float = 0.02, max_idle_s: float | None = None) -> None:
        """Step until :meth:`stop` (or SIGTERM/SIGINT in the main thread), or until nothing was
        read for ``max_idle_s`` seconds; then release the leases."""
        last_work = time.monotonic()
        try:
            while not self._stop:
                if self.step():
                    last_work = time.monotonic()
                    continue
                if max_idle_s is not None and time.monotonic() - last_work > max_idle_s:
                    break
                time.sleep(idle_sleep_s)
        finally:
            self.release_all()


def batch_alerts(
    detector: Detector | Fleet, series: Mapping[str, tuple[Sequence[int], Sequence[float]]]
) -> list[dict[str, Any]]:
    """What batch detection says for the same points, in the output stream's record format
    (one record per anomalous point), sorted by (series, timestamp). With a fleet, each series
    is labelled by its own rule set (series no set serves are left out)."""
    out: list[dict[str, Any]] = []
    for s in sorted(series):
        t, v = series[s]
        ts, vs = np.asarray(t, dtype=np.int64), np.asarray(v, dtype=np.float64)
        if isinstance(detector, Fleet):
            if detector.route(s) is None:
                continue
            det, res = detector.detect_arrays(s, ts, vs)
        else:
            det, res = detector, detector.detect_arrays(ts, vs)
        for i in np.flatnonzero(res.anomaly).tolist():
            fired = [det.rule_ids[r] for r in np.flatnonzero(res.rule_labels[:, i]).tolist()]
            out.append(
                {
                    "series": s,
                    "timestamp": int(t[i]),
                    "alert": bool(res.alert[i]),
                    "incident": int(res.incident[i]),
                    "fired": fired,
                    "ruleset": det.key,
                }
            )
    return out


def consume(
    url: str,
    fleet: Fleet,
    *,
    name: str | None = None,
    config: StreamConfig | None = None,
    max_idle_s: float | None = None,
) -> ConsumerStats:
    """Run one consumer process over ``fleet`` until SIGTERM/SIGINT (or ``max_idle_s`` without
    input); the fleet is closed at the end.

    ``fleet`` serves a rule-set folder or a folder of rule sets (a training run folder), each
    series by its own set. Open a single set first (:meth:`~argos.online.fleet.Fleet.open_single`;
    a set opens in ~0.5 s), so that no lease is taken before it can run. The sets of a folder
    open when their first series arrives, inside a step: keep ``lease_ms`` above a set's opening
    time (about 0.5 s per set on a quiet host), or a lease may expire during it (the commit is
    then fenced and the batch re-read: correct, but wasted).
    """
    try:
        client = _import_redis().Redis.from_url(url)
    except BaseException:
        fleet.close()
        raise
    consumer = StreamConsumer(client, fleet, name or f"consumer-{os.getpid()}", config)

    def on_signal(signum: int, frame: Any) -> None:
        consumer.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        consumer.run(max_idle_s=max_idle_s)
    finally:
        fleet.close()
        client.close()
    return consumer.stats
