"""Rendering a rule spec into a rule module, and compiling the template code in-process.

Every rule the builtin generator exports is a Python module written by :func:`render` from a
:class:`~argos.rules.grammar.RuleSpec`, following the rule contract (``detect(values, timestamps,
params)``, ``PARAMS``, ``LOOKBACK``, a docstring with the normal and abnormal conditions
(:mod:`argos.rules.wording`); numpy only; causal): the helpers the spec's transform and scorer call
(:mod:`argos.rules.helper_sources`), a ``score`` function (and a ``gate_score`` for an AND gate),
then ``detect``: direction, persistence, threshold, gate, cool-down.

The score code is the same text in every rendering of a template (numbers live in ``PARAMS``), so
the search compiles each (transform, scorer) pair once with :func:`compile_score` and sweeps
thresholds over its output; the rule exported afterwards computes exactly the same numbers
(:func:`directional` runs the rendered persistence step, :data:`apply_cooldown` the rendered
cool-down). Templates are our trusted code: compiling them in-process is fine, unlike LLM output,
which only the sandbox runs.
"""

from __future__ import annotations

import math
import re
import textwrap
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from argos._types import BoolArray, FloatArray, IntArray
from argos.rules.contract import exec_rule_source
from argos.rules.grammar import SCORERS, TRANSFORMS, Direction, RuleSpec
from argos.rules.helper_sources import HELPER_SOURCES
from argos.rules.wording import rule_words

ScoreFn = Callable[[FloatArray, IntArray, Mapping[str, float]], FloatArray]
DetectFn = Callable[[FloatArray, IntArray, Mapping[str, float]], BoolArray]


def _helpers_for(*keys: tuple[str, str]) -> list[str]:
    names: list[str] = []
    for transform, scorer in keys:
        for h in (*TRANSFORMS[transform].helpers, *SCORERS[scorer].helpers):
            if h not in names:
                names.append(h)
    return names


def _score_def(transform: str, scorer: str, name: str, doc: str) -> str:
    t, sc = TRANSFORMS[transform], SCORERS[scorer]
    body = re.sub(r"params\['(\w+)'\]", r'params["\1"]', t.code + sc.code)
    return (
        f"\n\ndef {name}(values, timestamps, params):\n"
        f'    """{doc}"""\n'
        f"    values = np.asarray(values, dtype=float)\n"
        f"{body}"
        f"    return np.asarray(s, dtype=float)\n"
    )


_SCORE_DOC = "Score of each point: larger means more anomalous in the rule's direction."
_GATE_DOC = "Score of the second condition (the gate), on its own parameters."


def score_source(transform: str, scorer: str) -> str:
    """Source of the helpers and the ``score(values, timestamps, params)`` function of a pair."""
    helpers = "".join("\n" + HELPER_SOURCES[h] for h in _helpers_for((transform, scorer)))
    return helpers + _score_def(transform, scorer, "score", _SCORE_DOC)


_DIRECTION_CODE: dict[Direction, str] = {
    "up": "    s = score(values, timestamps, params)\n",
    "down": "    s = -score(values, timestamps, params)\n",
    "both": "    s = np.abs(score(values, timestamps, params))\n",
}

_HOLD_CODE = """    if k > 1:
        # the smallest score of the last k points: the condition held k points in a row
        held = np.full(len(s), np.nan)
        if len(s) >= k:
            last_k = held[k - 1 :]
            last_k[:] = s[k - 1 :]
            for j in range(1, k):
                np.minimum(last_k, s[k - 1 - j : len(s) - j], out=last_k)
        s = held
"""
"""The persistence step of a rendered ``detect`` (score ``s``, ``k`` points in a row); the
generator runs the same code through :func:`directional`."""

_DETECT_TAIL = (
    '    k = int(params["persistence"])\n'
    + _HOLD_CODE
    + '    alarm = np.nan_to_num(s, nan=-np.inf) >= params["threshold"]\n'
)


def _compile_hold() -> Callable[[FloatArray, int], FloatArray]:
    """:data:`_HOLD_CODE` as a function ``hold(s, k)``, so :func:`directional` runs the very lines
    a rendered rule runs."""
    namespace: dict[str, Any] = {"np": np}
    code = "def hold(s, k):\n" + _HOLD_CODE + "    return s\n"
    exec(compile(code, "<rendered persistence step>", "exec"), namespace)
    hold: Callable[[FloatArray, int], FloatArray] = namespace["hold"]
    return hold


_hold = _compile_hold()

_GATE_CODE: dict[Direction, str] = {
    "up": "    g = gate_score(values, timestamps, gate)\n",
    "down": "    g = -gate_score(values, timestamps, gate)\n",
    "both": "    g = np.abs(gate_score(values, timestamps, gate))\n",
}

_GATE_HEAD = """    # AND: the gate's condition must hold at the same point
    gate = {k[5:]: v for k, v in params.items() if k.startswith("gate_")}
"""

_GATE_TAIL = """    alarm &= np.nan_to_num(g, nan=-np.inf) >= gate["threshold"]
"""

