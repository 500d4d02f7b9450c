"""Compiled vs eager: the gradients of torch.compile(fn) equal the eager ones.

First order: autograd through torch.compile(fn) (the compiled forward and the backward graph
AOTAutograd builds) against eager autograd with the same cotangent. Second order: the
gradient itself compiled, torch.compile(x -> vjp(fn, x)(v)), then differentiated once more,
against eager double backward. Both within the dtype's tolerance plus the measured rounding
noise (the compiler may fuse and reorder float operations).

Compilation is slow (~20 s cold for a one-line function on 2 cores), so this check is opt-in:
`--check compiled` or `--compiled` on the command line, `--harness-check compiled` under
pytest, `Case(checks=(..., "compiled"))` or the tag "compile". Compiled code is cached on
disk between runs (the inductor cache, under ~/.cache/gradharness unless
TORCHINDUCTOR_CACHE_DIR says otherwise). A function that does not compile is a skip with the
compiler's first line; one that dynamo leaves entirely to eager is a skip that says so.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from harness.autodiff import of_checked, second_order, vjp
from harness.checks.common import check_generator, gaussian, rounding_noise
from harness.checks.spec import Check, Finding
from harness.diagnose import transforms
from harness.diagnose.mismatch import compare
from harness.inputs import Example
from harness.numerics.allowance import allowance
from harness.tolerances import tolerance_for


def _compiled_gradient_function(ex: Example, backend: str):
    """torch.compile of xs -> vᵀJ(xs) (torch.func.vjp), over the checked inputs."""
    fn_of = of_checked(ex, ex.leaves())

    def gradient(*xs):
        outs, pullback = torch.func.vjp(fn_of, *xs)
        return pullback(tuple(v.to(o.dtype) for o, v in zip(outs, ex.cotangents)))

    return torch.compile(gradient, backend=backend)


def _against_eager(ex: Example, order: str, eager, compiled, noise) -> list[str]:
    tol = tolerance_for(ex.dtype, ex.case.tolerances)
    problems = []
    for k, pos in enumerate(ex.wrt):
        allowed = allowance(eager[k], tol, noise=None if noise is None else noise[k])
        m, _, _ = compare(ex.labels[pos], eager[k], compiled[k], allowed)
        if m is not None:
            problems.append(transforms.compiled_mismatch_phrase(order, m))
    return problems


def check_compiled(ex: Example, settings) -> Finding:
    """torch.compile(fn)'s first- and second-order gradients against eager autograd."""
    from torch._dynamo.utils import counters

    backend = settings.compile_backend
    fullgraph = settings.fullgraph or getattr(ex.case, "fullgraph", False)
    torch._dynamo.reset()  # each case compiles afresh (dynamo's limits are per code object)
    counters.clear()
    eager, _ = vjp(ex, ex.leaves())
    try:
        compiled, _ = vjp(replace(ex, fn=torch.compile(ex.fn, backend=backend,
                                                       fullgraph=fullgraph)), ex.leaves())
    except torch._dynamo.exc.Unsupported as exc:
        if fullgraph:  # what dynamo could not put in the one graph asked for
            return Finding(problems=(transforms.fullgraph_break_phrase(exc),))
        return Finding(skip=transforms.compile_error_phrase(exc))
    except Exception as exc:
        return Finding(skip=transforms.compile_error_phrase(exc))
    breaks = dict(counters["graph_break"])
    if not counters["stats"]["unique_graphs"]:
        return Finding(skip=transforms.nothing_compiled_phrase(breaks))
    notes = [transforms.graph_breaks_phrase(breaks)] if breaks else []
    notes.append(transforms.dynamo_counts_phrase(
        frames=counters["frames"]["total"], graphs=counters["stats"]["unique_graphs"],
        recompiles=sum(counters["recompiles"].values()), fullgraph=fullgraph))
    noise = rounding_noise(ex, lambda leaves: vjp(ex, leaves)[0], eager)
    problems = _against_eager(ex, "first-order", eager, compiled, noise)
    if not problems and ex.case.twice_differentiable is not False:
        problems, note = _second_order(ex, backend)
        notes += [note] if note else []
    return Finding(problems=problems, notes=notes)


def _second_order(ex: Example, backend: str) -> tuple[list[str], str]:
    """The compiled gradient, differentiated again, against eager double backward."""
    gen = check_generator(ex, "compiled")
    leaves = ex.leaves()
    weights = [gaussian(leaves[i].shape, gen, leaves[i]) for i in ex.wrt]
    eager, connected, _ = second_order(ex, leaves, weights)
    if not connected:
        return [], ""
    leaves = ex.leaves()
    wrt = [leaves[i] for i in ex.wrt]
    try:
        grads = _compiled_gradient_function(ex, backend)(*wrt)
        psi = sum((g * w).sum() for g, w in zip(grads, weights))
        if psi.requires_grad:
            seconds = torch.autograd.grad(psi, wrt, allow_unused=True)
        else:  # the compiled gradient is constant in x: its derivative is zero
            seconds = [None] * len(wrt)
        compiled = [torch.zeros_like(x) if s is None else s for s, x in zip(seconds, wrt)]
    except Exception as exc:
        return [], transforms.second_order_not_compiled_phrase(exc)
    noise = rounding_noise(ex, lambda ls: second_order(ex, ls, weights)[0], eager)
    return _against_eager(ex, "second-order", eager, compiled, noise), ""


COMPILED = Check("compiled", check_compiled, needs_graph=True, opt_in="compile",
                 flag="--compiled", cost=5.0,
                 flag_help="also check torch.compile(fn)'s gradients against eager (slow: "
                 "~20 s cold per case on 2 cores; cached between runs)",
                 doc="torch.compile(fn)'s first- and second-order gradients against eager")
