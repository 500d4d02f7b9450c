"""Pieces the checks share: the float64 scalarized function, the analytic gradient, seeds."""

from __future__ import annotations

import functools
import inspect
import math
from dataclasses import replace

import torch

from harness import memo
from harness.autodiff import vjp
from harness.diagnose.determinism import raise_if_not_deterministic
from harness.diagnose.mismatch import IGNORES_COTANGENT, missing_phrase, summed_gradient_phrase
from harness.inputs import CaseError, Example, as_outputs
from harness.tolerances import NOISE_DRAWS, fd_rounding


def check_generator(ex: Example, check: str) -> torch.Generator:
    """Directions and weights for one check, reproducible from the example's seed."""
    from harness.inputs import item_seed

    return torch.Generator().manual_seed(item_seed(ex.seed, f"{ex.case.name}|{check}", ex.dtype))


def gaussian(shape, gen: torch.Generator, to=None) -> torch.Tensor:
    """A float64 N(0, 1) tensor of `shape` drawn from `gen` on the CPU (a seed gives the same
    values on every device), then `.to(to)` where given: a device, or a tensor whose device and
    dtype it takes. The random weights, directions and jitters the checks draw per input."""
    drawn = torch.randn(shape, generator=gen, dtype=torch.float64)
    return drawn if to is None else drawn.to(to)


@functools.lru_cache(maxsize=32)
def _first_order_key(settings) -> tuple:
    return "first-order wrong", replace(settings, verdict_only=False)


def note_first_order(ex: Example, settings, wrong: list[str]) -> None:
    """The fd family's verdict: the checked inputs whose first-order gradient is wrong, kept
    for the families after it on the same example (harness.memo)."""
    memo.keep(ex, _first_order_key(settings), list(wrong))


def first_order_noted(ex: Example, settings) -> list[str] | None:
    """note_first_order's inputs for this very example and settings; None if not noted."""
    return memo.recall(ex, _first_order_key(settings))


def rounding_noise(ex: Example, compute, base: list[torch.Tensor]) -> list[torch.Tensor] | None:
    """Rounding noise of `compute(leaves)` in the dtype under test, one scale per tensor.

    The inputs are jittered by a few dozen ulps; the noise is how much the low-precision
    result's change differs from the float64 result's change over the same step:
    |(g(x') - g(x)) - (g64(x') - g64(x))|. The true change cancels, the rounding (now
    decorrelated between x and x') remains, and a systematic bug cancels too, so it cannot
    excuse itself. Taken per tensor: rounding is quantized, and one element may sit still
    while its neighbours move. Plus, per element, what no jitter moves (saved_rounding). None
    in float64, where rounding is far below every tolerance.
    """
    if ex.dtype == ex.reference_dtype:
        return None
    noise = [torch.zeros_like(b, dtype=torch.float64) for b in base]
    base64 = compute(ex.leaves(ex.reference_dtype))
    for drifts in rounding_drifts(ex, compute, base, NOISE_DRAWS, base64=base64):
        for n, drift in zip(noise, drifts):
            torch.maximum(n, drift.abs(), out=n)
    saved = saved_rounding(ex, compute, exact=base64)
    return [torch.full_like(n, float(n.max()) if n.numel() else 0.0) + s.to(n.device)
            for n, s in zip(noise, saved)]


def saved_in(dtype: torch.dtype):
    """Autograd's saved float64 tensors rounded to `dtype` (what a low-precision run keeps)."""

    def pack(t: torch.Tensor) -> torch.Tensor:
        if t.dtype != torch.float64:
            return t
        return t.detach().to(dtype).to(torch.float64)

    return torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t)


