"""The pytest plugin end to end, with pytester: items, ids, selection, failures, load errors."""

import pytest

pytest_plugins = ["pytester"]

CASES_FILE = '''
import torch
from harness import Case, Input

class Flip(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x ** 2

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return -2 * x * g

good = Case(name="mine/good", fn=torch.sin, inputs=[Input((3,))],
            grad=lambda x, v: torch.cos(x) * v, tags=("mine",))
flip = Case(name="mine/flip", fn=Flip.apply, inputs=[Input((3,))],
            dtypes=(torch.float64,), devices=("cpu",), twice_differentiable=False)
'''


@pytest.fixture
def project(pytester):
    pytester.makepyfile(mycases=CASES_FILE)
    pytester.makeini("[pytest]\nharness_cases = true\nharness_select = mine/*\n"
                     "harness_checks = analytic fd second-order\n")
    return pytester


def test_one_item_per_case_check_dtype_device(project):
    result = project.runpytest("--harness-load", "mycases.py", "--collect-only", "-q")
    lines = [line for line in result.outlines if "mine/" in line]
    # good: 3 checks x 2 dtypes x 2 devices; flip: 3 checks x 1 dtype x 1 device
    assert len(lines) == 15
    assert "harness::mine/good-fd-float32-cpu" in lines
    assert "15 tests collected" in result.stdout.str()


def test_failures_carry_the_diagnosis_and_cuda_skips(project):
    result = project.runpytest("--harness-load", "mycases.py", "-rs")
    outcomes = result.parseoutcomes()
    assert outcomes["failed"] == 1  # mine/flip fd
    assert outcomes["passed"] == 6  # mine/good: 3 checks x float64, float32
    result.stdout.fnmatch_lines(["*mine/flip float64 cpu: autograd vs finite differences*",
                                 "*pattern: sign flipped*"])
    result.stdout.fnmatch_lines(["*reproduce: harness check --cases 'mine/flip'*--load *mycases.py"
                                 ])
    assert "device cuda unavailable" in result.stdout.str() or outcomes["skipped"] >= 6


def test_semantic_checks_are_items_too(project):
    result = project.runpytest("--harness-load", "mycases.py", "--harness-check", "zeroing",
                               "--harness-check", "accumulation", "-k", "cpu")
    result.assert_outcomes(passed=6)  # good: 2 dtypes x 2 checks, flip: 1 dtype x 2 checks


def test_keyword_and_marker_selection(project):
    result = project.runpytest("--harness-load", "mycases.py", "-k", "good and fd", "-m", "mine")
    assert result.parseoutcomes()["passed"] == 2


def test_off_unless_enabled(pytester):
    pytester.makepyfile(test_x="def test_x():\n    pass\n")
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)


def test_not_added_when_pointing_at_files(project):
    project.makepyfile(test_x="def test_x():\n    pass\n")
    result = project.runpytest("test_x.py", "--harness-load", "mycases.py")
    result.assert_outcomes(passed=1)


def test_broken_load_is_a_failing_item(project):
    project.makepyfile(broken="raise ImportError('no such kernel')\n")
    result = project.runpytest("--harness-load", "broken.py", "--harness-select", "none/*")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*broken.py failed to import: ImportError: no such kernel*"])


def test_xdist_spreads_the_items(project):
    pytest.importorskip("xdist")
    result = project.runpytest("--harness-load", "mycases.py", "-n", "2")
    outcomes = result.parseoutcomes()
    assert outcomes["failed"] == 1 and outcomes["passed"] == 6


def test_the_suites_sample_of_harness_items_runs_every_family_the_main_job_runs(pytestconfig):
    """pyproject's harness_select keeps the suite from repeating the main job; it must still
    put every family that the main job runs through the plugin."""
    from harness import registry
    from harness.plan import items_for

    sample = pytestconfig.getini("harness_select")
    assert sample, "pyproject.toml sets no harness_select: the suite repeats the main job"
    everything = registry.load([]).cases
    main_job = {item.check for item in items_for(everything)}
    sampled = {item.check for item in items_for(registry.select(everything, sample))}
    assert sampled == main_job, f"families the sample misses: {sorted(main_job - sampled)}"


def test_a_requested_missing_device_or_unknown_name_is_a_usage_error(project):
    import torch

    if torch.cuda.is_available():
        pytest.skip("needs a machine without CUDA: here --harness-device cuda is satisfied")
    result = project.runpytest("--harness-load", "mycases.py", "--harness-device", "cuda",
                               "--collect-only")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "drop --harness-device cuda to run what is here" in result.stderr.str()
    result = project.runpytest("--harness-load", "mycases.py", "--harness-dtype", "float46",
                               "--collect-only")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "unknown dtype 'float46'" in result.stderr.str()
