"""Where the main job's time goes: per check family and phase, and per stage of a run.

    python -m pytest tests/bench_phases.py --benchmark-only -n 0 -s

Writes reports/phases-<device>.md. Per family, every item of the built-in cases runs in this
process with the phase functions below wrapped by a clock that charges each moment to the
innermost phase running (exclusive time, so the phases of an item add up to its time). Per
run, `harness check` runs as a user runs it, in a fresh process, with 1 and with 2 workers;
its stages are read off its own CSV and output.
"""

from __future__ import annotations

import functools
import os
import re
import statistics
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import pandas as pd
import torch

from harness import processes, registry, report
from harness.checks import CHECKS, Settings, common, search
from harness.diagnose import findings
from harness.inputs import build_example, draw_example, draw_training_example
from harness.numerics import differences, localize
from harness.plan import items_for
from harness.runner import run_item

REPORTS = Path(__file__).resolve().parent.parent / "reports"

PHASES = {
    "draw the example": [draw_example, draw_training_example, build_example],
    "finite differences (their forward calls)": [differences.directional, differences.one_sided],
    "reverse mode (autograd.grad, backward)": [torch.autograd.grad, torch.autograd.backward],
    "torch.func (vjp, jvp, vmap)": [torch.func.vjp, torch.func.jvp, torch.func.vmap],
    "rounding-noise measurement": [common.rounding_noise],
    "localization (group testing)": [localize.localize, localize.sign_split],
    "record building": [findings.record_of],
    "hypothesis (engine, drawing inputs)": [search.searched],
    "check logic and other forward calls": [spec.run for spec in CHECKS.values()],
}
REST = "item overhead (state save/restore)"


class PhaseClock:
    """Exclusive time per phase: each moment goes to the innermost wrapped call running."""

    def __init__(self):
        self.totals: Counter = Counter()
        self.stack: list[str] = []
        self.mark = 0.0

    def _switch(self, push: str | None) -> None:
        now = time.perf_counter()
        if self.stack:
            self.totals[self.stack[-1]] += now - self.mark
        if push is None:
            self.stack.pop()
        else:
            self.stack.append(push)
        self.mark = now

    def wrap(self, phase: str, fn):
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            self._switch(phase)
            try:
                return fn(*args, **kwargs)
            finally:
                self._switch(None)

        return timed


def _install(clock: PhaseClock, monkeypatch) -> list:
    """Replace every binding of a phase function, in harness's modules and torch's, by its
    timed wrapper (a `from x import f` binds f in the importing module too). Returns the
    (spec, run) pairs to put back: a Check is frozen, so monkeypatch cannot set it."""
    specs = []
    owners = [m for name, m in list(sys.modules.items())
              if m is not None and (name.startswith(("harness", "cases"))
                                    or name in ("torch.autograd", "torch.func"))]
    for phase, functions in PHASES.items():
        for fn in functions:
            wrapped = clock.wrap(phase, fn)
            for module in owners:
                for attr, value in list(vars(module).items()):
                    if value is fn:
                        monkeypatch.setattr(module, attr, wrapped)
            for spec in CHECKS.values():
                if spec.run is fn:
                    object.__setattr__(spec, "run", wrapped)
                    specs.append((spec, fn))
    return specs


def _family_table(monkeypatch) -> pd.DataFrame:
    for name in processes.PRELOAD + processes.WHOLE_SUITE_PRELOAD:  # a main job's worker's
        __import__(name)
    cases = registry.load(()).cases
    items = items_for(cases, devices=["cpu"])
    for item in items[:40]:  # first calls' one-time costs (lazy init), as in a warm worker
        run_item(item, Settings())
    clock = PhaseClock()
    specs = _install(clock, monkeypatch)
    rows = defaultdict(Counter)
    try:
        _timed_items(items, clock, rows)
    finally:
        for spec, fn in specs:
            object.__setattr__(spec, "run", fn)
    frame = pd.DataFrame.from_dict(rows, orient="index").fillna(0.0)
    phases = [*PHASES, REST]
    frame = frame.reindex(columns=["items", "total", *phases], fill_value=0.0)
    frame = frame.sort_values("total", ascending=False)
    frame.loc["all families"] = frame.sum()
    return frame


