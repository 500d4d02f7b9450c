"""Building blocks a user reaches for next, each with its analytic vector-Jacobian product."""

import torch
import torch.nn.functional as F

from harness import Case, Input

TAGS = ("block",)
SIZES = {"n": (1, 24), "m": (1, 24), "k": (1, 24)}
ELEMENTWISE_BENCH = tuple({"n": 2**k} for k in (10, 12, 14, 16, 18, 20, 22, 24))
COMPLEX = (torch.complex128, torch.complex64)
MATMUL_BENCH = tuple({"n": s, "k": s, "m": s} for s in (64, 256, 512))


def _softmax_vjp(x, v):
    s = torch.softmax(x, dim=-1)
    return s * (v - (s * v).sum(-1, keepdim=True))


def _cross_entropy(logits, target):
    return F.cross_entropy(logits, target.long())


def _cross_entropy_grad(logits, target):
    onehot = F.one_hot(target.long(), logits.shape[-1]).to(logits.dtype)
    return (torch.softmax(logits, -1) - onehot) / logits.shape[0]


def _sparse_and_dense(gen):
    mask = torch.rand(5, 6, generator=gen) < 0.3
    values = torch.randn(5, 6, generator=gen, dtype=torch.float64)
    s = (values * mask).to_sparse().requires_grad_()
    d = torch.randn(6, 4, generator=gen, dtype=torch.float64).requires_grad_()
    return s, d


def _class_targets(gen):
    logits = 3 * torch.randn(6, 5, generator=gen, dtype=torch.float64)
    target = torch.randint(0, 5, (6,), generator=gen)
    return logits.requires_grad_(), target


def _layer_norm(x, weight, bias):
    return F.layer_norm(x, x.shape[-1:], weight, bias, eps=1e-5)


def _layer_norm_vjp(x, weight, bias, v):
    mean = x.mean(-1, keepdim=True)
    std = (x.var(-1, unbiased=False, keepdim=True) + 1e-5).sqrt()
    xhat = (x - mean) / std
    dxhat = v * weight
    dx = (dxhat - dxhat.mean(-1, keepdim=True)
          - xhat * (dxhat * xhat).mean(-1, keepdim=True)) / std
    return dx, (v * xhat).sum(0), v.sum(0)


def _conv1d_vjp(x, w, v):
    """out[b, o, t] = sum_{c, j} w[o, c, j] x[b, c, t + j], differentiated by hand."""
    width = w.shape[-1]
    windows = x.unfold(2, width, 1)  # (batch, channels, t_out, width)
    dw = torch.einsum("bot,bctj->ocj", v, windows)
    dwindows = torch.einsum("bot,ocj->bctj", v, w)
    dx = torch.zeros_like(x)
    for j in range(width):
        dx[:, :, j:j + dwindows.shape[2]] += dwindows[..., j]
    return dx, dw


def _norm_grad(x):
    return x / torch.linalg.vector_norm(x)


