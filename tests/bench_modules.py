"""Benchmark: what the module bisection costs, and how often it names the planted module.

Run with `python -m pytest tests/bench_modules.py --benchmark-only -n 0 -s` (part of
`nox -s bench`). On the planted residual-block models of tests/planted_modules.py (float32
parameters, default initialisation, a 5x8 unscaled normal batch), it prints:

* correct models (4, 8 and 24 blocks): the `module` family's seconds beside the `fd`
  family's on the same model: on a correct model the bisection is its top-level check alone;
* one wrong block among 24 (the custom Function 1.5x off where its input is negative, or a
  detached sigmoid in x * sigmoid(x)), at several positions and seeds: whether the culprit
  named is exactly the planted `{i}.k.1`, the sub-checks and seconds;
* two wrong blocks among 8: whether both are named;
* other model families, the FusedGELU planted: layers in nn.ModuleLists called in a loop
  (`acts.3`), a CNN with batch norm in training mode (`features.2`), a 2-layer transformer
  encoder whose activation function is FusedGELU.apply (both layers, `layers.0`, `layers.1`),
  and a 6-layer 64-wide tanh MLP whose fifth layer (`8`) has one of its 4,096 weight
  elements' gradient 1.1x right.
"""

from __future__ import annotations

import os
import time

import pandas as pd
import pytest
import torch
from planted_modules import (
    DetachedSiLU,
    FusedGELU,
    Loop,
    SmallCNN,
    blocks,
    transformer,
    wide_mlp,
)

from harness import check_gradients

SEEDS = range(int(os.environ.get("HARNESS_MODULE_SEEDS", "5")))
POSITIONS = (0, 7, 13, 23)


def _timed(model, x, check: str):
    started = time.perf_counter()
    (record,) = check_gradients(model, x, checks=(check,)).records
    return record, time.perf_counter() - started


def _named(record) -> list[str]:
    return [line.split("`")[1] for line in record.message.splitlines()
            if line.startswith("the wrong gradient comes from")]


def _sub_checks(record) -> int:
    text = record.message
    marker = "bisection: " if "bisection: " in text else "finite differences ("
    return int(text.split(marker)[1].split()[0])


def _batch(seed: int) -> torch.Tensor:
    return torch.randn(5, 8, generator=torch.Generator().manual_seed(seed))


def _correct_rows():
    rows = []
    FusedGELU.scale = 1.0
    _timed(blocks(2), _batch(0), "fd")  # warm-up: the first check pays torch's first calls
    try:
        for n in (4, 8, 24):
            for seed in SEEDS:
                model, x = blocks(n, wrong=tuple(range(n))), _batch(seed)
                fd, fd_s = _timed(model, x, "fd")
                mod, mod_s = _timed(model, x, "module")
                rows.append(dict(blocks=n, seed=seed, fd=fd.status, module=mod.status,
                                 named=len(_named(mod)), sub_checks=_sub_checks(mod),
                                 fd_s=fd_s, module_s=mod_s))
    finally:
        FusedGELU.scale = 1.5
    return pd.DataFrame(rows)


def _wrong_rows():
    rows = []
    for act in (None, DetachedSiLU):
        for pos in POSITIONS:
            for seed in SEEDS:
                kwargs = {"act": act} if act else {}
                record, seconds = _timed(blocks(24, wrong=(pos,), **kwargs), _batch(seed),
                                         "module")
                rows.append(dict(planted=act.__name__ if act else "FusedGELU", position=pos,
                                 seed=seed, status=record.status,
                                 exact=_named(record) == [f"{pos}.k.1"],
                                 sub_checks=_sub_checks(record), seconds=seconds))
    for seed in SEEDS:
        record, seconds = _timed(blocks(8, wrong=(1, 6)), _batch(seed), "module")
        rows.append(dict(planted="FusedGELU x2 of 8", position="1, 6", seed=seed,
                         status=record.status, exact=_named(record) == ["1.k.1", "6.k.1"],
                         sub_checks=_sub_checks(record), seconds=seconds))
    return pd.DataFrame(rows)


FAMILIES = {
    "ModuleList loop": (lambda: Loop(), lambda g: torch.randn(4, 6, generator=g), ["acts.3"]),
    "CNN + BatchNorm": (SmallCNN, lambda g: torch.randn(2, 2, 6, 6, generator=g),
                        ["features.2"]),
    "MLP 6x64, one weight element x1.1": (wide_mlp,
                                          lambda g: torch.randn(16, 64, generator=g), ["8"]),
    "transformer": (transformer, lambda g: torch.randn(2, 3, 8, generator=g),
                    ["layers.0", "layers.1"]),
}


def _family_rows():
    rows = []
    for family, (build, draw, planted) in FAMILIES.items():
        for seed in SEEDS:
            x = draw(torch.Generator().manual_seed(seed))
            record, seconds = _timed(build(), x, "module")
            rows.append(dict(planted=family, position=", ".join(planted), seed=seed,
                             status=record.status, exact=_named(record) == planted,
                             sub_checks=_sub_checks(record), seconds=seconds))
    return pd.DataFrame(rows)


def _measure():
    return _correct_rows(), pd.concat([_wrong_rows(), _family_rows()], ignore_index=True)


def test_module_bisection_cost(benchmark):
    correct, wrong = benchmark.pedantic(_measure, rounds=1, iterations=1)
    fd_once = _timed(blocks(24, wrong=(13,)), _batch(0), "fd")[1]
    by_size = correct.groupby("blocks").agg(
        models=("seed", "size"), module_pass=("module", lambda s: int((s == "pass").sum())),
        fd_pass=("fd", lambda s: int((s == "pass").sum())), named=("named", "sum"),
        sub_checks=("sub_checks", "max"), fd_s=("fd_s", "median"),
        module_s=("module_s", "median"))
    by_size["module / fd"] = by_size.module_s / by_size.fd_s
    found = wrong.groupby(["planted", "position"]).agg(
        models=("seed", "size"), failed=("status", lambda s: int((s == "fail").sum())),
        named_exactly=("exact", "sum"), sub_checks=("sub_checks", "median"),
        seconds=("seconds", "median"))
    print(f"\n# Module bisection (torch {torch.__version__}, {os.cpu_count()} cores, seeds "
          f"{SEEDS.start}-{SEEDS.stop - 1})\n")
    print("## Correct models: the module family beside fd (median seconds)\n")
    print(by_size.round(3).to_markdown())
    print("\n## One or two wrong modules (median over seeds)\n")
    print(found.round(3).to_markdown())
    print(f"\nnamed exactly: {int(wrong.exact.sum())}/{len(wrong)}; the fd family alone on "
          f"24 blocks with one wrong: {fd_once:.1f} s (it localizes every parameter's "
          "error)")
    assert len(wrong) and len(correct)


if __name__ == "__main__":
    pytest.main([__file__, "--benchmark-only", "-n", "0", "-s"])
