# fetch: one npz per dataset; noise: noisy training labels per (dataset, noise).


rule fetch:
    output:
        npz=L.dataset_path(CFG, "{dataset}"),
        meta=L.dataset_meta_path(CFG, "{dataset}"),
    log:
        L.log_path(CFG, "fetch", "{dataset}"),
    conda:
        CONDA_ENV
    params:
        entry=lambda wc: IX.fetch_entry(wc.dataset),
        code=CODE["fetch"],
    shell:
        J.shell("fetch")


rule noise:
    input:
        npz=rules.fetch.output.npz,
    output:
        npz=L.noise_path(CFG, "{dataset}", "{noise}"),
        meta=L.noise_meta_path(CFG, "{dataset}", "{noise}"),
    log:
        L.log_path(CFG, "noise", "{dataset}/{noise}"),
    conda:
        CONDA_ENV
    params:
        seed=CFG["noise_seed"],
        code=CODE["noise"],
    shell:
        J.shell("noise")
