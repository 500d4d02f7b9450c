"""The baseline-relative rule for low precision: a kernel in bfloat16 or float16 may be off the
float64 reference by at most `ratio` times what the reference itself is off when computed in
that same dtype (flash-attention's rule for its outputs and dq, dk, dv, with ratio 2;
Case.baseline_ratio). The reference's own rounding sets the bar, so no atol is tuned by
hand. Errors are root-mean-square over the tensor (flash-linear-attention's measure; the
largest element's error swings with which element rounds worst), so the rule reads as SQNR,
which torchao reports and which comes with it."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Baseline:
    """fn's root-mean-square error against the float64 reference, and the reference's own
    computed in the same dtype; the rule holds when `error <= ratio * max(reference_error,
    floor)`, where `floor` is the RMS of one rounding to the dtype (a reference exact in the
    dtype still leaves fn its own final rounding). In RMS terms the rule is SQNR: fn's may be
    at most 20 log10(ratio) dB (6.0 dB for 2) below the reference's."""

    error: float
    reference_error: float
    ratio: float | None  # None: measured, no bound set
    floor: float
    sqnr_db: float
    reference_sqnr_db: float

    @property
    def holds(self) -> bool:
        return self.ratio is None or self.error <= self.ratio * max(self.reference_error,
                                                                    self.floor)

    @property
    def times(self) -> float:
        """fn's error in units of the reference's own (or of the floor, where that is more)."""
        bar = max(self.reference_error, self.floor)
        if bar > 0:
            return self.error / bar
        return 0.0 if self.error == 0 else math.inf


def _rms(t: torch.Tensor) -> float:
    return float(t.pow(2).mean().sqrt()) if t.numel() else 0.0


def sqnr_db(signal: torch.Tensor, approx: torch.Tensor) -> float:
    """10 log10(|signal|^2 / |approx - signal|^2) in dB; inf where approx is exact."""
    signal, approx = signal.detach().double().cpu(), approx.detach().double().cpu()
    noise = float(((approx - signal) ** 2).sum())
    power = float((signal**2).sum())
    if noise == 0:
        return math.inf
    return 10 * math.log10(power / noise) if power > 0 else -math.inf


def baseline(got: torch.Tensor, in_dtype: torch.Tensor, want: torch.Tensor, dtype: torch.dtype,
             ratio: float | None) -> Baseline:
    """fn's result `got` and the reference computed in `dtype` (`in_dtype`), each against the
    reference in float64 (`want`), as root-mean-square errors."""
    want = want.detach().double().cpu()
    got, in_dtype = got.detach().double().cpu(), in_dtype.detach().double().cpu()
    # one rounding to the dtype: uniform in +-half an ulp, an RMS of eps/2/sqrt(3) relative
    floor = torch.finfo(dtype).eps / 2 / math.sqrt(3) * _rms(want)
    return Baseline(error=_rms(got - want), reference_error=_rms(in_dtype - want), ratio=ratio,
                    floor=floor, sqnr_db=sqnr_db(want, got),
                    reference_sqnr_db=sqnr_db(want, in_dtype))
