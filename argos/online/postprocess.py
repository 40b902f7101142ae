"""Causal alarm post-processing of the online detector, and the per-series state it keeps.

:class:`PostProcessing` is the configuration (``min_duration``, ``cooldown``, ``incident_gap``,
counted in points of one series); :func:`post_process` applies it to the next raw labels of a
series, carrying a :class:`PostState` from call to call, so batch and stream give the same
labels. :class:`SeriesTable` holds a detector's per-series stream state, and :class:`SeriesState`
is everything the detector holds for one series (its part of the table and the rule history),
enough to continue the series elsewhere.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields, replace

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from argos._types import BoolArray, IntArray


class PostProcessing(BaseModel):
    """Causal alarm post-processing, counted in points of one series.

    Attributes:
        min_duration: a point is anomalous only once the raw label has been true for this many
            consecutive points (1 = off).
        cooldown: an anomalous point raises an alert only when the series raised no alert in the
            previous ``cooldown`` points (0 = every anomalous point alerts).
        incident_gap: anomalous points separated by at most this many normal points belong to
            the same incident.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    min_duration: int = Field(default=1, ge=1)
    cooldown: int = Field(default=0, ge=0)
    incident_gap: int = Field(default=0, ge=0)


@dataclass
class PostState:
    """The post-processing counters of one series, carried from one push to the next."""

    pos: int = 0  # accepted points so far
    run: int = 0  # consecutive raw-true points ending at last_raw
    last_raw: int = -(10**18)
    last_anomaly: int = -(10**18)
    last_alert: int = -(10**18)
    incidents: int = 0


class SeriesTable:
    """A detector's stream state of every series: the last accepted timestamp and the number of
    accepted points (the post-processing position) as arrays indexed by the series' slot, and the
    other post-processing counters (:class:`PostState`) of the series that have them.

    A scrape (one new point for each of many known series) then checks its ordering and advances
    its positions with a few numpy calls (:meth:`slots`, :attr:`last_ts`, :attr:`pos`) instead of
    a dict update per series; only series with a raw alarm touch a :class:`PostState`, whose
    ``pos`` the caller sets from :attr:`pos` before use (:meth:`post_state`)."""

    def __init__(self) -> None:
        self._slot: dict[str, int] = {}
        self._names: list[str] = []
        self.last_ts = np.zeros(64, dtype=np.int64)
        """Per slot, the last accepted timestamp."""
        self.pos = np.zeros(64, dtype=np.int64)
        """Per slot, the accepted points so far."""
        self._post: dict[str, PostState] = {}
        self.layout = 0
        """Changes whenever a series gains or loses its slot: a caller's slots of a list of
        series stay valid while it holds."""

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, series: object) -> bool:
        return series in self._slot

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._names))

    def slot(self, series: str) -> int:
        """A known series' slot, or -1."""
        return self._slot.get(series, -1)

    def slots(self, series: Sequence[str]) -> list[int]:
        """:meth:`slot` of each of these series."""
        get = self._slot.get
        return [get(s, -1) for s in series]

    def add(self, series: str, last_ts: int) -> int:
        """A new series (its first accepted point at ``last_ts``, position 0); its slot."""
        j = len(self._names)
        if j == len(self.last_ts):
            self.last_ts = np.concatenate((self.last_ts, np.zeros_like(self.last_ts)))
            self.pos = np.concatenate((self.pos, np.zeros_like(self.pos)))
        self._names.append(series)
        self._slot[series] = j
        self.layout += 1
        self.last_ts[j] = last_ts
        self.pos[j] = 0
        return j

    def post_state(self, series: str, pos: int) -> PostState:
        """The series' post-processing counters, made when it has none, with ``pos`` set."""
        st = self._post.get(series)
        if st is None:
            st = self._post[series] = PostState()
        st.pos = pos
        return st

    def state(self, series: str) -> tuple[int, PostState]:
        """A known series' last accepted timestamp and post-processing counters (a copy)."""
        j = self._slot[series]
        st = self._post.get(series) or PostState()
        return int(self.last_ts[j]), replace(st, pos=int(self.pos[j]))

    def set_state(self, series: str, last_ts: int, post: PostState) -> None:
        """Replace a series' state (known or not)."""
        j = self._slot.get(series)
        if j is None:
            j = self.add(series, last_ts)
        self.last_ts[j] = last_ts
        self.pos[j] = post.pos
        self._post[series] = post

    def forget(self, series: str) -> None:
        """Drop a series (the last slot moves into its place)."""
        j = self._slot.pop(series, None)
        if j is None:
            return
        self.layout += 1
        self._post.pop(series, None)
        last = len(self._names) - 1
        if j != last:
            moved = self._names[last]
            self._names[j] = moved
            self._slot[moved] = j
            self.last_ts[j] = self.last_ts[last]
            self.pos[j] = self.pos[last]
        self._names.pop()


class SeriesState(BaseModel):
    """Everything a :class:`Detector` holds for one series, enough to continue the series
    elsewhere (another process, a new owner of a stream partition) with exactly the labels it
    would have given: the last accepted timestamp, the post-processing counters and the rule
    history (the last ``max(LOOKBACK) - 1`` points). JSON-serialisable
    (``model_dump_json`` / ``model_validate_json``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    series: str
    last_timestamp: int
    post: dict[str, int] = Field(default_factory=dict)
    timestamps: list[int] = Field(default_factory=list)
    values: list[float] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> SeriesState:
        if len(self.timestamps) != len(self.values):
            raise ValueError(
                f"{len(self.timestamps)} timestamps but {len(self.values)} values in the history"
            )
        unknown = set(self.post) - {f.name for f in fields(PostState)}
        if unknown:
            raise ValueError(f"unknown post-processing fields: {sorted(unknown)}")
        return self


def post_process(
    raw: BoolArray, st: PostState, cfg: PostProcessing
) -> tuple[BoolArray, BoolArray, IntArray]:
    """Apply post-processing to the next ``len(raw)`` points; returns anomaly, alert, incident.

    Incident ids are 1-based per series (0 = none). Loops only over raw-true points.
    """
    k = len(raw)
    anomaly = np.zeros(k, dtype=np.bool_)
    alert = np.zeros(k, dtype=np.bool_)
    incident = np.zeros(k, dtype=np.int64)
    for i in np.flatnonzero(raw).tolist():
        anomaly[i], alert[i], incident[i] = _raw_point(st, st.pos + i, cfg)
    st.pos += k
    return anomaly, alert, incident


def post_process_point(raw: bool, st: PostState, cfg: PostProcessing) -> tuple[bool, bool, int]:
    """:func:`post_process` of one point (a scrape's), without arrays: anomaly, alert, incident."""
    out = _raw_point(st, st.pos, cfg) if raw else (False, False, 0)
    st.pos += 1
    return out


def _raw_point(st: PostState, p: int, cfg: PostProcessing) -> tuple[bool, bool, int]:
    """A raw-anomalous point at position ``p`` of its series: anomaly, alert, incident."""
    st.run = st.run + 1 if st.last_raw == p - 1 else 1
    st.last_raw = p
    if st.run < cfg.min_duration:
        return False, False, 0
    if p - st.last_anomaly - 1 > cfg.incident_gap:
        st.incidents += 1
    st.last_anomaly = p
    alert = p - st.last_alert > cfg.cooldown
    if alert:
        st.last_alert = p
    return True, alert, st.incidents
