"""Hand-written kernels checked against the eager composition they replace (Case.reference).

Each is a custom autograd Function whose backward is written by hand, as a fused kernel's
would be, and whose backward is built from differentiable torch ops, so its second derivative
and (through the jvp staticmethod) its forward mode are compared with the reference's too.
`scale` plants an error in the hand-written gradient (tests set it to 1.01: 1% off).
"""

import torch
import torch.nn.functional as F

from harness import Case, Input

TAGS = ("kernel",)
LN_EPS = 1e-5


class FusedSoftmaxCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of logits against class indices, its gradient (p - onehot) / n
    written by hand."""

    scale = 1.0

    @staticmethod
    def forward(ctx, logits, target):
        ctx.save_for_backward(logits, target)
        ctx.save_for_forward(logits, target)
        logp = logits - torch.logsumexp(logits, -1, keepdim=True)
        return -logp.gather(-1, target[:, None]).mean()

    @staticmethod
    def backward(ctx, grad):
        logits, target = ctx.saved_tensors
        return grad * _softmax_ce_grad(logits, target, FusedSoftmaxCrossEntropy.scale), None

    @staticmethod
    def jvp(ctx, logits_tangent, _target_tangent):
        logits, target = ctx.saved_tensors
        return (_softmax_ce_grad(logits, target, 1.0) * logits_tangent).sum()


def _softmax_ce_grad(logits, target, scale):
    onehot = F.one_hot(target, logits.shape[-1]).to(logits.dtype)
    return scale * (torch.softmax(logits, -1) - onehot) / logits.shape[0]


def fused_softmax_cross_entropy(logits, target):
    return FusedSoftmaxCrossEntropy.apply(logits, target)


def eager_cross_entropy(logits, target):
    return F.cross_entropy(logits, target)


class FusedLayerNorm(torch.autograd.Function):
    """Layer norm over the last dimension with weight and bias; the input's gradient
    rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)) written by hand."""

    scale = 1.0

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        ctx.save_for_forward(x, weight, bias)
        xhat, _ = _normalized(x)
        return xhat * weight + bias

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        xhat, rstd = _normalized(x)
        dxhat = grad * weight
        dx = rstd * (dxhat - dxhat.mean(-1, keepdim=True)
                     - xhat * (dxhat * xhat).mean(-1, keepdim=True))
        rows = tuple(range(grad.dim() - 1))
        return (FusedLayerNorm.scale * dx, (grad * xhat).sum(rows), grad.sum(rows))

    @staticmethod
    def jvp(ctx, dx, dweight, dbias):
        x, weight, _ = ctx.saved_tensors
        xhat, rstd = _normalized(x)
        dxhat = rstd * (dx - dx.mean(-1, keepdim=True)
                        - xhat * (dx * xhat).mean(-1, keepdim=True))
        return dxhat * weight + xhat * dweight + dbias


def _normalized(x):
    mean = x.mean(-1, keepdim=True)
    rstd = (x.var(-1, unbiased=False, keepdim=True) + LN_EPS).rsqrt()
    return (x - mean) * rstd, rstd


def fused_layer_norm(x, weight, bias):
    return FusedLayerNorm.apply(x, weight, bias)


def eager_layer_norm(x, weight, bias):
    return F.layer_norm(x, x.shape[-1:], weight, bias, eps=LN_EPS)


def _logits_and_classes(gen):
    logits = 2 * torch.randn(64, 32, generator=gen, dtype=torch.float64)
    return logits.requires_grad_(), torch.randint(0, 32, (64,), generator=gen)


KERNEL_CASES = [
    Case(
        name="kernel/fused-softmax-ce",
        fn=fused_softmax_cross_entropy,
        reference=eager_cross_entropy,
        inputs=_logits_and_classes,
        input_names=("logits", "target"),
        tags=TAGS,
        description="a hand-written softmax cross-entropy (forward, backward, jvp) against "
                    "F.cross_entropy",
    ),
    Case(
        name="kernel/fused-layer-norm",
        fn=fused_layer_norm,
        reference=eager_layer_norm,
        inputs=[Input(("rows", "features"), name="x"),
                Input(("features",), low=0.5, high=1.5, name="weight"),
                Input(("features",), name="bias")],
        sizes={"rows": (16, 48), "features": (8, 64)},
        tags=TAGS,
        description="a layer norm with a hand-written backward and jvp against F.layer_norm",
    ),
]
