"""The paper's tables as targets: what `snakemake -n` plans for each, on the annotation
files of MSR-VTT, VATEX, ActivityNet, MSVD and HowTo100M (no videos: nothing runs)."""

from __future__ import annotations

import functools
import re
from pathlib import Path

import pytest
import yaml

from supportset.data.adapters import ADAPTERS
from tests.workflow_runs import job_counts, small_config, snakemake

pytestmark = pytest.mark.e2e

DATASETS = ("msrvtt", "msrvtt_full", "vatex", "activitynet", "msvd", "howto100m", "ucf101")
SHARDS = 4  # features.shards of every dataset but the demo


@pytest.fixture(scope="module")
def paper_datasets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workdir whose config points every dataset at a folder of its annotation files."""
    workdir = tmp_path_factory.mktemp("tables")
    config = small_config()
    for name in DATASETS:
        dataset = config["datasets"][name]
        root = workdir / "data" / name
        root.mkdir(parents=True)
        adapter = ADAPTERS[dataset["adapter"]]
        for file in adapter.files(root, adapter.choose_split(dataset.get("split", ""))):
            (root / file).parent.mkdir(parents=True, exist_ok=True)
            (root / file).touch()
        dataset["root"] = str(root)
        overrides = dataset.setdefault("overrides", {})
        overrides["features"] = config["datasets"]["demo"]["overrides"]["features"] | {
            "shards": SHARDS
        }
        overrides["text"] = overrides.get("text", {}) | {"model": "tiny", "shards": 1}
    hmdb = workdir / "data" / "hmdb51"
    for fold in (1, 2, 3):  # HMDB-51's split files, found by their names
        split_file = hmdb / f"testTrainMulti_7030_splits/brush_hair_test_split{fold}.txt"
        split_file.parent.mkdir(parents=True, exist_ok=True)
        split_file.touch()
    config["datasets"]["hmdb51"]["root"] = str(hmdb)
    config["datasets"]["hmdb51"]["overrides"] = {
        "features": config["datasets"]["ucf101"]["overrides"]["features"]
    }
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return workdir


@functools.cache
def dry_run(workdir: Path, target: str) -> str:
    """The output of `snakemake -n` for a table (once per target: tests share it)."""
    result = snakemake(workdir, f"results/{target}.csv", "--dry-run")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def jobs_of(stdout: str, rule: str) -> list[dict[str, str]]:
    """The planned jobs of `rule`: their `input:`, `output:` and `wildcards:` lines."""
    jobs = []
    for block in stdout.split("\nrule ")[1:]:
        name, _, body = block.partition(":\n")
        if name.strip() == rule:
            jobs.append(dict(re.findall(r"^\s+(input|output|wildcards): (.*)$", body, re.M)))
    return jobs


ONE_DATASET = {"prepare": 1, "build_tiny_text_model": 1, "extract_visual": SHARDS, "table": 1}


@pytest.mark.parametrize(
    ("table", "models", "text_sets"),
    [
        ("msrvtt_table1", 5, 1),  # none, identity, full, hybrid, cross
        ("msrvtt_table2a", 3, 1),  # motion, appearance, both: features extracted once
        ("msrvtt_table2b", 3, 1),  # mean, max, transformer
        ("msrvtt_table2c", 2, 2),  # T5-small, T5-base text encoders: two sets of token ids
        ("msrvtt_table2d", 2, 1),  # T5-small, T5-base decoders: one set of token ids
        ("msrvtt_table2e", 3, 1),  # InfoNCE, triplet inter + intra, triplet inter
        ("msrvtt_table2f", 5, 1),  # support sets of 2, 8, 16, 32 and the whole batch
    ],
)
def test_each_ablation_table_trains_its_rows_on_features_made_once(
    paper_datasets: Path, table: str, models: int, text_sets: int
):
    counts = job_counts(dry_run(paper_datasets, table))
    assert counts == {
        **ONE_DATASET, "embed_text": text_sets, "train": models, "export": models,
        "evaluate": models,
    }  # fmt: skip


def test_table_2a_trains_on_slices_of_the_same_shards(paper_datasets: Path):
    stdout = dry_run(paper_datasets, "msrvtt_table2a")
    trained = {job["wildcards"]: job["input"] for job in jobs_of(stdout, "train")}
    assert set(trained) == {
        "dataset=msrvtt, experiment=triplet+visual_features=motion",
        "dataset=msrvtt, experiment=triplet+visual_features=appearance",
        "dataset=msrvtt, experiment=triplet",
    }
    assert len(set(trained.values())) == 1  # the same shards, manifests and token ids


def test_table_2c_embeds_the_captions_once_per_t5(paper_datasets: Path):
    """The paper's T5 encoders are fine-tuned: each reads token ids, no cached states."""
    stdout = dry_run(paper_datasets, "msrvtt_table2c")
    outputs = sorted(job["output"].split(",")[0] for job in jobs_of(stdout, "embed_text"))
    assert outputs == [
        "results/msrvtt/features/tokens-t5-small/00000.parquet",
        "results/msrvtt/features/tokens/00000.parquet",
    ]
    embeddings = [line for line in stdout.splitlines() if " embed-text --manifest" in line]
    assert len(embeddings) == 2 and all("--token-ids-only" in line for line in embeddings)
    small = next(j for j in jobs_of(stdout, "train") if "t5-small" in j["wildcards"])
    assert "results/msrvtt/features/tokens-t5-small/00000.parquet" in small["input"]
    (command,) = [line for line in stdout.splitlines() if "text_model=t5-small" in line
                  and " train --videos" in line]  # fmt: skip
    assert "--text-model t5-small " in command  # the encoder fine-tuned is T5-small too


