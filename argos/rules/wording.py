"""What a rendered rule says in words: its title and its normal and abnormal conditions.

:func:`rule_words` writes the docstring text of a :class:`~argos.rules.grammar.RuleSpec` with its
fitted numbers, and the text says what those numbers mean for the metric, not how the score is
computed: a relative change of 0.3 reads "to at least 1.3 times the mean", a log-ratio of 1.5 in a
variance shift reads "at least 4.48 times its spread", a spectral saliency ratio names the factor
the point's saliency reaches. The thresholds it is given are reachable ones (the builtin generator
narrows or drops the others, :mod:`argos.rules.reach`), so no sentence describes an event that
cannot happen. The text is part of the rendered rule (and so of what
:mod:`argos.rules.recognise` compares byte for byte): changing it changes the rules written.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from argos.rules.grammar import SCORERS, TRANSFORMS, RuleSpec, Structure, fmt_number

_SCORER_TITLES = {
    "static": "static bound",
    "band": "band around the train median",
    "zscore": "rolling z-score",
    "robust_z": "robust z-score (median/MAD)",
    "relative": "relative change",
    "level_shift": "level shift",
    "variance_shift": "variance shift",
    "cusum": "CUSUM",
    "flat": "stuck-value run length",
    "spectral": "spectral-residual saliency",
}
_TRANSFORM_TITLES = {
    "value": "the value",
    "diff": "the first difference",
    "seasonal": "the seasonal residual",
    "ewma": "the EWMA residual",
}
_DIRECTION_TITLES = {"up": "upward", "down": "downward", "both": "both directions"}

_FIXED: dict[str, tuple[str, str]] = {
    "static": ("{signal} stays {inside} {thr}", "{signal} is {dir} {thr}"),
    "band": (
        "{signal} stays within {thr} of {center} (the train median)",
        "{signal} is more than {thr} {dir} {center} (the train median)",
    ),
    "zscore": (
        "{signal} stays within {thr} standard deviations of its mean over the previous "
        "{window} points",
        "{signal} is more than {thr} standard deviations {dir} the mean of the previous "
        "{window} points",
    ),
    "robust_z": (
        "{signal} stays within {thr} robust deviations (1.4826 x MAD, at least {min_scale}, "
        "the data's resolution) of the median of the previous {window} points",
        "{signal} is more than {thr} robust deviations {dir} the median of the previous "
        "{window} points",
    ),
    "level_shift": (
        "the mean of {signal} over the last {recent} points stays within {thr} standard "
        "deviations of its mean over the {window} points before them",
        "the mean of {signal} over the last {recent} points shifts more than {thr} standard "
        "deviations {dir} its mean over the {window} points before them",
    ),
    "flat": (
        "{signal} keeps changing: fewer than {thr} identical points in a row",
        "{signal} is stuck: {thr} or more identical points in a row",
    ),
}
"""Normal and abnormal conditions whose numbers read as they are (fields: the params, ``signal``,
``thr``, ``dir`` (above / below / above or below) and ``inside``)."""


def _num(v: float) -> str:
    return f"{v:.4g}"


def _factor(log_ratio: float) -> str:
    """e^log_ratio in words (no overflow)."""
    if log_ratio > 700:
        return f"e^{_num(log_ratio)}"
    return _num(math.exp(log_ratio))


def _relative(st: Structure, thr: float, f: dict[str, str]) -> tuple[str, str]:
    """s = (x - m) / |m|: the signal against the previous mean m, in multiples of |m|."""
    mean = f"the mean of the previous {f['window']} points"
    up, down = _num(1 + thr), _num(1 - thr)
    low = "zero" if 1 - thr == 0 else f"{down} times it"
    low += " (below zero)" if 1 - thr < 0 else ""
    if st.direction == "up":
        return (
            f"{f['signal']} stays below {mean} plus {f['thr']} x |mean|",
            f"{f['signal']} rises above {mean} by at least {f['thr']} x |mean| (for a positive "
            f"mean: to at least {up} times it)",
        )
    if st.direction == "down":
        return (
            f"{f['signal']} stays above {mean} minus {f['thr']} x |mean|",
            f"{f['signal']} falls below {mean} by at least {f['thr']} x |mean| (for a positive "
            f"mean: to at most {low})",
        )
    return (
        f"{f['signal']} stays within {f['thr']} x |mean| of {mean}",
        f"{f['signal']} moves away from {mean} by at least {f['thr']} x |mean| (for a positive "
        f"mean: to at least {up} times it, or to at most {low})",
    )


def _variance_shift(st: Structure, thr: float, f: dict[str, str]) -> tuple[str, str]:
    """s = log(recent spread / earlier spread): a factor between the two spreads."""
    spread = f"the spread (std) of {f['signal']} over the last {f['recent']} points"
    before = f"its spread over the {f['window']} points before them"
    grow, shrink = _factor(thr), _factor(-thr)
    flat = ""
    if thr >= math.log(1e4) and st.direction != "down":
        flat = (
            "; a factor that large follows a flat stretch only (a spread is counted as at "
            "least 1e-9 x (1 + |mean|))"
        )
    if st.direction == "up":
        return (
            f"{spread} stays below {grow} times {before} (log-ratio {f['thr']})",
            f"{spread} is at least {grow} times {before} (log-ratio {f['thr']} or more){flat}",
        )
    if st.direction == "down":
        return (
            f"{spread} stays above {shrink} times {before} (log-ratio {_num(-thr)})",
            f"{spread} is at most {shrink} times {before} (log-ratio {_num(-thr)} or less)",
        )
    return (
        f"{spread} stays between {shrink} and {grow} times {before} (log-ratio within +/-"
        f"{f['thr']})",
        f"{spread} is at least {grow} times or at most {shrink} times {before} (log-ratio "
        f"beyond +/-{f['thr']}){flat}",
    )


def _cusum(st: Structure, thr: float, f: dict[str, str]) -> tuple[str, str]:
    """The CUSUM of clipped z-scores less a drift, restarted at most ``window`` points back."""
    side, shift = {
        "up": ("above", "rise"),
        "down": ("below", "fall"),
        "both": ("above or below", "shift"),
    }[st.direction]
    sums = (
        f"the cumulative sum of {f['signal']}'s z-scores {side} its mean over the previous "
        f"{f['window']} points (each z-score clipped to 10, less a drift of {f['drift']} per "
        f"point, summed over at most the last {f['window']} points)"
    )
    return f"{sums} stays below {f['thr']}", f"{sums} reaches {f['thr']}: a sustained {shift}"


def _spectral(st: Structure, thr: float, f: dict[str, str]) -> tuple[str, str]:
    """s = saliency / mean saliency - 1."""
    times = _num(1 + thr)
    mean = f"the mean saliency of the last {f['window']} points"
    return (
        f"the spectral-residual saliency of {f['signal']} stays below {times} times {mean}",
        f"{f['signal']} is salient: its spectral-residual saliency is at least {times} times "
        f"{mean}",
    )


_COMPUTED: dict[str, Callable[[Structure, float, dict[str, str]], tuple[str, str]]] = {
    "relative": _relative,
    "variance_shift": _variance_shift,
    "cusum": _cusum,
    "spectral": _spectral,
}
"""Conditions whose score is a ratio or a sum: the text gives the factor or the sum it means."""


def rule_words(spec: RuleSpec) -> tuple[str, str, str]:
    """The rule's title, normal condition and abnormal condition (with the gate and cool-down)."""
    title, normal, abnormal = condition_words(spec.structure, spec.threshold)
    if spec.gate is not None:
        g_title, g_normal, g_abnormal = condition_words(spec.gate.structure, spec.gate.threshold)
        title += f", AND {g_title}"
        normal += f", or {g_normal}"
        abnormal += f", and at the same point {g_abnormal}"
    if spec.cooldown:
        abnormal += (
            f"; it alarms once per burst: only when the condition was off for the "
            f"{spec.cooldown} points before"
        )
    return title, normal[0].upper() + normal[1:], abnormal[0].upper() + abnormal[1:]


