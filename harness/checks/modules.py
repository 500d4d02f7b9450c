"""Which module's backward is wrong: bisect a model whose gradient disagrees with finite
differences, down the module tree, only where the parent failed.

One forward (in float64, on copies of the parameters) records every submodule call's inputs,
keyword arguments and output (forward hooks). Each call can then be checked alone: its output
as a function of its own inputs and parameters at the recorded values (functional_call), its
vector-Jacobian product against finite differences, as the fd family does. From the top: a
call that fails has its children's calls checked; where those calls form a chain (each
child's input is the previous child's output, as in nn.Sequential) contiguous ranges are
checked and halved, so one wrong block among n costs about 2 log2(n) sub-checks, not n. The
culprit is the deepest call that fails while everything inside it agrees; a custom autograd
Function in its graph is named with it. A correct model costs the one top-level check.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from harness.autodiff import custom_function_nodes, vjp
from harness.case import Case
from harness.checks.common import check_generator, phi_of
from harness.checks.finite_diff import check_finite_diff
from harness.checks.spec import Check, Finding
from harness.diagnose import contracts
from harness.inputs import CaseError, Example, TrainingExample, as_outputs, draw_example
from harness.numerics.compare import Sweep, compare_with_fd
from harness.source import MODULE_BISECTION
from harness.tolerances import tolerance_for

F64 = torch.float64


@dataclass
class Call:
    """One recorded call of a submodule: where it sits, what went in, what came out, and when
    (start/end count the calls, so the calls inside it are those between)."""

    path: str
    module: nn.Module
    args: tuple
    kwargs: dict
    output: object
    start: int
    end: int = -1
    arg_ids: tuple[int, ...] = ()
    output_id: int = 0


@dataclass
class Bisection:
    """What the descent found: the culprits (a call and its diagnosis each) and its cost."""

    culprits: list = field(default_factory=list)
    sub_checks: int = 0
    unchecked: list[str] = field(default_factory=list)


def _copy(x):
    return x.detach().clone() if isinstance(x, torch.Tensor) else x


def record_calls(root: nn.Module, run: Callable[[], object]) -> list[Call]:
    """Every submodule call during `run()` (root included, path ''), in the order they start."""
    calls: list[Call] = []
    open_calls: dict[int, list[Call]] = {}
    counter = itertools.count()
    keep = []  # the recorded originals stay alive, so their ids stay unique

    def before(module, args, kwargs, path):
        call = Call(path, module, tuple(_copy(a) for a in args),
                    {k: _copy(v) for k, v in kwargs.items()}, None, next(counter),
                    arg_ids=tuple(id(a) for a in args))
        keep.append(args)
        calls.append(call)
        open_calls.setdefault(id(module), []).append(call)

    def after(module, args, kwargs, output):
        call = open_calls[id(module)].pop()
        keep.append(output)
        call.output, call.end, call.output_id = _copy(output), next(counter), id(output)

    handles = []
    for path, module in root.named_modules():
        handles.append(module.register_forward_pre_hook(
            lambda m, a, k, path=path: before(m, a, k, path), with_kwargs=True))
        handles.append(module.register_forward_hook(after, with_kwargs=True))
    try:
        with torch.no_grad():
            run()
    finally:
        for h in handles:
            h.remove()
    return [c for c in calls if c.end >= 0]


def _children(parent: Call, calls: list[Call]) -> list[Call]:
    """The calls made directly inside this call of parent, in order: its submodules' calls,
    through containers that are never called themselves (nn.ModuleList, nn.ModuleDict)."""
    inside = [c for c in calls if parent.start < c.start and c.end < parent.end]
    return [c for c in inside
            if not any(o.start < c.start and c.end < o.end for o in inside if o is not c)]


def _is_chain(parent: Call, kids: list[Call]) -> bool:
    """Each child takes the previous one's output alone; the first takes the parent's input,
    the last gives the parent's output (nn.Sequential and blocks written like it)."""
    if len(kids) < 2 or kids[0].arg_ids[:1] != parent.arg_ids[:1] or len(parent.arg_ids) != 1:
        return False
    if kids[-1].output_id != parent.output_id:
        return False
    return all(len(b.arg_ids) == 1 and not b.kwargs and b.arg_ids[0] == a.output_id
               for a, b in zip(kids, kids[1:]))


