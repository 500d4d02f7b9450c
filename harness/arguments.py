"""The command line's grammar: the commands, their options with help and defaults, the exit
statuses, and what `--workers auto` means on this machine."""

from __future__ import annotations

import argparse
import os

from harness.shards import DURATIONS_FILE, parse_shard

DESCRIPTION = ("Check the gradients of the registered cases (harness check), search inputs "
               "for a failing one (harness search), time backward passes (harness bench) or "
               "list the cases (harness list).")


def parser() -> argparse.ArgumentParser:
    from harness.checks import CHECKS
    from harness.tolerances import DTYPES

    top = argparse.ArgumentParser(prog="harness", description=DESCRIPTION, epilog=EXIT_STATUS,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    top.add_argument("--version", action="version", version=_version())
    sub = top.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="check every selected case and write reports")
    search = sub.add_parser("search", help="search inputs for a failing gradient (hypothesis) "
                            "and write reports/search.*")
    bench = sub.add_parser("bench", help="time backward passes on CPU and CUDA and write "
                           "reports/bench.* with plots")
    bench.add_argument("--cases", action="append", metavar="GLOB",
                       help="case name pattern (repeatable; default: block/* and "
                       "tutorial/tiny-model)")
    bench.add_argument("--tag", action="append",
                       help="only cases with this tag (repeatable; default: any)")
    bench.add_argument("--device", action="append", choices=["cpu", "cuda"],
                       help="default: cpu and cuda (cuda rows say 'unavailable' without one; "
                       "--device cuda without one is an error)")
    bench.add_argument("--dtype", action="append", choices=list(DTYPES),
                       help="repeatable (default: float32)")
    bench.add_argument("--mode", action="append", choices=["backward", "forward+backward"],
                       help="what is timed, repeatable (default: both)")
    bench.add_argument("--size", action="append", type=_size_setting, default=[],
                       metavar="NAME=N[,NAME=N]",
                       help="time this size instead of the case's family (repeatable), for "
                       "cases that declare these size names, e.g. --size n=4096")
    bench.add_argument("--min-run-time", type=float, default=0.2,
                       help="seconds per measurement (torch.utils.benchmark blocked_autorange; "
                       "default 0.2)")
    bench.add_argument("--repeats", type=int, default=10,
                       help="fewest timed blocks per measurement (default 10)")
    bench.add_argument("--tf32", action="store_true",
                       help="allow TF32 in CUDA matmul and cudnn (pinned off by default)")
    bench.add_argument("--cudnn-benchmark", action="store_true",
                       help="let cudnn autotune (pinned off by default)")
    bench.add_argument("--load", action="append", default=[], metavar="PATH",
                       help="also load cases from a .py file or a folder of them (repeatable)")
    bench.add_argument("--report-dir", default="reports",
                       help="where bench.csv/.md/.html and the plots go (default: reports)")
    bench.add_argument("--baseline", metavar="FILE",
                       help="an earlier bench.csv: flag what got slower beyond the noise")
    listing = sub.add_parser("list", help="list registered cases with their descriptions")
    listing.add_argument("--load", action="append", default=[], metavar="PATH",
                         help="also load cases from a .py file or a folder of them")
    listing.add_argument("--cases", action="append", metavar="GLOB",
                         help="only names matching this pattern (repeatable; a pattern under "
                         "an opt-in source's prefix, e.g. 'opinfo/*', builds that source)")
    listing.add_argument("--tag", action="append",
                         help="only cases with this tag (repeatable; builds opt-in sources "
                         "that carry it)")
    for command in (check, search):
        command.add_argument("--cases", action="append", metavar="GLOB",
                             help="case name pattern (repeatable), e.g. 'tutorial/*'")
        command.add_argument("--tag", action="append",
                             help="only cases with this tag (repeatable; default: any)")
        command.add_argument("--check", action="append", choices=list(CHECKS),
                             help="only this check (repeatable; default: every family that "
                             "is not opt-in)")
        command.add_argument("--dtype", action="append", choices=list(DTYPES),
                             help="repeatable (default: each case's own dtypes)")
        command.add_argument("--device", action="append", choices=["cpu", "cuda"],
                             help="repeatable (default: every device available here; an "
                             "unavailable one asked for is an error)")
        command.add_argument("--shard", type=_shard, metavar="K/N",
                             help="run only the K-th of N shards, split longest first by "
                             "the durations --store-durations recorded (CI matrices)")
        command.add_argument("--store-durations", action="store_true",
                             help="record each item's seconds in the durations file, for "
                             "--shard")
        command.add_argument("--durations-file", default=DURATIONS_FILE, metavar="PATH",
                             help="the durations --shard reads and --store-durations "
                             f"writes (default: {DURATIONS_FILE})")
        command.add_argument("--seed", type=int, default=0,
                             help="seeds every draw; the same seed gives the same report "
                             "(default 0)")
        command.add_argument("--thorough", action="store_true",
                             help="the thorough search profile (150 inputs, not 12)")
        command.add_argument("--load", action="append", default=[], metavar="PATH",
                             help="also load cases from a .py file or a folder of them")
        command.add_argument("--report-dir", default="reports",
                             help="where the reports go (default: reports)")
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
        command.add_argument("--strict", action="store_true",
                             help="warn rows (right values, something else wrong: a tensor "
                             "kept on ctx outside save_for_backward) fail the run (exit 1)")
        command.add_argument("-n", "--workers", type=_workers, default=None, metavar="N",
                             help="worker processes running items side by side: a number, "
                             f"or auto (the default: one per usable core, at most "
                             f"{AUTO_WORKERS_MAX}, fewer where the items' estimated time "
                             "would not repay each worker's registry load)")
    for spec in CHECKS.values():
        if spec.flag:
            check.add_argument(spec.flag, action="store_true", help=spec.flag_help)
    check.add_argument("--determinism-runs", type=_runs, default=10, metavar="N",
                       help="runs of fn and its backward that --determinism compares "
                       "(default 10; at least 2)")
    check.add_argument("--fullgraph", action="store_true",
                       help="the compiled check (added to the run) with torch.compile("
                       "fullgraph=True): a graph break fails, naming the op and source line")
    check.add_argument("--compile-backend", default="inductor",
                       help="torch.compile backend for the compiled check (default: inductor; "
                       "aot_eager "
                       "is much faster)")
    return top


