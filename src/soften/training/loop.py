"""The train stage: one run = (dataset, noise, architecture, method, seed).

A method is an objective, a label refiner and weight-space extras
(soften.training.methods); one training step is

1. the refiner gives the attack target (hard label; ADR's rectified label);
2. the objective crafts the training input (PGD, TRADES' KL attack, or none);
3. extras may move the weights (AWP);
4. the objective's training forward; the refiner forms the loss target from it;
5. loss, backward; extras restore the weights (AWP); optimizer step;
6. the refiner and extras observe the new weights (ADR's teacher, WA).

Per epoch the loop appends a row to ``history.csv``, saves ``last.pt`` (model,
optimizer, scheduler, RNG state, epoch, history, best-so-far, and the state of
the refiner and extras: label banks, EMA teachers, weight averages), and
refreshes ``best.pt`` when validation robust accuracy improves. The model that
is validated and saved in ``best.pt``/``final.pt`` is the weight average for
``+wa``/``+swa`` methods and the trained model otherwise. Restarting the same
command resumes from ``last.pt``; on CPU the result is bit-identical to an
uninterrupted run, because every random draw comes from either a per-epoch
generator seeded by (seed, epoch) or the global torch RNG, whose state is
checkpointed.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from soften.attacks import model_mode, pgd
from soften.data import DeviceData, augment_batch, load_dataset_npz
from soften.devices import PLACEMENT_KEYS, resolve_device
from soften.io import load_torch, save_json, save_text, save_torch
from soften.labels import Batch, Setup, build_refiner
from soften.models import build_model
from soften.models.checkpoint import model_checkpoint, rng_state, set_rng_state
from soften.training.extras import build_extra
from soften.training.tracking import open_tracker
from soften.training.methods import method_params, parse_method
from soften.training.objectives import build_objective
from soften.training.speed import autocast_context, optimizer_options, prepare_model

log = logging.getLogger("soften.train")

HISTORY_COLUMNS = [
    "epoch", "lr", "train_loss", "train_batch_acc", "train_clean_acc", "train_robust_acc",
    "val_clean_acc", "val_robust_acc", "test_clean_acc", "test_robust_acc", "grad_norm", "seconds",
]


class NonFiniteLossError(RuntimeError):
    pass


@torch.no_grad()
def _accuracy(model, x, y):
    return (model(x).argmax(1) == y).sum().item()


def evaluate_split(model, data: DeviceData, *, eps, alpha, steps, batch_size) -> tuple[float, float]:
    """Clean and PGD robust accuracy in eval mode and fp32 (monitoring only)."""
    if len(data) == 0:
        return float("nan"), float("nan")
    clean = robust = 0
    with model_mode(model, train=False):
        for x, y in data.batches(batch_size):
            clean += _accuracy(model, x, y)
            if steps > 0:
                x_adv = pgd(model, x, y, eps=eps, alpha=alpha, steps=steps)
                robust += _accuracy(model, x_adv, y)
    n = len(data)
    return clean / n, (robust / n if steps > 0 else float("nan"))


def history_csv(history: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=HISTORY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    return buf.getvalue()


def _grad_norm(model) -> torch.Tensor:
    norms = [p.grad.detach().float().norm() for p in model.parameters() if p.grad is not None]
    return torch.linalg.vector_norm(torch.stack(norms)) if norms else torch.zeros(())


def train_step(batch: Batch, *, objective, refiner, extras, optimizer, autocast) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One optimizer step of any method, in the order of the module docstring.

    Returns the detached loss, the logits of the inputs trained on (f(x') for
    adversarial objectives) and the gradient norm.
    """
    model, x = batch.model, batch.x
    with autocast:
        attack_target = refiner.before_attack(batch)
        x_adv = objective.craft(model, x, attack_target)
        for extra in extras:
            extra.before_forward(batch, model, lambda m: objective.loss(objective.forward(m, x, x_adv), attack_target))
        out = objective.forward(model, x, x_adv)
        loss = objective.loss(out, refiner.targets(batch, out))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    for extra in extras:
        extra.before_step(model)
    grad_norm = _grad_norm(model)
    optimizer.step()
    refiner.after_step(model)
    for extra in extras:
        extra.after_step(model)
    return loss.detach(), out.logits_adv.detach(), grad_norm


def same_run(a: dict[str, Any] | None, b: dict[str, Any]) -> bool:
    def strip(spec):
        return {k: v for k, v in spec.items() if k not in PLACEMENT_KEYS}

    return a is not None and strip(a) == strip(b)


def _holds_epoch(path: Path, epoch: int) -> bool:
    return path.exists() and load_torch(path).get("epoch") == epoch


