"""Checks the workflow runs once it knows which jobs it will run, before the first starts:
named weights that a planned job needs and that are not available offline, or a program
it runs that is missing (Java, for scoring captions), stop the run there, with a message
that says how to provide them.

Jobs whose outputs are up to date need no weights, so a finished run can be rescored or
re-tabled without them; a changed feature, text or model setting plans the jobs it affects
again, and their weights are checked then.
"""

from __future__ import annotations

from supportset.captioning.scores import check_java
from supportset.features.text import TextModelError, TextSettings, check_model_available
from supportset.features.visual import VisualSettings, check_weights
from supportset.model.decoder import check_decoder_available, check_same_vocabulary
from supportset.settings import from_mapping

CHECKED_RULES = ("extract_visual", "embed_text", "train", "score_captions")  # see check_job_weights


def check_visual_weights(features: dict) -> None:
    """Raise WeightsError unless both backbones of the `features` settings load offline."""
    check_weights(from_mapping(VisualSettings, features))


def check_text_model(text: dict, token_ids_only: bool = False) -> None:
    """Raise TextModelError unless what a job loads of `text.model` is there offline: its
    tokenizer and config, and unless `token_ids_only` its weights ("tiny" is built by the
    DAG)."""
    text_settings = from_mapping(TextSettings, text)
    if text_settings.model != "tiny":
        check_model_available(text_settings.model, token_ids_only)


def check_job_weights(
    rule: str,
    features: dict,
    text: dict,
    model: dict | None = None,
    training: dict | None = None,
    token_ids_only: bool = False,
) -> None:
    """Raise for the weights a job of `rule` loads: extraction the backbones, text embedding
    the T5 (its tokenizer and config alone for a job writing token ids only,
    `token_ids_only`), training the T5 when it captions (the decoder) or fine-tunes the
    encoder, and the T5 of `training.decoder` when that is set and training captions;
    scoring captions a Java runtime (JavaMissingError)."""
    if rule == "score_captions":
        check_java()
    if rule == "extract_visual":
        check_visual_weights(features)
    elif rule == "embed_text":
        check_text_model(text, token_ids_only)
    elif rule == "train" and _loads_t5(model, training):
        check_text_model(text)
    if rule == "train" and _loads_decoder(training):
        check_decoder_available(training["decoder"])
        if text["model"] != "tiny":  # a tiny T5 is built by the DAG: checked in training
            try:
                check_same_vocabulary(training["decoder"], text["model"])
            except ValueError as error:
                raise TextModelError(str(error)) from None


def _loads_decoder(training: dict | None) -> bool:
    """Whether training loads a caption decoder of its own (`training.decoder`)."""
    if training is None:
        return False
    return training["captioning"] != "none" and bool(training["decoder"])


def _loads_t5(model: dict | None, training: dict | None) -> bool:
    """Whether training loads the T5: as caption decoder, or as the encoder it fine-tunes."""
    if model is None or training is None:
        return False
    return training["captioning"] != "none" or model["text_encoder"] == "finetune"
