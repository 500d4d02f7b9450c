"""Live progress for `harness check`, `search` and `bench`: done/total, elapsed, ETA and the
current item. On a terminal it is tqdm's one-line bar; where stderr is not a terminal, or
under CI=true, plain lines every PLAIN_EVERY seconds (and at the end), so a log shows the
run moving without a line per item."""

from __future__ import annotations

import os
import sys
import time

from tqdm import tqdm

PLAIN_EVERY = float(os.environ.get("HARNESS_PROGRESS_EVERY", 5.0))
"""Seconds between plain progress lines (HARNESS_PROGRESS_EVERY; 0: a line per item)."""


def interactive(stream) -> bool:
    return stream.isatty() and os.environ.get("CI", "").lower() not in ("true", "1")


class Progress:
    """Call with (done, total, name) before each item; close() at the end."""

    def __init__(self, total: int, unit: str = "item", stream=None):
        self.stream = stream or sys.stderr
        self.total, self.unit = total, unit
        self.started = self.last = time.monotonic()
        self.bar = (tqdm(total=total, file=self.stream, unit=unit, dynamic_ncols=True,
                         leave=False, mininterval=0.2) if interactive(self.stream) else None)

    def __call__(self, done: int, total: int, name: str) -> None:
        if self.bar is not None:
            self.bar.update(done - self.bar.n)
            self.bar.set_postfix_str(name[:60], refresh=False)
            return
        now = time.monotonic()
        if done and now - self.last < PLAIN_EVERY:
            return
        self.last = now
        elapsed = now - self.started
        eta = f", ETA {elapsed / done * (total - done):.0f} s" if done else ""
        self.stream.write(f"  {done}/{total} {self.unit}s, {elapsed:.0f} s elapsed{eta}: "
                          f"{name}\n")
        self.stream.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def link(path, stream=None) -> str:
    """`path`, as a clickable file:// link (OSC 8) on a terminal, plain text elsewhere."""
    stream = stream or sys.stdout
    text = str(path)
    if not interactive(stream):
        return text
    from pathlib import Path

    return f"\033]8;;{Path(path).absolute().as_uri()}\033\\{text}\033]8;;\033\\"


def warnings_summary(raised: dict[str, int]) -> str:
    """The warnings the checked code raised, each once, most frequent first."""
    if not raised:
        return ""
    lines = [f"harness: {sum(raised.values())} warning(s) raised by the checked code, "
             f"{len(raised)} distinct (each once, with how many items raised it):"]
    lines += [f"  {count} x {text}" for text, count in
              sorted(raised.items(), key=lambda kv: -kv[1])[:20]]
    if len(raised) > 20:
        lines.append(f"  ... and {len(raised) - 20} more")
    return "\n".join(lines)
