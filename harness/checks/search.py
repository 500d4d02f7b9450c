"""The search check: the fd check over hypothesis-searched inputs, shrunk to the smallest
that fails.

A fixed draw misses bugs that live in part of the domain (only x > 4), in some shapes (only
square matrices are right, or a dimension of size 1 is wrong) or in some layouts. The
strategy (harness.inputs.strategy) draws the case's named sizes over their ranges, values
over the declared domain, transposed layouts and the cotangent seed; hypothesis shrinks a
failure to the smallest input that still fails. The failing inputs travel in the Finding
and the record's evidence; the report writer saves them.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import replace

import torch
from hypothesis import HealthCheck, Phase, given, seed
from hypothesis import settings as hypothesis_settings
from hypothesis.internal.conjecture import providers as _providers
from hypothesis.internal.constants_ast import Constants

from harness.checks.finite_diff import FD
from harness.checks.settings import PROFILES
from harness.checks.spec import Check, Finding, SearchFailure
from harness.diagnose.findings import record_of
from harness.inputs import Drawn, build_example, input_labels, item_seed, strategy
from harness.record import Record
from harness.tolerances import dtype_name

SHRINK_CALLS = 24
"""Inputs the shrinker may check after the first failure. Hypothesis's own limit is 500: a
case whose fd check takes 5 ms then spends ~1 s making the failing input smaller, most of
it after the sizes and values are already near their smallest. Past this many, further
candidates pass unchecked, which ends the shrink with the smallest failure found so far."""


@contextmanager
def _without_local_constants():
    """Hypothesis draws 5% of its values from a pool of constants it reads from the source
    of every loaded module outside site-packages (a user's case files, the harness's own
    modules in an editable install), caching them under ./.hypothesis/constants. The pool
    depends on what the process happened to import, so one seed drew different inputs in a
    whole run and in its `reproduce:` line. Inside, that pool is empty (its global
    constants, 0, +-inf, nan and the edges, stay), and no module is read; a hypothesis
    without these internals draws as it does."""
    get = getattr(_providers, "_get_local_constants", None)
    cache = getattr(getattr(_providers, "CONSTANTS_CACHE", None), "cache", None)
    if get is None or cache is None:
        yield
        return
    cache.clear()  # drawable constants per kind of draw, computed from the pool
    _providers._get_local_constants = Constants
    try:
        yield
    finally:
        _providers._get_local_constants = get
        cache.clear()


SEARCH_ELEMENTS = 200_000
"""Checked input elements the search's inputs may hold in all. Each searched input costs a
whole fd check, whose forward calls grow with the input: a case of 10^5 parameters gets two
redrawn inputs, not the profile's twelve (its pass row says so)."""
MIN_SEARCHED = 2


def _checked_elements(ex) -> int:
    """Checked elements of the item's own example (0 where the search got none to read)."""
    if not hasattr(ex, "wrt"):
        return 0
    return sum(ex.inputs[i].numel() for i in ex.wrt)


def _fixed_inputs(case) -> bool:
    """Whether an `inputs` callable returns the same tensors whatever its generator (the
    tensors given to check_gradients): then there is no other input to search."""
    if not callable(case.inputs):
        return False
    try:
        first = tuple(case.inputs(torch.Generator().manual_seed(1)))
        second = tuple(case.inputs(torch.Generator().manual_seed(2)))
    except Exception:  # the search's own draw reports it
        return False
    return len(first) == len(second) and all(
        a is b or (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)
                   and a.shape == b.shape and a.dtype == b.dtype and torch.equal(a, b))
        for a, b in zip(first, second))


