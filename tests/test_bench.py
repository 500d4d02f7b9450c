"""Backward timing: rows, flags, CUDA 'unavailable', reports and plots (timer injected)."""

from types import SimpleNamespace

import pandas as pd
import pytest
import torch

from harness import Case, Input, report
from harness.bench import MODES, bench_sizes, measure, run_bench
from harness.cli import main

CASE = Case(name="t/tanh", fn=torch.tanh, inputs=[Input(("n",), name="x")],
            sizes={"n": (1, 8)}, bench_sizes=({"n": 16}, {"n": 256}))


class FakeTimer:
    """Runs the statement once (so the workload is real) and reports fixed statistics."""

    calls = []

    def __init__(self, stmt, globals, num_threads, label, description):
        self.run, self.threads = globals["run"], num_threads
        FakeTimer.calls.append((label, description, num_threads))

    def blocked_autorange(self, min_run_time):
        self.run()
        iqr = 2e-4 if self.threads == 1 else 5e-5  # 20% (noisy) vs 5%
        return SimpleNamespace(median=1e-3, iqr=iqr, times=[1e-3] * 7)


def test_rows_for_every_size_mode_device_and_thread_count():
    FakeTimer.calls.clear()
    rows = run_bench([CASE], ["cpu", "cuda"], [torch.float32], timer=FakeTimer)
    threads = sorted({1, torch.get_num_threads()})
    assert len(rows) == 2 * len(MODES) * (len(threads) + 1)
    cpu = [r for r in rows if r.device == "cpu"]
    assert {r.size for r in cpu} == {"n=16", "n=256"} and {r.numel for r in cpu} == {16, 256}
    assert all(r.median_s == 1e-3 and r.repeats == 7 for r in cpu)
    assert {r.flags for r in cpu if r.threads == 1} == {"noisy"}
    assert all(r.peak_memory_bytes > 0 for r in cpu)
    assert all("upper bound" in r.memory_method for r in cpu)


def test_cuda_rows_say_unavailable_without_a_gpu():
    if torch.cuda.is_available():
        return
    row = measure(CASE, {"n": 16}, "backward", torch.float32, "cuda", 1, timer=FakeTimer)
    assert row.median_s is None and row.flags == "cuda unavailable"
    assert row.memory_method == "unavailable"


def test_cpu_memory_counts_what_backward_allocates():
    row = measure(CASE, {"n": 16}, "backward", torch.float64, "cpu", 1, timer=FakeTimer)
    assert row.peak_memory_bytes == 2 * 16 * 8  # tanh backward: 1 - y^2, then times g


def test_default_bench_size_is_the_largest():
    plain = Case(name="t/x", fn=torch.tanh, inputs=[Input(("n",))], sizes={"n": (2, 9)})
    assert bench_sizes(plain) == [{"n": 9}]


def test_speedup_pivot_says_unavailable():
    rows = run_bench([CASE], ["cpu", "cuda"], [torch.float32], timer=FakeTimer)
    ratios = report.speedup(report.bench_frame(rows))
    if not torch.cuda.is_available():
        assert set(ratios["cuda_speedup"]) == {"unavailable"}


def test_bench_command_writes_reports_and_plots(tmp_path, capsys):
    code = main(["bench", "--cases", "block/tanh", "--mode", "backward", "--min-run-time",
                 "0.01", "--report-dir", str(tmp_path)])
    assert code == 0
    names = {p.name for p in tmp_path.iterdir()}
    assert {"bench.csv", "bench.md", "bench.html", "bench-backward.png",
            "bench-speedup.png"} <= names
    frame = pd.read_csv(tmp_path / "bench.csv")
    assert set(frame["size"]) == {"n=1024", "n=16384", "n=262144", "n=1048576"}
    assert "measurements" in capsys.readouterr().out


def _frame(median, iqr):
    return pd.DataFrame([dict(case="c", mode="backward", device="cpu", dtype="float32",
                              size="n=1", threads=1, median_s=median, iqr_s=iqr)])


def test_baseline_flags_only_slowdowns_beyond_the_noise():
    old = _frame(1.0e-3, 1e-5)
    assert report.compare_baseline(_frame(1.05e-3, 1e-5), old)["vs_baseline"][0] == \
        "within noise"  # 5% < 10% threshold
    assert report.compare_baseline(_frame(1.5e-3, 1e-5), old)["vs_baseline"][0] == \
        "slower x1.50"
    assert report.compare_baseline(_frame(1.5e-3, 6e-4), old)["vs_baseline"][0] == \
        "within noise"  # the spread covers the change
    assert report.compare_baseline(_frame(0.5e-3, 1e-5), old)["vs_baseline"][0] == \
        "faster x0.50"
    assert report.compare_baseline(_frame(1e-3, 1e-5), old.assign(case="other"))[
        "vs_baseline"][0] == "no baseline"


def test_bench_baseline_exit_status(tmp_path, capsys):
    args = ["bench", "--cases", "block/exp", "--mode", "backward", "--device", "cpu",
            "--min-run-time", "0.01", "--report-dir", str(tmp_path)]
    assert main(args) == 0
    frame = pd.read_csv(tmp_path / "bench.csv")
    frame["median_s"] = frame["median_s"] / 100  # a baseline 100x faster than today
    frame["iqr_s"] = 0.0
    frame.to_csv(tmp_path / "fast.csv", index=False)
    assert main(args + ["--baseline", str(tmp_path / "fast.csv")]) == 1
    assert "SLOWER block/exp backward cpu" in capsys.readouterr().out


def test_throughput_against_measured_copy_bandwidth():
    streaming = Case(name="t/stream", fn=torch.tanh, inputs=[Input(("n",), name="x")],
                     sizes={"n": (1, 8)}, bench_sizes=({"n": 1000},),
                     bench_bytes=lambda x: 3 * x.numel() * x.element_size(),
                     bench_flops=lambda x: 4 * x.numel())
    row = measure(streaming, {"n": 1000}, "backward", torch.float32, "cpu", 1,
                  timer=FakeTimer, bandwidth=24e6)  # FakeTimer: 1 ms per call
    assert row.gb_per_s == pytest.approx(12000 / 1e-3 / 1e9)  # 12 kB in 1 ms
    assert row.fraction_of_copy == pytest.approx(0.5)
    assert row.gflop_per_s == pytest.approx(4000 / 1e-3 / 1e9)
    fast = measure(streaming, {"n": 1000}, "backward", torch.float32, "cpu", 1,
                   timer=FakeTimer, bandwidth=6e6)
    assert fast.fraction_of_copy == pytest.approx(2.0) and "in-cache" in fast.flags
