"""How large an error in a float8 kernel's hand-written gradient (or the dequantizer's float32
output) the reference family catches, with the baseline rule (the float8 default) and with the
per-element allowance alone, over seeds: the built-in float8 kernels (cases/float8.py) with a
planted factor. Prints the failures out of the seeds run per (kernel, planted in, dtype,
factor); asserts nothing.

    python tests/bench_float8.py            # 20 seeds (HARNESS_FLOAT8_SEEDS=100 for more)
"""

import os
from dataclasses import replace

import torch
from checking import on_case

from gradharness_cases import float8 as f8
from harness.checks import Settings

FACTORS = (1.0, 1.01, 1.05, 1.08, 1.1, 1.2, 1.3, 1.5, 2.0)
KERNELS = [("kernel/fp8-quantize", f8.Quantize, "scale_error", torch.float32),
           ("kernel/fp8-quantize", f8.Quantize, "scale_error", torch.bfloat16),
           ("kernel/fp8-dequantize", f8.Dequantize, "scale_error", f8.E4M3),
           ("kernel/fp8-dequantize", f8.Dequantize, "scale_error", f8.E5M2),
           ("kernel/fp8-dequantize", f8.Dequantize, "output_error", f8.E4M3),
           ("kernel/fp8-dequantize", f8.Dequantize, "output_error", f8.E5M2),
           ("kernel/fp8-scaled-mm", f8.ScaledMatmul, "scale_error", f8.E4M3)]
PLANTED_IN = {"scale_error": "gradient", "output_error": "output"}


def failures(case, planted, attribute: str, factor: float, dtype, seeds: int) -> int:
    setattr(planted, attribute, factor)
    try:
        return sum(on_case("reference", case, dtype, Settings(seed=s)).status == "fail"
                   for s in range(seeds))
    finally:
        setattr(planted, attribute, 1.0)


def main() -> None:
    seeds = int(os.environ.get("HARNESS_FLOAT8_SEEDS", "20"))
    cases = {c.name: c for c in f8.FLOAT8_CASES}
    print(f"failures of {seeds} seeds per planted factor")
    print(f"{'kernel':<22} {'planted in':<10} {'dtype':<14} {'rule':<12} "
          + " ".join(f"{f:>5}" for f in FACTORS))
    for name, planted, attribute, dtype in KERNELS:
        rules = [("default", cases[name])]
        if dtype in (f8.E4M3, f8.E5M2):  # the quantizer's gradient keeps its input's dtype
            rules.append(("per-element", replace(cases[name], baseline_ratio=1e9)))
        for rule, case in rules:
            counts = [failures(case, planted, attribute, f, dtype, seeds) for f in FACTORS]
            print(f"{name:<22} {PLANTED_IN[attribute]:<10} "
                  f"{str(dtype).removeprefix('torch.'):<14} {rule:<12} "
                  + " ".join(f"{c:>5}" for c in counts), flush=True)


if __name__ == "__main__":
    main()
