"""The warn status: right values, something else wrong (a tensor kept on ctx outside
save_for_backward). It is its own row everywhere, and fails a run only when it is strict."""

import warnings

import pandas as pd
import pytest
import torch

from harness import assert_gradients, check_gradients
from harness.cli import main
from harness.html_report import SCRIPT
from harness.record import HarnessWarning, fails_run

import planted

pytest_plugins = ["pytester"]

KEEPS = '''
import torch
from harness import Case, Input

class KeepsInput(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        ctx.copy = x.detach().clone()
        return x ** 2

    @staticmethod
    def backward(ctx, g):
        return 2 * ctx.copy * g

keeps = Case(name="mine/keeps-input", fn=KeepsInput.apply, inputs=[Input((3,))],
             dtypes=(torch.float64,), devices=("cpu",))
'''


def test_only_bad_statuses_fail_a_run_and_warn_does_when_strict():
    assert [s for s in ("pass", "skip", "xfail", "warn", "fail", "error", "xpass")
            if fails_run(s)] == ["fail", "error", "xpass"]
    assert fails_run("warn", strict=True) and not fails_run("pass", strict=True)


def test_check_gradients_passes_a_warn_row_unless_strict():
    x = torch.randn(4, dtype=torch.float64, requires_grad=True)
    report = check_gradients(planted.SquareKeepsInput.apply, x, checks=("fd", "retain-graph"))
    assert [r.status for r in report.records] == ["pass", "warn"]
    assert report.ok and not report.failures
    assert [r.check for r in report.warnings] == ["retain-graph"]
    assert "SquareKeepsInput.copy holds a tensor on ctx" in report.warnings[0].pattern
    strict = check_gradients(planted.SquareKeepsInput.apply, x, checks="retain-graph",
                             strict=True)
    assert not strict.ok and [r.status for r in strict.failures] == ["warn"]
    assert "SquareKeepsInput.copy" in str(strict)
    right = check_gradients(planted.square, x, checks="retain-graph")
    assert [r.status for r in right.records] == ["pass"] and not right.warnings


def test_assert_gradients_turns_a_warn_row_into_a_python_warning():
    x = torch.randn(4, dtype=torch.float64, requires_grad=True)
    with pytest.warns(HarnessWarning, match="SquareKeepsInput.copy holds a tensor on ctx"):
        assert_gradients(planted.SquareKeepsInput.apply, x, checks="retain-graph")
    with warnings.catch_warnings():
        warnings.simplefilter("error", HarnessWarning)
        assert_gradients(planted.square, x, checks="retain-graph")
    with pytest.raises(AssertionError, match="SquareKeepsInput.copy"):
        assert_gradients(planted.SquareKeepsInput.apply, x, checks="retain-graph",
                         strict=True)


def test_the_cli_writes_warn_rows_and_exits_0_unless_strict(tmp_path, capsys):
    (tmp_path / "keeps.py").write_text(KEEPS)
    args = ["check", "--load", str(tmp_path / "keeps.py"), "--cases", "mine/*", "--check",
            "fd", "--check", "retain-graph"]
    assert main([*args, "--report-dir", str(tmp_path / "plain")]) == 0
    out = capsys.readouterr().out
    assert "2 rows, 1 cases: 1 pass, 0 fail, 0 error, 0 skip, 1 warn" in out
    assert ("  WARN mine/keeps-input retain-graph float64 cpu: a second backward without "
            "retain_graph succeeded because KeepsInput.copy holds a tensor on ctx") in out
    frame = pd.read_csv(tmp_path / "plain" / "correctness.csv")
    assert list(frame["status"]) == ["pass", "warn"]
    markdown = (tmp_path / "plain" / "correctness.md").read_text()
    assert "## Warnings (right values; they fail the run under --strict)" in markdown
    assert "### mine/keeps-input / retain-graph / float64 / cpu" in markdown
    page = (tmp_path / "plain" / "correctness.html").read_text()
    assert '<h2 id="warnings">Warnings (1: right values' in page
    assert '<details open class="failure warn">' in page
    assert main([*args, "--strict", "--report-dir", str(tmp_path / "strict")]) == 1
    frame = pd.read_csv(tmp_path / "strict" / "correctness.csv")
    assert list(frame["status"]) == ["pass", "warn"]  # the row says what it is either way


def test_the_html_filters_know_every_status():
    assert "const STATUSES=[\"pass\", \"fail\", \"error\", \"skip\", \"xfail\", \"xpass\", " \
           "\"warn\"];" in SCRIPT


def test_the_pytest_plugin_warns_and_fails_only_when_strict(pytester):
    pytester.makepyfile(keeps=KEEPS)
    pytester.makeini("[pytest]\nharness_cases = true\nharness_select = mine/*\n"
                     "harness_checks = fd retain-graph\n")
    result = pytester.runpytest("--harness-load", "keeps.py", "-p", "no:randomly")
    result.assert_outcomes(passed=2, warnings=1)
    result.stdout.fnmatch_lines(["*HarnessWarning: mine/keeps-input float64 cpu: retain-graph*",
                                 "*KeepsInput.copy holds a tensor on ctx*"])
    strict = pytester.runpytest("--harness-load", "keeps.py", "--harness-strict")
    strict.assert_outcomes(passed=1, failed=1)
    strict.stdout.fnmatch_lines(["*KeepsInput.copy holds a tensor on ctx*"])
