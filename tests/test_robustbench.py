"""RobustBench export: a tiny trained and evaluated digits run is exported, the exported
model loads without soften's code and predicts exactly as the run's checkpoint, and the
card carries RobustBench's fields with the run's numbers and honest footnotes."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from soften.data import load_dataset_npz
from soften.evaluation import evaluate_checkpoint
from soften.models.checkpoint import load_model
from soften.tools.robustbench import card, eps_text
from soften.training.loop import train

from conftest import tiny_spec_maker

#: The fields of RobustBench's model_info JSON files (e.g. model_info/cifar10/Linf/Chen2024Data_WRN_34_10.json).
ROBUSTBENCH_FIELDS = ["link", "name", "authors", "additional_data", "number_forward_passes", "dataset", "venue",
                      "architecture", "eps", "clean_acc", "reported", "autoattack_acc", "footnote", "unreliable"]

# Loads the export the way a RobustBench user would, with soften made unimportable.
LOAD_WITHOUT_SOFTEN = """
import importlib.util, json, sys
import numpy as np, torch
sys.modules["soften"] = None   # any `import soften` now raises ImportError
out, npz, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
spec = importlib.util.spec_from_file_location("exported", out + "/model.py")
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
model = module.load_model()
assert isinstance(model, torch.nn.Module) and not model.training
with np.load(npz) as f:
    x = torch.from_numpy(f["x_test"][:n]).permute(0, 3, 1, 2).float() / 255
with torch.no_grad():
    print(json.dumps(model(x).argmax(1).tolist()))
"""


@pytest.fixture(scope="module")
def evaluated_run(digits_npz, tmp_path_factory):
    """Trained and evaluated once for the module's tests (they carry one xdist_group)."""
    tmp_path = tmp_path_factory.mktemp("robustbench")
    spec = tiny_spec_maker(digits_npz, tmp_path)("pgd-at")
    run = tmp_path / "run"
    train(spec, run)
    eval_spec = {"batch_size": 64, "n_examples": None, "device": "cpu", "threads": 1}
    natural = evaluate_checkpoint(run / "best.pt", spec["dataset_npz"],
                                  {**eval_spec, "attack": "natural", "params": {"kind": "natural", "eps": 0.1}},
                                  run / "eval" / "best-natural.json")
    fast = {"apgd.n_iter": 5, "apgd_targeted.n_iter": 5, "fab.n_iter": 5, "square.n_queries": 20}
    aa = evaluate_checkpoint(run / "best.pt", spec["dataset_npz"],
                             {**eval_spec, "n_examples": 16, "attack": "aa",
                              "params": {"kind": "autoattack", "eps": 0.1, "settings": fast}},
                             run / "eval" / "best-aa.json")
    return run, spec, natural, aa


