"""Case and Input validate on construction and name the bad field."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from harness import Case, Input, Tolerance
from harness.inputs import draw_example, draw_tensor


@pytest.mark.parametrize("kwargs, message", [
    (dict(shape=(-1,)), "negative"),
    (dict(low=1.0, high=1.0), "empty domain"),
    (dict(low=2.0, high=1.0), "must be below"),
    (dict(positive=True, low=-2.0, high=-1.0), "positive=True"),
    (dict(shape=(2.5,)), "must be an int or a size name"),
    (dict(low=float("nan")), "must be finite"),
])
def test_input_rejects(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Input(**kwargs)


@pytest.mark.parametrize("kwargs, message", [
    (dict(name=""), "non-empty"),
    (dict(fn=3), "fn must be callable"),
    (dict(inputs=[(3,)]), "expected harness.Input"),
    (dict(inputs=[Input(("n",))]), "size name 'n'"),
    (dict(sizes={"n": (5, 2)}), "0 <= low <= high"),
    (dict(dtypes=(torch.int64,)), "floating"),
    (dict(grad=5), "grad must be callable"),
    (dict(timeout=0), "timeout must be > 0"),
])
def test_case_rejects(kwargs, message):
    base = dict(name="t/x", fn=torch.sin, inputs=[Input((2,))])
    with pytest.raises(ValueError, match=message):
        Case(**{**base, **kwargs})


@given(low=st.floats(-1e6, 1e6), width=st.floats(1e-3, 1e6),
       dims=st.lists(st.integers(0, 4), max_size=3), seed=st.integers(0, 2**31))
def test_drawn_values_stay_in_the_domain(low, width, dims, seed):
    spec = Input(tuple(dims), low=low, high=low + width, avoid=(low + width / 2,))
    x = draw_tensor(spec, {}, torch.Generator().manual_seed(seed))
    assert x.shape == tuple(dims)
    assert ((x >= spec.low) & (x <= spec.high)).all()


def test_avoid_keeps_values_off_kinks():
    spec = Input((10000,), low=-1, high=1, avoid=(0.0,), margin=0.05)
    x = draw_tensor(spec, {}, torch.Generator().manual_seed(0))
    assert x.abs().min() >= 0.05


def test_named_sizes_are_drawn_within_range():
    case = Case(name="t/mm", fn=torch.matmul, sizes={"n": (1, 3), "k": (4, 6)},
                inputs=[Input(("n", "k")), Input(("k", "n"))])
    for seed in range(10):
        a, b = draw_example(case, torch.float64, "cpu", seed).inputs
        assert 1 <= a.shape[0] <= 3 and 4 <= a.shape[1] <= 6 and b.shape == a.shape[::-1]


def test_float32_example_is_float32_and_reproducible():
    case = Case(name="t/s", fn=torch.sin, inputs=[Input((4,))])
    one = draw_example(case, torch.float32, "cpu", 5)
    two = draw_example(case, torch.float32, "cpu", 5)
    assert one.inputs[0].dtype == torch.float32
    assert torch.equal(one.inputs[0], two.inputs[0])
    assert torch.equal(one.cotangents[0], two.cotangents[0])


def test_tolerance_override_is_used():
    strict = Tolerance(rtol=0.0, atol=0.0, floor=0.0)
    case = Case(name="t/s", fn=torch.sin, inputs=[Input((4,))], tolerances={torch.float32: strict})
    from harness.tolerances import tolerance_for

    assert tolerance_for(torch.float32, case.tolerances) is strict
    assert tolerance_for(torch.float64, case.tolerances).rtol == 1e-6
