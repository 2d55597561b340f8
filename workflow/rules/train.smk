rule train:
    input:
        unpack(text_model_input),
        unpack(init_checkpoint_input),
        videos="results/{dataset}/manifest/videos.parquet",
        captions="results/{dataset}/manifest/captions.parquet",
        visual=visual_shards,
        text=text_shards,
    output:
        model="results/{dataset}/{experiment}/model.pt",
        train_log="results/{dataset}/{experiment}/train_log.csv",
        curves=report(
            "results/{dataset}/{experiment}/train_curves.png",
            caption="../report/train_curves.rst",
            category="Training curves",
        ),
    params:
        model=settings_json("model", with_experiment=True),
        training=settings_json("training", with_experiment=True),
        text_model=text_model_argument,
        launcher=training_launcher,
    threads: 2
    resources:
        mem_mb=8000,
        runtime=720,
        gpu=1,
    log:
        "results/logs/train/{dataset}/{experiment}.log",
    benchmark:
        "results/benchmarks/train/{dataset}/{experiment}.tsv"
    conda:
        "../../envs/cuda.yaml"
    shell:
        "{params.launcher} --threads {threads} train --videos {input.videos} --captions {input.captions}"
        " --visual {input.visual} --text {input.text}"
        " --model-settings {params.model:q} --training-settings {params.training:q}"
        " --text-model {params.text_model:q}"
        " --out-model {output.model} --out-log {output.train_log} > {log} 2>&1"
