"""Progress lines and the warnings summary: a bar on a terminal, plain lines in logs and CI."""

import io
import time

import pandas as pd

from harness import progress
from harness.cli import main


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_log_gets_plain_lines_with_elapsed_time_and_eta(monkeypatch):
    monkeypatch.setattr(progress, "PLAIN_EVERY", 0.0)
    out = io.StringIO()
    bar = progress.Progress(4, stream=out)
    for n in range(4):
        bar(n, 4, f"case/{n}")
    bar.close()
    lines = out.getvalue().splitlines()
    assert lines[0] == "  0/4 items, 0 s elapsed: case/0"
    assert lines[2].startswith("  2/4 items, ") and ", ETA " in lines[2]
    assert lines[2].endswith(": case/2")


def _read_until(fd, wanted, deadline):
    """What a terminal showed, read until every `wanted` text has appeared (tqdm may write
    its first frame before the one that counts) or the deadline passes."""
    import os
    import select

    shown = ""
    while not all(w in shown for w in wanted) and time.monotonic() < deadline:
        if select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
            shown += os.read(fd, 65536).decode(errors="replace")
    return shown


def test_a_pseudo_terminal_gets_a_bar_with_eta_and_links(monkeypatch):
    import fcntl
    import os
    import pty
    import struct
    import termios

    monkeypatch.delenv("CI", raising=False)
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # 120 columns
    with os.fdopen(slave, "w") as tty:
        bar = progress.Progress(10, stream=tty)
        assert bar.bar is not None
        for n in range(4):
            bar(n, 10, f"case/{n}")
        bar.bar.refresh()
        tty.flush()
        shown = _read_until(master, ("3/10", "case/3"), deadline=time.monotonic() + 10)
        bar.close()
        assert "\033]8;;file://" in progress.link("reports/x.csv", stream=tty)
    os.close(master)
    assert "3/10" in shown and "<" in shown and "case/3" in shown  # tqdm's [elapsed<eta]


def test_a_terminal_gets_a_bar_and_ci_gets_plain_lines(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    tty = Terminal()
    bar = progress.Progress(10, stream=tty)
    bar(3, 10, "case/three")
    bar.bar.refresh()
    bar.close()
    assert "3/10" in tty.getvalue() and "case/three" in tty.getvalue()
    monkeypatch.setenv("CI", "true")
    assert progress.Progress(10, stream=Terminal()).bar is None


def test_warnings_from_the_checked_code_are_shown_once_grouped_at_the_end(tmp_path, capsys):
    (tmp_path / "noisy.py").write_text('''
import warnings, torch
from harness import Case, Input

def noisy(x):
    warnings.warn("this kernel is deprecated", DeprecationWarning)
    return torch.sin(x)

noisy_case = Case(name="mine/noisy", fn=noisy, inputs=[Input((3,))])
''')
    assert main(["check", "--load", str(tmp_path / "noisy.py"), "--cases", "mine/*",
                 "--check", "fd", "--no-isolate", "--report-dir", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert err.count("this kernel is deprecated") == 1
    assert "2 x DeprecationWarning: this kernel is deprecated (noisy.py:6)" in err
    assert len(pd.read_csv(tmp_path / "correctness.csv")) == 2
