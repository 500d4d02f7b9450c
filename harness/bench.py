"""Timing backward passes: torch.utils.benchmark underneath, one row per measurement.

Two modes per case and size: `backward` (graph built once in setup; torch.autograd.grad with a
fixed cotangent and retain_graph, so nothing accumulates in .grad) and `forward+backward`. On
CPU each is timed with 1 thread and with all cores. Each shape is warmed up first; the Timer
synchronizes CUDA around every block and blocked_autorange grows the block until timer overhead
is negligible; a measurement with fewer than `repeats` blocks is taken again, longer. A
measurement whose IQR passes 10% of its median is flagged `noisy`, not hidden. TF32 and
cudnn.benchmark are pinned for the run and recorded with the machine.
"""

from __future__ import annotations

import contextlib
import math
import platform
import subprocess
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.benchmark import Measurement, Timer

from harness import calibration
from harness.case import Case
from harness.inputs import draw_example
from harness.plan import device_available

MODES = ("backward", "forward+backward")
DEFAULT_CASES = ("block/*", "tutorial/tiny-model")
"""What `harness bench` and the pytest-benchmark items time unless told otherwise."""
NOISY = 0.10
"""IQR / median above this flags a measurement as noisy (torch.utils.benchmark's own rule)."""
REPEATS = 10
"""Fewest timed blocks behind a median and IQR."""
WARMUP = 3
"""Untimed calls per shape before timing (lazy init, allocator, cudnn autotuning)."""
DEFAULT_TARGETS = (2**10, 2**14, 2**18)
"""Total input elements of the default size family, where a case declares none."""


@dataclass(frozen=True)
class BenchItem:
    """One thing to time: a case at one size, in one mode, dtype, device and thread count."""

    case: Case
    sizes: Mapping[str, int]
    mode: str
    dtype: torch.dtype
    device: str
    threads: int

    @property
    def size_label(self) -> str:
        return ",".join(f"{k}={v}" for k, v in sorted(self.sizes.items())) or "default"

    @property
    def id(self) -> str:
        dtype = str(self.dtype).removeprefix("torch.")
        return (f"{self.case.name}[{self.size_label}]-{self.mode}-{dtype}-{self.device}"
                f"-{self.threads}t")


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
    backward_bytes: int | None = None
    backward_flop: int | None = None
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


def _total_numel(case: Case, value: int) -> int:
    """Elements of all inputs with every named size set to `value`."""
    return sum(math.prod(value if isinstance(d, str) else d for d in spec.shape)
               for spec in case.input_specs)


def default_family(case: Case) -> list[dict[str, int]]:
    """Every named size set alike so all inputs hold about 2^10, 2^14 and 2^18 elements; a case
    with fixed shapes or an inputs callable is timed as it is."""
    used = [n for n in case.sizes if any(n in spec.shape for spec in case.input_specs)]
    if not used:
        return [{}]
    family = []
    for target in DEFAULT_TARGETS:
        low, high = 1, 1
        while _total_numel(case, high) < target and high < 2**24:
            low, high = high, high * 2
        while low < high:  # the smallest value reaching the target
            mid = (low + high) // 2
            low, high = (mid + 1, high) if _total_numel(case, mid) < target else (low, mid)
        setting = {name: high for name in used}
        if setting not in family:
            family.append(setting)
    return family


def bench_sizes(case: Case, override: Iterable[Mapping[str, int]] = ()) -> list[dict[str, int]]:
    """The sizes to time: `override` entries whose names the case declares, else the case's
    declared `bench_sizes`, else `default_family`."""
    chosen = [dict(s) for s in override if s and set(s) <= set(case.sizes)]
    if chosen:
        return chosen
    if case.bench_sizes:
        return [dict(s) for s in case.bench_sizes]
    return default_family(case)


def bench_items(cases: Iterable[Case], devices: Iterable[str], dtypes: Iterable[torch.dtype],
                modes: Iterable[str] = MODES, sizes: Iterable[Mapping[str, int]] = (),
                cpu_threads: Iterable[int] | None = None) -> list[BenchItem]:
    """Every (case, size, dtype, device, mode, threads); CPU at `cpu_threads` (default: 1 and
    all cores). The one list behind `harness bench` and the pytest-benchmark items. Cases
    tagged "sparse" are not timed (the timed workloads are built on dense leaves)."""
    sizes = list(sizes)
    cpu_threads = list(cpu_threads or thread_counts())
    return [BenchItem(case, s, mode, dtype, device, n)
            for case in cases if "sparse" not in case.tags
            for s in bench_sizes(case, sizes) for dtype in dtypes
            for device in devices for mode in modes
            for n in (cpu_threads if device == "cpu" else [torch.get_num_threads()])]


