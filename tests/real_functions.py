"""Custom autograd Functions as public libraries write them, re-written here from their
formulas, for the cost benchmark (tests/bench_net_cost.py): the net's price on the kind of
code its users bring. Each names its source; `off_by` plants the same bug in any of them
(its backward 2% off in the first input), for the price of a failing check.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


class Swish(torch.autograd.Function):
    """efficientnet_pytorch (utils.SwishImplementation): x * sigmoid(x), saving x."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * torch.sigmoid(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        s = torch.sigmoid(x)
        return g * (s * (1 + x * (1 - s)))


class Mish(torch.autograd.Function):
    """timm (layers/activations_me.MishAutoFn): x * tanh(softplus(x))."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * torch.tanh(F.softplus(x))

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        s, t = torch.sigmoid(x), torch.tanh(F.softplus(x))
        return g * (t + x * s * (1 - t * t))


class HardSwish(torch.autograd.Function):
    """timm (layers/activations_me.HardSwishAutoFn): x * relu6(x + 3) / 6."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * (x + 3).clamp(0, 6) / 6

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        slope = torch.where(x >= 3, torch.ones_like(x), torch.zeros_like(x))
        slope = torch.where((x >= -3) & (x <= 3), x / 3 + 0.5, slope)
        return g * slope


class FastGelu(torch.autograd.Function):
    """flash-attn (ops/activations gelu_fwd / gelu_bwd): the tanh approximation of GELU."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * 0.5 * (1 + torch.tanh(0.79788456 * x * (1 + 0.044715 * x * x)))

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        t = torch.tanh(0.79788456 * x * (1 + 0.044715 * x * x))
        slope = 0.5 * x * ((1 - t * t) * (0.79788456 + 0.1070322243 * x * x)) + 0.5 * (1 + t)
        return g * slope


class SwiGlu(torch.autograd.Function):
    """flash-attn (ops/activations SwiGLUFunction): silu(x) * y."""

    @staticmethod
    def forward(ctx, x, y):
        ctx.save_for_backward(x, y)
        return F.silu(x) * y

    @staticmethod
    def backward(ctx, g):
        x, y = ctx.saved_tensors
        s = torch.sigmoid(x)
        return s * (1 + x * (1 - s)) * y * g, x * s * g


class Sparsemax(torch.autograd.Function):
    """entmax (activations.SparsemaxFunction) over the last dimension: the Euclidean
    projection onto the simplex; its backward centres the gradient on the support."""

    @staticmethod
    def forward(ctx, x):
        z = x - x.max(-1, keepdim=True).values
        srt = z.sort(-1, descending=True).values
        rho = torch.arange(1, z.shape[-1] + 1, dtype=z.dtype, device=z.device)
        cumsum = srt.cumsum(-1) - 1
        support = (srt * rho > cumsum).sum(-1, keepdim=True)
        tau = cumsum.gather(-1, support - 1) / support.to(z.dtype)
        out = (z - tau).clamp(min=0)
        ctx.save_for_backward(support, out)
        return out

    @staticmethod
    def backward(ctx, g):
        support, out = ctx.saved_tensors
        g = g.masked_fill(out == 0, 0)
        centre = g.sum(-1, keepdim=True) / support.to(g.dtype)
        return torch.where(out != 0, g - centre, g)


class Entmax15(torch.autograd.Function):
    """entmax (activations.Entmax15Function) over the last dimension: alpha = 1.5 entmax by
    its sort-based threshold; the backward weighs by sqrt(y)."""

    @staticmethod
    def forward(ctx, x):
        z = (x - x.max(-1, keepdim=True).values) / 2
        srt = z.sort(-1, descending=True).values
        rho = torch.arange(1, z.shape[-1] + 1, dtype=z.dtype, device=z.device)
        mean = srt.cumsum(-1) / rho
        mean_sq = (srt * srt).cumsum(-1) / rho
        delta = (1 - rho * (mean_sq - mean * mean)) / rho
        tau = mean - delta.clamp(min=0).sqrt()
        support = (tau <= srt).sum(-1, keepdim=True)
        y = (z - tau.gather(-1, support - 1)).clamp(min=0) ** 2
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        w = y.sqrt()
        dx = g * w
        return dx - dx.sum(-1, keepdim=True) / w.sum(-1, keepdim=True) * w


class RmsNorm(torch.autograd.Function):
    """apex (normalization.FusedRMSNormAffineFunction), in torch: x / rms(x) * weight over
    the last dimension."""

    @staticmethod
    def forward(ctx, x, weight, eps=1e-6):
        r = (x * x).mean(-1, keepdim=True).add(eps).rsqrt()
        ctx.save_for_backward(x, weight, r)
        return x * r * weight

    @staticmethod
    def backward(ctx, g):
        x, weight, r = ctx.saved_tensors
        xhat = x * r
        gxhat = g * weight
        gx = r * (gxhat - xhat * (gxhat * xhat).mean(-1, keepdim=True))
        return gx, (g * xhat).reshape(-1, x.shape[-1]).sum(0), None


class LayerNorm(torch.autograd.Function):
    """apex (normalization.FusedLayerNormAffineFunction), in torch: over the last
    dimension, with weight and bias."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps=1e-5):
        mu = x.mean(-1, keepdim=True)
        r = ((x - mu) ** 2).mean(-1, keepdim=True).add(eps).rsqrt()
        xhat = (x - mu) * r
        ctx.save_for_backward(xhat, weight, r)
        return xhat * weight + bias

    @staticmethod
    def backward(ctx, g):
        xhat, weight, r = ctx.saved_tensors
        gxhat = g * weight
        gx = r * (gxhat - gxhat.mean(-1, keepdim=True)
                  - xhat * (gxhat * xhat).mean(-1, keepdim=True))
        n = xhat.shape[-1]
        return gx, (g * xhat).reshape(-1, n).sum(0), g.reshape(-1, n).sum(0), None


