"""Autograd semantics per case: accumulation, zeroing, retain_graph, retain_grad, non-scalar
outputs, graph switches, reentrancy, and the optimizer contract.

Each check builds fresh leaves from the case's example, exercises one contract the tutorials
teach, and returns one Record: pass, or fail with every broken clause named. Exactness is the
rule (accumulating k equal gradients is exact in floating point); where a backward is not
deterministic, the measured spread between two identical passes is what is allowed.
"""

from __future__ import annotations

import time
import warnings

import torch

from harness import diagnose
from harness.autodiff import vjp
from harness.inputs import Example, as_outputs
from harness.record import Record

NONDETERMINISM_RUNS = 5
"""Backward passes compared for a case that declares a nondeterministic_tol (else 2)."""


def _targets(ex: Example, outs, cotangents=None) -> tuple[list, list]:
    """fn's outputs that carry a graph, each with a fresh copy of its cotangent.

    Fresh, because torch lets the .grad of a view's input share storage with the gradient
    passed to backward(): zeroing that .grad would otherwise zero the harness's cotangent.
    """
    cotangents = ex.cotangents if cotangents is None else cotangents
    pairs = [(o, v.to(o.dtype).clone()) for o, v in zip(outs, cotangents) if o.requires_grad]
    return [o for o, _ in pairs], [v for _, v in pairs]


def _backward(ex: Example, leaves, retain_graph: bool = True, cotangents=None) -> None:
    """Backward of <v, fn(leaves)> into the leaves' .grad, through fn's outputs only."""
    targets, grads = _targets(ex, as_outputs(ex.fn(*leaves), ex.case.name), cotangents)
    torch.autograd.backward(targets, grad_tensors=grads, retain_graph=retain_graph)


def _grads(ex: Example, leaves) -> list[torch.Tensor]:
    """The checked leaves' .grad, zeros where None, detached copies."""
    return [torch.zeros_like(leaves[i]) if leaves[i].grad is None
            else leaves[i].grad.detach().clone() for i in ex.wrt]


def _single(ex: Example) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Two independent single-pass gradients: the reference and its run-to-run spread."""
    runs = []
    for _ in range(2):
        leaves = ex.leaves()
        _backward(ex, leaves, retain_graph=False)
        runs.append(_grads(ex, leaves))
    spread = [(a - b).abs() for a, b in zip(*runs)]
    return runs[0], spread


def _mismatches(ex: Example, expected, actual, allowed) -> list:
    """diagnose.compare over the checked inputs: the Mismatch of each input that differs."""
    found = []
    for k, pos in enumerate(ex.wrt):
        m, _, _ = diagnose.compare(ex.labels[pos], expected[k], actual[k], allowed[k])
        if m is not None:
            found.append(m)
    return found


def _record(ex: Example, check: str, problems: list[str], start: float,
            notes: list[str] | None = None) -> list[Record]:
    return [diagnose.semantic_record(ex, check, problems, notes or [],
                                     time.perf_counter() - start)]


def _requires_backward(ex: Example, check: str, start: float) -> list[Record] | None:
    """A skip record when fn's outputs carry no graph at all, else None."""
    with torch.enable_grad():
        outs = as_outputs(ex.fn(*ex.leaves()), ex.case.name)
    if any(o.requires_grad for o in outs):
        return None
    return [diagnose.semantic_skip(ex, check, "fn's outputs do not require grad",
                                   time.perf_counter() - start)]


def check_accumulation(ex: Example, settings) -> list[Record]:
    """k backward passes (retain_graph) leave k times the single gradient in .grad (k = 2, 3,
    5); torch.autograd.grad leaves .grad untouched. Up to k = 3 the sum is exact in floating
    point; from k = 4 each addition may round, so k^2 ulps of the gradient are allowed."""
    start = time.perf_counter()
    if skip := _requires_backward(ex, "accumulation", start):
        return skip
    single, spread = _single(ex)
    problems = []
    eps = torch.finfo(ex.dtype).eps
    for k in (2, 3, 5):
        leaves = ex.leaves()
        for _ in range(k):
            _backward(ex, leaves)
        got = _grads(ex, leaves)
        expected = [k * g for g in single]
        rounding = 0 if k <= 3 else k * k * eps
        allowed = [k * s + rounding * g.abs() for s, g in zip(spread, single)]
        for m in _mismatches(ex, expected, got, allowed):
            problems.append(diagnose.accumulation_phrase(k, m))
    leaves = ex.leaves()
    vjp(ex, leaves)
    touched = [ex.labels[i] for i in ex.wrt if leaves[i].grad is not None]
    if touched:
        problems.append(diagnose.AUTOGRAD_GRAD_TOUCHED + ", ".join(touched))
    return _record(ex, "accumulation", problems, start)