def test_a_frozen_text_encoder_reads_states_and_a_fine_tuned_one_token_ids(
    paper_datasets: Path,
):
    """On one dataset, an experiment with model.text_encoder frozen plans embed_text's T5
    states into features/text/, the fine-tuned default token ids alone into features/tokens/."""
    config = yaml.safe_load((paper_datasets / "config.yaml").read_text())
    config["experiments"]["frozen"] = {"overrides": {"model": {"text_encoder": "frozen"}}}
    changed = paper_datasets / "frozen.yaml"
    changed.write_text(yaml.safe_dump(config, sort_keys=False))
    targets = [f"results/msrvtt/{name}/metrics_test.json" for name in ("frozen", "triplet")]
    result = snakemake(paper_datasets, *targets, "--dry-run", "--configfile", str(changed))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    embedded = {
        line.split(" --out ")[1].split()[0]: "--token-ids-only" in line
        for line in result.stdout.splitlines()
        if " embed-text --manifest" in line
    }
    assert embedded == {
        "results/msrvtt/features/text/00000.parquet": False,
        "results/msrvtt/features/tokens/00000.parquet": True,
    }
    trained = {job["wildcards"]: job["input"] for job in jobs_of(result.stdout, "train")}
    assert "features/text/00000.parquet" in trained["dataset=msrvtt, experiment=frozen"]
    assert "features/tokens/00000.parquet" in trained["dataset=msrvtt, experiment=triplet"]


@pytest.mark.parametrize(
    ("table", "dataset"),
    [
        ("msrvtt_table3_pretrained", "msrvtt"),
        ("vatex_table4_pretrained", "vatex"),
        ("activitynet_table5_pretrained", "activitynet"),
        ("msvd_table_pretrained", "msvd"),
    ],
)
def test_pretrained_rows_fine_tune_the_one_howto100m_model(
    paper_datasets: Path, table: str, dataset: str
):
    stdout = dry_run(paper_datasets, table)
    assert job_counts(stdout) == {
        "prepare": 2, "build_tiny_text_model": 2, "extract_visual": 2 * SHARDS,
        "embed_text": 2, "train": 3, "export": 2, "evaluate": 2, "table": 1,
    }  # fmt: skip
    trained = {job["wildcards"]: job["input"] for job in jobs_of(stdout, "train")}
    pretraining = "results/howto100m/supportset/model.pt"
    assert pretraining in trained[f"dataset={dataset}, experiment=pretrained"]
    assert pretraining not in trained[f"dataset={dataset}, experiment=supportset"]
    assert "dataset=howto100m, experiment=supportset" in trained


def test_table_12_fine_tunes_three_seeds_from_one_pretraining(paper_datasets: Path):
    stdout = dry_run(paper_datasets, "vatex_table12")
    assert job_counts(stdout)["train"] == 4
    experiments = sorted(job["wildcards"] for job in jobs_of(stdout, "train"))
    assert experiments == [
        "dataset=howto100m, experiment=supportset",
        "dataset=vatex, experiment=pretrained",
        "dataset=vatex, experiment=pretrained+seed=1",
        "dataset=vatex, experiment=pretrained+seed=2",
    ]


def test_the_zero_shot_table_scores_the_howto100m_model_on_four_datasets(paper_datasets: Path):
    stdout = dry_run(paper_datasets, "zeroshot_table")
    assert job_counts(stdout) == {
        "prepare": 5, "build_tiny_text_model": 5, "extract_visual": 5 * SHARDS,
        "embed_text": 5, "train": 1, "export": 4, "evaluate": 4, "table": 1,
    }  # fmt: skip
    exports = jobs_of(stdout, "export")
    assert sorted(job["wildcards"].split(",")[0] for job in exports) == [
        f"dataset={name}" for name in ("activitynet", "msrvtt", "msvd", "vatex")
    ]
    assert all("results/howto100m/supportset/model.pt" in job["input"] for job in exports)


def test_a_model_that_is_not_trained_cannot_be_asked_for(paper_datasets: Path):
    result = snakemake(paper_datasets, "results/msrvtt/zeroshot/model.pt", "--dry-run")
    assert result.returncode != 0
    assert "experiments.zeroshot.model_from" in result.stdout + result.stderr


