"""A torch.library custom operator's registration (Case.op): what torch.compile and export
rely on and no gradient check sees.

torch.library.opcheck runs four tests: the schema (mutation and aliasing declared
truthfully), the fake (meta) kernel against the real one, the autograd registration (a
backward at the Autograd key), and AOT dispatch with dynamic shapes (the op traced, forward
and backward, as torch.compile does). Each is its own family here, one row per test, run at
the arguments fn actually passes the op (recorded under a dispatch mode during one call), and
its failure translated: what was declared, what was observed, what to change.
"""

from __future__ import annotations

import contextlib
import re
import warnings

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from harness.case import custom_op_name
from harness.checks.spec import Check, Finding
from harness.inputs import Example

NOT_A_CUSTOM_OP = ("fn is not a torch.library custom op and the case names none "
                   "(Case.op): no registration to check")


def _overload(op) -> torch._ops.OpOverload:
    if isinstance(op, str):
        namespace, name = op.split("::", 1)
        name, _, overload = name.partition(".")
        packet = getattr(getattr(torch.ops, namespace), name)
        return getattr(packet, overload or "default")
    if isinstance(op, torch._library.custom_ops.CustomOpDef):
        return op._opoverload
    if isinstance(op, torch._ops.OpOverloadPacket):
        return op.default
    return op


class _Recorder(TorchDispatchMode):
    """The arguments of the first call of `op` below autograd."""

    def __init__(self, op: torch._ops.OpOverload):
        super().__init__()
        self.op, self.call = op, None

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is self.op and self.call is None:
            self.call = (args, kwargs)
        return func(*args, **kwargs)


def _leaf(x):
    if isinstance(x, torch.Tensor):
        y = x.detach().clone()
        return y.requires_grad_() if y.is_floating_point() or y.is_complex() else y
    return x


def recorded_call(ex: Example, op: torch._ops.OpOverload) -> tuple[tuple, dict] | None:
    """The arguments fn passes the op at the example's inputs, as fresh leaves (floating
    tensors require grad, as the checked inputs do); None when fn never calls it."""
    recorder = _Recorder(op)
    with torch.no_grad(), recorder:
        ex.fn(*ex.leaves())
    if recorder.call is None:
        return None
    args, kwargs = recorder.call
    return tuple(_leaf(a) for a in args), {k: _leaf(v) for k, v in kwargs.items()}


def _shape(text: str) -> str:
    dims = re.findall(r"-?\d+|s\d+", text)
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"


def diagnosis(test: str, exc: BaseException, name: str) -> str:
    """The failure in the harness's words: declared, observed, what to change."""
    text = " ".join(str(exc).split())
    if m := re.search(r"Argument (\w+) is not defined as mutable but was mutated", text):
        return (f"{name} writes to its input `{m[1]}` in place, but its schema says it mutates "
                f"nothing: declare it (custom_op(..., mutates_args=(\"{m[1]}\",))) or write "
                "to a copy; torch.compile trusts the schema and reorders or drops the write")
    if "alias" in text and test == "test_schema":
        return (f"{name} returns a view of (or the same tensor as) an input, which its "
                f"schema does not declare: return a copy (.clone()) ({text[:200]})")
    if m := re.search(r"Shapes (torch\.Size\(\[[^\]]*\]\)) and (torch\.Size\(\[[^\]]*\]\))",
                      text):
        return (f"the fake kernel returns shape {_shape(m[2])}, the real kernel "
                f"{_shape(m[1])}: fix register_fake (it must return what the kernel returns, "
                "from the inputs' shapes alone)")
    if m := re.search(r"Strides are (\([^)]*\)) and (\([^)]*\))", text):
        return (f"the fake kernel returns strides {m[2]}, the real kernel {m[1]}: fix "
                "register_fake (match the real kernel's memory layout: empty_like, or "
                "torch.empty_strided)")
    for what in ("Dtypes", "Devices", "Strides"):
        if m := re.search(rf"{what} (\S+) and (\S+) are not equal", text):
            return (f"the fake kernel returns {what[:-1].lower()} {m[2].rstrip('!')}, the "
                    f"real kernel {m[1]}: fix register_fake")
    if "no autograd formula was registered" in text or (
            test == "test_autograd_registration" and "autograd kernel" in text):
        return (f"{name} has no backward at the Autograd key: register one with "
                f"{name.split('::')[-1]}.register_autograd(backward, setup_context=...) (a "
                "backward registered to a backend key, or none, fails under torch.compile)")
    if "convert all Tensors to FakeTensors" in text:
        where = re.search(r"Found in ([\w.]+)\(", text)
        return ("under torch.compile the backward used a real tensor it did not get from "
                f"ctx (in {where[1] if where else 'an op'}): the backward may read only what "
                "setup_context saves (ctx.save_for_backward(...), or ctx attributes set "
                "from its inputs and output); save what it needs there, not in a global, a "
                "closure or an attribute set by the kernel")
    return f"{test} raised {type(exc).__name__}: {text[:300]}"


