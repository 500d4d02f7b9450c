"""The words and the small helpers, with exact values: event phrases, reproduce commands and
shell quoting, sources in words, the tolerance lever's words, global-state restoring and
float64 promotion."""

import shlex

import pytest
import torch

from harness.diagnose import events
from harness.diagnose.mismatch import reproduce_command, reproduce_line, shell_word
from harness.promote import float64_calls
from harness.record import Record
from harness.source import CHECK_GRADIENTS, NO_SOURCE, Source, from_file, from_plugin
from harness.state import preserved_torch_state
from harness.tolerances import user_tolerance_note, user_tolerance_words

F64 = torch.float64


def test_crash_and_time_out_phrases():
    assert events.crashed_phrase(-11).startswith(
        "crashed: signal 11 (SIGSEGV) while running this item; it took down only its worker")
    assert events.crashed_phrase(3).startswith(
        "crashed: the worker exited with status 3 while running this item")
    assert events.timed_out_phrase(2.5).startswith(
        "timed out after 2.5 s (the per-item limit: --timeout, or the case's timeout)")
    assert events.first_line(ValueError("first\nsecond")) == "ValueError: first"
    assert events.first_line(ValueError("x" * 300), limit=5) == "ValueError: xxxxx"


def test_a_note_is_added_on_its_own_line():
    row = Record(case="c", check="fd", dtype="float64", device="cpu", status="pass",
                 message="all good")
    assert events.noted(row, "mind this").message == "all good\n  note: mind this"
    assert events.noted(Record(case="c", check="fd", dtype="float64", device="cpu",
                               status="pass"), "alone").message == "alone"


def test_reproduce_commands_quote_what_the_shell_would_split():
    assert shell_word("tutorial/poly") == "'tutorial/poly'"
    assert shell_word("it's") == "'it'\"'\"'s'"
    assert shlex.split(shell_word("it's (a-b)")) == ["it's (a-b)"]
    command = reproduce_command("x/y", F64, "cpu", 3, from_file("/tmp/my cases.py"), "fd")
    assert command == ("harness check --cases 'x/y' --check fd --dtype float64 --device cpu "
                       "--seed 3 --load '/tmp/my cases.py'")
    assert reproduce_command("x/y", F64, "cuda", 0, NO_SOURCE, "search", command="search",
                             options=" --thorough") == (
        "harness search --cases 'x/y' --check search --dtype float64 --device cuda --seed 0 "
        "--thorough")
    assert reproduce_command("f", F64, "cpu", 7, CHECK_GRADIENTS, "fd") == (
        "check_gradients(..., checks=('fd',), seed=7) on the same inputs")
    assert reproduce_line("harness check") == "  reproduce: harness check"


def test_sources_in_words_and_as_data():
    plugin = from_plugin("mine", "pkg.cases:CASES")
    assert str(plugin) == "plugin mine (pkg.cases:CASES)"
    assert (plugin.kind, plugin.name, plugin.path) == ("plugin", "mine", "pkg.cases:CASES")
    assert str(from_file("a b.py")) == "file a b.py"
    assert str(CHECK_GRADIENTS) == "check_gradients" and str(NO_SOURCE) == ""
    assert not NO_SOURCE and plugin
    with pytest.raises(ValueError, match="Source.kind must be one of"):
        Source("url", "x")


def test_the_tolerance_levers_words():
    words = user_tolerance_words(F64, 1e-4, None)
    assert words == "rtol=0.0001 (the table's for float64: rtol=1e-06, atol=1e-08)"
    assert user_tolerance_note(F64, 1e-4, None) == f"tolerance set by the case: {words}"
    assert user_tolerance_words(F64, 1e-4, 1e-6).startswith("rtol=0.0001, atol=1e-06 (")


def test_global_state_a_body_changes_is_restored_and_named():
    before = torch.get_default_dtype()
    with preserved_torch_state() as changed:
        torch.set_default_dtype(F64 if before != F64 else torch.float32)
        torch.set_grad_enabled(False)
        torch.manual_seed(5)  # the random state: restored, not reported
    assert torch.get_default_dtype() == before and torch.is_grad_enabled()
    other = F64 if before != F64 else torch.float32
    assert changed == [f"default dtype {before} -> {other}", "grad mode True -> False"]
    with preserved_torch_state() as nothing:
        pass
    assert nothing == []


def test_float64_calls_promote_what_a_function_closes_over():
    k = torch.tensor(0.1, dtype=torch.float32)
    scaled = float64_calls(lambda x: x * k)
    wide = scaled(torch.ones(1, dtype=F64))
    assert wide.dtype == F64 and wide.item() == float(k)  # k's float32 value, widened
    narrow = scaled(torch.ones(1, dtype=torch.float32))  # the dtype under test: as written
    assert narrow.dtype == torch.float32
