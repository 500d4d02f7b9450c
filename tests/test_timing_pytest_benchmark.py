"""The `harness bench` cases as pytest-benchmark items: `pytest --benchmark-only` times them.

Each item is one (case, size, mode, device) at all CPU cores, built by the same
`bench_items` as `harness bench`; the timed callable synchronizes CUDA before returning, so
pytest-benchmark's clock sees the whole backward. Flags are pinned (TF32 and cudnn.benchmark
off). A default test run executes each workload once (tests/conftest.py turns on
--benchmark-disable), which checks that every benchmark workload runs.
"""

import fnmatch

import pytest
import torch

from harness import registry
from harness.bench import (
    DEFAULT_CASES,
    bench_items,
    pinned_flags,
    synchronize,
    threads_set,
    workload,
)
from harness.plan import device_available

CASES = [c for c in registry.load().cases
         if any(fnmatch.fnmatchcase(c.name, p) for p in DEFAULT_CASES)]
ITEMS = bench_items(CASES, ["cpu", "cuda"], [torch.float32],
                    cpu_threads=[torch.get_num_threads()])


@pytest.mark.parametrize("item", ITEMS, ids=lambda i: i.id)
def test_backward_timing(item, benchmark):
    if not device_available(item.device):
        pytest.skip(f"{item.device} unavailable")
    benchmark.group = f"{item.case.name} {item.mode}"
    with pinned_flags() as flags, threads_set(item.threads):
        run, ex = workload(item)

        def synchronized():
            out = run()
            synchronize(item.device)
            return out

        grads = benchmark(synchronized)
    benchmark.extra_info.update(size=item.size_label, device=item.device,
                                threads=item.threads, dtype=str(item.dtype),
                                numel=sum(x.numel() for x in ex.inputs), **flags)
    assert len(grads) == len(ex.wrt)
    assert all(g is None or torch.isfinite(g).all() for g in grads)
