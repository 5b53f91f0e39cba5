# evaluate: the cheap attacks (natural, PGD, CW) every accuracy experiment lists, one
# job per run over its checkpoints; evaluate_attack: any other attack (AutoAttack,
# Square, or one only some experiments use), one job per (run, checkpoint, attack),
# exactly where an experiment asks. calibrate, sanity: one job per run of the
# calibration / sanity experiments. Every attack runs in eval mode and fp32.
BATCHED = L.batched_attacks(CFG)
OWN_JOB = L.own_job_attacks(CFG)
EVAL_CKPTS = L.kind_checkpoints(CFG, "accuracy")
CALIBRATION_CKPTS = L.kind_checkpoints(CFG, "calibration")
SANITY_CKPTS = L.kind_checkpoints(CFG, "sanity")


def eval_specs(wc):
    return json.dumps([json.loads(spec_json(sc.resolve_eval(CFG, wc.dataset, a))) for a in BATCHED], sort_keys=True)


if BATCHED:

    rule evaluate:
        input:
            ckpts=[L.checkpoint_path(CFG, W, c) for c in EVAL_CKPTS],
            npz=rules.fetch.output.npz,
        output:
            [L.eval_path(CFG, W, c, a) for c in EVAL_CKPTS for a in BATCHED],
        params:
            spec=eval_specs,
        threads: CFG["threads"]
        resources:
            gpu=GPU_JOBS,
        conda:
            CONDA_ENV
        log:
            L.log_path(CFG, "evaluate", L.RUN_PATTERN),
        shell:
            "python -m soften evaluate --checkpoint {input.ckpts:q} --dataset-npz {input.npz:q} "
            "--spec {params.spec:q} --out {output:q} --device {config[device]} --gpu-slots {config[gpu_slots_per_device]} --threads {threads} > {log:q} 2>&1"


if OWN_JOB:

    rule evaluate_attack:
        input:
            ckpt=L.checkpoint_path(CFG, W, "{ckpt}"),
            npz=rules.fetch.output.npz,
        output:
            L.eval_path(CFG, W, "{ckpt}", "{attack}"),
        wildcard_constraints:
            attack="|".join(OWN_JOB),
        params:
            spec=lambda wc: spec_json(sc.resolve_eval(CFG, wc.dataset, wc.attack)),
        threads: CFG["threads"]
        resources:
            gpu=GPU_JOBS,
        conda:
            CONDA_ENV
        log:
            L.log_path(CFG, "evaluate_attack", L.RUN_PATTERN + "-{ckpt}-{attack}"),
        shell:
            "python -m soften evaluate_attack --checkpoint {input.ckpt:q} --dataset-npz {input.npz:q} "
            "--spec {params.spec:q} --out {output:q} --device {config[device]} --gpu-slots {config[gpu_slots_per_device]} --threads {threads} > {log:q} 2>&1"


if CALIBRATION_CKPTS:

    # Calibration (SGLR Tab. B.1): ECE and reliability data on clean and attacked inputs.
    rule calibrate:
        input:
            ckpts=[L.checkpoint_path(CFG, W, c) for c in CALIBRATION_CKPTS],
            npz=rules.fetch.output.npz,
        output:
            [L.calibration_path(CFG, W, c) for c in CALIBRATION_CKPTS],
        params:
            spec=lambda wc: spec_json(sc.resolve_calibration(CFG, wc.dataset)),
        threads: CFG["threads"]
        resources:
            gpu=GPU_JOBS,
        conda:
            CONDA_ENV
        log:
            L.log_path(CFG, "calibrate", L.RUN_PATTERN),
        shell:
            "python -m soften calibrate --checkpoint {input.ckpts:q} --dataset-npz {input.npz:q} "
            "--spec {params.spec:q} --out {output:q} --device {config[device]} --gpu-slots {config[gpu_slots_per_device]} --threads {threads} > {log:q} 2>&1"


if SANITY_CKPTS:

    # Gradient-masking sanity checks (ADR App. E).
    rule sanity:
        input:
            ckpts=[L.checkpoint_path(CFG, W, c) for c in SANITY_CKPTS],
            npz=rules.fetch.output.npz,
        output:
            [L.sanity_path(CFG, W, c) for c in SANITY_CKPTS],
        params:
            spec=lambda wc: spec_json(sc.resolve_sanity(CFG, wc.dataset)),
        threads: CFG["threads"]
        resources:
            gpu=GPU_JOBS,
        conda:
            CONDA_ENV
        log:
            L.log_path(CFG, "sanity", L.RUN_PATTERN),
        shell:
            "python -m soften sanity --checkpoint {input.ckpts:q} --dataset-npz {input.npz:q} "
            "--spec {params.spec:q} --out {output:q} --device {config[device]} --gpu-slots {config[gpu_slots_per_device]} --threads {threads} > {log:q} 2>&1"
