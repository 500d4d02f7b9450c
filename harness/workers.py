"""Run items in worker processes, so a case that crashes the interpreter or hangs takes down
only its worker, and several workers share the items of one run.

Cases hold lambdas and closures, which cannot be sent to another process, so each worker is
given the run's Selection (plain data) and builds the same items itself; the first worker's
Plan of them is all the main process needs (harness.plan). Workers fork from the fork server
of harness.processes (torch and the checks already imported), so a worker costs its registry
load, not a torch import. A worker lives for the whole run; only a crash or a time-out costs a
new one. Its row then says "crashed: signal N" or "timed out after T s", and the next item
runs in the new worker.
"""

from __future__ import annotations

import gc
import signal
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import replace
from multiprocessing.connection import wait

import torch

from harness import processes
from harness.checks import Settings
from harness.diagnose.events import crashed_phrase, timed_out_phrase, with_worker_note
from harness.plan import Plan, PlannedItem, Selection
from harness.runner import Finished, run_item_noting_warnings, run_items


def _serve(conn, selection: Selection, settings: Settings, memory_limit_gb: float | None,
           number: int = 0):
    """The worker `number`: pin it to its GPU where there are several, build the items, then
    run the index it is sent, until the pipe closes; a ("threads", n) message sets its share
    of torch's threads before its items."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
    processes.pin_gpu(number)
    if memory_limit_gb:
        import resource

        limit = int(memory_limit_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    plan, items = selection.plan()
    conn.send(plan)
    gc.freeze()  # what is loaded now lives as long as the worker: no collection walks it again
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if isinstance(message, tuple):
            torch.set_num_threads(message[1])
            continue
        record, raised = run_item_noting_warnings(items[message], settings)
        conn.send({"record": record, "warnings": raised})


EXIT_WAIT = 30.0
"""Seconds to wait for a worker whose pipe closed to exit, before reading its exit code."""
STOP_WAIT = 5.0
"""Seconds to wait for a killed worker's exit to be reported, so stopping never hangs."""


class _Worker:
    """A worker process, started at once with torch's default threads; it first builds the
    run's items and sends their Plan (`plan()` waits for it), then runs what it is sent."""

    started = 0
    """Workers started in this process: each new one takes the next number (its GPU)."""

    def __init__(self, selection: Selection, settings: Settings,
                 memory_limit_gb: float | None):
        context = processes.context()
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_serve, daemon=True, args=(
            child, selection, settings, memory_limit_gb, _Worker.started))
        _Worker.started += 1
        self.process.start()
        child.close()
        self.threads: int | None = None  # None: torch's default
        self._plan: Plan | None = None
        self.index: int | None = None
        self.verified = False  # its items are the run's (the ids of its Plan)
        self.sent = self.limit = 0.0

    def plan(self) -> Plan:
        """The Plan this worker built; EOFError if it died building it."""
        if self._plan is None:
            self._plan = self.conn.recv()
        return self._plan

    def send(self, index: int, limit: float, expected_ids: list[str],
             threads: int | None) -> None:
        if not self.verified:  # once: comparing 10^3 ids an item was 0.1 s of this process
            if self.plan().ids != expected_ids:
                self.stop()
                raise RuntimeError("the worker built different items from the same selection "
                                   "(a plugin whose cases change between imports?)")
            self.verified = True
        if threads != self.threads:
            self.conn.send(("threads", threads or torch.get_num_threads()))
            self.threads = threads
        self.conn.send(index)
        self.index, self.sent, self.limit = index, time.monotonic(), limit

    @property
    def deadline(self) -> float:
        return self.sent + self.limit

    def stop(self) -> None:
        self.conn.close()
        if self.process.is_alive():
            self.process.kill()
        self.process.join(STOP_WAIT)


def start_workers(selection: Selection, settings: Settings,
                  memory_limit_gb: float | None = None, count: int = 1) -> list[_Worker]:
    """The run's first `count` workers, started at once: the first one's Plan spares this
    process building the items (the OpInfo database: seconds), and the others build theirs
    meanwhile, each on its own core, instead of one after the other once the Plan is here;
    hand them to run_isolated. Fewer (none) if they cannot start: run_isolated then tries
    again and says why in its first row."""
    started = []
    for _ in range(count):
        try:
            started.append(_Worker(selection, settings, memory_limit_gb))
        except Exception:
            break
    return started


