"""The graph's own contracts: a second backward needs retain_graph, retain_grad fills a
non-leaf's .grad, a non-scalar output needs an explicit gradient, and no_grad,
inference_mode, detach, clone and requires_grad_(False) build or cut the graph as torch
documents."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

from harness.autodiff import custom_function_nodes, example_vjp, single_backward, with_graph
from harness.checks.accumulation import mismatches
from harness.checks.spec import Check, Finding
from harness.diagnose import contracts
from harness.diagnose.mismatch import compare
from harness.inputs import Example, as_outputs
from harness.numerics.allowance import allowance
from harness.tolerances import tolerance_for


@dataclass
class _Saved:
    """What the forward saved for backward, and what the first backward read of it."""

    packed: int = 0
    unpacked: int = 0


def _forward_counting_saves(ex: Example, leaves) -> tuple[_Saved, tuple[torch.Tensor, ...]]:
    saved = _Saved()

    def pack(t):
        saved.packed += 1
        return t

    def unpack(t):
        saved.unpacked += 1
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
        outs = as_outputs(ex.fn(*leaves))
    return saved, outs


def _tensors_kept_on_ctx(outs) -> list[str]:
    """'Function.attribute' for each tensor a custom Function's ctx holds outside
    save_for_backward: torch never frees those after backward."""
    return [f"{node._forward_cls.__name__}.{key}" for node in custom_function_nodes(outs)
            for key, value in vars(node).items() if isinstance(value, torch.Tensor)]


def check_retain_graph(ex: Example, settings) -> Finding:
    """A second backward without retain_graph raises torch's error when the first backward
    read saved tensors; with retain_graph=True it succeeds and gives the same gradient.
    Only evidence counts: saved tensors read and yet still there, or tensors kept on a custom
    Function's ctx, outside save_for_backward, are a warning (the gradient is right; memory
    is held for the graph's life); a refusal with another error, or a retained graph that
    cannot run twice, fails."""
    problems, concerns, notes = [], [], []
    leaves = ex.leaves()
    saved, outs = _forward_counting_saves(ex, leaves)
    kept = _tensors_kept_on_ctx(outs)
    targets, cotangents = with_graph(ex, outs)
    torch.autograd.backward(targets, grad_tensors=cotangents)
    try:
        torch.autograd.backward(targets, grad_tensors=cotangents)
        second_error = None
    except RuntimeError as exc:
        second_error = str(exc)
    if second_error is None and kept:
        concerns.append(contracts.kept_on_ctx_phrase(kept))
    elif saved.unpacked and second_error is None:
        concerns.append(contracts.second_backward_phrase(saved.unpacked))
    elif second_error is not None and "backward through the graph a second time" \
            not in second_error:
        problems.append(contracts.unexpected_error_phrase(second_error))
    elif not saved.packed:
        notes.append(contracts.NOTHING_SAVED)
    elif not saved.unpacked:
        notes.append(contracts.saved_never_read_phrase(saved.packed))
    leaves = ex.leaves()
    targets, cotangents = with_graph(ex, as_outputs(ex.fn(*leaves)))
    try:
        for _ in range(2):
            torch.autograd.backward(targets, grad_tensors=cotangents, retain_graph=True)
    except RuntimeError as exc:
        problems.append(contracts.retain_graph_failed_phrase(str(exc)))
    return Finding(problems=problems, concerns=concerns, notes=notes)


def check_retain_grad(ex: Example, settings) -> Finding:
    """Named intermediates: with retain_grad their .grad equals the analytic d<v, fn>/dz;
    without it, .grad is None and reading it warns."""
    case = ex.case
    if case.intermediates is None:
        return Finding(skip="the case names no intermediates (Case.intermediates)")
    problems = []
    for retain in (True, False):
        leaves = ex.leaves()
        outs, named = case.intermediates(*leaves)
        outs = as_outputs(outs)
        if retain:
            for z in named.values():
                z.retain_grad()
        torch.autograd.backward(*with_graph(ex, outs))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            grads = {name: z.grad for name, z in named.items()}
        if not retain:
            problems += [contracts.NON_LEAF_GRAD_SET + name for name, g in grads.items()
                         if g is not None]
            if not any("not a leaf Tensor" in str(w.message) for w in caught):
                problems.append(contracts.NO_NON_LEAF_WARNING)
            continue
        expected = _intermediate_grads(ex)
        for name, got in grads.items():
            if got is None:
                problems.append(contracts.RETAINED_GRAD_NONE + name)
                continue
            want = expected.get(name)
            if want is None:
                continue
            allowed = allowance(want, tolerance_for(ex.dtype, ex.case.tolerances))
            m, _, _ = compare(name, want, got, allowed)
            if m is not None:
                problems.append(contracts.intermediate_phrase(m))
    return Finding(problems=problems)


def _intermediate_grads(ex: Example) -> dict[str, torch.Tensor]:
    """The case's analytic gradients of <v, fn> w.r.t. its intermediates, in float64."""
    if ex.case.intermediate_grad is None:
        return {}
    xs = ex.reference_inputs()
    v = [c.double() for c in ex.cotangents]
    if ex.scalar_output:
        grads = ex.case.intermediate_grad(*xs)
        return {k: g * v[0] for k, g in grads.items()}
    return dict(ex.case.intermediate_grad(*xs, v[0] if len(v) == 1 else tuple(v)))


