"""The pipeline's report in a real headless browser (Chromium): it renders, shows its sections,
fetches nothing from the network and raises no script error.

Skipped, with the reason, where no Chromium is installed (Debian: ``apt-get install chromium``;
``.ci/run`` installs it when apt is available).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

BROWSER = next((shutil.which(b) for b in ("chromium", "chromium-browser") if shutil.which(b)), None)
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        BROWSER is None,
        reason="no Chromium installed (apt-get install chromium) to render the report headless",
    ),
]


def run_browser(page: Path, tmp: Path, *args: str) -> tuple[str, str, list[str]]:
    """Open ``page`` headless; return (stdout, stderr, URLs the page asked the network for).

    Every host name resolves to nothing, so a page that tries to fetch fails to, and the
    attempt is in the browser's NetLog: requests made for the page (isolation key of its file://
    origin), not the browser's own background traffic."""
    profile = tmp / f"profile-{len(list(tmp.iterdir()))}"
    netlog = profile.with_suffix(".netlog.json")
    cmd = [
        BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
        "--host-resolver-rules=MAP * ~NOTFOUND", f"--log-net-log={netlog}",
        *args, page.resolve().as_uri(),
    ]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout, res.stderr, page_requests(netlog)


def page_requests(netlog: Path) -> list[str]:
    raw = netlog.read_text()
    try:
        log = json.loads(raw)
    except json.JSONDecodeError:  # a log cut short at exit lacks its closing brackets
        log = json.loads(raw.rstrip().rstrip(",") + "]}")
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    urls = []
    for ev in log.get("events", []):
        p = ev.get("params", {})
        for_page = "file://" in str(p.get("network_isolation_key", ""))
        url = str(p.get("url", ""))
        if ev.get("type") == start and for_page and not url.startswith(("file:", "data:")):
            urls.append(url)
    return urls


def script_errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]


@pytest.fixture(scope="module")
def pipeline_report(tmp_path_factory) -> Path:
    from drivefi.pipeline import run_pipeline
    from drivefi.world.scenario import load_scenario

    out = tmp_path_factory.mktemp("pipe")
    run_pipeline(load_scenario("lead_brake"), out, budget=20, training_runs=40, durations=(5,),
                 workers=1, progress=False, log=lambda *a: None, rounds=1)  # fmt: skip
    return out / "report.html"


def test_the_checks_catch_fetches_and_script_errors(tmp_path):
    """Negative control: a page with an external image, stylesheet and a failing script."""
    bad = tmp_path / "bad.html"
    bad.write_text(
        "<!doctype html><html><body><p>x</p><img src='http://example.invalid/x.png'>"
        "<link rel=stylesheet href='https://fonts.example.invalid/a.css'>"
        "<script>undefinedFunction()</script></body></html>"
    )
    _, err, urls = run_browser(bad, tmp_path, "--dump-dom")
    assert "http://example.invalid/x.png" in urls and "https://fonts.example.invalid/a.css" in urls
    assert any("undefinedFunction" in line for line in script_errors(err))


def test_report_renders_in_chromium(pipeline_report, tmp_path):
    dom, err, urls = run_browser(pipeline_report, tmp_path, "--dump-dom")
    assert urls == [], f"the report fetched {urls}"
    assert script_errors(err) == []
    for text in ("What to act on", "Search vs random fault injection", "Distinct critical cases",
                 "Timelines of the most severe cases", "injection point × start time",
                 "Predicted vs observed", "Bayesian search (campaign 1)",
                 "random FI baseline (campaign 2)", "drivefi replay lead_brake"):  # fmt: skip
        assert text in dom, text
    assert dom.count("<img") >= 5 and dom.count('src="data:image/png;base64,') == dom.count("<img")

    shot = tmp_path / "report.png"
    _, err, urls = run_browser(
        pipeline_report, tmp_path, f"--screenshot={shot}", "--window-size=1400,3000"
    )
    assert urls == [] and script_errors(err) == []
    from PIL import Image

    im = Image.open(shot).convert("L")
    assert im.size == (1400, 3000)
    lo, hi = im.getextrema()
    assert hi - lo > 100  # text and plots, not a blank page
    # something is drawn in each third of the first screen (summary, tables, plots)
    for i in range(3):
        band = im.crop((0, i * 1000, 1400, (i + 1) * 1000))
        assert band.getextrema()[0] < 128, f"band {i} is blank"
