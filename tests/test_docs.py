"""The user-facing docs resolve inside the repository (issue item 12).

Every relative link in README.md, docs/, datasets/, eval/ and rules/ names a file of the
repository and, with ``#anchor``, a heading of that file; no page points at files a user of the
repository does not have (``../shared``, a "design doc"). The demo output the README shows carries
the two lines ``argos demo`` prints under its table, and the demo table of datasets/README.md
names the series and incident kinds of :data:`argos.data.demo.DEMO_SERIES`.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from argos.cli.demo import demo_legend
from argos.data.demo import DEMO_SERIES

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted(
    [
        ROOT / "README.md",
        *(ROOT / "docs").glob("*.md"),
        *(ROOT / "datasets").glob("*.md"),
        *(ROOT / "eval").rglob("*.md"),
        *(ROOT / "rules").rglob("*.md"),
    ]
)
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to dashes."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    return {
        _slug(line.lstrip("#"))
        for line in page.read_text(encoding="utf-8").splitlines()
        if line.startswith("#")
    }


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_reference_resolves_inside_the_repository(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    assert "../shared" not in text and "design doc" not in text.lower()
    for target in LINK.findall(text):
        if re.match(r"^[a-z]+:", target):
            continue  # https:, mailto:
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        assert dest.exists() and ROOT in [dest, *dest.parents], f"{page.name}: {target}"
        if anchor and dest.suffix == ".md":
            assert anchor in _anchors(dest), f"{page.name}: no heading for {target}"


def test_the_readme_shows_the_demo_legend_and_the_dataset_page_the_demo_series() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    shown = readme.split("`make demo` prints (real output):")[1].split("```")[1]
    for line in demo_legend():
        assert line in shown
    datasets = (ROOT / "datasets" / "README.md").read_text(encoding="utf-8")
    table = datasets.split("## The demo set")[1]
    for name, kinds in DEMO_SERIES.items():
        row = next(ln for ln in table.splitlines() if ln.startswith(f"| `{name}` |"))
        for kind in kinds:
            assert kind.replace("_", " ").replace("stuck", "stuck value") in row, (name, kind)
