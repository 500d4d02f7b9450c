"""Phrases for the autograd-semantics checks (accumulation, zeroing, retain_graph, ...)."""

from __future__ import annotations

import math
from dataclasses import replace

import torch

from harness.diagnose.mismatch import Mismatch, header, reproduce_line
from harness.record import Record
from harness.tolerances import Tolerance, tolerance_for

__all__ = [
    "AUTOGRAD_GRAD_TOUCHED",
    "CLONE_CHANGES_GRAD",
    "CONJUGATE_MISSING",
    "CLONE_DROPS_GRAPH",
    "DETACH_COPIES",
    "DETACH_KEEPS_GRAPH",
    "FROZEN_STILL_TRACKED",
    "IMPLICIT_GRAD_ACCEPTED",
    "MUTATED_COTANGENT",
    "MUTATED_INPUT",
    "NON_LEAF_GRAD_SET",
    "NO_COMPLEX_INPUT",
    "NO_SPARSE_INPUT",
    "NOTHING_SAVED",
    "NO_NON_LEAF_WARNING",
    "RETAINED_GRAD_NONE",
    "SCALAR_OUTPUT",
    "SPARSE_VIEW",
    "STEP_NEVER_UPDATES",
    "STEP_NO_GRAD",
    "ZERO_GRAD_NOT_NONE",
    "ZERO_GRAD_NOT_ZEROS",
    "accumulation_phrase",
    "after_reset_phrase",
    "aliases_phrase",
    "backward_under_phrase",
    "backward_vs_grad_phrase",
    "batched_mismatch_phrase",
    "batched_raises_phrase",
    "batched_shape_phrase",
    "chain_phrase",
    "compile_error_phrase",
    "crashed_phrase",
    "error_hint",
    "compiled_mismatch_phrase",
    "complex_view_phrase",
    "graph_under_phrase",
    "interrupted_record",
    "intermediate_phrase",
    "metadata_phrase",
    "layout_changes_output_phrase",
    "low_precision_bias_note",
    "low_precision_bias_phrase",
    "low_precision_element_phrase",
    "dtype_unsupported_phrase",
    "no_float64_phrase",
    "layout_forward_refuses_phrase",
    "layout_mismatch_phrase",
    "layout_raises_phrase",
    "fallback_op",
    "fwd_over_rev_phrase",
    "graph_breaks_phrase",
    "jvp_mismatch_phrase",
    "no_batching_phrase",
    "no_gradient_phrase",
    "nothing_compiled_phrase",
    "no_jvp_phrase",
    "nondeterminism_measured",
    "nondeterministic_phrase",
    "per_sample_phrase",
    "retain_graph_failed_phrase",
    "second_backward_phrase",
    "second_order_not_compiled_phrase",
    "semantic_record",
    "semantic_skip",
    "sgd_phrase",
    "sparse_convention_note",
    "timed_out_phrase",
    "undefined_crash_phrase",
    "undefined_mismatch_phrase",
    "undefined_nonzero_phrase",
    "with_state_note",
    "with_worker_note",
    "vmap_fallback_phrase",
    "shares_cotangent_phrase",
    "step_accumulates_phrase",
    "stuck_parameters_phrase",
    "tolerance_of",
    "training_record",
    "training_skip",
    "unexpected_error_phrase",
    "unused_parameters_phrase",
]

AUTOGRAD_GRAD_TOUCHED = "torch.autograd.grad changed .grad, which it must leave alone, for: "
ZERO_GRAD_NOT_NONE = ("optimizer.zero_grad() left a .grad tensor; since torch 2.0 it sets .grad "
                      "to None by default (set_to_none=True)")
ZERO_GRAD_NOT_ZEROS = "optimizer.zero_grad(set_to_none=False) did not leave zero tensors"
NOTHING_SAVED = ("the graph saved no tensors (a pure addition or similar), so a second "
                 "backward without retain_graph succeeds: nothing to free")
