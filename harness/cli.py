"""Command line: `harness check` runs every selected case and writes reports; `harness list`.

torch and the checks are imported inside main(), after the fork server the workers come from
has been launched (harness.processes), so its imports run alongside this process's own.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import os
import shlex
import signal
import sys
import time

from harness import arguments, processes, progress, shards, usage


class _Terminated(BaseException):
    """SIGTERM, raised where the run is, so the finished rows are still written; a
    BaseException, like KeyboardInterrupt, so no `except Exception` of a check swallows it."""


def _terminate(signum, frame):
    raise _Terminated()


EXIT_CODES = {"SIGINT": 130, "SIGTERM": 143}


@contextlib.contextmanager
def _interruptible():
    """Run the body until Ctrl-C or SIGTERM; the yielded dict's "signal" then names which
    stopped it (None if none did), so the caller can still write what finished."""
    stopped = {"signal": None}
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield stopped
    except KeyboardInterrupt:
        stopped["signal"] = "SIGINT"
    except _Terminated:
        stopped["signal"] = "SIGTERM"
    finally:
        signal.signal(signal.SIGTERM, previous)


def _check(args, argv: list[str]) -> int:
    from harness import report
    from harness.checks import CHECKS, Settings
    from harness.diagnose.events import interrupted_record
    from harness.plan import Selection, device_available
    from harness.record import fails_run
    from harness.runner import run_items
    from harness.workers import run_isolated, start_workers

    usage.check_loads(args.load)
    usage.check_report_dir(args.report_dir)
    usage.check_devices(args.device, device_available)
    devices = args.device or [d for d in ("cpu", "cuda") if device_available(d)]
    if not args.device and "cuda" not in devices:
        print("harness: cuda is not available here (torch.cuda.is_available() is False): its "
              "items are not run; --device cuda makes that an error", file=sys.stderr)
    checks = args.check
    flagged = [spec.name for spec in CHECKS.values()
               if spec.flag and getattr(args, arguments.dest(spec.flag), False)]
    if getattr(args, "fullgraph", False) and "compiled" not in flagged:
        flagged.append("compiled")  # --fullgraph is the compiled check's mode
    if args.command == "search":  # `--check fd` names the family the search runs
        searching = {spec.searches: spec.name for spec in CHECKS.values() if spec.searches}
        checks = [searching.get(c, c) for c in (checks or list(searching.values()))]
    if args.shard is not None:
        try:
            shards.load(args.durations_file)
        except ValueError as exc:
            raise usage.UsageError(f"--durations-file: {exc}") from None
    selection = Selection(load=tuple(args.load), patterns=tuple(args.cases or ()),
                          tags=tuple(args.tag or ()), shard=args.shard,
                          durations_file=args.durations_file,
                          checks=tuple(checks) if checks is not None else None,
                          opt_in=tuple(flagged),
                          dtypes=tuple(args.dtype) if args.dtype else None,
                          devices=tuple(devices))
    settings = Settings(seed=args.seed, profile="thorough" if args.thorough else "quick",
                        compile_backend=getattr(args, "compile_backend", "inductor"),
                        fullgraph=getattr(args, "fullgraph", False),
                        determinism_runs=getattr(args, "determinism_runs", 10))
    # the first worker builds the items; this process, which only dispatches them, takes
    # their Plan from it (building them here too cost the OpInfo run seconds); the others
    # started with it build theirs meanwhile
    early = [] if args.no_isolate else start_workers(
        selection, settings, args.memory_limit,
        arguments.early_workers(args.workers, processes.whole_suite(argv)))
    plan = items = None
    try:
        if early:
            try:
                plan = early[0].plan()
            except (EOFError, OSError):  # it died building them: run_isolated says why
                early.pop(0).stop()
        if plan is None:
            plan, items = selection.plan()
        load_errors = usage.counted_load_errors(plan.errors, plan.loaded, args.cases)
        if not plan.selected and not load_errors:
            raise usage.UsageError(f"no case matches {usage.selection_words(args)}; see "
                                   "`harness list`")
    except BaseException:
        for worker in early:
            worker.stop()
        raise
    workers = args.workers or "auto"
    if workers == "auto":
        workers = arguments.auto_workers(plan.items, plan.load_seconds)
    planned = plan.items
    bar = progress.Progress(len(planned))

    def show(n, total, item):
        bar(n, total, item.id)

    runner = (run_items(items, settings, progress=show) if args.no_isolate
              else run_isolated(list(planned), selection, settings, args.timeout,
                                args.memory_limit, progress=show, workers=workers,
                                started=early, built=items))
    start = time.perf_counter()
    finished = []
    with _interruptible() as stopped:
        try:
            finished.extend(runner)
        finally:
            runner.close()  # stops the workers
    interrupted = stopped["signal"]
    bar.close()
    raised = collections.Counter(text for done in finished for text in dict.fromkeys(done.warnings))
    finished.sort(key=lambda done: done.index)  # workers finish out of order
    records = [*load_errors, *(done.record for done in finished)]
    done_items = len({done.index for done in finished})
    if interrupted:
        records.append(interrupted_record(interrupted, done_items, len(planned), args.seed))
    frame = None  # the rows as written, once `written` has shown their evidence
    name = "search" if args.command == "search" else "correctness"
    run = {"command": "harness " + " ".join(shlex.quote(a) for a in argv),
           "duration": f"{time.perf_counter() - start:.1f} s for {done_items} of {len(planned)} "
                       "items"}

    def written(where) -> list:
        nonlocal frame  # with the evidence shown: where failing inputs were saved
        frame = report.to_frame(report.shown(records, where))
        return report.write(frame, where, seed=args.seed, name=name, run=run,
                            descriptions=plan.descriptions)

    paths = report.write_somewhere(written, args.report_dir)
    if args.store_durations:
        stored = shards.store(args.durations_file, {planned[done.index].id: done.record.seconds
                                                    for done in finished})
        print(f"harness: item durations recorded in {stored}, for --shard", file=sys.stderr)
    if interrupted:
        print(f"harness: interrupted by {interrupted} after {done_items} of {len(planned)} "
              f"items; {', '.join(str(p) for p in paths)} hold the finished rows, marked "
              "incomplete", file=sys.stderr)
        return EXIT_CODES[interrupted]
    if raised:
        print(progress.warnings_summary(raised), file=sys.stderr)
    details = report.failure_details(frame)
    if details:
        print(details + "\n")
    print(report.summary(frame))
    print(f"{len(planned)} items in {time.perf_counter() - start:.1f} s; "
          f"reports: {', '.join(progress.link(p) for p in paths)}")
    return 1 if frame["status"].map(lambda s: fails_run(s, args.strict)).any() else 0


def _bench(args) -> int:
    import torch

    from harness import bench, bench_report, calibration, registry, report
    from harness.case import TrainingCase
    from harness.plan import device_available
    from harness.tolerances import DTYPES

    usage.check_loads(args.load)
    usage.check_report_dir(args.report_dir)
    usage.check_devices(args.device, device_available)
    reg = registry.load(args.load, patterns=args.cases or (), tags=args.tag or ())
    usage.counted_load_errors(reg.errors, (c.name for c in reg.cases), args.cases)
    cases = [c for c in registry.select(reg.cases, args.cases or list(bench.DEFAULT_CASES),
                                        args.tag) if not isinstance(c, TrainingCase)]
    if not cases:
        raise usage.UsageError(f"no case to time matches {usage.selection_words(args)} (bench "
                               "times tensor cases, not training cases); see `harness list`")
    devices = args.device or ["cpu", "cuda"]
    if "cuda" in devices and not device_available("cuda"):
        print("CUDA is unavailable on this machine: its columns say so", file=sys.stderr)
    dtypes = [DTYPES[d] for d in args.dtype] if args.dtype else [torch.float32]
    for setting in args.size:
        if not any(set(setting) <= set(c.sizes) for c in cases):
            print(f"--size {setting}: no selected case declares these size names "
                  f"(see `harness list`); cases keep their own sizes", file=sys.stderr)
    items = bench.bench_items(cases, devices, dtypes, args.mode or bench.MODES, args.size)
    start = time.perf_counter()
    rows = []
    bar = progress.Progress(len(items), unit="measurement")
    measured = iter(range(len(items) + 1))

    def show(name):
        bar(next(measured), len(items), name)

    readings = []  # the calibration workload's times, to see another job arrive (or leave)
    with _interruptible() as stopped, bench.pinned_flags(args.tf32,
                                                         args.cudnn_benchmark) as flags:
        rows.extend(bench.iter_bench(items, args.min_run_time, args.repeats,
                                     progress=show, readings=readings))
    interrupted = stopped["signal"]
    bar.close()
    if interrupted:
        if not rows:
            print(f"harness: interrupted by {interrupted} before any measurement finished",
                  file=sys.stderr)
            return EXIT_CODES[interrupted]
        flags = {**flags, "incomplete": f"INCOMPLETE: interrupted by {interrupted} after "
                                        f"{len(rows)} of {len(items)} measurements"}
    frame, load = calibration.flag_load(bench_report.bench_frame(rows), readings)
    if load:
        flags = {**flags, "machine load": load}
        print(f"harness: {load}", file=sys.stderr)
    slower = []
    if args.baseline:
        import pandas as pd

        frame = bench_report.compare_baseline(frame, pd.read_csv(args.baseline))
        slower = frame[frame["vs_baseline"].str.startswith("slower")]
    paths = report.write_somewhere(lambda where: bench_report.write_bench(
        frame, where, {**bench.machine_info(), **flags}), args.report_dir)
    noisy = int(frame["flags"].str.contains("noisy").sum())
    broken = frame[frame["flags"].str.startswith("error")]
    for row in broken.itertuples():
        print(f"ERROR {row.case} {row.mode} {row.device} {row.size}: {row.flags}")
    for row in slower.itertuples() if len(slower) else ():
        print(f"SLOWER {row.case} {row.mode} {row.device} {row.dtype} {row.size} "
              f"{row.threads} thread(s): {row.baseline_median_s * 1e6:.1f} -> "
              f"{row.median_s * 1e6:.1f} µs ({row.vs_baseline})")
    if interrupted:
        print(f"harness: {flags['incomplete']}; {', '.join(str(p) for p in paths)} hold them",
              file=sys.stderr)
        return EXIT_CODES[interrupted]
    measured = int(frame["median_s"].notna().sum())  # as bench.md counts them
    unmeasured = f", {len(rows) - measured} rows not measured" if len(rows) > measured else ""
    print(f"{measured} measurements ({noisy} noisy{unmeasured}) of {len(cases)} cases in "
          f"{time.perf_counter() - start:.1f} s; reports: "
          f"{', '.join(progress.link(p) for p in paths)}")
    return 1 if len(slower) or len(broken) else 0


def _list(args) -> int:
    import textwrap

    from harness import registry

    usage.check_loads(args.load)
    reg = registry.load(args.load, patterns=args.cases or (), tags=args.tag or ())
    errors = usage.counted_load_errors(reg.errors, (c.name for c in reg.cases), args.cases)
    cases = registry.select(reg.cases, args.cases or (), args.tag or ())
    if not cases and not errors and (args.cases or args.tag):
        raise usage.UsageError(f"no case matches {usage.selection_words(args)}")
    print(f"{'case':<44} {'source':<34} tags")
    for case in cases:
        print(f"{case.name:<44} {str(case.source):<34} {','.join(case.tags)}")
        if case.description:
            print(textwrap.fill(case.description, width=100, initial_indent="    ",
                                subsequent_indent="    "))
    for name, source in () if args.cases or args.tag else reg.opt_in:
        print(f"{source.prefix + '/*':<44} {'plugin ' + name:<34} opt-in: --cases "
              f"'{source.prefix}/*' or --tag {','.join(source.tags)}; {source.description}")
    sources = len({case.source for case in cases})
    opt_in = f"; {len(reg.opt_in)} opt-in source(s) not built" if reg.opt_in else ""
    print(f"{len(cases)} case(s) from {sources} source(s){opt_in}")
    for err in errors:
        print(f"ERROR {err.message}")
    return 1 if errors else 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] in (["check"], ["search"]) and "--no-isolate" not in argv:
        # imports torch for the workers while this process does too
        processes.start(whole_suite=processes.whole_suite(argv))
    args = arguments.parser().parse_args(argv)
    if getattr(args, "no_isolate", False) and args.workers not in (None, 1):
        print("harness: --no-isolate runs items one at a time in this process; drop "
              f"--workers {args.workers} or --no-isolate", file=sys.stderr)
        return 2
    try:
        if args.command == "bench":
            code = _bench(args)
        else:
            code = _list(args) if args.command == "list" else _check(args, argv)
        sys.stdout.flush()  # inside the try: a closed pipe surfaces here, not at exit
        return code
    except usage.UsageError as exc:
        print(f"harness: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `harness list | head` closed our stdout: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def console() -> None:
    """The `harness` command: main, then the atexit handlers (a plugin's, coverage's,
    logging's), then an exit that skips the interpreter's teardown: freeing every module
    and object one by one (after an OpInfo run, torch's operator database alone makes its
    garbage collections 1-2 s; after the main job, 0.1-0.2 s), when every report is written
    and closed and every worker stopped."""
    code = main()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError):  # a reader that went away: the code still stands
            stream.flush()
    atexit._run_exitfuncs()
    os._exit(code)


if __name__ == "__main__":
    console()
