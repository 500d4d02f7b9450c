"""Input search: bugs a single draw misses are found, and shrunk to a minimal input."""

import importlib

import pytest
import torch
from checking import on_example, searched

from harness import Case, Input
from harness.checks import Settings
from harness.inputs import draw_example

import planted


def run_search(case, tmp_path=None, profile="quick", seed=0):
    return searched(case, tmp_path, profile, seed)


def single_draw(case, seed=0):
    return on_example("fd", draw_example(case, torch.float64, "cpu", seed))


def test_wrong_only_above_4_is_found_and_shrunk(tmp_path):
    case = Case(name="t/above4", fn=planted.square_wrong_above_4, sizes={"n": (1, 3)},
                inputs=[Input(("n",), low=-8, high=8, name="x")])
    record = run_search(case, tmp_path)
    assert record.status == "fail"
    assert "smallest failing input: sizes {'n': 1}; x: shape (1,) = [" in record.message
    value = float(record.message.split("= [")[1].split("]")[0])
    assert 4 < value <= 8
    saved = torch.load(next((tmp_path / "failing").iterdir()))
    assert saved["case"] == "t/above4" and float(saved["inputs"][0]) == value
    assert "reproduce: harness search --cases 't/above4'" in record.message


def test_a_failure_at_every_size_shrinks_to_the_smallest_size():
    case = Case(name="t/negative", fn=planted.square_wrong_negative, sizes={"n": (4, 200)},
                inputs=[Input(("n",), name="x")])
    record = run_search(case)
    assert record.status == "fail"
    assert "sizes {'n': 4}; x: shape (4,)" in record.message, record.message
    assert "wrong everywhere" not in record.message


def test_wrong_dimension_is_found_on_non_square_shapes():
    case = Case(name="t/mean-rows", fn=planted.MeanRowsWrongDim.apply,
                sizes={"n": (1, 6), "m": (1, 6)}, inputs=[Input(("n", "m"), name="x")])
    square = draw_example(case, torch.float64, "cpu", 0).inputs[0].shape
    record = run_search(case)
    assert record.status == "fail"
    n, m = (int(v) for v in record.message.split("shape (")[1].split(")")[0].split(", "))
    assert n != m and max(n, m) <= 2, record.message  # shrunk to the smallest non-square
    assert square is not None


def test_size_one_dimension_bug_is_found():
    case = Case(name="t/mean-last", fn=planted.MeanLastSqueezed.apply,
                sizes={"n": (2, 6), "m": (1, 6)}, inputs=[Input(("n", "m"), name="x")])
    record = run_search(case)
    assert record.status == "fail"
    assert "sizes {'m': 1, 'n': 2}" in record.message, record.message


def test_a_single_draw_misses_what_the_search_finds():
    """The point of searching: these default draws pass."""
    above4 = Case(name="t/above4", fn=planted.square_wrong_above_4, sizes={"n": (1, 3)},
                  inputs=[Input(("n",), low=-8, high=8, name="x")])
    misses = [seed for seed in range(20) if single_draw(above4, seed).status == "pass"]
    assert misses  # some seeds draw no x > 4
    assert run_search(above4, seed=misses[0]).status == "fail"


@pytest.mark.parametrize("fn", [torch.tanh, torch.relu, torch.abs, lambda x: x.mean(0)],
                         ids=["tanh", "relu", "abs", "mean"])
def test_correct_functions_pass_the_thorough_search(fn):
    case = Case(name="t/ok", fn=fn, sizes={"n": (1, 5), "m": (1, 5)},
                inputs=[Input(("n", "m"), low=-3, high=3, name="x")])
    record = run_search(case, profile="thorough")
    assert record.status == "pass", record.message
    assert "150 searched inputs" in record.message


def test_search_is_reproducible():
    case = Case(name="t/above4", fn=planted.square_wrong_above_4, sizes={"n": (1, 3)},
                inputs=[Input(("n",), low=-8, high=8, name="x")])
    assert run_search(case).message == run_search(case).message


def test_unknown_profile_is_named():
    with pytest.raises(ValueError, match="profile"):
        Settings(profile="forever")


def test_a_search_that_cannot_run_is_an_error_not_a_pass():
    def broken_inputs(gen):
        raise RuntimeError("no data")

    case = Case(name="t/broken", fn=torch.sin, inputs=broken_inputs)
    record = run_search(case)
    assert record.status == "error"
    assert "input search could not run: RuntimeError: no data" in record.message


@pytest.mark.parametrize("fn", [planted.sin_missing_half, planted.square_sign_flip,
                                planted.square_tiny_error, planted.square, torch.sin])
