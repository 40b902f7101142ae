"""Prompt templates for the generator, repairer and reviewer agents, and the token economy.

Templates are the files ``agents/<name>.md``. Format:

- an optional leading ``<!-- ... -->`` comment: documentation, never sent. A line
  ``optional: a, b`` in it names fields that default to the empty string;
- ``@@system`` and ``@@user`` marker lines split the system and the user message (a file without
  markers is one user message);
- fields are :class:`string.Template` placeholders, ``$name`` or ``${name}``; ``$$`` is a
  literal ``$``.

:func:`load_prompt` returns a :class:`PromptTemplate` whose ``sha256`` (of the file's bytes) is
recorded in every exported artifact. Rendering fails on a missing or unknown field.

The token economy lives in :func:`render_chunk`: values rounded to a few significant figures, long
normal stretches summarised in one line, anomalous windows verbatim with a little context. The
``*_messages`` helpers build the complete message lists the agents send.
"""

from __future__ import annotations

import ast
import contextlib
import difflib
import hashlib
import math
import os
import re
import string
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import SupportsFloat

import numpy as np
import numpy.typing as npt

from argos.llm.interface import Message
from argos.metrics import EVENT_PA, Objective
from argos.rules.contract import RuleContractError, with_params

__all__ = [
    "AGENT_PROMPTS",
    "PromptError",
    "PromptTemplate",
    "agents_dir",
    "code_diff",
    "describe_rule_set",
    "format_metrics",
    "format_value",
    "generator_messages",
    "is_revert",
    "load_prompt",
    "objective_text",
    "prompt_hashes",
    "render_chunk",
    "render_regressions",
    "repairer_messages",
    "reviewer_messages",
    "rule_contract",
    "trim_traceback",
]

AGENT_PROMPTS: tuple[str, ...] = ("generator", "repairer", "reviewer", "contract")
"""The prompt templates Argos ships in ``agents/``: one per agent, and the rule contract every
agent that writes rule code is given (:func:`rule_contract`)."""

_SYSTEM_MARK = "@@system"
_USER_MARK = "@@user"


class PromptError(ValueError):
    """A template is missing, malformed, or rendered with missing/unknown fields."""


def agents_dir() -> Path:
    """Where templates are read: ``$ARGOS_AGENTS_DIR`` if set, else ``agents/`` beside the
    ``argos`` package (a checkout or editable install), else ``share/argos/agents`` under the
    environment's prefix (where a wheel installs them, see ``pyproject.toml``)."""
    override = os.environ.get("ARGOS_AGENTS_DIR")
    if override:
        return Path(override)
    beside = Path(__file__).resolve().parents[3] / "agents"
    installed = Path(sys.prefix) / "share" / "argos" / "agents"
    return beside if beside.is_dir() or not installed.is_dir() else installed


@dataclass(frozen=True)
class PromptTemplate:
    """A loaded template. ``fields`` are all placeholders, ``optional`` those that default to ""."""

    name: str
    path: Path
    sha256: str
    system: string.Template | None
    user: string.Template
    fields: frozenset[str]
    optional: frozenset[str]

    @property
    def short_hash(self) -> str:
        """The first 12 hex digits of :attr:`sha256`, for logs and tables."""
        return self.sha256[:12]

    def _values(self, fields: Mapping[str, object]) -> dict[str, str]:
        unknown = sorted(set(fields) - self.fields)
        if unknown:
            raise PromptError(
                f"prompt {self.name!r} ({self.path}) has no field(s) {unknown}; "
                f"its fields are {sorted(self.fields)}"
            )
        missing = sorted(self.fields - self.optional - set(fields))
        if missing:
            raise PromptError(f"prompt {self.name!r} ({self.path}) needs field(s) {missing}")
        values = {name: "" for name in self.optional}
        values.update({k: str(v) for k, v in fields.items()})
        return values

    def messages(self, **fields: object) -> list[Message]:
        """Render into a system message (if the template has one) and a user message."""
        values = self._values(fields)
        out: list[Message] = []
        if self.system is not None:
            out.append(Message.system(self.system.substitute(values).strip()))
        out.append(Message.user(self.user.substitute(values).strip()))
        return out

    def render(self, **fields: object) -> str:
        """Render the whole prompt (system part, a blank line, user part) as one string."""
        return "\n\n".join(m.content for m in self.messages(**fields))


