"""Backward timing: items, rows, flags, CUDA 'unavailable', reports and plots (timer injected)."""

from types import SimpleNamespace

import pandas as pd
import pytest
import torch

from harness import Case, Input, bench, bench_report
from harness.bench import (
    MODES,
    BenchItem,
    bench_items,
    bench_sizes,
    default_family,
    measure,
    pinned_flags,
    run_bench,
    time_callable,
    workload,
)
from harness.cli import main

CASE = Case(name="t/tanh", fn=torch.tanh, inputs=[Input(("n",), name="x")],
            sizes={"n": (1, 8)}, bench_sizes=({"n": 16}, {"n": 256}))


class FakeTimer:
    """Runs the statement once (so the workload is real) and reports fixed statistics:
    7 blocks of 100 calls of 1 ms, 20% IQR at 1 thread (noisy), 5% otherwise."""

    calls = []

    def __init__(self, stmt, globals, num_threads, label, description):
        self.run, self.threads = globals["run"], num_threads
        FakeTimer.calls.append((label, description, num_threads))

    def blocked_autorange(self, min_run_time):
        self.run()
        FakeTimer.min_run_times.append(min_run_time)
        iqr = 2e-4 if self.threads == 1 else 5e-5
        return SimpleNamespace(median=1e-3, iqr=iqr, times=[1e-3] * 7, number_per_run=100)

    min_run_times = []


def _item(case=CASE, sizes=None, mode="backward", dtype=torch.float32, device="cpu", threads=1):
    return BenchItem(case, sizes or {"n": 16}, mode, dtype, device, threads)


def test_items_cover_every_size_mode_device_and_thread_count():
    items = bench_items([CASE], ["cpu", "cuda"], [torch.float32])
    threads = sorted({1, torch.get_num_threads()})
    assert len(items) == 2 * len(MODES) * (len(threads) + 1)
    assert {i.threads for i in items if i.device == "cpu"} == set(threads)
    assert items[0].id == "t/tanh[n=16]-backward-float32-cpu-1t"


def test_rows_carry_what_was_measured():
    rows = run_bench(bench_items([CASE], ["cpu", "cuda"], [torch.float32]), timer=FakeTimer,
                     repeats=5)
    cpu = [r for r in rows if r.device == "cpu"]
    assert {r.size for r in cpu} == {"n=16", "n=256"} and {r.numel for r in cpu} == {16, 256}
    assert all(r.median_s == 1e-3 and r.repeats == 7 for r in cpu)
    assert {r.flags for r in cpu if r.threads == 1} == {"noisy"}
    assert all(r.peak_memory_bytes > 0 and "upper bound" in r.memory_method for r in cpu)


def test_too_few_blocks_are_measured_again_for_longer():
    FakeTimer.min_run_times.clear()
    time_callable(lambda: None, 1, "l", "d", min_run_time=0.2, repeats=10, timer=FakeTimer)
    # 10 blocks of 0.1 s; FakeTimer never gives more than 7, so it gives up after 3 retries
    assert FakeTimer.min_run_times == [0.2] + [pytest.approx(1.2 * 10 * 0.1)] * 3
    FakeTimer.min_run_times.clear()
    time_callable(lambda: None, 1, "l", "d", min_run_time=0.2, repeats=5, timer=FakeTimer)
    assert FakeTimer.min_run_times == [0.2]


def test_blocks_are_topped_up_to_the_asked_repeats_when_autorange_gives_one():
    from torch.utils.benchmark import Measurement, Timer

    class LoadedTimer(Timer):
        """blocked_autorange as under load: one block, however long it may run."""

        def blocked_autorange(self, min_run_time=0.2, **kwargs):
            m = self.timeit(10)
            return Measurement(10, m.raw_times[:1], m.task_spec, m.metadata)

    run, _ = workload(_item(sizes={"n": 64}))
    m = time_callable(run, 1, "t", "backward", min_run_time=0.001, repeats=9,
                      timer=LoadedTimer)
    assert len(m.times) == 9 and m.number_per_run == 10 and m.median > 0


def test_real_timer_gives_at_least_the_asked_repeats():
    run, _ = workload(_item(sizes={"n": 4096}))
    m = time_callable(run, 1, "t", "backward", min_run_time=0.001, repeats=12)
    assert len(m.times) >= 12 and m.median > 0


def test_cuda_rows_say_unavailable_without_a_gpu():
    if torch.cuda.is_available():
        pytest.skip("a GPU is here: its rows are measured")
    row = measure(_item(device="cuda"), timer=FakeTimer)
    assert row.median_s is None and row.flags == "cuda unavailable"
    assert row.memory_method == "unavailable"


def test_a_case_that_raises_becomes_an_error_row():
    def broken(x):
        raise RuntimeError("kernel exploded")

    bad = Case(name="t/broken", fn=broken, inputs=[Input(("n",), name="x")],
               sizes={"n": (1, 8)})
    rows = run_bench([_item(bad, {"n": 8}), _item()], timer=FakeTimer)
    assert rows[0].median_s is None
    assert rows[0].flags == "error: RuntimeError: kernel exploded"
    assert rows[1].median_s == 1e-3  # the next item still ran


