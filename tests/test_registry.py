"""Cases from entry points and files; broken plugins and clashes become error rows."""

import subprocess
import sys
import textwrap

import pytest

from harness import Case, Input, registry
from harness.source import Source, from_plugin

PLUGIN_CODE = '''
import torch
from harness import Case, Input

class BadSin(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.sin(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return -torch.cos(x) * g

def cases():
    return [
        Case(name="myplug/sin", fn=torch.sin, inputs=[Input((5,))], dtypes=(torch.float64,)),
        Case(name="myplug/bad-sin", fn=BadSin.apply, inputs=[Input((5,))],
             dtypes=(torch.float64,), twice_differentiable=False),
    ]
'''


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory):
    """A throwaway plugin distribution, built and pip-installed into a temporary folder."""
    root = tmp_path_factory.mktemp("plugin")
    src = root / "src"
    (src / "myplug").mkdir(parents=True)
    (src / "myplug" / "__init__.py").write_text(PLUGIN_CODE)
    (src / "pyproject.toml").write_text(textwrap.dedent('''
        [build-system]
        requires = ["setuptools"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "myplug"
        version = "0.1"
        [project.entry-points."harness.cases"]
        myplug = "myplug:cases"
        broken = "myplug_missing_module:CASES"
        [tool.setuptools]
        packages = ["myplug"]
    '''))
    site = root / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                    "--no-build-isolation", "--no-index", "--target", str(site), str(src)],
                   check=True, capture_output=True)
    return site


def run(args, site, cwd=None):
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_plugin_cases_in_harness_list(plugin_site):
    out = run(["-m", "harness", "list"], plugin_site)
    assert "myplug/sin" in out.stdout and "plugin myplug (myplug:cases)" in out.stdout
    assert "tutorial/poly" in out.stdout
    assert "plugin broken" in out.stdout and "No module named 'myplug_missing_module'" in out.stdout
    assert out.returncode == 1


def test_plugin_cases_in_harness_check(plugin_site, tmp_path):
    out = run(["-m", "harness", "check", "--cases", "myplug/*", "--report-dir", str(tmp_path)],
              plugin_site)
    assert out.returncode == 1
    assert "FAIL myplug/bad-sin fd float64 cpu: sign flipped" in out.stdout
    assert "myplug/sin" in (tmp_path / "correctness.csv").read_text()
    # the broken entry point cannot hold myplug/* cases: a warning, not an error row
    assert "harness: warning: plugin broken (myplug_missing_module:CASES) could not be " \
        "loaded" in out.stderr
    assert "could not be loaded" not in (tmp_path / "correctness.md").read_text()


def test_plugin_cases_in_pytest(plugin_site, tmp_path):
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nharness_cases = true\nharness_select = myplug/*\n"
        "harness_checks = analytic fd second-order\n")
    out = run(["-m", "pytest", "-q", "-p", "no:cacheprovider"], plugin_site, cwd=tmp_path)
    tail = out.stdout.strip().splitlines()[-1]
    # sin: analytic skip + fd + second-order pass; bad-sin: fd fails, analytic and
    # second-order skip; the broken entry point is a failing load item.
    assert "2 failed" in tail and "2 passed" in tail, out.stdout
    assert "myplug/bad-sin-fd-float64-cpu" in out.stdout
    assert "sign flipped" in out.stdout


def test_duplicate_names_become_an_error_row(tmp_path):
    for name in ("a.py", "b.py"):
        (tmp_path / name).write_text(
            "import torch\nfrom harness import Case, Input\n"
            "c = Case(name='dup/x', fn=torch.sin, inputs=[Input((2,))])\n")
    reg = registry.load([tmp_path], use_entry_points=False)
    assert [c.name for c in reg.cases] == ["dup/x"]
    (err,) = reg.errors
    assert "duplicate case name 'dup/x'" in err.message and "b.py" in err.message


def test_bad_files_become_error_rows(tmp_path):
    (tmp_path / "broken.py").write_text("raise RuntimeError('boom')\n")
    (tmp_path / "wrong.py").write_text("CASES = [1, 2]\n")
    reg = registry.load([tmp_path, tmp_path / "missing.py"], use_entry_points=False)
    messages = "\n".join(e.message for e in reg.errors)
    assert "broken.py failed to import: RuntimeError: boom" in messages
    assert "item 0 is int, not a harness.Case" in messages
    assert "missing.py: no such file or folder" in messages


def test_callable_producing_garbage_is_an_error():
    cases, errors = registry._take(from_plugin("x", "x:CASES"), lambda: 42)
    assert not cases and "expected an iterable of harness.Case" in errors[0].message
    cases, errors = registry._take(from_plugin("y", "y:CASES"), lambda: 1 / 0)
    assert "ZeroDivisionError" in errors[0].message


def test_source_is_recorded():
    cases, _ = registry._take(from_plugin("z", "z:CASES"),
                              [Case(name="z/a", fn=abs, inputs=[Input(())])])
    assert cases[0].source == Source("plugin", "z", "z:CASES")
    assert str(cases[0].source) == "plugin z (z:CASES)"


def test_a_source_given_as_text_is_refused_with_what_to_do():
    with pytest.raises(TypeError, match="source must be a harness.source.Source, got 'mine'; "
                       "leave it out"):
        Case(name="z/b", fn=abs, inputs=[Input(())], source="mine")