@pytest.mark.slow
@pytest.mark.xdist_group("robustbench_run")
def test_export_round_trip_without_soften(evaluated_run, tmp_path, subprocess_env):
    run, spec, natural, aa = evaluated_run
    out = tmp_path / "export"
    proc = subprocess.run([sys.executable, "-m", "soften", "export-robustbench", str(run), "--out", str(out),
                           "--name", "Soften2026Digits"], env=subprocess_env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == ["Soften2026Digits.json", "Soften2026Digits.pt", "model.py",
                                                     "provenance.json"]

    n = natural["n"]
    env = {k: v for k, v in subprocess_env.items() if k != "PYTHONPATH"}
    loaded = subprocess.run([sys.executable, "-c", LOAD_WITHOUT_SOFTEN, str(out), spec["dataset_npz"], str(n)],
                            env=env, cwd=tmp_path, capture_output=True, text=True)
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    exported_pred = np.array(json.loads(loaded.stdout))

    model, _ = load_model(run / "best.pt")
    arrays = load_dataset_npz(spec["dataset_npz"])
    x = torch.from_numpy(arrays["x_test"][:n]).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        soften_pred = model(x).argmax(1).numpy()
    assert np.array_equal(exported_pred, soften_pred)
    # ... and so the same accuracy as the run's own evaluation of that checkpoint.
    assert (exported_pred == arrays["y_test"][:n]).mean() == natural["accuracy"]

    info = json.loads((out / "Soften2026Digits.json").read_text())
    assert list(info) == ROBUSTBENCH_FIELDS
    assert info["clean_acc"] == f"{100 * natural['accuracy']:.2f}"
    assert info["autoattack_acc"] == f"{100 * aa['correct'] / 16:.2f}"
    assert info["eps"] == "0.1" and info["dataset"] == "digits" and info["additional_data"] is False
    assert info["number_forward_passes"] == 1 and info["architecture"] == "cnn (soften)"
    for note in (f"AutoAttack on the first 16 test images only; clean accuracy on {n}.", "Non-standard AutoAttack",
                 "'digits' is not a RobustBench dataset", "Architecture 'cnn' is not one RobustBench knows"):
        assert note in info["footnote"]
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["threat_model"] == "Linf" and prov["evaluations"]["autoattack"]["n"] == 16


@pytest.mark.slow
@pytest.mark.xdist_group("robustbench_run")
def test_stale_evaluation_is_refused(evaluated_run, tmp_path, subprocess_env):
    run, *_ = evaluated_run
    path = run / "eval" / "best-natural.json"
    original = path.read_text()
    rec = json.loads(original)
    rec["checkpoint_epoch"] += 1  # as if best.pt had been replaced by a later training
    path.write_text(json.dumps(rec))
    try:
        proc = subprocess.run([sys.executable, "-m", "soften", "export_robustbench", str(run), "--out",
                               str(tmp_path / "x")], env=subprocess_env, capture_output=True, text=True)
    finally:
        path.write_text(original)  # the run is shared by the module's tests
    assert proc.returncode == 2
    assert "re-run the evaluation before exporting" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "x").exists()


def test_card_of_a_paper_setting_cites_the_paper():
    """SGLR Table 2, PGD-AT + SGLR on CIFAR-10 / ResNet-18, best checkpoint: AutoAttack 51.2 (the paper)."""
    spec = {"dataset": "cifar10", "noise": "none", "arch": "resnet18", "method": "pgd-at+sglr",
            "base_method": "pgd-at+sglr", "seed": 0, "threat": {"eps": 8 / 255}, "training": {"epochs": 200},
            "method_params": {}}
    evals = {"natural": {"n": 10000, "accuracy": 0.8291, "params": {"kind": "natural", "eps": 8 / 255}},
             "autoattack": {"n": 10000, "accuracy": 0.5097, "params": {"kind": "autoattack", "eps": 8 / 255,
                                                                        "version": "standard"}, "details": {}}}
    info = card({"spec": spec, "epoch": 103}, evals, "best")
    assert info["link"] == "https://arxiv.org/abs/2403.09101" and info["venue"] == "CVPR 2024"
    assert info["authors"].startswith("Daiwei Yu, Zhuorong Li")
    assert (info["eps"], info["clean_acc"], info["autoattack_acc"], info["reported"]) == ("8/255", "82.91", "50.97", "51.20")
    assert info["architecture"] == "ResNet-18"
    assert "first" not in info["footnote"] and "Non-standard" not in info["footnote"]
    assert "not into RobustBench's ResNet-18 class" in info["footnote"]


def test_eps_text():
    assert [eps_text(e) for e in (8 / 255, 4 / 255, 0.5, 0.1)] == ["8/255", "4/255", "0.5", "0.1"]


def test_a_smoke_width_model_exports_at_its_own_width(tmp_path):
    """The standalone model.py rebuilds a smoke-scale checkpoint's narrower network: the
    exported state_dict loads into it (strict), as it would not into the published width."""
    import torch

    from soften.models import build_model
    from soften.tools.robustbench import import_loader, loader_source

    args = {"arch": "wrn34-10", "num_classes": 10, "in_channels": 3, "width_factor": 0.125}
    model = build_model(**args, mean=[0.5] * 3, std=[0.25] * 3)
    torch.save(model.state_dict(), tmp_path / "m.pt")
    (tmp_path / "model.py").write_text(loader_source("m", args))
    loaded = import_loader(tmp_path / "model.py").load_model(tmp_path / "m.pt")
    x = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(loaded(x), model.eval()(x))
