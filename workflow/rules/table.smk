rule table:
    wildcard_constraints:
        name=TABLE_NAMES,
    input:
        metrics=table_metrics,
    output:
        table=report(
            "results/{name}.csv",
            caption="../report/table.rst",
            category="Retrieval tables",
            labels={"table": "{name}", "view": "CSV"},
        ),
        page=report(
            "results/{name}.html",
            caption="../report/table_page.rst",
            category="Retrieval tables",
            labels={"table": "{name}", "view": "this run first, provenance"},
        ),
        markdown="results/{name}.md",
        runs="results/{name}.runs.csv",
        text="results/{name}.txt",
    params:
        rows=table_row_options,
        reference=reference_option("tables"),
        postprocess=postprocess_option,
        recall_at=lambda wildcards: config["tables"][wildcards.name]["recall_at"],
    log:
        "results/logs/table/{name}.log",
    benchmark:
        "results/benchmarks/table/{name}.tsv"
    conda:
        "../../envs/cpu.yaml"
    shell:
        "supportset table {params.rows} {params.reference} {params.postprocess}"
        " --recall-at {params.recall_at} --out {output.table} --out-runs {output.runs}"
        " --out-text {output.text} --out-html {output.page} > {log} 2>&1"
