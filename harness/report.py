"""Records -> one pandas DataFrame -> correctness.csv / .md / .html and a printed summary.

Where reports are written, a failure's evidence is shown (`shown`): its picture drawn and a
searched failure's inputs saved, the runner having only run."""

from __future__ import annotations

import os
import platform
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

import pandas as pd
import torch

from harness import figures, html_report
from harness.record import BAD, STATUSES, Record

COLUMNS = ["case", "check", "dtype", "device", "status", "max_abs_err", "max_rel_err",
           "input", "index", "expected", "actual", "allowed", "detects", "pattern", "message",
           "seed", "seconds", "source", "tolerance"]
SHOWN_ONLY = ("reproduce", "figure")
"""Record fields the HTML report shows and the CSV leaves out (the message holds the one,
the other is a picture)."""


def save_searched_inputs(report_dir: str | Path, searched) -> Path:
    """A searched failure's inputs (harness.evidence.SearchedInputs) under
    `report_dir`/failing/<case>-<check>-<dtype>.pt, for torch.load."""
    folder = Path(report_dir) / "failing"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{searched.file_stem}.pt"
    torch.save(searched.saved, path)
    return path


def shown(records: Iterable[Record], report_dir: str | Path) -> list[Record]:
    """The records with their evidence shown: each searched failure's inputs saved under
    `report_dir` (its message says where) and each failure's picture drawn for the HTML
    report. A picture that cannot be drawn is noted in its row, never costs it; a folder
    that cannot be written raises OSError (write_somewhere then writes elsewhere)."""
    out = []
    for record in records:
        evidence = record.evidence
        if evidence is None:
            out.append(record)
            continue
        if evidence.searched is not None:
            path = save_searched_inputs(report_dir, evidence.searched)
            record = replace(record, message=f"{record.message}\n  inputs saved: {path} "
                             "(torch.load(...)['inputs'])")
        try:
            figure = (figures.search_figure(evidence.searched) if evidence.searched is not None
                      else figures.gradient_figure(evidence))
        except Exception as exc:  # a picture must never cost the row
            record = replace(record, message=record.message + f"\n  (no picture: {exc})")
        else:
            record = replace(record, figure=figure)
        out.append(record)
    return out


def to_frame(records: Iterable[Record]) -> pd.DataFrame:
    """One row per record, in a fixed column order, and the failures' pictures (`figure`,
    for the HTML report only)."""
    return pd.DataFrame([r.as_dict() for r in records], columns=[*COLUMNS, *SHOWN_ONLY])


def _message(row) -> str:
    return str(row.message) if isinstance(row.message, str) else ""


def _detail(row) -> str:
    """A row's finding in one line: its pattern, else its message's first line."""
    if isinstance(row.pattern, str) and row.pattern:
        return row.pattern
    return (_message(row).splitlines() or [""])[0]


def identity(row) -> str:
    """'case check dtype device': the item a row is about, in words, where a message is shown
    without its row (an error's message says what went wrong, not where)."""
    return f"{row.case} {row.check} {row.dtype} {row.device}"


def _grouped(frame: pd.DataFrame) -> list[tuple[object, int]]:
    """The rows that fail the run, as (first row, how many items share it): error rows of
    one case with one cause are one entry (one root cause, one line)."""
    bad = pd.concat([frame[frame["status"] == s] for s in BAD])
    groups: dict = {}
    for row in bad.itertuples():
        key = (row.case, _message(row)) if row.status == "error" else ("row", row.Index)
        first, count = groups.get(key, (row, 0))
        groups[key] = (first, count + 1)
    return list(groups.values())


def summary(frame: pd.DataFrame) -> str:
    """'162 rows: 150 pass, 2 fail, 0 error, 10 skip' (and xfail, xpass, warn where there
    are any) plus one line per failing row, one per broken case with the count of its items,
    and one per warn row."""
    counts = frame["status"].value_counts()
    parts = [f"{int(counts.get(s, 0))} {s}" for s in STATUSES
             if s in ("pass", "fail", "error", "skip") or counts.get(s, 0)]
    lines = [f"{len(frame)} rows, {frame['case'].nunique()} cases: {', '.join(parts)}"]
    skipped = frame.loc[frame["status"] == "skip", "message"].fillna("").map(
        lambda m: m.splitlines()[0] if m else "")
    reasons = skipped.value_counts()
    for reason, count in reasons.head(5).items():
        lines.append(f"  skipped {count} x: {reason}")
    if len(reasons) > 5:
        lines.append(f"  skipped {int(reasons.iloc[5:].sum())} x: {len(reasons) - 5} other "
                     "reasons (correctness.html lists them)")
    for row, count in _grouped(frame):
        if count > 1:
            lines.append(f"  ERROR {row.case} ({count} items, every one with this error): "
                         f"{(_message(row).splitlines() or [''])[0]}")
            continue
        lines.append(f"  {row.status.upper()} {row.case} {row.check} {row.dtype} {row.device}: "
                     f"{_detail(row)}")
    for row in frame[frame["status"] == "warn"].itertuples():
        lines.append(f"  WARN {row.case} {row.check} {row.dtype} {row.device}: {row.pattern}")
    return "\n".join(lines)


