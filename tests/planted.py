"""Custom autograd Functions with deliberately planted backward bugs, and correct twins."""

import torch


def _function(forward, backward, name):
    """A custom autograd Function of one input from a forward and a backward(x, g)."""

    def fwd(ctx, x):
        ctx.save_for_backward(x)
        return forward(x)

    def bwd(ctx, g):
        (x,) = ctx.saved_tensors
        return backward(x, g)

    cls = type(name, (torch.autograd.Function,),
               {"forward": staticmethod(fwd), "backward": staticmethod(bwd)})
    return cls.apply


square = _function(lambda x: x**2, lambda x, g: 2 * x * g, "Square")
square_sign_flip = _function(lambda x: x**2, lambda x, g: -2 * x * g, "SquareSignFlip")
square_ignores_grad = _function(lambda x: x**2, lambda x, g: 2 * x, "SquareIgnoresGrad")
square_tiny_error = _function(lambda x: x**2, lambda x, g: 2 * x * g * (1 + 1e-4),
                              "SquareTinyError")
square_three_times = _function(lambda x: x**2, lambda x, g: 3 * (2 * x * g), "SquareThreeTimes")
sin_missing_half = _function(torch.sin, lambda x, g: 0.5 * torch.cos(x) * g, "SinMissingHalf")
square_wrong_negative = _function(
    lambda x: x**2, lambda x, g: torch.where(x < 0, 3 * x, 2 * x) * g, "SquareWrongNegative")
square_wrong_above_4 = _function(
    lambda x: x**2, lambda x, g: torch.where(x > 4, 2.5 * x, 2 * x) * g, "SquareWrongAbove4")


def _one_wrong(x, g, index):
    grad = torch.cos(x) * g
    grad[index] = grad[index] * 1.5
    return grad


sin_one_wrong = _function(torch.sin, lambda x, g: _one_wrong(x, g, (12, 34)), "SinOneWrong")


class MatmulTransposed(torch.autograd.Function):
    """grad_a written as b @ grad.T: the transpose of the right answer."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a @ b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        return b @ g.T, a.T @ g


class MulExpSwapped(torch.autograd.Function):
    """f(x, y) = x * exp(y), with the two gradients returned in the wrong order."""

    @staticmethod
    def forward(ctx, x, y):
        ctx.save_for_backward(x, y)
        return x * torch.exp(y)

    @staticmethod
    def backward(ctx, g):
        x, y = ctx.saved_tensors
        return g * x * torch.exp(y), g * torch.exp(y)


class _CubeSlope(torch.autograd.Function):
    """3x^2 with a wrong derivative (3x instead of 6x)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return 3 * x**2

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 3 * x * g


class CubeWrongSecond(torch.autograd.Function):
    """x^3 whose first derivative is right but whose second derivative is wrong."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x**3

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * _CubeSlope.apply(x)


class CubeSecondDetached(torch.autograd.Function):
    """x^3 whose backward detaches x: first order right, the second derivative's 6x*g term
    lost, so double backward is wrong by a different ratio on every element."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x**3

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * 3 * x.detach() ** 2


class RoundStraightThrough(torch.autograd.Function):
    """Rounding to quarters with a straight-through backward (g passes unchanged): its
    forward is piecewise constant, so finite differences read 0 away from the steps."""

    @staticmethod
    def forward(ctx, x):
        return torch.round(x * 4) / 4

    @staticmethod
    def backward(ctx, g):
        return g


def sparsemax(z):
    """Sparsemax over a 1-D input (Martins & Astudillo 2016): a projection onto the simplex."""
    zs, _ = torch.sort(z, descending=True)
    k = torch.arange(1, z.numel() + 1, dtype=z.dtype)
    cs = zs.cumsum(0)
    support = (1 + k * zs > cs).sum()
    return torch.clamp(z - (cs[support - 1] - 1) / support, min=0)


class SparsemaxNoMean(torch.autograd.Function):
    """Sparsemax whose backward forgets to subtract the support's mean of g: wrong exactly on
    the support (the non-zero outputs), whatever the inputs' signs."""

    @staticmethod
    def forward(ctx, z):
        p = sparsemax(z)
        ctx.save_for_backward(p)
        return p

    @staticmethod
    def backward(ctx, g):
        (p,) = ctx.saved_tensors
        return (p > 0).to(g.dtype) * g


