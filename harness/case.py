"""Case and Input: what a gradient test is, as plain frozen data validated on construction.

A case keeps its function and its analytic gradient side by side. The harness draws inputs
from the Input specs (or calls the `inputs` callable), runs the checks, and reports records.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch

from harness.source import Source
from harness.tolerances import FLOAT8, TOLERANCES, Tolerance, with_user_tolerance

DEFAULT_DTYPES = (torch.float64, torch.float32)
DEFAULT_DEVICES = ("cpu", "cuda")


@dataclass(frozen=True)
class Input:
    """One input tensor: its shape and the domain its values are drawn from.

    `shape` holds ints or size names (declared in `Case.sizes`). Values are drawn uniformly
    from [low, high]; `positive=True` keeps them strictly above zero; values within `margin`
    of any value in `avoid` (kinks, poles) are never drawn. `requires_grad=False` marks data
    (targets, indices) that is passed to `fn` but not differentiated.

    Example: ``Input(("batch", 3), low=0.1, high=4.0, name="x")``
    """

    shape: tuple[int | str, ...] = ()
    low: float = -2.0
    high: float = 2.0
    positive: bool = False
    avoid: tuple[float, ...] = ()
    margin: float = 1e-2
    requires_grad: bool = True
    name: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.shape, (int, str)):
            object.__setattr__(self, "shape", (self.shape,))
        object.__setattr__(self, "shape", tuple(self.shape))
        object.__setattr__(self, "avoid", tuple(float(a) for a in self.avoid))
        for dim in self.shape:
            if isinstance(dim, bool) or not isinstance(dim, (int, str)):
                raise ValueError(f"Input.shape: dimension {dim!r} must be an int or a size name")
            if isinstance(dim, int) and dim < 0:
                raise ValueError(f"Input.shape: dimension {dim} is negative; sizes are >= 0")
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise ValueError(f"Input.low/high must be finite, got low={self.low}, high={self.high}")
        if self.low >= self.high:
            raise ValueError(
                f"Input.low ({self.low}) must be below Input.high ({self.high}): empty domain"
            )
        if self.positive and self.high <= 0:
            raise ValueError(f"Input.positive=True but Input.high={self.high} <= 0: empty domain")
        if self.margin < 0:
            raise ValueError(f"Input.margin must be >= 0, got {self.margin}")

    @property
    def draw_low(self) -> float:
        """The lowest value drawn: `low`, or just above zero when `positive`."""
        if self.positive and self.low <= 0:
            return self.margin * min(1.0, self.high)
        return self.low


InputsFn = Callable[[torch.Generator], Sequence[torch.Tensor]]


def custom_op_name(op) -> str | None:
    """The qualified name ("mylib::scaled_sin") of a torch.library custom op, an OpOverload
    or its packet; a name given as "ns::op" stays; None for anything else."""
    if isinstance(op, str):
        return op if "::" in op else None
    if isinstance(op, torch._library.custom_ops.CustomOpDef):
        return op._qualname
    if isinstance(op, torch._ops.OpOverload | torch._ops.OpOverloadPacket):
        name = op.name() if isinstance(op, torch._ops.OpOverload) else op._qualified_op_name
        return name.split(".")[0]
    return None


def library_custom_op(op) -> str | None:
    """The qualified name of a torch.library.custom_op (not an aten or TORCH_LIBRARY op),
    whose autograd torch implements as an old-style autograd.Function: no forward mode, no
    torch.func transforms of its backward."""
    name = custom_op_name(op)
    return name if name and name in torch._library.custom_ops.OPDEFS else None


def _check_source(case) -> None:
    if not isinstance(case.source, Source):
        raise TypeError(f"{type(case).__name__} {case.name!r}: source must be a "
                        f"harness.source.Source, got {case.source!r}; leave it out: the "
                        "registry records the plugin or file a case came from")


@dataclass(frozen=True)
class Case:
    """A gradient test case: a function, how to draw its inputs, and its analytic gradient.

    `fn(*inputs)` returns a tensor or a tuple of tensors. `inputs` is a sequence of `Input`
    specs, or a callable taking a `torch.Generator` and returning the input tensors (floating
    tensors are cast to each dtype run; those with requires_grad are checked, or all floating
    ones when none has it set).

    `grad` is the analytic gradient, evaluated in float64, returning one tensor per checked
    input (a bare tensor when only one input is checked):
      - scalar output: ``grad(*inputs)`` -- the gradient of fn;
      - tensor output(s): ``grad(*inputs, v)`` -- the vector-Jacobian product vᵀJ, where `v` is
        the cotangent (a tensor shaped like the output, or a tuple for tuple outputs).
    With `grad=None` finite differences are the only independent reference.

    `twice_differentiable`: True checks double backward and fails a backward that builds no
    graph; False skips it; None checks it, skips a backward marked @once_differentiable
    (torch raises on a double backward there) and fails one that silently builds no graph.
    `input_names` label the tensors of an `inputs` callable in reports (specs carry a name).
    `intermediates(*inputs)` returns (fn's output, {name: intermediate tensor}) for the
    retain_grad check; `intermediate_grad` gives their analytic gradients, called like `grad`.
    `grad_fn_chain` names the grad_fn nodes from the output down the first next_functions
    (e.g. SumBackward0, ..., AccumulateGrad). `expected_failures` maps a check to a phrase
    its diagnosis must contain: a deliberately wrong teaching case passes when it fails so.
    `checks` names the checks this case gets (default: all that apply), e.g. ("fd",) for an
    operator swept by the thousand where semantics checks would add nothing.
    `reference` is a reference implementation with fn's signature (usually the eager
    composition a fused or hand-written kernel replaces): the reference families hold fn's
    output, gradient, second order and forward mode to the reference's autograd in float64,
    in every dtype the case runs plus the device's float16/bfloat16. A float8 dtype in
    `dtypes` (a kernel that takes float8 inputs) runs in the reference family alone, and needs
    `reference`; a kernel that returns float8 is held, output by output, to that dtype.
    `module`: the nn.Module that fn calls with its parameters and buffers as the first
    inputs (check_gradients sets it): the module family bisects it to the submodule whose
    backward is wrong.
    `op`: the torch.library custom operator fn calls (a CustomOpDef, an OpOverload, or its
    qualified name "mylib::op"; set by itself when fn is one): the opcheck families check its
    registration (schema, fake kernel, autograd registration, AOT dispatch) at the arguments
    fn passes it.
    `rtol` / `atol` replace the tolerance table's for every dtype (merged over `tolerances`
    too), for a function approximate by design (an iterative solver, a lookup table); every
    row they decided says so, and the CSV's `tolerance` column carries them.
    `nondeterministic_tol` declares a backward allowed to differ run to run by that much: the
    determinism check measures the spread and reports it instead of failing.
    `timeout` (seconds) replaces the run's per-item time limit (--timeout) for this case's
    items, for a case known to be slow.
    `bench_sizes` lists named-size settings to time (default: each size at its largest);
    `bench_bytes(*inputs)` / `bench_flops(*inputs)` give what one backward pass moves or
    computes, for throughput columns.
    """

    name: str
    fn: Callable[..., torch.Tensor | tuple[torch.Tensor, ...]]
    inputs: Sequence[Input] | InputsFn
    grad: Callable[..., torch.Tensor | tuple[torch.Tensor, ...]] | None = None
    sizes: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    dtypes: tuple[torch.dtype, ...] = DEFAULT_DTYPES
    devices: tuple[str, ...] = DEFAULT_DEVICES
    tolerances: Mapping[torch.dtype, Tolerance] = field(default_factory=dict)
    rtol: float | None = None
    atol: float | None = None
    tags: tuple[str, ...] = ()
    twice_differentiable: bool | None = True
    input_names: tuple[str, ...] = ()
    intermediates: Callable[..., tuple] | None = None
    intermediate_grad: Callable[..., Mapping[str, torch.Tensor]] | None = None
    grad_fn_chain: tuple[str, ...] = ()
    bench_sizes: tuple[Mapping[str, int], ...] = ()
    bench_bytes: Callable[..., int] | None = None
    bench_flops: Callable[..., int] | None = None
    expected_failures: Mapping[str, str] = field(default_factory=dict)
    checks: tuple[str, ...] = ()
    nondeterministic_tol: float = 0.0
    reference: Callable[..., torch.Tensor | tuple[torch.Tensor, ...]] | None = None
    module: torch.nn.Module | None = None
    op: object = None
    fullgraph: bool = False
    """The compiled check compiles fn with fullgraph=True: a graph break fails the row."""
    baseline_ratio: float | None = None
    """With `reference`, below float32: fn's RMS error against the float64 reference may be
    at most this many times the reference's own, computed in the same dtype (flash-attention's
    rule, which uses 2; harness.numerics.baseline). None: in float8 the rule decides with 2
    (tolerances.BASELINE_RATIO); in bfloat16/float16 the rows report both errors,
    their ratio and the SQNR, and decide by the per-element allowance and the average alone.
    Not on by default there: a correct kernel written as a composition of bfloat16 ops
    measured 2.0-2.8x a torch reference that computes in float32 inside (F.layer_norm,
    F.cross_entropy) in 10 of 120 seeded runs."""
    baseline_float32: bool = False
    """With `reference`: the baseline rule in float32 rows too, against the reference computed
    in float32 (ratio `baseline_ratio`, or 2): for a float32 kernel that must be as accurate
    as the composition it replaces, beyond float32's per-element tolerance (rtol 3e-5)."""
    timeout: float | None = None
    description: str = ""
    source: Source = Source()

    def _merge_user_tolerance(self) -> None:
        """`rtol`/`atol` merged over every dtype's tolerance (the table's, or the case's own
        `tolerances`), so every family that compares reads them."""
        for name in ("rtol", "atol"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float))
                                          and math.isfinite(value) and value >= 0):
                raise ValueError(f"Case {self.name!r}: {name} must be a finite number >= 0, "
                                 f"got {value!r}")
        if self.rtol is None and self.atol is None:
            return
        merged = {**TOLERANCES, **self.tolerances}
        object.__setattr__(self, "tolerances", {
            dtype: with_user_tolerance(t, self.rtol, self.atol) for dtype, t in merged.items()})

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"Case.name must be a non-empty string, got {self.name!r}")
        _check_source(self)
        if self.op is None and custom_op_name(self.fn):
            object.__setattr__(self, "op", self.fn)
        if not callable(self.fn):
            raise ValueError(f"Case {self.name!r}: fn must be callable, got {type(self.fn)}")
        if self.grad is not None and not callable(self.grad):
            raise ValueError(f"Case {self.name!r}: grad must be callable or None")
        if self.reference is not None and not callable(self.reference):
            raise ValueError(f"Case {self.name!r}: reference must be callable or None, got "
                             f"{type(self.reference).__name__}")
        if self.baseline_ratio is not None and not self.baseline_ratio >= 1:
            raise ValueError(f"Case {self.name!r}: baseline_ratio must be at least 1 (fn no "
                             f"worse than the reference's own rounding), got "
                             f"{self.baseline_ratio!r}")
        if not callable(self.inputs):
            object.__setattr__(self, "inputs", tuple(self.inputs))
            for i, spec in enumerate(self.inputs):
                if not isinstance(spec, Input):
                    raise ValueError(
                        f"Case {self.name!r}: inputs[{i}] is {type(spec).__name__}, expected "
                        "harness.Input (or pass a callable taking a torch.Generator)"
                    )
        self._merge_user_tolerance()
        object.__setattr__(self, "dtypes", tuple(self.dtypes))
        object.__setattr__(self, "devices", tuple(self.devices))
        object.__setattr__(self, "tags", tuple(self.tags))
        object.__setattr__(self, "input_names", tuple(self.input_names))
        object.__setattr__(self, "checks", tuple(self.checks))
        for dtype in self.dtypes:
            if not isinstance(dtype, torch.dtype) or not (dtype.is_floating_point
                                                         or dtype.is_complex):
                raise ValueError(f"Case {self.name!r}: dtypes must be floating or complex "
                                 f"torch dtypes, got {dtype!r}")
            if dtype in FLOAT8 and self.reference is None:
                raise ValueError(f"Case {self.name!r}: {dtype} runs in the reference family "
                                 "only (a float8 kernel is held to its reference): give the "
                                 "case a reference")
        for name, bounds in self.sizes.items():
            lo, hi = bounds
            if lo < 0 or lo > hi:
                raise ValueError(
                    f"Case {self.name!r}: sizes[{name!r}]=({lo}, {hi}) needs 0 <= low <= high"
                )
        for spec in self.input_specs:
            for dim in spec.shape:
                if isinstance(dim, str) and dim not in self.sizes:
                    raise ValueError(
                        f"Case {self.name!r}: size name {dim!r} is used in an Input shape "
                        f"but not declared in Case.sizes (declared: {sorted(self.sizes)})"
                    )

        if self.timeout is not None and not self.timeout > 0:
            raise ValueError(f"Case {self.name!r}: timeout must be > 0 seconds, got "
                             f"{self.timeout}")
        object.__setattr__(self, "bench_sizes", tuple(dict(s) for s in self.bench_sizes))
        for setting in self.bench_sizes:
            unknown = set(setting) - set(self.sizes)
            if unknown:
                raise ValueError(
                    f"Case {self.name!r}: bench_sizes names {sorted(unknown)} are not declared "
                    f"in Case.sizes (declared: {sorted(self.sizes)})"
                )

    @property
    def input_specs(self) -> tuple[Input, ...]:
        """The Input specs, or () when inputs come from a callable."""
        return () if callable(self.inputs) else tuple(self.inputs)


