"""Where cases come from: the `harness.cases` entry point group and files given on the CLI.

An entry point's target is an iterable of Case or a zero-argument callable returning one, or
an OptInCases: a source too slow or too large for every run, built only when a name pattern
under its prefix or one of its tags selects it. A file or folder contributes its module-level
Case objects and the items of a `CASES` list.
Anything that goes wrong while loading (import error, wrong type, duplicate name) becomes an
error Record naming the plugin or file; it never stops the other sources.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import importlib.util
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

from harness.case import Case, TrainingCase
from harness.record import Record
from harness.source import Source, from_file, from_plugin

GROUP = "harness.cases"


@dataclass(frozen=True)
class OptInCases:
    """Cases a plugin builds only when asked: `--cases 'PREFIX/...'` or `--tag TAG` (or, with
    `with_everything`, also in a run that selects nothing by name or tag).

    `load()` returns the cases (named PREFIX/...); it is not called otherwise, so an expensive
    import costs nothing in a default run. A match-all pattern like '*' does not select it.
    """

    prefix: str
    load: Callable[[], Iterable[Case]]
    tags: tuple[str, ...] = ()
    description: str = ""
    with_everything: bool = False
    """Built too by a run that names no case and no tag (the main job, `harness check`): only
    a run that selects other cases skips its import."""

    def wanted(self, patterns: Iterable[str] = (), tags: Iterable[str] = ()) -> bool:
        if self.with_everything and not patterns and not tags:
            return True
        heads = [p.split("/")[0] for p in patterns or ()]
        by_name = any(h.strip("*") and fnmatch.fnmatchcase(self.prefix, h) for h in heads)
        return by_name or bool(set(tags or ()) & set(self.tags))


@dataclass(frozen=True)
class Registry:
    """Loaded cases, by unique name, the load errors as records, and the opt-in sources that
    were not asked for (name -> OptInCases)."""

    cases: tuple[Case | TrainingCase, ...]
    errors: tuple[Record, ...]
    opt_in: tuple[tuple[str, OptInCases], ...] = ()


def _error(source: Source, message: str) -> Record:
    return Record(case=str(source), check="load", dtype="-", device="-", status="error",
                  message=message, source=source)


def _take(source: Source, produced) -> tuple[list[Case], list[Record]]:
    """Turn whatever a plugin produced into cases, or error records saying what was wrong."""
    try:
        if callable(produced) and not isinstance(produced, (Case, TrainingCase)):
            produced = produced()
        if isinstance(produced, (Case, TrainingCase)):
            produced = [produced]
        if not isinstance(produced, Iterable):
            return [], [_error(source, f"{source} produced {type(produced).__name__}; "
                               "expected an iterable of harness.Case (or a callable "
                               "returning one)")]
        cases, errors = [], []
        for k, case in enumerate(produced):
            if isinstance(case, (Case, TrainingCase)):
                cases.append(dataclasses.replace(case, source=case.source or source))
            else:
                errors.append(_error(source, f"{source}: item {k} is "
                                     f"{type(case).__name__}, not a harness.Case; skipped"))
        return cases, errors
    except Exception as exc:
        return [], [_error(source, f"{source} failed while producing cases: "
                           f"{type(exc).__name__}: {exc}")]


def from_entry_points(group: str = GROUP, patterns: Iterable[str] = (),
                      tags: Iterable[str] = ()) -> tuple[list[Case], list[Record], list]:
    """Cases from every installed distribution's entry point in `group`; OptInCases only
    when `patterns` or `tags` select them (the others are returned as (name, source))."""
    cases, errors, skipped = [], [], []
    for ep in sorted(entry_points(group=group), key=lambda e: e.name):
        source = from_plugin(ep.name, ep.value)
        try:
            target = ep.load()
        except Exception as exc:
            errors.append(_error(source, f"{source} could not be loaded: "
                                 f"{type(exc).__name__}: {exc}; is the package installed "
                                 "and the entry point's object spelled right?"))
            continue
        if isinstance(target, OptInCases):
            if not target.wanted(patterns, tags):
                skipped.append((ep.name, target))
                continue
            target = target.load
        more, errs = _take(source, target)
        cases += more
        errors += errs
    return cases, errors, skipped


def from_path(path: str | Path) -> tuple[list[Case], list[Record]]:
    """Cases from a .py file, or from every .py file (not starting with _) in a folder."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.glob("*.py") if not p.name.startswith("_"))
    elif path.is_file():
        files = [path]
    else:
        return [], [_error(from_file(path), f"--load {path}: no such file or folder")]
    cases, errors = [], []
    for file in files:
        source = from_file(file)
        name = f"harness_loaded_{abs(hash(str(file.resolve())))}"
        try:
            spec = importlib.util.spec_from_file_location(name, file)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
        except Exception as exc:
            errors.append(_error(source, f"{source} failed to import: "
                                 f"{type(exc).__name__}: {exc}"))
            continue
        found = [v for v in vars(module).values() if isinstance(v, (Case, TrainingCase))]
        found += [c for c in getattr(module, "CASES", ()) if c not in found]
        more, errs = _take(source, found)
        cases += more
        errors += errs
    return cases, errors


def load(paths: Iterable[str | Path] = (), use_entry_points: bool = True,
         patterns: Iterable[str] = (), tags: Iterable[str] = ()) -> Registry:
    """All cases from entry points and `paths`; a duplicate name is an error, first one wins.
    `patterns` and `tags` (the run's selection) decide which OptInCases are built."""
    cases, errors, skipped = (from_entry_points(GROUP, patterns, tags) if use_entry_points
                              else ([], [], []))
    for path in paths:
        more, errs = from_path(path)
        cases += more
        errors += errs
    unique: dict[str, Case] = {}
    for case in cases:
        if case.name in unique:
            errors.append(_error(case.source, f"duplicate case name {case.name!r}: from "
                                 f"{case.source}, already registered by "
                                 f"{unique[case.name].source}; rename one of them"))
            continue
        unique[case.name] = case
    return Registry(tuple(unique.values()), tuple(errors), tuple(skipped))


def counted_errors(errors: Iterable[Record], patterns: Iterable[str] = ()
                   ) -> tuple[list[Record], list[Record]]:
    """(load errors the run counts, plugin errors it only warns about). A plugin's cases are
    unknown when it fails, so its error counts when no pattern narrows the run or a
    pattern's first part matches the entry point's name; a --load file's always counts."""
    heads = [p.split("/")[0] for p in patterns or ()]
    counted, warned = [], []
    for err in errors:
        name = err.source.name if err.source.kind == "plugin" else None
        if name is None or not heads or any(fnmatch.fnmatchcase(name, h) for h in heads):
            counted.append(err)
        else:
            warned.append(err)
    return counted, warned


def select(cases, patterns: Iterable[str] = (), tags: Iterable[str] = ()) -> list:
    """The cases whose name matches any of `patterns` and that carry any of `tags` (each
    filter applies only when given)."""
    patterns, tags = list(patterns or ()), set(tags or ())
    if patterns:
        cases = [c for c in cases if any(fnmatch.fnmatchcase(c.name, p) for p in patterns)]
    if tags:
        cases = [c for c in cases if tags & set(c.tags)]
    return list(cases)
