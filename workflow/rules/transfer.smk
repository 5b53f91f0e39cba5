# Black-box transfer (SGLR Tab. B.3). craft_transfer: one adversarial set per
# (dataset, source, attack), crafted on the source run's checkpoint (trained by the
# train rule); evaluate_transfer: a target run's checkpoints on every set (forward
# passes only, so one job per run covers them all).
TRANSFER_PAIRS = L.transfer_pairs(CFG)
TRANSFER_CKPTS = L.kind_checkpoints(CFG, "transfer")


rule craft_transfer:
    input:
        ckpt=lambda wc: IX.source_checkpoint(wc.dataset, wc.source),
        npz=rules.fetch.output.npz,
    output:
        L.transfer_set_path(CFG, "{dataset}", "{source}", "{attack}"),
    log:
        L.log_path(CFG, "craft_transfer", "{dataset}/{source}/{attack}"),
    conda:
        CONDA_ENV
    threads: CFG["threads"]
    resources:
        **sized("craft_transfer"),
    params:
        spec=lambda wc: IX.transfer_spec(wc.dataset, wc.source, wc.attack),
        code=CODE["craft_transfer"],
    shell:
        J.shell("craft_transfer")


if TRANSFER_PAIRS:

    rule evaluate_transfer:
        input:
            ckpts=[L.checkpoint_path(CFG, W, c) for c in TRANSFER_CKPTS],
            crafted=[L.transfer_set_path(CFG, "{dataset}", s, a) for s, a in TRANSFER_PAIRS],
        output:
            [L.transfer_eval_path(CFG, W, c, s, a) for c in TRANSFER_CKPTS for s, a in TRANSFER_PAIRS],
        log:
            L.run_log_path(CFG, "evaluate_transfer", W),
        conda:
            CONDA_ENV
        threads: CFG["threads"]
        resources:
            **sized("evaluate_transfer"),
        params:
            code=CODE["evaluate_transfer"],
        shell:
            J.shell("evaluate_transfer")
