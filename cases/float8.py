"""Float8 kernels checked against their references, the way fp8 training tests its casts.

The cast-out kernel quantizes a float32 tensor to float8_e4m3fn with a per-tensor scale from
its absolute maximum (torchao's and TransformerEngine's dynamic scaling), its gradient passed
straight through the rounding; the cast-in kernel dequantizes float8 values; the scaled matmul
multiplies two float8_e4m3fn operands with torch._scaled_mm (where the build has it) and
writes its backward in float32. Each is held to its reference in float64 at the same float8
values, and to the reference's own float8 rounding (the baseline rule, ratio 2 in float8).
`scale_error` plants an error in a hand-written gradient (tests set it to 1/scale's worth);
`output_error` one in the dequantizer's float32 output.
"""

import torch

from harness import Case, Input

E4M3 = torch.float8_e4m3fn
E5M2 = torch.float8_e5m2
E4M3_MAX = torch.finfo(E4M3).max
DEQUANT_SCALE = 0.37
TAGS = ("kernel", "float8")


def amax_scale(x: torch.Tensor) -> torch.Tensor:
    """The per-tensor scale that maps x's absolute maximum onto float8_e4m3fn's largest value;
    a constant to autograd, as in fp8 training (computed under no_grad)."""
    return (E4M3_MAX / x.detach().abs().max().clamp_min(1e-12)).to(x.dtype)


class Quantize(torch.autograd.Function):
    """x -> float8_e4m3fn(x * scale); the backward passes the gradient straight through the
    rounding: d/dx = scale."""

    scale_error = 1.0

    @staticmethod
    def forward(ctx, x):
        scale = amax_scale(x)
        ctx.save_for_backward(scale)
        return (x * scale).clamp(-E4M3_MAX, E4M3_MAX).to(E4M3)

    @staticmethod
    def backward(ctx, grad):
        scale, = ctx.saved_tensors
        return grad.to(scale.dtype) * scale * Quantize.scale_error


def quantize(x):
    return Quantize.apply(x)


def scaled(x):
    """The reference: x times the same scale, in whatever precision x is in."""
    return x * amax_scale(x)


class Dequantize(torch.autograd.Function):
    """float8 q -> q * scale in float32; the gradient, scale times the incoming one, is
    rounded by autograd to q's float8 dtype."""

    scale_error = 1.0
    output_error = 1.0

    @staticmethod
    def forward(ctx, q):
        return q.float() * DEQUANT_SCALE * Dequantize.output_error

    @staticmethod
    def backward(ctx, grad):
        return grad * DEQUANT_SCALE * Dequantize.scale_error


def dequantize(q):
    return Dequantize.apply(q)


def dequantized(q):
    return q * DEQUANT_SCALE


SCALE_A, SCALE_B = 0.5, 0.25


class ScaledMatmul(torch.autograd.Function):
    """(SCALE_A a) (SCALE_B b)ᵀ for float8_e4m3fn operands a (m, k), b (n, k), by
    torch._scaled_mm into float32; the backward in float32 from the dequantized operands."""

    scale_error = 1.0

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        one = torch.ones((), dtype=torch.float32, device=a.device)
        return torch._scaled_mm(a, b.t(), scale_a=one * SCALE_A, scale_b=one * SCALE_B,
                                out_dtype=torch.float32)

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        da = grad @ (b.float() * SCALE_B) * SCALE_A * ScaledMatmul.scale_error
        db = grad.t() @ (a.float() * SCALE_A) * SCALE_B
        return da, db


def scaled_matmul(a, b):
    return ScaledMatmul.apply(a, b)


def matmul_reference(a, b):
    return (a.double() * SCALE_A) @ (b.double() * SCALE_B).t()


FLOAT8_CASES = [
    Case(
        name="kernel/fp8-quantize",
        fn=quantize,
        reference=scaled,
        inputs=[Input(("rows", 32), name="x")],
        sizes={"rows": (8, 32)},
        dtypes=(torch.float32,),
        checks=("reference",),
        tags=TAGS,
        description="a cast-out kernel: float32 to float8_e4m3fn with an amax scale, its "
                    "gradient passed straight through, against x * scale",
    ),
    Case(
        name="kernel/fp8-dequantize",
        fn=dequantize,
        reference=dequantized,
        inputs=[Input(("rows", 32), name="q")],
        sizes={"rows": (8, 32)},
        dtypes=(E4M3, E5M2),
        checks=("reference",),
        tags=TAGS,
        description="a cast-in kernel: float8 values times a scale, in float32",
    ),
    Case(
        name="kernel/fp8-scaled-mm",
        fn=scaled_matmul,
        reference=matmul_reference,
        inputs=[Input((16, 32), name="a"), Input((16, 32), name="b")],
        dtypes=(E4M3,),
        checks=("reference",),
        tags=TAGS,
        description="torch._scaled_mm on float8_e4m3fn operands with a float32 backward, "
                    "against the float64 product",
    ),
]
