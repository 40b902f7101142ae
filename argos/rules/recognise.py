"""Recognise a rule as a rendering of the builtin generator's templates, or say why it is not one.

A translation to another language is only as trustworthy as the claim that the rule *is* a template.
That claim is proved, never guessed: the template spec is re-derived from structured data (the rule
id, which is :attr:`~argos.rules.grammar.RuleSpec.name`, and the manifest's params, which are the
rule's ``PARAMS``), then :func:`~argos.rules.templates.render` renders that spec and the result must
equal the rule file byte for byte. A rule edited by hand, written by an LLM, or rendered by a
different version of the templates fails that comparison and is reported with the reason; the code
itself is never parsed.

The only free text read is the docstring's ``Fitted by the Argos builtin generator: ...`` line (the
spec's ``metrics``, which change nothing but the docstring), and only to reproduce the rendering.

Two users: the Prometheus export (:mod:`argos.export.prometheus`) translates only proved
templates, and the online detector runs a proved template in its own process
(:func:`trusted_template`): its code is then our own rendering, byte for byte, whatever wrote the
file, so it needs no worker process; a file that differs by one byte stays untrusted code.
"""

from __future__ import annotations

import ast
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from argos.rules.grammar import SCORERS, TRANSFORMS, Gate, RuleSpec, Structure
from argos.rules.templates import render

_RESERVED = ("threshold", "persistence", "cooldown")

TRUSTED_MAX_LOOKBACK = 20_000
"""The longest ``LOOKBACK`` of a template run in the detector's own process (its history and its
temporaries grow with it); a longer one runs in a worker process, under the workers' limits."""


class RuleIdentity(Protocol):
    """What recognition reads of a rule besides its code: the id and the params (a manifest's
    :class:`~argos.rules.artifacts.RuleEntry`, or a rule the detector loaded)."""

    @property
    def id(self) -> str: ...

    @property
    def params(self) -> Mapping[str, object]: ...


@dataclass(frozen=True)
class Recognised:
    """A rule proved to be ``render(spec)``."""

    rule_id: str
    spec: RuleSpec
    code: str


@dataclass(frozen=True)
class NotTemplate:
    """A rule that is not (provably) a builtin template rendering, and why."""

    rule_id: str
    reason: str


def _number(v: object) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return float(v)


def _structures(
    name: str, params: Mapping[str, float], persistence: int
) -> list[tuple[Structure, str]]:
    """Every structure whose params are exactly ``params`` and whose name starts ``name``;
    returned with the rest of ``name`` after it."""
    found: list[tuple[Structure, str]] = []
    for t in TRANSFORMS.values():
        for sc in SCORERS.values():
            keys = (*t.params, *sc.params)
            if sorted(keys) != sorted(params) or len(set(keys)) != len(keys):
                continue
            shape = tuple((k, params[k]) for k in keys)
            for direction in sc.directions:
                st = Structure(t.name, sc.name, shape, direction, persistence)
                if name == st.name or name.startswith(st.name + "_and_"):
                    found.append((st, name[len(st.name) :]))
    return found


def _metrics(code: str) -> dict[str, float]:
    """The ``metrics`` the docstring records (``Fitted by the Argos builtin generator: ...``)."""
    try:
        doc = ast.get_docstring(ast.parse(code), clean=False) or ""
    except SyntaxError:
        return {}
    flat = " ".join(line.strip() for line in doc.splitlines())
    m = re.search(r"Fitted by the Argos builtin generator: (.*?)\.(?:\s|$)", flat)
    if m is None:
        return {}
    out: dict[str, float] = {}
    for part in m.group(1).split(", "):
        key, _, value = part.rpartition(" ")
        try:
            out[key] = float(value)
        except ValueError:
            return {}
    return out


def recognise(entry: RuleIdentity, code: str) -> Recognised | NotTemplate:
    """Prove ``code`` (the rule file of ``entry``) renders a builtin template, or say why not."""
    rid = entry.id
    raw = dict(entry.params)
    nums: dict[str, float] = {}
    for k, v in raw.items():
        n = _number(v)
        if n is None:
            return NotTemplate(rid, f"param {k!r} is not a number")
        nums[k] = n
    if "threshold" not in nums or "persistence" not in nums:
        return NotTemplate(rid, "no 'threshold'/'persistence' params: not a template rule")
    persistence = int(nums["persistence"])
    cooldown = int(nums.get("cooldown", 0))
    if persistence != nums["persistence"] or persistence < 1 or cooldown != nums.get("cooldown", 0):
        return NotTemplate(rid, "persistence and cool-down must be whole numbers")
    own = {k: v for k, v in nums.items() if k not in _RESERVED and not k.startswith("gate_")}
    gate_params = {k[5:]: v for k, v in nums.items() if k.startswith("gate_")}
    gate_threshold = gate_params.pop("threshold", None)
    if gate_params and gate_threshold is None:
        return NotTemplate(rid, "gate params without 'gate_threshold'")
    metrics = _metrics(code)
    described: list[str] = []
    for st, rest in _structures(rid, own, persistence):
        gates: list[Gate | None] = [None]
        if gate_threshold is not None:
            if not rest.startswith("_and_"):
                continue
            shapes = _structures(rest[5:], gate_params, 1)
            gates = [Gate(g, gate_threshold) for g, tail in shapes if tail == ""]
        elif rest:
            continue
        for gate in gates:
            spec = RuleSpec(st, nums["threshold"], cooldown, gate=gate)
            described.append(spec.name)
            for candidate in (spec, RuleSpec(st, spec.threshold, cooldown, metrics, gate)):
                if render(candidate) == code:
                    return Recognised(rid, candidate, code)
    if described:
        return NotTemplate(
            rid,
            f"the id and params describe template {described[0]!r}, but the rule file differs "
            "from that template's rendering (edited, or written by another version)",
        )
    return NotTemplate(rid, "the id and params match no builtin template")


def trusted_template(entry: RuleIdentity, code: str, lookback: int) -> RuleSpec | None:
    """The template ``code`` renders, when the online detector may run it in its own process.

    That needs all of: the code is byte for byte :func:`~argos.rules.templates.render` of the
    spec that the id and params describe (:func:`recognise`), the ``lookback`` the detector
    would use is the rendering's own ``LOOKBACK``, and it is at most
    :data:`TRUSTED_MAX_LOOKBACK`. Anything else (an edited byte, another lookback) is None: the
    rule is untrusted and runs in a worker process.
    """
    # the key keeps each value's type: True == 1 and 60 == 60.0, but recognition tells them apart
    params = tuple(sorted((k, type(v).__name__, v) for k, v in entry.params.items()))
    try:
        hash(params)
    except TypeError:  # a value that is not a number: not a template rule
        return None
    return _trusted_template(entry.id, params, code, lookback)


@functools.lru_cache(maxsize=4096)
def _trusted_template(
    rule_id: str, params: tuple[tuple[str, str, object], ...], code: str, lookback: int
) -> RuleSpec | None:
    """:func:`trusted_template`, remembered: a set's rules are recognised whenever its engines
    start (the serving one, the checks' reference, the kernel's last-point forms, each reload),
    and each recognition renders the template and parses the rule."""
    found = recognise(_Identity(rule_id, {k: v for k, _, v in params}), code)
    if not isinstance(found, Recognised):
        return None
    need = max(1, found.spec.lookback())
    if lookback != need or need > TRUSTED_MAX_LOOKBACK:
        return None
    return found.spec


@dataclass(frozen=True)
class _Identity:
    """A rule's id and params, as :func:`recognise` reads them."""

    id: str
    params: Mapping[str, object]
