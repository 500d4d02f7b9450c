"""The search check: the fd check over hypothesis-searched inputs, shrunk to the smallest
that fails.

A fixed draw misses bugs that live in part of the domain (only x > 4), in some shapes (only
square matrices are right, or a dimension of size 1 is wrong) or in some layouts. The
strategy (harness.inputs.strategy) draws the case's named sizes over their ranges, values
over the declared domain, transposed layouts and the cotangent seed; hypothesis shrinks a
failure to the smallest input that still fails. The failing inputs travel in the Finding;
the runner saves them.
"""

from __future__ import annotations

import torch
from hypothesis import HealthCheck, Phase, given, seed
from hypothesis import settings as hypothesis_settings

from harness.checks.finite_diff import FD
from harness.checks.settings import PROFILES
from harness.checks.spec import Check, Finding, SearchFailure
from harness.diagnose.findings import record_of
from harness.inputs import Drawn, build_example, input_labels, item_seed, strategy
from harness.tolerances import dtype_name


def searched(target: Check, ex, run_settings) -> Finding:
    """Run `target` over searched inputs of `ex`'s case, dtype and device: pass (how many
    inputs), or the smallest failing input with the check's record there."""
    case, dtype, device = ex.case, ex.dtype, ex.device
    failures: list[tuple[Drawn, object]] = []
    tried = 0

    @seed(item_seed(run_settings.seed, f"search|{case.name}", dtype))
    @hypothesis_settings(max_examples=PROFILES[run_settings.profile], deadline=None,
                         database=None, suppress_health_check=list(HealthCheck),
                         phases=[Phase.explicit, Phase.generate, Phase.shrink])
    @given(drawn=strategy(case))
    def probe(drawn: Drawn) -> None:
        nonlocal tried
        tried += 1
        gen = torch.Generator().manual_seed(drawn.seed)
        try:
            example = build_example(case, drawn.tensors, dtype, device, run_settings.seed, gen)
            found = target.run(example, run_settings)
        except Exception as exc:  # a crash on some input is a finding too
            failures.append((drawn, exc))
            raise
        if found.failed:
            record = record_of(example, target, found, 0.0)
            failures.append((drawn, record))
            raise AssertionError(record.message)

    raised = None
    try:
        probe()
    except Exception as exc:  # hypothesis re-raises the shrunk failure, or its own error
        raised = exc
    if not failures and raised is not None:  # the search itself broke, not the gradient
        return Finding(error=f"{case.name} {dtype_name(dtype)} {device}: input search could "
                       f"not run: {type(raised).__name__}: {raised}")
    if not failures:
        return Finding(notes=(f"{tried} searched inputs ({run_settings.profile} profile)",))
    drawn, found = failures[-1]  # hypothesis replays the shrunk example last
    return Finding(searched=SearchFailure(
        tried=tried, profile=run_settings.profile,
        smallest=drawn.describe(input_labels(case, len(drawn.tensors))), found=found,
        inputs={"case": case.name, "inputs": drawn.tensors, "cotangent_seed": drawn.seed}))


def check_search(ex, run_settings) -> Finding:
    """Search sizes, values, layouts and cotangents for an input where the fd check fails."""
    return searched(FD, ex, run_settings)


SEARCH = Check("search", check_search, searches="fd", cost=0.11,
               doc="the fd check over hypothesis-searched sizes, values, layouts and "
               "cotangents, shrunk to the smallest failing input")
