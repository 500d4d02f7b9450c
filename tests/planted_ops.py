"""Planted torch.library custom ops whose registration is broken while their gradient values
are right (or, for off_by_one_percent, the other way round)."""

import torch
from torch.library import custom_op


def _save_x(ctx, inputs, output):
    ctx.save_for_backward(inputs[0])


def _backward(ctx, grad):
    (x,) = ctx.saved_tensors
    return grad * 2 * torch.cos(x)


@custom_op("harness_tests::wrong_fake_shape", mutates_args=())
def wrong_fake_shape(x: torch.Tensor) -> torch.Tensor:
    return 2 * torch.sin(x)


@wrong_fake_shape.register_fake
def _(x):
    return x.new_empty(x.shape[:-1])  # drops the last dimension


wrong_fake_shape.register_autograd(_backward, setup_context=_save_x)


@custom_op("harness_tests::undeclared_mutation", mutates_args=())
def undeclared_mutation(x: torch.Tensor) -> torch.Tensor:
    out = 2 * torch.sin(x)
    x.mul_(1.5)  # writes to its input; the schema says it mutates nothing
    return out


@undeclared_mutation.register_fake
def _(x):
    return torch.empty_like(x)


undeclared_mutation.register_autograd(_backward, setup_context=_save_x)


LAST_INPUT = {}


@custom_op("harness_tests::unsaved_input", mutates_args=())
def unsaved_input(x: torch.Tensor) -> torch.Tensor:
    LAST_INPUT["x"] = x
    return 2 * torch.sin(x)


@unsaved_input.register_fake
def _(x):
    return torch.empty_like(x)


def _save_nothing(ctx, inputs, output):
    pass


def _backward_from_global(ctx, grad):
    return grad * 2 * torch.cos(LAST_INPUT["x"])  # right in eager, not what ctx holds


unsaved_input.register_autograd(_backward_from_global, setup_context=_save_nothing)


@custom_op("harness_tests::off_by_one_percent", mutates_args=())
def off_by_one_percent(x: torch.Tensor) -> torch.Tensor:
    return 2 * torch.sin(x)


@off_by_one_percent.register_fake
def _(x):
    return torch.empty_like(x)


def _backward_one_percent(ctx, grad):
    (x,) = ctx.saved_tensors
    return 1.01 * grad * 2 * torch.cos(x)


off_by_one_percent.register_autograd(_backward_one_percent, setup_context=_save_x)


@custom_op("harness_tests::right_sin", mutates_args=())
def right_sin(x: torch.Tensor) -> torch.Tensor:
    """2 sin(x), registered right: fake kernel, backward, vmap rule."""
    return 2 * torch.sin(x)


@right_sin.register_fake
def _(x):
    return torch.empty_like(x)


right_sin.register_autograd(_backward, setup_context=_save_x)


@right_sin.register_vmap
def _(info, in_dims, x):
    return right_sin(x), in_dims[0]


@custom_op("harness_tests::wrong_fake_strides", mutates_args=())
def wrong_fake_strides(x: torch.Tensor) -> torch.Tensor:
    return 2 * torch.sin(x)


@wrong_fake_strides.register_fake
def _(x):
    return torch.empty_like(x).t().contiguous().t()  # column-major; the kernel's is row-major


wrong_fake_strides.register_autograd(_backward, setup_context=_save_x)


@custom_op("harness_tests::no_backward", mutates_args=())
def no_backward(x: torch.Tensor) -> torch.Tensor:
    return 2 * torch.sin(x)


@no_backward.register_fake
def _(x):
    return torch.empty_like(x)
