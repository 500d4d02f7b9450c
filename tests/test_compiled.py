"""Compiled vs eager: torch.compile(fn)'s gradients, first and second order, against eager.

Most tests compile with the aot_eager backend (dynamo and AOTAutograd, where gradients are
built, without inductor's code generation); one compiles with inductor, the default.
"""

import pytest
import torch

from harness import check_gradients
from harness.case import Case, Input
from harness.checks import Settings
from harness.plan import items_for

import planted

X = torch.linspace(-1.5, 2.0, 12, dtype=torch.float64).reshape(3, 4)


def run(fn, *inputs, dtype=torch.float64, backend="aot_eager"):
    inputs = [x.to(dtype).requires_grad_() for x in inputs]
    (record,) = check_gradients(fn, *inputs, checks=("compiled",),
                                settings=Settings(compile_backend=backend)).records
    return record


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("fn, inputs", [
    (torch.tanh, (X,)), (torch.matmul, (X, X.T)), (lambda x: torch.softmax(x, -1), (X,)),
    (lambda x: (torch.sin(x), x.sum()), (X,)), (planted.square, (X,)),
], ids=["tanh", "matmul", "softmax", "two-outputs", "custom-function"])
def test_correct_code_passes_compiled(fn, inputs, dtype):
    record = run(fn, *inputs, dtype=dtype)
    assert record.status == "pass", record.message


def test_inductor_compiled_gradients_pass():
    record = run(lambda x: torch.tanh(x) * x, X, dtype=torch.float32, backend="inductor")
    assert record.status == "pass", record.message


def test_a_wrong_compiled_backward_fails():
    record = run(planted.square_wrong_when_compiled, X)
    assert record.status == "fail"
    assert "the first-order gradient of torch.compile(fn) differs from eager for x" \
        in record.message
    assert "sign flipped" in record.message


def test_a_wrong_compiled_second_derivative_fails_while_first_order_passes():
    record = run(planted.cube_wrong_second_when_compiled, X)
    assert record.status == "fail"
    assert "first-order" not in record.message
    assert "the second-order gradient of torch.compile(fn) differs from eager for x" \
        in record.message


def test_a_compile_error_is_a_skip_with_the_compilers_first_line():
    def failing_backend(graph, example_inputs):
        raise RuntimeError("planted backend failure\nmore detail")

    record = run(torch.tanh, X, backend=failing_backend)
    assert record.status == "skip"
    assert record.message.startswith("torch.compile could not compile fn (BackendCompilerFailed")


def test_the_compiled_check_is_opt_in():
    case = Case(name="c", fn=torch.tanh, inputs=[Input((3,))])
    assert "compiled" not in {item.check for item in items_for([case])}
    assert {item.check for item in items_for([case], ["compiled"])} == {"compiled"}
    tagged = Case(name="t", fn=torch.tanh, inputs=[Input((3,))], tags=("compile",))
    assert "compiled" in {item.check for item in items_for([tagged])}


def prints_between(x):
    y = torch.sin(x)
    print("a side effect dynamo cannot trace")
    return y * 2


def test_under_fullgraph_a_graph_break_fails_naming_the_op_and_the_line(capsys):
    x = X.clone().requires_grad_()
    (record,) = check_gradients(prints_between, x, checks=("compiled",), fullgraph=True,
                                settings=Settings(compile_backend="aot_eager")).records
    assert record.status == "fail"
    assert "graph break under fullgraph=True at " in record.message
    assert f"{__file__}:" in record.message and "print(" in record.message
    assert "builtin operator `print`" in record.message
    (relaxed,) = check_gradients(prints_between, x, checks=("compiled",),
                                 settings=Settings(compile_backend="aot_eager")).records
    assert relaxed.status == "pass" and "1 graph break(s), those parts ran eagerly" in \
        relaxed.message


def test_the_row_counts_dynamos_frames_graphs_and_recompiles():
    record = run(torch.tanh, X)
    assert record.status == "pass"
    assert "torch.compile: 1 frame(s) traced, 1 graph(s) compiled, 0 recompile(s)" in \
        record.message


def test_the_command_lines_fullgraph_runs_the_compiled_check_in_that_mode(tmp_path):
    import pandas as pd

    from harness.cli import main

    cases = tmp_path / "breaking.py"
    cases.write_text("import torch\nfrom harness import Case, Input\n\n\ndef fn(x):\n"
                     "    print('untraceable')\n    return torch.sin(x)\n\n\n"
                     "case = Case(name='mine/breaks', fn=fn, inputs=[Input((3,))],\n"
                     "            dtypes=(torch.float64,), devices=('cpu',))\n")
    assert main(["check", "--load", str(cases), "--cases", "mine/*", "--check", "fd",
                 "--fullgraph", "--compile-backend", "aot_eager", "--no-isolate",
                 "--report-dir", str(tmp_path / "r")]) == 1
    rows = pd.read_csv(tmp_path / "r" / "correctness.csv").set_index("check")
    assert rows.loc["fd", "status"] == "pass"
    assert rows.loc["compiled", "status"] == "fail"
    assert f"graph break under fullgraph=True at {cases}:6" in rows.loc["compiled", "message"]
