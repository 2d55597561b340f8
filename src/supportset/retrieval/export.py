"""The `export` stage: video and caption embeddings of one split, in the embeddings schema."""

from __future__ import annotations

from pathlib import Path

from supportset.features.bank import FeatureBank, SplitData
from supportset.model.checkpoint import check_tokenizer, model_from_checkpoint, read_checkpoint
from supportset.model.inference import embed_split
from supportset.retrieval.embeddings import write_caption_embeddings, write_video_embeddings
from supportset.torch_utils import pick_device


def export_split(
    checkpoint: str | Path,
    bank: FeatureBank,
    split: SplitData,
    max_video_seconds: int,
    videos_out: str | Path,
    captions_out: str | Path,
) -> None:
    """Embed every usable video and caption of `split` and write the two Parquet files;
    the videos from the part of the visual features the model was trained on. A model
    trained on captions of another tokenizer than the bank's text shards is refused (e.g.
    `model_from` a dataset whose text.model 'tiny' trained its own tokenizer)."""
    device = pick_device()
    contents = read_checkpoint(checkpoint, "model file")
    check_tokenizer(contents, checkpoint, "model file", bank.tokenizer)
    model = model_from_checkpoint(contents, device)
    bank = bank.visual_part(model.config.visual_features)
    video_emb, caption_emb = embed_split(model, bank, split, max_video_seconds, device)
    write_video_embeddings(videos_out, split.video_ids, video_emb)
    write_caption_embeddings(captions_out, split.caption_ids, split.caption_video_ids, caption_emb)
