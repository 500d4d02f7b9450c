"""Draw the concrete inputs of a case for one (dtype, device, seed): an Example.

Values are drawn in float64 from the case's Input specs with a seeded generator, then cast to
the dtype under test; the float64 reference is evaluated on exactly those (cast-back) values.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from hypothesis import strategies as st

from harness import memo
from harness.case import Case, Input, TrainingCase
from harness.numerics.differences import all_finite
from harness.tolerances import FLOAT8, NOISE_JITTER_MAX, NOISE_JITTER_ULPS


class CaseError(Exception):
    """The case itself is broken (bad inputs, bad output): an error row, not a failure."""


@dataclass
class Example:
    """One concrete run of a case: inputs, which of them are checked, and the cotangent."""

    case: Case
    fn: Callable
    dtype: torch.dtype
    device: str
    seed: int
    inputs: tuple[torch.Tensor, ...]
    labels: tuple[str, ...]
    wrt: tuple[int, ...]
    cotangents: tuple[torch.Tensor, ...]
    scalar_output: bool
    safe_radius: tuple[torch.Tensor | None, ...]
    reference_dtype: torch.dtype = torch.float64
    note: str = ""

    def leaves(
        self, dtype: torch.dtype | None = None, jitter: torch.Generator | None = None
    ) -> tuple[torch.Tensor, ...]:
        """Fresh leaf copies of the inputs in `dtype` (default: the dtype under test).

        With `jitter`, floating inputs move by a few units in the last place, at random.
        """
        dtype = dtype or self.dtype
        out = []
        for i, x in enumerate(self.inputs):
            y = cast(x.detach(), dtype)
            if jitter is not None and y.is_floating_point():
                r = torch.randn(y.shape, generator=jitter, dtype=torch.float64).to(y.device)
                ulp = min(NOISE_JITTER_ULPS * torch.finfo(dtype).eps, NOISE_JITTER_MAX)
                y = (y.double() * (1 + ulp * r)).to(dtype)
            if i in self.wrt:
                y = y.clone().requires_grad_(True)
            out.append(y)
        return tuple(out)

    def reference_inputs(self) -> tuple[torch.Tensor, ...]:
        """The inputs in the reference dtype (float64 where fn runs in it), detached."""
        return tuple(cast(x.detach(), self.reference_dtype) for x in self.inputs)


def reparametrized(ex: Example, fn: Callable, inputs: tuple, changed: set[int],
                   **more) -> Example:
    """`ex` seen through another parametrization: `fn` takes `inputs`, which differ from the
    originals at positions `changed` (complex as real pairs, sparse as its values). The
    case's analytic grad and the safe radius of those inputs are of the originals, so they
    are dropped; `more` replaces other fields (dtype, labels, cotangents)."""
    return replace(ex, case=replace(ex.case, fn=fn, grad=None), fn=fn, inputs=inputs,
                   safe_radius=tuple(None if i in changed else r
                                     for i, r in enumerate(ex.safe_radius)), **more)


def cast(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """x in `dtype`'s precision: real tensors stay real, complex ones complex, others as is."""
    if x.is_complex():
        return x.to(dtype if dtype.is_complex else dtype.to_complex())
    if x.is_floating_point():
        return x.to(dtype.to_real())
    return x


def differentiable(x: torch.Tensor) -> bool:
    return x.is_floating_point() or x.is_complex()


def item_seed(seed: int, case_name: str, dtype: torch.dtype) -> int:
    """A seed per (run seed, case, dtype), independent of run order (so xdist agrees)."""
    return (seed * 1_000_003 + zlib.crc32(f"{case_name}|{dtype}".encode())) % (2**31)


def draw_sizes(case: Case, gen: torch.Generator) -> dict[str, int]:
    """Draw one value for each named size from its declared range."""
    return {
        name: int(torch.randint(lo, hi + 1, (1,), generator=gen))
        for name, (lo, hi) in sorted(case.sizes.items())
    }


def draw_tensor(spec: Input, sizes: dict[str, int], gen: torch.Generator) -> torch.Tensor:
    """Draw a float64 tensor from `spec`, keeping `margin` away from every value in `avoid`."""
    shape = tuple(sizes[d] if isinstance(d, str) else d for d in spec.shape)
    low, high = spec.draw_low, spec.high
    x = low + (high - low) * torch.rand(shape, generator=gen, dtype=torch.float64)
    for value in spec.avoid:
        close = (x - value).abs() < spec.margin
        if close.any():
            side = torch.where(x[close] >= value, 1.0, -1.0).to(torch.float64)
            x[close] = value + side * spec.margin * (1.5 + torch.rand(
                int(close.sum()), generator=gen, dtype=torch.float64))
    return x.clamp(low, high)


