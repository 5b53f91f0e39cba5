# train: one job per run (dataset, noise, arch, method, seed). A killed job re-run
# with the same command resumes from last.pt (kept out of the declared outputs
# so Snakemake never deletes it). Distillation methods (kd-at, kd-swa) declare
# their teachers' best.pt as inputs, so the teacher runs are trained first.


def run_spec(wc):
    return spec_json(sc.resolve_run(CFG, wc.dataset, wc.noise, wc.arch, wc.method, int(wc.seed)))


def teacher_checkpoints(wc):
    spec = sc.resolve_run(CFG, wc.dataset, wc.noise, wc.arch, wc.method, int(wc.seed))
    return [t["checkpoint"] for t in spec.get("teachers", [])]


rule train:
    input:
        npz=rules.fetch.output.npz,
        noise=rules.noise.output.npz,
        teachers=teacher_checkpoints,
    output:
        best=checkpoint_output(L.checkpoint_path(CFG, W, "best")),
        final=checkpoint_output(L.checkpoint_path(CFG, W, "final")),
        history=L.history_path(CFG, W),
    params:
        spec=run_spec,
        out=lambda wc, output: str(Path(output.final).parent),
    threads: CFG["threads"]
    resources:
        gpu=GPU_JOBS,
    conda:
        CONDA_ENV
    log:
        L.log_path(CFG, "train", L.RUN_PATTERN),
    shell:
        "python -m soften train --spec {params.spec:q} --out {params.out:q} "
        "--device {config[device]} --gpu-slots {config[gpu_slots_per_device]} --threads {threads} "
        "--tracking {config[tracking]} > {log:q} 2>&1"
