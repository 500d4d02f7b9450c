"""One check of one function, the way the per-family tests call it."""

import torch

from harness import check_gradients


def run_check(check: str, fn, *inputs, dtype=torch.float64):
    """The single record of `check` on fn at `inputs` (cast to dtype, requiring grad)."""
    inputs = [x.to(dtype).requires_grad_() for x in inputs]
    (record,) = check_gradients(fn, *inputs, checks=(check,)).records
    return record
