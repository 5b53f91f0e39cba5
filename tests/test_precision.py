"""Training numerics: every method component acts under bf16 autocast, and the speed
options (channels_last, torch.compile, the foreach/fused SGD kernels) change nothing
beyond floating-point summation order.

Each test runs on CPU and, when a CUDA device is present, on it too (``make gpu-check``
runs this file there). On CUDA, TF32 is switched off for the fp32 references, so that
"fp32" means fp32 and the tolerances below are float tolerances, not TF32's.

The references are independent of the option under test: the plain eager fp32 step
(soften's default path with every option off), run side by side from the same seed.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import soften.training.loop as loop
from soften.labels import Batch
from soften.models import build_model
from soften.models.checkpoint import model_checkpoint
from soften.io import save_torch
from soften.training.speed import autocast_context

REPO = Path(__file__).resolve().parents[1]
DEVICES = ["cpu"] + (["cuda:0"] if torch.cuda.is_available() else [])
BATCH = 64


@pytest.fixture(autouse=True)
def strict_fp32():
    """fp32 on CUDA means fp32 here (cuDNN's default is TF32 on Ampere and newer)."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def _teacher(tmp_path, spec) -> list[dict]:
    """A kd-at teacher: a differently seeded digits CNN saved as a best.pt."""
    torch.manual_seed(123)
    model = build_model("cnn", num_classes=10, in_channels=1, mean=[0.5], std=[0.25])
    path = tmp_path / "teacher.pt"
    save_torch(model_checkpoint(model.state_dict(), spec=spec, model_args={"arch": "cnn", "num_classes": 10,
                                                                          "in_channels": 1}, epoch=1, metrics={}), path)
    return [{"method": "pgd-at", "weight": 0.6, "checkpoint": str(path)}]


def steps(tiny_spec, tmp_path, device, method, amp="off", *, n=2, params=None, **training):
    """``n`` optimizer steps of ``method`` on the same ``BATCH`` digits images (step k in
    epoch k, each epoch ended as the loop ends it: SWA averages then). Returns the
    losses and the evaluated model's floating-point state (weights and BN statistics)
    as one flat fp32 vector on CPU."""
    spec = tiny_spec(method, amp=amp, **training)
    spec["device"] = device
    spec["method_params"] = params or {}
    if method.startswith("kd-"):
        spec["teachers"] = _teacher(tmp_path, spec)
    run = loop.set_up(spec, tmp_path / "unused")
    torch.manual_seed(1)
    index = torch.arange(BATCH, device=run.device)
    x, y = run.train_data.batch(index)
    losses = []
    for k in range(1, n + 1):
        batch = Batch(model=run.model, index=index, x=x, y=y, epoch=k, iteration=k - 1, total_iterations=10)
        loss, _, _ = loop.train_step(batch, objective=run.objective, refiner=run.refiner, extras=run.extras,
                                     optimizer=run.optimizer, autocast=autocast_context(run.device, amp))
        losses.append(loss.item())
        loop.end_epoch(run, k)
    state = run.eval_model().state_dict()
    flat = torch.cat([v.detach().float().reshape(-1).cpu() for v in state.values() if v.is_floating_point()])
    return losses, flat


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


# ---------------------------------------------------------------- components under bf16

#: name -> (X, X + component, method params, what the component changes). X + component
#: differs from X only by the component; its effect is read where it acts: the training
#: loss (AWP: the loss at the perturbed weights; refiners: the target; TRADES: the KL
#: term) or the evaluated weights (WA/SWA: the average is what is evaluated and saved).
COMPONENTS = {
    "awp (pgd-at)": ("pgd-at", "pgd-at+awp", {}, "loss"),
    "awp (trades)": ("trades", "trades+awp", {}, "loss"),
    "wa": ("pgd-at", "pgd-at+wa", {"wa": {"decay": 0.5}}, "weights"),
    "swa": ("pgd-at", "pgd-at+swa", {"swa": {"start_epoch": 1}}, "weights"),
    "ls": ("pgd-at", "pgd-at+ls", {}, "loss"),
    "te": ("pgd-at", "pgd-at+te", {"te": {"start_epoch": 1, "ramp_end_epoch": 1}}, "loss"),
    "sglr": ("pgd-at", "pgd-at+sglr", {}, "loss"),
    "sgls": ("pgd-at", "pgd-at+sgls", {"sgls": {"start_epoch": 1}}, "loss"),
    "adr": ("pgd-at", "pgd-at+adr", {"adr": {"ema_decay": 0.5}}, "loss"),
    "kd-at": ("pgd-at", "kd-at", {}, "loss"),
    "trades kl": ("trades", "trades", {}, "loss"),   # X: beta 0 (no KL term); X + c: the default beta 6
}
#: The component's effect under bf16 (X + c minus X) agrees with its fp32 effect to this
#: fraction of the fp32 effect. A component that does nothing under bf16 is off by 1.
#: Measured on CPU (digits CNN, one step): at most 0.034 (TRADES' KL term) on the loss,
#: 0.008 on WA/SWA's weights.
EFFECT_TOLERANCE = 0.2
#: A bf16 step agrees with the fp32 step: its weight update within this fraction of the
#: fp32 update (measured: at most 0.008), its loss within this relative difference
#: (measured: at most 3e-4). bf16 keeps an 8-bit mantissa (0.4% per rounding).
UPDATE_TOLERANCE = 0.05
LOSS_TOLERANCE = 0.01


def _component_runs(tiny_spec, tmp_path, device, name, amp):
    base, with_component, params, _ = COMPONENTS[name]
    base_params = {"trades": {"beta": 0.0}} if name == "trades kl" else params
    return (steps(tiny_spec, tmp_path / f"{amp}-x", device, base, amp, n=1, params=base_params),
            steps(tiny_spec, tmp_path / f"{amp}-xc", device, with_component, amp, n=1, params=params))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", list(COMPONENTS))
def test_every_component_acts_under_bf16_as_in_fp32(tiny_spec, tmp_path, device, name):
    (lx32, x32), (lc32, xc32) = _component_runs(tiny_spec, tmp_path, device, name, "off")
    (lx16, x16), (lc16, xc16) = _component_runs(tiny_spec, tmp_path, device, name, "bf16")
    if COMPONENTS[name][3] == "loss":
        effect32, effect16 = torch.tensor(lc32) - torch.tensor(lx32), torch.tensor(lc16) - torch.tensor(lx16)
    else:
        effect32, effect16 = xc32 - x32, xc16 - x16
    assert effect32.norm() > 0                       # the component does something in fp32 ...
    assert effect16.norm() > 0                       # ... and under bf16
    assert _rel(effect16, effect32) < EFFECT_TOLERANCE, "the component's effect under bf16 is not its fp32 effect"
    _, with_component, params, _ = COMPONENTS[name]
    initial = steps(tiny_spec, tmp_path / "init", device, with_component, n=0, params=params)[1]
    assert _rel(xc16 - initial, xc32 - initial) < UPDATE_TOLERANCE
    assert abs(lc16[0] - lc32[0]) <= LOSS_TOLERANCE * abs(lc32[0])


@pytest.mark.parametrize("device", DEVICES)
def test_awp_moves_the_weights_the_bf16_training_forward_sees(tiny_spec, tmp_path, device):
    """The bug this guards against: autocast cached bf16(w) during the attack and the
    training forward reused it after AWP moved w in place, so pgd-at+awp trained exactly
    as pgd-at (bit-identical losses and weights) under bf16."""
    plain_loss, plain = steps(tiny_spec, tmp_path / "x", device, "pgd-at", "bf16", n=1)
    awp_loss, awp = steps(tiny_spec, tmp_path / "awp", device, "pgd-at+awp", "bf16", n=1)
    assert awp_loss != plain_loss
    assert not torch.equal(awp, plain)


# ---------------------------------------------------------------- speed options change nothing

#: One training step (PGD-AT: attack, forward, backward, SGD step) and three steps with
#: the optimizer's momentum, compared with the eager fp32 step of the same seed. The
#: options reorder float sums only; PGD's sign() can turn a rounding difference at a
#: near-zero input gradient into a different pixel step, so the tolerance is a float
#: tolerance on the weights, not bit equality.
SPEED_OPTIONS = {
    "channels_last": {"channels_last": True},
    "compile (aot_eager)": {"compile": "aot_eager"},
    "compile (inductor)": {"compile": True},
    "foreach SGD": {"optimizer_kernel": "foreach"},
    "fused SGD": {"optimizer_kernel": "fused"},
}
RTOL, ATOL = 1e-4, 1e-5


def _option(name):
    marks = [pytest.mark.slow] if name == "compile (inductor)" else []   # generates C++: tens of CPU-seconds
    return pytest.param(name, marks=marks, id=name)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("n", [1, 3])
@pytest.mark.parametrize("option", [_option(n) for n in SPEED_OPTIONS])
def test_speed_option_step_equals_the_eager_fp32_step(tiny_spec, tmp_path, device, n, option):
    ref_loss, ref = steps(tiny_spec, tmp_path / "ref", device, "pgd-at", n=n, optimizer_kernel="loop")
    loss, got = steps(tiny_spec, tmp_path / "opt", device, "pgd-at", n=n,
                      **{"optimizer_kernel": "loop", **SPEED_OPTIONS[option]})
    torch.testing.assert_close(torch.tensor(loss), torch.tensor(ref_loss), rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(got, ref, rtol=RTOL, atol=ATOL)
    initial = steps(tiny_spec, tmp_path / "init", device, "pgd-at", n=0)[1]
    assert (ref - initial).abs().max() > 100 * ATOL   # the steps moved the weights well beyond the tolerance


@pytest.mark.parametrize("name", ["sglr.yaml", "adr.yaml"])
def test_paper_files_train_every_run_in_fp32_with_unproven_speed_options_off(name):
    """The papers' code trains in fp32 (no autocast): so does every run of both paper
    files, on any device. channels_last and compile stay off there; the fused SGD
    kernel, shown equal above, remains the CUDA default."""
    from soften.pipeline.config import load_config, required_runs, resolve_run
    from soften.training.speed import autocast_dtype

    cfg = load_config(REPO / "config" / name)
    runs = required_runs(cfg)
    assert len(runs) > 40
    for run in runs:
        tr = resolve_run(cfg, run.dataset, run.noise, run.arch, run.method, run.seed)["training"]
        assert tr["amp"] == "off", run.label
        assert autocast_dtype(torch.device("cuda"), tr["amp"]) is None
        assert tr["channels_last"] is False and tr["compile"] is False, run.label
    bf16 = load_config(REPO / "config" / name, {"training": {"amp": "bf16"}})   # one key away
    run = runs[0]
    assert resolve_run(bf16, run.dataset, run.noise, run.arch, run.method, run.seed)["training"]["amp"] == "bf16"


# ---------------------------------------------------------------- the precision is recorded

@pytest.mark.parametrize("amp, expected", [("bf16", "bf16"), ("auto", "fp32"), ("off", "fp32")])
def test_the_precision_a_run_trained_in_reaches_the_tables(tiny_spec, tmp_path, amp, expected):
    """``amp: auto`` resolves by device at run time (fp32 on this CPU): the resolved value is
    what the checkpoints, train_summary.json and every evaluation's run_spec carry, and
    what decides comparability with the papers' fp32 numbers."""
    import json

    from soften.reporting import published as pubs
    from soften.evaluation.common import run_fields
    from soften.io import load_torch

    out = tmp_path / "run"
    loop.train(tiny_spec(amp=amp, epochs=1, lr_milestones=[]), out, progress=False)
    for name in ("best.pt", "final.pt"):
        ckpt = load_torch(out / name)
        assert ckpt["spec"]["precision"] == expected
        run_spec = run_fields(ckpt, out / name)["run_spec"]
        assert run_spec["precision"] == expected
    assert json.loads((out / "train_summary.json").read_text())["precision"] == expected
    table = pubs.sources()["sglr-tab2"]
    full = {**run_spec, "scale": "full", "training": {**run_spec["training"], "epochs": 200},
            "threat": {"eps": 8 / 255}}
    why = pubs.not_comparable(table, dataset="cifar10", run_spec=full, n=10000)
    assert why == ([] if expected == "fp32" else [f"trained in {expected}, paper fp32"])


def test_evaluation_runs_without_tf32_and_says_so():
    from soften.evaluation.common import provenance, setup_device

    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True   # PyTorch's cuDNN default
    assert provenance(torch.device("cuda"))["tf32"] is True
    setup_device({"device": "cpu"})
    assert torch.backends.cudnn.allow_tf32 is False and torch.backends.cuda.matmul.allow_tf32 is False
    assert provenance(torch.device("cuda"))["tf32"] is False
    assert provenance(torch.device("cpu"))["tf32"] is False
