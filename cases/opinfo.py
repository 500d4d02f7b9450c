"""Every differentiable PyTorch operator as cases, from torch's own OpInfo database.

Registered through the `harness.cases` entry point like any third-party plugin, as an opt-in
source: `harness check --cases 'opinfo/*'` (or a narrower pattern, or `--tag opinfo`) builds
it; a default run never imports the database. One case per operator and sample input (the
first SAMPLES_PER_OP samples), float64, finite differences as the reference (OpInfo gives no
analytic gradient), second order where the OpInfo supports gradgrad.

The database (`torch.testing._internal.common_methods_invocations.op_db`) is private to torch
and needs the `expecttest` package; when it is missing or its shape changed, the plugin becomes
one error row saying so, and the other cases still run.
"""

from __future__ import annotations

import inspect
import random
import warnings
from collections.abc import Callable

import torch

from harness import Case, OptInCases

SAMPLES_PER_OP = 3
TAGS = ("opinfo",)


def _is_grad_tensor(x) -> bool:
    return isinstance(x, torch.Tensor) and x.requires_grad and x.is_floating_point()


def _is_tensor_list(x) -> bool:
    return isinstance(x, (list, tuple)) and len(x) > 0 and all(
        isinstance(t, torch.Tensor) for t in x)


def _slots(sample) -> list[tuple[str, object]]:
    """(label, value) for the sample's input, positional args and kwargs, in call order."""
    return ([("input", sample.input)] + [(f"args[{k}]", a) for k, a in enumerate(sample.args)]
            + [(f"kwargs[{k!r}]", v) for k, v in sample.kwargs.items()])


def _differentiable(sample) -> tuple[list[torch.Tensor], list[str]]:
    """The tensors that require grad, flattened out of tensor lists, with their labels."""
    tensors, labels = [], []
    for label, value in _slots(sample):
        if _is_tensor_list(value):
            for k, t in enumerate(value):
                if _is_grad_tensor(t):
                    tensors.append(t)
                    labels.append(f"{label}[{k}]")
        elif _is_grad_tensor(value):
            tensors.append(value)
            labels.append(label)
    return tensors, labels


def _partial_view(t: torch.Tensor) -> tuple | None:
    """(size, stride, offset, storage elements) when `t` sees only part of its storage (the
    as_strided samples), else None: an operator like as_strided reads past the view, so fn
    rebuilds the view inside its storage."""
    if t.layout != torch.strided:  # sparse samples have no single storage to rebuild
        return None
    storage = t.untyped_storage().nbytes() // t.element_size()
    if t.numel() >= storage:
        return None
    return tuple(t.shape), t.stride(), t.storage_offset(), storage


def _in_storage(x: torch.Tensor, view: tuple, storage: torch.Tensor) -> torch.Tensor:
    """`x` written into a copy of its sample's storage and viewed as the sample was: the
    elements outside the view are constants, as for gradcheck, which perturbs the view."""
    size, stride, offset, _ = view
    full = storage.to(device=x.device, dtype=x.dtype).clone()
    full.as_strided(size, stride, offset).copy_(x)
    return full.as_strided(size, stride, offset)


def _real_outputs(output) -> tuple[torch.Tensor, ...]:
    """Floating outputs only (indices carry no gradient); complex ones as (real, imag) pairs,
    the same information gradcheck compares."""
    items = output if isinstance(output, (tuple, list)) else (output,)
    flat = []
    for item in items:
        flat.extend(item if isinstance(item, (tuple, list)) else (item,))
    return tuple(torch.view_as_real(t.resolve_conj()) if t.is_complex() else t for t in flat
                 if isinstance(t, torch.Tensor) and (t.is_floating_point() or t.is_complex()))


