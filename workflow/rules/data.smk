# fetch: one npz per dataset; noise: noisy training labels per (dataset, noise).


rule fetch:
    output:
        npz=f"{RESOURCES}/datasets/{{dataset}}.npz",
        meta=f"{RESOURCES}/datasets/{{dataset}}.json",
    params:
        # Re-fetch when the dataset's entry changes (source, split sizes, options).
        entry=lambda wc: json.dumps(config["datasets"][wc.dataset], sort_keys=True),
    log:
        f"{RESULTS}/logs/fetch/{{dataset}}.log",
    shell:
        "python -m soften fetch --config {workflow.configfiles[0]:q} --dataset {wildcards.dataset} "
        "--out {output.npz:q} > {log:q} 2>&1"


rule noise:
    input:
        npz=rules.fetch.output.npz,
    output:
        npz=f"{RESOURCES}/noise/{{dataset}}/{{noise}}.npz",
        meta=f"{RESOURCES}/noise/{{dataset}}/{{noise}}.json",
    params:
        seed=config["noise_seed"],
    log:
        f"{RESULTS}/logs/noise/{{dataset}}/{{noise}}.log",
    shell:
        "python -m soften noise --dataset-npz {input.npz:q} --noise {wildcards.noise} "
        "--seed {params.seed} --out {output.npz:q} > {log:q} 2>&1"
