"""Which rules the online detector may run in its own process: proved builtin template renderings
(:func:`argos.rules.recognise.trusted_template`), never a file that differs by one byte."""

from __future__ import annotations

from pathlib import Path

import pytest

from argos.rules.artifacts import RuleSource, load_ruleset, write_ruleset
from argos.rules.grammar import RuleSpec, Structure
from argos.rules.recognise import (
    TRUSTED_MAX_LOOKBACK,
    NotTemplate,
    Recognised,
    RuleIdentity,
    recognise,
    trusted_template,
)
from argos.rules.templates import render

RULES = Path(__file__).resolve().parents[2] / "rules"

ZSCORE = RuleSpec(Structure("value", "zscore", (("window", 60.0),), "both", 1), 4.0)


def test_every_committed_rule_is_a_trusted_template() -> None:
    count = 0
    for manifest in sorted(RULES.rglob("manifest.json")):
        rs = load_ruleset(manifest.parent)
        for entry in rs.rules:
            spec = trusted_template(entry, rs.codes[entry.id], max(1, entry.lookback))
            assert spec is not None and spec.name == entry.id, (manifest, entry.id)
            count += 1
    assert count >= 138


def test_one_changed_byte_or_another_lookback_is_untrusted(tmp_path: Path) -> None:
    code = render(ZSCORE)
    edited = code.replace("Abnormal:", "Abnormal: ", 1)  # one byte, in the docstring only
    assert edited != code
    write_ruleset(
        tmp_path / "s",
        [RuleSource(ZSCORE.name, code), RuleSource("other", edited.replace(ZSCORE.name, "x"))],
    )
    rs = load_ruleset(tmp_path / "s")
    entry = rs.rules[0]
    lookback = ZSCORE.lookback()
    assert entry.lookback == lookback
    assert trusted_template(entry, code, lookback) == ZSCORE
    assert trusted_template(entry, edited, lookback) is None
    assert trusted_template(entry, code + "\n", lookback) is None
    assert trusted_template(entry, code, lookback + 1) is None  # the window the detector keeps
    assert trusted_template(rs.rules[1], rs.codes["other"], lookback) is None  # not its id


def test_a_template_beyond_the_lookback_limit_is_untrusted() -> None:
    wide = RuleSpec(
        Structure("value", "zscore", (("window", float(TRUSTED_MAX_LOOKBACK + 1)),), "up", 1), 3.0
    )

    class Entry:
        id = wide.name
        params = wide.params

    assert isinstance(recognise(Entry(), render(wide)), Recognised)
    assert trusted_template(Entry(), render(wide), wide.lookback()) is None


def test_recognition_is_remembered_and_tells_a_bool_from_a_number(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A set's rules are recognised each time its engines start: the rendering and parsing run
    once per rule; a ``true`` where the template has 1 is still not the template."""
    import argos.rules.recognise as recognise_module

    spec = RuleSpec(Structure("value", "zscore", (("window", 41.0),), "up", 1), 3.25)
    code = render(spec)
    calls: list[str] = []
    real = recognise_module.recognise

    def counting(entry: RuleIdentity, text: str) -> Recognised | NotTemplate:
        calls.append(entry.id)
        return real(entry, text)

    monkeypatch.setattr(recognise_module, "recognise", counting)
    rule = RuleSource(spec.name, code, spec.params)
    for _ in range(3):
        assert trusted_template(rule, code, spec.lookback()) == spec
    assert calls == [spec.name]
    as_bool = RuleSource(spec.name, code, {**spec.params, "persistence": True})
    assert trusted_template(as_bool, code, spec.lookback()) is None