def _own_state(module: nn.Module, state: dict[str, torch.Tensor], path: str) -> dict:
    prefix = f"{path}." if path else ""
    return {name[len(prefix):]: t for name, t in state.items() if name.startswith(prefix)
            and name[len(prefix):] in dict(itertools.chain(module.named_parameters(),
                                                           module.named_buffers()))}


@dataclass
class SubFunction:
    """Calls (one, or a chain's range) as a function of their parameters, buffers and the
    first call's floating inputs, at the recorded values."""

    fn: Callable
    inputs: tuple[torch.Tensor, ...]
    labels: tuple[str, ...]

    def case(self, name: str, device: str) -> Case:
        inputs = self.inputs
        return Case(name=name, fn=self.fn, inputs=lambda gen: inputs, dtypes=(F64,),
                    devices=(device,), input_names=self.labels, source=MODULE_BISECTION)

    def joint_case(self, name: str, device: str, path: str) -> Case:
        """The same function of one flat vector holding every checked input: one random
        direction moves them all, so a sub-check costs a few forward calls however many
        parameters the calls hold. `path`: the submodule's, for the input's label."""
        checked = [i for i, t in enumerate(self.inputs) if t.requires_grad]
        shapes = [self.inputs[i].shape for i in checked]
        sizes = [self.inputs[i].numel() for i in checked]
        flat = torch.cat([self.inputs[i].detach().reshape(-1) for i in checked])
        fixed, fn = self.inputs, self.fn

        def joint(v):
            values = list(fixed)
            for i, part, shape in zip(checked, torch.split(v, sizes), shapes):
                values[i] = part.view(shape)
            return fn(*values)

        label = f"{path or 'model'} (all parameters and inputs)"
        return Case(name=name, fn=joint, inputs=lambda gen: (flat.clone().requires_grad_(),),
                    dtypes=(F64,), devices=(device,), input_names=(label,),
                    source=MODULE_BISECTION)


def _sub_function(calls: list[Call], state: dict, shown) -> SubFunction | None:
    """The calls as a SubFunction; None when nothing in them is checkable."""
    first = calls[0]
    states = [_own_state(c.module, state, c.path) for c in calls]
    full = [{n: f"{c.path}.{n}" if c.path else n for n in s} for c, s in zip(calls, states)]
    tensors = {full[k][n]: t for k, s in enumerate(states) for n, t in s.items()}
    names = list(tensors)
    slots = [i for i, a in enumerate(first.args) if isinstance(a, torch.Tensor)
             and a.is_floating_point()]

    def fn(*values):
        given = dict(zip(names, values[:len(names)]))
        args = list(first.args)
        for i, v in zip(slots, values[len(names):]):
            args[i] = v
        out = None
        for k, c in enumerate(calls):
            own = {n: given[full[k][n]] for n in states[k]}
            out = torch.func.functional_call(c.module, own, tuple(args) if k == 0 else (out,),
                                             c.kwargs)
        if isinstance(out, tuple | list):  # attention's (output, None): the tensors alone
            return tuple(o for o in out if isinstance(o, torch.Tensor) and o.is_floating_point())
        return out

    inputs = tuple(tensors[n].detach().clone().requires_grad_(tensors[n].requires_grad)
                   for n in names) + tuple(first.args[i].detach().clone().requires_grad_()
                                           for i in slots)
    if not any(t.requires_grad for t in inputs):
        return None
    where = shown(first.path) or "model"
    if len(calls) > 1:
        where = f"{where}..{shown(calls[-1].path)}"
    labels = tuple(shown(n) for n in names) + tuple(
        f"{where} input" if len(slots) == 1 else f"{where} input {i}" for i in slots)
    return SubFunction(fn, inputs, labels)


def _custom_functions(ex: Example) -> list[str]:
    """The custom autograd Functions in the graph from the example's inputs to its outputs."""
    with torch.enable_grad():
        outs = as_outputs(ex.fn(*ex.leaves()))
    return list(dict.fromkeys(node._forward_cls.__name__ for node in custom_function_nodes(outs)))


