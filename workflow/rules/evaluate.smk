# evaluate: one JSON per (run, checkpoint, attack); fp32, eval mode, test split.


rule evaluate:
    input:
        ckpt=f"{RESULTS}/{{dataset}}/{{noise}}/{{arch}}/{{method}}/seed{{seed}}/{{ckpt}}.pt",
        npz=rules.fetch.output.npz,
    output:
        f"{RESULTS}/{{dataset}}/{{noise}}/{{arch}}/{{method}}/seed{{seed}}/eval/{{ckpt}}-{{attack}}.json",
    params:
        spec=eval_spec,
    threads: config["threads"]
    resources:
        gpu=GPU_JOBS,
    # Ignored unless run with --sdm conda; the default route is the project venv.
    conda:
        "../../environment.yml"
    log:
        f"{RESULTS}/logs/evaluate/{{dataset}}/{{noise}}/{{arch}}/{{method}}/seed{{seed}}/{{ckpt}}-{{attack}}.log",
    shell:
        "python -m soften evaluate --checkpoint {input.ckpt:q} --dataset-npz {input.npz:q} "
        "--spec {params.spec:q} --out {output:q} > {log:q} 2>&1"
