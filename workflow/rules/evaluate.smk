# evaluate: one JSON per (run, checkpoint, attack); fp32, eval mode, test split.

if SHARED_ATTACKS:

    rule evaluate:
        input:
            ckpt=f"{RUN}/{{ckpt}}.pt",
            npz=rules.fetch.output.npz,
        output:
            [f"{RUN}/eval/{{ckpt}}-{attack}.json" for attack in SHARED_ATTACKS],
        params:
            spec=shared_eval_specs,
        threads: config["threads"]
        resources:
            gpu=GPU_JOBS,
        # Ignored unless run with --sdm conda; the default route is the project venv.
        conda:
            "../../environment.yml"
        log:
            f"{RESULTS}/logs/evaluate/{{dataset}}/{{noise}}/{{arch}}/{{method}}/seed{{seed}}/{{ckpt}}.log",
        shell:
            "python -m soften evaluate --checkpoint {input.ckpt:q} --dataset-npz {input.npz:q} "
            "--spec {params.spec:q} --out {output:q} > {log:q} 2>&1"


if OWN_ATTACKS:

    rule evaluate_one:
        input:
            ckpt=f"{RUN}/{{ckpt}}.pt",
            npz=rules.fetch.output.npz,
        output:
            f"{RUN}/eval/{{ckpt}}-{{attack}}.json",
        wildcard_constraints:
            attack="|".join(map(re.escape, OWN_ATTACKS)),
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


# calibration: ECE + reliability data (SGLR Tab. B.1), if enabled; one job per
# run covers its configured checkpoints (one JSON each), saving process start-ups.
rule calibrate:
    input:
        ckpts=[f"{RUN}/{c}.pt" for c in config["calibration"]["checkpoints"]],
        npz=rules.fetch.output.npz,
    output:
        calibration_outputs(RUN),
    params:
        spec=calibration_spec,
    threads: config["threads"]
    resources:
        gpu=GPU_JOBS,
    # Ignored unless run with --sdm conda; the default route is the project venv.
    conda:
        "../../environment.yml"
    log:
        f"{RESULTS}/logs/calibrate/{{dataset}}/{{noise}}/{{arch}}/{{method}}/seed{{seed}}.log",
    shell:
        "python -m soften calibrate --checkpoint {input.ckpts:q} --dataset-npz {input.npz:q} "
        "--spec {params.spec:q} --out {output:q} > {log:q} 2>&1"


# sanity: gradient-masking checks (ADR App. E), if enabled; one job per run.
rule sanity:
    input:
        ckpts=[f"{RUN}/{c}.pt" for c in config["sanity"]["checkpoints"]],
        npz=rules.fetch.output.npz,
    output:
        sanity_outputs(RUN),
    params:
        spec=sanity_spec,
    threads: config["threads"]
    resources:
        gpu=GPU_JOBS,
    # Ignored unless run with --sdm conda; the default route is the project venv.
    conda:
        "../../environment.yml"
    log:
        f"{RESULTS}/logs/sanity/{{dataset}}/{{noise}}/{{arch}}/{{method}}/seed{{seed}}.log",
    shell:
        "python -m soften sanity --checkpoint {input.ckpts:q} --dataset-npz {input.npz:q} "
        "--spec {params.spec:q} --out {output:q} > {log:q} 2>&1"
