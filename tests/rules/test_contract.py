"""Static gate and LLM-output extraction: precise, line-numbered messages."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from argos.rules.contract import (
    RuleContractError,
    RuleInfo,
    check_rule,
    decode_rule_source,
    extract_code,
)

ROOT = Path(__file__).resolve().parents[2]

GOOD = '''"""Normal: value below t. Abnormal: value at or above t."""
import math
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

PARAMS = {"t": 5.0, "window": 10, "use_abs": True, "mode": "upper", "neg": -2}
PARAM_RANGES = {"t": (1.0, 10.0), "window": [2, 50]}
LOOKBACK = 10


def detect(values, timestamps, params):
    return np.abs(values) >= params["t"] * math.sqrt(1.0)
'''


def _issues(code: str) -> tuple[str, list[str]]:
    with pytest.raises(RuleContractError) as err:
        check_rule(code)
    return err.value.status, [str(i) for i in err.value.issues]


def test_good_rule_passes_and_reports_its_constants() -> None:
    info = check_rule(GOOD)
    assert info == RuleInfo(
        params={"t": 5.0, "window": 10, "use_abs": True, "mode": "upper", "neg": -2},
        lookback=10,
        docstring="Normal: value below t. Abnormal: value at or above t.",
        param_ranges={"t": (1.0, 10.0), "window": (2.0, 50.0)},
    )


@pytest.mark.parametrize("path", sorted((ROOT / "rules" / "examples").glob("*.py")))
def test_example_rules_pass_the_gate(path: Path) -> None:
    info = check_rule(path.read_text())
    assert info.docstring and info.params


def test_syntax_error_has_line() -> None:
    status, issues = _issues(
        '"""d"""\nPARAMS = {}\nLOOKBACK = 0\ndef detect(v, t, p)\n    return v\n'
    )
    assert status == "syntax_error"
    assert issues[0].startswith("line 4: syntax error")


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        (
            "import os",
            "line 13: import of 'os' is not allowed (allowed modules: math, numpy, statistics)",
        ),
        ("from subprocess import run", "line 13: import of 'subprocess' is not allowed"),
        (
            "import numpy.ctypeslib",
            "line 13: import of 'numpy.ctypeslib' is not allowed (no I/O or ctypes)",
        ),
        ("from numpy import load", "line 13: importing 'load' from numpy is not allowed"),
        ("from numpy import *", "line 13: 'from numpy import *' is not allowed"),
        ("x = ().__class__", "line 13: access to private or dunder attribute '.__class__'"),
        ("x = np._core", "line 13: access to private or dunder attribute '._core'"),
        ("x = eval('1')", "line 13: use of 'eval' is not allowed"),
        ("x = open('f')", "line 13: use of 'open' is not allowed"),
        ("x = getattr(np, 'load')", "line 13: use of 'getattr' is not allowed"),
        ("x = __builtins__", "line 13: use of dunder name '__builtins__' is not allowed"),
        ("np.save('x', 1)", "line 13: access to attribute '.save' is not allowed (no I/O)"),
        (
            "x = (lambda: (yield)).gi_frame",
            "line 13: access to attribute '.gi_frame' is not allowed",
        ),
        ("from . import x", "line 13: relative imports are not allowed"),
        ("f = np.ma.core.builtins.open", "line 13: access to attribute '.builtins' is not allowed"),
        ("f = np.ma.core.inspect", "line 13: access to attribute '.inspect' is not allowed"),
        ("g = np.ma.core.operator.attrgetter", "line 13: access to attribute '.operator'"),
    ],
)
def test_forbidden_constructs_are_reported_with_line(snippet: str, expected: str) -> None:
    code = GOOD + snippet + "\n"
    status, issues = _issues(code)
    assert status == "static_reject"
    assert any(i.startswith(expected) for i in issues), issues


def test_all_problems_listed_sorted_by_line() -> None:
    code = "import os\nx = open('a')\n"
    status, issues = _issues(code)
    assert status == "static_reject"
    assert issues == [
        "missing module constant LOOKBACK (an int literal >= 0)",
        "missing module constant PARAMS (a dict literal, may be empty {})",
        "missing top-level function detect(values, timestamps, params)",
        "line 1: import of 'os' is not allowed (allowed modules: math, numpy, statistics)",
        "line 1: missing module docstring stating the normal and abnormal conditions",
        "line 2: use of 'open' is not allowed",
    ]


@pytest.mark.parametrize(
    ("replace", "by", "expected"),
    [
        (
            "def detect(values, timestamps, params):",
            "def detect(values, params):",
            "line 11: detect must take exactly three positional parameters "
            "(values, timestamps, params); it takes (values, params)",
        ),
        (
            "def detect(values, timestamps, params):",
            "async def detect(values, timestamps, params):",
            "line 11: detect must be a plain def",
        ),
        ("LOOKBACK = 10", "LOOKBACK = 2.5", "line 8: LOOKBACK must be an int literal >= 0"),
        ("LOOKBACK = 10", "LOOKBACK = -1", "line 8: LOOKBACK must be an int literal >= 0"),
        (
            '"t": 5.0,',
            '"t": np.pi,',
            "line 6: PARAMS['t'] must be a number, boolean or string literal",
        ),
        ("PARAMS = {", "PARAMS = dict(a=1) or {", "line 6: PARAMS must be a dict literal"),
        ('PARAMS = {"t"', "PARAMS = {1", "line 6: PARAMS keys must be string literals"),
        (
            "PARAM_RANGES = {",
            "PARAM_RANGES = dict(t=(1, 2)) or {",
            "line 7: PARAM_RANGES must be a dict literal like {'k': (1.0, 10.0)}",
        ),
        ('PARAM_RANGES = {"t"', "PARAM_RANGES = {2", "line 7: PARAM_RANGES keys must be string"),
        ('"t": (1.0, 10.0)', '"t": (10.0, 1.0)', "line 7: PARAM_RANGES['t']: low 10.0 > high 1.0"),
        (
            '"t": (1.0, 10.0)',
            '"zz": (1.0, 10.0)',
            "line 7: PARAM_RANGES names 'zz', which is not in PARAMS",
        ),
        (
            '"window": [2, 50]',
            '"mode": [2, 50]',
            "line 7: PARAM_RANGES['mode']: PARAMS['mode'] not numeric",
        ),
        (
            '"""Normal: value below t. Abnormal: value at or above t."""',
            "",
            "line 1: missing module docstring",
        ),
    ],
)
def test_contract_violations(replace: str, by: str, expected: str) -> None:
    code = GOOD.replace(replace, by)
    assert code != GOOD
    status, issues = _issues(code)
    assert status == "static_reject"
    assert any(i.startswith(expected) for i in issues), issues


def test_oversize_code_rejected_before_parsing() -> None:
    code = GOOD + "#" * 30_000 + "\n"
    status, issues = _issues(code)
    assert status == "static_reject"
    assert issues == [f"rule code is {len(code)} bytes, over the limit of 20000 bytes"]
    assert check_rule(code, max_bytes=100_000).lookback == 10


def test_extract_python_fence_with_prose_and_trailing_junk() -> None:
    text = "Here is the rule. Normal rules: ...\n\n```python\n" + GOOD + "```\n\nThis flags spikes."
    assert extract_code(text) == GOOD


def test_extract_prefers_python_block_defining_detect() -> None:
    text = "```\nprint('x')\n```\n```python\nx = 1\n```\n```python\n" + GOOD + "```"
    assert extract_code(text) == GOOD


def test_extract_unterminated_fence_drops_trailing_garbage() -> None:
    text = "```python\n" + GOOD + "this line is not python because\n"
    assert extract_code(text) == GOOD


def test_extract_without_fence_skips_leading_prose() -> None:
    text = "Sure! The rule below flags big values.\n" + GOOD
    assert extract_code(text) == GOOD


def test_extract_nothing_parseable() -> None:
    with pytest.raises(ValueError, match="no parseable Python"):
        extract_code("I cannot help with that (")


_PROSE = st.text(
    alphabet=st.characters(blacklist_characters="`", blacklist_categories=("Cs",)), max_size=200
)


@settings(max_examples=60, deadline=None)
@given(before=_PROSE, after=_PROSE, junk=st.sampled_from(["", "Hope this helps!", "}", "    )"]))
def test_extract_code_recovers_fenced_rule_from_any_prose(
    before: str, after: str, junk: str
) -> None:
    text = f"{before}\n```python\n{GOOD}{junk}\n```\n{after}"
    assert extract_code(text) == GOOD


# Red-team class 8: inputs that made the parser itself raise.
def test_deeply_nested_code_is_static_reject_not_recursion_error() -> None:
    for depth in (150, 5000):  # the depth limit, then the parser's own recursion limit
        code = '"""Normal: x. Abnormal: y."""\nX = ' + "-" * depth + "1\n"
        with pytest.raises(RuleContractError) as info:
            check_rule(code, max_bytes=10**6)
        assert info.value.status == "static_reject"
        assert "nested" in str(info.value)
    with pytest.raises(ValueError, match="no parseable"):
        extract_code("```python\nX = " + "-" * 5000 + "1\n```")


def test_non_utf8_source_is_static_reject() -> None:
    with pytest.raises(RuleContractError) as info:
        decode_rule_source(b'"""doc"""\nX = 1\n# \xff\n')
    assert info.value.status == "static_reject"
    assert str(info.value).startswith("line 3: rule source is not UTF-8 text")
    assert decode_rule_source("é".encode()) == "é"
