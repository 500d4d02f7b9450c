"""Benchmark: how evenly `--shard K/N` splits a run by its recorded durations.

Run with `python tests/bench_shards.py` (part of `nox -s bench`). Runs the main job and the
OpInfo first-order sweep once each with `--store-durations` into a scratch folder, then splits
each into N = 2, 3 and 4 shards as `--shard` does (longest first onto the least-loaded shard)
and prints each shard's summed recorded seconds and the spread (largest / smallest - 1).
Then runs the two shards of the main job and prints their wall times beside the whole run's.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import shards

RUNS = {
    "main job (harness check)": [],
    "OpInfo first order (--cases 'opinfo/*' --check fd)": ["--cases", "opinfo/*", "--check", "fd"],
}


def _check(args: list[str], where: Path) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "harness", "check", *args, "--report-dir",
                    str(where / "r")], capture_output=True, check=False, cwd=where)
    return time.perf_counter() - start


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        where = Path(scratch)
        print("| run | items | N | summed recorded seconds per shard | spread |")
        print("|---|---|---|---|---|")
        walls = {}
        for name, args in RUNS.items():
            durations = where / f"{len(walls)}.json"
            walls[name] = _check([*args, "--store-durations", "--durations-file",
                                  str(durations)], where)
            recorded = shards.load(durations)
            costs = sorted(recorded.items())
            for n in (2, 3, 4):
                placed = shards.assign(costs, n)
                totals = [sum(c for (_, c), s in zip(costs, placed) if s == k)
                          for k in range(n)]
                spread = max(totals) / min(totals) - 1 if min(totals) > 0 else float("inf")
                print(f"| {name} | {len(costs)} | {n} | "
                      f"{', '.join(f'{t:.2f}' for t in totals)} | {spread:.1%} |")
        main_durations = where / "0.json"
        shard_walls = [_check(["--shard", f"{k}/2", "--durations-file", str(main_durations)],
                              where) for k in (1, 2)]
        name = next(iter(RUNS))
        print(f"\n{name}: whole run {walls[name]:.1f} s of wall; its two shards, each a "
              f"fresh process: {shard_walls[0]:.1f} s and {shard_walls[1]:.1f} s (start-up, "
              "about 2 s here, is paid by each)")


if __name__ == "__main__":
    main()
