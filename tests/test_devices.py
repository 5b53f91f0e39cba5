"""GPU slots on a simulated multi-GPU host: torch.cuda is replaced, in each job
process, by a fake with a chosen device count and UUIDs; the locks are real
files and the jobs real processes (several users' included)."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import types
from pathlib import Path

import pytest
import torch

from soften import devices
from soften.errors import SoftenError

from _warm_python import warm_env

REPO = Path(__file__).resolve().parents[1]

# A job: fake CUDA with COUNT GPUs whose UUIDs are their physical numbers (the entries of
# CUDA_VISIBLE_DEVICES, else 0..COUNT-1), resolve the device CALLS times, report, and hold
# the claim until the release file appears.
JOB = textwrap.dedent("""
    import json, os, sys, time, types
    count, calls, release = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    physical = os.environ.get("CUDA_VISIBLE_DEVICES", ",".join(map(str, range(count)))).split(",")

    def properties(i):
        if os.environ.get("FAKE_UUIDS", "1") != "1":
            raise RuntimeError("no UUID from this driver")
        return types.SimpleNamespace(uuid=f"GPU-fake-{physical[i]}")

    # torch as soften.devices sees it, with CUDA faked (importing the real one takes seconds per job)
    cuda = types.SimpleNamespace(is_available=lambda: True, device_count=lambda: count, get_device_properties=properties,
                                 get_device_capability=lambda i: (9, 0), get_arch_list=lambda: ["sm_90"],
                                 get_device_name=lambda i: "Fake GPU", set_device=lambda i: None)
    sys.modules["torch"] = types.SimpleNamespace(cuda=cuda, __version__="fake",
                                                 version=types.SimpleNamespace(cuda="13.0"), _C=None)
    from soften.devices import resolve_device
    slots = int(os.environ.get("SLOTS", "1"))
    got = [resolve_device("cuda" if k % 2 else "auto", slots) for k in range(calls)]
    print(json.dumps({"devices": got, "physical": physical}), flush=True)
    while not os.path.exists(release):
        time.sleep(0.05)
