# tables: one Markdown/CSV/LaTeX table per experiment, the papers' numbers beside
# the reproduction; figures: one PNG per experiment (learning curves, reliability
# diagrams or sanity sweeps, by the experiment's kind).


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
        spec=lambda wc: J.table_spec(CFG, wc.experiment),
        code=CODE["tables"],
    shell:
        J.shell("tables")


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
        spec=lambda wc: J.table_spec(CFG, wc.experiment),
        code=CODE["figures"],
    shell:
        J.shell("figures")
