"""Command line: `harness check` runs every selected case and writes reports; `harness list`.

torch and the checks are imported inside main(), after the fork server the workers come from
has been launched (harness.processes), so its imports run alongside this process's own.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import time

from harness import processes


def _parser() -> argparse.ArgumentParser:
    from harness.checks import CHECKS
    from harness.tolerances import DTYPES

    parser = argparse.ArgumentParser(prog="harness", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="check every selected case and write reports")
    search = sub.add_parser("search", help="search inputs for a failing gradient (hypothesis) "
                            "and write reports/search.*")
    bench = sub.add_parser("bench", help="time backward passes on CPU and CUDA and write "
                           "reports/bench.* with plots")
    bench.add_argument("--cases", action="append", metavar="GLOB")
    bench.add_argument("--tag", action="append")
    bench.add_argument("--device", action="append", choices=["cpu", "cuda"],
                       help="default: cpu and cuda (cuda rows say 'unavailable' without one)")
    bench.add_argument("--dtype", action="append", choices=list(DTYPES))
    bench.add_argument("--mode", action="append", choices=["backward", "forward+backward"])
    bench.add_argument("--size", action="append", type=_size_setting, default=[],
                       metavar="NAME=N[,NAME=N]",
                       help="time this size instead of the case's family (repeatable), for "
                       "cases that declare these size names, e.g. --size n=4096")
    bench.add_argument("--min-run-time", type=float, default=0.2,
                       help="seconds per measurement (torch.utils.benchmark blocked_autorange)")
    bench.add_argument("--repeats", type=int, default=10,
                       help="fewest timed blocks per measurement (default 10)")
    bench.add_argument("--tf32", action="store_true",
                       help="allow TF32 in CUDA matmul and cudnn (pinned off by default)")
    bench.add_argument("--cudnn-benchmark", action="store_true",
                       help="let cudnn autotune (pinned off by default)")
    bench.add_argument("--load", action="append", default=[], metavar="PATH")
    bench.add_argument("--report-dir", default="reports")
    bench.add_argument("--baseline", metavar="FILE",
                       help="an earlier bench.csv: flag what got slower beyond the noise")
    listing = sub.add_parser("list", help="list registered cases")
    listing.add_argument("--load", action="append", default=[], metavar="PATH")
    for command in (check, search):
        command.add_argument("--cases", action="append", metavar="GLOB",
                             help="case name pattern (repeatable), e.g. 'tutorial/*'")
        command.add_argument("--tag", action="append", help="only cases with this tag")
        command.add_argument("--check", action="append", choices=list(CHECKS),
                             help="only this check (repeatable)")
        command.add_argument("--dtype", action="append", choices=list(DTYPES))
        command.add_argument("--device", action="append", choices=["cpu", "cuda"])
        command.add_argument("--seed", type=int, default=0)
        command.add_argument("--thorough", action="store_true",
                             help="the thorough search profile (150 inputs, not 12)")
        command.add_argument("--load", action="append", default=[], metavar="PATH",
                             help="also load cases from a .py file or a folder of them")
        command.add_argument("--report-dir", default="reports")
    for command in (check, search):
        command.add_argument("--timeout", type=float, default=300.0, metavar="SECONDS",
                             help="per-item time limit: a slower item becomes an error row "
                             "(default 300)")
        command.add_argument("--memory-limit", type=float, default=None, metavar="GB",
                             help="address-space limit of the worker process (CPU runs: CUDA "
                             "reserves far more address space than it uses)")
        command.add_argument("--no-isolate", action="store_true",
                             help="run items in this process (for a debugger); a crashing "
                             "case then ends the run, and --timeout does not apply")
        command.add_argument("-n", "--workers", type=_workers, default=None, metavar="N",
                             help="worker processes running items side by side: a number, "
                             f"or auto (the default: one per usable core, at most "
                             f"{AUTO_WORKERS_MAX}, fewer where the items' estimated time "
                             "would not repay each worker's registry load)")
    for spec in CHECKS.values():
        if spec.flag:
            check.add_argument(spec.flag, action="store_true", help=spec.flag_help)
    check.add_argument("--compile-backend", default="inductor",
                       help="torch.compile backend for the compiled check (inductor; aot_eager "
                       "is much faster)")
    return parser


def _dest(flag: str) -> str:
    """argparse's attribute for a flag: --compiled -> compiled."""
    return flag.removeprefix("--").replace("-", "_")


