"""The one table of tolerances, per dtype, and the finite-difference settings.

A gradient computed in `dtype` is compared with a float64 reference. Element i passes when
    |actual_i - reference_i| <= rtol * |reference_i| + atol * max_j |reference_j| + floor
                                + FD_SAFETY * fd_error_i + NOISE_SAFETY * noise_i
`atol` is relative to the tensor's largest reference magnitude, so the test is scale-free
(large magnitudes pass) yet still sees a single wrong element. `fd_error_i` is the
finite-difference error estimate (Richardson difference plus rounding), zero for references
that are exact (analytic formulas). `noise_i` is the measured rounding noise of the gradient in
the dtype under test (checks.common.rounding_noise): the conditioning of this gradient at
this point (cancellation, as in layer norm's backward or a saturated softmax), which no
fixed table can know.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch


@dataclass(frozen=True)
class Tolerance:
    """Relative tolerance, tensor-scale tolerance and absolute floor for one dtype."""

    rtol: float
    atol: float
    floor: float
    along: Tolerance | None = None
    """The tolerance of each element in a sum along a direction over many elements, where the
    dtype's rounding is measured (checks.common.rounding_noise) and added, so the table's
    per-element budget for it (an element's worst rounding, as a float32 reduction's
    sqrt(n) eps) need not be; None: this tolerance itself."""

    @property
    def directional(self) -> Tolerance:
        return self.along or self


# float64: a 0.01% error must fail, so rtol sits well below 1e-4 but above what float64
# rounding and a Richardson-corrected difference leave (~1e-9 relative).
# float32: eps32 = 1.2e-7; a 1000-term reduction keeps ~sqrt(1000)*eps relative error, and
# cancellation inside one element is covered by the tensor-scale atol.
# bfloat16: one rounding is eps/2 = 3.9e-3; rtol allows ~5 of them per element, atol one of
# the largest element; the measured rounding noise covers conditioning beyond that.
TOLERANCES: dict[torch.dtype, Tolerance] = {
    torch.float64: Tolerance(rtol=1e-6, atol=1e-8, floor=1e-12),
    torch.float32: Tolerance(rtol=3e-5, atol=1e-5, floor=1e-6,
                             along=Tolerance(rtol=1e-6, atol=0.0, floor=1e-12)),
    torch.float16: Tolerance(rtol=1e-2, atol=2e-3, floor=1e-3),
    torch.bfloat16: Tolerance(rtol=2e-2, atol=5e-3, floor=1e-5),
    # float8: TransformerEngine's extension of assert_close's table (one rounding is eps/2 =
    # 6.25% in e4m3, 12.5% in e5m2; rtol is two of them)
    torch.float8_e4m3fn: Tolerance(rtol=0.125, atol=0.0675, floor=1e-3),
    torch.float8_e5m2: Tolerance(rtol=0.25, atol=0.125, floor=1e-3),
}

FD_SAFETY = 4.0
"""How many times the finite-difference error estimate is allowed on top of the dtype's."""

NOISE_SAFETY = 4.0
"""How many times the measured rounding noise of a low-precision gradient is allowed."""

NOISE_DRAWS = 2
"""How many jitters of the inputs measure that noise (float64 is not measured)."""

NOISE_JITTER_ULPS = 64
"""Jitter size in units in the last place. Small jitters under-read: rounding is quantized,
and a saturated softmax (s = 1 - 6e-5 in float32) does not move at all under one ulp, hiding
the cancellation in 1 - s. The true change is subtracted (see checks.common.rounding_noise),
so a larger jitter costs nothing in sharpness."""

NOISE_JITTER_MAX = 1 / 64
"""...but never more than this relative step (2 ulps of bfloat16, 16 of float16): 64 ulps of
bfloat16 would move inputs by half their size, across kinks and domain edges."""

DTYPES = {"float64": torch.float64, "float32": torch.float32, "float16": torch.float16,
          "bfloat16": torch.bfloat16, "float8_e4m3fn": torch.float8_e4m3fn,
          "float8_e5m2": torch.float8_e5m2, "complex128": torch.complex128,
          "complex64": torch.complex64}
"""The dtypes a run can name (--dtype), by the name reports use."""


def dtype_name(dtype: torch.dtype) -> str:
    """'float32' for torch.float32: the name in reports, ids and reproduce lines."""
    return str(dtype).removeprefix("torch.")


FLOAT8 = (torch.float8_e4m3fn, torch.float8_e5m2)
"""The float8 dtypes a case may declare: only the reference family runs in them (a float8
kernel is held to its reference; few torch ops run in float8, and no finite difference can)."""

BASELINE_RATIO = 2.0
"""The baseline rule's ratio where a case sets none (Case.baseline_ratio replaces it). It
decides by default in float8, whose per-element allowance is two roundings wide (12.5% in
e4m3), so a wrong scale of several per cent hides in it while the reference's own float8
rounding is a bar a correct kernel meets (tests/bench_float8.py), and in float32 where a case
sets baseline_float32."""


