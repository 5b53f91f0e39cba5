"""The GPU path's speed options (soften.training.speed) run on CPU: bf16 autocast,
channels_last, torch.compile and the SGD kernels each train a digits run whose
result is finite and close to plain fp32, and evaluation stays fp32 throughout."""

from __future__ import annotations

import math

import pytest
import torch

import soften.training.loop as loop
from soften.io import load_torch
from soften.training.speed import autocast_dtype, optimizer_options, prepare_model

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def test_autocast_dtype_by_device_and_setting(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))  # an A100
    assert autocast_dtype(CPU, "auto") is None            # auto: bf16 on CUDA (sm_80+) only
    assert autocast_dtype(CUDA, "auto") is torch.bfloat16
    assert autocast_dtype(CPU, "bf16") is torch.bfloat16  # asked for: honoured on CPU too
    assert autocast_dtype(CPU, "off") is None and autocast_dtype(CUDA, "off") is None
    with pytest.raises(ValueError, match="fp16 is refused"):  # no loss scaling in the step
        autocast_dtype(CUDA, "fp16")


def test_optimizer_kernel_choice():
    assert optimizer_options(CUDA, {"optimizer_kernel": "auto"}) == {"fused": True}
    assert optimizer_options(CPU, {"optimizer_kernel": "auto"}) == {}   # PyTorch's default: bit-identical to before
    assert optimizer_options(CPU, {"optimizer_kernel": "foreach"}) == {"foreach": True}
    assert optimizer_options(CPU, {}) == {}
    with pytest.raises(ValueError, match="optimizer_kernel"):
        optimizer_options(CPU, {"optimizer_kernel": "fast"})


def _train(spec, out, monkeypatch=None):
    """Train; with ``monkeypatch``, also record whether autocast was on at each monitoring call."""
    seen = []
    if monkeypatch is not None:
        real = loop.evaluate_split

        def spy(*args, **kwargs):
            seen.append(torch.is_autocast_enabled("cpu"))
            return real(*args, **kwargs)

        monkeypatch.setattr(loop, "evaluate_split", spy)
    history = loop.train(spec, out, progress=False)
    return history, seen


def _spec(tiny_spec, **training):
    return tiny_spec(epochs=1, lr_milestones=[], **training)


def test_bf16_autocast_trains_on_cpu_close_to_fp32_and_evaluates_in_fp32(tiny_spec, tmp_path, monkeypatch):
    ref, _ = _train(_spec(tiny_spec, amp="off"), tmp_path / "fp32")
    bf16, autocast_seen = _train(_spec(tiny_spec, amp="bf16"), tmp_path / "bf16", monkeypatch)
    a, b = ref[0]["train_loss"], bf16[0]["train_loss"]
    assert math.isfinite(b)
    assert a != b                       # the option took effect: bf16 rounding changes the loss
    assert abs(a - b) / a < 0.05        # ... but only by rounding (bf16 keeps ~3 significant digits)
    # Monitoring ran three times (val, test, train) and never under autocast.
    assert autocast_seen == [False, False, False]
    final = load_torch(tmp_path / "bf16" / "final.pt")["model"]
    assert all(v.dtype == torch.float32 for k, v in final.items() if v.is_floating_point())


def test_channels_last_trains_close_to_fp32(tiny_spec, tmp_path):
    ref, _ = _train(_spec(tiny_spec), tmp_path / "ref")
    cl, _ = _train(_spec(tiny_spec, channels_last=True), tmp_path / "cl")
    assert cl[0]["train_loss"] == pytest.approx(ref[0]["train_loss"], rel=1e-4)
    weights = load_torch(tmp_path / "cl" / "last.pt")["model"]
    convs = [v for v in weights.values() if v.dim() == 4]
    assert convs and all(v.is_contiguous(memory_format=torch.channels_last) for v in convs)


@pytest.mark.parametrize("kernel", ["foreach", "fused"])
def test_sgd_kernels_agree_with_the_per_parameter_loop(tiny_spec, tmp_path, kernel):
    _train(_spec(tiny_spec, optimizer_kernel="loop"), tmp_path / "loop")
    _train(_spec(tiny_spec, optimizer_kernel=kernel), tmp_path / kernel)
    a = load_torch(tmp_path / "loop" / "last.pt")["model"]
    state = load_torch(tmp_path / kernel / "last.pt")
    assert state["optimizer"]["param_groups"][0][kernel] is True  # the kernel really was used
    b = state["model"]
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5, msg=k)


