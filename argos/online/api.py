"""The detection service's API models: requests, responses and bounded rule text.

Requests are validated here (types, lengths, series names without control characters, the
detector's own ``\x00...`` check series refused), before anything reaches a rule set.
Responses carry each fired rule's stated condition **once per response** (``conditions``,
by rule set and rule), never once per point: a rule's condition is bounded at 1,000 characters
(:mod:`argos.online.rulesets`), so a response grows by a few bytes per anomalous point, however
long a rule's ``Abnormal:`` paragraph is. Rule-controlled text (rule errors, stream-exactness
details, load and reload failures) is cut to :data:`MAX_ERROR_CHARS` by :func:`bounded_text` and
:func:`bounded_description`.
"""

from __future__ import annotations

from typing import Annotated, Any, TypedDict

from pydantic import BaseModel, ConfigDict, Field

from argos.online.points import Point

MAX_ERROR_CHARS = 500
"""Longest rule-controlled text (rule errors, details, reload failures) put in a response."""
SERIES_PATTERN = r"^[^\x00-\x1f\x7f]+$"
"""Series names: no control characters (``\x00...`` ids are the detector's own)."""


def bounded_text(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """``text`` cut to ``limit`` characters (rule-controlled text in responses)."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


class PointIn(BaseModel):
    """One point of a stream."""

    model_config = ConfigDict(extra="forbid")
    timestamp: int = Field(
        ge=-(2**62), le=2**62, description="Unix seconds (or an index); increasing per series."
    )
    value: float | None = Field(description="The metric value; null or NaN is dropped as invalid.")
    base: bool | None = Field(
        default=None, description="External base detector's label (fusion with an external base)."
    )

    def to_point(self, series: str) -> Point:
        """The detector's point (a null value becomes NaN, dropped as invalid)."""
        return Point(
            series, self.timestamp, float("nan") if self.value is None else self.value, self.base
        )


class StreamPointsIn(BaseModel):
    """New points of one series, in time order."""

    model_config = ConfigDict(extra="forbid")
    points: list[PointIn] = Field(min_length=1)


class DetectIn(BaseModel):
    """A whole series: strictly increasing timestamps and finite values of the same length."""

    model_config = ConfigDict(extra="forbid")
    series: str = Field(default="batch", max_length=200, pattern=SERIES_PATTERN)
    timestamps: list[Annotated[int, Field(ge=-(2**62), le=2**62)]] = Field(min_length=1)
    values: list[float] = Field(min_length=1)
    base: list[bool] | None = Field(
        default=None, description="External base detector's labels (fusion with external base)."
    )


class SeriesPointIn(PointIn):
    """One point of a named series."""

    series: str = Field(min_length=1, max_length=200, pattern=SERIES_PATTERN)


class MultiPointsIn(BaseModel):
    """Points of several series (interleaved; in time order within each series)."""

    model_config = ConfigDict(extra="forbid")
    points: list[SeriesPointIn] = Field(min_length=1)


Conditions = Annotated[
    dict[str, dict[str, str]],
    Field(
        description="The stated abnormal condition of every rule that fired in this response, "
        "once: rule set -> rule -> condition (at most 1,000 characters each)."
    ),
]


class DetectEvent(BaseModel):
    """One anomalous point of a batch."""

    index: int
    timestamp: int
    alert: bool
    incident: int
    rules: list[str] = Field(description="The rules that fired (their conditions: `conditions`).")


class DetectOut(BaseModel):
    """Labels of every point (post-processed), the anomalous points with the rules that fired,
    and each fired rule's stated condition once."""

    ruleset: str
    series: str
    labels: list[bool]
    anomalies: list[DetectEvent]
    conditions: Conditions
    rule_errors: list[str]


class MultiStreamOut(BaseModel):
    """Per-point results of a multi-series push, in input order, how many points were accepted
    or dropped, and each fired rule's condition once."""

    ruleset: str
    accepted: int
    dropped: dict[str, int]
    results: list[dict[str, Any]]
    conditions: Conditions


class StreamOut(MultiStreamOut):
    """The same for the points of one series."""

    series: str


class PushOutcome(TypedDict):
    """What a push returns to both push endpoints: the fields they share."""

    ruleset: str
    accepted: int
    dropped: dict[str, int]
    results: list[dict[str, Any]]
    conditions: Conditions


def bounded_description(description: dict[str, Any]) -> dict[str, Any]:
    """A fleet's or a detector's description with rule-controlled text (stream-exactness details,
    load errors) cut to :data:`MAX_ERROR_CHARS`, wherever it is nested."""

    def cut(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                k: bounded_text(v) if k in RULE_TEXT_KEYS and isinstance(v, str) else cut(v)
                for k, v in node.items()
            }
        if isinstance(node, list):
            return [cut(v) for v in node]
        return node

    return dict(cut(description))


RULE_TEXT_KEYS = frozenset({"stream_exact_detail", "load_error", "error", "detail", "quarantined"})
