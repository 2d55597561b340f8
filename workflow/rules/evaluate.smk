rule evaluate:
    input:
        videos="results/{dataset}/{experiment}/embeddings/{split}_videos.parquet",
        captions="results/{dataset}/{experiment}/embeddings/{split}_captions.parquet",
    output:
        metrics="results/{dataset}/{experiment}/metrics_{split}.json",
    params:
        evaluation=settings_json("evaluation"),
    log:
        "results/logs/evaluate/{dataset}/{experiment}/{split}.log",
    benchmark:
        "results/benchmarks/evaluate/{dataset}/{experiment}/{split}.tsv"
    conda:
        "../../envs/cpu.yaml"
    shell:
        "supportset evaluate --videos {input.videos} --captions {input.captions}"
        " --settings {params.evaluation:q} --out {output.metrics} > {log} 2>&1"
