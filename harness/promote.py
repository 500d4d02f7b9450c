"""Run a function in float64 even where it closes over float32 tensors.

A loss written as `lambda w: ((x @ w - y) ** 2).sum()` with float32 `x` and `y` cannot take
float64 weights, so its references (finite differences, rounding noise) would have to run in
float32, too coarse to see one wrong element among 10^5 (a float32 finite difference along a
direction over every weight carries ~1e-3 of the derivative in rounding). Under
`float64_calls(fn)`, a torch function mode promotes every lower-precision floating tensor and
dtype argument to float64 as each torch call is made: above autograd, so the graph, its saved
tensors and its backward are float64 too.
"""

from __future__ import annotations

import functools

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_map

_WIDER = {torch.float32: torch.float64, torch.float16: torch.float64,
          torch.bfloat16: torch.float64, torch.complex64: torch.complex128,
          torch.complex32: torch.complex128}


def _widen(value):
    if isinstance(value, torch.Tensor) and value.dtype in _WIDER:
        return value.to(_WIDER[value.dtype])
    if isinstance(value, torch.dtype):
        return _WIDER.get(value, value)
    return value


def _widen_all(value):
    """`_widen` over tuples, lists and dicts, returning `value` itself where nothing needed
    widening (the common case: every call of a promoted function passes through here twice,
    and torch's general tree_map cost more than many of the calls it wrapped)."""
    if isinstance(value, (torch.Tensor, torch.dtype)):
        return _widen(value)
    if isinstance(value, (tuple, list)):
        items = [_widen_all(v) for v in value]
        if all(a is b for a, b in zip(items, value)):
            return value
        return type(value)(items) if type(value) in (tuple, list) else tree_map(_widen, value)
    if isinstance(value, dict):
        items = {k: _widen_all(v) for k, v in value.items()}
        return value if all(items[k] is v for k, v in value.items()) else items
    return value


class _Float64(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        return _widen_all(func(*_widen_all(args), **_widen_all(kwargs or {})))


def float64_calls(fn):
    """`fn` run under the promotion mode whenever one of its tensor arguments is float64 or
    complex128 (the reference inputs), and as it is otherwise (the dtype under test)."""

    @functools.wraps(fn)
    def wrapped(*args):
        if any(isinstance(a, torch.Tensor) and a.dtype in (torch.float64, torch.complex128)
               for a in args):
            with _Float64():
                return fn(*args)
        return fn(*args)

    return wrapped