def _parse_template(name: str, path: Path, text: str) -> PromptTemplate:
    optional: set[str] = set()
    body = text
    stripped = text.lstrip()
    if stripped.startswith("<!--"):
        end = stripped.find("-->")
        if end < 0:
            raise PromptError(f"{path}: the leading <!-- comment is not closed")
        header = stripped[4:end]
        body = stripped[end + 3 :]
        for line in header.splitlines():
            if line.strip().lower().startswith("optional:"):
                optional = {f.strip() for f in line.split(":", 1)[1].split(",") if f.strip()}
    lines = body.splitlines()
    marks = [i for i, ln in enumerate(lines) if ln.strip() in (_SYSTEM_MARK, _USER_MARK)]
    system_text: str | None = None
    if not marks:
        user_text = body
    else:
        sections: dict[str, str] = {}
        for k, i in enumerate(marks):
            j = marks[k + 1] if k + 1 < len(marks) else len(lines)
            key = lines[i].strip()
            if key in sections:
                raise PromptError(f"{path}: {key} appears twice")
            sections[key] = "\n".join(lines[i + 1 : j])
        if _USER_MARK not in sections:
            raise PromptError(f"{path}: has {_SYSTEM_MARK} but no {_USER_MARK} section")
        if "\n".join(lines[: marks[0]]).strip():
            raise PromptError(f"{path}: text before the first @@ section marker")
        system_text = sections.get(_SYSTEM_MARK)
        user_text = sections[_USER_MARK]
    system = string.Template(system_text) if system_text is not None else None
    user = string.Template(user_text)
    fields: set[str] = set()
    for template in (system, user):
        if template is None:
            continue
        if not template.is_valid():
            raise PromptError(
                f"{path}: invalid placeholder (use $$ for a literal dollar sign, $name for a field)"
            )
        fields.update(template.get_identifiers())
    stray = optional - fields
    if stray:
        raise PromptError(
            f"{path}: optional field(s) {sorted(stray)} do not appear in the template"
        )
    return PromptTemplate(
        name=name,
        path=path,
        sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
        system=system,
        user=user,
        fields=frozenset(fields),
        optional=frozenset(optional),
    )


@lru_cache(maxsize=32)
def _load_cached(path: Path, mtime_ns: int, size: int) -> PromptTemplate:
    name = path.stem
    return _parse_template(name, path, path.read_text(encoding="utf-8"))


def load_prompt(name: str, directory: str | Path | None = None) -> PromptTemplate:
    """Load ``<directory>/<name>.md`` (default :func:`agents_dir`). Re-reads a changed file."""
    if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
        raise PromptError(f"prompt name must be a plain name like 'generator', got {name!r}")
    base = Path(directory) if directory is not None else agents_dir()
    path = (base / f"{name}.md").resolve()
    try:
        stat = path.stat()
    except OSError as err:
        known = sorted(p.stem for p in base.glob("*.md") if p.stem.lower() != "readme")
        raise PromptError(
            f"no prompt template {name!r}: {path} not found (templates in {base}: {known})"
        ) from err
    return _load_cached(path, stat.st_mtime_ns, stat.st_size)


def prompt_hashes(directory: str | Path | None = None) -> dict[str, str]:
    """``{agent: sha256}`` of the shipped templates, for artifact manifests."""
    return {name: load_prompt(name, directory).sha256 for name in AGENT_PROMPTS}


def rule_contract(directory: str | Path | None = None) -> str:
    """The rule contract (``agents/contract.md``), the ``contract`` field of every agent's
    template: one text, so the generator, the repairer and the reviewer are held to the same
    rules."""
    return load_prompt("contract", directory).render()


# --------------------------------------------------------------------------------------------
# Token economy: rendering data chunks
# --------------------------------------------------------------------------------------------


def format_value(value: float, sig_figs: int = 4) -> str:
    """``value`` rounded to ``sig_figs`` significant figures, positional when reasonable
    (``123456 -> 123500``, ``0.00012345 -> 0.0001234``), scientific for very large or small
    magnitudes, trailing zeros and dot trimmed."""
    if sig_figs < 1:
        raise ValueError(f"sig_figs must be >= 1, got {sig_figs}")
    v = float(value)
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if v == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(v)))
    if -5 <= magnitude < 15:
        text = np.format_float_positional(
            v, precision=sig_figs, unique=False, fractional=False, trim="-"
        )
    else:
        text = f"{v:.{sig_figs - 1}e}"
        mantissa, exponent = text.split("e")
        if "." in mantissa:
            mantissa = mantissa.rstrip("0").rstrip(".")
        text = f"{mantissa}e{int(exponent)}"
    return "0" if text in ("-0", "0") else text


