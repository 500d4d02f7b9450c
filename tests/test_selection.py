"""One selection for every front end: the same selection through check_gradients,
`harness check` and the pytest plugin gives the same (check, dtype, device) items, and
arguments that contradict each other are refused instead of one silently winning."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from harness import check_gradients
from harness.checks import Settings
from harness.cli import main
from harness.plan import Selection

pytest_plugins = ["pytester"]

CASE_FILE = '''
import torch
from harness import Case

class Cube(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x**3

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 3 * x**2 * g

X = torch.linspace(-1.5, 1.3, 6, dtype=torch.float64).reshape(2, 3)
cube = Case(name="sel/cube", fn=Cube.apply, inputs=lambda gen: (X.clone(),),
            dtypes=(torch.float64,), devices=("cpu",))
'''

SELECTIONS = {
    # name: (check_gradients keywords, harness check options, pytest options)
    "default": ({}, [], []),
    "two families": ({"checks": ("fd", "accumulation")}, ["--check", "fd", "--check",
                     "accumulation"], ["--harness-check", "fd", "--harness-check",
                                       "accumulation"]),
    "an opt-in flag": ({"opt_in": ("backward-determinism",)}, ["--determinism"],
                       ["--harness-opt-in", "backward-determinism"]),
}


def _module(path: Path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("selection_cases", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("selection", list(SELECTIONS))
def test_the_three_front_ends_select_the_same_items(selection, pytester):
    keywords, cli, plugin = SELECTIONS[selection]
    cases = pytester.makepyfile(sel_cases=CASE_FILE)
    pytester.makeini("[pytest]\n")  # not the project's harness_select
    module = _module(cases)

    report = check_gradients(module.Cube.apply, module.X.clone(), **keywords)
    through_call = sorted((r.check, r.dtype, r.device) for r in report.records)

    reports = pytester.path / "r"
    assert main(["check", "--load", str(cases), "--cases", "sel/*", "--device", "cpu",
                 "--no-isolate", "--report-dir", str(reports), *cli]) == 0
    frame = pd.read_csv(reports / "correctness.csv")
    through_cli = sorted(zip(frame["check"], frame["dtype"], frame["device"]))

    collected = pytester.runpytest("--collect-only", "-q", "-p", "no:cacheprovider",
                                   "--harness-cases", "--harness-load", str(cases),
                                   "--harness-select", "sel/*", *plugin)
    ids = [line.split("::", 1)[1] for line in collected.outlines
           if line.startswith("harness::")]
    assert ids, collected.stdout.str()
    through_pytest = sorted(tuple(i.removeprefix("sel/cube-").rsplit("-", 2)) for i in ids)

    assert through_call == through_cli == through_pytest
    assert len(through_call) > 1


def test_seed_and_settings_that_disagree_are_refused():
    x = torch.randn(3, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"seed=5 and settings=Settings\(seed=1, \.\.\.\) "
                                         "disagree; give one of them"):
        check_gradients(torch.sin, x, seed=5, settings=Settings(seed=1), checks="fd")
    report = check_gradients(torch.sin, x, settings=Settings(seed=1), checks="fd")
    assert {r.seed for r in report.records} == {1}


def test_named_dense_families_on_a_sparse_input_are_refused():
    x = torch.eye(3, dtype=torch.float64).to_sparse()
    with pytest.raises(ValueError, match=r"a sparse input is checked by \['sparse'\] alone; "
                                         r"\['analytic'\] perturb dense tensors"):
        check_gradients(lambda a: (a * 2).to_dense().sum(), x, checks=("analytic",))


def test_unknown_names_are_refused_with_the_known_ones():
    with pytest.raises(ValueError, match="unknown check 'compile'; known: .*compiled"):
        Selection(opt_in=("compile",)).families()
    with pytest.raises(ValueError, match="unknown dtype 'float46'; known: .*float64"):
        Selection(dtypes=("float46",)).items([])


def test_opt_in_families_add_to_the_defaults_or_to_the_named_ones():
    defaults = Selection().families()
    assert defaults is None
    added = Selection(opt_in=("compiled",)).families()
    assert added[-1] == "compiled" and "fd" in added and "backward-determinism" not in added
    assert Selection(checks=("fd",), opt_in=("compiled",)).families() == ("fd", "compiled")
