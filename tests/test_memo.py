"""What the families of one example share (harness.memo): measured once, re-measured when
the example's tensors change."""

import collections
from types import SimpleNamespace

import torch

from harness import check_gradients, memo


def _counting_square():
    calls = collections.Counter()

    def fn(x):
        calls["with graph" if x.requires_grad else "without"] += 1
        return x * x

    return fn, calls


def test_families_on_one_example_take_its_backward_once():
    x = torch.randn(5, dtype=torch.float64, requires_grad=True)
    alone = 0
    for check in ("accumulation", "zeroing", "non-scalar"):
        fn, calls = _counting_square()
        assert check_gradients(fn, x, checks=(check,)).ok
        alone += calls["with graph"]
    fn, calls = _counting_square()
    assert check_gradients(fn, x, checks=("accumulation", "zeroing", "non-scalar")).ok
    # the single backward and its spread (2 runs) taken once for three families
    assert calls["with graph"] <= alone - 2 * 2, (calls, alone)


def test_a_kept_result_is_forgotten_when_the_example_changes_in_place():
    ex = SimpleNamespace(inputs=(torch.zeros(3),), cotangents=(torch.ones(()),))
    other = SimpleNamespace(inputs=(torch.zeros(3),), cotangents=(torch.ones(()),))
    computed = []
    value = memo.once_per_example(ex, "what", lambda: computed.append(1) or "measured")
    assert value == "measured" and memo.recall(ex, "what") == "measured"
    assert memo.once_per_example(ex, "what", lambda: computed.append(1) or "again") == \
        "measured" and len(computed) == 1
    assert memo.recall(other, "what") is None  # another example, however alike
    ex.inputs[0].add_(1.0)
    assert memo.recall(ex, "what") is None
    assert memo.once_per_example(ex, "what", lambda: "again") == "again"


def test_a_float64_example_is_differentiated_through_the_forward_that_built_it():
    x = torch.randn(12, dtype=torch.float64, requires_grad=True)
    fn, calls = _counting_square()
    assert check_gradients(fn, x, checks=("fd",)).ok
    # one forward with autograd on, for the example and its vjp; the finite differences
    # read the screen's one direction at +-h and take their centre from that forward: the
    # forward calls of gradcheck's fast mode
    assert calls == {"with graph": 1, "without": 2}, calls
    fn, calls = _counting_square()
    assert check_gradients(fn, x.float().detach().requires_grad_(), checks=("fd",)).ok
    # float32: the example's forward runs in float64 (the reference), the vjp in float32;
    # the pass's `detects` allows the rounding noise a doubt would measure: 7 more forwards
    # with a graph (the float64 base; 2 jitters in float32 and in float64; the saved-tensor
    # model's 2) and 3 more readings
    assert calls["with graph"] == 8 and calls["without"] == 5, calls


def test_a_kept_graph_is_taken_once():
    ex = SimpleNamespace(inputs=(torch.zeros(3),), cotangents=(torch.ones(()),))
    memo.keep(ex, "graph", "leaves and outputs")
    assert memo.take(ex, "graph") == "leaves and outputs"
    assert memo.take(ex, "graph") is None and memo.recall(ex, "graph") is None
