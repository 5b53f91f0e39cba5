"""Faults seen through the real Snakemake workflow: a diverging run never reaches a
table, and a training job does not outlive a Snakemake killed with SIGKILL."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import write_config
from soften.io import load_torch
from soften.models.checkpoint import first_non_finite

pytestmark = pytest.mark.slow

RUN = Path("results/{dataset}/none/cnn/pgd-at/seed0")


def snakemake_cmd(repo, workdir, config, *extra):
    return [sys.executable, "-m", "snakemake", "all", "-s", str(repo / "workflow" / "Snakefile"),
            "--directory", str(workdir), "--cores", "2", *extra, "--configfile", str(config)]


def one_run_config(tmp_path, default_config, datasets):
    grid = {"datasets": list(datasets), "noise": ["none"], "archs": ["cnn"], "methods": ["pgd-at"], "seeds": [0],
            "attacks": ["natural"]}
    digits = default_config["datasets"]["digits"]
    return write_config(tmp_path / "faults.yaml", default_config, **{
        "datasets": {name: {**digits, "training": {**digits["training"], **training}} for name, training in datasets.items()},
        "experiments": {"main": grid, "autoattack": None, "transfer": None, "calibration": None, "masking": None},
        "transfer": {"sources": {}},
    })


def test_a_diverging_run_never_reaches_a_table(repo, default_config, tmp_path, subprocess_env):
    # lr 1e3 diverges in epoch 1, lr 50 some epochs in (BatchNorm's running variance overflows
    # while the loss is still finite; the loss grows ~1000x an epoch, past float32 within 12
    # epochs). Neither may be evaluated or tabulated.
    datasets = {"digits-lr1000": {"lr": 1000.0, "epochs": 4, "lr_milestones": [20]},
                "digits-lr50": {"lr": 50.0, "epochs": 12, "lr_milestones": [20]}}
    cfg = one_run_config(tmp_path, default_config, datasets)
    proc = subprocess.run(snakemake_cmd(repo, tmp_path, cfg, "--keep-going"), env=subprocess_env,
                          capture_output=True, text=True)
    assert proc.returncode != 0
    assert not (tmp_path / "results" / "tables").exists() or not list((tmp_path / "results" / "tables").iterdir())
    assert not list(tmp_path.glob("results/**/eval/*.json"))
    for name in datasets:
        run = tmp_path / str(RUN).format(dataset=name)
        assert not (run / "final.pt").exists()
        log = (tmp_path / "results/logs/train" / name / "none/cnn/pgd-at/seed0.log").read_text()
        assert "Traceback" not in log
        assert "soften train: error: training diverged" in log or "soften train: error: non-finite training loss" in log
        if (run / "last.pt").exists():   # the last good state is kept, finite
            state = load_torch(run / "last.pt")
            assert f"last.pt still holds epoch {state['epoch']}" in log
            assert first_non_finite({k: state[k] for k in ("model", "optimizer")}) is None
        else:
            assert "no epoch of this run has been saved" in log
    assert (tmp_path / str(RUN).format(dataset="digits-lr50") / "last.pt").exists()  # lr 50 gets past epoch 1


def _alive(pid):
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="jobs follow Snakemake through prctl/pidfd (Linux)")
def test_a_training_job_ends_when_snakemake_is_killed(repo, default_config, tmp_path, subprocess_env):
    # 20 cheap epochs: killed once the first is saved, leaving ample time on a fast machine.
    cfg = one_run_config(tmp_path, default_config, {"digits": {"epochs": 20, "lr_milestones": [15], "val_attack_steps": 2,
                                                               "test_subset": 50}})
    smk = subprocess.Popen(snakemake_cmd(repo, tmp_path, cfg), env=subprocess_env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run = tmp_path / str(RUN).format(dataset="digits")
    deadline = time.time() + 300
    while time.time() < deadline and smk.poll() is None:
        history = run / "history.csv"
        if history.exists() and len(history.read_text().splitlines()) >= 2:  # training, one epoch saved
            break
        time.sleep(0.2)
    assert smk.poll() is None, "Snakemake ended before the job could be tested"
    train_pid = int((run / ".train.lock").read_text())
    assert _alive(train_pid)
    smk.send_signal(signal.SIGKILL)
    smk.wait()
    deadline = time.time() + 30
    while _alive(train_pid) and time.time() < deadline:
        time.sleep(0.2)
    assert not _alive(train_pid), "the training job outlived Snakemake"
    assert load_torch(run / "last.pt")["epoch"] >= 1            # the last good state, readable
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]
    # What docs/troubleshooting.md says to do next: unlock, then run the same command again.
    locked = subprocess.run(snakemake_cmd(repo, tmp_path, cfg), env=subprocess_env, capture_output=True, text=True)
    assert locked.returncode != 0 and "--unlock" in locked.stdout + locked.stderr
    unlock = subprocess.run(snakemake_cmd(repo, tmp_path, cfg, "--unlock"), env=subprocess_env, capture_output=True,
                            text=True)
    assert unlock.returncode == 0, unlock.stderr[-2000:]
    again = subprocess.run(snakemake_cmd(repo, tmp_path, cfg), env=subprocess_env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming" in (tmp_path / "results/logs/train/digits/none/cnn/pgd-at/seed0.log").read_text()
    assert (tmp_path / "results" / "tables" / "main.md").exists()
