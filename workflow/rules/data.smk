# fetch: one npz per dataset; noise: noisy training labels per (dataset, noise).


rule fetch:
    output:
        npz=L.dataset_path(CFG, "{dataset}"),
        meta=str(Path(L.dataset_path(CFG, "{dataset}")).with_suffix(".json")),
    log:
        L.log_path(CFG, "fetch", "{dataset}"),
    conda:
        CONDA_ENV
    params:
        entry=lambda wc: json.dumps(sc.fetch_entry(CFG, wc.dataset), sort_keys=True),
    shell:
        "python -m soften fetch --entry {params.entry:q} --dataset {wildcards.dataset} "
        "--out {output.npz:q} > {log:q} 2>&1"


rule noise:
    input:
        npz=rules.fetch.output.npz,
    output:
        npz=L.noise_path(CFG, "{dataset}", "{noise}"),
        meta=str(Path(L.noise_path(CFG, "{dataset}", "{noise}")).with_suffix(".json")),
    log:
        L.log_path(CFG, "noise", "{dataset}/{noise}"),
    conda:
        CONDA_ENV
    params:
        seed=CFG["noise_seed"],
    shell:
        "python -m soften noise --dataset-npz {input.npz:q} --noise {wildcards.noise} "
        "--seed {params.seed} --out {output.npz:q} > {log:q} 2>&1"
