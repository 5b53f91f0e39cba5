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
        out_dir=f"{RESULTS}/tables",
    log:
        f"{RESULTS}/logs/tables.log",
    shell:
        "python -m soften tables {input:q} --out-dir {params.out_dir:q} "
        "--methods {params.methods:q} --attacks {params.attacks:q} --transfer-attacks {params.transfer:q} > {log:q} 2>&1"
