"""Benchmark: how fast the OpInfo sweep's correctness.html is ready in headless Chromium.

Run with `python -m pytest tests/bench_html.py -n 0 -s` (part of `nox -s bench`): runs
`harness check --cases 'opinfo/*'` (every family, ~8,000 rows), then loads its HTML three
times and prints the page's own clock (performance.now() when the script has shown the rows)
and the whole browser process's wall time, beside the row count and the file size.
"""

import re
import shutil
import statistics
import subprocess
import sys
import time

import pandas as pd
import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="needs chromium (apt-get install -y chromium)")
def test_opinfo_report_opens_quickly(tmp_path):
    pytest.importorskip("expecttest")
    subprocess.run([sys.executable, "-m", "harness.cli", "check", "--cases", "opinfo/*",
                    "--report-dir", str(tmp_path)], capture_output=True, timeout=1800)
    page = tmp_path / "correctness.html"
    rows = len(pd.read_csv(tmp_path / "correctness.csv"))
    ready, walls = [], []
    for _ in range(3):
        start = time.perf_counter()
        dom = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                              "--dump-dom", page.as_uri()], capture_output=True, text=True,
                             timeout=120).stdout
        walls.append(time.perf_counter() - start)
        ready.append(int(re.search(r'data-ready-ms="(\d+)"', dom).group(1)) / 1000)
    print(f"\nOpInfo correctness.html: {rows} rows, {page.stat().st_size / 2**20:.1f} MiB; "
          f"ready after {statistics.median(ready):.2f} s (page clock, median of 3), "
          f"browser process {statistics.median(walls):.2f} s wall (start-up and DOM dump "
          "included)")
