"""The HTML report opened in a real browser: headless Chromium (``/usr/bin/chromium`` or
``$RLHFKIT_CHROMIUM``) loads report.html from disk with the network off and screenshots it.
Skips when Chromium is missing. ``RLHFKIT_UPDATE_SCREENSHOTS=1`` refreshes docs/images/report.png."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.unit.monitor.test_report import make_runs

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]


def _chromium() -> str:
    path = os.environ.get("RLHFKIT_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        pytest.skip("Chromium not installed (apt-get install -y chromium)")
    return path


def test_report_renders_in_headless_chromium(tmp_path):
    import matplotlib.image

    from rlhfkit.monitor.report import build_report

    runs = tmp_path / "runs"
    runs.mkdir()
    make_runs(runs)
    report = build_report(runs)
    shot = tmp_path / "report.png"
    # no network: a self-contained page renders the same offline
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
           "--disable-background-networking", "--proxy-server=127.0.0.1:9", "--window-size=1100,1800",
           f"--screenshot={shot}", report.as_uri()]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    pixels = matplotlib.image.imread(shot)  # [H, W, 3 or 4] floats in [0, 1]
    assert pixels.shape[:2] == (1800, 1100)
    dark = (pixels[..., :3].mean(axis=-1) < 0.5).mean()
    assert 0.005 < dark < 0.5  # text and plots drawn on a white page, not blank, not an error page
    if os.environ.get("RLHFKIT_UPDATE_SCREENSHOTS"):
        (REPO / "docs" / "images").mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, REPO / "docs" / "images" / "report.png")
