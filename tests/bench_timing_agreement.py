"""Benchmark: is the harness's backward median the time of the backward?

Run with `nox -s bench` or `python -m pytest tests/bench_timing_agreement.py --benchmark-only
-p no:xdist -s`. For a few cases, the same backward (same tensors, same cotangent, graph kept
with retain_graph) is timed three ways, interleaved over three rounds so drift hits all alike:
`harness.bench.measure`, a torch.utils.benchmark Timer written out by hand (statement string,
graph built outside it), and pytest-benchmark's own loop. Prints the medians (median over the
rounds) and their ratios, and writes reports/timing-agreement-<device>.md. Agreement within 10%
is the target; nothing is asserted on a timing.
"""

import statistics
from pathlib import Path

import pytest
import torch
from torch.utils.benchmark import Timer

from harness import registry
from harness.bench import BenchItem, _example, measure, pinned_flags, synchronize, workload

ROUNDS = 3
MIN_RUN_TIME = 0.5
WHAT = [("block/tanh", {"n": 2**20}), ("block/matmul", {"n": 256, "k": 256, "m": 256}),
        ("block/softmax", {"n": 512, "m": 512}), ("block/layer-norm", {"n": 512, "m": 512}),
        ("tutorial/tiny-model", {"batch": 128, "width": 400})]
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
ROWS = []


def _by_hand(item: BenchItem) -> float:
    """The backward timed with Timer directly: leaves, graph and cotangents made here."""
    ex = _example(item.case, item.sizes, item.dtype, item.device, seed=0)
    leaves = [x.detach().clone().requires_grad_(k in ex.wrt) for k, x in enumerate(ex.inputs)]
    outs = ex.fn(*leaves)
    outs = outs if isinstance(outs, (tuple, list)) else (outs,)
    cotangents = [v.to(o.dtype) for o, v in zip(outs, ex.cotangents)]
    targets = [leaves[k] for k in ex.wrt]
    timer = Timer("torch.autograd.grad(outs, targets, cotangents, retain_graph=True)",
                  globals={"torch": torch, "outs": outs, "targets": targets,
                           "cotangents": cotangents}, num_threads=item.threads)
    return timer.blocked_autorange(min_run_time=MIN_RUN_TIME).median


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name,sizes", WHAT, ids=[w[0] for w in WHAT])
def test_harness_median_agrees_with_timer(benchmark, name, sizes, device):
    case = next(c for c in registry.load().cases if c.name == name)
    item = BenchItem(case, sizes, "backward", torch.float32, device, torch.get_num_threads())
    harness, by_hand = [], []
    with pinned_flags():
        for _ in range(ROUNDS):
            harness.append(measure(item, min_run_time=MIN_RUN_TIME).median_s)
            by_hand.append(_by_hand(item))
        run, _ = workload(item)
        torch.set_num_threads(item.threads)
        benchmark.pedantic(lambda: (run(), synchronize(device)), rounds=200, warmup_rounds=5)
    h, t = statistics.median(harness), statistics.median(by_hand)
    p = benchmark.stats.stats.median
    ROWS.append((name, item.size_label, device, item.threads, h, t, p))


def teardown_module():
    lines = ["| case | size | device | threads | harness µs | Timer µs | harness/Timer "
             "| pytest-benchmark µs | harness/pytest-benchmark |", "|" + "---|" * 9]
    for name, size, device, threads, h, t, p in ROWS:
        lines.append(f"| {name} | {size} | {device} | {threads} | {h * 1e6:.1f} | "
                     f"{t * 1e6:.1f} | {h / t:.3f} | {p * 1e6:.1f} | {h / p:.3f} |")
    worst = max((abs(h / t - 1) for *_, h, t, _ in ROWS), default=float("nan"))
    text = "\n".join([
        "# Backward timing: harness median against torch.utils.benchmark and pytest-benchmark",
        "", "Same tensors, cotangent and retained graph; float32 backward; median of "
        f"{ROUNDS} interleaved rounds of {MIN_RUN_TIME} s each (pytest-benchmark: 200 "
        "rounds). Written by `python -m pytest tests/bench_timing_agreement.py "
        "--benchmark-only -p no:xdist -s`.", "", *lines, "",
        f"Largest harness/Timer disagreement: {worst:.1%} (target: within 10%).", ""])
    print("\n\n" + text)
    for device in {r[2] for r in ROWS}:
        out = Path(__file__).resolve().parent.parent / "reports"
        (out / f"timing-agreement-{device}.md").write_text(text)
