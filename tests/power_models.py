"""Model families for the detection-power benchmark (tests/bench_power.py).

Each family builds a model with PyTorch's default initialisation and unscaled N(0, 1) data;
`variant` returns the loss as a function of the model's parameters, with one element's
gradient scaled by `factor` (1.0: the correct model). The wrong element is drawn at random
among those whose true gradient is ordinary: |g| at least half the rms of its tensor's gradient.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F


class ScaleGradAt(torch.autograd.Function):
    """Identity forward; the backward scales one element of the gradient by `factor`."""

    @staticmethod
    def forward(ctx, x, flat, factor):
        ctx.flat, ctx.factor = flat, factor
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        g = g.clone()
        g.view(-1)[ctx.flat] *= ctx.factor
        return g, None, None


class _Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer1, self.layer2 = nn.Linear(1000, 100), nn.Linear(100, 10)

    def forward(self, x):
        return self.layer2(torch.relu(self.layer1(x)))


class _Conv(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(3, 32, 3, padding=1), nn.Conv2d(32, 64, 3)
        self.head = nn.Linear(64, 10)

    def forward(self, x):
        x = F.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = torch.relu(self.conv2(x)).mean((2, 3))
        return self.head(x)


class _Attention(nn.Module):
    def __init__(self, d=64):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, 4, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))
        self.head = nn.Linear(d, 10)

    def forward(self, x):
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        x = x + self.mlp(self.norm2(x))
        return self.head(x.mean(1))


class _Embedding(nn.Module):
    def __init__(self):
        super().__init__()
        self.table = nn.Embedding(2000, 32)
        self.head = nn.Linear(32, 10)

    def forward(self, idx):
        return self.head(self.table(idx).mean(1))


class _Gru(nn.Module):
    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(16, 64, batch_first=True)
        self.head = nn.Linear(64, 5)

    def forward(self, x):
        return self.head(self.gru(x)[0][:, -1])


def _squared(reduction):
    return lambda out, y: F.mse_loss(out, y, reduction=reduction)


def _cross_entropy(reduction):
    return lambda out, y: F.cross_entropy(out, y, reduction=reduction)


@dataclass(frozen=True)
class Family:
    name: str
    module: Callable[[], nn.Module]
    data: Callable[[torch.Generator, torch.dtype], tuple[torch.Tensor, torch.Tensor]]
    loss: Callable


def _normal(*shape):
    return lambda gen, dtype: torch.randn(*shape, generator=gen, dtype=dtype)


def _classes(n, *shape):
    return lambda gen, dtype: torch.randint(n, shape, generator=gen)


def _pair(x, y):
    return lambda gen, dtype: (x(gen, dtype), y(gen, dtype))


FAMILIES = (
    Family("mlp-sum", _Mlp, _pair(_normal(16, 1000), _normal(16, 10)), _squared("sum")),
    Family("mlp-mean", _Mlp, _pair(_normal(16, 1000), _normal(16, 10)), _squared("mean")),
    Family("conv", _Conv, _pair(_normal(4, 3, 12, 12), _classes(10, 4)), _cross_entropy("mean")),
    Family("attention", _Attention, _pair(_normal(4, 12, 64), _classes(10, 4)),
           _cross_entropy("sum")),
    Family("embedding", _Embedding,
           _pair(lambda gen, dtype: torch.randint(2000, (16, 20), generator=gen),
                 _classes(10, 16)), _cross_entropy("mean")),
    Family("gru", _Gru, _pair(_normal(8, 10, 16), _normal(8, 5)), _squared("sum")),
)


@dataclass(frozen=True)
class Variant:
    """One drawn model: its loss over the parameters, the parameters, and the planted element."""

    family: str
    seed: int
    loss: Callable
    params: tuple[torch.Tensor, ...]
    names: tuple[str, ...]
    wrong: str
    index: tuple[int, ...]
    true_grad: float


def variant(family: Family, seed: int, dtype: torch.dtype, factor: float) -> Variant:
    torch.manual_seed(seed)
    module = family.module().to(dtype)
    gen = torch.Generator().manual_seed(seed)
    x, y = family.data(gen, dtype)
    names = tuple(n for n, _ in module.named_parameters())
    params = tuple(p.detach().clone().requires_grad_() for p in module.parameters())

    def plain(*ps):
        return family.loss(torch.func.functional_call(module, dict(zip(names, ps)), (x,)), y)

    grads = torch.autograd.grad(plain(*params), params)
    eligible = [(g.abs() >= 0.5 * g.square().mean().sqrt()) & (g != 0) for g in grads]
    counts = torch.tensor([int(e.sum()) for e in eligible], dtype=torch.float64)
    k = int(torch.multinomial(counts, 1, generator=gen))
    choices = eligible[k].flatten().nonzero().flatten()
    flat = int(choices[torch.randint(len(choices), (1,), generator=gen)])
    index = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), params[k].shape))

    def loss(*ps):
        if factor != 1.0:
            ps = list(ps)
            ps[k] = ScaleGradAt.apply(ps[k], flat, factor)
        return plain(*ps)

    return Variant(family.name, seed, loss, params, names, names[k], index,
                   float(grads[k].flatten()[flat]))
