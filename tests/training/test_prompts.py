"""Prompt templates (loading, hashing, rendering) and the token economy of data chunks."""

from __future__ import annotations

import hashlib
import itertools
import os
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from argos.llm.interface import estimate_tokens
from argos.metrics import Objective
from argos.training.agents.lab import event_shape
from argos.training.agents.prompts import (
    AGENT_PROMPTS,
    PromptError,
    code_diff,
    describe_rule_set,
    format_metrics,
    format_value,
    generator_messages,
    is_revert,
    load_prompt,
    prompt_hashes,
    render_chunk,
    render_regressions,
    repairer_messages,
    reviewer_messages,
    rule_contract,
    trim_traceback,
)

REPO = Path(__file__).resolve().parents[2]
PUBLISHED_INPUT_TOKENS = 38_000  # per iteration on KPI, Argos paper


def data_dir() -> Path | None:
    env = os.environ.get("ARGOS_DATA_DIR")
    for candidate in (Path(env) if env else None, REPO.parent / "shared" / "datasets"):
        if candidate is not None and candidate.is_dir():
            return candidate
    return None


# --------------------------------------------------------------------------------- templates


@pytest.mark.parametrize("name", AGENT_PROMPTS)
def test_shipped_templates_load_with_hash_and_fields(name: str) -> None:
    prompt = load_prompt(name)
    raw = (REPO / "agents" / f"{name}.md").read_bytes()
    assert prompt.sha256 == hashlib.sha256(raw).hexdigest()
    assert prompt.short_hash == prompt.sha256[:12]
    assert (prompt.system is None) == (name == "contract")  # the contract is one shared text
    assert prompt.optional <= prompt.fields


def test_template_fields_are_the_documented_ones() -> None:
    assert load_prompt("generator").fields == {
        "contract",
        "objective",
        "chunk",
        "task_section",
        "contrast_section",
        "current_section",
        "feedback_section",
    }
    assert load_prompt("repairer").fields == {"contract", "code", "status", "error", "traceback"}
    assert load_prompt("reviewer").fields == {
        "contract",
        "scoring",
        "metrics",
        "fitted",
        "diff",
        "new_code",
        "regressions",
    }
    assert load_prompt("contract").fields == set()
    assert set(prompt_hashes()) == set(AGENT_PROMPTS)


def test_every_agent_that_writes_code_is_given_the_same_rule_contract() -> None:
    contract = rule_contract()
    assert contract.startswith("Rule contract") and "LOOKBACK" in contract
    # what fitting searches, and that ties keep the written defaults
    assert "quarter to four times the default" in contract and "kept on ties" in contract
    generator = generator_messages("@0: 1 2 3")
    repairer = repairer_messages("x = 1", status="runtime_error", error="boom")
    reviewer = reviewer_messages("a = 1", "a = 2", old_metrics={}, new_metrics={})
    for messages in (generator, repairer, reviewer):
        assert messages[0].role == "system" and contract in messages[0].content


def test_the_objective_warns_that_a_cooldown_can_hide_a_second_event() -> None:
    for objective in ("event-pa", "delay:7"):
        text = generator_messages("@0: 1", objective=Objective.parse(objective))[0].content
        assert "hides a second event that begins soon after the first" in text


@pytest.mark.parametrize(
    ("values", "start", "end", "text"),
    [
        (
            [*[1.0, 2.0, 3.0] * 20, 9.0, 10.0, 2.0],
            60,
            63,
            "3 points, values up: peak +5.4, mean +3.4 robust sd from the median of the 60 "
            "points before",
        ),
        (
            [*[5.0] * 10, 4.0, 4.0],
            10,
            12,
            "2 points, values down from the flat level of the 10 points before",
        ),
        ([1.0, 2.0, 9.0], 2, 3, "1 points"),  # too little before it to say more
        ([*[1.0, 2.0] * 5, np.nan, np.nan], 10, 12, "2 points"),  # nothing finite inside
    ],
)
def test_a_missed_event_is_described_by_direction_and_size_never_by_value(
    values: list[float], start: int, end: int, text: str
) -> None:
    assert event_shape(np.array(values), start, end) == text


def test_render_fails_on_missing_and_unknown_fields() -> None:
    prompt = load_prompt("repairer")
    with pytest.raises(PromptError, match=r"needs field\(s\) \['contract', 'error', 'status'\]"):
        prompt.render(code="x = 1")
    with pytest.raises(PromptError, match=r"has no field\(s\) \['stauts'\]"):
        prompt.render(code="x", contract="c", status="s", error="e", stauts="typo")
    text = prompt.render(
        code="x = 1", contract="c", status="runtime_error", error="ZeroDivisionError"
    )
    assert "runtime_error" in text and "x = 1" in text and "$" not in text.replace("$$", "")


