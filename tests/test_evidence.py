"""A failure's evidence: the runner keeps the tensors it was judged on, and only the report
layer draws them and saves searched inputs (the runner writes no file, draws nothing)."""

import ast
import base64
from pathlib import Path

import pandas as pd
import torch
from checking import on_case, on_example, searched

from harness import Case, Input, report
from harness.cli import main
from harness.inputs import draw_example

import planted

PNG = base64.b64encode(b"\x89PNG").decode()[:4]
RUNNER = Path(__file__).resolve().parents[1] / "harness" / "runner.py"
REPORT_CASES = Path(__file__).with_name("planted_report.py")


def _square_wrong_negative():
    from planted_report import wrong

    return wrong


def test_a_failing_comparison_carries_its_tensors_and_only_the_report_draws_them(tmp_path):
    case = _square_wrong_negative()
    ex = draw_example(case, torch.float64, "cpu", 0)
    record = on_example("fd", ex)
    assert record.status == "fail" and record.figure == ""
    (compared,) = record.evidence.compared
    x = ex.inputs[0]
    g = ex.cotangents[0]
    assert compared.label == "x"
    # one side is the true 2x g, the other the planted 3x g where x < 0
    sides = {record.evidence.reference: compared.reference,
             record.evidence.checked: compared.checked}
    assert len(sides) == 2
    truth, planted_backward = 2 * x * g, torch.where(x < 0, 3 * x, 2 * x) * g
    assert any(torch.allclose(t.view_as(x), truth) for t in sides.values())
    assert any(torch.allclose(t.view_as(x), planted_backward) for t in sides.values())
    assert "evidence" not in record.as_dict()

    (shown,) = report.shown([record], tmp_path)
    assert shown.figure.startswith(PNG) and shown.message == record.message
    assert not any(tmp_path.iterdir())  # nothing searched: nothing saved


def test_a_passing_row_carries_no_evidence():
    record = on_case("fd", Case(name="t/sin", fn=torch.sin, inputs=[Input((4,))]))
    assert record.status == "pass" and record.evidence is None
    assert report.shown([record], "/nonexistent/never-written") == [record]


def test_searched_inputs_are_saved_only_where_reports_are_written(tmp_path):
    case = Case(name="t/above4", fn=planted.square_wrong_above_4, sizes={"n": (1, 3)},
                inputs=[Input(("n",), low=-8, high=8, name="x")])
    bare = searched(case)
    assert bare.status == "fail" and "inputs saved" not in bare.message
    assert bare.evidence.searched.file_stem == "t__above4-fd-float64"
    assert any(failed for _, failed in bare.evidence.searched.seen)

    (shown,) = report.shown([bare], tmp_path)
    path = tmp_path / "failing" / "t__above4-fd-float64.pt"
    assert shown.message == f"{bare.message}\n  inputs saved: {path} (torch.load(...)['inputs'])"
    assert shown.figure.startswith(PNG)
    saved = torch.load(path)
    assert saved["case"] == "t/above4"
    assert torch.equal(saved["inputs"][0], bare.evidence.searched.smallest[0])


def test_evidence_crosses_from_the_worker_to_the_reports(tmp_path):
    """Isolated run: the worker sends the evidence beside the row; the main process draws
    the picture into the HTML page and saves the searched inputs."""
    code = main(["check", "--load", str(REPORT_CASES), "--cases",
                 "planted/square-wrong-negative", "--check", "fd", "--check", "search",
                 "--report-dir", str(tmp_path / "r"), "--workers", "1"])
    assert code == 1
    rows = pd.read_csv(tmp_path / "r" / "correctness.csv").set_index("check")
    assert rows.loc["fd", "status"] == "fail"
    assert rows.loc["search", "status"] == "fail"
    saved = tmp_path / "r" / "failing" / "planted__square-wrong-negative-fd-float64.pt"
    assert f"inputs saved: {saved}" in rows.loc["search", "message"]
    assert (f"reproduce: harness search --cases 'planted/square-wrong-negative' --check fd "
            f"--dtype float64 --device cpu --seed 0 --load {REPORT_CASES}"
            in rows.loc["search", "message"])  # a --load file's case needs its --load
    assert torch.load(saved)["case"] == "planted/square-wrong-negative"
    page = (tmp_path / "r" / "correctness.html").read_text()
    assert page.count("data:image/png;base64,") == 2  # the comparison's and the search's


def test_the_runner_imports_no_drawing_and_writes_no_file():
    tree = ast.parse(RUNNER.read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                for alias in node.names} | {
        alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
        for alias in node.names}
    assert not imported & {"figures", "harness.figures", "matplotlib", "pathlib", "Path"}
    calls = {ast.unparse(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}
    assert not calls & {"torch.save", "open", "Path"}
    assert not any(c.endswith((".write_text", ".write_bytes", ".mkdir")) for c in calls)
