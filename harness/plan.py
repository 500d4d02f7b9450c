"""What a run checks, as plain data: the Selection a process builds the items from, and the
Plan the process that built them hands to the one that only dispatches them.

Cases hold lambdas and closures, which cannot travel between processes, and building them can
take seconds (torch's OpInfo database). So `harness check` builds them once, in its first
worker, and the main process, which only dispatches items and writes reports, works from the
Plan that worker sends: ids, costs, time limits, load errors and descriptions.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from harness.record import Record
from harness.source import Source


@dataclass(frozen=True)
class Selection:
    """What a run checks, as data a fresh process rebuilds the same items from; the one
    place the command line, the pytest plugin and check_gradients turn what they were given
    into items.

    `patterns`, `tags`: the cases (any pattern, any tag; each only when given). `checks`: the
    families by name (None: every default family that applies). `opt_in`: opt-in families
    added to those (the CLI's --compiled, --determinism). `dtypes` (names, e.g. "float64"),
    `devices`: only these, of what each case declares. Names are checked when the items are
    built: an unknown one raises ValueError naming the known ones."""

    load: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    checks: tuple[str, ...] | None = None
    opt_in: tuple[str, ...] = ()
    dtypes: tuple[str, ...] | None = None
    devices: tuple[str, ...] | None = None

    def families(self) -> tuple[str, ...] | None:
        """The families named for the run: `checks` (or, where `opt_in` adds to them, the
        default ones) and the `opt_in` ones; None: each case's defaults."""
        from harness.checks import CHECKS

        for name in (*(self.checks or ()), *self.opt_in):
            if name not in CHECKS:
                raise ValueError(f"unknown check {name!r}; known: {', '.join(CHECKS)}")
        if not self.opt_in:
            return self.checks
        base = (self.checks if self.checks is not None
                else tuple(s.name for s in CHECKS.values() if s.opt_in is None))
        return (*base, *(name for name in self.opt_in if name not in base))

    def build(self):
        """The registry (with its load errors) and the selected cases."""
        from harness import registry  # imports torch

        reg = registry.load(self.load, patterns=self.patterns, tags=self.tags)
        return reg, registry.select(reg.cases, self.patterns, self.tags)

    def items(self, cases) -> list:
        """The (case, check, dtype, device) items of `cases` this selection names."""
        from harness.runner import items_for
        from harness.tolerances import DTYPES

        unknown = [d for d in self.dtypes or () if d not in DTYPES]
        if unknown:
            raise ValueError(f"unknown dtype {unknown[0]!r}; known: {', '.join(DTYPES)}")
        dtypes = [DTYPES[d] for d in self.dtypes] if self.dtypes else None
        return items_for(cases, self.families(), dtypes, self.devices)

    def plan(self) -> tuple[Plan, list]:
        """Build the items here: the Plan of them, and the items themselves."""
        start = time.perf_counter()
        reg, cases = self.build()
        items = self.items(cases)
        return Plan(
            items=tuple(PlannedItem.of(item) for item in items),
            loaded=tuple(case.name for case in reg.cases),
            selected=tuple(case.name for case in cases),
            errors=tuple(reg.errors),
            descriptions={c.name: c.description for c in cases if c.description},
            load_seconds=time.perf_counter() - start,
        ), items


@dataclass(frozen=True)
class PlannedItem:
    """What a dispatcher needs of an item: the fields of its rows, its declared cost (the
    family's `cost`) and its time limit (the case's own `timeout`, or None)."""

    id: str
    case: str
    source: Source
    check: str
    dtype: str
    device: str
    cost: float
    timeout: float | None = None

    @classmethod
    def of(cls, item) -> PlannedItem:
        return cls(id=item.id, case=item.case.name, source=item.case.source, check=item.check,
                   dtype=item.dtype_name, device=item.device, cost=item.spec.cost,
                   timeout=getattr(item.case, "timeout", None))

    def record(self, seed: int, status: str, message: str, seconds: float = 0.0) -> Record:
        """A row of this item written by the harness itself (a crash, a time-out)."""
        return Record(case=self.case, check=self.check, dtype=self.dtype, device=self.device,
                      status=status, message=message, seed=seed, seconds=seconds,
                      source=self.source)


@dataclass(frozen=True)
class Plan:
    """A built selection: its items, the names of every case loaded and of those selected, the
    registry's load errors, the selected cases' descriptions, and the seconds the build took."""

    items: tuple[PlannedItem, ...]
    loaded: tuple[str, ...]
    selected: tuple[str, ...]
    errors: tuple[Record, ...]
    descriptions: dict[str, str] = field(default_factory=dict)
    load_seconds: float = 0.0

    @property
    def ids(self) -> list[str]:
        return [item.id for item in self.items]
