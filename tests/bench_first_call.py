"""Benchmark: the whole default net's first call in a fresh process against its warm calls.

Run with `python tests/bench_first_call.py` (part of `nox -s bench`). For each model family
of tests/power_models.py, float64 and float32, a fresh interpreter imports the harness, then
times `check_gradients(loss, *params)` on the correct model three times: the first call
carries the imports torch makes on first use (sympy for grad_outputs, torch._dynamo for some
decompositions, hypothesis) and the harness's own lazy imports; the others are warm. Two more
fresh interpreters per row give the figures beside it: the same calls with torch's
forward-mode imports (torch._dynamo, torch._decomp.decompositions_for_jvp) made before the
first call, which leaves the harness's own first-call cost; and gradcheck + gradgradcheck
(fast mode, check_forward_ad=True, the forward-mode check the default net makes too) on the
same loss. Prints the first call, the warm median and the difference, per family and dtype.
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
tool = sys.argv[4]
if tool == "harness-preimported":
    import torch._dynamo, torch._decomp.decompositions_for_jvp


def gradcheck(v):
    try:
        return (torch.autograd.gradcheck(v.loss, v.params, fast_mode=True, check_forward_ad=True)
                and torch.autograd.gradgradcheck(v.loss, v.params, fast_mode=True))
    except Exception:
        return False


seconds = []
for seed in range(3):
    v = variant(family, seed, dtype, 1.0)
    start = time.perf_counter()
    ok = (gradcheck(v) if tool == "gradcheck"
          else check_gradients(v.loss, *v.params, name=family.name).ok)
    seconds.append(time.perf_counter() - start)
print(json.dumps({"seconds": seconds, "ok": ok}))
'''


def _fresh(family: str, dtype: str, tool: str) -> dict:
    out = subprocess.run([sys.executable, "-c", _ROUND, str(HERE), family, dtype, tool],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


TOOLS = ("harness", "harness-preimported", "gradcheck")


def main() -> None:
    sys.path.insert(0, str(HERE))
    from power_models import FAMILIES

    print("| family | dtype | harness first call s | warm median s | first - warm s | ok "
          "| harness, torch's forward-mode imports made before: first - warm s "
          "| gradcheck + gradgradcheck fast, check_forward_ad: first - warm s (ok) |")
    print("|---|---|---|---|---|---|---|---|")
    extra = {tool: [] for tool in TOOLS}
    for family in FAMILIES:
        for dtype in ("float64", "float32"):
            # gradcheck is for float64: in float32 it fails on rounding, after a time that
            # measures its failure path, not a first call
            tools = TOOLS if dtype == "float64" else TOOLS[:2]
            cells = {}
            for tool in tools:
                row = _fresh(family.name, dtype, tool)
                first, warm = row["seconds"][0], statistics.median(row["seconds"][1:])
                extra[tool].append(first - warm)
                cells[tool] = (first, warm, first - warm, row["ok"])
            first, warm, more, ok = cells["harness"]
            theirs = (f"{cells['gradcheck'][2]:.2f} ({cells['gradcheck'][3]})"
                      if "gradcheck" in cells else "- (float64 only)")
            print(f"| {family.name} | {dtype} | {first:.2f} | {warm:.2f} | {more:.2f} | {ok} "
                  f"| {cells['harness-preimported'][2]:.2f} | {theirs} |", flush=True)
    for tool in TOOLS:
        print(f"{tool}: first call minus warm: median {statistics.median(extra[tool]):.2f} s, "
              f"largest {max(extra[tool]):.2f} s ({len(extra[tool])} rows)")


if __name__ == "__main__":
    main()