def test_template_format_and_its_errors(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text(
        "<!--\ndoc only\noptional: extra\n-->\n"
        "@@system\nCost $$5 for $who.\n@@user\nHi ${who}$extra\n"
    )
    prompt = load_prompt("a", tmp_path)
    messages = prompt.messages(who="ops")
    assert [m.role for m in messages] == ["system", "user"]
    assert messages[0].content == "Cost $5 for ops."
    assert messages[1].content == "Hi ops"
    assert "doc only" not in prompt.render(who="x")
    (tmp_path / "plain.md").write_text("just $one")
    assert [m.role for m in load_prompt("plain", tmp_path).messages(one="1")] == ["user"]
    (tmp_path / "bad.md").write_text("@@system\ncost $5\n@@user\nx")
    with pytest.raises(PromptError, match="invalid placeholder"):
        load_prompt("bad", tmp_path)
    (tmp_path / "nouser.md").write_text("@@system\nx\n")
    with pytest.raises(PromptError, match="no @@user"):
        load_prompt("nouser", tmp_path)
    with pytest.raises(PromptError, match=r"no prompt template 'missing'.*\['a', 'bad'"):
        load_prompt("missing", tmp_path)
    with pytest.raises(PromptError, match="plain name"):
        load_prompt("../etc/passwd", tmp_path)


def test_edited_template_changes_hash(tmp_path: Path) -> None:
    path = tmp_path / "g.md"
    path.write_text("v1 $x")
    first = load_prompt("g", tmp_path).sha256
    path.write_text("v2 $x, longer")
    assert load_prompt("g", tmp_path).sha256 != first


# ---------------------------------------------------------------------------- token economy


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.0, "0"),
        (3.14159, "3.142"),
        (123456.0, "123500"),
        (-42.0, "-42"),
        (0.000123456, "0.0001235"),
        (1e-9, "1e-9"),
        (2.5e17, "2.5e17"),
        (float("nan"), "nan"),
        (-0.00001, "-0.00001"),
    ],
)
def test_format_value(value: float, text: str) -> None:
    assert format_value(value, 4) == text


def test_render_chunk_summarises_normal_and_keeps_anomalies_verbatim() -> None:
    values = np.full(200, 10.0)
    values[100:103] = [50.0, 60.0, 55.0]
    labels = np.zeros(200, dtype=bool)
    labels[100:103] = True
    text = render_chunk(values, labels, context=2, min_summary=10, per_line=10)
    lines = text.splitlines()
    assert lines[0] == "n=200 idx 0-199; 3 anomalous points in 1 window(s)"
    assert lines[1].startswith("[0-97] normal n=98 min 10 max 10 mean 10 sd 0 shape 10 ")
    assert lines[2] == "@98: 10 10 !50 !60 !55 10 10"
    assert lines[3].startswith("[105-199] normal n=95")
    assert len(lines) == 4


def test_render_chunk_timestamps_offsets_and_short_gaps() -> None:
    values = np.arange(60, dtype=float)
    labels = np.zeros(60, dtype=bool)
    labels[[20, 30]] = True
    ts = 1_500_000_000 + 60 * np.arange(60)
    text = render_chunk(values, labels, timestamps=ts, context=1, min_summary=15, start_index=1000)
    header = text.splitlines()[0]
    assert "interval 60s (1440 points a day), starts 2017-07-14 02:40 UTC (Fri)" in header
    # the 8-point gap between the two windows is shorter than min_summary: one verbatim run
    assert "@1019: 19 !20 21 22 23 24 25 26 27 28 29 !30 31" in text
    assert "[1000-1018] normal n=19" in text
    assert "[1032-1059] normal n=28" in text


def test_render_chunk_caps_verbatim_points() -> None:
    values = np.linspace(0, 1, 1000)
    labels = np.zeros(1000, dtype=bool)
    labels[200:700] = True
    text = render_chunk(values, labels, context=0, max_points=40, per_line=100)
    shown = sum(len(line.split()) - 1 for line in text.splitlines() if line.startswith("@"))
    assert shown == 40
    assert "[220-679] elided n=460, 460 anomalous" in text


def test_render_chunk_without_labels_and_errors() -> None:
    text = render_chunk(np.ones(100))
    assert text.splitlines()[0] == "n=100 idx 0-99; 0 anomalous points in 0 window(s)"
    assert text.splitlines()[1].startswith("[0-99] normal n=100")
    assert render_chunk(np.array([])) == "n=0 (empty chunk)"
    with pytest.raises(ValueError, match="labels have shape"):
        render_chunk(np.ones(5), np.zeros(4))
    with pytest.raises(ValueError, match="one-dimensional"):
        render_chunk(np.ones((2, 2)))