def check_zeroing(ex: Example, settings) -> list[Record]:
    """.grad.zero_(), optimizer.zero_grad() (None by default, zeros with set_to_none=False) and
    .grad = None each reset accumulation: the next backward gives the single gradient."""
    start = time.perf_counter()
    if skip := _requires_backward(ex, "zeroing", start):
        return skip
    single, spread = _single(ex)
    problems = []
    leaves = ex.leaves()
    params = [leaves[i] for i in ex.wrt]
    optimizer = torch.optim.SGD(params, lr=0.0)
    resets = {
        ".grad.zero_()": lambda: [p.grad.zero_() for p in params if p.grad is not None],
        "optimizer.zero_grad()": optimizer.zero_grad,
        "optimizer.zero_grad(set_to_none=False)": lambda: optimizer.zero_grad(set_to_none=False),
        ".grad = None": lambda: [setattr(p, "grad", None) for p in params],
    }
    for name, reset in resets.items():
        _backward(ex, leaves)
        reset()
        after = [p.grad for p in params]
        if name == "optimizer.zero_grad()" and any(g is not None for g in after):
            problems.append(diagnose.ZERO_GRAD_NOT_NONE)
        if name.endswith("set_to_none=False)") and not all(
                g is not None and not bool(g.any()) for g in after):
            problems.append(diagnose.ZERO_GRAD_NOT_ZEROS)
        _backward(ex, leaves)
        for m in _mismatches(ex, single, _grads(ex, leaves), spread):
            problems.append(diagnose.after_reset_phrase(name, m))
        optimizer.zero_grad()
    return _record(ex, "zeroing", problems, start)


def _saved_tensor_count(ex: Example, leaves) -> tuple[int, tuple[torch.Tensor, ...]]:
    count = 0

    def pack(t):
        nonlocal count
        count += 1
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        outs = as_outputs(ex.fn(*leaves), ex.case.name)
    return count, outs


def check_retain_graph(ex: Example, settings) -> list[Record]:
    """A second backward without retain_graph raises torch's error when the graph saved
    tensors; with retain_graph=True it succeeds and gives the same gradient."""
    start = time.perf_counter()
    if skip := _requires_backward(ex, "retain-graph", start):
        return skip
    problems, notes = [], []
    leaves = ex.leaves()
    saved, outs = _saved_tensor_count(ex, leaves)
    targets, cotangents = _targets(ex, outs)
    torch.autograd.backward(targets, grad_tensors=cotangents)
    try:
        torch.autograd.backward(targets, grad_tensors=cotangents)
        second_error = None
    except RuntimeError as exc:
        second_error = str(exc)
    if saved and second_error is None:
        problems.append(diagnose.second_backward_phrase(saved))
    elif saved and "backward through the graph a second time" not in second_error:
        problems.append(diagnose.unexpected_error_phrase(second_error))
    elif not saved:
        notes.append(diagnose.NOTHING_SAVED)
    leaves = ex.leaves()
    targets, cotangents = _targets(ex, as_outputs(ex.fn(*leaves), ex.case.name))
    try:
        for _ in range(2):
            torch.autograd.backward(targets, grad_tensors=cotangents, retain_graph=True)
    except RuntimeError as exc:
        problems.append(diagnose.retain_graph_failed_phrase(str(exc)))
    return _record(ex, "retain-graph", problems, start, notes)


def check_retain_grad(ex: Example, settings) -> list[Record]:
    """Named intermediates: with retain_grad their .grad equals the analytic d<v, fn>/dz;
    without it, .grad is None and reading it warns."""
    start = time.perf_counter()
    case = ex.case
    if case.intermediates is None:
        return [diagnose.semantic_skip(ex, "retain-grad", "the case names no intermediates "
                                       "(Case.intermediates)", time.perf_counter() - start)]
    problems = []
    for retain in (True, False):
        leaves = ex.leaves()
        outs, named = case.intermediates(*leaves)
        outs = as_outputs(outs, case.name)
        if retain:
            for z in named.values():
                z.retain_grad()
        torch.autograd.backward(*_targets(ex, outs))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            grads = {name: z.grad for name, z in named.items()}
        if not retain:
            problems += [diagnose.NON_LEAF_GRAD_SET + name for name, g in grads.items()
                         if g is not None]
            if not any("not a leaf Tensor" in str(w.message) for w in caught):
                problems.append(diagnose.NO_NON_LEAF_WARNING)
            continue
        expected = _intermediate_grads(ex)
        for name, got in grads.items():
            if got is None:
                problems.append(diagnose.RETAINED_GRAD_NONE + name)
                continue
            want = expected.get(name)
            if want is None:
                continue
            allowed = diagnose.allowance(want, diagnose.tolerance_of(ex))
            m, _, _ = diagnose.compare(name, want, got, allowed)
            if m is not None:
                problems.append(diagnose.intermediate_phrase(m))
    return _record(ex, "retain-grad", problems, start)


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


