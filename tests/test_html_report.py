"""correctness.html as a person sees it: rendered by headless Chromium where it can be had,
and asserted on the DOM after its script ran."""

import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from harness.cli import main

PLANTED = Path(__file__).with_name("planted_report.py")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("html")
    code = main(["check", "--load", str(PLANTED), "--cases", "planted/*",
                 "--cases", "tutorial/poly", "--cases", "tutorial/notebook-002-poly-rerun",
                 "--check", "fd", "--check", "analytic", "--check", "accumulation",
                 "--no-isolate", "--report-dir", str(root / "r")])
    assert code == 1
    return root / "r"


def test_the_page_leads_with_the_failures_their_diagnosis_picture_and_reproduce_line(run):
    page = (run / "correctness.html").read_text()
    failures = page[page.index('id="failures"'):page.index('id="skips"')]
    assert "planted/square-wrong-negative" in failures
    assert "wrong exactly where the input is negative" in failures
    assert "reproduce: <code>harness check --cases &#x27;planted/square-wrong-negative&#x27;" \
        in failures and "copyLine(this)" in failures
    assert failures.count("data:image/png;base64,") == 1  # the fd failure's picture
    assert "3 items, every one with this error" in failures  # the broken case, once
    assert "<script" in page and "http://" not in page and "https://" not in page
    assert not re.search(r">\s*(None|nan|NaN)\s*<", page)  # empty cells are empty


def test_the_counts_match_the_csv(run):
    frame = pd.read_csv(run / "correctness.csv")
    page = (run / "correctness.html").read_text()
    counts = page[page.index('class="counts"'):page.index('id="failures"')]
    totals = re.findall(r'<td class="n"><b>(\d+)</b></td>', counts)
    present = [s for s in ("pass", "fail", "error", "skip", "xfail", "xpass")
               if (frame["status"] == s).any()]
    assert [int(t) for t in totals] == [int((frame["status"] == s).sum()) for s in present]
    assert f"{frame['case'].nunique()} cases, {len(frame)} rows" in page


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium here (.ci/run installs it: "
                    "apt-get install -y chromium)")
def test_chromium_renders_the_page_with_its_filters_and_every_row(run, tmp_path):
    frame = pd.read_csv(run / "correctness.csv")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--window-size=1280,1600"]
    dom = subprocess.run([CHROMIUM, *flags, "--dump-dom", (run / "correctness.html").as_uri()],
                         capture_output=True, text=True, timeout=60).stdout
    assert f'<span id="shown">{len(frame)}</span> rows shown' in dom  # the script ran
    assert all(f'type="checkbox" value="{s}"' in dom for s in ("pass", "fail", "error",
                                                               "skip", "xfail"))
    assert 'id="text" type="search"' in dom
    assert "planted/square-wrong-negative" in dom and "reproduce:" in dom
    shot = tmp_path / "shot.png"
    subprocess.run([CHROMIUM, *flags, f"--screenshot={shot}", (run / "correctness.html").as_uri()],
                   capture_output=True, timeout=60)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
