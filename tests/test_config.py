import copy
import subprocess
import sys

import pytest
import yaml

from conftest import write_config
from soften.pipeline.config import ConfigError, load_config, merge, resolve_run, validate_config


def test_default_config_is_valid_and_defaults_are_filled(default_config):
    cfg = validate_config(copy.deepcopy(default_config))
    assert cfg["evaluation"]["batch_size"] == 512
    spec = resolve_run(cfg, "digits", "symmetric-0.4", "cnn", "pgd-at", 1)
    assert spec["training"]["epochs"] == 60 and spec["training"]["lr"] == 0.1
    assert spec["training"]["monitor_every"] == 5 and spec["data_subset"] == {"train": 400}
    assert spec["threat"] == {"eps": 0.1, "alpha": 0.025, "steps": 10}
    assert spec["noise_npz"] == "resources/noise/digits/symmetric-0.4.npz"


@pytest.mark.parametrize("mutate,where", [
    (lambda c: c["training"].update(lr=-1), "training/lr"),
    (lambda c: c["training"].update(learning_rate=0.1), "training"),
    (lambda c: c["experiments"]["main"].update(noise=["symetric-0.4"]), "experiments/main/noise/0"),
    (lambda c: c["experiments"]["main"].update(archs=["vgg16"]), "experiments/main/archs/0"),
    (lambda c: c["experiments"]["main"].update(datasets=["cifar10"]), "experiments/main/datasets"),
    (lambda c: c["experiments"]["main"].update(methods=["pgd-at+nonsense"]), "experiments/main/methods"),
    (lambda c: c["experiments"]["main"].update(attacks=["pgd30"]), "experiments/main/attacks"),
    (lambda c: c["experiments"]["main"].update(kind="tabel"), "experiments/main/kind"),
    (lambda c: c["experiments"].update(train=c["experiments"]["main"]), "experiments/train"),
    (lambda c: c["experiments"]["main"]["claims"][0].update(direction="better"), "experiments/main/claims/0/direction"),
    (lambda c: c["experiments"]["autoattack"].update(claims=[c["experiments"]["main"]["claims"][0]]),
     "experiments/autoattack/claims/0/id"),
    (lambda c: c.update(seeds=0), "seeds"),
    (lambda c: c["experiments"]["transfer"].update(sources=["nope"]), "experiments/transfer/sources"),
    (lambda c: c["datasets"]["digits"]["threat"].pop("eps"), "datasets/digits/threat"),
    (lambda c: c["evaluation"]["attacks"].update(x={"kind": "nope"}), "evaluation/attacks/x/kind"),
    (lambda c: c["evaluation"]["attacks"]["pgd20"].update(stpes=3), "evaluation/attacks/pgd20"),
    (lambda c: c.update(variants={"pgd-at": {"method": "pgd-at"}}), "variants/pgd-at"),
    (lambda c: c.update(variants={"v": {"method": "pgd-at", "params": {"sglr": {"r": 0.1}}}}), "variants/v"),
    (lambda c: c.update(variants={"v": {"method": "pgd-at+sglr", "params": {"sglr": {"radius": 0.1}}}}), "variants/v"),
])
def test_bad_config_is_rejected_naming_the_key(default_config, mutate, where):
    cfg = copy.deepcopy(default_config)
    mutate(cfg)
    with pytest.raises(ConfigError, match=f"at '{where}'"):
        validate_config(cfg)


def test_a_transfer_source_that_is_also_a_target_is_rejected(default_config):
    cfg = copy.deepcopy(default_config)
    target = cfg["experiments"]["transfer"]
    # the transfer experiment's own first PGD-AT run as the source
    cfg["transfer"]["sources"]["cnn-at-s100"].update(seed=target["seeds"][0], arch=target["archs"][0],
                                                     noise=target["noise"][0], method="pgd-at")
    with pytest.raises(ConfigError, match="independent model"):
        validate_config(cfg)


def test_merge_replaces_empties_and_removes():
    base = {"a": {"x": 1, "y": {"z": 2}}, "l": [1, 2], "s": {"k": 1}}
    assert merge(base, {"a": {"y": {"w": 3}}}) == {"a": {"x": 1, "y": {"z": 2, "w": 3}}, "l": [1, 2], "s": {"k": 1}}
    assert merge(base, {"l": [3]})["l"] == [3]
    assert merge(base, {"s": {}})["s"] == {}          # an empty mapping empties the key
    assert "s" not in merge(base, {"s": None})       # null removes it (the documented default applies)
    assert base["s"] == {"k": 1}                     # inputs untouched


