"""Run items in a worker process, so a case that crashes the interpreter or hangs takes down
only its worker.

Cases hold lambdas and closures, which cannot be sent to another process, so the worker is
given the run's Selection (plain data) and builds the same items itself. Workers start with
`spawn`: forking a process whose torch has already run parallel kernels deadlocks the child's
OpenMP pool. A worker lives for the whole run; only a crash or a time-out costs a new one
(a few seconds of torch import and registry load). Its row then says "crashed: signal N" or
"timed out after T s", and the next item runs in the new worker.
"""

from __future__ import annotations

import multiprocessing
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from harness import registry
from harness.checks import Settings
from harness.diagnose.events import crashed_phrase, timed_out_phrase, with_worker_note
from harness.record import Record
from harness.runner import Item, item_record, items_for, run_item
from harness.tolerances import DTYPES


@dataclass(frozen=True)
class Selection:
    """What a run checks, as data a fresh process rebuilds the same items from."""

    load: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    checks: tuple[str, ...] | None = None
    dtypes: tuple[str, ...] | None = None
    devices: tuple[str, ...] | None = None

    def build(self) -> tuple[registry.Registry, list]:
        """The registry (with its load errors) and the selected cases."""
        reg = registry.load(self.load, patterns=self.patterns, tags=self.tags)
        return reg, registry.select(reg.cases, self.patterns, self.tags)

    def items(self, cases) -> list[Item]:
        dtypes = [DTYPES[d] for d in self.dtypes] if self.dtypes else None
        return items_for(cases, self.checks, dtypes, self.devices)


def _serve(conn, selection: Selection, settings: Settings, memory_limit_gb: float | None):
    """The worker: build the items, then run the index it is sent, until the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
    if memory_limit_gb:
        import resource

        limit = int(memory_limit_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    _, cases = selection.build()
    items = selection.items(cases)
    conn.send([item.id for item in items])
    while True:
        try:
            index = conn.recv()
        except EOFError:
            return
        conn.send([r.as_dict() for r in run_item(items[index], settings)])


EXIT_WAIT = 30.0
"""Seconds to wait for a worker whose pipe closed to exit, before reading its exit code."""


class _Worker:
    def __init__(self, selection: Selection, settings: Settings,
                 memory_limit_gb: float | None, expected_ids: list[str]):
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_serve, daemon=True,
                                       args=(child, selection, settings, memory_limit_gb))
        self.process.start()
        child.close()
        ids = self.conn.recv()  # EOFError if the worker could not even build the items
        if ids != expected_ids:
            self.stop()
            raise RuntimeError("the worker built different items from the same selection "
                               "(a plugin whose cases change between imports?)")

    def stop(self) -> None:
        self.conn.close()
        if self.process.is_alive():
            self.process.kill()
        self.process.join()


def run_isolated(
    items: list[Item], selection: Selection, settings: Settings, timeout: float,
    memory_limit_gb: float | None = None,
    progress: Callable[[int, int, Item], None] | None = None,
) -> Iterator[Record]:
    """Run `items` (built from `selection`) in a worker, one at a time, each within
    `timeout` seconds (or its case's own `timeout`); a crash or a time-out becomes the
    item's error row. If no worker can start, the items run in this process, and the first
    row says why."""
    ids = [item.id for item in items]
    worker, in_process = None, False
    try:
        for n, item in enumerate(items):
            if progress:
                progress(n, len(items), item)
            if in_process:
                yield from run_item(item, settings)
                continue
            if worker is None:
                try:
                    worker = _Worker(selection, settings, memory_limit_gb, ids)
                except Exception as exc:  # the rest runs here, unprotected but not lost
                    in_process = True
                    yield from (with_worker_note(r, exc)
                                for r in run_item(item, settings))
                    continue
            start = time.perf_counter()
            limit = getattr(item.case, "timeout", None) or timeout
            worker.conn.send(n)
            answered = worker.conn.poll(limit)  # also True when the worker's end closed
            try:
                if answered:
                    yield from (Record(**row) for row in worker.conn.recv())
                    continue
            except (EOFError, ConnectionError):
                worker.process.join(EXIT_WAIT)  # it died: let it finish dying
            seconds = time.perf_counter() - start
            if not answered:
                message = timed_out_phrase(limit)
            else:
                message = crashed_phrase(worker.process.exitcode)
            worker.stop()
            worker = None
            yield item_record(item, settings, "error", f"{item.id}: {message}", seconds)
    finally:
        if worker is not None:
            worker.stop()
