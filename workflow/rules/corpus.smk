rule make_demo_corpus:
    output:
        annotations="resources/{dataset}/annotations.json",
        videos=directory("resources/{dataset}/videos"),
    params:
        corpus=lambda wildcards: config["datasets"][wildcards.dataset]["corpus"],
    log:
        "results/logs/make_demo_corpus/{dataset}.log",
    benchmark:
        "results/benchmarks/make_demo_corpus/{dataset}.tsv"
    conda:
        "../../envs/cpu.yaml"
    shell:
        "supportset corpus demo --out resources/{wildcards.dataset}"
        " --num-videos {params.corpus[num_videos]} --seed {params.corpus[seed]}"
        " --min-seconds {params.corpus[min_seconds]} --max-seconds {params.corpus[max_seconds]}"
        " > {log} 2>&1"
