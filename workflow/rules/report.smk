# tables: tidy CSV + paper-style Markdown/CSV/LaTeX tables from every evaluation,
# plus transfer / calibration / sanity tables when those are configured.


rule tables:
    input:
        all_evaluations(),
        all_transfer_evaluations(),
        all_calibrations(),
        all_sanity_reports(),
    output:
        **table_outputs(),
    params:
        methods=",".join(EXP["methods"]),
        attacks=",".join(config["evaluation"]["attacks"]),
        transfer=",".join(config["transfer"]["attacks"]) or "none",
        out_dir=lambda wc, output: str(Path(output.md).parent),
    # Ignored unless run with --sdm conda; the default route is the project venv.
    conda:
        "../../environment.yml"
    log:
        f"{RESULTS}/logs/tables.log",
    shell:
        "python -m soften tables {input:q} --out-dir {params.out_dir:q} "
        "--methods {params.methods:q} --attacks {params.attacks:q} --transfer-attacks {params.transfer:q} > {log:q} 2>&1"


rule plots:
    input:
        [f"{run}/history.csv" for run in run_dirs()],
    output:
        curve_figures(),
    params:
        methods=",".join(EXP["methods"]),
        out_dir=lambda wc, output: str(Path(output[0]).parent),
    # Ignored unless run with --sdm conda; the default route is the project venv.
    conda:
        "../../environment.yml"
    log:
        f"{RESULTS}/logs/plots.log",
    shell:
        "python -m soften plots {input:q} --out-dir {params.out_dir:q} "
        "--methods {params.methods:q} > {log:q} 2>&1"


if reliability_figures():

    rule reliability_plots:
        input:
            all_calibrations(),
        output:
            reliability_figures(),
        params:
            out_dir=lambda wc, output: str(Path(output[0]).parent),
        # Ignored unless run with --sdm conda; the default route is the project venv.
        conda:
            "../../environment.yml"
        log:
            f"{RESULTS}/logs/reliability.log",
        shell:
            "python -m soften reliability {input:q} --out-dir {params.out_dir:q} > {log:q} 2>&1"