def test_default_cpu_optimizer_is_bit_identical_to_the_loop(tiny_spec, tmp_path):
    _train(_spec(tiny_spec), tmp_path / "auto")
    _train(_spec(tiny_spec, optimizer_kernel="loop"), tmp_path / "loop")
    a = load_torch(tmp_path / "auto" / "last.pt")["model"]
    b = load_torch(tmp_path / "loop" / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("method", ["pgd-at+sglr", "pgd-at+adr+awp"])
def test_compiled_model_traces_the_whole_training_path(tiny_spec, tmp_path, method):
    """aot_eager: torch.compile's graph capture (Dynamo + AOTAutograd) without code generation,
    through the attack, BN-preserving clean forwards, EMA copies and AWP's weight moves."""
    spec = dict(_spec(tiny_spec), method=method)
    ref, _ = _train(spec, tmp_path / "eager")
    spec["training"] = dict(spec["training"], compile="aot_eager")
    compiled, _ = _train(spec, tmp_path / "compiled")
    assert math.isfinite(compiled[0]["train_loss"])
    assert compiled[0]["train_loss"] == pytest.approx(ref[0]["train_loss"], rel=1e-3)
    state = load_torch(tmp_path / "compiled" / "final.pt")["model"]
    assert set(state) == set(load_torch(tmp_path / "eager" / "final.pt")["model"])  # no _orig_mod. prefixes


@pytest.mark.slow
def test_inductor_compiles_one_pgd_at_step_of_the_digits_cnn():
    """The default backend generates and runs C++ code for one training step (tens of seconds)."""
    from soften.labels import Batch, Setup, build_refiner
    from soften.models import build_model
    from soften.training.objectives import build_objective

    def step(compile_):
        torch.manual_seed(0)
        model = prepare_model(build_model("cnn", num_classes=10, in_channels=1, mean=[0.5], std=[0.25]),
                              {"compile": compile_})
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        objective = build_objective("pgd-at", {}, {"eps": 0.1, "alpha": 0.05, "steps": 2}, True)
        refiner = build_refiner("hard", {}, Setup(num_samples=32, num_classes=10, model=model, device=CPU))
        x, y = torch.rand(32, 1, 8, 8), torch.randint(0, 10, (32,))
        batch = Batch(model=model, index=torch.arange(32), x=x, y=y, epoch=1)
        loss, _, _ = loop.train_step(batch, objective=objective, refiner=refiner, extras=[], optimizer=opt,
                                     autocast=loop.autocast_context(CPU, "off"))
        return loss.item(), [p.detach().clone() for p in model.parameters()]

    eager_loss, eager_w = step(False)
    loss, w = step(True)
    assert math.isfinite(loss) and loss == pytest.approx(eager_loss, rel=1e-4)
    for a, b in zip(w, eager_w):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("arch", ["cnn", "preactresnet18"])
def test_fast_extra_forward_and_ema_are_bit_identical_to_the_plain_computation(arch):
    """SGLR's clean forward (clean_bn 'batch') and the EMA teacher's update take faster paths;
    their results must equal the straightforward computation exactly."""
    import copy

    from soften.attacks import model_mode
    from soften.models import build_model
    from soften.models.averaging import EMA
    from soften.models.bn import clean_forward

    torch.manual_seed(0)
    model = build_model(arch, num_classes=10, in_channels=3, mean=[0.5] * 3, std=[0.25] * 3).train()
    x = torch.rand(4, 3, 16, 16)
    model(x)  # running statistics away from their initial values
    before = {k: v.clone() for k, v in model.state_dict().items()}
    # Reference: a train-mode forward on a deep copy (batch statistics; the original is untouched).
    with torch.no_grad():
        expected = copy.deepcopy(model)(x).float()
    assert torch.equal(clean_forward(model, x, "batch"), expected)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # running stats untouched

    ema, reference = EMA(model, 0.9), copy.deepcopy(model).eval()
    for _ in range(3):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.01 * torch.randn_like(p))
        model(x)
        ema.update(model)
        with torch.no_grad():  # decay * avg + (1 - decay) * new, tensor by tensor; integers copied
            for (name, avg), new in zip(reference.state_dict().items(), model.state_dict().values()):
                avg.lerp_(new, 0.1) if avg.is_floating_point() else avg.copy_(new)
    for (name, a), b in zip(ema.module.state_dict().items(), reference.state_dict().values()):
        assert torch.equal(a, b), name
