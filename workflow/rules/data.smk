# fetch: one npz per dataset; noise: noisy training labels per (dataset, noise).


rule fetch:
    output:
        npz=f"{RESOURCES}/datasets/{{dataset}}.npz",
        meta=f"{RESOURCES}/datasets/{{dataset}}.json",
    params:
        # Only the keys that shape the npz: changing a dataset's training,
        # threat or method settings must not re-fetch (and so retrain) it.
        entry=lambda wc: json.dumps(fetch_entry(wc.dataset), sort_keys=True),
    # Ignored unless run with --sdm conda; the default route is the project venv.
    conda:
        "../../environment.yml"
    log:
        f"{RESULTS}/logs/fetch/{{dataset}}.log",
    shell:
        "python -m soften fetch --entry {params.entry:q} --dataset {wildcards.dataset} "
        "--out {output.npz:q} > {log:q} 2>&1"


rule noise:
    input:
        npz=rules.fetch.output.npz,
    output:
        npz=f"{RESOURCES}/noise/{{dataset}}/{{noise}}.npz",
        meta=f"{RESOURCES}/noise/{{dataset}}/{{noise}}.json",
    params:
        seed=config["noise_seed"],
    # Ignored unless run with --sdm conda; the default route is the project venv.
    conda:
        "../../environment.yml"
    log:
        f"{RESULTS}/logs/noise/{{dataset}}/{{noise}}.log",
    shell:
        "python -m soften noise --dataset-npz {input.npz:q} --noise {wildcards.noise} "
        "--seed {params.seed} --out {output.npz:q} > {log:q} 2>&1"
