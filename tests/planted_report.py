"""Planted cases for the HTML report's test and its screenshot: `harness check --load
tests/planted_report.py --cases 'planted/*' --cases 'tutorial/*'`."""

import torch

from harness import Case, Input


class SquareWrongNegative(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x**2

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return torch.where(x < 0, 3 * x, 2 * x) * g


wrong = Case(name="planted/square-wrong-negative", fn=SquareWrongNegative.apply,
             inputs=[Input((6, 8), name="x")], dtypes=(torch.float64,),
             description="x**2 with a backward 1.5x too large where x < 0")
broken = Case(name="planted/returns-a-float", fn=lambda x: float(x.sum()), inputs=[Input((3,))],
              dtypes=(torch.float64,))
