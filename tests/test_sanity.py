"""Gradient-masking sanity checks pass on a trained model and fail on a masked one."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from _eval_fixtures import one_thread  # noqa: F401 (autouse)
from soften.data import DeviceData
from soften.evaluation.sanity import sanity_report


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    x = np.rint(d.images * (255 / 16)).astype(np.uint8)[..., None]
    return x, d.target.astype(np.int64)


@pytest.fixture(scope="module")
def trained(digits):
    """A softmax-regression classifier on sklearn digits (full-batch Adam, ~1 s)."""
    x, y = digits
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    xt, yt = torch.tensor(x[:1500]).float().div(255).permute(0, 3, 1, 2), torch.tensor(y[:1500])
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(150):
        opt.zero_grad()
        F.cross_entropy(model(xt), yt).backward()
        opt.step()
    return model.eval()


class Quantised(torch.nn.Module):
    """Gradient masking by construction: inputs are rounded to 3 levels, so
    the input gradient is zero everywhere and PGD cannot move."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(torch.round(x * 2) / 2)


FAST = {"eps_multipliers": [1, 4], "eps_steps": 20, "steps": [5, 10, 20, 40]}


def test_trained_model_passes(digits, trained):
    x, y = digits
    test = DeviceData.from_numpy(x[1500:1600], y[1500:1600], torch.device("cpu"))
    report = sanity_report(trained, test, eps=0.1, batch_size=100, settings=FAST)
    assert report["clean_accuracy"] > 0.85
    assert report["eps_sweep"][-1]["eps"] == 1.0 and report["eps_sweep"][-1]["accuracy"] == 0.0
    assert report["passed"], report["checks"]


def test_masked_model_fails_unbounded_check(digits, trained):
    x, y = digits
    test = DeviceData.from_numpy(x[1500:1600], y[1500:1600], torch.device("cpu"))
    report = sanity_report(Quantised(trained).eval(), test, eps=0.1, batch_size=100, settings=FAST)
    assert report["clean_accuracy"] > 0.5
    assert not report["checks"]["unbounded_eps_reaches_zero"]["passed"]
    assert not report["passed"]
