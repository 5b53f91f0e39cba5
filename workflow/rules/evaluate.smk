# evaluate: the cheap attacks (natural, PGD, CW) every accuracy experiment lists, one
# job per run over its checkpoints; evaluate_attack: any other attack (AutoAttack,
# Square, or one only some experiments use), one job per (run, checkpoint, attack),
# exactly where an experiment asks. calibrate, sanity: one job per run of the
# calibration / sanity experiments. Every attack runs in eval mode and fp32.
BATCHED = IX.batched
OWN_JOB = L.own_job_attacks(CFG)
EVAL_CKPTS = L.kind_checkpoints(CFG, "accuracy")
CALIBRATION_CKPTS = L.kind_checkpoints(CFG, "calibration")
SANITY_CKPTS = L.kind_checkpoints(CFG, "sanity")


if BATCHED:

    rule evaluate:
        input:
            ckpts=[L.checkpoint_path(CFG, W, c) for c in EVAL_CKPTS],
            npz=rules.fetch.output.npz,
        output:
            [L.eval_path(CFG, W, c, a) for c in EVAL_CKPTS for a in BATCHED],
        log:
            L.run_log_path(CFG, "evaluate", W),
        conda:
            CONDA_ENV
        threads: CFG["threads"]
        resources:
            **sized("evaluate"),
        params:
            spec=lambda wc: IX.eval_specs(wc.dataset),
            code=CODE["evaluate"],
        shell:
            J.shell("evaluate")


if OWN_JOB:

    rule evaluate_attack:
        input:
            ckpt=L.checkpoint_path(CFG, W, "{ckpt}"),
            npz=rules.fetch.output.npz,
        output:
            L.eval_path(CFG, W, "{ckpt}", "{attack}"),
        log:
            L.run_log_path(CFG, "evaluate_attack", W, "{ckpt}", "{attack}"),
        wildcard_constraints:
            attack="|".join(OWN_JOB),
        conda:
            CONDA_ENV
        threads: CFG["threads"]
        resources:
            **sized("evaluate_attack"),
        params:
            spec=lambda wc: IX.attack_spec(wc.dataset, wc.attack),
            code=CODE["evaluate_attack"],
        shell:
            J.shell("evaluate_attack")


if CALIBRATION_CKPTS:

    # Calibration (SGLR Tab. B.1): ECE and reliability data on clean and attacked inputs.
    rule calibrate:
        input:
            ckpts=[L.checkpoint_path(CFG, W, c) for c in CALIBRATION_CKPTS],
            npz=rules.fetch.output.npz,
        output:
            [L.calibration_path(CFG, W, c) for c in CALIBRATION_CKPTS],
        log:
            L.run_log_path(CFG, "calibrate", W),
        conda:
            CONDA_ENV
        threads: CFG["threads"]
        resources:
            **sized("calibrate"),
        params:
            spec=lambda wc: IX.calibration_spec(wc.dataset),
            code=CODE["calibrate"],
        shell:
            J.shell("calibrate")


if SANITY_CKPTS:

    # Gradient-masking sanity checks (ADR App. E).
    rule sanity:
        input:
            ckpts=[L.checkpoint_path(CFG, W, c) for c in SANITY_CKPTS],
            npz=rules.fetch.output.npz,
        output:
            [L.sanity_path(CFG, W, c) for c in SANITY_CKPTS],
        log:
            L.run_log_path(CFG, "sanity", W),
        conda:
            CONDA_ENV
        threads: CFG["threads"]
        resources:
            **sized("sanity"),
        params:
            spec=lambda wc: IX.sanity_spec(wc.dataset),
            code=CODE["sanity"],
        shell:
            J.shell("sanity")