def check_non_scalar(ex: Example, settings) -> Finding:
    """backward() without a gradient raises "grad can be implicitly created only for scalar
    outputs"; backward(gradient=v) equals the vector-Jacobian product."""
    problems, notes = [], []
    leaves = ex.leaves()
    outs = as_outputs(ex.fn(*leaves))
    first = next(o for o in outs if o.requires_grad)
    if first.numel() == 1:
        notes.append(contracts.SCALAR_OUTPUT)
    else:
        try:
            first.backward()
            problems.append(contracts.IMPLICIT_GRAD_ACCEPTED)
        except RuntimeError as exc:
            if "implicitly created only for scalar outputs" not in str(exc):
                problems.append(contracts.unexpected_error_phrase(str(exc)))
    single, spread = single_backward(ex)
    reference, _ = example_vjp(ex)
    for m in mismatches(ex, reference, single, spread):
        problems.append(contracts.backward_vs_grad_phrase(m))
    return Finding(problems=problems, notes=notes)


def check_graph_switches(ex: Example, settings) -> Finding:
    """no_grad and inference_mode build no graph (no grad_fn; a view of an input still says
    requires_grad, as torch does); detach() shares storage without a graph; clone() keeps
    the graph; requires_grad_(False) stops tracking; the grad_fn chain is the declared one."""
    problems = []
    for name, mode in (("no_grad", torch.no_grad), ("inference_mode", torch.inference_mode)):
        with mode():
            outs = as_outputs(ex.fn(*ex.leaves()))
        if any(o.grad_fn is not None for o in outs):
            problems.append(contracts.graph_under_phrase(name))
        for o in (o for o in outs if not o.requires_grad):
            try:
                o.sum().backward()
                problems.append(contracts.backward_under_phrase(name))
            except RuntimeError:
                pass
    leaves = ex.leaves()
    out = next(o for o in as_outputs(ex.fn(*leaves)) if o.requires_grad)
    detached = out.detach()
    if detached.grad_fn is not None or detached.requires_grad:
        problems.append(contracts.DETACH_KEEPS_GRAPH)
    if detached.untyped_storage().data_ptr() != out.untyped_storage().data_ptr():
        problems.append(contracts.DETACH_COPIES)
    cloned = out.clone()
    if cloned.grad_fn is None:
        problems.append(contracts.CLONE_DROPS_GRAPH)
    v = ex.cotangents[0].to(out.dtype)
    through_clone = torch.autograd.grad(cloned, [leaves[i] for i in ex.wrt], v,
                                        allow_unused=True, retain_graph=True)
    direct = torch.autograd.grad(out, [leaves[i] for i in ex.wrt], v, allow_unused=True)
    for k, (a, b) in enumerate(zip(through_clone, direct)):
        if (a is None) != (b is None) or (a is not None and not torch.equal(a, b)):
            problems.append(contracts.CLONE_CHANGES_GRAD + ex.labels[ex.wrt[k]])
    if ex.case.grad_fn_chain:
        chain = _grad_fn_chain(out)
        if tuple(chain) != tuple(ex.case.grad_fn_chain):
            problems.append(contracts.chain_phrase(ex.case.grad_fn_chain, chain))
    frozen = tuple(x.detach().requires_grad_(False) if x.is_floating_point() else x
                   for x in ex.leaves())
    if any(o.requires_grad for o in as_outputs(ex.fn(*frozen))):
        problems.append(contracts.FROZEN_STILL_TRACKED)
    return Finding(problems=problems)


def _grad_fn_chain(out: torch.Tensor) -> list[str]:
    """grad_fn names from the output down the first non-None next_functions entry."""
    names, node = [], out.grad_fn
    while node is not None:
        names.append(type(node).__name__)
        node = next((n for n, _ in node.next_functions if n is not None), None)
    return names


RETAIN_GRAPH = Check("retain-graph", check_retain_graph, needs_graph=True, cost=0.001,
                     doc="a second backward needs retain_graph where the graph saved tensors")
RETAIN_GRAD = Check("retain-grad", check_retain_grad, cost=0.001,
                    doc="retain_grad() fills a named intermediate's .grad with the analytic one")
NON_SCALAR = Check("non-scalar", check_non_scalar, needs_graph=True, cost=0.001,
                   doc="a non-scalar output needs backward(gradient=v), which equals the vjp")
GRAPH_SWITCHES = Check("graph-switches", check_graph_switches, needs_graph=True, cost=0.001,
                       doc="no_grad, inference_mode, detach, clone and requires_grad_(False)")
