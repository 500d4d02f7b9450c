"""Batched gradients (gradcheck's check_batched_grad and check_batched_forward_grad) and vmap
over inputs.

vmap runs code once on a whole batch; each op needs a batching rule, and a custom Function
needs `generate_vmap_rule = True` or a `vmap` staticmethod. A wrong rule is silent: only the
loop of single calls shows it. So each check compares a batched computation with that loop,
element by element, under the dtype's tolerance:

- batched-grad: B cotangents at once, through `torch.func.vmap` over `autograd.grad` (where a
  custom Function called inside the backward uses its vmap rule) and through
  `autograd.grad(is_grads_batched=True)` (torch's own path, as in jacobian(vectorize=True));
- batched-forward-ad: B tangents at once, through the dual-tensor forward AD under vmap (the
  path gradcheck takes) and `torch.func.vmap(torch.func.jvp)` where fn runs under torch.func;
- vmap: fn and its vjp under `torch.func.vmap` over a batch of nearby inputs, where a custom
  Function's own vmap rule is what runs.

Code that cannot run batched is a skip that says what to add, never a failure.
"""

from __future__ import annotations

import warnings
from functools import partial

import torch
import torch.autograd.forward_ad as fwAD
from torch._vmap_internals import _vmap

from harness.autodiff import of_checked
from harness.case import library_custom_op
from harness.checks.common import check_generator, gaussian
from harness.checks.spec import Check, Finding
from harness.diagnose import transforms
from harness.diagnose.mismatch import compare
from harness.inputs import Example, as_outputs
from harness.numerics.allowance import allowance
from harness.tolerances import tolerance_for

BATCH = 2
"""Cotangents, tangents or inputs per batch."""

INPUT_JITTER = 1e-3
"""Relative spread of the batched inputs around the drawn ones: far inside every margin."""


def _zeros_for_none(grads, targets) -> list[torch.Tensor]:
    return [torch.zeros_like(t) if g is None else g for g, t in zip(grads, targets)]


def _run_batched(paths: dict, notes: list[str]) -> dict:
    """Run each batched computation; a failure becomes a note. Slow fallbacks are noted too."""
    results = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for name, run in paths.items():
            try:
                results[name] = run()
            except Exception as exc:
                notes.append(transforms.batched_raises_phrase(name, exc))
    fallbacks = sorted({transforms.fallback_op(str(w.message)) for w in caught} - {None})
    if fallbacks:
        notes.append(transforms.vmap_fallback_phrase(fallbacks))
    return results


def _against_loop(ex: Example, labels, loop, results: dict, what: str) -> list[str]:
    """Each batched result against the stacked loop, element by element."""
    tol = tolerance_for(ex.dtype, ex.case.tolerances)
    problems = []
    for path, batched in results.items():
        for label, want, got in zip(labels, loop, batched):
            if got.shape != want.shape:
                problems.append(transforms.batched_shape_phrase(path, label, got.shape,
                                                              want.shape))
                continue
            m, _, _ = compare(label, want, got, allowance(want, tol))
            if m is not None:
                problems.append(transforms.batched_mismatch_phrase(path, what, m))
    return problems


def check_batched_grad(ex: Example, settings) -> Finding:
    """vmap of the backward over a batch of cotangents equals the loop of single backwards."""
    gen = check_generator(ex, "batched-grad")
    leaves = ex.leaves()
    targets = [leaves[i] for i in ex.wrt]
    outs = [o for o in as_outputs(ex.fn(*leaves)) if o.requires_grad]
    stacks = [gaussian((BATCH, *o.shape), gen, o) for o in outs]

    def grad(*cotangents):
        return tuple(_zeros_for_none(torch.autograd.grad(
            outs, targets, cotangents, retain_graph=True, allow_unused=True), targets))

    loop = [torch.stack(per_input) for per_input in
            zip(*(grad(*(s[b] for s in stacks)) for b in range(BATCH)))]
    notes: list[str] = []
    results = _run_batched({
        "torch.func.vmap over autograd.grad": lambda: torch.func.vmap(grad)(*stacks),
        "autograd.grad(is_grads_batched=True)": lambda: _zeros_for_none(torch.autograd.grad(
            outs, targets, stacks, retain_graph=True, allow_unused=True,
            is_grads_batched=True), [torch.stack([t] * BATCH) for t in targets]),
    }, notes)
    if not results:
        return Finding(skip=transforms.no_batching_phrase(
            "the backward", notes))
    problems = _against_loop(ex, [ex.labels[i] for i in ex.wrt], loop, results, "backwards")
    return Finding(problems=problems, notes=notes)


