"""Prometheus rule files from rule sets, and ``promtool test rules`` files that prove them.

:func:`export_ruleset` recognises each rule of a set as a builtin template
(:mod:`argos.rules.recognise`), translates the ones PromQL can express exactly
(:mod:`argos.export.promql`) into one rule group, and reports every other rule with its reason:
nothing is dropped silently. :func:`rule_file` writes the groups of one or more sets;
:func:`unit_test_file` writes a unit test whose expected alerts are exactly the points where the
real online detector (:class:`~argos.online.detector.Detector`, as ``argos detect`` runs it) labels
each exported rule anomalous.

Exactness holds under these conditions (docs/prometheus.md): the metric has one sample per
``step``, without gaps; the group is evaluated every ``step`` (its ``interval``), and the rules
have been evaluated for the rule's ``LOOKBACK`` before (recorded series start with the rules);
values are finite. Floating-point sums differ in order (Prometheus's ``avg_over_time`` against the
templates' pairwise merge), so a score within about 1e-9 of its threshold may compare differently:
:func:`near_threshold` finds such points, and the unit tests must not contain any.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from argos._types import BoolArray, FloatArray, IntArray
from argos.export.promql import (
    PromRule,
    SetTranslator,
    duration,
    metric_part,
    number,
    untranslatable,
)
from argos.export.yamltext import YamlValue, dump
from argos.online.detector import Detector, DetectorSettings
from argos.rules.artifacts import MANIFEST, Fusion, load_ruleset
from argos.rules.grammar import RuleSpec, Structure
from argos.rules.recognise import NotTemplate, Recognised, recognise
from argos.rules.templates import compile_score, directional

NEAR_THRESHOLD = 1e-7
"""Relative distance to a threshold under which a point's label may differ between numpy and
Prometheus arithmetic (sums in another order); far above the ~1e-15 actual differences."""


@dataclass(frozen=True)
class RuleOutcome:
    """What happened to one rule of a set: exported (``reason`` empty) or why not."""

    rule_id: str
    exported: bool
    reason: str = ""
    template: str = ""


@dataclass
class SetExport:
    """One rule set translated: its group's rules, the exported specs, and every rule's outcome."""

    directory: Path
    ruleset_id: str
    name: str
    selector: str
    step_ms: int
    slug: str = ""
    rules: list[PromRule] = field(default_factory=list)
    specs: dict[str, RuleSpec] = field(default_factory=dict)
    alert_names: dict[str, str] = field(default_factory=dict)
    labels: dict[str, dict[str, str]] = field(default_factory=dict)
    annotations: dict[str, dict[str, str]] = field(default_factory=dict)
    outcomes: list[RuleOutcome] = field(default_factory=list)

    @property
    def group(self) -> str:
        """The rule group's name."""
        return f"argos_{self.slug or metric_part(self.ruleset_id)}"

    @property
    def exported(self) -> int:
        return sum(o.exported for o in self.outcomes)

    @property
    def total(self) -> int:
        return len(self.outcomes)

    def summary(self) -> str:
        """One line per set, then one per rule not exported."""
        lines = [
            f"rule set {self.ruleset_id} ({self.name}): exported {self.exported} of "
            f"{self.total} rules"
        ]
        lines += [
            f"  not exported: {o.rule_id}: {o.reason}" for o in self.outcomes if not o.exported
        ]
        return "\n".join(lines)


def docstring_fields(code: str) -> dict[str, str]:
    """``summary``, ``normal`` and ``abnormal`` from a rendered rule's docstring (lines joined)."""
    try:
        doc = ast.get_docstring(ast.parse(code)) or ""
    except SyntaxError:
        return {}
    paragraphs = doc.split("\n\n")
    out = {"summary": " ".join(line.strip() for line in paragraphs[0].splitlines())}
    key = ""
    for line in "\n\n".join(paragraphs[1:]).splitlines():
        for label in ("Normal", "Abnormal", "Fitted by"):
            if line.startswith(label):
                key = label.split()[0].lower()
                out[key] = line[len(label) :].lstrip(":").strip()
                break
        else:
            if key and line.strip():
                out[key] += " " + line.strip()
    out.pop("fitted", None)
    return out


