"""Phrases for run events: an exception, a crash, a time-out, an interruption, global state a
case changed, a worker that could not start."""

from __future__ import annotations

from dataclasses import replace

from harness.record import Record


def first_line(exc: Exception, limit: int = 160) -> str:
    """`TypeName: first line of the message`, cut to `limit` characters."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:limit] if lines else ''}"


def noted(record: Record, note: str) -> Record:
    message = f"{record.message}\n  note: {note}" if record.message else note
    return replace(record, message=message)


def with_state_note(record: Record, changed: list[str]) -> Record:
    """The record, noting the global torch state its case changed (restored after it)."""
    note = (f"the case changed global torch state ({'; '.join(changed)}); the harness "
            "restored it, but code that leaks such state breaks whatever runs next: restore "
            "it in the function (a `with` block)")
    return noted(record, note)


def crashed_phrase(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        import signal

        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = "unknown"
        what = f"crashed: signal {-exitcode} ({name})"
    else:
        what = f"crashed: the worker exited with status {exitcode}"
    return (f"{what} while running this item; it took down only its worker process, and the "
            "run went on in a new one. A segfault or abort is native code (a C++/CUDA "
            "extension); signal 9 is usually the out-of-memory killer (try --memory-limit)")


def timed_out_phrase(timeout: float) -> str:
    return (f"timed out after {timeout:g} s (the per-item limit: --timeout, or the case's "
            "timeout): its worker was "
            "stopped and the run went on in a new one. A hang (a lock, an endless loop) or a "
            "case too large for the quick run?")


def interrupted_record(signal_name: str, done: int, total: int, seed: int) -> Record:
    """The row that marks a report incomplete."""
    return Record(case="(run)", check="run", dtype="", device="", status="error", seed=seed,
                  message=f"INCOMPLETE: the run was interrupted by {signal_name} after {done} "
                          f"of {total} items; the rows above finished, the rest did not run")


def with_worker_note(record: Record, exc: Exception) -> Record:
    """The record of the first item run in process because no worker process started."""
    note = (f"no worker process could start ({first_line(exc)}), so "
            "this and the remaining items ran in the harness's own process, without crash "
            "isolation or time limit")
    return noted(record, note)


def error_hint(exc: Exception, differentiates_backward: bool = False,
               case_code: bool = True) -> str:
    """What to do about an exception raised by a check ("" if unknown);
    `differentiates_backward`: the check runs double backward; `case_code`: some frame of
    the traceback is in the case's own code."""
    text = str(exc)
    if "Mismatch in shape: grad_output" in text or "stack expects each tensor" in text:
        return ("fn's output shape changes from call to call (the gradient was made for "
                "another call's output): its output shape must depend only on its inputs")
    if "no autograd formula was registered" in text:
        return ("the custom op has no backward: register one with "
                "op.register_autograd(backward, setup_context=...)")
    if differentiates_backward and "used in an in-place operation" in text:
        return ("the backward writes in place into its incoming gradient (grad_output, or a "
                "view of it): a double backward differentiates through grad_output, and "
                "autograd cannot differentiate through that write (gradgradcheck raises the "
                "same); compute the backward out of place (g * 2, not g.mul_(2))")
    if differentiates_backward:
        return ("if the backward is meant to be differentiable once only, declare "
                "twice_differentiable=False")
    if not case_code:
        return ("no frame of this traceback is in the case's code, so torch's engine or the "
                "harness raised it: if the case looks right, please report it with its seed")
    return ""
