# train: one job per (dataset, noise, arch, method, seed). A killed job re-run
# with the same command resumes from last.pt (kept out of the declared outputs
# so Snakemake never deletes it). Distillation methods (kd-at, kd-swa) declare
# their teachers' best.pt as inputs, so the teacher runs are trained first.


rule train:
    input:
        npz=rules.fetch.output.npz,
        noise=rules.noise.output.npz,
        teachers=teacher_checkpoints,
    output:
        best=f"{RESULTS}/{{dataset}}/{{noise}}/{{arch}}/{{method}}/seed{{seed}}/best.pt",
        final=f"{RESULTS}/{{dataset}}/{{noise}}/{{arch}}/{{method}}/seed{{seed}}/final.pt",
        history=f"{RESULTS}/{{dataset}}/{{noise}}/{{arch}}/{{method}}/seed{{seed}}/history.csv",
    params:
        spec=run_spec,
        out=lambda wc, output: str(Path(output.final).parent),
    threads: config["threads"]
    resources:
        gpu=GPU_JOBS,
    # Ignored unless run with --sdm conda; the default route is the project venv.
    conda:
        "../../environment.yml"
    log:
        f"{RESULTS}/logs/train/{{dataset}}/{{noise}}/{{arch}}/{{method}}/seed{{seed}}.log",
    shell:
        "python -m soften train --spec {params.spec:q} --out {params.out:q} > {log:q} 2>&1"
