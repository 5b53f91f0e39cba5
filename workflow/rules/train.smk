# train: one job per run (dataset, noise, arch, method, seed). A killed job re-run
# with the same command resumes from last.pt (kept out of the declared outputs
# so Snakemake never deletes it). Distillation methods (kd-at, kd-swa) declare
# their teachers' best.pt as inputs, so the teacher runs are trained first.
# best_test.pt is an output only where training.select_on includes test.


rule train:
    input:
        npz=rules.fetch.output.npz,
        noise=rules.noise.output.npz,
        teachers=lambda wc: J.teacher_checkpoints(CFG, wc_run(wc)),
    output:
        **{c: checkpoint_output(L.checkpoint_path(CFG, W, c)) for c in L.train_checkpoints(CFG)},
        history=L.history_path(CFG, W),
    log:
        L.run_log_path(CFG, "train", W),
    conda:
        CONDA_ENV
    threads: CFG["threads"]
    resources:
        gpu=GPU_JOBS,
    params:
        spec=lambda wc: J.run_spec(CFG, wc_run(wc)),
        out=L.run_dir(CFG, W),
        code=CODE["train"],
    shell:
        J.shell("train")