def _workload(ex, mode: str) -> Callable[[], object]:
    """The timed callable on leaves and cotangents made once (cast to the outputs' dtypes
    here, not in the timed call). `backward` builds its graph here, outside the timing, and
    keeps it (retain_graph); `forward+backward` builds a new one per call."""
    leaves = ex.leaves()
    targets = [leaves[i] for i in ex.wrt]
    first = ex.fn(*leaves)
    first = first if isinstance(first, (tuple, list)) else (first,)
    keep = [k for k, o in enumerate(first) if o.requires_grad]
    cotangents = [ex.cotangents[k].to(first[k].dtype) for k in keep]
    if mode == "forward+backward":
        del first

        def forward_backward():
            outs = ex.fn(*leaves)
            outs = outs if isinstance(outs, (tuple, list)) else (outs,)
            return torch.autograd.grad([outs[k] for k in keep], targets, cotangents,
                                       allow_unused=True)

        return forward_backward
    outs = [first[k] for k in keep]

    def backward():
        return torch.autograd.grad(outs, targets, cotangents, retain_graph=True,
                                   allow_unused=True)

    return backward


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


def synchronize(device: str) -> None:
    """Wait for the device's queued work (a no-op on CPU)."""
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def workload(item: BenchItem, seed: int = 0) -> tuple[Callable[[], object], object]:
    """The item's callable, warmed up on its shape, and its example (for byte/FLOP counts)."""
    ex = draw_example(item.case, item.dtype, item.device, seed, sizes=item.sizes)
    run = _workload(ex, item.mode)
    with threads_set(item.threads):
        for _ in range(WARMUP):
            run()
        synchronize(item.device)
    return run, ex