def export_ruleset(directory: str | Path, selector: str, step_ms: int, slug: str = "") -> SetExport:
    """Translate the rule set in ``directory`` for the metric ``selector`` sampled every ``step``.

    ``slug`` names the group and starts the recorded series (``argos:<slug>:...``); it defaults to
    the rule set's id. Raises :class:`~argos.rules.artifacts.RuleSetError` for an invalid folder.
    """
    rs = load_ruleset(directory)
    m = rs.manifest
    slug = slug or metric_part(m.id)
    out = SetExport(Path(directory), m.id, m.name or m.id, selector, step_ms, slug)
    if isinstance(m.combination, Fusion):
        reason = (
            "fusion rule set: its label is a base detector corrected by FN/FP rules, not an OR "
            "of the rules' alerts"
        )
        out.outcomes = [RuleOutcome(r.id, False, reason) for r in m.rules]
        return out
    llm = m.generator is not None and m.generator.kind == "llm"
    prefix = f"argos:{slug}"
    tr = SetTranslator(prefix, selector, step_ms)
    for entry in m.rules:
        if entry.status != "accepted":
            out.outcomes.append(
                RuleOutcome(entry.id, False, f"status {entry.status!r}: argos detect skips it")
            )
            continue
        if llm:
            out.outcomes.append(
                RuleOutcome(entry.id, False, "LLM-written rule: arbitrary numpy, no translation")
            )
            continue
        found = recognise(entry, rs.codes[entry.id])
        if isinstance(found, NotTemplate):
            out.outcomes.append(RuleOutcome(entry.id, False, f"not a template: {found.reason}"))
            continue
        assert isinstance(found, Recognised)
        spec = found.spec
        why = untranslatable(spec)
        if why is not None:
            out.outcomes.append(RuleOutcome(entry.id, False, why, spec.name))
            continue
        alert = f"argos_{metric_part(entry.id)}"
        labels = {"argos_ruleset": m.id, "argos_rule": entry.id}
        notes = docstring_fields(found.code)
        notes["params"] = json.dumps(dict(entry.params), sort_keys=True)
        tr.add_rule(spec, f"{prefix}:{metric_part(entry.id)}", alert, labels, notes)
        out.specs[entry.id] = spec
        out.alert_names[entry.id] = alert
        out.labels[entry.id] = labels
        out.annotations[entry.id] = notes
        out.outcomes.append(RuleOutcome(entry.id, True, template=spec.name))
    out.rules = tr.rules if out.specs else []
    return out


def is_ruleset(path: Path) -> bool:
    """True for a rule-set folder (it holds a manifest)."""
    return (path / MANIFEST).is_file()


def run_units(path: Path) -> list[Path]:
    """The rule-set folders of a training run folder (its sub-folders with a manifest), sorted."""
    return sorted(p for p in path.iterdir() if p.is_dir() and is_ruleset(p))


def _rule_yaml(r: PromRule) -> dict[str, YamlValue]:
    if r.record:
        return {"record": r.record, "expr": r.expr}
    out: dict[str, YamlValue] = {"alert": r.alert, "expr": r.expr}
    if r.for_ms:
        out["for"] = duration(r.for_ms)
    out["labels"] = dict(r.labels)
    out["annotations"] = dict(r.annotations)
    return out


def rule_file(exports: Sequence[SetExport]) -> str:
    """The Prometheus rule file: one group per set with exported rules, evaluated every step."""
    groups: list[YamlValue] = [
        {
            "name": e.group,
            "interval": duration(e.step_ms),
            "rules": [_rule_yaml(r) for r in e.rules],
        }
        for e in exports
        if e.rules
    ]
    head = (
        "# Generated by `argos export prometheus`: Argos rule sets as Prometheus rules.\n"
        "# Exact only with one sample per interval and no gaps (docs/prometheus.md).\n"
    )
    return head + dump({"groups": groups})


# ------------------------------------------------------------------------------------------------
# Unit tests
# ------------------------------------------------------------------------------------------------

_SELECTOR = re.compile(r"^\s*([A-Za-z_:][A-Za-z0-9_:]*)\s*(?:\{(.*)\})?\s*$")
_MATCHER = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(?:,|$)')


def selector_labels(selector: str) -> tuple[str, dict[str, str]]:
    """Metric name and labels of a plain selector (``name{a="b"}``, equality matchers only);
    ``ValueError`` for anything else (a test needs a concrete input series)."""
    m = _SELECTOR.match(selector)
    if m is None:
        raise ValueError(f'{selector!r} is not a plain metric selector like name{{label="v"}}')
    body = (m.group(2) or "").strip()
    labels: dict[str, str] = {}
    pos = 0
    while pos < len(body):
        lm = _MATCHER.match(body, pos)
        if lm is None:
            raise ValueError(f'{selector!r}: only label="value" matchers can name a test series')
        labels[lm.group(1)] = json.loads(f'"{lm.group(2)}"')
        pos = lm.end()
    return m.group(1), labels


