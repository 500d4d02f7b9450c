"""Nothing breaks the run: crashing, hanging and state-leaking cases, interruptions, and the
same report from the same seed."""

import os
import shlex
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from harness import Case, Input
from harness.checks import Settings
from harness.cli import main
from harness.plan import Item
from harness.runner import run_item

BAD = '''
import ctypes, os, time, torch
from harness import Case, Input

def aborts(x):
    os.abort()

def segfaults(x):
    ctypes.string_at(0)

def hangs(x):
    time.sleep(3600)

def hog(x):
    return x * torch.ones(2**32, dtype=torch.float64).sum()

def leaks_grad_mode(x):
    torch.set_grad_enabled(False)
    return x * 2

aborting = Case(name="bad/abort", fn=aborts, inputs=[Input((3,))])
segfaulting = Case(name="bad/segfault", fn=segfaults, inputs=[Input((3,))])
hanging = Case(name="bad/hang", fn=hangs, inputs=[Input((3,))], dtypes=(torch.float64,))
hanging_briefly = Case(name="bad/hang-own-limit", fn=hangs, inputs=[Input((3,))], timeout=1)
hogging = Case(name="bad/memory-hog", fn=hog, inputs=[Input((3,))])
leaking = Case(name="bad/leaks-grad-mode", fn=leaks_grad_mode, inputs=[Input((3,))])
fine = Case(name="bad/zz-fine", fn=torch.sin, inputs=[Input((3,))])
'''


def _rows(report_dir):
    return {row.case: row for row in pd.read_csv(report_dir / "correctness.csv").itertuples()}


def test_crashes_hangs_and_memory_exhaustion_take_down_only_their_worker(tmp_path, capsys):
    (tmp_path / "bad_cases.py").write_text(BAD)
    code = main(["check", "--load", str(tmp_path / "bad_cases.py"), "--cases", "bad/*",
                 "--check", "fd", "--dtype", "float64", "--timeout", "2",
                 "--memory-limit", "8", "--report-dir", str(tmp_path)])
    assert code == 1
    rows = _rows(tmp_path)
    assert "crashed: signal 6 (SIGABRT)" in rows["bad/abort"].message
    assert "crashed: signal 11 (SIGSEGV)" in rows["bad/segfault"].message
    assert "timed out after 2 s" in rows["bad/hang"].message
    assert "timed out after 1 s" in rows["bad/hang-own-limit"].message
    assert "can't allocate memory" in rows["bad/memory-hog"].message
    assert {rows[c].status for c in ("bad/abort", "bad/segfault", "bad/hang",
                                     "bad/memory-hog")} == {"error"}
    assert rows["bad/zz-fine"].status == "pass"  # ran after all of them, in a new worker


def test_two_workers_share_the_items_a_crash_stays_in_its_worker_and_rows_keep_item_order(
        tmp_path):
    (tmp_path / "bad_cases.py").write_text(BAD)
    frames = {}
    for workers in ("1", "2"):
        code = main(["check", "--load", str(tmp_path / "bad_cases.py"), "--cases", "bad/abort",
                     "--cases", "bad/leaks-grad-mode", "--cases", "bad/zz-fine", "--check",
                     "fd", "--check", "reentrancy", "--workers", workers, "--report-dir",
                     str(tmp_path / workers)])
        assert code == 1
        frames[workers] = pd.read_csv(tmp_path / workers / "correctness.csv")
    one, two = frames["1"], frames["2"]
    columns = ["case", "check", "dtype", "status"]
    assert one[columns].values.tolist() == two[columns].values.tolist()
    assert list(two["case"]) == sorted(two["case"])  # the items' order, not finishing order
    crashed = two[two["case"] == "bad/abort"]
    assert crashed["message"].str.contains(r"crashed: signal 6 \(SIGABRT\)").all()
    assert (two[two["case"] == "bad/zz-fine"]["status"] == "pass").all()


def test_workers_take_the_costliest_case_first_and_each_case_s_items_in_a_row():
    from harness.plan import PlannedItem
    from harness.workers import dispatch_order

    def item(case, cost):
        return PlannedItem(id=f"{case}-{cost}", case=case, source="test", check="fd",
                           dtype="float64", device="cpu", cost=cost)

    items = [item("a", 0.01), item("a", 0.01), item("b", 0.01), item("b", 0.3),
             item("c", 0.02), item("c", 0.01)]
    assert dispatch_order(items) == [2, 3, 4, 5, 0, 1]  # b (0.31 s), c (0.03 s), a (0.02 s)