EXIT_STATUS = """exit status:
  0    every row passed, warned, was skipped or failed as its case expects (xfail)
  1    a check failed or errored, an expected failure passed (xpass), a row warned under
       --strict, or a bench got slower
  2    usage error, found before the first item (bad option, unknown --cases pattern,
       missing --load file, unwritable --report-dir, --device cuda without CUDA)
  130  interrupted by Ctrl-C (SIGINT); 143 by SIGTERM: the finished rows are written"""


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    import torch

    try:
        mine = version("gradharness")
    except PackageNotFoundError:
        mine = "unknown (not installed)"
    return f"harness {mine} (torch {torch.__version__})"


def dest(flag: str) -> str:
    """argparse's attribute for a flag: --compiled -> compiled."""
    return flag.removeprefix("--").replace("-", "_")


AUTO_WORKERS_MAX = 8
"""`--workers auto` uses one worker per usable core, at most this many: past it, a typical
run has too few items per worker for its start (a registry load, ~0.4 GB) to pay off."""


def _count(text: str, least: int, expected: str) -> int:
    """An integer of at least `least`, else argparse's usage error saying what was expected."""
    try:
        count = int(text)
    except ValueError:
        count = least - 1
    if count < least:
        raise argparse.ArgumentTypeError(f"{text!r}: expected {expected}")
    return count


def _workers(text: str) -> int | str:
    if text == "auto":
        return text
    return _count(text, 1, "a number of workers (1 or more) or auto")


def auto_workers(items, load_seconds: float) -> int:
    """One worker per usable core, at most AUTO_WORKERS_MAX, and no more than the planned
    items' estimated time (their families' declared `cost`) repays: every worker builds the
    items itself, which took the first `load_seconds` (the OpInfo database: ~2 s, for items
    of ~4 ms)."""
    estimate = sum(item.cost for item in items)
    repaid = int(estimate / (2 * max(load_seconds, 0.05)))
    return max(1, min(usable_cores(), AUTO_WORKERS_MAX, repaid))


def early_workers(workers: int | str | None, whole_suite: bool) -> int:
    """Workers to start before the items are known: the number asked for, or for `auto` one
    per usable core (at most AUTO_WORKERS_MAX) in a run of the whole suite (it uses them
    all), else one (the rest start once auto_workers says the items repay them)."""
    if isinstance(workers, int):
        return workers
    return min(usable_cores(), AUTO_WORKERS_MAX) if whole_suite else 1


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def _shard(text: str) -> tuple[int, int]:
    try:
        return parse_shard(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _size_setting(text: str) -> dict[str, int]:
    try:
        pairs = [part.split("=") for part in text.split(",")]
        return {name.strip(): int(value) for name, value in pairs}
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected NAME=N[,NAME=N], e.g. n=4096,m=8") from None


def _runs(text: str) -> int:
    return _count(text, 2, "a number of runs, 2 or more (each is compared with the first)")
