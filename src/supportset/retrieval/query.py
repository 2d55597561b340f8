"""Free-text search over one split's videos: what `supportset search` does.

A query goes through the steps the pipeline took for the captions the model was trained
on and exported with, following the record of how they were encoded (model.pt's
`text_features`; for a model.pt written before it kept one, the same record read from its
text shards, `--text-shards`): the same tokenizer (checked by the sha256 of its
vocabulary), truncated to the same `max_tokens`; with a fine-tuned text encoder, the token
ids, so a caption's query equals its exported embedding; with a frozen one, the same T5's
states, stored and read back in the shards' dtype as the cached ones are, then the model's
text head. Those states reproduce the cached ones (up to the rounding of another batching)
only when the query is encoded on the kind of device the shards were embedded on:
`features.text.encode` runs T5 under bfloat16 autocast on a GPU and in float32 on a CPU,
for the shards (embed_text) as for a query (on the device `search` picks), so a caption
queried on a CPU against shards embedded on a GPU (or the other way round) gets T5 states
that differ by bfloat16 rounding, and a score slightly off its exported embedding's,
enough to swap near ties. The fine-tuned encoder runs in float32 in export and search
alike (equal up to float32 rounding across devices).

The top k videos come from the split's FAISS index (the `index` stage, row i = the i-th
video of ``embeddings/{split}_videos.parquet``). Each hit also gets its best-matching
second: every feature step of that video (one second at the paper's rate, "We extract
features at a rate of 1 feature per second", appendix 6.1) alone through the model's video
head, over the steps export embedded (the first `training.max_video_seconds`); the step
closest to the query gives its timestamp from the visual shards.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
import transformers

from supportset.data.manifest import read_videos
from supportset.features.bank import (
    FeatureBank,
    TokenizerIdentity,
    pad_batch,
    pad_token_ids,
    text_features_record,
    text_shards_tokenizer,
)
from supportset.features.text import (
    TextModelError,
    encode,
    load_t5_encoder,
    missing_model_message,
    tokenize,
    tokenizer_sha256,
    truncate,
)
from supportset.integrity import CheckedParquet
from supportset.model.checkpoint import model_from_checkpoint, read_checkpoint
from supportset.model.inference import EVAL_BATCH, NO_TRUNCATION
from supportset.model.retrieval_model import SupportSetModel
from supportset.retrieval.index import read_index, top_k
from supportset.torch_utils import pick_device

log = logging.getLogger(__name__)

SHARD_NAME = re.compile(r"[0-9]{5}\.(parquet|h5)")  # not the NNNNN.rejects.parquet beside them


@dataclass(frozen=True)
class ExperimentFiles:
    """What searching one split of results/{dataset}/{experiment} reads."""

    model: Path  # model.pt
    index: Path  # index/{split}.faiss
    videos: Path  # embeddings/{split}_videos.parquet: the video_id of each index row
    manifest: Path  # ../manifest/videos.parquet: each video's path
    visual: list[Path]  # ../features/visual/NNNNN.parquet|.h5: the features of the seconds

    @property
    def features(self) -> Path:
        """The dataset's features folder, results/{dataset}/features."""
        return self.visual[0].parent.parent


def experiment_files(
    experiment: str | Path, split: str, model: str | Path | None = None
) -> ExperimentFiles:
    """The files of `split` of the experiment folder (`model` replaces its model.pt, for an
    experiment scored with another's model); a missing one is a FileNotFoundError naming it
    and the snakemake target that builds it."""
    folder = Path(experiment)
    shards = folder.parent / "features" / "visual"
    files = ExperimentFiles(
        Path(model) if model is not None else folder / "model.pt",
        folder / "index" / f"{split}.faiss",
        folder / "embeddings" / f"{split}_videos.parquet",
        folder.parent / "manifest" / "videos.parquet",
        sorted(path for path in shards.glob("*") if SHARD_NAME.fullmatch(path.name)),
    )
    if model is not None and not files.model.is_file():
        raise FileNotFoundError(f"--model {model} does not exist")
    if not files.model.is_file():
        raise FileNotFoundError(
            f"{files.model} is missing: build it with `snakemake {files.model}` (an experiment "
            "scored with another's model, model_from, has none: pass that one as --model)"
        )
    for path in (files.index, files.videos, files.manifest):
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: build it with `snakemake {path}`")
    if not files.visual:
        raise FileNotFoundError(
            f"{shards} holds no visual feature shard: build them with `snakemake "
            f"{shards}/00000.parquet` (00000.h5 when features.format is hdf5)"
        )
    return files