def _stretch_summary(v: npt.NDArray[np.float64], a: int, b: int, sig: int, sketch: int) -> str:
    def fmt(x: SupportsFloat) -> str:
        return format_value(float(x), sig)

    finite = v[np.isfinite(v)]
    n = b - a + 1
    if finite.size == 0:
        return f"[{a}-{b}] normal n={n} all nan"
    text = (
        f"[{a}-{b}] normal n={n} min {fmt(finite.min())} max {fmt(finite.max())} "
        f"mean {fmt(finite.mean())} sd {fmt(finite.std())}"
    )
    parts = min(sketch, n // 4)
    if parts >= 2:
        means = [
            np.nanmean(p) if np.isfinite(p).any() else np.nan for p in np.array_split(v, parts)
        ]
        text += " shape " + " ".join(fmt(m) for m in means)
    return text


def _marker(labeled: bool, flagged: bool | None) -> str:
    """``!`` a labeled point (missed by the current rules when they are shown), ``*`` a labeled
    point they flag, ``?`` an unlabeled point they flag (a false alarm)."""
    if flagged is None:
        return "!" if labeled else ""
    if labeled:
        return "*" if flagged else "!"
    return "?" if flagged else ""


def _verbatim_lines(
    v: npt.NDArray[np.float64],
    lab: npt.NDArray[np.bool_],
    start: int,
    sig: int,
    per_line: int,
    flags: npt.NDArray[np.bool_] | None = None,
) -> list[str]:
    lines = []
    for off in range(0, len(v), per_line):
        chunk = [
            _marker(bool(lab[k]), None if flags is None else bool(flags[k]))
            + format_value(float(v[k]), sig)
            for k in range(off, min(off + per_line, len(v)))
        ]
        lines.append(f"@{start + off}: " + " ".join(chunk))
    return lines


def _runs(mask: npt.NDArray[np.bool_]) -> list[tuple[int, int]]:
    """Inclusive (start, end) of the True runs of ``mask``."""
    if mask.size == 0:
        return []
    padded = np.concatenate(([False], mask, [False])).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(s), int(e) - 1) for s, e in zip(edges[::2], edges[1::2], strict=True)]


def _describe_time(ts: npt.NDArray[np.int64]) -> str:
    if ts.size < 2:
        return ""
    step = int(np.median(np.diff(ts)))
    first = int(ts[0])
    # Unix seconds if plausible (after 1990), else an index.
    if first > 631_152_000:
        when = datetime.fromtimestamp(first, tz=UTC)
        per_day = f" ({86_400 // step} points a day)" if 0 < step <= 3_600 else ""
        return f"; interval {step}s{per_day}, starts {when:%Y-%m-%d %H:%M} UTC ({when:%a})"
    return f"; timestamps are an index, step {step}"


