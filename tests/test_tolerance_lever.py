"""A case's own rtol/atol: merged over the tolerance table for every dtype, named in every
row it decided and in the CSV's `tolerance` column."""

import pytest
import torch

from harness import Case, check_gradients
from harness.report import to_frame
from harness.tolerances import TOLERANCES, Tolerance, tolerance_for

import planted


def _approximate(relative_error: float):
    """sin whose backward is off by up to `relative_error` of each element, varying (an
    iterative solver's tolerance)."""
    return planted._function(
        torch.sin, lambda x, g: g * torch.cos(x) * (1 + relative_error * torch.sin(7 * x)),
        "Approx")


@pytest.mark.parametrize("seed", range(5))
def test_an_approximate_backward_passes_at_its_own_tolerance_and_a_wrong_one_still_fails(seed):
    x = torch.randn(6, dtype=torch.float64, generator=torch.Generator().manual_seed(seed),
                    requires_grad=True)
    (strict,) = check_gradients(_approximate(3e-5), x, checks=("fd",), seed=seed).records
    assert strict.status == "fail" and strict.tolerance == ""
    (loose,) = check_gradients(_approximate(3e-5), x, checks=("fd",), seed=seed,
                               rtol=1e-4).records
    assert loose.status == "pass", loose.message
    assert "tolerance set by the case: rtol=0.0001 (the table's for float64: rtol=1e-06" \
        in loose.message
    assert loose.tolerance.startswith("rtol=0.0001")
    (wrong,) = check_gradients(_approximate(1e-2), x, checks=("fd",), seed=seed,
                               rtol=1e-4).records
    assert wrong.status == "fail" and "tolerance set by the case" in wrong.message
    frame = to_frame([loose, wrong])
    assert list(frame["tolerance"]) == [loose.tolerance, wrong.tolerance]


def test_a_case_merges_its_tolerance_over_every_dtype_and_scales_the_directions():
    case = Case(name="t/approx", fn=torch.sin, inputs=lambda gen: (torch.randn(3),),
                rtol=1e-4, atol=1e-6,
                tolerances={torch.float64: Tolerance(rtol=1e-7, atol=1e-9, floor=1e-13)})
    f64 = tolerance_for(torch.float64, case.tolerances)
    assert (f64.rtol, f64.atol, f64.floor) == (1e-4, 1e-6, 1e-13)  # over the case's own
    f32 = tolerance_for(torch.float32, case.tolerances)
    table = TOLERANCES[torch.float32]
    assert (f32.rtol, f32.atol, f32.floor) == (1e-4, 1e-6, table.floor)
    assert f32.directional.rtol == pytest.approx(table.along.rtol * 1e-4 / table.rtol)


@pytest.mark.parametrize("bad", [-1e-3, float("nan"), "1e-4"])
def test_a_tolerance_that_is_not_a_finite_number_is_refused(bad):
    with pytest.raises(ValueError, match="rtol must be a finite number >= 0"):
        Case(name="t/bad", fn=torch.sin, inputs=lambda gen: (torch.randn(3),), rtol=bad)
