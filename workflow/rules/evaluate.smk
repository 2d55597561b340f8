rule evaluate:
    input:
        unpack(query_bank_input),
        videos="results/{dataset}/{experiment}/embeddings/{split}_videos.parquet",
        captions="results/{dataset}/{experiment}/embeddings/{split}_captions.parquet",
        model=exported_model,
    output:
        metrics="results/{dataset}/{experiment}/metrics_{split}.json",
        ranks="results/{dataset}/{experiment}/ranks_{split}.parquet",
    params:
        evaluation=evaluation_json,
        query_bank=query_bank_options,
    log:
        "results/logs/evaluate/{dataset}/{experiment}/{split}.log",
    benchmark:
        "results/benchmarks/evaluate/{dataset}/{experiment}/{split}.tsv"
    conda:
        "../../envs/cpu.yaml"
    shell:
        "supportset evaluate --videos {input.videos} --captions {input.captions}"
        " --model {input.model} {params.query_bank}"
        " --settings {params.evaluation:q} --out {output.metrics} --out-ranks {output.ranks}"
        " > {log} 2>&1"
