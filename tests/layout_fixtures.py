"""Tiny hand-made files in the native layouts of the benchmark datasets (KPI, Yahoo S5, NAB).

They are written into a temporary miniature data root by the ``fixtures_dir`` fixture
(``tests/conftest.py``) rather than committed under their native names, so that the repository
never holds files named like the benchmark data. A few rows each, made up for the loader tests.
"""

from __future__ import annotations

LAYOUT_FILES: dict[str, str] = {
    "kpi/phase2_ground_truth.csv": (
        "timestamp,value,label,KPI ID\n1180,1.2,0,kpi-a\n1900,5.1,0,kpi-b\n1240,1.3,0,kpi-a\n"
    ),
    "kpi/phase2_train.csv": (
        "timestamp,value,label,KPI ID\n"
        "1000,1.0,0,kpi-a\n"
        "1000,5.0,0,kpi-b\n"
        "1060,1.1,0,kpi-a\n"
        "1300,5.5,1,kpi-b\n"
        "1120,9.0,1,kpi-a\n"
        "1600,5.2,0,kpi-b\n"
    ),
    "nab/data/realCat/machine.csv": (
        "timestamp,value\n"
        "2014-01-07 02:40:00,1.0\n"
        "2014-01-07 02:45:00,1.1\n"
        "2014-01-07 02:50:00,5.0\n"
        "2014-01-07 02:55:00,5.2\n"
        "2014-01-07 02:55:00,5.1\n"
        "2014-01-07 03:00:00,1.2\n"
        "2014-01-07 03:05:00,1.0\n"
    ),
    "nab/data/realCat/quiet.csv": (
        "timestamp,value\n"
        "2015-02-26 21:42:53,104\n"
        "2015-02-26 21:47:53,100\n"
        "2015-02-26 21:52:53,99\n"
    ),
    "nab/labels/combined_windows.json": (
        "{\n"
        '    "realCat/machine.csv": [\n'
        "        [\n"
        '            "2014-01-07 02:50:00.000000",\n'
        '            "2014-01-07 02:55:00.000000"\n'
        "        ]\n"
        "    ],\n"
        '    "realCat/quiet.csv": []\n'
        "}\n"
    ),
    "yahoo_s5/A1Benchmark/real_1.csv": (
        "timestamp,value,is_anomaly\n1,0.5,0\n2,0.7,0\n3,9.0,1\n4,0.6,0\n5,0.55,0\n6,0.65,0\n"
    ),
    "yahoo_s5/A1Benchmark/real_2.csv": (
        "timestamp,value,is_anomaly\n"
        "1,1.5,0\n"
        "2,1.7,0\n"
        "3,1.6,0\n"
        "4,1.4,0\n"
        "5,1.5,0\n"
        "6,8.0,1\n"
        "7,1.5,0\n"
    ),
    "yahoo_s5/A2Benchmark/synthetic_1.csv": (
        "timestamp,value,is_anomaly\n"
        "1416726000,13.8,0\n"
        "1416729600,33.5,0\n"
        "1416733200,20.0,0\n"
        "1416736800,90.0,1\n"
    ),
    "yahoo_s5/A3Benchmark/A3Benchmark-TS1.csv": (
        "timestamps,value,anomaly,changepoint,trend,noise,seasonality1,seasonality2,seasonality3\n"
        "1416722400,-363.2,0,0,1.0,0.1,1,2,3\n"
        "1416726000,320.8,0,0,1.1,0.2,1,2,3\n"
        "1416729600,900.0,1,0,1.2,0.3,1,2,3\n"
        "1416733200,310.0,0,0,1.3,0.1,1,2,3\n"
    ),
    "yahoo_s5/A3Benchmark/A3Benchmark_all.csv": ("summary,file\nthis,is ignored\n"),
    "yahoo_s5/A4Benchmark/A4Benchmark-TS1.csv": (
        "timestamps,value,anomaly\n1416722400,2.8,0\n1416726000,112.4,1\n1416729600,3.0,0\n"
    ),
}