class LinearWrongElement(torch.autograd.Function):
    """y = x @ w.T + b with the weight gradient `factor` times right at one element."""

    @staticmethod
    def forward(ctx, x, w, b, index, factor=2.0):
        ctx.save_for_backward(x, w)
        ctx.index, ctx.factor = index, factor
        return x @ w.T + b

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        gw = g.T @ x
        gw[ctx.index] = ctx.factor * gw[ctx.index]
        return g @ w, gw, g.sum(0), None, None


class BuggyLinear(torch.nn.Linear):
    def __init__(self, n_in, n_out, index):
        super().__init__(n_in, n_out)
        self.index = index

    def forward(self, x):
        return LinearWrongElement.apply(x, self.weight, self.bias, self.index)


class StatefulSquare(torch.autograd.Function):
    """x^2 whose backward is right the first time and scaled by its call count after."""

    calls = 0

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x**2

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        StatefulSquare.calls += 1
        return 2 * x * g * StatefulSquare.calls


class SquareKeepsInput(torch.autograd.Function):
    """Saves x but reads a private copy in backward, so its graph is never really freed."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        ctx.copy = x.detach().clone()
        return x**2

    @staticmethod
    def backward(ctx, g):
        return 2 * ctx.copy * g


class ReverseGradient(torch.autograd.Function):
    """A gradient-reversal layer as public projects write it: saves x, never reads it.
    Correct: nothing it saved is needed, so a second backward has nothing to refuse."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        ctx.scale = 1.0
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        return -ctx.scale * g


class MeanRowsWrongDim(torch.autograd.Function):
    """x.mean(0) for an (n, m) matrix, whose backward divides by m: right only if n == m."""

    @staticmethod
    def forward(ctx, x):
        ctx.shape = x.shape
        return x.mean(0)

    @staticmethod
    def backward(ctx, g):
        n, m = ctx.shape
        return g.unsqueeze(0).expand(n, m) / m


class MeanLastSqueezed(torch.autograd.Function):
    """x.mean(-1) whose backward reads the width from x.squeeze(): wrong when the last
    dimension has size 1 (it then divides by the other dimension)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.mean(-1)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        width = x.squeeze().shape[-1] if x.squeeze().dim() else 1
        return g.unsqueeze(-1).expand_as(x) / width


def _scale_grad_output(x, g):
    g.mul_(2)  # mutates the caller's incoming gradient
    return x * g


def _nudge_input(x, g):
    result = 2 * x * g
    x.data.add_(1e-3)  # changes the saved input in place
    return result


def _write_grad(x, g):
    result = 2 * x * g
    x.grad = result.detach().clone()  # even under torch.autograd.grad
    return result


square_scales_grad_output = _function(lambda x: x**2, _scale_grad_output,
                                      "SquareScalesGradOutput")
square_nudges_input = _function(lambda x: x**2, _nudge_input, "SquareNudgesInput")
square_writes_grad = _function(lambda x: x**2, _write_grad, "SquareWritesGrad")


def _nan_at_3(x, g):
    grad = torch.cos(x) * g
    grad.view(-1)[3] = float("nan")  # a 0/0 in a hand-written formula
    return grad


sin_nan_at_3 = _function(torch.sin, _nan_at_3, "SinNaNAt3")
sin_slightly_large = _function(torch.sin, lambda x, g: torch.cos(x) * g * 1.001,
                               "SinSlightlyLarge")


def _two_outputs(backward, materialize: bool, name: str):
    """(2x, sum x^2) as a Function with the given backward(x, g0, g1); with materialize False,
    undefined output gradients reach it as None."""

    def forward(ctx, x):
        ctx.set_materialize_grads(materialize)
        ctx.save_for_backward(x)
        return 2 * x, (x * x).sum()

    def run_backward(ctx, g0, g1):
        return backward(ctx.saved_tensors[0], g0, g1)

    return type(name, (torch.autograd.Function,), {
        "forward": staticmethod(forward), "backward": staticmethod(run_backward)}).apply


def _drops_second(x, g0, g1):
    if g0 is None:  # like torch's native_group_norm for its mean output
        return None
    return 2 * g0 + (2 * x * g1 if g1 is not None else 0)


two_outputs = _two_outputs(lambda x, g0, g1: 2 * g0 + 2 * x * g1, True, "TwoOutputs")
two_outputs_ignores_second = _two_outputs(_drops_second, False, "TwoOutputsIgnoresSecond")
two_outputs_crash_on_none = _two_outputs(lambda x, g0, g1: 2 * g0 + 2 * x * g1, False,
                                         "TwoOutputsCrashOnNone")


def _view_flat(x, g):
    return (2 * x.reshape(-1) * g.view(-1)).view(x.shape)  # .view on the cotangent


def _raw_strides(x, g):
    contiguous = torch.empty(g.shape).stride()  # reads g's memory as if it were contiguous
    return 2 * x * g.as_strided(g.shape, contiguous)


square_views_cotangent = _function(lambda x: x**2, _view_flat, "SquareViewsCotangent")
square_ignores_strides = _function(lambda x: x**2, _raw_strides, "SquareIgnoresStrides")


class SquareWrongJvp(torch.autograd.Function):
    """x^2 with a right backward and a jvp that says 3x instead of 2x."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        ctx.save_for_forward(x)
        return x * x

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 2 * x * g

    @staticmethod
    def jvp(ctx, t):
        (x,) = ctx.saved_tensors
        return 3 * x * t


