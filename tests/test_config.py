import copy
import subprocess
import sys

import pytest

from conftest import write_config
from soften.config import ConfigError, resolve_run, validate_config


def test_default_config_is_valid_and_defaults_are_filled(default_config):
    cfg = validate_config(copy.deepcopy(default_config))
    assert cfg["evaluation"]["batch_size"] == 512
    spec = resolve_run(cfg, "digits", "symmetric-0.4", "cnn", "pgd-at", 1)
    assert spec["training"]["epochs"] == 20 and spec["training"]["lr"] == 0.1
    assert spec["threat"] == {"eps": 0.1, "alpha": 0.025, "steps": 10}
    assert spec["noise_npz"] == "resources/noise/digits/symmetric-0.4.npz"


@pytest.mark.parametrize("mutate,where", [
    (lambda c: c["training"].update(lr=-1), "training/lr"),
    (lambda c: c["training"].update(learning_rate=0.1), "training"),
    (lambda c: c["experiment"].update(noise=["symetric-0.4"]), "experiment/noise/0"),
    (lambda c: c["experiment"].update(archs=["vgg16"]), "experiment/archs/0"),
    (lambda c: c["experiment"].update(datasets=["cifar10"]), "experiment/datasets"),
    (lambda c: c["experiment"].update(methods=["pgd-at+nonsense"]), "experiment/methods"),
    (lambda c: c["datasets"]["digits"]["threat"].pop("eps"), "datasets/digits/threat"),
    (lambda c: c["evaluation"]["attacks"].update(x={"kind": "nope"}), "evaluation/attacks/x/kind"),
])
def test_bad_config_is_rejected_naming_the_key(default_config, mutate, where):
    cfg = copy.deepcopy(default_config)
    mutate(cfg)
    with pytest.raises(ConfigError, match=f"at '{where}'"):
        validate_config(cfg)


def test_snakemake_rejects_a_bad_config_before_any_job(repo, default_config, tmp_path, subprocess_env):
    cfg = write_config(tmp_path / "bad.yaml", default_config, training={"momentum": 3})
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "all", "-s", str(repo / "workflow" / "Snakefile"),
         "--directory", str(tmp_path), "--configfile", str(cfg), "--cores", "1"],
        env=subprocess_env, capture_output=True, text=True,
    )
    assert proc.returncode != 0
    assert "momentum" in proc.stdout + proc.stderr
    assert not (tmp_path / "resources").exists() and not (tmp_path / "results").exists()


def test_cli_reports_config_errors_without_a_traceback(repo, default_config, tmp_path, subprocess_env):
    cfg = write_config(tmp_path / "bad.yaml", default_config, experiment={"methods": ["pgd-att"]})
    proc = subprocess.run(
        [sys.executable, "-m", "soften", "train", "--config", str(cfg), "--dataset", "digits", "--noise", "none",
         "--arch", "cnn", "--method", "pgd-att", "--out", str(tmp_path / "run")],
        env=subprocess_env, capture_output=True, text=True,
    )
    assert proc.returncode == 2
    assert "unknown method 'pgd-att'" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "run").exists()
