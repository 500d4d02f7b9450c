"""The one place a Finding becomes a Record: pass, skip, error, or fail with its story.

A check returns what it found (harness.checks.spec.Finding); the runner times it and calls
`record_of`, which writes the message in the shape every family shares: a header naming
case, dtype, device and what was compared, per-input lines in assert_close's shape or one
line per broken clause, hints, notes, and a reproduction line.
"""

from __future__ import annotations

import math
from dataclasses import replace

from harness.diagnose.mismatch import describe, header, reproduce_command, reproduce_line
from harness.record import Record
from harness.tolerances import dtype_name, user_tolerance_note, user_tolerance_words


def record_of(ex, spec, finding, seconds: float, reproduce: bool = True) -> Record:
    """The Record of `finding`, what `spec`'s check found on example `ex` in `seconds`;
    `reproduce`: end a failure's message with the line that runs it again (the search
    writes its own, for the search)."""
    common = dict(case=ex.case.name, check=spec.name, dtype=dtype_name(ex.dtype),
                  device=ex.device, seed=ex.seed, seconds=seconds, source=ex.case.source)
    rtol, atol = getattr(ex.case, "rtol", None), getattr(ex.case, "atol", None)
    if rtol is not None or atol is not None:
        common["tolerance"] = user_tolerance_words(ex.dtype, rtol, atol)
        finding = replace(finding, notes=(*finding.notes,
                                          user_tolerance_note(ex.dtype, rtol, atol)))
    if finding.skip:
        return Record(status="skip", message=finding.skip, **common)
    if finding.error:
        return Record(status="error", message=finding.error, **common)
    if finding.searched is not None:
        return _searched(ex, spec, finding.searched, common)
    if finding.verdicts is not None:
        return _verdicts(ex, spec, finding, common, reproduce)
    if not finding.problems and not finding.concerns:
        return Record(status="pass", message="; ".join(finding.notes), **common)
    lines = [header(ex.case.name, ex.dtype, ex.device, spec.title)]
    lines += [f"  - {p}" for p in finding.problems]
    lines += [f"  - warning: {c}" for c in finding.concerns]
    lines += [f"  note: {n}" for n in finding.notes]
    if reproduce:
        common["reproduce"] = reproduce_command(ex.case.name, ex.dtype, ex.device, ex.seed,
                                                ex.case.source, spec.name)
        lines.append(reproduce_line(common["reproduce"]))
    return Record(status="fail" if finding.problems else "warn", message="\n".join(lines),
                  pattern=(finding.problems or finding.concerns)[0], **common)


