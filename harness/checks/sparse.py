"""Sparse inputs (gradcheck's `masked`): gradients checked on the specified elements.

A sparse COO input's gradient is, by torch's convention for most sparse ops (torch.sparse.mm,
sparse.sum), itself sparse with the input's pattern: unspecified elements get none. That is
gradcheck's masked=True, and it is what this check holds code to: every sparse input is
replaced by its specified values (a dense vector the fd and second-order checks perturb), and
fn sees a sparse tensor with the same pattern built from them. A failure names the value,
`S.values[k]` at `S[i, j]`.

Whether the gradient also holds at the unspecified elements (masked=False: the function of
the dense tensor) is measured too, through the dense view `fn(d.to_sparse())`, and reported
in a note either way, since both conventions exist.

First order only: double backward through the view reads zero even for `s.to_dense() @ d`
(torch's sparse constructor is not twice differentiable in its values), so a second-order
check here would only accuse torch.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from harness.checks.finite_diff import check_finite_diff
from harness.checks.spec import Check, Finding
from harness.diagnose import transforms
from harness.inputs import Example, as_outputs, reparametrized


def _dense_outputs(outs) -> tuple[torch.Tensor, ...]:
    return tuple(o.to_dense() if o.is_sparse else o for o in outs)


def values_view(ex: Example) -> Example:
    """The example with each sparse input replaced by its specified values."""
    patterns = {i: x.coalesce() for i, x in enumerate(ex.inputs) if x.is_sparse}

    def fn(*xs):
        args = [torch.sparse_coo_tensor(patterns[i].indices(), x, patterns[i].shape,
                                        check_invariants=True)
                if i in patterns else x for i, x in enumerate(xs)]
        return _dense_outputs(as_outputs(ex.fn(*args)))

    labels = tuple(f"{label}.values" if i in patterns else label
                   for i, label in enumerate(ex.labels))
    inputs = tuple(patterns[i].values() if i in patterns else x
                   for i, x in enumerate(ex.inputs))
    return reparametrized(ex, fn, inputs, set(patterns), labels=labels)


def dense_view(ex: Example) -> Example:
    """The example as a function of the dense tensors: fn(d.to_sparse())."""
    sparse_at = {i for i, x in enumerate(ex.inputs) if x.is_sparse}

    def fn(*xs):
        args = [x.to_sparse() if i in sparse_at else x for i, x in enumerate(xs)]
        return _dense_outputs(as_outputs(ex.fn(*args)))

    inputs = tuple(x.to_dense() if i in sparse_at else x for i, x in enumerate(ex.inputs))
    return reparametrized(ex, fn, inputs, sparse_at)


def check_sparse(ex: Example, settings) -> Finding:
    """fd on the specified values; the dense convention noted."""
    sparse = [ex.labels[i] for i, x in enumerate(ex.inputs) if x.is_sparse]
    if not sparse:
        return Finding(skip=transforms.NO_SPARSE_INPUT)
    found = check_finite_diff(values_view(ex), settings)
    if found.failed:
        return replace(found, preface=(transforms.SPARSE_VIEW,))
    dense_holds = not check_finite_diff(dense_view(ex), settings).failed
    return replace(found, notes=(*found.notes,
                                 transforms.sparse_convention_note(sparse, dense_holds)))


SPARSE = Check("sparse", check_sparse, sparse=True, opt_in="sparse", cost=0.1,
               doc="fd on the specified values of sparse COO inputs (gradcheck's masked)")
