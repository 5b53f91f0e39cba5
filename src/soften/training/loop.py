"""The train stage: one run = (dataset, noise, architecture, method, seed).

A method is an objective, a label refiner and weight-space extras
(soften.training.methods); one training step is

1. the refiner gives the attack target (hard label; ADR's rectified label);
2. the objective crafts the training input (PGD, TRADES' KL attack, or none);
3. extras may move the weights (AWP);
4. the objective's training forward; the refiner forms the loss target from it;
5. loss, backward; extras restore the weights (AWP); optimizer step;
6. the refiner and extras observe the new weights (ADR's teacher, WA).

:func:`train` runs these phases, one short function each:

- :func:`set_up` builds everything from the spec (device, data, model, optimizer,
  method components) and writes nothing, so a bad spec fails before a run folder exists;
- :func:`run_folder` creates the folder, locks it against a second train process
  and removes temporaries a killed save left; :func:`resume` restores ``last.pt``;
- per epoch, :func:`train_epoch` (the optimizer steps), :func:`end_epoch` (LR
  schedule, weight averages), :func:`monitor` (the ``history.csv`` row) and
  :func:`save_epoch` (best-checkpoint choice, ``best.pt``, ``last.pt``, history);
- :func:`finish` writes ``final.pt`` and ``train_summary.json``.

On CUDA the epoch's files are written by a background thread while the next epoch
trains (soften.training.saver: a WRN-34-10 ``last.pt`` is over 0.5 GB).

``last.pt`` holds the model, optimizer, scheduler, RNG state, epoch, history,
best-so-far, and the state of the refiner and extras (label banks, EMA teachers,
weight averages); ``best.pt`` is refreshed when validation robust accuracy
improves. With ``training.select_on: [validation, test]`` the run also keeps
``best_test.pt``, the epoch with the highest robust accuracy on the *whole test
set* under the monitoring PGD (as SGLR's main_adv.py and ADR's advTrainer.py
select; docs/evaluation.md), measured every epoch after the other monitoring so
that training and best.pt stay what they are without it. The model that is validated and saved in ``best.pt``/``final.pt`` is
the weight average for ``+wa``/``+swa`` methods and the trained model otherwise.
Restarting the same command resumes from ``last.pt``; on CPU the result is
bit-identical to an uninterrupted run, because every random draw comes from
either a per-epoch generator seeded by (seed, epoch) or the global torch RNG,
whose state is checkpointed.

Nothing non-finite is saved: a non-finite loss, or any NaN/inf tensor in what an
epoch would save, stops the run with ``DivergedError`` (exit status 2) naming the
epoch and the tensor, and ``last.pt`` keeps the last good epoch. A ``last.pt``
that cannot be read (or holds non-finite values) is set aside as
``last.corrupt.pt`` with a warning and the run starts afresh.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import logging
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from soften.attacks import model_mode, pgd
from soften.data import DeviceData, load_dataset_npz
from soften.data.device_data import apply_augmentation, draw_augmentation
from soften.data.fetch import dataset_digest, load_noisy_labels
from soften.devices import PLACEMENT_KEYS, resolve_device
from soften.errors import BusyError, CorruptFileError, DivergedError
from soften.attacks.memory import fit_batch_size, halving_on_oom
from soften.io import load_torch, remove_stale_temporaries, save_json, save_text, save_torch
from soften.labels import Batch, Setup, build_refiner
from soften.models import build_model
from soften.models.checkpoint import first_non_finite, model_checkpoint, rng_state, set_rng_state
from soften.training.extras import build_extra
from soften.training.methods import method_params, parse_method
from soften.training.saver import Saver, to_host
from soften.training.objectives import build_objective
from soften.training.speed import autocast_context, autocast_dtype, optimizer_options, precision, prepare_model
from soften.training.tracking import open_tracker
from soften.training.walltime import WallClock

log = logging.getLogger("soften.train")

#: history.csv's columns. A row's ``seconds`` (wall clock) goes to the log, not to the
#: file: a declared output must be a function of the job's inputs, params and code, so
#: a rerun (Snakemake or DVC) writes the same bytes.
HISTORY_COLUMNS = [
    "epoch", "lr", "train_loss", "train_batch_acc", "train_clean_acc", "train_robust_acc",
    "val_clean_acc", "val_robust_acc", "test_clean_acc", "test_robust_acc", "grad_norm",
]
#: Added after those where the run keeps best_test.pt (select_on test): the whole test set's
#: accuracies that choose it (their cost, ``select_test_seconds``, goes to the log, as ``seconds``).
#: Other runs' histories stay as they were.
SELECT_TEST_COLUMNS = ["select_test_clean_acc", "select_test_robust_acc"]


def history_columns(history: list[dict[str, Any]]) -> list[str]:
    """history.csv's columns for this run (timings left out)."""
    return HISTORY_COLUMNS + (SELECT_TEST_COLUMNS if history and SELECT_TEST_COLUMNS[0] in history[0] else [])