WHAT = {
    "test_schema": "the schema's mutation and aliasing declarations hold",
    "test_autograd_registration": "the backward is registered at the Autograd key",
    "test_faketensor": "the fake kernel returns the real kernel's shapes, dtypes and strides",
    "test_aot_dispatch_dynamic": "the op traces forward and backward under AOT autograd with "
                                 "dynamic shapes, as torch.compile does (less its common-"
                                 "subexpression pass), and agrees with eager",
}


def _without_cse(test: str):
    """AOT dispatch without the partitioner's common-subexpression pass: the pass imports
    torch._inductor's pattern matcher and lowerings (0.6 s of a worker's first such test,
    0.9 s in all) to merge duplicate nodes of the joint graph, an optimisation that changes
    no value (random and mutating nodes are never merged); the registrations the test
    exercises (fake kernel, autograd, functionalization) are traced the same. Other tests
    run as torch runs them."""
    if test != "test_aot_dispatch_dynamic":
        return contextlib.nullcontext()
    import torch._functorch.config

    return torch._functorch.config.patch(cse=False)


def _run(test: str):
    def check(ex: Example, settings) -> Finding:
        name = custom_op_name(ex.case.op) or str(ex.case.op)
        try:
            op = _overload(ex.case.op)
        except (AttributeError, RuntimeError, ValueError) as exc:
            return Finding(error=f"{ex.case.name}: Case.op {name!r} names no registered "
                                 f"operator ({exc}); pass the CustomOpDef or 'ns::name'")
        call = recorded_call(ex, op)
        if call is None:
            return Finding(error=f"{ex.case.name}: fn never called {name} at these inputs; "
                                 "Case.op must name the op fn calls")
        args, kwargs = call
        with warnings.catch_warnings(), _without_cse(test):
            warnings.simplefilter("ignore")  # opcheck's anomaly-mode chatter
            result = torch.library.opcheck(op, args, kwargs, test_utils=(test,),
                                           raise_exception=False)[test]
        shapes = ", ".join(str(tuple(a.shape)) for a in args if isinstance(a, torch.Tensor))
        note = f"torch.library.opcheck {test} on {name} at the arguments fn passes it ({shapes})"
        if result == "SUCCESS":
            return Finding(notes=(f"{WHAT[test]}: {note}",))
        return Finding(problems=(diagnosis(test, result, name),), notes=(note,))

    return check


_SPEC = dict(needs_case="op", without=NOT_A_CUSTOM_OP, dtypes="highest")
OPCHECK_SCHEMA = Check("opcheck-schema", _run("test_schema"), cost=0.02, **_SPEC,
                       title="custom op schema", doc=WHAT["test_schema"])
OPCHECK_AUTOGRAD = Check("opcheck-autograd-registration", _run("test_autograd_registration"),
                         cost=0.01, **_SPEC, title="custom op autograd registration",
                         doc=WHAT["test_autograd_registration"])
OPCHECK_FAKE = Check("opcheck-fake", _run("test_faketensor"), cost=0.01, **_SPEC,
                     title="custom op fake kernel", doc=WHAT["test_faketensor"])
OPCHECK_AOT = Check("opcheck-aot-dispatch", _run("test_aot_dispatch_dynamic"), cost=0.3,
                    **_SPEC, title="custom op under AOT dispatch",
                    doc=WHAT["test_aot_dispatch_dynamic"])
OPCHECKS = (OPCHECK_SCHEMA, OPCHECK_AUTOGRAD, OPCHECK_FAKE, OPCHECK_AOT)
