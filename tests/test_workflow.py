"""End to end: the real Snakemake DAG on a small generated corpus, in a temporary folder."""

from __future__ import annotations

import csv
import json
import re
import shutil
import statistics
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
import yaml

from supportset.retrieval.table import TABLE_COLUMNS, interval_columns
from tests.workflow_runs import REPO, job_counts, small_config, snakemake

pytestmark = pytest.mark.e2e


def test_default_target_is_the_demo_table(demo_run: Path):
    with open(demo_run / "results/demo_table3.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == TABLE_COLUMNS + interval_columns(10)  # the demo bootstraps
    assert {row["source"] for row in rows} == {"paper", "this run"}
    ours = [row for row in rows if row["source"] == "this run"]
    labels = list(small_config()["tables"]["demo_table3"]["rows"])
    # each row, then its post-processed versions (the table's postprocess)
    assert [row["row"] for row in ours] == [
        f"{label}{suffix}" for label in labels for suffix in ("", " + DSL", " + QB-Norm")
    ]
    for row in ours:
        assert 0 <= float(row["T2V_R@1"]) <= 100 and float(row["T2V_MdR"]) >= 1
        assert float(row["V2T_R@5_low"]) <= float(row["V2T_R@5"]) <= float(row["V2T_R@5_high"])
    markdown = (demo_run / "results/demo_table3.md").read_text()
    assert markdown.count("this run") == len(ours) == 12


def test_every_stage_left_its_outputs_logs_and_benchmarks(demo_run: Path):
    results = demo_run / "results/demo"
    assert len(pq.read_table(results / "manifest/videos.parquet")) == 20
    shards = sorted((results / "features/visual").glob("0000?.parquet"))
    rejects = sorted((results / "features/visual").glob("*.rejects.parquet"))
    assert len(shards) == 2 and len(rejects) == 2
    written = sum(len(pq.read_table(shard)) for shard in shards)
    rejected = sum(len(pq.read_table(path)) for path in rejects)
    assert written + rejected == 20
    metrics = json.loads((results / "supportset/metrics_test.json").read_text())
    assert set(metrics) == {"t2v", "v2t", "protocol", "postprocessed", "provenance"}
    assert metrics["t2v"]["n_queries"] > 0
    assert metrics["protocol"] == "multi-caption" and len(metrics["v2t"]["CI95"]["R@1"]) == 2
    log = (results / "supportset/train_log.csv").read_text().splitlines()
    assert log[0].startswith("epoch,step,kind,loss,contrast,caption")
    assert float(log[1].split(",")[5]) > 0  # the cross-captioning loss is on
    stages = ("make_demo_corpus", "prepare", "extract_visual", "embed_text", "train", "export")
    for rule in (*stages, "evaluate", "index", "browse", "table"):
        assert any((demo_run / "results/logs" / rule).rglob("*.log")), rule
        assert any((demo_run / "results/benchmarks" / rule).rglob("*.tsv")), rule


def test_rerun_has_nothing_to_do(demo_run: Path):
    result = snakemake(demo_run, "--dry-run")
    assert result.returncode == 0
    assert "Nothing to be done" in result.stdout + result.stderr


def planned_jobs(demo_run: Path, config: dict) -> dict[str, int]:
    """Jobs per rule that a dry run with `config` plans (Snakemake's job stats table)."""
    (demo_run / "changed.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    result = snakemake(demo_run, "--dry-run", "--configfile", str(demo_run / "changed.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr
    return job_counts(result.stdout)


# What follows a new model of each of the demo table's 4 runs: the test split's and the
# train split's (QB-Norm's query bank) embeddings, the metrics, the index, the browser;
# the captions of the two runs of demo_captioning, and the probes of demo_actions' heads.
AFTER_TRAINING = {
    "train": 4, "export": 8, "evaluate": 4, "index": 4, "browse": 4, "table": 1,
    "caption": 2, "score_captions": 2, "caption_table": 1, "probe_actions": 2,
    "action_table": 1,
}  # fmt: skip
# new features: also the average-pooling probe
AFTER_EXTRACTION = {**AFTER_TRAINING, "extract_visual": 2, "probe_actions": 3}


def test_changed_hyper_parameter_reruns_training_but_not_extraction(demo_run: Path):
    config = small_config()
    config["datasets"]["demo"]["overrides"]["training"]["margin"] = 0.3
    assert planned_jobs(demo_run, config) == {"all": 1, **AFTER_TRAINING}


def test_changed_feature_setting_reruns_extraction_and_what_follows(demo_run: Path):
    config = small_config()
    config["datasets"]["demo"]["overrides"]["features"]["batch_size"] = 7
    assert planned_jobs(demo_run, config) == {"all": 1, **AFTER_EXTRACTION}


def test_several_gpus_start_torchrun_with_one_process_each(demo_run: Path):
    result = snakemake(
        demo_run, "--dry-run", "--forcerun", "train", "--set-resources", "train:gpu=4",
        "--printshellcmds",
    )  # fmt: skip
    output = result.stdout + result.stderr
    commands = [line for line in output.splitlines() if " train --videos" in line]
    launcher = "Shell command: torchrun --standalone --nproc-per-node 4 -m supportset.cli --threads"
    assert len(commands) == 4, output[-3000:]  # one per experiment
    assert all(line.strip().startswith(launcher) for line in commands), commands


def test_bad_config_key_stops_before_any_job(tmp_path: Path):
    config = small_config()
    config["training"]["learning_rate"] = 0.1
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    result = snakemake(tmp_path)
    assert result.returncode != 0
    assert "learning_rate" in result.stdout + result.stderr
    assert not (tmp_path / "results").exists() and not (tmp_path / "resources").exists()


@pytest.mark.parametrize(
    ("target", "dataset"),
    [
        ("msrvtt_table3", "msrvtt"),
        ("vatex_table4", "vatex"),
        ("activitynet_table5", "activitynet"),
        ("msvd_table", "msvd"),
    ],
)
def test_unconfigured_dataset_names_its_root_key(tmp_path: Path, target: str, dataset: str):
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(small_config(), sort_keys=False))
    result = snakemake(tmp_path, f"results/{target}.csv")
    assert result.returncode != 0
    assert f"datasets.{dataset}.root" in result.stdout + result.stderr
    assert not (tmp_path / "results").exists()


def test_configured_dataset_builds_its_dag_from_the_annotation_files(tmp_path: Path):
    """MSR-VTT 1k-A files in place (no videos): the dry run plans prepare -> table."""
    data = tmp_path / "msrvtt"
    data.mkdir()
    (data / "MSRVTT_data.json").write_text('{"videos": [], "sentences": []}')
    for name in ("MSRVTT_train.9k.csv", "MSRVTT_JSFUSION_test.csv"):
        (data / name).write_text("video_id\n")
    config = small_config()
    config["datasets"]["msrvtt"]["root"] = str(data)
    config["datasets"]["msrvtt"]["overrides"]["features"] = {
        "appearance": {"arch": "resnet18", "weights": "random"},
        "motion": {"arch": "r2plus1d_10", "weights": "random", "clip_len": 4},
    }
    config["datasets"]["msrvtt"]["overrides"]["text"]["model"] = "tiny"
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    result = snakemake(tmp_path, "results/msrvtt_table3.csv", "--dry-run")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "prepare" in result.stdout and "table" in result.stdout
    config["datasets"]["msrvtt"]["split"] = "1k-C"
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    result = snakemake(tmp_path, "results/msrvtt_table3.csv", "--dry-run")
    assert result.returncode != 0 and "datasets.msrvtt.split" in result.stdout + result.stderr


def test_missing_production_weights_stop_before_any_job(tmp_path: Path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "videos.csv").write_text("video_id,file,split\nv1,v1.mp4,test\n")
    (data / "captions.csv").write_text("caption_id,video_id,text\nc1,v1,a dog runs\n")
    config = small_config()
    config["datasets"]["mine"] = {"adapter": "manifest", "root": str(data)}  # paper features
    config["tables"]["mine"] = {"dataset": "mine", "rows": {"ours": "supportset"}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    result = snakemake(tmp_path, "results/mine.csv", TORCH_HOME=str(tmp_path / "torch"))
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "features.appearance.weights" in output and "torch hub cache" in output
    assert not (tmp_path / "results").exists()


def output_times(workdir: Path) -> dict[str, int]:
    """Modification time of every file under results/ (logs and benchmarks included)."""
    return {
        str(path): path.stat().st_mtime_ns
        for path in (workdir / "results").rglob("*")
        if path.is_file()
    }


def test_changed_weights_rerun_their_dependants_and_are_checked_first(demo_run: Path):
    """Weights that are not on disk: the run plans extraction again and stops before it."""
    config = small_config()
    config["datasets"]["demo"]["overrides"]["features"]["motion"]["weights"] = "absent.pth"
    assert planned_jobs(demo_run, config) == {"all": 1, **AFTER_EXTRACTION}
    before = output_times(demo_run)
    result = snakemake(demo_run, "--configfile", str(demo_run / "changed.yaml"))
    assert result.returncode != 0
    assert "features.motion.weights: no weights file at absent.pth" in result.stderr
    assert output_times(demo_run) == before  # no job ran


def test_changed_text_model_is_checked_before_embedding(demo_run: Path, tmp_path: Path):
    config = small_config()
    config["datasets"]["demo"]["overrides"]["text"]["model"] = "t5-small"
    changed = {"all": 1, "embed_text": 1, **AFTER_TRAINING}
    assert planned_jobs(demo_run, config) == changed
    before = output_times(demo_run)
    result = snakemake(
        demo_run, "--configfile", str(demo_run / "changed.yaml"), HF_HOME=str(tmp_path)
    )
    assert result.returncode != 0
    assert "text.model 't5-small' is not available offline" in result.stderr
    assert output_times(demo_run) == before


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("text.model", "text.model 't5-small' is not available offline"),
        ("training.decoder", "training.decoder 't5-small'"),
    ],
)
def test_a_row_s_own_t5_is_checked_before_any_job(
    demo_run: Path, tmp_path: Path, setting: str, message: str
):
    """Tables 2c and 2d on the demo: a row's text encoder or decoder that is not on disk."""
    config = small_config()
    row = {"experiment": "supportset", "set": {setting: "t5-small"}}
    config["tables"]["t5"] = {"dataset": "demo", "rows": {"T5-small": row}}
    (demo_run / "t5.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    before = output_times(demo_run)
    result = snakemake(
        demo_run, "results/t5.csv", "--configfile", str(demo_run / "t5.yaml"), HF_HOME=str(tmp_path)
    )
    assert result.returncode != 0
    assert message in result.stderr, result.stderr[-3000:]
    assert output_times(demo_run) == before


def test_table_without_a_paper_reference(demo_run: Path):
    config = small_config()
    config["tables"]["mine"] = {"dataset": "demo", "rows": {"ours": "triplet"}}
    (demo_run / "mine.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    result = snakemake(demo_run, "results/mine.csv", "--configfile", str(demo_run / "mine.yaml"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    with open(demo_run / "results/mine.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(row["row"], row["source"]) for row in rows] == [("ours", "this run")]


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def metric_values(row: dict[str, str]) -> list[str]:
    return [row[key] for key in row if key[:4] in ("T2V_", "V2T_")]


def test_demo_ablation_tables_and_the_pretraining_chain_build(demo_run: Path):
    """Tables 1 and 2b of the demo with their paper rows, the pre-train -> fine-tune chain,
    a two-seed row and a row scored with another experiment's model (model_from)."""
    config = small_config()
    config["experiments"]["scored_as_is"] = {"model_from": "results/demo/demo_pretrain/model.pt"}
    config["tables"]["seeds"] = {"dataset": "demo", "seeds": [0, 1], "rows": {"Triplet": "triplet"}}
    config["tables"]["reused"] = {
        "dataset": "demo",
        "rows": {"Pre-trained": "demo_pretrain", "Its model, scored again": "scored_as_is"},
    }
    (demo_run / "tables.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    names = ("demo_table1", "demo_table2b", "demo_pretrain", "seeds", "reused")
    result = snakemake(
        demo_run, *(f"results/{name}.csv" for name in names),
        "--configfile", str(demo_run / "tables.yaml"),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    results = demo_run / "results"
    table1 = read_rows(results / "demo_table1.csv")
    assert [(row["row"], row["source"]) for row in table1] == [
        ("Hybrid", "paper"), ("Cross", "paper"), ("None", "this run"), ("Identity", "this run"),
        ("Full", "this run"), ("Hybrid", "this run"), ("Cross", "this run"),
    ]  # fmt: skip
    assert (
        (results / "demo_table1.md")
        .read_text()
        .rstrip()
        .endswith("lost from our copy of the paper.")
    )
    assert [row["row"] for row in read_rows(results / "demo_table2b.csv")] == [
        "Mean",
        "Max",
        "Transformer",
    ]
    assert "mean-or max-pooling" in (results / "demo_table2b.md").read_text()
    epochs = {
        name: max(int(row["epoch"]) for row in read_rows(results / f"demo/{name}/train_log.csv"))
        for name in ("demo_pretrain", "demo_finetune")
    }
    assert epochs == {"demo_pretrain": 2, "demo_finetune": 1}  # a quarter, at least one
    seeds = read_rows(results / "seeds.csv")[0]
    runs = read_rows(results / "seeds.runs.csv")
    assert [run["run"] for run in runs] == ["demo/triplet", "demo/triplet+seed=1"]
    for key in ("T2V_R@1", "V2T_MdR"):
        values = [float(run[key]) for run in runs]
        assert float(seeds[key]) == pytest.approx(statistics.mean(values), abs=0.051)
        assert float(seeds[f"{key}_std"]) == pytest.approx(statistics.stdev(values), abs=0.051)
    weights = [torch.load(results / f"demo/{name}/model.pt", weights_only=True)["model"]
               for name in ("triplet", "triplet+seed=1")]  # fmt: skip
    assert not all(torch.equal(weights[0][key], weights[1][key]) for key in weights[0])
    reused = read_rows(results / "reused.csv")
    assert metric_values(reused[0]) == metric_values(reused[1])
    assert not (results / "demo/scored_as_is/model.pt").exists()


def test_training_with_two_devices_runs_two_processes(demo_run: Path, tmp_path: Path):
    """Through the rule, as on a 2-GPU job; on this CPU machine the two ranks use gloo."""
    for name in ("config.yaml", "results", "resources"):
        source = demo_run / name
        copy = shutil.copytree if source.is_dir() else shutil.copy
        copy(source, tmp_path / name)
    result = snakemake(
        tmp_path, "results/demo/triplet/model.pt", "--forcerun", "train",
        "--set-resources", "train:gpu=2",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    log = (tmp_path / "results/logs/train/demo/triplet.log").read_text()
    assert log.count("with 2 process(es)") == 2  # one line per rank


def test_activitynet_as_clip4clip_names_its_videos(tmp_path: Path):
    """The real val_1.json, videos named `<YouTube id>.mp4`: prepare finds them all; named
    otherwise, the default `skip` stops prepare instead of writing an empty manifest."""
    from tests.test_adapters_real_files import REAL, activitynet_folder
    from tests.video_files import write_video

    if not REAL.is_dir():
        pytest.skip(f"the published dataset files are absent ({REAL})")
    clip = write_video(tmp_path / "clip.mp4", [0.0, 0.5, 1.0])
    config = small_config()
    for name, file_name in (("anet", lambda v: v[2:]), ("renamed", lambda v: f"{v}_360p")):
        root = activitynet_folder(tmp_path / name, clip, file_name)
        config["datasets"][name] = {**config["datasets"]["activitynet"], "root": str(root)}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    result = snakemake(tmp_path, "results/anet/manifest/videos.parquet")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert len(pq.read_table(tmp_path / "results/anet/manifest/videos.parquet")) == 14926
    result = snakemake(tmp_path, "results/renamed/manifest/videos.parquet")
    assert result.returncode != 0
    log = (tmp_path / "results/logs/prepare/renamed.log").read_text()
    assert "4917 of the 4917 test videos are missing on disk" in log
    assert not (tmp_path / "results/renamed/manifest/videos.parquet").exists()


@pytest.mark.parametrize(
    ("split", "message"),
    [("testing", "line 4: split 'testing' is not one of train, val, test"), ("train", "no val")],
)
def test_unusable_splits_stop_at_prepare(tmp_path: Path, split: str, message: str):
    """A split name nothing reads, or no val split, stops the first job, not training."""
    data = tmp_path / "data"
    (data / "videos").mkdir(parents=True)
    rows, captions = ["video_id,file,split"], ["caption_id,video_id,text"]
    for index, video_split in enumerate(["train", "train", split, "test"]):
        (data / f"videos/v{index}.mp4").touch()
        rows.append(f"v{index},videos/v{index}.mp4,{video_split}")
        captions.append(f"c{index},v{index},a clip")
    (data / "videos.csv").write_text("\n".join(rows) + "\n")
    (data / "captions.csv").write_text("\n".join(captions) + "\n")
    config = small_config()
    demo = config["datasets"]["demo"]
    config["datasets"]["mine"] = {
        "adapter": "manifest",
        "root": str(data),
        "overrides": demo["overrides"],
    }
    config["tables"]["mine"] = {"dataset": "mine", "rows": {"ours": "supportset"}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    result = snakemake(tmp_path, "results/mine.csv")
    assert result.returncode != 0
    assert message in (tmp_path / "results/logs/prepare/mine.log").read_text()
    assert not (tmp_path / "results/mine/features").exists()


def readme_recipes() -> list[tuple[list[str], str]]:
    """(arguments, comment) of each command in the README's block of recipes."""
    readme = (REPO / "README.md").read_text()
    block = readme.split("```sh\nsnakemake -n ", 1)[1].split("```", 1)[0]
    recipes = []
    for line in ("snakemake -n " + block).strip().splitlines():
        command, comment = line.split("#", 1)
        arguments = command.split()[1:]
        recipes.append((arguments, comment.strip()))
    return recipes


def test_readme_recipes_plan_what_they_say(demo_run: Path):
    """Each recipe, on the demo (msrvtt -> demo), as a dry run: the target is the one
    planned (a target swallowed by --forcerun would plan the default one, `all`)."""
    expected = {
        "--forcerun train": {"train": 4, "export": 8, "evaluate": 4, "table": 1},
        "--forcerun evaluate": {"evaluate": 4, "table": 1},
    }
    recipes = readme_recipes()
    assert len(recipes) == 7 and recipes[-1][0] == ["--unlock"]
    for arguments, comment in recipes[:-1]:
        arguments = [a.replace("msrvtt_table3", "demo_table3") for a in arguments]
        arguments = [a.replace("results/msrvtt/", "results/demo/") for a in arguments]
        result = snakemake(demo_run, *arguments, "--dry-run")
        output = result.stdout + result.stderr
        assert result.returncode == 0, (arguments, output[-3000:])
        stats = output.split("Job stats:")[-1].split("total", 1)[0]
        planned = dict(re.findall(r"^(\w+)\s+(\d+)$", stats, re.M))
        wanted = next((jobs for flag, jobs in expected.items() if flag in " ".join(arguments)), {})
        assert {rule: int(n) for rule, n in planned.items()} == wanted, (comment, output[-2000:])
    assert snakemake(demo_run, "--unlock").returncode == 0


def test_killed_run_resumes_to_the_uninterrupted_result(demo_run: Path, tmp_path: Path):
    """kill -9 of the whole run during training (reader workers as the rule starts them):
    the same command fails on Snakemake's lock, `--unlock` and the same command again
    resume from the last finished epoch and give the uninterrupted run's weights and log."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import torch

    for name in ("config.yaml", "results", "resources"):
        source = demo_run / name
        copy = shutil.copytree if source.is_dir() else shutil.copy
        copy(source, tmp_path / name)
    experiment = tmp_path / "results/demo/supportset"
    for state in experiment.glob("training_state*"):
        state.unlink()
    target = "results/demo/supportset/model.pt"
    command = [
        sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(tmp_path), "--cores", "2", target, "--forcerun", "train",
    ]  # fmt: skip
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    run = subprocess.Popen(command, env=env, start_new_session=True, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while not (experiment / "training_state.pt").exists() and run.poll() is None:
        assert time.monotonic() < deadline, "training wrote no state in 10 minutes"
        time.sleep(0.05)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    assert not (experiment / "model.pt").exists(), "killed too late: training had finished"
    locked = snakemake(tmp_path, target)
    assert locked.returncode != 0 and "--unlock" in locked.stdout + locked.stderr
    assert snakemake(tmp_path, "--unlock").returncode == 0
    resumed = snakemake(tmp_path, target)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert (
        "resuming after epoch 1"
        in (tmp_path / "results/logs/train/demo/supportset.log").read_text()
    )
    uninterrupted = torch.load(demo_run / target, weights_only=True)["model"]
    weights = torch.load(tmp_path / target, weights_only=True)["model"]
    assert all(torch.equal(weights[name], value) for name, value in uninterrupted.items())

    def steps(path: Path) -> list[list[str]]:
        rows = list(csv.reader(path.read_text().splitlines()))
        return [row[:-1] for row in rows]  # all but the wall-clock seconds

    log = "results/demo/supportset/train_log.csv"
    assert steps(tmp_path / log) == steps(demo_run / log)