def load_run_data(spec: dict[str, Any], device: torch.device):
    arrays = load_dataset_npz(spec["dataset_npz"])
    with np.load(spec["noise_npz"], allow_pickle=False) as f:
        y_train = f["y_train_noisy"]
    if len(y_train) != len(arrays["y_train"]):
        raise ValueError(f"{spec['noise_npz']} has {len(y_train)} labels but {spec['dataset_npz']} has {len(arrays['y_train'])} training images")
    train = DeviceData.from_numpy(arrays["x_train"], y_train, device)
    val = DeviceData.from_numpy(arrays["x_val"], arrays["y_val"], device)
    test = DeviceData.from_numpy(arrays["x_test"], arrays["y_test"], device)
    return arrays, train, val, test


def train(spec: dict[str, Any], out_dir: str | Path, *, stop_after_epoch: int | None = None, progress: bool | None = None) -> list[dict[str, Any]]:
    """Run (or resume) one training run described by ``spec`` into ``out_dir``.

    ``stop_after_epoch`` ends the call after that epoch's checkpoint, as a kill
    would (used by tests and by schedulers with wall-time limits).
    Returns the history rows.
    """
    base_method = spec.get("base_method", spec["method"])  # a variant's name is not a method name
    method = parse_method(base_method)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(resolve_device(spec["device"]))
    if device.type == "cpu":
        torch.set_num_threads(int(spec.get("threads", 1)))
    tr = spec["training"]
    threat = spec["threat"]

    arrays, train_data, val_data, test_data = load_run_data(spec, device)
    num_classes = len(arrays["class_names"])
    in_channels = int(arrays["x_train"].shape[-1])
    model_args = {"arch": spec["arch"], "num_classes": num_classes, "in_channels": in_channels}

    torch.manual_seed(spec["seed"])
    model = build_model(spec["arch"], num_classes=num_classes, in_channels=in_channels,
                        mean=arrays["mean"].tolist(), std=arrays["std"].tolist()).to(device)
    prepare_model(model, tr)  # channels_last, compile (soften.training.speed)
    optimizer = torch.optim.SGD(model.parameters(), lr=tr["lr"], momentum=tr["momentum"],
                                weight_decay=tr["weight_decay"], nesterov=tr["nesterov"], **optimizer_options(device, tr))
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=tr["lr_milestones"], gamma=tr["lr_gamma"])

    # Specs from resolve_run carry every component's resolved hyperparameters;
    # a hand-written spec may leave some out, which then take their defaults.
    params = method_params(base_method, spec.get("method_params") or {})
    attack_train_mode = tr["attack_bn_mode"] == "train"
    objective = build_objective(method.objective, params[method.objective], threat, attack_train_mode)
    setup = Setup(num_samples=len(train_data), num_classes=num_classes, model=model, device=device,
                  teachers=spec.get("teachers", []))
    refiner = build_refiner(method.refiner, params[method.refiner], setup)
    extras = [build_extra(name, params[name], model) for name in method.extras]
    if objective.adversarial:
        test_monitor = test_data.head(tr["test_subset"])
        train_monitor = train_data.head(tr["test_subset"] or len(val_data) or 1000)
        monitor_steps = tr["val_attack_steps"]
    else:
        # Standard training: clean accuracy only (a non-robust model's PGD accuracy is ~0),
        # which costs one forward pass, so on the whole test split and as many training
        # images: the noise-gap tables (SGLR Tab. B.2) read the last epoch's gap.
        test_monitor = test_data
        train_monitor = train_data.head(len(test_data))
        monitor_steps = 0

    def eval_model():
        """The model that is validated and saved: a weight average if an extra keeps one."""
        for extra in extras:
            averaged = extra.eval_model()
            if averaged is not None:
                return averaged
        return model

    history: list[dict[str, Any]] = []
    best = {"epoch": 0, "val_robust_acc": -1.0, "model": None}
    start_epoch = 1
    last_path = out / "last.pt"
    if last_path.exists():
        state = load_torch(last_path)
        if not same_run(state.get("spec"), spec):
            log.warning("%s was written for different settings; starting this run afresh", last_path)
        else:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            refiner.load_state_dict(state["refiner"])
            for extra in extras:
                extra.load_state_dict(state["extras"][extra.name])
            set_rng_state(state["rng"])
            history, best = state["history"], state["best"]
            start_epoch = state["epoch"] + 1
            log.info("resuming %s from epoch %d", out, start_epoch)
            # Snakemake deletes declared outputs before re-running a job: restore them.
            save_text(history_csv(history), out / "history.csv")
            if best["model"] is not None and not _holds_epoch(out / "best.pt", best["epoch"]):
                save_torch(model_checkpoint(best["model"], spec=spec, model_args=model_args, epoch=best["epoch"],
                                            metrics={"val_score": best["val_robust_acc"]}), out / "best.pt")

    adversarial = objective.adversarial
    show = sys.stderr.isatty() if progress is None else progress
    n = len(train_data)
    batch_size = tr["batch_size"]
    steps = math.ceil(n / batch_size)

    def clean_train_batches():
        """The training images in order, unaugmented (SWA's BatchNorm re-estimation)."""
        return (x for x, _ in train_data.batches(batch_size))

    tracker = open_tracker(spec.get("tracking", "none"), out, history)
    for epoch in range(start_epoch, tr["epochs"] + 1):
        t0 = time.time()
        gen = torch.Generator().manual_seed(spec["seed"] * 1_000_003 + epoch)
        order = torch.randperm(n, generator=gen).to(device)
        model.train()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        grad_sq = torch.zeros((), device=device)
        bar = tqdm(range(steps), desc=f"epoch {epoch}/{tr['epochs']}", leave=False, disable=not show)
        for step in bar:
            index = order[step * batch_size:(step + 1) * batch_size]
            x, y = train_data.batch(index)
            x = augment_batch(x, crop_padding=spec["augment"]["crop_padding"], flip=spec["augment"]["flip"], generator=gen)
            batch = Batch(model=model, index=index, x=x, y=y, epoch=epoch,
                          iteration=(epoch - 1) * steps + step, total_iterations=tr["epochs"] * steps)
            loss, logits, grad_norm = train_step(batch, objective=objective, refiner=refiner, extras=extras,
                                                 optimizer=optimizer, autocast=autocast_context(device, tr["amp"]))
            grad_sq += grad_norm.square()
            loss_sum += loss * len(index)
            correct += (logits.argmax(1) == y).sum()
            if (step + 1) % tr["nan_check_every"] == 0 or step + 1 == steps:
                if not torch.isfinite(loss_sum):
                    raise NonFiniteLossError(
                        f"non-finite training loss in epoch {epoch} by batch {step + 1} of run {out}; "
                        f"last.pt still holds epoch {epoch - 1}. Lower the learning rate or check the data."
                    )
        bar.close()
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step()
        for extra in extras:
            extra.end_epoch(epoch, model, clean_train_batches)

        evaluated = eval_model()
        mon = dict(eps=threat["eps"], alpha=threat["alpha"], steps=monitor_steps, batch_size=tr["eval_batch_size"])
        val_clean, val_robust = evaluate_split(evaluated, val_data, **mon)
        test_clean, test_robust = evaluate_split(evaluated, test_monitor, **mon)
        train_clean, train_robust = evaluate_split(evaluated, train_monitor, **mon)
        row = {
            "epoch": epoch, "lr": lr,
            "train_loss": loss_sum.item() / n, "train_batch_acc": correct.item() / n,
            "train_clean_acc": train_clean, "train_robust_acc": train_robust,
            "val_clean_acc": val_clean, "val_robust_acc": val_robust,
            "test_clean_acc": test_clean, "test_robust_acc": test_robust,
            "grad_norm": math.sqrt(grad_sq.item() / steps), "seconds": round(time.time() - t0, 3),
        }
        history.append(row)
        # Selection metric: val robust accuracy for adversarial methods, clean otherwise.
        score = val_robust if adversarial and not math.isnan(val_robust) else val_clean
        improved = score > best["val_robust_acc"]
        if improved:
            best = {"epoch": epoch, "val_robust_acc": score,
                    "model": {k: v.detach().cpu().clone() for k, v in evaluated.state_dict().items()}}
        # best.pt before last.pt: a kill in between only makes the resumed run redo this epoch.
        if improved:
            save_torch(model_checkpoint(best["model"], spec=spec, model_args=model_args, epoch=epoch,
                                        metrics={"val_score": score}), out / "best.pt")
        save_torch({
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "refiner": refiner.state_dict(), "extras": {extra.name: extra.state_dict() for extra in extras},
            "rng": rng_state(), "epoch": epoch, "history": history, "best": best, "spec": spec,
        }, last_path)
        save_text(history_csv(history), out / "history.csv")
        tracker.log_epoch(row)
        log.info("epoch %d: loss %.4f val clean %.4f robust %.4f (%.1fs)", epoch, row["train_loss"], val_clean, val_robust, row["seconds"])
        if stop_after_epoch is not None and epoch >= stop_after_epoch and epoch < tr["epochs"]:
            tracker.close()
            return history

    save_torch(model_checkpoint(eval_model().state_dict(), spec=spec, model_args=model_args, epoch=tr["epochs"],
                                metrics=history[-1] if history else {}), out / "final.pt")
    tracker.close()
    save_json({"best_epoch": best["epoch"], "best_val_score": best["val_robust_acc"],
               "final": history[-1] if history else {}}, out / "train_summary.json")
    return history