NON_LEAF_GRAD_SET = "without retain_grad(), a non-leaf .grad should stay None, but is set: "
NO_NON_LEAF_WARNING = "reading a non-leaf .grad without retain_grad() did not warn"
RETAINED_GRAD_NONE = "retain_grad() was called but .grad is None (no gradient flowed) for: "
SCALAR_OUTPUT = "scalar output: backward() needs no explicit gradient"
IMPLICIT_GRAD_ACCEPTED = ("backward() on a non-scalar output succeeded without a gradient; "
                          "torch raises 'grad can be implicitly created only for scalar outputs'")
DETACH_KEEPS_GRAPH = "detach() returned a tensor that still has a grad_fn or requires grad"
DETACH_COPIES = "detach() copied the data instead of sharing storage"
CLONE_DROPS_GRAPH = "clone() of the output has no grad_fn: the graph was cut"
CLONE_CHANGES_GRAD = "gradients through clone() differ from gradients without it, for: "
FROZEN_STILL_TRACKED = "with requires_grad_(False) on every input, the output still requires grad"
MUTATED_INPUT = "fn or its backward changed an input in place: "
MUTATED_COTANGENT = "the backward changed the incoming gradient (grad_output) in place"
def aliases_phrase(label: str, other: str) -> str:
    return (f"the .grad of {label} shares storage with the .grad of {other}: zeroing or "
            "updating one changes the other; give each .grad its own tensor (e.g. .clone())")


def shares_cotangent_phrase(label: str) -> str:
    return (f"the .grad of {label} shares storage with the gradient passed to backward() "
            "(torch does this for views): clone that gradient before reusing it")


def tolerance_of(ex) -> Tolerance:
    return tolerance_for(ex.dtype, ex.case.tolerances)