#: Taken (flock) by the train process working in a run folder.
LOCK_NAME = ".train.lock"
#: What a last.pt holds; one without these keys is no resume state.
RESUME_KEYS = frozenset({"model", "optimizer", "scheduler", "refiner", "extras", "rng", "epoch", "history", "best", "spec"})


class NonFiniteLossError(DivergedError):
    """The training loss became NaN or inf."""


class NonFiniteStateError(DivergedError):
    """A tensor an epoch would save (weights, BatchNorm statistics, optimizer or method state) is NaN or inf."""


@torch.no_grad()
def _accuracy(model, x, y):
    return (model(x).argmax(1) == y).sum().item()


def evaluate_split(model, data: DeviceData, *, eps, alpha, steps, batch_size, generator=None) -> tuple[float, float]:
    """Clean and PGD robust accuracy in eval mode and fp32 (monitoring only). PGD's random
    start draws from ``generator`` if given, so that monitoring leaves the training RNG alone."""
    if len(data) == 0:
        return float("nan"), float("nan")
    clean = robust = 0
    with model_mode(model, train=False):
        for x, y in data.batches(batch_size):
            clean += _accuracy(model, x, y)
            if steps > 0:
                x_adv = pgd(model, x, y, eps=eps, alpha=alpha, steps=steps, generator=generator)
                robust += _accuracy(model, x_adv, y)
    n = len(data)
    return clean / n, (robust / n if steps > 0 else float("nan"))


def monitor_curves(epoch: int, tr: dict[str, Any], measure) -> tuple[float, float, float, float]:
    """Test and train monitoring (curves only) every ``monitor_every`` epochs and at the
    last epoch (the noise-gap tables read it); NaN in between. Validation, which
    selects ``best.pt``, runs every epoch regardless."""
    every = int(tr.get("monitor_every") or 1)
    if epoch % every == 0 or epoch == tr["epochs"]:
        return measure()
    return (float("nan"),) * 4


def history_csv(history: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=history_columns(history), lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(history)
    return buf.getvalue()


def _grad_norm(model) -> torch.Tensor:
    """The global L2 norm of the gradients, on the device (no host sync): one multi-tensor
    kernel for every parameter's norm where a Python loop launched one per parameter."""
    grads = [p.grad.detach().float() for p in model.parameters() if p.grad is not None]
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))) if grads else torch.zeros(())


