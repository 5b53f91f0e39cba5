"""Shared fixtures: the digits dataset fetched once, tiny run specs, and one finished
workflow run of every evaluation rule that several end-to-end tests read."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PYTHON_BIN = str(Path(sys.executable).parent)


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def default_config() -> dict:
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


@pytest.fixture(scope="session")
def digits_npz(tmp_path_factory) -> Path:
    from soften.data import fetch_dataset

    out = tmp_path_factory.mktemp("datasets") / "digits.npz"
    fetch_dataset("digits", {"val_size": 144, "val_seed": 0, "test_fraction": 0.2, "split_seed": 0}, out)
    return out


@pytest.fixture()
def tiny_spec(digits_npz, tmp_path):
    """A run spec for a fast digits run: a 400-image training subset, 3 epochs."""
    return tiny_spec_maker(digits_npz, tmp_path)


def tiny_spec_maker(digits_npz: Path, folder: Path):
    """:func:`tiny_spec`'s factory, its data in ``folder`` (for fixtures of a wider scope)."""
    from soften.data import load_dataset_npz
    from soften.io import save_npz
    from soften.pipeline.stages import noise as make_noise

    arrays = load_dataset_npz(digits_npz)
    small = dict(arrays)
    small["x_train"], small["y_train"] = arrays["x_train"][:400], arrays["y_train"][:400]
    small["x_val"], small["y_val"] = arrays["x_val"][:64], arrays["y_val"][:64]
    small["x_test"], small["y_test"] = arrays["x_test"][:64], arrays["y_test"][:64]
    npz = folder / "digits-small.npz"
    save_npz(npz, **small)
    noise = folder / "none.npz"
    make_noise(npz, "none", 0, noise)

    def make(method="pgd-at", **training):
        from soften.pipeline.config import TRAINING_DEFAULTS

        return {
            "dataset": "digits", "noise": "none", "arch": "cnn", "method": method, "seed": 0,
            "dataset_npz": str(npz), "noise_npz": str(noise), "device": "cpu", "threads": 1,
            "training": {**TRAINING_DEFAULTS, "epochs": 3, "batch_size": 64, "lr_milestones": [2],
                         "test_subset": None, "val_attack_steps": 3, **training},
            "threat": {"eps": 0.1, "alpha": 0.05, "steps": 3},
            "augment": {"crop_padding": 0, "flip": False},
            "method_params": {},
        }

    return make


@pytest.fixture()
def subprocess_env():
    """Environment for subprocesses: this interpreter's bin first on PATH."""
    env = dict(os.environ)
    env["PATH"] = PYTHON_BIN + os.pathsep + env.get("PATH", "")
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    return env


def write_config(path: Path, base: dict, **updates) -> Path:
    """``base`` with ``updates`` merged over it (soften's merge: ``{}`` empties a key, ``None`` drops it)."""
    from soften.pipeline.config import merge

    cfg = merge(copy.deepcopy(base), updates)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def snakemake_all(workdir: Path, config: Path, env: dict, *extra: str) -> subprocess.CompletedProcess:
    """``snakemake all`` of this checkout's workflow in ``workdir`` on 2 cores (the target
    first: --configfile, like --resources, swallows the words after it)."""
    cmd = [sys.executable, "-m", "snakemake", "all", "-s", str(REPO / "workflow" / "Snakefile"),
           "--directory", str(workdir), "--cores", "2", *extra, "--configfile", str(config)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True)


#: Digits shrunk to 2 epochs and 2-step PGD: what the end-to-end workflow tests train.
TINY_DIGITS = {"training": {"epochs": 2, "lr_milestones": [1]}, "threat": {"eps": 0.1, "alpha": 0.05, "steps": 2}}


@pytest.fixture(scope="session")
def every_rule_run(tmp_path_factory, default_config):
    """The default config's whole evaluation suite (AutoAttack, CW, transfer, calibration,
    sanity), shrunk to one 2-epoch run and a few test images, run once through the real
    workflow: (workdir, config file, the finished Snakemake process). Session-scoped, and its
    two readers are in one module (test_workflow.py), so it is built once in a run."""
    env = dict(os.environ)
    env["PATH"] = PYTHON_BIN + os.pathsep + env.get("PATH", "")
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    work = tmp_path_factory.mktemp("every-rule")
    one = {"noise": ["none"], "archs": ["cnn"], "methods": ["pgd-at"], "seeds": [0]}
    tiny = {
        "datasets": {"digits": TINY_DIGITS},
        "evaluation": {"n_examples": 40, "attacks": {"aa": {"n_examples": 10}}},
        "calibration": {"n_examples": 20, "inputs": {"square": {"settings": {"square.n_queries": 50}}}},
        "sanity": {"n_examples": 20},
        "experiments": {"main": {**one, "attacks": ["natural", "pgd20", "cw20"]},
                        "autoattack": {**one, "checkpoints": ["best"]}, "transfer": one,
                        "calibration": one, "masking": one},
    }
    cfg = write_config(work / "tiny.yaml", default_config, **tiny)
    # What this run checks is the rules' outputs, not process start-up (test_workflow's
    # end-to-end test and the DVC test start real processes): its jobs fork from a warm interpreter.
    from _warm_python import serve_warm, warm_env

    with serve_warm() as warm:
        return work, cfg, snakemake_all(work, cfg, warm_env(env, warm))


@pytest.fixture(scope="module")
def warm_python():
    """A warm interpreter for the module's Snakemake runs (tests/_warm_python.py): pass it to
    ``_warm_python.warm_env`` and their jobs' ``python -m soften`` fork from it."""
    from _warm_python import serve_warm

    with serve_warm() as warm:
        yield warm


#: The longest modules (tens of minutes at the smoke scale on 2 cores), started first.
LONGEST_FIRST = ("test_paper_smoke_adr.py", "test_paper_smoke_sglr.py")


def pytest_collection_modifyitems(items):
    """The end-to-end (slow) tests first, the paper configs' smoke DAGs first of all, each
    module's tests in their order: with two workers (make test: pytest -n 2 --dist
    loadfile --no-loadscope-reorder, which hands out modules in this order, one to each
    worker first), ADR's and SGLR's DAGs then start at once on different workers instead
    of leaving one worker alone with them at the end."""
    def key(item):
        name = item.path.name
        return (item.get_closest_marker("slow") is None,
                LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST))
    items.sort(key=key)
