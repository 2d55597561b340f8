# Helpers of the rules: settings per dataset/experiment, shard lists and wildcard constraints.
import json
import re
import shlex
from pathlib import Path

from supportset.config import (
    check_cross_references,
    load_schema,
    section_settings,
    text_set,
    text_set_holds_token_ids,
    text_set_settings,
)
from supportset.data.adapters import ADAPTERS
from supportset.features.store import SHARD_FORMAT
from supportset.preflight import CHECKED_RULES, check_job_weights
from supportset.table_plan import plan_table

# One shard format per run (file names depend on it); datasets cannot override it.
SUFFIXES = {"parquet": "parquet", "hdf5": "h5"}
VISUAL_SUFFIX = SUFFIXES[config["features"]["format"]]
TEXT_SUFFIX = SUFFIXES[config["text"]["format"]]

# Also adds the experiments that table rows derive (set, sweep, seeds) to config.
check_cross_references(config, load_schema(workflow.source_path("../schemas/config.schema.yaml")))

# A table's name, one of config's tables (its sidecar results/{name}.runs.csv is not one).
TABLE_NAMES = "|".join(map(re.escape, config["tables"])) or "(?!)"
CAPTION_TABLE_NAMES = "|".join(map(re.escape, config["captioning_tables"])) or "(?!)"
ACTION_TABLE_NAMES = "|".join(map(re.escape, config["action_tables"])) or "(?!)"


wildcard_constraints:
    dataset="[a-z][a-z0-9_]*",
    experiment="[A-Za-z0-9][A-Za-z0-9_.=+-]*",
    textset="(text|tokens)(-[a-z0-9.-]+)?",  # T5 states, or token ids alone (config.text_set)
    split="train|val|test",
    shard="[0-9]{5}",
    name="[A-Za-z0-9][A-Za-z0-9_-]*",
    fold="fold[1-3]|events",
    pooling="average|head-[a-z][a-z0-9_]*-[A-Za-z0-9][A-Za-z0-9_.=+-]*",


def settings(section, dataset, experiment=None):
    """Effective settings of one config section for a dataset (and experiment)."""
    if dataset not in config["datasets"]:
        raise WorkflowError(f"unknown dataset '{dataset}' (config key datasets)")
    if experiment is not None:
        settings_of_experiment(experiment)  # stops for an unknown one
    return section_settings(config, section, dataset, experiment)


def check_planned_weights(jobs):
    """Stop before the first job when a planned job needs weights that are not available
    offline. Runs from `onstart`, once the jobs to run are known: an error raised while the
    DAG is built would be swallowed by Snakemake for jobs whose outputs exist, which would
    silently keep results made with the old settings. Scoring captions checks for Java
    the same way."""
    checked = set()
    for job in jobs:
        if job.rule.name not in CHECKED_RULES:
            continue
        dataset, experiment = job.wildcards.get("dataset"), job.wildcards.get("experiment")
        textset = job.wildcards.get("textset")
        if (job.rule.name, dataset, experiment, textset) in checked:
            continue
        checked.add((job.rule.name, dataset, experiment, textset))
        try:
            check_job_weights(
                job.rule.name,
                settings("features", dataset),
                job_text_settings(job.wildcards),
                settings("model", dataset, experiment) if experiment else None,
                settings("training", dataset, experiment) if experiment else None,
                token_ids_only=bool(textset) and text_set_holds_token_ids(textset),
            )
        except RuntimeError as error:
            raise WorkflowError(f"dataset '{dataset}': {error}") from error


def job_text_settings(wildcards):
    """The text settings a job uses: its text set's (embed_text), its experiment's
    (train, export: text.model may differ per experiment, Table 2c), or the dataset's."""
    if "textset" in wildcards.keys():
        return text_set_settings(config, wildcards.dataset, wildcards.textset)
    return settings("text", wildcards.dataset, wildcards.get("experiment"))


def text_settings_json(wildcards):
    return json.dumps(job_text_settings(wildcards), sort_keys=True)


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


def annotation_files(dataset, split):
    """Annotation files the dataset's adapter reads for split choice `split`."""
    root = dataset_root(dataset)
    adapter = ADAPTERS[config["datasets"][dataset]["adapter"]]
    return [f"{root}/{name}" for name in adapter.files(Path(root), split)]


def prepare_inputs(wildcards):
    """Annotation files the dataset's adapter reads for its split."""
    return annotation_files(wildcards.dataset, dataset_split(wildcards.dataset))


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


def visual_rejects(wildcards):
    """The rejects table beside each visual shard of the dataset."""
    count = settings("features", wildcards.dataset)["shards"]
    return expand(
        "results/{dataset}/features/visual/{shard}.rejects.parquet",
        dataset=wildcards.dataset,
        shard=shard_names(count),
    )


