# Black-box transfer (SGLR Tab. B.3). craft_transfer: one adversarial set per
# (dataset, source, attack), crafted on the source run's checkpoint (trained by the
# train rule); evaluate_transfer: a target run's checkpoints on every set (forward
# passes only, so one job per run covers them all).
TRANSFER_PAIRS = L.transfer_pairs(CFG)
TRANSFER_CKPTS = L.kind_checkpoints(CFG, "transfer")


def source_checkpoint(wc):
    run, ckpt = L.transfer_source(CFG, wc.dataset, wc.source)
    return L.checkpoint_path(CFG, run, ckpt)


rule craft_transfer:
    input:
        ckpt=source_checkpoint,
        npz=rules.fetch.output.npz,
    output:
        L.transfer_set_path(CFG, "{dataset}", "{source}", "{attack}"),
    params:
        spec=lambda wc: spec_json(sc.resolve_transfer(CFG, wc.dataset, wc.source, wc.attack)),
    threads: CFG["threads"]
    resources:
        gpu=GPU_JOBS,
    conda:
        CONDA_ENV
    log:
        L.log_path(CFG, "craft_transfer", "{dataset}/{source}/{attack}"),
    shell:
        "python -m soften craft_transfer --checkpoint {input.ckpt:q} --dataset-npz {input.npz:q} "
        "--spec {params.spec:q} --out {output:q} --device {config[device]} --gpu-slots {config[gpu_slots_per_device]} --threads {threads} > {log:q} 2>&1"


if TRANSFER_PAIRS:

    rule evaluate_transfer:
        input:
            ckpts=[L.checkpoint_path(CFG, W, c) for c in TRANSFER_CKPTS],
            crafted=[L.transfer_set_path(CFG, "{dataset}", s, a) for s, a in TRANSFER_PAIRS],
        output:
            [L.transfer_eval_path(CFG, W, c, s, a) for c in TRANSFER_CKPTS for s, a in TRANSFER_PAIRS],
        threads: CFG["threads"]
        resources:
            gpu=GPU_JOBS,
        conda:
            CONDA_ENV
        log:
            L.log_path(CFG, "evaluate_transfer", L.RUN_PATTERN),
        shell:
            "python -m soften evaluate_transfer --checkpoint {input.ckpts:q} --crafted {input.crafted:q} "
            "--out {output:q} --device {config[device]} --gpu-slots {config[gpu_slots_per_device]} --threads {threads} > {log:q} 2>&1"
