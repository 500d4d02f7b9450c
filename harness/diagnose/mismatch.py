"""Turn a mismatch into words: where, by how much, and what kind of mistake it looks like.

Every message the checks emit is built here, in the shape of torch.testing.assert_close's
("mismatched elements: 1 / 1000 (0.1%)", worst index, values, tolerance) plus the pattern
(sign flipped, constant factor, k times, transposed, swapped, part of the elements) and a
reproduction line. Whole tensors are never printed.
"""

from __future__ import annotations

import math
import shlex
from dataclasses import dataclass

import torch

from harness.source import CHECK_GRADIENTS, NO_SOURCE, Source
from harness.tolerances import dtype_name


@dataclass(frozen=True)
class Mismatch:
    """The element-wise comparison of one input's gradient with its reference."""

    label: str
    count: int
    total: int
    index: tuple[int, ...]
    expected: float
    actual: float
    abs_err: float
    rel_err: float
    allowed: float
    rest_err: float
    pattern: str
    directions_of: int = 0  # > 0: count/total are random directions over this many elements
    on_average: str = ""  # every element within its allowance, the mean error (this) not
    over_baseline: str = ""  # every element within its allowance, the error over the
    # reference's own in the same dtype (this: "3.4x its 0.0036, above 2x") not

    @property
    def where(self) -> str:
        return format_index(self.label, self.index)


def along_directions(label: str, elements: int, expected, actual, allowed, bad,
                     story: str) -> Mismatch:
    """The Mismatch of readings along random directions over `elements` (tensors of the
    readings), at the worst of them: no element is named."""
    k = int(((actual - expected).abs() / allowed.clamp_min(1e-300)).argmax())
    diff = float((actual[k] - expected[k]).abs())
    return Mismatch(label=label, count=int(bad.sum()), total=len(expected), index=(),
                    expected=float(expected[k]), actual=float(actual[k]), abs_err=diff,
                    rel_err=diff / max(abs(float(expected[k])), 1e-300),
                    allowed=float(allowed[k]), rest_err=float("nan"), pattern=story,
                    directions_of=elements)


def worst_of(m: Mismatch) -> str:
    """'3 of 12 elements differ, worst at x[4]: 2.5 instead of 1.5'."""
    return (f"{m.count} of {m.total} elements differ, worst at {m.where}: "
            f"{m.actual:.6g} instead of {m.expected:.6g}")


def format_index(label: str, index: tuple[int, ...]) -> str:
    """`layer2.weight[3, 17]`; scalars get no brackets."""
    return f"{label}[{', '.join(map(str, index))}]" if index else label


def compare(
    label: str,
    expected: torch.Tensor,
    actual: torch.Tensor,
    allowed: torch.Tensor,
    values: torch.Tensor | None = None,
) -> tuple[Mismatch | None, float, float]:
    """Compare element-wise; return (mismatch or None, max abs error, max rel error).

    `values` are the input's values, used to say "wrong exactly where the input is
    negative".
    """
    expected = expected.detach().double().cpu()
    actual = actual.detach().double().cpu()
    allowed = allowed.detach().double().cpu().expand_as(expected)
    diff = torch.sub(actual, expected).abs_()
    if not diff.numel():
        return None, 0.0, 0.0
    if bool((diff <= allowed).all()):  # no NaN either: the usual case, in few passes
        max_abs = float(diff.max())
        return None, max_abs, float(diff.div_(expected.abs().clamp_min_(1e-300)).max())
    diff = diff.nan_to_num_(nan=math.inf, posinf=math.inf)
    rel = diff / expected.abs().clamp_min(1e-300)
    max_abs, max_rel = float(diff.max()), float(rel.max())
    bad = diff > allowed
    if not bool(bad.any()):
        return None, max_abs, max_rel
    excess = torch.where(bad, diff / allowed.clamp_min(1e-300), torch.zeros_like(diff))
    flat = int(excess.flatten().argmax())
    index = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), expected.shape))
    ok = ~bad
    rest = float(diff[ok].max()) if bool(ok.any()) else math.nan
    x = values.detach().double().cpu() if values is not None else None
    mismatch = Mismatch(
        label=label, count=int(bad.sum()), total=expected.numel(), index=index,
        expected=float(expected.flatten()[flat]), actual=float(actual.flatten()[flat]),
        abs_err=float(diff.flatten()[flat]), rel_err=float(rel.flatten()[flat]),
        allowed=float(allowed.flatten()[flat]), rest_err=rest,
        pattern=pattern(expected, actual, bad, allowed, x),
    )
    return mismatch, max_abs, max_rel


