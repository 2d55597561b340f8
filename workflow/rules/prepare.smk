rule prepare:
    input:
        prepare_inputs,
    output:
        videos="results/{dataset}/manifest/videos.parquet",
        captions="results/{dataset}/manifest/captions.parquet",
    params:
        adapter=lambda wildcards: config["datasets"][wildcards.dataset]["adapter"],
        root=lambda wildcards: dataset_root(wildcards.dataset),
    log:
        "results/logs/prepare/{dataset}.log",
    benchmark:
        "results/benchmarks/prepare/{dataset}.tsv"
    conda:
        "../../envs/supportset.yaml"
    shell:
        "supportset prepare --adapter {params.adapter} --root {params.root:q}"
        " --out-dir results/{wildcards.dataset}/manifest > {log} 2>&1"