AUTO_WORKERS_MAX = 8
"""`--workers auto` uses one worker per usable core, at most this many: past it, a typical
run has too few items per worker for its start (a registry load, ~0.4 GB) to pay off."""


def _workers(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number of workers (1 or more) "
                                         "or auto")
    return count


def _auto_workers(items, load_seconds: float) -> int:
    """One worker per usable core, at most AUTO_WORKERS_MAX, and no more than the items'
    estimated time (their families' declared `cost`) repays: every worker loads the registry
    itself, which took `load_seconds` here (the OpInfo database: ~5 s, for items of ~4 ms)."""
    estimate = sum(item.spec.cost for item in items)
    repaid = int(estimate / (2 * max(load_seconds, 0.05)))
    return max(1, min(_usable_cores(), AUTO_WORKERS_MAX, repaid))


def _usable_cores() -> int:
    """The cores this process may run on (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def _size_setting(text: str) -> dict[str, int]:
    try:
        pairs = [part.split("=") for part in text.split(",")]
        return {name.strip(): int(value) for name, value in pairs}
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected NAME=N[,NAME=N], e.g. n=4096,m=8") from None


def _progress(stream):
    interactive = stream.isatty()

    def show(n, total, item):
        if interactive:
            width = 30
            filled = int(width * n / max(total, 1))
            stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {n}/{total} "
                         f"{item.id[:60]:<60}")
            stream.flush()
        elif n % 25 == 0:
            stream.write(f"  {n}/{total} {item.id}\n")

    return show


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


def _check(args) -> int:
    from harness import report
    from harness.checks import CHECKS, Settings
    from harness.diagnose.events import interrupted_record
    from harness.record import GOOD
    from harness.runner import device_available, run_items
    from harness.workers import Selection, run_isolated, start_worker

    devices = args.device or [d for d in ("cpu", "cuda") if device_available(d)]
    checks = args.check
    flagged = [spec.name for spec in CHECKS.values()
               if spec.flag and getattr(args, _dest(spec.flag), False)]
    if flagged:  # the default checks (no other opt-in) and the flagged ones
        checks = [*(checks or [spec.name for spec in CHECKS.values() if spec.opt_in is None]),
                  *flagged]
    if args.command == "search":  # `--check fd` names the family the search runs
        searching = {spec.searches: spec.name for spec in CHECKS.values() if spec.searches}
        checks = [searching.get(c, c) for c in (checks or list(searching.values()))]
    selection = Selection(load=tuple(args.load), patterns=tuple(args.cases or ()),
                          tags=tuple(args.tag or ()),
                          checks=tuple(checks) if checks is not None else None,
                          dtypes=tuple(args.dtype) if args.dtype else None,
                          devices=tuple(devices))
    settings = Settings(seed=args.seed, profile="thorough" if args.thorough else "quick",
                        report_dir=args.report_dir,
                        compile_backend=getattr(args, "compile_backend", "inductor"))
    # the first worker loads the registry while this process does (the OpInfo database: ~5 s)
    early = None if args.no_isolate else start_worker(selection, settings, args.memory_limit)
    loading = time.perf_counter()
    try:
        reg, cases = selection.build()
    except BaseException:
        if early is not None:
            early.stop()
        raise
    load_seconds = time.perf_counter() - loading
    if not cases and not reg.errors:
        if early is not None:
            early.stop()
        print(f"harness: no case matches --cases {args.cases} --tag {args.tag}; "
              "see `harness list`", file=sys.stderr)
        return 2
    items = selection.items(cases)
    workers = args.workers or "auto"
    if workers == "auto":
        workers = _auto_workers(items, load_seconds)
    runner = (run_items(items, settings, progress=_progress(sys.stderr)) if args.no_isolate
              else run_isolated(items, selection, settings, args.timeout, args.memory_limit,
                                progress=_progress(sys.stderr), workers=workers,
                                started=early))
    start = time.perf_counter()
    finished = []
    with _interruptible() as stopped:
        try:
            finished.extend(runner)
        finally:
            runner.close()  # stops the workers
    interrupted = stopped["signal"]
    if sys.stderr.isatty():
        sys.stderr.write("\r" + " " * 100 + "\r")
    finished.sort(key=lambda done: done.index)  # workers finish out of order
    records = [*reg.errors, *(done.record for done in finished)]
    done_items = len({done.index for done in finished})
    if interrupted:
        records.append(interrupted_record(interrupted, done_items, len(items), args.seed))
    frame = report.to_frame(records)
    name = "search" if args.command == "search" else "correctness"
    paths = report.write(frame, args.report_dir, seed=args.seed, name=name)
    if interrupted:
        print(f"harness: interrupted by {interrupted} after {done_items} of {len(items)} "
              f"items; {', '.join(str(p) for p in paths)} hold the finished rows, marked "
              "incomplete", file=sys.stderr)
        return EXIT_CODES[interrupted]
    details = report.failure_details(frame)
    if details:
        print(details + "\n")
    print(report.summary(frame))
    print(f"{len(items)} items in {time.perf_counter() - start:.1f} s; "
          f"reports: {', '.join(str(p) for p in paths)}")
    return 0 if frame["status"].isin(GOOD).all() else 1


def _bench(args) -> int:
    import torch

    from harness import bench, bench_report, registry
    from harness.case import TrainingCase
    from harness.runner import device_available
    from harness.tolerances import DTYPES

    reg = registry.load(args.load, patterns=args.cases or (), tags=args.tag or ())
    cases = [c for c in registry.select(reg.cases, args.cases or list(bench.DEFAULT_CASES),
                                        args.tag) if not isinstance(c, TrainingCase)]
    if not cases:
        print(f"harness: no case matches --cases {args.cases}; see `harness list`",
              file=sys.stderr)
        return 2
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
    with _interruptible() as stopped, bench.pinned_flags(args.tf32,
                                                         args.cudnn_benchmark) as flags:
        rows.extend(bench.iter_bench(items, args.min_run_time, args.repeats,
                                     progress=lambda s: print(f"  {s}", file=sys.stderr)))
    interrupted = stopped["signal"]
    if interrupted:
        if not rows:
            print(f"harness: interrupted by {interrupted} before any measurement finished",
                  file=sys.stderr)
            return EXIT_CODES[interrupted]
        flags = {**flags, "incomplete": f"INCOMPLETE: interrupted by {interrupted} after "
                                        f"{len(rows)} of {len(items)} measurements"}
    frame = bench_report.bench_frame(rows)
    slower = []
    if args.baseline:
        import pandas as pd

        frame = bench_report.compare_baseline(frame, pd.read_csv(args.baseline))
        slower = frame[frame["vs_baseline"].str.startswith("slower")]
    paths = bench_report.write_bench(frame, args.report_dir, {**bench.machine_info(), **flags})
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
    print(f"{len(rows)} measurements ({noisy} noisy) of {len(cases)} cases in "
          f"{time.perf_counter() - start:.1f} s; reports: {', '.join(str(p) for p in paths)}")
    return 1 if len(slower) or len(broken) else 0


def _list(args) -> int:
    from harness import registry

    reg = registry.load(args.load)
    for case in reg.cases:
        print(f"{case.name:<40} {case.source:<40} {','.join(case.tags)}")
    for name, source in reg.opt_in:
        print(f"{source.prefix + '/*':<40} {'plugin ' + name:<40} opt-in: --cases "
              f"'{source.prefix}/*' or --tag {','.join(source.tags)}; {source.description}")
    for err in reg.errors:
        print(f"ERROR {err.message}")
    return 1 if reg.errors else 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] in (["check"], ["search"]) and "--no-isolate" not in argv:
        processes.start()  # imports torch for the workers while this process does too
    args = _parser().parse_args(argv)
    if getattr(args, "no_isolate", False) and args.workers not in (None, 1):
        print("harness: --no-isolate runs items one at a time in this process; drop "
              f"--workers {args.workers} or --no-isolate", file=sys.stderr)
        return 2
    try:
        if args.command == "bench":
            code = _bench(args)
        else:
            code = _list(args) if args.command == "list" else _check(args)
        sys.stdout.flush()  # inside the try: a closed pipe surfaces here, not at exit
        return code
    except BrokenPipeError:  # `harness list | head` closed our stdout: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