""")



@pytest.fixture()
def world(tmp_path_factory):
    """A folder like /tmp (every user may create files in it) holding the job script; the
    lock folder inside it is not created yet."""
    root = Path(tempfile.mkdtemp(prefix="soften-devices-"))
    os.chmod(root, 0o1777)
    (root / "job.py").write_text(JOB)
    os.chmod(root / "job.py", 0o644)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def readable_by_others(world, prefix) -> tuple[str, str]:
    """(interpreter, source folder) that the users of ``prefix`` can read. The checkout may sit
    under a private directory (a clone into ``mktemp -d``), so the package is copied into the
    world-writable ``world``; the job needs only the standard library, so the base interpreter
    serves (a venv inside the checkout would be unreadable too). Skips if a user still cannot
    import it (an interpreter installed under a private home)."""
    src = world / "src"
    shutil.copytree(REPO / "src" / "soften", src / "soften", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for folder, dirs, files in os.walk(src):
        os.chmod(folder, 0o755)
        for name in files:
            os.chmod(Path(folder) / name, 0o644)
    python = os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)
    for user in prefix:
        probe = subprocess.run([*user, python, "-c", "import soften.devices"], cwd=world, capture_output=True,
                               text=True, env=dict(os.environ, PYTHONPATH=str(src), HOME=str(world)))
        if probe.returncode != 0:
            last = (probe.stderr.strip().splitlines() or ["no output"])[-1]
            pytest.skip(f"{' '.join(user)} cannot run {python} on a readable copy of soften: {last}")
    return python, str(src)


def start_jobs(world, n, count, *, slots=1, calls=3, envs=None, prefix=None):
    release = world / "release"
    python, src = readable_by_others(world, prefix) if prefix else (sys.executable, str(REPO / "src"))
    procs = []
    for i in range(n):
        env = dict(os.environ, PYTHONPATH=src, SOFTEN_GPU_LOCK_DIR=str(world / "locks"),
                   SLOTS=str(slots), HOME=str(world))
        env.update((envs or [{}] * n)[i])
        cmd = [*(prefix[i] if prefix else []), python, str(world / "job.py"), str(count), str(calls), str(release)]
        procs.append(subprocess.Popen(cmd, env=env, cwd=world, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True))
        # One after another, as Snakemake starts jobs; each reports once it holds its claim.
        line = procs[-1].stdout.readline()
        assert line, procs[-1].stderr.read()
        procs[-1].result = json.loads(line)
    return procs, release


def finish(procs, release):
    release.touch()
    for p in procs:
        p.wait(timeout=60)
        p.result["stderr"] = p.stderr.read()
        p.stdout.close()
        p.stderr.close()
    return [p.result for p in procs]


def fake_cuda(monkeypatch, count):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda i=None: (9, 0))
    monkeypatch.setattr(torch.cuda, "get_arch_list", lambda: ["sm_90"])
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=None: "Fake GPU")
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: types.SimpleNamespace(uuid=f"GPU-{i}"))
    monkeypatch.setattr(torch.cuda, "set_device", lambda i: None)
    monkeypatch.setattr(devices, "nvidia_present", lambda: count > 0)
    monkeypatch.setattr(devices, "_claimed", None)


def test_auto_is_cpu_without_cuda_and_explicit_devices_pass_through(monkeypatch):
    fake_cuda(monkeypatch, 0)
    assert devices.resolve_device("auto") == "cpu"
    assert devices.resolve_device("cpu") == "cpu"
    fake_cuda(monkeypatch, 4)
    assert devices.resolve_device("cuda:3") == "cuda:3"
    assert devices.resolve_device("cpu") == "cpu"


def test_asking_for_a_gpu_the_host_lacks_is_one_clear_error(monkeypatch):
    fake_cuda(monkeypatch, 0)
    with pytest.raises(SoftenError, match="'cuda' was asked for, but this host has no usable CUDA GPU"):
        devices.resolve_device("cuda")
    fake_cuda(monkeypatch, 2)
    with pytest.raises(SoftenError, match=r"'cuda:2' was asked for, but this host shows 2 GPU\(s\)"):
        devices.resolve_device("cuda:2")


def test_each_process_claims_one_gpu_and_keeps_it(world):
    # 4 processes x 3 resolve_device calls on 4 GPUs: 4 distinct GPUs, each process always the same one.
    procs, release = start_jobs(world, 4, count=4, calls=3)
    results = finish(procs, release)
    for r in results:
        assert len(set(r["devices"])) == 1, r
    assert sorted(r["devices"][0] for r in results) == ["cuda:0", "cuda:1", "cuda:2", "cuda:3"]


def test_slots_let_jobs_share_a_gpu_evenly(world):
    # 2 GPUs x 2 slots: 4 jobs fill both GPUs before any GPU takes a second job; a fifth shares, warned.
    procs, release = start_jobs(world, 2, count=2, slots=2)
    first_two = sorted(p.result["devices"][0] for p in procs)
    more, _ = start_jobs(world, 3, count=2, slots=2)
    results = finish(procs + more, release)
    assert first_two == ["cuda:0", "cuda:1"]
    per_gpu = [r["devices"][0] for r in results[:4]]
    assert sorted(per_gpu) == ["cuda:0", "cuda:0", "cuda:1", "cuda:1"]
    assert "all 4 GPU slots (2 GPUs x 2) are held" in results[4]["stderr"]
    locks = sorted(p.name for p in (world / "locks").iterdir())
    assert locks == [f"soften-uuid-GPU-fake-{g}-slot{s}.lock" for g in (0, 1) for s in (0, 1)]


def test_locks_name_the_physical_gpu_not_the_visible_index(world):
    # Jobs restricted to disjoint GPU sets both see their GPUs as cuda:0 and cuda:1 and must not
    # contend; jobs seeing the same GPUs in another order must not take the same physical GPU.
    envs = [{"CUDA_VISIBLE_DEVICES": "0,1"}, {"CUDA_VISIBLE_DEVICES": "2,3"}, {"CUDA_VISIBLE_DEVICES": "1,0"}]
    procs, release = start_jobs(world, 3, count=2, envs=envs)
    results = finish(procs, release)
    assert results[0]["devices"][0] == "cuda:0" and results[1]["devices"][0] == "cuda:0"
    # the third sees physical 1 as cuda:0 (free) and physical 0 as cuda:1 (held by the first)
    assert results[2]["devices"][0] == "cuda:0"
    names = sorted(p.name for p in (world / "locks").iterdir())
    assert names == [f"soften-uuid-GPU-fake-{g}-slot0.lock" for g in (0, 1, 2)]


def test_without_uuids_locks_use_the_visible_devices_entries(world):
    envs = [{"CUDA_VISIBLE_DEVICES": "4,5", "FAKE_UUIDS": "0"}, {"CUDA_VISIBLE_DEVICES": "5,4", "FAKE_UUIDS": "0"}]
    procs, release = start_jobs(world, 2, count=2, envs=envs)
    results = finish(procs, release)
    assert [r["devices"][0] for r in results] == ["cuda:0", "cuda:0"]  # physical 4, then physical 5
    assert sorted(p.name for p in (world / "locks").iterdir()) == ["soften-gpu-4-slot0.lock", "soften-gpu-5-slot0.lock"]


def _can_switch_user():
    return os.geteuid() == 0 and shutil.which("setpriv") is not None


@pytest.mark.skipif(not _can_switch_user(), reason="running a job as a second OS user needs root and setpriv")
def test_jobs_of_two_users_share_one_set_of_locks(world):
    # User A's job creates the lock folder and files; user B's job on the same host must be able
    # to open them (no PermissionError) and take the other GPU.
    users = [["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"] for uid in (54321, 54322)]
    procs, release = start_jobs(world, 2, count=2, prefix=users)
    results = finish(procs, release)
    assert sorted(r["devices"][0] for r in results) == ["cuda:0", "cuda:1"]
    folder = world / "locks"
    assert folder.stat().st_uid == 54321 and folder.stat().st_mode & 0o7777 == 0o1777
    for lock in folder.iterdir():
        assert lock.stat().st_mode & 0o777 == 0o666, lock


@pytest.mark.skipif(not _can_switch_user(), reason="running a job as a second OS user needs root and setpriv")
def test_a_lock_file_another_user_made_private_is_still_usable(world):
    # An older soften made 0644 lock files; the read-only open flock needs still works for everyone.
    folder = world / "locks"
    folder.mkdir(mode=0o1777)
    os.chmod(folder, 0o1777)
    lock = folder / "soften-uuid-GPU-fake-0-slot0.lock"
    lock.touch(mode=0o644)
    os.chown(lock, 54323, 54323)
    os.chmod(lock, 0o644)
    user = [["setpriv", "--reuid=54324", "--regid=54324", "--clear-groups"]]
    procs, release = start_jobs(world, 1, count=2, prefix=user)
    assert finish(procs, release)[0]["devices"][0] == "cuda:0"


def test_the_lock_folder_is_created_for_every_user(tmp_path, monkeypatch):
    monkeypatch.setenv(devices.LOCK_DIR_ENV, str(tmp_path / "locks"))
    folder = devices.lock_dir()
    assert folder.is_dir() and folder.stat().st_mode & 0o7777 == 0o1777
    fd = devices._open_lock(folder / "x.lock")
    os.close(fd)
    assert (folder / "x.lock").stat().st_mode & 0o777 == 0o666


def test_gpu_slots_come_from_the_config_or_the_command_line(monkeypatch, tmp_path, repo):
    from soften.pipeline import stages
    from soften.__main__ import main

    seen = []
    monkeypatch.setattr(stages, "train", lambda spec, out, **kw: seen.append(spec))
    base = ["train", "--configfile", str(repo / "config" / "config.yaml"), "--dataset", "digits", "--noise", "none",
            "--arch", "cnn", "--method", "pgd-at", "--out", str(tmp_path / "run")]
    assert main(base) == 0
    assert main(base + ["--config", "gpu_slots_per_device=3"]) == 0
    assert main(base + ["--config", "gpu_slots_per_device=3", "--gpu-slots", "2"]) == 0
    assert [s["gpu_slots"] for s in seen] == [1, 3, 2]
    assert main(base + ["--config", "gpu_slots_per_device=0"]) == 2   # schema: at least 1


def test_gpu_sharing_is_placement_a_run_resumes_across_it(tiny_spec, tmp_path):
    from soften.training.loop import train

    spec = tiny_spec(epochs=2)
    first = train(dict(spec, gpu_slots=1), tmp_path / "run", stop_after_epoch=1, progress=False)
    history = train(dict(spec, gpu_slots=4), tmp_path / "run", progress=False)
    assert history[0] == first[0] and len(history) == 2


@pytest.mark.slow
def test_every_gpu_job_is_told_the_slots(repo, tmp_path, subprocess_env, warm_python):
    """gpu_slots_per_device reaches the jobs through the environment the Snakefile sets
    (not their commands: moving jobs re-runs nothing), as each job's log records. The jobs
    are forked from the warm interpreter (tests/_warm_python.py), which hands each the
    environment its shell had: what is checked is the Snakefile's part."""
    subprocess_env = warm_env(subprocess_env, warm_python)
    cmd = [sys.executable, "-m", "snakemake", "all", "-s", str(repo / "workflow" / "Snakefile"), "--directory",
           str(tmp_path), "--cores", "2", "--configfile", str(repo / ".test" / "config" / "config.yaml"),
           "--config", "gpu_slots_per_device=4", "device=cpu"]
    dry = subprocess.run([*cmd, "-n", "-p"], env=subprocess_env, capture_output=True, text=True)
    assert dry.returncode == 0, dry.stderr[-2000:]
    assert "python -m soften train" in dry.stdout and "--gpu-slots" not in dry.stdout
    proc = subprocess.run(cmd, env=subprocess_env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    placed = {"train", "evaluate", "evaluate_attack", "calibrate", "sanity", "craft_transfer", "evaluate_transfer"}
    logs = {stage: list((tmp_path / "results" / "logs" / stage).rglob("*.log")) for stage in placed}
    assert all(logs.values()), {s: len(v) for s, v in logs.items()}
    for stage, files in logs.items():
        for f in files:
            assert "job slot(s) per GPU" in f.read_text() and "device cpu, 1 thread(s), 4 job slot(s)" in f.read_text(), f