@dataclass(frozen=True)
class TrainingCase:
    """A training loop's step, checked on a tiny model, where users' real bugs live.

    `model()` builds the model (its parameters are cast to each dtype run); `batch(gen)`
    returns the batch as a tuple of tensors with the sample dimension first; `loss(model,
    batch)` is the batch-mean loss; `step(model, optimizer, batch)` is the loop body under
    test (default: zero_grad, loss.backward, optimizer.step). The harness hands `step` a
    torch.optim.SGD over the model's parameters.
    """

    name: str
    model: Callable[[], torch.nn.Module]
    batch: Callable[[torch.Generator], tuple[torch.Tensor, ...]]
    loss: Callable[..., torch.Tensor]
    step: Callable[..., object] | None = None
    lr: float = 0.1
    dtypes: tuple[torch.dtype, ...] = DEFAULT_DTYPES
    devices: tuple[str, ...] = DEFAULT_DEVICES
    tags: tuple[str, ...] = ()
    expected_failures: Mapping[str, str] = field(default_factory=dict)
    description: str = ""
    source: Source = Source()

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"TrainingCase.name must be a non-empty string, got {self.name!r}")
        _check_source(self)
        for attr in ("model", "batch", "loss"):
            if not callable(getattr(self, attr)):
                raise ValueError(f"TrainingCase {self.name!r}: {attr} must be callable")
        if self.step is not None and not callable(self.step):
            raise ValueError(f"TrainingCase {self.name!r}: step must be callable or None")
        if not self.lr > 0:
            raise ValueError(f"TrainingCase {self.name!r}: lr must be > 0, got {self.lr}")
        object.__setattr__(self, "dtypes", tuple(self.dtypes))
        object.__setattr__(self, "devices", tuple(self.devices))
        object.__setattr__(self, "tags", tuple(self.tags))

    def run_step(self, model: torch.nn.Module, optimizer, batch) -> None:
        """The user's step, or the textbook one."""
        if self.step is not None:
            self.step(model, optimizer, batch)
            return
        optimizer.zero_grad()
        self.loss(model, batch).backward()
        optimizer.step()
