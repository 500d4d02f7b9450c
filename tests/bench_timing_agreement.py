"""Benchmark: is the harness's backward median the time of the backward?

Run with `nox -s bench` or `python -m pytest tests/bench_timing_agreement.py --benchmark-only
-n 0 -s`. For a few cases, the same backward (same tensors, same cotangent, graph kept
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
from harness.bench import (
    BenchItem,
    _example,
    measure,
    pinned_flags,
    synchronize,
    threads_set,
    workload,
)

ROUNDS = 5
MIN_RUN_TIME = 0.3
WHAT = [("block/tanh", {"n": 2**20}), ("block/matmul", {"n": 256, "k": 256, "m": 256}),
        ("block/softmax", {"n": 512, "m": 512}), ("block/layer-norm", {"n": 512, "m": 512}),
        ("tutorial/tiny-model", {"batch": 128, "width": 400})]
DEVICES = ([("cpu", 1), ("cpu", torch.get_num_threads())] if torch.get_num_threads() > 1
           else [("cpu", 1)]) + ([("cuda", torch.get_num_threads())]
                                 if torch.cuda.is_available() else [])
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


@pytest.mark.parametrize("device,threads", DEVICES, ids=[f"{d}-{n}t" for d, n in DEVICES])
@pytest.mark.parametrize("name,sizes", WHAT, ids=[w[0] for w in WHAT])
def test_harness_median_agrees_with_timer(benchmark, name, sizes, device, threads):
    case = next(c for c in registry.load().cases if c.name == name)
    item = BenchItem(case, sizes, "backward", torch.float32, device, threads)
    harness, by_hand = [], []
    with pinned_flags(), threads_set(threads):
        for k in range(ROUNDS):
            harness.append(measure(item, min_run_time=MIN_RUN_TIME).median_s)
            by_hand.append(_by_hand(item))
            if k == ROUNDS // 2:
                run, _ = workload(item)
                benchmark.pedantic(lambda run=run: (run(), synchronize(device)),
                                   rounds=200, warmup_rounds=5)
    h, t = statistics.median(harness), statistics.median(by_hand)
    spread = (max(harness) - min(harness)) / h
    ROWS.append((name, item.size_label, device, threads, h, t, spread,
                 benchmark.stats.stats.median))


def teardown_module():
    lines = ["| case | size | device | threads | harness µs | harness round-to-round spread "
             "| Timer µs | harness/Timer | pytest-benchmark µs | harness/pytest-benchmark |",
             "|" + "---|" * 10]
    for name, size, device, threads, h, t, spread, p in ROWS:
        lines.append(f"| {name} | {size} | {device} | {threads} | {h * 1e6:.1f} | "
                     f"{spread:.0%} | {t * 1e6:.1f} | {h / t:.3f} | {p * 1e6:.1f} | "
                     f"{h / p:.3f} |")
    worst = {}
    for _, _, device, threads, h, t, *_ in ROWS:
        key = f"{device}, {threads} thread(s)"
        worst[key] = max(worst.get(key, 0.0), abs(h / t - 1))
    text = "\n".join([
        "# Backward timing: harness median against torch.utils.benchmark and pytest-benchmark",
        "", "Same tensors, cotangent and retained graph; float32 backward; each figure is the "
        f"median of {ROUNDS} rounds of {MIN_RUN_TIME} s, harness and Timer interleaved "
        "(pytest-benchmark: 200 calls in the middle round). The spread column is "
        "(max - min) / median of the harness's own rounds: the machine's noise. Written by "
        "`python -m pytest tests/bench_timing_agreement.py --benchmark-only -n 0 -s`.",
        "", *lines, "", "Largest harness/Timer disagreement (target: within 10%): "
        + "; ".join(f"{k}: {v:.1%}" for k, v in worst.items()) + ".", ""])
    print("\n\n" + text)
    for device in {r[2] for r in ROWS}:
        out = Path(__file__).resolve().parent.parent / "reports"
        (out / f"timing-agreement-{device}.md").write_text(text)
