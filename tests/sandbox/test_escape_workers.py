"""Escape suite for the online rule workers (red-team classes 4-6 of issue 23).

The static gate is bypassable, so every attack here is arbitrary Python in a rule worker (the
engine compiles rule source without the gate). Each attack is one rule of a set next to a victim
rule (a static band, whose labels are known); the test checks the attack's effect: the victim's
labels and errors equal those of the victim alone, the engine answers the next request correctly,
and the push never waits for the attacker beyond its budget. Before the workers ran one process
per rule, each of these attacks had its effect (a silenced or inflated victim, replies one
request behind, a lost batch, a push held by a slow restart, every push slowed by a spinning
rule).
"""

from __future__ import annotations

import numpy as np
import pytest

from argos.sandbox.kernel import InProcessEngine, RuleCode
from argos.sandbox.workers import WorkerEngine, WorkerLimits

pytestmark = pytest.mark.timeout(180)

VICTIM = RuleCode(
    "victim",
    "import numpy as np\nPARAMS = {'high': 5.0}\nLOOKBACK = 1\n"
    "def detect(values, timestamps, params):\n    return values > params['high']\n",
    {"high": 5.0},
    1,
)


def attacker(body: str, lookback: int = 1, prelude: str = "") -> RuleCode:
    """A rule whose ``detect`` runs ``body`` and then flags nothing itself."""
    indented = "\n".join("    " + ln for ln in body.strip("\n").splitlines())
    code = (
        "import numpy as np\nPARAMS = {}\n"
        f"LOOKBACK = {lookback}\n{prelude}\n"
        "def detect(values, timestamps, params):\n"
        f"{indented}\n"
        "    return np.zeros(len(values), dtype=bool)\n"
    )
    return RuleCode("attacker", code, {}, lookback)


