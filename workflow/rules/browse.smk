rule browse:
    input:
        ranks="results/{dataset}/{experiment}/ranks_{split}.parquet",
        model=exported_model,
        videos="results/{dataset}/manifest/videos.parquet",
        captions="results/{dataset}/manifest/captions.parquet",
        visual=visual_shards,
        text=text_shards,
    output:
        browser=report(
            "results/{dataset}/{experiment}/browser_{split}.html",
            caption="../report/browser.rst",
            category="Retrieval browser",
            subcategory="{dataset}",
            labels={"experiment": "{experiment}", "split": "{split}"},
        ),
        attention=report(
            "results/{dataset}/{experiment}/attention_{split}.png",
            caption="../report/attention.rst",
            category="Support-set attention",
            subcategory="{dataset}",
            labels={"experiment": "{experiment}", "split": "{split}"},
        ),
        retrievals=report(
            "results/{dataset}/{experiment}/retrievals_{split}.png",
            caption="../report/retrievals.rst",
            category="Top-3 retrievals",
            subcategory="{dataset}",
            labels={"experiment": "{experiment}", "split": "{split}"},
        ),
    params:
        training=settings_json("training", with_experiment=True),
        report=section_json("report"),
    log:
        "results/logs/browse/{dataset}/{experiment}/{split}.log",
    benchmark:
        "results/benchmarks/browse/{dataset}/{experiment}/{split}.tsv"
    conda:
        "../../envs/cpu.yaml"
    shell:
        "supportset browse --ranks {input.ranks} --model {input.model}"
        " --videos {input.videos} --captions {input.captions}"
        " --visual {input.visual} --text {input.text}"
        " --training-settings {params.training:q} --settings {params.report:q}"
        " --split {wildcards.split} --out-browser {output.browser}"
        " --out-attention {output.attention} --out-retrievals {output.retrievals} > {log} 2>&1"
