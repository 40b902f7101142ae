"""Sandbox behaviour: statuses, outputs, grids, preloading, causality, result validation."""

from __future__ import annotations

import json
import os
import signal
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from argos.sandbox.pool import (
    RunResult,
    Sandbox,
    SandboxLimits,
    SandboxUnavailable,
    Status,
    _parse_results,
    check_causality,
)

ROOT = Path(__file__).resolve().parents[2]
LIMITS = SandboxLimits(cpu_seconds=1.0, wall_seconds=6.0, memory_mb=256)

THRESHOLD = '''"""Normal: value below t. Abnormal: value at or above t."""
import numpy as np

PARAMS = {"t": 5.0}
LOOKBACK = 0


def detect(values, timestamps, params):
    return values >= params["t"]
'''

NON_CAUSAL = '''"""Normal: below the mean. Abnormal: above the WHOLE series mean (looks ahead)."""
import numpy as np

PARAMS = {"k": 1.0}
LOOKBACK = 0


def detect(values, timestamps, params):
    return values > values.mean() + params["k"] * values.std()
'''

FAILING = '''"""Normal: -. Abnormal: fails on purpose when t is negative."""
import numpy as np

PARAMS = {"t": 5.0}
LOOKBACK = 0


def helper(x):
    return x[10**9]


def detect(values, timestamps, params):
    if params["t"] < 0:
        return helper(values)
    return values >= params["t"]
'''


@pytest.fixture(scope="module")
def sb() -> Iterator[Sandbox]:
    with Sandbox(workers=2, limits=LIMITS) as s:
        yield s


def _series(n: int = 100, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    v = np.arange(n, dtype=np.float64) % 10
    return v, np.arange(n, dtype=np.int64) * 60


@pytest.mark.timeout(60)
def test_ok_run_outputs_match_in_process(sb: Sandbox) -> None:
    a, b = _series(100), _series(37)
    res = sb.run(THRESHOLD, [a, b], {"t": 7})
    assert res.status is Status.OK, res.detail
    assert res.outputs is not None and len(res.outputs) == 2
    assert res.outputs[0].dtype == np.bool_
    np.testing.assert_array_equal(res.outputs[0], a[0] >= 7)
    np.testing.assert_array_equal(res.outputs[1], b[0] >= 7)
    assert int(res.outputs[0].sum()) == 30 and int(res.outputs[1].sum()) == 9
    assert 0 < res.runtime_ms < res.wall_ms


@pytest.mark.timeout(60)
def test_default_params_come_from_the_rule(sb: Sandbox) -> None:
    res = sb.run(THRESHOLD, [_series(10)])
    assert res.outputs is not None
    assert res.outputs[0].tolist() == [False] * 5 + [True] * 5


@pytest.mark.timeout(60)
def test_grid_runs_every_param_set_in_one_child(sb: Sandbox) -> None:
    results = sb.run_grid(FAILING, [_series(100)], [{"t": 2}, {"t": -1}, {"t": 9}])
    assert [r.status for r in results] == [Status.OK, Status.RUNTIME_ERROR, Status.OK]
    assert results[0].outputs is not None and int(results[0].outputs[0].sum()) == 80
    assert results[2].outputs is not None and int(results[2].outputs[0].sum()) == 10
    err = results[1]
    assert err.detail.startswith("series 0: IndexError: index 1000000000 is out of bounds")
    # only the rule's frames, with their line numbers and source
    assert 'File "<rule>", line 14, in detect' in err.traceback
    assert 'File "<rule>", line 9, in helper' in err.traceback
    assert "return x[10**9]" in err.traceback
    assert "_zygote" not in err.traceback and "sandbox" not in err.traceback


@pytest.mark.timeout(60)
def test_grid_runaway_set_does_not_hide_earlier_results() -> None:
    code = THRESHOLD.replace(
        '    return values >= params["t"]',
        '    while params["t"] < 0:\n        pass\n    return values >= params["t"]',
    )
    with Sandbox(limits=LIMITS) as s:
        results = s.run_grid(code, [_series(20)], [{"t": 1}, {"t": -1}, {"t": 3}])
    assert results[0].status is Status.OK
    assert results[1].status is Status.CPU_LIMIT and "CPU limit of 3 s" in results[1].detail
    assert results[2].status is Status.CPU_LIMIT


@pytest.mark.timeout(60)
def test_static_statuses_skip_execution(sb: Sandbox) -> None:
    syn = sb.run("def detect(:\n", [_series(5)])
    assert syn.status is Status.SYNTAX_ERROR and syn.detail.startswith("line 1: syntax error")
    rej = sb.run(THRESHOLD.replace("import numpy as np", "import os"), [_series(5)])
    assert rej.status is Status.STATIC_REJECT
    assert "line 2: import of 'os' is not allowed" in rej.detail
    # red-team class 8: the parser's RecursionError used to escape Sandbox.run
    deep = sb.run(THRESHOLD + "X = " + "-" * 5000 + "1\n", [_series(5)])
    assert deep.status is Status.STATIC_REJECT and "nested too deeply" in deep.detail


@pytest.mark.timeout(60)
def test_integer_and_float_zero_one_outputs_are_accepted(sb: Sandbox) -> None:
    for expr in ("(values >= 5).astype(int)", "(values >= 5) * 1.0", "list(values >= 5)"):
        res = sb.run(THRESHOLD.replace('values >= params["t"]', expr), [_series(10)])
        assert res.status is Status.OK, (expr, res.detail)
        assert res.outputs is not None and int(res.outputs[0].sum()) == 5


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("expr", "detail"),
    [
        ("values[:-1] >= 5", "series 0: output has shape (9,), expected (10,)"),
        ("values * 2", "series 0: output must be boolean or 0/1; index 1 is"),
        ("np.where(values > 5, np.nan, 0.0)", "series 0: output contains NaN at index 6"),
        ("None", "series 0: output has shape (), expected (10,)"),
    ],
)
def test_bad_outputs_are_explained(sb: Sandbox, expr: str, detail: str) -> None:
    res = sb.run(THRESHOLD.replace('values >= params["t"]', expr), [_series(10)])
    assert res.status is Status.BAD_OUTPUT
    assert res.detail.startswith(detail), res.detail


