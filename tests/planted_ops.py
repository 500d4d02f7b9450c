"""Planted torch.library custom ops whose registration is broken while their gradient values
are right (or, for off_by_one_percent, the other way round). Each computes 2 sin(x); `_op`
registers one with the fake kernel, backward and setup_context it is given."""

import torch
from torch.library import custom_op


def _save_x(ctx, inputs, output):
    ctx.save_for_backward(inputs[0])


def _backward(ctx, grad):
    (x,) = ctx.saved_tensors
    return grad * 2 * torch.cos(x)


def _two_sin(x: torch.Tensor) -> torch.Tensor:
    return 2 * torch.sin(x)


def _op(name: str, kernel=_two_sin, fake=torch.empty_like, backward=_backward,
        setup_context=_save_x):
    """harness_tests::name with `kernel`, `fake` as its fake kernel and, unless backward is
    None, `backward` registered with `setup_context`."""
    op = custom_op(f"harness_tests::{name}", kernel, mutates_args=())
    op.register_fake(fake)
    if backward is not None:
        op.register_autograd(backward, setup_context=setup_context)
    return op


right_sin = _op("right_sin")
"""Registered right: fake kernel, backward, vmap rule."""


@right_sin.register_vmap
def _(info, in_dims, x):
    return right_sin(x), in_dims[0]


wrong_fake_shape = _op("wrong_fake_shape",
                       fake=lambda x: x.new_empty(x.shape[:-1]))  # drops the last dimension

wrong_fake_strides = _op(  # column-major; the kernel's output is row-major
    "wrong_fake_strides", fake=lambda x: torch.empty_like(x).t().contiguous().t())

no_backward = _op("no_backward", backward=None)


def _backward_one_percent(ctx, grad):
    (x,) = ctx.saved_tensors
    return 1.01 * grad * 2 * torch.cos(x)


off_by_one_percent = _op("off_by_one_percent", backward=_backward_one_percent)


def _mutating_two_sin(x: torch.Tensor) -> torch.Tensor:
    out = 2 * torch.sin(x)
    x.mul_(1.5)  # writes to its input; the schema says it mutates nothing
    return out


undeclared_mutation = _op("undeclared_mutation", kernel=_mutating_two_sin)


LAST_INPUT = {}


def _two_sin_remembering_input(x: torch.Tensor) -> torch.Tensor:
    LAST_INPUT["x"] = x
    return 2 * torch.sin(x)


def _save_nothing(ctx, inputs, output):
    pass


def _backward_from_global(ctx, grad):
    return grad * 2 * torch.cos(LAST_INPUT["x"])  # right in eager, not what ctx holds


unsaved_input = _op("unsaved_input", kernel=_two_sin_remembering_input,
                    backward=_backward_from_global, setup_context=_save_nothing)
