"""Is the machine as quiet at the end of a bench as at its start? A fixed workload (a 256x256
float32 matmul on the CPU, at all cores) is timed before the first case, after each case and
at the end; when two readings around a case differ by more than MOVED, another job took (or
gave back) the machine during that case, and its rows are flagged `load`."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch
from torch.utils.benchmark import Timer

MOVED = 0.10
"""A change of the calibration's median by more than this fraction flags the rows between."""


@dataclass(frozen=True)
class Reading:
    """The calibration's median, taken once `rows` measurements were done."""

    rows: int
    seconds: float


def reading(rows: int, timer: type = Timer) -> Reading:
    a = torch.randn(256, 256, generator=torch.Generator().manual_seed(0))

    def run():
        return a @ a

    m = timer(stmt="run()", globals={"run": run}, num_threads=torch.get_num_threads(),
              label="calibration", description="256x256 matmul").blocked_autorange(
                  min_run_time=0.1)
    return Reading(rows, m.median)


def flag_load(frame: pd.DataFrame, readings: list[Reading]) -> tuple[pd.DataFrame, str]:
    """The rows measured while the calibration moved flagged `load: calibration +X%`, and one
    line for the report's top and the console."""
    if len(readings) < 2:
        return frame, ""
    flags = frame["flags"].fillna("").tolist()
    worst = 0.0
    for before, after in zip(readings, readings[1:]):
        change = after.seconds / before.seconds - 1
        worst = max(worst, abs(change), key=abs)
        if abs(change) > MOVED:
            for i in range(before.rows, min(after.rows, len(flags))):
                flags[i] = ",".join(f for f in (flags[i], f"load: calibration {change:+.0%}") if f)
    flagged = sum("load:" in f for f in flags)
    if not flagged:
        return frame, (f"machine load steady: the calibration moved at most {worst:.0%} over "
                       f"{len(readings)} readings")
    return frame.assign(flags=flags), (
        f"MACHINE LOAD CHANGED during the run: the calibration workload's time moved by up to "
        f"{worst:+.0%} between readings; {flagged} measurement(s) flagged 'load' (re-run them "
        "on a quiet machine)")
