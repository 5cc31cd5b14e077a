"""Shared fixtures of the test suite."""

import pytest
import torch


@pytest.fixture
def float64():
    """Run the test with float64 as torch's default dtype (equivariance at 1e-9)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


@pytest.fixture(params=["cpu", "cuda"])
def device(request) -> torch.device:
    """Every device of the machine: the test runs on each, and on CUDA where there is one."""
    if request.param == "cuda" and not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    return torch.device(request.param)
