"""The evaluate, transfer and calibration stages on a tiny digits checkpoint,
checked against direct model calls."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from _eval_fixtures import one_thread  # noqa: F401 (autouse)
from soften.data import fetch_dataset, load_dataset_npz
from soften.evaluation import (calibrate_checkpoint, craft_transfer, decode_mask, evaluate_checkpoint,
                               evaluate_transfer)
from soften.io import file_digest, save_torch
from soften.models import build_model
from soften.models.checkpoint import model_checkpoint

EPS = 0.1


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stages")
    npz = tmp / "digits.npz"
    fetch_dataset("digits", {"val_size": 0}, npz)
    arrays = load_dataset_npz(npz)
    ckpts = {}
    for name, arch, seed in (("target-a", "cnn", 0), ("target-b", "cnn", 1), ("source", "cnn-wide", 2)):
        torch.manual_seed(seed)
        model = build_model(arch, num_classes=10, in_channels=1, mean=arrays["mean"].tolist(), std=arrays["std"].tolist())
        spec = {"dataset": "digits", "noise": "none", "arch": arch, "method": "standard", "seed": seed}
        path = tmp / name / "best.pt"
        save_torch(model_checkpoint(model.state_dict(), spec=spec, model_args={"arch": arch, "num_classes": 10, "in_channels": 1},
                                    epoch=1, metrics={}, dataset_sha256=file_digest(npz)), path)
        ckpts[name] = (path, model.eval())
    x = torch.tensor(arrays["x_test"]).permute(0, 3, 1, 2).float() / 255
    y = torch.tensor(arrays["y_test"])
    return {"tmp": tmp, "npz": npz, "ckpts": ckpts, "x": x, "y": y}


def spec(**extra):
    return {"batch_size": 64, "n_examples": 40, "device": "cpu", "threads": 1, **extra}


def test_transfer_set_crafted_once_and_reused_by_targets(setup):
    tmp, (src_path, src_model) = setup["tmp"], setup["ckpts"]["source"]
    crafted = tmp / "transfer" / "pgd10.pt"
    meta = craft_transfer(src_path, setup["npz"], spec(source="wide", attack="pgd10",
                                                       params={"kind": "pgd", "eps": EPS, "steps": 10}), crafted)
    saved = torch.load(crafted, weights_only=True)
    # the set's bytes do not depend on the wall clock (written once, its time only in the log)
    assert "seconds" in meta and "seconds" not in saved["meta"]
    x, y = setup["x"][:40], setup["y"][:40]
    assert torch.equal(saved["y"], y)
    assert (saved["x_adv"] - x).abs().max() <= EPS + 1e-6 and saved["x_adv"].min() >= 0 and saved["x_adv"].max() <= 1
    with torch.no_grad():
        assert meta["source_accuracy"] == int((src_model(saved["x_adv"]).argmax(1) == y).sum()) / len(y)
    for name in ("target-a", "target-b"):
        path, model = setup["ckpts"][name]
        res = evaluate_transfer(path, crafted, spec(), tmp / f"{name}.json")
        with torch.no_grad():
            expected = model(saved["x_adv"]).argmax(1) == y
        assert np.array_equal(decode_mask(res["mask"]), expected.numpy())
        assert res["correct"] == int(expected.sum()) and res["source_name"] == "wide" and res["record"] == "transfer"


def test_evaluate_writes_mask_and_autoattack_counts(setup):
    path, model = setup["ckpts"]["target-a"]
    fast = {"apgd.n_iter": 5, "apgd_targeted.n_iter": 5, "fab.n_iter": 5, "square.n_queries": 50}
    out = setup["tmp"] / "aa.json"
    res = evaluate_checkpoint(path, setup["npz"], spec(attack="aa", params={"kind": "autoattack", "eps": EPS, "settings": fast}), out)
    saved = json.loads(out.read_text())
    mask = decode_mask(saved["mask"])
    assert len(mask) == 40 and mask.sum() == saved["correct"] == res["correct"]
    counts = saved["details"]["counts"]
    assert saved["details"]["attacks"] == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert set(counts) == {"clean", *saved["details"]["attacks"]} and counts["square"] == saved["correct"]
    with torch.no_grad():
        assert counts["clean"] == int((model(setup["x"][:40]).argmax(1) == setup["y"][:40]).sum())


def test_calibration_record(setup):
    path, model = setup["ckpts"]["target-a"]
    inputs = {"clean": {"kind": "natural", "eps": EPS}, "pgd10": {"kind": "pgd", "eps": EPS, "steps": 10}}
    res = calibrate_checkpoint(path, setup["npz"], spec(inputs=inputs, n_bins=15), setup["tmp"] / "cal.json")
    with torch.no_grad():
        probs = torch.softmax(model(setup["x"][:40]).double(), 1)
    conf, pred = probs.max(1)
    assert res["inputs"]["clean"]["mean_confidence"] == pytest.approx(conf.mean().item())
    assert res["inputs"]["clean"]["accuracy"] == (pred == setup["y"][:40]).double().mean().item()
    assert len(res["inputs"]["pgd10"]["bins"]) == 15
    assert res["inputs"]["pgd10"]["accuracy"] <= res["inputs"]["clean"]["accuracy"]
