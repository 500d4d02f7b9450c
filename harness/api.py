"""check_gradients / assert_gradients: check any function or module in one call."""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn

from harness.case import Case, custom_op_name
from harness.checks import CHECKS, Settings
from harness.plan import Selection
from harness.record import HarnessWarning, Record, fails_run
from harness.runner import run_item
from harness.source import CHECK_GRADIENTS


@dataclass(frozen=True)
class GradientReport:
    """The records of one check_gradients call; truthy when nothing failed (warn rows fail
    it only when `strict`)."""

    records: tuple[Record, ...]
    strict: bool = False

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def failures(self) -> tuple[Record, ...]:
        return tuple(r for r in self.records if fails_run(r.status, self.strict))

    @property
    def warnings(self) -> tuple[Record, ...]:
        """Warn rows: right values, something else wrong (see harness.record.STATUSES)."""
        return tuple(r for r in self.records if r.status == "warn")

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        """The failures' diagnoses; where nothing failed, one line per row (a skip with its
        reason, so a row that did not run is never read as a pass)."""
        if self.ok:
            return "\n".join(_row_line(r) for r in self.records)
        return "\n\n".join(r.message for r in self.failures)

    def to_frame(self):
        from harness.report import to_frame

        return to_frame(self.records)


def _row_line(r: Record) -> str:
    """One row in a line: what ran where, and a skip's, warning's or xfail's first line."""
    line = f"{r.check} {r.dtype} {r.device}: {r.status}"
    if r.status in ("skip", "warn", "xfail") and r.message:
        line += f" ({r.message.strip().splitlines()[0][:200]})"
    return line


def _name_of(fn) -> str:
    """A readable name: a custom op's qualified name ("mylib::op"), the Function class for
    `MyFn.apply`, else the function's name."""
    if op := custom_op_name(fn):
        return op
    owner = getattr(fn, "__self__", None)
    if isinstance(owner, type):
        return owner.__name__
    return getattr(fn, "__name__", None) or type(fn).__name__


def _module_case(module: nn.Module, inputs, name: str, grad, twice: bool | None,
                 reference=None, **options) -> Case:
    """Parameters become checked inputs (named like `layer2.weight`), via functional_call."""
    params = dict(module.named_parameters())
    buffers = dict(module.named_buffers())
    names = list(params) + list(buffers)
    n_state = len(names)

    def fn(*args):
        state = dict(zip(names, args[:n_state]))
        return torch.func.functional_call(module, state, tuple(args[n_state:]))

    tensors = ([p.detach().requires_grad_(True) for p in params.values()]
               + [b.detach() for b in buffers.values()]
               + [x.detach().requires_grad_(x.requires_grad) for x in inputs])
    labels = names + [f"input {i}" for i in range(len(inputs))]
    ref = None
    if reference is not None:  # a module with the same parameters, or a plain function
        def ref(*args):
            if isinstance(reference, nn.Module):
                state = dict(zip(names, args[:n_state]))
                return torch.func.functional_call(reference, state, tuple(args[n_state:]))
            return reference(*args[n_state:])

    return _tensor_case(fn, tensors, name, grad, input_names=tuple(labels),
                        twice_differentiable=twice, reference=ref, module=module, **options)


