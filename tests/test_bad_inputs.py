"""Every bad input gets one clear line: each test feeds a corrupt, foreign or
inconsistent file to the command that reads it and checks the message (the file
named, what is wrong), exit status 2, no traceback, and that nothing was written."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from soften.__main__ import main
from soften.data import fetch_dataset, load_dataset_npz
from soften.io import file_digest, load_torch, save_npz, save_torch
from soften.models import build_model
from soften.models.checkpoint import model_checkpoint

NATURAL = {"attack": "natural", "params": {"kind": "natural", "eps": 0.1}, "batch_size": 64, "n_examples": 20}


def cli(capsys, *argv):
    """Run ``python -m soften ARGV`` in-process: (exit status, stderr)."""
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def assert_one_line(code, err, stage, *needles):
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"soften {stage}: error: "), err
    print(lines[0])  # shown with pytest -s: the messages as a user sees them
    for needle in needles:
        assert str(needle) in lines[0], (needle, lines[0])


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A fetched digits dataset (npz + sidecar) and a best.pt of an untrained CNN for it."""
    root = tmp_path_factory.mktemp("bad-inputs")
    npz = root / "digits.npz"
    fetch_dataset("digits", {"val_size": 0}, npz)
    arrays = load_dataset_npz(npz)
    torch.manual_seed(0)
    model = build_model("cnn", num_classes=10, in_channels=1, mean=arrays["mean"].tolist(), std=arrays["std"].tolist())
    spec = {"dataset": "digits", "noise": "none", "arch": "cnn", "method": "standard", "seed": 0}
    ckpt = model_checkpoint(model.state_dict(), spec=spec, model_args={"arch": "cnn", "num_classes": 10, "in_channels": 1},
                            epoch=1, metrics={}, dataset_sha256=file_digest(npz))
    save_torch(ckpt, root / "best.pt")
    return {"root": root, "npz": npz, "arrays": arrays, "ckpt": ckpt}


def copy_dataset(data, folder, **replace):
    """The dataset with some arrays replaced, written with a matching sidecar (as fetch would)."""
    folder.mkdir(parents=True, exist_ok=True)
    npz = folder / "digits.npz"
    save_npz(npz, **{**data["arrays"], **replace})
    meta = json.loads(data["npz"].with_suffix(".json").read_text())
    meta["sha256"] = file_digest(npz)
    meta["num_classes"] = len(replace.get("class_names", data["arrays"]["class_names"]))
    (folder / "digits.json").write_text(json.dumps(meta))
    return npz


# ---------------------------------------------------------------- dataset files

