"""How the tests run one check: on a function (through check_gradients), on a drawn example
or a training case (through the runner's run_check, skips included), or as a search."""

from types import SimpleNamespace

import torch

from harness import check_gradients, report, runner
from harness.checks import CHECKS, Settings
from harness.record import Record

SEMANTIC = ["accumulation", "zeroing", "retain-graph", "retain-grad", "non-scalar",
            "graph-switches", "reentrancy", "optimizer", "undefined-grad", "layouts"]
"""The autograd-contract families, which return one pass/fail verdict over every clause."""
TRAINING = ["step-zeroing", "step-updates", "per-sample"]
"""The training-step families."""


def only(check: str, fn, *inputs, **kwargs) -> Record:
    """The single record of `check` from check_gradients(fn, *inputs, **kwargs)."""
    (record,) = check_gradients(fn, *inputs, checks=(check,), **kwargs).records
    return record


def run_check(check: str, fn, *inputs, dtype=torch.float64, **kwargs) -> Record:
    """`only`, with the inputs cast to `dtype` and requiring grad."""
    return only(check, fn, *(x.to(dtype).requires_grad_() for x in inputs), **kwargs)


def on_example(check: str, ex, settings: Settings | None = None) -> Record:
    """The record of `check` on a prepared example (harness.inputs.draw_example)."""
    return runner.run_check(CHECKS[check], ex, settings or Settings(seed=ex.seed))


def on_case(check: str, case, dtype=torch.float64, settings: Settings | None = None) -> Record:
    """The record of `check` on the case's example for `dtype` on the CPU (any kind of case)."""
    settings = settings or Settings()
    ex = runner.prepared(case, dtype, "cpu", settings.seed)
    return runner.run_check(CHECKS[check], ex, settings)


def searched(case, report_dir=None, profile="quick", seed=0, dtype=torch.float64) -> Record:
    """The search check's record for `case`, shown as reports show it (failing inputs saved
    under `report_dir`, when given). The search reads only the case, dtype, device and seed
    of its example, so none is drawn (a case whose default draw raises is still searched)."""
    where = SimpleNamespace(case=case, dtype=dtype, device="cpu", seed=seed)
    record = runner.run_check(CHECKS["search"], where, Settings(seed=seed, profile=profile))
    return record if report_dir is None else report.shown([record], report_dir)[0]
