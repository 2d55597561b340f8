rule prepare_fold:
    input:
        prepare_fold_inputs,
    output:
        videos="results/{dataset}/folds/{fold}/videos.parquet",
        captions="results/{dataset}/folds/{fold}/captions.parquet",
        missing="results/{dataset}/folds/{fold}/missing_videos.csv",
    params:
        adapter=lambda wildcards: config["datasets"][wildcards.dataset]["adapter"],
        root=lambda wildcards: dataset_root(wildcards.dataset),
        missing=lambda wildcards: config["datasets"][wildcards.dataset]["missing_videos"],
        max_missing=lambda wildcards: config["datasets"][wildcards.dataset]["max_missing"],
    log:
        "results/logs/prepare_fold/{dataset}/{fold}.log",
    benchmark:
        "results/benchmarks/prepare_fold/{dataset}/{fold}.tsv"
    conda:
        "../../envs/cpu.yaml"
    shell:
        "supportset prepare --adapter {params.adapter} --root {params.root:q}"
        " --split {wildcards.fold} --missing-videos {params.missing}"
        " --max-missing {params.max_missing}"
        " --out-dir results/{wildcards.dataset}/folds/{wildcards.fold} > {log} 2>&1"


rule probe_actions:
    input:
        unpack(probe_model_input),
        videos="results/{dataset}/folds/{fold}/videos.parquet",
        captions="results/{dataset}/folds/{fold}/captions.parquet",
        visual=visual_shards,
    output:
        result="results/{dataset}/probe/{pooling}/{fold}.json",
    params:
        settings=settings_json("probe"),
        model=probe_model_option,
    threads: 2
    resources:
        mem_mb=8000,
        runtime=120,
        gpu=1,  # the head pools on a GPU when the job has one
    log:
        "results/logs/probe_actions/{dataset}/{pooling}/{fold}.log",
    benchmark:
        "results/benchmarks/probe_actions/{dataset}/{pooling}/{fold}.tsv"
    conda:
        "../../envs/cpu.yaml"
    shell:
        "supportset --threads {threads} probe --videos {input.videos} --captions {input.captions}"
        " --visual {input.visual} {params.model} --settings {params.settings:q}"
        " --out {output.result} > {log} 2>&1"


rule action_table:
    wildcard_constraints:
        name=ACTION_TABLE_NAMES,
    input:
        results=action_table_inputs,
    output:
        table=report(
            "results/{name}.csv",
            caption="../report/action_table.rst",
            category="Action recognition",
            labels={"table": "{name}"},
        ),
        markdown="results/{name}.md",
    params:
        cells=action_table_options,
        reference=reference_option("action_tables"),
    log:
        "results/logs/action_table/{name}.log",
    benchmark:
        "results/benchmarks/action_table/{name}.tsv"
    conda:
        "../../envs/cpu.yaml"
    shell:
        "supportset action-table {params.cells} {params.reference}"
        " --out {output.table} > {log} 2>&1"
