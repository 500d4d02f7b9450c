"""A check family is one spec in one table: a toy family registered here runs through
check_gradients, the CLI and the pytest plugin, with the runner's shared skips applied."""

from dataclasses import replace

import pandas as pd
import pytest
import torch

from harness import Case, Input, check_gradients
from harness.autodiff import vjp
from harness.checks import CHECKS, TABLE, Check, Finding, by_name
from harness.cli import main
from harness.plan import items_for

import planted

pytest_plugins = ["pytester"]


def check_finite_gradient(ex, settings) -> Finding:
    """Every element of autograd's gradient is finite."""
    grads, _ = vjp(ex, ex.leaves())
    problems = [f"the gradient of {ex.labels[pos]} has {int((~torch.isfinite(g)).sum())} "
                "non-finite element(s)" for pos, g in zip(ex.wrt, grads)
                if not bool(torch.isfinite(g).all())]
    return Finding(problems=problems, notes=["gradients looked at: " + str(len(grads))])


TOY = Check("toy-finite", check_finite_gradient, needs_graph=True, second_order=True,
            opt_in="toy", flag="--toy-finite", flag_help="also check gradients are finite",
            doc="autograd's gradient is finite everywhere")


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setitem(CHECKS, TOY.name, TOY)
    return TOY


def test_the_toy_family_runs_through_check_gradients(toy):
    x = torch.linspace(-1, 1, 5, dtype=torch.float64).requires_grad_()
    (ok,) = check_gradients(torch.sin, x, checks=(toy.name,)).records
    assert (ok.check, ok.status, ok.message) == ("toy-finite", "pass", "gradients looked at: 1")
    y = torch.arange(1.0, 9.0, dtype=torch.float64).requires_grad_()
    (bad,) = check_gradients(planted.sin_nan_at_3, y, checks=(toy.name,)).records
    assert bad.status == "fail"
    assert bad.message.startswith("SinNaNAt3 float64 cpu: toy-finite check")
    assert "  - the gradient of input 0 has 1 non-finite element(s)" in bad.message
    assert "  note: gradients looked at: 1" in bad.message
    assert "reproduce: check_gradients(..., checks=('toy-finite',), seed=0)" in bad.message


def test_the_runner_applies_the_shared_skips(toy):
    x = torch.ones(3, dtype=torch.float64, requires_grad=True)
    (graphless,) = check_gradients(lambda x: x.detach() * 2, x, checks=(toy.name,)).records
    assert (graphless.status, graphless.message) == ("skip", "fn's outputs do not require grad")
    (once,) = check_gradients(torch.sin, x, checks=(toy.name,),
                              twice_differentiable=False).records
    assert once.status == "skip" and "twice_differentiable=False" in once.message


def test_opt_in_by_name_tag_or_flag(toy, tmp_path):
    case = Case(name="t/sin", fn=torch.sin, inputs=[Input((3,))], dtypes=(torch.float64,),
                devices=("cpu",))
    assert toy.name not in {i.check for i in items_for([case])}
    tagged = Case(name="t/tagged", fn=torch.sin, inputs=[Input((3,))], tags=("toy",),
                  dtypes=(torch.float64,), devices=("cpu",))
    assert toy.name in {i.check for i in items_for([tagged])}
    assert [i.check for i in items_for([case], [toy.name])] == [toy.name]
    code = main(["check", "--cases", "tutorial/poly", "--toy-finite", "--dtype", "float64",
                 "--device", "cpu", "--no-isolate", "--report-dir", str(tmp_path)])
    assert code == 0
    frame = pd.read_csv(tmp_path / "correctness.csv")
    assert {"toy-finite", "fd", "accumulation"} <= set(frame["check"])


def test_the_toy_family_runs_through_the_cli(toy, tmp_path):
    cases = tmp_path / "mycases.py"
    cases.write_text("import torch\nfrom harness import Case, Input\n"
                     "good = Case(name='mine/sin', fn=torch.sin, inputs=[Input((4,))])\n"
                     "frozen = Case(name='mine/frozen', fn=lambda x: x.detach(), "
                     "inputs=[Input((4,))])\n")
    code = main(["check", "--load", str(cases), "--cases", "mine/*", "--check", toy.name,
                 "--device", "cpu", "--no-isolate", "--report-dir", str(tmp_path)])
    assert code == 0
    frame = pd.read_csv(tmp_path / "correctness.csv").set_index(["case", "dtype"])
    assert set(frame["check"]) == {"toy-finite"}
    assert frame.loc[("mine/sin", "float32"), "status"] == "pass"
    assert frame.loc[("mine/frozen", "float64"), "status"] == "skip"


def test_the_toy_family_runs_under_pytest(toy, pytester):
    pytester.makepyfile(mycases="import torch\nfrom harness import Case, Input\n"
                        "good = Case(name='mine/sin', fn=torch.sin, inputs=[Input((4,))])\n")
    pytester.makeini("[pytest]\nharness_cases = true\nharness_select = mine/*\n")
    result = pytester.runpytest("--harness-load", "mycases.py", "--harness-check", toy.name,
                                "-k", "cpu", "-v")
    result.stdout.fnmatch_lines(["*mine/sin-toy-finite-float64-cpu PASSED*",
                                 "*mine/sin-toy-finite-float32-cpu PASSED*"])
    assert result.parseoutcomes()["passed"] == 2


def test_every_family_in_the_table_is_declared_once():
    assert len(CHECKS) == len(TABLE) and list(CHECKS.values()) == list(TABLE)
    assert all(callable(s.run) and s.doc for s in TABLE)
    flags = [s.flag for s in TABLE if s.flag]
    assert len(set(flags)) == len(flags)
    twice = (TABLE[0], *TABLE[1:4], replace(TABLE[2], doc="another family, the same name"))
    with pytest.raises(ValueError, match=f"{TABLE[2].name!r} is declared twice in TABLE"):
        by_name(twice)


def test_a_spec_with_a_bad_field_is_refused():
    with pytest.raises(ValueError, match="dtypes must be one of"):
        Check("x", check_finite_gradient, doc="x", dtypes="half")
    with pytest.raises(ValueError, match="applies_to"):
        Check("x", check_finite_gradient, doc="x", applies_to="module")