def _dual_tangents(ex: Example, leaves, pos: int):
    """t -> the tangents of fn's outputs with input `pos` moving along t (dual tensors)."""

    def jvp(t):
        with fwAD.dual_level():
            duals = [fwAD.make_dual(x, t) if i == pos else x for i, x in enumerate(leaves)]
            outs = as_outputs(ex.fn(*duals))
            unpacked = [fwAD.unpack_dual(o) for o in outs]
            return tuple(torch.zeros_like(p) if t is None else t for p, t in unpacked)

    return jvp


def _func_tangents(ex: Example, leaves, pos: int):
    """t -> the same tangents through torch.func.jvp (where custom Functions' rules run)."""

    def f(x):
        return tuple(as_outputs(ex.fn(*(x if i == pos else y for i, y in enumerate(leaves)))))

    return lambda t: torch.func.jvp(f, (leaves[pos],), (t,))[1]


def check_batched_forward_ad(ex: Example, settings) -> Finding:
    """vmap of the forward-mode JVP over a batch of tangents equals the loop of single JVPs."""
    gen = check_generator(ex, "batched-forward-ad")
    leaves = tuple(x.detach() for x in ex.leaves())
    problems: list[str] = []
    notes: list[str] = []
    for pos in ex.wrt:
        tangents = gaussian((BATCH, *leaves[pos].shape), gen, leaves[pos])
        jvp = _dual_tangents(ex, leaves, pos)
        try:
            singles = [jvp(t) for t in tangents]
        except Exception as exc:
            return Finding(skip=transforms.no_jvp_phrase(exc))
        loop = [torch.stack(per_output) for per_output in zip(*singles)]
        here: list[str] = []
        results = _run_batched({
            "vmap over forward AD (gradcheck's path)": partial(_vmap(jvp), tangents),
            "torch.func.vmap over torch.func.jvp": partial(
                torch.func.vmap(_func_tangents(ex, leaves, pos)), tangents),
        }, here)
        notes += [n for n in here if n not in notes]
        if not results:
            return Finding(skip=transforms.no_batching_phrase(
                "forward-mode AD", here))
        labels = [f"the tangent of output {k} along {ex.labels[pos]}" for k in range(len(loop))]
        problems += _against_loop(ex, labels, loop, results, "JVPs")
        if problems:
            break
    return Finding(problems=problems, notes=notes)


def check_vmap(ex: Example, settings) -> Finding:
    """fn and its vjp under torch.func.vmap over a batch of nearby inputs equal the loop."""
    gen = check_generator(ex, "vmap")
    base = tuple(x.detach() for x in ex.leaves())
    batch = {i: torch.stack([base[i] * (1 + INPUT_JITTER * torch.randn(
        base[i].shape, generator=gen, dtype=torch.float64).to(base[i])) for _ in range(BATCH)])
        for i in ex.wrt}
    outs = as_outputs(ex.fn(*base))
    cotangents = [gaussian((BATCH, *o.shape), gen, o) for o in outs]

    fn_of = of_checked(ex, base)

    def value_and_vjp(*args):
        xs, vs = args[:len(ex.wrt)], args[len(ex.wrt):]
        values, pullback = torch.func.vjp(fn_of, *xs)
        return (*values, *pullback(tuple(vs)))

    loop = []
    for b in range(BATCH):
        xs = [batch[i][b].clone().requires_grad_() for i in ex.wrt]
        values = fn_of(*xs)
        pairs = [(o, v[b]) for o, v in zip(values, cotangents) if o.requires_grad]
        grads = torch.autograd.grad([o for o, _ in pairs], xs, [v for _, v in pairs],
                                    allow_unused=True)
        loop.append([*(o.detach() for o in values), *_zeros_for_none(grads, xs)])
    loop = [torch.stack(per_result) for per_result in zip(*loop)]
    notes: list[str] = []
    results = _run_batched({"torch.func.vmap over fn and torch.func.vjp": lambda: torch.func.vmap(
        value_and_vjp)(*(batch[i] for i in ex.wrt), *cotangents)}, notes)
    if not results:
        return Finding(skip=transforms.no_batching_phrase(
            "fn", notes, library_custom_op(ex.case.op)))
    labels = ([f"output {k}" for k in range(len(outs))]
              + [f"the gradient of {ex.labels[i]}" for i in ex.wrt])
    problems = _against_loop(ex, labels, loop, results, "calls")
    return Finding(problems=problems, notes=notes)


BATCHED_GRAD = Check("batched-grad", check_batched_grad, needs_graph=True, cost=0.003,
                     doc="vmap of the backward over cotangents equals the loop of backwards")
BATCHED_FORWARD_AD = Check("batched-forward-ad", check_batched_forward_ad, cost=0.007,
                           forward_mode=True,
                           doc="vmap of the jvp over tangents equals the loop of jvps")
VMAP = Check("vmap", check_vmap, needs_graph=True, cost=0.005,
             doc="fn and its vjp under torch.func.vmap over inputs equal the loop")