def _safe_radius(spec: Input | None, x: torch.Tensor) -> torch.Tensor | None:
    """Distance from each element to the nearest kink or domain edge the spec declares."""
    if spec is None:
        return None
    radius = None
    if spec.positive:
        radius = x.abs()
    for value in spec.avoid:
        d = (x - value).abs()
        radius = d if radius is None else torch.minimum(radius, d)
    return radius


def _draw_cotangent(out: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random cotangent: mixed signs, never all ones, so ignoring grad_output shows."""
    if out.is_complex():
        return torch.randn(out.shape, generator=gen, dtype=torch.complex128)
    if out.dim() == 0:
        magnitude = 0.5 + torch.rand((), generator=gen, dtype=torch.float64)
        sign = 1.0 if torch.rand((), generator=gen) < 0.5 else -1.0
        return sign * magnitude
    return torch.randn(out.shape, generator=gen, dtype=torch.float64)


def as_outputs(result) -> tuple[torch.Tensor, ...]:
    """Normalize fn's result to a tuple of floating tensors, or raise CaseError."""
    outs = result if isinstance(result, (tuple, list)) else (result,)
    for k, out in enumerate(outs):
        if not isinstance(out, torch.Tensor):
            raise CaseError(
                f"fn returned {type(out).__name__} at output {k}; "
                "return a tensor or a tuple of tensors"
            )
        if not (out.is_floating_point() or out.is_complex()):
            raise CaseError(
                f"output {k} has dtype {out.dtype}, which carries no "
                "gradient; return a floating-point tensor"
            )
    return tuple(outs)


def draw_example(case: Case, dtype: torch.dtype, device: str, seed: int,
                 sizes: dict[str, int] | None = None, keep_forward: bool = False) -> Example:
    """Draw the inputs and cotangent of `case` for one dtype and device; `sizes` replaces
    the drawn value of the sizes it names (the bench times chosen sizes); `keep_forward`: see
    build_example."""
    gen = torch.Generator().manual_seed(item_seed(seed, case.name, dtype))
    if callable(case.inputs):
        raw = tuple(case.inputs(gen))
        if not raw or not all(isinstance(t, torch.Tensor) for t in raw):
            raise CaseError("inputs callable must return a tuple of tensors")
        return build_example(case, raw, dtype, device, seed, gen, keep_forward)
    sizes = {**draw_sizes(case, gen), **(sizes or {})}
    tensors = [draw_tensor(s, sizes, gen) for s in case.input_specs]
    if dtype.is_complex:  # checked inputs get an imaginary part drawn from the same range
        tensors = [torch.complex(t, draw_tensor(s, sizes, gen)) if s.requires_grad else t
                   for t, s in zip(tensors, case.input_specs)]
    return build_example(case, tensors, dtype, device, seed, gen, keep_forward)


def input_labels(case: Case, count: int) -> list[str]:
    """What reports call each of `count` inputs: the spec's or input_names' name, else
    `input i`."""
    if callable(case.inputs):
        names = case.input_names
        return [names[i] if i < len(names) else f"input {i}" for i in range(count)]
    return [s.name or f"input {i}" for i, s in enumerate(case.input_specs)]


def build_example(case: Case, base, dtype: torch.dtype, device: str, seed: int,
                  gen: torch.Generator, keep_forward: bool = False) -> Example:
    """An Example from given input tensors (drawn, searched or loaded); `gen` draws the
    cotangent. For spec-based cases the specs say which inputs are checked and where the
    domain edges are; otherwise tensors with requires_grad are (all floating ones if none).

    With `keep_forward` (the example the families share), the forward run here at the
    reference inputs is kept for them (harness.memo): its outputs are the centre of every
    finite difference, and in float64 it runs on fresh leaves with autograd on, so the
    example's one vjp (autodiff.example_vjp) differentiates that graph instead of running
    fn again."""
    specs: list[Input | None]
    if callable(case.inputs):
        marked = [i for i, t in enumerate(base) if differentiable(t) and t.requires_grad]
        wrt = marked or [i for i, t in enumerate(base) if differentiable(t)]
        specs = [None] * len(base)
    else:
        specs = list(case.input_specs)
        wrt = [i for i, s in enumerate(specs) if s.requires_grad]
    labels = input_labels(case, len(base))
    base = [cast(t.detach(), torch.float64) for t in base]
    if not wrt:
        raise CaseError("no floating-point input to differentiate")
    inputs = tuple(cast(t, dtype).to(device) for t in base)
    radius = tuple(
        _safe_radius(s, x.double()) if s is not None and not x.is_complex() else None
        for s, x in zip(specs, inputs)
    )
    reference_dtype, note = (torch.complex128 if dtype.is_complex else torch.float64), ""
    fn = case.fn
    graph = None
    if keep_forward and dtype == reference_dtype:
        graph = _forward_with_graph(case, inputs, wrt)
    # a float8 kernel (the reference family alone runs it) need not run on float64 inputs:
    # its reference's outputs shape the cotangents
    forward = case.reference if dtype in FLOAT8 else case.fn
    with torch.no_grad():
        try:
            result = (graph[1] if graph is not None
                      else forward(*(cast(x, torch.float64) for x in inputs)))
        except Exception as exc:
            if dtype in (torch.float64, torch.complex128):
                raise
            result = case.fn(*inputs)  # raises the case's own error if it cannot run at all
            fn, reference_dtype, note = _reference_fn(case, inputs, dtype, result, exc)
        outs = as_outputs(result)
    for k, out in enumerate(outs):
        dense = out.to_dense() if out.is_sparse else out
        if all_finite(dense):
            continue
        bad = ~torch.isfinite(dense)
        if bad.any():
            where = [int(i) for i in bad.flatten().nonzero().flatten()[:3]]
            raise CaseError(
                f"output {k} is not finite at these inputs ({int(bad.sum())}"
                f" of {out.numel()} elements, first at flat index {where}): a gradient there "
                "cannot be checked; draw inputs inside the function's domain")
    cotangents = tuple(_draw_cotangent(o, gen).to(device) for o in outs)
    ex = Example(
        case=case, fn=fn, dtype=dtype, device=device, seed=seed, inputs=inputs,
        labels=tuple(labels), wrt=tuple(wrt), cotangents=cotangents,
        scalar_output=len(outs) == 1 and outs[0].dim() == 0, safe_radius=radius,
        reference_dtype=reference_dtype, note=note,
    )
    if keep_forward and fn is case.fn and forward is case.fn:  # fn's own outputs only
        memo.keep(ex, "outputs", tuple(o.detach() for o in outs))
    if graph is not None:
        ex.__dict__["_carries_graph"] = any(o.requires_grad for o in graph[1])
        if ex.__dict__["_carries_graph"]:
            memo.keep(ex, "graph", graph)
    return ex


def _forward_with_graph(case: Case, inputs, wrt) -> tuple[tuple, tuple] | None:
    """(leaves, outputs) of fn run with autograd on fresh leaves of `inputs` (as
    Example.leaves makes them); None where that raises (the plain forward then speaks)."""
    leaves = tuple(x.detach().clone().requires_grad_(True) if i in wrt else x
                   for i, x in enumerate(inputs))
    try:
        with torch.enable_grad():
            return leaves, as_outputs(case.fn(*leaves))
    except Exception:
        return None


def _reference_fn(case: Case, inputs, dtype: torch.dtype, result, exc: Exception):
    """(fn, reference dtype, note) where fn does not run on float64 inputs: fn with every
    torch call promoted to float64 (harness.promote) when that runs and agrees with the dtype
    under test to its precision, else fn itself with references in that dtype."""
    from harness.promote import float64_calls

    why = f"{type(exc).__name__}: {str(exc)[:80]}"
    promoted = float64_calls(case.fn)
    try:
        wide = as_outputs(promoted(*(cast(x, torch.float64) for x in inputs)))
        low = as_outputs(result)
        agree = len(wide) == len(low) and all(
            w.dtype in (torch.float64, torch.complex128) and w.shape == o.shape
            and bool(torch.allclose(w, o.to(w.dtype), rtol=1e-2, atol=1e-2 * float(
                o.abs().max()) if o.numel() else 0.0, equal_nan=True))
            for w, o in zip(wide, low))
    except Exception as again:
        agree, why = False, f"{why}; promoted: {type(again).__name__}: {str(again)[:80]}"
    if agree:
        return promoted, torch.complex128 if dtype.is_complex else torch.float64, (
            f"fn does not run on float64 inputs alone ({why}); references run it with every "
            "floating tensor it uses promoted to float64")
    return case.fn, dtype, (
        f"fn does not run in float64 ({why}); references are evaluated in "
        f"{str(dtype).removeprefix('torch.')}, with coarser finite differences")


@dataclass
class TrainingExample:
    """One concrete run of a TrainingCase: its model (initialised from the seed) and batch."""

    case: TrainingCase
    dtype: torch.dtype
    device: str
    seed: int
    model: torch.nn.Module
    batch: tuple[torch.Tensor, ...]


def draw_training_example(case: TrainingCase, dtype: torch.dtype, device: str,
                          seed: int) -> TrainingExample:
    """The case's model, built under `seed` without moving the global random state, and its
    batch drawn from a generator with the same seed, in `dtype` on `device`."""
    torch_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)  # the model's own initialisation, reproducibly
        model = case.model().to(dtype=dtype, device=device)
    finally:
        torch.random.set_rng_state(torch_state)
    gen = torch.Generator().manual_seed(seed)
    batch = tuple(t.to(dtype=dtype) if t.is_floating_point() else t for t in case.batch(gen))
    return TrainingExample(case=case, dtype=dtype, device=device, seed=seed, model=model,
                           batch=tuple(t.to(device) for t in batch))


