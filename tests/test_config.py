import copy

import pytest
import yaml

from supportset.config import (
    ConfigError,
    load_schema,
    section_settings,
    text_set,
    text_set_holds_token_ids,
    text_set_settings,
    validate_config,
)
from tests.conftest import REPO

SCHEMA = load_schema(REPO / "workflow/schemas/config.schema.yaml")


def repo_config() -> dict:
    return yaml.safe_load((REPO / "config.yaml").read_text())


def test_repo_config_is_valid_and_keeps_paper_defaults():
    config = validate_config(repo_config(), SCHEMA)
    assert config["training"]["lr"] == 5e-5
    assert config["training"]["margin"] == 0.2
    assert config["model"]["dim"] == 1024


def test_missing_keys_get_schema_defaults():
    config = validate_config({"datasets": {"d": {"adapter": "manifest"}}}, SCHEMA)
    assert config["training"]["grad_clip"] == 0.2
    assert config["features"]["appearance"]["arch"] == "resnet152"
    assert config["datasets"]["d"]["corpus"]["num_videos"] == 240
    assert config["features"]["motion"]["weights"] == "ig65m_clip32"


def test_every_schema_property_has_description_and_default():
    def resolve(prop):
        if "$ref" not in prop:
            return prop
        return {**SCHEMA["$defs"][prop["$ref"].rsplit("/", 1)[1]], **prop}

    def walk(node, path):
        for name, prop in node.get("properties", {}).items():
            prop = resolve(prop)
            assert "description" in prop, f"{path}.{name} has no description"
            assert "default" in prop or name in node.get("required", []), f"{path}.{name}"
            walk(prop, f"{path}.{name}")
        if isinstance(node.get("additionalProperties"), dict):
            walk(node["additionalProperties"], f"{path}.*")

    walk(SCHEMA, "config")
    for name, definition in SCHEMA["$defs"].items():
        walk(definition, name)


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (lambda c: c["training"].update(lrr=1.0), "lrr"),
        (lambda c: c["training"].update(lr="fast"), "training.lr"),
        (lambda c: c["model"].update(pooling="attention"), "model.pooling"),
        (lambda c: c.update(trainig={}), "trainig"),
        (lambda c: c["datasets"]["demo"]["overrides"]["training"].update(epoch=3), "epoch"),
        (
            lambda c: c["datasets"]["demo"]["overrides"]["model"].update(dim="big"),
            "datasets.demo.overrides.model.dim",
        ),
        (
            lambda c: c["experiments"]["triplet"].update(overrides={"text": {"max_tokens": 8}}),
            "'max_tokens' is not one of",
        ),
        (lambda c: c["tables"]["demo_table3"]["rows"].update(x="nope"), "demo_table3.rows.x"),
        (lambda c: c["tables"]["demo_table3"].update(split="val1"), "tables.demo_table3.split"),
        (lambda c: c["datasets"]["demo"].update(root="elsewhere"), "datasets.demo.root"),
        (lambda c: c["evaluation"].update(protocol="1k-B"), "evaluation.protocol"),
        (
            lambda c: c["datasets"]["demo"]["overrides"]["evaluation"].update(bootstrap=-1),
            "datasets.demo.overrides.evaluation.bootstrap",
        ),
        (
            lambda c: c["tables"]["demo_table3"].update(reference="activitynet_table5"),
            "tables.demo_table3.recall_at",
        ),
        (lambda c: c["tables"]["demo_table3"].update(reference="table9"), "reference"),
        (
            lambda c: c["datasets"]["demo"]["overrides"]["features"].update(format="hdf5"),
            "overrides.features.format",
        ),
        (lambda c: c["training"].update(train_splits=["train", "test"]), "training.train_splits"),
        (lambda c: c["training"].update(epoch_unit="clips"), "training.epoch_unit"),
        (
            lambda c: c["datasets"]["demo"]["overrides"]["training"].update(
                train_splits=["train", "val"]
            ),
            "dataset demo, experiment supportset",
        ),
        (
            lambda c: c["experiments"]["triplet"]["overrides"]["training"].update(
                captions_per_video=2, loss="milnce"
            ),
            "experiment triplet",
        ),
    ],
)
def test_bad_key_or_value_is_named(change, key):
    config = repo_config()
    change(config)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        validate_config(config, SCHEMA)


def test_overrides_apply_dataset_then_experiment():
    config = validate_config(repo_config(), SCHEMA)
    before = copy.deepcopy(config)
    model = section_settings(config, "model", "demo", "triplet+pooling=mean")
    assert model["pooling"] == "mean"
    assert model["dim"] == 256
    assert model["heads"] == 4
    assert section_settings(config, "model", "msrvtt", "triplet")["dim"] == 1024
    assert config == before