class _Descent:
    """The bisection over one recording: sub-checks counted, culprits collected.

    A sub-check is quick: the calls' joint gradient over all their parameters and inputs
    along random sign directions (a few forward calls). Where a failing call's children all
    pass it, they are checked again the thorough way (each input element by element up to
    Settings.full_max, as the fd family does) before the parent is blamed: an error too
    small for a few directions over everything still shows there.
    """

    def __init__(self, calls, state, device, seed, settings, shown, case_name):
        self.calls, self.state, self.device = calls, state, device
        self.seed, self.settings, self.shown, self.case_name = seed, settings, shown, case_name
        self.found = Bisection()
        self.failed_calls: dict[int, int] = {}

    def example(self, calls: list[Call], joint: bool = False) -> Example | None:
        sub = _sub_function(calls, self.state, self.shown)
        if sub is None:
            return None
        path = self.shown(calls[0].path)
        name = f"{self.case_name}:{path}"
        case = (sub.joint_case(name, self.device, path) if joint
                else sub.case(name, self.device))
        return draw_example(case, F64, self.device, self.seed)

    def agrees(self, calls: list[Call], thorough: bool = False) -> bool | None:
        """Whether the calls' gradient agrees with finite differences (None: not checkable)."""
        try:
            ex = self.example(calls, joint=not thorough)
        except (CaseError, RuntimeError, TypeError, ValueError) as exc:
            self.found.unchecked.append(f"{self.shown(calls[0].path)} ({exc})"[:160])
            return None
        if ex is None:
            return True
        self.found.sub_checks += 1
        grads, _ = vjp(ex, ex.leaves())
        quick = replace(self.settings, verdict_only=True)
        sweep = (Sweep.first_order(quick, localize=False) if thorough
                 else Sweep(0, self.settings.directions, 0, 0, localize=False,
                            verdict_only=True))
        verdicts = compare_with_fd(ex, phi_of(ex), grads, tolerance_for(F64), sweep,
                                   check_generator(ex, "modules"))
        return not any(v.mismatch for v in verdicts)

    def failing(self, kids: list[Call], chain: bool, thorough: bool = False) -> list[Call]:
        """The child calls that fail: halving ranges of a chain, else one by one."""
        if not chain or thorough:
            return [k for k in kids if self.agrees([k], thorough) is False]
        out, todo = [], [kids]
        while todo:
            part = todo.pop(0)
            if len(part) == 1:
                if part is kids or self.agrees(part) is False:
                    out.append(part[0])
                continue
            if part is not kids and self.agrees(part) is not False:
                continue
            half = len(part) // 2
            todo[:0] = [part[:half], part[half:]]
        return out

    def descend(self, call: Call) -> None:
        kids = _children(call, self.calls)
        chain = _is_chain(call, kids)
        failing = self.failing(kids, chain) if kids else []
        if kids and not failing:
            failing = self.failing(kids, chain, thorough=True)
        culprits = []
        for kid in failing:
            self.failed_calls[id(kid.module)] = self.failed_calls.get(id(kid.module), 0) + 1
            if all(kid.module is not c.module for c in culprits):
                culprits.append(kid)
        if not culprits:
            if all(call.module is not c.module for c in self.found.culprits):
                self.found.culprits.append(call)
            return
        for kid in culprits:
            self.descend(kid)


def _phrase(descent: _Descent, call: Call, finding: Finding, ex: Example) -> str:
    where = f"`{descent.shown(call.path)}`" if call.path else "the model itself"
    kind = type(call.module).__name__
    functions = _custom_functions(ex)
    what = (f"{', '.join(functions)}, custom autograd Function{'s' * (len(functions) > 1)} "
            f"in {kind}" if functions else kind)
    uses = sum(c.module is call.module for c in descent.calls)
    failed = descent.failed_calls.get(id(call.module), 1)
    calls = ""
    if uses > 1:
        which = "both" if failed == uses == 2 else f"{failed} of them"
        calls = f", called {uses} times in the forward, wrong at {which}"
    wrong = [v for v in finding.verdicts or () if v.mismatch is not None]
    story = "; ".join(f"{v.label}: {v.mismatch.pattern}" for v in wrong) or "see below"
    inside = ("the modules inside it agree" if _children(call, descent.calls)
              else "it has no submodules")
    return (f"the wrong gradient comes from {where} ({what}{calls}): its backward is wrong "
            f"({story}); {inside}")