def kpi_like(n: int = 2500, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A daily-seasonal 1-minute metric with noise and four labeled incidents (~3% anomalous)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    values = 100 + 30 * np.sin(2 * np.pi * t / 1440) + rng.normal(0, 3, n)
    labels = np.zeros(n, dtype=bool)
    for start, length, jump in [
        (300, 12, 60.0),
        (900, 25, -40.0),
        (1600, 5, 90.0),
        (2200, 30, 35.0),
    ]:
        values[start : start + length] += jump
        labels[start : start + length] = True
    return values, labels, 1_500_000_000 + 60 * t


def test_kpi_like_chunk_prompt_is_far_below_published_tokens() -> None:
    values, labels, ts = kpi_like()
    chunk = render_chunk(values, labels, timestamps=ts)
    naive = "\n".join(
        f"{i},{v},{int(y)}" for i, (v, y) in enumerate(zip(values, labels, strict=True))
    )
    messages = generator_messages(chunk)
    total = estimate_tokens(messages)
    # every anomalous value is shown verbatim with its marker
    assert chunk.count("!") == int(labels.sum()) == 72
    assert estimate_tokens(chunk) < estimate_tokens(naive) / 20
    # a first prompt (no kept set, no feedback yet) leaves room under the 4k mean input tokens
    # per call issue 20 allows; even counting 2 characters per token, far below 38k
    assert total < 3_000
    assert sum(len(m.content) for m in messages) / 2 < PUBLISHED_INPUT_TOKENS / 10


def test_real_kpi_chunk_renders_far_below_published_tokens() -> None:
    root = data_dir()
    if root is None or not (root / "kpi" / "phase2_train.csv.gz").exists():
        pytest.skip("KPI data not found (set ARGOS_DATA_DIR or place ../shared/datasets)")
    import pandas as pd

    frame = pd.read_csv(root / "kpi" / "phase2_train.csv.gz", nrows=160_000)
    first = frame[frame["KPI ID"] == frame["KPI ID"].iloc[0]]
    values = first["value"].to_numpy(float)
    labels = first["label"].to_numpy().astype(bool)
    # the 2500-point chunk with the most labeled anomalies
    starts = range(0, len(values) - 2500, 2500)
    best = max(starts, key=lambda a: int(labels[a : a + 2500].sum()))
    chunk = render_chunk(values[best : best + 2500], labels[best : best + 2500])
    assert int(labels[best : best + 2500].sum()) > 0
    assert chunk.count("!") == int(labels[best : best + 2500].sum())
    total_chars = sum(len(m.content) for m in generator_messages(chunk))
    assert total_chars / 2 < PUBLISHED_INPUT_TOKENS / 5


# ------------------------------------------------------------------ repairer and reviewer


def test_trim_traceback_keeps_the_end() -> None:
    tb = "\n".join(f"  line {i}" for i in range(50)) + "\nZeroDivisionError: division by zero"
    out = trim_traceback(tb, max_lines=5)
    assert out.splitlines()[0] == "... (46 earlier traceback lines omitted)"
    assert out.splitlines()[-1] == "ZeroDivisionError: division by zero"
    assert len(out.splitlines()) == 6
    assert trim_traceback("x" * 500, max_line_chars=10) == "x" * 10 + " ..."


def test_repairer_messages_include_code_error_and_trimmed_traceback() -> None:
    tb = (
        "Traceback (most recent call last):\n"
        + "  frame\n" * 40
        + "IndexError: index 5 out of range"
    )
    messages = repairer_messages(
        "def detect(v, t, p):\n    return v[5]",
        status="runtime_error",
        error="IndexError: index 5",
        traceback=tb,
    )
    user = messages[-1].content
    assert "`runtime_error`" in user and "IndexError: index 5" in user
    assert "return v[5]" in user
    assert "earlier traceback lines omitted" in user
    assert user.count("frame") == 19
    no_tb = repairer_messages("x = (", status="syntax_error", error="line 1: '(' was never closed")
    assert "Traceback" not in no_tb[-1].content


def test_generator_messages_sections_appear_only_when_given() -> None:
    bare = generator_messages("CHUNK")[-1].content
    assert "CHUNK" in bare and "Contrast" not in bare and "current rule set" not in bare
    current = describe_rule_set(
        [("generator", "def detect(values, timestamps, params): ...", {})],
        score=0.41,
        scored_on="validation",
        train_f1=0.9,
    )
    full = generator_messages(
        "CHUNK",
        task="Focus: the missed anomalies.",
        contrast="NORMALDATA",
        contrast_kind="normal",
        current=current,
    )[-1].content
    assert (
        full.index("Focus")
        < full.index("CHUNK")
        < full.index("NORMALDATA")
        < full.index("The current rule set")
    )
    assert "normal data the rule must NOT flag" in full
    assert "It scores F1 0.410 on validation (on train: 0.900" in full


@pytest.mark.parametrize(
    ("objective", "says"),
    [
        ("event-pa", "caught when the rule flags at least one point anywhere inside it"),
        ("delay:7", "only when the rule flags one of its first 8 points"),
        ("point", "Every labeled point counts on its own"),
    ],
)
def test_the_generator_is_told_how_its_rule_is_scored(objective: str, says: str) -> None:
    system = generator_messages("CHUNK", objective=Objective.parse(objective))[0].content
    assert "How the rule is scored:" in system and says in system


def test_a_builtin_member_is_shown_as_its_docstring_and_fitted_params() -> None:
    from argos.rules.grammar import RuleSpec, Structure
    from argos.rules.templates import load_rule, render

    spec = RuleSpec(Structure("value", "zscore", (("window", 60),), "up", 1), 4.0)
    source = render(spec)
    _, params = load_rule(source)
    text = describe_rule_set([("builtin", source, params)], score=0.5, scored_on="validation")
    assert "Rule 1 (builtin template)" in text and "Fitted PARAMS:" in text
    assert "def detect" not in text  # the template's helpers are not sent
    assert "Abnormal:" in text


@pytest.mark.parametrize(
    ("guard", "said"),
    [
        ("delay:7", "a lower 7-delay F1 (an event counts only when an alarm falls within 7 points"),
        (
            "event-pa",
            "a lower event-PA F1 (an event counts when an alarm falls anywhere inside it)",
        ),
    ],
)
def test_the_rule_set_description_states_the_gates_guard(guard: str, said: str) -> None:
    members = [
        ("generator", "def detect(values, timestamps, params):\n    return values > 1\n", {})
    ]
    text = describe_rule_set(
        members, score=0.5, scored_on="validation", guard=Objective.parse(guard)
    )
    assert said in text and "on train or on validation, is not kept either" in text
    assert "is not kept either" not in describe_rule_set(members, score=0.5, scored_on="validation")


def test_the_current_rules_mark_catches_misses_and_false_alarms() -> None:
    values = np.arange(40, dtype=float)
    labels = np.zeros(40, dtype=bool)
    labels[10:13] = True
    alarms = np.zeros(40, dtype=bool)
    alarms[10] = alarms[30] = True
    text = render_chunk(values, labels, alarms=alarms, min_summary=5, context=2)
    assert "*10 !11 !12" in text and "?30" in text
    assert "catch 1 of these windows and raise 1 false alarm(s)" in text
    assert "?" not in render_chunk(values, labels, min_summary=5, context=2)


def test_reviewer_messages_and_revert_detection() -> None:
    old = "PARAMS = {'k': 3}\nLOOKBACK = 5\n"
    new = "PARAMS = {'k': 5}\nLOOKBACK = 5\n"
    messages = reviewer_messages(
        old,
        new,
        old_metrics={"val_f1": 0.8, "val_precision": 0.9},
        new_metrics={"val_f1": 0.7, "val_precision": None},
        regressions="WINDOWS",
    )
    user = messages[-1].content
    assert "-PARAMS = {'k': 3}" in user and "+PARAMS = {'k': 5}" in user
    assert "val_f1        0.800     0.700   -0.100" in user
    assert "n/a" in user and "WINDOWS" in user
    assert "event-level F1 with point adjustment" in user and "Fitted PARAMS" not in user
    assert "REVERT" in messages[0].content
    assert is_revert("The change only adds false alarms.\nREVERT")
    assert is_revert("**REVERT**")
    assert not is_revert("I will not revert.\n```python\nx = 1\n```")
    assert not is_revert("Do not REVERT this")


def test_the_reviewer_sees_the_fitted_params_and_the_objective() -> None:
    code = "PARAMS = {'k': 3.0}\nLOOKBACK = 5\n"
    messages = reviewer_messages(
        code,
        code,
        old_metrics={"F1": 0.8},
        new_metrics={"F1": 0.7},
        old_params={"k": 2.123456789},
        new_params={"k": 7.5},
        objective=Objective.parse("delay:7"),
    )
    user = messages[-1].content
    assert "previous {'k': 2.1235}; new {'k': 7.5}" in user
    assert "7-delay F1" in user and "point adjustment" not in user


def test_code_diff_and_metrics_table() -> None:
    assert code_diff("a\n", "a\n") == "(no change)"
    assert code_diff("a\nb\n", "a\nc\n").splitlines()[:2] == [
        "--- previous_rule.py",
        "+++ new_rule.py",
    ]
    table = format_metrics({"f1": 0.5}, {"f1": 0.75, "recall": 1.0})
    assert table.splitlines()[1] == "f1            0.500     0.750   +0.250"
    assert table.splitlines()[2] == "recall        n/a       1.000   n/a"


def test_render_regressions_lists_windows_old_right_new_wrong() -> None:
    values = np.arange(40, dtype=float)
    truth = np.zeros(40, dtype=bool)
    truth[10:13] = True
    old = truth.copy()
    new = np.zeros(40, dtype=bool)  # misses 10..12
    new[30] = True  # and a new false alarm at 30
    text = render_regressions(values, truth, old, new, context=1)
    assert text.splitlines()[0] == (
        "Points the previous rule got right and the new rule gets wrong: 4 "
        "(3 newly missed anomalies, 1 new false alarms) in 2 window(s):"
    )
    rows = text.splitlines()[2:]
    assert rows[:5] == ["9 9 0 0 0", "10 10 1 1 0", "11 11 1 1 0", "12 12 1 1 0", "13 13 0 0 0"]
    assert rows[5] == "--" and rows[6:] == ["29 29 0 0 0", "30 30 0 0 1", "31 31 0 0 0"]
    assert render_regressions(values, truth, old, old) == ""
    one = render_regressions(values, truth, old, new, max_windows=1)
    assert "the 1 largest:" in one and "30 30" not in one


def test_shipped_prompts_state_the_rule_contract() -> None:
    system = generator_messages("x")[0].content
    for phrase in (
        "detect(values, timestamps, params)",
        "PARAMS",
        "LOOKBACK",
        "Normal:",
        "Abnormal:",
        "Causal",
        "numpy",
    ):
        assert phrase in system
    assert re.search(r"hard-coded positions", system)


def _covered_ranges(text: str) -> list[tuple[int, int]]:
    """(first, last) index of every line of a rendered chunk, in order."""
    out = []
    for line in text.splitlines()[1:]:
        if line.startswith("@"):
            start = int(line[1 : line.index(":")])
            out.append((start, start + len(line.split()) - 2))
        else:
            a, b = line[1 : line.index("]")].split("-")
            out.append((int(a), int(b)))
    return out


@given(
    labels=st.lists(st.booleans(), min_size=1, max_size=400),
    context=st.integers(0, 6),
    min_summary=st.integers(1, 40),
    max_points=st.integers(14, 200),
    per_line=st.integers(1, 30),
)
@settings(max_examples=150, deadline=None)
def test_render_chunk_covers_every_point_once_and_every_anomaly(
    labels: list[bool], context: int, min_summary: int, max_points: int, per_line: int
) -> None:
    lab = np.array(labels)
    values = np.arange(lab.size, dtype=float) * 1.5
    text = render_chunk(
        values,
        lab,
        context=context,
        min_summary=min_summary,
        max_points=max_points,
        per_line=per_line,
    )
    ranges = _covered_ranges(text)
    assert ranges[0][0] == 0 and ranges[-1][1] == lab.size - 1
    assert all(b[0] == a[1] + 1 for a, b in itertools.pairwise(ranges))
    shown = text.count("!")
    elided = sum(int(m) for m in re.findall(r"elided n=\d+, (\d+) anomalous", text))
    assert shown + elided == int(lab.sum())
    if "elided" not in text:  # nothing cut: every value within `context` of an anomaly is shown
        near = np.zeros(lab.size, dtype=bool)
        for i in np.flatnonzero(lab):
            near[max(0, i - context) : i + context + 1] = True
        verbatim = sum(len(line.split()) - 1 for line in text.splitlines() if line.startswith("@"))
        assert verbatim >= int(near.sum())
    assert " normal " not in text or all(
        "!" not in line for line in text.splitlines() if " normal " in line
    )


def test_generator_template_states_normal_and_abnormal_on_their_own_lines() -> None:
    from argos.training.agents.prompts import generator_messages

    system = generator_messages("n=0 (empty chunk)")[0].content
    example = system[system.index("```python") :]
    lines = example.splitlines()
    assert any(line.startswith('"""Normal:') for line in lines)
    assert any(line.startswith("Abnormal:") for line in lines)
    assert "Abnormal:" not in next(line for line in lines if line.startswith('"""Normal:'))
