"""The tutorials' training loops as training-step cases (shared/seeds 000 and 001)."""

import torch
from torch import nn

from harness import TrainingCase

TAGS = ("tutorial", "training")


class Holder(nn.Module):
    """A bare parameter p, as the tutorials optimise it."""

    def __init__(self, p: torch.Tensor):
        super().__init__()
        self.p = nn.Parameter(p)


def _p_loss(model, batch):
    p = model.p
    return ((p - p**2) ** 2).sum()


def _a_function_loss(model, batch):
    (data,) = batch
    out = data * model.p  # a_function(input, p)
    return ((out - 2 * data) ** 2).mean(-1).mean()  # loss(input, output)


def _tiny_model():
    return nn.Sequential(nn.Linear(1000, 100), nn.ReLU(), nn.Linear(100, 10))


def _tiny_batch(gen):
    return (torch.randn(16, 1000, generator=gen, dtype=torch.float64),
            torch.randn(16, 10, generator=gen, dtype=torch.float64))


def _mse(model, batch):
    x, y = batch
    return nn.functional.mse_loss(model(x), y)


def wrong_way_step(model, optimizer, batch):
    """000's 'wrong way' SGD: it updates a clone of p, so the model's p never moves."""
    p = model.p.clone().detach().requires_grad_()
    p_loss = ((p - p**2) ** 2).sum()
    p_loss.backward()
    with torch.no_grad():
        p -= optimizer.param_groups[0]["lr"] * p.grad


TRAINING_CASES = [
    TrainingCase(name="tutorial/sgd-p-step", lr=1.0, tags=TAGS,
                 model=lambda: Holder(torch.tensor([1.0, 3.0, 2.0, 2.0])),
                 batch=lambda gen: (), loss=_p_loss,
                 description="p = (1, 3, 2, 2), l = sum((p - p^2)^2), SGD lr=1: grad "
                             "(0, 60, 12, 12), p after the step (1, -57, -10, -10) (000)"),
    TrainingCase(name="tutorial/a-function-sgd", lr=0.01, tags=TAGS,
                 model=lambda: Holder(torch.randn(2)),
                 batch=lambda gen: (torch.randn(100, 2, generator=gen, dtype=torch.float64),),
                 loss=_a_function_loss,
                 description="a_function/loss over 100 points: the sum of per-sample "
                             "gradients is 100 x the batch-mean gradient (000)"),
    TrainingCase(name="tutorial/tiny-model-step", lr=0.001, tags=(*TAGS, "model"),
                 model=_tiny_model, batch=_tiny_batch, loss=_mse,
                 description="TinyModel, SGD: weights change after step(); zero_grad() "
                             "leaves None; batch-mean MSE (001)"),
    TrainingCase(name="tutorial/wrong-way-sgd", lr=0.1, tags=(*TAGS, "teaching"),
                 model=lambda: Holder(torch.tensor([1.0, 3.0, 2.0, 2.0])),
                 batch=lambda gen: (), loss=_p_loss, step=wrong_way_step,
                 expected_failures={"step-updates": "never updates the parameters",
                                    "step-zeroing": "not backpropagated to the model"},
                 description="000's 'wrong way': SGD on a clone never moves p"),
]
