"""The thin loop: (case, check, dtype, device) items -> records.

The same items feed the CLI, the pytest plugin and pytest-xdist: each runs alone from its own
seed, and anything it raises becomes an error row instead of stopping the run.
"""

from __future__ import annotations

import os
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import torch

from harness import memo
from harness.autodiff import carries_graph
from harness.case import TrainingCase, library_custom_op
from harness.checks import Check, Finding, Settings
from harness.diagnose import contracts, transforms
from harness.diagnose.determinism import NotDeterministic, with_determinism
from harness.diagnose.events import error_hint, with_state_note
from harness.diagnose.findings import as_expected_failure, record_of
from harness.evidence import evidence_of
from harness.inputs import CaseError, draw_example, draw_training_example
from harness.plan import Item, PlannedItem, device_available
from harness.record import Record
from harness.state import preserved_torch_state
from harness.tolerances import dtype_name

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
    return PlannedItem.of(item).record(settings.seed, status, message, seconds)


def prepared(case, dtype: torch.dtype, device: str, seed: int):
    """The example a family's check receives: drawn inputs and cotangents for a Case, the
    model and batch for a TrainingCase."""
    if isinstance(case, TrainingCase):
        return draw_training_example(case, dtype, device, seed)
    return draw_example(case, dtype, device, seed, keep_forward=True)


SHARED_EXAMPLES = 4
"""Prepared examples kept for the next items of the same (case, dtype, device, seed): the
families of a case run one after another (items_for orders them so), and each drew and ran
the same example before. Kept only while no tensor of it was changed in place."""
_shared: dict[tuple, tuple] = {}


def shared_example(case, dtype: torch.dtype, device: str, seed: int):
    """`prepared`, drawn once for the items of one (case, dtype, device, seed): the example
    of a Case is read, never written, by the families (they differentiate fresh leaves), and
    one whose tensors were changed in place anyway is drawn again. A TrainingCase's model is
    trained by its families, so it is drawn for each."""
    if isinstance(case, TrainingCase) or not SHARED_EXAMPLES:
        return prepared(case, dtype, device, seed)
    key = (id(case), dtype, device, seed)
    kept = _shared.get(key)
    if kept is not None and kept[0] is case and memo.versions(kept[1]) == kept[2]:
        return kept[1]
    ex = prepared(case, dtype, device, seed)
    _shared[key] = (case, ex, memo.versions(ex))
    while len(_shared) > SHARED_EXAMPLES:
        _shared.pop(next(iter(_shared)))
    return ex


def run_check(spec: Check, ex, settings: Settings, started: float | None = None,
              expected: str | None = None) -> Record:
    """`spec`'s check on a prepared example, with the skips every family shares: a record.
    `expected`: the phrase of a failure the case declares (an xfail when it shows). The
    record carries the evidence of a failure (harness.evidence), which reports draw and save:
    a searched failure's inputs, and the failing comparisons of a row that fails the run (no
    report shows an xfail's picture)."""
    started = time.perf_counter() if started is None else started
    if missing := spec.missing(ex.case):
        finding = Finding(skip=spec.without or f"the case sets no {missing} "
                                               f"(Case.{missing} is None)")
    elif spec.forward_mode and (op := library_custom_op(getattr(ex.case, "op", None))):
        finding = Finding(skip=contracts.custom_op_no_forward_mode(op))
    elif spec.needs_graph and not carries_graph(ex):
        finding = Finding(skip=contracts.NO_GRAPH)
    elif spec.second_order and ex.case.twice_differentiable is False:
        finding = Finding(skip=contracts.NOT_TWICE_DIFFERENTIABLE)
    else:
        try:
            finding = spec.run(ex, settings)
        except NotDeterministic as exc:  # a comparison doubted and read fn's own noise
            finding = Finding(problems=(str(exc),))
    record = record_of(ex, spec, finding, time.perf_counter() - started)
    if not isinstance(ex.case, TrainingCase):
        record = with_determinism(record, ex)
    if expected is not None:
        record = as_expected_failure(record, expected)
    evidence = evidence_of(finding, record.status, ex.case.name, spec.searches or spec.name,
                           dtype_name(ex.dtype))
    return record if evidence is None else replace(record, evidence=evidence)


def run_item(item: Item, settings: Settings) -> Record:
    """Run one item: its one record. Never raises for the case's own failures."""
    if not device_available(item.device):
        return item_record(item, settings, "skip", f"device {item.device} unavailable")
    start = time.perf_counter()
    try:
        with preserved_torch_state() as changed:
            try:
                ex = shared_example(item.case, item.dtype, item.device, settings.seed)
            except Exception as exc:
                if item.dtype in item.case.dtypes:
                    raise
                # a dtype the family adds (bfloat16, float16): fn need not run in it
                record = item_record(item, settings, "skip", transforms.dtype_unsupported_phrase(
                    item.dtype_name, item.device, exc), time.perf_counter() - start)
            else:
                record = run_check(item.spec, ex, settings, start,
                                   expected=item.case.expected_failures.get(item.check))
        if changed:
            record = with_state_note(record, changed)
        return record
    except CaseError as exc:
        message = f"broken case: {exc}"
    except Exception as exc:  # the case's code raised: report it, keep running
        frames = traceback.extract_tb(exc.__traceback__)
        where, own = frames[-1], _case_frame(frames)
        message = (f"{type(exc).__name__}: {exc} "
                   f"(at {where.filename}:{where.lineno} in {where.name})")
        if own is not None and own is not where:
            message += f", from the case's code at {own.filename}:{own.lineno} in {own.name}"
        if hint := error_hint(exc, differentiates_backward=item.spec.second_order,
                              case_code=own is not None):
            message += f"; {hint}"
    return item_record(item, settings, "error", message, time.perf_counter() - start)


@dataclass(frozen=True)
class Finished:
    """A record with the position of its item in the run (workers finish out of order)."""

    index: int
    record: Record
    warnings: tuple[str, ...] = ()
    """The warnings the item raised, shown once at the end of the run."""


def run_item_noting_warnings(item: Item, settings: Settings) -> tuple[Record, tuple[str, ...]]:
    """run_item, with the warnings it raised collected ("Category: message (file:line)")
    instead of printed between the progress lines."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        record = run_item(item, settings)
    return record, tuple(f"{w.category.__name__}: {str(w.message).splitlines()[0][:200]} "
                         f"({os.path.basename(w.filename)}:{w.lineno})" for w in caught)


def run_items(
    items: list[Item], settings: Settings,
    progress: Callable[[int, int, Item], None] | None = None,
) -> Iterator[Finished]:
    """Run items in order, in this process, yielding records as they come."""
    for n, item in enumerate(items):
        if progress:
            progress(n, len(items), item)
        yield Finished(n, *run_item_noting_warnings(item, settings))
