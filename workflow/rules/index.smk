rule index:
    input:
        videos="results/{dataset}/{experiment}/embeddings/{split}_videos.parquet",
    output:
        index="results/{dataset}/{experiment}/index/{split}.faiss",
    params:
        search=section_json("search"),
    log:
        "results/logs/index/{dataset}/{experiment}/{split}.log",
    benchmark:
        "results/benchmarks/index/{dataset}/{experiment}/{split}.tsv"
    conda:
        "../../envs/cpu.yaml"
    shell:
        "supportset index --videos {input.videos} --settings {params.search:q}"
        " --out {output.index} > {log} 2>&1"