def _first_line(exc: Exception, limit: int = 160) -> str:
    """`TypeName: first line of the message`, cut to `limit` characters."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:limit] if lines else ''}"


def _noted(record: Record, note: str) -> Record:
    message = f"{record.message}\n  note: {note}" if record.message else note
    return replace(record, message=message)


def _at(m: Mismatch) -> str:
    return (f"{m.count} of {m.total} elements differ, worst at {m.where}: "
            f"{m.actual:.6g} instead of {m.expected:.6g}")


def accumulation_phrase(k: int, m: Mismatch) -> str:
    return (f"after {k} backward passes (retain_graph=True), .grad of {m.label} is not {k} x "
            f"the single gradient: {_at(m)}; {m.pattern}. A backward that keeps state between "
            "calls (right the first time, wrong after), or a hook that changes .grad?")


def after_reset_phrase(reset: str, m: Mismatch) -> str:
    return (f"after {reset}, the next backward did not give the single gradient for "
            f"{m.label}: {_at(m)}; {m.pattern}")


def second_backward_phrase(saved: int) -> str:
    return (f"the graph saved {saved} tensor(s), yet a second backward without retain_graph "
            "succeeded: saved tensors are not freed (a custom Function that keeps them "
            "elsewhere?)")


def unexpected_error_phrase(message: str) -> str:
    return f"raised an unexpected error: {message.splitlines()[0][:160]}"


def retain_graph_failed_phrase(message: str) -> str:
    return f"a second backward with retain_graph=True failed: {message.splitlines()[0][:160]}"


def intermediate_phrase(m: Mismatch) -> str:
    return f"retained .grad of intermediate {m.label} disagrees with the analytic one: {_at(m)}"


def backward_vs_grad_phrase(m: Mismatch) -> str:
    return (f"backward(gradient=v) into .grad differs from torch.autograd.grad with the same v "
            f"for {m.label}: {_at(m)}; {m.pattern}")


def graph_under_phrase(mode: str) -> str:
    return f"under torch.{mode}() the output still has a grad_fn or requires grad"


def backward_under_phrase(mode: str) -> str:
    return f"backward through an output made under torch.{mode}() did not raise"


def nondeterministic_phrase(label: str, spread: float, scale: float, runs: int = 2,
                            declared: float = 0.0) -> str:
    allowed = (f", more than the declared nondeterministic_tol {declared:.3g}" if declared
               else "; if the kernel is meant to be nondeterministic (atomics), declare "
               "Case(nondeterministic_tol=...)")
    return (f"{runs} backward passes with the same cotangent differ for {label}: spread "
            f"{spread:.3g} (largest gradient {scale:.3g}){allowed}; a nondeterministic "
            "kernel or a backward that keeps state between calls")


def layout_raises_phrase(layout: str, exc: Exception) -> str:
    text = f"{type(exc).__name__}: {str(exc)[:160]}"
    if "view size is not compatible" in str(exc):
        return (f"with {layout} inputs and cotangents, backward calls .view on a "
                f"non-contiguous tensor ({text}); use .reshape or .contiguous() first")
    return f"with {layout} inputs and cotangents, fn or backward raises: {text}"


def layout_forward_refuses_phrase(layout: str, exc: Exception) -> str:
    return (f"fn itself does not take {layout} inputs ({type(exc).__name__}: "
            f"{str(exc)[:100]}): not compared")


def layout_changes_output_phrase(layout: str) -> str:
    return (f"fn's output changes with {layout} inputs (a random op filling memory in order?): "
            "gradients not compared")


def layout_mismatch_phrase(layout: str, label: str, diff: float, scale: float) -> str:
    return (f"with {layout} inputs and cotangents, the gradient of {label} differs from the "
            f"contiguous run by {diff:.3g} (largest {scale:.3g}): the code assumes contiguous "
            "memory (strides ignored)")


def no_jvp_phrase(exc: Exception) -> str:
    return (f"forward-mode AD does not run ({type(exc).__name__}: {str(exc)[:120]}); for a "
            "custom autograd.Function, add a jvp staticmethod (and ctx.save_for_forward)")


def jvp_mismatch_phrase(label: str, forward: float, reverse: float, fd: float,
                        odd_one: str | None) -> str:
    verdict = {"forward": "the jvp is wrong (reverse mode agrees with finite differences)",
               "reverse": "the backward is wrong (forward mode agrees with finite differences)"
               }.get(odd_one, "forward and reverse mode disagree")
    return (f"along a random direction of {label}: forward mode <w, J u> = {forward:.6g}, "
            f"reverse mode <Jᵀw, u> = {reverse:.6g}, finite differences {fd:.6g}: {verdict}")


def fwd_over_rev_phrase(label: str, forward: float, reverse: float) -> str:
    if not math.isfinite(reverse) or not math.isfinite(forward):
        which = "double backward" if not math.isfinite(reverse) else "forward-over-reverse"
        return (f"along a random direction of {label}: forward-over-reverse <r, H u> = "
                f"{forward:.6g}, double backward {reverse:.6g}: {which} is not finite")
    return (f"along a random direction of {label}: forward-over-reverse <r, H u> = "
            f"{forward:.6g}, double backward {reverse:.6g}: a jvp inside the backward is wrong "
            "(the second-order check holds double backward to finite differences)")


def batched_raises_phrase(path: str, exc: Exception) -> str:
    return f"{path} raises ({_first_line(exc)})"


def no_batching_phrase(what: str, failures: list[str]) -> str:
    """Why nothing ran batched, and what to add."""
    text = " ".join(failures)
    if "setup_context" in text:
        how = ("a custom autograd.Function in the old style (forward(ctx, ...)) cannot run "
               "under torch.func: write forward without ctx plus a setup_context staticmethod, "
               "then set generate_vmap_rule = True or write a vmap staticmethod")
    elif "vmap support" in text or "generate_vmap_rule" in text:
        how = ("a custom autograd.Function has no vmap rule: set generate_vmap_rule = True "
               "or write a vmap staticmethod")
    elif "item" in text or "data-dependent" in text.lower():
        how = ("the code reads values out of a tensor (.item(), .tolist(), Python control "
               "flow on data), which vmap cannot batch: use tensor ops (torch.where) instead")
    else:
        how = "an op it calls has no batching rule"
    return f"{what} does not run under vmap: {how}; " + "; ".join(failures)


def fallback_op(warning: str) -> str | None:
    """The op named in vmap's 'performance drop ... batching rule for aten::x' warning."""
    if "batching rule" not in warning:
        return None
    words = [w.strip(".,") for w in warning.split() if w.startswith("aten::")]
    return words[0] if words else None


def vmap_fallback_phrase(ops: list[str]) -> str:
    return (f"no batching rule for {', '.join(ops)}: vmap falls back to a slow loop there")


