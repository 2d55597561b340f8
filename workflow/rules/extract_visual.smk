rule extract_visual:
    input:
        videos="results/{dataset}/manifest/videos.parquet",
    output:
        shard=f"results/{{dataset}}/features/visual/{{shard}}.{VISUAL_SUFFIX}",
        rejects="results/{dataset}/features/visual/{shard}.rejects.parquet",
    params:
        settings=settings_json("features"),
        shard=lambda wildcards: int(wildcards.shard),
        shard_format=SHARD_FORMAT,  # a new shard layout rebuilds the shards
    threads: 4
    retries: 2
    resources:
        mem_mb=lambda wildcards, attempt: 4000 * attempt,
        runtime=240,
        gpu=1,
    log:
        "results/logs/extract_visual/{dataset}/{shard}.log",
    benchmark:
        "results/benchmarks/extract_visual/{dataset}/{shard}.tsv"
    conda:
        "../../envs/cuda.yaml"
    shell:
        "supportset --threads {threads} extract-visual --manifest {input.videos}"
        " --shard {params.shard} --settings {params.settings:q}"
        " --out {output.shard} --rejects {output.rejects} --workers {threads} > {log} 2>&1"


# Rejected videos of every visual shard against the manifest: the rate per split and the
# count per kind of failure (asked for by name: results/{dataset}/features/visual_rejects.csv).
rule report_rejects:
    input:
        videos="results/{dataset}/manifest/videos.parquet",
        rejects=visual_rejects,
    output:
        report="results/{dataset}/features/visual_rejects.csv",
        markdown="results/{dataset}/features/visual_rejects.md",
    log:
        "results/logs/report_rejects/{dataset}.log",
    benchmark:
        "results/benchmarks/report_rejects/{dataset}.tsv"
    conda:
        "../../envs/cpu.yaml"
    shell:
        "supportset rejects-report --videos {input.videos} --rejects {input.rejects}"
        " --out {output.report} > {log} 2>&1"