def test_cpu_memory_counts_what_backward_allocates():
    row = measure(_item(dtype=torch.float64), timer=FakeTimer)
    assert row.peak_memory_bytes == 2 * 16 * 8  # tanh backward: 1 - y^2, then times g


def test_backward_mode_keeps_one_graph_and_accumulates_nothing():
    run, ex = workload(_item(sizes={"n": 64}))
    first, second = run()[0], run()[0]
    torch.testing.assert_close(first, second)
    assert all(x.grad is None for x in ex.inputs)


def test_forward_backward_mode_gives_the_same_gradient():
    backward, _ = workload(_item(sizes={"n": 64}))
    both, _ = workload(_item(sizes={"n": 64}, mode="forward+backward"))
    torch.testing.assert_close(backward()[0], both()[0])


def test_declared_sizes_then_override_then_default_family():
    assert bench_sizes(CASE) == [{"n": 16}, {"n": 256}]
    assert bench_sizes(CASE, [{"n": 99}, {"m": 3}]) == [{"n": 99}]  # m: not CASE's size
    plain = Case(name="t/x", fn=torch.mm, inputs=[Input(("n", "k")), Input(("k", "n"))],
                 sizes={"n": (2, 9), "k": (1, 3), "unused": (1, 2)})
    family = default_family(plain)
    assert family == [{"n": 23, "k": 23}, {"n": 91, "k": 91}, {"n": 363, "k": 363}]
    assert all(2 * s["n"] ** 2 >= t for s, t in zip(family, (2**10, 2**14, 2**18)))
    fixed = Case(name="t/f", fn=torch.tanh, inputs=[Input((3, 4))])
    assert bench_sizes(fixed) == [{}]


def test_bench_sizes_must_name_declared_sizes():
    with pytest.raises(ValueError, match=r"bench_sizes names \['m'\] are not declared"):
        Case(name="t/bad", fn=torch.tanh, inputs=[Input(("n",))], sizes={"n": (1, 2)},
             bench_sizes=({"m": 4},))


def test_flags_are_pinned_and_restored():
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    before = (matmul.allow_tf32, cudnn.allow_tf32, cudnn.benchmark)
    with pinned_flags(tf32=True, cudnn_benchmark=True) as flags:
        assert matmul.allow_tf32 and cudnn.allow_tf32 and cudnn.benchmark
        assert flags == {"tf32 (pinned)": "True", "cudnn.benchmark (pinned)": "True"}
    assert (matmul.allow_tf32, cudnn.allow_tf32, cudnn.benchmark) == before


def test_summary_has_one_line_per_case_size_and_mode():
    rows = run_bench(bench_items([CASE], ["cpu", "cuda"], [torch.float32]), timer=FakeTimer)
    table = bench_report.summary(bench_report.bench_frame(rows))
    assert len(table) == 2 * len(MODES)
    line = table.iloc[0]
    assert line["case"] == "t/tanh" and line["size"] == "n=16" and line["mode"] == "backward"
    if torch.get_num_threads() > 1:
        assert line["cpu 1 thread µs"] == "1,000.0 ±20%"  # FakeTimer: 1 ms, IQR 0.2 ms
    assert line["flags"] == "noisy"  # the 1-thread row's 20% IQR
    if not torch.cuda.is_available():
        assert line["cuda µs"] == "unavailable" and line["cuda speedup"] == "unavailable"


def test_speedup_pivot_says_unavailable():
    if torch.cuda.is_available():
        pytest.skip("a GPU is here: the speedup is measured")
    rows = run_bench(bench_items([CASE], ["cpu", "cuda"], [torch.float32]), timer=FakeTimer)
    ratios = bench_report.speedup(bench_report.bench_frame(rows))
    assert set(ratios["cuda_speedup"]) == {"unavailable"}


def test_bench_command_writes_reports_and_plots(tmp_path, capsys):
    code = main(["bench", "--cases", "block/tanh", "--mode", "backward", "--min-run-time",
                 "0.01", "--repeats", "3", "--size", "n=1024", "--size", "n=4096",
                 "--report-dir", str(tmp_path)])
    assert code == 0
    names = {p.name for p in tmp_path.iterdir()}
    assert {"bench.csv", "bench.md", "bench.html", "bench-backward.png"} <= names
    assert ("bench-speedup.png" in names) == torch.cuda.is_available()  # no empty axis
    frame = pd.read_csv(tmp_path / "bench.csv")
    assert set(frame["size"]) == {"n=1024", "n=4096"}
    assert (frame[frame["device"] == "cpu"]["repeats"] >= 3).all()
    html = (tmp_path / "bench.html").read_text()
    assert "<td>tf32 (pinned)</td><td>False</td>" in html
    assert "<td>cudnn.benchmark (pinned)</td><td>False</td>" in html
    assert "<h2 id='summary'>Summary</h2>" in html and "bench-backward.png" in html
    assert html.index("bench-backward.png") < html.index("<h2 id='summary'>")  # plots first
    assert "<a href='#plots'>plots</a>" in html
    if not torch.cuda.is_available():
        assert "<b>No CUDA device</b> was measured on this machine" in html
    md = (tmp_path / "bench.md").read_text()
    assert "| block/tanh | n=1024 | backward |" in md
    assert "measurements" in capsys.readouterr().out