def batched_shape_phrase(path: str, label: str, got, want) -> str:
    return (f"{path} gives {label} shape {tuple(got)}, the loop of single calls "
            f"{tuple(want)}: a vmap rule returns the wrong out_dims")


def batched_mismatch_phrase(path: str, what: str, m: Mismatch) -> str:
    return (f"{path} differs from the loop of single {what} for {m.label}: {_at(m)} (the first "
            f"index is the batch element); {m.pattern}. A vmap rule (a custom Function's vmap "
            "staticmethod, or a batching rule of an op it calls) is wrong, or the code mixes "
            "batch elements")


def no_float64_phrase(dtype: str) -> str:
    return (f"fn does not run in float64, so there is no reference to hold its {dtype} "
            "gradient to")


def dtype_unsupported_phrase(dtype: str, device: str, exc: Exception) -> str:
    return (f"fn or its backward does not run in {dtype} on {device} ({_first_line(exc, 140)}); "
            "if it should, add the dtype to its kernels")


def low_precision_element_phrase(dtype: str, m: Mismatch) -> str:
    return (f"the {dtype} gradient of {m.label} differs from the float64 one beyond the "
            f"dtype's rounding and this gradient's measured noise: {_at(m)}; {m.pattern}")


def low_precision_bias_phrase(dtype: str, label: str, bias: float, allowed: float) -> str:
    return (f"the {dtype} gradient of {label} is {abs(bias):.2%} "
            f"{'larger' if bias > 0 else 'smaller'} than the float64 one on average (relative "
            f"error along the gradient {bias:+.2e}; rounding allows ±{allowed:.2e}): a "
            "systematic error, not rounding (a dtype-dependent constant or branch, or "
            "accumulation in low precision)")


def low_precision_bias_note(label: str, bias: float, allowed: float) -> str:
    return f"{label}: mean relative error {bias:+.1e} (allowed ±{allowed:.1e})"


NO_COMPLEX_INPUT = ("no complex input at this dtype: the complex check needs a complex "
                    "tensor among fn's inputs")
CONJUGATE_MISSING = (
    "conjugate missing: the backward is right once the gradients going into and out of it "
    "are conjugated. torch's convention for complex z is grad_input = grad_output * "
    "conj(f'(z)) for a holomorphic f (the conjugate Wirtinger derivative); a backward "
    "returning grad_output * f'(z) forgot the conj()")


def complex_view_phrase(dtype: str, real) -> str:
    return (f"{dtype} inputs, checked as pairs of {str(real).removeprefix('torch.')} "
            "(torch.view_as_real): an index's last entry 0 is the real part, 1 the imaginary")


def compile_error_phrase(exc: Exception) -> str:
    return (f"torch.compile could not compile fn ({_first_line(exc, 200)}); the eager "
            "gradient is checked by the other checks")


def _break_reasons(breaks: dict) -> str:
    return "; ".join(f"{reason.splitlines()[0][:100]} (x{count})"
                     for reason, count in list(breaks.items())[:3])


def nothing_compiled_phrase(breaks: dict) -> str:
    return ("dynamo compiled no graph: fn ran eagerly, so there is nothing to compare"
            + (f" (graph breaks: {_break_reasons(breaks)})" if breaks else ""))


def graph_breaks_phrase(breaks: dict) -> str:
    return (f"{sum(breaks.values())} graph break(s), those parts ran eagerly: "
            f"{_break_reasons(breaks)}")


def second_order_not_compiled_phrase(exc: Exception) -> str:
    return (f"second order not compared: the gradient (torch.func.vjp) did not compile or "
            f"differentiate ({_first_line(exc)})")


def compiled_mismatch_phrase(order: str, m: Mismatch) -> str:
    return (f"the {order} gradient of torch.compile(fn) differs from eager for {m.label}: "
            f"{_at(m)}; {m.pattern}. A compiler bug, or a custom op whose registered fake/meta "
            "or compiled implementation differs from its eager kernel")


def with_state_note(record: Record, changed: list[str]) -> Record:
    """The record, noting the global torch state its case changed (restored after it)."""
    note = (f"the case changed global torch state ({'; '.join(changed)}); the harness "
            "restored it, but code that leaks such state breaks whatever runs next: restore "
            "it in the function (a `with` block)")
    return _noted(record, note)