def _signature_names(fn, count: int) -> tuple[str, ...]:
    """Positional parameter names of `fn`, so failures say `w1[37, 512]`, not `input 2`."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return ()
    names = [p.name for p in params
             if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)][:count]
    return tuple(names) if len(names) == count else ()


def _tensor_case(fn, tensors, name, grad, **options) -> Case:
    floats = [t for t in tensors if isinstance(t, torch.Tensor)
              and (t.is_floating_point() or t.is_complex())]
    if not floats:
        raise ValueError("check_gradients: no floating-point or complex tensor among the inputs")
    dtype = next((t.dtype for t in floats if t.requires_grad), floats[0].dtype)
    device = str(floats[0].device)
    frozen = tuple(t.detach().clone().requires_grad_(t.requires_grad) for t in tensors)
    return Case(name=name, fn=fn, inputs=lambda gen: frozen, grad=grad, dtypes=(dtype,),
                devices=(device,), source=CHECK_GRADIENTS, **options)


SHORT_FORMS: dict[str, tuple[str, ...]] = {
    "gradients": ("analytic", "fd", "second-order"),
    "first-order": ("analytic", "fd"),
}
"""`checks=` names for narrow nets: the gradient values alone (the net before every family ran
by default), or first derivatives alone."""


def check_gradients(
    fn: Callable | nn.Module,
    *inputs: torch.Tensor,
    grad: Callable | None = None,
    reference: Callable | nn.Module | None = None,
    checks: Iterable[str] | str | None = None,
    twice_differentiable: bool | None = None,
    name: str | None = None,
    seed: int | None = None,
    settings: Settings | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    strict: bool = False,
    nondeterministic_tol: float = 0.0,
    opt_in: Iterable[str] = (),
    fullgraph: bool = False,
) -> GradientReport:
    """Check the gradients of `fn` at `inputs` (those with requires_grad; all float ones if none).

    `fn` may be an nn.Module: its parameters are checked too and named in failures. `grad` is
    an optional analytic gradient (see harness.Case). `reference` is a reference
    implementation with fn's signature (the eager composition a kernel replaces; for a module,
    a module with the same parameter names, or a function of the inputs): fn's output,
    gradient, second order and jvp are held to its float64 autograd, in fn's dtype and in
    bfloat16 (float16 too on CUDA). With no `checks`, every family that
    applies runs, as `harness check` runs them (forward mode, batched, layouts, undefined
    gradients, the semantics checks...); `checks` names families, or a short form of
    SHORT_FORMS ("gradients": analytic, fd and second order). Double backward is checked;
    a backward torch cannot differentiate is a skip where it is marked @once_differentiable
    or `twice_differentiable=False` says so, and a failure where it silently returns no
    graph (`twice_differentiable=True` demands a double backward in every case). `rtol` /
    `atol` replace the tolerance table's (Case.rtol, Case.atol): for a function approximate
    by design; every row they decided says so. A finding that is not a wrong value (a tensor
    kept on ctx outside save_for_backward) is a warn row, which fails the report only when
    `strict`. `nondeterministic_tol`: the spread between runs of the backward you accept
    (Case.nondeterministic_tol; the backward-determinism and reentrancy checks). `opt_in`
    adds opt-in families to the defaults, as the command line's flags do
    (`opt_in=("backward-determinism",)` is `--determinism`). `fullgraph`: the compiled check
    compiles with fullgraph=True, so a graph break fails. `seed` (default 0) or
    `settings`; both, with different seeds, is an error. The items come from the same
    harness.plan.Selection as `harness check`'s and the pytest plugin's. Returns a
    GradientReport of records.
    """
    for i, x in enumerate(inputs):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"check_gradients: input {i} is {type(x).__name__}, not a tensor")
    if isinstance(checks, str):
        checks = SHORT_FORMS.get(checks, (checks,))
    if checks is not None:
        checks = tuple(checks)
        known = [spec.name for spec in CHECKS.values() if spec.applies("case")]
        unknown = [c for c in checks if c not in known]
        if unknown:
            raise ValueError(f"check_gradients: unknown checks {unknown}; known: {known}; "
                             f"short forms: {list(SHORT_FORMS)}")
    name = name or _name_of(fn)
    if isinstance(fn, nn.Module):
        case = _module_case(fn, inputs, name, grad, twice_differentiable, reference,
                            rtol=rtol, atol=atol, nondeterministic_tol=nondeterministic_tol,
                            fullgraph=fullgraph)
    else:
        case = _tensor_case(fn, inputs, name, grad, twice_differentiable=twice_differentiable,
                            input_names=_signature_names(fn, len(inputs)),
                            reference=reference, rtol=rtol, atol=atol,
                            nondeterministic_tol=nondeterministic_tol, fullgraph=fullgraph)
    if settings is not None and seed is not None and seed != settings.seed:
        raise ValueError(f"check_gradients: seed={seed} and settings=Settings(seed="
                         f"{settings.seed}, ...) disagree; give one of them")
    if any(isinstance(x, torch.Tensor) and x.is_sparse for x in inputs):
        # the other families perturb dense tensors
        sparse = tuple(spec.name for spec in CHECKS.values() if spec.sparse)
        dense = [c for c in (*(checks or ()), *opt_in) if c not in sparse]
        if dense:
            raise ValueError(f"check_gradients: a sparse input is checked by {list(sparse)} "
                             f"alone; {dense} perturb dense tensors: drop checks= (or name "
                             "only those), or pass the input dense")
        checks = sparse
    elif case.dtypes[0].is_complex and checks is not None:  # complex ones as real pairs too
        checks = (*(spec.name for spec in CHECKS.values()
                    if spec.dtypes == "complex" and spec.name not in checks), *checks)
    settings = settings or Settings(seed=seed or 0)
    items = Selection(checks=checks, opt_in=tuple(opt_in)).items([case])
    records = [run_item(item, settings) for item in items]
    return GradientReport(tuple(records), strict)


def assert_gradients(fn: Callable | nn.Module, *inputs: torch.Tensor, **kwargs) -> GradientReport:
    """check_gradients, raising one AssertionError that carries every failed check's
    diagnosis; a warn row (not strict) becomes a HarnessWarning, which pytest lists."""
    __tracebackhide__ = True
    report = check_gradients(fn, *inputs, **kwargs)
    if not report.ok:
        raise AssertionError(str(report))
    for record in report.warnings:
        warnings.warn(HarnessWarning(record.message), stacklevel=2)
    return report
