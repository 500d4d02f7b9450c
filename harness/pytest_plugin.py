"""pytest plugin (entry point pytest11): one test item per case x check x dtype x device.

Enabled by the ini option `harness_cases = true` (or `--harness-cases`); items are added when
pytest collects its default paths, not when it is pointed at particular files. The selection
is `harness check`'s (harness.plan.Selection): cases with `--harness-select GLOB` (ini
`harness_select`) and `--harness-tag TAG` (ini `harness_tags`), families with
`--harness-check NAME` (ini `harness_checks`) and `--harness-opt-in NAME` (the CLI's
`--compiled`, `--determinism`: an opt-in family added to the defaults), `--harness-dtype` and
`--harness-device`. A name it does not know, or `--harness-device cuda` where torch sees no
CUDA, is a usage error. A warn row passes with a HarnessWarning; `--harness-strict` (ini
`harness_strict`) fails it.

pytest loads this plugin in every session of every project that has gradharness installed,
so at load it imports pytest alone: torch, hypothesis and the families are imported when
harness items are requested, and nothing global (torch's threads) changes otherwise.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from harness.plan import Item


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("harness", "gradient-correctness harness")
    group.addoption("--harness-cases", action="store_true", default=None,
                    help="add one test per registered case x check x dtype x device")
    group.addoption("--harness-select", action="append", default=None, metavar="GLOB",
                    help="only cases whose name matches GLOB (repeatable)")
    group.addoption("--harness-check", action="append", default=None, metavar="NAME",
                    help="only this check family (repeatable; `harness check --help` "
                    "names them)")
    group.addoption("--harness-tag", action="append", default=None, metavar="TAG",
                    help="only cases with this tag (repeatable)")
    group.addoption("--harness-opt-in", action="append", default=None, metavar="NAME",
                    help="add this opt-in family to the default ones (repeatable; `harness "
                    "check --compiled` is --harness-opt-in compiled, `--determinism` is "
                    "--harness-opt-in backward-determinism)")
    group.addoption("--harness-dtype", action="append", default=None, metavar="DTYPE",
                    help="only this dtype, e.g. float32 (repeatable)")
    group.addoption("--harness-device", action="append", default=None, metavar="DEVICE",
                    help="only this device, cpu or cuda (repeatable; cuda where torch sees "
                    "none is an error)")
    group.addoption("--harness-seed", type=int, default=0, help="seed for drawn inputs")
    group.addoption("--harness-strict", action="store_true", default=None,
                    help="warn rows (right values, something else wrong) fail their test; "
                    "without it they pass with a HarnessWarning")
    group.addoption("--harness-load", action="append", default=[], metavar="PATH",
                    help="also load cases from a .py file or folder")
    parser.addini("harness_cases", "add the registered cases as tests", type="bool",
                  default=False)
    parser.addini("harness_select", "case name globs to include", type="linelist", default=[])
    parser.addini("harness_checks", "checks to run (default: all)", type="args", default=[])
    parser.addini("harness_tags", "only cases with any of these tags", type="args", default=[])
    parser.addini("harness_strict", "warn rows fail their test", type="bool", default=False)


class HarnessItem(pytest.Item):
    """Runs one (case, check, dtype, device) item; fails with the harness's diagnosis."""

    def __init__(self, *, work: Item, seed: int, **kwargs):
        super().__init__(**kwargs)
        self.work = work
        self.seed = seed
        for tag in work.case.tags:
            self.add_marker(tag.replace("-", "_"))

    def runtest(self) -> None:
        import warnings

        from harness.checks import Settings
        from harness.plan import device_available
        from harness.record import HarnessWarning, fails_run
        from harness.runner import run_item

        if not device_available(self.work.device):
            pytest.skip(f"device {self.work.device} unavailable")
        record = run_item(self.work, Settings(seed=self.seed))
        strict = self.config.getoption("--harness-strict")
        if strict is None:
            strict = self.config.getini("harness_strict")
        if fails_run(record.status, strict):
            raise HarnessFailure(record.message)
        if record.status == "warn":
            warnings.warn(HarnessWarning(record.message), stacklevel=1)
        for status, outcome in (("skip", pytest.skip), ("xfail", pytest.xfail)):
            if record.status == status:
                outcome(record.message.splitlines()[0])

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, HarnessFailure):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self):
        return str(self.work.case.source) or "harness", None, f"harness: {self.name}"


