"""A custom operator registered with torch.library, as kernel projects now ship them: a
kernel, a fake (meta) kernel for torch.compile and export, a backward with setup_context and
a vmap rule. The opcheck families check the registration; the other families its gradient.
"""

import torch
from torch.library import custom_op

from harness import Case, Input


@custom_op("harness_cases::scaled_sin", mutates_args=())
def scaled_sin(x: torch.Tensor, scale: float) -> torch.Tensor:
    """scale * sin(x), the kernel opaque to autograd and compile alike."""
    return scale * torch.sin(x)


@scaled_sin.register_fake
def _scaled_sin_fake(x, scale):
    return torch.empty_like(x)


def _setup_context(ctx, inputs, output):
    x, scale = inputs
    ctx.save_for_backward(x)
    ctx.scale = scale


def _backward(ctx, grad):
    (x,) = ctx.saved_tensors
    return grad * ctx.scale * torch.cos(x), None


scaled_sin.register_autograd(_backward, setup_context=_setup_context)


@scaled_sin.register_vmap
def _scaled_sin_vmap(info, in_dims, x, scale):
    return scaled_sin(x, scale), in_dims[0]


CUSTOM_OP_CASES = [
    Case(
        name="custom-op/scaled-sin",
        fn=lambda x: scaled_sin(x, 2.0),
        op=scaled_sin,
        grad=lambda x, v: 2.0 * torch.cos(x) * v,
        inputs=[Input(("n", "m"), name="x")],
        sizes={"n": (2, 6), "m": (1, 5)},
        tags=("custom-op",),
        description="torch.library.custom_op scale * sin(x) with register_fake, "
                    "register_autograd and register_vmap (gradient 2 cos(x))",
    ),
]
