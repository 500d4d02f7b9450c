"""Shards of a run for CI matrices: items split longest first by recorded durations.

`harness check --store-durations` records each item's seconds in a durations file (JSON,
item id -> seconds, merged with what it held); `--shard K/N` then runs the K-th of N shards.
An item is placed on the shard with the least time so far, longest first (PyTorch's and
pytest-split's greedy rule); an item the file does not know counts its family's declared cost.
Every process that builds the items (the main one, each worker) gets the same shards: the
split reads only the item ids, their durations and N.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

DURATIONS_FILE = ".harness_durations"
"""Where --store-durations writes and --shard reads, unless --durations-file names another."""


def parse_shard(text: str) -> tuple[int, int]:
    """'K/N' -> (K, N), 1 <= K <= N; ValueError saying what to give otherwise."""
    k, slash, n = text.partition("/")
    if not slash or not k.isdigit() or not n.isdigit() or not 1 <= int(k) <= int(n):
        raise ValueError(f"give K/N with 1 <= K <= N (e.g. 1/2), not {text!r}")
    return int(k), int(n)


def load(path: str | os.PathLike) -> dict[str, float]:
    """The recorded durations, or none where the file is missing."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ValueError(f"durations file {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"durations file {path}: expected a JSON object of item id -> "
                         "seconds")
    return {str(k): float(v) for k, v in data.items()}


def store(path: str | os.PathLike, measured: dict[str, float]) -> Path:
    """Merge `measured` into the durations file (new readings replace old ones)."""
    path = Path(path)
    merged = {**load(path), **measured}
    path.write_text(json.dumps(dict(sorted(merged.items())), indent=0) + "\n")
    return path


def assign(costs: list[tuple[str, float]], n: int) -> list[int]:
    """For each (id, seconds), the shard (0-based) it goes to: longest first onto the shard
    with the least time so far (ties: the lower shard, the lower id)."""
    totals = [0.0] * n
    shard_of = [0] * len(costs)
    for i in sorted(range(len(costs)), key=lambda i: (-costs[i][1], costs[i][0])):
        target = min(range(n), key=lambda s: (totals[s], s))
        shard_of[i] = target
        totals[target] += costs[i][1]
    return shard_of


def shard(items: list, k: int, n: int, durations: dict[str, float]) -> list:
    """The items of shard K of N (1-based), in their own order."""
    costs = [(item.id, durations.get(item.id, item.spec.cost)) for item in items]
    placed = assign(costs, n)
    return [item for item, s in zip(items, placed) if s == k - 1]