BLOCK_CASES = [
    Case(name="block/exp", fn=torch.exp, inputs=[Input(("n", "m"), low=-4, high=4, name="x")],
         sizes=SIZES, grad=lambda x, v: torch.exp(x) * v, tags=TAGS),
    Case(name="block/tanh", fn=torch.tanh, inputs=[Input(("n",), low=-4, high=4, name="x")],
         sizes=SIZES, grad=lambda x, v: (1 - torch.tanh(x) ** 2) * v, tags=TAGS,
         bench_sizes=ELEMENTWISE_BENCH,
         # backward reads the saved output and grad_output, writes grad_input
         bench_bytes=lambda x: 3 * x.numel() * x.element_size()),
    Case(name="block/sigmoid", fn=torch.sigmoid,
         inputs=[Input(("n",), low=-8, high=8, name="x")], sizes=SIZES,
         grad=lambda x, v: torch.sigmoid(x) * (1 - torch.sigmoid(x)) * v, tags=TAGS),
    Case(name="block/softplus", fn=F.softplus,
         inputs=[Input(("n",), low=-10, high=10, name="x")], sizes=SIZES,
         grad=lambda x, v: torch.sigmoid(x) * v, tags=TAGS),
    Case(name="block/relu", fn=torch.relu,
         inputs=[Input(("n",), low=-3, high=3, avoid=(0.0,), name="x")], sizes=SIZES,
         grad=lambda x, v: (x > 0).to(x.dtype) * v, tags=(*TAGS, "kink"),
         description="kink at 0, kept out of the drawn values by avoid=(0,)"),
    Case(name="block/softmax", fn=lambda x: torch.softmax(x, dim=-1),
         inputs=[Input(("n", "m"), low=-5, high=5, name="x")], sizes=SIZES,
         grad=_softmax_vjp, tags=TAGS),
    Case(name="block/logsumexp", fn=lambda x: torch.logsumexp(x, dim=-1),
         inputs=[Input(("n", "m"), low=-30, high=30, name="x")], sizes=SIZES,
         grad=lambda x, v: torch.softmax(x, -1) * v.unsqueeze(-1), tags=TAGS),
    Case(name="block/matmul", fn=torch.matmul,
         inputs=[Input(("n", "k"), name="a"), Input(("k", "m"), name="b")], sizes=SIZES,
         grad=lambda a, b, v: (v @ b.T, a.T @ v), tags=TAGS, bench_sizes=MATMUL_BENCH,
         bench_flops=lambda a, b: 2 * 2 * a.shape[0] * a.shape[1] * b.shape[1]),
    Case(name="block/l2-norm", fn=torch.linalg.vector_norm,
         inputs=[Input(("n", "m"), low=0.1, high=3, name="x")], sizes=SIZES,
         grad=_norm_grad, tags=TAGS),
    Case(name="block/frobenius-norm-large", fn=lambda x: torch.linalg.matrix_norm(x),
         inputs=[Input((3, 4), low=1e5, high=1e6, name="x")],
         grad=_norm_grad, tags=(*TAGS, "magnitude"),
         description="large magnitudes: values around 1e5..1e6"),
    Case(name="block/cross-entropy", fn=_cross_entropy, inputs=_class_targets,
         input_names=("logits", "target"), grad=_cross_entropy_grad, tags=TAGS),
    Case(name="block/layer-norm", fn=_layer_norm,
         inputs=[Input(("n", "m"), low=-3, high=3, name="x"),
                 Input(("m",), low=0.5, high=2, name="weight"),
                 Input(("m",), low=-1, high=1, name="bias")],
         sizes={"n": (1, 8), "m": (3, 16)}, grad=_layer_norm_vjp, tags=TAGS,
         description="widths from 3: at width 2 the output is +-1 up to eps, and torch's "
                     "float32 double backward there was measured 2% off (seed 8)"),
    Case(name="block/sincos", fn=lambda x: (torch.sin(x), torch.cos(x)),
         inputs=[Input(("n",), low=-4, high=4, name="x")], sizes=SIZES,
         grad=lambda x, v: torch.cos(x) * v[0] - torch.sin(x) * v[1], tags=TAGS,
         description="tuple output: grad receives a tuple of cotangents"),
    Case(name="block/conv1d", fn=F.conv1d,
         inputs=[Input((2, 3, 12), name="x"), Input((4, 3, 3), name="weight")],
         grad=_conv1d_vjp, tags=TAGS),
    Case(name="block/complex-mul", fn=torch.mul,
         inputs=[Input(("n",), name="z"), Input(("n",), name="w")], sizes=SIZES,
         dtypes=COMPLEX, tags=(*TAGS, "complex"),
         description="complex to complex, holomorphic: grad_z = v * conj(w)"),
    Case(name="block/complex-abs-squared", fn=lambda z: (z.abs() ** 2).sum(),
         inputs=[Input(("n", "m"), name="z")], sizes=SIZES, dtypes=COMPLEX,
         tags=(*TAGS, "complex"), description="a real loss of a complex tensor: 2z"),
    Case(name="block/complex-fft-power", fn=lambda z: torch.fft.fft(z).abs().pow(2),
         inputs=[Input(("n",), name="z")], sizes={"n": (2, 24)}, dtypes=COMPLEX,
         tags=(*TAGS, "complex"), description="power spectrum: complex to real, non-holomorphic"),
    Case(name="block/complex-exp-matmul", fn=lambda a, b: torch.exp(a) @ b,
         inputs=[Input(("n", "k"), low=-1, high=1, name="a"), Input(("k", "m"), name="b")],
         sizes=SIZES, dtypes=COMPLEX, tags=(*TAGS, "complex"),
         description="holomorphic chain through a complex matmul"),
    Case(name="block/sparse-mm", fn=torch.sparse.mm, inputs=_sparse_and_dense,
         input_names=("s", "d"), checks=("sparse",), twice_differentiable=None,
         tags=(*TAGS, "sparse"),
         description="sparse COO @ dense: the gradient of s on its pattern (masked)"),
]
