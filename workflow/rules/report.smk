# tables: one Markdown/CSV/LaTeX table per experiment, the papers' numbers beside
# the reproduction; figures: one PNG per experiment (learning curves, reliability
# diagrams or sanity sweeps, by the experiment's kind).


def table_spec(wc):
    return json.dumps(sc.table_spec(CFG, wc.experiment), sort_keys=True)


rule tables:
    input:
        lambda wc: L.experiment_inputs(CFG, wc.experiment),
    output:
        **L.table_paths(CFG, "{experiment}"),
    log:
        L.log_path(CFG, "tables", "{experiment}"),
    conda:
        CONDA_ENV
    params:
        spec=table_spec,
    shell:
        "python -m soften tables {input:q} --spec {params.spec:q} --out {output.md:q} > {log:q} 2>&1"


rule figures:
    input:
        lambda wc: L.figure_inputs(CFG, wc.experiment),
    output:
        L.figure_path(CFG, "{experiment}"),
    log:
        L.log_path(CFG, "figures", "{experiment}"),
    conda:
        CONDA_ENV
    params:
        spec=table_spec,
    shell:
        "python -m soften figures {input:q} --spec {params.spec:q} --out {output:q} > {log:q} 2>&1"
