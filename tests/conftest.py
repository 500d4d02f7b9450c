import pytest
import torch
import torch._dynamo  # noqa: F401

# Imported here, before any pytester run: pytester's in-process runs drop the modules they
# imported when they end, and importing torch._dynamo a second time registers its test
# operator library again, which torch refuses ("Only a single TORCH_LIBRARY ...") in every
# later test that reaches dynamo. Which test first imports it depends on the order, so
# without this the suite's outcome did too.


@pytest.fixture(autouse=True)
def _no_global_state_leaks():
    """Checks must not change global torch state; fail the test that does."""
    dtype, grad = torch.get_default_dtype(), torch.is_grad_enabled()
    yield
    assert torch.get_default_dtype() == dtype
    assert torch.is_grad_enabled() == grad


def pytest_configure(config):
    """A default run executes each pytest-benchmark workload once, untimed; timing happens
    with --benchmark-only (or --benchmark-enable)."""
    if not (config.getoption("benchmark_only", False)
            or config.getoption("benchmark_enable", False)):
        config.option.benchmark_disable = True
