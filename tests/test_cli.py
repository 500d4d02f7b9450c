"""harness check / list: exit codes, reports, selection, --load."""

import argparse
import re
import subprocess
import sys

import pandas as pd
import pytest
import torch

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
    # complex check only on complex dtypes, the opt-in checks only when asked for, the
    # reference families only for cases with a reference (neither has one)
    opt_in = [spec for spec in CASE_CHECKS if spec.opt_in]
    needing = [spec for spec in CASE_CHECKS if spec.needs_case]
    assert len(frame) == 2 * (len(CASE_CHECKS) - 2 - len(opt_in) - len(needing)) * 2 + 2
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
    assert list(frame["check"]) == ["search"]
    assert re.fullmatch(r"12 searched inputs \(quick profile\), \d+ to [\d,]+ elements each",
                        frame["message"].iloc[0]), frame["message"].iloc[0]


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


def test_no_match_is_a_usage_error_saying_what_was_given(tmp_path, capsys):
    assert main(["check", "--tag", "no-such-tag", "--report-dir", str(tmp_path)]) == 2
    assert "no case matches --tag 'no-such-tag'; see `harness list`" in capsys.readouterr().err
    assert not (tmp_path / "correctness.csv").exists()


def test_unknown_option_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["check", "--dtype", "float8"])
    assert exc.value.code == 2


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
@pytest.mark.parametrize("command", ["check", "bench"])
def test_cuda_requested_without_a_gpu_is_a_usage_error_before_any_item(command, tmp_path,
                                                                       capsys):
    assert main([command, "--cases", "block/tanh", "--device", "cuda",
                 "--report-dir", str(tmp_path)]) == 2
    assert "cuda requested but torch.cuda.is_available() is False" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_the_default_devices_run_what_is_here_and_say_what_they_skipped(tmp_path, capsys):
    assert main(["check", "--cases", "block/exp", "--check", "fd", "--no-isolate",
                 "--report-dir", str(tmp_path)]) == 0
    assert set(pd.read_csv(tmp_path / "correctness.csv")["device"]) == {"cpu"}
    assert "harness: cuda is not available here (torch.cuda.is_available() is False): its " \
        "items are not run" in capsys.readouterr().err


@pytest.mark.parametrize("argv, says", [
    (["--load", "does_not_exist.py"], "--load does_not_exist.py: no such file or folder"),
    (["--cases", "tutorial/poly", "--cases", "block/tahn"],
     "--cases 'block/tahn' matches no case; closest case names: block/tanh"),
    (["--report-dir", __file__], "is a file, not a folder"),
])
def test_bad_input_is_a_usage_error_before_the_first_item(argv, says, tmp_path, capsys):
    assert main(["check", *argv, *(["--report-dir", str(tmp_path)] if "--report-dir" not in argv
                                   else [])]) == 2
    assert says in capsys.readouterr().err
    assert not (tmp_path / "correctness.csv").exists()


def test_reports_that_cannot_be_written_go_to_a_temporary_folder_saying_where(tmp_path,
                                                                            capsys, monkeypatch):
    from harness import report

    write = report.write

    def refuse(frame, where, **kwargs):
        if str(where) == str(tmp_path / "r"):
            raise PermissionError(13, "Permission denied", str(where))
        return write(frame, where, **kwargs)

    monkeypatch.setattr(report, "write", refuse)
    assert main(["check", "--cases", "block/exp", "--check", "fd", "--no-isolate",
                 "--report-dir", str(tmp_path / "r")]) == 0
    err = capsys.readouterr().err
    assert "could not write the reports to" in err and "writing them to" in err
    fallback = err.split("writing them to ")[1].split(" instead")[0]
    assert len(pd.read_csv(f"{fallback}/correctness.csv")) == 2


