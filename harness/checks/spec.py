"""What a check family is (Check) and what one run of it found (Finding).

A family is declared once, at the end of its module, as a frozen `Check`: its name, its
function, what it applies to and what it needs. Everything that selects checks (the runner,
the CLI, the pytest plugin, check_gradients) reads the table built from these specs in
harness.checks; nobody compares a check's name with a string. The runner owns the ceremony
every family shares (the device skip, the graph and second-order skips, timing, the global
state note, expected failures, the Record); the family's function only checks, and returns a
`Finding` that diagnose.findings turns into the Record.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

DTYPE_KINDS = ("real", "complex", "low-precision", "with-low-precision", "with-float8",
               "highest")


@dataclass(frozen=True)
class Check:
    """One check family.

    `run(example, settings) -> Finding`. `applies_to` is "case" (harness.Case: the example is
    drawn from the case's inputs), "training" (harness.TrainingCase: a model and a batch) or
    "both" (its function tells the two examples apart).
    `dtypes` says which dtypes it runs in: the case's "real" ones, its "complex" ones, or the
    device's "low-precision" ones (float16/bfloat16), both ("with-low-precision"), those and
    the case's float8 ones ("with-float8"), or the most precise real one alone ("highest": a
    family that works in float64 whatever ran). Only "with-float8" runs in float8.
    `needs_case`: the Case field the family needs (e.g. "reference"; a training case, whose
    model is always there, needs none); cases without it get no item of it unless it is
    named, and then a skip row saying `without` (or what is missing). `sparse`: it checks
    sparse inputs, and only it does (check_gradients runs the sparse families alone for
    sparse tensors).
    `forward_mode`: it needs forward-mode AD, which torch.library custom ops lack (skipped for
    them, with why). `needs_graph`: skipped when fn's outputs carry no graph. `second_order`:
    skipped when the case declares twice_differentiable=False. `opt_in`: run only when named,
    or for cases carrying this tag; `flag` is its command-line switch (e.g. "--compiled"),
    which adds it to the default checks. `searches`: the family it runs over searched inputs
    (the `harness search` command's `--check` names that family). `cost`: rough seconds per
    item on the built-in cases, for ordering and planning. `title`: the header of a failure.
    """

    name: str
    run: Callable[..., Finding]
    doc: str
    applies_to: str = "case"
    dtypes: str = "real"
    needs_case: str | None = None
    without: str = ""
    forward_mode: bool = False
    sparse: bool = False
    needs_graph: bool = False
    second_order: bool = False
    opt_in: str | None = None
    flag: str | None = None
    flag_help: str = ""
    searches: str | None = None
    cost: float = 0.01
    title: str = ""

    def __post_init__(self) -> None:
        if self.applies_to not in ("case", "training", "both"):
            raise ValueError(f"Check {self.name!r}: applies_to must be 'case', 'training' or "
                             f"'both', got {self.applies_to!r}")
        if self.dtypes not in DTYPE_KINDS:
            raise ValueError(f"Check {self.name!r}: dtypes must be one of {DTYPE_KINDS}, got "
                             f"{self.dtypes!r}")
        if self.flag is not None and not self.flag.startswith("--"):
            raise ValueError(f"Check {self.name!r}: flag must start with '--', got "
                             f"{self.flag!r}")
        if not self.title:
            default = (f"training step: {self.name}" if self.applies_to == "training"
                       else f"{self.name} check")
            object.__setattr__(self, "title", default)

    def applies(self, kind: str) -> bool:
        """Whether it runs on cases of `kind` ("case" or "training")."""
        return self.applies_to in (kind, "both")

    def missing(self, case) -> str | None:
        """The Case field this family needs and `case` lacks, or None."""
        if self.needs_case is None or hasattr(case, "step"):  # a TrainingCase needs none
            return None
        return self.needs_case if getattr(case, self.needs_case, None) is None else None

    def default_for(self, tags: tuple[str, ...] = (), declared: tuple[str, ...] = ()) -> bool:
        """Whether it runs when no check is named: always, unless opt-in and neither the
        case's tags nor its own `checks` ask for it."""
        return self.opt_in is None or self.opt_in in tags or self.name in declared


@dataclass(frozen=True)
class SearchFailure:
    """The smallest searched input where the searched check failed or raised."""

    tried: int
    profile: str
    smallest: str
    found: Any  # the searched check's Record there, or the exception it raised
    inputs: dict = field(default_factory=dict)  # what to save: torch.load(...)['inputs']
    shrink_cut: int = 0  # the shrinker stopped after this many tries: the smallest found
    seen: tuple = ()  # ((tensors, failed), ...): every input searched, for the picture
    smallest_tensors: tuple = ()  # the smallest failing input's tensors
    labels: tuple[str, ...] = ()  # the inputs' names


@dataclass(frozen=True)
class Finding:
    """What one check found for one example; diagnose.findings builds the Record from it.

    `skip`: nothing to check here, and why. `problems`: broken clauses of a contract, one
    phrase each. `verdicts`: per-input gradient comparisons (InputVerdict), with what the
    gradient was compared with (`reference`) and which side is under test (`checked`), and
    `hints` on who is wrong. `notes` go into the message either way. `view`: the example the
    verdicts were measured on, when it is not the item's own (complex as real pairs);
    `preface` lines open a failure's message and `pattern` replaces its derived pattern.
    `error`: the check could not run at all. `searched`: a searched failure. `concerns`:
    findings that are not wrong values (memory held, a second backward torch should refuse):
    alone they make a warn row, beside problems they are listed with them.
    """

    skip: str = ""
    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    verdicts: tuple | None = None
    reference: str = ""
    checked: str = ""
    hints: tuple[str, ...] = ()
    view: Any = None
    preface: tuple[str, ...] = ()
    pattern: str = ""
    error: str = ""
    searched: SearchFailure | None = None
    concerns: tuple[str, ...] = ()

    @property
    def failed(self) -> bool:
        if self.verdicts is not None:
            return any(v.mismatch is not None for v in self.verdicts)
        return bool(self.problems or self.searched)