def _close(a: torch.Tensor, b: torch.Tensor, allowed: torch.Tensor) -> bool:
    a, b, allowed = (t.detach().double().cpu() for t in (a, b, allowed))
    return bool(((a - b).abs() <= allowed).all())


def factor_phrase(k: float) -> str:
    """Words for 'actual = k * expected'."""
    n = round(k)
    if abs(k + 1) < 1e-6:
        return "sign flipped (actual = -expected)"
    if n >= 2 and abs(k - n) < 1e-6 * n:
        return (f"exactly {n} times the reference: gradients accumulated {n} times? "
                "zero .grad between backward calls")
    if abs(k) < 1e-12:
        return "zero where the reference is not (gradient missing or not propagated)"
    return f"off by a constant factor {k:.6g} (actual = {k:.6g} x expected)"


def factor_of(expected: torch.Tensor, actual: torch.Tensor, allowed: torch.Tensor) -> str | None:
    """'off by a constant factor k' (or its special cases) when actual = k * expected within
    the allowance (times |k| where that is more than 1) on at least two readings whose
    reference exceeds its allowance: one ratio alone fits any factor. None otherwise."""
    e, a, allowed = expected.flatten(), actual.flatten(), allowed.flatten()
    energy = float((e * e).sum())
    if energy == 0 or not bool(torch.isfinite(a).all()) or int((e.abs() > allowed).sum()) < 2:
        return None
    k = float((a * e).sum()) / energy
    # the checked values' own rounding scales with them, k times the reference's (a float8
    # gradient 8x off carries 8x the rounding the allowance was set for)
    if _close(a, k * e, allowed * max(1.0, abs(k)) + 1e-9 * abs(k) * e.abs()):
        return factor_phrase(k)
    return None


def pattern(
    expected: torch.Tensor,
    actual: torch.Tensor,
    bad: torch.Tensor,
    allowed: torch.Tensor,
    values: torch.Tensor | None = None,
) -> str:
    """The simplest story that explains the mismatch, or a plain count. A factor is named
    only when at least two readings with a reference above their allowance agree on it: any
    single ratio fits 'a constant factor'."""
    e, a = expected.flatten(), actual.flatten()
    energy = float((e * e).sum())
    if e.numel() == 1 and energy > 0 and bool(torch.isfinite(a).all()):
        k = float(a[0] / e[0])
        exact = factor_phrase(k)  # an exact -1, 0 or integer ratio is evidence even once
        if not exact.startswith("off by"):
            return exact
        return f"one reading only (actual = {k:.3g} x expected): too few readings to name a pattern"
    factor = factor_of(e, a, allowed.flatten())
    if factor:
        return factor
    if energy == 0 and bool(a.ne(0).any()) and bool(bad.all()):
        return ("the reference is 0 on every element and the checked gradient is not (a "
                "piecewise-constant forward such as round or sign has derivative 0: a "
                "straight-through estimator never matches finite differences)")
    if expected.dim() == 2 and expected.shape[0] == expected.shape[1] and expected.shape[0] > 1:
        if _close(actual, expected.T, allowed.T if allowed.dim() == 2 else allowed):
            return "transposed (actual = expected.T): check the order of a matmul in backward"
    count, total = int(bad.sum()), bad.numel()
    if count > 1 and _permuted(e, a, bad.flatten(), allowed.flatten()):
        return (f"the right values at the wrong positions ({count} of {total} elements moved; "
                "the wrong ones are a permutation of the reference's): an index mix-up, such "
                "as a gather or scatter by the wrong or the inverse indices")
    if count == 1 and total > 1:
        rest = (a - e).abs()[~bad.flatten()].max()
        return f"one element wrong; the rest agree to {float(rest):.1g}"
    if values is not None and values.shape == bad.shape and count < total:
        # elements whose reference is within its allowance of 0 cannot show a proportional
        # error: the split must hold on the others, with right ones outside it to contrast
        shows = expected.abs() > allowed
        for name, region in (("negative", values < 0), ("positive", values > 0)):
            if not (bool(region[bad].all()) and bool((region == bad)[shows].all())
                    and bool((shows & ~region).any())):
                continue
            quiet = int((region & ~bad).sum())
            phrase = (f"wrong exactly where the input is {name} ({count} of {total} elements)"
                      if not quiet else
                      f"wrong where the input is {name} ({count} of {total} elements; the "
                      f"{quiet} other {name} ones have a gradient within its allowance of 0)")
            factor = factor_of(expected[bad], actual[bad], allowed[bad])
            return phrase + (f"; there, {factor}" if factor else "")
    if count < total:
        return f"wrong on part of the elements ({count} of {total})"
    if int((e.abs() > allowed.flatten()).sum()) < 2:
        return "wrong everywhere; too few readings above their allowance to name a factor"
    return "wrong everywhere, with no constant factor, sign or transpose pattern"