def _timed_items(items, clock: PhaseClock, rows) -> None:
    for item in items:
        before = Counter(clock.totals)
        start = time.perf_counter()
        run_item(item, Settings())
        total = time.perf_counter() - start
        spent = clock.totals - before
        rows[item.check].update(spent)
        rows[item.check][REST] += total - sum(spent.values())
        rows[item.check]["items"] += 1
        rows[item.check]["total"] += total


def _wall(command: list[str], repeats: int = 3) -> tuple[float, str]:
    """Median wall seconds of a fresh process running `command`, and its last output."""
    walls, out = [], ""
    for _ in range(repeats):
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, env=os.environ)
        walls.append(time.perf_counter() - start)
        out = done.stdout
    return statistics.median(walls), out


def _run_table(tmp_path) -> pd.DataFrame:
    rows = []
    imports = f"import {', '.join(processes.PRELOAD + processes.WHOLE_SUITE_PRELOAD)}"
    for what, command in [
        ("python -c 'import torch'", [sys.executable, "-c", "import torch"]),
        ("the fork server's imports (processes.PRELOAD and WHOLE_SUITE_PRELOAD)",
         [sys.executable, "-c", imports]),
    ]:
        rows.append({"stage": what, "seconds": _wall(command)[0]})
    for workers in (1, 2):
        folder = tmp_path / f"w{workers}"
        wall, out = _wall([sys.executable, "-m", "harness", "check", "--workers", str(workers),
                           "--report-dir", str(folder)])
        items_wall = float(re.search(r"items in ([\d.]+) s", out).group(1))
        in_items = pd.read_csv(folder / "correctness.csv")["seconds"].sum()
        rows += [
            {"stage": f"harness check -n {workers}: wall", "seconds": wall},
            {"stage": f"harness check -n {workers}: items (first sent to last back)",
             "seconds": items_wall},
            {"stage": f"harness check -n {workers}: sum of item times in the workers",
             "seconds": in_items},
            {"stage": f"harness check -n {workers}: start-up, report and exit (wall - items)",
             "seconds": wall - items_wall},
        ]
    frame = pd.read_csv(tmp_path / "w1" / "correctness.csv")
    start = time.perf_counter()
    report.write(frame, tmp_path / "again", seed=0)
    rows.append({"stage": f"writing the three reports ({len(frame):,} rows)",
                 "seconds": time.perf_counter() - start})
    return pd.DataFrame(rows)


def test_where_the_main_job_spends_its_time(benchmark, tmp_path, monkeypatch):
    families = benchmark.pedantic(_family_table, args=(monkeypatch,), rounds=1, iterations=1)
    stages = _run_table(tmp_path)
    shares = (families.loc["all families", [*PHASES, REST]]
              / families.loc["all families", "total"] * 100)
    lines = [
        "# Where the main job's time goes (CPU)", "",
        f"torch {torch.__version__}, {os.cpu_count()} cores, {torch.get_num_threads()} torch "
        "threads. Command: `python -m pytest tests/bench_phases.py --benchmark-only "
        "-n 0 -s`.", "",
        "## Per run: stages of `harness check`, the main job (median of 3, warm)", "",
        stages.to_markdown(index=False, floatfmt=".2f"), "",
        "## Per family and phase: seconds, items run in one process", "",
        "Exclusive time: a finite difference's forward calls count as finite differences, a "
        "searched input's fd check as its phases, hypothesis's own work as hypothesis.", "",
        families.to_markdown(floatfmt=".3f"), "",
        "Share of all item time: " + ", ".join(f"{name} {share:.0f}%"
                                               for name, share in shares.items()), "",
    ]
    REPORTS.mkdir(exist_ok=True)
    (REPORTS / "phases-cpu.md").write_text("\n".join(lines))
    print("\n".join(lines))
    assert families.loc["all families", "items"] == len(items_for(registry.load(()).cases,
                                                                  devices=["cpu"]))
