"""Benchmark: what the pytest plugin costs a project that collects no harness item.

Run with `python tests/bench_plugin.py` (part of `nox -s bench`). pytest loads the plugin
(entry point pytest11) in every session of every project where gradharness is installed. In a
fresh process per round, a one-test project with no harness settings runs under pytest; the
plugin's import and each of its hooks are timed where they run, and whether torch,
hypothesis's engine or any check family was imported is read from sys.modules at the end.
The same project is also timed as a whole command, with the plugin and with `-p no:harness`,
interleaved, so the difference a user sees is printed beside it.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROUNDS = 7

_ROUND = r'''
import functools, json, sys, time
import pytest
started = time.perf_counter()
import harness.pytest_plugin as plugin
spent = {"import": time.perf_counter() - started}
for name in [n for n in dir(plugin) if n.startswith("pytest_")]:
    hook = getattr(plugin, name)
    @functools.wraps(hook)
    def timed(*args, __hook=hook, __name=name, **kwargs):
        start = time.perf_counter()
        try:
            return __hook(*args, **kwargs)
        finally:
            spent[__name] = spent.get(__name, 0.0) + time.perf_counter() - start
    setattr(plugin, name, timed)
code = pytest.main(["-q", "-p", "no:cacheprovider", sys.argv[1]])
heavy = [m for m in ("torch", "harness.checks", "harness.runner", "hypothesis.core")
         if m in sys.modules]
print(json.dumps({"code": int(code), "spent": spent, "heavy": heavy}))
'''


def _project(folder: Path) -> Path:
    (folder / "test_unrelated.py").write_text("def test_one():\n    assert 1 + 1 == 2\n")
    (folder / "pytest.ini").write_text("[pytest]\n")
    return folder / "test_unrelated.py"


def _in_process(test: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", _ROUND, str(test)], capture_output=True,
                         text=True, cwd=test.parent, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _wall(test: Path, *extra: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *extra,
                    str(test)], capture_output=True, cwd=test.parent, check=True)
    return time.perf_counter() - start


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        test = _project(Path(tmp))
        rounds = [_in_process(test) for _ in range(ROUNDS)]
        with_plugin, without = [], []
        for _ in range(ROUNDS):
            with_plugin.append(_wall(test))
            without.append(_wall(test, "-p", "no:harness"))
    totals = [sum(r["spent"].values()) for r in rounds]
    hooks = sorted({name for r in rounds for name in r["spent"]})
    print(f"pytest session that collects no harness item, {ROUNDS} fresh processes")
    print(f"  in the plugin: median {statistics.median(totals) * 1000:.1f} ms, "
          f"max {max(totals) * 1000:.1f} ms")
    for name in hooks:
        values = [r["spent"].get(name, 0.0) * 1000 for r in rounds]
        print(f"    {name}: median {statistics.median(values):.2f} ms")
    heavy = sorted({m for r in rounds for m in r["heavy"]})
    print(f"  heavy modules imported by the session: {', '.join(heavy) or 'none'}")
    print(f"  whole command: median {statistics.median(with_plugin):.2f} s with the plugin, "
          f"{statistics.median(without):.2f} s with -p no:harness (interleaved)")


if __name__ == "__main__":
    main()
