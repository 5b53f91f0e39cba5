# train: one job per run (dataset, noise, arch, method, seed). A killed job re-run
# with the same command resumes from last.pt (kept out of the declared outputs
# so Snakemake never deletes it); so does the next job after a wall-time stop.
# Distillation methods (kd-at, kd-swa) declare their teachers' best.pt as inputs,
# so the teacher runs are trained first. best_test.pt is an output only where
# training.select_on includes test.


rule train:
    input:
        npz=rules.fetch.output.npz,
        noise=rules.noise.output.npz,
        teachers=lambda wc: IX.teacher_checkpoints(wc_run(wc)),
    output:
        **{c: checkpoint_output(L.checkpoint_path(CFG, W, c)) for c in L.train_checkpoints(CFG)},
        history=L.history_path(CFG, W),
    log:
        L.run_log_path(CFG, "train", W),
    # A run longer than cluster.max_runtime stops before each job's limit with last.pt
    # saved (soften.training.walltime) and is resubmitted: one retry per planned segment.
    retries: C.train_retries(CFG)
    conda:
        CONDA_ENV
    threads: CFG["threads"]
    resources:
        **sized("train"),
    params:
        spec=lambda wc: IX.run_spec(wc_run(wc)),
        out=L.run_dir(CFG, W),
        code=CODE["train"],
    shell:
        J.shell("train")
