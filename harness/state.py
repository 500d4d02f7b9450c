"""Global torch state a case may change, saved before every item and restored after it.

A case that sets the default dtype, turns grad mode or anomaly detection off or on, reseeds
the random number generators or changes the thread count would otherwise break every case
that runs after it. What changed (other than the random state, which any case drawing random
numbers moves) is reported, since leaking it is a bug in the user's code too.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

import torch


def _settings() -> dict[str, object]:
    return {
        "default dtype": torch.get_default_dtype(),
        "grad mode": torch.is_grad_enabled(),
        "anomaly detection": torch.is_anomaly_enabled(),
        "number of threads": torch.get_num_threads(),
        "deterministic algorithms": torch.are_deterministic_algorithms_enabled(),
    }


@contextmanager
def preserved_torch_state() -> Iterator[list[str]]:
    """Restore torch's global settings and random state on exit; the yielded list is filled
    with what the body changed, as "grad mode True -> False" phrases."""
    before = _settings()
    cpu_rng = torch.random.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    python_rng = random.getstate()
    changed: list[str] = []
    try:
        yield changed
    finally:
        after = _settings()
        changed += [f"{name} {before[name]} -> {after[name]}" for name in before
                    if after[name] != before[name]]
        restore = {"default dtype": torch.set_default_dtype,
                   "grad mode": torch.set_grad_enabled,
                   "anomaly detection": torch.autograd.set_detect_anomaly,
                   "number of threads": torch.set_num_threads,
                   "deterministic algorithms": torch.use_deterministic_algorithms}
        for name, setter in restore.items():
            if after[name] != before[name]:  # setters are not free (0.6 ms for one)
                setter(before[name])
        torch.random.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)
        random.setstate(python_rng)
