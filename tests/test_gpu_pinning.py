"""On a machine with several GPUs each worker (`harness check -n N`, pytest-xdist) sees one,
taken in turn from the visible ones; an outer CUDA_VISIBLE_DEVICES is shared out, not
overridden. Measured here without a GPU: the choice, and that it is made before CUDA starts."""

import os

import pytest
import torch

from harness import processes, pytest_plugin


@pytest.mark.parametrize("worker, count, visible, expected", [
    (0, 4, None, "0"), (5, 4, None, "1"), (1, 8, "2,5", "5"), (2, 4, " 1, 3 ,", "1"),
    (0, 1, None, None), (3, 0, None, None), (0, 4, "3", None),
])
def test_each_worker_takes_the_next_visible_gpu(worker, count, visible, expected):
    assert processes.pinned_gpu(worker, count, visible) == expected


@pytest.fixture
def four_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


def test_a_worker_is_pinned_before_cuda_starts(four_gpus, monkeypatch):
    assert processes.pin_gpu(6) == "2"
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "2"
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    assert processes.pin_gpu(1) is None  # too late: CUDA already chose
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0,1,2,3"


def test_an_xdist_worker_of_a_harness_session_gets_its_gpu_and_its_cores(four_gpus,
                                                                         monkeypatch):
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw3")
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "4")
    threads = torch.get_num_threads()
    try:
        pytest_plugin._share_the_cores()
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "3"
        assert torch.get_num_threads() == max(1, len(os.sched_getaffinity(0)) // 4)
    finally:
        torch.set_num_threads(threads)