def text_shards(wildcards):
    """The text shards of the experiment's text set (of the dataset's, without one)."""
    count = settings("text", wildcards.dataset)["shards"]
    return expand(
        "results/{dataset}/features/{textset}/{shard}.{suffix}",
        dataset=wildcards.dataset,
        textset=text_set(config, wildcards.dataset, wildcards.get("experiment")),
        shard=shard_names(count),
        suffix=TEXT_SUFFIX,
    )


def init_checkpoint_input(wildcards):
    """The checkpoint training starts from, when training.init_from names one. An
    experiment with model_from is not trained: asking for its model.pt is an error."""
    model_from = settings_of_experiment(wildcards.experiment).get("model_from")
    if model_from:
        raise WorkflowError(
            f"experiment '{wildcards.experiment}' is not trained: it is scored with "
            f"{model_from} (config key experiments.{wildcards.experiment}.model_from)"
        )
    path = settings("training", wildcards.dataset, wildcards.experiment)["init_from"]
    return {"init_from": path} if path else {}


def exported_model(wildcards):
    """The model.pt an experiment's embeddings come from: its own, or its model_from."""
    model_from = settings_of_experiment(wildcards.experiment).get("model_from")
    return model_from or f"results/{wildcards.dataset}/{wildcards.experiment}/model.pt"


def settings_of_experiment(experiment):
    """The experiment's entry in config (model_from, overrides); stops for an unknown one."""
    if experiment not in config["experiments"]:
        raise WorkflowError(f"unknown experiment '{experiment}' (config key experiments)")
    return config["experiments"][experiment]


def text_model_input(wildcards):
    """The pipeline-built T5 folder when the job's text.model is 'tiny'; nothing otherwise."""
    if job_text_settings(wildcards)["model"] == "tiny":
        return {"model_dir": f"results/{wildcards.dataset}/text_model"}
    return {}


def text_model_argument(wildcards, input):
    """The T5 of the experiment's text encoder (and, unless training.decoder names
    another, its caption decoder): the built folder, or text.model."""
    if hasattr(input, "model_dir"):
        return input.model_dir
    return job_text_settings(wildcards)["model"]


def text_model_option(wildcards, input):
    return f"--model-dir {input.model_dir}" if hasattr(input, "model_dir") else ""


def token_ids_option(wildcards):
    """`--token-ids-only` for a text set of token ids alone (a fine-tuned text encoder's)."""
    return "--token-ids-only" if text_set_holds_token_ids(wildcards.textset) else ""


def tiny_settings_json(wildcards):
    return json.dumps(settings("text", wildcards.dataset)["tiny"], sort_keys=True)


def max_video_seconds(wildcards):
    return settings("training", wildcards.dataset, wildcards.experiment)["max_video_seconds"]


def table_row_metrics(name):
    """(label, metrics files of its runs) of every row of table `name`, in row order."""
    split = config["tables"][name]["split"]
    return [
        (row.label, [f"results/{run.dataset}/{run.experiment}/metrics_{split}.json" for run in row.runs])
        for row in plan_table(config, name)
    ]


def table_metrics(wildcards):
    """Metrics files of a table's rows (every run of every row), in row order."""
    return [path for _, paths in table_row_metrics(wildcards.name) for path in paths]


def table_row_options(wildcards):
    """`--row LABEL METRICS...` for every row, shell-quoted."""
    return " ".join(
        f"--row {shlex.quote(label)} " + " ".join(shlex.quote(path) for path in paths)
        for label, paths in table_row_metrics(wildcards.name)
    )


def reference_option(section):
    """A params function: `--reference NAME` for a table of config section `section`
    (tables, captioning_tables, action_tables) with a paper reference; nothing for one
    without."""

    def option(wildcards):
        reference = config[section][wildcards.name]["reference"]
        return f"--reference {shlex.quote(reference)}" if reference else ""

    return option


def training_launcher(wildcards, resources):
    """`supportset`, or torchrun with one process per GPU when the job has several."""
    if resources.gpu > 1:
        return f"torchrun --standalone --nproc-per-node {resources.gpu} -m supportset.cli"
    return "supportset"


def run_postprocess(dataset, experiment, split):
    """The post-processings the evaluation of a run computes: those of every table that
    shows the run on that split (tables.{name}.postprocess), in a fixed order."""
    wanted = set()
    for name, table in config["tables"].items():
        if table["split"] == split and table.get("postprocess"):
            runs = {(run.dataset, run.experiment) for row in plan_table(config, name) for run in row.runs}
            if (dataset, experiment) in runs:
                wanted.update(table["postprocess"])
    return sorted(wanted)


