"""What `pip install gradharness` puts on the path: the harness and its built-in cases under
the project's own names, never a top-level `cases` that would shadow a user project's."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory) -> list[str]:
    """The file names inside a wheel built from a copy of the project (the build writes its
    own build/ folder, which stays out of the checkout)."""
    pytest.importorskip("setuptools", reason="the wheel is built without build isolation")
    tree = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tree / name)
    for name in ("harness", "cases"):
        shutil.copytree(ROOT / name, tree / name, ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--no-build-isolation", str(tree), "-w", str(out)],
                   check=True, capture_output=True, text=True)
    (wheel,) = out.glob("gradharness-*.whl")
    return zipfile.ZipFile(wheel).namelist()


def test_the_wheel_installs_no_top_level_cases_package(wheel_names):
    top = {name.split("/")[0] for name in wheel_names}
    assert "cases" not in top
    assert {"harness", "gradharness_cases"} <= top


def test_every_package_of_the_checkout_is_in_the_wheel(wheel_names):
    """The package list in pyproject.toml is written out (the cases folder is renamed on
    install): a new subpackage left off it would install without its modules."""
    expected = set()
    for init in [*ROOT.glob("harness/**/__init__.py"), ROOT / "cases" / "__init__.py"]:
        folder = init.parent.relative_to(ROOT).as_posix()
        installed = "gradharness_cases" if folder == "cases" else folder
        expected.update(f"{installed}/{module.name}" for module in init.parent.glob("*.py"))
    assert expected <= set(wheel_names), sorted(expected - set(wheel_names))


def test_the_built_in_cases_register_under_the_project_name():
    from importlib.metadata import entry_points

    values = {e.name: e.value for e in entry_points(group="harness.cases")}
    assert values["builtin"] == "gradharness_cases:all_cases"
    assert values["opinfo"] == "gradharness_cases.opinfo:OPINFO"