def _saved_perturbed(dtype: torch.dtype, seed: int, sign: float):
    """Each saved float64 tensor rounded to `dtype`, then moved, element by element, by up to
    half an ulp of its largest magnitude (uniform steps drawn from `seed`, times `sign`; never
    across or off 0): the error a low-precision kernel leaves on an element beside larger ones
    (log_softmax's 1 + 1e-7 summed to 1 in float32 leaves its largest output at 0, not
    -1e-7), which rounding the element alone does not reach."""
    gen = torch.Generator().manual_seed(seed)

    def pack(t: torch.Tensor) -> torch.Tensor:
        if t.dtype != torch.float64 or not t.numel() or t.layout != torch.strided:
            return t
        t = t.detach().to(dtype).to(torch.float64)  # rounded, as saved_in
        half_ulp = torch.finfo(dtype).eps / 2 * float(t.abs().max())
        if not half_ulp > 0 or half_ulp == float("inf"):
            return t
        step = torch.rand(t.shape, generator=gen, dtype=torch.float64).mul_(2).sub_(1)
        moved = t + (sign * half_ulp) * step.to(t.device)
        # no element changes sign or leaves 0: rounding never does, and a sign is often a
        # mask (relu's saved output) whose flip would change the gradient wholesale
        return torch.where(torch.sign(moved) == torch.sign(t), moved, t)

    return torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t)


def saved_rounding(ex: Example, compute, exact=None) -> list[torch.Tensor]:
    """Per element, how far the error a low-precision run leaves on the tensors autograd saves
    moves `compute(leaves)` in float64: each saved tensor rounded to the dtype under test and
    moved by up to half an ulp of its largest magnitude, by one random draw and by its
    opposite (an element that one of them would carry across 0 moves under the other).
    `exact`: compute at the float64 inputs, where the caller has it. No jitter of the inputs
    measures this where a saved value saturates: softmax(30 x) keeps y = 1 exactly in
    float32, so y(1 - y) is 0 in the backward and its derivatives, and a correct float32
    gradient or double backward misses terms that float64 finite differences read (its
    bfloat16 form: harness.checks.precision)."""
    exact = compute(ex.leaves(ex.reference_dtype)) if exact is None else exact
    exact = [_dense(e).double() for e in exact]
    worst = [torch.zeros_like(e) for e in exact]
    hooks = [_saved_perturbed(ex.dtype, ex.seed, 1.0), _saved_perturbed(ex.dtype, ex.seed, -1.0)]
    for hook in hooks:
        with hook:
            moved = compute(ex.leaves(ex.reference_dtype))
        for w, m, e in zip(worst, moved, exact):
            torch.maximum(w, (_dense(m).double() - e).abs(), out=w)
    return worst


def _dense(t: torch.Tensor) -> torch.Tensor:
    t = t.detach()
    return t.to_dense() if t.layout != torch.strided else t


def on_demand(compute):
    """`compute()` run once, when first asked for: the rounding noise that only a doubtful
    verdict needs (every allowance grows with it, so a verdict that passes without it
    stands)."""
    kept = []

    def value():
        if not kept:
            kept.append(compute())
        return kept[0]

    return value


def rounding_drifts(ex: Example, compute, base: list[torch.Tensor], draws: int,
                    compute64=None, base64=None):
    """Per jitter of the inputs, (g(x') - g(x)) - (g64(x') - g64(x)) for each tensor of
    `compute(leaves)`: the difference of two independent roundings (see rounding_noise).
    `compute64` is the float64 side when it is other code (a kernel's reference); `base64`
    its value at the float64 inputs, where the caller has it."""
    gen = check_generator(ex, "noise")
    compute64 = compute if compute64 is None else compute64
    if base64 is None:
        base64 = compute64(ex.leaves(ex.reference_dtype))
    for _ in range(draws):
        moved = ex.leaves(jitter=gen)
        moved64 = tuple(
            x.detach().to(ex.reference_dtype).requires_grad_(x.requires_grad)
            if x.is_floating_point() else x
            for x in moved)
        yield [(low.detach().double() - b.detach().double()) - (high.detach() - b64.detach())
               for low, high, b, b64 in zip(compute(moved), compute64(moved64), base, base64)]


def scalarized(terms: list[torch.Tensor]) -> tuple[float, float]:
    """(sum of all terms, magnitude): the magnitude sets the finite-difference rounding error,
    |sum| plus the quadrature sum of the terms, whose roundings are independent."""
    if len(terms) == 1:  # the usual case: one tensor, two reductions, one sync
        both = torch.stack((terms[0].sum(), terms[0].square().sum())).tolist()
        return both[0], abs(both[0]) + both[1] ** 0.5
    value = float(sum(t.sum() for t in terms))
    return value, abs(value) + float(sum(t.square().sum() for t in terms)) ** 0.5