@pytest.mark.timeout(60)
def test_preloaded_inputs_are_reused_and_evicted() -> None:
    with Sandbox(limits=LIMITS, cache_mb=1) as s:
        big = s.preload([(np.ones(40_000), np.arange(40_000))])  # 640 kB
        other = s.preload([(np.zeros(40_000), np.arange(40_000))])
        for _ in range(2):
            r1 = s.run(THRESHOLD, big, {"t": 1})
            r2 = s.run(THRESHOLD, other, {"t": 1})
            assert r1.outputs is not None and bool(r1.outputs[0].all())
            assert r2.outputs is not None and not r2.outputs[0].any()
        worker = s._all[0]
        assert list(worker.loaded) == [other.key]  # 1 MB cache: the older input was evicted


@pytest.mark.timeout(60)
def test_causal_rule_passes_causality_check(sb: Sandbox) -> None:
    code = (ROOT / "rules" / "examples" / "robust_zscore.py").read_text()
    rng = np.random.default_rng(1)
    v = rng.normal(size=600)
    v[[250, 400]] += 15
    res = check_causality(sb, code, None, v, np.arange(600, dtype=np.int64), n_prefixes=12)
    assert res.status is Status.OK, res.detail
    assert res.outputs is not None
    assert np.flatnonzero(res.outputs[0]).tolist() == [250, 400]


@pytest.mark.timeout(60)
def test_non_causal_rule_is_rejected_with_message(sb: Sandbox) -> None:
    v = np.concatenate([np.zeros(50), np.full(50, 10.0)])
    res = check_causality(sb, NON_CAUSAL, None, v, np.arange(100, dtype=np.int64), n_prefixes=8)
    assert res.status is Status.BAD_OUTPUT
    assert res.detail.startswith("non-causal: label at index ")
    assert "when later points were removed" in res.detail


@pytest.mark.timeout(60)
def test_concurrent_runs_use_the_pool(sb: Sandbox) -> None:
    out: list[RunResult] = []
    lock = threading.Lock()

    def work(t: int) -> None:
        r = sb.run(THRESHOLD, [_series(100)], {"t": t})
        with lock:
            out.append(r)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sorted(int(r.outputs[0].sum()) for r in out if r.outputs is not None) == [
        10 * (10 - t) for t in reversed(range(8))
    ]


@pytest.mark.timeout(60)
def test_dead_worker_is_replaced() -> None:
    with Sandbox(limits=LIMITS) as s:
        os.kill(s._all[0].proc.pid, signal.SIGKILL)
        s._all[0].proc.wait()
        first = s.run(THRESHOLD, [_series(10)])
        assert first.status is Status.CRASHED and "worker" in first.detail
        again = s.run(THRESHOLD, [_series(10)])
        assert again.status is Status.OK


@pytest.mark.timeout(60)
def test_fail_closed_without_kernel_layers() -> None:
    with pytest.raises(SandboxUnavailable, match="refusing to run untrusted code"):
        Sandbox(layers=[])
    with pytest.raises(SandboxUnavailable, match=r"required sandbox layers unavailable.*'seccomp'"):
        Sandbox(layers=["netns"], require=["seccomp"], allow_unconfined=True)
    with pytest.raises(ValueError, match="unknown layers"):
        Sandbox(require=["apparmor"])
    with Sandbox(layers=[], allow_unconfined=True, limits=LIMITS) as s:
        assert s.host.kernel_layers == []
        assert s.run(THRESHOLD, [_series(10)]).status is Status.OK


@pytest.mark.timeout(60)
def test_host_layers_are_probed(sb: Sandbox) -> None:
    assert sb.host.root == (os.geteuid() == 0)
    assert "seccomp=" in sb.host.describe()
    status = Path("/proc/self/status").read_text()
    cap_eff = int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith("CapEff")), 16)
    if sb.host.root and cap_eff & (1 << 7):  # CAP_SETUID: root that can drop to nobody
        assert sb.host.drop_privileges