def series(n: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    v = rng.normal(size=n)
    v[rng.choice(n, 12, replace=False)] += 9.0  # the victim flags these
    return np.arange(n, dtype=np.int64) * 60, v


def victim_alone(t: np.ndarray, v: np.ndarray) -> np.ndarray:
    return InProcessEngine([VICTIM]).batch([(t, v)]).labels[0][0]


# -- class 4: rules in one worker were not isolated from each other ----------------------------

REBIND_ASARRAY = attacker(
    """
real = np.asarray
def silenced(a, *args, **kwargs):
    arr = real(a, *args, **kwargs)
    return np.zeros(arr.shape, dtype=bool) if arr.dtype == bool else arr
np.asarray = silenced
"""
)

SWAP_THROUGH_GC = attacker(
    """
import gc
def everything(values, timestamps, params):
    return np.ones(len(values), dtype=bool)
for obj in gc.get_objects():
    if isinstance(obj, list) and detect in obj:
        for i, fn in enumerate(obj):
            if fn is not detect and callable(fn):
                obj[i] = everything
"""
)

REBIND_FROMBUFFER = attacker(
    """
real = np.frombuffer
def scrambled(*args, **kwargs):
    arr = real(*args, **kwargs)
    return arr[::-1].copy() if arr.dtype.kind == 'f' else arr
np.frombuffer = scrambled
"""
)


@pytest.mark.parametrize(
    "attack",
    [REBIND_ASARRAY, SWAP_THROUGH_GC, REBIND_FROMBUFFER],
    ids=["rebind_asarray", "swap_through_gc", "rebind_frombuffer"],
)
def test_a_rule_cannot_change_what_another_rule_computes(attack: RuleCode) -> None:
    t, v = series()
    want = victim_alone(t, v)
    assert want.sum() >= 10
    with WorkerEngine([attack, VICTIM]) as eng:
        eng.set_packed(["attacker", "victim"])
        for _ in range(2):  # the attack runs in the first request, takes effect in the next
            batch = eng.batch([(t, v)])
            np.testing.assert_array_equal(batch.labels[0][1], want)
            assert "victim" not in {e.rule_id for e in batch.errors}  # never blamed
        got = [
            eng.push([("s", t[a : a + 10], v[a : a + 10])]).labels[0][1] for a in range(0, 200, 10)
        ]
        np.testing.assert_array_equal(np.concatenate(got), want)
        assert len(set(eng.pids)) == 2  # a process per rule


# -- class 5: forged frames on the protocol descriptor -----------------------------------------

FORGE_FRAMES = attacker(
    """
if values[-1] == 4242.0:
    import json, os, struct
    head = json.dumps({'ok': True, 'errors': [], 'id': 1}).encode()
    labels = bytes([1]) * len(values) * 2
    os.write(3, struct.pack('<II', len(head), len(labels)) + head + labels)
""",
)


def test_forged_reply_frames_are_detected_and_the_worker_restarted() -> None:
    t, v = series()
    want = victim_alone(t, v)
    with WorkerEngine([FORGE_FRAMES, VICTIM]) as eng:
        got = [eng.push([("s", t[:100], v[:100])]).labels[0]]
        forged = eng.push([("s", np.array([10**9]), np.array([4242.0]))])
        # the forgery is a protocol violation of the attacker alone; the victim answered
        assert {e.rule_id for e in forged.errors} == {"attacker"}
        assert "protocol violation" in forged.errors[0].message
        assert forged.labels[0][:, 0].tolist() == [False, True]
        assert eng.protocol_errors == 1
        assert eng.wait_ready() and eng.restarts == 1
        # no reply is one request behind: every later answer is this request's
        for a in range(100, 200, 20):
            got.append(eng.push([("s", t[a : a + 20] + 10**9, v[a : a + 20])]).labels[0])
        labels = np.concatenate(got, axis=1)
        np.testing.assert_array_equal(labels[1], want)
        assert not labels[0].any()


# -- class 6: BaseException, slow restarts, rules spinning under the deadline ------------------

INTERRUPT = attacker(
    """
if (values == 666.0).any():
    raise KeyboardInterrupt
""",
)


def test_keyboard_interrupt_in_one_rule_costs_only_that_rule_on_that_series() -> None:
    t, v = series()
    want = victim_alone(t, v)
    with WorkerEngine([INTERRUPT, VICTIM]) as eng:
        eng.set_packed(["attacker", "victim"])
        names = ["a", "b", "c"]
        eng.push([(s, t[:50], v[:50]) for s in names])
        poisoned = v[50:60].copy()
        poisoned[3] = 666.0
        res = eng.push(
            [("a", t[50:60], v[50:60]), ("b", t[50:60], poisoned), ("c", t[50:60], v[50:60])]
        )
        assert [(e.item, e.rule_id) for e in res.errors] == [(1, "attacker")]
        assert "KeyboardInterrupt" in res.errors[0].message
        for item in (0, 2):
            np.testing.assert_array_equal(res.labels[item][1], want[50:60])
        assert eng.restarts == 0 and eng.timeouts == 0


SLOW_RESTART = attacker(
    """
if values[-1] == 13.0:
    import os
    os._exit(1)
""",
    prelude="import time\ntime.sleep(3)  # slow module-level code, run again at every restart\n",
)


def test_a_restart_with_a_slow_import_does_not_hold_the_request() -> None:
    t, v = series()
    want = victim_alone(t, v)
    with WorkerEngine([SLOW_RESTART, VICTIM]) as eng:
        first = eng.push([("s", t[:100], v[:100])])
        crash = eng.push([("s", np.array([10**9]), np.array([13.0]))])
        assert [e.rule_id for e in crash.errors] == ["attacker"]
        # the push came back while the attacker's replacement is still importing (3 s)
        assert eng.restarting == ["attacker"]
        during = eng.push([("s", t[100:150] + 10**9, v[100:150])])
        assert {e.rule_id for e in during.errors} == {"attacker"}
        assert "restarting" in during.errors[0].message
        np.testing.assert_array_equal(during.labels[0][1], want[100:150])
        assert eng.wait_ready() and eng.restarts == 1 and eng.restarting == []
        after = eng.push([("s", t[150:] + 10**9, v[150:])])
        assert after.errors == []
        np.testing.assert_array_equal(first.labels[0][1], want[:100])
        np.testing.assert_array_equal(after.labels[0][1], want[150:])


SPIN_UNDER_DEADLINE = attacker(
    """
import time
time.sleep(0.6)
""",
)


def test_a_rule_over_its_budget_is_quarantined_and_no_longer_waited_for() -> None:
    t, v = series()
    want = victim_alone(t, v)
    limits = WorkerLimits(request_seconds=5.0, budget_seconds=0.2, strikes=2)
    with WorkerEngine([SPIN_UNDER_DEADLINE, VICTIM], limits=limits) as eng:
        got = []
        for a in range(0, 40, 10):
            got.append(eng.push([("s", t[a : a + 10], v[a : a + 10])]).labels[0][1])
            if a == 0:
                assert eng.quarantined == {}
        assert list(eng.quarantined) == ["attacker"]
        assert "over its time budget" in eng.quarantined["attacker"]
        assert eng.rule_pids("attacker") == []  # stopped: no push waits for it any more
        res = eng.push([("s", t[40:], v[40:])])
        assert res.errors == [] and not res.labels[0][0].any()
        got.append(res.labels[0][1])
        np.testing.assert_array_equal(np.concatenate(got), want)
        assert eng.timeouts == 0