def train_step(batch: Batch, *, objective, refiner, extras, optimizer, autocast) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One optimizer step of any method, in the order of the module docstring.

    Returns the detached loss, the logits of the inputs trained on (f(x') for
    adversarial objectives) and the gradient norm.
    """
    model, x = batch.model, batch.x
    # Three autocast regions, not one: autocast keeps the low-precision copy of each
    # weight until the outermost region exits, so a forward after AWP moved the
    # weights in place would reuse the copy of the unmoved weights (AWP silently off).
    with autocast:
        attack_target = refiner.before_attack(batch)
        x_adv = objective.craft(model, x, attack_target)
    for extra in extras:
        with autocast:
            extra.before_forward(batch, model, lambda m: objective.loss(objective.forward(m, x, x_adv), attack_target))
    with autocast:
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


def load_run_data(spec: dict[str, Any], device: torch.device):
    """The dataset (checked, see load_dataset_npz) and its noisy training labels, on ``device``."""
    arrays = load_dataset_npz(spec["dataset_npz"])
    y_train = load_noisy_labels(spec["noise_npz"], len(arrays["class_names"]), len(arrays["y_train"]))
    train = DeviceData.from_numpy(arrays["x_train"], y_train, device)
    val = DeviceData.from_numpy(arrays["x_val"], arrays["y_val"], device)
    test = DeviceData.from_numpy(arrays["x_test"], arrays["y_test"], device)
    return arrays, train, val, test


@dataclass
class Run:
    """One training run while it trains: what :func:`set_up` builds from the spec,
    and the progress :func:`resume` restores and each epoch advances."""

    spec: dict[str, Any]
    out: Path
    device: torch.device
    model_args: dict[str, Any]
    dataset_sha256: str
    train_data: DeviceData
    val_data: DeviceData
    train_monitor: DeviceData  # the splits monitor() measures each epoch besides validation
    test_monitor: DeviceData
    monitor_steps: int         # PGD steps of the monitoring attack; 0: clean accuracy only
    test_select: DeviceData | None  # the whole test split when best_test.pt is kept (select_on test)
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    objective: Any
    refiner: Any
    extras: list[Any]
    precision: str = "fp32"  # what the training steps run in (amp resolved on this device); recorded in checkpoints
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] = field(default_factory=lambda: {"epoch": 0, "val_robust_acc": -1.0, "model": None})
    best_test: dict[str, Any] = field(default_factory=lambda: {"epoch": 0, "score": -1.0, "model": None})
    start_epoch: int = 1
    saved_epoch: int | None = None  # the epoch of this run that last.pt holds (None: none yet)
    monitor_batch: int | None = None  # monitoring's batch size on this device (soften.attacks.memory)
    saver: Saver = field(default_factory=lambda: Saver(background=False))  # writes each epoch's files

    @property
    def training(self) -> dict[str, Any]:
        return self.spec["training"]

    def eval_model(self) -> torch.nn.Module:
        """The model that is validated and saved: a weight average if an extra keeps one."""
        for extra in self.extras:
            averaged = extra.eval_model()
            if averaged is not None:
                return averaged
        return self.model

    def held(self) -> str:
        """What a stopped run leaves to resume from, for error messages."""
        if self.saved_epoch is None:
            return "no epoch of this run has been saved, so there is nothing to resume"
        return f"last.pt still holds epoch {self.saved_epoch}, the last good state"


def build_optimizer(model: torch.nn.Module, tr: dict[str, Any], device: torch.device):
    """SGD and its step schedule, as the papers train (SGLR §4, ADR §5.1); the kernel
    options (foreach/fused) from soften.training.speed change no value."""
    optimizer = torch.optim.SGD(model.parameters(), lr=tr["lr"], momentum=tr["momentum"],
                                weight_decay=tr["weight_decay"], nesterov=tr["nesterov"], **optimizer_options(device, tr))
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=tr["lr_milestones"], gamma=tr["lr_gamma"])
    return optimizer, scheduler


def build_method(spec: dict[str, Any], model: torch.nn.Module, setup: Setup):
    """The method's objective, label refiner and extras. Specs from resolve_run carry every
    component's resolved hyperparameters; a hand-written spec may leave some out, which
    then take their defaults."""
    base_method = spec.get("base_method", spec["method"])  # a variant's name is not a method name
    method = parse_method(base_method)
    params = method_params(base_method, spec.get("method_params") or {})
    attack_train_mode = spec["training"]["attack_bn_mode"] == "train"
    objective = build_objective(method.objective, params[method.objective], spec["threat"], attack_train_mode)
    refiner = build_refiner(method.refiner, params[method.refiner], setup)
    extras = [build_extra(name, params[name], model) for name in method.extras]
    return objective, refiner, extras


def monitor_splits(adversarial: bool, tr: dict[str, Any], train: DeviceData, val: DeviceData, test: DeviceData):
    """What monitor() measures besides validation: (train subset, test subset, PGD steps)."""
    if adversarial:
        return train.head(tr["test_subset"] or len(val) or 1000), test.head(tr["test_subset"]), tr["val_attack_steps"]
    # Standard training: clean accuracy only (a non-robust model's PGD accuracy is ~0),
    # which costs one forward pass, so on the whole test split and as many training
    # images: the noise-gap tables (SGLR Tab. B.2) read the last epoch's gap.
    return train.head(len(test)), test, 0


def set_up(spec: dict[str, Any], out_dir: str | Path) -> Run:
    """Build the run from its spec: device, checked data, model, optimizer, schedule,
    and the method's objective, refiner and extras. Writes nothing."""
    parse_method(spec.get("base_method", spec["method"]))  # a bad method name fails before any work
    device = torch.device(resolve_device(spec["device"], int(spec.get("gpu_slots", 1))))
    if device.type == "cpu":
        torch.set_num_threads(int(spec.get("threads", 1)))
    else:
        # Every training step has the same shapes: let cuDNN time its algorithms once and keep the fastest.
        torch.backends.cudnn.benchmark = True
    tr = spec["training"]
    autocast_dtype(device, tr["amp"])  # an amp setting this device cannot run fails before any work
    arrays, train_data, val_data, test_data = load_run_data(spec, device)
    num_classes, in_channels = len(arrays["class_names"]), int(arrays["x_train"].shape[-1])

    torch.manual_seed(spec["seed"])
    # width_factor: only the smoke scale's specs have one (soften.pipeline.config.SMOKE)
    model_args = {"arch": spec["arch"], "num_classes": num_classes, "in_channels": in_channels,
                  **({"width_factor": spec["width_factor"]} if "width_factor" in spec else {})}
    model = build_model(**model_args, mean=arrays["mean"].tolist(), std=arrays["std"].tolist()).to(device)
    prepare_model(model, tr)  # channels_last, compile (soften.training.speed)
    optimizer, scheduler = build_optimizer(model, tr, device)
    setup = Setup(num_samples=len(train_data), num_classes=num_classes, model=model, device=device,
                  teachers=spec.get("teachers", []))
    objective, refiner, extras = build_method(spec, model, setup)
    trained_in = precision(device, tr["amp"])
    log.info("training on %s in %s (training.amp: %s)", device, trained_in, tr["amp"])
    train_monitor, test_monitor, monitor_steps = monitor_splits(objective.adversarial, tr, train_data, val_data, test_data)
    test_select = test_data if "test" in tr.get("select_on", ["validation"]) else None
    return Run(spec=spec, out=Path(out_dir), device=device,
               model_args=model_args,
               dataset_sha256=dataset_digest(spec["dataset_npz"]), train_data=train_data, val_data=val_data,
               train_monitor=train_monitor, test_monitor=test_monitor, monitor_steps=monitor_steps, test_select=test_select,
               model=model, optimizer=optimizer, scheduler=scheduler, objective=objective, refiner=refiner, extras=extras,
               saver=Saver(background=device.type == "cuda"), precision=trained_in)


@contextlib.contextmanager
def run_folder(out: Path):
    """Create the run folder and hold its lock while the body runs, so that a second
    train process on the same folder stops at once (``BusyError``). Temporaries a
    killed save left (``.X.pt.*.tmp``) are removed: only the lock holder writes here."""
    out.mkdir(parents=True, exist_ok=True)
    fd = os.open(out / LOCK_NAME, os.O_CREAT | os.O_RDWR, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
        os.close(fd)
        raise BusyError(f"{out} is being trained by another process{f' (pid {holder})' if holder else ''}; "
                        "wait for it to finish, or stop it, then re-run") from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        stale = remove_stale_temporaries(out)
        if stale:
            log.warning("removed %d temporary file(s) an interrupted save left in %s: %s", len(stale), out,
                        ", ".join(p.name for p in stale))
        yield out
    finally:
        os.close(fd)  # releases the lock


def _set_aside(path: Path) -> Path:
    """Rename ``path`` (X.pt) to an unused X.corrupt[-K].pt beside it, keeping it for inspection."""
    aside = path.with_name(f"{path.stem}.corrupt{path.suffix}")
    k = 1
    while aside.exists():
        aside, k = path.with_name(f"{path.stem}.corrupt-{k}{path.suffix}"), k + 1
    os.replace(path, aside)
    return aside


def _read_resume_state(path: Path) -> dict[str, Any] | None:
    """last.pt's content; None (after setting the file aside, with a warning) when it
    is unreadable, not a resume state, or holds non-finite values."""
    try:
        state = load_torch(path)
        if not isinstance(state, dict) or not RESUME_KEYS <= state.keys():
            problem = "is not a soften resume state"
        elif (bad := first_non_finite({k: state[k] for k in ("model", "optimizer", "refiner", "extras")})) is not None:
            problem = f"holds non-finite values (NaN or inf) in {bad}"
        else:
            return state
    except CorruptFileError as err:
        problem = err.problem
    aside = _set_aside(path)
    log.warning("%s %s: set aside as %s; the run starts afresh from epoch 1", path, problem, aside.name)
    return None


def _csv_rows(path: Path) -> int | None:
    try:
        return len(path.read_text().splitlines()) - 1
    except OSError:
        return None


def _holds_epoch(path: Path, epoch: int) -> bool:
    try:
        return path.exists() and load_torch(path).get("epoch") == epoch
    except CorruptFileError:
        return False  # rewritten from last.pt


def resume(run: Run) -> None:
    """Continue from ``last.pt`` when it holds this run (same spec, same dataset file);
    restore the outputs Snakemake deletes before re-running a job."""
    last = run.out / "last.pt"
    if not last.exists() or (state := _read_resume_state(last)) is None:
        return
    if not same_run(state.get("spec"), run.spec) or state.get("dataset_sha256", run.dataset_sha256) != run.dataset_sha256:
        log.warning("%s was written for different settings or another dataset file; starting this run afresh", last)
        return
    try:
        run.model.load_state_dict(state["model"])
        run.optimizer.load_state_dict(state["optimizer"])
        run.scheduler.load_state_dict(state["scheduler"])
        run.refiner.load_state_dict(state["refiner"])
        for extra in run.extras:
            extra.load_state_dict(state["extras"][extra.name])
        set_rng_state(state["rng"], run.device)
    except (KeyError, RuntimeError, TypeError, ValueError) as err:  # e.g. written by another soften version
        raise CorruptFileError(last, f"cannot be restored into this run ({type(err).__name__}: "
                                     f"{str(err).splitlines()[0][:120]})",
                               "rename or delete it to start the run afresh") from None
    run.history, run.best = state["history"], state["best"]
    before = state.get("precision", run.precision)
    if before != run.precision:  # amp: auto resumed on another kind of device
        log.warning("%s trained in %s so far and continues in %s; the run is recorded as mixed", last, before,
                    run.precision)
        run.precision = _mixed(before, run.precision)
    run.best_test = state.get("best_test", run.best_test)
    run.start_epoch = state["epoch"] + 1
    run.saved_epoch = state["epoch"]
    log.info("resuming %s from epoch %d", run.out, run.start_epoch)
    if _csv_rows(run.out / "history.csv") != len(run.history):  # a complete one stays as it is
        save_text(history_csv(run.history), run.out / "history.csv")
    best = run.best
    if best["model"] is not None and not _holds_epoch(run.out / "best.pt", best["epoch"]):
        _save_checked(run, {"best.pt": _model_file(run, best["model"], best["epoch"], {"val_score": best["val_robust_acc"]})},
                      best["epoch"])
    best = run.best_test
    if run.test_select is not None and best["model"] is not None and not _holds_epoch(run.out / "best_test.pt", best["epoch"]):
        _save_checked(run, {"best_test.pt": _model_file(run, best["model"], best["epoch"], {"test_score": best["score"]})},
                      best["epoch"])


@dataclass
class EpochStats:
    """Sums over one epoch's optimizer steps (device tensors, read once at the end)."""

    loss_sum: torch.Tensor
    correct: torch.Tensor
    grad_sq: torch.Tensor
    steps: int
    started: float


def train_epoch(run: Run, epoch: int, show: bool) -> EpochStats:
    """One epoch of optimizer steps over the shuffled, augmented training set. Stops
    with ``NonFiniteLossError`` when the running loss becomes NaN or inf."""
    spec, tr, device, data = run.spec, run.training, run.device, run.train_data
    n, batch_size = len(data), tr["batch_size"]
    steps = math.ceil(n / batch_size)
    stats = EpochStats(torch.zeros((), device=device), torch.zeros((), device=device, dtype=torch.long),
                       torch.zeros((), device=device), steps, time.time())
    gen = torch.Generator().manual_seed(spec["seed"] * 1_000_003 + epoch)
    order = torch.randperm(n, generator=gen).to(device)
    augment = {"crop_padding": spec["augment"]["crop_padding"], "flip": spec["augment"]["flip"]}
    sizes = [min(batch_size, n - step * batch_size) for step in range(steps)]
    draws = draw_augmentation(sizes, **augment, generator=gen).to(device)  # the epoch's crops and flips, one copy
    run.model.train()
    bar = tqdm(range(steps), desc=f"epoch {epoch}/{tr['epochs']}", leave=False, disable=not show)
    for step in bar:
        index = order[step * batch_size:(step + 1) * batch_size]
        x, y = data.batch(index)
        x = apply_augmentation(x, draws[:, step * batch_size:step * batch_size + len(index)], **augment)
        batch = Batch(model=run.model, index=index, x=x, y=y, epoch=epoch,
                      iteration=(epoch - 1) * steps + step, total_iterations=tr["epochs"] * steps)
        loss, logits, grad_norm = train_step(batch, objective=run.objective, refiner=run.refiner, extras=run.extras,
                                             optimizer=run.optimizer, autocast=autocast_context(device, tr["amp"]))
        stats.grad_sq += grad_norm.square()
        stats.loss_sum += loss * len(index)
        stats.correct += (logits.argmax(1) == y).sum()
        if (step + 1) % tr["nan_check_every"] == 0 or step + 1 == steps:
            if not torch.isfinite(stats.loss_sum):
                raise NonFiniteLossError(
                    f"non-finite training loss in epoch {epoch} by batch {step + 1} of run {run.out}; {run.held()}. "
                    "Lower the learning rate (training.lr) or check the data.")
    bar.close()
    return stats


def end_epoch(run: Run, epoch: int) -> float:
    """The end-of-epoch schedule: the LR step, then the extras' epoch end (SWA/WA
    averaging, BatchNorm re-estimation). Returns the LR the epoch trained with."""
    lr = run.optimizer.param_groups[0]["lr"]
    run.scheduler.step()

    def clean_train_batches():
        """The training images in order, unaugmented (SWA's BatchNorm re-estimation)."""
        return (x for x, _ in run.train_data.batches(run.training["batch_size"]))

    for extra in run.extras:
        extra.end_epoch(epoch, run.model, clean_train_batches)
    return lr


def monitor(run: Run, epoch: int, stats: EpochStats, lr: float) -> dict[str, Any]:
    """The epoch's history row: training sums, and clean/robust accuracy of the
    evaluated model on the validation split and the train/test monitor subsets."""
    tr = run.training
    evaluated = run.eval_model()
    # Monitoring draws from its own generator: how often it runs (monitor_every) cannot change training.
    generator = torch.Generator().manual_seed(run.spec["seed"] * 1_000_003 + epoch + 2**40)
    mon = dict(eps=run.spec["threat"]["eps"], alpha=run.spec["threat"]["alpha"], steps=run.monitor_steps,
               generator=generator)
    if run.monitor_batch is None:  # tr["eval_batch_size"] capped to what the GPU holds for this model and input
        run.monitor_batch = fit_batch_size(evaluated, tuple(run.val_data.images.shape[1:]), run.device,
                                           tr["eval_batch_size"], "monitoring PGD")

    def measure(data):
        result, run.monitor_batch = halving_on_oom(lambda b: evaluate_split(evaluated, data, batch_size=b, **mon),
                                                   run.monitor_batch, "monitoring PGD")
        return result

    val_clean, val_robust = measure(run.val_data)
    test_clean, test_robust, train_clean, train_robust = monitor_curves(
        epoch, tr, lambda: measure(run.test_monitor) + measure(run.train_monitor))
    select = select_on_test(run, epoch, measure, test_clean, test_robust)
    n = len(run.train_data)
    return {
        "epoch": epoch, "lr": lr,
        "train_loss": stats.loss_sum.item() / n, "train_batch_acc": stats.correct.item() / n,
        "train_clean_acc": train_clean, "train_robust_acc": train_robust,
        "val_clean_acc": val_clean, "val_robust_acc": val_robust,
        "test_clean_acc": test_clean, "test_robust_acc": test_robust,
        "grad_norm": math.sqrt(stats.grad_sq.item() / stats.steps), "seconds": round(time.time() - stats.started, 3),
        **select,
    }


def _mixed(a: str, b: str) -> str:
    """The record of a run whose epochs trained in precisions ``a`` and then ``b``."""
    parts = sorted(set(a.removeprefix("mixed ").strip("()").split(", ")) | {b})
    return parts[0] if len(parts) == 1 else f"mixed ({', '.join(parts)})"


def select_on_test(run: Run, epoch: int, measure, test_clean: float, test_robust: float) -> dict[str, float]:
    """The whole test set's clean and robust accuracy that choose best_test.pt (nothing when
    the run does not keep one). Read off this epoch's test monitoring when that covered
    the whole test set; otherwise measured (its seconds go to the log: the price of the protocol)."""
    if run.test_select is None:
        return {}
    if len(run.test_monitor) == len(run.test_select) and not math.isnan(test_clean):
        return {"select_test_clean_acc": test_clean, "select_test_robust_acc": test_robust, "select_test_seconds": 0.0}
    start = time.time()
    clean, robust = measure(run.test_select)
    return {"select_test_clean_acc": clean, "select_test_robust_acc": robust,
            "select_test_seconds": round(time.time() - start, 3)}


def _model_file(run: Run, state_dict: dict[str, torch.Tensor], epoch: int, metrics: dict[str, Any]) -> dict[str, Any]:
    # The spec as run: with the precision training resolved (evaluation results carry it to the tables).
    return model_checkpoint(state_dict, spec={**run.spec, "precision": run.precision}, model_args=run.model_args,
                            epoch=epoch, metrics=metrics, dataset_sha256=run.dataset_sha256)


def _check_finite(run: Run, files: dict[str, Any], epoch: int) -> None:
    for name, content in files.items():
        bad = first_non_finite(content)
        if bad is not None:
            raise NonFiniteStateError(
                f"training diverged: after epoch {epoch} of run {run.out}, {bad} in {name} holds non-finite values "
                f"(NaN or inf), so nothing of epoch {epoch} was saved; {run.held()}. Lower the learning rate "
                "(training.lr) or check the data.")


def _save_checked(run: Run, files: dict[str, Any], epoch: int) -> None:
    """Save ``{name: content}`` into the run folder in order, once every tensor of
    every file is finite; otherwise save none and stop with ``NonFiniteStateError``."""
    _check_finite(run, files, epoch)
    for name, content in files.items():
        save_torch(content, run.out / name)


def save_epoch(run: Run, epoch: int, row: dict[str, Any]) -> None:
    """Append the epoch's row, keep the best checkpoint (chosen on validation), and
    save best.pt (if improved), last.pt and history.csv: nothing if any tensor is non-finite."""
    run.history.append(row)
    # Selection metric: val robust accuracy for adversarial methods, clean otherwise.
    val_robust, val_clean = row["val_robust_acc"], row["val_clean_acc"]
    score = val_robust if run.objective.adversarial and not math.isnan(val_robust) else val_clean
    files = {}
    if score > run.best["val_robust_acc"]:
        run.best = {"epoch": epoch, "val_robust_acc": score,
                    "model": {k: v.detach().cpu().clone() for k, v in run.eval_model().state_dict().items()}}
        # best.pt before last.pt: a kill in between only makes the resumed run redo this epoch.
        files["best.pt"] = _model_file(run, run.best["model"], epoch, {"val_score": score})
    if run.test_select is not None:
        # The same rule on the whole test set; strictly greater keeps the first of tied epochs, as
        # main_adv.py's and advTrainer.py's comparisons do.
        robust, clean = row["select_test_robust_acc"], row["select_test_clean_acc"]
        test_score = robust if run.objective.adversarial and not math.isnan(robust) else clean
        if test_score > run.best_test["score"]:
            run.best_test = {"epoch": epoch, "score": test_score,
                             "model": {k: v.detach().cpu().clone() for k, v in run.eval_model().state_dict().items()}}
            files["best_test.pt"] = _model_file(run, run.best_test["model"], epoch, {"test_score": test_score})
    files["last.pt"] = {
        "model": run.model.state_dict(), "optimizer": run.optimizer.state_dict(), "scheduler": run.scheduler.state_dict(),
        "refiner": run.refiner.state_dict(), "extras": {extra.name: extra.state_dict() for extra in run.extras},
        "rng": rng_state(run.device), "epoch": epoch, "history": run.history, "best": run.best, "best_test": run.best_test,
        "spec": run.spec, "dataset_sha256": run.dataset_sha256, "precision": run.precision,
    }
    _check_finite(run, files, epoch)
    if run.saver.background:
        files = to_host(files)  # training goes on while the copy is written (soften.training.saver)
    history = history_csv(run.history)

    def written(name, content):
        def write():
            save_torch(content, run.out / name)
            if name == "last.pt":
                run.saved_epoch = epoch
        return write

    run.saver.submit([*(written(n, c) for n, c in files.items()),
                      lambda: save_text(history, run.out / "history.csv")])
    log.info("epoch %d: loss %.4f val clean %.4f robust %.4f (%.1fs%s)", epoch, row["train_loss"], val_clean, val_robust,
             row["seconds"], f", of which {row['select_test_seconds']:.1f}s test selection"
             if row.get("select_test_seconds") else "")


def finish(run: Run) -> None:
    """final.pt (the evaluated model after the last epoch) and train_summary.json."""
    epochs, history = run.training["epochs"], run.history
    run.saver.wait()
    # The row with the column names' own (interned) strings as keys: pickle writes a
    # repeated key object once, so a row reloaded from last.pt would give other bytes.
    last = {k: history[-1][k] for k in history_columns(history) if k in history[-1]} if history else {}
    _save_checked(run, {"final.pt": _model_file(run, run.eval_model().state_dict(), epochs, last)}, epochs)
    selected = {"best_test_epoch": run.best_test["epoch"], "best_test_score": run.best_test["score"]} \
        if run.test_select is not None else {}
    save_json({"best_epoch": run.best["epoch"], "best_val_score": run.best["val_robust_acc"], **selected,
               "precision": run.precision, "final": history[-1] if history else {}}, run.out / "train_summary.json")


def train(spec: dict[str, Any], out_dir: str | Path, *, stop_after_epoch: int | None = None, progress: bool | None = None) -> list[dict[str, Any]]:
    """Run (or resume) one training run described by ``spec`` into ``out_dir``.

    ``stop_after_epoch`` ends the call after that epoch's checkpoint, as a kill
    would (used by tests and by schedulers with wall-time limits).
    Returns the history rows.
    """
    run = set_up(spec, out_dir)
    show = sys.stderr.isatty() if progress is None else progress
    with run_folder(run.out):
        resume(run)
        if run.start_epoch > run.training["epochs"] and (run.out / "final.pt").exists():
            return run.history  # finished: rewrite nothing
        tracker = open_tracker(spec.get("tracking", "none"), run.out, run.history)
        clock = WallClock()  # stops before a scheduler's wall-time limit (soften.training.walltime)
        try:
            for epoch in range(run.start_epoch, run.training["epochs"] + 1):
                stats = train_epoch(run, epoch, show)
                lr = end_epoch(run, epoch)
                row = monitor(run, epoch, stats, lr)
                save_epoch(run, epoch, row)
                tracker.log_epoch(row)
                if stop_after_epoch is not None and epoch >= stop_after_epoch and epoch < run.training["epochs"]:
                    return run.history
                clock.check(epoch, run.training["epochs"], run.out)
            finish(run)
        finally:
            try:
                run.saver.wait()  # the last epoch's files are on disk before the lock is released
            finally:
                tracker.close()
    return run.history
