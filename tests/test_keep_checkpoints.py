"""keep_checkpoints: false (the smoke scale) drops what a finished run no longer needs."""

from soften.pipeline import stages
from soften.pipeline.config import load_config


def test_a_finished_run_drops_its_resume_state_only_when_asked(tiny_spec, tmp_path):
    spec = tiny_spec("pgd-at", epochs=1)
    kept, dropped = tmp_path / "kept", tmp_path / "dropped"
    stages.train(spec, kept, keep_resume_state=True)
    stages.train(spec, dropped, keep_resume_state=False)
    assert (kept / "last.pt").exists() and not (dropped / "last.pt").exists()
    for run in (kept, dropped):
        assert (run / "final.pt").exists() and (run / "best.pt").exists() and (run / "history.csv").exists()


def test_an_interrupted_run_keeps_its_resume_state(tiny_spec, tmp_path):
    spec = tiny_spec("pgd-at", epochs=2)
    stages.train(spec, tmp_path / "run", stop_after_epoch=1, keep_resume_state=False)
    assert (tmp_path / "run" / "last.pt").exists() and not (tmp_path / "run" / "final.pt").exists()


def test_the_smoke_scale_does_not_keep_checkpoints(repo):
    assert load_config(repo / "config" / "sglr.yaml")["keep_checkpoints"] is True
    assert load_config(repo / "config" / "sglr.yaml", {"scale": "smoke"})["keep_checkpoints"] is False
