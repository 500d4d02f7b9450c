"""Phrases for what a transform of the computation changed: layouts, forward mode,
batching (vmap), low precision, complex numbers, sparse inputs, torch.compile."""

from __future__ import annotations

import math

from harness.diagnose.events import first_line
from harness.diagnose.mismatch import Mismatch, worst_of


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
    return f"{path} raises ({first_line(exc)})"


def no_batching_phrase(what: str, failures: list[str], custom_op: str | None = None) -> str:
    """Why nothing ran batched, and what to add."""
    text = " ".join(failures)
    if custom_op and "setup_context" in text:
        how = (f"{custom_op} is a torch.library custom op, whose autograd torch runs as an "
               "old-style autograd.Function, so torch.func.vjp (and vmap over it) cannot go "
               "through its backward (register_vmap covers the op's forward only)")
    elif "setup_context" in text:
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
    return (f"{path} differs from the loop of single {what} for {m.label}: {worst_of(m)} "
            f"(the first index is the batch element); {m.pattern}. A vmap rule (a custom "
            "Function's vmap staticmethod, or a batching rule of an op it calls) is wrong, or "
            "the code mixes batch elements")


def no_float64_phrase(dtype: str) -> str:
    return (f"fn does not run in float64, so there is no reference to hold its {dtype} "
            "gradient to")


def dtype_unsupported_phrase(dtype: str, device: str, exc: Exception) -> str:
    return (f"fn or its backward does not run in {dtype} on {device} ({first_line(exc, 140)}); "
            "if it should, add the dtype to its kernels")


def low_precision_element_phrase(dtype: str, m: Mismatch) -> str:
    return (f"the {dtype} gradient of {m.label} differs from the float64 one beyond the "
            f"dtype's rounding and this gradient's measured noise: {worst_of(m)}; {m.pattern}")


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
    return (f"torch.compile could not compile fn ({first_line(exc, 200)}); the eager "
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
            f"differentiate ({first_line(exc)})")


def compiled_mismatch_phrase(order: str, m: Mismatch) -> str:
    return (f"the {order} gradient of torch.compile(fn) differs from eager for {m.label}: "
            f"{worst_of(m)}; {m.pattern}. A compiler bug, or a custom op whose registered "
            "fake/meta or compiled implementation differs from its eager kernel")


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


def kernel_triangulation(fn_agrees_with_fd: bool, reference_agrees_with_fd: bool) -> str:
    """Who is wrong when fn's gradient and its reference's disagree (True = agrees with
    finite differences of fn)."""
    if reference_agrees_with_fd and not fn_agrees_with_fd:
        return ("finite differences of fn agree with the reference's gradient, not with fn's: "
                "fn's backward (the kernel's hand-written gradient) is wrong")
    if fn_agrees_with_fd and not reference_agrees_with_fd:
        return ("finite differences of fn agree with fn's gradient, not with the reference's: "
                "the reference computes another function's gradient (check the reference, or "
                "fn's forward)")
    if not (fn_agrees_with_fd or reference_agrees_with_fd):
        return "finite differences of fn agree with neither gradient"
    return ("both gradients agree with finite differences within their resolution: the "
            "difference is below what finite differences can referee")


KERNEL_NO_SECOND_ORDER = ("fn's backward builds no graph (once_differentiable, or a backward "
                          "that detaches): there is no second derivative to compare with the "
                          "reference's")


def kernel_no_jvp_phrase(side: str, exc: Exception) -> str:
    return (f"forward-mode AD does not run through {side} ({first_line(exc, 120)}): there is no "
            "jvp to compare; for a custom autograd.Function, add a jvp staticmethod")


def baseline_bar(dtype: str, b) -> str:
    """What fn's error is measured in: the reference's own error in the dtype, or one rounding
    to the dtype where that is more (a reference exact or nearly so in the dtype)."""
    if b.floor > b.reference_error:
        return (f"{b.times:.2f}x one rounding to {dtype} ({b.floor:.3g}, more than the "
                f"reference's own error {b.reference_error:.3g}")
    return f"{b.times:.2f}x the reference's own error in {dtype} ({b.reference_error:.3g}"


def baseline_note(label: str, dtype: str, b) -> str:
    """The baseline-relative rule's figures for one tensor (harness.numerics.baseline)."""
    bound = "" if b.ratio is None else f"; at most {b.ratio:g}x"
    return (f"{label}: RMS error {b.error:.3g}, {baseline_bar(dtype, b)}{bound}), SQNR "
            f"{b.sqnr_db:.1f} dB against the reference's {b.reference_sqnr_db:.1f} dB")


def baseline_pattern(dtype: str, b) -> str:
    return (f"RMS error {b.error:.3g}, {baseline_bar(dtype, b)}; at most {b.ratio:g}x), SQNR "
            f"{b.sqnr_db:.1f} dB against the reference's {b.reference_sqnr_db:.1f} dB: every "
            f"element is within the {dtype} allowance, but the reference computed in {dtype} "
            "itself is closer")


def no_baseline_phrase(dtype: str, exc: Exception) -> str:
    return (f"the reference cannot run in {dtype} ({first_line(exc, 160)}): no "
            "baseline-relative verdict, the per-element allowance and the average alone")


def emulated_baseline_phrase(dtype: str, exc: Exception) -> str:
    return (f"the reference does not run on {dtype} inputs ({first_line(exc, 120)}): its "
            f"baseline is computed in float32 from the same {dtype} values, each output "
            "rounded to fn's dtype")


def fullgraph_break_phrase(exc: Exception) -> str:
    """A graph break under fullgraph=True: dynamo's reason and the user's line it names."""
    lines = [line.strip() for line in str(exc).strip().splitlines()]
    reason = "; ".join([*lines[:1], *(line.removeprefix("Explanation: ") for line in lines
                                      if line.startswith("Explanation:"))])[:300]
    frames = getattr(exc, "real_stack", None) or []
    where = (f" at {frames[-1].filename}:{frames[-1].lineno} ({(frames[-1].line or '').strip()})"
             if frames else "")
    return (f"graph break under fullgraph=True{where}: {reason}; torch.compile cannot keep "
            "fn in one graph (rewrite that line, or drop fullgraph to let it run eagerly)")


def dynamo_counts_phrase(frames: int, graphs: int, recompiles: int, fullgraph: bool) -> str:
    return (f"torch.compile{'(fullgraph=True)' if fullgraph else ''}: {frames} frame(s) "
            f"traced, {graphs} graph(s) compiled, {recompiles} recompile(s)")