def check_non_scalar(ex: Example, settings) -> list[Record]:
    """backward() without a gradient raises "grad can be implicitly created only for scalar
    outputs"; backward(gradient=v) equals the vector-Jacobian product."""
    start = time.perf_counter()
    if skip := _requires_backward(ex, "non-scalar", start):
        return skip
    problems, notes = [], []
    leaves = ex.leaves()
    outs = as_outputs(ex.fn(*leaves), ex.case.name)
    first = next(o for o in outs if o.requires_grad)
    if first.numel() == 1:
        notes.append(diagnose.SCALAR_OUTPUT)
    else:
        try:
            first.backward()
            problems.append(diagnose.IMPLICIT_GRAD_ACCEPTED)
        except RuntimeError as exc:
            if "implicitly created only for scalar outputs" not in str(exc):
                problems.append(diagnose.unexpected_error_phrase(str(exc)))
    single, spread = _single(ex)
    reference, _ = vjp(ex, ex.leaves())
    for m in _mismatches(ex, reference, single, spread):
        problems.append(diagnose.backward_vs_grad_phrase(m))
    return _record(ex, "non-scalar", problems, start, notes)


def check_graph_switches(ex: Example, settings) -> list[Record]:
    """no_grad and inference_mode build no graph (no grad_fn; a view of an input still says
    requires_grad, as torch does); detach() shares storage without a graph; clone() keeps
    the graph; requires_grad_(False) stops tracking; the grad_fn chain is the declared one."""
    start = time.perf_counter()
    if skip := _requires_backward(ex, "graph-switches", start):
        return skip
    problems = []
    for name, mode in (("no_grad", torch.no_grad), ("inference_mode", torch.inference_mode)):
        with mode():
            outs = as_outputs(ex.fn(*ex.leaves()), ex.case.name)
        if any(o.grad_fn is not None for o in outs):
            problems.append(diagnose.graph_under_phrase(name))
        for o in (o for o in outs if not o.requires_grad):
            try:
                o.sum().backward()
                problems.append(diagnose.backward_under_phrase(name))
            except RuntimeError:
                pass
    leaves = ex.leaves()
    out = next(o for o in as_outputs(ex.fn(*leaves), ex.case.name) if o.requires_grad)
    detached = out.detach()
    if detached.grad_fn is not None or detached.requires_grad:
        problems.append(diagnose.DETACH_KEEPS_GRAPH)
    if detached.untyped_storage().data_ptr() != out.untyped_storage().data_ptr():
        problems.append(diagnose.DETACH_COPIES)
    cloned = out.clone()
    if cloned.grad_fn is None:
        problems.append(diagnose.CLONE_DROPS_GRAPH)
    v = ex.cotangents[0].to(out.dtype)
    through_clone = torch.autograd.grad(cloned, [leaves[i] for i in ex.wrt], v,
                                        allow_unused=True, retain_graph=True)
    direct = torch.autograd.grad(out, [leaves[i] for i in ex.wrt], v, allow_unused=True)
    for k, (a, b) in enumerate(zip(through_clone, direct)):
        if (a is None) != (b is None) or (a is not None and not torch.equal(a, b)):
            problems.append(diagnose.CLONE_CHANGES_GRAD + ex.labels[ex.wrt[k]])
    if ex.case.grad_fn_chain:
        chain = _grad_fn_chain(out)
        if tuple(chain) != tuple(ex.case.grad_fn_chain):
            problems.append(diagnose.chain_phrase(ex.case.grad_fn_chain, chain))
    frozen = tuple(x.detach().requires_grad_(False) if x.is_floating_point() else x
                   for x in ex.leaves())
    if any(o.requires_grad for o in as_outputs(ex.fn(*frozen), ex.case.name)):
        problems.append(diagnose.FROZEN_STILL_TRACKED)
    return _record(ex, "graph-switches", problems, start)


def _grad_fn_chain(out: torch.Tensor) -> list[str]:
    """grad_fn names from the output down the first non-None next_functions entry."""
    names, node = [], out.grad_fn
    while node is not None:
        names.append(type(node).__name__)
        node = next((n for n, _ in node.next_functions if n is not None), None)
    return names