def bisect(root: nn.Module, state: dict, run_root: Callable, case_name: str, device: str,
           seed: int, settings, shown: Callable[[str], str] = lambda p: p) -> Finding:
    """Check the root call; when it fails, find the culprit modules."""
    calls = record_calls(root, lambda: torch.func.functional_call(root, state, run_root()))
    tops = [c for c in calls if c.module is root]
    if not tops:
        return Finding(error=f"{case_name}: the model was never called")
    descent = _Descent(calls, state, device, seed, settings, shown, case_name)
    top = tops[0]
    if descent.agrees([top]) is not False and descent.agrees([top], thorough=True) is not False:
        return Finding(notes=(f"the model's gradient agrees with finite differences "
                              f"({descent.found.sub_checks} checks): no module to bisect",))
    descent.descend(top)
    verdicts, preface = [], []
    for call in descent.found.culprits:
        ex = descent.example([call])
        finding = check_finite_diff(ex, settings)
        preface.append(_phrase(descent, call, finding, ex))
        verdicts.extend(finding.verdicts or ())
    notes = [f"bisection: {descent.found.sub_checks} sub-checks over "
             f"{len({id(c.module) for c in calls})} modules, in float64 on copies of the "
             f"parameters, at the inputs each module received in one forward"]
    if descent.found.unchecked:
        notes.append("not checkable alone: " + "; ".join(descent.found.unchecked[:3]))
    if not any(v.mismatch for v in verdicts):
        notes.append("the culprit's own check did not reproduce the failure")
    return Finding(verdicts=tuple(verdicts), reference="finite differences", checked="autograd",
                   preface=tuple(preface), pattern=" | ".join(preface), notes=tuple(notes))


class _LossOf(nn.Module):
    """A TrainingCase's loss as a module over its model, so functional_call can vary the
    model's parameters while the case's own loss function calls it."""

    def __init__(self, model: nn.Module, loss):
        super().__init__()
        self.model, self.loss = model, loss

    def forward(self, *batch):
        return self.loss(self.model, batch)


def _float64_state(module: nn.Module, prefix: str = "") -> dict[str, torch.Tensor]:
    state = {}
    for name, p in module.named_parameters():
        state[prefix + name] = p.detach().to(F64).requires_grad_(True)
    for name, b in module.named_buffers():
        state[prefix + name] = b.detach().to(F64) if b.is_floating_point() else b.detach()
    return state


def check_modules(ex: Example, settings) -> Finding:
    """A module's gradient (check_gradients(model, ...)) bisected to the wrong submodule."""
    module = ex.case.module
    state = _float64_state(module)
    n_state = len(state)
    args = tuple(x.detach().to(F64) if x.is_floating_point() else x
                 for x in ex.inputs[n_state:])
    return bisect(module, state, lambda: args, ex.case.name, ex.device, ex.seed,
                  settings)


def check_training_modules(ex: TrainingExample, settings) -> Finding:
    """A training case's loss gradient over its parameters, bisected to the wrong module."""
    root = _LossOf(ex.model, ex.case.loss)
    state = _float64_state(ex.model, "model.")
    if not state:
        return Finding(skip=contracts.STEP_NO_GRAD)
    batch = tuple(t.to(F64) if t.is_floating_point() else t for t in ex.batch)
    return bisect(root, state, lambda: batch, ex.case.name, ex.device, ex.seed, settings,
                  shown=lambda p: p.removeprefix("model.").removeprefix("model"))


def check_module_tree(ex, settings) -> Finding:
    """A module's gradient, or a training case's loss gradient over its model, bisected to
    the submodule whose backward is wrong."""
    if isinstance(ex, TrainingExample):
        return check_training_modules(ex, settings)
    return check_modules(ex, settings)


MODULES = Check("module", check_module_tree, applies_to="both", needs_case="module",
                dtypes="highest", cost=0.05, title="module bisection",
                doc="a module's gradient (a check_gradients model, a training case's loss "
                    "over its model) against finite differences; when it fails, the "
                    "submodule whose backward is wrong, bisected down the module tree")