def test_verdict_only_gives_the_full_verdict(fn):
    """The search's probes ask for a verdict only; it must be the whole check's."""
    x = torch.randn(6, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    ex = draw_example(Case(name="t/v", fn=fn, inputs=lambda gen: (x,)), torch.float64, "cpu",
                      0)
    full, quick = (on_example("fd", ex, settings)
                   for settings in (Settings(), Settings(verdict_only=True)))
    assert quick.status == full.status


def test_the_smallest_failure_gets_the_whole_diagnosis_and_a_cut_shrink_says_so(monkeypatch):
    one_wrong = Case(name="t/one-wrong", fn=planted.sin_one_wrong,
                     inputs=[Input((40, 40), name="x")])
    record = run_search(one_wrong)  # the probes do not localize; the last run does
    assert record.status == "fail" and record.index == "12,34", record.message
    assert "budget" not in record.message
    case = Case(name="t/above4", fn=planted.square_wrong_above_4, sizes={"n": (1, 3)},
                inputs=[Input(("n",), low=-8, high=8, name="x")])
    import harness.checks.search as search

    monkeypatch.setattr(search, "SHRINK_CALLS", 1)
    cut = run_search(case)
    assert cut.status == "fail"
    assert "smallest failing input found: " in cut.message
    assert "(the shrink stopped at its budget of 1 inputs)" in cut.message


def test_quick_failures_that_the_whole_check_rescues_are_not_reported():
    from harness.checks.search import searched as search_with
    from harness.checks.spec import Check, Finding

    doubts_only = Check("doubts", lambda ex, settings: Finding(
        problems=["quick doubt"] if settings.verdict_only else []), doc="test double")
    case = Case(name="t/sin", fn=torch.sin, inputs=[Input((3,), name="x")])
    finding = search_with(doubts_only, draw_example(case, torch.float64, "cpu", 0), Settings())
    assert not finding.failed and finding.searched is None
    assert "did not stand the whole check" in finding.notes[0]


def test_describing_a_searched_input_that_requires_grad_does_not_warn():
    import warnings

    from harness.inputs import Drawn

    drawn = Drawn({}, (torch.randn(20, dtype=torch.float64, requires_grad=True),), (False,), 0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert "20 values in [" in drawn.describe(["x"])


def test_fixed_inputs_have_nothing_to_search_and_say_so():
    x = torch.randn(4, 3, dtype=torch.float64)
    case = Case(name="t/fixed", fn=planted.square_sign_flip, inputs=lambda gen: (x,))
    record = on_example("search", draw_example(case, torch.float64, "cpu", 0))
    assert record.status == "skip"
    assert "the inputs are fixed" in record.message and "no other input to search" \
        in record.message


def test_big_inputs_get_fewer_searched_inputs_and_the_row_says_how_many_and_how_big():
    case = Case(name="t/big", fn=torch.sin,
                inputs=lambda gen: (torch.randn(150, 400, generator=gen, dtype=torch.float64),))
    record = on_example("search", draw_example(case, torch.float64, "cpu", 0))
    assert record.status == "pass"
    assert record.message.startswith("3 searched inputs (quick profile: 12, cut to 3 at "
                                     "60,000 checked elements an input"), record.message
    assert "60,000 elements each" in record.message


def test_a_wrong_gradient_on_big_inputs_is_still_found_within_the_cut():
    case = Case(name="t/big-wrong", fn=planted.sin_missing_half,
                inputs=lambda gen: (torch.randn(150, 400, generator=gen, dtype=torch.float64),))
    record = on_example("search", draw_example(case, torch.float64, "cpu", 0))
    assert record.status == "fail", record.message


def test_a_time_budget_stops_the_search_after_its_first_input():
    case = Case(name="t/budget", fn=torch.tanh, sizes={"n": (1, 50)},
                inputs=[Input(("n",), low=-3, high=3, name="x")])
    ex = draw_example(case, torch.float64, "cpu", 0)
    record = on_example("search", ex, Settings(search_seconds=1e-9))
    assert record.status == "pass"
    assert record.message.startswith("1 searched inputs (quick profile; stopped at its "
                                     "budget of 1e-09 s)"), record.message
    with pytest.raises(ValueError, match="search_seconds"):
        Settings(search_seconds=0)


def _seen(record) -> list:
    return [([t.tolist() for t in tensors], failed)
            for tensors, failed in record.evidence.searched.seen]


def test_the_searched_inputs_do_not_depend_on_which_local_modules_are_loaded(
        tmp_path, monkeypatch):
    """Hypothesis mixes constants read from the source of loaded local modules into its
    draws; the search turns that off, so a `reproduce:` line draws what the run drew,
    whatever else that run had loaded."""
    case = Case(name="t/above4-sized", fn=planted.square_wrong_above_4, sizes={"n": (1, 40)},
                inputs=[Input(("n",), low=-8, high=8, name="x")])
    before = run_search(case)
    module = tmp_path / "many_constants.py"
    module.write_text("VALUES = [" + ", ".join(
        [str(i) for i in range(1, 41)] + [f"{4 + i / 97:.6f}" for i in range(1, 300)]) + "]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.import_module("many_constants")
    after = run_search(case)
    assert before.status == after.status == "fail"
    assert _seen(after) == _seen(before)
    assert after.message == before.message


def test_the_search_reads_no_module_source(tmp_path, monkeypatch):
    """Hypothesis parses every new local module for constants (and caches them under
    ./.hypothesis): never inside the search."""
    from hypothesis.internal.conjecture import providers

    read = []
    monkeypatch.setattr(providers, "constants_from_module",
                        lambda module, **kw: read.append(module.__name__) or providers.Constants())
    module = tmp_path / "other_constants.py"
    module.write_text("LIMITS = [0.25, 3.5, 17, 23]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.import_module("other_constants")
    case = Case(name="t/above4-again", fn=planted.square_wrong_above_4, sizes={"n": (1, 40)},
                inputs=[Input(("n",), low=-8, high=8, name="x")])
    assert run_search(case).status == "fail"
    assert read == []