def expected_alerts(
    directory: str | Path,
    timestamps: IntArray,
    values: FloatArray,
    *,
    isolation: Literal["worker", "inprocess"] = "worker",
) -> dict[str, BoolArray]:
    """Each rule's labels from the online detector, exactly as ``argos detect`` computes them
    (no post-processing: every anomalous point is an alert)."""
    with Detector.open(directory, DetectorSettings(isolation=isolation, verify=False)) as det:
        batch = det.detect_arrays(timestamps, values)
    if batch.errors:
        failed = "; ".join(f"{e.rule_id}: {e.message}" for e in batch.errors)
        raise RuntimeError(f"rules failed on the test series: {failed}")
    return {rid: batch.rule_labels[i] for i, rid in enumerate(batch.rule_ids)}


_SAME_ARITHMETIC = {"static", "band"}
"""Scorers that PromQL computes with the very same IEEE operations as numpy (a subtraction or
two, on transforms that are subtractions or selections): their scores are bitwise equal."""


def _directional(st: Structure, values: FloatArray, threshold: float) -> FloatArray:
    if st.scorer == "flat" or (st.scorer in _SAME_ARITHMETIC and st.transform != "ewma"):
        # integer run lengths, or bitwise-equal scores: no rounding question
        return np.full(len(values), -np.inf)
    score = compile_score(st.transform, st.scorer)(values, np.arange(len(values)), st.param_dict)
    return directional(score, st.direction, 1)


def near_threshold(spec: RuleSpec, values: FloatArray, tol: float = NEAR_THRESHOLD) -> list[int]:
    """Indices where a score of ``spec`` is within ``tol`` (relative) of its threshold: labels
    there could differ between numpy and Prometheus arithmetic. Scores computed by the same
    operations in both (static and band scores of the value, the difference or a seasonal
    residual; stuck-value run lengths) are never near: they are bitwise equal."""
    conds = [(spec.structure, spec.threshold)]
    if spec.gate is not None:
        conds.append((spec.gate.structure, spec.gate.threshold))
    near = np.zeros(len(values), dtype=bool)
    for st, thr in conds:
        s = _directional(st, values, thr)
        near |= np.abs(s - thr) <= tol * max(1.0, abs(thr))
    return [int(i) for i in np.flatnonzero(near)]


def regular_step(timestamps: IntArray) -> int | None:
    """The constant spacing of ``timestamps``, or ``None`` when they are not regular."""
    d = np.diff(np.asarray(timestamps, dtype=np.int64))
    if len(d) == 0 or not (d == d[0]).all() or d[0] <= 0:
        return None
    return int(d[0])


def unit_test_file(
    export: SetExport,
    rule_file_path: str,
    values: FloatArray,
    expected: Mapping[str, BoolArray],
    series: str | None = None,
) -> str:
    """A ``promtool test rules`` file: ``values`` as the input series, one sample per step from
    time 0, and at every step, for every exported rule, the alerts firing exactly where
    ``expected`` (the detector's labels) is true."""
    name, labels = selector_labels(series or export.selector)
    sel = name + (
        "{" + ", ".join(f"{k}={json.dumps(v)}" for k, v in labels.items()) + "}" if labels else ""
    )
    step = export.step_ms
    checks: list[YamlValue] = []
    for i in range(len(values)):
        for rid in export.specs:
            exp: list[YamlValue] = []
            if bool(expected[rid][i]):
                exp.append(
                    {
                        "exp_labels": {**labels, **export.labels[rid]},
                        "exp_annotations": export.annotations[rid],
                    }
                )
            checks.append(
                {
                    "eval_time": duration(i * step),
                    "alertname": export.alert_names[rid],
                    "exp_alerts": exp,
                }
            )
    doc: dict[str, YamlValue] = {
        "rule_files": [rule_file_path],
        "evaluation_interval": duration(step),
        "tests": [
            {
                "interval": duration(step),
                "input_series": [
                    {"series": sel, "values": " ".join(number(float(v)) for v in values)}
                ],
                "alert_rule_test": checks,
            }
        ],
    }
    head = (
        f"# Generated by `argos export prometheus --test-from`: rule set {export.ruleset_id},\n"
        f"# {len(values)} points; expected alerts are the labels of `argos detect`.\n"
    )
    return head + dump(doc)