def test_an_experiment_file_takes_nothing_from_the_demo_config(repo, tmp_path):
    """The regression of issue 7: values the file leaves out are documented defaults, not the demo's."""
    demo = yaml.safe_load((repo / "config" / "config.yaml").read_text())
    exp = {
        "datasets": {"d": {"source": "digits", "threat": {"eps": 0.1, "alpha": 0.025, "steps": 10}}},
        "experiments": {"t": {"datasets": ["d"], "noise": ["none"], "archs": ["cnn"],
                              "methods": ["pgd-at+adr+wa", "pgd-at+te"], "seeds": [0], "attacks": ["natural"]}},
    }
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(exp))
    cfg = load_config(path)
    spec = resolve_run(cfg, "d", "none", "cnn", "pgd-at+adr+wa", 0)
    assert demo["methods"]["adr"]["ema_decay"] == 0.9 and demo["methods"]["wa"]["decay"] == 0.9   # the demo's
    assert spec["method_params"]["adr"]["ema_decay"] == 0.995          # ADR §5.1
    assert spec["method_params"]["wa"]["decay"] == 0.995               # ADR §5.1
    te = resolve_run(cfg, "d", "none", "cnn", "pgd-at+te", 0)["method_params"]["te"]
    assert (te["start_epoch"], te["ramp_end_epoch"]) == (90, 150)      # Dong et al. code, 200 epochs
    assert spec["training"]["epochs"] == 200 and cfg["transfer"]["sources"] == {}
    assert cfg["evaluation"]["attacks"] == {"natural": {"kind": "natural"}, "pgd20": {"kind": "pgd", "steps": 20}}
    assert cfg["results_dir"] == "results"


def test_an_overlay_can_empty_a_section(repo, tmp_path):
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("transfer: {sources: {}}\nexperiments: {transfer: null}\n")
    cfg = load_config([repo / "config" / "config.yaml", overlay])
    assert cfg["transfer"]["sources"] == {} and "transfer" not in cfg["experiments"]


def test_snakemake_rejects_a_bad_config_before_any_job(repo, default_config, tmp_path, subprocess_env):
    cfg = write_config(tmp_path / "bad.yaml", default_config, training={"momentum": 3})
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "all", "-s", str(repo / "workflow" / "Snakefile"),
         "--directory", str(tmp_path), "--configfile", str(cfg), "--cores", "1"],
        env=subprocess_env, capture_output=True, text=True,
    )
    assert proc.returncode != 0
    assert "training/momentum" in proc.stdout + proc.stderr
    assert not (tmp_path / "resources").exists() and not (tmp_path / "results").exists()


def test_cli_reports_config_errors_without_a_traceback(repo, default_config, tmp_path, subprocess_env):
    cfg = write_config(tmp_path / "bad.yaml", default_config, experiments={"main": {"methods": ["pgd-att"]}})
    proc = subprocess.run(
        [sys.executable, "-m", "soften", "train", "--configfile", str(cfg), "--dataset", "digits", "--noise", "none",
         "--arch", "cnn", "--method", "pgd-att", "--out", str(tmp_path / "run")],
        env=subprocess_env, capture_output=True, text=True,
    )
    assert proc.returncode == 2
    assert "unknown method 'pgd-att'" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "run").exists()


def test_show_config_prints_resolved_values_with_their_origin(repo, capsys):
    from soften.__main__ import main

    assert main(["show-config", "--configfile", str(repo / "config" / "adr.yaml"),
                 "--run", "cifar100/none/resnet18/pgd-at+adr/seed0"]) == 0
    lines = {line.split(":")[0]: line for line in capsys.readouterr().out.splitlines()}
    assert lines["method_params.adr.temperature_high"].split("#")[0].split(":")[1].strip() == "1.5"   # ADR §5.1, CIFAR-100
    assert lines["method_params.adr.temperature_high"].endswith("config/adr.yaml")
    assert "# default: reference code" in lines["training.attack_bn_mode"]
    assert main(["show-config", "--configfile", str(repo / "config" / "sglr.yaml"), "--config", "scale=smoke"]) == 0
    out = capsys.readouterr().out
    assert "results_dir: \"results/sglr-smoke\"" in out and "49 training runs" in out
    # The paper's networks at full scale; only the smoke scale cuts their width, and says so.
    assert main(["show-config", "--configfile", str(repo / "config" / "adr.yaml"),
                 "--run", "cifar10/none/wrn34-10/pgd-at/seed0"]) == 0
    assert "width_factor" not in capsys.readouterr().out
    assert main(["show-config", "--configfile", str(repo / "config" / "adr.yaml"), "--config", "scale=smoke",
                 "--run", "cifar10/none/wrn34-10/pgd-at/seed0"]) == 0
    lines = {line.split(":")[0]: line for line in capsys.readouterr().out.splitlines()}
    assert lines["width_factor"].split("#")[0].split(":")[1].strip() == "0.125" and "smoke scale" in lines["width_factor"]
