"""Held-out train events: how the LLM loop selects on a unit with no validation event.

Without a validation event the selection score would pool train and validation, the data the
candidates were fit on; :func:`hold_out_train_events` moves the last train events into the
validation part for the loop, and the exported set still scores at least the builtin incumbent's
on the unit's own selection data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scripted_rules import GOOD, QUIET, fenced

from argos.data.series import Series
from argos.llm.config import LLMConfig
from argos.llm.testing import ScriptedChatModel, ScriptStep
from argos.metrics import events
from argos.training.agents import run as run_module
from argos.training.agents.lab import SandboxRuleLab, hold_out_train_events
from argos.training.agents.nodes import new_draft
from argos.training.agents.run import AgentGenerator
from argos.training.agents.state import LoopConfig
from argos.training.builtin.method import BuiltinGenerator

pytestmark = pytest.mark.timeout(300)


def spiky(
    n_events: int, name: str = "s", n: int = 3000, n_train: int = 2400, seed: int = 0
) -> tuple[Series, Series]:
    """A series with ``n_events`` three-point spikes spread over its train part (the first
    ``n_train`` points) and none in its validation part."""
    rng = np.random.default_rng(seed)
    v = 10 + rng.normal(0, 0.3, n)
    labels = np.zeros(n, dtype=bool)
    for a in np.linspace(200, n_train - 200, n_events).astype(int) if n_events else []:
        v[a : a + 3] += 4
        labels[a : a + 3] = True
    ts = np.arange(n, dtype=np.int64) * 60 + 1_700_000_000

    def part(a: int, b: int) -> Series:
        return Series(id=name, timestamps=ts[a:b], values=v[a:b], labels=labels[a:b])

    return part(0, n_train), part(n_train, n)


@pytest.mark.parametrize(("n_events", "held"), [(2, 1), (5, 1), (7, 1), (8, 2), (10, 2)])
def test_the_last_fifth_of_the_train_events_is_held_out(n_events: int, held: int) -> None:
    train, validation = spiky(n_events)
    split = hold_out_train_events([train], [validation])
    assert split is not None
    (fit,), (selection,) = split
    assert len(events(fit.labels)[0]) == n_events - held
    assert len(events(selection.labels)[0]) == held
    # cut midway between the last event kept and the first held out
    starts, ends = events(train.labels)
    assert len(fit) == (ends[n_events - held - 1] + starts[n_events - held]) // 2
    # nothing lost, nothing reordered: the validation part follows the held-out tail
    both = np.concatenate([fit.timestamps, selection.timestamps])
    assert np.array_equal(both, np.concatenate([train.timestamps, validation.timestamps]))
    assert np.array_equal(
        np.concatenate([fit.values, selection.values]),
        np.concatenate([train.values, validation.values]),
    )
    assert fit.id == selection.id == train.id


def test_a_series_with_fewer_than_two_train_events_keeps_its_split() -> None:
    one = spiky(1, "one")
    assert hold_out_train_events([one[0]], [one[1]]) is None
    assert hold_out_train_events(*[[p] for p in spiky(0)]) is None
    two = spiky(2, "two")
    split = hold_out_train_events([one[0], two[0]], [one[1], two[1]])
    assert split is not None
    (fit_one, fit_two), (sel_one, sel_two) = split
    assert fit_one is one[0] and sel_one is one[1]
    assert len(events(fit_two.labels)[0]) == len(events(sel_two.labels)[0]) == 1


def make_gen(
    tmp_path: Path, steps: list[ScriptStep], *, incumbent: bool, holdout: bool = True
) -> tuple[AgentGenerator, ScriptedChatModel]:
    model = ScriptedChatModel(steps)
    gen = AgentGenerator(
        llm=LLMConfig(model="scripted"),
        run_dir=tmp_path / "run",
        loop=LoopConfig(candidates_per_iteration=1, max_iterations=1, max_reviews=0),
        chat_model=model,
        fit_budget=4,
        chunk_size=600,
        incumbent=incumbent,
        holdout=holdout,
    )
    return gen, model


@pytest.fixture
def labs(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """(train points, validation points) of every lab the generator opens, in order."""
    seen: list[tuple[int, int]] = []

    class Recording(SandboxRuleLab):
        def __init__(self, train: Any, validation: Any, *args: Any, **kw: Any) -> None:
            seen.append((len(train[0]), len(validation[0])))
            super().__init__(train, validation, *args, **kw)

    monkeypatch.setattr(run_module, "SandboxRuleLab", Recording)
    return seen


def test_the_loop_fits_on_the_first_part_of_train_and_selects_on_the_held_out_events(
    tmp_path: Path, labs: list[tuple[int, int]]
) -> None:
    train, validation = spiky(5)
    gen, model = make_gen(tmp_path, [ScriptStep(reply=fenced(GOOD))], incumbent=False)
    out = gen.generate([train], [validation])
    model.assert_consumed()
    (fit,), (selection,) = hold_out_train_events([train], [validation]) or ([], [])
    # the unit's own split (the final check), then the loop's
    assert labs == [(len(train), len(validation)), (len(fit), len(selection))]
    assert out.generator["held_out_events"] == 1
    assert any(n.startswith("selected on 1 held-out train event(s)") for n in out.notes)


def test_without_two_train_events_the_builtin_set_is_exported_without_a_call(
    tmp_path: Path,
) -> None:
    train, validation = spiky(1)
    gen, model = make_gen(tmp_path, [], incumbent=True)
    out = gen.generate([train], [validation])
    model.assert_consumed()  # no call at all
    assert gen.ledger.summary().total.calls == 0
    builtin = BuiltinGenerator().generate([train], [validation])
    assert [r.source for r in out.rules] == [r.source for r in builtin.rules]
    assert out.notes == [
        "kept the builtin rule set: no LLM loop: without a validation event the loop selects on "
        "held-out train events, and no series has two (one to fit on, one to hold out)"
    ]
    assert out.generator["score"] == out.generator["incumbent_score"]
    assert "held_out_events" not in out.generator


def test_the_exported_set_never_scores_below_the_incumbent_on_the_units_own_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A set the loop kept on the held-out events (here one that never fires) that scores lower
    than the builtin set on the unit's own selection data is not exported."""
    train, validation = spiky(5)
    quiet = new_draft(QUIET, "generator")

    def kept_quiet(self: AgentGenerator, *args: Any, **kw: Any) -> tuple[Any, None]:
        return {"accepted": [quiet], "incumbent_score": 0.5, "set_score": 1.0}, None

    monkeypatch.setattr(AgentGenerator, "_run_graph", kept_quiet)
    gen, _ = make_gen(tmp_path, [], incumbent=True)
    out = gen.generate([train], [validation])
    builtin = BuiltinGenerator().generate([train], [validation])
    assert [r.source for r in out.rules] == [r.source for r in builtin.rules]
    assert out.generator["score"] == out.generator["incumbent_score"] > 0
    assert any(n.startswith("exported the builtin rule set") for n in out.notes)


def test_no_holdout_runs_the_loop_on_the_units_own_split(
    tmp_path: Path, labs: list[tuple[int, int]]
) -> None:
    train, validation = spiky(5)
    gen, model = make_gen(
        tmp_path, [ScriptStep(reply=fenced(GOOD))], incumbent=False, holdout=False
    )
    out = gen.generate([train], [validation])
    model.assert_consumed()
    assert labs == [(len(train), len(validation))]
    assert "held_out_events" not in out.generator