# ------------------------------------------------------------------------------------------------
# What to export: one set, or the units of a training run folder
# ------------------------------------------------------------------------------------------------


class ExportError(ValueError):
    """The export's inputs are inconsistent (missing selector, not a rule-set folder, ...)."""


@dataclass(frozen=True)
class Unit:
    """A rule set to export, with the selector of its metric (empty: none was given)."""

    directory: Path
    selector: str


def _training_series(directory: Path) -> list[str]:
    try:
        m = load_ruleset(directory, check_contract=False).manifest
    except ValueError:
        return []
    return list(m.training.series) if m.training is not None else []


def plan_units(
    rules: Path, selector: str | None, selectors: Mapping[str, str] | None
) -> list[Unit]:
    """The sets under ``rules`` (a set, or a run folder of sets) and their selectors.

    A single set takes ``selector`` (or the mapping's entry for its folder name). In a run folder,
    each unit's selector is the mapping's entry for the folder name, or for the unit's training
    series when it has exactly one; a unit with none gets an empty selector (reported, not
    exported).
    """
    if is_ruleset(rules):
        sel = selector or (selectors or {}).get(rules.name, "")
        if not sel:
            raise ExportError("give --selector (or a --selectors entry) for the rule set's metric")
        return [Unit(rules, sel)]
    if not rules.is_dir():
        raise ExportError(f"{rules}: not a rule-set folder nor a training run folder")
    units = run_units(rules)
    if not units:
        raise ExportError(f"{rules}: no rule-set folders (manifest.json) inside")
    if selectors is None:
        raise ExportError("a training run folder needs --selectors FILE (unit -> selector)")
    out = []
    for d in units:
        sel = selectors.get(d.name, "")
        series = _training_series(d)
        if not sel and len(series) == 1:
            sel = selectors.get(series[0], "")
        out.append(Unit(d, sel))
    return out


def export_units(units: Sequence[Unit], step_ms: int) -> list[SetExport]:
    """Export every unit; one without a selector is reported with all its rules not exported.

    Two units holding identical rule sets (same id) get groups named after their folders too."""
    out: list[SetExport] = []
    seen: set[str] = set()
    for u in units:
        if u.selector:
            e = export_ruleset(u.directory, u.selector, step_ms)
            if e.slug in seen:
                slug = f"{e.slug}_{metric_part(u.directory.name)}"
                e = export_ruleset(u.directory, u.selector, step_ms, slug)
            seen.add(e.slug)
            out.append(e)
            continue
        m = load_ruleset(u.directory).manifest
        e = SetExport(u.directory, m.id, m.name or m.id, "", step_ms)
        e.outcomes = [
            RuleOutcome(r.id, False, f"no selector for unit {u.directory.name!r}") for r in m.rules
        ]
        out.append(e)
    return out


def read_series_csv(path: Path) -> tuple[IntArray, FloatArray]:
    """``timestamp,value`` rows (a header names the columns; other columns are ignored).

    Timestamps are integers (epoch seconds, or point numbers) or dates (read as UTC seconds).
    """
    import pandas as pd

    with path.open(encoding="utf-8") as fh:
        first = fh.readline().lower()
    header = "value" in first
    df = pd.read_csv(path, header=0 if header else None)
    if header:
        df.columns = [str(c).strip().lower() for c in df.columns]
        tcol = "timestamp" if "timestamp" in df.columns else "timestamps"
        if tcol not in df.columns:
            raise ExportError(f"{path}: a header with 'value' needs a 'timestamp' column")
        ts, vs = df[tcol], df["value"]
    else:
        if df.shape[1] < 2:
            raise ExportError(f"{path}: expected timestamp,value rows")
        ts, vs = df.iloc[:, -2], df.iloc[:, -1]
    if pd.api.types.is_numeric_dtype(ts):
        t = ts.to_numpy(dtype=np.int64)
    else:
        since = pd.to_datetime(ts, utc=True) - pd.Timestamp(0, tz="UTC")
        t = (since // pd.Timedelta(seconds=1)).to_numpy(dtype=np.int64)
    return t, vs.to_numpy(dtype=np.float64)
