"""Timing backward passes: torch.utils.benchmark underneath, one row per measurement.

Two modes per case and size: `backward` (graph built once in setup; torch.autograd.grad with a
fixed cotangent and retain_graph, so nothing accumulates in .grad) and `forward+backward`. On
CPU each is timed with 1 thread and with all cores; torch.utils.benchmark's Timer synchronizes
CUDA and warms up, blocked_autorange grows the block until timer overhead is negligible. A
measurement whose IQR passes 10% of its median is flagged `noisy`, not hidden.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.benchmark import Timer

from harness.case import Case
from harness.inputs import build_example, draw_sizes, draw_tensor, item_seed
from harness.runner import device_available

MODES = ("backward", "forward+backward")
NOISY = 0.10
"""IQR / median above this flags a measurement as noisy (torch.utils.benchmark's own rule)."""


@dataclass(frozen=True)
class BenchRow:
    """One timing: what was run, where, and what was measured."""

    case: str
    mode: str
    device: str
    dtype: str
    size: str
    numel: int
    threads: int
    median_s: float | None
    iqr_s: float | None
    repeats: int
    peak_memory_bytes: int | None
    memory_method: str
    gb_per_s: float | None = None
    gflop_per_s: float | None = None
    fraction_of_copy: float | None = None
    flags: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


class _AllocatedBytes(TorchDispatchMode):
    """Counts the bytes of new storages the dispatched ops return (views share storage)."""

    def __init__(self):
        super().__init__()
        self.bytes, self._seen = 0, set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and t.device.type != "meta":
                storage = t.untyped_storage()
                if storage.data_ptr() not in self._seen:
                    self._seen.add(storage.data_ptr())
                    self.bytes += storage.nbytes()
        return out


def bench_sizes(case: Case) -> list[dict[str, int]]:
    """The case's declared benchmark sizes, or its named sizes at their largest."""
    if case.bench_sizes:
        return [dict(s) for s in case.bench_sizes]
    return [{name: hi for name, (_, hi) in case.sizes.items()}]


def _example(case: Case, sizes: dict, dtype, device: str, seed: int):
    gen = torch.Generator().manual_seed(item_seed(seed, case.name, dtype))
    if callable(case.inputs):
        return build_example(case, tuple(case.inputs(gen)), dtype, device, seed, gen)
    sizes = {**draw_sizes(case, gen), **sizes}
    return build_example(case, [draw_tensor(s, sizes, gen) for s in case.input_specs],
                         dtype, device, seed, gen)


def _workloads(ex) -> dict[str, tuple[Callable[[], object], Callable[[], None]]]:
    """mode -> (the timed callable, a one-shot backward for memory)."""
    from harness.autodiff import vjp

    leaves = ex.leaves()
    targets = [leaves[i] for i in ex.wrt]
    outs = ex.fn(*leaves)
    outs = outs if isinstance(outs, (tuple, list)) else (outs,)
    pairs = [(o, v.to(o.dtype)) for o, v in zip(outs, ex.cotangents) if o.requires_grad]
    graph_outs, cotangents = [o for o, _ in pairs], [v for _, v in pairs]

    def backward():
        return torch.autograd.grad(graph_outs, targets, cotangents, retain_graph=True,
                                   allow_unused=True)

    def forward_backward():
        return vjp(ex, ex.leaves())

    return {"backward": (backward, backward), "forward+backward": (forward_backward,
                                                                   forward_backward)}


def _memory(run: Callable[[], object], device: str) -> tuple[int | None, str]:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        run()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before, "cuda max_memory_allocated"
    counter = _AllocatedBytes()
    with counter:
        run()
    return counter.bytes, "bytes of new storages allocated (upper bound of the peak)"


def copy_bandwidth(device: str = "cpu", nbytes: int = 2**26, timer: type = Timer) -> float:
    """This machine's measured copy bandwidth in bytes/s (read + write of `nbytes`)."""
    src = torch.empty(nbytes // 4, dtype=torch.float32, device=device).uniform_()
    dst = torch.empty_like(src)
    m = timer(stmt="dst.copy_(src)", globals={"dst": dst, "src": src},
              num_threads=torch.get_num_threads(), label="copy",
              description="copy").blocked_autorange(min_run_time=0.2)
    return 2 * nbytes / m.median


def measure(case: Case, sizes: dict, mode: str, dtype: torch.dtype, device: str,
            threads: int, min_run_time: float = 0.2, seed: int = 0,
            timer: type = Timer, bandwidth: float | None = None) -> BenchRow:
    """Time one (case, size, mode, dtype, device, threads). `timer` is injectable for tests."""
    dtype_name = str(dtype).removeprefix("torch.")
    label = ",".join(f"{k}={v}" for k, v in sorted(sizes.items())) or "default"
    common = dict(case=case.name, mode=mode, device=device, dtype=dtype_name, size=label,
                  threads=threads)
    if not device_available(device):
        return BenchRow(numel=0, median_s=None, iqr_s=None, repeats=0, peak_memory_bytes=None,
                        memory_method="unavailable", flags=f"{device} unavailable", **common)
    ex = _example(case, sizes, dtype, device, seed)
    numel = sum(x.numel() for x in ex.inputs)
    run, once = _workloads(ex)[mode]
    previous = torch.get_num_threads()
    try:
        measurement = timer(stmt="run()", globals={"run": run}, num_threads=threads,
                            label=case.name, description=mode).blocked_autorange(
                                min_run_time=min_run_time)
        memory, method = _memory(once, device)
    finally:
        torch.set_num_threads(previous)
    median, iqr = measurement.median, measurement.iqr
    flags = "noisy" if median > 0 and iqr / median > NOISY else ""
    rates = {}
    if mode == "backward" and median > 0:
        if case.bench_bytes is not None:
            rates["gb_per_s"] = case.bench_bytes(*ex.inputs) / median / 1e9
            if bandwidth:
                rates["fraction_of_copy"] = rates["gb_per_s"] * 1e9 / bandwidth
                if rates["fraction_of_copy"] > 1:  # the 64 MB copy streams from DRAM
                    flags = ",".join(f for f in (flags, "in-cache: faster than DRAM copy")
                                     if f)
        if case.bench_flops is not None:
            rates["gflop_per_s"] = case.bench_flops(*ex.inputs) / median / 1e9
    return BenchRow(numel=numel, median_s=median, iqr_s=iqr, repeats=len(measurement.times),
                    peak_memory_bytes=memory, memory_method=method, flags=flags, **rates,
                    **common)


def thread_counts() -> list[int]:
    """1 thread and all cores (once, on a one-core machine)."""
    return sorted({1, torch.get_num_threads()})


def run_bench(cases: Iterable[Case], devices: Iterable[str], dtypes: Iterable[torch.dtype],
              modes: Iterable[str] = MODES, min_run_time: float = 0.2, seed: int = 0,
              timer: type = Timer, progress: Callable[[str], None] | None = None
              ) -> list[BenchRow]:
    """Every (case, size, mode, dtype, device, threads); CPU twice (1 thread, all cores)."""
    rows = []
    cases = list(cases)
    bandwidth = {}
    if any(c.bench_bytes for c in cases):
        bandwidth = {d: copy_bandwidth(d, timer=timer) for d in devices if device_available(d)}
    for case in cases:
        for sizes in bench_sizes(case):
            for dtype in dtypes:
                for device in devices:
                    threads = thread_counts() if device == "cpu" else [torch.get_num_threads()]
                    for mode in modes:
                        for n in threads:
                            if progress:
                                progress(f"{case.name} {mode} {device} {n} thread(s) {sizes}")
                            rows.append(measure(case, sizes, mode, dtype, device, n,
                                                min_run_time, seed, timer,
                                                bandwidth.get(device)))
    return rows


def machine_info() -> dict[str, str]:
    cuda = torch.cuda.is_available()
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": str(torch.get_num_threads()),
        "torch": torch.__version__,
        "cuda": torch.version.cuda or "none" if cuda else "unavailable",
        "gpu": torch.cuda.get_device_name(0) if cuda else "unavailable",
        "tf32_matmul": str(torch.backends.cuda.matmul.allow_tf32),
        "cudnn_benchmark": str(torch.backends.cudnn.benchmark),
    }
