"""``promtool test rules`` proves every translatable template family equal to the Python rule.

Each case fits rules of several families on a real KPI, Yahoo or NAB slice (thresholds from the
slice's own scores), exports them, writes the unit test whose expected alerts are the online
detector's labels at every point, and runs Prometheus's own ``promtool`` on it. Together the cases
cover every transform (value, diff, seasonal with 1, 2 and 3 slots, EWMA), every translatable scorer
(static, band, z-score, relative, level shift, variance shift, stuck value), all three directions,
persistence both as ``for:`` and as a count, AND gates and cool-downs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from promtool_cases import fit, promtool, regular_slice, run_case, shape, write_specs

from argos.data.series import Dataset, Series


def _series(ds: Dataset, sid: str) -> Series:
    return next(s for s in ds.series if s.id == sid)


def _assert_fires(result_expected: dict[str, np.ndarray]) -> None:
    silent = [rid for rid, labels in result_expected.items() if not labels.any()]
    assert not silent, f"rules that never alert on the slice prove little: {silent}"


@pytest.fixture(scope="module", autouse=True)
def _needs_promtool() -> None:
    promtool()


def test_kpi_value_and_diff_families(tmp_path: Path, kpi_dataset: Dataset) -> None:
    s = _series(kpi_dataset, "05f10d3a-239c-3bef-9bdc-a2feeb0037aa")
    t, v = regular_slice(s, 420, start=s.meta.get("test_start", 0))
    specs = [
        fit(shape("value", "zscore", "up", window=30), v, 0.97),
        fit(shape("diff", "static", "down", 2), v, 0.9),
        fit(shape("value", "relative", "both", 3, window=10), v, 0.9),
        fit(shape("value", "band", "both", center=float(np.median(v))), v, 0.95, cooldown=5),
        fit(
            shape("value", "level_shift", "up", 2, recent=3, window=30),
            v,
            0.8,
            gate=shape("diff", "zscore", "both", window=10),
            cooldown=3,
        ),
        fit(shape("value", "variance_shift", "down", recent=10, window=60), v, 0.95),
    ]
    res = run_case(tmp_path, write_specs(tmp_path / "kpi-a", specs), v, t, 60_000)
    _assert_fires(res.expected)
    fors = {r.alert: r.for_ms for r in res.export.rules if r.alert}
    assert fors["argos_static_diff_down_k2"] == 60_000  # persistence as `for:`
    assert fors["argos_relative_value_w10_both_k3"] == 120_000


def test_kpi_seasonal_and_ewma_families(tmp_path: Path, kpi_dataset: Dataset) -> None:
    s = _series(kpi_dataset, "1c6d7a26-1f1a-3321-bb4d-7a9d969ec8f0")
    t, v = regular_slice(s, 450, start=s.meta.get("test_start", 0))
    specs = [
        fit(shape("seasonal", "zscore", "both", period=60, cycles=1, window=30), v, 0.97),
        fit(shape("seasonal", "static", "up", period=20, cycles=3), v, 0.97, cooldown=4),
        fit(shape("seasonal", "static", "down", 2, period=30, cycles=2), v, 0.95),
        fit(shape("ewma", "zscore", "down", alpha=0.2, window=30), v, 0.97),
        fit(
            shape("ewma", "static", "both", 2, alpha=0.5),
            v,
            0.9,
            gate=shape("value", "relative", "up", window=10),
        ),
    ]
    res = run_case(tmp_path, write_specs(tmp_path / "kpi-b", specs), v, t, 60_000)
    _assert_fires(res.expected)


def test_yahoo_hourly_families(tmp_path: Path, yahoo_dataset: Dataset) -> None:
    s = _series(yahoo_dataset, "A4/A4Benchmark-TS10")
    t, v = regular_slice(s, 400)
    specs = [
        fit(shape("seasonal", "zscore", "both", period=24, cycles=3, window=60), v, 0.98),
        fit(shape("diff", "zscore", "up", 2, window=30), v, 0.95),
        fit(
            shape("value", "zscore", "down", window=30),
            v,
            0.9,
            gate=shape("value", "level_shift", "up", recent=3, window=30),
            cooldown=6,
        ),
    ]
    res = run_case(tmp_path, write_specs(tmp_path / "yahoo", specs), v, t, 3_600_000)
    _assert_fires(res.expected)


def test_nab_stuck_value_and_gates(tmp_path: Path, nab_dataset: Dataset) -> None:
    s = _series(nab_dataset, "realAWSCloudwatch/ec2_cpu_utilization_c6585a")
    t, v = regular_slice(s, 400)
    specs = [
        fit(shape("value", "flat", "up"), v, 0.9),
        fit(shape("value", "flat", "up", 2), v, 0.6, cooldown=10),
        fit(
            shape("value", "zscore", "both", window=30),
            v,
            0.9,
            gate=shape("diff", "static", "up"),
        ),
        fit(shape("value", "static", "up", 3), v, 0.9),
    ]
    res = run_case(tmp_path, write_specs(tmp_path / "nab", specs), v, t, 300_000)
    _assert_fires(res.expected)