def _scalarizer(cotangents):
    """outs -> scalarized <v, outs>. One real strided output, the usual case, is read as two
    dot products against the cotangent flattened once: a reading's whole cost beside the
    operator is then a few microseconds."""
    flat = [v.double().reshape(-1) for v in cotangents]
    squares = [f * f for f in flat]

    def of(outs) -> tuple[float, float]:
        if len(outs) == 1 and outs[0].layout == torch.strided and not outs[0].is_complex():
            out = outs[0].reshape(-1)
            out = out if out.dtype == torch.float64 else out.double()
            value = float(torch.dot(out, flat[0]))
            return value, abs(value) + float(torch.dot(out * out, squares[0])) ** 0.5
        return scalarized([o.double() * v.double() for o, v in zip(outs, cotangents)])

    return of


def phi_of(ex: Example, cotangents=None):
    """xs -> scalarized <v, fn(xs)>: what finite differences perturb."""
    cotangents = ex.cotangents if cotangents is None else cotangents
    shapes = [v.shape for v in cotangents]
    scalarize = _scalarizer(cotangents)

    def phi(xs):
        with torch.no_grad():
            outs = as_outputs(ex.fn(*xs))
            if len(outs) != len(shapes) or any(o.shape != s for o, s in zip(outs, shapes)):
                raise CaseError(_shape_changed(ex, outs, cotangents))
            return scalarize(outs)

    return phi


def _shape_changed(ex: Example, outs, cotangents) -> str:
    shapes = [tuple(o.shape) for o in outs]
    before = [tuple(v.shape) for v in cotangents]
    return (f"fn's output shape changes from call to call: "
            f"{before} at the example's inputs, {shapes} at inputs moved by a "
            "finite-difference step; its output shape must depend only on its inputs' shapes")


def phi_at_inputs(ex: Example) -> tuple[float, float] | None:
    """phi_of(ex) at the example's reference inputs, from the forward its build kept
    (inputs.build_example, harness.memo): one forward call fewer per finite-difference
    pass. None where none was kept."""
    outs = memo.recall(ex, "outputs")
    return None if outs is None else _scalarizer(ex.cotangents)(outs)


MEASURED_NOISE_DRAWS = 1
MEASURED_NOISE_ULPS = 4


def with_measured_rounding(phi, ex: Example, gen: torch.Generator, xs=None):
    """phi whose reported magnitude is at least its measured rounding noise (over the assumed
    relative rounding), so finite differences of a function computed with cancellation
    (corrcoef, normalize near zero, gradients of those) do not read noise as a derivative.

    The noise is |phi(x') - phi(x)| for inputs moved by a few ulps: the true change over such
    a step is ~1e-11 of the derivative, below every tolerance, and the reference is float64
    code the candidate gradient cannot influence, so a wrong gradient cannot excuse itself.
    `xs`: the example's reference inputs, where the caller has them.
    """
    raise_if_not_deterministic(ex)  # else fn's own randomness would read as rounding
    xs = ex.reference_inputs() if xs is None else xs
    value, _ = phi(xs)
    worst = 0.0
    for _ in range(MEASURED_NOISE_DRAWS):
        moved = list(xs)
        for i in ex.wrt:
            x = xs[i]
            r = gaussian(x.shape, gen, x.device)
            scale = MEASURED_NOISE_ULPS * torch.finfo(x.dtype).eps
            moved[i] = (x.double() * (1 + scale * r)).to(x.dtype)
        again, _ = phi(tuple(moved))
        if math.isfinite(again) and math.isfinite(value):
            worst = max(worst, abs(again - value))
    floor = worst / fd_rounding(xs[ex.wrt[0]].dtype) if ex.wrt else 0.0

    def measured(inputs):
        v, magnitude = phi(inputs)
        return v, max(magnitude, floor)

    return measured