def _recomposed(op, sample, wrapped: bool = True) -> Callable[..., tuple[torch.Tensor, ...]]:
    """fn(*differentiable tensors): puts them back where the sample had them (lists, args,
    kwargs), calls the operator through its OpInfo gradcheck_wrapper (which, e.g., makes
    eigh's input Hermitian; not where `wrapped` is False: wrapper_fits) and applies the
    sample's output_process_fn_grad."""
    slots = _slots(sample)
    tensors, _ = _differentiable(sample)
    views = [_partial_view(t) for t in tensors]
    storages = [None if v is None else t.detach().as_strided((v[3],), (1,), 0).clone()
                for t, v in zip(tensors, views)]

    # What each slot gets, decided once (fn runs thousands of times per sample): the next
    # differentiable tensor, a list with some of them, or the sample's own value.
    plan = [(label.startswith("kwargs"), value,
             [_is_grad_tensor(t) for t in value] if _is_tensor_list(value) else None,
             _is_grad_tensor(value)) for label, value in slots]
    names = list(sample.kwargs)
    wrapper, operator, post = op.gradcheck_wrapper, op.get_op(), sample.output_process_fn_grad
    if not wrapped:
        wrapper = _call
    if wrapper is _torch_seeded() and _cpu_only():
        wrapper = _cpu_seeded

    def fn(*tensors):
        device = tensors[0].device
        feed = iter(x if v is None else _in_storage(x, v, s)
                    for x, v, s in zip(tensors, views, storages))
        args, kwargs = [], []
        for is_kwarg, value, fed, grad in plan:
            if fed is not None:
                value = type(value)(next(feed) if f else t.to(device)
                                    for t, f in zip(value, fed))
            elif grad:
                value = next(feed)
            elif isinstance(value, torch.Tensor):
                value = value.to(device)
            (kwargs if is_kwarg else args).append(value)
        output = wrapper(operator, *args, **dict(zip(names, kwargs)))
        if post is not None:
            output = post(output)
        outs = _real_outputs(output)
        return outs if keep is None else tuple(outs[k] for k in keep)

    keep = None
    # Outputs autograd treats as constants (native_layer_norm's mean and rstd) are left out,
    # as gradcheck leaves them out: their values move with the input but carry no gradient.
    try:
        outs = fn(*(t.detach().clone().requires_grad_() for t in tensors))
        keep = [k for k, o in enumerate(outs) if o.requires_grad]
    except Exception:  # the checks will run it again and report the error as a row
        pass
    return fn


def _call(operator, *args, **kwargs):
    return operator(*args, **kwargs)


def wrapper_fits(op, sample) -> bool:
    """Whether the OpInfo's gradcheck_wrapper takes (operator, *args, **kwargs) as torch's
    gradient tests call it (autograd_function_db's sort entries give `lambda y, ind: y`,
    which no test of torch's calls: those are called directly)."""
    try:
        inspect.signature(op.gradcheck_wrapper).bind(
            op.get_op(),
            *(value for label, value in _slots(sample) if not label.startswith("kwargs")),
            **sample.kwargs)
    except TypeError:
        return False
    except ValueError:  # no signature to read: trust it
        return True
    return True


def torch_marks(op) -> dict[str, str]:
    """What torch's own suite does with this operator's gradient tests on CPU float64:
    {"fd", "second-order" or "forward-ad": "skip" or "expected failure"} from the OpInfo's
    DecorateInfo entries for test_fn_grad, test_fn_gradgrad and test_forward_mode_AD."""
    import unittest

    marks = {}
    for check, cls, test in (("fd", "TestBwdGradients", "test_fn_grad"),
                             ("second-order", "TestBwdGradients", "test_fn_gradgrad"),
                             ("forward-ad", "TestFwdGradients", "test_forward_mode_AD")):
        for info in op.decorators:
            if not hasattr(info, "is_active") or not info.is_active(
                    cls, test, "cpu", torch.float64, {}):
                continue
            for decorator in info.decorators:
                if decorator is unittest.expectedFailure:
                    marks[check] = "expected failure"
                elif getattr(decorator, "__qualname__", "").startswith("skip."):
                    marks.setdefault(check, "skip")
    return marks


def _case_name(op, k: int, prefix: str = "opinfo") -> str:
    variant = f".{op.variant_test_name}" if op.variant_test_name else ""
    return f"{prefix}/{op.name}{variant}/{k}"


def _sample_case(op, k: int, sample, marks: dict[str, str], prefix: str = "opinfo",
                 tags: tuple[str, ...] = TAGS) -> Case | None:
    """The case of one sample, without the checks torch's own suite skips or expects to
    fail for this operator (None when none is left)."""
    wanted = ("fd", "undefined-grad", "second-order") if op.supports_gradgrad else (
        "fd", "undefined-grad")
    if op.check_batched_grad:
        wanted += ("batched-grad",)
    if op.supports_forward_ad and "forward-ad" not in marks:
        wanted += ("forward-ad",)
        if op.check_batched_forward_grad:
            wanted += ("batched-forward-ad",)
    # gradcheck's undefined-gradient and batched-gradient checks run inside test_fn_grad: its
    # marks cover them too
    checks = [c for c in wanted if c not in marks and not (
        c in ("undefined-grad", "batched-grad") and "fd" in marks)]
    if not checks:
        return None
    tensors, labels = _differentiable(sample)
    frozen = tuple(t.detach().clone() for t in tensors)
    shapes = ", ".join(f"{label} {tuple(t.shape)}" for label, t in zip(labels, frozen))
    nondet = float(op.gradcheck_nondet_tol or 0.0)
    wrapped = wrapper_fits(op, sample)
    return Case(
        name=_case_name(op, k, prefix), fn=_recomposed(op, sample, wrapped),
        inputs=lambda gen, frozen=frozen: tuple(t.clone().requires_grad_() for t in frozen),
        input_names=tuple(labels), dtypes=(torch.float64,), devices=("cpu", "cuda"),
        checks=(*checks, *(("reentrancy",) if nondet else ())),
        twice_differentiable=bool(op.supports_gradgrad), nondeterministic_tol=nondet,
        tags=tags + (("nondeterministic",) if nondet else ()),
        description=f"OpInfo {op.name} sample {k}: {shapes or 'no differentiable tensor'}"
                    + "".join(f"; torch's own suite marks {c} {m}, not run"
                              for c, m in marks.items())
                    + ("" if wrapped else "; its gradcheck_wrapper does not "
                       "take (operator, *args), so the operator is called directly"),
    )