@pytest.mark.parametrize("argv, says", [
    (["--workers", "0"], "expected a number of workers"),
    (["--workers", "many"], "expected a number of workers"),
    (["--no-isolate", "--workers", "2"], "drop --workers 2 or --no-isolate"),
])
def test_bad_worker_counts_are_usage_errors_before_any_item(argv, says, tmp_path, capsys):
    try:
        code = main(["check", "--cases", "block/exp", *argv, "--report-dir", str(tmp_path)])
    except SystemExit as exc:
        code = exc.code
    assert code == 2
    assert says in capsys.readouterr().err
    assert not (tmp_path / "correctness.csv").exists()


def test_global_state_a_case_changes_is_restored_and_named():
    def leaks(x):
        torch.set_default_dtype(torch.float64)
        torch.autograd.set_detect_anomaly(True)
        return x * 2

    leaky = Case(name="leaky", fn=leaks, inputs=[Input((3,))])
    settings = Settings()
    leaked = run_item(Item(leaky, "reentrancy", torch.float64, "cpu"), settings)
    assert torch.get_default_dtype() == torch.float32 and not torch.is_anomaly_enabled()
    assert ("the case changed global torch state (default dtype torch.float32 -> "
            "torch.float64; anomaly detection False -> True)") in leaked.message
    fine = Case(name="fine", fn=torch.sin, inputs=[Input((3,))])
    after = run_item(Item(fine, "fd", torch.float64, "cpu"), settings)
    assert after.status == "pass", after.message


def test_an_integer_analytic_gradient_is_a_broken_case():
    case = Case(name="int-grad", fn=torch.sin, inputs=[Input((3,))],
                grad=lambda x, v: (torch.cos(x) * v).long())
    record = run_item(Item(case, "analytic", torch.float64, "cpu"), Settings())
    assert record.status == "error"
    assert "grad for input 0 has dtype torch.int64" in record.message


def test_a_grad_with_the_wrong_signature_blames_the_case_and_says_how_it_is_called():
    case = Case(name="cube", fn=lambda x: x**3, inputs=[Input((3,))], grad=lambda x: 3 * x**2)
    record = run_item(Item(case, "analytic", torch.float64, "cpu"), Settings())
    assert record.status == "error"
    assert "broken case: grad cannot be called with 2 argument(s)" in record.message
    assert "grad(*inputs, v)" in record.message and "vector-Jacobian product" in record.message
    assert "please report" not in record.message


