"""Command-line input that cannot give a useful run, found before the first item.

Each problem is a UsageError whose text says what was given and what to do; the command line
prints it and exits 2 (argparse's code for a bad command line), so a mistyped pattern or a
missing GPU never turns into a green run that checked nothing, and a report folder that cannot
be written never costs a whole run first.
"""

from __future__ import annotations

import difflib
import fnmatch
import os
import sys
from collections.abc import Iterable
from pathlib import Path


class UsageError(Exception):
    """Bad command-line input: the message names it and says what to do."""


def check_devices(requested: Iterable[str] | None, available, option: str = "--device") -> None:
    """An explicitly requested device that is not there is an error, not a run of skips
    (`option`: how the caller's front end spells the request)."""
    for device in requested or ():
        if device == "cuda" and not available("cuda"):
            raise UsageError(
                "cuda requested but torch.cuda.is_available() is False: no CUDA device or "
                "driver is visible to this process (check nvidia-smi, CUDA_VISIBLE_DEVICES "
                f"and that torch is a CUDA build); drop {option} cuda to run what is here")


def check_loads(paths: Iterable[str]) -> None:
    for path in paths:
        if not Path(path).exists():
            raise UsageError(f"--load {path}: no such file or folder")


def check_report_dir(report_dir: str) -> None:
    """The folder (or the nearest folder above it, which the run would create it in) must be
    a writable folder."""
    path = Path(report_dir)
    if path.exists() and not path.is_dir():
        raise UsageError(f"--report-dir {report_dir}: is a file, not a folder; give a folder "
                         "for the reports")
    existing = path if path.exists() else next(
        (p for p in path.absolute().parents if p.exists()), None)
    if existing is None or not existing.is_dir():
        raise UsageError(f"--report-dir {report_dir}: {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        what = "is not writable" if existing == path else f"cannot be created in {existing}"
        raise UsageError(f"--report-dir {report_dir}: {what} (permission denied); give a "
                         "folder you can write, e.g. --report-dir /tmp/reports")


def check_patterns(patterns: Iterable[str] | None, names: list[str],
                   broken: Iterable[str] = ()) -> None:
    """Every --cases pattern must match a case, unless its first part names a plugin that
    failed to load (its error row says why); one that matches nothing is named with the
    closest case names."""
    broken = list(broken)
    for pattern in patterns or ():
        if any(fnmatch.fnmatchcase(n, pattern) for n in names):
            continue
        if any(fnmatch.fnmatchcase(b, pattern.split("/")[0]) for b in broken):
            continue
        close = difflib.get_close_matches(pattern, names, n=3, cutoff=0.5)
        hint = (f"closest case names: {', '.join(close)}" if close
                else "see `harness list` for the case names")
        raise UsageError(f"--cases {pattern!r} matches no case; {hint}")


def counted_load_errors(errors, loaded: Iterable[str], patterns) -> list:
    """The registry's load `errors` this run counts; a broken plugin its --cases cannot
    select is a warning on stderr instead (see registry.counted_errors). `loaded`: the names
    of every case the registry loaded, which each pattern must match one of."""
    from harness import registry  # imports torch: not before the fork server starts

    counted, warned = registry.counted_errors(errors, patterns)
    for err in warned:
        print(f"harness: warning: {err.message.splitlines()[0]} (not counted: the --cases "
              "given do not select it)", file=sys.stderr)
    broken = [err.source.name for err in errors if err.source.kind == "plugin"]
    check_patterns(patterns, list(loaded), broken)
    return counted


def selection_words(args) -> str:
    """What selected the cases, as given: "--cases 'a/*' --tag kink"."""
    words = [f"--cases {p!r}" for p in args.cases or ()]
    words += [f"--tag {t!r}" for t in args.tag or ()]
    return " ".join(words) or "the default selection"