_COOLDOWN_CALL = """    quiet = int(params.get("cooldown", 0))
    if quiet > 0:
        alarm = apply_cooldown(alarm, quiet)
"""

_COOLDOWN_HELPER = '''

def apply_cooldown(alarm, quiet):
    """Keep an alarm only if the condition did not hold in any of the previous `quiet` points
    (one alarm at the start of each burst)."""
    held = np.concatenate(([0], np.cumsum(alarm)))
    idx = np.arange(len(alarm))
    return alarm & (held[idx] == held[np.maximum(idx - quiet, 0)])
'''


def _wrap(text: str, width: int = 96) -> str:
    return "\n".join(textwrap.wrap(text, width=width, subsequent_indent="    "))


def render(spec: RuleSpec) -> str:
    """The rule module's source: docstring, imports, PARAMS, LOOKBACK, helpers, score, detect."""
    st = spec.structure
    title, normal, abnormal = rule_words(spec)
    extra = ""
    if spec.metrics:
        extra = (
            "\nFitted by the Argos builtin generator: "
            + ", ".join(f"{k} {v:.3f}" for k, v in spec.metrics.items())
            + "."
        )
    summary = "\n".join(textwrap.wrap(f"{spec.name}: {title}.", width=96))
    doc = (
        f'"""{summary}\n\n'
        f"{_wrap('Normal: ' + normal + '.')}\n"
        f"{_wrap('Abnormal: ' + abnormal + '.')}\n"
        + (f"{_wrap(extra.strip())}\n" if extra else "")
        + '"""\n'
    )
    params_lines = "".join(f'    "{k}": {_param_literal(v)},\n' for k, v in spec.params.items())
    cooldown = _COOLDOWN_HELPER if spec.cooldown else ""
    if spec.gate is None:
        code = score_source(st.transform, st.scorer)
        gate_code = ""
    else:
        g = spec.gate.structure
        helpers = _helpers_for(st.key, g.key)
        code = "".join("\n" + HELPER_SOURCES[h] for h in helpers)
        code += _score_def(st.transform, st.scorer, "score", _SCORE_DOC)
        code += _score_def(g.transform, g.scorer, "gate_score", _GATE_DOC)
        gate_code = _GATE_HEAD + _GATE_CODE[g.direction] + _GATE_TAIL
    imports = "import math\n\nimport numpy as np\n" if "math." in code else "import numpy as np\n"
    return (
        f"{doc}\n{imports}\n"
        f"PARAMS = {{\n{params_lines}}}\n"
        f"LOOKBACK = {spec.lookback()}\n"
        f"{code}{cooldown}\n\n"
        "def detect(values, timestamps, params=PARAMS):\n"
        '    """True where the point is anomalous (see the module docstring)."""\n'
        f"{_DIRECTION_CODE[st.direction]}{_DETECT_TAIL}{gate_code}"
        f"{_COOLDOWN_CALL if spec.cooldown else ''}"
        "    return alarm\n"
    )


def _param_literal(v: float) -> str:
    if isinstance(v, int) or float(v).is_integer():
        return str(int(v))
    return repr(float(v))


_SCORE_CACHE: dict[tuple[str, str], ScoreFn] = {}


def compile_score(transform: str, scorer: str) -> ScoreFn:
    """Compile (once, in-process: templates are trusted code) the score function of a pair."""
    key = (transform, scorer)
    fn = _SCORE_CACHE.get(key)
    if fn is None:
        ns: dict[str, Any] = {"np": np, "math": math}
        exec(
            compile(score_source(transform, scorer), f"<template {transform}/{scorer}>", "exec"), ns
        )
        fn = ns["score"]
        _SCORE_CACHE[key] = fn
    return fn


def _compiled_cooldown() -> Callable[[BoolArray, int], BoolArray]:
    ns: dict[str, Any] = {"np": np}
    exec(compile(_COOLDOWN_HELPER, "<template cooldown>", "exec"), ns)
    fn: Callable[[BoolArray, int], BoolArray] = ns["apply_cooldown"]
    return fn


apply_cooldown = _compiled_cooldown()
"""The rendered rules' cool-down (same source): keep an alarm only if the condition was off for the
``quiet`` points before it."""


def load_rule(source: str) -> tuple[DetectFn, dict[str, float]]:
    """Compile a rendered rule (trusted, in-process) and return its ``detect`` and ``PARAMS``."""
    detect, ns = exec_rule_source(source, "<rendered rule>", "argos_template_rule")
    return detect, dict(ns["PARAMS"])


def directional(score: FloatArray, direction: Direction, persistence: int) -> FloatArray:
    """The score a rule thresholds: direction applied, then the minimum over ``persistence`` points.

    NaN (warm-up) becomes ``-inf`` so it never reaches a threshold. Matches :func:`render`'s
    ``detect`` exactly: ``detect(...) == (directional(score(...)) >= threshold)`` (no cool-down).
    """
    if direction == "down":
        s = -score
    elif direction == "both":
        s = np.abs(score)
    else:
        s = score
    return np.nan_to_num(_hold(s, persistence), nan=-np.inf)