def _ctrl_c_default():
    """In the child before exec: SIGINT back to its default, so Python makes it a
    KeyboardInterrupt. A shell that starts the suite in the background (`cmd &` in a script)
    leaves SIGINT ignored in every descendant, and a harness run then never sees Ctrl-C."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("signum, code, name", [(signal.SIGTERM, 143, "SIGTERM"),
                                                (signal.SIGINT, 130, "SIGINT")])
def test_an_interrupted_run_writes_the_finished_rows_marked_incomplete(tmp_path, signum,
                                                                       code, name):
    marker = tmp_path / "started"
    (tmp_path / "slow_cases.py").write_text(f'''
import pathlib, time, torch
from harness import Case, Input

def waits(x):
    pathlib.Path({str(marker)!r}).touch()
    time.sleep(3600)

first = Case(name="slow/a-fine", fn=torch.sin, inputs=[Input((3,))])
second = Case(name="slow/b-waits", fn=waits, inputs=[Input((3,))])
''')
    process = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "check", "--load", str(tmp_path / "slow_cases.py"),
         "--cases", "slow/*", "--check", "fd", "--dtype", "float64", "--workers", "1",
         "--report-dir", str(tmp_path)],  # one worker: the wait starts after the fine row
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_ctrl_c_default)
    deadline = time.monotonic() + 120
    while not marker.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.1)
    assert marker.exists(), process.communicate()
    process.send_signal(signum)
    _, err = process.communicate(timeout=60)
    assert process.returncode == code
    assert f"interrupted by {name} after 1 of 2 items" in err
    rows = _rows(tmp_path)
    assert rows["slow/a-fine"].status == "pass"
    assert "slow/b-waits" not in rows
    assert rows["(run)"].message.startswith(f"INCOMPLETE: the run was interrupted by {name}")
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".correctness")]  # no temp


def test_the_same_seed_gives_the_same_report_and_the_reproduce_line_reproduces(tmp_path):
    (tmp_path / "wrong.py").write_text('''
import torch
from harness import Case, Input
wrong = Case(name="mine/wrong-formula", fn=torch.sin, inputs=[Input((5,))],
             grad=lambda x, v: torch.sin(x) * v)
''')
    args = ["check", "--load", str(tmp_path / "wrong.py"), "--cases", "mine/*",
            "--cases", "block/softmax", "--seed", "7"]
    assert main([*args, "--report-dir", str(tmp_path / "a")]) == 1
    assert main([*args, "--report-dir", str(tmp_path / "b")]) == 1
    first, second = (pd.read_csv(tmp_path / d / "correctness.csv").drop(columns="seconds")
                     for d in ("a", "b"))
    pd.testing.assert_frame_equal(first, second)
    assert set(first["seed"]) == {7} and set(first["torch"]) == {torch.__version__}
    assert set(first["device"]) == {"cpu"}
    failing = first[(first["case"] == "mine/wrong-formula") & (first["status"] == "fail")]
    row = failing.iloc[0]
    line = next(x for x in row["message"].splitlines() if "reproduce:" in x)
    command = shlex.split(line.split("reproduce:", 1)[1])
    assert command[0] == "harness"
    again = subprocess.run([sys.executable, "-m", "harness.cli", *command[1:], "--report-dir",
                            str(tmp_path / "c")], capture_output=True, text=True)
    assert again.returncode == 1
    third = pd.read_csv(tmp_path / "c" / "correctness.csv")
    same = third[(third["check"] == row["check"]) & (third["dtype"] == row["dtype"])].iloc[0]
    assert same["message"] == row["message"]


@given(shape=st.lists(st.one_of(st.integers(-3, 5), st.sampled_from(["n", "", "m"])),
                      max_size=3),
       low=st.floats(allow_nan=True, allow_infinity=True),
       high=st.floats(allow_nan=True, allow_infinity=True),
       margin=st.floats(-1, 1), positive=st.booleans())
def test_invalid_input_specs_raise_a_value_error_naming_the_field(shape, low, high, margin,
                                                                  positive):
    try:
        spec = Input(tuple(shape), low=low, high=high, margin=margin, positive=positive)
    except ValueError as exc:
        assert str(exc).startswith("Input.")
        return
    assert all(isinstance(d, str) or d >= 0 for d in spec.shape)
    assert spec.low < spec.high and spec.margin >= 0
    assert not (spec.positive and spec.high <= 0)


@given(sizes=st.dictionaries(st.sampled_from(["n", "m"]),
                             st.tuples(st.integers(-2, 4), st.integers(-2, 4))),
       shape=st.lists(st.sampled_from(["n", "m", 2]), max_size=2))
def test_invalid_case_specs_raise_a_value_error_naming_the_case(sizes, shape):
    try:
        case = Case(name="fuzzed", fn=torch.sin, inputs=[Input(tuple(shape))], sizes=sizes)
    except ValueError as exc:
        assert "Case 'fuzzed'" in str(exc)
        return
    assert all(0 <= lo <= hi for lo, hi in case.sizes.values())
    assert all(d in case.sizes for d in shape if isinstance(d, str))


def test_under_pytest_xdist_replaces_a_crashed_worker_and_pytest_timeout_stops_a_hang(tmp_path):
    (tmp_path / "bad_cases.py").write_text(BAD)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-n", "1", "--timeout", "3",
         "--harness-cases", "--harness-load", str(tmp_path / "bad_cases.py"),
         "--harness-select", "bad/abort", "--harness-select", "bad/hang",
         "--harness-select", "bad/zz-fine", "--harness-check", "fd",
         "-k", "not abort-fd-float32",  # one crash shows it; each costs a fresh worker (~3 s)
         "-q", str(tmp_path)],
        capture_output=True, text=True, cwd=tmp_path, timeout=300)
    out = result.stdout
    assert result.returncode == 1
    assert "FAILED harness::bad/abort-fd-float64-cpu - worker 'gw" in out
    assert "crashed while running" in out
    assert "FAILED harness::bad/hang-fd-float64-cpu - Failed: Timeout (>3.0s)" in out
    assert "2 passed" in out  # bad/zz-fine, both dtypes, after the crash and the hangs


def test_the_main_process_builds_no_case_and_takes_the_items_from_its_first_worker(
        tmp_path, monkeypatch):
    from harness.plan import Selection

    built = []
    build = Selection.build
    monkeypatch.setattr(Selection, "build", lambda self: built.append(self) or build(self))
    code = main(["check", "--cases", "block/exp", "--check", "fd", "--report-dir",
                 str(tmp_path)])
    assert code == 0
    assert built == []  # the worker built them; the OpInfo database took seconds in each
    frame = pd.read_csv(tmp_path / "correctness.csv")
    assert list(frame["case"]) == ["block/exp", "block/exp"]
    assert list(frame["status"]) == ["pass", "pass"]


def test_workers_that_die_building_the_items_leave_them_to_this_process(tmp_path):
    plugin = tmp_path / "dies_in_workers.py"
    plugin.write_text(f"""
