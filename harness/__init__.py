"""Gradient-correctness harness for PyTorch: cases, checks, reports.

Public API: Case, Input, TrainingCase, OptInCases, check_gradients, assert_gradients,
Tolerance, Settings, Record.

The names are imported when first used (PEP 562), so `harness check` can start its worker
processes before this process has paid for importing torch.
"""

from importlib import import_module

_PUBLIC = {
    "Case": "harness.case",
    "GradientReport": "harness.api",
    "Input": "harness.case",
    "OptInCases": "harness.registry",
    "Record": "harness.record",
    "Settings": "harness.checks",
    "Tolerance": "harness.tolerances",
    "TrainingCase": "harness.case",
    "assert_gradients": "harness.api",
    "check_gradients": "harness.api",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'harness' has no attribute {name!r}")
    value = getattr(import_module(_PUBLIC[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted([*globals(), *_PUBLIC])
