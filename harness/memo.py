"""Results the families of one example share: the runner hands a case's families the same
prepared example (runner.shared_example), and what one of them measured there (a single
backward and its spread, the first-order verdict) the next need not measure again.

Kept while the example's tensors are unchanged (their version counters), for the last
EXAMPLE_MEMO_KEPT results: a case's families run one after another, so a few suffice, and
each holds gradients the size of the inputs (a 10^6-parameter model's: 8 MB apiece).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TypeVar

T = TypeVar("T")

EXAMPLE_MEMO_KEPT = 8
_kept: dict[tuple, tuple] = {}


def versions(ex) -> tuple[int, ...]:
    """The version counters of the example's tensors: they change when one is written."""
    return tuple(t._version for t in (*ex.inputs, *ex.cotangents))


def recall(ex, what: Hashable):
    """What `keep(ex, what, ...)` stored for this very example, unchanged since; else None."""
    found = _kept.get((id(ex), what))
    if found is None or found[0] is not ex or found[1] != versions(ex):
        return None
    return found[2]


def take(ex, what: Hashable):
    """recall, once: the value is forgotten (a graph can be differentiated only once)."""
    found = recall(ex, what)
    if found is not None:
        del _kept[(id(ex), what)]
    return found


def keep(ex, what: Hashable, value: T) -> T:
    _kept[(id(ex), what)] = (ex, versions(ex), value)
    while len(_kept) > EXAMPLE_MEMO_KEPT:
        _kept.pop(next(iter(_kept)))
    return value


def once_per_example(ex, what: Hashable, compute: Callable[[], T]) -> T:
    """compute() the first time a family asks for `what` on `ex`, the kept value after."""
    found = recall(ex, what)
    return keep(ex, what, compute()) if found is None else found