def load_tokenizer(text_model: str) -> transformers.PreTrainedTokenizerBase:
    """The tokenizer of a T5 folder or cached name, offline; TextModelError saying how to
    provide it when it is not there."""
    try:
        return transformers.AutoTokenizer.from_pretrained(text_model, local_files_only=True)
    except OSError as error:
        raise TextModelError(
            f"pass the T5 the captions were embedded with as --text-model: "
            f"{missing_model_message(text_model)}"
        ) from error


class QueryEncoder:
    """Free text -> (Q, d) unit embeddings, as export embedded the captions."""

    def __init__(self, model: SupportSetModel, text_features: dict, text_model: str) -> None:
        """`text_features`: model.pt's record of how its captions were encoded;
        `text_model`: the T5 folder or name to load (the record's, or another copy)."""
        self.model = model
        self.device = next(model.parameters()).device
        self.max_tokens = text_features["max_tokens"]
        self.dtype = text_features["dtype"]
        self.tokenizer = load_tokenizer(text_model)
        found, recorded = tokenizer_sha256(self.tokenizer), text_features["tokenizer_sha256"]
        if found != recorded:
            raise ValueError(
                f"the tokenizer of {text_model} (vocabulary sha256 {found[:12]}) is not the "
                f"one the model's captions were tokenized with ({recorded[:12]}): the same "
                "token id would mean another word; pass that T5 as --text-model"
            )
        self.t5 = None
        if model.t5_encoder is None:  # frozen: the T5 states of embed_text
            self.t5 = load_t5_encoder(text_model).eval().to(self.device)
            if self.t5.config.d_model != model.text_dim:
                raise ValueError(
                    f"{text_model} gives {self.t5.config.d_model}-d states, the model reads "
                    f"{model.text_dim}-d ones: pass the T5 (--text-model) or the text shards "
                    "(--text-shards) it was trained with"
                )

    @torch.inference_mode()
    def __call__(self, texts: list[str]) -> np.ndarray:
        """(Q, d) float32 unit embeddings of `texts`, in their order."""
        if not texts or not all(text.strip() for text in texts):
            raise ValueError(f"every query must hold some text, got {texts!r}")
        token_ids = [truncate(ids, self.max_tokens) for ids in tokenize(self.tokenizer, texts)]
        if self.t5 is None:
            sequences, pad = token_ids, pad_token_ids
        else:
            states = encode(self.t5, token_ids, EVAL_BATCH, self.tokenizer.pad_token_id)
            # stored in the shards' dtype, read back as float32 (features.store)
            sequences = [values.astype(self.dtype).astype(np.float32) for values in states]
            pad = partial(pad_batch, max_len=NO_TRUNCATION)
        outputs = []
        for start in range(0, len(sequences), EVAL_BATCH):
            batch, valid = pad(sequences[start : start + EVAL_BATCH])
            embedded = self.model.embed_texts(batch.to(self.device), valid.to(self.device))
            outputs.append(embedded.float().cpu())
        return torch.cat(outputs).numpy()


def text_features_of(
    checkpoint: dict, path: str | Path, text_shards: Sequence[str | Path], features: Path
) -> dict:
    """How the captions of the model.pt `checkpoint` (read from `path`) were encoded: read
    from `text_shards` when given (see `text_shards_record`), else model.pt's own record;
    a ValueError saying which --text-shards to pass (those of `features`, the dataset's
    features folder) when it has none."""
    if text_shards:
        return text_shards_record(checkpoint, path, text_shards)
    record = checkpoint.get("text_features")
    if record is None:
        raise ValueError(
            f"{path} does not record how its captions were encoded (text_features: written "
            "before search existed, or trained on text shards without tokenizer_sha256): "
            f"pass the text shards it was trained on, {text_shards_option(features)}"
        )
    return record


def text_shards_option(features: Path) -> str:
    """`--text-shards` with the shards of each text set under `features` (the dataset's
    features folder; one set per text.model, of T5 states ('text*') or of token ids
    ('tokens*'), see config.text_set), e.g.
    `--text-shards results/demo/features/text/?????.parquet`; the 'text' set when there is
    none yet."""
    patterns = sorted(
        {
            f"{shard.parent}/?????{shard.suffix}"
            for folder in ("text*", "tokens*")
            for shard in features.glob(f"{folder}/*")
            if SHARD_NAME.fullmatch(shard.name)
        }
    )
    return " or ".join(
        f"--text-shards {pattern}" for pattern in patterns or [f"{features}/text/?????.parquet"]
    )