def _permuted(e: torch.Tensor, a: torch.Tensor, bad: torch.Tensor, allowed: torch.Tensor) -> bool:
    """Whether the wrong elements hold the reference's values in another order: sorted, they
    agree within the allowance, and they are not all equal (then any order fits)."""
    allowed = allowed.expand(e.shape) if allowed.numel() == 1 else allowed
    want, got = e[bad].sort().values, a[bad].sort().values
    if bool((want == want[0]).all()) or not bool(torch.isfinite(got).all()):
        return False
    return bool(((got - want).abs() <= allowed[bad].max()).all())


def swap_phrase(labels: list[str], expected: list, actual: list, allowed: list) -> str | None:
    """'gradients of x and y swapped' when actual[i] matches expected[j] and vice versa."""
    for i in range(len(labels)):
        for j in range(i + 1, len(labels)):
            if expected[i].shape != expected[j].shape:
                continue
            if _close(actual[i], expected[j], allowed[j]) and _close(
                actual[j], expected[i], allowed[i]
            ) and not _close(expected[i], expected[j], allowed[i]):
                return f"gradients of {labels[i]} and {labels[j]} are swapped"
    return None


def triangulate(analytic_vs_autograd: bool, autograd_vs_fd: bool, analytic_vs_fd: bool) -> str:
    """Which of the three sources disagrees with the other two (True = they agree)."""
    if not analytic_vs_autograd and autograd_vs_fd and not analytic_vs_fd:
        return ("the analytic formula disagrees with autograd and finite differences, which "
                "agree: check the case's grad")
    if not analytic_vs_autograd and not autograd_vs_fd and analytic_vs_fd:
        return ("autograd disagrees with the analytic formula and finite differences, which "
                "agree: the backward (custom autograd Function or kernel) is wrong")
    if analytic_vs_autograd and not autograd_vs_fd and not analytic_vs_fd:
        return ("finite differences disagree with autograd and the analytic formula, which "
                "agree: the function may not be smooth here (kink, discontinuity) or be "
                "non-deterministic")
    if not (analytic_vs_autograd or autograd_vs_fd or analytic_vs_fd):
        return "all three sources disagree: both the backward and the analytic formula are wrong"
    return "the three sources agree"


def _errors(m: Mismatch, checked: str) -> str:
    """'abs 1.44, rel 0.5; allowed 2.97e-06', without a relative error against a reference of
    0 or an allowance that a non-finite value made NaN."""
    rel = "reference is 0" if m.expected == 0 else f"rel {m.rel_err:.3g}"
    if math.isfinite(m.actual) and math.isfinite(m.expected):
        return f"abs {m.abs_err:.3g}, {rel}; allowed {m.allowed:.3g}"
    which = checked if not math.isfinite(m.actual) else "the reference"
    return f"{which} is not finite"


def describe(m: Mismatch, reference: str, checked: str) -> list[str]:
    """The assert_close-shaped lines for one input's mismatch."""
    if m.directions_of:
        return [
            f"  disagrees along {m.count} of {m.total} random directions "
            f"(over all {m.directions_of} elements)",
            f"  worst direction u: {checked} <g, u> = {m.actual:.6g}, {reference} "
            f"{m.expected:.6g} ({_errors(m, checked)})",
            f"  pattern: {m.pattern}",
        ]
    if m.over_baseline:
        return [
            f"  RMS error {m.rest_err:.3g} is {m.over_baseline} (the reference computed in "
            "the same dtype against float64); each element is within its allowance",
            f"  worst at {m.where}: {checked} {m.actual:.6g}, {reference} {m.expected:.6g} "
            f"({_errors(m, checked)})",
            f"  pattern: {m.pattern}",
        ]
    if m.on_average:
        return [
            f"  on average {m.on_average} off over all {m.total} elements; each element is "
            "within its allowance",
            f"  worst at {m.where}: {checked} {m.actual:.6g}, {reference} {m.expected:.6g} "
            f"({_errors(m, checked)})",
            f"  pattern: {m.pattern}",
        ]
    return [
        f"  mismatched elements: {m.count} / {m.total} ({100 * m.count / m.total:.3g}%)",
        f"  worst at {m.where}: {checked} {m.actual:.6g}, {reference} {m.expected:.6g} "
        f"({_errors(m, checked)})",
        f"  pattern: {m.pattern}",
    ]


