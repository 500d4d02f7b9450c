"""What a comparison found for one checked input: the type every comparison returns."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from harness.diagnose.mismatch import Mismatch


@dataclass(frozen=True)
class InputVerdict:
    """The comparison for one checked input: a mismatch or None, and the largest errors."""

    label: str
    mismatch: Mismatch | None
    max_abs: float
    max_rel: float
    unreliable: int = 0
    reference: torch.Tensor | None = None
    allowed: torch.Tensor | None = None
    kinks: tuple[str, ...] = ()
    detects: float = math.nan
    directions: int = 0
    """How the input was compared: 0 element by element, else along this many directions."""
    checked: torch.Tensor | None = None
    """Element by element: the checked gradient beside `reference`, for the failure's picture."""
    values: torch.Tensor | None = None
    """Element by element: the input's values there."""

    @property
    def power(self) -> str:
        """What a pass rules out, in words."""
        how = ("every element compared" if not self.directions else
               f"{self.directions} random sign direction{'s' * (self.directions > 1)}")
        return f"{self.label}: any single element off by more than {self.detects:.2g} ({how})"
