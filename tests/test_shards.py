"""Shards for CI matrices: `--store-durations` records, `--shard K/N` splits the items longest
first so that every item runs in exactly one shard, the same in every process."""

import json

import pandas as pd
import pytest

from harness import shards
from harness.cli import main
from harness.plan import Selection


def test_a_shard_is_k_of_n():
    assert shards.parse_shard("1/2") == (1, 2) and shards.parse_shard("3/3") == (3, 3)
    for bad in ("0/2", "3/2", "2", "a/b", "1/0", "-1/2"):
        with pytest.raises(ValueError, match=r"give K/N with 1 <= K <= N \(e.g. 1/2\), not "):
            shards.parse_shard(bad)


def test_longest_first_onto_the_least_loaded_shard():
    costs = [("a", 5.0), ("b", 4.0), ("c", 3.0), ("d", 3.0), ("e", 1.0)]
    # a -> 0 (5), b -> 1 (4), c -> 1 (7), d -> 0 (8), e -> 1 (8)
    assert shards.assign(costs, 2) == [0, 1, 1, 0, 1]
    assert shards.assign(costs, 1) == [0] * 5
    assert sorted(shards.assign(costs, 5)) == [0, 1, 2, 3, 4]


def test_every_item_lands_in_exactly_one_shard_and_unknown_ones_count_their_cost():
    selection = Selection(patterns=("tutorial/poly", "tutorial/dot"))
    _, cases = selection.build()
    items = selection.items(cases)
    durations = {items[0].id: 100.0}  # one recorded item, far the longest
    parts = [shards.shard(items, k, 3, durations) for k in (1, 2, 3)]
    ids = [item.id for part in parts for item in part]
    assert sorted(ids) == sorted(item.id for item in items)
    assert parts[0] == [items[0]]  # alone: nothing else comes near it
    total = [sum(durations.get(i.id, i.spec.cost) for i in part) for part in parts[1:]]
    assert abs(total[0] - total[1]) <= max(i.spec.cost for i in items)


def test_durations_are_merged_and_a_broken_file_is_refused(tmp_path):
    path = tmp_path / "d.json"
    shards.store(path, {"x": 1.0, "y": 2.0})
    shards.store(path, {"y": 3.0, "z": 0.5})
    assert shards.load(path) == {"x": 1.0, "y": 3.0, "z": 0.5}
    assert shards.load(tmp_path / "missing.json") == {}
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="expected a JSON object of item id -> seconds"):
        shards.load(path)


def test_two_shards_of_a_stored_run_are_the_run(tmp_path, capsys):
    durations = tmp_path / "durations.json"
    common = ["--cases", "tutorial/poly", "--no-isolate", "--durations-file", str(durations)]
    assert main(["check", *common, "--store-durations", "--report-dir",
                 str(tmp_path / "all")]) == 0
    recorded = json.loads(durations.read_text())
    whole = pd.read_csv(tmp_path / "all" / "correctness.csv")
    assert len(recorded) == len(whole)
    halves = []
    for k in (1, 2):
        assert main(["check", *common, "--shard", f"{k}/2", "--report-dir",
                     str(tmp_path / f"s{k}")]) == 0
        halves.append(pd.read_csv(tmp_path / f"s{k}" / "correctness.csv"))
    key = ["case", "check", "dtype", "device"]
    rows = pd.concat(halves)[key].sort_values(key).reset_index(drop=True)
    assert rows.equals(whole[key].sort_values(key).reset_index(drop=True))
    assert min(len(h) for h in halves) > 0


def test_a_bad_shard_or_durations_file_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["check", "--shard", "3/2"])
    assert exit_.value.code == 2
    assert "argument --shard: give K/N with 1 <= K <= N (e.g. 1/2), not '3/2'" in \
        capsys.readouterr().err
    broken = tmp_path / "d.json"
    broken.write_text("{not json")
    assert main(["check", "--shard", "1/2", "--durations-file", str(broken),
                 "--report-dir", str(tmp_path / "r")]) == 2
    assert "--durations-file: durations file" in capsys.readouterr().err
