"""Autograd's side: vector-Jacobian products and double backward for an Example."""

from __future__ import annotations

from collections.abc import Callable

import torch

from harness import memo
from harness.inputs import Example, as_outputs


def scalarize(outs: tuple[torch.Tensor, ...], cotangents) -> torch.Tensor:
    """<v, f(x)> summed over outputs: the scalar whose gradient is the VJP."""
    total = None
    for out, v in zip(outs, cotangents):
        term = (out * v.to(out.dtype)).sum()
        total = term if total is None else total + term
    return total


def of_checked(ex: Example, base) -> Callable[..., tuple[torch.Tensor, ...]]:
    """fn as a function of the checked inputs alone, the others fixed at `base`."""

    def fn(*checked):
        args = list(base)
        for i, x in zip(ex.wrt, checked):
            args[i] = x
        return as_outputs(ex.fn(*args))

    return fn


def vjp(
    ex: Example,
    leaves: tuple[torch.Tensor, ...],
    cotangents=None,
    create_graph: bool = False,
    outs=None,
) -> tuple[list[torch.Tensor], list[int]]:
    """Autograd's vᵀJ for every checked input of `ex`, evaluated at `leaves`.

    Returns the gradients (zeros where autograd gave None) and the positions in `ex.wrt`
    whose gradient was None, so the caller can say which inputs got no gradient. `outs`:
    fn's outputs at `leaves` where they were computed already (with their graph).
    """
    # the example's own cotangents as copies: a backward that writes into its grad_output
    # (reentrancy, which passes its own, says so) must not change what every later reading
    # of <v, f> uses
    cotangents = [v.clone() for v in ex.cotangents] if cotangents is None else cotangents
    if outs is None:
        outs = as_outputs(ex.fn(*leaves))
    targets = [leaves[i] for i in ex.wrt]
    pairs = [(o, v.to(o.dtype)) for o, v in zip(outs, cotangents) if o.requires_grad]
    if pairs:
        grads = torch.autograd.grad(
            [o for o, _ in pairs], targets, grad_outputs=[v for _, v in pairs],
            allow_unused=True, create_graph=create_graph,
        )
    else:
        grads = (None,) * len(targets)
    missing = [k for k, g in enumerate(grads) if g is None]
    grads = [torch.zeros_like(t) if g is None else g for t, g in zip(targets, grads)]
    return grads, missing


def second_order(
    ex: Example, leaves: tuple[torch.Tensor, ...], weights: list[torch.Tensor],
    outs=None, incoming: list[torch.Tensor] | None = None,
) -> tuple[list[torch.Tensor], bool, list[torch.Tensor]]:
    """d/dx <w, vᵀJ(x)> by double backward (create_graph), one tensor per checked input.

    Also returns whether the first-order gradient was connected to the inputs at all; when it
    is not (once_differentiable, a detach in backward), the second derivative reads as zero.
    `incoming`: the cotangents as leaves that require grad (where fn's output does), so the
    same double backward gives d/dv <w, vᵀJ(x)> too, one tensor per output (third value;
    empty without `incoming`); the graph is kept for readings along them (checks.cotangent).
    `outs`: fn's outputs at `leaves`, with their graph, where the caller ran it.
    """
    grads, _ = vjp(ex, leaves, cotangents=incoming, create_graph=True, outs=outs)
    psi = sum((g * w.to(g.dtype)).sum() for g, w in zip(grads, weights))
    targets = [leaves[i] for i in ex.wrt]
    over = [v for v in incoming or () if v.requires_grad]
    if not isinstance(psi, torch.Tensor) or not psi.requires_grad:
        return [torch.zeros_like(t) for t in targets], False, [torch.zeros_like(v) for v in over]
    found = torch.autograd.grad(psi, [*targets, *over], allow_unused=True,
                                retain_graph=bool(over))
    connected = any(g is not None for g in found[:len(targets)])  # to x, not v alone
    found = [torch.zeros_like(t) if g is None else g for t, g in zip([*targets, *over], found)]
    return found[:len(targets)], connected, [g.detach() for g in found[len(targets):]]


def carries_graph(ex: Example) -> bool:
    """Whether any of fn's outputs requires grad (there is a backward to check). Asked by
    every family that needs a graph, of one shared example: run once and kept on it (not as
    a field, so an example re-made with dataclasses.replace asks again)."""
    known = ex.__dict__.get("_carries_graph")
    if known is None:
        with torch.enable_grad():
            outs = as_outputs(ex.fn(*ex.leaves()))
        known = ex.__dict__["_carries_graph"] = any(o.requires_grad for o in outs)
    return known


def with_graph(ex: Example, outs, cotangents=None) -> tuple[list, list]:
    """fn's outputs that carry a graph, each with a fresh copy of its cotangent.

    Fresh, because torch lets the .grad of a view's input share storage with the gradient
    passed to backward(): zeroing that .grad would otherwise zero the harness's cotangent.
    """
    cotangents = ex.cotangents if cotangents is None else cotangents
    pairs = [(o, v.to(o.dtype).clone()) for o, v in zip(outs, cotangents) if o.requires_grad]
    return [o for o, _ in pairs], [v for _, v in pairs]


def example_vjp(ex: Example) -> tuple[list[torch.Tensor], list[int]]:
    """vjp at fresh leaves of the example's own inputs, taken once per example: the families
    that compare against it (fd, analytic, second order, forward mode, non-scalar) only
    read it. Where the example was built with its graph (inputs.build_example), that
    graph is differentiated: no second forward."""

    def compute():
        graph = memo.take(ex, "graph")
        return vjp(ex, ex.leaves()) if graph is None else vjp(ex, graph[0], outs=graph[1])

    grads, missing = memo.once_per_example(ex, "vjp", compute)
    return list(grads), list(missing)


def backward_into_grad(ex: Example, leaves, retain_graph: bool = True, cotangents=None) -> None:
    """Backward of <v, fn(leaves)> into the leaves' .grad, through fn's outputs only."""
    targets, grads = with_graph(ex, as_outputs(ex.fn(*leaves)), cotangents)
    torch.autograd.backward(targets, grad_tensors=grads, retain_graph=retain_graph)


def leaf_grads(ex: Example, leaves) -> list[torch.Tensor]:
    """The checked leaves' .grad, zeros where None, detached copies."""
    return [torch.zeros_like(leaves[i]) if leaves[i].grad is None
            else leaves[i].grad.detach().clone() for i in ex.wrt]


def single_backward(ex: Example) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Two independent single-pass gradients into .grad: the first, and their spread. Taken
    once per example: the families that compare against it (accumulation, zeroing,
    non-scalar) only read it."""
    return memo.once_per_example(ex, "single backward", lambda: _single_backward(ex))


def _single_backward(ex: Example) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    runs = []
    for _ in range(2):
        leaves = ex.leaves()
        backward_into_grad(ex, leaves, retain_graph=False)
        runs.append(leaf_grads(ex, leaves))
    spread = [(a - b).abs() for a, b in zip(*runs)]
    return runs[0], spread


def custom_function_nodes(outs) -> list:
    """The custom autograd Function nodes (BackwardCFunction) in the graph behind `outs`,
    each once, from the outputs down."""
    found, seen, stack = [], set(), [o.grad_fn for o in outs if o.grad_fn is not None]
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, torch.autograd.function.BackwardCFunction):
            found.append(node)
        stack += [next_node for next_node, _ in node.next_functions]
    return found
