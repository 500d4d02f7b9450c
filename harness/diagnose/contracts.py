"""Phrases for broken autograd contracts: accumulation, zeroing, retain_graph, retain_grad,
non-scalar outputs, graph switches, reentrancy and aliasing, the optimizer, undefined
gradients, and the training step."""

from __future__ import annotations

import torch

from harness.diagnose.mismatch import Mismatch, worst_of

NO_GRAPH = "fn's outputs do not require grad"
def custom_op_no_forward_mode(op: str) -> str:
    return (f"forward mode not checked: {op} is a torch.library custom op, which torch gives "
            "no forward-mode formula (custom_op has no jvp registration; torch.func.jvp "
            "through it returns a zero tangent, forward_ad none), so jvp, jacfwd and "
            "forward-over-reverse through it are not available")


NOT_TWICE_DIFFERENTIABLE = "case is not twice differentiable (twice_differentiable=False)"
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


def accumulation_phrase(k: int, m: Mismatch) -> str:
    return (f"after {k} backward passes (retain_graph=True), .grad of {m.label} is not {k} x "
            f"the single gradient: {worst_of(m)}; {m.pattern}. A backward that keeps state between "
            "calls (right the first time, wrong after), or a hook that changes .grad?")


def after_reset_phrase(reset: str, m: Mismatch) -> str:
    return (f"after {reset}, the next backward did not give the single gradient for "
            f"{m.label}: {worst_of(m)}; {m.pattern}")


def second_backward_phrase(unpacked: int) -> str:
    return (f"the first backward read {unpacked} saved tensor(s), yet a second backward "
            "without retain_graph succeeded: saved tensors are not freed after backward")


def kept_on_ctx_phrase(kept: list[str]) -> str:
    return (f"a second backward without retain_graph succeeded because {', '.join(kept)} "
            "holds a tensor on ctx outside save_for_backward: torch never frees it after "
            "backward (memory held for the graph's life) and saved-tensor hooks never see it; "
            "save it with ctx.save_for_backward and read it from ctx.saved_tensors")


def saved_never_read_phrase(packed: int) -> str:
    return (f"the graph saved {packed} tensor(s) that the backward never read (e.g. "
            "save_for_backward without ctx.saved_tensors), so a second backward without "
            "retain_graph has nothing to refuse")


def unexpected_error_phrase(message: str) -> str:
    return f"raised an unexpected error: {message.splitlines()[0][:160]}"


def retain_graph_failed_phrase(message: str) -> str:
    return f"a second backward with retain_graph=True failed: {message.splitlines()[0][:160]}"


def intermediate_phrase(m: Mismatch) -> str:
    return (f"retained .grad of intermediate {m.label} disagrees with the analytic one: "
            f"{worst_of(m)}")


def backward_vs_grad_phrase(m: Mismatch) -> str:
    return (f"backward(gradient=v) into .grad differs from torch.autograd.grad with the same v "
            f"for {m.label}: {worst_of(m)}; {m.pattern}")


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
    return (f"one SGD step (lr={lr}) did not move {m.label} by exactly -lr * grad: {worst_of(m)}")


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