@pytest.mark.timeout(60)
def test_input_validation() -> None:
    with Sandbox(limits=LIMITS) as s:
        with pytest.raises(ValueError, match="no inputs"):
            s.run(THRESHOLD, [])
        with pytest.raises(ValueError, match="must be 1-D, same length"):
            s.run(THRESHOLD, [(np.zeros(3), np.arange(4))])
        with pytest.raises(ValueError, match="JSON-serialisable"):
            s.run(THRESHOLD, [_series(3)], {"t": object()})


# --- the parent's validation of the (untrusted) result stream ---------------------------------
def _frame(head: dict[str, object], payload: bytes = b"") -> bytes:
    data = json.dumps(head).encode()
    return struct.pack("<II", len(data), len(payload)) + data + payload


_REPLY = {"timed_out": False, "overflow": False, "signal": 0, "exit_code": 0, "cpu_seconds": 0.1}


@pytest.mark.parametrize(
    ("blob", "status", "detail"),
    [
        (
            _frame({"p": 0, "status": "ok"}, b"\x00\x01\x02"),
            Status.BAD_OUTPUT,
            "labels are not 0/1",
        ),
        (
            _frame({"p": 5, "status": "ok"}, b"\x00\x01\x00"),
            Status.BAD_OUTPUT,
            "unexpected parameter",
        ),
        (_frame({"p": 0, "status": "pwned"}), Status.BAD_OUTPUT, "valid index/status"),
        (b"\xff\xff\xff\xff" + b"x" * 10, Status.CRASHED, "exited (code 0) before reporting"),
        (struct.pack("<II", 5, 0) + b"nojs!", Status.BAD_OUTPUT, "not JSON"),
        (
            _frame({"p": 0, "status": "ok"}, b"\x00\x01\x00")[:-2],
            Status.CRASHED,
            "before reporting",
        ),
        (_frame({"p": 0, "status": "ok"}, b"\x00"), Status.BAD_OUTPUT, "labels have 1 bytes"),
        (_frame({"setup_error": "seccomp: EINVAL"}), Status.CRASHED, "sandbox setup failed"),
    ],
)
def test_result_stream_is_validated(blob: bytes, status: Status, detail: str) -> None:
    [res] = _parse_results(_REPLY, blob, [3], 1, LIMITS)
    assert res.status is status and detail in res.detail and res.outputs is None


def test_result_stream_ok() -> None:
    [res] = _parse_results(
        _REPLY,
        _frame({"p": 0, "status": "ok", "runtime_ms": 1.5}, b"\x00\x01\x01"),
        [1, 2],
        1,
        LIMITS,
    )
    assert res.status is Status.OK and res.runtime_ms == 1.5
    assert res.outputs is not None
    assert [o.tolist() for o in res.outputs] == [[False], [True, True]]


@pytest.mark.parametrize(
    ("reply", "status", "detail"),
    [
        ({"timed_out": True}, Status.TIMEOUT, "wall-clock limit of 6 s exceeded"),
        ({"signal": int(signal.SIGXCPU), "cpu_seconds": 1.0}, Status.CPU_LIMIT, "CPU limit of 1 s"),
        ({"signal": int(signal.SIGKILL), "cpu_seconds": 2.0}, Status.CPU_LIMIT, "CPU limit"),
        ({"signal": int(signal.SIGSEGV)}, Status.CRASHED, "killed by SIGSEGV"),
        ({"overflow": True}, Status.BAD_OUTPUT, "size cap"),
    ],
)
def test_ending_statuses(reply: dict[str, object], status: Status, detail: str) -> None:
    [res] = _parse_results({**_REPLY, **reply}, b"", [3], 1, LIMITS)
    assert res.status is status and detail in res.detail


@pytest.mark.timeout(60)
def test_example_rules_run_causally_with_expected_alarms(sb: Sandbox) -> None:
    rng = np.random.default_rng(3)
    v = rng.normal(0, 1, 800)
    v[300:360] = 2.5  # stuck for 60 points
    v[600:] += 12.0  # level shift
    ts = np.arange(800, dtype=np.int64) * 60
    flat = (ROOT / "rules" / "examples" / "flat_line.py").read_text()
    res = check_causality(sb, flat, None, v, ts, n_prefixes=10)
    assert res.status is Status.OK and res.outputs is not None
    assert np.flatnonzero(res.outputs[0]).tolist() == list(range(329, 360))
    shift = (ROOT / "rules" / "examples" / "level_shift.py").read_text()
    res = check_causality(sb, shift, None, v, ts, n_prefixes=10)
    assert res.status is Status.OK and res.outputs is not None
    # the shift at 600 (within the 5-point short window) and the end of the flat stretch, whose
    # near-zero baseline variance makes the return to noise look like a shift
    assert np.flatnonzero(res.outputs[0]).tolist() == [364, 365, 366, 367, 602, 603, 604, 605, 606]


@pytest.mark.timeout(60)
def test_unstartable_worker_is_a_clear_error(tmp_path: Path) -> None:
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\nexit 3\n")
    fake.chmod(0o755)
    with pytest.raises(SandboxUnavailable, match="could not start a sandbox worker"):
        Sandbox(python=str(fake))