def coarser(a: torch.dtype, b: torch.dtype) -> torch.dtype:
    """The less precise of two floating dtypes (the first where they tie)."""
    if not (a.is_floating_point and b.is_floating_point):
        return a
    return b if torch.finfo(b).eps > torch.finfo(a).eps else a


def half_or_float8(dtype: torch.dtype) -> bool:
    """Below float32: where the baseline-relative rule applies."""
    return dtype in (torch.float16, torch.bfloat16, *FLOAT8)


LOW_PRECISION = {"cpu": (torch.bfloat16,), "cuda": (torch.float16, torch.bfloat16)}
"""The dtypes the low-precision check runs in, per device (CPU float16 kernels are few)."""

BIAS_SIGMAS = 6.0
"""A low-precision gradient's mean relative error along the reference gradient may be this
many of its rounding spreads (the rounding of n independent elements averages down as
1/sqrt(n), a systematic error does not)..."""

BIAS_FLOOR_ULPS = 1.0
"""...plus this many units of the dtype's rounding (eps/2): one rounding shared by every
element that no jitter of the inputs moves (a mean's 1/N, a scalar upstream gradient) biases
the whole gradient by up to one unit."""

DIRECTION_SIGMAS = 4.0
"""Along a random direction u (independent N(0,1) entries), element errors e_i within their
allowances t_i add up to sum(e_i u_i), whose spread is sqrt(sum (t_i u_i)^2), not
sum |t_i u_i|: a direction is allowed this many of those spreads (or the plain sum, if
smaller). Summing linearly would let a 10,000-element float32 tensor hide a wrong element."""

DIRECTION_STEP_SAFETY = 4.0
"""A direction's step is cut until its finite-difference rounding, with FD_SAFETY, is at most
1/DIRECTION_STEP_SAFETY of its allowance (never cut more than differences.STEP_CUT_MAX)."""


def fd_step(dtype: torch.dtype) -> float:
    """Central-difference step relative to the input's scale: the optimum eps^(1/3), ~6e-6 in
    float64 (~5e-3 in float32, for functions that cannot run in float64)."""
    return torch.finfo(dtype).eps ** (1 / 3)


def fd_rounding(dtype: torch.dtype) -> float:
    """Relative rounding error assumed for one evaluation of the scalarized function."""
    return 64 * torch.finfo(dtype).eps

FD_CONFIRM_SHRINKS = (16.0, 256.0, 4096.0, 65536.0)
"""A disagreement counts only if it persists at these smaller steps. A kink (a ReLU unit)
crossed by the step biases d(h) and d(2h) alike, so the Richardson estimate can miss it; a
wrong gradient stays wrong at any step, a kink artefact shrinks away with it."""

FD_UNRELIABLE = 1e-2
"""An FD error estimate above this fraction of the derivative means a kink or domain edge was
crossed; the direction is redrawn rather than trusted."""


def with_user_tolerance(table: Tolerance, rtol: float | None, atol: float | None) -> Tolerance:
    """`table` with a case's own rtol/atol (a function approximate by design: an iterative
    solver, a lookup table): each replaces the table's; the budget of each element along a
    direction (`along`) scales by the same factor, so directions loosen or tighten with it."""
    def scaled(base: float, was: float, now: float | None) -> float:
        return base if now is None else (base * now / was if was > 0 else now)

    along = table.along
    if along is not None:
        along = replace(along, rtol=scaled(along.rtol, table.rtol, rtol),
                        atol=scaled(along.atol, table.atol, atol))
    return replace(table, rtol=table.rtol if rtol is None else rtol,
                   atol=table.atol if atol is None else atol, along=along)


def user_tolerance_words(dtype: torch.dtype, rtol: float | None, atol: float | None) -> str:
    """A case's own rtol/atol beside the table's for `dtype` (the CSV's `tolerance`)."""
    table = TOLERANCES.get(dtype)
    given = ", ".join(f"{name}={value:g}" for name, value in (("rtol", rtol), ("atol", atol))
                      if value is not None)
    if table is None:
        return given
    return (f"{given} (the table's for {dtype_name(dtype)}: rtol={table.rtol:g}, "
            f"atol={table.atol:g})")


def user_tolerance_note(dtype: torch.dtype, rtol: float | None, atol: float | None) -> str:
    """Where a case's own rtol/atol decided a verdict, in words beside the table's."""
    return f"tolerance set by the case: {user_tolerance_words(dtype, rtol, atol)}"


def tolerance_for(dtype: torch.dtype, overrides: dict | None = None) -> Tolerance:
    """The tolerance for `dtype`, with a case's overrides merged over the table."""
    if overrides and dtype in overrides:
        return overrides[dtype]
    try:
        return TOLERANCES[dtype]
    except KeyError:
        raise ValueError(
            f"no tolerance for dtype {dtype}; known: {sorted(str(d) for d in TOLERANCES)}"
        ) from None