def text_shards_record(
    checkpoint: dict, path: str | Path, text_shards: Sequence[str | Path]
) -> dict:
    """The record of how the captions of `text_shards` were encoded (their T5, max_tokens,
    dtype and tokenizer, from their metadata), for searching with the model.pt `checkpoint`
    read from `path`: how a model.pt written before it kept `text_features` is searched
    without training it again. Logged as taken from the shards. A ValueError for a path
    that is not a shard, shards that predate `tokenizer_sha256` (embed the text again) or
    whose tokenizer is not the model's."""
    unsharded = [shard for shard in text_shards if not SHARD_NAME.fullmatch(Path(shard).name)]
    if unsharded:
        raise ValueError(
            f"--text-shards {unsharded[0]} is not a text shard (NNNNN.parquet or NNNNN.h5; "
            f"not the NNNNN.rejects.parquet beside them): pass the shards alone, "
            f"{Path(unsharded[0]).parent}/?????.parquet (?????.h5 when text.format is hdf5), "
            "with the queries before --text-shards"
        )
    tokenizer = text_shards_tokenizer(text_shards)
    if tokenizer is None:
        raise ValueError(
            f"the --text-shards ({len(text_shards)}, e.g. {text_shards[0]}) predate "
            "tokenizer_sha256, so they do not say which tokenizer encoded their captions: "
            "embed the "
            "text again (`supportset embed-text` with the text settings the model was "
            "trained with, into another folder, then pass those shards as --text-shards); "
            "the model need not be trained again"
        )
    check_trained_tokenizer(checkpoint, path, tokenizer)
    record = text_features_record(text_shards)
    log.info(
        "how the captions of %s were encoded is taken from the text shards %s (%d shards), "
        "not from the model: %s (model.pt's own record: %s)",
        path, text_shards[0], len(text_shards), record, checkpoint.get("text_features"),
    )  # fmt: skip
    return record


def check_trained_tokenizer(
    checkpoint: dict, path: str | Path, tokenizer: TokenizerIdentity
) -> None:
    """Refuse text shards tokenized by another tokenizer than the captions the model.pt
    `checkpoint` (read from `path`) was trained on, naming both; a model.pt that records
    none (written before it kept one) is not checked, with a warning saying so."""
    recorded = checkpoint.get("tokenizer")
    if recorded is None:
        log.warning(
            "%s records no tokenizer (written before checkpoints kept one, or trained on "
            "text shards without tokenizer_sha256): not checked that the text shards, %s, "
            "are those it was trained on",
            path, tokenizer.describe(),
        )  # fmt: skip
        return
    trained = TokenizerIdentity(**recorded)
    if trained.sha256 != tokenizer.sha256:
        raise ValueError(
            f"{path} was trained on captions tokenized by {trained.describe()}, but the "
            f"--text-shards were tokenized by {tokenizer.describe()}: the same token id "
            "would mean another word; pass the text shards it was trained on"
        )


def video_seconds(checkpoint: dict, path: str | Path, option: float | None) -> float:
    """The seconds of each video export embedded: `option` when given, else the model's
    training.max_video_seconds from its provenance; a ValueError when neither says."""
    if option is not None:
        return option
    settings = (checkpoint.get("provenance") or {}).get("settings", {})
    recorded = settings.get("training", {}).get("max_video_seconds")
    if recorded is None:
        raise ValueError(
            f"{path} records no training.max_video_seconds: pass the seconds export embedded "
            "as --max-video-seconds"
        )
    return recorded


def read_video_ids(path: str | Path) -> list[str]:
    """The video_id column of a video embeddings file, in file order."""
    file = CheckedParquet(path, checksum_required=False)
    try:
        return file.read(["video_id"]).column("video_id").to_pylist()
    finally:
        file.close()


@dataclass(frozen=True)
class Hit:
    """One retrieved video of one query."""

    query: str
    rank: int  # 1-based
    video_id: str
    path: str  # the video file, as the manifest names it
    score: float  # cosine similarity of the query and the video's exported embedding
    best_second: float  # timestamp (s) of the video's feature step closest to the query


@torch.inference_mode()
def step_embeddings(
    model: SupportSetModel, sequences: list[np.ndarray], device: torch.device
) -> list[np.ndarray]:
    """Each step of each sequence (T_i, D_v) alone through the video head: (T_i, d) unit
    vectors per sequence."""
    steps = torch.from_numpy(np.concatenate(sequences)).unsqueeze(1)  # (sum T_i, 1, D_v)
    outputs = []
    for start in range(0, len(steps), EVAL_BATCH):
        batch = steps[start : start + EVAL_BATCH].to(device)
        valid = torch.ones(batch.shape[:2], dtype=torch.bool, device=device)
        outputs.append(model.embed_videos(batch, valid).float().cpu())
    embedded = torch.cat(outputs).numpy()
    return np.split(embedded, np.cumsum([len(sequence) for sequence in sequences])[:-1])