def test_one_broken_case_is_one_summary_line_and_the_csv_keeps_its_rows(tmp_path, capsys):
    (tmp_path / "floats.py").write_text('''
import torch
from harness import Case, Input
broken = Case(name="mine/float-out", fn=lambda x: float(x.sum()), inputs=[Input((3,))])
''')
    assert main(["check", "--load", str(tmp_path / "floats.py"), "--cases", "mine/*",
                 "--check", "fd", "--check", "analytic", "--check", "accumulation",
                 "--no-isolate", "--report-dir", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    line = "ERROR mine/float-out (6 items, every one with this error): broken case: fn returned"
    assert out.count(line) == 1 and out.count("ERROR mine/float-out") == 1
    assert "(the same error in 5 more items of mine/float-out)" in out
    assert len(pd.read_csv(tmp_path / "correctness.csv")) == 6


def test_list(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("case ") and "source" in out.splitlines()[0]
    assert "tutorial/tiny-model" in out and "plugin builtin" in out
    assert "    y = 3x^2 + 4x + 2: dy/dx = 6x + 4, 22 at x = 3 (002)" in out  # descriptions
    assert "opt-in: --cases 'opinfo/*'" in out
    assert out.splitlines()[-1].endswith("source(s); 1 opt-in source(s) not built")


def test_list_filters_by_name_and_tag(capsys):
    assert main(["list", "--cases", "tutorial/*", "--tag", "teaching"]) == 0
    out = capsys.readouterr().out
    names = [line.split()[0] for line in out.splitlines()[1:-1] if not line.startswith(" ")]
    assert names and all(n.startswith("tutorial/") for n in names)
    assert "tutorial/notebook-002-poly-rerun" in names and "tutorial/poly" not in names
    assert out.splitlines()[-1].startswith(f"{len(names)} case(s)")
    assert main(["list", "--cases", "block/tahn"]) == 2
    assert "closest case names: block/tanh" in capsys.readouterr().err


def test_list_builds_an_opt_in_source_asked_for(capsys, monkeypatch):
    from types import SimpleNamespace

    from harness import Case, Input, OptInCases, registry

    built = []

    def load():
        built.append(True)
        return [Case(name=f"slow/op{k}", fn=torch.sin, inputs=[Input((2,))],
                     description=f"op {k}") for k in range(3)]

    source = OptInCases("slow", load, tags=("slow",), description="a source too slow to build")
    plugin = SimpleNamespace(name="slowplug", value="slowplug:SOURCE", load=lambda: source)
    monkeypatch.setattr(registry, "entry_points", lambda group: [plugin])
    assert main(["list"]) == 0
    assert not built and "slow/*" in capsys.readouterr().out
    assert main(["list", "--cases", "slow/*"]) == 0
    out = capsys.readouterr().out
    assert built and "slow/op2" in out and "    op 2" in out and "opt-in:" not in out
    assert out.splitlines()[-1] == "3 case(s) from 1 source(s)"


def test_a_broken_plugin_counts_only_where_the_selection_could_include_it(tmp_path, capsys,
                                                                          monkeypatch):
    from types import SimpleNamespace

    from harness import registry

    def missing():
        raise ModuleNotFoundError("No module named 'brokenplug'")

    real = registry.entry_points
    broken = SimpleNamespace(name="broken", value="brokenplug:CASES", load=missing)
    monkeypatch.setattr(registry, "entry_points", lambda group: [*real(group=group), broken])
    assert main(["check", "--cases", "tutorial/poly", "--check", "fd", "--no-isolate",
                 "--report-dir", str(tmp_path / "a")]) == 0
    assert "harness: warning: plugin broken (brokenplug:CASES) could not be loaded" \
        in capsys.readouterr().err
    assert "broken" not in (tmp_path / "a" / "correctness.csv").read_text()
    assert main(["check", "--cases", "broken/*", "--no-isolate",
                 "--report-dir", str(tmp_path / "b")]) == 1
    assert "ERROR plugin broken (brokenplug:CASES) load - -: plugin broken" in \
        capsys.readouterr().out


def test_version_and_the_exit_statuses_in_the_help(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith("harness ")
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "exit status:" in out and "usage error" in out and "130" in out


@pytest.mark.parametrize("command", ["check", "search", "bench", "list"])
def test_every_option_has_a_help_line(command):
    from harness.arguments import parser

    sub = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction))
    for action in sub.choices[command]._actions:
        assert action.help, f"harness {command} {action.option_strings} has no help"
        if action.default not in (None, False, [], argparse.SUPPRESS) and action.dest != "help":
            assert "default" in action.help, f"{command} {action.option_strings} hides its default"


def test_compiled_adds_the_compiled_check_to_the_run(tmp_path):
    code = main(["check", "--cases", "block/exp", "--dtype", "float64", "--compiled",
                 "--compile-backend", "aot_eager", "--report-dir", str(tmp_path)])
    assert code == 0
    frame = pd.read_csv(tmp_path / "correctness.csv")
    assert frame[frame["check"] == "compiled"]["status"].tolist() == ["pass"]
    assert "fd" in set(frame["check"])  # the other checks still run
    assert "sparse" not in set(frame["check"])  # but no other opt-in check


def test_list_into_a_closed_pipe_is_not_an_error(tmp_path):
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


def test_the_command_exits_with_main_s_code_after_the_atexit_handlers_ran(tmp_path):
    script = ("import atexit, sys\n"
              "atexit.register(lambda: print('handler ran', flush=True))\n"
              "sys.argv = ['harness', 'check', '--cases', 'no/such-case', '--report-dir', "
              f"{str(tmp_path)!r}]\n"
              "from harness.cli import console\n"
              "console()\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 2, result.stderr  # no case matches: a usage error
    assert "matches no case" in result.stderr
    assert result.stdout.strip().endswith("handler ran")


def test_auto_workers_are_one_per_core_unless_the_items_would_not_repay_their_load():
    from harness.arguments import AUTO_WORKERS_MAX, auto_workers, usable_cores
    from harness.plan import Selection

    plan, _ = Selection(devices=("cpu",)).plan()
    items = plan.items  # the main job: ~14 s
    assert auto_workers(items, load_seconds=0.02) == min(usable_cores(), AUTO_WORKERS_MAX)
    fd_items = [item for item in items if item.check == "fd"][:40]  # ~0.16 s of work
    assert auto_workers(fd_items, load_seconds=5.0) == 1  # the OpInfo database's load


def test_a_whole_suite_run_starts_its_workers_at_once_a_run_naming_cases_one_first():
    from harness.arguments import AUTO_WORKERS_MAX, early_workers, parser, usable_cores
    from harness.processes import whole_suite

    def early(*argv):
        argv = ["check", *argv]
        return early_workers(parser().parse_args(argv).workers, whole_suite(argv))

    assert early() == min(usable_cores(), AUTO_WORKERS_MAX)  # the main job uses them all
    assert early("--cases", "tutorial/*") == 1  # the rest once its items say they repay
    assert early("--tag", "opinfo") == 1
    assert early("--workers", "3") == 3
    assert early("--cases", "tutorial/*", "--workers", "2") == 2


ODD = "odd/it's a-b c:d (e)-float64-cpu"
"""A case name holding every separator the item id, the source and a shell line use."""


def test_a_case_name_with_separators_stays_whole_in_reports_reproduce_line_and_list(
        tmp_path, capsys):
    import shlex

    cases = tmp_path / "odd cases.py"
    cases.write_text(f'''
import torch
from harness import Case, Input

class Doubled(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x * 3

    @staticmethod
    def backward(ctx, g):
        return 6 * g

wrong = Case(name={ODD!r}, fn=Doubled.apply, inputs=[Input((3,), name="x")],
             dtypes=(torch.float64,))
broken = Case(name={ODD + " broken"!r}, fn=lambda x: float(x.sum()), inputs=[Input((3,))],
              dtypes=(torch.float64,))
''')
    assert main(["list", "--load", str(cases), "--cases", "odd/*"]) == 0
    listed = capsys.readouterr().out
    assert f"{ODD:<44} file {cases}" in listed
    assert main(["check", "--load", str(cases), "--cases", "odd/*", "--check", "fd",
                 "--no-isolate", "--report-dir", str(tmp_path / "r")]) == 1
    out = capsys.readouterr().out
    rows = pd.read_csv(tmp_path / "r" / "correctness.csv").set_index("case")
    assert rows.loc[ODD, "status"] == "fail" and rows.loc[ODD, "check"] == "fd"
    assert rows.loc[ODD, "source"] == f"file {cases}"
    assert rows.loc[ODD + " broken", "status"] == "error"
    assert rows.loc[ODD + " broken", "message"].startswith("broken case: fn returned float")
    assert f"\n{ODD} broken fd float64 cpu: broken case: fn returned float" in out  # details
    assert f"ERROR {ODD} broken fd float64 cpu: broken case: fn returned float" in out
    line = next(line for line in rows.loc[ODD, "message"].splitlines()
                if "reproduce:" in line)
    command = shlex.split(line.split("reproduce: ", 1)[1])
    assert command[:4] == ["harness", "check", "--cases", ODD]
    assert command[-2:] == ["--load", str(cases)]
    assert main([*command[1:], "--no-isolate", "--report-dir", str(tmp_path / "again")]) == 1
    rerun = pd.read_csv(tmp_path / "again" / "correctness.csv")
    assert list(rerun["case"]) == [ODD] and list(rerun["status"]) == ["fail"]
