# tables: one Markdown/CSV/LaTeX table per experiment (and the Markdown rendered as
# HTML), the papers' numbers beside the reproduction; figures: one PNG per
# experiment (learning curves, reliability diagrams or sanity sweeps, by the
# experiment's kind). Both are registered for `snakemake --report report.html`:
# one category per experiment (usually one paper table), captions in ../report/.
# tables and figures run on the submitting host under a cluster executor
# (localrules in the Snakefile): seconds of CPU each.


report: "../report/workflow.rst"


TABLE_PATHS = L.table_paths(CFG, "{experiment}")


rule tables:
    input:
        lambda wc: IX.experiment_inputs(wc.experiment),
    output:
        md=TABLE_PATHS["md"],
        html=report(
            TABLE_PATHS["html"],
            caption="../report/table.rst",
            category=report_category,
            subcategory="table",
            labels=report_labels("table"),
        ),
        csv=report(
            TABLE_PATHS["csv"],
            caption="../report/table-csv.rst",
            category=report_category,
            subcategory="table",
            labels=report_labels("table, tidy CSV"),
        ),
        tex=report(
            TABLE_PATHS["tex"],
            caption="../report/table-tex.rst",
            category=report_category,
            subcategory="table",
            labels=report_labels("table, LaTeX"),
        ),
    log:
        L.log_path(CFG, "tables", "{experiment}"),
    conda:
        CONDA_ENV
    params:
        spec=lambda wc: IX.table_spec(wc.experiment),
        code=CODE["tables"],
    shell:
        J.shell("tables")


rule figures:
    input:
        lambda wc: IX.figure_inputs(wc.experiment),
    output:
        report(
            L.figure_path(CFG, "{experiment}"),
            caption="../report/figure.rst",
            category=report_category,
            subcategory="figure",
            labels=report_labels("figure"),
        ),
    log:
        L.log_path(CFG, "figures", "{experiment}"),
    conda:
        CONDA_ENV
    params:
        spec=lambda wc: IX.table_spec(wc.experiment),
        code=CODE["figures"],
    shell:
        J.shell("figures")


# verdict: one page per results directory, every table cell against the paper and
# every claim of the config tested (soften.reporting.verdicts); first in `snakemake --report`
# (its category sorts before the experiments'). A failed reproduction is a result.
VERDICT_PATHS = L.verdict_paths(CFG)


rule verdict:
    input:
        L.verdict_inputs(CFG),
    output:
        md=VERDICT_PATHS["md"],
        json=report(
            VERDICT_PATHS["json"],
            caption="../report/verdict-json.rst",
            category="0 · Verdict",
            subcategory="verdict",
            labels={"file": "verdict, JSON"},
        ),
        html=report(
            VERDICT_PATHS["html"],
            caption="../report/verdict.rst",
            category="0 · Verdict",
            subcategory="verdict",
            labels={"file": "verdict page"},
        ),
    log:
        L.log_path(CFG, "verdict", "verdict"),
    conda:
        CONDA_ENV
    params:
        spec=J.verdict_spec(CFG),
        code=CODE["verdict"],
    shell:
        J.shell("verdict")
