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
        ),
        markdown="results/{name}.md",
        runs="results/{name}.runs.csv",
    params:
        rows=table_row_options,
        reference=reference_option,
        recall_at=lambda wildcards: config["tables"][wildcards.name]["recall_at"],
    log:
        "results/logs/table/{name}.log",
    benchmark:
        "results/benchmarks/table/{name}.tsv"
    conda:
        "../../envs/cpu.yaml"
    shell:
        "supportset table {params.rows} {params.reference}"
        " --recall-at {params.recall_at} --out {output.table} --out-runs {output.runs}"
        " > {log} 2>&1"