SMALL = 8
"""Searched tensors up to this many elements get hypothesis-drawn (shrinkable) values; larger
ones get SMALL of them (their first elements) and the rest from a seeded generator, so their
shape, seed and first values shrink. A larger tensor therefore always costs hypothesis more
choices than a smaller one, and the shrinker goes below SMALL elements (with one seed alone
for the rest, 65 elements looked 'simpler' to it than 64 floats)."""


@dataclass(frozen=True)
class Drawn:
    """One searched input: sizes, tensors (float64), layouts and the cotangent seed."""

    sizes: dict
    tensors: tuple[torch.Tensor, ...]
    transposed: tuple[bool, ...]
    seed: int

    def describe(self, labels) -> str:
        parts = [f"sizes {self.sizes}"] if self.sizes else []
        for label, t, flip in zip(labels, self.tensors, self.transposed):
            t = t.detach()  # a user's tensor that requires grad: reading it warns otherwise
            values = (", ".join(f"{v:.6g}" for v in t.flatten().tolist())
                      if t.numel() <= 8 else f"{t.numel()} values in [{float(t.min()):.4g}, "
                      f"{float(t.max()):.4g}]")
            layout = ", transposed layout" if flip else ""
            parts.append(f"{label}: shape {tuple(t.shape)}{layout} = [{values}]")
        return "; ".join(parts)


