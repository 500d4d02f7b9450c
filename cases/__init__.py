"""The built-in cases, registered through the `harness.cases` entry point like any plugin."""

from gradharness_cases.blocks import BLOCK_CASES
from gradharness_cases.custom_ops import CUSTOM_OP_CASES
from gradharness_cases.float8 import FLOAT8_CASES
from gradharness_cases.kernels import KERNEL_CASES
from gradharness_cases.training import TRAINING_CASES
from gradharness_cases.tutorials import TUTORIAL_CASES


def all_cases():
    """Every built-in case: the tutorials' worked examples and training loops, then the
    building blocks, then the hand-written kernels checked against their references (float8
    ones too), then a torch.library custom op."""
    return [*TUTORIAL_CASES, *TRAINING_CASES, *BLOCK_CASES, *KERNEL_CASES, *FLOAT8_CASES,
            *CUSTOM_OP_CASES]