def render_chunk(
    values: npt.ArrayLike,
    labels: npt.ArrayLike | None = None,
    *,
    timestamps: npt.ArrayLike | None = None,
    sig_figs: int = 4,
    context: int = 5,
    max_points: int = 600,
    min_summary: int = 30,
    sketch: int = 16,
    per_line: int = 25,
    start_index: int = 0,
    alarms: npt.ArrayLike | None = None,
) -> str:
    """Render a labeled chunk compactly for a prompt.

    Points within ``context`` of a labeled anomaly are shown verbatim (``@i: v v !v``; ``!`` marks
    an anomalous label) in lines of ``per_line`` values. Normal stretches of at least
    ``min_summary`` points become one line
    ``[a-b] normal n=.. min .. max .. mean .. sd .. shape ..`` where ``shape`` holds up to
    ``sketch`` means of consecutive parts; shorter stretches stay
    verbatim. When more than ``max_points`` values would be verbatim, the longest windows are cut
    to their head and tail with a summary of the elided middle. Indices are offset by
    ``start_index``. With ``labels=None`` every point counts as normal. ``timestamps`` adds the
    interval, start time and weekday to the header. ``alarms`` (where the current rules fire)
    changes the markers: ``*`` a labeled point they flag, ``!`` one they miss, ``?`` a false
    alarm; false alarms are shown verbatim with their context, like anomalies.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1:
        raise ValueError(f"values must be one-dimensional, got shape {v.shape}")
    n = v.size
    lab = np.zeros(n, dtype=bool) if labels is None else np.asarray(labels, dtype=bool)
    if lab.shape != v.shape:
        raise ValueError(f"labels have shape {lab.shape}, values {v.shape}")
    if context < 0 or min_summary < 1 or max_points < 2 * context + 2 or per_line < 1:
        raise ValueError(
            "need context >= 0, min_summary >= 1, per_line >= 1 and max_points >= 2*context+2"
        )
    time_note = ""
    if timestamps is not None:
        ts = np.asarray(timestamps, dtype=np.int64)
        if ts.shape != v.shape:
            raise ValueError(f"timestamps have shape {ts.shape}, values {v.shape}")
        time_note = _describe_time(ts)
    if n == 0:
        return "n=0 (empty chunk)"
    flags = None if alarms is None else np.asarray(alarms, dtype=bool)
    if flags is not None and flags.shape != v.shape:
        raise ValueError(f"alarms have shape {flags.shape}, values {v.shape}")
    windows = _runs(lab)
    header = (
        f"n={n} idx {start_index}-{start_index + n - 1}; {int(lab.sum())} anomalous points "
        f"in {len(windows)} window(s){time_note}"
    )
    shown = windows
    if flags is not None:
        false_alarms = flags & ~lab
        header += (
            f"; the current rules catch {sum(bool(flags[s : e + 1].any()) for s, e in windows)} "
            f"of these windows and raise {int(false_alarms.sum())} false alarm(s)"
        )
        shown = sorted(windows + _runs(false_alarms))
    # Verbatim mask: anomalies (and false alarms) dilated by context; short normal gaps filled in.
    verbatim = np.zeros(n, dtype=bool)
    for s, e in shown:
        verbatim[max(0, s - context) : min(n, e + context + 1)] = True
    for s, e in _runs(~verbatim):
        if e - s + 1 < min_summary:
            verbatim[s : e + 1] = True
    segments = _runs(verbatim)
    # Cap verbatim points: find the largest per-segment length L with sum(min(len, L)) <= cap.
    lengths = [e - s + 1 for s, e in segments]
    limit = max(lengths, default=0)
    if sum(lengths) > max_points:
        lo, hi = 2, max(lengths)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if sum(min(length, mid) for length in lengths) <= max_points:
                lo = mid
            else:
                hi = mid - 1
        limit = lo
    lines = [header]
    pieces: list[tuple[int, int, bool]] = [(s, e, False) for s, e in _runs(~verbatim)]
    pieces += [(s, e, True) for s, e in segments]
    pieces.sort()
    for s, e, is_verbatim in pieces:
        if not is_verbatim:
            lines.append(
                _stretch_summary(v[s : e + 1], s + start_index, e + start_index, sig_figs, sketch)
            )
            continue
        length = e - s + 1
        if length <= limit:
            lines += _verbatim_lines(
                v[s : e + 1], lab[s : e + 1], s + start_index, sig_figs, per_line, _cut(flags, s, e)
            )
            continue
        head = (limit + 1) // 2
        tail = limit - head
        lines += _verbatim_lines(
            v[s : s + head],
            lab[s : s + head],
            s + start_index,
            sig_figs,
            per_line,
            _cut(flags, s, s + head - 1),
        )
        ms, me = s + head, e - tail
        middle = v[ms : me + 1]
        finite = middle[np.isfinite(middle)]
        stats = (
            f"min {format_value(float(finite.min()), sig_figs)} "
            f"max {format_value(float(finite.max()), sig_figs)} "
            f"mean {format_value(float(finite.mean()), sig_figs)}"
            if finite.size
            else "all nan"
        )
        lines.append(
            f"[{ms + start_index}-{me + start_index}] elided n={me - ms + 1}, "
            f"{int(lab[ms : me + 1].sum())} anomalous, {stats}"
        )
        if tail:
            lines += _verbatim_lines(
                v[e - tail + 1 : e + 1],
                lab[e - tail + 1 : e + 1],
                e - tail + 1 + start_index,
                sig_figs,
                per_line,
                _cut(flags, e - tail + 1, e),
            )
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Helpers for the repairer and the reviewer
# --------------------------------------------------------------------------------------------


def _cut(flags: npt.NDArray[np.bool_] | None, s: int, e: int) -> npt.NDArray[np.bool_] | None:
    return None if flags is None else flags[s : e + 1]


def trim_traceback(traceback: str, *, max_lines: int = 20, max_line_chars: int = 200) -> str:
    """The last ``max_lines`` lines of a traceback (where the error is), each cut at
    ``max_line_chars``, with a note of how many lines were dropped."""
    lines = [ln.rstrip() for ln in traceback.strip("\n").splitlines() if ln.strip()]
    lines = [ln if len(ln) <= max_line_chars else ln[:max_line_chars] + " ..." for ln in lines]
    if len(lines) <= max_lines:
        return "\n".join(lines)
    dropped = len(lines) - max_lines
    return f"... ({dropped} earlier traceback lines omitted)\n" + "\n".join(lines[-max_lines:])


def code_diff(old: str, new: str, *, context: int = 2) -> str:
    """A unified diff from the previous rule to the new one ("(no change)" when equal)."""
    diff = difflib.unified_diff(
        old.splitlines(),
        new.splitlines(),
        "previous_rule.py",
        "new_rule.py",
        n=context,
        lineterm="",
    )
    text = "\n".join(diff)
    return text if text else "(no change)"


def format_metrics(old: Mapping[str, float | None], new: Mapping[str, float | None]) -> str:
    """A small table ``metric  previous  new  change`` over the union of metric names."""

    def show(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.3f}"

    rows = ["metric        previous  new     change"]
    for name in list(dict.fromkeys([*old, *new])):
        a, b = old.get(name), new.get(name)
        change = f"{b - a:+.3f}" if a is not None and b is not None else "n/a"
        rows.append(f"{name:<13} {show(a):<9} {show(b):<7} {change}")
    return "\n".join(rows)


def render_regressions(
    values: npt.ArrayLike,
    truth: npt.ArrayLike,
    old_pred: npt.ArrayLike,
    new_pred: npt.ArrayLike,
    *,
    context: int = 3,
    max_windows: int = 5,
    max_window_points: int = 40,
    sig_figs: int = 4,
    start_index: int = 0,
) -> str:
    """Windows where the previous rule was right and the new one is wrong, as rows
    ``idx value truth old new`` (1 = anomalous), at most ``max_windows`` windows (the largest
    first, shown in index order), each with ``context`` points around it and cut at
    ``max_window_points``. Returns "" when there is no such point."""
    v = np.asarray(values, dtype=np.float64)
    t, o, w = (np.asarray(x, dtype=bool) for x in (truth, old_pred, new_pred))
    if not (v.shape == t.shape == o.shape == w.shape) or v.ndim != 1:
        raise ValueError("values, truth, old_pred and new_pred must be 1-D arrays of one length")
    worse = (o == t) & (w != t)
    runs = _runs(worse)
    if not runs:
        return ""
    chosen = sorted(sorted(runs, key=lambda r: r[0] - r[1])[:max_windows])
    n_missed = int((worse & t).sum())
    n_false = int((worse & ~t).sum())
    out = [
        f"Points the previous rule got right and the new rule gets wrong: {int(worse.sum())} "
        f"({n_missed} newly missed anomalies, {n_false} new false alarms) in {len(runs)} window(s)"
        + (f"; the {len(chosen)} largest:" if len(runs) > len(chosen) else ":"),
        "idx value truth old new",
    ]
    for s, e in chosen:
        a, b = max(0, s - context), min(v.size - 1, e + context)
        idx = list(range(a, b + 1))
        if len(idx) > max_window_points:
            idx = idx[:max_window_points]
        for i in idx:
            out.append(
                f"{i + start_index} {format_value(float(v[i]), sig_figs)} "
                f"{int(t[i])} {int(o[i])} {int(w[i])}"
            )
        if len(idx) < b - a + 1:
            out.append(f"... ({b - a + 1 - len(idx)} more points in this window)")
        out.append("--")
    return "\n".join(out[:-1])


# --------------------------------------------------------------------------------------------
# Complete message lists for each agent
# --------------------------------------------------------------------------------------------


_COOLDOWN = (
    "A cool-down (no new alarm for a while after one) stops repeated alarms inside one event, "
    "but it also hides a second event that begins soon after the first: keep it shorter than "
    "the gaps between events."
)


def objective_text(objective: Objective) -> str:
    """What the generator is told about how its rule is scored (``objective`` of the run)."""
    outside = "Every flagged point outside all events is one false alarm."
    if objective.kind == "point":
        return (
            "point-wise F1. Every labeled point counts on its own: a flagged labeled point is a "
            f"hit, an unflagged one a miss. {outside} Flag the whole labeled stretch when you can."
        )
    if objective.kind == "delay":
        k = objective.delay
        return (
            f"{k}-delay F1 (AIOps). A window of labeled points is an event. An event is caught "
            f"only when the rule flags one of its first {k + 1} points; alarms later in the event "
            f"do not count (the event is missed, and all its points count as misses). {outside} "
            "So react to the onset quickly, and one early alarm per event is enough. "
            f"{_COOLDOWN}"
        )
    return (
        "event F1 with point adjustment. A window of labeled points is an event; it is caught "
        f"when the rule flags at least one point anywhere inside it. {outside} So one alarm per "
        "event is enough: do not chase every labeled point, and staying quiet on normal data "
        "matters as much as catching events. Labels often begin before anything visibly "
        "changes: catching the event somewhere inside it counts; the first labeled points need "
        f"not be separable. {_COOLDOWN}"
    )


def _rounded(params: Mapping[str, object]) -> dict[str, object]:
    """``params`` with floats rounded to 4 decimals, for prompts."""
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in params.items()}


def _guard_text(guard: Objective | None) -> str:
    """The sentence on the gate's guard for :func:`describe_rule_set`."""
    if guard is None:
        return ""
    caught = {
        "delay": f"an event counts only when an alarm falls within {guard.delay} points of its "
        "start",
        "event-pa": "an event counts when an alarm falls anywhere inside it",
        "point": "every labeled point counts on its own",
    }[guard.kind]
    return (
        f" A set that scores higher but has a lower {guard.metric_name} F1 ({caught}) than the "
        "current set, on train or on validation, is not kept either."
    )


