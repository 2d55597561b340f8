rule build_tiny_text_model:
    input:
        captions="results/{dataset}/manifest/captions.parquet",
    output:
        model_dir=directory("results/{dataset}/text_model"),
    params:
        settings=tiny_settings_json,
    log:
        "results/logs/build_tiny_text_model/{dataset}.log",
    benchmark:
        "results/benchmarks/build_tiny_text_model/{dataset}.tsv"
    conda:
        "../../envs/cpu.yaml"
    shell:
        "supportset build-tiny-t5 --captions {input.captions} --settings {params.settings:q}"
        " --out {output.model_dir} > {log} 2>&1"


rule embed_text:
    input:
        unpack(text_model_input),
        captions="results/{dataset}/manifest/captions.parquet",
    output:
        shard=f"results/{{dataset}}/features/{{textset}}/{{shard}}.{TEXT_SUFFIX}",
        rejects="results/{dataset}/features/{textset}/{shard}.rejects.parquet",
    params:
        settings=text_settings_json,
        shard=lambda wildcards: int(wildcards.shard),
        shard_format=SHARD_FORMAT,  # a new shard layout rebuilds the shards
        model_option=text_model_option,
        token_ids_option=token_ids_option,  # the 'tokens' sets: no encoder states
    threads: 2
    resources:
        mem_mb=4000,
        runtime=120,
        gpu=lambda wildcards: 0 if text_set_holds_token_ids(wildcards.textset) else 1,
    log:
        "results/logs/embed_text/{dataset}/{textset}/{shard}.log",
    benchmark:
        "results/benchmarks/embed_text/{dataset}/{textset}/{shard}.tsv"
    conda:
        "../../envs/cuda.yaml"
    shell:
        "supportset --threads {threads} embed-text --manifest {input.captions}"
        " --shard {params.shard} --settings {params.settings:q} {params.model_option}"
        " {params.token_ids_option}"
        " --out {output.shard} --rejects {output.rejects} > {log} 2>&1"