def search_count(ex, run_settings) -> int:
    """Inputs to search: the profile's count, cut so that they hold at most SEARCH_ELEMENTS
    checked elements at the size of the item's own example (never under MIN_SEARCHED)."""
    wanted = PROFILES[run_settings.profile]
    return max(MIN_SEARCHED, min(wanted, SEARCH_ELEMENTS // max(1, _checked_elements(ex))))


def searched(target: Check, ex, run_settings) -> Finding:
    """Run `target` over searched inputs of `ex`'s case, dtype and device: pass (how many
    inputs), or the smallest failing input with the check's record there. The probes ask
    for a verdict only (a wrong gradient fails every shrink step, and its diagnosis is 20x
    its verdict's cost); the whole check runs once more where the shrink ended."""
    case, dtype, device = ex.case, ex.dtype, ex.device
    if _fixed_inputs(case):
        return Finding(skip=FIXED_INPUTS)
    quick_settings = replace(run_settings, verdict_only=True)
    failures: list[tuple[Drawn, object]] = []
    seen: list[tuple[Drawn, bool]] = []  # every input checked, and whether it failed
    tried = shrunk = 0
    count = search_count(ex, run_settings)
    budget = run_settings.search_seconds
    started = time.perf_counter()
    out_of_time = False

    @seed(item_seed(run_settings.seed, f"search|{case.name}", dtype))
    @hypothesis_settings(max_examples=count, deadline=None,
                         database=None, suppress_health_check=list(HealthCheck),
                         phases=[Phase.explicit, Phase.generate, Phase.shrink])
    @given(drawn=strategy(case))
    def probe(drawn: Drawn) -> None:
        nonlocal tried, shrunk, out_of_time
        if failures:
            shrunk += 1
            if shrunk > SHRINK_CALLS:
                return
        elif tried and budget is not None and time.perf_counter() - started > budget:
            out_of_time = True  # the inputs left pass unchecked: the row says how many ran
            return
        tried += 1
        try:
            example = _example(case, drawn, dtype, device, run_settings.seed)
            found = target.run(example, quick_settings)
        except Exception as exc:  # a crash on some input is a finding too
            failures.append((drawn, exc))
            seen.append((drawn, True))
            raise
        seen.append((drawn, found.failed))
        if found.failed:
            record = record_of(example, target, found, 0.0, reproduce=False)
            failures.append((drawn, record))
            raise AssertionError(record.message)

    # no database is kept, so the key hypothesis would hash from probe's source (reading and
    # tokenizing this file: 4 ms a search) is never used
    probe._hypothesis_internal_database_key = b"harness.search"
    raised = None
    try:
        with _without_local_constants():
            probe()
    except Exception as exc:  # hypothesis re-raises the shrunk failure, or its own error
        raised = exc
    if not failures and raised is not None:  # the search itself broke, not the gradient
        return Finding(error=f"{case.name} {dtype_name(dtype)} {device}: input search could "
                       f"not run: {type(raised).__name__}: {raised}")
    searched_note = _searched_note(seen, tried, count, ex, run_settings, out_of_time)
    if not failures:
        return Finding(notes=(searched_note,))
    confirmed = _confirmed(target, case, dtype, device, run_settings, failures)
    if confirmed is None:
        return Finding(notes=(f"{searched_note}; {len(failures)} quick verdicts of failure did "
                              "not stand the whole check",))
    drawn, found = confirmed
    labels = tuple(input_labels(case, len(drawn.tensors)))
    return Finding(searched=SearchFailure(
        tried=tried, profile=run_settings.profile,
        shrink_cut=SHRINK_CALLS if shrunk > SHRINK_CALLS else 0,
        smallest=drawn.describe(labels), found=found,
        inputs={"case": case.name, "inputs": drawn.tensors, "cotangent_seed": drawn.seed},
        seen=tuple((d.tensors, failed) for d, failed in seen),
        smallest_tensors=drawn.tensors, labels=labels))


FIXED_INPUTS = ("the inputs are fixed (the case's inputs callable returns the same tensors "
                "whatever its generator, as check_gradients' own tensors are): there is no other "
                "input to search, and the fd check covers these; declare Input specs with sizes, "
                "or an inputs callable that draws from its generator, to search")


def _searched_note(seen, tried: int, count: int, ex, run_settings, out_of_time: bool) -> str:
    """How many inputs the search checked and how big they were, and what cut it short."""
    profile = run_settings.profile
    note = f"{tried} searched inputs ({profile} profile"
    if count < PROFILES[profile]:
        note += (f": {PROFILES[profile]}, cut to {count} at {_checked_elements(ex):,} checked "
                 f"elements an input, to hold {SEARCH_ELEMENTS:,} in all")
    if out_of_time:
        note += f"; stopped at its budget of {run_settings.search_seconds:g} s"
    note += ")"
    sizes = [sum(t.numel() for t in drawn.tensors) for drawn, _ in seen]
    if sizes:
        low, high = min(sizes), max(sizes)
        note += (f", {low:,} elements each" if low == high
                 else f", {low:,} to {high:,} elements each")
    return note


def _example(case, drawn: Drawn, dtype, device, seed: int):
    """The example of one searched input, its cotangent drawn from the input's seed; its
    forward is kept for the check (inputs.build_example)."""
    gen = torch.Generator().manual_seed(drawn.seed)
    return build_example(case, drawn.tensors, dtype, device, seed, gen, keep_forward=True)


def _confirmed(target: Check, case, dtype, device, run_settings, failures):
    """The smallest failure whose whole check fails too, with that diagnosis (hypothesis
    replays the shrunk example last); a crash stands as it is. None when no quick verdict
    stands: the whole check can rescue what the quick one doubted (kinks, rounding)."""
    for drawn, found in reversed(failures):
        if not isinstance(found, Record):
            return drawn, found
        example = _example(case, drawn, dtype, device, run_settings.seed)
        full = target.run(example, run_settings)
        if full.failed:
            return drawn, record_of(example, target, full, 0.0, reproduce=False)
    return None


def check_search(ex, run_settings) -> Finding:
    """Search sizes, values, layouts and cotangents for an input where the fd check fails."""
    return searched(FD, ex, run_settings)


SEARCH = Check("search", check_search, searches="fd", cost=0.11,
               doc="the fd check over hypothesis-searched sizes, values, layouts and "
               "cotangents, shrunk to the smallest failing input")