def describe_rule_set(
    members: Sequence[tuple[str, str, Mapping[str, float | int | bool | str]]],
    *,
    score: float | None,
    scored_on: str,
    train_f1: float | None = None,
    validation: str = "",
    guard: Objective | None = None,
) -> str:
    """The kept rule set for the generator's prompt: ``members`` are (origin, code, fitted
    params). A builtin rule is shown as its docstring and fitted ``PARAMS`` (its module is a
    long template of rolling-statistics helpers; the docstring states exactly what it flags,
    numbers included); an agent-written rule as its code with the fitted params in place.
    ``validation``: the set's outcome on the validation part in words
    (:meth:`~argos.training.agents.lab.SandboxRuleLab.validation_account`). ``guard``: the
    metric a kept set must not lower (:attr:`~argos.training.agents.state.LoopConfig.guard`)."""
    score_text = "" if score is None else f" It scores F1 {score:.3f} on {scored_on}"
    if score is not None and train_f1 is not None and scored_on == "validation":
        score_text += (
            f" (on train: {train_f1:.3f}; the validation part is not shown, it judges whether a "
            "rule generalises)"
        )
    score_text += "." if score_text else ""
    lines = [
        f"The current rule set ({len(members)} rule(s), combined with OR: an alarm of any rule "
        f"is an alarm of the set).{score_text}"
        + (f" {validation.strip()}" if validation.strip() else "")
        + " Your rule is kept only if a set with it scores higher on the same data: the gate "
        "tries it added to these rules, in place of each one of them, and alone, and keeps the "
        "best of those sets. So a rule that catches what the set misses can be kept without "
        "repeating what the set already catches." + _guard_text(guard)
    ]
    for i, (origin, code, params) in enumerate(members, start=1):
        if origin == "builtin":
            doc = ast.get_docstring(ast.parse(code)) or ""
            lines.append(
                f"Rule {i} (builtin template):\n{doc.strip()}\nFitted PARAMS: {_rounded(params)}"
            )
        else:
            shown = code
            with contextlib.suppress(RuleContractError):
                shown = with_params(code, params)
            lines.append(f"Rule {i} (written earlier, fitted):\n```python\n{shown.strip()}\n```")
    return "\n\n".join(lines)