def _elements(spec: Input):
    values = st.floats(spec.draw_low, spec.high, allow_nan=False, allow_infinity=False)
    if spec.avoid:
        values = values.filter(lambda v: all(abs(v - a) >= spec.margin for a in spec.avoid))
    return values


def _searched_tensor(draw, spec: Input, sizes: dict) -> torch.Tensor:
    shape = tuple(sizes[d] if isinstance(d, str) else d for d in spec.shape)
    n = math.prod(shape)
    head = draw(st.lists(_elements(spec), min_size=min(n, SMALL), max_size=min(n, SMALL)))
    if n <= SMALL:
        return torch.tensor(head, dtype=torch.float64).reshape(shape)
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    t = draw_tensor(spec, sizes, gen)
    t.view(-1)[:SMALL] = torch.tensor(head, dtype=torch.float64)
    return t


@st.composite
def _drawn(draw, case: Case) -> Drawn:
    cotangent_seed = draw(st.integers(0, 2**31 - 1))
    if callable(case.inputs):
        gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
        tensors = tuple(case.inputs(gen))
        return Drawn({}, tensors, (False,) * len(tensors), cotangent_seed)
    sizes = {name: draw(st.integers(lo, hi)) for name, (lo, hi) in sorted(case.sizes.items())}
    tensors, flips = [], []
    for spec in case.input_specs:
        t = _searched_tensor(draw, spec, sizes)
        flip = t.dim() >= 2 and draw(st.booleans())
        tensors.append(t.transpose(-1, -2).contiguous().transpose(-1, -2) if flip else t)
        flips.append(flip)
    return Drawn(sizes, tuple(tensors), tuple(flips), cotangent_seed)


def strategy(case: Case) -> st.SearchStrategy[Drawn]:
    """Hypothesis strategy of inputs for `case`: its named sizes over their ranges, values
    over the declared domain (edges included, kinks avoided), transposed layouts and the
    cotangent seed; or its inputs callable, reseeded. (`st.composite` reads its function's
    source to check it draws: 1-2 ms, so it decorates once, here, not once per search.)"""
    return _drawn(case)