class HarnessFailure(AssertionError):
    """A failing check; its text is the diagnosis."""


class LoadError(pytest.Item):
    """A plugin or file that could not provide its cases: a failing test naming it."""

    def __init__(self, *, message: str, **kwargs):
        super().__init__(**kwargs)
        self.message = message

    def runtest(self) -> None:
        raise HarnessFailure(self.message)

    def repr_failure(self, excinfo, style=None):
        return self.message

    def reportinfo(self):
        return "harness", None, f"harness: {self.name}"


class HarnessCases(pytest.Collector):
    """The node the case items hang from: node ids read `harness::tutorial/poly-fd-float64-cpu`."""

    def __init__(self, *, works: list[Item], errors, seed: int, **kwargs):
        super().__init__(**kwargs)
        self.works, self.errors, self.seed = works, errors, seed

    def collect(self):
        for err in self.errors:
            yield LoadError.from_parent(self, name=f"load[{err.case}]", message=err.message)
        for work in self.works:
            yield HarnessItem.from_parent(self, name=work.id, work=work, seed=self.seed)


def _share_the_cores() -> None:
    """Under pytest-xdist each worker gets its share of the cores for torch's intra-op
    threads (with every worker at full width they oversubscribe the machine: measured 2.6x
    slower with 2 workers on 2 cores) and, on a machine with several GPUs, one GPU of its
    own (worker gwN the N-th visible one). Only in sessions that run harness items."""
    import torch

    from harness import processes
    from harness.arguments import usable_cores

    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0") or 0)
    name = os.environ.get("PYTEST_XDIST_WORKER", "")
    if name and workers > 0:
        torch.set_num_threads(max(1, usable_cores() // workers))
        number = name.removeprefix("gw")
        if number.isdigit():
            processes.pin_gpu(int(number))


def selection_of(config: pytest.Config):
    """The harness.plan.Selection the options and ini values name (`harness check`'s)."""
    from harness import usage
    from harness.plan import Selection, device_available

    def given(option: str, ini: str | None = None) -> tuple[str, ...] | None:
        value = config.getoption(option) or (config.getini(ini) if ini else None)
        return tuple(value) if value else None

    devices = given("--harness-device")
    for device in devices or ():
        if device not in ("cpu", "cuda"):
            raise pytest.UsageError(f"harness: --harness-device {device!r}: cpu or cuda")
    try:
        usage.check_devices(devices, device_available, option="--harness-device")
    except usage.UsageError as exc:
        raise pytest.UsageError(f"harness: {exc}") from None
    return Selection(load=tuple(config.getoption("--harness-load")),
                     patterns=given("--harness-select", "harness_select") or (),
                     tags=given("--harness-tag", "harness_tags") or (),
                     checks=given("--harness-check", "harness_checks"),
                     opt_in=given("--harness-opt-in") or (),
                     dtypes=given("--harness-dtype"), devices=devices)


def _enabled(config: pytest.Config) -> bool:
    flag = config.getoption("--harness-cases")
    if flag is not None:
        return flag
    if not config.getini("harness_cases"):
        return False
    return config.args_source != pytest.Config.ArgsSource.ARGS


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    if not _enabled(config):
        return
    selection = selection_of(config)
    reg, cases = selection.build()
    try:
        works = selection.items(cases)
    except ValueError as exc:
        raise pytest.UsageError(f"harness: {exc}") from None
    seed = config.getoption("--harness-seed")
    for tag in sorted({t for c in cases for t in c.tags}):
        config.addinivalue_line("markers", f"{tag.replace('-', '_')}: harness case tag")
    if works:
        _share_the_cores()
    node = HarnessCases.from_parent(session, name="harness", nodeid="harness",
                                    works=works, errors=reg.errors, seed=seed)
    # Collected through the public hooks, so the terminal counts the items like any others.
    report = node.ihook.pytest_make_collect_report(collector=node)
    node.ihook.pytest_collectreport(report=report)
    items.extend(report.result)


@pytest.hookimpl(optionalhook=True)
def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    """pytest-benchmark's saved runs carry the GPU, driver, CUDA and cudnn versions, so its
    compare and storage features keep timings from different machines apart."""
    from harness.bench import machine_info as harness_machine_info

    machine_info["harness"] = harness_machine_info()