class Searcher:
    """The files of one experiment and split, loaded once for any number of searches."""

    def __init__(
        self,
        files: ExperimentFiles,
        text_model: str | None = None,
        max_video_seconds: float | None = None,
        settings: Mapping | None = None,
        text_shards: Sequence[str | Path] = (),
    ) -> None:
        """`text_model` replaces the T5 folder or name of the record of how the captions
        were encoded; `max_video_seconds` the seconds of each video that export embedded
        (default: the model's setting); `settings`, part of the `search` section, the
        search-time parameters stored in the index (see `index.read_index`); `text_shards`
        the text shards the model was trained on, whose record replaces model.pt's (which
        a model.pt written before search existed lacks)."""
        device = pick_device()
        checkpoint = read_checkpoint(files.model, "model file")
        self.model = model_from_checkpoint(checkpoint, device)
        features = text_features_of(checkpoint, files.model, text_shards, files.features)
        self.encode = QueryEncoder(self.model, features, text_model or features["model"])
        self.index = read_index(files.index, settings, use_gpu=device.type == "cuda")
        self.video_ids = read_video_ids(files.videos)
        if (self.index.ntotal, self.index.d) != (len(self.video_ids), self.model.config.dim):
            raise ValueError(
                f"{files.index} holds {self.index.ntotal} {self.index.d}-d vectors, but "
                f"{files.videos} lists {len(self.video_ids)} videos of the model's "
                f"{self.model.config.dim}-d space: build the index again"
            )
        self.paths = {video["video_id"]: video["path"] for video in read_videos(files.manifest)}
        unlisted = [video_id for video_id in self.video_ids if video_id not in self.paths]
        if unlisted:
            raise ValueError(
                f"{files.manifest} does not list {len(unlisted)} videos of {files.videos} "
                f"(e.g. {unlisted[0]}): they come from another manifest, export them again"
            )
        bank = FeatureBank.load(files.visual, [])
        self.bank = bank.visual_part(self.model.config.visual_features)
        self.steps = bank.steps(video_seconds(checkpoint, files.model, max_video_seconds))

    def search(self, queries: list[str], top: int) -> list[list[Hit]]:
        """The `top` best videos of each query, best first (fewer when the gallery, or an
        approximate index, has fewer)."""
        embeddings = self.encode(queries)
        scores, rows = top_k(self.index, embeddings, top)
        found = [
            [
                (self.video_ids[row], float(score))
                for row, score in zip(*pair, strict=True)
                if row >= 0
            ]
            for pair in zip(rows, scores, strict=True)
        ]
        steps = self._steps(list(dict.fromkeys(video for hits in found for video, _ in hits)))
        return [
            [
                Hit(query, rank, video, self.paths[video], score, self._best(video, steps, vector))
                for rank, (video, score) in enumerate(hits, start=1)
            ]
            for query, hits, vector in zip(queries, found, embeddings, strict=True)
        ]

    def _steps(self, video_ids: list[str]) -> dict[str, np.ndarray]:
        """video_id -> its embedded steps alone through the video head, (T, d)."""
        sequences = [self.bank.videos[video_id][: self.steps] for video_id in video_ids]
        device = next(self.model.parameters()).device
        embedded = step_embeddings(self.model, sequences, device) if sequences else []
        return dict(zip(video_ids, embedded, strict=True))

    def _best(self, video_id: str, steps: dict[str, np.ndarray], query: np.ndarray) -> float:
        """The timestamp (s) of the video's step closest to the (d,) unit `query`."""
        best = int(np.argmax(steps[video_id] @ query))
        return float(self.bank.timestamps[video_id][best])


def format_hits(queries: list[str], results: list[list[Hit]]) -> str:
    """A readable table per query: rank, score, best second, video id and path."""
    blocks = []
    for query, hits in zip(queries, results, strict=True):
        lines = [f"query: {query!r}", f"{'rank':>4}  {'score':>7}  {'second':>7}  video_id  path"]
        lines += [
            f"{hit.rank:>4}  {hit.score:>7.4f}  {hit.best_second:>6.1f}s  {hit.video_id}  "
            f"{hit.path}"
            for hit in hits
        ]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def read_queries(path: str | Path) -> list[str]:
    """The queries of a text file, one per line (blank lines skipped)."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip()]
