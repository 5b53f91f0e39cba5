# transfer: black-box transfer attacks (SGLR Tab. B.3). One crafting job per
# (dataset, source, attack) writes the adversarial set; every target
# checkpoint is evaluated on that same file. The source run itself is trained
# by the train rule (its checkpoint path is an input).


rule craft_transfer:
    input:
        ckpt=lambda wc: sc.transfer_source_run(config, wc.dataset, wc.source),
        npz=rules.fetch.output.npz,
    output:
        f"{RESULTS}/{{dataset}}/transfer/{{source}}/{{attack}}.pt",
    params:
        spec=transfer_spec,
    threads: config["threads"]
    resources:
        gpu=GPU_JOBS,
    # Ignored unless run with --sdm conda; the default route is the project venv.
    conda:
        "../../environment.yml"
    log:
        f"{RESULTS}/logs/craft_transfer/{{dataset}}/{{source}}/{{attack}}.log",
    shell:
        "python -m soften craft-transfer --checkpoint {input.ckpt:q} --dataset-npz {input.npz:q} "
        "--spec {params.spec:q} --out {output:q} > {log:q} 2>&1"


# One job per target run evaluates its checkpoints on every transfer set of its
# dataset (one JSON per checkpoint x source x attack): these are forward passes
# only, so the job is dominated by process start-up and batching them pays.
rule evaluate_transfer:
    input:
        ckpts=[f"{RUN}/{c}.pt" for c in config["transfer"]["checkpoints"]],
        crafted=lambda wc: transfer_sets(wc.dataset),
    output:
        transfer_outputs(RUN),
    params:
        spec=lambda wc: json.dumps({"batch_size": config["evaluation"]["batch_size"], "device": config["device"],
                                    "threads": config["threads"]}),
        jobs=lambda wc: json.dumps(transfer_jobs(wc)),
    threads: config["threads"]
    resources:
        gpu=GPU_JOBS,
    # Ignored unless run with --sdm conda; the default route is the project venv.
    conda:
        "../../environment.yml"
    log:
        f"{RESULTS}/logs/evaluate_transfer/{{dataset}}/{{noise}}/{{arch}}/{{method}}/seed{{seed}}.log",
    shell:
        "python -m soften evaluate-transfer --jobs {params.jobs:q} --spec {params.spec:q} > {log:q} 2>&1"
