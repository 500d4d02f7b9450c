"""What a run checks, as plain data: the Selection a process builds the items from, and the
Plan the process that built them hands to the one that only dispatches them.

Cases hold lambdas and closures, which cannot travel between processes, and building them can
take seconds (torch's OpInfo database). So `harness check` builds them once, in its first
worker, and the main process, which only dispatches items and writes reports, works from the
Plan that worker sends: ids, costs, time limits, load errors and descriptions.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch

from harness import shards
from harness.case import Case, TrainingCase
from harness.checks import CHECKS, Check
from harness.record import Record
from harness.source import Source
from harness.tolerances import DTYPES, FLOAT8, LOW_PRECISION, dtype_name


@dataclass(frozen=True)
class Selection:
    """What a run checks, as data a fresh process rebuilds the same items from; the one
    place the command line, the pytest plugin and check_gradients turn what they were given
    into items.

    `patterns`, `tags`: the cases (any pattern, any tag; each only when given). `checks`: the
    families by name (None: every default family that applies). `opt_in`: opt-in families
    added to those (the CLI's --compiled, --determinism). `dtypes` (names, e.g. "float64"),
    `devices`: only these, of what each case declares. `shard` (K, N): only the K-th of N
    shards, split longest first by the durations recorded in `durations_file`
    (harness.shards). Names are checked when the items are built: an unknown one raises
    ValueError naming the known ones."""

    load: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    checks: tuple[str, ...] | None = None
    opt_in: tuple[str, ...] = ()
    dtypes: tuple[str, ...] | None = None
    devices: tuple[str, ...] | None = None
    shard: tuple[int, int] | None = None
    durations_file: str = shards.DURATIONS_FILE

    def families(self) -> tuple[str, ...] | None:
        """The families named for the run: `checks` (or, where `opt_in` adds to them, the
        default ones) and the `opt_in` ones; None: each case's defaults."""
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
        unknown = [d for d in self.dtypes or () if d not in DTYPES]
        if unknown:
            raise ValueError(f"unknown dtype {unknown[0]!r}; known: {', '.join(DTYPES)}")
        dtypes = [DTYPES[d] for d in self.dtypes] if self.dtypes else None
        items = items_for(cases, self.families(), dtypes, self.devices)
        if self.shard is None:
            return items
        k, n = self.shard
        return shards.shard(items, k, n, shards.load(self.durations_file))

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


@dataclass(frozen=True)
class Item:
    """One unit of work; `id` is what pytest and the reports show."""

    case: Case | TrainingCase
    check: str
    dtype: torch.dtype
    device: str

    @property
    def dtype_name(self) -> str:
        return dtype_name(self.dtype)

    @property
    def id(self) -> str:
        return f"{self.case.name}-{self.check}-{self.dtype_name}-{self.device}"

    @property
    def spec(self) -> Check:
        return CHECKS[self.check]


def _kind(case) -> str:
    return "training" if isinstance(case, TrainingCase) else "case"


def items_for(
    cases: Iterable[Case],
    checks: Iterable[str] | None = None,
    dtypes: Iterable[torch.dtype] | None = None,
    devices: Iterable[str] | None = None,
) -> list[Item]:
    """Every (case, check, dtype, device) the case declares, filtered by the arguments.

    A case gets the families that apply to its kind (Case or TrainingCase), or only its own
    `checks`; opt-in families only when named in `checks`, in the case's own `checks`, or by
    the case's tags.
    """
    wanted = list(checks) if checks is not None else None
    for name in wanted or ():
        if name not in CHECKS:
            raise ValueError(f"unknown check {name!r}; known: {', '.join(CHECKS)}")
    dtypes = set(dtypes) if dtypes is not None else None
    devices = set(devices) if devices is not None else None
    specs = [spec for spec in CHECKS.values() if wanted is None or spec.name in wanted]
    return [
        Item(case, spec.name, dtype, device)
        for case in cases
        for kind in (_kind(case),)
        for spec in specs
        if spec.applies(kind) and _selected(case, spec, wanted)
        and (not spec.missing(case) or wanted is not None)  # named: a skip row saying what
        for dtype, device in _dtypes_and_devices(case, spec)
        if (dtypes is None or dtype in dtypes) and (devices is None or device in devices)
    ]


def _selected(case, spec: Check, wanted: list[str] | None) -> bool:
    """A case's own `checks` limit what it gets; opt-in checks run only when asked for."""
    declared = getattr(case, "checks", ())
    if declared and spec.name not in declared:
        return False
    if wanted is not None:
        return spec.name in wanted
    return spec.default_for(case.tags, declared)


def _dtypes_and_devices(case, spec: Check) -> list[tuple[torch.dtype, str]]:
    """The dtypes the family runs in on each device: the case's complex ones, its real ones,
    or (low precision) the device's half-precision dtypes where the case has a real one; the
    case's float8 ones only where the family says so ("with-float8")."""
    real = [d for d in case.dtypes if not d.is_complex and d not in FLOAT8]
    if spec.dtypes == "low-precision":
        return [(dtype, device) for device in case.devices if real
                for dtype in LOW_PRECISION[device.split(":")[0]]]
    if spec.dtypes == "highest":
        real = sorted(real, key=lambda d: -torch.finfo(d).bits)[:1]
    dtypes = [d for d in case.dtypes if d.is_complex] if spec.dtypes == "complex" else real
    pairs = [(dtype, device) for dtype in dtypes for device in case.devices]
    if spec.dtypes in ("with-low-precision", "with-float8") and real:
        pairs += [(dtype, device) for device in case.devices
                  for dtype in LOW_PRECISION[device.split(":")[0]] if dtype not in real]
    if spec.dtypes == "with-float8":
        pairs += [(dtype, device) for dtype in case.dtypes if dtype in FLOAT8
                  for device in case.devices]
    return pairs


def device_available(device: str) -> bool:
    if device == "cpu":
        return True
    if device.startswith("cuda"):
        return torch.cuda.is_available()
    return False
