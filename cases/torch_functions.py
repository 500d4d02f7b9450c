"""torch's own corpora of custom autograd Functions and custom ops as cases.

`torch.testing._internal.autograd_function_db` (14 Functions: numpy-backed, mark_dirty,
generate_vmap_rule, save_for_forward, default arguments, deliberately wrong gradients) and
`custom_op_db` (torch.library custom ops) are OpInfos like op_db's; the OpInfo converter
(gradharness_cases.opinfo) turns each sample into a case named `torch-functions/...`, tagged
`torch-functions`. They run in the main job (`harness check`), and where asked for by name
or tag; a run that selects other cases does not import them.

torch's own suite runs these through functorch's transforms and compares the transforms with
each other, never with finite differences, so wrong gradients in them go unseen there. Each one
the harness finds wrong is declared below as an expected failure: the phrase its diagnosis
must contain, and why (torch's own words where its source gives them; otherwise what the
source does, read here). A fix upstream turns the row into an xpass, which fails the run.
Importing the corpora costs ~1.5 s (torch.testing's OpInfo machinery and torch._dynamo,
which a worker's first forward-mode or custom-op call imports anyway).
"""

from __future__ import annotations

from dataclasses import replace

from gradharness_cases.opinfo import opinfo_cases
from harness import OptInCases

PREFIX = "torch-functions"
TAGS = ("torch-functions",)

EXPECTED: dict[str, tuple[dict[str, str], str]] = {
    "ScaleGradGenVmapAutogradFunction": (
        {"fd": "actual = 3.14 x expected"},
        "torch's own: its backward and jvp multiply by ScaleGradGenVmap.scale = 3.14 on "
        "purpose"),
    "ZeroGradientsGenVmapAutogradFunction": (
        {"fd": "backward returns a gradient of shape (3, 4, 4) for input"},
        "torch's own: \"Intentionally returning torch.zeros\", \"Intentionally too-large "
        "gradient\" (zeros of shape (3, 4, *x.shape), which autograd sums down)"),
    "CubeGenVmapAutogradFunction": (
        {"fd": "autograd vs finite differences",
         "second-order": "the first-order gradient of input is wrong too",
         "forward-ad": "the backward is wrong (forward mode agrees with finite differences)",
         "undefined-grad": "input still gets a gradient"},
        "found here: its backward adds 6 * dinput where NumpyCube's adds 6 * grad_saved * "
        "input, so the second output's gradient is wrong and present when none is given; its "
        "jvp is right"),
    "NumpyCubeNotComposableAutogradFunction": (
        {"fd": "backward ignores its incoming gradient (grad_output)",
         "second-order": "marked @once_differentiable",
         "undefined-grad": "input still gets a gradient"},
        "torch's own: \"Not composable autograd.Function\" (@once_differentiable, numpy); "
        "found here: its backward returns 3 * x ** 2 without multiplying by grad_output"),
    "NumpySortAutogradFunction": (
        {"fd": "the right values at the wrong positions"},
        "found here: its forward returns x unsorted (torch.tensor(x) of the input, not of the "
        "sorted values) while its backward permutes the gradient back by the inverse sort"),
}


def _declared(case):
    """The case with its expected failures and their reasons, where EXPECTED names its op."""
    op = case.name.split("/")[1]
    if op not in EXPECTED:
        return case
    phrases, why = EXPECTED[op]
    return replace(case, expected_failures={c: p for c, p in phrases.items() if c in case.checks},
                   description=f"{case.description}; expected to fail: {why}")


def torch_function_cases():
    """Every sample of both corpora with autograd, as cases (the deliberately or accidentally
    wrong ones declared as expected failures)."""
    from torch.testing._internal.autograd_function_db import autograd_function_db
    from torch.testing._internal.custom_op_db import custom_op_db

    cases = opinfo_cases(ops=[*autograd_function_db, *custom_op_db], prefix=PREFIX, tags=TAGS)
    return [_declared(case) for case in cases]


TORCH_FUNCTIONS = OptInCases(
    prefix=PREFIX, load=torch_function_cases, tags=TAGS, with_everything=True,
    description="torch's autograd_function_db and custom_op_db (needs expecttest; ~1.5 s to "
                "import); in every run that names no case or tag")
