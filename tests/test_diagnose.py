"""The diagnosis module: patterns, comparison, triangulation, in isolation."""

import torch

from harness import diagnose
from harness.numerics.allowance import allowance
from harness.tolerances import TOLERANCES

TOL = TOLERANCES[torch.float64]


def story(expected, actual, values=None):
    allowed = allowance(expected, TOL)
    mismatch, _, _ = diagnose.compare("x", expected, actual, allowed, values)
    return mismatch


def test_no_mismatch_returns_none_and_errors():
    e = torch.arange(1.0, 5.0, dtype=torch.float64)
    mismatch, max_abs, max_rel = diagnose.compare("x", e, e + 1e-12, allowance(e, TOL))
    assert mismatch is None and 0 < max_abs < 2e-12


def test_patterns():
    e = torch.linspace(1, 2, 9, dtype=torch.float64).reshape(3, 3)
    assert story(e, -e).pattern.startswith("sign flipped")
    assert "constant factor 0.5" in story(e, 0.5 * e).pattern
    assert "exactly 4 times" in story(e, 4 * e).pattern
    assert story(e, e.T).pattern.startswith("transposed")
    assert "zero where the reference is not" in story(e, 0 * e).pattern
    one = e.clone()
    one[1, 2] += 1
    m = story(e, one)
    assert m.pattern.startswith("one element wrong") and m.index == (1, 2) and m.count == 1


def test_part_of_the_domain():
    x = torch.linspace(-1, 1, 10, dtype=torch.float64)
    e = 2 * x
    a = torch.where(x < 0, 3 * x, 2 * x)
    m = story(e, a, values=x)
    assert "wrong exactly where the input is negative (5 of 10 elements)" in m.pattern
    assert "constant factor 1.5" in m.pattern


def test_one_reading_names_no_factor_but_an_exact_ratio():
    e, bad, tol = torch.tensor([2.0], dtype=torch.float64), torch.ones(1, dtype=torch.bool), \
        torch.zeros(1, dtype=torch.float64)
    assert "one reading only (actual = 1.33 x expected)" in diagnose.pattern(e, 1.33 * e, bad, tol)
    assert "factor" not in diagnose.pattern(e, 1.33 * e, bad, tol)
    assert diagnose.pattern(e, -e, bad, tol).startswith("sign flipped")


def test_a_sign_split_is_named_only_when_it_separates_wrong_from_right():
    x = torch.linspace(-1, 1, 10, dtype=torch.float64)
    e = 2 * x
    a = torch.where(x > 0.5, 3 * x, 2 * x)  # wrong on 3 of the 5 positive elements
    m = story(e, a, values=x)
    assert "where the input is" not in m.pattern
    assert m.pattern == "wrong on part of the elements (3 of 10)"


def test_a_sign_split_ignores_elements_too_small_to_show_the_error():
    x = torch.tensor([-1.0, -2.0, -1e-300, 0.0, 1.0, 2.0], dtype=torch.float64)
    e = 2 * x
    a = torch.where(x < 0, 3 * x, 2 * x)  # -1e-300 is wrong too, but far below any allowance
    assert ("wrong where the input is negative (2 of 6 elements; the 1 other negative ones "
            "have a gradient within its allowance of 0)") in story(e, a, values=x).pattern


def test_no_sign_split_without_right_elements_to_contrast():
    x = torch.tensor([-1.0, -2.0, 1.0, 2.0], dtype=torch.float64)
    e = torch.tensor([0.0, 0.0, 1.0, 2.0], dtype=torch.float64)  # only positives carry signal
    a = torch.tensor([0.0, 0.0, 2.0, 3.0], dtype=torch.float64)
    assert story(e, a, values=x).pattern == "wrong on part of the elements (2 of 4)"


def test_nan_is_a_mismatch():
    e = torch.ones(3, dtype=torch.float64)
    a = e.clone()
    a[1] = float("nan")
    assert story(e, a).index == (1,)


def test_triangulate_names_the_odd_one_out():
    assert "check the case's grad" in diagnose.triangulate(False, True, False)
    assert "the backward" in diagnose.triangulate(False, False, True)
    assert "not be smooth" in diagnose.triangulate(True, False, False)
    assert "all three" in diagnose.triangulate(False, False, False)


def test_message_shape():
    e = torch.ones(1000, dtype=torch.float64)
    a = e.clone()
    a[123] = 4.5
    lines = diagnose.describe(story(e, a), "finite differences", "autograd")
    assert lines[0] == "  mismatched elements: 1 / 1000 (0.1%)"
    big = torch.ones(10000, dtype=torch.float64)
    one_off = big.index_fill(0, torch.tensor([5]), 2.0)
    assert "(0.01%)" in diagnose.describe(story(big, one_off), "fd", "autograd")[0]
    assert lines[1].startswith("  worst at x[123]: autograd 4.5, finite differences 1")
    assert "allowed" in lines[1]


def test_worst_line_says_reference_is_0_and_not_finite_instead_of_numbers():
    from harness.diagnose.mismatch import Mismatch, describe

    def worst_line(expected, actual):
        m = Mismatch(label="x", count=1, total=4, index=(2,), expected=expected, actual=actual,
                     abs_err=abs(actual - expected),
                     rel_err=abs(actual - expected) / max(abs(expected), 1e-300),
                     allowed=float("nan") if actual != actual else 1e-6, rest_err=0.0,
                     pattern="one element wrong")
        return describe(m, "finite differences", "autograd")[1]

    zero = worst_line(0.0, 0.5)
    assert "reference is 0" in zero and "rel " not in zero and "allowed 1e-06" in zero
    nan = worst_line(1.0, float("nan"))
    assert "autograd is not finite" in nan and "allowed nan" not in nan
    assert "rel 0.5" in worst_line(1.0, 1.5)