class SquareWithJvp(SquareWrongJvp):
    """x^2 with a right backward and a right jvp."""

    @staticmethod
    def jvp(ctx, t):
        (x,) = ctx.saved_tensors
        return 2 * x * t


class SquareWrongBackwardRightJvp(SquareWithJvp):
    """x^2 with a right jvp and a sign-flipped backward."""

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return -2 * x * g


class _TwoXNoJvp(torch.autograd.Function):
    """2x with a right backward and no jvp."""

    @staticmethod
    def forward(ctx, x):
        return 2 * x

    @staticmethod
    def backward(ctx, g):
        return 2 * g


class _TwoX(_TwoXNoJvp):
    """2x with a right backward and a jvp that says 3."""

    @staticmethod
    def jvp(ctx, t):
        return 3 * t


def _square_backward_through(inner, name):
    """x^2 with a right jvp, whose backward computes 2x with the Function `inner`."""

    def forward(ctx, x):
        ctx.save_for_backward(x)
        ctx.save_for_forward(x)
        return x * x

    def backward(ctx, g):
        return inner.apply(ctx.saved_tensors[0]) * g

    def jvp(ctx, t):
        return 2 * ctx.saved_tensors[0] * t

    return type(name, (torch.autograd.Function,), {
        "forward": staticmethod(forward), "backward": staticmethod(backward),
        "jvp": staticmethod(jvp)}).apply


square_backward_wrong_jvp = _square_backward_through(_TwoX, "SquareBackwardWrongJvp")
square_backward_no_jvp = _square_backward_through(_TwoXNoJvp, "SquareBackwardNoJvp")


class _TimesWrongVmap(torch.autograd.Function):
    """a * b, whose vmap staticmethod reverses b's batch: right alone, wrong under vmap."""

    @staticmethod
    def forward(a, b):
        return a * b

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        return g * b, g * a

    @staticmethod
    def vmap(info, in_dims, a, b):
        a = a if in_dims[0] is None else a.movedim(in_dims[0], 0)
        b = b if in_dims[1] is None else b.movedim(in_dims[1], 0).flip(0)
        return a * b, 0