def reproduce_command(case: str, dtype: torch.dtype, device: str, seed: int,
                      source: Source = NO_SOURCE, check: str = "", command: str = "check",
                      options: str = "") -> str:
    """What runs this one item again (its family alone, with `check`): a call of
    check_gradients for its cases, else `harness <command>` with `options`, and `--load` for
    a file's cases."""
    if source == CHECK_GRADIENTS:
        only = f", checks=({check!r},)" if check else ""
        return f"check_gradients(...{only}, seed={seed}) on the same inputs"
    load = f" --load {shlex.quote(source.path)}" if source.kind == "file" else ""
    family = f" --check {check}" if check else ""
    return (f"harness {command} --cases {shell_word(case)}{family} --dtype "
            f"{dtype_name(dtype)} --device {device} --seed {seed}{options}{load}")


def reproduce_line(command: str) -> str:
    """A message's last line: how to run its item again."""
    return f"  reproduce: {command}"


def shell_word(text: str) -> str:
    """`text` as one shell word: in single quotes, or shlex's quoting where it holds one."""
    return f"'{text}'" if "'" not in text else shlex.quote(text)


def header(case: str, dtype: torch.dtype, device: str, what: str) -> str:
    return f"{case} {dtype_name(dtype)} {device}: {what}"


IGNORES_COTANGENT = ("backward ignores its incoming gradient (grad_output): doubling the "
                     "cotangent left the gradient unchanged; multiply by grad_output in backward")


def summed_gradient_phrase(function: str, label: str, returned: tuple, shape: tuple) -> str:
    return (f"{function}.backward returns a gradient of shape {returned} for {label} (shape "
            f"{shape}); autograd sums it down to {shape} without an error (the input "
            "broadcasts to it): return one shaped like the input")


def missing_phrase(labels: list[str]) -> str:
    return (f"autograd returned no gradient (None) for {', '.join(labels)}: no differentiable "
            "path from the output, or a backward that returns None for it")


def kink_phrase(where: str, slopes: tuple[float, float], actual: float) -> str:
    left, right = slopes
    return (f"kink at {where}: one-sided slopes {left:.6g} (left) and {right:.6g} (right), "
            f"autograd {actual:.6g} lies between them")


def nonfinite_phrase(count: int, where: str) -> str:
    return (f"the gradient is NaN or infinite at {count} element(s): {where}; finite "
            "differences there are finite (a 0/0 or overflow in the backward formula?)")


def located_phrase(count: int, where: str, along: str) -> str:
    story = ("one element wrong" if count == 1 else f"{count} elements wrong") + \
        f" (located by group testing: {where})"
    if count > 1 and along.startswith(("sign", "exactly", "off by", "zero")):
        story += f"; {along}"
    return story


def unlocated_phrase(limit: int, along: str, probes: int) -> str:
    return (f"more than {limit} parts of the input disagree (group testing stopped after "
            f"{probes} probes), so the error is on more elements than it can name; along "
            f"random directions: {along}")


def split_phrase(split: str, probes: int, found: int, limit: int) -> str:
    if not found:
        return f"{split}; group testing named no single element within its {probes} probes"
    return (f"{split}; group testing named {found} element(s) and stopped at its limit of "
            f"{limit} parts after {probes} probes")


def spread_phrase(along: str, probes: int, complete: bool) -> str:
    if not complete:
        return (f"along random directions: {along}; group testing named no element within its "
                f"{probes} probes")
    return (f"along random directions: {along}; group testing ({probes} probes) named no "
            "element: every half it split agreed, so no single element carries the error "
            "(it is spread thinly over many, or was a finite-difference artefact)")