def evaluation_json(wildcards):
    """The dataset's evaluation settings, with the post-processings its tables show."""
    evaluation = settings("evaluation", wildcards.dataset)
    evaluation["postprocess"] = run_postprocess(wildcards.dataset, wildcards.experiment, wildcards.split)
    return json.dumps(evaluation, sort_keys=True)


def query_bank_input(wildcards):
    """QB-Norm's query banks when a table shows the run with qbnorm: the embeddings of the
    splits the run trains on (training.train_splits; MSR-VTT's train and val), texts for
    text-to-video and videos for video-to-text."""
    if "qbnorm" not in run_postprocess(wildcards.dataset, wildcards.experiment, wildcards.split):
        return {}
    embeddings = f"results/{wildcards.dataset}/{wildcards.experiment}/embeddings"
    splits = settings("training", wildcards.dataset, wildcards.experiment)["train_splits"]
    return {
        "bank_captions": [f"{embeddings}/{split}_captions.parquet" for split in splits],
        "bank_videos": [f"{embeddings}/{split}_videos.parquet" for split in splits],
    }


def query_bank_options(wildcards, input):
    if not hasattr(input, "bank_captions"):
        return ""
    return f"--query-bank-captions {input.bank_captions} --query-bank-videos {input.bank_videos}"


def postprocess_option(wildcards):
    """`--postprocess NAME...` for a table that shows post-processed rows."""
    names = config["tables"][wildcards.name].get("postprocess", [])
    return f"--postprocess {' '.join(names)}" if names else ""


def section_json(section):
    """A top-level config section (no dataset overrides) as JSON, for `params:`."""
    return json.dumps(config[section], sort_keys=True)


def table_views(name):
    """What `make demo` shows of every run of table `name` besides the table: the search
    index and the retrieval browser (with the attention and retrieval figures)."""
    split = config["tables"][name]["split"]
    return [
        f"results/{run.dataset}/{run.experiment}/{view}"
        for row in plan_table(config, name)
        for run in row.runs
        for view in (f"index/{split}.faiss", f"browser_{split}.html")
    ]


def caption_table_runs(name):
    """(label, caption metrics file) of every row of captioning table `name`."""
    table = config["captioning_tables"][name]
    return [
        (label, f"results/{table['dataset']}/{experiment}/caption_metrics_{table['split']}.json")
        for label, experiment in table["rows"].items()
    ]


def caption_table_metrics(wildcards):
    return [path for _, path in caption_table_runs(wildcards.name)]


def caption_table_rows(wildcards):
    """`--row LABEL METRICS` for every row, shell-quoted."""
    return " ".join(
        f"--row {shlex.quote(label)} {shlex.quote(path)}"
        for label, path in caption_table_runs(wildcards.name)
    )


def probe_folds(dataset):
    """The split choices of the dataset's adapter that label videos for the action probe."""
    return ADAPTERS[config["datasets"][dataset]["adapter"]].probe_folds


def pooling_name(row, dataset):
    """The probe's pooling wildcard of an action table row on `dataset`: average, or
    head-{dataset of the model}-{experiment}."""
    if row["pooling"] == "average":
        return "average"
    return f"head-{row.get('dataset') or dataset}-{row['experiment']}"


def action_table_cells(name):
    """(row label, column label, probe results of every fold) of action table `name`."""
    table = config["action_tables"][name]
    return [
        (
            label,
            column,
            [
                f"results/{dataset}/probe/{pooling_name(row, dataset)}/{fold}.json"
                for fold in probe_folds(dataset)
            ],
        )
        for label, row in table["rows"].items()
        for column, dataset in table["datasets"].items()
    ]


def action_table_inputs(wildcards):
    return [path for *_, paths in action_table_cells(wildcards.name) for path in paths]


def action_table_options(wildcards):
    """`--cell ROW COLUMN RESULT...` for every row and column, shell-quoted."""
    return " ".join(
        " ".join(["--cell", shlex.quote(label), shlex.quote(column), *map(shlex.quote, paths)])
        for label, column, paths in action_table_cells(wildcards.name)
    )


def probe_model_input(wildcards):
    """The model.pt whose video head pools (pooling head-{dataset}-{experiment}): the
    experiment's own, or its model_from."""
    if wildcards.pooling == "average":
        return {}
    dataset, experiment = wildcards.pooling[len("head-") :].split("-", 1)
    model_from = settings_of_experiment(experiment).get("model_from")
    return {"model": model_from or f"results/{dataset}/{experiment}/model.pt"}


def probe_model_option(wildcards, input):
    return f"--model {input.model}" if hasattr(input, "model") else ""


def prepare_fold_inputs(wildcards):
    """Annotation files the adapter reads for one probe fold."""
    return annotation_files(wildcards.dataset, wildcards.fold)