import os, torch
from harness import Case, Input

if os.getpid() != {os.getpid()}:
    os.abort()  # in a worker only

CASES = [Case("dies/exp", torch.exp, [Input((3,))], grad=lambda x, v: [torch.exp(x) * v])]
""")
    code = main(["check", "--load", str(plugin), "--cases", "dies/*", "--check", "fd",
                 "--dtype", "float64", "--report-dir", str(tmp_path)])
    assert code == 0
    frame = pd.read_csv(tmp_path / "correctness.csv")
    assert list(frame["status"]) == ["pass"]
    assert "no worker process could start (EOFError" in frame["message"][0]


def test_a_worker_freezes_what_it_loaded_so_no_collection_walks_it_again(tmp_path):
    plugin = tmp_path / "frozen.py"
    plugin.write_text("""
import gc, torch
from harness import Case, Input

def scaled(x):  # NaN (an error row) unless the worker froze its loaded objects
    return x * (2.0 if gc.get_freeze_count() > 0 else float("nan"))

CASES = [Case("frozen/scaled", scaled, [Input((3,))], grad=lambda x, v: [2.0 * v])]
""")
    code = main(["check", "--load", str(plugin), "--cases", "frozen/*", "--check", "analytic",
                 "--dtype", "float64", "--report-dir", str(tmp_path)])
    frame = pd.read_csv(tmp_path / "correctness.csv")
    assert (code, list(frame["status"])) == (0, ["pass"]), frame["message"][0]


def test_a_worker_that_cannot_start_leaves_the_items_to_this_process(tmp_path, monkeypatch):
    from harness import workers
    from harness.plan import Selection

    def refuse(*args, **kwargs):
        raise OSError("no processes left")

    built = []
    build = Selection.build
    monkeypatch.setattr(Selection, "build", lambda self: built.append(self) or build(self))
    monkeypatch.setattr(workers, "_Worker", refuse)
    code = main(["check", "--cases", "block/exp", "--check", "fd", "--report-dir",
                 str(tmp_path)])
    assert code == 0
    assert len(built) == 1  # built here once, for the plan and the items both
    frame = pd.read_csv(tmp_path / "correctness.csv")
    assert list(frame["status"]) == ["pass", "pass"]
    assert "no worker process could start (OSError: no processes left)" in frame["message"][0]


def test_an_interrupted_bench_writes_the_measurements_it_finished(tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "bench", "--cases", "block/tanh", "--device",
         "cpu", "--mode", "backward", "--min-run-time", "0.05", "--repeats", "2",
         "--report-dir", str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env={**os.environ, "HARNESS_PROGRESS_EVERY": "0"})
    for line in process.stderr:
        if line.strip().startswith("2/"):  # "2/N measurements, ...": two finished
            break
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 143, err
    rows = pd.read_csv(tmp_path / "bench.csv")
    assert len(rows) >= 2
    assert "INCOMPLETE: interrupted by SIGTERM after" in (tmp_path / "bench.md").read_text()


def test_an_output_shape_that_changes_between_calls_is_an_error_saying_so():
    calls = iter(range(100))
    shifting = Case(name="shifting", fn=lambda x: x[: 1 + next(calls) % 3] * 2,
                    inputs=[Input((4,))])
    record = run_item(Item(shifting, "fd", torch.float64, "cpu"), Settings())
    assert record.status == "error"
    assert "fn's output shape changes from call to call" in record.message


def test_an_error_raised_inside_torch_names_the_line_of_the_case_that_called_it():
    def mismatched(x):
        return torch.einsum("i,ij->j", x, torch.ones(5, 2, dtype=x.dtype))  # torch/functional.py

    case = Case(name="mismatched", fn=mismatched, inputs=[Input((3,))])
    record = run_item(Item(case, "fd", torch.float64, "cpu"), Settings())
    assert record.status == "error"
    assert "RuntimeError" in record.message
    assert "from the case's code at" in record.message and "in mismatched" in record.message
