"""The thin loop: (case, check, dtype, device) items -> records.

The same items feed the CLI, the pytest plugin and pytest-xdist: each runs alone from its own
seed, and anything it raises becomes an error row instead of stopping the run.
"""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import torch

from harness import diagnose
from harness.case import Case, TrainingCase
from harness.checks import ALL_CHECK_NAMES, CHECKS, OPT_IN_CHECKS, TRAINING_CHECKS, Settings
from harness.inputs import CaseError, draw_example
from harness.record import Record
from harness.state import preserved_torch_state
from harness.tolerances import LOW_PRECISION


@dataclass(frozen=True)
class Item:
    """One unit of work; `id` is what pytest and the reports show."""

    case: Case | TrainingCase
    check: str
    dtype: torch.dtype
    device: str

    @property
    def dtype_name(self) -> str:
        return str(self.dtype).removeprefix("torch.")

    @property
    def id(self) -> str:
        return f"{self.case.name}-{self.check}-{self.dtype_name}-{self.device}"


def items_for(
    cases: Iterable[Case],
    checks: Iterable[str] | None = None,
    dtypes: Iterable[torch.dtype] | None = None,
    devices: Iterable[str] | None = None,
) -> list[Item]:
    """Every (case, check, dtype, device) the case declares, filtered by the arguments.

    A Case gets the gradient and semantics checks (or only its `checks`), a TrainingCase the
    training checks; opt-in checks (compiled, sparse) only when named in `checks`, in the
    case's own `checks`, or by the case's tags.
    """
    wanted = list(checks) if checks is not None else None
    for name in wanted or ():
        if name not in ALL_CHECK_NAMES:
            raise ValueError(f"unknown check {name!r}; known: {', '.join(ALL_CHECK_NAMES)}")
    dtypes = set(dtypes) if dtypes is not None else None
    devices = set(devices) if devices is not None else None
    return [
        Item(case, check, dtype, device)
        for case in cases
        for check in (TRAINING_CHECKS if isinstance(case, TrainingCase) else CHECKS)
        if _selected(case, check, wanted)
        for dtype, device in _dtypes_and_devices(case, check)
        if (dtypes is None or dtype in dtypes) and (devices is None or device in devices)
    ]


def _selected(case, check: str, wanted: list[str] | None) -> bool:
    """A case's own `checks` limit what it gets; opt-in checks run only when asked for."""
    declared = getattr(case, "checks", ())
    if declared and check not in declared:
        return False
    if wanted is not None:
        return check in wanted
    return (check not in OPT_IN_CHECKS or check in declared
            or OPT_IN_CHECKS[check] in case.tags)


def _dtypes_and_devices(case, check: str) -> list[tuple[torch.dtype, str]]:
    """The case's dtypes on each device: its complex ones for the complex check, its real ones
    for the others; the low-precision check runs in the device's half-precision dtypes."""
    real = [d for d in case.dtypes if not d.is_complex]
    if check == "low-precision":
        return [(dtype, device) for device in case.devices if real
                for dtype in LOW_PRECISION[device.split(":")[0]]]
    dtypes = [d for d in case.dtypes if d.is_complex] if check == "complex" else real
    return [(dtype, device) for dtype in dtypes for device in case.devices]


def device_available(device: str) -> bool:
    if device == "cpu":
        return True
    if device.startswith("cuda"):
        return torch.cuda.is_available()
    return False


_NOT_THE_CASE = (os.path.dirname(torch.__file__), os.path.dirname(os.__file__),
                 os.path.dirname(__file__))


def _case_frame(frames):
    """The deepest frame in the case's own code (not torch, Python or the harness)."""
    for frame in reversed(frames):
        if not frame.filename.startswith(_NOT_THE_CASE):
            return frame
    return None


def item_record(item: Item, settings: Settings, status: str, message: str,
                seconds: float = 0.0) -> Record:
    """A record of `item` written by the harness itself (a skip, an error, a crash)."""
    return Record(case=item.case.name, check=item.check, dtype=item.dtype_name,
                  device=item.device, status=status, message=message, seed=settings.seed,
                  seconds=seconds, source=item.case.source)


def run_item(item: Item, settings: Settings) -> list[Record]:
    """Run one item; never raises for the case's own failures."""
    if not device_available(item.device):
        return [item_record(item, settings, "skip", f"device {item.device} unavailable")]
    start = time.perf_counter()
    try:
        with preserved_torch_state() as changed:
            if isinstance(item.case, TrainingCase):
                records = TRAINING_CHECKS[item.check](item.case, item.dtype, item.device,
                                                      settings)
            else:
                ex = draw_example(item.case, item.dtype, item.device, settings.seed)
                records = CHECKS[item.check](ex, settings)
        if changed:
            records = [diagnose.with_state_note(r, changed) for r in records]
        expected = item.case.expected_failures.get(item.check)
        return records if expected is None else [
            diagnose.as_expected_failure(r, expected) for r in records]
    except CaseError as exc:
        message = f"{item.id}: broken case: {exc}"
    except Exception as exc:  # the case's code raised: report it, keep running
        frames = traceback.extract_tb(exc.__traceback__)
        where, own = frames[-1], _case_frame(frames)
        message = (f"{item.id}: {type(exc).__name__}: {exc} "
                   f"(at {where.filename}:{where.lineno} in {where.name})")
        if own is not None and own is not where:
            message += f", from the case's code at {own.filename}:{own.lineno} in {own.name}"
        if hint := diagnose.error_hint(item.check, exc, case_code=own is not None):
            message += f"; {hint}"
    return [item_record(item, settings, "error", message, time.perf_counter() - start)]


def run_items(
    items: list[Item], settings: Settings,
    progress: Callable[[int, int, Item], None] | None = None,
) -> Iterator[Record]:
    """Run items in order, yielding records as they come."""
    for n, item in enumerate(items):
        if progress:
            progress(n, len(items), item)
        yield from run_item(item, settings)
