"""nox sessions: tests (default), lint, docs, bench. Each installs torch==2.13.0 before the project
so pip never resolves torch to a multi-GB CUDA build. On a GPU machine, name the CUDA build
in HARNESS_TORCH, e.g.
`HARNESS_TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126" nox -s bench`
(the index for your CUDA version: https://pytorch.org/get-started/locally/)."""

import os
import shlex

import nox

nox.options.sessions = ["tests"]


def _install(session: nox.Session) -> None:
    session.install(*shlex.split(os.environ.get("HARNESS_TORCH", "torch==2.13.0")))
    session.install("-e", ".[dev]")


@nox.session
def tests(session: nox.Session) -> None:
    _install(session)
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff==0.17.6")  # pinned as in pyproject's dev extra: a new ruff adds rules
    session.run("ruff", "check", "harness", "cases", "tests", "noxfile.py")


@nox.session
def docs(session: nox.Session) -> None:
    """The documentation site from docs/ and the docstrings, into site/; warnings are errors
    (a broken link, a page left out of the nav, a reference that does not resolve)."""
    _install(session)
    session.run("mkdocs", "build", "--strict", *session.posargs, env={"NO_MKDOCS_2_WARNING": "1"})


@nox.session
def bench(session: nox.Session) -> None:
    """Backward-pass timing on CPU and CUDA into reports/bench.*, then the benchmarks: the
    harness against gradcheck (TinyModel, detection power, the default net's cost, and every
    OpInfo sample), and the timing agreement
    (reports/timing-agreement-<device>.md). On a GPU machine, install the CUDA torch you want
    in the session first."""
    _install(session)
    session.run("python", "-m", "harness", "bench", *session.posargs)
    session.run("python", "-m", "pytest", "tests/bench_checks.py", "tests/bench_power.py",
                "tests/bench_net_cost.py", "tests/bench_timing_agreement.py",
                "tests/bench_modules.py", "tests/bench_phases.py",
                "tests/bench_gradgradcheck_parity.py", "tests/bench_screen_power.py",
                "--benchmark-only", "-n",
                "0", "-s")
    session.run("python", "tests/bench_plugin.py")
    session.run("python", "tests/bench_first_call.py")
    session.run("python", "tests/bench_shards.py")
    session.run("python", "-m", "pytest", "tests/bench_opinfo.py", "tests/bench_html.py", "-n",
                "0", "-s")
