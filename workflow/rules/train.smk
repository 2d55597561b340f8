rule train:
    input:
        videos="results/{dataset}/manifest/videos.parquet",
        captions="results/{dataset}/manifest/captions.parquet",
        visual=visual_shards,
        text=text_shards,
    output:
        model="results/{dataset}/{experiment}/model.pt",
        train_log="results/{dataset}/{experiment}/train_log.csv",
    params:
        model=settings_json("model", with_experiment=True),
        training=settings_json("training", with_experiment=True),
    threads: 2
    resources:
        mem_mb=8000,
        runtime=720,
    log:
        "results/logs/train/{dataset}/{experiment}.log",
    benchmark:
        "results/benchmarks/train/{dataset}/{experiment}.tsv"
    conda:
        "../../envs/supportset.yaml"
    shell:
        "supportset --threads {threads} train --videos {input.videos} --captions {input.captions}"
        " --visual {input.visual} --text {input.text}"
        " --model-settings {params.model:q} --training-settings {params.training:q}"
        " --out-model {output.model} --out-log {output.train_log} > {log} 2>&1"
