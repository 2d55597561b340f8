# Helpers of the rules: settings per dataset/experiment, shard lists and wildcard constraints.
import json
import shlex
from pathlib import Path

from supportset.config import check_cross_references, load_schema, section_settings
from supportset.data.adapters import ADAPTERS
from supportset.features.store import SHARD_FORMAT
from supportset.preflight import WEIGHTED_RULES, check_job_weights

# One shard format per run (file names depend on it); datasets cannot override it.
SUFFIXES = {"parquet": "parquet", "hdf5": "h5"}
VISUAL_SUFFIX = SUFFIXES[config["features"]["format"]]
TEXT_SUFFIX = SUFFIXES[config["text"]["format"]]

check_cross_references(config, load_schema(workflow.source_path("../schemas/config.schema.yaml")))


wildcard_constraints:
    dataset="[a-z][a-z0-9_]*",
    experiment="[A-Za-z0-9][A-Za-z0-9_-]*",
    split="train|val|test",
    shard="[0-9]{5}",
    name="[A-Za-z0-9][A-Za-z0-9_-]*",


def settings(section, dataset, experiment=None):
    """Effective settings of one config section for a dataset (and experiment)."""
    if dataset not in config["datasets"]:
        raise WorkflowError(f"unknown dataset '{dataset}' (config key datasets)")
    if experiment is not None and experiment not in config["experiments"]:
        raise WorkflowError(f"unknown experiment '{experiment}' (config key experiments)")
    return section_settings(config, section, dataset, experiment)


def check_planned_weights(jobs):
    """Stop before the first job when a planned job needs weights that are not available
    offline. Runs from `onstart`, once the jobs to run are known: an error raised while the
    DAG is built would be swallowed by Snakemake for jobs whose outputs exist, which would
    silently keep results made with the old settings."""
    checked = set()
    for job in jobs:
        if job.rule.name not in WEIGHTED_RULES:
            continue
        dataset, experiment = job.wildcards.get("dataset"), job.wildcards.get("experiment")
        if (job.rule.name, dataset, experiment) in checked:
            continue
        checked.add((job.rule.name, dataset, experiment))
        try:
            check_job_weights(
                job.rule.name,
                settings("features", dataset),
                settings("text", dataset),
                settings("model", dataset, experiment) if experiment else None,
                settings("training", dataset, experiment) if experiment else None,
            )
        except RuntimeError as error:
            raise WorkflowError(f"dataset '{dataset}': {error}") from error


def settings_json(section, with_experiment=False):
    """A params function: the section's settings as a JSON string."""

    def to_json(wildcards):
        experiment = wildcards.experiment if with_experiment else None
        return json.dumps(settings(section, wildcards.dataset, experiment), sort_keys=True)

    return to_json


def dataset_root(dataset):
    """The dataset's folder; stops the run (before any job) when it is not configured."""
    root = config["datasets"][dataset]["root"]
    if not root:
        raise WorkflowError(
            f"config key 'datasets.{dataset}.root' is empty: set it to the dataset's folder "
            "(README, 'Datasets'; for a folder of your own videos, docs/your-own-videos.md)"
        )
    return root


def dataset_split(dataset):
    """The dataset's split choice, its adapter's default when config leaves it empty."""
    adapter = ADAPTERS[config["datasets"][dataset]["adapter"]]
    return adapter.choose_split(config["datasets"][dataset]["split"])


def prepare_inputs(wildcards):
    """Annotation files the dataset's adapter reads."""
    root = dataset_root(wildcards.dataset)
    adapter = ADAPTERS[config["datasets"][wildcards.dataset]["adapter"]]
    split = dataset_split(wildcards.dataset)
    return [f"{root}/{name}" for name in adapter.files(Path(root), split)]


def shard_names(count):
    return [f"{index:05d}" for index in range(count)]


def visual_shards(wildcards):
    count = settings("features", wildcards.dataset)["shards"]
    return expand(
        "results/{dataset}/features/visual/{shard}.{suffix}",
        dataset=wildcards.dataset,
        shard=shard_names(count),
        suffix=VISUAL_SUFFIX,
    )


def text_shards(wildcards):
    count = settings("text", wildcards.dataset)["shards"]
    return expand(
        "results/{dataset}/features/text/{shard}.{suffix}",
        dataset=wildcards.dataset,
        shard=shard_names(count),
        suffix=TEXT_SUFFIX,
    )


def init_checkpoint_input(wildcards):
    """The checkpoint training starts from, when training.init_from names one."""
    path = settings("training", wildcards.dataset, wildcards.experiment)["init_from"]
    return {"init_from": path} if path else {}


def text_model_input(wildcards):
    """The pipeline-built T5 folder when text.model is 'tiny'; nothing otherwise."""
    if settings("text", wildcards.dataset)["model"] == "tiny":
        return {"model_dir": f"results/{wildcards.dataset}/text_model"}
    return {}


def text_model_argument(wildcards, input):
    """The T5 the caption decoder comes from: the built folder, or text.model."""
    if hasattr(input, "model_dir"):
        return input.model_dir
    return settings("text", wildcards.dataset)["model"]


def text_model_option(wildcards, input):
    return f"--model-dir {input.model_dir}" if hasattr(input, "model_dir") else ""


def tiny_settings_json(wildcards):
    return json.dumps(settings("text", wildcards.dataset)["tiny"], sort_keys=True)


def max_video_seconds(wildcards):
    return settings("training", wildcards.dataset, wildcards.experiment)["max_video_seconds"]


def table_metrics(wildcards):
    """Metrics files of a table's rows, in row order."""
    table = config["tables"][wildcards.name]
    return [
        f"results/{table['dataset']}/{experiment}/metrics_{table['split']}.json"
        for experiment in table["rows"].values()
    ]


def table_row_options(wildcards, input):
    """`--row LABEL METRICS` for every row, shell-quoted."""
    labels = config["tables"][wildcards.name]["rows"]
    return " ".join(
        f"--row {shlex.quote(label)} {shlex.quote(path)}"
        for label, path in zip(labels, input, strict=True)
    )


def reference_option(wildcards):
    """`--reference NAME` for a table with a paper reference; nothing for one without."""
    reference = config["tables"][wildcards.name]["reference"]
    return f"--reference {shlex.quote(reference)}" if reference else ""


def training_launcher(wildcards, resources):
    """`supportset`, or torchrun with one process per GPU when the job has several."""
    if resources.gpu > 1:
        return f"torchrun --standalone --nproc-per-node {resources.gpu} -m supportset.cli"
    return "supportset"
