"""Records become one DataFrame and three files; the summary counts what was run."""

import pandas as pd

from harness import report
from harness.record import Record

RECORDS = [
    Record(case="a/x", check="fd", dtype="float64", device="cpu", status="pass",
           max_abs_err=1e-12, max_rel_err=1e-13),
    Record(case="a/x", check="analytic", dtype="float64", device="cpu", status="fail",
           message="a/x float64 cpu: autograd vs analytic\n  pattern: sign flipped",
           pattern="sign flipped", input="x", index="3", expected=1.0, actual=-1.0),
    Record(case="plugin p", check="load", dtype="-", device="-", status="error",
           message="plugin p could not be loaded: ImportError"),
]


def test_frame_has_the_columns_in_order():
    frame = report.to_frame(RECORDS)
    assert list(frame.columns[:7]) == ["case", "check", "dtype", "device", "status",
                                       "max_abs_err", "max_rel_err"]
    assert len(frame) == 3


def test_summary_counts_and_lists_failures():
    text = report.summary(report.to_frame(RECORDS))
    assert text.splitlines()[0] == "3 rows, 2 cases: 1 pass, 1 fail, 1 error, 0 skip"
    assert "FAIL a/x analytic float64 cpu: sign flipped" in text
    assert "ERROR plugin p load - -: plugin p could not be loaded: ImportError" in text


def test_files_are_written_and_readable(tmp_path):
    paths = report.write(report.to_frame(RECORDS), tmp_path / "r", seed=3)
    assert [p.name for p in paths] == ["correctness.csv", "correctness.md", "correctness.html"]
    assert len(pd.read_csv(paths[0])) == 3
    md = paths[1].read_text()
    assert "seed 3" in md and "## Failures" in md and "pattern: sign flipped" in md
    assert "<table" in paths[2].read_text()
    assert not [p for p in (tmp_path / "r").iterdir() if p.name.startswith(".")]


def test_failure_details_show_full_messages_up_to_a_limit():
    frame = report.to_frame(RECORDS)
    text = report.failure_details(frame, limit=1)
    assert text.startswith("a/x float64 cpu: autograd vs analytic\n  pattern: sign flipped")
    assert text.endswith("... and 1 more in correctness.md")


def test_reports_are_readable_like_any_file_the_user_writes(tmp_path):
    import os

    from harness import report
    from harness.record import Record

    frame = report.to_frame([Record(case="c", check="fd", dtype="float64", device="cpu",
                                    status="pass")])
    umask = os.umask(0o022)
    os.umask(umask)
    for path in report.write(frame, tmp_path):
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_the_markdown_lists_expected_failures_with_the_cases_reason(tmp_path):
    xfail = Record(case="t/deliberate", check="fd", dtype="float64", device="cpu",
                   status="xfail", pattern="off by a constant factor 3.14",
                   message="fails as the case expects ('3.14'):\n...")
    paths = report.write(report.to_frame([*RECORDS, xfail]), tmp_path / "r",
                         descriptions={"t/deliberate": "its backward scales by 3.14 on purpose"})
    md = paths[1].read_text()
    assert ("- t/deliberate / fd / float64 / cpu: off by a constant factor 3.14. The case: its "
            "backward scales by 3.14 on purpose") in md