def crashed_phrase(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        import signal

        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = "unknown"
        what = f"crashed: signal {-exitcode} ({name})"
    else:
        what = f"crashed: the worker exited with status {exitcode}"
    return (f"{what} while running this item; it took down only its worker process, and the "
            "run went on in a new one. A segfault or abort is native code (a C++/CUDA "
            "extension); signal 9 is usually the out-of-memory killer (try --memory-limit)")


def timed_out_phrase(timeout: float) -> str:
    return (f"timed out after {timeout:g} s (the per-item limit: --timeout, or the case's "
            "timeout): its worker was "
            "stopped and the run went on in a new one. A hang (a lock, an endless loop) or a "
            "case too large for the quick run?")


def interrupted_record(signal_name: str, done: int, total: int, seed: int) -> Record:
    """The row that marks a report incomplete."""
    return Record(case="(run)", check="run", dtype="", device="", status="error", seed=seed,
                  message=f"INCOMPLETE: the run was interrupted by {signal_name} after {done} "
                          f"of {total} items; the rows above finished, the rest did not run")


def with_worker_note(record: Record, exc: Exception) -> Record:
    """The record of the first item run in process because no worker process started."""
    note = (f"no worker process could start ({_first_line(exc)}), so "
            "this and the remaining items ran in the harness's own process, without crash "
            "isolation or time limit")
    return _noted(record, note)


def error_hint(check: str, exc: Exception, case_code: bool = True) -> str:
    """What to do about an exception raised while running `check` ("" if unknown);
    `case_code` says whether any frame of the traceback is in the case's own code."""
    text = str(exc)
    if "Mismatch in shape: grad_output" in text or "stack expects each tensor" in text:
        return ("fn's output shape changes from call to call (the gradient was made for "
                "another call's output): its output shape must depend only on its inputs")
    if check == "second-order":
        return ("if the backward is meant to be differentiable once only, declare "
                "twice_differentiable=False")
    if not case_code:
        return ("no frame of this traceback is in the case's code, so torch's engine or the "
                "harness raised it: if the case looks right, please report it with its seed")
    return ""


NO_SPARSE_INPUT = "no sparse input: the sparse check needs a sparse COO tensor among fn's inputs"
SPARSE_VIEW = ("sparse inputs, checked on their specified values (gradcheck's masked=True): "
               "`S.values[k]` is the k-th specified element of S.coalesce()")


def sparse_convention_note(labels: list[str], dense_holds: bool) -> str:
    which = ", ".join(labels)
    if dense_holds:
        return (f"the gradient of {which} also holds at the unspecified elements (as a "
                "function of the dense tensor: masked=False passes too)")
    return (f"the gradient of {which} covers only the specified elements (masked semantics, "
            "as torch.sparse.mm's): as a function of the dense tensor it differs there")


def no_gradient_phrase(label: str) -> str:
    return f"{label} gets no gradient from any output (None): unused, or the graph is cut"


def undefined_crash_phrase(k: int | None, exc: Exception) -> str:
    which = (f"only output {k} has a gradient (the others undefined)" if k is not None
             else "every output's gradient is undefined")
    return (f"backward raises when {which}: {type(exc).__name__}: {str(exc)[:160]}; treat "
            "None gradients as zeros (or keep ctx.set_materialize_grads(True))")


def undefined_mismatch_phrase(k: int, label: str, diff: float, scale: float) -> str:
    return (f"gradient of {label} from output {k} alone differs from the same with the other "
            f"outputs' gradients given as zeros, by {diff:.3g} (largest {scale:.3g}): backward "
            "mishandles undefined gradients of the other outputs")


def undefined_nonzero_phrase(label: str, value: float) -> str:
    return (f"with every output's gradient undefined, {label} still gets a gradient (largest "
            f"{value:.3g}); undefined must count as zero")


def nondeterminism_measured(spread: float, runs: int, declared: float) -> str:
    return (f"nondeterministic backward measured: largest spread {spread:.3g} over {runs} "
            f"runs, within the declared nondeterministic_tol {declared:.3g}")


def metadata_phrase(label: str, g: torch.Tensor, x: torch.Tensor) -> str:
    return (f"gradient of {label} is {g.dtype} {g.device} {tuple(g.shape)}, the input is "
            f"{x.dtype} {x.device} {tuple(x.shape)}")


def chain_phrase(declared, found) -> str:
    return (f"grad_fn chain is {' -> '.join(found) or '(none)'}, the case declares "
            f"{' -> '.join(declared)}")


def sgd_phrase(lr: float, m: Mismatch) -> str:
    return (f"one SGD step (lr={lr}) did not move {m.label} by exactly -lr * grad: {_at(m)}")


def semantic_record(ex, check: str, problems: list[str], notes: list[str],
                    seconds: float) -> Record:
    """Pass, or fail listing every broken clause of the contract."""
    dtype_name = str(ex.dtype).removeprefix("torch.")
    common = dict(case=ex.case.name, check=check, dtype=dtype_name, device=ex.device,
                  seed=ex.seed, seconds=seconds, source=ex.case.source)
    if not problems:
        return Record(status="pass", message="; ".join(notes), **common)
    lines = [header(ex.case.name, ex.dtype, ex.device, f"{check} check")]
    lines += [f"  - {p}" for p in problems]
    lines += [f"  note: {n}" for n in notes]
    lines.append(reproduce_line(ex.case.name, ex.dtype, ex.device, ex.seed, ex.case.source))
    return Record(status="fail", message="\n".join(lines), pattern=problems[0], **common)


def semantic_skip(ex, check: str, reason: str, seconds: float) -> Record:
    return Record(case=ex.case.name, check=check, dtype=str(ex.dtype).removeprefix("torch."),
                  device=ex.device, status="skip", message=reason, seed=ex.seed,
                  seconds=seconds, source=ex.case.source)


STEP_NO_GRAD = ("after a training step no parameter has a .grad: the loss is not "
                "backpropagated to the model the optimizer holds")
STEP_NEVER_UPDATES = ("the step never updates the parameters the optimizer holds (updating a "
                      "copy, e.g. p.clone(), or a tensor outside the model?)")


def unused_parameters_phrase(names: list[str]) -> str:
    return f"parameters that never receive a gradient: {', '.join(names)}"


def stuck_parameters_phrase(names: list[str]) -> str:
    return f"parameters that did not move in the step: {', '.join(names)}"


def step_accumulates_phrase(name: str, ratio: float) -> str:
    if abs(ratio - 2) < 1e-6:
        return (f"gradients accumulate across steps: after two steps .grad of {name} is 2 x "
                "one step's; call optimizer.zero_grad() each step")
    return (f"with lr=0 (parameters fixed) the second step left a different .grad of {name} "
            f"({ratio:.6g} x the first step's): the step is not repeatable")


def per_sample_phrase(m: Mismatch, n: int) -> str:
    return (f"the gradient of the batch-mean loss differs from the mean of the {n} per-sample "
            f"gradients for {m.label}: {m.count} of {m.total} elements, worst at {m.where}: "
            f"{m.actual:.6g} instead of {m.expected:.6g}; {m.pattern}. A loss that does not "
            "average over the batch (sum, or a mean over the wrong dimension)?")


def training_record(case, check: str, dtype, device: str, seed: int, problems: list[str],
                    notes: list[str], seconds: float) -> Record:
    dtype_name = str(dtype).removeprefix("torch.")
    common = dict(case=case.name, check=check, dtype=dtype_name, device=device, seed=seed,
                  seconds=seconds, source=case.source)
    if not problems:
        return Record(status="pass", message="; ".join(notes), **common)
    lines = [header(case.name, dtype, device, f"training step: {check}")]
    lines += [f"  - {p}" for p in problems] + [f"  note: {n}" for n in notes]
    lines.append(reproduce_line(case.name, dtype, device, seed, case.source))
    return Record(status="fail", message="\n".join(lines), pattern=problems[0], **common)


def training_skip(case, check: str, dtype, device: str, seed: int, reason: str) -> Record:
    return Record(case=case.name, check=check, dtype=str(dtype).removeprefix("torch."),
                  device=device, status="skip", message=reason, seed=seed, source=case.source)
