"""Run settings shared by every check."""

from __future__ import annotations

from dataclasses import dataclass

PROFILES = {"quick": 12, "thorough": 150}
"""Inputs the search tries per (case, dtype, device) under each profile."""


@dataclass(frozen=True)
class Settings:
    """How hard the checks look.

    Inputs with at most `full_max` elements (`second_order_full_max` for the second-order
    check, where every probe is a whole backward) are checked element by element; larger ones
    along `directions` independent random directions (`second_order_directions` for second
    order, as gradgradcheck's fast mode uses one), and a failing direction is localized by
    splitting the index set (at most `localize_probes` probes, `localize_max` elements named).
    `profile` sets how many inputs the search check tries. `compile_backend` is the
    torch.compile backend of the compiled check ("inductor"; "aot_eager" compiles in a
    fraction of the time).
    `verdict_only`: a failure stands once one disagreeing element or direction is confirmed,
    with no localization and no further confirmations (the search's probes; it re-runs the
    whole check on the smallest failing input it found).
    """

    seed: int = 0
    profile: str = "quick"
    full_max: int = 64
    second_order_full_max: int = 4
    directions: int = 3
    second_order_directions: int = 1
    localize_probes: int = 400
    localize_max: int = 8
    compile_backend: str = "inductor"
    fullgraph: bool = False
    """The compiled check with torch.compile(fullgraph=True): a graph break fails (with the op
    and the source line dynamo names) instead of running that part eagerly (Case.fullgraph
    asks the same for one case)."""
    verdict_only: bool = False
    search_seconds: float | None = None
    """A time budget for the search check: once it has run this long, it checks no further
    input (it has checked at least one) and its row says it stopped there. None: the profile's
    count of inputs, cut for big inputs (harness.checks.search.SEARCH_ELEMENTS)."""
    determinism_runs: int = 10
    """Runs of fn and its backward the backward-determinism family compares (flash-attention
    found a race in 50)."""

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise ValueError(f"Settings.profile must be one of {list(PROFILES)}, "
                             f"got {self.profile!r}")
        for name in ("full_max", "second_order_full_max", "directions",
                     "second_order_directions", "localize_probes", "localize_max"):
            if getattr(self, name) < 1:
                raise ValueError(f"Settings.{name} must be >= 1, got {getattr(self, name)}")
        if self.determinism_runs < 2:
            raise ValueError(f"Settings.determinism_runs must be >= 2 (runs compared with the "
                             f"first), got {self.determinism_runs}")
        if self.search_seconds is not None and not self.search_seconds > 0:
            raise ValueError(f"Settings.search_seconds must be > 0 seconds or None, got "
                             f"{self.search_seconds}")
