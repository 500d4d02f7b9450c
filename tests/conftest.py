import pytest
import torch


@pytest.fixture(autouse=True)
def _no_global_state_leaks():
    """Checks must not change global torch state; fail the test that does."""
    dtype, grad = torch.get_default_dtype(), torch.is_grad_enabled()
    yield
    assert torch.get_default_dtype() == dtype
    assert torch.is_grad_enabled() == grad