class CrossEntropy(torch.autograd.Function):
    """flash-attn (losses/cross_entropy CrossEntropyLossFunction, one process): per-row
    logsumexp - logit of the target; the backward is softmax - one-hot."""

    @staticmethod
    def forward(ctx, logits, target):
        lse = torch.logsumexp(logits, -1)
        loss = lse - logits.gather(-1, target[:, None])[:, 0]
        ctx.save_for_backward(logits, lse, target)
        return loss

    @staticmethod
    def backward(ctx, g):
        logits, lse, target = ctx.saved_tensors
        grad = torch.exp(logits - lse[:, None])
        grad = grad - F.one_hot(target, logits.shape[-1]).to(grad.dtype)
        return grad * g[:, None], None


class ScatterSum(torch.autograd.Function):
    """torch_scatter (the scatter_add Function of its early releases): rows of src summed
    into `size` rows by index; the backward gathers."""

    @staticmethod
    def forward(ctx, src, index, size):
        ctx.save_for_backward(index)
        return src.new_zeros((size, *src.shape[1:])).index_add(0, index, src)

    @staticmethod
    def backward(ctx, g):
        (index,) = ctx.saved_tensors
        return g.index_select(0, index), None, None


def _sized(function: type, index: torch.Tensor, size: int) -> type:
    """`function` with its index and output size fixed, so that it takes tensors alone."""

    class Sized(function):
        @staticmethod
        def forward(ctx, src):
            return function.forward(ctx, src, index, size)

        @staticmethod
        def backward(ctx, g):
            return function.backward(ctx, g)[0]

    Sized.__name__ = Sized.__qualname__ = function.__name__
    return Sized


def off_by(function: type, factor: float = 1.02) -> type:
    """`function` with its backward's first gradient scaled by `factor`: a planted bug."""

    class Off(function):
        @staticmethod
        def backward(ctx, *grads):
            out = function.backward(ctx, *grads)
            if isinstance(out, torch.Tensor):
                return out * factor
            return (out[0] * factor, *out[1:])

    Off.__name__ = Off.__qualname__ = f"{function.__name__}Off"
    return Off


def items(dtype=torch.float64, wrong: bool = False):
    """(name, fn, inputs) of every Function here (planted 2% off with `wrong`), at small
    inputs drawn from seed 0; fn takes tensors alone."""
    gen = torch.Generator().manual_seed(0)

    def randn(*shape, scale=1.0):
        return (scale * torch.randn(*shape, generator=gen, dtype=dtype)).requires_grad_()

    index = torch.randint(0, 4, (7,), generator=gen)
    rows_ = [
        ("efficientnet_pytorch Swish", Swish, (randn(6, 5, scale=2.0),)),
        ("timm Mish", Mish, (randn(6, 5, scale=2.0),)),
        ("timm HardSwish", HardSwish, (randn(6, 5, scale=2.0),)),
        ("flash-attn FastGelu", FastGelu, (randn(6, 5, scale=2.0),)),
        ("flash-attn SwiGlu", SwiGlu, (randn(6, 5), randn(6, 5))),
        ("entmax Sparsemax", Sparsemax, (randn(6, 5, scale=0.3),)),  # a support of several
        ("entmax Entmax15", Entmax15, (randn(6, 5, scale=2.0),)),
        ("apex RmsNorm", RmsNorm, (randn(4, 6), randn(6))),
        ("apex LayerNorm", LayerNorm, (randn(4, 6), randn(6), randn(6))),
        ("flash-attn CrossEntropy", CrossEntropy,
         (randn(5, 7), torch.randint(0, 7, (5,), generator=gen))),
        ("torch_scatter ScatterSum", _sized(ScatterSum, index, 4), (randn(7, 3),)),
    ]
    return [(name + (" (2% off)" if wrong else ""),
             (off_by(function) if wrong else function).apply, inputs)
            for name, function, inputs in rows_]