def dispatch_order(items: list[PlannedItem]) -> list[int]:
    """Item indices, costliest case first (its families' declared `cost` summed), each case's
    items kept together and in order. A run ends when its last item does: one long item
    dispatched last (a custom op's AOT dispatch test, ~1 s) left the other workers idle, and
    a case's items in a row share their prepared example."""
    estimate: dict[str, float] = {}
    for item in items:
        estimate[item.case] = estimate.get(item.case, 0.0) + item.cost
    return sorted(range(len(items)), key=lambda i: -estimate[items[i].case])


def run_isolated(
    items: list[PlannedItem], selection: Selection, settings: Settings, timeout: float,
    memory_limit_gb: float | None = None,
    progress: Callable[[int, int, PlannedItem], None] | None = None, workers: int = 1,
    started: list[_Worker] = (), built: list | None = None,
) -> Iterator[Finished]:
    """Run `items` (built from `selection`) in up to `workers` worker processes, each item
    within `timeout` seconds (or its case's own `timeout`); a crash or a time-out becomes the
    item's error row. Records come as items finish, not in item order. Each worker gets its
    share of torch's threads. `started`: workers from start_workers, now run_isolated's to
    use and stop (those past `workers` are stopped unused). Items go out in dispatch_order.
    If no worker can start, the items run in this process, and the first row says why: the
    items this process `built` already, if any, or built then."""
    ids = [item.id for item in items]
    wanted = max(1, min(workers, len(items)))
    threads = max(1, torch.get_num_threads() // wanted) if wanted > 1 else None
    todo, busy, idle = deque(dispatch_order(items)), [], list(started)[::-1]
    done = 0
    try:
        while todo or busy:
            while todo and len(busy) < wanted:
                index = todo.popleft()
                item = items[index]
                if progress:
                    progress(done, len(items), item)
                worker = None
                try:
                    worker = idle.pop() if idle else _Worker(selection, settings,
                                                             memory_limit_gb)
                    worker.send(index, item.timeout or timeout, ids, threads)
                except Exception as exc:
                    if worker is not None:
                        worker.stop()
                    if busy or idle:  # the others carry on
                        todo.appendleft(index)
                        wanted = len(busy) + len(idle)
                        continue
                    yield from _in_process(built or _built_here(selection, ids),
                                           [index, *todo], settings, exc, progress)
                    return
                busy.append(worker)
            ready = wait([w.conn for w in busy],
                         max(0.0, min(w.deadline for w in busy) - time.monotonic()))
            for worker in list(busy):
                item = items[worker.index]
                if worker.conn in ready:
                    try:
                        sent = worker.conn.recv()
                    except (EOFError, ConnectionError):
                        worker.process.join(EXIT_WAIT)  # it died: let it finish dying
                        message = crashed_phrase(worker.process.exitcode)
                    else:
                        busy.remove(worker)
                        idle.append(worker)
                        done += 1
                        yield Finished(worker.index, sent["record"], tuple(sent["warnings"]))
                        continue
                elif time.monotonic() >= worker.deadline:
                    message = timed_out_phrase(worker.limit)
                else:
                    continue
                busy.remove(worker)
                worker.stop()
                done += 1
                yield Finished(worker.index, item.record(
                    settings.seed, "error", message,
                    time.monotonic() - worker.sent))
    finally:
        for worker in busy + idle:
            worker.stop()


def _built_here(selection: Selection, ids: list[str]) -> list:
    _, items = selection.plan()
    if [item.id for item in items] != ids:
        raise RuntimeError("this process built different items from the worker's (a plugin "
                           "whose cases change between imports?)")
    return items


def _in_process(items, indices, settings, exc, progress) -> Iterator[Finished]:
    """The items left when no worker could start, run here (runner.run_items); the first
    row says why."""
    done_before = len(items) - len(indices)

    def shown(n: int, total: int, item) -> None:
        if progress and n:  # the first was shown when its worker was to start
            progress(done_before + n, len(items), item)

    for n, done in enumerate(run_items([items[i] for i in indices], settings, shown)):
        record = with_worker_note(done.record, exc) if n == 0 else done.record
        yield replace(done, index=indices[n], record=record)