def _check_grad_signature(ex: Example, count: int) -> None:
    """A CaseError saying how grad is called, when it cannot take `count` arguments (the
    TypeError would otherwise be raised from the harness's line, blaming it)."""
    try:
        inspect.signature(ex.case.grad).bind(*range(count))
    except ValueError:  # no signature to read (a builtin): let the call speak
        return
    except TypeError as exc:
        how = ("grad(*inputs), returning d out / d input per checked input" if ex.scalar_output
               else "grad(*inputs, v) (v: the cotangent, shaped like the output; a tuple of "
               "them for several outputs), returning the vector-Jacobian product vᵀJ per "
               "checked input")
        raise CaseError(f"grad cannot be called with {count} "
                        f"argument(s) ({exc}): for this output it is called as {how}") from None


def analytic_gradient(ex: Example) -> list[torch.Tensor]:
    """The case's grad at the float64 inputs, as a vᵀJ, validated against the inputs."""
    xs = ex.reference_inputs()
    v = [c.to(ex.reference_dtype) for c in ex.cotangents]
    args = xs if ex.scalar_output else (*xs, v[0] if len(v) == 1 else tuple(v))
    _check_grad_signature(ex, len(args))
    result = ex.case.grad(*args)
    grads = list(result) if isinstance(result, (tuple, list)) else [result]
    if len(grads) != len(ex.wrt):
        raise CaseError(
            f"grad returned {len(grads)} tensor(s) but "
            f"{len(ex.wrt)} input(s) are checked ({', '.join(ex.labels[i] for i in ex.wrt)})"
        )
    out = []
    for g, pos in zip(grads, ex.wrt):
        g = torch.as_tensor(g, device=ex.device)
        if not (g.is_floating_point() or g.is_complex()):
            raise CaseError(
                f"grad for {ex.labels[pos]} has dtype {g.dtype}; a "
                "gradient is floating point (an integer result truncates it)")
        g = g.double()
        if g.shape != xs[pos].shape:
            raise CaseError(
                f"grad for {ex.labels[pos]} has shape {tuple(g.shape)}, "
                f"the input has {tuple(xs[pos].shape)}"
            )
        out.append(g * v[0].double() if ex.scalar_output else g)
    return out


def autograd_hints(ex: Example, grads: list[torch.Tensor], missing: list[int],
                   allowed: list[torch.Tensor]) -> list[str]:
    """Hints about the backward itself: None gradients, and a cotangent that is ignored."""
    hints = []
    if missing:
        hints.append(missing_phrase([ex.labels[ex.wrt[k]] for k in missing]))
    doubled = [2 * v for v in ex.cotangents]
    grads2, _ = vjp(ex, ex.leaves(), cotangents=doubled)
    nonzero = any(bool((g != 0).any()) for g in grads)
    same = all(bool(((g2 - g).abs() <= a.to(g.device)).all())
               for g, g2, a in zip(grads, grads2, allowed))
    if nonzero and same:
        hints.append(IGNORES_COTANGENT)
    return hints + summed_gradients(ex)


def summed_gradients(ex: Example) -> list[str]:
    """A custom Function's backward that returns a gradient shaped unlike its input, which
    autograd sums down to the input's shape without an error where the input broadcasts to
    it: the backward is called directly, as the engine would, and its raw shapes read. Only
    where fn's outputs are all the Function's outputs and its inputs are the checked leaves."""
    leaves = ex.leaves()
    try:
        with torch.enable_grad():
            outs = as_outputs(ex.fn(*leaves))
    except Exception:  # the families' own calls report fn's errors
        return []
    given: dict = {}
    for out, v in zip(outs, ex.cotangents):
        if out.grad_fn is not None and hasattr(out.grad_fn, "_forward_cls"):
            given.setdefault(out.grad_fn, {})[out.output_nr] = v.to(out.dtype)
    found = []
    for node, grads in given.items():
        if sorted(grads) != list(range(len(grads))):
            continue
        try:
            raw = node.apply(*(grads[i] for i in range(len(grads))))
        except Exception:  # the engine's own call will say what is wrong
            continue
        for g, (edge, _) in zip(raw if isinstance(raw, tuple) else (raw,), node.next_functions):
            leaf = getattr(edge, "variable", None)
            position = next((i for i, x in enumerate(leaves) if x is leaf), None)
            if isinstance(g, torch.Tensor) and position is not None and g.shape != leaf.shape:
                found.append(summed_gradient_phrase(node._forward_cls.__name__,
                                                    ex.labels[position], tuple(g.shape),
                                                    tuple(leaf.shape)))
    return found