def generator_messages(
    chunk: str,
    *,
    objective: Objective = EVENT_PA,
    task: str | None = None,
    contrast: str | None = None,
    contrast_kind: str | None = None,
    current: str | None = None,
    feedback: str | None = None,
    directory: str | Path | None = None,
) -> list[Message]:
    """The generator's messages for a rendered ``chunk`` (see :func:`render_chunk`).

    ``objective``: how the rule is scored (stated in the system message, :func:`objective_text`).
    ``task``: an optional focus line (e.g. "The current rules miss the anomalies below.").
    ``contrast``: a rendered contrastive chunk; ``contrast_kind`` says what it is ("normal": data
    the rule must NOT flag; "anomalous": anomalies it must catch). ``current``: the kept rule set
    to beat (:func:`describe_rule_set`). ``feedback``: what became of the earlier candidates
    (kept, or why not, with their scores).
    """
    contrast_section = ""
    if contrast:
        if contrast_kind == "normal":
            what = "Contrast, normal data the rule must NOT flag:"
        elif contrast_kind == "anomalous":
            what = "Contrast, another labeled chunk with anomalies the rule must catch:"
        else:
            what = "Contrast data:"
        contrast_section = f"\n{what}\n{contrast}\n"
    task_section = f"{task.strip()}\n\n" if task else ""
    return load_prompt("generator", directory).messages(
        contract=rule_contract(directory),
        objective=objective_text(objective),
        chunk=chunk,
        task_section=task_section,
        contrast_section=contrast_section,
        current_section=f"\n{current.strip()}\n" if current else "",
        feedback_section=f"\n{feedback.strip()}\n" if feedback else "",
    )


