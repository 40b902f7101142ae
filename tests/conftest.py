"""Shared fixtures: where the real benchmark data is, and cached datasets for every test module.

The real data is found through ``ARGOS_DATA_DIR`` or, failing that, ``../shared/datasets`` beside
the repository. Tests that need it are skipped with a visible reason when neither exists (CI sets
``ARGOS_DATA_DIR``, so they run there). Loaded datasets are session-scoped: load KPI (6.1 M points)
once and reuse ``kpi_dataset`` rather than loading it again.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from argos.data.demo import make_demo_dataset
from argos.data.loaders import load_kpi, load_nab, load_yahoo
from argos.data.series import Dataset

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def find_data_root() -> tuple[Path | None, str]:
    """The real data root and how it was found, or ``None`` and why not."""
    env = os.environ.get("ARGOS_DATA_DIR", "").strip()
    if env:
        root = Path(env).expanduser()
        if root.is_dir():
            return root, f"ARGOS_DATA_DIR={root}"
        return None, f"ARGOS_DATA_DIR={root} does not exist"
    fallback = REPO_ROOT.parent / "shared" / "datasets"
    if fallback.is_dir():
        return fallback, str(fallback)
    return None, f"ARGOS_DATA_DIR is not set and {fallback} does not exist"


@pytest.fixture(scope="session")
def data_root() -> Path:
    """Root of the real benchmark data (``kpi/``, ``yahoo_s5/``, ``nab/``); skips when absent."""
    root, why = find_data_root()
    if root is None:
        pytest.skip(f"real benchmark data not available: {why}")
    return root


def _sub(root: Path, name: str) -> Path:
    folder = root / name
    if not folder.is_dir():
        pytest.skip(f"real benchmark data not available: no {folder}")
    return folder


@pytest.fixture(scope="session")
def fixtures_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of ``tests/fixtures`` (tiny hand-made files) plus the files of
    ``layout_fixtures.LAYOUT_FILES`` in the benchmarks' native layouts, so that it also works as a
    miniature data root (``kpi/``, ``yahoo_s5/``, ``nab/``). Tests may read it, not change it."""
    from layout_fixtures import LAYOUT_FILES

    root = tmp_path_factory.mktemp("fixtures") / "fixtures"
    shutil.copytree(FIXTURES, root)
    for rel, content in LAYOUT_FILES.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return root


@pytest.fixture(scope="session")
def demo_dataset() -> Dataset:
    """The synthetic ``demo`` dataset (seed 0). Do not mutate its arrays."""
    return make_demo_dataset(seed=0)


@pytest.fixture(scope="session")
def kpi_dataset(data_root: Path) -> Dataset:
    """The full real KPI dataset (29 series, 6.1 M points, ~3 s to load), loaded once."""
    return load_kpi(_sub(data_root, "kpi"))


@pytest.fixture(scope="session")
def yahoo_dataset(data_root: Path) -> Dataset:
    """The full real Yahoo S5 dataset (367 series, partitions A1..A4), loaded once."""
    return load_yahoo(_sub(data_root, "yahoo_s5"))


@pytest.fixture(scope="session")
def nab_dataset(data_root: Path) -> Dataset:
    """The full real NAB dataset (58 series, categories as partitions), loaded once."""
    return load_nab(_sub(data_root, "nab"))
