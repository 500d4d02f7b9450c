"""Every worked example of the five autograd tutorials (shared/seeds), with its gradient.

Each case's docstring-like description names the notebook value it reproduces.
"""

import math

import torch

from harness import Case, Input

TAGS = ("tutorial",)


def _linspace_0_2pi(gen):
    return (torch.linspace(0.0, 2 * math.pi, 25, dtype=torch.float64).requires_grad_(),)


def _output(traced):
    """fn from a traced function: the same code path, without the named intermediates."""
    return lambda *inputs: traced(*inputs)[0]


def _scalar_chain(p):
    w = 10 * p
    return w**2, {"w": w}


def _log_squared(x):
    z = torch.log(x)
    return z**2, {"z": z}


def _mean_2t_plus_2(t1):
    t2 = t1 + 2
    t3 = 2 * t2**2
    return t3.mean(), {"t2": t2, "t3": t3}


def _sin_chain(a):
    b = torch.sin(a)
    c = 2 * b
    d = c + 1
    return d.sum(), {"b": b, "c": c, "d": d}


def _rerun_cells(fn, runs):
    """Notebook 002's mistake as a 'gradient': the backward cell run `runs` times without
    zeroing .grad, so the printed values are `runs` times the true ones (66 = 3 x 22)."""

    arity = fn.__code__.co_argcount

    def grad(*args):  # (*inputs) for a scalar fn, (*inputs, v) for a tensor one
        inputs, v = args[:arity], (args[arity] if len(args) > arity else None)
        leaves = [x.detach().clone().requires_grad_() for x in inputs]
        for _ in range(runs):
            out = fn(*leaves)
            out.backward() if v is None else out.backward(v)
        grads = tuple(leaf.grad for leaf in leaves)
        return grads if len(grads) > 1 else grads[0]

    return grad


def _poly(x):
    return 3 * x**2 + 4 * x + 2


def _q(a, b):
    return 3 * a**3 - b**2


def _at(*values):
    return lambda gen: tuple(torch.tensor(v, dtype=torch.float64).requires_grad_()
                             for v in values)


def _tiny_model(x, y, w1, b1, w2, b2):
    hidden = torch.relu(x @ w1.T + b1)
    out = hidden @ w2.T + b2
    return ((out - y) ** 2).mean()


def _tiny_model_grad(x, y, w1, b1, w2, b2):
    """Backpropagation written out by hand: MSE -> Linear -> ReLU -> Linear."""
    pre = x @ w1.T + b1
    hidden = pre.clamp_min(0)
    out = hidden @ w2.T + b2
    d_out = 2 * (out - y) / out.numel()
    d_hidden = d_out @ w2
    d_pre = d_hidden * (pre > 0)
    return d_pre.T @ x, d_pre.sum(0), d_out.T @ hidden, d_out.sum(0)


def _tiny_model_backward_flops(x, y, w1, b1, w2, b2):
    """Multiply-adds of the backward: dW2, dHidden (batch x 10 x width each), dW1 (batch x
    width x 1000); x needs no gradient."""
    batch, width = x.shape[0], w1.shape[0]
    return 2 * batch * width * (2 * 10 + x.shape[1])


def _regression(w, b, x, y):
    return ((w * x + b - y) ** 2).mean()


def _regression_grad(w, b, x, y):
    err = w * x + b - y
    return (2 * err * x).mean(), (2 * err).mean()


def _a_function_loss(p, data):
    out = data * p  # a_function(input, p)
    return ((out - 2 * data) ** 2).mean(-1).mean()  # loss(input, output)


def _a_function_loss_grad(p, data):
    n, d = data.shape
    return (2 * (data * p - 2 * data) * data).sum(0) / (n * d)


