"""harness check / list: exit codes, reports, selection, --load."""

import pandas as pd

from harness.checks import CHECKS
from harness.cli import main

CASE_CHECKS = [spec for spec in CHECKS.values() if spec.applies_to == "case"]

BROKEN = '''
import torch
from harness import Case, Input

def boom(x):
    raise ValueError("kaboom")

raises = Case(name="mine/raises", fn=boom, inputs=[Input((3,))])
wrong = Case(name="mine/wrong-formula", fn=torch.sin, inputs=[Input((3,))],
             grad=lambda x, v: torch.sin(x) * v, dtypes=(torch.float64,))
fine = Case(name="mine/fine", fn=torch.sin, inputs=[Input((3,))],
            grad=lambda x, v: torch.cos(x) * v)
'''


def test_check_selected_cases_passes(tmp_path, capsys):
    code = main(["check", "--cases", "tutorial/poly", "--cases", "block/exp",
                 "--report-dir", str(tmp_path)])
    assert code == 0
    frame = pd.read_csv(tmp_path / "correctness.csv")
    assert set(frame["case"]) == {"tutorial/poly", "block/exp"}
    # cases x checks x dtypes on cpu; the low-precision check runs in bfloat16 alone, the
    # complex check only on complex dtypes, the opt-in checks only when asked for
    opt_in = [spec for spec in CASE_CHECKS if spec.opt_in]
    assert len(frame) == 2 * (len(CASE_CHECKS) - 2 - len(opt_in)) * 2 + 2
    assert "complex" not in set(frame["check"])
    assert set(frame[frame["check"] == "low-precision"]["dtype"]) == {"bfloat16"}
    skipped = frame[frame["status"] == "skip"]
    # neither names intermediates; poly's inputs are scalars, which have no other layout
    assert set(skipped["check"]) == {"retain-grad", "layouts"}
    assert set(skipped[skipped["check"] == "layouts"]["case"]) == {"tutorial/poly"}
    assert (frame.drop(skipped.index)["status"] == "pass").all()
    n, k = len(frame), len(skipped)
    summary = f"{n} rows, 2 cases: {n - k} pass, 0 fail, 0 error, {k} skip"
    assert summary in capsys.readouterr().out


def test_search_command_writes_search_reports(tmp_path, capsys):
    assert main(["search", "--cases", "block/tanh", "--dtype", "float64",
                 "--report-dir", str(tmp_path)]) == 0
    frame = pd.read_csv(tmp_path / "search.csv")
    assert list(frame["check"]) == ["search-fd"]
    assert frame["message"].iloc[0] == "12 searched inputs (quick profile)"


def test_failures_and_errors_exit_1_and_keep_going(tmp_path, capsys):
    (tmp_path / "mine.py").write_text(BROKEN)
    code = main(["check", "--load", str(tmp_path / "mine.py"), "--cases", "mine/*",
                 "--dtype", "float64", "--report-dir", str(tmp_path / "r")])
    assert code == 1
    frame = pd.read_csv(tmp_path / "r" / "correctness.csv")
    status = frame.groupby("case")["status"].agg(set).to_dict()
    assert status["mine/raises"] == {"error"}
    assert "fail" in status["mine/wrong-formula"]
    assert status["mine/fine"] == {"pass", "skip"}
    out = capsys.readouterr().out
    assert "ValueError: kaboom" in frame.loc[frame["case"] == "mine/raises", "message"].iloc[0]
    assert "the analytic formula disagrees" in out
    assert "worst at input 0[" in out
    assert "reproduce: harness check --cases 'mine/wrong-formula'" in out


def test_tag_and_check_and_seed_selection(tmp_path):
    assert main(["check", "--tag", "kink", "--check", "fd", "--seed", "7",
                 "--report-dir", str(tmp_path)]) == 0
    frame = pd.read_csv(tmp_path / "correctness.csv")
    assert set(frame["case"]) == {"block/relu"} and set(frame["check"]) == {"fd"}
    assert set(frame["seed"]) == {7}


def test_no_match_is_a_usage_error(tmp_path, capsys):
    assert main(["check", "--cases", "nothing/*", "--report-dir", str(tmp_path)]) == 2
    assert "no case matches" in capsys.readouterr().err


def test_unknown_option_is_a_usage_error(capsys):
    try:
        main(["check", "--dtype", "float8"])
    except SystemExit as exc:
        assert exc.code == 2


def test_cuda_requested_without_gpu_is_a_skip(tmp_path):
    import torch

    if torch.cuda.is_available():
        return
    assert main(["check", "--cases", "tutorial/poly", "--device", "cuda",
                 "--report-dir", str(tmp_path)]) == 0
    frame = pd.read_csv(tmp_path / "correctness.csv")
    assert (frame["status"] == "skip").all()
    assert frame["message"].str.contains("device cuda unavailable").all()


def test_list(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "tutorial/tiny-model" in out and "plugin builtin" in out


def test_compiled_adds_the_compiled_check_to_the_run(tmp_path):
    code = main(["check", "--cases", "block/exp", "--dtype", "float64", "--compiled",
                 "--compile-backend", "aot_eager", "--report-dir", str(tmp_path)])
    assert code == 0
    frame = pd.read_csv(tmp_path / "correctness.csv")
    assert frame[frame["check"] == "compiled"]["status"].tolist() == ["pass"]
    assert "fd" in set(frame["check"])  # the other checks still run
    assert "sparse" not in set(frame["check"])  # but no other opt-in check


def test_list_into_a_closed_pipe_is_not_an_error(tmp_path):
    import subprocess
    import sys

    many = tmp_path / "many.py"  # far more output than a pipe buffers
    many.write_text("import torch\nfrom harness import Case, Input\nCASES = [Case(name="
                    "f'many/{i:05d}', fn=torch.sin, inputs=[Input((3,))]) for i in range(3000)]\n")
    result = subprocess.run(
        f"{sys.executable} -m harness.cli list --load {many} | head -1; "
        "exit ${PIPESTATUS[0]}", shell=True, capture_output=True, text=True,
        executable="/bin/bash")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n") == 1
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr


def test_auto_workers_are_one_per_core_unless_the_items_would_not_repay_their_load():
    from harness import registry
    from harness.cli import AUTO_WORKERS_MAX, _auto_workers, _usable_cores
    from harness.runner import items_for

    items = items_for(registry.load(()).cases, devices=["cpu"])  # the main job: ~14 s
    assert _auto_workers(items, load_seconds=0.02) == min(_usable_cores(), AUTO_WORKERS_MAX)
    fd_items = [item for item in items if item.check == "fd"][:40]  # ~0.16 s of work
    assert _auto_workers(fd_items, load_seconds=5.0) == 1  # the OpInfo database's load
