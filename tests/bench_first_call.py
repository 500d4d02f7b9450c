"""Benchmark: the whole default net's first call in a fresh process against its warm calls.

Run with `python tests/bench_first_call.py` (part of `nox -s bench`). For each model family
of tests/power_models.py, float64 and float32, a fresh interpreter imports the harness, then
times `check_gradients(loss, *params)` on the correct model three times: the first call
carries the imports torch makes on first use (sympy for grad_outputs, torch._dynamo for some
decompositions, hypothesis) and the harness's own lazy imports; the others are warm. Prints
the first call, the warm median and the difference, per family and dtype.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

_ROUND = r'''
import json, sys, time, warnings
warnings.simplefilter("ignore")
sys.path.insert(0, sys.argv[1])
import torch
from harness import check_gradients
from power_models import FAMILIES, variant
family = next(f for f in FAMILIES if f.name == sys.argv[2])
dtype = getattr(torch, sys.argv[3])
seconds = []
for seed in range(3):
    v = variant(family, seed, dtype, 1.0)
    start = time.perf_counter()
    report = check_gradients(v.loss, *v.params, name=family.name)
    seconds.append(time.perf_counter() - start)
print(json.dumps({"seconds": seconds, "ok": report.ok}))
'''


def _fresh(family: str, dtype: str) -> dict:
    out = subprocess.run([sys.executable, "-c", _ROUND, str(HERE), family, dtype],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    sys.path.insert(0, str(HERE))
    from power_models import FAMILIES

    print("| family | dtype | first call s | warm median s | first - warm s | ok |")
    print("|---|---|---|---|---|---|")
    extra = []
    for family in FAMILIES:
        for dtype in ("float64", "float32"):
            row = _fresh(family.name, dtype)
            first, warm = row["seconds"][0], statistics.median(row["seconds"][1:])
            extra.append(first - warm)
            print(f"| {family.name} | {dtype} | {first:.2f} | {warm:.2f} | {first - warm:.2f} "
                  f"| {row['ok']} |", flush=True)
    print(f"first call minus warm: median {statistics.median(extra):.2f} s, "
          f"largest {max(extra):.2f} s")


if __name__ == "__main__":
    main()
