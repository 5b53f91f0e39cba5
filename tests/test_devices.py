import os

import torch

from soften import devices


def test_auto_is_cpu_without_cuda_and_explicit_devices_pass_through():
    if not torch.cuda.is_available():
        assert devices.resolve_device("auto") == "cpu"
    assert devices.resolve_device("cpu") == "cpu"
    assert devices.resolve_device("cuda:3") == "cuda:3"


def test_each_claim_gets_a_gpu_no_one_else_holds(tmp_path):
    held_before = len(devices._held)
    try:
        assert devices._claim_gpu(2, tmp_path) == 0
        assert devices._claim_gpu(2, tmp_path) == 1
        assert devices._claim_gpu(2, tmp_path) is None  # both held
        os.close(devices._held.pop(held_before))  # the job on GPU 0 ends
        assert devices._claim_gpu(2, tmp_path) == 0
    finally:
        while len(devices._held) > held_before:
            os.close(devices._held.pop())