def condition_words(st: Structure, threshold: float) -> tuple[str, str, str]:
    """Title, normal and abnormal condition of one shape with its threshold."""
    t, sc = TRANSFORMS[st.transform], SCORERS[st.scorer]
    p = {k: (f"{v:.6g}" if k == "center" else fmt_number(v)) for k, v in st.params}
    signal = t.phrase.format(**p)
    thr = _num(threshold)
    # a downward static rule fires at value <= -threshold: say that bound, whatever its sign
    thr_txt = _num(-threshold) if (st.direction == "down" and sc.name == "static") else thr
    dir_word = {"up": "above", "down": "below", "both": "above or below"}[st.direction]
    if sc.name == "static":
        dir_word = {"up": "at or above", "down": "at or below", "both": "beyond +/-"}[st.direction]
    inside = {"up": "below", "down": "above", "both": "within +/-"}[st.direction]
    fields = {**p, "signal": signal, "thr": thr_txt, "dir": dir_word, "inside": inside}
    if sc.name in _COMPUTED:
        normal, abnormal = _COMPUTED[sc.name](st, threshold, fields)
    else:
        normal_text, abnormal_text = _FIXED[sc.name]
        normal, abnormal = normal_text.format(**fields), abnormal_text.format(**fields)
    if sc.name == "band" and st.direction != "both":
        side = "above" if st.direction == "up" else "below"
        normal = f"{signal} stays at most {thr} {side} {p['center']} (the train median)"
    if st.persistence > 1:
        abnormal += f", for {st.persistence} consecutive points"
    title = (
        f"{_SCORER_TITLES[sc.name]} of {_TRANSFORM_TITLES[t.name]}, "
        f"{_DIRECTION_TITLES[st.direction]}"
    )
    return title, normal, abnormal
