"""The demo report in a real headless browser (Chromium from the system packages).

The session fixture runs ``scripts/ensure_chromium.sh`` (idempotent: installs Debian's chromium
with apt-get when running as root and it is missing) and skips, with the reason, only where no
Chromium can be found afterwards. The tests load the report from ``file://``, fail on any console
message Chromium logs (errors, warnings, uncaught exceptions), check in the browser that every
image decoded, and save a screenshot under the test's temporary folder, copied to
``$ARGOS_TEST_ARTIFACTS`` when that is set.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from argos.data.demo import make_demo_dataset
from argos.report.build import write_report
from argos.training.builtin.method import BuiltinGenerator
from argos.training.driver import train_dataset

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[2]
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
CONSOLE = re.compile(r":CONSOLE(?:\(\d+\)|:\d+)?\]\s*(.*)")


@pytest.fixture(scope="session")
def chromium() -> str:
    """Path of a Chromium executable, installing it first when possible."""
    script = REPO / "scripts" / "ensure_chromium.sh"
    try:
        setup = subprocess.run(["sh", str(script)], capture_output=True, text=True, timeout=500)
        why = setup.stderr.strip()[-300:]
    except subprocess.TimeoutExpired:
        why = "scripts/ensure_chromium.sh did not finish within 500 s"
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    pytest.skip(f"no Chromium and it could not be installed: {why}")


def run_browser(
    exe: str, url: str, profile: Path, *extra: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Headless Chromium on ``url`` with logging to stderr; ``extra`` adds the action."""
    return subprocess.run(
        [
            exe,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--enable-logging=stderr",
            "--v=0",
            *extra,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def console_messages(stderr: str) -> list[str]:
    """What the page wrote to the console (Chromium logs it as ``...:CONSOLE(line)] "msg"``)."""
    return [m.group(1) for m in map(CONSOLE.search, stderr.splitlines()) if m]


@pytest.fixture(scope="module")
def demo_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("demo-run")
    train_dataset(make_demo_dataset(), generator=BuiltinGenerator(), out_dir=run, workers=1)
    return write_report(run)


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_console_check_catches_errors(chromium: str, tmp_path: Path) -> None:
    # The detector of console errors must see one when there is one.
    page = tmp_path / "bad.html"
    page.write_text(
        '<!DOCTYPE html><html><head><link rel="icon" href="data:,"></head><body>'
        "<script>console.error('boom-1'); missing_function();</script></body></html>"
    )
    out = run_browser(chromium, page.as_uri(), tmp_path / "profile", "--dump-dom")
    messages = console_messages(out.stderr)
    assert any("boom-1" in m for m in messages), out.stderr[-2000:]
    assert any("missing_function" in m for m in messages)


def test_demo_report_loads_cleanly_and_is_screenshotted(
    chromium: str, demo_report: Path, tmp_path: Path
) -> None:
    shot = tmp_path / "report.png"
    out = run_browser(
        chromium,
        demo_report.as_uri(),
        tmp_path / "profile",
        f"--screenshot={shot}",
        "--window-size=1400,3000",
        "--hide-scrollbars",
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert console_messages(out.stderr) == []
    assert png_size(shot) == (1400, 3000)
    assert shot.stat().st_size > 50_000  # a rendered page, not a blank one
    artifacts = os.environ.get("ARGOS_TEST_ARTIFACTS", "").strip()
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(artifacts) / "report-demo.png")


def test_every_image_decodes_in_the_browser(
    chromium: str, demo_report: Path, tmp_path: Path
) -> None:
    # A test-only harness page (the report itself has no script) opens the report in an iframe
    # and writes what the browser made of its images and sections into its own DOM.
    harness = demo_report.parent / "harness.html"
    harness.write_text(
        '<!DOCTYPE html><html><head><link rel="icon" href="data:,"></head><body>'
        f'<iframe id="r" src="{demo_report.name}" width="1400" height="900"></iframe>'
        '<pre id="out">pending</pre><script>'
        'var frame = document.getElementById("r");'
        "function report() {"
        " var d = frame.contentDocument; var imgs = Array.from(d.images);"
        " var bad = imgs.filter(function (i) { return !i.complete || i.naturalWidth === 0; });"
        ' document.getElementById("out").textContent = JSON.stringify({'
        "  images: imgs.length, broken: bad.length,"
        '  sections: Array.from(d.querySelectorAll("section")).map(function (s) {'
        "   return s.id; }),"
        '  figures: d.querySelectorAll("figure.series").length});'
        "}"
        "var d0 = frame.contentDocument;"
        'if (d0 && d0.readyState === "complete" && /report\\.html$/.test(d0.URL)) { report(); }'
        'else { frame.addEventListener("load", report); }'
        "</script></body></html>"
    )
    out = run_browser(
        chromium,
        harness.as_uri(),
        tmp_path / "profile",
        "--allow-file-access-from-files",
        "--virtual-time-budget=10000",
        "--dump-dom",
    )
    assert console_messages(out.stderr) == []
    found = re.search(r'<pre id="out">(.*?)</pre>', out.stdout, re.S)
    assert found, out.stdout[-2000:]
    seen = json.loads(found.group(1).replace("&quot;", '"'))
    assert seen["broken"] == 0
    assert seen["figures"] == len(make_demo_dataset().series)
    assert seen["images"] >= seen["figures"]
    assert seen["sections"] == [
        "overview",
        "evaluation",
        "per-series",
        "series",
        "rules",
        "training",
    ]
