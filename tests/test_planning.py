"""Planning: what the Snakemake rules ask per job comes from one soften.pipeline.jobs.Index per
config (each question answered once, so planning grows linearly with the grid;
benchmarks/planning.py measures it). Its answers must be exactly those of the plain
per-call functions, on every paper config."""

from __future__ import annotations

import pytest

from soften.pipeline import jobs as J
from soften.pipeline import layout as L
from soften.pipeline.config import load_config, required_runs

from conftest import REPO


@pytest.mark.parametrize("name", ["config.yaml", "sglr.yaml", "adr.yaml", "cifar10-mini.yaml"])
def test_indexed_answers_equal_the_unindexed_ones(name):
    cfg = load_config([REPO / "config" / name])
    ix = J.Index(cfg)
    assert ix.batched == L.batched_attacks(cfg)
    runs = required_runs(cfg)
    # asked twice, in another order: a cached answer must not depend on who asked first
    for run in runs + runs[::-1]:
        assert ix.run_spec(run) == J.run_spec(cfg, run), run.label
        assert ix.teacher_checkpoints(run) == J.teacher_checkpoints(cfg, run), run.label
    datasets = list(dict.fromkeys(r.dataset for r in runs))
    for d in datasets:
        assert ix.fetch_entry(d) == J.fetch_entry(cfg, d)
        assert ix.eval_specs(d) == J.eval_specs(cfg, d)
        for attack in cfg["evaluation"]["attacks"]:
            assert ix.attack_spec(d, attack) == J.attack_spec(cfg, d, attack)
        if L.kind_runs(cfg, "calibration"):
            assert ix.calibration_spec(d) == J.calibration_spec(cfg, d)
        if L.kind_runs(cfg, "sanity"):
            assert ix.sanity_spec(d) == J.sanity_spec(cfg, d)
    for d, source, attack in L.transfer_sets(cfg):
        assert ix.transfer_spec(d, source, attack) == J.transfer_spec(cfg, d, source, attack)
        assert ix.source_checkpoint(d, source) == J.source_checkpoint(cfg, d, source)
    for e in cfg["experiments"]:
        assert ix.table_spec(e) == J.table_spec(cfg, e)
        assert ix.experiment_inputs(e) == L.experiment_inputs(cfg, e)
        assert ix.figure_inputs(e) == L.figure_inputs(cfg, e)


def test_an_index_answers_from_its_own_config():
    """Two configs, two indexes: neither answers with the other's values."""
    cfg = load_config([REPO / "config" / "config.yaml"])
    other = load_config([REPO / "config" / "config.yaml"], {"resources_dir": "elsewhere"})
    run = required_runs(cfg)[0]
    a, b = J.Index(cfg), J.Index(other)
    assert f'"dataset_npz": "elsewhere/datasets/{run.dataset}.npz"' in b.run_spec(run)
    assert "elsewhere" not in a.run_spec(run)
