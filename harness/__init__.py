"""Gradient-correctness harness for PyTorch: cases, checks, reports.

Public API: Case, Input, TrainingCase, OptInCases, check_gradients, assert_gradients,
Tolerance, Settings, Record.
"""

from harness.api import GradientReport, assert_gradients, check_gradients
from harness.case import Case, Input, TrainingCase
from harness.checks import Settings
from harness.record import Record
from harness.registry import OptInCases
from harness.tolerances import Tolerance

__all__ = [
    "Case",
    "GradientReport",
    "Input",
    "OptInCases",
    "Record",
    "Settings",
    "Tolerance",
    "TrainingCase",
    "assert_gradients",
    "check_gradients",
]
