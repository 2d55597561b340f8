rule export:
    input:
        model=exported_model,
        videos="results/{dataset}/manifest/videos.parquet",
        captions="results/{dataset}/manifest/captions.parquet",
        visual=visual_shards,
        text=text_shards,
    output:
        videos="results/{dataset}/{experiment}/embeddings/{split}_videos.parquet",
        captions="results/{dataset}/{experiment}/embeddings/{split}_captions.parquet",
    params:
        max_video_seconds=max_video_seconds,
    threads: 2
    log:
        "results/logs/export/{dataset}/{experiment}/{split}.log",
    benchmark:
        "results/benchmarks/export/{dataset}/{experiment}/{split}.tsv"
    conda:
        "../../envs/cpu.yaml"
    shell:
        "supportset --threads {threads} export --model {input.model}"
        " --videos {input.videos} --captions {input.captions}"
        " --visual {input.visual} --text {input.text}"
        " --split {wildcards.split} --max-video-seconds {params.max_video_seconds}"
        " --out-videos {output.videos} --out-captions {output.captions} > {log} 2>&1"
