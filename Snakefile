# supportset: raw videos and captions -> the retrieval tables of Support-Set Bottlenecks
# (Patrick et al., ICLR 2021). Default target: the demo table on the generated corpus.
from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/corpus.smk"
include: "workflow/rules/prepare.smk"
include: "workflow/rules/extract_visual.smk"
include: "workflow/rules/embed_text.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/export.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/table.smk"
include: "workflow/rules/index.smk"
include: "workflow/rules/browse.smk"
include: "workflow/rules/caption.smk"
include: "workflow/rules/probe.smk"


onstart:
    check_planned_weights(workflow.dag.needrun_jobs())


# The demo table, and for each of its runs the search index and the retrieval browser;
# the demo's captioning and action-recognition tables.
rule all:
    input:
        "results/demo_table3.csv",
        table_views("demo_table3"),
        "results/demo_captioning.csv",
        "results/demo_actions.csv",
    default_target: True