@contextlib.contextmanager
def threads_set(n: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextlib.contextmanager
def pinned_flags(tf32: bool = False, cudnn_benchmark: bool = False) -> Iterator[dict]:
    """TF32 (matmul and cudnn) and cudnn.benchmark set for the block, restored after; yields
    what was set, for the report. cudnn's own flags() context is used, which works even where
    torch's test utilities have frozen the global flags."""
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    previous = matmul.allow_tf32
    matmul.allow_tf32 = tf32
    try:
        with cudnn.flags(enabled=cudnn.enabled, benchmark=cudnn_benchmark,
                         deterministic=cudnn.deterministic, allow_tf32=tf32):
            yield {"tf32 (pinned)": str(tf32), "cudnn.benchmark (pinned)": str(cudnn_benchmark)}
    finally:
        matmul.allow_tf32 = previous


def copy_bandwidth(device: str = "cpu", nbytes: int = 2**26, timer: type | None = None) -> float:
    """This machine's measured copy bandwidth in bytes/s (read + write of `nbytes`)."""
    timer = timer or Timer
    src = torch.empty(nbytes // 4, dtype=torch.float32, device=device).uniform_()
    dst = torch.empty_like(src)
    m = timer(stmt="dst.copy_(src)", globals={"dst": dst, "src": src},
              num_threads=torch.get_num_threads(), label="copy",
              description="copy").blocked_autorange(min_run_time=0.2)
    return 2 * nbytes / m.median


def time_callable(run: Callable[[], object], threads: int, label: str, description: str,
                  min_run_time: float = 0.2, repeats: int = REPEATS, timer: type | None = None):
    """blocked_autorange, taken again for longer while it timed fewer than `repeats` blocks
    (a slow call fills min_run_time in one or two), so the IQR means something. Only the last
    measurement counts; the block size can grow with the run time, hence a few tries. Under
    load blocked_autorange may keep choosing blocks too big for its run time: then blocks of
    the last size are timed one by one until there are `repeats` of them. `timer`: the Timer
    class (torch.utils.benchmark's, looked up when called, so tests can replace it)."""
    timer = timer or Timer
    t = timer(stmt="run()", globals={"run": run}, num_threads=threads, label=label,
              description=description)
    measurement = t.blocked_autorange(min_run_time=min_run_time)
    for _ in range(3):
        if len(measurement.times) >= repeats:
            break
        block = measurement.median * measurement.number_per_run
        measurement = t.blocked_autorange(min_run_time=max(min_run_time, 1.2 * repeats * block))
    if len(measurement.times) < repeats and isinstance(measurement, Measurement):
        raw = list(measurement.raw_times)
        while len(raw) < repeats:
            raw.extend(t.timeit(measurement.number_per_run).raw_times)
        measurement = Measurement(measurement.number_per_run, raw, measurement.task_spec,
                                  measurement.metadata)
    return measurement


def measure(item: BenchItem, min_run_time: float = 0.2, repeats: int = REPEATS, seed: int = 0,
            timer: type | None = None, bandwidth: float | None = None) -> BenchRow:
    """Time one item. A case that raises becomes a row flagged with the error, not a crash.
    `timer` is injectable for tests."""
    timer = timer or Timer
    common = dict(case=item.case.name, mode=item.mode, device=item.device,
                  dtype=str(item.dtype).removeprefix("torch."), size=item.size_label,
                  threads=item.threads)
    if not device_available(item.device):
        return BenchRow(numel=0, median_s=None, iqr_s=None, repeats=0, peak_memory_bytes=None,
                        memory_method="unavailable", flags=f"{item.device} unavailable",
                        **common)
    try:
        run, ex = workload(item, seed)
        measurement = time_callable(run, item.threads, item.case.name, item.mode,
                                    min_run_time, repeats, timer)
        with threads_set(item.threads):
            memory, method = _memory(run, item.device)
    except Exception as exc:  # a broken case is a row, the run goes on
        return BenchRow(numel=0, median_s=None, iqr_s=None, repeats=0, peak_memory_bytes=None,
                        memory_method="not measured",
                        flags=f"error: {type(exc).__name__}: {exc}"[:300], **common)
    numel = sum(x.numel() for x in ex.inputs)
    median, iqr = measurement.median, measurement.iqr
    flags = ["noisy"] if median > 0 and iqr / median > NOISY else []
    rates = {}
    if item.case.bench_bytes is not None:
        rates["backward_bytes"] = int(item.case.bench_bytes(*ex.inputs))
    if item.case.bench_flops is not None:
        rates["backward_flop"] = int(item.case.bench_flops(*ex.inputs))
    if item.mode == "backward" and median > 0:
        if "backward_bytes" in rates:
            rates["gb_per_s"] = rates["backward_bytes"] / median / 1e9
            if bandwidth:
                rates["fraction_of_copy"] = rates["gb_per_s"] * 1e9 / bandwidth
                if rates["fraction_of_copy"] > 1:  # the 64 MB copy streams from DRAM
                    flags.append("in-cache: faster than DRAM copy")
        if "backward_flop" in rates:
            rates["gflop_per_s"] = rates["backward_flop"] / median / 1e9
    return BenchRow(numel=numel, median_s=median, iqr_s=iqr, repeats=len(measurement.times),
                    peak_memory_bytes=memory, memory_method=method, flags=",".join(flags),
                    **rates, **common)


def thread_counts() -> list[int]:
    """1 thread and all cores (once, on a one-core machine)."""
    return sorted({1, torch.get_num_threads()})


def run_bench(items: Iterable[BenchItem], min_run_time: float = 0.2, repeats: int = REPEATS,
              seed: int = 0, timer: type | None = None,
              progress: Callable[[str], None] | None = None) -> list[BenchRow]:
    """Measure every item; copy bandwidth first where a case declares bytes moved."""
    return list(iter_bench(items, min_run_time, repeats, seed, timer, progress))


def iter_bench(items: Iterable[BenchItem], min_run_time: float = 0.2, repeats: int = REPEATS,
               seed: int = 0, timer: type | None = None,
               progress: Callable[[str], None] | None = None,
               readings: list | None = None) -> Iterator[BenchRow]:
    """run_bench, one row at a time, so an interrupted run keeps what it measured.
    `readings`, when given, collects harness.calibration readings: before the first item,
    after each case and at the end."""
    timer = timer or Timer
    items = list(items)
    devices = {i.device for i in items if i.case.bench_bytes and device_available(i.device)}
    bandwidth = {d: copy_bandwidth(d, timer=timer) for d in sorted(devices)}
    if readings is not None:
        readings.append(calibration.reading(0, timer))
    for n, item in enumerate(items):
        if progress:
            progress(item.id)
        yield measure(item, min_run_time, repeats, seed, timer, bandwidth.get(item.device))
        last_of_case = n + 1 == len(items) or items[n + 1].case is not item.case
        if readings is not None and last_of_case:
            readings.append(calibration.reading(n + 1, timer))


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _gpu_driver() -> str:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version",
                              "--format=csv,noheader"], capture_output=True, text=True,
                             timeout=10)
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError, IndexError):
        return "unknown"


def machine_info() -> dict[str, str]:
    """What a reader needs to trust or reproduce a timing: CPU, cores, GPU, driver, versions."""
    cuda = torch.cuda.is_available()
    return {
        "cpu": _cpu_model(),
        "cores": str(torch.get_num_threads()),
        "torch": torch.__version__,
        "cuda": (torch.version.cuda or "none") if cuda else "unavailable",
        "gpu": torch.cuda.get_device_name(0) if cuda else "unavailable",
        "gpu_driver": _gpu_driver() if cuda else "unavailable",
        "cudnn": str(torch.backends.cudnn.version()) if cuda else "unavailable",
    }