def _op_db() -> list:
    try:
        with warnings.catch_warnings():  # its import warns about beta and deprecated ops
            warnings.simplefilter("ignore")
            from torch.testing._internal import common_methods_invocations
            from torch.testing._internal.common_methods_invocations import op_db
    except ImportError as exc:
        raise ImportError(
            f"torch's OpInfo database could not be imported ({exc}). It needs the expecttest "
            "package (pip install expecttest) and is private to torch "
            "(torch.testing._internal.common_methods_invocations.op_db), so a torch release "
            "may move or change it") from exc
    if _cpu_only():
        common_methods_invocations.wrapper_set_seed = _cpu_seeded
    return list(op_db)


def _cpu_only() -> bool:
    """No accelerator here (torch.accelerator: torch 2.6 on; before it, torch's own seeding
    is kept)."""
    accelerator = getattr(torch, "accelerator", None)
    return accelerator is not None and not accelerator.is_available()


def _cpu_seeded(op, *args, **kwargs):
    """torch.testing's `wrapper_set_seed`, which random operators' OpInfos call on every
    evaluation (dropout, normal, rrelu, ...), on a machine with no accelerator: the same CPU
    generator state, without torch.manual_seed's queued seeding of every accelerator (it
    formats the call stack for each: ~1 ms an evaluation, a fifth of the first-order sweep).
    Installed by _op_db (and _recomposed, for an OpInfo's gradcheck_wrapper) only where no
    accelerator is available."""
    from torch.testing._utils import freeze_rng_state

    with freeze_rng_state():
        torch.default_generator.manual_seed(42)
        return op(*args, **kwargs)


def _torch_seeded():
    from torch.testing._utils import wrapper_set_seed

    return wrapper_set_seed


def gradient_ops(ops: list | None = None) -> list:
    """The OpInfos with autograd support for float64 on CPU."""
    return [op for op in (_op_db() if ops is None else ops)
            if op.supports_autograd and torch.float64 in op.supported_backward_dtypes("cpu")]


def op_samples(op, samples_per_op: int = SAMPLES_PER_OP) -> list:
    """The operator's first float64 CPU samples that have a tensor to differentiate.

    The same samples as `op.sample_inputs`, drawn from the generator beneath it: that wraps
    it in torch's TrackedInputIter, which walks the call stack (`inspect.stack()`, reading
    every frame's source) twice per operator to find a unittest method, and reseeds before
    each sample; the reseeding alone is what fixes the values, so it is kept: the CPU
    generator, `random` and numpy's, as torch's set_rng_seed seeds them, without
    torch.manual_seed's queued seeding of every accelerator (it formats the call stack for
    each, ~1 ms a sample, and no CPU sample reads those generators)."""
    from torch.testing._internal.common_utils import SEED

    generated = iter(op.sample_inputs_func(op, "cpu", torch.float64, True))
    samples = []
    for _ in range(samples_per_op):
        _seed_cpu(SEED)
        sample = next(generated, None)
        if sample is None:
            break
        samples.append(sample)
    return [s for s in samples if _differentiable(s)[0]]


def _seed_cpu(seed: int) -> None:
    torch.default_generator.manual_seed(seed)
    random.seed(seed)
    try:
        import numpy
    except ImportError:
        return
    numpy.random.seed(seed)


def opinfo_cases(samples_per_op: int = SAMPLES_PER_OP, ops: list | None = None,
                 follow_torch_marks: bool = True, prefix: str = "opinfo",
                 tags: tuple[str, ...] = TAGS) -> list[Case]:
    """One case per autograd-supporting operator and sample input (of op_db, or of `ops`:
    another list of OpInfos), named `prefix/op/k` and tagged `tags`. With
    `follow_torch_marks`, checks torch's own suite skips or expects to fail are left out."""
    cases = []
    with warnings.catch_warnings():  # deprecation notes of the operators' first calls
        warnings.simplefilter("ignore")
        for op in gradient_ops(ops):
            marks = torch_marks(op) if follow_torch_marks else {}
            for k, sample in enumerate(op_samples(op, samples_per_op)):
                case = _sample_case(op, k, sample, marks, prefix, tags)
                if case is not None:
                    cases.append(case)
    return cases


OPINFO = OptInCases(
    prefix="opinfo", load=opinfo_cases, tags=TAGS,
    description=f"every OpInfo operator with autograd x {SAMPLES_PER_OP} samples, float64 "
                "(needs expecttest; about 5 s to import)")