@pytest.mark.parametrize("damage,problem", [
    (lambda b: b[: len(b) // 2], "is truncated or corrupt"),
    (lambda b: os.urandom(4096), "is not a zip archive"),
    (lambda b: b"", "is empty"),
])
def test_an_unreadable_dataset_npz_is_named(data, tmp_path, capsys, damage, problem):
    npz = tmp_path / "digits.npz"
    npz.write_bytes(damage(data["npz"].read_bytes()))
    out = tmp_path / "noise.npz"
    code, err = cli(capsys, "noise", "--dataset-npz", npz, "--noise", "symmetric-0.2", "--out", out)
    assert_one_line(code, err, "noise", npz, "is not a readable soften dataset npz", problem, "re-run fetch")
    assert "pickle" not in err and not out.exists()


def test_a_dataset_that_differs_from_its_sidecar_is_refused(data, tmp_path, capsys):
    npz = copy_dataset(data, tmp_path)
    arrays = dict(data["arrays"])
    arrays["y_test"] = arrays["y_test"].copy()
    arrays["y_test"][0] = (arrays["y_test"][0] + 1) % 10   # a plausible edit: every content check passes
    save_npz(npz, **arrays)
    code, err = cli(capsys, "noise", "--dataset-npz", npz, "--noise", "none", "--out", tmp_path / "n.npz")
    assert_one_line(code, err, "noise", npz, f"has sha256 {file_digest(npz)[:16]}", "digits.json",
                    "changed after fetch", "re-run fetch")
    assert not (tmp_path / "n.npz").exists()


@pytest.mark.parametrize("key,value,problem", [
    ("y_train", lambda a: np.where(np.arange(len(a["y_train"])) == 5, 10, a["y_train"]), "holds y_train label 10, outside the 10 classes"),
    ("y_test", lambda a: a["y_test"] - 1, "holds y_test label -1, outside the 10 classes"),
    ("y_val", lambda a: a["y_test"].astype(np.float32), "holds y_val of dtype float32"),
    ("x_test", lambda a: a["x_test"].astype(np.float32) / 255, "holds x_test of dtype float32"),
    ("x_train", lambda a: a["x_train"][:, :, :4], "of one shape (8, 4, 1)"),
    ("class_names", lambda a: np.asarray(["only"]), "lists 1 class names"),
])
def test_dataset_content_is_checked_when_loaded(data, tmp_path, capsys, key, value, problem):
    npz = copy_dataset(data, tmp_path, **{key: value(data["arrays"])})
    code, err = cli(capsys, "noise", "--dataset-npz", npz, "--noise", "none", "--out", tmp_path / "n.npz")
    assert_one_line(code, err, "noise", npz, problem)


def test_a_dataset_without_sidecar_still_loads_with_a_warning(data, tmp_path, caplog):
    npz = tmp_path / "hand-made.npz"
    shutil.copy(data["npz"], npz)
    assert load_dataset_npz(npz)["y_train"].shape == data["arrays"]["y_train"].shape
    assert "has no hand-made.json sidecar" in caplog.text


def test_the_dataset_is_hashed_once_per_process(data, tmp_path, monkeypatch):
    npz = copy_dataset(data, tmp_path)
    calls = []
    import soften.data.fetch as fetch

    real = fetch.file_digest
    monkeypatch.setattr(fetch, "file_digest", lambda p: calls.append(p) or real(p))
    for _ in range(3):
        load_dataset_npz(npz)
    assert len(calls) == 1


# ---------------------------------------------------------------- noise files and training inputs

def _train_spec(data, tmp_path, noise_labels, **extra):
    noise = tmp_path / "noise.npz"
    save_npz(noise, y_train_noisy=noise_labels, flipped=np.zeros(len(noise_labels), dtype=bool))
    spec = {"dataset": "digits", "noise": "none", "arch": "cnn", "method": "standard", "seed": 0,
            "dataset_npz": str(data["npz"]), "noise_npz": str(noise), "device": "cpu", "threads": 1,
            "training": {"epochs": 1, "batch_size": 64, "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4,
                         "nesterov": False, "lr_milestones": [], "lr_gamma": 0.1, "attack_bn_mode": "train",
                         "amp": "off", "val_attack_steps": 0, "test_subset": None, "eval_batch_size": 256,
                         "nan_check_every": 1},
            "threat": {"eps": 0.1, "alpha": 0.025, "steps": 1}, "augment": {"crop_padding": 0, "flip": False},
            "method_params": {}}
    spec.update(extra)
    return spec, noise


@pytest.mark.parametrize("labels,problem", [
    (lambda y: np.where(np.arange(len(y)) == 3, 12, y), "holds y_train_noisy label 12, outside the 10 classes"),
    (lambda y: y[:-1], "holds 1436 y_train_noisy for 1437 images"),
])
def test_bad_noisy_labels_stop_training_before_a_run_folder_exists(data, tmp_path, capsys, labels, problem):
    spec, noise = _train_spec(data, tmp_path, labels(data["arrays"]["y_train"]))
    out = tmp_path / "run"
    code, err = cli(capsys, "train", "--spec", json.dumps(spec), "--out", out)
    assert_one_line(code, err, "train", noise, problem, "re-run the noise stage")
    assert not out.exists()


@pytest.mark.parametrize("field,value,problem", [
    ("arch", "foo", "unknown architecture 'foo'"),
    ("method", "pgd-at+nope", "nope"),
])
def test_a_bad_spec_leaves_no_run_folder(data, tmp_path, capsys, field, value, problem):
    spec, _ = _train_spec(data, tmp_path, data["arrays"]["y_train"], **{field: value})
    out = tmp_path / "run"
    code, err = cli(capsys, "train", "--spec", json.dumps(spec), "--out", out)
    assert_one_line(code, err, "train", problem)
    assert not out.exists()


def test_a_spec_that_is_not_json_is_one_line(capsys, tmp_path):
    code, err = cli(capsys, "train", "--spec", "{dataset: digits", "--out", tmp_path / "run")
    assert_one_line(code, err, "train", "--spec is not valid JSON")


# ---------------------------------------------------------------- checkpoints given to evaluation

class _Payload:
    """Runs code when unpickled, as a malicious or foreign checkpoint would."""

    marker = ""

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _evaluate(capsys, data, checkpoint, out, npz=None):
    return cli(capsys, "evaluate", "--checkpoint", checkpoint, "--dataset-npz", npz or data["npz"],
               "--spec", json.dumps([NATURAL]), "--out", out, "--device", "cpu")


@pytest.mark.parametrize("damage,problem", [
    (lambda b: b[: len(b) // 2], "is truncated or corrupt"),
    (lambda b: b[:100], "is truncated or corrupt"),
    (lambda b: b"\x80" + os.urandom(2000), "is not a soften checkpoint: it is a plain Python pickle"),
    (lambda b: os.urandom(2000), "is truncated or corrupt (no zip header)"),
    (lambda b: b"", "is truncated or corrupt (empty)"),
])
def test_a_damaged_checkpoint_is_named(data, tmp_path, capsys, damage, problem):
    final = tmp_path / "final.pt"
    final.write_bytes(damage((data["root"] / "best.pt").read_bytes()))
    out = tmp_path / "final-natural.json"
    code, err = _evaluate(capsys, data, final, out)
    assert_one_line(code, err, "evaluate", final, problem)
    assert "weights_only" not in err and not out.exists()


def test_a_pickle_payload_is_not_a_soften_checkpoint_and_never_runs(data, tmp_path, capsys):
    marker = tmp_path / "payload-ran"
    payload = _Payload()
    payload.marker = str(marker)
    evil = tmp_path / "best.pt"
    torch.save({"format": "soften-model-v1", "model": payload}, evil)
    code, err = _evaluate(capsys, data, evil, tmp_path / "out.json")
    assert_one_line(code, err, "evaluate", evil, "is not a soften checkpoint: it holds a Python pickle", "will not load")
    assert "weights_only" not in err and "unsafe" not in err.lower()
    assert not marker.exists() and not (tmp_path / "out.json").exists()


def test_a_checkpoint_with_non_finite_weights_is_refused(data, tmp_path, capsys):
    ckpt = dict(data["ckpt"])
    ckpt["model"] = dict(ckpt["model"])
    name = next(k for k in ckpt["model"] if k.endswith("running_var"))
    ckpt["model"][name] = ckpt["model"][name].clone()
    ckpt["model"][name][0] = float("inf")
    path = tmp_path / "best.pt"
    save_torch(ckpt, path)
    code, err = _evaluate(capsys, data, path, tmp_path / "out.json")
    assert_one_line(code, err, "evaluate", path, f"non-finite values (NaN or inf) in tensor '{name}'", "diverged")
    assert not (tmp_path / "out.json").exists()


def test_foreign_and_mismatched_checkpoints_are_refused(data, tmp_path, capsys):
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, foreign)
    code, err = _evaluate(capsys, data, foreign, tmp_path / "a.json")
    assert_one_line(code, err, "evaluate", foreign, "is not a soften model checkpoint")

    wrong = dict(data["ckpt"], model_args={"arch": "cnn-wide", "num_classes": 10, "in_channels": 1})
    save_torch(wrong, tmp_path / "wrong-arch.pt")
    code, err = _evaluate(capsys, data, tmp_path / "wrong-arch.pt", tmp_path / "b.json")
    assert_one_line(code, err, "evaluate", "wrong-arch.pt", "does not hold a complete model of its architecture")

    cifar_like = copy_dataset(data, tmp_path / "other", class_names=np.asarray([str(i) for i in range(12)]))
    code, err = _evaluate(capsys, data, data["root"] / "best.pt", tmp_path / "c.json", npz=cifar_like)
    assert_one_line(code, err, "evaluate", "best.pt", "model for 10 classes", "has 12 classes")
    assert not list(tmp_path.glob("*.json"))


# ---------------------------------------------------------------- transfer sets

@pytest.fixture(scope="module")
def crafted(data):
    from soften.evaluation import craft_transfer

    path = data["root"] / "transfer" / "pgd.pt"
    craft_transfer(data["root"] / "best.pt", data["npz"], {"source": "s", "attack": "pgd", "batch_size": 64,
                   "n_examples": 16, "params": {"kind": "pgd", "eps": 0.1, "steps": 2}, "device": "cpu"}, path)
    return path


def _evaluate_transfer(capsys, data, crafted_path, out):
    return cli(capsys, "evaluate_transfer", "--checkpoint", data["root"] / "best.pt", "--crafted", crafted_path,
               "--out", out, "--device", "cpu")


def test_transfer_checks_the_dataset_file_not_only_its_name(data, crafted, tmp_path, capsys):
    code, err = _evaluate_transfer(capsys, data, crafted, tmp_path / "ok.json")
    assert code == 0 and (tmp_path / "ok.json").exists()
    other = load_torch(crafted)
    other["meta"]["dataset_sha256"] = "0" * 64   # crafted on another version of digits
    save_torch(other, tmp_path / "other.pt")
    code, err = _evaluate_transfer(capsys, data, tmp_path / "other.pt", tmp_path / "bad.json")
    assert_one_line(code, err, "evaluate_transfer", "other.pt", "sha256 0000000000000000", "best.pt was trained on")
    assert not (tmp_path / "bad.json").exists()


@pytest.mark.parametrize("poison,problem", [
    (lambda x: x * 255, "outside [0, 1]"),
    (lambda x: torch.where(torch.arange(x.numel()).view_as(x) == 7, float("nan"), x), "non-finite input images"),
])
def test_transfer_refuses_inputs_that_are_not_images_in_0_1(data, crafted, tmp_path, capsys, poison, problem):
    bad = load_torch(crafted)
    bad["x_adv"] = poison(bad["x_adv"])
    save_torch(bad, tmp_path / "bad.pt")
    code, err = _evaluate_transfer(capsys, data, tmp_path / "bad.pt", tmp_path / "bad.json")
    assert_one_line(code, err, "evaluate_transfer", "bad.pt", problem)
    assert not (tmp_path / "bad.json").exists()


# ---------------------------------------------------------------- what the CLI treats as a bug

def test_a_bug_keeps_its_traceback(monkeypatch, tmp_path):
    from soften.pipeline import stages

    def broken(*args, **kwargs):
        raise RuntimeError("shape mismatch deep inside")

    monkeypatch.setattr(stages, "noise", broken)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        main(["noise", "--dataset-npz", "x.npz", "--noise", "none", "--out", str(tmp_path / "n.npz")])


def test_out_of_gpu_memory_is_one_line_with_advice(monkeypatch, tmp_path, capsys):
    from soften.pipeline import stages

    def oom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(stages, "noise", oom)
    code, err = cli(capsys, "noise", "--dataset-npz", "x.npz", "--noise", "none", "--out", tmp_path / "n.npz")
    assert_one_line(code, err, "noise", "out of GPU memory", "lower the batch size")


@pytest.mark.slow
def test_the_real_command_prints_one_line_and_exits_2(data, tmp_path, subprocess_env):
    broken = tmp_path / "digits.npz"
    broken.write_bytes(data["npz"].read_bytes()[:5000])
    proc = subprocess.run([sys.executable, "-m", "soften", "noise", "--dataset-npz", str(broken), "--noise", "none",
                           "--out", str(tmp_path / "n.npz")], env=subprocess_env, capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"soften noise: error: {broken} is not a readable soften dataset npz: it is truncated or corrupt (BadZipFile); "
        "delete it and digits.json, and re-run fetch"]