@pytest.mark.parametrize(
    ("dataset", "split", "protocol"),
    [
        ("demo", "", "multi-caption"),
        ("msrvtt", "", "one-caption"),  # 1k-A: JSFusion's sentence per test video
        ("msrvtt", "7k", "one-caption"),
        ("msrvtt", "1k-B", "one-caption"),  # Miech et al.: the first caption
        ("msrvtt", "full", "multi-caption"),  # all 20 captions per test video, as CE
        ("msvd", "", "multi-caption"),
        ("vatex", "", "multi-caption"),
        ("activitynet", "", "paragraph"),
    ],
)
def test_auto_protocol_is_the_published_one_of_the_split(dataset, split, protocol):
    config = repo_config()
    config["datasets"][dataset]["split"] = split
    config = validate_config(config, SCHEMA)
    assert config["evaluation"]["protocol"] == "auto"
    assert section_settings(config, "evaluation", dataset)["protocol"] == protocol


def test_an_explicit_protocol_wins_and_actions_have_none():
    config = repo_config()
    config["datasets"]["msrvtt"]["overrides"]["evaluation"] = {"protocol": "multi-caption"}
    config = validate_config(config, SCHEMA)
    assert section_settings(config, "evaluation", "msrvtt")["protocol"] == "multi-caption"
    with pytest.raises(ConfigError, match=r"datasets\.hmdb51\.overrides\.evaluation\.protocol"):
        section_settings(config, "evaluation", "hmdb51")


def test_the_paper_defaults_of_issue_13():
    config = validate_config(repo_config(), SCHEMA)
    training = section_settings(config, "training", "msrvtt", "supportset")
    assert (training["epoch_unit"], training["caption_memory"]) == ("pairs", "features")
    assert (training["contrast_reduction"], training["caption_reduction"]) == ("sum", "token_mean")
    assert training["caption_weight"] == 10.0
    assert (training["train_splits"], training["selection"]) == (["train", "val"], "last")
    assert section_settings(config, "model", "msrvtt", "supportset")["text_encoder"] == "finetune"
    assert section_settings(config, "training", "demo", "supportset")["caption_weight"] == 10.0


def test_fine_tuning_from_a_checkpoint_runs_a_quarter_of_the_epochs():
    config = validate_config(repo_config(), SCHEMA)
    config["experiments"]["tuned"] = {"overrides": {"training": {"init_from": "pre/model.pt"}}}
    config["experiments"]["tuned_10"] = {
        "overrides": {"training": {"init_from": "pre/model.pt", "epochs": 10}}
    }
    assert section_settings(config, "training", "msrvtt", "tuned")["epochs"] == 5  # 20 / 4
    assert section_settings(config, "training", "activitynet", "tuned")["epochs"] == 7  # 28 / 4
    assert section_settings(config, "training", "vatex", "tuned")["epochs"] == 8  # 7.5 up
    assert section_settings(config, "training", "demo", "tuned")["epochs"] == 3  # 2.5 up
    assert section_settings(config, "training", "msrvtt", "tuned_10")["epochs"] == 10
    assert section_settings(config, "training", "msrvtt", "supportset")["epochs"] == 20


def test_howto100m_counts_its_epochs_in_videos():
    """6.1: "Pre-training on 1.2 million HowTo100M videos ... for 20 epochs"."""
    config = validate_config(repo_config(), SCHEMA)
    training = section_settings(config, "training", "howto100m", "supportset")
    assert (training["epoch_unit"], training["clips"]) == ("videos", True)


def test_howto100m_extracts_in_2000_shards_of_each_modality():
    """docs/scale.md: 610 videos and 68K captions a shard job, not 4 shards of 620 GB and
    one text job of 136M captions (the defaults)."""
    config = validate_config(repo_config(), SCHEMA)
    for section in ("features", "text"):
        assert section_settings(config, section, "howto100m")["shards"] == 2000


def test_text_sets_say_what_they_hold():
    """A frozen text encoder reads T5 states ('text', the demo's), a fine-tuned one token
    ids alone ('tokens', the paper's); an experiment's own text.model adds its name."""
    config = repo_config()
    config["experiments"]["frozen"] = {"overrides": {"model": {"text_encoder": "frozen"}}}
    config["experiments"]["small"] = {"overrides": {"text": {"model": "t5-small"}}}
    config["experiments"]["small_frozen"] = {
        "overrides": {"text": {"model": "t5-small"}, "model": {"text_encoder": "frozen"}}
    }
    config = validate_config(config, SCHEMA)
    names = {
        experiment: text_set(config, "msrvtt", experiment)
        for experiment in ("supportset", "frozen", "small", "small_frozen")
    }
    assert names == {
        "supportset": "tokens", "frozen": "text", "small": "tokens-t5-small",
        "small_frozen": "text-t5-small",
    }  # fmt: skip
    assert text_set(config, "msrvtt") == "tokens"  # the dataset's own settings
    assert text_set(config, "demo") == text_set(config, "demo", "triplet") == "text"
    assert [text_set_holds_token_ids(name) for name in names.values()] == [True, False, True, False]
    assert text_set_settings(config, "msrvtt", "tokens-t5-small")["model"] == "t5-small"
    assert text_set_settings(config, "msrvtt", "text-t5-small")["max_tokens"] == 100
    assert text_set_settings(config, "msrvtt", "text") == section_settings(config, "text", "msrvtt")
    with pytest.raises(ConfigError, match="no experiment of dataset 'msrvtt' reads the text set"):
        text_set_settings(config, "msrvtt", "tokens-t5-large")