def test_qbnorm_s_query_bank_is_every_split_the_run_trains_on(paper_datasets: Path):
    """MSR-VTT trains on train and val (the paper's 9,000 videos): a table showing QB-Norm
    exports both as its query bank, beside the test split it scores."""
    config = yaml.safe_load((paper_datasets / "config.yaml").read_text())
    config["tables"]["msrvtt_table3"]["postprocess"] = ["dsl", "qbnorm"]
    changed = paper_datasets / "qbnorm.yaml"
    changed.write_text(yaml.safe_dump(config, sort_keys=False))
    result = snakemake(
        paper_datasets, "results/msrvtt_table3.csv", "--dry-run", "--configfile", str(changed)
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    exported = sorted(job["wildcards"] for job in jobs_of(result.stdout, "export"))
    assert [name for name in exported if "experiment=supportset," in name] == [
        f"dataset=msrvtt, experiment=supportset, split={split}"
        for split in ("test", "train", "val")
    ]
    evaluations = jobs_of(result.stdout, "evaluate")
    (evaluate,) = [job for job in evaluations if "experiment=supportset," in job["wildcards"]]
    for split in ("train", "val"):
        assert f"supportset/embeddings/{split}_captions.parquet" in evaluate["input"]
        assert f"supportset/embeddings/{split}_videos.parquet" in evaluate["input"]


CAPTIONING_TABLES = ("msrvtt_captioning", "vatex_captioning", "activitynet_captioning")


def test_captioning_tables_caption_and_score_each_row_s_run(paper_datasets: Path):
    """Each captioning table captions its test split with its rows' runs and scores them;
    MSR-VTT's is the full split (2,990 test videos), trained on its train and val."""
    result = snakemake(
        paper_datasets, *(f"results/{name}.csv" for name in CAPTIONING_TABLES), "--dry-run"
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    counts = job_counts(result.stdout)
    # msrvtt_full, vatex, activitynet and howto100m (the pre-trained ActivityNet row)
    assert counts == {
        "prepare": 4, "build_tiny_text_model": 4, "extract_visual": 4 * SHARDS, "embed_text": 4,
        "train": 5, "caption": 4, "score_captions": 4, "caption_table": 3,
    }  # fmt: skip
    captioned = sorted(job["wildcards"] for job in jobs_of(result.stdout, "caption"))
    assert captioned == [
        "dataset=activitynet, experiment=pretrained, split=test",
        "dataset=activitynet, experiment=supportset, split=test",
        "dataset=msrvtt_full, experiment=supportset, split=test",
        "dataset=vatex, experiment=supportset, split=test",
    ]
    (command,) = [
        line for line in result.stdout.splitlines() if "prepare --adapter msrvtt " in line
    ]
    assert "--split full " in command
    scored = jobs_of(result.stdout, "score_captions")
    assert all("results/" in job["input"] and "/manifest/captions.parquet" in job["input"]
               for job in scored)  # fmt: skip
    (table,) = [line for line in result.stdout.splitlines() if "caption-table" in line and
                "activitynet_captioning.csv" in line]  # fmt: skip
    assert "--reference activitynet_table9" in table
    assert (
        "'Ours, HT100M + ActivityNet' results/activitynet/pretrained/caption_metrics_test.json"
        in table
    )


def test_table_11_probes_three_folds_of_each_dataset_with_both_poolings(paper_datasets: Path):
    """Features are extracted once over every video of the three folds; each fold is
    prepared and probed with average pooling and with the HowTo100M model's head."""
    stdout = dry_run(paper_datasets, "action_table11")
    assert job_counts(stdout) == {
        "prepare": 3, "prepare_fold": 6, "extract_visual": 3 * SHARDS,
        "build_tiny_text_model": 1, "embed_text": 1, "train": 1, "probe_actions": 12,
        "action_table": 1,
    }  # fmt: skip
    probes = sorted(job["wildcards"] for job in jobs_of(stdout, "probe_actions"))
    assert probes == sorted(
        f"dataset={dataset}, pooling={pooling}, fold=fold{k}"
        for dataset in ("hmdb51", "ucf101")
        for pooling in ("average", "head-howto100m-supportset")
        for k in (1, 2, 3)
    )
    heads = [job for job in jobs_of(stdout, "probe_actions") if "head-" in job["wildcards"]]
    assert all("results/howto100m/supportset/model.pt" in job["input"] for job in heads)
    prepared = [line for line in stdout.splitlines() if "supportset prepare --adapter" in line]
    assert sum("--split all " in line for line in prepared) == 2
    assert {job["wildcards"] for job in jobs_of(stdout, "train")} == {
        "dataset=howto100m, experiment=supportset"
    }
    ucf = [line for line in stdout.splitlines() if " probe --videos results/ucf101" in line]
    assert len(ucf) == 6 and all('"epochs": 500' in line for line in ucf)
