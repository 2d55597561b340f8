rule prepare:
    input:
        prepare_inputs,
    output:
        videos="results/{dataset}/manifest/videos.parquet",
        captions="results/{dataset}/manifest/captions.parquet",
        missing="results/{dataset}/manifest/missing_videos.csv",
    params:
        adapter=lambda wildcards: config["datasets"][wildcards.dataset]["adapter"],
        root=lambda wildcards: dataset_root(wildcards.dataset),
        split=lambda wildcards: dataset_split(wildcards.dataset),
        missing=lambda wildcards: config["datasets"][wildcards.dataset]["missing_videos"],
        max_missing=lambda wildcards: config["datasets"][wildcards.dataset]["max_missing"],
    log:
        "results/logs/prepare/{dataset}.log",
    benchmark:
        "results/benchmarks/prepare/{dataset}.tsv"
    conda:
        "../../envs/cpu.yaml"
    shell:
        "supportset prepare --adapter {params.adapter} --root {params.root:q}"
        " --split {params.split:q} --missing-videos {params.missing}"
        " --max-missing {params.max_missing}"
        " --out-dir results/{wildcards.dataset}/manifest > {log} 2>&1"