class SquareFunc(torch.autograd.Function):
    """x^2 in the torch.func style: setup_context, a jvp, and a generated vmap rule."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x):
        return x * x

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0])
        ctx.save_for_forward(inputs[0])

    @staticmethod
    def backward(ctx, g):
        return 2 * ctx.saved_tensors[0] * g

    @staticmethod
    def jvp(ctx, t):
        return 2 * ctx.saved_tensors[0] * t


class SquareFuncNoVmapRule(SquareFunc):
    """SquareFunc without a vmap rule."""

    generate_vmap_rule = False


class SquareFuncWrongVmap(SquareFuncNoVmapRule):
    """SquareFunc whose vmap staticmethod multiplies each sample by its batch neighbour."""

    @staticmethod
    def vmap(info, in_dims, x):
        x = x.movedim(in_dims[0], 0)
        return x * x.flip(0), 0


class SquareFuncBatchedWrong(SquareFunc):
    """SquareFunc whose backward and jvp multiply through _TimesWrongVmap."""

    @staticmethod
    def backward(ctx, g):
        return _TimesWrongVmap.apply(2 * ctx.saved_tensors[0], g)

    @staticmethod
    def jvp(ctx, t):
        return _TimesWrongVmap.apply(2 * ctx.saved_tensors[0], t)


square_reads_item = _function(lambda x: x**2,
                              lambda x, g: 2 * x * g * (1.0 if g.abs().max().item() >= 0 else 0.0),
                              "SquareReadsItem")


def _low_precision_scaled(scale: float, name: str):
    """tanh whose backward is right in float64/float32 and `scale` times it in half precision."""

    def backward(x, g):
        factor = scale if x.dtype in (torch.float16, torch.bfloat16) else 1.0
        return (1 - torch.tanh(x) ** 2) * g * factor

    return _function(torch.tanh, backward, name)


tanh_low_precision_1pct = _low_precision_scaled(1.01, "TanhHalfPrecision1Percent")


def _one_wrong_in_half(x, g):
    grad = torch.cos(x) * g
    if x.dtype == torch.bfloat16:
        grad[7] = grad[7] * 1.5
    return grad


sin_one_wrong_in_bfloat16 = _function(torch.sin, _one_wrong_in_half, "SinOneWrongInBfloat16")


class MulComplex(torch.autograd.Function):
    """z * w for complex tensors, with torch's convention: grad_z = g * conj(w)."""

    @staticmethod
    def forward(ctx, z, w):
        ctx.save_for_backward(z, w)
        return z * w

    @staticmethod
    def backward(ctx, g):
        z, w = ctx.saved_tensors
        return g * w.conj(), g * z.conj()


class MulConjugateMissing(MulComplex):
    """z * w whose backward forgets the conjugates: g * w instead of g * conj(w)."""

    @staticmethod
    def backward(ctx, g):
        z, w = ctx.saved_tensors
        return g * w, g * z


class MulComplexTwiceTooLarge(MulComplex):
    """z * w whose backward is twice the right one: wrong, but not by a conjugate."""

    @staticmethod
    def backward(ctx, g):
        z, w = ctx.saved_tensors
        return 2 * g * w.conj(), 2 * g * z.conj()


class AbsSquaredConjugateMissing(torch.autograd.Function):
    """sum |z|^2, a real loss of complex z, whose backward gives 2 conj(z) instead of 2z."""

    @staticmethod
    def forward(ctx, z):
        ctx.save_for_backward(z)
        return (z * z.conj()).real.sum()

    @staticmethod
    def backward(ctx, g):
        (z,) = ctx.saved_tensors
        return 2 * g * z.conj()


def square_wrong_when_compiled(x):
    """x^2, whose compiled path (a stand-in for a separate compiled kernel) has a
    sign-flipped backward: eager is right, torch.compile is not."""
    if torch.compiler.is_compiling():
        return square_sign_flip(x)
    return x * x


def cube_wrong_second_when_compiled(x):
    """x^3, whose compiled path is linearized around a detached x: value and first
    derivative right, second derivative zero."""
    if torch.compiler.is_compiling():
        x0 = x.detach()
        return x0**3 + 3 * x0**2 * (x - x0)
    return x**3



class _TwiceComplexWrongSlope(_TwoXNoJvp):
    """2z whose backward says 3 (as conj(3) g): wrong when differentiated."""

    @staticmethod
    def backward(ctx, g):
        return 3 * g


class ComplexSquareWrongSecond(torch.autograd.Function):
    """z^2 for complex z: right gradient g * conj(2z), wrong second derivative."""

    @staticmethod
    def forward(ctx, z):
        ctx.save_for_backward(z)
        return z * z

    @staticmethod
    def backward(ctx, g):
        (z,) = ctx.saved_tensors
        return g * _TwiceComplexWrongSlope.apply(z).conj()


class SparseDenseMatmul(torch.autograd.Function):
    """S @ D for sparse COO S, with torch's masked gradient for S (its pattern only)."""

    @staticmethod
    def forward(ctx, s, d):
        ctx.save_for_backward(s, d)
        return torch.sparse.mm(s, d)

    @staticmethod
    def backward(ctx, g):
        s, d = ctx.saved_tensors
        return (g @ d.T).sparse_mask(s), torch.sparse.mm(s.t(), g)


class SparseDenseMatmulWrongValues(SparseDenseMatmul):
    """S @ D whose gradient for S's values is 1.5 times too large."""

    @staticmethod
    def backward(ctx, g):
        s, d = ctx.saved_tensors
        return (g @ d.T).sparse_mask(s) * 1.5, torch.sparse.mm(s.t(), g)
