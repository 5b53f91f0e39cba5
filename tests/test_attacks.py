import pytest
import torch
from torch import nn

from soften.attacks import model_mode, pgd


class Linear2(nn.Module):
    """logits = [0, w.x + b]: class 1 iff w.x + b > 0."""

    def __init__(self, w, b=0.0):
        super().__init__()
        self.w = nn.Parameter(torch.as_tensor(w, dtype=torch.float32))
        self.b = b

    def forward(self, x):
        z = x.flatten(1) @ self.w + self.b
        return torch.stack([torch.zeros_like(z), z], 1)


def test_known_answer_on_a_linear_model():
    # For a linear logit the CE-maximising L-inf perturbation of a class-1 input
    # is -eps * sign(w), clipped to [0, 1]: one step with alpha >= eps reaches it.
    w = torch.tensor([1.0, -2.0, 0.5, -0.25])
    model = Linear2(w)
    x = torch.tensor([[0.5, 0.5, 0.02, 0.99]])
    y = torch.tensor([1])
    x_adv = pgd(model, x, y, eps=0.1, alpha=0.1, steps=1, random_start=False)
    expected = torch.tensor([[0.4, 0.6, 0.0, 1.0]])
    torch.testing.assert_close(x_adv, expected, rtol=0, atol=1e-7)
    # More steps cannot move further: the ball's corner is the optimum.
    x_more = pgd(model, x, y, eps=0.1, alpha=0.03, steps=10, random_start=False)
    torch.testing.assert_close(x_more, expected, rtol=0, atol=1e-6)


def test_soft_one_hot_targets_match_index_targets():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    x = torch.rand(8, 1, 4, 4)
    y = torch.randint(0, 3, (8,))
    a = pgd(model, x, y, eps=0.1, alpha=0.02, steps=5, random_start=False)
    b = pgd(model, x, nn.functional.one_hot(y, 3).float(), eps=0.1, alpha=0.02, steps=5, random_start=False)
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("random_start", [True, False])
def test_stays_in_eps_ball_and_unit_box(random_start):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 10))
    x = torch.rand(32, 3, 8, 8)
    x[:4] = 0.0
    x[4:8] = 1.0
    y = torch.randint(0, 10, (32,))
    eps = 8 / 255
    x_adv = pgd(model, x, y, eps=eps, alpha=2 / 255, steps=7, random_start=random_start)
    assert (x_adv - x).abs().max() <= eps + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1


def test_pgd_leaves_parameter_gradients_and_mode_alone():
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3), nn.BatchNorm1d(3))
    model.train()
    pgd(model, torch.rand(4, 1, 4, 4), torch.tensor([0, 1, 2, 0]), eps=0.1, alpha=0.05, steps=2)
    assert all(p.grad is None for p in model.parameters())
    assert model.training


def test_model_mode_sets_and_restores_every_submodule():
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2), nn.Dropout())
    model.train()
    model[2].eval()  # a mixed state must come back exactly
    with model_mode(model, train=False):
        assert not any(m.training for m in model.modules())
    assert [m.training for m in model.modules()] == [True, True, True, False]


def test_pgd_lowers_accuracy_of_a_trained_model(digits_npz):
    from soften.data import load_dataset_npz
    from soften.models import build_model

    torch.manual_seed(0)
    a = load_dataset_npz(digits_npz)
    x = torch.from_numpy(a["x_train"]).permute(0, 3, 1, 2).float() / 255
    y = torch.from_numpy(a["y_train"])
    model = build_model("cnn", num_classes=10, in_channels=1, mean=a["mean"], std=a["std"])
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(8):
        for i in range(0, len(y), 64):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[i:i + 64]), y[i:i + 64]).backward()
            opt.step()
    model.eval()
    xt = torch.from_numpy(a["x_test"]).permute(0, 3, 1, 2).float() / 255
    yt = torch.from_numpy(a["y_test"])
    clean = (model(xt).argmax(1) == yt).float().mean().item()
    x_adv = pgd(model, xt, yt, eps=0.1, alpha=0.025, steps=10)
    robust = (model(x_adv).argmax(1) == yt).float().mean().item()
    assert clean > 0.85
    assert robust < clean - 0.3
