"""Planted models for the module bisection: the wrong code sits in one submodule (a custom
Function, or a functional op with a detached factor), the rest of the model is right."""

import torch
from torch import nn
from torch.nn import functional as F

from planted import LinearWrongElement


class FusedGELU(torch.autograd.Function):
    """GELU whose hand-written backward is `scale` times too large where the input is
    negative (1.5: planted; 1.0: right)."""

    scale = 1.5

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return F.gelu(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        cdf = 0.5 * (1 + torch.erf(x / 2**0.5))
        pdf = torch.exp(-0.5 * x * x) / (2 * torch.pi) ** 0.5
        d = cdf + x * pdf
        return g * torch.where(x < 0, d * FusedGELU.scale, d)


class Act(nn.Module):
    def forward(self, x):
        return FusedGELU.apply(x)


class GoodAct(nn.Module):
    def forward(self, x):
        return F.gelu(x)


class DetachedSiLU(nn.Module):
    """x * sigmoid(x) with the sigmoid detached: its backward misses x * sigmoid'(x)."""

    def forward(self, x):
        return x * torch.sigmoid(x).detach()


class Block(nn.Module):
    """A residual block: x + act(norm(linear(x))), the activation at `k.1`."""

    def __init__(self, width: int, act: nn.Module):
        super().__init__()
        self.lin = nn.Linear(width, width)
        self.k = nn.Sequential(nn.LayerNorm(width), act)

    def forward(self, x):
        return x + self.k(self.lin(x))


def blocks(n: int, wrong=(), width: int = 8, act=Act) -> nn.Sequential:
    """n residual blocks; those at the `wrong` positions use `act`, the others GoodAct: the
    planted activation sits three levels deep, at `{i}.k.1`."""
    torch.manual_seed(0)
    return nn.Sequential(*(Block(width, act() if i in wrong else GoodAct()) for i in range(n)))


class SharedAct(nn.Module):
    """One activation module called twice in the forward."""

    def __init__(self, width: int = 6):
        super().__init__()
        torch.manual_seed(0)
        self.first, self.second = nn.Linear(width, width), nn.Linear(width, 3)
        self.act = Act()

    def forward(self, x):
        return self.second(self.act(self.first(x))).sum(-1) + self.act(x).mean(-1)


class Loop(nn.Module):
    """Layers in nn.ModuleLists called in a Python loop (the lists are never called)."""

    def __init__(self, n: int = 6, wrong: int = 3, width: int = 6):
        super().__init__()
        torch.manual_seed(0)
        self.layers = nn.ModuleList(nn.Linear(width, width) for _ in range(n))
        self.acts = nn.ModuleList(Act() if i == wrong else nn.Tanh() for i in range(n))

    def forward(self, x):
        for layer, act in zip(self.layers, self.acts):
            x = act(layer(x))
        return x


class SmallCNN(nn.Module):
    """Conv, batch norm (training mode: batch statistics), the planted Act, conv, ReLU,
    linear head; the Act at `features.2`."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), Act(),
                                      nn.Conv2d(4, 4, 3), nn.ReLU())
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        return self.head(self.features(x).flatten(1))


def transformer(layers: int = 2) -> nn.TransformerEncoder:
    """A transformer encoder whose feed-forward activation is FusedGELU.apply, a function
    (not a module): the culprit is the encoder layer that calls it."""
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True,
                                       activation=lambda x: FusedGELU.apply(x))
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)


class OneWrongWeight(nn.Linear):
    """A linear layer whose weight gradient is `factor` times right at one element."""

    def __init__(self, width: int, index: tuple[int, int], factor: float):
        super().__init__(width, width)
        self.index, self.factor = index, factor

    def forward(self, x):
        return LinearWrongElement.apply(x, self.weight, self.bias, self.index, self.factor)


def wide_mlp(width: int = 64, index=(44, 47), factor: float = 1.1) -> nn.Sequential:
    """Six tanh layers of `width`; the fifth (`8`) has one weight element's gradient off."""
    torch.manual_seed(0)
    layers = []
    for i in range(6):
        layers += [OneWrongWeight(width, index, factor) if i == 4 else nn.Linear(width, width),
                   nn.Tanh()]
    return nn.Sequential(*layers)