def test_bench_command_rejects_a_malformed_size(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "--size", "n=big"])
    assert "expected NAME=N" in capsys.readouterr().err


def _frame(median, iqr):
    return pd.DataFrame([dict(case="c", mode="backward", device="cpu", dtype="float32",
                              size="n=1", threads=1, median_s=median, iqr_s=iqr)])


def test_baseline_flags_only_slowdowns_beyond_the_noise():
    old = _frame(1.0e-3, 1e-5)
    assert bench_report.compare_baseline(_frame(1.05e-3, 1e-5), old)["vs_baseline"][0] == \
        "within noise"  # 5% < 10% threshold
    assert bench_report.compare_baseline(_frame(1.5e-3, 1e-5), old)["vs_baseline"][0] == \
        "slower x1.50"
    assert bench_report.compare_baseline(_frame(1.5e-3, 6e-4), old)["vs_baseline"][0] == \
        "within noise"  # the spread covers the change
    assert bench_report.compare_baseline(_frame(0.5e-3, 1e-5), old)["vs_baseline"][0] == \
        "faster x0.50"
    assert bench_report.compare_baseline(_frame(1e-3, 1e-5), old.assign(case="other"))[
        "vs_baseline"][0] == "no baseline"


class SteadyTimer:
    """A machine with no load: every block 100 calls of 1 ms, 1% IQR, whatever it times."""

    def __init__(self, stmt, globals, **kwargs):
        pass

    def blocked_autorange(self, min_run_time):
        return SimpleNamespace(median=1e-3, iqr=1e-5, times=[1e-3] * 7, number_per_run=100)


def test_bench_baseline_exit_status(tmp_path, capsys, monkeypatch):
    # real timings under a loaded machine can have an IQR above their median, which the
    # comparison rightly calls noise; the exit status is what is tested here
    monkeypatch.setattr(bench, "Timer", SteadyTimer)
    args = ["bench", "--cases", "block/exp", "--mode", "backward", "--device", "cpu",
            "--size", "n=32,m=32", "--min-run-time", "0.01", "--repeats", "3",
            "--report-dir", str(tmp_path)]
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
    item = _item(streaming, {"n": 1000})
    row = measure(item, timer=FakeTimer, repeats=5, bandwidth=24e6)  # FakeTimer: 1 ms a call
    assert row.backward_bytes == 12000 and row.backward_flop == 4000
    assert row.gb_per_s == pytest.approx(12000 / 1e-3 / 1e9)  # 12 kB in 1 ms
    assert row.fraction_of_copy == pytest.approx(0.5)
    assert row.gflop_per_s == pytest.approx(4000 / 1e-3 / 1e9)
    fast = measure(item, timer=FakeTimer, repeats=5, bandwidth=6e6)
    assert fast.fraction_of_copy == pytest.approx(2.0) and "in-cache" in fast.flags


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_rows_are_measured_with_device_memory():
    row = measure(_item(sizes={"n": 4096}, device="cuda", threads=torch.get_num_threads()),
                  min_run_time=0.01, repeats=3)
    assert row.median_s > 0 and row.repeats >= 3
    assert row.memory_method == "cuda max_memory_allocated" and row.peak_memory_bytes > 0
    frame = bench_report.bench_frame([row, measure(_item(sizes={"n": 4096}),
                                                   min_run_time=0.01, repeats=3)])
    assert bench_report.speedup(frame)["cuda_speedup"].iloc[0] != "unavailable"


def test_rows_measured_while_the_calibration_moved_are_flagged_load():
    from harness.calibration import Reading, flag_load

    frame = pd.DataFrame({"flags": ["", "noisy", "", "", "", ""]})
    flagged, note = flag_load(frame, [Reading(0, 1.0e-4), Reading(3, 1.5e-4),
                                      Reading(6, 1.52e-4)])
    assert list(flagged["flags"][:3]) == ["load: calibration +50%", "noisy,load: calibration +50%",
                                          "load: calibration +50%"]
    assert list(flagged["flags"][3:]) == ["", "", ""]
    assert note.startswith("MACHINE LOAD CHANGED") and "3 measurement(s) flagged" in note
    steady, note = flag_load(frame, [Reading(0, 1.0e-4), Reading(6, 1.03e-4)])
    assert list(steady["flags"]) == list(frame["flags"])
    assert note == "machine load steady: the calibration moved at most 3% over 2 readings"