def _verdicts(ex, spec, finding, common: dict, reproduce: bool) -> Record:
    """Per-input comparisons: pass, or fail with each failing input's assert_close lines;
    header and reproduction line from the example they were measured on (a view, maybe)."""
    shown = finding.view or ex
    verdicts = finding.verdicts
    powers = [v.detects for v in verdicts if math.isfinite(v.detects)]
    common.update(max_abs_err=max((v.max_abs for v in verdicts), default=0.0),
                  max_rel_err=max((v.max_rel for v in verdicts), default=0.0),
                  detects=max(powers) if len(powers) == len(verdicts) and powers else None)
    notes = [shown.note] if getattr(shown, "note", "") else []  # training examples: none
    kinks = [k for v in verdicts for k in v.kinks]
    if kinks:
        listed = "; ".join(kinks[:5]) + (f"; and {len(kinks) - 5} more" if len(kinks) > 5 else "")
        notes.append(f"{len(kinks)} kink(s), accepted: {listed}")
    unreliable = sum(v.unreliable for v in verdicts)
    if unreliable:
        notes.append(f"{unreliable} finite-difference probe{'s' * (unreliable > 1)} crossed "
                     f"a kink or domain edge and {'were' if unreliable > 1 else 'was'} not "
                     "trusted")
    notes += finding.notes
    failed = [v for v in verdicts if v.mismatch is not None]
    if not failed:
        power = [v.power for v in verdicts if math.isfinite(v.detects)]
        if power:
            notes.insert(0, "would have caught " + "; ".join(power))
        return Record(status="pass", message="; ".join(notes), **common)
    m = max(failed, key=lambda v: v.mismatch.abs_err / max(v.mismatch.allowed, 1e-300)).mismatch
    reference, checked = finding.reference, finding.checked
    lines = [*finding.preface,
             header(shown.case.name, shown.dtype, shown.device, f"{checked} vs {reference}")]
    for v in failed:
        lines.append(f" {v.label}:")
        lines.extend(describe(v.mismatch, reference, checked))
    agree = [v.label for v in verdicts if v.mismatch is None]
    if agree:
        lines.append(f" agree: {', '.join(agree)}")
    lines.extend(f"  hint: {h}" for h in finding.hints)
    lines.extend(f"  note: {n}" for n in notes)
    if reproduce:
        common["reproduce"] = reproduce_command(shown.case.name, shown.dtype, shown.device,
                                                shown.seed, shown.case.source, spec.name)
        lines.append(reproduce_line(common["reproduce"]))
    pattern = finding.pattern or "; ".join([m.pattern, *finding.hints])
    return Record(status="fail", message="\n".join(lines), input=m.label,
                  index=",".join(map(str, m.index)), expected=m.expected, actual=m.actual,
                  allowed=m.allowed, pattern=pattern, **common)


def _searched(ex, spec, searched, common: dict) -> Record:
    """The smallest failing searched input, the searched check's diagnosis there, and how
    to reproduce the search (where reports are written, a line says where its inputs were
    saved: harness.report)."""
    worst = searched.found if isinstance(searched.found, Record) else None
    diagnosis = (worst.message if worst is not None
                 else f"{type(searched.found).__name__}: {searched.found}")
    name = spec.searches
    lines = [header(ex.case.name, ex.dtype, ex.device, f"input search ({name}, "
                    f"{searched.profile} profile): failed within {searched.tried} inputs"),
             f"  smallest failing input{' found' if searched.shrink_cut else ''}: "
             f"{searched.smallest}"
             + (f" (the shrink stopped at its budget of {searched.shrink_cut} inputs)"
                if searched.shrink_cut else ""),
             *("  " + line for line in diagnosis.splitlines())]
    common["reproduce"] = reproduce_command(
        ex.case.name, ex.dtype, ex.device, ex.seed, ex.case.source, name, command="search",
        options=" --thorough" if searched.profile == "thorough" else "")
    lines.append(reproduce_line(common["reproduce"]))
    located = {} if worst is None else dict(input=worst.input, index=worst.index,
                                             expected=worst.expected, actual=worst.actual)
    return Record(status="fail" if worst is not None else "error", message="\n".join(lines),
                  pattern=(worst.pattern if worst is not None else "raised")
                  + f" (smallest failing input: {searched.smallest})", **located, **common)


def as_expected_failure(record: Record, phrase: str) -> Record:
    """A deliberately wrong (teaching) case: failing with `phrase` in its diagnosis is an
    xfail; passing is an xpass (the run fails: the mistake the case shows is gone)."""
    if record.status in ("fail", "warn") and phrase in record.message + record.pattern:
        return replace(record, status="xfail",
                       message=f"fails as the case expects ({phrase!r}):\n{record.message}")
    if record.status in ("pass", "warn"):
        return replace(record, status="xpass", message=(
            f"{record.case} {record.dtype} {record.device}: {record.check} was expected to "
            f"fail with {phrase!r} but {'passed' if record.status == 'pass' else 'only warned'}"
            ": the mistake this case declares is no longer seen (fix the case or its "
            "expected_failures)"))
    return replace(record, message=f"expected a failure with {phrase!r}, got:\n"
                   f"{record.message}")