def check_reentrancy(ex: Example, settings) -> list[Record]:
    """The same backward twice gives identical gradients (else the spread is reported); fn
    and backward leave inputs and cotangent unchanged; the .grad that backward() leaves
    aliases neither the cotangent nor another input's .grad; each gradient has its input's
    dtype, device and shape. (torch.autograd.grad may return views of the cotangent, as
    torch's own sum and add do: that is allowed.)"""
    start = time.perf_counter()
    if skip := _requires_backward(ex, "reentrancy", start):
        return skip
    problems = []
    leaves = ex.leaves()
    before = [x.detach().clone() for x in leaves]
    cotangents = [v.to(ex.dtype) for v in ex.cotangents]
    cot_before = [v.clone() for v in cotangents]
    declared = getattr(ex.case, "nondeterministic_tol", 0.0)
    runs = NONDETERMINISM_RUNS if declared else 2
    first, _ = vjp(ex, leaves, cotangents=cotangents)
    spreads = [torch.zeros((), dtype=torch.float64) for _ in first]
    for _ in range(runs - 1):
        again, _ = vjp(ex, leaves, cotangents=cotangents)
        spreads = [torch.maximum(s, (a - b).abs().max().double().cpu()) if a.numel() else s
                   for s, a, b in zip(spreads, first, again)]
    worst = max((float(s) for s in spreads), default=0.0)
    notes = []
    if declared and 0 < worst <= declared:
        notes.append(diagnose.nondeterminism_measured(worst, runs, declared))
    for k, spread in enumerate(spreads):
        if float(spread) > declared:
            problems.append(diagnose.nondeterministic_phrase(
                ex.labels[ex.wrt[k]], float(spread), float(first[k].abs().max()), runs,
                declared))
    for x, old, label in zip(leaves, before, ex.labels):
        if not torch.equal(x.detach(), old):
            problems.append(diagnose.MUTATED_INPUT + label)
    if any(not torch.equal(v, old) for v, old in zip(cotangents, cot_before)):
        problems.append(diagnose.MUTATED_COTANGENT)
    for k, g in enumerate(first):
        pos = ex.wrt[k]
        if (g.dtype, g.device, g.shape) != (leaves[pos].dtype, leaves[pos].device,
                                            leaves[pos].shape):
            problems.append(diagnose.metadata_phrase(ex.labels[pos], g, leaves[pos]))
    shared, aliasing_notes = _aliasing(ex)
    return _record(ex, "reentrancy", problems + shared, start, notes + aliasing_notes)


def _aliasing(ex: Example) -> tuple[list[str], list[str]]:
    """(problems, notes): a .grad that changes when another input's .grad is zeroed is a
    problem (disjoint views of one buffer, as linalg.multi_dot returns, are fine); sharing
    storage with the gradient passed to backward() is a note, since torch itself does it for
    views."""
    leaves = ex.leaves()
    targets, cotangents = _targets(ex, as_outputs(ex.fn(*leaves), ex.case.name))
    torch.autograd.backward(targets, grad_tensors=cotangents)
    passed = {v.untyped_storage().data_ptr() for v in cotangents}
    seen: dict[int, int] = {}
    problems, notes = [], []
    for pos in ex.wrt:
        grad = leaves[pos].grad
        if grad is None:
            continue
        ptr = grad.untyped_storage().data_ptr()
        if ptr in passed:
            notes.append(diagnose.shares_cotangent_phrase(ex.labels[pos]))
        if ptr in seen and _overlaps(grad, leaves[seen[ptr]].grad):
            problems.append(diagnose.aliases_phrase(ex.labels[pos], ex.labels[seen[ptr]]))
        seen[ptr] = pos
    return problems, notes


def _overlaps(grad: torch.Tensor, other: torch.Tensor) -> bool:
    """Whether zeroing `grad` changes `other` (both restored afterwards)."""
    saved, before = grad.clone(), other.clone()
    grad.zero_()
    changed = not torch.equal(other, before)
    grad.copy_(saved)
    return changed


def check_optimizer(ex: Example, settings) -> list[Record]:
    """One torch.optim.SGD step moves each leaf by exactly -lr * grad."""
    start = time.perf_counter()
    if skip := _requires_backward(ex, "optimizer", start):
        return skip
    lr = 0.1
    leaves = ex.leaves()
    params = [leaves[i] for i in ex.wrt]
    optimizer = torch.optim.SGD(params, lr=lr)
    optimizer.zero_grad()
    _backward(ex, leaves, retain_graph=False)
    before = [p.detach().clone() for p in params]
    grads = _grads(ex, leaves)
    optimizer.step()
    problems = []
    for k, p in enumerate(params):
        expected = before[k].add(grads[k], alpha=-lr)
        if not torch.equal(p.detach(), expected):
            m, _, _ = diagnose.compare(ex.labels[ex.wrt[k]], expected, p.detach(),
                                       torch.zeros_like(expected, dtype=torch.float64))
            problems.append(diagnose.sgd_phrase(lr, m))
    return _record(ex, "optimizer", problems, start)