def failure_details(frame: pd.DataFrame, limit: int = 10) -> str:
    """The full diagnosis of the first `limit` failing rows, then erroring and xpass ones;
    a broken case's items once."""
    groups = _grouped(frame)
    blocks = [(f"{identity(row)}: " if row.status == "error" else "") + _message(row)
              + (f"\n(the same error in {count - 1} more items of {row.case})"
                 if count > 1 else "")
              for row, count in groups[:limit]]
    if len(groups) > limit:
        blocks.append(f"... and {len(groups) - limit} more in correctness.md")
    return "\n\n".join(blocks)


def environment() -> dict[str, str]:
    return {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "unavailable",
    }


_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read once: the process's umask, for the reports' permissions


def _atomic_write(path: Path, text: str) -> None:
    """Write via a temporary file and a rename, so a report is never half-written."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes it private; a report is not
    os.replace(tmp, path)


def _markdown(frame: pd.DataFrame, seed: int | None, descriptions: dict | None = None) -> str:
    env = environment()
    head = [
        "# Gradient correctness report", "",
        f"torch {env['torch']}, Python {env['python']} ({env['machine']}), CUDA: {env['cuda']}, "
        f"seed {seed}", "",
        "```", summary(frame), "```", "",
    ]
    table = frame[["case", "check", "dtype", "device", "status", "max_abs_err", "max_rel_err",
                   "pattern"]].copy()
    for col in ("max_abs_err", "max_rel_err"):
        table[col] = table[col].map(lambda v: "" if pd.isna(v) else f"{v:.2e}")
    table["pattern"] = table["pattern"].fillna("")
    # the cells as formatted here: tabulate's number parsing re-printed 7.00e-08 as 7e-08
    # (and guessing the type of 10^4 cells was half the report's writing time)
    body = [table.to_markdown(index=False, disable_numparse=True,
                              colalign=("left",) * 5 + ("right",) * 2 + ("left",)), ""]
    failures = frame[frame["status"].isin(BAD)]
    if len(failures):
        body += ["## Failures", ""]
        for row in failures.itertuples():
            body += [f"### {row.case} / {row.check} / {row.dtype} / {row.device}", "",
                     "```", str(row.message), "```", ""]
    expected = frame[frame["status"] == "xfail"]
    if len(expected):
        body += ["## Expected failures (each case declares its own; the case says why)", ""]
        for row in expected.itertuples():
            why = (descriptions or {}).get(row.case, "")
            body += [f"- {row.case} / {row.check} / {row.dtype} / {row.device}: {_detail(row)}"
                     + (f". The case: {why}" if why else "")]
        body += [""]
    warned = frame[frame["status"] == "warn"]
    if len(warned):
        body += ["## Warnings (right values; they fail the run under --strict)", ""]
        for row in warned.itertuples():
            body += [f"### {row.case} / {row.check} / {row.dtype} / {row.device}", "",
                     "```", str(row.message), "```", ""]
    return "\n".join(head + body)


def write(frame: pd.DataFrame, report_dir: str | Path, seed: int | None = None,
          name: str = "correctness", run: dict | None = None,
          descriptions: dict | None = None) -> list[Path]:
    """Write <name>.csv, <name>.md and <name>.html under `report_dir`; `run` (command,
    duration, ...) and the cases' `descriptions` head and label the HTML page."""
    out = Path(report_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.csv", out / f"{name}.md", out / f"{name}.html"]
    env = environment()
    frame = frame.assign(torch=env["torch"])  # every row says what produced it
    table = frame.drop(columns=list(SHOWN_ONLY), errors="ignore")
    _atomic_write(paths[0], table.to_csv(index=False))
    _atomic_write(paths[1], _markdown(table, seed, descriptions))
    devices = ", ".join(sorted(set(frame["device"]) - {"", "-"}))
    heading = {"command": "", **(run or {}), "seed": "" if seed is None else str(seed),
               "torch": f"{env['torch']} (Python {env['python']}, {env['machine']})",
               "devices": devices, "CUDA": env["cuda"],
               "summary": summary(table).splitlines()[0]}
    _atomic_write(paths[2], html_report.page(frame, _grouped(frame), heading, descriptions))
    return paths


def write_somewhere(write, report_dir: str) -> list:
    """write(report_dir), or, when that fails at the end of a run, write(a temporary folder)
    saying so: finished rows are never lost."""
    try:
        return write(report_dir)
    except OSError as exc:
        fallback = tempfile.mkdtemp(prefix="harness-reports-")
        print(f"harness: could not write the reports to {report_dir} ({exc}); writing them "
              f"to {fallback} instead", file=sys.stderr)
        return write(fallback)
