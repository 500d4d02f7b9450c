"""Where a case came from, as data: what registered it (a plugin's entry point, a file given
to --load, a call of check_gradients, the module bisection), read by field wherever it decides
something (which load error a run counts, how a row is reproduced) and turned into words only
where it is shown (the CSV's `source` column, `harness list`)."""

from __future__ import annotations

from dataclasses import dataclass

KINDS = ("", "plugin", "file", "call")
"""'' a case built by hand (no source); 'plugin' an entry point of the harness.cases group;
'file' a file or folder given to --load; 'call' a case built by the harness itself for one
call (check_gradients, the module bisection)."""


@dataclass(frozen=True)
class Source:
    """`kind` (KINDS); `name`: the entry point's name, or the call's ("check_gradients",
    "module bisection"); `path`: the entry point's object ("pkg.mod:CASES") or the file."""

    kind: str = ""
    name: str = ""
    path: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"Source.kind must be one of {KINDS}, got {self.kind!r}")

    def __str__(self) -> str:
        if self.kind == "plugin":
            return f"plugin {self.name} ({self.path})"
        if self.kind == "file":
            return f"file {self.path}"
        return self.name

    def __bool__(self) -> bool:
        return bool(self.kind)


def from_plugin(name: str, path: str) -> Source:
    return Source("plugin", name, path)


def from_file(path) -> Source:
    return Source("file", "", str(path))


CHECK_GRADIENTS = Source("call", "check_gradients")
MODULE_BISECTION = Source("call", "module bisection")
NO_SOURCE = Source()