TUTORIAL_CASES = [
    Case(name="tutorial/scalar-chain", fn=_output(_scalar_chain),
         inputs=[Input((), low=-3, high=3, name="p")], grad=lambda p: 200 * p, tags=TAGS,
         intermediates=_scalar_chain, intermediate_grad=lambda p: {"w": 20 * p},
         description="w = 10p, l = w^2: dl/dp = 200p, dl/dw = 2w (000)"),
    Case(name="tutorial/sum-p-minus-p2-squared", fn=lambda p: ((p - p**2) ** 2).sum(),
         inputs=[Input((4,), low=-3, high=3, name="p")],
         grad=lambda p: 4 * p**3 - 6 * p**2 + 2 * p, tags=TAGS,
         description="sum((p - p^2)^2): 4p^3 - 6p^2 + 2p; (0, 60, 12, 12) at p = (1, 3, 2, 2)"),
    Case(name="tutorial/poly", fn=lambda x: 3 * x**2 + 4 * x + 2,
         inputs=[Input((), low=-5, high=5, name="x")], grad=lambda x: 6 * x + 4, tags=TAGS,
         description="y = 3x^2 + 4x + 2: dy/dx = 6x + 4, 22 at x = 3 (002)"),
    Case(name="tutorial/q-external-grad", fn=lambda a, b: 3 * a**3 - b**2,
         inputs=[Input((2,), low=-6, high=6, name="a"), Input((2,), low=-6, high=6, name="b")],
         grad=lambda a, b, v: (9 * a**2 * v, -2 * b * v), tags=TAGS,
         description="Q = 3a^3 - b^2 with an external gradient: 9a^2, -2b (002)"),
    Case(name="tutorial/mean-affine-squared", fn=lambda x: ((2 * x + 3) ** 2).mean(),
         inputs=[Input((3,), low=-4, high=4, name="x")],
         grad=lambda x: 4 * (2 * x + 3) / x.numel(), tags=TAGS,
         description="mean((2x + 3)^2): 4(2x + 3)/n (002)"),
    Case(name="tutorial/notebook-002-poly-rerun", fn=_poly, inputs=_at(3.0),
         input_names=("x",), grad=_rerun_cells(_poly, runs=3), tags=(*TAGS, "teaching"),
         expected_failures={"analytic": "exactly 3 times"},
         description="002 printed dy/dx = 66 at x = 3: the backward cell ran 3 times without "
                     "zeroing; the harness must call it accumulation, not a generic mismatch"),
    Case(name="tutorial/notebook-002-q-rerun", fn=_q, inputs=_at([2.0, 3.0], [6.0, 4.0]),
         input_names=("a", "b"), grad=_rerun_cells(_q, runs=2), tags=(*TAGS, "teaching"),
         expected_failures={"analytic": "exactly 2 times"},
         description="002 printed Q's gradients as [72, 162] and [-24, -16]: twice the truth"),
    Case(name="tutorial/sin-linspace", fn=_output(_sin_chain),
         inputs=_linspace_0_2pi, input_names=("a",), grad=lambda a: 2 * torch.cos(a), tags=TAGS,
         grad_fn_chain=("SumBackward0", "AddBackward0", "MulBackward0", "SinBackward0",
                        "AccumulateGrad"),
         intermediates=_sin_chain,
         intermediate_grad=lambda a: {"b": 2 * torch.ones_like(a), "c": torch.ones_like(a),
                                      "d": torch.ones_like(a)},
         description="sum(2 sin(a) + 1) on linspace(0, 2pi, 25): 2cos(a) (001)"),
    Case(name="tutorial/dot", fn=lambda x: torch.dot(x, x),
         inputs=[Input(("n",), name="x")], sizes={"n": (1, 40)}, grad=lambda x: 2 * x,
         tags=TAGS, description="dot(x, x): 2x (001)"),
    Case(name="tutorial/log-squared", fn=_output(_log_squared),
         inputs=[Input((5,), low=0.05, high=10, positive=True, name="x")],
         grad=lambda x, v: 2 * torch.log(x) / x * v, tags=TAGS,
         intermediates=_log_squared, intermediate_grad=lambda x, v: {"z": 2 * torch.log(x) * v},
         description="log(x)^2 through an intermediate z = log(x): 2log(x)/x (003)"),
    Case(name="tutorial/square", fn=lambda x: x**2,
         inputs=[Input((3,), low=-4, high=4, name="x")], grad=lambda x, v: 2 * x * v, tags=TAGS,
         description="x^2 with backward(v): 2x * v (003)"),
    Case(name="tutorial/sum", fn=lambda x: x.sum(),
         inputs=[Input((3,), low=-4, high=4, name="x")], grad=lambda x: torch.ones_like(x),
         tags=TAGS, description="sum(x): ones (003)"),
    Case(name="tutorial/mean-2t-plus-2-squared", fn=_output(_mean_2t_plus_2),
         inputs=[Input((2, 2), low=-4, high=4, name="t1")],
         grad=lambda t1: 4 * (t1 + 2) / t1.numel(), tags=TAGS,
         intermediates=_mean_2t_plus_2,
         intermediate_grad=lambda t1: {"t2": 4 * (t1 + 2) / t1.numel(),
                                       "t3": torch.ones_like(t1) / t1.numel()},
         description="t2 = t1 + 2, t3 = 2 t2^2, mean: 4(t1 + 2)/n (004)"),
    Case(name="tutorial/linear-regression", fn=_regression,
         inputs=[Input((), low=-5, high=5, name="w"), Input((), low=-5, high=5, name="b"),
                 Input((5,), low=-5, high=5, requires_grad=False, name="x"),
                 Input((5,), low=-10, high=10, requires_grad=False, name="y")],
         grad=_regression_grad, tags=TAGS,
         description="mean((w x + b - y)^2): mean(2 e x), mean(2 e) (002)"),
    Case(name="tutorial/a-function-loss", fn=_a_function_loss,
         inputs=[Input((2,), low=-2, high=2, name="p"),
                 Input((100, 2), low=-3, high=3, requires_grad=False, name="input")],
         grad=_a_function_loss_grad, tags=TAGS,
         description="a_function = input * p, loss = mean((out - 2 input)^2) (000)"),
    Case(name="tutorial/tiny-model", fn=_tiny_model,
         inputs=[Input(("batch", 1000), low=-2, high=2, requires_grad=False, name="x"),
                 Input(("batch", 10), low=-1, high=1, requires_grad=False, name="y"),
                 Input(("width", 1000), low=-0.03, high=0.03, name="layer1.weight"),
                 Input(("width",), low=-0.03, high=0.03, name="layer1.bias"),
                 Input((10, "width"), low=-0.1, high=0.1, name="layer2.weight"),
                 Input((10,), low=-0.1, high=0.1, name="layer2.bias")],
         sizes={"batch": (16, 16), "width": (100, 100)},
         grad=_tiny_model_grad, tags=(*TAGS, "model"),
         bench_sizes=tuple({"batch": b, "width": w} for b in (16, 128, 1024)
                           for w in (100, 400, 1600)),
         bench_flops=_tiny_model_backward_flops,
         description="TinyModel: Linear 1000-100, ReLU, Linear 100-10, MSE; backprop by hand"),
]
