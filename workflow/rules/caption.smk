rule caption:
    input:
        unpack(text_model_input),
        model=exported_model,
        videos="results/{dataset}/manifest/videos.parquet",
        captions="results/{dataset}/manifest/captions.parquet",
        visual=visual_shards,
        text=text_shards,
    output:
        captions="results/{dataset}/{experiment}/captions_{split}.parquet",
    params:
        settings=settings_json("captioning"),
        max_video_seconds=max_video_seconds,
        max_tokens=lambda wildcards: job_text_settings(wildcards)["max_tokens"],
        text_model=text_model_argument,
    threads: 2
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=1,
    log:
        "results/logs/caption/{dataset}/{experiment}/{split}.log",
    benchmark:
        "results/benchmarks/caption/{dataset}/{experiment}/{split}.tsv"
    conda:
        "../../envs/cuda.yaml"
    shell:
        "supportset --threads {threads} caption --model {input.model}"
        " --text-model {params.text_model:q} --videos {input.videos} --captions {input.captions}"
        " --visual {input.visual} --text {input.text} --split {wildcards.split}"
        " --max-video-seconds {params.max_video_seconds} --max-tokens {params.max_tokens}"
        " --settings {params.settings:q} --out {output.captions} > {log} 2>&1"


rule score_captions:
    input:
        generated="results/{dataset}/{experiment}/captions_{split}.parquet",
        captions="results/{dataset}/manifest/captions.parquet",
    output:
        metrics="results/{dataset}/{experiment}/caption_metrics_{split}.json",
    resources:
        mem_mb=4000,  # METEOR's Java runs with -Xmx2G
    log:
        "results/logs/score_captions/{dataset}/{experiment}/{split}.log",
    benchmark:
        "results/benchmarks/score_captions/{dataset}/{experiment}/{split}.tsv"
    conda:
        "../../envs/cpu.yaml"
    shell:
        "supportset score-captions --generated {input.generated} --captions {input.captions}"
        " --out {output.metrics} > {log} 2>&1"


rule caption_table:
    wildcard_constraints:
        name=CAPTION_TABLE_NAMES,
    input:
        metrics=caption_table_metrics,
    output:
        table=report(
            "results/{name}.csv",
            caption="../report/caption_table.rst",
            category="Captioning tables",
            labels={"table": "{name}"},
        ),
        markdown="results/{name}.md",
    params:
        rows=caption_table_rows,
        reference=reference_option("captioning_tables"),
    log:
        "results/logs/caption_table/{name}.log",
    benchmark:
        "results/benchmarks/caption_table/{name}.tsv"
    conda:
        "../../envs/cpu.yaml"
    shell:
        "supportset caption-table {params.rows} {params.reference}"
        " --out {output.table} > {log} 2>&1"
