"""Where worker processes come from: a fork server that imported torch and the checks once.

`spawn` costs every worker a fresh interpreter and a torch import (2-4 s, more the first time
an item touches torch.func, torch._dynamo, sympy or hypothesis); forking the run's own
process is unsafe once torch has run parallel kernels in it (the child's OpenMP pool
deadlocks) or once a case file has run anything at import. The fork server is a fresh
process that only imports modules, so forking it is safe and a worker starts in a few
milliseconds plus its registry load. `start()` launches it early, so its imports overlap the
parent's own; this module imports nothing heavy for that reason.
"""

from __future__ import annotations

import multiprocessing
import os

PRELOAD = [
    "harness.workers",
    "harness.checks",
    "harness.api",
    "torch.func",
    "torch._decomp.decompositions_for_jvp",  # scripted on the first make_dual (0.25 s)
]
"""What every worker imports before or on its first items. Left out here: torch._dynamo
(1.9 s; imported by the first call of a decomposition torch wraps in dynamo, and by every
optimizer) and sympy (0.6 s; autograd's symbolic shape checks): preloading them made every
small run (`--cases one/case`) ~1.8 s slower, because the fork server's imports are the
critical path of a run's start (the whole suite's run preloads dynamo: WHOLE_SUITE_PRELOAD)."""


WHOLE_SUITE_PRELOAD = ["torch._dynamo"]
"""Imported too by the fork server of a run that names no case or tag (the main job): its
torch corpora import torch._dynamo with the OpInfo machinery before the first item, and its
forward-mode and optimizer items in every worker. Measured on 2 cores, by turns: the main job
8.9-9.3 s without it, 7.3-7.8 s with it; a run naming its cases leaves it out."""

_preload = PRELOAD


def whole_suite(argv: list[str]) -> bool:
    """Whether a `check` or `search` command line selects no case by name or tag."""
    return not any(arg.split("=")[0] in ("--cases", "--tag") for arg in argv)


def context() -> multiprocessing.context.BaseContext:
    """The fork-server context where the platform has one (Linux, macOS), else spawn."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    forkserver = multiprocessing.get_context("forkserver")
    forkserver.set_forkserver_preload(_preload)
    return forkserver


def start(whole_suite: bool = False) -> None:
    """Launch the fork server now (it imports PRELOAD, and WHOLE_SUITE_PRELOAD for a run of
    the whole suite, while the caller goes on); a failure here is left to the first worker
    start, which reports it in its row."""
    global _preload
    _preload = PRELOAD + WHOLE_SUITE_PRELOAD if whole_suite else PRELOAD
    if context().get_start_method() != "forkserver":
        return
    from multiprocessing import forkserver

    try:
        forkserver.ensure_running()
    except OSError:
        pass


def pinned_gpu(worker: int, count: int, visible: str | None) -> str | None:
    """The one GPU worker number `worker` should see on a machine with `count` GPUs, as a
    CUDA_VISIBLE_DEVICES value: workers take the visible devices in turn (an outer
    CUDA_VISIBLE_DEVICES is respected: its entries are the ones shared out). None where
    there is nothing to share (one GPU or none)."""
    devices = ([d.strip() for d in visible.split(",") if d.strip()] if visible
               else [str(i) for i in range(count)])
    if len(devices) < 2:
        return None
    return devices[worker % len(devices)]


def pin_gpu(worker: int) -> str | None:
    """Pin this process to its worker's GPU before CUDA starts (CUDA reads the variable when
    it initialises); nothing where CUDA already started or one GPU or none is here. The
    device it was given, or None."""
    import torch

    if torch.cuda.is_initialized():
        return None
    device = pinned_gpu(worker, torch.cuda.device_count(),
                        os.environ.get("CUDA_VISIBLE_DEVICES"))
    if device is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = device
    return device
