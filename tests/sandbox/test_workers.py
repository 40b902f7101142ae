"""Rule workers: isolation, crash and timeout recovery, state re-seeding, the kernel's windows."""

from __future__ import annotations

import os
import signal
import socket
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from argos.sandbox.kernel import (
    HistoryStore,
    InProcessEngine,
    PointColumns,
    RuleCode,
    RuleKernel,
    validate_labels,
)
from argos.sandbox.process import ProtocolError, recv_frame
from argos.sandbox.workers import RuleWorkerError, WorkerEngine, WorkerLimits

RULES = Path(__file__).resolve().parents[1] / "fixtures" / "rules"

pytestmark = pytest.mark.timeout(120)


def rule(
    name: str, rule_id: str | None = None, lookback: int | None = None, **params: float
) -> RuleCode:
    """A fixture rule file as :class:`RuleCode` (lookback from its LOOKBACK constant)."""
    path = next(RULES.glob(f"*/{name}.py"))
    code = path.read_text()
    lb = lookback
    if lb is None:
        ns: dict[str, object] = {}
        exec(compile(code, str(path), "exec"), ns)
        lb = int(ns["LOOKBACK"])  # type: ignore[call-overload]
    return RuleCode(rule_id or name, code, params, lb)


def sample(n: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    v = rng.normal(size=n)
    v[rng.choice(n, min(20, n), replace=False)] += 9
    v[n // 2 : n // 2 + 50] = 1.5
    return np.arange(n, dtype=np.int64) * 60, v


BASIC = [
    rule("robust_z", k=4.0, min_scale=1e-6),
    rule("flat_line", eps=0.0),
    rule("threshold", low=-5.0, high=5.0),
]


#: A rule that overwrites its input arrays.
VANDAL = RuleCode(
    "vandal",
    "import numpy as np\nPARAMS={}\nLOOKBACK=5\ndef detect(v,t,p):\n    v[:] = 1e9\n"
    "    return np.zeros(len(v), bool)\n",
    {},
    5,
)


def counting_kernel(rules: list[RuleCode]) -> tuple[RuleKernel, list[int]]:
    """A kernel whose rules count their calls (``calls[r]``)."""
    kernel = RuleKernel(rules)
    calls = [0] * len(rules)
    for r, fn in enumerate(list(kernel.functions)):

        def counting(v: np.ndarray, t: np.ndarray, p: dict[str, float], _r: int = r, _fn=fn):  # type: ignore[no-untyped-def]
            calls[_r] += 1
            return _fn(v, t, p)

        kernel.functions[r] = counting
    return kernel, calls


@pytest.fixture(scope="module")
def engine() -> WorkerEngine:
    eng = WorkerEngine(BASIC)
    yield eng  # type: ignore[misc]
    eng.close()


def test_worker_runs_locked_down_and_agrees_with_in_process(engine: WorkerEngine) -> None:
    assert engine.rule_ids == ("robust_z", "flat_line", "threshold")
    assert engine.load_errors == {}
    assert any(engine.layers.values()), engine.layers
    t, v = sample()
    iso = engine.batch([(t, v)]).labels[0]
    ref = InProcessEngine(BASIC).batch([(t, v)]).labels[0]
    np.testing.assert_array_equal(iso, ref)
    assert iso.sum(axis=1).tolist()[1] == 21  # 50 flat points -> 50 - 29 flagged
    assert iso[0].sum() >= 15


def test_hostile_rule_cannot_see_env_bind_sockets_or_write(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ARGOS_SECRET_FOR_TEST", "s3cret")
    monkeypatch.chdir(tmp_path)  # the in-process control writes its probe file here
    # as a control, the same rule in-process does see the secret
    t, v = np.arange(3, dtype=np.int64), np.zeros(3)
    hostile = rule("hostile")
    assert InProcessEngine([hostile]).batch([(t, v)]).labels[0].all()
    with WorkerEngine([hostile]) as eng:
        res = eng.batch([(t, v)])
        assert res.errors == []
        assert not res.labels[0].any()


def test_rule_errors_bad_output_and_load_errors_are_reported() -> None:
    bad_shape = RuleCode(
        "short",
        "import numpy as np\nPARAMS={}\nLOOKBACK=1\ndef detect(v,t,p):\n    return v[:1] > 0\n",
        {},
        1,
    )
    nan_out = RuleCode(
        "nan",
        "import numpy as np\nPARAMS={}\nLOOKBACK=1\ndef detect(v,t,p):\n    return v * np.nan\n",
        {},
        1,
    )
    syntax = RuleCode("syntax", "def detect(:\n", {}, 1)
    with WorkerEngine([bad_shape, nan_out, syntax, rule("raises")]) as eng:
        assert set(eng.load_errors) == {"syntax"}
        assert "SyntaxError" in eng.load_errors["syntax"]
        assert eng.rule_ids == ("short", "nan", "raises")
        res = eng.batch([(np.arange(4, dtype=np.int64), np.array([1.0, 2, 3, 2000]))])
        msgs = {e.rule_id: e.message for e in res.errors}
        assert msgs["short"] == "ValueError: bad output: shape (1,), expected (4,)"
        assert msgs["nan"] == "ValueError: bad output: contains NaN"
        assert msgs["raises"].startswith("ValueError: value too large (rule line")
        assert not res.labels[0].any()


def test_timeout_kills_restarts_and_reseeds_the_worker() -> None:
    limits = WorkerLimits(request_seconds=1.0)
    rules = [rule("spins"), rule("robust_z", k=4.0, min_scale=1e-6)]
    t, v = sample(600, seed=3)
    v = np.abs(v)  # "spins" loops forever on negative values only
    ref = InProcessEngine(rules[1:]).batch([(t, v)]).labels[0][0]
    with WorkerEngine(rules, limits=limits) as eng:
        first_pid = eng.rule_pids("spins")[0]
        got = [eng.push([("s", t[:400], v[:400])]).labels[0][1]]
        res = eng.push([("other", np.array([1], dtype=np.int64), np.array([-1.0]))])
        assert eng.timeouts == 1
        assert {e.rule_id for e in res.errors} == {"spins"}  # the other rule's process answered
        assert "timeout" in res.errors[0].message
        assert eng.wait_ready() and eng.restarts == 1  # restarted in the background
        assert eng.rule_pids("spins")[0] != first_pid
        # the restarted worker was re-seeded from the parent's mirror: labels continue exactly
        got.append(eng.push([("s", t[400:], v[400:])]).labels[0][1])
        np.testing.assert_array_equal(np.concatenate(got), ref)
        assert ref.sum() > 0


def test_killed_worker_is_replaced_and_state_survives(engine: WorkerEngine) -> None:
    t, v = sample(1000, seed=4)
    ref = InProcessEngine(BASIC).batch([(t, v)]).labels[0]
    before = engine.restarts
    got = [engine.push([("k", t[:500], v[:500])]).labels[0]]
    os.kill(engine.rule_pids("robust_z")[0], signal.SIGKILL)
    lost = engine.push([("k", t[500:510], v[500:510])])
    assert {e.rule_id for e in lost.errors} == {"robust_z"}  # only the killed rule's labels
    assert all("worker crashed" in e.message for e in lost.errors)
    np.testing.assert_array_equal(lost.labels[0][1:], ref[1:, 500:510])
    assert engine.wait_ready() and engine.restarts == before + 1
    # the lost micro-batch still entered the mirror, so later points are exact again
    got.append(engine.push([("k", t[510:], v[510:])]).labels[0])
    np.testing.assert_array_equal(np.concatenate(got, axis=1), ref[:, np.r_[0:500, 510:1000]])


def test_several_workers_shard_series_and_match_batch() -> None:
    t, v = sample(800, seed=5)
    ref = InProcessEngine(BASIC).batch([(t, v)]).labels[0]
    with WorkerEngine(BASIC, workers=2) as eng:
        names = [f"series-{i}" for i in range(6)]
        outs: dict[str, list[np.ndarray]] = {n: [] for n in names}
        for a in range(0, 800, 100):
            res = eng.push([(n, t[a : a + 100], v[a : a + 100]) for n in names])
            for n, lab in zip(names, res.labels, strict=True):
                outs[n].append(lab)
        assert len(set(eng.pids)) == 2 * len(BASIC)  # a process per rule and shard
        for n in names:
            np.testing.assert_array_equal(np.concatenate(outs[n], axis=1), ref)


def test_rule_that_writes_into_its_input_cannot_corrupt_state() -> None:
    rules = [VANDAL, rule("robust_z", k=4.0, min_scale=1e-6)]
    t, v = sample(300, seed=6)
    kernel = RuleKernel(rules)
    got = [kernel.push([("s", t[a : a + 7], v[a : a + 7])]).labels[0] for a in range(0, 300, 7)]
    np.testing.assert_array_equal(np.concatenate(got, axis=1), kernel.batch([(t, v)]).labels[0])


@settings(max_examples=40, deadline=None, database=None)
@given(
    cuts=st.lists(st.integers(1, 80), min_size=1, max_size=30),
    seed=st.integers(0, 10_000),
)
def test_kernel_push_in_any_chunking_equals_batch(cuts: list[int], seed: int) -> None:
    t, v = sample(sum(cuts), seed=seed)
    kernel = RuleKernel(BASIC)
    got, a = [], 0
    for c in cuts:
        got.append(kernel.push([("s", t[a : a + c], v[a : a + c])]).labels[0])
        a += c
    np.testing.assert_array_equal(np.concatenate(got, axis=1), kernel.batch([(t, v)]).labels[0])


def test_validate_labels() -> None:
    assert validate_labels(np.array([0, 1]), 2).tolist() == [False, True]
    with pytest.raises(ValueError, match="values other than 0/1"):
        validate_labels(np.array([0, 2]), 2)
    with pytest.raises(ValueError, match="dtype <U1"):
        validate_labels(np.array(["a", "b"]), 2)


def test_oversized_frame_is_rejected() -> None:
    a, b = socket.socketpair()
    with a, b:
        a.sendall(struct.pack("<II", 1 << 30, 0))
        with pytest.raises(ProtocolError, match="frame too large"):
            recv_frame(b.fileno(), None)
        # a reply announcing more label bytes than the parent expects is refused before reading
        a.sendall(struct.pack("<II", 2, 1000) + b"{}")
        with pytest.raises(ProtocolError, match=r"frame too large \(2 \+ 1000 bytes\)"):
            recv_frame(b.fileno(), None, max_payload=999)


def test_engine_refuses_work_after_close() -> None:
    eng = WorkerEngine([rule("threshold", low=0.0, high=1.0)])
    eng.close()
    with pytest.raises(RuleWorkerError, match="closed"):
        eng.batch([(np.arange(2, dtype=np.int64), np.zeros(2))])
    with pytest.raises(ValueError, match="workers must be >= 1"):
        WorkerEngine(BASIC, workers=0)


def test_packed_push_runs_each_rule_once_and_matches_per_series_batch() -> None:
    kernel, calls = counting_kernel(BASIC)
    kernel.set_packed([r.id for r in BASIC])
    data = {f"s{i}": sample(400, seed=40 + i) for i in range(5)}
    got: dict[str, list[np.ndarray]] = {k: [] for k in data}
    for a in range(0, 400, 20):
        res = kernel.push([(k, t[a : a + 20], v[a : a + 20]) for k, (t, v) in data.items()])
        for k, lab in zip(data, res.labels, strict=True):
            got[k].append(lab)
    # robust_z (LOOKBACK 60): 3 pushes while histories fill (one call per series), then one
    # packed call for all five series in each of the remaining 17 pushes
    assert calls[0] == 5 * 3 + 17
    assert calls[1] == 5 * 2 + 18  # flat_line (LOOKBACK 30) packs from the third push
    assert calls[2] == 20  # threshold (LOOKBACK 1) needs no history: packed from the start
    ref = RuleKernel(BASIC)
    for k, (t, v) in data.items():
        np.testing.assert_array_equal(np.concatenate(got[k], axis=1), ref.batch([(t, v)]).labels[0])


def test_a_failed_restart_is_reported_and_retried_never_raised(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import argos.sandbox.workers as rw

    t, v = sample(300, seed=8)
    ref = InProcessEngine(BASIC).batch([(t, v)]).labels[0]
    with WorkerEngine(BASIC) as eng:
        got = [eng.push([("s", t[:100], v[:100])]).labels[0]]
        real = rw._Worker

        class CannotStart:
            def __init__(self, *args: object) -> None:
                raise RuleWorkerError("no more processes")

        monkeypatch.setattr(rw, "_Worker", CannotStart)
        os.kill(eng.rule_pids("robust_z")[0], signal.SIGKILL)
        lost = eng.push([("s", t[100:110], v[100:110])])
        assert "worker crashed" in lost.errors[0].message
        assert eng.wait_ready()
        lost2 = eng.push([("s", t[110:120], v[110:120])])  # the dead worker is not touched
        assert "restart failed: no more processes" in lost2.errors[0].message
        assert [e.rule_id for e in lost2.errors] == ["robust_z"] * 1
        assert eng.wait_ready()
        monkeypatch.setattr(rw, "_Worker", real)
        eng.push([("s", t[120:130], v[120:130])])  # the next request tries again
        assert eng.wait_ready() and eng.restarts == 1
        got.append(eng.push([("s", t[130:], v[130:])]).labels[0])
        np.testing.assert_array_equal(np.concatenate(got, axis=1), ref[:, np.r_[0:100, 130:300]])


def test_worker_process_is_locked_down_as_reported(engine: WorkerEngine) -> None:
    pid = engine.pids[0]
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    if engine.layers.get("seccomp"):
        assert status["Seccomp"].strip() == "2" and status["NoNewPrivs"].strip() == "1"
    if engine.layers.get("drop_privileges"):
        assert status["Uid"].split() == ["65534"] * 4
    if engine.layers.get("netns"):
        assert os.readlink(f"/proc/{pid}/ns/net") != os.readlink("/proc/self/ns/net")
    assert sorted(os.listdir(f"/proc/{pid}/fd"), key=int) == ["0", "1", "2", "3"]
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    names = {e.split(b"=", 1)[0].decode() for e in environ if e}
    assert names <= {
        "PATH", "LANG", "LC_ALL", "HOME", "TMPDIR", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
        "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "ARGOS_WORKER_FD",
        "ARGOS_WORKER_MEMORY_BYTES", "ARGOS_WORKER_ALLOW_UNCONFINED", "ARGOS_WORKER_SCRATCH",
        "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_",
    }  # fmt: skip


def test_history_store_keeps_the_last_points_in_rows_or_per_series() -> None:
    store = HistoryStore(3)
    store.set("short", np.array([1, 2]), np.array([1.0, 2.0]))
    assert store.row("short") == -1 and store.get("short")[1].tolist() == [1.0, 2.0]
    for name, base in (("a", 10.0), ("b", 20.0), ("c", 30.0)):
        store.set(name, np.arange(5), base + np.arange(5.0))
    assert store.get("b")[1].tolist() == [22.0, 23.0, 24.0]
    rows = np.array([store.row("a"), store.row("c")])
    win = store.append_one(rows, np.array([5, 5]), np.array([15.0, 35.0]))
    assert win.values(4).tolist() == [[12.0, 13.0, 14.0, 15.0], [32.0, 33.0, 34.0, 35.0]]
    assert win.values(2).tolist() == [[14.0, 15.0], [34.0, 35.0]]
    assert win.timestamps(4)[:, -1].tolist() == [5, 5]
    store.forget("a")  # the last row moves into the hole; nothing else changes
    assert store.row("a") == -1 and len(store) == 3
    assert store.get("c")[1].tolist() == [33.0, 34.0, 35.0]
    assert store.get("b")[1].tolist() == [22.0, 23.0, 24.0]
    store.set("c", np.array([9]), np.array([9.0]))  # seeded short again: leaves the rows
    assert store.row("c") == -1
    assert {s: v.tolist() for s, _, v in store.items()} == {
        "b": [22.0, 23.0, 24.0],
        "short": [1.0, 2.0],
        "c": [9.0],
    }
    assert store.get("unknown")[1].size == 0


def test_history_store_rows_are_rings_that_read_like_the_series_tail() -> None:
    """Rows appended at different times wrap around their slots at different places; every
    read (a row's history, any trailing width of a push's windows) is the series' own tail."""
    rng = np.random.default_rng(3)
    keep = 5
    store = HistoryStore(keep)
    series = {name: list(rng.normal(size=keep + i)) for i, name in enumerate("abcd")}
    for name, vals in series.items():
        store.set(name, np.arange(len(vals)), np.array(vals))
    for step in range(23):
        names = [s for s in series if rng.random() < 0.7] or ["a"]
        new = rng.normal(size=len(names))
        rows = np.array(store.rows(names), dtype=np.int64)
        win = store.append_one(rows, np.full(len(names), 100 + step), new)
        for name, x in zip(names, new, strict=True):
            series[name].append(float(x))
        for width in (1, 3, keep + 1):
            want = [series[s][-width:] for s in names]
            assert win.values(width).tolist() == want
            assert win.timestamps(width)[:, -1].tolist() == [100 + step] * len(names)
            seen = win.view(width)  # rows in order are a view of the store: read-only
            assert seen.tolist() == want and not seen.flags.writeable
        for name, vals in series.items():
            assert store.get(name)[1].tolist() == vals[-keep:]
        if step == 11:  # a forget moves the last row into the hole, its ring position with it
            store.forget("b")
            del series["b"]


def test_steady_state_push_runs_each_packed_rule_once_and_matches_batch() -> None:
    """Series with a full history and one new point run as rows of one matrix: one call per
    packed rule per push, labels equal to each series' batch labels, even with a rule that
    writes into its input, series joining late, getting several points, or being forgotten."""
    rules = [VANDAL, *BASIC]  # the vandal runs first: the others must still see clean inputs
    kernel, calls = counting_kernel(rules)
    kernel.set_packed([r.id for r in rules])
    n = 260
    data = {f"s{i}": sample(n, seed=70 + i) for i in range(6)}
    got: dict[str, list[np.ndarray]] = {k: [] for k in data}
    pos = dict.fromkeys(data, 0)
    kernel.push([(k, t[:80], v[:80]) for k, (t, v) in data.items() if k != "s5"])
    for k in data:
        if k != "s5":
            pos[k] = 80
    empty = kernel.push([("s1", data["s1"][0][:0], data["s1"][1][:0])])
    assert empty.labels[0].shape == (len(rules), 0)
    kernel.forget(["s0"])  # s0 starts over
    pos["s0"] = 0
    ref_start = dict(pos)
    for step in range(150):
        items = []
        for k, (t, v) in data.items():
            if (k == "s5" and step < 40) or pos[k] >= n:
                continue
            c = 3 if (k == "s1" and step % 7 == 0) else 1
            items.append((k, t[pos[k] : pos[k] + c], v[pos[k] : pos[k] + c]))
            pos[k] += c
        res = kernel.push(items)
        for (k, _, _), lab in zip(items, res.labels, strict=True):
            got[k].append(lab)
    ref = RuleKernel(rules)
    for k, (t, v) in data.items():
        want = ref.batch([(t, v)]).labels[0][:, ref_start[k] : pos[k]]
        np.testing.assert_array_equal(np.concatenate(got[k], axis=1), want, err_msg=k)
    # once every series has a full history, one point each is one call per rule
    before = list(calls)
    kernel.push([(k, np.array([10**9]), np.array([0.0])) for k in data])
    assert [c - b for c, b in zip(calls, before, strict=True)] == [1] * len(rules)


def test_worker_mirror_follows_steady_pushes_across_a_crash() -> None:
    t, v = sample(400, seed=8)
    data = {f"m{i}": (t, v + i) for i in range(3)}
    ref = {k: InProcessEngine(BASIC).batch([(tt, vv)]).labels[0] for k, (tt, vv) in data.items()}
    with WorkerEngine(BASIC) as eng:
        eng.set_packed([r.id for r in BASIC])
        got = {
            k: [lab]
            for k, lab in zip(
                data,
                eng.push([(k, tt[:100], vv[:100]) for k, (tt, vv) in data.items()]).labels,
                strict=True,
            )
        }
        for i in range(100, 400):
            if i == 250:
                os.kill(eng.pids[0], signal.SIGKILL)
            res = eng.push([(k, tt[i : i + 1], vv[i : i + 1]) for k, (tt, vv) in data.items()])
            if i == 250:
                assert res.errors and eng.wait_ready() and eng.restarts == 1
                continue
            for k, lab in zip(data, res.labels, strict=True):
                got[k].append(lab)
    keep = np.r_[0:250, 251:400]
    for k in data:
        np.testing.assert_array_equal(np.concatenate(got[k], axis=1), ref[k][:, keep])


def test_point_columns_read_like_the_list_of_one_column_slices() -> None:
    joined = np.random.default_rng(3).random((3, 7)) < 0.5
    cols = PointColumns(joined)
    want = [joined[:, i : i + 1] for i in range(7)]
    assert len(cols) == 7
    for i in range(-7, 7):
        assert np.array_equal(cols[i], want[i]) and cols[i].shape == (3, 1)
    assert [c.tolist() for c in cols[2:5]] == [c.tolist() for c in want[2:5]]
    assert [c.tolist() for c in cols] == [c.tolist() for c in want]
    with pytest.raises(IndexError):
        cols[7]
    with pytest.raises(IndexError):
        cols[-8]