def repairer_messages(
    code: str,
    *,
    status: str,
    error: str,
    traceback: str = "",
    max_traceback_lines: int = 20,
    directory: str | Path | None = None,
) -> list[Message]:
    """The repairer's messages: the failed code, its sandbox/gate ``status``, the error message
    and the traceback trimmed by :func:`trim_traceback`."""
    tb = trim_traceback(traceback, max_lines=max_traceback_lines) if traceback.strip() else ""
    return load_prompt("repairer", directory).messages(
        contract=rule_contract(directory),
        code=code.strip(),
        status=status,
        error=error.strip() or "(no message)",
        traceback=f"\nTraceback (last lines):\n{tb}\n" if tb else "",
    )


_SCORING = {
    "event-pa": "event-level F1 with point adjustment",
    "delay": "{k}-delay F1",
    "point": "point-wise F1",
}
"""How the reviewer's metrics are named, per objective kind."""


def reviewer_messages(
    old_code: str,
    new_code: str,
    *,
    old_metrics: Mapping[str, float | None],
    new_metrics: Mapping[str, float | None],
    old_params: Mapping[str, object] | None = None,
    new_params: Mapping[str, object] | None = None,
    regressions: str = "",
    objective: Objective = EVENT_PA,
    directory: str | Path | None = None,
) -> list[Message]:
    """The reviewer's messages: the metric comparison (:func:`format_metrics`, named after the
    ``objective``), the params each version was scored with (fitting replaces the written
    defaults), the diff (:func:`code_diff`), the windows the new rule gets wrong
    (:func:`render_regressions` or any text) and the new code. The reviewer answers REVERT or
    one code block."""
    fitted = ""
    if old_params or new_params:
        old_text, new_text = _rounded(old_params or {}), _rounded(new_params or {})
        fitted = (
            "\nFitted PARAMS each version was scored with (fitting replaces the defaults written "
            f"in the code): previous {old_text}; new {new_text}\n"
        )
    return load_prompt("reviewer", directory).messages(
        contract=rule_contract(directory),
        scoring=_SCORING[objective.kind].format(k=objective.delay),
        metrics=format_metrics(old_metrics, new_metrics),
        fitted=fitted,
        diff=code_diff(old_code, new_code),
        new_code=new_code.strip(),
        regressions=f"\n{regressions.strip()}\n" if regressions.strip() else "",
    )


def is_revert(reply: str) -> bool:
    """True when a reviewer reply decides REVERT (the word on a line of its own, or the whole reply)
    and holds no code block."""
    if "```" in reply:
        return False
    return any(line.strip().strip("*").strip().upper() == "REVERT" for line in reply.splitlines())
